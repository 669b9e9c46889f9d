/* fuzz_supplier_parse.c — libFuzzer target over the 1688 answer side: the
 * one normaliser and every typed reader of supplier_parse.h on arbitrary
 * bodies, HTTP statuses and transport outcomes. The body comes from a
 * remote server (or anything between us and it), so no byte string may
 * crash the parser, leak, or leave a result that breaks its contract.
 *
 * Input: byte 0 picks the transport outcome (low 3 bits; 7 means an answer
 * arrived, like 0), bytes 1-2 are the HTTP status (big-endian int16, so
 * 0, negatives and every real status are reachable), the rest is the body.
 * Each input is parsed once per API (all five readers see every body),
 * cleared, and parsed again to check the reply can be reused and that the
 * result does not depend on what the reply held before. Non-answers use
 * the body as the transport's error text. The two money/secret helpers get
 * the body as text too.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stockd/supplier_parse.h"

#define FUZZ_HEADER 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* NUL-terminated, within cap, no control bytes: what logs receive. */
static void check_text(const char *s, size_t cap)
{
    const char *end = memchr(s, '\0', cap);
    assert(end != NULL);
    for (const char *p = s; p < end; p++)
        assert((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static void check_ids(const char *s, size_t cap, bool non_empty)
{
    assert(memchr(s, '\0', cap) != NULL);
    assert(!non_empty || s[0] != '\0');
}

static void check_amount(int64_t v, bool may_be_absent)
{
    assert((may_be_absent && v == -1) || (v >= 0 && v <= SUPPLIER_AMOUNT_MAX));
}

static void check_product(const supplier_product *p)
{
    check_ids(p->status, sizeof p->status, false);
    assert(p->n_skus <= SUPPLIER_SKUS_MAX && (p->n_skus == 0) == (p->skus == NULL));
    check_amount(p->amount_on_sale, true);
    assert(p->min_order_quantity >= 1 && p->batch_number >= 1);
    assert(p->inv_reduce_type >= 0 && p->inv_reduce_type <= 2);
    for (size_t i = 0; i < p->n_skus; i++) {
        const supplier_sku *s = &p->skus[i];
        check_ids(s->spec_id, sizeof s->spec_id, true);
        check_amount(s->amount_on_sale, false);
        check_amount(s->price_fen, true);
        check_text(s->attrs, sizeof s->attrs);
    }
}

static void check_preview(const supplier_preview *p)
{
    assert(p->n_entries >= 1 && p->n_lines <= SUPPLIER_LINES_MAX);
    assert(p->sum_payment_fen >= 0 && p->sum_carriage_fen >= 0 &&
           p->sum_payment_no_carriage_fen >= 0);
    check_ids(p->flow_flag, sizeof p->flow_flag, false);
    for (size_t i = 0; i < p->n_lines; i++) {
        check_ids(p->lines[i].spec_id, sizeof p->lines[i].spec_id, false);
        check_amount(p->lines[i].amount_fen, true);
        check_amount(p->lines[i].unit_price_fen, true);
    }
}

static void check_created(const supplier_created *c)
{
    assert(c->n_orders >= 1 && c->n_orders <= SUPPLIER_ORDERS_MAX);
    for (size_t i = 0; i < c->n_orders; i++)
        check_ids(c->order_ids[i], sizeof c->order_ids[i], true);
    check_amount(c->total_success_amount_fen, true);
    check_amount(c->post_fee_fen, true);
}

static void check_view(const supplier_order_view *v)
{
    check_ids(v->order_id, sizeof v->order_id, true);
    check_ids(v->status, sizeof v->status, true);
    check_ids(v->out_order_id, sizeof v->out_order_id, false);
    check_ids(v->close_reason, sizeof v->close_reason, false);
    check_ids(v->close_operate_type, sizeof v->close_operate_type, false);
    check_amount(v->total_amount_fen, true);
    check_amount(v->shipping_fee_fen, true);
    assert(v->n_items <= SUPPLIER_LINES_MAX);
    for (size_t i = 0; i < v->n_items; i++) {
        check_ids(v->items[i].spec_id, sizeof v->items[i].spec_id, false);
        check_amount(v->items[i].quantity, false);
    }
}

static void check_reply(const supplier_response *rsp, const supplier_reply *r)
{
    const supplier_result *res = &r->res;
    assert(res->http_status == rsp->http_status);
    check_text(res->code, sizeof res->code);
    check_text(res->message, sizeof res->message);
    switch (res->outcome) {
    case SUPPLIER_OK:
        assert(rsp->xfer == SUPPLIER_XFER_OK && res->kind == SUPPLIER_KIND_NONE);
        assert(rsp->http_status >= 200 && rsp->http_status <= 299);
        break;
    case SUPPLIER_RETRYABLE:
        assert(res->kind > SUPPLIER_KIND_NONE && res->kind < SUPPLIER_KIND__N);
        assert(res->code[0] != '\0');
        break;
    case SUPPLIER_DEFINITIVE:
        assert(res->kind == SUPPLIER_KIND_NONE && res->code[0] != '\0');
        break;
    default:
        abort();
    }
    /* The names the client logs, and the repeat rule it acts on. */
    assert(strcmp(supplier_outcome_name(res->outcome), "?") != 0);
    assert(strcmp(supplier_kind_name(res->kind), "?") != 0);
    assert(supplier_api_name(r->api)[0] && supplier_api_namespace(r->api)[0]);
    assert(supplier_kind_maybe_executed(res->kind) ==
           (res->kind != SUPPLIER_KIND_NONE && res->kind != SUPPLIER_KIND_QOS &&
            res->kind != SUPPLIER_KIND_CONNECT));
    if (res->outcome != SUPPLIER_OK) {
        if (r->api == SUPPLIER_API_PRODUCT_GET)
            assert(r->u.product.skus == NULL); /* nothing owned on failure */
        return;
    }
    switch (r->api) {
    case SUPPLIER_API_PRODUCT_GET: check_product(&r->u.product); break;
    case SUPPLIER_API_PREVIEW: check_preview(&r->u.preview); break;
    case SUPPLIER_API_CREATE: check_created(&r->u.created); break;
    case SUPPLIER_API_BUYER_VIEW: check_view(&r->u.view); break;
    case SUPPLIER_API_CANCEL: break;
    case SUPPLIER_API__N: abort();
    }
}

static void parse_all_apis(const supplier_response *rsp)
{
    static supplier_reply r; /* large (two 50-line arrays): off the stack */
    for (int api = 0; api < SUPPLIER_API__N; api++) {
        memset(&r, 0, sizeof r);
        r.api = (supplier_api)api;
        supplier_parse(rsp, &r);
        check_reply(rsp, &r);
        supplier_result first = r.res;
        supplier_reply_clear(&r);
        memset(&r.res, 0xA5, sizeof r.res); /* stale result: must not leak through */
        supplier_parse(rsp, &r);
        check_reply(rsp, &r);
        assert(memcmp(&first, &r.res, sizeof first) == 0);
        supplier_reply_clear(&r);
    }
}

static void helpers(char *text, size_t len)
{
    int64_t fen = -7;
    if (supplier_yuan_text_to_fen(text, &fen))
        assert(fen >= 0 && fen <= SUPPLIER_AMOUNT_MAX);
    /* The first few bytes as a secret: redaction never grows the text. */
    char secret[9];
    size_t sl = len < 8 ? len : 8;
    memcpy(secret, text, sl);
    secret[sl] = '\0';
    size_t before = strlen(text);
    supplier_redact(text, secret);
    assert(strlen(text) <= before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FUZZ_HEADER)
        return 0;
    unsigned x = data[0] & 7u;
    supplier_xfer xfer = x == 7 ? SUPPLIER_XFER_OK : (supplier_xfer)x;
    int status = (int16_t)(uint16_t)((unsigned)data[1] << 8 | data[2]);
    const char *body = (const char *)data + FUZZ_HEADER;
    size_t len = size - FUZZ_HEADER;

    /* A copy of exactly len bytes (no NUL after it), so ASan sees any read
     * past the end of a body that is not NUL-terminated. */
    char *exact = malloc(len ? len : 1);
    char *text = malloc(len + 1);
    if (!exact || !text)
        abort();
    memcpy(exact, body, len);
    memcpy(text, body, len);
    text[len] = '\0';

    supplier_response rsp = {xfer, status, len ? exact : NULL, len,
                             xfer == SUPPLIER_XFER_OK ? NULL : text};
    parse_all_apis(&rsp);
    helpers(text, len);
    free(text);
    free(exact);
    return 0;
}
