// The support console in a real browser: Playwright (playwright-core)
// driving Debian's chromium headless against a real stockd and fake1688,
// which tests/integration/test_console_browser.py starts and describes in
// the environment:
//
//   CONSOLE_URL      http://127.0.0.1:PORT/console/ (stockd's --http)
//   CONSOLE_TOKEN    the console token
//   STOCKD_ADDR      stockd's client port, for stockctl
//   STOCKCTL_BIN     stockctl
//   FAIL_SKU         a SKU whose supplier units the fake cannot deliver (a
//                    reserve of FAIL_QTY from it fails its order check)
//   FAIL_QTY
//   VICTIM_ORDER     a confirmed order a forged POST tries to release
//   SCREENSHOT       where to save the console's screenshot
//   CHROMIUM         the browser (default /usr/bin/chromium)
//
// Each step is bounded; the whole file takes a few seconds.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, k + ' must be set (tests/integration/test_console_browser.py sets it)');
  return v;
};
const URL_ = env('CONSOLE_URL');
const ORIGIN = new URL(URL_).origin;
const STEP_MS = 10000;

let context, page, profile;

function stockctl(...args) {
  return execFileSync(env('STOCKCTL_BIN'), ['--addr', env('STOCKD_ADDR'), '--json', ...args],
    { timeout: STEP_MS, encoding: 'utf8' });
}

before(async () => {
  // A fresh profile every run (Playwright passes it as --user-data-dir).
  profile = mkdtempSync(join(tmpdir(), 'console-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(STEP_MS);
  page = context.pages()[0] || await context.newPage();
});

after(async () => {
  if (context) await context.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe('support console', () => {
  test('a wrong token is refused', async () => {
    await page.goto(URL_);
    await page.locator('#signin').waitFor({ state: 'visible' });
    await page.fill('#signin-name', 'mallory');
    await page.fill('#signin-token', 'not-the-token-at-all');
    const resp = page.waitForResponse((r) => r.url().endsWith('/console/api/login'));
    await page.click('#signin-form button[type=submit]');
    assert.equal((await resp).status(), 401);
    await page.locator('#signin-error', { hasText: 'Wrong token' }).waitFor();
    assert.equal(await page.locator('#main').isHidden(), true);
    const cookies = await context.cookies();
    assert.equal(cookies.filter((c) => c.name === 'stockd_console').length, 0);
    // Without a session the data is not served either.
    const live = await page.evaluate(async () => (await fetch('/console/api/live')).status);
    assert.equal(live, 401);
  });

  test('sign in: an HttpOnly, SameSite=Strict session cookie', async () => {
    await page.fill('#signin-name', 'ann');
    await page.fill('#signin-token', env('CONSOLE_TOKEN'));
    await page.click('#signin-form button[type=submit]');
    await page.locator('#main').waitFor({ state: 'visible' });
    await page.locator('#who', { hasText: 'ann' }).waitFor();
    const [c] = (await context.cookies()).filter((k) => k.name === 'stockd_console');
    assert.ok(c, 'session cookie set');
    assert.equal(c.httpOnly, true);
    assert.equal(c.sameSite, 'Strict');
    assert.equal(c.path, '/console/');
    assert.ok(c.expires > Date.now() / 1000, 'the cookie expires');
    assert.equal(await page.evaluate(() => document.cookie.includes('stockd_console')), false);
  });

  test('a failed order check shows up within 2 s, without reloading', async () => {
    await page.evaluate(() => { window.__notReloaded = true; });
    const order = 'web-fail-' + Date.now();
    const row = page.locator('#alerts tbody tr', { has: page.locator('td.order', { hasText: order }) });
    const t0 = Date.now();
    const out = JSON.parse(stockctl('reserve', order, env('FAIL_SKU'), env('FAIL_QTY')));
    assert.equal(out.status, 'confirmed', 'the reserve itself is accepted: ' + JSON.stringify(out));
    await row.waitFor({ state: 'visible', timeout: 5000 });
    const took = Date.now() - t0;
    assert.ok(took <= 2000, 'the alert took ' + took + ' ms to appear');
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was reloaded');
    assert.match(await row.locator('td.kind').innerText(), /purchase_failed/);
    assert.match(await row.locator('td.reason').innerText(), /500_004/);
    process.stdout.write('# alert shown ' + took + ' ms after the reserve\n');
  });

  test('the SKU and supplier views, and a screenshot', async () => {
    const row = page.locator('#alerts tbody tr').first();
    await row.locator('a.sku').click();
    await page.locator('#sku-view dl.figures').waitFor();
    await page.locator('#sku-view h3', { hasText: 'Recent orders' }).waitFor();
    const text = await page.locator('#sku-view').innerText();
    assert.match(text, /supplier reported/);
    assert.match(text, /failed/);
    await page.locator('#sku-view a.link').first().click();  // the supplier
    await page.locator('#supplier-nodes tbody tr').first().waitFor();
    assert.match(await page.locator('#supplier-view').innerText(), /purchase_failed/);
    // Let the chart gather a few seconds of counters.
    await page.waitForTimeout(1500);
    await page.screenshot({ path: env('SCREENSHOT'), fullPage: true });
  });

  test('ack: the alert leaves the open list', async () => {
    const row = page.locator('#alerts tbody tr').first();
    const id = await row.getAttribute('data-alert-id');
    await row.locator('button.ack').click();
    await page.fill('#ack-note', 'refunded the buyer');
    const resp = page.waitForResponse((r) => r.url().endsWith('/console/api/ack'));
    await page.click('#ack-confirm');
    const r = await resp;
    assert.equal(r.status(), 200, await r.text());
    const body = await r.json();
    assert.equal(body.result.acked_by, 'ann');
    assert.equal(body.result.note, 'refunded the buyer');
    const gone = page.locator(`#alerts tbody tr[data-alert-id="${id}"]`);
    await gone.waitFor({ state: 'detached' });
    // Still gone after the next polls (MariaDB says so, not only the page).
    await page.waitForTimeout(1200);
    assert.equal(await gone.count(), 0);
    const open = await page.evaluate(async () => (await (await fetch('/console/api/live')).json()).alerts);
    assert.equal(open.filter((a) => String(a.id) === id).length, 0);
  });

  test('a cross-site POST without the CSRF token is refused', async () => {
    const victim = env('VICTIM_ORDER');
    // A page on another origin of the same site (127.0.0.1, another port):
    // the SameSite=Strict cookie does go along, so only the console's own
    // checks (origin, CSRF token) stand between it and the action.
    const evil = createServer((req, res) => {
      res.setHeader('Content-Type', 'text/html');
      res.end(`<!doctype html><form id="f" method="POST" enctype="text/plain"
        action="${ORIGIN}/console/api/release"><input name='{"order_id":"${victim}","x":"'
        value='"}'></form><script>
        fetch('${ORIGIN}/console/api/release', {method: 'POST', mode: 'no-cors',
          credentials: 'include', body: JSON.stringify({order_id: '${victim}'})})
          .finally(() => document.getElementById('f').submit());
        </script>`);
    });
    await new Promise((ok) => evil.listen(0, '127.0.0.1', ok));
    try {
      const statuses = [];
      const onResp = (r) => { if (r.url().endsWith('/console/api/release')) statuses.push(r.status()); };
      page.on('response', onResp);
      const nav = page.waitForResponse((r) => r.url().endsWith('/console/api/release') &&
        r.request().resourceType() === 'document');
      await page.goto(`http://127.0.0.1:${evil.address().port}/`);
      const r = await nav;
      assert.equal(r.status(), 403, await r.text());
      page.off('response', onResp);
      assert.ok(statuses.length >= 1 && statuses.every((s) => s === 403), 'statuses ' + statuses);
    } finally {
      evil.close();
    }
    const o = JSON.parse(stockctl('order', victim));
    assert.equal(o.status, 'confirmed', 'the forged release changed the order: ' + JSON.stringify(o));
    // The same POST from the console's own origin but without the token.
    await page.goto(URL_);
    await page.locator('#main').waitFor({ state: 'visible' });
    const st = await page.evaluate(async (v) => (await fetch('/console/api/release', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ order_id: v }) })).status, victim);
    assert.equal(st, 403);
    assert.equal(JSON.parse(stockctl('order', victim)).status, 'confirmed');
  });
});
