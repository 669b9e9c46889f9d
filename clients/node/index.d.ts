// Types of stockd-client (see index.js and proto/PROTOCOL.md).

export interface ClientOptions {
  /** Per endpoint (default 1000). */
  connectTimeoutMs?: number;
  /** Per call; then Timeout and the connection closes (default 10000). */
  timeoutMs?: number;
  /** Admin token, sent with skuPut / stockAdjust / supplier.put. */
  token?: string | null;
  /** Largest reply accepted (default 4 MiB). */
  maxReplyBytes?: number;
  /** Calls in flight on the connection at once (default 512). */
  pipelineWindow?: number;
}

export interface ReserveOptions {
  /** Hold the order this long (1,000..86,400,000) until confirm(); absent: confirmed at once. */
  holdMs?: number;
  /** Longest wait in stockd's queue (1..600,000; default 2,000). */
  deadlineMs?: number;
  /**
   * true: 1688 checks the supplier units (createOrder.preview) before stockd
   * answers; a refusal rejects with CheckFailed. Default false. Anything but
   * a boolean rejects with a TypeError, nothing sent.
   */
  check?: boolean;
}

export interface RetryOptions extends ReserveOptions {
  /** The whole budget of all attempts (default 10000). */
  totalMs?: number;
  /** First pause (default 50), doubling up to backoffMaxMs (default 1000), with jitter. */
  backoffMs?: number;
  backoffMaxMs?: number;
}

export type OrderStatus = 'held' | 'confirmed' | 'purchased' | 'shipped' | 'released' | 'expired' | 'failed';

/** Lines of a cart: {sku: qty}, or [sku, qty] pairs, or {sku, qty} objects. */
export type Lines = Record<string, number> | Array<[string, number] | { sku: string; qty: number }>;

export interface Line {
  line: number;
  sku: string;
  qty: number;
  fromOwn: number;
  fromSupplier: number;
  status: OrderStatus;
  upstreamOrderId?: string;
}

/** An order record. Times are unix epoch milliseconds. */
export interface Order {
  orderId: string;
  sku: string;
  qty: number;
  status: OrderStatus;
  fromOwn: number;
  fromSupplier: number;
  available: number;
  createdAt: number;
  updatedAt: number;
  holdExpiresAt?: number;
  upstreamOrderId?: string;
  reason?: string;
  purchasedAt?: number;
  supplierSettled?: boolean;
  /** Empty for an order of one SKU. */
  lines: Line[];
  raw: Record<string, unknown>;
}

export interface Stock {
  sku: string;
  available: number;
  ownOnHand: number;
  ownReserved: number;
  supplierReported: number;
  supplierSellable: number;
  supplierReserved: number;
  supplierSyncedAt: number;
  mapping: 'none' | 'manual' | 'ok' | 'broken';
  supplier?: { supplier_id: string; offer_id: number; spec_id: string; sku_id?: number; cap?: number };
  trust?: number;
  raw: Record<string, unknown>;
}

export interface SkuFields {
  ownOnHand?: number;
  supplierReported?: number;
  supplier?: { supplier_id: string; offer_id: number; spec_id: string; sku_id?: number; cap?: number };
}

export declare const DEFAULT_CONNECT_TIMEOUT_MS: number;
export declare const DEFAULT_TIMEOUT_MS: number;
export declare const DEFAULT_MAX_REPLY_BYTES: number;
export declare const DEFAULT_PIPELINE_WINDOW: number;
export declare const MAX_NOTIFICATIONS: number;

export declare class Client {
  constructor(endpoints: string | string[], opts?: ClientOptions);
  readonly connectTimeoutMs: number;
  timeoutMs: number;
  readonly maxReplyBytes: number;
  readonly pipelineWindow: number;
  token: string | null;
  /** Order updates dropped because MAX_NOTIFICATIONS were waiting unread. */
  droppedNotifications: number;
  /** "host:port" of the live connection, or null. */
  readonly endpoint: string | null;

  ping(): Promise<{ node: string; version: string }>;
  reserve(orderId: string, sku: string, qty: number, opts?: ReserveOptions): Promise<Order>;
  reserve(orderId: string, lines: Lines, opts?: ReserveOptions): Promise<Order>;
  reserveWithRetry(orderId: string, sku: string, qty: number, opts?: RetryOptions): Promise<Order>;
  reserveWithRetry(orderId: string, lines: Lines, opts?: RetryOptions): Promise<Order>;
  confirm(orderId: string, sku?: string): Promise<Order>;
  release(orderId: string, sku?: string): Promise<Order>;
  ship(orderId: string, sku?: string): Promise<Order>;
  orderGet(orderId: string, sku?: string): Promise<Order>;
  stockGet(sku: string): Promise<Stock>;
  skuPut(sku: string, fields?: SkuFields): Promise<Stock>;
  stockAdjust(sku: string, delta: number, reason: string): Promise<Stock>;
  subscribe(opts?: { waitMs?: number }): Promise<AsyncIterableIterator<Order>>;
  call(method: string, params?: Record<string, unknown>): Promise<unknown>;
  pipeline(): Pipeline;
  connect(): Promise<void>;
  close(): void;
}

export declare class Pipeline {
  readonly length: number;
  reserve(orderId: string, sku: string, qty: number, opts?: ReserveOptions): number;
  reserve(orderId: string, lines: Lines, opts?: ReserveOptions): number;
  confirm(orderId: string, sku?: string): number;
  release(orderId: string, sku?: string): number;
  ship(orderId: string, sku?: string): number;
  orderGet(orderId: string, sku?: string): number;
  stockGet(sku: string): number;
  skuPut(sku: string, fields?: SkuFields): number;
  call(method: string, params?: Record<string, unknown>): number;
  execute(): Promise<Array<Order | Stock | unknown | StockdError>>;
}

export declare class StockdError extends Error {
  constructor(message: string, code?: string, retryable?: boolean, details?: Record<string, unknown>,
    options?: { cause?: unknown });
  /** The server's code (PROTOCOL §5), or 'transport', 'timeout', 'protocol'. */
  readonly code: string;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;
  readonly available?: number;
  readonly field?: string;
  readonly status?: string;
  readonly line?: number;
  readonly sku?: string;
  readonly owner?: string;
  /** check_failed: the refused order. */
  readonly orderId?: string;
  /** unavailable of a checked reserve: 'check_unavailable'. */
  readonly reason?: string;
}
/** A final answer: do not retry. */
export declare class Refused extends StockdError {}
/** Nothing changed (or OutcomeUnknown): retry with the same order_id. */
export declare class Retryable extends StockdError {}
export declare class OutcomeUnknown extends Retryable {}
export declare class ConnectionFailed extends Retryable {}
export declare class ConnectionLost extends OutcomeUnknown {}
export declare class Timeout extends OutcomeUnknown {}
export declare class ProtocolError extends StockdError {}
export declare class Invalid extends Refused {}
export declare class UnknownMethod extends Refused {}
export declare class UnknownSku extends Refused {}
export declare class Insufficient extends Refused {}
export declare class Conflict extends Refused {}
export declare class NotFound extends Refused {}
export declare class InvalidState extends Refused {}
export declare class Expired extends Refused {}
export declare class Unauthorized extends Refused {}
export declare class TooLarge extends Refused {}
/** check_failed: 1688's order check refused a checked reserve (final). */
export declare class CheckFailed extends Refused {}
/** unavailable with set_aside: rows support must repair; retryable false (final). */
export declare class SetAside extends Refused {}
export declare class Busy extends Retryable {}
export declare class Deadline extends Retryable {}
export declare class Unavailable extends Retryable {}
export declare class Internal extends Retryable {}

export declare function fromWire(err: unknown): StockdError;
export declare function orderFromWire(m: unknown): Order;
export declare function stockFromWire(m: unknown): Stock;
