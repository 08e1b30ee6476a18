// The task monitor (www/index.html) and its client library (www/taskwire.js) in a real
// Chromium, against a real stack (tests/stack.py: lighttpd, the FastCGI handler, the relay and
// a worker on free loopback ports).  Every test saves a screenshot under tests/screenshots/
// and prints its path.  Run: make test-browser (or TASKWIRE_BUILD=... node --test here).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import {
  ROOT, STEP, api, connection, launchBrowser, noPageErrors, screenshot, startStack, until, withStarted,
} from './harness.mjs';

let browser;

/** Run fn(stack) with a stack of tests/stack.py's options extra (or of Stack keyword
 * arguments stackOptions), stopped afterwards, also when fn fails. */
function withStack(extra, fn, stackOptions = null) {
  return withStarted(() => startStack({ extra, options: stackOptions }), fn);
}

/** Run fn(context) in a fresh browser context (its own cookies and storage), closed after. */
async function withContext(fn) {
  const context = await browser.newContext();
  try {
    await fn(context);
  } finally {
    await context.close();
  }
}

// ---- pages ----

async function open(context, url) {
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: STEP });
  return page;
}


async function startTask(page, { duration = 3000, steps = 10, name }) {
  await page.selectOption('#task-type', 'sleep');
  await page.fill('#param-duration_ms', String(duration));
  await page.fill('#param-steps', String(steps));
  await page.fill('#task-name', name);
  await page.click('#submit');
  const item = page.locator('.task', { has: page.locator('.task-name', { hasText: name }) });
  await item.waitFor({ timeout: STEP });
  return item.getAttribute('data-task-id');
}

function card(page, id) {
  return page.locator(`.task[data-task-id="${id}"]`);
}

async function waitStatus(page, id, status, timeout = STEP) {
  await page.waitForSelector(`.task[data-task-id="${id}"][data-status="${status}"]`, { timeout });
}

/** Wait until the task's bar shows a value strictly between 0 and 100: it moves. */
async function waitMidway(page, id) {
  await page.waitForFunction((taskId) => {
    const bar = document.querySelector(`.task[data-task-id="${taskId}"] [role="progressbar"]`);
    const value = bar ? Number(bar.getAttribute('aria-valuenow')) : 0;
    return value > 0 && value < 100;
  }, id, { timeout: STEP, polling: 50 });
}

async function progress(page, id) {
  return Number(await card(page, id).locator('[role="progressbar"]').getAttribute('aria-valuenow'));
}



/** The task as the REST API has it, read with the page's own token. */
async function restTask(page, base, id) {
  const token = await page.evaluate(() => {
    const raw = sessionStorage.getItem('taskwire.session') || localStorage.getItem('taskwire.session');
    return JSON.parse(raw).token;
  });
  const response = await fetch(`${base}api/tasks/${id}`, { headers: { Authorization: `Bearer ${token}` } });
  return response.json();
}

// ---- the REST API from the test itself (no page), and sessions handed to a page ----


async function newSession(base) {
  const { status, body } = await api(base, 'POST', '/api/session');
  assert.equal(status, 201);
  return body;
}

/** Submit count sleep tasks for session, a few at a time: resolves to their ids. */
async function submitMany(base, session, count, params = { duration_ms: 100, steps: 1 }) {
  const ids = [];
  for (let i = 0; i < count; i += 10) {
    const batch = [];
    for (let k = i; k < Math.min(count, i + 10); k++) {
      batch.push(api(base, 'POST', '/api/tasks', { token: session.token,
        body: { type: 'sleep', name: `bulk ${k}`, params } }).then(({ status, body }) => {
        assert.equal(status, 202, JSON.stringify(body));
        ids.push(body.id);
      }));
    }
    await Promise.all(batch);
  }
  return ids;
}

/** Pages of context start as session's client (as a tab that had it before a reload). */
async function useSession(context, session) {
  await context.addInitScript((value) => {
    if (!window.sessionStorage.getItem('taskwire.session')) {
      window.sessionStorage.setItem('taskwire.session', JSON.stringify(value));
    }
  }, session);
}

/** Publish messages (objects) to every page of clientId through the stack's ZeroMQ publish
 * endpoint, as any process may (docs/PROTOCOL.md, "Injecting a message"). */
async function publish(info, clientId, ...messages) {
  const code = `
import json, sys, time, zmq
s = zmq.Context().socket(zmq.PUB)
s.connect(sys.argv[1]); time.sleep(0.3)
for payload in sys.argv[3:]:
    s.send_multipart([sys.argv[2].encode(), payload.encode()])
s.close(linger=2000)`;
  const child = spawn('/usr/bin/python3', ['-c', code, info.publish, clientId,
    ...messages.map((m) => JSON.stringify(m))], { stdio: ['ignore', 'inherit', 'inherit'] });
  const status = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(status, 0, 'the publisher failed');
}

/** Publish message for clientId until the page shows task id with status: a new PUB's first
 * messages are dropped until the subscriptions reach it, however long it waited, so each try
 * is checked on the page and the message sent again (the same seq: a page ignores a copy). */
async function publishUntilStatus(page, info, clientId, message, id, status) {
  for (let tries = 1; ; tries++) {
    await publish(info, clientId, message);
    try {
      await waitStatus(page, id, status, 2000);
      return;
    } catch (error) {
      if (tries >= 10) throw error;
    }
  }
}

/** The text of the task's attempt line. */
async function attemptLine(page, id) {
  return (await card(page, id).locator('.attempt').textContent()).trim();
}


before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
});

// ---- the tests ----

test('a sleep task started from the form climbs to 100% and succeeds', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      const page = await open(context, info.http);
      await connection(page, 'connected');
      const id = await startTask(page, { duration: 3000, steps: 10, name: 'climb' });
      await waitMidway(page, id);
      await waitStatus(page, id, 'succeeded');
      assert.equal(await progress(page, id), 100);
      assert.match(await card(page, id).locator('.percent').textContent(), /100%/);
      assert.equal(await card(page, id).locator('.cancel').isVisible(), false);
      await screenshot(page, '1-task-succeeds');
      // At a phone's width: one column, nothing wider than the screen.
      await page.setViewportSize({ width: 390, height: 844 });
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390),
        'the page is wider than a phone');
      assert.equal(await card(page, id).locator('.cancel').isVisible(), false);
      await screenshot(page, '1-phone-width');
      noPageErrors(page);
    });
  });
});

test('two browsers never see each other\'s tasks', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    const one = await browser.newContext();
    const two = await browser.newContext();
    try {
      const a = await open(one, info.http);
      const b = await open(two, info.http);
      await Promise.all([connection(a, 'connected'), connection(b, 'connected')]);
      const idA = await startTask(a, { duration: 1000, steps: 4, name: 'alpha only' });
      const idB = await startTask(b, { duration: 1000, steps: 4, name: 'beta only' });
      await Promise.all([waitStatus(a, idA, 'succeeded'), waitStatus(b, idB, 'succeeded')]);
      await a.reload();
      await b.reload();
      await Promise.all([connection(a, 'connected'), connection(b, 'connected')]);
      await a.waitForSelector(`.task[data-task-id="${idA}"]`, { timeout: STEP });
      await b.waitForSelector(`.task[data-task-id="${idB}"]`, { timeout: STEP });
      assert.equal(await a.locator('.task').count(), 1);
      assert.equal(await b.locator('.task').count(), 1);
      assert.equal(await card(a, idB).count(), 0);
      assert.equal(await card(b, idA).count(), 0);
      assert.notEqual(await a.textContent('#client-id'), await b.textContent('#client-id'));
      await screenshot(a, '2-private-a');
      await screenshot(b, '2-private-b');
      noPageErrors(a, b);
    } finally {
      await one.close();
      await two.close();
    }
  });
});

test('two tabs sharing an identity both show the same task live', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      const first = await open(context, info.http);
      await connection(first, 'connected');
      await first.check('#share-identity');
      await connection(first, 'connected');
      const second = await open(context, info.http);
      await connection(second, 'connected');
      assert.equal(await second.isChecked('#share-identity'), true);
      assert.equal(await second.textContent('#client-id'), await first.textContent('#client-id'));
      const id = await startTask(first, { duration: 3000, steps: 10, name: 'seen twice' });
      await waitMidway(second, id); // live in the other tab, not only after the fact
      await Promise.all([waitStatus(first, id, 'succeeded'), waitStatus(second, id, 'succeeded')]);
      assert.equal(await progress(second, id), 100);
      await screenshot(second, '3-shared-second-tab');
      noPageErrors(first, second);
    });
  });
});

test('with the relay gone mid-task the page reconnects and shows the true final state', { timeout: 120000 }, async () => {
  await withStack([], async (stack) => {
    await withContext(async (context) => {
      const page = await open(context, `${stack.info.http}?backoffInitialMs=500`);
      await page.evaluate(() => { window.notReloaded = true; });
      await connection(page, 'connected');
      const id = await startTask(page, { duration: 5000, steps: 10, name: 'outlives the relay' });
      await waitMidway(page, id);
      // kill -9: the relay is gone at once, its connections drop without a close frame (a
      // SIGTERM'd relay says 1001 first; the client treats both alike).  A SIGTERM'd relay
      // behind lighttpd sometimes lingers until it is killed, long enough for the task to end
      // while the page still hears it, which would leave nothing here to resync.
      await stack.command('kill relay');
      await connection(page, 'reconnecting');
      assert.match(await page.textContent('#connection-text'), /Reconnecting in \d+ s/);
      await screenshot(page, '4-reconnecting');
      // The task finishes while the page cannot hear it ...
      await until('the task to succeed in the store',
        async () => (await restTask(page, stack.info.http, id)).status === 'succeeded');
      assert.notEqual(await card(page, id).getAttribute('data-status'), 'succeeded');
      // ... and the page shows it once the relay is back, without a reload.
      await stack.command('start relay');
      await connection(page, 'connected');
      await waitStatus(page, id, 'succeeded');
      assert.equal(await progress(page, id), 100);
      assert.equal(await page.evaluate(() => window.notReloaded), true);
      await screenshot(page, '4-after-reconnect');
      noPageErrors(page);
    });
  });
});

test('a running task is cancelled from the page', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      const page = await open(context, info.http);
      await connection(page, 'connected');
      const id = await startTask(page, { duration: 30000, steps: 30, name: 'to cancel' });
      await waitStatus(page, id, 'running');
      await waitMidway(page, id);
      // From the keyboard: the button keeps its focus while progress events redraw the card.
      await card(page, id).getByRole('button', { name: 'Cancel to cancel' }).focus();
      const before = await progress(page, id);
      await page.waitForFunction(({ taskId, value }) => Number(document.querySelector(
        `.task[data-task-id="${taskId}"] [role="progressbar"]`).getAttribute('aria-valuenow')) > value,
      { taskId: id, value: before }, { timeout: STEP, polling: 50 });
      await page.keyboard.press('Enter');
      await waitStatus(page, id, 'cancelled');
      assert.ok(await progress(page, id) < 100);
      assert.equal(await card(page, id).locator('.cancel').isVisible(), false);
      await screenshot(page, '5-cancelled');
      noPageErrors(page);
    });
  });
});

test('with WebSockets blocked the page polls and still shows progress', { timeout: 90000 }, async () => {
  await withStack(['--no-websocket'], async ({ info }) => {
    await withContext(async (context) => {
      const page = await open(context, `${info.http}?backoffInitialMs=300&pollIntervalMs=400`);
      await connection(page, 'polling');
      assert.match(await page.textContent('#connection-text'), /Polling/);
      const id = await startTask(page, { duration: 4000, steps: 8, name: 'polled' });
      await waitMidway(page, id);
      await waitStatus(page, id, 'succeeded');
      assert.equal(await progress(page, id), 100);
      assert.equal(await page.getAttribute('#connection', 'data-state'), 'polling');
      await screenshot(page, '6-polling');
      noPageErrors(page);
    });
  });
});

test('a connection that falls silent without closing is noticed and replaced', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      // A proxy between page and relay that stops forwarding without closing anything: the
      // browser never fires onclose, only the client's own heartbeat can notice.
      let opened = 0;
      let silent = false;
      await context.routeWebSocket(/\/ws/, (ws) => {
        const first = ++opened === 1;
        const server = ws.connectToServer();
        ws.onMessage((message) => server.send(message));
        server.onMessage((message) => { if (!(first && silent)) ws.send(message); });
      });
      const page = await open(context, `${info.http}?pingIntervalMs=500&pingTimeoutMs=1000&backoffInitialMs=300`);
      await connection(page, 'connected');
      const id = await startTask(page, { duration: 4000, steps: 8, name: 'through a dead link' });
      await waitMidway(page, id);
      silent = true;
      await page.locator('#log li', { hasText: 'silent: dropped' }).first().waitFor({ timeout: STEP });
      await waitStatus(page, id, 'succeeded');
      await connection(page, 'connected');
      assert.equal(opened, 2);
      assert.equal(await progress(page, id), 100);
      await screenshot(page, '7-silent-link-replaced');
      noPageErrors(page);
    });
  });
});

test('a stale message never overwrites a newer state', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      let toPage = null;
      await context.routeWebSocket(/\/ws/, (ws) => {
        ws.connectToServer(); // forwards both ways; toPage.send() adds a message of our own
        toPage = ws;
      });
      const page = await open(context, info.http);
      await connection(page, 'connected');
      const id = await startTask(page, { duration: 1000, steps: 4, name: 'final stays final' });
      await waitStatus(page, id, 'succeeded');
      const final = await restTask(page, info.http, id);
      // A progress event from before the end, delivered late (as after a reconnect's resync).
      const stale = { ...final, status: 'running', progress: 50, message: 'late step', seq: 3,
        result: null, finished_at: null };
      toPage.send(JSON.stringify({ type: 'task', event: 'progress', seq: 3, task: stale }));
      await page.locator('#log li', { hasText: 'late step' }).first().waitFor({ timeout: STEP });
      assert.equal(await card(page, id).getAttribute('data-status'), 'succeeded');
      assert.equal(await progress(page, id), 100);
      assert.doesNotMatch(await card(page, id).textContent(), /late step/);
      await screenshot(page, '8-stale-message-ignored');
      noPageErrors(page);
    });
  });
});

test('a token the relay refuses is replaced by a new session, no token ever in a WebSocket URL', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      // What an old tab holds after the server's secret changed: a well-formed, refused token.
      const forged = { client_id: '0'.repeat(32), token: 'e30.e30.forged',
        expires_at: new Date(Date.now() + 3600e3).toISOString() };
      await context.addInitScript((session) => {
        if (!window.sessionStorage.getItem('taskwire.forged')) {
          window.sessionStorage.setItem('taskwire.forged', '1');
          window.sessionStorage.setItem('taskwire.session', JSON.stringify(session));
        }
      }, forged);
      // Every WebSocket the page opens: its URL and the frames it sends.
      const sockets = [];
      context.on('page', (p) => p.on('websocket', (ws) => {
        const socket = { url: ws.url(), sent: [] };
        ws.on('framesent', (frame) => socket.sent.push(frame.payload));
        sockets.push(socket);
      }));
      const page = await open(context, `${info.http}?backoffInitialMs=300`);
      await page.locator('#log li', { hasText: 'closed 4001' }).first().waitFor({ timeout: STEP });
      await connection(page, 'connected');
      const clientId = await page.textContent('#client-id');
      assert.match(clientId, /^[0-9a-f]{32}$/);
      assert.notEqual(clientId, forged.client_id);
      // One refusal was enough: no retries with the same token, no fallback to polling.
      assert.equal(await page.locator('#log li', { hasText: 'closed 4001' }).count(), 1);
      // Neither token was in a URL.  The old one went in its connection's first message; the
      // new session's rode in its HttpOnly cookie (/ws?auth=cookie), so the page sent it in
      // no frame at all, and the page's script cannot read it from document.cookie.
      const session = JSON.parse(await page.evaluate(() => sessionStorage.getItem('taskwire.session')));
      assert.ok(sockets.length >= 2, `${sockets.length} WebSockets`);
      for (const socket of sockets) assert.ok(!socket.url.includes('token'), socket.url);
      assert.equal(JSON.parse(sockets[0].sent[0]).type, 'auth', sockets[0].sent[0]);
      assert.equal(JSON.parse(sockets[0].sent[0]).token, forged.token);
      const last = sockets.at(-1);
      assert.ok(last.url.endsWith('/ws?auth=cookie'), last.url);
      assert.ok(!last.sent.some((frame) => frame.includes(session.token)), last.sent.join(' '));
      const cookies = await context.cookies();
      assert.deepEqual(cookies.map((c) => [c.name, c.value, c.path, c.httpOnly, c.sameSite]),
        [['taskwire_token', session.token, '/ws', true, 'Strict']]);
      assert.equal(await page.evaluate(() => document.cookie), '');
      const id = await startTask(page, { duration: 1000, steps: 4, name: 'after a new session' });
      await waitStatus(page, id, 'succeeded');
      await screenshot(page, '9-new-session');
      noPageErrors(page);
    });
  });
});

test('a tab whose session cookie is gone falls back to the auth message at once, as the same client', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      const first = await open(context, info.http);
      await first.check('#share-identity');
      await connection(first, 'connected');
      const clientId = await first.textContent('#client-id');
      // The cookie is gone (cleared, blocked, or set for another path) but the shared session
      // is still in storage: the next tab asks for the cookie, is refused at once, and sends
      // the same session's token in its first message instead.
      await context.clearCookies();
      const sockets = [];
      context.on('page', (p) => p.on('websocket', (ws) => {
        const socket = { url: ws.url(), sent: [] };
        ws.on('framesent', (frame) => socket.sent.push(frame.payload));
        sockets.push(socket);
      }));
      const began = Date.now();
      const second = await open(context, info.http);
      await connection(second, 'connected');
      assert.ok(Date.now() - began < 3000, `connected after ${Date.now() - began} ms`);
      assert.equal(await second.textContent('#client-id'), clientId);
      assert.equal(sockets.length, 2, sockets.map((socket) => socket.url).join(' '));
      assert.ok(sockets[0].url.endsWith('/ws?auth=cookie'), sockets[0].url);
      assert.deepEqual(sockets[0].sent, []);
      assert.ok(sockets[1].url.endsWith('/ws'), sockets[1].url);
      assert.equal(JSON.parse(sockets[1].sent[0]).type, 'auth');
      const id = await startTask(first, { duration: 2000, steps: 8, name: 'after the fallback' });
      await waitMidway(second, id);
      await waitStatus(second, id, 'succeeded');
      noPageErrors(first, second);
    });
  });
});

test('an exec type from the config gets its own form; its result, error and toasts show', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      const page = await open(context, info.http);
      await connection(page, 'connected');
      // The form follows the type's parameter specs (tests/stack.py's "steps" type).
      await page.selectOption('#task-type', 'steps');
      const count = page.locator('#param-count');
      assert.equal(await count.getAttribute('type'), 'number');
      assert.equal(await count.getAttribute('min'), '1');
      assert.equal(await count.getAttribute('max'), '10');
      assert.equal(await count.inputValue(), '3');
      assert.equal(await page.inputValue('#param-note'), 'x');
      assert.equal(await page.isChecked('#param-fail'), false);
      assert.equal(await page.locator('#param-duration_ms').count(), 0);
      await page.fill('#param-note', 'hello');
      /** Start the form's task as name; it ends with status, showing outcome and a toast. */
      async function runsTo(name, status, outcome) {
        await page.fill('#task-name', name);
        await page.click('#submit');
        const item = page.locator('.task', { has: page.locator('.task-name', { hasText: name }) });
        await item.locator('.outcome', { hasText: outcome }).waitFor({ timeout: STEP });
        assert.equal(await item.getAttribute('data-status'), status);
        await page.locator(`.toast-${status}`, { hasText: `${name} ${status}` }).waitFor({ timeout: STEP });
      }
      await runsTo('counts', 'succeeded', '"note":"hello"');
      await page.check('#param-fail');
      await runsTo('breaks', 'failed', 'something went wrong at step 3');
      // A value outside the spec is refused with the API's message, and nothing is started.
      await page.fill('#param-count', '11');
      await page.fill('#task-name', 'too many');
      await page.click('#submit');
      await page.locator('#form-error', { hasText: 'count' }).waitFor({ timeout: STEP });
      assert.equal(await page.locator('.task').count(), 2);
      await screenshot(page, '10-exec-type');
      noPageErrors(page);
    });
  });
});

test('a page with more than 200 tasks lists every one, page by page, resuming a page that failed', { timeout: 90000 }, async () => {
  // No worker: the tasks stay queued, so only the resync can bring them to the page.
  await withStack(['--no-worker'], async ({ info }) => {
    const session = await newSession(info.http);
    const ids = await submitMany(info.http, session, 230);
    await withContext(async (context) => {
      await useSession(context, session);
      const lists = [];
      let failedOnce = false;
      await context.route(/\/api\/tasks\?/, async (route) => {
        const url = new URL(route.request().url());
        lists.push(url.search);
        // The second page fails once: the resync tries it again, not the whole list.
        if (url.searchParams.has('before') && !failedOnce) {
          failedOnce = true;
          await route.abort('connectionreset');
        } else {
          await route.continue();
        }
      });
      const page = await open(context, info.http);
      await connection(page, 'connected');
      await until('every task on the page', async () => (await page.locator('.task').count()) === ids.length);
      const shown = await page.locator('.task').evaluateAll((items) => items.map((i) => i.dataset.taskId));
      assert.deepEqual([...shown].sort(), [...ids].sort());
      assert.equal(new Set(shown).size, ids.length);
      // Page one, page two (failed), page two again; each the API's largest page.
      assert.equal(lists.length, 3, lists.join(' '));
      assert.ok(lists.every((q) => q.includes('limit=200')), lists.join(' '));
      assert.ok(!lists[0].includes('before='));
      assert.equal(lists[1], lists[2]);
      assert.ok(await page.locator('#log li', { hasText: 'list failed (1 of 10)' }).count() >= 1);
      await screenshot(page, '11-more-than-a-page');
      noPageErrors(page);
    });
  });
});

test('a task list that fails is tried again with backoff and the page converges', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    // Tasks that finished while no page was open: only a list can show them.
    const session = await newSession(info.http);
    const ids = await submitMany(info.http, session, 3, { duration_ms: 200, steps: 2 });
    for (const id of ids) {
      await until(`task ${id} to succeed`, async () =>
        (await api(info.http, 'GET', `/api/tasks/${id}`, { token: session.token })).body.status === 'succeeded');
    }
    await withContext(async (context) => {
      await useSession(context, session);
      const times = [];
      await context.route(/\/api\/tasks\?/, async (route) => {
        times.push(Date.now());
        if (times.length === 1 || times.length === 3) await route.abort('connectionrefused');
        else if (times.length === 2) {
          await route.fulfill({ status: 503, contentType: 'application/json',
            body: '{"error":{"code":"unavailable","message":"the store is down"}}' });
        } else await route.continue();
      });
      const page = await open(context, info.http);
      await connection(page, 'connected');
      for (const id of ids) await waitStatus(page, id, 'succeeded');
      assert.equal(times.length, 4);
      // Waits of 0.5 s, 1 s and 2 s, each jittered down by up to half.
      const gaps = times.slice(1).map((t, i) => t - times[i]);
      [250, 500, 1000].forEach((least, i) => assert.ok(gaps[i] >= least - 30, `gaps ${gaps}`));
      assert.equal(await page.locator('#log li', { hasText: /list failed \(\d of 10\)/ }).count(), 3);
      assert.equal(await page.locator('#connection').getAttribute('data-state'), 'connected');
      await screenshot(page, '12-list-retried');
      noPageErrors(page);
    });
  });
});

test('a cancelled task is retried from the page and succeeds; a finished one is removed', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      const page = await open(context, info.http);
      await connection(page, 'connected');
      const id = await startTask(page, { duration: 2000, steps: 4, name: 'again' });
      await waitMidway(page, id);
      const item = card(page, id);
      assert.equal(await item.locator('.retry').isVisible(), false);
      assert.equal(await item.locator('.remove').isVisible(), false);
      await item.getByRole('button', { name: 'Cancel again' }).click();
      await waitStatus(page, id, 'cancelled');
      assert.equal(await item.locator('.cancel').isVisible(), false);
      assert.equal(await item.locator('.remove').isVisible(), true);
      // Retry: the same card, a second attempt, which runs to the end this time.
      await item.getByRole('button', { name: 'Retry again' }).click();
      await waitStatus(page, id, 'running');
      assert.equal(await item.locator('.retry').isVisible(), false);
      assert.equal(await item.locator('.remove').isVisible(), false);
      assert.equal(await item.locator('.cancel').isEnabled(), true);
      // The budget after a retry is the server's to set: the line shows what the task says.
      const budget = (await restTask(page, info.http, id)).max_attempts;
      assert.ok(budget >= 2, `max_attempts ${budget}`);
      assert.equal(await attemptLine(page, id), `attempt 2 of ${budget}`);
      await waitStatus(page, id, 'succeeded');
      assert.equal(await progress(page, id), 100);
      assert.equal(await attemptLine(page, id), `attempt 2 of ${budget}`);
      assert.equal(await item.locator('.retry').isVisible(), false);
      const done = await restTask(page, info.http, id);
      assert.equal(done.status, 'succeeded');
      assert.equal(done.attempts, 2);
      await screenshot(page, '13-retried');
      // Remove: gone from the page at once, and from the server.
      await item.getByRole('button', { name: 'Remove again' }).click();
      await item.waitFor({ state: 'detached', timeout: STEP });
      assert.equal(await page.locator('.task').count(), 0);
      assert.equal(await page.isVisible('#empty'), true);
      const token = JSON.parse(await page.evaluate(() => sessionStorage.getItem('taskwire.session'))).token;
      assert.equal((await api(info.http, 'GET', `/api/tasks/${id}`, { token })).status, 404);
      noPageErrors(page);
    });
  });
});

test('a retrying task counts down to its next attempt, then shows which attempt runs', { timeout: 90000 }, async () => {
  // The events as the worker publishes them, injected through the real relay: the page's
  // rendering of a retry whatever the server's timing.
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      const page = await open(context, info.http);
      await connection(page, 'connected');
      const id = await startTask(page, { duration: 500, steps: 2, name: 'flaky' });
      await waitStatus(page, id, 'succeeded');
      const real = await restTask(page, info.http, id);
      const clientId = await page.textContent('#client-id');
      const at = new Date().toISOString();
      const retrying = { ...real, status: 'queued', progress: 0, message: 'retrying', result: null,
        error: 'exit status 3', attempts: 1, max_attempts: 3, finished_at: null,
        run_at: new Date(Date.now() + 8800).toISOString(),
        errors: [{ attempt: 1, at, error: 'exit status 3', worker: 'w1', host: 'build-host' }],
        seq: real.seq + 1 };
      await publishUntilStatus(page, info, clientId,
        { type: 'task', event: 'retrying', seq: retrying.seq, task: retrying }, id, 'queued');
      const item = card(page, id);
      const first = await attemptLine(page, id);
      const match = /^attempt 2 of 3, retrying in (\d) s$/.exec(first);
      assert.ok(match, first);
      assert.ok(Number(match[1]) >= 6 && Number(match[1]) <= 9, first);
      assert.equal(await item.locator('.badge').textContent(), 'retrying');
      assert.match(await item.locator('.outcome').textContent(), /exit status 3/);
      assert.equal(await item.locator('.cancel').isVisible(), true);
      assert.equal(await item.locator('.retry').isVisible(), false);
      await screenshot(page, '14-retrying');
      // The countdown moves with the clock.
      await page.waitForFunction(({ taskId, before }) => {
        const text = document.querySelector(`.task[data-task-id="${taskId}"] .attempt`).textContent;
        const m = /retrying in (\d) s/.exec(text);
        return m && Number(m[1]) < before;
      }, { taskId: id, before: Number(match[1]) }, { timeout: 3000, polling: 100 });
      // The next attempt starts: its number, not the countdown.
      const running = { ...retrying, status: 'running', attempts: 2, message: 'step 1 of 2',
        progress: 50, started_at: new Date().toISOString(), seq: retrying.seq + 1 };
      await publishUntilStatus(page, info, clientId,
        { type: 'task', event: 'started', seq: running.seq, task: running }, id, 'running');
      assert.equal(await attemptLine(page, id), 'attempt 2 of 3');
      assert.equal(await item.locator('.badge').textContent(), 'running');
      // The error of the attempt that ended stays in the card's history.
      assert.equal(await item.locator('.history summary').textContent(), '1 failed attempt');
      assert.match(await item.locator('.history li').first().textContent(),
        /^attempt 1 at .* on build-host: exit status 3$/);
      noPageErrors(page);
    });
  });
});

test('a task whose attempts fail is retried by the server, and the page follows each attempt', { timeout: 90000 }, async () => {
  const retries = { steps: { retry_on: 'failed', max_attempts: 3, retry_base_ms: 1500, retry_max_ms: 3000 } };
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      // Every text the attempt line shows, however briefly.
      await context.addInitScript(() => {
        window.attemptLines = [];
        new MutationObserver((records) => {
          for (const r of records) {
            const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
            const line = node && node.closest('.attempt');
            if (line && line.textContent && window.attemptLines.at(-1) !== line.textContent) {
              window.attemptLines.push(line.textContent);
            }
          }
        }).observe(document, { childList: true, characterData: true, subtree: true });
      });
      const page = await open(context, info.http);
      await connection(page, 'connected');
      await page.selectOption('#task-type', 'steps');
      await page.check('#param-fail');
      await page.fill('#task-name', 'fails thrice');
      await page.click('#submit');
      const item = page.locator('.task', { has: page.locator('.task-name', { hasText: 'fails thrice' }) });
      await item.waitFor({ timeout: STEP });
      const id = await item.getAttribute('data-task-id');
      await waitStatus(page, id, 'failed');
      const lines = await page.evaluate(() => window.attemptLines);
      for (const expected of [/^attempt 2 of 3, retrying (in \d s|now)$/, /^attempt 2 of 3$/,
        /^attempt 3 of 3, retrying (in \d s|now)$/, /^attempt 3 of 3$/]) {
        assert.ok(lines.some((l) => expected.test(l)), `${expected} in ${JSON.stringify(lines)}`);
      }
      assert.equal(await attemptLine(page, id), 'attempt 3 of 3');
      assert.equal(await item.locator('.history summary').textContent(), '3 failed attempts');
      assert.equal(await item.locator('.history li').count(), 3);
      assert.equal(await item.locator('.retry').isVisible(), true);
      assert.equal((await restTask(page, info.http, id)).attempts, 3);
      await item.locator('.history summary').click();
      await screenshot(page, '15-failed-after-retries');
      noPageErrors(page);
    });
  }, { type_settings: retries });
});

test('a submission whose reply is lost is sent again with the same Idempotency-Key: one task', { timeout: 90000 }, async () => {
  await withStack([], async ({ info }) => {
    await withContext(async (context) => {
      const keys = [];
      let replyLost = false;
      await context.route(/\/api\/tasks$/, async (route) => {
        if (route.request().method() !== 'POST') { await route.continue(); return; }
        keys.push(await route.request().headerValue('idempotency-key'));
        if (keys.length === 1) { // the server makes the task; its answer never arrives
          const response = await route.fetch();
          assert.ok((await response.json()).id, 'the server made the task');
          replyLost = true;
          await route.abort('connectionreset');
        } else {
          await route.continue();
        }
      });
      const page = await open(context, info.http);
      await connection(page, 'connected');
      const id = await startTask(page, { duration: 300, steps: 1, name: 'only once' });
      // The card can come from the WebSocket's queued event before the second try is sent.
      await until('the submission to end', async () => keys.length >= 2 &&
        !(await page.isDisabled('#submit')));
      assert.equal(replyLost, true);
      assert.equal(keys.length, 2);
      assert.equal(await page.isVisible('#form-error'), false);
      assert.match(keys[0], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(keys[1], keys[0]);
      await waitStatus(page, id, 'succeeded');
      const token = JSON.parse(await page.evaluate(() => sessionStorage.getItem('taskwire.session'))).token;
      const listed = await api(info.http, 'GET', '/api/tasks', { token });
      assert.deepEqual(listed.body.tasks.map((task) => task.id), [id]);
      assert.equal(await page.locator('.task').count(), 1);
      // Another submission is another key.
      await startTask(page, { duration: 300, steps: 1, name: 'second' });
      assert.equal(keys.length, 3);
      assert.notEqual(keys[2], keys[0]);
      assert.ok(await page.locator('#log li', { hasText: 'no answer: POST /api/tasks' }).count() >= 1);
      noPageErrors(page);
    });
  });
});
