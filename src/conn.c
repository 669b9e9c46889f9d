/* conn.c — listener, connections, framing, backpressure, deferred close;
 * see conn.h for the states and limits. */
#include "stockd/conn.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/net.h"

struct conn {
    conn_mgr *mgr;
    struct bufferevent *bev;
    struct evbuffer_cb_entry *out_cb;
    enum conn_state state;
    bool read_paused;
    bool listener;
    bool queued;                  /* in mgr's close queue */
    uint32_t inflight;
    uint64_t id;
    codec_scan scan;              /* the partial frame at the head of the input */
    struct conn *prev, *next;     /* mgr->conns: every conn not yet freed */
    struct conn *close_next;
    max_align_t data[];           /* the owner's (conn_data) */
};

struct conn_mgr {
    struct event_base *base;
    const stockd_config *cfg;
    conn_callbacks cb;
    size_t data_bytes;
    net_listener *listener;
    bool accepting;
    conn *conns;
    conn *close_head;
    struct event *close_ev;
    struct event *resume_ev;      /* the total output went back under its cap */
    uint64_t next_id;
    uint64_t out_total;
    bool out_over;                /* over max_output_total_bytes, not yet back under 3/4 */
    conn_stats st;
};

static void update_read(conn *c);

/* ------------------------------------------------------------ close */

static void conn_free(conn *c)
{
    conn_mgr *m = c->mgr;
    assert(c->inflight == 0 && c->bev == NULL && !c->queued);
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

/* Frees the socket of a conn (its unsent output is dropped). */
static void socket_free(conn *c)
{
    conn_mgr *m = c->mgr;
    if (c->bev == NULL)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_remove_cb_entry(out, c->out_cb);
    size_t left = evbuffer_get_length(out);
    assert(m->out_total >= left);
    m->out_total -= left;
    bufferevent_free(c->bev);
    c->bev = NULL;
}

/* The close queue, run from the loop after the callbacks that asked. */
static void close_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_mgr *m = arg;
    while (m->close_head != NULL) {
        conn *c = m->close_head;
        m->close_head = c->close_next;
        c->queued = false;
        socket_free(c);
        c->state = CONN_CLOSED;
        if (c->inflight == 0)
            conn_free(c);
    }
}

void conn_close(conn *c)
{
    if (c->state == CONN_CLOSING || c->state == CONN_CLOSED)
        return;
    conn_mgr *m = c->mgr;
    c->state = CONN_CLOSING;
    /* Counted out now, not when the queue runs: a client that closed and
     * reconnected at once must find its slot free. */
    assert(m->st.current > 0);
    m->st.current--;
    if (c->bev != NULL)
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    c->queued = true;
    c->close_next = m->close_head;
    m->close_head = c;
    event_active(m->close_ev, EV_TIMEOUT, 0);
    if (m->cb.on_close)
        m->cb.on_close(m->cb.arg, c);
}

void conn_drain(conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_DRAINING;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_close(c);
}

/* ------------------------------------------------------------ output */

/* Every change of a connection's unsent output, so the total is exact. */
static void out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    conn *c = arg;
    conn_mgr *m = c->mgr;
    m->out_total += info->n_added;
    assert(m->out_total >= info->n_deleted);
    m->out_total -= info->n_deleted;
    uint64_t cap = m->cfg->max_output_total_bytes;
    if (!m->out_over && m->out_total > cap) {
        m->out_over = true;
        m->st.output_paused++;
        char b[24];
        snprintf(b, sizeof b, "%llu", (unsigned long long)cap);
        LOG_W("unsent output over max-output-total-bytes: readers with output paused", "cap_bytes", b);
    } else if (m->out_over && m->out_total < cap / 4 * 3) {
        /* Resumed from the loop, not from inside an evbuffer change. */
        m->out_over = false;
        event_active(m->resume_ev, EV_TIMEOUT, 0);
    }
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_mgr *m = arg;
    for (conn *c = m->conns; c != NULL; c = c->next)
        if (c->read_paused)
            update_read(c);
}

void conn_send(conn *c, const void *data, size_t len)
{
    if ((c->state != CONN_OPEN && c->state != CONN_DRAINING) || c->bev == NULL || len == 0)
        return;
    evbuffer_add(bufferevent_get_output(c->bev), data, len);
}

size_t conn_output_len(const conn *c)
{
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

/* ------------------------------------------------------------ reading */

/* Reading pauses while the client has too much in flight, is not reading
 * its replies, or holds unsent output while all connections together are
 * over the total cap; it resumes when all three are clear. */
static void update_read(conn *c)
{
    if (c->state != CONN_OPEN || c->bev == NULL)
        return;
    const stockd_config *cfg = c->mgr->cfg;
    size_t out_len = evbuffer_get_length(bufferevent_get_output(c->bev));
    bool pause = c->inflight >= cfg->max_inflight_per_conn || out_len > cfg->max_output_bytes ||
                 (c->mgr->out_over && out_len > 0);
    if (pause && !c->read_paused) {
        bufferevent_disable(c->bev, EV_READ);
        c->read_paused = true;
    } else if (!pause && c->read_paused) {
        c->read_paused = false;
        bufferevent_enable(c->bev, EV_READ);
        /* Frames may already sit in the input buffer. */
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    }
}

/* The msgid of a request from its first bytes ([0, msgid, ...]), or -1. */
static int64_t head_msgid(const uint8_t *p, size_t n)
{
    if (n < 3 || p[0] != 0x94 || p[1] != 0x00)
        return -1;
    if (p[2] <= 0x7f)
        return p[2];
    if (p[2] == 0xcc && n >= 4)
        return p[3];
    if (p[2] == 0xcd && n >= 5)
        return (int64_t)p[3] << 8 | p[4];
    if (p[2] == 0xce && n >= 7)
        return (int64_t)p[3] << 24 | (int64_t)p[4] << 16 | (int64_t)p[5] << 8 | p[6];
    return -1;
}

/* A frame the stream cannot survive: the owner may answer, then drain. */
static void frame_fail(conn *c, const uint8_t *p, size_t n, bool too_large)
{
    conn_mgr *m = c->mgr;
    m->st.closed_bad++;
    if (m->cb.on_bad_frame)
        m->cb.on_bad_frame(m->cb.arg, c, too_large, too_large ? head_msgid(p, n) : -1);
    conn_drain(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    conn_mgr *m = c->mgr;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t max = m->cfg->max_message_bytes;
    for (int frames = 0; frames < CONN_FRAMES_PER_READ_MAX; frames++) {
        update_read(c);
        if (c->state != CONN_OPEN || c->read_paused)
            return;
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return;
        size_t n = avail < max ? avail : max;
        /* Contiguous: libevent grows its first chain by doubling, so pulling
         * up a frame that arrives in pieces copies each byte O(1) times. */
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        if (p == NULL) {
            LOG_W("out of memory reading a frame: connection closed");
            conn_close(c);
            return;
        }
        size_t flen = 0;
        codec_frame r = codec_scan_feed(&c->scan, p, n, &flen);
        if (r == CODEC_FRAME_NEED_MORE) {
            if (n >= max)  /* cannot complete within the limit */
                frame_fail(c, p, n, true);
            return;
        }
        if (r != CODEC_FRAME_OK) {
            frame_fail(c, p, n, r == CODEC_FRAME_TOO_LARGE);
            return;
        }
        codec_scan_init(&c->scan, max, m->cfg->max_depth);
        bool keep = m->cb.on_frame(m->cb.arg, c, p, flen);
        if (c->state == CONN_CLOSING || c->state == CONN_CLOSED)
            return;
        evbuffer_drain(in, flen);
        if (!keep) {
            m->st.closed_bad++;
            conn_close(c);
            return;
        }
    }
    /* More frames may be waiting: come back after others had their turn. */
    if (c->state == CONN_OPEN && evbuffer_get_length(in) > 0)
        bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    if (c->state == CONN_DRAINING && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        conn_close(c);
        return;
    }
    update_read(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    conn *c = arg;
    conn_mgr *m = c->mgr;
    if (what & BEV_EVENT_TIMEOUT) {
        if (what & BEV_EVENT_WRITING) {
            /* Unsent output that has not moved for the idle timeout: a
             * client that stopped reading, paused or not. */
            m->st.closed_stalled++;
            conn_close(c);
            return;
        }
        if ((c->inflight > 0 || c->listener) && c->state == CONN_OPEN) {
            /* Busy, not idle; a listener waits for notifications by design. */
            if (!c->read_paused)
                bufferevent_enable(c->bev, EV_READ);
            return;
        }
        m->st.closed_idle++;
    }
    conn_close(c);
}

/* ------------------------------------------------------------ accepting */

static void accept_fd(void *arg, evutil_socket_t fd)
{
    conn_mgr *m = arg;
    /* Beyond the limit: accept and close at once, so the client sees EOF
     * instead of hanging in the kernel's backlog. */
    if (m->st.current >= m->cfg->max_connections || !m->accepting) {
        m->st.refused++;
        evutil_closesocket(fd);
        return;
    }
    conn *c = calloc(1, sizeof(*c) + m->data_bytes);
    struct bufferevent *bev = c ? bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (bev == NULL) {
        free(c);
        evutil_closesocket(fd);
        m->st.refused++;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->mgr = m;
    c->bev = bev;
    c->id = ++m->next_id;
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), out_cb, c);
    codec_scan_init(&c->scan, m->cfg->max_message_bytes, m->cfg->max_depth);
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    m->st.current++;
    m->st.total++;
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
    /* Low watermark 0 on output: write_cb runs once the buffer drains. The
     * write timeout runs only while output is pending and not moving. */
    if (m->cfg->idle_timeout_ms > 0) {
        struct timeval tv = {m->cfg->idle_timeout_ms / 1000, (m->cfg->idle_timeout_ms % 1000) * 1000};
        bufferevent_set_timeouts(bev, &tv, &tv);
    }
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ------------------------------------------------------------ lifecycle */

conn_mgr *conn_mgr_new(struct event_base *base, const stockd_config *cfg,
                       const conn_callbacks *cb, size_t data_bytes)
{
    assert(cb != NULL && cb->on_frame != NULL);
    conn_mgr *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->base = base;
    m->cfg = cfg;
    m->cb = *cb;
    m->data_bytes = data_bytes;
    m->accepting = true;
    m->close_ev = event_new(base, -1, 0, close_cb, m);
    m->resume_ev = event_new(base, -1, 0, resume_cb, m);
    if (m->close_ev == NULL || m->resume_ev == NULL) {
        conn_mgr_free(m);
        return NULL;
    }
    return m;
}

void conn_mgr_free(conn_mgr *m)
{
    if (m == NULL)
        return;
    net_listener_free(m->listener);
    while (m->conns) {
        conn *c = m->conns;
        m->conns = c->next;
        if (c->bev) {
            evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
            bufferevent_free(c->bev);
        }
        free(c);
    }
    if (m->close_ev)
        event_free(m->close_ev);
    if (m->resume_ev)
        event_free(m->resume_ev);
    free(m);
}

int conn_mgr_listen(conn_mgr *m, char *err, size_t err_len)
{
    m->listener = net_listen(m->base, "rpc", m->cfg->listen_host, m->cfg->listen_port, accept_fd, m,
                             err, err_len);
    return m->listener ? 0 : -1;
}

void conn_mgr_stop_accepting(conn_mgr *m)
{
    m->accepting = false;
    if (m->listener)
        net_listener_enable(m->listener, false);
}

uint32_t conn_mgr_drain_idle(conn_mgr *m)
{
    for (conn *c = m->conns; c != NULL; c = c->next)
        if (c->inflight == 0)
            conn_drain(c);
    return m->st.current;
}

void conn_mgr_reload(conn_mgr *m)
{
    for (conn *c = m->conns; c != NULL; c = c->next)
        update_read(c);
}

void conn_mgr_stats_get(const conn_mgr *m, conn_stats *out)
{
    *out = m->st;
    out->output_bytes = m->out_total;
    if (m->listener) {
        net_listener_stats ls;
        net_listener_stats_get(m->listener, &ls);
        out->accept_errors = ls.accept_errors;
        out->accept_pauses = ls.accept_pauses;
    }
}

/* ------------------------------------------------------------ per conn */

void *conn_data(conn *c)
{
    return c->data;
}

uint64_t conn_id(const conn *c)
{
    return c->id;
}

enum conn_state conn_get_state(const conn *c)
{
    return c->state;
}

void conn_hold(conn *c)
{
    c->inflight++;
}

uint32_t conn_inflight(const conn *c)
{
    return c->inflight;
}

void conn_release(conn *c)
{
    assert(c->inflight > 0);
    c->inflight--;
    if (c->state == CONN_CLOSED && c->inflight == 0)
        conn_free(c);
    else
        update_read(c);
}

void conn_set_listener(conn *c, bool on)
{
    c->listener = on;
}
