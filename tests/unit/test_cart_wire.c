/* test_cart_wire.c — the cart coordinator's messages without a cluster:
 * a part's record as its owner packs it reads back whole, owners' errors
 * keep their details (available, deciding, status), anything that does
 * not parse is a retryable failure, the merged record of a one-line order
 * is byte for byte one instance's record and a whole order's is one
 * instance's whole order, errors keep one instance's key order, and the
 * order's status and finality follow the lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "stockd/cart_wire.h"
#include "stockd/codec.h"
#include "stockd/reply.h"

#include "packed.h"

static void assert_same_bytes(const packed *got, const packed *want)
{
    assert_int_equal(got->sb.size, want->sb.size);
    assert_memory_equal(got->sb.data, want->sb.data, want->sb.size);
}

static eng_order_view record(const char *sku, int32_t qty, eng_status st)
{
    eng_order_view o;
    memset(&o, 0, sizeof o);
    strcpy(o.order_id, "cart-1");
    snprintf(o.sku, sizeof o.sku, "%s", sku);
    o.qty = qty;
    o.n_lines = 1;
    o.status = st;
    o.from_own = qty;
    o.available = 7;
    o.created_at_ms = 1000;
    o.updated_at_ms = 2000;
    return o;
}

/* A part slot filled from its owner's reply: the record packed as the
 * owner packs a part (reply_order with part), read back. */
static void part_from_record(cart_part *p, const eng_order_view *o, int32_t line_no,
                             int32_t n_lines)
{
    memset(p, 0, sizeof *p);
    snprintf(p->sku, sizeof p->sku, "%s", o->sku);
    p->line_no = line_no;
    p->client_line = line_no;
    eng_order_view ov = *o;
    ov.n_lines = n_lines;
    ov.line_no = line_no;
    packed r;
    start(&r);
    reply_order(&r.pk, &ov, true, NULL, 0);
    cart_part_take_reply(p, NULL, done(&r), NULL);
    finish(&r);
}

static void test_record_reads_back_whole(void **state)
{
    (void)state;
    eng_order_view o = record("hoodie-M", 2, ENG_ST_PURCHASED);
    o.from_own = 1;
    o.from_supplier = 1;
    o.hold_expires_at_ms = 3000;
    strcpy(o.upstream_order_id, "up-9");
    strcpy(o.reason, "why not");
    o.purchased_at_ms = 4000;
    o.supplier_settled = true;
    cart_part p;
    part_from_record(&p, &o, 1, 2);
    assert_int_equal(p.res, CART_PR_RECORD);
    assert_true(p.have_rec);
    assert_int_equal(p.err, ENG_OK);
    assert_string_equal(p.rec.order_id, "cart-1");
    assert_string_equal(p.rec.sku, "hoodie-M");
    assert_int_equal(p.rec.qty, 2);
    assert_int_equal(p.rec.status, ENG_ST_PURCHASED);
    assert_int_equal(p.rec.from_own, 1);
    assert_int_equal(p.rec.from_supplier, 1);
    assert_int_equal(p.rec.available, 7);
    assert_int_equal(p.rec.created_at_ms, 1000);
    assert_int_equal(p.rec.updated_at_ms, 2000);
    assert_int_equal(p.rec.hold_expires_at_ms, 3000);
    assert_string_equal(p.rec.upstream_order_id, "up-9");
    assert_string_equal(p.rec.reason, "why not");
    assert_int_equal(p.rec.purchased_at_ms, 4000);
    assert_true(p.rec.supplier_settled);
    assert_int_equal(p.rec.line_no, 1);  /* the slot's line, not the owner's say */
}

/* An error as an owner sends it: {code, message, retryable, details}. */
static const msgpack_object *error_map(packed *e, const char *code, bool retryable,
                                       int64_t available, const char *status, bool deciding)
{
    start(e);
    uint32_t n = 3 + (available >= 0) + (status != NULL) + deciding;
    msgpack_pack_map(&e->pk, n);
    codec_pack_kv_str(&e->pk, "code", code);
    codec_pack_kv_str(&e->pk, "message", "from the owner");
    codec_pack_kv_bool(&e->pk, "retryable", retryable);
    if (available >= 0)
        codec_pack_kv_int(&e->pk, "available", available);
    if (status != NULL)
        codec_pack_kv_str(&e->pk, "status", status);
    if (deciding)
        codec_pack_kv_bool(&e->pk, "deciding", true);
    return done(e);
}

static void test_owner_errors_keep_details(void **state)
{
    (void)state;
    cart_part p;
    memset(&p, 0, sizeof p);
    strcpy(p.sku, "tee");
    packed e;
    cart_part_take_reply(&p, error_map(&e, "insufficient", false, 3, NULL, true), NULL, NULL);
    finish(&e);
    assert_int_equal(p.res, CART_PR_ERROR);
    assert_int_equal(p.err, ENG_E_INSUFFICIENT);
    assert_string_equal(p.code, "insufficient");
    assert_string_equal(p.msg, "from the owner");
    assert_false(p.retryable);
    assert_true(p.has_available);
    assert_int_equal(p.available, 3);
    assert_true(p.deciding);
    assert_false(p.have_rec);

    cart_part_take_reply(&p, error_map(&e, "invalid_state", false, -1, "shipped", false), NULL,
                         NULL);
    finish(&e);
    assert_int_equal(p.err, ENG_E_INVALID_STATE);
    assert_string_equal(p.status, "shipped");
    assert_false(p.has_available);
    assert_false(p.deciding);

    /* "deciding" counts only for insufficient. */
    cart_part_take_reply(&p, error_map(&e, "conflict", false, -1, NULL, true), NULL, NULL);
    finish(&e);
    assert_int_equal(p.err, ENG_E_CONFLICT);
    assert_false(p.deciding);

    /* A code this node does not know: internal. */
    cart_part_take_reply(&p, error_map(&e, "brand_new_code", true, -1, NULL, false), NULL, NULL);
    finish(&e);
    assert_int_equal(p.res, CART_PR_ERROR);
    assert_int_equal(p.err, ENG_E_INTERNAL);
    assert_string_equal(p.code, "internal");
    assert_true(p.retryable);
}

static void test_unparsed_is_retryable_failure(void **state)
{
    (void)state;
    cart_part p;
    memset(&p, 0, sizeof p);
    strcpy(p.sku, "tee");

    cart_part_take_reply(&p, NULL, NULL, "timeout");
    assert_int_equal(p.res, CART_PR_FAIL);
    assert_int_equal(p.err, ENG_E_UNAVAILABLE);
    assert_string_equal(p.code, "unavailable");
    assert_string_equal(p.msg,
                        "owner of sku tee not reachable (timeout); retry with the same order_id");
    assert_true(p.retryable);

    msgpack_object s = {.type = MSGPACK_OBJECT_STR, .via.str = {.size = 3, .ptr = "bad"}};
    cart_part_take_reply(&p, &s, NULL, NULL);
    assert_int_equal(p.res, CART_PR_ERROR);
    assert_int_equal(p.err, ENG_E_INTERNAL);
    assert_string_equal(p.msg, "bad error from a peer");
    assert_true(p.retryable);

    /* A record without a status it knows. */
    packed r;
    start(&r);
    msgpack_pack_map(&r.pk, 2);
    codec_pack_kv_str(&r.pk, "order_id", "cart-1");
    codec_pack_kv_str(&r.pk, "status", "levitating");
    msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    cart_part_take_reply(&p, &nil, done(&r), NULL);
    finish(&r);
    assert_int_equal(p.res, CART_PR_FAIL);
    assert_int_equal(p.err, ENG_E_INTERNAL);
    assert_string_equal(p.msg, "bad order record from the owner of sku tee");
    assert_false(p.have_rec);
}

/* One line: the coordinator's answer is one instance's record. */
static void test_merged_one_line_is_one_instance(void **state)
{
    (void)state;
    eng_order_view o = record("hoodie-M", 3, ENG_ST_HELD);
    o.hold_expires_at_ms = 9000;
    strcpy(o.upstream_order_id, "up-1");
    cart_part p;
    part_from_record(&p, &o, 0, 1);

    packed got, want;
    start(&got);
    cart_pack_merged(&got.pk, 42, "cart-1", &p, 1, 1, true);
    start(&want);
    codec_pack_response_ok_head(&want.pk, 42);
    reply_order(&want.pk, &o, false, NULL, 0);
    assert_same_bytes(&got, &want);
    finish(&got);
    finish(&want);
}

/* Several lines: sums, the earliest creation and hold, the latest update,
 * the first line's sku and available, every line: one instance's whole
 * order. A part without a record is left out. */
static void test_merged_whole_order(void **state)
{
    (void)state;
    eng_order_view a = record("b-sku", 2, ENG_ST_CONFIRMED);
    a.created_at_ms = 1500;
    a.updated_at_ms = 2500;
    a.hold_expires_at_ms = 8000;
    eng_order_view b = record("a-sku", 5, ENG_ST_CONFIRMED);
    b.from_own = 3;
    b.from_supplier = 2;
    b.available = 11;
    b.hold_expires_at_ms = 7000;
    strcpy(b.upstream_order_id, "up-2");
    cart_part parts[3];
    part_from_record(&parts[0], &a, 0, 2);
    part_from_record(&parts[1], &b, 1, 2);
    memset(&parts[2], 0, sizeof parts[2]);  /* never answered */

    packed got, want;
    start(&got);
    cart_pack_merged(&got.pk, 7, "cart-1", parts, 3, 2, false);

    eng_order_view w = record("b-sku", 7, ENG_ST_CONFIRMED);
    w.n_lines = 2;
    w.from_own = 5;
    w.from_supplier = 2;
    w.created_at_ms = 1000;
    w.updated_at_ms = 2500;
    w.hold_expires_at_ms = 7000;
    eng_line_view lv[2];
    memset(lv, 0, sizeof lv);
    lv[0].line_no = 0;
    strcpy(lv[0].sku, "b-sku");
    lv[0].qty = 2;
    lv[0].from_own = 2;
    lv[0].status = ENG_ST_CONFIRMED;
    lv[1].line_no = 1;
    strcpy(lv[1].sku, "a-sku");
    lv[1].qty = 5;
    lv[1].from_own = 3;
    lv[1].from_supplier = 2;
    lv[1].status = ENG_ST_CONFIRMED;
    strcpy(lv[1].upstream_order_id, "up-2");
    start(&want);
    codec_pack_response_ok_head(&want.pk, 7);
    reply_order(&want.pk, &w, false, lv, 2);
    assert_same_bytes(&got, &want);
    finish(&got);
    finish(&want);
}

/* purchased_at and supplier_settled only once every line with supplier
 * units was bought. */
static void test_merged_bought_only_when_all_bought(void **state)
{
    (void)state;
    eng_order_view a = record("a", 1, ENG_ST_PURCHASED);
    a.from_own = 0;
    a.from_supplier = 1;
    a.purchased_at_ms = 5000;
    a.supplier_settled = true;
    eng_order_view b = record("b", 1, ENG_ST_CONFIRMED);
    b.from_own = 0;
    b.from_supplier = 1;
    cart_part parts[2];
    part_from_record(&parts[0], &a, 0, 2);
    part_from_record(&parts[1], &b, 1, 2);
    char k[512];
    packed got;
    start(&got);
    cart_pack_merged(&got.pk, 1, "cart-1", parts, 2, 2, false);
    const msgpack_object *r = done(&got);
    keys(&r->via.array.ptr[3], k, sizeof k);
    assert_string_equal(k, "order_id,sku,qty,status,from_own,from_supplier,available,created_at,"
                           "updated_at,n_lines,lines");
    finish(&got);

    b.status = ENG_ST_PURCHASED;
    b.purchased_at_ms = 6000;
    b.supplier_settled = true;
    part_from_record(&parts[1], &b, 1, 2);
    start(&got);
    cart_pack_merged(&got.pk, 1, "cart-1", parts, 2, 2, false);
    r = done(&got);
    keys(&r->via.array.ptr[3], k, sizeof k);
    assert_string_equal(k, "order_id,sku,qty,status,from_own,from_supplier,available,created_at,"
                           "updated_at,purchased_at,supplier_settled,n_lines,lines");
    const msgpack_object *m = &r->via.array.ptr[3];
    assert_int_equal(codec_map_get(m, "purchased_at")->via.u64, 6000);
    assert_true(codec_map_get(m, "supplier_settled")->via.boolean);
    finish(&got);
}

/* Errors: {code, message, retryable} then available, line, sku, status:
 * one instance's order. */
static void test_error_key_order(void **state)
{
    (void)state;
    cart_part p;
    memset(&p, 0, sizeof p);
    strcpy(p.sku, "tee");
    p.client_line = 4;
    p.err = ENG_E_INSUFFICIENT;
    strcpy(p.code, "insufficient");
    strcpy(p.msg, "insufficient stock");
    p.has_available = true;
    p.available = 1;
    char k[256];
    packed e;
    start(&e);
    cart_pack_part_error(&e.pk, 9, &p);
    const msgpack_object *r = done(&e);
    assert_int_equal(r->via.array.ptr[1].via.u64, 9);
    assert_int_equal(r->via.array.ptr[3].type, MSGPACK_OBJECT_NIL);
    const msgpack_object *m = &r->via.array.ptr[2];
    keys(m, k, sizeof k);
    assert_string_equal(k, "code,message,retryable,available,line,sku");
    assert_int_equal(codec_map_get(m, "line")->via.u64, 4);
    finish(&e);

    /* No part: the code of the error, no details. */
    start(&e);
    cart_pack_error(&e.pk, 9, ENG_E_BUSY, NULL, "too many", true, NULL, false);
    m = &done(&e)->via.array.ptr[2];
    keys(m, k, sizeof k);
    assert_string_equal(k, "code,message,retryable");
    const msgpack_object *code = codec_map_get(m, "code");
    assert_int_equal(code->via.str.size, strlen(eng_err_code(ENG_E_BUSY)));
    assert_memory_equal(code->via.str.ptr, eng_err_code(ENG_E_BUSY), code->via.str.size);
    finish(&e);

    /* invalid_state carries the status; available only with insufficient. */
    p.err = ENG_E_INVALID_STATE;
    strcpy(p.code, "invalid_state");
    strcpy(p.status, "shipped");
    start(&e);
    cart_pack_part_error(&e.pk, 9, &p);
    keys(&done(&e)->via.array.ptr[2], k, sizeof k);
    assert_string_equal(k, "code,message,retryable,line,sku,status");
    finish(&e);
}

static void test_told_refusal(void **state)
{
    (void)state;
    cart_part p;
    cart_told_part("insufficient", 2, "tee", 0, &p);
    assert_int_equal(p.err, ENG_E_INSUFFICIENT);
    assert_string_equal(p.msg, "insufficient stock");
    assert_false(p.retryable);
    assert_true(p.has_available);
    assert_int_equal(p.available, 0);
    assert_int_equal(p.client_line, 2);
    assert_string_equal(p.sku, "tee");
    cart_told_part("unknown_sku", -1, "", -1, &p);
    assert_int_equal(p.err, ENG_E_UNKNOWN_SKU);
    assert_string_equal(p.msg, "unknown sku");
    assert_false(p.has_available);
    cart_told_part("something_else", 0, "x", -1, &p);
    assert_int_equal(p.err, ENG_E_INTERNAL);
    assert_string_equal(p.code, "something_else");
    assert_string_equal(p.msg, "the order was refused");
}

static eng_status merged_of(eng_status a, eng_status b)
{
    eng_line_view lv[2];
    memset(lv, 0, sizeof lv);
    lv[0].status = a;
    lv[1].status = b;
    return cart_merged_status(lv, 2);
}

static void test_merged_status(void **state)
{
    (void)state;
    /* Ended differently: an abort released some parts, others lapsed. */
    assert_int_equal(merged_of(ENG_ST_RELEASED, ENG_ST_EXPIRED), ENG_ST_EXPIRED);
    assert_int_equal(merged_of(ENG_ST_RELEASED, ENG_ST_RELEASED), ENG_ST_RELEASED);
    /* Otherwise the engine's rule. */
    eng_line_view lv[2];
    memset(lv, 0, sizeof lv);
    lv[0].status = ENG_ST_HELD;
    lv[1].status = ENG_ST_CONFIRMED;
    assert_int_equal(cart_merged_status(lv, 2), eng_order_status_of(lv, 2));
    lv[0].status = ENG_ST_FAILED;
    lv[1].status = ENG_ST_RELEASED;
    assert_int_equal(cart_merged_status(lv, 2), eng_order_status_of(lv, 2));
}

static bool final_of(eng_status a, eng_status b)
{
    cart_part parts[2];
    memset(parts, 0, sizeof parts);
    parts[0].rec.status = a;
    parts[1].rec.status = b;
    return cart_order_final(parts, 2);
}

static void test_order_final(void **state)
{
    (void)state;
    assert_true(final_of(ENG_ST_PURCHASED, ENG_ST_PURCHASED));
    assert_false(final_of(ENG_ST_PURCHASED, ENG_ST_HELD));
    assert_false(final_of(ENG_ST_CONFIRMED, ENG_ST_CONFIRMED));
    assert_true(final_of(ENG_ST_EXPIRED, ENG_ST_RELEASED));
    /* A failed line whose cascade has not reached the other line yet. */
    assert_false(final_of(ENG_ST_FAILED, ENG_ST_CONFIRMED));
    assert_true(final_of(ENG_ST_FAILED, ENG_ST_FAILED));
}

static void test_params(void **state)
{
    (void)state;
    msgpack_object_kv kv[3];
    cart_kv_str(&kv[0], "order_id", "cart-1");
    cart_kv_int(&kv[1], "line_no", 2);
    cart_kv_bool(&kv[2], "erase", true);
    msgpack_object map = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = 3, .ptr = kv}};
    packed got, want;
    start(&got);
    msgpack_pack_object(&got.pk, map);
    start(&want);
    msgpack_pack_map(&want.pk, 3);
    codec_pack_kv_str(&want.pk, "order_id", "cart-1");
    codec_pack_kv_int(&want.pk, "line_no", 2);
    codec_pack_kv_bool(&want.pk, "erase", true);
    assert_same_bytes(&got, &want);
    finish(&got);
    finish(&want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_reads_back_whole),
        cmocka_unit_test(test_owner_errors_keep_details),
        cmocka_unit_test(test_unparsed_is_retryable_failure),
        cmocka_unit_test(test_merged_one_line_is_one_instance),
        cmocka_unit_test(test_merged_whole_order),
        cmocka_unit_test(test_merged_bought_only_when_all_bought),
        cmocka_unit_test(test_error_key_order),
        cmocka_unit_test(test_told_refusal),
        cmocka_unit_test(test_merged_status),
        cmocka_unit_test(test_order_final),
        cmocka_unit_test(test_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
