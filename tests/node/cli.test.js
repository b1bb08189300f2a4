'use strict';
// The `dps` CLI (`--output json`) checked against what the official Node SDKs see.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dps = require('./lib/dps');

let svc;
let sc;

before(async () => {
  svc = await dps.startService();
  sc = dps.serviceClient(svc);
});
after(async () => { if (svc) await svc.stop(); });

test('§4.2 `dps compute-device-key` = HMAC-SHA256 derivation (docs test vectors + the device SDK accepts it)', async () => {
  const vectors = [
    ['8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==', 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6', 'Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc='],
    ['oiK77Oy7rBw8YB6IS6ukRChAw+Yq6GC61RMrPLSTiOOtdI+XDu0LmLuNm11p+qv2I+adqGUdZHm46zXAQdZoOA==', 'breakroom499-contoso-tstrsd-007', 'JC8F96eayuQwwz+PkE7IzjH2lIAjCUnAa61tDigBnSs='],
  ];
  for (const [key, id, expected] of vectors) {
    const r = await dps.runCli(svc, ['compute-device-key', '--key', key, '--registration-id', id], { dataDir: false, json: false });
    assert.equal(r.stdout.trim(), expected);
  }
  // A key printed by the CLI for a real group registers with the official device SDK.
  const enrollmentGroupId = dps.uid('cli-grp');
  const groupKey = dps.randomKey();
  await sc.createOrUpdateEnrollmentGroup({ enrollmentGroupId, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: dps.randomKey() } } });
  const id = dps.uid('Cli-Dev');
  const r = await dps.runCli(svc, ['compute-device-key', '--key', groupKey, '--registration-id', id], { dataDir: false, json: false });
  const deviceKey = r.stdout.trim();
  assert.equal(deviceKey, dps.deriveKey(groupKey, id));
  const result = await dps.registerSymmetricKey(svc, id, deviceKey);
  assert.equal(result.status, 'assigned');
  assert.equal(result.deviceId, id);
});

test('§7.2 `dps hub add/list/remove`: a hub named by an enrollment receives its devices; removal is listed', async () => {
  const before0 = await dps.listHubs(svc);
  assert.ok(before0.includes(dps.DEFAULT_HUB), `default hub missing from ${JSON.stringify(before0)}`);

  const hub = `${dps.uid('cli-hub')}.dps.local`;
  await dps.runCli(svc, ['hub', 'add', hub, '--weight', '7']);
  const listed = await dps.runCli(svc, ['hub', 'list', '--output', 'json']);
  assert.ok(dps.hubNames(listed.json).includes(hub), `added hub missing from ${listed.stdout}`);
  const entry = listed.json.find((h) => h.hostName === hub);
  assert.equal(entry.allocationWeight, 7, `weight of ${hub} in ${JSON.stringify(entry)}`);

  // §7.2 candidate set = the enrollment's iotHubs: the device must land on the new hub.
  const registrationId = dps.uid('cli-hub-dev');
  const primaryKey = dps.randomKey();
  await sc.createOrUpdateIndividualEnrollment({ registrationId, iotHubs: [hub], attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: dps.randomKey() } } });
  const result = await dps.registerSymmetricKey(svc, registrationId, primaryKey);
  assert.equal(result.assignedHub, hub);

  await dps.runCli(svc, ['hub', 'remove', hub]);
  const after1 = await dps.listHubs(svc);
  assert.ok(!after1.includes(hub), `removed hub still listed: ${JSON.stringify(after1)}`);
  assert.ok(after1.includes(dps.DEFAULT_HUB));
});

test('`dps connection-info --output json` = endpoint.json, and its connection string works with the service SDK', async () => {
  const r = await dps.runCli(svc, ['connection-info', '--output', 'json']);
  assert.deepEqual(r.json, svc.endpoint);
  const client = dps.serviceClient(svc, { connectionString: r.json.serviceConnectionString });
  const page = await client.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments' }, 1).next();
  assert.ok(Array.isArray(page.responseBody));
  assert.equal(page.httpResponse.statusCode, 200);
});

const body = async (p) => (await p).responseBody;
/** An enrollment as the service API shows it, minus the secrets (the CLI hides them unless --show-keys). */
const withoutKeys = (e) => ({ ...e, attestation: { type: e.attestation.type } });

test('`dps enrollment create/show/list/update/delete` ↔ service SDK (§5.2, §5.3)', async () => {
  const id = dps.uid('cli-enr');
  const created = (await dps.runCli(svc, ['enrollment', 'create', '--enrollment-id', id, '--device-id', 'cli-device',
    '--provisioning-status', 'disabled', '--iot-hubs', dps.DEFAULT_HUB, '--allocation-policy', 'hashed',
    '--initial-twin-tags', '{"site":"b12"}', '--initial-twin-properties', '{"interval":30}',
    '--edge-enabled', 'true', '--reprovision-policy', 'reprovisionandresetdata', '--output', 'json'])).json;

  const sdk = await body(sc.getIndividualEnrollment(id));
  assert.equal(sdk.registrationId, id);
  assert.equal(sdk.deviceId, 'cli-device');
  assert.equal(sdk.provisioningStatus, 'disabled');
  assert.deepEqual(sdk.iotHubs, [dps.DEFAULT_HUB]);
  assert.equal(sdk.allocationPolicy, 'hashed');
  assert.equal(sdk.initialTwin.tags.site, 'b12');
  assert.equal(sdk.initialTwin.properties.desired.interval, 30);
  assert.deepEqual(sdk.capabilities, { iotEdge: true });
  assert.deepEqual(sdk.reprovisionPolicy, { updateHubAssignment: true, migrateDeviceData: false });
  assert.deepEqual(withoutKeys(created), withoutKeys(sdk), 'create output = what the service stores');

  // keys: create prints the generated keys; show --show-keys = attestationmechanism
  const att = await body(sc.getIndividualEnrollmentAttestationMechanism(id));
  assert.deepEqual(created.attestation, att);
  const shown = (await dps.runCli(svc, ['enrollment', 'show', '--enrollment-id', id, '--show-keys', '--output', 'json'])).json;
  assert.deepEqual(shown.attestation, att);
  assert.deepEqual(withoutKeys(shown), withoutKeys(sdk));
  const hidden = (await dps.runCli(svc, ['enrollment', 'show', '--enrollment-id', id, '--output', 'json'])).json;
  assert.notEqual(hidden.attestation.symmetricKey.primaryKey, att.symmetricKey.primaryKey, 'keys hidden without --show-keys');

  const listed = (await dps.runCli(svc, ['enrollment', 'list', '--output', 'json'])).json;
  const all = (await dps.drainQuery(sc.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments' }, 50))).items;
  assert.deepEqual(listed.map((e) => e.registrationId).sort(), all.map((e) => e.registrationId).sort());

  // update: only the given option changes, etag moves; the SDK sees the new state
  const upd = (await dps.runCli(svc, ['enrollment', 'update', '--enrollment-id', id, '--provisioning-status', 'enabled', '--output', 'json'])).json;
  const sdk2 = await body(sc.getIndividualEnrollment(id));
  assert.equal(sdk2.provisioningStatus, 'enabled');
  assert.equal(sdk2.deviceId, 'cli-device');
  assert.equal(upd.etag, sdk2.etag);
  assert.notEqual(sdk2.etag, sdk.etag);
  assert.equal((await body(sc.getIndividualEnrollmentAttestationMechanism(id))).symmetricKey.primaryKey, att.symmetricKey.primaryKey, 'update keeps keys');

  // stale etag → the CLI fails with the service's 412 and changes nothing
  const stale = await dps.runCli(svc, ['enrollment', 'update', '--enrollment-id', id, '--device-id', 'lost', '--etag', sdk.etag, '--output', 'json'], { allowFailure: true });
  assert.notEqual(stale.code, 0);
  assert.match(stale.stderr, /412/);
  assert.equal((await body(sc.getIndividualEnrollment(id))).deviceId, 'cli-device');
  const staleDel = await dps.runCli(svc, ['enrollment', 'delete', '--enrollment-id', id, '--etag', sdk.etag], { allowFailure: true });
  assert.notEqual(staleDel.code, 0);
  assert.match(staleDel.stderr, /412/);

  await dps.runCli(svc, ['enrollment', 'delete', '--enrollment-id', id, '--etag', sdk2.etag]);
  await dps.expectHttpError(sc.getIndividualEnrollment(id), 404, assert);
  const gone = await dps.runCli(svc, ['enrollment', 'show', '--enrollment-id', id, '--output', 'json'], { allowFailure: true });
  assert.notEqual(gone.code, 0);
  assert.match(gone.stderr, /404/);
});

test('`dps enrollment create --attestation-type tpm` stores the EK the SDK reads back (§5.3)', async () => {
  const { tpmKeys, tpmRegistrationId } = require('./lib/fixtures');
  const tpm = tpmKeys();
  const id = tpmRegistrationId(tpm.endorsementKey);
  await dps.runCli(svc, ['enrollment', 'create', '--enrollment-id', id, '--attestation-type', 'tpm', '--endorsement-key', tpm.endorsementKey, '--output', 'json']);
  const sdk = await body(sc.getIndividualEnrollment(id));
  assert.equal(sdk.attestation.type, 'tpm');
  assert.equal(sdk.attestation.tpm.endorsementKey, tpm.endorsementKey);
});

test('`dps enrollment-group create/show/list/update/delete` ↔ service SDK; a device registers with the CLI-made group', async () => {
  const gid = dps.uid('cli-grp');
  const primaryKey = dps.randomKey();
  const secondaryKey = dps.randomKey(32);
  const created = (await dps.runCli(svc, ['enrollment-group', 'create', '--group-id', gid, '--primary-key', primaryKey, '--secondary-key', secondaryKey,
    '--initial-twin-tags', '{"plant":7}', '--output', 'json'])).json;
  assert.equal(created.enrollmentGroupId, gid);
  const att = await body(sc.getEnrollmentGroupAttestationMechanism(gid));
  assert.equal(att.symmetricKey.primaryKey, primaryKey);
  assert.equal(att.symmetricKey.secondaryKey, secondaryKey);
  const sdk = await body(sc.getEnrollmentGroup(gid));
  assert.equal(sdk.initialTwin.tags.plant, 7);
  assert.deepEqual(withoutKeys(created), withoutKeys(sdk));
  const shown = (await dps.runCli(svc, ['enrollment-group', 'show', '--group-id', gid, '--show-keys', '--output', 'json'])).json;
  assert.deepEqual(shown.attestation, att);
  assert.deepEqual(withoutKeys(shown), withoutKeys(sdk));
  const listed = (await dps.runCli(svc, ['enrollment-group', 'list', '--output', 'json'])).json;
  const all = (await dps.drainQuery(sc.createEnrollmentGroupQuery({ query: 'SELECT * FROM enrollmentGroups' }, 50))).items;
  assert.deepEqual(listed.map((g) => g.enrollmentGroupId).sort(), all.map((g) => g.enrollmentGroupId).sort());

  const devId = dps.uid('cli-grp-dev');
  const r = await dps.registerSymmetricKey(svc, devId, dps.deriveKey(primaryKey, devId));
  assert.equal(r.status, 'assigned');

  const upd = (await dps.runCli(svc, ['enrollment-group', 'update', '--group-id', gid, '--provisioning-status', 'disabled', '--output', 'json'])).json;
  const sdk2 = await body(sc.getEnrollmentGroup(gid));
  assert.equal(sdk2.provisioningStatus, 'disabled');
  assert.equal(upd.etag, sdk2.etag);
  const stale = await dps.runCli(svc, ['enrollment-group', 'delete', '--group-id', gid, '--etag', sdk.etag], { allowFailure: true });
  assert.notEqual(stale.code, 0);
  assert.match(stale.stderr, /412/);
  await dps.runCli(svc, ['enrollment-group', 'delete', '--group-id', gid]);
  await dps.expectHttpError(sc.getEnrollmentGroup(gid), 404, assert);
});

test('`dps registration list/show/delete` ↔ service SDK registration states (§5.2)', async () => {
  const gid = dps.uid('cli-reg-grp');
  const groupKey = dps.randomKey();
  await sc.createOrUpdateEnrollmentGroup({ enrollmentGroupId: gid, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: dps.randomKey() } } });
  const ids = [dps.uid('cli-reg-a'), dps.uid('cli-reg-b')];
  const results = await Promise.all(ids.map((id) => dps.registerSymmetricKey(svc, id, dps.deriveKey(groupKey, id))));

  const listed = (await dps.runCli(svc, ['registration', 'list', '--group-id', gid, '--output', 'json'])).json;
  const viaSdk = (await dps.drainQuery(sc.createEnrollmentGroupDeviceRegistrationStateQuery({ query: 'SELECT * FROM enrollments' }, gid, 10))).items;
  const byId = (arr) => [...arr].sort((a, b) => a.registrationId.localeCompare(b.registrationId));
  assert.deepEqual(byId(listed), byId(viaSdk));
  assert.deepEqual(listed.map((s) => s.registrationId).sort(), [...ids].sort());

  const all = (await dps.runCli(svc, ['registration', 'list', '--output', 'json'])).json;
  for (const id of ids) assert.ok(all.some((s) => s.registrationId === id), `${id} missing from registration list`);

  const shown = (await dps.runCli(svc, ['registration', 'show', '--registration-id', ids[0], '--output', 'json'])).json;
  assert.deepEqual(shown, await body(sc.getDeviceRegistrationState(ids[0])));
  assert.equal(shown.assignedHub, results[0].assignedHub);
  assert.equal(shown.deviceId, results[0].deviceId);

  await dps.runCli(svc, ['registration', 'delete', '--registration-id', ids[0]]);
  await dps.expectHttpError(sc.getDeviceRegistrationState(ids[0]), 404, assert);
  const after2 = (await dps.runCli(svc, ['registration', 'list', '--group-id', gid, '--output', 'json'])).json;
  assert.deepEqual(after2.map((s) => s.registrationId), [ids[1]]);
});
