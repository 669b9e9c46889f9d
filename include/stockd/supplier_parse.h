/* supplier_parse.h — pure parsing and normalising of 1688 Open Platform
 * answers (no I/O, no libevent, no curl): one place that turns whatever came
 * back (a transport failure, a gateway error, a business error in one of the
 * per-API envelopes, a garbage body, a good answer) into one typed result,
 * and the typed readers of the five APIs stockd calls. Split from
 * supplier.c so it can be unit-tested on recorded bodies and fuzzed.
 *
 * The one result (reference 1688-open-api.md):
 *   ok                      the API ran and answered a success we could read
 *   retryable(kind)         nothing definite is known; a repeat may succeed.
 *                           kind says whether the API may have run:
 *                             QOS, CONNECT          it did not (refused before
 *                                                   the API: safe to repeat)
 *                             HTTP5XX, TIMEOUT, IO, it may have (outcome
 *                             GARBAGE, ABORTED      unknown: repeat only calls
 *                                                   that are harmless twice)
 *   definitive(code, msg)   the supplier (or this client) said no, and saying
 *                           it again gives the same answer: gateway refusals
 *                           (gw.SignatureInvalid, 401, gw.APIACLDecline,
 *                           gw.ParamMissing, ...), business errors (500_00x,
 *                           ORDER_NOT_EXIST, a product that does not exist,
 *                           ...), and local ones ("client.*": answer too large,
 *                           answer of an unexpected shape, request too big).
 *
 * Classification rules, first match wins:
 *   1. transport failed: connect → CONNECT; timeout → TIMEOUT; other I/O →
 *      IO; answer over the size cap → definitive client.ResponseTooLarge;
 *      local failure → definitive client.Local.
 *   2. a JSON object with "error_code" (the gateway envelope), any status:
 *      a Qos*FrequencyLimit code → QOS; ISPInvokeError/ISPInvokeTimeout or
 *      HTTP ≥ 500 → HTTP5XX; else definitive(error_code, error_message).
 *   3. HTTP ≥ 500 or 408 → HTTP5XX; 429 → QOS; other non-2xx →
 *      definitive("http.<status>").
 *   4. a 2xx body that is not a JSON object → GARBAGE.
 *   5. the API's business envelope: "success" false (bool or "false"),
 *      a non-empty "errorCode", a "code" that is not empty/"200"/"0"/0,
 *      a non-empty "errMsg"/"errorMsg", or (create) result.success false →
 *      definitive(code, message) — code from errorCode, code, the first
 *      failedOfferList[].errorCode, else "biz.Error".
 *   6. the typed reader: a shape it cannot read → definitive client.BadShape.
 * Messages are cut to SUPPLIER_MSG_MAX bytes on a UTF-8 boundary.
 */
#ifndef STOCKD_SUPPLIER_PARSE_H
#define STOCKD_SUPPLIER_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SUPPLIER_CODE_MAX 64        /* error code bytes, with NUL */
#define SUPPLIER_MSG_MAX 256        /* error message bytes, with NUL */
#define SUPPLIER_SPEC_MAX 65        /* specId bytes (32 hex on 1688), with NUL */
#define SUPPLIER_ORDER_ID_MAX 32    /* upstream order id digits, with NUL */
#define SUPPLIER_OUT_ID_MAX 65      /* outOrderId bytes, with NUL */
#define SUPPLIER_STATUS_MAX 32      /* status words, with NUL */
#define SUPPLIER_ATTRS_MAX 256      /* readable attribute text, with NUL */
#define SUPPLIER_SKUS_MAX 512       /* skuInfos per product */
#define SUPPLIER_LINES_MAX 50       /* cargo lines per order (1688's bound) */
#define SUPPLIER_ORDERS_MAX 8       /* orders one create may split into */
#define SUPPLIER_AMOUNT_MAX 1000000000LL   /* quantities and fen amounts */

typedef enum supplier_api {
    SUPPLIER_API_PRODUCT_GET = 0, /**< com.alibaba.product:alibaba.product.get */
    SUPPLIER_API_PREVIEW,         /**< com.alibaba.trade:alibaba.createOrder.preview */
    SUPPLIER_API_CREATE,          /**< com.alibaba.trade:alibaba.trade.fastCreateOrder */
    SUPPLIER_API_BUYER_VIEW,      /**< com.alibaba.trade:alibaba.trade.get.buyerView */
    SUPPLIER_API_CANCEL,          /**< com.alibaba.trade:alibaba.trade.cancel */
    SUPPLIER_API__N
} supplier_api;

typedef enum supplier_outcome {
    SUPPLIER_OK = 0,
    SUPPLIER_RETRYABLE,
    SUPPLIER_DEFINITIVE,
} supplier_outcome;

typedef enum supplier_kind {
    SUPPLIER_KIND_NONE = 0, /**< ok and definitive results */
    SUPPLIER_KIND_QOS,      /**< gw.QosAppFrequencyLimit (or 429): not run */
    SUPPLIER_KIND_CONNECT,  /**< no connection made: not sent */
    SUPPLIER_KIND_HTTP5XX,  /**< 5xx, 408, ISPInvoke*: may have run */
    SUPPLIER_KIND_TIMEOUT,  /**< no answer in time: may have run */
    SUPPLIER_KIND_IO,       /**< connection lost mid-way: may have run */
    SUPPLIER_KIND_GARBAGE,  /**< 2xx but not JSON: may have run */
    SUPPLIER_KIND_ABORTED,  /**< the client was freed first: may have run */
    SUPPLIER_KIND__N
} supplier_kind;

/* What the transport did, as the client saw it (supplier.c maps curl's
 * codes onto this). */
typedef enum supplier_xfer {
    SUPPLIER_XFER_OK = 0,     /**< an HTTP answer arrived in full */
    SUPPLIER_XFER_CONNECT,    /**< resolve/connect failed */
    SUPPLIER_XFER_TIMEOUT,
    SUPPLIER_XFER_IO,         /**< send/receive failed, connection reset */
    SUPPLIER_XFER_TOO_LARGE,  /**< the answer passed the size cap */
    SUPPLIER_XFER_LOCAL,      /**< out of memory, bad option: not the supplier */
    SUPPLIER_XFER_ABORTED,    /**< the client was freed with this call pending */
} supplier_xfer;

/* One attempt's raw answer. body need not be NUL-terminated. */
typedef struct supplier_response {
    supplier_xfer xfer;
    int http_status;        /* 0 when no answer */
    const char *body;
    size_t body_len;
    const char *xfer_error; /* transport's own words (may be NULL) */
} supplier_response;

typedef struct supplier_result {
    supplier_outcome outcome;
    supplier_kind kind;           /* retryable only */
    int http_status;
    char code[SUPPLIER_CODE_MAX]; /* definitive and retryable gateway codes */
    char message[SUPPLIER_MSG_MAX];
} supplier_result;

/* alibaba.product.get */
typedef struct supplier_sku {
    int64_t sku_id;
    char spec_id[SUPPLIER_SPEC_MAX];
    int64_t amount_on_sale;       /* reported orderable quantity, >= 0 */
    int64_t price_fen;            /* price in fen (0.01 yuan), -1 if absent */
    char attrs[SUPPLIER_ATTRS_MAX]; /* "name:value;name:value", cut to fit */
    uint64_t fingerprint;         /* FNV-1a over spec, price and every
                                     attribute (id, value id, value), in
                                     order, uncut: changes with the link */
} supplier_sku;

typedef struct supplier_product {
    int64_t offer_id;
    char status[SUPPLIER_STATUS_MAX];
    bool published;               /* status == "published": orderable */
    bool support_online_trade;    /* saleInfo; true when absent */
    int64_t amount_on_sale;       /* saleInfo total, -1 if absent */
    int64_t min_order_quantity;   /* 1 when absent */
    int64_t batch_number;         /* 1 when absent */
    int inv_reduce_type;          /* 1 on order, 2 on payment, 0 absent */
    size_t n_skus;
    supplier_sku *skus;           /* n_skus entries, owned (reply clear) */
} supplier_product;

/* createOrder.preview; several entries (split orders) are summed. */
typedef struct supplier_cargo_line {
    int64_t offer_id;
    char spec_id[SUPPLIER_SPEC_MAX];
    int64_t sku_id;               /* 0 if absent */
    int64_t quantity;             /* request lines only */
    int64_t amount_fen;           /* preview lines: line amount, -1 absent */
    int64_t unit_price_fen;       /* preview lines: finalUnitPrice, -1 absent */
} supplier_cargo_line;

typedef struct supplier_preview {
    int64_t sum_payment_fen;
    int64_t sum_carriage_fen;
    int64_t sum_payment_no_carriage_fen;
    char flow_flag[SUPPLIER_STATUS_MAX];
    size_t n_entries;
    size_t n_lines;
    supplier_cargo_line lines[SUPPLIER_LINES_MAX];
} supplier_preview;

/* fastCreateOrder: one orderId, or several from orderList. */
typedef struct supplier_created {
    size_t n_orders;              /* >= 1 */
    char order_ids[SUPPLIER_ORDERS_MAX][SUPPLIER_ORDER_ID_MAX];
    int64_t total_success_amount_fen; /* -1 if absent */
    int64_t post_fee_fen;         /* -1 if absent */
} supplier_created;

/* trade.get.buyerView */
typedef struct supplier_order_item {
    int64_t offer_id;
    int64_t sku_id;
    char spec_id[SUPPLIER_SPEC_MAX];
    int64_t quantity;
} supplier_order_item;

typedef struct supplier_order_view {
    char order_id[SUPPLIER_ORDER_ID_MAX];     /* idOfStr, else id */
    char status[SUPPLIER_STATUS_MAX];         /* waitbuyerpay, cancel, ... */
    char out_order_id[SUPPLIER_OUT_ID_MAX];
    char close_reason[SUPPLIER_STATUS_MAX];
    char close_operate_type[SUPPLIER_STATUS_MAX + 16];
    int64_t total_amount_fen;                 /* -1 if absent */
    int64_t shipping_fee_fen;                 /* -1 if absent */
    size_t n_items;
    supplier_order_item items[SUPPLIER_LINES_MAX];
} supplier_order_view;

/* One finished call. The typed part (u) is filled only when res.outcome is
 * SUPPLIER_OK, in the member of res's api; cancel has none. */
typedef struct supplier_reply {
    supplier_api api;
    supplier_result res;
    unsigned attempts;            /* set by the client: calls sent */
    union {
        supplier_product product;
        supplier_preview preview;
        supplier_created created;
        supplier_order_view view;
    } u;
} supplier_reply;

const char *supplier_api_namespace(supplier_api api);
const char *supplier_api_name(supplier_api api);
const char *supplier_outcome_name(supplier_outcome o);
const char *supplier_kind_name(supplier_kind k);
/* True for kinds where the API may have run (see the table above). */
bool supplier_kind_maybe_executed(supplier_kind k);

/* Normalises one attempt's answer into out->res and, when it is ok, reads
 * the typed part of out->api. out->api must be set; out->res and out->u are
 * overwritten (call supplier_reply_clear before reusing an ok reply).
 * Never fails: every input gives one of the three outcomes. Allocates only
 * for an ok product (skus), bounded by SUPPLIER_SKUS_MAX. */
void supplier_parse(const supplier_response *rsp, supplier_reply *out);

/* Frees what supplier_parse allocated; the reply may be parsed into again. */
void supplier_reply_clear(supplier_reply *r);

/* Sets a result (messages cut on a UTF-8 boundary); for the client's own
 * results. code/message may be NULL. */
void supplier_result_set(supplier_result *r, supplier_outcome o, supplier_kind k,
                         const char *code, const char *message);

/* Replaces every occurrence of secret (when >= 4 bytes) in the
 * NUL-terminated s with "***", in place (s never grows). So neither the app
 * secret nor the access token can leave the client inside an error string,
 * even when a gateway echoes them. */
void supplier_redact(char *s, const char *secret);

/* Money: yuan text ("8.50", "8.5", "8") into fen; false when not a plain
 * non-negative decimal with at most 2 decimals below SUPPLIER_AMOUNT_MAX. */
bool supplier_yuan_text_to_fen(const char *s, int64_t *fen);

#endif
