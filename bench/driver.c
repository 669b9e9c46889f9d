/* driver.c — runs one mode: slots, arrival schedule, clock, statistics.
 *
 * Closed loop (no --rate): every slot is refilled as soon as its reply
 * arrives; latency is measured from the send. Open loop (--rate R): orders
 * arrive on a fixed schedule (the k-th at t0 + k/R) whether or not earlier
 * ones were answered; an arrival that finds no free slot waits in a bounded
 * backlog, and its latency is still measured from its intended arrival
 * time. That is what keeps a slow server from hiding its stalls
 * (coordinated omission).
 */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

typedef enum run_phase {
    RUN_SETUP = 0,   /**< mode opening connections; no orders yet */
    RUN_ACTIVE,      /**< orders are being issued */
    RUN_DRAINING,    /**< no new orders; waiting for in-flight replies */
    RUN_DONE,        /**< over: late replies are ignored */
} run_phase;

typedef struct conn_rec {
    void *conn;
    uint32_t capacity;
    bool dead;
} conn_rec;

struct bench_run {
    const bench_opts *o;
    const bench_mode_ops *ops;
    void *mode_state;
    bench_result *res;
    struct event_base *base;
    const double *zipf_cdf;
    char nonce[16];
    uint64_t rng;
    conn_rec conns[BENCH_CONNS_MAX];
    uint32_t n_conns;
    bench_req *reqs;
    uint32_t n_reqs;
    bench_req *free_list;
    run_phase phase;
    uint64_t t0_ns, t_measure_ns, t_stop_ns, t_last_done_ns;
    uint64_t next_seq, issued_measured, in_flight;
    uint64_t picks;                  /* --dist seq */
    /* open loop */
    double interval_ns;
    uint64_t arrivals;
    uint64_t *backlog;               /* intended start times, a ring */
    uint32_t backlog_head, backlog_len;
    struct event *ev_arrival, *ev_tick, *ev_stop, *ev_drain, *ev_measure;
    uint32_t tick_req, tick_ok;
    bench_cpu_snap cpu_start;        /* taken when the measured window opens */
    bool cpu_started;
};

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
    assert(rc == 0);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: tiny, fast and good enough to pick SKUs. */
uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

const bench_opts *bench_opts_of(const bench_run *r) { return r->o; }
struct event_base *bench_base(bench_run *r) { return r->base; }
const char *bench_nonce(const bench_run *r) { return r->nonce; }

void bench_sku_name(const bench_run *r, uint32_t idx, char *buf, size_t len)
{
    int n = r->o->sku_prefix[0] ? snprintf(buf, len, "%s-%" PRIu32, r->o->sku_prefix, idx)
                                : snprintf(buf, len, "b%s-%" PRIu32, r->nonce, idx);
    assert(n > 0 && (size_t)n < len);
}

void bench_order_id(const bench_run *r, uint64_t seq, char *buf, size_t len)
{
    int n = snprintf(buf, len, "o%s-%" PRIu64, r->nonce, seq);
    assert(n > 0 && (size_t)n < len);
}

uint32_t bench_add_conn(bench_run *r, void *conn, uint32_t capacity)
{
    assert(r->phase == RUN_SETUP);
    assert(capacity >= 1 && capacity <= BENCH_PIPELINE_MAX);
    assert(r->n_conns < BENCH_CONNS_MAX);
    r->conns[r->n_conns] = (conn_rec){ .conn = conn, .capacity = capacity };
    return r->n_conns++;
}

void bench_conn_dead(bench_run *r, uint32_t conn_idx)
{
    assert(conn_idx < r->n_conns);
    r->conns[conn_idx].dead = true;
}

static void wait_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

int bench_wait(bench_run *r, const uint32_t *counter, uint32_t target, unsigned timeout_ms)
{
    bool expired = false;
    struct event *ev = evtimer_new(r->base, wait_timeout_cb, &expired);
    assert(ev != NULL);
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
    while (*counter < target && !expired)
        event_base_loop(r->base, EVLOOP_ONCE);
    event_free(ev);
    return *counter >= target ? 0 : -1;
}

/* Counts one outcome under its code; codes beyond the table are summed. */
static void count_code(bench_result *res, const char *code)
{
    for (unsigned i = 0; i < res->n_codes; i++) {
        if (strcmp(res->codes[i].name, code) == 0) {
            res->codes[i].count++;
            return;
        }
    }
    if (res->n_codes == BENCH_CODES_MAX) {
        res->codes_dropped++;
        return;
    }
    bench_code *c = &res->codes[res->n_codes++];
    snprintf(c->name, sizeof c->name, "%s", code);
    c->count = 1;
}

static uint32_t pick_sku(bench_run *r)
{
    uint64_t x = bench_rand(&r->rng);
    uint32_t n = r->o->skus;
    if (r->o->dist_seq)
        return (uint32_t)(r->picks++ % n);
    if (r->zipf_cdf == NULL)
        return (uint32_t)(((x >> 32) * (uint64_t)n) >> 32);
    double u = (double)(x >> 11) * 0x1.0p-53;
    uint32_t lo = 0, hi = n - 1;                 /* first rank with cdf >= u */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->zipf_cdf[mid] >= u)
            hi = mid;
        else
            lo = mid + 1;
    }
    assert(lo < n);
    return lo;
}

uint32_t bench_lines_per_order(const bench_opts *o)
{
    assert(o->lines <= BENCH_LINES_MAX);
    return o->lines ? o->lines : 1;
}

static bool line_taken(const bench_req *q, uint32_t n, uint32_t sku)
{
    for (uint32_t i = 0; i < n; i++)
        if (q->line_sku[i] == sku)
            return true;
    return false;
}

#define PICK_TRIES 64u

/* The order's SKUs: distinct draws from --dist, then sorted. A draw that
 * keeps hitting taken SKUs (a steep zipf over few SKUs) falls back to the
 * next free index after it, so a cart always gets its lines (--skus >=
 * --lines is checked at parse time). */
static void pick_lines(bench_run *r, bench_req *q)
{
    uint32_t n = bench_lines_per_order(r->o);
    assert(n <= r->o->skus);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t s = pick_sku(r);
        for (uint32_t t = 0; t < PICK_TRIES && line_taken(q, k, s); t++)
            s = pick_sku(r);
        while (line_taken(q, k, s))
            s = (s + 1) % r->o->skus;
        uint32_t i = k;                          /* insertion sort: n <= 50 */
        while (i > 0 && q->line_sku[i - 1] > s) {
            q->line_sku[i] = q->line_sku[i - 1];
            i--;
        }
        q->line_sku[i] = s;
    }
    q->n_lines = n;
    q->sku = q->line_sku[0];
}

static bool requests_exhausted(const bench_run *r)
{
    return r->o->requests > 0 && r->issued_measured >= r->o->requests;
}

static void enter_drain(bench_run *r);

static void issue(bench_run *r, bench_req *q, uint64_t t_start_ns)
{
    assert(!q->in_flight);
    assert(r->phase == RUN_ACTIVE);
    q->t_start_ns = t_start_ns;
    q->seq = r->next_seq++;
    pick_lines(r, q);
    q->qty = r->o->qty;
    q->measured = t_start_ns >= r->t_measure_ns;
    q->in_flight = true;
    q->stage = 0;
    q->tries = 0;
    q->outcome = NULL;
    q->not_reservation = false;
    if (q->measured)
        r->issued_measured++;
    r->in_flight++;
    r->ops->send(r, r->mode_state, q);
}

/* A slot came back: reuse it at once (closed loop), give it to a waiting
 * arrival (open loop), or park it. */
static void slot_release(bench_run *r, bench_req *q)
{
    if (r->conns[q->conn_idx].dead)
        return;
    if (r->phase == RUN_ACTIVE && requests_exhausted(r))
        enter_drain(r);
    if (r->phase == RUN_ACTIVE && r->o->rate <= 0) {
        issue(r, q, bench_now_ns());
        return;
    }
    if (r->phase == RUN_ACTIVE && r->backlog_len > 0) {
        uint64_t t = r->backlog[r->backlog_head];
        r->backlog_head = (r->backlog_head + 1) % BENCH_BACKLOG_MAX;
        r->backlog_len--;
        issue(r, q, t);
        return;
    }
    q->next_free = r->free_list;
    r->free_list = q;
}

void bench_done(bench_run *r, bench_req *q, const char *outcome)
{
    assert(q->in_flight);
    assert(r->in_flight > 0);
    q->in_flight = false;
    r->in_flight--;
    if (r->phase == RUN_DONE)
        return;                                  /* already counted as no_reply */
    uint64_t now = bench_now_ns();
    r->t_last_done_ns = now;
    bench_result *res = r->res;
    r->tick_req++;
    if (outcome == NULL) {
        res->ok_total++;
        r->tick_ok++;
    }
    if (q->measured) {
        res->requests++;
        if (outcome == NULL && r->ops->reserves && !q->not_reservation)
            res->successes++;
        if (outcome != NULL)
            count_code(res, outcome);
        hist_record(&res->hist, (now - q->t_start_ns) / 1000u);
    }
    slot_release(r, q);
    if (r->phase == RUN_DRAINING && r->in_flight == 0)
        event_base_loopbreak(r->base);
}

static void arrive(bench_run *r, uint64_t intended_ns)
{
    if (requests_exhausted(r)) {
        enter_drain(r);
        return;
    }
    bench_req *q = r->free_list;
    if (q != NULL) {
        r->free_list = q->next_free;
        issue(r, q, intended_ns);
        return;
    }
    if (r->backlog_len == BENCH_BACKLOG_MAX) {
        if (intended_ns >= r->t_measure_ns) {
            r->res->requests++;
            count_code(r->res, "client_backlog_full");
        }
        return;
    }
    r->backlog[(r->backlog_head + r->backlog_len) % BENCH_BACKLOG_MAX] = intended_ns;
    r->backlog_len++;
}

static void arrival_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bench_run *r = arg;
    if (r->phase != RUN_ACTIVE)
        return;
    uint64_t now = bench_now_ns();
    /* Bounded work per wakeup so replies keep flowing when far behind. */
    for (unsigned i = 0; i < 10000 && r->phase == RUN_ACTIVE; i++) {
        uint64_t t = r->t0_ns + (uint64_t)((double)r->arrivals * r->interval_ns);
        if (t > now)
            break;
        r->arrivals++;
        arrive(r, t);
    }
    if (r->phase != RUN_ACTIVE)
        return;
    uint64_t next = r->t0_ns + (uint64_t)((double)r->arrivals * r->interval_ns);
    uint64_t wait_ns = next > now ? next - now : 0;
    struct timeval tv = { .tv_sec = (time_t)(wait_ns / 1000000000u),
                          .tv_usec = (suseconds_t)(wait_ns % 1000000000u / 1000u) };
    evtimer_add(r->ev_arrival, &tv);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bench_run *r = arg;
    bench_result *res = r->res;
    if (res->series_n < BENCH_SECONDS_MAX) {
        res->series_req[res->series_n] = r->tick_req;
        res->series_ok[res->series_n] = r->tick_ok;
        res->series_n++;
    }
    if (r->o->progress) {
        fprintf(stdout, "\r%-12s %4" PRIu32 "s %10" PRIu32 " req/s %10" PRIu32
                " ok/s  in flight %-6" PRIu64 "%s\033[K",
                r->ops->name, res->series_n, r->tick_req, r->tick_ok, r->in_flight,
                r->phase == RUN_DRAINING ? " draining" : "");
        fflush(stdout);
    }
    r->tick_req = 0;
    r->tick_ok = 0;
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bench_run *r = arg;
    assert(r->phase == RUN_DRAINING);
    /* Whatever is still out has an unknown outcome: count it, and let the
     * audit allow for it. */
    for (uint32_t i = 0; i < r->n_reqs; i++) {
        bench_req *q = &r->reqs[i];
        if (!q->in_flight)
            continue;
        r->res->unknown_total++;
        if (q->measured) {
            r->res->requests++;
            count_code(r->res, "no_reply");
        }
    }
    r->phase = RUN_DONE;
    event_base_loopbreak(r->base);
}

static void enter_drain(bench_run *r)
{
    if (r->phase != RUN_ACTIVE)
        return;
    r->phase = RUN_DRAINING;
    r->t_stop_ns = bench_now_ns();
    if (r->cpu_started) {
        bench_cpu_snap end;
        bench_cpu_snap_take(r->o, &end);
        bench_cpu_finish(r->o, &r->cpu_start, &end, r->res);
    }
    evtimer_del(r->ev_arrival);
    if (r->in_flight == 0) {
        event_base_loopbreak(r->base);
        return;
    }
    double s = r->o->drain_s;
    struct timeval tv = { .tv_sec = (time_t)s, .tv_usec = (suseconds_t)((s - (double)(time_t)s) * 1e6) };
    evtimer_add(r->ev_drain, &tv);
}

static void measure_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bench_run *r = arg;
    if (r->phase != RUN_ACTIVE)
        return;
    bench_cpu_snap_take(r->o, &r->cpu_start);
    r->cpu_started = true;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    enter_drain(arg);
}

static int alloc_slots(bench_run *r)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < r->n_conns; i++)
        total += r->conns[i].capacity;
    if (total == 0 || total > BENCH_SLOTS_MAX)
        return -1;
    r->reqs = calloc(total, sizeof *r->reqs);
    assert(r->reqs != NULL);
    r->n_reqs = (uint32_t)total;
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->n_conns; i++) {
        for (uint32_t j = 0; j < r->conns[i].capacity; j++) {
            bench_req *q = &r->reqs[k++];
            q->conn_idx = i;
            q->conn = r->conns[i].conn;
        }
    }
    /* Free list in interleaved order (slot 0 of every connection first) so
     * open-loop arrivals spread over connections instead of filling the
     * first one's pipeline. Built backwards because it is a stack. */
    uint32_t cap_max = 0;
    for (uint32_t i = 0; i < r->n_conns; i++)
        cap_max = r->conns[i].capacity > cap_max ? r->conns[i].capacity : cap_max;
    for (uint32_t j = cap_max; j-- > 0;) {
        uint32_t base = 0;
        bench_req *col[BENCH_CONNS_MAX];
        uint32_t n_col = 0;
        for (uint32_t i = 0; i < r->n_conns; i++) {
            if (j < r->conns[i].capacity)
                col[n_col++] = &r->reqs[base + j];
            base += r->conns[i].capacity;
        }
        while (n_col-- > 0) {
            col[n_col]->next_free = r->free_list;
            r->free_list = col[n_col];
        }
    }
    return 0;
}

static void timeval_of(double s, struct timeval *tv)
{
    assert(s >= 0);
    tv->tv_sec = (time_t)s;
    tv->tv_usec = (suseconds_t)((s - (double)tv->tv_sec) * 1e6);
}

/* Issues the first orders and runs the loop until the run is over. */
static void run_loop(bench_run *r)
{
    const bench_opts *o = r->o;
    struct timeval tv;
    r->t0_ns = bench_now_ns();
    r->t_measure_ns = r->t0_ns + (uint64_t)(o->warmup_s * 1e9);
    r->phase = RUN_ACTIVE;
    r->ev_tick = event_new(r->base, -1, EV_PERSIST, tick_cb, r);
    r->ev_stop = evtimer_new(r->base, stop_cb, r);
    r->ev_drain = evtimer_new(r->base, drain_cb, r);
    r->ev_arrival = evtimer_new(r->base, arrival_cb, r);
    r->ev_measure = evtimer_new(r->base, measure_cb, r);
    assert(r->ev_tick && r->ev_stop && r->ev_drain && r->ev_arrival && r->ev_measure);
    timeval_of(o->warmup_s, &tv);
    evtimer_add(r->ev_measure, &tv);
    timeval_of(1.0, &tv);
    event_add(r->ev_tick, &tv);
    timeval_of(o->warmup_s + o->duration_s, &tv);
    evtimer_add(r->ev_stop, &tv);
    if (o->rate > 0) {
        r->interval_ns = 1e9 / o->rate;
        r->backlog = calloc(BENCH_BACKLOG_MAX, sizeof *r->backlog);
        assert(r->backlog != NULL);
        timeval_of(0, &tv);
        evtimer_add(r->ev_arrival, &tv);
    } else {
        while (r->free_list != NULL && r->phase == RUN_ACTIVE) {
            bench_req *q = r->free_list;
            r->free_list = q->next_free;
            issue(r, q, bench_now_ns());
        }
    }
    event_base_dispatch(r->base);
    if (r->phase == RUN_ACTIVE)                   /* every connection died */
        r->t_stop_ns = bench_now_ns();
    if (r->phase != RUN_DONE && r->in_flight > 0)
        drain_cb(-1, 0, r);
    r->phase = RUN_DONE;
    if (o->progress)
        fprintf(stdout, "\r\033[K");
    uint64_t end = o->requests > 0 ? r->t_last_done_ns : r->t_stop_ns;
    r->res->elapsed_s = end > r->t_measure_ns ? (double)(end - r->t_measure_ns) / 1e9 : 0;
    event_free(r->ev_tick);
    event_free(r->ev_stop);
    event_free(r->ev_drain);
    event_free(r->ev_arrival);
    event_free(r->ev_measure);
}

static void make_nonce(bench_run *r)
{
    uint64_t s = bench_now_ns() ^ ((uint64_t)getpid() << 32) ^ r->o->seed;
    uint64_t x = bench_rand(&s);
    snprintf(r->nonce, sizeof r->nonce, "%08" PRIx32, (uint32_t)(x >> 32));
}

int bench_run_mode(const bench_opts *o, bench_mode_id mode, const double *zipf_cdf,
                   bench_result *res)
{
    memset(res, 0, sizeof *res);
    res->mode = mode;
    res->audit_rc = BENCH_AUDIT_NONE;
    bench_run *r = calloc(1, sizeof *r);
    assert(r != NULL);
    r->o = o;
    r->ops = bench_mode_get(mode);
    r->res = res;
    r->zipf_cdf = zipf_cdf;
    r->rng = o->seed;
    make_nonce(r);
    struct event_config *cfg = event_config_new();
    assert(cfg != NULL);
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    r->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    assert(r->base != NULL);
    int rc = -1;
    if (r->ops->open(r, &r->mode_state, res->error, sizeof res->error) != 0)
        goto out;
    if (alloc_slots(r) != 0) {
        snprintf(res->error, sizeof res->error, "no usable connections");
        r->ops->close(r, r->mode_state);
        goto out;
    }
    run_loop(r);
    res->ran = true;
    if (r->ops->after != NULL)
        r->ops->after(r, r->mode_state, res);
    res->audit_rc = r->ops->audit(r, r->mode_state, res, res->audit, sizeof res->audit);
    r->ops->close(r, r->mode_state);
    rc = 0;
out:
    event_base_free(r->base);
    free(r->backlog);
    free(r->reqs);
    free(r);
    return rc;
}
