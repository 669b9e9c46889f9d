/* stockbench — load generator that measures stockd side by side with the
 * recipes users would deploy instead (see bench/README.md).
 *
 * This file is the command line: it parses and checks every option, runs
 * the requested modes one after another on the same workload, and prints
 * the report, the comparison, the JSON and the plot. Exit status: 0 all
 * audits passed, 1 an audit failed or could not run, 2 usage error, 3 a
 * mode could not run at all.
 */
#include "bench.h"
#include "sn_sys.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <mysql.h>

#ifndef STOCKD_VERSION
#define STOCKD_VERSION "dev"
#endif

static const char USAGE[] =
"usage: stockbench [--mode MODE | --compare MODE,MODE,...] [options]\n"
"\n"
"Measures reservations against stockd and against the recipes it replaces,\n"
"on one workload, then audits the data each mode left behind.\n"
"\n"
"modes:\n"
"  stockd        msgpack-rpc reserve against --target (confirmed; a hold with --hold-ms)\n"
"  ping          msgpack-rpc ping against --target (the bare reactor)\n"
"  redis-ping    Redis PING via hiredis async (compare with ping)\n"
"  mariadb-row   per order: START TRANSACTION; UPDATE ... WHERE qty >= ?; INSERT; COMMIT\n"
"  redis-lua     one EVALSHA checks, decrements and records the order\n"
"  seed-lock     Redis lock (SET NX PX, retry+backoff) + cache + MariaDB UPDATE/INSERT\n"
"  ceiling       not orders: the durable append ceiling of --db's MariaDB. Each request\n"
"                is one INSERT of 1,000 rows shaped like stockd's order rows into a\n"
"                scratch table (dropped at the end), autocommit, the server's own\n"
"                flush settings; reports rows/s (where the others report\n"
"                reservations/s) and statement latency. One statement per\n"
"                connection: concurrency is --connections\n"
"  salesnight    (--mode only) a seeded, time-compressed sales night against fake1688,\n"
"                played against each of --systems and judged against the ground truth:\n"
"                oversell, undersell, support load (see bench/README.md, Sales night)\n"
"  --cart-contest  one seeded sequence of carts on scarce stock, on one instance and\n"
"                  on a cluster side by side (stockbench --cart-contest --help)\n"
"\n"
"where:\n"
"  --target HOST:PORT[,HOST:PORT...]  stockd (ping, stockd); connections round-robin\n"
"  --ring-aware    stockd, ping: fetch cluster.ring through the first --target (a\n"
"                  member or the balancer) and send each request straight to its\n"
"                  SKU's owner; --connections become connections per node\n"
"  --db URL        mysql://user:pass@IP:port/db: stockd's database (its audit) and the\n"
"                  server the peer modes use        [default $STOCKD_DB]\n"
"  --peer-db NAME  database the peer modes create tables in  [bench_peer]\n"
"  --redis URL     redis://IP:port                  [default $STOCKD_REDIS]\n"
"  --admin-token T token for sku.put/stats when stockd requires one\n"
"\n"
"workload:\n"
"  --skus N        SKUs, 1..10000000 (1 = one hot SKU)          [1]\n"
"  --dist D        uniform | zipf:S (S > 0, e.g. zipf:0.99) | seq (the k-th\n"
"                  order takes SKU k mod N: each SKU once per N orders) [uniform]\n"
"  --sku-prefix P  stockd: SKUs are P-0 .. P-(N-1) instead of this run's own\n"
"                  b<nonce>-<i>; with --no-setup, to read SKUs made earlier (cold\n"
"                  after a stockd restart with --preload-skus no) or never made\n"
"                  (unknown). No audit.\n"
"  --no-setup      stockd: do not create the SKUs with sku.put\n"
"  --qty N         units per order (per line with --lines), 1..1000000  [1]\n"
"  --lines N       carts: every order names N distinct SKUs (1..50), drawn with\n"
"                  --dist from --skus (>= N) and sorted; stockd gets one reserve\n"
"                  with \"lines\", mariadb-row one transaction of N UPDATEs in SKU\n"
"                  order, redis-lua one script over N keys, seed-lock N locks in\n"
"                  SKU order. All lines or none. Reports carts/s and lines/s\n"
"                  [no lines: a single-SKU reserve {sku, qty}]\n"
"  --stock N       initial stock per SKU, or 'unlimited' (1e9)  [unlimited]\n"
"  --hold-ms MS    stockd: reserve as a hold of MS (1000..86400000) instead of confirmed\n"
"  --mix K=W,...   stockd: order kinds by weight: reserve (as above), hold (a hold,\n"
"                  then confirm), release (reserve, then release), get (stock.get);\n"
"                  e.g. reserve=80,hold=10,release=5,get=5. A two-step order counts\n"
"                  as one request, timed from its first send    [reserve only]\n"
"  --connections N connections (peer modes: workers), 1..4096   [16]\n"
"  --pipeline N    requests in flight per connection, 1..1024   [1]\n"
"                  (mariadb-row and seed-lock carry one order per connection)\n"
"  --duration S    measured seconds (after warmup)              [10]\n"
"  --requests N    stop after N measured requests (duration still caps the run)\n"
"  --rate R        open loop: R orders/s on a fixed schedule; latency from the\n"
"                  intended send time (no coordinated omission) [closed loop]\n"
"  --warmup S      seconds run but not measured                 [1]\n"
"  --drain S       wait this long for in-flight replies at the end  [10]\n"
"  --seed N        random seed                                  [1]\n"
"\n"
"salesnight (with --mode salesnight; --skus defaults to 2000, --seed as above):\n"
"  --systems L     naive,seed,stockd,stockd-checked: any of them, run in the order given [all]\n"
"  --minutes M     simulated minutes of the night, 1..1440           [180]\n"
"  --minute-ms MS  wall milliseconds per simulated minute, 10..60000 [1000]\n"
"  --orders-per-min R  customer orders per simulated minute outside the flash\n"
"                  sale (6x during it), 0.1..10000                   [25]\n"
"  --fake URL      fake1688's control API   [$STOCKD_FAKE1688_CONTROL]\n"
"  --fake-app-key K, --fake-app-secret S, --fake-token T  its gateway credentials\n"
"                  [$STOCKD_FAKE1688_APP_KEY, _APP_SECRET, _ACCESS_TOKEN]\n"
"  --settle S      stockd without --test-clock: wait up to S s for each order's\n"
"                  purchase (on its test clock: until it ends)   [2]\n"
"  --stockd-flags  print the stockd flags that scale its supplier timers to\n"
"                  --minute-ms and put them on its test clock, and exit\n"
"\n"
"output:\n"
"  --json FILE     write the results as JSON\n"
"  --plot FILE.png latency percentiles per mode and throughput over time (gnuplot)\n"
"  --keep          keep the peer modes' tables and keys after the audit\n"
"  --no-progress   no per-second progress line (default on when stdout is a tty)\n"
"  --cpu NAME=PID,...  also report the CPU of these processes (at most 4, e.g.\n"
"                  stockd=PID,mariadbd=PID) over each measured window, beside\n"
"                  stockbench's own and their sum, as cores and microseconds of\n"
"                  CPU per reservation\n"
"  -h, --help      this text;  --version\n"
"\n"
"exit status: 0 all audits ok, 1 an audit failed or could not run, 2 usage, 3 a mode\n"
"could not run (connect or setup failed).\n";

static const char *const MODE_NAMES[BENCH_MODE_COUNT_] = {
    "stockd", "ping", "redis-ping", "mariadb-row", "redis-lua", "seed-lock", "ceiling",
};

const char *bench_mode_name(bench_mode_id id)
{
    assert(id >= 0 && id < BENCH_MODE_COUNT_);
    return MODE_NAMES[id];
}

const bench_mode_ops *bench_mode_get(bench_mode_id id)
{
    static const bench_mode_ops *const ops[BENCH_MODE_COUNT_] = {
        &bench_mode_stockd, &bench_mode_ping, &bench_mode_redis_ping,
        &bench_mode_mariadb_row, &bench_mode_redis_lua, &bench_mode_seed_lock,
        &bench_mode_ceiling,
    };
    assert(id >= 0 && id < BENCH_MODE_COUNT_);
    return ops[id];
}

int bench_mode_parse(const char *s, bench_mode_id *out)
{
    for (int i = 0; i < BENCH_MODE_COUNT_; i++) {
        if (strcmp(s, MODE_NAMES[i]) == 0) {
            *out = (bench_mode_id)i;
            return 0;
        }
    }
    return -1;
}

/* ---- strict number parsing ---- */

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "stockbench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(stockbench --help for usage)\n");
    va_end(ap);
    return -1;
}

static int parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (s[0] == '-' || s[0] == '\0')
        return usage_error("%s: '%s' is not a non-negative integer", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return usage_error("%s: '%s' is not a non-negative integer", opt, s);
    if (v < lo || v > hi)
        return usage_error("%s: %s is out of range", opt, s);
    *out = v;
    return 0;
}

static int parse_dbl(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
        return usage_error("%s: '%s' is not a number", opt, s);
    if (v < lo || v > hi)
        return usage_error("%s: %s is out of range", opt, s);
    *out = v;
    return 0;
}

/* A comma-separated option value, split in a copy: the items point into
 * buf. Empty items (",,") are skipped, as strtok_r does. */
#define LIST_ITEMS_MAX 64
typedef struct opt_list {
    char buf[2048];
    char *item[LIST_ITEMS_MAX];
    unsigned n;
} opt_list;

static int split_list(const char *opt, const char *s, opt_list *l)
{
    if (strlen(s) >= sizeof l->buf)
        return usage_error("%s: list too long", opt);
    snprintf(l->buf, sizeof l->buf, "%s", s);
    l->n = 0;
    char *save = NULL;
    for (char *t = strtok_r(l->buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (l->n == LIST_ITEMS_MAX)
            return usage_error("%s: more than %d items", opt, LIST_ITEMS_MAX);
        l->item[l->n++] = t;
    }
    return 0;
}

static int parse_modes(const char *opt, const char *s, bench_opts *o)
{
    opt_list l;
    if (split_list(opt, s, &l) != 0)
        return -1;
    o->n_modes = 0;
    for (unsigned j = 0; j < l.n; j++) {
        const char *t = l.item[j];
        bench_mode_id m;
        if (bench_mode_parse(t, &m) != 0)
            return usage_error("%s: unknown mode '%s'", opt, t);
        for (unsigned i = 0; i < o->n_modes; i++)
            if (o->modes[i] == m)
                return usage_error("%s: mode '%s' given twice", opt, t);
        o->modes[o->n_modes++] = m;
    }
    if (o->n_modes == 0)
        return usage_error("%s: no modes in '%s'", opt, s);
    return 0;
}

static int parse_targets(const char *s, bench_opts *o)
{
    char err[160];
    opt_list l;
    if (split_list("--target", s, &l) != 0)
        return -1;
    o->n_targets = 0;
    for (unsigned j = 0; j < l.n; j++) {
        const char *t = l.item[j];
        if (o->n_targets == BENCH_TARGETS_MAX)
            return usage_error("--target: at most 16 addresses");
        if (bench_parse_addr(t, NULL, &o->targets[o->n_targets], err, sizeof err) != 0)
            return usage_error("--target: %s", err);
        o->n_targets++;
    }
    return o->n_targets ? 0 : usage_error("--target: empty");
}

static int parse_dist(const char *s, bench_opts *o)
{
    if (strcmp(s, "uniform") == 0) {
        o->zipf_s = 0;
        return 0;
    }
    if (strcmp(s, "seq") == 0) {
        o->zipf_s = 0;
        o->dist_seq = true;
        return 0;
    }
    if (strncmp(s, "zipf:", 5) == 0)
        return parse_dbl("--dist zipf", s + 5, 0.01, 10, &o->zipf_s);
    return usage_error("--dist: '%s' is not uniform, seq or zipf:S", s);
}

/* --mix reserve=W,hold=W,release=W,get=W (any subset, weights 0..1000000). */
static int parse_mix(const char *s, bench_opts *o)
{
    static const char *const kinds[BENCH_MIX_COUNT_] = { "reserve", "hold", "release", "get" };
    opt_list l;
    if (split_list("--mix", s, &l) != 0)
        return -1;
    memset(o->mix, 0, sizeof o->mix);
    uint64_t total = 0;
    for (unsigned j = 0; j < l.n; j++) {
        char *t = l.item[j];
        char *eq = strchr(t, '=');
        if (eq == NULL)
            return usage_error("--mix: '%s' is not KIND=WEIGHT", t);
        *eq = '\0';
        int k = 0;
        while (k < BENCH_MIX_COUNT_ && strcmp(t, kinds[k]) != 0)
            k++;
        if (k == BENCH_MIX_COUNT_)
            return usage_error("--mix: unknown kind '%s' (reserve, hold, release, get)", t);
        uint64_t w;
        if (parse_u64("--mix", eq + 1, 0, 1000000, &w) != 0)
            return -1;
        o->mix[k] = (uint32_t)w;
        total += w;
    }
    if (total == 0)
        return usage_error("--mix: all weights are 0");
    o->has_mix = true;
    return 0;
}

/* --cpu NAME=PID,...: processes whose CPU each run reports beside its own.
 * Each must exist now; a process that ends during a run is reported as
 * unknown for that run, not an error. */
static int parse_cpu(const char *s, bench_opts *o)
{
    opt_list l;
    if (split_list("--cpu", s, &l) != 0)
        return -1;
    o->n_cpu = 0;
    for (unsigned j = 0; j < l.n; j++) {
        char *t = l.item[j];
        char *eq = strchr(t, '=');
        if (eq == NULL)
            return usage_error("--cpu: '%s' is not NAME=PID", t);
        *eq = '\0';
        size_t len = strlen(t);
        if (len == 0 || len >= BENCH_CPU_NAME_LEN || strspn(t, "abcdefghijklmnopqrstuvwxyz"
                                                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                               "0123456789_.-") != len)
            return usage_error("--cpu: name '%s' must be 1..15 of [A-Za-z0-9_.-]", t);
        if (strcmp(t, "stockbench") == 0)
            return usage_error("--cpu: stockbench is always reported; name another process");
        if (o->n_cpu == BENCH_CPU_MAX)
            return usage_error("--cpu: at most %d processes", BENCH_CPU_MAX);
        for (unsigned i = 0; i < o->n_cpu; i++)
            if (strcmp(o->cpu[i].name, t) == 0)
                return usage_error("--cpu: '%s' given twice", t);
        uint64_t pid;
        if (parse_u64("--cpu", eq + 1, 1, 4194304, &pid) != 0)
            return -1;
        uint64_t ticks;
        if (bench_cpu_read((int)pid, &ticks) != 0)
            return usage_error("--cpu: no process %" PRIu64 " (for '%s')", pid, t);
        snprintf(o->cpu[o->n_cpu].name, BENCH_CPU_NAME_LEN, "%s", t);
        o->cpu[o->n_cpu].pid = (int)pid;
        o->n_cpu++;
    }
    return o->n_cpu ? 0 : usage_error("--cpu: empty");
}

static int parse_db(const char *s, bench_opts *o, const char *from)
{
    char err[160];
    if (bench_parse_dburl(s, &o->db, err, sizeof err) != 0)
        return usage_error("%s: %s", from, err);
    o->has_db = true;
    return 0;
}

static int parse_redis(const char *s, bench_opts *o, const char *from)
{
    char err[160];
    if (strncmp(s, "redis://", 8) != 0 || bench_parse_addr(s, "redis", &o->redis, err, sizeof err) != 0)
        return usage_error("%s: bad Redis URL '%s' (want redis://IP:port)", from, s);
    o->has_redis = true;
    return 0;
}

enum {
    OPT_MODE = 256, OPT_COMPARE, OPT_TARGET, OPT_DB, OPT_PEER_DB, OPT_REDIS, OPT_TOKEN,
    OPT_SKUS, OPT_DIST, OPT_QTY, OPT_STOCK, OPT_HOLD, OPT_CONNS, OPT_PIPE, OPT_DURATION,
    OPT_REQUESTS, OPT_RATE, OPT_WARMUP, OPT_DRAIN, OPT_SEED, OPT_JSON, OPT_PLOT, OPT_KEEP,
    OPT_NO_PROGRESS, OPT_VERSION, OPT_MIX, OPT_SKU_PREFIX, OPT_NO_SETUP, OPT_RING_AWARE,
    OPT_LINES, OPT_SYSTEMS, OPT_MINUTES, OPT_MINUTE_MS, OPT_OPM, OPT_FAKE, OPT_FAKE_KEY,
    OPT_FAKE_SECRET, OPT_FAKE_TOKEN, OPT_SETTLE, OPT_STOCKD_FLAGS, OPT_CPU,
};

static const struct option LONG_OPTS[] = {
    {"mode", required_argument, NULL, OPT_MODE},
    {"compare", required_argument, NULL, OPT_COMPARE},
    {"target", required_argument, NULL, OPT_TARGET},
    {"db", required_argument, NULL, OPT_DB},
    {"peer-db", required_argument, NULL, OPT_PEER_DB},
    {"redis", required_argument, NULL, OPT_REDIS},
    {"admin-token", required_argument, NULL, OPT_TOKEN},
    {"skus", required_argument, NULL, OPT_SKUS},
    {"dist", required_argument, NULL, OPT_DIST},
    {"qty", required_argument, NULL, OPT_QTY},
    {"lines", required_argument, NULL, OPT_LINES},
    {"stock", required_argument, NULL, OPT_STOCK},
    {"hold-ms", required_argument, NULL, OPT_HOLD},
    {"mix", required_argument, NULL, OPT_MIX},
    {"sku-prefix", required_argument, NULL, OPT_SKU_PREFIX},
    {"no-setup", no_argument, NULL, OPT_NO_SETUP},
    {"ring-aware", no_argument, NULL, OPT_RING_AWARE},
    {"connections", required_argument, NULL, OPT_CONNS},
    {"pipeline", required_argument, NULL, OPT_PIPE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"requests", required_argument, NULL, OPT_REQUESTS},
    {"rate", required_argument, NULL, OPT_RATE},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", required_argument, NULL, OPT_JSON},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"keep", no_argument, NULL, OPT_KEEP},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"cpu", required_argument, NULL, OPT_CPU},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"systems", required_argument, NULL, OPT_SYSTEMS},
    {"minutes", required_argument, NULL, OPT_MINUTES},
    {"minute-ms", required_argument, NULL, OPT_MINUTE_MS},
    {"orders-per-min", required_argument, NULL, OPT_OPM},
    {"fake", required_argument, NULL, OPT_FAKE},
    {"fake-app-key", required_argument, NULL, OPT_FAKE_KEY},
    {"fake-app-secret", required_argument, NULL, OPT_FAKE_SECRET},
    {"fake-token", required_argument, NULL, OPT_FAKE_TOKEN},
    {"settle", required_argument, NULL, OPT_SETTLE},
    {"stockd-flags", no_argument, NULL, OPT_STOCKD_FLAGS},
    {NULL, 0, NULL, 0},
};

static void opts_default(bench_opts *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->peer_db, sizeof o->peer_db, "bench_peer");
    o->skus = 1;
    o->qty = 1;
    o->stock = BENCH_STOCK_UNLIMITED;
    o->connections = 16;
    o->pipeline = 1;
    o->duration_s = 10;
    o->warmup_s = 1;
    o->drain_s = 10;
    o->seed = 1;
    o->modes[0] = BENCH_MODE_STOCKD;
    o->n_modes = 1;
    o->progress = isatty(STDOUT_FILENO) == 1;
}

/* The sales night's own options (sn_sys.h), parsed next to the others. */
typedef struct sn_cli {
    bool on;                         /* --mode salesnight */
    bool skus_given, print_flags;
    bool used;                       /* a salesnight-only option was given */
    sn_opts so;
} sn_cli;

static int parse_str(const char *opt, const char *arg, char *dst, size_t cap)
{
    if (strlen(arg) == 0 || strlen(arg) >= cap)
        return usage_error("%s: 1..%zu bytes", opt, cap - 1);
    snprintf(dst, cap, "%s", arg);
    return 0;
}

static int parse_systems(const char *s, sn_opts *so)
{
    static const char *const known[SN_SYSTEMS_MAX] = {"naive", "seed", "stockd", "stockd-checked"};
    opt_list l;
    if (split_list("--systems", s, &l) != 0)
        return -1;
    so->n_systems = 0;
    for (unsigned j = 0; j < l.n; j++) {
        const char *t = l.item[j];
        int k = 0;
        while (k < SN_SYSTEMS_MAX && strcmp(t, known[k]) != 0)
            k++;
        if (k == SN_SYSTEMS_MAX)
            return usage_error("--systems: unknown system '%s' (naive, seed, stockd, stockd-checked)", t);
        for (unsigned i = 0; i < so->n_systems; i++)
            if (strcmp(so->systems[i], t) == 0)
                return usage_error("--systems: '%s' given twice", t);
        snprintf(so->systems[so->n_systems++], sizeof so->systems[0], "%s", t);
    }
    return so->n_systems ? 0 : usage_error("--systems: empty");
}

static int apply_sn_opt(int c, const char *arg, sn_cli *sn)
{
    uint64_t u = 0;
    int rc;
    sn_opts *so = &sn->so;
    sn->used = true;
    switch (c) {
    case OPT_SYSTEMS: return parse_systems(arg, so);
    case OPT_MINUTES:
        rc = parse_u64("--minutes", arg, 1, SN_MINUTES_MAX, &u);
        so->minutes = (uint32_t)u;
        return rc;
    case OPT_MINUTE_MS: return parse_dbl("--minute-ms", arg, 10, 60000, &so->minute_ms);
    case OPT_OPM: return parse_dbl("--orders-per-min", arg, 0.1, 10000, &so->orders_per_min);
    case OPT_FAKE:
        if (strncmp(arg, "http://", 7) != 0)
            return usage_error("--fake: '%s' is not http://IP:PORT", arg);
        return parse_str("--fake", arg, so->fake_url, sizeof so->fake_url);
    case OPT_FAKE_KEY: return parse_str("--fake-app-key", arg, so->app_key, sizeof so->app_key);
    case OPT_FAKE_SECRET:
        return parse_str("--fake-app-secret", arg, so->app_secret, sizeof so->app_secret);
    case OPT_FAKE_TOKEN: return parse_str("--fake-token", arg, so->token, sizeof so->token);
    case OPT_SETTLE: return parse_dbl("--settle", arg, 0, 60, &so->settle_s);
    case OPT_STOCKD_FLAGS: sn->print_flags = true; return 0;
    default: return usage_error("unknown option");
    }
}

static void sn_defaults(sn_cli *sn)
{
    memset(sn, 0, sizeof *sn);
    sn->so.minutes = 180;
    sn->so.minute_ms = 1000;
    sn->so.orders_per_min = 25;
    sn->so.settle_s = 2;
    parse_systems("naive,seed,stockd,stockd-checked", &sn->so);
}

/* Environment defaults of the fake's URL and credentials (tools/stack env). */
static int sn_finish(sn_cli *sn, bench_opts *o)
{
    sn_opts *so = &sn->so;
    struct { char *dst; size_t cap; const char *env, *def; } e[] = {
        {so->fake_url, sizeof so->fake_url, "STOCKD_FAKE1688_CONTROL", ""},
        {so->app_key, sizeof so->app_key, "STOCKD_FAKE1688_APP_KEY", "1000000"},
        {so->app_secret, sizeof so->app_secret, "STOCKD_FAKE1688_APP_SECRET", "test123"},
        {so->token, sizeof so->token, "STOCKD_FAKE1688_ACCESS_TOKEN", "TESTTOKEN"},
    };
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        const char *v = getenv(e[i].env);
        if (e[i].dst[0] == '\0')
            snprintf(e[i].dst, e[i].cap, "%s", v && v[0] ? v : e[i].def);
    }
    if (!sn->on) {
        if (sn->used)
            return usage_error("--systems, --minutes, --fake ... need --mode salesnight");
        return 0;
    }
    if (!sn->skus_given)
        o->skus = 2000;
    if (sn->print_flags)
        return 0;
    if (so->fake_url[0] == '\0')
        return usage_error("salesnight needs --fake (or STOCKD_FAKE1688_CONTROL: tools/stack env)");
    if (o->lines || o->hold_ms || o->has_mix || o->rate > 0 || o->sku_prefix[0] || o->n_cpu)
        return usage_error("salesnight makes its own workload: no --lines, --hold-ms, --mix, "
                           "--rate, --sku-prefix, --cpu");
    return 0;
}

/* One option; 0, 1 (help/version printed: exit 0) or -1 (usage error). */
static int apply_opt(int c, const char *arg, bench_opts *o, bool *db_given, bool *redis_given,
                     sn_cli *sn)
{
    uint64_t u = 0;
    int rc = 0;
    if (c >= OPT_SYSTEMS && c <= OPT_STOCKD_FLAGS)
        return apply_sn_opt(c, arg, sn);
    switch (c) {
    case OPT_MODE:
        if (strcmp(arg, "salesnight") == 0) {
            sn->on = true;
            return 0;
        }
        if (parse_modes("--mode", arg, o) != 0)
            return -1;
        if (o->n_modes != 1)
            return usage_error("--mode takes one mode; use --compare for several");
        return 0;
    case OPT_COMPARE: return parse_modes("--compare", arg, o);
    case OPT_TARGET: return parse_targets(arg, o);
    case OPT_DB: *db_given = true; return parse_db(arg, o, "--db");
    case OPT_REDIS: *redis_given = true; return parse_redis(arg, o, "--redis");
    case OPT_PEER_DB:
        if (strlen(arg) == 0 || strlen(arg) >= sizeof o->peer_db || strspn(arg,
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(arg))
            return usage_error("--peer-db: '%s' must be 1..63 of [A-Za-z0-9_]", arg);
        snprintf(o->peer_db, sizeof o->peer_db, "%s", arg);
        return 0;
    case OPT_TOKEN:
        if (strlen(arg) == 0 || strlen(arg) >= sizeof o->admin_token)
            return usage_error("--admin-token: 1..127 bytes");
        snprintf(o->admin_token, sizeof o->admin_token, "%s", arg);
        return 0;
    case OPT_SKUS:
        sn->skus_given = true;
        rc = parse_u64("--skus", arg, 1, BENCH_SKUS_MAX, &u);
        o->skus = (uint32_t)u;
        return rc;
    case OPT_DIST: return parse_dist(arg, o);
    case OPT_MIX: return parse_mix(arg, o);
    case OPT_SKU_PREFIX:
        if (strlen(arg) == 0 || strlen(arg) >= sizeof o->sku_prefix || strspn(arg,
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-") != strlen(arg))
            return usage_error("--sku-prefix: '%s' must be 1..31 of [A-Za-z0-9_.:-]", arg);
        snprintf(o->sku_prefix, sizeof o->sku_prefix, "%s", arg);
        return 0;
    case OPT_NO_SETUP: o->no_setup = true; return 0;
    case OPT_RING_AWARE: o->ring_aware = true; return 0;
    case OPT_QTY: rc = parse_u64("--qty", arg, 1, BENCH_QTY_MAX, &u); o->qty = (int32_t)u; return rc;
    case OPT_LINES:
        rc = parse_u64("--lines", arg, 1, BENCH_LINES_MAX, &u); o->lines = (uint32_t)u; return rc;
    case OPT_STOCK:
        if (strcmp(arg, "unlimited") == 0) {
            o->stock = BENCH_STOCK_UNLIMITED;
            return 0;
        }
        rc = parse_u64("--stock", arg, 0, BENCH_STOCK_MAX, &u); o->stock = (int64_t)u; return rc;
    case OPT_HOLD: rc = parse_u64("--hold-ms", arg, 1000, 86400000, &u); o->hold_ms = (int64_t)u; return rc;
    case OPT_CONNS: rc = parse_u64("--connections", arg, 1, BENCH_CONNS_MAX, &u); o->connections = (uint32_t)u; return rc;
    case OPT_PIPE: rc = parse_u64("--pipeline", arg, 1, BENCH_PIPELINE_MAX, &u); o->pipeline = (uint32_t)u; return rc;
    case OPT_DURATION: return parse_dbl("--duration", arg, 0.1, BENCH_SECONDS_MAX / 2, &o->duration_s);
    case OPT_REQUESTS: rc = parse_u64("--requests", arg, 1, UINT64_C(1) << 40, &u); o->requests = u; return rc;
    case OPT_RATE: return parse_dbl("--rate", arg, 1, 1e8, &o->rate);
    case OPT_WARMUP: return parse_dbl("--warmup", arg, 0, BENCH_SECONDS_MAX / 4, &o->warmup_s);
    case OPT_DRAIN: return parse_dbl("--drain", arg, 0.1, 600, &o->drain_s);
    case OPT_SEED: return parse_u64("--seed", arg, 0, UINT64_MAX, &o->seed);
    case OPT_JSON: o->json_path = arg; return 0;
    case OPT_PLOT: o->plot_path = arg; return 0;
    case OPT_KEEP: o->keep = true; return 0;
    case OPT_NO_PROGRESS: o->progress = false; return 0;
    case OPT_CPU: return parse_cpu(arg, o);
    case 'h': fputs(USAGE, stdout); return 1;
    case OPT_VERSION: printf("stockbench %s\n", STOCKD_VERSION); return 1;
    default: return usage_error("unknown option");
    }
}

/* Environment defaults, then cross-option checks. */
static int finish_opts(bench_opts *o, bool db_given, bool redis_given)
{
    const char *e;
    if (!db_given && (e = getenv("STOCKD_DB")) != NULL && e[0] && parse_db(e, o, "STOCKD_DB") != 0)
        return -1;
    if (!redis_given && (e = getenv("STOCKD_REDIS")) != NULL && e[0] &&
        parse_redis(e, o, "STOCKD_REDIS") != 0)
        return -1;
    if ((uint64_t)o->connections * o->pipeline > BENCH_SLOTS_MAX)
        return usage_error("--connections x --pipeline must be at most 65536");
    if (o->warmup_s + o->duration_s + o->drain_s > BENCH_SECONDS_MAX)
        return usage_error("--warmup + --duration + --drain must be at most 3600 s");
    if (o->zipf_s > 0 && o->skus > 1000000)
        return usage_error("--dist zipf supports at most 1000000 SKUs");
    if (o->lines > o->skus)
        return usage_error("--lines %" PRIu32 " needs at least as many --skus (%" PRIu32 ")",
                           o->lines, o->skus);
    if (o->lines > 0 && o->sku_prefix[0])
        return usage_error("--lines is for reservations; --sku-prefix is for reads");
    for (unsigned i = 0; i < o->n_modes; i++) {
        if (o->modes[i] != BENCH_MODE_CEILING)
            continue;
        /* The ceiling appends rows, round-robin over --skus; anything that
         * shapes orders or their transport would be silently ignored. */
        const char *bad = o->lines ? "--lines" : o->has_mix ? "--mix" : o->hold_ms ? "--hold-ms"
                        : o->sku_prefix[0] ? "--sku-prefix" : o->no_setup ? "--no-setup"
                        : o->ring_aware ? "--ring-aware" : o->zipf_s > 0 ? "--dist zipf"
                        : o->dist_seq ? "--dist seq" : o->pipeline > 1 ? "--pipeline" : NULL;
        if (bad != NULL)
            return usage_error("ceiling: %s does not apply (one 1,000-row INSERT per connection at a "
                               "time, rows round-robin over --skus; concurrency is --connections)",
                               bad);
    }
    if (o->stock < o->qty && o->stock != 0)
        fprintf(stderr, "stockbench: note: --stock %" PRId64 " < --qty %" PRId32
                ": every order will be refused\n", o->stock, o->qty);
    return 0;
}

static int parse_args(int argc, char **argv, bench_opts *o, sn_cli *sn)
{
    opts_default(o);
    sn_defaults(sn);
    bool db_given = false, redis_given = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", LONG_OPTS, NULL)) != -1) {
        if (c == '?')
            return usage_error("unknown option '%s'", argv[optind - 1]);
        if (c == ':')
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        int rc = apply_opt(c, optarg, o, &db_given, &redis_given, sn);
        if (rc != 0)
            return rc;
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (sn_finish(sn, o) != 0)
        return -1;
    return finish_opts(o, db_given, redis_given);
}

int main(int argc, char **argv)
{
    /* A round of its own, with options of its own (contest.c). */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--cart-contest") == 0) {
            signal(SIGPIPE, SIG_IGN);
            return contest_main(argc, argv);
        }
    }
    static bench_opts o;
    static sn_cli sn;
    int prc = parse_args(argc, argv, &o, &sn);
    if (prc != 0)
        return prc > 0 ? 0 : 2;
    if (sn.on && sn.print_flags) {
        sn_print_stockd_flags(&sn.so);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, "stockbench: mysql_library_init failed\n");
        return 3;
    }
    if (sn.on) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int rc = sn_main(&o, &sn.so);
        curl_global_cleanup();
        mysql_library_end();
        return rc;
    }
    double *zipf = NULL;
    if (o.zipf_s > 0 && (zipf = bench_zipf_cdf(o.skus, o.zipf_s)) == NULL) {
        fprintf(stderr, "stockbench: out of memory for the zipf table\n");
        return 3;
    }
    bench_result *res = calloc(o.n_modes, sizeof *res);
    assert(res != NULL);
    int exit_rc = 0;
    for (unsigned i = 0; i < o.n_modes; i++) {
        if (bench_run_mode(&o, o.modes[i], zipf, &res[i]) != 0 && exit_rc == 0)
            exit_rc = 3;
        bench_report_print(&o, &res[i]);
        if (res[i].ran && (res[i].audit_rc == BENCH_AUDIT_FAILED || res[i].audit_rc == BENCH_AUDIT_ERROR))
            exit_rc = 1;
    }
    if (o.n_modes > 1)
        bench_report_compare(&o, res, o.n_modes);
    if (o.json_path != NULL && bench_report_json(&o, res, o.n_modes, o.json_path) != 0 && exit_rc == 0)
        exit_rc = 3;
    if (o.plot_path != NULL && bench_report_plot(res, o.n_modes, o.plot_path) != 0 && exit_rc == 0)
        exit_rc = 3;
    free(res);
    free(zipf);
    mysql_library_end();
    return exit_rc;
}
