/* cart_wire.c — the cart coordinator's messages, pure: parts' replies
 * read into their slots, the answers packed, the params of the calls it
 * sends (include/stockd/cart_wire.h). No loop, no socket, no clock: what
 * the coordinator decides lives in cart_coord.c.
 */
#include "stockd/cart_wire.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "stockd/codec.h"
#include "stockd/reply.h"

/* ------------------------------------------------------------ replies */

void cart_obj_str(const msgpack_object *v, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (v == NULL || v->type != MSGPACK_OBJECT_STR)
        return;
    size_t n = v->via.str.size < cap - 1 ? v->via.str.size : cap - 1;
    memcpy(dst, v->via.str.ptr, n);
    dst[n] = '\0';
}

static bool obj_int(const msgpack_object *v, int64_t *out)
{
    if (v == NULL)
        return false;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)v->via.u64;
        return true;
    }
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = v->via.i64;
        return true;
    }
    return false;
}

static int64_t map_int(const msgpack_object *m, const char *key)
{
    int64_t v = 0;
    return obj_int(codec_map_get(m, key), &v) ? v : 0;
}

eng_err cart_err_from_code(const char *code)
{
    for (int e = 1; e < ENG_E_COUNT_; e++)
        if (strcmp(eng_err_code((eng_err)e), code) == 0)
            return (eng_err)e;
    return ENG_E_INTERNAL;
}

bool cart_status_ended(eng_status st)
{
    return st == ENG_ST_RELEASED || st == ENG_ST_EXPIRED || st == ENG_ST_FAILED;
}

/* Reads a part's reply into its slot. A record that does not parse is a
 * transport-like failure: nothing is known. */
void cart_part_take_reply(cart_part *p, const msgpack_object *error, const msgpack_object *result,
                          const char *reason)
{
    p->err = ENG_OK;
    p->has_available = false;
    p->deciding = false;
    p->status[0] = '\0';
    if (reason != NULL) {
        p->res = CART_PR_FAIL;
        p->err = ENG_E_UNAVAILABLE;
        snprintf(p->code, sizeof p->code, "unavailable");
        snprintf(p->msg, sizeof p->msg, "owner of sku %s not reachable (%s); retry with the same order_id",
                 p->sku, reason);
        p->retryable = true;
        return;
    }
    if (error != NULL && error->type != MSGPACK_OBJECT_NIL) {
        p->res = CART_PR_ERROR;
        if (error->type != MSGPACK_OBJECT_MAP) {
            p->err = ENG_E_INTERNAL;
            snprintf(p->code, sizeof p->code, "internal");
            snprintf(p->msg, sizeof p->msg, "bad error from a peer");
            p->retryable = true;
            return;
        }
        cart_obj_str(codec_map_get(error, "code"), p->code, sizeof p->code);
        cart_obj_str(codec_map_get(error, "message"), p->msg, sizeof p->msg);
        p->err = cart_err_from_code(p->code);
        if (p->err == ENG_E_INTERNAL)
            snprintf(p->code, sizeof p->code, "internal");
        const msgpack_object *rt = codec_map_get(error, "retryable");
        p->retryable = rt != NULL && rt->type == MSGPACK_OBJECT_BOOLEAN ? rt->via.boolean
                                                                       : eng_err_retryable(p->err);
        p->has_available = obj_int(codec_map_get(error, "available"), &p->available);
        cart_obj_str(codec_map_get(error, "status"), p->status, sizeof p->status);
        const msgpack_object *dc = codec_map_get(error, "deciding");
        p->deciding = p->err == ENG_E_INSUFFICIENT && dc != NULL &&
                      dc->type == MSGPACK_OBJECT_BOOLEAN && dc->via.boolean;
        return;
    }
    eng_order_view *o = &p->rec;
    char st[16];
    cart_obj_str(result ? codec_map_get(result, "status") : NULL, st, sizeof st);
    if (result == NULL || result->type != MSGPACK_OBJECT_MAP || !eng_status_parse(st, &o->status)) {
        p->res = CART_PR_FAIL;
        p->err = ENG_E_INTERNAL;
        snprintf(p->code, sizeof p->code, "internal");
        snprintf(p->msg, sizeof p->msg, "bad order record from the owner of sku %s", p->sku);
        p->retryable = true;
        return;
    }
    p->res = CART_PR_RECORD;
    p->have_rec = true;
    cart_obj_str(codec_map_get(result, "order_id"), o->order_id, sizeof o->order_id);
    cart_obj_str(codec_map_get(result, "sku"), o->sku, sizeof o->sku);
    o->qty = (int32_t)map_int(result, "qty");
    o->from_own = (int32_t)map_int(result, "from_own");
    o->from_supplier = (int32_t)map_int(result, "from_supplier");
    o->available = map_int(result, "available");
    o->created_at_ms = map_int(result, "created_at");
    o->updated_at_ms = map_int(result, "updated_at");
    o->hold_expires_at_ms = map_int(result, "hold_expires_at");
    cart_obj_str(codec_map_get(result, "upstream_order_id"), o->upstream_order_id,
                 sizeof o->upstream_order_id);
    cart_obj_str(codec_map_get(result, "reason"), o->reason, sizeof o->reason);
    o->purchased_at_ms = map_int(result, "purchased_at");
    const msgpack_object *ss = codec_map_get(result, "supplier_settled");
    o->supplier_settled = ss != NULL && ss->type == MSGPACK_OBJECT_BOOLEAN && ss->via.boolean;
    o->line_no = p->line_no;
}

/* ------------------------------------------------------------ answers */

void cart_pack_error(msgpack_packer *pk, uint32_t msgid, eng_err err, const char *code,
                     const char *msg, bool retryable, const cart_part *p, bool with_line)
{
    uint32_t extra = 0;
    if (with_line && p != NULL)
        extra += 2;
    bool avail = p != NULL && err == ENG_E_INSUFFICIENT && p->has_available;
    bool status = p != NULL && err == ENG_E_INVALID_STATE && p->status[0] != '\0';
    extra += avail + status;
    codec_pack_response_err_head(pk, msgid, code ? code : eng_err_code(err), msg, retryable, extra);
    /* The key order of one instance's answer (rpc.c rpc_pack_eng_error). */
    if (avail)
        codec_pack_kv_int(pk, "available", p->available);
    if (with_line && p != NULL) {
        codec_pack_kv_int(pk, "line", p->client_line);
        codec_pack_kv_str(pk, "sku", p->sku);
    }
    if (status)
        codec_pack_kv_str(pk, "status", p->status);
    codec_pack_response_err_tail(pk);
}

void cart_pack_part_error(msgpack_packer *pk, uint32_t msgid, const cart_part *p)
{
    cart_pack_error(pk, msgid, p->err, p->code, p->msg[0] ? p->msg : eng_err_code(p->err),
                    p->retryable, p, true);
}

/* The order's status from its lines: the engine's rule, except that an
 * order whose lines all ended differently (an abort released some parts
 * and others lapsed) reads expired, or released when none lapsed. */
eng_status cart_merged_status(const eng_line_view *lv, uint32_t n)
{
    bool all_ended = true, any_expired = false, any_failed = false;
    for (uint32_t i = 0; i < n; i++) {
        all_ended = all_ended && cart_status_ended(lv[i].status);
        any_expired = any_expired || lv[i].status == ENG_ST_EXPIRED;
        any_failed = any_failed || lv[i].status == ENG_ST_FAILED;
    }
    if (all_ended && !any_failed)
        return any_expired ? ENG_ST_EXPIRED : ENG_ST_RELEASED;
    return eng_order_status_of(lv, n);
}

/* The whole order from its parts' records: sums, the order's status from
 * the lines, one entry per line. */
void cart_pack_merged(msgpack_packer *pk, uint32_t msgid, const char *order_id,
                      const cart_part *parts, uint32_t n_parts, int32_t n_lines, bool one)
{
    eng_line_view lv[ENG_LINES_MAX];
    const cart_part *first = NULL;
    int64_t qty = 0, own = 0, sup = 0, created = 0, updated = 0, hold = 0, bought = 0;
    bool all_bought = true, any_bought = false, settled = true;
    const char *reason = "";
    uint32_t n = 0;
    for (uint32_t i = 0; i < n_parts; i++) {
        const cart_part *p = &parts[i];
        if (!p->have_rec)
            continue;
        const eng_order_view *o = &p->rec;
        if (first == NULL)
            first = p;
        memset(&lv[n], 0, sizeof lv[n]);
        lv[n].line_no = p->line_no;
        snprintf(lv[n].sku, sizeof lv[n].sku, "%s", p->sku);
        lv[n].qty = o->qty;
        lv[n].from_own = o->from_own;
        lv[n].from_supplier = o->from_supplier;
        lv[n].status = o->status;
        snprintf(lv[n].upstream_order_id, sizeof lv[n].upstream_order_id, "%s", o->upstream_order_id);
        n++;
        qty += o->qty;
        own += o->from_own;
        sup += o->from_supplier;
        if (created == 0 || (o->created_at_ms > 0 && o->created_at_ms < created))
            created = o->created_at_ms;
        if (o->updated_at_ms > updated)
            updated = o->updated_at_ms;
        if (o->hold_expires_at_ms > 0 && (hold == 0 || o->hold_expires_at_ms < hold))
            hold = o->hold_expires_at_ms;
        if (reason[0] == '\0' && o->reason[0] != '\0')
            reason = o->reason;
        if (o->from_supplier > 0) {
            if (o->purchased_at_ms > 0) {
                any_bought = true;
                if (o->purchased_at_ms > bought)
                    bought = o->purchased_at_ms;
                settled = settled && o->supplier_settled;
            } else {
                all_bought = false;
            }
        }
    }
    assert(first != NULL);
    bool has_bought = any_bought && all_bought;
    bool has_reason = reason[0] != '\0';
    /* One line (one): the single-SKU record, as one instance answers it. */
    bool up = one && first->rec.upstream_order_id[0] != '\0';
    codec_pack_response_ok_head(pk, msgid);
    msgpack_pack_map(pk, 9 + (hold > 0) + up + has_reason + 2 * has_bought + 2 * !one);
    codec_pack_kv_str(pk, "order_id", order_id);
    codec_pack_kv_str(pk, "sku", first->sku);
    codec_pack_kv_int(pk, "qty", qty);
    codec_pack_kv_str(pk, "status", eng_status_name(cart_merged_status(lv, n)));
    codec_pack_kv_int(pk, "from_own", own);
    codec_pack_kv_int(pk, "from_supplier", sup);
    codec_pack_kv_int(pk, "available", first->rec.available);
    codec_pack_kv_int(pk, "created_at", created);
    codec_pack_kv_int(pk, "updated_at", updated);
    if (hold > 0)
        codec_pack_kv_int(pk, "hold_expires_at", hold);
    if (up)
        codec_pack_kv_str(pk, "upstream_order_id", first->rec.upstream_order_id);
    if (has_reason)
        codec_pack_kv_str(pk, "reason", reason);
    if (has_bought) {
        codec_pack_kv_int(pk, "purchased_at", bought);
        codec_pack_kv_bool(pk, "supplier_settled", settled);
    }
    if (one)
        return;
    codec_pack_kv_int(pk, "n_lines", n_lines);
    reply_lines(pk, lv, n);
}

/* Every part has a record (the caller checked): the rule of
 * cart_order_final in cart_wire.h. */
bool cart_order_final(const cart_part *parts, uint32_t n)
{
    eng_line_view lv[ENG_LINES_MAX] = {0};
    bool open = false, held = false;
    assert(n <= ENG_LINES_MAX);
    for (uint32_t i = 0; i < n; i++) {
        const cart_part *p = &parts[i];
        lv[i].status = p->rec.status;
        lv[i].from_supplier = p->rec.from_supplier;
        held = held || p->rec.status == ENG_ST_HELD;
        open = open || p->rec.status == ENG_ST_HELD || p->rec.status == ENG_ST_CONFIRMED;
    }
    eng_status st = cart_merged_status(lv, n);
    bool ended = st == ENG_ST_FAILED || st == ENG_ST_EXPIRED;
    return !held && (st == ENG_ST_PURCHASED || (ended && !open));
}

void cart_told_part(const char *code, int32_t line, const char *sku, int64_t available,
                    cart_part *out)
{
    memset(out, 0, sizeof *out);
    out->err = cart_err_from_code(code);
    snprintf(out->code, sizeof out->code, "%s", code);
    snprintf(out->msg, sizeof out->msg, "%s",
             out->err == ENG_E_INSUFFICIENT   ? "insufficient stock"
             : out->err == ENG_E_UNKNOWN_SKU  ? "unknown sku"
             : out->err == ENG_E_CONFLICT     ? "order_id already used for another sku or qty"
             : out->err == ENG_E_EXPIRED      ? "the order was aborted"
                                              : "the order was refused");
    out->retryable = false;
    out->has_available = available >= 0;
    out->available = available;
    out->client_line = line;
    snprintf(out->sku, sizeof out->sku, "%s", sku);
}

/* ------------------------------------------------------------ params */

static void kv_key(msgpack_object_kv *kv, const char *key)
{
    kv->key.type = MSGPACK_OBJECT_STR;
    kv->key.via.str.ptr = key;
    kv->key.via.str.size = (uint32_t)strlen(key);
}

void cart_kv_str(msgpack_object_kv *kv, const char *key, const char *val)
{
    kv_key(kv, key);
    kv->val.type = MSGPACK_OBJECT_STR;
    kv->val.via.str.ptr = val;
    kv->val.via.str.size = (uint32_t)strlen(val);
}

void cart_kv_int(msgpack_object_kv *kv, const char *key, int64_t val)
{
    assert(val >= 0);
    kv_key(kv, key);
    kv->val.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    kv->val.via.u64 = (uint64_t)val;
}

void cart_kv_bool(msgpack_object_kv *kv, const char *key, bool val)
{
    kv_key(kv, key);
    kv->val.type = MSGPACK_OBJECT_BOOLEAN;
    kv->val.via.boolean = val;
}
