/* http.h — the operators' HTTP listener (--http HOST:PORT), on the same
 * event_base as everything else (httpd.h):
 *
 *   GET /metrics  Prometheus text format 0.0.4: the figures of `stats`
 *                 (server_metrics_get) — request counts by method and
 *                 result, latency histograms by method, queue depths,
 *                 batch sizes, commit latency, MariaDB connection state.
 *   GET /healthz  200 "ok": the loop is alive.
 *   GET /readyz   200 "ready" when state is loaded, the client port is
 *                 listening, MariaDB is up and the server is not draining;
 *                 else 503 with the reasons, one per line.
 *   POST /1688/push  the 1688 message push (supsync_push, via the server's
 *                 server_supsync()): its status (200, 400, 401, 413) and a
 *                 one-line text; 503 when the supplier sync is off.
 *   /console/...  the support console (console.h), whose answers may wait
 *                 (httpd_defer) for MariaDB or an RPC call, each bounded.
 *
 * GET and HEAD elsewhere (POST there is 405); other paths are 404.
 * Those are answered at once from memory: nothing there waits on a
 * backend. The server underneath (httpd.h) caps connections at
 * --http-max-connections, closes one that has not sent a whole request
 * within 10 s or idles 30 s between requests, and caps heads at 8 KiB and
 * bodies at 64 KiB (only the push reads one).
 * Errors: http_new returns NULL with a message in err.
 */
#ifndef STOCKD_HTTP_H
#define STOCKD_HTTP_H

#include <stddef.h>

#include "stockd/server.h"

struct event_base;
typedef struct http_srv http_srv;

http_srv *http_new(struct event_base *base, server *srv, const stockd_config *cfg,
                   char *err, size_t err_len);
/* The limits that may change live (SIGHUP). NULL is fine. */
void http_reload(http_srv *h, const stockd_config *cfg);
/* Stops listening and closes open HTTP connections. NULL is fine. */
void http_free(http_srv *h);

#endif
