/* cache.c — Redis on the loop (contract in include/stockd/cache.h).
 *
 * One hiredis async context at a time. Every command we send carries a
 * cache_cmd (privdata) that sits in a FIFO of pending commands; Redis
 * answers in order, so the FIFO's head is the oldest and the watchdog only
 * looks at it. hiredis calls every pending callback with a NULL reply when
 * a context is freed, by us or after a read/write error, so each cache_cmd
 * is released exactly once, in reply_cb.
 *
 * We never free the context from inside one of its callbacks: drops happen
 * from our own timers (watchdog, connect timeout); when hiredis itself
 * disconnects, it frees the context and tells us through disconnect_cb.
 */
#include "stockd/cache.h"
#include "stockd/clock.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>
#include <uthash.h>

#include "stockd/log.h"

#define CACHE_BACKOFF_MIN_MS 50u
#define CACHE_WATCHDOG_MIN_MS 5u

enum cache_state { CS_DOWN = 0, CS_CONNECTING, CS_SETTLING, CS_UP };
enum cmd_kind { CMD_PING = 0, CMD_SET, CMD_USER, CMD_XADD };

typedef struct cache_cmd {
    cache *c;
    enum cmd_kind kind;
    int64_t sent_us;
    cache_reply_fn fn;           /* CMD_USER */
    void *arg;
    char sku[CACHE_ID_MAX + 1];  /* CMD_SET: marked again if no reply */
    struct cache_cmd *prev, *next;
} cache_cmd;

typedef struct dirty_sku {
    UT_hash_handle hh;
    char sku[CACHE_ID_MAX + 1];
} dirty_sku;

struct cache {
    struct event_base *base;
    char host[CFG_STR_MAX];
    int port;
    uint32_t ttl_s;
    uint32_t timeout_ms;
    uint32_t backoff_max_ms;
    uint32_t backoff_ms;         /* 0: next failure retries at once */
    enum cache_state state;
    redisAsyncContext *ac;       /* NULL in CS_DOWN */
    bool settle_needed;          /* the last drop lost SETs in flight */
    cache_render_fn render;
    void *render_arg;
    struct event *timer;         /* meaning per state (see cache.h) */
    struct event *watchdog;      /* persistent: late replies */
    struct event *flush_ev;      /* deferred flush of the dirty set */
    bool flush_armed;
    cache_cmd *head, *tail;      /* pending, oldest first */
    uint32_t inflight;
    dirty_sku *dirty;            /* uthash set */
    uint32_t n_dirty;
    uint64_t rng;
    cache_stats st;
};


static struct timeval tv_ms(uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

static uint64_t cache_rand(cache *c)
{
    /* xorshift64*: jitter only. */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * UINT64_C(2685821657736338717);
}

/* ---- pending commands ------------------------------------------------- */

static cache_cmd *cmd_new(cache *c, enum cmd_kind kind)
{
    cache_cmd *cmd = calloc(1, sizeof(*cmd));
    if (cmd == NULL)
        return NULL;
    cmd->c = c;
    cmd->kind = kind;
    cmd->sent_us = clock_mono_us();
    cmd->prev = c->tail;
    if (c->tail)
        c->tail->next = cmd;
    else
        c->head = cmd;
    c->tail = cmd;
    c->inflight++;
    return cmd;
}

static void cmd_free(cache_cmd *cmd)
{
    cache *c = cmd->c;
    if (cmd->prev)
        cmd->prev->next = cmd->next;
    else
        c->head = cmd->next;
    if (cmd->next)
        cmd->next->prev = cmd->prev;
    else
        c->tail = cmd->prev;
    assert(c->inflight > 0);
    c->inflight--;
    free(cmd);
}

/* ---- dirty set ----------------------------------------------------------- */

static void flush_schedule(cache *c)
{
    if (c->flush_armed || c->state != CS_UP || c->n_dirty == 0)
        return;
    c->flush_armed = true;
    event_active(c->flush_ev, EV_TIMEOUT, 0);
}

/* Adds sku to the set; false when it was there already. */
static bool dirty_add(cache *c, const char *sku, size_t n)
{
    dirty_sku *d;
    HASH_FIND(hh, c->dirty, sku, n, d);
    if (d != NULL)
        return false;
    if (c->n_dirty >= CACHE_DIRTY_MAX) {
        c->st.marks_dropped++;  /* the key's TTL bounds how stale it gets */
        return false;
    }
    d = malloc(sizeof(*d));
    if (d == NULL) {
        c->st.marks_dropped++;
        return false;
    }
    memcpy(d->sku, sku, n);
    d->sku[n] = '\0';
    HASH_ADD(hh, c->dirty, sku[0], n, d);
    c->n_dirty++;
    return true;
}

void cache_mark(cache *c, const char *sku)
{
    size_t n = strlen(sku);
    assert(n >= 1 && n <= CACHE_ID_MAX);
    c->st.marks++;
    if (!dirty_add(c, sku, n))
        c->st.marks_coalesced++;
    flush_schedule(c);
}

/* ---- connection ----------------------------------------------------------- */

static void connect_start(cache *c);

/* Schedules the next connect: at once after the first failure of a healthy
 * connection, then with exponential backoff and jitter. */
static void schedule_reconnect(cache *c)
{
    assert(c->state == CS_DOWN && c->ac == NULL);
    uint32_t delay = 0;
    if (c->backoff_ms) {
        uint32_t half = c->backoff_ms / 2;
        delay = half + (uint32_t)(cache_rand(c) % (half + 1));
    }
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : CACHE_BACKOFF_MIN_MS;
    if (c->backoff_ms > c->backoff_max_ms)
        c->backoff_ms = c->backoff_max_ms;
    struct timeval tv = tv_ms(delay);
    evtimer_add(c->timer, &tv);
}

/* Leaves the connection (ours to free: never called from hiredis
 * callbacks of this context). Pending callbacks run with NULL inside. */
static void drop(cache *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    bool was_up = c->state == CS_UP || c->state == CS_SETTLING;
    if (was_up) {
        c->st.drops++;
        LOG_W("cache: redis down", "why", why);
    } else {
        c->st.connect_failures++;
        LOG_D("cache: redis connect failed", "why", why);
    }
    c->settle_needed = c->settle_needed || c->inflight > 0;
    c->ac = NULL;
    c->state = CS_DOWN;
    event_del(c->timer);
    if (ac != NULL)
        redisAsyncFree(ac);
    schedule_reconnect(c);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    cache *c = ac->data;
    if (ac != c->ac || status == REDIS_OK)
        return;  /* success counts only once PING is answered */
    /* hiredis frees the context after this callback. */
    c->ac = NULL;
    c->st.connect_failures++;
    c->state = CS_DOWN;
    event_del(c->timer);
    schedule_reconnect(c);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    (void)status;
    cache *c = ac->data;
    if (ac != c->ac)
        return;  /* one we dropped ourselves */
    /* hiredis frees the context after this callback. */
    c->ac = NULL;
    bool was_up = c->state == CS_UP || c->state == CS_SETTLING;
    c->state = CS_DOWN;
    event_del(c->timer);
    if (was_up) {
        c->st.drops++;
        LOG_W("cache: redis down", "why", "connection lost");
    } else {
        c->st.connect_failures++;
    }
    schedule_reconnect(c);
}

static void go_up(cache *c)
{
    c->state = CS_UP;
    c->backoff_ms = 0;
    c->settle_needed = false;
    c->st.connects++;
    LOG_I("cache: redis up");
    flush_schedule(c);
}

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    cache_cmd *cmd = privdata;
    cache *c = cmd->c;
    redisReply *reply = r;
    switch (cmd->kind) {
    case CMD_PING:
        if (c->state == CS_CONNECTING && reply != NULL && reply->type == REDIS_REPLY_STATUS) {
            event_del(c->timer);
            if (c->settle_needed) {
                c->state = CS_SETTLING;
                struct timeval tv = tv_ms(CACHE_SETTLE_MS);
                evtimer_add(c->timer, &tv);
            } else {
                go_up(c);
            }
        }
        break;
    case CMD_SET:
        if (reply != NULL && reply->type == REDIS_REPLY_STATUS) {
            c->st.sets_ok++;
        } else {
            c->st.sets_failed++;
            /* No reply: the value may not be there; send it again. An error
             * reply (OOM, wrong type) is left to the TTL: no retry loop. */
            if (reply == NULL) {
                dirty_add(c, cmd->sku, strlen(cmd->sku));
                c->settle_needed = true;
            }
        }
        break;
    case CMD_USER:
        cmd->fn(reply, cmd->arg);
        break;
    case CMD_XADD:
        /* No retry: a resent XADD after a lost reply could duplicate the
         * entry, and MariaDB holds every alert anyway. */
        if (reply != NULL && reply->type == REDIS_REPLY_STRING)
            c->st.alerts_ok++;
        else
            c->st.alerts_failed++;
        break;
    }
    cmd_free(cmd);
    flush_schedule(c);
}

static void connect_start(cache *c)
{
    assert(c->state == CS_DOWN && c->ac == NULL);
    const char *host = strcmp(c->host, "localhost") == 0 ? "127.0.0.1" : c->host;
    redisAsyncContext *ac = redisAsyncConnect(host, c->port);
    if (ac == NULL) {
        c->st.connect_failures++;
        schedule_reconnect(c);
        return;
    }
    if (ac->err) {
        LOG_D("cache: redis connect failed", "why", ac->errstr);
        redisAsyncFree(ac);
        c->st.connect_failures++;
        schedule_reconnect(c);
        return;
    }
    ac->data = c;
    if (redisLibeventAttach(ac, c->base) != REDIS_OK) {
        redisAsyncFree(ac);
        c->st.connect_failures++;
        schedule_reconnect(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    c->ac = ac;
    c->state = CS_CONNECTING;
    struct timeval tv = tv_ms(c->timeout_ms);
    evtimer_add(c->timer, &tv);
    /* Queued until the socket connects; its answer is what makes us "up":
     * a frozen Redis still completes TCP handshakes from its backlog. */
    cache_cmd *cmd = cmd_new(c, CMD_PING);
    if (cmd == NULL || redisAsyncCommand(ac, reply_cb, cmd, "PING") != REDIS_OK) {
        if (cmd)
            cmd_free(cmd);
        drop(c, "PING could not be queued");
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cache *c = arg;
    char msg[64];
    switch (c->state) {
    case CS_DOWN:
        connect_start(c);
        return;
    case CS_CONNECTING:
        snprintf(msg, sizeof msg, "connect timeout after %" PRIu32 " ms", c->timeout_ms);
        drop(c, msg);
        return;
    case CS_SETTLING:
        go_up(c);
        return;
    case CS_UP:
        break;
    }
    assert(!"cache timer in state up");
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cache *c = arg;
    if (c->ac == NULL || c->head == NULL || c->state == CS_CONNECTING)
        return;  /* connecting has its own timer */
    int64_t age_us = clock_mono_us() - c->head->sent_us;
    if (age_us >= (int64_t)c->timeout_ms * 1000) {
        char msg[64];
        snprintf(msg, sizeof msg, "no reply in %" PRIu32 " ms", c->timeout_ms);
        c->st.timeouts++;
        drop(c, msg);
    }
}

/* ---- flushing --------------------------------------------------------------- */

static bool send_set(cache *c, const char *sku)
{
    char key[CACHE_KEY_MAX], value[CACHE_VALUE_MAX], ttl[16];
    size_t value_len = 0;
    if (!c->render(sku, key, sizeof key, value, sizeof value, &value_len, c->render_arg))
        return true;  /* nothing to write for it */
    assert(value_len <= sizeof value);
    snprintf(ttl, sizeof ttl, "%" PRIu32, c->ttl_s);
    const char *argv[5] = {"SET", key, value, "EX", ttl};
    size_t argvlen[5] = {3, strlen(key), value_len, 2, strlen(ttl)};
    cache_cmd *cmd = cmd_new(c, CMD_SET);
    if (cmd == NULL)
        return false;
    snprintf(cmd->sku, sizeof cmd->sku, "%s", sku);
    if (redisAsyncCommandArgv(c->ac, reply_cb, cmd, 5, argv, argvlen) != REDIS_OK) {
        cmd_free(cmd);
        return false;
    }
    c->st.sets_sent++;
    return true;
}

/* Writes one SET per dirty SKU while under the in-flight limit; hiredis
 * buffers them and writes the lot when the socket is writable: a pipeline. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cache *c = arg;
    c->flush_armed = false;
    if (c->state != CS_UP || c->ac == NULL)
        return;
    bool any = false;
    dirty_sku *d, *tmp;
    HASH_ITER(hh, c->dirty, d, tmp) {
        if (c->inflight >= CACHE_INFLIGHT_MAX)
            break;  /* replies arriving schedule the rest */
        if (!send_set(c, d->sku))
            break;
        any = true;
        HASH_DEL(c->dirty, d);
        c->n_dirty--;
        free(d);
    }
    if (any)
        c->st.flushes++;
}

/* ---- public ------------------------------------------------------------------ */

cache *cache_new(struct event_base *base, const stockd_config *cfg, cache_render_fn render,
                 void *render_arg, char *err, size_t err_len)
{
    assert(base && cfg && render);
    cache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    c->base = base;
    snprintf(c->host, sizeof c->host, "%s", cfg->redis_host);
    c->port = cfg->redis_port;
    c->ttl_s = cfg->cache_ttl_s ? cfg->cache_ttl_s : 60;
    c->timeout_ms = cfg->redis_timeout_ms ? cfg->redis_timeout_ms : 250;
    c->backoff_max_ms = cfg->redis_backoff_max_ms >= CACHE_BACKOFF_MIN_MS
                            ? cfg->redis_backoff_max_ms : CACHE_BACKOFF_MIN_MS;
    c->render = render;
    c->render_arg = render_arg;
    c->rng = (uint64_t)clock_mono_us() ^ ((uint64_t)getpid() << 32) ^ UINT64_C(0x9e3779b97f4a7c15);
    c->timer = evtimer_new(base, timer_cb, c);
    c->watchdog = event_new(base, -1, EV_PERSIST, watchdog_cb, c);
    c->flush_ev = event_new(base, -1, 0, flush_cb, c);
    if (c->timer == NULL || c->watchdog == NULL || c->flush_ev == NULL) {
        cache_free(c);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    uint32_t wd = c->timeout_ms / 4;
    struct timeval tv = tv_ms(wd < CACHE_WATCHDOG_MIN_MS ? CACHE_WATCHDOG_MIN_MS : wd);
    event_add(c->watchdog, &tv);
    connect_start(c);
    return c;
}

void cache_free(cache *c)
{
    if (c == NULL)
        return;
    if (c->ac != NULL) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->state = CS_DOWN;
        redisAsyncFree(ac);  /* pending callbacks run now, with NULL */
    }
    assert(c->head == NULL);
    if (c->timer)
        event_free(c->timer);
    if (c->watchdog)
        event_free(c->watchdog);
    if (c->flush_ev)
        event_free(c->flush_ev);
    dirty_sku *d, *tmp;
    HASH_ITER(hh, c->dirty, d, tmp) {
        HASH_DEL(c->dirty, d);
        free(d);
    }
    free(c);
}

bool cache_up(const cache *c)
{
    return c->state == CS_UP;
}

int cache_command_argv(cache *c, int argc, const char **argv, const size_t *argvlen,
                       cache_reply_fn fn, void *arg)
{
    assert(fn != NULL && argc >= 1);
    if (c->state != CS_UP || c->ac == NULL || c->inflight >= CACHE_INFLIGHT_MAX)
        return -1;
    cache_cmd *cmd = cmd_new(c, CMD_USER);
    if (cmd == NULL)
        return -1;
    cmd->fn = fn;
    cmd->arg = arg;
    if (redisAsyncCommandArgv(c->ac, reply_cb, cmd, argc, argv, argvlen) != REDIS_OK) {
        cmd_free(cmd);
        return -1;
    }
    return 0;
}

int cache_xadd_alert(cache *c, const char *kind, const char *sku, const char *order_id,
                     const char *reason, int64_t at_ms)
{
    if (c->state != CS_UP || c->ac == NULL || c->inflight >= CACHE_INFLIGHT_MAX) {
        c->st.alerts_skipped++;
        return -1;
    }
    char at[24];
    snprintf(at, sizeof at, "%" PRId64, at_ms);
    const char *argv[] = {"XADD", CACHE_ALERTS_STREAM, "MAXLEN", "~", CACHE_ALERTS_MAXLEN, "*",
                          "kind", kind, "sku", sku, "order_id", order_id,
                          "reason", reason, "at", at};
    enum { N = sizeof(argv) / sizeof(argv[0]) };
    size_t len[N];
    for (int i = 0; i < N; i++)
        len[i] = strlen(argv[i]);
    cache_cmd *cmd = cmd_new(c, CMD_XADD);
    if (cmd == NULL) {
        c->st.alerts_skipped++;
        return -1;
    }
    if (redisAsyncCommandArgv(c->ac, reply_cb, cmd, N, argv, len) != REDIS_OK) {
        cmd_free(cmd);
        c->st.alerts_skipped++;
        return -1;
    }
    c->st.alerts_sent++;
    return 0;
}

void cache_stats_get(const cache *c, cache_stats *out)
{
    *out = c->st;
    out->up = c->state == CS_UP;
    out->dirty = c->n_dirty;
    out->inflight = c->inflight;
}
