/* stats.c — the `stats` map and /metrics from one snapshot; see stats.h. */
#include "stockd/stats.h"

#include <inttypes.h>
#include <stdio.h>

#include <event2/buffer.h>

#include "stockd/codec.h"

/* ------------------------------------------------------------ the `stats` map */

/* One figure of a group: an integer, or a boolean when is_bool. A group's
 * map size is the length of its table, never a hand-kept count. */
typedef struct fig {
    const char *name;
    int64_t v;
    bool is_bool;
} fig;

#define FIGS(...) (const fig[]){__VA_ARGS__}, sizeof((const fig[]){__VA_ARGS__}) / sizeof(fig)

/* "name": {figures..., then `nested` more pairs the caller packs}. */
static void pack_group(msgpack_packer *pk, const char *name, uint32_t nested, const fig *f,
                       size_t n)
{
    codec_pack_cstr(pk, name);
    msgpack_pack_map(pk, (uint32_t)n + nested);
    for (size_t i = 0; i < n; i++) {
        if (f[i].is_bool)
            codec_pack_kv_bool(pk, f[i].name, f[i].v != 0);
        else
            codec_pack_kv_int(pk, f[i].name, f[i].v);
    }
}

#define I(name, v) {name, (int64_t)(v), false}
#define B(name, v) {name, (v) ? 1 : 0, true}

static void pack_read_path(const stats_snapshot *s, msgpack_packer *pk)
{
    const bloom_stats *bs = &s->bloom;
    const cache_stats *cs = &s->cache;
    const store_stats *ss = &s->store;
    codec_pack_cstr(pk, "read_path");
    msgpack_pack_map(pk, 3);
    pack_group(pk, "cold", 0, FIGS(
        B("preload_skus", s->preload_skus), I("loads", s->cold_loads),
        I("waits", s->cold_waits), I("loaded", s->cold_loaded), I("missing", s->cold_missing),
        I("failed", s->cold_failed), I("in_flight", s->cold_in_flight),
        I("db_queries", ss->sku_load_queries), I("db_loads", ss->sku_loads)));
    pack_group(pk, "bloom", 0, FIGS(
        I("capacity", bs->capacity), I("items", bs->items), I("bytes", bs->bits / 8),
        I("hashes", bs->hashes), I("fp_ppm_target", bs->fp_ppm_target),
        I("fp_ppm_estimate", bs->fp_ppm_estimate), I("checks", bs->checks),
        I("negatives", bs->negatives), I("false_positives", bs->false_positives)));
    pack_group(pk, "cache", 0, FIGS(
        B("up", cs->up), I("connects", cs->connects), I("connect_failures", cs->connect_failures),
        I("drops", cs->drops), I("timeouts", cs->timeouts), I("marks", cs->marks),
        I("marks_coalesced", cs->marks_coalesced), I("marks_dropped", cs->marks_dropped),
        I("sets_sent", cs->sets_sent), I("sets_ok", cs->sets_ok),
        I("sets_failed", cs->sets_failed), I("flushes", cs->flushes), I("dirty", cs->dirty),
        I("inflight", cs->inflight), I("ttl_s", s->cache_ttl_s)));
}


/* "latency_us": {method: {count, p50, p99, max}} for methods answered at
 * least once; the same histograms as /metrics. */
static void pack_latency(const stats_snapshot *s, msgpack_packer *pk)
{
    uint32_t n = 0;
    for (uint32_t m = 0; m < s->n_methods; m++)
        n += s->methods[m].latency_us->count > 0;
    codec_pack_cstr(pk, "latency_us");
    msgpack_pack_map(pk, n);
    for (uint32_t m = 0; m < s->n_methods; m++) {
        const hist *h = s->methods[m].latency_us;
        if (h->count == 0)
            continue;
        codec_pack_cstr(pk, s->methods[m].name);
        msgpack_pack_map(pk, 4);
        codec_pack_kv_int(pk, "count", (int64_t)h->count);
        codec_pack_kv_int(pk, "p50", (int64_t)hist_quantile(h, 0.50));
        codec_pack_kv_int(pk, "p99", (int64_t)hist_quantile(h, 0.99));
        codec_pack_kv_int(pk, "max", (int64_t)h->max);
    }
}

/* "supplier": the snapshot sync, the purchase worker, the engine's
 * purchase figures and the shared 1688 client; enabled false (zeros but the
 * engine's) without --supplier-url. */
static void pack_supplier(const stats_snapshot *s, msgpack_packer *pk)
{
    const supsync_stats *ys = &s->sync;
    const purchase_stats *ps = &s->purchase;
    const supplier_stats *cs = &s->client;
    const eng_stats *es = &s->engine;
    codec_pack_cstr(pk, "supplier");
    const fig f[] = {
        B("enabled", s->supplier_enabled), I("syncs", ys->syncs), I("calls", ys->calls),
        I("ok", ys->ok), I("failed", ys->failed), I("skipped", ys->skipped),
        I("reports", ys->reports), I("offers", ys->offers), I("in_flight", ys->in_flight),
        I("last_sync_ms", ys->last_sync_ms), I("last_duration_ms", ys->last_duration_ms),
        I("pokes", ys->pokes), I("broken", ys->broken), I("pushes", ys->pushes),
        I("push_refused", ys->push_refused), I("push_stale", ys->push_stale),
        I("push_duplicate", ys->push_duplicate), I("push_seen_evicted", ys->push_seen_evicted),
        I("purchases_pending", es->purchases_pending), I("purchased", es->purchased),
        I("purchase_failed", es->purchase_failed), I("mappings_broken", es->mappings_broken),
        I("settled_units", es->settled_units),
    };
    /* trust first, then the figures, then purchase, client and check */
    msgpack_pack_map(pk, (uint32_t)(sizeof f / sizeof f[0]) + 4);
    codec_pack_cstr(pk, "trust");
    msgpack_pack_map(pk, s->n_trust);
    for (uint32_t i = 0; i < s->n_trust; i++) {
        codec_pack_cstr(pk, s->trust[i].supplier_id);
        msgpack_pack_double(pk, s->trust[i].effective);
    }
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].is_bool)
            codec_pack_kv_bool(pk, f[i].name, f[i].v != 0);
        else
            codec_pack_kv_int(pk, f[i].name, f[i].v);
    }
    pack_group(pk, "purchase", 0, FIGS(
        I("claimed", ps->claimed), I("lookups", ps->lookups), I("previews", ps->previews),
        I("creates", ps->creates), I("purchased", ps->purchased), I("failed", ps->failed),
        I("retries", ps->retries), I("dropped", ps->dropped), I("active", ps->active),
        I("checks_reused", ps->checks_reused)));
    pack_group(pk, "client", 0, FIGS(
        I("calls", cs->calls), I("attempts", cs->attempts), I("retries", cs->retries),
        I("ok", cs->ok), I("retryable", cs->retryable), I("definitive", cs->definitive),
        I("refused", cs->refused), I("in_flight", cs->in_flight), I("queued", cs->queued),
        I("backing_off", cs->backing_off), I("max_in_flight_seen", cs->max_in_flight_seen)));
    pack_group(pk, "check", 0, FIGS(
        I("started", s->checks_started), I("passed", s->checks_passed),
        I("refused", s->checks_refused), I("unavailable", s->checks_unavailable),
        I("unknown", s->checks_unknown), I("previews", s->check_previews),
        I("waits", s->check_waits), I("alive", s->checks_alive)));
}

/* "alerts" (support alerts: ring, Redis stream) and "notify"
 * (order.subscribe listeners). */
static void pack_alerts_notify(const stats_snapshot *s, msgpack_packer *pk)
{
    const cache_stats *cs = &s->cache;
    const notify_stats *nst = &s->notify;
    pack_group(pk, "alerts", 0, FIGS(
        I("total", s->alerts_total), I("kept", nst->alerts_kept),
        I("stream_sent", cs->alerts_sent), I("stream_ok", cs->alerts_ok),
        I("stream_failed", cs->alerts_failed),
        I("stream_skipped", cs->alerts_skipped + s->alerts_no_cache)));
    pack_group(pk, "notify", 0, FIGS(
        I("subscribers", nst->listeners), I("sent", nst->sent), I("dropped", nst->dropped)));
}

/* "lines": reserves with lines (orders of several lines); a failed line's
 * cascade onto the other parts, whole-order updates; carts waiting for each
 * other instead of refusing (engine.h "Waiting"). */
static void pack_lines_stats(const stats_snapshot *s, msgpack_packer *pk)
{
    const cart_stats *cs = &s->cart;
    const eng_stats *es = &s->engine;
    pack_group(pk, "lines", 0, FIGS(
        I("reserves", s->lines_reserves), I("lines", s->lines_total),
        I("coordinated", s->lines_coordinated), B("coordinator", s->coordinator),
        I("cart_confirmed", cs->confirmed), I("cart_aborted", cs->aborted),
        I("cart_unavailable", cs->unavailable), I("cart_inflight", cs->inflight),
        I("cart_cascades", cs->cascades), I("cart_cascade_gave_up", cs->cascade_gave_up),
        I("cart_updates_sent", cs->updates_sent), I("cart_updates_told", s->notify.updates_told),
        I("cart_updates_repeated", s->notify.updates_repeated),
        I("cart_sequential", cs->sequential), I("parts_waiting", es->parked),
        I("part_waits", es->park_waits), I("part_wait_timeouts", es->park_timeouts)));
}

/* "requests": {method: {result: count}} for methods answered at least once. */
static void pack_requests(const stats_snapshot *s, msgpack_packer *pk)
{
    codec_pack_cstr(pk, "requests");
    uint32_t nm = 0;
    for (uint32_t m = 0; m < s->n_methods; m++) {
        for (uint32_t r = 0; r < s->n_results; r++) {
            if (s->methods[m].results[r]) {
                nm++;
                break;
            }
        }
    }
    msgpack_pack_map(pk, nm);
    for (uint32_t m = 0; m < s->n_methods; m++) {
        uint32_t nr = 0;
        for (uint32_t r = 0; r < s->n_results; r++)
            nr += s->methods[m].results[r] != 0;
        if (nr == 0)
            continue;
        codec_pack_cstr(pk, s->methods[m].name);
        msgpack_pack_map(pk, nr);
        for (uint32_t r = 0; r < s->n_results; r++) {
            if (s->methods[m].results[r] == 0)
                continue;
            codec_pack_kv_int(pk, s->result_names[r], (int64_t)s->methods[m].results[r]);
        }
    }
}

void stats_pack(const stats_snapshot *s, msgpack_packer *pk)
{
    const eng_stats *es = &s->engine;
    const store_stats *ss = &s->store;
    const peer_stats *ps = &s->peers;
    const conn_stats *cst = &s->conns;
    msgpack_pack_map(pk, 15);
    codec_pack_kv_str(pk, "node", s->node);
    codec_pack_kv_int(pk, "uptime_ms", s->uptime_ms);

    /* peer handshakes accepted here / refused here; made by us */
    pack_group(pk, "cluster", 1, FIGS(
        B("sharded", s->sharded), I("nodes", s->nodes), I("ring_changes", s->ring_changes),
        I("forwarded", s->forwarded), I("forward_failed", s->forward_failed),
        I("not_owner", s->not_owner), I("fence_drops", s->fence_drops),
        I("order_lookups", s->order_lookups), I("forget_pending", s->forget_pending),
        I("peer_inflight", ps->inflight), I("peer_auth_ok", s->peer_auth_ok),
        I("peer_auth_failed", s->peer_auth_failed), I("peer_auth_out_ok", ps->auth_ok),
        I("peer_only_refused", s->peer_only_refused)));
    char ver[24];
    snprintf(ver, sizeof ver, "%016llx", (unsigned long long)s->ring_version);
    codec_pack_kv_str(pk, "ring_version", ver);

    pack_group(pk, "connections", 0, FIGS(
        I("current", cst->current), I("total", cst->total), I("refused", cst->refused),
        I("closed_bad_input", cst->closed_bad), I("closed_idle", cst->closed_idle),
        I("closed_stalled", cst->closed_stalled), I("output_bytes", cst->output_bytes),
        I("output_paused", cst->output_paused), I("accept_errors", cst->accept_errors),
        I("accept_pauses", cst->accept_pauses), I("values_refused", cst->values_refused)));
    pack_requests(s, pk);
    pack_latency(s, pk);
    pack_group(pk, "queue", 0, FIGS(
        I("queued", es->queued), I("queued_max_sku", es->queued_max_sku),
        I("per_sku_max", s->queue_per_sku_max), I("total_max", s->queue_total_max)));
    pack_group(pk, "batches", 0, FIGS(
        I("batches", es->batches), I("batch_ops", es->batch_ops),
        I("mean_batch_x1000", es->batches ? es->batch_ops * 1000 / es->batches : 0),
        I("committed", es->batches_committed), I("aborted", es->batches_aborted),
        I("unknown", es->batches_unknown), I("in_flight", es->batches_in_flight)));
    pack_group(pk, "commits", 0, FIGS(
        I("ok", ss->commits_ok), I("aborted", ss->commits_aborted),
        I("unknown", ss->commits_unknown), I("resolves", ss->resolves),
        I("reconnects", ss->reconnects),
        I("latency_us_mean", ss->commits_ok ? ss->commit_us_total / ss->commits_ok : 0),
        I("latency_us_max", ss->commit_us_max), I("conns_up", ss->conns_up)));
    pack_read_path(s, pk);
    pack_supplier(s, pk);
    pack_alerts_notify(s, pk);
    pack_group(pk, "state", 0, FIGS(
        I("skus", es->skus), I("orders", es->orders), I("holds_expired", es->holds_expired),
        I("skus_set_aside", es->skus_aside), I("orders_set_aside", es->orders_aside),
        I("set_aside_alerts_dropped", es->aside_alerts_dropped), B("store_up", s->store_up),
        I("outcome_unknown", s->outcome_unknown), I("order_retention_ms", s->order_retention_ms),
        I("orders_evicted", es->orders_evicted), I("orders_reloaded", es->orders_reloaded),
        I("order_reads", s->order_reads), I("order_reads_failed", s->order_reads_failed),
        I("order_reads_in_flight", s->order_reads_in_flight),
        I("order_key_refusals", s->order_key_refusals)));
    pack_lines_stats(s, pk);
}

#undef I
#undef B

/* ------------------------------------------------------------ /metrics */

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

static uint64_t method_total(const stats_snapshot *m, uint32_t i)
{
    uint64_t t = 0;
    for (uint32_t r = 0; r < m->n_results; r++)
        t += m->methods[i].results[r];
    return t;
}

static void metrics_requests(struct evbuffer *b, const stats_snapshot *m)
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

static void metrics_conns(struct evbuffer *b, const stats_snapshot *m)
{
    family(b, "stockd_connections", "gauge", "Client connections open now.");
    sample_u(b, "stockd_connections", NULL, m->conns.current);
    family(b, "stockd_connections_accepted_total", "counter", "Client connections accepted.");
    sample_u(b, "stockd_connections_accepted_total", NULL, m->conns.total);
    family(b, "stockd_connections_refused_total", "counter",
           "Connections closed at accept: over max-connections, draining or out of memory.");
    sample_u(b, "stockd_connections_refused_total", NULL, m->conns.refused);
    family(b, "stockd_connections_closed_bad_input_total", "counter",
           "Connections closed for input the protocol cannot survive.");
    sample_u(b, "stockd_connections_closed_bad_input_total", NULL, m->conns.closed_bad);
    family(b, "stockd_notifications_ignored_total", "counter",
           "msgpack-rpc notifications received (no method takes them).");
    sample_u(b, "stockd_notifications_ignored_total", NULL, m->notifications);
    family(b, "stockd_connections_closed_total", "counter",
           "Client connections closed by stockd for a limit, by reason.");
    sample_u(b, "stockd_connections_closed_total", "reason=\"idle\"", m->conns.closed_idle);
    sample_u(b, "stockd_connections_closed_total", "reason=\"output_stalled\"",
             m->conns.closed_stalled);
    family(b, "stockd_output_unsent_bytes", "gauge",
           "Reply bytes queued for all client connections, not yet written.");
    sample_u(b, "stockd_output_unsent_bytes", NULL, m->conns.output_bytes);
    family(b, "stockd_output_total_cap_reached_total", "counter",
           "Times the unsent output of all connections passed max-output-total-bytes.");
    sample_u(b, "stockd_output_total_cap_reached_total", NULL, m->conns.output_paused);
    family(b, "stockd_accept_errors_total", "counter",
           "accept() failures on the client port (out of descriptors, mostly).");
    sample_u(b, "stockd_accept_errors_total", NULL, m->conns.accept_errors);
    family(b, "stockd_open_files", "gauge", "Descriptors open in this process now.");
    sample_u(b, "stockd_open_files", NULL, m->open_files);
    family(b, "stockd_open_files_limit", "gauge", "RLIMIT_NOFILE (soft).");
    sample_u(b, "stockd_open_files_limit", NULL, m->open_files_limit);
}


static void metrics_engine(struct evbuffer *b, const stats_snapshot *m)
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
    family(b, "stockd_orders_evicted_total", "counter",
           "Ended orders that left memory (--order-retention-ms).");
    sample_u(b, "stockd_orders_evicted_total", NULL, e->orders_evicted);
    family(b, "stockd_order_reads_total", "counter",
           "Orders not in memory read back from MariaDB, by result.");
    sample_u(b, "stockd_order_reads_total", "result=\"ok\"", m->order_reads - m->order_reads_failed);
    sample_u(b, "stockd_order_reads_total", "result=\"failed\"", m->order_reads_failed);
    family(b, "stockd_checks_total", "counter",
           "Checked reserves (1688's order check before the answer), by outcome.");
    sample_u(b, "stockd_checks_total", "result=\"passed\"", m->checks_passed);
    sample_u(b, "stockd_checks_total", "result=\"refused\"", m->checks_refused);
    sample_u(b, "stockd_checks_total", "result=\"unavailable\"", m->checks_unavailable);
    sample_u(b, "stockd_checks_total", "result=\"unknown\"", m->checks_unknown);
    family(b, "stockd_holds_expired_total", "counter", "Held orders expired.");
    sample_u(b, "stockd_holds_expired_total", NULL, e->holds_expired);
    family(b, "stockd_outcome_unknown_total", "counter",
           "Requests answered 'commit outcome unknown'.");
    sample_u(b, "stockd_outcome_unknown_total", NULL, m->outcome_unknown);
}

static void metrics_store(struct evbuffer *b, const stats_snapshot *m)
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

static void metrics_read_path(struct evbuffer *b, const stats_snapshot *m)
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

static void metrics_process(struct evbuffer *b, const stats_snapshot *m)
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


static void metrics_http(struct evbuffer *b, const stats_snapshot *m)
{
    if (!m->has_http)
        return;
    const httpd_stats st = m->http;
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

void stats_metrics(const stats_snapshot *s, struct evbuffer *out)
{
    metrics_process(out, s);
    metrics_requests(out, s);
    metrics_conns(out, s);
    metrics_http(out, s);
    metrics_engine(out, s);
    metrics_store(out, s);
    metrics_read_path(out, s);
}

void stats_unready(const stats_snapshot *m, struct evbuffer *b)
{
    if (!m->listening)
        evbuffer_add_printf(b, "not listening: state not loaded yet\n");
    if (!m->store_up)
        evbuffer_add_printf(b, "mariadb down\n");
    if (m->draining)
        evbuffer_add_printf(b, "draining\n");
    if (!m->ring_settled)
        evbuffer_add_printf(b, "ring not settled: %u startup takeovers pending, %u SKUs waiting to leave\n",
                            m->takeovers_pending, m->forget_pending);
}
