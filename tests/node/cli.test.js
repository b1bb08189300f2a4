'use strict';
// The `dps` CLI (JSON output) checked against what the official SDKs see.
// Only commands whose flags are fixed by the binary's contract are covered so far
// (hub add/list/remove, compute-device-key, connection-info).

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
  const entry = (Array.isArray(listed.json) ? listed.json : listed.json.hubs || []).find((h) => h && typeof h === 'object' && Object.values(h).includes(hub));
  if (entry) {
    const w = entry.allocationWeight !== undefined ? entry.allocationWeight : entry.weight;
    assert.equal(w, 7, `weight of ${hub} in ${JSON.stringify(entry)}`);
  }

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

test('`dps connection-info --output json` names this service (id scope, port, working service connection string)', async () => {
  const r = await dps.runCli(svc, ['connection-info', '--output', 'json']);
  const text = JSON.stringify(r.json);
  assert.ok(text.includes(svc.idScope), `id scope ${svc.idScope} missing: ${r.stdout}`);
  assert.ok(text.includes(String(svc.port)), `port ${svc.port} missing: ${r.stdout}`);
  // Every connection string it prints must work with the official service SDK.
  const strings = [];
  (function walk(v) {
    if (typeof v === 'string' && /HostName=.*SharedAccessKey=/.test(v)) strings.push(v);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  }(r.json));
  assert.ok(strings.length > 0, `no service connection string in ${r.stdout}`);
  for (const cs of strings) {
    const client = dps.serviceClient(svc, { connectionString: cs });
    const page = await client.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments' }, 1).next();
    assert.ok(Array.isArray(page.responseBody));
  }
});
