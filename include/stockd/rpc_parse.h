/* rpc_parse.h — the pure part of request handling: method names and the
 * validation of a request's params into an engine op. No sockets, no loop,
 * no server state, so it can be unit-tested and fuzzed on its own
 * (tests/fuzz/fuzz_request.c).
 *
 * Untrusted input: params is whatever the client sent inside a frame that
 * codec_frame_check() accepted and msgpack_unpack() decoded. Every string is
 * length-checked before it is copied into the op's fixed buffers; ids and
 * names must be valid UTF-8 without NUL (they travel as C strings).
 */
#ifndef STOCKD_RPC_PARSE_H
#define STOCKD_RPC_PARSE_H

#include <stdbool.h>
#include <stdint.h>

#include <msgpack.h>

#include "stockd/engine.h"
#include "stockd/peer_auth.h"

/* Methods in the order of their counters; M_UNKNOWN counts unknown names
 * and requests whose method could not be read. */
enum method {
    M_PING = 0, M_RESERVE, M_CONFIRM, M_RELEASE, M_SHIP, M_ORDER_GET,
    M_STOCK_GET, M_SKU_PUT, M_ADJUST, M_STATS, M_CLUSTER_RING,
    M_ORDER_SUBSCRIBE, M_ALERTS_LIST, M_SUPPLIER_PUT, M_SUPPLIER_GET, M_PEER_HELLO, M_PEER_AUTH,
    M_ALERTS_ACK, M_SKU_RECHECK, M_TEST_CLOCK,
    M_UNKNOWN, M_COUNT
};

#define RPC_ALERTS_LIMIT_MAX 1000
#define RPC_ALERTS_LIMIT_DEFAULT 100
#define RPC_ACK_NOTE_MAX 255     /* alerts.ack note, bytes (the column is VARBINARY(255)) */

const char *rpc_method_name(enum method m);
/* M_UNKNOWN when p[0..n) names no method. */
enum method rpc_method_lookup(const char *p, uint32_t n);
/* Admin methods need the admin token (when one is configured). */
bool rpc_method_admin(enum method m);
/* Answered at once, without the engine queue: reads from memory, and
 * sku.recheck (it only asks the supplier sync for a call). */
bool rpc_method_read_only(enum method m);
/* Requests about one SKU they name (stock.get, reserve, sku.put,
 * stock.adjust, sku.recheck). */
bool rpc_method_names_sku(enum method m);
/* Calls on an existing order (confirm, release, ship, order.get). */
bool rpc_method_is_order(enum method m);
/* The engine operation of a method that changes state. */
eng_op_kind rpc_method_op_kind(enum method m);

/* What parsing found besides the op's fields. */
typedef struct rpc_parsed {
    uint64_t seen;                  /* bit per field given */
    int64_t deadline_ms;            /* preset to the default by the caller */
    const msgpack_object *token;    /* NULL or a STR object */
    bool fwd;                       /* "_fwd": forwarded by a peer (sharding) */
    uint64_t fwd_ring;              /* the forwarder's ring version */
    bool sku_hint;                  /* order methods: "sku" given to route by */
    const msgpack_object *update;   /* a peer's order.subscribe: the order record (a MAP
                                     * with order_id and status strings) for this node's
                                     * listeners; NULL otherwise */
    int64_t limit;                  /* alerts.list; preset to 0 = the default */
    /* alerts.ack: the alert's id, who handled it, an optional note ("" = none) */
    int64_t alert_id;
    char ack_by[ENG_ID_MAX + 1];
    char ack_note[RPC_ACK_NOTE_MAX + 1];
    /* supplier.put / supplier.get: op->supplier.supplier_id names the
     * supplier; the trust fields given go to op->trust, the has_* say which
     * (the caller merges the rest from the committed settings). */
    bool has_trust, has_ceiling, has_event_mode, has_event_trust, has_check_before_confirm;
    /* reserve: "check" (a boolean): answer only what the supplier's order
     * check accepts (engine.h "Checks"); false when not given. */
    bool check;
    /* test.clock (testclock.h): where to move the manual clock, unix ms */
    bool has_now_ms;
    int64_t now_ms;
    /* peer.hello / peer.auth (peer_auth.h): the connecting node's name,
     * nonce and key ids; its mac. Pointers into the request. */
    char peer_node[PEER_NODE_MAX + 1];
    const uint8_t *peer_nonce;
    uint8_t peer_keys[PEER_KEYS_MAX * PEER_KEY_ID_BYTES];
    uint32_t peer_n_keys;
    const uint8_t *peer_mac;
} rpc_parsed;

/* Why parsing failed: field and problem are static strings or point into
 * unknown[] of the same struct. */
typedef struct rpc_perr {
    const char *field;
    const char *problem;
    bool unauthorized;              /* a peer-only field from a client: answer unauthorized */
    char unknown[ENG_ID_MAX + 1];   /* an unknown field's name, cut, valid UTF-8 */
} rpc_perr;

/* Validates params ([{...}]) against method m's fields into op (which the
 * caller zeroed). Returns false with *e set on the first problem. m must
 * not be M_UNKNOWN. peer: the request came on a connection that proved the
 * cluster secret (peer_auth.h); otherwise a request naming any peer-only
 * field ("_fwd", part_lines, line_no, decided, as_failed, update, attempt,
 * wait_ms, erase, and release's reason) fails with e->unauthorized set,
 * before any other check.
 *
 * reserve takes sku + qty, or "lines": 1..ENG_LINES_MAX maps of exactly
 * {sku, qty} with the top-level rules (and the qty limit on the sum of the
 * lines of one SKU); errors name the field as "lines[3].qty". The lines
 * are validated whole before one allocation: op->lines / n_lines, owned by
 * the caller from then on, whether the parse succeeded or not: release
 * them with rpc_op_free_lines() (op->lines is NULL without lines).
 *
 * Requests carrying "_fwd" (from stockd peers) may also carry the fields
 * of one line of a cross-shard order (engine.h "Parts"): part_lines
 * (2..ENG_LINES_MAX) and line_no (0..part_lines-1), together, on reserve
 * (with sku + qty), confirm, release, ship and order.get, into
 * op->part_lines / line_no; and "decided" (bool) on confirm, into
 * op->decided (accepted alone on a peer's confirm of a single-SKU order,
 * then ignored). A peer's release of a part may carry "as_failed" (bool,
 * into op->as_failed: another line's purchase failed, engine.h) and, with
 * as_failed true, "reason" (into op->reason). A coordinator's reserve of
 * a part may carry "attempt" (1..2^62) and "wait_ms" (0..ENG_WAIT_MS_MAX),
 * its release of a part "erase" (bool) and, with erase true, "attempt"
 * (engine.h "Waiting", "Erasing"). A peer's order.subscribe
 * carries "update": an order record for this node's listeners
 * (pp->update). */
bool rpc_parse_params(enum method m, const msgpack_object *params, bool peer, eng_op *op,
                      rpc_parsed *pp, rpc_perr *e);
/* Frees op->lines (NULL is fine) and clears n_lines. */
void rpc_op_free_lines(eng_op *op);

/* UTF-8 without NUL, overlongs or surrogates. */
bool rpc_utf8_valid(const unsigned char *p, size_t n);

#endif
