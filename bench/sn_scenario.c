/* sn_scenario.c — the sales night, generated from a seed. Pure: no I/O, no
 * clock; the same params give the same night (see sn_scenario_digest). The
 * zipf table uses libm's pow(), so two different C libraries could in
 * principle round one draw differently; one build always agrees with itself. */
#include "sn.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64, as stockbench's bench_rand: small and well mixed. */
uint64_t sn_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rand01(uint64_t *st)
{
    return (double)(sn_rand(st) >> 11) / 9007199254740992.0;   /* [0, 1) */
}

static uint32_t rand_below(uint64_t *st, uint32_t n)
{
    assert(n > 0);
    return (uint32_t)(sn_rand(st) % n);
}

void sn_params_default(sn_params *p, uint32_t skus, uint32_t minutes, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->seed = seed;
    p->skus = skus;
    p->minutes = minutes;
    p->orders_per_min = 25;
    p->zipf_s = 0.9;
    p->flash_at_min = minutes / 3;
    p->flash_min = minutes / 10 < 1 ? 1 : minutes / 10 > 10 ? 10 : minutes / 10;
    p->flash_mult = 6;
    p->flash_skus = skus / 100 < 3 ? 3 : skus / 100;
    p->inflation = 5;
    p->lag_ms = 2 * SN_MINUTE_MS;
    p->links = skus / 200 < 3 ? 3 : skus / 200 > SN_LINKS_MAX ? SN_LINKS_MAX : skus / 200;
}

void sn_spec_id(const sn_offer *o, uint32_t k, char *buf, size_t len)
{
    snprintf(buf, len, "sn%lld-%u", (long long)o->offer_id, k);
}

int64_t sn_sku_id(const sn_offer *o, uint32_t k)
{
    return o->offer_id * 10 + k;
}

typedef struct gen {
    sn_scenario *sc;
    uint64_t rng;
    double *cdf;                     /* zipf over popularity ranks */
    uint32_t *by_rank;               /* rank -> SKU */
    uint32_t *flash;                 /* SKUs on promotion */
    uint32_t cap;
    char *err;
    size_t err_len;
} gen;

static sn_event *ev_new(gen *g, int64_t t_ms, sn_ev_kind kind)
{
    sn_scenario *sc = g->sc;
    if (sc->n_events == g->cap) {
        if (g->cap == SN_EVENTS_MAX)
            return NULL;
        uint32_t cap = g->cap ? g->cap * 2 : 4096;
        cap = cap > SN_EVENTS_MAX ? SN_EVENTS_MAX : cap;
        sn_event *e = realloc(sc->events, (size_t)cap * sizeof *e);
        if (e == NULL)
            return NULL;
        sc->events = e;
        g->cap = cap;
    }
    sn_event *e = &sc->events[sc->n_events];
    memset(e, 0, sizeof *e);
    e->t_ms = t_ms;
    e->kind = (uint8_t)kind;
    e->gen = sc->n_events++;
    return e;
}

static uint32_t pick_popular(gen *g)
{
    double u = rand01(&g->rng);
    uint32_t lo = 0, hi = g->sc->n_skus - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (g->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return g->by_rank[lo];
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* One customer order: 70 % one line, 20 % two, 10 % three, distinct SKUs,
 * 1 unit mostly; during the flash sale half the lines name a promoted SKU. */
static int gen_order(gen *g, int64_t t_ms, bool flash)
{
    sn_event *e = ev_new(g, t_ms, SN_EV_ORDER);
    if (e == NULL)
        return -1;
    double u = rand01(&g->rng);
    uint32_t want = u < 0.7 ? 1 : u < 0.9 ? 2 : 3;
    if (want > g->sc->n_skus)
        want = g->sc->n_skus;
    uint32_t n = 0;
    for (uint32_t tries = 0; n < want && tries < 32; tries++) {
        uint32_t sku = flash && rand01(&g->rng) < 0.5
                           ? g->flash[rand_below(&g->rng, g->sc->p.flash_skus)]
                           : pick_popular(g);
        bool dup = false;
        for (uint32_t i = 0; i < n; i++)
            dup = dup || e->line_sku[i] == sku;
        if (!dup)
            e->line_sku[n++] = sku;
    }
    qsort(e->line_sku, n, sizeof e->line_sku[0], cmp_u32);
    for (uint32_t i = 0; i < n; i++) {
        double q = rand01(&g->rng);
        e->line_qty[i] = q < 0.8 ? 1 : q < 0.95 ? 2 : 3;
    }
    e->n_lines = (uint8_t)n;
    return 0;
}

/* A supplier-mapped SKU by popularity: other shops want the same hot items. */
static int32_t pick_supplier_sku(gen *g)
{
    for (int tries = 0; tries < 64; tries++) {
        uint32_t s = pick_popular(g);
        if (g->sc->skus[s].offer >= 0)
            return (int32_t)s;
    }
    return -1;
}

static int gen_skus(gen *g)
{
    sn_scenario *sc = g->sc;
    sc->skus = calloc(sc->n_skus, sizeof *sc->skus);
    sc->offers = calloc(sc->n_skus, sizeof *sc->offers);
    if (sc->skus == NULL || sc->offers == NULL)
        return -1;
    for (uint32_t i = 0; i < sc->n_skus; i++) {
        sn_sku *s = &sc->skus[i];
        double u = rand01(&g->rng);
        s->kind = u < 0.35 ? SN_KIND_OWN : u < 0.7 ? SN_KIND_SUP : SN_KIND_BOTH;
        s->own = s->kind == SN_KIND_OWN ? (int32_t)rand_below(&g->rng, 16)
               : s->kind == SN_KIND_BOTH ? (int32_t)rand_below(&g->rng, 6) : 0;
        s->offer = -1;
    }
    /* Consecutive supplier SKUs share an offer of 1..3 specs. */
    sn_offer *cur = NULL;
    uint32_t room = 0;
    for (uint32_t i = 0; i < sc->n_skus; i++) {
        sn_sku *s = &sc->skus[i];
        if (s->kind == SN_KIND_OWN)
            continue;
        if (room == 0) {
            cur = &sc->offers[sc->n_offers];
            cur->offer_id = 710000000000LL + sc->n_offers;
            sc->n_offers++;
            room = 1 + rand_below(&g->rng, SN_SPECS_PER_OFFER_MAX);
        }
        uint32_t k = cur->n_specs++;
        room--;
        cur->sku[k] = i;
        double u = rand01(&g->rng);
        cur->real0[k] = u < 0.1 ? 0 : u < 0.7 ? (int32_t)rand_below(&g->rng, 21)
                                              : 20 + (int32_t)rand_below(&g->rng, 61);
        cur->price_fen[k] = 500 + (int64_t)rand_below(&g->rng, 10000);
        s->offer = (int32_t)(cur - sc->offers);
        s->spec = (uint8_t)k;
    }
    uint32_t ns = sc->n_offers / 15;
    sc->n_suppliers = ns < 2 ? 2 : ns > SN_SUPPLIERS_MAX ? SN_SUPPLIERS_MAX : ns;
    for (uint32_t i = 0; i < sc->n_offers; i++)
        sc->offers[i].supplier = rand_below(&g->rng, sc->n_suppliers);
    /* About one supplier in seven inflates its figures during the event. */
    uint32_t n_infl = sc->n_suppliers / 7 < 1 ? 1 : sc->n_suppliers / 7;
    for (uint32_t k = 0; k < n_infl; k++)
        sc->inflating[rand_below(&g->rng, sc->n_suppliers)] = true;
    return 0;
}

static int gen_popularity(gen *g)
{
    sn_scenario *sc = g->sc;
    uint32_t n = sc->n_skus;
    g->cdf = malloc(n * sizeof *g->cdf);
    g->by_rank = malloc(n * sizeof *g->by_rank);
    g->flash = malloc(sc->p.flash_skus * sizeof *g->flash);
    if (g->cdf == NULL || g->by_rank == NULL || g->flash == NULL)
        return -1;
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += 1.0 / pow((double)(i + 1), sc->p.zipf_s);
    double acc = 0;
    for (uint32_t i = 0; i < n; i++) {
        acc += 1.0 / pow((double)(i + 1), sc->p.zipf_s) / sum;
        g->cdf[i] = acc;
        g->by_rank[i] = i;
    }
    g->cdf[n - 1] = 1.0;
    for (uint32_t i = n - 1; i > 0; i--) {        /* hotness independent of kind */
        uint32_t j = rand_below(&g->rng, i + 1);
        uint32_t t = g->by_rank[i];
        g->by_rank[i] = g->by_rank[j];
        g->by_rank[j] = t;
    }
    for (uint32_t k = 0; k < sc->p.flash_skus; k++)
        g->flash[k] = rand_below(&g->rng, n);
    return 0;
}

static int gen_links(gen *g)
{
    sn_scenario *sc = g->sc;
    uint32_t n = sc->p.links < sc->n_offers ? sc->p.links : sc->n_offers;
    uint32_t used[SN_LINKS_MAX];
    int64_t lo = sc->end_ms / 10, span = sc->end_ms * 8 / 10;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t offer = 0;
        for (int tries = 0; tries < 64; tries++) {
            offer = rand_below(&g->rng, sc->n_offers);
            bool dup = false;
            for (uint32_t i = 0; i < k; i++)
                dup = dup || used[i] == offer;
            if (!dup)
                break;
        }
        used[k] = offer;
        sn_event *e = ev_new(g, lo + (int64_t)(rand01(&g->rng) * (double)span), SN_EV_LINK);
        if (e == NULL)
            return -1;
        e->a = offer;
        e->action = (uint8_t)(k % SN_LINK__N);
        e->spec = rand_below(&g->rng, sc->offers[offer].n_specs);
    }
    return 0;
}

static int gen_supplier_side(gen *g)
{
    sn_scenario *sc = g->sc;
    const sn_params *p = &sc->p;
    int64_t f0 = (int64_t)p->flash_at_min * SN_MINUTE_MS;
    int64_t f1 = f0 + (int64_t)p->flash_min * SN_MINUTE_MS;
    sc->peak_from_ms = f0;
    sc->peak_to_ms = f1;
    int64_t i0 = f0 - 5 * SN_MINUTE_MS < 0 ? 0 : f0 - 5 * SN_MINUTE_MS;
    int64_t i1 = f1 + 10 * SN_MINUTE_MS;
    for (uint32_t s = 0; s < sc->n_suppliers; s++) {
        if (!sc->inflating[s])
            continue;
        sn_event *on = ev_new(g, i0, SN_EV_INFLATE), *off = on ? ev_new(g, i1, SN_EV_INFLATE) : NULL;
        if (off == NULL)
            return -1;
        on->a = off->a = s;
        on->action = 1;
    }
    sn_event *on = ev_new(g, f0, SN_EV_PEAK), *off = on ? ev_new(g, f1, SN_EV_PEAK) : NULL;
    if (off == NULL)
        return -1;
    on->action = 1;
    if (sc->n_offers == 0)
        return 0;
    /* Other shops buy about half as much as our customers, from the same
     * hot items; now and then a supplier restocks a spec. */
    for (uint32_t m = 0; m < p->minutes; m++) {
        int64_t t0 = (int64_t)m * SN_MINUTE_MS;
        bool flash = t0 >= f0 && t0 < f1;
        double rate = p->orders_per_min * 0.5 * (flash ? p->flash_mult : 1.0) / SN_MINUTE_MS;
        for (double t = (double)t0 - log(1.0 - rand01(&g->rng)) / rate;
             t < (double)(t0 + SN_MINUTE_MS); t -= log(1.0 - rand01(&g->rng)) / rate) {
            int32_t sku = pick_supplier_sku(g);
            if (sku < 0)
                continue;
            sn_event *e = ev_new(g, (int64_t)t, SN_EV_STOCK);
            if (e == NULL)
                return -1;
            e->a = (uint32_t)sku;
            e->spec = sc->skus[sku].spec;
            e->delta = -(1 + (int32_t)rand_below(&g->rng, 3));
        }
        if (rand01(&g->rng) < 0.2) {
            const sn_offer *o = &sc->offers[rand_below(&g->rng, sc->n_offers)];
            uint32_t k = rand_below(&g->rng, o->n_specs);
            sn_event *e = ev_new(g, t0 + (int64_t)(rand01(&g->rng) * SN_MINUTE_MS), SN_EV_STOCK);
            if (e == NULL)
                return -1;
            e->a = o->sku[k];
            e->spec = k;
            e->delta = 10 + (int32_t)rand_below(&g->rng, 31);
        }
    }
    return 0;
}

static int gen_orders(gen *g)
{
    sn_scenario *sc = g->sc;
    const sn_params *p = &sc->p;
    for (uint32_t m = 0; m < p->minutes; m++) {
        int64_t t0 = (int64_t)m * SN_MINUTE_MS;
        bool flash = m >= p->flash_at_min && m < p->flash_at_min + p->flash_min;
        double rate = p->orders_per_min * (flash ? p->flash_mult : 1.0) / SN_MINUTE_MS;
        for (double t = (double)t0 - log(1.0 - rand01(&g->rng)) / rate;
             t < (double)(t0 + SN_MINUTE_MS); t -= log(1.0 - rand01(&g->rng)) / rate) {
            if (gen_order(g, (int64_t)t, flash) != 0)
                return -1;
        }
    }
    return 0;
}

static int cmp_event(const void *a, const void *b)
{
    const sn_event *x = a, *y = b;
    if (x->t_ms != y->t_ms)
        return x->t_ms < y->t_ms ? -1 : 1;
    return x->gen < y->gen ? -1 : x->gen > y->gen;
}

static int check_params(const sn_params *p, char *err, size_t err_len)
{
    const char *why = NULL;
    if (p->skus < 10 || p->skus > SN_SKUS_MAX)
        why = "skus must be 10..100000";
    else if (p->minutes < 1 || p->minutes > SN_MINUTES_MAX)
        why = "minutes must be 1..1440";
    else if (!(p->orders_per_min > 0 && p->orders_per_min <= 100000))
        why = "orders per minute must be in (0, 100000]";
    else if (!(p->zipf_s >= 0 && p->zipf_s <= 5))
        why = "zipf exponent must be 0..5";
    else if (p->flash_skus < 1 || p->flash_skus > p->skus)
        why = "flash SKUs must be 1..skus";
    else if (!(p->flash_mult >= 1 && p->flash_mult <= 100))
        why = "flash multiplier must be 1..100";
    else if (p->links > SN_LINKS_MAX)
        why = "at most 64 link changes";
    else if (!(p->inflation >= 1 && p->inflation <= 100))
        why = "inflation must be 1..100";
    if (why != NULL)
        snprintf(err, err_len, "salesnight: %s", why);
    return why ? -1 : 0;
}

int sn_scenario_build(const sn_params *p, sn_scenario *sc, char *err, size_t err_len)
{
    memset(sc, 0, sizeof *sc);
    if (check_params(p, err, err_len) != 0)
        return -1;
    sc->p = *p;
    sc->n_skus = p->skus;
    sc->end_ms = (int64_t)p->minutes * SN_MINUTE_MS;
    gen g = {.sc = sc, .rng = p->seed ^ 0x5a1e5a1e5a1e5a1eULL, .err = err, .err_len = err_len};
    int rc = gen_skus(&g) == 0 && gen_popularity(&g) == 0 && gen_orders(&g) == 0 &&
             gen_supplier_side(&g) == 0 && gen_links(&g) == 0 ? 0 : -1;
    free(g.cdf);
    free(g.by_rank);
    free(g.flash);
    if (rc != 0) {
        snprintf(err, err_len, "salesnight: out of memory or more than %u events", SN_EVENTS_MAX);
        sn_scenario_free(sc);
        return -1;
    }
    qsort(sc->events, sc->n_events, sizeof *sc->events, cmp_event);
    for (uint32_t i = 0; i < sc->n_events; i++) {
        sn_event *e = &sc->events[i];
        if (e->kind == SN_EV_ORDER)
            e->no = sc->n_orders++;
        else if (e->kind == SN_EV_LINK)
            e->no = sc->n_links++;
    }
    return 0;
}

void sn_scenario_free(sn_scenario *sc)
{
    free(sc->skus);
    free(sc->offers);
    free(sc->events);
    memset(sc, 0, sizeof *sc);
}

static uint64_t fnv(uint64_t h, int64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (uint64_t)v >> (8 * i) & 0xff;
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t sn_scenario_digest(const sn_scenario *sc)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint32_t i = 0; i < sc->n_skus; i++) {
        const sn_sku *s = &sc->skus[i];
        h = fnv(fnv(fnv(fnv(h, s->kind), s->own), s->offer), s->spec);
    }
    for (uint32_t i = 0; i < sc->n_offers; i++) {
        const sn_offer *o = &sc->offers[i];
        h = fnv(fnv(h, o->offer_id), o->supplier);
        for (uint32_t k = 0; k < o->n_specs; k++)
            h = fnv(fnv(fnv(h, o->sku[k]), o->real0[k]), o->price_fen[k]);
    }
    for (uint32_t i = 0; i < sc->n_events; i++) {
        const sn_event *e = &sc->events[i];
        h = fnv(fnv(fnv(fnv(fnv(fnv(h, e->t_ms), e->kind), e->action), e->a), e->spec), e->delta);
        h = fnv(h, e->n_lines);
        for (uint32_t k = 0; k < e->n_lines; k++)
            h = fnv(fnv(h, e->line_sku[k]), e->line_qty[k]);
    }
    return h;
}
