// What every browser test file shares: the bound on a wait, the screenshots' folder, Debian's
// Chromium launched headless with the flags this machine needs (never a downloaded browser),
// and small page and REST helpers.  The stacks differ per file (each starts tests/stack.py
// with the options its pages need), so they stay with their tests.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
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
