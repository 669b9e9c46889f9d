/* store.c — MariaDB as the truth (store.h): opening, the writer connections
 * that commit batches and resolve unknown ones, completion, probes of idle
 * connections, and the public API; the SQL is built in store_sql.c, the
 * connection machine is dbconn.c. */
#include "store_internal.h"
#include "stockd/clock.h"

static void conn_start_resolve(store_conn *c);
static void conn_finish_probe(store_conn *c, const char *err);

/* Fails one request, whatever its kind. */
void st_load_req_fail(const load_req *r)
{
    switch (r->kind) {
    case LK_SKU:
        r->fn.load(r->sku, -1, NULL, r->arg);
        return;
    case LK_FIND:
        r->fn.find(r->sku, -1, NULL, r->arg);
        return;
    case LK_LINES:
        r->fn.lines(r->sku, -1, NULL, r->arg);
        return;
    case LK_DECIDE:
        r->fn.decide(r->sku, -1, NULL, r->arg);
        return;
    case LK_ORDER:
        r->fn.order(r->sku, -1, NULL, r->arg);
        return;
    }
    assert(!"bad load kind");
}

/* Steps that are a whole request in one statement with one result set. */
bool st_rd_step_single(int step)
{
    return step == RD_STEP_FIND || step == RD_STEP_LINES || step == RD_STEP_DECIDE ||
           step == RD_STEP_ORDER;
}

/* ---- small helpers ------------------------------------------------------- */


void st_set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

uint64_t st_store_rand(store *s)
{
    /* xorshift64*: jitter only, not security. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * UINT64_C(2685821657736338717);
}

struct timeval st_tv_ms(uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

static uint64_t store_batch_id(const store *s, const eng_batch *b)
{
    uint64_t n = eng_batch_id(b);
    /* Always-on: a wrapped counter would reuse tombstone keys. */
    assert(n < (UINT64_C(1) << STORE_BATCH_COUNTER_BITS));
    return s->boot_id << STORE_BATCH_COUNTER_BITS | n;
}

/* Errors after which the connection cannot be trusted and the statement
 * may or may not have committed: the client lost the server, or the server
 * killed the statement / is shutting down while it ran. */
static bool errno_is_unknown(unsigned e)
{
    if (e >= CR_MIN_ERROR && e <= CR_MAX_ERROR)
        return true;
    return e == ER_SERVER_SHUTDOWN || e == ER_QUERY_INTERRUPTED ||
           e == ER_CONNECTION_KILLED || e == ER_NET_READ_ERROR ||
           e == ER_NET_ERROR_ON_WRITE || e == ER_NET_READ_INTERRUPTED ||
           e == ER_NET_WRITE_INTERRUPTED;
}

MYSQL *st_db_handle_new(const store *s, bool nonblock, unsigned io_timeout_s)
{
    MYSQL *my = mysql_init(NULL);
    if (!my)
        return NULL;
    unsigned ct = (s->connect_timeout_ms + 999) / 1000;
    unsigned proto = s->db.socket[0] ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
    mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
    mysql_options(my, MYSQL_OPT_PROTOCOL, &proto);
    mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (io_timeout_s) {
        mysql_options(my, MYSQL_OPT_READ_TIMEOUT, &io_timeout_s);
        mysql_options(my, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout_s);
    }
    if (nonblock && mysql_options(my, MYSQL_OPT_NONBLOCK, 0) != 0) {
        mysql_close(my);
        return NULL;
    }
    return my;
}

/* Blocking connect for startup work. db: the database to select, or NULL. */
MYSQL *st_db_connect_blocking(const store *s, bool nonblock, const char *db,
                                  char *err, size_t err_len)
{
    MYSQL *my = st_db_handle_new(s, nonblock, nonblock ? 0 : STORE_BLOCKING_IO_TIMEOUT_S);
    if (!my) {
        st_set_err(err, err_len, "mysql_init: out of memory");
        return NULL;
    }
    if (!mysql_real_connect(my, st_db_host(&s->db), s->db.user, s->db.password, db,
                            (unsigned)s->db.port, s->db.socket[0] ? s->db.socket : NULL,
                            0)) {
        st_set_err(err, err_len, "connect to MariaDB at %s:%d%s%s: %s",
                s->db.socket[0] ? "socket" : st_db_host(&s->db), s->db.port,
                s->db.socket[0] ? " " : "", s->db.socket, mysql_error(my));
        mysql_close(my);
        return NULL;
    }
    return my;
}

static bool conn_is_up(const store_conn *c)
{
    return st_dbc_is_up(&c->db);
}

static bool conn_is_idle(const store_conn *c)
{
    return c->db.state == DBC_IDLE;
}

/* Fires on_idle when asked to (a connection became idle) or when store_up()
 * changed since the last call. */
static void store_notify(store *s, bool became_idle)
{
    bool up = store_up(s);
    bool changed = up != s->was_up;
    s->was_up = up;
    if ((became_idle || changed) && s->cb.on_idle)
        s->cb.on_idle(s->cb.arg);
}

static void conn_down(store_conn *c, const char *why)
{
    st_dbc_down(&c->db, why);
}

static void conn_on_down(dbc *d, const char *why, dbc_state was)
{
    store_conn *c = d->owner;
    if (was == DBC_IDLE || was == DBC_BUSY) {
        char idx[12];
        snprintf(idx, sizeof idx, "%u", c->idx);
        LOG_W("store: connection down", "conn", idx, "why", why);
    }
    /* Only the server's close of an idle connection goes down outside a
     * finish (which notifies after its callback). */
    if (was == DBC_IDLE)
        store_notify(c->s, false);
}

static void conn_on_up(dbc *d)
{
    store_conn *c = d->owner;
    store *s = c->s;
    if (c->ever_up) {
        s->st.reconnects++;
        LOG_I("store: reconnected");
    }
    c->ever_up = true;
    if (s->rq_len) {
        conn_start_resolve(c);
        store_notify(s, false);
        return;
    }
    store_notify(s, true);
}

/* Starts the statement in c->db.sql; completion arrives through io or defer. */
static void conn_start_query(store_conn *c)
{
    c->phase = PHASE_QUERY;
    c->started_us = clock_mono_us();
    st_dbc_begin(&c->db, c->s->commit_timeout_ms);
    if (c->build_err)
        st_dbc_step_later(&c->db);
    else
        st_dbc_send(&c->db);
}

/* ---- resolve queue --------------------------------------------------------- */

static bool rq_grow(store *s)
{
    size_t cap = s->rq_cap ? s->rq_cap * 2 : 16;
    eng_batch **q = malloc(cap * sizeof *q);
    if (!q)
        return false;
    for (size_t i = 0; i < s->rq_len; i++)
        q[i] = s->rq[(s->rq_head + i) % s->rq_cap];
    free(s->rq);
    s->rq = q;
    s->rq_cap = cap;
    s->rq_head = 0;
    return true;
}

static void rq_push(store *s, eng_batch *b, bool front)
{
    if (s->rq_len == s->rq_cap && !rq_grow(s)) {
        /* Losing a resolve would block its SKUs forever. */
        LOG_E("store: out of memory queueing a resolve");
        abort();
    }
    if (front) {
        s->rq_head = (s->rq_head + s->rq_cap - 1) % s->rq_cap;
        s->rq[s->rq_head] = b;
    } else {
        s->rq[(s->rq_head + s->rq_len) % s->rq_cap] = b;
    }
    s->rq_len++;
}

static eng_batch *rq_pop(store *s)
{
    assert(s->rq_len > 0);
    eng_batch *b = s->rq[s->rq_head];
    s->rq_head = (s->rq_head + 1) % s->rq_cap;
    s->rq_len--;
    return b;
}

static void conn_start_resolve(store_conn *c)
{
    store *s = c->s;
    assert(conn_is_idle(c) && s->rq_len > 0);
    c->batch = rq_pop(s);
    c->batch_id = store_batch_id(s, c->batch);
    c->kind = CONN_RESOLVE;
    c->build_err = NULL;
    st_sb_reset(&c->db.sql);
    st_sql_batch_log(&c->db.sql, s->node, c->batch_id, "aborted", clock_wall_ms());
    /* An earlier attempt of this resolve may have written the tombstone
     * and lost its reply: a duplicate alone does not mean "committed".
     * The update changes an 'aborted' row and leaves a 'committed' one as
     * it is, so affected rows say which: 1 inserted now, 2 an earlier
     * tombstone (both aborted), 0 the batch's own row (committed). */
    st_sb_str(&c->db.sql, " ON DUPLICATE KEY UPDATE at=IF(state='committed',at,at+1)");
    c->build_err = c->db.sql.err;
    conn_start_query(c);
}

/* Starts queued resolves on idle connections. */
static void store_kick(store *s)
{
    for (uint32_t i = 0; i < s->n_conns && s->rq_len; i++)
        if (conn_is_idle(&s->conns[i]))
            conn_start_resolve(&s->conns[i]);
}

/* ---- completion ------------------------------------------------------------ */

static void conn_note_latency(store_conn *c)
{
    int64_t us = clock_mono_us() - c->started_us;
    if (us < 0)
        us = 0;
    c->s->st.commit_us_total += (uint64_t)us;
    if ((uint64_t)us > c->s->st.commit_us_max)
        c->s->st.commit_us_max = (uint64_t)us;
}

/* The connection is done with its statement: either back to idle (next:
 * a queued resolve first), or down. Then the callback, then on_idle. */
static void conn_finish_commit(store_conn *c, eng_outcome outcome, const char *err,
                               bool keep)
{
    store *s = c->s;
    eng_batch *b = c->batch;
    assert(c->db.state == DBC_BUSY && c->kind == CONN_COMMIT && b);
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, c->batch_id);
    c->batch = NULL;
    event_del(c->db.timer);
    conn_note_latency(c);
    if (outcome == ENG_COMMITTED)
        s->st.commits_ok++;
    else if (outcome == ENG_ABORTED)
        s->st.commits_aborted++;
    else
        s->st.commits_unknown++;
    if (keep) {
        st_dbc_idle(&c->db);
        if (c->db.sql.cap > STORE_SQL_KEEP_BYTES)
            st_sb_free(&c->db.sql);
        if (s->rq_len)
            conn_start_resolve(c);
    } else {
        conn_down(c, err ? err : "commit failed");
    }
    bool idle = conn_is_idle(c);
    if (outcome != ENG_COMMITTED) {
        LOG_W("store: commit not done", "batch", id,
              "outcome", outcome == ENG_ABORTED ? "aborted" : "unknown",
              "err", err ? err : "");
    }
    s->cb.on_commit(b, outcome, err, s->cb.arg);
    store_notify(s, idle);
}

static void conn_finish_resolve(store_conn *c, int result, const char *err)
{
    store *s = c->s;
    eng_batch *b = c->batch;
    assert(c->db.state == DBC_BUSY && c->kind == CONN_RESOLVE && b);
    c->batch = NULL;
    event_del(c->db.timer);
    if (result < 0) {
        /* Unsettled: try again on a fresh connection after backoff. */
        rq_push(s, b, true);
        conn_down(c, err ? err : "resolve failed");
        store_kick(s);
        store_notify(s, false);
        return;
    }
    s->st.resolves++;
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, c->batch_id);
    st_dbc_idle(&c->db);
    if (s->rq_len)
        conn_start_resolve(c);
    bool idle = conn_is_idle(c);
    LOG_I("store: batch resolved", "batch", id, "committed", result ? "true" : "false");
    s->cb.on_resolve(b, result == 1, s->cb.arg);
    store_notify(s, idle);
}

/* The statement ended with an error. */
static void conn_query_failed(store_conn *c)
{
    unsigned e = mysql_errno(c->db.my);
    char msg[300];
    snprintf(msg, sizeof msg, "MariaDB %u: %s", e, mysql_error(c->db.my));
    if (c->kind == CONN_RESOLVE) {
        conn_finish_resolve(c, -1, msg);
        return;
    }
    if (errno_is_unknown(e))
        conn_finish_commit(c, ENG_UNKNOWN, msg, false);
    else
        /* Too large: refused unread, but the server drops the connection. */
        conn_finish_commit(c, ENG_ABORTED, msg, e != ER_NET_PACKET_TOO_LARGE);
}

static void conn_query_ok(store_conn *c)
{
    if (c->kind == CONN_RESOLVE) {
        my_ulonglong n = mysql_affected_rows(c->db.my);
        if (n == 0)
            conn_finish_resolve(c, 1, NULL);
        else if (n == 1 || n == 2)
            conn_finish_resolve(c, 0, NULL);
        else
            conn_finish_resolve(c, -1, "resolve: unexpected affected rows");
    } else
        conn_finish_commit(c, ENG_COMMITTED, NULL, true);
}

/* The statement's _start/_cont returned 0: act on its result. */
static void conn_query_step(store_conn *c)
{
    dbc *d = &c->db;
    for (;;) {
        if (c->build_err) {
            if (c->kind == CONN_RESOLVE) {
                conn_finish_resolve(c, -1, c->build_err);
                return;
            }
            /* The connection never sent anything: keep it. */
            conn_finish_commit(c, ENG_ABORTED, c->build_err, true);
            return;
        }
        /* next_result: 0 = another result read, -1 = no more, >0 = error. */
        if (c->phase == PHASE_QUERY ? d->qret != 0 : d->qret > 0) {
            conn_query_failed(c);
            return;
        }
        if (c->phase == PHASE_NEXT_RESULT && d->qret == -1) {
            conn_query_ok(c);
            return;
        }
        if (mysql_field_count(d->my) > 0) {
            /* Our statements return no rows: the stream is not what we
             * think it is; do not trust this connection. */
            if (c->kind == CONN_RESOLVE)
                conn_finish_resolve(c, -1, "unexpected result set");
            else
                conn_finish_commit(c, ENG_UNKNOWN, "unexpected result set", false);
            return;
        }
        if (!mysql_more_results(d->my)) {
            conn_query_ok(c);
            return;
        }
        c->phase = PHASE_NEXT_RESULT;
        int st = mysql_next_result_start(&d->qret, d->my);
        if (st) {
            st_dbc_wait(d, st);
            return;
        }
    }
}

static void conn_on_step(dbc *d)
{
    store_conn *c = d->owner;
    if (c->kind == CONN_PROBE) {
        char msg[300];
        if (d->qret != 0)
            snprintf(msg, sizeof msg, "probe: MariaDB %u: %s", mysql_errno(d->my),
                     mysql_error(d->my));
        conn_finish_probe(c, d->qret != 0 ? msg : NULL);
        return;
    }
    conn_query_step(c);
}

static int conn_on_cont(dbc *d, int status)
{
    const store_conn *c = d->owner;
    if (c->kind == CONN_PROBE)
        return mysql_ping_cont(&d->qret, d->my, status);
    if (c->phase == PHASE_QUERY)
        return mysql_real_query_cont(&d->qret, d->my, status);
    return mysql_next_result_cont(&d->qret, d->my, status);
}

static void conn_on_timeout(dbc *d)
{
    store_conn *c = d->owner;
    assert(d->state == DBC_BUSY && "timer in a state without a timer");
    char msg[64];
    if (c->kind == CONN_PROBE) {
        snprintf(msg, sizeof msg, "probe: no answer within %" PRIu32 " ms",
                 c->s->connect_timeout_ms);
        conn_finish_probe(c, msg);
        return;
    }
    snprintf(msg, sizeof msg, "%s timeout after %" PRIu32 " ms",
             c->kind == CONN_COMMIT ? "commit" : "resolve", c->s->commit_timeout_ms);
    if (c->kind == CONN_COMMIT)
        conn_finish_commit(c, ENG_UNKNOWN, msg, false);
    else
        conn_finish_resolve(c, -1, msg);
}

static const dbc_ops conn_ops = {
    .up = conn_on_up,
    .down = conn_on_down,
    .cont = conn_on_cont,
    .step = conn_on_step,
    .timeout = conn_on_timeout,
};

/* ---- probes of idle connections ---------------------------------------------- */

/* A ping answered: the connection is idle again and commits may use it.
 * Unanswered or refused: the connection goes down like any broken one
 * (reconnect with backoff; store_up() false once none is left up). */
static void conn_finish_probe(store_conn *c, const char *err)
{
    store *s = c->s;
    assert(c->db.state == DBC_BUSY && c->kind == CONN_PROBE);
    c->kind = CONN_COMMIT;
    if (err != NULL) {
        conn_down(c, err);
        store_notify(s, false);
        return;
    }
    st_dbc_idle(&c->db);
    if (s->rq_len)
        conn_start_resolve(c);
    store_notify(s, conn_is_idle(c));
}

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    store *s = arg;
    int64_t now = clock_mono_us();
    for (uint32_t i = 0; i < s->n_conns; i++) {
        store_conn *c = &s->conns[i];
        if (!conn_is_idle(c) || now - c->db.idle_since_us < (int64_t)STORE_PROBE_IDLE_MS * 1000)
            continue;
        c->kind = CONN_PROBE;
        st_dbc_begin(&c->db, s->connect_timeout_ms);
        st_dbc_started(&c->db, mysql_ping_start(&c->db.qret, c->db.my));
    }
}

/* ---- public API -------------------------------------------------------------- */

static int store_conns_init(store *s, char *err, size_t err_len)
{
    for (uint32_t i = 0; i < s->n_conns; i++) {
        store_conn *c = &s->conns[i];
        c->s = s;
        c->idx = i;
        if (st_dbc_init(&c->db, s, &conn_ops, c, err, err_len) != 0)
            return -1;
        c->ever_up = true;
    }
    return 0;
}

store *store_open(struct event_base *base, const stockd_config *cfg,
                  const store_callbacks *cb, char *err, size_t err_len)
{
    assert(base && cfg && cb && cb->on_commit && cb->on_resolve);
    if (cfg->db_connections < 1 || cfg->db_connections > STORE_CONNS_MAX) {
        st_set_err(err, err_len, "db_connections must be 1..%d", STORE_CONNS_MAX);
        return NULL;
    }
    if (mysql_library_init(0, NULL, NULL) != 0) {
        st_set_err(err, err_len, "mysql_library_init failed");
        return NULL;
    }
    store *s = calloc(1, sizeof *s);
    if (!s) {
        st_set_err(err, err_len, "out of memory");
        return NULL;
    }
    s->base = base;
    s->cb = *cb;
    s->db = cfg->db;
    snprintf(s->node, sizeof s->node, "%s", cfg->node);
    if (strlen(s->node) > 64)
        s->node[64] = '\0';     /* batch_log.node is VARCHAR(64) */
    s->n_conns = cfg->db_connections;
    s->commit_timeout_ms = cfg->commit_timeout_ms ? cfg->commit_timeout_ms : 5000;
    s->connect_timeout_ms = cfg->db_connect_timeout_ms ? cfg->db_connect_timeout_ms : 2000;
    s->backoff_max_ms = cfg->db_backoff_max_ms >= STORE_BACKOFF_MIN_MS
                            ? cfg->db_backoff_max_ms : STORE_BACKOFF_MIN_MS;
    s->rng = (uint64_t)clock_mono_us() ^ ((uint64_t)getpid() << 32) ^ UINT64_C(0x9e3779b97f4a7c15);
    if (st_store_setup_schema(s, err, err_len) != 0 || store_conns_init(s, err, err_len) != 0 ||
        st_rd_init(s, err, err_len) != 0) {
        store_free(s);
        return NULL;
    }
    /* Half the idle time: a connection is pinged at most 1.5 x
     * STORE_PROBE_IDLE_MS after it last answered. */
    struct timeval every = st_tv_ms(STORE_PROBE_IDLE_MS / 2);
    s->probe = event_new(base, -1, EV_PERSIST, probe_cb, s);
    if (!s->probe || event_add(s->probe, &every) != 0) {
        st_set_err(err, err_len, "event_new: out of memory");
        store_free(s);
        return NULL;
    }
    s->was_up = true;
    char boot[24];
    snprintf(boot, sizeof boot, "%" PRIu64, s->boot_id);
    LOG_I("store: open", "boot_id", boot, "database", s->db.database);
    return s;
}

void store_free(store *s)
{
    if (!s)
        return;
    if (s->probe)
        event_free(s->probe);
    for (uint32_t i = 0; i < STORE_CONNS_MAX; i++)
        st_dbc_free(&s->conns[i].db);
    st_rd_free(s);
    st_sup_free(s);
    free(s->rq);
    free(s);
}

bool store_up(const store *s)
{
    for (uint32_t i = 0; i < s->n_conns; i++)
        if (conn_is_up(&s->conns[i]))
            return true;
    return false;
}

bool store_can_commit(const store *s)
{
    /* Queued resolves take idle connections first. */
    size_t idle = 0;
    for (uint32_t i = 0; i < s->n_conns; i++)
        idle += conn_is_idle(&s->conns[i]);
    return idle > s->rq_len;
}

int store_commit(store *s, eng_batch *b)
{
    assert(b && !eng_batch_is_empty(b));
    store_kick(s);
    store_conn *c = NULL;
    for (uint32_t i = 0; i < s->n_conns && !c; i++)
        if (conn_is_idle(&s->conns[i]))
            c = &s->conns[i];
    if (!c)
        return -1;
    c->batch = b;
    c->batch_id = store_batch_id(s, b);
    c->kind = CONN_COMMIT;
    st_sql_build_commit(&c->db.sql, s->node, b, c->batch_id, clock_wall_ms());
    c->build_err = c->db.sql.err;
    conn_start_query(c);
    return 0;
}

void store_resolve(store *s, eng_batch *b)
{
    assert(b);
    rq_push(s, b, false);
    store_kick(s);
}

void store_stats_get(const store *s, store_stats *out)
{
    *out = s->st;
    out->conns_up = 0;
    out->conns_busy = 0;
    for (uint32_t i = 0; i < s->n_conns; i++) {
        const store_conn *c = &s->conns[i];
        out->conns_up += conn_is_up(c);
        out->conns_busy += c->db.state == DBC_BUSY;
    }
}
