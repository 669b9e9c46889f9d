/* http.c — /metrics, /healthz, /readyz and POST /1688/push over httpd.h
 * (see http.h).
 *
 * Every figure comes from server_metrics_get(), the same counters and
 * histograms `stats` reads, so the two agree. Nothing is exported that
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

#include "stockd/hist.h"
#include "stockd/httpd.h"
#include "stockd/log.h"
#include "stockd/supplier_sync.h"

#define HTTP_PUSH_BODY_MAX (64u << 10) /* supsync_push's limit; 413 above */

struct http_srv {
    httpd *httpd;
    server *srv;
};

/* Request latency bucket edges in microseconds (exported in seconds). Each
 * is a hist edge, so the cumulative counts are exact. */
static const uint64_t lat_edges_us[] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
/* Batch size edges: an integer v <= le is v < le + 1, and le + 1 must be a
 * hist edge (exact below 100, multiples of 10 up to 999, ...). */
static const uint64_t ops_edges[] = {1, 2, 5, 10, 20, 50, 99, 199, 499, 999, 1999, 4999};

/* ------------------------------------------------------------ exposition */

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u(struct evbuffer *b, const char *name, const char *labels, uint64_t v)
{
    evbuffer_add_printf(b, "%s%s%s%s %" PRIu64 "\n", name, labels ? "{" : "",
                        labels ? labels : "", labels ? "}" : "", v);
}

static void sample_f(struct evbuffer *b, const char *name, const char *labels, double v)
{
    evbuffer_add_printf(b, "%s%s%s%s %.6f\n", name, labels ? "{" : "", labels ? labels : "",
                        labels ? "}" : "", v);
}

/* One histogram's samples. labels is "" or `key="v"`; scale divides the
 * recorded unit into the exported one (1e6: us -> s); edges are recorded
 * units, and values <= edge are counted as < edge + plus_one. */
static void hist_samples(struct evbuffer *b, const char *name, const char *labels,
                         const hist *h, const uint64_t *edges, size_t n, double scale,
                         uint64_t plus_one)
{
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i < n; i++) {
        evbuffer_add_printf(b, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
                            (double)edges[i] / scale,
                            hist_count_below(h, edges[i] + plus_one));
    }
    evbuffer_add_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep,
                        h->count);
    evbuffer_add_printf(b, "%s_sum%s%s%s %.6f\n", name, labels[0] ? "{" : "", labels,
                        labels[0] ? "}" : "", (double)h->sum / scale);
    evbuffer_add_printf(b, "%s_count%s%s%s %" PRIu64 "\n", name, labels[0] ? "{" : "", labels,
                        labels[0] ? "}" : "", h->count);
}

static uint64_t method_total(const server_metrics *m, uint32_t i)
{
    uint64_t t = 0;
    for (uint32_t r = 0; r < m->n_results; r++)
        t += m->methods[i].results[r];
    return t;
}

static void metrics_requests(struct evbuffer *b, const server_metrics *m)
{
    char lb[128];
    family(b, "stockd_requests_total", "counter",
           "Requests answered, by method and result (result ok or an error code).");
    for (uint32_t i = 0; i < m->n_methods; i++) {
        for (uint32_t r = 0; r < m->n_results; r++) {
            if (m->methods[i].results[r] == 0)
                continue;
            snprintf(lb, sizeof(lb), "method=\"%s\",result=\"%s\"", m->methods[i].name,
                     m->result_names[r]);
            sample_u(b, "stockd_requests_total", lb, m->methods[i].results[r]);
        }
    }
    family(b, "stockd_request_duration_seconds", "histogram",
           "From reading a request to queueing its answer, by method.");
    for (uint32_t i = 0; i < m->n_methods; i++) {
        if (method_total(m, i) == 0)
            continue;
        snprintf(lb, sizeof(lb), "method=\"%s\"", m->methods[i].name);
        hist_samples(b, "stockd_request_duration_seconds", lb, m->methods[i].latency_us,
                     lat_edges_us, sizeof(lat_edges_us) / sizeof(lat_edges_us[0]), 1e6, 0);
    }
}

static void metrics_conns(struct evbuffer *b, const server_metrics *m)
{
    family(b, "stockd_connections", "gauge", "Client connections open now.");
    sample_u(b, "stockd_connections", NULL, m->conns_current);
    family(b, "stockd_connections_accepted_total", "counter", "Client connections accepted.");
    sample_u(b, "stockd_connections_accepted_total", NULL, m->conns_total);
    family(b, "stockd_connections_refused_total", "counter",
           "Connections closed at accept: over max-connections, draining or out of memory.");
    sample_u(b, "stockd_connections_refused_total", NULL, m->conns_refused);
    family(b, "stockd_connections_closed_bad_input_total", "counter",
           "Connections closed for input the protocol cannot survive.");
    sample_u(b, "stockd_connections_closed_bad_input_total", NULL, m->conns_closed_bad);
    family(b, "stockd_notifications_ignored_total", "counter",
           "msgpack-rpc notifications received (no method takes them).");
    sample_u(b, "stockd_notifications_ignored_total", NULL, m->notifications);
    family(b, "stockd_connections_closed_total", "counter",
           "Client connections closed by stockd for a limit, by reason.");
    sample_u(b, "stockd_connections_closed_total", "reason=\"idle\"", m->conns_closed_idle);
    sample_u(b, "stockd_connections_closed_total", "reason=\"output_stalled\"",
             m->conns_closed_stalled);
    family(b, "stockd_output_unsent_bytes", "gauge",
           "Reply bytes queued for all client connections, not yet written.");
    sample_u(b, "stockd_output_unsent_bytes", NULL, m->output_bytes);
    family(b, "stockd_output_total_cap_reached_total", "counter",
           "Times the unsent output of all connections passed max-output-total-bytes.");
    sample_u(b, "stockd_output_total_cap_reached_total", NULL, m->output_paused);
    family(b, "stockd_accept_errors_total", "counter",
           "accept() failures on the client port (out of descriptors, mostly).");
    sample_u(b, "stockd_accept_errors_total", NULL, m->accept_errors);
    family(b, "stockd_open_files", "gauge", "Descriptors open in this process now.");
    sample_u(b, "stockd_open_files", NULL, m->open_files);
    family(b, "stockd_open_files_limit", "gauge", "RLIMIT_NOFILE (soft).");
    sample_u(b, "stockd_open_files_limit", NULL, m->open_files_limit);
}

static void metrics_http(struct evbuffer *b, const http_srv *h)
{
    httpd_stats st;
    httpd_stats_get(h->httpd, &st);
    family(b, "stockd_http_connections", "gauge", "Connections to the HTTP port open now.");
    sample_u(b, "stockd_http_connections", NULL, st.current);
    family(b, "stockd_http_connections_total", "counter",
           "HTTP connections by fate: accepted, refused at the cap, closed by a timeout.");
    sample_u(b, "stockd_http_connections_total", "fate=\"accepted\"", st.total);
    sample_u(b, "stockd_http_connections_total", "fate=\"refused\"", st.refused);
    sample_u(b, "stockd_http_connections_total", "fate=\"timed_out\"", st.timed_out);
    family(b, "stockd_http_requests_total", "counter", "HTTP requests by result.");
    sample_u(b, "stockd_http_requests_total", "result=\"handled\"", st.requests);
    sample_u(b, "stockd_http_requests_total", "result=\"refused\"", st.bad_requests);
}

static void metrics_engine(struct evbuffer *b, const server_metrics *m)
{
    const eng_stats *e = &m->engine;
    family(b, "stockd_queue_ops", "gauge", "Operations waiting in the per-SKU FIFOs now.");
    sample_u(b, "stockd_queue_ops", NULL, e->queued);
    family(b, "stockd_queue_sku_ops_max_seen", "gauge", "Longest per-SKU FIFO seen.");
    sample_u(b, "stockd_queue_sku_ops_max_seen", NULL, e->queued_max_sku);
    family(b, "stockd_queue_limit_ops", "gauge", "Configured queue limits.");
    sample_u(b, "stockd_queue_limit_ops", "scope=\"sku\"", m->queue_per_sku_max);
    sample_u(b, "stockd_queue_limit_ops", "scope=\"total\"", m->queue_total_max);
    family(b, "stockd_batches_total", "counter", "Batches handed to the store.");
    sample_u(b, "stockd_batches_total", NULL, e->batches);
    family(b, "stockd_batch_ops_total", "counter", "Operations in those batches.");
    sample_u(b, "stockd_batch_ops_total", NULL, e->batch_ops);
    family(b, "stockd_batches_done_total", "counter", "Batches by how their commit ended.");
    sample_u(b, "stockd_batches_done_total", "outcome=\"committed\"", e->batches_committed);
    sample_u(b, "stockd_batches_done_total", "outcome=\"aborted\"", e->batches_aborted);
    sample_u(b, "stockd_batches_done_total", "outcome=\"unknown\"", e->batches_unknown);
    family(b, "stockd_batches_in_flight", "gauge", "Batches being committed now.");
    sample_u(b, "stockd_batches_in_flight", NULL, e->batches_in_flight);
    family(b, "stockd_batch_size_ops", "histogram",
           "Operations per non-empty batch sent to MariaDB.");
    hist_samples(b, "stockd_batch_size_ops", "", m->batch_ops, ops_edges,
                 sizeof(ops_edges) / sizeof(ops_edges[0]), 1.0, 1);
    family(b, "stockd_skus", "gauge", "SKUs in memory.");
    sample_u(b, "stockd_skus", NULL, e->skus);
    family(b, "stockd_orders", "gauge", "Orders in memory.");
    sample_u(b, "stockd_orders", NULL, e->orders);
    family(b, "stockd_holds_expired_total", "counter", "Held orders expired.");
    sample_u(b, "stockd_holds_expired_total", NULL, e->holds_expired);
    family(b, "stockd_outcome_unknown_total", "counter",
           "Requests answered 'commit outcome unknown'.");
    sample_u(b, "stockd_outcome_unknown_total", NULL, m->outcome_unknown);
}

static void metrics_store(struct evbuffer *b, const server_metrics *m)
{
    const store_stats *st = &m->store;
    family(b, "stockd_commit_duration_seconds", "histogram",
           "From handing a batch to MariaDB to its outcome (any outcome).");
    hist_samples(b, "stockd_commit_duration_seconds", "", m->commit_us, lat_edges_us,
                 sizeof(lat_edges_us) / sizeof(lat_edges_us[0]), 1e6, 0);
    family(b, "stockd_store_commits_total", "counter", "MariaDB commits by outcome.");
    sample_u(b, "stockd_store_commits_total", "outcome=\"ok\"", st->commits_ok);
    sample_u(b, "stockd_store_commits_total", "outcome=\"aborted\"", st->commits_aborted);
    sample_u(b, "stockd_store_commits_total", "outcome=\"unknown\"", st->commits_unknown);
    family(b, "stockd_store_commit_seconds_max", "gauge", "Slowest successful commit.");
    sample_f(b, "stockd_store_commit_seconds_max", NULL, (double)st->commit_us_max / 1e6);
    family(b, "stockd_store_resolves_total", "counter", "Unknown batches settled.");
    sample_u(b, "stockd_store_resolves_total", NULL, st->resolves);
    family(b, "stockd_store_reconnects_total", "counter", "MariaDB reconnects.");
    sample_u(b, "stockd_store_reconnects_total", NULL, st->reconnects);
    family(b, "stockd_mariadb_up", "gauge", "1 when at least one MariaDB connection is up.");
    sample_u(b, "stockd_mariadb_up", NULL, m->store_up ? 1 : 0);
    family(b, "stockd_mariadb_connections", "gauge", "MariaDB writer connections by state.");
    sample_u(b, "stockd_mariadb_connections", "state=\"up\"", st->conns_up);
    sample_u(b, "stockd_mariadb_connections", "state=\"busy\"", st->conns_busy);
}

static void metrics_read_path(struct evbuffer *b, const server_metrics *m)
{
    family(b, "stockd_cold_sku_loads_total", "counter",
           "SKU loads from MariaDB for SKUs not in memory, by result.");
    sample_u(b, "stockd_cold_sku_loads_total", "result=\"started\"", m->cold_loads);
    sample_u(b, "stockd_cold_sku_loads_total", "result=\"loaded\"", m->cold_loaded);
    sample_u(b, "stockd_cold_sku_loads_total", "result=\"missing\"", m->cold_missing);
    sample_u(b, "stockd_cold_sku_loads_total", "result=\"failed\"", m->cold_failed);
    family(b, "stockd_cold_sku_waits_total", "counter", "Requests that waited for a SKU load.");
    sample_u(b, "stockd_cold_sku_waits_total", NULL, m->cold_waits);
    family(b, "stockd_cold_sku_loads_in_flight", "gauge", "SKU loads running now.");
    sample_u(b, "stockd_cold_sku_loads_in_flight", NULL, m->cold_in_flight);
    family(b, "stockd_cluster_sharded", "gauge", "1 when started with --peers.");
    sample_u(b, "stockd_cluster_sharded", NULL, m->sharded);
    family(b, "stockd_cluster_ring_settled", "gauge",
           "1 when the startup takeovers are done and no SKU waits to leave.");
    sample_u(b, "stockd_cluster_ring_settled", NULL, m->ring_settled);
    family(b, "stockd_cluster_takeovers_pending", "gauge", "Startup takeovers not finished yet.");
    sample_u(b, "stockd_cluster_takeovers_pending", NULL, m->takeovers_pending);
    family(b, "stockd_cluster_forget_pending", "gauge", "SKUs that moved away, still busy here.");
    sample_u(b, "stockd_cluster_forget_pending", NULL, m->forget_pending);
    family(b, "stockd_cluster_forwarded_total", "counter", "Requests forwarded to their owner, by outcome.");
    sample_u(b, "stockd_cluster_forwarded_total", "outcome=\"sent\"", m->forwarded);
    sample_u(b, "stockd_cluster_forwarded_total", "outcome=\"failed\"", m->forward_failed);
    family(b, "stockd_cluster_not_owner_total", "counter",
           "Forwarded requests refused: this node is not the owner (rings disagree).");
    sample_u(b, "stockd_cluster_not_owner_total", NULL, m->not_owner);
    family(b, "stockd_cluster_fence_drops_total", "counter",
           "SKUs forgotten after their epoch fence refused a batch.");
    sample_u(b, "stockd_cluster_fence_drops_total", NULL, m->fence_drops);
    family(b, "stockd_cluster_order_lookups_total", "counter", "Order SKU lookups in MariaDB for routing.");
    sample_u(b, "stockd_cluster_order_lookups_total", NULL, m->order_lookups);
    family(b, "stockd_cluster_ring_changes_total", "counter", "Ring changes applied by SIGHUP.");
    sample_u(b, "stockd_cluster_ring_changes_total", NULL, m->ring_changes);
    if (m->has_bloom) {
        const bloom_stats *bs = &m->bloom;
        family(b, "stockd_bloom_items", "gauge", "SKUs added to the Bloom filter of known SKUs.");
        sample_u(b, "stockd_bloom_items", NULL, bs->items);
        family(b, "stockd_bloom_capacity", "gauge", "SKUs the Bloom filter was sized for.");
        sample_u(b, "stockd_bloom_capacity", NULL, bs->capacity);
        family(b, "stockd_bloom_fp_ratio", "gauge",
               "Estimated false positive ratio at the current fill.");
        sample_f(b, "stockd_bloom_fp_ratio", NULL, (double)bs->fp_ppm_estimate / 1e6);
        family(b, "stockd_bloom_checks_total", "counter", "Bloom filter lookups by answer.");
        sample_u(b, "stockd_bloom_checks_total", "answer=\"maybe\"",
                 bs->checks > bs->negatives ? bs->checks - bs->negatives : 0);
        sample_u(b, "stockd_bloom_checks_total", "answer=\"no\"", bs->negatives);
        family(b, "stockd_bloom_false_positives_total", "counter",
               "Lookups the filter passed that MariaDB did not know.");
        sample_u(b, "stockd_bloom_false_positives_total", NULL, bs->false_positives);
    }
    if (m->has_cache) {
        const cache_stats *cs = &m->cache;
        family(b, "stockd_redis_up", "gauge", "1 when the Redis read cache is connected.");
        sample_u(b, "stockd_redis_up", NULL, cs->up);
        family(b, "stockd_redis_connects_total", "counter", "Redis connection attempts by result.");
        sample_u(b, "stockd_redis_connects_total", "result=\"up\"", cs->connects);
        sample_u(b, "stockd_redis_connects_total", "result=\"failed\"", cs->connect_failures);
        family(b, "stockd_redis_drops_total", "counter", "Redis connections lost, by cause.");
        sample_u(b, "stockd_redis_drops_total", "cause=\"timeout\"", cs->timeouts);
        sample_u(b, "stockd_redis_drops_total", "cause=\"other\"",
                 cs->drops >= cs->timeouts ? cs->drops - cs->timeouts : 0);
        family(b, "stockd_cache_marks_total", "counter", "Cache refreshes asked for, by fate.");
        uint64_t not_queued = cs->marks_coalesced + cs->marks_dropped;
        sample_u(b, "stockd_cache_marks_total", "fate=\"queued\"",
                 cs->marks > not_queued ? cs->marks - not_queued : 0);
        sample_u(b, "stockd_cache_marks_total", "fate=\"coalesced\"", cs->marks_coalesced);
        sample_u(b, "stockd_cache_marks_total", "fate=\"dropped\"", cs->marks_dropped);
        family(b, "stockd_cache_sets_total", "counter", "Cache writes by result.");
        sample_u(b, "stockd_cache_sets_total", "result=\"ok\"", cs->sets_ok);
        sample_u(b, "stockd_cache_sets_total", "result=\"failed\"", cs->sets_failed);
        family(b, "stockd_cache_sets_in_flight", "gauge", "Cache commands waiting for replies.");
        sample_u(b, "stockd_cache_sets_in_flight", NULL, cs->inflight);
        family(b, "stockd_cache_dirty_skus", "gauge", "SKUs waiting for a cache refresh.");
        sample_u(b, "stockd_cache_dirty_skus", NULL, cs->dirty);
    }
}

static void metrics_process(struct evbuffer *b, const server_metrics *m)
{
    family(b, "stockd_build_info", "gauge", "Version of this stockd.");
    sample_u(b, "stockd_build_info", "version=\"" STOCKD_VERSION "\"", 1);
    family(b, "stockd_uptime_seconds", "gauge", "Seconds since start.");
    sample_f(b, "stockd_uptime_seconds", NULL, (double)m->uptime_ms / 1000.0);
    family(b, "stockd_ready", "gauge", "1 when /readyz answers 200.");
    sample_u(b, "stockd_ready", NULL, m->listening && m->store_up && !m->draining && m->ring_settled);
    family(b, "stockd_draining", "gauge", "1 after SIGTERM/SIGINT, while draining.");
    sample_u(b, "stockd_draining", NULL, m->draining);
    family(b, "stockd_config_reloads_total", "counter", "Configuration reloads (SIGHUP).");
    sample_u(b, "stockd_config_reloads_total", NULL, m->reloads);
}

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

static void on_metrics(httpd_req *req, http_srv *h)
{
    server_metrics m;
    server_metrics_get(h->srv, &m);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        reply_short(req, 500, "Internal Server Error", "out of memory", NULL);
        return;
    }
    metrics_process(b, &m);
    metrics_requests(b, &m);
    metrics_conns(b, &m);
    metrics_http(b, h);
    metrics_engine(b, &m);
    metrics_store(b, &m);
    metrics_read_path(b, &m);
    reply_buf(req, 200, "OK", b, "text/plain; version=0.0.4; charset=utf-8");
    evbuffer_free(b);
}

static void on_readyz(httpd_req *req, http_srv *h)
{
    server_metrics m;
    server_metrics_get(h->srv, &m);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        reply_short(req, 500, "Internal Server Error", "out of memory", NULL);
        return;
    }
    if (!m.listening)
        evbuffer_add_printf(b, "not listening: state not loaded yet\n");
    if (!m.store_up)
        evbuffer_add_printf(b, "mariadb down\n");
    if (m.draining)
        evbuffer_add_printf(b, "draining\n");
    if (!m.ring_settled)
        evbuffer_add_printf(b, "ring not settled: %u startup takeovers pending, %u SKUs waiting to leave\n",
                            m.takeovers_pending, m.forget_pending);
    bool ready = evbuffer_get_length(b) == 0;
    if (ready)
        evbuffer_add_printf(b, "ready\n");
    reply_buf(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", b,
              "text/plain; charset=utf-8");
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
    if (strcmp(path, "/1688/push") == 0) {
        on_push(req, h);
    } else if (!read) {
        reply_short(req, 405, "Method Not Allowed", "GET or HEAD only", "Allow: GET, HEAD\r\n");
    } else if (strcmp(path, "/metrics") == 0) {
        on_metrics(req, h);
    } else if (strcmp(path, "/readyz") == 0) {
        on_readyz(req, h);
    } else if (strcmp(path, "/healthz") == 0) {
        reply_short(req, 200, "OK", "ok", NULL);
    } else {
        reply_short(req, 404, "Not Found", "not found: /metrics, /healthz, /readyz, POST /1688/push",
                    NULL);
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
    httpd_free(h->httpd);
    free(h);
}
