/* reply.c — msgpack encoding of records and errors; see reply.h. */
#include "stockd/reply.h"

#include <string.h>

#include "stockd/codec.h"

/* The supplier mapping and trust appear only for mapping ok/broken, so the
 * records of own-stock SKUs stay byte for byte what they were. */
void reply_stock(msgpack_packer *pk, const eng_stock_view *v)
{
    msgpack_pack_map(pk, 9 + (v->has_map ? 2 : 0));
    codec_pack_kv_str(pk, "sku", v->sku);
    codec_pack_kv_int(pk, "available", v->available);
    codec_pack_kv_int(pk, "own_on_hand", v->c.own_on_hand);
    codec_pack_kv_int(pk, "own_reserved", v->c.own_reserved);
    codec_pack_kv_int(pk, "supplier_reported", v->c.supplier_reported);
    codec_pack_kv_int(pk, "supplier_sellable", v->c.supplier_sellable);
    codec_pack_kv_int(pk, "supplier_reserved", v->c.supplier_reserved);
    codec_pack_kv_int(pk, "supplier_synced_at", v->c.supplier_synced_at_ms);
    codec_pack_kv_str(pk, "mapping", eng_mapping_name(v->mapping));
    if (!v->has_map)
        return;
    const eng_supplier_map *m = &v->map;
    bool sku_id = m->sku_id != 0, cap = m->cap >= 0;
    codec_pack_cstr(pk, "supplier");
    msgpack_pack_map(pk, 3 + sku_id + cap);
    codec_pack_kv_str(pk, "supplier_id", m->supplier_id);
    codec_pack_kv_int(pk, "offer_id", m->offer_id);
    codec_pack_kv_str(pk, "spec_id", m->spec_id);
    if (sku_id)
        codec_pack_kv_int(pk, "sku_id", m->sku_id);
    if (cap)
        codec_pack_kv_int(pk, "cap", m->cap);
    codec_pack_cstr(pk, "trust");
    msgpack_pack_double(pk, v->trust);
}

void reply_lines(msgpack_packer *pk, const eng_line_view *l, size_t n)
{
    codec_pack_cstr(pk, "lines");
    msgpack_pack_array(pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        bool up = l[i].upstream_order_id[0] != '\0';
        msgpack_pack_map(pk, 6 + up);
        codec_pack_kv_int(pk, "line", l[i].line_no);
        codec_pack_kv_str(pk, "sku", l[i].sku);
        codec_pack_kv_int(pk, "qty", l[i].qty);
        codec_pack_kv_int(pk, "from_own", l[i].from_own);
        codec_pack_kv_int(pk, "from_supplier", l[i].from_supplier);
        codec_pack_kv_str(pk, "status", eng_status_name(l[i].status));
        if (up)
            codec_pack_kv_str(pk, "upstream_order_id", l[i].upstream_order_id);
    }
}

void reply_order(msgpack_packer *pk, const eng_order_view *o, bool part,
                 const eng_line_view *lines, size_t n_lines)
{
    bool hold = o->hold_expires_at_ms > 0;
    bool up = o->upstream_order_id[0] != '\0';
    bool why = o->reason[0] != '\0';
    bool bought = o->purchased_at_ms > 0;
    bool multi = o->n_lines > 1;
    part = part && multi;
    size_t nl = multi && !part ? n_lines : 0;
    msgpack_pack_map(pk, 9 + hold + up + why + 2 * bought + multi + part + (nl > 0));
    codec_pack_kv_str(pk, "order_id", o->order_id);
    codec_pack_kv_str(pk, "sku", o->sku);
    codec_pack_kv_int(pk, "qty", o->qty);
    codec_pack_kv_str(pk, "status", eng_status_name(o->status));
    codec_pack_kv_int(pk, "from_own", o->from_own);
    codec_pack_kv_int(pk, "from_supplier", o->from_supplier);
    codec_pack_kv_int(pk, "available", o->available);
    codec_pack_kv_int(pk, "created_at", o->created_at_ms);
    codec_pack_kv_int(pk, "updated_at", o->updated_at_ms);
    if (hold)
        codec_pack_kv_int(pk, "hold_expires_at", o->hold_expires_at_ms);
    if (up)
        codec_pack_kv_str(pk, "upstream_order_id", o->upstream_order_id);
    if (why)
        codec_pack_kv_str(pk, "reason", o->reason);
    if (bought) {
        codec_pack_kv_int(pk, "purchased_at", o->purchased_at_ms);
        codec_pack_kv_bool(pk, "supplier_settled", o->supplier_settled);
    }
    if (multi)
        codec_pack_kv_int(pk, "n_lines", o->n_lines);
    if (part)
        codec_pack_kv_int(pk, "line", o->line_no);
    if (nl > 0)
        reply_lines(pk, lines, nl);
}


void reply_alert_head(msgpack_packer *pk, uint32_t extra, const char *kind, const char *sku,
                      const char *order_id, const char *reason, int64_t at_ms)
{
    bool oid = order_id[0] != '\0';
    msgpack_pack_map(pk, 4 + oid + extra);
    codec_pack_kv_str(pk, "kind", kind);
    codec_pack_kv_str(pk, "sku", sku);
    if (oid)
        codec_pack_kv_str(pk, "order_id", order_id);
    codec_pack_kv_str(pk, "reason", reason);
    codec_pack_kv_int(pk, "at", at_ms);
}

void reply_trust(msgpack_packer *pk, const char *supplier_id, const eng_trust *t)
{
    msgpack_pack_map(pk, 7);
    codec_pack_kv_str(pk, "supplier_id", supplier_id);
    codec_pack_cstr(pk, "trust");
    msgpack_pack_double(pk, t->trust);
    codec_pack_cstr(pk, "trust_ceiling");
    msgpack_pack_double(pk, t->ceiling);
    codec_pack_kv_bool(pk, "event_mode", t->event_mode);
    codec_pack_cstr(pk, "event_trust");
    msgpack_pack_double(pk, t->event_trust);
    codec_pack_cstr(pk, "effective");
    msgpack_pack_double(pk, eng_trust_effective(t));
    codec_pack_kv_bool(pk, "check_before_confirm", t->check_before_confirm);
}

const char *reply_err_message(eng_err err)
{
    switch (err) {
    case ENG_E_INVALID: return "invalid request";
    case ENG_E_UNKNOWN_SKU: return "unknown sku";
    case ENG_E_INSUFFICIENT: return "insufficient stock";
    case ENG_E_CONFLICT: return "order_id already used for another sku or qty";
    case ENG_E_NOT_FOUND: return "order not found";
    case ENG_E_INVALID_STATE: return "not allowed in the order's status";
    case ENG_E_EXPIRED: return "the hold expired";
    case ENG_E_BUSY: return "queue full, retry later";
    case ENG_E_DEADLINE: return "deadline passed while queued; nothing changed";
    case ENG_E_UNAVAILABLE: return "store unavailable";
    case ENG_E_CHECK_FAILED:
        return "supplier units to check, and nothing here can check them (no supplier API: "
               "--supplier-url; or a cart spread over instances)";
    default: return "internal error";
    }
}


void reply_eng_error(msgpack_packer *pk, uint32_t msgid, const eng_op *op, const char *aside)
{
    eng_err err = op->err;
    /* A SKU or order set aside at load (engine.h): say so, not retryable,
     * also when a read simply missed it. */
    if (op->err_aside[0] != '\0' || aside != NULL) {
        codec_pack_response_err_head(pk, msgid, eng_err_code(ENG_E_UNAVAILABLE),
                                     op->err_aside[0] != '\0' ? op->err_aside : aside, false, 1);
        codec_pack_kv_bool(pk, "set_aside", true);
        codec_pack_response_err_tail(pk);
        return;
    }
    /* A reserve with lines names the first line not met (the client's
     * index) and its SKU. */
    bool line = (err == ENG_E_INSUFFICIENT || err == ENG_E_UNKNOWN_SKU) && op->n_lines > 0 &&
                op->err_line >= 0 && (uint32_t)op->err_line < op->n_lines;
    if (err == ENG_E_INSUFFICIENT) {
        /* deciding: only for a coordinator's part (engine.h "Waiting"). */
        bool deciding = op->err_deciding && op->part_lines > 1;
        codec_pack_response_err_head(pk, msgid, eng_err_code(err), reply_err_message(err), false,
                                     1 + 2 * line + deciding);
        codec_pack_kv_int(pk, "available", op->err_available);
        if (line) {
            codec_pack_kv_int(pk, "line", op->err_line);
            codec_pack_kv_str(pk, "sku", op->lines[op->err_line].sku);
        }
        if (deciding)
            codec_pack_kv_bool(pk, "deciding", true);
    } else if (line) {
        codec_pack_response_err_head(pk, msgid, eng_err_code(err), reply_err_message(err), false, 2);
        codec_pack_kv_int(pk, "line", op->err_line);
        codec_pack_kv_str(pk, "sku", op->lines[op->err_line].sku);
    } else if (err == ENG_E_INVALID_STATE) {
        codec_pack_response_err_head(pk, msgid, eng_err_code(err), reply_err_message(err), false, 1);
        codec_pack_kv_str(pk, "status", eng_status_name(op->err_status));
    } else if (err == ENG_E_UNAVAILABLE && op->outcome_unknown) {
        codec_pack_response_err_head(pk, msgid, eng_err_code(err),
                                     "commit outcome unknown; retry with the same order_id", true, 1);
        codec_pack_kv_str(pk, "outcome", "unknown");
    } else {
        codec_pack_response_err_head(pk, msgid, eng_err_code(err), reply_err_message(err),
                                     eng_err_retryable(err), 0);
    }
    codec_pack_response_err_tail(pk);
}

void reply_error(msgpack_packer *pk, uint32_t msgid, const char *code, const char *message,
                 bool retryable, const char *dkey, const char *dval)
{
    codec_pack_response_err_head(pk, msgid, code, message, retryable, dkey ? 1 : 0);
    if (dkey)
        codec_pack_kv_str(pk, dkey, dval);
    codec_pack_response_err_tail(pk);
}

void reply_unavailable_owner(msgpack_packer *pk, uint32_t msgid, const char *message,
                             const char *owner, bool outcome_unknown)
{
    codec_pack_response_err_head(pk, msgid, "unavailable", message, true, 1 + outcome_unknown);
    if (outcome_unknown)
        codec_pack_kv_str(pk, "outcome", "unknown");
    codec_pack_kv_str(pk, "owner", owner);
    codec_pack_response_err_tail(pk);
}
