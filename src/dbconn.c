/* dbconn.c — one nonblocking MariaDB connection on the loop: connect with
 * backoff, the socket/timeout wait, the idle watch, close, the deferred
 * step; the writers, the reader and the support connection each run their
 * statements on one (store_internal.h dbc_ops). */
#include "store_internal.h"
#include "stockd/clock.h"
#include "stockd/mysql_wait.h"

bool st_dbc_is_up(const dbc *d)
{
    return d->state == DBC_IDLE || d->state == DBC_BUSY;
}

/* Arms the io event for one Connector/C wait mask. */
void st_dbc_wait(dbc *d, int status)
{
    short what = mysql_wait_events(status);
    struct timeval tv, *tvp = NULL;
    if (status & MYSQL_WAIT_TIMEOUT) {
        tv = st_tv_ms(mysql_get_timeout_value_ms(d->my));
        tvp = &tv;
    }
    event_del(d->io);
    event_assign(d->io, d->s->base, mysql_get_socket(d->my), what, st_dbc_io_cb, d);
    event_add(d->io, tvp);
}

/* While idle, a readable socket means the server closed or will close it. */
static void dbc_watch_idle(dbc *d)
{
    event_del(d->io);
    event_assign(d->io, d->s->base, mysql_get_socket(d->my), EV_READ, st_dbc_io_cb, d);
    event_add(d->io, NULL);
}

/* A _start returned st: wait for it, or step its result from the defer
 * (never inside the caller, which may be a callback of the last result). */
void st_dbc_started(dbc *d, int st)
{
    if (st) {
        st_dbc_wait(d, st);
        return;
    }
    d->step_due = true;
    event_active(d->defer, EV_TIMEOUT, 0);
}

/* Steps the owner from the defer without a _start (e.g. nothing to send). */
void st_dbc_step_later(dbc *d)
{
    st_dbc_started(d, 0);
}

static void dbc_close(dbc *d)
{
    event_del(d->io);
    event_del(d->timer);
    event_del(d->defer);
    d->step_due = false;
    if (d->ops->release)
        d->ops->release(d);
    if (d->my) {
        /* Allowed in the middle of a nonblocking call: the only way to
         * abandon a query. */
        mysql_close(d->my);
        d->my = NULL;
    }
    d->state = DBC_DOWN;
    if (d->sql.cap > STORE_SQL_KEEP_BYTES)
        st_sb_free(&d->sql);
}

/* Closes and schedules a reconnect: at once after the first failure of a
 * healthy connection, then with exponential backoff and jitter. */
void st_dbc_down(dbc *d, const char *why)
{
    store *s = d->s;
    dbc_state was = d->state;
    dbc_close(d);
    uint32_t delay = 0;
    if (d->backoff_ms) {
        uint32_t half = d->backoff_ms / 2;
        delay = half + (uint32_t)(st_store_rand(s) % (half + 1));
    }
    d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : STORE_BACKOFF_MIN_MS;
    if (d->backoff_ms > s->backoff_max_ms)
        d->backoff_ms = s->backoff_max_ms;
    struct timeval tv = st_tv_ms(delay);
    evtimer_add(d->timer, &tv);
    d->ops->down(d, why, was);
}

static void dbc_connect_start(dbc *d)
{
    store *s = d->s;
    assert(d->state == DBC_DOWN && !d->my);
    d->my = st_db_handle_new(s, true, 0);
    if (!d->my) {
        st_dbc_down(d, "mysql_init failed");
        return;
    }
    d->state = DBC_CONNECTING;
    struct timeval tv = st_tv_ms(s->connect_timeout_ms);
    evtimer_add(d->timer, &tv);
    int st = mysql_real_connect_start(&d->connect_ret, d->my, st_db_host(&s->db), s->db.user,
                                      s->db.password, s->db.database, (unsigned)s->db.port,
                                      s->db.socket[0] ? s->db.socket : NULL, 0);
    st_dbc_started(d, st);
}

static void dbc_connected(dbc *d)
{
    if (!d->connect_ret) {
        char msg[256];
        snprintf(msg, sizeof msg, "connect: %s", mysql_error(d->my));
        LOG_D("store: connect failed", "err", msg);
        st_dbc_down(d, msg); /* was CONNECTING: owners log no "down" for every retry */
        return;
    }
    event_del(d->timer);
    d->state = DBC_IDLE;
    d->idle_since_us = clock_mono_us();
    d->backoff_ms = 0;
    dbc_watch_idle(d);
    d->ops->up(d);
}

/* The owner's statement is done and the connection is fine. */
void st_dbc_idle(dbc *d)
{
    event_del(d->timer);
    d->state = DBC_IDLE;
    d->idle_since_us = clock_mono_us();
    dbc_watch_idle(d);
}

/* The owner is about to send: io off, busy, its timeout armed. */
void st_dbc_begin(dbc *d, uint32_t timeout_ms)
{
    assert(d->state == DBC_IDLE || d->state == DBC_BUSY);
    event_del(d->io);
    d->state = DBC_BUSY;
    struct timeval tv = st_tv_ms(timeout_ms);
    evtimer_add(d->timer, &tv);
}

/* Sends d->sql; the owner hears cont()/step(). */
void st_dbc_send(dbc *d)
{
    assert(d->state == DBC_BUSY);
    int st = mysql_real_query_start(&d->qret, d->my, d->sql.p, d->sql.len);
    st_dbc_started(d, st);
}

void st_dbc_query_start(dbc *d, uint32_t timeout_ms)
{
    st_dbc_begin(d, timeout_ms);
    st_dbc_send(d);
}

/* A _start/_cont returned 0: act on its result. */
static void dbc_step(dbc *d)
{
    if (d->state == DBC_CONNECTING)
        dbc_connected(d);
    else if (d->state == DBC_BUSY)
        d->ops->step(d);
}

void st_dbc_io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    dbc *d = arg;
    int st = mysql_wait_status(what);
    switch (d->state) {
    case DBC_CONNECTING:
        st = mysql_real_connect_cont(&d->connect_ret, d->my, st);
        break;
    case DBC_BUSY:
        st = d->ops->cont(d, st);
        break;
    case DBC_IDLE:
        st_dbc_down(d, "server closed the connection");
        return;
    default:
        assert(!"io event in a state without io");
        return;
    }
    if (st) {
        st_dbc_wait(d, st);
        return;
    }
    dbc_step(d);
}

void st_dbc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dbc *d = arg;
    char msg[64];
    switch (d->state) {
    case DBC_DOWN:
        dbc_connect_start(d);
        return;
    case DBC_CONNECTING:
        snprintf(msg, sizeof msg, "connect timeout after %" PRIu32 " ms",
                 d->s->connect_timeout_ms);
        st_dbc_down(d, msg);
        return;
    default:
        d->ops->timeout(d);
        return;
    }
}

void st_dbc_defer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dbc *d = arg;
    if (d->step_due) {
        d->step_due = false;
        dbc_step(d);
        return;
    }
    if (d->ops->defer)
        d->ops->defer(d);
}

/* Events, then a blocking connect (the same handle then runs nonblocking).
 * On failure the caller still calls st_dbc_free. */
int st_dbc_init(dbc *d, store *s, const dbc_ops *ops, void *owner, char *err,
                    size_t err_len)
{
    assert(ops->up && ops->down && ops->cont && ops->step && ops->timeout);
    d->s = s;
    d->ops = ops;
    d->owner = owner;
    d->io = event_new(s->base, -1, 0, st_dbc_io_cb, d);
    d->timer = evtimer_new(s->base, st_dbc_timer_cb, d);
    d->defer = evtimer_new(s->base, st_dbc_defer_cb, d);
    if (!d->io || !d->timer || !d->defer) {
        st_set_err(err, err_len, "event_new: out of memory");
        return -1;
    }
    d->my = st_db_connect_blocking(s, true, s->db.database, err, err_len);
    if (!d->my)
        return -1;
    d->state = DBC_IDLE;
    d->idle_since_us = clock_mono_us();
    dbc_watch_idle(d);
    return 0;
}

/* Safe on a zeroed or partly initialised dbc. */
void st_dbc_free(dbc *d)
{
    if (d->io)
        dbc_close(d);
    if (d->io)
        event_free(d->io);
    if (d->timer)
        event_free(d->timer);
    if (d->defer)
        event_free(d->defer);
    st_sb_free(&d->sql);
}
