'use strict';
// TPM attestation (§4.4) with the official Node device SDK (`TpmRegistration`) over Http (§1.10 TPM: the 401
// challenge, then a SAS token signed in the TPM) and Amqp (§3.3: the `TPM` SASL mechanism), and with the `dps`
// CLI's own device (`dps device register --attestation tpm`). Each device is a private swtpm (lib/swtpm.js)
// behind a security client that drives it through `dps tpm show|activate|sign` (lib/tpm-security.js);
// enrollments are made with the official service SDK (`attestation: {type: 'tpm', tpm: {endorsementKey}}`).
// The key of the second blob (K2, §4.4.3 step 4) must be the hub identity's key (§7.4): the enrollment sends the
// device to an IoT Hub stand-in behind the `azureIotHub` connector, which records the identity's keys, and
// the TPM's HMAC must match an HMAC with that key. Refusals: an EK that does not match the enrollment (§1.10,
// §1.8, §3.3 frame 8).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const dps = require('./lib/dps');
const certs = require('./lib/certs');
const { startSwtpm } = require('./lib/swtpm');
const { DpsTpmSecurityClient } = require('./lib/tpm-security');
const { startHubStandIn, linkStandIn } = require('./lib/hub-standin');

const HUB = 'tpm-hub.example.net';

let svc;
let sc;
let dir;
let hub;

before(async () => {
  svc = await dps.startService({ extraArgs: ['--amqp-port', '0', '--retry-after-secs', '2'] });
  sc = dps.serviceClient(svc);
  dir = certs.workDir('dps-tpm-');
  hub = await startHubStandIn(dir);
  await linkStandIn(svc, HUB, hub);
});
after(async () => {
  if (svc) await svc.stop();
  if (hub) await hub.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh swtpm and its security client; `fn(tpm, security)` runs, the swtpm is stopped afterwards. */
async function withTpm(fn) {
  const tpm = await startSwtpm();
  try {
    return await fn(tpm, new DpsTpmSecurityClient({ tcti: tpm.tcti }));
  } finally {
    await tpm.stop();
  }
}

/** An individual TPM enrollment (official service SDK) for `registrationId` with `endorsementKey`, sent to the stand-in hub. */
async function enroll(registrationId, endorsementKey) {
  const res = await sc.createOrUpdateIndividualEnrollment({
    registrationId,
    attestation: { type: 'tpm', tpm: { endorsementKey } },
    allocationPolicy: 'static',
    iotHubs: [HUB],
  });
  const e = res.responseBody;
  assert.equal(e.attestation.type, 'tpm');
  assert.equal(e.attestation.tpm.endorsementKey, endorsementKey, 'the enrollment keeps the EK as given');
  return e;
}

function b64eq(a, b) { return Buffer.from(a, 'base64').equals(Buffer.from(b, 'base64')); }

/**
 * The operation status of an assigned TPM device (§1.5: `registrationState.tpm.authenticationKey` required);
 * the device activated K1 then K2 — the last blob being the answer's — and its TPM now signs with the hub
 * identity's primary key (§4.4.3 step 4, §7.4): HMAC("{assignedHub}/devices/{deviceId}\n{expiry}").
 */
async function assertAssignedWithHubKey(status, registrationId, security, activations) {
  assert.equal(status.status, 'assigned', JSON.stringify(status));
  const state = status.registrationState;
  assert.equal(state.registrationId, registrationId);
  assert.equal(state.assignedHub, HUB);
  assert.equal(state.deviceId, registrationId);
  assert.equal(typeof (state.tpm && state.tpm.authenticationKey), 'string', `no registrationState.tpm.authenticationKey: ${JSON.stringify(state)}`);
  if (activations) {
    assert.equal(activations.length, 2, 'the device activates the challenge (K1), then the hub key (K2)');
    assert.ok(b64eq(activations[1], state.tpm.authenticationKey), 'the second activation is the assigned answer\'s blob');
  }
  const identity = hub.devices.get(state.deviceId);
  assert.ok(identity, `the hub received no identity ${state.deviceId} (it has ${[...hub.devices.keys()].join(', ')})`);
  assert.equal(identity.authentication.type, 'sas', JSON.stringify(identity.authentication));
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const data = `${state.assignedHub}/devices/${state.deviceId}\n${expiry}`;
  const signed = await security.signWithIdentity(Buffer.from(data, 'utf8'));
  const expected = crypto.createHmac('sha256', Buffer.from(identity.authentication.symmetricKey.primaryKey, 'base64')).update(data, 'utf8').digest();
  assert.equal(signed.toString('base64'), expected.toString('base64'), 'the TPM does not hold the hub identity\'s primary key (K2)');
}

/** PUT …/register without Authorization (what a TPM device sends first, §1.10); resolves { status, body }. */
function unauthenticatedRegister(registrationId, tpm) {
  const data = Buffer.from(JSON.stringify({ registrationId, tpm }));
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: svc.host, port: svc.port, method: 'PUT', ca: svc.ca,
      path: `/${svc.idScope}/registrations/${encodeURIComponent(registrationId)}/register?api-version=2021-06-01`,
      headers: { 'content-type': 'application/json; charset=utf-8', 'content-length': data.length },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body = text;
        try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
        resolve({ status: res.statusCode, body });
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

test('§1.10/§4.4 Http: TPM enrollment → 401 challenge, SAS signed in the TPM → assigned; the TPM holds the hub key (K2)', async () => {
  await withTpm(async (tpm, security) => {
    const { registrationId, endorsementKey } = await security.show();
    await enroll(registrationId, endorsementKey);
    const client = ProvisioningDeviceClient.create(svc.host, svc.idScope, dps.httpTransport(svc), security);
    const status = await client.register();
    await assertAssignedWithHubKey(status, registrationId, security, security.activations);
  });
});

test('§3.3/§4.4 Amqp: TPM SASL mechanism → assigned; the TPM holds the hub key (K2)', async () => {
  await withTpm(async (tpm, security) => {
    const { registrationId, endorsementKey } = await security.show();
    await enroll(registrationId, endorsementKey);
    const [r] = await dps.registerAmqp(svc, [{ registrationId, tpm: { tcti: tpm.tcti } }]);
    assert.ok(r.ok, `registration failed: ${JSON.stringify(r.error)}`);
    await assertAssignedWithHubKey(r.result, registrationId, security, r.activations);
  });
});

for (const transport of ['https', 'amqp']) {
  test(`§4.4 dps device register --attestation tpm --transport ${transport} → assigned; the TPM holds the hub key (K2)`, async () => {
    await withTpm(async (tpm, security) => {
      const { registrationId, endorsementKey } = await security.show();
      await enroll(registrationId, endorsementKey);
      const r = await dps.runCli(svc, ['device', 'register', '--attestation', 'tpm', '--transport', transport, '--tcti', tpm.tcti, '--output', 'json']);
      await assertAssignedWithHubKey(r.json, registrationId, security);
    });
  });
}

test('§1.10/§1.8 Http refusal: an EK that does not match the enrollment → 401 without a challenge; nothing activated', async () => {
  await withTpm(async (tpm, security) => withTpm(async (_other, otherSecurity) => {
    const mine = await security.show();
    const theirs = await otherSecurity.show();
    await enroll(mine.registrationId, theirs.endorsementKey);

    const raw = await unauthenticatedRegister(mine.registrationId, { endorsementKey: mine.endorsementKey, storageRootKey: mine.storageRootKey });
    assert.equal(raw.status, 401, JSON.stringify(raw.body));
    assert.equal(typeof raw.body, 'object', `error body is not JSON: ${raw.body}`);
    assert.equal(Math.floor(raw.body.errorCode / 1000), 401, JSON.stringify(raw.body));
    assert.equal(raw.body.authenticationKey, undefined, 'a challenge for an EK that does not match the enrollment');

    const client = ProvisioningDeviceClient.create(svc.host, svc.idScope, dps.httpTransport(svc), security);
    await assert.rejects(client.register());
    assert.deepEqual(security.activations, []);

    // The fix: `dps enrollment update --endorsement-key` with the device's own EK; then the SDK provisions.
    const updated = await dps.runCli(svc, ['enrollment', 'update', '--enrollment-id', mine.registrationId, '--endorsement-key', mine.endorsementKey, '--output', 'json']);
    assert.equal(updated.json.attestation.tpm.endorsementKey, mine.endorsementKey);
    const retry = ProvisioningDeviceClient.create(svc.host, svc.idScope, dps.httpTransport(svc), security);
    const result = await retry.register();
    assert.equal((result.registrationState || result).status, 'assigned', JSON.stringify(result));
  }));
});

test('§3.3 Amqp refusal: an EK that does not match the enrollment → SASL refused; nothing activated', async () => {
  await withTpm(async (tpm, security) => withTpm(async (_other, otherSecurity) => {
    const mine = await security.show();
    await enroll(mine.registrationId, (await otherSecurity.show()).endorsementKey);
    // The official SDK: the connection fails at the SASL outcome; azure-iot-provisioning-device-amqp 1.9.1 then
    // never calls register() back (lib/amqp-device.js reports it as not settled), but it activated nothing.
    const [r] = await dps.registerAmqp(svc, [{ registrationId: mine.registrationId, tpm: { tcti: tpm.tcti } }]);
    assert.equal(r.ok, false, `expected a refusal, got ${JSON.stringify(r.result)}`);
    assert.deepEqual(r.activations, []);
    // The CLI's device names the SASL outcome (§3.3 frame 8: auth).

    const cli = await dps.runCli(svc, ['device', 'register', '--attestation', 'tpm', '--transport', 'amqp', '--tcti', tpm.tcti], { allowFailure: true });
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /SASL outcome auth \(1\)/);
  }));
});

test('§4.4.2 dps tpm show: the registration id is derived from the EK (lower-case base32 of SHA-256, 52 characters)', async () => {
  await withTpm(async (_tpm, security) => {
    const { registrationId, endorsementKey } = await security.show();
    const digest = crypto.createHash('sha256').update(Buffer.from(endorsementKey, 'base64')).digest();
    const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
    let bits = '';
    for (const byte of digest) bits += byte.toString(2).padStart(8, '0');
    let id = '';
    for (let i = 0; i < bits.length; i += 5) id += alphabet[parseInt(bits.slice(i, i + 5).padEnd(5, '0'), 2)];
    assert.equal(registrationId, id);
    assert.equal(registrationId.length, 52);
    assert.equal(await security.getRegistrationId(), registrationId, 'the security client answers the same id');
  });
});
