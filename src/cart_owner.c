/* cart_owner.c — what a node does for the parts of multi-line orders it
 * owns (cart_internal.h): parts whose hold lapsed are settled by the
 * order's decision, listeners everywhere are told when the whole order is
 * final, and a part whose purchase failed for good fails the other parts
 * of its order (the cascade).
 */
#include "cart_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "stockd/clock.h"
#include "stockd/codec.h"
#include "stockd/log.h"

/* ------------------------------------------------------------ lapsed parts */

/* A lapsed part of this node being settled: the decision, then the
 * engine's confirm or release. */
struct settle {
    cart *owner;                  /* NULL: orphaned */
    struct settle *prev, *next;
    eng_part_ref ref;
    eng_op op;
    bool store_wait;
};

/* A failed line's cascade: release + as_failed to every other part. */
struct cascade {
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
};

typedef struct cascade_call {
    cascade *cs;
    uint32_t i;                   /* index into cs->lines */
} cascade_call;

static void settle_free(cart *c, settle *s)
{
    if (c != NULL) {
        CT_LIST_UNLINK(c->settles, s);
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
        CT_LIST_PUSH(c->settles, s);
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

void ct_watch_start(cart *c, coord *co)
{
    co->phase = CP_LINES;
    co->store_wait = true;
    if (store_find_order_lines(c->env.st, co->order_id, ct_lines_cb, co) != 0) {
        co->store_wait = false;
        c->st.watch_failed++;
        ct_coord_drop(c, co);
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
    coord *co = ct_coord_new_or_die(c, CK_WATCH, 0, order_id, CART_WATCH_BUDGET_MS, NULL, NULL);
    c->st.watches++;
    co->defer_watch = true;
    ct_coord_defer(c, co);  /* the store is not called from inside its delivery */
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
void ct_watch_finish(cart *c, coord *co)
{
    assert(co->n > 1);
    for (uint32_t i = 0; i < co->n; i++) {
        const cart_part *p = &co->parts[i];
        if (p->res != CART_PR_RECORD || !p->have_rec) {
            c->st.watch_failed++;
            ct_coord_drop(c, co);
            return;
        }
    }
    if (!cart_order_final(co->parts, co->n)) {
        ct_coord_drop(c, co);
        return;
    }
    msgpack_sbuffer_clear(&c->sb);
    cart_pack_merged(&c->pk, co->msgid, co->order_id, co->parts, co->n, co->n_lines, co->plain);
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
    ct_coord_drop(c, co);
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
        CT_LIST_UNLINK(c->cascades, cs);
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
            cart_obj_str(codec_map_get(error, "code"), code, sizeof code);
        bool retry = error != NULL && error->type != MSGPACK_OBJECT_NIL &&
                     (error->type != MSGPACK_OBJECT_MAP || eng_err_retryable(cart_err_from_code(code)));
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
        cart_kv_str(&kv[k++], "order_id", cs->order_id);
        cart_kv_str(&kv[k++], "sku", cs->lines[i].sku);
        cart_kv_int(&kv[k++], "part_lines", cs->n_lines);
        cart_kv_int(&kv[k++], "line_no", cs->lines[i].line_no);
        cart_kv_bool(&kv[k++], "as_failed", true);
        cart_kv_str(&kv[k++], "reason", cs->reason);
        cart_kv_int(&kv[k++], "deadline_ms", CART_CASCADE_CALL_MS);
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
    CT_LIST_PUSH(c->cascades, cs);
    c->n_cascades++;
    c->st.cascades++;
    cascade_soon(cs);  /* from the loop */
}

/* ------------------------------------------------------------ shutdown */

/* cart_free: cascades and settles let go of the cart; those still waiting
 * on a peer or in a batch are freed by their one callback. */
void ct_owner_orphan(cart *c)
{
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
}
