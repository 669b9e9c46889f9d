/* cart.c — the cross-shard coordinator for orders of several lines
 * (include/stockd/cart.h).
 *
 * A coordination ("coord") is one client call. It moves through phases,
 * and in each phase it waits for exactly one kind of thing:
 *   CP_LINES    store_find_order_lines() (order calls only);
 *   CP_PLACE    the forwarded part reserves (one peer call per part);
 *   CP_DECIDE   store_cart_decide();
 *   CP_CONFIRM  / CP_RELEASE / CP_OP  peer calls to the parts' owners;
 *   CP_DEFER    an answer queued for delivery from the loop (never inside
 *               cart_reserve / cart_order_op).
 * Peer calls of one phase all end before the next phase starts (pending
 * counts them), so a part's slot is written by one reply at a time.
 *
 * Why the decision row: a part whose hold lapsed and a late coordinator
 * must agree on the order's fate. Both ask store_cart_decide(); the first
 * writer wins and everybody follows what stands. The coordinator asks for
 * CONFIRM only once every part is held, so CONFIRM standing means every
 * part exists and may be confirmed (decided: true, even past its hold).
 *
 * Orphans: cart_free() detaches coordinations still waiting on peers
 * (owner = NULL); their remaining callbacks only count down and free.
 * Settle ops in the engine are orphaned the same way.
 */
#include "stockd/cart.h"
#include "stockd/clock.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/event.h>
#include <msgpack.h>

#include "stockd/codec.h"
#include "stockd/log.h"

#define CART_SLACK_MS 1000        /* peer timeout beyond the queue deadline sent (commit) */
#define CART_PHASE_MIN_MS 1000    /* budget floor of phases after the first */
#define CART_DEADLINE_MAX_MS 600000
#define CART_RETRY_MS 1000        /* a lapsed part whose decision failed: again after */
#define CART_SETTLING_MAX 4096    /* lapsed parts being settled at once */
#define CART_MSG_MAX 160
#define CART_CODE_MAX 32
#define CART_DECIDE_TRIES 3       /* store_cart_decide attempts before giving up */
#define CART_RELEASE_ROUNDS 2     /* release rounds of an abort (a part not reached: again) */
#define CART_WATCH_MAX 1024       /* order fetches for listeners at once (beyond: dropped) */
#define CART_WATCH_BUDGET_MS 3000 /* a watch's fetch */
#define CART_UPDATE_TIMEOUT_MS 2000 /* a peer's delivery of an order update */
#define CART_CASCADE_MAX 1024     /* failed-line cascades at once (beyond: alert only) */
#define CART_CASCADE_TRIES 8      /* rounds of a cascade before it is left to support */
#define CART_CASCADE_BACKOFF_MS 250 /* first retry; doubles, up to CART_CASCADE_BACKOFF_MAX_MS */
#define CART_CASCADE_BACKOFF_MAX_MS 8000
#define CART_CASCADE_CALL_MS 3000 /* a cascade release's deadline on the owner */
/* A part that may wait for deciding parts stops waiting this long before
 * its deadline on the owner: time to decide it there (a tick of the
 * owner's timer, a commit) and answer before that deadline ends it. */
#define CART_WAIT_MARGIN_MS 300

/* CK_WATCH: internal, no client: the whole order fetched after one of
 * this node's parts changed, told to every node's listeners. */
typedef enum coord_kind { CK_RESERVE = 0, CK_GET, CK_CONFIRM, CK_RELEASE, CK_SHIP, CK_WATCH } coord_kind;
typedef enum coord_phase {
    CP_LINES = 0, CP_PLACE, CP_RETREAT, CP_SEQ, CP_DECIDE, CP_CONFIRM, CP_RELEASE, CP_OP, CP_DEFER
} coord_phase;

/* What one part's last call gave. */
typedef enum part_res { PR_NONE = 0, PR_RECORD, PR_ERROR, PR_FAIL } part_res;

typedef struct coord coord;

typedef struct cpart {
    coord *co;
    char sku[ENG_ID_MAX + 1];
    int32_t qty;
    int32_t line_no;              /* the order's line (0..n_lines-1) */
    int32_t client_line;          /* reserve: the client's index of the first line naming sku */
    part_res res;
    bool have_rec;                /* rec holds the part's latest record */
    eng_order_view rec;
    /* PR_ERROR: the owner's error; PR_FAIL: transport reason */
    eng_err err;
    char code[CART_CODE_MAX + 1];
    char msg[CART_MSG_MAX + 1];
    bool retryable;
    bool has_available;
    int64_t available;
    char status[16];              /* invalid_state detail */
    bool deciding;                /* insufficient only because of deciding parts' holds */
    bool retreat;                 /* CP_RETREAT: erased to be placed again in order */
} cpart;

struct coord {
    cart *owner;                  /* NULL: orphaned by cart_free */
    coord *prev, *next;
    coord_kind kind;
    coord_phase phase;
    uint32_t msgid;
    char order_id[ENG_ID_MAX + 1];
    int64_t hold_ms;              /* the client's (reserve) */
    int64_t end_ms;               /* monotonic: the client's deadline */
    cart_reply_fn fn;
    void (*single_fn)(void *ctx, const char *sku);
    void *ctx;
    uint32_t n;                   /* parts */
    int32_t n_lines;              /* the order's lines (order calls: from MariaDB) */
    bool plain;                   /* reserve of one SKU: relayed as a plain reserve */
    uint32_t pending;             /* peer calls in flight */
    bool store_wait;              /* a store call in flight */
    /* CP_DEFER: the answer to give */
    eng_err defer_err;
    const char *defer_msg;
    bool defer_lines;             /* continue with lines_continue(), not an error */
    bool defer_decide;            /* ask for the decision again (want) */
    bool defer_watch;             /* CK_WATCH: start the lines lookup */
    store_decision want;          /* the decision asked for */
    uint32_t decide_tries;
    uint32_t release_rounds;
    int lines_result;             /* store_find_order_lines' result */
    /* after the decision: what to answer once the phase's calls end */
    eng_err final_err;            /* ENG_OK: the merged record */
    int32_t fail_part;            /* >= 0: answer that part's error (fail_copy) */
    cpart fail_copy;              /* kept: the part's slot is reused by its release */
    uint64_t attempt;             /* reserve, no client hold: this coordination's id; its
                                   * parts are deciding while held (engine.h "Waiting") */
    bool erase;                   /* this phase's releases erase their parts */
    int32_t short_part;           /* CP_RETREAT: the first part (by SKU) that must wait */
    uint8_t seq[ENG_LINES_MAX];   /* CP_SEQ: parts placed one by one, in SKU order */
    uint32_t n_seq, seq_at;
    bool has_told;                /* the standing ABORT carries the refusal told */
    store_abort_why told;
    coord *defer_next;
    cpart parts[ENG_LINES_MAX];
};

/* A failed line's cascade: release + as_failed to every other part. */
typedef struct cascade {
    cart *owner;                  /* NULL: orphaned by cart_free */
    struct cascade *prev, *next;
    char order_id[ENG_ID_MAX + 1];
    int32_t line_no;              /* the line whose purchase failed */
    int32_t n_lines;
    char reason[ENG_REASON_MAX + 1]; /* for the other lines: "line K failed: ..." */
    uint32_t n;                   /* the order's lines (from MariaDB) */
    struct {
        char sku[ENG_ID_MAX + 1];
        int32_t line_no;
        bool done;                /* settled (failed now, or nothing to fail) */
    } lines[ENG_LINES_MAX];
    bool have_lines;
    uint32_t pending;             /* peer calls in flight */
    bool store_wait;
    uint32_t tries;
    struct event *timer;          /* the next round (and the first, from the loop) */
} cascade;

typedef struct cascade_call {
    cascade *cs;
    uint32_t i;                   /* index into cs->lines */
} cascade_call;

typedef struct settle {
    cart *owner;                  /* NULL: orphaned */
    struct settle *prev, *next;
    eng_part_ref ref;
    eng_op op;
    bool store_wait;
} settle;

struct cart {
    cart_env env;
    coord *coords;
    settle *settles;
    cascade *cascades;
    uint32_t n_cascades;
    uint32_t n_watches;
    coord *defer_head, *defer_tail;
    struct event *defer_ev;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint64_t attempt_next;        /* ids of coordinations (random start: unique per cluster) */
    cart_stats st;
};

/* ------------------------------------------------------------ helpers */



static void copy_obj_str(const msgpack_object *v, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (v == NULL || v->type != MSGPACK_OBJECT_STR)
        return;
    size_t n = v->via.str.size < cap - 1 ? v->via.str.size : cap - 1;
    memcpy(dst, v->via.str.ptr, n);
    dst[n] = '\0';
}

static bool obj_int(const msgpack_object *v, int64_t *out)
{
    if (v == NULL)
        return false;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)v->via.u64;
        return true;
    }
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = v->via.i64;
        return true;
    }
    return false;
}

static int64_t map_int(const msgpack_object *m, const char *key)
{
    int64_t v = 0;
    return obj_int(codec_map_get(m, key), &v) ? v : 0;
}

static eng_err err_from_code(const char *code)
{
    for (int e = 1; e < ENG_E_COUNT_; e++)
        if (strcmp(eng_err_code((eng_err)e), code) == 0)
            return (eng_err)e;
    return ENG_E_INTERNAL;
}

static bool status_ended(eng_status st)
{
    return st == ENG_ST_RELEASED || st == ENG_ST_EXPIRED || st == ENG_ST_FAILED;
}

/* Reads a part's reply into its slot. A record that does not parse is a
 * transport-like failure: nothing is known. */
static void part_take_reply(cpart *p, const msgpack_object *error, const msgpack_object *result,
                            const char *reason)
{
    p->err = ENG_OK;
    p->has_available = false;
    p->deciding = false;
    p->status[0] = '\0';
    if (reason != NULL) {
        p->res = PR_FAIL;
        p->err = ENG_E_UNAVAILABLE;
        snprintf(p->code, sizeof p->code, "unavailable");
        snprintf(p->msg, sizeof p->msg, "owner of sku %s not reachable (%s); retry with the same order_id",
                 p->sku, reason);
        p->retryable = true;
        return;
    }
    if (error != NULL && error->type != MSGPACK_OBJECT_NIL) {
        p->res = PR_ERROR;
        if (error->type != MSGPACK_OBJECT_MAP) {
            p->err = ENG_E_INTERNAL;
            snprintf(p->code, sizeof p->code, "internal");
            snprintf(p->msg, sizeof p->msg, "bad error from a peer");
            p->retryable = true;
            return;
        }
        copy_obj_str(codec_map_get(error, "code"), p->code, sizeof p->code);
        copy_obj_str(codec_map_get(error, "message"), p->msg, sizeof p->msg);
        p->err = err_from_code(p->code);
        if (p->err == ENG_E_INTERNAL)
            snprintf(p->code, sizeof p->code, "internal");
        const msgpack_object *rt = codec_map_get(error, "retryable");
        p->retryable = rt != NULL && rt->type == MSGPACK_OBJECT_BOOLEAN ? rt->via.boolean
                                                                       : eng_err_retryable(p->err);
        p->has_available = obj_int(codec_map_get(error, "available"), &p->available);
        copy_obj_str(codec_map_get(error, "status"), p->status, sizeof p->status);
        const msgpack_object *dc = codec_map_get(error, "deciding");
        p->deciding = p->err == ENG_E_INSUFFICIENT && dc != NULL &&
                      dc->type == MSGPACK_OBJECT_BOOLEAN && dc->via.boolean;
        return;
    }
    eng_order_view *o = &p->rec;
    char st[16];
    copy_obj_str(result ? codec_map_get(result, "status") : NULL, st, sizeof st);
    if (result == NULL || result->type != MSGPACK_OBJECT_MAP || !eng_status_parse(st, &o->status)) {
        p->res = PR_FAIL;
        p->err = ENG_E_INTERNAL;
        snprintf(p->code, sizeof p->code, "internal");
        snprintf(p->msg, sizeof p->msg, "bad order record from the owner of sku %s", p->sku);
        p->retryable = true;
        return;
    }
    p->res = PR_RECORD;
    p->have_rec = true;
    copy_obj_str(codec_map_get(result, "order_id"), o->order_id, sizeof o->order_id);
    copy_obj_str(codec_map_get(result, "sku"), o->sku, sizeof o->sku);
    o->qty = (int32_t)map_int(result, "qty");
    o->from_own = (int32_t)map_int(result, "from_own");
    o->from_supplier = (int32_t)map_int(result, "from_supplier");
    o->available = map_int(result, "available");
    o->created_at_ms = map_int(result, "created_at");
    o->updated_at_ms = map_int(result, "updated_at");
    o->hold_expires_at_ms = map_int(result, "hold_expires_at");
    copy_obj_str(codec_map_get(result, "upstream_order_id"), o->upstream_order_id,
                 sizeof o->upstream_order_id);
    copy_obj_str(codec_map_get(result, "reason"), o->reason, sizeof o->reason);
    o->purchased_at_ms = map_int(result, "purchased_at");
    const msgpack_object *ss = codec_map_get(result, "supplier_settled");
    o->supplier_settled = ss != NULL && ss->type == MSGPACK_OBJECT_BOOLEAN && ss->via.boolean;
    o->line_no = p->line_no;
}

/* ------------------------------------------------------------ replies */

static void pack_error(cart *c, uint32_t msgid, eng_err err, const char *code, const char *msg,
                       bool retryable, const cpart *p, bool with_line)
{
    uint32_t extra = 0;
    if (with_line && p != NULL)
        extra += 2;
    bool avail = p != NULL && err == ENG_E_INSUFFICIENT && p->has_available;
    bool status = p != NULL && err == ENG_E_INVALID_STATE && p->status[0] != '\0';
    extra += avail + status;
    codec_pack_response_err_head(&c->pk, msgid, code ? code : eng_err_code(err), msg, retryable, extra);
    /* The key order of one instance's answer (server.c pack_eng_error). */
    if (avail)
        codec_pack_kv_int(&c->pk, "available", p->available);
    if (with_line && p != NULL) {
        codec_pack_kv_int(&c->pk, "line", p->client_line);
        codec_pack_kv_str(&c->pk, "sku", p->sku);
    }
    if (status)
        codec_pack_kv_str(&c->pk, "status", p->status);
    codec_pack_response_err_tail(&c->pk);
}

static void pack_part_error(cart *c, const coord *co, const cpart *p)
{
    pack_error(c, co->msgid, p->err, p->code, p->msg[0] ? p->msg : eng_err_code(p->err), p->retryable,
               p, true);
}

/* The order's status from its lines: the engine's rule, except that an
 * order whose lines all ended differently (an abort released some parts
 * and others lapsed) reads expired, or released when none lapsed. */
static eng_status merged_status(const eng_line_view *lv, uint32_t n)
{
    bool all_ended = true, any_expired = false, any_failed = false;
    for (uint32_t i = 0; i < n; i++) {
        all_ended = all_ended && status_ended(lv[i].status);
        any_expired = any_expired || lv[i].status == ENG_ST_EXPIRED;
        any_failed = any_failed || lv[i].status == ENG_ST_FAILED;
    }
    if (all_ended && !any_failed)
        return any_expired ? ENG_ST_EXPIRED : ENG_ST_RELEASED;
    return eng_order_status_of(lv, n);
}

/* The whole order from its parts' records: sums, the order's status from
 * the lines, one entry per line. */
static void pack_merged(cart *c, const coord *co)
{
    eng_line_view lv[ENG_LINES_MAX];
    const cpart *first = NULL;
    int64_t qty = 0, own = 0, sup = 0, created = 0, updated = 0, hold = 0, bought = 0;
    bool all_bought = true, any_bought = false, settled = true;
    const char *reason = "";
    uint32_t n = 0;
    for (uint32_t i = 0; i < co->n; i++) {
        const cpart *p = &co->parts[i];
        if (!p->have_rec)
            continue;
        const eng_order_view *o = &p->rec;
        if (first == NULL)
            first = p;
        memset(&lv[n], 0, sizeof lv[n]);
        lv[n].line_no = p->line_no;
        snprintf(lv[n].sku, sizeof lv[n].sku, "%s", p->sku);
        lv[n].qty = o->qty;
        lv[n].from_own = o->from_own;
        lv[n].from_supplier = o->from_supplier;
        lv[n].status = o->status;
        snprintf(lv[n].upstream_order_id, sizeof lv[n].upstream_order_id, "%s", o->upstream_order_id);
        n++;
        qty += o->qty;
        own += o->from_own;
        sup += o->from_supplier;
        if (created == 0 || (o->created_at_ms > 0 && o->created_at_ms < created))
            created = o->created_at_ms;
        if (o->updated_at_ms > updated)
            updated = o->updated_at_ms;
        if (o->hold_expires_at_ms > 0 && (hold == 0 || o->hold_expires_at_ms < hold))
            hold = o->hold_expires_at_ms;
        if (reason[0] == '\0' && o->reason[0] != '\0')
            reason = o->reason;
        if (o->from_supplier > 0) {
            if (o->purchased_at_ms > 0) {
                any_bought = true;
                if (o->purchased_at_ms > bought)
                    bought = o->purchased_at_ms;
                settled = settled && o->supplier_settled;
            } else {
                all_bought = false;
            }
        }
    }
    assert(first != NULL);
    bool has_bought = any_bought && all_bought;
    bool has_reason = reason[0] != '\0';
    /* One line: the single-SKU record, as one instance answers it. */
    bool one = co->plain;
    bool up = one && first->rec.upstream_order_id[0] != '\0';
    codec_pack_response_ok_head(&c->pk, co->msgid);
    msgpack_pack_map(&c->pk, 9 + (hold > 0) + up + has_reason + 2 * has_bought + 2 * !one);
    codec_pack_kv_str(&c->pk, "order_id", co->order_id);
    codec_pack_kv_str(&c->pk, "sku", first->sku);
    codec_pack_kv_int(&c->pk, "qty", qty);
    codec_pack_kv_str(&c->pk, "status", eng_status_name(merged_status(lv, n)));
    codec_pack_kv_int(&c->pk, "from_own", own);
    codec_pack_kv_int(&c->pk, "from_supplier", sup);
    codec_pack_kv_int(&c->pk, "available", first->rec.available);
    codec_pack_kv_int(&c->pk, "created_at", created);
    codec_pack_kv_int(&c->pk, "updated_at", updated);
    if (hold > 0)
        codec_pack_kv_int(&c->pk, "hold_expires_at", hold);
    if (up)
        codec_pack_kv_str(&c->pk, "upstream_order_id", first->rec.upstream_order_id);
    if (has_reason)
        codec_pack_kv_str(&c->pk, "reason", reason);
    if (has_bought) {
        codec_pack_kv_int(&c->pk, "purchased_at", bought);
        codec_pack_kv_bool(&c->pk, "supplier_settled", settled);
    }
    if (one)
        return;
    codec_pack_kv_int(&c->pk, "n_lines", co->n_lines);
    codec_pack_cstr(&c->pk, "lines");
    msgpack_pack_array(&c->pk, n);
    for (uint32_t i = 0; i < n; i++) {
        bool lup = lv[i].upstream_order_id[0] != '\0';
        msgpack_pack_map(&c->pk, 6 + lup);
        codec_pack_kv_int(&c->pk, "line", lv[i].line_no);
        codec_pack_kv_str(&c->pk, "sku", lv[i].sku);
        codec_pack_kv_int(&c->pk, "qty", lv[i].qty);
        codec_pack_kv_int(&c->pk, "from_own", lv[i].from_own);
        codec_pack_kv_int(&c->pk, "from_supplier", lv[i].from_supplier);
        codec_pack_kv_str(&c->pk, "status", eng_status_name(lv[i].status));
        if (lup)
            codec_pack_kv_str(&c->pk, "upstream_order_id", lv[i].upstream_order_id);
    }
}

static void coord_unlink(cart *c, coord *co)
{
    if (co->prev)
        co->prev->next = co->next;
    else
        c->coords = co->next;
    if (co->next)
        co->next->prev = co->prev;
    co->prev = co->next = NULL;
    if (co->kind == CK_WATCH) {
        assert(c->n_watches > 0);
        c->n_watches--;
        return;
    }
    assert(c->st.inflight > 0);
    c->st.inflight--;
}

/* Hands the packed answer (in c->sb) to the server and frees co. */
static void coord_answer(cart *c, coord *co)
{
    assert(co->pending == 0 && !co->store_wait);
    coord_unlink(c, co);
    co->fn(co->ctx, c->sb.data, c->sb.size);
    msgpack_sbuffer_clear(&c->sb);
    free(co);
}

static void coord_answer_err(cart *c, coord *co, eng_err err, const char *msg)
{
    msgpack_sbuffer_clear(&c->sb);
    if (err == ENG_E_UNAVAILABLE)
        c->st.unavailable++;
    pack_error(c, co->msgid, err, NULL, msg, eng_err_retryable(err), NULL, false);
    coord_answer(c, co);
}

static void coord_answer_part_err(cart *c, coord *co, const cpart *p)
{
    msgpack_sbuffer_clear(&c->sb);
    if (p->err == ENG_E_UNAVAILABLE)
        c->st.unavailable++;
    pack_part_error(c, co, p);
    coord_answer(c, co);
}

static void coord_answer_merged(cart *c, coord *co)
{
    msgpack_sbuffer_clear(&c->sb);
    pack_merged(c, co);
    coord_answer(c, co);
}

/* ------------------------------------------------------------ deferral */

static void lines_continue(cart *c, coord *co);
static void start_decide(cart *c, coord *co, store_decision want);
static void watch_start(cart *c, coord *co);

/* Frees a coordination that answers nobody (CK_WATCH). */
static void coord_drop(cart *c, coord *co)
{
    assert(co->pending == 0 && !co->store_wait);
    coord_unlink(c, co);
    free(co);
}

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cart *c = arg;
    coord *co = c->defer_head;
    c->defer_head = c->defer_tail = NULL;
    while (co != NULL) {
        coord *next = co->defer_next;
        if (co->defer_lines) {
            co->defer_lines = false;
            lines_continue(c, co);
        } else if (co->defer_decide) {
            co->defer_decide = false;
            start_decide(c, co, co->want);
        } else if (co->defer_watch) {
            co->defer_watch = false;
            watch_start(c, co);
        } else if (co->kind == CK_WATCH) {
            coord_drop(c, co);
        } else {
            coord_answer_err(c, co, co->defer_err, co->defer_msg);
        }
        co = next;
    }
}

static void coord_defer(cart *c, coord *co)
{
    co->phase = CP_DEFER;
    co->defer_next = NULL;
    if (c->defer_tail)
        c->defer_tail->defer_next = co;
    else
        c->defer_head = co;
    c->defer_tail = co;
    event_active(c->defer_ev, EV_TIMEOUT, 0);
}

static void coord_defer_err(cart *c, coord *co, eng_err err, const char *msg)
{
    co->defer_err = err;
    co->defer_msg = msg;
    coord_defer(c, co);
}

/* ------------------------------------------------------------ peer calls */

static void part_reply_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                          const char *reason);

/* Budget of a call of the current phase: what is left of the client's
 * deadline, at least CART_PHASE_MIN_MS after the first phase. */
static int64_t phase_budget(const coord *co)
{
    int64_t left = co->end_ms - clock_mono_ms();
    if (co->phase != CP_PLACE && left < CART_PHASE_MIN_MS)
        left = CART_PHASE_MIN_MS;
    if (left < 1)
        left = 1;
    if (left > CART_DEADLINE_MAX_MS)
        left = CART_DEADLINE_MAX_MS;
    return left;
}

static void kv_str(msgpack_object_kv *kv, const char *key, const char *val)
{
    kv->key.type = MSGPACK_OBJECT_STR;
    kv->key.via.str.ptr = key;
    kv->key.via.str.size = (uint32_t)strlen(key);
    kv->val.type = MSGPACK_OBJECT_STR;
    kv->val.via.str.ptr = val;
    kv->val.via.str.size = (uint32_t)strlen(val);
}

static void kv_int(msgpack_object_kv *kv, const char *key, int64_t val)
{
    assert(val >= 0);
    kv->key.type = MSGPACK_OBJECT_STR;
    kv->key.via.str.ptr = key;
    kv->key.via.str.size = (uint32_t)strlen(key);
    kv->val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    kv->val.via.u64 = (uint64_t)val;
}

static void kv_bool(msgpack_object_kv *kv, const char *key, bool val)
{
    kv->key.type = MSGPACK_OBJECT_STR;
    kv->key.via.str.ptr = key;
    kv->key.via.str.size = (uint32_t)strlen(key);
    kv->val.type = MSGPACK_OBJECT_BOOLEAN;
    kv->val.via.boolean = val;
}

/* Sends method for part p to its SKU's owner (this node included, through
 * its own address: one path for every part). */
static void part_call(cart *c, coord *co, cpart *p, const char *method)
{
    const ring_node *nodes;
    size_t nn = ring_nodes(c->env.rg, &nodes);
    uint32_t o = ring_owner(c->env.rg, p->sku, strlen(p->sku));
    assert(o < nn);
    (void)nn;
    int64_t budget = phase_budget(co);
    msgpack_object_kv kv[12];
    uint32_t k = 0;
    kv_str(&kv[k++], "order_id", co->order_id);
    kv_str(&kv[k++], "sku", p->sku);
    bool reserve = strcmp(method, "reserve") == 0;
    bool release = strcmp(method, "release") == 0;
    if (reserve) {
        kv_int(&kv[k++], "qty", p->qty);
        int64_t hold = co->hold_ms > 0 ? co->hold_ms : (int64_t)c->env.cfg->cart_hold_ms;
        if (!co->plain || co->hold_ms > 0)
            kv_int(&kv[k++], "hold_ms", hold);
    }
    if (!co->plain) {
        kv_int(&kv[k++], "part_lines", co->n_lines);
        kv_int(&kv[k++], "line_no", p->line_no);
        /* Waiting (engine.h): a part held for the client is never waited
         * for, so its placement may wait in parallel; a deciding part
         * waits only in the one global order (CP_SEQ). */
        int64_t wait = budget - CART_WAIT_MARGIN_MS;
        bool may_wait = co->phase == CP_SEQ || (co->phase == CP_PLACE && co->attempt == 0);
        if (reserve && co->attempt != 0)
            kv_int(&kv[k++], "attempt", (int64_t)co->attempt);
        if (reserve && may_wait && wait > 0)
            kv_int(&kv[k++], "wait_ms", wait < ENG_WAIT_MS_MAX ? wait : ENG_WAIT_MS_MAX);
        if (release && co->erase) {
            kv_bool(&kv[k++], "erase", true);
            if (co->phase == CP_RETREAT)
                kv_int(&kv[k++], "attempt", (int64_t)co->attempt);
        }
    }
    if (strcmp(method, "order.get") != 0)
        kv_int(&kv[k++], "deadline_ms", budget);
    if (strcmp(method, "confirm") == 0)
        kv_bool(&kv[k++], "decided", true);
    assert(k <= 12);
    msgpack_object map = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = k, .ptr = kv}};
    p->res = PR_NONE;
    co->pending++;
    peer_call(c->env.peers, nodes[o].name, nodes[o].host, nodes[o].port, method, &map, "_fwd",
              ring_version(c->env.rg), (uint32_t)(budget + CART_SLACK_MS), part_reply_cb, p);
}

/* Calls method on every part that sel accepts; false when none was. */
static bool parts_call(cart *c, coord *co, const char *method, bool (*sel)(const cpart *p))
{
    bool any = false;
    for (uint32_t i = 0; i < co->n; i++) {
        cpart *p = &co->parts[i];
        if (sel != NULL && !sel(p))
            continue;
        part_call(c, co, p, method);
        any = true;
    }
    return any;
}

/* ------------------------------------------------------------ phases */

static void phase_end(cart *c, coord *co);
static void decide_cb(const char *order_id, int result, const store_abort_why *why, void *arg);

/* What an abort of a reserve tells the client, kept with the decision so
 * that a retry tells it again: a refusal (not retryable) of the failing
 * part; false for a transport failure or a retryable error (nothing
 * stored: a retry then finds an abort without one, and answers expired). */
static bool abort_why(const coord *co, store_abort_why *out)
{
    if (co->kind != CK_RESERVE || co->fail_part < 0)
        return false;
    const cpart *p = &co->parts[co->fail_part];
    if (p->res != PR_ERROR || p->retryable || p->err == ENG_E_INTERNAL ||
        strlen(p->code) > STORE_ABORT_CODE_MAX)
        return false;
    memset(out, 0, sizeof *out);
    snprintf(out->code, sizeof out->code, "%s", p->code);
    out->line = p->client_line;
    snprintf(out->sku, sizeof out->sku, "%s", p->sku);
    out->available = p->has_available ? p->available : -1;
    return true;
}

static void start_decide(cart *c, coord *co, store_decision want)
{
    co->phase = CP_DECIDE;
    co->want = want;
    co->decide_tries++;
    co->store_wait = true;
    store_abort_why why;
    bool has_why = want == STORE_DECIDE_ABORT && abort_why(co, &why);
    if (store_cart_decide(c->env.st, co->order_id, want, has_why ? &why : NULL, decide_cb, co) != 0) {
        co->store_wait = false;
        coord_answer_err(c, co, ENG_E_UNAVAILABLE, "decision not recorded (store busy); retry with the same order_id");
    }
}

static bool sel_all(const cpart *p)
{
    (void)p;
    return true;
}

/* Releases of an abort: every part that may exist (one never placed
 * answers not_found, harmless); a part already ended needs none. */
static bool sel_release(const cpart *p)
{
    if (p->res == PR_ERROR && p->err == ENG_E_CONFLICT)
        return false;  /* not ours: the order_id names another order's line */
    return !(p->have_rec && status_ended(p->rec.status));
}

static bool sel_held(const cpart *p)
{
    return p->have_rec && p->rec.status == ENG_ST_HELD;
}

static void start_release(cart *c, coord *co, eng_err final_err, int32_t fail_part)
{
    co->phase = CP_RELEASE;
    co->final_err = final_err;
    co->fail_part = fail_part;
    if (fail_part >= 0)
        co->fail_copy = co->parts[fail_part];
    c->st.aborted++;
    if (!parts_call(c, co, "release", sel_release))
        phase_end(c, co);
}

static void start_confirm(cart *c, coord *co)
{
    co->phase = CP_CONFIRM;
    c->st.confirmed++;
    if (!parts_call(c, co, "confirm", sel_held))
        phase_end(c, co);
}

static bool sel_unreached(const cpart *p)
{
    return p->res == PR_FAIL;
}

/* The refusal a standing ABORT carries, as one instance answers it. */
static void answer_told(cart *c, coord *co)
{
    cpart p;
    memset(&p, 0, sizeof p);
    p.err = err_from_code(co->told.code);
    snprintf(p.code, sizeof p.code, "%s", co->told.code);
    snprintf(p.msg, sizeof p.msg, "%s",
             p.err == ENG_E_INSUFFICIENT   ? "insufficient stock"
             : p.err == ENG_E_UNKNOWN_SKU  ? "unknown sku"
             : p.err == ENG_E_CONFLICT     ? "order_id already used for another sku or qty"
             : p.err == ENG_E_EXPIRED      ? "the order was aborted"
                                           : "the order was refused");
    p.retryable = false;
    p.has_available = co->told.available >= 0;
    p.available = co->told.available;
    p.client_line = co->told.line;
    snprintf(p.sku, sizeof p.sku, "%s", co->told.sku);
    msgpack_sbuffer_clear(&c->sb);
    pack_error(c, co->msgid, p.err, p.code, p.msg, false, &p, co->told.line >= 0 && p.sku[0]);
    coord_answer(c, co);
}

/* Answers what an abort decided, once its releases are done. */
static void finish_release(cart *c, coord *co)
{
    /* A release lost on the way (timeout, connection) would leave its part
     * held until the hold lapses: once more while the client waits. A
     * release finding nothing (the part never placed, or ended already)
     * answers not_found, which is fine here. */
    if (++co->release_rounds < CART_RELEASE_ROUNDS && parts_call(c, co, "release", sel_unreached))
        return;
    if (co->has_told && co->kind == CK_RESERVE) {
        answer_told(c, co);
        return;
    }
    if (co->has_told) {
        /* A refused order left nothing: as on one instance. */
        coord_answer_err(c, co, ENG_E_NOT_FOUND, "order not found");
        return;
    }
    if (co->fail_part >= 0) {
        coord_answer_part_err(c, co, &co->fail_copy);
        return;
    }
    if (co->final_err != ENG_OK) {
        coord_answer_err(c, co, co->final_err,
                         co->final_err == ENG_E_EXPIRED ? "the order was aborted (a hold lapsed or a line failed)"
                                                        : "order not settled; retry with the same order_id");
        return;
    }
    /* The release replies are the records now; a part that refused
     * (e.g. shipped) keeps its error as the answer. */
    for (uint32_t i = 0; i < co->n; i++) {
        cpart *p = &co->parts[i];
        if (p->res == PR_FAIL) {
            coord_answer_part_err(c, co, p);
            return;
        }
    }
    for (uint32_t i = 0; i < co->n; i++) {
        cpart *p = &co->parts[i];
        if (p->res == PR_ERROR && p->err != ENG_E_NOT_FOUND) {
            coord_answer_part_err(c, co, p);
            return;
        }
    }
    bool any = false;
    for (uint32_t i = 0; i < co->n; i++)
        any = any || co->parts[i].have_rec;
    if (!any)
        coord_answer_err(c, co, ENG_E_NOT_FOUND, "order not found");
    else
        coord_answer_merged(c, co);
}

/* Answers after confirm / ship / get calls: the first failure, else the
 * merged record. */
static void finish_records(cart *c, coord *co, bool skip_not_found)
{
    for (uint32_t i = 0; i < co->n; i++) {
        cpart *p = &co->parts[i];
        if (p->res == PR_FAIL) {
            coord_answer_part_err(c, co, p);
            return;
        }
    }
    bool any = false;
    for (uint32_t i = 0; i < co->n; i++) {
        cpart *p = &co->parts[i];
        if (p->res == PR_ERROR && !(skip_not_found && p->err == ENG_E_NOT_FOUND)) {
            coord_answer_part_err(c, co, p);
            return;
        }
        any = any || p->have_rec;
    }
    if (!any)
        coord_answer_err(c, co, ENG_E_NOT_FOUND, "order not found");
    else
        coord_answer_merged(c, co);
}

/* ---- Waiting in one global order (engine.h "Waiting").
 * The first placement goes to every owner at once and waits for nobody.
 * When a part finds its SKU short only because of parts of carts still
 * deciding, the cart backs out of every part it holds on a SKU after that
 * one (by SKU name: erased, only if still this coordination's) and places
 * the rest one by one in SKU order, each allowed to wait. A cart then
 * waits only while holding SKUs before the one it waits for, so no circle
 * of carts can wait on each other; a wait ends by the deadline. */

static int seq_cmp_sku(const coord *co, uint8_t a, uint8_t b)
{
    return strcmp(co->parts[a].sku, co->parts[b].sku);
}

static void seq_start(cart *c, coord *co)
{
    co->n_seq = 0;
    for (uint32_t i = 0; i < co->n; i++) {
        cpart *p = &co->parts[i];
        if (p->res == PR_RECORD && p->rec.status == ENG_ST_HELD)
            continue;
        /* Insertion by SKU: at most ENG_LINES_MAX. */
        uint32_t k = co->n_seq++;
        while (k > 0 && seq_cmp_sku(co, co->seq[k - 1], (uint8_t)i) > 0) {
            co->seq[k] = co->seq[k - 1];
            k--;
        }
        co->seq[k] = (uint8_t)i;
    }
    assert(co->n_seq > 0);
    co->phase = CP_SEQ;
    co->seq_at = 0;
    c->st.sequential++;
    part_call(c, co, &co->parts[co->seq[0]], "reserve");
}

static void start_retreat(cart *c, coord *co, int32_t wait)
{
    co->phase = CP_RETREAT;
    co->short_part = wait;
    co->erase = true;
    const char *at = co->parts[wait].sku;
    bool any = false;
    for (uint32_t i = 0; i < co->n; i++) {
        cpart *p = &co->parts[i];
        p->retreat = p->res == PR_RECORD && p->rec.status == ENG_ST_HELD && strcmp(p->sku, at) > 0;
        if (p->retreat) {
            part_call(c, co, p, "release");
            any = true;
        }
    }
    co->erase = false;
    if (!any)
        seq_start(c, co);
}

static void retreat_done(cart *c, coord *co)
{
    for (uint32_t i = 0; i < co->n; i++) {
        cpart *p = &co->parts[i];
        if (!p->retreat)
            continue;
        p->retreat = false;
        if (p->res != PR_RECORD || p->rec.status != ENG_ST_RELEASED) {
            /* Not erased (another coordination of the order holds it now,
             * or the owner did not answer): end this one by the decision. */
            co->fail_part = co->short_part;
            start_decide(c, co, STORE_DECIDE_ABORT);
            return;
        }
        p->res = PR_NONE;
        p->have_rec = false;
    }
    seq_start(c, co);
}

static void place_done(cart *c, coord *co);

static void seq_next(cart *c, coord *co)
{
    uint8_t i = co->seq[co->seq_at];
    cpart *p = &co->parts[i];
    if (p->res != PR_RECORD) {
        co->fail_part = i;
        start_decide(c, co, STORE_DECIDE_ABORT);
        return;
    }
    if (++co->seq_at < co->n_seq) {
        part_call(c, co, &co->parts[co->seq[co->seq_at]], "reserve");
        return;
    }
    place_done(c, co);  /* every part answered: held, or ended (a retry) */
}

/* Reserve: every part answered (placed, refused or not reached). */
static void place_done(cart *c, coord *co)
{
    if (co->plain) {
        cpart *p = &co->parts[0];
        if (p->res == PR_RECORD) {
            co->n_lines = 1;
            coord_answer_merged(c, co);  /* one line: the record with its lines */
        } else {
            coord_answer_part_err(c, co, p);
        }
        return;
    }
    int32_t fail = -1, wait = -1;
    uint32_t held = 0, ended = 0;
    for (uint32_t i = 0; i < co->n; i++) {
        cpart *p = &co->parts[i];
        if (p->res == PR_ERROR && p->deciding && co->phase == CP_PLACE && co->attempt != 0) {
            /* Short only for carts still deciding: placed again, waiting,
             * in SKU order (below). */
            if (wait < 0 || strcmp(p->sku, co->parts[wait].sku) < 0)
                wait = (int32_t)i;
            continue;
        }
        if (p->res != PR_RECORD) {
            if (fail < 0)
                fail = (int32_t)i;
            continue;
        }
        held += p->rec.status == ENG_ST_HELD;
        ended += status_ended(p->rec.status);
    }
    if (fail < 0 && wait >= 0 && ended == 0) {
        start_retreat(c, co, wait);
        return;
    }
    if (fail < 0 && wait >= 0)
        fail = wait;
    co->fail_part = fail;
    if (fail >= 0) {
        start_decide(c, co, STORE_DECIDE_ABORT);
        return;
    }
    if (ended == 0 && held == co->n && co->hold_ms > 0) {
        coord_answer_merged(c, co);
        return;
    }
    if (ended == co->n) {
        coord_answer_merged(c, co);  /* a retry of an order already ended */
        return;
    }
    start_decide(c, co, ended == 0 ? STORE_DECIDE_CONFIRM : STORE_DECIDE_ABORT);
}

static void decide_cb(const char *order_id, int result, const store_abort_why *why, void *arg)
{
    (void)order_id;
    coord *co = arg;
    co->store_wait = false;
    cart *c = co->owner;
    if (c == NULL) {
        if (co->pending == 0)
            free(co);
        return;
    }
    assert(co->phase == CP_DECIDE);
    if (result < 0 && co->decide_tries < CART_DECIDE_TRIES) {
        /* Again, from the loop (the store's reader is not to be called
         * from inside its delivery): giving up leaves every part held
         * until its hold lapses, which is what stockbench's audit saw. */
        co->defer_decide = true;
        coord_defer(c, co);
        return;
    }
    if (result < 0) {
        /* Nothing known: leave the parts; their holds lapse and settle. */
        if (co->kind == CK_RESERVE && co->fail_part >= 0 && co->parts[co->fail_part].res == PR_ERROR)
            coord_answer_part_err(c, co, &co->parts[co->fail_part]);
        else
            coord_answer_err(c, co, ENG_E_UNAVAILABLE,
                             "order decision not recorded (MariaDB); retry with the same order_id");
        return;
    }
    bool confirm = result == STORE_DECIDE_CONFIRM;
    if (!confirm && why != NULL) {
        /* A refused order: it leaves nothing, and says so again. */
        co->has_told = true;
        co->told = *why;
        co->erase = true;
    }
    switch (co->kind) {
    case CK_RESERVE:
        if (confirm) {
            /* Decided (now or by an earlier attempt): every part exists. */
            co->final_err = ENG_OK;
            start_confirm(c, co);
        } else if (co->fail_part >= 0 || co->has_told) {
            /* Refused (a part refused or not reached): no part of it
             * stays, none tells a record (engine.h "Erasing"). */
            co->erase = true;
            start_release(c, co, ENG_OK, co->fail_part);
        } else {
            /* A fresh confirm that lost to a lapsed part, or a retry finding
             * a half-ended order: finish the abort; the order is over. */
            start_release(c, co, ENG_E_EXPIRED, -1);
        }
        return;
    case CK_CONFIRM:
        if (confirm && co->fail_part < 0) {
            co->phase = CP_CONFIRM;
            c->st.confirmed++;
            parts_call(c, co, "confirm", sel_all);
        } else {
            start_release(c, co, ENG_E_EXPIRED, -1);
        }
        return;
    case CK_RELEASE:
        co->phase = CP_RELEASE;
        co->final_err = ENG_OK;
        co->fail_part = -1;
        c->st.aborted++;
        parts_call(c, co, "release", sel_all);
        return;
    default:
        assert(!"decision for a call that needs none");
    }
}

static void watch_finish(cart *c, coord *co);

/* All peer calls of the phase ended. */
static void phase_end(cart *c, coord *co)
{
    switch (co->phase) {
    case CP_PLACE:
        place_done(c, co);
        return;
    case CP_RETREAT:
        retreat_done(c, co);
        return;
    case CP_SEQ:
        seq_next(c, co);
        return;
    case CP_CONFIRM:
        finish_records(c, co, false);
        return;
    case CP_RELEASE:
        finish_release(c, co);
        return;
    case CP_OP:
        if (co->kind == CK_WATCH)
            watch_finish(c, co);
        else
            finish_records(c, co, co->kind == CK_GET);
        return;
    default:
        assert(!"peer calls ended in a phase without any");
    }
}

static void part_reply_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                          const char *reason)
{
    cpart *p = ctx;
    coord *co = p->co;
    assert(co->pending > 0);
    co->pending--;
    if (co->owner == NULL) {
        if (co->pending == 0 && !co->store_wait)
            free(co);
        return;
    }
    part_take_reply(p, error, result, reason);
    if (co->pending == 0)
        phase_end(co->owner, co);
}

/* ------------------------------------------------------------ API */

static coord *coord_new(cart *c, coord_kind kind, uint32_t msgid, const char *order_id,
                        int64_t deadline_ms, cart_reply_fn fn, void *ctx)
{
    coord *co = calloc(1, sizeof(*co));
    if (co == NULL)
        return NULL;
    co->owner = c;
    co->kind = kind;
    co->msgid = msgid;
    snprintf(co->order_id, sizeof co->order_id, "%s", order_id);
    if (deadline_ms < 1)
        deadline_ms = 1;
    if (deadline_ms > CART_DEADLINE_MAX_MS)
        deadline_ms = CART_DEADLINE_MAX_MS;
    co->end_ms = clock_mono_ms() + deadline_ms;
    co->fn = fn;
    co->ctx = ctx;
    co->fail_part = -1;
    for (uint32_t i = 0; i < ENG_LINES_MAX; i++)
        co->parts[i].co = co;
    co->next = c->coords;
    if (c->coords)
        c->coords->prev = co;
    c->coords = co;
    if (kind == CK_WATCH)
        c->n_watches++;  /* not the clients' cart_inflight_max */
    else
        c->st.inflight++;
    return co;
}

/* Out of memory: the answer still comes from the loop. A tiny static
 * fallback would need its own queue; an allocation failure this small is
 * fatal anyway. */
static coord *coord_new_or_die(cart *c, coord_kind kind, uint32_t msgid, const char *order_id,
                               int64_t deadline_ms, cart_reply_fn fn, void *ctx)
{
    coord *co = coord_new(c, kind, msgid, order_id, deadline_ms, fn, ctx);
    if (co == NULL) {
        LOG_E("cart: out of memory");
        abort();
    }
    return co;
}

static bool over_limit(cart *c, coord *co)
{
    if (c->st.inflight <= c->env.cfg->cart_inflight_max)
        return false;
    c->st.busy++;
    coord_defer_err(c, co, ENG_E_BUSY, "too many orders of several lines in flight; retry");
    return true;
}

void cart_reserve(cart *c, uint32_t msgid, const char *order_id, const eng_line_in *lines,
                  uint32_t n, int64_t hold_ms, int64_t deadline_ms, cart_reply_fn fn, void *ctx)
{
    assert(n >= 1 && n <= ENG_LINES_MAX);
    coord *co = coord_new_or_die(c, CK_RESERVE, msgid, order_id, deadline_ms, fn, ctx);
    c->st.reserves++;
    co->hold_ms = hold_ms;
    /* The engine's numbering: one part per distinct SKU, in order of first
     * appearance, quantities summed. */
    eng_cart ec;
    int32_t bad;
    if (!eng_cart_of(lines, n, &ec, &bad)) {
        coord_defer_err(c, co, ENG_E_INVALID, "the lines of one sku sum above the qty limit");
        return;
    }
    for (uint32_t k = 0; k < ec.n; k++) {
        cpart *p = &co->parts[k];
        snprintf(p->sku, sizeof p->sku, "%s", ec.line[k].sku);
        p->line_no = (int32_t)k;
        p->client_line = ec.first[k];
        p->qty = ec.line[k].qty;
    }
    co->n = ec.n;
    if (over_limit(c, co))
        return;
    co->n_lines = (int32_t)co->n;
    co->plain = co->n == 1;
    /* Decided at once (no client hold): its parts are deciding while held. */
    if (!co->plain && hold_ms == 0) {
        co->attempt = c->attempt_next++;
        if (c->attempt_next > ((uint64_t)1 << 62))
            c->attempt_next = 1;
    }
    co->phase = CP_PLACE;
    parts_call(c, co, "reserve", sel_all);
}

static void lines_cb(const char *order_id, int result, const store_line_ref *lines, void *arg);

void cart_order_op(cart *c, uint32_t msgid, const char *method, const char *order_id,
                   int64_t deadline_ms, cart_reply_fn fn,
                   void (*single_fn)(void *ctx, const char *sku), void *ctx)
{
    coord_kind kind;
    if (strcmp(method, "order.get") == 0)
        kind = CK_GET;
    else if (strcmp(method, "confirm") == 0)
        kind = CK_CONFIRM;
    else if (strcmp(method, "release") == 0)
        kind = CK_RELEASE;
    else if (strcmp(method, "ship") == 0)
        kind = CK_SHIP;
    else
        abort();  /* not an order call: a bug in the caller */
    coord *co = coord_new_or_die(c, kind, msgid, order_id, deadline_ms, fn, ctx);
    co->single_fn = single_fn;
    if (over_limit(c, co))
        return;
    co->phase = CP_LINES;
    co->store_wait = true;
    if (store_find_order_lines(c->env.st, order_id, lines_cb, co) != 0) {
        co->store_wait = false;
        coord_defer_err(c, co, ENG_E_BUSY, "order lookups queue full; retry");
    }
}

static void lines_cb(const char *order_id, int result, const store_line_ref *lines, void *arg)
{
    (void)order_id;
    coord *co = arg;
    co->store_wait = false;
    cart *c = co->owner;
    if (c == NULL) {
        free(co);
        return;
    }
    /* Kept, and continued from the loop: whatever comes next (a decision,
     * the server's routing, a cold load) may call the store again, which
     * is not safe from inside its delivery of results. */
    co->lines_result = result;
    uint32_t n = result > 0 ? ((uint32_t)result <= ENG_LINES_MAX ? (uint32_t)result : ENG_LINES_MAX) : 0;
    co->n = n;
    co->n_lines = n > 0 ? lines[0].n_lines : 0;
    for (uint32_t i = 0; i < n; i++) {
        cpart *p = &co->parts[i];
        snprintf(p->sku, sizeof p->sku, "%s", lines[i].sku);
        p->line_no = lines[i].line_no;
        p->client_line = lines[i].line_no;
    }
    co->defer_lines = true;
    coord_defer(c, co);
}

/* The order's lines are known (co->lines_result, parts). */
static void lines_continue(cart *c, coord *co)
{
    int result = co->lines_result;
    uint32_t n = co->n;
    if (co->kind == CK_WATCH && (result < 0 || co->n_lines <= 1 || (int32_t)n != co->n_lines)) {
        /* Lookup failed, or not a cross-shard order (whole on one node:
         * the engine told it), or a line missing: nothing to tell. */
        if (result < 0)
            c->st.watch_failed++;
        coord_drop(c, co);
        return;
    }
    if (result < 0) {
        coord_answer_err(c, co, ENG_E_UNAVAILABLE, "order lookup failed (MariaDB); retry");
        return;
    }
    if (result == 0 || (result == 1 && co->n_lines <= 1)) {
        coord_unlink(c, co);
        co->single_fn(co->ctx, result == 0 ? "" : co->parts[0].sku);
        free(co);
        return;
    }
    if (co->kind != CK_WATCH)
        c->st.order_ops++;
    switch (co->kind) {
    case CK_GET:
    case CK_WATCH:
        co->phase = CP_OP;
        parts_call(c, co, "order.get", sel_all);
        return;
    case CK_SHIP:
        co->phase = CP_OP;
        parts_call(c, co, "ship", sel_all);
        return;
    case CK_CONFIRM:
        /* A line never placed: the order can only be aborted. */
        co->fail_part = (int32_t)n < co->n_lines ? 0 : -1;
        start_decide(c, co, co->fail_part >= 0 ? STORE_DECIDE_ABORT : STORE_DECIDE_CONFIRM);
        return;
    case CK_RELEASE:
        start_decide(c, co, STORE_DECIDE_ABORT);
        return;
    default:
        assert(!"bad kind");
    }
}

/* ------------------------------------------------------------ owner side */

static void settle_free(cart *c, settle *s)
{
    if (c != NULL) {
        if (s->prev)
            s->prev->next = s->next;
        else
            c->settles = s->next;
        if (s->next)
            s->next->prev = s->prev;
        assert(c->st.settling > 0);
        c->st.settling--;
    }
    free(s);
}

static void settle_retry(cart *c, settle *s)
{
    c->st.settle_retries++;
    engine_part_retry(c->env.eng, &s->ref, clock_wall_ms() + CART_RETRY_MS);
    settle_free(c, s);
}

static void settle_op_done(eng_op *op, void *arg)
{
    settle *s = arg;
    cart *c = s->owner;
    assert(op == &s->op);
    if (c == NULL) {
        free(s);
        return;
    }
    if (op->err == ENG_OK) {
        if (op->kind == ENG_OP_CONFIRM)
            c->st.settled_confirm++;
        else
            c->st.settled_expire++;
        settle_free(c, s);
    } else if (eng_err_retryable(op->err)) {
        settle_retry(c, s);
    } else {
        /* Settled already (released, confirmed by its coordinator meanwhile). */
        settle_free(c, s);
    }
}

static void settle_decided(const char *order_id, int result, const store_abort_why *why, void *arg)
{
    (void)order_id;
    settle *s = arg;
    s->store_wait = false;
    cart *c = s->owner;
    if (c == NULL) {
        free(s);
        return;
    }
    if (result < 0) {
        settle_retry(c, s);
        return;
    }
    eng_order_view v;
    if (!engine_part_get(c->env.eng, s->ref.order_id, s->ref.line_no, &v)) {
        settle_free(c, s);  /* gone (SKU moved away): its new owner settles it */
        return;
    }
    eng_op *op = &s->op;
    memset(op, 0, sizeof *op);
    op->kind = result == STORE_DECIDE_CONFIRM ? ENG_OP_CONFIRM : ENG_OP_RELEASE;
    snprintf(op->order_id, sizeof op->order_id, "%s", s->ref.order_id);
    snprintf(op->sku, sizeof op->sku, "%s", v.sku);
    op->part_lines = s->ref.part_lines;
    op->line_no = s->ref.line_no;
    op->decided = op->kind == ENG_OP_CONFIRM;
    /* A refused order leaves nothing (its coordinator's erase was lost);
     * any other abort ends the part expired, as a lapsed hold. */
    op->erase = op->kind == ENG_OP_RELEASE && why != NULL;
    op->as_expired = op->kind == ENG_OP_RELEASE && why == NULL;
    op->on_done = settle_op_done;
    op->on_done_arg = s;
    eng_err e = engine_submit(c->env.eng, op, clock_wall_ms());
    if (e == ENG_OK) {
        c->env.pump(c->env.pump_arg);
        return;
    }
    if (eng_err_retryable(e))
        settle_retry(c, s);
    else
        settle_free(c, s);
}

void cart_settle_due(cart *c)
{
    int64_t now = clock_wall_ms();
    for (uint32_t i = 0; i < CART_SETTLE_PER_CALL && c->st.settling < CART_SETTLING_MAX; i++) {
        eng_part_ref ref;
        if (!engine_part_due(c->env.eng, now, &ref))
            return;
        settle *s = calloc(1, sizeof(*s));
        if (s == NULL) {
            engine_part_retry(c->env.eng, &ref, now + CART_RETRY_MS);
            return;
        }
        s->owner = c;
        s->ref = ref;
        s->next = c->settles;
        if (c->settles)
            c->settles->prev = s;
        c->settles = s;
        c->st.settling++;
        s->store_wait = true;
        if (store_cart_decide(c->env.st, ref.order_id, STORE_DECIDE_ABORT, NULL, settle_decided, s) != 0) {
            s->store_wait = false;
            settle_retry(c, s);
            return;  /* the store's queue is full: later */
        }
    }
}

/* ------------------------------------------------------------ listeners
 *
 * A part's owner hears of its part only. Listeners must hear the whole
 * order, once, wherever they are connected: the owner whose part reached
 * purchased / failed / expired fetches the whole order (order.get of every
 * part, as a client's order.get) and, when the order as a whole is in its
 * final state for that status, hands the merged record to every node
 * (order.subscribe with "update", this node through its own address). Two
 * owners may both see the final state (their parts changed at once):
 * each node tells its listeners once per (order, status) (server.c).
 * An order still in motion (a failed line whose cascade has not reached
 * every part) is not told: the change that completes it is. */

static void watch_start(cart *c, coord *co)
{
    co->phase = CP_LINES;
    co->store_wait = true;
    if (store_find_order_lines(c->env.st, co->order_id, lines_cb, co) != 0) {
        co->store_wait = false;
        c->st.watch_failed++;
        coord_drop(c, co);
    }
}

void cart_order_changed(cart *c, const char *order_id)
{
    /* One fetch per order waiting to start: later changes in the same
     * round are seen by it. */
    for (coord *q = c->defer_head; q != NULL; q = q->defer_next)
        if (q->kind == CK_WATCH && q->defer_watch && strcmp(q->order_id, order_id) == 0)
            return;
    if (c->n_watches >= CART_WATCH_MAX) {
        c->st.watch_dropped++;
        return;
    }
    coord *co = coord_new_or_die(c, CK_WATCH, 0, order_id, CART_WATCH_BUDGET_MS, NULL, NULL);
    c->st.watches++;
    co->defer_watch = true;
    coord_defer(c, co);  /* the store is not called from inside its delivery */
}

static void update_reply_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                            const char *reason)
{
    (void)ctx;
    (void)result;
    /* Best effort, like a listener that does not read: logged only (the
     * cart may be gone when the pool fails this call at shutdown). */
    if (reason != NULL || (error != NULL && error->type != MSGPACK_OBJECT_NIL))
        LOG_W("order update not delivered to a peer", "reason", reason ? reason : "error");
}

/* The whole order is known: tell every node when it is final for its
 * status. */
static void watch_finish(cart *c, coord *co)
{
    eng_line_view lv[ENG_LINES_MAX] = {0};
    bool open = false, held = false;
    assert(co->n > 1);
    for (uint32_t i = 0; i < co->n; i++) {
        const cpart *p = &co->parts[i];
        if (p->res != PR_RECORD || !p->have_rec) {
            c->st.watch_failed++;
            coord_drop(c, co);
            return;
        }
        memset(&lv[i], 0, sizeof lv[i]);
        lv[i].status = p->rec.status;
        lv[i].from_supplier = p->rec.from_supplier;
        held = held || p->rec.status == ENG_ST_HELD;
        open = open || p->rec.status == ENG_ST_HELD || p->rec.status == ENG_ST_CONFIRMED;
    }
    eng_status st = merged_status(lv, co->n);
    bool final = !held && (st == ENG_ST_PURCHASED || ((st == ENG_ST_FAILED || st == ENG_ST_EXPIRED) && !open));
    if (!final) {
        coord_drop(c, co);
        return;
    }
    msgpack_sbuffer_clear(&c->sb);
    pack_merged(c, co);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    bool ok = msgpack_unpack_next(&u, c->sb.data, c->sb.size, NULL) == MSGPACK_UNPACK_SUCCESS &&
              u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 4;
    msgpack_sbuffer_clear(&c->sb);
    if (ok) {
        msgpack_object_kv kv = {
            .key = {.type = MSGPACK_OBJECT_STR, .via.str = {.size = 6, .ptr = "update"}},
            .val = u.data.via.array.ptr[3],
        };
        msgpack_object map = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = 1, .ptr = &kv}};
        const ring_node *nodes;
        size_t nn = ring_nodes(c->env.rg, &nodes);
        for (size_t i = 0; i < nn; i++)
            peer_call(c->env.peers, nodes[i].name, nodes[i].host, nodes[i].port, "order.subscribe", &map, "_fwd",
                      ring_version(c->env.rg), CART_UPDATE_TIMEOUT_MS, update_reply_cb, NULL);
        c->st.updates_sent++;
    }
    msgpack_unpacked_destroy(&u);
    coord_drop(c, co);
}

/* ------------------------------------------------------------ failed lines
 *
 * On one instance the engine fails a whole cart when a line's purchase
 * fails. Across shards the failed part's owner does it: it reads the
 * order's lines from MariaDB and sends release + as_failed to every other
 * part's owner (itself included, through its own address), retrying the
 * parts not reached with backoff. The engine's as_failed release fails
 * what is held or confirmed and leaves what ended or was bought, so
 * repeats are harmless. Limit: a node that dies before its cascade is
 * through leaves the other parts confirmed; the failed line's
 * purchase_failed alert tells support (docs/operations.md). */

static void cascade_free(cart *c, cascade *cs)
{
    if (c != NULL) {
        if (cs->prev)
            cs->prev->next = cs->next;
        else
            c->cascades = cs->next;
        if (cs->next)
            cs->next->prev = cs->prev;
        assert(c->n_cascades > 0);
        c->n_cascades--;
    }
    if (cs->timer != NULL)
        event_free(cs->timer);
    free(cs);
}

static void cascade_soon(cascade *cs)
{
    struct timeval now = {0, 0};
    evtimer_add(cs->timer, &now);
}

static void cascade_later(cart *c, cascade *cs)
{
    if (++cs->tries >= CART_CASCADE_TRIES) {
        c->st.cascade_gave_up++;
        LOG_W("failed line: other parts not reached; support must release them", "order_id",
              cs->order_id);
        cascade_free(c, cs);
        return;
    }
    c->st.cascade_retries++;
    int64_t ms = (int64_t)CART_CASCADE_BACKOFF_MS << (cs->tries - 1);
    if (ms > CART_CASCADE_BACKOFF_MAX_MS)
        ms = CART_CASCADE_BACKOFF_MAX_MS;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(cs->timer, &tv);
}

static void cascade_reply_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                             const char *reason)
{
    (void)result;
    cascade_call *cc = ctx;
    cascade *cs = cc->cs;
    uint32_t i = cc->i;
    free(cc);
    assert(cs->pending > 0);
    cs->pending--;
    cart *c = cs->owner;
    if (c == NULL) {
        if (cs->pending == 0)
            cascade_free(NULL, cs);
        return;
    }
    if (reason == NULL) {
        /* Failed now, or nothing left to fail there (ended, bought, never
         * placed: not_found, invalid_state): settled either way. Retryable
         * errors (unavailable, busy, deadline) are tried again. */
        char code[CART_CODE_MAX + 1] = "";
        if (error != NULL && error->type == MSGPACK_OBJECT_MAP)
            copy_obj_str(codec_map_get(error, "code"), code, sizeof code);
        bool retry = error != NULL && error->type != MSGPACK_OBJECT_NIL &&
                     (error->type != MSGPACK_OBJECT_MAP || eng_err_retryable(err_from_code(code)));
        cs->lines[i].done = !retry;
    }
    if (cs->pending > 0)
        return;
    for (uint32_t k = 0; k < cs->n; k++) {
        if (!cs->lines[k].done) {
            cascade_later(c, cs);
            return;
        }
    }
    c->st.cascade_done++;
    cart_order_changed(c, cs->order_id);  /* listeners: the order is final now */
    cascade_free(c, cs);
}

static void cascade_send(cart *c, cascade *cs)
{
    const ring_node *nodes;
    size_t nn = ring_nodes(c->env.rg, &nodes);
    for (uint32_t i = 0; i < cs->n; i++) {
        if (cs->lines[i].done)
            continue;
        cascade_call *cc = malloc(sizeof *cc);
        if (cc == NULL)
            continue;  /* not done: the next round */
        cc->cs = cs;
        cc->i = i;
        uint32_t o = ring_owner(c->env.rg, cs->lines[i].sku, strlen(cs->lines[i].sku));
        assert(o < nn);
        msgpack_object_kv kv[8];
        uint32_t k = 0;
        kv_str(&kv[k++], "order_id", cs->order_id);
        kv_str(&kv[k++], "sku", cs->lines[i].sku);
        kv_int(&kv[k++], "part_lines", cs->n_lines);
        kv_int(&kv[k++], "line_no", cs->lines[i].line_no);
        kv_bool(&kv[k++], "as_failed", true);
        kv_str(&kv[k++], "reason", cs->reason);
        kv_int(&kv[k++], "deadline_ms", CART_CASCADE_CALL_MS);
        msgpack_object map = {.type = MSGPACK_OBJECT_MAP, .via.map = {.size = k, .ptr = kv}};
        cs->pending++;
        c->st.cascade_releases++;
        peer_call(c->env.peers, nodes[o].name, nodes[o].host, nodes[o].port, "release", &map, "_fwd",
                  ring_version(c->env.rg), CART_CASCADE_CALL_MS + CART_SLACK_MS, cascade_reply_cb, cc);
    }
    if (cs->pending == 0)
        cascade_later(c, cs);  /* out of memory for every call: later */
}

static void cascade_lines_cb(const char *order_id, int result, const store_line_ref *lines, void *arg)
{
    (void)order_id;
    cascade *cs = arg;
    cs->store_wait = false;
    cart *c = cs->owner;
    if (c == NULL) {
        cascade_free(NULL, cs);
        return;
    }
    if (result >= 0) {
        uint32_t n = 0;
        for (int i = 0; i < result && n < ENG_LINES_MAX; i++) {
            if (lines[i].line_no == cs->line_no)
                continue;  /* the failed line itself */
            snprintf(cs->lines[n].sku, sizeof cs->lines[n].sku, "%s", lines[i].sku);
            cs->lines[n].line_no = lines[i].line_no;
            cs->lines[n].done = false;
            n++;
        }
        cs->n = n;
        cs->have_lines = true;
    }
    /* From the loop: peers and the store are not called from inside the
     * store's delivery. */
    if (result < 0)
        cascade_later(c, cs);
    else
        cascade_soon(cs);
}

static void cascade_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cascade *cs = arg;
    cart *c = cs->owner;
    assert(c != NULL);
    if (!cs->have_lines) {
        cs->store_wait = true;
        if (store_find_order_lines(c->env.st, cs->order_id, cascade_lines_cb, cs) != 0) {
            cs->store_wait = false;
            cascade_later(c, cs);
        }
        return;
    }
    if (cs->n == 0) {
        cascade_free(c, cs);  /* no other line stored */
        return;
    }
    cascade_send(c, cs);
}

void cart_part_failed(cart *c, const char *order_id, int32_t line_no, int32_t n_lines,
                      const char *reason)
{
    assert(n_lines > 1 && line_no >= 0 && line_no < n_lines);
    for (cascade *q = c->cascades; q != NULL; q = q->next)
        if (strcmp(q->order_id, order_id) == 0)
            return;  /* one under way: it fails every other part already */
    if (c->n_cascades >= CART_CASCADE_MAX) {
        c->st.cascade_gave_up++;
        LOG_W("failed line: too many cascades; support must release the other parts", "order_id",
              order_id);
        return;
    }
    cascade *cs = calloc(1, sizeof *cs);
    if (cs == NULL) {
        LOG_E("cart: out of memory");
        abort();
    }
    cs->owner = c;
    snprintf(cs->order_id, sizeof cs->order_id, "%s", order_id);
    cs->line_no = line_no;
    cs->n_lines = n_lines;
    eng_line_failed_reason(line_no, reason, cs->reason);
    cs->timer = evtimer_new(c->env.base, cascade_timer_cb, cs);
    if (cs->timer == NULL) {
        LOG_E("cart: out of memory");
        abort();
    }
    cs->next = c->cascades;
    if (c->cascades)
        c->cascades->prev = cs;
    c->cascades = cs;
    c->n_cascades++;
    c->st.cascades++;
    cascade_soon(cs);  /* from the loop */
}

/* ------------------------------------------------------------ life */

cart *cart_new(const cart_env *env)
{
    assert(env && env->base && env->peers && env->st && env->eng && env->rg && env->cfg && env->pump);
    cart *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->env = *env;
    c->defer_ev = event_new(env->base, -1, 0, defer_cb, c);
    if (c->defer_ev == NULL) {
        free(c);
        return NULL;
    }
    msgpack_sbuffer_init(&c->sb);
    msgpack_packer_init(&c->pk, &c->sb, msgpack_sbuffer_write);
    /* Coordinations of one order on two nodes (a client's retry) must
     * not share an id: a random start, then counted. */
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint64_t)clock_wall_ms() * 2654435761u;
    c->attempt_next = (r & (((uint64_t)1 << 61) - 1)) + 1;
    return c;
}

void cart_set_ring(cart *c, const ring *rg, uint32_t self)
{
    c->env.rg = rg;
    c->env.self = self;
}

void cart_free(cart *c)
{
    if (c == NULL)
        return;
    coord *co = c->coords;
    while (co != NULL) {
        coord *next = co->next;
        co->owner = NULL;
        /* Waiting on peers: freed when the pool fails those calls. Waiting
         * on the store only, or deferred: the store abandons its calls
         * without callbacks, so nothing else will. */
        if (co->pending == 0)
            free(co);
        co = next;
    }
    cascade *cs = c->cascades;
    while (cs != NULL) {
        cascade *next = cs->next;
        cs->owner = NULL;
        evtimer_del(cs->timer);
        /* Waiting on peers: freed by their failures at peer_pool_free.
         * Waiting on the store: abandoned without a callback. */
        if (cs->pending == 0)
            cascade_free(NULL, cs);
        cs = next;
    }
    settle *s = c->settles;
    while (s != NULL) {
        settle *next = s->next;
        s->owner = NULL;
        if (s->store_wait)
            free(s);  /* abandoned by store_free */
        else if (engine_cancel(c->env.eng, &s->op))
            free(s);  /* still queued: gone without on_done */
        /* else its op is in a batch: on_done frees it */
        s = next;
    }
    event_free(c->defer_ev);
    msgpack_sbuffer_destroy(&c->sb);
    free(c);
}

void cart_stats_get(const cart *c, cart_stats *out)
{
    *out = c->st;
}
