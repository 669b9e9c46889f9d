// MessagePack-RPC framing (PROTOCOL §1-2), the params of each method and the
// endpoints. Replies are untrusted bytes: frameEnd() finds where a message
// ends by walking its headers and refuses one larger than the limit or
// nested deeper than MAX_DEPTH before anything is decoded, so a 5-byte header
// that claims 4 GiB costs nothing. Only then is the exact slice decoded.
import { Encoder } from '@msgpack/msgpack';
import { ProtocolError } from './errors.js';

export const MAX_DEPTH = 32;
export const MSGID_MAX = 0xffffffff;
export const ADMIN_METHODS = new Set(['sku.put', 'stock.adjust', 'supplier.put']);
// The server's own queueing deadline when a request names none.
export const SERVER_DEFAULT_DEADLINE_MS = 2000;
// One encoder for every request: the library's encode() builds a new one per
// call, which costs more than the encoding.
const encoder = new Encoder({ ignoreUndefined: true });

/** `[0, msgid, method, [params]]` as bytes. */
export function request(msgid, method, params, token) {
  if (params === undefined || params === null) params = {};
  if (typeof params !== 'object' || Array.isArray(params)) {
    throw new TypeError('params must be an object (the one map of the request)');
  }
  if (token != null && ADMIN_METHODS.has(method) && !Object.hasOwn(params, 'token')) {
    params = { ...params, token };
  }
  return encoder.encode([0, msgid, method, [params]]);
}

const FIXED = new Map([
  [0xcc, 2], [0xd0, 2], [0xcd, 3], [0xd1, 3], [0xca, 5], [0xce, 5], [0xd2, 5],
  [0xcb, 9], [0xcf, 9], [0xd3, 9], [0xd4, 3], [0xd5, 4], [0xd6, 6], [0xd7, 10], [0xd8, 18],
]);

function tooLarge(maxBytes) {
  return new ProtocolError(`a message from stockd exceeds the client's limit of ${maxBytes} bytes`, 'protocol');
}

/**
 * The offset just past the message that starts at `pos` in `buf`, or -1 when
 * the buffer does not hold all of it yet. Throws ProtocolError for
 * malformed bytes (0xc1), a message over maxBytes or deeper than MAX_DEPTH.
 */
export function frameEnd(buf, pos, maxBytes) {
  const start = pos;
  const len = buf.length;
  const stack = [1];        // items still to read in each open container
  for (;;) {
    while (stack.length > 0 && stack[stack.length - 1] === 0) stack.pop();
    if (stack.length === 0) return pos <= len ? pos : -1;   // the last item may run past the buffer
    if (pos >= len) return -1;
    stack[stack.length - 1]--;
    const t = buf[pos];
    let n = 0;              // children of a container
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) {
      pos += 1;
    } else if (t <= 0x8f) {
      pos += 1; n = 2 * (t & 0x0f);
    } else if (t <= 0x9f) {
      pos += 1; n = t & 0x0f;
    } else if (t <= 0xbf) {
      pos += 1 + (t & 0x1f);
    } else if (FIXED.has(t)) {
      pos += FIXED.get(t);
    } else if (t === 0xc4 || t === 0xc7 || t === 0xd9) {          // 8-bit length
      if (pos + 2 > len) return -1;
      pos += 2 + buf[pos + 1] + (t === 0xc7 ? 1 : 0);
    } else if (t === 0xc5 || t === 0xc8 || t === 0xda) {          // 16-bit length
      if (pos + 3 > len) return -1;
      pos += 3 + buf.readUInt16BE(pos + 1) + (t === 0xc8 ? 1 : 0);
    } else if (t === 0xc6 || t === 0xc9 || t === 0xdb) {          // 32-bit length
      if (pos + 5 > len) return -1;
      pos += 5 + buf.readUInt32BE(pos + 1) + (t === 0xc9 ? 1 : 0);
    } else if (t === 0xdc || t === 0xde) {
      if (pos + 3 > len) return -1;
      n = buf.readUInt16BE(pos + 1) * (t === 0xde ? 2 : 1); pos += 3;
    } else if (t === 0xdd || t === 0xdf) {
      if (pos + 5 > len) return -1;
      n = buf.readUInt32BE(pos + 1) * (t === 0xdf ? 2 : 1); pos += 5;
    } else {                                                      // 0xc1: never used
      throw new ProtocolError(`malformed MessagePack from stockd (byte 0x${t.toString(16)})`, 'protocol');
    }
    // Every child takes at least one byte: a count beyond the limit is
    // refused as surely as a length beyond it.
    if (pos - start + n > maxBytes) throw tooLarge(maxBytes);
    if (n > 0) {
      if (stack.length >= MAX_DEPTH) {
        throw new ProtocolError(`a message from stockd is nested deeper than ${MAX_DEPTH}`, 'protocol');
      }
      stack.push(n);
    }
  }
}

/** "host:port" or "[v6]:port", one or a list -> [{host, port, label}]. */
export function parseEndpoints(endpoints) {
  const list = typeof endpoints === 'string' ? [endpoints] : Array.from(endpoints ?? []);
  const out = list.map((e) => {
    const m = typeof e === 'string' ? /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(e) : null;
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535) throw new TypeError(`endpoint must be HOST:PORT or [V6]:PORT: ${e}`);
    return { host: m[1] ?? m[2], port, label: e };
  });
  if (out.length === 0) throw new TypeError('no endpoint given');
  return out;
}

/** sku: one SKU (then qty), or the lines of a cart: {hoodie: 1, cap: 2},
 *  or an array of [sku, qty] pairs or {sku, qty} objects. */
export function reserveParams(orderId, sku, qty, opts = {}) {
  // A check must be asked for exactly: true or false (or absent), never a truthy value.
  if (opts.check !== undefined && typeof opts.check !== 'boolean') {
    throw new TypeError(`reserve: check must be a boolean (true or false), not ${opts.check === null ? 'null' : typeof opts.check}`);
  }
  const p = { order_id: orderId };
  if (typeof sku === 'string') {
    if (qty === undefined) throw new TypeError('reserve of one SKU needs a qty');
    p.sku = sku;
    p.qty = qty;
  } else {
    if (qty !== undefined) throw new TypeError('reserve with lines takes no qty: give it per line');
    const items = Array.isArray(sku) ? sku : Object.entries(sku ?? {});
    p.lines = items.map((l) => {
      const [s, q] = Array.isArray(l) ? l : [l?.sku, l?.qty];
      if (typeof s !== 'string' || !Number.isInteger(q)) throw new TypeError('a line is [sku: string, qty: integer]');
      return { sku: s, qty: q };
    });
  }
  if (opts.holdMs != null) p.hold_ms = opts.holdMs;
  if (opts.deadlineMs != null) p.deadline_ms = opts.deadlineMs;
  if (opts.check === true) p.check = true;
  return p;
}

export function orderParams(orderId, sku) {
  return sku == null ? { order_id: orderId } : { order_id: orderId, sku };
}

export function skuPutParams(sku, { ownOnHand, supplierReported, supplier } = {}) {
  const p = { sku };
  if (ownOnHand != null) p.own_on_hand = ownOnHand;
  if (supplierReported != null) p.supplier_reported = supplierReported;
  if (supplier != null) p.supplier = supplier;
  return p;
}
