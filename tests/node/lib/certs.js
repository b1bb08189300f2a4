'use strict';
// X.509 test hierarchies for the device-side X.509 tests (§4.3), made two ways with the same result
// shape, so a test can pick either tool:
//   - `openssl`: the openssl CLI (ECDSA P-256, PKCS#8 keys; CA certs with basicConstraints=critical,CA:TRUE
//     and keyUsage=critical,keyCertSign,cRLSign,digitalSignature; device certs with EKU clientAuth);
//   - `dps`: the service's own `dps cert create-root|create-intermediate|create-device|create-verification`.
// Every function returns { name, cert, key, chain, pem, keyPem, chainPem } where `cert`/`key`/`chain` are
// file paths and `chainPem` is what a device presents (the certificate, then its issuers up to — not
// including — the root; a root's chain is itself).
// `info(pemOrPath)` reads what the service must report for a certificate (X509CertificateInfo, §1.5)
// independently with `openssl x509`.

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { DPS_BIN } = require('./dps');

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { stdio: 'pipe', encoding: 'utf8', timeout: 30000, ...opts });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${e.status}):\n${e.stdout || ''}${e.stderr || ''}`);
  }
}

function workDir(prefix = 'dps-x509-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

function load(name, cert, key, chain) {
  return {
    name,
    cert,
    key,
    chain,
    pem: fs.readFileSync(cert, 'utf8'),
    keyPem: fs.readFileSync(key, 'utf8'),
    chainPem: fs.readFileSync(chain, 'utf8'),
  };
}

/** Issuer chain a child appends after itself: the issuer, then the issuer's own chain, without the root. */
function issuerChainPem(issuer) {
  return issuer.isRoot ? '' : issuer.chainPem;
}

// ------------------------------------------------------------------------------------------------
// openssl
// ------------------------------------------------------------------------------------------------
const CA_EXT = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  'subjectKeyIdentifier=hash'];
const DEVICE_EXT = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature',
  'extendedKeyUsage=clientAuth', 'subjectKeyIdentifier=hash'];

function extFile(dir, lines, withAki) {
  const f = path.join(dir, `ext-${crypto.randomBytes(4).toString('hex')}.cnf`);
  fs.writeFileSync(f, ['[v3]', ...lines, ...(withAki ? ['authorityKeyIdentifier=keyid:always'] : [])].join('\n') + '\n');
  return f;
}

// openssl's certificates carry more than a CN (in certificate order: C first), so that the service's
// subjectName/issuerName order is tested (§1.5, issue 13 fix 7); `dps cert` makes CN-only subjects.
const SUBJECT_PREFIX = '/C=US/O=DPS Console Tests/OU=openssl';

function newKeyAndCsr(dir, name) {
  const key = path.join(dir, `${name}.key.pem`);
  const csr = path.join(dir, `${name}.csr`);
  run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', csr, '-subj', `${SUBJECT_PREFIX}/CN=${name}`]);
  return { key, csr };
}

function serialHex() {
  // positive, 16 bytes
  const b = crypto.randomBytes(16);
  b[0] &= 0x7f;
  b[0] |= 0x10;
  return '0x' + b.toString('hex');
}

/** Sign `csr` with `issuer` (or self-sign with `selfKey`), validity [now, now+days]. */
function opensslSign(dir, name, csr, { issuer, selfKey, ext, days }) {
  const cert = path.join(dir, `${name}.pem`);
  const f = extFile(dir, ext, true);
  const signer = issuer ? ['-CA', issuer.cert, '-CAkey', issuer.key] : ['-signkey', selfKey];
  run('openssl', ['x509', '-req', '-in', csr, ...signer, '-set_serial', serialHex(), '-days', String(days),
    '-sha256', '-extfile', f, '-extensions', 'v3', '-out', cert]);
  return cert;
}

/**
 * Sign with explicit (past) validity through `openssl ca` (OpenSSL 3.0's `x509 -req` cannot set dates).
 * startdate/enddate: YYYYMMDDHHMMSSZ.
 */
function opensslSignDated(dir, name, csr, { issuer, selfKey, ext, startdate, enddate }) {
  const cert = path.join(dir, `${name}.pem`);
  const caDir = fs.mkdtempSync(path.join(dir, 'ca-'));
  fs.writeFileSync(path.join(caDir, 'index.txt'), '');
  fs.writeFileSync(path.join(caDir, 'serial'), serialHex().slice(2).toUpperCase() + '\n');
  const cnf = path.join(caDir, 'ca.cnf');
  fs.writeFileSync(cnf, [
    '[ca]', 'default_ca=CA_default',
    '[CA_default]', `dir=${caDir}`, `database=${caDir}/index.txt`, `new_certs_dir=${caDir}`, `serial=${caDir}/serial`,
    'default_md=sha256', 'policy=policy_any', 'unique_subject=no', 'email_in_dn=no', 'copy_extensions=none',
    '[policy_any]', 'countryName=optional', 'organizationName=optional', 'organizationalUnitName=optional',
    'commonName=supplied',
    '[v3]', ...ext, 'authorityKeyIdentifier=keyid:always', '',
  ].join('\n'));
  const signer = issuer ? ['-cert', issuer.cert, '-keyfile', issuer.key] : ['-selfsign', '-keyfile', selfKey];
  run('openssl', ['ca', '-batch', '-notext', '-config', cnf, '-extensions', 'v3', ...signer, '-in', csr,
    '-startdate', startdate, '-enddate', enddate, '-out', cert]);
  return cert;
}

const openssl = {
  tool: 'openssl',
  /** Self-signed root CA. */
  root(dir, name, { days = 30, pathLen } = {}) {
    const { key, csr } = newKeyAndCsr(dir, name);
    const ext = pathLen === undefined ? CA_EXT : [`basicConstraints=critical,CA:TRUE,pathlen:${pathLen}`, ...CA_EXT.slice(1)];
    const cert = opensslSign(dir, name, csr, { selfKey: key, ext, days });
    return { ...load(name, cert, key, cert), isRoot: true };
  },
  /** Intermediate CA signed by `issuer`; chain = this + the issuer's chain below the root. */
  /** `ext`: replaces the CA extensions (e.g. to make a broken issuer). */
  intermediate(dir, name, issuer, { days = 30, pathLen, ext: extOverride } = {}) {
    const { key, csr } = newKeyAndCsr(dir, name);
    const ext = extOverride
      || (pathLen === undefined ? CA_EXT : [`basicConstraints=critical,CA:TRUE,pathlen:${pathLen}`, ...CA_EXT.slice(1)]);
    const cert = opensslSign(dir, name, csr, { issuer, ext, days });
    const chain = path.join(dir, `${name}.chain.pem`);
    fs.writeFileSync(chain, fs.readFileSync(cert, 'utf8') + issuerChainPem(issuer));
    return load(name, cert, key, chain);
  },
  /**
   * Device (leaf) certificate with CN = `registrationId`, EKU clientAuth; self-signed without `issuer`.
   * `expired`: valid 2020-01-01 … 2020-02-01. `ext`: replaces the device extensions (e.g. another EKU).
   */
  device(dir, registrationId, { issuer, expired = false, days = 30, ext = DEVICE_EXT } = {}) {
    const { key, csr } = newKeyAndCsr(dir, registrationId);
    const opts = { issuer, selfKey: issuer ? undefined : key, ext };
    const cert = expired
      ? opensslSignDated(dir, registrationId, csr, { ...opts, startdate: '20200101000000Z', enddate: '20200201000000Z' })
      : opensslSign(dir, registrationId, csr, { ...opts, days });
    const chain = path.join(dir, `${registrationId}.chain.pem`);
    fs.writeFileSync(chain, fs.readFileSync(cert, 'utf8') + (issuer ? issuerChainPem(issuer) : ''));
    return load(registrationId, cert, key, chain);
  },
  /** Proof-of-possession certificate: CN = code, signed by `ca` (§4.3). */
  verification(dir, ca, code) {
    const { csr } = newKeyAndCsr(dir, code);
    return opensslSign(dir, code, csr, { issuer: ca, ext: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature'], days: 2 });
  },
};

// ------------------------------------------------------------------------------------------------
// dps cert
// ------------------------------------------------------------------------------------------------
function dpsCert(args) { return run(DPS_BIN, ['cert', ...args]); }

const dps = {
  tool: 'dps',
  root(dir, name, { pathLen } = {}) {
    dpsCert(['create-root', '--name', name, '--out-dir', dir, ...(pathLen === undefined ? [] : ['--path-len', String(pathLen)])]);
    const cert = path.join(dir, `${name}.pem`);
    return { ...load(name, cert, path.join(dir, `${name}.key.pem`), cert), isRoot: true };
  },
  intermediate(dir, name, issuer, { pathLen } = {}) {
    dpsCert(['create-intermediate', '--name', name, '--ca', issuer.cert, '--ca-key', issuer.key, '--out-dir', dir,
      ...(pathLen === undefined ? [] : ['--path-len', String(pathLen)])]);
    return withPresentedChain(dir, name, issuer);
  },
  device(dir, registrationId, { issuer, expired = false } = {}) {
    dpsCert(['create-device', '--registration-id', registrationId, '--out-dir', dir,
      ...(issuer ? ['--ca', issuer.cert, '--ca-key', issuer.key] : []), ...(expired ? ['--expired'] : [])]);
    return withPresentedChain(dir, registrationId, issuer);
  },
  verification(dir, ca, code) {
    const out = path.join(dir, `${code}.verification.pem`);
    dpsCert(['create-verification', '--ca', ca.cert, '--ca-key', ca.key, '--code', code, '--out', out]);
    return out;
  },
};

/**
 * `dps cert` writes NAME.chain.pem = NAME + the --ca file's certificates (so it ends with the root when the
 * issuer is a root). Tests want the same presented chain for both tools (no root), so write it here.
 */
function withPresentedChain(dir, name, issuer) {
  const cert = path.join(dir, `${name}.pem`);
  const toolChain = fs.readFileSync(path.join(dir, `${name}.chain.pem`), 'utf8');
  const own = fs.readFileSync(cert, 'utf8');
  if (!toolChain.startsWith(own.trim())) throw new Error(`dps cert: ${name}.chain.pem does not start with ${name}.pem`);
  const chain = path.join(dir, `${name}.presented.pem`);
  fs.writeFileSync(chain, own + (issuer ? issuerChainPem(issuer) : ''));
  return load(name, cert, path.join(dir, `${name}.key.pem`), chain);
}

const TOOLS = { openssl, dps };

// ------------------------------------------------------------------------------------------------
// What the service must report (§1.5 X509CertificateInfo), read with openssl.
// ------------------------------------------------------------------------------------------------
function opensslField(pemPath, flag) {
  return run('openssl', ['x509', '-in', pemPath, '-noout', ...flag]).trim();
}

/**
 * Names as Azure's X509CertificateInfo shows them (§1.5): RFC 2253 (most specific RDN first) with a space
 * after each comma — `CN=dev, OU=openssl, O=DPS Console Tests, C=US`.
 */
const AZURE_NAME = 'esc_2253,esc_ctrl,esc_msb,utf8,dump_nostr,dump_unknown,dump_der,sep_comma_plus_space,dn_rev,sname';

/** { sha1, sha256 (upper-case hex, no colons), serial (upper hex, no leading zeros), notBefore, notAfter (ms), subject, issuer }. */
function info(pemPath) {
  const fp = (alg) => opensslField(pemPath, ['-fingerprint', `-${alg}`]).split('=')[1].replace(/:/g, '').toUpperCase();
  const date = (flag) => Date.parse(opensslField(pemPath, [flag]).split('=')[1]);
  return {
    sha1: fp('sha1'),
    sha256: fp('sha256'),
    serial: opensslField(pemPath, ['-serial']).split('=')[1].toUpperCase().replace(/^0+(?=.)/, ''),
    notBefore: date('-startdate'),
    notAfter: date('-enddate'),
    subject: opensslField(pemPath, ['-subject', '-nameopt', AZURE_NAME]).replace(/^subject=/, ''),
    issuer: opensslField(pemPath, ['-issuer', '-nameopt', AZURE_NAME]).replace(/^issuer=/, ''),
  };
}

module.exports = { TOOLS, openssl, dps, info, workDir, CA_EXT, DEVICE_EXT };
