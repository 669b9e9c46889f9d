/* test_rpc_parse.c — request validation: who may send the peer-only fields
 * (the unauthorized verdict comes before any other), and the range checks a
 * proven peer's part fields get. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "stockd/rpc_parse.h"

/* One field: an int (s == NULL, b false), a string, or a bool. */
typedef struct kv {
    const char *k;
    const char *s;
    int64_t i;
    bool is_bool;
} kv;
#define I(key, v) {key, NULL, v, false}
#define S(key, v) {key, v, 0, false}
#define T(key) {key, NULL, 1, true}

typedef struct parsed {
    bool ok;
    eng_op op;
    rpc_parsed pp;
    rpc_perr pe;
} parsed;

static parsed run(enum method m, bool peer, const kv *f, size_t n)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, (uint32_t)n);
    for (size_t j = 0; j < n; j++) {
        msgpack_pack_str_with_body(&pk, f[j].k, strlen(f[j].k));
        if (f[j].s)
            msgpack_pack_str_with_body(&pk, f[j].s, strlen(f[j].s));
        else if (f[j].is_bool)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_int64(&pk, f[j].i);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    parsed r;
    memset(&r, 0, sizeof r);
    r.pp.deadline_ms = 2000;
    r.pe.field = "params";
    r.pe.problem = "invalid";
    r.ok = rpc_parse_params(m, &u.data, peer, &r.op, &r.pp, &r.pe);
    /* The result is returned by value: a field name kept in pe.unknown
     * must not be pointed at in this frame's copy. */
    static char field[sizeof r.pe.unknown];
    if (r.pe.field == r.pe.unknown) {
        memcpy(field, r.pe.unknown, sizeof field);
        r.pe.field = field;
    }
    rpc_op_free_lines(&r.op);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return r;
}
#define RUN(m, peer, ...) \
    run(m, peer, (const kv[]){__VA_ARGS__}, sizeof((const kv[]){__VA_ARGS__}) / sizeof(kv))

static void expect_unauthorized(parsed r, const char *field)
{
    assert_false(r.ok);
    assert_true(r.pe.unauthorized);
    assert_string_equal(r.pe.field, field);
}

static void expect_invalid(parsed r, const char *field)
{
    assert_false(r.ok);
    assert_false(r.pe.unauthorized);
    assert_string_equal(r.pe.field, field);
}

/* From a client every peer-only field is unauthorized, even first among
 * other errors and on methods that would not take it at all. */
static void test_client_peer_fields(void **state)
{
    (void)state;
    expect_unauthorized(RUN(M_RESERVE, false, S("order_id", "o"), S("sku", "s"), I("qty", 2),
                            I("_fwd", 1), I("part_lines", 2), I("line_no", 0),
                            I("hold_ms", 600000)), "_fwd");
    expect_unauthorized(RUN(M_RESERVE, false, S("order_id", "o"), S("sku", "s"), I("qty", 2),
                            I("part_lines", 2), I("line_no", 0)), "part_lines");
    expect_unauthorized(RUN(M_CONFIRM, false, S("order_id", "o"), T("decided")), "decided");
    expect_unauthorized(RUN(M_RELEASE, false, S("order_id", "o"), T("as_failed")), "as_failed");
    expect_unauthorized(RUN(M_RELEASE, false, S("order_id", "o"), S("reason", "r")), "reason");
    expect_unauthorized(RUN(M_ORDER_SUBSCRIBE, false, I("update", 1)), "update");
    expect_unauthorized(RUN(M_STATS, false, I("_fwd", 1)), "_fwd");
    expect_unauthorized(RUN(M_PING, false, I("bogus", 1), I("_fwd", 1)), "_fwd");
    expect_unauthorized(RUN(M_RESERVE, false, I("order_id", 5), I("line_no", 0)), "line_no");
    /* stock.adjust's reason is the admin's, not a peer's */
    parsed a = RUN(M_ADJUST, false, S("sku", "s"), I("delta", 1), S("reason", "count"));
    assert_true(a.ok);
    /* a client's plain reserve still parses */
    parsed ok = RUN(M_RESERVE, false, S("order_id", "o"), S("sku", "s"), I("qty", 2));
    assert_true(ok.ok);
    assert_false(ok.pp.fwd);
}

/* A proven peer's part fields are judged on their values. */
static void test_peer_part_ranges(void **state)
{
    (void)state;
#define R3 S("order_id", "o"), S("sku", "s"), I("qty", 1)
    parsed p = RUN(M_RESERVE, true, R3, I("_fwd", 1), I("part_lines", 2), I("line_no", 1));
    assert_true(p.ok);
    assert_true(p.pp.fwd);
    assert_int_equal(p.op.part_lines, 2);
    assert_int_equal(p.op.line_no, 1);
    expect_invalid(RUN(M_RESERVE, true, R3, I("_fwd", 1), I("part_lines", 1), I("line_no", 0)),
                   "part_lines");
    expect_invalid(RUN(M_RESERVE, true, R3, I("_fwd", 1), I("part_lines", 51), I("line_no", 0)),
                   "part_lines");
    expect_invalid(RUN(M_RESERVE, true, R3, I("_fwd", 1), I("part_lines", 2), I("line_no", 2)),
                   "line_no");
    expect_invalid(RUN(M_RESERVE, true, R3, I("_fwd", 1), I("part_lines", 2)), "line_no");
    expect_invalid(RUN(M_RESERVE, true, R3, I("_fwd", 1), I("line_no", 1)), "part_lines");
    expect_invalid(RUN(M_CONFIRM, true, S("order_id", "o"), I("_fwd", 1), I("part_lines", 2),
                       I("line_no", 0), I("decided", 1)), "decided");
    expect_invalid(RUN(M_CONFIRM, true, S("order_id", "o"), I("_fwd", 1), I("part_lines", 2),
                       I("line_no", -1)), "line_no");
    /* part fields without "_fwd", even from a peer, are not a part */
    expect_invalid(RUN(M_CONFIRM, true, S("order_id", "o"), I("part_lines", 2), I("line_no", 0)),
                   "part_lines");
    expect_invalid(RUN(M_RELEASE, true, S("order_id", "o"), I("_fwd", 1), T("as_failed")),
                   "as_failed");
#undef R3
}

static void test_handshake_fields(void **state)
{
    (void)state;
    expect_invalid(RUN(M_PEER_HELLO, false, S("node", "n1"), S("nonce", "short"),
                       S("keys", "x")), "nonce");
    expect_invalid(RUN(M_PEER_AUTH, false, S("mac", "x")), "mac");
    expect_invalid(RUN(M_PEER_AUTH, false, I("x", 1)), "x");
}

/* test.clock: now_ms an integer >= 1, optional; nothing else but the token. */
static void test_clock_fields(void **state)
{
    (void)state;
    assert_int_equal(rpc_method_lookup("test.clock", 10), M_TEST_CLOCK);
    assert_string_equal(rpc_method_name(M_TEST_CLOCK), "test.clock");
    assert_true(rpc_method_admin(M_TEST_CLOCK));
    parsed r = RUN(M_TEST_CLOCK, false, I("now_ms", 1796400000000));
    assert_true(r.ok);
    assert_true(r.pp.has_now_ms);
    assert_int_equal(r.pp.now_ms, 1796400000000);
    r = run(M_TEST_CLOCK, false, NULL, 0);
    assert_true(r.ok);
    assert_false(r.pp.has_now_ms);
    expect_invalid(RUN(M_TEST_CLOCK, false, I("now_ms", 0)), "now_ms");
    expect_invalid(RUN(M_TEST_CLOCK, false, I("now_ms", -1)), "now_ms");
    expect_invalid(RUN(M_TEST_CLOCK, false, S("now_ms", "1")), "now_ms");
    expect_invalid(RUN(M_TEST_CLOCK, false, T("now_ms")), "now_ms");
    expect_invalid(RUN(M_TEST_CLOCK, false, I("sku", 1)), "sku");
    expect_unauthorized(RUN(M_TEST_CLOCK, false, I("_fwd", 1)), "_fwd");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_peer_fields),
        cmocka_unit_test(test_peer_part_ranges),
        cmocka_unit_test(test_handshake_fields),
        cmocka_unit_test(test_clock_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
