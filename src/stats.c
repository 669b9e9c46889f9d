/* stats.c — the `stats` map and /metrics from one snapshot; see stats.h. */
#include "stockd/stats.h"

#include <inttypes.h>
#include <stdio.h>

#include <event2/buffer.h>

#include "stockd/codec.h"

/* ------------------------------------------------------------ the `stats` map */

static void pack_read_path(const stats_snapshot *s, msgpack_packer *pk)
{
    const bloom_stats bs = s->bloom;
    const cache_stats cs = s->cache;
    const store_stats ss = s->store;
    codec_pack_cstr(pk, "read_path");
    msgpack_pack_map(pk, 3);
    codec_pack_cstr(pk, "cold");
    msgpack_pack_map(pk, 9);
    codec_pack_kv_bool(pk, "preload_skus", s->preload_skus);
    codec_pack_kv_int(pk, "loads", (int64_t)s->cold_loads);
    codec_pack_kv_int(pk, "waits", (int64_t)s->cold_waits);
    codec_pack_kv_int(pk, "loaded", (int64_t)s->cold_loaded);
    codec_pack_kv_int(pk, "missing", (int64_t)s->cold_missing);
    codec_pack_kv_int(pk, "failed", (int64_t)s->cold_failed);
    codec_pack_kv_int(pk, "in_flight", s->cold_in_flight);
    codec_pack_kv_int(pk, "db_queries", (int64_t)ss.sku_load_queries);
    codec_pack_kv_int(pk, "db_loads", (int64_t)ss.sku_loads);
    codec_pack_cstr(pk, "bloom");
    msgpack_pack_map(pk, 9);
    codec_pack_kv_int(pk, "capacity", (int64_t)bs.capacity);
    codec_pack_kv_int(pk, "items", (int64_t)bs.items);
    codec_pack_kv_int(pk, "bytes", (int64_t)(bs.bits / 8));
    codec_pack_kv_int(pk, "hashes", bs.hashes);
    codec_pack_kv_int(pk, "fp_ppm_target", bs.fp_ppm_target);
    codec_pack_kv_int(pk, "fp_ppm_estimate", bs.fp_ppm_estimate);
    codec_pack_kv_int(pk, "checks", (int64_t)bs.checks);
    codec_pack_kv_int(pk, "negatives", (int64_t)bs.negatives);
    codec_pack_kv_int(pk, "false_positives", (int64_t)bs.false_positives);
    codec_pack_cstr(pk, "cache");
    msgpack_pack_map(pk, 15);
    codec_pack_kv_bool(pk, "up", cs.up);
    codec_pack_kv_int(pk, "connects", (int64_t)cs.connects);
    codec_pack_kv_int(pk, "connect_failures", (int64_t)cs.connect_failures);
    codec_pack_kv_int(pk, "drops", (int64_t)cs.drops);
    codec_pack_kv_int(pk, "timeouts", (int64_t)cs.timeouts);
    codec_pack_kv_int(pk, "marks", (int64_t)cs.marks);
    codec_pack_kv_int(pk, "marks_coalesced", (int64_t)cs.marks_coalesced);
    codec_pack_kv_int(pk, "marks_dropped", (int64_t)cs.marks_dropped);
    codec_pack_kv_int(pk, "sets_sent", (int64_t)cs.sets_sent);
    codec_pack_kv_int(pk, "sets_ok", (int64_t)cs.sets_ok);
    codec_pack_kv_int(pk, "sets_failed", (int64_t)cs.sets_failed);
    codec_pack_kv_int(pk, "flushes", (int64_t)cs.flushes);
    codec_pack_kv_int(pk, "dirty", cs.dirty);
    codec_pack_kv_int(pk, "inflight", cs.inflight);
    codec_pack_kv_int(pk, "ttl_s", s->cache_ttl_s);
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
    msgpack_pack_map(pk, 26);
    codec_pack_cstr(pk, "trust");
    msgpack_pack_map(pk, s->n_trust);
    for (uint32_t i = 0; i < s->n_trust; i++) {
        codec_pack_cstr(pk, s->trust[i].supplier_id);
        msgpack_pack_double(pk, s->trust[i].effective);
    }
    codec_pack_kv_bool(pk, "enabled", s->supplier_enabled);
    codec_pack_kv_int(pk, "syncs", (int64_t)ys->syncs);
    codec_pack_kv_int(pk, "calls", (int64_t)ys->calls);
    codec_pack_kv_int(pk, "ok", (int64_t)ys->ok);
    codec_pack_kv_int(pk, "failed", (int64_t)ys->failed);
    codec_pack_kv_int(pk, "skipped", (int64_t)ys->skipped);
    codec_pack_kv_int(pk, "reports", (int64_t)ys->reports);
    codec_pack_kv_int(pk, "offers", ys->offers);
    codec_pack_kv_int(pk, "in_flight", ys->in_flight);
    codec_pack_kv_int(pk, "last_sync_ms", ys->last_sync_ms);
    codec_pack_kv_int(pk, "last_duration_ms", ys->last_duration_ms);
    codec_pack_kv_int(pk, "pokes", (int64_t)ys->pokes);
    codec_pack_kv_int(pk, "broken", (int64_t)ys->broken);
    codec_pack_kv_int(pk, "pushes", (int64_t)ys->pushes);
    codec_pack_kv_int(pk, "push_refused", (int64_t)ys->push_refused);
    codec_pack_kv_int(pk, "push_stale", (int64_t)ys->push_stale);
    codec_pack_kv_int(pk, "push_duplicate", (int64_t)ys->push_duplicate);
    codec_pack_kv_int(pk, "push_seen_evicted", (int64_t)ys->push_seen_evicted);
    codec_pack_kv_int(pk, "purchases_pending", (int64_t)es->purchases_pending);
    codec_pack_kv_int(pk, "purchased", (int64_t)es->purchased);
    codec_pack_kv_int(pk, "purchase_failed", (int64_t)es->purchase_failed);
    codec_pack_kv_int(pk, "mappings_broken", (int64_t)es->mappings_broken);
    codec_pack_kv_int(pk, "settled_units", (int64_t)es->settled_units);
    codec_pack_cstr(pk, "purchase");
    msgpack_pack_map(pk, 9);
    codec_pack_kv_int(pk, "claimed", (int64_t)ps->claimed);
    codec_pack_kv_int(pk, "lookups", (int64_t)ps->lookups);
    codec_pack_kv_int(pk, "previews", (int64_t)ps->previews);
    codec_pack_kv_int(pk, "creates", (int64_t)ps->creates);
    codec_pack_kv_int(pk, "purchased", (int64_t)ps->purchased);
    codec_pack_kv_int(pk, "failed", (int64_t)ps->failed);
    codec_pack_kv_int(pk, "retries", (int64_t)ps->retries);
    codec_pack_kv_int(pk, "dropped", (int64_t)ps->dropped);
    codec_pack_kv_int(pk, "active", ps->active);
    codec_pack_cstr(pk, "client");
    msgpack_pack_map(pk, 11);
    codec_pack_kv_int(pk, "calls", (int64_t)cs->calls);
    codec_pack_kv_int(pk, "attempts", (int64_t)cs->attempts);
    codec_pack_kv_int(pk, "retries", (int64_t)cs->retries);
    codec_pack_kv_int(pk, "ok", (int64_t)cs->ok);
    codec_pack_kv_int(pk, "retryable", (int64_t)cs->retryable);
    codec_pack_kv_int(pk, "definitive", (int64_t)cs->definitive);
    codec_pack_kv_int(pk, "refused", (int64_t)cs->refused);
    codec_pack_kv_int(pk, "in_flight", cs->in_flight);
    codec_pack_kv_int(pk, "queued", cs->queued);
    codec_pack_kv_int(pk, "backing_off", cs->backing_off);
    codec_pack_kv_int(pk, "max_in_flight_seen", cs->max_in_flight_seen);
}

/* "alerts" (support alerts: ring, Redis stream) and "notify"
 * (order.subscribe listeners). */
static void pack_alerts_notify(const stats_snapshot *s, msgpack_packer *pk)
{
    const cache_stats cs = s->cache;
    const notify_stats nst = s->notify;
    codec_pack_cstr(pk, "alerts");
    msgpack_pack_map(pk, 6);
    codec_pack_kv_int(pk, "total", (int64_t)s->alerts_total);
    codec_pack_kv_int(pk, "kept", nst.alerts_kept);
    codec_pack_kv_int(pk, "stream_sent", (int64_t)cs.alerts_sent);
    codec_pack_kv_int(pk, "stream_ok", (int64_t)cs.alerts_ok);
    codec_pack_kv_int(pk, "stream_failed", (int64_t)cs.alerts_failed);
    codec_pack_kv_int(pk, "stream_skipped", (int64_t)(cs.alerts_skipped + s->alerts_no_cache));
    codec_pack_cstr(pk, "notify");
    msgpack_pack_map(pk, 3);
    codec_pack_kv_int(pk, "subscribers", nst.listeners);
    codec_pack_kv_int(pk, "sent", (int64_t)nst.sent);
    codec_pack_kv_int(pk, "dropped", (int64_t)nst.dropped);
}

/* "lines": reserves with lines (orders of several lines). */
static void pack_lines_stats(const stats_snapshot *s, msgpack_packer *pk)
{
    const cart_stats cs = s->cart;
    const eng_stats *es = &s->engine;
    codec_pack_cstr(pk, "lines");
    msgpack_pack_map(pk, 17);
    codec_pack_kv_int(pk, "reserves", (int64_t)s->lines_reserves);
    codec_pack_kv_int(pk, "lines", (int64_t)s->lines_total);
    codec_pack_kv_int(pk, "coordinated", (int64_t)s->lines_coordinated);
    codec_pack_kv_bool(pk, "coordinator", s->coordinator);
    codec_pack_kv_int(pk, "cart_confirmed", (int64_t)cs.confirmed);
    codec_pack_kv_int(pk, "cart_aborted", (int64_t)cs.aborted);
    codec_pack_kv_int(pk, "cart_unavailable", (int64_t)cs.unavailable);
    codec_pack_kv_int(pk, "cart_inflight", cs.inflight);
    /* a failed line's cascade onto the other parts, whole-order updates */
    codec_pack_kv_int(pk, "cart_cascades", (int64_t)cs.cascades);
    codec_pack_kv_int(pk, "cart_cascade_gave_up", (int64_t)cs.cascade_gave_up);
    codec_pack_kv_int(pk, "cart_updates_sent", (int64_t)cs.updates_sent);
    codec_pack_kv_int(pk, "cart_updates_told", (int64_t)s->notify.updates_told);
    codec_pack_kv_int(pk, "cart_updates_repeated", (int64_t)s->notify.updates_repeated);
    /* carts waiting for each other instead of refusing (engine.h "Waiting") */
    codec_pack_kv_int(pk, "cart_sequential", (int64_t)cs.sequential);
    codec_pack_kv_int(pk, "parts_waiting", es->parked);
    codec_pack_kv_int(pk, "part_waits", (int64_t)es->park_waits);
    codec_pack_kv_int(pk, "part_wait_timeouts", (int64_t)es->park_timeouts);
}

void stats_pack(const stats_snapshot *s, msgpack_packer *pk)
{
    const eng_stats es = s->engine;
    const store_stats ss = s->store;
    msgpack_pack_map(pk, 15);
    codec_pack_kv_str(pk, "node", s->node);
    codec_pack_kv_int(pk, "uptime_ms", s->uptime_ms);

    codec_pack_cstr(pk, "cluster");
    const peer_stats ps = s->peers;
    msgpack_pack_map(pk, 15);
    codec_pack_kv_bool(pk, "sharded", s->sharded);
    codec_pack_kv_int(pk, "nodes", s->nodes);
    char ver[24];
    snprintf(ver, sizeof ver, "%016llx", (unsigned long long)s->ring_version);
    codec_pack_kv_str(pk, "ring_version", ver);
    codec_pack_kv_int(pk, "ring_changes", (int64_t)s->ring_changes);
    codec_pack_kv_int(pk, "forwarded", (int64_t)s->forwarded);
    codec_pack_kv_int(pk, "forward_failed", (int64_t)s->forward_failed);
    codec_pack_kv_int(pk, "not_owner", (int64_t)s->not_owner);
    codec_pack_kv_int(pk, "fence_drops", (int64_t)s->fence_drops);
    codec_pack_kv_int(pk, "order_lookups", (int64_t)s->order_lookups);
    codec_pack_kv_int(pk, "forget_pending", (int64_t)s->forget_pending);
    const conn_stats cst = s->conns;
    codec_pack_kv_int(pk, "peer_inflight", ps.inflight);
    /* peer handshakes accepted here / refused here; made by us / failed */
    codec_pack_kv_int(pk, "peer_auth_ok", (int64_t)s->peer_auth_ok);
    codec_pack_kv_int(pk, "peer_auth_failed", (int64_t)s->peer_auth_failed);
    codec_pack_kv_int(pk, "peer_auth_out_ok", (int64_t)ps.auth_ok);
    codec_pack_kv_int(pk, "peer_only_refused", (int64_t)s->peer_only_refused);

    codec_pack_cstr(pk, "connections");
    msgpack_pack_map(pk, 11);
    codec_pack_kv_int(pk, "current", cst.current);
    codec_pack_kv_int(pk, "total", (int64_t)cst.total);
    codec_pack_kv_int(pk, "refused", (int64_t)cst.refused);
    codec_pack_kv_int(pk, "closed_bad_input", (int64_t)cst.closed_bad);
    codec_pack_kv_int(pk, "closed_idle", (int64_t)cst.closed_idle);
    codec_pack_kv_int(pk, "closed_stalled", (int64_t)cst.closed_stalled);
    codec_pack_kv_int(pk, "output_bytes", (int64_t)cst.output_bytes);
    codec_pack_kv_int(pk, "output_paused", (int64_t)cst.output_paused);
    codec_pack_kv_int(pk, "accept_errors", (int64_t)cst.accept_errors);
    codec_pack_kv_int(pk, "accept_pauses", (int64_t)cst.accept_pauses);
    codec_pack_kv_int(pk, "values_refused", (int64_t)cst.values_refused);

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

    pack_latency(s, pk);

    codec_pack_cstr(pk, "queue");
    msgpack_pack_map(pk, 4);
    codec_pack_kv_int(pk, "queued", es.queued);
    codec_pack_kv_int(pk, "queued_max_sku", es.queued_max_sku);
    codec_pack_kv_int(pk, "per_sku_max", s->queue_per_sku_max);
    codec_pack_kv_int(pk, "total_max", s->queue_total_max);

    codec_pack_cstr(pk, "batches");
    msgpack_pack_map(pk, 7);
    codec_pack_kv_int(pk, "batches", (int64_t)es.batches);
    codec_pack_kv_int(pk, "batch_ops", (int64_t)es.batch_ops);
    codec_pack_kv_int(pk, "mean_batch_x1000", es.batches ? (int64_t)(es.batch_ops * 1000 / es.batches) : 0);
    codec_pack_kv_int(pk, "committed", (int64_t)es.batches_committed);
    codec_pack_kv_int(pk, "aborted", (int64_t)es.batches_aborted);
    codec_pack_kv_int(pk, "unknown", (int64_t)es.batches_unknown);
    codec_pack_kv_int(pk, "in_flight", es.batches_in_flight);

    codec_pack_cstr(pk, "commits");
    msgpack_pack_map(pk, 8);
    codec_pack_kv_int(pk, "ok", (int64_t)ss.commits_ok);
    codec_pack_kv_int(pk, "aborted", (int64_t)ss.commits_aborted);
    codec_pack_kv_int(pk, "unknown", (int64_t)ss.commits_unknown);
    codec_pack_kv_int(pk, "resolves", (int64_t)ss.resolves);
    codec_pack_kv_int(pk, "reconnects", (int64_t)ss.reconnects);
    codec_pack_kv_int(pk, "latency_us_mean", ss.commits_ok ? (int64_t)(ss.commit_us_total / ss.commits_ok) : 0);
    codec_pack_kv_int(pk, "latency_us_max", (int64_t)ss.commit_us_max);
    codec_pack_kv_int(pk, "conns_up", ss.conns_up);

    pack_read_path(s, pk);
    pack_supplier(s, pk);
    pack_alerts_notify(s, pk);
    codec_pack_cstr(pk, "state");
    msgpack_pack_map(pk, 8);
    codec_pack_kv_int(pk, "skus", (int64_t)es.skus);
    codec_pack_kv_int(pk, "orders", (int64_t)es.orders);
    codec_pack_kv_int(pk, "holds_expired", (int64_t)es.holds_expired);
    codec_pack_kv_int(pk, "skus_set_aside", (int64_t)es.skus_aside);
    codec_pack_kv_int(pk, "orders_set_aside", (int64_t)es.orders_aside);
    codec_pack_kv_int(pk, "set_aside_alerts_dropped", (int64_t)es.aside_alerts_dropped);
    codec_pack_kv_bool(pk, "store_up", s->store_up);
    codec_pack_kv_int(pk, "outcome_unknown", (int64_t)s->outcome_unknown);
    pack_lines_stats(s, pk);
}


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
