/* test_supplier_sign.c — cmocka tests for supplier_sign.h: the official
 * 1688 signature example, the SDK sort(k+v) order, a realistic preview call,
 * UTF-8 values, long secrets, and the form encode/build/parse helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stockd/supplier_sign.h"

#define P(k, v) {(k), sizeof(k) - 1, (v), sizeof(v) - 1}
#define PATH_A "param2/1/system/currentTime/1000000"

static void expect_sig(const char *secret, const char *path, const supplier_param *p, size_t n,
                       const char *want)
{
    char out[SUPPLIER_SIGN_HEX_LEN + 1];
    assert_int_equal(supplier_sign(secret, strlen(secret), path, p, n, out), 0);
    assert_string_equal(out, want);
    assert_true(supplier_sign_equal(want, out));
}

/* Reference §2.2 A: the example on open.1688.com/api/sysSignature.htm. */
static void test_official_example(void **state)
{
    (void)state;
    supplier_param p[] = {P("b", "2"), P("a", "1")};
    expect_sig("test123", PATH_A, p, 2, "33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE88");
}

/* The received signature itself is never signed. */
static void test_signature_param_skipped(void **state)
{
    (void)state;
    supplier_param p[] = {P("b", "2"), P("_aop_signature", "ABCDEF"), P("a", "1")};
    expect_sig("test123", PATH_A, p, 3, "33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE88");
}

/* Reference §2.2 B: the SDKs sort key+value strings, not keys. */
static void test_sdk_sort_order(void **state)
{
    (void)state;
    supplier_param p[] = {P("a", "z"), P("ab", "1")};
    expect_sig("test123", PATH_A, p, 2, "8455C1445CD6FD189617EBA7A8A5C98E78786564");
    supplier_param q[] = {P("ab", "1"), P("a", "z")};
    expect_sig("test123", PATH_A, q, 2, "8455C1445CD6FD189617EBA7A8A5C98E78786564");
}

/* Reference §2.2 C: a preview call with JSON params and system params. */
static void test_preview_call(void **state)
{
    (void)state;
    supplier_param p[] = {
        P("access_token", "TESTTOKEN"),
        P("_aop_timestamp", "1700000000000"),
        P("flow", "general"),
        P("addressParam", "{\"addressId\":1234}"),
        P("cargoParamList", "[{\"offerId\":554456348334,\"specId\":"
                            "\"b266e0726506185beaf205cbae88530d\",\"quantity\":5}]"),
    };
    expect_sig("test123", "param2/1/com.alibaba.trade/alibaba.createOrder.preview/1000000", p, 5,
               "96FA588FEA903C771DCDF8050E4916CB2941E21E");
}

/* Reference §2.2 D: values are signed as their UTF-8 bytes. */
static void test_utf8(void **state)
{
    (void)state;
    supplier_param p[] = {P("b", "2"), P("message", "\xe7\x95\x99\xe8\xa8\x80")};
    expect_sig("test123", PATH_A, p, 2, "ECBB1B9D065C744DAB96D999FE741F2317C83577");
}

/* A secret longer than the SHA-1 block is hashed first (RFC 2104). */
static void test_long_secret(void **state)
{
    (void)state;
    char secret[101];
    memset(secret, 'k', 100);
    secret[100] = '\0';
    supplier_param p[] = {P("a", "1")};
    expect_sig(secret, PATH_A, p, 1, "097C1BD632BFE917B52C090A0E08BC9DF0548FA4");
}

static void test_limits_and_equal(void **state)
{
    (void)state;
    supplier_param p[SUPPLIER_SIGN_MAX_PARAMS + 1];
    for (size_t i = 0; i < SUPPLIER_SIGN_MAX_PARAMS + 1; i++)
        p[i] = (supplier_param)P("a", "1");
    char out[SUPPLIER_SIGN_HEX_LEN + 1];
    assert_int_equal(supplier_sign("s", 1, PATH_A, p, SUPPLIER_SIGN_MAX_PARAMS + 1, out), -1);
    assert_string_equal(out, "");
    assert_int_equal(supplier_sign("s", 1, PATH_A, p, SUPPLIER_SIGN_MAX_PARAMS, out), 0);
    assert_int_equal(supplier_sign("s", 1, "", NULL, 0, out), 0);
    assert_false(supplier_sign_equal("33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE88",
                                     "33e54f4f7b989e3e0e912d3fbd2f1a03ca7cce88"));
    assert_false(supplier_sign_equal("33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE88",
                                     "33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE8"));
    assert_false(supplier_sign_equal("33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE88",
                                     "33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE880"));
    assert_false(supplier_sign_equal("33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE88", ""));
}

static void test_encode(void **state)
{
    (void)state;
    char out[64];
    const char *s = "a b&c=d/\xe7\x95\x99~._-*";
    size_t n = supplier_form_encode(out, sizeof out, s, strlen(s));
    assert_string_equal(out, "a+b%26c%3Dd%2F%E7%95%99~._-%2A");
    assert_int_equal(n, strlen(out));
    /* Truncation reports the full length and still terminates. */
    char small[5];
    assert_int_equal(supplier_form_encode(small, sizeof small, s, strlen(s)), n);
    assert_string_equal(small, "a+b%");
    assert_int_equal(supplier_form_encode(NULL, 0, s, strlen(s)), n);
}

static void test_build(void **state)
{
    (void)state;
    supplier_param p[] = {P("productID", "600000000001"), P("webSite", "1688"),
                          P("json", "{\"a\":[1, 2]}")};
    char out[128];
    size_t n = supplier_form_build(out, sizeof out, p, 3);
    assert_string_equal(out, "productID=600000000001&webSite=1688&json=%7B%22a%22%3A%5B1%2C+2%5D%7D");
    assert_int_equal(n, strlen(out));
    assert_int_equal(supplier_form_build(NULL, 0, p, 3), n);
}

static void test_parse(void **state)
{
    (void)state;
    char buf[] = "a=1&&b=x+y%26z&flag&=v&c=%E7%95%99&d=";
    supplier_param p[8];
    size_t n = 0;
    assert_int_equal(supplier_form_parse(buf, strlen(buf), p, 8, &n), 0);
    assert_int_equal(n, 6);
    assert_string_equal(p[0].key, "a");
    assert_string_equal(p[0].value, "1");
    assert_string_equal(p[1].key, "b");
    assert_string_equal(p[1].value, "x y&z");
    assert_int_equal(p[1].value_len, 5);
    assert_string_equal(p[2].key, "flag");
    assert_int_equal(p[2].value_len, 0);
    assert_string_equal(p[2].value, "");
    assert_int_equal(p[3].key_len, 0);
    assert_string_equal(p[3].value, "v");
    assert_string_equal(p[4].value, "\xe7\x95\x99");
    assert_string_equal(p[5].key, "d");
    assert_string_equal(p[5].value, "");
    const supplier_param *f = supplier_param_find(p, n, "b");
    assert_non_null(f);
    assert_ptr_equal(f, &p[1]);
    assert_null(supplier_param_find(p, n, "zz"));
}

static void test_parse_errors(void **state)
{
    (void)state;
    const char *bad[] = {"a=%", "a=%4", "a=%zz", "a=%00", "%4=1", "a=1%"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[16];
        strcpy(buf, bad[i]);
        supplier_param p[4];
        size_t n = 9;
        assert_int_equal(supplier_form_parse(buf, strlen(buf), p, 4, &n), -1);
        assert_int_equal(n, 0);
    }
    char many[] = "a=1&b=2&c=3";
    supplier_param p[2];
    size_t n;
    assert_int_equal(supplier_form_parse(many, strlen(many), p, 2, &n), -2);
    char empty[] = "";
    assert_int_equal(supplier_form_parse(empty, 0, p, 2, &n), 0);
    assert_int_equal(n, 0);
}

/* What build encodes, parse decodes, and the signature is unchanged. */
static void test_roundtrip_signature(void **state)
{
    (void)state;
    supplier_param p[] = {P("access_token", "TOK en"), P("cargoParamList", "[{\"a\":\"%&=+\"}]"),
                          P("message", "\xe7\x95\x99")};
    char want[SUPPLIER_SIGN_HEX_LEN + 1], got[SUPPLIER_SIGN_HEX_LEN + 1];
    assert_int_equal(supplier_sign("sec", 3, PATH_A, p, 3, want), 0);
    char body[256];
    size_t len = supplier_form_build(body, sizeof body, p, 3);
    assert_true(len < sizeof body);
    supplier_param q[4];
    size_t n;
    assert_int_equal(supplier_form_parse(body, len, q, 4, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(supplier_sign("sec", 3, PATH_A, q, n, got), 0);
    assert_string_equal(want, got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_official_example),
        cmocka_unit_test(test_signature_param_skipped),
        cmocka_unit_test(test_sdk_sort_order),
        cmocka_unit_test(test_preview_call),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_long_secret),
        cmocka_unit_test(test_limits_and_equal),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_roundtrip_signature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
