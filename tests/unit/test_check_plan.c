/* test_check_plan.c — check_plan.h: the preview calls of a reserve's
 * check (one per offer, a spec summed), what an answer means (only a
 * business refusal is a no; gateway and local codes say nothing about the
 * goods), the refusal's reason, the hold and the budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stockd/check_plan.h"

static check_item item(int64_t offer, const char *spec, int64_t qty)
{
    check_item it;
    memset(&it, 0, sizeof it);
    it.offer_id = offer;
    snprintf(it.spec_id, sizeof it.spec_id, "%s", spec);
    it.qty = qty;
    return it;
}

static void test_plan_groups_by_offer(void **state)
{
    (void)state;
    check_item in[4] = {item(7, "a", 2), item(9, "x", 1), item(7, "b", 3), item(7, "a", 4)};
    check_call out[4];
    size_t n = check_plan(in, 4, out);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].offer_id, 7);
    assert_int_equal(out[0].n, 2);
    assert_string_equal(out[0].lines[0].spec_id, "a");
    assert_int_equal(out[0].lines[0].quantity, 6);  /* two SKUs on one spec: summed */
    assert_int_equal(out[0].lines[0].offer_id, 7);
    assert_string_equal(out[0].lines[1].spec_id, "b");
    assert_int_equal(out[0].lines[1].quantity, 3);
    assert_int_equal(out[1].offer_id, 9);
    assert_int_equal(out[1].n, 1);
    assert_int_equal(out[1].lines[0].quantity, 1);
    assert_int_equal(check_plan(in, 0, out), 0);
}

static supplier_result res(supplier_outcome o, supplier_kind k, const char *code, const char *msg)
{
    supplier_result r;
    supplier_result_set(&r, o, k, code, msg);
    return r;
}

static void test_verdicts(void **state)
{
    (void)state;
    supplier_result r = res(SUPPLIER_OK, SUPPLIER_KIND_NONE, NULL, NULL);
    assert_int_equal(check_verdict_of(&r), CHECK_PASS);
    const char *no[] = {"500_004", "500_003", "500_001", "FAIL_BIZ_FAIL_BIZ_BOOKED_BEYOND_THE_MAX_QUANTITY",
                        "biz.Error", "500_006"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        r = res(SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, no[i], "no");
        assert_int_equal(check_verdict_of(&r), CHECK_REFUSED);
    }
    const char *unknown[] = {"gw.SignatureInvalid", "401", "gw.APIACLDecline", "client.BadShape",
                             "client.ResponseTooLarge", "http.404", "", "gw.QosAppFrequencyLimit"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        r = res(SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, unknown[i], "x");
        assert_int_equal(check_verdict_of(&r), CHECK_UNAVAILABLE);
    }
    for (int k = SUPPLIER_KIND_QOS; k < SUPPLIER_KIND__N; k++) {
        r = res(SUPPLIER_RETRYABLE, (supplier_kind)k, NULL, NULL);
        assert_int_equal(check_verdict_of(&r), CHECK_UNAVAILABLE);
    }
}

static void test_refusal_reason(void **state)
{
    (void)state;
    char why[ENG_REASON_MAX + 1];
    supplier_result r = res(SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "500_004", "库存不足");
    check_refusal(&r, why);
    assert_string_equal(why, "check refused: alibaba.createOrder.preview: 500_004 库存不足");
    assert_true(check_refused_reason(why));
    assert_false(check_refused_reason("line 1 failed: x"));
    assert_false(check_refused_reason(""));
    /* Long messages are cut on a UTF-8 boundary within ENG_REASON_MAX. */
    char msg[200];
    memset(msg, 0, sizeof msg);
    for (size_t i = 0; i + 3 < sizeof msg - 1; i += 3)
        memcpy(msg + i, "库", 3);
    r = res(SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "500_004", msg);
    check_refusal(&r, why);
    size_t n = strlen(why);
    assert_true(n <= ENG_REASON_MAX && n > ENG_REASON_MAX - 3);
    assert_true(((unsigned char)why[n - 1] & 0xc0) == 0x80);  /* ends inside no sequence */
    assert_true(((unsigned char)why[n - 3] & 0xe0) == 0xe0);
    r = res(SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "500_003", "");
    check_refusal(&r, why);
    assert_string_equal(why, "check refused: alibaba.createOrder.preview: 500_003");
}

static void test_hold_and_budget(void **state)
{
    (void)state;
    assert_int_equal(check_hold_ms(2000), 2000 + CHECK_HOLD_MARGIN_MS);
    assert_int_equal(check_hold_ms(1), 1 + CHECK_HOLD_MARGIN_MS);
    assert_true(check_hold_ms(600000) <= ENG_HOLD_MS_MAX);
    assert_int_equal(check_budget_ms(2000, 0), 2000 - CHECK_COMMIT_RESERVE_MS);
    assert_int_equal(check_budget_ms(2000, 500), 1500 - CHECK_COMMIT_RESERVE_MS);
    assert_int_equal(check_budget_ms(100, 0), 75);   /* a quarter kept when short */
    assert_int_equal(check_budget_ms(2000, 5000), 1);
    assert_int_equal(check_budget_ms(2000, -3), 2000 - CHECK_COMMIT_RESERVE_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_groups_by_offer),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_refusal_reason),
        cmocka_unit_test(test_hold_and_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
