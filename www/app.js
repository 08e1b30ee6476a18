// app.js: the task monitor page, on the client library (taskwire.js).
import { Taskwire, isFinal } from './taskwire.js';

const MODE_KEY = 'taskwire.identity';   // 'tab' (default) or 'shared', for this browser
const SESSION_KEY = 'taskwire.session';
const LOG_MAX = 200;
const $ = (id) => document.getElementById(id);

let client = null;
let types = [];
const cards = new Map();
let renderQueued = false;

// ---- identity: per tab by default, or shared by the browser's tabs ----

function mode() {
  return window.localStorage.getItem(MODE_KEY) === 'shared' ? 'shared' : 'tab';
}

function setMode(shared) {
  if (shared && !window.localStorage.getItem(SESSION_KEY)) {
    // This tab's identity (and its tasks) becomes the one the tabs share.
    const mine = window.sessionStorage.getItem(SESSION_KEY);
    if (mine) window.localStorage.setItem(SESSION_KEY, mine);
  }
  window.localStorage.setItem(MODE_KEY, shared ? 'shared' : 'tab');
  startClient();
}

// ---- connection indicator ----

function showStatus(status) {
  const box = $('connection');
  box.dataset.state = status.state;
  const text = $('connection-text');
  const seconds = status.nextAttemptAt ? Math.max(0, Math.ceil((status.nextAttemptAt - Date.now()) / 1000)) : null;
  switch (status.state) {
    case 'connected': text.textContent = 'Connected'; break;
    case 'connecting': text.textContent = 'Connecting…'; break;
    case 'reconnecting':
      text.textContent = seconds === null ? 'Reconnecting…' : `Reconnecting in ${seconds} s`;
      break;
    case 'polling':
      text.textContent = 'Polling (live updates unavailable)';
      break;
    default: text.textContent = 'Offline';
  }
}

// ---- log and toasts ----

function log(entry) {
  const item = document.createElement('li');
  item.className = `log-${entry.direction} log-${entry.channel}`;
  const time = new Date().toLocaleTimeString();
  const arrow = entry.direction === 'in' ? '←' : '→';
  item.textContent = `${time} ${arrow} ${entry.channel.toUpperCase()} ${entry.data}`;
  const list = $('log');
  list.prepend(item);
  while (list.children.length > LOG_MAX) list.lastChild.remove();
}

function toast(text, kind) {
  const box = document.createElement('div');
  box.className = `toast toast-${kind}`;
  box.textContent = text;
  $('toasts').append(box);
  setTimeout(() => box.remove(), 5000);
}

// ---- the form, built from GET /api/task-types ----

function buildParams() {
  const holder = $('task-params');
  holder.replaceChildren();
  const type = types.find((t) => t.name === $('task-type').value);
  if (!type) return;
  for (const spec of type.params) {
    const field = document.createElement('div');
    field.className = 'field';
    const id = `param-${spec.name}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = spec.name.replace(/_/g, ' ');
    let input;
    if (spec.type === 'boolean') {
      field.classList.add('check');
      input = document.createElement('input');
      input.type = 'checkbox';
      input.checked = spec.default === true;
    } else {
      input = document.createElement('input');
      if (spec.type === 'integer') {
        input.type = 'number';
        input.step = '1';
        if (spec.min !== undefined) input.min = spec.min;
        if (spec.max !== undefined) input.max = spec.max;
        const range = document.createElement('span');
        range.className = 'hint';
        range.textContent = ` (${spec.min}–${spec.max})`;
        label.append(range);
      } else {
        input.type = 'text';
        if (spec.min_length !== undefined) input.minLength = spec.min_length;
        if (spec.max_length !== undefined) input.maxLength = spec.max_length;
      }
      if (spec.default !== undefined) input.value = spec.default;
      else input.required = true;
    }
    input.id = id;
    input.name = spec.name;
    input.dataset.kind = spec.type;
    field.append(label, input);
    holder.append(field);
  }
}

function formParams() {
  const params = {};
  for (const input of $('task-params').querySelectorAll('input')) {
    if (input.dataset.kind === 'boolean') params[input.name] = input.checked;
    else if (input.dataset.kind === 'integer') {
      if (input.value !== '') params[input.name] = Number(input.value);
    } else if (input.value !== '') params[input.name] = input.value;
  }
  return params;
}

async function onSubmit(event) {
  event.preventDefault();
  const error = $('form-error');
  error.hidden = true;
  $('submit').disabled = true;
  try {
    await client.submit($('task-type').value, formParams(), $('task-name').value.trim() || undefined);
    $('task-name').value = '';
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  } finally {
    $('submit').disabled = false;
  }
}

// ---- task cards ----

function duration(seconds) {
  return seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

/** Whole seconds until the task's run_at, or 0 once it has come (or when there is none). */
function secondsToRunAt(task) {
  const at = Date.parse(task.run_at);
  return Number.isNaN(at) ? 0 : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** A queued task that has had an attempt waits for its next one (a retry). */
function retrying(task) {
  return task.status === 'queued' && (task.attempts || 0) >= 1;
}

/** "attempt 2 of 3, retrying in 8 s" while a retry waits, "attempt 2 of 3" while a later attempt
 * runs or after it ended, "starts in 5 s" for a first attempt scheduled later, else nothing.
 * max_attempts counts only attempts that end in an error, attempts every one started (a
 * stopping worker's hand-back too): a number past the budget is shown without "of". */
function attemptText(task) {
  const attempts = task.attempts || 0;
  const number = retrying(task) ? attempts + 1 : attempts;
  const of = task.max_attempts && number <= task.max_attempts ? ` of ${task.max_attempts}` : '';
  const wait = secondsToRunAt(task);
  if (retrying(task)) return `attempt ${number}${of}, ${wait ? `retrying in ${duration(wait)}` : 'retrying now'}`;
  if (task.status === 'queued') return wait ? `starts in ${duration(wait)}` : '';
  return attempts > 1 ? `attempt ${number}${of}` : '';
}

function elapsed(task) {
  if (task.status === 'queued') return retrying(task) ? '' : 'waiting';
  if (!task.started_at) return '';
  const end = task.finished_at ? Date.parse(task.finished_at) : Date.now();
  const seconds = Math.max(0, (end - Date.parse(task.started_at)) / 1000);
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function card(task) {
  let item = cards.get(task.id);
  if (!item) {
    item = document.createElement('li');
    item.className = 'task';
    item.dataset.taskId = task.id;
    item.innerHTML = `
      <div class="task-head">
        <span class="task-name"></span>
        <span class="task-type"></span>
        <span class="badge"></span>
      </div>
      <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100">
        <div class="progress-fill"></div>
      </div>
      <div class="task-line">
        <span class="percent"></span>
        <span class="step"></span>
        <span class="attempt"></span>
        <span class="elapsed"></span>
      </div>
      <pre class="outcome" hidden></pre>
      <details class="history" hidden><summary></summary><ol></ol></details>
      <div class="actions">
        <button type="button" class="cancel">Cancel</button>
        <button type="button" class="retry">Retry</button>
        <button type="button" class="remove">Remove</button>
      </div>`;
    const act = (selector, action) => {
      const button = item.querySelector(selector);
      button.addEventListener('click', async () => {
        button.disabled = true;
        try {
          await action(item.dataset.taskId);
        } catch (err) {
          toast(err.message, 'failed');
          button.disabled = false;
        }
      });
    };
    act('.cancel', (id) => client.cancel(id));
    act('.retry', (id) => client.retry(id));
    act('.remove', (id) => client.remove(id));
    cards.set(task.id, item);
  }
  const name = task.name || task.type;
  if (item.dataset.status !== task.status) { // a new state: its buttons may be pressed again
    for (const button of item.querySelectorAll('.actions button')) button.disabled = false;
  }
  item.dataset.status = task.status;
  item.querySelector('.task-name').textContent = name;
  item.querySelector('.task-type').textContent = task.type;
  const badge = item.querySelector('.badge');
  const shown = retrying(task) ? 'retrying' : task.status;
  badge.textContent = shown;
  badge.className = `badge badge-${shown}`;
  const bar = item.querySelector('.progress');
  bar.setAttribute('aria-valuenow', String(task.progress));
  bar.setAttribute('aria-label', `${name}: ${task.progress}%`);
  item.querySelector('.progress-fill').style.width = `${task.progress}%`;
  item.querySelector('.percent').textContent = `${task.progress}%`;
  item.querySelector('.step').textContent = task.message || '';
  const attempt = item.querySelector('.attempt');
  attempt.textContent = attemptText(task);
  attempt.hidden = !attempt.textContent;
  item.querySelector('.elapsed').textContent = elapsed(task);
  const outcome = item.querySelector('.outcome');
  if (task.status === 'failed' || task.status === 'cancelled' || retrying(task)) {
    outcome.hidden = !task.error;
    outcome.textContent = task.error || '';
    outcome.className = 'outcome outcome-error';
  } else if (task.result !== null && task.result !== undefined) {
    outcome.hidden = false;
    outcome.textContent = JSON.stringify(task.result);
    outcome.className = 'outcome';
  } else {
    outcome.hidden = true;
  }
  history(item, task, !outcome.hidden && outcome.classList.contains('outcome-error'));
  const cancel = item.querySelector('.cancel');
  cancel.hidden = isFinal(task.status);
  cancel.setAttribute('aria-label', `Cancel ${name}`);
  const retry = item.querySelector('.retry');
  retry.hidden = task.status !== 'failed' && task.status !== 'cancelled';
  retry.setAttribute('aria-label', `Retry ${name}`);
  const remove = item.querySelector('.remove');
  remove.hidden = !isFinal(task.status);
  remove.setAttribute('aria-label', `Remove ${name}`);
  return item;
}

/** The errors of the task's ended attempts, folded away; not shown when the only one is the
 * error the card already shows. */
function history(item, task, errorShown) {
  const errors = Array.isArray(task.errors) ? task.errors : [];
  const box = item.querySelector('.history');
  box.hidden = errors.length === 0 || (errors.length === 1 && errorShown);
  if (box.hidden || box.dataset.count === String(errors.length)) return;
  box.dataset.count = String(errors.length);
  box.querySelector('summary').textContent =
    errors.length === 1 ? '1 failed attempt' : `${errors.length} failed attempts`;
  box.querySelector('ol').replaceChildren(...errors.map((entry) => {
    const line = document.createElement('li');
    const at = Date.parse(entry.at);
    const when = Number.isNaN(at) ? '' : ` at ${new Date(at).toLocaleTimeString()}`;
    const where = entry.host || entry.worker ? ` on ${entry.host || entry.worker}` : '';
    line.textContent = `attempt ${entry.attempt}${when}${where}: ${entry.error || 'no error text'}`;
    return line;
  }));
}

/** Put the cards in the list's order, moving only what must move: a card that stays in place
 * keeps the keyboard focus of its cancel button while progress events arrive. */
function render() {
  const list = $('task-list');
  const tasks = client.tasks();
  let at = list.firstElementChild;
  for (const task of tasks) {
    const item = card(task);
    if (item === at) at = at.nextElementSibling;
    else list.insertBefore(item, at);
  }
  while (at) {
    const next = at.nextElementSibling;
    at.remove();
    at = next;
  }
  $('empty').hidden = tasks.length > 0;
}

/** Many tasks can change at once (a page of a resync): draw once after them. */
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    render();
  });
}

function onTask(task, info) {
  scheduleRender();
  const before = info.previous;
  if (isFinal(task.status) && before && !isFinal(before.status) && task.status !== 'cancelled') {
    toast(`${task.name || task.type} ${task.status}`, task.status);
  }
}

/** A removed task leaves the page at once; the keyboard focus, if it was on its card, moves to
 * the next card (or the one before, or the list's heading). */
function onRemoved(task) {
  const item = cards.get(task.id);
  cards.delete(task.id);
  if (!item) return;
  if (item.contains(document.activeElement)) {
    const near = item.nextElementSibling || item.previousElementSibling;
    const target = near ? [...near.querySelectorAll('button')].find((b) => !b.hidden) : null;
    (target || $('tasks-title')).focus();
  }
  item.remove();
  $('empty').hidden = client.tasks().length > 0;
}

// ---- start ----

function startClient() {
  if (client) client.close();
  cards.clear();
  $('share-identity').checked = mode() === 'shared';
  const params = new URLSearchParams(window.location.search);
  const options = { identity: mode() };
  for (const key of ['backoffInitialMs', 'pingIntervalMs', 'pingTimeoutMs', 'fallbackAfter',
    'pollIntervalMs', 'resyncBackoffInitialMs', 'resyncBackoffMaxMs', 'resyncAttempts']) {
    if (params.has(key)) options[key] = Number(params.get(key));
  }
  if (params.get('relays')) options.relays = params.get('relays').split(',').filter(Boolean);
  client = new Taskwire(options);
  client.on('task', onTask);
  client.on('removed', onRemoved);
  client.on('status', (status) => {
    showStatus(status);
    $('client-id').textContent = client.clientId() || '…';
    scheduleRender();
  });
  client.on('message', log);
  client.on('error', (e) => log({ direction: 'in', channel: 'error', data: e.message }));
  client.start();
}

async function main() {
  $('task-form').addEventListener('submit', onSubmit);
  $('task-type').addEventListener('change', buildParams);
  $('share-identity').addEventListener('change', (e) => setMode(e.target.checked));
  startClient();
  try {
    types = await client.taskTypes();
    $('task-type').replaceChildren(...types.map((t) => new Option(t.label || t.name, t.name)));
    buildParams();
  } catch (e) {
    $('form-error').textContent = `Cannot load the task types: ${e.message}`;
    $('form-error').hidden = false;
  }
  // The countdown and the elapsed times move every second.
  setInterval(() => {
    showStatus(client.status());
    for (const task of client.tasks()) if (!isFinal(task.status)) card(task);
  }, 1000);
  document.body.dataset.ready = 'true';
}

main();
