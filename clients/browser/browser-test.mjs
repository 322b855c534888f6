#!/usr/bin/env node
// Browser test of the console page the REST port serves at /, in headless
// Chromium (Debian's chromium driven by playwright-core), against services
// it starts itself: the cloud emulator (cmd/cwp-emulator, tasks pending
// until the test ends them) and cwpexportd pointed at it, once without
// tokens (then stopped and started again on the same ports and data
// directory) and once with tokens.
//
// It checks: the list of exports newest first, its state filter and paging,
// states updating live; an export started from the form followed over a
// real EventSource to FINISHED and downloaded; field violations next to the
// form; the budget chart's non-zero calls; the followed stream resuming
// after a restart of the service, and after a SIGKILL behind a load
// balancer that answers 502 meanwhile (no second export; the list and the
// budget recover); and with tokens, one question for the
// token, kept in sessionStorage, the stream read with fetch and the header.
// Screenshots of each view go to clients/browser/artifacts/ (git-ignored).
//
//   (cd clients && npm ci) && node clients/browser/browser-test.mjs
//
// It builds the two commands with `go build` unless CWPEXPORTD_BIN and
// CWP_EMULATOR_BIN name them. A REST URL argument, as other clients take,
// is ignored: this test must restart the service it talks to.
import {chromium} from 'playwright-core';
import {spawn, execFileSync} from 'node:child_process';
import {mkdirSync, mkdtempSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {randomBytes} from 'node:crypto';
import {createInterface} from 'node:readline';
import http from 'node:http';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const artifacts = join(here, 'artifacts');
mkdirSync(artifacts, {recursive: true});
const work = mkdtempSync(join(tmpdir(), 'cwpexport-browser-'));

const fail = (msg) => {
  throw new Error(msg);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log(...a);

// ---- Processes.

let bins = {cwpexportd: process.env.CWPEXPORTD_BIN, emulator: process.env.CWP_EMULATOR_BIN};
if (!bins.cwpexportd || !bins.emulator) {
  log('building cwpexportd and cwp-emulator');
  execFileSync('go', ['build', '-o', work + '/', './cmd/cwpexportd', './cmd/cwp-emulator'], {cwd: root, stdio: 'inherit'});
  bins = {cwpexportd: join(work, 'cwpexportd'), emulator: join(work, 'cwp-emulator')};
}
const secretId = 'AKIDbrowser' + randomBytes(12).toString('hex');
const cloudEnv = {...process.env, TENCENTCLOUD_SECRET_ID: secretId, TENCENTCLOUD_SECRET_KEY: randomBytes(16).toString('hex')};
const procs = new Set();

// run starts a command and resolves with the first output line `ready`
// recognises (its return value), failing if the process exits first.
function run(cmd, args, env, ready, name) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, {env, stdio: ['ignore', 'pipe', 'pipe']});
    procs.add(p);
    const out = [];
    let found = false;
    p.exited = new Promise((r) => p.on('exit', (code, sig) => {
      procs.delete(p);
      r(code ?? sig);
    }));
    p.exited.then((code) => {
      if (!found) reject(new Error(`${name} exited (${code}) before it was ready:\n${out.join('\n')}`));
    });
    for (const s of [p.stdout, p.stderr]) {
      createInterface({input: s}).on('line', (line) => {
        out.push(line);
        if (found) return;
        const v = ready(line);
        if (v) {
          found = true;
          resolve({proc: p, ...v});
        }
      });
    }
  });
}

async function stop(p) {
  p.kill('SIGTERM');
  const code = await p.exited;
  if (code !== 0) fail('a process stopped with ' + code);
}

async function startEmulator() {
  const emu = await run(bins.emulator, ['-listen', '127.0.0.1:0', '-pending', '-1s'], cloudEnv,
    (line) => (line.includes('cwp emulator listening') ? {addr: /addr=(\S+)/.exec(line)[1]} : null), 'cwp-emulator');
  emu.url = 'http://' + emu.addr;
  return emu;
}

// startService starts cwpexportd on the emulator; the same addresses and
// data directory make a restart. Binding a port just given up may take a
// moment on a busy machine: retried for a while.
async function startService(emu, {dataDir, grpc = '127.0.0.1:0', rest = '127.0.0.1:0', tokens = ''}) {
  const env = {...cloudEnv};
  if (tokens) env.CWPEXPORT_TOKENS = tokens;
  const args = ['-grpc-addr', grpc, '-rest-addr', rest, '-metrics-addr', '127.0.0.1:0', '-data-dir', dataDir, '-log-format', 'json',
    '-cloud-endpoint', emu.addr, '-cloud-scheme', 'HTTP', '-insecure-allow-private-cloud', '-min-poll-interval', '300ms', '-heartbeat', '1s'];
  for (let attempt = 1; ; attempt++) {
    try {
      return await run(bins.cwpexportd, args, env, (line) => {
        if (!line.includes('"msg":"serving"')) return null;
        const j = JSON.parse(line);
        return {grpc: j.grpc, rest: j.rest, dataDir};
      }, 'cwpexportd');
    } catch (err) {
      if (attempt >= 20 || !/address already in use/.test(err.message)) throw err;
      await sleep(250);
    }
  }
}

// ---- REST and emulator calls made by the test itself.

async function rest(svc, path, {method = 'GET', body, tok} = {}) {
  const headers = {'Content-Type': 'application/json'};
  if (tok) headers.Authorization = 'Bearer ' + tok;
  const r = await fetch(svc.rest + path, {method, headers, body: body && JSON.stringify(body)});
  const j = await r.json();
  if (!r.ok) fail(`${method} ${path}: ${r.status} ${JSON.stringify(j)}`);
  return j;
}

async function endTask(emu, id, how) {
  const r = await fetch(`${emu.url}/_emulator/tasks/${id}/${how}`, {method: 'POST'});
  if (!r.ok) fail(`emulator ${how} ${id}: ${r.status} ${await r.text()}`);
}

// startBalancer stands in for an L7 load balancer in front of the
// service's REST port, as a fleet has: it forwards each request and streams
// the answer, cuts the answer when the replica's connection breaks, and
// answers 502 Bad Gateway with a page of its own while no replica can be
// reached, as nginx or Envoy do. `refused` counts those 502s.
async function startBalancer(target) {
  const up = new URL(target);
  const lb = {refused: 0};
  const server = http.createServer((req, res) => {
    const fwd = http.request({host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers}, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
      r.on('close', () => {
        if (!r.complete) res.destroy();
      });
    });
    fwd.on('error', () => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      lb.refused++;
      res.writeHead(502, {'Content-Type': 'text/html'});
      res.end('<html><body><h1>502 Bad Gateway</h1></body></html>');
    });
    req.pipe(fwd);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  lb.url = 'http://127.0.0.1:' + server.address().port;
  lb.close = () => {
    server.closeAllConnections();
    server.close();
  };
  return lb;
}

// ---- The browser.

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});

// watchPage records what a page did that the test checks at the end.
function watchPage(page, origin) {
  const seen = {foreign: [], errors: [], streams: [], exportBodies: [], urls: [], budgetAnswers: []};
  page.on('request', (r) => {
    seen.urls.push(r.url());
    if (!r.url().startsWith(origin)) seen.foreign.push(r.url());
    if (r.url().endsWith(':watch')) seen.streams.push(r);
    if (r.url().endsWith('/v1/license-detail:export') && r.method() === 'POST') seen.exportBodies.push(r.postDataJSON());
  });
  page.on('response', (r) => {
    if (r.url().endsWith('/v1/budget') && r.ok()) seen.budgetAnswers.push(Date.now());
  });
  page.on('console', (m) => {
    // Refusals the test provokes (400, 401), a stopped service and the
    // balancer's 502 while no replica is up are expected; anything else is
    // not.
    if (m.type() === 'error' && !/status of 40[01]|status of 502|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET|ERR_INCOMPLETE_CHUNKED_ENCODING/.test(m.text())) {
      seen.errors.push(m.text());
    }
  });
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  return seen;
}

const text = (page, sel) => page.textContent(sel).then((t) => t.trim());
const rowIds = (page) => page.$$eval('#export-rows tr', (trs) => trs.map((tr) => tr.dataset.taskId));
const rowStates = (page) => page.$$eval('#export-rows tr', (trs) => trs.map((tr) => tr.querySelector('.state').textContent));
const shot = (page, name) => page.screenshot({path: join(artifacts, name), fullPage: true});
const waitText = (page, sel, want, timeout = 20000) =>
  page.waitForFunction(([s, w]) => document.querySelector(s)?.textContent.trim() === w, [sel, want], {timeout})
    .catch(async () => fail(`${sel} shows "${await text(page, sel)}", not "${want}", after ${timeout} ms`));
const seqOf = (id) => Number(id.slice(id.lastIndexOf(':') + 1));

let emu;
let svc;
try {
  emu = await startEmulator();
  svc = await startService(emu, {dataDir: join(work, 'data')});
  log(`emulator ${emu.url}; service REST ${svc.rest}, gRPC ${svc.grpc}`);

  // Seven exports: four finished, one failed, two pending.
  const ids = [];
  for (let i = 0; i < 7; i++) {
    ids.push((await rest(svc, '/v1/license-detail:export', {method: 'POST', body: {filters: [{name: 'Keywords', values: ['seed' + i]}]}})).task.taskId);
  }
  for (const id of ids.slice(0, 4)) await endTask(emu, id, 'finish');
  await endTask(emu, ids[4], 'fail');
  // Read them until the service has observed the ends (rather than wait
  // for the registry's next background poll).
  for (const id of ids.slice(0, 5)) {
    for (let i = 0; (await rest(svc, '/v1/export-tasks/' + id)).task.state === 'EXPORT_TASK_STATE_PENDING'; i++) {
      if (i > 100) fail(`task ${id} still pending`);
      await sleep(200);
    }
  }

  const page = await browser.newPage({viewport: {width: 1280, height: 1000}, acceptDownloads: true});
  const seen = watchPage(page, svc.rest);
  await page.goto(svc.rest + '/');
  if ((await page.title()) !== 'CWP license export') fail('unexpected title ' + (await page.title()));

  // 1. The list: newest first, states as the cloud reported them.
  await page.waitForFunction((n) => document.querySelectorAll('#export-rows tr').length === n, ids.length, {timeout: 15000});
  const listed = await rowIds(page);
  if (listed.join() !== [...ids].reverse().join()) fail(`list order ${listed}, want ${[...ids].reverse()}`);
  const want = ['PENDING', 'PENDING', 'ERROR', 'FINISHED', 'FINISHED', 'FINISHED', 'FINISHED'];
  await page.waitForFunction((w) => [...document.querySelectorAll('#export-rows .state')].map((s) => s.textContent).join() === w,
    want.join(), {timeout: 15000}).catch(async () => fail(`list states ${await rowStates(page)}, want ${want}`));
  const states = await rowStates(page);
  log(`list: ${listed.length} exports newest first: ${states.join(' ')}`);
  await shot(page, 'list.png');

  // States update live: a pending task ends in the cloud; the page shows it
  // without a reload (the registry polls it in the background).
  await endTask(emu, ids[5], 'finish');
  await page.waitForFunction((id) => document.querySelector(`#export-rows tr[data-task-id="${id}"] .state`)?.textContent === 'FINISHED',
    ids[5], {timeout: 30000}).catch(() => fail(`task ${ids[5]} did not turn FINISHED in the list`));
  log(`list: task ${ids[5]} turned FINISHED without a reload`);

  // 2. The state filter.
  await page.selectOption('#state-filter', 'EXPORT_TASK_STATE_FINISHED');
  await page.waitForFunction(() => [...document.querySelectorAll('#export-rows .state')].every((s) => s.textContent === 'FINISHED') &&
    document.querySelectorAll('#export-rows tr').length === 5, null, {timeout: 10000}).catch(() => fail('the FINISHED filter'));
  await shot(page, 'filter-finished.png');
  await page.selectOption('#state-filter', 'EXPORT_TASK_STATE_ERROR');
  await page.waitForFunction((id) => document.querySelectorAll('#export-rows tr').length === 1 &&
    document.querySelector('#export-rows tr').dataset.taskId === id, ids[4], {timeout: 10000}).catch(() => fail('the ERROR filter'));
  await page.selectOption('#state-filter', '');
  log('filter: FINISHED shows 5, ERROR shows 1');

  // 3. Paging: five per page.
  await page.selectOption('#page-size', '5');
  await page.waitForFunction(() => document.querySelectorAll('#export-rows tr').length === 5, null, {timeout: 10000});
  const page1 = await rowIds(page);
  if (await page.isDisabled('#next-page')) fail('no next page with 7 exports and 5 per page');
  await page.click('#next-page');
  await waitText(page, '#page-label', 'Page 2');
  await page.waitForFunction(() => document.querySelectorAll('#export-rows tr').length === 2, null, {timeout: 10000});
  const page2 = await rowIds(page);
  await shot(page, 'paging.png');
  if ([...page1, ...page2].join() !== [...ids].reverse().join()) fail(`pages ${page1} | ${page2}`);
  if (!(await page.isDisabled('#next-page'))) fail('a next page after the last');
  await page.click('#prev-page');
  await waitText(page, '#page-label', 'Page 1');
  await page.waitForFunction((first) => document.querySelector('#export-rows tr')?.dataset.taskId === first, page1[0]);
  await page.selectOption('#page-size', '20');
  log(`paging: ${page1} | ${page2}`);

  // 4. An export from the form, followed over EventSource, downloaded.
  await page.click('#add-filter');
  await page.selectOption('#filters .filter select', 'LicenseType');
  await page.fill('#filters .filter [name=values]', '1, 2');
  await page.click('#add-tag');
  await page.fill('#tags .tag [name=key]', 'env');
  await page.click('#start');
  await waitText(page, '#state', 'PENDING');
  await waitText(page, '#conn-state', 'live');
  const taskId = await text(page, '#detail-task');
  if ((await page.getAttribute('#detail', 'data-transport')) !== 'eventsource') fail('the stream is not read by EventSource');
  const esRequests = seen.streams.filter((r) => r.url().endsWith(`/v1/export-tasks/${taskId}:watch`) && r.resourceType() === 'eventsource');
  if (esRequests.length !== 1) fail(`${esRequests.length} EventSource requests for task ${taskId}`);
  await page.waitForFunction(() => Number(document.getElementById('polls').textContent) >= 2, null, {timeout: 15000});
  const e1 = await text(page, '#elapsed');
  await sleep(600);
  if ((await text(page, '#elapsed')) === e1) fail('elapsed stayed at ' + e1 + ' while pending');
  log(`follow: task ${taskId} PENDING over EventSource, polls ${await text(page, '#polls')}, next poll ${await text(page, '#next-poll')}, id ${await text(page, '#event-id')}`);
  await shot(page, 'follow-pending.png');
  await endTask(emu, taskId, 'finish');
  await waitText(page, '#state', 'FINISHED');
  await waitText(page, '#conn-state', 'ended');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-link')]);
  const csv = readFileSync(await download.path(), 'utf8');
  if (!csv.startsWith('LicenseId,')) fail('the download is not the CSV: ' + csv.slice(0, 80));
  log(`follow: FINISHED after ${await text(page, '#polls')} polls; downloaded ${download.suggestedFilename()} (${csv.length} bytes)`);
  await page.waitForFunction((id) => document.querySelector('#export-rows tr')?.dataset.taskId === id, taskId, {timeout: 10000});
  await shot(page, 'finished.png');
  // An ended task's elapsed time is its age at its end, however late it is
  // looked at: followed again from the list, it says the same.
  const endedAt = await text(page, '#elapsed');
  await sleep(1500);
  await page.click(`#export-rows tr[data-task-id="${taskId}"] button.follow`);
  await waitText(page, '#state', 'FINISHED');
  if ((await text(page, '#elapsed')) !== endedAt) fail(`followed again, the FINISHED task says elapsed ${await text(page, '#elapsed')}; it ended at ${endedAt}`);
  if ((await text(page, '#next-poll')) !== '–') fail(`a FINISHED task shows a next poll: ${await text(page, '#next-poll')}`);
  log(`follow: followed again later, the FINISHED task still says elapsed ${endedAt}`);

  // 5. Invalid input: the service's field violations beside the fields.
  await page.fill('#filters .filter [name=values]', ' , ');
  await page.fill('#export-month', '2026-13');
  await page.click('#start');
  await page.waitForSelector('#form-error:not([hidden])', {timeout: 10000});
  const message = await text(page, '#form-error-message');
  if (!message.startsWith('INVALID_ARGUMENT')) fail('error message ' + message);
  for (const [field, control] of [['filters[0].values', '#filters .filter [name=values]'], ['export_month', '#export-month']]) {
    const note = await page.$(`.violation[data-field="${field}"]`);
    if (!note) fail('no violation shown beside ' + field);
    const describedBy = await page.getAttribute(control, 'aria-describedby');
    if ((await page.getAttribute(control, 'aria-invalid')) !== 'true' || !describedBy.includes(await note.getAttribute('id'))) {
      fail(`${control} is not marked invalid and described by its violation`);
    }
    log(`violation beside ${field}: ${await note.textContent()}`);
  }
  await shot(page, 'invalid.png');
  const bodies = seen.exportBodies;
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  if (bodies.length !== 2 || !bodies.every((b) => uuid.test(b.requestId)) || bodies[0].requestId === bodies[1].requestId) {
    fail('request ids sent: ' + JSON.stringify(bodies.map((b) => b.requestId)));
  }

  // 6. The budget: calls of both actions in the last minute.
  await page.waitForFunction(() => ['ExportTasks', 'ExportLicenseDetail'].every((a) =>
    Number(document.querySelector(`#budget-chart polyline[data-action="${a}"]`)?.dataset.calls) > 0), null, {timeout: 10000})
    .catch(() => fail('the budget chart shows no calls'));
  for (const li of await page.$$eval('#budget-legend li', (lis) => lis.map((l) => l.textContent))) log('budget: ' + li);
  log('budget: ' + (await text(page, '#budget-summary')));
  await (await page.$('#budget')).screenshot({path: join(artifacts, 'budget.png')});

  // 7. A restart of the service while an export is followed.
  await page.click('#filters .filter .remove');
  await page.click('#tags .tag .remove');
  await page.fill('#export-month', '');
  await page.click('#start');
  await waitText(page, '#state', 'PENDING');
  await waitText(page, '#conn-state', 'live');
  const restartTask = await text(page, '#detail-task');
  const before = await text(page, '#event-id');
  await stop(svc.proc);
  log(`restart: service stopped while following task ${restartTask} at event ${before}`);
  await waitText(page, '#conn-state', 'reconnecting…');
  await page.waitForSelector('#service-status:not([hidden])', {timeout: 15000});
  await shot(page, 'restart-down.png');
  await sleep(1000);
  svc = await startService(emu, {dataDir: svc.dataDir, grpc: svc.grpc, rest: svc.rest.replace('http://', '')});
  log(`restart: service started again on ${svc.rest}`);
  await waitText(page, '#conn-state', 'live', 30000);
  await waitText(page, '#last-kind', 'SNAPSHOT');
  const after = await text(page, '#event-id');
  if (!after.startsWith(restartTask + ':') || seqOf(after) <= seqOf(before)) fail(`resumed at event ${after}, after ${before}`);
  if ((await text(page, '#state')) !== 'PENDING') fail('resumed in state ' + (await text(page, '#state')));
  await endTask(emu, restartTask, 'finish');
  await waitText(page, '#state', 'FINISHED');
  await page.waitForSelector('#service-status[hidden]', {state: 'attached', timeout: 10000});
  log(`restart: the stream resumed at event ${after} (Last-Event-ID ${before}) and followed the task to FINISHED`);
  await shot(page, 'restart-resumed.png');
  if (seen.foreign.length) fail('the page loaded from elsewhere: ' + seen.foreign.join(', '));
  if (seen.errors.length) fail('console errors: ' + seen.errors.join('; '));
  await page.close();

  // 8. Behind a load balancer, the replica dies (SIGKILL: nothing drains)
  // while an export started from the form is followed. The balancer
  // answers 502 until the replica is back; the page keeps reconnecting,
  // resumes the stream by task id without starting a second export, and
  // the list and budget panels recover.
  const lb = await startBalancer(svc.rest);
  try {
    const lp = await browser.newPage({viewport: {width: 1280, height: 1000}});
    const lseen = watchPage(lp, lb.url);
    await lp.goto(lb.url + '/');
    await lp.click('#start');
    await waitText(lp, '#state', 'PENDING');
    await waitText(lp, '#conn-state', 'live');
    const lbTask = await text(lp, '#detail-task');
    const listed = (await rest(svc, '/v1/export-tasks?pageSize=1000')).tasks.length;
    svc.proc.kill('SIGKILL');
    await svc.proc.exited;
    log(`balancer: replica killed while following task ${lbTask}`);
    await waitText(lp, '#conn-state', 'reconnecting…');
    await lp.waitForSelector('#service-status:not([hidden])', {timeout: 15000});
    for (let i = 0; lb.refused < 3; i++) {
      if (i > 150) fail(`the balancer refused ${lb.refused} requests in 15 s; the page stopped asking`);
      await sleep(100);
    }
    if ((await text(lp, '#conn-state')) !== 'reconnecting…') fail('after 502s the stream shows ' + (await text(lp, '#conn-state')));
    await shot(lp, 'balancer-down.png');
    svc = await startService(emu, {dataDir: svc.dataDir, grpc: svc.grpc, rest: svc.rest.replace('http://', '')});
    const back = Date.now();
    log(`balancer: ${lb.refused} requests answered 502; replica started again`);
    await waitText(lp, '#conn-state', 'live', 30000);
    if ((await text(lp, '#detail-task')) !== lbTask || (await text(lp, '#state')) !== 'PENDING') fail('resumed on another task or state');
    await endTask(emu, lbTask, 'finish');
    await waitText(lp, '#state', 'FINISHED');
    await lp.waitForSelector('#service-status[hidden]', {state: 'attached', timeout: 10000});
    await lp.waitForFunction((id) => document.querySelector(`#export-rows tr[data-task-id="${id}"] .state`)?.textContent === 'FINISHED',
      lbTask, {timeout: 15000}).catch(() => fail(`the list did not recover to show task ${lbTask} FINISHED`));
    for (let i = 0; !lseen.budgetAnswers.some((t) => t > back); i++) {
      if (i > 100) fail('the budget panel did not load again after the replica came back');
      await sleep(100);
    }
    if (lseen.exportBodies.length !== 1) fail(`${lseen.exportBodies.length} export requests, want the form's 1`);
    const after = (await rest(svc, '/v1/export-tasks?pageSize=1000')).tasks.length;
    if (after !== listed) fail(`${after - listed} exports started while the page reconnected`);
    const other = lseen.streams.filter((r) => !r.url().endsWith(`/v1/export-tasks/${lbTask}:watch`));
    if (other.length) fail('streams of other tasks: ' + other.map((r) => r.url()).join(', '));
    if (lseen.foreign.length) fail('the page loaded from elsewhere: ' + lseen.foreign.join(', '));
    if (lseen.errors.length) fail('console errors: ' + lseen.errors.join('; '));
    await shot(lp, 'balancer-resumed.png');
    log(`balancer: the stream resumed by task id after ${lseen.streams.length} stream requests, FINISHED; one export; list and budget back`);
    await lp.close();
  } finally {
    lb.close();
  }

  // 9. With tokens: the page asks once, keeps the token for the session.
  const tok = 'browser-' + randomBytes(12).toString('hex');
  const secured = await startService(emu, {dataDir: join(work, 'data-tokens'), tokens: 'browser=' + tok});
  try {
    const ctx = await browser.newContext({viewport: {width: 1280, height: 1000}, acceptDownloads: true});
    await ctx.addInitScript(() => {
      window.tokenQuestions = 0;
      const show = HTMLDialogElement.prototype.showModal;
      HTMLDialogElement.prototype.showModal = function () {
        window.tokenQuestions++;
        return show.call(this);
      };
    });
    const tp = await ctx.newPage();
    const tseen = watchPage(tp, secured.rest);
    await tp.goto(secured.rest + '/');
    await tp.waitForSelector('#token-dialog[open]', {timeout: 10000});
    await sleep(1000); // the list and the budget were both refused: one question
    if ((await tp.evaluate(() => window.tokenQuestions)) !== 1) fail('asked more than once for the token');
    await shot(tp, 'token.png');
    await tp.fill('#token-input', 'wrong-token-0123456789');
    await tp.click('#token-form button');
    await tp.waitForFunction(() => document.getElementById('token-reason').textContent.includes('refused'), null, {timeout: 10000});
    await tp.fill('#token-input', tok);
    await tp.click('#token-form button');
    await tp.waitForSelector('#token-dialog:not([open])', {state: 'attached'});
    await tp.waitForFunction(() => document.querySelector('#budget-chart svg') && !document.getElementById('list-empty').hidden, null, {timeout: 10000});
    await tp.click('#start');
    await waitText(tp, '#state', 'PENDING');
    await waitText(tp, '#conn-state', 'live');
    if ((await tp.getAttribute('#detail', 'data-transport')) !== 'fetch') fail('with a token the stream is not read by fetch');
    const tTask = await text(tp, '#detail-task');
    const sse = tseen.streams.find((r) => r.url().endsWith(`/${tTask}:watch`));
    const sseHeaders = sse && (await sse.allHeaders());
    if (!sse || sseHeaders.authorization !== 'Bearer ' + tok || sseHeaders.accept !== 'text/event-stream') fail('the stream request lacks the token or Accept');
    await endTask(emu, tTask, 'finish');
    await waitText(tp, '#state', 'FINISHED');
    const [tdl] = await Promise.all([tp.waitForEvent('download'), tp.click('#download-link')]);
    if (!readFileSync(await tdl.path(), 'utf8').startsWith('LicenseId,')) fail('the download with a token is not the CSV');
    await tp.reload();
    await tp.waitForFunction(() => document.querySelectorAll('#export-rows tr').length === 1, null, {timeout: 10000});
    const [questions, session, local] = await tp.evaluate(() => [window.tokenQuestions, sessionStorage.getItem('cwpexport.token'), localStorage.length]);
    if ((await tp.evaluate(() => sessionStorage.length)) !== 1) fail('sessionStorage holds more than the token');
    if (questions !== 0 || session !== tok || local !== 0) fail(`after a reload: ${questions} questions, session token kept ${session === tok}, ${local} localStorage items`);
    if (tseen.urls.some((u) => u.includes(tok))) fail('the token appeared in a URL');
    if (tseen.foreign.length) fail('the page loaded from elsewhere: ' + tseen.foreign.join(', '));
    if (tseen.errors.length) fail('console errors: ' + tseen.errors.join('; '));
    // A caller who is not an operator sees the rates, not the account's activity.
    await tp.waitForFunction(() => document.getElementById('budget-summary').textContent.includes('operators only'), null, {timeout: 10000})
      .catch(() => fail('a caller who is not an operator is shown the account\'s activity: ' + 'budget summary'));
    if ((await text(tp, '#budget-legend')).includes('throttled')) fail('a caller who is not an operator is shown throttled calls');
    await shot(tp, 'token-finished.png');
    log(`tokens: asked once (again after a wrong token), followed task ${tTask} with fetch and the header, downloaded, kept across a reload`);
    await ctx.close();
  } finally {
    await stop(secured.proc);
  }
  await stop(svc.proc);
  svc = null;
  log('browser test: OK (screenshots in ' + artifacts + ')');
} finally {
  await browser.close();
  for (const p of procs) p.kill('SIGTERM');
  rmSync(work, {recursive: true, force: true});
}
