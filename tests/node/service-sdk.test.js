'use strict';
// Official Node service SDK (azure-iot-provisioning-service) against the local service API (§5).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dps = require('./lib/dps');
const fx = require('./lib/fixtures');

let svc;
let sc;

before(async () => {
  svc = await dps.startService();
  sc = dps.serviceClient(svc);
});
after(async () => { if (svc) await svc.stop(); });

const body = async (p) => (await p).responseBody;

/** Keys the service generated: base64 of exactly 64 bytes (§4.2). */
function assertGeneratedKey(k, what) {
  assert.equal(typeof k, 'string', `${what} missing`);
  const raw = Buffer.from(k, 'base64');
  assert.equal(raw.length, 64, `${what} decodes to ${raw.length} bytes, expected 64`);
  assert.equal(raw.toString('base64'), k, `${what} is not canonical base64`);
}

function assertDate(v, what) {
  assert.equal(typeof v, 'string', `${what} missing`);
  assert.ok(!Number.isNaN(Date.parse(v)), `${what} ${v} is not a date`);
}

/** TwinCollection minus the metadata members a service may add (§5.3). */
function twinProps(tc) {
  const out = {};
  for (const [k, v] of Object.entries(tc || {})) {
    if (!['$metadata', '$version', 'metadata', 'version', 'count'].includes(k)) out[k] = v;
  }
  return out;
}

async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let i = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (i < items.length) { const j = i++; out[j] = await fn(items[j], j); }
  }));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Individual enrollments
// ---------------------------------------------------------------------------------------------

test('§5.2 individual enrollment: create (keys generated), get, etag update, stale etag → 412, delete, 404', async () => {
  const registrationId = dps.uid('svc-ind');
  const created = await body(sc.createOrUpdateIndividualEnrollment({ registrationId, attestation: { type: 'symmetricKey' } }));
  assert.equal(created.registrationId, registrationId);
  assert.equal(created.attestation.type, 'symmetricKey');
  assert.equal(typeof created.etag, 'string');
  assert.ok(created.etag.length > 0, 'etag non-empty');
  assert.equal(created.provisioningStatus, 'enabled', '§5.3 provisioningStatus defaults to enabled');
  assertDate(created.createdDateTimeUtc, 'createdDateTimeUtc');
  assertDate(created.lastUpdatedDateTimeUtc, 'lastUpdatedDateTimeUtc');

  // §5.2 attestationmechanism returns the secrets; §4.2 generated = base64 of 64 random bytes.
  const att = await body(sc.getIndividualEnrollmentAttestationMechanism(registrationId));
  assert.equal(att.type, 'symmetricKey');
  assertGeneratedKey(att.symmetricKey.primaryKey, 'primaryKey');
  assertGeneratedKey(att.symmetricKey.secondaryKey, 'secondaryKey');
  assert.notEqual(att.symmetricKey.primaryKey, att.symmetricKey.secondaryKey);

  const got = await body(sc.getIndividualEnrollment(registrationId));
  assert.equal(got.registrationId, registrationId);
  assert.equal(got.etag, created.etag);
  assert.equal(got.createdDateTimeUtc, created.createdDateTimeUtc);

  // Update with the current etag (the SDK sends it as If-Match) → 200, new etag, change visible.
  const stale = { ...got };
  const upd = await body(sc.createOrUpdateIndividualEnrollment({ ...got, deviceId: 'renamed-device', attestation: att }));
  assert.equal(upd.deviceId, 'renamed-device');
  assert.notEqual(upd.etag, got.etag, 'etag changes on update');
  assert.equal(upd.createdDateTimeUtc, created.createdDateTimeUtc, 'createdDateTimeUtc is kept on update');
  assert.equal((await body(sc.getIndividualEnrollment(registrationId))).deviceId, 'renamed-device');
  // keys survive an update that carries them
  const att2 = await body(sc.getIndividualEnrollmentAttestationMechanism(registrationId));
  assert.equal(att2.symmetricKey.primaryKey, att.symmetricKey.primaryKey);

  // Update with the old etag → 412 (§5.2 ETag rules), record unchanged.
  const { err } = await dps.expectHttpError(
    sc.createOrUpdateIndividualEnrollment({ ...stale, deviceId: 'lost-update', attestation: att }), 412, assert);
  assert.equal(err.name, 'InvalidEtagError', 'the SDK maps 412 to InvalidEtagError');
  assert.equal((await body(sc.getIndividualEnrollment(registrationId))).deviceId, 'renamed-device');

  // Delete with the stale etag → 412, still there; delete with the current etag → gone.
  await dps.expectHttpError(sc.deleteIndividualEnrollment(registrationId, stale.etag), 412, assert);
  assert.equal((await body(sc.getIndividualEnrollment(registrationId))).etag, upd.etag);
  await sc.deleteIndividualEnrollment(registrationId, upd.etag);
  await dps.expectHttpError(sc.getIndividualEnrollment(registrationId), 404, assert);
  await dps.expectHttpError(sc.deleteIndividualEnrollment(registrationId), 404, assert);
});

test('§5.2 If-Match absent → unconditional replace; delete by object uses its etag', async () => {
  const registrationId = dps.uid('svc-ind-uncond');
  const created = await body(sc.createOrUpdateIndividualEnrollment({ registrationId, attestation: { type: 'symmetricKey' } }));
  const replaced = await body(sc.createOrUpdateIndividualEnrollment({ registrationId, attestation: { type: 'symmetricKey' }, deviceId: 'x1' }));
  assert.equal(replaced.deviceId, 'x1');
  assert.notEqual(replaced.etag, created.etag);
  await dps.expectHttpError(sc.deleteIndividualEnrollment(created), 412, assert); // object with stale etag
  await sc.deleteIndividualEnrollment(replaced);
  await dps.expectHttpError(sc.getIndividualEnrollment(registrationId), 404, assert);
});

test('§4.2 user-supplied symmetric keys are kept (individual enrollment)', async () => {
  const registrationId = dps.uid('svc-ind-keys');
  const primaryKey = dps.randomKey(32);
  const secondaryKey = dps.randomKey(64);
  await sc.createOrUpdateIndividualEnrollment({ registrationId, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } } });
  const att = await body(sc.getIndividualEnrollmentAttestationMechanism(registrationId));
  assertOnlyMember(att, 'symmetricKey');
  assert.deepEqual({ ...att.symmetricKey }, { primaryKey, secondaryKey });
});

test('§4.2 a user-supplied key that is not base64 of 16–64 bytes → 400', async () => {
  const registrationId = dps.uid('svc-ind-badkey');
  await dps.expectHttpError(sc.createOrUpdateIndividualEnrollment({
    registrationId, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: dps.randomKey(8), secondaryKey: dps.randomKey(64) } },
  }), 400, assert);
  await dps.expectHttpError(sc.getIndividualEnrollment(registrationId), 404, assert);
});

test('§5.3 individual enrollment round-trips initialTwin, capabilities, provisioningStatus, reprovisionPolicy, allocation', async () => {
  const registrationId = dps.uid('svc-ind-rt');
  const initialTwin = { tags: { site: 'b12', floor: 3 }, properties: { desired: { interval: 30, nested: { a: [1, 2] } } } };
  const input = {
    registrationId,
    deviceId: 'sensor-17',
    attestation: { type: 'symmetricKey' },
    capabilities: { iotEdge: true },
    initialTwin,
    provisioningStatus: 'disabled',
    reprovisionPolicy: { updateHubAssignment: false, migrateDeviceData: false },
    allocationPolicy: 'hashed',
    iotHubs: [dps.DEFAULT_HUB],
    optionalDeviceInformation: { model: 'x' },
  };
  const created = await body(sc.createOrUpdateIndividualEnrollment(input));
  for (const e of [created, await body(sc.getIndividualEnrollment(registrationId))]) {
    assert.equal(e.deviceId, 'sensor-17');
    assert.deepEqual(e.capabilities, { iotEdge: true });
    assert.deepEqual(twinProps(e.initialTwin.tags), initialTwin.tags);
    assert.deepEqual(twinProps(e.initialTwin.properties.desired), initialTwin.properties.desired);
    assert.equal(e.provisioningStatus, 'disabled');
    assert.deepEqual(e.reprovisionPolicy, { updateHubAssignment: false, migrateDeviceData: false });
    assert.equal(e.allocationPolicy, 'hashed');
    assert.deepEqual(e.iotHubs, [dps.DEFAULT_HUB]);
    assert.deepEqual(twinProps(e.optionalDeviceInformation), { model: 'x' });
  }
  // flip them back
  const got = await body(sc.getIndividualEnrollment(registrationId));
  const upd = await body(sc.createOrUpdateIndividualEnrollment({
    ...got, provisioningStatus: 'enabled', capabilities: { iotEdge: false },
    reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false },
  }));
  assert.equal(upd.provisioningStatus, 'enabled');
  assert.deepEqual(upd.capabilities, { iotEdge: false });
  assert.deepEqual(upd.reprovisionPolicy, { updateHubAssignment: true, migrateDeviceData: false });
});

test('§5.3 X.509 individual enrollment is stored faithfully (clientCertificates + info)', async () => {
  const registrationId = dps.uid('svc-x509');
  const cert = fx.selfSignedCert(registrationId);
  await sc.createOrUpdateIndividualEnrollment({
    registrationId, attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: cert.pem } } } },
  });
  const got = await body(sc.getIndividualEnrollment(registrationId));
  const viaAtt = await body(sc.getIndividualEnrollmentAttestationMechanism(registrationId));
  for (const att of [got.attestation, viaAtt]) {
    assertOnlyMember(att, 'x509');
    const primary = att.x509.clientCertificates.primary;
    assert.ok(primary, 'clientCertificates.primary present');
    assert.ok(!att.x509.clientCertificates.secondary, 'no secondary certificate was given');
    assertCertInfo(primary, cert, registrationId);
  }
});

test('§5.3 certificate as base64 of the PEM text (Azure C service client) and as base64 DER (.NET) is accepted', async () => {
  // issue 13 fix 1: the same certificate in the three forms yields the same info.
  const registrationId = dps.uid('svc-x509-b64');
  const cert = fx.selfSignedCert(registrationId);
  const base64Pem = Buffer.from(cert.pem).toString('base64');
  const base64Der = cert.x509.raw.toString('base64');
  await sc.createOrUpdateIndividualEnrollment({
    registrationId,
    attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: base64Pem }, secondary: { certificate: base64Der } } } },
  });
  const got = await body(sc.getIndividualEnrollment(registrationId));
  const { primary, secondary } = got.attestation.x509.clientCertificates;
  assertCertInfo({ info: primary.info }, cert, registrationId);
  assertCertInfo({ info: secondary.info }, cert, registrationId);

  const enrollmentGroupId = dps.uid('svc-grp-b64');
  const ca = fx.selfSignedCert(`${enrollmentGroupId}-root`, { ca: true });
  await sc.createOrUpdateEnrollmentGroup({
    enrollmentGroupId,
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: Buffer.from(ca.pem).toString('base64') } } } },
  });
  const group = await body(sc.getEnrollmentGroup(enrollmentGroupId));
  assertCertInfo({ info: group.attestation.x509.signingCertificates.primary.info }, ca, `${enrollmentGroupId}-root`);
});

test('§5.3 enum strings are accepted in any case and answered in camelCase', async () => {
  // issue 13 fix 4 (part): allocationPolicy, provisioningStatus, attestation type, reprovisionPolicy members.
  const registrationId = dps.uid('svc-case');
  const created = await body(sc.createOrUpdateIndividualEnrollment({
    registrationId,
    attestation: { type: 'SymmetricKey', symmetricKey: {} },
    provisioningStatus: 'Disabled',
    allocationPolicy: 'HASHED',
    reprovisionPolicy: { UpdateHubAssignment: false, migrateDeviceData: false },
  }));
  assert.equal(created.attestation.type, 'symmetricKey');
  assert.equal(created.provisioningStatus, 'disabled');
  assert.equal(created.allocationPolicy, 'hashed');
  assert.deepEqual(created.reprovisionPolicy, { updateHubAssignment: false, migrateDeviceData: false });
  const got = await body(sc.getIndividualEnrollment(registrationId));
  assert.equal(got.provisioningStatus, 'disabled');
  assert.equal(got.allocationPolicy, 'hashed');
});

test('§5.3 preview and unknown members round-trip through PUT/GET/query; read-only members sent back are ignored', async () => {
  const preview = {
    credentialPolicyName: 'factory-policy',
    clientCertificateIssuancePolicy: { certificateAuthorityName: 'lab-ca' },
    trustBundleId: 'bundle-7',
    contosoExtension: { line: 4, tags: ['a', 'b'] },
  };
  const registrationId = dps.uid('svc-preview');
  const created = await body(sc.createOrUpdateIndividualEnrollment({ registrationId, attestation: { type: 'symmetricKey' }, ...preview }));
  for (const [k, v] of Object.entries(preview)) assert.deepEqual(created[k], v, `PUT answer keeps ${k}`);
  const got = await body(sc.getIndividualEnrollment(registrationId));
  for (const [k, v] of Object.entries(preview)) assert.deepEqual(got[k], v, `GET keeps ${k}`);
  const listed = (await dps.drainQuery(sc.createIndividualEnrollmentQuery({ query: `SELECT * FROM enrollments WHERE registrationId = '${registrationId}'` }))).items;
  assert.equal(listed.length, 1);
  assert.deepEqual(listed[0].trustBundleId, 'bundle-7', 'queries keep them too');

  // A client sends the document back with the read-only members it was given — and some it mangled.
  const sentBack = {
    ...got,
    createdDateTimeUtc: 'yesterday',
    lastUpdatedDateTimeUtc: 42,
    registrationState: { registrationId, status: 'not-a-status', createdDateTimeUtc: 'never' },
    trustBundleId: 'bundle-8',
  };
  const updated = await body(sc.createOrUpdateIndividualEnrollment(sentBack));
  assert.equal(updated.createdDateTimeUtc, got.createdDateTimeUtc, 'createdDateTimeUtc is the service\'s');
  assertDate(updated.lastUpdatedDateTimeUtc, 'lastUpdatedDateTimeUtc');
  assert.equal(updated.registrationState, undefined, 'registrationState is not taken from the client');
  assert.equal(updated.trustBundleId, 'bundle-8', 'preview members can change');
  assert.deepEqual(updated.contosoExtension, preview.contosoExtension);

  // Groups: the same, and X.509 certificate `info` sent back partly is ignored (the service computes it).
  const { pem } = fx.selfSignedCert(dps.uid('preview-root'), { ca: true });
  const enrollmentGroupId = dps.uid('svc-preview-grp');
  const group = await body(sc.createOrUpdateEnrollmentGroup({
    enrollmentGroupId,
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: pem } } } },
    ...preview,
  }));
  for (const [k, v] of Object.entries(preview)) assert.deepEqual(group[k], v, `group keeps ${k}`);
  const info = group.attestation.x509.signingCertificates.primary.info;
  assert.ok(info && info.sha256Thumbprint, 'the service computed info');
  const back = JSON.parse(JSON.stringify(group));
  back.attestation.x509.signingCertificates.primary.info = { subjectName: 'CN=edited', version: 'three' };
  back.createdDateTimeUtc = null;
  const regrouped = await body(sc.createOrUpdateEnrollmentGroup(back));
  assert.deepEqual(regrouped.attestation.x509.signingCertificates.primary.info, info, 'info is recomputed, not taken from the client');
  assert.equal(regrouped.createdDateTimeUtc, group.createdDateTimeUtc);
  assert.deepEqual(regrouped.clientCertificateIssuancePolicy, preview.clientCertificateIssuancePolicy);
});

test('§5.3 TPM individual enrollment is stored faithfully (endorsementKey, storageRootKey)', async () => {
  const tpm = fx.tpmKeys();
  const registrationId = fx.tpmRegistrationId(tpm.endorsementKey);
  const created = await body(sc.createOrUpdateIndividualEnrollment({ registrationId, deviceId: 'tpm-dev', attestation: { type: 'tpm', tpm } }));
  assert.equal(created.registrationId, registrationId);
  const got = await body(sc.getIndividualEnrollment(registrationId));
  assert.equal(got.attestation.type, 'tpm');
  assert.equal(got.attestation.tpm.endorsementKey, tpm.endorsementKey);
  if (got.attestation.tpm.storageRootKey !== undefined && got.attestation.tpm.storageRootKey !== null) {
    assert.equal(got.attestation.tpm.storageRootKey, tpm.storageRootKey);
  }
  const att = await body(sc.getIndividualEnrollmentAttestationMechanism(registrationId));
  assertOnlyMember(att, 'tpm');
  assert.equal(att.tpm.endorsementKey, tpm.endorsementKey);
  assert.equal(att.tpm.storageRootKey, tpm.storageRootKey);
});

/** §5.3 AttestationMechanism: `type` plus exactly the matching member (others absent or null). */
function assertOnlyMember(att, type) {
  assert.equal(att.type, type);
  for (const m of ['tpm', 'x509', 'symmetricKey']) {
    if (m === type) assert.ok(att[m], `${m} member present`);
    else assert.ok(att[m] === undefined || att[m] === null, `${m} member must be absent for type ${type}`);
  }
}

function assertCertInfo(entry, cert, cn) {
  if (entry.certificate !== undefined && entry.certificate !== null) {
    assert.equal(entry.certificate.trim(), cert.pem.trim(), 'certificate echoed unchanged');
  }
  const info = entry.info;
  assert.ok(info, `§5.2: responses carry the X509CertificateInfo (got ${JSON.stringify(entry)})`);
  // §1.5 / issue 13 fix 7: Azure's order, most specific first (the certificate stores C first).
  assert.equal(info.subjectName, fx.azureSubject(cn));
  assert.equal(info.issuerName, fx.azureSubject(cn), 'self-signed: issuer = subject');
  const norm = (s) => String(s).replace(/[:\s-]/g, '').toUpperCase();
  assert.equal(norm(info.sha1Thumbprint), fx.hexThumb(cert.x509.fingerprint));
  assert.equal(norm(info.sha256Thumbprint), fx.hexThumb(cert.x509.fingerprint256));
  // Certificate times in whole seconds, no fraction (issue 13 fix 7).
  for (const t of [info.notBeforeUtc, info.notAfterUtc]) assert.match(t, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(Date.parse(info.notBeforeUtc), Date.parse(cert.x509.validFrom));
  assert.equal(Date.parse(info.notAfterUtc), Date.parse(cert.x509.validTo));
  assert.equal(norm(info.serialNumber).replace(/^0+/, ''), cert.x509.serialNumber.toUpperCase().replace(/^0+/, ''));
  assert.equal(info.version, 3);
}

// ---------------------------------------------------------------------------------------------
// Enrollment groups
// ---------------------------------------------------------------------------------------------

test('§5.2 enrollment group: create (keys generated), get, etag update, stale etag → 412, delete, 404', async () => {
  const enrollmentGroupId = dps.uid('svc-grp');
  const created = await body(sc.createOrUpdateEnrollmentGroup({ enrollmentGroupId, attestation: { type: 'symmetricKey' } }));
  assert.equal(created.enrollmentGroupId, enrollmentGroupId);
  assert.equal(created.provisioningStatus, 'enabled');
  assert.ok(created.etag);
  assertDate(created.createdDateTimeUtc, 'createdDateTimeUtc');

  // Node calls POST /enrollmentgroups/{id}/attestationmechanism (lower case, §0.11)
  const att = await body(sc.getEnrollmentGroupAttestationMechanism(enrollmentGroupId));
  assert.equal(att.type, 'symmetricKey');
  assertGeneratedKey(att.symmetricKey.primaryKey, 'group primaryKey');
  assertGeneratedKey(att.symmetricKey.secondaryKey, 'group secondaryKey');

  const got = await body(sc.getEnrollmentGroup(enrollmentGroupId));
  assert.equal(got.etag, created.etag);
  const upd = await body(sc.createOrUpdateEnrollmentGroup({ ...got, attestation: att, initialTwin: { tags: { v: 2 }, properties: { desired: {} } } }));
  assert.notEqual(upd.etag, got.etag);
  assert.deepEqual(twinProps(upd.initialTwin.tags), { v: 2 });
  await dps.expectHttpError(sc.createOrUpdateEnrollmentGroup({ ...got, attestation: att }), 412, assert);
  await dps.expectHttpError(sc.deleteEnrollmentGroup(enrollmentGroupId, got.etag), 412, assert);
  assert.equal((await body(sc.getEnrollmentGroup(enrollmentGroupId))).etag, upd.etag);
  await sc.deleteEnrollmentGroup(enrollmentGroupId, upd.etag);
  await dps.expectHttpError(sc.getEnrollmentGroup(enrollmentGroupId), 404, assert);
});

test('§4.2 user-supplied group keys are kept; §5.3 group round-trips twin/capabilities/status/reprovision', async () => {
  const enrollmentGroupId = dps.uid('svc-grp-rt');
  const primaryKey = dps.randomKey(64);
  const secondaryKey = dps.randomKey(16);
  const input = {
    enrollmentGroupId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } },
    capabilities: { iotEdge: true },
    initialTwin: { tags: { plant: 7 }, properties: { desired: { mode: 'eco' } } },
    provisioningStatus: 'disabled',
    reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false },
  };
  await sc.createOrUpdateEnrollmentGroup(input);
  const got = await body(sc.getEnrollmentGroup(enrollmentGroupId));
  assert.deepEqual(got.capabilities, { iotEdge: true });
  assert.deepEqual(twinProps(got.initialTwin.tags), { plant: 7 });
  assert.deepEqual(twinProps(got.initialTwin.properties.desired), { mode: 'eco' });
  assert.equal(got.provisioningStatus, 'disabled');
  assert.deepEqual(got.reprovisionPolicy, { updateHubAssignment: true, migrateDeviceData: false });
  const att = await body(sc.getEnrollmentGroupAttestationMechanism(enrollmentGroupId));
  assertOnlyMember(att, 'symmetricKey');
  assert.equal(att.symmetricKey.primaryKey, primaryKey);
  assert.equal(att.symmetricKey.secondaryKey, secondaryKey);
});

test('§5.3 X.509 enrollment group with a signing certificate is stored faithfully', async () => {
  const enrollmentGroupId = dps.uid('svc-grp-x509');
  const ca = fx.selfSignedCert(`${enrollmentGroupId}-root`, { ca: true });
  await sc.createOrUpdateEnrollmentGroup({
    enrollmentGroupId, attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: ca.pem } } } },
  });
  const got = await body(sc.getEnrollmentGroup(enrollmentGroupId));
  assert.equal(got.attestation.type, 'x509');
  assertCertInfo(got.attestation.x509.signingCertificates.primary, ca, `${enrollmentGroupId}-root`);
  const att = await body(sc.getEnrollmentGroupAttestationMechanism(enrollmentGroupId));
  assert.equal(att.type, 'x509');
  assertCertInfo(att.x509.signingCertificates.primary, ca, `${enrollmentGroupId}-root`);
});

// ---------------------------------------------------------------------------------------------
// Queries (paging) — §5.2 x-ms-max-item-count / x-ms-continuation / x-ms-item-type
// ---------------------------------------------------------------------------------------------

function assertPaged({ items, pages }, idOf, expectedIds, pageSize, itemType) {
  const seen = items.map(idOf);
  assert.equal(new Set(seen).size, seen.length, 'no item appears twice across pages');
  for (const id of expectedIds) assert.ok(seen.includes(id), `${id} missing from query results`);
  pages.forEach((p, i) => {
    assert.ok(p.items.length <= pageSize, `page ${i} has ${p.items.length} > ${pageSize} items`);
    assert.equal(p.headers['x-ms-item-type'], itemType, 'x-ms-item-type header');
    if (i < pages.length - 1) assert.ok(p.headers['x-ms-continuation'], 'continuation on every page but the last');
  });
  assert.equal(pages[pages.length - 1].headers['x-ms-continuation'], undefined, 'no continuation on the last page');
  assert.ok(pages.length >= Math.ceil(items.length / pageSize), `${items.length} items in only ${pages.length} pages`);
}

test('§5.2 createIndividualEnrollmentQuery: 25 enrollments, page size 10 → each seen exactly once', async () => {
  const prefix = dps.uid('q-ind');
  const ids = Array.from({ length: 25 }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);
  await mapLimit(ids, 5, (registrationId) => sc.createOrUpdateIndividualEnrollment({ registrationId, attestation: { type: 'symmetricKey' } }));
  const r = await dps.drainQuery(sc.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments' }, 10));
  assertPaged(r, (e) => e.registrationId, ids, 10, 'Enrollment');
  assert.ok(r.pages.length >= 3);
  const one = r.items.find((e) => e.registrationId === ids[0]);
  assert.equal(one.attestation.type, 'symmetricKey');
  assert.ok(one.etag);
});

test('§5.2 createEnrollmentGroupQuery: 25 groups, page size 10 → each seen exactly once', async () => {
  const prefix = dps.uid('q-grp');
  const ids = Array.from({ length: 25 }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);
  await mapLimit(ids, 5, (enrollmentGroupId) => sc.createOrUpdateEnrollmentGroup({ enrollmentGroupId, attestation: { type: 'symmetricKey' } }));
  const r = await dps.drainQuery(sc.createEnrollmentGroupQuery({ query: 'SELECT * FROM enrollmentGroups' }, 10));
  assertPaged(r, (g) => g.enrollmentGroupId, ids, 10, 'EnrollmentGroup');
  assert.ok(r.pages.length >= 3);
  // leave room for other tests (≤ 100 symmetric-key groups, §9)
  await mapLimit(ids, 5, (id) => sc.deleteEnrollmentGroup(id));
});

test('§5.2 queries: WHERE with = and AND filters across pages; OR, LIKE, functions, other collections → 400', async () => {
  const prefix = dps.uid('q-where');
  const docs = Array.from({ length: 6 }, (_, i) => ({
    registrationId: `${prefix}-${i}`,
    deviceId: `${prefix}-${i % 2 === 0 ? 'even' : 'odd'}`,
    provisioningStatus: i < 4 ? 'enabled' : 'disabled',
    attestation: { type: 'symmetricKey' },
  }));
  await mapLimit(docs, 3, (d) => sc.createOrUpdateIndividualEnrollment(d));
  const query = `SELECT * FROM enrollments WHERE deviceId = '${prefix}-even' AND provisioningStatus = 'enabled'`;
  const r = await dps.drainQuery(sc.createIndividualEnrollmentQuery({ query }, 1));
  assert.deepEqual(r.items.map((e) => e.registrationId).sort(), [`${prefix}-0`, `${prefix}-2`]);
  assert.equal(r.pages.length, 2, 'page size 1: one page per match, continuation carried with the same query');
  const dq = await dps.drainQuery(sc.createIndividualEnrollmentQuery({ query: `select * from enrollments where deviceId = "${prefix}-odd"` }, 10));
  assert.deepEqual(dq.items.map((e) => e.registrationId).sort(), [`${prefix}-1`, `${prefix}-3`, `${prefix}-5`]);

  const gid = `${prefix}-g`;
  await sc.createOrUpdateEnrollmentGroup({ enrollmentGroupId: gid, attestation: { type: 'symmetricKey' } });
  const g = await dps.drainQuery(sc.createEnrollmentGroupQuery({ query: `SELECT * FROM enrollmentGroups WHERE enrollmentGroupId = '${gid}'` }, 10));
  assert.deepEqual(g.items.map((x) => x.enrollmentGroupId), [gid]);
  await sc.deleteEnrollmentGroup(gid);

  for (const [q, says] of [
    [`SELECT * FROM enrollments WHERE deviceId = '${prefix}-even' OR deviceId = '${prefix}-odd'`, 'OR is not supported'],
    ["SELECT * FROM enrollments WHERE deviceId LIKE 'q-%'", 'LIKE'],
    ["SELECT * FROM enrollments WHERE STARTSWITH(deviceId, 'q')", 'functions'],
    ['SELECT * FROM devices', 'is not a collection'],
  ]) {
    const { body } = await dps.expectHttpError(sc.createIndividualEnrollmentQuery({ query: q }).next(), 400, assert);
    assert.equal(body.errorCode, 400004, q);
    assert.ok(body.message.includes(says), `${q}: ${body.message}`);
  }
  const { body } = await dps.expectHttpError(sc.createEnrollmentGroupQuery({ query: 'SELECT * FROM enrollments' }).next(), 400, assert);
  assert.equal(body.errorCode, 400004);
});

// ---------------------------------------------------------------------------------------------
// Bulk — §5.3 BulkEnrollmentOperation
// ---------------------------------------------------------------------------------------------

test('§5.3 runBulkEnrollmentOperation: create 15, create again fails per item, update, delete', async () => {
  const prefix = dps.uid('bulk');
  const ids = Array.from({ length: 15 }, (_, i) => `${prefix}-${i}`);
  const enrollments = ids.map((registrationId) => ({ registrationId, attestation: { type: 'symmetricKey' } }));

  const created = await body(dps.runBulk(sc, { mode: 'create', enrollments }));
  assert.equal(created.isSuccessful, true, JSON.stringify(created));
  assert.ok(!created.errors || created.errors.length === 0, 'no errors on a fresh create');
  for (const id of ids) {
    const e = await body(sc.getIndividualEnrollment(id));
    assert.equal(e.registrationId, id);
    const att = await body(sc.getIndividualEnrollmentAttestationMechanism(id));
    assertGeneratedKey(att.symmetricKey.primaryKey, `${id} primaryKey`);
  }

  const again = await body(dps.runBulk(sc, { mode: 'create', enrollments }));
  assert.equal(again.isSuccessful, false);
  assert.equal(again.errors.length, ids.length, 'one error per existing item');
  assert.deepEqual(again.errors.map((e) => e.registrationId).sort(), [...ids].sort());
  for (const e of again.errors) {
    assert.ok(Number.isInteger(e.errorCode) && e.errorCode >= 400000, `errorCode ${e.errorCode}`);
    assert.equal(typeof e.errorStatus, 'string');
  }

  const updated = await body(dps.runBulk(sc, {
    mode: 'update',
    enrollments: ids.map((registrationId) => ({ registrationId, attestation: { type: 'symmetricKey' }, initialTwin: { tags: { bulk: 'yes' }, properties: { desired: {} } } })),
  }));
  assert.equal(updated.isSuccessful, true, JSON.stringify(updated));
  for (const id of [ids[0], ids[14]]) {
    assert.deepEqual(twinProps((await body(sc.getIndividualEnrollment(id))).initialTwin.tags), { bulk: 'yes' });
  }

  const deleted = await body(dps.runBulk(sc, { mode: 'delete', enrollments: ids.map((registrationId) => ({ registrationId, attestation: { type: 'symmetricKey' } })) }));
  assert.equal(deleted.isSuccessful, true, JSON.stringify(deleted));
  for (const id of ids) await dps.expectHttpError(sc.getIndividualEnrollment(id), 404, assert);
});

// ---------------------------------------------------------------------------------------------
// Registration states — §5.2 DeviceRegistrationState_*
// ---------------------------------------------------------------------------------------------

test('§5.2 registration states: group query after devices registered, get, delete → 404', async () => {
  const enrollmentGroupId = dps.uid('svc-reg-grp');
  const groupKey = dps.randomKey();
  await sc.createOrUpdateEnrollmentGroup({ enrollmentGroupId, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: dps.randomKey() } } });
  const ids = [dps.uid('reg-a'), dps.uid('reg-b'), dps.uid('reg-c')];
  // plus one individual device that must NOT show up in the group's query
  const ind = dps.uid('reg-ind');
  const indKey = dps.randomKey();
  await sc.createOrUpdateIndividualEnrollment({ registrationId: ind, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: indKey, secondaryKey: dps.randomKey() } } });

  const results = await Promise.all([
    ...ids.map((id) => dps.registerSymmetricKey(svc, id, dps.deriveKey(groupKey, id))),
    dps.registerSymmetricKey(svc, ind, indKey),
  ]);
  results.forEach((r) => assert.equal(r.status, 'assigned'));

  const q = await dps.drainQuery(sc.createEnrollmentGroupDeviceRegistrationStateQuery({ query: 'SELECT * FROM enrollments' }, enrollmentGroupId, 2));
  assertPaged(q, (s) => s.registrationId, ids, 2, 'DeviceRegistration');
  assert.equal(q.items.length, 3, `group query returned ${q.items.map((s) => s.registrationId)}`);
  for (const s of q.items) {
    const r = results.find((x) => x.registrationId === s.registrationId);
    assert.equal(s.assignedHub, r.assignedHub);
    assert.equal(s.deviceId, r.deviceId);
    assert.equal(s.status, 'assigned');
    assert.equal(s.substatus, 'initialAssignment');
    assertDate(s.createdDateTimeUtc, 'createdDateTimeUtc');
    assertDate(s.lastUpdatedDateTimeUtc, 'lastUpdatedDateTimeUtc');
    assert.ok(s.etag);
  }

  const st = await body(sc.getDeviceRegistrationState(ids[0]));
  assert.equal(st.registrationId, ids[0]);
  assert.equal(st.status, 'assigned');
  assert.equal(st.assignedHub, results[0].assignedHub);
  assert.equal(st.deviceId, ids[0]);
  assert.equal(st.etag, results[0].etag, 'service API etag = device result etag');

  await sc.deleteDeviceRegistrationState(ids[0]);
  await dps.expectHttpError(sc.getDeviceRegistrationState(ids[0]), 404, assert);
  // stale etag delete → 412; matching etag → deleted
  await dps.expectHttpError(sc.deleteDeviceRegistrationState(ids[1], '"not-the-etag"'), 412, assert);
  await sc.deleteDeviceRegistrationState(ids[1], results[1].etag);
  await dps.expectHttpError(sc.getDeviceRegistrationState(ids[1]), 404, assert);

  const q2 = await dps.drainQuery(sc.createEnrollmentGroupDeviceRegistrationStateQuery({ query: 'SELECT * FROM enrollments' }, enrollmentGroupId, 10));
  assert.deepEqual(q2.items.map((s) => s.registrationId), [ids[2]]);

  // §5.3: deleting the record does not block the device; it can register again and gets a new record.
  const again = await dps.registerSymmetricKey(svc, ids[0], dps.deriveKey(groupKey, ids[0]));
  assert.equal(again.status, 'assigned');
  assert.equal((await body(sc.getDeviceRegistrationState(ids[0]))).status, 'assigned');
});

test('§5.2 unknown registration id → 404', async () => {
  await dps.expectHttpError(sc.getDeviceRegistrationState(dps.uid('nobody')), 404, assert);
  await dps.expectHttpError(sc.getEnrollmentGroup(dps.uid('nogroup')), 404, assert);
});

// ---------------------------------------------------------------------------------------------
// Authentication — §5.1
// ---------------------------------------------------------------------------------------------

test('§5.1 service SAS signed with a wrong key → 401; wrong policy name → 401', async () => {
  const cs = dps.parseServiceConnectionString(svc.endpoint.serviceConnectionString);
  const bad = dps.serviceClient(svc, { connectionString: `HostName=${cs.hostWithPort};SharedAccessKeyName=${cs.keyName};SharedAccessKey=${dps.randomKey(32)}` });
  const { err } = await dps.expectHttpError(bad.getIndividualEnrollment('anything'), 401, assert);
  assert.equal(err.name, 'UnauthorizedError');
  const noPolicy = dps.serviceClient(svc, { connectionString: `HostName=${cs.hostWithPort};SharedAccessKeyName=nosuchpolicy;SharedAccessKey=${cs.key}` });
  await dps.expectHttpError(noPolicy.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments' }).next(), 401, assert);
});

// ---------------------------------------------------------------------------------------------
// Restart on the same data dir (binary contract): same id scope, keys, CA and database.
// ---------------------------------------------------------------------------------------------

test('restart with the same data dir keeps id scope, service key, CA, enrollments and registrations', async () => {
  const registrationId = dps.uid('restart');
  const primaryKey = dps.randomKey();
  await sc.createOrUpdateIndividualEnrollment({ registrationId, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: dps.randomKey() } } });
  const first = await dps.registerSymmetricKey(svc, registrationId, primaryKey);
  const before = { idScope: svc.idScope, port: svc.port, ca: svc.ca, cs: svc.endpoint.serviceConnectionString };

  await svc.restart();
  assert.equal(svc.idScope, before.idScope);
  assert.equal(svc.port, before.port);
  assert.equal(svc.ca, before.ca);
  assert.equal(svc.endpoint.serviceConnectionString, before.cs);

  // The client built before the restart (same SAS, same CA) keeps working.
  const e = await body(sc.getIndividualEnrollment(registrationId));
  assert.equal(e.registrationId, registrationId);
  const st = await body(sc.getDeviceRegistrationState(registrationId));
  assert.equal(st.assignedHub, first.assignedHub);
  assert.equal(st.etag, first.etag);
  const again = await dps.registerSymmetricKey(svc, registrationId, primaryKey);
  assert.equal(again.assignedHub, first.assignedHub);
  assert.equal(again.deviceId, first.deviceId);
});
