/* config.h — stockd's configuration: defaults, INI file, STOCKD_* environment,
 * command-line flags, in rising precedence (a flag beats the environment,
 * which beats the file, which beats the default).
 *
 * Pure: parses and validates, opens only the INI file and the cluster
 * secret file it is given. Every
 * value is range-checked; the first bad value fails the whole load with a
 * message naming the source (flag, variable or file:line) and the key.
 */
#ifndef STOCKD_CONFIG_H
#define STOCKD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_STR_MAX 256
#define CFG_SECRET_MIN 32               /* bytes of a cluster secret */
#define CFG_CONSOLE_TOKEN_MIN 16        /* bytes of a --console-token */

typedef struct cfg_db {
    char host[CFG_STR_MAX];       /* IP literal or "localhost" */
    int port;                     /* default 3306 */
    char user[CFG_STR_MAX];
    char password[CFG_STR_MAX];
    char database[CFG_STR_MAX];
    char socket[CFG_STR_MAX];     /* unix socket path; "" = TCP */
} cfg_db;

typedef struct stockd_config {
    char listen_host[CFG_STR_MAX];  /* --listen, default 127.0.0.1:7400 */
    int listen_port;
    char db_url[CFG_STR_MAX];       /* --db mysql://user:pass@host:port/db[?socket=/path] */
    cfg_db db;                      /* parsed from db_url */
    char redis_url[CFG_STR_MAX];    /* --redis redis://host:port (later issues) */
    char redis_host[CFG_STR_MAX];
    int redis_port;
    char node[CFG_STR_MAX];         /* --node, default "stockd-1" */
    char peers[1024];               /* --peers name=IP:PORT,...; "" = single node */
    char admin_token[CFG_STR_MAX];  /* --admin-token; "" = admin open */
    char cluster_secret[CFG_STR_MAX];     /* --cluster-secret; "" = no peer is ever trusted */
    char cluster_secret_alt[CFG_STR_MAX]; /* --cluster-secret-alt: also accepted (rotation) */
    char cluster_secret_file[CFG_STR_MAX]; /* --cluster-secret-file: both from a file */
    char log_level[16];             /* --log-level debug|info|warn|error */
    char http_host[CFG_STR_MAX];    /* --http HOST:PORT: metrics and health (http.c) */
    int http_port;                  /* 0 = no HTTP listener (the default) */

    /* limits on untrusted input */
    uint32_t max_message_bytes;     /* default 65536, 1024..16777216 */
    uint32_t max_depth;             /* default 16, 2..32: msgpack-c refuses deeper */
    uint32_t max_inflight_per_conn; /* default 1024, 1..65536 */
    uint32_t max_connections;       /* default 10000, 1..1000000 */
    uint32_t idle_timeout_ms;       /* default 300000, 0 = none */
    uint32_t max_output_bytes;      /* per connection, default 8 MiB */
    uint32_t max_output_total_bytes; /* all connections, default 256 MiB */
    uint32_t http_max_connections;  /* --http connections at once, default 64 */

    /* the support console on the --http listener (console.h) */
    char console_token[CFG_STR_MAX]; /* --console-token; "" = sign in with the admin token */
    bool console_public_read;       /* --console-public-read yes|no, default no */
    uint32_t console_session_ttl_s; /* default 28800 (8 h), 60..604800 */
    uint32_t console_max_sessions;  /* default 64, 1..1024 */
    bool console_secure_cookie;     /* --console-secure-cookie yes|no, default no */

    /* engine */
    uint32_t queue_per_sku_max;     /* default 10000 */
    uint32_t queue_total_max;       /* default 200000 */
    uint32_t batch_ops_max;         /* default 4096 */
    uint32_t batch_sku_ops_max;     /* default 2048 */
    uint32_t expire_per_tick_max;   /* default 1000 */
    uint32_t default_deadline_ms;   /* default 2000 */

    /* store */
    uint32_t db_connections;        /* writer connections, default 2, 1..16 */
    uint32_t commit_timeout_ms;     /* default 5000 */
    uint32_t db_connect_timeout_ms; /* default 2000 */
    uint32_t db_backoff_max_ms;     /* default 2000 */

    /* read path (cache.c, bloom.c) */
    bool preload_skus;              /* --preload-skus yes|no, default yes */
    uint32_t cache_ttl_s;           /* TTL of stock:{supplier}:{sku}, default 60 */
    uint32_t redis_timeout_ms;      /* connect and command timeout, default 250 */
    uint32_t redis_backoff_max_ms;  /* longest reconnect backoff, default 500 */
    uint32_t bloom_fp_ppm;          /* target false positives per million, default 1000 */
    uint32_t bloom_min_skus;        /* capacity floor, default 1000000 */
    uint32_t cold_loads_max;        /* SKU loads in flight, default 16384 */
    uint32_t order_retention_ms;    /* final orders leave memory after this; 0 never */

    /* cross-shard orders of several lines (cart.c) */
    uint32_t cart_hold_ms;          /* hold of a part placed for a reserve without hold_ms,
                                     * default 10000, 1000..86400000 */
    uint32_t cart_inflight_max;     /* coordinations at once, default 10000, 1..1000000 */

    /* supplier (1688): "" url = off; the secrets are never echoed */
    char supplier_url[CFG_STR_MAX];        /* --supplier-url http(s)://... */
    char supplier_app_key[CFG_STR_MAX];    /* --supplier-app-key */
    char supplier_app_secret[CFG_STR_MAX]; /* --supplier-app-secret */
    char supplier_token[CFG_STR_MAX];      /* --supplier-token */
    uint32_t supplier_sync_ms;      /* snapshot period, default 300000, 100..86400000 */
    uint32_t supplier_concurrency;  /* product.get in flight, default 4, 1..256 */
    uint32_t supplier_validate_ms;  /* link validation round, default 1800000, 100..86400000 */
    uint32_t supplier_push_window_ms; /* push freshness and msgId memory, default 300000,
                                       * 1000..86400000 */
    uint32_t supplier_upstream_lag_ms; /* upstream lag, default 300000, 0..86400000 */
    char supplier_address[CFG_STR_MAX]; /* addressParam JSON for preview/create, default {"addressId":1} */
    uint32_t supplier_purchase_concurrency; /* purchase jobs worked at once, default 8, 1..256 */
    uint32_t supplier_purchase_backoff_max_ms; /* retry wait cap, default 60000, 100..3600000 */
    uint32_t supplier_rate_per_s;   /* token bucket refill per app key, default 20, 1..100000 */
    uint32_t supplier_timeout_ms;   /* one API call, default 10000, 100..600000 */
    double supplier_trust;          /* default trust factor, 0..1, default 1 */
    double supplier_event_trust;    /* trust in event mode, 0..1, default 0.5 */
    double supplier_trust_cut;      /* kept after an insufficient-stock failure, 0..1, default 0.5 */
    double supplier_trust_step;     /* added per purchase, 0..1, default 0.05 */
    bool test_clock;                /* --test-clock yes|no, default no: testing only
                                     * (clock.h manual wall clock, testclock.h) */

    char config_file[CFG_STR_MAX];  /* --config */
    bool check_only;                /* --check-config */
    bool help;                      /* --help */
    bool version;                   /* --version */
} stockd_config;

void config_defaults(stockd_config *c);

/* Loads defaults, then the INI file named by --config or STOCKD_CONFIG, then
 * STOCKD_* variables from envp, then argv. Returns 0, or -1 with a one-line
 * message in err. envp may be NULL (no environment). */
int config_load(stockd_config *c, int argc, char **argv, char **envp,
                char *err, size_t err_len);

/* Parses mysql://user:pass@host:port/db[?socket=/path] (user, pass, port and
 * the query are optional; pass may be percent-encoded). 0 or -1 with err. */
int config_parse_db_url(const char *url, cfg_db *out, char *err, size_t err_len);
/* Parses redis://host:port. 0 or -1 with err. */
int config_parse_redis_url(const char *url, char *host, size_t host_len,
                           int *port, char *err, size_t err_len);
/* Parses HOST:PORT. 0 or -1 with err. */
int config_parse_hostport(const char *s, char *host, size_t host_len, int *port,
                          char *err, size_t err_len);

/* The --help text. */
const char *config_usage(void);

#endif
