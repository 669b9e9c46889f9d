/* check_plan.h — the pure part of checking a reserve with the supplier
 * before it is answered (engine.h "Checks"; the flow is check.h's): which
 * createOrder.preview calls to make, what an answer means, how long the
 * check's hold lasts and how the refusal reads. No I/O, no loop.
 *
 * Untrusted input: the preview's answer comes from 1688 through
 * supplier_parse (typed, bounded); only its normalised result is read here.
 * A refusal is believed only when 1688 itself said no to the goods (a
 * business code); a gateway refusal (credentials, rate, ACL) or an answer
 * this client could not read (client.*) says nothing about the goods: the
 * check could not be made, never a yes.
 */
#ifndef STOCKD_CHECK_PLAN_H
#define STOCKD_CHECK_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockd/engine.h"
#include "stockd/supplier_parse.h"

/* The check's hold outlives the request's deadline by this much: it is the
 * backstop when neither the confirm nor the release can be committed. */
#define CHECK_HOLD_MARGIN_MS 5000
/* Of the request's deadline, this much (at most) is kept for committing
 * the confirm or release after the preview. */
#define CHECK_COMMIT_RESERVE_MS 250
/* The reason of an order whose check refused it (status failed). */
#define CHECK_REFUSED_PREFIX "check refused: "

/* One line of the order to check: its mapping and its supplier units. */
typedef struct check_item {
    int64_t offer_id;
    char spec_id[ENG_ID_MAX + 1];
    int64_t sku_id;               /* 0: not given */
    int64_t qty;                  /* the line's from_supplier, >= 1 */
    int32_t line_no;              /* the order's line it checks (the plan ignores it) */
} check_item;

/* One preview call: the lines of one offer (1688 previews one seller's
 * goods at a time; one offer is one seller). A spec named by several
 * lines (two SKUs mapped to one spec) is one cargo line of their sum. */
typedef struct check_call {
    int64_t offer_id;
    size_t n;
    supplier_cargo_line lines[SUPPLIER_LINES_MAX];
} check_call;

/* Groups items[0..n) (n <= ENG_LINES_MAX) into calls, offers in order of
 * first appearance; returns how many (<= n). */
size_t check_plan(const check_item *items, size_t n, check_call *out);

typedef enum check_verdict {
    CHECK_PASS = 0,               /* 1688 would take the order */
    CHECK_REFUSED,                /* 1688 said no to the goods: not retryable */
    CHECK_UNAVAILABLE,            /* no answer that says either: retryable */
} check_verdict;

check_verdict check_verdict_of(const supplier_result *r);

/* CHECK_REFUSED_PREFIX "alibaba.createOrder.preview: <code> <message>",
 * cut to ENG_REASON_MAX bytes on a UTF-8 boundary. */
void check_refusal(const supplier_result *r, char out[ENG_REASON_MAX + 1]);
/* Whether an order's reason says its check refused it. */
bool check_refused_reason(const char *reason);

/* The check's hold for a request of deadline_ms. */
int64_t check_hold_ms(int64_t deadline_ms);
/* How long the preview may take, elapsed_ms into a request of deadline_ms:
 * what is left minus the commit's reserve, at least 1. */
int64_t check_budget_ms(int64_t deadline_ms, int64_t elapsed_ms);

#endif
