// The shared scenarios of clients/scenarios.json against real servers
// (started by tests/integration/clientenv.py, addresses in the environment).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import * as stockd from '../index.js';

const FILE = JSON.parse(readFileSync(new URL('../../scenarios.json', import.meta.url), 'utf8'));
const SCENARIOS = Object.fromEntries(FILE.scenarios.map((s) => [s.id, s]));
const P = `node-${randomBytes(3).toString('hex')}-`;

function env(k) {
  const v = process.env[k];
  if (!v) {
    assert.fail(`${k} is not set: run the suite through tests/integration/clientenv.py (tools/test does), `
      + 'which starts the servers');
  }
  return v;
}

const made = [];
function client(addrVar = 'STOCKD_ADDR', { token, endpoints } = {}) {
  const tok = token ?? (addrVar.startsWith('STOCKD_CLUSTER') ? null : env('STOCKD_ADMIN_TOKEN'));
  const c = new stockd.Client(endpoints ?? env(addrVar), { connectTimeoutMs: 2000, timeoutMs: 15000, token: tok });
  made.push(c);
  return c;
}
after(() => { for (const c of made) c.close(); });

/** Settles to the result or the StockdError. */
async function settle(p) {
  try {
    return await p;
  } catch (e) {
    if (e instanceof stockd.StockdError) return e;
    throw e;
  }
}

async function hoodieRound(admin, buyers, sku, units, oidPrefix) {
  await admin.skuPut(sku, { ownOnHand: units });
  // Each buyer's request is written in the same tick, before any reply is read.
  const res = await Promise.all(buyers.map((c, b) => settle(c.reserve(`${oidPrefix}-b${b}`, sku, 1))));
  const yes = res.filter((r) => !(r instanceof Error));
  const no = res.filter((r) => r instanceof Error);
  assert.deepEqual([yes.length, no.length], [units, buyers.length - units], `round of ${sku}: ${res}`);
  for (const r of yes) assert.deepEqual([r.status, r.fromOwn], ['confirmed', 1]);
  for (const e of no) {
    assert.ok(e instanceof stockd.Insufficient, String(e));
    assert.equal(e.available, 0);
  }
  const st = await admin.stockGet(sku);
  assert.deepEqual([st.ownReserved, st.available], [units, 0]);
}

const PLAYED = {
  hoodie: 'hoodie', cut_retry: 'cut_retry', pipeline: 'pipeline', subscribe: 'subscribe', check: 'check',
  errors: 'error case', cluster: 'cluster',
};

test('every scenario is played', () => {
  for (const s of FILE.scenarios) assert.ok(Object.hasOwn(PLAYED, s.id), `scenario ${s.id} is not played by the Node suite`);
});

test('hoodie', async () => {
  const sc = SCENARIOS.hoodie;
  const admin = client();
  const buyers = Array.from({ length: sc.buyers }, () => client());
  for (let r = 0; r < sc.rounds; r++) await hoodieRound(admin, buyers, `${P}hoodie-${r}`, sc.units, `${P}h${r}`);
});

test('cut_retry', async () => {
  const sc = SCENARIOS.cut_retry;
  const admin = client();
  const sku = `${P}cut`;
  await admin.skuPut(sku, { ownOnHand: sc.units });
  const cut = client('STOCKD_CUT_ADDR');
  const a = `cut-${P}a`;
  const e = await settle(cut.reserve(a, sku, 2));
  assert.ok(e instanceof stockd.ConnectionLost, `the relay did not cut the first reserve: ${e}`);
  assert.ok(e instanceof stockd.OutcomeUnknown && e.retryable);
  const oa = await cut.reserve(a, sku, 2);
  assert.deepEqual([oa.status, oa.qty], ['confirmed', 2]);

  const b = `cut-${P}b`;
  const ob = await cut.reserveWithRetry(b, sku, 1, { totalMs: 10000 });
  assert.deepEqual([ob.status, ob.qty], ['confirmed', 1]);

  const st = await admin.stockGet(sku);
  assert.deepEqual([st.ownReserved, st.available], [3, 2], 'each order reserved once');
  assert.equal((await admin.orderGet(a)).createdAt, oa.createdAt);
  assert.equal((await admin.orderGet(b)).qty, 1);
});

test('pipeline', async () => {
  const sc = SCENARIOS.pipeline;
  const c = client();
  const sku = `${P}pipe`;
  await c.skuPut(sku, { ownOnHand: sc.units });
  const p = c.pipeline();
  for (let i = 0; i < sc.reserves; i++) p.reserve(`${P}pipe-${i}`, sku, 1);
  assert.equal(p.length, sc.reserves);
  const res = await p.execute();
  assert.equal(res.length, sc.reserves);
  res.forEach((r, i) => {
    if (i < sc.units) {
      assert.ok(!(r instanceof Error), `reserve ${i}: ${r}`);
      assert.equal(r.orderId, `${P}pipe-${i}`);
    } else {
      assert.ok(r instanceof stockd.Insufficient, `reserve ${i}: ${r}`);
    }
  });
  const st = await c.stockGet(sku);
  assert.deepEqual([st.ownReserved, st.available], [sc.units, 0]);
});

const memo = new Map();
function once(name, fn) {
  if (!memo.has(name)) memo.set(name, fn());
  return memo.get(name);
}

/** The subscribe scenario; resolves to the error of the late confirm. */
function playSubscribe() {
  return once('subscribe', async () => {
    const sc = SCENARIOS.subscribe;
    const listener = client();
    const updates = await listener.subscribe({ waitMs: sc.wait_ms });
    const c = client();
    const sku = `${P}expiring`;
    const oid = `${P}expiring-1`;
    await c.skuPut(sku, { ownOnHand: 1 });
    assert.equal((await c.reserve(oid, sku, 1, { holdMs: sc.hold_ms })).status, 'held');
    const t0 = Date.now();
    let got = null;
    for await (const o of updates) {
      if (o.orderId === oid) { got = o; break; }
      if (Date.now() - t0 > sc.wait_ms) break;
    }
    assert.ok(got, `no order.update for ${oid} within ${sc.wait_ms} ms`);
    assert.equal(got.status, 'expired');
    const e = await settle(c.confirm(oid));
    assert.ok(e instanceof Error, 'confirm after the hold lapsed succeeded');
    return e;
  });
}

test('subscribe', async () => {
  assert.equal((await playSubscribe()).code, 'expired');
});

/** The check scenario; resolves to the CheckFailed of case (c). */
function playCheck() {
  return once('check', async () => {
    const sc = SCENARIOS.check;
    const c = client('STOCKD_CHECK_ADDR');
    const p = `${P}check-`;
    const offer = Number(env('STOCKD_CHECK_OFFER'));
    const [ok, short, own] = [`${p}ok`, `${p}short`, `${p}own`];
    await c.skuPut(ok, { ownOnHand: 0, supplier: { supplier_id: `${P}sup-ok`, offer_id: offer, spec_id: env('STOCKD_CHECK_SPEC') } });
    await c.skuPut(short, {
      ownOnHand: 0, supplier: { supplier_id: `${P}sup-short`, offer_id: offer, spec_id: env('STOCKD_CHECK_SPEC_SHORT') },
    });
    await c.skuPut(own, { ownOnHand: 1 });
    const want = { [ok]: 100000, [short]: 50 };
    const end = Date.now() + sc.sync_wait_ms;
    for (;;) {
      const got = {};
      for (const k of Object.keys(want)) got[k] = (await c.stockGet(k)).supplierReported;
      if (Object.keys(want).every((k) => got[k] === want[k])) break;
      assert.ok(Date.now() < end, `supplier figures not synced: ${JSON.stringify(got)}`);
      await new Promise((r) => { setTimeout(r, 50); });
    }

    // (a) passes: the ordinary record.
    let o = await c.reserve(`${p}a`, ok, 2, { holdMs: 60000, check: true });
    assert.deepEqual([o.status, o.fromOwn, o.fromSupplier, o.reason], ['held', 0, 2, undefined]);
    assert.equal((await c.release(`${p}a`)).status, 'released');
    // (b) a cart, checked.
    o = await c.reserve(`${p}b`, { [ok]: 1, [own]: 1 }, { holdMs: 60000, check: true });
    assert.deepEqual([o.status, o.lines.length, o.fromSupplier], ['held', 2, 1]);
    assert.equal((await c.release(`${p}b`)).status, 'released');
    // (c) refused by 1688's check: CheckFailed, again on a retry; the order failed.
    const e = await settle(c.reserve(`${p}c`, short, 3, { check: true }));
    assert.ok(e instanceof stockd.CheckFailed, `the checked reserve of the short spec: ${e}`);
    assert.ok(e instanceof stockd.Refused);
    assert.deepEqual([e.code, e.retryable, e.orderId], ['check_failed', false, `${p}c`]);
    assert.match(e.message, /500_004/);
    const again = await settle(c.reserveWithRetry(`${p}c`, short, 3, { check: true, totalMs: 5000 }));
    assert.ok(again instanceof stockd.CheckFailed, `the retry: ${again}`);
    assert.equal(again.orderId, `${p}c`);
    assert.equal((await c.orderGet(`${p}c`)).status, 'failed');
    // (d) without the check the figure (50) says yes.
    o = await c.reserve(`${p}d`, short, 3, { holdMs: 60000 });
    assert.deepEqual([o.status, o.fromSupplier], ['held', 3]);
    await c.release(`${p}d`);
    // (e) not a boolean: refused here, nothing sent.
    for (const bad of ['yes', 1]) {
      await assert.rejects(c.reserve(`${p}e`, ok, 1, { check: bad }), { name: 'TypeError', message: /must be a boolean/ });
      await assert.rejects(c.reserveWithRetry(`${p}e`, ok, 1, { check: bad }), { name: 'TypeError', message: /must be a boolean/ });
      const pl = c.pipeline();
      assert.throws(() => pl.reserve(`${p}e`, { [ok]: 1 }, { check: bad }), { name: 'TypeError', message: /must be a boolean/ });
      assert.equal(pl.length, 0);
    }
    const nf = await settle(c.orderGet(`${p}e`));
    assert.ok(nf instanceof stockd.NotFound, `${p}e exists: a refused check was sent (${nf})`);
    return e;
  });
}

test('check', async () => {
  assert.equal((await playCheck()).constructor, stockd.CheckFailed);
});

function stall(ms) {
  const [host, port] = env('STOCKD_STALL_CONTROL').split(':');
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ host, port: Number(port) }, () => s.write(`stall ${ms}\n`));
    let got = '';
    s.setTimeout(5000, () => { s.destroy(); reject(new Error('control: no answer')); });
    s.on('data', (d) => {
      got += d;
      if (got.includes('\n')) { s.end(); got === 'ok\n' ? resolve() : reject(new Error(`control: ${got}`)); }
    });
    s.on('error', reject);
  });
}

/** The stall sequence; resolves to its errors by case. */
function playStall() {
  return once('stall', async () => {
    const c = client('STOCKD_STALL_ADDR');
    const s = `${P}stall`;
    await c.skuPut(s, { ownOnHand: 100 });
    await c.reserve(`${P}stall-warm`, s, 1);
    await stall(1500);
    const a = settle(c.reserve(`${P}stall-a`, s, 1, { deadlineMs: 10000 }));
    await new Promise((r) => { setTimeout(r, 100); });   // A's commit is under way (and hanging) before B arrives
    const b = settle(c.reserve(`${P}stall-b`, s, 1, { deadlineMs: 50 }));
    const cs = Array.from({ length: SCENARIOS.errors.stall_c_count },
      (_, i) => settle(c.reserve(`${P}stall-c${i}`, s, 1)));
    const out = { deadline: await b, outcome_unknown: await a };
    for (const [k, v] of Object.entries(out)) assert.ok(v instanceof Error, `stall sequence: ${k} succeeded`);
    for (const e of await Promise.all(cs)) {
      assert.ok(e instanceof Error, 'stall sequence: a C succeeded');
      if (!out.busy && e.code === 'busy') out.busy = e;
      else assert.ok(['busy', 'unavailable'].includes(e.code), e.message);
    }
    assert.ok(out.busy, 'no C was refused busy');
    out.unavailable = await settle(c.reserve(`${P}stall-d`, s, 1));
    assert.ok(out.unavailable instanceof Error, 'stall sequence: D succeeded while the database is frozen');
    // The database is back: retries settle A (committed or decided afresh) and D.
    const oa = await c.reserveWithRetry(`${P}stall-a`, s, 1, { totalMs: 10000 });
    const od = await c.reserveWithRetry(`${P}stall-d`, s, 1, { totalMs: 10000 });
    assert.deepEqual([oa.status, od.status], ['confirmed', 'confirmed']);
    assert.equal((await c.stockGet(s)).ownReserved, 3, 'warm + A + D, each once');
    return out;
  });
}

async function provoke(name) {
  const p = `${P}err-${name}`;
  const c = client();
  switch (name) {
    case 'invalid': return c.reserve(p, p, 0);
    case 'unknown_method': return c.call('no.such.method');
    case 'unknown_sku': return c.reserve(p, `${p}-never-put`, 1);
    case 'insufficient':
      await c.skuPut(p, { ownOnHand: 3 });
      return c.reserve(p, p, 5);
    case 'insufficient_lines':
      await c.skuPut(`${p}-a`, { ownOnHand: 5 });
      await c.skuPut(`${p}-b`, { ownOnHand: 1 });
      return c.reserve(p, { [`${p}-a`]: 1, [`${p}-b`]: 2 });
    case 'conflict':
      await c.skuPut(p, { ownOnHand: 5 });
      await c.reserve(p, p, 1);
      return c.reserve(p, p, 2);
    case 'not_found': return c.orderGet(p);
    case 'invalid_state':
      await c.skuPut(p, { ownOnHand: 5 });
      await c.reserve(p, p, 1);
      await c.release(p);
      return c.ship(p);
    case 'expired': return playSubscribe();
    case 'unauthorized': return client('STOCKD_ADDR', { token: 'not-the-token' }).skuPut(p, { ownOnHand: 1 });
    case 'too_large': {
      const e = await settle(c.reserve('x'.repeat(70000), p, 1));
      assert.ok('node' in await c.ping(), 'the client reconnects after too_large');
      return e;
    }
    case 'busy': case 'deadline': case 'unavailable': case 'outcome_unknown':
      return (await playStall())[name];
    case 'set_aside': {
      const t0 = Date.now();
      const e = await settle(c.reserveWithRetry(p, env('STOCKD_SET_ASIDE_SKU'), 1, { totalMs: 10000 }));
      assert.ok(Date.now() - t0 < 2000, 'a set-aside SKU was retried');
      return e;
    }
    case 'check_failed': return playCheck();
    case 'internal': return stockd.fromWire({ code: 'internal', message: 'bug', retryable: true });
    default: return assert.fail(`error case ${name} of scenarios.json is not played by the Node suite`);
  }
}

describe('error case', () => {
  for (const cs of SCENARIOS.errors.cases) {
    test(cs.case, async () => {
      const e = await settle(provoke(cs.case));
      assert.ok(e instanceof stockd.StockdError, `case ${cs.case}: no error`);
      assert.equal(e.constructor.name, cs.exception, `case ${cs.case}: ${e.message}`);
      assert.equal(e.constructor, stockd[cs.exception]);
      assert.equal(e.code, cs.code);
      assert.equal(e.retryable, cs.retryable);
      assert.ok(e instanceof (cs.retryable ? stockd.Retryable : stockd.Refused));
      for (const [k, v] of Object.entries(cs.detail ?? {})) assert.equal(e.details[k], v, `detail ${k}`);
    });
  }
});

test('cluster', async () => {
  const sc = SCENARIOS.cluster;
  const admin = client('STOCKD_CLUSTER_ADDR');
  const buyers = [client('STOCKD_CLUSTER_ADDR'), client('STOCKD_CLUSTER_ADDR'), client('STOCKD_CLUSTER_ADDR')];
  for (let i = 0; i < sc.skus; i++) await hoodieRound(admin, buyers, `${P}cl-${i}`, 2, `${P}cl${i}`);

  const skus = ['a', 'b', 'c'].map((x) => `${P}cart-${x}`);
  const p = admin.pipeline();
  for (const k of skus) p.skuPut(k, { ownOnHand: 5 });
  for (const r of await p.execute()) assert.equal(r.available, 5, String(r));
  const oid = `${P}cart-1`;
  const o = await admin.reserve(oid, { [skus[0]]: 1, [skus[1]]: 2, [skus[2]]: 3 }, { holdMs: 60000 });
  assert.deepEqual([o.status, o.qty, o.lines.length], ['held', 6, 3]);
  assert.equal((await admin.confirm(oid)).status, 'confirmed');
  const got = await admin.orderGet(oid);
  assert.deepEqual([got.status, got.lines.map((l) => l.sku)], ['confirmed', skus]);

  const nodes = env('STOCKD_CLUSTER_NODES').split(',').map((item) => item.split('=')[1]);
  const direct = client('STOCKD_DEAD_ADDR', { endpoints: [env('STOCKD_DEAD_ADDR'), ...nodes] });
  const again = await direct.orderGet(oid, skus[0]);
  assert.deepEqual([again.status, again.createdAt], ['confirmed', o.createdAt]);
  assert.ok(nodes.includes(direct.endpoint), direct.endpoint);

  assert.equal((await admin.release(oid)).status, 'released');
  for (const k of skus) assert.equal((await admin.stockGet(k)).available, 5);
});
