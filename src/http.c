/* http.c — /metrics, /healthz, /readyz and POST /1688/push over httpd.h
 * (see http.h).
 *
 * Every figure comes from one snapshot (stats.h), the one `stats` renders,
 * so the two agree. Nothing is exported that
 * stockd does not measure yet (supplier calls, snapshot age, alerts and
 * oversell-risk events appear when those modules exist).
 */
#include "stockd/http.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "stockd/console.h"
#include "stockd/hist.h"
#include "stockd/httpd.h"
#include "stockd/log.h"
#include "stockd/stats.h"
#include "stockd/supplier_sync.h"

#define HTTP_PUSH_BODY_MAX (64u << 10) /* supsync_push's limit; 413 above */

struct http_srv {
    httpd *httpd;
    server *srv;
    console *console;
};


/* ------------------------------------------------------------ handlers */

static void reply_buf(httpd_req *req, int code, const char *reason, struct evbuffer *b,
                      const char *ctype)
{
    size_t n = evbuffer_get_length(b);
    const void *p = n ? (const void *)evbuffer_pullup(b, -1) : (const void *)"";
    if (p == NULL) {
        httpd_respond(req, 500, "Internal Server Error", NULL, "out of memory\n", 14, NULL);
        return;
    }
    httpd_respond(req, code, reason, ctype, p, n, NULL);
}

static void reply_short(httpd_req *req, int code, const char *reason, const char *text,
                        const char *extra)
{
    char body[320];
    int n = snprintf(body, sizeof body, "%s\n", text);
    if (n < 0 || (size_t)n >= sizeof body)
        n = (int)sizeof body - 1;
    httpd_respond(req, code, reason, "text/plain; charset=utf-8", body, (size_t)n, extra);
}

/* /metrics and /readyz render one snapshot (stats.h) into a text buffer.
 * The snapshot is on the heap: it holds every figure, a few KiB. */
typedef void (*render_fn)(const stats_snapshot *m, struct evbuffer *b);

static void metrics_render(const stats_snapshot *m, struct evbuffer *b)
{
    stats_metrics(m, b);
}

static void reply_snapshot(httpd_req *req, http_srv *h, render_fn render, bool readyz)
{
    stats_snapshot *m = malloc(sizeof *m);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL || m == NULL) {
        if (b != NULL)
            evbuffer_free(b);
        free(m);
        reply_short(req, 500, "Internal Server Error", "out of memory", NULL);
        return;
    }
    server_stats_get(h->srv, m);
    m->has_http = true;
    httpd_stats_get(h->httpd, &m->http);
    render(m, b);
    free(m);
    if (!readyz) {
        reply_buf(req, 200, "OK", b, "text/plain; version=0.0.4; charset=utf-8");
    } else {
        bool ready = evbuffer_get_length(b) == 0;
        if (ready)
            evbuffer_add_printf(b, "ready\n");
        reply_buf(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", b,
                  "text/plain; charset=utf-8");
    }
    evbuffer_free(b);
}

/* POST /1688/push: a 1688 message push, judged by supsync_push(). */
static void on_push(httpd_req *req, http_srv *h)
{
    if (strcmp(httpd_method(req), "POST") != 0) {
        reply_short(req, 405, "Method Not Allowed", "POST only", "Allow: POST\r\n");
        return;
    }
    supplier_sync *ss = server_supsync(h->srv);  /* NULL: sync off */
    if (ss == NULL) {
        reply_short(req, 503, "Service Unavailable", "supplier sync off", NULL);
        return;
    }
    size_t len = 0;
    const char *body = httpd_body(req, &len);
    char msg[256];
    int code = supsync_push(ss, body, len, msg, sizeof(msg));
    reply_short(req, code, code == 200 ? "OK" : "Refused", msg, NULL);
}

static void on_request(void *arg, httpd_req *req)
{
    http_srv *h = arg;
    const char *path = httpd_path(req);
    const char *method = httpd_method(req);
    bool read = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (console_handle(h->console, req))
        return;
    if (strcmp(path, "/1688/push") == 0) {
        on_push(req, h);
    } else if (!read) {
        reply_short(req, 405, "Method Not Allowed", "GET or HEAD only", "Allow: GET, HEAD\r\n");
    } else if (strcmp(path, "/metrics") == 0) {
        reply_snapshot(req, h, metrics_render, false);
    } else if (strcmp(path, "/readyz") == 0) {
        reply_snapshot(req, h, stats_unready, true);
    } else if (strcmp(path, "/healthz") == 0) {
        reply_short(req, 200, "OK", "ok", NULL);
    } else {
        reply_short(req, 404, "Not Found",
                    "not found: /metrics, /healthz, /readyz, /console/, POST /1688/push", NULL);
    }
}

/* ------------------------------------------------------------ lifecycle */

http_srv *http_new(struct event_base *base, server *srv, const stockd_config *cfg,
                   char *err, size_t err_len)
{
    assert(base && srv && cfg && cfg->http_port > 0 && cfg->http_port <= 65535);
    http_srv *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, err_len, "http: out of memory");
        return NULL;
    }
    h->srv = srv;
    h->console = console_new(base, srv, cfg);
    if (h->console == NULL) {
        snprintf(err, err_len, "http: out of memory (console)");
        free(h);
        return NULL;
    }
    httpd_config hc = {
        .host = cfg->http_host,
        .port = cfg->http_port,
        .max_conns = cfg->http_max_connections,
        .max_body = HTTP_PUSH_BODY_MAX,
        .handler = on_request,
        .arg = h,
    };
    h->httpd = httpd_new(base, &hc, err, err_len);
    if (h->httpd == NULL) {
        console_free(h->console);
        free(h);
        return NULL;
    }
    char p[16], mc[16];
    snprintf(p, sizeof(p), "%d", cfg->http_port);
    snprintf(mc, sizeof(mc), "%u", cfg->http_max_connections);
    LOG_I("http listening", "host", cfg->http_host, "port", p, "max_connections", mc);
    return h;
}

void http_reload(http_srv *h, const stockd_config *cfg)
{
    if (h != NULL)
        httpd_set_max_conns(h->httpd, cfg->http_max_connections);
}

void http_free(http_srv *h)
{
    if (h == NULL)
        return;
    console_free(h->console);  /* answers its deferred requests first */
    httpd_free(h->httpd);
    free(h);
}
