/* server.h — the msgpack-rpc front: listener, connections, request
 * decoding and validation, dispatch to the engine, replies, and the pump
 * that hands batches to the store.
 *
 * Wiring (main.c): server_new() creates the engine; the store is opened
 * with server_store_callbacks() and attached with server_set_store(); then
 * state is loaded into server_engine() and server_listen() starts serving.
 *
 * Connection states (one per connection, memcached-style):
 *   open     reading frames and answering;
 *   paused   reading stopped: too many requests in flight on it, or its
 *            output buffer is over max_output_bytes (a slow reader);
 *   closing  a fatal protocol error was answered; close once flushed;
 *   dead     the socket is gone but requests are still in the engine; the
 *            struct is freed when the last one is answered (replies are
 *            dropped). Nothing is ever freed from inside a library callback
 *            that still uses it.
 */
#ifndef STOCKD_SERVER_H
#define STOCKD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockd/config.h"
#include "stockd/engine.h"
#include "stockd/bloom.h"
#include "stockd/cache.h"
#include "stockd/store.h"

struct event_base;
typedef struct server server;

server *server_new(struct event_base *base, const stockd_config *cfg, char *err, size_t err_len);
void server_free(server *s);
engine *server_engine(server *s);
void server_store_callbacks(server *s, store_callbacks *out);
void server_set_store(server *s, store *st);
/* After the store is set and state is loaded: builds the Bloom filter of
 * known SKUs from MariaDB (blocking, startup only) and starts the Redis
 * cache (connecting in the background). 0 or -1 with err. */
int server_read_path_init(server *s, char *err, size_t err_len);
/* Binds cfg->listen_host:listen_port and starts accepting. 0 or -1. */
int server_listen(server *s, char *err, size_t err_len);
/* Stops accepting, lets in-flight work finish (bounded by drain_ms), then
 * leaves the loop. */
void server_drain(server *s, unsigned drain_ms);
/* Re-applies the limits that can change live from the configuration the
 * server was created with (the caller updated it in place, e.g. on SIGHUP):
 * engine queue and batch limits, per-connection limits, the default
 * deadline. Listen address, database and node need a restart. */
void server_reload(server *s);
/* With --supplier-url: creates the one supplier client (supplier.h) and on
 * it the snapshot sync (supplier_sync.h) and the purchase worker
 * (purchase.h); supplier_global_init() must have run. Without it: 0,
 * nothing. 0 or -1 with err. */
int server_supplier_start(server *s, char *err, size_t err_len);
/* The supplier sync (http.c: POST /1688/push), NULL without --supplier-url.
 * With --supplier-url server_supplier_start() also starts the purchase
 * worker (purchase.h) on the same supplier client. */
struct supplier_sync;
struct supplier_sync *server_supsync(server *s);
/* The store (support queries of the console, console.h); NULL before
 * server_set_store(). */
store *server_store(server *s);

/* Support alerts kept in memory for alerts.list (notify.h: the newest
 * NOTIFY_ALERTS_MAX; MariaDB keeps them all). Committed alerts are added by
 * the server itself; at startup main.c feeds MariaDB's newest ones, oldest
 * first, through server_alert_load(). */
void server_alert_load(server *s, const char *kind, const char *sku, const char *order_id,
                       const char *reason, int64_t at_ms);


/* True when started with --peers (a cluster). */
bool server_sharded(const server *s);
/* Sharded startup, instead of loading state: every load becomes a takeover
 * (epoch bump + rows + orders), and the SKUs this node owns are queued for
 * takeover in the background. Blocking scan of SKU names; 0 or -1 with err. */
int server_take_over_owned(server *s, char *err, size_t err_len);

/* ---- figures for operators: `stats` and /metrics (stats.h) ---- */
struct stats_snapshot;
/* Fills out once; its hist pointers stay valid until server_free(). */
void server_stats_get(server *s, struct stats_snapshot *out);

#endif
