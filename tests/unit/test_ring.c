/* test_ring.c — ownership by consistent hashing: balance, ~1/N movement when
 * a node joins, nothing moves between the others, parsing of --peers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stockd/ring.h"

#define KEYS 100000

static ring *mk(size_t n)
{
    ring_node nodes[8];
    memset(nodes, 0, sizeof(nodes));
    for (size_t i = 0; i < n; i++) {
        snprintf(nodes[i].name, sizeof(nodes[i].name), "node-%zu", i);
        strcpy(nodes[i].host, "127.0.0.1");
        nodes[i].port = 7400 + (int)i;
    }
    ring *r = ring_new(nodes, n, RING_VNODES_DEFAULT);
    assert_non_null(r);
    return r;
}

static const char *owner_name(const ring *r, const char *key)
{
    const ring_node *nodes;
    ring_nodes(r, &nodes);
    return nodes[ring_owner(r, key, strlen(key))].name;
}

static void test_balance(void **state)
{
    (void)state;
    ring *r = mk(3);
    unsigned count[3] = {0};
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "sku-%d", i);
        count[ring_owner(r, key, strlen(key))]++;
    }
    for (int i = 0; i < 3; i++) {
        /* 160 points a node keep each share within +-20% of a third. */
        assert_true(count[i] > KEYS / 3 * 8 / 10);
        assert_true(count[i] < KEYS / 3 * 12 / 10);
    }
    ring_free(r);
}

static void test_join_moves_about_one_in_n(void **state)
{
    (void)state;
    ring *r3 = mk(3), *r4 = mk(4);
    int moved = 0;
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "sku-%d", i);
        const char *a = owner_name(r3, key), *b = owner_name(r4, key);
        if (strcmp(a, b) != 0) {
            moved++;
            assert_string_equal(b, "node-3");  /* only to the new node */
        }
    }
    assert_true(moved > KEYS / 4 * 7 / 10);
    assert_true(moved < KEYS / 4 * 13 / 10);
    ring_free(r3);
    ring_free(r4);
}

static void test_order_of_list_irrelevant(void **state)
{
    (void)state;
    ring_node a[2] = {{"x", "127.0.0.1", 1}, {"y", "127.0.0.1", 2}};
    ring_node b[2] = {{"y", "127.0.0.1", 2}, {"x", "127.0.0.1", 1}};
    ring *ra = ring_new(a, 2, 50), *rb = ring_new(b, 2, 50);
    assert_int_equal(ring_version(ra), ring_version(rb));
    assert_string_equal(owner_name(ra, "k1"), owner_name(rb, "k1"));
    ring_node c[2] = {{"x", "127.0.0.1", 1}, {"y", "127.0.0.1", 3}};
    ring *rc = ring_new(c, 2, 50);
    assert_true(ring_version(ra) != ring_version(rc));  /* addresses count */
    assert_int_equal(ring_find(ra, "y"), 1);
    assert_int_equal(ring_find(ra, "z"), -1);
    ring_free(ra);
    ring_free(rb);
    ring_free(rc);
}

static void test_parse_peers(void **state)
{
    (void)state;
    ring_node n[4];
    size_t k;
    char err[128];
    assert_int_equal(ring_parse_peers("a=127.0.0.1:7400,b=localhost:7401", n, 4, &k, err, sizeof(err)), 0);
    assert_int_equal(k, 2);
    assert_string_equal(n[1].host, "127.0.0.1");
    assert_int_equal(n[1].port, 7401);
    const char *bad[] = {"", "a", "a=", "a=1.2.3.4", "a=1.2.3.4:0", "a=1.2.3.4:70000", "a=host:1",
                         "a=1.2.3.4:1,a=1.2.3.4:2", "a b=1.2.3.4:1", "a=1.2.3.4:12x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(ring_parse_peers(bad[i], n, 4, &k, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(ring_parse_peers("a=1.2.3.4:1,b=1.2.3.4:2,c=1.2.3.4:3", n, 2, &k, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_balance),
        cmocka_unit_test(test_join_moves_about_one_in_n),
        cmocka_unit_test(test_order_of_list_irrelevant),
        cmocka_unit_test(test_parse_peers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
