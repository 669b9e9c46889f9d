/* cart.c — the cross-shard coordinator for orders of several lines
 * (include/stockd/cart.h): the public API, a coordination's life (made,
 * answered, dropped), answers deferred to the loop, the order's lines read
 * from MariaDB for order calls. The phases of a coordination are in
 * cart_coord.c, the owner side in cart_owner.c, the messages in
 * cart_wire.c; the shared state in cart_internal.h.
 *
 * Why the decision row: a part whose hold lapsed and a late coordinator
 * must agree on the order's fate. Both ask store_cart_decide(); the first
 * writer wins and everybody follows what stands. The coordinator asks for
 * CONFIRM only once every part is held, so CONFIRM standing means every
 * part exists and may be confirmed (decided: true, even past its hold).
 */
#include "cart_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <event2/event.h>

#include "stockd/clock.h"
#include "stockd/log.h"

/* ------------------------------------------------------------ coordinations */

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
    CT_LIST_PUSH(c->coords, co);
    if (kind == CK_WATCH)
        c->n_watches++;  /* not the clients' cart_inflight_max */
    else
        c->st.inflight++;
    return co;
}

/* Out of memory: the answer still comes from the loop. A tiny static
 * fallback would need its own queue; an allocation failure this small is
 * fatal anyway. */
coord *ct_coord_new_or_die(cart *c, coord_kind kind, uint32_t msgid, const char *order_id,
                           int64_t deadline_ms, cart_reply_fn fn, void *ctx)
{
    coord *co = coord_new(c, kind, msgid, order_id, deadline_ms, fn, ctx);
    if (co == NULL) {
        LOG_E("cart: out of memory");
        abort();
    }
    return co;
}

void ct_coord_unlink(cart *c, coord *co)
{
    CT_LIST_UNLINK(c->coords, co);
    if (co->kind == CK_WATCH) {
        assert(c->n_watches > 0);
        c->n_watches--;
        return;
    }
    assert(c->st.inflight > 0);
    c->st.inflight--;
}

/* Hands the packed answer (in c->sb) to the server and frees co. */
void ct_coord_answer(cart *c, coord *co)
{
    assert(co->pending == 0 && !co->store_wait);
    ct_coord_unlink(c, co);
    co->fn(co->ctx, c->sb.data, c->sb.size);
    msgpack_sbuffer_clear(&c->sb);
    free(co);
}

void ct_coord_answer_err(cart *c, coord *co, eng_err err, const char *msg)
{
    msgpack_sbuffer_clear(&c->sb);
    if (err == ENG_E_UNAVAILABLE)
        c->st.unavailable++;
    cart_pack_error(&c->pk, co->msgid, err, NULL, msg, eng_err_retryable(err), NULL, false);
    ct_coord_answer(c, co);
}

void ct_coord_answer_part_err(cart *c, coord *co, const cart_part *p)
{
    msgpack_sbuffer_clear(&c->sb);
    if (p->err == ENG_E_UNAVAILABLE)
        c->st.unavailable++;
    cart_pack_part_error(&c->pk, co->msgid, p);
    ct_coord_answer(c, co);
}

void ct_coord_answer_merged(cart *c, coord *co)
{
    msgpack_sbuffer_clear(&c->sb);
    cart_pack_merged(&c->pk, co->msgid, co->order_id, co->parts, co->n, co->n_lines, co->plain);
    ct_coord_answer(c, co);
}

/* Frees a coordination that answers nobody (CK_WATCH). */
void ct_coord_drop(cart *c, coord *co)
{
    assert(co->pending == 0 && !co->store_wait);
    ct_coord_unlink(c, co);
    free(co);
}

/* ------------------------------------------------------------ deferral */

static void lines_continue(cart *c, coord *co);

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
            ct_start_decide(c, co, co->want);
        } else if (co->defer_watch) {
            co->defer_watch = false;
            ct_watch_start(c, co);
        } else if (co->kind == CK_WATCH) {
            ct_coord_drop(c, co);
        } else {
            ct_coord_answer_err(c, co, co->defer_err, co->defer_msg);
        }
        co = next;
    }
}

void ct_coord_defer(cart *c, coord *co)
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

void ct_coord_defer_err(cart *c, coord *co, eng_err err, const char *msg)
{
    co->defer_err = err;
    co->defer_msg = msg;
    ct_coord_defer(c, co);
}

/* ------------------------------------------------------------ API */

static bool over_limit(cart *c, coord *co)
{
    if (c->st.inflight <= c->env.cfg->cart_inflight_max)
        return false;
    c->st.busy++;
    ct_coord_defer_err(c, co, ENG_E_BUSY, "too many orders of several lines in flight; retry");
    return true;
}

void cart_reserve(cart *c, uint32_t msgid, const char *order_id, const eng_line_in *lines,
                  uint32_t n, int64_t hold_ms, int64_t deadline_ms, cart_reply_fn fn, void *ctx)
{
    assert(n >= 1 && n <= ENG_LINES_MAX);
    coord *co = ct_coord_new_or_die(c, CK_RESERVE, msgid, order_id, deadline_ms, fn, ctx);
    c->st.reserves++;
    co->hold_ms = hold_ms;
    /* The engine's numbering: one part per distinct SKU, in order of first
     * appearance, quantities summed. */
    eng_cart ec;
    int32_t bad;
    if (!eng_cart_of(lines, n, &ec, &bad)) {
        ct_coord_defer_err(c, co, ENG_E_INVALID, "the lines of one sku sum above the qty limit");
        return;
    }
    for (uint32_t k = 0; k < ec.n; k++) {
        cart_part *p = &co->parts[k];
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
    ct_parts_call(c, co, "reserve", ct_sel_all);
}

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
    coord *co = ct_coord_new_or_die(c, kind, msgid, order_id, deadline_ms, fn, ctx);
    co->single_fn = single_fn;
    if (over_limit(c, co))
        return;
    co->phase = CP_LINES;
    co->store_wait = true;
    if (store_find_order_lines(c->env.st, order_id, ct_lines_cb, co) != 0) {
        co->store_wait = false;
        ct_coord_defer_err(c, co, ENG_E_BUSY, "order lookups queue full; retry");
    }
}

void ct_lines_cb(const char *order_id, int result, const store_line_ref *lines, void *arg)
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
        cart_part *p = &co->parts[i];
        snprintf(p->sku, sizeof p->sku, "%s", lines[i].sku);
        p->line_no = lines[i].line_no;
        p->client_line = lines[i].line_no;
    }
    co->defer_lines = true;
    ct_coord_defer(c, co);
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
        ct_coord_drop(c, co);
        return;
    }
    if (result < 0) {
        ct_coord_answer_err(c, co, ENG_E_UNAVAILABLE, "order lookup failed (MariaDB); retry");
        return;
    }
    if (result == 0 || (result == 1 && co->n_lines <= 1)) {
        ct_coord_unlink(c, co);
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
        ct_parts_call(c, co, "order.get", ct_sel_all);
        return;
    case CK_SHIP:
        co->phase = CP_OP;
        ct_parts_call(c, co, "ship", ct_sel_all);
        return;
    case CK_CONFIRM:
        /* A line never placed: the order can only be aborted. */
        co->fail_part = (int32_t)n < co->n_lines ? 0 : -1;
        ct_start_decide(c, co, co->fail_part >= 0 ? STORE_DECIDE_ABORT : STORE_DECIDE_CONFIRM);
        return;
    case CK_RELEASE:
        ct_start_decide(c, co, STORE_DECIDE_ABORT);
        return;
    default:
        assert(!"bad kind");
    }
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
    ct_owner_orphan(c);
    event_free(c->defer_ev);
    msgpack_sbuffer_destroy(&c->sb);
    free(c);
}

void cart_stats_get(const cart *c, cart_stats *out)
{
    *out = c->st;
}
