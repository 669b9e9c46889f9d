/* supplier_sync.h — the periodic snapshot sync of supplier stock.
 *
 * Every sync_ms a round walks the SKUs in memory (in a cluster: the SKUs
 * this node owns and has loaded), takes those with a committed 1688
 * mapping, groups them by offer_id and calls alibaba.product.get once per
 * offer, at most `concurrency` calls at once and never two for one offer
 * (an offer whose call from the last round is still running is skipped).
 * Each answer becomes one engine_supplier_report_for() per SKU of the
 * offer, so the figure enters the SKU's FIFO and is ordered with its
 * reservations; the caller's kick() then pumps the engine.
 *
 * Figures: the amountOnSale of the SKU's spec (matched by spec_id, or by
 * sku_id when the mapping has one), with the spec's fingerprint
 * (supplier_sku.fingerprint: price and attributes) and synced_at = when the
 * call was first submitted, through engine_supplier_observe().
 * Validation (every answer): a spec missing from the answer ("spec
 * removed"; matched by spec_id), a product not published ("offline:
 * <status>") or not for online trade ("offline: no online trade"), an
 * unknown offer (a definitive business error saying the product does not
 * exist: "offer unknown"; gateway refusals never break a mapping) or a
 * fingerprint different from the mapping's (decided in the engine) mark
 * the mapping BROKEN; the engine writes the alert. Every validate_ms a
 * round runs even if sync_ms is longer.
 *
 * Incremental sync: supsync_poke_sku() asks for the SKU's offer at once
 * (after a committed order that took supplier units, after a failed
 * check, after a sku.put that gives the SKU a new link). Coalesced: one
 * call per offer in flight; pokes during a call make exactly one more call
 * after it; pokes wait for a free slot (concurrency) ahead of a snapshot
 * round's remaining offers.
 *
 * Message push (supsync_push): the body of a POST from 1688's message
 * service (form fields message=<json> and _aop_signature =
 * UPPER(HEX(HMAC-SHA1(app_secret, "message" + message)))), checked in
 * constant time. PRODUCT_PRODUCT_INVENTORY_CHANGE applies each entry's
 * skuOnSale at once to the SKUs mapped with that offerId and skuId
 * (entries for mappings without a sku_id poke the offer instead);
 * PRODUCT_RELATION_VIEW_PRODUCT_* (change, expire, repost) poke the offers
 * named, so the next answer validates the link. SKUs are found by offer
 * through an index rebuilt at every round; a push naming an offer missing
 * from it rebuilds it (at most once a second). A pushed figure older than
 * the SKU's committed synced_at (a retried delivery) is dropped; its
 * synced_at is the entry's bizTime (else gmtBorn), never later than now.
 * Likewise a product.get figure asked for before the committed synced_at
 * (a push landed while it was on its way) is dropped (broken still counts).
 * Replays: a message of a type used here whose gmtBorn is further than
 * --supplier-push-window-ms (default 5 min) from now, either way, is
 * refused 400 (push_stale); one without a msgId is refused 400; one whose
 * msgId was applied within twice the window is acknowledged 200 without
 * effect (push_duplicate: 1688 retries deliveries by design). At most
 * SUPSYNC_SEEN_MAX msgIds are kept; past that the oldest is forgotten
 * early (push_seen_evicted), so its replay would apply again: harmless for
 * figures, which the SKU's synced_at orders. Types not used are
 * acknowledged before any of this: they have no effect to replay.
 * A failed call changes nothing: the
 * figures stay as they were until a later round succeeds. Failures are
 * counted and logged at most once per round (never with secrets: the
 * client redacts them).
 */
#ifndef STOCKD_SUPPLIER_SYNC_H
#define STOCKD_SUPPLIER_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockd/config.h"
#include "stockd/engine.h"

struct event_base;
typedef struct supplier_sync supplier_sync;

#define SUPSYNC_OFFERS_MAX 200000      /* offers per round; more wait for the next */
#define SUPSYNC_SKUS_PER_OFFER_MAX 512 /* mapped SKUs per offer (SUPPLIER_SKUS_MAX) */
#define SUPSYNC_MSGID_MAX 64           /* bytes of a push msgId given as a string */
#define SUPSYNC_SEEN_MAX 65536         /* push msgIds remembered (replays) */

typedef struct supsync_stats {
    uint64_t syncs;          /* rounds started */
    uint64_t calls;          /* product.get calls accepted by the client */
    uint64_t ok;             /* calls answered ok */
    uint64_t failed;         /* calls that ended retryable or definitive, or refused */
    uint64_t skipped;        /* offers skipped: their last call still running, or over a cap */
    uint64_t reports;        /* figures queued into the engine */
    uint64_t pokes;          /* incremental syncs asked for */
    uint64_t broken;         /* "broken" observations queued (spec removed, offline, unknown) */
    uint64_t pushes;         /* push messages accepted */
    uint64_t push_refused;   /* push messages refused (signature, malformed, stale) */
    uint64_t push_stale;     /* refused: gmtBorn outside the push window */
    uint64_t push_duplicate; /* acknowledged without effect: msgId already applied */
    uint64_t push_seen_evicted; /* msgIds forgotten early: SUPSYNC_SEEN_MAX reached */
    int64_t last_sync_ms;    /* wall clock when the last round finished; 0 = none yet */
    int64_t last_duration_ms;
    uint32_t offers;         /* offers in the current or last round */
    uint32_t in_flight;      /* calls running now */
} supsync_stats;

/* Creates the sync on client (not owned; it must outlive the sync) and
 * arms the timer; the first round runs after sync_ms/10 (at most 1 s) so a
 * fresh start is synced early. kick(kick_arg) is called after figures
 * were queued. NULL with err on a bad config or out of memory. */
struct supplier_client;
supplier_sync *supsync_new(struct event_base *base, const stockd_config *cfg, engine *eng,
                           struct supplier_client *client, void (*kick)(void *arg),
                           void *kick_arg, char *err, size_t err_len);
/* Incremental sync of the offer the SKU is mapped to (committed mapping
 * OK); nothing when it has none. Never calls kick from inside. */
void supsync_poke_sku(supplier_sync *ss, const char *sku);
/* Message push ingest. Returns the HTTP status to answer: 200 applied (or
 * an ignored type, or a duplicate msgId), 400 malformed or stale (gmtBorn
 * outside the window) or without msgId, 401 bad signature, 413 over 64 KiB,
 * 503 stopped. msg (cap >= 128) gets a one-line reason. */
int supsync_push(supplier_sync *ss, const char *body, size_t len, char *msg, size_t msg_cap);
/* Stops the timer and the client (pending calls end, nothing more is
 * queued into the engine). NULL is fine. Not from inside a callback. */
void supsync_free(supplier_sync *ss);
/* Draining: no more rounds, and answers still on the way are dropped, so
 * the engine's queues can go quiet. Stats stay readable. */
void supsync_stop(supplier_sync *ss);
void supsync_stats_get(const supplier_sync *ss, supsync_stats *out);

/* Under --test-clock (config test_clock; testclock.h) the rounds run on the
 * manual wall clock instead of libevent timers: the first falls due
 * sync_ms/10 (at most 1 s) after start-up, then every sync_ms, and every
 * validate_ms a validation round as above, each period counted from its
 * own due time. supsync_due_ms: the earliest due time, INT64_MAX when off
 * or stopped. supsync_run_due: starts the round due at or before now_ms
 * (one round when both are due) and sets the next due times. */
int64_t supsync_due_ms(const supplier_sync *ss);
void supsync_run_due(supplier_sync *ss, int64_t now_ms);
/* How many rounds would fall due up to until_ms (at most: a sync and a
 * validation due together count twice). 0 when off or stopped. */
uint32_t supsync_rounds_due(const supplier_sync *ss, int64_t until_ms);
/* No product.get call running, and none waiting for a slot (pokes, the
 * round's remaining offers). NULL is idle. */
bool supsync_idle(const supplier_sync *ss);

#endif
