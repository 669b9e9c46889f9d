// The promise client: one TCP connection, shared by every call made on the
// Client. Concurrent calls are pipelined (written together, matched by
// msgid), so `Promise.all` of many reserves is a batch.
import net from 'node:net';
import { Decoder } from '@msgpack/msgpack';
import {
  ConnectionFailed, ConnectionLost, OutcomeUnknown, ProtocolError, Retryable, StockdError, Timeout, fromWire,
} from './errors.js';
import { orderFromWire, stockFromWire } from './results.js';
import {
  MSGID_MAX, SERVER_DEFAULT_DEADLINE_MS, frameEnd, orderParams, parseEndpoints, request, reserveParams,
  skuPutParams,
} from './wire.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 1000;
// Above a reserve's longest answer: its queueing deadline (2 s) plus stockd's
// commit timeout (5 s).
export const DEFAULT_TIMEOUT_MS = 10000;
export const DEFAULT_MAX_REPLY_BYTES = 4 << 20;
// Below stockd's --max-inflight-per-conn default (1,024).
export const DEFAULT_PIPELINE_WINDOW = 512;
// Order updates kept while nobody reads them; newer ones are dropped and counted.
export const MAX_NOTIFICATIONS = 10000;

function positive(name, v) {
  if (!Number.isInteger(v) || v < 1) throw new TypeError(`${name} must be a positive integer`);
  return v;
}

// reserve(orderId, sku, qty, opts) or reserve(orderId, lines, opts)
function reserveArgs(orderId, sku, qtyOrOpts, opts) {
  return typeof sku === 'string'
    ? [reserveParams(orderId, sku, qtyOrOpts, opts ?? {}), opts ?? {}]
    : [reserveParams(orderId, sku, undefined, qtyOrOpts ?? {}), qtyOrOpts ?? {}];
}

// One decoder for every reply (see the encoder in wire.js).
const decoder = new Decoder();

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

/**
 * A stockd client (wire contract: proto/PROTOCOL.md).
 *
 *   const c = new Client(['10.0.0.5:7400'], { token: process.env.STOCKD_ADMIN_TOKEN });
 *   const order = await c.reserveWithRetry('shop1:1001', 'hoodie-L', 1);
 *
 * Limits: connectTimeoutMs per endpoint; timeoutMs per call (then Timeout,
 * and the connection is closed: every call in flight on it gets
 * ConnectionLost); maxReplyBytes per reply, refused before it is decoded; at
 * most pipelineWindow calls in flight (more wait their turn); at most
 * MAX_NOTIFICATIONS unread order updates.
 *
 * Endpoints: a balancer address or a cluster's instances. The client
 * connects to the first that answers, beginning where the last connection
 * was, and after a lost connection with the next one. Use IP addresses. The
 * connection opens on the first call and reopens on the call after a
 * failure; no request is resent by the client except by reserveWithRetry
 * (same order_id). close() it when done, or the process stays up.
 */
export class Client {
  #endpoints;
  #next = 0;
  #conn = null;
  #connecting = null;
  #msgid = 0;
  #slotWaiters = [];
  #notes = [];
  #noteWaiters = [];

  constructor(endpoints, opts = {}) {
    this.#endpoints = parseEndpoints(endpoints);
    this.connectTimeoutMs = positive('connectTimeoutMs', opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    this.timeoutMs = positive('timeoutMs', opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.maxReplyBytes = positive('maxReplyBytes', opts.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES);
    this.pipelineWindow = positive('pipelineWindow', opts.pipelineWindow ?? DEFAULT_PIPELINE_WINDOW);
    this.token = opts.token ?? null;
    this.droppedNotifications = 0;
  }

  /** "host:port" of the live connection, or null. */
  get endpoint() {
    return this.#conn ? this.#conn.label : null;
  }

  // ---------------------------------------------------------------- the methods
  ping() {
    return this.call('ping');
  }

  /**
   * Reserves stock: reserve(orderId, sku, qty, {holdMs, deadlineMs, check}) or,
   * for a cart (all or nothing), reserve(orderId, {hoodie: 1, cap: 2}, {holdMs}).
   * Without holdMs the order is confirmed at once. A repeat with the same
   * orderId returns the order's current record: safe to retry.
   *
   * check: true asks stockd to have 1688 check the order's supplier units
   * (createOrder.preview) before it answers (PROTOCOL §4, "Checked reserves"):
   * a refusal rejects with CheckFailed (a Refused; the order stays failed, a
   * retry with the same orderId answers it again); a check that could not be
   * made in time rejects with Unavailable (retryable, reason
   * 'check_unavailable'). check must be a boolean: anything else rejects with
   * a TypeError and sends nothing.
   */
  async reserve(orderId, sku, qtyOrOpts, opts) {
    const [params] = reserveArgs(orderId, sku, qtyOrOpts, opts);
    return orderFromWire(await this.call('reserve', params));
  }

  /**
   * reserve(), retried with the same orderId and jittered exponential backoff
   * (opts.backoffMs doubling up to opts.backoffMaxMs) while the answer is
   * Retryable, until a final answer or opts.totalMs (10 s) have passed.
   * Resolves to the order (after an unknown outcome: the record the first
   * attempt committed, never a second reservation); rejects with a Refused
   * at once. Out of time: OutcomeUnknown if an attempt's outcome stayed
   * unknown (the order may exist), else the last Retryable.
   */
  async reserveWithRetry(orderId, sku, qtyOrOpts, opts) {
    const [params, o] = reserveArgs(orderId, sku, qtyOrOpts, opts);
    const totalMs = o.totalMs ?? 10000;
    const backoffMaxMs = o.backoffMaxMs ?? 1000;
    const end = Date.now() + totalMs;
    let pause = Math.max(1, o.backoffMs ?? 50);
    let unknown = null;
    for (let attempts = 1; ; attempts++) {
      const leftMs = end - Date.now();
      const p = { ...params };
      if (leftMs < (p.deadline_ms ?? SERVER_DEFAULT_DEADLINE_MS)) p.deadline_ms = Math.max(1, leftMs);
      try {
        // An attempt never outlives the budget: neither our wait nor stockd's queueing.
        return orderFromWire(await this.#call('reserve', p, Math.max(1, Math.min(this.timeoutMs, leftMs))));
      } catch (e) {
        if (!(e instanceof Retryable)) throw e;
        if (e instanceof OutcomeUnknown) unknown = e;
        const sleepMs = Math.floor(pause / 2) + Math.floor(Math.random() * (pause - Math.floor(pause / 2) + 1));
        if (end - Date.now() <= sleepMs) {
          if (unknown) {
            throw new OutcomeUnknown(`reserve ${orderId}: outcome unknown after ${attempts} attempts in ${totalMs} ms `
              + `(last: ${e.message}); retry later with the same order_id`, unknown.code, true, unknown.details,
            { cause: e });
          }
          throw e;
        }
        await sleep(sleepMs);
        pause = Math.min(backoffMaxMs, pause * 2);
      }
    }
  }

  /** A held order becomes confirmed. sku: routing hint in a cluster. */
  async confirm(orderId, sku) {
    return orderFromWire(await this.call('confirm', orderParams(orderId, sku)));
  }

  /** A held or confirmed order gives its stock back; safe to repeat. */
  async release(orderId, sku) {
    return orderFromWire(await this.call('release', orderParams(orderId, sku)));
  }

  /** A confirmed (or purchased) order is shipped: its own units leave. */
  async ship(orderId, sku) {
    return orderFromWire(await this.call('ship', orderParams(orderId, sku)));
  }

  /** The committed record; NotFound when there is none. */
  async orderGet(orderId, sku) {
    return orderFromWire(await this.call('order.get', orderParams(orderId, sku)));
  }

  async stockGet(sku) {
    return stockFromWire(await this.call('stock.get', { sku }));
  }

  /** Admin: creates or updates a SKU ({ownOnHand, supplierReported, supplier}); the token is sent. */
  async skuPut(sku, fields = {}) {
    return stockFromWire(await this.call('sku.put', skuPutParams(sku, fields)));
  }

  /** Admin: moves own_on_hand by delta, with a ledger reason. */
  async stockAdjust(sku, delta, reason) {
    return stockFromWire(await this.call('stock.adjust', { sku, delta, reason }));
  }

  /**
   * Subscribes this connection to order updates (purchased, failed, expired)
   * and resolves to an async iterator of orders. It waits at most
   * opts.waitMs for the next update, then ends (undefined: as long as it
   * takes). Updates are not persistent: after ConnectionLost, subscribe
   * again and catch up with orderGet(). In a cluster, subscribe on every
   * instance.
   */
  async subscribe(opts = {}) {
    await this.call('order.subscribe');
    const conn = this.#conn;
    const self = this;
    return (async function* updates() {
      for (;;) {
        if (self.#notes.length === 0 && !(await self.#waitNote(conn, opts.waitMs))) return;
        yield orderFromWire(self.#notes.shift());
      }
    }());
  }

  /** Any method; params is the one map of PROTOCOL §2 (admin methods get the token). */
  call(method, params = {}) {
    return this.#call(method, params, this.timeoutMs);
  }

  /** Requests queued on it go out together (batch jobs). */
  pipeline() {
    return new Pipeline(this);
  }

  async connect() {
    await this.#ensureConnected();
  }

  /** Closes the connection; calls in flight get ConnectionLost. */
  close() {
    if (this.#conn) this.#drop(this.#conn, new ConnectionLost('the client was closed', 'transport', true));
  }

  // ---------------------------------------------------------------- internals
  async #call(method, params, timeoutMs) {
    for (;;) {
      const conn = await this.#ensureConnected();
      if (conn.pending.size < this.pipelineWindow) return this.#send(conn, method, params, timeoutMs);
      await new Promise((r) => { this.#slotWaiters.push(r); });
    }
  }

  #send(conn, method, params, timeoutMs) {
    this.#msgid = this.#msgid >= MSGID_MAX ? 1 : this.#msgid + 1;
    const msgid = this.#msgid;
    const frame = request(msgid, method, params, this.token);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.pending.delete(msgid);
        this.#drop(conn, new ConnectionLost('another call on this connection timed out; outcome unknown',
          'transport', true));
        reject(new Timeout(`no reply from stockd at ${conn.label} within ${timeoutMs} ms; outcome unknown`,
          'timeout', true));
      }, timeoutMs);
      conn.pending.set(msgid, { resolve, reject, timer });
      // Calls of one tick leave in one write.
      if (!conn.corked) {
        conn.corked = true;
        conn.socket.cork();
        process.nextTick(() => { conn.corked = false; conn.socket.uncork(); });
      }
      conn.socket.write(frame);
    });
  }

  async #ensureConnected() {
    while (this.#connecting) await this.#connecting;
    if (this.#conn && this.#conn.doomed) {
      this.#drop(this.#conn, new ConnectionLost('stockd closed the connection after too_large', 'transport', true));
    }
    if (this.#conn) return this.#conn;
    this.#connecting = this.#open();
    try {
      return await this.#connecting;
    } finally {
      this.#connecting = null;
    }
  }

  async #open() {
    const errors = [];
    const n = this.#endpoints.length;
    for (let i = 0; i < n; i++) {
      const k = (this.#next + i) % n;
      const ep = this.#endpoints[k];
      try {
        const socket = await this.#connectOne(ep);
        this.#next = k;
        this.#conn = this.#attach(socket, ep.label);
        return this.#conn;
      } catch (e) {
        errors.push(`${ep.label}: ${e.message}`);
      }
    }
    this.#next = (this.#next + 1) % n;
    throw new ConnectionFailed(`cannot connect to stockd: ${errors.join('; ')}`, 'transport', true);
  }

  #connectOne({ host, port }) {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ host, port });
      const fail = (e) => { clearTimeout(timer); s.destroy(); reject(e); };
      const timer = setTimeout(() => fail(new Error(`timed out after ${this.connectTimeoutMs} ms`)),
        this.connectTimeoutMs);
      s.once('error', fail);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeListener('error', fail);
        s.setNoDelay(true);
        resolve(s);
      });
    });
  }

  #attach(socket, label) {
    const conn = { socket, label, pending: new Map(), buf: Buffer.alloc(0), corked: false, doomed: false,
      failure: null };
    socket.on('data', (chunk) => {
      try {
        this.#take(conn, chunk);
      } catch (e) {
        this.#drop(conn, e instanceof StockdError ? e
          : new ProtocolError(`malformed MessagePack from stockd: ${e.message}`, 'protocol'));
      }
    });
    const lost = (why) => this.#drop(conn, new ConnectionLost(
      `stockd at ${label} ${why}; outcome of requests in flight unknown`, 'transport', true));
    socket.on('error', (e) => lost(`failed (${e.message})`));
    socket.on('close', () => lost('closed the connection'));
    return conn;
  }

  #take(conn, chunk) {
    const buf = conn.buf.length ? Buffer.concat([conn.buf, chunk]) : chunk;
    let pos = 0;
    while (pos < buf.length) {
      const end = frameEnd(buf, pos, this.maxReplyBytes);
      if (end < 0) break;
      const m = decoder.decode(buf.subarray(pos, end));
      pos = end;
      if (Array.isArray(m) && m.length === 4 && m[0] === 1 && Number.isInteger(m[1])) {
        const p = conn.pending.get(m[1]);
        if (!p) throw new ProtocolError(`stockd answered msgid ${m[1]}, which is not in flight`, 'protocol');
        conn.pending.delete(m[1]);
        clearTimeout(p.timer);
        if (m[2] != null) {
          if (m[2].code === 'too_large') conn.doomed = true;
          p.reject(fromWire(m[2]));
        } else {
          p.resolve(m[3]);
        }
        this.#slotWaiters.shift()?.();
      } else if (Array.isArray(m) && m.length === 3 && m[0] === 2) {
        if (m[1] === 'order.update' && Array.isArray(m[2]) && m[2][0] !== null && typeof m[2][0] === 'object') {
          if (this.#notes.length >= MAX_NOTIFICATIONS) {
            this.droppedNotifications++;
          } else {
            this.#notes.push(m[2][0]);
            for (const w of this.#noteWaiters.splice(0)) { clearTimeout(w.timer); w.resolve(true); }
          }
        }
        // Other notifications are not part of the contract yet: ignored.
      } else {
        throw new ProtocolError('stockd sent a message that is neither a response nor a notification', 'protocol');
      }
    }
    conn.buf = buf.subarray(pos);
  }

  #waitNote(conn, waitMs) {
    if (conn.failure) return Promise.reject(conn.failure);
    return new Promise((resolve, reject) => {
      const w = { resolve, reject, conn, timer: null };
      if (waitMs != null) {
        w.timer = setTimeout(() => {
          this.#noteWaiters.splice(this.#noteWaiters.indexOf(w), 1);
          resolve(false);
        }, waitMs);
      }
      this.#noteWaiters.push(w);
    });
  }

  /** Ends conn: every call in flight on it gets exc. */
  #drop(conn, exc) {
    if (conn.failure) return;
    conn.failure = exc;
    if (this.#conn === conn) {
      this.#conn = null;
      this.#next = (this.#next + 1) % this.#endpoints.length;
    }
    for (const p of conn.pending.values()) {
      clearTimeout(p.timer);
      p.reject(exc);
    }
    conn.pending.clear();
    conn.socket.destroy();
    for (const r of this.#slotWaiters.splice(0)) r();
    for (const w of this.#noteWaiters.splice(0)) {
      clearTimeout(w.timer);
      if (w.conn === conn) w.reject(exc); else w.resolve(false);
    }
  }
}

/**
 * Requests queued here are sent together on the client's connection when
 * `await execute()` runs (at most pipelineWindow in flight), and resolve to
 * one result per request in the order queued: the typed result or its
 * StockdError (one failure does not stop the others).
 */
export class Pipeline {
  #client;
  #entries = [];

  constructor(client) {
    this.#client = client;
  }

  get length() {
    return this.#entries.length;
  }

  #add(method, params, decode) {
    this.#entries.push([method, params, decode]);
    return this.#entries.length - 1;
  }

  reserve(orderId, sku, qtyOrOpts, opts) {
    return this.#add('reserve', reserveArgs(orderId, sku, qtyOrOpts, opts)[0], orderFromWire);
  }

  confirm(orderId, sku) { return this.#add('confirm', orderParams(orderId, sku), orderFromWire); }

  release(orderId, sku) { return this.#add('release', orderParams(orderId, sku), orderFromWire); }

  ship(orderId, sku) { return this.#add('ship', orderParams(orderId, sku), orderFromWire); }

  orderGet(orderId, sku) { return this.#add('order.get', orderParams(orderId, sku), orderFromWire); }

  stockGet(sku) { return this.#add('stock.get', { sku }, stockFromWire); }

  skuPut(sku, fields = {}) { return this.#add('sku.put', skuPutParams(sku, fields), stockFromWire); }

  call(method, params = {}) { return this.#add(method, params, (r) => r); }

  /** Sends everything queued; one result per request, in order. The pipeline is empty afterwards. */
  execute() {
    const entries = this.#entries;
    this.#entries = [];
    return Promise.all(entries.map(([method, params, dec]) => this.#client.call(method, params).then(dec).catch(
      (e) => {
        if (e instanceof StockdError) return e;
        throw e;
      },
    )));
  }
}
