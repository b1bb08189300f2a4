'use strict';
// Scenarios 1 and 8: sign in with the initial admin password (a wrong one first), the Overview shows the
// service's ID scope; sign out returns to the sign-in page and the service refuses the old session token.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startService } = require('./lib/service');
const { openConsole, tid, textOf, waitForText, signIn, sessionToken, withEvidence } = require('./lib/browser');

let svc;
let con;

before(async () => {
  svc = await startService({ label: 'e2e-signin' });
  con = await openConsole(svc);
});
after(async () => {
  if (con) await con.close();
  if (svc) await svc.stop();
});

test('sign-in: a wrong password is refused with a visible message, the initial password opens the Overview with the ID scope', async () => {
  await withEvidence('sign-in', con, async () => {
    const { page } = con;
    await page.goto(svc.consoleUrl);
    await tid(page, 'login-password').waitFor({ state: 'visible' });
    assert.equal(await tid(page, 'nav-overview').count(), 0, 'the navigation must not show before sign-in');

    await tid(page, 'login-password').fill(`${svc.password}-wrong`);
    await tid(page, 'login-submit').click();
    await tid(page, 'login-error').waitFor({ state: 'visible' });
    const message = await textOf(tid(page, 'login-error'));
    assert.ok(message.length > 0, 'login-error must say what went wrong');
    assert.ok(!/^\s*[{[]/.test(message), `login-error must be a sentence, not raw JSON: ${message}`);
    assert.equal(await sessionToken(page), '', 'no session is kept after a refused sign-in');
    assert.equal(await tid(page, 'page-title').count(), 0, 'still on the sign-in page');

    await tid(page, 'login-password').fill(svc.password);
    await tid(page, 'login-submit').click();
    await waitForText(tid(page, 'page-title'), 'Overview', { what: 'Overview heading after sign-in' });
    await waitForText(tid(page, 'overview-id-scope'), svc.idScope, { what: 'overview-id-scope' });
    assert.equal(await tid(page, 'login-error').count(), 0, 'the error is gone once signed in');
    const token = await sessionToken(page);
    assert.ok(token.length > 0, 'the session token is kept in sessionStorage');
    const local = await page.evaluate(() => JSON.stringify(Object.assign({}, localStorage)));
    assert.ok(!local.includes(token), 'the session token must not be in localStorage');
  });
});

test('sign-out: returns to the sign-in page and the service refuses the old token', async () => {
  await withEvidence('sign-out', con, async () => {
    const { page } = con;
    if ((await tid(page, 'signout').count()) === 0) await signIn(page, svc);
    const token = await sessionToken(page);
    assert.ok(token, 'signed in with a session token');
    const before = await svc.bearer(token, 'GET', '/service/info');
    assert.equal(before.status, 200, `the session works before sign-out: HTTP ${before.status} ${before.text}`);
    assert.equal(before.body.idScope, svc.idScope);

    await tid(page, 'signout').click();
    await tid(page, 'login-password').waitFor({ state: 'visible' });
    assert.equal(await tid(page, 'page-title').count(), 0, 'no page is shown after sign-out');
    assert.equal(await sessionToken(page), '', 'the session is removed from sessionStorage');

    const afterSignOut = await svc.bearer(token, 'GET', '/service/info');
    assert.equal(afterSignOut.status, 401, `the old token must be refused after sign-out: HTTP ${afterSignOut.status} ${afterSignOut.text}`);

    // Reloading does not bring the session back.
    await page.reload();
    await tid(page, 'login-password').waitFor({ state: 'visible' });
  });
});
