'use strict';
// Test material that the service must store faithfully: X.509 certificates (made with the
// openssl CLI) and TPM 2.0 EK/SRK public areas (TPM2B_PUBLIC, built from a fresh RSA key).

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

/** The subject of `selfSignedCert` beyond its CN, in certificate (DER) order: C first. */
const SUBJECT_PREFIX = '/C=US/O=DPS Console Tests/OU=service-sdk';
/** That subject as Azure's X509CertificateInfo shows it: most specific first, comma + space (§1.5). */
function azureSubject(cn) { return `CN=${cn}, OU=service-sdk, O=DPS Console Tests, C=US`; }

/**
 * Self-signed certificate with subject C=US, O=DPS Console Tests, OU=service-sdk, CN=`cn`;
 * returns { pem, keyPem, x509 (crypto.X509Certificate) }.
 */
function selfSignedCert(cn, { ca = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dps-cert-'));
  try {
    const key = path.join(dir, 'k.pem');
    const crt = path.join(dir, 'c.pem');
    const ext = ca ? ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']
      : ['-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'extendedKeyUsage=clientAuth'];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', crt, '-days', '30', '-subj', `${SUBJECT_PREFIX}/CN=${cn}`, ...ext], { stdio: 'pipe' });
    const pem = fs.readFileSync(crt, 'utf8');
    return { pem, keyPem: fs.readFileSync(key, 'utf8'), x509: new crypto.X509Certificate(pem) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** "AB:CD:.." (Node fingerprint) → "ABCD.." */
function hexThumb(fp) { return fp.replace(/:/g, '').toUpperCase(); }

const EK_POLICY = Buffer.from('837197674484B3F81A90CC8D46A5D724FD52D76E06520B64F2A1DA1B331469AA', 'hex');

/** TPM2B_PUBLIC for an RSA-2048 storage key (EK template when `ek`), base64. */
function tpmPublic({ ek }) {
  const { publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const n = Buffer.from(publicKey.export({ format: 'jwk' }).n, 'base64url');
  const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };
  const policy = ek ? EK_POLICY : Buffer.alloc(0);
  const tpmtPublic = Buffer.concat([
    u16(0x0001), // TPM_ALG_RSA
    u16(0x000b), // nameAlg SHA256
    u32(ek ? 0x000300b2 : 0x00030072), // objectAttributes
    u16(policy.length), policy,
    u16(0x0006), u16(128), u16(0x0043), // symmetric AES-128-CFB
    u16(0x0010), // scheme NULL
    u16(2048), u32(0), // keyBits, exponent (default)
    u16(n.length), n, // unique.rsa
  ]);
  return Buffer.concat([u16(tpmtPublic.length), tpmtPublic]).toString('base64');
}

function tpmKeys() {
  return { endorsementKey: tpmPublic({ ek: true }), storageRootKey: tpmPublic({ ek: false }) };
}

/** TPM registration id as the SDKs derive it: base32(sha256(EK)) lower-case, no padding (52 chars). */
function tpmRegistrationId(endorsementKeyB64) {
  const digest = crypto.createHash('sha256').update(Buffer.from(endorsementKeyB64, 'base64')).digest();
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0; let value = 0; let out = '';
  for (const byte of digest) {
    value = (value << 8) | byte; bits += 8;
    while (bits >= 5) { out += alphabet[(value >>> (bits - 5)) & 31]; bits -= 5; }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

module.exports = { selfSignedCert, azureSubject, hexThumb, tpmKeys, tpmRegistrationId };
