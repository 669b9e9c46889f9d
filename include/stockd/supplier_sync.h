/* supplier_sync.h — the periodic snapshot sync of supplier stock (issue 4
 * item 3, first slice).
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
 * sku_id when the mapping has one). A spec missing from the answer or an
 * offline product reports 0 for now; marking the mapping "broken" (and
 * alerting support) is a later slice. A failed call changes nothing: the
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

typedef struct supsync_stats {
    uint64_t syncs;          /* rounds started */
    uint64_t calls;          /* product.get calls accepted by the client */
    uint64_t ok;             /* calls answered ok */
    uint64_t failed;         /* calls that ended retryable or definitive, or refused */
    uint64_t skipped;        /* offers skipped: their last call still running, or over a cap */
    uint64_t reports;        /* figures queued into the engine */
    int64_t last_sync_ms;    /* wall clock when the last round finished; 0 = none yet */
    int64_t last_duration_ms;
    uint32_t offers;         /* offers in the current or last round */
    uint32_t in_flight;      /* calls running now */
} supsync_stats;

/* Creates the sync and its supplier client from cfg (supplier_url must be
 * set) and arms the timer; the first round runs after sync_ms/10 (at most
 * 1 s) so a fresh start is synced early. kick(kick_arg) is called after
 * figures were queued. NULL with err on a bad config or out of memory. */
supplier_sync *supsync_new(struct event_base *base, const stockd_config *cfg, engine *eng,
                           void (*kick)(void *arg), void *kick_arg, char *err, size_t err_len);
/* Stops the timer and the client (pending calls end, nothing more is
 * queued into the engine). NULL is fine. Not from inside a callback. */
void supsync_free(supplier_sync *ss);
/* Draining: no more rounds, and answers still on the way are dropped, so
 * the engine's queues can go quiet. Stats stay readable. */
void supsync_stop(supplier_sync *ss);
void supsync_stats_get(const supplier_sync *ss, supsync_stats *out);

#endif
