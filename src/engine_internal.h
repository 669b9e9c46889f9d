/* engine_internal.h — the engine's private state (its structs) and the
 * functions its files share: engine.c (state, lifecycle), engine_names.c,
 * engine_load.c, engine_submit.c, engine_decide.c, engine_batch.c,
 * engine_read.c. engine.h is the contract; nothing outside src/engine*.c
 * includes this file. */
#ifndef STOCKD_ENGINE_INTERNAL_H
#define STOCKD_ENGINE_INTERNAL_H

#include "stockd/engine.h"
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

/* Rows of one kind (orders, ledger, jobs, alerts) one op may add per line
 * of its order, beyond a supplier report's settlements. */
#define OP_ROWS_MAX 4
#define OP_ROWS_ALL (OP_ROWS_MAX * ENG_LINES_MAX)
#define FOR_LINES(h, l) for (eng_order *l = (h); l != NULL; l = l->line_next)

/* A part the coordinator released before its reserve arrived (the reply
 * was lost or late): the order is decided ABORT, so a reserve of that part
 * arriving later must hold nothing. Kept in memory for ENG_TOMB_MS, at
 * most ENG_TOMBS_MAX (oldest evicted); after a restart the hold TTL is the
 * backstop again. */
#define ENG_TOMBS_MAX 65536
#define ENG_TOMB_MS 600000


enum op_state { OP_IDLE = 0, OP_QUEUED, OP_BATCHED, OP_PARKED };

struct eng_sku {
    char name[ENG_ID_MAX + 1];
    bool exists;                  /* has a row (working state) */
    bool on_ready;
    eng_mapping mapping;
    eng_counters c;               /* working counters */
    int64_t epoch;
    eng_supplier_map *map;        /* heap; only when mapping == ENG_MAP_OK */
    struct sku_write *inflight;   /* its write in the batch holding it */
    eng_op *q_head, *q_tail;
    uint32_t q_len;
    eng_op *report_q;             /* its newest queued supplier report, if any: at most
                                   * one per run of reports with nothing between */
    bool global;                  /* the engine's FIFO for ops without a SKU */
    eng_sku *ready_next;
    eng_order *orders;            /* every order of this SKU (sku_next list) */
    bool aside;                   /* set aside at load (engine.h): no counters, no orders */
    bool audit;                   /* loaded since the last engine_audit_loaded() */
    char *aside_why;              /* heap, with aside */
    int64_t frozen_own;           /* units held by orders set aside (engine.h) */
    int64_t frozen_sup;
    eng_order *dec;               /* parts that may be deciding ("Waiting"; pruned when read) */
    eng_op *pk_head, *pk_tail;    /* parts' reserves waiting for deciding parts, in order */
    uint32_t pk_len;
    bool pk_listed;               /* on the engine's list of SKUs with waiting reserves */
    eng_sku *pk_next;
    UT_hash_handle hh;
};

/* An order is one eng_order per line. The first line (the head) is the one
 * in the hash; a whole order of several lines chains its other lines from
 * the head (line_next), each linked into its own SKU's order list. A part
 * (line of a cross-shard order) is a head of its own, keyed
 * "<order_id>#<line_no>" (line_no >= 1). Order-wide fields (status, hold,
 * times, reason) are kept on every line and move together. */
struct eng_order {
    char id[ENG_KEY_MAX + 1];     /* order_id, NUL-terminated; a part's key goes on
                                   * after the NUL: "<order_id>\0#<line_no>" */
    uint8_t key_len;              /* of the hash key in id */
    eng_status status;            /* working state; NONE = placeholder */
    int32_t qty, from_own, from_supplier;
    int32_t line_no, n_lines;
    bool part;                    /* a line of a cross-shard order, alone here */
    bool part_listed;             /* on the engine's due-parts list */
    bool ghost;                   /* a part erased (committed): kept only because heap
                                   * entries may still point here; reads miss it */
    bool on_dec;                  /* on its SKU's dec list */
    uint64_t attempt;             /* a part: the coordination that placed or took it over */
    eng_order *dec_next, *dec_prev;
    eng_order *head;              /* the order's head (itself for a head) */
    eng_order *line_next;         /* head: its next line; ... */
    eng_order *due_next;          /* due-parts list */
    uint64_t notify_mark;         /* head: batch id + 1 that set a notify row */
    uint32_t pending;             /* reserve ops queued or batched for it */
    eng_sku *sku;
    int64_t available, created_at_ms, updated_at_ms, hold_expires_at_ms;
    char *upstream_order_id;      /* heap, NULL when none */
    char *reason;                 /* heap, NULL when none */
    int64_t purchased_at_ms;
    bool supplier_settled;
    bool in_purchases;            /* on the engine's pending-purchase list */
    bool claimed;                 /* taken by the purchase worker */
    bool recovered;               /* pending since it was loaded from the store */
    eng_order *pp_next, *pp_prev; /* pending-purchase list */
    struct order_write *inflight;
    eng_order *sku_next, *sku_prev; /* the SKU's order list */
    eng_order *fin_next, *fin_prev; /* head: the engine's final-orders list */
    bool on_fin;
    uint16_t heap_refs;           /* head: expiry heap entries naming it */
    UT_hash_handle hh;
};

struct sku_write {
    eng_sku *sku;
    bool dirty;                   /* written by the batch (else only blocked) */
    uint32_t taken;               /* its ops decided in the batch */
    bool before_exists;
    eng_mapping before_mapping;
    eng_counters before;
    eng_supplier_map before_map;
};

struct order_write {
    eng_order *o;
    bool head;                    /* o heads its order (read before any is freed) */
    eng_order_view before;        /* status NONE: created by this batch */
};

/* A supplier's trust settings. Created on first use and kept until
 * engine_free (so pointers to it stay valid). */
typedef struct eng_supp {
    char id[ENG_ID_MAX + 1];
    eng_trust t;
    uint64_t last_batch;          /* id + 1 of the last batch that changed it; 0 none */
    UT_hash_handle hh;
} eng_supp;

struct sup_write {
    eng_supp *p;
    eng_trust before;
};

/* An order set aside at load (engine.h): its key, the SKU and the reason. */
struct aside_ord {
    char key[ENG_KEY_MAX + 1];
    uint8_t key_len;
    char sku[ENG_ID_MAX + 1];
    char why[ENG_REASON_MAX + 1];
    UT_hash_handle hh;
};

/* A set-aside alert waiting for a batch; the batch keeps its copy until it
 * is committed (an aborted batch gives them back). */
struct aside_alert {
    char sku[ENG_ID_MAX + 1];
    char order_id[ENG_ID_MAX + 1];
    char why[ENG_REASON_MAX + 1];
};

enum batch_state { B_FREE = 0, B_FLIGHT, B_UNKNOWN };

struct eng_batch {
    uint64_t id;
    int64_t now_ms;
    enum batch_state state;
    eng_op *ops_head, *ops_tail;
    size_t n_ops;
    size_t cap;
    size_t sw_cap;                /* cap + ENG_LINES_MAX: an order takes a SKU per line */
    struct sku_write *sw;
    eng_sku_row *sku_rows;
    size_t n_sw;
    size_t n_sku_rows;
    struct order_write *ow;
    eng_order_row *order_rows;
    size_t n_ow;
    eng_ledger_row *ledger;
    size_t n_ledger;
    size_t rows_cap;              /* of order_rows/ow/ledger/jobs/alerts */
    eng_job_row *jobs;
    size_t n_jobs;
    eng_alert_row *alerts;
    char (*alert_text)[ENG_REASON_MAX + 1]; /* alerts[i].reason: outlives the ops */
    size_t n_alerts;
    struct sup_write *supw;
    eng_supplier_row *sup_rows;
    size_t n_supw;
    struct aside_alert *bal;      /* ENG_ASIDE_ALERTS_PER_BATCH set-aside alerts */
    size_t n_bal;
    eng_batch *next_free;
};

struct heap_item {
    int64_t at_ms;
    eng_order *o;
};

struct engine {
    eng_limits lim;
    eng_done_fn done;
    void *done_arg;
    eng_sku *skus;                /* uthash by name */
    eng_order *orders;            /* uthash by id */
    eng_sku *ready_head, *ready_tail;
    eng_batch *free_batches;
    uint64_t next_batch_id;
    struct heap_item *heap;       /* min-heap of committed holds */
    eng_order *fin_head, *fin_tail; /* final orders, in the order they became final */
    size_t heap_len, heap_cap;
    eng_op *free_ops;             /* internal expire ops */
    eng_supp *supps;              /* uthash by id */
    eng_sku global;               /* FIFO of ops without a SKU (supplier.put) */
    eng_order *pp_head, *pp_tail; /* committed pending purchases, oldest first */
    uint32_t pp_claimed;
    eng_order *due_head, *due_tail; /* parts whose hold lapsed, for the caller */
    eng_sku *pk_skus;             /* SKUs with waiting reserves (pruned when read) */
    bool parts_mode;
    struct tomb *tombs;           /* uthash: parts released before they were placed */
    struct tomb **tomb_ring;      /* oldest first, ENG_TOMBS_MAX slots, evicted in turn */
    size_t tomb_next, n_tombs;
    struct aside_ord *aside_orders; /* uthash by key */
    size_t n_aside;               /* SKUs and orders set aside */
    struct aside_alert *pal;      /* ENG_ASIDE_ALERTS_MAX slots, oldest first */
    size_t pal_len;
    eng_stats st;
};

struct tomb {
    char key[ENG_KEY_MAX + 1];
    uint8_t key_len;
    int64_t until_ms;
    UT_hash_handle hh;
};

/* An order's hash key: the order_id, and for part k >= 1 "\0#k" after it,
 * so the key's first string is always the order_id (rows, ledger, alerts). */
typedef struct okey {
    char b[ENG_KEY_MAX + 1];
    size_t len;
} okey;

/* Shared between the files of the module (defined where their job is). */
void ei_op_done(engine *e, eng_op *op);
bool ei_op_internal(const eng_op *op);
void ei_counters_check(const eng_counters *c);
void ei_copy_id(char *dst, const char *src);
void ei_make_key(const char *order_id, int32_t line_no, bool part, okey *k);
void ei_op_key(const eng_op *op, okey *k);
void ei_utf8_copy_cut(char *dst, const char *src, size_t cap);
char *ei_dup_or_null(const char *s);
void ei_set_str(char **field, const char *s);
eng_supp *ei_supp_find(const engine *e, const char *id);
eng_supp *ei_supp_get(engine *e, const char *id);
const eng_trust *ei_supp_trust(const engine *e, const char *id);
void ei_sku_recompute_sellable(const engine *e, eng_sku *s);
void ei_order_to_view(const eng_order *o, eng_order_view *v);
void ei_line_committed(const eng_order *o, eng_order_view *v);
void ei_view_to_line(const eng_order_view *v, eng_line_view *l);
void ei_order_whole_view(const eng_order *h, bool committed, eng_order_view *out);
void ei_order_from_view(eng_order *o, const eng_order_view *v);
bool ei_purchase_due(const eng_order *o);
void ei_pp_sync(engine *e, eng_order *o, bool recovered);
void ei_order_free(engine *e, eng_order *h);
eng_order *ei_order_new(engine *e, const okey *key, eng_sku *s, int32_t qty);
eng_order *ei_order_add_line(eng_order *h, eng_sku *s, int32_t qty, int32_t line_no);
eng_order *ei_order_line(eng_order *h, int32_t line_no);
bool ei_order_inflight(const eng_order *h);
eng_sku *ei_sku_find(const engine *e, const char *name);
eng_order *ei_order_find(const engine *e, const okey *k);
eng_order *ei_order_find_id(const engine *e, const char *order_id);
eng_sku *ei_sku_new(engine *e, const char *name);
void ei_ready_push(engine *e, eng_sku *s);
eng_sku *ei_ready_pop(engine *e);
void ei_fifo_push(engine *e, eng_sku *s, eng_op *op);
void ei_fifo_unlink(engine *e, eng_op *op);
void ei_dec_link(eng_order *o);
bool ei_part_deciding(const eng_order *o);
bool ei_short_for_deciding(eng_sku *s, int32_t qty);
void ei_park(engine *e, eng_sku *s, eng_op *op);
void ei_park_unlink(engine *e, eng_op *op);
void ei_unpark_all(engine *e, eng_sku *s);
bool ei_park_due(engine *e, int64_t now_ms);
bool ei_heap_push(engine *e, int64_t at_ms, eng_order *o);
/* Drops heap entry i (the heap is rebuilt by the caller). */
void ei_heap_drop(engine *e, size_t i);
/* The units a stored line holds in its SKU's counters. */
void ei_line_holds(eng_status st, int32_t from_own, int32_t from_supplier, bool settled,
                   int64_t *own, int64_t *sup);
/* Puts h on the final-orders list when it is final, takes it off when not. */
void ei_fin_sync(engine *e, eng_order *h);
void ei_heap_pop(engine *e);
void ei_heap_rebuild(engine *e);
void ei_batch_free_mem(eng_batch *b);
void ei_stock_view(const engine *e, const eng_sku *s, const eng_counters *c, eng_mapping m,
                       const eng_supplier_map *map, eng_stock_view *out);
void ei_sku_clear(engine *e, eng_sku *s, eng_err queued_err, const char *aside_why,
                      size_t *orders_out);
eng_op *ei_internal_op_new(engine *e);
void ei_internal_op_free(engine *e, eng_op *op);
bool ei_order_is_cart(const eng_order *h);
eng_order *ei_order_of_op(const engine *e, const eng_op *op);
eng_order *ei_line_find(const engine *e, const char *order_id, int32_t line_no, bool part);
eng_order *ei_line_of_op(const engine *e, const eng_op *op);
eng_err ei_queue_on_order(engine *e, eng_op *op, eng_order *h, bool limits);
int32_t ei_op_line_index(const eng_op *op, const eng_order *l);
bool ei_cart_matches(const eng_order *h, const eng_cart *c);
void ei_order_maybe_drop(engine *e, eng_order *o);
struct sku_write *ei_take_sku(eng_batch *b, eng_sku *s);
bool ei_batch_full(const eng_batch *b);
void ei_alert_add_named(eng_batch *b, const char *kind, const char *sku,
                            const char *order_id, const char *reason);
eng_status ei_order_status_working(const eng_order *h);
bool ei_decide(engine *e, eng_batch *b, eng_op *op);
void ei_batch_seal(eng_batch *b);
bool ei_in_batch(const eng_batch *b, const eng_sku *s);
void ei_batch_restore(engine *e, eng_batch *b);
void ei_answer_queued(engine *e, eng_op *first, eng_err err, bool reheap);

#endif
