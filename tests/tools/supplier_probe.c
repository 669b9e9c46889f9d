/* supplier_probe — drives the supplier client (include/stockd/supplier.h)
 * on its own libevent loop against a 1688 gateway (tools/fake1688), for the
 * integration test tests/integration/test_supplier_client.py.
 *
 *   supplier_probe [options] product OFFER
 *   supplier_probe [options] preview OFFER SPEC QTY [OFFER SPEC QTY ...]
 *   supplier_probe [options] create OFFER SPEC QTY [OFFER SPEC QTY ...]
 *   supplier_probe [options] view ORDER_ID          (or --out ID: by outOrderId)
 *   supplier_probe [options] cancel ORDER_ID
 *
 * Credentials come from the environment only (never argv, which ps shows):
 * STOCKD_FAKE1688 (base URL), STOCKD_FAKE1688_APP_KEY, and the secret and
 * token from the variables named by --secret-env / --token-env (default
 * STOCKD_FAKE1688_APP_SECRET / STOCKD_FAKE1688_ACCESS_TOKEN).
 *
 * Prints one JSON line per finished call, then one {"stats": ...} line.
 * Exit 0 when every call finished (whatever its outcome), 2 on bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "stockd/log.h"
#include "stockd/supplier.h"

#define PROBE_LINES_MAX 8
#define PROBE_REPEAT_MAX 10000

typedef struct probe {
    supplier_client_config cfg;
    const char *secret_env, *token_env;
    const char *out_order_id;
    const char *address;
    const char *flow;
    bool idempotent;
    long repeat;
    long pending;
    struct event_base *base;
} probe;

static void usage(void)
{
    fprintf(stderr,
            "usage: supplier_probe [--url U] [--timeout-ms N] [--connect-timeout-ms N]\n"
            "  [--max-response N] [--concurrency N] [--rate R] [--burst N] [--attempts N]\n"
            "  [--backoff-ms N] [--backoff-max-ms N] [--repeat N] [--seed N] [--out ID]\n"
            "  [--idempotent] [--flow F] [--address JSON] [--log-level L]\n"
            "  [--secret-env VAR] [--token-env VAR]\n"
            "  product OFFER | preview|create OFFER SPEC QTY... | view ID | cancel ID\n");
    exit(2);
}

static long num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "supplier_probe: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static json_t *typed_json(const supplier_reply *r)
{
    json_t *o = json_object();
    switch (r->api) {
    case SUPPLIER_API_PRODUCT_GET: {
        const supplier_product *p = &r->u.product;
        json_t *skus = json_array();
        for (size_t i = 0; i < p->n_skus; i++) {
            const supplier_sku *s = &p->skus[i];
            char fp[24];
            snprintf(fp, sizeof fp, "%016llx", (unsigned long long)s->fingerprint);
            json_array_append_new(skus, json_pack("{sIsssIsIssss}", "sku_id",
                                                  (json_int_t)s->sku_id, "spec_id", s->spec_id,
                                                  "amount_on_sale", (json_int_t)s->amount_on_sale,
                                                  "price_fen", (json_int_t)s->price_fen,
                                                  "attrs", s->attrs, "fingerprint", fp));
        }
        json_object_set_new(o, "product",
                            json_pack("{sIsssbsbsIsIsIsiso}", "offer_id",
                                      (json_int_t)p->offer_id, "status", p->status, "published",
                                      p->published, "support_online_trade",
                                      p->support_online_trade, "amount_on_sale",
                                      (json_int_t)p->amount_on_sale, "min_order_quantity",
                                      (json_int_t)p->min_order_quantity, "batch_number",
                                      (json_int_t)p->batch_number, "inv_reduce_type",
                                      p->inv_reduce_type, "skus", skus));
        break;
    }
    case SUPPLIER_API_PREVIEW: {
        const supplier_preview *p = &r->u.preview;
        json_t *lines = json_array();
        for (size_t i = 0; i < p->n_lines; i++)
            json_array_append_new(lines, json_pack("{sIsssIsIsI}", "offer_id",
                                                   (json_int_t)p->lines[i].offer_id, "spec_id",
                                                   p->lines[i].spec_id, "sku_id",
                                                   (json_int_t)p->lines[i].sku_id, "amount_fen",
                                                   (json_int_t)p->lines[i].amount_fen,
                                                   "unit_price_fen",
                                                   (json_int_t)p->lines[i].unit_price_fen));
        json_object_set_new(o, "preview",
                            json_pack("{sIsIsIsssIso}", "sum_payment_fen",
                                      (json_int_t)p->sum_payment_fen, "sum_carriage_fen",
                                      (json_int_t)p->sum_carriage_fen,
                                      "sum_payment_no_carriage_fen",
                                      (json_int_t)p->sum_payment_no_carriage_fen, "flow_flag",
                                      p->flow_flag, "entries", (json_int_t)p->n_entries, "lines",
                                      lines));
        break;
    }
    case SUPPLIER_API_CREATE: {
        const supplier_created *c = &r->u.created;
        json_t *ids = json_array();
        for (size_t i = 0; i < c->n_orders; i++)
            json_array_append_new(ids, json_string(c->order_ids[i]));
        json_object_set_new(o, "created",
                            json_pack("{sosIsI}", "order_ids", ids, "total_success_amount_fen",
                                      (json_int_t)c->total_success_amount_fen, "post_fee_fen",
                                      (json_int_t)c->post_fee_fen));
        break;
    }
    case SUPPLIER_API_BUYER_VIEW: {
        const supplier_order_view *v = &r->u.view;
        json_t *items = json_array();
        for (size_t i = 0; i < v->n_items; i++)
            json_array_append_new(items, json_pack("{sIsIsssI}", "offer_id",
                                                   (json_int_t)v->items[i].offer_id, "sku_id",
                                                   (json_int_t)v->items[i].sku_id, "spec_id",
                                                   v->items[i].spec_id, "quantity",
                                                   (json_int_t)v->items[i].quantity));
        json_object_set_new(o, "view",
                            json_pack("{sssssssssssIsIso}", "order_id", v->order_id, "status",
                                      v->status, "out_order_id", v->out_order_id, "close_reason",
                                      v->close_reason, "close_operate_type",
                                      v->close_operate_type, "total_amount_fen",
                                      (json_int_t)v->total_amount_fen, "shipping_fee_fen",
                                      (json_int_t)v->shipping_fee_fen, "items", items));
        break;
    }
    default:
        break;
    }
    return o;
}

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) {
        puts(s);
        fflush(stdout);
        free(s);
    }
    json_decref(o);
}

static void done_cb(const supplier_reply *r, void *arg)
{
    probe *p = arg;
    json_t *o = r->res.outcome == SUPPLIER_OK ? typed_json(r) : json_object();
    json_object_set_new(o, "api", json_string(supplier_api_name(r->api)));
    json_object_set_new(o, "outcome", json_string(supplier_outcome_name(r->res.outcome)));
    json_object_set_new(o, "kind", json_string(supplier_kind_name(r->res.kind)));
    json_object_set_new(o, "code", json_string(r->res.code));
    json_object_set_new(o, "message", json_string(r->res.message));
    json_object_set_new(o, "http_status", json_integer(r->res.http_status));
    json_object_set_new(o, "attempts", json_integer(r->attempts));
    print_json(o);
    if (--p->pending == 0)
        event_base_loopbreak(p->base);
}

static size_t read_lines(int argc, char **argv, int i, supplier_cargo_line *lines)
{
    size_t n = 0;
    if (i >= argc || (argc - i) % 3 != 0 || (argc - i) / 3 > PROBE_LINES_MAX)
        usage();
    for (; i + 2 < argc; i += 3, n++) {
        memset(&lines[n], 0, sizeof lines[n]);
        lines[n].offer_id = num(argv[i], 1, (long)9e15);
        snprintf(lines[n].spec_id, sizeof lines[n].spec_id, "%s", argv[i + 1]);
        lines[n].quantity = num(argv[i + 2], 1, 1000000000);
    }
    return n;
}

static int submit_one(probe *p, supplier_client *c, int argc, char **argv, int i)
{
    const char *cmd = argv[i];
    supplier_cargo_line lines[PROBE_LINES_MAX];
    if (strcmp(cmd, "product") == 0 && argc - i == 2)
        return supplier_product_get(c, num(argv[i + 1], 1, (long)9e15), done_cb, p);
    if (strcmp(cmd, "preview") == 0) {
        size_t n = read_lines(argc, argv, i + 1, lines);
        return supplier_order_preview(c, lines, n, p->address, p->flow, done_cb, p);
    }
    if (strcmp(cmd, "create") == 0) {
        size_t n = read_lines(argc, argv, i + 1, lines);
        return supplier_create_order(c, lines, n, p->address, p->flow ? p->flow : "general",
                                     p->out_order_id, p->idempotent, done_cb, p);
    }
    if (strcmp(cmd, "view") == 0 && argc - i == 2)
        return supplier_buyer_view(c, argv[i + 1], NULL, done_cb, p);
    if (strcmp(cmd, "view") == 0 && argc - i == 1 && p->out_order_id)
        return supplier_buyer_view(c, NULL, p->out_order_id, done_cb, p);
    if (strcmp(cmd, "cancel") == 0 && (argc - i == 2 || argc - i == 3))
        return supplier_cancel(c, argv[i + 1], argc - i == 3 ? argv[i + 2] : NULL, done_cb, p);
    usage();
    return -1;
}

static int parse_opts(probe *p, int argc, char **argv)
{
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--idempotent") == 0) {
            p->idempotent = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(o, "--url") == 0) p->cfg.base_url = v;
        else if (strcmp(o, "--timeout-ms") == 0) p->cfg.timeout_ms = (uint32_t)num(v, 1, 600000);
        else if (strcmp(o, "--connect-timeout-ms") == 0)
            p->cfg.connect_timeout_ms = (uint32_t)num(v, 1, 600000);
        else if (strcmp(o, "--max-response") == 0)
            p->cfg.max_response_bytes = (size_t)num(v, 1, 1L << 30);
        else if (strcmp(o, "--concurrency") == 0) p->cfg.max_in_flight = (uint32_t)num(v, 1, 100000);
        else if (strcmp(o, "--rate") == 0) p->cfg.rate_per_s = (double)num(v, 1, 1000000);
        else if (strcmp(o, "--burst") == 0) p->cfg.burst = (uint32_t)num(v, 1, 1000000);
        else if (strcmp(o, "--attempts") == 0) p->cfg.max_attempts = (uint32_t)num(v, 1, 1000);
        else if (strcmp(o, "--backoff-ms") == 0) p->cfg.backoff_base_ms = (uint32_t)num(v, 1, 3600000);
        else if (strcmp(o, "--backoff-max-ms") == 0)
            p->cfg.backoff_max_ms = (uint32_t)num(v, 1, 3600000);
        else if (strcmp(o, "--repeat") == 0) p->repeat = num(v, 1, PROBE_REPEAT_MAX);
        else if (strcmp(o, "--seed") == 0) p->cfg.seed = (uint64_t)num(v, 1, (long)9e15);
        else if (strcmp(o, "--out") == 0) p->out_order_id = v;
        else if (strcmp(o, "--flow") == 0) p->flow = v;
        else if (strcmp(o, "--address") == 0) p->address = v;
        else if (strcmp(o, "--secret-env") == 0) p->secret_env = v;
        else if (strcmp(o, "--token-env") == 0) p->token_env = v;
        else if (strcmp(o, "--log-level") == 0) {
            if (log_set_level_name(v) != 0)
                usage();
        } else
            usage();
    }
    if (i >= argc)
        usage();
    return i;
}

static void print_stats(const supplier_client *c, double elapsed)
{
    supplier_stats st;
    supplier_client_stats(c, &st);
    json_t *kinds = json_object();
    for (int k = 1; k < SUPPLIER_KIND__N; k++)
        json_object_set_new(kinds, supplier_kind_name((supplier_kind)k),
                            json_integer((json_int_t)st.by_kind[k]));
    print_json(json_pack("{s{sIsIsIsIsIsIsIsisoss}sf}", "stats", "calls", (json_int_t)st.calls,
                         "attempts", (json_int_t)st.attempts, "retries",
                         (json_int_t)st.retries, "ok", (json_int_t)st.ok, "retryable",
                         (json_int_t)st.retryable, "definitive", (json_int_t)st.definitive,
                         "refused", (json_int_t)st.refused, "max_in_flight_seen",
                         (int)st.max_in_flight_seen, "by_kind", kinds, "version",
                         STOCKD_VERSION, "elapsed_s", elapsed));
}

int main(int argc, char **argv)
{
    probe p;
    memset(&p, 0, sizeof p);
    supplier_client_config_defaults(&p.cfg);
    p.cfg.base_url = getenv("STOCKD_FAKE1688");
    p.cfg.app_key = getenv("STOCKD_FAKE1688_APP_KEY");
    p.secret_env = "STOCKD_FAKE1688_APP_SECRET";
    p.token_env = "STOCKD_FAKE1688_ACCESS_TOKEN";
    p.address = "{\"addressId\":1234}";
    p.repeat = 1;
    int i = parse_opts(&p, argc, argv);
    p.cfg.app_secret = getenv(p.secret_env);
    p.cfg.access_token = getenv(p.token_env);
    if (supplier_global_init() != 0)
        return 1;
    p.base = event_base_new();
    char err[256];
    supplier_client *c = p.base ? supplier_client_new(p.base, &p.cfg, err, sizeof err) : NULL;
    if (!c) {
        fprintf(stderr, "supplier_probe: %s\n", p.base ? err : "event_base_new failed");
        return 2;
    }
    double t0 = now_s();
    for (long k = 0; k < p.repeat; k++) {
        if (submit_one(&p, c, argc, argv, i) != 0) {
            fprintf(stderr, "supplier_probe: call refused (arguments or queue)\n");
            break;
        }
        p.pending++;
    }
    if (p.pending > 0)
        event_base_dispatch(p.base);
    print_stats(c, now_s() - t0);
    supplier_client_free(c);
    event_base_free(p.base);
    supplier_global_cleanup();
    return 0;
}
