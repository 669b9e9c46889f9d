/* check_plan.c — see check_plan.h. */
#include "stockd/check_plan.h"

#include <stdio.h>
#include <string.h>

size_t check_plan(const check_item *items, size_t n, check_call *out)
{
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) {
        const check_item *it = &items[i];
        check_call *c = NULL;
        for (size_t k = 0; k < nc && c == NULL; k++)
            if (out[k].offer_id == it->offer_id)
                c = &out[k];
        if (c == NULL) {
            c = &out[nc++];
            memset(c, 0, sizeof *c);
            c->offer_id = it->offer_id;
        }
        supplier_cargo_line *l = NULL;
        for (size_t k = 0; k < c->n && l == NULL; k++)
            if (strcmp(c->lines[k].spec_id, it->spec_id) == 0)
                l = &c->lines[k];
        if (l == NULL) {
            /* ENG_LINES_MAX <= SUPPLIER_LINES_MAX: a call always has room. */
            l = &c->lines[c->n++];
            l->offer_id = it->offer_id;
            snprintf(l->spec_id, sizeof l->spec_id, "%s", it->spec_id);
            l->sku_id = it->sku_id;
            l->amount_fen = l->unit_price_fen = -1;
        }
        l->quantity += it->qty;
    }
    return nc;
}
_Static_assert(ENG_LINES_MAX <= SUPPLIER_LINES_MAX, "an order's lines fit one preview");
_Static_assert(ENG_ID_MAX + 1 <= SUPPLIER_SPEC_MAX, "a spec id fits the cargo line");

/* Codes of the gateway (before the API ran) and of this client: they say
 * nothing about the goods. */
static bool not_about_goods(const char *code)
{
    return strncmp(code, "gw.", 3) == 0 || strncmp(code, "client.", 7) == 0 ||
           strncmp(code, "http.", 5) == 0 || strcmp(code, "401") == 0 || code[0] == '\0' ||
           strstr(code, "FrequencyLimit") != NULL || strncmp(code, "isp.", 4) == 0;
}

check_verdict check_verdict_of(const supplier_result *r)
{
    switch (r->outcome) {
    case SUPPLIER_OK:
        return CHECK_PASS;
    case SUPPLIER_DEFINITIVE:
        return not_about_goods(r->code) ? CHECK_UNAVAILABLE : CHECK_REFUSED;
    default:
        return CHECK_UNAVAILABLE;
    }
}

/* Cuts s to at most max bytes without splitting a UTF-8 sequence. */
static void cut_utf8(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    s[n] = '\0';
}

void check_refusal(const supplier_result *r, char out[ENG_REASON_MAX + 1])
{
    char buf[sizeof CHECK_REFUSED_PREFIX + 64 + SUPPLIER_CODE_MAX + SUPPLIER_MSG_MAX];
    snprintf(buf, sizeof buf, "%s%s: %s%s%s", CHECK_REFUSED_PREFIX,
             supplier_api_name(SUPPLIER_API_PREVIEW), r->code, r->message[0] ? " " : "",
             r->message);
    cut_utf8(buf, ENG_REASON_MAX);
    memcpy(out, buf, strlen(buf) + 1);
}

bool check_refused_reason(const char *reason)
{
    return strncmp(reason, CHECK_REFUSED_PREFIX, sizeof CHECK_REFUSED_PREFIX - 1) == 0;
}

int64_t check_hold_ms(int64_t deadline_ms)
{
    int64_t h = deadline_ms + CHECK_HOLD_MARGIN_MS;
    return h < ENG_HOLD_MS_MIN ? ENG_HOLD_MS_MIN : h > ENG_HOLD_MS_MAX ? ENG_HOLD_MS_MAX : h;
}

int64_t check_budget_ms(int64_t deadline_ms, int64_t elapsed_ms)
{
    int64_t left = deadline_ms - (elapsed_ms > 0 ? elapsed_ms : 0);
    int64_t reserve = left / 4 < CHECK_COMMIT_RESERVE_MS ? left / 4 : CHECK_COMMIT_RESERVE_MS;
    int64_t b = left - reserve;
    return b < 1 ? 1 : b;
}
