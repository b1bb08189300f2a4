'use strict';
// Scenario 6: export the enrollments as CSV from one service's console (a real browser download), import the
// file into a FRESH service's console, and check the enrollments are there with the same keys — a device
// provisions on the fresh service with its original key (official Node SDK).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startService, uid, DEFAULT_HUB } = require('./lib/service');
const { ARTIFACTS, openConsole, tid, waitForText, waitUntil, signIn, goTo, withEvidence } = require('./lib/browser');

const COUNT = 3;
let source;
let target;
let sourceCon;
let targetCon;
let originals; // [{ registrationId, primaryKey, secondaryKey, deviceId? }]
let csvFile;

before(async () => {
  source = await startService({ label: 'e2e-export' });
  originals = [];
  for (let i = 0; i < COUNT; i += 1) {
    const registrationId = uid(`e2e-export-${i}`);
    const extra = i === 1 ? { deviceId: `${registrationId}-device` } : {};
    originals.push(await source.createEnrollment(registrationId, extra));
  }
});
after(async () => {
  for (const c of [sourceCon, targetCon]) if (c) await c.close();
  for (const s of [source, target]) if (s) await s.stop();
});

/** Split one CSV line into fields (RFC 4180 quoting). */
function csvFields(line) {
  const out = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') { cur += '"'; i += 1; } else if (c === '"') quoted = false; else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { out.push(cur); cur = ''; } else cur += c;
  }
  out.push(cur);
  return out;
}

test('export CSV: the download has a header and every enrollment', async () => {
  sourceCon = await openConsole(source);
  await withEvidence('export-csv', sourceCon, async () => {
    const { page } = sourceCon;
    await signIn(page, source);
    await goTo(page, 'enrollments', 'Enrollments');
    await waitForText(tid(page, 'enrollment-count'), String(COUNT), { what: 'enrollment-count' });

    const [download] = await Promise.all([page.waitForEvent('download'), tid(page, 'enrollment-export-csv').click()]);
    assert.match(download.suggestedFilename(), /\.csv$/i, `suggested file name ${download.suggestedFilename()}`);
    csvFile = path.join(ARTIFACTS, 'enrollments-export.csv');
    await download.saveAs(csvFile);
    const text = fs.readFileSync(csvFile, 'utf8');
    const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
    assert.ok(lines.length >= COUNT + 1, `header + ${COUNT} rows expected, got ${lines.length}:\n${text}`);
    const header = csvFields(lines[0]).map((h) => h.trim());
    assert.ok(header.some((h) => /registration.?id/i.test(h)), `the header names the registration id column: ${lines[0]}`);
    for (const h of header) assert.ok(!originals.some((o) => h === o.registrationId), 'the first line is a header, not a row');
    for (const o of originals) {
      const line = lines.find((l) => csvFields(l).includes(o.registrationId));
      assert.ok(line, `the CSV has a row for ${o.registrationId}:\n${text}`);
      assert.ok(csvFields(line).includes(o.primaryKey), `the row of ${o.registrationId} carries its primary key`);
    }
  });
});

test('import CSV into a fresh service: every enrollment arrives with its keys, and a device provisions with its original key', async () => {
  assert.ok(csvFile && fs.existsSync(csvFile), 'the export test produced a CSV file');
  target = await startService({ label: 'e2e-import' });
  assert.notEqual(target.idScope, source.idScope, 'a different service');
  targetCon = await openConsole(target);
  await withEvidence('import-csv', targetCon, async () => {
    const { page } = targetCon;
    await signIn(page, target);
    await goTo(page, 'enrollments', 'Enrollments');
    await waitForText(tid(page, 'enrollment-count'), '0', { what: 'enrollment-count of the fresh service' });

    await tid(page, 'enrollment-import').setInputFiles(csvFile);
    await waitForText(tid(page, 'import-result'), (t) => /imported\s+\d+,\s*failed\s+\d+/i.test(t), { timeout: 60000, what: 'import-result' });
    const result = (await tid(page, 'import-result').textContent()).trim();
    assert.match(result, new RegExp(`imported\\s+${COUNT},\\s*failed\\s+0`, 'i'), `import-result: ${result}`);

    // The list shows them (the page refreshes after an import).
    for (const o of originals) {
      await page.locator(`[data-testid="enrollment-row"][data-id="${o.registrationId}"]`).waitFor({ state: 'visible' });
    }
    await waitForText(tid(page, 'enrollment-count'), String(COUNT), { what: 'enrollment-count after import' });

    // The service has them, same keys, same device id.
    for (const o of originals) {
      const doc = await target.call('GET', `/enrollments/${encodeURIComponent(o.registrationId)}`);
      assert.equal(doc.attestation.type, 'symmetricKey');
      assert.equal(doc.attestation.symmetricKey.primaryKey, o.primaryKey, `${o.registrationId} primary key`);
      assert.equal(doc.attestation.symmetricKey.secondaryKey, o.secondaryKey, `${o.registrationId} secondary key`);
      assert.equal(doc.deviceId || undefined, o.doc.deviceId || undefined, `${o.registrationId} device id`);
    }

    // A device of the exported service provisions on the new one with the key it always had.
    const device = originals[1];
    const reg = await target.register(device.registrationId, device.primaryKey);
    assert.equal(reg.status, 'assigned', JSON.stringify(reg));
    assert.equal(reg.assignedHub, DEFAULT_HUB);
    assert.equal(reg.deviceId, `${device.registrationId}-device`);
    await waitUntil(async () => (await target.api('GET', `/registrations/${encodeURIComponent(device.registrationId)}`)).status === 200,
      { message: 'the registration record on the fresh service' });
  });
});
