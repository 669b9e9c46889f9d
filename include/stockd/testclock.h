/* testclock.h — the test.clock method (PROTOCOL.md §4): a simulator's hand
 * on the manual wall clock (clock.h) of a server started with
 * --test-clock yes. Part of the node (node.h): the test clock section of
 * struct server.
 *
 * test.clock {"now_ms"?: N} moves the clock forward to N in steps: each
 * supplier round that falls due on the way (supplier_sync.h,
 * supsync_due_ms) runs at its own due time, then the clock goes on to N;
 * after every step the expiry tick runs at once (holds that lapsed are
 * released before the next request), and the next step waits until the
 * node has settled: no engine op queued or in commit, no 1688 call
 * running, queued or backing off, no check under way, no purchase job
 * claimed or pending, twice in a row one poll apart (work handed on
 * through event_active has run). Without now_ms it only waits for that.
 * The answer: {"now_ms", "rounds" (supplier rounds run), "settled",
 * "next_due_ms" (the next round's due time; absent when none)}. settled
 * is false when the node did not settle within TESTCLOCK_SETTLE_MAX_MS of
 * wall time: the clock then stands where the steps got to (now_ms says).
 *
 * Adversary: any client that reaches the port (with the admin token when
 * one is set). The method can only move a test server's clock, never
 * backwards, and never further than a bound of work:
 *   - --test-clock off: invalid_state, nothing changed;
 *   - now_ms not an integer, or < 1: invalid (field now_ms);
 *   - now_ms earlier than the clock: invalid, nothing changed;
 *   - now_ms more than TESTCLOCK_STEP_MAX_MS ahead, or a step that would
 *     run more than TESTCLOCK_ROUNDS_MAX supplier rounds: invalid, nothing
 *     changed (move in smaller steps);
 *   - another test.clock still working: busy (retryable), nothing changed;
 *   - draining or shutting down: unavailable.
 * It never aborts on input: every case above is an answer.
 */
#ifndef STOCKD_TESTCLOCK_H
#define STOCKD_TESTCLOCK_H

#include "stockd/node.h"

#define TESTCLOCK_STEP_MAX_MS 86400000   /* one call moves the clock at most a day */
#define TESTCLOCK_ROUNDS_MAX 64          /* supplier rounds one call may run */
#define TESTCLOCK_SETTLE_MAX_MS 60000    /* wall time one call may wait in all */
#define TESTCLOCK_POLL_MS 1

/* r: an authorized test.clock request (pp: its params), not held yet;
 * answered now (a refusal) or later through req_finish. */
void testclock_request(server *s, conn *c, req *r, uint32_t msgid, const rpc_parsed *pp);
/* Before the node is freed: a call still working is answered
 * unavailable and its poll timer freed. */
void testclock_shutdown(server *s);

#endif
