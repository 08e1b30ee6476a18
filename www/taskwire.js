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
//
// Channels (project rooms, task rooms): subscribe(channel, onMessage) is kept across
// reconnects and sent again after every "connected"; a channel's messages that carry an offset
// and epoch (a namespace with history) move the channel's position, and after a reconnect the
// messages missed since it are read over REST and handed over in offset order before the live
// ones that came meanwhile.  publish() sends a message to a channel's subscribers; presence()
// and the "presence" event say who is in one.  With a list of relays, each failed connect or
// drop moves the next try to the next relay.
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
  relays: null,             // WebSocket URLs tried in turn (null: base + '/ws', the one relay)
  session: null,            // async () => ({token}): a token the app's backend minted, asked
                            // for instead of POST /api/session (again when one is refused)
  channelBufferMax: 1000,   // live messages a channel holds while its history is read; then
                            // the oldest go (those with an offset come back from the history)
  channelTasksMax: 1000,    // tasks remembered per channel; then the oldest finished ones go
  publishPendingMax: 32,    // publishes awaiting the relay's reply; one more is refused at once
  messageMax: 8704,         // bytes of one message to the relay: its limit with the default
                            // [channels] publish_max of 4096 (512 + twice that; it closes the
                            // connection, 1009, on a longer one); a longer publish is refused here
};

// A channel name as the relay takes it: what can go in a URL's path as it is.
const CHANNEL_NAME = /^[A-Za-z0-9:._-]{1,64}$/;
// The relay echoes a requested channel that was not a string of at most 64 bytes as null.
const echoable = (channel) => typeof channel === 'string' && new TextEncoder().encode(channel).length <= 64;
// Client errors of the history and presence endpoints that no retry mends.
const FINAL_HTTP = new Set([400, 401, 403, 404, 405, 409, 410, 422]);

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

/** A channel request the relay refused (reason in code), or one that never got its answer
 * (code "not_connected" or "disconnected"); status 0. */
function refusal(request, channel, reason, message) {
  const error = new TaskwireError(0, reason, message || `${request} ${channel}: ${reason}`);
  error.request = request;
  error.channel = channel;
  return error;
}

/** The path segment of a channel: as it is when it holds only what a path may (the names a
 * relay accepts), else percent-encoded. */
function channelPath(channel) {
  return CHANNEL_NAME.test(channel) ? channel : encodeURIComponent(channel);
}

export class Taskwire {
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options };
    if (typeof this.options.relays === 'string') this.options.relays = [this.options.relays];
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
    this.relayIndex = 0;       // the relay of options.relays tried next (or connected to)
    this.channels = new Map(); // channel -> its subscription (see subscribe)
    this.pending = [];         // channel requests sent on this.ws awaiting their reply, in order
    this.onOnline = () => { if (this.started && this.state !== 'connected') this.connectNow(); };
    this.onOffline = () => { if (this.started) this.dropSocket(), this.setState('offline'); };
    this.onStorage = (event) => this.sharedSessionChanged(event);
  }

  // ---- events ----

  /** on('task' | 'removed' | 'status' | 'message' | 'error' | 'subscribed' | 'refused' |
   * 'recovered' | 'presence', fn): returns a function that removes fn. */
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
    this.failPending('closed');
    for (const sub of this.channels.values()) {
      sub.recovering = false;
      sub.presenceLoading = false;
      for (const waiter of sub.waiters.splice(0)) waiter.reject(refusal('subscribe', sub.name, 'closed', 'closed'));
    }
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    window.removeEventListener('storage', this.onStorage);
    this.stopPolling();
    this.dropSocket();
    for (const name of Object.keys(this.timers)) this.clearTimer(name);
    this.setState('offline');
  }

  /** The current connection status: {state, nextAttemptAt (ms since epoch or null), attempt,
   * relay (the WebSocket URL connected to, or tried next)}. */
  status() {
    return { state: this.state, nextAttemptAt: this.nextAttemptAt, attempt: this.attempt,
      relay: this.relayUrl() };
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
   * more adds members of the request: {channels: ['project:42']} sends the task's events to
   * those channels too; priority, delay_ms, run_at.
   * The request carries an Idempotency-Key, new for this call: a try that got no answer (the
   * network failed, or a gateway answered 502, 503 or 504) is repeated with the same key, up to
   * submitAttempts tries, and the server answers the task the first one made, if it made one. */
  async submit(type, params = {}, name, more = {}) {
    const body = { ...more, type, params }; // more: channels, priority, delay_ms or run_at
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
      const fresh = await this.newSession();
      // cookie: POST /api/session also set the token as an HttpOnly cookie for the relay's path.
      this.session = { client_id: fresh.client_id, token: fresh.token, expires_at: fresh.expires_at,
        cookie: fresh.cookie === true };
      this.cookieRefused = false;
      this.storage().setItem(SESSION_KEY, JSON.stringify(this.session));
      this.byId.clear(); // another client id: another set of tasks
    }
    return this.session;
  }

  /** A new session: POST /api/session, or the app's own (options.session), whose client id
   * and expiry come from its token's claims when it does not give them. */
  async newSession() {
    if (typeof this.options.session !== 'function') return this.fetchJson('POST', '/api/session');
    const given = await this.options.session();
    if (!given || typeof given.token !== 'string') {
      throw new TaskwireError(0, 'no_session', 'the session option gave no token');
    }
    let claims = {};
    try {
      const part = given.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      claims = JSON.parse(window.atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '='))) || {};
    } catch (e) { claims = {}; }
    const exp = Number.isInteger(claims.exp) ? new Date(claims.exp * 1000).toISOString() : null;
    return { client_id: given.client_id || claims.sub || null, token: given.token,
      expires_at: given.expires_at || exp };
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
    this.channelTask(task, event || null, source);
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
    // No token in the URL: a URL lands in web servers' logs.  With the session's cookie the
    // relay authenticates the handshake itself (/ws?auth=cookie) and greets at once; else the
    // token goes in the first message.  A cookie the relay did not get or refused (another
    // site's relay, a cookie of another tab's identity) is 4001, and the page falls back.
    const byCookie = session.cookie === true && !this.cookieRefused;
    const url = this.relayUrl(byCookie);
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.emit('error', e);
      this.failedOpens += 1;
      this.nextRelay();
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.wsByCookie = byCookie;
    let hello = false;
    this.timers.open = setTimeout(() => { if (!hello) this.socketLost(ws, null); },
      this.options.openTimeoutMs);
    // The auth message first, before anything else; the relay answers it with "connected".
    ws.onopen = () => {
      if (ws !== this.ws || byCookie) return;
      this.emit('message', { direction: 'out', channel: 'ws', data: '{"type":"auth","token":"…"}' });
      try { ws.send(JSON.stringify({ type: 'auth', token: session.token })); } catch (e) { this.socketLost(ws, null); }
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      this.clearTimer('pong'); // any message shows the connection is alive
      this.emit('message', { direction: 'in', channel: 'ws', data: event.data });
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (!message || typeof message !== 'object') return;
      if (message.type === 'connected' && !hello) {
        if (byCookie && message.client_id !== session.client_id) {
          // The cookie is another identity's (a tab that made its own session): not ours.
          this.cookieRefused = true;
          this.connectNow();
          return;
        }
        hello = true;
        this.connected(ws);
      } else if (hello && Object.prototype.hasOwnProperty.call(INBOUND, message.type)) {
        INBOUND[message.type](this, message);
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
    // Every channel again, in the order they were asked for; the replies come in that order.
    for (const sub of this.channels.values()) this.sendSubscribe(sub);
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
    this.failPending('disconnected');
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
    if (event && event.code === 4001 && this.wsByCookie && !wasConnected) {
      // The relay did not take the cookie: the same relay with the auth message, at once.
      this.dropSocket();
      this.cookieRefused = true;
      this.connectNow();
      return;
    }
    this.nextRelay(); // a relay that failed or dropped us: the next try goes to the next one
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

  /** The WebSocket URL of the relay to connect to: options.relays in turn, else base + /ws
   * (an http(s) URL or a path becomes ws(s) on the page's host), asking for the session's
   * cookie when byCookie. */
  relayUrl(byCookie) {
    const list = Array.isArray(this.options.relays) && this.options.relays.length
      ? this.options.relays : [`${this.options.base}/ws`];
    const url = new URL(list[this.relayIndex % list.length], window.location.href);
    if (url.protocol === 'https:') url.protocol = 'wss:';
    else if (url.protocol === 'http:') url.protocol = 'ws:';
    if (byCookie) url.searchParams.set('auth', 'cookie');
    return url.toString();
  }

  /** Move to the next relay of options.relays (nothing with one). */
  nextRelay() {
    const count = Array.isArray(this.options.relays) ? this.options.relays.length : 0;
    if (count > 1) this.relayIndex = (this.relayIndex + 1) % count;
  }

  // ---- channels ----
  //
  // One subscription per channel name: {name, handlers, presence, history, state ('pending',
  // 'subscribed'), waiters (subscribe() promises), position ({offset, epoch} of the last
  // message with one, or null), recovering (a history read runs: live messages wait in
  // buffer), tasks (the channel's tasks by id, newest seq), clients (presence: client id ->
  // connections, or null before the first snapshot)}.

  /** Subscribe to channel: resolves once the relay says "subscribed", rejects with a
   * TaskwireError whose code is the relay's reason when it refuses (the subscription is then
   * dropped).  Kept across reconnects: sent again after every "connected".  onMessage gets each
   * message of the channel: {type: 'message', channel, data, from?, offset?, epoch?} (a
   * browser's own publishes are not handed back) and {type: 'task', channel, event, task} for
   * the events of tasks submitted with the channel (each state once, by seq).  options:
   * presence (fetch who is there after every "subscribed" and follow join and leave: event
   * "presence"), history (learn the channel's position at once, so a reconnect recovers what
   * it missed even before a first message came), position ({offset, epoch} to recover from,
   * e.g. one a page stored before it was reloaded). */
  subscribe(channel, onMessage, options = {}) {
    if (onMessage && typeof onMessage === 'object') [onMessage, options] = [null, onMessage];
    let sub = this.channels.get(channel);
    if (!sub) {
      sub = { name: channel, handlers: new Set(), presence: false, history: false,
        state: 'pending', waiters: [], position: null, recovering: false, recoverGeneration: 0,
        buffer: [], dropped: 0, tasks: new Map(), clients: null, presenceLoading: false,
        presenceBuffer: [], presenceVersion: null, presenceGeneration: 0, sentOn: null };
      this.channels.set(channel, sub);
    }
    if (typeof onMessage === 'function') sub.handlers.add(onMessage);
    const wantsPresence = options.presence && !sub.presence;
    sub.presence = sub.presence || !!options.presence;
    sub.history = sub.history || !!options.history;
    const p = options.position;
    if (!sub.position && p && Number.isInteger(p.offset) && typeof p.epoch === 'string') {
      sub.position = { offset: p.offset, epoch: p.epoch };
    }
    if (sub.state === 'subscribed') {
      if (wantsPresence) this.loadPresence(sub);
      if (typeof onMessage === 'function') { // what the others were handed already
        for (const task of sub.tasks.values()) {
          try { onMessage({ type: 'task', channel, event: null, source: 'memory', task }); } catch (e) {
            console.error('taskwire channel listener', e);
          }
        }
      }
      return Promise.resolve({ type: 'subscribed', channel });
    }
    const answer = new Promise((resolve, reject) => sub.waiters.push({ resolve, reject }));
    if (this.state === 'connected' && sub.sentOn !== this.ws) this.sendSubscribe(sub);
    return answer;
  }

  /** Leave channel: no more of its messages, not sent again after a reconnect.  Resolves once
   * the relay says "unsubscribed" (at once when not connected). */
  unsubscribe(channel) {
    const sub = this.channels.get(channel);
    if (!sub) return Promise.resolve();
    this.channels.delete(channel);
    sub.recoverGeneration += 1;
    sub.presenceGeneration += 1;
    this.clearTimer(`history ${channel}`);
    this.clearTimer(`presence ${channel}`);
    for (const waiter of sub.waiters.splice(0)) waiter.reject(refusal('subscribe', channel, 'unsubscribed'));
    if (this.state !== 'connected' || sub.sentOn !== this.ws) return Promise.resolve();
    return this.sendRequest('unsubscribe', channel, null).catch((e) => {
      if (e.code !== 'not_subscribed' && e.code !== 'disconnected') throw e;
    });
  }

  /** Publish data (an object) to channel's subscribers, from this browser: resolves once the
   * relay says "published"; rejects with the relay's reason (rate_limited, too_large,
   * publish_not_allowed, busy, ...), too_large when the message is longer than messageMax,
   * or not_connected / disconnected when no relay took it (it is not sent again: a publish is
   * a signal, not a record). */
  publish(channel, data) {
    if (this.state !== 'connected' || !this.ws) {
      return Promise.reject(refusal('publish', channel, 'not_connected', 'publish: not connected'));
    }
    const waiting = this.pending.filter((p) => p.kind === 'publish').length;
    if (waiting >= this.options.publishPendingMax) {
      return Promise.reject(refusal('publish', channel, 'too_many_pending',
        `publish: ${waiting} publishes await their answer`));
    }
    const bytes = new TextEncoder().encode(JSON.stringify({ type: 'publish', channel, data })).length;
    if (bytes > this.options.messageMax) {
      return Promise.reject(refusal('publish', channel, 'too_large',
        `publish: ${bytes} bytes, more than the relay takes (${this.options.messageMax})`));
    }
    return this.sendRequest('publish', channel, { data });
  }

  /** The channels subscribed to (or being subscribed to), in the order asked for. */
  subscriptions() {
    return [...this.channels.keys()];
  }

  /** The channel's position, {offset, epoch} of the last message with one, or null. */
  position(channel) {
    const sub = this.channels.get(channel);
    return sub && sub.position ? { ...sub.position } : null;
  }

  /** The channel's tasks seen so far (its task events, and this client's tasks listing it),
   * newest first. */
  channelTasks(channel) {
    const sub = this.channels.get(channel);
    if (!sub) return [];
    const time = (task) => Date.parse(task.created_at) || 0;
    return [...sub.tasks.values()].sort((a, b) => time(b) - time(a) || (a.id < b.id ? 1 : -1));
  }

  /** Who is in channel now (GET /api/channels/{channel}/presence): resolves to {channel,
   * clients: [{client_id, connections}]}; for a channel subscribed to with presence, the same
   * list the "presence" event keeps current. */
  async presence(channel) {
    const answer = await this.request('GET', `/api/channels/${channelPath(channel)}/presence`);
    const clients = Array.isArray(answer && answer.clients) ? answer.clients : [];
    const sub = this.channels.get(channel);
    if (sub && sub.presence && !sub.presenceLoading) this.presenceSnapshot(sub, answer);
    return { ...answer, channel, clients };
  }

  /** The presence list of a channel followed with presence (null before its first snapshot). */
  presenceOf(channel) {
    const sub = this.channels.get(channel);
    return sub && sub.clients ? this.clientList(sub) : null;
  }

  sendSubscribe(sub) {
    if (!this.ws) return;
    sub.state = 'pending';
    sub.sentOn = this.ws;
    this.sendRequest('subscribe', sub.name, null, sub).catch(() => {}); // the waiters hear it
  }

  /** Send a channel request on the open socket; resolves with its reply (matched by kind and
   * channel, the relay answering in the order of the requests), rejects with its refusal. */
  sendRequest(kind, channel, extra, sub = null) {
    return new Promise((resolve, reject) => {
      const ws = this.ws;
      const text = JSON.stringify({ type: kind, channel, ...(extra || {}) });
      this.pending.push({ kind, channel, sub, resolve, reject });
      this.emit('message', { direction: 'out', channel: 'ws', data: text });
      try { ws.send(text); } catch (e) { this.socketLost(ws, null); }
    });
  }

  /** The oldest request of kind awaiting a reply about channel (null: a channel the relay
   * could not echo), taken off the list. */
  takePending(kind, channel) {
    const at = this.pending.findIndex((p) => p.kind === kind &&
      (channel === null || channel === undefined ? !echoable(p.channel) : p.channel === channel));
    return at < 0 ? null : this.pending.splice(at, 1)[0];
  }

  /** The socket is gone: publishes and unsubscribes waiting for it end; subscriptions wait
   * for the next connection, where they are sent again. */
  failPending(why) {
    for (const p of this.pending.splice(0)) {
      if (p.kind === 'publish') p.reject(refusal('publish', p.channel, why, `publish ${p.channel}: ${why}`));
      else if (p.kind === 'unsubscribe') p.resolve();
      else p.resolve(null);
    }
    for (const sub of this.channels.values()) sub.state = 'pending';
  }

  onSubscribed(message) {
    const entry = this.takePending('subscribe', message.channel);
    const sub = entry && entry.sub;
    if (entry) entry.resolve(message);
    if (!sub || this.channels.get(sub.name) !== sub) return; // left meanwhile
    sub.state = 'subscribed';
    for (const waiter of sub.waiters.splice(0)) waiter.resolve(message);
    this.emit('subscribed', { channel: sub.name });
    // The client's own tasks already known that go to this channel (what a resync read).
    for (const task of this.byId.values()) this.channelTask(task, null, 'rest', sub);
    if (sub.presence) this.loadPresence(sub);
    if (sub.position || sub.history) this.recover(sub);
  }

  onRefused(message) {
    const request = message.request;
    const entry = this.takePending(request, message.channel);
    const channel = entry ? entry.channel : message.channel;
    const error = refusal(request, channel, message.reason || 'refused', message.message);
    this.emit('refused', { request, channel, reason: error.code, message: error.message });
    if (!entry) return;
    if (request !== 'subscribe') { entry.reject(error); return; }
    entry.resolve(null);
    const sub = entry.sub;
    if (!sub || this.channels.get(sub.name) !== sub) return;
    this.channels.delete(sub.name); // not sent again
    for (const waiter of sub.waiters.splice(0)) waiter.reject(error);
    this.emit('error', error);
  }

  onReply(kind, message) {
    const entry = this.takePending(kind, message.channel);
    if (entry) entry.resolve(message);
  }

  /** A message of a channel: in order of offset when it has one, once. */
  onChannelMessage(message) {
    const sub = this.channels.get(message.channel);
    if (!sub) return;
    if (message.from && message.from === this.clientId()) return; // our own publish
    this.channelMessage(sub, message);
  }

  /** afterRecovery: message waited while the history was read, so a gap it leaves is one the
   * history could not fill (yet): it is taken as it is rather than read for again. */
  channelMessage(sub, message, afterRecovery = false) {
    if (sub.recovering) { this.hold(sub, sub.buffer, message); return; }
    const offset = message.offset;
    if (Number.isInteger(offset) && typeof message.epoch === 'string') {
      const p = sub.position;
      if (p && p.epoch === message.epoch) {
        if (offset <= p.offset) return; // had it (history and live both brought it)
        if (offset > p.offset + 1 && !afterRecovery) { // a gap: read what is missing first
          this.hold(sub, sub.buffer, message);
          this.recover(sub);
          return;
        }
      }
      sub.position = { offset, epoch: message.epoch }; // a new epoch starts afresh
    }
    this.deliver(sub, message);
  }

  /** Keep message in a channel's bounded buffer; the oldest goes when it is full. */
  hold(sub, buffer, message) {
    buffer.push(message);
    if (buffer.length > this.options.channelBufferMax) {
      buffer.shift();
      sub.dropped += 1;
      if (sub.dropped === 1) this.emit('error', new Error(`${sub.name}: buffer full, oldest messages dropped`));
    }
  }

  deliver(sub, message) {
    for (const fn of [...sub.handlers]) {
      try { fn(message); } catch (e) { console.error('taskwire channel listener', e); }
    }
  }

  /** A task event (or a state of our own task) for every subscribed channel the task lists
   * (only sub when given): each channel hands each state on once, the newest by seq. */
  channelTask(task, event, source, only = null) {
    if (!task || !Array.isArray(task.channels)) return;
    for (const name of task.channels) {
      const sub = only ? (name === only.name ? only : null) : this.channels.get(name);
      if (!sub || sub.state !== 'subscribed') continue;
      const known = sub.tasks.get(task.id);
      if (known) {
        const seq = task.seq || 0;
        const knownSeq = known.seq || 0;
        if (seq < knownSeq || (seq === knownSeq && (FINAL.has(known.status) || task.status === known.status &&
            task.progress === known.progress && task.message === known.message))) continue;
      }
      sub.tasks.delete(task.id); // re-inserted last: the map's order is the order of change
      sub.tasks.set(task.id, task);
      if (sub.tasks.size > this.options.channelTasksMax) {
        const old = [...sub.tasks.values()].find((t) => FINAL.has(t.status)) || sub.tasks.values().next().value;
        sub.tasks.delete(old.id);
      }
      this.deliver(sub, { type: 'task', channel: sub.name, event, source, task });
    }
  }

  onTaskMessage(message) {
    const task = message.task;
    if (this.merge(task, 'ws', message.event)) return; // ours: merge handed it to its channels
    this.channelTask(task, message.event || null, 'ws');
  }

  // ---- positions: what a reconnect missed, from the channel's history ----

  /** Read the channel's history since its position (or, for a channel subscribed to with
   * history and no position yet, where it stands), hand the missed messages over in offset
   * order, then the live ones that came meanwhile; emits "recovered".  A failed read is tried
   * again with the resync's backoff; a later call (another reconnect) replaces one under way. */
  recover(sub) {
    const generation = ++sub.recoverGeneration;
    const closed = this.generation;
    sub.recovering = true;
    this.clearTimer(`history ${sub.name}`);
    const current = () => generation === sub.recoverGeneration && closed === this.generation &&
      this.channels.get(sub.name) === sub;
    const finish = () => {
      sub.recovering = false;
      // Those with an offset in offset order, in the places they came in among the others.
      const held = sub.buffer.splice(0);
      const slots = held.map((m, i) => (Number.isInteger(m.offset) ? i : -1)).filter((i) => i >= 0);
      const ordered = slots.map((i) => held[i]).sort((a, b) => a.offset - b.offset);
      slots.forEach((slot, k) => { held[slot] = ordered[k]; });
      for (const message of held) this.channelMessage(sub, message, true);
    };
    const attempt = async (tries) => {
      let recovered = true;
      let missed = 0;
      const hadPosition = !!sub.position;
      try {
        for (let pages = 0; ; pages += 1) {
          const p = sub.position;
          let path = `/api/channels/${channelPath(sub.name)}/history`;
          if (p) path += `?since=${p.offset}&epoch=${encodeURIComponent(p.epoch)}`;
          const answer = await this.request('GET', path);
          if (!current()) return;
          if (!answer || typeof answer !== 'object') throw new TaskwireError(0, 'network', `GET ${path}: no answer`);
          if (!p || answer.recovered === false) {
            if (Number.isInteger(answer.offset) && typeof answer.epoch === 'string') {
              sub.position = { offset: answer.offset, epoch: answer.epoch };
            }
            if (!p) { finish(); return; } // where it stands: nothing was missed yet
            recovered = false;
            break;
          }
          const messages = (Array.isArray(answer.messages) ? answer.messages : [])
            .filter((m) => m && Number.isInteger(m.offset))
            .sort((a, b) => a.offset - b.offset);
          for (const m of messages) {
            if (m.offset <= sub.position.offset) continue;
            sub.position = { offset: m.offset, epoch: m.epoch || sub.position.epoch };
            missed += 1;
            this.deliver(sub, { ...m, channel: m.channel || sub.name });
          }
          if (!answer.more || messages.length === 0 || pages >= 10000) break;
        }
      } catch (e) {
        if (!current()) return;
        this.emit('error', e);
        if (FINAL_HTTP.has(e.status) || tries + 1 >= this.options.resyncAttempts) {
          // No history to read (a namespace without, not allowed) or no answer in time: go on
          // from the live messages, whose first starts a new position.  Only a channel that
          // had a position has lost something.
          sub.position = null;
          sub.history = false;
          if (hadPosition) this.emit('recovered', { channel: sub.name, recovered: false, error: e });
          finish();
          return;
        }
        const o = this.options;
        const delay = backoffDelay(tries, o.resyncBackoffInitialMs, o.resyncBackoffMaxMs);
        this.emit('message', { direction: 'in', channel: 'rest',
          data: `history of ${sub.name} failed (${tries + 1} of ${o.resyncAttempts}): next try in ${(delay / 1000).toFixed(1)} s` });
        this.timers[`history ${sub.name}`] = setTimeout(() => {
          delete this.timers[`history ${sub.name}`];
          if (current()) attempt(tries + 1);
        }, delay);
        return;
      }
      this.emit('recovered', { channel: sub.name, recovered, missed });
      finish();
    };
    attempt(0);
  }

  // ---- presence ----

  /** Fetch the channel's presence snapshot (after each "subscribed"), holding the live join and
   * leave messages until it is in, then applying them over it; tried again with backoff. */
  loadPresence(sub) {
    const generation = ++sub.presenceGeneration;
    const closed = this.generation;
    sub.presenceLoading = true;
    this.clearTimer(`presence ${sub.name}`);
    const current = () => generation === sub.presenceGeneration && closed === this.generation &&
      this.channels.get(sub.name) === sub;
    const attempt = async (tries) => {
      try {
        const answer = await this.request('GET', `/api/channels/${channelPath(sub.name)}/presence`);
        if (!current()) return;
        sub.presenceLoading = false;
        this.presenceSnapshot(sub, answer);
        for (const event of sub.presenceBuffer.splice(0)) this.presenceEvent(sub, event);
      } catch (e) {
        if (!current()) return;
        this.emit('error', e);
        if (FINAL_HTTP.has(e.status) || tries + 1 >= this.options.resyncAttempts) {
          sub.presenceLoading = false; // the live events alone, from an empty list
          if (!sub.clients) sub.clients = new Map();
          this.emit('presence', { channel: sub.name, clients: this.clientList(sub), change: null, error: e });
          for (const event of sub.presenceBuffer.splice(0)) this.presenceEvent(sub, event);
          return;
        }
        const o = this.options;
        const delay = backoffDelay(tries, o.resyncBackoffInitialMs, o.resyncBackoffMaxMs);
        this.timers[`presence ${sub.name}`] = setTimeout(() => {
          delete this.timers[`presence ${sub.name}`];
          if (current()) attempt(tries + 1);
        }, delay);
      }
    };
    attempt(0);
  }

  presenceSnapshot(sub, answer) {
    sub.clients = new Map();
    for (const c of Array.isArray(answer && answer.clients) ? answer.clients : []) {
      if (c && typeof c.client_id === 'string') sub.clients.set(c.client_id, Number(c.connections) || 1);
    }
    sub.presenceVersion = answer && Number.isInteger(answer.version) ? answer.version : null;
    this.emit('presence', { channel: sub.name, clients: this.clientList(sub), change: null });
  }

  onPresenceMessage(message) {
    const sub = this.channels.get(message.channel);
    if (!sub || !sub.presence) return;
    if (sub.presenceLoading || !sub.clients) this.hold(sub, sub.presenceBuffer, message);
    else this.presenceEvent(sub, message);
  }

  /** A join or leave over the list: each carries the client's count of connections after it,
   * so applying one twice, or one the snapshot already counted, changes nothing. */
  presenceEvent(sub, message) {
    if (typeof message.client_id !== 'string') return;
    if (Number.isInteger(message.version) && sub.presenceVersion !== null) {
      if (message.version <= sub.presenceVersion) return; // the snapshot already has it
      sub.presenceVersion = message.version;
    }
    const connections = Number(message.connections);
    if (message.action === 'leave' && !(connections > 0)) sub.clients.delete(message.client_id);
    else sub.clients.set(message.client_id, connections > 0 ? connections : 1);
    this.emit('presence', { channel: sub.name, clients: this.clientList(sub), change: message });
  }

  clientList(sub) {
    return [...sub.clients].map(([id, connections]) => ({ client_id: id, connections }))
      .sort((a, b) => (a.client_id < b.client_id ? -1 : a.client_id > b.client_id ? 1 : 0));
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

/** What the client does with each message type the relay sends after "connected": one row per
 * type. */
const INBOUND = {
  task: (tw, m) => tw.onTaskMessage(m),
  resync: (tw) => { // the relay may have missed events (pool restart): tasks and positions
    tw.resync().catch(() => {}); // each failed try was reported as an error
    for (const sub of tw.channels.values()) if (sub.state === 'subscribed' && sub.position) tw.recover(sub);
  },
  subscribed: (tw, m) => tw.onSubscribed(m),
  unsubscribed: (tw, m) => tw.onReply('unsubscribe', m),
  published: (tw, m) => tw.onReply('publish', m),
  refused: (tw, m) => tw.onRefused(m),
  message: (tw, m) => tw.onChannelMessage(m),
  presence: (tw, m) => tw.onPresenceMessage(m),
};

/** Whether a status is final (succeeded, failed, cancelled). */
export function isFinal(status) {
  return FINAL.has(status);
}
