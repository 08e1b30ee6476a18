// The project board (www/board.html) and the client library's channels (www/taskwire.js) in a
// real Chromium, against a real stack (tests/stack.py: lighttpd, the FastCGI handler, the relay
// and a worker on free loopback ports; a second relay of the test's own where a test needs
// two).  Every session gets the board's channels claim ([auth] session_channels).  Every test
// saves a screenshot under tests/screenshots/ and prints its path.
//
// The tests of presence, browser publish and history need those server parts: each runs when
// the built programs accept its configuration keys ([namespace] presence, [channels]
// publish_rate, [namespace] history_size) and is skipped, saying so, when they do not.
// Run: make test-browser (or TASKWIRE_BUILD=... node --test board.test.mjs here).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  ROOT, STEP, api, connection, launchBrowser, noPageErrors, screenshot, startStack, track, until,
  withStarted,
} from './harness.mjs';

const BUILD = path.resolve(process.env.TASKWIRE_BUILD || path.join(ROOT, 'build'));
const GRANTS = 'project:demo=subscribe,publish task:*=subscribe,publish'; // every session's claim
let browser;

// ---- which server parts the build has ----

/** Whether the built programs take config text (an unknown key is an error): how a test knows
 * the server part it needs is there. */
function configAccepted(text) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-board-'));
  try {
    const file = path.join(dir, 'check.conf');
    fs.writeFileSync(file, text);
    const run = spawnSync(path.join(BUILD, 'taskwire-relay'), ['-n', '-c', file], { encoding: 'utf8' });
    return run.status === 0;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const HAS_PRESENCE = configAccepted('[namespace project]\npresence = true\n');
const HAS_PUBLISH = configAccepted('[channels]\npublish_rate = 10\npublish_burst = 20\n');
const HAS_HISTORY = configAccepted('[namespace project]\nhistory_size = 5\n');
const needs = (has, part) => (has ? false : `needs ${part} (the build does not have it)`);

// ---- the stack ----

/** Run fn(stack) with a stack of Stack keyword arguments stackOptions, the board's grants
 * added, and its publish API key read (stack.publishKey); stopped afterwards. */
function withStack(stackOptions, fn) {
  return withStarted(async () => {
    const options = { ...stackOptions,
      auth_settings: { session_channels: GRANTS, ...(stackOptions.auth_settings || {}) } };
    const stack = await startStack({ options });
    stack.publishKey = fs.readFileSync(path.join(stack.info.tmp, 'var', 'publish.key'), 'utf8').trim();
    return stack;
  }, fn);
}

/** Run fn with count fresh browser contexts (each its own storage), or one per entry of a
 * list of context options (e.g. {httpCredentials}); closed after. */
async function withContexts(count, fn) {
  const contexts = [];
  try {
    for (const options of Array.isArray(count) ? count : Array.from({ length: count }, () => ({}))) {
      contexts.push(await browser.newContext(options));
    }
    await fn(...contexts);
  } finally {
    for (const context of contexts) await context.close();
  }
}

/** A free TCP port on the loopback (the kernel's pick, released for the caller to bind). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A second relay beside the stack's: the stack's config with another port, subscribed to the
 * same worker pool (its events endpoint), checking the same tokens.  Stopped by stop(). */
async function startSecondRelay(info) {
  const port = await freePort();
  const text = fs.readFileSync(path.join(info.tmp, 'taskwire.conf'), 'utf8');
  const section = /\[relay\][^[]*/.exec(text)[0];
  const config = path.join(info.tmp, 'relay2.conf');
  fs.writeFileSync(config, text.replace(section, section.replace(/^port = \d+$/m, `port = ${port}`)
    .replace(/^metrics_listen = .*$/m, '')));
  const log = fs.openSync(path.join(info.tmp, 'relay2.log'), 'a');
  const child = spawn(path.join(BUILD, 'taskwire-relay'), ['-c', config],
    { cwd: info.tmp, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  track(child);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const http = `http://127.0.0.1:${port}`;
  await until('the second relay to answer', async () => {
    if (child.exitCode !== null) throw new Error('the second relay exited while starting');
    try { return (await fetch(`${http}/health`)).status === 200; } catch (e) { return false; }
  });
  return {
    ws: `ws://127.0.0.1:${port}/ws`,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---- pages ----

/** Open url in context; the page's WebSocket URLs and frames are kept in page.sockets. */
async function open(context, url) {
  const page = await context.newPage();
  page.errors = [];
  page.sockets = [];
  page.on('pageerror', (e) => page.errors.push(e));
  page.on('websocket', (ws) => {
    const socket = { url: ws.url(), sent: [], received: [] };
    ws.on('framesent', (frame) => socket.sent.push(frame.payload));
    ws.on('framereceived', (frame) => socket.received.push(frame.payload));
    page.sockets.push(socket);
  });
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: STEP });
  return page;
}

/** A board of the stack as name (and more query parameters). */
async function openBoard(context, info, name, more = '') {
  const page = await open(context, `${info.http}board.html?name=${name}&backoffInitialMs=300${more}`);
  await connection(page, 'connected');
  return page;
}


/** Every frame the page received, parsed, over all its WebSockets. */
function framesIn(page) {
  return page.sockets.flatMap((s) => s.received).map((text) => {
    try { return JSON.parse(text); } catch (e) { return null; }
  }).filter(Boolean);
}

function framesOut(page) {
  return page.sockets.flatMap((s) => s.sent).map((text) => {
    try { return JSON.parse(text); } catch (e) { return null; }
  }).filter(Boolean);
}

function card(page, id) {
  return page.locator(`.board-task[data-task-id="${id}"]`);
}

async function waitStatus(page, id, status, selector = '.board-task') {
  await page.waitForSelector(`${selector}[data-task-id="${id}"][data-status="${status}"]`, { timeout: STEP });
}

async function waitMidway(page, id, selector = '.board-task') {
  await page.waitForFunction(({ taskId, sel }) => {
    const bar = document.querySelector(`${sel}[data-task-id="${taskId}"] [role="progressbar"]`);
    const value = bar ? Number(bar.getAttribute('aria-valuenow')) : 0;
    return value > 0 && value < 100;
  }, { taskId: id, sel: selector }, { timeout: STEP, polling: 50 });
}

async function progress(page, id, selector = '.board-task') {
  return Number(await page.locator(`${selector}[data-task-id="${id}"] [role="progressbar"]`)
    .getAttribute('aria-valuenow'));
}

/** Start a project task from the board's form; resolves to its id once its card shows. */
async function startBoardTask(page, { name, duration = 5000, steps = 10 }) {
  await page.fill('#task-name', name);
  await page.fill('#task-duration', String(duration));
  await page.fill('#task-steps', String(steps));
  await page.click('#submit');
  const item = page.locator('.board-task', { has: page.locator('.task-name', { hasText: name }) });
  await item.waitFor({ timeout: STEP });
  return item.getAttribute('data-task-id');
}

async function clientId(page) {
  await page.waitForFunction(() => /^[0-9a-f]{32}$/.test(document.querySelector('#client-id').textContent),
    null, { timeout: STEP });
  return page.textContent('#client-id');
}



// ---- the REST API from the test itself ----


/** A server's message to channel (POST /api/publish with the stack's publish key). */
async function serverPublish(stack, channel, data) {
  const { status, body } = await api(stack.info.http, 'POST', '/api/publish',
    { token: stack.publishKey, body: { channel, data } });
  assert.equal(status, 202, JSON.stringify(body));
}

/** The texts of the board's news, in the order shown. */
async function news(page) {
  return page.locator('#feed li').allTextContents();
}


before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
});

// ---- what the server of today does ----

test('with a list of two relays the page survives the first one\'s loss and keeps its tasks', { timeout: 120000 }, async () => {
  await withStack({}, async (stack) => {
    const second = await startSecondRelay(stack.info);
    try {
      await withContexts(1, async (context) => {
        const relays = [stack.info.relay, second.ws];
        const page = await open(context, `${stack.info.http}?backoffInitialMs=300&relays=${relays.join(',')}`);
        await page.evaluate(() => { window.notReloaded = true; });
        await connection(page, 'connected');
        // The session's cookie opens both relays' handshakes (one site: the cookie's host is
        // the pages', whatever the port).
        assert.equal(page.sockets[0].url, `${relays[0]}?auth=cookie`);
        await page.fill('#task-name', 'outlives a relay host');
        await page.selectOption('#task-type', 'sleep');
        await page.fill('#param-duration_ms', '6000');
        await page.fill('#param-steps', '12');
        await page.click('#submit');
        const item = page.locator('.task', { has: page.locator('.task-name', { hasText: 'outlives a relay host' }) });
        await item.waitFor({ timeout: STEP });
        const id = await item.getAttribute('data-task-id');
        await waitMidway(page, id, '.task');
        // The first relay's host is gone (kill -9): no close frame, the next try goes to the
        // second relay, which serves the same client.
        await stack.command('kill relay');
        await until('a connection to the second relay', async () =>
          page.sockets.length >= 2 && page.sockets.at(-1).url === `${relays[1]}?auth=cookie`);
        await connection(page, 'connected');
        const before = await progress(page, id, '.task');
        // Live again: the bar moves on events of the second relay, then the task ends.
        await page.waitForFunction(({ taskId, value }) => Number(document.querySelector(
          `.task[data-task-id="${taskId}"] [role="progressbar"]`).getAttribute('aria-valuenow')) > value,
        { taskId: id, value: before }, { timeout: STEP, polling: 50 });
        await waitStatus(page, id, 'succeeded', '.task');
        assert.equal(await progress(page, id, '.task'), 100);
        assert.equal(await page.locator('.task').count(), 1);
        assert.equal(await page.evaluate(() => window.notReloaded), true);
        assert.ok(!page.sockets.some((s) => s.url.includes('token')));
        assert.ok(framesIn(page).some((m) => m.type === 'task' && m.event === 'succeeded'),
          'the final state came live');
        await screenshot(page, 'board-1-second-relay');
        noPageErrors(page);
      });
    } finally {
      await second.stop();
    }
  });
});

test('a project task another member starts appears live on the board, progresses and ends', { timeout: 120000 }, async () => {
  // Two users of the web server's login (lighttpd asks for a password on /api/session), each
  // session with the board's claim.
  const users = { alice: 'alice-secret', bob: 'bob-secret' };
  const stackOptions = { basic_auth: users, auth_settings: { trust_remote_user: 'true' } };
  const logins = Object.entries(users).map(([username, password]) => ({ httpCredentials: { username, password } }));
  await withStack(stackOptions, async (stack) => {
    await withContexts(logins, async (one, two) => {
      const alice = await openBoard(one, stack.info, 'alice');
      const bob = await openBoard(two, stack.info, 'bob');
      for (const page of [alice, bob]) await page.waitForSelector('body[data-joined="true"]', { timeout: STEP });
      const [aliceId, bobId] = [await clientId(alice), await clientId(bob)];
      assert.notEqual(aliceId, bobId);
      // The login's identity: the same client id for every session of the user.
      const again = await openBoard(one, stack.info, 'alice');
      assert.equal(await clientId(again), aliceId);
      await again.close();
      // Each session carries the board's claim, and says so.
      const session = JSON.parse(await alice.evaluate(() => sessionStorage.getItem('taskwire.session')));
      const claims = JSON.parse(Buffer.from(session.token.split('.')[1], 'base64url').toString());
      assert.deepEqual(claims.channels, { 'project:demo': ['subscribe', 'publish'],
        'task:*': ['subscribe', 'publish'] });
      const id = await startBoardTask(bob, { name: 'bob builds', duration: 4000, steps: 8 });
      // On alice's board, live: the channel's events, not her own task list.
      await card(alice, id).waitFor({ timeout: STEP });
      await waitMidway(alice, id);
      await waitStatus(alice, id, 'succeeded');
      assert.equal(await progress(alice, id), 100);
      await waitStatus(bob, id, 'succeeded');
      const task = framesIn(alice).find((m) => m.type === 'task' && m.task && m.task.id === id).task;
      assert.equal(task.client_id, bobId);
      assert.deepEqual(task.channels, ['project:demo']);
      // Not alice's task: her own list (REST) does not have it.
      const token = JSON.parse(await alice.evaluate(() => sessionStorage.getItem('taskwire.session'))).token;
      const mine = await api(stack.info.http, 'GET', '/api/tasks', { token });
      assert.deepEqual(mine.body.tasks.map((t) => t.id), []);
      // Bob's own card came once however many ways his task's events reached him.
      assert.equal(await bob.locator(`.board-task[data-task-id="${id}"]`).count(), 1);
      // A task alice starts shows on bob's board too.
      const second = await startBoardTask(alice, { name: 'alice answers', duration: 1000, steps: 2 });
      await waitStatus(bob, second, 'succeeded');
      assert.equal(await bob.locator('.board-task').count(), 2);
      await screenshot(alice, 'board-2-project-task-alice');
      await screenshot(bob, 'board-2-project-task-bob');
      // At a phone's width, with a room open: one column, nothing wider than the screen.
      await bob.setViewportSize({ width: 390, height: 844 });
      await card(bob, id).locator('.open-room').click();
      await bob.waitForSelector(`#room[data-task-id="${id}"]`, { timeout: STEP });
      assert.ok(await bob.evaluate(() => document.documentElement.scrollWidth <= 390),
        'the board is wider than a phone');
      await screenshot(bob, 'board-2-phone-width');
      noPageErrors(alice, bob);
    });
  });
});

test('a project the session has no claim for is refused: an error on the board, and nothing delivered', { timeout: 90000 }, async () => {
  await withStack({}, async (stack) => {
    await withContexts(1, async (context) => {
      const page = await openBoard(context, stack.info, 'mallory', '&project=secret');
      await page.waitForSelector('body[data-joined="false"]', { timeout: STEP });
      assert.match(await page.textContent('#board-error'), /Cannot join project:secret: not_allowed/);
      assert.equal(await page.isVisible('#board-error'), true);
      const refused = framesIn(page).find((m) => m.type === 'refused');
      assert.equal(refused.request, 'subscribe');
      assert.equal(refused.channel, 'project:secret');
      // A channel it may join, as the control: once a message sent after the secret one
      // reaches the page there, the secret one would have too.
      await page.evaluate(() => {
        window.demoMessages = [];
        return window.board.client.subscribe('project:demo', (m) => window.demoMessages.push(m));
      });
      for (let tries = 1; ; tries++) { // the upstream subscription takes a moment
        await serverPublish(stack, 'project:secret', { text: `secret ${tries}` });
        await serverPublish(stack, 'project:demo', { text: `demo ${tries}` });
        try {
          await page.waitForFunction(() => window.demoMessages.length > 0, null, { timeout: 1000 });
          break;
        } catch (e) {
          if (tries >= 10) throw e;
        }
      }
      assert.ok(!framesIn(page).some((m) => m.channel === 'project:secret' && m.type === 'message'));
      assert.equal(await page.locator('#feed li').count(), 0);
      // Refused once: not asked again after a reconnect.
      await stack.command('kill relay');
      await stack.command('start relay');
      await connection(page, 'connected');
      await until('project:demo again', async () => framesOut(page).filter((m) =>
        m.type === 'subscribe' && m.channel === 'project:demo').length >= 2);
      assert.equal(framesOut(page).filter((m) => m.type === 'subscribe' && m.channel === 'project:secret').length, 1);
      await screenshot(page, 'board-3-refused');
      noPageErrors(page);
    });
  });
});

test('a token the app\'s backend minted is the page\'s session, with its own channels claim', { timeout: 90000 }, async () => {
  await withStack({}, async (stack) => {
    // What a backend does for a member of project:secret (the sample grant lacks it).
    const clientIdOf = 'b'.repeat(32);
    const mint = spawnSync(path.join(BUILD, 'taskwire'), ['-c', path.join(stack.info.tmp, 'taskwire.conf'),
      'token', 'mint', '--client', clientIdOf, '--ttl', '600', '--channel', 'project:secret=subscribe'],
    { encoding: 'utf8' });
    assert.equal(mint.status, 0, mint.stderr);
    const token = mint.stdout.trim();
    await withContexts(1, async (context) => {
      const page = await context.newPage();
      page.errors = [];
      page.on('pageerror', (e) => page.errors.push(e));
      await page.goto(`${stack.info.http}taskwire.js`); // any document of the origin
      const joined = await page.evaluate(async (given) => {
        const { Taskwire } = await import('/taskwire.js');
        const tw = new Taskwire({ session: async () => ({ token: given }), backoffInitialMs: 300 });
        window.tw = tw;
        window.got = [];
        tw.start();
        const secret = await tw.subscribe('project:secret', (m) => window.got.push(m));
        const demo = await tw.subscribe('project:demo').then(() => 'subscribed', (e) => e.code);
        return { secret: secret.type, demo, clientId: tw.clientId(), subscriptions: tw.subscriptions() };
      }, token);
      assert.deepEqual(joined, { secret: 'subscribed', demo: 'not_allowed', clientId: clientIdOf,
        subscriptions: ['project:secret'] });
      for (let tries = 1; ; tries++) { // the upstream subscription takes a moment
        await serverPublish(stack, 'project:secret', { text: `for members ${tries}` });
        try {
          await page.waitForFunction(() => window.got.length > 0, null, { timeout: 1000 });
          break;
        } catch (e) {
          if (tries >= 10) throw e;
        }
      }
      const [message] = await page.evaluate(() => window.got);
      assert.equal(message.type, 'message');
      assert.equal(message.channel, 'project:secret');
      assert.match(message.data.text, /^for members/);
      noPageErrors(page);
    });
  });
});

// ---- the library's side of the contracts, against frames and answers of the test's own ----
// (Today's server has no presence, browser publish or history: these hold the client to the
// documented contract meanwhile; the tests below run the same against the real parts.)

/** Route the page's WebSockets through the test, forwarding both ways: returns {inject(m),
 * drop(), count()} for the latest connection. */
async function proxyWebSockets(context) {
  const links = [];
  await context.routeWebSocket(/\/ws/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => ws.send(m));
    links.push({ ws, server });
  });
  return {
    inject: (message) => links.at(-1).ws.send(JSON.stringify(message)),
    drop: () => { const { ws, server } = links.at(-1); ws.close({ code: 1001, reason: 'test drop' }); server.close(); },
    count: () => links.length,
  };
}

const news1 = (offset, epoch = 'e1') => ({ type: 'message', channel: 'project:demo',
  data: { text: `n${offset}` }, offset, epoch });

test('the client recovers a channel by offset: missed ones first, live ones after, once each; a gap read; a lost position said', { timeout: 90000 }, async () => {
  await withStack({}, async (stack) => {
    await withContexts(1, async (context) => {
      const link = await proxyWebSockets(context);
      const asked = [];
      let answer = null; // what the next read of the history gets (a function of its query)
      await context.route(/\/api\/channels\/project:demo\/history/, async (route) => {
        const url = new URL(route.request().url());
        asked.push(url.search);
        const body = answer ? await answer(url.searchParams) :
          { channel: 'project:demo', epoch: 'e1', offset: 0, recovered: true, messages: [], more: false };
        await route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
      });
      const page = await openBoard(context, stack.info, 'alice');
      await page.waitForSelector('body[data-joined="true"]', { timeout: STEP });
      await until('the position read', async () => asked.length === 1);
      assert.equal(asked[0], ''); // {history: true}: where the channel stands, nothing missed yet
      link.inject(news1(1));
      link.inject(news1(2));
      link.inject(news1(2)); // a copy: dropped
      await until('n2', async () => (await news(page)).at(-1) === 'n2');
      // A drop; the read after the reconnect is answered in two pages, while a live message
      // (5) arrives before the first page does.
      let release;
      const held = new Promise((resolve) => { release = resolve; });
      answer = async (q) => {
        if (q.get('since') === '2') {
          link.inject(news1(5));
          await held;
          return { channel: 'project:demo', epoch: 'e1', offset: 5, recovered: true,
            messages: [news1(4), news1(3)], more: true };
        }
        return { channel: 'project:demo', epoch: 'e1', offset: 5, recovered: true,
          messages: [news1(5)], more: false };
      };
      link.drop();
      await until('the reconnect', async () => link.count() === 2);
      await connection(page, 'connected');
      await until('the read since 2', async () => asked.includes('?since=2&epoch=e1'));
      assert.deepEqual(await news(page), ['n1', 'n2']); // 5 waits for the history
      release();
      await until('n5', async () => (await news(page)).length === 5);
      assert.deepEqual(await news(page), ['n1', 'n2', 'n3', 'n4', 'n5']);
      assert.ok(asked.includes('?since=4&epoch=e1'), asked.join(' '));
      assert.deepEqual(await page.evaluate(() => window.board.recoveries), [{ recovered: true, missed: 3 }]);
      // A live message that skips one: the missing one is read first.
      answer = async () => ({ channel: 'project:demo', epoch: 'e1', offset: 7, recovered: true,
        messages: [news1(6), news1(7)], more: false });
      link.inject(news1(7));
      await until('n7', async () => (await news(page)).at(-1) === 'n7');
      assert.deepEqual((await news(page)).slice(5), ['n6', 'n7']);
      assert.ok(asked.includes('?since=5&epoch=e1'), asked.join(' '));
      // Offline past the history: recovered false, said, and on from the new position.
      answer = async () => ({ channel: 'project:demo', epoch: 'e2', offset: 40, recovered: false,
        messages: [], more: false });
      link.drop();
      await until('the second reconnect', async () => link.count() === 3);
      await page.waitForSelector('body[data-recovered="false"]', { timeout: STEP });
      assert.equal(await page.getAttribute('#notice', 'data-kind'), 'missed');
      link.inject(news1(40, 'e2')); // had it (the position)
      link.inject(news1(41, 'e2'));
      await until('n41', async () => (await news(page)).at(-1) === 'n41');
      assert.equal((await news(page)).filter((t) => t === 'n40').length, 0);
      assert.deepEqual(await page.evaluate(() => window.board.client.position('project:demo')),
        { offset: 41, epoch: 'e2' });
      await screenshot(page, 'board-7-recovery-contract');
      noPageErrors(page);
    });
  });
});

test('the client keeps presence from a snapshot and join/leave messages, and shows others typing in a room', { timeout: 90000 }, async () => {
  await withStack({}, async (stack) => {
    await withContexts(1, async (context) => {
      const link = await proxyWebSockets(context);
      const [ann, ben, cat] = ['a'.repeat(32), 'b'.repeat(32), 'c'.repeat(32)];
      let release;
      const held = new Promise((resolve) => { release = resolve; });
      let snapshots = 0;
      await context.route(/\/api\/channels\/[^/]+\/presence/, async (route) => {
        snapshots += 1;
        const channel = decodeURIComponent(new URL(route.request().url()).pathname.split('/')[3]);
        if (channel === 'project:demo') await held;
        await route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({
          channel, clients: [{ client_id: ann, connections: 1 }, { client_id: ben, connections: 2 }] }) });
      });
      const page = await openBoard(context, stack.info, 'alice');
      await page.waitForSelector('body[data-joined="true"]', { timeout: STEP });
      // Events that come while the snapshot is read wait for it.
      await until('the snapshot asked for', async () => snapshots >= 1);
      link.inject({ type: 'presence', channel: 'project:demo', client_id: cat, action: 'join', connections: 1 });
      link.inject({ type: 'presence', channel: 'project:demo', client_id: ben, action: 'leave', connections: 1 });
      release();
      await page.waitForSelector(`#members li[data-client-id="${cat}"]`, { timeout: STEP });
      const members = async () => page.locator('#members li').evaluateAll((items) =>
        items.map((i) => `${i.dataset.clientId.slice(0, 1)}${i.dataset.connections}`));
      assert.deepEqual(await members(), ['a1', 'b1', 'c1']);
      link.inject({ type: 'presence', channel: 'project:demo', client_id: ben, action: 'leave', connections: 0 });
      link.inject({ type: 'message', channel: 'project:demo', from: cat, data: { who: 'cathy' } });
      await until('ben gone', async () => (await members()).join() === 'a1,c1');
      await page.locator(`#members li[data-client-id="${cat}"]`, { hasText: 'cathy' }).waitFor({ timeout: STEP });
      // A room: others typing, a comment, and the line gone after 4 s of silence.
      const id = await startBoardTask(page, { name: 'a room', duration: 30000, steps: 30 });
      await card(page, id).locator('.open-room').click();
      await until('the room joined', async () => framesIn(page).some((m) => m.type === 'subscribed' && m.channel === `task:${id}`));
      link.inject({ type: 'message', channel: `task:${id}`, from: cat, data: { typing: true, name: 'cathy' } });
      await page.locator('#typing', { hasText: 'cathy is typing…' }).waitFor({ timeout: STEP });
      link.inject({ type: 'message', channel: `task:${id}`, from: ann, data: { typing: true, name: 'ann' } });
      await page.locator('#typing', { hasText: 'cathy and ann are typing…' }).waitFor({ timeout: STEP });
      link.inject({ type: 'message', channel: `task:${id}`, from: cat, data: { comment: 'ship it', name: 'cathy' } });
      await page.locator('#comments li', { hasText: 'ship it' }).waitFor({ timeout: STEP });
      assert.equal(await page.textContent('#typing'), 'ann is typing…');
      await page.waitForFunction(() => document.querySelector('#typing').textContent === '', null, { timeout: 8000 });
      // Another room's typing does not show here.
      link.inject({ type: 'message', channel: 'task:other', from: cat, data: { typing: true, name: 'cathy' } });
      // Typing here is published and answered (a stack whose task namespace does not let
      // members publish refuses it: counted, no error on the page either way).
      await page.locator('#comment-input').pressSequentially('hello there', { delay: 40 });
      await until('a typing publish', async () => framesOut(page).some((m) => m.type === 'publish' &&
        m.channel === `task:${id}` && m.data.typing === true));
      await until('its answer', async () => framesIn(page).some((m) =>
        (m.type === 'published' && m.channel === `task:${id}`) ||
        (m.type === 'refused' && m.request === 'publish')));
      assert.equal(await page.textContent('#typing'), '');
      assert.equal(await page.isVisible('#comment-error'), false);
      assert.equal(await page.isVisible('#board-error'), false);
      await screenshot(page, 'board-8-presence-contract');
      noPageErrors(page);
    });
  });
});

// ---- presence ----

test('two members on one board see each other join and leave, with their connections', { timeout: 120000, skip: needs(HAS_PRESENCE, 'presence') }, async () => {
  const namespaces = { project: { presence: 'true' }, task: { presence: 'true' } };
  await withStack({ namespaces }, async (stack) => {
    await withContexts(2, async (one, two) => {
      const alice = await openBoard(one, stack.info, 'alice');
      const aliceId = await clientId(alice);
      await alice.locator(`#members li[data-client-id="${aliceId}"]`).waitFor({ timeout: STEP });
      // Bob with two tabs of one identity: one member, two connections.
      const bob = await openBoard(two, stack.info, 'bob', '&identity=shared');
      const bobId = await clientId(bob);
      const bobOnAlice = alice.locator(`#members li[data-client-id="${bobId}"]`);
      await bobOnAlice.waitFor({ timeout: STEP });
      await bob.locator(`#members li[data-client-id="${aliceId}"]`).waitFor({ timeout: STEP });
      const bobAgain = await openBoard(two, stack.info, 'bob', '&identity=shared');
      assert.equal(await clientId(bobAgain), bobId);
      await alice.waitForSelector(`#members li[data-client-id="${bobId}"][data-connections="2"]`, { timeout: STEP });
      if (HAS_PUBLISH) { // names travel in a publish of each board
        await until('bob\'s name on alice\'s board', async () => /bob/.test(await bobOnAlice.textContent()));
      }
      // The snapshot over REST says the same.
      const token = JSON.parse(await alice.evaluate(() => sessionStorage.getItem('taskwire.session'))).token;
      const snapshot = await api(stack.info.http, 'GET', '/api/channels/project:demo/presence', { token });
      assert.equal(snapshot.status, 200, JSON.stringify(snapshot.body));
      const counts = Object.fromEntries(snapshot.body.clients.map((c) => [c.client_id, c.connections]));
      assert.equal(counts[aliceId], 1);
      assert.equal(counts[bobId], 2);
      await screenshot(alice, 'board-4-presence');
      // One tab leaves: one connection; the other: bob is gone.
      await bobAgain.close();
      await alice.waitForSelector(`#members li[data-client-id="${bobId}"][data-connections="1"]`, { timeout: STEP });
      await bob.close();
      await bobOnAlice.waitFor({ state: 'detached', timeout: STEP });
      assert.equal(await alice.locator('#members li').count(), 1);
      assert.ok(framesIn(alice).some((m) => m.type === 'presence' && m.client_id === bobId && m.action === 'leave'));
      await screenshot(alice, 'board-4-presence-left');
      noPageErrors(alice);
    });
  });
});

// ---- browser publish ----

test('typing reaches the other member in that task room only, and a burst is rate-limited without an error storm', { timeout: 120000, skip: needs(HAS_PUBLISH, 'browser publish') }, async () => {
  await withStack({ channel_settings: { publish_rate: 2, publish_burst: 5 } }, async (stack) => {
    await withContexts(3, async (one, two, three) => {
      const alice = await openBoard(one, stack.info, 'alice');
      const bob = await openBoard(two, stack.info, 'bob');
      const carol = await openBoard(three, stack.info, 'carol');
      const shared = await startBoardTask(alice, { name: 'the shared one', duration: 60000, steps: 60 });
      const other = await startBoardTask(carol, { name: 'carol\'s own', duration: 60000, steps: 60 });
      await card(bob, shared).waitFor({ timeout: STEP });
      await card(alice, other).waitFor({ timeout: STEP });
      await card(alice, shared).locator('.open-room').click();
      await card(bob, shared).locator('.open-room').click();
      await card(carol, other).locator('.open-room').click();
      for (const [page, id] of [[alice, shared], [bob, shared], [carol, other]]) {
        await page.waitForSelector(`#room[data-task-id="${id}"]`, { timeout: STEP });
        await until(`the room of ${id}`, async () => framesIn(page).some((m) => m.type === 'subscribed' && m.channel === `task:${id}`));
      }
      // Alice types for 3 seconds: bob sees her typing line; carol, in another room, does not.
      const started = Date.now();
      await alice.locator('#comment-input').pressSequentially('this looks good to me, shipping it now', { delay: 80 });
      const typedFor = Date.now() - started;
      await bob.locator('#typing', { hasText: 'alice is typing…' }).waitFor({ timeout: STEP });
      const typings = framesOut(alice).filter((m) => m.type === 'publish' && m.data && m.data.typing === true);
      assert.ok(typings.length >= 1 && typings.length <= Math.ceil(typedFor / 2000) + 1,
        `${typings.length} typing publishes in ${typedFor} ms`);
      assert.ok(typings.every((m) => m.channel === `task:${shared}`));
      // The comment reaches bob, the line clears; nothing of it reaches carol.
      await alice.click('#comment-send');
      await bob.locator('#comments li', { hasText: 'this looks good to me' }).waitFor({ timeout: STEP });
      assert.equal(await bob.textContent('#typing'), '');
      await alice.locator('#comments li.mine', { hasText: 'this looks good to me' }).waitFor({ timeout: STEP });
      assert.equal(await carol.textContent('#typing'), '');
      assert.equal(await carol.locator('#comments li').count(), 0);
      assert.ok(!framesIn(carol).some((m) => m.type === 'message' && m.channel === `task:${shared}`));
      // Typing that stops: the line goes after 4 s of silence.
      await alice.locator('#comment-input').pressSequentially('one more', { delay: 50 });
      await bob.locator('#typing', { hasText: 'alice is typing…' }).waitFor({ timeout: STEP });
      await bob.waitForFunction(() => document.querySelector('#typing').textContent === '', null, { timeout: 8000 });
      await screenshot(bob, 'board-5-room-bob');
      // A burst well past the relay's bucket: refused rate_limited, the connection stays, the
      // page shows one quiet notice at most.
      const codes = await alice.evaluate(async (channel) => {
        const tries = [];
        for (let i = 0; i < 30; i++) {
          tries.push(window.board.client.publish(channel, { typing: true, name: 'alice' })
            .then(() => 'published', (e) => e.code));
        }
        return Promise.all(tries);
      }, `task:${shared}`);
      assert.ok(codes.includes('rate_limited'), codes.join(' '));
      assert.ok(codes.includes('published'), codes.join(' '));
      await alice.locator('#comment-input').pressSequentially(' still typing', { delay: 30 });
      assert.equal(await alice.getAttribute('#connection', 'data-state'), 'connected');
      assert.equal(await alice.isVisible('#board-error'), false);
      assert.equal(await alice.isVisible('#comment-error'), false);
      assert.ok(await alice.locator('[role="alert"]:visible').count() === 0);
      assert.ok(await alice.locator('.notice').count() <= 1);
      await screenshot(alice, 'board-5-burst');
      noPageErrors(alice, bob, carol);
    });
  });
});

// ---- history ----

test('a board offline while news is published gets it in order after it reconnects, and says so past the history', { timeout: 150000, skip: needs(HAS_HISTORY, 'history') }, async () => {
  const namespaces = { project: { history_size: 5, history_ttl: 300 } };
  await withStack({ namespaces }, async (stack) => {
    await withContexts(1, async (context) => {
      const page = await openBoard(context, stack.info, 'alice');
      await page.waitForSelector('body[data-joined="true"]', { timeout: STEP });
      // Live, with offsets (once the relay's upstream subscription is there).
      for (let tries = 1; (await news(page)).length === 0; tries++) {
        await serverPublish(stack, 'project:demo', { text: 'news 1' });
        await page.waitForFunction(() => document.querySelectorAll('#feed li').length > 0, null,
          { timeout: 1000 }).catch((e) => { if (tries >= 10) throw e; });
      }
      await serverPublish(stack, 'project:demo', { text: 'news 2' });
      await until('news 2', async () => (await news(page)).at(-1) === 'news 2');
      const shown = await news(page);
      assert.ok(shown.every((t) => t === 'news 1' || t === 'news 2'), shown.join(' | '));
      const before = shown.length;
      const recoveriesBefore = await page.evaluate(() => window.board.recoveries.length); // a gap's
      // Offline (its relay gone) while three more are published ...
      await stack.command('kill relay');
      await connection(page, 'reconnecting');
      for (const n of [3, 4, 5]) await serverPublish(stack, 'project:demo', { text: `news ${n}` });
      // ... and one more that arrives live after the history was read, before the page has
      // its answer: it waits, and follows the missed ones.
      let held = false;
      let liveMeanwhile = false;
      await context.route(/\/api\/channels\/[^/]+\/history/, async (route) => {
        if (held) { await route.continue(); return; }
        held = true;
        const response = await route.fetch();
        await serverPublish(stack, 'project:demo', { text: 'news 6' });
        // Live, unless it went out before the relay's upstream subscription was there; then
        // the next live message's gap makes the page read it from the history.
        liveMeanwhile = await until('news 6 on the wire', async () => framesIn(page).some((m) =>
          m.type === 'message' && m.data && m.data.text === 'news 6'), 5000).then(() => true, () => false);
        console.log(`news 6 arrived live while the history's answer was held: ${liveMeanwhile}`);
        await route.fulfill({ response });
      });
      await stack.command('start relay');
      await connection(page, 'connected');
      await until('the recovery', async () =>
        (await page.evaluate(() => window.board.recoveries.length)) > recoveriesBefore);
      await serverPublish(stack, 'project:demo', { text: 'news 7' });
      await until('news 7', async () => (await news(page)).at(-1) === 'news 7');
      assert.deepEqual((await news(page)).slice(before - 1),
        ['news 2', 'news 3', 'news 4', 'news 5', 'news 6', 'news 7']);
      const offsets = await page.locator('#feed li').evaluateAll((items) => items.map((i) => Number(i.dataset.offset)));
      assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
      assert.equal(new Set(offsets).size, offsets.length);
      assert.ok(held);
      assert.deepEqual(await page.evaluate((n) => window.board.recoveries[n], recoveriesBefore),
        { recovered: true, missed: 3 });
      assert.equal(await page.getAttribute('body', 'data-recovered'), 'true');
      await screenshot(page, 'board-6-recovered');
      // Offline past what the history keeps (5): recovered false, said on the page, and the
      // board goes on from where the channel is.
      await context.unroute(/\/api\/channels\/[^/]+\/history/);
      await stack.command('kill relay');
      await connection(page, 'reconnecting');
      for (let n = 8; n <= 15; n++) await serverPublish(stack, 'project:demo', { text: `news ${n}` });
      await stack.command('start relay');
      await connection(page, 'connected');
      await page.waitForSelector('body[data-recovered="false"]', { timeout: STEP });
      assert.equal(await page.getAttribute('#notice', 'data-kind'), 'missed');
      assert.equal(await page.isVisible('#notice'), true);
      await serverPublish(stack, 'project:demo', { text: 'news 16' });
      await until('news 16', async () => (await news(page)).at(-1) === 'news 16');
      assert.ok(!(await news(page)).includes('news 8'));
      await screenshot(page, 'board-6-not-recovered');
      noPageErrors(page);
    });
  });
});
