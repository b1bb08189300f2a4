'use strict';
// Master-key rotation (#15 item 4) through the official SDKs: devices of the Node device SDK keep registering
// while `dps keys rotate` runs, and afterwards every secret the service keeps still works — group-derived and
// individual keys attest over HTTPS and MQTT, and the service SDK reads the enrollments' keys back unchanged.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const dps = require('./lib/dps');

let svc;
let sc;

before(async () => {
  svc = await dps.startService();
  sc = dps.serviceClient(svc);
});
after(async () => { if (svc) await svc.stop(); });

function symmetric(primaryKey) {
  return { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: dps.randomKey() } };
}

test('#15 `dps keys rotate` while SDK devices register: every registration assigned, every key still attests', async () => {
  const enrollmentGroupId = dps.uid('keys-grp');
  const groupKey = dps.randomKey();
  await sc.createOrUpdateEnrollmentGroup({ enrollmentGroupId, attestation: symmetric(groupKey) });
  const registrationId = dps.uid('keys-ind');
  const individualKey = dps.randomKey();
  await sc.createOrUpdateIndividualEnrollment({ registrationId, attestation: symmetric(individualKey) });
  // Enough rows that the rotation has pages to re-seal while the devices below register.
  const extra = Array.from({ length: 150 }, () => ({ registrationId: dps.uid('keys-bulk'), attestation: symmetric(dps.randomKey()) }));
  await dps.runBulk(sc, { mode: 'create', enrollments: extra });
  const keyFile = path.join(svc.dataDir, 'master.key');
  const oldKey = fs.readFileSync(keyFile, 'utf8');

  const ids = Array.from({ length: 12 }, () => dps.uid('keys-dev'));
  const registering = dps.mapLimit(ids, 4, (id, i) => (i % 2
    ? dps.registerSymmetricKeyMqtt(svc, id, dps.deriveKey(groupKey, id)).then((r) => r.result)
    : dps.registerSymmetricKey(svc, id, dps.deriveKey(groupKey, id))));
  const rotated = await dps.runCli(svc, ['keys', 'rotate', '--output', 'json']);
  const results = await registering;

  assert.notEqual(rotated.json.keyId, rotated.json.previousKeyId, rotated.stdout);
  assert.equal(rotated.json.unreadable, 0, rotated.stdout);
  assert.ok(rotated.json.resealed >= extra.length + 2, rotated.stdout);
  for (const r of results) assert.equal(r.status, 'assigned', JSON.stringify(r));
  assert.notEqual(fs.readFileSync(keyFile, 'utf8'), oldKey, 'the key file holds the new key');
  assert.ok(!fs.existsSync(`${keyFile}.next`), 'the rotation finished');

  // After the rotation: keys sealed before it still attest, over both transports, and read back unchanged.
  const again = dps.uid('keys-after');
  assert.equal((await dps.registerSymmetricKey(svc, again, dps.deriveKey(groupKey, again))).status, 'assigned');
  assert.equal((await dps.registerSymmetricKeyMqtt(svc, registrationId, individualKey)).result.status, 'assigned');
  const group = (await sc.getEnrollmentGroup(enrollmentGroupId)).responseBody;
  assert.equal(group.attestation.symmetricKey.primaryKey, groupKey);
  const individual = (await sc.getIndividualEnrollmentAttestationMechanism(registrationId)).responseBody;
  assert.equal(individual.symmetricKey.primaryKey, individualKey);
});
