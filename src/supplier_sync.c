/* supplier_sync.c — periodic snapshot sync: product.get per mapped offer,
 * figures into the SKUs' FIFOs (see include/stockd/supplier_sync.h).
 *
 * An offer record lives from the round that found it until its call is
 * answered (or, never started, until the next round rebuilds the list).
 * Its SKU list is the one seen when the round began: a SKU re-mapped or
 * forgotten meanwhile is filtered by engine_supplier_report_for().
 */
#include "stockd/supplier_sync.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <uthash.h>

#include "stockd/log.h"
#include "stockd/supplier.h"

typedef struct so_sku {
    char name[ENG_ID_MAX + 1];
    eng_supplier_map map;
} so_sku;

typedef struct so_offer {
    int64_t offer_id;
    bool in_flight;
    uint64_t round;               /* last round that saw it */
    uint32_t n, cap;
    so_sku *skus;
    struct so_offer *next_pending;
    struct supplier_sync *owner;
    UT_hash_handle hh;
} so_offer;

struct supplier_sync {
    struct event_base *base;
    engine *eng;
    supplier_client *cli;
    struct event *timer;
    void (*kick)(void *);
    void *kick_arg;
    uint32_t concurrency;
    uint32_t sync_ms;
    bool closing;
    so_offer *offers;             /* uthash by offer_id */
    so_offer *pend_head, *pend_tail;
    uint32_t n_offers;
    uint64_t round;
    bool round_open;
    bool logged_this_round;       /* failures are logged once per round */
    int64_t round_start_ms;
    supsync_stats st;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void offer_free(supplier_sync *ss, so_offer *o)
{
    HASH_DEL(ss->offers, o);
    assert(ss->n_offers > 0);
    ss->n_offers--;
    free(o->skus);
    free(o);
}

/* ------------------------------------------------------------ round */

static bool offer_add_sku(so_offer *o, const char *sku, const eng_supplier_map *map)
{
    if (o->n == o->cap) {
        if (o->cap >= SUPSYNC_SKUS_PER_OFFER_MAX)
            return false;
        uint32_t cap = o->cap ? o->cap * 2 : 4;
        if (cap > SUPSYNC_SKUS_PER_OFFER_MAX)
            cap = SUPSYNC_SKUS_PER_OFFER_MAX;
        so_sku *n = realloc(o->skus, cap * sizeof(*n));
        if (n == NULL)
            return false;
        o->skus = n;
        o->cap = cap;
    }
    so_sku *s = &o->skus[o->n++];
    snprintf(s->name, sizeof(s->name), "%s", sku);
    s->map = *map;
    return true;
}

static void collect_sku(const char *sku, void *arg)
{
    supplier_sync *ss = arg;
    eng_supplier_map map;
    if (!engine_sku_supplier(ss->eng, sku, &map) || map.offer_id <= 0)
        return;
    so_offer *o;
    HASH_FIND(hh, ss->offers, &map.offer_id, sizeof(map.offer_id), o);
    if (o != NULL && o->in_flight) {
        /* One call per offer: its running call answers for it. */
        if (o->round != ss->round)
            ss->st.skipped++;
        o->round = ss->round;
        return;
    }
    if (o == NULL) {
        if (ss->n_offers >= SUPSYNC_OFFERS_MAX || (o = calloc(1, sizeof(*o))) == NULL) {
            ss->st.skipped++;
            return;
        }
        o->offer_id = map.offer_id;
        o->owner = ss;
        o->round = ss->round;
        HASH_ADD(hh, ss->offers, offer_id, sizeof(o->offer_id), o);
        ss->n_offers++;
        if (ss->pend_tail)
            ss->pend_tail->next_pending = o;
        else
            ss->pend_head = o;
        ss->pend_tail = o;
    }
    if (!offer_add_sku(o, sku, &map))
        ss->st.skipped++;
}

static void round_maybe_end(supplier_sync *ss)
{
    if (!ss->round_open || ss->pend_head != NULL || ss->st.in_flight > 0)
        return;
    ss->round_open = false;
    ss->st.last_sync_ms = wall_ms();
    ss->st.last_duration_ms = ss->st.last_sync_ms - ss->round_start_ms;
}

static void note_failure(supplier_sync *ss, int64_t offer_id, const supplier_result *r)
{
    ss->st.failed++;
    if (ss->logged_this_round)
        return;
    ss->logged_this_round = true;
    char offer[24];
    snprintf(offer, sizeof(offer), "%lld", (long long)offer_id);
    /* The client redacts the secret and the token from code and message. */
    LOG_W("supplier sync: product.get failed (further failures this round not logged)",
          "offer_id", offer, "outcome", r ? supplier_outcome_name(r->outcome) : "refused",
          "kind", r && r->outcome == SUPPLIER_RETRYABLE ? supplier_kind_name(r->kind) : "",
          "code", r ? r->code : "", "message", r ? r->message : "");
}

/* The figure for one mapped SKU from an ok answer. A spec missing from the
 * answer or an offline product gives 0 for now; the "broken mapping" state
 * (stop selling, alert support) is a later slice of issue 4. */
static int64_t figure_for(const supplier_product *p, const eng_supplier_map *m)
{
    if (!p->published || !p->support_online_trade)
        return 0;
    for (size_t i = 0; i < p->n_skus; i++) {
        const supplier_sku *k = &p->skus[i];
        bool hit = (m->spec_id[0] != '\0' && strcmp(k->spec_id, m->spec_id) == 0) ||
                   (m->sku_id != 0 && k->sku_id == m->sku_id);
        if (hit)
            return k->amount_on_sale < ENG_STOCK_MAX ? k->amount_on_sale : ENG_STOCK_MAX;
    }
    if (p->n_skus == 0 && p->amount_on_sale >= 0)  /* an offer without specs */
        return p->amount_on_sale < ENG_STOCK_MAX ? p->amount_on_sale : ENG_STOCK_MAX;
    return 0;
}

static void start_calls(supplier_sync *ss);

static void apply_product(supplier_sync *ss, const so_offer *o, const supplier_product *p)
{
    int64_t now = wall_ms();
    uint32_t queued = 0;
    for (uint32_t i = 0; i < o->n; i++) {
        int64_t fig = figure_for(p, &o->skus[i].map);
        /* false: the SKU left memory meanwhile (forgotten, taken over). */
        if (engine_supplier_report_for(ss->eng, o->skus[i].name, &o->skus[i].map, fig, now))
            queued++;
    }
    ss->st.reports += queued;
    if (queued > 0 && ss->kick)
        ss->kick(ss->kick_arg);
}

static void product_done(const supplier_reply *reply, void *arg)
{
    so_offer *o = arg;
    supplier_sync *ss = o->owner;
    assert(o->in_flight && ss->st.in_flight > 0);
    o->in_flight = false;
    ss->st.in_flight--;
    if (ss->closing)
        return;  /* supsync_free frees every offer */
    if (reply->res.outcome == SUPPLIER_OK) {
        ss->st.ok++;
        apply_product(ss, o, &reply->u.product);
    } else {
        note_failure(ss, o->offer_id, &reply->res);
    }
    offer_free(ss, o);
    start_calls(ss);
    round_maybe_end(ss);
}

static void start_calls(supplier_sync *ss)
{
    while (ss->pend_head != NULL && ss->st.in_flight < ss->concurrency && !ss->closing) {
        so_offer *o = ss->pend_head;
        ss->pend_head = o->next_pending;
        if (ss->pend_head == NULL)
            ss->pend_tail = NULL;
        o->next_pending = NULL;
        if (supplier_product_get(ss->cli, o->offer_id, product_done, o) != 0) {
            note_failure(ss, o->offer_id, NULL);
            offer_free(ss, o);
            continue;
        }
        o->in_flight = true;
        ss->st.in_flight++;
        ss->st.calls++;
    }
}

static void round_start(supplier_sync *ss)
{
    /* Offers not started last round are rebuilt from the engine now. */
    so_offer *o, *tmp;
    HASH_ITER(hh, ss->offers, o, tmp) {
        if (!o->in_flight)
            offer_free(ss, o);
    }
    ss->pend_head = ss->pend_tail = NULL;
    ss->round++;
    ss->st.syncs++;
    ss->round_open = true;
    ss->logged_this_round = false;
    ss->round_start_ms = wall_ms();
    engine_each_sku(ss->eng, collect_sku, ss);
    uint32_t n = 0;
    for (o = ss->pend_head; o != NULL; o = o->next_pending)
        n++;
    ss->st.offers = n;
    start_calls(ss);
    round_maybe_end(ss);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    supplier_sync *ss = arg;
    round_start(ss);
    struct timeval tv = {ss->sync_ms / 1000, (ss->sync_ms % 1000) * 1000};
    evtimer_add(ss->timer, &tv);
}

/* ------------------------------------------------------------ lifecycle */

supplier_sync *supsync_new(struct event_base *base, const stockd_config *cfg, engine *eng,
                           void (*kick)(void *arg), void *kick_arg, char *err, size_t err_len)
{
    assert(cfg->supplier_url[0] != '\0');
    assert(cfg->supplier_sync_ms >= 1 && cfg->supplier_concurrency >= 1);
    supplier_sync *ss = calloc(1, sizeof(*ss));
    if (ss == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    ss->base = base;
    ss->eng = eng;
    ss->kick = kick;
    ss->kick_arg = kick_arg;
    ss->sync_ms = cfg->supplier_sync_ms;
    ss->concurrency = cfg->supplier_concurrency;
    supplier_client_config cc;
    supplier_client_config_defaults(&cc);
    cc.base_url = cfg->supplier_url;
    cc.app_key = cfg->supplier_app_key;
    cc.app_secret = cfg->supplier_app_secret;
    cc.access_token = cfg->supplier_token;
    if (cc.max_in_flight < ss->concurrency)
        cc.max_in_flight = ss->concurrency;
    /* A failed round is simply repeated next period: do not let retries of
     * one round run into the next one. */
    if (cc.backoff_max_ms > ss->sync_ms)
        cc.backoff_max_ms = ss->sync_ms;
    if (cc.backoff_base_ms > cc.backoff_max_ms)
        cc.backoff_base_ms = cc.backoff_max_ms;
    char e[256];
    ss->cli = supplier_client_new(base, &cc, e, sizeof(e));
    ss->timer = evtimer_new(base, timer_cb, ss);
    if (ss->cli == NULL || ss->timer == NULL) {
        snprintf(err, err_len, "supplier client: %s", ss->cli == NULL ? e : "out of memory");
        supsync_free(ss);
        return NULL;
    }
    uint32_t first = ss->sync_ms / 10 < 1000 ? ss->sync_ms / 10 : 1000;
    struct timeval tv = {first / 1000, (first % 1000) * 1000};
    evtimer_add(ss->timer, &tv);
    return ss;
}

void supsync_free(supplier_sync *ss)
{
    if (ss == NULL)
        return;
    ss->closing = true;
    if (ss->timer)
        event_free(ss->timer);
    supplier_client_free(ss->cli);  /* pending calls answer now; nothing is applied */
    so_offer *o, *tmp;
    HASH_ITER(hh, ss->offers, o, tmp)
        offer_free(ss, o);
    free(ss);
}

void supsync_stop(supplier_sync *ss)
{
    if (ss == NULL || ss->closing)
        return;
    ss->closing = true;  /* product_done applies nothing; start_calls starts nothing */
    evtimer_del(ss->timer);
}

void supsync_stats_get(const supplier_sync *ss, supsync_stats *out)
{
    *out = ss->st;
}
