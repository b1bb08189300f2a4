'use strict';
// The Simulate page (#16): start simulated devices from the console and watch them — a device's sequence to
// `assigned` over each transport, a fault's refusal with its DPS code and plain-language cause, and a device
// stepped through by hand. Simulated devices are real clients through the service's listeners; what the page
// shows is checked against the service API. Screenshots: simulate, simulate-refused (README "Teaching").

const fs = require('node:fs');
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startService } = require('./lib/service');
const { openConsole, tid, textOf, waitForText, waitUntil, signIn, goTo, scrollTopTo, screenshot, withEvidence } = require('./lib/browser');

let svc;
let con;

before(async () => {
  svc = await startService({ label: 'e2e-simulate' });
  con = await openConsole(svc);
  await signIn(con.page, svc);
});
after(async () => {
  if (con) await con.close();
  if (svc) await svc.stop();
});

/** Fill the start form and start; returns the new run's id (the selected run tab). */
async function start(page, { attestation = 'symmetricKey', transport = 'https', count = '3', fault = 'none', faulty = '', step = false } = {}) {
  await goTo(page, 'simulate', 'Simulate');
  await tid(page, 'sim-attestation').selectOption(attestation);
  await tid(page, 'sim-transport').selectOption(transport);
  await tid(page, 'sim-count').fill(count);
  await tid(page, 'sim-fault').selectOption(fault);
  if (fault !== 'none') await tid(page, 'sim-faulty').fill(faulty);
  if ((await tid(page, 'sim-step-through').isChecked()) !== step) await tid(page, 'sim-step-through').click();
  const before = await svc.call('GET', '/simulations');
  await tid(page, 'sim-start').click();
  let run;
  await waitUntil(async () => {
    const now = await svc.call('GET', '/simulations');
    run = now.length > before.length ? now[0] : undefined;
    return Boolean(run);
  }, { message: 'a new simulation run' });
  return run.id;
}

const stateOf = (page, id) => page.locator(`[data-testid="sim-device"][data-id="${id}"] [data-testid="sim-device-state"]`);

async function openDevice(page, id) {
  await page.locator(`[data-testid="sim-device"][data-id="${id}"] [data-testid="sim-device-open"]`).click();
  await tid(page, 'sim-flow').waitFor({ state: 'visible' });
  // The panel shows "Loading" until the device's flow has been fetched: wait for that device's own flow.
  await waitForText(page.locator('[data-testid="sim-flow"] h3'), (t) => t.trim() === id, { what: `${id}'s flow panel` });
  await tid(page, 'sim-flow-state').waitFor({ state: 'visible' });
}

for (const transport of ['https', 'mqtt', 'amqp']) {
  test(`a simulated ${transport} device's sequence runs to assigned`, async () => {
    await withEvidence(`simulate-${transport}`, con, async () => {
      const { page } = con;
      const run = await start(page, { transport, count: '3' });
      const id = `${run}-2`;
      await waitForText(stateOf(page, id), 'assigned', { what: `${id}'s state`, timeout: 60000 });
      await openDevice(page, id);
      await waitForText(tid(page, 'sim-flow-state'), 'assigned', { what: 'the flow panel state' });
      const kinds = await page.locator('[data-testid="sim-step"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-kind')));
      for (const k of ['connect', 'TLS', 'register', 'accepted', 'poll', 'answer']) {
        assert.ok(kinds.includes(k), `${transport}: the sequence shows ${k}: ${kinds}`);
      }
      if (transport !== 'https') assert.ok(kinds.includes('sign-in'), `${transport} signs in: ${kinds}`);
      const hub = await textOf(tid(page, 'sim-flow-hub'));
      const api = await svc.call('GET', `/simulations/${run}/devices/${id}`);
      assert.ok(hub.includes(api.assignedHub), `the page names the hub the service assigned (${api.assignedHub}): ${hub}`);
      const record = await svc.call('GET', `/registrations/${id}`);
      assert.equal(record.status, 'assigned', 'the registration record agrees');
      const shown = await tid(page, 'sim-sequence').innerText();
      assert.ok(!/sig=[A-Za-z0-9%]/.test(shown), 'no SAS signature is shown');
      assert.equal(await tid(page, 'sim-flow-trace').getAttribute('href'), `#/registrations/${id}`, 'linked to the decision trace');
      if (transport === 'mqtt') {
        await page.locator('[data-testid="sim-step"][data-kind="sign-in"] details summary').first().click();
        await scrollTopTo(tid(page, 'sim-runs'), 16);
        await screenshot(page, 'simulate');
      }
    });
  });
}

test('X.509 devices present certificates of a CA made for the run; an untrusted CA is refused', async () => {
  await withEvidence('simulate-x509', con, async () => {
    const { page } = con;
    const run = await start(page, { attestation: 'x509', transport: 'mqtt', count: '2' });
    const id = `${run}-1`;
    await waitForText(stateOf(page, id), 'assigned', { what: `${id}'s state`, timeout: 60000 });
    await openDevice(page, id);
    const tls = await page.locator('[data-testid="sim-step"][data-kind="TLS"]').first().innerText();
    assert.ok(tls.includes('certificate sent'), `the TLS step says the device sent its certificate: ${tls}`);
    const bad = await start(page, { attestation: 'x509', transport: 'https', count: '1', fault: 'untrustedCa' });
    await waitForText(stateOf(page, `${bad}-1`), 'refused', { what: 'the untrusted device refused', timeout: 60000 });
    const api = await svc.call('GET', `/simulations/${bad}/devices/${bad}-1`);
    assert.equal(api.errorCode, 401002);
  });
});

test('a wrong key shows the refusal, its DPS code and the cause in plain words', async () => {
  await withEvidence('simulate-refused', con, async () => {
    const { page } = con;
    await goTo(page, 'simulate', 'Simulate');
    await tid(page, 'sim-attestation').selectOption('symmetricKey');
    await tid(page, 'sim-fault').selectOption('wrongKey');
    await waitForText(tid(page, 'sim-fault-hint'), (t) => t.includes('401002'), { what: 'the fault hint' });
    const run = await start(page, { transport: 'amqp', count: '2', fault: 'wrongKey' });
    const id = `${run}-1`;
    await waitForText(stateOf(page, id), 'refused', { what: `${id}'s state`, timeout: 60000 });
    await openDevice(page, id);
    await waitForText(tid(page, 'sim-flow-cause'), (t) => t.includes('401002'), { what: 'the cause' });
    const cause = await textOf(tid(page, 'sim-flow-cause'));
    assert.ok(cause.length > 40, `the cause is explained, not only coded: ${cause}`);
    const kinds = await page.locator('[data-testid="sim-step"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-kind')));
    assert.equal(kinds[kinds.length - 1], 'refused', `the flow ends refused: ${kinds}`);
    const api = await svc.call('GET', `/simulations/${run}/devices/${id}`);
    assert.equal(api.errorCode, 401002);
    await scrollTopTo(tid(page, 'sim-fault-hint'), 16);
    await screenshot(page, 'simulate-refused');
  });
});

test('faulty devices: the first device gets the fault and shows it, the others provision in the same run', async () => {
  await withEvidence('simulate-faulty', con, async () => {
    const { page } = con;
    const run = await start(page, { transport: 'amqp', count: '3', fault: 'wrongKey', faulty: '1' });
    await waitForText(stateOf(page, `${run}-1`), 'refused', { what: 'the faulty device refused', timeout: 60000 });
    for (const n of [2, 3]) await waitForText(stateOf(page, `${run}-${n}`), 'assigned', { what: `healthy device ${n}`, timeout: 60000 });
    const row = (n) => page.locator(`[data-testid="sim-device"][data-id="${run}-${n}"] [data-testid="sim-device-fault"]`);
    assert.equal(await row(1).count(), 1, 'the faulty device shows its fault');
    assert.equal(await row(2).count(), 0, 'a healthy device shows none');
    const api = await svc.call('GET', `/simulations/${run}`);
    assert.deepEqual([api.request.faulty, api.counts], [1, { assigned: 2, refused: 1 }]);
    assert.equal(api.devices[0].fault, 'wrongKey');
    const [download] = await Promise.all([page.waitForEvent('download'), tid(page, 'sim-run-transcript').click()]);
    const md = fs.readFileSync(await download.path(), 'utf8');
    assert.ok(md.startsWith(`# Simulation ${run}`) && md.includes('- Fault: Wrong key (the first device)'), `the run's transcript: ${md.slice(0, 400)}`);
    assert.ok(md.includes(`| \`${run}-1\` | Wrong key | refused |`) && md.includes(`## Device \`${run}-3\``), `a row and a flow per device: ${md.slice(0, 1200)}`);
    assert.ok(md.includes('- Fault given: Wrong key') && md.includes('```mermaid'), 'the faulty device\'s flow');
  });
});

test('step-through: a device waits before each step, with its explanation, until continued', async () => {
  await withEvidence('simulate-step', con, async () => {
    const { page } = con;
    const run = await start(page, { transport: 'mqtt', count: '1', step: true });
    const id = `${run}-1`;
    await waitForText(stateOf(page, id), 'paused', { what: `${id} paused` });
    await openDevice(page, id);
    await waitForText(tid(page, 'sim-paused'), (t) => t.includes('connect') && t.includes('TCP'), { what: 'paused before connect, explained' });
    await tid(page, 'sim-next').click();
    await waitForText(tid(page, 'sim-paused'), (t) => t.includes('TLS'), { what: 'paused before TLS' });
    assert.equal(await page.locator('[data-testid="sim-step"]').count(), 1, 'one step taken');
    await tid(page, 'sim-next').click();
    await waitForText(tid(page, 'sim-paused'), (t) => t.includes('sign-in'), { what: 'paused before the sign-in' });
    await tid(page, 'sim-to-end').click();
    await waitForText(tid(page, 'sim-flow-state'), 'assigned', { what: 'run to the end', timeout: 60000 });
    const api = await svc.call('GET', `/simulations/${run}`);
    assert.deepEqual(api.counts, { assigned: 1 });
  });
});

test('a built-in scenario runs from the page to its expected outcome, and its reset removes what it made', async () => {
  await withEvidence('simulate-scenario', con, async () => {
    const { page } = con;
    await goTo(page, 'simulate', 'Simulate');
    const card = page.locator('[data-testid="scenario"][data-name="static"]');
    await card.waitFor({ state: 'visible' });
    await card.locator('[data-testid="scenario-run"]').click();
    await waitForText(card.locator('[data-testid="scenario-state"]'), 'passed', { what: 'the static scenario passed', timeout: 90000 });
    const steps = await card.locator('[data-testid="scenario-step"]').allInnerTexts();
    assert.ok(steps.length >= 1 && steps.some((t) => /static-b\.demo\.local/.test(t)), `the steps say where devices went: ${steps}`);
    const api = await svc.call('GET', '/scenarios/static');
    assert.equal(api.state, 'passed');
    assert.equal((await svc.api('GET', '/enrollmentGroups/demo-static')).status, 200, 'the scenario made its group');
    const [download] = await Promise.all([page.waitForEvent('download'), card.locator('[data-testid="scenario-transcript"]').click()]);
    const md = fs.readFileSync(await download.path(), 'utf8');
    assert.ok(md.startsWith('# Scenario: Static allocation'), `the transcript's heading: ${md.slice(0, 200)}`);
    assert.ok(md.includes('```mermaid') && md.includes('static-b.demo.local'), 'each step with its first device\'s sequence');
    assert.ok(!/sig=[A-Za-z0-9%]/.test(md), 'no SAS signature in the transcript');
    await scrollTopTo(tid(page, 'scenarios'), 16);
    await screenshot(page, 'simulate-scenarios');
    await card.locator('[data-testid="scenario-reset"]').click();
    await waitForText(card.locator('[data-testid="scenario-state"]'), 'not run', { what: 'the reset scenario' });
    assert.equal((await svc.api('GET', '/enrollmentGroups/demo-static')).status, 404, 'the reset removed the group');
  });
});

test('TPM devices: a software TPM each, its key enrolled, the challenge answered in the TPM; MQTT is not offered', async () => {
  await withEvidence('simulate-tpm', con, async () => {
    const { page } = con;
    await goTo(page, 'simulate', 'Simulate');
    await tid(page, 'sim-attestation').selectOption('tpm');
    const offered = await tid(page, 'sim-transport').locator('option').evaluateAll((os) => os.map((o) => o.value));
    assert.deepEqual(offered, ['https', 'amqp', 'amqpWs'], 'TPM devices are offered the transports that carry TPM');
    const run = await start(page, { attestation: 'tpm', transport: 'amqpWs', count: '1' });
    const id = `${run}-1`;
    await waitForText(stateOf(page, id), 'assigned', { what: `${id}'s state`, timeout: 90000 });
    await openDevice(page, id);
    const kinds = await page.locator('[data-testid="sim-step"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-kind')));
    for (const k of ['set-up', 'connect', 'TLS', 'sign-in', 'TPM challenge', 'register', 'answer']) {
      assert.ok(kinds.includes(k), `the TPM sequence shows ${k}: ${kinds}`);
    }
    const shown = await tid(page, 'sim-sequence').innerText();
    assert.ok(shown.includes('ActivateCredential') && shown.includes('101 Switching Protocols'), `the challenge and the WebSocket upgrade: ${shown}`);
    const enrollment = await svc.call('GET', `/enrollments/${id}`);
    assert.equal(enrollment.attestation.type, 'tpm', 'the device\'s TPM was enrolled');
    await waitForText(page.locator('[data-testid="sim-run"]').first(), (t) => t.includes('1 assigned'), { what: 'the run tab updated' });
    // The sequence's own scroll shows the TPM steps; the page shows the run from its tabs.
    await page.locator('[data-testid="sim-step"][data-kind="sign-in"]').first().evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await scrollTopTo(tid(page, 'sim-runs'), 16);
    await screenshot(page, 'simulate-tpm');
  });
});

test('a finished run is cleaned up from the page: its records and hub identities go, the run with them', async () => {
  await withEvidence('simulate-clean-up', con, async () => {
    const { page } = con;
    await goTo(page, 'simulate', 'Simulate');
    const run = await start(page, { transport: 'mqtt', count: '2' });
    await waitForText(page.locator('[data-testid="sim-run"]', { hasText: run }), (t) => t.includes('2 assigned'), { what: `${run} ended`, timeout: 60000 });
    const record = await svc.call('GET', `/registrations/${run}-1`);
    assert.equal(record.status, 'assigned', 'the run left a record');
    await tid(page, 'sim-clean-up').click();
    await waitForText(tid(page, 'sim-notice'), (t) => t.includes(`${run} cleaned up: 2 registration records, 2 hub identities`), { what: 'the clean-up summary' });
    for (const n of [1, 2]) {
      assert.equal((await svc.api('GET', `/registrations/${run}-${n}`)).status, 404, `${run}-${n}'s record is gone`);
    }
    const hub = await svc.call('GET', `/linkedHubs/${encodeURIComponent(record.assignedHub)}/devices`);
    assert.ok(!JSON.stringify(hub).includes(`${run}-`), `no identity of ${run} is left in the hub: ${JSON.stringify(hub)}`);
    assert.equal((await svc.api('GET', `/simulations/${run}`)).status, 404, 'the run is forgotten');
  });
});

test('X.509 devices issued by an intermediate CA, over MQTT over WebSockets', async () => {
  await withEvidence('simulate-x509-intermediate', con, async () => {
    const { page } = con;
    await goTo(page, 'simulate', 'Simulate');
    await tid(page, 'sim-attestation').selectOption('x509');
    await tid(page, 'sim-x509-ca').selectOption('intermediate');
    const run = await start(page, { attestation: 'x509', transport: 'mqttWs', count: '2' });
    await waitForText(stateOf(page, `${run}-2`), 'assigned', { what: 'the device issued by the intermediate', timeout: 60000 });
    const api = await svc.call('GET', `/simulations/${run}`);
    assert.deepEqual(api.request.x509Ca, { kind: 'intermediate' });
    assert.deepEqual(api.counts, { assigned: 2 });
  });
});

test('a scenario file of your own is added on the page, runs to its outcome, and its delete removes what it made', async () => {
  await withEvidence('simulate-own-scenario', con, async () => {
    const { page } = con;
    await goTo(page, 'simulate', 'Simulate');
    const file = [
      'name = "e2e-lab"',
      'title = "E2E lab"',
      'summary = "One hub, one group, three devices over AMQP over WebSockets."',
      '[[hubs]]',
      'hostName = "e2e-lab.demo.local"',
      '[[groups]]',
      'enrollmentGroupId = "e2e-lab-group"',
      'attestation = { type = "symmetricKey" }',
      'iotHubs = ["e2e-lab.demo.local"]',
      '[[steps]]',
      'say = "Three devices."',
      'register = { group = "e2e-lab-group", count = 3, transport = "amqpWs" }',
      'expect = { status = "assigned", hub = "e2e-lab.demo.local" }',
    ].join('\n');
    await tid(page, 'scenario-upload').setInputFiles({ name: 'e2e-lab.toml', mimeType: 'text/plain', buffer: Buffer.from(file) });
    await waitForText(tid(page, 'scenario-added'), (t) => t.includes('E2E lab'), { what: 'the added scenario' });
    const card = page.locator('[data-testid="scenario"][data-name="e2e-lab"]');
    await card.waitFor({ state: 'visible' });
    assert.equal(await textOf(card.locator('[data-testid="scenario-own"]')), 'yours');
    await card.locator('[data-testid="scenario-run"]').click();
    await waitForText(card.locator('[data-testid="scenario-state"]'), 'passed', { what: 'the own scenario passed', timeout: 90000 });
    assert.equal((await svc.api('GET', '/enrollmentGroups/e2e-lab-group')).status, 200, 'the scenario made its group');
    await card.locator('[data-testid="scenario-delete"]').click();
    await card.waitFor({ state: 'detached', timeout: 30000 });
    assert.equal((await svc.api('GET', '/enrollmentGroups/e2e-lab-group')).status, 404, 'the delete reset what it made');
    const bad = file.replace('count = 3', 'count = 3000');
    await tid(page, 'scenario-upload').setInputFiles({ name: 'bad.toml', mimeType: 'text/plain', buffer: Buffer.from(bad) });
    await waitForText(tid(page, 'scenario-upload-error'), (t) => t.includes('1000'), { what: 'the refusal of a bad file' });
  });
});

test('an individual enrollment named on the page is made in place and its one device provisions', async () => {
  await withEvidence('simulate-create-in-place', con, async () => {
    const { page } = con;
    await goTo(page, 'simulate', 'Simulate');
    await tid(page, 'sim-attestation').selectOption('symmetricKey');
    await tid(page, 'sim-use').selectOption('enrollment');
    await tid(page, 'sim-group').fill('e2e-solo');
    if (!(await tid(page, 'sim-create').isChecked())) await tid(page, 'sim-create').click();
    const run = await start(page, { transport: 'https', count: '5' });
    await waitForText(stateOf(page, 'e2e-solo'), 'assigned', { what: 'the enrollment\'s device', timeout: 60000 });
    const api = await svc.call('GET', `/simulations/${run}`);
    assert.equal(api.devices.length, 1, 'an individual enrollment is one device');
    assert.equal(api.target, 'enrollment e2e-solo');
    assert.equal((await svc.call('GET', '/enrollments/e2e-solo')).attestation.type, 'symmetricKey', 'made in place');
    await tid(page, 'sim-group').fill('');
    await tid(page, 'sim-use').selectOption('group');
  });
});
