// Typed results (PROTOCOL §4): plain objects with camelCase fields. Times are
// unix epoch milliseconds; optional fields are undefined when stockd did not
// send them; `raw` keeps the map as received.
import { ProtocolError } from './errors.js';

function isMap(m) {
  return m !== null && typeof m === 'object' && !Array.isArray(m);
}

function get(m, k, type, optional = false) {
  const v = m[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== type || (type === 'number' && !Number.isInteger(v))) {
    throw new ProtocolError(`reply lacks the ${type === 'number' ? 'integer' : type} '${k}'`, 'protocol');
  }
  return v;
}

function map(m, what) {
  if (!isMap(m)) throw new ProtocolError(`${what} is not a map`, 'protocol');
  return m;
}

export function lineFromWire(m) {
  map(m, 'order line');
  return {
    line: get(m, 'line', 'number'), sku: get(m, 'sku', 'string'), qty: get(m, 'qty', 'number'),
    fromOwn: get(m, 'from_own', 'number'), fromSupplier: get(m, 'from_supplier', 'number'),
    status: get(m, 'status', 'string'), upstreamOrderId: get(m, 'upstream_order_id', 'string', true),
  };
}

export function orderFromWire(m) {
  map(m, 'order record');
  return {
    orderId: get(m, 'order_id', 'string'), sku: get(m, 'sku', 'string'), qty: get(m, 'qty', 'number'),
    status: get(m, 'status', 'string'), fromOwn: get(m, 'from_own', 'number'),
    fromSupplier: get(m, 'from_supplier', 'number'), available: get(m, 'available', 'number'),
    createdAt: get(m, 'created_at', 'number'), updatedAt: get(m, 'updated_at', 'number'),
    holdExpiresAt: get(m, 'hold_expires_at', 'number', true),
    upstreamOrderId: get(m, 'upstream_order_id', 'string', true),
    reason: get(m, 'reason', 'string', true), purchasedAt: get(m, 'purchased_at', 'number', true),
    supplierSettled: get(m, 'supplier_settled', 'boolean', true),
    lines: Array.isArray(m.lines) ? m.lines.map(lineFromWire) : [],
    raw: m,
  };
}

export function stockFromWire(m) {
  map(m, 'stock map');
  return {
    sku: get(m, 'sku', 'string'), available: get(m, 'available', 'number'),
    ownOnHand: get(m, 'own_on_hand', 'number'), ownReserved: get(m, 'own_reserved', 'number'),
    supplierReported: get(m, 'supplier_reported', 'number'),
    supplierSellable: get(m, 'supplier_sellable', 'number'),
    supplierReserved: get(m, 'supplier_reserved', 'number'),
    supplierSyncedAt: get(m, 'supplier_synced_at', 'number'), mapping: get(m, 'mapping', 'string'),
    supplier: isMap(m.supplier) ? m.supplier : undefined,
    trust: typeof m.trust === 'number' ? m.trust : undefined,
    raw: m,
  };
}
