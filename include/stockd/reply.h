/* reply.h — the msgpack encoding of stockd's answers: order records, stock
 * maps, trust maps and error maps. Pure: packs
 * into the caller's packer from the engine's views, reads no state, so the
 * bytes are unit-tested (tests/unit/test_reply.c) and match proto/vectors.
 *
 * Error maps always start {code, message, retryable}, then the details
 * the count given to the head announces.
 */
#ifndef STOCKD_REPLY_H
#define STOCKD_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "stockd/engine.h"

/* A stock map. The supplier mapping and trust appear only with a mapping
 * (ok or broken), so own-stock SKUs' maps stay what they always were. */
void reply_stock(msgpack_packer *pk, const eng_stock_view *v);

/* An order record. A single-SKU order's is byte for byte what it always
 * was; a whole order of several lines adds "n_lines" and the lines given
 * (its sku is line 0's, qty and the split are sums); a part (one line of a
 * cross-shard order: part true) adds "line" and "n_lines" and no lines. */
void reply_order(msgpack_packer *pk, const eng_order_view *o, bool part,
                 const eng_line_view *lines, size_t n_lines);

/* "lines": the lines of a whole order of several lines (a key and its
 * array of n line maps), as reply_order and the cart coordinator's merged
 * record write them. */
void reply_lines(msgpack_packer *pk, const eng_line_view *l, size_t n);

/* supplier.put / supplier.get */
/* A support alert's map, with extra more pairs the caller packs after:
 * kind, sku, order_id (when not ""), reason, at. */
void reply_alert_head(msgpack_packer *pk, uint32_t extra, const char *kind, const char *sku,
                      const char *order_id, const char *reason, int64_t at_ms);
void reply_trust(msgpack_packer *pk, const char *supplier_id, const eng_trust *t);

/* The human message of an engine error (clients branch on the code). */
const char *reply_err_message(eng_err err);

/* [1, msgid, {error}, nil] for the engine error of op, with its details.
 * aside: the reason the SKU or order named was set aside at load, or NULL
 * (then unavailable + set_aside). */
void reply_eng_error(msgpack_packer *pk, uint32_t msgid, const eng_op *op, const char *aside);

/* [1, msgid, {code, message, retryable[, dkey: dval]}, nil]. */
void reply_error(msgpack_packer *pk, uint32_t msgid, const char *code, const char *message,
                 bool retryable, const char *dkey, const char *dval);

/* unavailable with the SKU's owner; with outcome "unknown" when the change
 * was sent to it and may have committed. */
void reply_unavailable_owner(msgpack_packer *pk, uint32_t msgid, const char *message,
                             const char *owner, bool outcome_unknown);

#endif
