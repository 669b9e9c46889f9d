/* engine.c — the engine's state: SKUs, orders and their lines, the
 * indexes, parked ops and the expiry heap, lifecycle, reads, expiry and
 * the purchase jobs' claims (see engine.h; the decisions are in
 * engine_decide.c, batches in engine_batch.c). Pure: no I/O. */
#include "engine_internal.h"

static void dec_unlink(eng_order *o);

/* Answers a caller-owned op through its own callback, or the engine's. */
void ei_op_done(engine *e, eng_op *op)
{
    if (op->on_done != NULL)
        op->on_done(op, op->on_done_arg);
    else
        e->done(op, e->done_arg);
}

/* Ops the engine queues itself: owned by the engine, never passed to done(). */
bool ei_op_internal(const eng_op *op)
{
    return op->kind == ENG_OP_EXPIRE || op->kind == ENG_OP_SUPPLIER_REPORT ||
           op->tk_parent != NULL;
}

/* ------------------------------------------------------------ helpers */

void ei_counters_check(const eng_counters *c)
{
    assert(c->own_on_hand >= 0 && c->own_on_hand <= ENG_STOCK_MAX);
    assert(c->own_reserved >= 0 && c->own_reserved <= c->own_on_hand);
    assert(c->supplier_reserved >= 0);
    assert(c->supplier_reported >= 0 && c->supplier_sellable >= 0);
}

void ei_copy_id(char *dst, const char *src)
{
    size_t n = strlen(src);
    assert(n <= ENG_ID_MAX);
    memcpy(dst, src, n + 1);
}

void eng_part_key(const char *order_id, int32_t line_no, char *out)
{
    assert(strlen(order_id) <= ENG_ID_MAX && line_no >= 0 && line_no < ENG_LINES_MAX);
    if (line_no == 0)
        snprintf(out, ENG_KEY_MAX + 1, "%s", order_id);
    else
        snprintf(out, ENG_KEY_MAX + 1, "%s#%d", order_id, (int)line_no);
}

void ei_make_key(const char *order_id, int32_t line_no, bool part, okey *k)
{
    size_t n = strlen(order_id);
    assert(n <= ENG_ID_MAX);
    memcpy(k->b, order_id, n + 1);
    k->len = n;
    if (part && line_no > 0) {
        int w = snprintf(k->b + n + 1, sizeof(k->b) - n - 1, "#%d", (int)line_no);
        assert(w > 0 && (size_t)w < sizeof(k->b) - n - 1);
        k->len = n + 1 + (size_t)w;
    }
}

/* The key an op names its order by. */
void ei_op_key(const eng_op *op, okey *k)
{
    ei_make_key(op->order_id, op->line_no, op->part_lines > 1, k);
}

eng_status eng_order_status_of(const eng_line_view *lines, size_t n)
{
    assert(n > 0);
    bool same = true, confirmed_sup = false;
    for (size_t i = 0; i < n; i++) {
        if (lines[i].status == ENG_ST_FAILED)
            return ENG_ST_FAILED;
        same = same && lines[i].status == lines[0].status;
        confirmed_sup = confirmed_sup ||
                        (lines[i].status == ENG_ST_CONFIRMED && lines[i].from_supplier > 0);
    }
    if (same)
        return lines[0].status;
    return confirmed_sup ? ENG_ST_CONFIRMED : ENG_ST_PURCHASED;
}

/* Copies src into dst (cap bytes with the NUL), cut at a UTF-8 character
 * boundary: reasons go out on the wire as msgpack str (valid UTF-8). */
void ei_utf8_copy_cut(char *dst, const char *src, size_t cap)
{
    assert(cap > 0);
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void eng_why_fmt(char why[ENG_REASON_MAX + 1], const char *fmt, ...)
{
    char buf[4 * ENG_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ei_utf8_copy_cut(why, buf, ENG_REASON_MAX + 1);
}

void eng_line_failed_reason(int32_t line_no, const char *why, char out[ENG_REASON_MAX + 1])
{
    int w = snprintf(out, ENG_REASON_MAX + 1, "line %d failed: ", (int)line_no);
    assert(w > 0 && w < ENG_REASON_MAX);
    ei_utf8_copy_cut(out + w, why, ENG_REASON_MAX + 1 - (size_t)w);
}

char *ei_dup_or_null(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return NULL;
    return strdup(s);  /* NULL on OOM: the field reads as unset */
}

void ei_set_str(char **field, const char *s)
{
    const char *cur = *field ? *field : "";
    if (strcmp(cur, s ? s : "") == 0)
        return;
    free(*field);
    *field = ei_dup_or_null(s);
}

eng_supp *ei_supp_find(const engine *e, const char *id)
{
    eng_supp *p = NULL;
    HASH_FIND_STR(e->supps, id, p);
    return p;
}

eng_supp *ei_supp_get(engine *e, const char *id)
{
    eng_supp *p = ei_supp_find(e, id);
    if (p != NULL)
        return p;
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return NULL;
    ei_copy_id(p->id, id);
    p->t = e->lim.trust_default;
    HASH_ADD_STR(e->supps, id, p);
    return p;
}

const eng_trust *ei_supp_trust(const engine *e, const char *id)
{
    const eng_supp *p = ei_supp_find(e, id);
    return p != NULL ? &p->t : &e->lim.trust_default;
}

/* What stockd dares to sell of the supplier's figure: all of
 * a manual figure, min(floor(reported x trust), cap) of a mapped one,
 * nothing without a working mapping. Derived whenever read or decided, so
 * a trust change reaches every SKU of the supplier at once. */
static int64_t sellable_of(const engine *e, eng_mapping m, const eng_supplier_map *map,
                           int64_t reported)
{
    if (m == ENG_MAP_MANUAL)
        return reported;
    if (m != ENG_MAP_OK || map == NULL)
        return 0;
    return eng_sellable(reported, eng_trust_effective(ei_supp_trust(e, map->supplier_id)), map->cap);
}

void ei_sku_recompute_sellable(const engine *e, eng_sku *s)
{
    s->c.supplier_sellable = sellable_of(e, s->mapping, s->map, s->c.supplier_reported);
}

void ei_order_to_view(const eng_order *o, eng_order_view *v)
{
    size_t k = strcspn(o->id, "#");
    assert(k <= ENG_ID_MAX);
    memcpy(v->order_id, o->id, k);
    v->order_id[k] = '\0';
    ei_copy_id(v->sku, o->sku->name);
    v->qty = o->qty;
    v->line_no = o->line_no;
    v->n_lines = o->n_lines;
    v->status = o->status;
    v->from_own = o->from_own;
    v->from_supplier = o->from_supplier;
    v->available = o->available;
    v->created_at_ms = o->created_at_ms;
    v->updated_at_ms = o->updated_at_ms;
    v->hold_expires_at_ms = o->hold_expires_at_ms;
    size_t n = o->upstream_order_id ? strlen(o->upstream_order_id) : 0;
    if (n > ENG_ID_MAX)
        n = ENG_ID_MAX;
    memcpy(v->upstream_order_id, o->upstream_order_id ? o->upstream_order_id : "", n);
    v->upstream_order_id[n] = '\0';
    ei_utf8_copy_cut(v->reason, o->reason ? o->reason : "", sizeof(v->reason));
    v->purchased_at_ms = o->purchased_at_ms;
    v->supplier_settled = o->supplier_settled;
}

/* The committed record of one line: its before-image while in a batch. */
void ei_line_committed(const eng_order *o, eng_order_view *v)
{
    if (o->inflight != NULL)
        *v = o->inflight->before;
    else
        ei_order_to_view(o, v);
}

void ei_view_to_line(const eng_order_view *v, eng_line_view *l)
{
    l->line_no = v->line_no;
    ei_copy_id(l->sku, v->sku);
    l->qty = v->qty;
    l->from_own = v->from_own;
    l->from_supplier = v->from_supplier;
    l->status = v->status;
    memcpy(l->upstream_order_id, v->upstream_order_id, sizeof(l->upstream_order_id));
}

/* The whole order from its lines (engine.h eng_order_view): committed
 * state, or the working state when committed is false. */
void ei_order_whole_view(const eng_order *h, bool committed, eng_order_view *out)
{
    eng_line_view lv[ENG_LINES_MAX];
    memset(lv, 0, sizeof(lv[0]));
    size_t n = 0;
    bool all_bought = true, all_settled = true;
    int64_t bought_at = 0;
    FOR_LINES((eng_order *)h, l) {
        eng_order_view v;
        if (committed)
            ei_line_committed(l, &v);
        else
            ei_order_to_view(l, &v);
        assert(n < ENG_LINES_MAX);
        ei_view_to_line(&v, &lv[n++]);
        if (l == h) {
            *out = v;
            out->qty = out->from_own = out->from_supplier = 0;
        }
        out->qty += v.qty;
        out->from_own += v.from_own;
        out->from_supplier += v.from_supplier;
        if (v.updated_at_ms > out->updated_at_ms)
            out->updated_at_ms = v.updated_at_ms;
        if (out->reason[0] == '\0' && v.reason[0] != '\0')
            memcpy(out->reason, v.reason, sizeof(out->reason));
        if (v.from_supplier > 0) {
            all_bought = all_bought && v.purchased_at_ms > 0;
            all_settled = all_settled && v.supplier_settled;
            if (v.purchased_at_ms > bought_at)
                bought_at = v.purchased_at_ms;
        }
    }
    out->status = eng_order_status_of(lv, n);
    out->line_no = 0;
    out->purchased_at_ms = all_bought ? bought_at : 0;
    out->supplier_settled = all_bought && all_settled && bought_at > 0;
}

void ei_order_from_view(eng_order *o, const eng_order_view *v)
{
    o->status = v->status;
    o->qty = v->qty;
    o->from_own = v->from_own;
    o->from_supplier = v->from_supplier;
    o->available = v->available;
    o->created_at_ms = v->created_at_ms;
    o->updated_at_ms = v->updated_at_ms;
    o->hold_expires_at_ms = v->hold_expires_at_ms;
    ei_set_str(&o->upstream_order_id, v->upstream_order_id);
    ei_set_str(&o->reason, v->reason);
    o->purchased_at_ms = v->purchased_at_ms;
    o->supplier_settled = v->supplier_settled;
}

/* ---- pending purchases: committed CONFIRMED orders with supplier units of
 * a SKU that has a 1688 map (ok or broken; a manual figure is bought by
 * hand). Kept in step with the committed state only. */

bool ei_purchase_due(const eng_order *o)
{
    return o->status == ENG_ST_CONFIRMED && o->from_supplier > 0 && o->sku->map != NULL &&
           (o->sku->mapping == ENG_MAP_OK || o->sku->mapping == ENG_MAP_BROKEN);
}

static void pp_remove(engine *e, eng_order *o)
{
    if (!o->in_purchases)
        return;
    if (o->pp_prev)
        o->pp_prev->pp_next = o->pp_next;
    else
        e->pp_head = o->pp_next;
    if (o->pp_next)
        o->pp_next->pp_prev = o->pp_prev;
    else
        e->pp_tail = o->pp_prev;
    o->pp_next = o->pp_prev = NULL;
    o->in_purchases = false;
    if (o->claimed) {
        assert(e->pp_claimed > 0);
        e->pp_claimed--;
    }
    o->claimed = false;
    assert(e->st.purchases_pending > 0);
    e->st.purchases_pending--;
}

void ei_pp_sync(engine *e, eng_order *o, bool recovered)
{
    bool due = ei_purchase_due(o);
    if (due == o->in_purchases)
        return;
    if (!due) {
        pp_remove(e, o);
        return;
    }
    o->in_purchases = true;
    o->claimed = false;
    o->recovered = recovered;
    o->pp_next = NULL;
    o->pp_prev = e->pp_tail;
    if (e->pp_tail)
        e->pp_tail->pp_next = o;
    else
        e->pp_head = o;
    e->pp_tail = o;
    e->st.purchases_pending++;
}

static void line_free(engine *e, eng_order *o)
{
    assert(o->inflight == NULL);
    dec_unlink(o);
    if (o->sku_prev)
        o->sku_prev->sku_next = o->sku_next;
    else
        o->sku->orders = o->sku_next;
    if (o->sku_next)
        o->sku_next->sku_prev = o->sku_prev;
    pp_remove(e, o);
    free(o->upstream_order_id);
    free(o->reason);
    free(o);
}

/* ------------------------------------------------------------ final orders */

void ei_line_holds(eng_status st, int32_t from_own, int32_t from_supplier, bool settled,
                   int64_t *own, int64_t *sup)
{
    bool live = st == ENG_ST_HELD || st == ENG_ST_CONFIRMED;
    *own = live || st == ENG_ST_PURCHASED ? from_own : 0;
    *sup = live || ((st == ENG_ST_PURCHASED || st == ENG_ST_SHIPPED) && !settled)
               ? from_supplier : 0;
}

/* Every line ended and holds nothing: MariaDB's rows say all there is to
 * say of it, and no later change of the order can need its units. Parts
 * stay (their coordinator may still ask), and so do ghosts. */
static bool order_final(const eng_order *h)
{
    if (h->part || h->ghost)
        return false;
    FOR_LINES((eng_order *)h, l) {
        if (l->status == ENG_ST_NONE || l->status == ENG_ST_HELD || l->status == ENG_ST_CONFIRMED)
            return false;
        int64_t own, sup;
        ei_line_holds(l->status, l->from_own, l->from_supplier, l->supplier_settled, &own, &sup);
        if (own != 0 || sup != 0)
            return false;
    }
    return true;
}

static void fin_unlink(engine *e, eng_order *h)
{
    if (!h->on_fin)
        return;
    if (h->fin_prev)
        h->fin_prev->fin_next = h->fin_next;
    else
        e->fin_head = h->fin_next;
    if (h->fin_next)
        h->fin_next->fin_prev = h->fin_prev;
    else
        e->fin_tail = h->fin_prev;
    h->fin_next = h->fin_prev = NULL;
    h->on_fin = false;
}

static void fin_append(engine *e, eng_order *h)
{
    h->fin_prev = e->fin_tail;
    h->fin_next = NULL;
    if (e->fin_tail)
        e->fin_tail->fin_next = h;
    else
        e->fin_head = h;
    e->fin_tail = h;
    h->on_fin = true;
}

void ei_fin_sync(engine *e, eng_order *h)
{
    h = h->head;
    bool fin = order_final(h);
    if (fin && !h->on_fin)
        fin_append(e, h);
    else if (!fin && h->on_fin)
        fin_unlink(e, h);
}

/* A SKU queue this long is not searched: its orders wait for a quieter
 * moment to leave memory. */
#define EVICT_QUEUE_SCAN_MAX 256
/* Busy orders looked at in one engine_evict_orders() call. */
#define EVICT_BUSY_MAX 64

/* Whether an op queued on s (or a cart's ticket there) names order_id;
 * also true when the queue is too long to look through. */
static bool queue_names(const eng_sku *s, const char *order_id)
{
    if (s->q_len > EVICT_QUEUE_SCAN_MAX)
        return true;
    for (const eng_op *q = s->q_head; q != NULL; q = q->next) {
        const eng_op *op = q->tk_parent != NULL ? q->tk_parent : q;
        if (strcmp(op->order_id, order_id) == 0)
            return true;
    }
    return false;
}

/* Something still points at it: an op waits on it (queued for any of its
 * SKUs), a batch writes it, an expiry entry or the purchase worker names
 * it. */
static bool order_busy(const eng_order *h)
{
    if (h->pending != 0 || h->heap_refs != 0 || h->part_listed || ei_order_inflight(h))
        return true;
    FOR_LINES((eng_order *)h, l)
        if (l->claimed || l->in_purchases || queue_names(l->sku, h->id))
            return true;
    return false;
}

size_t engine_evict_orders(engine *e, int64_t before_ms, size_t max,
                           void (*fn)(const char *order_id, void *arg), void *arg)
{
    size_t n = 0, busy = 0;
    if (e->parts_mode)
        return 0;
    eng_order *h = e->fin_head;
    /* The list is in the order orders became final, near enough the order
     * of their last change: stop at the first one changed too recently.
     * Busy ones go to the back, at most EVICT_BUSY_MAX a call: under load on
     * one SKU its orders are busy together, and looking through its queue
     * for each would cost the loop more than the memory is worth. */
    while (h != NULL && n < max && busy < EVICT_BUSY_MAX && h->updated_at_ms < before_ms) {
        eng_order *next = h->fin_next;
        if (!order_final(h)) {
            fin_unlink(e, h);
        } else if (order_busy(h)) {
            busy++;
            fin_unlink(e, h);
            fin_append(e, h);
            if (next == NULL)
                break;
        } else {
            if (fn != NULL)
                fn(h->id, arg);
            ei_order_free(e, h);
            e->st.orders_evicted++;
            n++;
        }
        h = next;
    }
    return n;
}

/* Frees an order: its head and every line. A part on the due list is
 * unlinked first. */
void ei_order_free(engine *e, eng_order *h)
{
    assert(h->head == h);
    if (h->part_listed) {
        eng_order **pp = &e->due_head, *prev = NULL;
        while (*pp != h) {
            prev = *pp;
            pp = &(*pp)->due_next;
        }
        *pp = h->due_next;
        if (e->due_tail == h)
            e->due_tail = prev;
    }
    fin_unlink(e, h);
    HASH_DEL(e->orders, h);
    eng_order *l = h->line_next;
    while (l != NULL) {
        eng_order *next = l->line_next;
        line_free(e, l);
        l = next;
    }
    line_free(e, h);
    e->st.orders--;
}

/* A line of s, not in the hash unless it is a head. */
static eng_order *line_new(eng_sku *s, const okey *key, int32_t qty, int32_t line_no,
                           int32_t n_lines)
{
    eng_order *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    memcpy(o->id, key->b, key->len + 1);
    o->key_len = (uint8_t)key->len;
    o->sku = s;
    o->qty = qty;
    o->line_no = line_no;
    o->n_lines = n_lines;
    o->head = o;
    o->status = ENG_ST_NONE;
    o->sku_next = s->orders;
    if (s->orders)
        s->orders->sku_prev = o;
    s->orders = o;
    return o;
}

eng_order *ei_order_new(engine *e, const okey *key, eng_sku *s, int32_t qty)
{
    eng_order *o = line_new(s, key, qty, 0, 1);
    if (o == NULL)
        return NULL;
    HASH_ADD(hh, e->orders, id, o->key_len, o);
    e->st.orders++;
    return o;
}

/* Appends line line_no to the whole order h (lines stay in line_no order). */
eng_order *ei_order_add_line(eng_order *h, eng_sku *s, int32_t qty, int32_t line_no)
{
    okey k;
    ei_make_key(h->id, 0, false, &k);
    eng_order *o = line_new(s, &k, qty, line_no, h->n_lines);
    if (o == NULL)
        return NULL;
    o->head = h;
    eng_order **pp = &h->line_next;
    while (*pp != NULL && (*pp)->line_no < line_no)
        pp = &(*pp)->line_next;
    o->line_next = *pp;
    *pp = o;
    return o;
}

eng_order *ei_order_line(eng_order *h, int32_t line_no)
{
    FOR_LINES(h, l)
        if (l->line_no == line_no)
            return l;
    return NULL;
}

bool ei_order_inflight(const eng_order *h)
{
    FOR_LINES((eng_order *)h, l)
        if (l->inflight != NULL)
            return true;
    return false;
}

eng_sku *ei_sku_find(const engine *e, const char *name)
{
    eng_sku *s = NULL;
    HASH_FIND_STR(e->skus, name, s);
    return s;
}

eng_order *ei_order_find(const engine *e, const okey *k)
{
    eng_order *o = NULL;
    HASH_FIND(hh, e->orders, k->b, k->len, o);
    return o;
}

/* The order a plain order_id names (not a part k >= 1). */
eng_order *ei_order_find_id(const engine *e, const char *order_id)
{
    okey k;
    ei_make_key(order_id, 0, false, &k);
    return ei_order_find(e, &k);
}

eng_sku *ei_sku_new(engine *e, const char *name)
{
    eng_sku *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    ei_copy_id(s->name, name);
    s->epoch = 1;
    HASH_ADD_STR(e->skus, name, s);
    e->st.skus++;
    return s;
}

void ei_ready_push(engine *e, eng_sku *s)
{
    if (s->on_ready || s->inflight != NULL || s->q_len == 0)
        return;
    s->on_ready = true;
    s->ready_next = NULL;
    if (e->ready_tail)
        e->ready_tail->ready_next = s;
    else
        e->ready_head = s;
    e->ready_tail = s;
}

eng_sku *ei_ready_pop(engine *e)
{
    eng_sku *s = e->ready_head;
    if (s == NULL)
        return NULL;
    e->ready_head = s->ready_next;
    if (e->ready_head == NULL)
        e->ready_tail = NULL;
    s->on_ready = false;
    s->ready_next = NULL;
    return s;
}

void ei_fifo_push(engine *e, eng_sku *s, eng_op *op)
{
    op->next = NULL;
    op->prev = s->q_tail;
    if (s->q_tail)
        s->q_tail->next = op;
    else
        s->q_head = op;
    s->q_tail = op;
    s->q_len++;
    op->sku_p = s;
    op->state_ = OP_QUEUED;
    e->st.queued++;
    if (s->q_len > e->st.queued_max_sku)
        e->st.queued_max_sku = s->q_len;
    ei_ready_push(e, s);
}

void ei_fifo_unlink(engine *e, eng_op *op)
{
    eng_sku *s = op->sku_p;
    assert(op->state_ == OP_QUEUED);
    assert(s->q_len > 0);
    if (op->prev)
        op->prev->next = op->next;
    else
        s->q_head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        s->q_tail = op->prev;
    s->q_len--;
    e->st.queued--;
    if (s->report_q == op)
        s->report_q = NULL;
    op->next = op->prev = NULL;
    op->state_ = OP_IDLE;
}

/* ------------------------------------------------------------ waiting
 * (engine.h "Waiting"). A waiting reserve is off its FIFO, on its SKU's
 * pk list (linked through next/prev, state OP_PARKED) and still counted
 * in e->st.queued. */

void ei_dec_link(eng_order *o)
{
    if (o->on_dec)
        return;
    eng_sku *s = o->sku;
    o->on_dec = true;
    o->dec_prev = NULL;
    o->dec_next = s->dec;
    if (s->dec)
        s->dec->dec_prev = o;
    s->dec = o;
}

static void dec_unlink(eng_order *o)
{
    if (!o->on_dec)
        return;
    eng_sku *s = o->sku;
    if (o->dec_prev)
        o->dec_prev->dec_next = o->dec_next;
    else
        s->dec = o->dec_next;
    if (o->dec_next)
        o->dec_next->dec_prev = o->dec_prev;
    o->dec_next = o->dec_prev = NULL;
    o->on_dec = false;
}

bool ei_part_deciding(const eng_order *o)
{
    return o->part && o->attempt != 0 && o->status == ENG_ST_HELD;
}

/* True when qty more units of s would be there if every deciding part
 * on s gave its hold back (working state). Prunes parts that stopped
 * deciding; a batch that undoes a change puts them back (ei_batch_restore). */
bool ei_short_for_deciding(eng_sku *s, int32_t qty)
{
    int64_t own = 0, sup = 0;
    eng_order *o = s->dec;
    while (o != NULL) {
        eng_order *next = o->dec_next;
        if (ei_part_deciding(o)) {
            own += o->from_own;
            sup += o->from_supplier;
        } else {
            dec_unlink(o);
        }
        o = next;
    }
    if (own == 0 && sup == 0)
        return false;
    eng_counters c = s->c;
    c.own_reserved -= own;
    c.supplier_reserved -= sup;
    assert(c.own_reserved >= 0 && c.supplier_reserved >= 0);
    return qty <= eng_available(&c);
}

void ei_park(engine *e, eng_sku *s, eng_op *op)
{
    op->state_ = OP_PARKED;
    op->sku_p = s;
    op->next = NULL;
    op->prev = s->pk_tail;
    if (s->pk_tail)
        s->pk_tail->next = op;
    else
        s->pk_head = op;
    s->pk_tail = op;
    s->pk_len++;
    e->st.queued++;
    e->st.parked++;
    if (!s->pk_listed) {
        s->pk_listed = true;
        s->pk_next = e->pk_skus;
        e->pk_skus = s;
    }
}

void ei_park_unlink(engine *e, eng_op *op)
{
    eng_sku *s = op->sku_p;
    assert(op->state_ == OP_PARKED && s->pk_len > 0);
    if (op->prev)
        op->prev->next = op->next;
    else
        s->pk_head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        s->pk_tail = op->prev;
    s->pk_len--;
    e->st.queued--;
    e->st.parked--;
    op->next = op->prev = NULL;
    op->state_ = OP_IDLE;
}

/* Every waiting reserve of s goes back to the head of its FIFO, in the
 * order they came, to be decided again. */
void ei_unpark_all(engine *e, eng_sku *s)
{
    if (s->pk_len == 0)
        return;
    eng_op *first = s->pk_head, *last = s->pk_tail;
    uint32_t n = s->pk_len;
    for (eng_op *op = first; op != NULL; op = op->next)
        op->state_ = OP_QUEUED;
    last->next = s->q_head;
    if (s->q_head)
        s->q_head->prev = last;
    else
        s->q_tail = last;
    s->q_head = first;
    s->q_len += n;
    s->pk_head = s->pk_tail = NULL;
    s->pk_len = 0;
    e->st.parked -= n;
    ei_ready_push(e, s);
}

/* Ends the waits that ran out by now_ms; true when any did. */
bool ei_park_due(engine *e, int64_t now_ms)
{
    bool any = false;
    eng_sku **pp = &e->pk_skus;
    while (*pp != NULL) {
        eng_sku *s = *pp;
        if (s->pk_len == 0) {
            *pp = s->pk_next;
            s->pk_listed = false;
            continue;
        }
        bool due = false;
        for (eng_op *op = s->pk_head; op != NULL; op = op->next) {
            if (op->wait_until_ <= now_ms) {
                op->wait_over_ = true;
                due = true;
            }
        }
        if (due) {
            ei_unpark_all(e, s);
            any = true;
        }
        pp = &s->pk_next;
    }
    return any;
}

static void pk_skus_remove(engine *e, eng_sku *s)
{
    for (eng_sku **pp = &e->pk_skus; *pp != NULL; pp = &(*pp)->pk_next) {
        if (*pp == s) {
            *pp = s->pk_next;
            s->pk_listed = false;
            return;
        }
    }
}

/* ------------------------------------------------------------ heap */

static void heap_swap(struct heap_item *h, size_t a, size_t b)
{
    struct heap_item t = h[a];
    h[a] = h[b];
    h[b] = t;
}

bool ei_heap_push(engine *e, int64_t at_ms, eng_order *o)
{
    if (e->heap_len == e->heap_cap) {
        size_t cap = e->heap_cap ? e->heap_cap * 2 : 1024;
        struct heap_item *h = realloc(e->heap, cap * sizeof(*h));
        if (h == NULL)
            return false;
        e->heap = h;
        e->heap_cap = cap;
    }
    size_t i = e->heap_len++;
    e->heap[i].at_ms = at_ms;
    e->heap[i].o = o;
    o->heap_refs++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->heap[p].at_ms <= e->heap[i].at_ms)
            break;
        heap_swap(e->heap, p, i);
        i = p;
    }
    return true;
}

/* Moves entry i down to its place below its parent. */
static void heap_sift_down(engine *e, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->heap_len && e->heap[l].at_ms < e->heap[m].at_ms)
            m = l;
        if (r < e->heap_len && e->heap[r].at_ms < e->heap[m].at_ms)
            m = r;
        if (m == i)
            break;
        heap_swap(e->heap, i, m);
        i = m;
    }
}

void ei_heap_pop(engine *e)
{
    assert(e->heap_len > 0);
    e->heap[0].o->heap_refs--;
    e->heap[0] = e->heap[--e->heap_len];
    heap_sift_down(e, 0);
}

void ei_heap_drop(engine *e, size_t i)
{
    assert(i < e->heap_len);
    e->heap[i].o->heap_refs--;
    e->heap[i] = e->heap[--e->heap_len];
}

void ei_heap_rebuild(engine *e)
{
    for (size_t k = e->heap_len / 2; k-- > 0;)
        heap_sift_down(e, k);
}

/* ------------------------------------------------------------ lifecycle */

engine *engine_new(const eng_limits *limits, eng_done_fn done, void *done_arg)
{
    assert(done != NULL);
    engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->lim = *limits;
    e->done = done;
    e->done_arg = done_arg;
    e->next_batch_id = 1;
    e->global.global = true;
    e->global.exists = true;
    return e;
}

void ei_batch_free_mem(eng_batch *b)
{
    free(b->sw);
    free(b->sku_rows);
    free(b->ow);
    free(b->order_rows);
    free(b->ledger);
    free(b->jobs);
    free(b->alerts);
    free(b->alert_text);
    free(b->supw);
    free(b->sup_rows);
    free(b->bal);
    free(b);
}

static void free_batch_pool(engine *e)
{
    while (e->free_batches) {
        eng_batch *b = e->free_batches;
        e->free_batches = b->next_free;
        ei_batch_free_mem(b);
    }
}

void engine_free(engine *e)
{
    if (e == NULL)
        return;
    eng_order *o, *ot;
    HASH_ITER(hh, e->orders, o, ot) {
        HASH_DEL(e->orders, o);
        eng_order *l = o;
        while (l != NULL) {
            eng_order *next = l->line_next;
            free(l->upstream_order_id);
            free(l->reason);
            free(l);
            l = next;
        }
    }
    eng_sku *s, *stmp;
    HASH_ITER(hh, e->skus, s, stmp) {
        HASH_DEL(e->skus, s);
        free(s->map);
        free(s->aside_why);
        free(s);
    }
    struct aside_ord *a, *atmp;
    HASH_ITER(hh, e->aside_orders, a, atmp) {
        HASH_DEL(e->aside_orders, a);
        free(a);
    }
    free(e->pal);
    eng_supp *p, *ptmp;
    HASH_ITER(hh, e->supps, p, ptmp) {
        HASH_DEL(e->supps, p);
        free(p);
    }
    while (e->free_ops) {
        eng_op *op = e->free_ops;
        e->free_ops = op->next;
        free(op);
    }
    free_batch_pool(e);
    free(e->heap);
    struct tomb *t, *ttmp;
    HASH_ITER(hh, e->tombs, t, ttmp) {
        HASH_DEL(e->tombs, t);
        free(t);
    }
    free(e->tomb_ring);
    free(e);
}

void engine_set_limits(engine *e, const eng_limits *limits)
{
    assert(limits->batch_ops_max > 0 && limits->batch_sku_ops_max > 0);
    e->lim = *limits;
    free_batch_pool(e);  /* pooled batches have the old capacity */
}

/* ------------------------------------------------------------ reads */

void ei_stock_view(const engine *e, const eng_sku *s, const eng_counters *c, eng_mapping m,
                       const eng_supplier_map *map, eng_stock_view *out)
{
    ei_copy_id(out->sku, s->name);
    out->c = *c;
    out->mapping = m;
    out->has_map = (m == ENG_MAP_OK || m == ENG_MAP_BROKEN) && map != NULL;
    if (out->has_map) {
        out->map = *map;
        out->trust = eng_trust_effective(ei_supp_trust(e, map->supplier_id));
    } else {
        memset(&out->map, 0, sizeof(out->map));
        out->trust = 0.0;
    }
    out->c.supplier_sellable = sellable_of(e, m, map, c->supplier_reported);
    out->available = eng_available(&out->c);
}

bool engine_supplier_report_for(engine *e, const char *sku, const eng_supplier_map *expect,
                                int64_t reported, int64_t synced_at_ms)
{
    eng_supplier_obs obs = {.reported = reported, .synced_at_ms = synced_at_ms};
    return engine_supplier_observe(e, sku, expect, &obs);
}

bool engine_supplier_observe(engine *e, const char *sku, const eng_supplier_map *expect,
                             const eng_supplier_obs *obs)
{
    assert(obs->reported >= 0 && obs->reported <= ENG_STOCK_MAX);
    eng_sku *s = ei_sku_find(e, sku);
    if (s == NULL || s->aside)
        return false;
    /* Coalesced: a report still waiting (the SKU is blocked, e.g. the store
     * is down) takes the newer figure, so syncs cannot grow the FIFO; but
     * only while it is the FIFO's last op: the newer figure must not
     * overtake what was queued after it (a failed check's "nothing until
     * the next sync" would then undo the next sync). */
    eng_op *op = s->report_q;
    if (op != NULL && s->q_tail != op)
        op = NULL;
    if (op == NULL) {
        if ((op = ei_internal_op_new(e)) == NULL)
            return false;
        op->kind = ENG_OP_SUPPLIER_REPORT;
        ei_copy_id(op->sku, s->name);
        ei_fifo_push(e, s, op);  /* internal: bypasses the queue limits */
        s->report_q = op;
    }
    assert(op->kind == ENG_OP_SUPPLIER_REPORT && op->state_ == OP_QUEUED);
    /* A waiting "broken" stands: a later figure must not hide it. */
    if (op->reason[0] != '\0' && obs->broken[0] == '\0')
        return true;
    op->supplier_reported = obs->reported;
    op->synced_at_ms = obs->synced_at_ms;
    op->fingerprint = obs->fingerprint;
    size_t n = strnlen(obs->broken, ENG_REASON_MAX);
    memcpy(op->reason, obs->broken, n);
    op->reason[n] = '\0';
    op->has_supplier = expect != NULL;
    if (expect != NULL)
        op->supplier = *expect;
    return true;
}

void engine_stats_get(const engine *e, eng_stats *out)
{
    *out = e->st;
}

uint64_t eng_batch_id(const eng_batch *b)
{
    return b->id;
}

bool eng_batch_is_empty(const eng_batch *b)
{
    return b->n_sku_rows == 0 && b->n_ow == 0 && b->n_ledger == 0 && b->n_jobs == 0 &&
           b->n_alerts == 0 && b->n_supw == 0;
}

size_t eng_batch_ops(const eng_batch *b)
{
    return b->n_ops;
}

/* The row getters of engine.h: each the rows of one table and their count. */
#define BATCH_ROWS(fn, type, rows_field, n_field)                                      \
    size_t fn(const eng_batch *b, const type **rows)                                  \
    {                                                                                  \
        *rows = b->rows_field;                                                         \
        return b->n_field;                                                             \
    }
BATCH_ROWS(eng_batch_sku_rows, eng_sku_row, sku_rows, n_sku_rows)
BATCH_ROWS(eng_batch_order_rows, eng_order_row, order_rows, n_ow)
BATCH_ROWS(eng_batch_ledger_rows, eng_ledger_row, ledger, n_ledger)
BATCH_ROWS(eng_batch_job_rows, eng_job_row, jobs, n_jobs)
BATCH_ROWS(eng_batch_alert_rows, eng_alert_row, alerts, n_alerts)
BATCH_ROWS(eng_batch_supplier_rows, eng_supplier_row, sup_rows, n_supw)
#undef BATCH_ROWS

bool engine_forget_sku(engine *e, const char *sku, eng_err queued_err)
{
    eng_sku *s = ei_sku_find(e, sku);
    if (s == NULL)
        return true;
    if (s->inflight != NULL)
        return false;
    /* An order with a line here goes whole; its other lines may be in a
     * batch of their SKUs. */
    for (eng_order *o = s->orders; o != NULL; o = o->sku_next)
        if (ei_order_inflight(o->head))
            return false;
    ei_sku_clear(e, s, queued_err, NULL, NULL);
    pk_skus_remove(e, s);
    HASH_DEL(e->skus, s);
    if (s->aside) {
        assert(e->n_aside > 0);
        e->n_aside--;
    }
    free(s->map);
    free(s->aside_why);
    free(s);
    e->st.skus--;
    return true;
}

void engine_each_sku(const engine *e, void (*fn)(const char *sku, void *arg), void *arg)
{
    eng_sku *s, *tmp;
    HASH_ITER(hh, e->skus, s, tmp)
        fn(s->name, arg);
}

bool engine_part_sku(const engine *e, const char *order_id, int32_t line_no, char *sku_out)
{
    if (line_no < 0 || line_no >= ENG_LINES_MAX)
        return false;
    okey key;
    ei_make_key(order_id, line_no, true, &key);
    const eng_order *o = ei_order_find(e, &key);
    if (o == NULL || !o->part)
        return false;
    if (sku_out != NULL)
        ei_copy_id(sku_out, o->sku->name);
    return true;
}

bool engine_order_sku(const engine *e, const char *order_id, char *sku_out)
{
    const eng_order *o = ei_order_find_id(e, order_id);
    if (o == NULL)
        return false;
    if (sku_out != NULL)
        ei_copy_id(sku_out, o->sku->name);
    return true;
}
