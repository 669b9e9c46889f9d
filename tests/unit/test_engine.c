/* test_engine.c — the engine's decisions and accounting, without servers.
 *
 * Each test drives the pure engine the way server.c does: submit ops, take
 * a batch, report an outcome, and checks the answers and the counters. The
 * last test is a seeded random walk over every op and every outcome that
 * checks the accounting invariants after each step.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stockd/engine.h"

#define MAX_DONE 4096

static eng_op *done_ops[MAX_DONE];
static size_t n_done;

static void on_done(eng_op *op, void *arg)
{
    (void)arg;
    assert_true(n_done < MAX_DONE);
    done_ops[n_done++] = op;
}

static engine *mk(void)
{
    eng_limits l;
    eng_limits_default(&l);
    l.queue_per_sku_max = 8;
    l.queue_total_max = 64;
    n_done = 0;
    engine *e = engine_new(&l, on_done, NULL);
    assert_non_null(e);
    return e;
}

static eng_op *op_new(eng_op_kind k, const char *order_id, const char *sku, int qty)
{
    eng_op *op = calloc(1, sizeof(*op));
    op->kind = k;
    snprintf(op->order_id, sizeof(op->order_id), "%s", order_id ? order_id : "");
    snprintf(op->sku, sizeof(op->sku), "%s", sku ? sku : "");
    op->qty = qty;
    return op;
}

/* Runs every ready batch to the given outcome; returns how many ran. */
static int run(engine *e, int64_t now, eng_outcome out)
{
    int n = 0;
    eng_batch *b;
    while ((b = engine_next_batch(e, now)) != NULL) {
        engine_batch_done(e, b, eng_batch_is_empty(b) ? ENG_COMMITTED : out);
        n++;
    }
    return n;
}

static void put(engine *e, const char *sku, int64_t own, int64_t sup)
{
    eng_op *op = op_new(ENG_OP_SKU_PUT, NULL, sku, 0);
    op->has_own_on_hand = true;
    op->own_on_hand = own;
    if (sup >= 0) {
        op->has_supplier_reported = true;
        op->supplier_reported = sup;
    }
    assert_int_equal(engine_submit(e, op, 1), ENG_OK);
    run(e, 1, ENG_COMMITTED);
    assert_int_equal(op->err, ENG_OK);
    free(op);
    n_done = 0;
}

static int64_t avail(engine *e, const char *sku)
{
    eng_stock_view v;
    assert_true(engine_stock_get(e, sku, &v));
    return v.available;
}

static void test_hoodie(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "hoodie", 2, -1);
    eng_op *a = op_new(ENG_OP_RESERVE, "o1", "hoodie", 1);
    eng_op *b = op_new(ENG_OP_RESERVE, "o2", "hoodie", 1);
    eng_op *c = op_new(ENG_OP_RESERVE, "o3", "hoodie", 1);
    assert_int_equal(engine_submit(e, a, 10), ENG_OK);
    assert_int_equal(engine_submit(e, b, 10), ENG_OK);
    assert_int_equal(engine_submit(e, c, 10), ENG_OK);
    eng_batch *bt = engine_next_batch(e, 10);
    assert_non_null(bt);
    assert_int_equal(eng_batch_ops(bt), 3);
    const eng_order_row *orows;
    const eng_sku_row *srows;
    assert_int_equal(eng_batch_order_rows(bt, &orows), 2);
    assert_int_equal(eng_batch_sku_rows(bt, &srows), 1);
    assert_int_equal(srows[0].c.own_reserved, 2);
    assert_false(srows[0].insert);
    /* Readers still see the committed state while the batch is in flight. */
    assert_int_equal(avail(e, "hoodie"), 2);
    assert_int_equal(n_done, 0);
    engine_batch_done(e, bt, ENG_COMMITTED);
    assert_int_equal(n_done, 3);
    assert_int_equal(a->err, ENG_OK);
    assert_int_equal(a->order.status, ENG_ST_CONFIRMED);
    assert_int_equal(a->order.available, 1);
    assert_int_equal(b->err, ENG_OK);
    assert_int_equal(b->order.available, 0);
    assert_int_equal(c->err, ENG_E_INSUFFICIENT);
    assert_int_equal(c->err_available, 0);
    assert_int_equal(avail(e, "hoodie"), 0);
    eng_order_view v;
    assert_false(engine_order_get(e, "o3", &v));  /* a "no" leaves no record */
    assert_true(engine_order_get(e, "o1", &v));
    free(a), free(b), free(c);
    engine_free(e);
}

static void test_allocation_own_then_supplier(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "s", 2, 3);
    assert_int_equal(avail(e, "s"), 5);
    eng_op *r = op_new(ENG_OP_RESERVE, "o", "s", 4);
    assert_int_equal(engine_submit(e, r, 5), ENG_OK);
    run(e, 5, ENG_COMMITTED);
    assert_int_equal(r->err, ENG_OK);
    assert_int_equal(r->order.from_own, 2);
    assert_int_equal(r->order.from_supplier, 2);
    eng_stock_view sv;
    assert_true(engine_stock_get(e, "s", &sv));
    assert_int_equal(sv.c.own_reserved, 2);
    assert_int_equal(sv.c.supplier_reserved, 2);
    assert_int_equal(sv.mapping, ENG_MAP_MANUAL);
    eng_op *rel = op_new(ENG_OP_RELEASE, "o", NULL, 0);
    assert_int_equal(engine_submit(e, rel, 6), ENG_OK);
    run(e, 6, ENG_COMMITTED);
    assert_int_equal(rel->err, ENG_OK);
    assert_int_equal(rel->order.status, ENG_ST_RELEASED);
    assert_true(engine_stock_get(e, "s", &sv));
    assert_int_equal(sv.c.own_reserved, 0);
    assert_int_equal(sv.c.supplier_reserved, 0);
    assert_int_equal(sv.available, 5);
    /* Releasing again is not an error. */
    eng_op *rel2 = op_new(ENG_OP_RELEASE, "o", NULL, 0);
    assert_int_equal(engine_submit(e, rel2, 7), ENG_OK);
    run(e, 7, ENG_COMMITTED);
    assert_int_equal(rel2->err, ENG_OK);
    free(r), free(rel), free(rel2);
    engine_free(e);
}

static void test_abort_restores(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "s", 1, -1);
    eng_op *r = op_new(ENG_OP_RESERVE, "o", "s", 1);
    assert_int_equal(engine_submit(e, r, 5), ENG_OK);
    run(e, 5, ENG_ABORTED);
    assert_int_equal(r->err, ENG_E_UNAVAILABLE);
    assert_false(r->outcome_unknown);
    assert_int_equal(avail(e, "s"), 1);
    eng_order_view v;
    assert_false(engine_order_get(e, "o", &v));
    /* The retry is decided anew. */
    memset(&r->err, 0, sizeof(*r) - offsetof(eng_op, err));
    assert_int_equal(engine_submit(e, r, 6), ENG_OK);
    run(e, 6, ENG_COMMITTED);
    assert_int_equal(r->err, ENG_OK);
    assert_int_equal(avail(e, "s"), 0);
    free(r);
    engine_free(e);
}

static void test_unknown_then_resolve(void **state)
{
    (void)state;
    for (int committed = 0; committed < 2; committed++) {
        engine *e = mk();
        put(e, "s", 3, -1);
        eng_op *r = op_new(ENG_OP_RESERVE, "o", "s", 2);
        assert_int_equal(engine_submit(e, r, 5), ENG_OK);
        eng_batch *b = engine_next_batch(e, 5);
        engine_batch_done(e, b, ENG_UNKNOWN);
        assert_int_equal(r->err, ENG_E_UNAVAILABLE);
        assert_true(r->outcome_unknown);
        /* The gateway retries while the outcome is unknown: it waits. */
        eng_op *retry = op_new(ENG_OP_RESERVE, "o", "s", 2);
        assert_int_equal(engine_submit(e, retry, 6), ENG_OK);
        assert_null(engine_next_batch(e, 6));
        engine_batch_resolve(e, b, committed);
        run(e, 7, ENG_COMMITTED);
        assert_int_equal(retry->err, ENG_OK);
        assert_int_equal(retry->order.status, ENG_ST_CONFIRMED);
        /* Committed: the retry returns the first record; aborted: it made one. */
        assert_int_equal(retry->order.created_at_ms, committed ? 5 : 7);
        assert_int_equal(avail(e, "s"), 1);
        free(r), free(retry);
        engine_free(e);
    }
}

static void test_idempotent_and_conflict(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "s", 10, -1);
    put(e, "t", 10, -1);
    eng_op *ops[4];
    for (int i = 0; i < 3; i++) {
        ops[i] = op_new(ENG_OP_RESERVE, "o", "s", 2);
        assert_int_equal(engine_submit(e, ops[i], 5), ENG_OK);
    }
    ops[3] = op_new(ENG_OP_RESERVE, "o", "t", 2);
    assert_int_equal(engine_submit(e, ops[3], 5), ENG_E_CONFLICT);
    run(e, 5, ENG_COMMITTED);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ops[i]->err, ENG_OK);
        assert_int_equal(ops[i]->order.created_at_ms, 5);
    }
    assert_int_equal(avail(e, "s"), 8);
    eng_op *q = op_new(ENG_OP_RESERVE, "o", "s", 3);
    assert_int_equal(engine_submit(e, q, 6), ENG_E_CONFLICT);
    for (int i = 0; i < 4; i++)
        free(ops[i]);
    free(q);
    engine_free(e);
}

static void test_hold_expiry(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "s", 1, -1);
    eng_op *r = op_new(ENG_OP_RESERVE, "o", "s", 1);
    r->hold_ms = 1000;
    assert_int_equal(engine_submit(e, r, 100), ENG_OK);
    run(e, 100, ENG_COMMITTED);
    assert_int_equal(r->order.status, ENG_ST_HELD);
    assert_int_equal(r->order.hold_expires_at_ms, 1100);
    assert_int_equal(engine_next_expiry_ms(e, 100), 1000);
    assert_int_equal(engine_expire_due(e, 1099), 0);
    assert_int_equal(engine_expire_due(e, 1100), 1);
    /* The expiry is lost once (abort) and comes back. */
    run(e, 1100, ENG_ABORTED);
    assert_int_equal(avail(e, "s"), 0);
    assert_int_equal(engine_expire_due(e, 1101), 1);
    run(e, 1101, ENG_COMMITTED);
    assert_int_equal(avail(e, "s"), 1);
    eng_order_view v;
    assert_true(engine_order_get(e, "o", &v));
    assert_int_equal(v.status, ENG_ST_EXPIRED);
    free(r);
    /* An expiry cancelled with the rest of the queue (store down) comes due
     * again. */
    r = op_new(ENG_OP_RESERVE, "o2", "s", 1);
    r->hold_ms = 1000;
    engine_submit(e, r, 2000);
    run(e, 2000, ENG_COMMITTED);
    assert_int_equal(engine_expire_due(e, 3000), 1);
    engine_cancel_all(e, ENG_E_UNAVAILABLE);
    assert_int_equal(engine_expire_due(e, 3001), 1);
    run(e, 3001, ENG_COMMITTED);
    assert_int_equal(avail(e, "s"), 1);
    eng_op *c = op_new(ENG_OP_CONFIRM, "o", NULL, 0);
    assert_int_equal(engine_submit(e, c, 1200), ENG_OK);
    run(e, 1200, ENG_COMMITTED);
    assert_int_equal(c->err, ENG_E_EXPIRED);
    free(r), free(c);
    engine_free(e);
}

static void test_confirm_after_lapse_without_tick(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "s", 1, -1);
    eng_op *r = op_new(ENG_OP_RESERVE, "o", "s", 1);
    r->hold_ms = 1000;
    engine_submit(e, r, 0);
    run(e, 0, ENG_COMMITTED);
    eng_op *c = op_new(ENG_OP_CONFIRM, "o", NULL, 0);
    engine_submit(e, c, 1000);
    run(e, 1000, ENG_COMMITTED);
    assert_int_equal(c->err, ENG_E_EXPIRED);
    assert_int_equal(avail(e, "s"), 1);
    free(r), free(c);
    engine_free(e);
}

static void test_ship_and_states(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "s", 5, 5);
    eng_op *r = op_new(ENG_OP_RESERVE, "own", "s", 2);
    engine_submit(e, r, 1);
    eng_op *m = op_new(ENG_OP_RESERVE, "mixed", "s", 5);
    engine_submit(e, m, 1);
    run(e, 1, ENG_COMMITTED);
    assert_int_equal(m->order.from_own, 3);
    eng_op *s1 = op_new(ENG_OP_SHIP, "own", NULL, 0);
    eng_op *s2 = op_new(ENG_OP_SHIP, "mixed", NULL, 0);
    engine_submit(e, s1, 2);
    engine_submit(e, s2, 2);
    run(e, 2, ENG_COMMITTED);
    assert_int_equal(s1->err, ENG_OK);
    assert_int_equal(s1->order.status, ENG_ST_SHIPPED);
    assert_int_equal(s2->err, ENG_E_INVALID_STATE);  /* supplier units not bought yet */
    assert_int_equal(s2->err_status, ENG_ST_CONFIRMED);
    eng_stock_view sv;
    engine_stock_get(e, "s", &sv);
    assert_int_equal(sv.c.own_on_hand, 3);
    assert_int_equal(sv.c.own_reserved, 3);
    eng_op *rel = op_new(ENG_OP_RELEASE, "own", NULL, 0);
    engine_submit(e, rel, 3);
    run(e, 3, ENG_COMMITTED);
    assert_int_equal(rel->err, ENG_E_INVALID_STATE);
    eng_op *nf = op_new(ENG_OP_CONFIRM, "nope", NULL, 0);
    assert_int_equal(engine_submit(e, nf, 3), ENG_E_NOT_FOUND);
    free(r), free(m), free(s1), free(s2), free(rel), free(nf);
    engine_free(e);
}

static void test_limits_and_cancel(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "s", 100, -1);
    eng_op *ops[9];
    for (int i = 0; i < 9; i++) {
        char id[16];
        snprintf(id, sizeof(id), "o%d", i);
        ops[i] = op_new(ENG_OP_RESERVE, id, "s", 1);
        eng_err err = engine_submit(e, ops[i], 1);
        assert_int_equal(err, i < 8 ? ENG_OK : ENG_E_BUSY);
    }
    assert_true(engine_cancel(e, ops[3]));
    assert_false(engine_cancel(e, ops[3]));
    run(e, 1, ENG_COMMITTED);
    assert_int_equal(n_done, 7);
    assert_int_equal(avail(e, "s"), 93);
    eng_order_view v;
    assert_false(engine_order_get(e, "o3", &v));
    eng_op *u = op_new(ENG_OP_RESERVE, "x", "nosuch", 1);
    assert_int_equal(engine_submit(e, u, 1), ENG_E_UNKNOWN_SKU);
    eng_op *adj = op_new(ENG_OP_ADJUST, NULL, "s", 0);
    adj->delta = -95;
    engine_submit(e, adj, 2);
    run(e, 2, ENG_COMMITTED);
    assert_int_equal(adj->err, ENG_E_INSUFFICIENT);  /* never below reserved */
    adj->delta = -93;
    adj->err = ENG_OK;
    engine_submit(e, adj, 3);
    run(e, 3, ENG_COMMITTED);
    assert_int_equal(adj->err, ENG_OK);
    assert_int_equal(adj->stock.c.own_on_hand, 7);
    for (int i = 0; i < 9; i++)
        free(ops[i]);
    free(u), free(adj);
    engine_free(e);
}

static void test_new_sku_put_then_reserve_pipelined(void **state)
{
    (void)state;
    engine *e = mk();
    eng_op *p = op_new(ENG_OP_SKU_PUT, NULL, "new", 0);
    p->has_own_on_hand = true;
    p->own_on_hand = 2;
    assert_int_equal(engine_submit(e, p, 1), ENG_OK);
    eng_op *r = op_new(ENG_OP_RESERVE, "o", "new", 1);
    assert_int_equal(engine_submit(e, r, 1), ENG_OK);
    eng_batch *b = engine_next_batch(e, 1);
    const eng_sku_row *rows;
    assert_int_equal(eng_batch_sku_rows(b, &rows), 1);
    assert_true(rows[0].insert);
    eng_stock_view v;
    assert_false(engine_stock_get(e, "new", &v));  /* not committed yet */
    engine_batch_done(e, b, ENG_ABORTED);
    assert_false(engine_stock_get(e, "new", &v));
    eng_op *r2 = op_new(ENG_OP_RESERVE, "o2", "new", 1);
    assert_int_equal(engine_submit(e, r2, 2), ENG_E_UNKNOWN_SKU);
    free(p), free(r), free(r2);
    engine_free(e);
}

static void test_pipelined_reserve_then_confirm(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "s", 1, -1);
    eng_op *r = op_new(ENG_OP_RESERVE, "o", "s", 1);
    r->hold_ms = 5000;
    eng_op *c = op_new(ENG_OP_CONFIRM, "o", NULL, 0);
    assert_int_equal(engine_submit(e, r, 1), ENG_OK);
    assert_int_equal(engine_submit(e, c, 1), ENG_OK);  /* waits behind the reserve */
    run(e, 1, ENG_COMMITTED);
    assert_int_equal(r->err, ENG_OK);
    assert_int_equal(c->err, ENG_OK);
    assert_int_equal(c->order.status, ENG_ST_CONFIRMED);
    /* Behind a reserve that fails, the confirm finds no order. */
    eng_op *r2 = op_new(ENG_OP_RESERVE, "o2", "s", 1);
    eng_op *c2 = op_new(ENG_OP_CONFIRM, "o2", NULL, 0);
    assert_int_equal(engine_submit(e, r2, 2), ENG_OK);
    assert_int_equal(engine_submit(e, c2, 2), ENG_OK);
    run(e, 2, ENG_COMMITTED);
    assert_int_equal(r2->err, ENG_E_INSUFFICIENT);
    assert_int_equal(c2->err, ENG_E_NOT_FOUND);
    eng_order_view v;
    assert_false(engine_order_get(e, "o2", &v));
    free(r), free(c), free(r2), free(c2);
    engine_free(e);
}

static void test_forget_sku(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "a", 5, -1);
    put(e, "b", 5, -1);
    eng_op *r1 = op_new(ENG_OP_RESERVE, "o1", "a", 1);
    r1->hold_ms = 1000;
    eng_op *r2 = op_new(ENG_OP_RESERVE, "o2", "b", 1);
    engine_submit(e, r1, 1);
    engine_submit(e, r2, 1);
    run(e, 1, ENG_COMMITTED);
    eng_op *q = op_new(ENG_OP_RESERVE, "o3", "a", 1);
    assert_int_equal(engine_submit(e, q, 2), ENG_OK);
    /* In a batch: not now. */
    eng_batch *b = engine_next_batch(e, 2);
    assert_false(engine_forget_sku(e, "a", ENG_E_UNAVAILABLE));
    engine_batch_done(e, b, ENG_COMMITTED);
    eng_op *q2 = op_new(ENG_OP_RESERVE, "o4", "a", 1);
    assert_int_equal(engine_submit(e, q2, 3), ENG_OK);
    n_done = 0;
    assert_true(engine_forget_sku(e, "a", ENG_E_UNAVAILABLE));
    assert_int_equal(n_done, 1);  /* the queued op was answered */
    assert_int_equal(q2->err, ENG_E_UNAVAILABLE);
    eng_order_view v;
    assert_false(engine_order_get(e, "o1", &v));
    assert_false(engine_order_get(e, "o3", &v));
    assert_true(engine_order_get(e, "o2", &v));
    assert_false(engine_knows_sku(e, "a"));
    assert_int_equal(engine_expire_due(e, 5000), 0);  /* its hold went with it */
    assert_true(engine_forget_sku(e, "nope", ENG_E_UNAVAILABLE));
    free(r1), free(r2), free(q), free(q2);
    engine_free(e);
}

/* ---- supplier reports (sync) ---- */

static eng_supplier_map mkmap(int64_t offer, const char *spec)
{
    eng_supplier_map m;
    memset(&m, 0, sizeof(m));
    snprintf(m.supplier_id, sizeof(m.supplier_id), "1688");
    snprintf(m.spec_id, sizeof(m.spec_id), "%s", spec);
    m.offer_id = offer;
    m.cap = -1;
    return m;
}

/* sku.put with own stock and a 1688 mapping (supplier figure left as is). */
static void put_mapped(engine *e, const char *sku, int64_t own, int64_t offer, const char *spec)
{
    eng_op *op = op_new(ENG_OP_SKU_PUT, NULL, sku, 0);
    op->has_own_on_hand = true;
    op->own_on_hand = own;
    op->has_supplier = true;
    op->supplier = mkmap(offer, spec);
    assert_int_equal(engine_submit(e, op, 1), ENG_OK);
    run(e, 1, ENG_COMMITTED);
    assert_int_equal(op->err, ENG_OK);
    free(op);
    n_done = 0;
}

static eng_stock_view stock(engine *e, const char *sku)
{
    eng_stock_view v;
    assert_true(engine_stock_get(e, sku, &v));
    return v;
}

static void test_supplier_report(void **state)
{
    (void)state;
    engine *e = mk();
    put_mapped(e, "m", 5, 77, "spec-a");
    assert_true(engine_supplier_report(e, "m", 100, 50));
    eng_batch *b = engine_next_batch(e, 60);
    assert_non_null(b);
    const eng_sku_row *srows;
    const eng_ledger_row *lrows;
    assert_int_equal(eng_batch_sku_rows(b, &srows), 1);
    assert_int_equal(srows[0].c.supplier_reported, 100);
    assert_int_equal(srows[0].c.supplier_sellable, 100);
    assert_int_equal(srows[0].c.supplier_synced_at_ms, 50);
    assert_int_equal(srows[0].mapping, ENG_MAP_OK);
    assert_int_equal(eng_batch_ledger_rows(b, &lrows), 1);
    assert_int_equal(lrows[0].move, ENG_MOVE_SYNC);
    assert_string_equal(eng_move_name(lrows[0].move), "sync");
    assert_int_equal(lrows[0].d_supplier_reported, 100);
    assert_int_equal(stock(e, "m").c.supplier_reported, 0);  /* not before the commit */
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(n_done, 0);  /* internal: nobody to answer */
    assert_int_equal(avail(e, "m"), 105);
    /* A reserve takes own units first, then supplier units. */
    eng_op *r = op_new(ENG_OP_RESERVE, "o1", "m", 10);
    assert_int_equal(engine_submit(e, r, 70), ENG_OK);
    run(e, 70, ENG_COMMITTED);
    assert_int_equal(r->err, ENG_OK);
    assert_int_equal(r->order.from_own, 5);
    assert_int_equal(r->order.from_supplier, 5);
    /* The figure falls under what is reserved: nothing more to sell. */
    assert_true(engine_supplier_report(e, "m", 3, 80));
    run(e, 80, ENG_COMMITTED);
    eng_stock_view v = stock(e, "m");
    assert_int_equal(v.c.supplier_reported, 3);
    assert_int_equal(v.c.supplier_reserved, 5);
    assert_int_equal(v.available, 0);
    /* An unchanged figure still records when it was seen, without a ledger row. */
    assert_true(engine_supplier_report(e, "m", 3, 90));
    b = engine_next_batch(e, 90);
    assert_int_equal(eng_batch_sku_rows(b, &srows), 1);
    assert_int_equal(srows[0].c.supplier_synced_at_ms, 90);
    assert_int_equal(eng_batch_ledger_rows(b, &lrows), 0);
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(stock(e, "m").c.supplier_synced_at_ms, 90);
    free(r);
    engine_free(e);
}

static void test_supplier_report_unmapped(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "manual", 1, 4);
    put(e, "own", 2, -1);
    assert_false(engine_supplier_report(e, "nope", 5, 10));
    assert_true(engine_supplier_report(e, "manual", 50, 10));
    assert_true(engine_supplier_report(e, "own", 50, 10));
    eng_batch *b;
    while ((b = engine_next_batch(e, 10)) != NULL) {
        assert_true(eng_batch_is_empty(b));
        engine_batch_done(e, b, ENG_COMMITTED);
    }
    assert_int_equal(stock(e, "manual").c.supplier_reported, 4);
    assert_int_equal(stock(e, "own").c.supplier_reported, 0);
    assert_int_equal(avail(e, "own"), 2);
    assert_int_equal(n_done, 0);
    engine_free(e);
}

/* Reports are decided in the SKU's arrival order, between reservations. */
static void test_supplier_report_order(void **state)
{
    (void)state;
    engine *e = mk();
    put_mapped(e, "m", 0, 1, "a");
    eng_op *r1 = op_new(ENG_OP_RESERVE, "o1", "m", 3);
    eng_op *r2 = op_new(ENG_OP_RESERVE, "o2", "m", 3);
    assert_int_equal(engine_submit(e, r1, 5), ENG_OK);
    assert_true(engine_supplier_report(e, "m", 4, 5));
    assert_int_equal(engine_submit(e, r2, 5), ENG_OK);
    eng_batch *b = engine_next_batch(e, 5);
    assert_int_equal(eng_batch_ops(b), 3);
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(n_done, 2);
    assert_int_equal(r1->err, ENG_E_INSUFFICIENT);
    assert_int_equal(r2->err, ENG_OK);
    assert_int_equal(r2->order.from_supplier, 3);
    assert_int_equal(avail(e, "m"), 1);
    free(r1), free(r2);
    engine_free(e);
}

static void test_supplier_report_abort_unknown(void **state)
{
    (void)state;
    engine *e = mk();
    put_mapped(e, "m", 1, 1, "a");
    assert_true(engine_supplier_report(e, "m", 9, 5));
    run(e, 5, ENG_ABORTED);
    assert_int_equal(n_done, 0);
    assert_int_equal(stock(e, "m").c.supplier_reported, 0);
    assert_int_equal(stock(e, "m").c.supplier_synced_at_ms, 0);
    for (int committed = 0; committed < 2; committed++) {
        assert_true(engine_supplier_report(e, "m", 20 + committed, 6 + 10 * committed));
        eng_batch *b = engine_next_batch(e, 6);
        engine_batch_done(e, b, ENG_UNKNOWN);
        /* Blocked until resolved: a newer report waits. */
        assert_true(engine_supplier_report(e, "m", 30 + committed, 7 + 10 * committed));
        assert_null(engine_next_batch(e, 7));
        engine_batch_resolve(e, b, committed);
        assert_int_equal(stock(e, "m").c.supplier_reported, committed ? 21 : 0);
        run(e, 8, ENG_COMMITTED);
        assert_int_equal(stock(e, "m").c.supplier_reported, 30 + committed);
    }
    assert_int_equal(n_done, 0);
    eng_stats st;
    engine_stats_get(e, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.batches_in_flight, 0);
    engine_free(e);
}

/* A blocked SKU keeps one report, the newest; a re-mapped SKU ignores a
 * report read for its old mapping. */
static void test_supplier_report_coalesce_and_remap(void **state)
{
    (void)state;
    engine *e = mk();
    put_mapped(e, "m", 0, 1, "a");
    eng_op *adj = op_new(ENG_OP_ADJUST, NULL, "m", 0);
    adj->delta = 1;
    assert_int_equal(engine_submit(e, adj, 2), ENG_OK);
    eng_batch *b = engine_next_batch(e, 2);
    for (int i = 1; i <= 50; i++)
        assert_true(engine_supplier_report(e, "m", i, 2 + i));
    eng_stats st;
    engine_stats_get(e, &st);
    assert_int_equal(st.queued, 1);
    engine_batch_done(e, b, ENG_COMMITTED);
    run(e, 3, ENG_COMMITTED);
    eng_stock_view v = stock(e, "m");
    assert_int_equal(v.c.supplier_reported, 50);
    assert_int_equal(v.c.supplier_synced_at_ms, 52);
    /* Read for (1, "a"), but sku.put moves the SKU to (1, "b") first. */
    eng_supplier_map old = mkmap(1, "a");
    eng_op *remap = op_new(ENG_OP_SKU_PUT, NULL, "m", 0);
    remap->has_supplier = true;
    remap->supplier = mkmap(1, "b");
    assert_int_equal(engine_submit(e, remap, 60), ENG_OK);
    assert_true(engine_supplier_report_for(e, "m", &old, 7, 60));
    run(e, 60, ENG_COMMITTED);
    assert_int_equal(stock(e, "m").c.supplier_reported, 50);
    eng_supplier_map now = mkmap(1, "b");
    assert_true(engine_supplier_report_for(e, "m", &now, 7, 61));
    run(e, 61, ENG_COMMITTED);
    assert_int_equal(stock(e, "m").c.supplier_reported, 7);
    /* A newer figure does not overtake an op queued after the waiting
     * report: it queues behind that op. */
    eng_op *adj2 = op_new(ENG_OP_ADJUST, NULL, "m", 0);
    adj2->delta = 1;
    assert_int_equal(engine_submit(e, adj2, 61), ENG_OK);
    b = engine_next_batch(e, 61);
    assert_true(engine_supplier_report(e, "m", 20, 62));
    eng_op *adj3 = op_new(ENG_OP_ADJUST, NULL, "m", 0);
    adj3->delta = 1;
    assert_int_equal(engine_submit(e, adj3, 62), ENG_OK);
    assert_true(engine_supplier_report(e, "m", 21, 63));
    assert_true(engine_supplier_report(e, "m", 22, 64));  /* the tail: coalesced */
    engine_stats_get(e, &st);
    assert_int_equal(st.queued, 3);
    engine_batch_done(e, b, ENG_COMMITTED);
    run(e, 64, ENG_COMMITTED);
    v = stock(e, "m");
    assert_int_equal(v.c.supplier_reported, 22);
    assert_int_equal(v.c.supplier_synced_at_ms, 64);
    free(adj2), free(adj3);
    /* Queued reports vanish with a forgotten SKU and at shutdown, unanswered. */
    n_done = 0;
    assert_true(engine_supplier_report(e, "m", 8, 65));
    engine_cancel_all(e, ENG_E_UNAVAILABLE);
    assert_true(engine_supplier_report(e, "m", 9, 66));
    assert_true(engine_forget_sku(e, "m", ENG_E_UNAVAILABLE));
    assert_int_equal(n_done, 0);
    engine_stats_get(e, &st);
    assert_int_equal(st.queued, 0);
    free(adj), free(remap);
    engine_free(e);
}

/* ---- random walk ---- */

#define RW_SKUS 4
#define RW_ORDERS 40

static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}


/* ---- supplier round: purchases, failures, links, trust, settlement ---- */

static eng_op *outcome_op(eng_op_kind k, const char *order_id)
{
    eng_op *op = op_new(k, order_id, "", 0);
    op->on_done = on_done;
    return op;
}

/* A mapped SKU with no own stock and `reported` supplier units. */
static void put_supplier_sku(engine *e, const char *sku, int64_t reported)
{
    put_mapped(e, sku, 0, 7, "spec");
    assert_true(engine_supplier_report(e, sku, reported, 1));
    run(e, 1, ENG_COMMITTED);
}

static void reserve_now(engine *e, const char *id, const char *sku, int qty, int64_t now)
{
    eng_op *r = op_new(ENG_OP_RESERVE, id, sku, qty);
    assert_int_equal(engine_submit(e, r, now), ENG_OK);
    eng_batch *b = engine_next_batch(e, now);
    assert_non_null(b);
    const eng_job_row *jobs;
    size_t nj = eng_batch_job_rows(b, &jobs);
    assert_int_equal(nj, 1);  /* the outbox row rides in the same batch */
    assert_true(jobs[0].insert);
    assert_int_equal(jobs[0].state, ENG_JOB_PENDING);
    assert_int_equal(jobs[0].map.offer_id, 7);
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(r->err, ENG_OK);
    free(r);
    n_done = 0;
}

static void test_purchase_flow_and_settle(void **state)
{
    (void)state;
    engine *e = mk();
    eng_limits l;
    eng_limits_default(&l);
    l.upstream_lag_ms = 1000;
    engine_set_limits(e, &l);
    put_supplier_sku(e, "s", 10);
    reserve_now(e, "o1", "s", 4, 10);
    uint32_t un, cl;
    engine_purchase_counts(e, &un, &cl);
    assert_int_equal(un, 1);
    eng_purchase p;
    assert_true(engine_purchase_claim(e, &p));
    assert_string_equal(p.order_id, "o1");
    assert_int_equal(p.qty, 4);
    assert_true(p.mapped);
    assert_false(p.recovered);
    eng_purchase p2;
    assert_false(engine_purchase_claim(e, &p2));  /* claimed once */
    eng_op *ok = outcome_op(ENG_OP_PURCHASED, "o1");
    snprintf(ok->upstream_order_id, sizeof(ok->upstream_order_id), "3000000000000000001");
    assert_int_equal(engine_submit(e, ok, 20), ENG_OK);
    eng_batch *b = engine_next_batch(e, 20);
    const eng_order_row *orows;
    assert_int_equal(eng_batch_order_rows(b, &orows), 1);
    assert_true(orows[0].notify);
    assert_int_equal(orows[0].o.status, ENG_ST_PURCHASED);
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(ok->err, ENG_OK);
    assert_int_equal(ok->order.purchased_at_ms, 20);
    engine_purchase_counts(e, &un, &cl);
    assert_int_equal(un + cl, 0);
    /* Bought units stay reserved until a snapshot taken lag after the buy. */
    eng_stock_view v = stock(e, "s");
    assert_int_equal(v.c.supplier_reserved, 4);
    assert_int_equal(v.available, 6);
    assert_true(engine_supplier_report(e, "s", 10, 500));  /* too early: still shows them */
    run(e, 600, ENG_COMMITTED);
    assert_int_equal(stock(e, "s").c.supplier_reserved, 4);
    assert_true(engine_supplier_report(e, "s", 6, 1020));  /* taken >= 20 + 1000 */
    run(e, 1100, ENG_COMMITTED);
    v = stock(e, "s");
    assert_int_equal(v.c.supplier_reserved, 0);
    assert_int_equal(v.c.supplier_reported, 6);
    assert_int_equal(v.available, 6);
    eng_order_view ov;
    assert_true(engine_order_get(e, "o1", &ov));
    assert_true(ov.supplier_settled);
    /* ...exactly once. */
    assert_true(engine_supplier_report(e, "s", 6, 5000));
    run(e, 5000, ENG_COMMITTED);
    assert_int_equal(stock(e, "s").c.supplier_reserved, 0);
    assert_int_equal(stock(e, "s").available, 6);
    free(ok);
    engine_free(e);
}

static void test_purchase_failed_stock(void **state)
{
    (void)state;
    engine *e = mk();
    put_supplier_sku(e, "s", 100);
    reserve_now(e, "o1", "s", 5, 10);
    eng_purchase p;
    assert_true(engine_purchase_claim(e, &p));
    eng_op *f = outcome_op(ENG_OP_PURCHASE_FAILED, "o1");
    f->fail_kind = ENG_FAIL_STOCK;
    snprintf(f->reason, sizeof(f->reason), "preview: 500_004 short");
    assert_int_equal(engine_submit(e, f, 20), ENG_OK);
    eng_batch *b = engine_next_batch(e, 20);
    const eng_alert_row *al;
    const eng_job_row *jobs;
    const eng_supplier_row *sr;
    assert_int_equal(eng_batch_alert_rows(b, &al), 1);
    assert_string_equal(al[0].kind, "purchase_failed");
    assert_string_equal(al[0].order_id, "o1");
    assert_int_equal(eng_batch_job_rows(b, &jobs), 1);
    assert_int_equal(jobs[0].state, ENG_JOB_FAILED);
    assert_int_equal(eng_batch_supplier_rows(b, &sr), 1);
    assert_true(sr[0].t.trust < 0.51 && sr[0].t.trust > 0.49);
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(f->err, ENG_OK);
    assert_int_equal(f->order.status, ENG_ST_FAILED);
    eng_stock_view v = stock(e, "s");
    assert_int_equal(v.c.supplier_reserved, 0);
    assert_int_equal(v.c.supplier_reported, 0);  /* until the next sync */
    assert_int_equal(v.available, 0);
    /* The next figure is believed only at the cut trust. */
    assert_true(engine_supplier_report(e, "s", 100, 30));
    run(e, 30, ENG_COMMITTED);
    v = stock(e, "s");
    assert_int_equal(v.c.supplier_sellable, 50);
    assert_true(v.trust > 0.49 && v.trust < 0.51);
    /* A repeat of the outcome changes nothing. */
    n_done = 0;
    assert_int_equal(engine_submit(e, f, 40), ENG_OK);
    run(e, 40, ENG_COMMITTED);
    assert_int_equal(f->err, ENG_OK);
    assert_int_equal(stock(e, "s").available, 50);
    free(f);
    engine_free(e);
}

static void test_purchase_failed_link_and_repair(void **state)
{
    (void)state;
    engine *e = mk();
    put_supplier_sku(e, "s", 10);
    reserve_now(e, "o1", "s", 2, 10);
    eng_op *f = outcome_op(ENG_OP_PURCHASE_FAILED, "o1");
    f->fail_kind = ENG_FAIL_LINK;
    snprintf(f->reason, sizeof(f->reason), "preview: 500_003 spec gone");
    assert_int_equal(engine_submit(e, f, 20), ENG_OK);
    eng_batch *b = engine_next_batch(e, 20);
    const eng_alert_row *al;
    assert_int_equal(eng_batch_alert_rows(b, &al), 2);
    assert_string_equal(al[1].kind, "mapping_broken");
    const eng_sku_row *sr;
    assert_int_equal(eng_batch_sku_rows(b, &sr), 1);
    assert_int_equal(sr[0].mapping, ENG_MAP_BROKEN);
    assert_non_null(sr[0].map);  /* kept for support */
    engine_batch_done(e, b, ENG_COMMITTED);
    eng_stock_view v = stock(e, "s");
    assert_int_equal(v.mapping, ENG_MAP_BROKEN);
    assert_true(v.has_map);
    assert_int_equal(v.available, 0);
    /* Figures for a broken mapping change nothing. */
    assert_true(engine_supplier_report(e, "s", 50, 30));
    run(e, 30, ENG_COMMITTED);
    assert_int_equal(stock(e, "s").available, 0);
    eng_op *r = op_new(ENG_OP_RESERVE, "o2", "s", 1);
    assert_int_equal(engine_submit(e, r, 31), ENG_OK);
    run(e, 31, ENG_COMMITTED);
    assert_int_equal(r->err, ENG_E_INSUFFICIENT);
    /* sku.put with a fresh mapping repairs it. */
    put_mapped(e, "s", 0, 8, "spec2");
    assert_int_equal(stock(e, "s").mapping, ENG_MAP_OK);
    assert_true(engine_supplier_report(e, "s", 5, 40));
    run(e, 40, ENG_COMMITTED);
    assert_int_equal(stock(e, "s").available, 5);
    free(f);
    free(r);
    engine_free(e);
}

static void test_observe_broken_and_fingerprint(void **state)
{
    (void)state;
    engine *e = mk();
    put_supplier_sku(e, "s", 10);
    eng_supplier_map m = mkmap(7, "spec");
    eng_supplier_obs obs = {.reported = 10, .synced_at_ms = 5, .fingerprint = 0xabc};
    assert_true(engine_supplier_observe(e, "s", &m, &obs));  /* adopted */
    run(e, 5, ENG_COMMITTED);
    eng_stock_view v = stock(e, "s");
    assert_int_equal(v.mapping, ENG_MAP_OK);
    assert_int_equal((int64_t)v.map.fingerprint, 0xabc);
    obs.fingerprint = 0xabd;  /* the price moved */
    assert_true(engine_supplier_observe(e, "s", &m, &obs));
    eng_batch *b = engine_next_batch(e, 6);
    const eng_alert_row *al;
    assert_int_equal(eng_batch_alert_rows(b, &al), 1);
    assert_string_equal(al[0].kind, "mapping_broken");
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(stock(e, "s").mapping, ENG_MAP_BROKEN);
    assert_int_equal(stock(e, "s").available, 0);
    /* A waiting "broken" is not replaced by a later figure. */
    put_mapped(e, "t", 0, 9, "x");
    eng_supplier_map mt = mkmap(9, "x");
    eng_supplier_obs gone = {.reported = 0, .synced_at_ms = 7};
    snprintf(gone.broken, sizeof(gone.broken), "spec removed");
    assert_true(engine_supplier_observe(e, "t", &mt, &gone));
    eng_supplier_obs fig = {.reported = 40, .synced_at_ms = 8};
    assert_true(engine_supplier_observe(e, "t", &mt, &fig));
    run(e, 8, ENG_COMMITTED);
    assert_int_equal(stock(e, "t").mapping, ENG_MAP_BROKEN);
    engine_free(e);
}

static void test_trust_and_cap(void **state)
{
    (void)state;
    engine *e = mk();
    eng_op *op = op_new(ENG_OP_SKU_PUT, NULL, "c", 0);
    op->has_supplier = true;
    op->supplier = mkmap(3, "z");
    op->supplier.cap = 7;
    assert_int_equal(engine_submit(e, op, 1), ENG_OK);
    run(e, 1, ENG_COMMITTED);
    free(op);
    assert_true(engine_supplier_report(e, "c", 100, 2));
    run(e, 2, ENG_COMMITTED);
    assert_int_equal(stock(e, "c").c.supplier_sellable, 7);  /* the cap */
    assert_int_equal(eng_sellable(100, 0.33, -1), 33);
    assert_int_equal(eng_sellable(5, 0.0, -1), 0);
    /* supplier.put: event mode with its own trust; every SKU follows at once. */
    eng_op *sp = op_new(ENG_OP_SUPPLIER_PUT, NULL, "", 0);
    snprintf(sp->supplier.supplier_id, sizeof(sp->supplier.supplier_id), "1688");
    sp->has_trust = true;
    sp->trust = (eng_trust){.trust = 1.0, .ceiling = 1.0, .event_mode = true, .event_trust = 0.05};
    assert_int_equal(engine_submit(e, sp, 3), ENG_OK);
    eng_batch *b = engine_next_batch(e, 3);
    assert_non_null(b);
    assert_false(eng_batch_is_empty(b));
    const eng_supplier_row *sr;
    assert_int_equal(eng_batch_supplier_rows(b, &sr), 1);
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(sp->err, ENG_OK);
    assert_int_equal(stock(e, "c").c.supplier_sellable, 5);
    assert_int_equal(stock(e, "c").available, 5);
    /* An aborted supplier.put leaves the settings as they were. */
    sp->trust.event_mode = false;
    n_done = 0;
    assert_int_equal(engine_submit(e, sp, 4), ENG_OK);
    run(e, 4, ENG_ABORTED);
    eng_trust t;
    assert_true(engine_supplier_trust(e, "1688", &t));
    assert_true(t.event_mode);
    sp->trust.ceiling = 2.0;
    assert_int_equal(engine_submit(e, sp, 5), ENG_E_INVALID);
    free(sp);
    engine_free(e);
}

static void test_purchase_recovered_on_load(void **state)
{
    (void)state;
    engine *e = mk();
    eng_counters c = {.supplier_reported = 10, .supplier_reserved = 3};
    eng_supplier_map m = mkmap(7, "spec");
    assert_true(engine_load_sku(e, "s", &c, ENG_MAP_OK, &m, 1));
    eng_order_view v;
    memset(&v, 0, sizeof(v));
    snprintf(v.order_id, sizeof(v.order_id), "old");
    snprintf(v.sku, sizeof(v.sku), "s");
    v.qty = 3;
    v.from_supplier = 3;
    v.status = ENG_ST_CONFIRMED;
    assert_true(engine_load_order(e, &v));
    eng_purchase p;
    assert_true(engine_purchase_claim(e, &p));
    assert_true(p.recovered);
    engine_purchase_unclaim(e, &p);
    assert_true(engine_purchase_claim(e, &p));
    /* Released meanwhile: a late purchase is recorded and support told. */
    eng_op *rel = op_new(ENG_OP_RELEASE, "old", "s", 0);
    assert_int_equal(engine_submit(e, rel, 10), ENG_OK);
    eng_batch *b = engine_next_batch(e, 10);
    const eng_job_row *jobs;
    assert_int_equal(eng_batch_job_rows(b, &jobs), 1);
    assert_int_equal(jobs[0].state, ENG_JOB_CANCELLED);
    engine_batch_done(e, b, ENG_COMMITTED);
    uint32_t un, cl;
    engine_purchase_counts(e, &un, &cl);
    assert_int_equal(un + cl, 0);
    eng_op *ok = outcome_op(ENG_OP_PURCHASED, "old");
    snprintf(ok->upstream_order_id, sizeof(ok->upstream_order_id), "99");
    assert_int_equal(engine_submit(e, ok, 11), ENG_OK);
    b = engine_next_batch(e, 11);
    const eng_alert_row *al;
    assert_int_equal(eng_batch_alert_rows(b, &al), 1);
    assert_string_equal(al[0].kind, "purchase_after_release");
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(ok->err, ENG_OK);
    assert_int_equal(ok->order.status, ENG_ST_RELEASED);
    free(rel);
    free(ok);
    engine_free(e);
}

/* A reserve with lines; the lines live with the op (freed with it). */
typedef struct lines_op {
    eng_op op;
    eng_line_in lines[ENG_LINES_MAX];
} lines_op;

static eng_op *cart_new(const char *order_id, const char *spec, int64_t hold_ms)
{
    lines_op *lo = calloc(1, sizeof(*lo));
    eng_op *op = &lo->op;
    op->kind = ENG_OP_RESERVE;
    snprintf(op->order_id, sizeof(op->order_id), "%s", order_id);
    op->hold_ms = hold_ms;
    /* spec: "sku:qty sku:qty ..." */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *tok = strtok(buf, " "); tok != NULL; tok = strtok(NULL, " ")) {
        char *colon = strchr(tok, ':');
        assert_non_null(colon);
        *colon = '\0';
        eng_line_in *l = &lo->lines[op->n_lines++];
        snprintf(l->sku, sizeof(l->sku), "%s", tok);
        l->qty = atoi(colon + 1);
    }
    op->lines = lo->lines;
    return op;
}

static int64_t own_reserved(engine *e, const char *sku)
{
    eng_stock_view v;
    assert_true(engine_stock_get(e, sku, &v));
    return v.c.own_reserved;
}

static void test_lines_same_sku_summed(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "tee", 3, -1);
    eng_op *a = cart_new("c1", "tee:2 tee:2", 0);
    assert_int_equal(engine_submit(e, a, 10), ENG_OK);
    run(e, 10, ENG_COMMITTED);
    assert_int_equal(a->err, ENG_E_INSUFFICIENT);
    assert_int_equal(a->err_line, 0);
    assert_int_equal(a->err_available, 3);
    assert_int_equal(avail(e, "tee"), 3);
    eng_order_view v;
    assert_false(engine_order_get(e, "c1", &v));
    eng_op *b = cart_new("c2", "tee:1 tee:2", 0);
    assert_int_equal(engine_submit(e, b, 10), ENG_OK);
    run(e, 10, ENG_COMMITTED);
    assert_int_equal(b->err, ENG_OK);
    assert_int_equal(b->order.qty, 3);
    assert_int_equal(b->order.n_lines, 1);
    assert_int_equal(avail(e, "tee"), 0);
    free(a);
    free(b);
    engine_free(e);
}

static void test_cart_all_or_nothing(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "a", 5, -1);
    put(e, "b", 1, -1);
    put(e, "c", 5, -1);
    eng_op *x = cart_new("x", "a:2 c:1 b:2 a:1", 0);
    assert_int_equal(engine_submit(e, x, 10), ENG_OK);
    run(e, 10, ENG_COMMITTED);
    assert_int_equal(x->err, ENG_E_INSUFFICIENT);
    assert_int_equal(x->err_line, 2);
    assert_int_equal(x->err_available, 1);
    assert_int_equal(avail(e, "a"), 5);
    assert_int_equal(avail(e, "c"), 5);
    eng_op *u = cart_new("u", "a:1 zz:1", 0);
    assert_int_equal(engine_submit(e, u, 10), ENG_E_UNKNOWN_SKU);
    assert_int_equal(u->err_line, 1);

    eng_op *y = cart_new("y", "a:2 c:1 b:1 a:1", 5000);
    assert_int_equal(engine_submit(e, y, 10), ENG_OK);
    eng_batch *bt = engine_next_batch(e, 10);
    assert_non_null(bt);
    const eng_order_row *rows;
    assert_int_equal(eng_batch_order_rows(bt, &rows), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(rows[i].o.n_lines, 3);
        assert_string_equal(rows[i].o.order_id, "y");
    }
    const eng_sku_row *srows;
    assert_int_equal(eng_batch_sku_rows(bt, &srows), 3);
    engine_batch_done(e, bt, ENG_COMMITTED);
    assert_int_equal(y->err, ENG_OK);
    assert_int_equal(y->order.status, ENG_ST_HELD);
    assert_int_equal(y->order.qty, 5);
    eng_line_view lv[ENG_LINES_MAX];
    assert_int_equal(engine_order_lines(e, "y", lv, ENG_LINES_MAX), 3);
    assert_string_equal(lv[0].sku, "a");
    assert_int_equal(lv[0].qty, 3);
    assert_string_equal(lv[1].sku, "c");
    assert_string_equal(lv[2].sku, "b");
    assert_int_equal(avail(e, "a"), 2);
    assert_int_equal(avail(e, "b"), 0);
    /* A retry is the record; other lines are a conflict. */
    eng_op *r = cart_new("y", "a:3 c:1 b:1", 5000);
    assert_int_equal(engine_submit(e, r, 20), ENG_OK);
    run(e, 20, ENG_COMMITTED);
    assert_int_equal(r->err, ENG_OK);
    eng_op *k = cart_new("y", "a:3 c:1", 5000);
    assert_int_equal(engine_submit(e, k, 20), ENG_E_CONFLICT);
    /* Confirm, then ship: the whole order. */
    eng_op *cf = op_new(ENG_OP_CONFIRM, "y", NULL, 0);
    assert_int_equal(engine_submit(e, cf, 30), ENG_OK);
    run(e, 30, ENG_COMMITTED);
    assert_int_equal(cf->err, ENG_OK);
    assert_int_equal(cf->order.status, ENG_ST_CONFIRMED);
    assert_int_equal(engine_order_lines(e, "y", lv, ENG_LINES_MAX), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lv[i].status, ENG_ST_CONFIRMED);
    eng_op *sh = op_new(ENG_OP_SHIP, "y", NULL, 0);
    assert_int_equal(engine_submit(e, sh, 40), ENG_OK);
    run(e, 40, ENG_COMMITTED);
    assert_int_equal(sh->err, ENG_OK);
    eng_stock_view sv;
    assert_true(engine_stock_get(e, "a", &sv));
    assert_int_equal(sv.c.own_on_hand, 2);
    assert_int_equal(sv.c.own_reserved, 0);
    assert_true(engine_stock_get(e, "b", &sv));
    assert_int_equal(sv.c.own_on_hand, 0);
    eng_op *rl = op_new(ENG_OP_RELEASE, "y", NULL, 0);
    assert_int_equal(engine_submit(e, rl, 50), ENG_OK);
    run(e, 50, ENG_COMMITTED);
    assert_int_equal(rl->err, ENG_E_INVALID_STATE);
    assert_int_equal(rl->err_status, ENG_ST_SHIPPED);
    eng_op *all[] = {x, u, y, r, k, cf, sh, rl};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    engine_free(e);
}

/* A cart waits until it heads every FIFO it names, then is decided in the
 * same batch as the ops behind it, in arrival order. */
static void test_cart_waits_for_every_fifo(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "a", 5, -1);
    put(e, "b", 1, -1);
    eng_op *first = op_new(ENG_OP_RESERVE, "r1", "a", 1);
    assert_int_equal(engine_submit(e, first, 10), ENG_OK);
    eng_batch *b1 = engine_next_batch(e, 10);
    assert_non_null(b1);
    eng_op *cart = cart_new("c", "a:1 b:1", 0);
    eng_op *after = op_new(ENG_OP_RESERVE, "r2", "b", 1);
    assert_int_equal(engine_submit(e, cart, 11), ENG_OK);
    assert_int_equal(engine_submit(e, after, 11), ENG_OK);
    /* a is in flight: the cart waits, and r2 waits behind it on b. */
    assert_null(engine_next_batch(e, 11));
    engine_batch_done(e, b1, ENG_COMMITTED);
    eng_batch *b2 = engine_next_batch(e, 12);
    assert_non_null(b2);
    assert_int_equal(eng_batch_ops(b2), 2);
    engine_batch_done(e, b2, ENG_COMMITTED);
    assert_int_equal(cart->err, ENG_OK);
    assert_int_equal(after->err, ENG_E_INSUFFICIENT);
    assert_int_equal(own_reserved(e, "a"), 2);
    assert_int_equal(own_reserved(e, "b"), 1);
    /* A cancelled cart leaves no placeholder and wakes what waited. */
    eng_op *c2 = cart_new("c2", "a:1 b:1", 0);
    eng_op *r3 = op_new(ENG_OP_RESERVE, "r3", "a", 1);
    assert_int_equal(engine_submit(e, c2, 13), ENG_OK);
    assert_int_equal(engine_submit(e, r3, 13), ENG_OK);
    assert_true(engine_cancel(e, c2));
    eng_order_view v;
    assert_false(engine_order_get(e, "c2", &v));
    run(e, 14, ENG_COMMITTED);
    assert_int_equal(r3->err, ENG_OK);
    eng_stats st;
    engine_stats_get(e, &st);
    assert_int_equal(st.queued, 0);
    free(first);
    free(cart);
    free(after);
    free(c2);
    free(r3);
    engine_free(e);
}

static void test_cart_abort_and_expiry(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "a", 5, -1);
    put(e, "b", 5, -1);
    eng_op *c = cart_new("c", "a:2 b:3", 1000);
    assert_int_equal(engine_submit(e, c, 10), ENG_OK);
    run(e, 10, ENG_ABORTED);
    assert_int_equal(c->err, ENG_E_UNAVAILABLE);
    eng_order_view v;
    assert_false(engine_order_get(e, "c", &v));
    eng_stats st;
    engine_stats_get(e, &st);
    assert_int_equal(st.orders, 0);
    assert_int_equal(avail(e, "a"), 5);
    free(c);
    c = cart_new("c", "a:2 b:3", 1000);
    assert_int_equal(engine_submit(e, c, 20), ENG_OK);
    run(e, 20, ENG_COMMITTED);
    assert_int_equal(c->err, ENG_OK);
    assert_int_equal(avail(e, "b"), 2);
    assert_int_equal(engine_expire_due(e, 1019), 0);
    assert_int_equal(engine_expire_due(e, 1020), 1);
    run(e, 1020, ENG_COMMITTED);
    assert_true(engine_order_get(e, "c", &v));
    assert_int_equal(v.status, ENG_ST_EXPIRED);
    assert_int_equal(avail(e, "a"), 5);
    assert_int_equal(avail(e, "b"), 5);
    free(c);
    engine_free(e);
}

/* Parts of a cross-shard order: keyed by line, never expired by the
 * engine, settled by the caller's decision. */
static void test_parts(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "a", 5, -1);
    eng_op *p1 = op_new(ENG_OP_RESERVE, "o", "a", 2);
    p1->part_lines = 3;
    p1->line_no = 1;
    p1->hold_ms = 1000;
    eng_op *p2 = op_new(ENG_OP_RESERVE, "o", "a", 1);
    p2->part_lines = 3;
    p2->line_no = 2;
    p2->hold_ms = 1000;
    assert_int_equal(engine_submit(e, p1, 10), ENG_OK);
    assert_int_equal(engine_submit(e, p2, 10), ENG_OK);
    run(e, 10, ENG_COMMITTED);
    assert_int_equal(p1->err, ENG_OK);
    assert_int_equal(p2->err, ENG_OK);
    assert_int_equal(p1->order.line_no, 1);
    assert_int_equal(p1->order.n_lines, 3);
    assert_string_equal(p1->order.order_id, "o");
    eng_order_view v;
    assert_false(engine_order_get(e, "o", &v));
    assert_true(engine_part_get(e, "o", 2, &v));
    assert_int_equal(v.qty, 1);
    char sku[ENG_ID_MAX + 1];
    assert_true(engine_part_sku(e, "o", 1, sku));
    assert_string_equal(sku, "a");
    assert_false(engine_part_sku(e, "o", 0, NULL));   /* no line 0 here */
    char name[ENG_KEY_MAX + 1];
    eng_part_key("o", 1, name);                       /* a name, not a key */
    assert_string_equal(name, "o#1");
    assert_false(engine_order_sku(e, name, NULL));
    /* A plain confirm does not name a part. */
    eng_op *plain = op_new(ENG_OP_CONFIRM, "o", NULL, 0);
    assert_int_equal(engine_submit(e, plain, 20), ENG_E_NOT_FOUND);
    assert_int_equal(engine_expire_due(e, 2000), 0);
    eng_part_ref ref;
    assert_true(engine_part_due(e, 2000, &ref));
    assert_true(engine_part_due(e, 2000, &ref) || true);
    assert_false(engine_part_due(e, 2000, &ref));
    assert_int_equal(avail(e, "a"), 2);
    eng_op *cf = op_new(ENG_OP_CONFIRM, "o", NULL, 0);
    cf->part_lines = 3;
    cf->line_no = 1;
    cf->decided = true;
    eng_op *rl = op_new(ENG_OP_RELEASE, "o", NULL, 0);
    rl->part_lines = 3;
    rl->line_no = 2;
    rl->as_expired = true;
    assert_int_equal(engine_submit(e, cf, 2001), ENG_OK);
    assert_int_equal(engine_submit(e, rl, 2001), ENG_OK);
    run(e, 2001, ENG_COMMITTED);
    assert_int_equal(cf->err, ENG_OK);
    assert_int_equal(cf->order.status, ENG_ST_CONFIRMED);
    assert_int_equal(rl->err, ENG_OK);
    assert_int_equal(rl->order.status, ENG_ST_EXPIRED);
    assert_int_equal(avail(e, "a"), 3);
    /* Another part's purchase failed: this confirmed part fails too. */
    eng_op *fl = op_new(ENG_OP_RELEASE, "o", NULL, 0);
    fl->part_lines = 3;
    fl->line_no = 1;
    fl->as_failed = true;
    snprintf(fl->reason, sizeof fl->reason, "line 2 failed: 500_004");
    assert_int_equal(engine_submit(e, fl, 2002), ENG_OK);
    run(e, 2002, ENG_COMMITTED);
    assert_int_equal(fl->err, ENG_OK);
    assert_int_equal(fl->order.status, ENG_ST_FAILED);
    assert_string_equal(fl->order.reason, "line 2 failed: 500_004");
    assert_int_equal(avail(e, "a"), 5);
    free(fl);
    /* A release that overtook its part's reserve: the late reserve holds
     * nothing; the tombstone lapses after 10 minutes. */
    eng_op *early = op_new(ENG_OP_RELEASE, "q", NULL, 0);
    early->part_lines = 2;
    early->line_no = 1;
    assert_int_equal(engine_submit(e, early, 3000), ENG_E_NOT_FOUND);
    eng_op *late = op_new(ENG_OP_RESERVE, "q", "a", 1);
    late->part_lines = 2;
    late->line_no = 1;
    assert_int_equal(engine_submit(e, late, 3001), ENG_E_EXPIRED);
    eng_op *other = op_new(ENG_OP_RESERVE, "q", "a", 1);
    other->part_lines = 2;
    other->line_no = 0;
    assert_int_equal(engine_submit(e, other, 3001), ENG_OK);
    run(e, 3001, ENG_COMMITTED);
    assert_int_equal(other->err, ENG_OK);
    late->err = ENG_OK;
    assert_int_equal(engine_submit(e, late, 3000 + 600000), ENG_OK);
    run(e, 3000 + 600000, ENG_COMMITTED);
    assert_int_equal(late->err, ENG_OK);
    free(early);
    free(late);
    free(other);
    /* A retry of a part elsewhere in the order is a conflict. */
    eng_op *bad = op_new(ENG_OP_RESERVE, "o", "a", 5);
    bad->part_lines = 3;
    bad->line_no = 1;
    assert_int_equal(engine_submit(e, bad, 2002), ENG_E_CONFLICT);
    eng_op *all[] = {p1, p2, plain, cf, rl, bad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    engine_free(e);
}

static void test_load_lines(void **state)
{
    (void)state;
    for (int parts = 0; parts < 2; parts++) {
        engine *e = mk();
        engine_set_parts_mode(e, parts == 1);
        eng_counters c = {.own_on_hand = 10, .own_reserved = 3};
        assert_true(engine_load_sku(e, "a", &c, ENG_MAP_NONE, NULL, 1));
        c.own_reserved = 4;
        assert_true(engine_load_sku(e, "b", &c, ENG_MAP_NONE, NULL, 1));
        eng_order_view v;
        memset(&v, 0, sizeof v);
        snprintf(v.order_id, sizeof v.order_id, "o");
        v.status = ENG_ST_HELD;
        v.n_lines = 2;
        v.hold_expires_at_ms = 5000;
        snprintf(v.sku, sizeof v.sku, "a");
        v.qty = v.from_own = 3;
        assert_true(engine_load_order(e, &v));
        v.line_no = 1;
        snprintf(v.sku, sizeof v.sku, "b");
        v.qty = v.from_own = 4;
        assert_true(engine_load_order(e, &v));
        eng_line_view lv[ENG_LINES_MAX];
        eng_order_view w;
        if (parts == 0) {
            assert_int_equal(engine_order_lines(e, "o", lv, ENG_LINES_MAX), 2);
            assert_true(engine_order_get(e, "o", &w));
            assert_int_equal(w.qty, 7);
            /* The whole order expires at once. */
            assert_int_equal(engine_expire_due(e, 5000), 1);
            run(e, 5000, ENG_COMMITTED);
            assert_int_equal(own_reserved(e, "a"), 0);
            assert_int_equal(own_reserved(e, "b"), 0);
        } else {
            assert_true(engine_part_get(e, "o", 1, &w));
            assert_int_equal(w.qty, 4);
            assert_int_equal(engine_expire_due(e, 5000), 0);
            eng_part_ref ref;
            int due = 0;
            while (engine_part_due(e, 5000, &ref))
                due++;
            assert_int_equal(due, 2);
        }
        engine_free(e);
    }
}

/* ---- rows that cannot be trusted: set aside, never asserted on ---- */

static eng_order_view line_view(const char *order_id, const char *sku, int qty, eng_status st,
                                int line_no, int n_lines)
{
    eng_order_view v;
    memset(&v, 0, sizeof v);
    snprintf(v.order_id, sizeof v.order_id, "%s", order_id);
    snprintf(v.sku, sizeof v.sku, "%s", sku);
    v.qty = v.from_own = qty;
    v.status = st;
    v.line_no = line_no;
    v.n_lines = n_lines;
    v.hold_expires_at_ms = st == ENG_ST_HELD ? 5000 : 0;
    return v;
}

static void load_plain(engine *e, const char *sku, int64_t on_hand, int64_t reserved)
{
    eng_counters c = {.own_on_hand = on_hand, .own_reserved = reserved};
    assert_true(engine_load_sku(e, sku, &c, ENG_MAP_NONE, NULL, 1));
}

/* The alert rows of the next batch (committed), as "sku/order_id". */
static size_t aside_alerts(engine *e, char out[][160], size_t max)
{
    size_t n = 0;
    eng_batch *b;
    while ((b = engine_next_batch(e, 10)) != NULL) {
        const eng_alert_row *a;
        size_t k = eng_batch_alert_rows(b, &a);
        for (size_t i = 0; i < k && n < max; i++) {
            assert_string_equal(a[i].kind, "set_aside");
            snprintf(out[n++], 160, "%s/%s", a[i].sku, a[i].order_id);
        }
        engine_batch_done(e, b, ENG_COMMITTED);
    }
    return n;
}

static void test_row_checks(void **state)
{
    (void)state;
    char why[ENG_REASON_MAX + 1];
    eng_counters c = {.own_on_hand = 5, .own_reserved = 6};
    assert_false(eng_sku_row_valid(&c, ENG_MAP_NONE, NULL, why));
    assert_non_null(strstr(why, "exceeds"));
    c = (eng_counters){.own_on_hand = -1};
    assert_false(eng_sku_row_valid(&c, ENG_MAP_NONE, NULL, why));
    c = (eng_counters){.supplier_reported = ENG_STOCK_MAX + 1};
    assert_false(eng_sku_row_valid(&c, ENG_MAP_MANUAL, NULL, why));
    c = (eng_counters){0};
    assert_false(eng_sku_row_valid(&c, ENG_MAP_OK, NULL, why));  /* ok without a map */
    assert_true(eng_sku_row_valid(&c, ENG_MAP_NONE, NULL, why));
    eng_order_view v = line_view("o", "a", 2, ENG_ST_HELD, 0, 1);
    assert_true(eng_order_row_valid(&v, why));
    v.hold_expires_at_ms = 0;
    assert_false(eng_order_row_valid(&v, why));  /* a hold that never ends */
    v = line_view("o#1", "a", 2, ENG_ST_CONFIRMED, 0, 1);
    assert_false(eng_order_row_valid(&v, why));  /* '#' is how parts are named */
    v = line_view("o", "a", 2, ENG_ST_CONFIRMED, 0, 1);
    v.from_supplier = 1;
    assert_false(eng_order_row_valid(&v, why));  /* 2 + 1 is not 2 */
    v = line_view("o", "a", 2, ENG_ST_CONFIRMED, 3, 2);
    assert_false(eng_order_row_valid(&v, why));
    v = line_view("o", "a", 2, ENG_ST_COUNT_, 0, 1);
    assert_false(eng_order_row_valid(&v, why));
    /* engine_load_sku refuses what the check refuses, and leaves no SKU. */
    engine *e = mk();
    c = (eng_counters){.own_on_hand = 1, .own_reserved = 2};
    assert_false(engine_load_sku(e, "a", &c, ENG_MAP_NONE, NULL, 1));
    assert_false(engine_knows_sku(e, "a"));
    engine_free(e);
}

/* The forged part of a cart: line 0 of 2, alone, its hold lapsed. Loaded
 * as a whole order it made every expiry pass abort (push_tickets); now it
 * is set aside, its units frozen, and the SKU sells the rest. */
static void test_lone_part_set_aside(void **state)
{
    (void)state;
    engine *e = mk();
    load_plain(e, "a", 10, 2);
    eng_order_view v = line_view("forged", "a", 2, ENG_ST_HELD, 0, 2);
    char why[ENG_REASON_MAX + 1];
    assert_int_equal(engine_load_order_lines(e, &v, 1, why), 0);
    assert_non_null(strstr(why, "1 of its 2 lines"));
    eng_order_view w;
    assert_false(engine_order_get(e, "forged", &w));  /* nothing half-loaded */
    assert_int_equal(engine_set_aside_order(e, "forged", &v, 1, "a", why), 1);
    assert_int_equal(engine_audit_loaded(e, NULL, NULL), 0);  /* 2 frozen = 2 reserved */
    assert_int_equal(engine_set_aside_order(e, "forged", &v, 1, "a", why), 0);
    assert_int_equal(engine_expire_due(e, 100000), 0);
    assert_int_equal(avail(e, "a"), 8);
    /* The rest sells; the frozen units never do. */
    eng_op *r = op_new(ENG_OP_RESERVE, "fresh", "a", 8);
    r->hold_ms = 1000;
    assert_int_equal(engine_submit(e, r, 10), ENG_OK);
    eng_op *r2 = op_new(ENG_OP_RESERVE, "fresh2", "a", 1);
    r2->hold_ms = 1000;
    assert_int_equal(engine_submit(e, r2, 10), ENG_OK);
    char al[4][160];
    assert_int_equal(aside_alerts(e, al, 4), 1);  /* rides with the batch */
    assert_string_equal(al[0], "a/forged");
    assert_int_equal(r->err, ENG_OK);
    assert_int_equal(r2->err, ENG_E_INSUFFICIENT);
    /* Its order_id is refused, reads too, with why. */
    eng_op *x = op_new(ENG_OP_RELEASE, "forged", NULL, 0);
    assert_int_equal(engine_submit(e, x, 20), ENG_E_UNAVAILABLE);
    assert_non_null(strstr(x->err_aside, "forged is set aside"));
    eng_op *y = op_new(ENG_OP_RESERVE, "forged", "a", 1);
    y->hold_ms = 1000;
    assert_int_equal(engine_submit(e, y, 20), ENG_E_UNAVAILABLE);
    char msg[ENG_REASON_MAX + 1];
    eng_op *g = op_new(ENG_OP_CONFIRM, "forged", NULL, 0);
    assert_true(engine_aside_of(e, g, msg));
    eng_stats st;
    engine_stats_get(e, &st);
    assert_int_equal(st.orders_aside, 1);
    free(r), free(r2), free(x), free(y), free(g);
    engine_free(e);
}

static void test_bad_order_lines(void **state)
{
    (void)state;
    engine *e = mk();
    load_plain(e, "a", 10, 0);
    load_plain(e, "b", 10, 0);
    char why[ENG_REASON_MAX + 1];
    eng_order_view v[3];
    /* A gap: lines 0 and 2 of 3. */
    v[0] = line_view("gap", "a", 1, ENG_ST_HELD, 0, 3);
    v[1] = line_view("gap", "b", 1, ENG_ST_HELD, 2, 3);
    assert_int_equal(engine_load_order_lines(e, v, 2, why), 0);
    /* The same line twice. */
    v[1] = line_view("dup", "b", 1, ENG_ST_HELD, 0, 2);
    v[0] = line_view("dup", "a", 1, ENG_ST_HELD, 0, 2);
    assert_int_equal(engine_load_order_lines(e, v, 2, why), 0);
    assert_non_null(strstr(why, "twice"));
    /* n_lines that disagree. */
    v[0] = line_view("nl", "a", 1, ENG_ST_HELD, 0, 2);
    v[1] = line_view("nl", "b", 1, ENG_ST_HELD, 1, 3);
    assert_int_equal(engine_load_order_lines(e, v, 2, why), 0);
    /* Held next to released: all or nothing was broken. */
    v[0] = line_view("mix", "a", 1, ENG_ST_HELD, 0, 2);
    v[1] = line_view("mix", "b", 1, ENG_ST_RELEASED, 1, 2);
    assert_int_equal(engine_load_order_lines(e, v, 2, why), 0);
    /* A SKU that is not there. */
    v[0] = line_view("ghost", "zz", 1, ENG_ST_CONFIRMED, 0, 1);
    assert_int_equal(engine_load_order_lines(e, v, 1, why), 0);
    assert_non_null(strstr(why, "not loaded"));
    /* Different orders in one call. */
    v[0] = line_view("p", "a", 1, ENG_ST_HELD, 0, 2);
    v[1] = line_view("q", "b", 1, ENG_ST_HELD, 1, 2);
    assert_int_equal(engine_load_order_lines(e, v, 2, why), 0);
    /* A whole one loads, and a reload must match it. */
    v[0] = line_view("ok", "a", 1, ENG_ST_HELD, 0, 2);
    v[1] = line_view("ok", "b", 2, ENG_ST_HELD, 1, 2);
    assert_int_equal(engine_load_order_lines(e, v, 2, why), 1);
    eng_order_view w;
    assert_true(engine_order_get(e, "ok", &w));
    assert_int_equal(w.qty, 3);
    v[1] = line_view("ok", "a", 2, ENG_ST_HELD, 1, 2);
    assert_int_equal(engine_load_order_lines(e, v, 2, why), 0);  /* line 1 changed SKU */
    /* Once its SKUs are in service, memory (their one writer) stands. */
    assert_int_equal(engine_audit_loaded(e, NULL, NULL), 2);  /* "ok" holds units not counted */
    load_plain(e, "c", 10, 0);
    load_plain(e, "d", 10, 3);
    v[0] = line_view("keep", "c", 1, ENG_ST_HELD, 0, 1);
    assert_int_equal(engine_load_order_lines(e, v, 1, why), 1);
    v[0] = line_view("other", "d", 3, ENG_ST_CONFIRMED, 0, 1);
    assert_int_equal(engine_load_order_lines(e, v, 1, why), 1);
    assert_int_equal(engine_audit_loaded(e, NULL, NULL), 1);  /* c: 0 reserved, 1 held */
    v[0] = line_view("other", "d", 2, ENG_ST_CONFIRMED, 0, 1);
    assert_int_equal(engine_load_order_lines(e, v, 1, why), 1);
    assert_true(engine_order_get(e, "other", &w));
    assert_int_equal(w.qty, 3);
    engine_free(e);

    /* Sharded, a line of several is a part: alone is fine. */
    e = mk();
    engine_set_parts_mode(e, true);
    load_plain(e, "a", 10, 1);
    v[0] = line_view("cart", "a", 1, ENG_ST_HELD, 1, 3);
    assert_int_equal(engine_load_order_lines(e, v, 1, why), 1);
    assert_true(engine_part_get(e, "cart", 1, &w));
    assert_int_equal(engine_audit_loaded(e, NULL, NULL), 0);
    engine_free(e);
}

static void note_aside(const char *sku, const char *why, void *arg)
{
    (void)why;
    snprintf(arg, ENG_ID_MAX + 1, "%s", sku);
}

/* Counters that do not match the orders: the SKU is set aside with its
 * orders; a cart with a line there leaves too, its other line's units
 * stay frozen on a SKU that still serves. */
static void test_audit_sets_sku_aside(void **state)
{
    (void)state;
    engine *e = mk();
    load_plain(e, "bad", 10, 5);    /* 5 reserved, orders hold 1 */
    load_plain(e, "good", 10, 3);   /* orders hold 3 */
    char why[ENG_REASON_MAX + 1];
    eng_order_view v[2];
    v[0] = line_view("cart", "bad", 1, ENG_ST_HELD, 0, 2);
    v[1] = line_view("cart", "good", 2, ENG_ST_HELD, 1, 2);
    assert_int_equal(engine_load_order_lines(e, v, 2, why), 1);
    v[0] = line_view("single", "good", 1, ENG_ST_CONFIRMED, 0, 1);
    assert_int_equal(engine_load_order_lines(e, v, 1, why), 1);
    char named[ENG_ID_MAX + 1] = "";
    assert_int_equal(engine_audit_loaded(e, note_aside, named), 1);
    assert_string_equal(named, "bad");
    assert_true(engine_knows_sku(e, "bad"));   /* never loaded again */
    eng_stock_view sv;
    assert_false(engine_stock_get(e, "bad", &sv));
    eng_order_view w;
    assert_false(engine_order_get(e, "cart", &w));
    assert_true(engine_order_get(e, "single", &w));
    assert_int_equal(avail(e, "good"), 7);     /* the cart's 2 units stay held */
    assert_int_equal(engine_expire_due(e, 100000), 0);  /* its hold left with it */
    eng_op *ops[4] = {op_new(ENG_OP_RESERVE, "n1", "bad", 1), op_new(ENG_OP_SKU_PUT, NULL, "bad", 0),
                      op_new(ENG_OP_ADJUST, NULL, "bad", 0), op_new(ENG_OP_CONFIRM, "cart", NULL, 0)};
    ops[0]->hold_ms = 1000;
    ops[1]->has_own_on_hand = true;
    ops[2]->delta = 1;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(engine_submit(e, ops[i], 10), ENG_E_UNAVAILABLE);
        assert_non_null(strstr(ops[i]->err_aside, "set aside"));
        free(ops[i]);
    }
    /* A cart naming it is refused too. */
    eng_line_in in[2] = {{"good", 1}, {"bad", 1}};
    eng_op *c = op_new(ENG_OP_RESERVE, "c2", NULL, 0);
    c->lines = in;
    c->n_lines = 2;
    c->hold_ms = 1000;
    assert_int_equal(engine_submit(e, c, 10), ENG_E_UNAVAILABLE);
    free(c);
    assert_false(engine_supplier_report(e, "bad", 5, 10));
    char al[4][160];
    assert_int_equal(aside_alerts(e, al, 4), 1);  /* the SKU's; its orders are in it */
    assert_string_equal(al[0], "bad/");
    /* Forgetting (a cluster moved it) drops the entry like any SKU. */
    assert_true(engine_forget_sku(e, "bad", ENG_E_UNAVAILABLE));
    assert_false(engine_knows_sku(e, "bad"));
    engine_free(e);
}

/* The alerts of rows set aside are never lost to a failed batch, and are
 * bounded. */
static void test_aside_alerts_bounded(void **state)
{
    (void)state;
    engine *e = mk();
    for (int i = 0; i < ENG_ASIDE_ALERTS_MAX + 10; i++) {
        char sku[16];
        snprintf(sku, sizeof sku, "s%d", i);
        assert_int_equal(engine_set_aside_sku(e, sku, "test", NULL), 1);
    }
    eng_stats st;
    engine_stats_get(e, &st);
    assert_int_equal(st.aside_alerts_dropped, 10);
    assert_int_equal(st.skus_aside, ENG_ASIDE_ALERTS_MAX + 10);
    assert_true(engine_has_ready(e));
    eng_batch *b = engine_next_batch(e, 1);
    assert_non_null(b);
    assert_false(eng_batch_is_empty(b));
    const eng_alert_row *a;
    assert_int_equal(eng_batch_alert_rows(b, &a), ENG_ASIDE_ALERTS_PER_BATCH);
    assert_string_equal(a[0].sku, "s0");
    engine_batch_done(e, b, ENG_ABORTED);       /* they come back, first */
    b = engine_next_batch(e, 2);
    assert_int_equal(eng_batch_alert_rows(b, &a), ENG_ASIDE_ALERTS_PER_BATCH);
    assert_string_equal(a[0].sku, "s0");
    engine_batch_done(e, b, ENG_UNKNOWN);
    engine_batch_resolve(e, b, false);          /* not written: back again */
    size_t total = 0;
    while ((b = engine_next_batch(e, 3)) != NULL) {
        total += eng_batch_alert_rows(b, &a);
        engine_batch_done(e, b, ENG_COMMITTED);
    }
    assert_int_equal(total, ENG_ASIDE_ALERTS_MAX);
    assert_false(engine_has_ready(e));
    engine_free(e);
}

static void check_invariants(engine *e)
{
    for (int s = 0; s < RW_SKUS; s++) {
        char sku[8];
        snprintf(sku, sizeof(sku), "k%d", s);
        eng_stock_view sv;
        if (!engine_stock_get(e, sku, &sv))
            continue;
        int64_t own = 0, sup = 0;
        for (int i = 0; i < RW_ORDERS; i++) {
            char id[8];
            snprintf(id, sizeof(id), "r%d", i);
            eng_line_view lv[ENG_LINES_MAX];
            size_t n = engine_order_lines(e, id, lv, ENG_LINES_MAX);
            for (size_t j = 0; j < n; j++) {
                if (strcmp(lv[j].sku, sku) != 0)
                    continue;
                if (lv[j].status == ENG_ST_HELD || lv[j].status == ENG_ST_CONFIRMED) {
                    own += lv[j].from_own;
                    sup += lv[j].from_supplier;
                }
            }
            eng_order_view pv;  /* the walk's parts are line 1 of 2 */
            if (engine_part_get(e, id, 1, &pv) && strcmp(pv.sku, sku) == 0 &&
                (pv.status == ENG_ST_HELD || pv.status == ENG_ST_CONFIRMED)) {
                own += pv.from_own;
                sup += pv.from_supplier;
            }
        }
        assert_int_equal(sv.c.own_reserved, own);
        assert_int_equal(sv.c.supplier_reserved, sup);
        assert_true(sv.c.own_reserved <= sv.c.own_on_hand);
    }
}

static eng_op *part_op(eng_op_kind k, const char *id, const char *sku, int qty, int32_t lines,
                       int32_t line_no)
{
    eng_op *op = op_new(k, id, sku, qty);
    op->part_lines = lines;
    op->line_no = line_no;
    if (k == ENG_OP_RESERVE)
        op->hold_ms = 2000;
    return op;
}

/* engine.h "Waiting" and "Erasing": a part short only because of a
 * deciding part waits for it (off the FIFO: the deciding part's release
 * passes it), is met when that part is erased, and a refused part never
 * holds; an erase leaves no row and no record, and a later reserve of the
 * part is decided anew; a wait that runs out is insufficient. */
static void test_parts_wait_and_erase(void **state)
{
    (void)state;
    engine *e = mk();
    put(e, "w", 3, -1);
    eng_op *a = part_op(ENG_OP_RESERVE, "A", "w", 2, 2, 0);
    a->attempt = 7;  /* deciding */
    assert_int_equal(engine_submit(e, a, 10), ENG_OK);
    run(e, 10, ENG_COMMITTED);
    assert_int_equal(a->err, ENG_OK);
    n_done = 0;
    /* 2 of 3 held by a deciding part: B (2) waits, C (4) is short for good. */
    eng_op *b = part_op(ENG_OP_RESERVE, "B", "w", 2, 2, 1);
    b->attempt = 8;
    b->wait_ms = 500;
    eng_op *c = part_op(ENG_OP_RESERVE, "C", "w", 4, 2, 1);
    c->attempt = 9;
    c->wait_ms = 500;
    eng_op *nowait = part_op(ENG_OP_RESERVE, "D", "w", 2, 3, 2);
    nowait->attempt = 10;
    assert_int_equal(engine_submit(e, b, 20), ENG_OK);
    assert_int_equal(engine_submit(e, c, 20), ENG_OK);
    assert_int_equal(engine_submit(e, nowait, 20), ENG_OK);
    run(e, 20, ENG_COMMITTED);
    assert_int_equal(c->err, ENG_E_INSUFFICIENT);
    assert_false(c->err_deciding);
    assert_int_equal(nowait->err, ENG_E_INSUFFICIENT);
    assert_true(nowait->err_deciding);
    eng_stats st;
    engine_stats_get(e, &st);
    assert_int_equal(st.parked, 1);
    assert_int_equal(st.queued, 1);
    assert_int_equal(n_done, 2);  /* B still waits */
    /* A's coordinator backs out: erase (only its own attempt may). */
    eng_op *wrong = part_op(ENG_OP_RELEASE, "A", NULL, 0, 2, 0);
    wrong->erase = true;
    wrong->attempt = 99;
    assert_int_equal(engine_submit(e, wrong, 30), ENG_OK);
    run(e, 30, ENG_COMMITTED);
    assert_int_equal(wrong->err, ENG_E_CONFLICT);
    eng_op *er = part_op(ENG_OP_RELEASE, "A", NULL, 0, 2, 0);
    er->erase = true;
    er->attempt = 7;
    assert_int_equal(engine_submit(e, er, 31), ENG_OK);
    eng_batch *bt = engine_next_batch(e, 31);
    assert_non_null(bt);
    const eng_order_row *rows;
    assert_int_equal(eng_batch_order_rows(bt, &rows), 1);
    assert_true(rows[0].erase);
    assert_false(rows[0].insert);
    engine_batch_done(e, bt, ENG_COMMITTED);
    assert_int_equal(er->err, ENG_OK);
    assert_int_equal(er->order.status, ENG_ST_RELEASED);
    eng_order_view v;
    assert_false(engine_part_get(e, "A", 0, &v));  /* no record */
    /* B was woken by that commit and is held now. */
    run(e, 32, ENG_COMMITTED);
    assert_int_equal(b->err, ENG_OK);
    assert_int_equal(b->order.status, ENG_ST_HELD);
    engine_stats_get(e, &st);
    assert_int_equal(st.parked, 0);
    assert_int_equal(st.park_waits, 1);
    assert_int_equal(avail(e, "w"), 1);
    /* A placed again after its erase: decided anew (1 left: refused, and
     * its placeholder leaves no record either). */
    eng_op *again = part_op(ENG_OP_RESERVE, "A", "w", 2, 2, 0);
    again->attempt = 11;
    assert_int_equal(engine_submit(e, again, 40), ENG_OK);
    run(e, 40, ENG_COMMITTED);
    assert_int_equal(again->err, ENG_E_INSUFFICIENT);
    assert_true(again->err_deciding);  /* B is deciding */
    assert_false(engine_part_get(e, "A", 0, &v));
    /* A wait that runs out: insufficient, decided as it stands. */
    eng_op *late = part_op(ENG_OP_RESERVE, "E", "w", 2, 2, 1);
    late->attempt = 12;
    late->wait_ms = 100;
    assert_int_equal(engine_submit(e, late, 50), ENG_OK);
    run(e, 50, ENG_COMMITTED);
    assert_int_equal(late->err, ENG_OK);  /* untouched: waiting */
    assert_int_equal(engine_next_expiry_ms(e, 60), 90);
    assert_true(engine_expire_due(e, 150) > 0);
    run(e, 150, ENG_COMMITTED);
    assert_int_equal(late->err, ENG_E_INSUFFICIENT);
    assert_true(late->err_deciding);
    engine_stats_get(e, &st);
    assert_int_equal(st.park_timeouts, 1);
    assert_int_equal(st.queued, 0);
    /* A waiting reserve can be cancelled (its deadline) like a queued one. */
    eng_op *cx = part_op(ENG_OP_RESERVE, "F", "w", 2, 2, 1);
    cx->wait_ms = 1000;
    assert_int_equal(engine_submit(e, cx, 200), ENG_OK);
    run(e, 200, ENG_COMMITTED);
    assert_true(engine_cancel(e, cx));
    engine_stats_get(e, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.parked, 0);
    /* Erase after an abort: unconditional, also of a part already expired;
     * an erase of a part never placed is remembered like a release. */
    eng_op *eb = part_op(ENG_OP_RELEASE, "B", NULL, 0, 2, 1);
    eb->erase = true;
    assert_int_equal(engine_submit(e, eb, 300), ENG_OK);
    run(e, 300, ENG_COMMITTED);
    assert_int_equal(eb->err, ENG_OK);
    assert_int_equal(avail(e, "w"), 3);
    eng_op *ghost = part_op(ENG_OP_RELEASE, "G", NULL, 0, 2, 1);
    ghost->erase = true;
    assert_int_equal(engine_submit(e, ghost, 301), ENG_E_NOT_FOUND);
    eng_op *lateg = part_op(ENG_OP_RESERVE, "G", "w", 1, 2, 1);
    assert_int_equal(engine_submit(e, lateg, 302), ENG_E_EXPIRED);
    eng_op *ops[] = {a, b, c, nowait, wrong, er, again, late, cx, eb, ghost, lateg};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        free(ops[i]);
    n_done = 0;
    engine_free(e);
}

/* ---- memory bounded by live orders ------------------------------------------ */

/* A tiny store: the latest committed row of each (order_id, line_no), as
 * MariaDB keeps them; a batch that inserts a row whose key is there fails
 * (the primary key), as it would in MariaDB. */
#define MS_MAX 256
static struct {
    eng_order_view v[MS_MAX];
    bool used[MS_MAX];
} ms;

static int ms_find(const char *id, int32_t line_no)
{
    for (int i = 0; i < MS_MAX; i++)
        if (ms.used[i] && ms.v[i].line_no == line_no && strcmp(ms.v[i].order_id, id) == 0)
            return i;
    return -1;
}

/* Whether b would break the primary key of the tiny store. */
static bool ms_dup(const eng_batch *b)
{
    const eng_order_row *rows;
    size_t n = eng_batch_order_rows(b, &rows);
    for (size_t i = 0; i < n; i++)
        if (rows[i].insert && !rows[i].erase && ms_find(rows[i].o.order_id, rows[i].o.line_no) >= 0)
            return true;
    return false;
}

static void ms_apply(const eng_batch *b)
{
    const eng_order_row *rows;
    size_t n = eng_batch_order_rows(b, &rows);
    for (size_t i = 0; i < n; i++) {
        int k = ms_find(rows[i].o.order_id, rows[i].o.line_no);
        if (rows[i].erase) {
            if (k >= 0)
                ms.used[k] = false;
            continue;
        }
        if (k < 0)
            for (k = 0; k < MS_MAX && ms.used[k]; k++)
                ;
        assert_true(k < MS_MAX);
        ms.v[k] = rows[i].o;
        ms.used[k] = true;
    }
}

/* The stored lines of a whole order, line_no order: how many (0: none). */
static size_t ms_lines(const char *id, eng_order_view *out)
{
    size_t n = 0;
    for (int32_t l = 0; l < ENG_LINES_MAX; l++) {
        int k = ms_find(id, l);
        if (k < 0)
            break;
        out[n++] = ms.v[k];
    }
    return n;
}

/* Runs every ready batch: committed (and stored) unless the store refuses
 * it for its primary key. */
static void ms_run(engine *e, int64_t now)
{
    eng_batch *b;
    while ((b = engine_next_batch(e, now)) != NULL) {
        if (ms_dup(b)) {
            engine_batch_done(e, b, ENG_ABORTED);
            continue;
        }
        ms_apply(b);
        engine_batch_done(e, b, ENG_COMMITTED);
    }
}

static char evicted_ids[8][ENG_ID_MAX + 1];
static int n_evicted_ids;
static void note_evicted(const char *id, void *arg)
{
    (void)arg;
    if (n_evicted_ids < 8)
        snprintf(evicted_ids[n_evicted_ids++], sizeof evicted_ids[0], "%s", id);
}

static eng_op *ms_submit(engine *e, eng_op_kind k, const char *id, const char *sku, int qty,
                         int64_t now)
{
    eng_op *op = op_new(k, id, sku, qty);
    assert_int_equal(engine_submit(e, op, now), ENG_OK);
    ms_run(e, now);
    return op;
}

/* Final orders leave memory after their last change is old enough, held
 * and confirmed ones stay; the counters do not move; an evicted order read
 * back answers its retry with its first record; a retry that comes before
 * the read-back is refused by the primary key and changes nothing. */
static void test_evict_and_reload(void **state)
{
    (void)state;
    memset(&ms, 0, sizeof ms);
    engine *e = mk();
    put(e, "s", 5, -1);
    eng_op *r1 = ms_submit(e, ENG_OP_RESERVE, "o1", "s", 2, 10);
    eng_op *x1 = ms_submit(e, ENG_OP_RELEASE, "o1", NULL, 0, 20);
    eng_op *r2 = op_new(ENG_OP_RESERVE, "o2", "s", 1);
    r2->hold_ms = 100000;
    assert_int_equal(engine_submit(e, r2, 30), ENG_OK);
    ms_run(e, 30);
    eng_op *r3 = ms_submit(e, ENG_OP_RESERVE, "o3", "s", 1, 40);
    eng_op *s3 = ms_submit(e, ENG_OP_SHIP, "o3", NULL, 0, 50);
    eng_op *r4 = ms_submit(e, ENG_OP_RESERVE, "o4", "s", 1, 60);  /* confirmed: live */
    assert_int_equal(x1->order.status, ENG_ST_RELEASED);
    assert_int_equal(s3->order.status, ENG_ST_SHIPPED);
    int64_t before = avail(e, "s");
    eng_stats st;
    engine_stats_get(e, &st);
    uint64_t orders = st.orders;

    /* Too recent: nothing goes. */
    assert_int_equal(engine_evict_orders(e, 20, 100, NULL, NULL), 0);
    n_evicted_ids = 0;
    assert_int_equal(engine_evict_orders(e, 1000, 100, note_evicted, NULL), 2);
    assert_int_equal(n_evicted_ids, 2);
    assert_string_equal(evicted_ids[0], "o1");
    assert_string_equal(evicted_ids[1], "o3");
    eng_order_view v;
    assert_false(engine_order_get(e, "o1", &v));
    assert_true(engine_order_get(e, "o2", &v));
    assert_true(engine_order_get(e, "o4", &v));
    engine_stats_get(e, &st);
    assert_int_equal(st.orders, orders - 2);
    assert_int_equal(st.orders_evicted, 2);
    assert_int_equal(avail(e, "s"), before);

    /* A retry before the read-back: decided as new, refused by the key. */
    eng_op *early = ms_submit(e, ENG_OP_RESERVE, "o1", "s", 2, 70);
    assert_int_equal(early->err, ENG_E_UNAVAILABLE);
    assert_int_equal(avail(e, "s"), before);

    /* Read back: the retry answers the first record, no new reservation. */
    eng_order_view lines[ENG_LINES_MAX];
    size_t n = ms_lines("o1", lines);
    assert_int_equal(n, 1);
    char why[ENG_REASON_MAX + 1] = "";
    assert_int_equal(engine_reload_order(e, lines, n, why), 1);
    assert_true(engine_order_get(e, "o1", &v));
    assert_int_equal(v.status, ENG_ST_RELEASED);
    eng_op *retry = op_new(ENG_OP_RESERVE, "o1", "s", 2);
    eng_err err = engine_submit(e, retry, 80);
    ms_run(e, 80);
    assert_int_equal(err, ENG_OK);
    assert_int_equal(retry->err, ENG_OK);
    assert_int_equal(retry->order.status, ENG_ST_RELEASED);  /* its record, not a new hold */
    assert_int_equal(retry->order.created_at_ms, 10);
    assert_int_equal(avail(e, "s"), before);
    engine_stats_get(e, &st);
    assert_int_equal(st.orders_reloaded, 1);

    /* A live order is never read back over memory, nor one not final. */
    n = ms_lines("o4", lines);
    assert_int_equal(engine_reload_order(e, lines, n, why), 1);  /* in memory: stands */
    lines[0].status = ENG_ST_CONFIRMED;
    snprintf(lines[0].order_id, sizeof lines[0].order_id, "o9");
    why[0] = '\0';
    assert_int_equal(engine_reload_order(e, lines, n, why), 0);
    assert_non_null(strstr(why, "not in memory"));

    /* Busy: an op waiting on a final order keeps it. */
    engine_evict_orders(e, 100000, 100, NULL, NULL);
    n = ms_lines("o3", lines);
    assert_int_equal(engine_reload_order(e, lines, n, why), 1);
    eng_op *w = op_new(ENG_OP_SHIP, "o3", NULL, 0);
    assert_int_equal(engine_submit(e, w, 90), ENG_OK);  /* queued, not run */
    assert_int_equal(engine_evict_orders(e, 100000, 100, NULL, NULL), 0);
    assert_true(engine_order_get(e, "o3", &v));
    ms_run(e, 90);
    eng_op *ops[] = {r1, x1, r2, r3, s3, r4, early, retry, w};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        free(ops[i]);
    n_done = 0;
    engine_free(e);
}

/* engine.h "Checks": a reserve with check that takes supplier units is
 * held for its check (pending reason, no purchase job); confirm with
 * checked ends it (confirmed, or held for the client's hold); release
 * as_failed refuses it; release erase forgets it (a retry decides anew);
 * own stock alone, or check_off, never holds for a check. */
static eng_op *check_reserve(engine *e, const char *id, const char *sku, int qty, int64_t now)
{
    eng_op *r = op_new(ENG_OP_RESERVE, id, sku, qty);
    r->check = true;
    r->check_hold_ms = 7000;
    assert_int_equal(engine_submit(e, r, now), ENG_OK);
    run(e, now, ENG_COMMITTED);
    n_done = 0;
    return r;
}

static eng_op *follow(engine *e, eng_op_kind k, const char *id, int64_t now)
{
    eng_op *op = outcome_op(k, id);
    assert_int_equal(engine_submit(e, op, now), ENG_OK);
    run(e, now, ENG_COMMITTED);
    n_done = 0;
    return op;
}

static void test_checks(void **state)
{
    (void)state;
    engine *e = mk();
    put_mapped(e, "ck", 2, 7, "spec");
    assert_true(engine_supplier_report(e, "ck", 10, 1));
    run(e, 1, ENG_COMMITTED);
    int64_t a0 = avail(e, "ck");

    /* Own stock only: no check, confirmed as always. */
    eng_op *r = check_reserve(e, "own", "ck", 2, 10);
    assert_int_equal(r->err, ENG_OK);
    assert_false(r->checking);
    assert_int_equal(r->order.status, ENG_ST_CONFIRMED);
    free(r);

    /* Supplier units: held for the check, no job; the check passes. */
    r = check_reserve(e, "c1", "ck", 3, 20);
    assert_int_equal(r->err, ENG_OK);
    assert_true(r->checking);
    assert_int_equal(r->order.status, ENG_ST_HELD);
    assert_int_equal(r->order.hold_expires_at_ms, 20 + 7000);
    assert_string_equal(r->order.reason, ENG_CHECK_PENDING);
    uint32_t unclaimed, claimed;
    engine_purchase_counts(e, &unclaimed, &claimed);
    assert_int_equal(unclaimed, 0);
    free(r);
    /* A plain confirm (a gateway's) of an order under check confirms it. */
    eng_op *c = follow(e, ENG_OP_CONFIRM, "c1", 30);
    assert_int_equal(c->order.status, ENG_ST_CONFIRMED);
    free(c);
    eng_order_view v;
    assert_true(engine_order_get(e, "c1", &v));
    r = check_reserve(e, "c2", "ck", 3, 40);
    assert_true(r->checking);
    free(r);
    c = outcome_op(ENG_OP_CONFIRM, "c2");
    c->checked = true;
    assert_int_equal(engine_submit(e, c, 50), ENG_OK);
    run(e, 50, ENG_COMMITTED);
    assert_int_equal(c->err, ENG_OK);
    assert_int_equal(c->order.status, ENG_ST_CONFIRMED);
    assert_string_equal(c->order.reason, "");
    free(c);
    engine_purchase_counts(e, &unclaimed, &claimed);
    assert_true(unclaimed >= 1);
    /* checked on an order not under check: invalid_state. */
    c = outcome_op(ENG_OP_CONFIRM, "c2");
    c->checked = true;
    assert_int_equal(engine_submit(e, c, 55), ENG_OK);
    run(e, 55, ENG_COMMITTED);
    assert_int_equal(c->err, ENG_E_INVALID_STATE);
    free(c);

    /* Refused: failed with the reason, stock back; a retry reads it. */
    int64_t before = avail(e, "ck");
    r = check_reserve(e, "c3", "ck", 4, 60);
    assert_true(r->checking);
    assert_int_equal(avail(e, "ck"), before - 4);
    free(r);
    c = outcome_op(ENG_OP_RELEASE, "c3");
    c->as_failed = true;
    snprintf(c->reason, sizeof c->reason, "check refused: x");
    assert_int_equal(engine_submit(e, c, 70), ENG_OK);
    run(e, 70, ENG_COMMITTED);
    assert_int_equal(c->err, ENG_OK);
    assert_int_equal(c->order.status, ENG_ST_FAILED);
    assert_string_equal(c->order.reason, "check refused: x");
    free(c);
    assert_int_equal(avail(e, "ck"), before);
    r = check_reserve(e, "c3", "ck", 4, 80);
    assert_int_equal(r->err, ENG_OK);
    assert_false(r->checking);
    assert_int_equal(r->order.status, ENG_ST_FAILED);
    free(r);

    /* Could not check: erased, stock back, the retry is decided anew. */
    r = check_reserve(e, "c4", "ck", 4, 90);
    assert_true(r->checking);
    free(r);
    c = outcome_op(ENG_OP_RELEASE, "c4");
    c->erase = true;
    assert_int_equal(engine_submit(e, c, 100), ENG_OK);
    run(e, 100, ENG_COMMITTED);
    assert_int_equal(c->err, ENG_OK);
    free(c);
    assert_false(engine_order_get(e, "c4", &v));
    assert_int_equal(avail(e, "ck"), before);
    r = check_reserve(e, "c4", "ck", 4, 110);
    assert_int_equal(r->err, ENG_OK);
    assert_true(r->checking);
    free(r);
    c = outcome_op(ENG_OP_RELEASE, "c4");
    c->erase = true;
    assert_int_equal(engine_submit(e, c, 120), ENG_OK);
    run(e, 120, ENG_COMMITTED);
    free(c);

    /* The client's hold: kept held from creation once the check passed. */
    r = op_new(ENG_OP_RESERVE, "c5", "ck", 3);
    r->check = true;
    r->check_hold_ms = 7000;
    r->hold_ms = 30000;
    assert_int_equal(engine_submit(e, r, 130), ENG_OK);
    run(e, 130, ENG_COMMITTED);
    assert_true(r->checking);
    assert_int_equal(r->order.hold_expires_at_ms, 130 + 7000);
    free(r);
    c = outcome_op(ENG_OP_CONFIRM, "c5");
    c->checked = true;
    c->hold_ms = 30000;
    assert_int_equal(engine_submit(e, c, 140), ENG_OK);
    run(e, 140, ENG_COMMITTED);
    assert_int_equal(c->err, ENG_OK);
    assert_int_equal(c->order.status, ENG_ST_HELD);
    assert_int_equal(c->order.hold_expires_at_ms, 130 + 30000);
    assert_string_equal(c->order.reason, "");
    free(c);
    c = follow(e, ENG_OP_RELEASE, "c5", 150);
    free(c);

    /* No checker: refused, nothing held. */
    before = avail(e, "ck");
    r = op_new(ENG_OP_RESERVE, "c6", "ck", 3);
    r->check = true;
    r->check_off = true;
    r->check_hold_ms = 7000;
    assert_int_equal(engine_submit(e, r, 160), ENG_OK);
    run(e, 160, ENG_COMMITTED);
    assert_int_equal(r->err, ENG_E_CHECK_FAILED);
    free(r);
    assert_false(engine_order_get(e, "c6", &v));
    assert_int_equal(avail(e, "ck"), before);

    /* The supplier's setting asks for the check without the op's flag;
     * a caller without a check hold refuses rather than answer unchecked. */
    eng_op *sp = op_new(ENG_OP_SUPPLIER_PUT, NULL, NULL, 0);
    snprintf(sp->supplier.supplier_id, sizeof sp->supplier.supplier_id, "1688");
    sp->has_trust = true;
    sp->trust = (eng_trust){.trust = 1.0, .ceiling = 1.0, .event_trust = 0.5,
                            .check_before_confirm = true};
    assert_int_equal(engine_submit(e, sp, 170), ENG_OK);
    run(e, 170, ENG_COMMITTED);
    assert_int_equal(sp->err, ENG_OK);
    free(sp);
    r = op_new(ENG_OP_RESERVE, "c7", "ck", 3);
    r->check_hold_ms = 7000;
    assert_int_equal(engine_submit(e, r, 180), ENG_OK);
    run(e, 180, ENG_COMMITTED);
    assert_true(r->checking);
    free(r);
    r = op_new(ENG_OP_RESERVE, "c8", "ck", 1);
    assert_int_equal(engine_submit(e, r, 190), ENG_OK);
    run(e, 190, ENG_COMMITTED);
    assert_int_equal(r->err, ENG_E_CHECK_FAILED);
    free(r);
    /* The check's hold lapses when nothing ends it. */
    assert_true(engine_expire_due(e, 180 + 7000) >= 1);
    run(e, 180 + 7000, ENG_COMMITTED);
    assert_true(engine_order_get(e, "c7", &v));
    assert_int_equal(v.status, ENG_ST_EXPIRED);
    (void)a0;
    engine_free(e);
}

/* A cart under check is erased whole and decided anew on its retry. */
static void test_check_cart_erase(void **state)
{
    (void)state;
    engine *e = mk();
    put_mapped(e, "ka", 0, 7, "sa");
    put_mapped(e, "kb", 5, 8, "sb");
    assert_true(engine_supplier_report(e, "ka", 10, 1));
    run(e, 1, ENG_COMMITTED);
    int64_t a = avail(e, "ka"), b = avail(e, "kb");
    for (int round = 0; round < 2; round++) {
        eng_op *r = cart_new("kc", "ka:2 kb:1", 0);
        r->check = true;
        r->check_hold_ms = 5000;
        assert_int_equal(engine_submit(e, r, 10 + round), ENG_OK);
        run(e, 10 + round, ENG_COMMITTED);
        assert_int_equal(r->err, ENG_OK);
        assert_true(r->checking);
        assert_int_equal(r->order.status, ENG_ST_HELD);
        free(r);
        assert_int_equal(avail(e, "ka"), a - 2);
        eng_op *c = outcome_op(ENG_OP_RELEASE, "kc");
        c->erase = true;
        assert_int_equal(engine_submit(e, c, 20 + round), ENG_OK);
        run(e, 20 + round, ENG_COMMITTED);
        assert_int_equal(c->err, ENG_OK);
        free(c);
        assert_int_equal(avail(e, "ka"), a);
        assert_int_equal(avail(e, "kb"), b);
        eng_order_view v;
        assert_false(engine_order_get(e, "kc", &v));
    }
    engine_free(e);
}

static void test_random_walk(void **state)
{
    (void)state;
    memset(&ms, 0, sizeof ms);
    engine *e = mk();
    eng_limits l;
    eng_limits_default(&l);
    engine_set_limits(e, &l);
    for (int s = 0; s < RW_SKUS; s++) {
        char sku[8];
        snprintf(sku, sizeof(sku), "k%d", s);
        if (s % 2 == 0)
            put(e, sku, 5, 3);
        else
            put_mapped(e, sku, 5, s, "spec");
    }
    int64_t now = 10;
    eng_op *ops[64];
    for (int step = 0; step < 3000; step++) {
        int n = 1 + (int)(rnd() % 20);
        int k = 0;
        for (int i = 0; i < n; i++) {
            int kind = (int)(rnd() % 5);
            char id[8], sku[8];
            snprintf(id, sizeof(id), "r%d", (int)(rnd() % RW_ORDERS));
            snprintf(sku, sizeof(sku), "k%d", (int)(rnd() % RW_SKUS));
            eng_op_kind kinds[] = {ENG_OP_RESERVE, ENG_OP_CONFIRM, ENG_OP_RELEASE, ENG_OP_SHIP, ENG_OP_RESERVE};
            eng_op *op = op_new(kinds[kind], id, sku, 1 + (int)(rnd() % 3));
            if (kind == 4)
                op->hold_ms = 1000;
            if (rnd() % 4 == 0) {
                /* A part (line 1 of 2): placed deciding or for the client,
                 * waiting or not; released, erased (by its attempt or after
                 * an abort) or confirmed as decided. */
                op->part_lines = 2;
                op->line_no = 1;
                if (op->kind == ENG_OP_RESERVE) {
                    op->hold_ms = 1000;
                    op->attempt = rnd() % 3;
                    op->wait_ms = rnd() % 2 ? (int64_t)(rnd() % 400) : 0;
                } else if (op->kind == ENG_OP_RELEASE && rnd() % 2) {
                    op->erase = true;
                    op->attempt = rnd() % 3;
                } else if (op->kind == ENG_OP_CONFIRM) {
                    op->decided = rnd() % 2;
                }
            }
            if (kind == 0 && rnd() % 2 == 0) {
                /* A cart of 2-4 lines, SKUs may repeat. */
                free(op);
                char spec[64] = "";
                int nl = 2 + (int)(rnd() % 3);
                for (int j = 0; j < nl; j++) {
                    char part[16];
                    snprintf(part, sizeof part, "k%d:%d ", (int)(rnd() % RW_SKUS),
                             1 + (int)(rnd() % 2));
                    strcat(spec, part);
                }
                op = cart_new(id, spec, rnd() % 2 ? 1000 : 0);
            }
            /* An evicted order is read back before its call, half the
             * time; the other half the call meets the primary key. */
            eng_order_view stored[ENG_LINES_MAX], mem;
            size_t ns = ms_lines(id, stored);
            if (ns > 0 && (size_t)stored[0].n_lines == ns && !engine_order_get(e, id, &mem) &&
                rnd() % 2) {
                char why[ENG_REASON_MAX + 1] = "";
                assert_int_equal(engine_reload_order(e, stored, ns, why), 1);
            }
            if (engine_submit(e, op, now) == ENG_OK)
                ops[k++] = op;
            else
                free(op);
        }
        if (rnd() % 3 == 0) {
            char sku[8];
            snprintf(sku, sizeof(sku), "k%d", (int)(rnd() % RW_SKUS));
            assert_true(engine_supplier_report(e, sku, (int64_t)(rnd() % 8), now));
        }
        if (rnd() % 7 == 0 && k > 0)
            engine_cancel(e, ops[0]);
        eng_batch *b;
        while ((b = engine_next_batch(e, now)) != NULL) {
            int r = (int)(rnd() % 10);
            bool dup = ms_dup(b);  /* a call on an evicted order decided as new */
            if (!dup && (eng_batch_is_empty(b) || r < 7)) {
                ms_apply(b);
                engine_batch_done(e, b, ENG_COMMITTED);
            } else if (r < 9 || dup) {
                engine_batch_done(e, b, ENG_ABORTED);
            } else {
                engine_batch_done(e, b, ENG_UNKNOWN);
                check_invariants(e);
                bool committed = rnd() % 2;
                if (committed)
                    ms_apply(b);
                engine_batch_resolve(e, b, committed);
            }
            check_invariants(e);
        }
        if (rnd() % 4 == 0) {
            engine_evict_orders(e, now - (int64_t)(rnd() % 600), 1 + rnd() % 8, NULL, NULL);
            check_invariants(e);
        }
        now += (int64_t)(rnd() % 300);
        engine_expire_due(e, now);
        for (int i = 0; i < k; i++) {
            (void)engine_cancel(e, ops[i]);  /* a part still waiting */
            free(ops[i]);
        }
        n_done = 0;
    }
    eng_stats st;
    engine_stats_get(e, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.batches_in_flight, 0);
    assert_true(st.park_waits > 0);  /* the walk did wait */
    assert_true(st.orders_evicted > 0 && st.orders_reloaded > 0);
    engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hoodie),
        cmocka_unit_test(test_allocation_own_then_supplier),
        cmocka_unit_test(test_abort_restores),
        cmocka_unit_test(test_unknown_then_resolve),
        cmocka_unit_test(test_idempotent_and_conflict),
        cmocka_unit_test(test_hold_expiry),
        cmocka_unit_test(test_confirm_after_lapse_without_tick),
        cmocka_unit_test(test_ship_and_states),
        cmocka_unit_test(test_limits_and_cancel),
        cmocka_unit_test(test_new_sku_put_then_reserve_pipelined),
        cmocka_unit_test(test_pipelined_reserve_then_confirm),
        cmocka_unit_test(test_forget_sku),
        cmocka_unit_test(test_supplier_report),
        cmocka_unit_test(test_supplier_report_unmapped),
        cmocka_unit_test(test_supplier_report_order),
        cmocka_unit_test(test_purchase_flow_and_settle),
        cmocka_unit_test(test_purchase_failed_stock),
        cmocka_unit_test(test_purchase_failed_link_and_repair),
        cmocka_unit_test(test_observe_broken_and_fingerprint),
        cmocka_unit_test(test_trust_and_cap),
        cmocka_unit_test(test_purchase_recovered_on_load),
        cmocka_unit_test(test_supplier_report_abort_unknown),
        cmocka_unit_test(test_supplier_report_coalesce_and_remap),
        cmocka_unit_test(test_lines_same_sku_summed),
        cmocka_unit_test(test_cart_all_or_nothing),
        cmocka_unit_test(test_cart_waits_for_every_fifo),
        cmocka_unit_test(test_cart_abort_and_expiry),
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_parts_wait_and_erase),
        cmocka_unit_test(test_load_lines),
        cmocka_unit_test(test_row_checks),
        cmocka_unit_test(test_lone_part_set_aside),
        cmocka_unit_test(test_bad_order_lines),
        cmocka_unit_test(test_audit_sets_sku_aside),
        cmocka_unit_test(test_aside_alerts_bounded),
        cmocka_unit_test(test_evict_and_reload),
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_check_cart_erase),
        cmocka_unit_test(test_random_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
