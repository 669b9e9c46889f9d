/* stockctl — command-line client for stockd, built on the client library.
 *
 * Exit codes: 0 ok, 1 the server answered an error (or an import had bad
 * rows), 2 usage, 3 transport or protocol failure. With --json the result,
 * or the error, is printed to stdout as one JSON object.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "stockd/client.h"
#include "stockd/codec.h"

enum { EXIT_SERVER = 1, EXIT_USAGE = 2, EXIT_TRANSPORT = 3 };

#define CTL_MAX_POS 8
#define CTL_IMPORT_CHUNK 256u        /* sku.put requests in flight per round */
#define CTL_IMPORT_MAX_LINE 4096u
#define CTL_IMPORT_SHOW_ERRORS 10u
#define CTL_MAX_QTY_ARG 1000000000LL

typedef struct ctl_opts {
    const char *addr;
    bool json;
    const char *token;
    int timeout_ms;
    bool has_hold, has_deadline, has_own, has_reported;
    int64_t hold_ms, deadline_ms, own, reported;
    bool has_interval, has_count;
    int64_t interval_ms, top_count;  /* top: refresh period, frames (0 = until ^C) */
    const char *supplier;
    bool has_cap, has_limit, has_trust, has_ceiling, has_event, has_event_trust;
    int64_t cap, limit;
    double trust, ceiling, event_trust;
    bool event_on;
    const char *pos[CTL_MAX_POS];
    int npos;
    const char *line_args[STOCKD_MAX_LINES];  /* reserve --line SKU:QTY */
    int n_lines;
} ctl_opts;

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

static int ctl_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ctl_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("stockctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(try stockctl --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* -------------------------------------------------------------- JSON out */

static void json_str(FILE *f, const char *s, size_t n);

/* Length of the valid UTF-8 sequence at s, 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* overlong, surrogates, beyond U+10FFFF */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Writes s as a JSON string; invalid UTF-8 bytes become U+FFFD. */
static void json_str(FILE *f, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t l = utf8_len(p + i, n - i);
        if (l == 0) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        if (l > 1) {
            fwrite(p + i, 1, l, f);
        } else if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
        i += l;
    }
    fputc('"', f);
}

static void json_hex(FILE *f, const char *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", (unsigned char)p[i]);
    fputc('"', f);
}

/* msgpack -> JSON. Depth is bounded by the client's frame check (32). */
static void json_obj(FILE *f, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: fputs("null", f); break;
    case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", f); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(f, "%" PRIu64, o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(f, "%" PRId64, o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (o->via.f64 != o->via.f64 || o->via.f64 > 1e308 || o->via.f64 < -1e308)
            fputs("null", f);   /* NaN and infinities have no JSON form */
        else
            fprintf(f, "%.17g", o->via.f64);
        break;
    case MSGPACK_OBJECT_STR: json_str(f, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: json_hex(f, o->via.bin.ptr, o->via.bin.size); break;
    case MSGPACK_OBJECT_EXT:
        fprintf(f, "{\"ext\":%d,\"data\":", o->via.ext.type);
        json_hex(f, o->via.ext.ptr, o->via.ext.size);
        fputc('}', f);
        break;
    case MSGPACK_OBJECT_ARRAY:
        fputc('[', f);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                fputc(',', f);
            json_obj(f, &o->via.array.ptr[i]);
        }
        fputc(']', f);
        break;
    case MSGPACK_OBJECT_MAP:
        fputc('{', f);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i)
                fputc(',', f);
            if (kv->key.type == MSGPACK_OBJECT_STR) {
                json_str(f, kv->key.via.str.ptr, kv->key.via.str.size);
            } else {
                /* JSON keys are strings: render the key, then quote that */
                char *buf = NULL;
                size_t len = 0;
                FILE *m = open_memstream(&buf, &len);
                if (m) {
                    json_obj(m, &kv->key);
                    fclose(m);
                    json_str(f, buf, len);
                    free(buf);
                } else {
                    fputs("\"?\"", f);
                }
            }
            fputc(':', f);
            json_obj(f, &kv->val);
        }
        fputc('}', f);
        break;
    default: fputs("null", f); break;
    }
}

/* ------------------------------------------------------------- human out */

static void human_time(FILE *f, int64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];
    if (ms > 0 && gmtime_r(&s, &tm) && strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm))
        fprintf(f, " (%s.%03dZ)", buf, (int)(ms % 1000));
}

static bool key_is_time(const msgpack_object *k)
{
    size_t n = k->via.str.size;
    return k->type == MSGPACK_OBJECT_STR && n > 3 && memcmp(k->via.str.ptr + n - 3, "_at", 3) == 0;
}

/* Prints a map as aligned "key  value" lines; nested maps are indented. */
static void human_map(FILE *f, const msgpack_object *m, int indent)
{
    if (m->type != MSGPACK_OBJECT_MAP) {
        json_obj(f, m);
        fputc('\n', f);
        return;
    }
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        const msgpack_object *v = &m->via.map.ptr[i].val;
        int w = 22 - indent;
        if (k->type == MSGPACK_OBJECT_STR)
            fprintf(f, "%*s%-*.*s", indent, "", w > 0 ? w : 0, (int)k->via.str.size,
                    k->via.str.ptr);
        else
            fprintf(f, "%*s?", indent, "");
        if (v->type == MSGPACK_OBJECT_MAP && v->via.map.size > 0) {
            fputc('\n', f);
            human_map(f, v, indent + 2);
            continue;
        }
        if (v->type == MSGPACK_OBJECT_STR)
            fprintf(f, " %.*s", (int)v->via.str.size, v->via.str.ptr);
        else {
            fputc(' ', f);
            json_obj(f, v);
        }
        if (key_is_time(k) && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 < INT64_MAX)
            human_time(f, (int64_t)v->via.u64);
        fputc('\n', f);
    }
}

/* --------------------------------------------------------------- results */

/* Prints a failure and returns the exit code for it. */
static int ctl_report_failure(stockd_client *c, const ctl_opts *o, stockd_rc rc)
{
    const stockd_error *e = stockd_client_error(c);
    if (rc == STOCKD_ERR_SERVER) {
        if (o->json) {
            printf("{\"error\":{\"code\":");
            json_str(stdout, e->code, strlen(e->code));
            printf(",\"message\":");
            json_str(stdout, e->message, strlen(e->message));
            printf(",\"retryable\":%s", e->retryable ? "true" : "false");
            if (e->has_available)
                printf(",\"available\":%" PRId64, e->available);
            if (e->has_line) {
                printf(",\"line\":%" PRId64 ",\"sku\":", e->line);
                json_str(stdout, e->sku, strlen(e->sku));
            }
            const char *keys[] = {"status", "field", "outcome", "method"};
            const char *vals[] = {e->status, e->field, e->outcome, e->method};
            for (int i = 0; i < 4; i++) {
                if (vals[i][0]) {
                    printf(",\"%s\":", keys[i]);
                    json_str(stdout, vals[i], strlen(vals[i]));
                }
            }
            printf("}}\n");
        } else {
            fprintf(stderr, "stockctl: %s: %s", e->code, e->message);
            if (e->has_line)
                fprintf(stderr, " (line %" PRId64 ", sku %s)", e->line, e->sku);
            if (e->has_available)
                fprintf(stderr, " (available %" PRId64 ")", e->available);
            if (e->status[0])
                fprintf(stderr, " (status %s)", e->status);
            if (e->field[0])
                fprintf(stderr, " (field %s)", e->field);
            if (e->outcome[0])
                fprintf(stderr, " (outcome %s: retry with the same order id)", e->outcome);
            if (e->method[0])
                fprintf(stderr, " (method %s)", e->method);
            fprintf(stderr, "%s\n", e->retryable ? " [retryable]" : "");
        }
        return EXIT_SERVER;
    }
    if (rc == STOCKD_ERR_USAGE) {
        fprintf(stderr, "stockctl: %s\n", stockd_client_errstr(c));
        return EXIT_USAGE;
    }
    const char *code = rc == STOCKD_ERR_PROTOCOL ? "protocol" : "transport";
    if (o->json) {
        printf("{\"error\":{\"code\":\"%s\",\"message\":", code);
        const char *m = stockd_client_errstr(c);
        json_str(stdout, m, strlen(m));
        printf(",\"retryable\":true}}\n");
    } else {
        fprintf(stderr, "stockctl: %s: %s\n", code, stockd_client_errstr(c));
    }
    return EXIT_TRANSPORT;
}

static int ctl_print_result(stockd_client *c, const ctl_opts *o)
{
    const msgpack_object *r = stockd_client_last_result(c);
    if (!r)
        return EXIT_TRANSPORT;
    if (o->json) {
        json_obj(stdout, r);
        fputc('\n', stdout);
    } else {
        human_map(stdout, r, 2);
    }
    return 0;
}

static int ctl_order_done(stockd_client *c, const ctl_opts *o, stockd_rc rc,
                          const stockd_order *ord)
{
    if (rc != STOCKD_OK)
        return ctl_report_failure(c, o, rc);
    if (!o->json && ord->n_lines > 1) {
        printf("order %s %s: %" PRId64 " lines, %" PRId64 " units (own %" PRId64
               ", supplier %" PRId64 ")\n",
               ord->order_id, ord->status, ord->n_lines, ord->qty, ord->from_own,
               ord->from_supplier);
        for (uint32_t i = 0; i < ord->n_lines_listed; i++) {
            const stockd_order_line *l = &ord->lines[i];
            printf("  line %" PRId64 " %s: %" PRId64 " x %s (own %" PRId64 ", supplier %" PRId64
                   ")%s%s\n",
                   l->line, l->status, l->qty, l->sku, l->from_own, l->from_supplier,
                   l->upstream_order_id[0] ? " upstream " : "", l->upstream_order_id);
        }
    } else if (!o->json) {
        printf("order %s %s: %" PRId64 " x %s (own %" PRId64 ", supplier %" PRId64
               "), available now %" PRId64 "\n",
               ord->order_id, ord->status, ord->qty, ord->sku, ord->from_own, ord->from_supplier,
               ord->available);
    }
    return ctl_print_result(c, o);
}

static int ctl_stock_done(stockd_client *c, const ctl_opts *o, stockd_rc rc,
                          const stockd_stock *st)
{
    if (rc != STOCKD_OK)
        return ctl_report_failure(c, o, rc);
    if (!o->json)
        printf("sku %s: available %" PRId64 "\n", st->sku, st->available);
    return ctl_print_result(c, o);
}

/* -------------------------------------------------------------- parsing */

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
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
static bool parse_supplier(char *buf, stockd_sku_put_req *req)
{
    char *part[4];
    int n = 0;
    for (char *p = buf; n < 4;) {
        part[n++] = p;
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
    if (!parse_i64(part[1], 0, INT64_MAX, &req->offer_id))
        return false;
    if (n == 4) {
        req->has_sku_id = true;
        if (!parse_i64(part[3], 0, INT64_MAX, &req->sku_id))
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
static int ctl_parse_args(int argc, char **argv, ctl_opts *o)
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
            if (!parse_i64(v, 1, 3600000, &n))
                return ctl_usage("bad --timeout '%s' (1..3600000 ms)", v);
            o->timeout_ms = (int)n;
        } else if (OPT("--line")) {
            if (o->n_lines == STOCKD_MAX_LINES)
                return ctl_usage("at most %d --line", STOCKD_MAX_LINES);
            o->line_args[o->n_lines++] = v;
        } else if (OPT("--hold")) {
            if (!parse_i64(v, 1, INT64_MAX, &o->hold_ms))
                return ctl_usage("bad --hold '%s' (ms)", v);
            o->has_hold = true;
        } else if (OPT("--deadline")) {
            if (!parse_i64(v, 1, INT64_MAX, &o->deadline_ms))
                return ctl_usage("bad --deadline '%s' (ms)", v);
            o->has_deadline = true;
        } else if (OPT("--interval")) {
            if (!parse_i64(v, 100, 60000, &o->interval_ms))
                return ctl_usage("bad --interval '%s' (100..60000 ms)", v);
            o->has_interval = true;
        } else if (OPT("--count")) {
            if (!parse_i64(v, 0, 1000000000, &o->top_count))
                return ctl_usage("bad --count '%s'", v);
            o->has_count = true;
        } else if (OPT("--own")) {
            if (!parse_i64(v, 0, CTL_MAX_QTY_ARG, &o->own))
                return ctl_usage("bad --own '%s'", v);
            o->has_own = true;
        } else if (OPT("--cap")) {
            if (!parse_i64(v, 0, 1000000000000LL, &o->cap))
                return ctl_usage("bad --cap '%s' (0..10^12)", v);
            o->has_cap = true;
        } else if (OPT("--limit")) {
            if (!parse_i64(v, 1, 1000, &o->limit))
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
            if (!parse_i64(v, 0, CTL_MAX_QTY_ARG, &o->reported))
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
            !parse_i64(colon + 1, INT64_MIN, INT64_MAX, &lines[i].qty))
            return ctl_usage("bad --line '%s' (SKU:QTY)", a);
        memcpy(skus[i], a, n);
        skus[i][n] = '\0';
        lines[i].sku = skus[i];
    }
    stockd_reserve_lines_req req = {.order_id = o->pos[1], .lines = lines,
                                    .n_lines = (size_t)o->n_lines,
                                    .hold_ms = o->has_hold ? o->hold_ms : 0,
                                    .deadline_ms = o->has_deadline ? o->deadline_ms : 0};
    stockd_order ord;
    return ctl_order_done(c, o, stockd_reserve_lines(c, &req, &ord), &ord);
}

static int cmd_reserve(stockd_client *c, const ctl_opts *o)
{
    if (o->n_lines > 0)
        return cmd_reserve_lines(c, o);
    stockd_reserve_req req = {.order_id = o->pos[1], .sku = o->pos[2],
                              .hold_ms = o->has_hold ? o->hold_ms : 0,
                              .deadline_ms = o->has_deadline ? o->deadline_ms : 0};
    if (!parse_i64(o->pos[3], INT64_MIN, INT64_MAX, &req.qty))
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
        if (!parse_supplier(sup, &req))
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
    if (!parse_i64(o->pos[2], INT64_MIN, INT64_MAX, &delta))
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
        .event_trust = o->event_trust};
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
            json_obj(stdout, &msg->via.array.ptr[2].via.array.ptr[0]);
            fputc('\n', stdout);
        } else {
            printf("order %s %s: %" PRId64 " x %s (own %" PRId64 ", supplier %" PRId64 ")",
                   ord.order_id, ord.status, ord.qty, ord.sku, ord.from_own, ord.from_supplier);
            if (ord.upstream_order_id[0])
                printf(" upstream %s", ord.upstream_order_id);
            if (ord.reason[0])
                printf(" reason: %s", ord.reason);
            human_time(stdout, ord.updated_at);
            putchar('\n');
        }
        fflush(stdout);
    }
    return 0;
}

/* ------------------------------------------------------------------ top */

/* `stockctl top`: a live view of `stats`, refreshed every --interval ms.
 * Rates are deltas between two polls divided by the local time between
 * them; p50/p99 are the server's, over its whole uptime. A lost connection
 * is shown and retried at the next refresh. */

#define TOP_METHODS_MAX 16
#define TOP_NAME_MAX 32

typedef struct top_method {
    char name[TOP_NAME_MAX];
    int64_t total, ok, p50, p99;
} top_method;

typedef struct top_snap {
    int64_t t_ms;                   /* local monotonic time of the poll */
    char node[72];
    int64_t uptime_ms, conns;
    top_method m[TOP_METHODS_MAX];
    int nm;
    int64_t queued, queued_max_sku, per_sku_max, total_max;
    int64_t batches, batch_ops, in_flight;
    int64_t commits_ok, commits_aborted, commits_unknown, commit_mean_us, commit_max_us;
    int64_t db_conns_up, skus, orders, outcome_unknown;
    bool store_up;
    bool has_redis, redis_up;       /* from read_path.cache, when the server has it */
    int64_t redis_dirty, redis_sets_failed;
} top_snap;

static int64_t top_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const msgpack_object *top_sub(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = m ? codec_map_get(m, key) : NULL;
    return v && v->type == MSGPACK_OBJECT_MAP ? v : NULL;
}

static int64_t top_int(const msgpack_object *m, const char *key)
{
    const msgpack_object *v = m ? codec_map_get(m, key) : NULL;
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
        return (int64_t)v->via.u64;
    if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return v->via.i64;
    if (v && v->type == MSGPACK_OBJECT_BOOLEAN)
        return v->via.boolean;
    return 0;
}

static void top_str(const msgpack_object *o, char *buf, size_t len)
{
    buf[0] = '\0';
    if (o && o->type == MSGPACK_OBJECT_STR) {
        size_t n = o->via.str.size < len - 1 ? o->via.str.size : len - 1;
        memcpy(buf, o->via.str.ptr, n);
        buf[n] = '\0';
    }
}

/* Copies what the view shows out of a stats map (valid until the next call). */
static void top_take(const msgpack_object *st, top_snap *s)
{
    memset(s, 0, sizeof(*s));
    s->t_ms = top_now_ms();
    top_str(codec_map_get(st, "node"), s->node, sizeof(s->node));
    s->uptime_ms = top_int(st, "uptime_ms");
    s->conns = top_int(top_sub(st, "connections"), "current");
    const msgpack_object *req = top_sub(st, "requests"), *lat = top_sub(st, "latency_us");
    for (uint32_t i = 0; req && i < req->via.map.size && s->nm < TOP_METHODS_MAX; i++) {
        const msgpack_object_kv *kv = &req->via.map.ptr[i];
        if (kv->val.type != MSGPACK_OBJECT_MAP)
            continue;
        top_method *m = &s->m[s->nm++];
        top_str(&kv->key, m->name, sizeof(m->name));
        for (uint32_t r = 0; r < kv->val.via.map.size; r++) {
            const msgpack_object *n = &kv->val.via.map.ptr[r].val;
            if (n->type == MSGPACK_OBJECT_POSITIVE_INTEGER && n->via.u64 <= INT64_MAX)
                m->total += (int64_t)n->via.u64;
        }
        m->ok = top_int(&kv->val, "ok");
        const msgpack_object *l = top_sub(lat, m->name);
        m->p50 = top_int(l, "p50");
        m->p99 = top_int(l, "p99");
    }
    const msgpack_object *q = top_sub(st, "queue"), *b = top_sub(st, "batches");
    const msgpack_object *c = top_sub(st, "commits"), *state = top_sub(st, "state");
    s->queued = top_int(q, "queued");
    s->queued_max_sku = top_int(q, "queued_max_sku");
    s->per_sku_max = top_int(q, "per_sku_max");
    s->total_max = top_int(q, "total_max");
    s->batches = top_int(b, "batches");
    s->batch_ops = top_int(b, "batch_ops");
    s->in_flight = top_int(b, "in_flight");
    s->commits_ok = top_int(c, "ok");
    s->commits_aborted = top_int(c, "aborted");
    s->commits_unknown = top_int(c, "unknown");
    s->commit_mean_us = top_int(c, "latency_us_mean");
    s->commit_max_us = top_int(c, "latency_us_max");
    s->db_conns_up = top_int(c, "conns_up");
    s->skus = top_int(state, "skus");
    s->orders = top_int(state, "orders");
    s->outcome_unknown = top_int(state, "outcome_unknown");
    s->store_up = top_int(state, "store_up") != 0;
    const msgpack_object *cache = top_sub(top_sub(st, "read_path"), "cache");
    if (cache) {
        s->has_redis = true;
        s->redis_up = top_int(cache, "up") != 0;
        s->redis_dirty = top_int(cache, "dirty");
        s->redis_sets_failed = top_int(cache, "sets_failed");
    }
}

static const top_method *top_find(const top_snap *s, const char *name)
{
    for (int i = 0; i < s->nm; i++)
        if (strcmp(s->m[i].name, name) == 0)
            return &s->m[i];
    return NULL;
}

static void top_draw(const top_snap *cur, const top_snap *prev, const char *addr)
{
    int64_t up = cur->uptime_ms / 1000;
    double dt = prev ? (double)(cur->t_ms - prev->t_ms) / 1000.0 : 0.0;
    printf("\033[H\033[2Jstockd top  %s  node %s  up %" PRId64 "h%02" PRId64 "m%02" PRId64
           "s  conns %" PRId64 "  store %s   (q quits)\n\n",
           addr, cur->node, up / 3600, up / 60 % 60, up % 60, cur->conns,
           cur->store_up ? "UP" : "DOWN");
    printf("%-14s %10s %12s %9s %10s %10s\n", "METHOD", "REQ/S", "TOTAL", "ERRORS", "P50_US",
           "P99_US");
    int64_t all = 0;
    double all_rate = 0;
    for (int i = 0; i < cur->nm; i++) {
        const top_method *m = &cur->m[i], *p = prev ? top_find(prev, m->name) : NULL;
        char rate[24] = "-";
        if (prev && dt > 0) {
            double r = (double)(m->total - (p ? p->total : 0)) / dt;
            snprintf(rate, sizeof(rate), "%.1f", r);
            all_rate += r;
        }
        all += m->total;
        printf("%-14s %10s %12" PRId64 " %9" PRId64 " %10" PRId64 " %10" PRId64 "\n", m->name,
               rate, m->total, m->total - m->ok, m->p50, m->p99);
    }
    if (prev && dt > 0)
        printf("%-14s %10.1f %12" PRId64 "\n", "all", all_rate, all);
    printf("\nQUEUE    waiting %" PRId64 " of %" PRId64 "   longest SKU queue seen %" PRId64
           " of %" PRId64 "\n", cur->queued, cur->total_max, cur->queued_max_sku,
           cur->per_sku_max);
    printf("BATCHES  %" PRId64 " (mean %.1f ops)   in flight %" PRId64 "\n", cur->batches,
           cur->batches ? (double)cur->batch_ops / (double)cur->batches : 0.0, cur->in_flight);
    printf("COMMITS  ok %" PRId64 "  aborted %" PRId64 "  unknown %" PRId64 "   mean %" PRId64
           " us  max %" PRId64 " us\n", cur->commits_ok, cur->commits_aborted,
           cur->commits_unknown, cur->commit_mean_us, cur->commit_max_us);
    printf("MARIADB  %s, %" PRId64 " connections up\n", cur->store_up ? "up" : "DOWN",
           cur->db_conns_up);
    if (cur->has_redis)
        printf("REDIS    %s, %" PRId64 " SKUs waiting for a cache refresh, %" PRId64
               " cache writes failed\n", cur->redis_up ? "up" : "DOWN",
               cur->redis_dirty, cur->redis_sets_failed);
    printf("STATE    skus %" PRId64 "  orders %" PRId64 "  answered outcome-unknown %" PRId64
           "\n", cur->skus, cur->orders, cur->outcome_unknown);
    fflush(stdout);
}

/* The terminal while top runs: keys arrive one at a time and unechoed, so
 * `q` quits without Enter, and the cursor is hidden. Every way out puts
 * back what was there: q, the end of --count, and the signals a terminal
 * sends (^C, ^\, hangup), which then end stockctl as the signal would;
 * ^Z restores it while stopped and takes it again on fg. Only
 * async-signal-safe calls below are made from handlers. */
static struct termios top_tio_saved;
static volatile sig_atomic_t top_tio_active;   /* top_tio_saved is to be put back */
static volatile sig_atomic_t top_quit_sig;     /* the signal that ends top, or 0 */
static bool top_tty_out;

static const char top_cursor_hide[] = "\033[?25l", top_cursor_show[] = "\033[?25h";

static void top_term_put_back(void)
{
    if (top_tio_active)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &top_tio_saved);
    if (top_tty_out) {
        ssize_t w = write(STDOUT_FILENO, top_cursor_show, sizeof top_cursor_show - 1);
        (void)w;
    }
}

static void top_term_take(void)
{
    if (top_tio_active) {
        struct termios raw = top_tio_saved;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);  /* ISIG stays: ^C is still SIGINT */
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    if (top_tty_out) {
        ssize_t w = write(STDOUT_FILENO, top_cursor_hide, sizeof top_cursor_hide - 1);
        (void)w;
    }
}

static void top_on_quit(int sig)
{
    top_quit_sig = sig;
}

static void top_on_tstp(int sig)
{
    int saved = errno;
    top_term_put_back();
    signal(sig, SIG_DFL);
    /* Blocked while its handler runs: unblock it, or the raise would be
     * held back until this handler returned and caught again. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);              /* stopped here until SIGCONT (ignored if nobody could fg us) */
    struct sigaction sa = {.sa_handler = top_on_tstp};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTSTP, &sa, NULL);
    top_term_take();
    errno = saved;
}

static void top_term_begin(void)
{
    top_tty_out = isatty(STDOUT_FILENO);
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &top_tio_saved) == 0)
        top_tio_active = 1;
    /* No SA_RESTART: a signal ends the wait between refreshes at once. */
    struct sigaction sa = {.sa_handler = top_on_quit};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sa.sa_handler = top_on_tstp;
    sigaction(SIGTSTP, &sa, NULL);
    top_term_take();
}

/* Puts the terminal back; after a signal, ends the process by it (so a
 * shell or script sees ^C as ^C). */
static void top_term_end(void)
{
    fflush(stdout);
    signal(SIGTSTP, SIG_DFL);
    top_term_put_back();
    top_tio_active = 0;
    if (top_quit_sig) {
        signal(top_quit_sig, SIG_DFL);
        raise(top_quit_sig);
    }
}

/* Waits ms, or less when q is typed or a signal ends top: true to quit. */
static bool top_wait_ms(int64_t ms)
{
    int64_t until = top_now_ms() + ms;
    for (;;) {
        if (top_quit_sig)
            return true;
        int64_t left = until - top_now_ms();
        if (left <= 0)
            return false;
        if (!top_tio_active) {
            struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};
            nanosleep(&ts, NULL);  /* EINTR: the loop looks at top_quit_sig */
            continue;
        }
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int n = poll(&p, 1, (int)left);
        if (n <= 0)
            continue;  /* timeout or EINTR */
        if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
            return true;  /* the terminal is gone */
        char keys[64];
        ssize_t got = read(STDIN_FILENO, keys, sizeof keys);
        if (got == 0)
            return true;
        for (ssize_t i = 0; i < got; i++)
            if (keys[i] == 'q' || keys[i] == 'Q')
                return true;
    }
}

static int cmd_top(stockd_client *c, const ctl_opts *o)
{
    top_snap snaps[2];
    top_snap *cur = &snaps[0], *prev = NULL;
    top_term_begin();
    for (int64_t n = 0; o->top_count == 0 || n < o->top_count; n++) {
        if (n > 0 && top_wait_ms(o->interval_ms))
            break;
        if (top_quit_sig)
            break;
        const msgpack_object *st;
        stockd_rc rc = stockd_client_connected(c) ? STOCKD_OK
                                                  : stockd_client_connect(c, o->addr, o->timeout_ms);
        if (rc == STOCKD_OK)
            rc = stockd_stats(c, &st);
        if (rc != STOCKD_OK) {
            printf("\033[H\033[2Jstockd top  %s  unreachable: %s (retrying every %" PRId64
                   " ms; q quits)\n", o->addr, stockd_client_errstr(c), o->interval_ms);
            fflush(stdout);
            stockd_client_close(c);
            prev = NULL;
            continue;
        }
        top_take(st, cur);
        top_draw(cur, prev, o->addr);
        prev = cur;
        cur = cur == &snaps[0] ? &snaps[1] : &snaps[0];
    }
    top_term_end();
    return 0;
}

static int ctl_import(stockd_client *c, const char *path, bool json);

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
    {"top", 0, "[--interval MS] [--count N]", cmd_top},
    {"alerts", 0, "[--limit N]", cmd_alerts},
    {"supplier-put", 1, "SUPPLIER [--trust X] [--ceiling X] [--event on|off] [--event-trust X]",
     cmd_supplier_put},
    {"supplier-get", 1, "SUPPLIER", cmd_supplier_get},
    {"watch", 0, "[--count N]", cmd_watch},
};

/* Options that belong to one command only. */
static int ctl_check_cmd_opts(const ctl_opts *o, const char *cmd)
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

/* ---------------------------------------------------------------- import */

typedef struct import_row {
    unsigned long line;
    char sku[STOCKD_MAX_ID_BYTES + 1];
    bool has_own, has_rep;
    int64_t own, rep;
} import_row;

typedef struct import_err {
    unsigned long line;
    char msg[240];
} import_err;

typedef struct import_state {
    stockd_client *c;
    bool json;
    unsigned long rows, imported, rejected, failed;
    import_err errs[CTL_IMPORT_SHOW_ERRORS];
    unsigned n_errs;
    import_row chunk[CTL_IMPORT_CHUNK];
    uint32_t msgid[CTL_IMPORT_CHUNK];
    size_t n;
} import_state;

static void import_note(import_state *st, unsigned long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps the errors of the lowest line numbers for the summary (replies
 * arrive in any order, rejected lines are seen before earlier rows'
 * replies), so the summary shows the first bad lines of the file. */
static void import_note(import_state *st, unsigned long line, const char *fmt, ...)
{
    import_err *e = NULL;
    if (st->n_errs < CTL_IMPORT_SHOW_ERRORS) {
        e = &st->errs[st->n_errs++];
    } else {
        for (unsigned i = 0; i < st->n_errs; i++)
            if (!e || st->errs[i].line > e->line)
                e = &st->errs[i];
        if (e->line < line)
            return;
    }
    e->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

static int import_err_cmp(const void *a, const void *b)
{
    unsigned long x = ((const import_err *)a)->line, y = ((const import_err *)b)->line;
    return (x > y) - (x < y);
}

/* Splits a CSV line in place (RFC 4180 quoting, no embedded newlines).
 * Returns the field count, or -1 on broken quoting / too many fields. */
static int csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max)
            return -1;
        while (*p == ' ' || *p == '\t')
            p++;
        char *out = p, *start = p;
        if (*p == '"') {
            for (p++;; p++) {
                if (*p == '\0')
                    return -1;
                if (*p == '"') {
                    if (p[1] != '"')
                        break;
                    p++;
                }
                *out++ = *p;
            }
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p != ',' && *p != '\0')
                return -1;
        } else {
            while (*p != ',' && *p != '\0')
                p++;
            out = p;
            while (out > start && (out[-1] == ' ' || out[-1] == '\t'))
                out--;
        }
        char sep = *p;
        *out = '\0';
        fields[n++] = start;
        if (sep == '\0')
            return n;
        p++;
    }
}

static bool import_int(const char *s, bool *has, int64_t *v)
{
    *has = *s != '\0';
    return !*has || (s[0] != '-' && parse_i64(s, 0, CTL_MAX_QTY_ARG, v));
}

/* Validates one data line into a row. Returns false with a reason noted. */
static bool import_parse_row(import_state *st, char *line, unsigned long lineno, int ncols,
                             import_row *row)
{
    char *f[4];
    int n = csv_split(line, f, 4);
    if (n != ncols) {
        import_note(st, lineno, n < 0 ? "bad CSV quoting" : "expected %d fields, got %d",
                    ncols, n);
        return false;
    }
    size_t len = strlen(f[0]);
    if (len == 0 || len > STOCKD_MAX_ID_BYTES) {
        import_note(st, lineno, "sku must be 1..%d bytes", STOCKD_MAX_ID_BYTES);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)f[0][i] < 0x20 || f[0][i] == 0x7f) {
            import_note(st, lineno, "sku contains a control character");
            return false;
        }
    }
    memcpy(row->sku, f[0], len + 1);
    row->line = lineno;
    if (!import_int(f[1], &row->has_own, &row->own)) {
        import_note(st, lineno, "bad own_on_hand '%.40s' (0..%lld)", f[1], CTL_MAX_QTY_ARG);
        return false;
    }
    row->has_rep = false;
    if (ncols == 3 && !import_int(f[2], &row->has_rep, &row->rep)) {
        import_note(st, lineno, "bad supplier_reported '%.40s' (0..%lld)", f[2],
                    CTL_MAX_QTY_ARG);
        return false;
    }
    return true;
}

/* Sends the chunk pipelined and matches the replies by msgid. Returns
 * STOCKD_OK or the transport/protocol failure that stopped it. */
static stockd_rc import_flush(import_state *st)
{
    size_t sent = 0;
    stockd_rc rc = STOCKD_OK;
    for (; sent < st->n; sent++) {
        const import_row *row = &st->chunk[sent];
        stockd_sku_put_req req = {.sku = row->sku, .has_own_on_hand = row->has_own,
                                  .own_on_hand = row->own, .has_supplier_reported = row->has_rep,
                                  .supplier_reported = row->rep};
        rc = stockd_send_sku_put(st->c, &req, &st->msgid[sent]);
        if (rc != STOCKD_OK)
            break;
    }
    for (size_t got = 0; rc == STOCKD_OK && got < sent; got++) {
        stockd_reply reply;
        stockd_rc r = stockd_recv_any(st->c, &reply);
        if (r != STOCKD_OK && r != STOCKD_ERR_SERVER) {
            rc = r;
            break;
        }
        size_t i = 0;
        while (i < sent && st->msgid[i] != reply.msgid)
            i++;
        if (i == sent) {
            rc = STOCKD_ERR_PROTOCOL;
            break;
        }
        if (r == STOCKD_OK) {
            st->imported++;
        } else {
            const stockd_error *e = stockd_client_error(st->c);
            st->failed++;
            import_note(st, st->chunk[i].line, "sku %s: %s: %s%s%s", st->chunk[i].sku, e->code,
                        e->message, e->field[0] ? " field " : "", e->field);
        }
    }
    st->n = 0;
    return rc;
}

static void import_summary(import_state *st, const char *path)
{
    qsort(st->errs, st->n_errs, sizeof(st->errs[0]), import_err_cmp);
    if (!st->json) {
        for (unsigned i = 0; i < st->n_errs; i++)
            fprintf(stderr, "line %lu: %s\n", st->errs[i].line, st->errs[i].msg);
        if (st->rejected + st->failed > st->n_errs)
            fprintf(stderr, "... and %lu more errors\n",
                    st->rejected + st->failed - st->n_errs);
        printf("import %s: %lu rows, %lu imported, %lu rejected (bad lines), %lu failed "
               "(server errors)\n", path, st->rows, st->imported, st->rejected, st->failed);
        return;
    }
    printf("{\"file\":");
    json_str(stdout, path, strlen(path));
    printf(",\"rows\":%lu,\"imported\":%lu,\"rejected\":%lu,\"failed\":%lu,\"errors\":[",
           st->rows, st->imported, st->rejected, st->failed);
    for (unsigned i = 0; i < st->n_errs; i++) {
        printf("%s{\"line\":%lu,\"error\":", i ? "," : "", st->errs[i].line);
        json_str(stdout, st->errs[i].msg, strlen(st->errs[i].msg));
        putchar('}');
    }
    printf("]}\n");
}

/* Reads one line into buf (without the newline). Returns 1, 0 at EOF, or
 * -1 when the line was longer than the buffer (the rest is skipped). */
static int import_read_line(FILE *f, char *buf, size_t len)
{
    if (!fgets(buf, (int)len, f))
        return 0;
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n') {
        buf[--n] = '\0';
        if (n > 0 && buf[n - 1] == '\r')
            buf[--n] = '\0';
        return 1;
    }
    if (feof(f))
        return 1;   /* last line without a newline */
    int ch;
    while ((ch = fgetc(f)) != EOF && ch != '\n')
        ;
    return -1;
}

/* The header names the columns: sku,own_on_hand[,supplier_reported]. */
static int import_header(char *line)
{
    if ((unsigned char)line[0] == 0xef && (unsigned char)line[1] == 0xbb &&
        (unsigned char)line[2] == 0xbf)
        memmove(line, line + 3, strlen(line + 3) + 1);   /* UTF-8 BOM from spreadsheets */
    char *f[4];
    int n = csv_split(line, f, 4);
    if (n < 2 || strcmp(f[0], "sku") != 0 || strcmp(f[1], "own_on_hand") != 0)
        return -1;
    if (n == 3 && strcmp(f[2], "supplier_reported") != 0)
        return -1;
    return n == 2 || n == 3 ? n : -1;
}

static int ctl_import(stockd_client *c, const char *path, bool json)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fprintf(stderr, "stockctl: cannot open %s: %s\n", path, strerror(errno));
        return EXIT_USAGE;
    }
    static import_state st;   /* large (chunk tables); main is single-threaded */
    memset(&st, 0, sizeof(st));
    st.c = c;
    st.json = json;
    stockd_client_set_max_inflight(c, CTL_IMPORT_CHUNK);
    char line[CTL_IMPORT_MAX_LINE + 2];
    unsigned long lineno = 0;
    int ncols = -1, r;
    stockd_rc rc = STOCKD_OK;
    while (rc == STOCKD_OK && (r = import_read_line(f, line, sizeof(line))) != 0) {
        lineno++;
        if (r > 0 && line[strspn(line, " \t")] == '\0')
            continue;   /* blank line */
        if (ncols < 0) {
            if (r < 0 || (ncols = import_header(line)) < 0) {
                fprintf(stderr, "stockctl: %s line %lu: header must be "
                        "'sku,own_on_hand' or 'sku,own_on_hand,supplier_reported'\n",
                        path, lineno);
                if (f != stdin)
                    fclose(f);
                return EXIT_USAGE;
            }
            continue;
        }
        st.rows++;
        if (r < 0) {
            st.rejected++;
            import_note(&st, lineno, "line longer than %u bytes", CTL_IMPORT_MAX_LINE);
            continue;
        }
        if (!import_parse_row(&st, line, lineno, ncols, &st.chunk[st.n])) {
            st.rejected++;
            continue;
        }
        if (++st.n == CTL_IMPORT_CHUNK)
            rc = import_flush(&st);
    }
    bool read_error = ferror(f);
    if (f != stdin)
        fclose(f);
    if (rc == STOCKD_OK && st.n > 0)
        rc = import_flush(&st);
    if (ncols < 0 && rc == STOCKD_OK) {
        fprintf(stderr, "stockctl: %s: empty file (no header)\n", path);
        return EXIT_USAGE;
    }
    import_summary(&st, path);
    if (read_error) {
        fprintf(stderr, "stockctl: error reading %s\n", path);
        return EXIT_USAGE;
    }
    if (rc != STOCKD_OK) {
        ctl_opts o = {.json = false};
        return ctl_report_failure(c, &o, rc);   /* to stderr: stdout has the summary */
    }
    return st.rejected + st.failed ? EXIT_SERVER : 0;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
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
