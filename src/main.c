/* main.c — wiring: configuration, the loop, store, engine, server, signals.
 * The only place with process-wide setup (signals, rlimits, library init). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>
#include <mysql.h>

#include "stockd/clock.h"
#include "stockd/config.h"
#include "stockd/conn.h"
#include "stockd/http.h"
#include "stockd/log.h"
#include "stockd/notify.h"
#include "stockd/server.h"
#include "stockd/store.h"
#include "stockd/supplier.h"

extern char **environ;

#define DRAIN_MS 4000

#define FD_RESERVE 64   /* stdio, the loop, listeners, signal pipe, logs, slack */

/* Every descriptor stockd may hold at once, by what holds it. */
static uint64_t fd_budget(const stockd_config *c, char *parts, size_t parts_len)
{
    uint64_t http = c->http_port > 0 ? c->http_max_connections : 0;
    uint64_t db = (uint64_t)c->db_connections + 2;      /* writers, reader, startup */
    uint64_t redis = 2;
    uint64_t curl = c->supplier_url[0] ? (uint64_t)c->supplier_concurrency +
                                             c->supplier_purchase_concurrency + 4 : 0;
    uint64_t peers = 0;
    for (const char *p = c->peers; *p; p++)
        peers += *p == ',';
    peers += c->peers[0] ? 1 : 0;
    snprintf(parts, parts_len,
             "max-connections %u + http-max-connections %llu + MariaDB %llu + Redis %llu + "
             "1688 API %llu + peers %llu + reserve %d",
             c->max_connections, (unsigned long long)http, (unsigned long long)db,
             (unsigned long long)redis, (unsigned long long)curl, (unsigned long long)peers,
             FD_RESERVE);
    return (uint64_t)c->max_connections + http + db + redis + curl + peers + FD_RESERVE;
}

/* Raises the soft open-file limit to what the configuration may need; when
 * the hard limit does not allow it, refuses to start and says which number
 * to lower. 0 or -1 with err. */
static int fit_nofile(const stockd_config *c, char *err, size_t err_len)
{
    char parts[256];
    uint64_t need = fd_budget(c, parts, sizeof parts);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(err, err_len, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
            uint64_t room = need - c->max_connections;
            snprintf(err, err_len,
                     "open-file limit %llu (hard) is below the %llu descriptors this "
                     "configuration may need (%s): lower --max-connections to at most %lld, "
                     "or raise the limit (ulimit -n, systemd LimitNOFILE=)",
                     (unsigned long long)rl.rlim_max, (unsigned long long)need, parts,
                     (long long)rl.rlim_max - (long long)room);
            return -1;
        }
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            snprintf(err, err_len, "setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)need,
                     strerror(errno));
            return -1;
        }
    }
    char n[24], l[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)need);
    snprintf(l, sizeof l, "%llu", (unsigned long long)rl.rlim_cur);
    LOG_D("descriptor budget", "need", n, "limit", l, "parts", parts);
    return 0;
}

/* What SIGHUP needs: the live configuration (server.c reads it through its
 * pointer) and the sources it came from. */
typedef struct reload_ctx {
    server *srv;
    http_srv *http;
    stockd_config *cfg;
    int argc;
    char **argv;
} reload_ctx;

/* Settings that need a restart: a reload that changes one says so. */
static void reload_note_fixed(const stockd_config *cur, const stockd_config *next)
{
    if (strcmp(cur->listen_host, next->listen_host) != 0 || cur->listen_port != next->listen_port)
        LOG_W("reload: listen changes at restart only");
    if (strcmp(cur->db_url, next->db_url) != 0 || cur->db_connections != next->db_connections)
        LOG_W("reload: db settings change at restart only");
    if (strcmp(cur->node, next->node) != 0)
        LOG_W("reload: node changes at restart only");
    if (strcmp(cur->http_host, next->http_host) != 0 || cur->http_port != next->http_port)
        LOG_W("reload: http changes at restart only");
}

/* SIGHUP: re-reads the same sources (file, environment, flags); on any
 * error the running configuration stays as it was. */
static void reload_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    reload_ctx *rc = arg;
    stockd_config next;
    char err[512];
    if (config_load(&next, rc->argc, rc->argv, environ, err, sizeof(err)) != 0) {
        LOG_E("reload failed: configuration kept", "error", err);
        return;
    }
    stockd_config *c = rc->cfg;
    reload_note_fixed(c, &next);
    memcpy(c->log_level, next.log_level, sizeof(c->log_level));
    memcpy(c->admin_token, next.admin_token, sizeof(c->admin_token));
    memcpy(c->cluster_secret, next.cluster_secret, sizeof(c->cluster_secret));
    memcpy(c->cluster_secret_alt, next.cluster_secret_alt, sizeof(c->cluster_secret_alt));
    /* The console reads these at each use (console.h). */
    memcpy(c->console_token, next.console_token, sizeof(c->console_token));
    c->console_public_read = next.console_public_read;
    c->console_session_ttl_s = next.console_session_ttl_s;
    c->console_max_sessions = next.console_max_sessions;
    c->console_secure_cookie = next.console_secure_cookie;
    c->max_output_total_bytes = next.max_output_total_bytes;
    c->http_max_connections = next.http_max_connections;
    c->max_message_bytes = next.max_message_bytes;
    c->max_depth = next.max_depth;
    c->max_inflight_per_conn = next.max_inflight_per_conn;
    c->max_connections = next.max_connections;
    c->idle_timeout_ms = next.idle_timeout_ms;
    c->max_output_bytes = next.max_output_bytes;
    c->queue_per_sku_max = next.queue_per_sku_max;
    c->queue_total_max = next.queue_total_max;
    c->batch_ops_max = next.batch_ops_max;
    c->batch_sku_ops_max = next.batch_sku_ops_max;
    c->expire_per_tick_max = next.expire_per_tick_max;
    c->default_deadline_ms = next.default_deadline_ms;
    memcpy(c->peers, next.peers, sizeof(c->peers));  /* applied by server_reload */
    log_set_level_name(c->log_level);  /* validated by config_load */
    server_reload(rc->srv);
    http_reload(rc->http, c);
    char q[16];
    snprintf(q, sizeof(q), "%u", c->queue_total_max);
    LOG_I("configuration reloaded", "log_level", c->log_level, "queue_total_max", q);
}

/* MariaDB's newest support alerts, oldest first, into alerts.list's ring. */
static void load_alert(const store_alert *a, void *arg)
{
    server_alert_load(arg, a->kind, a->sku, a->order_id, a->reason, a->at_ms);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    server *srv = arg;
    LOG_I("signal: draining", "signal", sig == SIGTERM ? "TERM" : "INT");
    server_drain(srv, DRAIN_MS);
}

/* The loop with its priorities (conn.h): everything at CONN_PRIO_NORMAL,
 * connections that keep using whole slices at CONN_PRIO_SLOW, where the loop
 * stops every CONN_SLOW_DISPATCH_US to look for new events. */
static struct event_base *new_loop(void)
{
    struct event_config *ecfg = event_config_new();
    struct timeval slow_tv = {0, CONN_SLOW_DISPATCH_US};
    if (ecfg != NULL)
        event_config_set_max_dispatch_interval(ecfg, &slow_tv, -1, CONN_PRIO_SLOW);
    struct event_base *base = ecfg ? event_base_new_with_config(ecfg) : NULL;
    if (ecfg != NULL)
        event_config_free(ecfg);
    if (base != NULL && event_base_priority_init(base, CONN_PRIOS) != 0) {
        event_base_free(base);
        return NULL;
    }
    return base;
}

/* Builds the node in the order its parts need each other: the server (and
 * engine), the store, the state it loads, the read path, the listener, the
 * supplier side, HTTP. On failure logs why and returns -1; what was built is
 * left for the process exit to reclaim. */
static int start_node(struct event_base *base, const stockd_config *cfg, server **srv_out,
                      store **st_out, http_srv **http_out)
{
    char err[512];
    if (cfg->test_clock) {
        /* Before anything reads the wall clock: rows, rounds and holds all
         * count from the same manual time (clock.h). */
        clock_manual_start();
        LOG_W("test clock on: the wall clock moves only through test.clock (never in "
              "production)");
    }
    server *srv = *srv_out = server_new(base, cfg, err, sizeof(err));
    if (srv == NULL) {
        LOG_E("startup failed", "error", err);
        return -1;
    }
    store_callbacks cb;
    server_store_callbacks(srv, &cb);
    store *st = *st_out = store_open(base, cfg, &cb, err, sizeof(err));
    if (st == NULL) {
        LOG_E("store open failed", "error", err);
        return -1;
    }
    server_set_store(srv, st);
    if (server_sharded(srv) ? server_take_over_owned(srv, err, sizeof(err))
                            : store_load_state(st, server_engine(srv), cfg->preload_skus,
                                               cfg->order_retention_ms > 0
                                                   ? clock_wall_ms() - cfg->order_retention_ms
                                                   : 0,
                                               err, sizeof(err))) {
        LOG_E("state load failed", "error", err);
        return -1;
    }
    if (store_recent_alerts(st, NOTIFY_ALERTS_MAX, load_alert, srv, err, sizeof(err)) != 0) {
        LOG_E("state load failed", "error", err);
        return -1;
    }
    if (server_read_path_init(srv, err, sizeof(err)) != 0) {
        LOG_E("read path setup failed", "error", err);
        return -1;
    }
    if (server_listen(srv, err, sizeof(err)) != 0) {
        LOG_E("listen failed", "error", err);
        return -1;
    }
    if (cfg->supplier_url[0] != '\0' && supplier_global_init() != 0) {
        LOG_E("supplier setup failed", "error", "curl_global_init");
        return -1;
    }
    if (server_supplier_start(srv, err, sizeof(err)) != 0) {
        LOG_E("supplier setup failed", "error", err);
        return -1;
    }
    if (cfg->http_port > 0 &&
        (*http_out = http_new(base, srv, cfg, err, sizeof(err))) == NULL) {
        LOG_E("http listen failed", "error", err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    stockd_config cfg;
    char err[512];
    if (config_load(&cfg, argc, argv, environ, err, sizeof(err)) != 0) {
        fprintf(stderr, "stockd: %s\n(see stockd --help)\n", err);
        return 2;
    }
    if (cfg.help) {
        fputs(config_usage(), stdout);
        return 0;
    }
    if (cfg.version) {
        printf("stockd %s\n", STOCKD_VERSION);
        return 0;
    }
    if (cfg.check_only) {
        printf("configuration ok\n");
        return 0;
    }
    if (log_set_level_name(cfg.log_level) != 0) {
        fprintf(stderr, "stockd: unknown log level %s\n", cfg.log_level);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (fit_nofile(&cfg, err, sizeof(err)) != 0) {
        LOG_E("startup refused", "error", err);
        fprintf(stderr, "stockd: %s\n", err);
        return 2;
    }
    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, "stockd: mysql_library_init failed\n");
        return 1;
    }
    struct event_base *base = new_loop();
    if (base == NULL) {
        fprintf(stderr, "stockd: event_base_new failed\n");
        return 1;
    }
    /* Summaries of repeated lines when their second ends, even when the
     * loop then goes quiet. */
    if (log_attach_loop(base) != 0)
        LOG_W("log summaries wait for the next line (out of memory)");
    server *srv = NULL;
    store *st = NULL;
    http_srv *http = NULL;
    if (start_node(base, &cfg, &srv, &st, &http) != 0)
        return 1;
    reload_ctx rctx = {srv, http, &cfg, argc, argv};
    struct event *sigterm = evsignal_new(base, SIGTERM, signal_cb, srv);
    struct event *sigint = evsignal_new(base, SIGINT, signal_cb, srv);
    struct event *sighup = evsignal_new(base, SIGHUP, reload_cb, &rctx);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    event_add(sighup, NULL);
    char port[16];
    snprintf(port, sizeof(port), "%d", cfg.listen_port);
    LOG_I("stockd ready", "node", cfg.node, "listen", cfg.listen_host, "port", port,
          "version", STOCKD_VERSION);
    event_base_dispatch(base);
    LOG_I("stockd stopped", "node", cfg.node);
    event_free(sigterm);
    event_free(sigint);
    event_free(sighup);
    http_free(http);
    server_free(srv);
    store_free(st);
    if (cfg.supplier_url[0] != '\0')
        supplier_global_cleanup();
    log_detach_loop();
    event_base_free(base);
    mysql_library_end();
    return 0;
}
