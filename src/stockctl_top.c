/* stockctl_top.c — `stockctl top`: a live view of `stats`, refreshed every
 * --interval ms. Rates are deltas between two polls divided by the local
 * time between them; p50/p99 are the server's, over its whole uptime. A
 * lost connection is shown and retried at the next refresh.
 */
#include "stockctl_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "stockd/codec.h"

static int64_t top_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const msgpack_object *top_sub(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = m ? codec_map_get(m, key) : NULL;
    return v && v->type == MSGPACK_OBJECT_MAP ? v : NULL;
}

static int64_t top_int(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = m ? codec_map_get(m, key) : NULL;
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
        return (int64_t)v->via.u64;
    if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return v->via.i64;
    if (v && v->type == MSGPACK_OBJECT_BOOLEAN)
        return v->via.boolean;
    return 0;
}

static void top_str(const msgpack_object *o, char *buf, size_t len)
{
    buf[0] = '\0';
    if (o && o->type == MSGPACK_OBJECT_STR) {
        size_t n = o->via.str.size < len - 1 ? o->via.str.size : len - 1;
        memcpy(buf, o->via.str.ptr, n);
        buf[n] = '\0';
    }
}

/* Copies what the view shows out of a stats map (valid until the next call). */
void ctl_top_take(const msgpack_object *st, top_snap *s)
{
    memset(s, 0, sizeof(*s));
    s->t_ms = top_now_ms();
    top_str(codec_map_get(st, "node"), s->node, sizeof(s->node));
    s->uptime_ms = top_int(st, "uptime_ms");
    s->conns = top_int(top_sub(st, "connections"), "current");
    const msgpack_object *req = top_sub(st, "requests"), *lat = top_sub(st, "latency_us");
    for (uint32_t i = 0; req && i < req->via.map.size && s->nm < TOP_METHODS_MAX; i++) {
        const msgpack_object_kv *kv = &req->via.map.ptr[i];
        if (kv->val.type != MSGPACK_OBJECT_MAP)
            continue;
        top_method *m = &s->m[s->nm++];
        top_str(&kv->key, m->name, sizeof(m->name));
        for (uint32_t r = 0; r < kv->val.via.map.size; r++) {
            const msgpack_object *n = &kv->val.via.map.ptr[r].val;
            if (n->type == MSGPACK_OBJECT_POSITIVE_INTEGER && n->via.u64 <= INT64_MAX)
                m->total += (int64_t)n->via.u64;
        }
        m->ok = top_int(&kv->val, "ok");
        const msgpack_object *l = top_sub(lat, m->name);
        m->p50 = top_int(l, "p50");
        m->p99 = top_int(l, "p99");
    }
    const msgpack_object *q = top_sub(st, "queue"), *b = top_sub(st, "batches");
    const msgpack_object *c = top_sub(st, "commits"), *state = top_sub(st, "state");
    s->queued = top_int(q, "queued");
    s->queued_max_sku = top_int(q, "queued_max_sku");
    s->per_sku_max = top_int(q, "per_sku_max");
    s->total_max = top_int(q, "total_max");
    s->batches = top_int(b, "batches");
    s->batch_ops = top_int(b, "batch_ops");
    s->in_flight = top_int(b, "in_flight");
    s->commits_ok = top_int(c, "ok");
    s->commits_aborted = top_int(c, "aborted");
    s->commits_unknown = top_int(c, "unknown");
    s->commit_mean_us = top_int(c, "latency_us_mean");
    s->commit_max_us = top_int(c, "latency_us_max");
    s->db_conns_up = top_int(c, "conns_up");
    s->skus = top_int(state, "skus");
    s->orders = top_int(state, "orders");
    s->outcome_unknown = top_int(state, "outcome_unknown");
    s->store_up = top_int(state, "store_up") != 0;
    const msgpack_object *cache = top_sub(top_sub(st, "read_path"), "cache");
    if (cache) {
        s->has_redis = true;
        s->redis_up = top_int(cache, "up") != 0;
        s->redis_dirty = top_int(cache, "dirty");
        s->redis_sets_failed = top_int(cache, "sets_failed");
    }
}

static const top_method *top_find(const top_snap *s, const char *name)
{
    for (int i = 0; i < s->nm; i++)
        if (strcmp(s->m[i].name, name) == 0)
            return &s->m[i];
    return NULL;
}

void ctl_top_draw(FILE *f, const top_snap *cur, const top_snap *prev, const char *addr)
{
    int64_t up = cur->uptime_ms / 1000;
    double dt = prev ? (double)(cur->t_ms - prev->t_ms) / 1000.0 : 0.0;
    fprintf(f, "\033[H\033[2Jstockd top  %s  node %s  up %" PRId64 "h%02" PRId64 "m%02" PRId64
              "s  conns %" PRId64 "  store %s   (q quits)\n\n",
              addr, cur->node, up / 3600, up / 60 % 60, up % 60, cur->conns,
              cur->store_up ? "UP" : "DOWN");
    fprintf(f, "%-14s %10s %12s %9s %10s %10s\n", "METHOD", "REQ/S", "TOTAL", "ERRORS", "P50_US",
              "P99_US");
    int64_t all = 0;
    double all_rate = 0;
    for (int i = 0; i < cur->nm; i++) {
        const top_method *m = &cur->m[i], *p = prev ? top_find(prev, m->name) : NULL;
        char rate[24] = "-";
        if (prev && dt > 0) {
            double r = (double)(m->total - (p ? p->total : 0)) / dt;
            snprintf(rate, sizeof(rate), "%.1f", r);
            all_rate += r;
        }
        all += m->total;
        fprintf(f, "%-14s %10s %12" PRId64 " %9" PRId64 " %10" PRId64 " %10" PRId64 "\n", m->name,
                  rate, m->total, m->total - m->ok, m->p50, m->p99);
    }
    if (prev && dt > 0)
        fprintf(f, "%-14s %10.1f %12" PRId64 "\n", "all", all_rate, all);
    fprintf(f, "\nQUEUE    waiting %" PRId64 " of %" PRId64 "   longest SKU queue seen %" PRId64
              " of %" PRId64 "\n", cur->queued, cur->total_max, cur->queued_max_sku,
              cur->per_sku_max);
    fprintf(f, "BATCHES  %" PRId64 " (mean %.1f ops)   in flight %" PRId64 "\n", cur->batches,
              cur->batches ? (double)cur->batch_ops / (double)cur->batches : 0.0, cur->in_flight);
    fprintf(f, "COMMITS  ok %" PRId64 "  aborted %" PRId64 "  unknown %" PRId64 "   mean %" PRId64
              " us  max %" PRId64 " us\n", cur->commits_ok, cur->commits_aborted,
              cur->commits_unknown, cur->commit_mean_us, cur->commit_max_us);
    fprintf(f, "MARIADB  %s, %" PRId64 " connections up\n", cur->store_up ? "up" : "DOWN",
              cur->db_conns_up);
    if (cur->has_redis)
        fprintf(f, "REDIS    %s, %" PRId64 " SKUs waiting for a cache refresh, %" PRId64
                  " cache writes failed\n", cur->redis_up ? "up" : "DOWN",
                  cur->redis_dirty, cur->redis_sets_failed);
    fprintf(f, "STATE    skus %" PRId64 "  orders %" PRId64 "  answered outcome-unknown %" PRId64
              "\n", cur->skus, cur->orders, cur->outcome_unknown);
    fflush(f);
}

/* The terminal while top runs: keys arrive one at a time and unechoed, so
 * `q` quits without Enter, and the cursor is hidden. Every way out puts
 * back what was there: q, the end of --count, and the signals a terminal
 * sends (^C, ^\, hangup), which then end stockctl as the signal would;
 * ^Z restores it while stopped and takes it again on fg. Only
 * async-signal-safe calls below are made from handlers. */
static struct termios top_tio_saved;
static volatile sig_atomic_t top_tio_active;   /* top_tio_saved is to be put back */
static volatile sig_atomic_t top_quit_sig;     /* the signal that ends top, or 0 */
static bool top_tty_out;

static const char top_cursor_hide[] = "\033[?25l", top_cursor_show[] = "\033[?25h";

static void top_term_put_back(void)
{
    if (top_tio_active)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &top_tio_saved);
    if (top_tty_out) {
        ssize_t w = write(STDOUT_FILENO, top_cursor_show, sizeof top_cursor_show - 1);
        (void)w;
    }
}

static void top_term_take(void)
{
    if (top_tio_active) {
        struct termios raw = top_tio_saved;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);  /* ISIG stays: ^C is still SIGINT */
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    if (top_tty_out) {
        ssize_t w = write(STDOUT_FILENO, top_cursor_hide, sizeof top_cursor_hide - 1);
        (void)w;
    }
}

static void top_on_quit(int sig)
{
    top_quit_sig = sig;
}

static void top_on_tstp(int sig)
{
    int saved = errno;
    top_term_put_back();
    signal(sig, SIG_DFL);
    /* Blocked while its handler runs: unblock it, or the raise would be
     * held back until this handler returned and caught again. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);              /* stopped here until SIGCONT (ignored if nobody could fg us) */
    struct sigaction sa = {.sa_handler = top_on_tstp};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTSTP, &sa, NULL);
    top_term_take();
    errno = saved;
}

static void top_term_begin(void)
{
    top_tty_out = isatty(STDOUT_FILENO);
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &top_tio_saved) == 0)
        top_tio_active = 1;
    /* No SA_RESTART: a signal ends the wait between refreshes at once. */
    struct sigaction sa = {.sa_handler = top_on_quit};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sa.sa_handler = top_on_tstp;
    sigaction(SIGTSTP, &sa, NULL);
    top_term_take();
}

/* Puts the terminal back; after a signal, ends the process by it (so a
 * shell or script sees ^C as ^C). */
static void top_term_end(void)
{
    fflush(stdout);
    signal(SIGTSTP, SIG_DFL);
    top_term_put_back();
    top_tio_active = 0;
    if (top_quit_sig) {
        signal(top_quit_sig, SIG_DFL);
        raise(top_quit_sig);
    }
}

/* Waits ms, or less when q is typed or a signal ends top: true to quit. */
static bool top_wait_ms(int64_t ms)
{
    int64_t until = top_now_ms() + ms;
    for (;;) {
        if (top_quit_sig)
            return true;
        int64_t left = until - top_now_ms();
        if (left <= 0)
            return false;
        if (!top_tio_active) {
            struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};
            nanosleep(&ts, NULL);  /* EINTR: the loop looks at top_quit_sig */
            continue;
        }
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int n = poll(&p, 1, (int)left);
        if (n <= 0)
            continue;  /* timeout or EINTR */
        if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
            return true;  /* the terminal is gone */
        char keys[64];
        ssize_t got = read(STDIN_FILENO, keys, sizeof keys);
        if (got == 0)
            return true;
        for (ssize_t i = 0; i < got; i++)
            if (keys[i] == 'q' || keys[i] == 'Q')
                return true;
    }
}

int ctl_cmd_top(stockd_client *c, const ctl_opts *o)
{
    top_snap snaps[2];
    top_snap *cur = &snaps[0], *prev = NULL;
    top_term_begin();
    for (int64_t n = 0; o->top_count == 0 || n < o->top_count; n++) {
        if (n > 0 && top_wait_ms(o->interval_ms))
            break;
        if (top_quit_sig)
            break;
        const msgpack_object *st;
        stockd_rc rc = stockd_client_connected(c) ? STOCKD_OK
                                                  : stockd_client_connect(c, o->addr, o->timeout_ms);
        if (rc == STOCKD_OK)
            rc = stockd_stats(c, &st);
        if (rc != STOCKD_OK) {
            printf("\033[H\033[2Jstockd top  %s  unreachable: %s (retrying every %" PRId64
                   " ms; q quits)\n", o->addr, stockd_client_errstr(c), o->interval_ms);
            fflush(stdout);
            stockd_client_close(c);
            prev = NULL;
            continue;
        }
        ctl_top_take(st, cur);
        ctl_top_draw(stdout, cur, prev, o->addr);
        prev = cur;
        cur = cur == &snaps[0] ? &snaps[1] : &snaps[0];
    }
    top_term_end();
    return 0;
}
