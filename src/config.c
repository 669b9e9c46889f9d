/* config.c — defaults, INI file, STOCKD_* environment, flags (see config.h).
 *
 * Every option lives in one table (cfg_opts); the flag name, the file key and
 * the environment variable are all derived from its name, so the three
 * sources cannot drift apart. Values go through one function (cfg_apply) that
 * parses and range-checks them and names the source in any error.
 */
#include "stockd/config.h"
#include "stockd/ring.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Longest option name, "db-connect-timeout-ms" etc.; names are normalised into
 * a buffer of this size before lookup. */
#define CFG_NAME_MAX 64
/* An INI file longer than this is a mistake, not a config. */
#define CFG_FILE_LINES_MAX 10000
/* unix socket paths must fit sockaddr_un.sun_path (108 bytes with NUL). */
#define CFG_SOCKET_PATH_MAX 107
#define CFG_DB_NAME_MAX 64
#define CFG_NODE_MAX 64

typedef enum cfg_kind {
    CFG_K_HOSTPORT,   /* listen: HOST:PORT into listen_host/listen_port */
    CFG_K_HTTP,       /* http: HOST:PORT into http_host/http_port */
    CFG_K_DB_URL,     /* db: mysql:// URL into db_url and db */
    CFG_K_REDIS_URL,  /* redis: redis:// URL into redis_url/host/port */
    CFG_K_NODE,       /* node name: 1..64 of [A-Za-z0-9._:-] */
    CFG_K_PEERS,      /* peers: name=IP:PORT,... (ring_parse_peers) */
    CFG_K_SECRET,     /* tokens, keys: never echoed in messages (char[CFG_STR_MAX]) */
    CFG_K_PATH,       /* a file path, 1..CFG_STR_MAX-1 bytes (char[CFG_STR_MAX]) */
    CFG_K_SUPPLIER_URL, /* supplier gateway: "" or http(s)://... */
    CFG_K_LOG_LEVEL,  /* debug|info|warn|error */
    CFG_K_U32,        /* ranged unsigned integer */
    CFG_K_DOUBLE,     /* ranged finite double (dmin..dmax) */
    CFG_K_JSON_OBJECT, /* "{...}" text, shape-checked, into char[CFG_STR_MAX] */
    CFG_K_BOOL,       /* yes|no (also true|false, 1|0) into a bool */
    CFG_K_FLAG_ONLY,  /* --config, --check-config, --help, --version */
} cfg_kind;

typedef struct cfg_opt {
    const char *name;  /* long flag name without dashes */
    cfg_kind kind;
    size_t off;        /* offset of the field in stockd_config (U32, strings) */
    uint32_t min, max; /* U32 only */
    double dmin, dmax; /* DOUBLE only */
} cfg_opt;

#define OPT(n, kind, off) {n, kind, off, 0, 0, 0, 0}
#define U32(n, field, lo, hi) {n, CFG_K_U32, offsetof(stockd_config, field), lo, hi, 0, 0}
#define DBL(n, field, lo, hi) {n, CFG_K_DOUBLE, offsetof(stockd_config, field), 0, 0, lo, hi}

static const cfg_opt cfg_opts[] = {
    OPT("listen", CFG_K_HOSTPORT, 0),
    OPT("http", CFG_K_HTTP, 0),
    OPT("db", CFG_K_DB_URL, 0),
    OPT("redis", CFG_K_REDIS_URL, 0),
    OPT("node", CFG_K_NODE, offsetof(stockd_config, node)),
    OPT("peers", CFG_K_PEERS, offsetof(stockd_config, peers)),
    OPT("admin-token", CFG_K_SECRET, offsetof(stockd_config, admin_token)),
    OPT("cluster-secret", CFG_K_SECRET, offsetof(stockd_config, cluster_secret)),
    OPT("cluster-secret-alt", CFG_K_SECRET, offsetof(stockd_config, cluster_secret_alt)),
    OPT("cluster-secret-file", CFG_K_PATH, offsetof(stockd_config, cluster_secret_file)),
    OPT("supplier-url", CFG_K_SUPPLIER_URL, offsetof(stockd_config, supplier_url)),
    OPT("supplier-app-key", CFG_K_SECRET, offsetof(stockd_config, supplier_app_key)),
    OPT("supplier-app-secret", CFG_K_SECRET, offsetof(stockd_config, supplier_app_secret)),
    OPT("supplier-token", CFG_K_SECRET, offsetof(stockd_config, supplier_token)),
    U32("supplier-sync-ms", supplier_sync_ms, 100, 86400000),
    U32("supplier-concurrency", supplier_concurrency, 1, 256),
    U32("supplier-validate-ms", supplier_validate_ms, 100, 86400000),
    U32("supplier-push-window-ms", supplier_push_window_ms, 1000, 86400000),
    U32("supplier-upstream-lag-ms", supplier_upstream_lag_ms, 0, 86400000),
    OPT("supplier-address", CFG_K_JSON_OBJECT, offsetof(stockd_config, supplier_address)),
    U32("supplier-purchase-concurrency", supplier_purchase_concurrency, 1, 256),
    U32("supplier-purchase-backoff-max-ms", supplier_purchase_backoff_max_ms, 100, 3600000),
    U32("supplier-rate-per-s", supplier_rate_per_s, 1, 100000),
    U32("supplier-timeout-ms", supplier_timeout_ms, 100, 600000),
    DBL("supplier-trust", supplier_trust, 0.0, 1.0),
    DBL("supplier-event-trust", supplier_event_trust, 0.0, 1.0),
    DBL("supplier-trust-cut", supplier_trust_cut, 0.0, 1.0),
    DBL("supplier-trust-step", supplier_trust_step, 0.0, 1.0),
    OPT("test-clock", CFG_K_BOOL, offsetof(stockd_config, test_clock)),
    OPT("log-level", CFG_K_LOG_LEVEL, offsetof(stockd_config, log_level)),
    U32("max-message-bytes", max_message_bytes, 1024, 16777216),
    U32("max-depth", max_depth, 2, 32),
    U32("max-inflight-per-conn", max_inflight_per_conn, 1, 65536),
    U32("max-connections", max_connections, 1, 1000000),
    U32("idle-timeout-ms", idle_timeout_ms, 0, 86400000),
    U32("max-output-bytes", max_output_bytes, 65536, 1073741824),
    U32("max-output-total-bytes", max_output_total_bytes, 1048576, 4294967295u),
    U32("http-max-connections", http_max_connections, 1, 100000),
    OPT("console-token", CFG_K_SECRET, offsetof(stockd_config, console_token)),
    OPT("console-public-read", CFG_K_BOOL, offsetof(stockd_config, console_public_read)),
    U32("console-session-ttl-s", console_session_ttl_s, 60, 604800),
    U32("console-max-sessions", console_max_sessions, 1, 1024),
    OPT("console-secure-cookie", CFG_K_BOOL, offsetof(stockd_config, console_secure_cookie)),
    U32("queue-per-sku-max", queue_per_sku_max, 1, 1000000),
    U32("queue-total-max", queue_total_max, 1, 10000000),
    U32("batch-ops-max", batch_ops_max, 1, 65536),
    U32("batch-sku-ops-max", batch_sku_ops_max, 1, 65536),
    U32("expire-per-tick-max", expire_per_tick_max, 1, 1000000),
    U32("default-deadline-ms", default_deadline_ms, 1, 3600000),
    U32("db-connections", db_connections, 1, 16),
    U32("commit-timeout-ms", commit_timeout_ms, 100, 600000),
    U32("db-connect-timeout-ms", db_connect_timeout_ms, 100, 600000),
    U32("db-backoff-max-ms", db_backoff_max_ms, 10, 600000),
    OPT("preload-skus", CFG_K_BOOL, offsetof(stockd_config, preload_skus)),
    U32("cache-ttl-s", cache_ttl_s, 1, 86400),
    U32("redis-timeout-ms", redis_timeout_ms, 10, 60000),
    U32("redis-backoff-max-ms", redis_backoff_max_ms, 10, 600000),
    U32("bloom-fp-ppm", bloom_fp_ppm, 1, 500000),
    U32("bloom-min-skus", bloom_min_skus, 1, 1000000000),
    U32("cold-loads-max", cold_loads_max, 1, 100000),
    U32("order-retention-ms", order_retention_ms, 0, 2592000000u),
    U32("cart-hold-ms", cart_hold_ms, 1000, 86400000),
    U32("cart-inflight-max", cart_inflight_max, 1, 1000000),
    OPT("config", CFG_K_FLAG_ONLY, 0),
    OPT("check-config", CFG_K_FLAG_ONLY, 0),
    OPT("help", CFG_K_FLAG_ONLY, 0),
    OPT("version", CFG_K_FLAG_ONLY, 0),
};
#define CFG_OPTS_N (sizeof cfg_opts / sizeof cfg_opts[0])

/* ---- small helpers ---------------------------------------------------- */

static int cfg_fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_fail(char *err, size_t err_len, const char *fmt, ...) {
    if (err && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Copies src into dst[dst_len]; -1 if it does not fit (never truncates). */
static int cfg_copy(char *dst, size_t dst_len, const char *src, size_t src_len) {
    if (src_len >= dst_len) return -1;
    memcpy(dst, src, src_len);
    dst[src_len] = '\0';
    return 0;
}

/* Strict decimal: digits only, no sign, no blanks, no overflow. */
static int cfg_parse_u64(const char *s, size_t n, uint64_t limit, uint64_t *out) {
    if (n == 0 || n > 20) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (limit - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int cfg_parse_port(const char *s, size_t n, int *port, char *err, size_t err_len,
                          const char *what) {
    uint64_t v = 0;
    if (cfg_parse_u64(s, n, UINT32_MAX, &v) != 0 || v < 1 || v > 65535)
        return cfg_fail(err, err_len, "%s: port '%.*s' is not a number in 1..65535", what,
                        (int)(n > 16 ? 16 : n), s);
    *port = (int)v;
    return 0;
}

/* The loop never resolves names (getaddrinfo blocks), so hosts are literals. */
static bool cfg_host_ok(const char *host) {
    unsigned char buf[sizeof(struct in6_addr)];
    if (strcmp(host, "localhost") == 0) return true;
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Splits "host", "host:port", "[v6]" or "[v6]:port" held in s[0..n). port is
 * left alone when absent. */
static int cfg_split_host(const char *s, size_t n, char *host, size_t host_len, int *port,
                          bool port_required, char *err, size_t err_len, const char *what) {
    const char *h = s, *p = NULL;
    size_t hn = n, pn = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return cfg_fail(err, err_len, "%s: missing ']' after IPv6 address", what);
        h = s + 1;
        hn = (size_t)(close - h);
        size_t rest = n - (size_t)(close + 1 - s);
        if (rest > 0) {
            if (close[1] != ':') return cfg_fail(err, err_len, "%s: expected ':' after ']'", what);
            p = close + 2;
            pn = rest - 1;
        }
    } else {
        const char *colon = NULL;
        for (size_t i = 0; i < n; i++)
            if (s[i] == ':') colon = s + i;
        if (colon) {
            hn = (size_t)(colon - s);
            p = colon + 1;
            pn = n - hn - 1;
            if (memchr(s, ':', hn))
                return cfg_fail(err, err_len, "%s: IPv6 addresses need brackets: [addr]:port",
                                what);
        }
    }
    if (hn == 0) return cfg_fail(err, err_len, "%s: missing host", what);
    if (cfg_copy(host, host_len, h, hn) != 0)
        return cfg_fail(err, err_len, "%s: host is too long", what);
    if (!cfg_host_ok(host))
        return cfg_fail(err, err_len,
                        "%s: host '%.64s' must be an IP address or 'localhost'", what, host);
    if (p) return cfg_parse_port(p, pn, port, err, err_len, what);
    if (port_required) return cfg_fail(err, err_len, "%s: missing ':PORT'", what);
    return 0;
}

static int cfg_hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out[out_len]; refuses bad escapes and %00. */
static int cfg_pct_decode(const char *s, size_t n, char *out, size_t out_len) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n) return -1; /* needs two hex digits */
            int hi = cfg_hexval(s[i + 1]), lo = cfg_hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= out_len) return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return 0;
}

/* ---- public parsers ---------------------------------------------------- */

int config_parse_hostport(const char *s, char *host, size_t host_len, int *port,
                          char *err, size_t err_len) {
    assert(s && host && port);
    return cfg_split_host(s, strlen(s), host, host_len, port, true, err, err_len,
                          "HOST:PORT");
}

int config_parse_redis_url(const char *url, char *host, size_t host_len, int *port,
                           char *err, size_t err_len) {
    assert(url && host && port);
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0)
        return cfg_fail(err, err_len, "redis URL: must start with redis://");
    const char *a = url + sizeof scheme - 1;
    size_t n = strlen(a);
    if (n > 0 && a[n - 1] == '/') n--; /* "redis://host:port/" is common */
    if (memchr(a, '/', n) || memchr(a, '@', n) || memchr(a, '?', n))
        return cfg_fail(err, err_len,
                        "redis URL: only redis://host:port is supported (no user, db or query)");
    *port = 6379;
    return cfg_split_host(a, n, host, host_len, port, false, err, err_len, "redis URL");
}

static bool cfg_db_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > CFG_DB_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return false;
    return true;
}

/* Query string: only "socket=/abs/path" is known. */
static int cfg_db_query(const char *q, size_t n, cfg_db *out, char *err, size_t err_len) {
    while (n > 0) {
        const char *amp = memchr(q, '&', n);
        size_t len = amp ? (size_t)(amp - q) : n;
        static const char key[] = "socket=";
        if (len < sizeof key - 1 || memcmp(q, key, sizeof key - 1) != 0)
            return cfg_fail(err, err_len, "db URL: unknown query parameter '%.*s' (only socket=)",
                            (int)(len > 32 ? 32 : len), q);
        if (cfg_pct_decode(q + sizeof key - 1, len - (sizeof key - 1), out->socket,
                           CFG_SOCKET_PATH_MAX + 1) != 0)
            return cfg_fail(err, err_len, "db URL: bad or too long socket path");
        if (out->socket[0] != '/')
            return cfg_fail(err, err_len, "db URL: socket path must be absolute");
        q += len;
        n -= len;
        if (n > 0) { q++; n--; }
    }
    return 0;
}

/* Splits the part between "://" and "/db" into user, password, host, port. */
static int cfg_db_authority(const char *a, size_t n, cfg_db *out, char *err, size_t err_len) {
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) /* last '@': tolerate an unencoded '@' in passwords */
        if (a[i] == '@') at = a + i;
    if (at) {
        size_t un = (size_t)(at - a);
        const char *colon = memchr(a, ':', un);
        size_t user_n = colon ? (size_t)(colon - a) : un;
        if (cfg_pct_decode(a, user_n, out->user, sizeof out->user) != 0)
            return cfg_fail(err, err_len, "db URL: bad or too long user");
        if (colon && cfg_pct_decode(colon + 1, un - user_n - 1, out->password,
                                    sizeof out->password) != 0)
            return cfg_fail(err, err_len, "db URL: bad or too long password (percent-encode "
                                          "special characters)");
        n -= un + 1;
        a = at + 1;
    }
    if (n == 0) return 0; /* host may be empty only with ?socket=, checked by caller */
    return cfg_split_host(a, n, out->host, sizeof out->host, &out->port, false, err, err_len,
                          "db URL");
}

int config_parse_db_url(const char *url, cfg_db *out, char *err, size_t err_len) {
    assert(url && out);
    memset(out, 0, sizeof *out);
    out->port = 3306;
    const char *rest = NULL;
    if (strncmp(url, "mysql://", 8) == 0) rest = url + 8;
    else if (strncmp(url, "mariadb://", 10) == 0) rest = url + 10;
    else return cfg_fail(err, err_len, "db URL: must start with mysql:// or mariadb://");
    size_t n = strlen(rest);
    const char *q = memchr(rest, '?', n);
    size_t before_q = q ? (size_t)(q - rest) : n;
    if (q && cfg_db_query(q + 1, n - before_q - 1, out, err, err_len) != 0) return -1;
    const char *slash = memchr(rest, '/', before_q);
    if (!slash) return cfg_fail(err, err_len, "db URL: missing /DATABASE");
    if (cfg_db_authority(rest, (size_t)(slash - rest), out, err, err_len) != 0) return -1;
    char db[CFG_STR_MAX];
    if (cfg_pct_decode(slash + 1, before_q - (size_t)(slash + 1 - rest), db, sizeof db) != 0 ||
        !cfg_db_name_ok(db))
        return cfg_fail(err, err_len, "db URL: database name must be 1..64 of [A-Za-z0-9_]");
    memcpy(out->database, db, strlen(db) + 1);
    if (out->host[0] == '\0') {
        if (out->socket[0] == '\0')
            return cfg_fail(err, err_len, "db URL: missing host (or ?socket=/path)");
        memcpy(out->host, "localhost", sizeof "localhost");
    }
    return 0;
}

/* ---- applying one value ------------------------------------------------ */

static bool cfg_node_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > CFG_NODE_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != ':' && ch != '-') return false;
    }
    return true;
}

static bool cfg_token_ok(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || *s == 0x7f) return false;
    return true;
}

static bool cfg_log_level_ok(const char *s) {
    return strcmp(s, "debug") == 0 || strcmp(s, "info") == 0 || strcmp(s, "warn") == 0 ||
           strcmp(s, "error") == 0;
}

static int cfg_apply_u32(stockd_config *c, const cfg_opt *o, const char *v, const char *where,
                         char *err, size_t err_len) {
    uint64_t x = 0;
    if (cfg_parse_u64(v, strlen(v), UINT64_MAX, &x) != 0)
        return cfg_fail(err, err_len, "%s: '%.32s' is not a whole number", where, v);
    if (x < o->min || x > o->max)
        return cfg_fail(err, err_len, "%s: %llu is out of range %u..%u", where,
                        (unsigned long long)x, o->min, o->max);
    *(uint32_t *)((char *)c + o->off) = (uint32_t)x;
    return 0;
}

/* Strict: the whole string is one finite decimal number (no blanks, no hex,
 * no inf/nan), within the option's range. */
static int cfg_apply_double(stockd_config *c, const cfg_opt *o, const char *v,
                            const char *where, char *err, size_t err_len) {
    size_t vn = strlen(v);
    bool plain = vn > 0 && vn <= 32;
    for (size_t i = 0; plain && i < vn; i++) /* strtod also takes hex, inf, nan, blanks */
        plain = (v[i] >= '0' && v[i] <= '9') || v[i] == '.' || v[i] == 'e' || v[i] == 'E' ||
                v[i] == '-' || v[i] == '+';
    char *end = NULL;
    errno = 0;
    double x = plain ? strtod(v, &end) : 0.0;
    if (!plain || end != v + vn || errno == ERANGE || !isfinite(x))
        return cfg_fail(err, err_len, "%s: '%.32s' is not a number", where, v);
    if (!(x >= o->dmin && x <= o->dmax))
        return cfg_fail(err, err_len, "%s: %.32s is out of range %g..%g", where, v, o->dmin,
                        o->dmax);
    *(double *)((char *)c + o->off) = x;
    return 0;
}

/* A shape check of one JSON object, enough to catch a truncated or
 * mistyped value at startup (the gateway judges the content): '{' first,
 * '}' last, strings closed, escapes complete, brackets balanced and
 * nested correctly, no control bytes, depth bounded. */
static bool cfg_json_object_ok(const char *s, size_t n) {
    enum { DEPTH_MAX = 16 };
    char stack[DEPTH_MAX];
    size_t depth = 0;
    bool in_str = false;
    if (n < 2 || s[0] != '{' || s[n - 1] != '}') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) return false;
        if (in_str) {
            if (ch == '\\') {
                if (++i >= n) return false;
            } else if (ch == '"') {
                in_str = false;
            }
            continue;
        }
        if (ch == '"') {
            in_str = true;
        } else if (ch == '{' || ch == '[') {
            if (depth == DEPTH_MAX) return false;
            stack[depth++] = ch == '{' ? '}' : ']';
        } else if (ch == '}' || ch == ']') {
            if (depth == 0 || stack[depth - 1] != (char)ch) return false;
            /* the outer object closes only at the very end */
            if (--depth == 0 && i != n - 1) return false;
        }
    }
    return !in_str && depth == 0;
}

/* Parses value v for option o into c; where names the source for messages
 * ("flag --db", "STOCKD_DB", "file.ini:3: db"). Writes nothing on error. */
static int cfg_apply(stockd_config *c, const cfg_opt *o, const char *v, const char *where,
                     char *err, size_t err_len) {
    char e[192];
    char host[CFG_STR_MAX];
    int port = 0;
    size_t vn = strlen(v);
    switch (o->kind) {
    case CFG_K_U32:
        return cfg_apply_u32(c, o, v, where, err, err_len);
    case CFG_K_DOUBLE:
        return cfg_apply_double(c, o, v, where, err, err_len);
    case CFG_K_JSON_OBJECT:
        if (vn >= CFG_STR_MAX || !cfg_json_object_ok(v, vn))
            return cfg_fail(err, err_len,
                            "%s: must be one JSON object {...} under %d bytes", where,
                            CFG_STR_MAX);
        memcpy((char *)c + o->off, v, vn + 1);
        return 0;
    case CFG_K_BOOL:
        if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
            *(bool *)((char *)c + o->off) = true;
        else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
            *(bool *)((char *)c + o->off) = false;
        else
            return cfg_fail(err, err_len, "%s: '%.32s' is not yes or no", where, v);
        return 0;
    case CFG_K_HOSTPORT:
        if (config_parse_hostport(v, host, sizeof host, &port, e, sizeof e) != 0)
            return cfg_fail(err, err_len, "%s: %s", where, e);
        memcpy(c->listen_host, host, strlen(host) + 1);
        c->listen_port = port;
        return 0;
    case CFG_K_HTTP:
        if (config_parse_hostport(v, host, sizeof host, &port, e, sizeof e) != 0)
            return cfg_fail(err, err_len, "%s: %s", where, e);
        memcpy(c->http_host, host, strlen(host) + 1);
        c->http_port = port;
        return 0;
    case CFG_K_DB_URL: {
        cfg_db db;
        if (vn >= sizeof c->db_url) return cfg_fail(err, err_len, "%s: URL is too long", where);
        if (config_parse_db_url(v, &db, e, sizeof e) != 0)
            return cfg_fail(err, err_len, "%s: %s", where, e);
        memcpy(c->db_url, v, vn + 1);
        c->db = db;
        return 0;
    }
    case CFG_K_REDIS_URL:
        if (vn >= sizeof c->redis_url)
            return cfg_fail(err, err_len, "%s: URL is too long", where);
        if (config_parse_redis_url(v, host, sizeof host, &port, e, sizeof e) != 0)
            return cfg_fail(err, err_len, "%s: %s", where, e);
        memcpy(c->redis_url, v, vn + 1);
        memcpy(c->redis_host, host, strlen(host) + 1);
        c->redis_port = port;
        return 0;
    case CFG_K_NODE:
        if (!cfg_node_ok(v))
            return cfg_fail(err, err_len, "%s: node name must be 1..64 of [A-Za-z0-9._:-]",
                            where);
        memcpy(c->node, v, vn + 1);
        return 0;
    case CFG_K_PEERS: {
        ring_node nodes[RING_NODES_MAX];
        size_t n = 0;
        if (vn >= sizeof c->peers)
            return cfg_fail(err, err_len, "%s: peer list is too long", where);
        if (vn > 0 && ring_parse_peers(v, nodes, RING_NODES_MAX, &n, e, sizeof e) != 0)
            return cfg_fail(err, err_len, "%s: %s", where, e);
        memcpy(c->peers, v, vn + 1);
        return 0;
    }
    case CFG_K_SECRET:
        /* Every secret field is char[CFG_STR_MAX]; the value is never quoted. */
        if (vn >= CFG_STR_MAX || !cfg_token_ok(v))
            return cfg_fail(err, err_len,
                            "%s: token must be under %d printable bytes without blanks", where,
                            CFG_STR_MAX);
        memcpy((char *)c + o->off, v, vn + 1);
        return 0;
    case CFG_K_PATH:
        if (vn == 0 || vn >= CFG_STR_MAX)
            return cfg_fail(err, err_len, "%s: path must be 1..%d bytes", where, CFG_STR_MAX - 1);
        memcpy((char *)c + o->off, v, vn + 1);
        return 0;
    case CFG_K_SUPPLIER_URL:
        if (vn >= CFG_STR_MAX)
            return cfg_fail(err, err_len, "%s: URL is too long", where);
        if (vn > 0 && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
            return cfg_fail(err, err_len, "%s: URL must start with http:// or https://", where);
        if (!cfg_token_ok(v))
            return cfg_fail(err, err_len, "%s: URL must be printable without blanks", where);
        memcpy(c->supplier_url, v, vn + 1);
        return 0;
    case CFG_K_LOG_LEVEL:
        if (!cfg_log_level_ok(v))
            return cfg_fail(err, err_len, "%s: '%.32s' is not one of debug, info, warn, error",
                            where, v);
        memcpy(c->log_level, v, vn + 1);
        return 0;
    case CFG_K_FLAG_ONLY:
        break;
    }
    return cfg_fail(err, err_len, "%s: can only be given as a flag", where);
}

/* Finds an option by name; '_' counts as '-' and case is ignored. */
static const cfg_opt *cfg_find(const char *name, size_t n) {
    char norm[CFG_NAME_MAX];
    if (n == 0 || n >= sizeof norm) return NULL;
    for (size_t i = 0; i < n; i++) {
        char ch = (char)tolower((unsigned char)name[i]);
        norm[i] = ch == '_' ? '-' : ch;
    }
    norm[n] = '\0';
    for (size_t i = 0; i < CFG_OPTS_N; i++)
        if (strcmp(cfg_opts[i].name, norm) == 0) return &cfg_opts[i];
    return NULL;
}

/* ---- INI file ----------------------------------------------------------- */

typedef struct cfg_ini {
    stockd_config *c;
    FILE *f;
    const char *path;
    int lineno;       /* line the reader handed out last = line the handler sees */
    int err_line;     /* first line the handler or the reader refused; 0 = none */
    char *err;
    size_t err_len;
} cfg_ini;

/* fgets-style reader that counts lines, so handler errors carry their line,
 * and refuses what inih would silently misread: overlong lines (split in
 * two) and indented lines (taken as a continuation of the previous value). */
static char *cfg_ini_reader(char *str, int num, void *stream) {
    cfg_ini *st = stream;
    if (st->err_line) return NULL;
    if (!fgets(str, num, st->f)) return NULL;
    st->lineno++;
    size_t n = strlen(str);
    if (st->lineno > CFG_FILE_LINES_MAX) {
        st->err_line = st->lineno;
        cfg_fail(st->err, st->err_len, "%s:%d: more than %d lines", st->path, st->lineno,
                 CFG_FILE_LINES_MAX);
        return NULL;
    }
    if (n > 0 && str[n - 1] != '\n' && !feof(st->f)) {
        st->err_line = st->lineno;
        cfg_fail(st->err, st->err_len, "%s:%d: line longer than %d bytes", st->path,
                 st->lineno, num - 2);
        return NULL;
    }
    size_t lead = strspn(str, " \t");
    if (lead > 0 && str[lead] != '\0' && !strchr("\r\n;#", str[lead])) {
        st->err_line = st->lineno;
        cfg_fail(st->err, st->err_len, "%s:%d: indented line (continuation lines are not "
                 "supported)", st->path, st->lineno);
        return NULL;
    }
    return str;
}

static int cfg_ini_handler(void *user, const char *section, const char *name,
                           const char *value) {
    cfg_ini *st = user;
    if (st->err_line) return 0;
    char where[CFG_STR_MAX + 96];
    snprintf(where, sizeof where, "%s:%d: %.64s", st->path, st->lineno, name);
    const cfg_opt *o = cfg_find(name, strlen(name));
    int rc = 0;
    if (section[0] != '\0' && strcmp(section, "stockd") != 0)
        rc = cfg_fail(st->err, st->err_len, "%s:%d: unknown section [%.64s] (only [stockd])",
                      st->path, st->lineno, section);
    else if (!o || o->kind == CFG_K_FLAG_ONLY)
        rc = cfg_fail(st->err, st->err_len, "%s: unknown key", where);
    else {
        /* A value in double quotes keeps its inner text, as people expect. */
        char unq[CFG_STR_MAX];
        size_t vn = strlen(value);
        if (vn >= 2 && value[0] == '"' && value[vn - 1] == '"' &&
            cfg_copy(unq, sizeof unq, value + 1, vn - 2) == 0)
            value = unq;
        rc = cfg_apply(st->c, o, value, where, st->err, st->err_len);
    }
    if (rc != 0) st->err_line = st->lineno;
    return rc == 0;
}

static int cfg_load_file(stockd_config *c, const char *path, char *err, size_t err_len) {
    FILE *f = fopen(path, "r");
    if (!f) return cfg_fail(err, err_len, "config file %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return cfg_fail(err, err_len, "config file %s: not a regular file", path);
    }
    cfg_ini st = {.c = c, .f = f, .path = path, .err = err, .err_len = err_len};
    int rc = ini_parse_stream(cfg_ini_reader, &st, cfg_ini_handler, &st);
    fclose(f);
    if (rc < 0) return cfg_fail(err, err_len, "config file %s: cannot read", path);
    /* inih reports the first bad line; if it precedes ours it is a syntax error. */
    if (rc > 0 && (st.err_line == 0 || rc < st.err_line))
        return cfg_fail(err, err_len, "%s:%d: syntax error (expected key = value or [stockd])",
                        path, rc);
    return st.err_line ? -1 : 0;
}

/* ---- environment and flags ---------------------------------------------- */

static const char cfg_env_prefix[] = "STOCKD_";
#define CFG_ENV_PREFIX_LEN (sizeof cfg_env_prefix - 1)

/* Unknown STOCKD_* names are ignored on purpose: the environment is shared
 * with tools (STOCKD_BIN in tests), unlike a file or a command line. */
static int cfg_load_env(stockd_config *c, char **envp, char *err, size_t err_len) {
    for (size_t i = 0; envp && envp[i]; i++) {
        const char *kv = envp[i];
        if (strncmp(kv, cfg_env_prefix, CFG_ENV_PREFIX_LEN) != 0) continue;
        const char *eq = strchr(kv, '=');
        if (!eq) continue;
        const char *name = kv + CFG_ENV_PREFIX_LEN;
        size_t n = (size_t)(eq - name);
        bool upper = true;
        for (size_t j = 0; j < n; j++)
            if (islower((unsigned char)name[j]) || name[j] == '-') upper = false;
        const cfg_opt *o = upper ? cfg_find(name, n) : NULL;
        if (!o || o->kind == CFG_K_FLAG_ONLY) continue;
        char where[CFG_NAME_MAX + 16];
        snprintf(where, sizeof where, "%.*s", (int)(eq - kv), kv);
        if (cfg_apply(c, o, eq + 1, where, err, err_len) != 0) return -1;
    }
    return 0;
}

static const char *cfg_env_get(char **envp, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=') return envp[i] + n + 1;
    return NULL;
}

/* One flag at argv[*i]: finds its option and value ("--x v" or "--x=v") and
 * advances *i past what it used. */
static int cfg_flag_split(int argc, char **argv, int *i, const cfg_opt **opt,
                          const char **value, char *err, size_t err_len) {
    const char *a = argv[*i];
    if (strcmp(a, "-h") == 0) a = "--help";
    if (strcmp(a, "-V") == 0) a = "--version";
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
        return cfg_fail(err, err_len, "unexpected argument '%.64s' (see --help)", a);
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    const cfg_opt *o = memchr(name, '_', n) ? NULL : cfg_find(name, n);
    if (!o) return cfg_fail(err, err_len, "unknown flag --%.*s (see --help)",
                            (int)(n > 64 ? 64 : n), name);
    bool boolean = o->kind == CFG_K_FLAG_ONLY && strcmp(o->name, "config") != 0;
    *opt = o;
    *value = NULL;
    if (boolean) {
        if (eq) return cfg_fail(err, err_len, "flag --%s takes no value", o->name);
    } else if (eq) {
        *value = eq + 1;
    } else if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
        /* "--node --listen x" is a forgotten value, not a node named --listen;
         * a value that really starts with "--" can be given as --x=--v */
        *value = argv[++*i];
    } else {
        return cfg_fail(err, err_len, "flag --%s needs a value", o->name);
    }
    (*i)++;
    return 0;
}

/* Pass 1: syntax of every flag, and the ones that steer loading. */
static int cfg_scan_flags(stockd_config *c, int argc, char **argv, char *err, size_t err_len) {
    for (int i = 1; i < argc;) {
        const cfg_opt *o;
        const char *v;
        if (cfg_flag_split(argc, argv, &i, &o, &v, err, err_len) != 0) return -1;
        if (strcmp(o->name, "help") == 0) c->help = true;
        else if (strcmp(o->name, "version") == 0) c->version = true;
        else if (strcmp(o->name, "check-config") == 0) c->check_only = true;
        else if (strcmp(o->name, "config") == 0 &&
                 (v[0] == '\0' ||
                  cfg_copy(c->config_file, sizeof c->config_file, v, strlen(v)) != 0))
            return cfg_fail(err, err_len, "flag --config: empty or too long path");
    }
    return 0;
}

/* Pass 2: the values, after file and environment, so flags win. */
static int cfg_apply_flags(stockd_config *c, int argc, char **argv, char *err, size_t err_len) {
    for (int i = 1; i < argc;) {
        const cfg_opt *o;
        const char *v;
        if (cfg_flag_split(argc, argv, &i, &o, &v, err, err_len) != 0) return -1;
        if (o->kind == CFG_K_FLAG_ONLY) continue;
        char where[CFG_NAME_MAX + 16];
        snprintf(where, sizeof where, "flag --%s", o->name);
        if (cfg_apply(c, o, v, where, err, err_len) != 0) return -1;
    }
    return 0;
}

/* The cluster secret from its own file: line 1 the secret, an optional
 * line 2 a second accepted one (rotation). Not readable by other users:
 * whoever reads it can speak as a peer. */
static int cfg_read_secret_file(stockd_config *c, char *err, size_t err_len) {
    const char *path = c->cluster_secret_file;
    if (c->cluster_secret[0] || c->cluster_secret_alt[0])
        return cfg_fail(err, err_len,
                        "give cluster-secret (and cluster-secret-alt) or cluster-secret-file, not both");
    struct stat stt;
    if (stat(path, &stt) != 0)
        return cfg_fail(err, err_len, "cluster-secret-file %s: %s", path, strerror(errno));
    if (stt.st_mode & S_IROTH)
        return cfg_fail(err, err_len, "cluster-secret-file %s is readable by other users (chmod o-r)",
                        path);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return cfg_fail(err, err_len, "cluster-secret-file %s: %s", path, strerror(errno));
    char line[CFG_STR_MAX + 2];
    char *dst[2] = {c->cluster_secret, c->cluster_secret_alt};
    int n = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
            rc = cfg_fail(err, err_len, "cluster-secret-file %s: line longer than %d bytes", path,
                          CFG_STR_MAX - 1);
            break;
        }
        while (len > 0 && isspace((unsigned char)line[len - 1]))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (n == 2 || len >= CFG_STR_MAX || !cfg_token_ok(line))
            rc = cfg_fail(err, err_len,
                          "cluster-secret-file %s: one or two lines of printable bytes without "
                          "blanks (the secret, then an optional second accepted one)", path);
        else
            memcpy(dst[n++], line, len + 1);
    }
    fclose(f);
    if (rc == 0 && n == 0)
        rc = cfg_fail(err, err_len, "cluster-secret-file %s holds no secret", path);
    return rc;
}

/* Limits that only make sense together. */
static int cfg_check_relations(stockd_config *c, char *err, size_t err_len) {
    if (c->cluster_secret_file[0] && cfg_read_secret_file(c, err, err_len) != 0)
        return -1;
    if (c->cluster_secret_alt[0] && !c->cluster_secret[0])
        return cfg_fail(err, err_len, "cluster-secret-alt needs cluster-secret");
    if ((c->cluster_secret[0] && strlen(c->cluster_secret) < CFG_SECRET_MIN) ||
        (c->cluster_secret_alt[0] && strlen(c->cluster_secret_alt) < CFG_SECRET_MIN))
        return cfg_fail(err, err_len, "a cluster secret must be at least %d bytes (e.g. "
                        "openssl rand -hex 32)", CFG_SECRET_MIN);
    if (c->peers[0]) {
        ring_node nodes[RING_NODES_MAX];
        size_t n = 0;
        char e[160];
        bool self = false;
        if (ring_parse_peers(c->peers, nodes, RING_NODES_MAX, &n, e, sizeof e) != 0)
            return cfg_fail(err, err_len, "peers: %s", e);
        for (size_t i = 0; i < n; i++)
            self |= strcmp(nodes[i].name, c->node) == 0;
        if (!self)
            return cfg_fail(err, err_len, "peers must name this node (--node %s)", c->node);
        if (n > 1 && !c->cluster_secret[0])
            return cfg_fail(err, err_len,
                            "peers names other nodes but no cluster secret is set: peers prove "
                            "themselves with it; give every node the same --cluster-secret "
                            "(at least %d bytes) or --cluster-secret-file", CFG_SECRET_MIN);
    }
    /* A console sign-in is worth an admin token: not one a guess finds. */
    if (c->console_token[0] && strlen(c->console_token) < CFG_CONSOLE_TOKEN_MIN)
        return cfg_fail(err, err_len, "console-token must be at least %d bytes (e.g. "
                        "openssl rand -hex 16)", CFG_CONSOLE_TOKEN_MIN);
    if (c->supplier_url[0] &&
        (!c->supplier_app_key[0] || !c->supplier_app_secret[0] || !c->supplier_token[0]))
        return cfg_fail(err, err_len,
                        "supplier-url needs supplier-app-key, supplier-app-secret and "
                        "supplier-token");
    /* A cluster's parts retry and hand over on the wall clock of every
     * node: one node's manual clock would only stall them. */
    if (c->test_clock && c->peers[0])
        return cfg_fail(err, err_len, "test-clock is for a single node: not with peers");
    if (c->batch_sku_ops_max > c->batch_ops_max)
        return cfg_fail(err, err_len, "batch-sku-ops-max (%u) must not exceed batch-ops-max (%u)",
                        c->batch_sku_ops_max, c->batch_ops_max);
    if (c->queue_per_sku_max > c->queue_total_max)
        return cfg_fail(err, err_len,
                        "queue-per-sku-max (%u) must not exceed queue-total-max (%u)",
                        c->queue_per_sku_max, c->queue_total_max);
    return 0;
}

/* ---- public entry points ------------------------------------------------- */

void config_defaults(stockd_config *c) {
    assert(c);
    memset(c, 0, sizeof *c);
    static const char db_url[] = "mysql://stockd@127.0.0.1:3306/stockd";
    static const char redis_url[] = "redis://127.0.0.1:6379";
    memcpy(c->listen_host, "127.0.0.1", sizeof "127.0.0.1");
    c->listen_port = 7400;
    memcpy(c->db_url, db_url, sizeof db_url);
    int rc = config_parse_db_url(db_url, &c->db, NULL, 0);
    assert(rc == 0);
    memcpy(c->redis_url, redis_url, sizeof redis_url);
    rc = config_parse_redis_url(redis_url, c->redis_host, sizeof c->redis_host, &c->redis_port,
                                NULL, 0);
    assert(rc == 0);
    (void)rc;
    memcpy(c->node, "stockd-1", sizeof "stockd-1");
    memcpy(c->log_level, "info", sizeof "info");
    c->max_message_bytes = 65536;
    c->max_depth = 16;
    c->max_inflight_per_conn = 1024;
    c->max_connections = 10000;
    c->idle_timeout_ms = 300000;
    c->max_output_bytes = 8u << 20;
    c->max_output_total_bytes = 256u << 20;
    c->http_max_connections = 64;
    c->console_session_ttl_s = 28800;
    c->console_max_sessions = 64;
    c->queue_per_sku_max = 10000;
    c->queue_total_max = 200000;
    c->batch_ops_max = 4096;
    c->batch_sku_ops_max = 2048;
    c->expire_per_tick_max = 1000;
    c->default_deadline_ms = 2000;
    c->db_connections = 2;
    c->commit_timeout_ms = 5000;
    c->db_connect_timeout_ms = 2000;
    c->db_backoff_max_ms = 2000;
    c->preload_skus = true;
    c->cache_ttl_s = 60;
    c->redis_timeout_ms = 250;
    c->redis_backoff_max_ms = 500;
    c->bloom_fp_ppm = 1000;
    c->bloom_min_skus = 1000000;
    c->cold_loads_max = 16384;
    c->order_retention_ms = 3600000;
    c->cart_hold_ms = 10000;
    c->cart_inflight_max = 10000;
    c->supplier_sync_ms = 300000;
    c->supplier_concurrency = 4;
    c->supplier_validate_ms = 1800000;
    c->supplier_push_window_ms = 300000;
    c->supplier_upstream_lag_ms = 300000;
    memcpy(c->supplier_address, "{\"addressId\":1}", sizeof "{\"addressId\":1}");
    c->supplier_purchase_concurrency = 8;
    c->supplier_purchase_backoff_max_ms = 60000;
    c->supplier_rate_per_s = 20;
    c->supplier_timeout_ms = 10000;
    c->supplier_trust = 1.0;
    c->supplier_event_trust = 0.5;
    c->supplier_trust_cut = 0.5;
    c->supplier_trust_step = 0.05;
}

int config_load(stockd_config *c, int argc, char **argv, char **envp, char *err,
                size_t err_len) {
    assert(c && argc >= 0 && (argc == 0 || argv));
    if (err && err_len) err[0] = '\0';
    config_defaults(c);
    if (cfg_scan_flags(c, argc, argv, err, err_len) != 0) return -1;
    if (c->help || c->version) return 0; /* answer those even with a broken config */
    const char *env_file = cfg_env_get(envp, "STOCKD_CONFIG");
    if (c->config_file[0] == '\0' && env_file && env_file[0] != '\0' &&
        cfg_copy(c->config_file, sizeof c->config_file, env_file, strlen(env_file)) != 0)
        return cfg_fail(err, err_len, "STOCKD_CONFIG: path is too long");
    if (c->config_file[0] && cfg_load_file(c, c->config_file, err, err_len) != 0) return -1;
    if (cfg_load_env(c, envp, err, err_len) != 0) return -1;
    if (cfg_apply_flags(c, argc, argv, err, err_len) != 0) return -1;
    return cfg_check_relations(c, err, err_len);
}

const char *config_usage(void) {
    return
"Usage: stockd [OPTIONS]\n"
"\n"
"Inventory reservation server (msgpack-rpc over TCP, MariaDB as the truth).\n"
"Every option can be set, in rising precedence, in an INI file (key = value,\n"
"optionally under [stockd]; '-' or '_' in keys), as an environment variable\n"
"STOCKD_<NAME> (upper case, '_' for '-'), or as a flag (--name VALUE or\n"
"--name=VALUE).\n"
"\n"
"General:\n"
"  --config FILE              INI file to read (env STOCKD_CONFIG; default none)\n"
"  --check-config             validate the configuration and exit\n"
"  -h, --help                 show this text and exit\n"
"  -V, --version              show the version and exit\n"
"  --listen HOST:PORT         address to serve on; HOST is an IP or localhost,\n"
"                             IPv6 as [addr]:port (env STOCKD_LISTEN;\n"
"                             default 127.0.0.1:7400)\n"
"  --http HOST:PORT           serve /metrics (Prometheus), /healthz, /readyz and\n"
"                             the support console /console/ over HTTP\n"
"                             (env STOCKD_HTTP; default off)\n"
"  --db URL                   MariaDB: mysql://user:pass@host:port/db or\n"
"                             mysql://user:pass@/db?socket=/path; percent-encode\n"
"                             special characters in the password (env STOCKD_DB;\n"
"                             default mysql://stockd@127.0.0.1:3306/stockd)\n"
"  --redis URL                Redis read cache: redis://host:port (env STOCKD_REDIS;\n"
"                             default redis://127.0.0.1:6379)\n"
"  --node NAME                this instance's name on the ring, 1..64 of\n"
"                             [A-Za-z0-9._:-] (env STOCKD_NODE; default stockd-1)\n"
"  --peers LIST               the cluster: name=IP:PORT,... including this node;\n"
"                             SKUs are spread over them by consistent hashing\n"
"                             and requests forwarded to their owner; SIGHUP\n"
"                             re-reads it (env STOCKD_PEERS; default empty =\n"
"                             a single node owning everything)\n"
"  --admin-token TOKEN        required in admin calls; empty = admin open\n"
"                             (env STOCKD_ADMIN_TOKEN; default empty)\n"
"  --cluster-secret SECRET    shared by every node of a cluster, at least 32\n"
"                             printable bytes: peers prove it (HMAC-SHA256) at the\n"
"                             start of each connection, and only a proven peer may\n"
"                             forward requests or send cart parts; required when\n"
"                             --peers names other nodes; SIGHUP re-reads it\n"
"                             (env STOCKD_CLUSTER_SECRET; default none)\n"
"  --cluster-secret-alt SECRET  a second secret also accepted from peers, for a\n"
"                             rotation without downtime (docs/deploy.md)\n"
"                             (env STOCKD_CLUSTER_SECRET_ALT; default none)\n"
"  --cluster-secret-file FILE the secret on line 1 and an optional second one on\n"
"                             line 2, instead of the two flags; must not be\n"
"                             readable by other users; SIGHUP re-reads it\n"
"                             (env STOCKD_CLUSTER_SECRET_FILE; default none)\n"
"  --log-level LEVEL          debug|info|warn|error (env STOCKD_LOG_LEVEL;\n"
"                             default info)\n"
"\n"
"Limits on untrusted input:\n"
"  --max-message-bytes N      largest request frame, 1024..16777216\n"
"                             (env STOCKD_MAX_MESSAGE_BYTES; default 65536)\n"
"  --max-depth N              msgpack nesting depth, 2..32 (msgpack-c's own limit)\n"
"                             (env STOCKD_MAX_DEPTH; default 16)\n"
"  --max-inflight-per-conn N  requests in flight per connection, 1..65536\n"
"                             (env STOCKD_MAX_INFLIGHT_PER_CONN; default 1024)\n"
"  --max-connections N        client connections, 1..1000000\n"
"                             (env STOCKD_MAX_CONNECTIONS; default 10000)\n"
"  --idle-timeout-ms MS       close idle connections, 0 = never, 0..86400000\n"
"                             (env STOCKD_IDLE_TIMEOUT_MS; default 300000)\n"
"  --max-output-bytes N       unsent reply bytes per connection, 65536..1073741824\n"
"                             (env STOCKD_MAX_OUTPUT_BYTES; default 8388608)\n"
"  --max-output-total-bytes N unsent reply bytes of all connections together;\n"
"                             past it, connections holding unsent output stop\n"
"                             being read until it is back under 3/4 of it,\n"
"                             1048576..4294967295\n"
"                             (env STOCKD_MAX_OUTPUT_TOTAL_BYTES; default 268435456)\n"
"  --http-max-connections N   connections to the --http port at once (beyond:\n"
"                             closed at accept), 1..100000; a connection that has\n"
"                             not sent a whole request within 10 s, or idles 30 s\n"
"                             between requests, is closed\n"
"                             (env STOCKD_HTTP_MAX_CONNECTIONS; default 64)\n"
"\n"
"Support console (/console/ on the --http port):\n"
"  --console-token TOKEN      signs support staff in to the console, at least 16\n"
"                             bytes; empty = sign in with the admin token; with\n"
"                             neither, nobody can sign in; SIGHUP re-reads it\n"
"                             (env STOCKD_CONSOLE_TOKEN; default empty)\n"
"  --console-public-read yes|no  show the console's pages and figures without\n"
"                             signing in (actions still need it)\n"
"                             (env STOCKD_CONSOLE_PUBLIC_READ; default no)\n"
"  --console-session-ttl-s S  a console session (its cookie) ends this long after\n"
"                             signing in, 60..604800\n"
"                             (env STOCKD_CONSOLE_SESSION_TTL_S; default 28800)\n"
"  --console-max-sessions N   console sessions at once, 1..1024; signing in beyond\n"
"                             it signs the oldest session out\n"
"                             (env STOCKD_CONSOLE_MAX_SESSIONS; default 64)\n"
"  --console-secure-cookie yes|no  mark the session cookie Secure: yes when a TLS\n"
"                             proxy serves the console (browsers then send it over\n"
"                             https only) (env STOCKD_CONSOLE_SECURE_COOKIE;\n"
"                             default no)\n"
"\n"
"Engine:\n"
"  --queue-per-sku-max N      waiting operations per SKU before 'busy', 1..1000000\n"
"                             (env STOCKD_QUEUE_PER_SKU_MAX; default 10000)\n"
"  --queue-total-max N        waiting operations in all, 1..10000000\n"
"                             (env STOCKD_QUEUE_TOTAL_MAX; default 200000)\n"
"  --batch-ops-max N          operations per commit, 1..65536\n"
"                             (env STOCKD_BATCH_OPS_MAX; default 4096)\n"
"  --batch-sku-ops-max N      operations of one SKU per commit, 1..65536, at most\n"
"                             batch-ops-max (env STOCKD_BATCH_SKU_OPS_MAX; default 2048)\n"
"  --expire-per-tick-max N    held orders expired per timer tick, 1..1000000\n"
"                             (env STOCKD_EXPIRE_PER_TICK_MAX; default 1000)\n"
"  --default-deadline-ms MS   queueing deadline of a request without deadline_ms,\n"
"                             1..3600000 (env STOCKD_DEFAULT_DEADLINE_MS; default 2000)\n"
"\n"
"Store (MariaDB):\n"
"  --db-connections N         writer connections, 1..16\n"
"                             (env STOCKD_DB_CONNECTIONS; default 2)\n"
"  --commit-timeout-ms MS     abandon a commit after this, 100..600000\n"
"                             (env STOCKD_COMMIT_TIMEOUT_MS; default 5000)\n"
"  --db-connect-timeout-ms MS connect timeout, and the longest wait for the ping\n"
"                             of a connection idle for 2 s, 100..600000\n"
"                             (env STOCKD_DB_CONNECT_TIMEOUT_MS; default 2000)\n"
"  --db-backoff-max-ms MS     longest reconnect backoff, 10..600000\n"
"                             (env STOCKD_DB_BACKOFF_MAX_MS; default 2000)\n"
"\n"
"Read path (Redis cache, Bloom filter of known SKUs):\n"
"  --preload-skus yes|no      load every SKU at startup (yes), or only SKUs with\n"
"                             orders; others load on first use (env\n"
"                             STOCKD_PRELOAD_SKUS; default yes)\n"
"  --order-retention-ms MS    an order that has ended and holds no stock leaves\n"
"                             memory this long after its last change, and is\n"
"                             read back from MariaDB when asked for; startup\n"
"                             loads live orders and the recent ones only; 0\n"
"                             keeps every order in memory (one instance, not\n"
"                             --peers), 0..2592000000 (env\n"
"                             STOCKD_ORDER_RETENTION_MS; default 3600000)\n"
"  --cache-ttl-s S            TTL of the Redis keys stock:{supplier}:{sku},\n"
"                             1..86400 (env STOCKD_CACHE_TTL_S; default 60)\n"
"  --redis-timeout-ms MS      Redis connect and command timeout; slower = down,\n"
"                             10..60000 (env STOCKD_REDIS_TIMEOUT_MS; default 250)\n"
"  --redis-backoff-max-ms MS  longest Redis reconnect backoff, 10..600000\n"
"                             (env STOCKD_REDIS_BACKOFF_MAX_MS; default 500)\n"
"  --bloom-fp-ppm N           Bloom filter target false positives per million\n"
"                             lookups, 1..500000 (env STOCKD_BLOOM_FP_PPM;\n"
"                             default 1000 = 0.1 %)\n"
"  --bloom-min-skus N         Bloom filter capacity floor; it is sized for\n"
"                             max(N, 2 x SKUs at startup), 1..1000000000\n"
"                             (env STOCKD_BLOOM_MIN_SKUS; default 1000000)\n"
"  --cold-loads-max N         SKUs being loaded (or, in a cluster, taken over) from\n"
"                             MariaDB at once, 1..100000; beyond it requests for\n"
"                             other cold SKUs get 'busy' (env STOCKD_COLD_LOADS_MAX;\n"
"                             default 16384)\n"
"\n"
"Orders of several lines across shards (with --peers):\n"
"  --cart-hold-ms MS          hold of each part a coordinator places for a reserve\n"
"                             without hold_ms; the time after which a part left by a\n"
"                             crashed coordinator is settled, 1000..86400000\n"
"                             (env STOCKD_CART_HOLD_MS; default 10000)\n"
"  --cart-inflight-max N      orders of several lines coordinated at once by this\n"
"                             node, 1..1000000; beyond it 'busy'\n"
"                             (env STOCKD_CART_INFLIGHT_MAX; default 10000)\n"
"\n"
"Supplier (1688 Open Platform):\n"
"  --supplier-url URL         gateway base URL, http(s)://HOST[:PORT][/...]; empty =\n"
"                             supplier sync off (env STOCKD_SUPPLIER_URL; default empty)\n"
"  --supplier-app-key KEY     the app key (env STOCKD_SUPPLIER_APP_KEY)\n"
"  --supplier-app-secret S    the app secret, never logged (env STOCKD_SUPPLIER_APP_SECRET)\n"
"  --supplier-token TOKEN     the access token, never logged (env STOCKD_SUPPLIER_TOKEN)\n"
"  --supplier-sync-ms MS      full snapshot sync of every mapped offer, 100..86400000\n"
"                             (env STOCKD_SUPPLIER_SYNC_MS; default 300000)\n"
"  --supplier-concurrency N   product.get calls in flight, 1..256\n"
"                             (env STOCKD_SUPPLIER_CONCURRENCY; default 4)\n"
"  --supplier-validate-ms MS  link validation round over every mapping, 100..86400000\n"
"                             (env STOCKD_SUPPLIER_VALIDATE_MS; default 1800000)\n"
"  --supplier-push-window-ms MS  a 1688 push whose gmtBorn is further than this\n"
"                             from now is refused; a msgId seen within it is\n"
"                             acknowledged without effect, 1000..86400000\n"
"                             (env STOCKD_SUPPLIER_PUSH_WINDOW_MS; default 300000)\n"
"  --supplier-upstream-lag-ms MS  bought units stay reserved upstream this long\n"
"                             before a snapshot may count them, 0..86400000\n"
"                             (env STOCKD_SUPPLIER_UPSTREAM_LAG_MS; default 300000)\n"
"  --supplier-address JSON    addressParam of preview and order calls, one JSON\n"
"                             object under 256 bytes (env STOCKD_SUPPLIER_ADDRESS;\n"
"                             default {\"addressId\":1})\n"
"  --supplier-purchase-concurrency N  purchase jobs worked at once, 1..256\n"
"                             (env STOCKD_SUPPLIER_PURCHASE_CONCURRENCY; default 8)\n"
"  --supplier-purchase-backoff-max-ms MS  longest wait before a purchase retry,\n"
"                             100..3600000 (env STOCKD_SUPPLIER_PURCHASE_BACKOFF_MAX_MS;\n"
"                             default 60000)\n"
"  --supplier-rate-per-s N    API calls per second per app key (token bucket),\n"
"                             1..100000 (env STOCKD_SUPPLIER_RATE_PER_S; default 20)\n"
"  --supplier-timeout-ms MS   one API call, 100..600000\n"
"                             (env STOCKD_SUPPLIER_TIMEOUT_MS; default 10000)\n"
"  --supplier-trust F         share of a supplier's reported stock offered for\n"
"                             sale until supplier.put (stockctl supplier-put\n"
"                             --trust) sets the supplier's own, 0..1\n"
"                             (env STOCKD_SUPPLIER_TRUST; default 1)\n"
"  --supplier-event-trust F   the share offered instead while a supplier is in\n"
"                             event mode (a sales event, when its figures run\n"
"                             high: stockctl supplier-put SUPPLIER --event on),\n"
"                             until supplier.put (--event-trust) sets its own,\n"
"                             0..1 (env STOCKD_SUPPLIER_EVENT_TRUST; default 0.5)\n"
"  --supplier-trust-cut F     trust kept (multiplied) after an insufficient-stock\n"
"                             purchase failure, 0..1 (env STOCKD_SUPPLIER_TRUST_CUT;\n"
"                             default 0.5)\n"
"  --supplier-trust-step F    trust regained per successful purchase, 0..1\n"
"                             (env STOCKD_SUPPLIER_TRUST_STEP; default 0.05)\n"
"\n"
"Testing only:\n"
"  --test-clock yes|no        the wall clock that decides answers (supplier sync\n"
"                             and validation rounds, synced_at, purchased_at and\n"
"                             the upstream lag, hold expiry, row times) stands\n"
"                             still from start-up and moves only through the\n"
"                             test.clock method, which also runs the rounds that\n"
"                             fell due and answers once their work has settled\n"
"                             (PROTOCOL.md). For simulators that replay a night\n"
"                             exactly; never in production. Single node only\n"
"                             (env STOCKD_TEST_CLOCK; default no)\n"
"\n"
"Numbers are plain decimal. queue-per-sku-max must not exceed queue-total-max.\n"
"Unknown STOCKD_* variables are ignored; unknown flags and file keys are errors.\n";
}
