/* Unit tests for config.c: precedence, parsers, ranges, strictness, INI errors. */
#include <ctype.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "stockd/config.h"
#include "stockd/log.h"

#define ERR_LEN 256

/* Writes text to a fresh temp file; the caller unlinks it. */
static void write_tmp(char *path, size_t path_len, const char *text) {
    snprintf(path, path_len, "/tmp/stockd-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

/* config_load with argv given as a NULL-terminated list after argv[0]. */
static int load(stockd_config *c, char **envp, char *err, const char *const *args) {
    char *argv[64] = {"stockd"};
    int argc = 1;
    for (; args && args[argc - 1]; argc++) {
        assert_true(argc < 63);
        argv[argc] = (char *)args[argc - 1];
    }
    argv[argc] = NULL;
    return config_load(c, argc, argv, envp, err, ERR_LEN);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void assert_contains(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay, needle);
}

/* ---- defaults ---------------------------------------------------------- */

static void test_defaults(void **state) {
    (void)state;
    stockd_config c;
    char err[ERR_LEN];
    assert_int_equal(load(&c, NULL, err, NULL), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 7400);
    assert_string_equal(c.node, "stockd-1");
    assert_string_equal(c.log_level, "info");
    assert_string_equal(c.admin_token, "");
    assert_string_equal(c.db.host, "127.0.0.1");
    assert_int_equal(c.db.port, 3306);
    assert_string_equal(c.db.database, "stockd");
    assert_string_equal(c.redis_host, "127.0.0.1");
    assert_int_equal(c.redis_port, 6379);
    assert_int_equal(c.max_message_bytes, 65536);
    assert_int_equal(c.max_depth, 16);
    assert_int_equal(c.max_inflight_per_conn, 1024);
    assert_int_equal(c.max_connections, 10000);
    assert_int_equal(c.idle_timeout_ms, 300000);
    assert_int_equal(c.max_output_bytes, 8 << 20);
    assert_int_equal(c.queue_per_sku_max, 10000);
    assert_int_equal(c.queue_total_max, 200000);
    assert_int_equal(c.batch_ops_max, 4096);
    assert_int_equal(c.batch_sku_ops_max, 2048);
    assert_int_equal(c.expire_per_tick_max, 1000);
    assert_int_equal(c.default_deadline_ms, 2000);
    assert_int_equal(c.db_connections, 2);
    assert_int_equal(c.commit_timeout_ms, 5000);
    assert_int_equal(c.db_connect_timeout_ms, 2000);
    assert_int_equal(c.db_backoff_max_ms, 2000);
    assert_false(c.help || c.version || c.check_only);
    assert_string_equal(c.supplier_url, "");
    assert_int_equal(c.supplier_sync_ms, 300000);
    assert_int_equal(c.supplier_concurrency, 4);
    assert_int_equal(c.supplier_validate_ms, 1800000);
    assert_int_equal(c.supplier_upstream_lag_ms, 300000);
    assert_string_equal(c.supplier_address, "{\"addressId\":1}");
    assert_int_equal(c.supplier_purchase_concurrency, 8);
    assert_int_equal(c.supplier_purchase_backoff_max_ms, 60000);
    assert_int_equal(c.supplier_rate_per_s, 20);
    assert_int_equal(c.supplier_timeout_ms, 10000);
    assert_true(c.supplier_trust == 1.0);
    assert_true(c.supplier_event_trust == 0.5);
    assert_true(c.supplier_trust_cut == 0.5);
    assert_true(c.supplier_trust_step == 0.05);
}

/* ---- precedence ---------------------------------------------------------- */

static void test_precedence(void **state) {
    (void)state;
    char path[64], err[ERR_LEN];
    write_tmp(path, sizeof path,
              "; comment\n[stockd]\nlisten = 127.0.0.1:1111\nmax_depth = 10\n"
              "max-connections = 50\nnode = from-file\n");
    char cfg_env[128];
    snprintf(cfg_env, sizeof cfg_env, "STOCKD_CONFIG=%s", path);
    char *envp[] = {cfg_env, "STOCKD_LISTEN=127.0.0.1:2222", "STOCKD_MAX_DEPTH=20",
                    "PATH=/bin", NULL};
    stockd_config c;
    /* file only */
    char *env_file_only[] = {cfg_env, NULL};
    assert_int_equal(load(&c, env_file_only, err, NULL), 0);
    assert_int_equal(c.listen_port, 1111);
    assert_int_equal(c.max_depth, 10);
    assert_string_equal(c.node, "from-file");
    assert_string_equal(c.config_file, path);
    /* env beats file */
    assert_int_equal(load(&c, envp, err, NULL), 0);
    assert_int_equal(c.listen_port, 2222);
    assert_int_equal(c.max_depth, 20);
    assert_int_equal(c.max_connections, 50);
    /* flag beats env, in both spellings */
    assert_int_equal(load(&c, envp, err, ARGS("--listen", "127.0.0.1:3333", "--max-depth=30")),
                     0);
    assert_int_equal(c.listen_port, 3333);
    assert_int_equal(c.max_depth, 30);
    assert_int_equal(c.max_connections, 50);
    assert_string_equal(c.node, "from-file");
    unlink(path);
}

static void test_config_flag_beats_env_file(void **state) {
    (void)state;
    char a[64], b[64], err[ERR_LEN], env[128];
    write_tmp(a, sizeof a, "node = file-a\n");
    write_tmp(b, sizeof b, "node = file-b\n");
    snprintf(env, sizeof env, "STOCKD_CONFIG=%s", a);
    char *envp[] = {env, NULL};
    stockd_config c;
    assert_int_equal(load(&c, envp, err, ARGS("--config", b)), 0);
    assert_string_equal(c.node, "file-b");
    assert_int_equal(load(&c, envp, err, ARGS("--config=" )), -1); /* empty path */
    unlink(a);
    unlink(b);
}

static void test_every_flag_and_env(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    assert_int_equal(
        load(&c, NULL, err,
             ARGS("--db", "mysql://u:p@127.0.0.1:3307/inv", "--redis", "redis://127.0.0.1:6380",
                  "--node", "n.2", "--admin-token", "s3cret", "--log-level", "debug",
                  "--max-message-bytes", "2048", "--max-depth", "8", "--max-inflight-per-conn",
                  "7", "--max-connections", "9", "--idle-timeout-ms", "0",
                  "--max-output-bytes", "65536", "--queue-per-sku-max", "5",
                  "--queue-total-max", "6", "--batch-ops-max", "4", "--batch-sku-ops-max", "3",
                  "--expire-per-tick-max", "2", "--default-deadline-ms", "1",
                  "--db-connections", "16", "--commit-timeout-ms", "100",
                  "--db-connect-timeout-ms", "101", "--db-backoff-max-ms", "10",
                  "--check-config")),
        0);
    assert_int_equal(c.db.port, 3307);
    assert_string_equal(c.db_url, "mysql://u:p@127.0.0.1:3307/inv");
    assert_int_equal(c.redis_port, 6380);
    assert_string_equal(c.node, "n.2");
    assert_string_equal(c.admin_token, "s3cret");
    assert_string_equal(c.log_level, "debug");
    assert_int_equal(c.max_message_bytes, 2048);
    assert_int_equal(c.max_inflight_per_conn, 7);
    assert_int_equal(c.max_connections, 9);
    assert_int_equal(c.idle_timeout_ms, 0);
    assert_int_equal(c.queue_per_sku_max, 5);
    assert_int_equal(c.queue_total_max, 6);
    assert_int_equal(c.batch_ops_max, 4);
    assert_int_equal(c.batch_sku_ops_max, 3);
    assert_int_equal(c.expire_per_tick_max, 2);
    assert_int_equal(c.default_deadline_ms, 1);
    assert_int_equal(c.db_connections, 16);
    assert_int_equal(c.commit_timeout_ms, 100);
    assert_int_equal(c.db_connect_timeout_ms, 101);
    assert_int_equal(c.db_backoff_max_ms, 10);
    assert_true(c.check_only);

    char *envp[] = {"STOCKD_DB=mysql://root@localhost/x", "STOCKD_REDIS=redis://[::1]:7",
                    "STOCKD_NODE=env-node", "STOCKD_ADMIN_TOKEN=tok",
                    "STOCKD_MAX_MESSAGE_BYTES=4096", "STOCKD_LOG_LEVEL=warn", NULL};
    assert_int_equal(load(&c, envp, err, NULL), 0);
    assert_string_equal(c.db.user, "root");
    assert_string_equal(c.db.host, "localhost");
    assert_string_equal(c.redis_host, "::1");
    assert_int_equal(c.redis_port, 7);
    assert_string_equal(c.node, "env-node");
    assert_string_equal(c.admin_token, "tok");
    assert_int_equal(c.max_message_bytes, 4096);
    assert_string_equal(c.log_level, "warn");
}

/* ---- strictness and messages ------------------------------------------- */

static void test_unknown_and_malformed_flags(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    assert_int_equal(load(&c, NULL, err, ARGS("--bogus", "1")), -1);
    assert_contains(err, "unknown flag --bogus");
    assert_int_equal(load(&c, NULL, err, ARGS("--max_depth", "3")), -1); /* flags use '-' */
    assert_int_equal(load(&c, NULL, err, ARGS("stray")), -1);
    assert_contains(err, "unexpected argument");
    assert_int_equal(load(&c, NULL, err, ARGS("--max-depth")), -1);
    assert_contains(err, "needs a value");
    assert_int_equal(load(&c, NULL, err, ARGS("--node", "--max-depth", "3")), -1);
    assert_contains(err, "flag --node needs a value");
    assert_int_equal(load(&c, NULL, err, ARGS("--admin-token=--x")), 0);
    assert_string_equal(c.admin_token, "--x");
    assert_int_equal(load(&c, NULL, err, ARGS("--help=yes")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("-x")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--")), -1);
}

static void test_help_and_version_skip_loading(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    char *envp[] = {"STOCKD_CONFIG=/nonexistent/stockd.ini", "STOCKD_MAX_DEPTH=999", NULL};
    assert_int_equal(load(&c, envp, err, ARGS("--help")), 0);
    assert_true(c.help);
    assert_int_equal(load(&c, envp, err, ARGS("-V")), 0);
    assert_true(c.version);
    assert_int_equal(load(&c, envp, err, NULL), -1);
    assert_contains(err, "/nonexistent/stockd.ini");
}

static void test_numbers_and_ranges(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    static const char *const bad[] = {"", "abc", "12x", "-1", "+5", " 5", "5 ", "1.5",
                                      "99999999999999999999999", "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(load(&c, NULL, err, ARGS("--max-depth", bad[i])), -1);
        assert_contains(err, "flag --max-depth");
    }
    assert_int_equal(load(&c, NULL, err, ARGS("--max-depth", "1")), -1);
    assert_contains(err, "out of range 2..32");
    assert_int_equal(load(&c, NULL, err, ARGS("--max-depth", "33")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--max-depth", "2")), 0);
    assert_int_equal(load(&c, NULL, err, ARGS("--max-depth", "32")), 0);
    assert_int_equal(load(&c, NULL, err, ARGS("--max-message-bytes", "1023")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--max-message-bytes", "16777217")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--max-message-bytes", "16777216")), 0);
    assert_int_equal(load(&c, NULL, err, ARGS("--db-connections", "0")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--db-connections", "17")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--max-connections", "4294967296")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--log-level", "loud")), -1);
    assert_contains(err, "flag --log-level");
    assert_int_equal(load(&c, NULL, err, ARGS("--node", "")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--node", "has space")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--admin-token", "a b")), -1);

    char *envp[] = {"STOCKD_MAX_DEPTH=nope", NULL};
    assert_int_equal(load(&c, envp, err, NULL), -1);
    assert_contains(err, "STOCKD_MAX_DEPTH");
}

static void test_related_limits(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    assert_int_equal(load(&c, NULL, err, ARGS("--batch-sku-ops-max", "5000")), -1);
    assert_contains(err, "batch-ops-max");
    assert_int_equal(load(&c, NULL, err, ARGS("--queue-total-max", "100")), -1);
    assert_contains(err, "queue-per-sku-max");
}

static void test_env_unknown_ignored(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    /* shared with tools: STOCKD_BIN etc. must not break the server */
    char *envp[] = {"STOCKD_BIN=/x/stockd", "STOCKD_=1", "STOCKD_max_depth=99", "STOCKD_HELP=1",
                    "STOCKDX=1", NULL};
    assert_int_equal(load(&c, envp, err, NULL), 0);
    assert_int_equal(c.max_depth, 16);
    assert_false(c.help);
}

/* ---- parsers ------------------------------------------------------------ */

static void test_db_url(void **state) {
    (void)state;
    cfg_db d;
    char err[ERR_LEN];
    assert_int_equal(config_parse_db_url("mysql://app:pw@10.0.0.5:3307/inventory", &d, err,
                                         sizeof err), 0);
    assert_string_equal(d.user, "app");
    assert_string_equal(d.password, "pw");
    assert_string_equal(d.host, "10.0.0.5");
    assert_int_equal(d.port, 3307);
    assert_string_equal(d.database, "inventory");
    assert_string_equal(d.socket, "");

    assert_int_equal(config_parse_db_url("mysql://app:p%40ss%3Aw%2Fo%25rd@127.0.0.1/db", &d, err,
                                         sizeof err), 0);
    assert_string_equal(d.password, "p@ss:w/o%rd");
    assert_int_equal(d.port, 3306);

    assert_int_equal(config_parse_db_url("mysql://root@localhost/db?socket=/run/my%20sql.sock",
                                         &d, err, sizeof err), 0);
    assert_string_equal(d.socket, "/run/my sql.sock");
    assert_string_equal(d.user, "root");
    assert_string_equal(d.password, "");

    assert_int_equal(config_parse_db_url("mysql://root@/db?socket=/tmp/s", &d, err, sizeof err),
                     0);
    assert_string_equal(d.host, "localhost");
    assert_int_equal(config_parse_db_url("mariadb://[::1]:3308/db", &d, err, sizeof err), 0);
    assert_string_equal(d.host, "::1");
    assert_int_equal(d.port, 3308);
    assert_string_equal(d.user, "");
    /* an unencoded '@' in the password still works: the last '@' ends userinfo */
    assert_int_equal(config_parse_db_url("mysql://u:a@b@127.0.0.1/db", &d, err, sizeof err), 0);
    assert_string_equal(d.password, "a@b");

    static const char *const bad[] = {
        "postgres://u@127.0.0.1/db",  "mysql://u@127.0.0.1",          "mysql://u@127.0.0.1/",
        "mysql://u@127.0.0.1:0/db",   "mysql://u@127.0.0.1:65536/db", "mysql://u@127.0.0.1:x/db",
        "mysql://u@db.example/db",    "mysql://u@/db",                "mysql://u:%zz@127.0.0.1/db",
        "mysql://u:%4@127.0.0.1/db",  "mysql://u:%00@127.0.0.1/db",   "mysql://u@127.0.0.1/d-b",
        "mysql://u@127.0.0.1/db?ssl=1", "mysql://u@/db?socket=rel/path", "mysql://u@::1/db",
        "mysql://u@[::1/db",          "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (config_parse_db_url(bad[i], &d, err, sizeof err) != -1)
            fail_msg("accepted bad db URL '%s'", bad[i]);
        assert_true(err[0] != '\0');
    }
    /* the password never appears in a message */
    assert_int_equal(config_parse_db_url("mysql://u:hunter2@127.0.0.1:99999/db", &d, err,
                                         sizeof err), -1);
    assert_null(strstr(err, "hunter2"));
}

static void test_redis_url(void **state) {
    (void)state;
    char host[CFG_STR_MAX], err[ERR_LEN];
    int port = 0;
    assert_int_equal(config_parse_redis_url("redis://127.0.0.1:6380", host, sizeof host, &port,
                                            err, sizeof err), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6380);
    assert_int_equal(config_parse_redis_url("redis://localhost/", host, sizeof host, &port, err,
                                            sizeof err), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 6379);
    static const char *const bad[] = {"http://127.0.0.1:6379", "redis://",
                                      "redis://127.0.0.1:0",   "redis://127.0.0.1:70000",
                                      "redis://127.0.0.1:6379/0", "redis://u:p@127.0.0.1",
                                      "redis://cache.local:6379", "127.0.0.1:6379"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (config_parse_redis_url(bad[i], host, sizeof host, &port, err, sizeof err) != -1)
            fail_msg("accepted bad redis URL '%s'", bad[i]);
}

static void test_hostport(void **state) {
    (void)state;
    char host[CFG_STR_MAX], err[ERR_LEN];
    int port = 0;
    assert_int_equal(config_parse_hostport("127.0.0.1:7400", host, sizeof host, &port, err,
                                           sizeof err), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7400);
    assert_int_equal(config_parse_hostport("[::1]:1", host, sizeof host, &port, err, sizeof err),
                     0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 1);
    assert_int_equal(config_parse_hostport("localhost:65535", host, sizeof host, &port, err,
                                           sizeof err), 0);
    assert_int_equal(port, 65535);
    static const char *const bad[] = {"127.0.0.1",    "127.0.0.1:",   "127.0.0.1:0",
                                      "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80x",
                                      ":7400",        "::1:7400",     "[::1]7400",
                                      "[::1]",        "example.com:80", "300.1.1.1:80", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (config_parse_hostport(bad[i], host, sizeof host, &port, err, sizeof err) != -1)
            fail_msg("accepted bad host:port '%s'", bad[i]);
    char small[4];
    assert_int_equal(config_parse_hostport("127.0.0.1:80", small, sizeof small, &port, err,
                                           sizeof err), -1);
}

/* ---- INI files --------------------------------------------------------- */

/* Loads text as the --config file; returns config_load's result. */
static int load_ini(stockd_config *c, char *err, const char *text) {
    char path[64];
    write_tmp(path, sizeof path, text);
    int rc = load(c, NULL, err, ARGS("--config", path));
    unlink(path);
    return rc;
}

static void test_ini_ok(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    assert_int_equal(load_ini(&c, err,
                              "# hash comment\n\nnode = top-level\n[stockd]\n"
                              "admin_token = \"quoted\"\nMax_Depth = 12 ; inline comment\n"
                              "db = mysql://a:b%20c@127.0.0.1:3306/s\n"),
                     0);
    assert_string_equal(c.node, "top-level");
    assert_string_equal(c.admin_token, "quoted");
    assert_int_equal(c.max_depth, 12);
    assert_string_equal(c.db.password, "b c");
    assert_int_equal(load_ini(&c, err, ""), 0);
}

static void test_ini_errors_have_lines(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    assert_int_equal(load_ini(&c, err, "[stockd]\nnode = a\nthis is not ini\n"), -1);
    assert_contains(err, ":3: syntax error");
    assert_int_equal(load_ini(&c, err, "[stockd]\n\nmax_depth = 100\n"), -1);
    assert_contains(err, ":3: max_depth: 100 is out of range 2..32");
    assert_int_equal(load_ini(&c, err, "[stockd]\nbogus_key = 1\n"), -1);
    assert_contains(err, ":2: bogus_key: unknown key");
    assert_int_equal(load_ini(&c, err, "[other]\nnode = x\n"), -1);
    assert_contains(err, ":2: unknown section [other]");
    assert_int_equal(load_ini(&c, err, "config = /etc/other.ini\n"), -1);
    assert_contains(err, ":1: config: unknown key");
    assert_int_equal(load_ini(&c, err, "help = 1\n"), -1);
    /* a syntax error before a bad value is the one reported */
    assert_int_equal(load_ini(&c, err, "oops\nmax_depth = 1\n"), -1);
    assert_contains(err, ":1: syntax error");
    /* a bad value before a syntax error is the one reported */
    assert_int_equal(load_ini(&c, err, "max_depth = 1\noops\n"), -1);
    assert_contains(err, ":1: max_depth");
    assert_int_equal(load_ini(&c, err, "node = a\n  max_depth = 3\n"), -1);
    assert_contains(err, ":2: indented line");
    assert_int_equal(load_ini(&c, err, "[stockd\n"), -1);
    assert_contains(err, ":1: syntax error");

    char longline[1024];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "node = ", 7);
    memcpy(longline + sizeof longline - 2, "\n", 2);
    char text[1100];
    snprintf(text, sizeof text, "# ok\n%s", longline);
    assert_int_equal(load_ini(&c, err, text), -1);
    assert_contains(err, ":2: line longer than");

    assert_int_equal(load(&c, NULL, err, ARGS("--config", "/nonexistent/x.ini")), -1);
    assert_contains(err, "/nonexistent/x.ini");
    assert_int_equal(load(&c, NULL, err, ARGS("--config", "/tmp")), -1);
    assert_contains(err, "not a regular file");
}

/* ---- supplier options ------------------------------------------------------ */

typedef struct sup_case {
    const char *name;   /* flag name */
    const char *good;   /* accepted value */
    const char *bad;    /* out-of-range value */
} sup_case;

static const sup_case sup_cases[] = {
    {"supplier-validate-ms", "100", "99"},
    {"supplier-upstream-lag-ms", "0", "86400001"},
    {"supplier-purchase-concurrency", "256", "0"},
    {"supplier-purchase-backoff-max-ms", "3600000", "3600001"},
    {"supplier-rate-per-s", "100000", "0"},
    {"supplier-timeout-ms", "600000", "99"},
    {"supplier-trust", "0", "1.01"},
    {"supplier-event-trust", "1", "-0.1"},
    {"supplier-trust-cut", "0.25", "2"},
    {"supplier-trust-step", "1e-2", "1e3"},
    {"supplier-address", "{\"addressId\":7}", "{\"addressId\":7"},
};

static void test_supplier_values(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    assert_int_equal(
        load(&c, NULL, err,
             ARGS("--supplier-validate-ms", "100", "--supplier-upstream-lag-ms", "0",
                  "--supplier-purchase-concurrency", "256",
                  "--supplier-purchase-backoff-max-ms", "3600000", "--supplier-rate-per-s",
                  "100000", "--supplier-timeout-ms", "600000", "--supplier-trust", "0",
                  "--supplier-event-trust", "1", "--supplier-trust-cut", "0.25",
                  "--supplier-trust-step", "1e-2", "--supplier-address",
                  "{\"addressId\":7,\"x\":[1,{\"a\":\"}\\\"\"}]}", "--check-config")),
        0);
    assert_int_equal(c.supplier_validate_ms, 100);
    assert_int_equal(c.supplier_upstream_lag_ms, 0);
    assert_int_equal(c.supplier_purchase_concurrency, 256);
    assert_int_equal(c.supplier_purchase_backoff_max_ms, 3600000);
    assert_int_equal(c.supplier_rate_per_s, 100000);
    assert_int_equal(c.supplier_timeout_ms, 600000);
    assert_true(c.supplier_trust == 0.0);
    assert_true(c.supplier_event_trust == 1.0);
    assert_true(c.supplier_trust_cut == 0.25);
    assert_true(c.supplier_trust_step == 0.01);
    assert_string_equal(c.supplier_address, "{\"addressId\":7,\"x\":[1,{\"a\":\"}\\\"\"}]}");
    assert_true(c.check_only);

    /* each good value through the flag; each bad one refused naming the key,
     * from a flag, the environment and a file */
    for (size_t i = 0; i < sizeof sup_cases / sizeof sup_cases[0]; i++) {
        const sup_case *t = &sup_cases[i];
        char flag[80], env[96], ini[160], key[64];
        snprintf(flag, sizeof flag, "--%s=%s", t->name, t->good);
        assert_int_equal(load(&c, NULL, err, ARGS(flag)), 0);
        snprintf(flag, sizeof flag, "--%s=%s", t->name, t->bad);
        if (load(&c, NULL, err, ARGS(flag)) != -1) fail_msg("accepted %s", flag);
        snprintf(key, sizeof key, "flag --%s", t->name);
        assert_contains(err, key);
        snprintf(key, sizeof key, "STOCKD_%s", t->name);
        for (char *p = key; *p; p++) *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        snprintf(env, sizeof env, "%s=%s", key, t->bad);
        char *envp[] = {env, NULL};
        assert_int_equal(load(&c, envp, err, NULL), -1);
        assert_contains(err, key);
        snprintf(key, sizeof key, "%s", t->name);
        for (char *p = key; *p; p++) *p = *p == '-' ? '_' : *p;
        snprintf(ini, sizeof ini, "[stockd]\n%s = %s\n", key, t->bad);
        assert_int_equal(load_ini(&c, err, ini), -1);
        assert_contains(err, key);
        snprintf(ini, sizeof ini, "[stockd]\n%s = %s\n", key, t->good);
        assert_int_equal(load_ini(&c, err, ini), 0);
    }
    assert_int_equal(load(&c, NULL, err, ARGS("--supplier-trust", "1.5")), -1);
    assert_contains(err, "out of range 0..1");
    assert_int_equal(load(&c, NULL, err, ARGS("--supplier-validate-ms", "99")), -1);
    assert_contains(err, "out of range 100..86400000");
}

static void test_supplier_strict_doubles_and_address(void **state) {
    (void)state;
    char err[ERR_LEN];
    stockd_config c;
    static const char *const bad_num[] = {"", " 0.5", "0.5 ", "0,5", "0x0.8", "nan", "inf",
                                          "-nan", "1e999", ".", "e1", "0.5x", "--1", "1e"};
    for (size_t i = 0; i < sizeof bad_num / sizeof bad_num[0]; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--supplier-trust=%s", bad_num[i]);
        if (load(&c, NULL, err, ARGS(flag)) != -1) fail_msg("accepted '%s'", bad_num[i]);
        assert_contains(err, "flag --supplier-trust");
    }
    static const char *const ok_num[] = {"0", "1", "0.5", ".5", "5e-1", "1.0", "-0", "+0.3"};
    for (size_t i = 0; i < sizeof ok_num / sizeof ok_num[0]; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--supplier-trust-step=%s", ok_num[i]);
        if (load(&c, NULL, err, ARGS(flag)) != 0) fail_msg("refused '%s': %s", ok_num[i], err);
    }
    static const char *const bad_addr[] = {
        "", "addressId=1", "[1]", "{", "}", "{\"a\":1", "\"a\":1}", "{\"a\":\"x}", "{\"a\":[1}",
        "{\"a\":{}}}", "{}{}", "{\"a\":\"\\\"}", "{\"a\":\"x\ty\"}", " {}", "{} ",
    };
    for (size_t i = 0; i < sizeof bad_addr / sizeof bad_addr[0]; i++) {
        char flag[96];
        snprintf(flag, sizeof flag, "--supplier-address=%s", bad_addr[i]);
        if (load(&c, NULL, err, ARGS(flag)) != -1) fail_msg("accepted address '%s'", bad_addr[i]);
        assert_contains(err, "flag --supplier-address");
    }
    assert_int_equal(load(&c, NULL, err, ARGS("--supplier-address={}")), 0);
    assert_string_equal(c.supplier_address, "{}");
    /* 255 bytes fit, 256 do not */
    char big[300], flag[320];
    memset(big, ' ', sizeof big);
    big[0] = '{';
    big[254] = '}';
    big[255] = '\0';
    snprintf(flag, sizeof flag, "--supplier-address=%s", big);
    assert_int_equal(load(&c, NULL, err, ARGS(flag)), 0);
    assert_int_equal(strlen(c.supplier_address), 255);
    big[254] = ' ';
    big[255] = '}';
    big[256] = '\0';
    snprintf(flag, sizeof flag, "--supplier-address=%s", big);
    assert_int_equal(load(&c, NULL, err, ARGS(flag)), -1);
    assert_contains(err, "flag --supplier-address");
    /* the INI file keeps a JSON value as written */
    assert_int_equal(load_ini(&c, err, "supplier_address = {\"addressId\":42}\n"), 0);
    assert_string_equal(c.supplier_address, "{\"addressId\":42}");
    char *envp[] = {"STOCKD_SUPPLIER_ADDRESS={\"addressId\":3}", "STOCKD_SUPPLIER_TRUST=0.75",
                    NULL};
    assert_int_equal(load(&c, envp, err, NULL), 0);
    assert_string_equal(c.supplier_address, "{\"addressId\":3}");
    assert_true(c.supplier_trust == 0.75);
}

/* ---- usage -------------------------------------------------------------- */

static void test_usage_documents_everything(void **state) {
    (void)state;
    static const char *const names[] = {
        "listen", "db", "redis", "node", "admin-token", "log-level", "max-message-bytes",
        "max-depth", "max-inflight-per-conn", "max-connections", "idle-timeout-ms",
        "max-output-bytes", "queue-per-sku-max", "queue-total-max", "batch-ops-max",
        "batch-sku-ops-max", "expire-per-tick-max", "default-deadline-ms", "db-connections",
        "commit-timeout-ms", "db-connect-timeout-ms", "db-backoff-max-ms", "supplier-url",
        "supplier-app-key", "supplier-app-secret", "supplier-token", "supplier-sync-ms",
        "supplier-concurrency", "supplier-validate-ms", "supplier-upstream-lag-ms",
        "supplier-address", "supplier-purchase-concurrency", "supplier-purchase-backoff-max-ms",
        "supplier-rate-per-s", "supplier-timeout-ms", "supplier-trust", "supplier-event-trust",
        "supplier-trust-cut", "supplier-trust-step"};
    const char *u = config_usage();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char flag[64], env[64];
        snprintf(flag, sizeof flag, "--%s ", names[i]);
        snprintf(env, sizeof env, "STOCKD_%s", names[i]);
        for (char *p = env; *p; p++) *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        assert_contains(u, flag);
        assert_contains(u, env);
    }
    assert_contains(u, "--config");
    assert_contains(u, "--check-config");
    assert_contains(u, "--help");
    assert_contains(u, "--version");
}

/* ---- log.c (built into the same library) -------------------------------- */

/* Runs fn with stderr sent to a temp file and returns what it wrote. */
static void capture_stderr(void (*fn)(void), char *out, size_t out_len) {
    char path[64];
    write_tmp(path, sizeof path, "");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0 && saved >= 0);
    dup2(fd, 2);
    fn();
    dup2(saved, 2);
    close(saved);
    close(fd);
    size_t n = fread(out, 1, out_len - 1, f);
    out[n] = '\0';
    fclose(f);
    unlink(path);
}

static void log_escapes(void) {
    log_set_level(LOG_INFO);
    LOG_D("hidden");
    LOG_I("evil value", "k", "a\nts=x level=error", "q", "say \"hi\"", "e", "", "plain", "ok");
}

static void log_floods(void) {
    log_set_level(LOG_DEBUG);
    for (int i = 0; i < 25; i++) LOG_W("flood");
}

static void test_log_format(void **state) {
    (void)state;
    char out[4096];
    capture_stderr(log_escapes, out, sizeof out);
    assert_null(strstr(out, "hidden"));
    assert_int_equal(strncmp(out, "ts=", 3), 0);
    assert_int_equal(out[3 + 23], 'Z'); /* 2024-01-01T00:00:00.000Z */
    assert_contains(out, " level=info msg=\"evil value\" k=\"a\\nts=x level=error\"");
    assert_contains(out, " q=\"say \\\"hi\\\"\" e=\"\" plain=ok\n");
    const char *nl = strchr(out, '\n'); /* exactly one line: the newline was escaped */
    assert_non_null(nl);
    assert_null(strchr(nl + 1, '\n'));
    assert_int_equal(log_set_level_name("nope"), -1);
    assert_int_equal(log_set_level_name("warn"), 0);
}

static void test_log_rate_limit(void **state) {
    (void)state;
    char out[8192];
    capture_stderr(log_floods, out, sizeof out);
    int lines = 0;
    for (char *p = out; (p = strstr(p, "msg=flood")); p++) lines++;
    /* 10 per second; a second boundary mid-loop may let 10 more through */
    assert_true(lines >= 10 && lines <= 20);
}

/* ---- the cluster secret ----------------------------------------------- */

#define SEC32 "0123456789abcdef0123456789abcdef"
#define PEERS2 "--peers", "n1=127.0.0.1:7401,n2=127.0.0.1:7402", "--node", "n1"

static void test_cluster_secret(void **state) {
    (void)state;
    stockd_config c;
    char err[ERR_LEN];
    /* peers naming other nodes need a secret; a one-node list does not */
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2)), -1);
    assert_contains(err, "cluster secret");
    assert_int_equal(load(&c, NULL, err, ARGS("--peers", "n1=127.0.0.1:7401", "--node", "n1")), 0);
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2, "--cluster-secret", SEC32)), 0);
    assert_string_equal(c.cluster_secret, SEC32);
    /* at least 32 bytes, each of them */
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2, "--cluster-secret", "short")), -1);
    assert_contains(err, "at least 32");
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2, "--cluster-secret", SEC32,
                                               "--cluster-secret-alt", "x")), -1);
    assert_int_equal(load(&c, NULL, err, ARGS("--cluster-secret-alt", SEC32)), -1);
    assert_contains(err, "needs cluster-secret");
    /* the environment, like every option */
    char *env[] = {"STOCKD_CLUSTER_SECRET=" SEC32, NULL};
    assert_int_equal(load(&c, env, err, ARGS(PEERS2)), 0);
    assert_string_equal(c.cluster_secret, SEC32);
}

static void test_cluster_secret_file(void **state) {
    (void)state;
    stockd_config c;
    char err[ERR_LEN], path[64];
    write_tmp(path, sizeof path, SEC32 "\n  \nfedcba9876543210fedcba9876543210\n");
    chmod(path, 0600);
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2, "--cluster-secret-file", path)), 0);
    assert_string_equal(c.cluster_secret, SEC32);
    assert_string_equal(c.cluster_secret_alt, "fedcba9876543210fedcba9876543210");
    /* not both ways at once */
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2, "--cluster-secret-file", path,
                                               "--cluster-secret", SEC32)), -1);
    assert_contains(err, "not both");
    /* readable by others: refused */
    chmod(path, 0644);
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2, "--cluster-secret-file", path)), -1);
    assert_contains(err, "readable by other users");
    unlink(path);
    write_tmp(path, sizeof path, "a\nb\nc\n");
    chmod(path, 0600);
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2, "--cluster-secret-file", path)), -1);
    unlink(path);
    write_tmp(path, sizeof path, "\n\n");
    chmod(path, 0600);
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2, "--cluster-secret-file", path)), -1);
    assert_contains(err, "no secret");
    unlink(path);
    assert_int_equal(load(&c, NULL, err, ARGS(PEERS2, "--cluster-secret-file", path)), -1);
    assert_contains(err, "No such file");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_config_flag_beats_env_file),
        cmocka_unit_test(test_every_flag_and_env),
        cmocka_unit_test(test_unknown_and_malformed_flags),
        cmocka_unit_test(test_help_and_version_skip_loading),
        cmocka_unit_test(test_numbers_and_ranges),
        cmocka_unit_test(test_related_limits),
        cmocka_unit_test(test_env_unknown_ignored),
        cmocka_unit_test(test_supplier_values),
        cmocka_unit_test(test_supplier_strict_doubles_and_address),
        cmocka_unit_test(test_db_url),
        cmocka_unit_test(test_redis_url),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_ini_ok),
        cmocka_unit_test(test_ini_errors_have_lines),
        cmocka_unit_test(test_usage_documents_everything),
        cmocka_unit_test(test_log_format),
        cmocka_unit_test(test_log_rate_limit),
        cmocka_unit_test(test_cluster_secret),
        cmocka_unit_test(test_cluster_secret_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
