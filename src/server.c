/* server.c — builds one stockd node from its parts (node.h), starts and
 * stops it, reloads its limits and fills the figures operators read; see
 * server.h. */
#include "stockd/orderload.h"
#include "stockd/server.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "stockd/clock.h"
#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/node.h"
#include <dirent.h>
#include <sys/resource.h>

#include "stockd/check.h"
#include "stockd/testclock.h"
#include "stockd/coldload.h"
#include "stockd/core.h"
#include "stockd/route.h"
#include "stockd/rpc.h"

server *server_new(struct event_base *base, const stockd_config *cfg, char *err, size_t err_len)
{
    server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->base = base;
    s->cfg = cfg;
    s->started_ms = clock_real_wall_ms();  /* uptime is real time, test clock or not */
    peer_keyring_set(&s->keyring, cfg->cluster_secret, cfg->cluster_secret_alt);
    eng_limits lim;
    core_limits_from_cfg(cfg, &lim);
    s->eng = engine_new(&lim, rpc_done_cb, s);
    s->notify = notify_new(cfg);
    conn_callbacks ccb = {.on_frame = rpc_on_frame, .on_bad_frame = rpc_on_bad_frame, .on_close = rpc_on_close,
                          .arg = s};
    s->cm = conn_mgr_new(base, cfg, &ccb, sizeof(client));
    if (s->eng == NULL || s->notify == NULL || s->cm == NULL || !msgpack_zone_init(&s->zone, 8192)) {
        snprintf(err, err_len, "out of memory");
        engine_free(s->eng);
        conn_mgr_free(s->cm);
        notify_free(s->notify);
        free(s);
        return NULL;
    }
    msgpack_sbuffer_init(&s->out);
    msgpack_packer_init(&s->pk, &s->out, msgpack_sbuffer_write);
    s->pump_ev = event_new(base, -1, 0, core_pump_cb, s);
    s->cold_again_ev = event_new(base, -1, 0, cold_again_cb, s);
    s->tick_ev = event_new(base, -1, EV_PERSIST, core_tick_cb, s);
    struct timeval tick = {0, EXPIRY_TICK_MS * 1000};
    event_add(s->tick_ev, &tick);
    struct timeval dl = {cfg->default_deadline_ms / 1000, (cfg->default_deadline_ms % 1000) * 1000};
    s->deadline_tv_default = event_base_init_common_timeout(base, &dl);
    if (cfg->peers[0] != '\0') {
        ring_node nodes[RING_NODES_MAX];
        size_t n = 0;
        if (ring_parse_peers(cfg->peers, nodes, RING_NODES_MAX, &n, err, err_len) != 0)
            return NULL;
        s->ring = ring_new(nodes, n, RING_VNODES_DEFAULT);
        s->peers = peer_pool_new(base, cfg->node, &s->keyring);
        int self = s->ring ? ring_find(s->ring, cfg->node) : -1;
        if (s->ring == NULL || s->peers == NULL || self < 0) {
            snprintf(err, err_len, self < 0 && s->ring ? "peers must name this node" : "out of memory");
            return NULL;
        }
        s->self = (uint32_t)self;
        /* Every stored multi-line order is a part here (engine.h "Parts"). */
        engine_set_parts_mode(s->eng, true);
        s->parts_mode = true;
    }
    return s;
}

bool server_sharded(const server *s)
{
    return s->ring != NULL;
}

engine *server_engine(server *s)
{
    return s->eng;
}

/* The store as the core's sink (core.h). */
static bool sink_up(void *st) { return store_up(st); }
static bool sink_can_commit(void *st) { return store_can_commit(st); }
static int sink_commit(void *st, eng_batch *b) { return store_commit(st, b); }
static void sink_resolve(void *st, eng_batch *b) { store_resolve(st, b); }

void server_set_store(server *s, store *st)
{
    s->st = st;
    core_set_sink(s, &(core_sink){sink_up, sink_can_commit, sink_commit, sink_resolve, st});
    if (s->ring != NULL)
        route_coordinator_start(s);
}

int server_listen(server *s, char *err, size_t err_len)
{
    if (conn_mgr_listen(s->cm, err, err_len) != 0)
        return -1;
    s->listening = true;
    return 0;
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *s = arg;
    eng_stats es;
    engine_stats_get(s->eng, &es);
    if (es.queued != 0 || es.batches_in_flight != 0 || check_active(s) != 0)
        return;
    /* Quiet: nothing of ours is in flight. Close each connection once its
     * replies are flushed; a request read meanwhile is answered (writes
     * with a retryable 'unavailable') before its connection goes. */
    if (conn_mgr_drain_idle(s->cm) == 0)
        event_base_loopexit(s->base, NULL);
}

void server_drain(server *s, unsigned drain_ms)
{
    if (s->draining)
        return;
    s->draining = true;
    if (s->supsync)
        supsync_stop(s->supsync); /* new figures would keep the engine from going quiet */
    if (s->purch)
        purchase_stop(s->purch);  /* no new claims; calls on the wire end normally */
    conn_mgr_stop_accepting(s->cm);
    /* Poll for quiet every 20 ms; leave at drain_ms whatever remains. */
    s->drain_ev = event_new(s->base, -1, EV_PERSIST, drain_cb, s);
    struct timeval tv = {0, 20000};
    event_add(s->drain_ev, &tv);
    struct timeval lim = {drain_ms / 1000, (drain_ms % 1000) * 1000};
    event_base_loopexit(s->base, &lim);
}

static void supplier_kick(void *arg)
{
    core_pump_schedule(arg);
}

static void supplier_poke(const char *sku, void *arg)
{
    server *s = arg;
    supsync_poke_sku(s->supsync, sku);
}

/* One client (one app key, one token bucket) for the sync and the
 * purchase worker alike, as 1688 limits the app, not the caller. */
static supplier_client *supplier_client_from_cfg(server *s, char *err, size_t err_len)
{
    const stockd_config *cfg = s->cfg;
    supplier_client_config cc;
    supplier_client_config_defaults(&cc);
    cc.base_url = cfg->supplier_url;
    cc.app_key = cfg->supplier_app_key;
    cc.app_secret = cfg->supplier_app_secret;
    cc.access_token = cfg->supplier_token;
    cc.timeout_ms = cfg->supplier_timeout_ms;
    if (cc.connect_timeout_ms > cc.timeout_ms)
        cc.connect_timeout_ms = cc.timeout_ms;
    cc.rate_per_s = cfg->supplier_rate_per_s;
    uint32_t slots = cfg->supplier_concurrency + cfg->supplier_purchase_concurrency;
    cc.max_in_flight = slots < SUPPLIER_IN_FLIGHT_MAX ? slots : SUPPLIER_IN_FLIGHT_MAX;
    /* A failed sync round is simply repeated next period: retries of one
     * round must not run into the next one. */
    if (cc.backoff_max_ms > cfg->supplier_sync_ms)
        cc.backoff_max_ms = cfg->supplier_sync_ms;
    if (cc.backoff_base_ms > cc.backoff_max_ms)
        cc.backoff_base_ms = cc.backoff_max_ms;
    char e[256];
    supplier_client *cli = supplier_client_new(s->base, &cc, e, sizeof e);
    if (cli == NULL)
        snprintf(err, err_len, "supplier client: %s", e);
    return cli;
}

int server_supplier_start(server *s, char *err, size_t err_len)
{
    if (s->cfg->supplier_url[0] == '\0')
        return 0;
    s->supc = supplier_client_from_cfg(s, err, err_len);
    if (s->supc == NULL)
        return -1;
    s->supsync = supsync_new(s->base, s->cfg, s->eng, s->supc, supplier_kick, s, err, err_len);
    if (s->supsync == NULL)
        return -1;
    purchase_hooks hooks = {.kick = supplier_kick, .poke_sku = supplier_poke, .arg = s};
    s->purch = purchase_new(s->base, s->cfg, s->eng, s->supc, &hooks, err, err_len);
    if (s->purch == NULL)
        return -1;
    char ms[16], pc[16];
    snprintf(ms, sizeof(ms), "%u", s->cfg->supplier_sync_ms);
    snprintf(pc, sizeof(pc), "%u", s->cfg->supplier_purchase_concurrency);
    /* no URL: it may carry credentials */
    LOG_I("supplier sync and purchases on", "sync_ms", ms, "purchase_concurrency", pc);
    return 0;
}

store *server_store(server *s)
{
    return s->st;
}

supplier_sync *server_supsync(server *s)
{
    return s->supsync;
}

void server_free(server *s)
{
    if (s == NULL)
        return;
    /* The client first: it answers every call still pending (the sync
     * and the worker ignore answers once stopped), then the users. */
    if (s->supsync)
        supsync_stop(s->supsync);
    if (s->purch)
        purchase_stop(s->purch);
    check_shutdown(s);            /* before the client: its answers only free contexts */
    testclock_shutdown(s);        /* a call still waiting is answered while its conn lives */
    if (s->supc)
        supplier_client_free(s->supc);
    purchase_free(s->purch);      /* unclaims its jobs: before the engine */
    supsync_free(s->supsync);
    notify_free(s->notify);
    cache_free(s->cache);         /* before the engine: pending SETs fail now */
    bloom_free(s->bloom);
    cold_free_all(s);
    orderload_free_all(s);
    if (s->cart != NULL)
        cart_free(s->cart);       /* before the pool and the store (cart.h) */
    peer_pool_free(s->peers);     /* forwarded calls fail now: their conns are still here */
    ring_free(s->ring);
    for (size_t i = 0; i < s->n_forget; i++)
        free(s->forget[i]);
    free(s->forget);
    conn_mgr_free(s->cm);
    if (s->pump_ev)
        event_free(s->pump_ev);
    if (s->cold_again_ev)
        event_free(s->cold_again_ev);
    if (s->tick_ev)
        event_free(s->tick_ev);
    if (s->drain_ev)
        event_free(s->drain_ev);
    while (s->free_reqs) {
        req *r = s->free_reqs;
        s->free_reqs = r->next_free;
        free(r);
    }
    engine_free(s->eng);
    msgpack_zone_destroy(&s->zone);
    msgpack_sbuffer_destroy(&s->out);
    free(s);
}

/* ------------------------------------------------------------ operators */

void server_reload(server *s)
{
    const stockd_config *cfg = s->cfg;
    eng_limits lim;
    core_limits_from_cfg(cfg, &lim);
    engine_set_limits(s->eng, &lim);
    /* libevent keeps a few common-timeout queues; a new default deadline
     * gets its own, and requests already queued keep their timers. */
    struct timeval dl = {cfg->default_deadline_ms / 1000, (cfg->default_deadline_ms % 1000) * 1000};
    s->deadline_tv_default = event_base_init_common_timeout(s->base, &dl);
    /* Connections read max_inflight_per_conn and max_output_bytes on each
     * check, so paused ones may resume now. */
    conn_mgr_reload(s->cm);
    /* New secrets apply to the next handshake; proven connections stay. */
    peer_keyring_set(&s->keyring, cfg->cluster_secret, cfg->cluster_secret_alt);
    route_ring_reload(s);
    s->reloads++;
}

/* Descriptors open now (the entries of /proc/self/fd, less the one the
 * count itself opens). */
static uint64_t open_files(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

static void trust_fill(const char *id, const eng_trust *t, void *arg)
{
    stats_snapshot *out = arg;
    if (out->n_trust >= STATS_TRUST_MAX)
        return;
    stats_trust *e = &out->trust[out->n_trust++];
    snprintf(e->supplier_id, sizeof e->supplier_id, "%s", id);
    e->effective = eng_trust_effective(t);
}

void server_stats_get(server *s, stats_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    out->node = s->cfg->node;
    out->uptime_ms = clock_real_wall_ms() - s->started_ms;
    out->listening = s->listening;
    out->draining = s->draining;
    out->store_up = core_store_up(s);
    conn_mgr_stats_get(s->cm, &out->conns);
    out->open_files = open_files();
    struct rlimit rl;
    out->open_files_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
    out->notifications = s->notifications;
    out->outcome_unknown = s->outcome_unknown;
    out->reloads = s->reloads;
    out->n_methods = M_COUNT;
    out->n_results = RES_COUNT;
    for (int r = 0; r < RES_COUNT; r++)
        out->result_names[r] = rpc_result_name(r);
    for (int m = 0; m < M_COUNT; m++) {
        out->methods[m].name = rpc_method_name((enum method)m);
        memcpy(out->methods[m].results, s->results[m], sizeof(s->results[m]));
        out->methods[m].latency_us = &s->latency_us[m];
    }
    out->batch_ops = &s->batch_ops;
    out->commit_us = &s->commit_us;
    out->queue_per_sku_max = s->cfg->queue_per_sku_max;
    out->queue_total_max = s->cfg->queue_total_max;
    engine_stats_get(s->eng, &out->engine);
    if (s->st)
        store_stats_get(s->st, &out->store);
    out->preload_skus = s->cfg->preload_skus;
    out->cache_ttl_s = s->cfg->cache_ttl_s;
    out->has_bloom = s->bloom != NULL;
    if (s->bloom)
        bloom_stats_get(s->bloom, &out->bloom);
    out->has_cache = s->cache != NULL;
    if (s->cache)
        cache_stats_get(s->cache, &out->cache);
    out->cold_loads = s->cold_loads;
    out->cold_waits = s->cold_waits;
    out->cold_loaded = s->cold_loaded;
    out->cold_missing = s->cold_missing;
    out->cold_failed = s->cold_failed;
    out->cold_in_flight = s->n_cold;
    out->order_retention_ms = orderload_enabled(s) ? s->cfg->order_retention_ms : 0;
    out->order_reads = s->order_reads;
    out->order_reads_failed = s->order_reads_failed;
    out->order_key_refusals = s->order_key_refusals;
    out->order_reads_in_flight = s->n_order_waits;
    out->checks_started = s->checks_started;
    out->checks_passed = s->checks_passed;
    out->checks_refused = s->checks_refused;
    out->checks_unavailable = s->checks_unavailable;
    out->checks_unknown = s->checks_unknown;
    out->check_previews = s->check_previews;
    out->check_waits = s->check_waits;
    out->checks_alive = s->checks_alive;
    out->sharded = s->ring != NULL;
    out->nodes = s->ring ? (uint32_t)ring_nodes(s->ring, &(const ring_node *){NULL}) : 1;
    out->ring_version = s->ring ? ring_version(s->ring) : 0;
    out->takeovers_pending = s->n_prefetch;
    out->forget_pending = (uint32_t)s->n_forget;
    out->ring_settled = s->n_prefetch == 0 && s->n_forget == 0;
    out->forwarded = s->fwd_calls;
    out->forward_failed = s->fwd_failed;
    out->not_owner = s->not_owner;
    out->fence_drops = s->fence_drops;
    out->order_lookups = s->order_lookups;
    out->ring_changes = s->ring_changes;
    if (s->peers)
        peer_stats_get(s->peers, &out->peers);
    out->peer_auth_ok = s->peer_auth_ok;
    out->peer_auth_failed = s->peer_auth_failed + out->peers.auth_failures;
    out->peer_only_refused = s->peer_only_refused;
    out->supplier_enabled = s->supsync != NULL;
    if (s->supsync)
        supsync_stats_get(s->supsync, &out->sync);
    if (s->purch)
        purchase_stats_get(s->purch, &out->purchase);
    if (s->supc)
        supplier_client_stats(s->supc, &out->client);
    engine_each_supplier(s->eng, trust_fill, out);
    notify_stats_get(s->notify, &out->notify);
    out->alerts_total = s->alerts_total;
    out->alerts_no_cache = s->alerts_no_cache;
    out->coordinator = s->cart != NULL;
    if (s->cart != NULL)
        cart_stats_get(s->cart, &out->cart);
    out->lines_reserves = s->lines_reserves;
    out->lines_total = s->lines_total;
    out->lines_coordinated = s->lines_coordinated;
}
