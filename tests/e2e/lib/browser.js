'use strict';
// The browser side of the suite: Debian's Chromium driven by playwright-core (no browser download), trusting
// the service's own root CA, plus the helpers every test uses (sign-in, navigation, waiting for conditions,
// screenshots).
//
// Trust: Chromium on Linux reads trust anchors from an NSS database, not from a flag, so the suite pins the
// service's CA instead: `--ignore-certificate-errors-spki-list=<base64 SHA-256 of the CA's SubjectPublicKeyInfo>`
// accepts a chain that contains a certificate with that key. The service sends its server certificate
// followed by its CA, so only that service's chain is accepted; any other certificate error still fails the
// page load (Playwright's ignoreHTTPSErrors is not used).

const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts', 'e2e');
const README_SHOTS = path.join(REPO_ROOT, 'assets', 'screenshots');
const VIEWPORT = { width: 1280, height: 800 };
// Generous: two cores shared by the service, Chromium and the test.
const STEP_TIMEOUT_MS = Number(process.env.E2E_STEP_TIMEOUT_MS || 30000);

fs.mkdirSync(ARTIFACTS, { recursive: true });

/** Poll `fn` until it returns a truthy value (returned) or `timeout` ms pass (throws with `message()`). */
async function waitUntil(fn, { timeout = STEP_TIMEOUT_MS, interval = 250, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) { lastErr = e; }
    if (Date.now() > deadline) {
      const m = typeof message === 'function' ? message(last) : message;
      throw new Error(`timed out after ${timeout} ms waiting for ${m}${lastErr ? ` (last error: ${lastErr.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/**
 * Launch Chromium trusting `svcs`' CAs and open one page on a 1280x800 light-theme context.
 * Returns a Console: { browser, context, page, svc, consoleErrors, close() }.
 */
async function openConsole(svc, { extraServices = [] } = {}) {
  const spkis = [svc, ...extraServices].map((s) => s.caSpki).join(',');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spkis}`,
    ],
  });
  const context = await browser.newContext({
    viewport: VIEWPORT,
    colorScheme: 'light',
    locale: 'en-GB',
    timezoneId: 'UTC',
    acceptDownloads: true,
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();
  const consoleErrors = [];
  // Uncaught exceptions and Rust panics in the wasm app: any of these fails the running test.
  const crashes = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    consoleErrors.push(m.text());
    if (/panicked at|RuntimeError|unreachable executed/i.test(m.text())) crashes.push(m.text());
  });
  page.on('pageerror', (e) => { consoleErrors.push(`pageerror: ${e.message}`); crashes.push(`pageerror: ${e.message}`); });
  return {
    browser, context, page, svc, consoleErrors, crashes,
    close: async () => { await browser.close().catch(() => {}); },
  };
}

const tid = (page, id) => page.getByTestId(id);

/** Text of a locator, trimmed ('' when absent). */
async function textOf(locator) {
  if ((await locator.count()) === 0) return '';
  return ((await locator.first().textContent()) || '').trim();
}

/** Wait until the locator's text satisfies `pred` (string: equals; RegExp: matches; function). Returns the text. */
async function waitForText(locator, pred, { timeout = STEP_TIMEOUT_MS, what = String(locator) } = {}) {
  const ok = typeof pred === 'string' ? (t) => t === pred : pred instanceof RegExp ? (t) => pred.test(t) : pred;
  let seen = '';
  await waitUntil(async () => { seen = await textOf(locator); return ok(seen); },
    { timeout, message: () => `${what} to have text ${pred} (last seen: ${JSON.stringify(seen)})` });
  return seen;
}

/** Open the console's root, sign in with the password, and wait for the Overview. */
async function signIn(page, svc, password = svc.password) {
  await page.goto(svc.consoleUrl);
  await tid(page, 'login-password').fill(password);
  await tid(page, 'login-submit').click();
  await waitForText(tid(page, 'page-title'), 'Overview', { what: 'page-title after sign-in' });
}

/** Click `nav-<name>` and wait for the page heading. */
async function goTo(page, name, title) {
  await tid(page, `nav-${name}`).click();
  await waitForText(tid(page, 'page-title'), title, { what: `page-title of ${name}` });
  await page.evaluate(() => window.scrollTo(0, 0)); // the document keeps its scroll position across hash pages
}

/** The console session token the page keeps in sessionStorage ('' when signed out). */
async function sessionToken(page) {
  return page.evaluate(() => {
    try { return JSON.parse(sessionStorage.getItem('dps-console-session') || '{}').token || ''; } catch (_) { return ''; }
  });
}

/** Scroll the window so the top of `locator` sits `y` px below the top of the viewport (frames a screenshot). */
async function scrollTopTo(locator, y) {
  await locator.first().evaluate((el, offset) => {
    window.scrollBy(0, el.getBoundingClientRect().top - offset);
  }, y);
}

/**
 * Save a 1280x800 screenshot to test-artifacts/e2e/<name>.png; with UPDATE_SCREENSHOTS=1 also copy it to
 * assets/screenshots/<name>.png (the README's pictures). Returns the artifact path.
 */
async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false, animations: 'disabled', caret: 'hide' });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    fs.mkdirSync(README_SHOTS, { recursive: true });
    fs.copyFileSync(file, path.join(README_SHOTS, `${name}.png`));
  }
  return file;
}

/**
 * Run a test body; it fails if the page threw an uncaught exception or the wasm app panicked meanwhile. On
 * failure save test-artifacts/e2e/failure-<name>.png and add the page's console errors and the service log's
 * tail to the error message.
 */
async function withEvidence(name, con, fn) {
  const safe = name.replace(/[^a-z0-9-]+/gi, '-').toLowerCase();
  fs.rmSync(path.join(ARTIFACTS, `failure-${safe}.png`), { force: true }); // a previous run's
  const crashesBefore = con ? con.crashes.length : 0;
  try {
    const out = await fn();
    if (con && con.crashes.length > crashesBefore) {
      throw new Error(`the page crashed or threw during the test:\n${con.crashes.slice(crashesBefore).join('\n')}`);
    }
    return out;
  } catch (e) {
    let extra = '';
    if (con && con.page) {
      try { await con.page.screenshot({ path: path.join(ARTIFACTS, `failure-${safe}.png`) }); extra += `\n[screenshot: test-artifacts/e2e/failure-${safe}.png]`; } catch (_) { /* page gone */ }
      if (con.consoleErrors.length) extra += `\n[page console errors]\n${con.consoleErrors.slice(-10).join('\n')}`;
    }
    if (con && con.svc) {
      try { extra += `\n[service log tail]\n${fs.readFileSync(con.svc.logFile, 'utf8').split('\n').slice(-15).join('\n')}`; } catch (_) { /* none */ }
    }
    if (extra && e && typeof e.message === 'string') e.message += extra;
    throw e;
  }
}

module.exports = {
  ARTIFACTS, README_SHOTS, VIEWPORT, STEP_TIMEOUT_MS,
  openConsole, tid, textOf, waitForText, waitUntil, signIn, goTo, sessionToken, scrollTopTo, screenshot, withEvidence,
};
