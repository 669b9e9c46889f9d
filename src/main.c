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

#include "stockd/config.h"
#include "stockd/log.h"
#include "stockd/server.h"
#include "stockd/store.h"

extern char **environ;

#define DRAIN_MS 4000

/* Raises the open-file limit as far as allowed, so max_connections can be
 * met; says what it got when that is less than needed. */
static void raise_nofile(uint32_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)want + 64;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < need) {
        char got[32];
        snprintf(got, sizeof(got), "%llu", (unsigned long long)rl.rlim_cur);
        LOG_W("open-file limit below max_connections", "nofile", got);
    }
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    server *srv = arg;
    LOG_I("signal: draining", "signal", sig == SIGTERM ? "TERM" : "INT");
    server_drain(srv, DRAIN_MS);
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
    raise_nofile(cfg.max_connections);
    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, "stockd: mysql_library_init failed\n");
        return 1;
    }
    struct event_base *base = event_base_new();
    if (base == NULL) {
        fprintf(stderr, "stockd: event_base_new failed\n");
        return 1;
    }
    server *srv = server_new(base, &cfg, err, sizeof(err));
    if (srv == NULL) {
        LOG_E("startup failed", "error", err);
        return 1;
    }
    store_callbacks cb;
    server_store_callbacks(srv, &cb);
    store *st = store_open(base, &cfg, &cb, err, sizeof(err));
    if (st == NULL) {
        LOG_E("store open failed", "error", err);
        return 1;
    }
    server_set_store(srv, st);
    if (store_load_all(st, server_engine(srv), err, sizeof(err)) != 0) {
        LOG_E("state load failed", "error", err);
        return 1;
    }
    if (server_listen(srv, err, sizeof(err)) != 0) {
        LOG_E("listen failed", "error", err);
        return 1;
    }
    struct event *sigterm = evsignal_new(base, SIGTERM, signal_cb, srv);
    struct event *sigint = evsignal_new(base, SIGINT, signal_cb, srv);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    char port[16];
    snprintf(port, sizeof(port), "%d", cfg.listen_port);
    LOG_I("stockd ready", "node", cfg.node, "listen", cfg.listen_host, "port", port,
          "version", STOCKD_VERSION);
    event_base_dispatch(base);
    LOG_I("stockd stopped", "node", cfg.node);
    event_free(sigterm);
    event_free(sigint);
    server_free(srv);
    store_free(st);
    event_base_free(base);
    mysql_library_end();
    return 0;
}
