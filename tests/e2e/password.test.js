'use strict';
// #14 item 5: the admin password changes on the Settings page only with the current password; a wrong one is
// refused with a visible message and changes nothing; the right one changes it, ends the session, removes the
// initial password file, and the new password signs in.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startService } = require('./lib/service');
const { openConsole, tid, textOf, waitForText, signIn, goTo, withEvidence } = require('./lib/browser');

/** A sign-in from the console's own page (same origin), returning the HTTP status. */
async function fetchLogin(page, password) {
  return page.evaluate(async (p) => {
    const r = await fetch('/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ password: p }) });
    return r.status;
  }, password);
}

let svc;
let con;

before(async () => {
  svc = await startService({ label: 'e2e-password' });
  con = await openConsole(svc);
});
after(async () => {
  if (con) await con.close();
  if (svc) await svc.stop();
});

test('password change: needs the current password, then the new one signs in', async () => {
  await withEvidence('password-change', con, async () => {
    const { page } = con;
    await signIn(page, svc);
    await goTo(page, 'settings', 'Settings');
    const next = 'a brand new admin password';

    await tid(page, 'password-current').fill(`${svc.password}-wrong`);
    await tid(page, 'password-new').fill(next);
    await tid(page, 'password-confirm').fill(next);
    await tid(page, 'password-submit').click();
    await waitForText(tid(page, 'password-result'), /not changed/, { what: 'password-result after a wrong current password' });
    assert.ok(fs.existsSync(path.join(svc.dataDir, 'initial-admin-password')), 'nothing changed');

    await tid(page, 'password-current').fill(svc.password);
    await tid(page, 'password-new').fill(next);
    await tid(page, 'password-confirm').fill(next);
    await tid(page, 'password-submit').click();
    await waitForText(tid(page, 'password-result'), /^Password changed/, { what: 'password-result after the change' });
    assert.ok(!fs.existsSync(path.join(svc.dataDir, 'initial-admin-password')), 'the initial password file is removed');

    // Every session ended: the old password is refused, the new one signs in.
    await page.evaluate(() => sessionStorage.clear());
    const old = await fetchLogin(page, svc.password);
    assert.equal(old, 401, 'the initial password no longer signs in');
    await signIn(page, svc, next);
    const message = await textOf(tid(page, 'page-title'));
    assert.equal(message, 'Overview');
  });
});
