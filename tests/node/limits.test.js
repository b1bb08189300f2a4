'use strict';
// Azure limits profile (README "Azure limits profile"; dps-protocol.md §1.9, §2.7, §3.4, §9): the official Node
// device SDK (azure-iot-provisioning-device with -http, -mqtt and -amqp) is throttled with 429 on register and
// on poll, backs off for the retry-after it is given, and still provisions.
//
// What the SDK sources do on 429 (node_modules, 1.9.1 / mqtt 1.8.1):
// - http.js has a branch for status >= 429 (register → { status: 'registering' }, poll → { status: 'assigning' },
//   wait = `retry-after` × 1000), but it is dead code: azure-iot-http-base's RestApiClient.executeApiCall (1.12.1,
//   rest_api_client.js requestCallback) turns every status >= 300 into an error first, and http.js passes an error
//   straight to the state machine, which fails the registration. So over HTTPS the SDK surfaces 429 as
//   `errors.ThrottlingError` (with the response and its `retry-after`) and the *application* backs off and calls
//   register() again — which the test does, as a device application must (dps-protocol.md §1.7 says otherwise).
// - mqtt.js: `res/<status>` >= 429 → the same, the wait from the topic's `retry-after` parameter.
// - amqp.js: a `rejected` send whose condition translates to ThrottlingError (`com.microsoft:device-container-
//   throttled`) or InternalServerError → the same, the wait from the error's info `retry-after`. The check is
//   `instanceof errors.ThrottlingError` against the azure-iot-common copy nested under
//   azure-iot-provisioning-device-amqp, while translateError builds the error from the copy nested under
//   azure-iot-amqp-base (two copies of 1.13.1 in this install, because the root holds 1.13.3): the check fails and
//   the rejection reaches the application. With a single hoisted copy the SDK retries by itself. The test accepts
//   both: it retries after the rejection's `info["retry-after"]` when the SDK does not.
//
// Small windows make the SDK meet both limits: one registration per 3 s per service (a "blocker" device takes the
// slot just before the device under test registers), one poll per 6 s per device, and a custom allocation webhook
// that answers after 5 s, so the device is still `assigning` at its second poll (retry-after 2 s; a poll of a running
// assignment waits up to 1 s for its outcome, README "Durability and speed"), which comes inside the poll window. The
// 429s each device received are counted from its decision trace (`throttled`) and the service's metrics.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const dps = require('./lib/dps');

const WINDOW_SECS = 3;
const POLL_WINDOW_SECS = 6;
const WEBHOOK_DELAY_MS = 5000;

let svc;
let hook;

before(async () => {
  hook = await startWebhook();
  svc = await dps.startService({
    extraArgs: ['--limits', 'azure', '--retry-after-secs', '2', '--amqp-port', '0'],
    env: {
      DPS_LIMITS_AZURE_REGISTRATIONS_PER_WINDOW: '1',
      DPS_LIMITS_AZURE_REGISTRATION_WINDOW_SECS: String(WINDOW_SECS),
      DPS_LIMITS_AZURE_POLLS_PER_WINDOW: '1',
      DPS_LIMITS_AZURE_POLL_WINDOW_SECS: String(POLL_WINDOW_SECS),
    },
  });
});
after(async () => {
  if (svc) await svc.stop();
  if (hook) await hook.close();
});

/** A webhook that allocates every device to the default hub after WEBHOOK_DELAY_MS. */
async function startWebhook() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => setTimeout(() => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ iotHubHostName: dps.DEFAULT_HUB }));
    }, WEBHOOK_DELAY_MS));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}/api/allocate`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

async function enroll(registrationId, { slow = true } = {}) {
  const key = dps.randomKey();
  const doc = { registrationId, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: key, secondaryKey: dps.randomKey() } } };
  if (slow) Object.assign(doc, { allocationPolicy: 'custom', customAllocationDefinition: { webhookUrl: hook.url, apiVersion: '2021-10-01' } });
  await dps.serviceCall(svc, 'PUT', `/enrollments/${registrationId}`, doc);
  return key;
}

async function throttledTotals() {
  const count = (op) => dps.metric(svc, `dps_throttled_requests_total{operation="${op}"}`);
  return { register: await count('register'), poll: await count('poll') };
}

/**
 * Provisions `register(id, key)` right after a blocker device took the registration slot (once the previous
 * test's registrations have left the window). `slow`: the device's allocation waits for the webhook.
 */
async function throttledProvisioning(prefix, register, { slow = true } = {}) {
  const blocker = dps.uid(`${prefix}-blocker`);
  const id = dps.uid(prefix);
  const blockerKey = await enroll(blocker, { slow: false });
  const key = await enroll(id, { slow });
  const before = await throttledTotals();
  await dps.sleep(WINDOW_SECS * 1000);
  const b = await dps.registerSymmetricKey(svc, blocker, blockerKey);
  assert.equal(b.status || b.registrationState?.status, 'assigned', JSON.stringify(b));
  const result = await register(id, key);
  const after = await throttledTotals();
  const t = (await dps.registrationTrace(svc, id)).trace;
  return { id, result, note: t.throttled, delta: { register: after.register - before.register, poll: after.poll - before.poll } };
}

function assertBackedOff({ id, result, note, delta }, { polls = true } = {}) {
  assert.equal(result.assignedHub, dps.DEFAULT_HUB, JSON.stringify(result));
  assert.equal(result.deviceId, id);
  assert.ok(note, `the trace of ${id} has a throttled entry`);
  assert.ok(note.registrations >= 1, `the SDK received 429 on register: ${JSON.stringify(note)}`);
  if (polls) assert.ok(note.polls >= 1, `the SDK received 429 on poll: ${JSON.stringify(note)}`);
  assert.ok(delta.register >= note.registrations && delta.poll >= note.polls, `metrics count them: ${JSON.stringify(delta)}`);
}

test('§1.9 HTTPS: 429 reaches the application as ThrottlingError with retry-after; retrying after it provisions', async () => {
  const errors = [];
  const r = await throttledProvisioning('lim-http', async (id, key) => {
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        const res = await dps.registerSymmetricKey(svc, id, key);
        return res.registrationState || res;
      } catch (err) {
        assert.equal(err.constructor.name, 'ThrottlingError', `only throttling is expected: ${err}`);
        assert.equal(dps.errorBody(err).errorCode, 429001);
        const wait = Number(err.response.headers['retry-after']);
        assert.ok(wait >= 1 && wait <= WINDOW_SECS, `retry-after ${wait}`);
        errors.push(err);
        await dps.sleep(wait * 1000);
      }
    }
    throw new Error('not provisioned after 10 attempts');
  }, { slow: false });
  assertBackedOff(r, { polls: false });
  assert.equal(errors.length, r.note.registrations + r.note.polls, 'every 429 the service sent reached the application');
});

test('§2.7 MQTT: res/429 with retry-after; the SDK backs off and still provisions', async () => {
  let trace;
  const r = await throttledProvisioning('lim-mqtt', async (id, key) => {
    const out = await dps.registerSymmetricKeyMqtt(svc, id, key);
    trace = out.trace;
    return out.result.registrationState || out.result;
  });
  assertBackedOff(r);
  const refused = trace.received.filter((m) => m.topic.startsWith('$dps/registrations/res/429/'));
  assert.equal(refused.length, r.note.registrations + r.note.polls, `every 429 the SDK received: ${JSON.stringify(trace.received.map((m) => m.topic))}`);
  for (const m of refused) {
    assert.match(m.topic, /^\$dps\/registrations\/res\/429\/\?\$rid=[^&]+&retry-after=\d+$/);
    assert.equal(JSON.parse(m.payload).errorCode, 429001);
  }
});

test('§3.4 AMQP: rejected as device-container-throttled with retry-after in info; backing off provisions', async () => {
  const surfaced = [];
  const r = await throttledProvisioning('lim-amqp', async (id, key) => {
    for (let attempt = 0; attempt < 10; attempt++) {
      const [out] = await dps.registerAmqp(svc, [{ registrationId: id, key }]);
      if (out.ok) return out.result.registrationState || out.result;
      assert.equal(out.error.condition, 'com.microsoft:device-container-throttled', JSON.stringify(out.error));
      assert.equal(out.error.body.errorCode, 429001);
      const wait = out.error.info['retry-after'];
      assert.equal(out.error.info['Retry-After'], wait, 'both spellings (§3.4)');
      assert.ok(wait >= 1 && wait <= WINDOW_SECS, `retry-after ${wait}`);
      surfaced.push(out.error);
      await dps.sleep(wait * 1000);
    }
    throw new Error('not provisioned after 10 attempts');
  }, { slow: false });
  assertBackedOff(r, { polls: false });
  assert.ok(surfaced.length <= r.note.registrations, 'every rejection the application saw was counted by the service');
});
