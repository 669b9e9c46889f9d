/* engine.h — the reservation engine: per-SKU FIFOs, decisions, batches.
 *
 * The engine is pure: it does no I/O, reads no clock and allocates only for
 * SKUs, orders and batch slots. The caller (server.c) feeds it operations,
 * asks it for batches, hands each batch to the store, and reports the
 * outcome. Every decision is made in memory, in arrival order per SKU, on
 * the SKU's working counters; nothing a batch decided is visible to readers
 * (stock.get, order.get) until the caller reports the batch committed.
 *
 * Life of an operation (eng_op, memory owned by the caller):
 *
 *   engine_submit()  -> ENG_OK: queued on its SKU's FIFO; the caller must
 *                       keep the op alive until the done callback.
 *                    -> an error: nothing queued, the caller answers now.
 *   engine_cancel()  -> removes a still-queued op (deadline); false if it
 *                       was already taken into a batch.
 *   engine_next_batch() takes queued ops from ready SKUs, decides them and
 *                       returns the rows to write (eng_batch).
 *   engine_batch_done(COMMITTED)  makes the decisions durable-visible and
 *                       calls done(op) for every op in the batch.
 *   engine_batch_done(ABORTED)    restores every before-image; ops get
 *                       ENG_E_UNAVAILABLE.
 *   engine_batch_done(UNKNOWN)    the commit may or may not have happened:
 *                       ops get ENG_E_UNAVAILABLE with outcome_unknown, the
 *                       batch's SKUs stay blocked (ops wait in their FIFOs)
 *                       until engine_batch_resolve() says which it was.
 *
 * One SKU is in at most one in-flight batch, so a SKU has one writer and
 * one order of events: this replaces the per-SKU distributed lock.
 */
#ifndef STOCKD_ENGINE_H
#define STOCKD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENG_ID_MAX 64            /* order_id, sku, supplier ids: 1..64 bytes */
#define ENG_REASON_MAX 128       /* reason strings, bytes */
#define ENG_QTY_MAX 1000000
#define ENG_HOLD_MS_MIN 1000
#define ENG_HOLD_MS_MAX 86400000
#define ENG_STOCK_MAX 1000000000000LL /* any counter, absolute */
#define ENG_LINES_MAX 50         /* lines of one order */
/* order_id of an order given with lines: line k >= 1 is bought upstream as
 * "<order_id>#<k>", which must fit the supplier's 64 bytes. */
#define ENG_CART_ID_MAX (ENG_ID_MAX - 3)
/* The name of line line_no of an order (eng_part_key): order_id for line
 * 0, "<order_id>#<line_no>" otherwise ('#' is never in a client's
 * order_id); its 1688 outOrderId. */
#define ENG_KEY_MAX (ENG_ID_MAX + 3)

typedef enum eng_err {
    ENG_OK = 0,
    ENG_E_INVALID,        /* bad params (field named by the caller) */
    ENG_E_UNKNOWN_SKU,
    ENG_E_INSUFFICIENT,   /* detail: available */
    ENG_E_CONFLICT,       /* order_id already used for another sku or qty */
    ENG_E_NOT_FOUND,
    ENG_E_INVALID_STATE,  /* detail: status */
    ENG_E_EXPIRED,
    ENG_E_BUSY,           /* a queue is full: retryable */
    ENG_E_DEADLINE,       /* still queued at its deadline: nothing changed */
    ENG_E_UNAVAILABLE,    /* store down or commit failed: retryable */
    ENG_E_INTERNAL,
    ENG_E_CHECK_FAILED,   /* the supplier's order check refused the supplier units, or
                           * they cannot be checked ("Checks") */
    ENG_E_COUNT_
} eng_err;

typedef enum eng_status {
    ENG_ST_NONE = 0,      /* no durable record (a reserve still queued) */
    ENG_ST_HELD,
    ENG_ST_CONFIRMED,
    ENG_ST_PURCHASED,
    ENG_ST_SHIPPED,
    ENG_ST_RELEASED,
    ENG_ST_EXPIRED,
    ENG_ST_FAILED,
    ENG_ST_COUNT_
} eng_status;

typedef enum eng_op_kind {
    ENG_OP_RESERVE = 0,
    ENG_OP_CONFIRM,
    ENG_OP_RELEASE,
    ENG_OP_SHIP,
    ENG_OP_EXPIRE,        /* internal: a hold lapsed */
    ENG_OP_SKU_PUT,
    ENG_OP_ADJUST,
    ENG_OP_SUPPLIER_REPORT, /* internal: a supplier figure from a sync */
    ENG_OP_PURCHASED,     /* purchase worker: bought upstream (caller-owned, on_done) */
    ENG_OP_PURCHASE_FAILED, /* purchase worker: failed for good, roll back (on_done) */
    ENG_OP_SUPPLIER_PUT,  /* admin: a supplier's trust settings (no SKU) */
    ENG_OP_COUNT_
} eng_op_kind;

typedef enum eng_mapping {
    ENG_MAP_NONE = 0,     /* no supplier stock */
    ENG_MAP_MANUAL,       /* supplier_reported set by hand (no API access) */
    ENG_MAP_OK,           /* mapped to a 1688 offer/spec */
    ENG_MAP_BROKEN,       /* the live offer no longer matches: supplier stock not sold
                           * until sku.put maps it afresh (the map is kept for support) */
    ENG_MAP_COUNT_
} eng_mapping;

/* Counters of one SKU. All values are >= 0. */
typedef struct eng_counters {
    int64_t own_on_hand;
    int64_t own_reserved;
    int64_t supplier_reported;
    int64_t supplier_sellable;
    int64_t supplier_reserved;
    int64_t supplier_synced_at_ms;
} eng_counters;

typedef struct eng_supplier_map {
    char supplier_id[ENG_ID_MAX + 1];
    char spec_id[ENG_ID_MAX + 1];
    int64_t offer_id;
    int64_t sku_id;       /* 0 when not given */
    int64_t cap;          /* most supplier units ever sellable; -1 = no cap */
    uint64_t fingerprint; /* of the spec's price and attributes (supplier_sync.h);
                           * 0 = not seen yet: the first sync adopts the live one */
} eng_supplier_map;

/* A supplier's trust: supplier_sellable =
 * min(floor(supplier_reported x effective), cap), effective = event_trust
 * while event_mode, else trust. Adaptive: a purchase that failed for
 * insufficient stock multiplies the effective factor by limits.trust_cut;
 * every purchased order adds limits.trust_step to it, up to ceiling. All
 * factors are within 0..1 and trust, event_trust <= ceiling. */
typedef struct eng_trust {
    double trust;
    double ceiling;
    bool event_mode;
    double event_trust;
    bool check_before_confirm;    /* reserves taking its units are checked ("Checks") */
} eng_trust;

/* What readers see of a SKU: the committed state. */
typedef struct eng_stock_view {
    char sku[ENG_ID_MAX + 1];
    int64_t available;
    eng_counters c;
    eng_mapping mapping;
    bool has_map;                 /* mapping OK or BROKEN: map and trust are valid */
    eng_supplier_map map;
    double trust;                 /* the effective factor applied now */
} eng_stock_view;

/* What readers see of an order: the committed record.
 * For an order of several lines (a "cart", n_lines > 1) held here whole,
 * engine_order_get() gives the whole order: sku is line 0's, qty and
 * from_own / from_supplier are sums over the lines, status is the order's
 * (eng_order_status_of below), purchased_at / supplier_settled are set
 * once every line with supplier units has them; engine_order_lines() gives
 * the lines. A store row (eng_order_row) is always ONE line: line_no,
 * n_lines, that line's sku / qty / split / status, the order's other
 * fields. For a part (one line of a cross-shard order) it is that line. */
typedef struct eng_order_view {
    char order_id[ENG_ID_MAX + 1];
    char sku[ENG_ID_MAX + 1];
    int32_t qty;
    int32_t line_no;              /* 0..n_lines-1; 0 for a whole order */
    int32_t n_lines;              /* 1..ENG_LINES_MAX: lines of the whole order */
    eng_status status;
    int32_t from_own;
    int32_t from_supplier;
    int64_t available;            /* SKU availability right after the op */
    int64_t created_at_ms;
    int64_t updated_at_ms;
    int64_t hold_expires_at_ms;   /* 0: none */
    char upstream_order_id[ENG_ID_MAX + 1];  /* "": none */
    char reason[ENG_REASON_MAX + 1];         /* "": none */
    int64_t purchased_at_ms;      /* 0: not bought upstream */
    bool supplier_settled;        /* its bought units left supplier_reserved (a later
                                   * snapshot shows them) */
} eng_order_view;

/* Why a purchase failed for good (ENG_OP_PURCHASE_FAILED). */
typedef enum eng_fail_kind {
    ENG_FAIL_OTHER = 0,   /* rolled back; the SKU keeps its figures */
    ENG_FAIL_STOCK,       /* the check proved the supplier short (500_004):
                           * supplier_reported := 0 until the next sync, trust cut */
    ENG_FAIL_LINK,        /* the offer/spec is gone or changed (500_001, 500_003,
                           * offline): the mapping becomes BROKEN */
    ENG_FAIL_COUNT_
} eng_fail_kind;

typedef struct eng_sku eng_sku;
typedef struct eng_order eng_order;
typedef struct eng_batch eng_batch;

/* ---- orders of several lines ----
 * A reserve may carry lines (1..ENG_LINES_MAX) instead of sku/qty. Lines
 * naming the same SKU are summed first; the order's lines are the distinct
 * SKUs in order of first appearance (line_no 0, 1, ...). On one engine the
 * op waits until it heads the FIFO of every SKU it names (one "ticket" per
 * SKU, pushed at once: arrival order is a total order, so no deadlock) and
 * is decided in one batch: all lines or none. An insufficient or unknown
 * line fails the whole op; err_line names the first such line (an index
 * into op->lines, the first line naming that SKU) and err_available its
 * availability. confirm / release / ship / expiry / purchase failure act on
 * the whole order the same way (tickets on every line's SKU):
 *  - confirm / expiry: the hold is the order's (one hold_expires_at);
 *  - release: only when every line is held or confirmed, else
 *    ENG_E_INVALID_STATE with err_status of the first line that is not;
 *  - ship: only when every line may ship (confirmed own-only, or
 *    purchased), else ENG_E_INVALID_STATE;
 *  - purchases are per line (eng_purchase.line_no); a line's purchase that
 *    fails for good fails the order: every line still confirmed is
 *    returned (status failed); lines already purchased stay purchased
 *    (their units are bought; the alert says so).
 * eng_order_status_of() gives the order's status from its lines.
 *
 * Parts (cross-shard orders, coordinated by the caller): a reserve with
 * part_lines = N > 1 and line_no = k and sku/qty is line k of an order of
 * N lines whose other lines live elsewhere. It is an order of its own,
 * keyed "<order_id>#<k>" (k >= 1) or order_id (k = 0); ops naming it carry
 * the same part_lines / line_no. A part's hold is never ended by the
 * engine: when it lapses it is handed to the caller (engine_part_due),
 * which settles it with confirm + decided (the coordinator decided to
 * confirm the order: confirmed even though the hold lapsed) or release +
 * as_expired (status expired). A release naming a part that is not here
 * (its reserve was lost or is late) is remembered for 10 minutes (at most
 * 65,536 such): a reserve of that part arriving later is ENG_E_EXPIRED and
 * holds nothing (the order was aborted). engine_set_parts_mode(true) (sharded) loads
 * every stored line of an order with n_lines > 1 as a part; otherwise the
 * lines of an order load into one whole order (line 0 first).
 *
 * Waiting (so that carts do not refuse each other): a part held by a
 * reserve with attempt != 0 is DECIDING while it is held (its coordinator
 * confirms or releases it as soon as every part answered; a part held for
 * the client, attempt 0, is not). A part's reserve that finds its SKU short
 * only because of the holds of deciding parts (with them returned it would
 * be met) is ENG_E_INSUFFICIENT with err_deciding set, or, with wait_ms > 0,
 * waits for them: it leaves the FIFO (ops behind it go on; the parts it
 * waits for are settled through that FIFO) and is decided again, in the
 * order in which such reserves came, each time a batch that wrote the SKU
 * commits or aborts, until it is met, or the SKU is short for good, or
 * wait_ms (from its submit) has passed: then it is decided as it stands
 * (insufficient, err_deciding telling whether deciding holds were in the
 * way). engine_expire_due() ends waits that ran out. A waiting op counts
 * as queued (limits, stats); engine_cancel() takes it out like a queued
 * one. Nothing prevents two waits from forming a circle: the coordinator
 * places parts that may wait in one global order (cart.h).
 *
 * Erasing (a refused cart leaves nothing): release with erase on a part
 * held (stock returned, ledger "release") or already released / expired
 * deletes its row (eng_order_row.erase) and its record: reads answer as if
 * it never was, a later reserve of that part is decided anew. With attempt
 * != 0 only a part that attempt placed or took over (its reserve found the
 * part held) is erased, else ENG_E_CONFLICT: a coordinator backing out of
 * its own placement never erases a part another coordination of the same
 * order relies on. Confirmed or later parts: ENG_E_INVALID_STATE. The op
 * answers the part's record as released. An erase of a part that is not
 * here remembers it as a release does (10 minutes). */
#define ENG_WAIT_MS_MAX 600000
typedef struct eng_line_in {
    char sku[ENG_ID_MAX + 1];
    int32_t qty;                  /* 1..ENG_QTY_MAX; the sum over one SKU too */
} eng_line_in;

/* The lines an order is made of, from a request's lines: lines naming one
 * SKU summed, distinct SKUs in order of first appearance (line k = line[k]);
 * first[k] is the index in the request of the first line naming it. Used by
 * the engine and by the cross-shard coordinator, so both number lines the
 * same way. Returns false when one SKU's sum exceeds ENG_QTY_MAX
 * (*bad_line = the first request line naming it). in[]: 1..ENG_LINES_MAX
 * valid lines. */
typedef struct eng_cart {
    uint32_t n;
    eng_line_in line[ENG_LINES_MAX];
    int32_t first[ENG_LINES_MAX];
} eng_cart;
bool eng_cart_of(const eng_line_in *in, uint32_t n, eng_cart *out, int32_t *bad_line);

/* A line of an order as readers see it (committed). */
typedef struct eng_line_view {
    int32_t line_no;
    char sku[ENG_ID_MAX + 1];
    int32_t qty;
    int32_t from_own;
    int32_t from_supplier;
    eng_status status;
    char upstream_order_id[ENG_ID_MAX + 1]; /* "": none */
} eng_line_view;

/* One request. The caller fills the "in" part, owns the memory and keeps it
 * alive from a successful engine_submit() until done() is called for it. */
typedef struct eng_op {
    /* in */
    eng_op_kind kind;
    char order_id[ENG_ID_MAX + 1];
    char sku[ENG_ID_MAX + 1];
    int32_t qty;                  /* reserve */
    const eng_line_in *lines;     /* reserve with lines (n_lines > 0): caller memory, alive
                                   * until done; sku / qty unused */
    uint32_t n_lines;
    int32_t part_lines;           /* > 1: the op names part line_no of an order of that
                                   * many lines (reserve: sku/qty are that line); 0: not */
    int32_t line_no;              /* parts; and ENG_OP_PURCHASED / _FAILED: the line bought */
    bool decided;                 /* confirm of a part: confirm even if its hold lapsed */
    bool as_expired;              /* release of a part: end it as expired */
    bool as_failed;               /* release: another part of the order failed its purchase:
                                   * held / confirmed lines end failed (stock returned, job
                                   * cancelled, reason = op->reason); bought lines stay */
    uint64_t attempt;             /* reserve of a part: the coordination placing it, which
                                   * decides as soon as every part answered ("Waiting": other
                                   * parts may wait for its hold); 0 = a part held for the
                                   * client (hold_ms), whose decision waits for the client.
                                   * release + erase: only a part that attempt holds */
    int64_t wait_ms;              /* reserve of a part: 0..ENG_WAIT_MS_MAX, how long it may
                                   * wait for holds of deciding parts ("Waiting") */
    bool erase;                   /* release of a part: the order never was ("Erasing");
                                   * of a whole order: its check could not be made ("Checks") */
    bool check;                   /* reserve: check its supplier units ("Checks") */
    bool check_off;               /* reserve: no check can be made: refuse where one is due */
    int64_t check_hold_ms;        /* reserve: the hold while checking, ENG_HOLD_MS_MIN.. */
    bool checked;                 /* confirm: ends a check that passed ("Checks") */
    int64_t hold_ms;              /* reserve: 0 = confirm at once */
    int64_t delta;                /* adjust */
    char reason[ENG_REASON_MAX + 1]; /* adjust */
    bool has_own_on_hand;         /* sku.put */
    int64_t own_on_hand;
    bool has_supplier_reported;
    int64_t supplier_reported;
    bool has_supplier;
    eng_supplier_map supplier;    /* sku.put; supplier report: the mapping it was read for */
    int64_t synced_at_ms;         /* supplier report */
    uint64_t fingerprint;         /* supplier report: 0 none; reason: "broken" when set */
    char upstream_order_id[ENG_ID_MAX + 1]; /* purchased */
    eng_fail_kind fail_kind;      /* purchase failed; reason says why */
    bool has_trust;               /* supplier.put: supplier.supplier_id names it */
    eng_trust trust;
    void *ctx;                    /* the caller's; untouched by the engine */
    /* When set, the engine calls on_done(op, on_done_arg) for this op
     * instead of the engine-wide done callback (ops from modules other
     * than the RPC server, e.g. the purchase worker). */
    void (*on_done)(struct eng_op *op, void *arg);
    void *on_done_arg;

    /* out: valid in done() and for errors returned by engine_submit() */
    eng_err err;
    bool outcome_unknown;         /* with ENG_E_UNAVAILABLE */
    int64_t err_available;        /* with ENG_E_INSUFFICIENT */
    bool err_deciding;            /* with ENG_E_INSUFFICIENT on a part: short only because of
                                   * holds of deciding parts ("Waiting") */
    int32_t err_line;             /* reserve with lines, ENG_E_INSUFFICIENT / ENG_E_UNKNOWN_SKU:
                                   * index into lines of the first line not met; else -1 */
    eng_status err_status;        /* with ENG_E_INVALID_STATE */
    char err_aside[ENG_REASON_MAX + 1]; /* with ENG_E_UNAVAILABLE: the op names a SKU or an
                                   * order set aside at load ("set aside" below): what
                                   * and why; "" otherwise */
    bool checking;                /* reserve, on success: held for its check ("Checks") */
    eng_order_view order;         /* order ops, on success */
    eng_stock_view stock;         /* sku.put / adjust, on success */
    bool mapping_new;             /* sku.put, on success: it set a 1688 link other than the
                                   * SKU's working one (new, changed, or a broken one
                                   * given again): its figures are still to be fetched */

    /* engine-private */
    struct eng_op *next, *prev;   /* SKU FIFO, then batch list */
    eng_sku *sku_p;
    int state_;
    struct eng_op *tk_parent;     /* a ticket: the op it stands for in this SKU's FIFO */
    struct eng_op *tk_next;       /* the op's tickets, or the next ticket of the op */
    int64_t wait_until_;          /* a part's reserve: waits for deciding parts until then */
    bool wait_over_;              /* ... and no longer: decided as it stands */
    bool park_;                   /* decided to wait ("Waiting") */
    bool waited_;                 /* ... at least once */
} eng_op;

typedef void (*eng_done_fn)(eng_op *op, void *arg);

typedef struct eng_limits {
    uint32_t queue_per_sku_max;   /* ops waiting on one SKU */
    uint32_t queue_total_max;     /* ops waiting on all SKUs */
    uint32_t batch_ops_max;       /* ops decided into one batch */
    uint32_t batch_sku_ops_max;   /* ops of one SKU in one batch */
    uint32_t expire_per_tick_max; /* holds expired per engine_expire_due() */
    int64_t upstream_lag_ms;      /* bought units stay in supplier_reserved until a
                                   * snapshot taken this long after the purchase */
    eng_trust trust_default;      /* for suppliers without a supplier.put */
    double trust_cut;             /* 0..1: factor kept after an insufficient-stock failure */
    double trust_step;            /* 0..1: added after each purchase */
} eng_limits;

void eng_limits_default(eng_limits *l);

typedef struct eng_stats {
    uint64_t ops_submitted;
    uint64_t ops_done;
    uint64_t batches;             /* batches handed to the store */
    uint64_t batch_ops;           /* ops in those batches */
    uint64_t batches_committed;
    uint64_t batches_aborted;
    uint64_t batches_unknown;
    uint64_t holds_expired;
    uint32_t queued;              /* ops waiting now */
    uint32_t queued_max_sku;      /* longest FIFO seen */
    uint32_t batches_in_flight;
    uint64_t skus;
    uint64_t orders;
    uint64_t orders_evicted;      /* final orders freed (engine_evict_orders) */
    uint64_t orders_reloaded;     /* read back after that (engine_reload_order) */
    uint64_t purchases_pending;   /* confirmed orders with supplier units, not yet bought */
    uint64_t purchased;           /* ENG_OP_PURCHASED committed (this process) */
    uint64_t purchase_failed;     /* ENG_OP_PURCHASE_FAILED committed */
    uint64_t mappings_broken;     /* mappings marked broken */
    uint64_t settled_units;       /* bought units moved out of supplier_reserved */
    uint64_t skus_aside;          /* SKUs set aside at load ("set aside" below) */
    uint64_t orders_aside;        /* orders set aside at load, their SKU's included */
    uint64_t aside_alerts_dropped; /* set-aside alerts beyond ENG_ASIDE_ALERTS_MAX */
    uint32_t parked;              /* parts' reserves waiting for deciding parts now */
    uint64_t park_waits;          /* reserves that started waiting */
    uint64_t park_timeouts;       /* ... whose wait ran out (then decided as they stood) */
} eng_stats;

typedef struct engine engine;

/* Creates an empty engine. done is called once for every op that
 * engine_submit() accepted, from engine_batch_done() or engine_cancel_all().
 * Returns NULL on out of memory. */
engine *engine_new(const eng_limits *limits, eng_done_fn done, void *done_arg);
void engine_free(engine *e);
void engine_set_limits(engine *e, const eng_limits *limits);

/* ---- loading committed state (startup, reload) ----
 * Loads or replaces a SKU / an order exactly as it is in the store. Must not
 * be called for a SKU in an in-flight batch. Return false on bad data
 * (eng_sku_row_valid / eng_order_row_valid, or a line that does not fit
 * the order in memory; a SKU set aside is never replaced) or out of memory.
 * Loaders use engine_load_order_lines() for orders (below): a line alone
 * cannot tell whether its order is whole. */
bool engine_load_sku(engine *e, const char *sku, const eng_counters *c,
                     eng_mapping mapping, const eng_supplier_map *map,
                     int64_t epoch);
bool engine_load_order(engine *e, const eng_order_view *o);
/* Sharded: stored lines of multi-line orders load as parts (see above). */
void engine_set_parts_mode(engine *e, bool parts);

/* ---- set aside: rows that cannot be trusted ----
 * MariaDB is the truth, but rows written by an older version, a bug or a
 * hand can be wrong. Loading never asserts on them: the loader (store.c)
 * checks every row here, and what fails is SET ASIDE, never half-loaded:
 *
 *  - a SKU set aside (its row does not parse or is out of range, its
 *    counters do not match its orders, an order on it cannot be read) is
 *    known to the engine (engine_knows_sku: no reload) but holds no
 *    counters and no orders: every op naming it, reads included through
 *    engine_aside_of(), is refused ENG_E_UNAVAILABLE with err_aside, not
 *    retryable. Its orders leave memory with it and are set aside too
 *    (no alert of their own). Nothing is ever sold from its counters.
 *  - an order set aside (its lines do not make an order: a line missing,
 *    a part without its siblings, line numbers or n_lines that disagree,
 *    a held line without an expiry, a line on a SKU that is not loaded) is
 *    not loaded; its key is remembered so that ops naming it (a reserve
 *    reusing its order_id included, which would otherwise fail a whole
 *    batch on MariaDB's primary key) are refused like a SKU's. The units
 *    its lines hold on SKUs that do load stay reserved ("frozen"): the SKU
 *    sells the rest, never those units, until support repairs the rows.
 *
 * Each new entry queues a support alert (kind "set_aside"), written with
 * the next batch like any alert (MariaDB, the Redis stream, the log,
 * alerts.list); at most ENG_ASIDE_ALERTS_MAX wait (more are counted in
 * aside_alerts_dropped; the loader's log line names every one). At most
 * ENG_ASIDE_MAX entries: beyond that the set-aside calls fail and the
 * loader gives up (a database that broken needs a person first).
 * An entry lasts until the process ends (repair the rows, restart) or
 * engine_forget_sku() drops the SKU. */
#define ENG_ASIDE_MAX 100000
#define ENG_ASIDE_ALERTS_MAX 1024
#define ENG_ASIDE_ALERTS_PER_BATCH 64

/* A SKU row as stored: counters each within 0..ENG_STOCK_MAX, own_reserved
 * <= own_on_hand, a known mapping, a map with a supplier id and a cap in
 * -1..ENG_STOCK_MAX for ok / broken. False with why (a sentence for
 * support) when not. */
bool eng_sku_row_valid(const eng_counters *c, eng_mapping mapping, const eng_supplier_map *map,
                       char why[ENG_REASON_MAX + 1]);
/* One stored order line on its own: ids 1..ENG_ID_MAX bytes (order_id
 * without '#'), a real status, qty 1..ENG_QTY_MAX split into from_own +
 * from_supplier (both >= 0), 0 <= line_no < n_lines <= ENG_LINES_MAX, a
 * held line with an expiry, purchased_at >= 0. False with why. */
bool eng_order_row_valid(const eng_order_view *v, char why[ENG_REASON_MAX + 1]);
/* Loads every stored line of one order (v[0..n), sorted by line_no, one
 * order_id), all or none. Not sharded: the lines must be exactly 0..n_lines-1
 * with one n_lines, and no line may be held next to a released or expired
 * one. Sharded (parts mode): lines of n_lines > 1 are parts, each on its
 * own. Every line's SKU must be loaded (not set aside) and an order already
 * in memory must have the same shape and SKUs. When every line's SKU is
 * already in service (loaded and audited before), memory stands and
 * nothing is loaded (returns 1). Returns 1 loaded, 0 bad
 * (nothing loaded; why says what; the caller sets the order aside), -1 out
 * of memory. */
int engine_load_order_lines(engine *e, const eng_order_view *v, size_t n,
                            char why[ENG_REASON_MAX + 1]);

/* ---- memory bounded by live orders ----
 * An order is final when every line has ended and holds no units of its
 * SKU's counters (shipped with its supplier units settled, purchased with
 * nothing left to ship or settle, released, expired, failed): MariaDB's rows
 * say all there is to say of it. Final orders are kept in the order they
 * became final; engine_evict_orders() frees those whose last change is
 * older than before_ms, at most max a call, skipping (for later) any an op
 * waits on, a batch writes or an expiry entry names; parts of cross-shard
 * orders and orders of a sharded node stay. fn (may be NULL) hears each
 * order_id freed. Returns how many were freed. */
size_t engine_evict_orders(engine *e, int64_t before_ms, size_t max,
                           void (*fn)(const char *order_id, void *arg), void *arg);
/* Reads an evicted order back (v[0..n): its stored lines 0..n-1, sorted),
 * its SKUs loaded: 1 loaded (or already in memory: memory stands), 0 not a
 * final order of loaded SKUs (why says what; nothing loaded), -1 out of
 * memory. A final order holds no units, so the counters do not move. */
int engine_reload_order(engine *e, const eng_order_view *v, size_t n,
                        char why[ENG_REASON_MAX + 1]);
/* Sets order_id aside (see above). lines[0..n) are the lines that could be
 * read (n may be 0): the units they hold on loaded SKUs are frozen there.
 * sku names the alert's SKU ("" when unknown). Returns 1 set aside now
 * (alert queued), 2 set aside now without an alert of its own (every line
 * is on a SKU set aside, whose alert says it), 0 already aside (units
 * frozen again: a reload), -1 at ENG_ASIDE_MAX or out of memory. */
int engine_set_aside_order(engine *e, const char *order_id, const eng_order_view *lines, size_t n,
                           const char *sku, const char *why);
/* Sets a SKU aside (see above), with its orders; *orders_out (unless NULL)
 * says how many left memory with it. Must not be called while it or one
 * of its orders is in a batch (loads never are). sku: 1..ENG_ID_MAX bytes.
 * Returns 1 set aside now, 0 already aside, -1 at ENG_ASIDE_MAX, in a
 * batch, or out of memory. */
int engine_set_aside_sku(engine *e, const char *sku, const char *why, size_t *orders_out);
/* Checks the counters of every SKU loaded (engine_load_sku) since the last
 * call against its orders in memory and the units frozen for orders set
 * aside: own_reserved = from_own of held, confirmed and purchased lines;
 * supplier_reserved = from_supplier of held and confirmed lines, and of
 * purchased or shipped lines not yet settled. Call once a
 * SKU and all its orders are loaded. A SKU that does not match is set
 * aside and handed to fn (unless NULL) with why. Returns how many were set
 * aside, or -1 when a set-aside failed (ENG_ASIDE_MAX). */
int engine_audit_loaded(engine *e, void (*fn)(const char *sku, const char *why, void *arg),
                        void *arg);
/* Queues a "set_aside" alert about something the engine does not hold
 * (a supplier row, a row whose key cannot be read). sku must be non-empty. */
void engine_aside_alert(engine *e, const char *sku, const char *order_id, const char *why);
/* True when op names a SKU or an order set aside; out (unless NULL) then
 * holds the refusal's message. For the callers of reads that missed
 * (stock.get, order.get), so that they answer like engine_submit() does. */
bool engine_aside_of(const engine *e, const eng_op *op, char out[ENG_REASON_MAX + 1]);

/* ---- operations ----
 * engine_submit validates what needs state (unknown sku, unknown order,
 * conflict, full queues) and queues the op. now_ms is the caller's clock.
 * Syntax (lengths, ranges) is the caller's job and asserted here. */
eng_err engine_submit(engine *e, eng_op *op, int64_t now_ms);
/* Kinds beyond reserve/confirm/release/ship/sku.put/adjust:
 *  ENG_OP_PURCHASED / ENG_OP_PURCHASE_FAILED (order_id; upstream_order_id,
 *    or reason + fail_kind): see "purchase jobs" below. Not subject to the
 *    queue limits (the worker has claimed the job; it must be able to end it).
 *  ENG_OP_SUPPLIER_PUT (supplier.supplier_id, has_trust, trust valid per
 *    eng_trust_valid): queued on the engine's one global FIFO, decided at
 *    the start of the next batch; writes a supplier row; on success
 *    op->trust holds the settings. The sellable figure of every SKU of that
 *    supplier follows at once (sellable is derived when read or decided).
 * sku.put with has_supplier: supplier.cap (-1 none) and a fingerprint of 0
 * (adopted at the next sync) unless the caller gives one; it repairs a
 * BROKEN mapping. engine_load_sku() keeps the map of a BROKEN mapping. */
bool engine_cancel(engine *e, eng_op *op);

/* Reads of committed state. Return false when unknown. */
bool engine_stock_get(const engine *e, const char *sku, eng_stock_view *out);
bool engine_order_get(const engine *e, const char *order_id, eng_order_view *out);
/* The committed lines of the whole order order_id (a single-SKU order has
 * one line), at most max into out; returns how many (0: unknown). */
size_t engine_order_lines(const engine *e, const char *order_id, eng_line_view *out, size_t max);
/* A part: line line_no of order_id (see "parts"); false when unknown. */
bool engine_part_get(const engine *e, const char *order_id, int32_t line_no, eng_order_view *out);
/* The order's status from its lines' statuses: failed if any line failed;
 * else the common status; else (confirmed and purchased lines) purchased
 * when every confirmed line has no supplier units, confirmed otherwise. */
eng_status eng_order_status_of(const eng_line_view *lines, size_t n);
/* The reason the order's other lines end failed with when line line_no's
 * purchase failed for why: "line <n> failed: <why>", cut at a UTF-8
 * boundary to ENG_REASON_MAX bytes (the engine for a whole order, the
 * coordinator for the parts of a cross-shard one). */
void eng_line_failed_reason(int32_t line_no, const char *why, char out[ENG_REASON_MAX + 1]);
/* why := the formatted sentence, cut at a UTF-8 boundary to ENG_REASON_MAX
 * bytes (reasons name SKUs and orders and go to alerts and logs). */
void eng_why_fmt(char why[ENG_REASON_MAX + 1], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The name of line line_no of an order (see ENG_KEY_MAX; out:
 * ENG_KEY_MAX + 1 bytes): what its purchase is called upstream. Not an
 * order_id the engine's calls take: a part is named by order_id and
 * line_no (engine_part_get, engine_part_sku). */
void eng_part_key(const char *order_id, int32_t line_no, char *out);
/* True when the engine holds an entry for sku: loaded, or being created by
 * a queued or in-flight sku.put. False: the SKU is unknown here or "cold"
 * (in MariaDB, not loaded); only then may the caller engine_load_sku() it
 * at runtime. */
bool engine_knows_sku(const engine *e, const char *sku);
/* The committed supplier mapping of a loaded SKU; false when the SKU is not
 * loaded or its committed mapping is not ENG_MAP_OK. */
bool engine_sku_supplier(const engine *e, const char *sku, eng_supplier_map *out);

/* Drops a SKU and all its orders from memory (sharding: another instance
 * owns it now, or its epoch fence failed and it must be taken over again).
 * Ops waiting in its FIFO are answered with queued_err through done().
 * Returns false, changing nothing, while the SKU is in a batch: try again
 * after the batch ends. True when gone (or never here). */
bool engine_forget_sku(engine *e, const char *sku, eng_err queued_err);
/* True when order_id is in memory in any state, a queued reserve's
 * placeholder included; copies its SKU into sku_out (ENG_ID_MAX + 1 bytes)
 * unless NULL. */
bool engine_order_sku(const engine *e, const char *order_id, char *sku_out);
/* The same for part line_no of order_id (see "Parts"). */
bool engine_part_sku(const engine *e, const char *order_id, int32_t line_no, char *sku_out);
/* Calls fn for every SKU in memory; fn must not change the engine. */
void engine_each_sku(const engine *e, void (*fn)(const char *sku, void *arg), void *arg);

/* Queues up to expire_per_tick_max internal expire ops for holds whose
 * hold_expires_at <= now_ms. Returns how many were queued. */
uint32_t engine_expire_due(engine *e, int64_t now_ms);
/* Milliseconds until the earliest hold expires, or -1 when none. */
int64_t engine_next_expiry_ms(const engine *e, int64_t now_ms);
/* A part whose hold lapsed is not expired by engine_expire_due(): it is
 * handed here, at most once per lapse (again after a restart or reload).
 * Returns true with *out (order_id, line_no, part_lines) while one is due
 * by now_ms. The caller must settle it (confirm + decided, or release +
 * as_expired) or call engine_part_retry() to be handed it again after
 * retry_ms (e.g. MariaDB down). */
typedef struct eng_part_ref {
    char order_id[ENG_ID_MAX + 1];
    int32_t line_no;
    int32_t part_lines;
} eng_part_ref;
bool engine_part_due(engine *e, int64_t now_ms, eng_part_ref *out);
void engine_part_retry(engine *e, const eng_part_ref *p, int64_t at_ms);

/* ---- supplier sync ----
 * Queues an internal op carrying what a sync saw of a mapped SKU, decided
 * in the SKU's arrival order like any change (memory owned by the engine;
 * bypasses the queue limits, like expiries; coalesced: at most one waits
 * per SKU and a newer observation replaces it, except that a waiting
 * "broken" is never replaced by a figure). When decided it changes nothing
 * if the SKU is gone or its mapping is not ENG_MAP_OK, or (expect not
 * NULL) its mapping is no longer *expect (sku.put re-mapped it while the
 * answer was on its way; compared without cap and fingerprint). Otherwise:
 *  - broken != "" : the mapping becomes ENG_MAP_BROKEN (sellable 0 at once),
 *    an alert row "mapping_broken" with that reason;
 *  - else fingerprint != 0 and the mapping has none: adopted;
 *    fingerprint != 0 and differs: BROKEN with reason "fingerprint changed";
 *  - else, unless synced_at_ms is older than the SKU's synced_at (older
 *    news is dropped), supplier_reported := reported, synced_at := synced_at_ms (a ledger
 *    row "sync" when the figure changed), and every purchased (or shipped)
 *    order of the SKU not yet settled whose purchased_at + upstream_lag_ms
 *    <= synced_at_ms is settled: its from_supplier leaves supplier_reserved
 *    (ledger row "settle"), at most ENG_SETTLE_PER_REPORT per report.
 * synced_at_ms must be when the snapshot was asked for (not answered): a
 * figure is never credited with a purchase it cannot reflect.
 * Returns false when the SKU is not in memory or out of memory: nothing
 * queued. */
#define ENG_SETTLE_PER_REPORT 64

typedef struct eng_supplier_obs {
    int64_t reported;             /* 0..ENG_STOCK_MAX */
    int64_t synced_at_ms;
    uint64_t fingerprint;         /* 0: not computed */
    char broken[ENG_REASON_MAX + 1]; /* "": the link is fine */
} eng_supplier_obs;

bool engine_supplier_observe(engine *e, const char *sku, const eng_supplier_map *expect,
                             const eng_supplier_obs *obs);
/* Shorthands: a figure only (no fingerprint, not broken). */
bool engine_supplier_report(engine *e, const char *sku, int64_t reported, int64_t synced_at_ms);
bool engine_supplier_report_for(engine *e, const char *sku, const eng_supplier_map *expect,
                                int64_t reported, int64_t synced_at_ms);

/* ---- supplier trust ----
 * Suppliers are known from the mappings of loaded SKUs, from
 * engine_load_supplier() and from supplier.put. One without settings uses
 * limits.trust_default. Reads give the committed settings. */
bool engine_load_supplier(engine *e, const char *supplier_id, const eng_trust *t);
/* Fills out with the supplier's settings (limits.trust_default when it has
 * none); returns true when it has its own. */
bool engine_supplier_trust(const engine *e, const char *supplier_id, eng_trust *out);
/* Calls fn for every supplier with settings in memory. */
void engine_each_supplier(const engine *e,
                          void (*fn)(const char *supplier_id, const eng_trust *t, void *arg),
                          void *arg);

/* ---- Checks: answer only what the supplier's order check accepts ----
 * A reserve with check (or one taking supplier units of a SKU mapped to a
 * supplier whose trust has check_before_confirm) is decided as always,
 * except that when some line takes supplier units of a SKU whose mapping
 * is ENG_MAP_OK and that is to be checked (check set, or its supplier's
 * check_before_confirm), the whole order is HELD for check_hold_ms
 * (whatever hold_ms says), its lines' reason is ENG_CHECK_PENDING, no
 * purchase job is written, and op->checking is set. Orders without such
 * a line are decided exactly as without check. With check_off (the caller
 * has no supplier API), or without a check_hold_ms (a caller that cannot
 * check), such a reserve is ENG_E_CHECK_FAILED instead and holds nothing. The caller then ends the check with one of:
 *  - confirm with checked: the reason is cleared; hold_ms 0 confirms the
 *    order (purchase jobs follow), hold_ms > 0 keeps it held until
 *    created_at + hold_ms (the client's hold; ENG_E_EXPIRED, expiring it,
 *    when that has passed). Only on an order held with ENG_CHECK_PENDING,
 *    else ENG_E_INVALID_STATE;
 *  - release with as_failed and a reason: the check refused; the order
 *    ends FAILED with that reason (stock back, ledger "fail", no alert);
 *  - release with erase (no part_lines): the check could not be made; an
 *    order still held with ENG_CHECK_PENDING is erased as a part is
 *    ("Erasing": row deleted, stock back, a retry is decided anew); else
 *    ENG_E_INVALID_STATE.
 * If none of these commits, the check's hold lapses (expired). */
#define ENG_CHECK_PENDING "supplier check pending"

/* ---- purchase jobs (the transactional outbox) ----
 * An order that becomes CONFIRMED with from_supplier > 0 writes a job row
 * (state "pending") in the same batch. After the commit (or when such an
 * order is loaded from the store) it is a pending purchase. The worker
 * claims pending purchases one at a time:
 *   engine_purchase_claim() -> true: *out describes the oldest unclaimed
 *       committed pending purchase, which is now claimed (no other claim
 *       returns it). false: none.
 * and ends each claim by submitting ENG_OP_PURCHASED or
 * ENG_OP_PURCHASE_FAILED (order_id, on_done set), or by
 * engine_purchase_unclaim() (it gives up for now: claimable again).
 * ENG_OP_PURCHASED on a CONFIRMED order: status PURCHASED,
 * upstream_order_id, purchased_at = now; the job row becomes "done"; the
 * supplier's trust rises by trust_step. On an order that left CONFIRMED
 * meanwhile (released by its gateway): the status stays, upstream_order_id
 * is recorded and an alert "purchase_after_release" asks support to cancel
 * upstream. ENG_OP_PURCHASE_FAILED on a CONFIRMED order: status FAILED with
 * reason, all its stock returned (ledger "fail"), the job row "failed", an
 * alert "purchase_failed"; then by fail_kind (STOCK: supplier_reported := 0
 * and the trust cut; LINK: mapping BROKEN). The order's other lines held
 * or confirmed end failed in the same batch (their jobs "cancelled"): every
 * line of a whole order; for a part, every other part of the order held in
 * this engine (the op waits on their SKUs' FIFOs too). On any other status it changes
 * nothing (ENG_E_INVALID_STATE). Orders dropped from memory
 * (engine_forget_sku) lose their claim silently: the worker's op then
 * gets ENG_E_NOT_FOUND. */
typedef struct eng_purchase {
    char order_id[ENG_ID_MAX + 1];
    int32_t line_no;              /* the line bought (0 for a single-SKU order); the
                                   * upstream outOrderId is order_id for line 0, else
                                   * "<order_id>#<line_no>"; outcome ops carry it */
    int32_t part_lines;           /* > 1 when the line is a part (the outcome op carries it) */
    char sku[ENG_ID_MAX + 1];
    int32_t qty;                  /* from_supplier */
    bool mapped;                  /* the SKU's committed mapping is OK: map valid */
    eng_supplier_map map;
    bool recovered;               /* loaded from the store, not confirmed by this
                                   * process: a create may already have been sent */
} eng_purchase;

bool engine_purchase_claim(engine *e, eng_purchase *out);
/* Gives back the claim p (as engine_purchase_claim() filled it): only that
 * line, never the order's other lines (their jobs may be running). */
void engine_purchase_unclaim(engine *e, const eng_purchase *p);
/* Pending purchases not claimed / claimed now. */
void engine_purchase_counts(const engine *e, uint32_t *unclaimed, uint32_t *claimed);

/* ---- batches ----
 * Decides queued ops of ready SKUs into a new batch. Returns NULL when no
 * SKU is ready. A returned batch with eng_batch_is_empty() wrote nothing and
 * may be completed with ENG_COMMITTED at once, without the store. */
eng_batch *engine_next_batch(engine *e, int64_t now_ms);
bool engine_has_ready(const engine *e);

typedef enum eng_outcome {
    ENG_COMMITTED = 0,
    ENG_ABORTED,          /* known not committed */
    ENG_UNKNOWN,          /* may have committed: resolve later */
} eng_outcome;

/* Reports how the batch's transaction ended and answers its ops. After
 * ENG_COMMITTED / ENG_ABORTED the batch is freed. After ENG_UNKNOWN it stays
 * until engine_batch_resolve(). */
void engine_batch_done(engine *e, eng_batch *b, eng_outcome outcome);
/* Settles an UNKNOWN batch once the store knows: committed true re-applies
 * its decisions as committed state, false keeps the restored state. Frees
 * the batch and unblocks its SKUs. */
void engine_batch_resolve(engine *e, eng_batch *b, bool committed);

/* Answers every queued op with err (shutdown). */
void engine_cancel_all(engine *e, eng_err err);

void engine_stats_get(const engine *e, eng_stats *out);

/* ---- batch contents, for the store ----
 * Valid from engine_next_batch() until the batch is freed. The rows are
 * the state after the batch (absolute counters, full order records) plus
 * the ledger of movements. */
typedef struct eng_sku_row {
    const char *sku;
    bool insert;                  /* new SKU: INSERT, else fenced UPDATE */
    eng_counters c;
    eng_mapping mapping;
    const eng_supplier_map *map;  /* NULL unless mapping is ENG_MAP_OK or ENG_MAP_BROKEN */
    int64_t epoch;                /* fence: UPDATE ... WHERE epoch = this */
} eng_sku_row;

typedef struct eng_order_row {
    bool insert;                  /* new order: INSERT, else UPDATE */
    bool erase;                   /* the row goes (a part erased, "Erasing"): DELETE it;
                                   * with insert (placed and erased in one batch) nothing */
    bool notify;                  /* the order's status (whole order, or the part) became
                                   * purchased, failed or expired in this batch:
                                   * order.subscribe listeners hear of it. Set on one row
                                   * per order per batch; tell them after
                                   * engine_batch_done() from engine_order_get() /
                                   * engine_part_get(), so a cart is told whole. */
    eng_order_view o;
} eng_order_row;

/* Purchase outbox rows: insert (state "pending", map = the SKU's mapping
 * at confirm) or update of state to "done" / "failed" / "cancelled". */
typedef enum eng_job_state {
    ENG_JOB_PENDING = 0,
    ENG_JOB_DONE,                 /* bought upstream */
    ENG_JOB_FAILED,               /* the order failed and was rolled back */
    ENG_JOB_CANCELLED,            /* the gateway released the order before the purchase */
    ENG_JOB_COUNT_
} eng_job_state;
typedef struct eng_job_row {
    bool insert;
    const char *order_id;
    int32_t line_no;              /* jobs are per line: key (order_id, line_no) */
    const char *sku;
    int32_t qty;
    eng_supplier_map map;         /* insert only */
    eng_job_state state;
    int64_t at_ms;
} eng_job_row;

/* Support alerts, written in the batch that decided them (none lost). */
typedef struct eng_alert_row {
    const char *kind;             /* "purchase_failed", "mapping_broken", "purchase_after_release" */
    const char *sku;
    const char *order_id;         /* "" when none */
    const char *reason;
    int64_t at_ms;
} eng_alert_row;

/* A supplier whose trust settings changed in the batch: upsert. */
typedef struct eng_supplier_row {
    const char *supplier_id;
    eng_trust t;
} eng_supplier_row;

typedef enum eng_move {
    ENG_MOVE_RESERVE = 0,         /* stock promised to an order */
    ENG_MOVE_RELEASE,             /* returned: release */
    ENG_MOVE_EXPIRE,              /* returned: hold lapsed */
    ENG_MOVE_SHIP,                /* own units left the warehouse */
    ENG_MOVE_ADJUST,              /* own_on_hand moved by admin */
    ENG_MOVE_PUT,                 /* own_on_hand / supplier figure set by admin */
    ENG_MOVE_SYNC,                /* supplier_reported set by a supplier sync */
    ENG_MOVE_FAIL,                /* returned: the purchase failed for good */
    ENG_MOVE_SETTLE,              /* bought units now in the supplier's own figure */
    ENG_MOVE_COUNT_
} eng_move;

typedef struct eng_ledger_row {
    const char *sku;
    const char *order_id;         /* "" when none */
    eng_move move;
    int64_t d_own_on_hand;
    int64_t d_own_reserved;
    int64_t d_supplier_reserved;
    int64_t d_supplier_reported;
    const char *reason;           /* "" when none */
    int64_t at_ms;
} eng_ledger_row;

uint64_t eng_batch_id(const eng_batch *b);   /* unique per engine lifetime */
bool eng_batch_is_empty(const eng_batch *b);
size_t eng_batch_ops(const eng_batch *b);
size_t eng_batch_sku_rows(const eng_batch *b, const eng_sku_row **rows);
size_t eng_batch_order_rows(const eng_batch *b, const eng_order_row **rows);
size_t eng_batch_ledger_rows(const eng_batch *b, const eng_ledger_row **rows);
size_t eng_batch_job_rows(const eng_batch *b, const eng_job_row **rows);
size_t eng_batch_alert_rows(const eng_batch *b, const eng_alert_row **rows);
size_t eng_batch_supplier_rows(const eng_batch *b, const eng_supplier_row **rows);

/* Names for the wire and the store. */
const char *eng_err_code(eng_err err);          /* "insufficient", ... */
bool eng_err_retryable(eng_err err);
const char *eng_status_name(eng_status st);     /* "held", ... */
bool eng_status_parse(const char *s, eng_status *out);
const char *eng_mapping_name(eng_mapping m);
bool eng_mapping_parse(const char *s, eng_mapping *out);
const char *eng_move_name(eng_move m);
const char *eng_op_name(eng_op_kind k);
const char *eng_job_state_name(eng_job_state st);
const char *eng_fail_kind_name(eng_fail_kind k);
int64_t eng_available(const eng_counters *c);
/* min(floor(reported x factor), cap (< 0: none)), 0 when factor is 0. */
int64_t eng_sellable(int64_t reported, double factor, int64_t cap);
double eng_trust_effective(const eng_trust *t);
bool eng_trust_valid(const eng_trust *t);

#endif
