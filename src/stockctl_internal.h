/* stockctl_internal.h — what the files of stockctl share: the options,
 * the exit codes, and each file's entry points. Not a public contract;
 * stockctl's own files and its unit test include it.
 *
 *   stockctl.c        main, nothing else
 *   stockctl_cmds.c   the command table, dispatch (ctl_main), the commands
 *   stockctl_args.c   flags and their values, per-command option checks
 *   stockctl_render.c output: JSON, aligned text, results and failures
 *   stockctl_top.c    the live `top` view and its terminal handling
 *   stockctl_import.c `import FILE.csv`: CSV rows pipelined as sku.put
 */
#ifndef STOCKD_STOCKCTL_INTERNAL_H
#define STOCKD_STOCKCTL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "stockd/client.h"

/* Exit codes: 0 ok, 1 the server answered an error (or an import had bad
 * rows), 2 usage, 3 transport or protocol failure. */
enum { EXIT_SERVER = 1, EXIT_USAGE = 2, EXIT_TRANSPORT = 3 };

#define CTL_MAX_POS 8
#define CTL_MAX_QTY_ARG 1000000000LL

typedef struct ctl_opts {
    const char *addr;
    bool json;
    const char *token;
    int timeout_ms;
    bool has_hold, has_deadline, has_own, has_reported;
    bool check;                      /* reserve --check */
    bool has_check_first, check_first;  /* supplier-put --check-before-confirm on|off */
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

/* ---- stockctl_cmds.c ---- */
/* The whole program: parses argv, connects, runs the command; returns the
 * exit code. */
int ctl_main(int argc, char **argv);

/* ---- stockctl_args.c ---- */
/* Prints "stockctl: ..." and the hint to stderr; returns EXIT_USAGE. */
int ctl_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Returns -1 when parsed, else an exit code (0 for --help). */
int ctl_parse_args(int argc, char **argv, ctl_opts *o);
/* Options that belong to one command only: -1 when fine, else EXIT_USAGE. */
int ctl_check_cmd_opts(const ctl_opts *o, const char *cmd);
/* A whole decimal integer in lo..hi. */
bool ctl_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* SUPPLIER_ID:OFFER_ID:SPEC_ID[:SKU_ID] into req (pointing into buf). */
bool ctl_parse_supplier(char *buf, stockd_sku_put_req *req);

/* ---- stockctl_render.c ---- */
void ctl_json_str(FILE *f, const char *s, size_t n);
void ctl_json_obj(FILE *f, const msgpack_object *o);
void ctl_human_time(FILE *f, int64_t ms);
void ctl_human_map(FILE *f, const msgpack_object *m, int indent);
int ctl_report_failure(stockd_client *c, const ctl_opts *o, stockd_rc rc);
int ctl_print_result(stockd_client *c, const ctl_opts *o);
int ctl_order_done(stockd_client *c, const ctl_opts *o, stockd_rc rc, const stockd_order *ord);
int ctl_stock_done(stockd_client *c, const ctl_opts *o, stockd_rc rc, const stockd_stock *st);

/* ---- stockctl_top.c ---- */
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

/* Copies what the view shows out of a stats map. */
void ctl_top_take(const msgpack_object *st, top_snap *s);
/* Draws one frame; rates need prev (NULL: the first frame). */
void ctl_top_draw(FILE *f, const top_snap *cur, const top_snap *prev, const char *addr);
int ctl_cmd_top(stockd_client *c, const ctl_opts *o);

/* ---- stockctl_import.c ---- */
/* Splits a CSV line in place; the field count, or -1. */
int ctl_csv_split(char *line, char **fields, int max);
int ctl_import(stockd_client *c, const char *path, bool json);

#endif
