/* purchase.c — the purchase worker (include/stockd/purchase.h).
 *
 * A job is one claimed pending purchase. It lives from the claim until its
 * outcome op is committed (or it is dropped or unclaimed) and is always in
 * exactly one state:
 *   PJ_WAIT    its timer is armed (backoff, or the first step soon);
 *   PJ_CALL    one supplier call is on the wire, the callback ends it;
 *   PJ_ENGINE  its outcome op is in the engine, on_done ends it.
 * So every job has exactly one thing that will move it on, and stop/free
 * know what to do with each (unclaim a waiting job, let the others end).
 *
 * The outcome op lives in the job: the engine's on_done gets the job
 * itself as its argument, so an op still in the engine when the worker is
 * freed finds its job "orphaned" and only frees it.
 */
#include "stockd/purchase.h"
#include "stockd/clock.h"

#include <assert.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <xxhash.h>

#include "stockd/log.h"

#define PJ_BACKOFF_BASE_MS 200u
#define PJ_TICK_MS 1000
/* Attempts double the wait; past this shift it is at the cap anyway. */
#define PJ_BACKOFF_SHIFT_MAX 24u
/* A checked line of an order of several lines waits for the checks of the
 * order's other lines this worker is running, polling this often, at most
 * PJ_BARRIER_MAX_MS: a line whose check fails then fails the order in
 * one commit, before anything of it was bought. */
#define PJ_BARRIER_POLL_MS 20
#define PJ_BARRIER_MAX_MS 10000

typedef enum pj_state { PJ_WAIT = 0, PJ_CALL, PJ_ENGINE } pj_state;

typedef struct pjob {
    struct purchase *owner;       /* NULL: orphaned by purchase_free */
    struct pjob *prev, *next;     /* the worker's list of jobs */
    eng_purchase ep;              /* as claimed: one line of an order */
    char out_id[ENG_KEY_MAX + 1]; /* the upstream outOrderId of that line */
    pj_state state;
    bool need_lookup;             /* recovered, or a create ended unknown */
    bool have_outcome;            /* op holds a decided outcome (resubmit it) */
    bool checked;                 /* its preview passed: it may be created */
    int64_t barrier_until_ms;     /* waiting for its siblings' checks until then (0: not) */
    unsigned attempts;            /* backoffs so far */
    struct event *timer;
    eng_op op;
} pjob;

struct purchase {
    struct event_base *base;
    const stockd_config *cfg;
    engine *eng;
    supplier_client *cli;
    purchase_hooks hooks;
    struct event *tick;           /* every PJ_TICK_MS: claim what is there */
    struct event *wake;           /* purchase_wake and freed slots: claim soon */
    pjob *jobs;
    uint64_t rng;                 /* xorshift64 state for the jitter, never 0 */
    bool stopped;
    purchase_stats st;
    struct {
        uint64_t line;            /* order id and line number; 0: empty */
        uint64_t what;            /* offer, spec, sku_id and quantity checked */
        int64_t at_ms;
    } checked[PURCHASE_CHECKED_SLOTS];
};


static uint64_t rng_next(purchase *p)
{
    uint64_t x = p->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p->rng = x;
    return x;
}

/* ------------------------------------------------------------ job list */

static void job_unlink(purchase *p, pjob *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        p->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
    assert(p->st.active > 0);
    p->st.active--;
}

static void job_destroy(pjob *j)
{
    if (j->timer)
        event_free(j->timer);
    free(j);
}

/* Gives the job's line back to the engine: claimable again. Jobs are per
 * line, so the line is named, never the whole order (another line of it
 * may be claimed by a job still running). */
static void job_unclaim(purchase *p, const pjob *j)
{
    engine_purchase_unclaim(p->eng, &j->ep);
}

/* The job is over (committed, dropped or unclaimed): its slot is free, so
 * more may be claimed, from the loop (never inside an engine callback). */
static void job_end(purchase *p, pjob *j, bool unclaim)
{
    if (unclaim)
        job_unclaim(p, j);
    job_unlink(p, j);
    job_destroy(j);
    if (!p->stopped)
        event_active(p->wake, 0, 0);
}

/* ------------------------------------------------------------ outcomes */

/* Copies "<api>: <code> <message>" into out (ENG_REASON_MAX + 1 bytes), cut
 * on a UTF-8 boundary: 1688 messages are Chinese. The client has already
 * redacted the secret and the token from code and message. */
static void reason_of(char *out, supplier_api api, const supplier_result *r)
{
    char buf[sizeof(r->code) + sizeof(r->message) + 64];
    snprintf(buf, sizeof(buf), "%s: %s %s", supplier_api_name(api), r->code, r->message);
    size_t n = strlen(buf);
    if (n > ENG_REASON_MAX) {
        n = ENG_REASON_MAX;
        while (n > 0 && ((unsigned char)buf[n] & 0xC0) == 0x80)
            n--;  /* buf[n] is the first byte cut off: do not split its char */
    }
    while (n > 0 && buf[n - 1] == ' ')
        n--;      /* an empty message leaves no trailing blank */
    memcpy(out, buf, n);
    out[n] = '\0';
}

/* What a definitive refusal of preview or create says about the order
 * (purchase.h step 3). The offer being gone or offline is recognised by
 * code where 1688 has one, else by the product-not-found wording. */
static eng_fail_kind fail_kind_of(const supplier_result *r)
{
    const char *c = r->code, *m = r->message;
    if (strcmp(c, "500_004") == 0 || strstr(c, "BOOKED_BEYOND_THE_MAX_QUANTITY"))
        return ENG_FAIL_STOCK;
    if (strcmp(c, "500_001") == 0 || strcmp(c, "500_003") == 0 ||
        strstr(c, "PRODUCT_TRADE_STAT"))
        return ENG_FAIL_LINK;
    bool product = strstr(m, "商品") || strstr(m, "product") || strstr(m, "offer") ||
                   strstr(m, "Product") || strstr(m, "Offer");
    bool gone = strstr(m, "不存在") || strstr(m, "下架") || strstr(m, "offline") ||
                strstr(m, "not exist");
    return product && gone ? ENG_FAIL_LINK : ENG_FAIL_OTHER;
}

static void op_done(eng_op *op, void *arg);

static void outcome_init(pjob *j, eng_op_kind kind)
{
    memset(&j->op, 0, sizeof(j->op));
    j->op.kind = kind;
    snprintf(j->op.order_id, sizeof(j->op.order_id), "%s", j->ep.order_id);
    snprintf(j->op.sku, sizeof(j->op.sku), "%s", j->ep.sku);
    /* The line bought; a part's ops name it as a part. */
    j->op.line_no = j->ep.line_no;
    j->op.part_lines = j->ep.part_lines > 1 ? j->ep.part_lines : 0;
    j->op.on_done = op_done;
    j->op.on_done_arg = j;
    j->have_outcome = true;
}

static void set_purchased(pjob *j, const char *upstream_id)
{
    assert(upstream_id[0] != '\0' && strlen(upstream_id) <= ENG_ID_MAX);
    outcome_init(j, ENG_OP_PURCHASED);
    snprintf(j->op.upstream_order_id, sizeof(j->op.upstream_order_id), "%s", upstream_id);
    LOG_D("purchase: bought upstream", "order_id", j->ep.order_id, "out_order_id", j->out_id,
          "sku", j->ep.sku, "upstream_order_id", upstream_id);
}

static void set_failed(pjob *j, eng_fail_kind kind, const char *reason)
{
    outcome_init(j, ENG_OP_PURCHASE_FAILED);
    j->op.fail_kind = kind;
    snprintf(j->op.reason, sizeof(j->op.reason), "%s", reason);
    LOG_W("purchase failed", "order_id", j->ep.order_id, "out_order_id", j->out_id, "sku",
          j->ep.sku, "kind", eng_fail_kind_name(kind), "reason", j->op.reason);
}

/* ------------------------------------------------------------ steps */

static void job_step(purchase *p, pjob *j);

/* Waits before the next try: 200 ms doubling per backoff to the cap,
 * uniform in [d/2, d] so jobs that failed together do not retry together. */
static void job_backoff(purchase *p, pjob *j)
{
    assert(j->state != PJ_ENGINE);
    if (p->stopped) {  /* draining: no new tries; a later start looks it up */
        job_end(p, j, true);
        return;
    }
    uint32_t cap = p->cfg->supplier_purchase_backoff_max_ms;
    unsigned shift = j->attempts < PJ_BACKOFF_SHIFT_MAX ? j->attempts : PJ_BACKOFF_SHIFT_MAX;
    uint64_t d = (uint64_t)PJ_BACKOFF_BASE_MS << shift;
    if (d > cap)
        d = cap;
    uint64_t wait = d / 2 + rng_next(p) % (d - d / 2 + 1);
    j->attempts++;
    p->st.retries++;
    j->state = PJ_WAIT;
    struct timeval tv = {.tv_sec = (time_t)(wait / 1000),
                         .tv_usec = (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(j->timer, &tv);
}

/* Under --test-clock, the outcomes of an order's bought (or refused at
 * create) lines go to the engine in line order: a supplier's trust moves
 * with each outcome (up by a step, down by a factor), the two do not
 * commute, and the order in which concurrent lines finish is the network's.
 * True when j's outcome came after its check and a lower line of its order
 * has passed its check here but not submitted its outcome yet. An outcome
 * of a failed check never waits: the lines in step 3b wait for it. */
static bool earlier_line_pending(const purchase *p, const pjob *j)
{
    if (!p->cfg->test_clock || !j->checked)
        return false;
    for (const pjob *o = p->jobs; o != NULL; o = o->next)
        if (o != j && o->checked && o->state != PJ_ENGINE && o->ep.line_no < j->ep.line_no &&
            strcmp(o->ep.order_id, j->ep.order_id) == 0)
            return true;
    return false;
}

static void job_submit(purchase *p, pjob *j)
{
    assert(j->have_outcome);
    if (earlier_line_pending(p, j)) {
        j->state = PJ_WAIT;
        struct timeval tv = {0, PJ_BARRIER_POLL_MS * 1000};
        evtimer_add(j->timer, &tv);
        return;
    }
    j->state = PJ_ENGINE;
    eng_err e = engine_submit(p->eng, &j->op, clock_wall_ms());
    switch (e) {
    case ENG_OK:
        if (p->hooks.kick)
            p->hooks.kick(p->hooks.arg);
        return;
    case ENG_E_NOT_FOUND:
    case ENG_E_INVALID_STATE:
        /* The order left memory (SKU taken over) or changed: not ours now. */
        p->st.dropped++;
        job_end(p, j, false);
        return;
    case ENG_E_INVALID:
    case ENG_E_INTERNAL:
        /* A bug, not weather: retrying would loop. The job row stays
         * pending in the store, so a restart tries again. */
        LOG_E("purchase: outcome refused by the engine", "order_id", j->ep.order_id,
              "err", eng_err_code(e));
        p->st.dropped++;
        job_end(p, j, false);
        return;
    default:
        j->state = PJ_WAIT;
        job_backoff(p, j);
        return;
    }
}

static void lookup_done(const supplier_reply *reply, void *arg);
static void preview_done(const supplier_reply *reply, void *arg);
static void create_done(const supplier_reply *reply, void *arg);

static void job_line(const pjob *j, const eng_supplier_map *map, supplier_cargo_line *line)
{
    memset(line, 0, sizeof(*line));
    line->offer_id = map->offer_id;
    snprintf(line->spec_id, sizeof(line->spec_id), "%s", map->spec_id);
    line->sku_id = map->sku_id;
    line->quantity = j->ep.qty;
    line->amount_fen = -1;
    line->unit_price_fen = -1;
}

/* The committed status of the job's line: from the part, or from the whole
 * order's lines. False when the engine does not know it. */
static bool job_line_status(const purchase *p, const pjob *j, eng_status *out)
{
    if (j->ep.part_lines > 1) {
        eng_order_view v;
        if (!engine_part_get(p->eng, j->ep.order_id, j->ep.line_no, &v))
            return false;
        *out = v.status;
        return true;
    }
    eng_line_view lines[ENG_LINES_MAX];
    size_t n = engine_order_lines(p->eng, j->ep.order_id, lines, ENG_LINES_MAX);
    for (size_t i = 0; i < n; i++) {
        if (lines[i].line_no == j->ep.line_no) {
            *out = lines[i].status;
            return true;
        }
    }
    return false;
}

/* Before buying: the line must still be CONFIRMED in memory. One released
 * or failed (or forgotten: SKU taken over) while the job waited is not
 * bought; the engine has dropped its pending purchase, claim included. */
static bool job_still_wanted(purchase *p, pjob *j)
{
    eng_status st;
    if (job_line_status(p, j, &st) && st == ENG_ST_CONFIRMED)
        return true;
    p->st.dropped++;
    job_end(p, j, false);
    return false;
}

static void job_submit(purchase *p, pjob *j);

/* The line to check or buy, from the committed mapping now, not at the
 * claim: a sku.put may have repaired or re-mapped it while the job waited.
 * False when the job is over: not wanted any more, or failed for a broken
 * mapping (its outcome submitted). */
static bool job_current_line(purchase *p, pjob *j, supplier_cargo_line *line)
{
    if (!job_still_wanted(p, j))
        return false;
    eng_supplier_map map;
    if (!engine_sku_supplier(p->eng, j->ep.sku, &map) || map.offer_id <= 0) {
        set_failed(j, ENG_FAIL_LINK, "mapping broken");
        job_submit(p, j);
        return false;
    }
    job_line(j, &map, line);
    return true;
}

static void job_create(purchase *p, pjob *j);

/* Keys of the table of passed reserve checks: never 0 (0 marks a free
 * slot). */
static uint64_t checked_line_key(const char *order_id, int32_t line_no)
{
    char buf[ENG_ID_MAX + 16];
    int n = snprintf(buf, sizeof buf, "%s#%" PRId32, order_id, line_no);
    uint64_t h = XXH3_64bits(buf, n > 0 && (size_t)n < sizeof buf ? (size_t)n : strlen(buf));
    return h ? h : 1;
}

static uint64_t checked_what_key(int64_t offer_id, const char *spec_id, int64_t sku_id,
                                 int32_t qty)
{
    char buf[ENG_ID_MAX + 96];
    int n = snprintf(buf, sizeof buf, "%" PRId64 "/%s/%" PRId64 "/%" PRId32, offer_id, spec_id,
                     sku_id, qty);
    return XXH3_64bits(buf, n > 0 && (size_t)n < sizeof buf ? (size_t)n : strlen(buf));
}

void purchase_note_checked(purchase *p, const char *order_id, int32_t line_no, int64_t offer_id,
                           const char *spec_id, int64_t sku_id, int32_t qty, int64_t at_ms)
{
    if (p == NULL)
        return;
    uint64_t line = checked_line_key(order_id, line_no);
    size_t i = (size_t)(line % PURCHASE_CHECKED_SLOTS);
    p->checked[i].line = line;
    p->checked[i].what = checked_what_key(offer_id, spec_id, sku_id, qty);
    p->checked[i].at_ms = at_ms;
}

/* The reserve's check of j's line passed moments ago for exactly the line
 * it is about to buy: no second preview. */
static bool checked_lately(const purchase *p, const pjob *j, const supplier_cargo_line *line)
{
    if (j->ep.recovered)
        return false;
    uint64_t key = checked_line_key(j->ep.order_id, j->ep.line_no);
    size_t i = (size_t)(key % PURCHASE_CHECKED_SLOTS);
    int64_t age = clock_wall_ms() - p->checked[i].at_ms;
    return p->checked[i].line == key && age >= 0 && age <= PURCHASE_CHECK_FRESH_MS &&
           p->checked[i].what == checked_what_key(line->offer_id, line->spec_id, line->sku_id,
                                                  line->quantity);
}

/* One pass of purchase.h steps 1..3 (4 follows the preview's answer). */
static void job_step(purchase *p, pjob *j)
{
    assert(j->state == PJ_WAIT);
    if (j->have_outcome) {
        job_submit(p, j);
        return;
    }
    if (j->checked && !j->need_lookup) {
        job_create(p, j);
        return;
    }
    if (strlen(j->out_id) >= SUPPLIER_OUT_ID_MAX) {
        /* The client refuses such an id, so it was never sent either: the
         * line cannot be bought under its key; waiting would loop. */
        LOG_E("purchase: outOrderId too long for the supplier API", "out_order_id", j->out_id);
        set_failed(j, ENG_FAIL_OTHER, "outOrderId too long for the supplier API");
        job_submit(p, j);
        return;
    }
    int rc;
    if (j->need_lookup) {
        j->state = PJ_CALL;
        rc = supplier_buyer_view(p->cli, NULL, j->out_id, lookup_done, j);
        if (rc == 0) {
            p->st.lookups++;
            return;
        }
    } else {
        supplier_cargo_line line;
        if (!job_current_line(p, j, &line))
            return;
        if (checked_lately(p, j, &line)) {
            p->st.checks_reused++;
            j->checked = true;
            job_create(p, j);
            return;
        }
        j->state = PJ_CALL;
        rc = supplier_order_preview(p->cli, &line, 1, p->cfg->supplier_address, NULL,
                                    preview_done, j);
        if (rc == 0) {
            p->st.previews++;
            return;
        }
    }
    /* Refused at once (queue full): nothing was sent, try again later. */
    j->state = PJ_WAIT;
    job_backoff(p, j);
}

/* Common head of the supplier callbacks: the job's call is over. Returns
 * NULL when nobody wants the answer (the worker was freed). */
static purchase *call_over(pjob *j)
{
    assert(j->state == PJ_CALL);
    j->state = PJ_WAIT;
    if (j->owner == NULL) {
        job_destroy(j);
        return NULL;
    }
    return j->owner;
}

/* A definitive refusal of a check or a create: the order fails, and the
 * offer is synced at once so the SKU stops selling what is not there. */
static void check_failed(purchase *p, pjob *j, const supplier_reply *reply)
{
    char reason[ENG_REASON_MAX + 1];
    reason_of(reason, reply->api, &reply->res);
    set_failed(j, fail_kind_of(&reply->res), reason);
    if (p->hooks.poke_sku)
        p->hooks.poke_sku(j->ep.sku, p->hooks.arg);
    job_submit(p, j);
}

static bool upstream_closed(const char *status)
{
    return strcmp(status, "cancel") == 0 || strcmp(status, "terminated") == 0;
}

static void lookup_done(const supplier_reply *reply, void *arg)
{
    pjob *j = arg;
    purchase *p = call_over(j);
    if (p == NULL)
        return;
    const supplier_result *r = &reply->res;
    if (r->outcome == SUPPLIER_OK) {
        const supplier_order_view *v = &reply->u.view;
        if (upstream_closed(v->status)) {
            /* Bought once but closed upstream (e.g. unpaid past its timeout):
             * a create with the same outOrderId would only return the closed
             * order, so the order fails rather than buying under a new id. */
            char reason[ENG_REASON_MAX + 1];
            snprintf(reason, sizeof(reason), "upstream order closed: %s", v->status);
            set_failed(j, ENG_FAIL_OTHER, reason);
        } else {
            set_purchased(j, v->order_id);
        }
        job_submit(p, j);
        return;
    }
    if (r->outcome == SUPPLIER_DEFINITIVE && strcmp(r->code, "ORDER_NOT_EXIST") == 0) {
        j->need_lookup = false;  /* never bought: check and create */
        if (p->stopped) {
            job_end(p, j, true);
            return;
        }
        job_step(p, j);
        return;
    }
    /* Retryable, or a refusal (token, signature, ...) that says nothing
     * about the order: failing it could leave an upstream order nobody
     * tracks, so wait and ask again. */
    if (r->outcome == SUPPLIER_DEFINITIVE)
        LOG_W("purchase: lookup refused, will retry", "order_id", j->ep.order_id,
              "out_order_id", j->out_id, "code", r->code, "message", r->message);
    job_backoff(p, j);
}

static void preview_done(const supplier_reply *reply, void *arg)
{
    pjob *j = arg;
    purchase *p = call_over(j);
    if (p == NULL)
        return;
    const supplier_result *r = &reply->res;
    if (r->outcome == SUPPLIER_DEFINITIVE) {
        check_failed(p, j, reply);
        return;
    }
    if (r->outcome == SUPPLIER_RETRYABLE || p->stopped) {
        job_backoff(p, j);  /* stopped: unclaims */
        return;
    }
    j->checked = true;
    job_create(p, j);
}

/* True while another line of j's order, claimed by this worker, has not
 * passed its check: its check may still fail the order, or its failure is
 * being committed (which fails j's line in the same commit). */
static bool job_checked(const purchase *p, const char *order_id, int32_t line_no)
{
    for (const pjob *q = p->jobs; q != NULL; q = q->next)
        if (q->ep.line_no == line_no && q->checked && strcmp(q->ep.order_id, order_id) == 0)
            return true;
    return false;
}

/* A line this engine will buy and has not checked yet: held (about to be
 * confirmed) or confirmed, with supplier units of a mapped SKU. */
static bool line_to_check(const purchase *p, const char *order_id, int32_t line_no,
                          const char *sku, eng_status st, int32_t from_supplier)
{
    eng_supplier_map map;
    return from_supplier > 0 && (st == ENG_ST_HELD || st == ENG_ST_CONFIRMED) &&
           engine_sku_supplier(p->eng, sku, &map) && !job_checked(p, order_id, line_no);
}

static bool siblings_unchecked(const purchase *p, const pjob *j)
{
    for (const pjob *q = p->jobs; q != NULL; q = q->next)
        if (q != j && !q->checked && strcmp(q->ep.order_id, j->ep.order_id) == 0)
            return true;
    /* Lines of the order here that no job has claimed yet. */
    if (j->ep.part_lines > 1) {
        for (int32_t k = 0; k < j->ep.part_lines; k++) {
            eng_order_view v;
            if (k != j->ep.line_no && engine_part_get(p->eng, j->ep.order_id, k, &v) &&
                line_to_check(p, j->ep.order_id, k, v.sku, v.status, v.from_supplier))
                return true;
        }
        return false;
    }
    eng_line_view lines[ENG_LINES_MAX];
    size_t n = engine_order_lines(p->eng, j->ep.order_id, lines, ENG_LINES_MAX);
    for (size_t i = 0; i < n && n > 1; i++)
        if (lines[i].line_no != j->ep.line_no &&
            line_to_check(p, j->ep.order_id, lines[i].line_no, lines[i].sku, lines[i].status,
                          lines[i].from_supplier))
            return true;
    return false;
}

/* Step 4 of a checked line: buy it, once the order's other lines this
 * worker checks have passed (bounded wait). */
static void job_create(purchase *p, pjob *j)
{
    if (siblings_unchecked(p, j)) {
        /* A duration: monotonic, so it also ends under a manual wall clock. */
        int64_t now = clock_mono_ms();
        if (j->barrier_until_ms == 0)
            j->barrier_until_ms = now + PJ_BARRIER_MAX_MS;
        if (now < j->barrier_until_ms) {
            j->state = PJ_WAIT;
            struct timeval tv = {0, PJ_BARRIER_POLL_MS * 1000};
            evtimer_add(j->timer, &tv);
            return;
        }
    }
    supplier_cargo_line line;
    if (!job_current_line(p, j, &line))
        return;
    /* idempotent = false: after an unknown outcome the client does not
     * repeat it; this worker looks the order up first (need_lookup). */
    j->state = PJ_CALL;
    if (supplier_create_order(p->cli, &line, 1, p->cfg->supplier_address, NULL,
                              j->out_id, false, create_done, j) == 0) {
        p->st.creates++;
        return;
    }
    j->state = PJ_WAIT;
    job_backoff(p, j);
}

static void create_done(const supplier_reply *reply, void *arg)
{
    pjob *j = arg;
    purchase *p = call_over(j);
    if (p == NULL)
        return;
    const supplier_result *r = &reply->res;
    if (r->outcome == SUPPLIER_OK) {
        assert(reply->u.created.n_orders >= 1);
        set_purchased(j, reply->u.created.order_ids[0]);
        job_submit(p, j);
        return;
    }
    if (r->outcome == SUPPLIER_DEFINITIVE) {
        check_failed(p, j, reply);
        return;
    }
    /* The create may have run: never create again without looking. */
    j->need_lookup = true;
    job_backoff(p, j);
}

static void job_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pjob *j = arg;
    job_step(j->owner, j);
}

/* The engine answered the outcome op (from engine_batch_done or a cancel):
 * the job ends, or waits and submits the same outcome again. */
static void op_done(eng_op *op, void *arg)
{
    pjob *j = arg;
    assert(op == &j->op && j->state == PJ_ENGINE);
    j->state = PJ_WAIT;
    purchase *p = j->owner;
    if (p == NULL) {
        job_destroy(j);
        return;
    }
    switch (op->err) {
    case ENG_OK:
        if (op->kind == ENG_OP_PURCHASED)
            p->st.purchased++;
        else
            p->st.failed++;
        job_end(p, j, false);
        return;
    case ENG_E_NOT_FOUND:
    case ENG_E_INVALID_STATE:
        p->st.dropped++;
        job_end(p, j, false);
        return;
    default:
        /* Store trouble (also with outcome_unknown: a repeat of the same
         * outcome is decided against the committed state). */
        if (p->stopped) {
            job_end(p, j, true);
            return;
        }
        job_backoff(p, j);
        return;
    }
}

/* ------------------------------------------------------------ claiming */

static void claim_more(purchase *p)
{
    while (!p->stopped && p->st.active < p->cfg->supplier_purchase_concurrency) {
        pjob *j = calloc(1, sizeof(*j));
        if (j == NULL)
            return;
        j->timer = evtimer_new(p->base, job_timer, j);
        if (j->timer == NULL) {
            free(j);
            return;
        }
        if (!engine_purchase_claim(p->eng, &j->ep)) {
            job_destroy(j);
            return;
        }
        assert(j->ep.qty > 0);
        /* The upstream outOrderId: order_id for line 0, so single-SKU
         * orders keep the id they were bought under before lines
         * existed; "<order_id>#<line_no>" for the others. */
        eng_part_key(j->ep.order_id, j->ep.line_no, j->out_id);
        j->owner = p;
        j->need_lookup = j->ep.recovered;
        j->state = PJ_WAIT;
        j->next = p->jobs;
        if (p->jobs)
            p->jobs->prev = j;
        p->jobs = j;
        p->st.active++;
        p->st.claimed++;
        job_step(p, j);
    }
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    claim_more(arg);
}

/* ------------------------------------------------------------ public */

purchase *purchase_new(struct event_base *base, const stockd_config *cfg, engine *eng,
                       supplier_client *client, const purchase_hooks *hooks,
                       char *err, size_t err_len)
{
    assert(base && cfg && eng && client);
    assert(cfg->supplier_purchase_concurrency >= 1);
    purchase *p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto oom;
    p->base = base;
    p->cfg = cfg;
    p->eng = eng;
    p->cli = client;
    if (hooks)
        p->hooks = *hooks;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    p->rng = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^
             ((uint64_t)getpid() << 32);
    if (p->rng == 0)
        p->rng = 0x9E3779B97F4A7C15ull;
    p->tick = event_new(base, -1, EV_PERSIST, wake_cb, p);
    p->wake = event_new(base, -1, 0, wake_cb, p);
    if (p->tick == NULL || p->wake == NULL)
        goto oom;
    struct timeval tv = {.tv_sec = PJ_TICK_MS / 1000, .tv_usec = (PJ_TICK_MS % 1000) * 1000};
    evtimer_add(p->tick, &tv);
    event_active(p->wake, 0, 0);  /* jobs loaded at startup: claim at once */
    return p;
oom:
    if (err && err_len)
        snprintf(err, err_len, "purchase: out of memory");
    purchase_free(p);
    return NULL;
}

void purchase_wake(purchase *p)
{
    if (p == NULL || p->stopped)
        return;
    event_active(p->wake, 0, 0);
}

void purchase_stop(purchase *p)
{
    if (p == NULL || p->stopped)
        return;
    p->stopped = true;
    event_del(p->tick);
    event_del(p->wake);
    pjob *j = p->jobs;
    while (j) {
        pjob *next = j->next;
        if (j->state == PJ_WAIT) {
            event_del(j->timer);
            job_end(p, j, true);
        }
        j = next;
    }
}

void purchase_free(purchase *p)
{
    if (p == NULL)
        return;
    p->stopped = true;
    while (p->jobs) {
        pjob *j = p->jobs;
        if (j->state == PJ_ENGINE && !engine_cancel(p->eng, &j->op)) {
            /* In a batch: its on_done frees it. */
            job_unlink(p, j);
            j->owner = NULL;
        } else if (j->state == PJ_CALL) {
            /* Should not happen (the client is freed first); its callback
             * frees it. */
            job_unlink(p, j);
            j->owner = NULL;
        } else {
            event_del(j->timer);
            job_unclaim(p, j);
            job_unlink(p, j);
            job_destroy(j);
        }
    }
    if (p->tick)
        event_free(p->tick);
    if (p->wake)
        event_free(p->wake);
    free(p);
}

void purchase_stats_get(const purchase *p, purchase_stats *out)
{
    assert(out);
    if (p == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = p->st;
}
