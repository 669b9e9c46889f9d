/* console.c — the support console (console.h): sessions, sign-in, CSRF
 * and origin checks, input checks, routing, and the helpers its JSON API
 * (console_api.c) answers with. */
#include "stockd/console_int.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "stockd/clock.h"
#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/rpc_parse.h"
#include "stockd/stats.h"

const char cs_sec_headers[] =
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'\r\n";


/* Copies at most cap - 1 bytes (names are checked where they come in). */
void cs_copy_cut(char *dst, size_t cap, const char *src)
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
bool cs_secret_equal(const char *got, size_t got_len, const char *want)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)got, got_len, a);
    SHA256((const unsigned char *)want, strlen(want), b);
    return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

const char *cs_reason_of(int status)
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
void cs_reply_json(httpd_req *req, int status, json_t *j, const char *extra)
{
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(j);
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "%s%s", cs_sec_headers, extra ? extra : "");
    if (!txt) {
        httpd_respond(req, 500, "Internal Server Error", "application/json; charset=utf-8",
                      "{\"error\":\"out of memory\"}", 25, hdr);
        return;
    }
    httpd_respond(req, status, cs_reason_of(status), "application/json; charset=utf-8", txt,
                  strlen(txt), hdr);
    free(txt);
}

void cs_reply_error(httpd_req *req, int status, const char *code, const char *message,
                        const char *extra)
{
    cs_reply_json(req, status, json_pack("{s:s, s:s}", "error", message, "code", code), extra);
}

/* The client port of this instance, as the console dials it. */
void cs_self_addr(const stockd_config *cfg, char *host, size_t n, int *port)
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
size_t cs_nodes_get(const console *c, ring_node *out)
{
    const stockd_config *cfg = c->cfg;
    size_t n = 0;
    char e[160];
    if (cfg->peers[0] == '\0' ||
        ring_parse_peers(cfg->peers, out, RING_NODES_MAX, &n, e, sizeof e) != 0 || n == 0) {
        memset(out, 0, sizeof *out);
        cs_copy_cut(out->name, sizeof out->name, cfg->node);
        n = 1;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(out[i].name, cfg->node) == 0 || n == 1)
            cs_self_addr(cfg, out[i].host, sizeof out[i].host, &out[i].port);
    return n;
}

/* msgpack (an RPC result) as JSON, bounded in depth and items. */
json_t *cs_mp_json(const msgpack_object *o, int depth)
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
            json_array_append_new(a, cs_mp_json(&o->via.array.ptr[i], depth + 1));
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
            json_object_set_new(m, key, cs_mp_json(&o->via.map.ptr[i].val, depth + 1));
        }
        return m;
    }
    default:
        return json_null();
    }
}

const char *cs_mp_str(const msgpack_object *map, const char *key, char *buf, size_t n)
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
int cs_status_of_code(const char *code)
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
json_t *cs_rpc_outcome(const msgpack_object *error, const msgpack_object *result,
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
        const char *cd = cs_mp_str(error, "code", code, sizeof code);
        const char *m = cs_mp_str(error, "message", msg, sizeof msg);
        *status = cs_status_of_code(cd);
        return json_pack("{s:s, s:s, s:o}", "error", m ? m : "error", "code", cd ? cd : "?",
                         "detail", cs_mp_json(error, 0));
    }
    *status = 200;
    return json_pack("{s:o}", "result", result ? cs_mp_json(result, 0) : json_null());
}

void cs_p_str(params *p, const char *k, const char *v)
{
    assert(p->n < 8);
    p->kv[p->n++] = (kv){.k = k, .t = 's', .s = v};
}

void cs_p_int(params *p, const char *k, int64_t v)
{
    assert(p->n < 8);
    p->kv[p->n++] = (kv){.k = k, .t = 'i', .i = v};
}

void cs_p_dbl(params *p, const char *k, double v)
{
    assert(p->n < 8);
    p->kv[p->n++] = (kv){.k = k, .t = 'd', .d = v};
}

void cs_p_bool(params *p, const char *k, bool v)
{
    assert(p->n < 8);
    p->kv[p->n++] = (kv){.k = k, .t = 'b', .b = v};
}

void cs_p_token(params *p, const stockd_config *cfg)
{
    if (cfg->admin_token[0])
        cs_p_str(p, "token", cfg->admin_token);
}

void cs_pack_params(msgpack_packer *pk, const void *ctx)
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

pending *cs_pending_new(console *c, httpd_req *req, pkind kind)
{
    if (c->n_pending >= CONSOLE_PENDING_MAX) {
        cs_reply_error(req, 503, "busy", "too many console requests waiting; try again", NULL);
        return NULL;
    }
    pending *p = calloc(1, sizeof *p);
    if (!p || !(p->out = json_object())) {
        free(p);
        cs_reply_error(req, 500, "internal", "out of memory", NULL);
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

void cs_pending_free(pending *p)
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
void cs_pending_done(pending *p)
{
    assert(p->waiting > 0);
    if (--p->waiting > 0)
        return;
    if (p->nodes)
        json_object_set(p->out, "nodes", p->nodes);
    json_t *out = p->out;
    p->out = NULL;
    cs_reply_json(p->req, p->status, out, NULL);
    cs_pending_free(p);
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
    int64_t now = clock_wall_ms();
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
    int64_t now = clock_wall_ms();
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
    cs_copy_cut(s->name, sizeof s->name, name);
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
    int64_t now = clock_mono_ms();
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
json_t *cs_body_object(httpd_req *req, const char *allowed)
{
    size_t len = 0;
    const char *b = httpd_body(req, &len);
    if (len > CONSOLE_BODY_MAX) {
        cs_reply_error(req, 413, "too_large", "request body over 4096 bytes", NULL);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(b, len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        cs_reply_error(req, 400, "invalid", "the body must be one JSON object", NULL);
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
            cs_reply_error(req, 400, "invalid", msg, NULL);
            return NULL;
        }
    }
    return j;
}

/* A string field of 1..max bytes (0..max with allow_empty), UTF-8 without
 * NUL; NULL when absent (required: answers 400) or bad (answers 400). */
const char *cs_field_str(httpd_req *req, json_t *j, const char *key, size_t max,
                             bool required, bool allow_empty, bool *bad)
{
    json_t *v = json_object_get(j, key);
    char msg[128];
    if (!v) {
        if (required) {
            snprintf(msg, sizeof msg, "%s: required", key);
            cs_reply_error(req, 400, "invalid", msg, NULL);
            *bad = true;
        }
        return NULL;
    }
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (!json_is_string(v) || n > max || (n == 0 && !allow_empty) ||
        strlen(json_string_value(v)) != n) {
        snprintf(msg, sizeof msg, "%s: a string of %s1..%zu bytes without NUL", key,
                 allow_empty ? "0 or " : "", max);
        cs_reply_error(req, 400, "invalid", msg, NULL);
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
bool cs_query_param(httpd_req *req, const char *name, char *out, size_t max)
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
        cs_reply_error(req, 403, "forbidden",
                    "nobody can sign in: stockd runs without --console-token and --admin-token",
                    NULL);
        return;
    }
    if (!login_allowed(c)) {
        cs_reply_error(req, 429, "busy", "too many failed sign-ins; wait a few seconds",
                    "Retry-After: 5\r\n");
        return;
    }
    json_t *j = cs_body_object(req, "token,name");
    if (!j)
        return;
    bool bad = false;
    const char *tok = cs_field_str(req, j, "token", CFG_STR_MAX - 1, true, false, &bad);
    const char *name = bad ? NULL : cs_field_str(req, j, "name", ENG_ID_MAX, false, false, &bad);
    if (!bad && !cs_secret_equal(tok, strlen(tok), want)) {
        c->login_tokens -= 1.0;
        LOG_W("console: sign-in refused (wrong token)");
        cs_reply_error(req, 401, "unauthorized", "wrong token", NULL);
        bad = true;
    }
    if (!bad) {
        session *s = session_new(c, name ? name : "console");
        if (!s) {
            cs_reply_error(req, 500, "internal", "no session could be made", NULL);
        } else {
            LOG_I("console: signed in", "name", s->name);
            char hdr[256];
            cookie_header(c, s, hdr, sizeof hdr);
            cs_reply_json(req, 200, session_json(c, s), hdr);
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
                      console_assets[i].len, cs_sec_headers);
        return;
    }
    cs_reply_error(req, 404, "not_found", "no such console file", NULL);
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
            cs_reply_error(req, 405, "method", "GET only", "Allow: GET, HEAD\r\n");
            return true;
        }
        serve_asset(req, rest[0] ? rest : "index.html");
        return true;
    }
    const char *api = rest + 4;
    session *se = session_of(c, req);
    bool reads = se != NULL || c->cfg->console_public_read;
    if (strcmp(api, "session") == 0 && get) {
        cs_reply_json(req, 200, session_json(c, se), NULL);
        return true;
    }
    if (get) {
        if (!reads) {
            cs_reply_error(req, 401, "unauthorized", "sign in first", NULL);
        } else if (strcmp(api, "live") == 0) {
            cs_on_live(c, req);
        } else if (strcmp(api, "sku") == 0) {
            cs_on_sku(c, req);
        } else if (strcmp(api, "supplier") == 0) {
            cs_on_supplier(c, req);
        } else {
            cs_reply_error(req, 404, "not_found", "no such console API", NULL);
        }
        return true;
    }
    if (!post) {
        cs_reply_error(req, 405, "method", "GET or POST", "Allow: GET, HEAD, POST\r\n");
        return true;
    }
    /* Every POST: from the console's own page, as JSON. */
    if (!same_origin(req)) {
        cs_reply_error(req, 403, "forbidden", "cross-origin request refused", NULL);
        return true;
    }
    if (!json_body_type(req)) {
        cs_reply_error(req, 415, "invalid", "send Content-Type: application/json", NULL);
        return true;
    }
    if (strcmp(api, "login") == 0) {
        on_login(c, req);
        return true;
    }
    if (!se) {
        cs_reply_error(req, 401, "unauthorized", "sign in first", NULL);
        return true;
    }
    const char *tok = httpd_header(req, "X-CSRF-Token");
    if (!tok || strlen(tok) != SID_HEX || CRYPTO_memcmp(tok, se->csrf, SID_HEX) != 0) {
        cs_reply_error(req, 403, "forbidden", "missing or wrong CSRF token", NULL);
        return true;
    }
    if (strcmp(api, "logout") == 0) {
        LOG_I("console: signed out", "name", se->name);
        se->used = false;
        char hdr[256];
        cookie_header(c, NULL, hdr, sizeof hdr);
        cs_reply_json(req, 200, json_pack("{s:b}", "signed_in", 0), hdr);
    } else if (strcmp(api, "ack") == 0) {
        cs_on_ack(c, req, se);
    } else if (strcmp(api, "release") == 0) {
        cs_on_release(c, req);
    } else if (strcmp(api, "recheck") == 0) {
        cs_on_recheck(c, req);
    } else if (strcmp(api, "supplier") == 0) {
        cs_on_supplier_put(c, req);
    } else {
        cs_reply_error(req, 404, "not_found", "no such console action", NULL);
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
    c->tick = event_new(base, -1, EV_PERSIST, cs_tick_cb, c);
    if (!c->rpc || !c->tick) {
        crpc_free(c->rpc);
        if (c->tick)
            event_free(c->tick);
        free(c);
        return NULL;
    }
    c->login_tokens = CONSOLE_LOGIN_BURST;
    c->login_mono_ms = clock_mono_ms();
    struct timeval tv = {1, 0};
    event_add(c->tick, &tv);
    cs_tick_cb(-1, 0, c);
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
        cs_reply_error(p->req, 503, "unavailable", "stockd is stopping", NULL);
        cs_pending_free(p);
    }
    event_free(c->tick);
    json_decref(c->alerts);
    free(c);
}
