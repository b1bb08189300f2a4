'use strict';
// Issue #15: two `dps serve` instances on one PostgreSQL behind HAProxy (TCP pass-through), every part started by
// the test (lib/cluster.js). The official Node SDKs talk to the balancer (device: azure-iot-provisioning-device
// 1.9.1 over HTTPS; service: azure-iot-provisioning-service); the device protocol is §1 (register, poll) and the
// coordination rules are §8 and §9 of dps-protocol.md: one operation `assigning` per device (409203), an
// assignment leased to the instance running it and taken over when that instance is gone.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const https = require('node:https');
const dps = require('./lib/dps');
const { startCluster, requestsServed, sleep } = require('./lib/cluster');

const API = '2021-06-01';
let cluster;
let a;
let b;
let sc;
let hook;

/** A custom-allocation webhook whose answers the test releases (`hold(id)`, then `release(id)`). */
async function startWebhook() {
  const held = new Map();
  const calls = new Map();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body = null;
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (_) { /* null */ }
      const id = body && body.deviceRuntimeContext && body.deviceRuntimeContext.registrationId;
      calls.set(id, (calls.get(id) || 0) + 1);
      const answer = () => {
        if (res.destroyed) return;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ iotHubHostName: dps.DEFAULT_HUB }));
      };
      const gate = held.get(id);
      if (gate) gate.promise.then(answer); else answer();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}/api/allocate`,
    hold(id) { let release; const promise = new Promise((r) => { release = r; }); held.set(id, { promise, release }); },
    release(id) { const g = held.get(id); held.delete(id); if (g) g.release(); },
    calls: (id) => calls.get(id) || 0,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

async function until(what, check) {
  for (let i = 0; ; i++) {
    const v = await check();
    if (v) return v;
    if (i > 0 && i % 200 === 0) process.stderr.write(`still waiting for ${what}\n`);
    await sleep(50);
  }
}

async function createEnrollment(client, { custom = false } = {}) {
  const registrationId = dps.uid('cluster');
  const primaryKey = dps.randomKey();
  const enrollment = {
    registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey: dps.randomKey() } },
  };
  if (custom) {
    enrollment.allocationPolicy = 'custom';
    enrollment.customAllocationDefinition = { webhookUrl: hook.url, apiVersion: '2021-10-01' };
    enrollment.iotHubs = [dps.DEFAULT_HUB];
  }
  await client.createOrUpdateIndividualEnrollment(enrollment);
  return { registrationId, key: primaryKey };
}

/** The SAS a symmetric-key device signs (§4.2). */
function deviceSas(idScope, registrationId, key) {
  const sr = encodeURIComponent(`${idScope}/registrations/${registrationId}`);
  const se = Math.floor(Date.now() / 1000) + 3600;
  const sig = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(`${sr}\n${se}`).digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}&skn=registration`;
}

/** One device request (§1.1) straight to `port` (an instance, or the balancer); { status, body }. */
function deviceRequest(svc, port, method, devicePath, dev, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request({
      host: '127.0.0.1', port, method, ca: svc.ca, agent: false,
      path: `/${svc.idScope}/registrations/${dev.registrationId}${devicePath}?api-version=${API}`,
      headers: { authorization: deviceSas(svc.idScope, dev.registrationId, dev.key), 'content-type': 'application/json', ...(data ? { 'content-length': Buffer.byteLength(data) } : {}) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        let parsed = null;
        try { parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (_) { /* empty */ }
        resolve({ status: res.statusCode, body: parsed });
      });
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

const register = (svc, port, dev) => deviceRequest(svc, port, 'PUT', '/register', dev, { registrationId: dev.registrationId });
const poll = (svc, port, dev, operationId) => deviceRequest(svc, port, 'GET', `/operations/${operationId}`, dev);

/** Polls an operation at `port` until it is no longer assigning; the last answer. */
async function pollUntilDone(port, dev, operationId) {
  return until(`operation ${operationId}`, async () => {
    const r = await poll(cluster.lb, port, dev, operationId);
    return r.status === 200 && r.body.status !== 'assigning' ? r : (await sleep(200), null);
  });
}

/** Which instances logged a request whose path contains `text` (`method`). */
function servedBy(text, method) {
  return cluster.instances.filter((svc) => requestsServed(svc).some((r) => r.method === method && r.path.includes(text)));
}

before(async () => {
  hook = await startWebhook();
  cluster = await startCluster({ extraArgs: ['--retry-after-secs', '2', '--webhook-timeout-secs', '120', '--webhook-retries', '0'] });
  [a, b] = cluster.instances;
  sc = dps.serviceClient(cluster.lb);
});
after(async () => {
  if (cluster) await cluster.stop();
  if (hook) await hook.close();
});

test('§9 the balancer checks GET /health on each instance', async () => {
  for (const svc of cluster.instances) {
    const r = await new Promise((resolve, reject) => {
      https.get({ host: '127.0.0.1', port: svc.port, path: '/health', ca: svc.ca, agent: false }, (res) => {
        let t = ''; res.on('data', (c) => { t += c; }); res.on('end', () => resolve({ status: res.statusCode, text: t }));
      }).on('error', reject);
    });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(JSON.parse(r.text), { status: 'ok' });
  }
  assert.equal(a.idScope, b.idScope, 'both instances serve the ID scope kept in the database');
  assert.equal(a.ca, b.ca, 'both instances present the CA `dps init` made');
  const owner = (svc) => /SharedAccessKey=([^;]+)/.exec(svc.endpoint.serviceConnectionString)[1];
  assert.equal(owner(a), owner(b), 'started at once, both use the one owner policy (the start lock)');
});

test('§1.1/§9 the official SDK registers through the balancer; its polls land on both instances', async () => {
  const dev = await createEnrollment(sc, { custom: true });
  // The assignment waits (webhook held) until each instance has answered a poll of the device's operation.
  hook.hold(dev.registrationId);
  const registered = dps.registerSymmetricKey(cluster.lb, dev.registrationId, dev.key);
  await until('polls on both instances', () => servedBy(`/registrations/${dev.registrationId}/operations/`, 'GET').length === 2);
  hook.release(dev.registrationId);
  const result = await registered;
  assert.equal(result.status, 'assigned');
  assert.equal(result.assignedHub, dps.DEFAULT_HUB);
  assert.equal(hook.calls(dev.registrationId), 1, 'one assignment');
});

test('§8 a device registered on A and polled on B gets its answer', async () => {
  const dev = await createEnrollment(sc, { custom: true });
  hook.hold(dev.registrationId);
  const r = await register(cluster.lb, a.port, dev);
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const running = await poll(cluster.lb, b.port, dev, r.body.operationId);
  assert.deepEqual([running.status, running.body.status], [202, 'assigning'], 'B reads the operation A runs from the database');
  hook.release(dev.registrationId);
  const done = await pollUntilDone(b.port, dev, r.body.operationId);
  assert.equal(done.body.status, 'assigned', JSON.stringify(done.body));
  assert.equal(done.body.registrationState.assignedHub, dps.DEFAULT_HUB);
});

test('§8 parallel registers of one id through both instances: one operation, the rest 409203', async () => {
  const dev = await createEnrollment(sc, { custom: true });
  hook.hold(dev.registrationId);
  const answers = await Promise.all([a.port, b.port, a.port, b.port, a.port, b.port, cluster.lb.port, cluster.lb.port].map((p) => register(cluster.lb, p, dev)));
  const accepted = answers.filter((r) => r.status === 202);
  const refused = answers.filter((r) => r.status === 409);
  assert.equal(accepted.length, 1, JSON.stringify(answers));
  assert.equal(refused.length, answers.length - 1, JSON.stringify(answers));
  for (const r of refused) assert.equal(r.body.errorCode, 409203, JSON.stringify(r.body));
  await until('the webhook call', () => hook.calls(dev.registrationId) === 1);
  hook.release(dev.registrationId);
  const done = await pollUntilDone(cluster.lb.port, dev, accepted[0].body.operationId);
  assert.equal(done.body.status, 'assigned');
  assert.equal(hook.calls(dev.registrationId), 1, 'one assignment');
});

test('§9 an enrollment created through A is used by B at once', async () => {
  const direct = (svc) => dps.serviceClient(svc);
  const dev = { registrationId: dps.uid('cluster-new'), key: dps.randomKey() };
  // B first learns that the device has no enrollment (and may remember it).
  const unknown = await register(cluster.lb, b.port, dev);
  assert.ok(unknown.status >= 400, JSON.stringify(unknown.body));
  await direct(a).createOrUpdateIndividualEnrollment({
    registrationId: dev.registrationId,
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: dev.key, secondaryKey: dps.randomKey() } },
  });
  const result = await dps.registerSymmetricKey(b, dev.registrationId, dev.key);
  assert.equal(result.status, 'assigned');
});

test('§8 kill -9 of the instance holding an assignment lease: the other completes it', async () => {
  const dev = await createEnrollment(sc, { custom: true });
  hook.hold(dev.registrationId);
  const registered = dps.registerSymmetricKey(cluster.lb, dev.registrationId, dev.key);
  await until('the first webhook call', () => hook.calls(dev.registrationId) === 1);
  const [holder] = await until('the instance that took the register', () => {
    const s = servedBy(`/registrations/${dev.registrationId}/register`, 'PUT');
    return s.length === 1 ? s : null;
  });
  const other = holder === a ? b : a;
  process.kill(holder.child.pid, 'SIGKILL');
  // The held call stays unanswered (its instance is gone); the next call, once the lease expired and the other
  // instance's sweeper took the operation over, is answered at once.
  hook.release(dev.registrationId);
  const result = await registered;
  assert.equal(result.status, 'assigned');
  assert.equal(hook.calls(dev.registrationId), 2, 'the assignment ran again on the other instance');
  assert.ok(/took over stalled registrations/.test(require('node:fs').readFileSync(other.logFile, 'utf8')), 'the sweeper took it over');
});
