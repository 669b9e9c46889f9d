/* test_supplier_parse.c — cmocka tests for supplier_parse.h: the one
 * normaliser (transport failures, gateway envelopes, business envelopes of
 * each API, HTTP 5xx, garbage) and the typed readers, on bodies shaped like
 * the reference's examples (1688-open-api.md §3–§5) and fake1688's answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stockd/supplier_parse.h"

#define SPEC_RED "0123456789abcdef0123456789abcdef"
#define SPEC_BLUE "fedcba9876543210fedcba9876543210"

static void parse_http(supplier_api api, int status, const char *body, supplier_reply *out)
{
    supplier_response rsp = {SUPPLIER_XFER_OK, status, body, body ? strlen(body) : 0, NULL};
    memset(out, 0, sizeof *out);
    out->api = api;
    supplier_parse(&rsp, out);
}

static void expect(const supplier_reply *r, supplier_outcome o, supplier_kind k, const char *code)
{
    if (r->res.outcome != o || r->res.kind != k || strcmp(r->res.code, code) != 0)
        fail_msg("got %s/%s/%s (%s), want %s/%s/%s", supplier_outcome_name(r->res.outcome),
                 supplier_kind_name(r->res.kind), r->res.code, r->res.message,
                 supplier_outcome_name(o), supplier_kind_name(k), code);
}

/* ---- product.get ---------------------------------------------------------------- */

static const char product_body[] =
    "{\"productInfo\":{\"productID\":600000000001,\"productType\":\"wholesale\","
    "\"status\":\"published\",\"subject\":\"\xe6\xb5\x8b\xe8\xaf\x95\","
    "\"skuInfos\":["
    "{\"attributes\":[{\"attributeID\":3216,\"attributeValue\":\"\xe7\xba\xa2\xe8\x89\xb2\","
    "\"attributeDisplayName\":\"\xe9\xa2\x9c\xe8\x89\xb2\"}],\"amountOnSale\":120,\"price\":8.5,"
    "\"skuId\":5000000000001,\"specId\":\"" SPEC_RED "\",\"cargoNumber\":\"A-RED\"},"
    "{\"attributes\":[{\"attributeID\":3216,\"attributeValue\":\"blue\","
    "\"attributeName\":\"color\"}],\"amountOnSale\":0,\"price\":\"9.10\","
    "\"skuId\":5000000000002,\"specId\":\"" SPEC_BLUE "\"}],"
    "\"saleInfo\":{\"supportOnlineTrade\":true,\"mixWholeSale\":true,\"amountOnSale\":120.0,"
    "\"minOrderQuantity\":2,\"batchNumber\":1,\"unit\":\"x\",\"quoteType\":1,"
    "\"invReduceType\":\"1\"}},"
    "\"bizGroupInfos\":[{\"support\":false,\"description\":\"d\",\"code\":\"isMicroSupply\"}],"
    "\"success\":true}";

static void test_product_ok(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_PRODUCT_GET, 200, product_body, &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
    const supplier_product *p = &r.u.product;
    assert_int_equal(p->offer_id, 600000000001LL);
    assert_string_equal(p->status, "published");
    assert_true(p->published);
    assert_true(p->support_online_trade);
    assert_int_equal(p->amount_on_sale, 120);
    assert_int_equal(p->min_order_quantity, 2);
    assert_int_equal(p->batch_number, 1);
    assert_int_equal(p->inv_reduce_type, 1);
    assert_int_equal(p->n_skus, 2);
    assert_int_equal(p->skus[0].sku_id, 5000000000001LL);
    assert_string_equal(p->skus[0].spec_id, SPEC_RED);
    assert_int_equal(p->skus[0].amount_on_sale, 120);
    assert_int_equal(p->skus[0].price_fen, 850);
    assert_string_equal(p->skus[0].attrs, "\xe9\xa2\x9c\xe8\x89\xb2:\xe7\xba\xa2\xe8\x89\xb2");
    assert_int_equal(p->skus[1].amount_on_sale, 0);
    assert_int_equal(p->skus[1].price_fen, 910);
    assert_string_equal(p->skus[1].attrs, "color:blue");
    assert_true(p->skus[0].fingerprint != p->skus[1].fingerprint);
    supplier_reply_clear(&r);
}

/* The fingerprint moves with price and attributes, not with stock. */
static uint64_t fp_of(const char *price, const char *value, int amount)
{
    char body[1024];
    supplier_reply r;
    snprintf(body, sizeof body,
             "{\"success\":true,\"productInfo\":{\"productID\":1,\"status\":\"published\","
             "\"skuInfos\":[{\"skuId\":2,\"specId\":\"s\",\"amountOnSale\":%d,\"price\":%s,"
             "\"attributes\":[{\"attributeID\":1,\"attValueID\":7,\"attributeValue\":\"%s\"}]}]}}",
             amount, price, value);
    parse_http(SUPPLIER_API_PRODUCT_GET, 200, body, &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
    uint64_t fp = r.u.product.skus[0].fingerprint;
    supplier_reply_clear(&r);
    return fp;
}

static void test_product_fingerprint(void **state)
{
    (void)state;
    uint64_t base = fp_of("8.5", "red", 10);
    assert_true(fp_of("8.50", "red", 99) == base);
    assert_true(fp_of("8.6", "red", 10) != base);
    assert_true(fp_of("8.5", "Red", 10) != base);
}

static void test_product_not_found(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_PRODUCT_GET, 200,
               "{\"success\":false,\"errMsg\":\"\xe5\x95\x86\xe5\x93\x81[42]\"}", &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "biz.Error");
    assert_string_equal(r.res.message, "\xe5\x95\x86\xe5\x93\x81[42]");
    assert_null(r.u.product.skus);
    /* errMsg alone (old SDK shape, no success field) is a failure too. */
    parse_http(SUPPLIER_API_PRODUCT_GET, 200, "{\"errMsg\":\"gone\"}", &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "biz.Error");
}

static void test_product_bad_shapes(void **state)
{
    (void)state;
    supplier_reply r;
    static const char *const bodies[] = {
        "{\"success\":true}",
        "{\"productInfo\":{\"status\":\"published\"}}",
        "{\"productInfo\":{\"productID\":1,\"skuInfos\":{}}}",
        "{\"productInfo\":{\"productID\":1,\"skuInfos\":[{\"skuId\":2,\"amountOnSale\":1}]}}",
        "{\"productInfo\":{\"productID\":1,\"skuInfos\":[{\"skuId\":2,\"specId\":\"s\","
        "\"amountOnSale\":-1}]}}",
        "{\"productInfo\":{\"productID\":1,\"skuInfos\":[{\"skuId\":2,\"specId\":\"s\"}]}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        parse_http(SUPPLIER_API_PRODUCT_GET, 200, bodies[i], &r);
        expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "client.BadShape");
        assert_null(r.u.product.skus);
    }
}

/* More SKUs than SUPPLIER_SKUS_MAX are refused before anything is allocated. */
static void test_product_too_many_skus(void **state)
{
    (void)state;
    size_t cap = 64 * (SUPPLIER_SKUS_MAX + 2) + 256, len = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    len += (size_t)snprintf(b, cap, "{\"productInfo\":{\"productID\":1,\"skuInfos\":[");
    for (int i = 0; i <= SUPPLIER_SKUS_MAX; i++)
        len += (size_t)snprintf(b + len, cap - len, "%s{\"skuId\":%d,\"specId\":\"s%d\","
                                "\"amountOnSale\":1}", i ? "," : "", i + 1, i);
    snprintf(b + len, cap - len, "]}}");
    supplier_reply r;
    parse_http(SUPPLIER_API_PRODUCT_GET, 200, b, &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "client.BadShape");
    free(b);
}

static void test_product_offline_no_skus(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_PRODUCT_GET, 200,
               "{\"success\":true,\"productInfo\":{\"productID\":\"7\",\"status\":\"member "
               "expired\",\"saleInfo\":{\"supportOnlineTrade\":\"false\",\"amountOnSale\":3.7}}}",
               &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
    assert_int_equal(r.u.product.offer_id, 7);
    assert_false(r.u.product.published);
    assert_false(r.u.product.support_online_trade);
    assert_int_equal(r.u.product.amount_on_sale, 3); /* never rounds stock up */
    assert_int_equal(r.u.product.n_skus, 0);
    supplier_reply_clear(&r);
}

/* ---- preview --------------------------------------------------------------------- */

static void test_preview_ok_and_split(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_PREVIEW, 200,
               "{\"success\":true,\"orderPreviewResuslt\":[{\"status\":true,\"flowFlag\":"
               "\"general\",\"tradeModeNameList\":[\"assureTrade\"],\"sumPayment\":2200,"
               "\"sumCarriage\":500,\"sumPaymentNoCarriage\":1700,\"discountFee\":0,"
               "\"cargoList\":[{\"offerId\":600000000001,\"specId\":\"" SPEC_RED "\","
               "\"skuId\":5000000000001,\"amount\":17.0,\"finalUnitPrice\":8.5}]},"
               "{\"status\":true,\"sumPayment\":100,\"sumCarriage\":0,"
               "\"sumPaymentNoCarriage\":100,\"cargoList\":[{\"offerId\":\"600000000002\","
               "\"specId\":\"x\",\"amount\":1,\"finalUnitPrice\":1}]}]}",
               &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
    const supplier_preview *p = &r.u.preview;
    assert_int_equal(p->n_entries, 2);
    assert_int_equal(p->sum_payment_fen, 2300);
    assert_int_equal(p->sum_carriage_fen, 500);
    assert_int_equal(p->sum_payment_no_carriage_fen, 1800);
    assert_string_equal(p->flow_flag, "general");
    assert_int_equal(p->n_lines, 2);
    assert_int_equal(p->lines[0].amount_fen, 1700);
    assert_int_equal(p->lines[0].unit_price_fen, 850);
    assert_int_equal(p->lines[0].sku_id, 5000000000001LL);
    assert_int_equal(p->lines[1].offer_id, 600000000002LL);
}

static void test_preview_errors(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_PREVIEW, 200,
               "{\"success\":false,\"errorCode\":\"500_004\",\"errorMsg\":\"\xe5\x95\x86\xe5\x93"
               "\x81[600000000001_" SPEC_RED "]\xe5\xba\x93\xe5\xad\x98\xe4\xb8\x8d\xe8\xb6\xb3\"}",
               &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "500_004");
    assert_non_null(strstr(r.res.message, SPEC_RED));
    parse_http(SUPPLIER_API_PREVIEW, 200, "{\"success\":false,\"errorCode\":\"500_003\"}", &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "500_003");
    /* An entry that failed inside a "successful" answer. */
    parse_http(SUPPLIER_API_PREVIEW, 200,
               "{\"success\":true,\"orderPreviewResuslt\":[{\"status\":false,\"resultCode\":"
               "\"FAIL_BIZ_FAIL_BIZ_BOOKED_BEYOND_THE_MAX_QUANTITY\",\"message\":\"too many\","
               "\"sumPayment\":0}]}",
               &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE,
           "FAIL_BIZ_FAIL_BIZ_BOOKED_BEYOND_THE_MAX_QUANTITY");
    assert_string_equal(r.res.message, "too many");
    parse_http(SUPPLIER_API_PREVIEW, 200, "{\"success\":true,\"orderPreviewResuslt\":[]}", &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "client.BadShape");
}

/* ---- create ------------------------------------------------------------------------ */

static void test_create_ok(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_CREATE, 200,
               "{\"success\":true,\"result\":{\"success\":true,\"orderId\":"
               "\"3000000000000000001\",\"totalSuccessAmount\":2200,\"postFee\":500,"
               "\"failedOfferList\":[]}}",
               &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
    assert_int_equal(r.u.created.n_orders, 1);
    assert_string_equal(r.u.created.order_ids[0], "3000000000000000001");
    assert_int_equal(r.u.created.total_success_amount_fen, 2200);
    assert_int_equal(r.u.created.post_fee_fen, 500);
    parse_http(SUPPLIER_API_CREATE, 200,
               "{\"success\":true,\"result\":{\"success\":true,\"orderList\":["
               "{\"orderId\":\"3000000000000000002\",\"orderAmmount\":1100},"
               "{\"orderId\":3000000000000000003,\"orderAmmount\":1400}]}}",
               &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
    assert_int_equal(r.u.created.n_orders, 2);
    assert_string_equal(r.u.created.order_ids[1], "3000000000000000003");
    assert_int_equal(r.u.created.total_success_amount_fen, -1);
}

static void test_create_errors(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_CREATE, 200,
               "{\"success\":false,\"code\":\"500_004\",\"message\":\"short\",\"result\":{"
               "\"success\":false,\"failedOfferList\":[{\"offerId\":\"600000000001\",\"specId\":"
               "\"" SPEC_RED "\",\"errorCode\":\"500_004\",\"errorMessage\":\"x\"}]}}",
               &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "500_004");
    assert_string_equal(r.res.message, "short");
    /* Only the nested envelope says it failed. */
    parse_http(SUPPLIER_API_CREATE, 200,
               "{\"success\":true,\"result\":{\"success\":false,\"failedOfferList\":[{"
               "\"errorCode\":\"500_003\",\"errorMessage\":\"spec gone\"}]}}",
               &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "500_003");
    assert_string_equal(r.res.message, "spec gone");
    parse_http(SUPPLIER_API_CREATE, 200,
               "{\"success\":false,\"code\":\"ORDER_LIMIT\",\"message\":\"full\"}", &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "ORDER_LIMIT");
    /* A success without an order id cannot be used. */
    parse_http(SUPPLIER_API_CREATE, 200, "{\"success\":true,\"result\":{\"success\":true}}", &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "client.BadShape");
}

/* ---- buyerView, cancel ---------------------------------------------------------------- */

static void test_buyer_view(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_BUYER_VIEW, 200,
               "{\"success\":\"true\",\"result\":{\"baseInfo\":{\"id\":3000000000000000001,"
               "\"idOfStr\":\"3000000000000000001\",\"status\":\"cancel\",\"totalAmount\":22.0,"
               "\"shippingFee\":5.0,\"outOrderId\":\"RES-000123\",\"closeReason\":\"buyerCancel\","
               "\"closeOperateType\":\"CLOSE_TRADE_BY_BUYER\"},\"productItems\":[{\"productID\":"
               "600000000001,\"skuID\":5000000000001,\"specId\":\"" SPEC_RED "\",\"quantity\":2,"
               "\"price\":8.5}],\"tradeTerms\":[{\"payStatus\":\"1\"}]}}",
               &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
    const supplier_order_view *v = &r.u.view;
    assert_string_equal(v->order_id, "3000000000000000001");
    assert_string_equal(v->status, "cancel");
    assert_string_equal(v->out_order_id, "RES-000123");
    assert_string_equal(v->close_reason, "buyerCancel");
    assert_string_equal(v->close_operate_type, "CLOSE_TRADE_BY_BUYER");
    assert_int_equal(v->total_amount_fen, 2200);
    assert_int_equal(v->shipping_fee_fen, 500);
    assert_int_equal(v->n_items, 1);
    assert_int_equal(v->items[0].sku_id, 5000000000001LL);
    assert_int_equal(v->items[0].quantity, 2);
    /* No idOfStr: the id (above 2^53) is printed exactly. */
    parse_http(SUPPLIER_API_BUYER_VIEW, 200,
               "{\"success\":true,\"result\":{\"baseInfo\":{\"id\":3000000000000000003,"
               "\"status\":\"waitbuyerpay\"}}}",
               &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
    assert_string_equal(r.u.view.order_id, "3000000000000000003");
    parse_http(SUPPLIER_API_BUYER_VIEW, 200,
               "{\"success\":\"false\",\"errorCode\":\"ORDER_NOT_EXIST\",\"errorMessage\":"
               "\"no such order\"}",
               &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "ORDER_NOT_EXIST");
    assert_string_equal(r.res.message, "no such order");
}

static void test_cancel(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_CANCEL, 200, "{\"success\":true}", &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
    parse_http(SUPPLIER_API_CANCEL, 200,
               "{\"success\":false,\"errorCode\":\"CLOSE_ORDER_TOO_FAST\",\"errorMessage\":\"w\"}",
               &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "CLOSE_ORDER_TOO_FAST");
    /* A follow-style code 0 is no error. */
    parse_http(SUPPLIER_API_CANCEL, 200, "{\"code\":0,\"message\":\"success\"}", &r);
    expect(&r, SUPPLIER_OK, SUPPLIER_KIND_NONE, "");
}

/* ---- gateway and HTTP envelopes ------------------------------------------------------------ */

static void test_gateway_errors(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_PRODUCT_GET, 400,
               "{\"error_code\":\"gw.QosAppFrequencyLimit\",\"error_message\":\"App call exceeds "
               "limited frequency\",\"exception\":\"x\",\"request_id\":\"1\"}",
               &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_QOS, "gw.QosAppFrequencyLimit");
    assert_string_equal(r.res.message, "App call exceeds limited frequency");
    assert_int_equal(r.res.http_status, 400);
    parse_http(SUPPLIER_API_CREATE, 400, "{\"error_code\":\"QosApiFrequencyLimit\"}", &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_QOS, "QosApiFrequencyLimit");
    parse_http(SUPPLIER_API_PRODUCT_GET, 401,
               "{\"error_code\":\"401\",\"error_message\":\"Request need user authorized\","
               "\"exception\":\"Request need user authorized\"}",
               &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "401");
    parse_http(SUPPLIER_API_PRODUCT_GET, 400,
               "{\"error_code\":\"gw.SignatureInvalid\",\"error_message\":\"Signature invalid\"}",
               &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "gw.SignatureInvalid");
    parse_http(SUPPLIER_API_PRODUCT_GET, 400,
               "{\"error_code\":\"gw.APIACLDecline\",\"exception\":\"AppKey is not allowed(acl)\"}",
               &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "gw.APIACLDecline");
    assert_string_equal(r.res.message, "AppKey is not allowed(acl)");
    parse_http(SUPPLIER_API_PRODUCT_GET, 503,
               "{\"error_code\":\"gw.ServiceUnavailable\",\"error_message\":\"down\"}", &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_HTTP5XX, "gw.ServiceUnavailable");
    parse_http(SUPPLIER_API_PRODUCT_GET, 200, "{\"error_code\":\"ISPInvokeTimeout\"}", &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_HTTP5XX, "ISPInvokeTimeout");
    parse_http(SUPPLIER_API_PRODUCT_GET, 400, "{\"error_code\":\"gw.NoUsageLeftError\"}", &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "gw.NoUsageLeftError");
}

static void test_http_and_garbage(void **state)
{
    (void)state;
    supplier_reply r;
    parse_http(SUPPLIER_API_PRODUCT_GET, 502, "<html>Bad Gateway</html>", &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_HTTP5XX, "http.502");
    parse_http(SUPPLIER_API_PRODUCT_GET, 504, NULL, &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_HTTP5XX, "http.504");
    parse_http(SUPPLIER_API_PRODUCT_GET, 429, "", &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_QOS, "http.429");
    parse_http(SUPPLIER_API_PRODUCT_GET, 404, "<html>nope</html>", &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "http.404");
    parse_http(SUPPLIER_API_PRODUCT_GET, 200, "{\"productInfo\":{\"produ<html>error</html>", &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_GARBAGE, "client.Garbage");
    parse_http(SUPPLIER_API_PRODUCT_GET, 200, "[1,2]", &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_GARBAGE, "client.Garbage");
    parse_http(SUPPLIER_API_PRODUCT_GET, 200, "", &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_GARBAGE, "client.Garbage");
    /* NUL inside the body is not JSON either. */
    supplier_response rsp = {SUPPLIER_XFER_OK, 200, "{\"a\"\0:1}", 8, NULL};
    r.api = SUPPLIER_API_CANCEL;
    supplier_parse(&rsp, &r);
    expect(&r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_GARBAGE, "client.Garbage");
}

static void test_transport(void **state)
{
    (void)state;
    static const struct {
        supplier_xfer x;
        supplier_outcome o;
        supplier_kind k;
        const char *code;
    } cases[] = {
        {SUPPLIER_XFER_CONNECT, SUPPLIER_RETRYABLE, SUPPLIER_KIND_CONNECT, "client.Connect"},
        {SUPPLIER_XFER_TIMEOUT, SUPPLIER_RETRYABLE, SUPPLIER_KIND_TIMEOUT, "client.Timeout"},
        {SUPPLIER_XFER_IO, SUPPLIER_RETRYABLE, SUPPLIER_KIND_IO, "client.IO"},
        {SUPPLIER_XFER_ABORTED, SUPPLIER_RETRYABLE, SUPPLIER_KIND_ABORTED, "client.Aborted"},
        {SUPPLIER_XFER_TOO_LARGE, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE,
         "client.ResponseTooLarge"},
        {SUPPLIER_XFER_LOCAL, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "client.Local"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        supplier_response rsp = {cases[i].x, 0, "{\"success\":true}", 16, "curl words"};
        supplier_reply r;
        memset(&r, 0, sizeof r);
        r.api = SUPPLIER_API_PREVIEW;
        supplier_parse(&rsp, &r);
        expect(&r, cases[i].o, cases[i].k, cases[i].code);
    }
    assert_false(supplier_kind_maybe_executed(SUPPLIER_KIND_QOS));
    assert_false(supplier_kind_maybe_executed(SUPPLIER_KIND_CONNECT));
    assert_false(supplier_kind_maybe_executed(SUPPLIER_KIND_NONE));
    assert_true(supplier_kind_maybe_executed(SUPPLIER_KIND_HTTP5XX));
    assert_true(supplier_kind_maybe_executed(SUPPLIER_KIND_TIMEOUT));
    assert_true(supplier_kind_maybe_executed(SUPPLIER_KIND_IO));
    assert_true(supplier_kind_maybe_executed(SUPPLIER_KIND_GARBAGE));
    assert_true(supplier_kind_maybe_executed(SUPPLIER_KIND_ABORTED));
}

/* ---- helpers --------------------------------------------------------------------------------- */

static void test_redact(void **state)
{
    (void)state;
    char s[128] = "token=TESTTOKEN and TESTTOKENTESTTOKEN, secret test123!";
    supplier_redact(s, "TESTTOKEN");
    supplier_redact(s, "test123");
    assert_string_equal(s, "token=*** and ******, secret ***!");
    char t[16] = "abc";
    supplier_redact(t, "abc"); /* too short to be a secret: left alone */
    assert_string_equal(t, "abc");
    supplier_redact(t, NULL);
    assert_string_equal(t, "abc");
}

static void test_yuan_text(void **state)
{
    (void)state;
    int64_t f = -7;
    assert_true(supplier_yuan_text_to_fen("8.50", &f) && f == 850);
    assert_true(supplier_yuan_text_to_fen("8.5", &f) && f == 850);
    assert_true(supplier_yuan_text_to_fen("8", &f) && f == 800);
    assert_true(supplier_yuan_text_to_fen("0.01", &f) && f == 1);
    assert_true(supplier_yuan_text_to_fen("8.500", &f) && f == 850);
    static const char *const bad[] = {"", ".5", "8.", "-1", "1e3", "8.505", " 8", "8,5",
                                      "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(supplier_yuan_text_to_fen(bad[i], &f));
}

/* Long messages are cut on a UTF-8 boundary; control bytes become spaces. */
static void test_message_cut(void **state)
{
    (void)state;
    char body[4096];
    size_t len = (size_t)snprintf(body, sizeof body, "{\"success\":false,\"errorCode\":\"E\","
                                                     "\"errorMsg\":\"a\\nb");
    for (int i = 0; i < 300; i++)
        len += (size_t)snprintf(body + len, sizeof body - len, "\xe5\xba\x93");
    snprintf(body + len, sizeof body - len, "\"}");
    supplier_reply r;
    parse_http(SUPPLIER_API_PREVIEW, 200, body, &r);
    expect(&r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "E");
    size_t ml = strlen(r.res.message);
    assert_true(ml < SUPPLIER_MSG_MAX && ml > SUPPLIER_MSG_MAX - 4);
    assert_int_equal((ml - 3) % 3, 0); /* "a b" then whole 3-byte characters */
    assert_memory_equal(r.res.message, "a b", 3);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(supplier_api_name(SUPPLIER_API_PREVIEW), "alibaba.createOrder.preview");
    assert_string_equal(supplier_api_namespace(SUPPLIER_API_CANCEL), "com.alibaba.trade");
    assert_string_equal(supplier_api_namespace(SUPPLIER_API_PRODUCT_GET), "com.alibaba.product");
    assert_string_equal(supplier_kind_name(SUPPLIER_KIND_QOS), "qos");
    assert_string_equal(supplier_outcome_name(SUPPLIER_DEFINITIVE), "definitive");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_product_ok),
        cmocka_unit_test(test_product_fingerprint),
        cmocka_unit_test(test_product_not_found),
        cmocka_unit_test(test_product_bad_shapes),
        cmocka_unit_test(test_product_too_many_skus),
        cmocka_unit_test(test_product_offline_no_skus),
        cmocka_unit_test(test_preview_ok_and_split),
        cmocka_unit_test(test_preview_errors),
        cmocka_unit_test(test_create_ok),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_buyer_view),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_gateway_errors),
        cmocka_unit_test(test_http_and_garbage),
        cmocka_unit_test(test_transport),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_yuan_text),
        cmocka_unit_test(test_message_cut),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
