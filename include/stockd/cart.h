/* cart.h — the cross-shard coordinator for orders of several lines,
 * used only in sharded mode (--peers). Its files: cart.c (this API, a
 * coordination's life), cart_coord.c (the phases), cart_owner.c (the
 * owner side), cart_wire.c (the messages, pure: cart_wire.h).
 *
 * A reserve with lines that reaches a sharded node is coordinated by that
 * node. Lines are normalized here exactly as the engine does it (lines of
 * one SKU summed, distinct SKUs numbered 0..N-1 in order of first
 * appearance). N == 1 is sent to the SKU's owner as a plain reserve
 * (sku, summed qty, the client's hold_ms). N >= 2: every line k becomes a
 * PART on its SKU's owner (engine.h "Parts"), placed by a forwarded reserve
 * {order_id, sku, qty, hold_ms: Hp, part_lines: N, line_no: k, "_fwd"}
 * (the node itself is reached through its own address like any peer), with
 * Hp = the client's hold_ms when > 0, else cfg->cart_hold_ms.
 *   Placing (engine.h "Waiting"): without a client hold_ms the order gets
 *   an attempt id (random start per process, counted) and its parts are
 *   placed with "attempt" (deciding) and no wait, all at once. A part
 *   answered insufficient with "deciding" (short only because of carts
 *   still deciding), and no part refused otherwise: the coordinator erases
 *   (release + erase + attempt) its held parts whose SKU sorts after the
 *   first such part's, then places the parts not held one by one in SKU
 *   order, each with "wait_ms" = what is left of the deadline minus
 *   CART_WAIT_MARGIN_MS. A cart that waits therefore holds only SKUs
 *   before the one it waits for: no circle of carts waiting on each other.
 *   An erase refused (the part is another coordination's now) aborts.
 *   With a client hold_ms every part may wait at once: such parts are
 *   never deciding, so nobody waits for them.
 *   - every part held: with hold_ms 0, store_cart_decide(CONFIRM); CONFIRM
 *     stands -> every part confirmed with decided: true, the merged record
 *     is answered; ABORT stands -> every part released, `expired`. With
 *     hold_ms > 0 the merged (held) record is answered; the client's later
 *     confirm runs the same decision.
 *   - a part refused (insufficient, unknown_sku, conflict, ...) or not
 *     answered: store_cart_decide(ABORT); ABORT stands -> every part
 *     released (a release of a part never placed is harmless), the first
 *     failing line's error is answered with "line" (the client's index of
 *     the first line naming that SKU) and "sku" (insufficient: with the
 *     part's "available"); an unreachable owner -> `unavailable`
 *     (retryable: the same order_id finds the decision and ends
 *     consistent). CONFIRM stands (an earlier attempt decided) -> that
 *     decision is followed. A refusal (a part's error that is not
 *     retryable) rides with the ABORT (store_abort_why): the releases erase
 *     every part (no row, no record: order.get / confirm / release answer
 *     not_found once through, as on one instance), and every later reserve
 *     of the order_id (retry, any node) answers that refusal again; a
 *     confirm or release of it that finds parts left erases them and
 *     answers not_found. An abort for a retryable failure (an owner not
 *     reached) stores none: its parts are erased too, a part left on an
 *     unreachable owner lapses expired, and a retry answers expired. An abort releases every part a reserve was
 *     sent for, answered or not (a release finding nothing is fine), and
 *     sends the releases that got no answer once more. The decision is
 *     asked up to 3 times (from the loop); still failing -> `unavailable`
 *     and nothing released: the owners' hold lapse settles the parts.
 *   - a retry finding parts already confirmed / ended follows what is
 *     there (see cart_coord.c).
 * Owner side: cart_settle_due() settles this node's parts whose hold
 * lapsed (engine_part_due): ABORT stands -> release + as_expired (with a
 * refusal: release + erase, the coordinator's erase was lost); CONFIRM
 * stands -> confirm + decided; decision failed -> engine_part_retry() in
 * 1 s. The server calls it from its expiry timer.
 *
 * Order calls (confirm, release, ship, order.get) on an order that names
 * no SKU in sharded mode, and those whose "sku" hint led to a node that
 * holds only one line of the order or no such order, go through
 * cart_order_op() (a call it routed by the order's one SKU is not handed
 * back to it: the server marks it): MariaDB's lines of the
 * order (store_find_order_lines) decide: none -> single_fn(ctx, "") (the
 * server answers as for an unknown order); one line -> single_fn(ctx, sku)
 * (the server routes it as a plain order call for that SKU); several ->
 * fanned out to every part's owner and merged (see cart_coord.c).
 *
 * Callbacks: every cart_reserve() / cart_order_op() call ends in exactly
 * ONE callback, fn or single_fn, from the loop and never inside the call.
 * data is the complete msgpack-rpc response [1, msgid, error, result],
 * valid only during the call. ctx must stay valid until then: if the
 * client connection closes meanwhile, the server still waits for the
 * callback (and drops the reply); there is no cancellation, every
 * coordination ends by its own timeouts (derived from deadline_ms, with a
 * floor per phase so that phase 2 is never skipped for lack of time).
 * Shutdown: cart_free() BEFORE peer_pool_free() and store_free(): after
 * it no callback reaches the server. Coordinations still waiting on a
 * peer are orphaned and freed when the pool fails their calls; the rest
 * are freed at once (the store abandons its calls without callbacks).
 *
 * Limits: cfg->cart_inflight_max coordinations at once; beyond that a
 * call is answered `busy` (from the loop). Lines must already be
 * validated by the caller (1..ENG_LINES_MAX, each sku 1..ENG_ID_MAX bytes,
 * qty 1..ENG_QTY_MAX); a SKU's summed qty above ENG_QTY_MAX is `invalid`.
 */
#ifndef STOCKD_CART_H
#define STOCKD_CART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockd/config.h"
#include "stockd/engine.h"
#include "stockd/peer.h"
#include "stockd/ring.h"
#include "stockd/store.h"

struct event_base;

typedef struct cart cart;

typedef struct cart_env {
    struct event_base *base;
    peer_pool *peers;
    store *st;
    engine *eng;
    const ring *rg;               /* read at every use: the server may swap it on SIGHUP
                                   * (cart_set_ring) */
    uint32_t self;                /* this node's index in rg */
    const stockd_config *cfg;
    /* Runs the engine's queued batches (the server's pump): called after
     * this module submitted ops of its own. */
    void (*pump)(void *arg);
    void *pump_arg;
} cart_env;

cart *cart_new(const cart_env *env);
void cart_free(cart *c);
/* A new ring (SIGHUP): coordinations started later use it. */
void cart_set_ring(cart *c, const ring *rg, uint32_t self);

/* data: the complete msgpack-rpc response for msgid; valid during the call. */
typedef void (*cart_reply_fn)(void *ctx, const char *data, size_t len);

/* A reserve with lines (n >= 1, validated). hold_ms 0 = confirm at once.
 * deadline_ms: the client's deadline (relative, ms). */
void cart_reserve(cart *c, uint32_t msgid, const char *order_id, const eng_line_in *lines,
                  uint32_t n, int64_t hold_ms, int64_t deadline_ms, cart_reply_fn fn, void *ctx);

/* method: "confirm", "release", "ship" or "order.get". Ends in fn (a
 * multi-line order, answered here) or single_fn (sku "" = no such order;
 * else the order's one SKU: the server handles it as a plain order call). */
void cart_order_op(cart *c, uint32_t msgid, const char *method, const char *order_id,
                   int64_t deadline_ms, cart_reply_fn fn,
                   void (*single_fn)(void *ctx, const char *sku), void *ctx);

/* A part held here failed its purchase for good (its committed row is
 * failed with a job row "failed"; a cascade's own failures never call
 * this): fails the whole order as one instance does. Reads the order's
 * lines (store_find_order_lines, from the loop) and sends release
 * {part_lines, line_no, as_failed: true, reason: "line K failed: <reason>"}
 * to every other part's owner (this node through its own address); parts
 * not reached (transport failure or a retryable error) are tried again
 * with backoff (CART_CASCADE_* in cart_internal.h, about a minute in
 * all), then the cascade is logged and left to support (the failed line's
 * "purchase_failed" alert). One cascade per order at a time; repeats are
 * harmless (the engine fails only what is held or confirmed). When every
 * part is settled the order's listeners are told (cart_order_changed). */
void cart_part_failed(cart *c, const char *order_id, int32_t line_no, int32_t n_lines,
                      const char *reason);

/* A part of order_id held here reached purchased, failed or expired
 * (committed). Fetches the whole order from its parts' owners (from the
 * loop) and, when the order as a whole is final for its status
 * (purchased: no line held; failed / expired: no line held or confirmed),
 * sends its merged record to every node in the ring as order.subscribe
 * {"update": record} with "_fwd"; each node tells its own listeners once
 * per (order, status). Best effort like every notification: dropped
 * beyond CART_WATCH_MAX fetches at once or when a part cannot be read. */
void cart_order_changed(cart *c, const char *order_id);

/* Settles this node's lapsed parts (engine_part_due), at most
 * CART_SETTLE_PER_CALL per call. Call from the expiry timer. */
#define CART_SETTLE_PER_CALL 256
void cart_settle_due(cart *c);

typedef struct cart_stats {
    uint64_t reserves;            /* cart_reserve calls */
    uint64_t order_ops;           /* cart_order_op calls that fanned out */
    uint64_t confirmed;           /* coordinations ending in CONFIRM */
    uint64_t aborted;             /* ending in ABORT (refused, expired) */
    uint64_t unavailable;         /* answered unavailable (owner or decision unreachable) */
    uint64_t busy;                /* refused: cart_inflight_max */
    uint64_t sequential;          /* placements redone one by one in SKU order (waiting) */
    uint64_t settled_confirm;     /* lapsed parts confirmed (decision CONFIRM) */
    uint64_t settled_expire;      /* lapsed parts expired (decision ABORT) */
    uint64_t settle_retries;      /* lapsed parts put back (decision failed) */
    uint64_t watches;             /* whole-order fetches for listeners */
    uint64_t watch_failed;        /* ... that could not read every part */
    uint64_t watch_dropped;       /* ... not started (CART_WATCH_MAX) */
    uint64_t updates_sent;        /* merged records sent to every node */
    uint64_t cascades;            /* failed-line cascades started */
    uint64_t cascade_releases;    /* release + as_failed calls sent */
    uint64_t cascade_retries;     /* rounds after the first */
    uint64_t cascade_done;        /* every other part settled */
    uint64_t cascade_gave_up;     /* left to support */
    uint32_t inflight;            /* coordinations running */
    uint32_t settling;            /* lapsed parts being settled */
} cart_stats;

void cart_stats_get(const cart *c, cart_stats *out);

#endif
