/* sn.h — stockbench --mode salesnight: a seeded, replayable, time-compressed
 * sales night played against several systems, each judged against the
 * ground truth of what could really be sold (see bench/README.md,
 * "Sales night", and bench/SALESNIGHT.md).
 *
 * Modules:
 *   sn_scenario.c  the night (pure): SKUs, 1688 offers, and one sorted list
 *                  of events (orders, other shops draining stock, restocks,
 *                  link changes, inflation and the API peak), all from a seed
 *   sn_acct.c      the accounting (pure): what each answer meant against the
 *                  truth (oversell, undersell, support load) and the figures
 *   sn_fake.c      fake1688: its control API and signed calls to its API
 *   sn_peer.c      the recipes, played by the simulator itself: naive, seed
 *   sn_stockd.c    stockd over msgpack-rpc, with its own supplier sync
 *   sn_run.c       the runner: one system at a time, the same events, the
 *                  report, the JSON and the plot
 *
 * Time: the simulator owns it. Every event has a simulated time in ms; the
 * runner plays events one after another in that order, paced so that one
 * simulated minute takes --minute-ms of wall time, and sets fake1688's
 * manual clock to each event's time, so the supplier's lagging figures
 * depend on simulated time only. The recipes' timers (snapshots, mapping
 * validation, cache expiry) run on simulated time too. stockd's own timers
 * run on its wall clock (flags scaled by --minute-ms): that is the part of
 * a run that is not replayed exactly.
 */
#ifndef STOCKBENCH_SN_H
#define STOCKBENCH_SN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_SKUS_MAX 100000u
#define SN_MINUTES_MAX 1440u
#define SN_EVENTS_MAX 2000000u
#define SN_LINES_MAX 3               /* a cart has 1..3 lines of distinct SKUs */
#define SN_SPECS_PER_OFFER_MAX 3
#define SN_SUPPLIERS_MAX 64
#define SN_LINKS_MAX 64              /* link changes in one night */
#define SN_SYSTEMS_MAX 4
#define SN_MINUTE_MS 60000LL         /* one simulated minute, in simulated ms */

typedef enum sn_kind { SN_KIND_OWN = 0, SN_KIND_SUP, SN_KIND_BOTH } sn_kind;

typedef struct sn_sku {
    uint8_t kind;                    /* sn_kind */
    int32_t own;                     /* own warehouse units at the start */
    int32_t offer;                   /* index into offers, -1 = no supplier */
    uint8_t spec;                    /* index of its spec within the offer */
} sn_sku;

typedef struct sn_offer {
    int64_t offer_id;
    uint32_t supplier;               /* index: supplier login "sn-sup-<k>" */
    uint32_t n_specs;
    uint32_t sku[SN_SPECS_PER_OFFER_MAX];      /* the SKU each spec is mapped to */
    int32_t real0[SN_SPECS_PER_OFFER_MAX];     /* real quantity at the start */
    int64_t price_fen[SN_SPECS_PER_OFFER_MAX];
} sn_offer;

typedef enum sn_ev_kind {
    SN_EV_ORDER = 0,                 /* a customer order (cart) arrives */
    SN_EV_STOCK,                     /* another shop buys (delta < 0) or a restock (> 0) */
    SN_EV_LINK,                      /* the offer changes: see sn_link_action */
    SN_EV_INFLATE,                   /* a supplier starts (a=1) / stops (a=0) inflating */
    SN_EV_PEAK,                      /* the API slows and rate-limits (a=1) / recovers */
} sn_ev_kind;

typedef enum sn_link_action {
    SN_LINK_SPEC_REMOVED = 0,        /* the spec is gone: 500_003 */
    SN_LINK_PRICE,                   /* the price changed: still orderable, mapping stale */
    SN_LINK_OFFLINE,                 /* the whole offer is offline: 500_001 */
    SN_LINK__N
} sn_link_action;

typedef struct sn_event {
    int64_t t_ms;                    /* simulated time */
    uint32_t gen;                    /* generation order: breaks ties in t_ms */
    uint8_t kind;                    /* sn_ev_kind */
    uint8_t n_lines;                 /* ORDER: 1..SN_LINES_MAX */
    uint8_t action;                  /* LINK: sn_link_action; INFLATE/PEAK: on (1) / off (0) */
    uint32_t no;                     /* ORDER: order number 0..; LINK: link number 0.. */
    uint32_t a;                      /* STOCK: sku; LINK: offer; INFLATE: supplier */
    uint32_t spec;                   /* STOCK, LINK spec_removed/price: the spec index */
    int32_t delta;                   /* STOCK: units */
    uint32_t line_sku[SN_LINES_MAX]; /* ORDER: distinct, ascending */
    int32_t line_qty[SN_LINES_MAX];
} sn_event;

typedef struct sn_params {
    uint64_t seed;
    uint32_t skus;                   /* 10 .. SN_SKUS_MAX */
    uint32_t minutes;                /* simulated minutes, 1 .. SN_MINUTES_MAX */
    double orders_per_min;           /* base arrival rate */
    double zipf_s;                   /* demand skew */
    uint32_t flash_at_min;           /* flash sale start (simulated minute) */
    uint32_t flash_min;              /* its length */
    double flash_mult;               /* arrival rate during it */
    uint32_t flash_skus;             /* SKUs on promotion */
    double inflation;                /* factor of the inflating suppliers */
    int64_t lag_ms;                  /* reported figures trail the real ones (simulated) */
    uint32_t links;                  /* link changes during the night */
} sn_params;

typedef struct sn_scenario {
    sn_params p;
    uint32_t n_skus;
    sn_sku *skus;                    /* n_skus */
    uint32_t n_offers;
    sn_offer *offers;
    uint32_t n_suppliers;
    bool inflating[SN_SUPPLIERS_MAX];
    uint32_t n_events;
    sn_event *events;                /* sorted by t_ms (ties: generation order) */
    uint32_t n_orders;
    uint32_t n_links;
    int64_t end_ms;                  /* minutes x SN_MINUTE_MS */
    int64_t peak_from_ms, peak_to_ms;
} sn_scenario;

/* Defaults for a night of `minutes` over `skus` SKUs (flash sale a third of
 * the way in, 10 % of the night long at most 10 minutes). */
void sn_params_default(sn_params *p, uint32_t skus, uint32_t minutes, uint64_t seed);
/* Builds the night. 0, or -1 with err (bad params, too many events). */
int sn_scenario_build(const sn_params *p, sn_scenario *sc, char *err, size_t err_len);
void sn_scenario_free(sn_scenario *sc);
/* A digest of the whole night (SKUs, offers, events): same seed, same digest. */
uint64_t sn_scenario_digest(const sn_scenario *sc);
/* The spec id and 1688 sku id of spec k of an offer. */
void sn_spec_id(const sn_offer *o, uint32_t k, char *buf, size_t len);
int64_t sn_sku_id(const sn_offer *o, uint32_t k);
uint64_t sn_rand(uint64_t *state);

/* ---- accounting (sn_acct.c) ----
 *
 * Per system, per order: the answer (yes with its split, or no), and what
 * became of a yes (still good, or cancelled and why). The truth the
 * accounting compares with is passed in by the runner at the moment of the
 * answer: for a no, how many supplier units could really be ordered for
 * each line right then (0 when the link is gone). Own stock truth is kept
 * here: what is on hand minus what this system promised and did not give
 * back. Supplier units promised and not yet bought (pending) are not
 * orderable for the next customer either. */

typedef enum sn_fate {
    SN_FATE_NONE = 0,                /* a no, or a yes still in force */
    SN_FATE_OWN_SHORT,               /* cancelled: own stock did not cover it */
    SN_FATE_SUP_SHORT,               /* cancelled: check or purchase found too little stock */
    SN_FATE_LINK,                    /* cancelled: the mapping broke (spec, offline, price) */
    SN_FATE_API,                     /* cancelled: 1688 kept refusing (limits, errors) */
    SN_FATE__N
} sn_fate;

typedef struct sn_answer_rec {
    bool answered, yes;
    uint8_t fate;                    /* sn_fate */
    bool covered;                    /* a no that own + orderable supplier stock covered */
    int32_t from_own[SN_LINES_MAX];
    int32_t from_sup[SN_LINES_MAX];
    uint8_t bought;                  /* bit per line: its supplier units were bought upstream */
} sn_answer_rec;

typedef struct sn_minute {
    uint32_t orders, yes, no, oversold, undersold;
} sn_minute;

typedef struct sn_summary {
    uint64_t orders, yes, no, errors; /* errors: refusals other than "insufficient" (in no) */
    uint64_t oversold, by_fate[SN_FATE__N];
    uint64_t undersold;
    uint64_t unsold_wanted;          /* units left at the end that refused orders wanted */
    uint64_t alerts, bought_changed_price, bought_for_cancelled;
    uint64_t duplicates;             /* outOrderIds with more than one upstream order */
    uint32_t links, links_detected;
    double detect_mean_min, detect_max_min;   /* link change -> detection, simulated min */
    double oversell_pm, undersell_pm, alerts_pm;
} sn_summary;

typedef struct sn_acct {
    const sn_scenario *sc;
    sn_answer_rec *rec;              /* n_orders */
    uint32_t *order_ev;              /* order number -> index in sc->events */
    int64_t *own_promised;           /* per SKU */
    int64_t *sup_pending;            /* per SKU: promised, neither bought nor given back */
    int64_t *wanted_refused;         /* per SKU: units the refused orders asked for */
    int64_t link_detect_ms[SN_LINKS_MAX]; /* -1: not (yet) detected */
    sn_minute *minutes;              /* per simulated minute */
    uint64_t alerts, errors, bought_changed_price, bought_for_cancelled, duplicates;
    uint64_t unsold_wanted;
} sn_acct;

int sn_acct_init(sn_acct *a, const sn_scenario *sc);
void sn_acct_free(sn_acct *a);
/* A yes: from_own/from_sup per line (own + sup = the line's qty). */
void sn_acct_yes(sn_acct *a, const sn_event *ev, const int32_t *from_own, const int32_t *from_sup);
/* A no. orderable[i] = supplier units of line i that could really be
 * ordered at that moment. error: refused for something else than stock
 * (busy, deadline, an API the recipe needed was down). */
void sn_acct_no(sn_acct *a, const sn_event *ev, const int64_t *orderable, bool error);
/* Line i's supplier units were bought upstream. changed_price: at a price
 * that is no longer the mapped one. */
void sn_acct_bought(sn_acct *a, uint32_t order_no, uint32_t line, bool changed_price);
/* A yes is cancelled (its stock comes back). Idempotent per order. */
void sn_acct_cancel(sn_acct *a, uint32_t order_no, sn_fate why);
void sn_acct_alert(sn_acct *a, uint64_t n);
/* The system noticed link change `link_no` at simulated time t (first one counts). */
void sn_acct_link_detected(sn_acct *a, uint32_t link_no, int64_t t_ms);
void sn_acct_duplicates(sn_acct *a, uint64_t n);
/* End of the night: orderable_end[sku] = supplier units really orderable
 * now (0 for unmapped or broken). Counts the units refused orders wanted
 * that are still there. */
void sn_acct_end(sn_acct *a, const int64_t *orderable_end);
/* Own units this system can still promise for a SKU. */
int64_t sn_acct_own_free(const sn_acct *a, uint32_t sku);
void sn_acct_summary(const sn_acct *a, sn_summary *s);
const char *sn_fate_name(sn_fate f);

#endif
