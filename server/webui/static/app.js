// The console page: the exports this service created (GET
// /v1/export-tasks, refreshed every few seconds), one export followed live
// over Server-Sent Events (stream.js), the form that starts an export (POST
// /v1/license-detail:export with a request id for idempotent retries) and
// the cloud budget (GET /v1/budget, chart.js).

import {ApiError, api, authHeaders, codeName, token} from './api.js';
import {drawBudget, legend} from './chart.js';
import {follow} from './stream.js';

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 3000;

const shortState = (s) => (s || 'EXPORT_TASK_STATE_UNSPECIFIED').replace('EXPORT_TASK_STATE_', '');
const shortKind = (k) => (k || '').replace('WATCH_EVENT_KIND_', '');
const seconds = (d) => (d ? parseFloat(d) : NaN); // a protobuf JSON Duration, "12.5s"
const downloadPath = (id) => '/v1/export-tasks/' + encodeURIComponent(id) + ':download';

function when(ts) {
  if (!ts) return '–';
  const d = new Date(ts);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

// Service reachability, shown while calls fail for want of a connection.
function reachable(ok) {
  const banner = $('service-status');
  banner.hidden = ok;
  banner.textContent = ok ? '' : 'The service cannot be reached; retrying every few seconds.';
}

// A call that failed for want of the service: no connection (fetch's
// TypeError), or a load balancer's 502, 503 or 504 while the replica it
// tried is gone.
const offline = (err) => !(err instanceof ApiError) || [502, 503, 504].includes(err.httpStatus);

// ---- The list of exports.

// tokens holds the page token of each page up to the one shown; gen
// numbers the reads, so that an answer overtaken by a newer read (the user
// paged meanwhile) is dropped.
const list = {state: '', size: 20, tokens: [''], next: '', gen: 0};

function conditions(task) {
  const p = task.parameters || {};
  const parts = (p.filters || []).map((f) => f.name + (f.exactMatch ? '==' : '=') + (f.values || []).join('|'));
  for (const t of p.tags || []) parts.push('tag ' + t.tagKey + (t.tagValue ? ':' + t.tagValue : ''));
  if (p.isHistory) parts.push('history' + (p.exportMonth ? ' ' + p.exportMonth : ''));
  if (parts.length === 0) parts.push('everything');
  if (task.creator) parts.push('by ' + task.creator);
  return parts.join(', ');
}

function downloadLink(id, text) {
  const a = document.createElement('a');
  a.href = downloadPath(id);
  a.download = '';
  a.textContent = text;
  a.addEventListener('click', downloadWithToken);
  return a;
}

// newer returns the followed stream's view of a listed task when it was
// observed later than the list's (the stream learns of an end first).
function newer(task) {
  const streamed = followed.last && followed.last.msg.task;
  if (!streamed || streamed.taskId !== task.taskId) return task;
  return Date.parse(streamed.observeTime || 0) > Date.parse(task.observeTime || 0) ? {...task, state: streamed.state, downloadUrl: streamed.downloadUrl, observeTime: streamed.observeTime} : task;
}

function row(listed) {
  const task = newer(listed);
  const tr = document.createElement('tr');
  tr.dataset.taskId = task.taskId;
  tr.classList.toggle('followed', task.taskId === followed.taskId);
  const state = shortState(task.state);
  const cells = [task.taskId, '', when(task.createTime), conditions(task), ''].map((text) => {
    const td = document.createElement('td');
    td.textContent = text;
    return td;
  });
  const badge = document.createElement('span');
  badge.className = 'state ' + state;
  badge.textContent = state;
  cells[1].append(badge);
  const open = document.createElement('button');
  open.type = 'button';
  open.className = 'follow';
  open.textContent = 'Follow';
  open.setAttribute('aria-label', 'Follow export ' + task.taskId);
  open.addEventListener('click', () => openDetail(task.taskId));
  cells[4].append(open);
  if (state === 'FINISHED') {
    cells[4].append(' ', downloadLink(task.taskId, 'Download'));
  }
  tr.append(...cells);
  return tr;
}

async function loadList() {
  const gen = ++list.gen;
  try {
    const q = new URLSearchParams({pageSize: String(list.size)});
    if (list.state) q.set('state', list.state);
    const pageToken = list.tokens[list.tokens.length - 1];
    if (pageToken) q.set('pageToken', pageToken);
    const page = await api('/v1/export-tasks?' + q);
    if (gen !== list.gen) return;
    reachable(true);
    const tasks = page.tasks || [];
    $('export-rows').replaceChildren(...tasks.map(row));
    $('list-empty').hidden = tasks.length > 0;
    list.next = page.nextPageToken || '';
    $('next-page').disabled = list.next === '';
    $('prev-page').disabled = list.tokens.length === 1;
    $('page-label').textContent = 'Page ' + list.tokens.length;
  } catch (err) {
    if (offline(err)) reachable(false);
  }
}

function resetPages() {
  list.tokens = [''];
  loadList();
}

// ---- The budget.

async function loadBudget() {
  try {
    const st = await api('/v1/budget');
    reachable(true);
    drawBudget($('budget-chart'), st);
    legend($('budget-legend'), st);
    const throttled = (st.actions || []).reduce((n, a) => n + (a.throttledCalls || 0), 0);
    // The account's activity (calls, throttled calls, tasks) is every
    // caller's: the service tells it to operators only.
    $('budget-summary').textContent = st.activityWithheld
      ? 'The rates the service allows now; the account\'s calls and tasks are shown to operators only'
      : `${st.readBudgetTasks || 0} task(s) share the ExportTasks budget now · ` +
        `${throttled} call(s) throttled by the cloud in the last minute`;
  } catch (err) {
    if (offline(err)) reachable(false);
  }
}

// ---- One export followed live.

const followed = {taskId: '', handle: null, last: null, connection: ''};
const CONNECTION = {connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', ended: 'ended', failed: 'failed'};

function openDetail(taskId) {
  closeDetail();
  followed.taskId = taskId;
  $('detail').hidden = false;
  $('detail-task').textContent = taskId;
  for (const id of ['state', 'polls', 'last-kind', 'elapsed', 'last-poll', 'next-poll', 'sharing', 'event-id']) $(id).textContent = '–';
  $('state').className = 'state';
  $('poll-error').hidden = true;
  $('detail-error').hidden = true;
  $('download').hidden = true;
  for (const tr of document.querySelectorAll('#export-rows tr')) tr.classList.toggle('followed', tr.dataset.taskId === taskId);
  followed.handle = follow(taskId, {
    message: (msg, id) => {
      if (followed.taskId === taskId) showMessage(msg, id);
    },
    connection: (state) => {
      if (followed.taskId !== taskId) return;
      followed.connection = state;
      const el = $('conn-state');
      el.textContent = CONNECTION[state] || state;
      el.className = 'conn-state ' + state;
      showTimes();
    },
    error: (err) => {
      if (followed.taskId !== taskId) return;
      $('detail-error').hidden = false;
      $('detail-error').textContent = (err.status.code ? codeName(err.status.code) + ': ' : '') + err.message;
    },
  });
  $('detail').dataset.transport = followed.handle.transport;
  $('detail').scrollIntoView({block: 'nearest'});
}

function closeDetail() {
  if (followed.handle) followed.handle.close();
  followed.handle = null;
  followed.taskId = '';
  followed.last = null;
  $('detail').hidden = true;
  for (const tr of document.querySelectorAll('#export-rows tr.followed')) tr.classList.remove('followed');
}

function showMessage(msg, id) {
  followed.last = {msg, at: Date.now()};
  const task = msg.task || {};
  const progress = msg.progress || {};
  const state = shortState(task.state);
  $('state').textContent = state;
  $('state').className = 'state ' + state;
  $('polls').textContent = String(progress.pollCount ?? 0);
  $('last-kind').textContent = shortKind(msg.kind);
  $('event-id').textContent = id || '–';
  $('last-poll').textContent = when(progress.lastPollTime);
  $('sharing').textContent = progress.pendingTasks ? progress.pendingTasks + ' task(s)' : '–';
  const pe = $('poll-error');
  pe.hidden = !progress.lastPollError;
  pe.textContent = progress.lastPollError
    ? `Last poll failed (${progress.consecutivePollFailures} in a row): ${progress.lastPollError}`
    : '';
  if (state === 'FINISHED') {
    // Through the service: the cloud's pre-signed URL may be unreachable
    // from the browser, and it expires.
    $('download').replaceChildren(downloadLink(task.taskId, 'Download the export'));
    $('download').firstChild.id = 'download-link';
    $('download').hidden = false;
  }
  if (state === 'ERROR') {
    $('detail-error').hidden = false;
    $('detail-error').textContent = task.errorMessage || 'the export failed';
  }
  // The list shows the end now rather than at its next refresh.
  if ((state === 'FINISHED' || state === 'ERROR') && document.querySelector(`#export-rows tr[data-task-id="${CSS.escape(task.taskId)}"]`)) {
    loadList();
  }
  showTimes();
}

// Between messages the elapsed time and the countdown to the next poll
// move on from the last message.
function showTimes() {
  if (!followed.last) return;
  const {msg, at} = followed.last;
  const progress = msg.progress || {};
  const pending = shortState((msg.task || {}).state) === 'PENDING';
  const elapsed = seconds(progress.taskElapsed) + (pending ? (Date.now() - at) / 1000 : 0);
  $('elapsed').textContent = Number.isNaN(elapsed) ? '–' : elapsed.toFixed(1) + ' s';
  if (pending && followed.connection !== 'live') {
    $('next-poll').textContent = '– (not connected)';
  } else if (pending && progress.nextPollTime) {
    const inSec = (Date.parse(progress.nextPollTime) - Date.now()) / 1000;
    $('next-poll').textContent = inSec > 0 ? 'in ' + inSec.toFixed(1) + ' s' : 'due';
  } else {
    $('next-poll').textContent = '–';
  }
}

// A plain link cannot send the token: with one, fetch the file and hand it
// to the browser as a blob.
async function downloadWithToken(ev) {
  if (!token()) return;
  ev.preventDefault();
  const link = ev.currentTarget;
  const resp = await fetch(link.getAttribute('href'), {headers: authHeaders()});
  if (!resp.ok) {
    const err = new ApiError(resp.status, await resp.json().catch(() => null));
    $('detail-error').hidden = false;
    $('detail-error').textContent = 'Download failed: ' + err.message;
    return;
  }
  const name = /filename="?([^";]+)"?/.exec(resp.headers.get('Content-Disposition') || '');
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name ? name[1] : 'export.csv';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// ---- The form.

function addRow(containerId, templateId) {
  const r = $(templateId).content.firstElementChild.cloneNode(true);
  r.querySelector('.remove').addEventListener('click', () => {
    r.remove();
    refreshRequestId();
  });
  $(containerId).append(r);
  refreshRequestId();
  return r;
}

// request builds the export request from the form. It sends what was
// typed; the service validates and explains.
function request() {
  const req = {filters: [], tags: [], isHistory: $('is-history').checked};
  for (const r of document.querySelectorAll('#filters .filter')) {
    req.filters.push({
      name: r.querySelector('[name=name]').value,
      values: r.querySelector('[name=values]').value.split(',').map((v) => v.trim()).filter((v) => v !== ''),
      exactMatch: r.querySelector('[name=exact]').checked,
    });
  }
  for (const r of document.querySelectorAll('#tags .tag')) {
    req.tags.push({tagKey: r.querySelector('[name=key]').value, tagValue: r.querySelector('[name=value]').value});
  }
  const month = $('export-month').value.trim();
  if (month !== '') req.exportMonth = month;
  return req;
}

// One request id per export the user means: kept while the form is
// unchanged (a retry after a failure cannot start the export twice), new
// when the form changes or after an export started.
const ask = {id: '', fingerprint: null};

function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function refreshRequestId() {
  const fp = JSON.stringify(request());
  if (fp !== ask.fingerprint) {
    ask.id = uuid4();
    ask.fingerprint = fp;
  }
  $('request-id').textContent = ask.id;
}

function clearViolations() {
  $('form-error').hidden = true;
  $('violations').replaceChildren();
  for (const e of document.querySelectorAll('#export-form .violation')) e.remove();
  for (const e of document.querySelectorAll('#export-form [aria-invalid]')) {
    e.removeAttribute('aria-invalid');
    e.removeAttribute('aria-describedby');
  }
}

// fieldElement finds the form control a violation's field path names.
function fieldElement(field) {
  let m = /^filters\[(\d+)\]\.(name|values)/.exec(field);
  if (m) {
    const r = document.querySelectorAll('#filters .filter')[Number(m[1])];
    return r && r.querySelector(m[2] === 'name' ? '[name=name]' : '[name=values]');
  }
  m = /^tags\[(\d+)\]\.(tag_key|tag_value)/.exec(field);
  if (m) {
    const r = document.querySelectorAll('#tags .tag')[Number(m[1])];
    return r && r.querySelector(m[2] === 'tag_key' ? '[name=key]' : '[name=value]');
  }
  if (field === 'filters' || field === 'tags') return $(field);
  return document.querySelector(`#export-form [data-field="${CSS.escape(field)}"]`);
}

function showFormError(err) {
  $('form-error').hidden = false;
  $('form-error-message').textContent = (err.status.code ? codeName(err.status.code) + ': ' : '') + err.message;
  err.violations.forEach((v, i) => {
    const li = document.createElement('li');
    const code = document.createElement('code');
    code.textContent = v.field;
    li.append(code, ' ' + v.description);
    $('violations').append(li);
    const target = fieldElement(v.field);
    if (!target) return;
    const note = document.createElement('span');
    note.className = 'violation';
    note.id = 'violation-' + i;
    note.dataset.field = v.field;
    note.textContent = v.description;
    (target.closest('.row, .field') || target).after(note);
    target.setAttribute('aria-invalid', 'true');
    target.setAttribute('aria-describedby', [target.getAttribute('aria-describedby'), note.id].filter(Boolean).join(' '));
  });
}

async function start(ev) {
  ev.preventDefault();
  clearViolations();
  refreshRequestId();
  $('start').disabled = true;
  try {
    const res = await api('/v1/license-detail:export', {method: 'POST', body: {...request(), requestId: ask.id}});
    ask.fingerprint = null; // started: the next export is another one
    refreshRequestId();
    openDetail(res.task.taskId);
    if (list.tokens.length === 1) loadList();
  } catch (err) {
    // The service's own refusals explain themselves; a lost connection or a
    // load balancer's bare 502 does not.
    const unexplained = offline(err) && !err.status?.message;
    showFormError(unexplained ? new ApiError(0, {message: 'the service could not be reached; start again to retry with the same request id'}) : err);
  } finally {
    $('start').disabled = false;
  }
}

// ---- Wiring.

function every(ms, f) {
  const run = async () => {
    await f();
    setTimeout(run, ms);
  };
  run();
}

$('add-filter').addEventListener('click', () => addRow('filters', 'filter-row'));
$('add-tag').addEventListener('click', () => addRow('tags', 'tag-row'));
$('export-form').addEventListener('input', refreshRequestId);
$('export-form').addEventListener('change', refreshRequestId);
$('export-form').addEventListener('submit', start);
$('close-detail').addEventListener('click', closeDetail);
$('state-filter').addEventListener('change', (ev) => {
  list.state = ev.target.value;
  resetPages();
});
$('page-size').addEventListener('change', (ev) => {
  list.size = Number(ev.target.value);
  resetPages();
});
$('next-page').addEventListener('click', () => {
  if (!list.next) return;
  list.tokens.push(list.next);
  loadList();
});
$('prev-page').addEventListener('click', () => {
  if (list.tokens.length > 1) list.tokens.pop();
  loadList();
});
refreshRequestId();
setInterval(showTimes, 250);
// The visible page is read again every few seconds rather than one event
// stream per row: browsers allow only ~6 connections per host.
every(REFRESH_MS, loadList);
every(REFRESH_MS, loadBudget);
