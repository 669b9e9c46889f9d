// stockd-client: a promise client for stockd, the inventory reservation
// server (MessagePack-RPC over TCP; wire contract: proto/PROTOCOL.md).
export {
  Client, Pipeline, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, DEFAULT_MAX_REPLY_BYTES,
  DEFAULT_PIPELINE_WINDOW, MAX_NOTIFICATIONS,
} from './lib/client.js';
export {
  StockdError, Refused, Retryable, OutcomeUnknown, ConnectionFailed, ConnectionLost, Timeout, ProtocolError,
  Invalid, UnknownMethod, UnknownSku, Insufficient, Conflict, NotFound, InvalidState, Expired, Unauthorized,
  TooLarge, CheckFailed, SetAside, Busy, Deadline, Unavailable, Internal, fromWire,
} from './lib/errors.js';
export { orderFromWire, stockFromWire } from './lib/results.js';
