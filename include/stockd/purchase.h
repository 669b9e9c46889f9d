/* purchase.h — the purchase worker: the consumer of the transactional
 * outbox. It turns the engine's pending purchases
 * (engine.h "purchase jobs") into 1688 orders, on the loop, through the
 * shared supplier_client (one token bucket per app key for sync and
 * purchases alike).
 *
 * One job is one LINE of an order with supplier units (eng_purchase
 * line_no; a single-SKU order is line 0). Its upstream key, outOrderId, is
 * order_id for line 0 and "<order_id>#<line_no>" otherwise (at most
 * ENG_KEY_MAX bytes; one the supplier client cannot take, longer than
 * SUPPLIER_OUT_ID_MAX - 1, fails the line: OTHER, "outOrderId too long").
 * Jobs are claimed with engine_purchase_claim(), at most
 * cfg->supplier_purchase_concurrency at once:
 *   0. the line must still be CONFIRMED in memory (engine_part_get for a
 *      part, else engine_order_lines), before every check and create; a
 *      line that left it is dropped.
 *   1. lookup (only when the job is `recovered` or an earlier create of
 *      this process ended with an unknown outcome): trade.get.buyerView by
 *      outOrderId. Found and not closed -> PURCHASED with its id
 *      (idOfStr). Found but closed (status cancel / terminated, e.g. unpaid
 *      past its pay timeout) -> FAILED (OTHER, "upstream order closed:
 *      <status>"): a create with the same outOrderId would only return the
 *      closed order. ORDER_NOT_EXIST -> go on with 2. Retryable, or any
 *      other refusal (it says nothing about the order) -> back off, ask again.
 *   2. the SKU's committed mapping must be OK, else FAILED (LINK,
 *      "mapping broken").
 *   3. check: createOrder.preview of (offer_id, spec_id, qty) with the
 *      configured address. Skipped when the reserve's own check of this
 *      line (purchase_note_checked) passed within PURCHASE_CHECK_FRESH_MS
 *      for the same offer, spec, sku_id and quantity: the supplier answered
 *      that very question moments ago, and the create (4) refuses as
 *      definitively as a preview would if it changed since.
 *      Definitive failure -> FAILED: 500_004 (and
 *      *BOOKED_BEYOND_THE_MAX_QUANTITY) -> STOCK; 500_001 / 500_003 /
 *      *PRODUCT_TRADE_STAT* / a message saying the product does not exist or
 *      is offline -> LINK; other codes -> OTHER. reason = "<api>: <code>
 *      <message>" cut to ENG_REASON_MAX on a UTF-8 boundary.
 *      Retryable -> back off and start again at 1.
 *   3b. a line of an order of several lines waits (polling every 20 ms,
 *      at most 10 s) until every other line of the order this engine will
 *      buy (held or confirmed with supplier units of a mapped SKU) has
 *      passed its check in this worker, or left: a check that fails then
 *      fails the order, this line included, in one commit (engine.h
 *      "purchase jobs": the whole order, or the parts held here), and this
 *      line is dropped at step 0 instead of bought. Lines on other owners
 *      are failed by the cascade (cart.h); one of them already sent is
 *      bought for a failed order (alert purchase_after_release).
 *   4. create: trade.fastCreateOrder with the line's outOrderId,
 *      idempotent = false (the client never repeats it after an unknown
 *      outcome; this worker looks up first, step 1). ok -> PURCHASED with
 *      the upstream orderId; definitive -> FAILED as in 3; retryable ->
 *      unknown outcome: back off, then start at 1 with the lookup.
 *   5. the outcome op (ENG_OP_PURCHASED / ENG_OP_PURCHASE_FAILED with
 *      on_done; order_id, sku, line_no and part_lines of the claimed line)
 *      goes into the order's SKU FIFO; when it is committed the
 *      job is over. ENG_E_UNAVAILABLE (store trouble) -> back off and
 *      submit the same outcome again; ENG_E_NOT_FOUND / INVALID_STATE (the
 *      order left memory or changed) -> the job is dropped (not unclaimed:
 *      claiming it again would loop).
 * The mapping used in 2..4 is read again (engine_sku_supplier) at every
 * pass, so a sku.put that re-mapped the SKU while a job waited is honoured.
 * Backoff per job: 200 ms doubling to cfg->supplier_purchase_backoff_max_ms,
 * with jitter in [d/2, d]. A job waiting in backoff holds its claim and a
 * concurrency slot. After a failed check the SKU's offer is synced at once
 * (hooks.poke_sku).
 *
 * Jobs survive restarts because the orders do: a CONFIRMED line with
 * supplier units is a pending purchase when loaded (recovered = true),
 * and the lookup in step 1 keeps a restarted worker from buying twice.
 *
 * Callbacks (hooks) are called from the loop, never inside purchase_*()
 * calls made by the owner.
 */
#ifndef STOCKD_PURCHASE_H
#define STOCKD_PURCHASE_H

#include <stdbool.h>
#include <stdint.h>

#include "stockd/config.h"
#include "stockd/engine.h"
#include "stockd/supplier.h"

struct event_base;
typedef struct purchase purchase;

typedef struct purchase_hooks {
    void (*kick)(void *arg);                       /* outcome ops were submitted: pump */
    void (*poke_sku)(const char *sku, void *arg);  /* a check failed: sync this SKU now */
    void *arg;
} purchase_hooks;

typedef struct purchase_stats {
    uint64_t claimed;        /* jobs taken */
    uint64_t lookups;        /* buyerView calls */
    uint64_t previews;       /* createOrder.preview calls */
    uint64_t creates;        /* fastCreateOrder calls */
    uint64_t purchased;      /* outcome PURCHASED committed */
    uint64_t failed;         /* outcome FAILED committed */
    uint64_t retries;        /* backoffs after retryable answers or store trouble */
    uint64_t dropped;        /* jobs whose order left memory or changed */
    uint64_t checks_reused;  /* previews skipped: the reserve's check had just passed */
    uint32_t active;         /* jobs claimed now */
} purchase_stats;

/* client is not owned and must outlive the worker. NULL with err on out
 * of memory. The worker claims jobs when woken (purchase_wake) and on its
 * own timer (every second, for jobs loaded at startup). */
purchase *purchase_new(struct event_base *base, const stockd_config *cfg, engine *eng,
                       supplier_client *client, const purchase_hooks *hooks,
                       char *err, size_t err_len);
/* New pending purchases may exist (a batch committed some): claim soon. */
void purchase_wake(purchase *p);
/* Draining: claims no more jobs; jobs in backoff are unclaimed at once;
 * calls on the wire end normally: an answer that decides the order still
 * submits its outcome op (pump the engine until drained), any other answer
 * unclaims the job (a restart looks it up first). */
void purchase_stop(purchase *p);
/* Frees the worker; claimed jobs are unclaimed. Supplier calls still on the
 * wire should have ended (free the client first: it answers them now with
 * retryable(ABORTED), which unclaims them). The engine must still exist:
 * outcome ops still queued in it are cancelled (engine_cancel); one already
 * in a batch keeps its memory until its on_done, which then only frees it.
 * So: purchase_stop, drain, supplier_client_free, purchase_free,
 * engine_free. NULL is fine. */
void purchase_free(purchase *p);
void purchase_stats_get(const purchase *p, purchase_stats *out);

/* A reserve check passed (check.h) for line line_no of order_id: qty of
 * (offer_id, spec_id, sku_id), at at_ms (clock_wall_ms). Its purchase may
 * skip step 3 for PURCHASE_CHECK_FRESH_MS. Remembered in a fixed table of
 * PURCHASE_CHECKED_SLOTS (a cache: a later line hashing to the same slot
 * replaces it, which costs that purchase one preview). NULL p is fine. */
#define PURCHASE_CHECK_FRESH_MS 30000
#define PURCHASE_CHECKED_SLOTS 1024
void purchase_note_checked(purchase *p, const char *order_id, int32_t line_no, int64_t offer_id,
                           const char *spec_id, int64_t sku_id, int32_t qty, int64_t at_ms);

#endif
