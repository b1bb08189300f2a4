'use strict';
// Scenario 7: a screenshot of every main page (light theme, 1280x800) over a service with realistic data —
// enrollments, a group, two more linked hubs, devices provisioned with the official SDK (and one refused), a
// verified CA, and a certificate chain in the inspector — plus one dark-theme screenshot.
// Saved to test-artifacts/e2e/<page>.png; copied to assets/screenshots/<page>.png with UPDATE_SCREENSHOTS=1.
// Each page's test also checks what the picture is meant to show.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { DPS_BIN, startService, randomKey } = require('./lib/service');
const { openConsole, tid, textOf, waitForText, waitUntil, signIn, goTo, scrollTopTo, screenshot, withEvidence } = require('./lib/browser');

let svc;
let con;
let certDir;
let group;
const HUBS = [
  { hostName: 'hub-westeurope.dps.local', allocationWeight: 2, region: 'westeurope' },
  { hostName: 'hub-eastus.dps.local', allocationWeight: 1, region: 'eastus' },
];
const ENROLLMENTS = ['thermostat-livingroom', 'thermostat-kitchen', 'door-sensor-front', 'camera-garage'];
const GROUP_ID = 'factory-line-a';
const GROUP_DEVICES = ['press-001', 'press-002', 'press-003', 'welder-001', 'welder-002'];
const derive = (key, id) => crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(id, 'utf8').digest('base64');

function dpsCert(args) {
  execFileSync(DPS_BIN, ['cert', ...args, '--out-dir', certDir], { stdio: 'pipe', timeout: 30000 });
}

before(async () => {
  svc = await startService({ label: 'e2e-shots' });
  certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dps-e2e-certs-'));
  dpsCert(['create-root', '--name', 'contoso-lab-root']);
  dpsCert(['create-intermediate', '--name', 'contoso-lab-intermediate',
    '--ca', path.join(certDir, 'contoso-lab-root.pem'), '--ca-key', path.join(certDir, 'contoso-lab-root.key.pem')]);
  dpsCert(['create-device', '--registration-id', 'sensor-x509-001',
    '--ca', path.join(certDir, 'contoso-lab-intermediate.chain.pem'), '--ca-key', path.join(certDir, 'contoso-lab-intermediate.key.pem')]);

  for (const h of HUBS) await svc.call('PUT', `/linkedHubs/${h.hostName}`, { ...h, applyAllocationPolicy: true });
  await svc.call('PUT', '/certificates/contoso-lab-root',
    { certificate: fs.readFileSync(path.join(certDir, 'contoso-lab-root.pem'), 'utf8'), isVerified: true });
  await svc.call('PUT', '/certificates/contoso-lab-intermediate',
    { certificate: fs.readFileSync(path.join(certDir, 'contoso-lab-intermediate.pem'), 'utf8'), isVerified: false });

  const individual = [];
  for (const [i, id] of ENROLLMENTS.entries()) {
    individual.push(await svc.createEnrollment(id, i === 3 ? { provisioningStatus: 'disabled' } : {}));
  }
  group = { primaryKey: randomKey(), secondaryKey: randomKey() };
  await svc.call('PUT', `/enrollmentGroups/${GROUP_ID}`, {
    enrollmentGroupId: GROUP_ID,
    attestation: { type: 'symmetricKey', symmetricKey: group },
  });
  for (const e of individual.slice(0, 3)) await svc.register(e.registrationId, e.primaryKey);
  for (const id of GROUP_DEVICES) await svc.register(id, derive(group.primaryKey, id));
  // One refused attempt (wrong key) so the chart shows a failure too.
  await svc.register('door-sensor-front', randomKey()).catch(() => {});

  con = await openConsole(svc);
  await signIn(con.page, svc);
});
after(async () => {
  if (con) await con.close();
  if (svc) await svc.stop();
  if (certDir) fs.rmSync(certDir, { recursive: true, force: true });
});

async function settle(page) {
  await page.evaluate(() => document.fonts.ready.then(() => true));
  const theme = await page.evaluate(() => document.documentElement.getAttribute('data-theme'));
  assert.equal(theme, 'light', 'screenshots are taken in the light theme');
}

const row = (page, kind, id) => page.locator(`[data-testid="${kind}-row"][data-id="${id}"]`);

test('screenshot: overview', async () => {
  await withEvidence('shot-overview', con, async () => {
    const { page } = con;
    await goTo(page, 'overview', 'Overview');
    await waitForText(tid(page, 'overview-id-scope'), svc.idScope);
    await waitForText(tid(page, 'overview-assigned-count'), (t) => /^\d+$/.test(t) && Number(t) >= 8,
      { timeout: 20000, what: 'overview-assigned-count ≥ 8' });
    await tid(page, 'chart-registrations').locator('svg').first().waitFor({ state: 'attached' });
    await tid(page, 'chart-hubs').locator('svg').first().waitFor({ state: 'attached' });
    await settle(page);
    await screenshot(page, 'overview');
  });
});

test('screenshot: enrollments', async () => {
  await withEvidence('shot-enrollments', con, async () => {
    const { page } = con;
    await goTo(page, 'enrollments', 'Enrollments');
    for (const id of ENROLLMENTS) await row(page, 'enrollment', id).waitFor({ state: 'visible' });
    await waitForText(tid(page, 'enrollment-count'), String(ENROLLMENTS.length));
    await settle(page);
    await screenshot(page, 'enrollments');
  });
});

test('screenshot: enrollment form', async () => {
  await withEvidence('shot-enrollment-form', con, async () => {
    const { page } = con;
    await goTo(page, 'enrollments', 'Enrollments');
    if (!(await tid(page, 'form-registration-id').isVisible())) await tid(page, 'enrollment-new').click();
    await tid(page, 'form-registration-id').fill('thermostat-bedroom');
    await tid(page, 'form-device-id').fill('thermostat-bedroom');
    await settle(page);
    await screenshot(page, 'enrollment-form');
    await tid(page, 'form-cancel').click();
    await tid(page, 'form-registration-id').waitFor({ state: 'detached' });
  });
});

test('screenshot: groups, with the derived-key calculator', async () => {
  await withEvidence('shot-groups', con, async () => {
    const { page } = con;
    await goTo(page, 'groups', 'Groups');
    await row(page, 'group', GROUP_ID).waitFor({ state: 'visible' });
    await row(page, 'group', GROUP_ID).click();
    await waitForText(tid(page, 'group-detail'), (t) => t.includes(GROUP_ID), { what: 'group-detail naming the group' });
    await settle(page);
    await screenshot(page, 'groups');
    // The calculator gives the key a device of this group signs with.
    await tid(page, 'derived-key-id').fill('press-004');
    await waitForText(tid(page, 'derived-key-value').first(), derive(group.primaryKey, 'press-004'),
      { what: 'derived-key-value = HMAC-SHA256(group primary key, "press-004")' });
  });
});

test('screenshot: registrations, with a decision trace', async () => {
  await withEvidence('shot-registrations', con, async () => {
    const { page } = con;
    await goTo(page, 'registrations', 'Registrations');
    for (const id of GROUP_DEVICES) await row(page, 'registration', id).waitFor({ state: 'visible' });
    await row(page, 'registration', 'press-001').click();
    const trace = tid(page, 'registration-trace');
    await waitForText(trace, (t) => HUBS.some((h) => t.includes(h.hostName)) || t.includes('local-hub.dps.local'),
      { what: 'registration-trace naming a hub' });
    await scrollTopTo(trace, 260); // the lower rows of the table and the trace below them
    await settle(page);
    await screenshot(page, 'registrations');
  });
});

test('screenshot: hubs, with allocation against weights', async () => {
  await withEvidence('shot-hubs', con, async () => {
    const { page } = con;
    await goTo(page, 'hubs', 'Hubs');
    for (const h of HUBS) await row(page, 'hub', h.hostName).waitFor({ state: 'visible' });
    await row(page, 'hub', 'local-hub.dps.local').waitFor({ state: 'visible' });
    await tid(page, 'chart-allocation').locator('svg').first().waitFor({ state: 'attached' });
    await settle(page);
    await screenshot(page, 'hubs');
  });
});

test('screenshot: certificates, with an inspected chain', async () => {
  await withEvidence('shot-certificates', con, async () => {
    const { page } = con;
    await goTo(page, 'certificates', 'Certificates');
    await row(page, 'ca', 'contoso-lab-root').waitFor({ state: 'visible' });
    await row(page, 'ca', 'contoso-lab-intermediate').waitFor({ state: 'visible' });
    await tid(page, 'inspect-input').setInputFiles([
      path.join(certDir, 'sensor-x509-001.pem'),
      path.join(certDir, 'contoso-lab-intermediate.pem'),
      path.join(certDir, 'contoso-lab-root.pem'),
    ]);
    await tid(page, 'inspect-run').click();
    const result = tid(page, 'inspect-result');
    await waitForText(result, (t) => t.includes('sensor-x509-001') && t.includes('contoso-lab-intermediate') && t.includes('contoso-lab-root'),
      { what: 'inspect-result listing the three certificates' });
    const verdict = await waitForText(tid(page, 'chain-verdict'), (t) => t.length > 0, { what: 'chain-verdict' });
    assert.ok(!/invalid|broken|fail/i.test(verdict), `a chain up to its root is reported valid: ${verdict}`);
    await scrollTopTo(tid(page, 'chain-verdict'), 380); // the inspector's input above, the verdict and first certificate below
    await settle(page);
    await screenshot(page, 'certificates');
  });
});

test('screenshot: logs', async () => {
  await withEvidence('shot-logs', con, async () => {
    const { page } = con;
    await goTo(page, 'logs', 'Logs');
    await waitUntil(async () => (await page.locator('[data-testid="log-entry"]', { hasText: 'press-001' }).count()) > 0,
      { message: 'a log-entry naming press-001' });
    await settle(page);
    await screenshot(page, 'logs');
  });
});

test('screenshot: settings', async () => {
  await withEvidence('shot-settings', con, async () => {
    const { page } = con;
    await goTo(page, 'settings', 'Settings');
    await waitForText(tid(page, 'settings-ports'), (t) => t.includes(String(svc.httpsPort)) && t.includes(String(svc.consolePort)),
      { what: 'settings-ports naming the HTTPS and console ports' });
    await page.locator('[data-testid="policy-row"][data-id="provisioningserviceowner"]').waitFor({ state: 'visible' });
    await settle(page);
    await screenshot(page, 'settings');
  });
});

test('screenshot: overview in the dark theme', async () => {
  await withEvidence('shot-dark', con, async () => {
    const { page } = con;
    await goTo(page, 'overview', 'Overview');
    await tid(page, 'theme-toggle').click();
    await waitUntil(async () => (await page.evaluate(() => document.documentElement.getAttribute('data-theme'))) === 'dark',
      { message: 'html[data-theme=dark] after theme-toggle' });
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = (bg.match(/\d+/g) || []).map(Number);
    assert.ok(r + g + b < 3 * 128, `the dark theme has a dark background: ${bg}`);
    await tid(page, 'chart-registrations').locator('svg').first().waitFor({ state: 'attached' });
    await page.evaluate(() => document.fonts.ready.then(() => true));
    await screenshot(page, 'overview-dark');
    await tid(page, 'theme-toggle').click();
    await waitUntil(async () => (await page.evaluate(() => document.documentElement.getAttribute('data-theme'))) === 'light',
      { message: 'html[data-theme=light] after a second theme-toggle' });
    assert.equal(await textOf(tid(page, 'page-title')), 'Overview');
  });
});
