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
    ENG_OP_COUNT_
} eng_op_kind;

typedef enum eng_mapping {
    ENG_MAP_NONE = 0,     /* no supplier stock */
    ENG_MAP_MANUAL,       /* supplier_reported set by hand (no API access) */
    ENG_MAP_OK,           /* mapped to a 1688 offer/spec */
    ENG_MAP_COUNT_
} eng_mapping;

/* Counters of one SKU (DESIGN.md §2). All values are >= 0. */
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
} eng_supplier_map;

/* What readers see of a SKU: the committed state. */
typedef struct eng_stock_view {
    char sku[ENG_ID_MAX + 1];
    int64_t available;
    eng_counters c;
    eng_mapping mapping;
} eng_stock_view;

/* What readers see of an order: the committed record. */
typedef struct eng_order_view {
    char order_id[ENG_ID_MAX + 1];
    char sku[ENG_ID_MAX + 1];
    int32_t qty;
    eng_status status;
    int32_t from_own;
    int32_t from_supplier;
    int64_t available;            /* SKU availability right after the op */
    int64_t created_at_ms;
    int64_t updated_at_ms;
    int64_t hold_expires_at_ms;   /* 0: none */
    char upstream_order_id[ENG_ID_MAX + 1];  /* "": none */
    char reason[ENG_REASON_MAX + 1];         /* "": none */
} eng_order_view;

typedef struct eng_sku eng_sku;
typedef struct eng_order eng_order;
typedef struct eng_batch eng_batch;

/* One request. The caller fills the "in" part, owns the memory and keeps it
 * alive from a successful engine_submit() until done() is called for it. */
typedef struct eng_op {
    /* in */
    eng_op_kind kind;
    char order_id[ENG_ID_MAX + 1];
    char sku[ENG_ID_MAX + 1];
    int32_t qty;                  /* reserve */
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
    void *ctx;                    /* the caller's; untouched by the engine */

    /* out: valid in done() and for errors returned by engine_submit() */
    eng_err err;
    bool outcome_unknown;         /* with ENG_E_UNAVAILABLE */
    int64_t err_available;        /* with ENG_E_INSUFFICIENT */
    eng_status err_status;        /* with ENG_E_INVALID_STATE */
    eng_order_view order;         /* order ops, on success */
    eng_stock_view stock;         /* sku.put / adjust, on success */

    /* engine-private */
    struct eng_op *next, *prev;   /* SKU FIFO, then batch list */
    eng_sku *sku_p;
    int state_;
} eng_op;

typedef void (*eng_done_fn)(eng_op *op, void *arg);

typedef struct eng_limits {
    uint32_t queue_per_sku_max;   /* ops waiting on one SKU */
    uint32_t queue_total_max;     /* ops waiting on all SKUs */
    uint32_t batch_ops_max;       /* ops decided into one batch */
    uint32_t batch_sku_ops_max;   /* ops of one SKU in one batch */
    uint32_t expire_per_tick_max; /* holds expired per engine_expire_due() */
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
 * be called for a SKU in an in-flight batch. Return false on bad data or out
 * of memory. */
bool engine_load_sku(engine *e, const char *sku, const eng_counters *c,
                     eng_mapping mapping, const eng_supplier_map *map,
                     int64_t epoch);
bool engine_load_order(engine *e, const eng_order_view *o);

/* ---- operations ----
 * engine_submit validates what needs state (unknown sku, unknown order,
 * conflict, full queues) and queues the op. now_ms is the caller's clock.
 * Syntax (lengths, ranges) is the caller's job and asserted here. */
eng_err engine_submit(engine *e, eng_op *op, int64_t now_ms);
bool engine_cancel(engine *e, eng_op *op);

/* Reads of committed state. Return false when unknown. */
bool engine_stock_get(const engine *e, const char *sku, eng_stock_view *out);
bool engine_order_get(const engine *e, const char *order_id, eng_order_view *out);
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
/* Calls fn for every SKU in memory; fn must not change the engine. */
void engine_each_sku(const engine *e, void (*fn)(const char *sku, void *arg), void *arg);

/* Queues up to expire_per_tick_max internal expire ops for holds whose
 * hold_expires_at <= now_ms. Returns how many were queued. */
uint32_t engine_expire_due(engine *e, int64_t now_ms);
/* Milliseconds until the earliest hold expires, or -1 when none. */
int64_t engine_next_expiry_ms(const engine *e, int64_t now_ms);

/* ---- supplier sync ----
 * Queues an internal op that sets the SKU's supplier_reported to reported
 * (0..ENG_STOCK_MAX) and supplier_synced_at to synced_at_ms, decided in the
 * SKU's arrival order like any change (memory owned by the engine; bypasses
 * the queue limits, like expiries). When decided it changes nothing if the
 * SKU is gone or its mapping is not ENG_MAP_OK, or (expect not NULL) its
 * mapping is no longer *expect (sku.put re-mapped it while the answer was
 * on its way). A change writes a ledger row with move "sync". Returns false
 * when the SKU is not in memory or out of memory: nothing queued. */
bool engine_supplier_report(engine *e, const char *sku, int64_t reported, int64_t synced_at_ms);
bool engine_supplier_report_for(engine *e, const char *sku, const eng_supplier_map *expect,
                                int64_t reported, int64_t synced_at_ms);

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
    const eng_supplier_map *map;  /* NULL when mapping is not ENG_MAP_OK */
    int64_t epoch;                /* fence: UPDATE ... WHERE epoch = this */
} eng_sku_row;

typedef struct eng_order_row {
    bool insert;                  /* new order: INSERT, else UPDATE */
    eng_order_view o;
} eng_order_row;

typedef enum eng_move {
    ENG_MOVE_RESERVE = 0,         /* stock promised to an order */
    ENG_MOVE_RELEASE,             /* returned: release */
    ENG_MOVE_EXPIRE,              /* returned: hold lapsed */
    ENG_MOVE_SHIP,                /* own units left the warehouse */
    ENG_MOVE_ADJUST,              /* own_on_hand moved by admin */
    ENG_MOVE_PUT,                 /* own_on_hand / supplier figure set by admin */
    ENG_MOVE_SYNC,                /* supplier_reported set by a supplier sync */
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

/* Names for the wire and the store. */
const char *eng_err_code(eng_err err);          /* "insufficient", ... */
bool eng_err_retryable(eng_err err);
const char *eng_status_name(eng_status st);     /* "held", ... */
bool eng_status_parse(const char *s, eng_status *out);
const char *eng_mapping_name(eng_mapping m);
bool eng_mapping_parse(const char *s, eng_mapping *out);
const char *eng_move_name(eng_move m);
const char *eng_op_name(eng_op_kind k);
int64_t eng_available(const eng_counters *c);

#endif
