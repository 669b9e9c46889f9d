/* engine_names.c — the names of the engine's codes, statuses, moves and
 * kinds, and the small pure helpers of engine.h that do not touch an
 * engine: trust, sellable, limits. */
#include "engine_internal.h"

/* ------------------------------------------------------------ names */

static const char *const err_codes[ENG_E_COUNT_] = {
    "ok", "invalid", "unknown_sku", "insufficient", "conflict", "not_found",
    "invalid_state", "expired", "busy", "deadline", "unavailable", "internal", "check_failed",
};
static const char *const status_names[ENG_ST_COUNT_] = {
    "none", "held", "confirmed", "purchased", "shipped", "released", "expired", "failed",
};
static const char *const mapping_names[ENG_MAP_COUNT_] = {"none", "manual", "ok", "broken"};
static const char *const move_names[ENG_MOVE_COUNT_] = {
    "reserve", "release", "expire", "ship", "adjust", "put", "sync", "fail", "settle",
};
static const char *const op_names[ENG_OP_COUNT_] = {
    "reserve", "confirm", "release", "ship", "expire", "sku.put", "stock.adjust",
    "supplier.report", "purchased", "purchase.failed", "supplier.put",
};
static const char *const job_state_names[ENG_JOB_COUNT_] = {"pending", "done", "failed",
                                                            "cancelled"};
static const char *const fail_kind_names[ENG_FAIL_COUNT_] = {"other", "stock", "link"};

const char *eng_err_code(eng_err err)
{
    assert(err >= 0 && err < ENG_E_COUNT_);
    return err_codes[err];
}

bool eng_err_retryable(eng_err err)
{
    return err == ENG_E_BUSY || err == ENG_E_UNAVAILABLE || err == ENG_E_DEADLINE;
}

const char *eng_status_name(eng_status st)
{
    assert(st >= 0 && st < ENG_ST_COUNT_);
    return status_names[st];
}

/* Index of s in names[from..n), or -1. */
static int name_index(const char *const *names, int from, int n, const char *s)
{
    for (int i = from; i < n; i++) {
        if (strcmp(s, names[i]) == 0)
            return i;
    }
    return -1;
}

bool eng_status_parse(const char *s, eng_status *out)
{
    int i = name_index(status_names, ENG_ST_HELD, ENG_ST_COUNT_, s);  /* "none" is not stored */
    if (i < 0)
        return false;
    *out = (eng_status)i;
    return true;
}

const char *eng_mapping_name(eng_mapping m)
{
    assert(m >= 0 && m < ENG_MAP_COUNT_);
    return mapping_names[m];
}

bool eng_mapping_parse(const char *s, eng_mapping *out)
{
    int i = name_index(mapping_names, 0, ENG_MAP_COUNT_, s);
    if (i < 0)
        return false;
    *out = (eng_mapping)i;
    return true;
}

const char *eng_move_name(eng_move m)
{
    assert(m >= 0 && m < ENG_MOVE_COUNT_);
    return move_names[m];
}

const char *eng_job_state_name(eng_job_state st)
{
    return (unsigned)st < ENG_JOB_COUNT_ ? job_state_names[st] : "?";
}

const char *eng_fail_kind_name(eng_fail_kind k)
{
    return (unsigned)k < ENG_FAIL_COUNT_ ? fail_kind_names[k] : "?";
}

bool eng_trust_valid(const eng_trust *t)
{
    /* Written so that NaN fails every comparison. */
    return t->ceiling >= 0.0 && t->ceiling <= 1.0 && t->trust >= 0.0 &&
           t->trust <= t->ceiling && t->event_trust >= 0.0 && t->event_trust <= t->ceiling;
}

double eng_trust_effective(const eng_trust *t)
{
    return t->event_mode ? t->event_trust : t->trust;
}

int64_t eng_sellable(int64_t reported, double factor, int64_t cap)
{
    assert(reported >= 0 && reported <= ENG_STOCK_MAX);
    if (!(factor > 0.0))
        return 0;
    /* Rounded down, and never above the figure: trust only ever discounts. */
    int64_t v = factor >= 1.0 ? reported : (int64_t)((double)reported * factor);
    if (v > reported)
        v = reported;
    if (cap >= 0 && v > cap)
        v = cap;
    return v < 0 ? 0 : v;
}

const char *eng_op_name(eng_op_kind k)
{
    assert(k >= 0 && k < ENG_OP_COUNT_);
    return op_names[k];
}

int64_t eng_available(const eng_counters *c)
{
    int64_t own = c->own_on_hand - c->own_reserved;
    int64_t sup = c->supplier_sellable - c->supplier_reserved;
    assert(own >= 0);
    return own + (sup > 0 ? sup : 0);
}

void eng_limits_default(eng_limits *l)
{
    l->queue_per_sku_max = 10000;
    l->queue_total_max = 200000;
    l->batch_ops_max = 4096;
    l->batch_sku_ops_max = 2048;
    l->expire_per_tick_max = 1000;
    l->upstream_lag_ms = 300000;
    l->trust_default = (eng_trust){.trust = 1.0, .ceiling = 1.0, .event_mode = false,
                                   .event_trust = 0.5};
    l->trust_cut = 0.5;
    l->trust_step = 0.05;
}
