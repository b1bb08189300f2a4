'use strict';
// Certificates from a CSR in the console (#16 item 8): a credential policy made on the Certificates page, simulated
// X.509 devices that request a certificate and register again with it (Simulate page), and the certificates the
// service issued listed on the Certificates page — each checked against the service API.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startService } = require('./lib/service');
const { openConsole, tid, textOf, waitForText, waitUntil, signIn, goTo, screenshot, withEvidence } = require('./lib/browser');

let svc;
let con;

before(async () => {
  svc = await startService({ label: 'e2e-csr' });
  con = await openConsole(svc);
  await signIn(con.page, svc);
});
after(async () => {
  if (con) await con.close();
  if (svc) await svc.stop();
});

test('a credential policy is made on the Certificates page', async () => {
  await withEvidence('csr-policy', con, async () => {
    const { page } = con;
    await goTo(page, 'certificates', 'Certificates');
    const form = tid(page, 'credential-policy-form');
    await form.locator('input[name="name"], [data-testid="policy-name"]').first().fill('line-7');
    await form.locator('input[type="number"]').first().fill('14');
    await form.locator('button[type="submit"]').click();
    await tid(page, 'policy-line-7').waitFor({ state: 'visible' });
    const row = await textOf(tid(page, 'policy-line-7'));
    assert.ok(row.includes('14'), `the row shows the validity: ${row}`);
    const api = await svc.call('GET', '/credentialPolicies/line-7');
    assert.equal(api.validityDays, 14);
    assert.equal(api.issuer, 'local');
  });
});

test('simulated X.509 devices get certificates that the Certificates page lists', async () => {
  await withEvidence('csr-issued', con, async () => {
    const { page } = con;
    await goTo(page, 'simulate', 'Simulate');
    await tid(page, 'sim-attestation').selectOption('x509');
    await tid(page, 'sim-transport').selectOption('mqtt');
    await tid(page, 'sim-count').fill('2');
    await tid(page, 'sim-fault').selectOption('none');
    if (!(await tid(page, 'sim-certificate').isChecked())) await tid(page, 'sim-certificate').click();
    const before = await svc.call('GET', '/simulations');
    await tid(page, 'sim-start').click();
    let run;
    await waitUntil(async () => {
      const now = await svc.call('GET', '/simulations');
      run = now.length > before.length ? now[0] : undefined;
      return Boolean(run) && run.counts && run.counts.assigned === 2;
    }, { message: 'two assigned devices', timeout: 60000 });
    const id = `${run.id}-1`;
    await page.locator(`[data-testid="sim-device"][data-id="${id}"] [data-testid="sim-device-open"]`).click();
    await waitForText(tid(page, 'sim-flow-certificate'), (t) => t.includes(`CN=${id} · serial `), { what: 'the issued certificate on the device panel' });

    await goTo(page, 'certificates', 'Certificates');
    await tid(page, `issued-${id}`).waitFor({ state: 'visible' });
    const issued = await svc.call('GET', `/issuedCertificates?registrationId=${id}`);
    assert.equal(issued.length, 1);
    const row = await textOf(tid(page, `issued-${id}`));
    assert.ok(row.includes(issued[0].info.serialNumber), `the row shows the serial number ${issued[0].info.serialNumber}: ${row}`);
    assert.ok(row.includes('simulated-devices'), `the row names the policy: ${row}`);
    await tid(page, 'issued-certificates').scrollIntoViewIfNeeded();
    await screenshot(page, 'certificates-issued');
  });
});
