'use strict';
// Official Node device SDK (azure-iot-provisioning-device + -mqtt, Mqtt and MqttWs transports,
// azure-iot-security-symmetric-key) registering against the local service over MQTT/TLS (mqtt port)
// and MQTT over WebSockets (HTTPS port). Enrollments are made with the official service SDK.
// Besides what register() returns, each test reads the PUBLISHes the SDK received (lib/dps.js
// mqttTransport trace) to pin the §2.5 topics and bodies.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dps = require('./lib/dps');

let svc;
let sc;

before(async () => {
  svc = await dps.startService({ extraArgs: ['--mqtt-port', '0', '--retry-after-secs', '2'] });
  assert.ok(svc.endpoint.ports.mqtt > 0, `endpoint.json ports.mqtt: ${JSON.stringify(svc.endpoint.ports)}`);
  assert.notEqual(svc.endpoint.ports.mqtt, svc.endpoint.ports.https);
  sc = dps.serviceClient(svc);
});
after(async () => { if (svc) await svc.stop(); });

const TRANSPORTS = [{ name: 'Mqtt', ws: false }, { name: 'MqttWs', ws: true }];
const SUBSTATUSES = ['initialAssignment', 'deviceDataMigrated', 'deviceDataReset', 'reprovisionedToInitialAssignment'];
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
// §2.5 / §0.5: `$rid` first, lower-case `retry-after` after it, exactly two `$`.
const RES_202 = new RegExp(`^\\$dps/registrations/res/202/\\?\\$rid=(${UUID})&retry-after=(\\d+)$`);
const RES_200 = new RegExp(`^\\$dps/registrations/res/200/\\?\\$rid=(${UUID})(&retry-after=\\d+)?$`);
const RES_401 = new RegExp(`^\\$dps/registrations/res/401/\\?\\$rid=(${UUID})(&retry-after=\\d+)?$`);

function dumpTrace(trace) {
  return '\n' + ((trace && trace.received) || []).map((m) => `  ${m.topic} ${m.payload}`).join('\n');
}

/** §1.5 DeviceRegistrationResult of a successful registration, checked whole. */
function assertAssigned(result, { registrationId, deviceId, substatus = 'initialAssignment' }) {
  assert.equal(typeof result, 'object', 'register() must resolve with registrationState');
  assert.equal(result.registrationId, registrationId, 'registrationId');
  assert.equal(result.assignedHub, dps.DEFAULT_HUB, 'assignedHub');
  assert.equal(result.deviceId, deviceId || registrationId, 'deviceId');
  assert.equal(result.status, 'assigned', 'status');
  if (substatus === 'any') assert.ok(SUBSTATUSES.includes(result.substatus), `substatus ${result.substatus}`);
  else assert.equal(result.substatus, substatus, 'substatus');
  assert.equal(typeof result.createdDateTimeUtc, 'string', 'createdDateTimeUtc');
  const created = Date.parse(result.createdDateTimeUtc);
  assert.ok(Math.abs(Date.now() - created) < 3600e3, `createdDateTimeUtc ${result.createdDateTimeUtc}`);
  assert.equal(typeof result.etag, 'string', 'etag');
  assert.ok(result.etag.length > 0, 'etag non-empty');
  return result;
}

/** §2.5: register → res/202 (retry-after=2, the service runs with --retry-after-secs 2), polls → res/200. */
function assertTraceAssigned(trace, registrationId) {
  const msgs = trace.received;
  const dump = dumpTrace(trace);
  assert.ok(msgs.length >= 2, `expected a 202 and a terminal 200${dump}`);
  const first = RES_202.exec(msgs[0].topic);
  assert.ok(first, `§2.5 first response topic must be res/202/?$rid=<uuid>&retry-after=N${dump}`);
  assert.equal(first[2], '2', `retry-after${dump}`);
  const accepted = JSON.parse(msgs[0].payload);
  assert.equal(accepted.status, 'assigning', dump);
  assert.match(accepted.operationId, /^[A-Za-z0-9.-]+$/, '§1.5 operationId charset');
  for (const m of msgs.slice(1, -1)) assert.match(m.topic, RES_202, `intermediate poll response${dump}`);
  const last = msgs[msgs.length - 1];
  assert.match(last.topic, RES_200, `§2.5 terminal response topic${dump}`);
  const rids = msgs.map((m) => /\$rid=([^&]+)/.exec(m.topic)[1]);
  assert.equal(new Set(rids).size, rids.length, `every request has its own $rid (Node drops unknown ones)${dump}`);
  const final = JSON.parse(last.payload);
  assert.equal(final.operationId, accepted.operationId, dump);
  assert.equal(final.status, 'assigned', dump);
  assert.equal(final.registrationState.registrationId, registrationId, dump);
  return final;
}

/** Await a registration that must fail; returns the error. */
async function registrationError(promise) {
  try {
    const r = await promise;
    assert.fail('registration unexpectedly succeeded: ' + JSON.stringify(r.result));
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err;
  }
}

/**
 * Contract + §1.8/§2.5: CONNECT accepted, register publish answered on res/401/?$rid=<rid> with
 * {"errorCode":401002,...}; the Node SDK maps it (translateError) to UnauthorizedError with
 * err.result = body and err.transportObject = { topic, payload }.
 */
function assertUnauthorized(err, what) {
  const dump = dumpTrace(err.trace);
  assert.equal(err.name, 'UnauthorizedError', `${what}: expected UnauthorizedError, got ${err.name}: ${err.message}${dump}`);
  assert.equal(err.message, 'incoming message failure');
  assert.ok(err.transportObject && RES_401.test(err.transportObject.topic), `${what}: §2.5 topic ${err.transportObject && err.transportObject.topic}${dump}`);
  const body = err.result;
  assert.equal(body.errorCode, 401002, `${what}: §1.8 body ${JSON.stringify(body)}`);
  assert.equal(typeof body.trackingId, 'string');
  assert.ok(body.trackingId.length > 0);
  assert.equal(typeof body.message, 'string');
  assert.ok(!Number.isNaN(Date.parse(body.timestampUtc)), `timestampUtc ${body.timestampUtc}`);
  assert.equal(body.status, undefined, 'an error body is not an operation status');
  assert.equal(err.trace.received.length, 1, `${what}: exactly one response${dump}`);
}

/** §1.6: the Node state machine has no `disabled` case → SyntaxError('status is disabled'), body in err.result. */
function assertDisabled(err, registrationId) {
  const dump = dumpTrace(err.trace);
  assert.ok(err instanceof SyntaxError, `expected SyntaxError, got ${err && err.name}: ${err && err.message}${dump}`);
  assert.equal(err.message, 'status is disabled');
  assert.equal(err.result.status, 'disabled');
  assert.match(err.result.operationId, /^[A-Za-z0-9.-]+$/);
  assert.match(err.trace.received[0].topic, RES_202, `register must be answered 202 first${dump}`);
  assert.match(err.trace.received[err.trace.received.length - 1].topic, RES_200, dump);
  if (err.result.registrationState) {
    assert.equal(err.result.registrationState.registrationId, registrationId);
    assert.equal(err.result.registrationState.status, 'disabled');
    assert.equal(err.result.registrationState.assignedHub, undefined, 'a disabled device gets no hub');
  }
}

async function createEnrollment(extra = {}) {
  const registrationId = extra.registrationId || dps.uid('mqtt-ind');
  const primaryKey = dps.randomKey();
  const secondaryKey = dps.randomKey();
  const res = await sc.createOrUpdateIndividualEnrollment({
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } },
    ...extra,
  });
  assert.equal(res.responseBody.registrationId, registrationId);
  return { registrationId, primaryKey, secondaryKey };
}

async function createGroup(extra = {}) {
  const enrollmentGroupId = dps.uid('mqtt-grp');
  const primaryKey = dps.randomKey();
  const secondaryKey = dps.randomKey();
  const res = await sc.createOrUpdateEnrollmentGroup({
    enrollmentGroupId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } },
    ...extra,
  });
  assert.equal(res.responseBody.enrollmentGroupId, enrollmentGroupId);
  return { enrollmentGroupId, primaryKey, secondaryKey };
}

for (const { name, ws } of TRANSPORTS) {
  test(`§2/§4.2 ${name}: individual symmetric-key enrollment is assigned`, async () => {
    const e = await createEnrollment();
    const { result, trace } = await dps.registerSymmetricKeyMqtt(svc, e.registrationId, e.primaryKey, { ws });
    assertAssigned(result, { registrationId: e.registrationId });
    const final = assertTraceAssigned(trace, e.registrationId);
    assert.equal(final.registrationState.etag, result.etag);
    const state = (await sc.getDeviceRegistrationState(e.registrationId)).responseBody;
    assert.equal(state.assignedHub, result.assignedHub);
    assert.equal(state.deviceId, result.deviceId);
    assert.equal(state.status, 'assigned');
  });

  test(`§4.2 ${name}: group-derived key is assigned`, async () => {
    const g = await createGroup();
    const id = dps.uid('mqtt-grp-dev');
    const { result, trace } = await dps.registerSymmetricKeyMqtt(svc, id, dps.deriveKey(g.primaryKey, id), { ws });
    assertAssigned(result, { registrationId: id });
    assertTraceAssigned(trace, id);
  });

  test(`§4.1/§1.8/§2.5 ${name}: wrong key → res/401, UnauthorizedError with errorCode 401002`, async () => {
    const e = await createEnrollment();
    const err = await registrationError(dps.registerSymmetricKeyMqtt(svc, e.registrationId, dps.randomKey(), { ws }));
    assertUnauthorized(err, 'wrong key');
    await dps.expectHttpError(sc.getDeviceRegistrationState(e.registrationId), 404, assert);
  });
}

test('§7.1 Mqtt: unknown registration id → 401002', async () => {
  await createGroup(); // a group exists, but the key is not derived from it
  const id = dps.uid('mqtt-unknown');
  const err = await registrationError(dps.registerSymmetricKeyMqtt(svc, id, dps.randomKey(32)));
  assertUnauthorized(err, 'unknown registration id');
});

test('§4.2 MqttWs: the group key itself (not derived) → 401002', async () => {
  const g = await createGroup();
  const err = await registrationError(dps.registerSymmetricKeyMqtt(svc, dps.uid('mqtt-raw'), g.primaryKey, { ws: true }));
  assertUnauthorized(err, 'group key as device key');
});

test('§1.6/§7.1 Mqtt: disabled individual enrollment → SyntaxError "status is disabled"', async () => {
  const e = await createEnrollment({ provisioningStatus: 'disabled' });
  const err = await registrationError(dps.registerSymmetricKeyMqtt(svc, e.registrationId, e.primaryKey));
  assertDisabled(err, e.registrationId);
});

test('§1.6/§7.1 MqttWs: disabled enrollment group → "disabled"', async () => {
  const g = await createGroup({ provisioningStatus: 'disabled' });
  const id = dps.uid('mqtt-grp-dis');
  const err = await registrationError(dps.registerSymmetricKeyMqtt(svc, id, dps.deriveKey(g.primaryKey, id), { ws: true }));
  assertDisabled(err, id);
});

test('§7.2/§7.3 same device twice (Mqtt, then MqttWs) → same hub and deviceId', async () => {
  const e = await createEnrollment();
  const first = (await dps.registerSymmetricKeyMqtt(svc, e.registrationId, e.primaryKey)).result;
  assertAssigned(first, { registrationId: e.registrationId });
  const second = (await dps.registerSymmetricKeyMqtt(svc, e.registrationId, e.secondaryKey, { ws: true })).result;
  assertAssigned(second, { registrationId: e.registrationId, substatus: 'any' });
  assert.equal(second.assignedHub, first.assignedHub);
  assert.equal(second.deviceId, first.deviceId);
});

test('§7.4 Mqtt: enrollment deviceId is used', async () => {
  const deviceId = dps.uid('mqtt-custom-dev');
  const e = await createEnrollment({ deviceId });
  const { result } = await dps.registerSymmetricKeyMqtt(svc, e.registrationId, e.primaryKey);
  assertAssigned(result, { registrationId: e.registrationId, deviceId });
});

test('§0.12/§2.4 Mqtt: a custom provisioning payload is accepted', async () => {
  const e = await createEnrollment();
  const payload = { modelId: 'dtmi:com:example:Thermostat;1', nested: { n: 1, list: [1, 'two', null] } };
  const { result, trace } = await dps.registerSymmetricKeyMqtt(svc, e.registrationId, e.primaryKey, { payload });
  assertAssigned(result, { registrationId: e.registrationId });
  assertTraceAssigned(trace, e.registrationId);
});

test('§8 the service keeps provisioning after errors; 4 devices in parallel over Mqtt and MqttWs', async () => {
  const bad = await createEnrollment();
  for (const ws of [false, true]) {
    const err = await registrationError(dps.registerSymmetricKeyMqtt(svc, bad.registrationId, dps.randomKey(), { ws }));
    assert.equal(err.name, 'UnauthorizedError', `${err.name}: ${err.message}`);
  }
  const g = await createGroup();
  const jobs = [];
  for (const ws of [false, true]) {
    const e = await createEnrollment();
    jobs.push({ id: e.registrationId, key: e.primaryKey, ws });
    const gid = dps.uid('mqtt-par');
    jobs.push({ id: gid, key: dps.deriveKey(g.primaryKey, gid), ws });
  }
  const results = await Promise.all(jobs.map((j) => dps.registerSymmetricKeyMqtt(svc, j.id, j.key, { ws: j.ws })));
  results.forEach(({ result }, i) => assertAssigned(result, { registrationId: jobs[i].id }));
  assert.equal(new Set(results.map(({ result }) => result.etag)).size, jobs.length, 'each registration has its own etag');
  // ...and the HTTPS device API still works next to MQTT.
  const e = await createEnrollment();
  assertAssigned(await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey), { registrationId: e.registrationId });
});
