'use strict';
// Official Node device SDK with X.509 attestation (azure-iot-security-x509 `X509Security` +
// azure-iot-provisioning-device-http / -mqtt) against the local service (§4.3, §7.1, §7.4).
// The device's certificate travels in TLS only: the Http transport puts cert/key into the https request
// options (RestApiClient config.x509), the Mqtt transport into the MQTT TLS options.
// Every scenario runs over HTTPS and over MQTT; certificates come from openssl in one run and from
// `dps cert` in the other (lib/certs.js), and thumbprints etc. are checked against `openssl x509`.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const dps = require('./lib/dps');
const certs = require('./lib/certs');

let svc;
let sc;
let dir;

before(async () => {
  svc = await dps.startService({ extraArgs: ['--mqtt-port', '0', '--retry-after-secs', '2'] });
  assert.ok(svc.endpoint.ports.mqtt > 0, `endpoint.json ports.mqtt: ${JSON.stringify(svc.endpoint.ports)}`);
  sc = dps.serviceClient(svc);
  dir = certs.workDir();
});
after(async () => {
  if (svc) await svc.stop();
  if (dir && !process.env.DPS_KEEP_DATA) fs.rmSync(dir, { recursive: true, force: true });
});

// transport × certificate tool: each scenario runs twice, and both tools are used for every scenario.
const RUNS = [
  { transport: 'http', tools: ['openssl', 'dps'] },
  { transport: 'mqtt', tools: ['dps', 'openssl'] },
];
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const RES_200 = new RegExp(`^\\$dps/registrations/res/200/\\?\\$rid=(${UUID})(&retry-after=\\d+)?$`);
const RES_202 = new RegExp(`^\\$dps/registrations/res/202/\\?\\$rid=(${UUID})&retry-after=\\d+$`);
const RES_401 = new RegExp(`^\\$dps/registrations/res/401/\\?\\$rid=(${UUID})(&retry-after=\\d+)?$`);
const INFO_FIELDS = ['subjectName', 'sha1Thumbprint', 'sha256Thumbprint', 'issuerName', 'notBeforeUtc', 'notAfterUtc', 'serialNumber', 'version'];

function dumpTrace(err) {
  return '\n' + ((err && err.trace && err.trace.received) || []).map((m) => `  ${m.topic} ${m.payload}`).join('\n');
}

/** Unique registration / object names; the CN is the registration id (lower-case + mixed where asked). */
function name(prefix) { return dps.uid(prefix); }

/** §1.5 X509CertificateInfo compared with what `openssl x509` reads from the same PEM. */
function assertCertInfo(actual, pemPath, what) {
  const exp = certs.info(pemPath);
  assert.equal(typeof actual, 'object', `${what}: X509CertificateInfo missing`);
  assert.ok(actual !== null, `${what}: X509CertificateInfo is null`);
  for (const f of INFO_FIELDS) assert.ok(actual[f] !== undefined && actual[f] !== null, `${what}: §1.5 required field ${f} missing: ${JSON.stringify(actual)}`);
  assert.equal(actual.sha1Thumbprint, exp.sha1, `${what}: sha1Thumbprint (openssl x509 -fingerprint -sha1, upper-case, no colons)`);
  assert.equal(actual.sha256Thumbprint, exp.sha256, `${what}: sha256Thumbprint (openssl x509 -fingerprint -sha256)`);
  assert.equal(actual.subjectName, exp.subject, `${what}: subjectName`);
  assert.equal(actual.issuerName, exp.issuer, `${what}: issuerName`);
  // Whole seconds, no fraction (issue 13 fix 7).
  for (const f of ['notBeforeUtc', 'notAfterUtc']) assert.match(actual[f], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, `${what}: ${f}`);
  assert.equal(Date.parse(actual.notBeforeUtc), exp.notBefore, `${what}: notBeforeUtc ${actual.notBeforeUtc}`);
  assert.equal(Date.parse(actual.notAfterUtc), exp.notAfter, `${what}: notAfterUtc ${actual.notAfterUtc}`);
  assert.match(actual.serialNumber, /^[0-9A-F]+$/, `${what}: serialNumber is upper-case hex`);
  assert.equal(actual.serialNumber.replace(/^0+(?=.)/, ''), exp.serial, `${what}: serialNumber`);
  assert.equal(actual.version, 3, `${what}: version`);
}

/**
 * The whole success result (§1.5) of an X.509 registration, plus §7.4: the hub identity is `selfSigned`,
 * and the registration record exists (service API, §5.2).
 * group = { id, signingCert (PEM path of the group's certificate / the referenced CA) } for group enrollments.
 */
async function assertX509Assigned(result, { registrationId, device, group }) {
  assert.equal(typeof result, 'object', 'register() must resolve with registrationState');
  assert.equal(result.registrationId, registrationId, 'registrationId');
  assert.equal(result.assignedHub, dps.DEFAULT_HUB, 'assignedHub');
  assert.equal(result.deviceId, registrationId, 'deviceId = the leaf CN (§7.4)');
  assert.equal(result.status, 'assigned', 'status');
  assert.equal(result.substatus, 'initialAssignment', 'substatus');
  assert.ok(Math.abs(Date.now() - Date.parse(result.createdDateTimeUtc)) < 3600e3, `createdDateTimeUtc ${result.createdDateTimeUtc}`);
  assert.equal(typeof result.etag, 'string', 'etag');
  assert.ok(result.etag.length > 0, 'etag non-empty');
  assert.equal(result.symmetricKey, undefined, 'no symmetricKey member for an X.509 registration');
  assert.equal(result.tpm, undefined, 'no tpm member for an X.509 registration');

  const x = result.x509;
  assert.equal(typeof x, 'object', `§1.5 registrationState.x509 missing: ${JSON.stringify(result)}`);
  assertCertInfo(x.certificateInfo, device.cert, 'x509.certificateInfo (the leaf)');
  if (group) {
    assert.equal(x.enrollmentGroupId, group.id, 'x509.enrollmentGroupId');
    assertCertInfo(x.signingCertificateInfo, group.signingCert, 'x509.signingCertificateInfo (the group certificate)');
  } else {
    assert.equal(x.enrollmentGroupId, undefined, 'individual enrollment: no x509.enrollmentGroupId');
    assert.equal(x.signingCertificateInfo, undefined, 'individual enrollment: no x509.signingCertificateInfo');
  }

  // §7.4: the hub identity authenticates with the device's own (self-signed-type) certificate.
  const identity = await hubIdentity(registrationId);
  assert.ok(identity, `no identity for ${registrationId} in ${dps.DEFAULT_HUB}`);
  assert.equal(identity.registrationId, registrationId, `hub identity ${JSON.stringify(identity)}`);
  assert.equal(identity.authenticationType, 'selfSigned', `§7.4 hub identity of an X.509 device: ${JSON.stringify(identity)}`);

  // §5.2 the registration record
  const state = (await sc.getDeviceRegistrationState(registrationId)).responseBody;
  assert.equal(state.registrationId, registrationId);
  assert.equal(state.assignedHub, result.assignedHub);
  assert.equal(state.deviceId, result.deviceId);
  assert.equal(state.status, 'assigned');
}

async function hubIdentity(deviceId) {
  const list = (await dps.runCli(svc, ['hub', 'devices', dps.DEFAULT_HUB, '--output', 'json'])).json;
  assert.ok(Array.isArray(list), `dps hub devices --output json: ${JSON.stringify(list)}`);
  return list.find((d) => d.deviceId === deviceId);
}

/** MQTT: register → res/202 … → res/200 (§2.5). */
function assertMqttTrace(trace) {
  const msgs = trace.received;
  assert.ok(msgs.length >= 2, `expected 202 then 200${dumpTrace({ trace })}`);
  assert.match(msgs[0].topic, RES_202, dumpTrace({ trace }));
  assert.match(msgs[msgs.length - 1].topic, RES_200, dumpTrace({ trace }));
}

async function register(transport, registrationId, device, opts = {}) {
  const { result, trace } = await dps.registerX509(svc, registrationId, { cert: device.chainPem, key: device.keyPem }, { transport, ...opts });
  if (transport !== 'http') assertMqttTrace(trace);
  return result;
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
 * Contract: attestation refusals are DPS errors, not TLS failures — HTTPS 401 / MQTT CONNACK 0 then
 * res/401 — with errorCode 401002 and a message naming the reason (§1.8, §2.5). No record, no identity.
 */
async function assertRefused(err, transport, reason, registrationId) {
  const body = transport === 'http' ? dps.errorBody(err) : err.result;
  const ctx = `${transport}: ${err && err.name}: ${err && err.message} body=${JSON.stringify(body)}${dumpTrace(err)}`;
  assert.equal(err.name, 'UnauthorizedError', `expected UnauthorizedError (a DPS 401, not a TLS failure); ${ctx}`);
  if (transport === 'http') {
    assert.equal(dps.errorStatus(err), 401, ctx);
  } else {
    assert.ok(err.transportObject && RES_401.test(err.transportObject.topic), `§2.5 res/401 topic; ${ctx}`);
    assert.equal(err.trace.received.length, 1, `exactly one response; ${ctx}`);
  }
  assert.equal(typeof body, 'object', ctx);
  assert.equal(body.errorCode, 401002, `§1.8 errorCode; ${ctx}`);
  assert.equal(typeof body.trackingId, 'string', ctx);
  assert.ok(!Number.isNaN(Date.parse(body.timestampUtc)), ctx);
  assert.match(body.message, reason, `the message must name the reason; ${ctx}`);
  await dps.expectHttpError(sc.getDeviceRegistrationState(registrationId), 404, assert);
  assert.equal(await hubIdentity(registrationId), undefined, 'a refused device gets no hub identity');
}

/** §1.6 Node has no `disabled` case: SyntaxError('status is disabled') with the operation status in err.result. */
async function assertDisabled(err, registrationId) {
  assert.ok(err instanceof SyntaxError, `expected SyntaxError 'status is disabled', got ${err && err.name}: ${err && err.message}${dumpTrace(err)}`);
  assert.equal(err.message, 'status is disabled');
  assert.equal(err.result.status, 'disabled');
  if (err.result.registrationState) {
    assert.equal(err.result.registrationState.registrationId, registrationId);
    assert.equal(err.result.registrationState.status, 'disabled');
    assert.equal(err.result.registrationState.assignedHub, undefined, 'a disabled device gets no hub');
  }
  assert.equal(await hubIdentity(registrationId), undefined, 'a disabled device gets no hub identity');
}

// ------------------------------------------------------------------------------------------------
// enrollment helpers: the CLI for groups / CA store, the CLI or the service SDK for individuals
// ------------------------------------------------------------------------------------------------
async function individualViaCli(registrationId, certPath, { disabled = false } = {}) {
  const args = ['enrollment', 'create', '--enrollment-id', registrationId, '--attestation-type', 'x509', '--certificate-path', certPath, '--output', 'json'];
  if (disabled) args.push('--provisioning-status', 'disabled');
  const e = (await dps.runCli(svc, args)).json;
  assert.equal(e.registrationId, registrationId);
  assert.equal(e.attestation.type, 'x509', JSON.stringify(e.attestation));
  return e;
}

async function individualViaSdk(registrationId, pem) {
  const res = await sc.createOrUpdateIndividualEnrollment({
    registrationId,
    attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: pem } } } },
  });
  assert.equal(res.responseBody.registrationId, registrationId);
  assert.equal(res.responseBody.attestation.type, 'x509');
  return res.responseBody;
}

async function groupOnCertificate(groupId, certPath) {
  const g = (await dps.runCli(svc, ['enrollment-group', 'create', '--group-id', groupId, '--attestation-type', 'x509',
    '--certificate-path', certPath, '--output', 'json'])).json;
  assert.equal(g.enrollmentGroupId, groupId);
  assert.equal(g.attestation.type, 'x509', JSON.stringify(g.attestation));
  return g;
}

async function groupOnCaReference(groupId, caName) {
  const g = (await dps.runCli(svc, ['enrollment-group', 'create', '--group-id', groupId, '--attestation-type', 'x509',
    '--ca-name', caName, '--output', 'json'])).json;
  assert.equal(g.enrollmentGroupId, groupId);
  return g;
}

/** Proof of possession (§4.3): verification code → certificate CN=code signed by the CA → verify. */
async function proveCa(caName, ca, tool) {
  const code = (await dps.runCli(svc, ['ca', 'verification-code', caName, '--output', 'json'])).json.verificationCode;
  assert.equal(typeof code, 'string');
  assert.ok(code.length > 0);
  const proof = certs.TOOLS[tool].verification(dir, ca, code);
  await dps.runCli(svc, ['ca', 'verify', caName, '--certificate-path', proof, '--output', 'json']);
  const shown = (await dps.runCli(svc, ['ca', 'show', caName, '--output', 'json'])).json;
  assert.equal(shown.isVerified, true, `dps ca show after verify: ${JSON.stringify(shown)}`);
}

// ------------------------------------------------------------------------------------------------
// scenarios
// ------------------------------------------------------------------------------------------------
for (const { transport, tools } of RUNS) {
  const T = (i) => certs.TOOLS[tools[i % 2]];
  const label = (i) => `${transport}, ${tools[i % 2]} certs`;

  test(`(a) §4.3 ${label(0)}: individual enrollment, self-signed leaf → assigned with x509.certificateInfo`, async () => {
    const id = name(`x-ind-${transport}`);
    const device = T(0).device(dir, id);
    await individualViaCli(id, device.cert);
    const result = await register(transport, id, device);
    await assertX509Assigned(result, { registrationId: id, device });
  });

  test(`(a') §4.3/§5 ${label(1)}: individual enrollment made with the service SDK → assigned`, async () => {
    const id = name(`x-ind-sdk-${transport}`);
    const device = T(1).device(dir, id);
    await individualViaSdk(id, device.pem);
    const result = await register(transport, id, device);
    await assertX509Assigned(result, { registrationId: id, device });
  });

  test(`(b) §4.3 ${label(1)}: group on a root, device sends leaf + intermediate → assigned via the group`, async () => {
    const root = T(1).root(dir, name('root-b'));
    const inter = T(1).intermediate(dir, name('int-b'), root);
    const id = name(`x-grp-root-${transport}`);
    const device = T(1).device(dir, id, { issuer: inter });
    assert.equal((device.chainPem.match(/BEGIN CERTIFICATE/g) || []).length, 2, 'presented chain = leaf + intermediate');
    const gid = name('grp-root');
    await groupOnCertificate(gid, root.cert);
    const result = await register(transport, id, device);
    await assertX509Assigned(result, { registrationId: id, device, group: { id: gid, signingCert: root.cert } });
  });

  test(`(c) §4.3 ${label(0)}: group on the intermediate → assigned via the group`, async () => {
    const root = T(0).root(dir, name('root-c'));
    const inter = T(0).intermediate(dir, name('int-c'), root);
    const id = name(`x-grp-int-${transport}`);
    const device = T(0).device(dir, id, { issuer: inter });
    const gid = name('grp-int');
    await groupOnCertificate(gid, inter.cert);
    // HTTP presents the leaf alone (the group's certificate is its issuer), MQTT leaf + intermediate.
    const presented = transport === 'http' ? { ...device, chainPem: device.pem } : device;
    const result = await register(transport, id, presented);
    await assertX509Assigned(result, { registrationId: id, device, group: { id: gid, signingCert: inter.cert } });
  });

  test(`(c') §4.3/§7.1 ${label(1)}: groups on the root and on the intermediate → the one nearest the leaf wins`, async () => {
    const root = T(1).root(dir, name('root-n'));
    const inter = T(1).intermediate(dir, name('int-n'), root);
    const rootGroup = name('grp-n-root');
    const interGroup = name('grp-n-int');
    // Names chosen so that the root group sorts first: precedence must not depend on id order.
    await groupOnCertificate('a-' + rootGroup, root.cert);
    await groupOnCertificate('z-' + interGroup, inter.cert);
    const id = name(`x-nearest-${transport}`);
    const device = T(1).device(dir, id, { issuer: inter });
    const result = await register(transport, id, device);
    await assertX509Assigned(result, { registrationId: id, device, group: { id: 'z-' + interGroup, signingCert: inter.cert } });
  });

  test(`(d) §4.3 ${label(0)}: group referencing an UNVERIFIED CA → 401002; after proof of possession → assigned`, async () => {
    const root = T(0).root(dir, name('root-d'));
    const inter = T(0).intermediate(dir, name('int-d'), root);
    const caName = name('ca-d');
    const up = (await dps.runCli(svc, ['ca', 'upload', caName, '--certificate-path', root.cert, '--output', 'json'])).json;
    assert.equal(up.isVerified, false, `uploaded without --verified: ${JSON.stringify(up)}`);
    const gid = name('grp-caref');
    await groupOnCaReference(gid, caName);
    const id = name(`x-caref-${transport}`);
    const device = T(0).device(dir, id, { issuer: inter });

    const err = await registrationError(register(transport, id, device));
    await assertRefused(err, transport, /not verified/i, id);

    await proveCa(caName, root, tools[1]);
    const result = await register(transport, id, device);
    await assertX509Assigned(result, { registrationId: id, device, group: { id: gid, signingCert: root.cert } });
  });

  test(`(e) §4.3 ${label(1)}: expired leaf → 401002 (individual and group)`, async () => {
    // individual enrollment holding exactly this (expired) leaf
    const id = name(`x-expired-${transport}`);
    const device = T(1).device(dir, id, { expired: true });
    assert.ok(certs.info(device.cert).notAfter < Date.now(), 'the certificate is expired');
    await individualViaCli(id, device.cert);
    await assertRefused(await registrationError(register(transport, id, device)), transport, /expired/i, id);

    // group device whose leaf expired (the CA is fine)
    const root = T(1).root(dir, name('root-e'));
    await groupOnCertificate(name('grp-exp'), root.cert);
    const gidDev = name(`x-expired-grp-${transport}`);
    const gdevice = T(1).device(dir, gidDev, { issuer: root, expired: true });
    await assertRefused(await registrationError(register(transport, gidDev, gdevice)), transport, /expired/i, gidDev);
  });

  test(`(f) §4.3 ${label(0)}: leaf CN ≠ the registration id the SDK sends → 401002`, async () => {
    const cn = name(`x-cn-${transport}`);
    const other = name(`x-other-${transport}`);
    // individual enrollments for both ids; the device presents cn's certificate but claims `other`
    const device = T(0).device(dir, cn);
    await individualViaCli(cn, device.cert);
    await individualViaCli(other, T(0).device(dir, other).cert);
    const err = await registrationError(register(transport, other, device));
    await assertRefused(err, transport, new RegExp(`${cn}[\\s\\S]*${other}|${other}[\\s\\S]*${cn}`), other);

    // group device: the chain is fine, the claimed id is not its CN
    const root = T(0).root(dir, name('root-f'));
    await groupOnCertificate(name('grp-cn'), root.cert);
    const gcn = name(`x-gcn-${transport}`);
    const gother = name(`x-gother-${transport}`);
    const gdevice = T(0).device(dir, gcn, { issuer: root });
    const gerr = await registrationError(register(transport, gother, gdevice));
    await assertRefused(gerr, transport, new RegExp(`${gcn}[\\s\\S]*${gother}|${gother}[\\s\\S]*${gcn}`), gother);
  });

  test(`(g) §7.1 ${label(1)}: disabled individual enrollment blocks its device inside an enabled group → disabled`, async () => {
    const root = T(1).root(dir, name('root-g'));
    const inter = T(1).intermediate(dir, name('int-g'), root);
    const gid = name('grp-g');
    await groupOnCertificate(gid, root.cert);
    const blocked = name(`x-blocked-${transport}`);
    const sibling = name(`x-sibling-${transport}`);
    const blockedDev = T(1).device(dir, blocked, { issuer: inter });
    const siblingDev = T(1).device(dir, sibling, { issuer: inter });
    await individualViaCli(blocked, blockedDev.cert, { disabled: true });

    await assertDisabled(await registrationError(register(transport, blocked, blockedDev)), blocked);
    // the group itself is enabled: a sibling provisions
    const result = await register(transport, sibling, siblingDev);
    await assertX509Assigned(result, { registrationId: sibling, device: siblingDev, group: { id: gid, signingCert: root.cert } });
  });

  test(`§4.3 ${label(0)}: chain rules — no EKU ok; EKU without clientAuth, issuer not CA, no keyCertSign, pathLen, bad signature → 401002`, async () => {
    const o = certs.openssl;
    const root = T(0).root(dir, name('root-h'));
    const gid = name('grp-h');
    await groupOnCertificate(gid, root.cert);
    const inter = T(0).intermediate(dir, name('int-h'), root);

    // a leaf without any EKU is fine (the EKU rule applies only when the extension is present)
    const noEku = name(`x-noeku-${transport}`);
    const noEkuDev = o.device(dir, noEku, { issuer: inter, ext: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature'] });
    await assertX509Assigned(await register(transport, noEku, noEkuDev), { registrationId: noEku, device: noEkuDev, group: { id: gid, signingCert: root.cert } });

    const refusedWith = async (prefix, reason, make) => {
      const id = name(`${prefix}-${transport}`);
      const device = make(id);
      await assertRefused(await registrationError(register(transport, id, device)), transport, reason, id);
    };
    // leaf EKU = serverAuth only
    await refusedWith('x-srv-eku', /client auth|extended key usage/i, (id) => o.device(dir, id, { issuer: inter,
      ext: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth'] }));
    // issuer without CA:TRUE
    const notCa = o.intermediate(dir, name('int-notca'), root, { ext: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,keyCertSign,digitalSignature'] });
    await refusedWith('x-notca', /CA:TRUE|not a CA/i, (id) => o.device(dir, id, { issuer: notCa }));
    // issuer without keyCertSign
    const noSign = o.intermediate(dir, name('int-nosign'), root, { ext: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,digitalSignature'] });
    await refusedWith('x-nosign', /keyCertSign/i, (id) => o.device(dir, id, { issuer: noSign }));
    // the presented intermediate has the right name but another key: signature does not verify
    // (the twin comes from the tool that made `inter`: openssl's subjects carry more than the CN)
    await refusedWith('x-badsig', /signature/i, (id) => {
      const d = o.device(dir, id, { issuer: inter });
      const twin = T(0).intermediate(fs.mkdtempSync(path.join(dir, 'twin-')), inter.name, root);
      return { ...d, chainPem: d.pem + twin.pem };
    });
    // pathLen: a root allowing 0 intermediates, with one intermediate below it
    const strictRoot = T(0).root(dir, name('root-pl0'), { pathLen: 0 });
    await groupOnCertificate(name('grp-pl0'), strictRoot.cert);
    const below = o.intermediate(dir, name('int-pl'), strictRoot);
    await refusedWith('x-pathlen', /pathLen/i, (id) => o.device(dir, id, { issuer: below }));
  });

  test(`§4.3/§7.1 ${label(1)}: disabled group nearest the leaf decides (no fallback to an enabled root group) → disabled`, async () => {
    const root = T(1).root(dir, name('root-i'));
    const inter = T(1).intermediate(dir, name('int-i'), root);
    await groupOnCertificate(name('grp-i-root'), root.cert);
    const g = (await dps.runCli(svc, ['enrollment-group', 'create', '--group-id', name('grp-i-int'), '--attestation-type', 'x509',
      '--certificate-path', inter.cert, '--provisioning-status', 'disabled', '--output', 'json'])).json;
    assert.equal(g.provisioningStatus, 'disabled');
    const id = name(`x-grpdis-${transport}`);
    await assertDisabled(await registrationError(register(transport, id, T(1).device(dir, id, { issuer: inter }))), id);
  });

  test(`§4.3/§7.1 ${label(0)}: leaf from a root no enrollment trusts, or not the enrolled certificate → 401002`, async () => {
    // a group exists for another root
    await groupOnCertificate(name('grp-other'), T(0).root(dir, name('root-other')).cert);
    const stranger = T(0).root(dir, name('root-stranger'));
    const id = name(`x-stranger-${transport}`);
    await assertRefused(await registrationError(register(transport, id, T(0).device(dir, id, { issuer: stranger }))), transport, /certificate/i, id);

    // individual enrollment holds a different certificate with the same CN
    const id2 = name(`x-wrongcert-${transport}`);
    const enrolled = T(0).device(dir, id2);
    await individualViaCli(id2, enrolled.cert);
    const otherDir = fs.mkdtempSync(path.join(dir, 'other-'));
    const impostor = T(0).device(otherDir, id2);
    assert.notEqual(certs.info(impostor.cert).sha256, certs.info(enrolled.cert).sha256);
    await assertRefused(await registrationError(register(transport, id2, impostor)), transport, /certificate/i, id2);
  });
}

test('§4.3 MqttWs: individual X.509 device over MQTT over WebSockets → assigned', async () => {
  const id = name('x-ind-ws');
  const device = certs.dps.device(dir, id);
  await individualViaCli(id, device.cert);
  const result = await register('mqttws', id, device);
  await assertX509Assigned(result, { registrationId: id, device });
});

test('§4.3 registration id vs CN is case-insensitive: CN "X509-Mixed-…" registers as lower-case → assigned', async () => {
  const cn = name('X509-Mixed-Case');
  const root = certs.openssl.root(dir, name('root-case'));
  const gid = name('grp-case');
  await groupOnCertificate(gid, root.cert);
  const device = certs.openssl.device(dir, cn, { issuer: root });
  const { result } = await dps.registerX509(svc, cn.toLowerCase(), { cert: device.chainPem, key: device.keyPem }, { transport: 'http' });
  assert.equal(result.status, 'assigned', JSON.stringify(result));
  assert.equal(result.registrationId.toLowerCase(), cn.toLowerCase());
  assert.equal(result.deviceId.toLowerCase(), cn.toLowerCase());
  assert.equal(result.x509.enrollmentGroupId, gid);
  assertCertInfo(result.x509.certificateInfo, device.cert, 'x509.certificateInfo');
});

test('§4.3/§5 individual enrollment: the device presents the SECONDARY certificate → assigned', async () => {
  const id = name('x-secondary');
  const primary = certs.openssl.device(dir, id);
  const secondary = certs.dps.device(fs.mkdtempSync(path.join(dir, 'second-')), id);
  const res = await sc.createOrUpdateIndividualEnrollment({
    registrationId: id,
    attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: primary.pem }, secondary: { certificate: secondary.pem } } } },
  });
  assert.equal(res.responseBody.registrationId, id);
  await assertX509Assigned(await register('http', id, secondary), { registrationId: id, device: secondary });
});

test('§7.3 the same X.509 group device again (Mqtt, then Http) → same hub and deviceId, record updated', async () => {
  const root = certs.dps.root(dir, name('root-again'));
  const gid = name('grp-again');
  await groupOnCertificate(gid, root.cert);
  const id = name('x-again');
  const device = certs.dps.device(dir, id, { issuer: root });
  const first = await register('mqtt', id, device);
  await assertX509Assigned(first, { registrationId: id, device, group: { id: gid, signingCert: root.cert } });
  const second = await register('http', id, device);
  assert.equal(second.status, 'assigned');
  assert.equal(second.assignedHub, first.assignedHub);
  assert.equal(second.deviceId, first.deviceId);
  assert.notEqual(second.etag, first.etag, 'the registration record is updated on re-registration');
  assert.equal(second.x509.enrollmentGroupId, gid);
  assertCertInfo(second.x509.certificateInfo, device.cert, 'second registration x509.certificateInfo');
});

test('contract: the 401002 message names the device\'s own reason, not an unrelated group\'s unverified CA', async () => {
  // An enrollment group for some other hierarchy references a CA that is not verified yet.
  const unrelatedRoot = certs.dps.root(dir, name('root-unrelated'));
  const caName = name('ca-unrelated');
  const gid = 'a-' + name('grp-unrelated'); // sorts before the device's own groups
  await dps.runCli(svc, ['ca', 'upload', caName, '--certificate-path', unrelatedRoot.cert, '--output', 'json']);
  await groupOnCaReference(gid, caName);
  try {
    // (1) a device of a trusted group whose chain breaks a rule (its issuer lacks keyCertSign)
    const root = certs.openssl.root(dir, name('root-own'));
    await groupOnCertificate(name('grp-own'), root.cert);
    const noSign = certs.openssl.intermediate(dir, name('int-own-nosign'), root,
      { ext: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,digitalSignature'] });
    const id1 = name('x-own-nosign');
    const err1 = await registrationError(register('mqtt', id1, certs.openssl.device(dir, id1, { issuer: noSign })));
    assert.equal(err1.result && err1.result.errorCode, 401002, dumpTrace(err1));
    assert.match(err1.result.message, /keyCertSign/, `the reason is the issuer's key usage: ${err1.result.message}`);
    // (2) a device from a root no enrollment trusts
    const stranger = certs.openssl.root(dir, name('root-stranger2'));
    const id = name('x-stranger2');
    const err = await registrationError(register('http', id, certs.openssl.device(dir, id, { issuer: stranger })));
    assert.equal(dps.errorBody(err).errorCode, 401002);
    assert.doesNotMatch(dps.errorBody(err).message, new RegExp(`${caName}|${gid}|not verified`),
      'the device has nothing to do with that CA/group; the reason is that no enrollment trusts its issuer');
  } finally {
    await dps.runCli(svc, ['enrollment-group', 'delete', '--group-id', gid]);
    await dps.runCli(svc, ['ca', 'delete', caName]);
  }
});
