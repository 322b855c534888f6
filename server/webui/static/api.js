// REST calls of the console, with the bearer token when the service wants
// one: the first 401 asks for a token (once, however many calls are
// waiting), keeps it in sessionStorage only (gone with the tab) and retries.

const TOKEN_KEY = 'cwpexport.token';

/** The token this tab uses, or ''. */
export const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

/** Headers that authenticate a request, when a token is known. */
export function authHeaders(extra = {}) {
  const t = token();
  return t ? {...extra, Authorization: 'Bearer ' + t} : {...extra};
}

const CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED',
  'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

/** The name of a google.rpc.Code number. */
export const codeName = (c) => CODES[c] || String(c);

/** An error answer: its HTTP status and google.rpc.Status body. */
export class ApiError extends Error {
  constructor(httpStatus, status) {
    const st = status && typeof status === 'object' ? status : {};
    super(st.message || 'HTTP ' + httpStatus);
    this.httpStatus = httpStatus;
    this.status = st;
  }
  /** BadRequest field violations, as {field, description}. */
  get violations() {
    return (this.status.details || []).flatMap((d) => d.fieldViolations || []);
  }
}

let asking = null;

/**
 * Asks for a token after the service refused `rejected` ('' for none), and
 * resolves once one is stored. Calls refused together share one question;
 * a call refused with a token already replaced just retries.
 */
export function needToken(rejected) {
  if (token() !== rejected) return Promise.resolve();
  if (asking) return asking;
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  document.getElementById('token-reason').textContent = rejected
    ? 'The service refused the token. Enter another one.'
    : 'The service asks callers for a bearer token. It is kept for this tab only.';
  input.value = '';
  asking = new Promise((resolve) => {
    const form = document.getElementById('token-form');
    const done = (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (value === '') return;
      form.removeEventListener('submit', done);
      sessionStorage.setItem(TOKEN_KEY, value);
      dialog.close();
      asking = null;
      resolve();
    };
    form.addEventListener('submit', done);
  });
  // The calls waiting need a token: Escape does not dismiss the question.
  dialog.oncancel = (ev) => ev.preventDefault();
  dialog.showModal();
  input.focus();
  return asking;
}

/** Calls the REST API and returns the decoded JSON answer. */
export async function api(path, {method = 'GET', body} = {}) {
  for (;;) {
    const sent = token();
    const headers = authHeaders({Accept: 'application/json'});
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const resp = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    if (resp.status === 401) {
      await needToken(sent);
      continue;
    }
    const data = await resp.json().catch(() => null);
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }
}
