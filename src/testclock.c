/* testclock.c — the test.clock method: steps of the manual wall clock,
 * each followed by a wait for the node to settle (see testclock.h). */
#include "stockd/testclock.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "stockd/check.h"
#include "stockd/clock.h"
#include "stockd/core.h"
#include "stockd/log.h"
#include "stockd/rpc.h"

/* The one call being worked (at most one: a second is busy). */
struct testclock {
    req *r;                    /* NULL: none */
    int64_t target_ms;         /* where the clock goes */
    int64_t give_up_mono_ms;   /* TESTCLOCK_SETTLE_MAX_MS after the call came */
    uint32_t rounds;           /* supplier rounds run by this call */
    uint32_t quiet;            /* polls in a row that found the node settled */
    struct event *poll;
};

/* Nothing the last step started is still under way. */
static bool settled(server *s)
{
    eng_stats es;
    engine_stats_get(s->eng, &es);
    if (es.queued != 0 || es.batches_in_flight != 0 || check_active(s) != 0)
        return false;
    if (!supsync_idle(s->supsync))
        return false;
    if (s->supc != NULL) {
        supplier_stats cs;
        supplier_client_stats(s->supc, &cs);
        if (cs.in_flight != 0 || cs.queued != 0 || cs.backing_off != 0)
            return false;
    }
    if (s->purch != NULL) {
        purchase_stats ps;
        purchase_stats_get(s->purch, &ps);
        if (ps.active != 0 || es.purchases_pending != 0)
            return false;
    }
    return true;
}

static void answer(server *s, bool ok_settled)
{
    struct testclock *tc = s->tclock;
    req *r = tc->r;
    tc->r = NULL;
    int64_t due = supsync_due_ms(s->supsync);
    msgpack_packer *pk = &s->pk;
    rpc_count_at(s, M_TEST_CLOCK, ENG_OK, r->start_ns);
    codec_pack_response_ok_head(pk, r->msgid);
    msgpack_pack_map(pk, 3 + (due != INT64_MAX));
    codec_pack_kv_int(pk, "now_ms", clock_wall_ms());
    codec_pack_kv_int(pk, "rounds", tc->rounds);
    codec_pack_kv_bool(pk, "settled", ok_settled);
    if (due != INT64_MAX)
        codec_pack_kv_int(pk, "next_due_ms", due);
    if (!ok_settled) {
        char now[24];
        snprintf(now, sizeof now, "%" PRId64, clock_wall_ms());
        LOG_W("test.clock: the node did not settle in time", "now_ms", now);
    }
    req_finish(s, r);
}

static void answer_down(server *s)
{
    struct testclock *tc = s->tclock;
    req *r = tc->r;
    tc->r = NULL;
    rpc_count_at(s, M_TEST_CLOCK, ENG_E_UNAVAILABLE, r->start_ns);
    codec_pack_response_err_head(&s->pk, r->msgid, "unavailable", "stockd is shutting down",
                                 false, 0);
    codec_pack_response_err_tail(&s->pk);
    req_finish(s, r);
}

static void poll_again(struct testclock *tc)
{
    struct timeval tv = {0, TESTCLOCK_POLL_MS * 1000};
    evtimer_add(tc->poll, &tv);
}

/* One step: the clock to at, what falls due there, then settle again. */
static void step_to(server *s, int64_t at)
{
    bool moved = clock_manual_advance(at);
    assert(moved);
    (void)moved;
    if (supsync_due_ms(s->supsync) <= at) {
        supsync_run_due(s->supsync, at);
        s->tclock->rounds++;
    }
    core_tick_cb(-1, 0, s);  /* holds lapsed at `at` go before the next request */
    s->tclock->quiet = 0;
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *s = arg;
    struct testclock *tc = s->tclock;
    if (tc->r == NULL)
        return;
    if (s->draining) {
        answer_down(s);
        return;
    }
    if (!settled(s)) {
        tc->quiet = 0;
        if (clock_mono_ms() >= tc->give_up_mono_ms)
            answer(s, false);
        else
            poll_again(tc);
        return;
    }
    if (++tc->quiet < 2) {
        poll_again(tc);
        return;
    }
    int64_t due = supsync_due_ms(s->supsync);
    if (due <= tc->target_ms) {
        /* A round overdue since start-up (due < now) runs now. */
        step_to(s, due > clock_wall_ms() ? due : clock_wall_ms());
        poll_again(tc);
    } else if (clock_wall_ms() < tc->target_ms) {
        step_to(s, tc->target_ms);
        poll_again(tc);
    } else {
        answer(s, true);
    }
}

static void refuse(server *s, conn *c, req *r, uint32_t msgid, const char *code,
                   const char *msg, bool retryable, int res, const char *field)
{
    rpc_count(s, M_TEST_CLOCK, res);
    rpc_reply_error(s, c, msgid, code, msg, retryable, field ? "field" : NULL, field);
    req_put(s, r);
}

void testclock_request(server *s, conn *c, req *r, uint32_t msgid, const rpc_parsed *pp)
{
    char msg[160];
    if (!s->cfg->test_clock || !clock_manual_on()) {
        refuse(s, c, r, msgid, "invalid_state",
               "the test clock is off (stockd --test-clock yes, for tests only)", false,
               ENG_E_INVALID_STATE, NULL);
        return;
    }
    if (s->draining) {
        refuse(s, c, r, msgid, "unavailable", "stockd is shutting down", false,
               ENG_E_UNAVAILABLE, NULL);
        return;
    }
    if (s->tclock == NULL) {
        struct testclock *tc = calloc(1, sizeof(*tc));
        if (tc != NULL && (tc->poll = evtimer_new(s->base, poll_cb, s)) == NULL) {
            free(tc);
            tc = NULL;
        }
        if (tc == NULL) {
            refuse(s, c, r, msgid, "internal", "out of memory", true, ENG_E_INTERNAL, NULL);
            return;
        }
        s->tclock = tc;
    }
    struct testclock *tc = s->tclock;
    if (tc->r != NULL) {
        refuse(s, c, r, msgid, "busy", "another test.clock is still working", true, ENG_E_BUSY,
               NULL);
        return;
    }
    int64_t now = clock_wall_ms();
    int64_t target = pp->has_now_ms ? pp->now_ms : now;
    if (target < now) {
        snprintf(msg, sizeof msg, "now_ms: %" PRId64 " is earlier than the clock (%" PRId64
                 "); it only moves forward", target, now);
        refuse(s, c, r, msgid, "invalid", msg, false, ENG_E_INVALID, "now_ms");
        return;
    }
    if (target - now > TESTCLOCK_STEP_MAX_MS) {
        snprintf(msg, sizeof msg, "now_ms: %" PRId64 " ms ahead; at most %d in one call",
                 target - now, TESTCLOCK_STEP_MAX_MS);
        refuse(s, c, r, msgid, "invalid", msg, false, ENG_E_INVALID, "now_ms");
        return;
    }
    uint32_t rounds = supsync_rounds_due(s->supsync, target);
    if (rounds > TESTCLOCK_ROUNDS_MAX) {
        snprintf(msg, sizeof msg, "now_ms: the step would run %" PRIu32 " supplier rounds; at "
                 "most %d in one call (move in smaller steps)", rounds, TESTCLOCK_ROUNDS_MAX);
        refuse(s, c, r, msgid, "invalid", msg, false, ENG_E_INVALID, "now_ms");
        return;
    }
    r->c = c;
    r->msgid = msgid;
    r->m = M_TEST_CLOCK;
    r->start_ns = s->frame_start_ns;
    tc->r = r;
    tc->target_ms = target;
    tc->give_up_mono_ms = clock_mono_ms() + TESTCLOCK_SETTLE_MAX_MS;
    tc->rounds = 0;
    tc->quiet = 0;
    req_hold(r, c);
    event_active(tc->poll, EV_TIMEOUT, 0);
}

void testclock_shutdown(server *s)
{
    struct testclock *tc = s->tclock;
    if (tc == NULL)
        return;
    if (tc->r != NULL)
        answer_down(s);
    event_free(tc->poll);
    free(tc);
    s->tclock = NULL;
}
