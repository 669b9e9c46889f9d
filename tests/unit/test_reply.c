/* test_reply.c — the answers' bytes: a single-SKU order record is exactly
 * the map PROTOCOL §4 documents (keys and order), a whole order of several
 * lines adds n_lines and lines, a part adds line and n_lines, error maps
 * start {code, message, retryable}, set-aside SKUs answer unavailable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "stockd/reply.h"

#include "packed.h"

static eng_order_view order(void)
{
    eng_order_view o;
    memset(&o, 0, sizeof o);
    strcpy(o.order_id, "o-1");
    strcpy(o.sku, "hoodie");
    o.qty = 2;
    o.n_lines = 1;
    o.status = ENG_ST_CONFIRMED;
    o.from_own = 2;
    o.available = 5;
    o.created_at_ms = 1000;
    o.updated_at_ms = 2000;
    return o;
}

static void test_single_order_record(void **state)
{
    (void)state;
    packed p;
    start(&p);
    eng_order_view o = order();
    reply_order(&p.pk, &o, false, NULL, 0);
    char k[512];
    keys(done(&p), k, sizeof k);
    assert_string_equal(k, "order_id,sku,qty,status,from_own,from_supplier,available,"
                           "created_at,updated_at");
    finish(&p);
    /* a hold and a reason add their keys, in this order */
    start(&p);
    o.hold_expires_at_ms = 9000;
    strcpy(o.reason, "why");
    reply_order(&p.pk, &o, false, NULL, 0);
    keys(done(&p), k, sizeof k);
    assert_string_equal(k, "order_id,sku,qty,status,from_own,from_supplier,available,"
                           "created_at,updated_at,hold_expires_at,reason");
    finish(&p);
}

static void test_lines_and_parts(void **state)
{
    (void)state;
    packed p;
    char k[512];
    eng_order_view o = order();
    o.n_lines = 2;
    eng_line_view l[2];
    memset(l, 0, sizeof l);
    strcpy(l[0].sku, "a");
    strcpy(l[1].sku, "b");
    l[1].line_no = 1;
    start(&p);
    reply_order(&p.pk, &o, false, l, 2);
    const msgpack_object *m = done(&p);
    keys(m, k, sizeof k);
    assert_string_equal(k, "order_id,sku,qty,status,from_own,from_supplier,available,"
                           "created_at,updated_at,n_lines,lines");
    const msgpack_object *lines = &m->via.map.ptr[10].val;
    assert_int_equal(lines->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(lines->via.array.size, 2);
    keys(&lines->via.array.ptr[1], k, sizeof k);
    assert_string_equal(k, "line,sku,qty,from_own,from_supplier,status");
    finish(&p);
    /* the same order as a part: line and n_lines, no lines */
    start(&p);
    o.line_no = 1;
    reply_order(&p.pk, &o, true, l, 2);
    keys(done(&p), k, sizeof k);
    assert_string_equal(k, "order_id,sku,qty,status,from_own,from_supplier,available,"
                           "created_at,updated_at,n_lines,line");
    finish(&p);
}

static void test_errors(void **state)
{
    (void)state;
    packed p;
    char k[512];
    eng_op op;
    memset(&op, 0, sizeof op);
    op.err = ENG_E_INSUFFICIENT;
    op.err_available = 1;
    op.err_line = -1;
    start(&p);
    reply_eng_error(&p.pk, 7, &op, NULL);
    const msgpack_object *m = done(&p);
    assert_int_equal(m->via.array.size, 4);
    assert_int_equal(m->via.array.ptr[1].via.u64, 7);
    keys(&m->via.array.ptr[2], k, sizeof k);
    assert_string_equal(k, "code,message,retryable,available");
    assert_int_equal(m->via.array.ptr[3].type, MSGPACK_OBJECT_NIL);
    finish(&p);
    /* set aside: unavailable, not retryable, set_aside true */
    start(&p);
    op.err = ENG_E_UNKNOWN_SKU;
    reply_eng_error(&p.pk, 8, &op, "sku x set aside: counters do not match");
    m = done(&p);
    const msgpack_object *e = &m->via.array.ptr[2];
    keys(e, k, sizeof k);
    assert_string_equal(k, "code,message,retryable,set_aside");
    assert_memory_equal(e->via.map.ptr[0].val.via.str.ptr, "unavailable", 11);
    assert_false(e->via.map.ptr[2].val.via.boolean);
    finish(&p);
    /* an owner's unknown outcome */
    start(&p);
    reply_unavailable_owner(&p.pk, 9, "lost", "n2", true);
    m = done(&p);
    keys(&m->via.array.ptr[2], k, sizeof k);
    assert_string_equal(k, "code,message,retryable,outcome,owner");
    finish(&p);
    start(&p);
    reply_unavailable_owner(&p.pk, 9, "down", "n2", false);
    m = done(&p);
    keys(&m->via.array.ptr[2], k, sizeof k);
    assert_string_equal(k, "code,message,retryable,owner");
    finish(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_order_record),
        cmocka_unit_test(test_lines_and_parts),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
