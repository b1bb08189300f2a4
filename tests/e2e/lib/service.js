'use strict';
// The service side of the browser end-to-end suite: start `dps serve` on a fresh data dir with every
// listener on a free port (console included), call its API the way a service client does (SAS from the
// owner connection string) or the way the console does (Bearer session), and provision devices with the
// official Azure IoT Node device SDK over HTTPS.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');

// Use the exact azure-iot-http-base / azure-iot-common copies the device SDK resolves itself
// (npm may install several versions side by side).
const requireFrom = (pkg, from) => require(require.resolve(pkg, { paths: [path.dirname(require.resolve(from + '/package.json'))] }));
const DeviceHttpBase = requireFrom('azure-iot-http-base', 'azure-iot-provisioning-device-http');
const { SharedAccessSignature, ConnectionString, anHourFromNow } = require('azure-iot-common');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http: ProvisioningHttp } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

const DPS_BIN = process.env.DPS_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'dps-target'), 'debug', 'dps');
const DEFAULT_HUB = 'local-hub.dps.local';
const API_VERSION = '2021-10-01';
const START_TIMEOUT_MS = Number(process.env.DPS_START_TIMEOUT_MS || 30000);

// Children started by this process; killed (by PID) if the test process exits early.
const children = new Set();
process.on('exit', () => {
  for (const child of children) {
    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* already gone */ }
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tail(file, n = 40) {
  try { return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n'); } catch (_) { return ''; }
}

/** Short unique id, valid as a registration id (lower-case alphanumerics and '-'). */
function uid(prefix) { return `${prefix}-${crypto.randomBytes(4).toString('hex')}`; }

/** A random symmetric key (base64 of 32 bytes, within DPS's 16–64). */
function randomKey(bytes = 32) { return crypto.randomBytes(bytes).toString('base64'); }

/** base64(SHA-256(SubjectPublicKeyInfo DER)) of a PEM certificate: Chromium's --ignore-certificate-errors-spki-list form. */
function spkiHash(pem) {
  const cert = new crypto.X509Certificate(pem);
  return crypto.createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
}

function waitForExit(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ } }, timeoutMs);
    child.once('exit', () => { clearTimeout(t); resolve(); });
  });
}

/**
 * Start `dps serve --data-dir <tmp> --https-port 0 --mqtt-port 0 --console-port 0` and wait until
 * endpoint.json names the console port and the initial admin password file is there.
 * Returns a Service: { dataDir, endpoint, idScope, host, httpsPort, consolePort, consoleUrl, ca, caSpki,
 * password, api(), bearer(), register(), stop() }.
 */
async function startService({ label = 'e2e' } = {}) {
  if (!fs.existsSync(DPS_BIN)) throw new Error(`dps binary not found at ${DPS_BIN} (set DPS_BIN)`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `dps-${label}-`));
  const logFile = path.join(dataDir, 'service.log');
  const out = fs.openSync(logFile, 'a');
  const args = ['serve', '--data-dir', dataDir, '--bind', '127.0.0.1', '--https-port', '0', '--mqtt-port', '0', '--console-port', '0'];
  const child = spawn(DPS_BIN, args, { stdio: ['ignore', out, out], env: { ...process.env, NO_COLOR: '1' } });
  fs.closeSync(out);
  children.add(child);
  child.once('exit', () => children.delete(child));

  const endpointFile = path.join(dataDir, 'endpoint.json');
  const passwordFile = path.join(dataDir, 'initial-admin-password');
  const deadline = Date.now() + START_TIMEOUT_MS;
  let endpoint;
  let password;
  while (!endpoint || !password) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`dps exited early (code ${child.exitCode}, signal ${child.signalCode}); log:\n${tail(logFile)}`);
    }
    if (Date.now() > deadline) {
      try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
      throw new Error(`timed out after ${START_TIMEOUT_MS} ms waiting for ${endpointFile} with ports.console; log:\n${tail(logFile)}`);
    }
    try {
      const ep = JSON.parse(fs.readFileSync(endpointFile, 'utf8')); // a half-written file fails to parse → poll again
      if (ep && ep.idScope && ep.ports && ep.ports.https && ep.ports.console) endpoint = ep;
    } catch (_) { /* not there yet */ }
    try {
      const p = fs.readFileSync(passwordFile, 'utf8').trim();
      if (p) password = p;
    } catch (_) { /* not there yet */ }
    if (!endpoint || !password) await sleep(50);
  }

  // endpoint.caCertificate is the path of the CA file on this machine (the service's own root CA).
  const ca = fs.readFileSync(endpoint.caCertificate, 'utf8');
  const cs = ConnectionString.parse(endpoint.serviceConnectionString);
  const m = /^(.*?)(?::(\d+))?$/.exec(cs.HostName);
  const svc = {
    label,
    dataDir,
    logFile,
    child,
    endpoint,
    idScope: endpoint.idScope,
    host: endpoint.host,
    httpsPort: endpoint.ports.https,
    consolePort: endpoint.ports.console,
    consoleUrl: `https://${endpoint.host}:${endpoint.ports.console}/`,
    ca,
    caSpki: spkiHash(ca),
    password,
    owner: { host: m[1], port: m[2] ? Number(m[2]) : 443, keyName: cs.SharedAccessKeyName, key: cs.SharedAccessKey },
  };

  /** Raw HTTPS request; resolves { status, headers, text, body } and never rejects on an HTTP status. */
  svc.request = ({ method = 'GET', port, urlPath, authorization, body, contentType = 'application/json; charset=utf-8' }) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const sep = urlPath.includes('?') ? '&' : '?';
    return new Promise((resolve, reject) => {
      const req = https.request({
        host: svc.host, port, method, path: `${urlPath}${sep}api-version=${API_VERSION}`, ca: svc.ca,
        headers: {
          accept: 'application/json',
          ...(authorization ? { authorization } : {}),
          ...(data ? { 'content-type': contentType, 'content-length': data.length } : {}),
        },
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed;
          try { parsed = text ? JSON.parse(text) : undefined; } catch (_) { parsed = undefined; }
          resolve({ status: res.statusCode, headers: res.headers, text, body: parsed });
        });
      });
      req.setTimeout(30000, () => req.destroy(new Error(`${method} ${urlPath}: no answer in 30 s`)));
      req.on('error', reject);
      if (data) req.write(data);
      req.end();
    });
  };

  /** Service API call signed like the official service SDK (SAS from the owner connection string, §5.1). */
  svc.api = (method, urlPath, body) => {
    const sas = SharedAccessSignature.create(svc.owner.host, svc.owner.keyName, svc.owner.key, anHourFromNow()).toString();
    return svc.request({ method, port: svc.owner.port, urlPath, authorization: sas, body });
  };

  /** Service API call that must answer 2xx; returns the parsed body. */
  svc.call = async (method, urlPath, body) => {
    const r = await svc.api(method, urlPath, body);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${urlPath} → HTTP ${r.status}: ${r.text}`);
    return r.body;
  };

  /** A request on the console port with a console session token, as the browser sends it. */
  svc.bearer = (token, method, urlPath, body) =>
    svc.request({ method, port: svc.consolePort, urlPath, authorization: `Bearer ${token}`, body });

  /** PUT /enrollments/{id}: a symmetric-key individual enrollment with known keys. */
  svc.createEnrollment = async (registrationId, { primaryKey = randomKey(), secondaryKey = randomKey(), ...extra } = {}) => {
    const doc = await svc.call('PUT', `/enrollments/${encodeURIComponent(registrationId)}`, {
      registrationId,
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } },
      ...extra,
    });
    return { registrationId, primaryKey, secondaryKey, doc };
  };

  /** Register a symmetric-key device over HTTPS with the official device SDK (custom port + CA). */
  svc.register = (registrationId, key) => {
    const base = new DeviceHttpBase.Http();
    base.setOptions({ ca: svc.ca, http: { agent: new https.Agent({ port: svc.httpsPort, ca: svc.ca }) } });
    const client = ProvisioningDeviceClient.create(svc.host, svc.idScope, new ProvisioningHttp(base),
      new SymmetricKeySecurityClient(registrationId, key));
    return client.register();
  };

  svc.stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGTERM'); } catch (_) { /* gone */ }
    }
    await waitForExit(child, 5000);
    if (!process.env.DPS_KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
  };

  return svc;
}

module.exports = { DPS_BIN, DEFAULT_HUB, startService, uid, randomKey, spkiHash, sleep };
