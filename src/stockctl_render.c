/* stockctl_render.c — what stockctl prints: msgpack as JSON (--json), maps
 * as aligned "key  value" lines, and a call's result or failure with the
 * exit code that goes with it.
 */
#include "stockctl_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* -------------------------------------------------------------- JSON out */

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
void ctl_json_str(FILE *f, const char *s, size_t n)
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
void ctl_json_obj(FILE *f, const msgpack_object *o)
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
    case MSGPACK_OBJECT_STR: ctl_json_str(f, o->via.str.ptr, o->via.str.size); break;
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
            ctl_json_obj(f, &o->via.array.ptr[i]);
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
                ctl_json_str(f, kv->key.via.str.ptr, kv->key.via.str.size);
            } else {
                /* JSON keys are strings: render the key, then quote that */
                char *buf = NULL;
                size_t len = 0;
                FILE *m = open_memstream(&buf, &len);
                if (m) {
                    ctl_json_obj(m, &kv->key);
                    fclose(m);
                    ctl_json_str(f, buf, len);
                    free(buf);
                } else {
                    fputs("\"?\"", f);
                }
            }
            fputc(':', f);
            ctl_json_obj(f, &kv->val);
        }
        fputc('}', f);
        break;
    default: fputs("null", f); break;
    }
}

/* ------------------------------------------------------------- human out */

void ctl_human_time(FILE *f, int64_t ms)
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
void ctl_human_map(FILE *f, const msgpack_object *m, int indent)
{
    if (m->type != MSGPACK_OBJECT_MAP) {
        ctl_json_obj(f, m);
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
            ctl_human_map(f, v, indent + 2);
            continue;
        }
        if (v->type == MSGPACK_OBJECT_STR)
            fprintf(f, " %.*s", (int)v->via.str.size, v->via.str.ptr);
        else {
            fputc(' ', f);
            ctl_json_obj(f, v);
        }
        if (key_is_time(k) && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 < INT64_MAX)
            ctl_human_time(f, (int64_t)v->via.u64);
        fputc('\n', f);
    }
}

/* --------------------------------------------------------------- results */

/* Prints a failure and returns the exit code for it. */
int ctl_report_failure(stockd_client *c, const ctl_opts *o, stockd_rc rc)
{
    const stockd_error *e = stockd_client_error(c);
    if (rc == STOCKD_ERR_SERVER) {
        if (o->json) {
            printf("{\"error\":{\"code\":");
            ctl_json_str(stdout, e->code, strlen(e->code));
            printf(",\"message\":");
            ctl_json_str(stdout, e->message, strlen(e->message));
            printf(",\"retryable\":%s", e->retryable ? "true" : "false");
            if (e->has_available)
                printf(",\"available\":%" PRId64, e->available);
            if (e->has_line) {
                printf(",\"line\":%" PRId64 ",\"sku\":", e->line);
                ctl_json_str(stdout, e->sku, strlen(e->sku));
            }
            const char *keys[] = {"status", "field", "outcome", "method"};
            const char *vals[] = {e->status, e->field, e->outcome, e->method};
            for (int i = 0; i < 4; i++) {
                if (vals[i][0]) {
                    printf(",\"%s\":", keys[i]);
                    ctl_json_str(stdout, vals[i], strlen(vals[i]));
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
        ctl_json_str(stdout, m, strlen(m));
        printf(",\"retryable\":true}}\n");
    } else {
        fprintf(stderr, "stockctl: %s: %s\n", code, stockd_client_errstr(c));
    }
    return EXIT_TRANSPORT;
}

int ctl_print_result(stockd_client *c, const ctl_opts *o)
{
    const msgpack_object *r = stockd_client_last_result(c);
    if (!r)
        return EXIT_TRANSPORT;
    if (o->json) {
        ctl_json_obj(stdout, r);
        fputc('\n', stdout);
    } else {
        ctl_human_map(stdout, r, 2);
    }
    return 0;
}

int ctl_order_done(stockd_client *c, const ctl_opts *o, stockd_rc rc,
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

int ctl_stock_done(stockd_client *c, const ctl_opts *o, stockd_rc rc,
                          const stockd_stock *st)
{
    if (rc != STOCKD_OK)
        return ctl_report_failure(c, o, rc);
    if (!o->json)
        printf("sku %s: available %" PRId64 "\n", st->sku, st->available);
    return ctl_print_result(c, o);
}
