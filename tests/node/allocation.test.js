'use strict';
// Allocation across linked hubs (§7.2), custom allocation webhooks (§6), re-provisioning (§7.3/§7.4), key rolling
// and decision traces, driven by the official Node device SDK (azure-iot-provisioning-device + -http +
// azure-iot-security-symmetric-key). Enrollments through the official service SDK; linked hubs, renewKey and
// traces (service-API extensions) through raw HTTPS with the service SAS and through the dps CLI.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const dps = require('./lib/dps');

// Fast polling and webhook retries; two source networks mapped to regions for geoLatency.
const SERVE_ARGS = [
  '--mqtt-port', '0', '--retry-after-secs', '2',
  '--service-region', 'lab',
  '--network-region', '127.0.0.2/32=eu', '--network-region', '127.0.0.3/32=us',
  '--region-latency', 'eu:us=90', '--region-latency', 'lab:eu=20', '--region-latency', 'lab:us=60',
  '--webhook-timeout-secs', '1', '--webhook-retries', '2', '--webhook-retry-initial-ms', '50', '--webhook-retry-increment-ms', '50',
];
const WEBHOOK_TIMEOUT_MS = 1000;

let svc; // shared by every test but the first (which needs a hub set of its own)
let sc;
let hook;

before(async () => {
  svc = await dps.startService({ extraArgs: SERVE_ARGS });
  sc = dps.serviceClient(svc);
  hook = await startWebhook();
});
after(async () => {
  if (hook) await hook.close();
  if (svc) await svc.stop();
});

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/**
 * A custom-allocation webhook (§6) on 127.0.0.1: answers are scripted per registration id
 * (`script(id, [{ status, body, delayMs }, ...])`, consumed in turn, the last one repeats); every request is
 * recorded per registration id.
 */
async function startWebhook() {
  const scripts = new Map();
  const received = new Map();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body = null;
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (_) { /* recorded as null */ }
      const id = body && body.deviceRuntimeContext && body.deviceRuntimeContext.registrationId;
      if (!received.has(id)) received.set(id, []);
      received.get(id).push({ url: req.url, method: req.method, headers: req.headers, body });
      const answers = scripts.get(id) || [{ status: 500, body: {} }];
      const a = answers.length > 1 ? answers.shift() : answers[0];
      setTimeout(() => {
        if (res.destroyed) return;
        const text = a.body === undefined ? '' : JSON.stringify(a.body);
        res.writeHead(a.status, { 'content-type': 'application/json' });
        res.end(text);
      }, a.delayMs || 0);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/api/allocate?code=function-secret`,
    script: (id, answers) => scripts.set(id, [...answers]),
    received: (id) => received.get(id) || [],
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** Await a registration that must fail; returns the SDK error. */
async function registrationError(promise) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    return err;
  }
  assert.fail('registration unexpectedly succeeded: ' + JSON.stringify(result));
  return undefined;
}

/** §1.6 Node SDK on status `failed`: DeviceRegistrationFailedError with the operation status as err.result. */
function assertFailedWith(err, errorCode, what) {
  // azure-iot-common's DeviceRegistrationFailedError names itself 'ProvisioningRegistrationFailedError'
  assert.equal(err.constructor.name, 'DeviceRegistrationFailedError', `${what}: got ${err.constructor.name} ${err.name}: ${err.message}`);
  assert.equal(err.result.status, 'failed', `${what}: ${JSON.stringify(err.result)}`);
  const rs = err.result.registrationState;
  assert.equal(rs.status, 'failed', `${what}: ${JSON.stringify(rs)}`);
  assert.equal(rs.errorCode, errorCode, `${what}: ${JSON.stringify(rs)}`);
  assert.equal(typeof rs.errorMessage, 'string', `${what}: errorMessage`);
  assert.equal(rs.assignedHub, undefined, `${what}: a failed device gets no hub`);
}

async function createGroup(extra = {}) {
  const enrollmentGroupId = dps.uid('alloc-grp');
  const primaryKey = dps.randomKey();
  const secondaryKey = dps.randomKey();
  const attestation = { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } };
  const res = await sc.createOrUpdateEnrollmentGroup({ enrollmentGroupId, attestation, ...extra });
  return { enrollmentGroupId, primaryKey, secondaryKey, attestation, group: res.responseBody, key: (id) => dps.deriveKey(primaryKey, id) };
}

async function createIndividual(extra = {}) {
  const registrationId = extra.registrationId || dps.uid('alloc-ind');
  const primaryKey = dps.randomKey();
  const secondaryKey = dps.randomKey();
  const attestation = { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } };
  const res = await sc.createOrUpdateIndividualEnrollment({ registrationId, attestation, ...extra });
  return { registrationId, primaryKey, secondaryKey, attestation, enrollment: res.responseBody };
}

/** Replace fields of an individual enrollment (current etag as If-Match; keys kept). */
async function updateIndividual(e, changes) {
  const cur = (await sc.getIndividualEnrollment(e.registrationId)).responseBody;
  return (await sc.createOrUpdateIndividualEnrollment({ ...cur, attestation: e.attestation, ...changes })).responseBody;
}

const hubOf = (r) => r.assignedHub;
const deviceIds = (list) => list.map((d) => d.deviceId);
const uniqueHub = (name) => `${dps.uid(name)}.hub.test`;

function shares(results, hubs) {
  const out = {};
  for (const h of hubs) out[h] = results.filter((r) => r.assignedHub === h).length / results.length;
  return out;
}

// ---------------------------------------------------------------------------------------------
// 1. hashed: weighted rendezvous hash
// ---------------------------------------------------------------------------------------------

test('§7.2 hashed over hubs weighted 1:2:3: shares follow the weights, repeats stay, a fourth hub takes only its share', async (t) => {
  // A service of its own: the group names no hubs, so every linked hub is a candidate (§7.2 rule 1).
  const own = await dps.startService({ extraArgs: ['--mqtt-port', '0', '--retry-after-secs', '2'] });
  try {
    const osc = dps.serviceClient(own);
    await dps.runCli(own, ['hub', 'remove', dps.DEFAULT_HUB]);
    const hubs = ['w1.hub.test', 'w2.hub.test', 'w3.hub.test'];
    await dps.runCli(own, ['hub', 'add', hubs[0], '--weight', '1', '--region', 'eu']);
    await dps.linkHub(own, hubs[1], { weight: 2, region: 'eu' });
    await dps.linkHub(own, hubs[2], { weight: 3, region: 'us' });
    const listed = await dps.listHubs(own);
    assert.deepEqual([...listed].sort(), hubs, `linked hubs: ${JSON.stringify(listed)}`);

    const groupKey = dps.randomKey();
    await osc.createOrUpdateEnrollmentGroup({ enrollmentGroupId: 'fleet', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: dps.randomKey() } } });
    // Fixed ids on a fresh service, so the run is reproducible: 60 random ids under a fair weighted hash
    // stray beyond ±10 points about one run in five (this sample: 11/21/28 of the ideal 10/20/30).
    const ids = Array.from({ length: 60 }, (_, i) => `sensor-${String(i).padStart(3, '0')}`);
    const registerAll = () => dps.mapLimit(ids, 15, (id) => dps.registerSymmetricKey(own, id, dps.deriveKey(groupKey, id)));

    const first = await registerAll();
    first.forEach((r, i) => {
      assert.equal(r.status, 'assigned', `${ids[i]}: ${JSON.stringify(r)}`);
      assert.equal(r.substatus, 'initialAssignment');
    });
    const got = shares(first, hubs);
    t.diagnostic(`shares (weights 1:2:3): ${JSON.stringify(got)}`);
    [1, 2, 3].forEach((w, i) => {
      const want = w / 6;
      assert.ok(Math.abs(got[hubs[i]] - want) <= 0.10,
        `${hubs[i]} (weight ${w}) got ${(got[hubs[i]] * 100).toFixed(1)} % of 60 devices, want ${(want * 100).toFixed(1)} ± 10 points; all: ${JSON.stringify(got)}`);
    });

    // The same devices again: nobody moves (stable hash), nothing to migrate.
    const again = await registerAll();
    const movedAgain = again.filter((r, i) => r.assignedHub !== first[i].assignedHub).map((r) => `${r.registrationId}: ${first.find((f) => f.registrationId === r.registrationId).assignedHub} → ${r.assignedHub}`);
    assert.deepEqual(movedAgain, [], 'devices moved although the hub set did not change');
    again.forEach((r) => assert.equal(r.substatus, 'initialAssignment', `${r.registrationId} re-registered on the same hub: ${r.substatus}`));

    // A fourth hub: devices only ever move TO it, and some do.
    const newHub = 'w4.hub.test';
    await dps.runCli(own, ['hub', 'add', newHub, '--weight', '2', '--region', 'us']);
    const third = await registerAll();
    const moved = [];
    third.forEach((r, i) => {
      if (r.assignedHub !== first[i].assignedHub) {
        assert.equal(r.assignedHub, newHub, `${ids[i]} moved from ${first[i].assignedHub} to ${r.assignedHub}, not to the new hub`);
        assert.equal(r.substatus, 'deviceDataMigrated', `${ids[i]} moved hub: substatus ${r.substatus}`);
        moved.push({ id: ids[i], from: first[i].assignedHub });
      } else {
        assert.equal(r.substatus, 'initialAssignment', `${ids[i]} stayed: substatus ${r.substatus}`);
      }
    });
    t.diagnostic(`moved to the fourth hub: ${moved.length} of 60`);
    assert.ok(moved.length > 0, 'the new hub (weight 2 of 8) took no device');
    assert.ok(moved.length <= 60 * 0.25 + 10, `${moved.length} of 60 moved; expected about 25 %`);

    // §7.4 the built-in registry: the new hub holds exactly the movers; the old hubs lost them.
    const onNew = (await dps.runCli(own, ['hub', 'devices', newHub, '--output', 'json'])).json;
    assert.deepEqual(deviceIds(onNew).sort(), moved.map((m) => m.id).sort(), 'dps hub devices of the new hub');
    for (const h of hubs) {
      const ids_ = deviceIds(await dps.hubDevices(own, h));
      const stayed = third.filter((r) => r.assignedHub === h).map((r) => r.registrationId);
      assert.deepEqual(ids_.sort(), stayed.sort(), `identities on ${h} after the move`);
    }
    for (const d of onNew) {
      assert.equal(d.authenticationType, 'sas', JSON.stringify(d));
      assert.equal(d.iotEdge, false);
      assert.equal(d.registrationId, d.deviceId);
    }

    // Decision trace of one mover: hashed over four candidates, the winner has the top score.
    const tr = await dps.registrationTrace(own, moved[0].id);
    const a = tr.trace.allocation;
    assert.equal(a.policy, 'hashed', JSON.stringify(tr));
    assert.deepEqual(a.candidates.map((c) => c.hub).sort(), [...hubs, newHub].sort());
    const top = [...a.candidates].sort((x, y) => y.score - x.score)[0];
    assert.equal(top.hub, newHub, `the highest score must win: ${JSON.stringify(a.candidates)}`);
    assert.deepEqual(Object.fromEntries(a.candidates.map((c) => [c.hub, c.weight])), { 'w1.hub.test': 1, 'w2.hub.test': 2, 'w3.hub.test': 3, 'w4.hub.test': 2 });
    assert.equal(tr.trace.substatus, 'deviceDataMigrated');
    assert.ok(tr.trace.why.includes(moved[0].from), `why names the previous hub: ${tr.trace.why}`);
  } finally {
    await own.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// 2. static and geoLatency
// ---------------------------------------------------------------------------------------------

test('§7.2 static: the enrollment\'s single hub, whatever the weights; static with two hubs is refused (400)', async () => {
  const light = uniqueHub('static-light');
  const heavy = uniqueHub('static-heavy');
  await dps.linkHub(svc, light, { weight: 1 });
  await dps.linkHub(svc, heavy, { weight: 1000 });
  const g = await createGroup({ allocationPolicy: 'static', iotHubs: [light] });
  const ids = Array.from({ length: 4 }, () => dps.uid('static'));
  const results = await Promise.all(ids.map((id) => dps.registerSymmetricKey(svc, id, g.key(id))));
  results.forEach((r) => assert.equal(r.assignedHub, light, JSON.stringify(r)));
  const t = await dps.registrationTrace(svc, ids[0]);
  assert.equal(t.trace.allocation.policy, 'static', JSON.stringify(t.trace));
  assert.equal(t.enrollment.kind, 'group');
  assert.equal(t.enrollment.id, g.enrollmentGroupId);

  // §7.2 rule 5: static needs exactly one hub — this service refuses such an enrollment up front.
  await dps.expectHttpError(createIndividual({ allocationPolicy: 'static', iotHubs: [light, heavy] }), 400, assert);
});

test('§7.2 geoLatency: devices from 127.0.0.2 (eu) and 127.0.0.3 (us) reach their region\'s hub; 127.0.0.1 → service region', async () => {
  const eu = uniqueHub('geo-eu');
  const us = uniqueHub('geo-us');
  await dps.linkHub(svc, eu, { weight: 1, region: 'eu' });
  await dps.linkHub(svc, us, { weight: 1000, region: 'us' }); // weight must not beat latency
  const g = await createGroup({ allocationPolicy: 'geoLatency', iotHubs: [eu, us] });
  const cases = [
    { from: '127.0.0.2', region: 'eu', hub: eu, latency: { [eu]: 0, [us]: 90 } },
    { from: '127.0.0.3', region: 'us', hub: us, latency: { [eu]: 90, [us]: 0 } },
    { from: '127.0.0.1', region: 'lab', hub: eu, latency: { [eu]: 20, [us]: 60 } }, // no mapped network → lab
  ];
  const runs = cases.flatMap((c) => Array.from({ length: 3 }, () => ({ ...c, id: dps.uid(`geo-${c.region}`) })));
  const results = await Promise.all(runs.map((c) => dps.registerSymmetricKeyFrom(svc, c.from, c.id, g.key(c.id))));
  results.forEach((r, i) => assert.equal(r.assignedHub, runs[i].hub, `device from ${runs[i].from}: ${JSON.stringify(r)}`));

  for (const c of cases) {
    const id = runs.find((r) => r.from === c.from).id;
    const a = (await dps.registrationTrace(svc, id)).trace.allocation;
    assert.equal(a.policy, 'geoLatency', JSON.stringify(a));
    assert.equal(a.deviceRegion, c.region, `${c.from}: ${JSON.stringify(a)}`);
    assert.equal(a.hub, c.hub);
    assert.deepEqual(Object.fromEntries(a.candidates.map((x) => [x.hub, x.latencyMs])), c.latency, `${c.from}: ${JSON.stringify(a.candidates)}`);
    assert.deepEqual(Object.fromEntries(a.candidates.map((x) => [x.hub, x.region])), { [eu]: 'eu', [us]: 'us' });
    assert.equal(a.candidates[0].hub, c.hub, 'lowest latency first');
  }
});

// ---------------------------------------------------------------------------------------------
// 3. custom allocation webhook
// ---------------------------------------------------------------------------------------------

test('§6.1/§6.2 custom webhook: request shape; its hub, initial twin and payload reach the device and the hub', async () => {
  const a = uniqueHub('cust-a');
  const b = uniqueHub('cust-b');
  await dps.linkHub(svc, a);
  await dps.linkHub(svc, b);
  const def = { webhookUrl: hook.url, apiVersion: '2021-10-01' };
  const g = await createGroup({ allocationPolicy: 'custom', customAllocationDefinition: def, iotHubs: [a, b], initialTwin: { tags: { from: 'enrollment' } } });
  const id = dps.uid('cust-ok');
  const twin = { tags: { line: 7, plant: 'north' }, properties: { desired: { rate: 5 } } };
  const payload = { hello: 'device', n: [1, 2, 3] };
  hook.script(id, [{ status: 200, body: { iotHubHostName: b, initialTwin: twin, payload } }]);

  const result = await dps.registerSymmetricKey(svc, id, g.key(id), { payload: { model: 't-100' } });
  assert.equal(result.status, 'assigned');
  assert.equal(result.assignedHub, b);
  assert.equal(result.deviceId, id);
  assert.equal(result.substatus, 'initialAssignment');
  assert.deepEqual(result.payload, payload, 'registrationState.payload = the webhook\'s payload (§6.2)');
  const state = (await sc.getDeviceRegistrationState(id)).responseBody;
  assert.deepEqual(state.payload, payload, 'the registration record keeps the payload');

  // §6.1 what the webhook received
  const reqs = hook.received(id);
  assert.equal(reqs.length, 1);
  assert.equal(reqs[0].method, 'POST');
  assert.equal(reqs[0].url, '/api/allocate?code=function-secret', 'full URL including ?code=');
  const body = reqs[0].body;
  assert.equal(body.deviceRuntimeContext.registrationId, id);
  assert.deepEqual(body.deviceRuntimeContext.payload, { model: 't-100' });
  assert.deepEqual(body.deviceRuntimeContext.symmetricKey, {});
  assert.equal(body.deviceRuntimeContext.currentIotHubHostName, undefined, 'first registration: no current hub');
  assert.deepEqual(body.linkedHubs, [a, b]);
  assert.equal(body.enrollmentGroup.enrollmentGroupId, g.enrollmentGroupId);
  assert.deepEqual(body.enrollmentGroup.attestation, { type: 'symmetricKey' }, 'no secrets for the webhook');
  assert.equal(JSON.stringify(body).includes(g.primaryKey), false, 'the group key must not reach the webhook');
  assert.equal(body.individualEnrollment, undefined);

  // §7.4 the hub identity has the webhook's twin (not the enrollment's)
  const dev = (await dps.hubDevices(svc, b)).find((d) => d.deviceId === id);
  assert.ok(dev, `no identity for ${id} on ${b}`);
  assert.deepEqual(dev.initialTwin.tags, twin.tags, JSON.stringify(dev));
  assert.deepEqual(dev.initialTwin.properties.desired, twin.properties.desired, JSON.stringify(dev));
  assert.equal(deviceIds(await dps.hubDevices(svc, a)).includes(id), false);

  // Re-registration tells the webhook where the device is (§6.1 currentIotHubHostName / currentDeviceId).
  hook.script(id, [{ status: 200, body: { iotHubHostName: b } }]);
  const again = await dps.registerSymmetricKey(svc, id, g.key(id));
  assert.equal(again.assignedHub, b);
  const ctx = hook.received(id)[1].body.deviceRuntimeContext;
  assert.equal(ctx.currentIotHubHostName, b, JSON.stringify(ctx));
  assert.equal(ctx.currentDeviceId, id);

  // Individual enrollments are sent as `individualEnrollment`.
  const e = await createIndividual({ allocationPolicy: 'custom', customAllocationDefinition: def, iotHubs: [a, b] });
  hook.script(e.registrationId, [{ status: 200, body: { iotHubHostName: a } }]);
  const r = await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey);
  assert.equal(r.assignedHub, a);
  assert.equal(r.payload, undefined, 'no payload when the webhook returned none');
  const ib = hook.received(e.registrationId)[0].body;
  assert.equal(ib.individualEnrollment.registrationId, e.registrationId);
  assert.deepEqual(ib.individualEnrollment.attestation, { type: 'symmetricKey' });
  assert.equal(ib.enrollmentGroup, undefined);
});

test('§6.3 custom webhook failures as the SDK sees them: 401 → 400209, empty/null hub → 400208, 500 / unknown hub / time-out → 400207, ≥429 retried', async () => {
  const a = uniqueHub('custf-a');
  await dps.linkHub(svc, a);
  const g = await createGroup({ allocationPolicy: 'custom', customAllocationDefinition: { webhookUrl: hook.url, apiVersion: '2021-10-01' }, iotHubs: [a] });
  const cases = [
    { name: '401', answers: [{ status: 401, body: {} }], code: 400209, calls: 1 },
    { name: 'empty hub', answers: [{ status: 200, body: { iotHubHostName: '' } }], code: 400208, calls: 1 },
    { name: 'null hub', answers: [{ status: 200, body: { iotHubHostName: null, payload: { x: 1 } } }], code: 400208, calls: 1 },
    { name: '500', answers: [{ status: 500, body: { error: 'boom' } }], code: 400207, calls: 3 }, // 500 ≥ 429: retried, then failed
    { name: '404', answers: [{ status: 404 }], code: 400207, calls: 1 },
    { name: 'hub not linked', answers: [{ status: 200, body: { iotHubHostName: 'elsewhere.hub.test' } }], code: 400207, calls: 1 },
    // longer than --webhook-timeout-secs 1: retried (--webhook-retries 2), then 400207
    { name: 'slow', answers: [{ status: 200, body: { iotHubHostName: a }, delayMs: WEBHOOK_TIMEOUT_MS + 1500 }], code: 400207, calls: 3 },
    { name: 'always 503', answers: [{ status: 503, body: {} }], code: 400207, calls: 3 },
  ].map((c) => ({ ...c, id: dps.uid(`custf-${c.name.replace(/\W+/g, '')}`) }));
  cases.forEach((c) => hook.script(c.id, c.answers));
  const retried = dps.uid('custf-retried');
  hook.script(retried, [{ status: 429 }, { status: 503 }, { status: 200, body: { IotHubHostname: a, payload: { third: true } } }]);

  const [errors, ok] = await Promise.all([
    Promise.all(cases.map((c) => registrationError(dps.registerSymmetricKey(svc, c.id, g.key(c.id))))),
    dps.registerSymmetricKey(svc, retried, g.key(retried)),
  ]);
  cases.forEach((c, i) => {
    assertFailedWith(errors[i], c.code, c.name);
    assert.equal(hook.received(c.id).length, c.calls, `${c.name}: webhook calls`);
  });
  // ≥ 429 is retried and the device keeps polling until the answer (case-insensitive member name, §6.2)
  assert.equal(ok.status, 'assigned', JSON.stringify(ok));
  assert.equal(ok.assignedHub, a);
  assert.deepEqual(ok.payload, { third: true });
  assert.equal(hook.received(retried).length, 3);

  // A failed registration leaves a failed record with the code (§5.3 DeviceRegistrationState).
  const st = (await sc.getDeviceRegistrationState(cases[0].id)).responseBody;
  assert.equal(st.status, 'failed');
  assert.equal(st.errorCode, 400209);
  // …and the trace lists the attempts of the slow webhook.
  const slow = cases.find((c) => c.name === 'slow');
  const t = await dps.registrationTrace(svc, slow.id);
  assert.equal(t.trace.allocation.attempts.length, 3, JSON.stringify(t.trace));
  assert.equal(t.trace.error.code, 400207);
});

test('§7.3/§1.8 the same device registering while its first registration is still assigning → 409203', async () => {
  const a = uniqueHub('conc');
  await dps.linkHub(svc, a);
  const e = await createIndividual({ allocationPolicy: 'custom', customAllocationDefinition: { webhookUrl: hook.url, apiVersion: '2021-10-01' }, iotHubs: [a] });
  hook.script(e.registrationId, [{ status: 200, body: { iotHubHostName: a }, delayMs: 800 }]);
  const first = dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey);
  await dps.sleep(250);
  const err = await registrationError(dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey));
  assert.equal(dps.errorStatus(err), 409, `${err.name}: ${err.message}`);
  assert.equal(dps.errorBody(err).errorCode, 409203, JSON.stringify(dps.errorBody(err)));
  const r = await first;
  assert.equal(r.assignedHub, a);
  // free again once finished
  hook.script(e.registrationId, [{ status: 200, body: { iotHubHostName: a } }]);
  assert.equal((await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey)).assignedHub, a);
});

// ---------------------------------------------------------------------------------------------
// 4. re-provisioning
// ---------------------------------------------------------------------------------------------

test('§7.3/§7.4 re-provisioning policies: migrate / reset / never — substatus, hub, old identity, twin', async () => {
  const a = uniqueHub('rp-a');
  const b = uniqueHub('rp-b');
  await dps.linkHub(svc, a);
  await dps.linkHub(svc, b);
  const cases = [
    { name: 'migrate', policy: { updateHubAssignment: true, migrateDeviceData: true }, substatus: 'deviceDataMigrated', hub: b, oldKept: false, site: 'one' },
    { name: 'reset', policy: { updateHubAssignment: true, migrateDeviceData: false }, substatus: 'deviceDataReset', hub: b, oldKept: false, site: 'two' },
    { name: 'never', policy: { updateHubAssignment: false, migrateDeviceData: true }, substatus: 'initialAssignment', hub: a, oldKept: true, site: 'one' },
  ];
  await Promise.all(cases.map(async (c) => {
    const e = await createIndividual({ registrationId: dps.uid(`rp-${c.name}`), iotHubs: [a], reprovisionPolicy: c.policy, initialTwin: { tags: { site: 'one' }, properties: { desired: { v: 1 } } } });
    const first = await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey);
    assert.equal(first.assignedHub, a);
    assert.equal(first.substatus, 'initialAssignment');
    await updateIndividual(e, { iotHubs: [b], initialTwin: { tags: { site: 'two' }, properties: { desired: { v: 2 } } } });
    const second = await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey);
    assert.equal(second.substatus, c.substatus, `${c.name}: ${JSON.stringify(second)}`);
    assert.equal(second.assignedHub, c.hub, `${c.name}: hub`);
    assert.equal(second.deviceId, e.registrationId);
    const onA = (await dps.hubDevices(svc, a)).find((d) => d.deviceId === e.registrationId);
    const onB = (await dps.hubDevices(svc, b)).find((d) => d.deviceId === e.registrationId);
    assert.equal(Boolean(onA), c.oldKept, `${c.name}: identity on the old hub ${c.oldKept ? 'kept' : 'removed'}`);
    assert.equal(Boolean(onB), !c.oldKept, `${c.name}: identity on the new hub`);
    const dev = onA || onB;
    assert.equal(dev.initialTwin.tags.site, c.site, `${c.name}: twin ${JSON.stringify(dev.initialTwin)}`);
    assert.equal(dev.initialTwin.properties.desired.v, c.site === 'one' ? 1 : 2, `${c.name}: desired ${JSON.stringify(dev.initialTwin)}`);
    const t = (await dps.registrationTrace(svc, e.registrationId)).trace;
    assert.equal(typeof t.why, 'string');
    assert.ok(t.why.length > 0, `${c.name}: trace.why`);
    if (c.name === 'never') assert.equal(t.allocation.policy, 'keep', `${c.name}: ${JSON.stringify(t.allocation)}`);
    else assert.equal(t.substatus, c.substatus);
  }));
});

test('§7.3 moving back to the first hub with migration → reprovisionedToInitialAssignment; reset on the same hub → deviceDataReset', async () => {
  const a = uniqueHub('rb-a');
  const b = uniqueHub('rb-b');
  await dps.linkHub(svc, a);
  await dps.linkHub(svc, b);
  const e = await createIndividual({ iotHubs: [a], initialTwin: { tags: { gen: 1 } } });
  assert.equal((await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey)).substatus, 'initialAssignment');
  for (const [hub, substatus] of [[b, 'deviceDataMigrated'], [a, 'reprovisionedToInitialAssignment']]) {
    await updateIndividual(e, { iotHubs: [hub] });
    const r = await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey);
    assert.equal(r.assignedHub, hub);
    assert.equal(r.substatus, substatus, `to ${hub}: ${JSON.stringify(r)}`);
    const other = hub === a ? b : a;
    assert.equal(deviceIds(await dps.hubDevices(svc, other)).includes(e.registrationId), false, `identity left on ${other}`);
    const dev = (await dps.hubDevices(svc, hub)).find((d) => d.deviceId === e.registrationId);
    assert.deepEqual(dev.initialTwin.tags, { gen: 1 }, 'twin carried along');
  }

  // reset policy, hub unchanged: the initial twin is applied again (factory reset).
  await updateIndividual(e, { reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false }, initialTwin: { tags: { gen: 2 } } });
  const r = await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey);
  assert.equal(r.assignedHub, a);
  assert.equal(r.substatus, 'deviceDataReset');
  const dev = (await dps.hubDevices(svc, a)).find((d) => d.deviceId === e.registrationId);
  assert.deepEqual(dev.initialTwin.tags, { gen: 2 });
});

// ---------------------------------------------------------------------------------------------
// 5. key rolling
// ---------------------------------------------------------------------------------------------

test('key rolling (individual): renewKey primary → old key refused at once (401002), new key provisions, secondary unchanged', async () => {
  const e = await createIndividual();
  await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey);
  const renewed = await dps.serviceCall(svc, 'POST', `/enrollments/${e.registrationId}/renewKey`, { keyType: 'primary' });
  assert.equal(renewed.type, 'symmetricKey', JSON.stringify(renewed));
  const newKey = renewed.symmetricKey.primaryKey;
  assert.equal(Buffer.from(newKey, 'base64').length, 64);
  assert.notEqual(newKey, e.primaryKey);
  assert.equal(renewed.symmetricKey.secondaryKey, e.secondaryKey, 'keyType primary keeps the secondary key');
  const att = (await sc.getIndividualEnrollmentAttestationMechanism(e.registrationId)).responseBody;
  assert.equal(att.symmetricKey.primaryKey, newKey, 'attestationmechanism shows the new key');

  const err = await registrationError(dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey));
  assert.equal(err.name, 'UnauthorizedError', `${err.name}: ${err.message}`);
  assert.equal(dps.errorBody(err).errorCode, 401002);
  const ok = await dps.registerSymmetricKey(svc, e.registrationId, newKey);
  assert.equal(ok.status, 'assigned');
  assert.equal((await dps.registerSymmetricKey(svc, e.registrationId, e.secondaryKey)).status, 'assigned');

  // the CLI: dps enrollment renew-key
  const cli = (await dps.runCli(svc, ['enrollment', 'renew-key', '--enrollment-id', e.registrationId, '--key-type', 'primary', '--output', 'json'])).json;
  const cliKey = cli.symmetricKey.primaryKey;
  assert.notEqual(cliKey, newKey);
  const err2 = await registrationError(dps.registerSymmetricKey(svc, e.registrationId, newKey));
  assert.equal(dps.errorBody(err2).errorCode, 401002);
  assert.equal((await dps.registerSymmetricKey(svc, e.registrationId, cliKey)).status, 'assigned');

  // swap: both keys stay valid, their roles exchange.
  const swapped = await dps.serviceCall(svc, 'POST', `/enrollments/${e.registrationId}/renewKey`, { keyType: 'swap' });
  assert.equal(swapped.symmetricKey.primaryKey, e.secondaryKey);
  assert.equal(swapped.symmetricKey.secondaryKey, cliKey);
  assert.equal((await dps.registerSymmetricKey(svc, e.registrationId, cliKey)).status, 'assigned');
});

test('key rolling (group): renew-key both → every device\'s old derived keys refused, new derived keys provision', async () => {
  const g = await createGroup();
  const ids = [dps.uid('roll-g'), dps.uid('roll-g')];
  await Promise.all(ids.map((id) => dps.registerSymmetricKey(svc, id, g.key(id))));
  const cli = (await dps.runCli(svc, ['enrollment-group', 'renew-key', '--group-id', g.enrollmentGroupId, '--key-type', 'both', '--output', 'json'])).json;
  const { primaryKey, secondaryKey } = cli.symmetricKey;
  assert.notEqual(primaryKey, g.primaryKey);
  assert.notEqual(secondaryKey, g.secondaryKey);
  for (const id of ids) {
    for (const old of [g.primaryKey, g.secondaryKey]) {
      const err = await registrationError(dps.registerSymmetricKey(svc, id, dps.deriveKey(old, id)));
      assert.equal(err.name, 'UnauthorizedError', `${err.name}: ${err.message}`);
      assert.equal(dps.errorBody(err).errorCode, 401002);
    }
  }
  const fresh = dps.uid('roll-g-new');
  const results = await Promise.all([...ids, fresh].map((id) => dps.registerSymmetricKey(svc, id, dps.deriveKey(primaryKey, id))));
  results.forEach((r) => assert.equal(r.status, 'assigned'));
  assert.equal((await dps.registerSymmetricKey(svc, ids[0], dps.deriveKey(secondaryKey, ids[0]))).status, 'assigned');

  // the REST form for groups, keyType primary
  const r = await dps.serviceCall(svc, 'POST', `/enrollmentGroups/${g.enrollmentGroupId}/renewKey`, { keyType: 'primary' });
  assert.notEqual(r.symmetricKey.primaryKey, primaryKey);
  assert.equal(r.symmetricKey.secondaryKey, secondaryKey);
  const err = await registrationError(dps.registerSymmetricKey(svc, fresh, dps.deriveKey(primaryKey, fresh)));
  assert.equal(dps.errorBody(err).errorCode, 401002);
  assert.equal((await dps.registerSymmetricKey(svc, fresh, dps.deriveKey(r.symmetricKey.primaryKey, fresh))).status, 'assigned');

  // an unknown keyType is a 400
  const bad = await dps.serviceRequest(svc, 'POST', `/enrollmentGroups/${g.enrollmentGroupId}/renewKey`, { keyType: 'tertiary' });
  assert.equal(bad.status, 400, JSON.stringify(bad.body));
});

// ---------------------------------------------------------------------------------------------
// 6. decision traces (API and `dps registration explain`)
// ---------------------------------------------------------------------------------------------

/** The CLI's JSON equals the API's trace; the table names the policy and the why. */
async function explain(id) {
  const api = await dps.registrationTrace(svc, id);
  const cli = (await dps.runCli(svc, ['registration', 'explain', id, '--output', 'json'])).json;
  assert.deepEqual(cli, api, 'dps registration explain --output json = GET /registrations/{id}/trace');
  const table = (await dps.runCli(svc, ['registration', 'explain', id, '--output', 'table'], { json: false })).stdout;
  return { api, table };
}

test('decision traces: weighted, custom and re-provisioned registrations say what happened (API + dps registration explain)', async () => {
  const light = uniqueHub('tr-light');
  const heavy = uniqueHub('tr-heavy');
  await dps.linkHub(svc, light, { weight: 1 });
  await dps.linkHub(svc, heavy, { weight: 3 });

  // weighted
  const g = await createGroup({ allocationPolicy: 'hashed', iotHubs: [light, heavy] });
  const wid = dps.uid('tr-hashed');
  const w = await dps.registerSymmetricKey(svc, wid, g.key(wid));
  const { api: wt, table: wtable } = await explain(wid);
  assert.equal(wt.registrationState.assignedHub, w.assignedHub);
  assert.equal(wt.registrationState.status, 'assigned');
  assert.deepEqual(wt.enrollment, { kind: 'group', id: g.enrollmentGroupId });
  assert.equal(wt.attestation, 'symmetricKey');
  const wa = wt.trace.allocation;
  assert.equal(wa.policy, 'hashed');
  assert.deepEqual(Object.fromEntries(wa.candidates.map((c) => [c.hub, c.weight])), { [light]: 1, [heavy]: 3 });
  wa.candidates.forEach((c) => assert.equal(typeof c.score, 'number', JSON.stringify(c)));
  assert.equal([...wa.candidates].sort((x, y) => y.score - x.score)[0].hub, w.assignedHub, 'the top score won');
  assert.equal(typeof wa.reason, 'string');
  assert.ok(wa.reason.includes('hashed'), wa.reason);
  assert.equal(wt.trace.substatus, 'initialAssignment');
  assert.equal(wt.trace.connector.hub, w.assignedHub);
  assert.equal(typeof wt.trace.why, 'string');
  for (const s of ['hashed', light, heavy, w.assignedHub, wt.trace.why]) assert.ok(wtable.includes(s), `table lacks ${s}:\n${wtable}`);

  // custom (one 503, then an answer)
  const cid = dps.uid('tr-custom');
  const ce = await createIndividual({ registrationId: cid, allocationPolicy: 'custom', customAllocationDefinition: { webhookUrl: hook.url, apiVersion: '2021-10-01' }, iotHubs: [light, heavy] });
  hook.script(cid, [{ status: 503 }, { status: 200, body: { iotHubHostName: light, payload: { p: 1 }, initialTwin: { tags: { t: 1 } } } }]);
  const c = await dps.registerSymmetricKey(svc, cid, ce.primaryKey);
  assert.equal(c.assignedHub, light);
  const { api: ct, table: ctable } = await explain(cid);
  const ca = ct.trace.allocation;
  assert.equal(ca.policy, 'custom');
  assert.equal(ca.webhook, hook.url.split('?')[0], 'the function key stays out of the trace');
  assert.equal(JSON.stringify(ct).includes('function-secret'), false, 'no ?code= anywhere in the trace');
  assert.deepEqual(ca.linkedHubs, [light, heavy]);
  assert.deepEqual(ca.attempts.map((x) => x.status), [503, 200], JSON.stringify(ca.attempts));
  assert.equal(ca.hub, light);
  assert.deepEqual(ct.enrollment, { kind: 'individual', id: cid });
  assert.equal(ct.trace.substatus, 'initialAssignment');
  assert.equal(ct.trace.twin, 'initial twin applied', JSON.stringify(ct.trace));
  for (const s of ['custom', light]) assert.ok(ctable.includes(s), `table lacks ${s}:\n${ctable}`);
  assert.equal(ctable.includes('function-secret'), false);

  // re-provisioned (migrate to the other hub)
  const re = await createIndividual({ iotHubs: [light], initialTwin: { tags: { keep: 'me' } } });
  await dps.registerSymmetricKey(svc, re.registrationId, re.primaryKey);
  await updateIndividual(re, { iotHubs: [heavy] });
  const moved = await dps.registerSymmetricKey(svc, re.registrationId, re.primaryKey);
  assert.equal(moved.substatus, 'deviceDataMigrated');
  const { api: rt, table: rtable } = await explain(re.registrationId);
  assert.equal(rt.registrationState.substatus, 'deviceDataMigrated');
  assert.equal(rt.trace.substatus, 'deviceDataMigrated');
  assert.equal(rt.trace.allocation.policy, 'hashed');
  assert.deepEqual(rt.trace.allocation.candidates.map((x) => x.hub), [heavy], 'only the enrollment\'s hub is a candidate');
  assert.ok(rt.trace.why.includes(light), `why names the previous hub: ${rt.trace.why}`);
  assert.equal(rt.trace.twin, 'migrated from the previous hub', JSON.stringify(rt.trace));
  for (const s of ['deviceDataMigrated', heavy, rt.trace.why]) assert.ok(rtable.includes(s), `table lacks ${s}:\n${rtable}`);
});

// ---------------------------------------------------------------------------------------------
// 7. re-provisioning from the service side (`dps registration reprovision`, the console's button)
// ---------------------------------------------------------------------------------------------

test('dps registration reprovision: the registration runs again under the current enrollment; the SDK then gets the new hub', async () => {
  const first = uniqueHub('rp-first');
  const second = uniqueHub('rp-second');
  await dps.linkHub(svc, first);
  await dps.linkHub(svc, second);
  const id = dps.uid('rp-device');
  const key = dps.randomKey();
  const doc = await dps.serviceCall(svc, 'PUT', `/enrollments/${id}`, {
    registrationId: id,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: dps.randomKey() } },
    iotHubs: [first],
  });
  assert.equal((await dps.registerSymmetricKey(svc, id, key)).assignedHub, first);
  await dps.serviceCall(svc, 'PUT', `/enrollments/${id}`, { ...doc, iotHubs: [second] });

  const out = (await dps.runCli(svc, ['registration', 'reprovision', '--registration-id', id, '--output', 'json'])).json;
  assert.equal(out.registrationState.assignedHub, second);
  assert.equal(out.registrationState.substatus, 'deviceDataMigrated');
  assert.deepEqual(await dps.registrationTrace(svc, id), out, 'the answer is the new decision trace');
  assert.ok((await dps.hubDevices(svc, second)).some((d) => d.deviceId === id), 'the identity is in the new hub');
  assert.ok(!(await dps.hubDevices(svc, first)).some((d) => d.deviceId === id), 'and gone from the old one');
  const again = await dps.registerSymmetricKey(svc, id, key);
  assert.equal(again.assignedHub, second);

  const missing = await dps.runCli(svc, ['registration', 'reprovision', '--registration-id', dps.uid('nobody')], { allowFailure: true, json: false });
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /404201/);
});
