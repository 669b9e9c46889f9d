/* sn_run.c — the sales night's runner: builds the night once, then plays
 * it against each system in turn (fake1688 reset to the same catalogue and
 * fault seed before each), and writes the table, the JSON and the plot. */
#include "sn_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

extern char **environ;

/* The API peak: every call answered a little later, and one in seven
 * refused with the app's rate limit. A seeded fault rate, not the fake's
 * token bucket: a bucket counts wall-clock seconds, which a replay cannot
 * reproduce. */
#define SN_PEAK_LATENCY_MS 2
#define SN_PEAK_JITTER_MS 3
#define SN_PEAK_QOS_RATE 0.15

typedef struct sn_result {
    char name[16];
    char order_prefix[40];           /* "sn<nonce>-": this system's order ids in MariaDB */
    bool ran;
    char note[600];
    sn_summary s;
    double wall_s;
    uint64_t p50_us, p99_us, max_us;
    double answers_per_s;
    uint64_t event_errors;
    sn_minute *minutes;              /* owned copy */
    json_t *why;                     /* where the cancellations came from (owned) */
    json_t *refused_by;              /* refused_for_errors by code (owned) */
    bool test_clock;                 /* ran on stockd's test clock (sn_sys.h) */
    uint64_t clock_unsettled;
} sn_result;

#define SN_WHY_TOP 8

/* Where a system's cancellations came from: by window of the night (the
 * inflation of some suppliers around the flash sale, the API peak inside
 * it) and the SKUs with most of them, with what happened to their offer. */
static json_t *why_json(const sn_acct *a)
{
    const sn_scenario *sc = a->sc;
    int64_t i0 = sc->peak_from_ms - 5 * SN_MINUTE_MS, i1 = sc->peak_to_ms + 10 * SN_MINUTE_MS;
    uint64_t win[3] = {0}, win_yes[3] = {0};
    uint32_t *per = calloc((size_t)sc->n_skus * SN_FATE__N, sizeof *per);
    if (per == NULL)
        return json_object();
    for (uint32_t k = 0; k < sc->n_orders; k++) {
        const sn_answer_rec *r = &a->rec[k];
        const sn_event *e = &sc->events[a->order_ev[k]];
        if (!r->yes)
            continue;
        int w = e->t_ms >= sc->peak_from_ms && e->t_ms < sc->peak_to_ms ? 0
              : e->t_ms >= i0 && e->t_ms < i1 ? 1 : 2;
        win_yes[w]++;
        if (r->fate == SN_FATE_NONE)
            continue;
        win[w]++;
        for (uint32_t i = 0; i < e->n_lines; i++)
            if (r->from_sup[i] > 0 || r->fate == SN_FATE_OWN_SHORT)
                per[(size_t)e->line_sku[i] * SN_FATE__N + r->fate]++;
    }
    json_t *top = json_array();
    for (int n = 0; n < SN_WHY_TOP; n++) {
        uint32_t best = UINT32_MAX, best_n = 0;
        for (uint32_t s = 0; s < sc->n_skus; s++) {
            uint32_t t = 0;
            for (int f = 1; f < SN_FATE__N; f++)
                t += per[(size_t)s * SN_FATE__N + f];
            if (t > best_n) {
                best_n = t;
                best = s;
            }
        }
        if (best == UINT32_MAX)
            break;
        const sn_sku *sk = &sc->skus[best];
        json_t *j = json_pack("{s:i, s:i, s:i}", "sku", (int)best, "cancelled", (int)best_n,
                              "own", (int)sk->own);
        json_t *by = json_object();
        for (int f = 1; f < SN_FATE__N; f++) {
            uint32_t *v = &per[(size_t)best * SN_FATE__N + f];
            if (*v)
                json_object_set_new(by, sn_fate_name((sn_fate)f), json_integer(*v));
            *v = 0;
        }
        json_object_set_new(j, "by", by);
        if (sk->offer >= 0) {
            const sn_offer *o = &sc->offers[sk->offer];
            json_object_set_new(j, "supplier_real_at_start", json_integer(o->real0[sk->spec]));
            json_object_set_new(j, "inflating_supplier", json_boolean(sc->inflating[o->supplier]));
            for (uint32_t i = 0; i < sc->n_events; i++) {
                const sn_event *e = &sc->events[i];
                if (e->kind == SN_EV_LINK && e->a == (uint32_t)sk->offer &&
                    (e->action == SN_LINK_OFFLINE || e->spec == sk->spec)) {
                    static const char *const act[SN_LINK__N] = {"spec_removed", "price", "offline"};
                    json_object_set_new(j, "link_change", json_string(act[e->action]));
                    json_object_set_new(j, "link_change_min",
                                        json_real((double)e->t_ms / SN_MINUTE_MS));
                }
            }
        }
        json_array_append_new(top, j);
    }
    free(per);
    return json_pack("{s:{s:I, s:I}, s:{s:I, s:I}, s:{s:I, s:I}, s:o}",
                     "peak", "yes", (json_int_t)win_yes[0], "cancelled", (json_int_t)win[0],
                     "inflation_outside_peak", "yes", (json_int_t)win_yes[1], "cancelled",
                     (json_int_t)win[1], "rest", "yes", (json_int_t)win_yes[2], "cancelled",
                     (json_int_t)win[2], "top_skus", top);
}

uint64_t sn_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sn_sku_name(const sn_ctx *c, uint32_t sku, char *buf, size_t len)
{
    snprintf(buf, len, "sn%s-%" PRIu32, c->nonce, sku);
}

void sn_order_name(const sn_ctx *c, uint32_t order_no, char *buf, size_t len)
{
    snprintf(buf, len, "sn%s-o%" PRIu32, c->nonce, order_no);
}

void sn_out_order_id(const sn_ctx *c, uint32_t order_no, uint32_t line, char *buf, size_t len)
{
    if (line == 0)
        sn_order_name(c, order_no, buf, len);
    else
        snprintf(buf, len, "sn%s-o%" PRIu32 "#%" PRIu32, c->nonce, order_no, line);
}

void sn_note_refused(sn_ctx *c, const char *code, const char *reason)
{
    char key[32];
    if (reason != NULL && reason[0] != '\0')
        snprintf(key, sizeof key, "%s: %s", code, reason);
    else
        snprintf(key, sizeof key, "%s", code);
    for (int i = 0; i < SN_REFUSED_CODES; i++) {
        if (c->refused_code[i][0] == '\0' || i == SN_REFUSED_CODES - 1) {
            if (c->refused_code[i][0] == '\0')
                snprintf(c->refused_code[i], sizeof c->refused_code[i], "%s", key);
            else if (strcmp(c->refused_code[i], key) != 0)
                snprintf(c->refused_code[i], sizeof c->refused_code[i], "other");
            c->refused_n[i]++;
            return;
        }
        if (strcmp(c->refused_code[i], key) == 0) {
            c->refused_n[i]++;
            return;
        }
    }
}

sn_fate sn_fate_of_code(const char *code)
{
    if (strstr(code, "500_004") || strstr(code, "500_005") || strstr(code, "500_006"))
        return SN_FATE_SUP_SHORT;
    if (strstr(code, "500_001") || strstr(code, "500_003") || strstr(code, "mapping") ||
        strstr(code, "closed"))
        return SN_FATE_LINK;
    return SN_FATE_API;
}

int sn_truth_lines(sn_ctx *c, const sn_event *ev, int64_t *orderable)
{
    for (uint32_t i = 0; i < ev->n_lines; i++) {
        const sn_sku *s = &c->sc->skus[ev->line_sku[i]];
        orderable[i] = 0;
        if (s->offer < 0)
            continue;
        const sn_offer *o = &c->sc->offers[s->offer];
        char spec[72];
        sn_spec_id(o, s->spec, spec, sizeof spec);
        orderable[i] = sn_fake_orderable(c->fake, o->offer_id, spec);
        if (orderable[i] < 0)
            return -1;
    }
    return 0;
}

void sn_print_stockd_flags(const sn_opts *so)
{
    /* stockd's defaults (sync 5 min, validation 30 min, upstream lag 5 min,
     * 20 calls/s, purchase backoff up to 60 s) on the compressed clock, and
     * the test clock, which the night moves (sn_stockd.c). */
    double k = so->minute_ms / 60000.0;
    unsigned rate = (unsigned)ceil(20.0 / k);
    printf("--supplier-sync-ms %.0f --supplier-validate-ms %.0f --supplier-upstream-lag-ms %.0f "
           "--supplier-rate-per-s %u --supplier-purchase-backoff-max-ms %.0f --test-clock yes\n",
           fmax(100, 300000 * k), fmax(100, 1800000 * k), 300000 * k,
           rate > 100000 ? 100000 : rate, fmax(100, 60000 * k));
}

/* ---- fake1688 at simulated 0 -------------------------------------------- */

static json_t *catalogue_json(const sn_scenario *sc)
{
    json_t *products = json_array();
    for (uint32_t i = 0; i < sc->n_offers; i++) {
        const sn_offer *o = &sc->offers[i];
        json_t *skus = json_array();
        for (uint32_t k = 0; k < o->n_specs; k++) {
            char spec[72];
            sn_spec_id(o, k, spec, sizeof spec);
            json_array_append_new(skus, json_pack("{s:I, s:s, s:I, s:i}", "sku_id",
                                                  (json_int_t)sn_sku_id(o, k), "spec_id", spec,
                                                  "price_fen", (json_int_t)o->price_fen[k],
                                                  "real", (int)o->real0[k]));
        }
        char sup[32];
        snprintf(sup, sizeof sup, "sn-sup-%" PRIu32, o->supplier);
        json_array_append_new(products, json_pack("{s:I, s:s, s:s, s:o}", "offer_id",
                                                  (json_int_t)o->offer_id, "subject",
                                                  "sales night item", "supplier", sup, "skus",
                                                  skus));
    }
    return json_pack("{s:o}", "products", products);
}

static int prepare_fake(sn_ctx *c, char *err, size_t err_len)
{
    sn_fake *f = c->fake;
    /* Not idempotent: a second create for one outOrderId makes a second
     * order, so the duplicate count catches a client that buys twice. */
    if (sn_fake_ctl(f, "POST", "/reset", json_object(), NULL) != 0 ||
        sn_fake_ctl(f, "POST", "/config",
                    json_pack("{s:I, s:b, s:i, s:i}", "lag_ms", (json_int_t)c->sc->p.lag_ms,
                              "idempotent", 0, "latency_ms", 0, "latency_jitter_ms", 0),
                    NULL) != 0 ||
        /* keyed: a call's fault is drawn from the call itself, not from the
         * order calls arrive in (stockd has several out at once). */
        sn_fake_ctl(f, "POST", "/faults",
                    json_pack("{s:b, s:I, s:b}", "clear", 1, "seed",
                              (json_int_t)(c->o->seed & 0x7fffffffffffULL), "keyed", 1),
                    NULL) != 0 ||
        sn_fake_clock(f, 0) != 0 ||
        sn_fake_ctl(f, "POST", "/catalogue", catalogue_json(c->sc), NULL) != 0) {
        snprintf(err, err_len, "%s", f->err);
        return -1;
    }
    return 0;
}

/* One supplier-side event. Failures are counted, not fatal: a restock of a
 * spec that was removed earlier in the night is refused, as it should be. */
static int apply_event(sn_ctx *c, const sn_event *e)
{
    const sn_scenario *sc = c->sc;
    sn_fake *f = c->fake;
    char spec[72];
    switch (e->kind) {
    case SN_EV_STOCK: {
        const sn_offer *o = &sc->offers[sc->skus[e->a].offer];
        sn_spec_id(o, e->spec, spec, sizeof spec);
        return sn_fake_ctl(f, "POST", "/stock", json_pack("{s:I, s:s, s:i}", "offer_id",
                                                          (json_int_t)o->offer_id, "spec_id",
                                                          spec, "delta", (int)e->delta), NULL);
    }
    case SN_EV_LINK: {
        const sn_offer *o = &sc->offers[e->a];
        sn_spec_id(o, e->spec, spec, sizeof spec);
        json_t *b = json_pack("{s:I}", "offer_id", (json_int_t)o->offer_id);
        if (e->action == SN_LINK_SPEC_REMOVED) {
            json_object_set_new(b, "action", json_string("spec_removed"));
            json_object_set_new(b, "spec_id", json_string(spec));
        } else if (e->action == SN_LINK_PRICE) {
            json_object_set_new(b, "action", json_string("price"));
            json_object_set_new(b, "spec_id", json_string(spec));
            json_object_set_new(b, "price_fen", json_integer(o->price_fen[e->spec] * 13 / 10));
            c->price_changed[e->a] = true;
        } else {
            json_object_set_new(b, "action", json_string("offline"));
        }
        return sn_fake_ctl(f, "POST", "/link", b, NULL);
    }
    case SN_EV_INFLATE: {
        int rc = 0;
        for (uint32_t i = 0; i < sc->n_offers; i++) {
            const sn_offer *o = &sc->offers[i];
            if (o->supplier != e->a)
                continue;
            for (uint32_t k = 0; k < o->n_specs; k++) {
                sn_spec_id(o, k, spec, sizeof spec);
                json_t *b = json_pack("{s:I, s:s}", "offer_id", (json_int_t)o->offer_id,
                                      "spec_id", spec);
                json_object_set_new(b, "inflation",
                                    e->action ? json_real(sc->p.inflation) : json_null());
                rc |= sn_fake_ctl(f, "POST", "/stock", b, NULL);
            }
        }
        return rc;
    }
    case SN_EV_PEAK:
        if (e->action)
            return sn_fake_ctl(f, "POST", "/config",
                               json_pack("{s:i, s:i}", "latency_ms", SN_PEAK_LATENCY_MS,
                                         "latency_jitter_ms", SN_PEAK_JITTER_MS), NULL) |
                   sn_fake_ctl(f, "POST", "/faults",
                               json_pack("{s:{s:f}}", "rates", "qos", SN_PEAK_QOS_RATE), NULL);
        return sn_fake_ctl(f, "POST", "/config",
                           json_pack("{s:i, s:i}", "latency_ms", 0, "latency_jitter_ms", 0),
                           NULL) |
               sn_fake_ctl(f, "POST", "/faults", json_pack("{s:b}", "clear", 1), NULL);
    default:
        return -1;
    }
}

/* Supplier units really orderable per SKU at the end of the night. */
static int end_truth(sn_ctx *c, int64_t *orderable)
{
    const sn_scenario *sc = c->sc;
    memset(orderable, 0, sc->n_skus * sizeof *orderable);
    for (uint32_t i = 0; i < sc->n_offers; i++) {
        const sn_offer *o = &sc->offers[i];
        for (uint32_t k = 0; k < o->n_specs; k++) {
            char spec[72];
            sn_spec_id(o, k, spec, sizeof spec);
            int64_t v = sn_fake_orderable(c->fake, o->offer_id, spec);
            if (v < 0)
                return -1;
            orderable[o->sku[k]] = v;
        }
    }
    return 0;
}

static void pace(uint64_t wall0_ns, double minute_ms, int64_t t_ms)
{
    uint64_t due = wall0_ns + (uint64_t)((double)t_ms * minute_ms / 60000.0 * 1e6);
    uint64_t now = sn_mono_ns();
    if (due > now) {
        struct timespec ts = {.tv_sec = (time_t)((due - now) / 1000000000u),
                              .tv_nsec = (long)((due - now) % 1000000000u)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}

static const sn_system *system_by_name(const char *name)
{
    static const sn_system *const all[] = {&sn_sys_naive, &sn_sys_seed, &sn_sys_stockd,
                                           &sn_sys_stockd_checked};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

static int run_system(sn_ctx *c, const sn_system *sys, sn_result *res, char *err, size_t err_len)
{
    const sn_scenario *sc = c->sc;
    snprintf(res->name, sizeof res->name, "%s", sys->name);
    snprintf(c->name, sizeof c->name, "%s", sys->name);
    hist_reset(&c->hist);
    c->answers = 0;
    c->note[0] = '\0';
    c->now_ms = 0;
    c->test_clock = false;
    c->clock_unsettled = 0;
    memset(c->refused_code, 0, sizeof c->refused_code);
    memset(c->refused_n, 0, sizeof c->refused_n);
    memset(c->price_changed, 0, sc->n_offers * sizeof *c->price_changed);
    if (prepare_fake(c, err, err_len) != 0)
        return -1;
    void *st = NULL;
    int orc = sys->open(c, &st, err, err_len);
    if (orc == 1) {
        snprintf(res->note, sizeof res->note, "%s", c->note);
        printf("%s: not run: %s\n", sys->name, c->note);
        return 0;
    }
    if (orc != 0)
        return -1;
    uint64_t wall0 = sn_mono_ns();
    c->wall0_unix_ms = unix_ms();
    int64_t clock_at = 0;
    uint32_t shown_min = 0;
    int rc = 0;
    for (uint32_t i = 0; i < sc->n_events && rc == 0; i++) {
        const sn_event *e = &sc->events[i];
        pace(wall0, c->so->minute_ms, e->t_ms);
        c->now_ms = e->t_ms;
        /* The fake's clock moves in steps of at least 100 simulated ms: the
         * lag is minutes, and a control call per event would add up. */
        if (e->t_ms - clock_at >= 100 && sn_fake_clock(c->fake, e->t_ms) == 0)
            clock_at = e->t_ms;
        if (sys->tick && (rc = sys->tick(c, st)) != 0)
            break;
        if (e->kind == SN_EV_ORDER)
            rc = sys->order(c, st, e);
        else if (apply_event(c, e) != 0)
            res->event_errors++;
        uint32_t m = (uint32_t)(e->t_ms / SN_MINUTE_MS);
        if (m >= shown_min + 10) {
            shown_min = m - m % 10;
            fprintf(stderr, "salesnight %s: minute %" PRIu32 "/%" PRIu32 ", %.1f s wall\n",
                    sys->name, shown_min, sc->p.minutes, (double)(sn_mono_ns() - wall0) / 1e9);
        }
    }
    if (rc == 0) {
        pace(wall0, c->so->minute_ms, sc->end_ms);
        c->now_ms = sc->end_ms;
        sn_fake_clock(c->fake, sc->end_ms);
        if (sys->tick)
            rc = sys->tick(c, st);
    }
    res->wall_s = (double)(sn_mono_ns() - wall0) / 1e9;
    if (rc == 0)
        rc = sys->finish(c, st);
    if (rc != 0)
        snprintf(err, err_len, "%s: %s", sys->name, c->note[0] ? c->note : "failed");
    int64_t *orderable = calloc(sc->n_skus, sizeof *orderable);
    int64_t dup = rc == 0 ? sn_fake_duplicates(c->fake) : -1;
    if (rc == 0 && (orderable == NULL || end_truth(c, orderable) != 0 || dup < 0)) {
        snprintf(err, err_len, "%s: end of night: %s", sys->name, c->fake->err);
        rc = -1;
    }
    if (rc == 0) {
        sn_acct_end(c->acct, orderable);
        sn_acct_duplicates(c->acct, (uint64_t)dup);
        sn_acct_summary(c->acct, &res->s);
        res->ran = true;
        res->p50_us = hist_quantile(&c->hist, 0.5);
        res->p99_us = hist_quantile(&c->hist, 0.99);
        res->max_us = hist_quantile(&c->hist, 1.0);
        res->answers_per_s = res->wall_s > 0 ? (double)c->answers / res->wall_s : 0;
        res->why = why_json(c->acct);
        res->test_clock = c->test_clock;
        res->clock_unsettled = c->clock_unsettled;
        if (c->clock_unsettled)
            fprintf(stderr, "salesnight %s: %" PRIu64 " test.clock answers said stockd had not "
                    "settled: this night may not replay exactly\n", sys->name, c->clock_unsettled);
        res->refused_by = json_object();
        for (int i = 0; i < SN_REFUSED_CODES && c->refused_code[i][0]; i++)
            json_object_set_new(res->refused_by, c->refused_code[i],
                                json_integer((json_int_t)c->refused_n[i]));
        res->minutes = malloc((sc->p.minutes + 1u) * sizeof *res->minutes);
        if (res->minutes)
            memcpy(res->minutes, c->acct->minutes, (sc->p.minutes + 1u) * sizeof *res->minutes);
    }
    free(orderable);
    sys->close(c, st);
    return rc;
}

/* ---- output --------------------------------------------------------------- */

static void print_table(const sn_result *r, unsigned n)
{
    printf("\n%-15s %6s %6s %6s %9s %-17s %10s %7s %8s %11s %4s %9s %8s\n", "system", "orders",
           "yes", "no", "oversell", "(own/sup/link/api)", "undersell", "unsold", "alerts",
           "detect min", "dup", "answers/s", "p99 ms");
    for (unsigned i = 0; i < n; i++) {
        const sn_summary *s = &r[i].s;
        if (!r[i].ran) {
            printf("%-15s not available: %s\n", r[i].name, r[i].note);
            continue;
        }
        char fates[40], det[24];
        snprintf(fates, sizeof fates, "%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64,
                 s->by_fate[SN_FATE_OWN_SHORT], s->by_fate[SN_FATE_SUP_SHORT],
                 s->by_fate[SN_FATE_LINK], s->by_fate[SN_FATE_API]);
        if (s->links_detected)
            snprintf(det, sizeof det, "%.1f/%.1f %u/%u", s->detect_mean_min, s->detect_max_min,
                     s->links_detected, s->links);
        else
            snprintf(det, sizeof det, "never 0/%u", s->links);
        printf("%-15s %6" PRIu64 " %6" PRIu64 " %6" PRIu64 " %8.1f‰ %-17s %9.1f‰ %7" PRIu64
               " %7.1f‰ %11s %4" PRIu64 " %9.1f %8.2f\n",
               r[i].name, s->orders, s->yes, s->no, s->oversell_pm, fates, s->undersell_pm,
               s->unsold_wanted, s->alerts_pm, det, s->duplicates, r[i].answers_per_s,
               (double)r[i].p99_us / 1000.0);
    }
}

static int write_json(const char *path, const bench_opts *o, const sn_opts *so,
                      const sn_scenario *sc, const sn_result *r, unsigned n)
{
    json_t *systems = json_object(), *order = json_array();
    for (unsigned i = 0; i < n; i++) {
        json_array_append_new(order, json_string(r[i].name));
        if (!r[i].ran) {
            json_object_set_new(systems, r[i].name,
                                json_pack("{s:b, s:s}", "available", 0, "note", r[i].note));
            continue;
        }
        const sn_summary *s = &r[i].s;
        json_t *fates = json_object(), *mins = json_array();
        for (int f = 1; f < SN_FATE__N; f++)
            json_object_set_new(fates, sn_fate_name((sn_fate)f), json_integer((json_int_t)s->by_fate[f]));
        for (uint32_t m = 0; r[i].minutes && m < sc->p.minutes; m++) {
            const sn_minute *x = &r[i].minutes[m];
            json_array_append_new(mins, json_pack("[i, i, i, i, i]", (int)m, (int)x->yes,
                                                  (int)x->no, (int)x->oversold, (int)x->undersold));
        }
        json_t *j = json_pack(
            "{s:b, s:I, s:I, s:I, s:I, s:I, s:f, s:o, s:I, s:f, s:I, s:I, s:f, s:I, s:I, s:I, "
            "s:i, s:i, s:f, s:f, s:f, s:f, s:{s:I, s:I, s:I}, s:I, s:o}",
            "available", 1, "orders", (json_int_t)s->orders, "yes", (json_int_t)s->yes, "no",
            (json_int_t)s->no, "refused_for_errors", (json_int_t)s->errors, "oversold",
            (json_int_t)s->oversold, "oversell_per_1000_yes", s->oversell_pm, "cancelled_by",
            fates, "undersold", (json_int_t)s->undersold, "undersell_per_1000_no",
            s->undersell_pm, "unsold_units_wanted", (json_int_t)s->unsold_wanted, "alerts",
            (json_int_t)s->alerts, "alerts_per_1000_orders", s->alerts_pm,
            "bought_at_changed_price", (json_int_t)s->bought_changed_price,
            "bought_for_cancelled_units", (json_int_t)s->bought_for_cancelled,
            "duplicate_purchases", (json_int_t)s->duplicates, "links", (int)s->links,
            "links_detected", (int)s->links_detected, "detect_mean_min", s->detect_mean_min,
            "detect_max_min", s->detect_max_min, "answers_per_s", r[i].answers_per_s, "wall_s",
            r[i].wall_s, "latency_us", "p50", (json_int_t)r[i].p50_us, "p99",
            (json_int_t)r[i].p99_us, "max", (json_int_t)r[i].max_us, "supplier_event_errors",
            (json_int_t)r[i].event_errors, "minutes", mins);
        if (r[i].why)
            json_object_set(j, "why", r[i].why);
        if (r[i].refused_by)
            json_object_set(j, "refused_by", r[i].refused_by);
        json_object_set_new(j, "order_prefix", json_string(r[i].order_prefix));
        if (strncmp(r[i].name, "stockd", 6) == 0) {
            json_object_set_new(j, "test_clock", json_boolean(r[i].test_clock));
            json_object_set_new(j, "clock_unsettled", json_integer((json_int_t)r[i].clock_unsettled));
        }
        json_object_set_new(systems, r[i].name, j);
    }
    char digest[24];
    snprintf(digest, sizeof digest, "%016" PRIx64, sn_scenario_digest(sc));
    uint32_t links[SN_LINK__N] = {0};
    for (uint32_t i = 0; i < sc->n_events; i++)
        if (sc->events[i].kind == SN_EV_LINK)
            links[sc->events[i].action]++;
    uint32_t n_infl = 0;
    for (uint32_t k = 0; k < sc->n_suppliers; k++)
        n_infl += sc->inflating[k];
    json_t *root = json_pack(
        "{s:{s:I, s:i, s:i, s:f, s:f, s:i, s:i, s:f, s:i, s:f, s:I, s:i, s:i, s:i, s:i, s:i, "
        "s:{s:i, s:i, s:i}, s:s, s:f, s:f, s:i}, s:o, s:o}",
        "night", "seed", (json_int_t)o->seed, "skus", (int)sc->n_skus, "minutes",
        (int)sc->p.minutes, "minute_ms", so->minute_ms, "orders_per_min", sc->p.orders_per_min,
        "flash_at_min", (int)sc->p.flash_at_min, "flash_min", (int)sc->p.flash_min, "flash_mult",
        sc->p.flash_mult, "flash_skus", (int)sc->p.flash_skus, "inflation", sc->p.inflation,
        "lag_ms", (json_int_t)sc->p.lag_ms, "offers", (int)sc->n_offers, "suppliers",
        (int)sc->n_suppliers, "inflating_suppliers", (int)n_infl, "orders", (int)sc->n_orders,
        "events", (int)sc->n_events, "links", "spec_removed", (int)links[SN_LINK_SPEC_REMOVED],
        "price", (int)links[SN_LINK_PRICE], "offline", (int)links[SN_LINK_OFFLINE], "digest",
        digest, "peak_latency_ms", (double)SN_PEAK_LATENCY_MS + SN_PEAK_JITTER_MS / 2.0,
        "peak_qos_rate", SN_PEAK_QOS_RATE, "zipf_x100", (int)lround(sc->p.zipf_s * 100),
        "order", order, "systems", systems);
    int rc = json_dump_file(root, path, JSON_INDENT(1)) == 0 ? 0 : -1;
    json_decref(root);
    if (rc != 0)
        fprintf(stderr, "stockbench: cannot write %s\n", path);
    return rc;
}

/* Two panels over simulated minutes: cumulative oversell per 1,000 yes and
 * cumulative undersell per 1,000 no, one line per system. */
static int write_plot(const char *png, const sn_scenario *sc, const sn_result *r, unsigned n)
{
    char base[4096], dat[4200], gp[4200], log[4200];
    snprintf(base, sizeof base, "%s", png);
    size_t bl = strlen(base);
    if (bl > 4 && strcmp(base + bl - 4, ".png") == 0)
        base[bl - 4] = '\0';
    if (strchr(base, '\'') != NULL) {
        fprintf(stderr, "stockbench: --plot path must not contain a quote\n");
        return -1;
    }
    snprintf(dat, sizeof dat, "%s.dat", base);
    snprintf(gp, sizeof gp, "%s.gp", base);
    snprintf(log, sizeof log, "%s.gp.log", base);
    FILE *f = fopen(dat, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "minute");
    unsigned cols = 0;
    for (unsigned i = 0; i < n; i++)
        if (r[i].ran && r[i].minutes) {
            fprintf(f, " %s_over %s_under", r[i].name, r[i].name);
            cols++;
        }
    fprintf(f, "\n");
    uint64_t yes[SN_SYSTEMS_MAX] = {0}, no[SN_SYSTEMS_MAX] = {0}, ov[SN_SYSTEMS_MAX] = {0},
             un[SN_SYSTEMS_MAX] = {0};
    for (uint32_t m = 0; m < sc->p.minutes; m++) {
        fprintf(f, "%" PRIu32, m + 1);
        for (unsigned i = 0; i < n; i++) {
            if (!r[i].ran || !r[i].minutes)
                continue;
            const sn_minute *x = &r[i].minutes[m];
            yes[i] += x->yes;
            no[i] += x->no;
            ov[i] += x->oversold;
            un[i] += x->undersold;
            fprintf(f, " %.2f %.2f", yes[i] ? 1000.0 * (double)ov[i] / (double)yes[i] : 0.0,
                    no[i] ? 1000.0 * (double)un[i] / (double)no[i] : 0.0);
        }
        fprintf(f, "\n");
    }
    fclose(f);
    if (cols == 0)
        return 0;
    f = fopen(gp, "w");
    if (f == NULL)
        return -1;
    double f0 = (double)sc->p.flash_at_min, f1 = f0 + sc->p.flash_min;
    fprintf(f,
            "set terminal pngcairo size 1400,560 font 'sans,10' noenhanced\n"
            "set output '%s'\n"
            "set multiplot layout 1,2 title 'sales night (seed %" PRIu64 ", %u SKUs, %u simulated "
            "minutes; shaded: flash sale)'\n"
            "set key autotitle columnheader top left\nset grid\n"
            "set xlabel 'simulated minute'\n"
            "set object 1 rect from %.0f, graph 0 to %.0f, graph 1 fc rgb '#eeeeee' behind\n"
            "set title 'customer-visible oversell, cumulative (per 1,000 yes)'\n"
            "plot for [i=0:%u] '%s' using 1:(column(2+2*i)) with lines lw 2 "
            "title columnhead(2+2*i)\n"
            "set title 'undersell, cumulative (per 1,000 no)'\n"
            "plot for [i=0:%u] '%s' using 1:(column(3+2*i)) with lines lw 2 "
            "title columnhead(3+2*i)\n"
            "unset multiplot\n",
            png, sc->p.seed, sc->n_skus, sc->p.minutes, f0, f1, cols - 1, dat, cols - 1, dat);
    fclose(f);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    char *argv[] = {"gnuplot", gp, NULL};
    int src = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (src != 0) {
        fprintf(stderr, "stockbench: cannot run gnuplot (apt-get install gnuplot-nox)\n");
        return -1;
    }
    int stw = 0;
    while (waitpid(pid, &stw, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(stw) || WEXITSTATUS(stw) != 0) {
        fprintf(stderr, "stockbench: gnuplot failed on %s (see %s)\n", gp, log);
        return -1;
    }
    return 0;
}

int sn_main(const bench_opts *o, const sn_opts *so)
{
    sn_params p;
    sn_params_default(&p, o->skus, so->minutes, o->seed);
    p.orders_per_min = so->orders_per_min;
    sn_scenario sc;
    char err[512];
    if (sn_scenario_build(&p, &sc, err, sizeof err) != 0) {
        fprintf(stderr, "stockbench: %s\n", err);
        return 2;
    }
    printf("salesnight: seed %" PRIu64 ", %u SKUs (%u offers, %u suppliers), %u simulated "
           "minutes at %.0f ms each, %u orders, %u events, %u link changes, digest %016" PRIx64 "\n",
           o->seed, sc.n_skus, sc.n_offers, sc.n_suppliers, sc.p.minutes, so->minute_ms,
           sc.n_orders, sc.n_events, sc.n_links, sn_scenario_digest(&sc));
    fflush(stdout);
    sn_fake fake;
    if (sn_fake_open(&fake, so->fake_url, so->app_key, so->app_secret, so->token, err,
                     sizeof err) != 0) {
        fprintf(stderr, "stockbench: %s\n", err);
        sn_scenario_free(&sc);
        return 3;
    }
    sn_ctx c = {.o = o, .so = so, .sc = &sc, .fake = &fake};
    c.price_changed = calloc(sc.n_offers + 1u, sizeof *c.price_changed);
    c.link_of_offer = malloc((sc.n_offers + 1u) * sizeof *c.link_of_offer);
    sn_result *res = calloc(so->n_systems, sizeof *res);
    if (!c.price_changed || !c.link_of_offer || !res) {
        fprintf(stderr, "stockbench: out of memory\n");
        return 3;
    }
    for (uint32_t i = 0; i < sc.n_offers; i++)
        c.link_of_offer[i] = -1;
    for (uint32_t i = 0; i < sc.n_events; i++)
        if (sc.events[i].kind == SN_EV_LINK)
            c.link_of_offer[sc.events[i].a] = (int32_t)sc.events[i].no;
    int exit_rc = 0;
    uint64_t nonce_base = (uint64_t)unix_ms() ^ ((uint64_t)getpid() << 40);
    for (unsigned i = 0; i < so->n_systems; i++) {
        const sn_system *sys = system_by_name(so->systems[i]);
        sn_acct acct;
        snprintf(c.nonce, sizeof c.nonce, "%" PRIx64, (uint64_t)((nonce_base + i) & 0xffffffffffULL));
        snprintf(res[i].order_prefix, sizeof res[i].order_prefix, "sn%s-", c.nonce);
        if (sys == NULL || sn_acct_init(&acct, &sc) != 0) {
            fprintf(stderr, "stockbench: %s: cannot run\n", so->systems[i]);
            exit_rc = 3;
            continue;
        }
        c.acct = &acct;
        printf("salesnight %s: playing the night\n", sys->name);
        fflush(stdout);
        if (run_system(&c, sys, &res[i], err, sizeof err) != 0) {
            fprintf(stderr, "stockbench: salesnight %s\n", err);
            snprintf(res[i].note, sizeof res[i].note, "failed: %s", err);
            exit_rc = 3;
        }
        sn_acct_free(&acct);
    }
    print_table(res, so->n_systems);
    if (o->json_path && write_json(o->json_path, o, so, &sc, res, so->n_systems) != 0 && !exit_rc)
        exit_rc = 3;
    if (o->plot_path && write_plot(o->plot_path, &sc, res, so->n_systems) != 0 && !exit_rc)
        exit_rc = 3;
    for (unsigned i = 0; i < so->n_systems; i++) {
        free(res[i].minutes);
        json_decref(res[i].why);
        json_decref(res[i].refused_by);
    }
    free(res);
    free(c.price_changed);
    free(c.link_of_offer);
    sn_fake_close(&fake);
    sn_scenario_free(&sc);
    return exit_rc;
}
