// admin.js: the operator dashboard, on the admin REST API (/api/admin/, docs/ADMIN.md).
//
// The admin key is asked for once per tab and kept in sessionStorage (never in localStorage or
// a cookie): every call sends it as a Bearer header, and nothing but the key form is shown
// until the API has accepted it.  A 401 later (a new key on the server) signs the tab out.
// The page polls every POLL_MS; charts are inline SVG drawn here.

const KEY_STORE = 'taskwire.admin.key';
const POLL_MS = 3000;
const MINUTES = 60;
const SERIES = [
  { name: 'submitted', label: 'Submitted', color: '#2f6fed' },
  { name: 'started', label: 'Started', color: '#7a5af8' },
  { name: 'succeeded', label: 'Succeeded', color: '#1f8a4c' },
  { name: 'failed', label: 'Failed', color: '#c4352b' },
];
const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

let key = window.sessionStorage.getItem(KEY_STORE);
let timer = null;
let query = '';

// ---- the API ----

class Unauthorized extends Error {}

async function api(method, path) {
  const response = await fetch('/api/admin/' + path, {
    method,
    headers: { Authorization: 'Bearer ' + key },
    cache: 'no-store',
    credentials: 'omit',
  });
  if (response.status === 401) throw new Unauthorized('the admin key was refused');
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

// ---- small DOM helpers (text only: nothing from the API is parsed as HTML) ----

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function fill(list, emptyId, items) {
  $(list).replaceChildren(...items);
  $(emptyId).hidden = items.length > 0;
}

function short(id) {
  return id ? id.slice(0, 12) + '…' : '—';
}

function ms(value) {
  if (value < 1000) return `${value} ms`;
  if (value < 60000) return `${(value / 1000).toFixed(1)} s`;
  return `${(value / 60000).toFixed(1)} min`;
}

function toast(text, bad) {
  const node = el('div', { class: bad ? 'toast bad' : 'toast' }, text);
  $('toasts').append(node);
  setTimeout(() => node.remove(), 4000);
}

// ---- charts: inline SVG, one polyline per series ----

const W = 600, H = 160, PAD = 28;

function chart(rows, series) {
  const max = Math.max(1, ...series.flatMap((s) => rows.map((r) => r[s.name])));
  const x = (i) => PAD + (i * (W - PAD - 6)) / Math.max(1, rows.length - 1);
  const y = (v) => H - 18 - (v * (H - 30)) / max;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', preserveAspectRatio: 'none',
    'aria-label': series.map((s) => s.label).join(', ') + ' per minute, last hour' });
  for (const v of [0, max]) {
    root.append(svg('line', { x1: PAD, x2: W - 6, y1: y(v), y2: y(v), class: 'grid' }));
    const label = svg('text', { x: PAD - 4, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' });
    label.textContent = String(v);
    root.append(label);
  }
  for (const [i, text] of [[0, '-60 min'], [rows.length - 1, 'now']]) {
    const label = svg('text', { x: x(i), y: H - 4, class: 'axis',
      'text-anchor': i ? 'end' : 'start' });
    label.textContent = text;
    root.append(label);
  }
  for (const s of series) {
    const values = rows.map((r) => r[s.name]);
    const line = svg('polyline', {
      points: values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' '),
      stroke: s.color, class: 'series', 'data-series': s.name, 'data-values': values.join(','),
    });
    root.append(line);
  }
  return root;
}

function drawCharts(rows) {
  const queued = [{ name: 'queued', label: 'Queued', color: '#b7791f' }];
  const depth = $('chart-queued');
  depth.querySelector('svg')?.remove();
  depth.prepend(chart(rows, queued));
  depth.querySelector('[data-for="queued"]').textContent =
    `now ${rows.length ? rows[rows.length - 1].queued : 0}`;
  const through = $('chart-throughput');
  through.querySelector('svg')?.remove();
  through.prepend(chart(rows, SERIES));
  $('legend').replaceChildren(...SERIES.map((s) => {
    const total = rows.reduce((sum, r) => sum + r[s.name], 0);
    return el('li', { 'data-series': s.name },
      el('span', { class: `swatch swatch-${s.name}` }), `${s.label} `,
      el('strong', { class: 'total', 'data-total': s.name }, String(total)));
  }));
}

// ---- panels ----

function durationRow(d) {
  return el('li', { class: 'row', 'data-type': d.type },
    el('span', { class: 'name' }, d.type),
    el('span', { class: 'meta' }, `${d.count} ended`),
    el('span', { class: 'meta' }, `p50 ${ms(d.p50_ms)}`),
    el('span', { class: 'meta' }, `p99 ${ms(d.p99_ms)}`));
}

function workerRow(w) {
  const stale = w.heartbeat_age_ms > 5000;
  const running = w.running.length
    ? el('ul', { class: 'running' }, ...w.running.map((t) => el('li', {},
      el('code', {}, short(t.id)), ` ${t.type} · client `, el('code', {}, short(t.client_id)),
      ` · attempt ${t.attempts}`)))
    : el('span', { class: 'meta' }, 'idle');
  return el('li', { class: stale ? 'row stale' : 'row', 'data-worker': w.id },
    el('span', { class: 'name' }, `${w.host || '?'} · pid ${w.pid}`),
    el('span', { class: 'meta heartbeat' }, `heartbeat ${ms(w.heartbeat_age_ms)} ago`),
    el('span', { class: 'meta' }, `${w.running.length}/${w.concurrency} busy`),
    running);
}

function relayRow(r) {
  const row = el('li', { class: r.ok ? 'row' : 'row bad', 'data-relay': r.url },
    el('span', { class: 'name' }, r.url));
  if (r.ok) {
    row.append(el('span', { class: 'meta connections' }, `${r.connections} connections`),
      el('span', { class: 'meta' }, `${r.client_ids} client ids`),
      el('span', { class: 'meta' }, `${r.messages_out} sent · ${r.dropped} dropped`));
  } else {
    row.append(el('span', { class: 'meta error' }, r.error || 'unreachable'));
  }
  return row;
}

function queueRow(q) {
  return el('li', { class: 'row' }, el('span', { class: 'name' }, q.type),
    el('span', { class: 'meta' }, `${q.queued} queued`),
    el('span', { class: 'meta' }, `${q.running} running`));
}

function taskCard(t) {
  const buttons = [];
  const act = (label, method, path, done) => el('button', {
    type: 'button', class: 'small', 'data-action': label.toLowerCase(),
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api(method, path);
        toast(`${done} ${short(t.id)}`);
      } catch (error) {
        if (error instanceof Unauthorized) return signOut(error.message);
        toast(`${label}: ${error.message}`, true);
      }
      refresh();
    },
  }, label);
  if (t.status === 'queued' || t.status === 'running')
    buttons.push(act('Cancel', 'POST', `tasks/${t.id}/cancel`, 'cancel requested for'));
  if (t.status === 'failed' || t.status === 'cancelled')
    buttons.push(act('Retry', 'POST', `tasks/${t.id}/retry`, 'queued again:'));
  if (t.status !== 'queued' && t.status !== 'running')
    buttons.push(act('Delete', 'DELETE', `tasks/${t.id}`, 'deleted'));
  return el('li', { class: 'task', 'data-id': t.id, 'data-status': t.status },
    el('div', { class: 'task-head' },
      el('code', { class: 'task-id', title: t.id }, t.id),
      el('span', { class: `badge badge-${t.status}` }, t.status)),
    el('div', { class: 'task-line' },
      el('span', {}, t.type + (t.name ? ` · ${t.name}` : '')),
      el('span', {}, 'client ', el('code', { title: t.client_id }, short(t.client_id))),
      el('span', {}, `attempt ${t.attempts}/${t.max_attempts}`),
      t.finished_at ? el('span', {}, new Date(t.finished_at).toLocaleString()) : null),
    t.error ? el('pre', { class: 'outcome outcome-error' }, t.error) : null,
    buttons.length ? el('div', { class: 'actions' }, ...buttons) : null);
}

// ---- polling ----

async function refresh() {
  clearTimeout(timer);
  try {
    const [status, stats, failed] = await Promise.all([
      api('GET', 'status'), api('GET', `stats?minutes=${MINUTES}`),
      api('GET', 'tasks?status=failed&limit=50')]);
    const results = query ? await api('GET', `tasks?q=${encodeURIComponent(query)}&limit=50`) : null;
    show(true);
    drawCharts(stats.minutes);
    fill('durations', 'durations-empty', stats.durations.map(durationRow));
    fill('workers', 'workers-empty', status.workers.map(workerRow));
    fill('relays', 'relays-empty', status.relays.map(relayRow));
    fill('queues', 'queues-empty', status.queues.map(queueRow));
    fill('failed', 'failed-empty', failed.tasks.map(taskCard));
    if (results) {
      $('results').replaceChildren(...results.tasks.map(taskCard));
      $('search-empty').hidden = results.tasks.length > 0;
    }
    setLive('live', `Live · updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    if (error instanceof Unauthorized) return signOut(error.message);
    setLive('stale', `Not updated: ${error.message}`);
  }
  timer = setTimeout(refresh, POLL_MS);
}

function setLive(state, text) {
  $('live').dataset.state = state;
  $('live-text').textContent = text;
}

function show(signedIn) {
  $('dashboard').hidden = !signedIn;
  $('login').hidden = signedIn;
  $('sign-out').hidden = !signedIn;
}

function signOut(why) {
  clearTimeout(timer);
  key = null;
  window.sessionStorage.removeItem(KEY_STORE);
  // Nothing of the data stays on the page.
  for (const id of ['durations', 'workers', 'relays', 'queues', 'failed', 'results', 'legend'])
    $(id).replaceChildren();
  document.querySelectorAll('.chart svg').forEach((node) => node.remove());
  show(false);
  setLive('signed-out', 'Signed out');
  const error = $('login-error');
  error.hidden = !why;
  error.textContent = why || '';
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const given = $('key').value.trim();
  if (!given) return;
  key = given;
  try {
    await api('GET', 'status');
  } catch (error) {
    key = null;
    const message = error instanceof Unauthorized ? 'That key was refused.'
      : `The admin API cannot be reached: ${error.message}`;
    $('login-error').textContent = message;
    $('login-error').hidden = false;
    return;
  }
  window.sessionStorage.setItem(KEY_STORE, key);
  $('key').value = '';
  $('login-error').hidden = true;
  refresh();
});

$('sign-out').addEventListener('click', () => signOut(''));

$('search-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('search').value.trim().toLowerCase();
  if (text && !/^[0-9a-f]{1,32}$/.test(text)) {
    $('search-error').textContent = 'A task id or client id is up to 32 hex digits.';
    $('search-error').hidden = false;
    return;
  }
  $('search-error').hidden = true;
  query = text;
  if (!query) {
    $('results').replaceChildren();
    $('search-empty').hidden = true;
  }
  refresh();
});

if (key) refresh();
else show(false);
document.body.dataset.ready = 'true';
