/* sn_acct.c — what each answer of a system meant, against the truth.
 * Pure: the runner reports answers, purchases, cancellations and alerts;
 * this module keeps the own-stock truth and the counts (see sn.h). */
#include "sn.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

const char *sn_fate_name(sn_fate f)
{
    static const char *const names[SN_FATE__N] = {"none", "own_short", "supplier_short",
                                                  "link", "api"};
    assert(f < SN_FATE__N);
    return names[f];
}

int sn_acct_init(sn_acct *a, const sn_scenario *sc)
{
    memset(a, 0, sizeof *a);
    a->sc = sc;
    size_t orders = sc->n_orders ? sc->n_orders : 1;
    a->rec = calloc(orders, sizeof *a->rec);
    a->order_ev = calloc(orders, sizeof *a->order_ev);
    a->own_promised = calloc(sc->n_skus, sizeof *a->own_promised);
    a->sup_pending = calloc(sc->n_skus, sizeof *a->sup_pending);
    a->wanted_refused = calloc(sc->n_skus, sizeof *a->wanted_refused);
    a->minutes = calloc(sc->p.minutes + 1u, sizeof *a->minutes);
    if (!a->rec || !a->order_ev || !a->own_promised || !a->sup_pending || !a->wanted_refused ||
        !a->minutes) {
        sn_acct_free(a);
        return -1;
    }
    for (uint32_t i = 0; i < sc->n_events; i++)
        if (sc->events[i].kind == SN_EV_ORDER)
            a->order_ev[sc->events[i].no] = i;
    for (uint32_t k = 0; k < SN_LINKS_MAX; k++)
        a->link_detect_ms[k] = -1;
    return 0;
}

void sn_acct_free(sn_acct *a)
{
    free(a->rec);
    free(a->order_ev);
    free(a->own_promised);
    free(a->sup_pending);
    free(a->wanted_refused);
    free(a->minutes);
    memset(a, 0, sizeof *a);
}

static sn_minute *minute_of(sn_acct *a, int64_t t_ms)
{
    int64_t m = t_ms / SN_MINUTE_MS;
    if (m < 0)
        m = 0;
    if (m > (int64_t)a->sc->p.minutes)
        m = a->sc->p.minutes;
    return &a->minutes[m];
}

int64_t sn_acct_own_free(const sn_acct *a, uint32_t sku)
{
    assert(sku < a->sc->n_skus);
    return a->sc->skus[sku].own - a->own_promised[sku];
}

void sn_acct_yes(sn_acct *a, const sn_event *ev, const int32_t *from_own, const int32_t *from_sup)
{
    assert(ev->kind == SN_EV_ORDER && ev->no < a->sc->n_orders);
    sn_answer_rec *r = &a->rec[ev->no];
    assert(!r->answered);
    r->answered = r->yes = true;
    for (uint32_t i = 0; i < ev->n_lines; i++) {
        assert(from_own[i] >= 0 && from_sup[i] >= 0 && from_own[i] + from_sup[i] == ev->line_qty[i]);
        r->from_own[i] = from_own[i];
        r->from_sup[i] = from_sup[i];
        a->own_promised[ev->line_sku[i]] += from_own[i];
        a->sup_pending[ev->line_sku[i]] += from_sup[i];
    }
    sn_minute *m = minute_of(a, ev->t_ms);
    m->orders++;
    m->yes++;
}

void sn_acct_no(sn_acct *a, const sn_event *ev, const int64_t *orderable, bool error)
{
    assert(ev->kind == SN_EV_ORDER && ev->no < a->sc->n_orders);
    sn_answer_rec *r = &a->rec[ev->no];
    assert(!r->answered);
    r->answered = true;
    bool covered = true;
    for (uint32_t i = 0; i < ev->n_lines; i++) {
        uint32_t sku = ev->line_sku[i];
        int64_t sup = orderable[i] - a->sup_pending[sku];
        int64_t can = sn_acct_own_free(a, sku) + (sup > 0 ? sup : 0);
        covered = covered && can >= ev->line_qty[i];
        a->wanted_refused[sku] += ev->line_qty[i];
    }
    r->covered = covered;
    if (error)
        a->errors++;
    sn_minute *m = minute_of(a, ev->t_ms);
    m->orders++;
    m->no++;
    m->undersold += covered;
}

void sn_acct_bought(sn_acct *a, uint32_t order_no, uint32_t line, bool changed_price)
{
    assert(order_no < a->sc->n_orders && line < SN_LINES_MAX);
    sn_answer_rec *r = &a->rec[order_no];
    const sn_event *ev = &a->sc->events[a->order_ev[order_no]];
    if (!r->yes || (r->bought & (1u << line)) || line >= ev->n_lines)
        return;
    r->bought |= (uint8_t)(1u << line);
    /* The fake's real figure now shows them: no longer pending. */
    if (r->fate == SN_FATE_NONE)
        a->sup_pending[ev->line_sku[line]] -= r->from_sup[line];
    else
        a->bought_for_cancelled += (uint64_t)r->from_sup[line];
    a->bought_changed_price += changed_price;
}

void sn_acct_cancel(sn_acct *a, uint32_t order_no, sn_fate why)
{
    assert(order_no < a->sc->n_orders && why != SN_FATE_NONE && why < SN_FATE__N);
    sn_answer_rec *r = &a->rec[order_no];
    if (!r->yes || r->fate != SN_FATE_NONE)
        return;
    const sn_event *ev = &a->sc->events[a->order_ev[order_no]];
    r->fate = (uint8_t)why;
    for (uint32_t i = 0; i < ev->n_lines; i++) {
        a->own_promised[ev->line_sku[i]] -= r->from_own[i];
        if (r->bought & (1u << i))
            a->bought_for_cancelled += (uint64_t)r->from_sup[i];
        else
            a->sup_pending[ev->line_sku[i]] -= r->from_sup[i];
    }
    minute_of(a, ev->t_ms)->oversold++;
}

void sn_acct_alert(sn_acct *a, uint64_t n)
{
    a->alerts += n;
}

void sn_acct_link_detected(sn_acct *a, uint32_t link_no, int64_t t_ms)
{
    if (link_no < SN_LINKS_MAX && a->link_detect_ms[link_no] < 0)
        a->link_detect_ms[link_no] = t_ms;
}

void sn_acct_duplicates(sn_acct *a, uint64_t n)
{
    a->duplicates += n;
}

void sn_acct_end(sn_acct *a, const int64_t *orderable_end)
{
    a->unsold_wanted = 0;
    for (uint32_t s = 0; s < a->sc->n_skus; s++) {
        if (a->wanted_refused[s] == 0)
            continue;
        int64_t sup = orderable_end[s] - a->sup_pending[s];
        int64_t left = sn_acct_own_free(a, s) + (sup > 0 ? sup : 0);
        if (left > 0)
            a->unsold_wanted += (uint64_t)(left < a->wanted_refused[s] ? left : a->wanted_refused[s]);
    }
}

void sn_acct_summary(const sn_acct *a, sn_summary *s)
{
    const sn_scenario *sc = a->sc;
    memset(s, 0, sizeof *s);
    for (uint32_t i = 0; i < sc->n_orders; i++) {
        const sn_answer_rec *r = &a->rec[i];
        if (!r->answered)
            continue;
        s->orders++;
        if (r->yes) {
            s->yes++;
            s->by_fate[r->fate]++;
            s->oversold += r->fate != SN_FATE_NONE;
        } else {
            s->no++;
            s->undersold += r->covered;
        }
    }
    s->errors = a->errors;
    s->unsold_wanted = a->unsold_wanted;
    s->alerts = a->alerts;
    s->bought_changed_price = a->bought_changed_price;
    s->bought_for_cancelled = a->bought_for_cancelled;
    s->duplicates = a->duplicates;
    double sum = 0;
    for (uint32_t i = 0; i < sc->n_events; i++) {
        const sn_event *e = &sc->events[i];
        if (e->kind != SN_EV_LINK)
            continue;
        s->links++;
        int64_t d = e->no < SN_LINKS_MAX ? a->link_detect_ms[e->no] : -1;
        if (d < 0)
            continue;
        double min = (double)(d > e->t_ms ? d - e->t_ms : 0) / SN_MINUTE_MS;
        s->links_detected++;
        sum += min;
        if (min > s->detect_max_min)
            s->detect_max_min = min;
    }
    s->detect_mean_min = s->links_detected ? sum / s->links_detected : 0;
    s->oversell_pm = s->yes ? 1000.0 * (double)s->oversold / (double)s->yes : 0;
    s->undersell_pm = s->no ? 1000.0 * (double)s->undersold / (double)s->no : 0;
    s->alerts_pm = s->orders ? 1000.0 * (double)s->alerts / (double)s->orders : 0;
}
