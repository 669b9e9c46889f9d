/* check.h — answering a reserve only once the supplier's order check
 * (1688 createOrder.preview) accepted its supplier units (engine.h
 * "Checks"; the pure rules are check_plan.h's). Part of the node
 * (node.h): the checks section of struct server.
 *
 * The flow of a reserve that the engine decided held for its check
 * (op->checking), all on the loop:
 *   1. the request stays waiting (held on its connection); its lines with
 *      supplier units to check are grouped into preview calls, one per
 *      offer, sent at once through the shared supplier client;
 *   2. a timer bounds them by the request's deadline (check_budget_ms);
 *   3. every call passed -> confirm with checked (the client's hold_ms
 *      kept); a business refusal -> release as_failed with the refusal as
 *      reason (the order ends failed); anything else (timeout, rate limit,
 *      5xx, a gateway refusal, an answer that cannot be read, the budget
 *      spent) -> release with erase (the order never was);
 *   4. once that op is committed the client is answered: the record,
 *      check_failed, or unavailable with reason check_unavailable. A
 *      follow-up that cannot be committed answers unavailable with
 *      outcome unknown and leaves the hold to lapse.
 * Calls that answer after the decision are ignored (the context lives
 * until the last one is back).
 *
 * A retried reserve of an order under check (same order_id: the engine
 * answers its held record with the pending reason) waits for the check
 * and gets the same answer (check_wait); when no check of it runs here
 * (this process restarted meanwhile) it is answered unavailable with
 * outcome unknown: the hold lapses (expired) within its margin. A retry
 * of an order whose check refused it answers check_failed again
 * (rpc.c, from the record's reason: also after a restart).
 */
#ifndef STOCKD_CHECK_H
#define STOCKD_CHECK_H

#include "stockd/node.h"

/* r: a reserve the engine just decided held for its check (op->checking),
 * waiting on its connection; answered later through req_finish. */
void check_start(server *s, req *r);
/* r: a retried reserve whose record is held with ENG_CHECK_PENDING. */
void check_wait(server *s, req *r);
/* Checks under way (the drain waits for them). */
uint32_t check_active(const server *s);
/* Before the supplier client is freed: every waiting request is answered
 * unavailable; answers arriving later only free their context. */
void check_shutdown(server *s);

#endif
