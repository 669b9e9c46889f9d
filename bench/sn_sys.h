/* sn_sys.h — what a system under test implements for the sales night, and
 * the context the runner hands it (sn_run.c). Everything here runs on the
 * runner's one thread, one event at a time, with blocking I/O. */
#ifndef STOCKBENCH_SN_SYS_H
#define STOCKBENCH_SN_SYS_H

#include "bench.h"
#include "sn.h"
#include "sn_fake.h"

typedef struct sn_opts {
    uint32_t minutes;
    double minute_ms;                /* wall ms per simulated minute */
    double orders_per_min;
    char systems[SN_SYSTEMS_MAX][16];
    unsigned n_systems;
    char fake_url[256], app_key[64], app_secret[128], token[256];
    double settle_s;                 /* stockd: wait for an order's purchase this long */
} sn_opts;

#define SN_REFUSED_CODES 8

typedef struct sn_ctx {
    const bench_opts *o;             /* --db, --redis, --target, --peer-db, --admin-token */
    const sn_opts *so;
    const sn_scenario *sc;
    sn_fake *fake;
    sn_acct *acct;
    char nonce[16];
    char name[16];                   /* the system */
    int64_t now_ms;                  /* simulated time of the event being played */
    int64_t wall0_unix_ms;           /* wall time (unix ms) of simulated 0 */
    hist hist;                 /* answer latency, us */
    uint64_t answers;
    bool *price_changed;             /* per offer: its price changed before now */
    int32_t *link_of_offer;          /* per offer: link change number, -1 */
    char note[512];                  /* why a system did not run or failed */
    /* Refusals other than right answers, by error code (the first
     * SN_REFUSED_CODES codes seen; the rest under "other"). */
    bool test_clock;                 /* the system ran on stockd's test clock */
    uint64_t clock_unsettled;        /* test.clock answers with settled false */
    char refused_code[SN_REFUSED_CODES][32];
    uint64_t refused_n[SN_REFUSED_CODES];
} sn_ctx;

typedef struct sn_system {
    const char *name;
    /* Creates the system's data for the night (the fake holds the
     * catalogue at simulated 0). 0; 1 = not available (ctx->note says
     * why, nothing to clean up); -1 with err. */
    int (*open)(sn_ctx *c, void **st, char *err, size_t len);
    /* The system's own timers due at or before c->now_ms (NULL: none). */
    int (*tick)(sn_ctx *c, void *st);
    /* One order: answer it, tell c->acct, then the work after the order. */
    int (*order)(sn_ctx *c, void *st, const sn_event *ev);
    /* After the last event: settle what is pending, collect fates and alerts. */
    int (*finish)(sn_ctx *c, void *st);
    void (*close)(sn_ctx *c, void *st);
} sn_system;

extern const sn_system sn_sys_naive, sn_sys_seed, sn_sys_stockd, sn_sys_stockd_checked;

/* Helpers for the systems (sn_run.c). */
uint64_t sn_mono_ns(void);
void sn_sku_name(const sn_ctx *c, uint32_t sku, char *buf, size_t len);
void sn_order_name(const sn_ctx *c, uint32_t order_no, char *buf, size_t len);
/* outOrderId of line k of an order: the order id, "<id>#<k>" for k >= 1 (as stockd). */
void sn_out_order_id(const sn_ctx *c, uint32_t order_no, uint32_t line, char *buf, size_t len);
/* The truth for a refused order: orderable supplier units per line. -1 on failure. */
int sn_truth_lines(sn_ctx *c, const sn_event *ev, int64_t *orderable);
/* Counts a refusal for errors under its code (sn_ctx refused_*). */
void sn_note_refused(sn_ctx *c, const char *code, const char *reason);
/* A 1688 failure code to the fate of the order it cancels. */
sn_fate sn_fate_of_code(const char *code);

/* sn_main entry (stockbench --mode salesnight). Exit status as stockbench's. */
int sn_main(const bench_opts *o, const sn_opts *so);
/* Prints the stockd flags that scale its supplier timers to --minute-ms. */
void sn_print_stockd_flags(const sn_opts *so);

#endif
