/* sn_fake.h — the sales night's link to fake1688 (docs/fake1688.md): its
 * control API (JSON) and signed calls to its 1688 gateway, both blocking
 * (libcurl easy handles kept alive; each call bounded by SN_FAKE_TIMEOUT_MS).
 * The simulator plays one event at a time, so blocking is what it wants. */
#ifndef STOCKBENCH_SN_FAKE_H
#define STOCKBENCH_SN_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sn.h"

#define SN_FAKE_TIMEOUT_MS 10000
#define SN_FAKE_REPLY_MAX (16u << 20)   /* a whole catalogue view */

typedef struct sn_fake {
    void *ctl, *api;                 /* CURL * */
    char ctl_url[256], api_url[256];
    char app_key[64], secret[128], token[256];
    char err[256];
    uint64_t api_calls;
} sn_fake;

/* The outcome of one gateway call, as a client sees it. */
typedef enum sn_call_rc {
    SN_CALL_OK = 0,
    SN_CALL_REFUSED,                 /* a business answer: code says which */
    SN_CALL_RETRY,                   /* gateway limit, 5xx, transport: worth another try */
} sn_call_rc;

/* One offer as alibaba.product.get shows it. */
typedef struct sn_product {
    bool found, published;
    uint32_t n;                      /* specs listed */
    char spec_id[8][72];
    int64_t reported[8];
    int64_t price_fen[8];
} sn_product;

/* Control URL http://IP:PORT (its /health names the API port). 0 or -1 + err. */
int sn_fake_open(sn_fake *f, const char *ctl_url, const char *app_key, const char *secret,
                 const char *token, char *err, size_t err_len);
void sn_fake_close(sn_fake *f);
/* A control request; body (taken, may be NULL) as JSON; *out (may be NULL)
 * gets the answer. 0, or -1 with f->err. */
int sn_fake_ctl(sn_fake *f, const char *method, const char *path, json_t *body, json_t **out);
/* alibaba.product.get. */
sn_call_rc sn_fake_product(sn_fake *f, int64_t offer_id, sn_product *out, char *code, size_t len);
/* alibaba.createOrder.preview (create false) or alibaba.trade.fastCreateOrder
 * (create true, outOrderId given) of one cargo line. */
sn_call_rc sn_fake_order(sn_fake *f, bool create, int64_t offer_id, const char *spec_id,
                         int64_t qty, const char *out_order_id, char *code, size_t len);
/* The truth: units of one spec that can really be ordered now (0 when the
 * spec or the offer is gone or offline). -1 on a control failure. */
int64_t sn_fake_orderable(sn_fake *f, int64_t offer_id, const char *spec_id);
/* Sets the manual clock. 0 or -1. */
int sn_fake_clock(sn_fake *f, int64_t now_ms);
/* outOrderIds with more than one upstream order, from /counters; -1 on failure. */
int64_t sn_fake_duplicates(sn_fake *f);

#endif
