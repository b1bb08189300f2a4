'use strict';
// Issue #14 through the official Node device SDK (azure-iot-provisioning-device 1.9.1 with -http, -mqtt 1.8.1 and
// -amqp 1.9.1), over HTTPS, MQTT and AMQP:
// - Ownership (README "Registration ids belong to one enrollment"): an id assigned through group G cannot be
//   claimed with a key derived from group H: 409201, final for every SDK (§1.7); the owner's device still
//   registers; once G is deleted, H may take the id over.
// - `generic_device_errors`: an unknown id, a wrong key and another enrollment's id all answer the same 401002 and
//   message on each transport, so a prober cannot tell which ids are enrolled; without the switch they differ.
// - Overload admission (`max_registrations_in_flight`): beyond the limit a register is answered 429001 with
//   retry-after at once; the SDK surfaces it (HTTPS, AMQP) or backs off by itself (MQTT), and provisions once a
//   slot is free; the refusals are counted as ThrottledRequests{operation="overload"}.

const { test, before, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const dps = require('./lib/dps');

/** A symmetric-key enrollment group; returns its primary key. */
async function createGroup(svc, id, extra = {}) {
  const key = dps.randomKey();
  await dps.serviceCall(svc, 'PUT', `/enrollmentGroups/${id}`, {
    enrollmentGroupId: id,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: dps.randomKey() } },
    ...extra,
  });
  return key;
}

/**
 * Registers `id` with `key` over `transport` ('http' | 'mqtt' | 'amqp') through the official SDK and reduces the
 * outcome to what the tests compare: { ok, result } or { ok: false, status, body } (status: HTTP status, MQTT
 * `res/<status>` topic, or the AMQP error body's errorCode / 1000), plus the SDK's error for transport checks.
 */
async function register(svc, transport, id, key) {
  try {
    if (transport === 'http') return { ok: true, result: await dps.registerSymmetricKey(svc, id, key) };
    if (transport === 'mqtt') return { ok: true, result: (await dps.registerSymmetricKeyMqtt(svc, id, key)).result };
  } catch (err) {
    if (transport === 'http') return { ok: false, status: dps.errorStatus(err), body: dps.errorBody(err), err };
    const topic = err.transportObject && err.transportObject.topic;
    const m = /^\$dps\/registrations\/res\/(\d{3})\//.exec(topic || '');
    assert.ok(m, `MQTT refusal arrives on res/<status>: ${err.name} ${err.message} ${topic}`);
    return { ok: false, status: Number(m[1]), body: err.result, err };
  }
  const [out] = await dps.registerAmqp(svc, [{ registrationId: id, key }]);
  if (out.ok) return { ok: true, result: out.result };
  assert.equal(typeof out.error.body, 'object', `AMQP rejection carries the JSON error body: ${JSON.stringify(out.error)}`);
  return { ok: false, status: Math.floor(out.error.body.errorCode / 1000), body: out.error.body, err: out.error };
}

function assigned(r, id) {
  assert.ok(r.ok, `expected ${id} assigned, got ${r.status} ${JSON.stringify(r.body)}`);
  const state = r.result.registrationState || r.result;
  assert.equal(state.status, 'assigned', JSON.stringify(r.result));
  assert.equal(state.deviceId, id);
  return state;
}

const TRANSPORTS = ['http', 'mqtt', 'amqp'];

describe('ownership: an assigned registration id cannot be claimed through another group', () => {
  let svc;
  before(async () => { svc = await dps.startService({ extraArgs: ['--amqp-port', '0'] }); });
  after(async () => { if (svc) await svc.stop(); });

  for (const transport of TRANSPORTS) {
    test(`${transport}: a key of group H for an id assigned through G → 409201, final; G's device still registers; after G is deleted H takes it over`, async () => {
      const g = dps.uid('own-g');
      const h = dps.uid('own-h');
      const id = dps.uid(`own-${transport}`);
      const gKey = await createGroup(svc, g);
      const hKey = await createGroup(svc, h);
      const first = assigned(await register(svc, transport, id, dps.deriveKey(gKey, id)), id);

      const claim = await register(svc, transport, id, dps.deriveKey(hKey, id));
      assert.equal(claim.ok, false, `the claim through ${h} must be refused: ${JSON.stringify(claim.result)}`);
      assert.equal(claim.status, 409, JSON.stringify(claim.body));
      assert.equal(claim.body.errorCode, 409201, JSON.stringify(claim.body));
      assert.ok(!claim.body.message.includes(g), `the device is not told who owns the id: ${claim.body.message}`);
      if (transport === 'amqp') assert.equal(claim.err.condition, 'com.microsoft:precondition-failed', JSON.stringify(claim.err));

      const trace = (await dps.registrationTrace(svc, id)).trace;
      assert.deepEqual(trace.claimRefused.claimedBy, { kind: 'group', id: h }, JSON.stringify(trace.claimRefused));
      assert.deepEqual(trace.claimRefused.owner, { kind: 'group', id: g }, JSON.stringify(trace.claimRefused));
      const record = await dps.serviceCall(svc, 'GET', `/registrations/${id}`);
      assert.equal(record.assignedHub, first.assignedHub, `the owner's record stays: ${JSON.stringify(record)}`);
      assigned(await register(svc, transport, id, dps.deriveKey(gKey, id)), id);

      await dps.serviceCall(svc, 'DELETE', `/enrollmentGroups/${g}`);
      assigned(await register(svc, transport, id, dps.deriveKey(hKey, id)), id);
      // H owns it now: G's old key is refused even if G comes back.
      const gAgain = await createGroup(svc, g);
      const back = await register(svc, transport, id, dps.deriveKey(gAgain, id));
      assert.equal(back.status, 409, JSON.stringify(back.body));
    });
  }

  test('http: an individual enrollment naming the id takes it over from a group (individual beats group)', async () => {
    const g = dps.uid('own-g');
    const id = dps.uid('own-ind');
    const gKey = await createGroup(svc, g);
    assigned(await register(svc, 'http', id, dps.deriveKey(gKey, id)), id);
    const key = dps.randomKey();
    await dps.serviceCall(svc, 'PUT', `/enrollments/${id}`, {
      registrationId: id,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: dps.randomKey() } },
    });
    assigned(await register(svc, 'http', id, key), id);
  });
});

describe('generic_device_errors: every refusal that could enumerate enrollments looks the same', () => {
  let generic;
  let plain;
  before(async () => {
    generic = await dps.startService({ extraArgs: ['--amqp-port', '0', '--generic-device-errors'] });
    plain = await dps.startService({ extraArgs: ['--amqp-port', '0'] });
  });
  after(async () => {
    if (generic) await generic.stop();
    if (plain) await plain.stop();
  });

  /** Three probes on `svc`: an unknown id, an enrolled id with a wrong key, another group's assigned id. */
  async function probes(svc, transport) {
    const g = dps.uid('gen-g');
    const h = dps.uid('gen-h');
    const gKey = await createGroup(svc, g);
    const hKey = await createGroup(svc, h);
    const owned = dps.uid('gen-owned');
    assigned(await register(svc, 'http', owned, dps.deriveKey(gKey, owned)), owned);
    const enrolled = dps.uid('gen-ind');
    await dps.serviceCall(svc, 'PUT', `/enrollments/${enrolled}`, {
      registrationId: enrolled,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: dps.randomKey(), secondaryKey: dps.randomKey() } },
    });
    return {
      owned,
      unknown: await register(svc, transport, dps.uid('gen-unknown'), dps.randomKey()),
      wrongKey: await register(svc, transport, enrolled, dps.randomKey()),
      otherGroup: await register(svc, transport, owned, dps.deriveKey(hKey, owned)),
    };
  }

  const visible = (r) => ({ status: r.status, errorCode: r.body && r.body.errorCode, message: r.body && r.body.message });

  for (const transport of TRANSPORTS) {
    test(`${transport}: unknown id, wrong key and another group's id answer the same 401002 with the switch on`, async () => {
      const { owned, ...p } = await probes(generic, transport);
      for (const [what, r] of Object.entries(p)) {
        assert.equal(r.ok, false, `${what} must be refused`);
        assert.equal(r.status, 401, `${what}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.errorCode, 401002, `${what}: ${JSON.stringify(r.body)}`);
      }
      assert.deepEqual(visible(p.wrongKey), visible(p.unknown), 'wrong key vs unknown id');
      assert.deepEqual(visible(p.otherGroup), visible(p.unknown), "another group's id vs unknown id");
      if (transport === 'amqp') {
        assert.equal(p.otherGroup.err.condition, p.unknown.err.condition, 'the same AMQP condition');
      }
      // The reason is kept for the operator: the refused claim is in the owned id's trace.
      const trace = (await dps.registrationTrace(generic, owned)).trace;
      assert.ok(trace.claimRefused && trace.claimRefused.why.includes('still exists'), JSON.stringify(trace.claimRefused));
    });

    test(`${transport}: without the switch the same probes are told apart (the switch is what hides them)`, async () => {
      const { owned: _, ...p } = await probes(plain, transport);
      assert.equal(p.otherGroup.status, 409, JSON.stringify(p.otherGroup.body));
      assert.equal(p.otherGroup.body.errorCode, 409201);
      assert.notDeepEqual(visible(p.otherGroup), visible(p.unknown));
    });
  }
});

describe('overload admission: beyond max_registrations_in_flight the SDK is told 429001 and provisions later', () => {
  const HOLD_MS = 4000;
  let svc;
  let hook;
  before(async () => {
    hook = await slowWebhook(HOLD_MS);
    svc = await dps.startService({ extraArgs: ['--amqp-port', '0', '--max-registrations-in-flight', '1', '--retry-after-secs', '2'] });
  });
  after(async () => {
    if (svc) await svc.stop();
    if (hook) await hook.close();
  });

  /** A webhook that answers after `ms`; `hook.next()` resolves when the next request arrives. */
  async function slowWebhook(ms) {
    let waiting = [];
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const w = waiting;
        waiting = [];
        w.forEach((r) => r());
        setTimeout(() => {
          if (res.destroyed) return;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ iotHubHostName: dps.DEFAULT_HUB }));
        }, ms);
      });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${server.address().port}/api/allocate`,
      next: () => new Promise((r) => waiting.push(r)),
      close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
    };
  }

  async function enroll(id, { slow }) {
    const key = dps.randomKey();
    const doc = { registrationId: id, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: dps.randomKey() } } };
    if (slow) Object.assign(doc, { allocationPolicy: 'custom', customAllocationDefinition: { webhookUrl: hook.url, apiVersion: '2021-10-01' } });
    await dps.serviceCall(svc, 'PUT', `/enrollments/${id}`, doc);
    return key;
  }

  const overloadCount = () => dps.metric(svc, 'dps_throttled_requests_total{operation="overload"}');

  /** Starts a holder device whose assignment waits for the webhook; resolves once it holds the only slot. */
  async function holdTheSlot(prefix) {
    const holder = dps.uid(`${prefix}-holder`);
    const key = await enroll(holder, { slow: true });
    const arrived = hook.next();
    const done = dps.registerSymmetricKey(svc, holder, key);
    await arrived;
    return { holder, done };
  }

  test('http: 429001 with retry-after reaches the application while the slot is held; a retry after it provisions', async () => {
    const id = dps.uid('ovl-http');
    const key = await enroll(id, { slow: false });
    const before0 = await overloadCount();
    const { holder, done } = await holdTheSlot('ovl-http');
    const r = await register(svc, 'http', id, key);
    assert.equal(r.ok, false, 'the second device is over the limit');
    assert.equal(r.status, 429, JSON.stringify(r.body));
    assert.equal(r.body.errorCode, 429001);
    assert.equal(r.err.constructor.name, 'ThrottlingError', `${r.err.name}: ${r.err.message}`);
    const wait = Number(r.err.response.headers['retry-after']);
    assert.ok(wait >= 1, `retry-after ${r.err.response.headers['retry-after']}`);
    assert.ok((await overloadCount()) > before0, 'counted as ThrottledRequests{operation="overload"}');
    assigned({ ok: true, result: await done }, holder);
    await dps.sleep(wait * 1000);
    assigned(await register(svc, 'http', id, key), id);
  });

  test('mqtt: res/429 with retry-after; the SDK backs off by itself and provisions once the slot is free', async () => {
    const id = dps.uid('ovl-mqtt');
    const key = await enroll(id, { slow: false });
    const { holder, done } = await holdTheSlot('ovl-mqtt');
    const out = await dps.registerSymmetricKeyMqtt(svc, id, key);
    assigned({ ok: true, result: out.result }, id);
    const refused = out.trace.received.filter((m) => m.topic.startsWith('$dps/registrations/res/429/'));
    assert.ok(refused.length >= 1, `the SDK was refused while the slot was held: ${JSON.stringify(out.trace.received.map((m) => m.topic))}`);
    for (const m of refused) {
      assert.match(m.topic, /^\$dps\/registrations\/res\/429\/\?\$rid=[^&]+&retry-after=\d+$/);
      assert.equal(JSON.parse(m.payload).errorCode, 429001);
    }
    assigned({ ok: true, result: await done }, holder);
  });

  test('amqp: rejected as device-container-throttled with 429001 and retry-after; backing off provisions', async () => {
    const id = dps.uid('ovl-amqp');
    const key = await enroll(id, { slow: false });
    const before0 = await overloadCount();
    const { holder, done } = await holdTheSlot('ovl-amqp');
    for (let attempt = 0; attempt < 10; attempt++) {
      const [out] = await dps.registerAmqp(svc, [{ registrationId: id, key }]);
      if (out.ok) {
        assigned({ ok: true, result: out.result }, id);
        break;
      }
      assert.equal(out.error.condition, 'com.microsoft:device-container-throttled', JSON.stringify(out.error));
      assert.equal(out.error.body.errorCode, 429001);
      const wait = Number(out.error.info['retry-after']);
      assert.ok(wait >= 1, JSON.stringify(out.error.info));
      await dps.sleep(wait * 1000);
    }
    assigned({ ok: true, result: await done }, holder);
    // The SDK may retry by itself (limits.test.js: two azure-iot-common copies decide); the service counted the
    // refusal either way.
    assert.ok((await overloadCount()) > before0, 'refused at least once while the slot was held');
  });
});
