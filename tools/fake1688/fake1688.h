/* fake1688.h — internals shared by the fake 1688 Open Platform's modules.
 *
 * One process, one libevent loop, one fk_state owned by main() and passed to
 * every callback: there is no global mutable state. Modules:
 *   main.c     options, the two HTTP servers (API, control), replies with
 *              latency / held (timeout) / garbage faults, signals, timers
 *   model.c    catalogue (products, SKUs with hidden real stock, lag and
 *              inflation), orders, out-order counters, the business rules
 *   api.c      the gateway (checks in the documented order) and the APIs
 *   control.c  the JSON control API
 *   push.c     message push to a configured URL
 */
#ifndef FAKE1688_H
#define FAKE1688_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <uthash.h>

#include "stockd/supplier_sign.h"

#define FK_ID_MAX 64               /* spec ids, out order ids, logins: bytes */
#define FK_TEXT_MAX 256            /* subjects, statuses, reasons: bytes */
#define FK_MAX_SKUS 64             /* SKUs per product */
#define FK_MAX_ATTRS_BYTES 4096    /* a SKU's attributes JSON */
#define FK_MAX_CARGO 50            /* cargo lines per order (1688: 50) */
#define FK_HIST 16                 /* real-stock history entries per SKU (lag) */
#define FK_BODY_MAX (256u * 1024u) /* API request bodies */
#define FK_CTL_BODY_MAX (16u << 20) /* control request bodies (catalogues) */
#define FK_NEXT_MAX 16             /* queued deterministic faults */
#define FK_PENDING_MAX 20000       /* delayed replies in flight */
#define FK_PUSH_QUEUE_MAX 10000    /* pushes waiting for delivery */
#define FK_PUSH_ATTEMPTS 3         /* deliveries tried per message */
#define FK_QTY_MAX 1000000000LL    /* stock and order quantities */
#define FK_PRICE_MAX 100000000000LL /* fen */

typedef enum fk_api {
    FK_API_PRODUCT_GET = 0,
    FK_API_PREVIEW,
    FK_API_CREATE,
    FK_API_BUYER_VIEW,
    FK_API_CANCEL,
    FK_API_FOLLOW,
    FK_API__N
} fk_api;

typedef enum fk_fault {
    FK_FAULT_NONE = 0,
    FK_FAULT_QOS,      /* gw.QosAppFrequencyLimit, HTTP 400, before the API runs */
    FK_FAULT_401,      /* token refused, HTTP 401, before the API runs */
    FK_FAULT_5XX,      /* gateway 5xx, before the API runs */
    FK_FAULT_RESET,    /* connection dropped without an answer, before the API runs */
    FK_FAULT_TIMEOUT,  /* the API runs, the answer is held timeout_hold_ms */
    FK_FAULT_GARBAGE,  /* the API runs, the answer is cut and not JSON */
    FK_FAULT__N
} fk_fault;

typedef struct fk_hist_entry {
    int64_t at_ms;
    int64_t real;
} fk_hist_entry;

typedef struct fk_sku {
    int64_t sku_id;
    char spec_id[FK_ID_MAX + 1];
    char cargo_number[FK_ID_MAX + 1];
    int64_t price_fen;
    int64_t real;           /* hidden: what can really be bought now */
    int64_t reported_fixed; /* >= 0: amountOnSale shown as is; -1: derived */
    double inflation;       /* > 0: overrides the global factor */
    json_t *attributes;     /* owned; array as productInfo shows it */
    fk_hist_entry hist[FK_HIST]; /* oldest first; what `real` was since when */
    unsigned hist_n;
} fk_sku;

typedef struct fk_product {
    int64_t offer_id;
    char status[FK_TEXT_MAX + 1];
    char subject[FK_TEXT_MAX + 1];
    char supplier[FK_ID_MAX + 1];  /* supplierLoginId: one seller per order */
    char member_id[FK_ID_MAX + 1];
    char force_error[16];          /* "" or a 500_00x every preview/create gets */
    int64_t min_order_quantity;
    int64_t batch_number;
    int64_t post_fee_fen;
    bool support_online_trade;
    bool consign;                  /* consignment relationship (flow saleproxy) */
    bool followed;
    int64_t last_update_ms;
    size_t n_skus;
    fk_sku *skus;                  /* owned, n_skus entries */
    UT_hash_handle hh;
} fk_product;

typedef struct fk_item {
    int64_t offer_id;
    int64_t sku_id;
    char spec_id[FK_ID_MAX + 1];
    int64_t qty;
    int64_t price_fen;
} fk_item;

typedef struct fk_order {
    uint64_t id;
    char out_order_id[FK_ID_MAX + 1];
    char status[32];
    char close_reason[32];
    char close_op[40];
    int64_t created_ms, modified_ms, pay_expire_ms;
    int64_t goods_fen, post_fee_fen;
    size_t n_items;
    fk_item *items;                /* owned */
    UT_hash_handle hh;             /* by id */
} fk_order;

/* Per outOrderId: how often create was called and how many orders it made
 * (exactly one when the client is right; more only with idempotent=false). */
typedef struct fk_outc {
    char out_order_id[FK_ID_MAX + 1];
    int64_t create_calls;
    int64_t orders;
    uint64_t first_order_id;
    UT_hash_handle hh;
} fk_outc;

typedef struct fk_faults {
    double rate[FK_FAULT__N];      /* probability per matching call */
    int http5xx_status;            /* 500..599 */
    int64_t timeout_hold_ms;
    uint32_t api_mask;             /* bit per fk_api; 0 = every API */
    struct { fk_fault kind; int64_t count; } next[FK_NEXT_MAX];
    size_t next_n;
    bool refuse;                   /* API listener closed */
    /* Rate draws per request instead of from one sequence: a hash of the
     * seed, the API, the request's params (its timestamp, signature and
     * order ids left out) and how many such requests came before. A client that
     * sends several calls at once then meets the same faults on the same
     * calls whatever order they arrive in. */
    bool keyed;
} fk_faults;

#define FK_KEYED_MAX 131072        /* distinct requests remembered; then the sequence */

typedef struct fk_config {
    char app_key[FK_ID_MAX + 1];
    char app_secret[FK_ID_MAX + 1];
    char access_token[FK_TEXT_MAX + 1];
    char push_url[FK_TEXT_MAX + 1];
    uint32_t acl_deny_mask;        /* bit per fk_api: gw.APIACLDecline */
    int64_t lag_ms;
    double inflation;
    int64_t latency_ms, latency_jitter_ms;
    int64_t cancel_min_age_ms;     /* CLOSE_ORDER_TOO_FAST below this */
    int64_t pay_timeout_s;
    int64_t qos_limit_per_s;       /* 0: no rate limit */
    bool idempotent;               /* fastCreateOrder dedupes on outOrderId */
    bool push_requires_follow;
    bool check_signature;
} fk_config;

typedef struct fk_counters {
    int64_t calls[FK_API__N];
    int64_t ok[FK_API__N];
    int64_t business_errors[FK_API__N];
    int64_t gateway_errors[FK_API__N];
    int64_t faults[FK_FAULT__N];
    json_t *by_code;               /* owned object: error code -> count */
    int64_t unknown_api;
    int64_t orders_created;
    int64_t push_queued, push_sent, push_ok, push_failed, push_dropped;
} fk_counters;

typedef struct fk_pending fk_pending;
typedef struct fk_push fk_push;

typedef struct fk_state {
    struct event_base *base;
    struct evhttp *api_http, *ctl_http;
    struct evhttp_bound_socket *api_sock;
    uint16_t api_port, ctl_port;
    fk_config cfg, cfg0;           /* current; as started (for reset) */
    fk_faults faults;
    fk_counters counters;
    fk_product *products;          /* uthash by offer_id */
    size_t n_products, max_products;
    fk_order *orders;              /* uthash by id */
    size_t n_orders, max_orders;
    fk_outc *outcs;                /* uthash by out_order_id */
    size_t n_outcs;
    uint64_t next_order_id;
    uint64_t next_msg_id;
    uint64_t next_request_id;
    uint64_t rng;                  /* xorshift64 state */
    uint64_t seed;                 /* the last /faults seed (keyed draws) */
    uint64_t *keyed_hash;          /* FK_KEYED_MAX slots, 0 = free; NULL until used */
    uint32_t *keyed_seen;          /* requests with that hash so far */
    size_t keyed_used;
    double qos_tokens;
    int64_t qos_at_ms;
    fk_pending *pending;           /* delayed replies, doubly linked */
    size_t n_pending;
    fk_push *push_head, *push_tail;
    size_t n_push;
    struct evhttp_connection *push_conn;
    char push_conn_host[FK_TEXT_MAX + 1];
    int push_conn_port;
    fk_push *push_sending;         /* the one delivery in flight, owned */
    struct event *push_timer, *sweep_timer;
    bool quiet;
    /* POST /clock: a simulator drives the model's time (lag, order ages,
     * the rate limit) so that a replayed run sees the same figures; reply
     * latency and push delays stay on the wall clock. */
    bool clock_manual;
    int64_t clock_ms;
} fk_state;

/* main.c */
int64_t fk_now_ms(void);
/* The model's time: the manual clock when one is set, else fk_now_ms(). */
int64_t fk_model_now_ms(const fk_state *st);
double fk_rand01(fk_state *st);
/* Forgets the requests the keyed draws counted (a new seed, a reset). */
void fk_keyed_clear(fk_state *st);
void fk_count_code(fk_state *st, const char *code);
/* Sends status + body (taking ownership of body) after the configured
 * latency; fault may be FK_FAULT_TIMEOUT or FK_FAULT_GARBAGE. */
void fk_reply(fk_state *st, struct evhttp_request *req, int status, json_t *body, fk_fault fault,
              bool api);
/* Reads the request body into a NUL-terminated heap copy; NULL if it
 * exceeds max bytes. */
char *fk_read_body(struct evhttp_request *req, size_t max, size_t *len);
int fk_api_listen(fk_state *st);
void fk_api_unlisten(fk_state *st);

/* model.c */
void fk_model_clear(fk_state *st);
int64_t fk_sku_reported(const fk_state *st, const fk_sku *s, int64_t now_ms);
int64_t fk_product_reported(const fk_state *st, const fk_product *p, int64_t now_ms);
void fk_sku_set_real(fk_state *st, fk_product *p, fk_sku *s, int64_t real, int64_t now_ms,
                     bool push);
fk_product *fk_product_find(fk_state *st, int64_t offer_id);
fk_sku *fk_sku_find(fk_product *p, const char *spec_id);
/* Parses a product from control JSON; returns NULL and sets err. */
fk_product *fk_product_from_json(json_t *j, int64_t now_ms, char *err, size_t errlen);
/* Inserts or replaces (by offer_id); -1 when the catalogue is full. */
int fk_product_put(fk_state *st, fk_product *p);
void fk_product_free(fk_product *p);
json_t *fk_product_info_json(const fk_state *st, const fk_product *p, int64_t now_ms);
json_t *fk_product_state_json(const fk_state *st, const fk_product *p, int64_t now_ms);
fk_order *fk_order_find(fk_state *st, uint64_t id);
fk_outc *fk_outc_get(fk_state *st, const char *out_order_id, bool create);
json_t *fk_order_json(const fk_state *st, const fk_order *o);
/* Closes an unpaid order and returns its stock. */
void fk_order_close(fk_state *st, fk_order *o, const char *reason, const char *op,
                    int64_t now_ms);
void fk_orders_sweep(fk_state *st, int64_t now_ms);

/* api.c */
void fk_api_handle(struct evhttp_request *req, void *arg);
const char *fk_api_name(fk_api a);
int fk_api_from_name(const char *name);

/* control.c */
void fk_control_handle(struct evhttp_request *req, void *arg);

/* push.c */
void fk_push_init(fk_state *st);
void fk_push_clear(fk_state *st);
/* Queues a message {msgId,gmtBorn,type,userInfo,data}; takes data. Sent
 * after delay_ms. Returns -1 (and counts a drop) if no URL or queue full. */
int fk_push_enqueue(fk_state *st, const char *type, const char *user_info, json_t *data,
                    int64_t delay_ms);
/* Queues an inventory message whose figures are read at delivery time. */
void fk_push_inventory(fk_state *st, int64_t offer_id, int64_t sku_id, int64_t delta,
                       int64_t delay_ms);

#endif
