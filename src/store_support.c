/* store_support.c — the support connection the console reads through:
 * open alerts, a supplier's alerts, a SKU's recent moves, acknowledgements;
 * a bounded queue and a statement time limit, so support never delays a
 * commit. */
#include "store_internal.h"

static void sup_start(store *s);

static void sup_fail(const sup_req *r)
{
    if (r->kind == SUP_MOVES)
        r->fn.moves(r->arg, -1, NULL);
    else
        r->fn.alerts(r->arg, -1, NULL);
}

static void sup_release(dbc *d)
{
    store_support *sp = ((store *)d->owner)->sup;
    if (sp->res) {
        mysql_free_result(sp->res);
        sp->res = NULL;
    }
}

/* Every waiting request fails: nobody can answer them now. */
static void sup_fail_queue(store_support *sp)
{
    while (sp->q_len > 0) {
        sup_req r = sp->q[sp->q_head];
        sp->q_head = (sp->q_head + 1) % STORE_SUPPORT_QUEUE_MAX;
        sp->q_len--;
        sup_fail(&r);
    }
}

static void sup_on_down(dbc *d, const char *why, dbc_state was)
{
    store_support *sp = ((store *)d->owner)->sup;
    if (was == DBC_IDLE || was == DBC_BUSY)
        LOG_W("store: support connection down", "why", why);
    if (sp->running) {
        sp->running = false;
        sup_fail(&sp->cur);
    }
    if (sp->q_len)
        event_active(d->defer, EV_TIMEOUT, 0);
}

static void sup_on_up(dbc *d)
{
    sup_start(d->owner);
}

static bool parse_alert_full(MYSQL_ROW row, const unsigned long *len, store_alert *a)
{
    if (!st_parse_alert_row(row, len, a))
        return false;
    if (row[6] && !st_col_i64(row, 6, &a->acked_at))
        return false;
    st_col_cut(row, len, 7, a->acked_by, sizeof a->acked_by);
    st_col_cut(row, len, 8, a->ack_note, sizeof a->ack_note);
    return true;
}

/* Hands the stored result to the request's callback. */
static void sup_deliver(store_support *sp, const sup_req *r)
{
    MYSQL_RES *res = sp->res;
    sp->res = NULL;
    size_t n = res ? (size_t)mysql_num_rows(res) : 0;
    if (n > STORE_SUPPORT_ROWS_MAX)
        n = STORE_SUPPORT_ROWS_MAX;
    if (r->kind == SUP_MOVES) {
        store_sku_move *m = calloc(n ? n : 1, sizeof *m);
        int k = 0;
        MYSQL_ROW row;
        while (m && (size_t)k < n && (row = mysql_fetch_row(res))) {
            const unsigned long *len = mysql_fetch_lengths(res);
            store_sku_move *x = &m[k];
            if (!st_col_str(row, len, 0, x->order_id, sizeof x->order_id, false) ||
                !st_col_i64(row, 2, &x->at_ms))
                continue;  /* history that does not parse: left out */
            st_col_cut(row, len, 1, x->move, sizeof x->move);
            st_col_cut(row, len, 3, x->status, sizeof x->status);
            if (row[3]) {
                (void)st_col_i64(row, 4, &x->qty);
                (void)st_col_i64(row, 5, &x->from_own);
                (void)st_col_i64(row, 6, &x->from_supplier);
                st_col_cut(row, len, 7, x->reason, sizeof x->reason);
            }
            k++;
        }
        r->fn.moves(r->arg, m ? k : -1, m);
        free(m);
    } else {
        store_alert *a = calloc(n ? n : 1, sizeof *a);
        int k = 0;
        MYSQL_ROW row;
        while (a && (size_t)k < n && (row = mysql_fetch_row(res)))
            if (parse_alert_full(row, mysql_fetch_lengths(res), &a[k]))
                k++;
        int result = a ? k : -1;
        if (r->kind == SUP_ACK_READ && result >= 0)
            result = k == 0 ? 0 : r->acked_now ? 1 : 2;
        r->fn.alerts(r->arg, result, a);
        free(a);
    }
    if (res)
        mysql_free_result(res);
}

/* The running statement is done (its result stored, if it has one). */
static void sup_done(store *s)
{
    store_support *sp = s->sup;
    st_dbc_idle(&sp->db);
    sup_req r = sp->cur;
    sp->running = false;
    if (r.kind == SUP_ACK) {
        /* Then read the row as it stands: the first acknowledgement wins. */
        sup_req rd = r;
        rd.kind = SUP_ACK_READ;
        rd.acked_now = mysql_affected_rows(sp->db.my) == 1;
        snprintf(rd.sql, sizeof rd.sql, "SELECT " ALERT_COLS " FROM alerts a WHERE a.id = %" PRId64,
                 r.id);
        sp->cur = rd;
        sp->running = true;
        sp->phase = SUP_QUERY;
        st_sb_reset(&sp->db.sql);
        st_sb_str(&sp->db.sql, rd.sql);
        st_dbc_query_start(&sp->db, s->commit_timeout_ms);
        return;
    }
    sup_deliver(sp, &r);
    sup_start(s);
}

static void sup_step(dbc *d)
{
    store *s = d->owner;
    store_support *sp = s->sup;
    char msg[300];
    if (sp->phase == SUP_QUERY) {
        if (d->qret != 0) {
            unsigned e = mysql_errno(d->my);
            snprintf(msg, sizeof msg, "support query: MariaDB %u: %s", e, mysql_error(d->my));
            if (e >= 2000) {  /* a client error: the connection is gone */
                st_dbc_down(d, msg);
                return;
            }
            /* The server refused the statement (e.g. max_statement_time):
             * the connection is fine, the request fails. */
            LOG_W("store: support query failed", "why", msg);
            st_dbc_idle(d);
            sp->running = false;
            sup_fail(&sp->cur);
            sup_start(s);
            return;
        }
        if (sp->cur.kind == SUP_ACK) {
            sup_done(s);
            return;
        }
        sp->phase = SUP_RESULT;
        int st = mysql_store_result_start(&sp->res, d->my);
        if (st) {
            st_dbc_wait(d, st);
            return;
        }
    }
    if (!sp->res && mysql_errno(d->my)) {
        snprintf(msg, sizeof msg, "support result: %s", mysql_error(d->my));
        st_dbc_down(d, msg);
        return;
    }
    sup_done(s);
}

static int sup_cont(dbc *d, int status)
{
    store_support *sp = ((store *)d->owner)->sup;
    if (sp->phase == SUP_QUERY)
        return mysql_real_query_cont(&d->qret, d->my, status);
    return mysql_store_result_cont(&sp->res, d->my, status);
}

static void sup_timeout(dbc *d)
{
    st_dbc_down(d, "support query timeout");
}

static void sup_defer(dbc *d)
{
    store *s = d->owner;
    if (d->state == DBC_DOWN) {
        /* Nobody to ask: the waiting requests fail now, not after backoff;
         * the reconnect is armed. */
        sup_fail_queue(s->sup);
        return;
    }
    if (d->state == DBC_IDLE)
        sup_start(s);
}

static const dbc_ops sup_ops = {
    .up = sup_on_up,
    .down = sup_on_down,
    .release = sup_release,
    .cont = sup_cont,
    .step = sup_step,
    .timeout = sup_timeout,
    .defer = sup_defer,
};

/* Starts the next waiting request when the connection is idle. */
static void sup_start(store *s)
{
    store_support *sp = s->sup;
    if (sp->running || sp->q_len == 0 || sp->db.state != DBC_IDLE)
        return;
    sp->cur = sp->q[sp->q_head];
    sp->q_head = (sp->q_head + 1) % STORE_SUPPORT_QUEUE_MAX;
    sp->q_len--;
    sp->running = true;
    sp->phase = SUP_QUERY;
    st_sb_reset(&sp->db.sql);
    st_sb_str(&sp->db.sql, sp->cur.sql);
    if (sp->db.sql.err) {
        sp->running = false;
        sup_fail(&sp->cur);
        event_active(sp->db.defer, EV_TIMEOUT, 0);
        return;
    }
    st_dbc_query_start(&sp->db, s->commit_timeout_ms);
}

/* The connection is made at the first request, in the background (the
 * timer of a DOWN dbc connects). */
static store_support *sup_get(store *s)
{
    if (s->sup)
        return s->sup;
    store_support *sp = calloc(1, sizeof *sp);
    if (!sp)
        return NULL;
    dbc *d = &sp->db;
    d->s = s;
    d->ops = &sup_ops;
    d->owner = s;
    d->io = event_new(s->base, -1, 0, st_dbc_io_cb, d);
    d->timer = evtimer_new(s->base, st_dbc_timer_cb, d);
    d->defer = evtimer_new(s->base, st_dbc_defer_cb, d);
    if (!d->io || !d->timer || !d->defer) {
        st_dbc_free(d);
        free(sp);
        return NULL;
    }
    d->state = DBC_DOWN;
    struct timeval now = {0, 0};
    evtimer_add(d->timer, &now);
    s->sup = sp;
    return sp;
}

void st_sup_free(store *s)
{
    if (!s->sup)
        return;
    st_dbc_free(&s->sup->db);
    free(s->sup);
    s->sup = NULL;
}

static int sup_enqueue(store *s, const sup_req *r)
{
    store_support *sp = sup_get(s);
    if (!sp || sp->q_len >= STORE_SUPPORT_QUEUE_MAX)
        return -1;
    sp->q[(sp->q_head + sp->q_len) % STORE_SUPPORT_QUEUE_MAX] = *r;
    sp->q_len++;
    /* Never inside this call: the defer starts it. While the connection is
     * down or connecting, its coming up starts it, or its failing fails it
     * (sup_on_down): a wait bounded by the backoff and connect timeout. */
    if (sp->db.state == DBC_IDLE)
        event_active(sp->db.defer, EV_TIMEOUT, 0);
    return 0;
}

/* SQL text into r->sql; false when it does not fit (never expected). */
static bool sup_sql(sup_req *r, const sbuf *b)
{
    if (b->err || b->len >= sizeof r->sql)
        return false;
    memcpy(r->sql, b->p, b->len);
    r->sql[b->len] = '\0';
    return true;
}

static int sup_limit(uint32_t limit)
{
    return limit < 1 ? 1 : limit > STORE_SUPPORT_ROWS_MAX ? STORE_SUPPORT_ROWS_MAX : (int)limit;
}

int store_alerts_open(store *s, uint32_t limit, store_alerts_fn fn, void *arg)
{
    assert(fn);
    sup_req r = {.kind = SUP_ALERTS, .fn.alerts = fn, .arg = arg};
    snprintf(r.sql, sizeof r.sql,
             "SET STATEMENT max_statement_time=%d FOR SELECT " ALERT_COLS
             " FROM alerts a WHERE a.acked_at IS NULL ORDER BY a.id DESC LIMIT %d",
             STORE_SUPPORT_STMT_S, sup_limit(limit));
    return sup_enqueue(s, &r);
}

int store_alerts_of_supplier(store *s, const char *supplier_id, uint32_t limit,
                             store_alerts_fn fn, void *arg)
{
    assert(fn);
    size_t n = strnlen(supplier_id, ENG_ID_MAX + 1);
    if (n < 1 || n > ENG_ID_MAX)
        return -1;
    sup_req r = {.kind = SUP_ALERTS, .fn.alerts = fn, .arg = arg};
    sbuf b = {0};
    char head[160];
    snprintf(head, sizeof head, "SET STATEMENT max_statement_time=%d FOR SELECT ",
             STORE_SUPPORT_STMT_S);
    st_sb_str(&b, head);
    st_sb_str(&b, ALERT_COLS " FROM alerts a JOIN sku k ON k.sku = a.sku WHERE k.supplier_id = ");
    st_sb_hex_str(&b, supplier_id);
    st_sb_str(&b, " ORDER BY a.id DESC LIMIT ");
    st_sb_i64(&b, sup_limit(limit));
    bool ok = sup_sql(&r, &b);
    st_sb_free(&b);
    return ok ? sup_enqueue(s, &r) : -1;
}

int store_alert_ack(store *s, int64_t id, const char *by, const char *note, int64_t at_ms,
                    store_alerts_fn fn, void *arg)
{
    assert(fn && by && note);
    size_t nb = strnlen(by, ENG_ID_MAX + 1), nn = strnlen(note, STORE_ACK_NOTE_MAX + 1);
    if (id < 1 || nb < 1 || nb > ENG_ID_MAX || nn > STORE_ACK_NOTE_MAX)
        return -1;
    sup_req r = {.kind = SUP_ACK, .id = id, .fn.alerts = fn, .arg = arg};
    sbuf b = {0};
    st_sb_str(&b, "UPDATE alerts SET acked_at = ");
    st_sb_i64(&b, at_ms);
    st_sb_str(&b, ", acked_by = ");
    st_sb_hex_str(&b, by);
    st_sb_str(&b, ", ack_note = ");
    st_sb_hex_or_null(&b, nn ? note : NULL);
    st_sb_str(&b, " WHERE id = ");
    st_sb_i64(&b, id);
    st_sb_str(&b, " AND acked_at IS NULL");
    bool ok = sup_sql(&r, &b);
    st_sb_free(&b);
    return ok ? sup_enqueue(s, &r) : -1;
}

int store_sku_moves(store *s, const char *sku, uint32_t limit, store_moves_fn fn, void *arg)
{
    assert(fn);
    size_t n = strnlen(sku, ENG_ID_MAX + 1);
    if (n < 1 || n > ENG_ID_MAX)
        return -1;
    sup_req r = {.kind = SUP_MOVES, .fn.moves = fn, .arg = arg};
    sbuf b = {0};
    char head[160];
    snprintf(head, sizeof head, "SET STATEMENT max_statement_time=%d FOR SELECT ",
             STORE_SUPPORT_STMT_S);
    st_sb_str(&b, head);
    /* The ledger's sku index ends in its id: the newest moves of one SKU
     * are read backwards from the index, without sorting its history. */
    st_sb_str(&b, "l.order_id,l.move,l.at,o.status,o.qty,o.from_own,o.from_supplier,o.reason"
               " FROM ledger l LEFT JOIN orders o ON o.order_id = l.order_id AND o.sku = l.sku"
               " WHERE l.sku = ");
    st_sb_hex_str(&b, sku);
    st_sb_str(&b, " AND l.order_id IS NOT NULL ORDER BY l.id DESC LIMIT ");
    st_sb_i64(&b, sup_limit(limit));
    bool ok = sup_sql(&r, &b);
    st_sb_free(&b);
    return ok ? sup_enqueue(s, &r) : -1;
}
