// The exceptions of the stockd client: one class per error code of
// PROTOCOL §5, under one base, grouped by what a gateway should do:
//
//   StockdError
//   ├── Refused          a final answer: tell the buyer, do not retry
//   │   ├── Invalid, UnknownMethod, UnknownSku, Insufficient, Conflict,
//   │   ├── NotFound, InvalidState, Expired, Unauthorized, TooLarge
//   │   ├── CheckFailed  a checked reserve: 1688's order check refused it
//   │   └── SetAside     `unavailable` with set_aside: rows support must repair
//   ├── Retryable        nothing changed: retry with the same order_id
//   │   ├── Busy, Deadline, Unavailable, Internal, ConnectionFailed
//   │   └── OutcomeUnknown   it may have happened: retry with the same
//   │       │                order_id, the answer says what happened
//   │       └── ConnectionLost, Timeout
//   └── ProtocolError    the peer broke the wire contract (wrong address, a bug)
//
// `code` is the server's code (`insufficient`, ...) or, for failures on this
// side of the wire, `transport`, `timeout` or `protocol`.

export class StockdError extends Error {
  constructor(message, code = 'transport', retryable = false, details = {}, options = undefined) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.retryable = retryable;
    this.details = details;
  }

  #detail(k, type) {
    const v = this.details[k];
    return typeof v === type ? v : undefined;
  }

  /** insufficient: what could be had right then. */
  get available() { return this.#detail('available', 'number'); }
  /** invalid: the offending parameter (`qty`, `lines[3].qty`). */
  get field() { return this.#detail('field', 'string'); }
  /** invalid_state: the order's current status. */
  get status() { return this.#detail('status', 'string'); }
  /** insufficient / unknown_sku with lines: the first line not met. */
  get line() { return this.#detail('line', 'number'); }
  get sku() { return this.#detail('sku', 'string'); }
  /** unavailable in a cluster: the SKU's owner. */
  get owner() { return this.#detail('owner', 'string'); }
  /** check_failed: the order 1688's check refused (absent without a supplier API: no order recorded). */
  get orderId() { return this.#detail('order_id', 'string'); }
  /** unavailable of a checked reserve: 'check_unavailable' (the check could not be made in time). */
  get reason() { return this.#detail('reason', 'string'); }
}

/** A final answer (retryable false): the same request gets the same answer. */
export class Refused extends StockdError {}
/** Nothing was decided, or (OutcomeUnknown) it is not known whether it was: retry, same order_id. */
export class Retryable extends StockdError {}
/** Maybe it happened: retry with the same order_id; the answer says what happened, never twice. */
export class OutcomeUnknown extends Retryable {}
/** No endpoint accepted a connection in time; nothing was sent. */
export class ConnectionFailed extends Retryable {}
/** The connection closed or failed with requests in flight. */
export class ConnectionLost extends OutcomeUnknown {}
/** No reply within the client's timeout. */
export class Timeout extends OutcomeUnknown {}
/** Malformed MessagePack, a reply over the client's limit, a wrong shape: not retried. */
export class ProtocolError extends StockdError {}

export class Invalid extends Refused {}
export class UnknownMethod extends Refused {}
export class UnknownSku extends Refused {}
export class Insufficient extends Refused {}
export class Conflict extends Refused {}
export class NotFound extends Refused {}
export class InvalidState extends Refused {}
export class Expired extends Refused {}
export class Unauthorized extends Refused {}
/** The server closed the connection after it; the client reconnects on the next call. */
export class TooLarge extends Refused {}
/**
 * check_failed: a checked reserve ({check: true}, or a SKU of a supplier set to
 * check_before_confirm) whose supplier units 1688's order check refused; the
 * message carries 1688's code and words, orderId the order (it stays failed,
 * nothing held; a retry answers the same). Also without a supplier API to ask.
 */
export class CheckFailed extends Refused {}
/**
 * unavailable with set_aside: true (retryable false): the SKU or order was set
 * aside when stockd loaded it (its rows cannot be trusted); every request naming
 * it gets this until support repairs the rows and restarts stockd. Not an
 * Unavailable: a retry gets the same answer, so reserveWithRetry rejects at once.
 */
export class SetAside extends Refused {}
export class Busy extends Retryable {}
export class Deadline extends Retryable {}
export class Unavailable extends Retryable {}
export class Internal extends Retryable {}

const BY_CODE = {
  invalid: Invalid, unknown_method: UnknownMethod, unknown_sku: UnknownSku,
  insufficient: Insufficient, conflict: Conflict, not_found: NotFound,
  invalid_state: InvalidState, expired: Expired, busy: Busy, deadline: Deadline,
  unavailable: Unavailable, unauthorized: Unauthorized, too_large: TooLarge, internal: Internal,
  check_failed: CheckFailed,
};

/** The exception for an error map as stockd sends it ({code, message, retryable, ...details}). */
export function fromWire(err) {
  if (err === null || typeof err !== 'object' || Array.isArray(err) || typeof err.code !== 'string') {
    return new ProtocolError(`stockd sent an error that is not a map with a code: ${String(err).slice(0, 200)}`, 'protocol');
  }
  const { code, message, retryable, ...details } = err;
  const msg = typeof message === 'string' ? message : code;
  let Cls;
  if (code === 'unavailable' && details.set_aside === true) Cls = SetAside;
  else if (code === 'unavailable' && details.outcome === 'unknown') Cls = OutcomeUnknown;
  else Cls = Object.hasOwn(BY_CODE, code) ? BY_CODE[code] : (retryable === true ? Retryable : Refused);
  return new Cls(`${code}: ${msg}`, code, retryable === true, details);
}
