// taskwire.js: the browser client for taskwire.  An ES module with no dependencies.
//
//   import { Taskwire } from '/taskwire.js';
//   const tw = new Taskwire();                 // same origin: /api/ and /ws
//   tw.on('task', (task) => render(task));     // every new state of every task, in seq order
//   tw.on('status', (s) => show(s.state));     // connecting, connected, reconnecting, polling, offline
//   tw.start();
//   await tw.submit('sleep', { duration_ms: 3000, steps: 10 }, 'a label');
//
// The WebSocket is the fast path, the REST API the truth: after every (re)connect the client
// lists its tasks over REST and merges them with what arrives live, by each task's seq, so a
// page that missed events while disconnected still ends at each task's real state, and a
// stale message never overwrites a newer one.  A resync follows the list's cursor to its last
// page and retries a failed listing with backoff.  When no WebSocket can be opened at all (a
// proxy that strips the upgrade) it polls the REST API and keeps trying the WebSocket behind it.
// Submissions carry an Idempotency-Key, so one retried after a lost reply makes one task.
// See docs/CLIENT.md.

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);
const SESSION_KEY = 'taskwire.session';
const RENEW_BEFORE_S = 60; // get a new session when the token expires within this
const REMOVED_MAX = 1000;  // ids of removed tasks remembered, so a late copy cannot bring one back
const RETRY_STATUSES = new Set([502, 503, 504]); // a submission answered so is tried again

const DEFAULTS = {
  base: '',                 // URL prefix of /api/ and /ws (same origin by default)
  identity: 'tab',          // 'tab': sessionStorage, one identity per tab; 'shared': localStorage
  backoffInitialMs: 1000,   // first reconnect delay, doubling each failed attempt ...
  backoffMaxMs: 30000,      // ... up to this; each delay is jittered down by up to half
  stableMs: 10000,          // a connection up this long resets the backoff
  pingIntervalMs: 15000,    // a {"type":"ping"} this often while connected ...
  pingTimeoutMs: 10000,     // ... and no message at all within this after it means dead
  openTimeoutMs: 10000,     // an open that has not said "connected" by then failed
  fallbackAfter: 3,         // failed opens, never connected, before polling the REST API
  pollIntervalMs: 2000,     // REST polling while the WebSocket is unavailable
  listLimit: 200,           // tasks per page of a resync (the API's maximum)
  resyncBackoffInitialMs: 500, // a failed listing is tried again after this, doubling ...
  resyncBackoffMaxMs: 30000,   // ... up to this, each delay jittered down by up to half ...
  resyncAttempts: 10,          // ... this many tries in all before that resync gives up
  submitAttempts: 4,        // tries of one submission that got no answer (same Idempotency-Key)
  submitBackoffMs: 500,     // before the second try, doubling for each further one
};

/** A delay for the attempt-th retry (0 first): initial doubling up to max, jittered down by up
 * to half, so that many pages retrying at once spread out. */
function backoffDelay(attempt, initialMs, maxMs) {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling * (0.5 + Math.random() * 0.5));
}

/** A random version 4 UUID: crypto.randomUUID where the page is a secure context (https,
 * localhost), else the same from crypto.getRandomValues (available everywhere). */
export function randomUUID() {
  if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
  const b = window.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A failed request: status and code from the API's error, or status 0 and code "network" when
 * no answer arrived (the connection failed, or the reply was cut off). */
export class TaskwireError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Taskwire {
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options };
    this.listeners = new Map();
    this.byId = new Map();
    this.removed = new Set();  // ids removed by this client: never shown again
    this.generation = 0;       // raised by close(): work begun before it merges nothing
    this.resyncWaiters = [];   // resync() callers waiting for the current cycle
    this.resyncFailures = 0;   // failed listings in the current cycle
    this.resyncRunning = false;
    this.resyncAgain = false;  // resync() called while a listing ran: list once more after it
    this.listing = null;       // the cursor of the listing under way, kept across its retries
    this.session = null;
    this.ws = null;
    this.state = 'offline';
    this.attempt = 0;          // failed attempts since the last stable connection
    this.failedOpens = 0;      // opens that never reached "connected" since one did
    this.everConnected = false;
    this.nextAttemptAt = null;
    this.timers = {};
    this.connectAttempts = 0;
    this.started = false;
    this.onOnline = () => { if (this.started && this.state !== 'connected') this.connectNow(); };
    this.onOffline = () => { if (this.started) this.dropSocket(), this.setState('offline'); };
    this.onStorage = (event) => this.sharedSessionChanged(event);
  }

  // ---- events ----

  /** on('task' | 'removed' | 'status' | 'message' | 'error', fn): returns a function that
   * removes fn. */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }

  emit(event, ...args) {
    for (const fn of this.listeners.get(event) || []) {
      try { fn(...args); } catch (e) { console.error('taskwire listener', e); }
    }
  }

  // ---- lifecycle ----

  /** Get a session if needed, connect, and keep connected until close(). */
  start() {
    if (this.started) return this;
    this.started = true;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    window.addEventListener('storage', this.onStorage);
    this.connectNow();
    return this;
  }

  /** Stop: no socket, no timers, no more events. */
  close() {
    this.started = false;
    this.generation += 1;
    this.resyncRunning = false;
    this.listing = null;
    for (const waiter of this.resyncWaiters.splice(0)) waiter.reject(new Error('closed'));
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    window.removeEventListener('storage', this.onStorage);
    this.stopPolling();
    this.dropSocket();
    for (const name of Object.keys(this.timers)) this.clearTimer(name);
    this.setState('offline');
  }

  /** The current connection status: {state, nextAttemptAt (ms since epoch or null), attempt}. */
  status() {
    return { state: this.state, nextAttemptAt: this.nextAttemptAt, attempt: this.attempt };
  }

  /** The client id of this identity (null before the first session). */
  clientId() {
    return this.session ? this.session.client_id : null;
  }

  /** Every task known, newest first. */
  tasks() {
    const time = (task) => Date.parse(task.created_at) || 0;
    return [...this.byId.values()].sort((a, b) => time(b) - time(a) || (a.id < b.id ? 1 : -1));
  }

  // ---- REST ----

  /** Submit a task: resolves to the task object (status queued). Throws TaskwireError.
   * The request carries an Idempotency-Key, new for this call: a try that got no answer (the
   * network failed, or a gateway answered 502, 503 or 504) is repeated with the same key, up to
   * submitAttempts tries, and the server answers the task the first one made, if it made one. */
  async submit(type, params = {}, name) {
    const body = { type, params };
    if (name) body.name = name;
    const headers = { 'Idempotency-Key': randomUUID() };
    for (let attempt = 1; ; attempt += 1) {
      try {
        const task = await this.request('POST', '/api/tasks', body, headers);
        if (!task || !task.id) throw new TaskwireError(0, 'network', 'POST /api/tasks: no task in the reply');
        this.merge(task, 'rest');
        return task;
      } catch (e) {
        const again = e.status === 0 || RETRY_STATUSES.has(e.status);
        if (!again || attempt >= this.options.submitAttempts) throw e;
        await sleep(backoffDelay(attempt - 1, this.options.submitBackoffMs, this.options.backoffMaxMs));
      }
    }
  }

  /** Cancel a task: resolves to the task object (cancelled, or still running until it stops). */
  async cancel(id) {
    const task = await this.request('POST', `/api/tasks/${encodeURIComponent(id)}/cancel`);
    if (task && task.id) this.merge(task, 'rest');
    return task;
  }

  /** Give a failed or cancelled task a new attempt: resolves to the task object (queued).
   * Throws TaskwireError (409 conflict when the task is queued, running or succeeded). */
  async retry(id) {
    const task = await this.request('POST', `/api/tasks/${encodeURIComponent(id)}/retry`);
    if (task && task.id) this.merge(task, 'rest');
    return task;
  }

  /** Remove a finished task: once the server has deleted it (or does not know it: 404) the
   * client forgets it and emits "removed". Throws TaskwireError (409 conflict while the task
   * is queued or running). */
  async remove(id) {
    try {
      await this.request('DELETE', `/api/tasks/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    this.forget(id);
  }

  /** The configured task types and their parameter specs (GET /api/task-types). */
  async taskTypes() {
    const answer = await this.fetchJson('GET', '/api/task-types');
    return answer.types;
  }

  /** List every task of the client over REST, page by page, and merge them: what a reconnect
   * does by itself.  Resolves to tasks() once a listing has been read to its last page.  A
   * listing that fails is tried again from the page that failed, after 0.5 s, 1 s, 2 s … 30 s
   * (jittered), resyncAttempts tries in all; then the promise rejects.  A call while a listing
   * runs makes one more full listing follow it, and starts the count of tries afresh. */
  resync() {
    return new Promise((resolve, reject) => {
      this.resyncWaiters.push({ resolve, reject });
      this.resyncFailures = 0;
      this.clearTimer('resync');
      if (this.resyncRunning) this.resyncAgain = true;
      else this.runResync(true);
    });
  }

  /** One listing of a resync cycle; schedules the next try when it fails. */
  async runResync(fresh) {
    const generation = this.generation;
    this.resyncRunning = true;
    this.resyncAgain = false;
    if (fresh || !this.listing) this.listing = { before: null };
    let error = null;
    try {
      await this.listPages(this.listing, generation);
    } catch (e) {
      error = e;
    }
    if (generation !== this.generation) return; // closed meanwhile
    this.resyncRunning = false;
    if (this.resyncAgain) { this.runResync(true); return; }
    if (!error) {
      this.listing = null;
      for (const waiter of this.resyncWaiters.splice(0)) waiter.resolve(this.tasks());
      return;
    }
    this.resyncFailures += 1;
    this.emit('error', error);
    if (this.resyncFailures >= this.options.resyncAttempts) {
      this.emit('message', { direction: 'in', channel: 'rest',
        data: `list failed ${this.resyncFailures} times: giving up until the next resync` });
      this.listing = null;
      for (const waiter of this.resyncWaiters.splice(0)) waiter.reject(error);
      return;
    }
    const o = this.options;
    const delay = backoffDelay(this.resyncFailures - 1, o.resyncBackoffInitialMs, o.resyncBackoffMaxMs);
    this.emit('message', { direction: 'in', channel: 'rest',
      data: `list failed (${this.resyncFailures} of ${o.resyncAttempts}): next try in ${(delay / 1000).toFixed(1)} s` });
    this.timers.resync = setTimeout(() => {
      delete this.timers.resync;
      this.runResync(false);
    }, delay);
  }

  /** Read the list from listing.before (null: the newest) to its last page, merging each page
   * as it arrives; listing.before moves with the pages, so a retry resumes where one failed. */
  async listPages(listing, generation) {
    for (;;) {
      let path = `/api/tasks?limit=${this.options.listLimit}`;
      if (listing.before) path += `&before=${encodeURIComponent(listing.before)}`;
      const answer = await this.request('GET', path);
      if (generation !== this.generation) return;
      if (!answer || !Array.isArray(answer.tasks)) {
        throw new TaskwireError(0, 'network', `GET ${path}: no task list in the reply`);
      }
      for (const task of answer.tasks) this.merge(task, 'rest');
      const next = answer.next_before || null;
      if (!next || next === listing.before || answer.tasks.length === 0) return;
      listing.before = next;
    }
  }

  async request(method, path, body, headers, retried = false) {
    const session = await this.ensureSession();
    try {
      return await this.fetchJson(method, path, body, session.token, headers);
    } catch (e) {
      if (e.status === 401 && !retried) { // expired or from another secret: a fresh identity
        this.forgetSession();
        return this.request(method, path, body, headers, true);
      }
      throw e;
    }
  }

  async fetchJson(method, path, body, token, extraHeaders) {
    const headers = { Accept: 'application/json', ...extraHeaders };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    this.emit('message', { direction: 'out', channel: 'rest', data: `${method} ${path}` });
    let response;
    try {
      response = await fetch(this.options.base + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (e) { // no answer at all: the server is unreachable or the connection broke
      this.emit('message', { direction: 'in', channel: 'rest', data: `no answer: ${method} ${path}` });
      throw new TaskwireError(0, 'network', `${method} ${path}: ${e.message}`);
    }
    let answer = null;
    try { answer = await response.json(); } catch (e) { answer = null; }
    this.emit('message', { direction: 'in', channel: 'rest',
      data: `${response.status} ${method} ${path}` });
    if (!response.ok) {
      const error = (answer && answer.error) || {};
      throw new TaskwireError(response.status, error.code || 'http_error',
        error.message || `${method} ${path}: HTTP ${response.status}`);
    }
    return answer;
  }

  // ---- identity ----

  storage() {
    return this.options.identity === 'shared' ? window.localStorage : window.sessionStorage;
  }

  /** The session to use; one POST /api/session at a time, however many callers wait for it. */
  ensureSession() {
    if (!this.sessionPending) {
      this.sessionPending = this.loadOrCreateSession().finally(() => { this.sessionPending = null; });
    }
    return this.sessionPending;
  }

  async loadOrCreateSession() {
    if (!this.session) {
      try { this.session = JSON.parse(this.storage().getItem(SESSION_KEY)); } catch (e) { this.session = null; }
    }
    const expires = this.session ? Date.parse(this.session.expires_at) / 1000 : 0;
    if (!this.session || !this.session.token || !(expires - Date.now() / 1000 >= RENEW_BEFORE_S)) {
      const fresh = await this.fetchJson('POST', '/api/session');
      this.session = { client_id: fresh.client_id, token: fresh.token, expires_at: fresh.expires_at };
      this.storage().setItem(SESSION_KEY, JSON.stringify(this.session));
      this.byId.clear(); // another client id: another set of tasks
    }
    return this.session;
  }

  forgetSession() {
    this.session = null;
    this.storage().removeItem(SESSION_KEY);
  }

  /** Another tab of a shared identity replaced the session (its token was refused): follow it,
   * so the tabs stay one client. */
  sharedSessionChanged(event) {
    if (this.options.identity !== 'shared' || event.key !== SESSION_KEY || !event.newValue) return;
    let fresh;
    try { fresh = JSON.parse(event.newValue); } catch (e) { return; }
    if (!fresh || !fresh.token || (this.session && fresh.client_id === this.session.client_id)) return;
    this.session = fresh;
    this.byId.clear();
    this.connectNow();
  }

  // ---- merging ----

  /** Keep task if it is newer than what we have (higher seq).  A final state is left only for
   * a higher seq (a retry's new attempt), never for a copy of the same seq; a removed task is
   * never taken back. */
  merge(task, source, event) {
    if (!task || !task.id || this.removed.has(task.id)) return false;
    if (this.session && task.client_id && task.client_id !== this.session.client_id) return false;
    const known = this.byId.get(task.id);
    if (known) {
      const seq = task.seq || 0;
      const knownSeq = known.seq || 0;
      if (seq < knownSeq) return false;
      if (seq === knownSeq) {
        if (task.status === known.status && task.progress === known.progress &&
            task.message === known.message) return false;
        if (FINAL.has(known.status) && !FINAL.has(task.status)) return false;
      }
    }
    this.byId.set(task.id, task);
    this.emit('task', task, { source, event: event || null, previous: known || null });
    return true;
  }

  /** Drop a removed task: emits "removed" if it was known, and refuses it from then on. */
  forget(id) {
    this.removed.add(id);
    if (this.removed.size > REMOVED_MAX) this.removed.delete(this.removed.values().next().value);
    const known = this.byId.get(id);
    if (!known) return;
    this.byId.delete(id);
    this.emit('removed', known, { source: 'rest' });
  }

  // ---- the WebSocket ----

  setState(state) {
    this.state = state;
    if (state === 'connected' || state === 'offline') this.nextAttemptAt = null;
    this.emit('status', this.status());
  }

  clearTimer(name) {
    if (this.timers[name]) {
      clearTimeout(this.timers[name]);
      clearInterval(this.timers[name]);
      delete this.timers[name];
    }
  }

  connectNow() {
    this.clearTimer('retry');
    this.connect().catch((e) => this.emit('error', e));
  }

  async connect() {
    if (!this.started) return;
    if (navigator.onLine === false) { this.setState('offline'); return; }
    this.dropSocket();
    const attemptId = ++this.connectAttempts; // a later connect() supersedes this one
    if (!this.polling) this.setState('connecting');
    let session;
    try {
      session = await this.ensureSession();
    } catch (e) {
      this.emit('error', e);
      if (attemptId === this.connectAttempts) this.scheduleReconnect();
      return;
    }
    if (!this.started || attemptId !== this.connectAttempts) return;
    // No token in the URL: a URL lands in web servers' logs.  It goes in the first message.
    const url = new URL(`${this.options.base}/ws`, window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(url.toString());
    } catch (e) {
      this.emit('error', e);
      this.failedOpens += 1;
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let hello = false;
    this.timers.open = setTimeout(() => { if (!hello) this.socketLost(ws, null); },
      this.options.openTimeoutMs);
    // The auth message first, before anything else; the relay answers it with "connected".
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.emit('message', { direction: 'out', channel: 'ws', data: '{"type":"auth","token":"…"}' });
      try { ws.send(JSON.stringify({ type: 'auth', token: session.token })); } catch (e) { this.socketLost(ws, null); }
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      this.clearTimer('pong'); // any message shows the connection is alive
      this.emit('message', { direction: 'in', channel: 'ws', data: event.data });
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === 'connected' && !hello) {
        hello = true;
        this.connected(ws);
      } else if (message.type === 'task') {
        this.merge(message.task, 'ws', message.event);
      } else if (message.type === 'resync') { // the relay may have missed events (pool restart)
        this.resync().catch(() => {}); // each failed try was reported as an error
      }
    };
    ws.onclose = (event) => { if (ws === this.ws) this.socketLost(ws, event); };
    ws.onerror = () => {}; // onclose follows
  }

  connected(ws) {
    this.clearTimer('open');
    this.everConnected = true;
    this.failedOpens = 0;
    this.stopPolling();
    this.setState('connected');
    this.timers.stable = setTimeout(() => { this.attempt = 0; }, this.options.stableMs);
    this.timers.ping = setInterval(() => this.heartbeat(ws), this.options.pingIntervalMs);
    // Whatever happened while we were away is in the store.
    this.resync().catch(() => {}); // each failed try was reported as an error
  }

  /** Send a ping; if nothing at all (a pong or anything else) arrives within pingTimeoutMs,
   * the connection is dead even though the browser has not noticed (a half-open TCP
   * connection, a proxy that stopped forwarding): drop it and reconnect. */
  heartbeat(ws) {
    if (ws !== this.ws) return;
    const ping = '{"type":"ping"}';
    this.emit('message', { direction: 'out', channel: 'ws', data: ping });
    try { ws.send(ping); } catch (e) { this.socketLost(ws, null); return; }
    if (!this.timers.pong) {
      this.timers.pong = setTimeout(() => this.socketLost(ws, null), this.options.pingTimeoutMs);
    }
  }

  dropSocket() {
    for (const name of ['open', 'ping', 'pong', 'stable']) this.clearTimer(name);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (e) { /* already closed */ }
    }
  }

  socketLost(ws, event) {
    if (ws !== this.ws) return;
    const wasConnected = this.state === 'connected';
    const why = event ? `closed ${event.code}${event.reason ? ` (${event.reason})` : ''}`
      : (wasConnected ? 'silent: dropped' : 'no answer: dropped');
    this.emit('message', { direction: 'in', channel: 'ws', data: why });
    this.dropSocket();
    if (event && event.code === 4001) this.forgetSession(); // a token the relay refuses
    if (!wasConnected) this.failedOpens += 1;
    if (!this.started) return;
    if (!this.everConnected || this.polling) {
      if (this.failedOpens >= this.options.fallbackAfter) this.startPolling();
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (!this.started) return;
    const delay = backoffDelay(this.attempt, this.options.backoffInitialMs, this.options.backoffMaxMs);
    this.attempt += 1;
    this.nextAttemptAt = Date.now() + delay;
    this.clearTimer('retry');
    this.timers.retry = setTimeout(() => this.connectNow(), delay);
    this.setState(this.polling ? 'polling' : 'reconnecting');
  }

  // ---- polling, when no WebSocket opens ----

  startPolling() {
    if (this.polling) return;
    this.polling = true;
    // A listing under way or waiting to be tried again is this poll already: a failing list is
    // then tried at the resync's backoff, not every pollIntervalMs.
    const poll = () => {
      if (!this.resyncRunning && !this.timers.resync) this.resync().catch(() => {});
    };
    poll();
    this.timers.poll = setInterval(poll, this.options.pollIntervalMs);
  }

  stopPolling() {
    this.polling = false;
    this.clearTimer('poll');
  }
}

/** Whether a status is final (succeeded, failed, cancelled). */
export function isFinal(status) {
  return FINAL.has(status);
}
