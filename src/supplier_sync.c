/* supplier_sync.c — snapshot rounds, pokes and message push for supplier
 * stock: product.get per mapped offer, observations into the SKUs' FIFOs
 * (see include/stockd/supplier_sync.h).
 *
 * The offer index: one record per offer with its mapped SKUs, rebuilt from
 * the engine at every round (and, rate-limited, when a push names an offer
 * it does not know: a mapping made since the last round). A record lives
 * while it has SKUs, a call or a queue place. Its SKU list may be stale:
 * every use re-reads the SKU's committed mapping, and the engine drops an
 * observation whose mapping changed meanwhile (expect).
 *
 * Two queues wait for a call slot: pokes first, then the round's offers.
 * An offer is in at most one queue or in flight, never both: a poke during
 * its call sets `again` (one more call after it, however many pokes).
 */
#include "stockd/supplier_sync.h"
#include "stockd/clock.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <uthash.h>

#include "stockd/log.h"
#include "stockd/supplier.h"
#include "stockd/supplier_sign.h"

#define SUPSYNC_PUSH_MAX (64u << 10)     /* push body bytes */
#define SUPSYNC_PUSH_PARAMS_MAX 16       /* form fields in one push */
#define SUPSYNC_PUSH_ENTRIES_MAX 1000    /* inventory entries / product ids per push */
#define SUPSYNC_REINDEX_MIN_MS 1000      /* push misses rebuild the index at most this often */
#define SUPSYNC_SECRET_MAX 256

typedef struct so_sku {
    char name[ENG_ID_MAX + 1];
} so_sku;

enum { Q_NONE = 0, Q_POKE, Q_SNAP };

typedef struct so_offer {
    int64_t offer_id;
    uint8_t queue;                /* Q_*: which queue holds it */
    bool in_flight;
    bool again;                   /* poked during its call: one more after it */
    bool round_member;            /* the current round waits for its call */
    int64_t submitted_ms;         /* wall clock when the running call was submitted */
    uint32_t n, cap;
    so_sku *skus;
    struct so_offer *qprev, *qnext;
    struct supplier_sync *owner;  /* NULL: orphaned by supsync_free, its call still out */
    UT_hash_handle hh;
} so_offer;

typedef struct so_queue {
    so_offer *head, *tail;
} so_queue;

/* A push msgId acknowledged recently (replays and 1688's own retries are
 * acknowledged without effect). */
typedef struct push_seen {
    char id[SUPSYNC_MSGID_MAX + 1];
    int64_t until_mono_ms;        /* forgotten after this */
    struct push_seen *next;       /* arrival order */
    UT_hash_handle hh;
} push_seen;

struct supplier_sync {
    struct event_base *base;
    engine *eng;
    supplier_client *cli;         /* not owned */
    struct event *timer;          /* snapshot rounds */
    struct event *vtimer;         /* validation rounds (when shorter than sync_ms) */
    /* --test-clock: no libevent timers; the rounds fall due on the manual
     * wall clock at these times (0: none) and testclock.c starts them. */
    bool manual;
    int64_t sync_due_ms, validate_due_ms;
    void (*kick)(void *);
    void *kick_arg;
    uint32_t concurrency;
    uint32_t sync_ms;
    uint32_t validate_ms;
    bool closing;
    char secret[SUPSYNC_SECRET_MAX];
    size_t secret_len;
    so_offer *offers;             /* uthash by offer_id: the index */
    uint32_t n_offers;
    so_queue pokes, snaps;
    uint64_t round;
    bool round_open;
    uint32_t round_pending;       /* round members not answered yet */
    bool logged_this_round;       /* failures are logged once per round */
    int64_t round_start_ms;
    int64_t index_mono_ms;        /* when the index was last rebuilt */
    uint32_t push_window_ms;      /* gmtBorn freshness; msgIds kept 2x this */
    push_seen *seen;              /* uthash by msgId */
    push_seen *seen_head, *seen_tail; /* oldest first */
    uint32_t n_seen;
    supsync_stats st;
};



/* ------------------------------------------------------------ queues */

static so_queue *queue_of(supplier_sync *ss, uint8_t q)
{
    assert(q == Q_POKE || q == Q_SNAP);
    return q == Q_POKE ? &ss->pokes : &ss->snaps;
}

static void q_append(supplier_sync *ss, uint8_t q, so_offer *o)
{
    assert(o->queue == Q_NONE && !o->in_flight);
    so_queue *Q = queue_of(ss, q);
    o->qprev = Q->tail;
    o->qnext = NULL;
    if (Q->tail)
        Q->tail->qnext = o;
    else
        Q->head = o;
    Q->tail = o;
    o->queue = q;
}

static void q_remove(supplier_sync *ss, so_offer *o)
{
    if (o->queue == Q_NONE)
        return;
    so_queue *Q = queue_of(ss, o->queue);
    if (o->qprev)
        o->qprev->qnext = o->qnext;
    else
        Q->head = o->qnext;
    if (o->qnext)
        o->qnext->qprev = o->qprev;
    else
        Q->tail = o->qprev;
    o->qprev = o->qnext = NULL;
    o->queue = Q_NONE;
}

/* ------------------------------------------------------------ index */

static void offer_free(supplier_sync *ss, so_offer *o)
{
    assert(!o->in_flight);
    q_remove(ss, o);
    HASH_DEL(ss->offers, o);
    assert(ss->n_offers > 0);
    ss->n_offers--;
    free(o->skus);
    free(o);
}

static so_offer *offer_get(supplier_sync *ss, int64_t offer_id, bool create)
{
    so_offer *o;
    HASH_FIND(hh, ss->offers, &offer_id, sizeof(offer_id), o);
    if (o != NULL || !create)
        return o;
    if (ss->n_offers >= SUPSYNC_OFFERS_MAX || (o = calloc(1, sizeof(*o))) == NULL)
        return NULL;
    o->offer_id = offer_id;
    o->owner = ss;
    HASH_ADD(hh, ss->offers, offer_id, sizeof(o->offer_id), o);
    ss->n_offers++;
    return o;
}

static bool offer_add_sku(so_offer *o, const char *sku, bool dedupe)
{
    if (dedupe) {
        for (uint32_t i = 0; i < o->n; i++) {
            if (strcmp(o->skus[i].name, sku) == 0)
                return true;
        }
    }
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
    snprintf(o->skus[o->n++].name, sizeof(o->skus[0].name), "%s", sku);
    return true;
}

static void index_sku(const char *sku, void *arg)
{
    supplier_sync *ss = arg;
    eng_supplier_map map;
    if (!engine_sku_supplier(ss->eng, sku, &map) || map.offer_id <= 0)
        return;
    so_offer *o = offer_get(ss, map.offer_id, true);
    if (o == NULL || !offer_add_sku(o, sku, false))
        ss->st.skipped++;
}

/* One walk over the SKUs in memory; records left without SKUs go unless a
 * call or a queue still holds them. */
static void index_rebuild(supplier_sync *ss)
{
    so_offer *o, *tmp;
    HASH_ITER(hh, ss->offers, o, tmp)
        o->n = 0;
    engine_each_sku(ss->eng, index_sku, ss);
    HASH_ITER(hh, ss->offers, o, tmp) {
        if (o->n == 0 && !o->in_flight && o->queue == Q_NONE)
            offer_free(ss, o);
    }
    ss->index_mono_ms = clock_mono_ms();
}

/* The offer's record for a push; a miss rebuilds the index once per push
 * message and at most every SUPSYNC_REINDEX_MIN_MS (a mapping made since
 * the last round is not in it yet). */
static so_offer *offer_for_push(supplier_sync *ss, int64_t offer_id, bool *rebuilt)
{
    so_offer *o = offer_get(ss, offer_id, false);
    if ((o == NULL || o->n == 0) && !*rebuilt &&
        clock_mono_ms() - ss->index_mono_ms >= SUPSYNC_REINDEX_MIN_MS) {
        *rebuilt = true;
        index_rebuild(ss);
        o = offer_get(ss, offer_id, false);
    }
    return o != NULL && o->n > 0 ? o : NULL;
}

/* ------------------------------------------------------------ observations */

/* Queues one observation for a SKU whose committed mapping is cur. */
static bool observe(supplier_sync *ss, const char *sku, const eng_supplier_map *cur,
                    const eng_supplier_obs *obs)
{
    if (!engine_supplier_observe(ss->eng, sku, cur, obs))
        return false;  /* the SKU left memory meanwhile, or out of memory */
    if (obs->broken[0] != '\0') {
        ss->st.broken++;
        LOG_W("supplier sync: mapping broken", "sku", sku, "reason", obs->broken);
    } else {
        ss->st.reports++;
    }
    return true;
}

static int64_t clamp_stock(int64_t v)
{
    return v < 0 ? 0 : v < ENG_STOCK_MAX ? v : ENG_STOCK_MAX;
}

/* What an ok product.get answer says about one mapping. */
static void obs_from_product(const supplier_product *p, const eng_supplier_map *m,
                             eng_supplier_obs *obs)
{
    if (!p->published) {
        snprintf(obs->broken, sizeof(obs->broken), "offline: %s",
                 p->status[0] ? p->status : "unknown");
        return;
    }
    if (!p->support_online_trade) {
        snprintf(obs->broken, sizeof(obs->broken), "offline: no online trade");
        return;
    }
    if (p->n_skus == 0 && p->amount_on_sale >= 0) {  /* an offer without specs */
        obs->reported = clamp_stock(p->amount_on_sale);
        return;
    }
    for (size_t i = 0; i < p->n_skus; i++) {
        const supplier_sku *k = &p->skus[i];
        bool hit = m->spec_id[0] != '\0' ? strcmp(k->spec_id, m->spec_id) == 0
                                         : (m->sku_id != 0 && k->sku_id == m->sku_id);
        if (hit) {
            obs->reported = clamp_stock(k->amount_on_sale);
            obs->fingerprint = k->fingerprint;
            return;
        }
    }
    snprintf(obs->broken, sizeof(obs->broken), "spec removed");
}

/* A definitive business answer that the product does not exist (1688:
 * errMsg "商品[id]不存在", or a *NOT_EXIST code). Gateway and local
 * refusals (bad signature, ACL, our own parse) say nothing about the offer. */
static bool offer_unknown(const supplier_result *r)
{
    if (r->outcome != SUPPLIER_DEFINITIVE || (r->http_status != 0 && r->http_status != 200))
        return false;
    if (strncmp(r->code, "gw.", 3) == 0 || strncmp(r->code, "http.", 5) == 0 ||
        strncmp(r->code, "client.", 7) == 0)
        return false;
    return strstr(r->message, "\xe4\xb8\x8d\xe5\xad\x98\xe5\x9c\xa8") != NULL ||  /* 不存在 */
           strcasestr(r->code, "NOT_EXIST") != NULL || strcasestr(r->code, "NotExist") != NULL;
}

/* True when the SKU's committed figure speaks for a later time than at: a
 * push applied while this answer was on its way (or a retried push behind
 * a newer snapshot). The older figure must not replace it. */
static bool newer_than(supplier_sync *ss, const char *sku, int64_t at)
{
    eng_stock_view v;
    return engine_stock_get(ss->eng, sku, &v) && v.c.supplier_synced_at_ms > at;
}

/* Applies an answer (p, or unknown != NULL: the offer is gone) to every
 * SKU of the offer still mapped to it. */
static void apply_answer(supplier_sync *ss, const so_offer *o, const supplier_product *p)
{
    uint32_t queued = 0;
    for (uint32_t i = 0; i < o->n; i++) {
        eng_supplier_map cur;
        if (!engine_sku_supplier(ss->eng, o->skus[i].name, &cur) || cur.offer_id != o->offer_id)
            continue;  /* re-mapped, broken or gone since the index was built */
        eng_supplier_obs obs = {.synced_at_ms = o->submitted_ms};
        if (p != NULL)
            obs_from_product(p, &cur, &obs);
        else
            snprintf(obs.broken, sizeof(obs.broken), "offer unknown");
        if (obs.broken[0] == '\0' && newer_than(ss, o->skus[i].name, obs.synced_at_ms))
            continue;
        if (observe(ss, o->skus[i].name, &cur, &obs))
            queued++;
    }
    if (queued > 0 && ss->kick)
        ss->kick(ss->kick_arg);
}

/* ------------------------------------------------------------ calls */

static void round_maybe_end(supplier_sync *ss)
{
    if (!ss->round_open || ss->round_pending > 0)
        return;
    ss->round_open = false;
    ss->st.last_sync_ms = clock_wall_ms();
    ss->st.last_duration_ms = ss->st.last_sync_ms - ss->round_start_ms;
}

static void round_leave(supplier_sync *ss, so_offer *o)
{
    if (!o->round_member)
        return;
    o->round_member = false;
    assert(ss->round_pending > 0);
    ss->round_pending--;
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

/* Asks for a call of o now (a poke): ahead of the round's offers. */
static void request_call(supplier_sync *ss, so_offer *o)
{
    if (o->in_flight) {
        o->again = true;
        return;
    }
    if (o->queue == Q_POKE)
        return;
    q_remove(ss, o);
    q_append(ss, Q_POKE, o);
}

static void start_calls(supplier_sync *ss);

static void product_done(const supplier_reply *reply, void *arg)
{
    so_offer *o = arg;
    supplier_sync *ss = o->owner;
    if (ss == NULL) {  /* the sync is gone: only the record is left to free */
        free(o->skus);
        free(o);
        return;
    }
    assert(o->in_flight && ss->st.in_flight > 0);
    o->in_flight = false;
    ss->st.in_flight--;
    if (ss->closing)
        return;  /* supsync_free frees the records */
    if (reply->res.outcome == SUPPLIER_OK) {
        ss->st.ok++;
        apply_answer(ss, o, &reply->u.product);
    } else {
        note_failure(ss, o->offer_id, &reply->res);
        if (offer_unknown(&reply->res))
            apply_answer(ss, o, NULL);
    }
    round_leave(ss, o);
    if (o->again) {
        o->again = false;
        request_call(ss, o);
    }
    start_calls(ss);
    round_maybe_end(ss);
}

static so_offer *next_queued(supplier_sync *ss)
{
    so_offer *o = ss->pokes.head ? ss->pokes.head : ss->snaps.head;
    if (o != NULL)
        q_remove(ss, o);
    return o;
}

static void start_calls(supplier_sync *ss)
{
    while (!ss->closing && ss->st.in_flight < ss->concurrency) {
        so_offer *o = next_queued(ss);
        if (o == NULL)
            break;
        if (o->n == 0) {  /* its SKUs left since it was queued */
            round_leave(ss, o);
            offer_free(ss, o);
            continue;
        }
        int64_t now = clock_wall_ms();
        if (supplier_product_get(ss->cli, o->offer_id, product_done, o) != 0) {
            note_failure(ss, o->offer_id, NULL);
            round_leave(ss, o);
            continue;
        }
        o->submitted_ms = now;
        o->in_flight = true;
        ss->st.in_flight++;
        ss->st.calls++;
    }
}

/* ------------------------------------------------------------ rounds */

static void round_start(supplier_sync *ss)
{
    if (ss->closing)
        return;
    index_rebuild(ss);
    ss->round++;
    ss->st.syncs++;
    ss->round_open = true;
    ss->round_pending = 0;
    ss->logged_this_round = false;
    ss->round_start_ms = clock_wall_ms();
    uint32_t n = 0;
    so_offer *o, *tmp;
    HASH_ITER(hh, ss->offers, o, tmp) {
        o->round_member = false;
        if (o->n == 0)
            continue;
        if (o->in_flight) {
            ss->st.skipped++;  /* one call per offer: the running one answers for it */
            continue;
        }
        if (o->queue == Q_NONE)
            q_append(ss, Q_SNAP, o);
        o->round_member = true;
        ss->round_pending++;
        n++;
    }
    ss->st.offers = n;
    start_calls(ss);
    round_maybe_end(ss);
}

static void arm(struct event *ev, uint32_t ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    supplier_sync *ss = arg;
    round_start(ss);
    arm(ss->timer, ss->sync_ms);
}

static void vtimer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    supplier_sync *ss = arg;
    round_start(ss);  /* a full round validates every link it answers for */
    arm(ss->vtimer, ss->validate_ms);
}

int64_t supsync_due_ms(const supplier_sync *ss)
{
    if (ss == NULL || !ss->manual || ss->closing)
        return INT64_MAX;
    int64_t due = ss->sync_due_ms;
    if (ss->validate_due_ms > 0 && ss->validate_due_ms < due)
        due = ss->validate_due_ms;
    return due;
}

/* True when *due (0: none) has come at now_ms; then it moves one period on,
 * counted from its own due time as a timer re-armed in its callback would,
 * or from now_ms when far behind (no catching up). */
static bool take_due(int64_t *due, uint32_t period_ms, int64_t now_ms)
{
    if (*due <= 0 || now_ms < *due)
        return false;
    *due += period_ms;
    if (*due <= now_ms)
        *due = now_ms + period_ms;
    return true;
}

void supsync_run_due(supplier_sync *ss, int64_t now_ms)
{
    if (ss == NULL || !ss->manual || ss->closing)
        return;
    /* A round due for both runs once (it validates too). */
    bool sync = take_due(&ss->sync_due_ms, ss->sync_ms, now_ms);
    bool validate = take_due(&ss->validate_due_ms, ss->validate_ms, now_ms);
    if (sync || validate)
        round_start(ss);
}

static uint32_t dues_until(int64_t due, uint32_t period_ms, int64_t until_ms)
{
    if (due <= 0 || due > until_ms)
        return 0;
    int64_t n = (until_ms - due) / (int64_t)period_ms + 1;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

uint32_t supsync_rounds_due(const supplier_sync *ss, int64_t until_ms)
{
    if (ss == NULL || !ss->manual || ss->closing)
        return 0;
    uint64_t n = (uint64_t)dues_until(ss->sync_due_ms, ss->sync_ms, until_ms) +
                 dues_until(ss->validate_due_ms, ss->validate_ms, until_ms);
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

bool supsync_idle(const supplier_sync *ss)
{
    return ss == NULL || (ss->st.in_flight == 0 && ss->pokes.head == NULL && ss->snaps.head == NULL);
}

/* ------------------------------------------------------------ pokes */

void supsync_poke_sku(supplier_sync *ss, const char *sku)
{
    if (ss == NULL || ss->closing || sku == NULL)
        return;
    eng_supplier_map map;
    if (!engine_sku_supplier(ss->eng, sku, &map) || map.offer_id <= 0)
        return;
    so_offer *o = offer_get(ss, map.offer_id, true);
    if (o == NULL || !offer_add_sku(o, sku, true)) {
        ss->st.skipped++;
        if (o != NULL && o->n == 0 && !o->in_flight && o->queue == Q_NONE)
            offer_free(ss, o);
        return;
    }
    ss->st.pokes++;
    request_call(ss, o);
    start_calls(ss);  /* callbacks come later, from the loop: no kick here */
}

/* ------------------------------------------------------------ push */

/* An id as decimal text of len bytes: 1..19 digits, >= 1. */
static bool id_text(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    int64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int d = s[i] - '0';
        if (x > (INT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *out = x;
    return x > 0;
}

/* An id as a JSON integer or a decimal string, >= 1. */
static bool json_id(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return *out > 0;
    }
    return json_is_string(v) && id_text(json_string_value(v), json_string_length(v), out);
}

typedef struct push_tally {
    uint32_t applied, poked, stale, unknown;
    bool rebuilt;
} push_tally;

/* The time a pushed figure speaks for: its bizTime, else the message's
 * gmtBorn, never later than now (a clock ahead must not settle purchases
 * the figure cannot reflect). */
static int64_t push_time(const json_t *entry, int64_t born, int64_t now)
{
    json_t *b = json_object_get(entry, "bizTime");
    int64_t t = json_is_integer(b) ? (int64_t)json_integer_value(b) : born;
    return t > 0 && t <= now ? t : now;
}

static void push_inventory_entry(supplier_sync *ss, const json_t *e, int64_t born,
                                 push_tally *t)
{
    int64_t offer_id, sku_id;
    json_t *on_sale = json_object_get(e, "skuOnSale");
    if (!json_id(json_object_get(e, "offerId"), &offer_id) ||
        !json_id(json_object_get(e, "skuId"), &sku_id) || !json_is_integer(on_sale) ||
        json_integer_value(on_sale) < 0) {
        t->unknown++;
        return;
    }
    so_offer *o = offer_for_push(ss, offer_id, &t->rebuilt);
    if (o == NULL) {
        t->unknown++;  /* not an offer we sell */
        return;
    }
    int64_t at = push_time(e, born, clock_wall_ms());
    bool poke = false;
    for (uint32_t i = 0; i < o->n; i++) {
        eng_supplier_map cur;
        const char *sku = o->skus[i].name;
        if (!engine_sku_supplier(ss->eng, sku, &cur) || cur.offer_id != offer_id)
            continue;
        if (cur.sku_id == 0) {
            poke = true;  /* mapped by spec only: cannot tell which entry is its */
            continue;
        }
        if (cur.sku_id != sku_id)
            continue;
        /* A retried message may come after a newer snapshot: keep the newer. */
        if (newer_than(ss, sku, at)) {
            t->stale++;
            continue;
        }
        eng_supplier_obs obs = {.reported = clamp_stock(json_integer_value(on_sale)),
                                .synced_at_ms = at};
        if (observe(ss, sku, &cur, &obs))
            t->applied++;
    }
    if (poke) {
        ss->st.pokes++;
        request_call(ss, o);
        t->poked++;
    }
}

static int push_inventory(supplier_sync *ss, const json_t *data, int64_t born, push_tally *t,
                          char *msg, size_t cap)
{
    const json_t *list = json_object_get(data, "OfferInventoryChangeList");
    if (!json_is_array(list)) {
        snprintf(msg, cap, "data.OfferInventoryChangeList is not an array");
        return 400;
    }
    if (json_array_size(list) > SUPSYNC_PUSH_ENTRIES_MAX) {
        snprintf(msg, cap, "more than %u entries", SUPSYNC_PUSH_ENTRIES_MAX);
        return 400;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e) {
        if (json_is_object(e))
            push_inventory_entry(ss, e, born, t);
        else
            t->unknown++;
    }
    return 200;
}

static void push_poke_offer(supplier_sync *ss, int64_t offer_id, push_tally *t)
{
    so_offer *o = offer_for_push(ss, offer_id, &t->rebuilt);
    if (o == NULL) {
        t->unknown++;
        return;
    }
    ss->st.pokes++;
    request_call(ss, o);
    t->poked++;
}

/* productIds: "1,2,3" (1688) or an array of ids. */
static int push_relation(supplier_sync *ss, const json_t *data, push_tally *t, char *msg,
                         size_t cap)
{
    const json_t *ids = json_object_get(data, "productIds");
    if (json_is_array(ids)) {
        if (json_array_size(ids) > SUPSYNC_PUSH_ENTRIES_MAX) {
            snprintf(msg, cap, "more than %u productIds", SUPSYNC_PUSH_ENTRIES_MAX);
            return 400;
        }
        size_t i;
        const json_t *v;
        int64_t id;
        json_array_foreach(ids, i, v) {
            if (json_id(v, &id))
                push_poke_offer(ss, id, t);
            else
                t->unknown++;
        }
        return 200;
    }
    if (!json_is_string(ids)) {
        snprintf(msg, cap, "data.productIds missing");
        return 400;
    }
    const char *s = json_string_value(ids);
    uint32_t n = 0;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (++n > SUPSYNC_PUSH_ENTRIES_MAX) {
            snprintf(msg, cap, "more than %u productIds", SUPSYNC_PUSH_ENTRIES_MAX);
            return 400;
        }
        while (len > 0 && *s == ' ') {
            s++;
            len--;
        }
        int64_t id;
        if (id_text(s, len, &id))
            push_poke_offer(ss, id, t);
        else if (len > 0)
            t->unknown++;
        s = end ? end + 1 : s + len;
    }
    return 200;
}

/* The message's data: an object, or (some deliveries) its JSON text. */
static json_t *push_data(json_t *doc)
{
    json_t *d = json_object_get(doc, "data");
    if (json_is_object(d))
        return json_incref(d);
    if (json_is_string(d))
        return json_loadb(json_string_value(d), json_string_length(d), 0, NULL);
    return NULL;
}

static void seen_drop_head(supplier_sync *ss)
{
    push_seen *p = ss->seen_head;
    ss->seen_head = p->next;
    if (ss->seen_head == NULL)
        ss->seen_tail = NULL;
    HASH_DEL(ss->seen, p);
    free(p);
    ss->n_seen--;
}

/* Replays: a message born further than the window from now is refused
 * (400: 1688 retries a failed delivery for a while, but never for long);
 * a msgId applied within twice the window (a message born up to the
 * window ahead of our clock may arrive late by as much again) is
 * acknowledged without effect. 0: go on, id holds the msgId; else the
 * HTTP status with msg. */
static int push_fresh(supplier_sync *ss, json_t *doc, int64_t born, char id[SUPSYNC_MSGID_MAX + 1],
                      char *msg, size_t cap)
{
    int64_t now = clock_wall_ms(), mono = clock_mono_ms();
    int64_t skew = born - now;
    if (born <= 0 || skew > (int64_t)ss->push_window_ms || -skew > (int64_t)ss->push_window_ms) {
        ss->st.push_stale++;
        snprintf(msg, cap, "stale: gmtBorn %lld is %lld ms from now (window %u ms)",
                 (long long)born, (long long)skew, ss->push_window_ms);
        return 400;
    }
    json_t *m = json_object_get(doc, "msgId");
    if (json_is_integer(m)) {
        snprintf(id, SUPSYNC_MSGID_MAX + 1, "%lld", (long long)json_integer_value(m));
    } else if (json_is_string(m) && json_string_length(m) >= 1 &&
               json_string_length(m) <= SUPSYNC_MSGID_MAX &&
               strlen(json_string_value(m)) == json_string_length(m)) {
        memcpy(id, json_string_value(m), json_string_length(m) + 1);
    } else {
        snprintf(msg, cap, "message has no msgId (an integer, or a string of 1..%d bytes)",
                 SUPSYNC_MSGID_MAX);
        return 400;
    }
    while (ss->seen_head != NULL && ss->seen_head->until_mono_ms <= mono)
        seen_drop_head(ss);
    push_seen *p = NULL;
    HASH_FIND_STR(ss->seen, id, p);
    if (p != NULL) {
        ss->st.push_duplicate++;
        snprintf(msg, cap, "duplicate: msgId %s already applied", id);
        return 200;
    }
    return 0;
}

/* Remembers an applied msgId; at SUPSYNC_SEEN_MAX the oldest is forgotten
 * early (counted): its replay would apply again, which only re-reports
 * a figure that the SKU's synced_at then drops as older. */
static void push_remember(supplier_sync *ss, const char *id)
{
    if (ss->n_seen >= SUPSYNC_SEEN_MAX) {
        seen_drop_head(ss);
        ss->st.push_seen_evicted++;
    }
    push_seen *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return;  /* out of memory: not remembered, as if evicted */
    snprintf(p->id, sizeof(p->id), "%s", id);
    p->until_mono_ms = clock_mono_ms() + 2 * (int64_t)ss->push_window_ms;
    if (ss->seen_tail)
        ss->seen_tail->next = p;
    else
        ss->seen_head = p;
    ss->seen_tail = p;
    HASH_ADD_STR(ss->seen, id, p);
    ss->n_seen++;
}

static int push_dispatch(supplier_sync *ss, json_t *doc, char *msg, size_t cap)
{
    const char *type = json_string_value(json_object_get(doc, "type"));
    if (type == NULL) {
        snprintf(msg, cap, "message has no type");
        return 400;
    }
    bool inventory = strcmp(type, "PRODUCT_PRODUCT_INVENTORY_CHANGE") == 0;
    bool relation = strncmp(type, "PRODUCT_RELATION_VIEW_PRODUCT_", 30) == 0;
    if (!inventory && !relation) {
        snprintf(msg, cap, "ignored: type not used");
        return 200;
    }
    json_t *data = push_data(doc);
    if (!json_is_object(data)) {
        json_decref(data);
        snprintf(msg, cap, "message data is not an object");
        return 400;
    }
    json_t *b = json_object_get(doc, "gmtBorn");
    int64_t born = json_is_integer(b) ? (int64_t)json_integer_value(b) : 0;
    char id[SUPSYNC_MSGID_MAX + 1];
    int rc = push_fresh(ss, doc, born, id, msg, cap);
    if (rc != 0) {
        json_decref(data);
        return rc;
    }
    push_tally t = {0};
    rc = inventory ? push_inventory(ss, data, born, &t, msg, cap)
                   : push_relation(ss, data, &t, msg, cap);
    json_decref(data);
    if (rc != 200)
        return rc;
    push_remember(ss, id);
    if (t.applied > 0 && ss->kick)
        ss->kick(ss->kick_arg);
    if (t.poked > 0)
        start_calls(ss);
    snprintf(msg, cap, "ok: %u applied, %u offers poked, %u stale, %u not ours", t.applied,
             t.poked, t.stale, t.unknown);
    return 200;
}

/* Signature and envelope; buf holds len + 1 bytes (decoded in place). */
static int push_check(supplier_sync *ss, char *buf, size_t len, char *msg, size_t cap)
{
    supplier_param params[SUPSYNC_PUSH_PARAMS_MAX];
    size_t n = 0;
    if (supplier_form_parse(buf, len, params, SUPSYNC_PUSH_PARAMS_MAX, &n) != 0) {
        snprintf(msg, cap, "malformed form body");
        return 400;
    }
    const supplier_param *m = supplier_param_find(params, n, "message");
    const supplier_param *sig = supplier_param_find(params, n, "_aop_signature");
    if (m == NULL) {
        snprintf(msg, cap, "no message field");
        return 400;
    }
    char want[SUPPLIER_SIGN_HEX_LEN + 1];
    /* Params-only variant: HMAC-SHA1(secret, "message" + message). */
    if (sig == NULL || supplier_sign(ss->secret, ss->secret_len, "", m, 1, want) != 0 ||
        !supplier_sign_equal(want, sig->value)) {
        snprintf(msg, cap, "bad signature");
        return 401;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(m->value, m->value_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        snprintf(msg, cap, "message is not a JSON object");
        return 400;
    }
    int rc = push_dispatch(ss, doc, msg, cap);
    json_decref(doc);
    return rc;
}

int supsync_push(supplier_sync *ss, const char *body, size_t len, char *msg, size_t msg_cap)
{
    assert(msg != NULL && msg_cap >= 128 && (body != NULL || len == 0));
    if (ss == NULL || ss->closing) {
        snprintf(msg, msg_cap, "supplier sync stopped");
        return 503;
    }
    if (len > SUPSYNC_PUSH_MAX) {
        ss->st.push_refused++;
        snprintf(msg, msg_cap, "body over %u bytes", SUPSYNC_PUSH_MAX);
        return 413;
    }
    char *buf = malloc(len + 1);
    if (buf == NULL) {
        snprintf(msg, msg_cap, "out of memory");
        return 503;
    }
    if (len > 0)
        memcpy(buf, body, len);
    buf[len] = '\0';
    int rc = push_check(ss, buf, len, msg, msg_cap);
    free(buf);
    if (rc == 200)
        ss->st.pushes++;
    else
        ss->st.push_refused++;
    if (rc != 200) {
        char code[8];
        snprintf(code, sizeof(code), "%d", rc);
        LOG_W("supplier push refused", "status", code, "reason", msg);
    }
    return rc;
}

/* ------------------------------------------------------------ lifecycle */

supplier_sync *supsync_new(struct event_base *base, const stockd_config *cfg, engine *eng,
                           struct supplier_client *client, void (*kick)(void *arg),
                           void *kick_arg, char *err, size_t err_len)
{
    assert(base && cfg && eng && client);
    assert(cfg->supplier_sync_ms >= 1 && cfg->supplier_concurrency >= 1);
    size_t slen = strlen(cfg->supplier_app_secret);
    if (slen == 0 || slen >= SUPSYNC_SECRET_MAX) {
        snprintf(err, err_len, "supplier sync: app secret missing or over %d bytes",
                 SUPSYNC_SECRET_MAX - 1);
        return NULL;
    }
    supplier_sync *ss = calloc(1, sizeof(*ss));
    if (ss == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    ss->base = base;
    ss->eng = eng;
    ss->cli = client;
    ss->kick = kick;
    ss->kick_arg = kick_arg;
    ss->sync_ms = cfg->supplier_sync_ms;
    ss->validate_ms = cfg->supplier_validate_ms;
    ss->push_window_ms = cfg->supplier_push_window_ms ? cfg->supplier_push_window_ms : 300000;
    ss->concurrency = cfg->supplier_concurrency;
    memcpy(ss->secret, cfg->supplier_app_secret, slen);
    ss->secret_len = slen;
    ss->index_mono_ms = clock_mono_ms() - SUPSYNC_REINDEX_MIN_MS;
    ss->timer = evtimer_new(base, timer_cb, ss);
    /* Validation rounds only matter when they come more often than syncs. */
    if (ss->validate_ms > 0 && ss->validate_ms < ss->sync_ms)
        ss->vtimer = evtimer_new(base, vtimer_cb, ss);
    if (ss->timer == NULL || (ss->validate_ms > 0 && ss->validate_ms < ss->sync_ms &&
                              ss->vtimer == NULL)) {
        snprintf(err, err_len, "supplier sync: out of memory");
        supsync_free(ss);
        return NULL;
    }
    uint32_t first = ss->sync_ms / 10 < 1000 ? ss->sync_ms / 10 : 1000;
    if (cfg->test_clock) {
        int64_t now = clock_wall_ms();
        ss->manual = true;
        ss->sync_due_ms = now + first;
        ss->validate_due_ms = ss->vtimer ? now + ss->validate_ms : 0;
        return ss;
    }
    arm(ss->timer, first);
    if (ss->vtimer)
        arm(ss->vtimer, ss->validate_ms);
    return ss;
}

void supsync_free(supplier_sync *ss)
{
    if (ss == NULL)
        return;
    ss->closing = true;
    if (ss->timer)
        event_free(ss->timer);
    if (ss->vtimer)
        event_free(ss->vtimer);
    /* The client is not ours: calls still out answer later (or when the
     * client is freed) into records that no longer know the sync. */
    so_offer *o, *tmp;
    HASH_ITER(hh, ss->offers, o, tmp) {
        if (o->in_flight) {
            q_remove(ss, o);
            HASH_DEL(ss->offers, o);
            o->owner = NULL;
        } else {
            offer_free(ss, o);
        }
    }
    while (ss->seen_head != NULL)
        seen_drop_head(ss);
    OPENSSL_cleanse(ss->secret, sizeof(ss->secret));
    free(ss);
}

void supsync_stop(supplier_sync *ss)
{
    if (ss == NULL || ss->closing)
        return;
    ss->closing = true;  /* product_done applies nothing; start_calls starts nothing */
    evtimer_del(ss->timer);
    if (ss->vtimer)
        evtimer_del(ss->vtimer);
}

void supsync_stats_get(const supplier_sync *ss, supsync_stats *out)
{
    *out = ss->st;
}
