// Browser client of the CWP license export gateway: starts an export with
// POST /v1/license-detail:exportAndWatch and reads its newline-delimited JSON
// stream ({"result": ...} per message, or a final {"error": ...}).
'use strict';

const $ = (id) => document.getElementById(id);

function addRow(containerId, templateId) {
  const row = $(templateId).content.firstElementChild.cloneNode(true);
  row.querySelector('.remove').addEventListener('click', () => row.remove());
  $(containerId).appendChild(row);
  return row;
}

// request builds the ExportLicenseDetailAndWatchRequest from the form. It
// sends what the user typed; the service validates and explains.
function request() {
  const req = {filters: [], tags: [], isHistory: $('is-history').checked};
  for (const row of document.querySelectorAll('#filters .filter')) {
    const values = row.querySelector('[name=values]').value.split(',').map((v) => v.trim()).filter((v) => v !== '');
    req.filters.push({
      name: row.querySelector('[name=name]').value,
      values,
      exactMatch: row.querySelector('[name=exact]').checked,
    });
  }
  for (const row of document.querySelectorAll('#tags .tag')) {
    req.tags.push({tagKey: row.querySelector('[name=key]').value, tagValue: row.querySelector('[name=value]').value});
  }
  const month = $('export-month').value.trim();
  if (month !== '') req.exportMonth = month;
  return req;
}

const shortState = (s) => (s || 'EXPORT_TASK_STATE_UNSPECIFIED').replace('EXPORT_TASK_STATE_', '');
const shortKind = (k) => (k || '').replace('WATCH_EVENT_KIND_', '');

// seconds parses a protobuf JSON Duration ("12.5s").
const seconds = (d) => (d ? parseFloat(d) : NaN);

// last is the latest message and when it arrived: between messages the
// elapsed time and the countdown to the next poll move on from it.
let last = null;

function showTimes() {
  if (!last) return;
  const progress = last.msg.progress || {};
  const pending = shortState((last.msg.task || {}).state) === 'PENDING';
  const since = pending ? (Date.now() - last.at) / 1000 : 0;
  const elapsed = seconds(progress.taskElapsed);
  $('elapsed').textContent = Number.isNaN(elapsed) ? '–' : (elapsed + since).toFixed(1) + ' s';
  if (progress.nextPollTime && pending) {
    const inSec = (Date.parse(progress.nextPollTime) - Date.now()) / 1000;
    $('next-poll').textContent = inSec > 0 ? 'in ' + inSec.toFixed(1) + ' s' : 'now';
  } else {
    $('next-poll').textContent = '–';
  }
}
setInterval(showTimes, 200);

function showMessage(msg) {
  last = {msg, at: Date.now()};
  const task = msg.task || {};
  const progress = msg.progress || {};
  const state = shortState(task.state);
  $('task-id').textContent = task.taskId || '–';
  const el = $('state');
  el.textContent = state;
  el.className = 'state ' + state;
  $('polls').textContent = String(progress.pollCount ?? 0);
  showTimes();
  $('last-kind').textContent = shortKind(msg.kind);
  const pe = $('poll-error');
  pe.hidden = !progress.lastPollError;
  pe.textContent = progress.lastPollError ? 'Last poll failed (' + progress.consecutivePollFailures + ' in a row): ' + progress.lastPollError : '';
  if (state === 'FINISHED') {
    // Through the service: the cloud's pre-signed URL may be unreachable
    // from the browser, and it expires.
    $('download-link').href = '/v1/export-tasks/' + encodeURIComponent(task.taskId) + ':download';
    $('download').hidden = false;
  }
  if (state === 'ERROR') {
    showError({message: task.errorMessage || 'the export failed'});
  }
}

// showError shows a google.rpc.Status, with its BadRequest field violations.
function showError(st) {
  $('error').hidden = false;
  $('error-message').textContent = (st.code ? codeName(st.code) + ': ' : '') + (st.message || 'request failed');
  const list = $('violations');
  list.replaceChildren();
  for (const d of st.details || []) {
    for (const v of d.fieldViolations || []) {
      const li = document.createElement('li');
      const code = document.createElement('code');
      code.textContent = v.field;
      li.append(code, ' ' + v.description);
      list.appendChild(li);
    }
  }
}

const CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED',
  'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];
const codeName = (c) => CODES[c] || String(c);

// readLines yields each line of a streamed response body as it arrives.
async function* readLines(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += decoder.decode(value, {stream: true});
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line !== '') yield line;
    }
  }
  buf += decoder.decode();
  if (buf.trim() !== '') yield buf.trim();
}

async function start(ev) {
  ev.preventDefault();
  $('error').hidden = true;
  $('download').hidden = true;
  $('progress').hidden = true;
  $('start').disabled = true;
  last = null;
  try {
    const resp = await fetch('/v1/license-detail:exportAndWatch', {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(request()),
    });
    if (!resp.ok && !(resp.headers.get('Content-Type') || '').includes('json')) {
      showError({message: 'HTTP ' + resp.status});
      return;
    }
    for await (const line of readLines(resp.body)) {
      const msg = JSON.parse(line);
      if (msg.error) {
        showError(msg.error);
      } else if (msg.result) {
        $('progress').hidden = false;
        showMessage(msg.result);
      } else if (msg.code !== undefined) {
        showError(msg); // an error answered before the stream began
      }
    }
  } catch (err) {
    showError({message: 'the service could not be reached: ' + err.message});
  } finally {
    $('start').disabled = false;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('add-filter').addEventListener('click', () => addRow('filters', 'filter-row'));
  $('add-tag').addEventListener('click', () => addRow('tags', 'tag-row'));
  $('export-form').addEventListener('submit', start);
});
