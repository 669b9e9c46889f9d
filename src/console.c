/* console.c — the support console (console.h): sessions, CSRF, routing,
 * and the JSON API the page polls. Reads come from MariaDB (store.h's
 * support queries) and from the RPC path (console_rpc.h); actions go
 * through the RPC path only. */
#include "stockd/console.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "stockd/codec.h"
#include "stockd/console_rpc.h"
#include "stockd/log.h"
#include "stockd/ring.h"
#include "stockd/rpc_parse.h"
#include "stockd/stats.h"
#include "stockd/store.h"

#define COOKIE_NAME "stockd_console"
#define SID_HEX 64                  /* 32 random bytes */
#define HOST_MAX 64
#define JSON_DEPTH_MAX 8            /* RPC results are maps of maps at most */
#define JSON_ITEMS_MAX 1000

static const char sec_headers[] =
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'\r\n";

typedef struct session {
    bool used;
    char id[SID_HEX + 1];
    char csrf[SID_HEX + 1];
    char name[ENG_ID_MAX + 1];
    int64_t created_ms, expires_ms;     /* wall clock */
} session;

typedef struct rate_sample {
    int64_t t_ms;
    uint64_t ok, refused;
} rate_sample;

typedef enum pkind { P_LIVE = 0, P_SKU, P_SUPPLIER, P_ACTION, P_FANOUT } pkind;

typedef struct pending pending;

/* One RPC call or query of a pending answer: which slot it fills. */
typedef struct sub {
    pending *p;
    int idx;
    char node[RING_NAME_MAX + 1];
} sub;

struct pending {
    struct console *c;
    httpd_req *req;
    pkind kind;
    int waiting;                  /* calls and queries not answered yet */
    int status;                   /* HTTP status of the answer */
    json_t *out;                  /* the answer being built */
    json_t *nodes;                /* P_SUPPLIER, P_FANOUT: one entry per node */
    sub subs[RING_NODES_MAX + 2];
    pending *prev, *next;
    pending *next_waiter;         /* P_LIVE: waiting for the open alerts */
};

struct console {
    struct event_base *base;
    server *srv;
    const stockd_config *cfg;
    crpc *rpc;
    session sessions[CONSOLE_SESSIONS_HARD_MAX];
    pending *pending;
    uint32_t n_pending;
    /* open alerts: the last result, shared by every poll for a moment */
    json_t *alerts;
    char alerts_error[160];
    int64_t alerts_mono_ms;       /* when the last result came (0: never) */
    int64_t alerts_at_ms;         /* wall clock of the same */
    bool alerts_inflight;
    pending *waiters;
    /* failed sign-ins: a token bucket */
    double login_tokens;
    int64_t login_mono_ms;
    /* reserve counters, one sample a second, for the chart */
    struct event *tick;
    rate_sample samples[CONSOLE_RATE_SAMPLES];
    uint32_t n_samples, samples_head;
};

/* ------------------------------------------------------------ helpers */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copies at most cap - 1 bytes (names are checked where they come in). */
static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool random_hex(char out[SID_HEX + 1])
{
    unsigned char b[SID_HEX / 2];
    if (RAND_bytes(b, sizeof b) != 1)
        return false;
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return true;
}

/* Constant time whatever the lengths: both sides are hashed first. */
static bool secret_equal(const char *got, size_t got_len, const char *want)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)got, got_len, a);
    SHA256((const unsigned char *)want, strlen(want), b);
    return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

/* Answers with j (taken) and the security headers plus extra. */
static void reply_json(httpd_req *req, int status, json_t *j, const char *extra)
{
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(j);
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "%s%s", sec_headers, extra ? extra : "");
    if (!txt) {
        httpd_respond(req, 500, "Internal Server Error", "application/json; charset=utf-8",
                      "{\"error\":\"out of memory\"}", 25, hdr);
        return;
    }
    httpd_respond(req, status, reason_of(status), "application/json; charset=utf-8", txt,
                  strlen(txt), hdr);
    free(txt);
}

static void reply_error(httpd_req *req, int status, const char *code, const char *message,
                        const char *extra)
{
    reply_json(req, status, json_pack("{s:s, s:s}", "error", message, "code", code), extra);
}

/* The client port of this instance, as the console dials it. */
static void self_addr(const stockd_config *cfg, char *host, size_t n, int *port)
{
    const char *h = cfg->listen_host;
    if (h[0] == '\0' || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "localhost") == 0)
        h = "127.0.0.1";
    else if (strcmp(h, "::") == 0 || strcmp(h, "[::]") == 0)
        h = "::1";
    size_t len = strlen(h);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
        h++;
        len -= 2;
    }
    if (len >= n)
        len = n - 1;
    memcpy(host, h, len);
    host[len] = '\0';
    *port = cfg->listen_port;
}

/* Every instance (with --peers), else this one. */
static size_t nodes_get(const console *c, ring_node *out)
{
    const stockd_config *cfg = c->cfg;
    size_t n = 0;
    char e[160];
    if (cfg->peers[0] == '\0' ||
        ring_parse_peers(cfg->peers, out, RING_NODES_MAX, &n, e, sizeof e) != 0 || n == 0) {
        memset(out, 0, sizeof *out);
        copy_cut(out->name, sizeof out->name, cfg->node);
        n = 1;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(out[i].name, cfg->node) == 0 || n == 1)
            self_addr(cfg, out[i].host, sizeof out[i].host, &out[i].port);
    return n;
}

/* msgpack (an RPC result) as JSON, bounded in depth and items. */
static json_t *mp_json(const msgpack_object *o, int depth)
{
    if (depth > JSON_DEPTH_MAX)
        return json_null();
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return o->via.u64 <= (uint64_t)INT64_MAX ? json_integer((json_int_t)o->via.u64)
                                                  : json_real((double)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: {
        json_t *s = json_stringn(o->via.str.size ? o->via.str.ptr : "", o->via.str.size);
        return s ? s : json_string("?");
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size && i < JSON_ITEMS_MAX; i++)
            json_array_append_new(a, mp_json(&o->via.array.ptr[i], depth + 1));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size && i < JSON_ITEMS_MAX; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            char key[RING_NAME_MAX + 1];
            if (k->type != MSGPACK_OBJECT_STR || k->via.str.size == 0 ||
                k->via.str.size > RING_NAME_MAX ||
                memchr(k->via.str.ptr, '\0', k->via.str.size))
                continue;
            memcpy(key, k->via.str.ptr, k->via.str.size);
            key[k->via.str.size] = '\0';
            json_object_set_new(m, key, mp_json(&o->via.map.ptr[i].val, depth + 1));
        }
        return m;
    }
    default:
        return json_null();
    }
}

static const char *mp_str(const msgpack_object *map, const char *key, char *buf, size_t n)
{
    const msgpack_object *v = map && map->type == MSGPACK_OBJECT_MAP ? codec_map_get(map, key)
                                                                      : NULL;
    if (!v || v->type != MSGPACK_OBJECT_STR)
        return NULL;
    size_t len = v->via.str.size < n - 1 ? v->via.str.size : n - 1;
    if (len)
        memcpy(buf, v->via.str.ptr, len);
    buf[len] = '\0';
    return buf;
}

/* An RPC error code as the HTTP status the page shows. */
static int status_of_code(const char *code)
{
    if (!code)
        return 502;
    if (strcmp(code, "invalid") == 0)
        return 400;
    if (strcmp(code, "not_found") == 0 || strcmp(code, "unknown_sku") == 0)
        return 404;
    if (strcmp(code, "invalid_state") == 0 || strcmp(code, "conflict") == 0 ||
        strcmp(code, "expired") == 0 || strcmp(code, "insufficient") == 0)
        return 409;
    if (strcmp(code, "busy") == 0 || strcmp(code, "deadline") == 0 ||
        strcmp(code, "unavailable") == 0)
        return 503;
    if (strcmp(code, "unauthorized") == 0)
        return 502;  /* the instance refused the console's own admin token */
    return 500;
}

/* A reply as {result} or {error, code, detail}; sets *status. */
static json_t *rpc_outcome(const msgpack_object *error, const msgpack_object *result,
                           const char *reason, int *status)
{
    if (reason) {
        *status = 503;
        const char *msg = strcmp(reason, "unreachable") == 0
                              ? "the instance could not be reached: nothing was done"
                              : "the instance did not answer in time: the action may or may not "
                                "have happened; look again before repeating it";
        return json_pack("{s:s, s:s}", "error", msg, "code", "unavailable");
    }
    if (error) {
        char code[32], msg[256];
        const char *cd = mp_str(error, "code", code, sizeof code);
        const char *m = mp_str(error, "message", msg, sizeof msg);
        *status = status_of_code(cd);
        return json_pack("{s:s, s:s, s:o}", "error", m ? m : "error", "code", cd ? cd : "?",
                         "detail", mp_json(error, 0));
    }
    *status = 200;
    return json_pack("{s:o}", "result", result ? mp_json(result, 0) : json_null());
}

/* ------------------------------------------------------------ params of calls */

typedef struct kv {
    const char *k;
    char t;                       /* 's' str, 'i' int, 'd' double, 'b' bool */
    const char *s;
    int64_t i;
    double d;
    bool b;
} kv;

typedef struct params {
    kv kv[8];
    int n;
} params;

static void p_str(params *p, const char *k, const char *v)
{
    assert(p->n < 8);
    p->kv[p->n++] = (kv){.k = k, .t = 's', .s = v};
}

static void p_int(params *p, const char *k, int64_t v)
{
    assert(p->n < 8);
    p->kv[p->n++] = (kv){.k = k, .t = 'i', .i = v};
}

static void p_dbl(params *p, const char *k, double v)
{
    assert(p->n < 8);
    p->kv[p->n++] = (kv){.k = k, .t = 'd', .d = v};
}

static void p_bool(params *p, const char *k, bool v)
{
    assert(p->n < 8);
    p->kv[p->n++] = (kv){.k = k, .t = 'b', .b = v};
}

static void p_token(params *p, const stockd_config *cfg)
{
    if (cfg->admin_token[0])
        p_str(p, "token", cfg->admin_token);
}

static void pack_params(msgpack_packer *pk, const void *ctx)
{
    const params *p = ctx;
    msgpack_pack_map(pk, (size_t)p->n);
    for (int i = 0; i < p->n; i++) {
        const kv *x = &p->kv[i];
        codec_pack_cstr(pk, x->k);
        switch (x->t) {
        case 's': codec_pack_cstr(pk, x->s); break;
        case 'i': msgpack_pack_int64(pk, x->i); break;
        case 'd': msgpack_pack_double(pk, x->d); break;
        default: x->b ? msgpack_pack_true(pk) : msgpack_pack_false(pk); break;
        }
    }
}

/* ------------------------------------------------------------ pending answers */

static pending *pending_new(console *c, httpd_req *req, pkind kind)
{
    if (c->n_pending >= CONSOLE_PENDING_MAX) {
        reply_error(req, 503, "busy", "too many console requests waiting; try again", NULL);
        return NULL;
    }
    pending *p = calloc(1, sizeof *p);
    if (!p || !(p->out = json_object())) {
        free(p);
        reply_error(req, 500, "internal", "out of memory", NULL);
        return NULL;
    }
    p->c = c;
    p->req = req;
    p->kind = kind;
    p->status = 200;
    p->next = c->pending;
    if (c->pending)
        c->pending->prev = p;
    c->pending = p;
    c->n_pending++;
    return p;
}

static void pending_free(pending *p)
{
    console *c = p->c;
    if (p->prev)
        p->prev->next = p->next;
    else
        c->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    c->n_pending--;
    json_decref(p->out);
    json_decref(p->nodes);
    free(p);
}

/* One call or query of p ended: answer when it was the last. */
static void pending_done(pending *p)
{
    assert(p->waiting > 0);
    if (--p->waiting > 0)
        return;
    if (p->nodes)
        json_object_set(p->out, "nodes", p->nodes);
    json_t *out = p->out;
    p->out = NULL;
    reply_json(p->req, p->status, out, NULL);
    pending_free(p);
}

/* ------------------------------------------------------------ sessions */

/* The session id the Cookie header names, when it is well formed. The
 * adversary writes this header: only 64 hex digits are taken. */
static bool cookie_sid(httpd_req *req, char out[SID_HEX + 1])
{
    const char *h = httpd_header(req, "Cookie");
    const size_t nl = sizeof COOKIE_NAME - 1;
    while (h && *h) {
        while (*h == ' ' || *h == ';')
            h++;
        const char *end = strchr(h, ';');
        size_t len = end ? (size_t)(end - h) : strlen(h);
        if (len == nl + 1 + SID_HEX && strncmp(h, COOKIE_NAME "=", nl + 1) == 0) {
            const char *v = h + nl + 1;
            bool hex = true;
            for (size_t i = 0; i < SID_HEX; i++)
                hex &= isxdigit((unsigned char)v[i]) && !isupper((unsigned char)v[i]);
            if (hex) {
                memcpy(out, v, SID_HEX);
                out[SID_HEX] = '\0';
                return true;
            }
        }
        h = end;
    }
    return false;
}

/* The live session of the request, or NULL. Every slot is compared, in
 * constant time, so timing tells nothing about which ids exist. */
static session *session_of(console *c, httpd_req *req)
{
    char sid[SID_HEX + 1];
    if (!cookie_sid(req, sid))
        return NULL;
    int64_t now = wall_ms();
    session *found = NULL;
    for (uint32_t i = 0; i < CONSOLE_SESSIONS_HARD_MAX; i++) {
        session *s = &c->sessions[i];
        if (!s->used)
            continue;
        if (s->expires_ms <= now) {
            s->used = false;
            continue;
        }
        if (CRYPTO_memcmp(s->id, sid, SID_HEX) == 0)
            found = s;
    }
    return found;
}

static session *session_new(console *c, const char *name)
{
    int64_t now = wall_ms();
    uint32_t cap = c->cfg->console_max_sessions;
    if (cap < 1 || cap > CONSOLE_SESSIONS_HARD_MAX)
        cap = CONSOLE_SESSIONS_HARD_MAX;
    uint32_t live = 0;
    session *free_slot = NULL, *oldest = NULL;
    for (uint32_t i = 0; i < CONSOLE_SESSIONS_HARD_MAX; i++) {
        session *s = &c->sessions[i];
        if (s->used && s->expires_ms <= now)
            s->used = false;
        if (!s->used) {
            if (!free_slot)
                free_slot = s;
            continue;
        }
        live++;
        if (!oldest || s->created_ms < oldest->created_ms)
            oldest = s;
    }
    /* At the cap (it may have been lowered by SIGHUP) the oldest go. */
    while (live >= cap && oldest) {
        LOG_W("console: session cap reached, the oldest session ends", "name", oldest->name);
        oldest->used = false;
        free_slot = free_slot ? free_slot : oldest;
        live--;
        oldest = NULL;
        for (uint32_t i = 0; i < CONSOLE_SESSIONS_HARD_MAX; i++) {
            session *s = &c->sessions[i];
            if (s->used && (!oldest || s->created_ms < oldest->created_ms))
                oldest = s;
        }
    }
    if (!free_slot)
        return NULL;
    session *s = free_slot;
    memset(s, 0, sizeof *s);
    if (!random_hex(s->id) || !random_hex(s->csrf))
        return NULL;
    copy_cut(s->name, sizeof s->name, name);
    s->created_ms = now;
    s->expires_ms = now + (int64_t)c->cfg->console_session_ttl_s * 1000;
    s->used = true;
    return s;
}

static const char *console_token(const console *c)
{
    return c->cfg->console_token[0] ? c->cfg->console_token : c->cfg->admin_token;
}

/* A failed sign-in costs a token; none left: every sign-in waits. */
static bool login_allowed(console *c)
{
    int64_t now = mono_ms();
    c->login_tokens += (double)(now - c->login_mono_ms) * CONSOLE_LOGIN_FAILS_PER_S / 1000.0;
    if (c->login_tokens > CONSOLE_LOGIN_BURST)
        c->login_tokens = CONSOLE_LOGIN_BURST;
    c->login_mono_ms = now;
    return c->login_tokens >= 1.0;
}

/* POSTs come from the console's own page: the browser says so. A request
 * without Origin and Sec-Fetch-Site (curl, tests) passes this check; the
 * session and CSRF token still apply. */
static bool same_origin(httpd_req *req)
{
    const char *sfs = httpd_header(req, "Sec-Fetch-Site");
    if (sfs && strcmp(sfs, "same-origin") != 0 && strcmp(sfs, "none") != 0)
        return false;
    const char *origin = httpd_header(req, "Origin");
    if (!origin)
        return true;
    const char *host = httpd_header(req, "Host");
    if (!host)
        return false;
    if (strncmp(origin, "http://", 7) == 0)
        return strcmp(origin + 7, host) == 0;
    if (strncmp(origin, "https://", 8) == 0)
        return strcmp(origin + 8, host) == 0;
    return false;
}

static bool json_body_type(httpd_req *req)
{
    const char *t = httpd_header(req, "Content-Type");
    return t && strncasecmp(t, "application/json", 16) == 0 &&
           (t[16] == '\0' || t[16] == ';' || t[16] == ' ');
}

/* ------------------------------------------------------------ request input */

/* A JSON object body with only the keys in allowed ("a,b,c"); NULL after
 * answering 400/413. */
static json_t *body_object(httpd_req *req, const char *allowed)
{
    size_t len = 0;
    const char *b = httpd_body(req, &len);
    if (len > CONSOLE_BODY_MAX) {
        reply_error(req, 413, "too_large", "request body over 4096 bytes", NULL);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(b, len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        reply_error(req, 400, "invalid", "the body must be one JSON object", NULL);
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        size_t kl = strlen(key);
        const char *p = strstr(allowed, key);
        bool ok = false;
        while (p && !ok) {
            ok = (p == allowed || p[-1] == ',') && (p[kl] == ',' || p[kl] == '\0');
            p = strstr(p + 1, key);
        }
        if (!ok || kl == 0) {
            json_decref(j);
            char msg[128];
            snprintf(msg, sizeof msg, "unknown field (allowed: %s)", allowed);
            reply_error(req, 400, "invalid", msg, NULL);
            return NULL;
        }
    }
    return j;
}

/* A string field of 1..max bytes (0..max with allow_empty), UTF-8 without
 * NUL; NULL when absent (required: answers 400) or bad (answers 400). */
static const char *field_str(httpd_req *req, json_t *j, const char *key, size_t max,
                             bool required, bool allow_empty, bool *bad)
{
    json_t *v = json_object_get(j, key);
    char msg[128];
    if (!v) {
        if (required) {
            snprintf(msg, sizeof msg, "%s: required", key);
            reply_error(req, 400, "invalid", msg, NULL);
            *bad = true;
        }
        return NULL;
    }
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (!json_is_string(v) || n > max || (n == 0 && !allow_empty) ||
        strlen(json_string_value(v)) != n) {
        snprintf(msg, sizeof msg, "%s: a string of %s1..%zu bytes without NUL", key,
                 allow_empty ? "0 or " : "", max);
        reply_error(req, 400, "invalid", msg, NULL);
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0'
         : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
         : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* The query parameter name, percent-decoded into out (1..max bytes of
 * UTF-8 without NUL). False when absent or bad. */
static bool query_param(httpd_req *req, const char *name, char *out, size_t max)
{
    const char *q = httpd_query(req);
    size_t nl = strlen(name);
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t n = 0;
            for (size_t i = nl + 1; i < len; i++) {
                int ch = (unsigned char)q[i];
                if (ch == '%') {
                    int hi = i + 2 < len ? hexval(q[i + 1]) : -1;
                    int lo = i + 2 < len ? hexval(q[i + 2]) : -1;
                    if (hi < 0 || lo < 0)
                        return false;
                    ch = hi * 16 + lo;
                    i += 2;
                } else if (ch == '+') {
                    ch = ' ';
                }
                if (n >= max)
                    return false;
                out[n++] = (char)ch;
            }
            out[n] = '\0';
            return n > 0 && rpc_utf8_valid((const unsigned char *)out, n);
        }
        q = end ? end + 1 : NULL;
    }
    return false;
}

/* ------------------------------------------------------------ rates */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    console *c = arg;
    stats_snapshot *m = malloc(sizeof *m);  /* large: not on the stack */
    if (!m)
        return;
    server_stats_get(c->srv, m);
    rate_sample x = {.t_ms = wall_ms()};
    for (uint32_t i = 0; i < m->n_methods; i++) {
        if (!m->methods[i].name || strcmp(m->methods[i].name, "reserve") != 0)
            continue;
        for (uint32_t r = 0; r < m->n_results; r++) {
            if (r == ENG_OK)
                x.ok += m->methods[i].results[r];
            else
                x.refused += m->methods[i].results[r];
        }
    }
    free(m);
    c->samples[c->samples_head] = x;
    c->samples_head = (c->samples_head + 1) % CONSOLE_RATE_SAMPLES;
    if (c->n_samples < CONSOLE_RATE_SAMPLES)
        c->n_samples++;
}

/* [[t_ms, reserved/s, refused/s], ...] over the last minute, oldest first. */
static json_t *rates_json(const console *c)
{
    json_t *a = json_array();
    uint32_t n = c->n_samples < 61 ? c->n_samples : 61;
    for (uint32_t i = 1; a && i < n; i++) {
        const rate_sample *prev = &c->samples[(c->samples_head + CONSOLE_RATE_SAMPLES - n + i - 1) %
                                              CONSOLE_RATE_SAMPLES];
        const rate_sample *cur = &c->samples[(c->samples_head + CONSOLE_RATE_SAMPLES - n + i) %
                                             CONSOLE_RATE_SAMPLES];
        double dt = (double)(cur->t_ms - prev->t_ms) / 1000.0;
        if (dt <= 0)
            dt = 1;
        json_array_append_new(a, json_pack("[I, f, f]", (json_int_t)cur->t_ms,
                                           (double)(cur->ok - prev->ok) / dt,
                                           (double)(cur->refused - prev->refused) / dt));
    }
    return a;
}

/* ------------------------------------------------------------ alerts */

/* MariaDB strings are bytes, and a reason cut to 128 bytes may end inside
 * a character: what is not UTF-8 is shown with '?' in its place (JSON
 * must be UTF-8; json_string refuses the rest). */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char buf[512];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 1 < sizeof buf;) {
        size_t len = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3
                   : (*p & 0xf8) == 0xf0 ? 4 : 0;
        size_t have = strnlen((const char *)p, 4);
        if (len == 0 || have < len || n + len >= sizeof buf ||
            !rpc_utf8_valid(p, len)) {
            buf[n++] = '?';
            p++;
            continue;
        }
        memcpy(buf + n, p, len);
        n += len;
        p += len;
    }
    buf[n] = '\0';
    return json_string(buf);
}

static json_t *alert_json(const store_alert *a)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_integer(a->id));
    json_object_set_new(o, "kind", json_text(a->kind));
    json_object_set_new(o, "sku", json_text(a->sku));
    json_object_set_new(o, "reason", json_text(a->reason));
    json_object_set_new(o, "at", json_integer(a->at_ms));
    if (a->order_id[0])
        json_object_set_new(o, "order_id", json_text(a->order_id));
    if (a->acked_at) {
        json_object_set_new(o, "acked_at", json_integer(a->acked_at));
        json_object_set_new(o, "acked_by", json_text(a->acked_by));
        if (a->ack_note[0])
            json_object_set_new(o, "note", json_text(a->ack_note));
    }
    return o;
}

static json_t *alerts_json(int n, const store_alert *rows)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        json_array_append_new(a, alert_json(&rows[i]));
    return a;
}

static void live_answer(console *c, pending *p)
{
    json_object_set_new(p->out, "node", json_string(c->cfg->node));
    json_object_set_new(p->out, "now", json_integer(wall_ms()));
    json_object_set(p->out, "alerts", c->alerts ? c->alerts : json_null());
    json_object_set_new(p->out, "alerts_at", json_integer(c->alerts_at_ms));
    if (c->alerts_error[0])
        json_object_set_new(p->out, "alerts_error", json_string(c->alerts_error));
    json_object_set_new(p->out, "rates", rates_json(c));
    p->waiting = 1;
    pending_done(p);
}

static void alerts_answer_waiters(console *c)
{
    pending *w = c->waiters;
    c->waiters = NULL;
    while (w) {
        pending *next = w->next_waiter;
        live_answer(c, w);
        w = next;
    }
}

static void alerts_cb(void *arg, int result, const store_alert *rows)
{
    console *c = arg;
    c->alerts_inflight = false;
    if (result >= 0) {
        json_decref(c->alerts);
        c->alerts = alerts_json(result, rows);
        c->alerts_error[0] = '\0';
        c->alerts_mono_ms = mono_ms();
        c->alerts_at_ms = wall_ms();
    } else {
        snprintf(c->alerts_error, sizeof c->alerts_error,
                 "MariaDB did not answer: the alerts shown may be old");
    }
    alerts_answer_waiters(c);
}

static void on_live(console *c, httpd_req *req)
{
    pending *p = pending_new(c, req, P_LIVE);
    if (!p)
        return;
    store *st = server_store(c->srv);
    if (c->alerts && mono_ms() - c->alerts_mono_ms < CONSOLE_ALERTS_FRESH_MS) {
        live_answer(c, p);
        return;
    }
    httpd_defer(req);
    p->next_waiter = c->waiters;
    c->waiters = p;
    if (c->alerts_inflight)
        return;
    if (st && store_alerts_open(st, CONSOLE_ALERTS_MAX, alerts_cb, c) == 0) {
        c->alerts_inflight = true;
        return;
    }
    snprintf(c->alerts_error, sizeof c->alerts_error, "MariaDB queries are busy or off");
    alerts_answer_waiters(c);
}

/* ------------------------------------------------------------ SKU and supplier views */

static void stock_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                     const char *reason)
{
    sub *s = ctx;
    pending *p = s->p;
    int status;
    json_t *o = rpc_outcome(error, result, reason, &status);
    json_object_set_new(p->out, "stock", o);
    pending_done(p);
}

static void moves_cb(void *arg, int result, const store_sku_move *rows)
{
    sub *s = arg;
    pending *p = s->p;
    if (result < 0) {
        json_object_set_new(p->out, "moves_error", json_string("MariaDB did not answer"));
    } else {
        json_t *a = json_array();
        for (int i = 0; a && i < result; i++) {
            const store_sku_move *m = &rows[i];
            json_t *o = json_pack("{s:o, s:o, s:I, s:o, s:I, s:I, s:I}", "order_id",
                                  json_text(m->order_id), "move", json_text(m->move), "at",
                                  (json_int_t)m->at_ms, "status", json_text(m->status), "qty",
                                  (json_int_t)m->qty, "from_own", (json_int_t)m->from_own,
                                  "from_supplier", (json_int_t)m->from_supplier);
            if (o && m->reason[0])
                json_object_set_new(o, "reason", json_text(m->reason));
            if (o)
                json_array_append_new(a, o);
        }
        json_object_set_new(p->out, "moves", a);
    }
    pending_done(p);
}

static void on_sku(console *c, httpd_req *req)
{
    char sku[ENG_ID_MAX + 1];
    if (!query_param(req, "sku", sku, ENG_ID_MAX)) {
        reply_error(req, 400, "invalid", "sku: 1..64 bytes of UTF-8, percent-encoded", NULL);
        return;
    }
    pending *p = pending_new(c, req, P_SKU);
    if (!p)
        return;
    json_object_set_new(p->out, "sku", json_string(sku));
    httpd_defer(req);
    p->waiting = 1;  /* held until both are asked */
    char host[HOST_MAX + 1];
    int port;
    self_addr(c->cfg, host, sizeof host, &port);
    params ps = {0};
    p_str(&ps, "sku", sku);
    p->subs[0] = (sub){.p = p, .idx = 0};
    p->waiting++;
    if (crpc_call(c->rpc, host, port, "stock.get", pack_params, &ps, CONSOLE_RPC_TIMEOUT_MS,
                  stock_cb, &p->subs[0]) != 0) {
        p->waiting--;
        json_object_set_new(p->out, "stock", json_pack("{s:s, s:s}", "error",
                                                       "too many console calls", "code", "busy"));
    }
    p->subs[1] = (sub){.p = p, .idx = 1};
    store *st = server_store(c->srv);
    p->waiting++;
    if (!st || store_sku_moves(st, sku, CONSOLE_MOVES_MAX, moves_cb, &p->subs[1]) != 0) {
        p->waiting--;
        json_object_set_new(p->out, "moves_error", json_string("MariaDB queries are busy"));
    }
    pending_done(p);
}

/* One node's answer of a fan-out (supplier.get, supplier.put). */
static void node_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                    const char *reason)
{
    sub *s = ctx;
    pending *p = s->p;
    int status;
    json_t *o = rpc_outcome(error, result, reason, &status);
    json_object_set_new(o, "node", json_string(s->node));
    json_array_set_new(p->nodes, (size_t)s->idx, o);
    /* An action answers with the worst status of its nodes (200 when all
     * took it); a view stays 200 and shows each node's error. */
    if (p->kind == P_FANOUT && status > p->status)
        p->status = status;
    pending_done(p);
}

static void supplier_alerts_cb(void *arg, int result, const store_alert *rows)
{
    sub *s = arg;
    pending *p = s->p;
    if (result < 0)
        json_object_set_new(p->out, "alerts_error", json_string("MariaDB did not answer"));
    else
        json_object_set_new(p->out, "alerts", alerts_json(result, rows));
    pending_done(p);
}

/* Calls method with ps on every instance into p->nodes (p->waiting held
 * by the caller). */
static void fan_out(console *c, pending *p, const char *method, const params *ps)
{
    ring_node nodes[RING_NODES_MAX];
    size_t n = nodes_get(c, nodes);
    p->nodes = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(p->nodes, json_null());
        sub *s = &p->subs[i];
        *s = (sub){.p = p, .idx = (int)i};
        copy_cut(s->node, sizeof s->node, nodes[i].name);
        p->waiting++;
        if (crpc_call(c->rpc, nodes[i].host, nodes[i].port, method, pack_params, ps,
                      CONSOLE_RPC_TIMEOUT_MS, node_cb, s) != 0) {
            p->waiting--;
            json_array_set_new(p->nodes, i, json_pack("{s:s, s:s, s:s}", "node", s->node,
                                                      "error", "too many console calls",
                                                      "code", "busy"));
            if (p->kind == P_FANOUT)
                p->status = 503;
        }
    }
}

static bool supplier_id_ok(const char *id)
{
    size_t n = strlen(id);
    return n >= 1 && n <= ENG_ID_MAX && !strchr(id, ':') &&
           rpc_utf8_valid((const unsigned char *)id, n);
}

static void on_supplier(console *c, httpd_req *req)
{
    char id[ENG_ID_MAX + 1];
    if (!query_param(req, "id", id, ENG_ID_MAX) || !supplier_id_ok(id)) {
        reply_error(req, 400, "invalid", "id: a supplier id, 1..64 bytes, percent-encoded", NULL);
        return;
    }
    pending *p = pending_new(c, req, P_SUPPLIER);
    if (!p)
        return;
    json_object_set_new(p->out, "supplier_id", json_string(id));
    httpd_defer(req);
    p->waiting = 1;
    params ps = {0};
    p_str(&ps, "supplier_id", id);
    fan_out(c, p, "supplier.get", &ps);
    sub *s = &p->subs[RING_NODES_MAX + 1];
    *s = (sub){.p = p, .idx = -1};
    store *st = server_store(c->srv);
    p->waiting++;
    if (!st || store_alerts_of_supplier(st, id, CONSOLE_MOVES_MAX, supplier_alerts_cb, s) != 0) {
        p->waiting--;
        json_object_set_new(p->out, "alerts_error", json_string("MariaDB queries are busy"));
    }
    pending_done(p);
}

/* ------------------------------------------------------------ actions */

static void action_cb(void *ctx, const msgpack_object *error, const msgpack_object *result,
                      const char *reason)
{
    sub *s = ctx;
    pending *p = s->p;
    json_decref(p->out);
    p->out = rpc_outcome(error, result, reason, &p->status);
    pending_done(p);
}

/* One RPC call on this instance (which routes it) answering req. */
static void act(console *c, httpd_req *req, const char *method, const params *ps)
{
    pending *p = pending_new(c, req, P_ACTION);
    if (!p)
        return;
    char host[HOST_MAX + 1];
    int port;
    self_addr(c->cfg, host, sizeof host, &port);
    p->subs[0] = (sub){.p = p};
    if (crpc_call(c->rpc, host, port, method, pack_params, ps, CONSOLE_RPC_TIMEOUT_MS, action_cb,
                  &p->subs[0]) != 0) {
        pending_free(p);
        reply_error(req, 503, "busy", "too many console calls; try again", NULL);
        return;
    }
    httpd_defer(req);
    p->waiting = 1;
}

static void on_ack(console *c, httpd_req *req, const session *se)
{
    json_t *j = body_object(req, "id,note");
    if (!j)
        return;
    bool bad = false;
    json_t *id = json_object_get(j, "id");
    const char *note = field_str(req, j, "note", RPC_ACK_NOTE_MAX, false, true, &bad);
    if (!bad && (!json_is_integer(id) || json_integer_value(id) < 1)) {
        reply_error(req, 400, "invalid", "id: the alert's id, an integer >= 1", NULL);
        bad = true;
    }
    if (!bad) {
        params ps = {0};
        p_int(&ps, "id", (int64_t)json_integer_value(id));
        p_str(&ps, "by", se->name);
        if (note && note[0])
            p_str(&ps, "note", note);
        p_token(&ps, c->cfg);
        act(c, req, "alerts.ack", &ps);
    }
    json_decref(j);
}

static bool order_id_ok(const char *s)
{
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("._:-", *s)))
            return false;
    return true;
}

static void on_release(console *c, httpd_req *req)
{
    json_t *j = body_object(req, "order_id,sku");
    if (!j)
        return;
    bool bad = false;
    const char *oid = field_str(req, j, "order_id", ENG_ID_MAX, true, false, &bad);
    const char *sku = bad ? NULL : field_str(req, j, "sku", ENG_ID_MAX, false, false, &bad);
    if (!bad && !order_id_ok(oid)) {
        reply_error(req, 400, "invalid", "order_id: only A-Z a-z 0-9 . _ : -", NULL);
        bad = true;
    }
    if (!bad) {
        params ps = {0};
        p_str(&ps, "order_id", oid);
        if (sku)
            p_str(&ps, "sku", sku);
        act(c, req, "release", &ps);
    }
    json_decref(j);
}

static void on_recheck(console *c, httpd_req *req)
{
    json_t *j = body_object(req, "sku");
    if (!j)
        return;
    bool bad = false;
    const char *sku = field_str(req, j, "sku", ENG_ID_MAX, true, false, &bad);
    if (!bad) {
        params ps = {0};
        p_str(&ps, "sku", sku);
        p_token(&ps, c->cfg);
        act(c, req, "sku.recheck", &ps);
    }
    json_decref(j);
}

static bool factor_ok(json_t *v)
{
    double d = json_is_real(v) ? json_real_value(v) : json_is_integer(v)
                                                          ? (double)json_integer_value(v) : -1;
    return (json_is_real(v) || json_is_integer(v)) && d >= 0.0 && d <= 1.0;
}

/* supplier.put on every instance: trust is per node (PROTOCOL §4). */
static void on_supplier_put(console *c, httpd_req *req)
{
    json_t *j = body_object(req, "supplier_id,event_mode,trust,event_trust");
    if (!j)
        return;
    bool bad = false;
    const char *id = field_str(req, j, "supplier_id", ENG_ID_MAX, true, false, &bad);
    json_t *em = json_object_get(j, "event_mode");
    json_t *tr = json_object_get(j, "trust");
    json_t *et = json_object_get(j, "event_trust");
    const char *why = NULL;
    if (!bad && !supplier_id_ok(id))
        why = "supplier_id: 1..64 bytes without ':'";
    else if (!bad && em && !json_is_boolean(em))
        why = "event_mode: true or false";
    else if (!bad && ((tr && !factor_ok(tr)) || (et && !factor_ok(et))))
        why = "trust, event_trust: a number 0..1";
    else if (!bad && !em && !tr && !et)
        why = "give event_mode, trust or event_trust";
    if (why) {
        reply_error(req, 400, "invalid", why, NULL);
        bad = true;
    }
    if (!bad) {
        pending *p = pending_new(c, req, P_FANOUT);
        if (p) {
            params ps = {0};
            p_str(&ps, "supplier_id", id);
            if (em)
                p_bool(&ps, "event_mode", json_is_true(em));
            if (tr)
                p_dbl(&ps, "trust", json_number_value(tr));
            if (et)
                p_dbl(&ps, "event_trust", json_number_value(et));
            p_token(&ps, c->cfg);
            httpd_defer(req);
            p->waiting = 1;
            fan_out(c, p, "supplier.put", &ps);
            pending_done(p);
        }
    }
    json_decref(j);
}

/* ------------------------------------------------------------ sign-in */

static void cookie_header(const console *c, const session *s, char *out, size_t n)
{
    if (s)
        snprintf(out, n,
                 "Set-Cookie: " COOKIE_NAME "=%s; Path=/console/; Max-Age=%u; HttpOnly; "
                 "SameSite=Strict%s\r\n",
                 s->id, c->cfg->console_session_ttl_s,
                 c->cfg->console_secure_cookie ? "; Secure" : "");
    else
        snprintf(out, n,
                 "Set-Cookie: " COOKIE_NAME "=; Path=/console/; Max-Age=0; HttpOnly; "
                 "SameSite=Strict%s\r\n",
                 c->cfg->console_secure_cookie ? "; Secure" : "");
}

static json_t *session_json(const console *c, const session *s)
{
    json_t *o = json_pack("{s:s, s:b, s:b, s:b}", "node", c->cfg->node, "signed_in", s != NULL,
                          "public_read", c->cfg->console_public_read, "can_sign_in",
                          console_token(c)[0] != '\0');
    if (o && s) {
        json_object_set_new(o, "name", json_string(s->name));
        json_object_set_new(o, "csrf", json_string(s->csrf));
        json_object_set_new(o, "expires_at", json_integer(s->expires_ms));
    }
    return o;
}

static void on_login(console *c, httpd_req *req)
{
    const char *want = console_token(c);
    if (!want[0]) {
        reply_error(req, 403, "forbidden",
                    "nobody can sign in: stockd runs without --console-token and --admin-token",
                    NULL);
        return;
    }
    if (!login_allowed(c)) {
        reply_error(req, 429, "busy", "too many failed sign-ins; wait a few seconds",
                    "Retry-After: 5\r\n");
        return;
    }
    json_t *j = body_object(req, "token,name");
    if (!j)
        return;
    bool bad = false;
    const char *tok = field_str(req, j, "token", CFG_STR_MAX - 1, true, false, &bad);
    const char *name = bad ? NULL : field_str(req, j, "name", ENG_ID_MAX, false, false, &bad);
    if (!bad && !secret_equal(tok, strlen(tok), want)) {
        c->login_tokens -= 1.0;
        LOG_W("console: sign-in refused (wrong token)");
        reply_error(req, 401, "unauthorized", "wrong token", NULL);
        bad = true;
    }
    if (!bad) {
        session *s = session_new(c, name ? name : "console");
        if (!s) {
            reply_error(req, 500, "internal", "no session could be made", NULL);
        } else {
            LOG_I("console: signed in", "name", s->name);
            char hdr[256];
            cookie_header(c, s, hdr, sizeof hdr);
            reply_json(req, 200, session_json(c, s), hdr);
        }
    }
    json_decref(j);
}

/* ------------------------------------------------------------ routing */

static void serve_asset(httpd_req *req, const char *name)
{
    for (size_t i = 0; i < console_assets_n; i++) {
        if (strcmp(console_assets[i].name, name) != 0)
            continue;
        httpd_respond(req, 200, "OK", console_assets[i].type, console_assets[i].data,
                      console_assets[i].len, sec_headers);
        return;
    }
    reply_error(req, 404, "not_found", "no such console file", NULL);
}

bool console_handle(console *c, httpd_req *req)
{
    const char *path = httpd_path(req);
    if (strncmp(path, "/console", 8) != 0 || (path[8] != '\0' && path[8] != '/'))
        return false;
    const char *method = httpd_method(req);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;
    if (path[8] == '\0') {
        httpd_respond(req, 303, "See Other", "text/plain; charset=utf-8", "/console/\n", 10,
                      "Location: /console/\r\n");
        return true;
    }
    const char *rest = path + 9;
    if (strncmp(rest, "api/", 4) != 0) {
        if (!get) {
            reply_error(req, 405, "method", "GET only", "Allow: GET, HEAD\r\n");
            return true;
        }
        serve_asset(req, rest[0] ? rest : "index.html");
        return true;
    }
    const char *api = rest + 4;
    session *se = session_of(c, req);
    bool reads = se != NULL || c->cfg->console_public_read;
    if (strcmp(api, "session") == 0 && get) {
        reply_json(req, 200, session_json(c, se), NULL);
        return true;
    }
    if (get) {
        if (!reads) {
            reply_error(req, 401, "unauthorized", "sign in first", NULL);
        } else if (strcmp(api, "live") == 0) {
            on_live(c, req);
        } else if (strcmp(api, "sku") == 0) {
            on_sku(c, req);
        } else if (strcmp(api, "supplier") == 0) {
            on_supplier(c, req);
        } else {
            reply_error(req, 404, "not_found", "no such console API", NULL);
        }
        return true;
    }
    if (!post) {
        reply_error(req, 405, "method", "GET or POST", "Allow: GET, HEAD, POST\r\n");
        return true;
    }
    /* Every POST: from the console's own page, as JSON. */
    if (!same_origin(req)) {
        reply_error(req, 403, "forbidden", "cross-origin request refused", NULL);
        return true;
    }
    if (!json_body_type(req)) {
        reply_error(req, 415, "invalid", "send Content-Type: application/json", NULL);
        return true;
    }
    if (strcmp(api, "login") == 0) {
        on_login(c, req);
        return true;
    }
    if (!se) {
        reply_error(req, 401, "unauthorized", "sign in first", NULL);
        return true;
    }
    const char *tok = httpd_header(req, "X-CSRF-Token");
    if (!tok || strlen(tok) != SID_HEX || CRYPTO_memcmp(tok, se->csrf, SID_HEX) != 0) {
        reply_error(req, 403, "forbidden", "missing or wrong CSRF token", NULL);
        return true;
    }
    if (strcmp(api, "logout") == 0) {
        LOG_I("console: signed out", "name", se->name);
        se->used = false;
        char hdr[256];
        cookie_header(c, NULL, hdr, sizeof hdr);
        reply_json(req, 200, json_pack("{s:b}", "signed_in", 0), hdr);
    } else if (strcmp(api, "ack") == 0) {
        on_ack(c, req, se);
    } else if (strcmp(api, "release") == 0) {
        on_release(c, req);
    } else if (strcmp(api, "recheck") == 0) {
        on_recheck(c, req);
    } else if (strcmp(api, "supplier") == 0) {
        on_supplier_put(c, req);
    } else {
        reply_error(req, 404, "not_found", "no such console action", NULL);
    }
    return true;
}

/* ------------------------------------------------------------ lifecycle */

console *console_new(struct event_base *base, server *srv, const stockd_config *cfg)
{
    console *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    c->srv = srv;
    c->cfg = cfg;
    c->rpc = crpc_new(base);
    c->tick = event_new(base, -1, EV_PERSIST, tick_cb, c);
    if (!c->rpc || !c->tick) {
        crpc_free(c->rpc);
        if (c->tick)
            event_free(c->tick);
        free(c);
        return NULL;
    }
    c->login_tokens = CONSOLE_LOGIN_BURST;
    c->login_mono_ms = mono_ms();
    struct timeval tv = {1, 0};
    event_add(c->tick, &tv);
    tick_cb(-1, 0, c);
    return c;
}

void console_free(console *c)
{
    if (!c)
        return;
    /* Calls in flight end without callbacks; then every waiting answer
     * goes out (503) and is freed. Queries still queued in the store hold
     * pointers into what is freed here: the store is freed next, before
     * the loop runs again, and drops them without callbacks. */
    crpc_free(c->rpc);
    c->waiters = NULL;
    while (c->pending) {
        pending *p = c->pending;
        reply_error(p->req, 503, "unavailable", "stockd is stopping", NULL);
        pending_free(p);
    }
    event_free(c->tick);
    json_decref(c->alerts);
    free(c);
}
