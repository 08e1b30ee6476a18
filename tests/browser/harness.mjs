// What every browser test file shares: the bound on a wait, the screenshots' folder, Debian's
// Chromium launched headless with the flags this machine needs (never a downloaded browser),
// tests/stack.py started as a child process (each file with the options its pages need), and
// small page and REST helpers.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHOTS = path.join(ROOT, 'tests', 'screenshots');
export const STEP = 20000; // ms: the bound on any one thing a test waits for

/** Debian's Chromium, headless; the caller closes it. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
}

/** Wait until check() is true, polling every 100 ms; throws after timeout ms. */
export async function until(what, check, timeout = STEP) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Save a full-page screenshot under tests/screenshots/ and print its path. */
export async function screenshot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

/** Fail when a page (its errors collected by the file's open()) threw. */
export function noPageErrors(...pages) {
  for (const page of pages) assert.deepEqual(page.errors.map(String), [], 'uncaught errors in the page');
}

/** Wait for the page's connection badge to say state. */
export async function connection(page, state) {
  await page.waitForSelector(`#connection[data-state="${state}"]`, { timeout: STEP });
}

/** One REST call: {status, body} (body parsed, or null when empty). */
export async function api(base, method, route, { token, body, headers = {} } = {}) {
  const response = await fetch(`${base}${route.replace(/^\//, '')}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : (method === 'POST' ? '' : undefined),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

// ---- the stack, as a child process ----

// Children still running when this process ends (a test that timed out never reached its
// finally): each gets SIGTERM, so no stack or relay outlives the run.
const liveChildren = new Set();
process.on('exit', () => { for (const child of liveChildren) child.kill('SIGTERM'); });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(1));

/** Have child killed with this process if it is still running then. */
export function track(child) {
  liveChildren.add(child);
  child.on('exit', () => liveChildren.delete(child));
}

// tests/stack.py's command line with keyword arguments of its Stack class added (JSON in
// argv[1]), for a stack its options do not describe (a type's retry settings, grants).
const STACK_WITH = `
import functools, json, sys
sys.path.insert(0, sys.argv[2])
import stack
stack.Stack = functools.partial(stack.Stack, **json.loads(sys.argv[1]))
sys.argv[1:] = sys.argv[3:]
stack.main()
`;

/** Start tests/stack.py with its command-line options extra, and with keyword arguments of
 * its Stack class when options is given: {info (its first line), command(cmd) (a line on its
 * stdin, resolved when it says done), stop()}. */
export function startStack({ extra = [], options = null } = {}) {
  const argv = options
    ? ['-c', STACK_WITH, JSON.stringify(options), path.join(ROOT, 'tests'), ...extra]
    : [path.join(ROOT, 'tests', 'stack.py'), ...extra];
  const child = spawn('/usr/bin/python3', argv, {
    cwd: ROOT, env: process.env, stdio: ['pipe', 'pipe', 'inherit'],
  });
  track(child);
  const lines = [];
  const waiting = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of waiting.splice(0)) w();
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  async function nextLine(predicate, what) {
    const deadline = Date.now() + 60000;
    for (;;) {
      const found = lines.find(predicate);
      if (found) { lines.splice(lines.indexOf(found), 1); return JSON.parse(found); }
      if (child.exitCode !== null) throw new Error(`stack.py exited while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`stack.py: no ${what} within 60 s`);
      await new Promise((resolve) => { waiting.push(resolve); setTimeout(resolve, 200); });
    }
  }
  return nextLine((l) => l.includes('"http"'), 'start').then((info) => ({
    info,
    async command(cmd) {
      child.stdin.write(`${cmd}\n`);
      await nextLine((l) => { try { return JSON.parse(l).done === cmd; } catch (e) { return false; } },
        `"${cmd}"`);
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
      await exited;
      clearTimeout(timer);
    },
  }));
}

/** Run fn(stack) with a stack started by start() and stopped afterwards, also when fn fails. */
export async function withStarted(start, fn) {
  const stack = await start();
  try {
    await fn(stack);
  } finally {
    await stack.stop();
  }
}
