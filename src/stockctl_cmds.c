/* stockctl_cmds.c — the commands and their table, and ctl_main: parse,
 * check, connect, run one command, and the exit code.
 */
#include "stockctl_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stockd/codec.h"

/* ------------------------------------------------------------- commands */

typedef int (*ctl_cmd_fn)(stockd_client *c, const ctl_opts *o);

static int cmd_ping(stockd_client *c, const ctl_opts *o)
{
    char node[128], version[64];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    stockd_rc rc = stockd_ping(c, node, sizeof(node), version, sizeof(version));
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (rc != STOCKD_OK)
        return ctl_report_failure(c, o, rc);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    if (o->json)
        return ctl_print_result(c, o);
    printf("pong from node %s (version %s) in %.2f ms\n", node, version, ms);
    return 0;
}

static int cmd_get(stockd_client *c, const ctl_opts *o)
{
    stockd_stock st;
    return ctl_stock_done(c, o, stockd_stock_get(c, o->pos[1], &st), &st);
}

/* reserve ORDER --line SKU:QTY ...: SKU is everything before the last ':'. */
static int cmd_reserve_lines(stockd_client *c, const ctl_opts *o)
{
    char skus[STOCKD_MAX_LINES][STOCKD_MAX_ID_BYTES + 1];
    stockd_line lines[STOCKD_MAX_LINES];
    for (int i = 0; i < o->n_lines; i++) {
        const char *a = o->line_args[i];
        const char *colon = strrchr(a, ':');
        size_t n = colon ? (size_t)(colon - a) : 0;
        if (n == 0 || n > STOCKD_MAX_ID_BYTES ||
            !ctl_parse_i64(colon + 1, INT64_MIN, INT64_MAX, &lines[i].qty))
            return ctl_usage("bad --line '%s' (SKU:QTY)", a);
        memcpy(skus[i], a, n);
        skus[i][n] = '\0';
        lines[i].sku = skus[i];
    }
    stockd_reserve_lines_req req = {.order_id = o->pos[1], .lines = lines,
                                    .n_lines = (size_t)o->n_lines,
                                    .hold_ms = o->has_hold ? o->hold_ms : 0,
                                    .deadline_ms = o->has_deadline ? o->deadline_ms : 0,
                                    .check = o->check};
    stockd_order ord;
    return ctl_order_done(c, o, stockd_reserve_lines(c, &req, &ord), &ord);
}

static int cmd_reserve(stockd_client *c, const ctl_opts *o)
{
    if (o->n_lines > 0)
        return cmd_reserve_lines(c, o);
    stockd_reserve_req req = {.order_id = o->pos[1], .sku = o->pos[2],
                              .hold_ms = o->has_hold ? o->hold_ms : 0,
                              .deadline_ms = o->has_deadline ? o->deadline_ms : 0,
                              .check = o->check};
    if (!ctl_parse_i64(o->pos[3], INT64_MIN, INT64_MAX, &req.qty))
        return ctl_usage("QTY must be an integer, got '%s'", o->pos[3]);
    stockd_order ord;
    return ctl_order_done(c, o, stockd_reserve(c, &req, &ord), &ord);
}

static int cmd_order_op(stockd_client *c, const ctl_opts *o)
{
    const char *cmd = o->pos[0];
    const char *method = strcmp(cmd, "order") == 0 ? "order.get" : cmd;
    stockd_order ord;
    stockd_rc rc;
    if (strcmp(method, "confirm") == 0)
        rc = stockd_confirm(c, o->pos[1], &ord);
    else if (strcmp(method, "release") == 0)
        rc = stockd_release(c, o->pos[1], &ord);
    else if (strcmp(method, "ship") == 0)
        rc = stockd_ship(c, o->pos[1], &ord);
    else
        rc = stockd_order_get(c, o->pos[1], &ord);
    return ctl_order_done(c, o, rc, &ord);
}

static int cmd_sku_put(stockd_client *c, const ctl_opts *o)
{
    stockd_sku_put_req req = {.sku = o->pos[1], .has_own_on_hand = o->has_own,
                              .own_on_hand = o->own, .has_supplier_reported = o->has_reported,
                              .supplier_reported = o->reported};
    char sup[512];
    if (o->supplier) {
        if (strlen(o->supplier) >= sizeof(sup))
            return ctl_usage("--supplier too long");
        strcpy(sup, o->supplier);
        if (!ctl_parse_supplier(sup, &req))
            return ctl_usage("bad --supplier '%s' (SUPPLIER_ID:OFFER_ID:SPEC_ID[:SKU_ID])",
                             o->supplier);
    }
    if (o->has_cap && !o->supplier)
        return ctl_usage("--cap needs --supplier");
    req.has_cap = o->has_cap;
    req.cap = o->cap;
    stockd_stock st;
    return ctl_stock_done(c, o, stockd_sku_put(c, &req, &st), &st);
}

static int cmd_adjust(stockd_client *c, const ctl_opts *o)
{
    int64_t delta;
    if (!ctl_parse_i64(o->pos[2], INT64_MIN, INT64_MAX, &delta))
        return ctl_usage("DELTA must be an integer, got '%s'", o->pos[2]);
    stockd_stock st;
    return ctl_stock_done(c, o, stockd_stock_adjust(c, o->pos[1], delta, o->pos[3], &st), &st);
}

static int cmd_stats(stockd_client *c, const ctl_opts *o)
{
    const msgpack_object *stats;
    stockd_rc rc = stockd_stats(c, &stats);
    if (rc != STOCKD_OK)
        return ctl_report_failure(c, o, rc);
    return ctl_print_result(c, o);
}

/* ------------------------------------------------------ supplier round */

static void alert_cell(const msgpack_object *m, const char *key, int width)
{
    const msgpack_object *v = codec_map_get(m, key);
    if (v && v->type == MSGPACK_OBJECT_STR)
        printf("%-*.*s", width, (int)v->via.str.size, v->via.str.ptr);
    else
        printf("%-*s", width, "-");
}

static int cmd_alerts(stockd_client *c, const ctl_opts *o)
{
    const msgpack_object *arr;
    stockd_rc rc = stockd_alerts_list(c, o->has_limit ? (unsigned)o->limit : 0, &arr);
    if (rc != STOCKD_OK)
        return ctl_report_failure(c, o, rc);
    if (o->json)
        return ctl_print_result(c, o);
    printf("%-24s  %-22s  %-20s  %-20s  %s\n", "at", "kind", "sku", "order_id", "reason");
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
        const msgpack_object *a = &arr->via.array.ptr[i];
        if (a->type != MSGPACK_OBJECT_MAP)
            continue;
        int64_t at = 0;
        const msgpack_object *t = codec_map_get(a, "at");
        if (t && t->type == MSGPACK_OBJECT_POSITIVE_INTEGER && t->via.u64 < INT64_MAX)
            at = (int64_t)t->via.u64;
        time_t sec = (time_t)(at / 1000);
        struct tm tm;
        char when[32] = "-";
        if (at > 0 && gmtime_r(&sec, &tm))
            snprintf(when + strftime(when, 24, "%Y-%m-%dT%H:%M:%S", &tm), 8, ".%03dZ",
                     (int)(at % 1000));
        printf("%-24s  ", when);
        alert_cell(a, "kind", 22);
        printf("  ");
        alert_cell(a, "sku", 20);
        printf("  ");
        alert_cell(a, "order_id", 20);
        printf("  ");
        alert_cell(a, "reason", 0);
        putchar('\n');
    }
    if (arr->via.array.size == 0)
        printf("(no alerts)\n");
    return 0;
}

static int cmd_supplier_put(stockd_client *c, const ctl_opts *o)
{
    stockd_supplier_put_req req = {
        .supplier_id = o->pos[1], .has_trust = o->has_trust, .trust = o->trust,
        .has_ceiling = o->has_ceiling, .ceiling = o->ceiling, .has_event_mode = o->has_event,
        .event_mode = o->event_on, .has_event_trust = o->has_event_trust,
        .event_trust = o->event_trust, .has_check_before_confirm = o->has_check_first,
        .check_before_confirm = o->check_first};
    const msgpack_object *r;
    stockd_rc rc = stockd_supplier_put(c, &req, &r);
    if (rc != STOCKD_OK)
        return ctl_report_failure(c, o, rc);
    return ctl_print_result(c, o);
}

static int cmd_supplier_get(stockd_client *c, const ctl_opts *o)
{
    const msgpack_object *r;
    stockd_rc rc = stockd_supplier_get(c, o->pos[1], &r);
    if (rc != STOCKD_OK)
        return ctl_report_failure(c, o, rc);
    return ctl_print_result(c, o);
}

/* One line per order.update; with --json the order record as JSON. */
static int cmd_watch(stockd_client *c, const ctl_opts *o)
{
    stockd_rc rc = stockd_order_subscribe(c);
    if (rc != STOCKD_OK)
        return ctl_report_failure(c, o, rc);
    if (!o->json) {
        printf("watching order updates (purchased, failed, expired); ^C to stop\n");
        fflush(stdout);
    }
    for (int64_t n = 0; !o->has_count || o->top_count == 0 || n < o->top_count;) {
        const msgpack_object *msg;
        rc = stockd_next_notification(c, 1000, &msg);
        if (rc != STOCKD_OK)
            return ctl_report_failure(c, o, rc);
        if (msg == NULL)
            continue;
        stockd_order ord;
        if (stockd_notification_order(c, msg, &ord) != STOCKD_OK)
            continue;  /* another kind of notification: not ours to show */
        n++;
        if (o->json) {
            ctl_json_obj(stdout, &msg->via.array.ptr[2].via.array.ptr[0]);
            fputc('\n', stdout);
        } else {
            printf("order %s %s: %" PRId64 " x %s (own %" PRId64 ", supplier %" PRId64 ")",
                   ord.order_id, ord.status, ord.qty, ord.sku, ord.from_own, ord.from_supplier);
            if (ord.upstream_order_id[0])
                printf(" upstream %s", ord.upstream_order_id);
            if (ord.reason[0])
                printf(" reason: %s", ord.reason);
            ctl_human_time(stdout, ord.updated_at);
            putchar('\n');
        }
        fflush(stdout);
    }
    return 0;
}

static int cmd_import(stockd_client *c, const ctl_opts *o)
{
    return ctl_import(c, o->pos[1], o->json);
}

typedef struct ctl_cmd {
    const char *name;
    int nargs;          /* positionals after the command name */
    const char *args;   /* for the usage message */
    ctl_cmd_fn fn;
} ctl_cmd;

static const ctl_cmd ctl_cmds[] = {
    {"ping", 0, "", cmd_ping},
    {"get", 1, "SKU", cmd_get},
    {"reserve", 3, "ORDER SKU QTY", cmd_reserve},
    {"confirm", 1, "ORDER", cmd_order_op},
    {"release", 1, "ORDER", cmd_order_op},
    {"ship", 1, "ORDER", cmd_order_op},
    {"order", 1, "ORDER", cmd_order_op},
    {"sku-put", 1, "SKU", cmd_sku_put},
    {"adjust", 3, "SKU DELTA REASON", cmd_adjust},
    {"import", 1, "FILE.csv", cmd_import},
    {"stats", 0, "", cmd_stats},
    {"top", 0, "[--interval MS] [--count N]", ctl_cmd_top},
    {"alerts", 0, "[--limit N]", cmd_alerts},
    {"supplier-put", 1, "SUPPLIER [--trust X] [--ceiling X] [--event on|off] [--event-trust X]",
     cmd_supplier_put},
    {"supplier-get", 1, "SUPPLIER", cmd_supplier_get},
    {"watch", 0, "[--count N]", cmd_watch},
};

int ctl_main(int argc, char **argv)
{
    ctl_opts o = {.timeout_ms = STOCKD_DEFAULT_TIMEOUT_MS, .interval_ms = 1000};
    int r = ctl_parse_args(argc, argv, &o);
    if (r >= 0)
        return r;
    if (o.npos == 0)
        return ctl_usage("no command given");
    const ctl_cmd *cmd = NULL;
    for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
        if (strcmp(ctl_cmds[i].name, o.pos[0]) == 0)
            cmd = &ctl_cmds[i];
    if (!cmd)
        return ctl_usage("unknown command '%s'", o.pos[0]);
    /* reserve ORDER --line ...: the lines replace SKU QTY */
    bool lines = o.n_lines > 0 && strcmp(cmd->name, "reserve") == 0;
    if (o.npos - 1 != (lines ? 1 : cmd->nargs))
        return ctl_usage("usage: stockctl %s %s", cmd->name,
                         lines ? "ORDER --line SKU:QTY [--line SKU:QTY ...]" : cmd->args);
    if ((r = ctl_check_cmd_opts(&o, cmd->name)) >= 0)
        return r;
    if (!o.addr)
        o.addr = getenv("STOCKD_ADDR");
    if (!o.addr || !*o.addr)
        o.addr = STOCKD_DEFAULT_ADDR;
    if (!o.token)
        o.token = getenv("STOCKD_ADMIN_TOKEN");

    stockd_client *c = stockd_client_new();
    if (!c) {
        fputs("stockctl: out of memory\n", stderr);
        return EXIT_TRANSPORT;
    }
    stockd_rc rc = STOCKD_OK;
    if (o.token && *o.token)
        rc = stockd_client_set_token(c, o.token);
    if (rc == STOCKD_OK)
        rc = stockd_client_connect(c, o.addr, o.timeout_ms);
    r = rc == STOCKD_OK ? cmd->fn(c, &o) : ctl_report_failure(c, &o, rc);
    stockd_client_free(c);
    if (fflush(stdout) != 0 && r == 0)
        r = EXIT_TRANSPORT;
    return r;
}
