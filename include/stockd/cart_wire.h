/* cart_wire.h — what the cart coordinator reads from and writes to the
 * wire, without a loop or a socket (cart_wire.c is pure): a part's slot
 * filled from its owner's reply, the answers a coordination gives (the
 * merged record of a multi-line order, errors with the failing line) and
 * the params maps of the calls it sends. tests/unit/test_cart_wire.c checks
 * them byte for byte against what one instance answers.
 *
 * Ownership: nothing here allocates. A cart_part is the caller's; the
 * strings it holds are copies (bounded: CART_CODE_MAX, CART_MSG_MAX, the
 * engine's ENG_*_MAX). The params helpers point into the caller's key and
 * value strings, which must outlive the msgpack_object built from them.
 *
 * Errors: a reply that does not parse is a failure of the part
 * (CART_PR_FAIL, internal, retryable): nothing is known about it. The
 * pack functions write through the packer and ignore its result, as the
 * answers are packed into a growable buffer.
 */
#ifndef STOCKD_CART_WIRE_H
#define STOCKD_CART_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "stockd/engine.h"

#define CART_MSG_MAX 160
#define CART_CODE_MAX 32

/* What one part's last call gave. */
typedef enum cart_part_res {
    CART_PR_NONE = 0, CART_PR_RECORD, CART_PR_ERROR, CART_PR_FAIL
} cart_part_res;

struct coord;

/* One line of a multi-line order as its coordinator sees it: the line,
 * and what its owner last answered about it. */
typedef struct cart_part {
    struct coord *co;             /* the coordination it belongs to (cart.c's; opaque here) */
    char sku[ENG_ID_MAX + 1];
    int32_t qty;
    int32_t line_no;              /* the order's line (0..n_lines-1) */
    int32_t client_line;          /* reserve: the client's index of the first line naming sku */
    cart_part_res res;
    bool have_rec;                /* rec holds the part's latest record */
    eng_order_view rec;
    /* CART_PR_ERROR: the owner's error; CART_PR_FAIL: transport reason */
    eng_err err;
    char code[CART_CODE_MAX + 1];
    char msg[CART_MSG_MAX + 1];
    bool retryable;
    bool has_available;
    int64_t available;
    char status[16];              /* invalid_state detail */
    bool deciding;                /* insufficient only because of deciding parts' holds */
    bool retreat;                 /* CP_RETREAT: erased to be placed again in order */
} cart_part;

/* Copies a msgpack string into dst (cap bytes, cut to fit); anything
 * else (NULL included) leaves "". */
void cart_obj_str(const msgpack_object *v, char *dst, size_t cap);
/* The engine's error of an error code; an unknown code is internal. */
eng_err cart_err_from_code(const char *code);
bool cart_status_ended(eng_status st);

/* Reads a part's reply (error, result: the response's; either may be
 * NULL) into its slot; reason != NULL: the call failed in transport. */
void cart_part_take_reply(cart_part *p, const msgpack_object *error, const msgpack_object *result,
                          const char *reason);

/* An error response for msgid: code (NULL: the engine's code of err),
 * msg, retryable; with p, its "available" (insufficient) and "status"
 * (invalid_state), and with with_line its "line" and "sku". */
void cart_pack_error(msgpack_packer *pk, uint32_t msgid, eng_err err, const char *code,
                     const char *msg, bool retryable, const cart_part *p, bool with_line);
/* The error a part's owner gave (or its failure), with its line. */
void cart_pack_part_error(msgpack_packer *pk, uint32_t msgid, const cart_part *p);

/* The order's status from its lines: the engine's rule, except that an
 * order whose lines all ended differently reads expired (released when
 * none lapsed). */
eng_status cart_merged_status(const eng_line_view *lv, uint32_t n);
/* The OK response for msgid with the whole order from the parts' records
 * (parts without one are left out; at least one must have one). one: the
 * single-SKU record, as one instance answers it, without n_lines and
 * lines. */
void cart_pack_merged(msgpack_packer *pk, uint32_t msgid, const char *order_id,
                      const cart_part *parts, uint32_t n, int32_t n_lines, bool one);
/* Every part has a record and the order as a whole is final for its
 * status (purchased: no line held; failed / expired: no line held or
 * confirmed): the state listeners are told. */
bool cart_order_final(const cart_part *parts, uint32_t n);

/* The refusal a standing ABORT carries (code, the client's line or -1,
 * sku, available or -1), as a part's error that one instance would give. */
void cart_told_part(const char *code, int32_t line, const char *sku, int64_t available,
                    cart_part *out);

/* One entry of a params map, pointing at key and val (not copied). */
void cart_kv_str(msgpack_object_kv *kv, const char *key, const char *val);
void cart_kv_int(msgpack_object_kv *kv, const char *key, int64_t val);  /* val >= 0 */
void cart_kv_bool(msgpack_object_kv *kv, const char *key, bool val);

#endif
