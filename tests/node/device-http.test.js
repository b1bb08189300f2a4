'use strict';
// Official Node device SDK (azure-iot-provisioning-device + -http + azure-iot-security-symmetric-key)
// registering over HTTPS against the local service. Enrollments are made with the official service SDK.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dps = require('./lib/dps');

let svc;
let sc;
// Hub host names a device may be assigned to (§7.2: all linked hubs when the enrollment names none).
const linkedHubs = new Set([dps.DEFAULT_HUB]);

before(async () => {
  svc = await dps.startService();
  sc = dps.serviceClient(svc);
});
after(async () => { if (svc) await svc.stop(); });

const SUBSTATUSES = ['initialAssignment', 'deviceDataMigrated', 'deviceDataReset', 'reprovisionedToInitialAssignment'];

/** §1.5 DeviceRegistrationResult of a successful registration, checked whole. */
function assertAssigned(result, { registrationId, deviceId, substatus = 'initialAssignment' }) {
  assert.equal(typeof result, 'object', 'register() must resolve with registrationState');
  assert.equal(result.registrationId, registrationId, 'registrationId');
  assert.ok(linkedHubs.has(result.assignedHub), `assignedHub ${result.assignedHub} is not a linked hub (${[...linkedHubs]})`);
  assert.equal(result.deviceId, deviceId, 'deviceId');
  assert.equal(result.status, 'assigned', 'status');
  if (substatus === 'any') assert.ok(SUBSTATUSES.includes(result.substatus), `substatus ${result.substatus}`);
  else assert.equal(result.substatus, substatus, 'substatus');
  assert.equal(typeof result.createdDateTimeUtc, 'string', 'createdDateTimeUtc');
  assert.ok(!Number.isNaN(Date.parse(result.createdDateTimeUtc)), `createdDateTimeUtc ${result.createdDateTimeUtc} is not a date`);
  assert.equal(typeof result.etag, 'string', 'etag');
  assert.ok(result.etag.length > 0, 'etag non-empty');
  return result;
}

async function createSymmetricEnrollment(extra = {}) {
  const registrationId = extra.registrationId || dps.uid('http-ind');
  const primaryKey = dps.randomKey();
  const secondaryKey = dps.randomKey();
  const res = await sc.createOrUpdateIndividualEnrollment({
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } },
    ...extra,
  });
  assert.equal(res.responseBody.registrationId, registrationId);
  return { registrationId, primaryKey, secondaryKey, enrollment: res.responseBody };
}

async function createSymmetricGroup(extra = {}) {
  const enrollmentGroupId = dps.uid('http-grp');
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

/** Await a registration that must fail; returns the error. */
async function registrationError(promise) {
  try {
    const r = await promise;
    assert.fail('registration unexpectedly succeeded: ' + JSON.stringify(r));
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err;
  }
}

test('§4.2/§1.10 individual symmetric-key enrollment registers over HTTPS with the primary key', async () => {
  const e = await createSymmetricEnrollment();
  const result = await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey);
  assertAssigned(result, { registrationId: e.registrationId, deviceId: e.registrationId });

  // §5.2 DeviceRegistrationState_Get: the service API shows the same record.
  const state = (await sc.getDeviceRegistrationState(e.registrationId)).responseBody;
  assert.equal(state.registrationId, e.registrationId);
  assert.equal(state.assignedHub, result.assignedHub);
  assert.equal(state.deviceId, result.deviceId);
  assert.equal(state.status, 'assigned');
  assert.equal(state.substatus, 'initialAssignment');
});

test('§4.2 individual enrollment: device authenticates with the secondary key', async () => {
  const e = await createSymmetricEnrollment();
  const result = await dps.registerSymmetricKey(svc, e.registrationId, e.secondaryKey);
  assertAssigned(result, { registrationId: e.registrationId, deviceId: e.registrationId });
});

test('§7.4 individual enrollment with a custom deviceId → device gets that deviceId', async () => {
  const deviceId = dps.uid('custom-device');
  const e = await createSymmetricEnrollment({ deviceId });
  const result = await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey);
  assertAssigned(result, { registrationId: e.registrationId, deviceId });
  const state = (await sc.getDeviceRegistrationState(e.registrationId)).responseBody;
  assert.equal(state.deviceId, deviceId);
  assert.equal(state.assignedHub, result.assignedHub);
});

test('§4.2 group-derived key: three devices of one enrollment group register concurrently', async () => {
  const g = await createSymmetricGroup();
  const ids = [dps.uid('grp-dev-a'), dps.uid('grp-dev-b'), dps.uid('Grp-Dev-MixedCase')];
  const results = await Promise.all(ids.map((id) => dps.registerSymmetricKey(svc, id, dps.deriveKey(g.primaryKey, id))));
  results.forEach((r, i) => assertAssigned(r, { registrationId: ids[i], deviceId: ids[i] }));
  assert.equal(new Set(results.map((r) => r.etag)).size, 3, 'each registration has its own etag');

  // §5.2 DeviceRegistrationState_Get for each group device
  for (const r of results) {
    const state = (await sc.getDeviceRegistrationState(r.registrationId)).responseBody;
    assert.equal(state.assignedHub, r.assignedHub);
    assert.equal(state.deviceId, r.deviceId);
    assert.equal(state.status, 'assigned');
  }
});

test('§4.2 group-derived key from the group secondary key is accepted', async () => {
  const g = await createSymmetricGroup();
  const id = dps.uid('grp-sec');
  const result = await dps.registerSymmetricKey(svc, id, dps.deriveKey(g.secondaryKey, id));
  assertAssigned(result, { registrationId: id, deviceId: id });
});

test('§4.1/§1.8 wrong key → 401 with errorCode 401002 (individual enrollment)', async () => {
  const e = await createSymmetricEnrollment();
  const err = await registrationError(dps.registerSymmetricKey(svc, e.registrationId, dps.randomKey()));
  // (several azure-iot-common copies are installed, so compare the error name, not the class)
  assert.equal(err.name, 'UnauthorizedError', `expected UnauthorizedError, got ${err.name}: ${err.message}`);
  assert.equal(dps.errorStatus(err), 401);
  const body = dps.errorBody(err);
  assert.equal(body.errorCode, 401002, `error body: ${err.responseBody}`);
  assert.equal(typeof body.message, 'string');
  assert.equal(typeof body.trackingId, 'string');
  assert.ok(!Number.isNaN(Date.parse(body.timestampUtc)), 'timestampUtc is a date');

  // A failed authentication must not create a registration record (§5.2 → 404).
  await dps.expectHttpError(sc.getDeviceRegistrationState(e.registrationId), 404, assert);
});

test('§4.2/§7.1 group device using a key not derived from any group → 401002', async () => {
  await createSymmetricGroup();
  const id = dps.uid('grp-bad');
  const err = await registrationError(dps.registerSymmetricKey(svc, id, dps.deriveKey(dps.randomKey(), id)));
  assert.equal(err.name, 'UnauthorizedError', `got ${err.name}: ${err.message}`);
  assert.equal(dps.errorBody(err).errorCode, 401002, `error body: ${err.responseBody}`);
});

test('§4.2 group key itself (not derived) is rejected → 401002', async () => {
  const g = await createSymmetricGroup();
  const id = dps.uid('grp-raw');
  const err = await registrationError(dps.registerSymmetricKey(svc, id, g.primaryKey));
  assert.equal(dps.errorStatus(err), 401);
  assert.equal(dps.errorBody(err).errorCode, 401002, `error body: ${err.responseBody}`);
});

test('§1.6/§7.1 disabled individual enrollment → Node SDK surfaces status "disabled" (unknown status → SyntaxError)', async () => {
  const e = await createSymmetricEnrollment({ provisioningStatus: 'disabled' });
  const err = await registrationError(dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey));
  // The Node polling state machine has no case for `disabled`: it fails with SyntaxError('status is disabled')
  // and attaches the operation status body as err.result.
  assert.ok(err instanceof SyntaxError, `expected SyntaxError, got ${err && err.constructor && err.constructor.name}: ${err && err.message}`);
  assert.equal(err.message, 'status is disabled');
  assert.equal(err.result.status, 'disabled');
  assert.equal(typeof err.result.operationId, 'string');
  if (err.result.registrationState) {
    assert.equal(err.result.registrationState.registrationId, e.registrationId);
    assert.equal(err.result.registrationState.status, 'disabled');
    assert.equal(err.result.registrationState.assignedHub, undefined, 'a disabled device gets no hub');
  }
});

test('§1.6/§7.1 disabled enrollment group → "disabled" for its devices', async () => {
  const g = await createSymmetricGroup({ provisioningStatus: 'disabled' });
  const id = dps.uid('grp-dis');
  const err = await registrationError(dps.registerSymmetricKey(svc, id, dps.deriveKey(g.primaryKey, id)));
  assert.ok(err instanceof SyntaxError, `got ${err && err.message}`);
  assert.equal(err.result.status, 'disabled');
});

test('§7.1 an individual enrollment takes precedence over a matching group', async () => {
  const g = await createSymmetricGroup();
  const id = dps.uid('ind-over-grp');
  const deviceId = dps.uid('from-individual');
  const e = await createSymmetricEnrollment({ registrationId: id, deviceId });
  // The group could also authenticate this id (derived key), but the device signs with the individual key:
  // the result must come from the individual enrollment (its custom deviceId).
  const result = await dps.registerSymmetricKey(svc, id, e.primaryKey);
  assertAssigned(result, { registrationId: id, deviceId });
  assert.ok(g.enrollmentGroupId);
  const state = (await sc.getDeviceRegistrationState(id)).responseBody;
  assert.equal(state.deviceId, deviceId);
});

test('§7.2/§7.3 registering the same device again → same hub and deviceId', async () => {
  const e = await createSymmetricEnrollment();
  const g = await createSymmetricGroup();
  const gid = dps.uid('grp-again');
  const gkey = dps.deriveKey(g.primaryKey, gid);
  const [first, gfirst] = await Promise.all([
    dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey),
    dps.registerSymmetricKey(svc, gid, gkey),
  ]);
  assertAssigned(first, { registrationId: e.registrationId, deviceId: e.registrationId });
  assertAssigned(gfirst, { registrationId: gid, deviceId: gid });
  const [second, gsecond] = await Promise.all([
    dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey),
    dps.registerSymmetricKey(svc, gid, gkey),
  ]);
  assertAssigned(second, { registrationId: e.registrationId, deviceId: e.registrationId, substatus: 'any' });
  assertAssigned(gsecond, { registrationId: gid, deviceId: gid, substatus: 'any' });
  assert.equal(second.assignedHub, first.assignedHub);
  assert.equal(second.deviceId, first.deviceId);
  assert.equal(gsecond.assignedHub, gfirst.assignedHub);
  assert.equal(gsecond.deviceId, gfirst.deviceId);
  // §7.3: the registration record is updated on re-registration.
  assert.notEqual(second.etag, first.etag, 'registration record etag changes on re-registration');
  const state = (await sc.getDeviceRegistrationState(e.registrationId)).responseBody;
  assert.equal(state.assignedHub, first.assignedHub);
  assert.equal(state.etag, second.etag);
});

test('§1.4 registration with a custom payload is accepted', async () => {
  const e = await createSymmetricEnrollment();
  const result = await dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey, { payload: { model: 't-100', fw: 3 } });
  assertAssigned(result, { registrationId: e.registrationId, deviceId: e.registrationId });
});

test('§4.1 wrong id scope → 401 (SAS resource names another scope)', async () => {
  const e = await createSymmetricEnrollment();
  const other = svc.idScope.slice(0, -1) + (svc.idScope.endsWith('0') ? '1' : '0');
  const err = await registrationError(dps.registerSymmetricKey(svc, e.registrationId, e.primaryKey, { idScope: other }));
  const status = dps.errorStatus(err);
  assert.ok(status === 401 || status === 404, `expected 401/404 for an unknown id scope, got ${status}: ${err.message}`);
});

test('§7.2 weighted hash across linked hubs (hubs added with `dps hub add`): deterministic per device', async () => {
  const extra = ['hub-b.dps.local', 'hub-c.dps.local'];
  for (const h of extra) await dps.runCli(svc, ['hub', 'add', h, '--weight', '5']);
  const hubs = await dps.listHubs(svc);
  for (const h of [dps.DEFAULT_HUB, ...extra]) assert.ok(hubs.includes(h), `hub list ${JSON.stringify(hubs)} lacks ${h}`);
  hubs.forEach((h) => linkedHubs.add(h));

  const g = await createSymmetricGroup();
  const ids = Array.from({ length: 12 }, (_, i) => dps.uid(`spread-${i}`));
  const reg = () => Promise.all(ids.map((id) => dps.registerSymmetricKey(svc, id, dps.deriveKey(g.primaryKey, id))));
  const first = await reg();
  first.forEach((r, i) => assertAssigned(r, { registrationId: ids[i], deviceId: ids[i] }));
  const used = new Set(first.map((r) => r.assignedHub));
  // weights 1/5/5 over 12 devices: P(all on one hub) is negligible for any reasonable weighted hash.
  assert.ok(used.size >= 2, `all 12 devices landed on ${[...used]}`);
  const second = await reg();
  second.forEach((r, i) => assert.equal(r.assignedHub, first[i].assignedHub, `device ${ids[i]} moved hub`));
});
