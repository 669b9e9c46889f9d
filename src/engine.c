/* engine.c — per-SKU FIFOs, in-memory decisions, batches with undo.
 *
 * Invariants (checked by engine_check() in the unit tests and by asserts):
 * - a SKU is in at most one batch (sku->inflight != NULL) until that batch
 *   is committed, aborted or resolved; only then are its next ops decided;
 * - outside a batch, a SKU's counters are its committed counters;
 * - every counter stays within 0..ENG_STOCK_MAX and own_reserved <=
 *   own_on_hand;
 * - an order with status ENG_ST_NONE is a placeholder for queued reserves
 *   (pending > 0) or for an order created by an in-flight batch.
 */
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
    eng_op *report_q;             /* its queued supplier report, if any: at most one */
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

/* A part the coordinator released before its reserve arrived (the reply
 * was lost or late): the order is decided ABORT, so a reserve of that part
 * arriving later must hold nothing. Kept in memory for ENG_TOMB_MS, at
 * most ENG_TOMBS_MAX (oldest evicted); after a restart the hold TTL is the
 * backstop again. */
#define ENG_TOMBS_MAX 65536
#define ENG_TOMB_MS 600000

struct tomb {
    char key[ENG_KEY_MAX + 1];
    uint8_t key_len;
    int64_t until_ms;
    UT_hash_handle hh;
};

/* ------------------------------------------------------------ names */

static const char *const err_codes[ENG_E_COUNT_] = {
    "ok", "invalid", "unknown_sku", "insufficient", "conflict", "not_found",
    "invalid_state", "expired", "busy", "deadline", "unavailable", "internal",
};
static const char *const status_names[ENG_ST_COUNT_] = {
    "none", "held", "confirmed", "purchased", "shipped", "released", "expired", "failed",
};
static const char *const mapping_names[ENG_MAP_COUNT_] = {"none", "manual", "ok", "broken"};
static const char *const move_names[ENG_MOVE_COUNT_] = {
    "reserve", "release", "expire", "ship", "adjust", "put", "sync", "fail", "settle",
};
static const char *const op_names[ENG_OP_COUNT_] = {
    "reserve", "confirm", "release", "ship", "expire", "sku.put", "stock.adjust",
    "supplier.report", "purchased", "purchase.failed", "supplier.put",
};
static const char *const job_state_names[ENG_JOB_COUNT_] = {"pending", "done", "failed",
                                                            "cancelled"};
static const char *const fail_kind_names[ENG_FAIL_COUNT_] = {"other", "stock", "link"};

/* Answers a caller-owned op through its own callback, or the engine's. */
static void op_done(engine *e, eng_op *op)
{
    if (op->on_done != NULL)
        op->on_done(op, op->on_done_arg);
    else
        e->done(op, e->done_arg);
}

/* Ops the engine queues itself: owned by the engine, never passed to done(). */
static bool op_internal(const eng_op *op)
{
    return op->kind == ENG_OP_EXPIRE || op->kind == ENG_OP_SUPPLIER_REPORT ||
           op->tk_parent != NULL;
}

const char *eng_err_code(eng_err err)
{
    assert(err >= 0 && err < ENG_E_COUNT_);
    return err_codes[err];
}

bool eng_err_retryable(eng_err err)
{
    return err == ENG_E_BUSY || err == ENG_E_UNAVAILABLE || err == ENG_E_DEADLINE;
}

const char *eng_status_name(eng_status st)
{
    assert(st >= 0 && st < ENG_ST_COUNT_);
    return status_names[st];
}

/* Index of s in names[from..n), or -1. */
static int name_index(const char *const *names, int from, int n, const char *s)
{
    for (int i = from; i < n; i++) {
        if (strcmp(s, names[i]) == 0)
            return i;
    }
    return -1;
}

bool eng_status_parse(const char *s, eng_status *out)
{
    int i = name_index(status_names, ENG_ST_HELD, ENG_ST_COUNT_, s);  /* "none" is not stored */
    if (i < 0)
        return false;
    *out = (eng_status)i;
    return true;
}

const char *eng_mapping_name(eng_mapping m)
{
    assert(m >= 0 && m < ENG_MAP_COUNT_);
    return mapping_names[m];
}

bool eng_mapping_parse(const char *s, eng_mapping *out)
{
    int i = name_index(mapping_names, 0, ENG_MAP_COUNT_, s);
    if (i < 0)
        return false;
    *out = (eng_mapping)i;
    return true;
}

const char *eng_move_name(eng_move m)
{
    assert(m >= 0 && m < ENG_MOVE_COUNT_);
    return move_names[m];
}

const char *eng_job_state_name(eng_job_state st)
{
    return (unsigned)st < ENG_JOB_COUNT_ ? job_state_names[st] : "?";
}

const char *eng_fail_kind_name(eng_fail_kind k)
{
    return (unsigned)k < ENG_FAIL_COUNT_ ? fail_kind_names[k] : "?";
}

bool eng_trust_valid(const eng_trust *t)
{
    /* Written so that NaN fails every comparison. */
    return t->ceiling >= 0.0 && t->ceiling <= 1.0 && t->trust >= 0.0 &&
           t->trust <= t->ceiling && t->event_trust >= 0.0 && t->event_trust <= t->ceiling;
}

double eng_trust_effective(const eng_trust *t)
{
    return t->event_mode ? t->event_trust : t->trust;
}

int64_t eng_sellable(int64_t reported, double factor, int64_t cap)
{
    assert(reported >= 0 && reported <= ENG_STOCK_MAX);
    if (!(factor > 0.0))
        return 0;
    /* Rounded down, and never above the figure: trust only ever discounts. */
    int64_t v = factor >= 1.0 ? reported : (int64_t)((double)reported * factor);
    if (v > reported)
        v = reported;
    if (cap >= 0 && v > cap)
        v = cap;
    return v < 0 ? 0 : v;
}

const char *eng_op_name(eng_op_kind k)
{
    assert(k >= 0 && k < ENG_OP_COUNT_);
    return op_names[k];
}

int64_t eng_available(const eng_counters *c)
{
    int64_t own = c->own_on_hand - c->own_reserved;
    int64_t sup = c->supplier_sellable - c->supplier_reserved;
    assert(own >= 0);
    return own + (sup > 0 ? sup : 0);
}

void eng_limits_default(eng_limits *l)
{
    l->queue_per_sku_max = 10000;
    l->queue_total_max = 200000;
    l->batch_ops_max = 4096;
    l->batch_sku_ops_max = 2048;
    l->expire_per_tick_max = 1000;
    l->upstream_lag_ms = 300000;
    l->trust_default = (eng_trust){.trust = 1.0, .ceiling = 1.0, .event_mode = false,
                                   .event_trust = 0.5};
    l->trust_cut = 0.5;
    l->trust_step = 0.05;
}

/* ------------------------------------------------------------ helpers */

static void counters_check(const eng_counters *c)
{
    assert(c->own_on_hand >= 0 && c->own_on_hand <= ENG_STOCK_MAX);
    assert(c->own_reserved >= 0 && c->own_reserved <= c->own_on_hand);
    assert(c->supplier_reserved >= 0);
    assert(c->supplier_reported >= 0 && c->supplier_sellable >= 0);
}

static void copy_id(char *dst, const char *src)
{
    size_t n = strlen(src);
    assert(n <= ENG_ID_MAX);
    memcpy(dst, src, n + 1);
}

void eng_part_key(const char *order_id, int32_t line_no, char *out)
{
    assert(strlen(order_id) <= ENG_ID_MAX && line_no >= 0 && line_no < ENG_LINES_MAX);
    if (line_no == 0)
        snprintf(out, ENG_KEY_MAX + 1, "%s", order_id);
    else
        snprintf(out, ENG_KEY_MAX + 1, "%s#%d", order_id, (int)line_no);
}

/* An order's hash key: the order_id, and for part k >= 1 "\0#k" after it,
 * so the key's first string is always the order_id (rows, ledger, alerts). */
typedef struct okey {
    char b[ENG_KEY_MAX + 1];
    size_t len;
} okey;

static void make_key(const char *order_id, int32_t line_no, bool part, okey *k)
{
    size_t n = strlen(order_id);
    assert(n <= ENG_ID_MAX);
    memcpy(k->b, order_id, n + 1);
    k->len = n;
    if (part && line_no > 0) {
        int w = snprintf(k->b + n + 1, sizeof(k->b) - n - 1, "#%d", (int)line_no);
        assert(w > 0 && (size_t)w < sizeof(k->b) - n - 1);
        k->len = n + 1 + (size_t)w;
    }
}

/* The key an op names its order by. */
static void op_key(const eng_op *op, okey *k)
{
    make_key(op->order_id, op->line_no, op->part_lines > 1, k);
}

eng_status eng_order_status_of(const eng_line_view *lines, size_t n)
{
    assert(n > 0);
    bool same = true, confirmed_sup = false;
    for (size_t i = 0; i < n; i++) {
        if (lines[i].status == ENG_ST_FAILED)
            return ENG_ST_FAILED;
        same = same && lines[i].status == lines[0].status;
        confirmed_sup = confirmed_sup ||
                        (lines[i].status == ENG_ST_CONFIRMED && lines[i].from_supplier > 0);
    }
    if (same)
        return lines[0].status;
    return confirmed_sup ? ENG_ST_CONFIRMED : ENG_ST_PURCHASED;
}

/* Copies src into dst (cap bytes with the NUL), cut at a UTF-8 character
 * boundary: reasons go out on the wire as msgpack str (valid UTF-8). */
static void utf8_copy_cut(char *dst, const char *src, size_t cap)
{
    assert(cap > 0);
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void eng_why_fmt(char why[ENG_REASON_MAX + 1], const char *fmt, ...)
{
    char buf[4 * ENG_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    utf8_copy_cut(why, buf, ENG_REASON_MAX + 1);
}

void eng_line_failed_reason(int32_t line_no, const char *why, char out[ENG_REASON_MAX + 1])
{
    int w = snprintf(out, ENG_REASON_MAX + 1, "line %d failed: ", (int)line_no);
    assert(w > 0 && w < ENG_REASON_MAX);
    utf8_copy_cut(out + w, why, ENG_REASON_MAX + 1 - (size_t)w);
}

static char *dup_or_null(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return NULL;
    return strdup(s);  /* NULL on OOM: the field reads as unset */
}

static void set_str(char **field, const char *s)
{
    const char *cur = *field ? *field : "";
    if (strcmp(cur, s ? s : "") == 0)
        return;
    free(*field);
    *field = dup_or_null(s);
}

static eng_supp *supp_find(const engine *e, const char *id)
{
    eng_supp *p = NULL;
    HASH_FIND_STR(e->supps, id, p);
    return p;
}

static eng_supp *supp_get(engine *e, const char *id)
{
    eng_supp *p = supp_find(e, id);
    if (p != NULL)
        return p;
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return NULL;
    copy_id(p->id, id);
    p->t = e->lim.trust_default;
    HASH_ADD_STR(e->supps, id, p);
    return p;
}

static const eng_trust *supp_trust(const engine *e, const char *id)
{
    const eng_supp *p = supp_find(e, id);
    return p != NULL ? &p->t : &e->lim.trust_default;
}

/* What stockd dares to sell of the supplier's figure (DESIGN.md §2): all of
 * a manual figure, min(floor(reported x trust), cap) of a mapped one,
 * nothing without a working mapping. Derived whenever read or decided, so
 * a trust change reaches every SKU of the supplier at once. */
static int64_t sellable_of(const engine *e, eng_mapping m, const eng_supplier_map *map,
                           int64_t reported)
{
    if (m == ENG_MAP_MANUAL)
        return reported;
    if (m != ENG_MAP_OK || map == NULL)
        return 0;
    return eng_sellable(reported, eng_trust_effective(supp_trust(e, map->supplier_id)), map->cap);
}

static void sku_recompute_sellable(const engine *e, eng_sku *s)
{
    s->c.supplier_sellable = sellable_of(e, s->mapping, s->map, s->c.supplier_reported);
}

static void order_to_view(const eng_order *o, eng_order_view *v)
{
    size_t k = strcspn(o->id, "#");
    assert(k <= ENG_ID_MAX);
    memcpy(v->order_id, o->id, k);
    v->order_id[k] = '\0';
    copy_id(v->sku, o->sku->name);
    v->qty = o->qty;
    v->line_no = o->line_no;
    v->n_lines = o->n_lines;
    v->status = o->status;
    v->from_own = o->from_own;
    v->from_supplier = o->from_supplier;
    v->available = o->available;
    v->created_at_ms = o->created_at_ms;
    v->updated_at_ms = o->updated_at_ms;
    v->hold_expires_at_ms = o->hold_expires_at_ms;
    size_t n = o->upstream_order_id ? strlen(o->upstream_order_id) : 0;
    if (n > ENG_ID_MAX)
        n = ENG_ID_MAX;
    memcpy(v->upstream_order_id, o->upstream_order_id ? o->upstream_order_id : "", n);
    v->upstream_order_id[n] = '\0';
    utf8_copy_cut(v->reason, o->reason ? o->reason : "", sizeof(v->reason));
    v->purchased_at_ms = o->purchased_at_ms;
    v->supplier_settled = o->supplier_settled;
}

/* The committed record of one line: its before-image while in a batch. */
static void line_committed(const eng_order *o, eng_order_view *v)
{
    if (o->inflight != NULL)
        *v = o->inflight->before;
    else
        order_to_view(o, v);
}

static void view_to_line(const eng_order_view *v, eng_line_view *l)
{
    l->line_no = v->line_no;
    copy_id(l->sku, v->sku);
    l->qty = v->qty;
    l->from_own = v->from_own;
    l->from_supplier = v->from_supplier;
    l->status = v->status;
    memcpy(l->upstream_order_id, v->upstream_order_id, sizeof(l->upstream_order_id));
}

/* The whole order from its lines (engine.h eng_order_view): committed
 * state, or the working state when committed is false. */
static void order_whole_view(const eng_order *h, bool committed, eng_order_view *out)
{
    eng_line_view lv[ENG_LINES_MAX];
    memset(lv, 0, sizeof(lv[0]));
    size_t n = 0;
    bool all_bought = true, all_settled = true;
    int64_t bought_at = 0;
    FOR_LINES((eng_order *)h, l) {
        eng_order_view v;
        if (committed)
            line_committed(l, &v);
        else
            order_to_view(l, &v);
        assert(n < ENG_LINES_MAX);
        view_to_line(&v, &lv[n++]);
        if (l == h) {
            *out = v;
            out->qty = out->from_own = out->from_supplier = 0;
        }
        out->qty += v.qty;
        out->from_own += v.from_own;
        out->from_supplier += v.from_supplier;
        if (v.updated_at_ms > out->updated_at_ms)
            out->updated_at_ms = v.updated_at_ms;
        if (out->reason[0] == '\0' && v.reason[0] != '\0')
            memcpy(out->reason, v.reason, sizeof(out->reason));
        if (v.from_supplier > 0) {
            all_bought = all_bought && v.purchased_at_ms > 0;
            all_settled = all_settled && v.supplier_settled;
            if (v.purchased_at_ms > bought_at)
                bought_at = v.purchased_at_ms;
        }
    }
    out->status = eng_order_status_of(lv, n);
    out->line_no = 0;
    out->purchased_at_ms = all_bought ? bought_at : 0;
    out->supplier_settled = all_bought && all_settled && bought_at > 0;
}

static void order_from_view(eng_order *o, const eng_order_view *v)
{
    o->status = v->status;
    o->qty = v->qty;
    o->from_own = v->from_own;
    o->from_supplier = v->from_supplier;
    o->available = v->available;
    o->created_at_ms = v->created_at_ms;
    o->updated_at_ms = v->updated_at_ms;
    o->hold_expires_at_ms = v->hold_expires_at_ms;
    set_str(&o->upstream_order_id, v->upstream_order_id);
    set_str(&o->reason, v->reason);
    o->purchased_at_ms = v->purchased_at_ms;
    o->supplier_settled = v->supplier_settled;
}

/* ---- pending purchases: committed CONFIRMED orders with supplier units of
 * a SKU that has a 1688 map (ok or broken; a manual figure is bought by
 * hand). Kept in step with the committed state only. */

static bool purchase_due(const eng_order *o)
{
    return o->status == ENG_ST_CONFIRMED && o->from_supplier > 0 && o->sku->map != NULL &&
           (o->sku->mapping == ENG_MAP_OK || o->sku->mapping == ENG_MAP_BROKEN);
}

static void pp_remove(engine *e, eng_order *o)
{
    if (!o->in_purchases)
        return;
    if (o->pp_prev)
        o->pp_prev->pp_next = o->pp_next;
    else
        e->pp_head = o->pp_next;
    if (o->pp_next)
        o->pp_next->pp_prev = o->pp_prev;
    else
        e->pp_tail = o->pp_prev;
    o->pp_next = o->pp_prev = NULL;
    o->in_purchases = false;
    if (o->claimed) {
        assert(e->pp_claimed > 0);
        e->pp_claimed--;
    }
    o->claimed = false;
    assert(e->st.purchases_pending > 0);
    e->st.purchases_pending--;
}

static void pp_sync(engine *e, eng_order *o, bool recovered)
{
    bool due = purchase_due(o);
    if (due == o->in_purchases)
        return;
    if (!due) {
        pp_remove(e, o);
        return;
    }
    o->in_purchases = true;
    o->claimed = false;
    o->recovered = recovered;
    o->pp_next = NULL;
    o->pp_prev = e->pp_tail;
    if (e->pp_tail)
        e->pp_tail->pp_next = o;
    else
        e->pp_head = o;
    e->pp_tail = o;
    e->st.purchases_pending++;
}

static void dec_unlink(eng_order *o);

static void line_free(engine *e, eng_order *o)
{
    assert(o->inflight == NULL);
    dec_unlink(o);
    if (o->sku_prev)
        o->sku_prev->sku_next = o->sku_next;
    else
        o->sku->orders = o->sku_next;
    if (o->sku_next)
        o->sku_next->sku_prev = o->sku_prev;
    pp_remove(e, o);
    free(o->upstream_order_id);
    free(o->reason);
    free(o);
}

/* Frees an order: its head and every line. A part on the due list is
 * unlinked first. */
static void order_free(engine *e, eng_order *h)
{
    assert(h->head == h);
    if (h->part_listed) {
        eng_order **pp = &e->due_head, *prev = NULL;
        while (*pp != h) {
            prev = *pp;
            pp = &(*pp)->due_next;
        }
        *pp = h->due_next;
        if (e->due_tail == h)
            e->due_tail = prev;
    }
    HASH_DEL(e->orders, h);
    eng_order *l = h->line_next;
    while (l != NULL) {
        eng_order *next = l->line_next;
        line_free(e, l);
        l = next;
    }
    line_free(e, h);
    e->st.orders--;
}

/* A line of s, not in the hash unless it is a head. */
static eng_order *line_new(eng_sku *s, const okey *key, int32_t qty, int32_t line_no,
                           int32_t n_lines)
{
    eng_order *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    memcpy(o->id, key->b, key->len + 1);
    o->key_len = (uint8_t)key->len;
    o->sku = s;
    o->qty = qty;
    o->line_no = line_no;
    o->n_lines = n_lines;
    o->head = o;
    o->status = ENG_ST_NONE;
    o->sku_next = s->orders;
    if (s->orders)
        s->orders->sku_prev = o;
    s->orders = o;
    return o;
}

static eng_order *order_new(engine *e, const okey *key, eng_sku *s, int32_t qty)
{
    eng_order *o = line_new(s, key, qty, 0, 1);
    if (o == NULL)
        return NULL;
    HASH_ADD(hh, e->orders, id, o->key_len, o);
    e->st.orders++;
    return o;
}

/* Appends line line_no to the whole order h (lines stay in line_no order). */
static eng_order *order_add_line(eng_order *h, eng_sku *s, int32_t qty, int32_t line_no)
{
    okey k;
    make_key(h->id, 0, false, &k);
    eng_order *o = line_new(s, &k, qty, line_no, h->n_lines);
    if (o == NULL)
        return NULL;
    o->head = h;
    eng_order **pp = &h->line_next;
    while (*pp != NULL && (*pp)->line_no < line_no)
        pp = &(*pp)->line_next;
    o->line_next = *pp;
    *pp = o;
    return o;
}

static eng_order *order_line(eng_order *h, int32_t line_no)
{
    FOR_LINES(h, l)
        if (l->line_no == line_no)
            return l;
    return NULL;
}

static bool order_inflight(const eng_order *h)
{
    FOR_LINES((eng_order *)h, l)
        if (l->inflight != NULL)
            return true;
    return false;
}

static eng_sku *sku_find(const engine *e, const char *name)
{
    eng_sku *s = NULL;
    HASH_FIND_STR(e->skus, name, s);
    return s;
}

static eng_order *order_find(const engine *e, const okey *k)
{
    eng_order *o = NULL;
    HASH_FIND(hh, e->orders, k->b, k->len, o);
    return o;
}

/* The order a plain order_id names (not a part k >= 1). */
static eng_order *order_find_id(const engine *e, const char *order_id)
{
    okey k;
    make_key(order_id, 0, false, &k);
    return order_find(e, &k);
}

static eng_sku *sku_new(engine *e, const char *name)
{
    eng_sku *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    copy_id(s->name, name);
    s->epoch = 1;
    HASH_ADD_STR(e->skus, name, s);
    e->st.skus++;
    return s;
}

static void ready_push(engine *e, eng_sku *s)
{
    if (s->on_ready || s->inflight != NULL || s->q_len == 0)
        return;
    s->on_ready = true;
    s->ready_next = NULL;
    if (e->ready_tail)
        e->ready_tail->ready_next = s;
    else
        e->ready_head = s;
    e->ready_tail = s;
}

static eng_sku *ready_pop(engine *e)
{
    eng_sku *s = e->ready_head;
    if (s == NULL)
        return NULL;
    e->ready_head = s->ready_next;
    if (e->ready_head == NULL)
        e->ready_tail = NULL;
    s->on_ready = false;
    s->ready_next = NULL;
    return s;
}

static void fifo_push(engine *e, eng_sku *s, eng_op *op)
{
    op->next = NULL;
    op->prev = s->q_tail;
    if (s->q_tail)
        s->q_tail->next = op;
    else
        s->q_head = op;
    s->q_tail = op;
    s->q_len++;
    op->sku_p = s;
    op->state_ = OP_QUEUED;
    e->st.queued++;
    if (s->q_len > e->st.queued_max_sku)
        e->st.queued_max_sku = s->q_len;
    ready_push(e, s);
}

static void fifo_unlink(engine *e, eng_op *op)
{
    eng_sku *s = op->sku_p;
    assert(op->state_ == OP_QUEUED);
    assert(s->q_len > 0);
    if (op->prev)
        op->prev->next = op->next;
    else
        s->q_head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        s->q_tail = op->prev;
    s->q_len--;
    e->st.queued--;
    if (s->report_q == op)
        s->report_q = NULL;
    op->next = op->prev = NULL;
    op->state_ = OP_IDLE;
}

/* ------------------------------------------------------------ waiting
 * (engine.h "Waiting"). A waiting reserve is off its FIFO, on its SKU's
 * pk list (linked through next/prev, state OP_PARKED) and still counted
 * in e->st.queued. */

static void dec_link(eng_order *o)
{
    if (o->on_dec)
        return;
    eng_sku *s = o->sku;
    o->on_dec = true;
    o->dec_prev = NULL;
    o->dec_next = s->dec;
    if (s->dec)
        s->dec->dec_prev = o;
    s->dec = o;
}

static void dec_unlink(eng_order *o)
{
    if (!o->on_dec)
        return;
    eng_sku *s = o->sku;
    if (o->dec_prev)
        o->dec_prev->dec_next = o->dec_next;
    else
        s->dec = o->dec_next;
    if (o->dec_next)
        o->dec_next->dec_prev = o->dec_prev;
    o->dec_next = o->dec_prev = NULL;
    o->on_dec = false;
}

static bool part_deciding(const eng_order *o)
{
    return o->part && o->attempt != 0 && o->status == ENG_ST_HELD;
}

/* True when qty more units of s would be there if every deciding part
 * on s gave its hold back (working state). Prunes parts that stopped
 * deciding; a batch that undoes a change puts them back (batch_restore). */
static bool short_for_deciding(eng_sku *s, int32_t qty)
{
    int64_t own = 0, sup = 0;
    eng_order *o = s->dec;
    while (o != NULL) {
        eng_order *next = o->dec_next;
        if (part_deciding(o)) {
            own += o->from_own;
            sup += o->from_supplier;
        } else {
            dec_unlink(o);
        }
        o = next;
    }
    if (own == 0 && sup == 0)
        return false;
    eng_counters c = s->c;
    c.own_reserved -= own;
    c.supplier_reserved -= sup;
    assert(c.own_reserved >= 0 && c.supplier_reserved >= 0);
    return qty <= eng_available(&c);
}

static void park(engine *e, eng_sku *s, eng_op *op)
{
    op->state_ = OP_PARKED;
    op->sku_p = s;
    op->next = NULL;
    op->prev = s->pk_tail;
    if (s->pk_tail)
        s->pk_tail->next = op;
    else
        s->pk_head = op;
    s->pk_tail = op;
    s->pk_len++;
    e->st.queued++;
    e->st.parked++;
    if (!s->pk_listed) {
        s->pk_listed = true;
        s->pk_next = e->pk_skus;
        e->pk_skus = s;
    }
}

static void park_unlink(engine *e, eng_op *op)
{
    eng_sku *s = op->sku_p;
    assert(op->state_ == OP_PARKED && s->pk_len > 0);
    if (op->prev)
        op->prev->next = op->next;
    else
        s->pk_head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        s->pk_tail = op->prev;
    s->pk_len--;
    e->st.queued--;
    e->st.parked--;
    op->next = op->prev = NULL;
    op->state_ = OP_IDLE;
}

/* Every waiting reserve of s goes back to the head of its FIFO, in the
 * order they came, to be decided again. */
static void unpark_all(engine *e, eng_sku *s)
{
    if (s->pk_len == 0)
        return;
    eng_op *first = s->pk_head, *last = s->pk_tail;
    uint32_t n = s->pk_len;
    for (eng_op *op = first; op != NULL; op = op->next)
        op->state_ = OP_QUEUED;
    last->next = s->q_head;
    if (s->q_head)
        s->q_head->prev = last;
    else
        s->q_tail = last;
    s->q_head = first;
    s->q_len += n;
    s->pk_head = s->pk_tail = NULL;
    s->pk_len = 0;
    e->st.parked -= n;
    ready_push(e, s);
}

/* Ends the waits that ran out by now_ms; true when any did. */
static bool park_due(engine *e, int64_t now_ms)
{
    bool any = false;
    eng_sku **pp = &e->pk_skus;
    while (*pp != NULL) {
        eng_sku *s = *pp;
        if (s->pk_len == 0) {
            *pp = s->pk_next;
            s->pk_listed = false;
            continue;
        }
        bool due = false;
        for (eng_op *op = s->pk_head; op != NULL; op = op->next) {
            if (op->wait_until_ <= now_ms) {
                op->wait_over_ = true;
                due = true;
            }
        }
        if (due) {
            unpark_all(e, s);
            any = true;
        }
        pp = &s->pk_next;
    }
    return any;
}

static void pk_skus_remove(engine *e, eng_sku *s)
{
    for (eng_sku **pp = &e->pk_skus; *pp != NULL; pp = &(*pp)->pk_next) {
        if (*pp == s) {
            *pp = s->pk_next;
            s->pk_listed = false;
            return;
        }
    }
}

/* ------------------------------------------------------------ heap */

static void heap_swap(struct heap_item *h, size_t a, size_t b)
{
    struct heap_item t = h[a];
    h[a] = h[b];
    h[b] = t;
}

static bool heap_push(engine *e, int64_t at_ms, eng_order *o)
{
    if (e->heap_len == e->heap_cap) {
        size_t cap = e->heap_cap ? e->heap_cap * 2 : 1024;
        struct heap_item *h = realloc(e->heap, cap * sizeof(*h));
        if (h == NULL)
            return false;
        e->heap = h;
        e->heap_cap = cap;
    }
    size_t i = e->heap_len++;
    e->heap[i].at_ms = at_ms;
    e->heap[i].o = o;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->heap[p].at_ms <= e->heap[i].at_ms)
            break;
        heap_swap(e->heap, p, i);
        i = p;
    }
    return true;
}

static void heap_pop(engine *e)
{
    assert(e->heap_len > 0);
    e->heap[0] = e->heap[--e->heap_len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->heap_len && e->heap[l].at_ms < e->heap[m].at_ms)
            m = l;
        if (r < e->heap_len && e->heap[r].at_ms < e->heap[m].at_ms)
            m = r;
        if (m == i)
            break;
        heap_swap(e->heap, i, m);
        i = m;
    }
}

static void heap_rebuild(engine *e)
{
    for (size_t k = e->heap_len / 2; k-- > 0;) {
        size_t i = k;
        for (;;) {
            size_t l = 2 * i + 1, r = l + 1, m = i;
            if (l < e->heap_len && e->heap[l].at_ms < e->heap[m].at_ms)
                m = l;
            if (r < e->heap_len && e->heap[r].at_ms < e->heap[m].at_ms)
                m = r;
            if (m == i)
                break;
            heap_swap(e->heap, i, m);
            i = m;
        }
    }
}

/* ------------------------------------------------------------ lifecycle */

engine *engine_new(const eng_limits *limits, eng_done_fn done, void *done_arg)
{
    assert(done != NULL);
    engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->lim = *limits;
    e->done = done;
    e->done_arg = done_arg;
    e->next_batch_id = 1;
    e->global.global = true;
    e->global.exists = true;
    return e;
}

static void batch_free_mem(eng_batch *b)
{
    free(b->sw);
    free(b->sku_rows);
    free(b->ow);
    free(b->order_rows);
    free(b->ledger);
    free(b->jobs);
    free(b->alerts);
    free(b->alert_text);
    free(b->supw);
    free(b->sup_rows);
    free(b->bal);
    free(b);
}

static void free_batch_pool(engine *e)
{
    while (e->free_batches) {
        eng_batch *b = e->free_batches;
        e->free_batches = b->next_free;
        batch_free_mem(b);
    }
}

void engine_free(engine *e)
{
    if (e == NULL)
        return;
    eng_order *o, *ot;
    HASH_ITER(hh, e->orders, o, ot) {
        HASH_DEL(e->orders, o);
        eng_order *l = o;
        while (l != NULL) {
            eng_order *next = l->line_next;
            free(l->upstream_order_id);
            free(l->reason);
            free(l);
            l = next;
        }
    }
    eng_sku *s, *stmp;
    HASH_ITER(hh, e->skus, s, stmp) {
        HASH_DEL(e->skus, s);
        free(s->map);
        free(s->aside_why);
        free(s);
    }
    struct aside_ord *a, *atmp;
    HASH_ITER(hh, e->aside_orders, a, atmp) {
        HASH_DEL(e->aside_orders, a);
        free(a);
    }
    free(e->pal);
    eng_supp *p, *ptmp;
    HASH_ITER(hh, e->supps, p, ptmp) {
        HASH_DEL(e->supps, p);
        free(p);
    }
    while (e->free_ops) {
        eng_op *op = e->free_ops;
        e->free_ops = op->next;
        free(op);
    }
    free_batch_pool(e);
    free(e->heap);
    struct tomb *t, *ttmp;
    HASH_ITER(hh, e->tombs, t, ttmp) {
        HASH_DEL(e->tombs, t);
        free(t);
    }
    free(e->tomb_ring);
    free(e);
}

void engine_set_limits(engine *e, const eng_limits *limits)
{
    assert(limits->batch_ops_max > 0 && limits->batch_sku_ops_max > 0);
    e->lim = *limits;
    free_batch_pool(e);  /* pooled batches have the old capacity */
}

/* ------------------------------------------------------------ loading */

bool eng_sku_row_valid(const eng_counters *c, eng_mapping mapping, const eng_supplier_map *map,
                       char why[ENG_REASON_MAX + 1])
{
    const struct {
        const char *name;
        int64_t v;
    } f[] = {{"own_on_hand", c->own_on_hand},
             {"own_reserved", c->own_reserved},
             {"supplier_reported", c->supplier_reported},
             {"supplier_sellable", c->supplier_sellable},
             {"supplier_reserved", c->supplier_reserved}};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i].v < 0 || f[i].v > ENG_STOCK_MAX) {
            eng_why_fmt(why, "%s %lld is out of range 0..%lld", f[i].name,
                     (long long)f[i].v, (long long)ENG_STOCK_MAX);
            return false;
        }
    }
    if (c->own_reserved > c->own_on_hand) {
        eng_why_fmt(why, "own_reserved %lld exceeds own_on_hand %lld",
                 (long long)c->own_reserved, (long long)c->own_on_hand);
        return false;
    }
    if (mapping < 0 || mapping >= ENG_MAP_COUNT_) {
        eng_why_fmt(why, "unknown mapping");
        return false;
    }
    if ((mapping == ENG_MAP_OK || mapping == ENG_MAP_BROKEN) &&
        (map == NULL || map->supplier_id[0] == '\0')) {
        eng_why_fmt(why, "mapping %s without a supplier_id",
                 eng_mapping_name(mapping));
        return false;
    }
    if (map != NULL && (map->cap < -1 || map->cap > ENG_STOCK_MAX)) {
        eng_why_fmt(why, "supplier_cap %lld is out of range",
                 (long long)map->cap);
        return false;
    }
    return true;
}

bool engine_load_sku(engine *e, const char *name, const eng_counters *c,
                     eng_mapping mapping, const eng_supplier_map *map, int64_t epoch)
{
    char why[ENG_REASON_MAX + 1];
    if (name[0] == '\0' || strlen(name) > ENG_ID_MAX || !eng_sku_row_valid(c, mapping, map, why))
        return false;
    eng_sku *s = sku_find(e, name);
    if (s != NULL && s->aside)
        return false;  /* until the process ends (engine.h) */
    if (s == NULL && (s = sku_new(e, name)) == NULL)
        return false;
    assert(s->inflight == NULL);
    if ((mapping == ENG_MAP_OK || mapping == ENG_MAP_BROKEN) && map != NULL && s->map == NULL &&
        (s->map = malloc(sizeof(*s->map))) == NULL)
        return false;
    s->exists = true;
    s->audit = true;
    s->c = *c;
    s->mapping = mapping;
    s->epoch = epoch;
    s->frozen_own = s->frozen_sup = 0;  /* its orders (re)load after it */
    if ((mapping == ENG_MAP_OK || mapping == ENG_MAP_BROKEN) && map != NULL) {
        *s->map = *map;
        (void)supp_get(e, map->supplier_id);  /* known from now on (supplier.get) */
    } else {
        free(s->map);
        s->map = NULL;
        if (s->mapping == ENG_MAP_OK || s->mapping == ENG_MAP_BROKEN)
            s->mapping = ENG_MAP_MANUAL;
    }
    /* The stored sellable was derived with the trust of its day. */
    sku_recompute_sellable(e, s);
    /* Its orders may become (or stop being) pending purchases with it. */
    for (eng_order *o = s->orders; o != NULL; o = o->sku_next)
        if (o->status != ENG_ST_NONE && o->inflight == NULL)
            pp_sync(e, o, true);
    return true;
}

void engine_set_parts_mode(engine *e, bool parts)
{
    e->parts_mode = parts;
}

/* The line v names, found or made: a part, the head of a whole order, or
 * line v->line_no of the loaded head (line 0 loads first). */
static eng_order *load_line(engine *e, const eng_order_view *v, eng_sku *s)
{
    bool part = v->n_lines > 1 && e->parts_mode;
    okey key;
    make_key(v->order_id, v->line_no, part, &key);
    if (part || v->line_no == 0) {
        eng_order *o = order_find(e, &key);
        if (o == NULL) {
            if ((o = order_new(e, &key, s, v->qty)) == NULL)
                return NULL;
            o->n_lines = v->n_lines;
            o->line_no = v->line_no;
            o->part = part;
        }
        return o->part == part && o->n_lines == v->n_lines ? o : NULL;
    }
    eng_order *h = order_find(e, &key);
    if (h == NULL || h->part || h->n_lines != v->n_lines)
        return NULL;
    eng_order *l = order_line(h, v->line_no);
    if (l == NULL && (l = order_add_line(h, s, v->qty, v->line_no)) == NULL)
        return NULL;
    return l;
}

bool eng_order_row_valid(const eng_order_view *v, char why[ENG_REASON_MAX + 1])
{
    const char *bad = NULL;
    size_t id_len = strnlen(v->order_id, sizeof(v->order_id));
    size_t sku_len = strnlen(v->sku, sizeof(v->sku));
    if (id_len == 0 || id_len > ENG_ID_MAX || memchr(v->order_id, '#', id_len) != NULL)
        bad = "order_id must be 1..64 bytes without '#'";
    else if (sku_len == 0 || sku_len > ENG_ID_MAX)
        bad = "sku must be 1..64 bytes";
    else if (v->status <= ENG_ST_NONE || v->status >= ENG_ST_COUNT_)
        bad = "unknown status";
    else if (v->qty < 1 || v->qty > ENG_QTY_MAX)
        bad = "qty out of range 1..1000000";
    else if (v->from_own < 0 || v->from_supplier < 0 ||
             (int64_t)v->from_own + v->from_supplier != v->qty)
        bad = "from_own + from_supplier is not qty";
    else if (v->n_lines < 1 || v->n_lines > ENG_LINES_MAX || v->line_no < 0 ||
             v->line_no >= v->n_lines)
        bad = "line_no / n_lines out of range";
    else if (v->status == ENG_ST_HELD && v->hold_expires_at_ms <= 0)
        bad = "held without hold_expires_at";
    else if (v->purchased_at_ms < 0)
        bad = "negative purchased_at";
    if (bad == NULL)
        return true;
    eng_why_fmt(why, "line %d: %s", (int)v->line_no, bad);
    return false;
}

bool engine_load_order(engine *e, const eng_order_view *view)
{
    eng_order_view one;
    const eng_order_view *v = view;
    if (view->n_lines == 0) {
        /* A record from before lines (n_lines unset): one line. */
        one = *view;
        one.n_lines = 1;
        one.line_no = 0;
        v = &one;
    }
    char why[ENG_REASON_MAX + 1];
    if (!eng_order_row_valid(v, why))
        return false;
    eng_sku *s = sku_find(e, v->sku);
    if (s == NULL || !s->exists || s->aside)
        return false;
    eng_order *o = load_line(e, v, s);
    if (o == NULL || o->sku != s)
        return false;  /* an order never changes SKU */
    assert(o->inflight == NULL);
    order_from_view(o, v);
    if (o->head == o && o->status == ENG_ST_HELD && !heap_push(e, o->hold_expires_at_ms, o))
        return false;
    pp_sync(e, o, true);
    return true;
}

bool engine_load_supplier(engine *e, const char *supplier_id, const eng_trust *t)
{
    size_t n = strlen(supplier_id);
    if (n == 0 || n > ENG_ID_MAX || !eng_trust_valid(t))
        return false;
    eng_supp *p = supp_get(e, supplier_id);
    if (p == NULL)
        return false;
    p->t = *t;
    return true;
}

/* ------------------------------------------------------------ set aside (engine.h) */

/* The units a stored line holds in its SKU's counters (DESIGN.md §2). */
static void line_holds(eng_status st, int32_t from_own, int32_t from_supplier, bool settled,
                       int64_t *own, int64_t *sup)
{
    bool live = st == ENG_ST_HELD || st == ENG_ST_CONFIRMED;
    *own = live || st == ENG_ST_PURCHASED ? from_own : 0;
    *sup = live || ((st == ENG_ST_PURCHASED || st == ENG_ST_SHIPPED) && !settled)
               ? from_supplier : 0;
}

static void aside_alert_push(engine *e, const char *sku, const char *order_id, const char *why)
{
    if (e->pal == NULL && (e->pal = calloc(ENG_ASIDE_ALERTS_MAX, sizeof(*e->pal))) == NULL) {
        e->st.aside_alerts_dropped++;
        return;
    }
    if (e->pal_len == ENG_ASIDE_ALERTS_MAX) {
        e->st.aside_alerts_dropped++;
        return;
    }
    struct aside_alert *a = &e->pal[e->pal_len++];
    snprintf(a->sku, sizeof(a->sku), "%s", sku[0] ? sku : "?");
    snprintf(a->order_id, sizeof(a->order_id), "%s", order_id);
    utf8_copy_cut(a->why, why, sizeof(a->why));
}

void engine_aside_alert(engine *e, const char *sku, const char *order_id, const char *why)
{
    aside_alert_push(e, sku, order_id ? order_id : "", why);
}

/* Remembers an order key as set aside: 1 new, 0 known, -1 full / OOM. */
static int aside_key_add(engine *e, const okey *k, const char *sku, const char *why)
{
    struct aside_ord *a = NULL;
    HASH_FIND(hh, e->aside_orders, k->b, k->len, a);
    if (a != NULL)
        return 0;
    if (e->n_aside >= ENG_ASIDE_MAX || (a = calloc(1, sizeof(*a))) == NULL)
        return -1;
    memcpy(a->key, k->b, k->len + 1);
    a->key_len = (uint8_t)k->len;
    snprintf(a->sku, sizeof(a->sku), "%s", sku);
    utf8_copy_cut(a->why, why, sizeof(a->why));
    HASH_ADD(hh, e->aside_orders, key, a->key_len, a);
    e->n_aside++;
    e->st.orders_aside++;
    return 1;
}

/* The units a line of an order set aside holds stay reserved on its SKU:
 * counted for that SKU's audit (engine_audit_loaded). */
static void freeze(engine *e, const char *sku, eng_status st, int32_t from_own,
                   int32_t from_supplier, bool settled)
{
    eng_sku *s = sku_find(e, sku);
    /* Frozen units only matter to the SKU's audit, still to come. */
    if (s == NULL || !s->exists || s->aside || !s->audit || st <= ENG_ST_NONE ||
        st >= ENG_ST_COUNT_ || from_own < 0 || from_supplier < 0)
        return;
    int64_t own, sup;
    line_holds(st, from_own, from_supplier, settled, &own, &sup);
    s->frozen_own += own;
    s->frozen_sup += sup;
}

int engine_set_aside_order(engine *e, const char *order_id, const eng_order_view *lines, size_t n,
                           const char *sku, const char *why)
{
    size_t len = strlen(order_id);
    if (len == 0 || len > ENG_ID_MAX)
        return -1;
    okey k;
    make_key(order_id, 0, false, &k);
    int rc = aside_key_add(e, &k, sku, why);
    if (rc < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const eng_order_view *v = &lines[i];
        /* Sharded, a part k >= 1 is its own order: its key too. */
        if (e->parts_mode && v->n_lines > 1 && v->line_no > 0 && v->line_no < ENG_LINES_MAX) {
            make_key(order_id, v->line_no, true, &k);
            if (aside_key_add(e, &k, v->sku, why) < 0)
                return -1;
        }
        freeze(e, v->sku, v->status, v->from_own, v->from_supplier, v->supplier_settled);
    }
    /* An order that fails only because its SKUs are set aside is said by
     * their alerts: one per SKU, not one per order. */
    bool covered = n > 0;
    for (size_t i = 0; i < n && covered; i++) {
        const eng_sku *s = sku_find(e, lines[i].sku);
        covered = s != NULL && s->aside;
    }
    if (rc == 1 && covered)
        return 2;
    if (rc == 1)
        aside_alert_push(e, sku, order_id, why);
    return rc;
}

static void sku_clear(engine *e, eng_sku *s, eng_err queued_err, const char *aside_why,
                      size_t *orders_out);
static bool order_is_cart(const eng_order *h);

int engine_set_aside_sku(engine *e, const char *sku, const char *why, size_t *orders_out)
{
    if (orders_out != NULL)
        *orders_out = 0;
    size_t len = strlen(sku);
    if (len == 0 || len > ENG_ID_MAX)
        return -1;
    eng_sku *s = sku_find(e, sku);
    if (s != NULL && s->aside)
        return 0;
    if (e->n_aside >= ENG_ASIDE_MAX)
        return -1;
    if (s != NULL) {
        if (s->inflight != NULL)
            return -1;
        for (eng_order *o = s->orders; o != NULL; o = o->sku_next)
            if (order_inflight(o->head))
                return -1;
        char note[ENG_REASON_MAX + 1];
        eng_why_fmt(note, "its SKU %s is set aside", sku);
        sku_clear(e, s, ENG_E_UNAVAILABLE, note, orders_out);
        free(s->map);
        s->map = NULL;
    } else if ((s = sku_new(e, sku)) == NULL) {
        return -1;
    }
    s->aside = true;
    s->exists = false;
    s->audit = false;
    memset(&s->c, 0, sizeof(s->c));
    s->mapping = ENG_MAP_NONE;
    s->frozen_own = s->frozen_sup = 0;
    s->aside_why = dup_or_null(why);  /* NULL on OOM: the refusal says less */
    e->n_aside++;
    e->st.skus_aside++;
    aside_alert_push(e, sku, "", why);
    return 1;
}

int engine_audit_loaded(engine *e, void (*fn)(const char *sku, const char *why, void *arg),
                        void *arg)
{
    int n = 0;
    eng_sku *s, *tmp;
    HASH_ITER(hh, e->skus, s, tmp) {
        if (!s->audit)
            continue;
        s->audit = false;
        if (s->aside || !s->exists)
            continue;
        int64_t own = s->frozen_own, sup = s->frozen_sup;
        for (const eng_order *o = s->orders; o != NULL; o = o->sku_next) {
            if (o->status == ENG_ST_NONE)
                continue;
            int64_t lo, ls;
            line_holds(o->status, o->from_own, o->from_supplier, o->supplier_settled, &lo, &ls);
            own += lo;
            sup += ls;
        }
        if (own == s->c.own_reserved && sup == s->c.supplier_reserved)
            continue;
        char why[ENG_REASON_MAX + 1];
        eng_why_fmt(why,
                 "counters do not match its orders: own_reserved %lld, orders %lld; "
                 "supplier_reserved %lld, orders %lld",
                 (long long)s->c.own_reserved, (long long)own,
                 (long long)s->c.supplier_reserved, (long long)sup);
        if (engine_set_aside_sku(e, s->name, why, NULL) < 0)
            return -1;
        if (fn != NULL)
            fn(s->name, why, arg);
        n++;
    }
    return n;
}

int engine_load_order_lines(engine *e, const eng_order_view *v, size_t n,
                            char why[ENG_REASON_MAX + 1])
{
    if (n == 0 || n > ENG_LINES_MAX) {
        eng_why_fmt(why, "%zu stored lines (1..%d)", n, ENG_LINES_MAX);
        return 0;
    }
    bool held = false, ended = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].order_id, v[0].order_id) != 0) {
            eng_why_fmt(why, "lines of different orders");
            return 0;
        }
        if (!eng_order_row_valid(&v[i], why))
            return 0;
        if (v[i].n_lines != v[0].n_lines) {
            eng_why_fmt(why, "its lines disagree on n_lines (%d, %d)",
                     (int)v[0].n_lines, (int)v[i].n_lines);
            return 0;
        }
        if (i > 0 && v[i].line_no <= v[i - 1].line_no) {
            eng_why_fmt(why, "line %d is stored twice or out of order",
                     (int)v[i].line_no);
            return 0;
        }
        const eng_sku *s = sku_find(e, v[i].sku);
        if (s == NULL || !s->exists || s->aside) {
            eng_why_fmt(why, "line %d: its SKU %s is %s", (int)v[i].line_no,
                     v[i].sku, s != NULL && s->aside ? "set aside" : "not loaded");
            return 0;
        }
        held = held || v[i].status == ENG_ST_HELD;
        ended = ended || v[i].status == ENG_ST_RELEASED || v[i].status == ENG_ST_EXPIRED;
    }
    bool parts = e->parts_mode && v[0].n_lines > 1;
    if (!parts) {
        /* Sorted, distinct and in range: n == n_lines means lines 0..n-1. */
        if ((size_t)v[0].n_lines != n) {
            snprintf(why, ENG_REASON_MAX + 1,
                     "%zu of its %d lines are stored (a cart part without its siblings, or a "
                     "line lost)", n, (int)v[0].n_lines);
            return 0;
        }
        if (held && ended) {
            snprintf(why, ENG_REASON_MAX + 1,
                     "a line is held next to a released or expired one (all or nothing)");
            return 0;
        }
    }
    /* SKUs all in service already (loaded and audited): memory, their one
     * writer, is newer than any read of MariaDB; keep it. */
    bool fresh = false;
    for (size_t i = 0; i < n; i++)
        fresh = fresh || sku_find(e, v[i].sku)->audit;
    if (!fresh)
        return 1;
    /* A reload meets the order it loaded before: same shape, same SKUs. */
    for (size_t i = 0; i < n; i++) {
        okey k;
        const eng_sku *s = sku_find(e, v[i].sku);
        make_key(v[i].order_id, v[i].line_no, parts, &k);
        const eng_order *o = order_find(e, &k), *l = NULL;
        if (o == NULL && !parts && v[i].line_no > 0) {
            make_key(v[i].order_id, 0, false, &k);
            o = order_find(e, &k);
        }
        if (o != NULL)
            l = o->part || !order_is_cart(o) ? o : order_line((eng_order *)o, v[i].line_no);
        if (o != NULL && (o->part != parts || o->n_lines != v[i].n_lines ||
                          (l != NULL && l->sku != s) || order_inflight(o))) {
            eng_why_fmt(why, "line %d does not match the order in memory",
                     (int)v[i].line_no);
            return 0;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!engine_load_order(e, &v[i]))
            return -1;  /* checked above: only memory can fail */
    return 1;
}

bool engine_aside_of(const engine *e, const eng_op *op, char out[ENG_REASON_MAX + 1])
{
    if (e->n_aside == 0)
        return false;
    char msg[ENG_REASON_MAX * 2];
    const char *names[1 + ENG_LINES_MAX];
    size_t n = 0;
    if (op->sku[0] != '\0')
        names[n++] = op->sku;
    if (op->kind == ENG_OP_RESERVE && op->lines != NULL)
        for (uint32_t i = 0; i < op->n_lines && i < ENG_LINES_MAX; i++)
            names[n++] = op->lines[i].sku;
    for (size_t i = 0; i < n; i++) {
        const eng_sku *s = sku_find(e, names[i]);
        if (s != NULL && s->aside) {
            snprintf(msg, sizeof(msg), "sku %s is set aside: %s", s->name,
                     s->aside_why ? s->aside_why : "bad rows");
            goto found;
        }
    }
    if (op->order_id[0] != '\0' && strlen(op->order_id) <= ENG_ID_MAX) {
        for (int pass = 0; pass < 2; pass++) {
            okey k;
            if (pass == 0)
                make_key(op->order_id, 0, false, &k);
            else if (op->part_lines > 1 && op->line_no > 0 && op->line_no < ENG_LINES_MAX)
                make_key(op->order_id, op->line_no, true, &k);
            else
                break;
            const struct aside_ord *a = NULL;
            HASH_FIND(hh, e->aside_orders, k.b, k.len, a);
            if (a != NULL) {
                snprintf(msg, sizeof(msg), "order %s is set aside: %s", op->order_id, a->why);
                goto found;
            }
        }
    }
    return false;
found:
    if (out != NULL)
        utf8_copy_cut(out, msg, ENG_REASON_MAX + 1);
    return true;
}

bool engine_supplier_trust(const engine *e, const char *supplier_id, eng_trust *out)
{
    *out = *supp_trust(e, supplier_id);
    return supp_find(e, supplier_id) != NULL;
}

void engine_each_supplier(const engine *e,
                          void (*fn)(const char *supplier_id, const eng_trust *t, void *arg),
                          void *arg)
{
    eng_supp *p, *tmp;
    HASH_ITER(hh, e->supps, p, tmp)
        fn(p->id, &p->t, arg);
}

/* ------------------------------------------------------------ submit */

static eng_op *internal_op_new(engine *e)
{
    eng_op *op = e->free_ops;
    if (op != NULL) {
        e->free_ops = op->next;
    } else if ((op = malloc(sizeof(*op))) == NULL) {
        return NULL;
    }
    memset(op, 0, sizeof(*op));
    return op;
}

static void internal_op_free(engine *e, eng_op *op)
{
    op->next = e->free_ops;
    e->free_ops = op;
}

/* A whole order of several lines (not a part): its ops take tickets. */
static bool order_is_cart(const eng_order *h)
{
    return h->n_lines > 1 && !h->part;
}

static eng_order *order_of_op(const engine *e, const eng_op *op)
{
    okey key;
    op_key(op, &key);
    return order_find(e, &key);
}

/* The line an outcome op names: the order's line line_no (a part or a
 * single order: the head). */
/* Line line_no of order_id: a part (part), a line of a whole order, or a
 * single-SKU order itself. */
static eng_order *line_find(const engine *e, const char *order_id, int32_t line_no, bool part)
{
    okey key;
    make_key(order_id, line_no, part, &key);
    eng_order *h = order_find(e, &key);
    if (h == NULL)
        return NULL;
    return order_is_cart(h) ? order_line(h, line_no) : h;
}

static eng_order *line_of_op(const engine *e, const eng_op *op)
{
    return line_find(e, op->order_id, op->line_no, op->part_lines > 1);
}

static void tickets_free(engine *e, eng_op *op)
{
    eng_op *t = op->tk_next;
    while (t != NULL) {
        eng_op *next = t->tk_next;
        if (t->state_ == OP_QUEUED)
            fifo_unlink(e, t);
        eng_sku *s = t->sku_p;
        internal_op_free(e, t);
        ready_push(e, s);  /* its FIFO may have waited behind the ticket */
        t = next;
    }
    op->tk_next = NULL;
}

/* Queues op on every SKU in skus[0..n) at once, one ticket each (DESIGN.md
 * §3: arrival order on one loop is a total order, so waiting for the head
 * of every FIFO cannot deadlock). */
static eng_err push_tickets(engine *e, eng_op *op, eng_sku *const *skus, size_t n)
{
    assert(n >= 2 && op->tk_next == NULL);
    eng_op **tail = &op->tk_next;
    for (size_t i = 0; i < n; i++) {
        eng_op *t = internal_op_new(e);
        if (t == NULL) {
            eng_op *u = op->tk_next;
            while (u != NULL) {
                eng_op *next = u->tk_next;
                internal_op_free(e, u);
                u = next;
            }
            op->tk_next = NULL;
            return ENG_E_INTERNAL;
        }
        t->kind = op->kind;
        t->tk_parent = op;
        t->line_no = (int32_t)i;
        *tail = t;
        tail = &t->tk_next;
    }
    size_t i = 0;
    for (eng_op *t = op->tk_next; t != NULL; t = t->tk_next)
        fifo_push(e, skus[i++], t);
    op->sku_p = NULL;
    op->state_ = OP_QUEUED;
    return ENG_OK;
}

static bool room_for(const engine *e, eng_sku *const *skus, size_t n)
{
    if (e->st.queued + n > e->lim.queue_total_max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (skus[i]->q_len + skus[i]->pk_len >= e->lim.queue_per_sku_max)
            return false;
    return true;
}

/* Queues an op on an order: one FIFO, or a ticket on every line's SKU. */
static eng_err queue_on_order(engine *e, eng_op *op, eng_order *h, bool limits)
{
    if (!order_is_cart(h)) {
        if (limits && !room_for(e, &h->sku, 1))
            return ENG_E_BUSY;
        fifo_push(e, h->sku, op);
        return ENG_OK;
    }
    eng_sku *skus[ENG_LINES_MAX];
    size_t n = 0;
    FOR_LINES(h, l)
        skus[n++] = l->sku;
    if (limits && !room_for(e, skus, n))
        return ENG_E_BUSY;
    return push_tickets(e, op, skus, n);
}

/* A SKU an order may be placed on: loaded, or being created by a queued
 * or in-flight sku.put. */
static eng_sku *sku_placeable(const engine *e, const char *name)
{
    eng_sku *s = sku_find(e, name);
    if (s == NULL || (!s->exists && s->q_len == 0 && s->inflight == NULL))
        return NULL;
    return s;
}

bool eng_cart_of(const eng_line_in *in, uint32_t n, eng_cart *out, int32_t *bad_line)
{
    assert(n >= 1 && n <= ENG_LINES_MAX);
    int64_t sum[ENG_LINES_MAX] = {0};
    out->n = 0;
    for (uint32_t i = 0; i < n; i++) {
        assert(in[i].qty >= 1 && in[i].qty <= ENG_QTY_MAX);
        uint32_t k = 0;
        while (k < out->n && strcmp(out->line[k].sku, in[i].sku) != 0)
            k++;
        if (k == out->n) {
            out->line[k] = in[i];
            out->line[k].qty = 0;
            out->first[k] = (int32_t)i;
            out->n++;
        }
        sum[k] += in[i].qty;
        if (sum[k] > ENG_QTY_MAX) {
            *bad_line = out->first[k];
            return false;
        }
        out->line[k].qty = (int32_t)sum[k];
    }
    return true;
}

/* The line index of the request that first named line l of the order. */
static int32_t op_line_index(const eng_op *op, const eng_order *l)
{
    for (uint32_t i = 0; i < op->n_lines; i++)
        if (strcmp(op->lines[i].sku, l->sku->name) == 0)
            return (int32_t)i;
    return -1;
}

static bool cart_matches(const eng_order *h, const eng_cart *c)
{
    if (h->part || h->n_lines != (int32_t)c->n)
        return false;
    size_t i = 0;
    FOR_LINES((eng_order *)h, l) {
        if (i >= c->n || strcmp(l->sku->name, c->line[i].sku) != 0 || l->qty != c->line[i].qty)
            return false;
        i++;
    }
    return i == c->n;
}

static eng_err submit_cart_reserve(engine *e, eng_op *op, const eng_cart *cl)
{
    const eng_cart *c = cl;
    eng_order *h = order_find_id(e, op->order_id);
    eng_sku *skus[ENG_LINES_MAX];
    if (h != NULL) {
        if (!cart_matches(h, c))
            return op->err = ENG_E_CONFLICT;
        size_t n = 0;
        FOR_LINES(h, l)
            skus[n++] = l->sku;
    } else {
        for (size_t i = 0; i < c->n; i++) {
            if ((skus[i] = sku_placeable(e, c->line[i].sku)) == NULL) {
                op->err_line = c->first[i];
                return op->err = ENG_E_UNKNOWN_SKU;
            }
        }
    }
    if (!room_for(e, skus, c->n))
        return op->err = ENG_E_BUSY;
    bool created = false;
    if (h == NULL) {
        okey key;
        make_key(op->order_id, 0, false, &key);
        if ((h = order_new(e, &key, skus[0], c->line[0].qty)) == NULL)
            return op->err = ENG_E_INTERNAL;
        h->n_lines = (int32_t)c->n;
        created = true;
        for (size_t i = 1; i < c->n; i++) {
            if (order_add_line(h, skus[i], c->line[i].qty, (int32_t)i) == NULL) {
                order_free(e, h);
                return op->err = ENG_E_INTERNAL;
            }
        }
    }
    if (push_tickets(e, op, skus, c->n) != ENG_OK) {
        if (created)
            order_free(e, h);
        return op->err = ENG_E_INTERNAL;
    }
    h->pending++;
    return ENG_OK;
}

/* A single-SKU reserve, or a part (part_lines > 1: line line_no). */
static struct tomb *tomb_find(const engine *e, const okey *k, int64_t now_ms)
{
    struct tomb *t = NULL;
    HASH_FIND(hh, e->tombs, k->b, k->len, t);
    return t != NULL && t->until_ms > now_ms ? t : NULL;
}

/* Remembers a part released before it was placed (see struct tomb). */
static void tomb_add(engine *e, const okey *k, int64_t now_ms)
{
    struct tomb *t = NULL;
    HASH_FIND(hh, e->tombs, k->b, k->len, t);
    if (t != NULL) {
        t->until_ms = now_ms + ENG_TOMB_MS;
        return;
    }
    if (e->tomb_ring == NULL &&
        (e->tomb_ring = calloc(ENG_TOMBS_MAX, sizeof(*e->tomb_ring))) == NULL)
        return;  /* OOM: the hold TTL still frees the part */
    struct tomb *old = e->tomb_ring[e->tomb_next];
    if (old != NULL) {
        HASH_DEL(e->tombs, old);
        free(old);
        e->n_tombs--;
    }
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        e->tomb_ring[e->tomb_next] = NULL;
        return;
    }
    memcpy(t->key, k->b, k->len + 1);
    t->key_len = (uint8_t)k->len;
    t->until_ms = now_ms + ENG_TOMB_MS;
    HASH_ADD(hh, e->tombs, key, t->key_len, t);
    e->tomb_ring[e->tomb_next] = t;
    e->tomb_next = (e->tomb_next + 1) % ENG_TOMBS_MAX;
    e->n_tombs++;
}

static eng_err submit_reserve(engine *e, eng_op *op, int64_t now_ms)
{
    assert(op->qty >= 1 && op->qty <= ENG_QTY_MAX);
    okey key;
    op_key(op, &key);
    int32_t n_lines = op->part_lines > 1 ? op->part_lines : 1;
    eng_order *o = order_find(e, &key);
    eng_sku *s;
    if (o == NULL && n_lines > 1 && tomb_find(e, &key, now_ms) != NULL)
        return op->err = ENG_E_EXPIRED;  /* its order was aborted before it arrived */
    if (o != NULL) {
        if (strcmp(o->sku->name, op->sku) != 0 || o->qty != op->qty || o->n_lines != n_lines ||
            o->line_no != (n_lines > 1 ? op->line_no : 0))
            return op->err = ENG_E_CONFLICT;
        s = o->sku;
    } else if ((s = sku_placeable(e, op->sku)) == NULL) {
        op->err_line = op->n_lines > 0 ? 0 : -1;
        return op->err = ENG_E_UNKNOWN_SKU;
    }
    if (!room_for(e, &s, 1))
        return op->err = ENG_E_BUSY;
    if (o == NULL) {
        if ((o = order_new(e, &key, s, op->qty)) == NULL)
            return op->err = ENG_E_INTERNAL;
        if (n_lines > 1) {
            o->part = true;
            o->n_lines = n_lines;
            o->line_no = op->line_no;
        }
    }
    o->pending++;
    fifo_push(e, s, op);
    return ENG_OK;
}

eng_err engine_submit(engine *e, eng_op *op, int64_t now_ms)
{
    assert(op->state_ == OP_IDLE);
    assert(!op_internal(op) && op->tk_next == NULL);
    op->err = ENG_OK;
    op->outcome_unknown = false;
    op->err_line = -1;
    op->err_deciding = false;
    op->err_aside[0] = '\0';
    op->park_ = op->wait_over_ = op->waited_ = false;
    e->st.ops_submitted++;
    assert(op->part_lines == 0 ||
           (op->part_lines > 1 && op->part_lines <= ENG_LINES_MAX && op->line_no >= 0 &&
            op->line_no < op->part_lines));
    assert(op->wait_ms >= 0 && op->wait_ms <= ENG_WAIT_MS_MAX);
    /* Waiting and erasing are for parts only (the caller's syntax check). */
    assert((op->wait_ms == 0 && op->attempt == 0) ||
           (op->part_lines > 1 && (op->kind == ENG_OP_RESERVE || op->kind == ENG_OP_RELEASE)));
    assert(!op->erase || (op->part_lines > 1 && op->kind == ENG_OP_RELEASE));
    op->wait_until_ = now_ms + op->wait_ms;
    /* Rows that could not be trusted at load: refused, never guessed at. */
    if (op->kind != ENG_OP_SUPPLIER_PUT && engine_aside_of(e, op, op->err_aside))
        return op->err = ENG_E_UNAVAILABLE;

    eng_sku *s = NULL;
    eng_order *o = NULL;
    switch (op->kind) {
    case ENG_OP_RESERVE:
        if (op->n_lines > 0 && op->part_lines == 0) {
            eng_cart c;
            if (!eng_cart_of(op->lines, op->n_lines, &c, &op->err_line))
                return op->err = ENG_E_INVALID;
            if (c.n > 1)
                return submit_cart_reserve(e, op, &c);
            /* One SKU, however many lines: a plain order. */
            copy_id(op->sku, c.line[0].sku);
            op->qty = c.line[0].qty;
        }
        return submit_reserve(e, op, now_ms);
    case ENG_OP_CONFIRM:
    case ENG_OP_RELEASE:
    case ENG_OP_SHIP:
        o = order_of_op(e, op);
        /* A part released before it was placed; an unconditional erase
         * counts a part erased earlier (a ghost) as not placed too. */
        if (op->kind == ENG_OP_RELEASE && op->part_lines > 1 &&
            (o == NULL || (o->ghost && o->status == ENG_ST_NONE && o->pending == 0 &&
                           !order_inflight(o) && op->erase && op->attempt == 0))) {
            okey key;
            op_key(op, &key);
            tomb_add(e, &key, now_ms);
        }
        /* A placeholder with reserves queued or in flight: wait behind
         * them in the same FIFO, so a pipelined reserve+confirm works. */
        if (o == NULL || (o->status == ENG_ST_NONE && !order_inflight(o) && o->pending == 0))
            return op->err = ENG_E_NOT_FOUND;
        /* A part answers only to ops that name it as a part. */
        if (o->part != (op->part_lines > 1))
            return op->err = o->part ? ENG_E_INVALID : ENG_E_NOT_FOUND;
        if ((op->decided && op->kind != ENG_OP_CONFIRM) ||
            ((op->as_expired || op->as_failed) && op->kind != ENG_OP_RELEASE) ||
            (op->as_expired && op->as_failed) || (op->erase && (op->as_expired || op->as_failed)))
            return op->err = ENG_E_INVALID;
        return op->err = queue_on_order(e, op, o, true);
    case ENG_OP_SKU_PUT:
        s = sku_find(e, op->sku);
        if (s == NULL && (s = sku_new(e, op->sku)) == NULL)
            return op->err = ENG_E_INTERNAL;
        break;
    case ENG_OP_ADJUST:
        s = sku_find(e, op->sku);
        if (s == NULL || (!s->exists && s->q_len == 0 && s->inflight == NULL))
            return op->err = ENG_E_UNKNOWN_SKU;
        break;
    case ENG_OP_PURCHASED:
    case ENG_OP_PURCHASE_FAILED: {
        o = line_of_op(e, op);
        if (o == NULL || o->status == ENG_ST_NONE)
            return op->err = ENG_E_NOT_FOUND;
        /* The worker holds a claim it must be able to end: no queue limit.
         * A failure fails the whole order: it waits for every line, and
         * for a part, for every other part of its order held here. */
        if (op->kind == ENG_OP_PURCHASE_FAILED && o->part) {
            eng_sku *skus[ENG_LINES_MAX];
            size_t n = 0;
            skus[n++] = o->sku;
            for (int32_t k = 0; k < o->n_lines; k++) {
                eng_order *sib = k == o->line_no ? NULL : line_find(e, op->order_id, k, true);
                if (sib != NULL && sib->part && sib->n_lines == o->n_lines &&
                    (sib->status == ENG_ST_HELD || sib->status == ENG_ST_CONFIRMED))
                    skus[n++] = sib->sku;
            }
            if (n == 1) {
                fifo_push(e, o->sku, op);
                return ENG_OK;
            }
            return op->err = push_tickets(e, op, skus, n);
        }
        if (op->kind == ENG_OP_PURCHASE_FAILED)
            return op->err = queue_on_order(e, op, o->head, false);
        fifo_push(e, o->sku, op);
        return ENG_OK;
    }
    case ENG_OP_SUPPLIER_PUT:
        if (!op->has_trust || !eng_trust_valid(&op->trust) || op->supplier.supplier_id[0] == '\0')
            return op->err = ENG_E_INVALID;
        s = &e->global;
        break;
    default:
        return op->err = ENG_E_INTERNAL;
    }
    if (!room_for(e, &s, 1))
        return op->err = ENG_E_BUSY;
    fifo_push(e, s, op);
    return ENG_OK;
}

/* Drops a placeholder order nobody waits for any more. */
static void order_maybe_drop(engine *e, eng_order *o)
{
    o = o->head;
    /* A ghost stays: expiry heap entries may point at it. */
    if (o->status == ENG_ST_NONE && o->pending == 0 && !order_inflight(o) && !o->ghost)
        order_free(e, o);
}

bool engine_cancel(engine *e, eng_op *op)
{
    if (op->state_ == OP_PARKED) {
        park_unlink(e, op);
    } else if (op->state_ != OP_QUEUED) {
        return false;
    } else if (op->tk_next != NULL) {
        tickets_free(e, op);
        op->state_ = OP_IDLE;
    } else {
        fifo_unlink(e, op);
    }
    if (op->kind == ENG_OP_RESERVE) {
        eng_order *o = order_of_op(e, op);
        assert(o != NULL && o->pending > 0);
        o->pending--;
        order_maybe_drop(e, o);
    }
    e->st.ops_done++;
    return true;
}

/* ------------------------------------------------------------ reads */

static void stock_view(const engine *e, const eng_sku *s, const eng_counters *c, eng_mapping m,
                       const eng_supplier_map *map, eng_stock_view *out)
{
    copy_id(out->sku, s->name);
    out->c = *c;
    out->mapping = m;
    out->has_map = (m == ENG_MAP_OK || m == ENG_MAP_BROKEN) && map != NULL;
    if (out->has_map) {
        out->map = *map;
        out->trust = eng_trust_effective(supp_trust(e, map->supplier_id));
    } else {
        memset(&out->map, 0, sizeof(out->map));
        out->trust = 0.0;
    }
    out->c.supplier_sellable = sellable_of(e, m, map, c->supplier_reported);
    out->available = eng_available(&out->c);
}

bool engine_stock_get(const engine *e, const char *sku, eng_stock_view *out)
{
    const eng_sku *s = sku_find(e, sku);
    if (s == NULL)
        return false;
    if (s->inflight != NULL) {
        const struct sku_write *w = s->inflight;
        if (!w->before_exists)
            return false;
        stock_view(e, s, &w->before, w->before_mapping, s->map ? &w->before_map : NULL, out);
        return true;
    }
    if (!s->exists)
        return false;
    stock_view(e, s, &s->c, s->mapping, s->map, out);
    return true;
}

bool engine_knows_sku(const engine *e, const char *sku)
{
    return sku_find(e, sku) != NULL;  /* a SKU set aside included: never reloaded */
}

bool engine_sku_supplier(const engine *e, const char *sku, eng_supplier_map *out)
{
    const eng_sku *s = sku_find(e, sku);
    if (s == NULL)
        return false;
    /* An in-flight batch may change the mapping: readers see the committed one. */
    if (s->inflight != NULL) {
        if (!s->inflight->before_exists || s->inflight->before_mapping != ENG_MAP_OK)
            return false;
        *out = s->inflight->before_map;
        return true;
    }
    if (!s->exists || s->mapping != ENG_MAP_OK || s->map == NULL)
        return false;
    *out = *s->map;
    return true;
}

/* True when the order has a committed record. */
static bool order_committed(const eng_order *h)
{
    if (h->inflight != NULL)
        return h->inflight->before.status != ENG_ST_NONE;
    return h->status != ENG_ST_NONE;
}

bool engine_order_get(const engine *e, const char *order_id, eng_order_view *out)
{
    const eng_order *o = order_find_id(e, order_id);
    if (o == NULL || !order_committed(o))
        return false;
    if (order_is_cart(o))
        order_whole_view(o, true, out);
    else
        line_committed(o, out);
    return true;
}

bool engine_part_get(const engine *e, const char *order_id, int32_t line_no, eng_order_view *out)
{
    if (line_no < 0 || line_no >= ENG_LINES_MAX)
        return false;
    okey key;
    make_key(order_id, line_no, true, &key);
    const eng_order *o = order_find(e, &key);
    if (o == NULL || !o->part || !order_committed(o))
        return false;
    line_committed(o, out);
    return true;
}

size_t engine_order_lines(const engine *e, const char *order_id, eng_line_view *out, size_t max)
{
    const eng_order *h = order_find_id(e, order_id);
    if (h == NULL || !order_committed(h))
        return 0;
    size_t n = 0;
    FOR_LINES((eng_order *)h, l) {
        if (n == max)
            break;
        eng_order_view v;
        line_committed(l, &v);
        view_to_line(&v, &out[n++]);
    }
    return n;
}

/* ------------------------------------------------------------ expiry */

uint32_t engine_expire_due(engine *e, int64_t now_ms)
{
    uint32_t n = park_due(e, now_ms) ? 1 : 0;
    while (e->heap_len > 0 && e->heap[0].at_ms <= now_ms && n < e->lim.expire_per_tick_max) {
        struct heap_item it = e->heap[0];
        eng_order *o = it.o;
        /* Entries go stale when the hold was confirmed or released; the
         * order itself is committed and never freed, so o is valid. */
        bool retry = o->part && it.at_ms > o->hold_expires_at_ms;  /* engine_part_retry */
        if (o->status != ENG_ST_HELD || (o->hold_expires_at_ms != it.at_ms && !retry)) {
            heap_pop(e);
            continue;
        }
        if (o->part) {
            /* Only the coordinator's decision may end a part's hold. */
            heap_pop(e);
            if (!o->part_listed) {
                o->part_listed = true;
                o->due_next = NULL;
                if (e->due_tail)
                    e->due_tail->due_next = o;
                else
                    e->due_head = o;
                e->due_tail = o;
            }
            continue;
        }
        eng_op *op = internal_op_new(e);
        if (op == NULL)
            break;  /* retried next tick */
        heap_pop(e);
        op->kind = ENG_OP_EXPIRE;
        copy_id(op->sku, o->sku->name);
        op->qty = o->qty;
        eng_order_view v;
        order_to_view(o, &v);
        copy_id(op->order_id, v.order_id);
        /* internal: bypasses the queue limits */
        if (queue_on_order(e, op, o, false) != ENG_OK) {
            internal_op_free(e, op);
            (void)heap_push(e, o->hold_expires_at_ms, o);
            break;
        }
        n++;
    }
    return n;
}

bool engine_part_due(engine *e, int64_t now_ms, eng_part_ref *out)
{
    while (e->due_head != NULL) {
        eng_order *o = e->due_head;
        e->due_head = o->due_next;
        if (e->due_head == NULL)
            e->due_tail = NULL;
        o->due_next = NULL;
        o->part_listed = false;
        if (o->status != ENG_ST_HELD || o->hold_expires_at_ms > now_ms)
            continue;  /* settled or re-held meanwhile */
        eng_order_view v;
        order_to_view(o, &v);
        copy_id(out->order_id, v.order_id);
        out->line_no = o->line_no;
        out->part_lines = o->n_lines;
        return true;
    }
    return false;
}

void engine_part_retry(engine *e, const eng_part_ref *p, int64_t at_ms)
{
    okey key;
    make_key(p->order_id, p->line_no, true, &key);
    eng_order *o = order_find(e, &key);
    if (o != NULL && o->part && o->status == ENG_ST_HELD)
        (void)heap_push(e, at_ms, o);  /* OOM: handed out again after a reload */
}

bool engine_supplier_report(engine *e, const char *sku, int64_t reported, int64_t synced_at_ms)
{
    return engine_supplier_report_for(e, sku, NULL, reported, synced_at_ms);
}

bool engine_supplier_report_for(engine *e, const char *sku, const eng_supplier_map *expect,
                                int64_t reported, int64_t synced_at_ms)
{
    eng_supplier_obs obs = {.reported = reported, .synced_at_ms = synced_at_ms};
    return engine_supplier_observe(e, sku, expect, &obs);
}

bool engine_supplier_observe(engine *e, const char *sku, const eng_supplier_map *expect,
                             const eng_supplier_obs *obs)
{
    assert(obs->reported >= 0 && obs->reported <= ENG_STOCK_MAX);
    eng_sku *s = sku_find(e, sku);
    if (s == NULL || s->aside)
        return false;
    /* Coalesced: a report still waiting (the SKU is blocked, e.g. the store
     * is down) takes the newer figure, so syncs cannot grow the FIFO. */
    eng_op *op = s->report_q;
    if (op == NULL) {
        if ((op = internal_op_new(e)) == NULL)
            return false;
        op->kind = ENG_OP_SUPPLIER_REPORT;
        copy_id(op->sku, s->name);
        fifo_push(e, s, op);  /* internal: bypasses the queue limits */
        s->report_q = op;
    }
    assert(op->kind == ENG_OP_SUPPLIER_REPORT && op->state_ == OP_QUEUED);
    /* A waiting "broken" stands: a later figure must not hide it. */
    if (op->reason[0] != '\0' && obs->broken[0] == '\0')
        return true;
    op->supplier_reported = obs->reported;
    op->synced_at_ms = obs->synced_at_ms;
    op->fingerprint = obs->fingerprint;
    size_t n = strnlen(obs->broken, ENG_REASON_MAX);
    memcpy(op->reason, obs->broken, n);
    op->reason[n] = '\0';
    op->has_supplier = expect != NULL;
    if (expect != NULL)
        op->supplier = *expect;
    return true;
}

/* ------------------------------------------------------------ purchases */

bool engine_purchase_claim(engine *e, eng_purchase *out)
{
    eng_order *o = e->pp_head;
    while (o != NULL && o->claimed)
        o = o->pp_next;
    if (o == NULL)
        return false;
    o->claimed = true;
    e->pp_claimed++;
    memset(out, 0, sizeof(*out));
    eng_order_view v;
    order_to_view(o, &v);
    copy_id(out->order_id, v.order_id);
    out->line_no = o->line_no;
    out->part_lines = o->part ? o->n_lines : 0;
    copy_id(out->sku, o->sku->name);
    out->qty = o->from_supplier;
    out->recovered = o->recovered;
    /* The committed mapping: an in-flight batch may be changing it. */
    const eng_sku *s = o->sku;
    eng_mapping m = s->inflight ? s->inflight->before_mapping : s->mapping;
    out->mapped = m == ENG_MAP_OK && s->map != NULL;
    if (out->mapped)
        out->map = s->inflight ? s->inflight->before_map : *s->map;
    return true;
}

void engine_purchase_unclaim(engine *e, const eng_purchase *p)
{
    eng_order *o = line_find(e, p->order_id, p->line_no, p->part_lines > 1);
    if (o == NULL || !o->in_purchases || !o->claimed)
        return;
    o->claimed = false;
    assert(e->pp_claimed > 0);
    e->pp_claimed--;
}

void engine_purchase_counts(const engine *e, uint32_t *unclaimed, uint32_t *claimed)
{
    *claimed = e->pp_claimed;
    *unclaimed = (uint32_t)(e->st.purchases_pending - e->pp_claimed);
}

int64_t engine_next_expiry_ms(const engine *e, int64_t now_ms)
{
    int64_t at = e->heap_len > 0 ? e->heap[0].at_ms : INT64_MAX;
    for (const eng_sku *s = e->pk_skus; s != NULL; s = s->pk_next)
        for (const eng_op *op = s->pk_head; op != NULL; op = op->next)
            if (op->wait_until_ < at)
                at = op->wait_until_;
    if (at == INT64_MAX)
        return -1;
    return at > now_ms ? at - now_ms : 0;
}

/* ------------------------------------------------------------ batches */

static eng_batch *batch_get(engine *e)
{
    eng_batch *b = e->free_batches;
    if (b != NULL) {
        e->free_batches = b->next_free;
    } else {
        size_t cap = e->lim.batch_ops_max;
        /* An op writes at most OP_ROWS_MAX rows of each kind, a supplier
         * report up to ENG_SETTLE_PER_REPORT more; batch_full() stops
         * taking ops before any array could overflow. */
        size_t rows = 2 * cap + ENG_SETTLE_PER_REPORT + 2 * OP_ROWS_ALL;
        b = calloc(1, sizeof(*b));
        if (b == NULL)
            return NULL;
        b->cap = cap;
        b->sw_cap = cap + ENG_LINES_MAX;
        b->rows_cap = rows;
        b->sw = calloc(b->sw_cap, sizeof(*b->sw));
        b->sku_rows = calloc(b->sw_cap, sizeof(*b->sku_rows));
        b->ow = calloc(rows, sizeof(*b->ow));
        b->order_rows = calloc(rows, sizeof(*b->order_rows));
        b->ledger = calloc(rows, sizeof(*b->ledger));
        b->jobs = calloc(rows, sizeof(*b->jobs));
        b->alerts = calloc(rows, sizeof(*b->alerts));
        b->alert_text = calloc(rows, sizeof(*b->alert_text));
        b->supw = calloc(cap, sizeof(*b->supw));
        b->sup_rows = calloc(cap, sizeof(*b->sup_rows));
        b->bal = calloc(ENG_ASIDE_ALERTS_PER_BATCH, sizeof(*b->bal));
        if (!b->sw || !b->sku_rows || !b->ow || !b->order_rows || !b->ledger || !b->jobs ||
            !b->alerts || !b->alert_text || !b->supw || !b->sup_rows || !b->bal) {
            batch_free_mem(b);
            return NULL;
        }
    }
    b->ops_head = b->ops_tail = NULL;
    b->n_ops = b->n_sw = b->n_ow = b->n_ledger = 0;
    b->n_jobs = b->n_alerts = b->n_supw = b->n_bal = 0;
    b->next_free = NULL;
    b->state = B_FLIGHT;
    return b;
}

static void batch_put(engine *e, eng_batch *b)
{
    b->state = B_FREE;
    if (b->cap != e->lim.batch_ops_max) {
        batch_free_mem(b);
        return;
    }
    b->next_free = e->free_batches;
    e->free_batches = b;
}

/* Every SKU taken into the batch has a sku_write (it blocks the SKU);
 * only the dirty ones are written. */
static struct sku_write *take_sku(eng_batch *b, eng_sku *s)
{
    assert(s->inflight == NULL);
    assert(b->n_sw < b->sw_cap);
    struct sku_write *w = &b->sw[b->n_sw++];
    w->sku = s;
    w->dirty = false;
    w->taken = 0;
    w->before_exists = s->exists;
    w->before_mapping = s->mapping;
    w->before = s->c;
    if (s->map != NULL)
        w->before_map = *s->map;
    s->inflight = w;
    return w;
}

/* True when the batch may not take another op: a single op could then
 * overflow one of its row arrays. */
static bool batch_full(const eng_batch *b)
{
    size_t room = b->rows_cap - ENG_SETTLE_PER_REPORT - OP_ROWS_ALL;
    return b->n_ops >= b->cap || b->n_sw >= b->cap || b->n_ow >= room ||
           b->n_ledger >= room || b->n_jobs >= room || b->n_alerts >= room;
}

static void touch_order(eng_batch *b, eng_order *o)
{
    if (o->inflight != NULL)
        return;
    assert(b->n_ow < b->rows_cap);
    struct order_write *w = &b->ow[b->n_ow++];
    w->o = o;
    order_to_view(o, &w->before);
    o->inflight = w;
}

static void ledger_add(eng_batch *b, const eng_sku *s, const char *order_id, eng_move move,
                       int64_t d_on_hand, int64_t d_own_res, int64_t d_sup_res,
                       int64_t d_sup_rep, const char *reason)
{
    assert(b->n_ledger < b->rows_cap);
    eng_ledger_row *r = &b->ledger[b->n_ledger++];
    r->sku = s->name;
    r->order_id = order_id;
    r->move = move;
    r->d_own_on_hand = d_on_hand;
    r->d_own_reserved = d_own_res;
    r->d_supplier_reserved = d_sup_res;
    r->d_supplier_reported = d_sup_rep;
    r->reason = reason;
    r->at_ms = b->now_ms;
}

static void job_add(eng_batch *b, const eng_order *o, bool insert, eng_job_state st)
{
    assert(b->n_jobs < b->rows_cap);
    eng_job_row *j = &b->jobs[b->n_jobs++];
    j->insert = insert;
    j->order_id = o->id;
    j->line_no = o->line_no;
    j->sku = o->sku->name;
    j->qty = o->from_supplier;
    if (insert && o->sku->map != NULL)
        j->map = *o->sku->map;
    else
        memset(&j->map, 0, sizeof(j->map));
    j->state = st;
    j->at_ms = b->now_ms;
}

/* kind is a literal and order_id an order's own (orders outlive their
 * batches); the reason is copied: the op that gave it may be answered,
 * and freed, before an UNKNOWN batch is resolved. */
static void alert_add_named(eng_batch *b, const char *kind, const char *sku,
                            const char *order_id, const char *reason)
{
    assert(b->n_alerts < b->rows_cap);
    char *text = b->alert_text[b->n_alerts];
    eng_alert_row *a = &b->alerts[b->n_alerts++];
    utf8_copy_cut(text, reason, ENG_REASON_MAX + 1);
    a->kind = kind;
    a->sku = sku;
    a->order_id = order_id;
    a->reason = text;
    a->at_ms = b->now_ms;
}

static void alert_add(eng_batch *b, const char *kind, const eng_sku *s, const char *order_id,
                      const char *reason)
{
    alert_add_named(b, kind, s->name, order_id, reason);
}

/* A supplier's settings are about to change in this batch: keep the
 * before-image once per batch. NULL on out of memory (nothing changes). */
static eng_supp *touch_supp(engine *e, eng_batch *b, const char *id)
{
    eng_supp *p = supp_get(e, id);
    if (p == NULL)
        return NULL;
    if (p->last_batch != b->id + 1) {
        assert(b->n_supw < b->cap);
        b->supw[b->n_supw].p = p;
        b->supw[b->n_supw].before = p->t;
        b->n_supw++;
        p->last_batch = b->id + 1;
    }
    return p;
}

/* Adaptive trust (engine.h eng_trust): the factor in use moves. */
static void trust_adapt(engine *e, eng_batch *b, const eng_sku *s, bool success)
{
    if (s->map == NULL)
        return;
    eng_supp *p = touch_supp(e, b, s->map->supplier_id);
    if (p == NULL)
        return;
    double *f = p->t.event_mode ? &p->t.event_trust : &p->t.trust;
    if (success) {
        *f += e->lim.trust_step;
        if (*f > p->t.ceiling)
            *f = p->t.ceiling;
    } else {
        *f *= e->lim.trust_cut;
    }
    assert(eng_trust_valid(&p->t));
}

/* The live offer no longer matches the mapping: stop selling its stock. */
static void map_break(engine *e, eng_batch *b, eng_sku *s, const char *reason)
{
    if (s->mapping != ENG_MAP_OK)
        return;
    s->mapping = ENG_MAP_BROKEN;
    sku_recompute_sellable(e, s);
    alert_add(b, "mapping_broken", s, "", reason);
    e->st.mappings_broken++;
}

/* Returns an order's stock to the SKU (release, expire). */
static void order_return_stock(eng_batch *b, eng_order *o, eng_status to, eng_move move)
{
    eng_sku *s = o->sku;
    touch_order(b, o);
    s->c.own_reserved -= o->from_own;
    s->c.supplier_reserved -= o->from_supplier;
    counters_check(&s->c);
    o->status = to;
    o->hold_expires_at_ms = 0;
    o->updated_at_ms = b->now_ms;
    o->available = eng_available(&s->c);
    ledger_add(b, s, o->id, move, 0, -o->from_own, -o->from_supplier, 0, "");
}

/* The op's view of its order: the whole order, or the line / part. */
static void op_view(eng_op *op, const eng_order *o)
{
    if (order_is_cart(o->head))
        order_whole_view(o->head, false, &op->order);
    else
        order_to_view(o, &op->order);
}

/* Takes a line's quantity: own stock first, then supplier stock. */
static void reserve_line(eng_batch *b, const eng_op *op, eng_order *o)
{
    eng_sku *s = o->sku;
    int64_t own_free = s->c.own_on_hand - s->c.own_reserved;
    int32_t from_own = (int32_t)(o->qty < own_free ? o->qty : own_free);
    int32_t from_sup = o->qty - from_own;
    touch_order(b, o);
    s->c.own_reserved += from_own;
    s->c.supplier_reserved += from_sup;
    counters_check(&s->c);
    o->status = op->hold_ms > 0 ? ENG_ST_HELD : ENG_ST_CONFIRMED;
    o->from_own = from_own;
    o->from_supplier = from_sup;
    o->created_at_ms = o->updated_at_ms = b->now_ms;
    o->hold_expires_at_ms = op->hold_ms > 0 ? b->now_ms + op->hold_ms : 0;
    o->available = eng_available(&s->c);
    ledger_add(b, s, o->id, ENG_MOVE_RESERVE, 0, from_own, from_sup, 0, "");
    if (purchase_due(o))
        job_add(b, o, true, ENG_JOB_PENDING);
    if (o->part) {
        o->attempt = op->attempt;
        if (part_deciding(o))
            dec_link(o);
    }
}

/* The first line that cannot be met, or NULL: all lines are checked
 * before any is taken (lines of one SKU were summed at submit). */
static eng_order *first_unmet(eng_op *op, eng_order *h)
{
    FOR_LINES(h, l) {
        const eng_sku *s = l->sku;
        int64_t avail = s->exists ? eng_available(&s->c) : 0;
        if (!s->exists) {
            op->err = ENG_E_UNKNOWN_SKU;
        } else if (l->qty > avail) {
            op->err = ENG_E_INSUFFICIENT;
            op->err_available = avail;
        } else {
            continue;
        }
        op->err_line = op->n_lines > 0 ? op_line_index(op, l) : -1;
        return l;
    }
    return NULL;
}

static void decide_reserve(engine *e, eng_batch *b, eng_op *op, eng_order *h)
{
    assert(h != NULL && h->head == h && h->pending > 0);
    h->pending--;
    if (h->status != ENG_ST_NONE) {
        /* A retry: the current record, nothing changes. */
        bool same;
        if (order_is_cart(h)) {
            eng_cart c;
            int32_t bad;
            same = op->n_lines > 0 && eng_cart_of(op->lines, op->n_lines, &c, &bad) &&
                   cart_matches(h, &c);
        } else {
            same = strcmp(h->sku->name, op->sku) == 0 && h->qty == op->qty;
        }
        if (!same) {
            op->err = ENG_E_CONFLICT;
            return;
        }
        if (h->part && h->status == ENG_ST_HELD && op->attempt != 0) {
            /* Another coordination of the order found it held: its part
             * now (an erase by the one before is refused), deciding. */
            h->attempt = op->attempt;
            dec_link(h);
        }
        op_view(op, h);
        return;
    }
    if (first_unmet(op, h) != NULL) {
        if (h->part && op->err == ENG_E_INSUFFICIENT && short_for_deciding(h->sku, h->qty)) {
            op->err_deciding = true;
            if (op->wait_ms > 0 && !op->wait_over_) {
                /* Wait for the deciding parts instead (engine.h "Waiting"):
                 * nothing was decided, the placeholder stays. */
                op->err = ENG_OK;
                op->err_available = 0;
                op->err_line = -1;
                op->park_ = true;
                h->pending++;
                return;
            }
            if (op->wait_over_)
                e->st.park_timeouts++;
        }
        order_maybe_drop(e, h);
        return;
    }
    FOR_LINES(h, l)
        reserve_line(b, op, l);
    op_view(op, h);
}

static bool line_shippable(const eng_order *l)
{
    return (l->status == ENG_ST_CONFIRMED && l->from_supplier == 0) ||
           l->status == ENG_ST_PURCHASED;
}

static eng_status order_status_working(const eng_order *h)
{
    if (h->line_next == NULL)
        return h->status;
    eng_line_view lv[ENG_LINES_MAX];
    size_t n = 0;
    FOR_LINES((eng_order *)h, l) {
        lv[n].status = l->status;
        lv[n].from_supplier = l->from_supplier;
        n++;
    }
    return eng_order_status_of(lv, n);
}

static void confirm_line(eng_batch *b, eng_order *o)
{
    touch_order(b, o);
    o->status = ENG_ST_CONFIRMED;
    o->hold_expires_at_ms = 0;
    o->updated_at_ms = b->now_ms;
    o->available = eng_available(&o->sku->c);
    if (purchase_due(o))
        job_add(b, o, true, ENG_JOB_PENDING);
}

static void ship_line(eng_batch *b, eng_order *o)
{
    eng_sku *s = o->sku;
    touch_order(b, o);
    s->c.own_on_hand -= o->from_own;
    s->c.own_reserved -= o->from_own;
    counters_check(&s->c);
    o->status = ENG_ST_SHIPPED;
    o->updated_at_ms = b->now_ms;
    o->available = eng_available(&s->c);
    ledger_add(b, s, o->id, ENG_MOVE_SHIP, -o->from_own, -o->from_own, 0, 0, "");
}

/* A line's purchase failed for good: every other line still held or
 * confirmed gives its stock back and ends failed (all or nothing); lines
 * already bought stay bought (the alert of the failed line says so). */
static void fail_open_lines(eng_batch *b, eng_order *h, const eng_order *except,
                            const char *reason)
{
    FOR_LINES(h, l) {
        if (l == except || (l->status != ENG_ST_CONFIRMED && l->status != ENG_ST_HELD))
            continue;
        if (l->status == ENG_ST_CONFIRMED && purchase_due(l))
            job_add(b, l, false, ENG_JOB_CANCELLED);
        order_return_stock(b, l, ENG_ST_FAILED, ENG_MOVE_FAIL);
        set_str(&l->reason, reason);
    }
}

static void expire_all(eng_batch *b, eng_order *h)
{
    FOR_LINES(h, l)
        order_return_stock(b, l, ENG_ST_EXPIRED, ENG_MOVE_EXPIRE);
}

/* A part of an order that never was (engine.h "Erasing"): its stock back,
 * its row deleted when the batch commits (batch_seal), a ghost after. */
static void erase_part(eng_batch *b, eng_op *op, eng_order *h)
{
    assert(h->part);
    if (op->attempt != 0 && (h->attempt != op->attempt || h->status != ENG_ST_HELD)) {
        op->err = ENG_E_CONFLICT;  /* another coordination's part now */
    } else if (h->status == ENG_ST_HELD) {
        order_return_stock(b, h, ENG_ST_NONE, ENG_MOVE_RELEASE);
    } else if (h->status == ENG_ST_RELEASED || h->status == ENG_ST_EXPIRED) {
        touch_order(b, h);
        h->status = ENG_ST_NONE;
        h->updated_at_ms = b->now_ms;
    } else {
        op->err = ENG_E_INVALID_STATE;
    }
}

/* confirm, release, ship, expire: on the whole order (every line), or on
 * a part. All lines or none: the checks run before any line changes. */
static void decide_order_op(engine *e, eng_batch *b, eng_op *op, eng_order *h)
{
    if (h == NULL || h->status == ENG_ST_NONE) {
        op->err = ENG_E_NOT_FOUND;
        return;
    }
    eng_status st = order_status_working(h);
    bool lapsed = st == ENG_ST_HELD && b->now_ms >= h->hold_expires_at_ms;
    eng_order *blocking = NULL;
    switch (op->kind) {
    case ENG_OP_CONFIRM:
        if (st == ENG_ST_HELD && lapsed && !(h->part && op->decided)) {
            /* A part's lapse is the coordinator's to settle. */
            if (!h->part)
                expire_all(b, h);
            op->err = ENG_E_EXPIRED;
        } else if (st == ENG_ST_HELD) {
            FOR_LINES(h, l)
                confirm_line(b, l);
        } else if (st == ENG_ST_EXPIRED) {
            op->err = ENG_E_EXPIRED;
        } else if (st == ENG_ST_RELEASED || st == ENG_ST_FAILED) {
            op->err = ENG_E_INVALID_STATE;
        }
        break;
    case ENG_OP_RELEASE:
        if (op->erase) {
            erase_part(b, op, h);
            break;
        }
        if (op->as_failed) {
            fail_open_lines(b, h, NULL, op->reason[0] ? op->reason : "another line failed");
            break;
        }
        FOR_LINES(h, l)
            if (blocking == NULL && l->status != ENG_ST_HELD && l->status != ENG_ST_CONFIRMED)
                blocking = l;
        if (blocking == NULL) {
            eng_status to = op->as_expired ? ENG_ST_EXPIRED : ENG_ST_RELEASED;
            eng_move mv = op->as_expired ? ENG_MOVE_EXPIRE : ENG_MOVE_RELEASE;
            FOR_LINES(h, l) {
                if (l->status == ENG_ST_CONFIRMED && purchase_due(l))
                    job_add(b, l, false, ENG_JOB_CANCELLED);
                order_return_stock(b, l, to, mv);
            }
        } else if (st != ENG_ST_RELEASED && st != ENG_ST_EXPIRED) {
            op->err = ENG_E_INVALID_STATE;
            st = blocking->status;
        }
        break;
    case ENG_OP_SHIP:
        /* Supplier units ship only once bought upstream (purchased). */
        FOR_LINES(h, l)
            if (blocking == NULL && !line_shippable(l))
                blocking = l;
        if (blocking == NULL) {
            FOR_LINES(h, l)
                ship_line(b, l);
        } else if (st != ENG_ST_SHIPPED) {
            op->err = ENG_E_INVALID_STATE;
            st = blocking->status;
        }
        break;
    case ENG_OP_EXPIRE:
        if (lapsed && !h->part) {
            expire_all(b, h);
            e->st.holds_expired++;
        }
        break;
    default:
        assert(!"not an order op");
    }
    if (op->err == ENG_E_INVALID_STATE)
        op->err_status = st;
    if (op->err == ENG_OK)
        op_view(op, h);
    if (op->err == ENG_OK && op->erase)
        op->order.status = ENG_ST_RELEASED;  /* its record is gone; its stock is back */
}

static bool in_batch(const eng_batch *b, const eng_sku *s);

/* The purchase worker bought the order's supplier units upstream. */
static void decide_purchased(engine *e, eng_batch *b, eng_op *op, eng_order *o)
{
    if (o == NULL || o->status == ENG_ST_NONE) {
        op->err = ENG_E_NOT_FOUND;
        return;
    }
    const char *up = o->upstream_order_id ? o->upstream_order_id : "";
    if (o->status == ENG_ST_CONFIRMED && o->from_supplier > 0) {
        touch_order(b, o);
        o->status = ENG_ST_PURCHASED;
        set_str(&o->upstream_order_id, op->upstream_order_id);
        o->purchased_at_ms = o->updated_at_ms = b->now_ms;
        o->available = eng_available(&o->sku->c);
        job_add(b, o, false, ENG_JOB_DONE);
        trust_adapt(e, b, o->sku, true);
        e->st.purchased++;
    } else if ((o->status == ENG_ST_RELEASED || o->status == ENG_ST_EXPIRED) &&
               strcmp(up, op->upstream_order_id) != 0) {
        /* Bought after the gateway let the order go: the units are the
         * shop's now, on a 1688 order nobody sells. Support cancels it. */
        touch_order(b, o);
        set_str(&o->upstream_order_id, op->upstream_order_id);
        o->updated_at_ms = b->now_ms;
        alert_add(b, "purchase_after_release", o->sku, o->id, op->upstream_order_id);
    } else if (!(o->status == ENG_ST_PURCHASED || o->status == ENG_ST_SHIPPED ||
                 o->status == ENG_ST_RELEASED || o->status == ENG_ST_EXPIRED ||
                 o->status == ENG_ST_FAILED)) {
        op->err = ENG_E_INVALID_STATE;
        op->err_status = o->status;
        return;
    } else if (o->status == ENG_ST_FAILED && strcmp(up, op->upstream_order_id) != 0) {
        /* Another line failed the order after this one was sent: bought
         * for an order that will not ship. */
        touch_order(b, o);
        set_str(&o->upstream_order_id, op->upstream_order_id);
        o->updated_at_ms = b->now_ms;
        alert_add(b, "purchase_after_release", o->sku, o->id, op->upstream_order_id);
    }
    op_view(op, o);
}

/* The purchase failed for good: the order is rolled back, and the SKU
 * learns what the check proved. */
static void decide_purchase_failed(engine *e, eng_batch *b, eng_op *op, eng_order *o)
{
    if (o == NULL || o->status == ENG_ST_NONE) {
        op->err = ENG_E_NOT_FOUND;
        return;
    }
    if (o->status == ENG_ST_FAILED) {
        op_view(op, o);  /* a repeat */
        return;
    }
    if (o->status != ENG_ST_CONFIRMED || o->from_supplier == 0) {
        op->err = ENG_E_INVALID_STATE;
        op->err_status = o->status;
        return;
    }
    eng_sku *s = o->sku;
    const char *why = op->reason[0] ? op->reason : eng_fail_kind_name(op->fail_kind);
    job_add(b, o, false, ENG_JOB_FAILED);
    order_return_stock(b, o, ENG_ST_FAILED, ENG_MOVE_FAIL);
    set_str(&o->reason, why);
    alert_add(b, "purchase_failed", s, o->id, op->reason);
    if (order_is_cart(o->head)) {
        /* All or nothing: the order's other lines not yet bought go too. */
        char other[ENG_REASON_MAX + 1];
        eng_line_failed_reason(o->line_no, why, other);
        fail_open_lines(b, o->head, o, other);
    } else if (o->part) {
        /* The order's other parts held here go in the same commit (their
         * purchase jobs cancelled, never sent); parts elsewhere are the
         * cascade's (cart.h). Only those whose SKU this batch holds: the
         * ones the op waited for. */
        char other[ENG_REASON_MAX + 1];
        eng_line_failed_reason(o->line_no, why, other);
        for (int32_t k = 0; k < o->n_lines; k++) {
            eng_order *sib = k == o->line_no ? NULL : line_find(e, op->order_id, k, true);
            if (sib != NULL && sib->part && sib->n_lines == o->n_lines && in_batch(b, sib->sku))
                fail_open_lines(b, sib, NULL, other);
        }
    }
    switch (op->fail_kind) {
    case ENG_FAIL_STOCK:
        /* The check proved the figure wrong; believe nothing until the
         * next sync, and believe this supplier less from now on. */
        if (s->c.supplier_reported != 0)
            ledger_add(b, s, "", ENG_MOVE_SYNC, 0, 0, 0, -s->c.supplier_reported, "check: insufficient");
        s->c.supplier_reported = 0;
        trust_adapt(e, b, s, false);
        break;
    case ENG_FAIL_LINK:
        map_break(e, b, s, op->reason);
        break;
    default:
        break;
    }
    sku_recompute_sellable(e, s);
    o->available = eng_available(&s->c);
    e->st.purchase_failed++;
    op_view(op, o);
}

static void decide_supplier_put(engine *e, eng_batch *b, eng_op *op)
{
    eng_supp *p = touch_supp(e, b, op->supplier.supplier_id);
    if (p == NULL) {
        op->err = ENG_E_INTERNAL;
        return;
    }
    p->t = op->trust;
}

/* The same upstream spec: what the figures are read from (cap and
 * fingerprint aside). */
static bool map_same_link(const eng_supplier_map *a, const eng_supplier_map *b)
{
    return strcmp(a->supplier_id, b->supplier_id) == 0 && a->offer_id == b->offer_id &&
           strcmp(a->spec_id, b->spec_id) == 0 && a->sku_id == b->sku_id;
}

static void decide_sku_put(engine *e, eng_batch *b, eng_op *op, eng_sku *s)
{
    eng_counters c = s->exists ? s->c : (eng_counters){0};
    eng_mapping mapping = s->exists ? s->mapping : ENG_MAP_NONE;
    op->mapping_new = op->has_supplier &&
                      !(s->exists && s->mapping == ENG_MAP_OK && s->map != NULL &&
                        map_same_link(s->map, &op->supplier));
    if (op->has_own_on_hand) {
        if (op->own_on_hand < c.own_reserved) {
            op->err = ENG_E_INSUFFICIENT;
            op->err_available = s->exists ? eng_available(&s->c) : 0;
            return;
        }
        c.own_on_hand = op->own_on_hand;
    }
    if (op->has_supplier) {
        if (s->map == NULL && (s->map = malloc(sizeof(*s->map))) == NULL) {
            op->err = ENG_E_INTERNAL;
            return;
        }
        *s->map = op->supplier;
        mapping = ENG_MAP_OK;
        (void)supp_get(e, op->supplier.supplier_id);  /* OOM: defaults all the same */
    }
    if (op->has_supplier_reported) {
        c.supplier_reported = op->supplier_reported;
        c.supplier_synced_at_ms = b->now_ms;
        if (mapping == ENG_MAP_NONE)
            mapping = ENG_MAP_MANUAL;
    }
    int64_t d_on_hand = c.own_on_hand - (s->exists ? s->c.own_on_hand : 0);
    int64_t d_rep = c.supplier_reported - (s->exists ? s->c.supplier_reported : 0);
    s->c = c;
    s->mapping = mapping;
    s->exists = true;
    sku_recompute_sellable(e, s);
    counters_check(&s->c);
    ledger_add(b, s, "", ENG_MOVE_PUT, d_on_hand, 0, 0, d_rep, "");
    stock_view(e, s, &s->c, s->mapping, s->map, &op->stock);
}

static void decide_adjust(engine *e, eng_batch *b, eng_op *op, eng_sku *s)
{
    if (!s->exists) {
        op->err = ENG_E_UNKNOWN_SKU;
        return;
    }
    int64_t nv = s->c.own_on_hand + op->delta;
    if (nv < s->c.own_reserved) {
        op->err = ENG_E_INSUFFICIENT;
        op->err_available = eng_available(&s->c);
        return;
    }
    if (nv > ENG_STOCK_MAX) {
        op->err = ENG_E_INVALID;
        return;
    }
    s->c.own_on_hand = nv;
    counters_check(&s->c);
    ledger_add(b, s, "", ENG_MOVE_ADJUST, op->delta, 0, 0, 0, op->reason);
    stock_view(e, s, &s->c, s->mapping, s->map, &op->stock);
}

static bool same_map(const eng_supplier_map *a, const eng_supplier_map *b)
{
    return a->offer_id == b->offer_id && a->sku_id == b->sku_id &&
           strcmp(a->spec_id, b->spec_id) == 0 && strcmp(a->supplier_id, b->supplier_id) == 0;
}

/* Bought units a snapshot taken at synced_at_ms must already show leave
 * supplier_reserved, each exactly once (DESIGN.md §2). */
static void settle_bought(engine *e, eng_batch *b, eng_sku *s, int64_t synced_at_ms)
{
    uint32_t n = 0;
    for (eng_order *o = s->orders; o != NULL && n < ENG_SETTLE_PER_REPORT; o = o->sku_next) {
        if ((o->status != ENG_ST_PURCHASED && o->status != ENG_ST_SHIPPED) ||
            o->supplier_settled || o->from_supplier == 0 || o->purchased_at_ms <= 0 ||
            o->purchased_at_ms > synced_at_ms - e->lim.upstream_lag_ms)
            continue;
        touch_order(b, o);
        o->supplier_settled = true;
        s->c.supplier_reserved -= o->from_supplier;
        counters_check(&s->c);
        ledger_add(b, s, o->id, ENG_MOVE_SETTLE, 0, 0, -o->from_supplier, 0, "");
        e->st.settled_units += (uint64_t)o->from_supplier;
        n++;
    }
}

/* What a sync saw: only for a mapped SKU still mapped as it was read.
 * Returns whether it wrote (the SKU row, for synced_at, even when the
 * figure is unchanged; a ledger row only when it changed). */
static bool decide_supplier_report(engine *e, eng_batch *b, eng_op *op, eng_sku *s)
{
    if (!s->exists || s->mapping != ENG_MAP_OK || s->map == NULL)
        return false;
    if (op->has_supplier && !same_map(&op->supplier, s->map))
        return false;
    if (op->reason[0] != '\0') {
        map_break(e, b, s, op->reason);
        return true;
    }
    if (op->fingerprint != 0 && s->map->fingerprint != op->fingerprint) {
        if (s->map->fingerprint != 0) {
            map_break(e, b, s, "fingerprint changed (price or attributes)");
            return true;
        }
        s->map->fingerprint = op->fingerprint;  /* first sight: adopted */
    }
    /* A figure asked for before the one we hold (a retried push, a slow
     * call) is older news: it must not undo the newer one. */
    if (op->synced_at_ms < s->c.supplier_synced_at_ms)
        return true;
    int64_t d_rep = op->supplier_reported - s->c.supplier_reported;
    s->c.supplier_reported = op->supplier_reported;
    if (op->synced_at_ms > s->c.supplier_synced_at_ms)
        s->c.supplier_synced_at_ms = op->synced_at_ms;
    counters_check(&s->c);
    if (d_rep != 0)
        ledger_add(b, s, "", ENG_MOVE_SYNC, 0, 0, 0, d_rep, "");
    settle_bought(e, b, s, op->synced_at_ms);
    sku_recompute_sellable(e, s);
    return true;
}

/* Decides one op against its SKU's working state; returns whether it
 * wrote anything. Any write makes the SKU row dirty, so every batch that
 * touches a SKU passes that SKU's epoch fence. */
static bool decide(engine *e, eng_batch *b, eng_op *op)
{
    eng_sku *s = op->sku_p;
    size_t ledger_before = b->n_ledger, ow_before = b->n_ow, alerts_before = b->n_alerts;
    switch (op->kind) {
    case ENG_OP_RESERVE:
        decide_reserve(e, b, op, order_of_op(e, op));
        break;
    case ENG_OP_CONFIRM:
    case ENG_OP_RELEASE:
    case ENG_OP_SHIP:
    case ENG_OP_EXPIRE:
        decide_order_op(e, b, op, order_of_op(e, op));
        break;
    case ENG_OP_SKU_PUT:
        decide_sku_put(e, b, op, s);
        break;
    case ENG_OP_ADJUST:
        decide_adjust(e, b, op, s);
        break;
    case ENG_OP_SUPPLIER_REPORT:
        return decide_supplier_report(e, b, op, s);
    case ENG_OP_PURCHASED:
        decide_purchased(e, b, op, line_of_op(e, op));
        break;
    case ENG_OP_PURCHASE_FAILED:
        decide_purchase_failed(e, b, op, line_of_op(e, op));
        break;
    case ENG_OP_SUPPLIER_PUT:
        decide_supplier_put(e, b, op);
        return false;  /* no SKU row: its supplier row makes the batch */
    default:
        assert(!"bad op kind");
    }
    return b->n_ledger != ledger_before || b->n_ow != ow_before || b->n_alerts != alerts_before;
}

static void batch_append_op(eng_batch *b, eng_op *op)
{
    op->next = NULL;
    op->prev = b->ops_tail;
    if (b->ops_tail)
        b->ops_tail->next = op;
    else
        b->ops_head = op;
    b->ops_tail = op;
    b->n_ops++;
}

/* Builds the exported rows from the working state after all decisions. */
static void batch_seal(eng_batch *b)
{
    size_t k = 0;
    for (size_t i = 0; i < b->n_sw; i++) {
        if (!b->sw[i].dirty)
            continue;
        const eng_sku *s = b->sw[i].sku;
        eng_sku_row *r = &b->sku_rows[k++];
        r->sku = s->name;
        r->insert = !b->sw[i].before_exists;
        r->c = s->c;
        r->mapping = s->mapping;
        r->map = (s->mapping == ENG_MAP_OK || s->mapping == ENG_MAP_BROKEN) ? s->map : NULL;
        r->epoch = s->epoch;
    }
    b->n_sku_rows = k;
    for (size_t i = 0; i < b->n_ow; i++) {
        eng_order_row *r = &b->order_rows[i];
        r->insert = b->ow[i].before.status == ENG_ST_NONE;
        const eng_order *o = b->ow[i].o;
        r->erase = o->status == ENG_ST_NONE;
        order_to_view(o, &r->o);
        eng_status st = r->o.status;
        r->notify = st != b->ow[i].before.status &&
                    (st == ENG_ST_PURCHASED || st == ENG_ST_FAILED || st == ENG_ST_EXPIRED);
        if (r->notify && order_is_cart(o->head)) {
            /* Told once per batch, when the whole order reached it. */
            eng_order *h = o->head;
            r->notify = h->notify_mark != b->id + 1 && order_status_working(h) == st;
            if (r->notify)
                h->notify_mark = b->id + 1;
        }
    }
    for (size_t i = 0; i < b->n_supw; i++) {
        b->sup_rows[i].supplier_id = b->supw[i].p->id;
        b->sup_rows[i].t = b->supw[i].p->t;
    }
}

static bool in_batch(const eng_batch *b, const eng_sku *s)
{
    return s->inflight != NULL && s->inflight >= b->sw && s->inflight < b->sw + b->n_sw;
}

/* True when every ticket of op heads its FIFO and its SKU is free or in b;
 * *need is how many SKUs b would have to take. */
static bool tickets_ready(const eng_batch *b, const eng_op *op, size_t *need)
{
    size_t n = 0;
    for (const eng_op *t = op->tk_next; t != NULL; t = t->tk_next) {
        const eng_sku *s = t->sku_p;
        if (s->q_head != t)
            return false;
        if (s->inflight == NULL)
            n++;
        else if (!in_batch(b, s))
            return false;
    }
    *need = n;
    return true;
}

/* Decides an op that waited on several FIFOs, once it heads all of them:
 * every SKU it names joins the batch, so the decision is one commit.
 * False when it must wait (a sibling FIFO is behind, or the batch is full);
 * then a later pass over the sibling SKU takes it. */
static bool take_tickets(engine *e, eng_batch *b, eng_op *op)
{
    size_t need;
    if (!tickets_ready(b, op, &need) || b->n_sw + need > b->sw_cap)
        return false;
    for (eng_op *t = op->tk_next; t != NULL; t = t->tk_next) {
        eng_sku *s = t->sku_p;
        if (s->inflight == NULL) {
            (void)take_sku(b, s);
            if (s->exists)
                sku_recompute_sellable(e, s);
        }
        fifo_unlink(e, t);  /* keeps t->sku_p: read below */
    }
    op->state_ = OP_BATCHED;
    batch_append_op(b, op);
    bool wrote = decide(e, b, op);
    eng_op *t = op->tk_next;
    while (t != NULL) {
        eng_op *next = t->tk_next;
        if (wrote)
            t->sku_p->inflight->dirty = true;
        internal_op_free(e, t);
        t = next;
    }
    op->tk_next = NULL;
    return true;
}

/* Decides the ops at the head of a SKU the batch holds, up to
 * batch_sku_ops_max, stopping at an order that must wait for a sibling. */
static void drain_sku(engine *e, eng_batch *b, struct sku_write *w)
{
    eng_sku *s = w->sku;
    while (w->taken < e->lim.batch_sku_ops_max && !batch_full(b) && s->q_head != NULL) {
        eng_op *op = s->q_head;
        w->taken++;
        if (op->tk_parent != NULL) {
            if (!take_tickets(e, b, op->tk_parent))
                break;
            continue;
        }
        fifo_unlink(e, op);
        op->state_ = OP_BATCHED;
        batch_append_op(b, op);
        if (decide(e, b, op))
            w->dirty = true;
        if (op->park_) {
            /* It waits off the FIFO: not in this batch, not answered. */
            assert(b->ops_tail == op);
            b->ops_tail = op->prev;
            if (b->ops_tail)
                b->ops_tail->next = NULL;
            else
                b->ops_head = NULL;
            b->n_ops--;
            op->park_ = false;
            park(e, s, op);
            if (!op->waited_)
                e->st.park_waits++;
            op->waited_ = true;
        }
    }
}

bool engine_has_ready(const engine *e)
{
    return e->ready_head != NULL || e->pal_len > 0;
}

/* Set-aside alerts ride in the next batch (alerts are written by batches,
 * so none is lost): the oldest ENG_ASIDE_ALERTS_PER_BATCH. */
static void take_aside_alerts(engine *e, eng_batch *b)
{
    size_t n = e->pal_len < ENG_ASIDE_ALERTS_PER_BATCH ? e->pal_len : ENG_ASIDE_ALERTS_PER_BATCH;
    if (n == 0)
        return;
    memcpy(b->bal, e->pal, n * sizeof(*b->bal));
    memmove(e->pal, e->pal + n, (e->pal_len - n) * sizeof(*e->pal));
    e->pal_len -= n;
    b->n_bal = n;
    for (size_t i = 0; i < n; i++)
        alert_add_named(b, "set_aside", b->bal[i].sku, b->bal[i].order_id, b->bal[i].why);
}

/* The batch did not commit: its set-aside alerts wait again, first. */
static void give_back_aside_alerts(engine *e, eng_batch *b)
{
    size_t room = ENG_ASIDE_ALERTS_MAX - e->pal_len, n = b->n_bal;
    if (n > room) {
        e->st.aside_alerts_dropped += n - room;
        n = room;
    }
    if (n > 0 && e->pal != NULL) {
        memmove(e->pal + n, e->pal, e->pal_len * sizeof(*e->pal));
        memcpy(e->pal, b->bal, n * sizeof(*e->pal));
        e->pal_len += n;
    }
    b->n_bal = 0;
}

eng_batch *engine_next_batch(engine *e, int64_t now_ms)
{
    if (e->ready_head == NULL && e->pal_len == 0)
        return NULL;
    eng_batch *b = batch_get(e);
    if (b == NULL)
        return NULL;  /* out of memory: the work stays queued */
    b->id = e->next_batch_id++;
    b->now_ms = now_ms;
    take_aside_alerts(e, b);
    /* Every SKU the batch takes is drained in turn (sw order), so the SKUs
     * an order of several lines pulls in decide their following ops in the
     * same batch too. */
    size_t cur = 0;
    while (!batch_full(b)) {
        if (cur < b->n_sw) {
            drain_sku(e, b, &b->sw[cur++]);
            continue;
        }
        eng_sku *s = ready_pop(e);
        if (s == NULL)
            break;
        if (s->q_len == 0 || s->inflight != NULL)
            continue;
        size_t need;
        if (s->q_head->tk_parent != NULL && !tickets_ready(b, s->q_head->tk_parent, &need))
            continue;  /* waits on a sibling FIFO, whose pass takes it */
        (void)take_sku(b, s);
        if (s->exists && !s->global)
            sku_recompute_sellable(e, s);  /* trust may have moved since its last batch */
    }
    if (b->n_ops == 0 && b->n_bal == 0) {
        for (size_t i = 0; i < b->n_sw; i++) {
            b->sw[i].sku->inflight = NULL;
            ready_push(e, b->sw[i].sku);
        }
        batch_put(e, b);
        return NULL;
    }
    batch_seal(b);
    e->st.batches++;
    e->st.batch_ops += b->n_ops;
    e->st.batches_in_flight++;
    return b;
}

/* Calls done() for the batch's client ops (err overrides their decision
 * when not ENG_OK) and frees or re-arms the internal ones. */
static void answer_ops(engine *e, eng_batch *b, eng_err err, bool unknown, bool keep_internal)
{
    eng_op *op = b->ops_head, *keep_head = NULL, *keep_tail = NULL;
    size_t kept = 0;
    while (op != NULL) {
        eng_op *next = op->next;
        if (op_internal(op)) {
            if (keep_internal) {
                op->next = NULL;
                if (keep_tail)
                    keep_tail->next = op;
                else
                    keep_head = op;
                keep_tail = op;
                kept++;
            } else {
                internal_op_free(e, op);
                e->st.ops_done++;
            }
        } else {
            op->next = op->prev = NULL;
            op->state_ = OP_IDLE;
            if (err != ENG_OK) {
                op->err = err;
                op->outcome_unknown = unknown;
            }
            e->st.ops_done++;
            op_done(e, op);  /* may free op */
        }
        op = next;
    }
    b->ops_head = keep_head;
    b->ops_tail = keep_tail;
    b->n_ops = kept;
}

/* The batch's decisions are committed: they become the readers' state. */
static void batch_finalize(engine *e, eng_batch *b)
{
    for (size_t i = 0; i < b->n_ow; i++) {
        eng_order *o = b->ow[i].o;
        const eng_order_view *before = &b->ow[i].before;
        o->inflight = NULL;
        if (o->head == o && o->status == ENG_ST_HELD &&
            (before->status != ENG_ST_HELD || before->hold_expires_at_ms != o->hold_expires_at_ms))
            (void)heap_push(e, o->hold_expires_at_ms, o); /* OOM: expired by confirm */
        pp_sync(e, o, false);
        if (o->status == ENG_ST_NONE && before->status != ENG_ST_NONE) {
            o->ghost = true;  /* erased: heap entries may still name it */
        }
    }
    for (size_t i = 0; i < b->n_sw; i++) {
        eng_sku *s = b->sw[i].sku;
        s->inflight = NULL;
        /* What it wrote may be what its waiting reserves wait for. */
        if (b->sw[i].dirty)
            unpark_all(e, s);
        ready_push(e, s);
    }
}

/* The batch's decisions did not happen: every before-image comes back. */
static void batch_restore(engine *e, eng_batch *b)
{
    give_back_aside_alerts(e, b);
    for (size_t i = b->n_ow; i-- > 0;) {
        eng_order *o = b->ow[i].o;
        order_from_view(o, &b->ow[i].before);
        o->inflight = NULL;
        if (part_deciding(o))
            dec_link(o);  /* pruned on the way, deciding again */
    }
    /* Trust settings come back unless a later batch moved them again (then
     * that batch's view stands: trust is advice, not an account). */
    for (size_t i = b->n_supw; i-- > 0;) {
        eng_supp *p = b->supw[i].p;
        if (p->last_batch == b->id + 1)
            p->t = b->supw[i].before;
    }
    /* Lines go with their head (an order created by this batch). */
    for (size_t i = 0; i < b->n_ow; i++)
        b->ow[i].head = b->ow[i].o->head == b->ow[i].o;
    for (size_t i = 0; i < b->n_ow; i++)
        if (b->ow[i].head)
            order_maybe_drop(e, b->ow[i].o);
    for (size_t i = 0; i < b->n_sw; i++) {
        struct sku_write *w = &b->sw[i];
        eng_sku *s = w->sku;
        s->c = w->before;
        s->exists = w->before_exists;
        s->mapping = w->before_mapping;
        if (s->map != NULL)
            *s->map = w->before_map;
        s->inflight = NULL;
        /* Waits decided against what did not happen: again. */
        unpark_all(e, s);
        ready_push(e, s);
    }
    /* Holds whose expiry was undone are due again. */
    for (eng_op *op = b->ops_head; op != NULL; op = op->next) {
        if (op->kind != ENG_OP_EXPIRE)
            continue;
        eng_order *o = order_of_op(e, op);
        if (o != NULL && o->status == ENG_ST_HELD)
            (void)heap_push(e, o->hold_expires_at_ms, o);
    }
}

void engine_batch_done(engine *e, eng_batch *b, eng_outcome outcome)
{
    assert(b->state == B_FLIGHT);
    assert(e->st.batches_in_flight > 0);
    switch (outcome) {
    case ENG_COMMITTED:
        e->st.batches_committed++;
        batch_finalize(e, b);
        answer_ops(e, b, ENG_OK, false, false);
        break;
    case ENG_ABORTED:
        e->st.batches_aborted++;
        batch_restore(e, b);
        answer_ops(e, b, ENG_E_UNAVAILABLE, false, false);
        break;
    case ENG_UNKNOWN:
        /* The SKUs stay blocked and the state stays as decided until
         * engine_batch_resolve(); the clients learn now that nobody knows. */
        e->st.batches_unknown++;
        b->state = B_UNKNOWN;
        answer_ops(e, b, ENG_E_UNAVAILABLE, true, true);
        return;
    }
    e->st.batches_in_flight--;
    batch_put(e, b);
}

void engine_batch_resolve(engine *e, eng_batch *b, bool committed)
{
    assert(b->state == B_UNKNOWN);
    if (committed)
        batch_finalize(e, b);
    else
        batch_restore(e, b);
    answer_ops(e, b, ENG_OK, false, false);  /* only internal ops remain */
    e->st.batches_in_flight--;
    batch_put(e, b);
}

static void cancel_fifo(engine *e, eng_sku *s, eng_err err);

void engine_cancel_all(engine *e, eng_err err)
{
    eng_sku *s, *tmp;
    HASH_ITER(hh, e->skus, s, tmp)
        cancel_fifo(e, s, err);
    cancel_fifo(e, &e->global, err);
}

/* Takes the op at a FIFO's head (or the op its ticket stands for, off
 * every FIFO) out of the engine and answers it with err. An expiry's hold
 * comes due again when reheap (its heap entry was popped when it was
 * queued); a supplier report is dropped (the next sync reports again). */
static void answer_queued(engine *e, eng_op *first, eng_err err, bool reheap)
{
    eng_op *op = first->tk_parent != NULL ? first->tk_parent : first;
    bool ok = engine_cancel(e, op);
    assert(ok);
    (void)ok;
    if (op->kind == ENG_OP_EXPIRE) {
        eng_order *o = reheap ? order_of_op(e, op) : NULL;
        if (o != NULL && o->status == ENG_ST_HELD)
            (void)heap_push(e, o->hold_expires_at_ms, o);
    }
    if (op_internal(op)) {
        internal_op_free(e, op);
        return;
    }
    op->err = err;
    op_done(e, op);
}

static void cancel_fifo(engine *e, eng_sku *s, eng_err err)
{
    unpark_all(e, s);
    while (s->q_head != NULL)
        answer_queued(e, s->q_head, err, true);
}

void engine_stats_get(const engine *e, eng_stats *out)
{
    *out = e->st;
}

uint64_t eng_batch_id(const eng_batch *b)
{
    return b->id;
}

bool eng_batch_is_empty(const eng_batch *b)
{
    return b->n_sku_rows == 0 && b->n_ow == 0 && b->n_ledger == 0 && b->n_jobs == 0 &&
           b->n_alerts == 0 && b->n_supw == 0;
}

size_t eng_batch_ops(const eng_batch *b)
{
    return b->n_ops;
}

size_t eng_batch_sku_rows(const eng_batch *b, const eng_sku_row **rows)
{
    *rows = b->sku_rows;
    return b->n_sku_rows;
}

size_t eng_batch_order_rows(const eng_batch *b, const eng_order_row **rows)
{
    *rows = b->order_rows;
    return b->n_ow;
}

size_t eng_batch_ledger_rows(const eng_batch *b, const eng_ledger_row **rows)
{
    *rows = b->ledger;
    return b->n_ledger;
}

size_t eng_batch_job_rows(const eng_batch *b, const eng_job_row **rows)
{
    *rows = b->jobs;
    return b->n_jobs;
}

size_t eng_batch_alert_rows(const eng_batch *b, const eng_alert_row **rows)
{
    *rows = b->alerts;
    return b->n_alerts;
}

size_t eng_batch_supplier_rows(const eng_batch *b, const eng_supplier_row **rows)
{
    *rows = b->sup_rows;
    return b->n_supw;
}

/* Empties s: answers what waits in its FIFO with queued_err, drops the
 * heap entries and every order with a line on it (whole, other lines
 * included) and takes it off the ready list. With aside_why, each order
 * dropped is set aside with that reason and the units its other lines hold
 * are frozen on their SKUs. Nothing of s may be in a batch. */
static void sku_clear(engine *e, eng_sku *s, eng_err queued_err, const char *aside_why,
                      size_t *orders_out)
{
    /* Answer what waits; internal expiries are simply dropped (the next
     * owner reloads the holds and expires them). */
    unpark_all(e, s);
    while (s->q_head != NULL)
        answer_queued(e, s->q_head, queued_err, false);
    /* Heap entries of its held orders go stale by status; clear them. */
    for (size_t i = 0; i < e->heap_len;) {
        bool here = false;
        FOR_LINES(e->heap[i].o, l)
            here = here || l->sku == s;
        if (here) {
            e->heap[i] = e->heap[--e->heap_len];
            continue;
        }
        i++;
    }
    heap_rebuild(e);
    while (s->orders != NULL) {
        eng_order *h = s->orders->head;
        h->pending = 0;
        if (aside_why != NULL) {
            okey k;
            memcpy(k.b, h->id, h->key_len + 1u);
            k.len = h->key_len;
            (void)aside_key_add(e, &k, s->name, aside_why);  /* full: refused as unknown */
            FOR_LINES(h, l)
                if (l->sku != s)
                    freeze(e, l->sku->name, l->status, l->from_own, l->from_supplier,
                           l->supplier_settled);
        }
        if (orders_out != NULL)
            (*orders_out)++;
        order_free(e, h);
    }
    if (s->on_ready) {
        /* Unlink from the ready list. */
        eng_sku **pp = &e->ready_head, *prev = NULL;
        while (*pp != s) {
            prev = *pp;
            pp = &(*pp)->ready_next;
        }
        *pp = s->ready_next;
        if (e->ready_tail == s)
            e->ready_tail = prev;
        s->on_ready = false;
    }
}

bool engine_forget_sku(engine *e, const char *sku, eng_err queued_err)
{
    eng_sku *s = sku_find(e, sku);
    if (s == NULL)
        return true;
    if (s->inflight != NULL)
        return false;
    /* An order with a line here goes whole; its other lines may be in a
     * batch of their SKUs. */
    for (eng_order *o = s->orders; o != NULL; o = o->sku_next)
        if (order_inflight(o->head))
            return false;
    sku_clear(e, s, queued_err, NULL, NULL);
    pk_skus_remove(e, s);
    HASH_DEL(e->skus, s);
    if (s->aside) {
        assert(e->n_aside > 0);
        e->n_aside--;
    }
    free(s->map);
    free(s->aside_why);
    free(s);
    e->st.skus--;
    return true;
}

void engine_each_sku(const engine *e, void (*fn)(const char *sku, void *arg), void *arg)
{
    eng_sku *s, *tmp;
    HASH_ITER(hh, e->skus, s, tmp)
        fn(s->name, arg);
}

bool engine_part_sku(const engine *e, const char *order_id, int32_t line_no, char *sku_out)
{
    if (line_no < 0 || line_no >= ENG_LINES_MAX)
        return false;
    okey key;
    make_key(order_id, line_no, true, &key);
    const eng_order *o = order_find(e, &key);
    if (o == NULL || !o->part)
        return false;
    if (sku_out != NULL)
        copy_id(sku_out, o->sku->name);
    return true;
}

bool engine_order_sku(const engine *e, const char *order_id, char *sku_out)
{
    const eng_order *o = order_find_id(e, order_id);
    if (o == NULL)
        return false;
    if (sku_out != NULL)
        copy_id(sku_out, o->sku->name);
    return true;
}
