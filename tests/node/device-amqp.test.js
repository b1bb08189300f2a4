'use strict';
// Official Node device SDK (azure-iot-provisioning-device + -amqp, `Amqp` and `AmqpWs` transports) against
// the local service over AMQP/TLS (the AMQP port) and AMQP over WebSockets (the HTTPS port, AMQPWSB10):
// symmetric keys (individual, group-derived; SASL PLAIN, §3.1), X.509 (individual, group with the chain sent
// by the device; no SASL layer, §4.3), refusals (rejected dispositions with the DPS error body, §3.4),
// `disabled`, and 50 devices at once (correlation ids, §0.8). The SDK runs in a child process that trusts the
// service's CA through NODE_EXTRA_CA_CERTS (lib/amqp-device.js).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dps = require('./lib/dps');
const certs = require('./lib/certs');

let svc;
let sc;
let dir;

before(async () => {
  svc = await dps.startService({ extraArgs: ['--amqp-port', '0', '--retry-after-secs', '2'] });
  assert.ok(svc.endpoint.ports.amqp > 0, `endpoint.json ports.amqp: ${JSON.stringify(svc.endpoint.ports)}`);
  assert.notEqual(svc.endpoint.ports.amqp, svc.endpoint.ports.https);
  sc = dps.serviceClient(svc);
  dir = certs.workDir('dps-amqp-');
});
after(async () => { if (svc) await svc.stop(); });

const TRANSPORTS = [{ name: 'Amqp', ws: false, protocol: 'amqp' }, { name: 'AmqpWs', ws: true, protocol: 'amqp-ws' }];

async function individual(registrationId, extra = {}) {
  const res = await sc.createOrUpdateIndividualEnrollment({ registrationId, attestation: { type: 'symmetricKey' }, ...extra });
  return res.responseBody;
}

async function one(device, ws) {
  const [r] = await dps.registerAmqp(svc, [device], { ws });
  return r;
}

function assertAssigned(r, registrationId, deviceId = registrationId) {
  assert.ok(r.ok, `registration failed: ${JSON.stringify(r.error)}`);
  assert.equal(r.result.registrationId, registrationId);
  assert.equal(r.result.status, 'assigned');
  assert.equal(r.result.assignedHub, dps.DEFAULT_HUB);
  assert.equal(r.result.deviceId, deviceId);
  assert.equal(r.result.substatus, 'initialAssignment');
}

/** §3.4: a refusal is a `rejected` disposition whose description is the §1.8 error body. */
function assertRejected(r, errorCode, condition) {
  assert.equal(r.ok, false, `expected a refusal, got ${JSON.stringify(r.result)}`);
  const e = r.error;
  assert.equal(e.condition, condition, `AMQP condition; ${JSON.stringify(e)}`);
  assert.equal(typeof e.body, 'object', `description must be the JSON error body; ${JSON.stringify(e)}`);
  if (typeof errorCode === 'number') assert.equal(e.body.errorCode, errorCode, JSON.stringify(e));
  else assert.equal(Math.floor(e.body.errorCode / 1000), errorCode.status, JSON.stringify(e));
  assert.equal(typeof e.body.trackingId, 'string');
  assert.ok(!Number.isNaN(Date.parse(e.body.timestampUtc)), JSON.stringify(e.body));
  assert.equal(typeof e.body.message, 'string');
  return e;
}

async function traceOf(registrationId) {
  return dps.registrationTrace(svc, registrationId);
}

for (const t of TRANSPORTS) {
  test(`§3.1/§4.2 ${t.name}: individual symmetric key (SASL PLAIN) → assigned, trace names ${t.protocol}`, async () => {
    const id = dps.uid(`amqp-ind-${t.protocol}`);
    const e = await individual(id);
    assertAssigned(await one({ registrationId: id, key: e.attestation.symmetricKey.primaryKey }, t.ws), id);
    const trace = await traceOf(id);
    assert.equal(trace.trace.protocol, t.protocol, JSON.stringify(trace));
  });

  test(`§4.2 ${t.name}: the secondary key and a custom payload → assigned`, async () => {
    const id = dps.uid(`amqp-sec-${t.protocol}`);
    const e = await individual(id);
    const r = await one({ registrationId: id, key: e.attestation.symmetricKey.secondaryKey, payload: { line: 7 } }, t.ws);
    assertAssigned(r, id);
  });

  test(`§4.2 ${t.name}: group-derived key → assigned via the group`, async () => {
    const gid = dps.uid(`amqp-grp-${t.protocol}`);
    const g = (await sc.createOrUpdateEnrollmentGroup({ enrollmentGroupId: gid, attestation: { type: 'symmetricKey' } })).responseBody;
    const id = dps.uid(`amqp-gdev-${t.protocol}`);
    assertAssigned(await one({ registrationId: id, key: dps.deriveKey(g.attestation.symmetricKey.primaryKey, id) }, t.ws), id);
    const trace = await traceOf(id);
    assert.equal(trace.enrollment.kind, 'group', JSON.stringify(trace));
    assert.equal(trace.enrollment.id, gid);
  });

  test(`§4.3 ${t.name}: X.509 individual (no SASL layer, the TLS client certificate attests) → assigned`, async () => {
    const id = dps.uid(`amqp-x509-${t.protocol}`);
    const device = certs.dps.device(dir, id);
    await sc.createOrUpdateIndividualEnrollment({
      registrationId: id,
      attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: device.pem } } } },
    });
    const r = await one({ registrationId: id, cert: device.chainPem, keyPem: device.keyPem }, t.ws);
    assertAssigned(r, id);
    assert.equal(r.result.x509 && r.result.x509.enrollmentGroupId, undefined);
  });

  test(`§4.3 ${t.name}: X.509 group on a root, the device sends leaf + intermediate → assigned via the group`, async () => {
    const root = certs.openssl.root(dir, dps.uid('amqp-root'));
    const inter = certs.openssl.intermediate(dir, dps.uid('amqp-int'), root);
    const id = dps.uid(`amqp-xg-${t.protocol}`);
    const device = certs.openssl.device(dir, id, { issuer: inter });
    assert.equal((device.chainPem.match(/BEGIN CERTIFICATE/g) || []).length, 2, 'presented chain = leaf + intermediate');
    const gid = dps.uid('amqp-xgrp');
    await dps.runCli(svc, ['enrollment-group', 'create', '--group-id', gid, '--attestation-type', 'x509', '--certificate-path', root.cert, '--output', 'json']);
    const r = await one({ registrationId: id, cert: device.chainPem, keyPem: device.keyPem }, t.ws);
    assertAssigned(r, id);
    assert.equal(r.result.x509.enrollmentGroupId, gid, JSON.stringify(r.result));
  });

  test(`§3.4 ${t.name}: a wrong key → rejected, amqp:unauthorized-access with 401002`, async () => {
    const id = dps.uid(`amqp-bad-${t.protocol}`);
    await individual(id);
    assertRejected(await one({ registrationId: id, key: dps.randomKey() }, t.ws), 401002, 'amqp:unauthorized-access');
    await dps.expectHttpError(sc.getDeviceRegistrationState(id), 404, assert);
  });

  test(`§3.4 ${t.name}: an unknown registration id → rejected with 401002`, async () => {
    const id = dps.uid(`amqp-unknown-${t.protocol}`);
    assertRejected(await one({ registrationId: id, key: dps.randomKey() }, t.ws), 401002, 'amqp:unauthorized-access');
  });

  test(`§3.4 ${t.name}: a foreign ID scope → rejected with 404 (amqp:not-found)`, async () => {
    const id = dps.uid(`amqp-scope-${t.protocol}`);
    const e = await individual(id);
    const r = await one({ registrationId: id, key: e.attestation.symmetricKey.primaryKey, idScope: '0ne00000000' }, t.ws);
    const err = assertRejected(r, { status: 404 }, 'amqp:not-found');
    assert.match(err.body.message, /ID scope/, JSON.stringify(err.body));
  });

  test(`§1.6/§3.4 ${t.name}: a disabled enrollment → status disabled as a normal response (not a rejection)`, async () => {
    const id = dps.uid(`amqp-dis-${t.protocol}`);
    const e = await individual(id, { provisioningStatus: 'disabled' });
    const r = await one({ registrationId: id, key: e.attestation.symmetricKey.primaryKey }, t.ws);
    assert.equal(r.ok, false, 'Node has no disabled case');
    assert.equal(r.error.condition, undefined, `disabled is an answer, not a rejected request: ${JSON.stringify(r.error)}`);
    assert.equal(r.error.message, 'status is disabled', JSON.stringify(r.error));
    assert.equal(r.error.result.status, 'disabled');
  });
}

test('§0.8 50 devices at once over AMQP: each gets its own answer (correlation ids are not mixed up)', async () => {
  const devices = [];
  for (let i = 0; i < 50; i++) {
    const id = dps.uid(`amqp-many-${i}`);
    const e = await individual(id);
    devices.push({ registrationId: id, key: e.attestation.symmetricKey.primaryKey });
  }
  const results = await dps.registerAmqp(svc, devices, { ws: false });
  assert.equal(results.length, 50);
  results.forEach((r, i) => assertAssigned(r, devices[i].registrationId));
  const deviceIds = new Set(results.map((r) => r.result.deviceId));
  assert.equal(deviceIds.size, 50, 'every device got its own registration');
});

test('§3.1 the AMQP port of endpoint.json is the one `dps serve --amqp-port` was given', async () => {
  const s2 = await dps.startService({ extraArgs: ['--amqp-port', '0'] });
  try {
    assert.ok(s2.endpoint.ports.amqp > 0);
    assert.notEqual(s2.endpoint.ports.amqp, svc.endpoint.ports.amqp);
  } finally {
    await s2.stop();
  }
});
