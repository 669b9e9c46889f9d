/* orderload.c — orders that left memory, read back from MariaDB when a
 * request names one; the eviction tick and the filter of stored ids. See
 * orderload.h. */
#include "stockd/orderload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "stockd/clock.h"
#include "stockd/coldload.h"
#include "stockd/log.h"
#include "stockd/rpc.h"
#include "stockd/store.h"

#define IDS_FP_PPM 10000

/* One read-back in flight and the requests waiting for it. */
typedef struct order_wait {
    char order_id[ENG_ID_MAX + 1];
    req *head, *tail;
    uint32_t n;
    UT_hash_handle hh;
} order_wait;

bool orderload_enabled(const server *s)
{
    return s->cfg->order_retention_ms > 0 && s->ring == NULL && s->st != NULL;
}

/* ---- the filter of stored ids ------------------------------------------- */

/* Two generations: when the newer is full it becomes the older and the
 * oldest goes; an id that drops out is still guarded by the primary key. */
static void ids_add(server *s, const char *order_id)
{
    if (s->ids_new == NULL || s->ids_new_n >= ORDERLOAD_IDS_PER_GEN) {
        bloom *b = bloom_new(ORDERLOAD_IDS_PER_GEN, IDS_FP_PPM);
        if (b == NULL)
            return;  /* out of memory: the primary key still guards */
        bloom_free(s->ids_old);
        s->ids_old = s->ids_new;
        s->ids_new = b;
        s->ids_new_n = 0;
    }
    bloom_add(s->ids_new, order_id, strlen(order_id));
    s->ids_new_n++;
}

static bool ids_maybe(server *s, const char *order_id)
{
    size_t n = strlen(order_id);
    return (s->ids_new != NULL && bloom_check(s->ids_new, order_id, n)) ||
           (s->ids_old != NULL && bloom_check(s->ids_old, order_id, n));
}

/* ---- eviction ----------------------------------------------------------------- */

static void evicted(const char *order_id, void *arg)
{
    ids_add(arg, order_id);
}

void orderload_evict(server *s)
{
    if (!orderload_enabled(s))
        return;
    int64_t before = clock_wall_ms() - (int64_t)s->cfg->order_retention_ms;
    engine_evict_orders(s->eng, before, ORDERLOAD_EVICT_PER_TICK, evicted, s);
}

void orderload_note_abort(server *s, const eng_batch *b, const char *err)
{
    if (!orderload_enabled(s) || err == NULL || strstr(err, "Duplicate entry") == NULL)
        return;
    /* Which key MariaDB names is in its message, but every new order of
     * the batch is simply remembered: one that was not stored costs its
     * retry one read. */
    const eng_order_row *rows;
    size_t n = eng_batch_order_rows(b, &rows);
    for (size_t i = 0; i < n; i++) {
        if (rows[i].insert && !rows[i].erase && rows[i].o.line_no == 0) {
            ids_add(s, rows[i].o.order_id);
            s->order_key_refusals++;
        }
    }
}

/* ---- read-backs ------------------------------------------------------------- */

/* Answers a waiting request with err (and why, when given). */
static void waiter_fail(server *s, req *r, eng_err err, const char *why)
{
    r->op.err = err;
    /* A stored order that does not load is told like one set aside at
     * startup: not retryable, with the reason. */
    if (why != NULL)
        snprintf(r->op.err_aside, sizeof r->op.err_aside, "%s", why);
    rpc_count_at(s, r->m, err, r->start_ns);
    rpc_pack_eng_error(s, r->msgid, &r->op);
    req_finish(s, r);
}

/* The order is in memory now, or certainly not stored: the request goes
 * its normal way from the top. */
static void waiter_go_on(server *s, req *r)
{
    conn *c = r->c;
    r->order_reloaded = true;
    req_reroute(r);
    rpc_local_request(s, c, r, r->msgid, r->m, r->deadline_ms);
    conn_release(c);  /* local_request took its own hold, or answered */
}

static void reloaded(const char *order_id, int result, const eng_order_view *lines, void *arg);

/* Queues a waiting request (held on its connection) on the read-back of
 * its order, starting one unless it is in flight. False: not queued (the
 * limits, or the store refused): answer busy. */
static bool reload_queue(server *s, req *r)
{
    order_wait *w;
    HASH_FIND_STR(s->order_waits, r->op.order_id, w);
    if (w == NULL) {
        if (s->n_order_waits >= s->cfg->cold_loads_max || (w = calloc(1, sizeof *w)) == NULL)
            return false;
        memcpy(w->order_id, r->op.order_id, sizeof w->order_id);
        if (store_load_order(s->st, w->order_id, reloaded, s) != 0) {
            free(w);
            return false;
        }
        HASH_ADD_STR(s->order_waits, order_id, w);
        s->n_order_waits++;
        s->order_reads++;
    } else if (w->n >= s->cfg->queue_per_sku_max) {
        return false;
    }
    r->next_free = NULL;
    if (w->tail)
        w->tail->next_free = r;
    else
        w->head = r;
    w->tail = r;
    w->n++;
    return true;
}

/* What the read-back means for its requests: 1 go on (in memory now, or
 * not stored), 0 a SKU must load first (*cold names it), -1 failed (*why
 * may say more). */
static int reload_apply(server *s, int result, const eng_order_view *lines, const char **cold,
                        char why[ENG_REASON_MAX + 1])
{
    if (result < 0) {
        s->order_reads_failed++;
        return -1;
    }
    if (result == 0)
        return 1;
    for (int i = 0; i < result; i++) {
        if (!engine_knows_sku(s->eng, lines[i].sku)) {
            *cold = lines[i].sku;
            return cold_enabled(s) ? 0 : -1;
        }
    }
    int rc = engine_reload_order(s->eng, lines, (size_t)result, why);
    if (rc == 1)
        return 1;
    s->order_reads_failed++;
    if (rc == 0)
        LOG_W("order read back does not load", "order_id", lines[0].order_id, "why", why);
    return -1;
}

static void reloaded(const char *order_id, int result, const eng_order_view *lines, void *arg)
{
    server *s = arg;
    order_wait *w;
    HASH_FIND_STR(s->order_waits, order_id, w);
    if (w == NULL)
        return;  /* abandoned at shutdown */
    HASH_DEL(s->order_waits, w);
    s->n_order_waits--;
    const char *cold = NULL;
    char why[ENG_REASON_MAX + 1] = "";
    char sku[ENG_ID_MAX + 1] = "";
    int go = reload_apply(s, result, lines, &cold, why);
    if (cold != NULL)
        memcpy(sku, cold, sizeof sku);  /* lines are valid during this call only */
    req *r = w->head;
    free(w);
    while (r != NULL) {
        req *next = r->next_free;
        r->next_free = NULL;
        if (go == 1) {
            waiter_go_on(s, r);
        } else if (go == 0 && cold_wait_held(s, r, sku)) {
            r->reload_sku = true;
        } else if (why[0] != '\0') {
            waiter_fail(s, r, ENG_E_UNAVAILABLE, why);
        } else {
            waiter_fail(s, r, go == 0 ? ENG_E_BUSY : ENG_E_UNAVAILABLE, NULL);
        }
        r = next;
    }
}

void orderload_sku_loaded(server *s, req *r, int result)
{
    r->reload_sku = false;
    if (result < 0) {
        waiter_fail(s, r, ENG_E_UNAVAILABLE, NULL);
        return;
    }
    if (!reload_queue(s, r))
        waiter_fail(s, r, ENG_E_BUSY, NULL);
}

bool orderload_intercept(server *s, conn *c, req *r, uint32_t msgid, enum method m,
                         int64_t deadline_ms)
{
    const eng_op *op = &r->op;
    if (!orderload_enabled(s) || r->order_reloaded || op->order_id[0] == '\0' ||
        op->part_lines != 0)
        return false;
    if (m == M_RESERVE) {
        eng_order_view v;
        if (engine_order_get(s->eng, op->order_id, &v) || !ids_maybe(s, op->order_id))
            return false;
    } else if (!rpc_method_is_order(m) || rpc_order_known(s, op)) {
        return false;
    }
    /* Set aside at load: the normal path says so (MariaDB's rows for it
     * are the bad ones). */
    char aside[ENG_REASON_MAX + 1];
    if (engine_aside_of(s->eng, op, aside))
        return false;
    req_wait(s, c, r, msgid, m, deadline_ms);
    if (!reload_queue(s, r))
        waiter_fail(s, r, ENG_E_BUSY, NULL);
    return true;
}

void orderload_free_all(server *s)
{
    order_wait *w, *tmp;
    HASH_ITER(hh, s->order_waits, w, tmp) {
        HASH_DEL(s->order_waits, w);
        for (req *r = w->head; r != NULL;) {
            req *next = r->next_free;
            rpc_op_free_lines(&r->op);
            free(r);
            r = next;
        }
        free(w);
    }
    s->n_order_waits = 0;
    bloom_free(s->ids_new);
    bloom_free(s->ids_old);
    s->ids_new = s->ids_old = NULL;
}
