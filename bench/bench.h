/* bench.h — stockbench's shared types: options, the run driver and the
 * interface every mode implements.
 *
 * One run = one mode on one workload. The driver (driver.c) owns the
 * event_base, the request slots, the arrival schedule (closed loop, or open
 * loop at --rate), the clock and the statistics. A mode owns its
 * connections and turns one bench_req ("reserve qty of sku for order N")
 * into backend traffic, then reports the outcome with bench_done().
 *
 * Slots: a mode registers each connection with a capacity (its pipeline
 * depth); the driver creates that many bench_req slots bound to the
 * connection and only hands a slot to send() when it is free, so a mode
 * never sees more than `capacity` requests in flight per connection.
 */
#ifndef STOCKBENCH_BENCH_H
#define STOCKBENCH_BENCH_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockd/hist.h"

struct event_base;

/* Limits on everything the command line can ask for. */
#define BENCH_CONNS_MAX 4096
#define BENCH_PIPELINE_MAX 1024
#define BENCH_SLOTS_MAX 65536        /* connections x pipeline */
#define BENCH_SKUS_MAX 10000000u
#define BENCH_QTY_MAX 1000000
#define BENCH_STOCK_UNLIMITED 1000000000LL
#define BENCH_STOCK_MAX 1000000000000LL
#define BENCH_SECONDS_MAX 3600       /* duration + warmup + drain */
#define BENCH_TARGETS_MAX 16
#define BENCH_CODES_MAX 32           /* distinct outcome codes per run */
#define BENCH_CODE_LEN 48
#define BENCH_NAME_LEN 96            /* sku and order id strings */
#define BENCH_URL_LEN 512
#define BENCH_HOST_LEN 64
#define BENCH_BACKLOG_MAX (1u << 20) /* open loop: arrivals waiting for a slot */
#define BENCH_LINES_MAX 50           /* --lines: SKUs per cart (stockd's limit) */
#define BENCH_CPU_MAX 4              /* --cpu: processes watched besides stockbench */
#define BENCH_CPU_NAME_LEN 16

typedef enum bench_mode_id {
    BENCH_MODE_STOCKD = 0,
    BENCH_MODE_PING,
    BENCH_MODE_REDIS_PING,
    BENCH_MODE_MARIADB_ROW,
    BENCH_MODE_REDIS_LUA,
    BENCH_MODE_SEED_LOCK,
    BENCH_MODE_CEILING,              /* not orders: 1,000-row INSERTs, the durable append ceiling */
    BENCH_MODE_COUNT_
} bench_mode_id;

/* stockd --mix: what one order is. */
typedef enum bench_mix {
    BENCH_MIX_RESERVE = 0,           /* reserve (confirmed, or a hold with --hold-ms) */
    BENCH_MIX_HOLD,                  /* reserve as a hold, then confirm it */
    BENCH_MIX_RELEASE,               /* reserve, then release it */
    BENCH_MIX_GET,                   /* stock.get */
    BENCH_MIX_COUNT_
} bench_mix;

typedef struct bench_addr {
    char host[BENCH_HOST_LEN];
    uint16_t port;
} bench_addr;

typedef struct bench_dburl {
    char user[64];
    char pass[128];
    char host[BENCH_HOST_LEN];
    uint16_t port;
    char db[64];
    char socket[256];                /* "" unless ?socket=/path */
} bench_dburl;

typedef struct bench_opts {
    bench_addr targets[BENCH_TARGETS_MAX];
    unsigned n_targets;
    bool has_db, has_redis;
    bench_dburl db;                  /* --db: stockd's database (audit) and peers' server */
    char peer_db[64];                /* database the peer modes create their tables in */
    bench_addr redis;
    uint32_t skus;
    double zipf_s;                   /* 0: uniform */
    bool dist_seq;                   /* --dist seq: SKU k mod N for the k-th pick */
    char sku_prefix[32];             /* --sku-prefix: SKUs "<prefix>-<i>", "" = b<nonce>-<i> */
    bool no_setup;                   /* --no-setup: stockd SKUs are not created */
    bool ring_aware;                 /* --ring-aware: to each SKU's owner (mode_rpc.c) */
    int32_t qty;                     /* units per order, or per line of a cart */
    uint32_t lines;                  /* --lines: 0 = single-SKU orders (no "lines" param);
                                      * 1..BENCH_LINES_MAX = carts of that many distinct SKUs */
    int64_t stock;                   /* initial stock per SKU */
    int64_t hold_ms;                 /* stockd: reserve as a hold; 0 = confirmed */
    uint32_t mix[BENCH_MIX_COUNT_];  /* stockd: weights of the order kinds (--mix) */
    bool has_mix;
    uint32_t connections;
    uint32_t pipeline;
    double duration_s;
    double warmup_s;
    double drain_s;                  /* wait for in-flight replies after the run */
    uint64_t requests;               /* 0: run for duration_s */
    double rate;                     /* 0: closed loop */
    uint64_t seed;
    char admin_token[128];           /* "" : none */
    bench_mode_id modes[BENCH_MODE_COUNT_];
    unsigned n_modes;
    const char *json_path;
    const char *plot_path;
    bool progress;                   /* stdout is a tty */
    bool keep;                       /* keep peer tables/keys after the audit */
    struct {
        char name[BENCH_CPU_NAME_LEN];
        int pid;
    } cpu[BENCH_CPU_MAX];            /* --cpu NAME=PID,...: CPU read over each window */
    unsigned n_cpu;
} bench_opts;

typedef struct bench_code {
    char name[BENCH_CODE_LEN];
    uint64_t count;
} bench_code;

typedef enum bench_audit_rc {
    BENCH_AUDIT_OK = 0,
    BENCH_AUDIT_FAILED,              /* the data shows a violation */
    BENCH_AUDIT_ERROR,               /* could not audit (connect, query) */
    BENCH_AUDIT_NONE,                /* nothing to audit (ping modes) */
} bench_audit_rc;

/* Everything one run measured. Figures count only the measured window
 * (after --warmup); the *_total fields count the whole run, for the audit. */
typedef struct bench_result {
    bench_mode_id mode;
    bool ran;
    char error[256];                 /* setup/connect failure: the run did not happen */
    double elapsed_s;                /* measured window */
    uint64_t requests;               /* replies in the window */
    uint64_t successes;              /* reservations made in the window */
    uint64_t ok_total;               /* every success reply, warmup included */
    uint64_t unknown_total;          /* no reply before the drain deadline */
    bench_code codes[BENCH_CODES_MAX];
    unsigned n_codes;
    uint64_t codes_dropped;          /* outcomes beyond BENCH_CODES_MAX names */
    hist hist;                 /* latency, microseconds */
    uint32_t series_n;               /* seconds recorded */
    uint32_t series_req[BENCH_SECONDS_MAX];
    uint32_t series_ok[BENCH_SECONDS_MAX];
    bool has_server_stats;           /* stockd: deltas of its counters */
    double srv_batches, srv_batch_ops, srv_commits;
    bench_audit_rc audit_rc;
    char audit[512];
    char server_settings[160];       /* ceiling: the server's durability settings, "" otherwise */
    /* CPU over the measured window (cpu.c): cores = CPU seconds per second. */
    bool has_cpu;
    double cpu_window_s;
    double cpu_self_cores;           /* stockbench itself */
    double cpu_proc_cores[BENCH_CPU_MAX]; /* per --cpu process; -1: gone or unreadable */
    unsigned cpu_machine_cores;      /* online CPUs */
} bench_result;

typedef struct bench_run bench_run;

/* One request slot. The driver fills the order; the mode may use the
 * scratch fields while the request is in flight. */
typedef struct bench_req {
    uint64_t t_start_ns;             /* latency origin: intended (open loop) or send time */
    uint64_t seq;                    /* order number within the run */
    uint32_t sku;                    /* index 0..skus-1; a cart's line 0 (= line_sku[0]) */
    int32_t qty;                     /* per line */
    uint32_t n_lines;                /* 1 for a single-SKU order */
    /* The order's SKUs: distinct, ascending (so every mode gets the same
     * carts, and the lock-taking peers a global order that cannot deadlock). */
    uint32_t line_sku[BENCH_LINES_MAX];
    bool measured;
    bool in_flight;
    bool not_reservation;            /* set by the mode: a success that reserved nothing */
    uint32_t conn_idx;               /* driver's connection index */
    void *conn;                      /* the mode's connection object */
    /* mode scratch */
    int stage;
    uint32_t tries;
    uint64_t t_stage_ns;
    int64_t value;
    const char *outcome;
    struct bench_req *next_free;
} bench_req;

/* What a mode implements. All callbacks run on the driver's loop thread.
 * setup/audit may block (they run outside the measured window). */
typedef struct bench_mode_ops {
    const char *name;
    bool reserves;                   /* counts reservations (false: ping modes) */
    /* Rows one successful request writes when the mode's throughput is rows
     * rather than orders (ceiling: a statement of 1,000); 0 = orders. Its
     * rows/s then stands where the other modes' reservations/s stand. */
    uint32_t rows_per_request;
    /* Creates the mode's state, tables/keys and connections; registers
     * connections with bench_add_conn(). 0, or -1 with err. */
    int (*open)(bench_run *r, void **state, char *err, size_t err_len);
    /* Sends one request on q->conn; must end in exactly one bench_done(). */
    void (*send)(bench_run *r, void *state, bench_req *q);
    /* Called after the run, before close (stockd: counters). Optional. */
    void (*after)(bench_run *r, void *state, bench_result *res);
    bench_audit_rc (*audit)(bench_run *r, void *state, const bench_result *res,
                            char *msg, size_t msg_len);
    void (*close)(bench_run *r, void *state);
} bench_mode_ops;

const bench_mode_ops *bench_mode_get(bench_mode_id id);
const char *bench_mode_name(bench_mode_id id);
int bench_mode_parse(const char *s, bench_mode_id *out);

extern const bench_mode_ops bench_mode_stockd, bench_mode_ping, bench_mode_redis_ping,
    bench_mode_mariadb_row, bench_mode_redis_lua, bench_mode_seed_lock, bench_mode_ceiling;

/* ---- driver (driver.c) ---- */

/* Runs one mode on the workload; fills res. 0 when the run happened (see
 * res->audit_rc for the audit), -1 when it could not (res->error). */
int bench_run_mode(const bench_opts *o, bench_mode_id mode, const double *zipf_cdf,
                   bench_result *res);

const bench_opts *bench_opts_of(const bench_run *r);
struct event_base *bench_base(bench_run *r);
const char *bench_nonce(const bench_run *r);

/* Registers a connection with `capacity` request slots; returns its index. */
uint32_t bench_add_conn(bench_run *r, void *conn, uint32_t capacity);
/* The connection broke: its slots are retired when they come back. */
void bench_conn_dead(bench_run *r, uint32_t conn_idx);
/* Finishes a request: outcome NULL = success, else a short code
 * ("insufficient_stock", "db_1213", ...). Ignored after the run ended. */
void bench_done(bench_run *r, bench_req *q, const char *outcome);
/* Runs the loop until *flag reaches target or timeout_ms passes;
 * 0 or -1 on timeout. For connection setup before the clock starts. */
int bench_wait(bench_run *r, const uint32_t *counter, uint32_t target, unsigned timeout_ms);

uint64_t bench_now_ns(void);

/* cpu.c: /proc readings at the ends of the measured window. */
typedef struct bench_cpu_snap {
    uint64_t t_ns;
    uint64_t self, proc[BENCH_CPU_MAX];   /* utime + stime, clock ticks */
    bool self_ok, proc_ok[BENCH_CPU_MAX];
} bench_cpu_snap;

/* utime + stime from the text of /proc/PID/stat (the command name may hold
 * spaces and parentheses); 0, or -1 when the text is not such a line. */
int bench_cpu_parse_stat(const char *text, uint64_t *ticks);
/* utime + stime of process pid (0: this process); -1 when it cannot be read. */
int bench_cpu_read(int pid, uint64_t *ticks);
void bench_cpu_snap_take(const bench_opts *o, bench_cpu_snap *s);
/* Fills res->has_cpu and the cpu_* figures from two snapshots. */
void bench_cpu_finish(const bench_opts *o, const bench_cpu_snap *a, const bench_cpu_snap *b,
                      bench_result *res);
uint64_t bench_rand(uint64_t *state);
/* Names shared by every mode so a run's rows are easy to find. */
void bench_sku_name(const bench_run *r, uint32_t idx, char *buf, size_t len);
void bench_order_id(const bench_run *r, uint64_t seq, char *buf, size_t len);
/* Lines per order of the run: --lines, or 1 without it. */
uint32_t bench_lines_per_order(const bench_opts *o);

/* ---- util.c ---- */
int bench_parse_dburl(const char *url, bench_dburl *out, char *err, size_t err_len);
int bench_parse_addr(const char *s, const char *scheme, bench_addr *out, char *err,
                     size_t err_len);
/* Cumulative zipf distribution over n ranks with exponent s (malloc). */
double *bench_zipf_cdf(uint32_t n, double s);

/* ---- report.c ---- */
void bench_report_print(const bench_opts *o, const bench_result *res);
void bench_report_compare(const bench_opts *o, const bench_result *res, unsigned n);
int bench_report_json(const bench_opts *o, const bench_result *res, unsigned n,
                      const char *path);
int bench_report_plot(const bench_result *res, unsigned n, const char *png_path);
/* stockbench --cart-contest (contest.c): its own options and report. */
int contest_main(int argc, char **argv);

#endif
