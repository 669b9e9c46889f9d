/* cache.h — Redis on the loop (hiredis 0.14 async + its libevent adapter):
 * the read cache stock:{supplier}:{sku} and, later, other Redis users
 * (support alert streams) through cache_command_argv().
 *
 * Redis is never the truth: every failure here slows readers, never
 * writers. hiredis 0.14 has no timeouts of its own, so the module keeps
 * them: a connect (TCP + PING answered) must finish within timeout_ms, and
 * no command may wait longer than timeout_ms for its reply. A slow Redis
 * is treated as down: the connection is dropped (pending commands fail),
 * and reconnects follow with exponential backoff and jitter up to
 * backoff_max_ms.
 *
 * Refreshes: cache_mark(sku) asks for the SKU's key to be rewritten. Marks
 * are kept in a set (one entry per SKU, so marks coalesce) and flushed
 * after the current loop round as one pipeline of
 *   SET <key> <value> EX <ttl_s>
 * with key and value rendered by the caller's render callback at send time,
 * so the newest committed state goes out. While Redis is down, marks stay
 * in the set (nothing is sent) and are flushed once it is back; SETs that
 * were in flight when the connection dropped are marked again. After a drop
 * with SETs in flight the flush waits CACHE_SETTLE_MS after reconnecting,
 * so Redis has read what the dead connection had buffered before newer
 * values arrive on the new one (a frozen Redis resumes with both).
 *
 * Connection states (memcached-style):
 *   down        no connection; timer = reconnect backoff
 *   connecting  TCP connect and PING under way; timer = timeout_ms
 *   settling    PONG seen after a drop with SETs in flight; timer = settle
 *   up          commands flow; a watchdog drops it when a reply is late
 *
 * Callbacks run on the loop, never inside the call that started the work.
 * Nothing is freed from inside a hiredis callback that still uses it.
 */
#ifndef STOCKD_CACHE_H
#define STOCKD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockd/config.h"

struct event_base;
struct redisReply;
typedef struct cache cache;

#define CACHE_ID_MAX 64              /* sku bytes */
#define CACHE_KEY_MAX 256            /* rendered key bytes */
#define CACHE_VALUE_MAX 1024         /* rendered value bytes */
#define CACHE_INFLIGHT_MAX 4096      /* commands awaiting replies */
#define CACHE_DIRTY_MAX 1000000      /* SKUs waiting for a refresh */
#define CACHE_SETTLE_MS 50

/* Renders sku's key and value now. Returns false to send nothing (the SKU
 * is not known any more). key is NUL-terminated; value has *value_len bytes. */
typedef bool (*cache_render_fn)(const char *sku, char *key, size_t key_cap, char *value,
                                size_t value_cap, size_t *value_len, void *arg);

/* A command's reply; NULL when it failed (timeout, connection lost, freed).
 * The reply is hiredis's and valid only during the call. */
typedef void (*cache_reply_fn)(struct redisReply *reply, void *arg);

typedef struct cache_stats {
    bool up;
    uint64_t connects;          /* connections that reached "up" */
    uint64_t connect_failures;  /* refused, timed out, or PING failed */
    uint64_t drops;             /* up connections lost or dropped */
    uint64_t timeouts;          /* drops because a reply was late */
    uint64_t marks;             /* cache_mark() calls */
    uint64_t marks_coalesced;   /* marks of a SKU already waiting */
    uint64_t marks_dropped;     /* dirty set full: left to the TTL */
    uint64_t sets_sent;
    uint64_t sets_ok;
    uint64_t sets_failed;       /* error reply or no reply */
    uint64_t flushes;           /* pipelines written */
    uint64_t alerts_sent;       /* XADDs to stockd:alerts sent */
    uint64_t alerts_ok;
    uint64_t alerts_failed;     /* error reply or no reply (MariaDB still has them) */
    uint64_t alerts_skipped;    /* not sent: Redis down or too many commands waiting */
    uint32_t dirty;             /* SKUs waiting now */
    uint32_t inflight;          /* commands waiting for replies now */
} cache_stats;

/* Creates the module and starts connecting to cfg->redis_host:redis_port
 * (IP literal or localhost). Returns NULL with err on out of memory only:
 * an unreachable Redis is just "down". */
cache *cache_new(struct event_base *base, const stockd_config *cfg, cache_render_fn render,
                 void *render_arg, char *err, size_t err_len);
/* Drops the connection (pending commands get NULL replies) and frees. */
void cache_free(cache *c);

/* Asks for sku's key to be refreshed (see above). sku: 1..CACHE_ID_MAX bytes. */
void cache_mark(cache *c, const char *sku);
bool cache_up(const cache *c);

/* Sends one command when up. Returns 0 (fn will be called exactly once), or
 * -1 when down or CACHE_INFLIGHT_MAX commands are waiting (fn not called). */
int cache_command_argv(cache *c, int argc, const char **argv, const size_t *argvlen,
                       cache_reply_fn fn, void *arg);

/* Support alerts: best effort, fire and forget. When up, sends
 *   XADD stockd:alerts MAXLEN ~ 100000 * kind K sku S order_id O reason R at T
 * (T unix ms in decimal). Returns 0 when sent, -1 when skipped (down, or
 * CACHE_INFLIGHT_MAX commands waiting); both are counted in the stats. */
#define CACHE_ALERTS_STREAM "stockd:alerts"
#define CACHE_ALERTS_MAXLEN "100000"
int cache_xadd_alert(cache *c, const char *kind, const char *sku, const char *order_id,
                     const char *reason, int64_t at_ms);

void cache_stats_get(const cache *c, cache_stats *out);

#endif
