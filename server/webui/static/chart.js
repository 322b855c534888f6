// The cloud budget at a glance: calls per second of each cloud action over
// the last minute, drawn as inline SVG against the configured rate, the
// effective rate and the cloud's quota, from GET /v1/budget.

const NS = 'http://www.w3.org/2000/svg';
const W = 1000;
const H = 190;
const LEFT = 30;
const RIGHT = 240;
const TOP = 8;
const BOTTOM = 20;
/** CSS class of each action's series. */
export const SERIES = {ExportTasks: 'read', ExportLicenseDetail: 'create'};

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

const sum = (a) => a.reduce((s, v) => s + v, 0);
const rate = (r) => (Math.round(r * 10) / 10).toString();

/** Draws the chart of a GetBudgetStatusResponse into `box` (an element). */
export function drawBudget(box, st) {
  const actions = st.actions || [];
  const peak = Math.max(0, ...actions.flatMap((a) => a.callsPerSecond || []));
  const top = Math.max(22, peak + 2, ...actions.map((a) => a.configuredRate + 2), ...actions.map((a) => a.cloudQuota + 2));
  const x = (i) => LEFT + ((W - LEFT - RIGHT) * i) / 59;
  const y = (v) => TOP + (H - TOP - BOTTOM) * (1 - v / top);
  const svg = el('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'budget-chart-title', class: 'chart'});
  svg.append(el('title', {id: 'budget-chart-title'}, 'Cloud calls per second over the last minute: ' +
    actions.map((a) => `${a.action} peak ${Math.max(0, ...(a.callsPerSecond || []))}/s, configured ${rate(a.configuredRate)}/s`).join('; ') +
    `; the cloud allows ${actions.length ? actions[0].cloudQuota : 20}/s per action.`));
  for (const v of [0, 10, 20, 30, 40].filter((v) => v <= top)) {
    svg.append(el('line', {x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: 'grid'}));
    svg.append(el('text', {x: LEFT - 4, y: y(v) + 4, class: 'tick', 'text-anchor': 'end'}, v));
  }
  svg.append(el('text', {x: LEFT, y: H - 4, class: 'tick'}, '−60 s'));
  svg.append(el('text', {x: W - RIGHT, y: H - 4, class: 'tick', 'text-anchor': 'end'}, 'now'));
  const quota = actions.length ? actions[0].cloudQuota : 20;
  svg.append(el('line', {x1: LEFT, x2: W - RIGHT, y1: y(quota), y2: y(quota), class: 'quota'}));
  svg.append(el('text', {x: W - RIGHT + 4, y: y(quota) + 4, class: 'label quota-label'}, `cloud ${quota}/s`));
  // The rates as dashed (configured) and dotted (effective) lines, labelled
  // once per height: both actions usually share their configured rate.
  const labels = new Map();
  const rateLine = (v, kind, action) => {
    svg.append(el('line', {x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: kind}));
    const key = Math.round(y(v));
    labels.set(key, [...(labels.get(key) || []), {v, kind, action}]);
  };
  for (const a of actions) {
    rateLine(a.configuredRate, 'configured', a.action);
    if (a.effectiveRate !== a.configuredRate) rateLine(a.effectiveRate, 'effective', a.action);
  }
  for (const [key, ls] of labels) {
    const shared = ls.length > 1 && ls.every((l) => l.kind === ls[0].kind && l.v === ls[0].v);
    const text = shared ? `both ${ls[0].kind} ${rate(ls[0].v)}/s` : ls.map((l) => `${l.action} ${l.kind} ${rate(l.v)}/s`).join(', ');
    // Below the quota's label when they would touch.
    const ty = Math.abs(key - y(quota)) < 12 ? Math.max(key, y(quota)) + 12 : key + 4;
    svg.append(el('text', {x: W - RIGHT + 4, y: ty, class: 'label'}, text));
  }
  for (const a of actions) {
    const cls = SERIES[a.action] || 'other';
    const calls = a.callsPerSecond || [];
    const points = calls.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    svg.append(el('polyline', {points, class: `calls ${cls}`, 'data-action': a.action, 'data-calls': sum(calls)}));
  }
  box.replaceChildren(svg);
}

/** Lists each action's figures beside the chart, into the <ul> `list`. */
export function legend(list, st) {
  list.replaceChildren();
  for (const a of st.actions || []) {
    const calls = a.callsPerSecond || [];
    const li = document.createElement('li');
    li.dataset.action = a.action;
    const swatch = document.createElement('span');
    swatch.className = 'swatch ' + (SERIES[a.action] || 'other');
    swatch.setAttribute('aria-hidden', 'true');
    const name = document.createElement('strong');
    name.textContent = a.action;
    const figures = document.createElement('span');
    figures.className = 'figures';
    const rates = `configured ${rate(a.configuredRate)}/s · effective ${rate(a.effectiveRate)}/s · cloud ${a.cloudQuota}/s`;
    figures.textContent = st.activityWithheld ? ` ${rates}`
      : ` ${calls.length ? calls[calls.length - 1] : 0}/s in the last second · ` +
        `${sum(calls)} calls in the last minute · ${rates} · ${a.throttledCalls || 0} throttled`;
    li.append(swatch, name, figures);
    list.append(li);
  }
}
