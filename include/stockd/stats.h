/* stats.h — one snapshot of every figure stockd keeps, filled once per
 * question (server_stats_get) and rendered two ways from the same struct:
 * the `stats` method's map and /metrics (Prometheus
 * text 0.0.4, http.h). So the two can never disagree. Pure rendering: no
 * state, no I/O but appending to the caller's buffer.
 *
 * The hist pointers are the live histograms (valid while the server
 * lives, read during the call only).
 */
#ifndef STOCKD_STATS_H
#define STOCKD_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include <msgpack.h>

#include "stockd/bloom.h"
#include "stockd/cache.h"
#include "stockd/cart.h"
#include "stockd/conn.h"
#include "stockd/engine.h"
#include "stockd/hist.h"
#include "stockd/httpd.h"
#include "stockd/notify.h"
#include "stockd/peer.h"
#include "stockd/purchase.h"
#include "stockd/store.h"
#include "stockd/supplier.h"
#include "stockd/supplier_sync.h"

struct evbuffer;

#define STATS_METHODS_MAX 24
#define STATS_RESULTS_MAX 24
/* stats.supplier.trust: the first suppliers only (a bounded answer). */
#define STATS_TRUST_MAX 100

typedef struct stats_method {
    const char *name;
    uint64_t results[STATS_RESULTS_MAX];   /* answers by result slot */
    const hist *latency_us;                /* frame read to reply queued, every answer */
} stats_method;

typedef struct stats_trust {
    char supplier_id[ENG_ID_MAX + 1];
    double effective;
} stats_trust;

typedef struct stats_snapshot {
    const char *node;
    int64_t uptime_ms;
    bool listening;                 /* state loaded and serving */
    bool draining;
    bool store_up;
    conn_stats conns;
    uint64_t notifications;         /* msgpack-rpc notifications received (ignored) */
    uint64_t open_files, open_files_limit;  /* descriptors now, RLIMIT_NOFILE soft */
    uint64_t outcome_unknown, reloads;
    uint32_t n_methods, n_results;
    const char *result_names[STATS_RESULTS_MAX];
    stats_method methods[STATS_METHODS_MAX];
    const hist *batch_ops;          /* ops per batch handed to the store */
    const hist *commit_us;          /* store_commit to on_commit, any outcome */
    uint32_t queue_per_sku_max, queue_total_max;
    eng_stats engine;
    store_stats store;
    /* read path */
    bool preload_skus;
    uint32_t cache_ttl_s;
    bool has_bloom, has_cache;
    bloom_stats bloom;
    cache_stats cache;
    uint64_t cold_loads, cold_waits, cold_loaded, cold_missing, cold_failed;
    uint32_t cold_in_flight;
    /* orders that left memory (orderload.h) */
    uint32_t order_retention_ms;
    uint64_t order_reads, order_reads_failed, order_key_refusals;
    uint32_t order_reads_in_flight;
    /* cluster */
    bool sharded;
    uint32_t nodes;
    uint64_t ring_version;
    bool ring_settled;              /* startup takeovers done, no SKU waiting to leave */
    uint32_t takeovers_pending, forget_pending;
    uint64_t forwarded, forward_failed, not_owner, fence_drops, order_lookups, ring_changes;
    peer_stats peers;
    uint64_t peer_auth_ok, peer_auth_failed, peer_only_refused;
    /* supplier side */
    bool supplier_enabled;
    supsync_stats sync;
    purchase_stats purchase;
    supplier_stats client;
    /* checked reserves (check.h): outcomes, previews sent, retries that
     * waited for a running check, contexts alive */
    uint64_t checks_started, checks_passed, checks_refused, checks_unavailable, checks_unknown;
    uint64_t check_previews, check_waits;
    uint32_t checks_alive;
    uint32_t n_trust;
    stats_trust trust[STATS_TRUST_MAX];
    /* telling people */
    notify_stats notify;
    uint64_t alerts_total, alerts_no_cache;
    /* orders of several lines */
    bool coordinator;
    cart_stats cart;
    uint64_t lines_reserves, lines_total, lines_coordinated;
    /* the HTTP port: filled by http.c for /metrics (the node does not own it) */
    bool has_http;
    httpd_stats http;
} stats_snapshot;

/* The `stats` answer: one map (PROTOCOL.md names its keys). */
void stats_pack(const stats_snapshot *s, msgpack_packer *pk);
/* /metrics: Prometheus text exposition 0.0.4. */
void stats_metrics(const stats_snapshot *s, struct evbuffer *out);
/* /readyz: "" when ready, else the reasons, one per line. */
void stats_unready(const stats_snapshot *s, struct evbuffer *out);

#endif
