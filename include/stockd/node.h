/* node.h — the state one stockd node's parts share, and the request.
 *
 * The node is built by server.c (server.h is its public face) from parts
 * with one job each, in the order a request flows through them:
 *   conn.c      connections: framing, limits, backpressure, closing;
 *   rpc.c       the request: decoded, authorized, answered (rpc.h);
 *   route.c     cluster routing: owners, forwarding, the coordinator (route.h);
 *   coldload.c  SKUs not in memory: single-flight loads, Bloom filter,
 *               the Redis read cache (coldload.h);
 *   core.c      the engine, the batch pump, what follows a commit (core.h);
 *   notify.c, reply.c, stats.c  telling listeners, encoding, figures.
 * Each part reads and writes only its own section of struct server (the
 * comments say whose); the engine is written only through core.c's pump
 * and the request paths that submit to it.
 *
 * A request's life (enum req_state, one function per transition in rpc.c):
 *   PARSED -> AUTHORIZED -> ROUTED (forwarded, coordinated, or here) ->
 *   QUEUED (waiting on a cold SKU, the engine, a peer, MariaDB) ->
 *   ANSWERED; the request is then back in the free list.
 */
#ifndef STOCKD_NODE_H
#define STOCKD_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event_struct.h>
#include <msgpack.h>

#include "stockd/bloom.h"
#include "stockd/cache.h"
#include "stockd/cart.h"
#include "stockd/codec.h"
#include "stockd/config.h"
#include "stockd/conn.h"
#include "stockd/engine.h"
#include "stockd/hist.h"
#include "stockd/notify.h"
#include "stockd/peer.h"
#include "stockd/peer_auth.h"
#include "stockd/purchase.h"
#include "stockd/ring.h"
#include "stockd/rpc_parse.h"
#include "stockd/server.h"
#include "stockd/stats.h"
#include "stockd/store.h"
#include "stockd/supplier.h"
#include "stockd/supplier_sync.h"

#define COMMITS_TRACKED 64        /* > STORE_CONNS_MAX: batches in commit at once */

/* Result slots of the per-method counters: engine errors, plus these. */
enum { RES_UNAUTHORIZED = ENG_E_COUNT_, RES_TOO_LARGE, RES_UNKNOWN_METHOD, RES_COUNT };

/* What the server keeps per connection (conn_data). */
typedef struct client {
    server *srv;
    /* The peer handshake (peer_auth.h), accepting side: a peer.hello was
     * answered (hello), then peer.auth proved the secret (peer). Only a
     * peer connection may send peer-only fields. */
    bool hello, peer;
    int key;
    char node[PEER_NODE_MAX + 1];
    uint8_t na[PEER_NONCE_BYTES], nb[PEER_NONCE_BYTES];
} client;

static inline client *cl(conn *c)
{
    return conn_data(c);
}

/* A request's life; one function per transition (rpc.h). */
enum req_state {
    REQ_FREE = 0,     /* in the free list */
    REQ_PARSING,      /* req_get: being decoded and validated */
    REQ_AUTHORIZED,   /* req_authorized: parsed, the token and peer checks passed */
    REQ_WAITING,      /* req_hold: held on its connection, waiting on a cold load,
                       * the engine, a peer, the coordinator or MariaDB */
    REQ_ANSWERED,     /* req_finish: its answer queued; back to FREE at once */
};

typedef struct req {
    eng_op op;                    /* op.ctx == this */
    enum req_state state;
    conn *c;
    uint32_t msgid;
    enum method m;
    int64_t start_ns;             /* frame read: latency is measured from here */
    struct event timer;           /* deadline while queued */
    int64_t deadline_ms;          /* a change waiting on a cold SKU's load */
    struct req *next_free;        /* free list; cold SKU waiters */
    char owner[RING_NAME_MAX + 1]; /* sharding: the node a forwarded request went to */
    int32_t limit;                /* alerts.list */
    bool fwd;                     /* sent by a peer: never forwarded again */
    bool check;                   /* reserve: "check": true (check.h) */
    bool nf_checked;              /* a not_found from memory already asked MariaDB */
    bool cart_routed;             /* an order call the coordinator found to have one SKU and
                                   * routed by it: never handed to the coordinator again */
    bool order_reloaded;          /* its order was read back from MariaDB (or is not there) */
    bool reload_sku;              /* waiting on a cold SKU before its order is read back */
} req;

/* What the core's pump needs of a store (core.h): the store's own calls
 * (store.h) in stockd, a test's in the unit test of the core. */
typedef struct core_sink {
    bool (*up)(void *st);
    bool (*can_commit)(void *st);
    int (*commit)(void *st, eng_batch *b);   /* 0: started; on_commit follows */
    void (*resolve)(void *st, eng_batch *b); /* on_resolve follows */
    void *st;
} core_sink;

struct server {
    struct event_base *base;
    const stockd_config *cfg;
    engine *eng;
    store *st;
    core_sink sink;          /* where batches go: the store, or a test's own */
    conn_mgr *cm;
    struct event *pump_ev;
    struct event *tick_ev;
    struct event *drain_ev;
    bool pump_armed;
    bool draining;
    const struct timeval *deadline_tv_default;
    req *free_reqs;
    msgpack_zone zone;
    msgpack_sbuffer out;
    msgpack_packer pk;
    int64_t started_ms;
    /* counters */
    uint64_t notifications;
    uint64_t results[M_COUNT][RES_COUNT];
    uint64_t outcome_unknown;
    /* latency: every answer is counted in results[][] and recorded in
     * latency_us[] at the same place, so the two always agree */
    int64_t frame_start_ns;       /* the frame being handled now */
    hist latency_us[M_COUNT];
    hist batch_ops;
    hist commit_us;
    struct { uint64_t batch_id; int64_t start_ns; } commits[COMMITS_TRACKED];
    bool listening;
    uint64_t reloads;
    /* read path: cold SKUs, Bloom filter, Redis cache */
    struct cold_sku *cold;        /* uthash by sku: loads in flight */
    uint32_t n_cold;
    uint32_t n_prefetch;          /* of n_cold: startup takeovers nobody waits on yet */
    uint64_t cold_loads, cold_waits, cold_loaded, cold_missing, cold_failed;
    struct req *cold_again_head, *cold_again_tail; /* carts waiting for their next cold SKU */
    struct event *cold_again_ev;
    bloom *bloom;
    cache *cache;
    /* orders read back (orderload.h) */
    struct order_wait *order_waits; /* uthash by order_id: reads in flight */
    uint32_t n_order_waits;
    bloom *ids_new, *ids_old;     /* ids that may be stored but not in memory */
    uint64_t ids_new_n;
    uint64_t order_reads, order_reads_failed, order_key_refusals;
    /* sharding (NULL ring: a single node owning every SKU) */
    ring *ring;
    uint32_t self;                /* this node's index in the ring */
    peer_pool *peers;
    peer_keyring keyring;         /* the cluster secrets (cfg), rebuilt on reload */
    uint64_t peer_auth_ok, peer_auth_failed, peer_only_refused;
    char **forget;                /* SKUs to drop from memory when idle */
    size_t n_forget, cap_forget;
    uint64_t fwd_calls, fwd_failed, not_owner, fence_drops, order_lookups, ring_changes;
    uint64_t nf_checks, nf_routed, nf_stale;   /* not_found asked of MariaDB (sharded) */
    supplier_sync *supsync;       /* NULL: supplier sync off (no --supplier-url) */
    supplier_client *supc;        /* shared by sync and purchases (one app key) */
    purchase *purch;
    /* order.subscribe listeners (order.update notifications) */
    notify *notify;               /* order.subscribe listeners, alerts ring (notify.h) */
    uint64_t alerts_total, alerts_no_cache;
    /* orders of several lines */
    bool parts_mode;              /* sharded: multi-line orders are parts here */
    cart *cart;                   /* sharded: the coordinator (NULL: not built in) */
    uint64_t lines_reserves, lines_total, lines_coordinated;
    /* supplier checks before a reserve is answered (check.h) */
    struct check_ctx *checks;     /* uthash by order_id: checks not yet decided or answered */
    uint32_t checks_alive;        /* contexts alive (also those waiting for late answers) */
    bool checks_down;             /* check_shutdown: answers only free their contexts */
    uint64_t checks_started, checks_passed, checks_refused, checks_unavailable;
    uint64_t check_previews, check_waits, checks_unknown;
    /* --test-clock: the test.clock call being worked (testclock.h); NULL
     * until the first call */
    struct testclock *tclock;
    eng_line_view line_buf[ENG_LINES_MAX]; /* pack_order scratch */
};


_Static_assert(M_COUNT <= STATS_METHODS_MAX && RES_COUNT <= STATS_RESULTS_MAX,
               "stats_snapshot arrays too small");

#endif
