/* supplier.h — the 1688 Open Platform client on the libevent loop (curl
 * multi-socket API, driven by CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION events;
 * reference c-server-style-and-idioms.md).
 *
 * One supplier_client is one app (app key, secret, access token): the
 * concurrency limit and the token bucket below are per app key, as 1688's
 * gw.QosAppFrequencyLimit is. Every call is
 *   POST {base_url}/openapi/param2/1/{namespace}/{api}/{appKey}
 *   form: business params + access_token + _aop_timestamp + _aop_signature
 * signed with supplier_sign() (include/stockd/supplier_sign.h) afresh for
 * every attempt (the timestamp changes).
 *
 * Flow of a call: queued (FIFO, at most max_queued) → started when fewer
 * than max_in_flight calls are on the wire AND the token bucket (rate_per_s,
 * burst) has a token → answered → normalised by supplier_parse()
 * (include/stockd/supplier_parse.h: ok / retryable(kind) /
 * definitive(code, message)) → maybe retried → the callback, once.
 *
 * Retry rule (what "harmless to repeat" means here):
 *   - kinds QOS and CONNECT (the API did not run) are retried for every call;
 *     a QOS answer also empties the token bucket, so the whole app slows.
 *   - kinds HTTP5XX, TIMEOUT, IO, GARBAGE (the API may have run) are retried
 *     only for reads: product.get, createOrder.preview, trade.get.buyerView;
 *     and for fastCreateOrder only when the caller passes idempotent = true
 *     together with an outOrderId, i.e. it vouches that the gateway returns
 *     the existing order for a repeated outOrderId. trade.cancel is never
 *     repeated after such a failure (the second cancel would answer
 *     ORDER_STATUS_ERROR and hide the first one's success).
 *   - a call that ends retryable after such a failure has an UNKNOWN outcome:
 *     for fastCreateOrder the caller must look the order up
 *     (supplier_buyer_view by outOrderId) before creating it again; for
 *     cancel it must look the order's status up.
 *   - definitive results are never retried.
 * Backoff: attempt k (k >= 1 retries so far) waits a uniform random time in
 * [d/2, d], d = min(backoff_max_ms, backoff_base_ms << (k-1)); at most
 * max_attempts calls are sent in all. A waiting retry holds no concurrency
 * slot; it queues again (ahead of new calls) when its time comes.
 *
 * Secrets: the app secret and the access token travel only in the request
 * body; they are never logged and never put in an error string (results
 * pass through supplier_redact for both). The app key is not a secret (it
 * is in every URL).
 *
 * Callbacks run on the loop, never inside the call that submitted the work,
 * exactly once per accepted call. A callback may submit new calls; it must
 * not free the client. The reply is valid only during the callback.
 */
#ifndef STOCKD_SUPPLIER_H
#define STOCKD_SUPPLIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockd/supplier_parse.h"

struct event_base;
typedef struct supplier_client supplier_client;

#define SUPPLIER_URL_MAX 512
#define SUPPLIER_CRED_MAX 256            /* app key, secret, token bytes */
#define SUPPLIER_IN_FLIGHT_MAX 256
#define SUPPLIER_QUEUED_MAX 100000
#define SUPPLIER_REQUEST_MAX (64u << 10)  /* form body bytes */
#define SUPPLIER_ATTEMPTS_MAX 20

typedef struct supplier_client_config {
    const char *base_url;          /* "http://127.0.0.1:8080" or "https://gw.open.1688.com" */
    const char *app_key;
    const char *app_secret;
    const char *access_token;
    uint32_t connect_timeout_ms;   /* default 2000 */
    uint32_t timeout_ms;           /* whole call; default 10000 */
    size_t max_response_bytes;     /* default 1 MiB; more → client.ResponseTooLarge */
    uint32_t max_in_flight;        /* default 8, <= SUPPLIER_IN_FLIGHT_MAX */
    double rate_per_s;             /* token bucket refill; default 20 */
    uint32_t burst;                /* bucket size; default 10 */
    uint32_t max_attempts;         /* calls sent per request, >= 1; default 5 */
    uint32_t backoff_base_ms;      /* default 200 */
    uint32_t backoff_max_ms;       /* default 10000 */
    size_t max_queued;             /* default 10000 */
    uint64_t seed;                 /* jitter; 0 = from the clock */
} supplier_client_config;

/* Fills the defaults above (strings NULL). */
void supplier_client_config_defaults(supplier_client_config *cfg);

typedef void (*supplier_done_fn)(const supplier_reply *reply, void *arg);

typedef struct supplier_stats {
    uint64_t calls;            /* accepted requests */
    uint64_t attempts;         /* HTTP calls started */
    uint64_t retries;          /* attempts after the first */
    uint64_t ok, retryable, definitive;  /* final outcomes delivered */
    uint64_t by_kind[SUPPLIER_KIND__N];  /* per attempt: retryable kinds seen */
    uint64_t refused;          /* submissions refused (queue full, bad args) */
    uint32_t in_flight;        /* on the wire now */
    uint32_t max_in_flight_seen;
    uint32_t queued;           /* waiting for a slot or a token now */
    uint32_t backing_off;      /* waiting for a retry timer now */
} supplier_stats;

/* Copies cfg (strings too). Returns NULL with err on a bad config (missing
 * or oversized strings, base_url not http(s), limits out of range) or out
 * of memory. curl_global_init must have been called (supplier_global_init). */
supplier_client *supplier_client_new(struct event_base *base, const supplier_client_config *cfg,
                                     char *err, size_t err_len);
/* Stops everything: every call still pending (on the wire, queued or
 * backing off) gets its callback now with retryable(ABORTED) — an outcome
 * unknown for calls that were on the wire — then the client is freed.
 * Submissions from those callbacks are refused. Not from inside a callback. */
void supplier_client_free(supplier_client *c);

/* curl_global_init(CURL_GLOBAL_DEFAULT); once per process, before threads. */
int supplier_global_init(void);
void supplier_global_cleanup(void);

/* Submissions: 0 = accepted (fn is called exactly once, later);
 * -1 = refused (bad arguments, queue full): fn is not called. */
int supplier_product_get(supplier_client *c, int64_t offer_id, supplier_done_fn fn, void *arg);

/* lines: 1..SUPPLIER_LINES_MAX of (offer_id, spec_id, quantity);
 * address_json: the addressParam JSON text (e.g. {"addressId":1234});
 * flow: "general" etc., or NULL to let 1688 choose. */
int supplier_order_preview(supplier_client *c, const supplier_cargo_line *lines, size_t n,
                     const char *address_json, const char *flow, supplier_done_fn fn,
                     void *arg);

/* out_order_id may be NULL; idempotent = true (needs out_order_id) allows
 * repeating after an unknown outcome, see the retry rule above. */
int supplier_create_order(supplier_client *c, const supplier_cargo_line *lines, size_t n,
                          const char *address_json, const char *flow, const char *out_order_id,
                          bool idempotent, supplier_done_fn fn, void *arg);

/* By upstream order id, or (order_id NULL) by outOrderId. */
int supplier_buyer_view(supplier_client *c, const char *order_id, const char *out_order_id,
                        supplier_done_fn fn, void *arg);

/* reason: buyerCancel | sellerGoodsLack | other (NULL = buyerCancel). */
int supplier_cancel(supplier_client *c, const char *order_id, const char *reason,
                    supplier_done_fn fn, void *arg);

void supplier_client_stats(const supplier_client *c, supplier_stats *out);

#endif
