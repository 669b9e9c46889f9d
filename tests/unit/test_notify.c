/* test_notify.c — peers' updates told once per (order, status), the alerts
 * ring newest first and bounded; the listener path is exercised on real
 * connections by the integration suite (test_supplier_*, test_lines). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "stockd/notify.h"

static void test_updates_told_once(void **state)
{
    (void)state;
    stockd_config cfg;
    config_defaults(&cfg);
    notify *n = notify_new(&cfg);
    assert_true(notify_update_first(n, "o1", 2, "failed", 6));
    assert_false(notify_update_first(n, "o1", 2, "failed", 6));
    assert_true(notify_update_first(n, "o1", 2, "purchased", 9));
    /* "o1" + "x" and "o1x" + "" are different pairs */
    assert_true(notify_update_first(n, "o1x", 3, "", 0));
    assert_true(notify_update_first(n, "o1", 2, "x", 1));
    /* remembered for NOTIFY_UPDATES_SEEN pairs, then forgotten oldest first */
    char id[32];
    for (int i = 0; i < NOTIFY_UPDATES_SEEN; i++) {
        int len = snprintf(id, sizeof id, "f%d", i);
        assert_true(notify_update_first(n, id, (size_t)len, "failed", 6));
    }
    assert_true(notify_update_first(n, "o1", 2, "failed", 6));
    notify_stats st;
    notify_stats_get(n, &st);
    assert_int_equal(st.updates_repeated, 1);
    notify_free(n);
}

static void test_alerts_ring(void **state)
{
    (void)state;
    stockd_config cfg;
    config_defaults(&cfg);
    notify *n = notify_new(&cfg);
    char sku[32];
    for (int i = 0; i < NOTIFY_ALERTS_MAX + 5; i++) {
        snprintf(sku, sizeof sku, "s%d", i);
        notify_alert(n, "purchase_failed", sku, i % 2 ? "o" : NULL, "why", i);
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    notify_alerts_pack(n, &pk, 3);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(u.data.via.array.size, 3);
    /* newest first: s1004 (no order id), s1003 (with one) */
    const msgpack_object *a0 = &u.data.via.array.ptr[0];
    assert_int_equal(a0->via.map.size, 4);
    assert_memory_equal(a0->via.map.ptr[1].val.via.str.ptr, "s1004", 5);
    assert_int_equal(u.data.via.array.ptr[1].via.map.size, 5);
    notify_stats st;
    notify_stats_get(n, &st);
    assert_int_equal(st.alerts_kept, NOTIFY_ALERTS_MAX);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    notify_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_updates_told_once),
        cmocka_unit_test(test_alerts_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
