/* stockctl_args.c — the command line: flags and their values (--opt V or
 * --opt=V), the usage text, and which options belong to which command.
 */
#include "stockctl_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char ctl_usage_text[] =
    "usage: stockctl [--addr HOST:PORT] [--json] [--token T] [--timeout MS] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  ping                               node name, version and round trip\n"
    "  get SKU                            stock view of a SKU\n"
    "  reserve ORDER SKU QTY [--hold MS] [--deadline MS]\n"
    "                                     reserve QTY units (held for MS ms with --hold)\n"
    "  reserve ORDER --line SKU:QTY [--line SKU:QTY ...] [--hold MS] [--deadline MS]\n"
    "                                     reserve an order of several lines (1..50): all\n"
    "                                     lines or none; lines of one SKU are summed\n"
    "  confirm ORDER | release ORDER | ship ORDER | order ORDER\n"
    "  sku-put SKU [--own N] [--supplier-reported N]\n"
    "              [--supplier SUPPLIER_ID:OFFER_ID:SPEC_ID[:SKU_ID]] [--cap N]\n"
    "                                     create or update a SKU (admin); --cap: most\n"
    "                                     supplier units ever sellable (with --supplier)\n"
    "  adjust SKU DELTA REASON            move own_on_hand by DELTA (admin)\n"
    "  import FILE.csv                    sku.put per row; header: sku,own_on_hand[,supplier_reported]\n"
    "  stats                              server counters\n"
    "  alerts [--limit N]                 newest support alerts (1..1000, default 100):\n"
    "                                     at, kind, sku, order_id, reason\n"
    "  supplier-get SUPPLIER              a supplier's trust settings\n"
    "  supplier-put SUPPLIER [--trust X] [--ceiling X] [--event on|off] [--event-trust X]\n"
    "                                     set trust settings (admin; factors 0..1; what\n"
    "                                     is not given keeps its current value)\n"
    "  watch [--count N]                  print order.update notifications (purchased,\n"
    "                                     failed, expired) until ^C or N of them\n"
    "  top [--interval MS] [--count N]    live view of stats: requests/s by method,\n"
    "                                     p50/p99, queues, batches, MariaDB (q or ^C quits)\n"
    "\n"
    "options:\n"
    "  --addr HOST:PORT   server (default: $STOCKD_ADDR, else " STOCKD_DEFAULT_ADDR ")\n"
    "  --json             print the result or the error as one JSON object\n"
    "  --token T          admin token (default: $STOCKD_ADMIN_TOKEN)\n"
    "  --timeout MS       connect and per-call timeout (default 5000)\n"
    "  -h, --help         this text\n"
    "\n"
    "exit status: 0 ok, 1 server error, 2 usage, 3 transport/protocol failure\n";

int ctl_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("stockctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(try stockctl --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* -------------------------------------------------------------- parsing */

bool ctl_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || (*s != '-' && *s != '+' && (*s < '0' || *s > '9')))
        return false;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* SUPPLIER_ID:OFFER_ID:SPEC_ID[:SKU_ID] into req (pointing into buf). */
bool ctl_parse_supplier(char *buf, stockd_sku_put_req *req)
{
    char *part[4];
    int n = 0;
    /* The fourth part is not cut: a colon left in it is one too many. */
    for (char *p = buf;;) {
        part[n++] = p;
        if (n == 4)
            break;
        char *colon = strchr(p, ':');
        if (!colon)
            break;
        *colon = '\0';
        p = colon + 1;
    }
    if (n < 3 || strchr(part[n - 1], ':') || !*part[0] || !*part[2])
        return false;
    req->has_supplier = true;
    req->supplier_id = part[0];
    req->spec_id = part[2];
    if (!ctl_parse_i64(part[1], 0, INT64_MAX, &req->offer_id))
        return false;
    if (n == 4) {
        req->has_sku_id = true;
        if (!ctl_parse_i64(part[3], 0, INT64_MAX, &req->sku_id))
            return false;
    }
    return true;
}

static bool parse_factor(const char *s, double *out)
{
    char *end;
    errno = 0;
    if (!s || !*s)
        return false;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= 0.0 && v <= 1.0))
        return false;
    *out = v;
    return true;
}

static bool is_number_like(const char *a)
{
    return a[0] == '-' && a[1] >= '0' && a[1] <= '9';
}

/* Returns -1 when parsed, else an exit code (0 for --help). */
int ctl_parse_args(int argc, char **argv, ctl_opts *o)
{
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0' || is_number_like(a)) {
            if (o->npos == CTL_MAX_POS)
                return ctl_usage("too many arguments");
            o->pos[o->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) { only_pos = true; continue; }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(ctl_usage_text, stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) { o->json = true; continue; }
        /* options with a value: --opt V or --opt=V */
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (!v)
            return ctl_usage("%s needs a value", a);
        bool used = true;
        int64_t n = 0;
#define OPT(name) (nlen == strlen(name) && strncmp(a, name, nlen) == 0)
        if (OPT("--addr")) o->addr = v;
        else if (OPT("--token")) o->token = v;
        else if (OPT("--supplier")) o->supplier = v;
        else if (OPT("--timeout")) {
            if (!ctl_parse_i64(v, 1, 3600000, &n))
                return ctl_usage("bad --timeout '%s' (1..3600000 ms)", v);
            o->timeout_ms = (int)n;
        } else if (OPT("--line")) {
            if (o->n_lines == STOCKD_MAX_LINES)
                return ctl_usage("at most %d --line", STOCKD_MAX_LINES);
            o->line_args[o->n_lines++] = v;
        } else if (OPT("--hold")) {
            if (!ctl_parse_i64(v, 1, INT64_MAX, &o->hold_ms))
                return ctl_usage("bad --hold '%s' (ms)", v);
            o->has_hold = true;
        } else if (OPT("--deadline")) {
            if (!ctl_parse_i64(v, 1, INT64_MAX, &o->deadline_ms))
                return ctl_usage("bad --deadline '%s' (ms)", v);
            o->has_deadline = true;
        } else if (OPT("--interval")) {
            if (!ctl_parse_i64(v, 100, 60000, &o->interval_ms))
                return ctl_usage("bad --interval '%s' (100..60000 ms)", v);
            o->has_interval = true;
        } else if (OPT("--count")) {
            if (!ctl_parse_i64(v, 0, 1000000000, &o->top_count))
                return ctl_usage("bad --count '%s'", v);
            o->has_count = true;
        } else if (OPT("--own")) {
            if (!ctl_parse_i64(v, 0, CTL_MAX_QTY_ARG, &o->own))
                return ctl_usage("bad --own '%s'", v);
            o->has_own = true;
        } else if (OPT("--cap")) {
            if (!ctl_parse_i64(v, 0, 1000000000000LL, &o->cap))
                return ctl_usage("bad --cap '%s' (0..10^12)", v);
            o->has_cap = true;
        } else if (OPT("--limit")) {
            if (!ctl_parse_i64(v, 1, 1000, &o->limit))
                return ctl_usage("bad --limit '%s' (1..1000)", v);
            o->has_limit = true;
        } else if (OPT("--trust")) {
            if (!parse_factor(v, &o->trust))
                return ctl_usage("bad --trust '%s' (0..1)", v);
            o->has_trust = true;
        } else if (OPT("--ceiling")) {
            if (!parse_factor(v, &o->ceiling))
                return ctl_usage("bad --ceiling '%s' (0..1)", v);
            o->has_ceiling = true;
        } else if (OPT("--event-trust")) {
            if (!parse_factor(v, &o->event_trust))
                return ctl_usage("bad --event-trust '%s' (0..1)", v);
            o->has_event_trust = true;
        } else if (OPT("--event")) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
                return ctl_usage("bad --event '%s' (on or off)", v);
            o->event_on = strcmp(v, "on") == 0;
            o->has_event = true;
        } else if (OPT("--supplier-reported")) {
            if (!ctl_parse_i64(v, 0, CTL_MAX_QTY_ARG, &o->reported))
                return ctl_usage("bad --supplier-reported '%s'", v);
            o->has_reported = true;
        } else {
            used = false;
        }
#undef OPT
        if (!used)
            return ctl_usage("unknown option %s", a);
        if (!eq)
            i++;
    }
    return -1;
}

/* Options that belong to one command only. */
int ctl_check_cmd_opts(const ctl_opts *o, const char *cmd)
{
    bool is_reserve = strcmp(cmd, "reserve") == 0, is_put = strcmp(cmd, "sku-put") == 0;
    if ((o->has_hold || o->has_deadline) && !is_reserve)
        return ctl_usage("--hold and --deadline only apply to reserve");
    if (o->n_lines > 0 && !is_reserve)
        return ctl_usage("--line only applies to reserve");
    if ((o->has_own || o->has_reported || o->supplier || o->has_cap) && !is_put)
        return ctl_usage("--own, --supplier-reported, --supplier and --cap only apply to sku-put");
    if (o->has_interval && strcmp(cmd, "top") != 0)
        return ctl_usage("--interval only applies to top");
    if (o->has_count && strcmp(cmd, "top") != 0 && strcmp(cmd, "watch") != 0)
        return ctl_usage("--count only applies to top and watch");
    if (o->has_limit && strcmp(cmd, "alerts") != 0)
        return ctl_usage("--limit only applies to alerts");
    if ((o->has_trust || o->has_ceiling || o->has_event || o->has_event_trust) &&
        strcmp(cmd, "supplier-put") != 0)
        return ctl_usage("--trust, --ceiling, --event and --event-trust only apply to supplier-put");
    return -1;
}
