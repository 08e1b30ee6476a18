// board.js: the project board page, on the client library (taskwire.js).
//
// One project channel (?project=demo: "project:demo"): the tasks its members submit with it
// appear on every member's board and move live; who is on the board (presence, with each one's
// connections); the project's news (messages a server publishes to the channel, recovered
// after a reconnect when the namespace keeps history).  A click on a task opens its room, the
// channel "task:ID": who else watches it, comments, and a typing line ("alice is typing…")
// sent with publish, at most one publish per TYPING_EVERY_MS while typing, gone after
// TYPING_SILENCE_MS without one.  The session needs a channels claim granting the project and
// task rooms ([auth] session_channels, docs/AUTH.md).
import { Taskwire, isFinal } from './taskwire.js';

const NAME_KEY = 'taskwire.board.name';
const TYPING_EVERY_MS = 2000;   // a typing publish at most this often while typing
const TYPING_SILENCE_MS = 4000; // another's typing line goes this long after their last one
const ANNOUNCE_EVERY_MS = 2000; // our name to the project at most this often
const LOG_MAX = 200;            // lines of the message log
const FEED_MAX = 100;           // news items shown; the oldest go
const COMMENTS_MAX = 200;       // comments shown in a room; the oldest go
const NAMES_MAX = 1000;         // names learned from others' messages; the oldest go
const $ = (id) => document.getElementById(id);

const query = new URLSearchParams(window.location.search);
const project = `project:${query.get('project') || 'demo'}`;
const names = new Map(); // client id -> the name its board announced
// What the tests (and a curious person at the console) can read.
const board = { project, client: null, publishRefusals: 0, rateLimited: 0, recoveries: [] };
window.board = board;
let client = null;
let room = null;          // {id, channel, typers: Map(client id -> {name, timer})}
let lastTypingAt = 0;     // when our last typing publish went
let lastAnnounceAt = 0;
let announceTimer = null;
let renderQueued = false;

// ---- who is who ----

function myName() {
  return $('my-name').value.trim() || 'guest';
}

function initialName() {
  const given = query.get('name') || window.localStorage.getItem(NAME_KEY);
  if (given) return given.slice(0, 32);
  const bytes = window.crypto.getRandomValues(new Uint8Array(2));
  return `guest-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

function learnName(clientId, name) {
  if (typeof clientId !== 'string' || typeof name !== 'string' || !name.trim()) return;
  names.delete(clientId);
  names.set(clientId, name.trim().slice(0, 32));
  if (names.size > NAMES_MAX) names.delete(names.keys().next().value);
}

function displayName(clientId) {
  if (clientId && clientId === client.clientId()) return `${myName()} (you)`;
  return names.get(clientId) || `client ${String(clientId).slice(0, 6)}`;
}

/** Tell the project our name (others show it instead of a client id): at most once per
 * ANNOUNCE_EVERY_MS, the last call of a burst sent when its turn comes. */
function announce() {
  const wait = lastAnnounceAt + ANNOUNCE_EVERY_MS - Date.now();
  if (announceTimer) return;
  if (wait > 0) {
    announceTimer = setTimeout(() => { announceTimer = null; announce(); }, wait);
    return;
  }
  lastAnnounceAt = Date.now();
  client.publish(project, { who: myName() }).catch(publishRefused);
}

/** A publish the relay refused, or that found no connection: counted, and shown once as a
 * quiet notice (typing is best effort: no error per keystroke). */
function publishRefused(error) {
  board.publishRefusals += 1;
  if (error.code === 'rate_limited') {
    board.rateLimited += 1;
    notice('Typing updates are held back for a moment (rate limited).', 'rate-limited');
  }
}

// ---- status, errors, notices, log ----

function showStatus(status) {
  const box = $('connection');
  box.dataset.state = status.state;
  const seconds = status.nextAttemptAt ? Math.max(0, Math.ceil((status.nextAttemptAt - Date.now()) / 1000)) : null;
  const text = {
    connected: 'Connected', connecting: 'Connecting…', polling: 'Polling (live updates unavailable)',
    reconnecting: seconds === null ? 'Reconnecting…' : `Reconnecting in ${seconds} s`,
  }[status.state] || 'Offline';
  $('connection-text').textContent = text;
  box.title = status.relay || '';
}

function showError(text) {
  const box = $('board-error');
  box.textContent = text;
  box.hidden = !text;
}

function notice(text, kind) {
  const box = $('notice');
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
}

function log(entry) {
  const item = document.createElement('li');
  item.className = `log-${entry.direction} log-${entry.channel}`;
  const arrow = entry.direction === 'in' ? '←' : '→';
  item.textContent = `${new Date().toLocaleTimeString()} ${arrow} ${entry.channel.toUpperCase()} ${entry.data}`;
  const list = $('log');
  list.prepend(item);
  while (list.children.length > LOG_MAX) list.lastChild.remove();
}

// ---- presence lists ----

function renderMembers(list, clients) {
  list.replaceChildren(...clients.map((c) => {
    const item = document.createElement('li');
    item.dataset.clientId = c.client_id;
    item.dataset.connections = String(c.connections);
    const tabs = c.connections === 1 ? '1 connection' : `${c.connections} connections`;
    item.textContent = `${displayName(c.client_id)} · ${tabs}`;
    if (c.client_id === client.clientId()) item.classList.add('me');
    return item;
  }));
}

function redrawPresence() {
  const members = client.presenceOf(project);
  if (members) renderMembers($('members'), members);
  if (room) {
    const watchers = client.presenceOf(room.channel);
    if (watchers) renderMembers($('room-watchers'), watchers);
  }
}

function onPresence({ channel, change, error }) {
  if (channel === project) {
    $('members-hint').hidden = !error; // a server without presence, or one that refused it
    if (change && change.action === 'join' && change.client_id !== client.clientId()) announce();
  }
  redrawPresence();
}

// ---- the project's tasks and news ----

const cards = new Map(); // task id -> its card, updated in place (a click lands on what it aimed at)

function taskCard(task) {
  let item = cards.get(task.id);
  if (!item) {
    item = document.createElement('li');
    item.className = 'task board-task';
    item.dataset.taskId = task.id;
    item.innerHTML = `
      <div class="task-head">
        <span class="task-name"></span>
        <span class="task-owner"></span>
        <span class="badge"></span>
      </div>
      <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100">
        <div class="progress-fill"></div>
      </div>
      <div class="task-line"><span class="percent"></span><span class="step"></span></div>
      <div class="actions"><button type="button" class="open-room">Open room</button></div>`;
    item.querySelector('.open-room').addEventListener('click', () => openRoom(task.id));
    cards.set(task.id, item);
  }
  const name = task.name || task.type;
  item.dataset.status = task.status;
  item.classList.toggle('open', !!room && room.id === task.id);
  item.querySelector('.task-name').textContent = name;
  item.querySelector('.task-owner').textContent = `by ${displayName(task.client_id)}`;
  const badge = item.querySelector('.badge');
  badge.textContent = task.status;
  badge.className = `badge badge-${task.status}`;
  const bar = item.querySelector('.progress');
  bar.setAttribute('aria-valuenow', String(task.progress));
  bar.setAttribute('aria-label', `${name}: ${task.progress}%`);
  item.querySelector('.progress-fill').style.width = `${task.progress}%`;
  item.querySelector('.percent').textContent = `${task.progress}%`;
  item.querySelector('.step').textContent = task.message || '';
  item.querySelector('.open-room').setAttribute('aria-label', `Open the room of ${name}`);
  return item;
}

/** The cards in the channel's order (newest first), moving only what must move. */
function render() {
  const tasks = client.channelTasks(project);
  const list = $('board-tasks');
  let at = list.firstElementChild;
  for (const task of tasks) {
    const item = taskCard(task);
    if (item === at) at = at.nextElementSibling;
    else list.insertBefore(item, at);
  }
  while (at) {
    const next = at.nextElementSibling;
    cards.delete(at.dataset.taskId);
    at.remove();
    at = next;
  }
  $('empty').hidden = tasks.length > 0;
  if (room) {
    const task = tasks.find((t) => t.id === room.id);
    $('room-task').textContent = task
      ? `${task.name || task.type}: ${task.status} ${task.progress}%${isFinal(task.status) ? '' : ` · ${task.message || ''}`}`
      : `task ${room.id}`;
  }
}

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => { renderQueued = false; render(); });
}

function addNews(message) {
  const data = message.data || {};
  const item = document.createElement('li');
  if (Number.isInteger(message.offset)) item.dataset.offset = String(message.offset);
  item.textContent = typeof data.text === 'string' ? data.text : JSON.stringify(data);
  const list = $('feed');
  list.append(item);
  while (list.children.length > FEED_MAX) list.firstChild.remove();
}

function onProjectMessage(message) {
  if (message.type === 'task') { scheduleRender(); return; }
  if (message.type !== 'message') return;
  const data = message.data || {};
  if (message.from) { // another member's board: its name
    if (typeof data.who === 'string') {
      learnName(message.from, data.who);
      redrawPresence();
      scheduleRender();
    }
    return;
  }
  addNews(message); // the project's news, from the application's servers
}

// ---- a task's room ----

function renderTyping() {
  const who = room ? [...room.typers.values()].map((t) => t.name) : [];
  const line = $('typing');
  line.textContent = who.length === 0 ? ''
    : who.length === 1 ? `${who[0]} is typing…` : `${who.slice(0, -1).join(', ')} and ${who.at(-1)} are typing…`;
  line.dataset.count = String(who.length);
}

function stopTyping(clientId) {
  const typer = room && room.typers.get(clientId);
  if (!typer) return;
  clearTimeout(typer.timer);
  room.typers.delete(clientId);
  renderTyping();
}

function addComment(name, text, mine) {
  const item = document.createElement('li');
  if (mine) item.className = 'mine';
  const who = document.createElement('strong');
  who.textContent = name;
  item.append(who, ` ${text}`);
  const list = $('comments');
  list.append(item);
  while (list.children.length > COMMENTS_MAX) list.firstChild.remove();
}

function onRoomMessage(current, message) {
  if (room !== current || message.type !== 'message' || !message.from) return;
  const data = message.data || {};
  if (typeof data.name === 'string' && names.get(message.from) !== data.name.trim().slice(0, 32)) {
    learnName(message.from, data.name);
    redrawPresence();
    scheduleRender();
  }
  const name = displayName(message.from);
  if (typeof data.comment === 'string') {
    stopTyping(message.from);
    addComment(name, data.comment, false);
  } else if (data.typing === true) {
    const typer = room.typers.get(message.from) || { name };
    clearTimeout(typer.timer);
    typer.name = name;
    typer.timer = setTimeout(() => stopTyping(message.from), TYPING_SILENCE_MS);
    room.typers.set(message.from, typer);
    renderTyping();
  } else if (data.typing === false) {
    stopTyping(message.from);
  }
}

function openRoom(id) {
  if (room && room.id === id) return;
  closeRoom();
  const current = { id, channel: `task:${id}`, typers: new Map() };
  room = current;
  $('room').hidden = false;
  $('room').dataset.taskId = id;
  document.body.classList.add('room-open');
  $('comments').replaceChildren();
  $('room-watchers').replaceChildren();
  $('comment-error').hidden = true;
  renderTyping();
  render();
  client.subscribe(current.channel, (m) => onRoomMessage(current, m), { presence: true })
    .catch((e) => {
      if (room !== current) return;
      $('comment-error').textContent = `Cannot join this room: ${e.code}${e.message ? ` (${e.message})` : ''}`;
      $('comment-error').hidden = false;
    });
  $('comment-input').focus();
}

function closeRoom() {
  if (!room) return;
  for (const typer of room.typers.values()) clearTimeout(typer.timer);
  client.unsubscribe(room.channel).catch(() => {});
  room = null;
  $('room').hidden = true;
  delete $('room').dataset.taskId;
  document.body.classList.remove('room-open');
  render();
}

function onCommentInput() {
  if (!room || !$('comment-input').value.trim()) return;
  const now = Date.now();
  if (now - lastTypingAt < TYPING_EVERY_MS) return;
  lastTypingAt = now;
  client.publish(room.channel, { typing: true, name: myName() }).catch(publishRefused);
}

async function onCommentSubmit(event) {
  event.preventDefault();
  const input = $('comment-input');
  const text = input.value.trim();
  if (!room || !text) return;
  const error = $('comment-error');
  error.hidden = true;
  try {
    await client.publish(room.channel, { comment: text, name: myName() });
    addComment(`${myName()} (you)`, text, true); // the relay hands no one their own message
    input.value = '';
    lastTypingAt = 0;
  } catch (e) {
    error.textContent = `Not sent: ${e.code}${e.message ? ` (${e.message})` : ''}`;
    error.hidden = false;
  }
}

// ---- the new task form ----

async function onSubmit(event) {
  event.preventDefault();
  const error = $('form-error');
  error.hidden = true;
  const name = $('task-name').value.trim();
  if (!name) {
    error.textContent = 'A task needs a name.';
    error.hidden = false;
    return;
  }
  $('submit').disabled = true;
  try {
    await client.submit('sleep', { duration_ms: Number($('task-duration').value),
      steps: Number($('task-steps').value) }, name, { channels: [project] });
    $('task-name').value = '';
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  } finally {
    $('submit').disabled = false;
  }
}

// ---- start ----

function options() {
  const o = {};
  for (const key of ['backoffInitialMs', 'pingIntervalMs', 'pingTimeoutMs', 'fallbackAfter',
    'pollIntervalMs', 'resyncBackoffInitialMs', 'resyncBackoffMaxMs', 'resyncAttempts']) {
    if (query.has(key)) o[key] = Number(query.get(key));
  }
  if (query.get('relays')) o.relays = query.get('relays').split(',').filter(Boolean);
  if (query.get('identity') === 'shared') o.identity = 'shared';
  return o;
}

function main() {
  $('project-name').textContent = project;
  $('my-name').value = initialName();
  $('my-name').addEventListener('change', () => {
    window.localStorage.setItem(NAME_KEY, myName());
    announce();
    redrawPresence();
    scheduleRender();
  });
  $('task-form').addEventListener('submit', onSubmit);
  $('comment-form').addEventListener('submit', onCommentSubmit);
  $('comment-input').addEventListener('input', onCommentInput);
  $('room-close').addEventListener('click', closeRoom);

  client = new Taskwire(options());
  board.client = client;
  client.on('status', (status) => {
    showStatus(status);
    $('client-id').textContent = client.clientId() || '…';
  });
  client.on('message', log);
  client.on('error', (e) => log({ direction: 'in', channel: 'error', data: e.message }));
  client.on('presence', onPresence);
  client.on('recovered', (r) => {
    if (r.channel !== project) return;
    board.recoveries.push({ recovered: r.recovered, missed: r.missed || 0 });
    document.body.dataset.recovered = String(r.recovered);
    if (!r.recovered) notice('Some project news was missed while offline: more than the history keeps.', 'missed');
  });
  client.subscribe(project, onProjectMessage, { presence: true, history: true })
    .then(() => {
      showError('');
      document.body.dataset.joined = 'true';
      announce();
    })
    .catch((e) => {
      document.body.dataset.joined = 'false';
      showError(`Cannot join ${project}: ${e.code}${e.message && e.message !== e.code ? ` (${e.message})` : ''}`);
    });
  client.start();
  setInterval(() => showStatus(client.status()), 1000); // the countdown to the next try
  document.body.dataset.ready = 'true';
}

main();
