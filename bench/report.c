/* report.c — text, comparison table, JSON (jansson) and gnuplot output. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jansson.h>

extern char **environ;

static const double QUANTS[5] = { 0.50, 0.90, 0.99, 0.999, 1.0 };
static const char *const QUANT_NAMES[5] = { "p50", "p90", "p99", "p999", "max" };

static double per_s(double n, double s)
{
    return s > 0 ? n / s : 0;
}

/* Rows one success stands for (ceiling: a 1,000-row statement), else 1. */
static double unit_of(const bench_result *r)
{
    uint32_t rows = bench_mode_get(r->mode)->rows_per_request;
    return rows ? (double)rows : 1.0;
}

/* What the mode's throughput counts: reservations, or rows for ceiling. */
static double thru_per_s(const bench_result *r)
{
    return per_s((double)r->successes * unit_of(r), r->elapsed_s);
}

static const char *audit_word(const bench_result *r)
{
    switch (r->audit_rc) {
    case BENCH_AUDIT_OK: return "ok";
    case BENCH_AUDIT_FAILED: return "FAILED";
    case BENCH_AUDIT_ERROR: return "ERROR";
    case BENCH_AUDIT_NONE: return "-";
    }
    return "?";
}

/* Microseconds of CPU per unit of throughput for `cores` busy; 0 when
 * nothing was done. */
static double us_per(const bench_result *r, double cores)
{
    double t = thru_per_s(r);
    return t > 0 && cores >= 0 ? cores * 1e6 / t : 0;
}

/* The cores of stockbench and of every --cpu process that could be read. */
static double cpu_total(const bench_opts *o, const bench_result *r)
{
    double t = r->cpu_self_cores;
    for (unsigned i = 0; i < o->n_cpu; i++)
        t += r->cpu_proc_cores[i] >= 0 ? r->cpu_proc_cores[i] : 0;
    return t;
}

/* "cpu: stockbench 0.27 cores (18 us each), stockd ...; together 1.50 of 2
 * cores (99 us)": each per reservation (per row for ceiling). */
static void print_cpu(const bench_opts *o, const bench_result *r)
{
    if (!r->has_cpu)
        return;
    printf("%-12s cpu: stockbench %.2f cores (%.0f us each)", "", r->cpu_self_cores,
           us_per(r, r->cpu_self_cores));
    for (unsigned i = 0; i < o->n_cpu; i++) {
        if (r->cpu_proc_cores[i] < 0)
            printf(", %s unknown", o->cpu[i].name);
        else
            printf(", %s %.2f (%.0f us)", o->cpu[i].name, r->cpu_proc_cores[i],
                   us_per(r, r->cpu_proc_cores[i]));
    }
    if (o->n_cpu > 0)
        printf("; together %.2f of %u cores (%.0f us)", cpu_total(o, r), r->cpu_machine_cores,
               us_per(r, cpu_total(o, r)));
    printf("\n");
}

void bench_report_print(const bench_opts *o, const bench_result *r)
{
    const char *name = bench_mode_name(r->mode);
    if (!r->ran) {
        printf("%-12s not run: %s\n", name, r->error);
        return;
    }
    uint32_t rows = bench_mode_get(r->mode)->rows_per_request;
    if (rows > 0)
        printf("%-12s rows/s %.1f  statements/s %.1f  (%" PRIu32 " rows per statement; %" PRIu64
               " replies in %.2f s)\n", name, thru_per_s(r), per_s((double)r->requests, r->elapsed_s),
               rows, r->requests, r->elapsed_s);
    else if (bench_mode_get(r->mode)->reserves && o->lines > 0)
        printf("%-12s carts/s %.1f  lines/s %.1f  (%" PRIu32 " lines per cart)  requests/s %.1f"
               "  (%" PRIu64 " replies in %.2f s)\n", name,
               per_s((double)r->successes, r->elapsed_s),
               per_s((double)r->successes * o->lines, r->elapsed_s), o->lines,
               per_s((double)r->requests, r->elapsed_s), r->requests, r->elapsed_s);
    else if (bench_mode_get(r->mode)->reserves)
        printf("%-12s reservations/s %.1f  requests/s %.1f  (%" PRIu64 " replies in %.2f s)\n", name,
               per_s((double)r->successes, r->elapsed_s), per_s((double)r->requests, r->elapsed_s),
               r->requests, r->elapsed_s);
    else
        printf("%-12s requests/s %.1f  (%" PRIu64 " replies in %.2f s)\n", name,
               per_s((double)r->requests, r->elapsed_s), r->requests, r->elapsed_s);
    printf("%-12s errors:", "");
    if (r->n_codes == 0)
        printf(" none");
    for (unsigned i = 0; i < r->n_codes; i++)
        printf(" %s=%" PRIu64, r->codes[i].name, r->codes[i].count);
    if (r->codes_dropped)
        printf(" (other codes)=%" PRIu64, r->codes_dropped);
    printf("\n%-12s latency us%s:", "", rows > 0 ? " per statement"
           : o->lines > 0 && bench_mode_get(r->mode)->reserves ? " per cart" : "");
    for (unsigned i = 0; i < 5; i++)
        printf(" %s %" PRIu64, i == 3 ? "p99.9" : QUANT_NAMES[i], hist_quantile(&r->hist, QUANTS[i]));
    printf("\n");
    if (r->has_server_stats) {
        printf("%-12s server: %.0f batches, mean batch %.1f ops, %.1f commits/s\n", "",
               r->srv_batches, r->srv_batches > 0 ? r->srv_batch_ops / r->srv_batches : 0,
               per_s(r->srv_commits, r->elapsed_s));
    }
    if (r->server_settings[0])
        printf("%-12s server: %s\n", "", r->server_settings);
    print_cpu(o, r);
    if (r->audit_rc == BENCH_AUDIT_NONE)
        printf("%-12s audit: %s\n", "", r->audit);
    else
        printf("audit: %s\n", r->audit);
    fflush(stdout);
}

static const bench_result *compare_base(const bench_result *res, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (res[i].ran && res[i].mode == BENCH_MODE_STOCKD)
            return &res[i];
    for (unsigned i = 0; i < n; i++)
        if (res[i].ran)
            return &res[i];
    return NULL;
}

static void ratio(char *buf, size_t len, double v, double base)
{
    if (base > 0)
        snprintf(buf, len, "%.2fx", v / base);
    else
        snprintf(buf, len, "-");
}

void bench_report_compare(const bench_opts *o, const bench_result *res, unsigned n)
{
    const bench_result *b = compare_base(res, n);
    if (b == NULL)
        return;
    double b_res = thru_per_s(b);
    double b_req = per_s((double)b->requests, b->elapsed_s);
    printf("\n%-12s %12s %8s %12s %8s %8s %8s %8s %9s %8s  %s\n", "mode",
           o->lines > 0 ? "carts/s" : "reserv/s", "ratio", "req/s", "ratio", "p50 us", "p99 us",
           "p99.9", "max us", "errors", "audit");
    for (unsigned i = 0; i < n; i++) {
        const bench_result *r = &res[i];
        if (!r->ran) {
            printf("%-12s not run: %s\n", bench_mode_name(r->mode), r->error);
            continue;
        }
        uint64_t errs = 0;
        for (unsigned k = 0; k < r->n_codes; k++)
            errs += r->codes[k].count;
        double v_res = thru_per_s(r);
        double v_req = per_s((double)r->requests, r->elapsed_s);
        char r1[16], r2[16];
        ratio(r1, sizeof r1, bench_mode_get(r->mode)->reserves ? v_res : 0, b_res);
        ratio(r2, sizeof r2, v_req, b_req);
        char v1[24];
        if (bench_mode_get(r->mode)->reserves)
            snprintf(v1, sizeof v1, "%.0f", v_res);
        else
            snprintf(v1, sizeof v1, "-");
        printf("%-12s %12s %8s %12.0f %8s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %9" PRIu64
               " %8" PRIu64 "  %s\n", bench_mode_name(r->mode), v1, r1, v_req, r2,
               hist_quantile(&r->hist, 0.5), hist_quantile(&r->hist, 0.99),
               hist_quantile(&r->hist, 0.999), r->hist.max, errs, audit_word(r));
    }
    printf("(ratios are to %s)\n", bench_mode_name(b->mode));
    for (unsigned i = 0; i < n; i++)
        if (res[i].ran && bench_mode_get(res[i].mode)->rows_per_request > 0)
            printf("(%s: rows/s of %" PRIu32 "-row INSERTs in place of reservations/s, "
                   "statements in place of requests)\n", bench_mode_name(res[i].mode),
                   bench_mode_get(res[i].mode)->rows_per_request);
    if (o->lines > 0)
        printf("(carts of %" PRIu32 " lines: lines/s = %" PRIu32 " x carts/s; latency is per cart)\n",
               o->lines, o->lines);
}

static json_t *workload_json(const bench_opts *o)
{
    json_t *w = json_object();
    json_t *targets = json_array();
    for (unsigned i = 0; i < o->n_targets; i++) {
        char buf[BENCH_HOST_LEN + 8];
        snprintf(buf, sizeof buf, "%s:%u", o->targets[i].host, o->targets[i].port);
        json_array_append_new(targets, json_string(buf));
    }
    json_object_set_new(w, "targets", targets);
    json_object_set_new(w, "ring_aware", json_boolean(o->ring_aware));
    json_object_set_new(w, "skus", json_integer(o->skus));
    json_object_set_new(w, "dist", json_string(o->zipf_s > 0 ? "zipf" : "uniform"));
    if (o->zipf_s > 0)
        json_object_set_new(w, "zipf_s", json_real(o->zipf_s));
    json_object_set_new(w, "qty", json_integer(o->qty));
    json_object_set_new(w, "lines", json_integer(o->lines));
    json_object_set_new(w, "stock", json_integer(o->stock));
    json_object_set_new(w, "hold_ms", json_integer(o->hold_ms));
    json_object_set_new(w, "connections", json_integer(o->connections));
    json_object_set_new(w, "pipeline", json_integer(o->pipeline));
    json_object_set_new(w, "duration_s", json_real(o->duration_s));
    json_object_set_new(w, "warmup_s", json_real(o->warmup_s));
    json_object_set_new(w, "requests", json_integer((json_int_t)o->requests));
    json_object_set_new(w, "rate", json_real(o->rate));
    json_object_set_new(w, "seed", json_integer((json_int_t)o->seed));
    return w;
}

static json_t *mode_json(const bench_opts *o, const bench_result *r)
{
    json_t *m = json_object();
    if (!r->ran) {
        json_object_set_new(m, "error", json_string(r->error));
        return m;
    }
    /* ceiling: rows/s stands where the others' reservations/s stand, so
     * tables and plots that read reservations_per_s show it beside them. */
    json_object_set_new(m, "reservations_per_s", json_real(thru_per_s(r)));
    uint32_t rows = bench_mode_get(r->mode)->rows_per_request;
    if (rows > 0) {
        json_object_set_new(m, "rows_per_s", json_real(thru_per_s(r)));
        json_object_set_new(m, "statements_per_s", json_real(per_s((double)r->requests, r->elapsed_s)));
        json_object_set_new(m, "rows_per_statement", json_integer(rows));
    }
    if (r->server_settings[0])
        json_object_set_new(m, "server_settings", json_string(r->server_settings));
    if (o->lines > 0 && bench_mode_get(r->mode)->reserves) {
        json_object_set_new(m, "carts_per_s", json_real(per_s((double)r->successes, r->elapsed_s)));
        json_object_set_new(m, "lines_per_s",
                            json_real(per_s((double)r->successes * o->lines, r->elapsed_s)));
        json_object_set_new(m, "lines_per_cart", json_integer(o->lines));
    }
    json_object_set_new(m, "requests_per_s", json_real(per_s((double)r->requests, r->elapsed_s)));
    json_object_set_new(m, "requests", json_integer((json_int_t)r->requests));
    json_object_set_new(m, "successes", json_integer((json_int_t)r->successes));
    json_object_set_new(m, "elapsed_s", json_real(r->elapsed_s));
    json_t *errs = json_object();
    for (unsigned i = 0; i < r->n_codes; i++)
        json_object_set_new(errs, r->codes[i].name, json_integer((json_int_t)r->codes[i].count));
    json_object_set_new(m, "errors", errs);
    json_t *lat = json_object();
    for (unsigned i = 0; i < 5; i++)
        json_object_set_new(lat, QUANT_NAMES[i], json_integer((json_int_t)hist_quantile(&r->hist, QUANTS[i])));
    json_object_set_new(m, "latency_us", lat);
    json_object_set_new(m, "audit", json_string(r->audit_rc == BENCH_AUDIT_OK ? "ok" : r->audit));
    json_object_set_new(m, "audit_detail", json_string(r->audit));
    if (r->has_server_stats) {
        json_t *s = json_object();
        json_object_set_new(s, "batches", json_real(r->srv_batches));
        json_object_set_new(s, "batch_ops", json_real(r->srv_batch_ops));
        json_object_set_new(s, "mean_batch", json_real(r->srv_batches > 0 ? r->srv_batch_ops / r->srv_batches : 0));
        json_object_set_new(s, "commits_per_s", json_real(per_s(r->srv_commits, r->elapsed_s)));
        json_object_set_new(m, "server", s);
    }
    if (r->has_cpu) {
        /* us_per_reservation: per row for ceiling, like reservations_per_s. */
        json_t *c = json_object(), *procs = json_object();
        json_object_set_new(c, "window_s", json_real(r->cpu_window_s));
        json_object_set_new(c, "machine_cores", json_integer(r->cpu_machine_cores));
        /* stockbench and every --cpu process that could be read */
        json_object_set_new(c, "total_cores", json_real(cpu_total(o, r)));
        json_object_set_new(c, "total_us_per_reservation", json_real(us_per(r, cpu_total(o, r))));
        for (unsigned i = 0; i <= o->n_cpu; i++) {
            double cores = i == 0 ? r->cpu_self_cores : r->cpu_proc_cores[i - 1];
            json_t *p = json_object();
            json_object_set_new(p, "cores", cores >= 0 ? json_real(cores) : json_null());
            json_object_set_new(p, "us_per_reservation", cores >= 0 ? json_real(us_per(r, cores))
                                                                     : json_null());
            if (i > 0)
                json_object_set_new(p, "pid", json_integer(o->cpu[i - 1].pid));
            json_object_set_new(procs, i == 0 ? "stockbench" : o->cpu[i - 1].name, p);
        }
        json_object_set_new(c, "processes", procs);
        json_object_set_new(m, "cpu", c);
    }
    json_t *series = json_array();
    for (uint32_t i = 0; i < r->series_n; i++)
        json_array_append_new(series, json_integer(r->series_req[i]));
    json_object_set_new(m, "requests_per_second_series", series);
    return m;
}

int bench_report_json(const bench_opts *o, const bench_result *res, unsigned n, const char *path)
{
    json_t *root = json_object();
    json_object_set_new(root, "workload", workload_json(o));
    json_t *modes = json_object();
    for (unsigned i = 0; i < n; i++)
        json_object_set_new(modes, bench_mode_name(res[i].mode), mode_json(o, &res[i]));
    json_object_set_new(root, "modes", modes);
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc != 0)
        fprintf(stderr, "stockbench: cannot write %s\n", path);
    return rc == 0 ? 0 : -1;
}

/* Writes <png>.lat.dat, <png>.tput.dat and <png>.gp, then runs gnuplot. */
static int plot_data(const bench_result *res, unsigned n, const char *base)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.lat.dat", base);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "pct");
    for (unsigned i = 0; i < n; i++)
        fprintf(f, " %s%s", bench_mode_name(res[i].mode),
                bench_mode_get(res[i].mode)->rows_per_request ? "(per-statement)" : "");
    fprintf(f, "\n");
    for (unsigned q = 0; q < 5; q++) {
        fprintf(f, "%s", q == 3 ? "p99.9" : QUANT_NAMES[q]);
        for (unsigned i = 0; i < n; i++) {
            uint64_t v = res[i].ran ? hist_quantile(&res[i].hist, QUANTS[q]) : 0;
            if (v > 0)
                fprintf(f, " %" PRIu64, v);
            else
                fprintf(f, " NaN");
        }
        fprintf(f, "\n");
    }
    fclose(f);
    snprintf(path, sizeof path, "%s.tput.dat", base);
    f = fopen(path, "w");
    if (f == NULL)
        return -1;
    uint32_t len = 0;
    fprintf(f, "s");
    for (unsigned i = 0; i < n; i++) {
        fprintf(f, " %s%s", bench_mode_name(res[i].mode),
                bench_mode_get(res[i].mode)->rows_per_request ? "(rows/s)" : "");
        len = res[i].series_n > len ? res[i].series_n : len;
    }
    fprintf(f, "\n");
    for (uint32_t s = 0; s < len; s++) {
        fprintf(f, "%" PRIu32, s + 1);
        for (unsigned i = 0; i < n; i++) {
            uint32_t rows = bench_mode_get(res[i].mode)->rows_per_request;
            if (s < res[i].series_n && rows > 0)    /* rows acknowledged, not statements */
                fprintf(f, " %" PRIu64, (uint64_t)res[i].series_ok[s] * rows);
            else if (s < res[i].series_n)
                fprintf(f, " %" PRIu32, res[i].series_req[s]);
            else
                fprintf(f, " NaN");
        }
        fprintf(f, "\n");
    }
    fclose(f);
    return 0;
}

int bench_report_plot(const bench_result *res, unsigned n, const char *png_path)
{
    char base[4096], gp[4200];
    snprintf(base, sizeof base, "%s", png_path);
    size_t bl = strlen(base);
    if (bl > 4 && strcmp(base + bl - 4, ".png") == 0)
        base[bl - 4] = '\0';
    if (strchr(base, '\'') != NULL) {
        fprintf(stderr, "stockbench: --plot path must not contain a quote\n");
        return -1;
    }
    if (plot_data(res, n, base) != 0) {
        fprintf(stderr, "stockbench: cannot write plot data next to %s\n", png_path);
        return -1;
    }
    snprintf(gp, sizeof gp, "%s.gp", base);
    FILE *f = fopen(gp, "w");
    if (f == NULL)
        return -1;
    fprintf(f,
            "set terminal pngcairo size 1400,560 font 'sans,10'\n"
            "set output '%s'\n"
            "set multiplot layout 1,2 title 'stockbench'\n"
            "set key autotitle columnheader top left\n"
            "set title 'latency percentiles (us, log scale)'\n"
            "set logscale y\nset grid\n"
            "plot for [i=2:%u] '%s.lat.dat' using i:xtic(1) with linespoints lw 2\n"
            "unset logscale y\n"
            "set title 'requests/s over time (warmup included, log scale)'\n"
            "set xlabel 'second'\n",
            png_path, n + 1, base);
    uint32_t seconds = 0;
    for (unsigned i = 0; i < n; i++)
        seconds = res[i].series_n > seconds ? res[i].series_n : seconds;
    if (seconds > 0)
        fprintf(f, "set logscale y\nplot for [i=2:%u] '%s.tput.dat' using 1:i with lines lw 2\n",
                n + 1, base);
    else      /* shorter than one tick: nothing to draw, say so */
        fprintf(f, "set label 'run shorter than 1 s' at graph 0.5,0.5 center\n"
                   "set yrange [0:1]\nplot [0:1] -1 notitle\n");
    fprintf(f, "unset multiplot\n");
    fclose(f);
    /* gnuplot warns about one-point ranges on short runs: keep its chatter
     * in a log next to the script. */
    char log[4200];
    snprintf(log, sizeof log, "%s.gp.log", base);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    char *argv[] = { "gnuplot", gp, NULL };
    int src = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (src != 0) {
        fprintf(stderr, "stockbench: cannot run gnuplot (apt-get install gnuplot-nox)\n");
        return -1;
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "stockbench: gnuplot failed on %s (see %s)\n", gp, log);
        return -1;
    }
    return 0;
}
