/* conn.c — listener, connections, framing, backpressure, deferred close;
 * see conn.h for the states and limits.
 *
 * Sockets are driven with plain events and evbuffers rather than
 * bufferevents: libevent 2.1 reads at most 4 KiB per read(2) (and asks
 * FIONREAD first), so a large or pipelined input cost three system calls
 * per 4 KiB. Here one readv takes up to CONN_READ_MAX, and replies queued
 * during a round of callbacks leave in one writev per connection, from a
 * flush that runs after the round (Redis's handleClientsWithPendingWrites).
 */
#include "stockd/conn.h"
#include "stockd/clock.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/net.h"

struct conn {
    conn_mgr *mgr;
    evutil_socket_t fd;           /* -1 once the socket is freed */
    struct event rev;             /* readable (persistent while reading) */
    struct event wev;             /* writable (added only while output is stuck) */
    struct event pev;             /* process input already read (fairness re-runs) */
    struct event tev;             /* idle / stalled-output check */
    struct evbuffer *in, *out;
    struct evbuffer_cb_entry *out_cb;
    enum conn_state state;
    bool reading;                 /* rev added */
    bool writing;                 /* wev added */
    bool read_paused;
    bool slow;                    /* at CONN_PRIO_SLOW: used its slice with more to read */
    bool listener;
    bool queued;                  /* in mgr's close queue */
    bool flush_queued;            /* in mgr's flush list */
    int lowat;                    /* SO_RCVLOWAT set (1: the kernel's default) */
    uint32_t inflight;
    uint64_t id;
    int64_t last_read_ms;         /* the loop's cached clock */
    int64_t last_write_ms;        /* last write progress, or when output became pending */
    codec_scan scan;              /* the partial frame at the head of the input */
    struct conn *prev, *next;     /* mgr->conns: every conn not yet freed */
    struct conn *close_next, *flush_next;
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
    conn *flush_head;
    struct event *close_ev;
    struct event *flush_ev;
    struct event *resume_ev;      /* the total output went back under its cap */
    uint64_t next_id;
    uint64_t out_total;
    bool out_over;                /* over max_output_total_bytes, not yet back under 3/4 */
    conn_stats st;
    uint8_t rbuf[CONN_READ_MAX];  /* every read lands here first */
};

static void update_read(conn *c);
static void process(conn *c);

/* EAGAIN and its kin: try again when the socket is ready. */
static bool retriable(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

static int64_t now_ms(conn_mgr *m)
{
    struct timeval tv;
    event_base_gettimeofday_cached(m->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


/* ------------------------------------------------------------ close */

static void conn_free(conn *c)
{
    conn_mgr *m = c->mgr;
    assert(c->inflight == 0 && c->fd < 0 && !c->queued && !c->flush_queued);
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    free(c);
}

/* Frees the socket of a conn (its unsent output is dropped). */
static void socket_free(conn *c)
{
    conn_mgr *m = c->mgr;
    if (c->fd < 0)
        return;
    event_del(&c->rev);
    event_del(&c->wev);
    event_del(&c->pev);
    event_del(&c->tev);
    evbuffer_remove_cb_entry(c->out, c->out_cb);
    size_t left = evbuffer_get_length(c->out);
    assert(m->out_total >= left);
    m->out_total -= left;
    evbuffer_drain(c->out, left);
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    evutil_closesocket(c->fd);
    c->fd = -1;
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
        if (c->inflight == 0 && !c->flush_queued)
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
    event_del(&c->rev);
    event_del(&c->wev);
    event_del(&c->pev);
    c->reading = c->writing = false;
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
    if (c->reading) {
        event_del(&c->rev);
        c->reading = false;
    }
    event_del(&c->pev);
    if (evbuffer_get_length(c->out) == 0)
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

/* Writes what c has queued, once; leaves the rest to the write event. */
static void write_out(conn *c)
{
    conn_mgr *m = c->mgr;
    size_t before = evbuffer_get_length(c->out);
    if (before > 0) {
        int n = evbuffer_write(c->out, c->fd);
        if (n < 0 && !retriable(errno)) {
            conn_close(c);  /* reset by the client */
            return;
        }
        if (n > 0)
            c->last_write_ms = now_ms(m);
    }
    size_t left = evbuffer_get_length(c->out);
    if (left > 0 && !c->writing) {
        if (before == left || before == 0)
            c->last_write_ms = now_ms(m);
        event_add(&c->wev, NULL);
        c->writing = true;
    } else if (left == 0 && c->writing) {
        event_del(&c->wev);
        c->writing = false;
    }
    if (left == 0 && c->state == CONN_DRAINING) {
        conn_close(c);
        return;
    }
    update_read(c);
}

/* After a round of callbacks: every connection that was sent something
 * writes once. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_mgr *m = arg;
    while (m->flush_head != NULL) {
        conn *c = m->flush_head;
        m->flush_head = c->flush_next;
        c->flush_queued = false;
        if (c->state == CONN_OPEN || c->state == CONN_DRAINING)
            write_out(c);
        else if (c->state == CONN_CLOSED && c->inflight == 0)
            conn_free(c);
    }
}

static void wev_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    write_out(arg);
}

void conn_send(conn *c, const void *data, size_t len)
{
    if ((c->state != CONN_OPEN && c->state != CONN_DRAINING) || len == 0)
        return;
    evbuffer_add(c->out, data, len);
    if (!c->flush_queued && !c->writing) {
        conn_mgr *m = c->mgr;
        c->flush_queued = true;
        c->flush_next = m->flush_head;
        m->flush_head = c;
        event_active(m->flush_ev, EV_TIMEOUT, 0);
    }
}

size_t conn_output_len(const conn *c)
{
    return c->fd >= 0 ? evbuffer_get_length(c->out) : 0;
}

/* ------------------------------------------------------------ reading */

/* A connection that used its whole slice with more to read runs at the
 * loop's lowest priority until it has caught up: the loop answers everyone
 * with a normal load first (main.c sets the priorities up). */
static void set_slow(conn *c, bool slow)
{
    if (c->slow == slow)
        return;
    c->slow = slow;
    int prio = slow ? CONN_PRIO_SLOW : CONN_PRIO_NORMAL;
    /* libevent refuses to change an active event's priority; it is then
     * changed at the next call. */
    if (event_priority_set(&c->rev, prio) != 0 || event_priority_set(&c->pev, prio) != 0 ||
        event_priority_set(&c->wev, prio) != 0)
        c->slow = !slow;
}

/* A large frame on its way: the kernel wakes us when a good part more of it
 * is in (SO_RCVLOWAT), not for every segment, so a frame dribbled in small
 * pieces costs a few reads, not a read and a callback per piece. */
static void set_lowat(conn *c, uint64_t need)
{
    int want = need < CONN_LOWAT_MIN ? 1 : need > CONN_LOWAT_MAX ? (int)CONN_LOWAT_MAX : (int)need;
    if (want == c->lowat)
        return;
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want) == 0)
        c->lowat = want;
}

/* Reading pauses while the client has too much in flight, is not reading
 * its replies, or holds unsent output while all connections together are
 * over the total cap; it resumes when all three are clear. */
static void update_read(conn *c)
{
    if (c->state != CONN_OPEN || c->fd < 0)
        return;
    const stockd_config *cfg = c->mgr->cfg;
    size_t out_len = evbuffer_get_length(c->out);
    bool pause = c->inflight >= cfg->max_inflight_per_conn || out_len > cfg->max_output_bytes ||
                 (c->mgr->out_over && out_len > 0);
    if (pause && !c->read_paused) {
        c->read_paused = true;
        if (c->reading) {
            event_del(&c->rev);
            c->reading = false;
        }
    } else if (!pause && c->read_paused) {
        c->read_paused = false;
        if (!c->reading) {
            event_add(&c->rev, NULL);
            c->reading = true;
        }
        /* Frames may already sit in the input buffer: behind the others. */
        if (evbuffer_get_length(c->in) > 0) {
            set_slow(c, true);
            event_active(&c->pev, EV_TIMEOUT, 0);
        }
    }
}

/* The segments of the input's first n bytes (at most CONN_SEGS_MAX:
 * more, smaller chains are glued first), or -1 out of memory. */
static int in_segments(conn *c, size_t n, codec_seg *seg)
{
    struct evbuffer_iovec v[CONN_SEGS_MAX];
    int nv = evbuffer_peek(c->in, (ev_ssize_t)n, NULL, v, CONN_SEGS_MAX);
    if (nv > CONN_SEGS_MAX) {
        if (evbuffer_pullup(c->in, (ev_ssize_t)n) == NULL)
            return -1;
        nv = evbuffer_peek(c->in, (ev_ssize_t)n, NULL, v, CONN_SEGS_MAX);
        assert(nv == 1);
    }
    size_t left = n;
    for (int i = 0; i < nv; i++) {
        seg[i].p = v[i].iov_base;
        seg[i].n = v[i].iov_len < left ? v[i].iov_len : left;
        left -= seg[i].n;
    }
    return nv;
}

/* The request's msgid from the frame's first bytes, or -1. */
static int64_t head_msgid(conn *c, size_t avail)
{
    uint8_t head[8];
    size_t n = avail < sizeof head ? avail : sizeof head;
    if (evbuffer_copyout(c->in, head, n) != (ev_ssize_t)n)
        return -1;
    return codec_request_msgid(head, n);
}

/* A frame the stream cannot survive: the owner may answer, then drain. */
static void frame_fail(conn *c, size_t avail, bool too_large)
{
    conn_mgr *m = c->mgr;
    m->st.closed_bad++;
    if (m->cb.on_bad_frame)
        m->cb.on_bad_frame(m->cb.arg, c, too_large ? CONN_BAD_TOO_LARGE : CONN_BAD_MALFORMED,
                           too_large ? head_msgid(c, avail) : -1);
    conn_drain(c);
}

/* Handles the complete frames in the input, within the slice. */
static void process(conn *c)
{
    conn_mgr *m = c->mgr;
    size_t max = m->cfg->max_message_bytes;
    int64_t start = clock_mono_ns();
    for (int frames = 0; frames < CONN_FRAMES_PER_READ_MAX; frames++) {
        /* Fairness in time, not only in frames: a client pipelining costly
         * requests yields after its slice so that everybody else's requests
         * of this round are answered within milliseconds. */
        if (frames > 0 && clock_mono_ns() - start > CONN_READ_SLICE_NS)
            break;
        update_read(c);
        if (c->state != CONN_OPEN || c->read_paused)
            return;
        size_t avail = evbuffer_get_length(c->in);
        if (avail == 0) {
            set_slow(c, false);
            return;
        }
        size_t n = avail < max ? avail : max;
        /* Walked in place, chain by chain: a frame is made contiguous only
         * once it is whole and wanted (an input read 256 KiB at a time is
         * a few chains; many small ones are glued first). */
        codec_seg seg[CONN_SEGS_MAX];
        int nseg = in_segments(c, n, seg);
        if (nseg < 0) {
            LOG_W("out of memory reading a frame: connection closed");
            conn_close(c);
            return;
        }
        size_t flen = 0;
        codec_frame r = codec_scan_feedv(&c->scan, seg, nseg, &flen);
        if (r == CODEC_FRAME_NEED_MORE) {
            if (n >= max) {  /* cannot complete within the limit */
                frame_fail(c, n, true);
                return;
            }
            set_slow(c, false);
            set_lowat(c, codec_scan_needv(&c->scan, seg, nseg));
            return;
        }
        if (r != CODEC_FRAME_OK) {
            frame_fail(c, n, r == CODEC_FRAME_TOO_LARGE);
            return;
        }
        uint64_t values = c->scan.objects;
        codec_scan_init(&c->scan, max, m->cfg->max_depth);
        set_lowat(c, 1);
        if (values > CONN_FRAME_VALUES_MAX) {
            /* No request needs so many values: answered from its first
             * bytes and skipped, never decoded (msgpack-c would spend time
             * and 24 bytes a value on it). */
            m->st.values_refused++;
            if (m->cb.on_bad_frame)
                m->cb.on_bad_frame(m->cb.arg, c, CONN_BAD_TOO_MANY_VALUES, head_msgid(c, flen));
            if (c->state == CONN_CLOSING || c->state == CONN_CLOSED)
                return;
            evbuffer_drain(c->in, flen);
            continue;
        }
        const uint8_t *p = evbuffer_pullup(c->in, (ev_ssize_t)flen);
        if (p == NULL) {
            LOG_W("out of memory reading a frame: connection closed");
            conn_close(c);
            return;
        }
        bool keep = m->cb.on_frame(m->cb.arg, c, p, flen);
        if (c->state == CONN_CLOSING || c->state == CONN_CLOSED)
            return;
        evbuffer_drain(c->in, flen);
        if (!keep) {
            m->st.closed_bad++;
            conn_close(c);
            return;
        }
    }
    /* More frames may be waiting: come back after others had their turn,
     * demoted until caught up (conn.h, fairness). */
    if (c->state == CONN_OPEN && !c->read_paused && evbuffer_get_length(c->in) > 0) {
        set_slow(c, true);
        event_active(&c->pev, EV_TIMEOUT, 0);
    }
}

static void pev_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    process(arg);
}

static void rev_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    conn *c = arg;
    conn_mgr *m = c->mgr;
    /* One read of up to CONN_READ_MAX, however the input arrived, into the
     * manager's buffer: reserving that much in every connection's input
     * for every wakeup (most read a few bytes, or none at EOF) would cost
     * an allocation of CONN_READ_MAX each time. */
    ssize_t n = read(fd, m->rbuf, CONN_READ_MAX);
    if (n <= 0) {
        if (n < 0 && retriable(errno))
            return;
        conn_close(c);  /* EOF or reset */
        return;
    }
    if (evbuffer_add(c->in, m->rbuf, (size_t)n) != 0) {
        LOG_W("out of memory reading: connection closed");
        conn_close(c);
        return;
    }
    c->last_read_ms = now_ms(m);
    process(c);
}

/* Idle and stalled-output limits, checked once per idle period. */
static void tev_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn *c = arg;
    conn_mgr *m = c->mgr;
    int64_t idle = m->cfg->idle_timeout_ms, now = now_ms(m);
    if (idle == 0 || (c->state != CONN_OPEN && c->state != CONN_DRAINING))
        return;
    if (evbuffer_get_length(c->out) > 0 && now - c->last_write_ms >= idle) {
        /* Unsent output that has not moved for the idle timeout: a client
         * that stopped reading, paused or not. */
        m->st.closed_stalled++;
        conn_close(c);
        return;
    }
    int64_t last = c->last_read_ms > c->last_write_ms ? c->last_read_ms : c->last_write_ms;
    if (now - last >= idle && c->inflight == 0 && !c->listener &&
        evbuffer_get_length(c->out) == 0) {
        m->st.closed_idle++;
        conn_close(c);
        return;
    }
    /* Busy, or a listener waiting for notifications by design: look again. */
    int64_t due = idle - (now - last);
    if (evbuffer_get_length(c->out) > 0 && idle - (now - c->last_write_ms) < due)
        due = idle - (now - c->last_write_ms);
    if (due < 10)
        due = 10;
    struct timeval tv = {due / 1000, (due % 1000) * 1000};
    event_add(&c->tev, &tv);
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
    if (c != NULL) {
        c->in = evbuffer_new();
        c->out = evbuffer_new();
    }
    if (c == NULL || c->in == NULL || c->out == NULL ||
        (c->out_cb = evbuffer_add_cb(c->out, out_cb, c)) == NULL) {
        if (c) {
            if (c->in)
                evbuffer_free(c->in);
            if (c->out)
                evbuffer_free(c->out);
        }
        free(c);
        evutil_closesocket(fd);
        m->st.refused++;
        return;
    }
    evutil_make_socket_nonblocking(fd);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->mgr = m;
    c->fd = fd;
    c->id = ++m->next_id;
    c->lowat = 1;
    c->last_read_ms = c->last_write_ms = now_ms(m);
    codec_scan_init(&c->scan, m->cfg->max_message_bytes, m->cfg->max_depth);
    event_assign(&c->rev, m->base, fd, EV_READ | EV_PERSIST, rev_cb, c);
    event_assign(&c->wev, m->base, fd, EV_WRITE | EV_PERSIST, wev_cb, c);
    event_assign(&c->pev, m->base, -1, 0, pev_cb, c);
    event_assign(&c->tev, m->base, -1, 0, tev_cb, c);
    event_priority_set(&c->rev, CONN_PRIO_NORMAL);
    event_priority_set(&c->wev, CONN_PRIO_NORMAL);
    event_priority_set(&c->pev, CONN_PRIO_NORMAL);
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    m->st.current++;
    m->st.total++;
    event_add(&c->rev, NULL);
    c->reading = true;
    if (m->cfg->idle_timeout_ms > 0) {
        struct timeval tv = {m->cfg->idle_timeout_ms / 1000, (m->cfg->idle_timeout_ms % 1000) * 1000};
        event_add(&c->tev, &tv);
    }
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
    m->flush_ev = event_new(base, -1, 0, flush_cb, m);
    m->resume_ev = event_new(base, -1, 0, resume_cb, m);
    if (m->close_ev == NULL || m->flush_ev == NULL || m->resume_ev == NULL) {
        conn_mgr_free(m);
        return NULL;
    }
    /* The flush runs after the round's other callbacks of its priority and
     * before the slow ones: replies leave before a demoted client goes on. */
    event_priority_set(m->flush_ev, CONN_PRIO_NORMAL);
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
        if (c->fd >= 0) {
            event_del(&c->rev);
            event_del(&c->wev);
            event_del(&c->pev);
            event_del(&c->tev);
            evbuffer_remove_cb_entry(c->out, c->out_cb);
            evutil_closesocket(c->fd);
        }
        evbuffer_free(c->in);
        evbuffer_free(c->out);
        free(c);
    }
    if (m->close_ev)
        event_free(m->close_ev);
    if (m->flush_ev)
        event_free(m->flush_ev);
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
    if (c->state == CONN_CLOSED && c->inflight == 0 && !c->flush_queued)
        conn_free(c);
    else
        update_read(c);
}

void conn_set_listener(conn *c, bool on)
{
    c->listener = on;
}
