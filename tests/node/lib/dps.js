'use strict';
// Helpers for the Node.js interop suite: start the local DPS Console service and point the
// unmodified Azure IoT Node SDKs at it (custom port + CA, see TOOLCHAIN.md §6).

const { spawn, execFile } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');

// Use the exact azure-iot-http-base / azure-iot-common copies each SDK package resolves itself
// (npm installs several versions side by side).
const requireFrom = (pkg, from) => require(require.resolve(pkg, { paths: [path.dirname(require.resolve(from + '/package.json'))] }));
const ServiceHttpBase = requireFrom('azure-iot-http-base', 'azure-iot-provisioning-service');
const DeviceHttpBase = requireFrom('azure-iot-http-base', 'azure-iot-provisioning-device-http');
const { SharedAccessSignature, ConnectionString, anHourFromNow } = requireFrom('azure-iot-common', 'azure-iot-provisioning-service');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http: ProvisioningHttp } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { X509Security } = require('azure-iot-security-x509');
const { Mqtt: ProvisioningMqtt, MqttWs: ProvisioningMqttWs } = require('azure-iot-provisioning-device-mqtt');
// The MqttBase copy azure-iot-provisioning-device-mqtt itself resolves (a nested 1.13.1).
const { MqttBase } = requireFrom('azure-iot-mqtt-base', 'azure-iot-provisioning-device-mqtt');

const execFileP = promisify(execFile);

const DPS_BIN = process.env.DPS_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'dps-target'), 'debug', 'dps');

const DEFAULT_HUB = 'local-hub.dps.local';
const START_TIMEOUT_MS = Number(process.env.DPS_START_TIMEOUT_MS || 20000);

// Children started by this process; killed (by PID only) if the test process exits early.
const children = new Set();
process.on('exit', () => {
  for (const child of children) {
    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* already gone */ }
  }
});

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function tail(file, n = 40) {
  try { return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n'); } catch (_) { return ''; }
}

async function waitForEndpoint(file, child, logFile, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`dps exited early (code ${child.exitCode}, signal ${child.signalCode}); log:\n${tail(logFile)}`);
    }
    try {
      const text = fs.readFileSync(file, 'utf8');
      const ep = JSON.parse(text); // a half-written file fails to parse → keep polling
      if (ep && ep.ports && ep.ports.https && ep.idScope && ep.caCertificate) return ep;
    } catch (_) { /* not there yet */ }
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${file}; log:\n${tail(logFile)}`);
}

function waitForExit(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
    }, timeoutMs);
    child.once('exit', () => { clearTimeout(t); resolve(); });
  });
}

/**
 * Start `dps serve` on a fresh temp data dir (or opts.dataDir) and wait for endpoint.json.
 * Returns { dataDir, endpoint, ca, host, port, idScope, logFile, stop(), restart() }.
 */
async function startService(opts = {}) {
  if (!fs.existsSync(DPS_BIN)) throw new Error(`dps binary not found at ${DPS_BIN} (set DPS_BIN)`);
  const dataDir = opts.dataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'dps-node-'));
  const logFile = path.join(dataDir, 'service.log');
  const endpointFile = path.join(dataDir, 'endpoint.json');
  const svc = { dataDir, logFile, child: null };

  async function launch(httpsPort) {
    fs.rmSync(endpointFile, { force: true });
    const out = fs.openSync(logFile, 'a');
    // Every listener on a free port (the MQTT default 8883 may be taken, e.g. by the Python suite's service),
    // unless the test names one.
    const extra = opts.extraArgs || [];
    const mqtt = extra.includes('--mqtt-port') ? [] : ['--mqtt-port', '0'];
    const consolePort = extra.includes('--console-port') ? [] : ['--console-port', '0'];
    const args = ['serve', '--data-dir', dataDir, '--bind', '127.0.0.1', '--https-port', String(httpsPort), ...mqtt, ...consolePort, ...extra];
    const child = spawn(DPS_BIN, args, { stdio: ['ignore', out, out], env: { ...process.env, ...(opts.env || {}) } });
    fs.closeSync(out);
    children.add(child);
    child.once('exit', () => children.delete(child));
    svc.child = child;
    const endpoint = await waitForEndpoint(endpointFile, child, logFile, opts.timeoutMs || START_TIMEOUT_MS);
    svc.endpoint = endpoint;
    svc.idScope = endpoint.idScope;
    svc.host = endpoint.host;
    svc.port = endpoint.ports.https;
    svc.ca = fs.readFileSync(endpoint.caCertificate, 'utf8');
  }

  async function kill() {
    const child = svc.child;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGTERM'); } catch (_) { /* gone */ }
    }
    await waitForExit(child, 5000);
    svc.child = null;
  }

  svc.stop = async () => {
    await kill();
    if (!opts.dataDir && !process.env.DPS_KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
  };
  /** Stop and start again on the same data dir; keeps the port unless samePort === false. */
  svc.restart = async ({ samePort = true } = {}) => {
    const port = svc.port;
    await kill();
    await launch(samePort ? port : 0);
  };

  try {
    await launch(opts.httpsPort || 0);
  } catch (e) {
    await kill();
    throw e;
  }
  return svc;
}

/**
 * ProvisioningServiceClient.runBulkEnrollmentOperation only calls back when a callback is given
 * (its promise form never settles in 1.11.2), so wrap the callback form.
 */
function runBulk(sc, op) {
  return new Promise((resolve, reject) => {
    sc.runBulkEnrollmentOperation(op, (err, result, response) => (err ? reject(err) : resolve({ responseBody: result, httpResponse: response })));
  });
}

/** Parse `HostName=h:port;SharedAccessKeyName=..;SharedAccessKey=..`. */
function parseServiceConnectionString(cs) {
  const cn = ConnectionString.parse(cs);
  const m = /^(.*?)(?::(\d+))?$/.exec(cn.HostName);
  return { hostWithPort: cn.HostName, host: m[1], port: m[2] ? Number(m[2]) : 443, keyName: cn.SharedAccessKeyName, key: cn.SharedAccessKey };
}

/** https-base Http pointed at the service's port with its CA (TOOLCHAIN §6 agent trick). */
function httpBaseFor(svc, port, HttpBase = DeviceHttpBase.Http) {
  const base = new HttpBase();
  base.setOptions({ ca: svc.ca, http: { agent: new https.Agent({ port: port || svc.port, ca: svc.ca }) } });
  return base;
}

/** Official ProvisioningServiceClient talking to the local service. */
function serviceClient(svc, { connectionString } = {}) {
  const cs = parseServiceConnectionString(connectionString || svc.endpoint.serviceConnectionString);
  const config = {
    host: cs.host,
    // What fromConnectionString does (sr = host, skn = policy), with the port stripped from the host.
    sharedAccessSignature: SharedAccessSignature.create(cs.host, cs.keyName, cs.key, anHourFromNow()),
  };
  const ua = 'azure-iot-provisioning-service/' + require('azure-iot-provisioning-service/package.json').version;
  const rest = new ServiceHttpBase.RestApiClient(config, ua, httpBaseFor(svc, cs.port, ServiceHttpBase.Http));
  return new ProvisioningServiceClient(config, rest);
}

/** Device-side HTTP transport (azure-iot-provisioning-device-http) for the local port + CA. */
function httpTransport(svc) {
  return new ProvisioningHttp(httpBaseFor(svc));
}

/** Register a symmetric-key device over HTTPS with the official device SDK; resolves with its result. */
function registerSymmetricKey(svc, regId, key, { payload, idScope } = {}) {
  const security = new SymmetricKeySecurityClient(regId, key);
  const client = ProvisioningDeviceClient.create(svc.host, idScope || svc.idScope, httpTransport(svc), security);
  if (payload !== undefined) client.setProvisioningPayload(payload);
  return client.register();
}

/**
 * Device-side MQTT transport (azure-iot-provisioning-device-mqtt) for the local service (TOOLCHAIN §6).
 * - `Mqtt`: uri `mqtts://<provisioningHost>`, so the host passed to the client is `127.0.0.1:<mqtt port>`.
 * - `MqttWs`: uri is hard-coded `wss://<provisioningHost>:443/$iothub/websocket`; the host stays `127.0.0.1`
 *   and an https.Agent with `port` (agent options override the request's port) reaches the HTTPS port.
 * Returns { transport, host, trace } where `trace.received` records every PUBLISH the SDK received
 * ({ topic, payload }) — observation only, the SDK's own handler still processes them.
 */
function mqttTransport(svc, { ws = false } = {}) {
  const base = new MqttBase();
  const trace = { received: [] };
  base.on('message', (topic, payload) => trace.received.push({ topic, payload: payload.toString('utf8') }));
  let transport;
  let host;
  if (ws) {
    base.setOptions({ ca: svc.ca, mqtt: { webSocketAgent: new https.Agent({ port: svc.port, ca: svc.ca }) } });
    transport = new ProvisioningMqttWs(base);
    host = svc.host;
  } else {
    if (!svc.endpoint.ports || !svc.endpoint.ports.mqtt) {
      throw new Error('endpoint.json has no ports.mqtt: ' + JSON.stringify(svc.endpoint));
    }
    base.setOptions({ ca: svc.ca });
    transport = new ProvisioningMqtt(base);
    host = `${svc.host}:${svc.endpoint.ports.mqtt}`;
  }
  return { transport, host, trace };
}

/**
 * Register a symmetric-key device over MQTT (ws=false) or MQTT over WebSockets (ws=true) with the
 * official device SDK. Resolves { result, trace }; on failure rejects with the SDK error, which
 * carries `err.trace` (the received publishes).
 */
async function registerSymmetricKeyMqtt(svc, regId, key, { ws = false, payload, idScope } = {}) {
  const { transport, host, trace } = mqttTransport(svc, { ws });
  const security = new SymmetricKeySecurityClient(regId, key);
  const client = ProvisioningDeviceClient.create(host, idScope || svc.idScope, transport, security);
  if (payload !== undefined) client.setProvisioningPayload(payload);
  try {
    return { result: await client.register(), trace };
  } catch (err) {
    if (err && typeof err === 'object') err.trace = trace;
    throw err;
  }
}

/**
 * Register an X.509 device with the official device SDK (azure-iot-security-x509 `X509Security`):
 * `cert` is the PEM the device presents in TLS (leaf first, then intermediates), `key` the leaf's key.
 * transport: 'http' (azure-iot-provisioning-device-http; the SDK puts cert/key into the https request
 * options via RestApiClient config.x509), 'mqtt' or 'mqttws' (azure-iot-provisioning-device-mqtt; cert/key
 * go into the MQTT TLS options). Resolves { result, trace } (trace only for MQTT); on failure rejects with the
 * SDK error carrying `err.trace`.
 */
async function registerX509(svc, regId, { cert, key }, { transport = 'http', payload, idScope } = {}) {
  let t;
  let host = svc.host;
  let trace = { received: [] };
  if (transport === 'http') {
    t = httpTransport(svc);
  } else if (transport === 'mqtt' || transport === 'mqttws') {
    ({ transport: t, host, trace } = mqttTransport(svc, { ws: transport === 'mqttws' }));
  } else {
    throw new Error('unknown transport ' + transport);
  }
  const client = ProvisioningDeviceClient.create(host, idScope || svc.idScope, t, new X509Security(regId, { cert, key }));
  if (payload !== undefined) client.setProvisioningPayload(payload);
  try {
    return { result: await client.register(), trace };
  } catch (err) {
    if (err && typeof err === 'object') err.trace = trace;
    throw err;
  }
}

/**
 * Register devices over AMQP (`ws` false: the AMQP port; true: AMQP over WebSockets on the HTTPS port) with
 * the official SDK, in a child process whose NODE_EXTRA_CA_CERTS is the service's CA (lib/amqp-device.js).
 * `devices`: [{ registrationId, key } | { registrationId, cert, keyPem } | { registrationId, tpm: { tcti } }]
 * (+ payload, idScope). Resolves the array of { registrationId, ok, result?, error?, activations? }, one per
 * device, in order (`activations`: the blobs a TPM device activated, lib/tpm-security.js).
 */
async function registerAmqp(svc, devices, { ws = false } = {}) {
  if (!svc.endpoint.ports || !svc.endpoint.ports.amqp) throw new Error('endpoint.json has no ports.amqp: ' + JSON.stringify(svc.endpoint));
  const input = { host: svc.host, amqpPort: svc.endpoint.ports.amqp, httpsPort: svc.port, idScope: svc.idScope, ws, devices };
  const { stdout } = await execFileP(process.execPath, [path.join(__dirname, 'amqp-device.js'), JSON.stringify(input)], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: svc.endpoint.caCertificate },
    timeout: 120000,
    maxBuffer: 64 << 20,
  });
  return JSON.parse(stdout);
}

/** Run the dps CLI with --data-dir appended; resolves { stdout, stderr, code, json? }. */
async function runCli(svc, args, { json = undefined, allowFailure = false, dataDir = true } = {}) {
  const full = [...args, ...(dataDir ? ['--data-dir', svc.dataDir] : [])];
  let res;
  try {
    const r = await execFileP(DPS_BIN, full, { timeout: 30000, maxBuffer: 16 << 20 });
    res = { stdout: r.stdout, stderr: r.stderr, code: 0 };
  } catch (e) {
    if (e.code === undefined || typeof e.code !== 'number') throw e;
    res = { stdout: e.stdout, stderr: e.stderr, code: e.code };
    if (!allowFailure) throw new Error(`dps ${full.join(' ')} exited ${e.code}\nstdout: ${e.stdout}\nstderr: ${e.stderr}`);
  }
  const wantJson = json !== undefined ? json : full.includes('json');
  if (wantJson && res.code === 0) {
    try { res.json = JSON.parse(res.stdout); } catch (e) {
      throw new Error(`dps ${full.join(' ')} printed invalid JSON: ${e.message}\n${res.stdout}`);
    }
  }
  return res;
}

/** base64(HMAC-SHA256(base64decode(groupKey), utf8(regId))) — §4.2. */
function deriveKey(groupKey, regId) {
  return crypto.createHmac('sha256', Buffer.from(groupKey, 'base64')).update(regId, 'utf8').digest('base64');
}

function randomKey(bytes = 64) { return crypto.randomBytes(bytes).toString('base64'); }

/** Short unique id (lower-case alnum + '-'), valid as registration/enrollment id. */
function uid(prefix) { return `${prefix}-${crypto.randomBytes(5).toString('hex')}`; }

/** Parse a DPS error body (§1.8) from an SDK error, whichever property carries it. */
function errorBody(err) {
  let raw = err && (err.responseBody !== undefined ? err.responseBody
    : err.result !== undefined ? err.result
      : err.transportObject && err.transportObject.body);
  if (typeof raw === 'string') { try { raw = JSON.parse(raw); } catch (_) { /* not json */ } }
  return raw;
}

/** Status code of an SDK error (RestApiClient puts the IncomingMessage on err.response). */
function errorStatus(err) {
  return (err && err.response && err.response.statusCode) || (err && err.transportObject && err.transportObject.statusCode);
}

/**
 * Await a promise that must reject with HTTP `status`; asserts the §1.8 error body
 * (errorCode = status*1000+sub) and returns { err, body }.
 */
async function expectHttpError(promise, status, assert) {
  let err;
  try { await promise; } catch (e) { err = e; }
  assert.ok(err, `expected HTTP ${status}, but the call succeeded`);
  assert.equal(errorStatus(err), status, `expected HTTP ${status}, got ${errorStatus(err)}: ${err && err.message} body=${err && err.responseBody}`);
  const body = errorBody(err);
  assert.equal(typeof body, 'object', `error body is not JSON: ${err.responseBody}`);
  assert.equal(Math.floor(body.errorCode / 1000), status, `errorCode ${body.errorCode} does not start with ${status} (§1.8)`);
  return { err, body };
}

/** Read all pages of an SDK Query; returns { items, pages }. */
async function drainQuery(query, maxPages = 1000) {
  const items = [];
  const pages = [];
  while (query.hasMoreResults) {
    // Query.next() without arguments (promise form) ignores the stored token; pass it explicitly.
    const res = await query.next(query.continuationToken);
    const page = res.responseBody;
    if (!Array.isArray(page)) throw new Error('query page is not an array: ' + JSON.stringify(page));
    pages.push({ items: page, headers: res.httpResponse.headers });
    items.push(...page);
    if (pages.length > maxPages) throw new Error('query did not terminate');
  }
  return { items, pages };
}

/** Host names from `dps hub list --output json` (accepts an array of strings/objects, or {hubs:[..]}). */
function hubNames(json) {
  const list = Array.isArray(json) ? json : (json && (json.hubs || json.iotHubs || json.linkedHubs)) || [];
  return list.map((h) => (typeof h === 'string' ? h : h.hostName || h.hostname || h.host || h.name));
}

async function listHubs(svc) {
  const r = await runCli(svc, ['hub', 'list', '--output', 'json']);
  return hubNames(r.json);
}

/**
 * Raw HTTPS call to the service API (for the extensions the service SDK does not know: /linkedHubs,
 * renewKey, trace), authenticated like the SDK (SAS from the service connection string, §5.1).
 * Resolves { status, headers, body } (body parsed as JSON when possible); never rejects on HTTP status.
 */
function serviceRequest(svc, method, urlPath, body, { apiVersion = '2021-10-01' } = {}) {
  const cs = parseServiceConnectionString(svc.endpoint.serviceConnectionString);
  const sas = SharedAccessSignature.create(cs.host, cs.keyName, cs.key, anHourFromNow()).toString();
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const sep = urlPath.includes('?') ? '&' : '?';
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: cs.host, port: cs.port || svc.port, method, path: `${urlPath}${sep}api-version=${apiVersion}`, ca: svc.ca,
      headers: { authorization: sas, accept: 'application/json', ...(data ? { 'content-type': 'application/json; charset=utf-8', 'content-length': data.length } : {}) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed = text;
        try { parsed = text ? JSON.parse(text) : undefined; } catch (_) { /* not json */ }
        resolve({ status: res.statusCode, headers: res.headers, body: parsed });
      });
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

/** serviceRequest that must answer 2xx; returns the body. */
async function serviceCall(svc, method, urlPath, body) {
  const r = await serviceRequest(svc, method, urlPath, body);
  if (r.status < 200 || r.status >= 300) {
    throw new Error(`${method} ${urlPath} → HTTP ${r.status}: ${typeof r.body === 'string' ? r.body : JSON.stringify(r.body)}`);
  }
  return r.body;
}

/** PUT /linkedHubs/{host} (extension). */
function linkHub(svc, hostName, { weight = 1, region, applyAllocationPolicy = true } = {}) {
  const body = { hostName, allocationWeight: weight, applyAllocationPolicy };
  if (region !== undefined) body.region = region;
  return serviceCall(svc, 'PUT', `/linkedHubs/${encodeURIComponent(hostName)}`, body);
}

/** DELETE /linkedHubs/{host} (extension). */
function unlinkHub(svc, hostName) {
  return serviceCall(svc, 'DELETE', `/linkedHubs/${encodeURIComponent(hostName)}`);
}

/** GET /linkedHubs/{host}/devices: identities the built-in registry holds for that hub. */
function hubDevices(svc, hostName) {
  return serviceCall(svc, 'GET', `/linkedHubs/${encodeURIComponent(hostName)}/devices`);
}

/** GET /registrations/{id}/trace: how the device's last registration was decided. */
function registrationTrace(svc, registrationId) {
  return serviceCall(svc, 'GET', `/registrations/${encodeURIComponent(registrationId)}/trace`);
}

/**
 * Registration over HTTPS with the official device SDK from a chosen loopback source address
 * (https.Agent localAddress; the service listens on 127.0.0.1, loopback accepts any 127.x source).
 */
function registerSymmetricKeyFrom(svc, localAddress, regId, key, { payload, idScope } = {}) {
  const base = new DeviceHttpBase.Http();
  base.setOptions({ ca: svc.ca, http: { agent: new https.Agent({ port: svc.port, ca: svc.ca, localAddress }) } });
  const client = ProvisioningDeviceClient.create(svc.host, idScope || svc.idScope, new ProvisioningHttp(base), new SymmetricKeySecurityClient(regId, key));
  if (payload !== undefined) client.setProvisioningPayload(payload);
  return client.register();
}

/** GET /metrics (Prometheus text); `metric(svc, 'name{labels}')` reads one series' value (0 when absent). */
function metricsText(svc) {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: svc.port, path: '/metrics', ca: svc.ca }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
}

async function metric(svc, series) {
  const line = (await metricsText(svc)).split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** Run fn over items with at most `limit` in flight; results in input order. */
async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) { const j = i++; out[j] = await fn(items[j], j); }
  }));
  return out;
}

module.exports = {
  DPS_BIN,
  metric,
  DEFAULT_HUB,
  startService,
  parseServiceConnectionString,
  serviceClient,
  httpTransport,
  httpBaseFor,
  registerSymmetricKey,
  mqttTransport,
  registerSymmetricKeyMqtt,
  registerX509,
  registerAmqp,
  runCli,
  deriveKey,
  randomKey,
  uid,
  errorBody,
  errorStatus,
  expectHttpError,
  drainQuery,
  runBulk,
  hubNames,
  listHubs,
  sleep,
  serviceRequest,
  serviceCall,
  linkHub,
  unlinkHub,
  hubDevices,
  registrationTrace,
  registerSymmetricKeyFrom,
  mapLimit,
};
