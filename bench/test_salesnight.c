/* test_salesnight.c — the sales night's pure parts (cmocka): the accounting
 * on a tiny night checked by hand, and the generated night's shape and
 * determinism. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sn.h"

#define MIN(m) ((int64_t)(m) * SN_MINUTE_MS)

/* Three SKUs: 0 own only (2 units), 1 supplier only, 2 both (1 own); SKUs 1
 * and 2 are the two specs of one offer. Ten orders and one link change. */
static sn_sku skus[3] = {
    {.kind = SN_KIND_OWN, .own = 2, .offer = -1},
    {.kind = SN_KIND_SUP, .own = 0, .offer = 0, .spec = 0},
    {.kind = SN_KIND_BOTH, .own = 1, .offer = 0, .spec = 1},
};
static sn_offer offers[1] = {
    {.offer_id = 710000000000LL, .n_specs = 2, .sku = {1, 2}, .real0 = {5, 5}},
};

static sn_event one(uint32_t no, int64_t t, uint32_t sku, int32_t qty)
{
    return (sn_event){.t_ms = t, .kind = SN_EV_ORDER, .no = no, .n_lines = 1,
                      .line_sku = {sku}, .line_qty = {qty}};
}

static sn_event two(uint32_t no, int64_t t, uint32_t a, uint32_t b)
{
    return (sn_event){.t_ms = t, .kind = SN_EV_ORDER, .no = no, .n_lines = 2,
                      .line_sku = {a, b}, .line_qty = {1, 1}};
}

static void tiny_night(sn_scenario *sc, sn_event *ev)
{
    ev[0] = one(0, MIN(1), 0, 1);
    ev[1] = one(1, MIN(2), 0, 1);
    ev[2] = one(2, MIN(3), 0, 1);
    ev[3] = one(3, MIN(4), 1, 2);
    ev[4] = one(4, MIN(5), 1, 1);
    ev[5] = one(5, MIN(6), 1, 1);
    ev[6] = two(6, MIN(7), 0, 2);
    ev[7] = one(7, MIN(8), 2, 2);
    ev[8] = (sn_event){.t_ms = MIN(8) + 30000, .kind = SN_EV_LINK, .no = 0, .a = 0, .spec = 1,
                       .action = SN_LINK_SPEC_REMOVED};
    ev[9] = one(8, MIN(9), 2, 1);
    ev[10] = two(9, MIN(10), 1, 2);
    memset(sc, 0, sizeof *sc);
    sn_params_default(&sc->p, 10, 12, 1);
    sc->n_skus = 3;
    sc->skus = skus;
    sc->n_offers = 1;
    sc->offers = offers;
    sc->n_events = 11;
    sc->events = ev;
    sc->n_orders = 10;
    sc->n_links = 1;
    sc->end_ms = MIN(12);
}

static void test_tiny_night_by_hand(void **state)
{
    (void)state;
    sn_scenario sc;
    sn_event ev[11];
    sn_acct a;
    tiny_night(&sc, ev);
    assert_int_equal(sn_acct_init(&a, &sc), 0);
    const int32_t own1[] = {1}, sup0[] = {0}, own0[] = {0}, sup1[] = {1}, sup2[] = {2};
    const int64_t none[] = {0, 0};

    sn_acct_yes(&a, &ev[0], own1, sup0);             /* o0: own 2 -> 1 left */
    sn_acct_yes(&a, &ev[1], own1, sup0);             /* o1: own 0 left */
    sn_acct_no(&a, &ev[2], none, false);             /* o2: nothing there: a right no */
    assert_int_equal(sn_acct_own_free(&a, 0), 0);
    sn_acct_yes(&a, &ev[3], own0, sup2);             /* o3: 2 supplier units, bought */
    sn_acct_bought(&a, 3, 0, false);
    sn_acct_yes(&a, &ev[4], own0, sup1);             /* o4: the purchase finds too little */
    sn_acct_cancel(&a, 4, SN_FATE_SUP_SHORT);
    sn_acct_cancel(&a, 4, SN_FATE_API);              /* a second cancel changes nothing */
    const int64_t three[] = {3};
    sn_acct_no(&a, &ev[5], three, false);            /* o5: 3 orderable, none pending: undersold */
    const int64_t cart6[] = {0, 5};
    sn_acct_no(&a, &ev[6], cart6, false);            /* o6: line 0 has nothing: a right no */
    const int32_t own_sup_own[] = {1}, own_sup_sup[] = {1};
    sn_acct_yes(&a, &ev[7], own_sup_own, own_sup_sup); /* o7: 1 own + 1 supplier */
    sn_acct_cancel(&a, 7, SN_FATE_LINK);             /* the spec went before it was bought */
    sn_acct_bought(&a, 7, 0, true);                  /* bought anyway, at a new price */
    const int64_t zero[] = {0};
    sn_acct_no(&a, &ev[9], zero, true);              /* o8: own 1 is free again: undersold (an error) */
    const int32_t own9[] = {0, 1}, sup9[] = {1, 0};
    sn_acct_yes(&a, &ev[10], own9, sup9);            /* o9: cart, supplier line bought */
    sn_acct_bought(&a, 9, 0, false);
    sn_acct_alert(&a, 2);
    sn_acct_link_detected(&a, 0, MIN(11));
    sn_acct_link_detected(&a, 0, MIN(12));           /* the first detection counts */
    sn_acct_duplicates(&a, 0);
    const int64_t end[] = {0, 4, 0};
    sn_acct_end(&a, end);

    sn_summary s;
    sn_acct_summary(&a, &s);
    assert_int_equal(s.orders, 10);
    assert_int_equal(s.yes, 6);
    assert_int_equal(s.no, 4);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.oversold, 2);
    assert_int_equal(s.by_fate[SN_FATE_SUP_SHORT], 1);
    assert_int_equal(s.by_fate[SN_FATE_LINK], 1);
    assert_int_equal(s.by_fate[SN_FATE_OWN_SHORT], 0);
    assert_int_equal(s.by_fate[SN_FATE_API], 0);
    assert_int_equal(s.undersold, 2);                /* o5, o8 */
    /* Units refused orders wanted that are left: SKU 1 wanted 1, 4 left;
     * SKU 0 and 2 have none free. */
    assert_int_equal(s.unsold_wanted, 1);
    assert_int_equal(s.bought_for_cancelled, 1);
    assert_int_equal(s.bought_changed_price, 1);
    assert_int_equal(s.alerts, 2);
    assert_int_equal(s.links, 1);
    assert_int_equal(s.links_detected, 1);
    assert_true(s.detect_mean_min > 2.49 && s.detect_mean_min < 2.51);
    assert_true(s.oversell_pm > 333.3 && s.oversell_pm < 333.4);
    assert_true(s.undersell_pm > 499.9 && s.undersell_pm < 500.1);
    assert_true(s.alerts_pm > 199.9 && s.alerts_pm < 200.1);
    /* Own truth at the end: SKU 0 all promised, SKU 2's unit held by o9. */
    assert_int_equal(sn_acct_own_free(&a, 0), 0);
    assert_int_equal(sn_acct_own_free(&a, 2), 0);
    assert_int_equal(a.sup_pending[1], 0);
    assert_int_equal(a.sup_pending[2], 0);
    /* Per minute: the cancellations count at their order's arrival. */
    assert_int_equal(a.minutes[5].oversold, 1);
    assert_int_equal(a.minutes[8].oversold, 1);
    assert_int_equal(a.minutes[6].undersold, 1);
    assert_int_equal(a.minutes[9].undersold, 1);
    assert_int_equal(a.minutes[1].yes, 1);
    sn_acct_free(&a);
}

/* A pending supplier unit is not orderable for the next customer. */
static void test_pending_is_not_orderable(void **state)
{
    (void)state;
    sn_scenario sc;
    sn_event ev[11];
    sn_acct a;
    tiny_night(&sc, ev);
    assert_int_equal(sn_acct_init(&a, &sc), 0);
    const int32_t own0[] = {0}, sup2[] = {2};
    sn_acct_yes(&a, &ev[3], own0, sup2);             /* 2 promised, not bought yet */
    const int64_t two_left[] = {2};
    sn_acct_no(&a, &ev[4], two_left, false);         /* 2 real - 2 pending: a right no */
    sn_summary s;
    sn_acct_summary(&a, &s);
    assert_int_equal(s.undersold, 0);
    sn_acct_free(&a);
}

static void test_generated_night(void **state)
{
    (void)state;
    sn_params p;
    sn_scenario a, b, c;
    char err[256];
    sn_params_default(&p, 500, 30, 42);
    assert_int_equal(sn_scenario_build(&p, &a, err, sizeof err), 0);
    assert_int_equal(sn_scenario_build(&p, &b, err, sizeof err), 0);
    assert_true(sn_scenario_digest(&a) == sn_scenario_digest(&b));
    p.seed = 43;
    assert_int_equal(sn_scenario_build(&p, &c, err, sizeof err), 0);
    assert_true(sn_scenario_digest(&a) != sn_scenario_digest(&c));
    sn_scenario_free(&c);
    assert_true(a.n_orders > 30 * 20);               /* 25 a minute, 6x for 3 minutes */
    assert_int_equal(a.n_links, 3);
    uint32_t orders = 0, links = 0;
    for (uint32_t i = 0; i < a.n_events; i++) {
        const sn_event *e = &a.events[i];
        assert_true(e->t_ms >= 0 && e->t_ms < a.end_ms);
        if (i > 0)
            assert_true(a.events[i - 1].t_ms <= e->t_ms);
        if (e->kind == SN_EV_ORDER) {
            assert_int_equal(e->no, orders++);
            assert_true(e->n_lines >= 1 && e->n_lines <= SN_LINES_MAX);
            for (uint32_t k = 0; k < e->n_lines; k++) {
                assert_true(e->line_sku[k] < a.n_skus);
                assert_true(e->line_qty[k] >= 1 && e->line_qty[k] <= 3);
                if (k > 0)
                    assert_true(e->line_sku[k - 1] < e->line_sku[k]);
            }
        } else if (e->kind == SN_EV_LINK) {
            assert_int_equal(e->no, links++);
            assert_true(e->a < a.n_offers && e->spec < a.offers[e->a].n_specs);
        } else if (e->kind == SN_EV_STOCK) {
            assert_true(e->a < a.n_skus && a.skus[e->a].offer >= 0);
            assert_int_equal(e->spec, a.skus[e->a].spec);
        }
    }
    assert_int_equal(orders, a.n_orders);
    for (uint32_t i = 0; i < a.n_offers; i++)
        for (uint32_t k = 0; k < a.offers[i].n_specs; k++) {
            const sn_sku *s = &a.skus[a.offers[i].sku[k]];
            assert_int_equal(s->offer, (int32_t)i);
            assert_int_equal(s->spec, k);
            assert_true(s->kind != SN_KIND_OWN);
        }
    p.skus = 5;
    assert_int_equal(sn_scenario_build(&p, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "skus"));
    sn_scenario_free(&a);
    sn_scenario_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_night_by_hand),
        cmocka_unit_test(test_pending_is_not_orderable),
        cmocka_unit_test(test_generated_night),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
