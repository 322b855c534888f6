#!/usr/bin/env node
// Browser test of the page the REST port serves at /: in headless Chromium
// (Debian's chromium driven by playwright-core) it starts an export through
// the form, follows the live progress to FINISHED, checks the download link,
// then submits invalid input and checks the field violations shown.
// Screenshots go to clients/browser/artifacts/ (git-ignored).
//
//   (cd clients && npm ci) && node clients/browser/browser-test.mjs [REST_URL]   # default http://127.0.0.1:8080
import {chromium} from 'playwright-core';
import {mkdirSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const rest = process.argv[2] || process.env.CWPEXPORT_REST || 'http://127.0.0.1:8080';
const artifacts = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
mkdirSync(artifacts, {recursive: true});

function fail(msg) {
  throw new Error(msg);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});
try {
  const page = await browser.newPage({viewport: {width: 900, height: 900}});
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(rest)) foreign.push(r.url()); });
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  await page.goto(rest + '/');
  if ((await page.title()) !== 'CWP license export') fail('unexpected title ' + (await page.title()));

  // 1. An export with a filter and a tag, followed live to FINISHED.
  await page.click('#add-filter');
  await page.selectOption('#filters .filter select', 'LicenseType');
  await page.fill('#filters .filter [name=values]', '1, 2');
  await page.click('#add-tag');
  await page.fill('#tags .tag [name=key]', 'env');
  await page.click('#start');
  await page.waitForFunction(() => document.getElementById('state').textContent === 'PENDING', null, {timeout: 15000});
  const pendingPolls = await page.textContent('#polls');
  console.log(`live: task ${await page.textContent('#task-id')} PENDING, polls ${pendingPolls}, next poll ${await page.textContent('#next-poll')}`);
  // The elapsed time moves between messages while the task is pending.
  const e1 = await page.textContent('#elapsed');
  await page.waitForTimeout(300);
  const [e2, stillPending] = await page.evaluate(() =>
    [document.getElementById('elapsed').textContent, document.getElementById('state').textContent === 'PENDING']);
  if (stillPending && e1 === e2) fail(`elapsed stayed at ${e1} while the task was pending`);
  await page.waitForFunction(() => document.getElementById('state').textContent === 'FINISHED', null, {timeout: 30000});
  const polls = Number(await page.textContent('#polls'));
  const elapsed = await page.textContent('#elapsed');
  const href = await page.getAttribute('#download-link', 'href');
  console.log(`FINISHED after ${polls} polls, ${elapsed}; download ${href}`);
  if (!(polls >= 1)) fail('FINISHED with ' + polls + ' polls');
  if (!(await page.isVisible('#download-link')) || !href || !href.endsWith(':download')) fail('no download link through the service: ' + href);
  if (await page.isVisible('#error')) fail('an error is shown: ' + (await page.textContent('#error')));
  await page.screenshot({path: join(artifacts, 'finished.png'), fullPage: true});
  const file = await fetch(new URL(href, rest));
  const csv = await file.text();
  if (file.status !== 200 || !csv.startsWith('LicenseId,')) fail(`download link answered ${file.status}: ${csv.slice(0, 80)}`);

  // 2. Invalid input: the service's field violations are listed.
  await page.fill('#filters .filter [name=values]', ' , ');
  await page.fill('#export-month', '2026-13');
  await page.click('#start');
  await page.waitForSelector('#error:not([hidden])', {timeout: 10000});
  const message = await page.textContent('#error-message');
  const violations = await page.$$eval('#violations li', (lis) => lis.map((li) => li.textContent));
  console.log('error shown: ' + message);
  for (const v of violations) console.log('  ' + v);
  if (!message.startsWith('INVALID_ARGUMENT')) fail('error message ' + message);
  for (const field of ['filters[0].values', 'export_month']) {
    if (!violations.some((v) => v.startsWith(field + ' '))) fail('no violation shown for ' + field);
  }
  await page.screenshot({path: join(artifacts, 'invalid.png'), fullPage: true});

  if (foreign.length) fail('the page loaded from elsewhere: ' + foreign.join(', '));
  if (consoleErrors.some((e) => !e.includes('400'))) fail('console errors: ' + consoleErrors.join('; '));
  console.log('browser test: OK (screenshots in ' + artifacts + ')');
} finally {
  await browser.close();
}
