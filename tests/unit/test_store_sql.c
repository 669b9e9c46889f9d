/* test_store_sql.c — the SQL text of a batch, byte for byte, without a
 * server: the statement is built from what the engine decided, every value
 * goes in as a hex literal (a hostile order id cannot become SQL), the
 * counters are fenced by the epoch, and a statement that would outgrow
 * MariaDB's packet is refused whole rather than cut.
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
#include "stockd/store_sql.h"

static void on_done(eng_op *op, void *arg)
{
    (void)op;
    (void)arg;
}

static eng_op *op_new(eng_op_kind k, const char *order_id, const char *sku, int qty)
{
    eng_op *op = calloc(1, sizeof(*op));
    assert_non_null(op);
    op->kind = k;
    snprintf(op->order_id, sizeof(op->order_id), "%s", order_id ? order_id : "");
    snprintf(op->sku, sizeof(op->sku), "%s", sku);
    op->qty = qty;
    return op;
}

static void assert_sql(const sbuf *b, const char *want)
{
    assert_null(b->err);
    assert_int_equal(b->len, strlen(want));
    if (memcmp(b->p, want, b->len) != 0) {
        fprintf(stderr, "got:\n%.*s\nwant:\n%s\n", (int)b->len, b->p, want);
        fail();
    }
}

/* The fenced upsert of one changed SKU row and its check: every statement
 * that updates a SKU ends its row list with this. */
#define SKU_UPSERT_FENCED_1 \
    "ON DUPLICATE KEY UPDATE own_on_hand=IF(epoch=VALUES(epoch),VALUES(own_on_hand),own_on_ha" \
    "nd),own_reserved=IF(epoch=VALUES(epoch),VALUES(own_reserved),own_reserved),supplier_repo" \
    "rted=IF(epoch=VALUES(epoch),VALUES(supplier_reported),supplier_reported),supplier_sellab" \
    "le=IF(epoch=VALUES(epoch),VALUES(supplier_sellable),supplier_sellable),supplier_reserved" \
    "=IF(epoch=VALUES(epoch),VALUES(supplier_reserved),supplier_reserved),supplier_synced_at=" \
    "IF(epoch=VALUES(epoch),VALUES(supplier_synced_at),supplier_synced_at),mapping=IF(epoch=V" \
    "ALUES(epoch),VALUES(mapping),mapping),supplier_id=IF(epoch=VALUES(epoch) AND NOT (VALUES" \
    "(mapping)='broken' AND VALUES(supplier_id) IS NULL),VALUES(supplier_id),supplier_id),off" \
    "er_id=IF(epoch=VALUES(epoch) AND NOT (VALUES(mapping)='broken' AND VALUES(supplier_id) I" \
    "S NULL),VALUES(offer_id),offer_id),spec_id=IF(epoch=VALUES(epoch) AND NOT (VALUES(mappin" \
    "g)='broken' AND VALUES(supplier_id) IS NULL),VALUES(spec_id),spec_id),sku_id=IF(epoch=VA" \
    "LUES(epoch) AND NOT (VALUES(mapping)='broken' AND VALUES(supplier_id) IS NULL),VALUES(sk" \
    "u_id),sku_id),supplier_cap=IF(epoch=VALUES(epoch) AND NOT (VALUES(mapping)='broken' AND " \
    "VALUES(supplier_id) IS NULL),VALUES(supplier_cap),supplier_cap),fingerprint=IF(epoch=VAL" \
    "UES(epoch) AND NOT (VALUES(mapping)='broken' AND VALUES(supplier_id) IS NULL),VALUES(fin" \
    "gerprint),fingerprint),updated_at=IF(epoch=VALUES(epoch),VALUES(updated_at),updated_at)," \
    "version=IF(epoch=VALUES(epoch),version+1,version);\n" \
    "IF ROW_COUNT()<>2 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT='epoch fence'; END IF;\n"

static const char put_sql[] =
    "BEGIN NOT ATOMIC\n"
    "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\n"
    "START TRANSACTION;\n"
    "INSERT INTO batch_log (batch_id,node,state,at) VALUES (1,X'6e31','committed',17000000000"
    "00);\n"
    "INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,supplier_sellable,suppli"
    "er_reserved,supplier_synced_at,mapping,supplier_id,offer_id,spec_id,sku_id,epoch,version"
    ",updated_at,supplier_cap,fingerprint) VALUES\n"
    "(X'686f6f6469652d4d',2,0,0,0,0,0,'none',NULL,NULL,NULL,NULL,1,0,1700000000000,NULL,NULL)"
    ";\n"
    "INSERT INTO ledger (sku,order_id,move,d_own_on_hand,d_own_reserved,d_supplier_reserved,d"
    "_supplier_reported,reason,at,batch_id) VALUES\n"
    "(X'686f6f6469652d4d',NULL,'put',2,0,0,0,NULL,1,1);\n"
    "COMMIT;\n"
    "END";

static const char reserve_sql[] =
    "BEGIN NOT ATOMIC\n"
    "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\n"
    "START TRANSACTION;\n"
    "INSERT INTO batch_log (batch_id,node,state,at) VALUES (2,X'6e31','committed',17000000000"
    "01);\n"
    "INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,supplier_sellable,suppli"
    "er_reserved,supplier_synced_at,mapping,supplier_id,offer_id,spec_id,sku_id,epoch,version"
    ",updated_at,supplier_cap,fingerprint) VALUES\n"
    "(X'686f6f6469652d4d',2,1,0,0,0,0,'none',NULL,NULL,NULL,NULL,1,0,1700000000001,NULL,NULL)\n"
    SKU_UPSERT_FENCED_1
    "INSERT INTO orders (order_id,line_no,n_lines,sku,qty,status,from_own,from_supplier,avail"
    "able,created_at,updated_at,hold_expires_at,upstream_order_id,reason,purchased_at,supplie"
    "r_settled) VALUES\n"
    "(X'6f2731',0,1,X'686f6f6469652d4d',1,'confirmed',1,0,1,2,2,NULL,NULL,NULL,NULL,0);\n"
    "INSERT INTO ledger (sku,order_id,move,d_own_on_hand,d_own_reserved,d_supplier_reserved,d"
    "_supplier_reported,reason,at,batch_id) VALUES\n"
    "(X'686f6f6469652d4d',X'6f2731','reserve',0,1,0,0,NULL,2,2);\n"
    "COMMIT;\n"
    "END";

/* A put that creates the SKU, then a reservation against it: the two
 * statements exactly, the second with the epoch fence and its check. */
static void test_put_then_reserve(void **state)
{
    (void)state;
    eng_limits l;
    eng_limits_default(&l);
    engine *e = engine_new(&l, on_done, NULL);
    assert_non_null(e);
    sbuf s = {0};

    eng_op *put = op_new(ENG_OP_SKU_PUT, NULL, "hoodie-M", 0);
    put->has_own_on_hand = true;
    put->own_on_hand = 2;
    assert_int_equal(engine_submit(e, put, 1), ENG_OK);
    eng_batch *b = engine_next_batch(e, 1);
    assert_non_null(b);
    st_sql_build_commit(&s, "n1", b, eng_batch_id(b), 1700000000000);
    assert_sql(&s, put_sql);
    /* The same batch builds the same bytes (the retry after a lost
     * connection sends what the first attempt sent). */
    st_sql_build_commit(&s, "n1", b, eng_batch_id(b), 1700000000000);
    assert_sql(&s, put_sql);
    engine_batch_done(e, b, ENG_COMMITTED);

    /* A quote in the order id is data, never SQL. */
    eng_op *r = op_new(ENG_OP_RESERVE, "o'1", "hoodie-M", 1);
    assert_int_equal(engine_submit(e, r, 2), ENG_OK);
    b = engine_next_batch(e, 2);
    assert_non_null(b);
    st_sql_build_commit(&s, "n1", b, eng_batch_id(b), 1700000000001);
    assert_sql(&s, reserve_sql);
    engine_batch_done(e, b, ENG_COMMITTED);

    st_sb_free(&s);
    free(put);
    free(r);
    engine_free(e);
}

/* A drop-ship night in four batches: a supplier's trust, a SKU mapped to
 * its offer (cap and fingerprint), an order that takes supplier units (its
 * purchase job), the purchase failing (job, order, ledger and the support
 * alert). Every statement, byte for byte, separated by "----". */
static const char drop_ship_sql[] =
    "BEGIN NOT ATOMIC\n"
    "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\n"
    "START TRANSACTION;\n"
    "INSERT INTO batch_log (batch_id,node,state,at) VALUES (1,X'6e31','committed',1000);\n"
    "INSERT INTO supplier (supplier_id,trust,trust_ceiling,event_mode,event_trust,check_befo"
    "re_confirm,updated_at) VALUES\n"
    "(X'7375702731',0.5,1,0,0.25,0,1000)\n"
    "ON DUPLICATE KEY UPDATE trust=VALUES(trust),trust_ceiling=VALUES(trust_ceiling),event_mo"
    "de=VALUES(event_mode),event_trust=VALUES(event_trust),check_before_confirm=VALUES(check_"
    "before_confirm),updated_at=VALUES(updated_at);\n"
    "COMMIT;\n"
    "END\n"
    "----\n"
    "BEGIN NOT ATOMIC\n"
    "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\n"
    "START TRANSACTION;\n"
    "INSERT INTO batch_log (batch_id,node,state,at) VALUES (2,X'6e31','committed',2000);\n"
    "INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,supplier_sellable,suppli"
    "er_reserved,supplier_synced_at,mapping,supplier_id,offer_id,spec_id,sku_id,epoch,version"
    ",updated_at,supplier_cap,fingerprint) VALUES\n"
    "(X'637570',1,0,10,4,0,2,'ok',X'7375702731',12345,X'737065632d39',777,1,0,2000,4,11259375"
    ");\n"
    "INSERT INTO ledger (sku,order_id,move,d_own_on_hand,d_own_reserved,d_supplier_reserved,d"
    "_supplier_reported,reason,at,batch_id) VALUES\n"
    "(X'637570',NULL,'put',1,0,0,10,NULL,2,2);\n"
    "COMMIT;\n"
    "END\n"
    "----\n"
    "BEGIN NOT ATOMIC\n"
    "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\n"
    "START TRANSACTION;\n"
    "INSERT INTO batch_log (batch_id,node,state,at) VALUES (3,X'6e31','committed',3000);\n"
    "INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,supplier_sellable,suppli"
    "er_reserved,supplier_synced_at,mapping,supplier_id,offer_id,spec_id,sku_id,epoch,version"
    ",updated_at,supplier_cap,fingerprint) VALUES\n"
    "(X'637570',1,1,10,4,2,2,'ok',X'7375702731',12345,X'737065632d39',777,1,0,3000,4,11259375"
    ")\n"
    SKU_UPSERT_FENCED_1
    "INSERT INTO orders (order_id,line_no,n_lines,sku,qty,status,from_own,from_supplier,avail"
    "able,created_at,updated_at,hold_expires_at,upstream_order_id,reason,purchased_at,supplie"
    "r_settled) VALUES\n"
    "(X'6431',0,1,X'637570',3,'confirmed',1,2,2,3,3,NULL,NULL,NULL,NULL,0);\n"
    "INSERT INTO purchase_jobs (order_id,line_no,sku,supplier_id,offer_id,spec_id,sku_id,qty,"
    "state,created_at,updated_at) VALUES\n"
    "(X'6431',0,X'637570',X'7375702731',12345,X'737065632d39',777,2,'pending',3,3);\n"
    "INSERT INTO ledger (sku,order_id,move,d_own_on_hand,d_own_reserved,d_supplier_reserved,d"
    "_supplier_reported,reason,at,batch_id) VALUES\n"
    "(X'637570',X'6431','reserve',0,1,2,0,NULL,3,3);\n"
    "COMMIT;\n"
    "END\n"
    "----\n"
    "BEGIN NOT ATOMIC\n"
    "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\n"
    "START TRANSACTION;\n"
    "INSERT INTO batch_log (batch_id,node,state,at) VALUES (4,X'6e31','committed',4000);\n"
    "INSERT INTO sku (sku,own_on_hand,own_reserved,supplier_reported,supplier_sellable,suppli"
    "er_reserved,supplier_synced_at,mapping,supplier_id,offer_id,spec_id,sku_id,epoch,version"
    ",updated_at,supplier_cap,fingerprint) VALUES\n"
    "(X'637570',1,0,10,4,0,2,'ok',X'7375702731',12345,X'737065632d39',777,1,0,4000,4,11259375"
    ")\n"
    SKU_UPSERT_FENCED_1
    "INSERT INTO orders (order_id,line_no,n_lines,sku,qty,status,from_own,from_supplier,avail"
    "able,created_at,updated_at,hold_expires_at,upstream_order_id,reason,purchased_at,supplie"
    "r_settled) VALUES\n"
    "(X'6431',0,1,X'637570',3,'failed',1,2,5,3,4,NULL,NULL,X'6f7574206f662073746f636b20757073"
    "747265616d',NULL,0)\n"
    "ON DUPLICATE KEY UPDATE status=VALUES(status),from_own=VALUES(from_own),from_supplier=VA"
    "LUES(from_supplier),available=VALUES(available),updated_at=VALUES(updated_at),hold_expir"
    "es_at=VALUES(hold_expires_at),upstream_order_id=VALUES(upstream_order_id),reason=VALUES("
    "reason),purchased_at=VALUES(purchased_at),supplier_settled=VALUES(supplier_settled);\n"
    "INSERT INTO purchase_jobs (order_id,line_no,sku,supplier_id,offer_id,spec_id,sku_id,qty,"
    "state,created_at,updated_at) VALUES\n"
    "(X'6431',0,X'637570',NULL,NULL,NULL,NULL,2,'failed',4,4)\n"
    "ON DUPLICATE KEY UPDATE state=VALUES(state),updated_at=VALUES(updated_at);\n"
    "INSERT INTO ledger (sku,order_id,move,d_own_on_hand,d_own_reserved,d_supplier_reserved,d"
    "_supplier_reported,reason,at,batch_id) VALUES\n"
    "(X'637570',X'6431','fail',0,-1,-2,0,NULL,4,4);\n"
    "INSERT INTO alerts (kind,sku,order_id,reason,at,node,batch_id) VALUES\n"
    "(X'70757263686173655f6661696c6564',X'637570',X'6431',X'6f7574206f662073746f636b207570737"
    "47265616d',4,X'6e31',4);\n"
    "COMMIT;\n"
    "END\n"
    "----\n"
    "";

static void trace_step(engine *e, sbuf *all, sbuf *s, eng_op *op, int64_t now)
{
    assert_int_equal(engine_submit(e, op, now), ENG_OK);
    eng_batch *b = engine_next_batch(e, now);
    assert_non_null(b);
    st_sql_build_commit(s, "n1", b, eng_batch_id(b), now * 1000);
    assert_null(s->err);
    st_sb_str(all, s->p);
    st_sb_str(all, "\n----\n");
    engine_batch_done(e, b, ENG_COMMITTED);
    assert_int_equal(op->err, ENG_OK);
}

static void test_drop_ship_trace(void **state)
{
    (void)state;
    eng_limits l;
    eng_limits_default(&l);
    engine *e = engine_new(&l, on_done, NULL);
    sbuf all = {0}, s = {0};
    eng_op ops[4];
    memset(ops, 0, sizeof ops);
    eng_op *sp = &ops[0];
    sp->kind = ENG_OP_SUPPLIER_PUT;
    strcpy(sp->supplier.supplier_id, "sup'1");
    sp->has_trust = true;
    sp->trust = (eng_trust){.trust = 0.5, .ceiling = 1.0, .event_trust = 0.25};
    trace_step(e, &all, &s, sp, 1);
    eng_op *put = &ops[1];
    put->kind = ENG_OP_SKU_PUT;
    strcpy(put->sku, "cup");
    put->has_own_on_hand = true;
    put->own_on_hand = 1;
    put->has_supplier_reported = true;
    put->supplier_reported = 10;
    put->has_supplier = true;
    strcpy(put->supplier.supplier_id, "sup'1");
    strcpy(put->supplier.spec_id, "spec-9");
    put->supplier.offer_id = 12345;
    put->supplier.sku_id = 777;
    put->supplier.cap = 4;
    put->supplier.fingerprint = 0xabcdef;
    trace_step(e, &all, &s, put, 2);
    eng_op *r = &ops[2];
    r->kind = ENG_OP_RESERVE;
    strcpy(r->sku, "cup");
    strcpy(r->order_id, "d1");
    r->qty = 3;
    trace_step(e, &all, &s, r, 3);
    eng_op *f = &ops[3];
    f->kind = ENG_OP_PURCHASE_FAILED;
    strcpy(f->order_id, "d1");
    strcpy(f->reason, "out of stock upstream");
    trace_step(e, &all, &s, f, 4);
    assert_sql(&all, drop_ship_sql);
    st_sb_free(&all);
    st_sb_free(&s);
    engine_free(e);
}

/* A hostile order id shows up only as hex: no quote, no semicolon, no
 * comment marker of it reaches the statement. */
static void test_hostile_values_are_hex(void **state)
{
    (void)state;
    eng_limits l;
    eng_limits_default(&l);
    engine *e = engine_new(&l, on_done, NULL);
    sbuf s = {0};
    eng_op *put = op_new(ENG_OP_SKU_PUT, NULL, "s", 0);
    put->has_own_on_hand = true;
    put->own_on_hand = 5;
    engine_submit(e, put, 1);
    eng_batch *b = engine_next_batch(e, 1);
    engine_batch_done(e, b, ENG_COMMITTED);

    const char *evil = "x'); DROP TABLE sku; -- \\";
    eng_op *r = op_new(ENG_OP_RESERVE, evil, "s", 1);
    assert_int_equal(engine_submit(e, r, 2), ENG_OK);
    b = engine_next_batch(e, 2);
    st_sql_build_commit(&s, "n'1", b, eng_batch_id(b), 5);
    assert_null(s.err);
    char *text = strndup(s.p, s.len);
    assert_null(strstr(text, "DROP"));
    assert_null(strstr(text, "--"));
    assert_null(strstr(text, "\\"));
    assert_non_null(strstr(text, "X'782729"));      /* x ' ) */
    assert_non_null(strstr(text, "X'6e2731'"));     /* the node name too */
    free(text);
    engine_batch_done(e, b, ENG_COMMITTED);
    st_sb_free(&s);
    free(put);
    free(r);
    engine_free(e);
}

static void test_buffer_helpers(void **state)
{
    (void)state;
    sbuf s = {0};
    st_sb_hex_str(&s, "ab");
    st_sb_str(&s, ",");
    st_sb_hex_str(&s, "");
    st_sb_str(&s, ",");
    st_sb_hex_or_null(&s, NULL);
    st_sb_str(&s, ",");
    st_sb_hex_or_null(&s, "");
    st_sb_str(&s, ",");
    st_sb_hex_or_null(&s, "\xff");
    st_sb_str(&s, ",");
    st_sb_i64(&s, INT64_MIN);
    st_sb_str(&s, ",");
    st_sb_i64(&s, INT64_MAX);
    assert_sql(&s, "X'6162','',NULL,NULL,X'ff',-9223372036854775808,9223372036854775807");
    st_sb_reset(&s);
    assert_int_equal(s.len, 0);
    assert_null(s.err);
    st_sb_free(&s);
}

/* Past the packet bound the buffer keeps its first error and ignores every
 * later append, so the caller sends nothing rather than a cut statement. */
static void test_oversize_is_refused_whole(void **state)
{
    (void)state;
    sbuf s = {0};
    size_t n = 1u << 20;
    char *mb = malloc(n + 1);
    assert_non_null(mb);
    memset(mb, 'a', n);
    mb[n] = 0;
    for (int i = 0; i < 20 && s.err == NULL; i++) st_sb_str(&s, mb);
    assert_non_null(s.err);
    size_t len = s.len;
    st_sb_str(&s, "more");
    st_sb_i64(&s, 1);
    assert_int_equal(s.len, len);
    assert_true(s.len < (16u << 20));
    st_sb_reset(&s);
    assert_null(s.err);
    st_sb_str(&s, "ok");
    assert_sql(&s, "ok");
    st_sb_free(&s);
    free(mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_then_reserve),
        cmocka_unit_test(test_drop_ship_trace),
        cmocka_unit_test(test_hostile_values_are_hex),
        cmocka_unit_test(test_buffer_helpers),
        cmocka_unit_test(test_oversize_is_refused_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
