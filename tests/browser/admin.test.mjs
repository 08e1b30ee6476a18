// The operator dashboard (www/admin/) in a real Chromium against a real stack (tests/stack.py
// with lighttpd, the FastCGI handler, the relay and a worker; its admin key made by the stack).
// Every test saves a screenshot under tests/screenshots/ and prints its path.
// Run: make test-browser (or TASKWIRE_BUILD=... node --test admin.test.mjs here).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, STEP, api, launchBrowser, screenshot, startStack } from './harness.mjs';

let browser;

async function waitFinal(base, token, id) {
  const deadline = Date.now() + STEP;
  for (;;) {
    const { body } = await api(base, 'GET', `/api/tasks/${id}`, { token });
    if (['succeeded', 'failed', 'cancelled'].includes(body.status)) return body;
    if (Date.now() > deadline) throw new Error(`task ${id} did not finish`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}


async function openDashboard(context, base) {
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  page.adminCalls = [];
  page.on('request', (r) => { if (r.url().includes('/api/admin/')) page.adminCalls.push(r.url()); });
  await page.goto(`${base}admin/`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: STEP });
  return page;
}

async function signIn(page, key) {
  await page.fill('#key', key);
  await page.click('#login-submit');
}

/** The sum of a chart series' per-minute values as drawn (the polyline's data). */
async function seriesSum(page, name) {
  return page.evaluate((series) => {
    const line = document.querySelector(`#chart-throughput polyline[data-series="${series}"]`);
    return line ? line.dataset.values.split(',').reduce((sum, v) => sum + Number(v), 0) : -1;
  }, name);
}

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
});

test('the dashboard charts what ran, retries a failed task, and refuses the anonymous',
  { timeout: 150000 }, async () => {
    const marks = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-marks-'));
    fs.chmodSync(marks, 0o777);
    const flaky = { label: 'Fails once', command: path.join(ROOT, 'tests', 'integration', 'types', 'flaky'),
      timeout_ms: 10000, 'param.dir': 'string min=1 max=4096' };
    const stack = await startStack({ options: { types: { flaky } } });
    const base = stack.info.http;
    const context = await browser.newContext();
    try {
      // Tasks for the charts: N that succeed, and one that fails its first attempt.
      const N = 5;
      const { body: session } = await api(base, 'POST', '/api/session');
      const ids = [];
      for (let i = 0; i < N; i++) {
        const { status, body } = await api(base, 'POST', '/api/tasks', { token: session.token,
          body: { type: 'steps', params: { count: 1 } } });
        assert.equal(status, 202);
        ids.push(body.id);
      }
      const { body: failing } = await api(base, 'POST', '/api/tasks', { token: session.token,
        body: { type: 'flaky', params: { dir: marks } } });
      for (const id of ids) assert.equal((await waitFinal(base, session.token, id)).status, 'succeeded');
      assert.equal((await waitFinal(base, session.token, failing.id)).status, 'failed');

      // Anonymous: the key form only, no data and no admin call answered with any.
      const page = await openDashboard(context, base);
      assert.equal(await page.isVisible('#login'), true);
      assert.equal(await page.isVisible('#dashboard'), false);
      const text = await page.textContent('body');
      assert.ok(!text.includes(failing.id) && !text.includes(session.client_id), 'data shown anonymously');
      assert.deepEqual(page.adminCalls, [], 'the page called the admin API without a key');
      const anonymous = await page.evaluate(async () => (await fetch('/api/admin/status')).status);
      assert.equal(anonymous, 401);
      // A wrong key: refused, still nothing shown.
      await signIn(page, '0'.repeat(64));
      await page.waitForSelector('#login-error:not([hidden])', { timeout: STEP });
      assert.match(await page.textContent('#login-error'), /refused/);
      assert.equal(await page.isVisible('#dashboard'), false);
      assert.equal(await page.evaluate(() => sessionStorage.getItem('taskwire.admin.key')), null);
      await screenshot(page, 'admin-1-anonymous');

      // The key: the dashboard, its charts counting what ran.
      await signIn(page, stack.info.admin_key);
      await page.waitForSelector('#dashboard:not([hidden])', { timeout: STEP });
      await page.waitForSelector('#chart-throughput polyline[data-series="succeeded"]', { timeout: STEP });
      assert.equal(await seriesSum(page, 'succeeded'), N);
      assert.equal(await seriesSum(page, 'failed'), 1);
      assert.equal(await seriesSum(page, 'submitted'), N + 1);
      assert.equal(await page.textContent('[data-total="succeeded"]'), String(N));
      await page.waitForSelector('#durations [data-type="steps"]', { timeout: STEP });
      await page.waitForSelector('#workers .row', { timeout: STEP });
      assert.match(await page.textContent('#workers .heartbeat'), /heartbeat .* ago/);
      assert.match(await page.textContent('#relays .connections'), /\d+ connections/);
      const failedCard = page.locator(`#failed .task[data-id="${failing.id}"]`);
      await failedCard.waitFor({ timeout: STEP });
      assert.match(await failedCard.locator('.outcome-error').textContent(), /fails on purpose/);
      await screenshot(page, 'admin-2-dashboard');

      // Search by client id finds the client's tasks.
      await page.fill('#search', session.client_id);
      await page.click('#search-form button');
      await page.waitForFunction((count) => document.querySelectorAll('#results .task').length === count,
        N + 1, { timeout: STEP });

      // Retry from the dashboard: the task runs again and succeeds; the chart counts it.
      await failedCard.locator('button[data-action="retry"]').click();
      assert.equal((await waitFinal(base, session.token, failing.id)).status, 'succeeded');
      await page.waitForSelector(`#failed .task[data-id="${failing.id}"]`, { state: 'detached', timeout: STEP });
      await page.waitForFunction((n) => {
        const line = document.querySelector('#chart-throughput polyline[data-series="succeeded"]');
        return line && line.dataset.values.split(',').reduce((s, v) => s + Number(v), 0) === n;
      }, N + 1, { timeout: STEP });
      await page.waitForSelector(`#results .task[data-id="${failing.id}"][data-status="succeeded"]`,
        { timeout: STEP });
      await screenshot(page, 'admin-3-retried');

      // A phone's width: nothing wider than the screen.
      await page.setViewportSize({ width: 375, height: 812 });
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 375),
        'the dashboard is wider than a phone');
      await screenshot(page, 'admin-4-phone-width');

      // Signing out leaves no data on the page, and a new tab of another context has no key.
      await page.click('#sign-out');
      assert.equal(await page.isVisible('#dashboard'), false);
      assert.ok(!(await page.textContent('body')).includes(failing.id));
      const other = await browser.newContext();
      try {
        const fresh = await openDashboard(other, base);
        assert.equal(await fresh.isVisible('#dashboard'), false);
        assert.deepEqual(fresh.adminCalls, []);
      } finally {
        await other.close();
      }
      assert.deepEqual(page.errors.map(String), [], 'uncaught errors in the page');
    } finally {
      await context.close();
      await stack.stop();
      fs.rmSync(marks, { recursive: true, force: true });
    }
  });
