'use strict';
// The registration record follows every registration (§7.3), read with the official service SDK
// (`getDeviceRegistrationState`) while official device SDK clients register:
// - it says `assigning` as soon as a register is accepted;
// - a hub that is unavailable for a while keeps the operation `assigning` while the service retries (a device
//   SDK treats `failed` as final), and the device is assigned once the hub answers;
// - a failed re-registration updates the record (status, error code and message, etag, last update) and keeps
//   where the device still is, so the next registration moves it and removes it from the old hub;
// - a `disabled` outcome keeps the device's hub and device id: re-enabled, it follows its re-provisioning policy.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const dps = require('./lib/dps');
const certs = require('./lib/certs');
const { startHubStandIn, linkStandIn } = require('./lib/hub-standin');

const STAND_IN = 'standin-hub.azure-devices.net';
const SECOND = 'second-hub.dps.local';

let svc;
let sc;
let dir;
let hub;

before(async () => {
  svc = await dps.startService();
  sc = dps.serviceClient(svc);
  dir = certs.workDir('dps-record-');
  hub = await startHubStandIn(dir);
  await linkStandIn(svc, STAND_IN, hub);
  await dps.linkHub(svc, SECOND, { applyAllocationPolicy: false });
});
after(async () => {
  if (svc) await svc.stop();
  if (hub) await hub.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function enroll(iotHubs, extra = {}) {
  const registrationId = dps.uid('rec');
  const primaryKey = dps.randomKey();
  const enrollment = {
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: dps.randomKey() } },
    iotHubs,
    allocationPolicy: 'hashed',
    ...extra,
  };
  await sc.createOrUpdateIndividualEnrollment(enrollment);
  return { registrationId, primaryKey };
}

async function update(registrationId, change) {
  const current = (await sc.getIndividualEnrollment(registrationId)).responseBody;
  await sc.createOrUpdateIndividualEnrollment({ ...current, ...change });
}

async function record(registrationId) {
  return (await sc.getDeviceRegistrationState(registrationId)).responseBody;
}

async function hubHolds(hostName, deviceId) {
  const devices = await dps.hubDevices(svc, hostName);
  const list = Array.isArray(devices) ? devices : devices.devices || devices.value || [];
  return list.some((d) => d.deviceId === deviceId);
}

/** The SDK's rejection of a terminal non-assigned answer, with the DeviceRegistrationResult it carried. */
async function rejected(promise) {
  try {
    const r = await promise;
    assert.fail(`expected a rejection, got ${JSON.stringify(r)}`);
  } catch (e) {
    assert.ok(e.result, `the SDK error carries the service's answer: ${e}`);
    return e.result.registrationState || e.result;
  }
}

test('§7.3 a register shows `assigning` on the record at once; an unavailable hub keeps it assigning and the device is assigned when the hub comes back', async () => {
  const { registrationId, primaryKey } = await enroll([STAND_IN]);
  // Six 503s: more than the connector's own three attempts, so only the service's retries get the device through.
  hub.unavailable(6);
  let settled = false;
  const registration = dps.registerSymmetricKey(svc, registrationId, primaryKey).finally(() => { settled = true; });
  const seen = new Set();
  while (!settled) {
    try { seen.add((await record(registrationId)).status); } catch (_) { /* no record before the first write */ }
    await dps.sleep(100);
  }
  const result = await registration;
  assert.equal(result.status, 'assigned');
  assert.equal(result.assignedHub, STAND_IN);
  assert.ok(seen.has('assigning'), `the record said assigning while the hub was down (seen: ${[...seen]})`);
  assert.ok(!seen.has('failed'), `the registration never failed on the way (seen: ${[...seen]})`);
  assert.equal(hub.calls.unavailable, 6, 'every 503 was consumed');
  assert.ok(hub.devices.has(registrationId), 'the identity is in the hub');
  const r = await record(registrationId);
  assert.equal(r.status, 'assigned');
  const trace = await dps.registrationTrace(svc, registrationId);
  const connector = (trace.trace || trace).connector;
  assert.ok(connector && Array.isArray(connector.failedAttempts) && connector.failedAttempts.length >= 2,
    `the trace lists the failed attempts: ${JSON.stringify(trace)}`);
});

test('§7.3 a failed re-registration updates the record and keeps the hub; the next registration moves the device and removes it from the old hub', async () => {
  const { registrationId, primaryKey } = await enroll([dps.DEFAULT_HUB]);
  const first = await dps.registerSymmetricKey(svc, registrationId, primaryKey);
  assert.equal(first.assignedHub, dps.DEFAULT_HUB);
  const before = await record(registrationId);
  assert.equal(before.status, 'assigned');

  await update(registrationId, { iotHubs: [STAND_IN] });
  hub.refuse(1);
  const failed = await rejected(dps.registerSymmetricKey(svc, registrationId, primaryKey));
  assert.equal(failed.status, 'failed');
  assert.equal(typeof failed.errorCode, 'number', `the device sees the error code: ${JSON.stringify(failed)}`);
  assert.equal(failed.assignedHub, undefined, 'a failed answer sends the device nowhere');

  const after = await record(registrationId);
  assert.equal(after.status, 'failed', `the record follows the failure: ${JSON.stringify(after)}`);
  assert.equal(after.errorCode, failed.errorCode);
  assert.ok(after.errorMessage && after.errorMessage.includes(STAND_IN), `errorMessage: ${after.errorMessage}`);
  assert.notEqual(after.etag, before.etag, 'a new etag');
  assert.ok(Date.parse(after.lastUpdatedDateTimeUtc) >= Date.parse(before.lastUpdatedDateTimeUtc), 'lastUpdatedDateTimeUtc moves on');
  assert.equal(after.assignedHub, dps.DEFAULT_HUB, 'the record keeps where the device still is');
  assert.ok(await hubHolds(dps.DEFAULT_HUB, registrationId), 'the identity is still in its hub');

  const moved = await dps.registerSymmetricKey(svc, registrationId, primaryKey);
  assert.equal(moved.assignedHub, STAND_IN);
  assert.equal(moved.substatus, 'deviceDataMigrated', 'a re-provisioning, not a first assignment');
  assert.ok(!(await hubHolds(dps.DEFAULT_HUB, registrationId)), 'the old hub no longer holds the device');
  assert.equal((await record(registrationId)).status, 'assigned');
});

test('§7.3 `disabled` keeps the device hub and device id; re-enabled, it follows the re-provisioning policy (moved, old identity removed)', async () => {
  const { registrationId, primaryKey } = await enroll([dps.DEFAULT_HUB], { deviceId: 'kept-device-id' });
  const first = await dps.registerSymmetricKey(svc, registrationId, primaryKey);
  assert.equal(first.deviceId, 'kept-device-id');

  await update(registrationId, { provisioningStatus: 'disabled' });
  const disabled = await rejected(dps.registerSymmetricKey(svc, registrationId, primaryKey));
  assert.equal(disabled.status, 'disabled');
  assert.equal(disabled.assignedHub, undefined, 'a disabled device is sent nowhere');
  const r = await record(registrationId);
  assert.equal(r.status, 'disabled');
  assert.equal(r.assignedHub, dps.DEFAULT_HUB, `the record keeps the hub: ${JSON.stringify(r)}`);
  assert.equal(r.deviceId, 'kept-device-id', 'and the device id');

  await update(registrationId, { provisioningStatus: 'enabled', iotHubs: [SECOND], reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: true } });
  const back = await dps.registerSymmetricKey(svc, registrationId, primaryKey);
  assert.equal(back.assignedHub, SECOND);
  assert.equal(back.substatus, 'deviceDataMigrated', 're-enabled devices are re-provisioned, not started over');
  assert.ok(await hubHolds(SECOND, 'kept-device-id'), 'the new hub holds the device');
  assert.ok(!(await hubHolds(dps.DEFAULT_HUB, 'kept-device-id')), 'the old hub no longer does');
});

test('§7.3 re-enabled with "never re-provision", the device keeps its hub and data', async () => {
  const { registrationId, primaryKey } = await enroll([dps.DEFAULT_HUB], { reprovisionPolicy: { updateHubAssignment: false, migrateDeviceData: true } });
  await dps.registerSymmetricKey(svc, registrationId, primaryKey);
  await update(registrationId, { provisioningStatus: 'disabled' });
  await rejected(dps.registerSymmetricKey(svc, registrationId, primaryKey));
  await update(registrationId, { provisioningStatus: 'enabled', iotHubs: [SECOND] });
  const back = await dps.registerSymmetricKey(svc, registrationId, primaryKey);
  assert.equal(back.assignedHub, dps.DEFAULT_HUB, 'never re-provision: the hub it had before it was disabled');
  assert.equal(back.substatus, 'initialAssignment');
  assert.ok(await hubHolds(dps.DEFAULT_HUB, registrationId));
});
