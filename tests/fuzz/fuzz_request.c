/* fuzz_request.c — libFuzzer target over what a client's bytes meet first:
 * codec_frame_check (the frame validator), msgpack_unpack, rpc_msg_parse
 * (the RPC shape) and rpc_parse_params (every method's params validation).
 *
 * Invariants checked besides "no crash, no sanitizer report":
 *   - a frame the validator calls complete is unpacked by msgpack-c in
 *     exactly that many bytes, or refused (never read past it);
 *   - every proper prefix of a complete frame is NEED_MORE (the server
 *     waits instead of misreading a frame split across reads);
 *   - a successful params parse leaves NUL-terminated ids within their
 *     limits and numbers within the documented ranges; a failed one names
 *     a field and a problem.
 * Build and run: tools/fuzz (clang, -fsanitize=fuzzer,address,undefined).
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "stockd/codec.h"
#include "stockd/rpc_parse.h"

#define FUZZ_MAX_BYTES 65536
#define FUZZ_MAX_DEPTH 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_op(enum method m, const eng_op *op, const rpc_parsed *pp)
{
    assert(memchr(op->order_id, 0, sizeof(op->order_id)) != NULL);
    assert(memchr(op->sku, 0, sizeof(op->sku)) != NULL);
    assert(memchr(op->reason, 0, sizeof(op->reason)) != NULL);
    assert(strlen(op->order_id) <= ENG_ID_MAX && strlen(op->sku) <= ENG_ID_MAX);
    assert(op->qty >= 0 && op->qty <= ENG_QTY_MAX);
    assert(op->delta >= -ENG_STOCK_MAX && op->delta <= ENG_STOCK_MAX);
    assert(pp->deadline_ms >= 1 && pp->deadline_ms <= 600000);
    assert(pp->token == NULL || pp->token->type == MSGPACK_OBJECT_STR);
    if (m == M_RESERVE && op->n_lines == 0)
        assert(op->order_id[0] && op->sku[0] && op->qty >= 1);
    if (m == M_RESERVE && op->n_lines > 0) {
        /* Lines instead of sku/qty: each valid, the sum per SKU in range. */
        assert(op->order_id[0] && op->lines != NULL && op->n_lines <= ENG_LINES_MAX);
        for (uint32_t i = 0; i < op->n_lines; i++) {
            const eng_line_in *l = &op->lines[i];
            assert(memchr(l->sku, 0, sizeof(l->sku)) != NULL && l->sku[0]);
            assert(l->qty >= 1 && l->qty <= ENG_QTY_MAX);
        }
    }
    if (op->part_lines != 0)
        assert(op->part_lines > 1 && op->part_lines <= ENG_LINES_MAX && op->line_no >= 0 &&
               op->line_no < op->part_lines);
    if (m == M_ADJUST)
        assert(op->sku[0] && op->delta != 0 && op->reason[0]);
}

static void parse_all_methods(const msgpack_object *params)
{
    /* Each method as a client's and as an authenticated peer's. */
    for (int i = 0; i < 2 * M_UNKNOWN; i++) {
        int m = i / 2;
        bool peer = i & 1;
        eng_op op;
        memset(&op, 0, sizeof(op));
        rpc_parsed pp = {.deadline_ms = 2000};
        rpc_perr pe = {NULL, NULL, false, ""};
        if (rpc_parse_params((enum method)m, params, peer, &op, &pp, &pe)) {
            check_op((enum method)m, &op, &pp);
            /* A client never gets a peer's fields through. */
            assert(peer || (!pp.fwd && op.part_lines == 0 && !op.decided && !op.as_failed &&
                            pp.update == NULL));
        } else {
            assert(pe.field != NULL && pe.problem != NULL && strlen(pe.field) <= ENG_ID_MAX + 32);
            assert(!pe.unauthorized || !peer);
        }
        rpc_op_free_lines(&op);  /* the caller owns them, parsed or not */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t flen = 0;
    codec_frame r = codec_frame_check(data, size, FUZZ_MAX_BYTES, FUZZ_MAX_DEPTH, &flen);
    if (r != CODEC_FRAME_OK)
        return 0;
    assert(flen > 0 && flen <= size);
    for (size_t cut = 0; cut < flen; cut += 1 + cut / 4) {
        size_t l2 = 0;
        assert(codec_frame_check(data, cut, FUZZ_MAX_BYTES, FUZZ_MAX_DEPTH, &l2) ==
               CODEC_FRAME_NEED_MORE);
    }
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096))
        return 0;
    msgpack_object obj;
    size_t off = 0;
    if (msgpack_unpack((const char *)data, flen, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS) {
        assert(off == flen);
        rpc_msg msg;
        const char *why = NULL;
        if (rpc_msg_parse(&obj, &msg, &why)) {
            if (msg.type == RPC_REQUEST || msg.type == RPC_NOTIFY) {
                enum method m = rpc_method_lookup(msg.method, msg.method_len);
                assert(m <= M_UNKNOWN);
                parse_all_methods(msg.params);
            }
        } else {
            assert(why != NULL);
        }
    }
    msgpack_zone_destroy(&zone);
    return 0;
}
