/* store_reader.c — the reader connection: single-SKU loads (cold SKUs,
 * takeovers), order lookups, cart decisions, queued and batched, answered
 * from the loop. */
#include "store_internal.h"
#include "stockd/clock.h"

static void rd_start_query(store *s);

/* Frees what the reader read, before its handle closes. */
static void rd_release(dbc *d)
{
    store_reader *rd = &((store *)d->owner)->rd;
    if (rd->res) {
        mysql_free_result(rd->res);
        rd->res = NULL;
    }
    if (rd->res_orders) {
        mysql_free_result(rd->res_orders);
        rd->res_orders = NULL;
    }
}

/* Answers every request of the running query with result -1. */
static void rd_fail_batch(store *s)
{
    store_reader *rd = &s->rd;
    size_t n = rd->n_batch;
    rd->n_batch = 0;
    for (size_t i = 0; i < n; i++) {
        s->st.sku_loads_failed++;
        st_load_req_fail(&rd->batch[i]);
    }
}

static void rd_down(store *s, const char *why)
{
    st_dbc_down(&s->rd.db, why);
}

/* The reader failed: its query's requests fail, and so do the queued ones
 * (through defer: the loop answers them while the reader is down, so that
 * readers of a dead MariaDB hear "unavailable" at once). Reconnects after
 * backoff (armed by st_dbc_down). */
static void rd_on_down(dbc *d, const char *why, dbc_state was)
{
    store *s = d->owner;
    if (was == DBC_IDLE || was == DBC_BUSY)
        LOG_W("store: reader connection down", "why", why);
    rd_fail_batch(s);
    if (s->rd.q_len)
        event_active(d->defer, EV_TIMEOUT, 0);
}

static void rd_on_up(dbc *d)
{
    rd_start_query(d->owner);
}

static void lq_push(store_reader *rd, const load_req *r)
{
    assert(rd->q_len < rd->q_cap);
    rd->q[(rd->q_head + rd->q_len) % rd->q_cap] = *r;
    rd->q_len++;
}

static void lq_pop(store_reader *rd, load_req *out)
{
    assert(rd->q_len > 0);
    *out = rd->q[rd->q_head];
    rd->q_head = (rd->q_head + 1) % rd->q_cap;
    rd->q_len--;
}

/* " WHERE sku IN (...)" (or order_id) over the running batch. */
static void rd_sql_in(store_reader *rd)
{
    st_sb_str(&rd->db.sql,
              rd->step == RD_STEP_FIND || rd->step == RD_STEP_LINES || rd->step == RD_STEP_ORDER
                  ? " WHERE order_id IN ("
                  : " WHERE sku IN (");
    for (size_t i = 0; i < rd->n_batch; i++) {
        if (i)
            st_sb_str(&rd->db.sql, ",");
        st_sb_hex_str(&rd->db.sql, rd->batch[i].sku);
    }
    st_sb_str(&rd->db.sql, ")");
}

/* First writer wins, in one statement: the upsert changes nothing on a
 * duplicate, and RETURNING gives the row that stands for every value
 * (inserted now, or there before: InnoDB locks it, so it is final). Two
 * requests of one order in a batch: the first inserts, both read it. */
static void rd_sql_decide(store_reader *rd)
{
    int64_t at = clock_wall_ms();
    st_sb_str(&rd->db.sql, "INSERT INTO cart_decisions (order_id,decision,at_ms,err_code,err_line,"
                        "err_sku,err_available) VALUES ");
    for (size_t i = 0; i < rd->n_batch; i++) {
        const load_req *r = &rd->batch[i];
        assert(r->want == STORE_DECIDE_CONFIRM || r->want == STORE_DECIDE_ABORT);
        const store_abort_why *w = &r->why;
        bool why = r->want == STORE_DECIDE_ABORT && w->code[0] != '\0';
        st_sb_str(&rd->db.sql, i ? ",(" : "(");
        st_sb_hex_str(&rd->db.sql, r->sku);
        st_sb_str(&rd->db.sql, r->want == STORE_DECIDE_CONFIRM ? ",'confirm'," : ",'abort',");
        st_sb_i64(&rd->db.sql, at);
        st_sb_str(&rd->db.sql, ",");
        st_sb_hex_or_null(&rd->db.sql, why ? w->code : NULL);
        st_sb_str(&rd->db.sql, ",");
        if (why && w->line >= 0)
            st_sb_i64(&rd->db.sql, w->line);
        else
            st_sb_str(&rd->db.sql, "NULL");
        st_sb_str(&rd->db.sql, ",");
        st_sb_hex_or_null(&rd->db.sql, why && w->sku[0] ? w->sku : NULL);
        st_sb_str(&rd->db.sql, ",");
        if (why && w->available >= 0)
            st_sb_i64(&rd->db.sql, w->available);
        else
            st_sb_str(&rd->db.sql, "NULL");
        st_sb_str(&rd->db.sql, ")");
    }
    st_sb_str(&rd->db.sql, " ON DUPLICATE KEY UPDATE at_ms=at_ms RETURNING order_id,decision,err_code,"
                        "err_line,err_sku,err_available");
}

/* Sends the statement of the running batch's current step. */
static void rd_send_step(store *s)
{
    store_reader *rd = &s->rd;
    st_sb_reset(&rd->db.sql);
    switch (rd->step) {
    case RD_STEP_ISOLATION:
        /* READ COMMITTED: the bump of SKUs that do not exist yet takes no
         * gap locks, so it cannot deadlock with a batch inserting them.
         * The rows that do exist are locked by the bump, so what the
         * SELECTs read after it is final either way. */
        st_sb_str(&rd->db.sql, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
        break;
    case RD_STEP_BEGIN:
        st_sb_str(&rd->db.sql, "START TRANSACTION");
        break;
    case RD_STEP_BUMP:
        st_sb_str(&rd->db.sql, "UPDATE sku SET epoch=epoch+1,version=version+1");
        rd_sql_in(rd);
        break;
    case RD_STEP_SKUS:
        st_sb_str(&rd->db.sql, SKU_SELECT);
        rd_sql_in(rd);
        break;
    case RD_STEP_ORDERS:
        /* Sorted: a SKU's lines of one order may come in any order. */
        st_sb_str(&rd->db.sql, ORDER_SELECT);
        rd_sql_in(rd);
        st_sb_str(&rd->db.sql, ORDER_SORT);
        break;
    case RD_STEP_COMMIT:
        st_sb_str(&rd->db.sql, "COMMIT");
        break;
    case RD_STEP_FIND:
        st_sb_str(&rd->db.sql, "SELECT order_id,sku FROM orders");
        rd_sql_in(rd);
        st_sb_str(&rd->db.sql, " AND line_no=0");
        break;
    case RD_STEP_LINES:
        st_sb_str(&rd->db.sql, "SELECT order_id,line_no,n_lines,sku FROM orders");
        rd_sql_in(rd);
        st_sb_str(&rd->db.sql, ORDER_SORT);
        break;
    case RD_STEP_DECIDE:
        rd_sql_decide(rd);
        break;
    case RD_STEP_ORDER:
        st_sb_str(&rd->db.sql, ORDER_SELECT);
        rd_sql_in(rd);
        st_sb_str(&rd->db.sql, ORDER_SORT);
        break;
    case RD_STEP_RETRY:
        st_sb_str(&rd->db.sql, "ROLLBACK");
        break;
    default:
        assert(!"no statement for this step");
    }
    if (rd->db.sql.err) {
        rd_fail_batch(s);
        rd->db.state = DBC_IDLE;
        return;
    }
    s->st.sku_load_queries++;
    rd->phase = RD_QUERY;
    st_dbc_query_start(&rd->db, s->commit_timeout_ms);
}

/* Takes up to STORE_LOAD_BATCH_MAX queued requests into one load. */
static void rd_start_query(store *s)
{
    store_reader *rd = &s->rd;
    if (rd->db.state != DBC_IDLE || rd->q_len == 0)
        return;
    rd->n_batch = 0;
    /* One kind a batch: the requests at the head of the queue that share
     * its kind (arrival order is kept). */
    load_kind kind = rd->q[rd->q_head].kind;
    while (rd->q_len && rd->n_batch < STORE_LOAD_BATCH_MAX && rd->q[rd->q_head].kind == kind) {
        load_req *r = &rd->batch[rd->n_batch];
        lq_pop(rd, r);
        rd->n_batch++;
    }
    switch (kind) {
    case LK_FIND:
        rd->step = RD_STEP_FIND;
        break;
    case LK_LINES:
        rd->step = RD_STEP_LINES;
        break;
    case LK_DECIDE:
        rd->step = RD_STEP_DECIDE;
        break;
    case LK_ORDER:
        rd->step = RD_STEP_ORDER;
        break;
    default:
        rd->step = s->takeover ? RD_STEP_ISOLATION : RD_STEP_SKUS;
        break;
    }
    rd->deadlocks = 0;
    rd_send_step(s);
}

/* A takeover's orders go straight into the engine, after their SKUs (an
 * order needs its SKU) and before anyone is told the SKU is loaded. */
static void rd_load_orders(store *s, MYSQL_RES *res)
{
    uint64_t n = 0;
    char err[256];
    /* Set aside what does not load; a failure here (out of memory, too
     * much set aside) leaves the rest unloaded: their SKUs' audit then
     * sets them aside too, never sells from them. */
    if (st_load_orders_res(res, s->takeover, &n, err, sizeof err) != 0)
        LOG_E("store: takeover: orders not loaded", "error", err);
}

/* Takes the reader's finished batch and its result (NULL when the query
 * failed) off the reader before any callback runs, so a callback may queue
 * the next request. Returns how many requests it held. */
static size_t rd_take_batch(store *s, load_req *batch, MYSQL_RES **res)
{
    store_reader *rd = &s->rd;
    *res = rd->res;
    rd->res = NULL;
    size_t n = rd->n_batch;
    rd->n_batch = 0;
    memcpy(batch, rd->batch, n * sizeof *batch);
    return n;
}

/* An order lookup's result: (order_id, sku) rows. */
static void rd_deliver_find(store *s)
{
    load_req batch[STORE_LOAD_BATCH_MAX];
    MYSQL_RES *res;
    size_t n = rd_take_batch(s, batch, &res);
    char skus[STORE_LOAD_BATCH_MAX][ENG_ID_MAX + 1];
    bool found[STORE_LOAD_BATCH_MAX] = {false};
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        for (size_t i = 0; i < n; i++) {
            if (!row[0] || !row[1] || strlen(batch[i].sku) != len[0] ||
                memcmp(batch[i].sku, row[0], len[0]) != 0 || len[1] < 1 || len[1] > ENG_ID_MAX)
                continue;
            memcpy(skus[i], row[1], len[1]);
            skus[i][len[1]] = '\0';
            found[i] = true;
        }
    }
    if (res)
        mysql_free_result(res);
    for (size_t i = 0; i < n; i++)
        batch[i].fn.find(batch[i].sku, found[i] ? 1 : 0, found[i] ? skus[i] : NULL,
                         batch[i].arg);
}

static bool row_is_key(MYSQL_ROW row, const unsigned long *len, int col, const char *key)
{
    return row[col] && strlen(key) == len[col] && memcmp(key, row[col], len[col]) == 0;
}

/* The lines of order_id among the rows of res (sorted by order_id,
 * line_no): their count, 0 when none, -1 when they do not make sense
 * (out of range, not one per line_no, n_lines not shared). */
static int rd_collect_lines(MYSQL_RES *res, const char *order_id, store_line_ref *out)
{
    int n = 0;
    MYSQL_ROW row;
    mysql_data_seek(res, 0);
    while ((row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        if (!row_is_key(row, len, 0, order_id))
            continue;
        int64_t line_no, n_lines;
        if (n >= ENG_LINES_MAX || !row[1] || !st_col_i64(row, 1, &line_no) || !row[2] ||
            !st_col_i64(row, 2, &n_lines) || n_lines < 1 || n_lines > ENG_LINES_MAX ||
            line_no < 0 || line_no >= n_lines || (n > 0 && n_lines != out[0].n_lines) ||
            (n > 0 && line_no <= out[n - 1].line_no) ||
            !st_col_str(row, len, 3, out[n].sku, sizeof out[n].sku, false) || !out[n].sku[0])
            return -1;
        out[n].line_no = (int32_t)line_no;
        out[n].n_lines = (int32_t)n_lines;
        n++;
    }
    return n;
}

/* An order-lines lookup's result. Each request scans the rows (at most
 * STORE_LOAD_BATCH_MAX x ENG_LINES_MAX): simple, and small next to the
 * round trip. */
static void rd_deliver_lines(store *s)
{
    load_req batch[STORE_LOAD_BATCH_MAX];
    MYSQL_RES *res;
    size_t n = rd_take_batch(s, batch, &res);
    store_line_ref lines[ENG_LINES_MAX];
    for (size_t i = 0; i < n; i++) {
        int got = res ? rd_collect_lines(res, batch[i].sku, lines) : -1;
        if (got < 0) {
            s->st.sku_loads_failed++;
            LOG_W("store: order lines do not make sense", "order_id", batch[i].sku);
        }
        batch[i].fn.lines(batch[i].sku, got, got > 0 ? lines : NULL, batch[i].arg);
    }
    if (res)
        mysql_free_result(res);
}

/* Whole orders read back: each request's rows (sorted by order_id,
 * line_no) as views; -1 when one does not parse or the lines do not make
 * one order (0..n_lines-1 once each). */
static void rd_deliver_order(store *s)
{
    load_req batch[STORE_LOAD_BATCH_MAX];
    MYSQL_RES *res;
    size_t n = rd_take_batch(s, batch, &res);
    eng_order_view lines[ENG_LINES_MAX];
    for (size_t i = 0; i < n; i++) {
        int got = res ? 0 : -1;
        char why[ENG_REASON_MAX + 1] = "";
        MYSQL_ROW row;
        if (res)
            mysql_data_seek(res, 0);
        while (got >= 0 && res && (row = mysql_fetch_row(res))) {
            unsigned long *len = mysql_fetch_lengths(res);
            if (!row_is_key(row, len, 0, batch[i].sku))
                continue;
            if (got >= ENG_LINES_MAX || !st_parse_order_row(row, len, &lines[got], why) ||
                lines[got].line_no != got || lines[got].n_lines != lines[0].n_lines)
                got = -1;
            else
                got++;
        }
        if (got > 0 && lines[0].n_lines != got)
            got = -1;
        if (got < 0 && res) {
            s->st.sku_loads_failed++;
            LOG_W("store: a stored order does not read back", "order_id", batch[i].sku,
                  "why", why[0] ? why : "its lines do not make one order");
        }
        batch[i].fn.order(batch[i].sku, got, got > 0 ? lines : NULL, batch[i].arg);
    }
    if (res)
        mysql_free_result(res);
}

/* A decision batch's result: (order_id, decision) of every order asked. */
static void rd_deliver_decide(store *s)
{
    load_req batch[STORE_LOAD_BATCH_MAX];
    MYSQL_RES *res;
    size_t n = rd_take_batch(s, batch, &res);
    int got[STORE_LOAD_BATCH_MAX];
    store_abort_why why[STORE_LOAD_BATCH_MAX];
    bool has_why[STORE_LOAD_BATCH_MAX] = {false};
    for (size_t i = 0; i < n; i++)
        got[i] = -1;
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        int d = !row[1] ? -1
                : strcmp(row[1], "confirm") == 0 ? STORE_DECIDE_CONFIRM
                : strcmp(row[1], "abort") == 0   ? STORE_DECIDE_ABORT
                                                 : -1;
        /* A refusal we cannot read back is no refusal: the retry then
         * answers as for an abort without one. */
        store_abort_why w = {.line = -1, .available = -1};
        bool ok = d == STORE_DECIDE_ABORT && row[2] && len[2] > 0 && len[2] <= STORE_ABORT_CODE_MAX &&
                  (!row[4] || len[4] <= ENG_ID_MAX);
        if (ok) {
            memcpy(w.code, row[2], len[2]);
            if (row[3])
                w.line = (int32_t)strtol(row[3], NULL, 10);
            if (row[4])
                memcpy(w.sku, row[4], len[4]);
            if (row[5])
                w.available = strtoll(row[5], NULL, 10);
        }
        for (size_t i = 0; i < n; i++) {
            if (row_is_key(row, len, 0, batch[i].sku)) {
                got[i] = d;
                why[i] = w;
                has_why[i] = ok;
            }
        }
    }
    if (res)
        mysql_free_result(res);
    for (size_t i = 0; i < n; i++) {
        if (got[i] < 0)
            s->st.sku_loads_failed++;
        batch[i].fn.decide(batch[i].sku, got[i], has_why[i] ? &why[i] : NULL, batch[i].arg);
    }
}

/* The results are stored: answer every request of the batch. */
static void rd_deliver(store *s)
{
    store_reader *rd = &s->rd;
    if (rd->step == RD_STEP_FIND) {
        rd_deliver_find(s);
        return;
    }
    if (rd->step == RD_STEP_LINES) {
        rd_deliver_lines(s);
        return;
    }
    if (rd->step == RD_STEP_DECIDE) {
        rd_deliver_decide(s);
        return;
    }
    if (rd->step == RD_STEP_ORDER) {
        rd_deliver_order(s);
        return;
    }
    MYSQL_RES *res = rd->res, *res_orders = rd->res_orders;
    rd->res = rd->res_orders = NULL;
    bool found[STORE_LOAD_BATCH_MAX] = {false};
    store_sku_row rows_ok[STORE_LOAD_BATCH_MAX];
    bool ok_row[STORE_LOAD_BATCH_MAX] = {false};
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        unsigned long *len = mysql_fetch_lengths(res);
        store_sku_row r;
        char why[ENG_REASON_MAX + 1];
        bool ok = st_parse_sku_row(row, len, &r, why);
        /* Not a takeover: a SKU loaded on first use had no orders when the
         * instance started (those with orders were loaded then), and can
         * have none since, so it holds no units. */
        if (ok && !s->takeover && (r.c.own_reserved != 0 || r.c.supplier_reserved != 0)) {
            snprintf(why, sizeof why,
                     "counters do not match its orders: own_reserved %" PRId64
                     ", supplier_reserved %" PRId64 " with no orders",
                     r.c.own_reserved, r.c.supplier_reserved);
            ok = false;
        }
        for (size_t i = 0; i < rd->n_batch; i++) {
            if (!row[0] || strlen(rd->batch[i].sku) != len[0] ||
                memcmp(rd->batch[i].sku, row[0], len[0]) != 0)
                continue;
            found[i] = true;
            ok_row[i] = ok;
            rows_ok[i] = r;
            /* Known to the engine from now on: the waiters are refused
             * (set aside), nobody loads it again. */
            if (!ok && s->eng != NULL && !engine_knows_sku(s->eng, rd->batch[i].sku) &&
                st_aside_sku(s->eng, rd->batch[i].sku, why) == 0)
                ok_row[i] = true;
        }
    }
    if (s->takeover) {
        for (size_t i = 0; i < rd->n_batch; i++) {
            const store_sku_row *r = &rows_ok[i];
            if (ok_row[i] && !engine_knows_sku(s->takeover, r->sku) &&
                !engine_load_sku(s->takeover, r->sku, &r->c, r->mapping,
                                 store_sku_row_map(r), r->epoch))
                ok_row[i] = false;
        }
        rd_load_orders(s, res_orders);
        for (size_t i = 0; i < rd->n_batch; i++)
            if (found[i] && ok_row[i] && !engine_knows_sku(s->takeover, rd->batch[i].sku))
                ok_row[i] = false;
    }
    size_t n = rd->n_batch;
    rd->n_batch = 0;
    load_req batch[STORE_LOAD_BATCH_MAX];
    memcpy(batch, rd->batch, n * sizeof *batch);
    for (size_t i = 0; i < n; i++) {
        if (!found[i]) {
            batch[i].fn.load(batch[i].sku, 0, NULL, batch[i].arg);
        } else if (ok_row[i]) {
            s->st.sku_loads_found++;
            batch[i].fn.load(batch[i].sku, 1, &rows_ok[i], batch[i].arg);
        } else {
            s->st.sku_loads_failed++;
            batch[i].fn.load(batch[i].sku, -1, NULL, batch[i].arg);
        }
    }
    if (res)
        mysql_free_result(res);
    if (res_orders)
        mysql_free_result(res_orders);
}

/* The running step's statement is done: the next one, or the answers. */
static void rd_next_step(store *s)
{
    store_reader *rd = &s->rd;
    if (rd->step == RD_STEP_RETRY)
        rd->step = RD_STEP_ISOLATION;
    else if (!st_rd_step_single(rd->step))
        rd->step = s->takeover ? rd->step + 1 : RD_STEP_DONE;
    if (rd->step < RD_STEP_DONE) {
        rd_send_step(s);
        return;
    }
    assert(rd->step == RD_STEP_DONE || st_rd_step_single(rd->step));
    st_dbc_idle(&rd->db);
    rd_deliver(s);
    rd_start_query(s);
}

/* The statement's _start/_cont returned 0: act on where the reader is. */
static void rd_step(dbc *d)
{
    store *s = d->owner;
    store_reader *rd = &s->rd;
    char msg[300];
    switch (rd->phase) {
    case RD_QUERY:
        if (d->qret != 0) {
            unsigned e = mysql_errno(d->my);
            /* InnoDB rolled the takeover back (deadlock or lock wait
             * timeout) and the connection is fine: run it again, a few
             * times, before failing its loads. */
            if ((e == 1213 || e == 1205) && s->takeover && rd->step >= RD_STEP_BUMP &&
                rd->step < RD_STEP_DONE && ++rd->deadlocks <= 3) {
                s->st.sku_load_retries++;
                rd->step = RD_STEP_RETRY;
                rd_send_step(s);
                return;
            }
            snprintf(msg, sizeof msg, "load: MariaDB %u: %s", e, mysql_error(d->my));
            rd_down(s, msg);
            return;
        }
        if (rd->step != RD_STEP_SKUS && rd->step != RD_STEP_ORDERS && !st_rd_step_single(rd->step)) {
            rd_next_step(s);
            return;
        }
        rd->phase = RD_RESULT;
        int st = mysql_store_result_start(rd->step == RD_STEP_ORDERS ? &rd->res_orders : &rd->res, d->my);
        if (st) {
            st_dbc_wait(d, st);
            return;
        }
        /* fall through: stored at once */
        /* FALLTHROUGH */
    case RD_RESULT:
        if (!(rd->step == RD_STEP_ORDERS ? rd->res_orders : rd->res) && mysql_errno(d->my)) {
            snprintf(msg, sizeof msg, "load result: %s", mysql_error(d->my));
            rd_down(s, msg);
            return;
        }
        rd_next_step(s);
        return;
    }
}

static int rd_cont(dbc *d, int status)
{
    store_reader *rd = &((store *)d->owner)->rd;
    if (rd->phase == RD_QUERY)
        return mysql_real_query_cont(&d->qret, d->my, status);
    return mysql_store_result_cont(rd->step == RD_STEP_ORDERS ? &rd->res_orders : &rd->res,
                                   d->my, status);
}

static void rd_timeout(dbc *d)
{
    rd_down(d->owner, "load timeout");
}

static void rd_defer(dbc *d)
{
    store *s = d->owner;
    store_reader *rd = &s->rd;
    if (d->state == DBC_DOWN) {
        /* Nobody to ask: the waiting loads fail now, not after backoff. */
        size_t n = rd->q_len;
        for (size_t i = 0; i < n; i++) {
            load_req r;
            lq_pop(rd, &r);
            s->st.sku_loads_failed++;
            st_load_req_fail(&r);
        }
        return;
    }
    if (d->state == DBC_IDLE) {
        rd_start_query(s);
        return;
    }
    /* Busy: armed by a request queued while idle (from a callback of the
     * query that just ended), and a query started since. It is no result
     * to act on (that would read a query still on the wire: dbc steps only
     * a _start that finished at once); the running query starts the next
     * one when it ends. */
}

static const dbc_ops rd_ops = {
    .up = rd_on_up,
    .down = rd_on_down,
    .release = rd_release,
    .cont = rd_cont,
    .step = rd_step,
    .timeout = rd_timeout,
    .defer = rd_defer,
};

int st_rd_init(store *s, char *err, size_t err_len)
{
    store_reader *rd = &s->rd;
    rd->q_cap = 1024;
    rd->q = malloc(rd->q_cap * sizeof *rd->q);
    if (!rd->q) {
        st_set_err(err, err_len, "reader: out of memory");
        return -1;
    }
    return st_dbc_init(&rd->db, s, &rd_ops, s, err, err_len);
}

void st_rd_free(store *s)
{
    st_dbc_free(&s->rd.db);
    free(s->rd.q);
}

/* Queues r (its key and callback set). */
static int rd_enqueue(store *s, const load_req *req)
{
    store_reader *rd = &s->rd;
    size_t n = strnlen(req->sku, ENG_ID_MAX + 1);
    assert(n >= 1 && n <= ENG_ID_MAX);
    if (rd->q_len >= STORE_LOAD_QUEUE_MAX)
        return -1;
    if (rd->q_len == rd->q_cap) {
        size_t cap = rd->q_cap * 2;
        load_req *q = malloc(cap * sizeof *q);
        if (!q)
            return -1;
        for (size_t i = 0; i < rd->q_len; i++)
            q[i] = rd->q[(rd->q_head + i) % rd->q_cap];
        free(rd->q);
        rd->q = q;
        rd->q_cap = cap;
        rd->q_head = 0;
    }
    lq_push(rd, req);
    s->st.sku_loads++;
    /* Never inside this call: the defer starts the query (or fails the
     * request when the reader is down) after the current callback. */
    if (rd->db.state == DBC_IDLE || rd->db.state == DBC_DOWN)
        event_active(rd->db.defer, EV_TIMEOUT, 0);
    return 0;
}

void store_set_takeover(store *s, engine *e)
{
    s->eng = e;
    s->takeover = e;
}

/* A request for key (1..ENG_ID_MAX bytes, asserted by rd_enqueue). */
static load_req req_new(const char *key, load_kind kind, void *arg)
{
    load_req r;
    memset(&r, 0, sizeof r);
    snprintf(r.sku, sizeof r.sku, "%s", key);
    assert(strlen(key) == strlen(r.sku));
    r.kind = kind;
    r.arg = arg;
    return r;
}

int store_load_sku(store *s, const char *sku, store_load_fn fn, void *arg)
{
    assert(fn);
    load_req r = req_new(sku, LK_SKU, arg);
    r.fn.load = fn;
    return rd_enqueue(s, &r);
}

int store_find_order_sku(store *s, const char *order_id, store_find_fn fn, void *arg)
{
    assert(fn);
    load_req r = req_new(order_id, LK_FIND, arg);
    r.fn.find = fn;
    return rd_enqueue(s, &r);
}

int store_find_order_lines(store *s, const char *order_id, store_lines_fn fn, void *arg)
{
    assert(fn);
    load_req r = req_new(order_id, LK_LINES, arg);
    r.fn.lines = fn;
    return rd_enqueue(s, &r);
}

int store_load_order(store *s, const char *order_id, store_order_fn fn, void *arg)
{
    assert(fn);
    load_req r = req_new(order_id, LK_ORDER, arg);
    r.fn.order = fn;
    return rd_enqueue(s, &r);
}

int store_cart_decide(store *s, const char *order_id, store_decision want,
                      const store_abort_why *why, store_decide_fn fn, void *arg)
{
    assert(fn && (want == STORE_DECIDE_CONFIRM || want == STORE_DECIDE_ABORT));
    load_req r = req_new(order_id, LK_DECIDE, arg);
    r.fn.decide = fn;
    r.want = want;
    if (why != NULL && want == STORE_DECIDE_ABORT) {
        r.why = *why;
        assert(strlen(r.why.code) <= STORE_ABORT_CODE_MAX);
    } else {
        r.why.line = -1;
        r.why.available = -1;
    }
    return rd_enqueue(s, &r);
}
