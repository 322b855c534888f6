// Follows a task's watch stream as Server-Sent Events
// (GET /v1/export-tasks/{id}:watch with Accept: text/event-stream).
//
// Without a token the browser's own EventSource does the work and
// reconnects by itself with Last-Event-ID, so a restart of the service
// resumes the stream. EventSource cannot send an Authorization header, and
// a token in the URL would end up in logs: with a token, a fetch() reader
// parses the same events and reconnects the same way.

import {ApiError, authHeaders, needToken, token} from './api.js';

const KINDS = ['snapshot', 'state_changed', 'heartbeat'];
// google.rpc.Codes after which reconnecting can help: DEADLINE_EXCEEDED,
// UNAVAILABLE (the service restarting, the cloud unreachable).
const RETRYABLE = new Set([4, 14]);
// HTTP statuses after which reconnecting can help, whatever the body: a
// load balancer in front of several replicas answers 502, 503 or 504 while
// the replica it tried is gone, with a body of its own.
const RETRYABLE_HTTP = new Set([502, 503, 504]);
const retryable = (httpStatus, st) => RETRYABLE_HTTP.has(httpStatus) || RETRYABLE.has(st && st.code);
// How long to wait before asking again after such an answer, as the
// service's own `retry:` says.
const RETRY_MS = 2000;

/**
 * Opens the stream of a task. `on` is told:
 *   message(msg, id)  each stream message and its event id
 *   connection(state) 'connecting', 'live', 'reconnecting', 'ended' or 'failed'
 *   error(ApiError)   the error that ended the stream, if any
 * Returns a handle with close() and `transport` ('eventsource' or 'fetch').
 */
export function follow(taskId, on) {
  const url = '/v1/export-tasks/' + encodeURIComponent(taskId) + ':watch';
  const handle = {
    transport: '',
    closed: false,
    inner: null,
    close() {
      this.closed = true;
      if (this.inner) this.inner.close();
    },
  };
  // A token entered after EventSource was refused switches to fetch.
  const start = () => {
    if (handle.closed) return;
    handle.transport = token() ? 'fetch' : 'eventsource';
    handle.inner = token() ? viaFetch(url, on) : viaEventSource(url, on, start);
  };
  on.connection('connecting');
  start();
  return handle;
}

function viaEventSource(url, on, restart) {
  const es = new EventSource(url);
  let closed = false;
  const close = () => {
    closed = true;
    es.close();
  };
  es.onopen = () => on.connection('live');
  for (const kind of KINDS) {
    es.addEventListener(kind, (ev) => on.message(JSON.parse(ev.data), ev.lastEventId));
  }
  es.addEventListener('end', () => {
    close();
    on.connection('ended');
  });
  // One listener for both: the service's error events carry a
  // google.rpc.Status as data, the browser's own have none.
  es.addEventListener('error', async (ev) => {
    if (closed) return;
    if (ev.data) {
      const st = JSON.parse(ev.data);
      if (RETRYABLE.has(st.code)) {
        on.connection('reconnecting'); // EventSource reconnects by itself
        return;
      }
      close();
      on.error(new ApiError(0, st));
      on.connection('failed');
      return;
    }
    if (es.readyState === EventSource.CONNECTING) {
      on.connection('reconnecting');
      return;
    }
    // CLOSED: the service (or a load balancer in front of it) answered
    // with an error status, which EventSource does not show; ask again to
    // learn it. A new EventSource follows the same task from a new snapshot.
    close();
    let resp;
    try {
      resp = await fetch(url, {headers: authHeaders({Accept: 'text/event-stream'})});
    } catch {
      on.connection('reconnecting');
      setTimeout(restart, RETRY_MS);
      return;
    }
    if (resp.ok && resp.status !== 204) {
      await resp.body.cancel();
      restart();
      return;
    }
    if (resp.status === 204) {
      on.connection('ended');
      return;
    }
    if (resp.status === 401) {
      await needToken(token());
      restart();
      return;
    }
    const st = await resp.json().catch(() => null);
    if (retryable(resp.status, st)) {
      on.connection('reconnecting');
      setTimeout(restart, RETRY_MS);
      return;
    }
    on.error(new ApiError(resp.status, st));
    on.connection('failed');
  });
  return {close};
}

function viaFetch(url, on) {
  const ctl = new AbortController();
  let lastId = '';
  let retry = RETRY_MS;
  const pause = (ms) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    ctl.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, {once: true});
  });
  (async () => {
    while (!ctl.signal.aborted) {
      const sent = token();
      const headers = authHeaders({Accept: 'text/event-stream'});
      if (lastId) headers['Last-Event-ID'] = lastId;
      let resp;
      try {
        resp = await fetch(url, {headers, signal: ctl.signal});
      } catch {
        if (ctl.signal.aborted) return;
        on.connection('reconnecting');
        await pause(retry);
        continue;
      }
      if (resp.status === 204) {
        on.connection('ended');
        return;
      }
      if (resp.status === 401) {
        await needToken(sent);
        continue;
      }
      if (!resp.ok) {
        const err = new ApiError(resp.status, await resp.json().catch(() => null));
        if (retryable(resp.status, err.status)) {
          on.connection('reconnecting');
          await pause(retry);
          continue;
        }
        on.error(err);
        on.connection('failed');
        return;
      }
      on.connection('live');
      let outcome = 'dropped';
      try {
        for await (const ev of events(resp.body)) {
          if (ev.retry) retry = ev.retry;
          if (ev.id) lastId = ev.id;
          if (KINDS.includes(ev.event)) {
            on.message(JSON.parse(ev.data), ev.id);
          } else if (ev.event === 'end') {
            outcome = 'end';
            break;
          } else if (ev.event === 'error') {
            const st = JSON.parse(ev.data);
            if (!RETRYABLE.has(st.code)) {
              on.error(new ApiError(0, st));
              outcome = 'failed';
            }
            break;
          }
        }
      } catch {
        // The connection broke: reconnect below.
      }
      if (ctl.signal.aborted) return;
      if (outcome === 'end' || outcome === 'failed') {
        on.connection(outcome === 'end' ? 'ended' : 'failed');
        return;
      }
      on.connection('reconnecting');
      await pause(retry);
    }
  })();
  return {close: () => ctl.abort()};
}

// events yields the events of a text/event-stream body as they arrive.
async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let ev = {data: []};
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buf += decoder.decode(value, {stream: true});
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (ev.data.length) yield {...ev, data: ev.data.join('\n')};
        ev = {data: []};
        continue;
      }
      if (line.startsWith(':')) continue; // a comment
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') ev.data.push(val);
      else if (field === 'event') ev.event = val;
      else if (field === 'id') ev.id = val;
      else if (field === 'retry' && /^\d+$/.test(val)) ev.retry = Number(val);
    }
  }
}
