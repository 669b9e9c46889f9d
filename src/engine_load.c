/* engine_load.c — loading rows into the engine and setting aside what
 * cannot be trusted (engine.h "Loading", "Set aside"). Pure. */
#include "engine_internal.h"

/* ------------------------------------------------------------ loading */

bool eng_sku_row_valid(const eng_counters *c, eng_mapping mapping, const eng_supplier_map *map,
                       char why[ENG_REASON_MAX + 1])
{
    const struct {
        const char *name;
        int64_t v;
    } f[] = {{"own_on_hand", c->own_on_hand},
             {"own_reserved", c->own_reserved},
             {"supplier_reported", c->supplier_reported},
             {"supplier_sellable", c->supplier_sellable},
             {"supplier_reserved", c->supplier_reserved}};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i].v < 0 || f[i].v > ENG_STOCK_MAX) {
            eng_why_fmt(why, "%s %lld is out of range 0..%lld", f[i].name,
                     (long long)f[i].v, (long long)ENG_STOCK_MAX);
            return false;
        }
    }
    if (c->own_reserved > c->own_on_hand) {
        eng_why_fmt(why, "own_reserved %lld exceeds own_on_hand %lld",
                 (long long)c->own_reserved, (long long)c->own_on_hand);
        return false;
    }
    if (mapping < 0 || mapping >= ENG_MAP_COUNT_) {
        eng_why_fmt(why, "unknown mapping");
        return false;
    }
    if ((mapping == ENG_MAP_OK || mapping == ENG_MAP_BROKEN) &&
        (map == NULL || map->supplier_id[0] == '\0')) {
        eng_why_fmt(why, "mapping %s without a supplier_id",
                 eng_mapping_name(mapping));
        return false;
    }
    if (map != NULL && (map->cap < -1 || map->cap > ENG_STOCK_MAX)) {
        eng_why_fmt(why, "supplier_cap %lld is out of range",
                 (long long)map->cap);
        return false;
    }
    return true;
}

bool engine_load_sku(engine *e, const char *name, const eng_counters *c,
                     eng_mapping mapping, const eng_supplier_map *map, int64_t epoch)
{
    char why[ENG_REASON_MAX + 1];
    if (name[0] == '\0' || strlen(name) > ENG_ID_MAX || !eng_sku_row_valid(c, mapping, map, why))
        return false;
    eng_sku *s = ei_sku_find(e, name);
    if (s != NULL && s->aside)
        return false;  /* until the process ends (engine.h) */
    if (s == NULL && (s = ei_sku_new(e, name)) == NULL)
        return false;
    assert(s->inflight == NULL);
    if ((mapping == ENG_MAP_OK || mapping == ENG_MAP_BROKEN) && map != NULL && s->map == NULL &&
        (s->map = malloc(sizeof(*s->map))) == NULL)
        return false;
    s->exists = true;
    s->audit = true;
    s->c = *c;
    s->mapping = mapping;
    s->epoch = epoch;
    s->frozen_own = s->frozen_sup = 0;  /* its orders (re)load after it */
    if ((mapping == ENG_MAP_OK || mapping == ENG_MAP_BROKEN) && map != NULL) {
        *s->map = *map;
        (void)ei_supp_get(e, map->supplier_id);  /* known from now on (supplier.get) */
    } else {
        free(s->map);
        s->map = NULL;
        if (s->mapping == ENG_MAP_OK || s->mapping == ENG_MAP_BROKEN)
            s->mapping = ENG_MAP_MANUAL;
    }
    /* The stored sellable was derived with the trust of its day. */
    ei_sku_recompute_sellable(e, s);
    /* Its orders may become (or stop being) pending purchases with it. */
    for (eng_order *o = s->orders; o != NULL; o = o->sku_next)
        if (o->status != ENG_ST_NONE && o->inflight == NULL)
            ei_pp_sync(e, o, true);
    return true;
}

void engine_set_parts_mode(engine *e, bool parts)
{
    e->parts_mode = parts;
}

/* The line v names, found or made: a part, the head of a whole order, or
 * line v->line_no of the loaded head (line 0 loads first). */
static eng_order *load_line(engine *e, const eng_order_view *v, eng_sku *s)
{
    bool part = v->n_lines > 1 && e->parts_mode;
    okey key;
    ei_make_key(v->order_id, v->line_no, part, &key);
    if (part || v->line_no == 0) {
        eng_order *o = ei_order_find(e, &key);
        if (o == NULL) {
            if ((o = ei_order_new(e, &key, s, v->qty)) == NULL)
                return NULL;
            o->n_lines = v->n_lines;
            o->line_no = v->line_no;
            o->part = part;
        }
        return o->part == part && o->n_lines == v->n_lines ? o : NULL;
    }
    eng_order *h = ei_order_find(e, &key);
    if (h == NULL || h->part || h->n_lines != v->n_lines)
        return NULL;
    eng_order *l = ei_order_line(h, v->line_no);
    if (l == NULL && (l = ei_order_add_line(h, s, v->qty, v->line_no)) == NULL)
        return NULL;
    return l;
}

bool eng_order_row_valid(const eng_order_view *v, char why[ENG_REASON_MAX + 1])
{
    const char *bad = NULL;
    size_t id_len = strnlen(v->order_id, sizeof(v->order_id));
    size_t sku_len = strnlen(v->sku, sizeof(v->sku));
    if (id_len == 0 || id_len > ENG_ID_MAX || memchr(v->order_id, '#', id_len) != NULL)
        bad = "order_id must be 1..64 bytes without '#'";
    else if (sku_len == 0 || sku_len > ENG_ID_MAX)
        bad = "sku must be 1..64 bytes";
    else if (v->status <= ENG_ST_NONE || v->status >= ENG_ST_COUNT_)
        bad = "unknown status";
    else if (v->qty < 1 || v->qty > ENG_QTY_MAX)
        bad = "qty out of range 1..1000000";
    else if (v->from_own < 0 || v->from_supplier < 0 ||
             (int64_t)v->from_own + v->from_supplier != v->qty)
        bad = "from_own + from_supplier is not qty";
    else if (v->n_lines < 1 || v->n_lines > ENG_LINES_MAX || v->line_no < 0 ||
             v->line_no >= v->n_lines)
        bad = "line_no / n_lines out of range";
    else if (v->status == ENG_ST_HELD && v->hold_expires_at_ms <= 0)
        bad = "held without hold_expires_at";
    else if (v->purchased_at_ms < 0)
        bad = "negative purchased_at";
    if (bad == NULL)
        return true;
    eng_why_fmt(why, "line %d: %s", (int)v->line_no, bad);
    return false;
}

bool engine_load_order(engine *e, const eng_order_view *view)
{
    eng_order_view one;
    const eng_order_view *v = view;
    if (view->n_lines == 0) {
        /* A record from before lines (n_lines unset): one line. */
        one = *view;
        one.n_lines = 1;
        one.line_no = 0;
        v = &one;
    }
    char why[ENG_REASON_MAX + 1];
    if (!eng_order_row_valid(v, why))
        return false;
    eng_sku *s = ei_sku_find(e, v->sku);
    if (s == NULL || !s->exists || s->aside)
        return false;
    eng_order *o = load_line(e, v, s);
    if (o == NULL || o->sku != s)
        return false;  /* an order never changes SKU */
    assert(o->inflight == NULL);
    ei_order_from_view(o, v);
    if (o->head == o && o->status == ENG_ST_HELD && !ei_heap_push(e, o->hold_expires_at_ms, o))
        return false;
    ei_pp_sync(e, o, true);
    return true;
}

bool engine_load_supplier(engine *e, const char *supplier_id, const eng_trust *t)
{
    size_t n = strlen(supplier_id);
    if (n == 0 || n > ENG_ID_MAX || !eng_trust_valid(t))
        return false;
    eng_supp *p = ei_supp_get(e, supplier_id);
    if (p == NULL)
        return false;
    p->t = *t;
    return true;
}

/* ------------------------------------------------------------ set aside (engine.h) */

static void aside_alert_push(engine *e, const char *sku, const char *order_id, const char *why)
{
    if (e->pal == NULL && (e->pal = calloc(ENG_ASIDE_ALERTS_MAX, sizeof(*e->pal))) == NULL) {
        e->st.aside_alerts_dropped++;
        return;
    }
    if (e->pal_len == ENG_ASIDE_ALERTS_MAX) {
        e->st.aside_alerts_dropped++;
        return;
    }
    struct aside_alert *a = &e->pal[e->pal_len++];
    snprintf(a->sku, sizeof(a->sku), "%s", sku[0] ? sku : "?");
    snprintf(a->order_id, sizeof(a->order_id), "%s", order_id);
    ei_utf8_copy_cut(a->why, why, sizeof(a->why));
}

void engine_aside_alert(engine *e, const char *sku, const char *order_id, const char *why)
{
    aside_alert_push(e, sku, order_id ? order_id : "", why);
}

/* Remembers an order key as set aside: 1 new, 0 known, -1 full / OOM. */
static int aside_key_add(engine *e, const okey *k, const char *sku, const char *why)
{
    struct aside_ord *a = NULL;
    HASH_FIND(hh, e->aside_orders, k->b, k->len, a);
    if (a != NULL)
        return 0;
    if (e->n_aside >= ENG_ASIDE_MAX || (a = calloc(1, sizeof(*a))) == NULL)
        return -1;
    memcpy(a->key, k->b, k->len + 1);
    a->key_len = (uint8_t)k->len;
    snprintf(a->sku, sizeof(a->sku), "%s", sku);
    ei_utf8_copy_cut(a->why, why, sizeof(a->why));
    HASH_ADD(hh, e->aside_orders, key, a->key_len, a);
    e->n_aside++;
    e->st.orders_aside++;
    return 1;
}

/* The units a line of an order set aside holds stay reserved on its SKU:
 * counted for that SKU's audit (engine_audit_loaded). */
static void freeze(engine *e, const char *sku, eng_status st, int32_t from_own,
                   int32_t from_supplier, bool settled)
{
    eng_sku *s = ei_sku_find(e, sku);
    /* Frozen units only matter to the SKU's audit, still to come. */
    if (s == NULL || !s->exists || s->aside || !s->audit || st <= ENG_ST_NONE ||
        st >= ENG_ST_COUNT_ || from_own < 0 || from_supplier < 0)
        return;
    int64_t own, sup;
    ei_line_holds(st, from_own, from_supplier, settled, &own, &sup);
    s->frozen_own += own;
    s->frozen_sup += sup;
}

int engine_set_aside_order(engine *e, const char *order_id, const eng_order_view *lines, size_t n,
                           const char *sku, const char *why)
{
    size_t len = strlen(order_id);
    if (len == 0 || len > ENG_ID_MAX)
        return -1;
    okey k;
    ei_make_key(order_id, 0, false, &k);
    int rc = aside_key_add(e, &k, sku, why);
    if (rc < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const eng_order_view *v = &lines[i];
        /* Sharded, a part k >= 1 is its own order: its key too. */
        if (e->parts_mode && v->n_lines > 1 && v->line_no > 0 && v->line_no < ENG_LINES_MAX) {
            ei_make_key(order_id, v->line_no, true, &k);
            if (aside_key_add(e, &k, v->sku, why) < 0)
                return -1;
        }
        freeze(e, v->sku, v->status, v->from_own, v->from_supplier, v->supplier_settled);
    }
    /* An order that fails only because its SKUs are set aside is said by
     * their alerts: one per SKU, not one per order. */
    bool covered = n > 0;
    for (size_t i = 0; i < n && covered; i++) {
        const eng_sku *s = ei_sku_find(e, lines[i].sku);
        covered = s != NULL && s->aside;
    }
    if (rc == 1 && covered)
        return 2;
    if (rc == 1)
        aside_alert_push(e, sku, order_id, why);
    return rc;
}

int engine_set_aside_sku(engine *e, const char *sku, const char *why, size_t *orders_out)
{
    if (orders_out != NULL)
        *orders_out = 0;
    size_t len = strlen(sku);
    if (len == 0 || len > ENG_ID_MAX)
        return -1;
    eng_sku *s = ei_sku_find(e, sku);
    if (s != NULL && s->aside)
        return 0;
    if (e->n_aside >= ENG_ASIDE_MAX)
        return -1;
    if (s != NULL) {
        if (s->inflight != NULL)
            return -1;
        for (eng_order *o = s->orders; o != NULL; o = o->sku_next)
            if (ei_order_inflight(o->head))
                return -1;
        char note[ENG_REASON_MAX + 1];
        eng_why_fmt(note, "its SKU %s is set aside", sku);
        ei_sku_clear(e, s, ENG_E_UNAVAILABLE, note, orders_out);
        free(s->map);
        s->map = NULL;
    } else if ((s = ei_sku_new(e, sku)) == NULL) {
        return -1;
    }
    s->aside = true;
    s->exists = false;
    s->audit = false;
    memset(&s->c, 0, sizeof(s->c));
    s->mapping = ENG_MAP_NONE;
    s->frozen_own = s->frozen_sup = 0;
    s->aside_why = ei_dup_or_null(why);  /* NULL on OOM: the refusal says less */
    e->n_aside++;
    e->st.skus_aside++;
    aside_alert_push(e, sku, "", why);
    return 1;
}

int engine_audit_loaded(engine *e, void (*fn)(const char *sku, const char *why, void *arg),
                        void *arg)
{
    int n = 0;
    eng_sku *s, *tmp;
    HASH_ITER(hh, e->skus, s, tmp) {
        if (!s->audit)
            continue;
        s->audit = false;
        if (s->aside || !s->exists)
            continue;
        int64_t own = s->frozen_own, sup = s->frozen_sup;
        for (const eng_order *o = s->orders; o != NULL; o = o->sku_next) {
            if (o->status == ENG_ST_NONE)
                continue;
            int64_t lo, ls;
            ei_line_holds(o->status, o->from_own, o->from_supplier, o->supplier_settled, &lo, &ls);
            own += lo;
            sup += ls;
        }
        if (own == s->c.own_reserved && sup == s->c.supplier_reserved)
            continue;
        char why[ENG_REASON_MAX + 1];
        eng_why_fmt(why,
                 "counters do not match its orders: own_reserved %lld, orders %lld; "
                 "supplier_reserved %lld, orders %lld",
                 (long long)s->c.own_reserved, (long long)own,
                 (long long)s->c.supplier_reserved, (long long)sup);
        if (engine_set_aside_sku(e, s->name, why, NULL) < 0)
            return -1;
        if (fn != NULL)
            fn(s->name, why, arg);
        n++;
    }
    return n;
}

int engine_load_order_lines(engine *e, const eng_order_view *v, size_t n,
                            char why[ENG_REASON_MAX + 1])
{
    if (n == 0 || n > ENG_LINES_MAX) {
        eng_why_fmt(why, "%zu stored lines (1..%d)", n, ENG_LINES_MAX);
        return 0;
    }
    bool held = false, ended = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].order_id, v[0].order_id) != 0) {
            eng_why_fmt(why, "lines of different orders");
            return 0;
        }
        if (!eng_order_row_valid(&v[i], why))
            return 0;
        if (v[i].n_lines != v[0].n_lines) {
            eng_why_fmt(why, "its lines disagree on n_lines (%d, %d)",
                     (int)v[0].n_lines, (int)v[i].n_lines);
            return 0;
        }
        if (i > 0 && v[i].line_no <= v[i - 1].line_no) {
            eng_why_fmt(why, "line %d is stored twice or out of order",
                     (int)v[i].line_no);
            return 0;
        }
        const eng_sku *s = ei_sku_find(e, v[i].sku);
        if (s == NULL || !s->exists || s->aside) {
            eng_why_fmt(why, "line %d: its SKU %s is %s", (int)v[i].line_no,
                     v[i].sku, s != NULL && s->aside ? "set aside" : "not loaded");
            return 0;
        }
        held = held || v[i].status == ENG_ST_HELD;
        ended = ended || v[i].status == ENG_ST_RELEASED || v[i].status == ENG_ST_EXPIRED;
    }
    bool parts = e->parts_mode && v[0].n_lines > 1;
    if (!parts) {
        /* Sorted, distinct and in range: n == n_lines means lines 0..n-1. */
        if ((size_t)v[0].n_lines != n) {
            snprintf(why, ENG_REASON_MAX + 1,
                     "%zu of its %d lines are stored (a cart part without its siblings, or a "
                     "line lost)", n, (int)v[0].n_lines);
            return 0;
        }
        if (held && ended) {
            snprintf(why, ENG_REASON_MAX + 1,
                     "a line is held next to a released or expired one (all or nothing)");
            return 0;
        }
    }
    /* SKUs all in service already (loaded and audited): memory, their one
     * writer, is newer than any read of MariaDB; keep it. */
    bool fresh = false;
    for (size_t i = 0; i < n; i++)
        fresh = fresh || ei_sku_find(e, v[i].sku)->audit;
    if (!fresh)
        return 1;
    /* A reload meets the order it loaded before: same shape, same SKUs. */
    for (size_t i = 0; i < n; i++) {
        okey k;
        const eng_sku *s = ei_sku_find(e, v[i].sku);
        ei_make_key(v[i].order_id, v[i].line_no, parts, &k);
        const eng_order *o = ei_order_find(e, &k), *l = NULL;
        if (o == NULL && !parts && v[i].line_no > 0) {
            ei_make_key(v[i].order_id, 0, false, &k);
            o = ei_order_find(e, &k);
        }
        if (o != NULL)
            l = o->part || !ei_order_is_cart(o) ? o : ei_order_line((eng_order *)o, v[i].line_no);
        if (o != NULL && (o->part != parts || o->n_lines != v[i].n_lines ||
                          (l != NULL && l->sku != s) || ei_order_inflight(o))) {
            eng_why_fmt(why, "line %d does not match the order in memory",
                     (int)v[i].line_no);
            return 0;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!engine_load_order(e, &v[i]))
            return -1;  /* checked above: only memory can fail */
    eng_order *h = ei_order_find_id(e, v[0].order_id);
    if (h != NULL)
        ei_fin_sync(e, h);
    return 1;
}

int engine_reload_order(engine *e, const eng_order_view *v, size_t n,
                        char why[ENG_REASON_MAX + 1])
{
    if (n == 0 || n > ENG_LINES_MAX || e->parts_mode) {
        eng_why_fmt(why, "%zu stored lines (1..%d, not sharded)", n, ENG_LINES_MAX);
        return 0;
    }
    if (ei_order_find_id(e, v[0].order_id) != NULL)
        return 1;  /* memory stands */
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].order_id, v[0].order_id) != 0 || !eng_order_row_valid(&v[i], why) ||
            v[i].n_lines != (int32_t)n || v[i].line_no != (int32_t)i) {
            if (why[0] == '\0')
                eng_why_fmt(why, "its stored lines do not make one order");
            return 0;
        }
        const eng_sku *s = ei_sku_find(e, v[i].sku);
        if (s == NULL || !s->exists || s->aside) {
            eng_why_fmt(why, "line %d: its SKU %s is %s", (int)i, v[i].sku,
                        s != NULL && s->aside ? "set aside" : "not loaded");
            return 0;
        }
        int64_t own, sup;
        ei_line_holds(v[i].status, v[i].from_own, v[i].from_supplier, v[i].supplier_settled,
                      &own, &sup);
        /* Only final orders leave memory: one that holds units and is not
         * here was never evicted, and its units are not in the counters. */
        if (own != 0 || sup != 0 || v[i].status == ENG_ST_HELD ||
            v[i].status == ENG_ST_CONFIRMED) {
            eng_why_fmt(why, "line %d is %s but the order is not in memory", (int)i,
                        eng_status_name(v[i].status));
            return 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!engine_load_order(e, &v[i])) {
            eng_order *h = ei_order_find_id(e, v[0].order_id);
            if (h != NULL)
                ei_order_free(e, h);
            return -1;
        }
    }
    ei_fin_sync(e, ei_order_find_id(e, v[0].order_id));
    e->st.orders_reloaded++;
    return 1;
}

bool engine_aside_of(const engine *e, const eng_op *op, char out[ENG_REASON_MAX + 1])
{
    if (e->n_aside == 0)
        return false;
    char msg[ENG_REASON_MAX * 2];
    const char *names[1 + ENG_LINES_MAX];
    size_t n = 0;
    if (op->sku[0] != '\0')
        names[n++] = op->sku;
    if (op->kind == ENG_OP_RESERVE && op->lines != NULL)
        for (uint32_t i = 0; i < op->n_lines && i < ENG_LINES_MAX; i++)
            names[n++] = op->lines[i].sku;
    for (size_t i = 0; i < n; i++) {
        const eng_sku *s = ei_sku_find(e, names[i]);
        if (s != NULL && s->aside) {
            snprintf(msg, sizeof(msg), "sku %s is set aside: %s", s->name,
                     s->aside_why ? s->aside_why : "bad rows");
            goto found;
        }
    }
    if (op->order_id[0] != '\0' && strlen(op->order_id) <= ENG_ID_MAX) {
        for (int pass = 0; pass < 2; pass++) {
            okey k;
            if (pass == 0)
                ei_make_key(op->order_id, 0, false, &k);
            else if (op->part_lines > 1 && op->line_no > 0 && op->line_no < ENG_LINES_MAX)
                ei_make_key(op->order_id, op->line_no, true, &k);
            else
                break;
            const struct aside_ord *a = NULL;
            HASH_FIND(hh, e->aside_orders, k.b, k.len, a);
            if (a != NULL) {
                snprintf(msg, sizeof(msg), "order %s is set aside: %s", op->order_id, a->why);
                goto found;
            }
        }
    }
    return false;
found:
    if (out != NULL)
        ei_utf8_copy_cut(out, msg, ENG_REASON_MAX + 1);
    return true;
}

bool engine_supplier_trust(const engine *e, const char *supplier_id, eng_trust *out)
{
    *out = *ei_supp_trust(e, supplier_id);
    return ei_supp_find(e, supplier_id) != NULL;
}

void engine_each_supplier(const engine *e,
                          void (*fn)(const char *supplier_id, const eng_trust *t, void *arg),
                          void *arg)
{
    eng_supp *p, *tmp;
    HASH_ITER(hh, e->supps, p, tmp)
        fn(p->id, &p->t, arg);
}

/* Empties s: answers what waits in its FIFO with queued_err, drops the
 * heap entries and every order with a line on it (whole, other lines
 * included) and takes it off the ready list. With aside_why, each order
 * dropped is set aside with that reason and the units its other lines hold
 * are frozen on their SKUs. Nothing of s may be in a batch. */
void ei_sku_clear(engine *e, eng_sku *s, eng_err queued_err, const char *aside_why,
                      size_t *orders_out)
{
    /* Answer what waits; internal expiries are simply dropped (the next
     * owner reloads the holds and expires them). */
    ei_unpark_all(e, s);
    while (s->q_head != NULL)
        ei_answer_queued(e, s->q_head, queued_err, false);
    /* Heap entries of its held orders go stale by status; clear them. */
    for (size_t i = 0; i < e->heap_len;) {
        bool here = false;
        FOR_LINES(e->heap[i].o, l)
            here = here || l->sku == s;
        if (here) {
            ei_heap_drop(e, i);
            continue;
        }
        i++;
    }
    ei_heap_rebuild(e);
    while (s->orders != NULL) {
        eng_order *h = s->orders->head;
        h->pending = 0;
        if (aside_why != NULL) {
            okey k;
            memcpy(k.b, h->id, h->key_len + 1u);
            k.len = h->key_len;
            (void)aside_key_add(e, &k, s->name, aside_why);  /* full: refused as unknown */
            FOR_LINES(h, l)
                if (l->sku != s)
                    freeze(e, l->sku->name, l->status, l->from_own, l->from_supplier,
                           l->supplier_settled);
        }
        if (orders_out != NULL)
            (*orders_out)++;
        ei_order_free(e, h);
    }
    if (s->on_ready) {
        /* Unlink from the ready list. */
        eng_sku **pp = &e->ready_head, *prev = NULL;
        while (*pp != s) {
            prev = *pp;
            pp = &(*pp)->ready_next;
        }
        *pp = s->ready_next;
        if (e->ready_tail == s)
            e->ready_tail = prev;
        s->on_ready = false;
    }
}
