/* codec.h — MessagePack-RPC framing and the small pieces of msgpack both
 * sides need. Pure: no I/O.
 *
 * Untrusted bytes meet codec_frame_check() before msgpack-c sees them: it
 * walks the msgpack headers of one object without allocating, and refuses a
 * frame that is deeper than max_depth, longer than max_bytes, or whose
 * container counts or string lengths could not fit in max_bytes (a 5-byte
 * array32 header claiming 4 billion elements is refused at once, before
 * anything is allocated). Only complete, checked frames are unpacked.
 */
#ifndef STOCKD_CODEC_H
#define STOCKD_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

typedef enum codec_frame {
    CODEC_FRAME_OK = 0,      /* one complete object of *frame_len bytes */
    CODEC_FRAME_NEED_MORE,   /* incomplete so far, within limits */
    CODEC_FRAME_BAD,         /* malformed (e.g. 0xc1), or depth exceeded */
    CODEC_FRAME_TOO_LARGE,   /* would exceed max_bytes */
} codec_frame;

codec_frame codec_frame_check(const uint8_t *buf, size_t len, size_t max_bytes,
                              unsigned max_depth, size_t *frame_len);

/* The same check, resumable: a frame that arrives in pieces is walked once.
 * The scan remembers how far it got (only whole headers and bodies are
 * consumed), so feeding a frame of N bytes that grew k times costs O(N),
 * not O(N * k). Feed the frame's bytes from its first byte each time, grown
 * (buf may move; off never passes len); after OK, BAD or TOO_LARGE start
 * the next frame with codec_scan_init(). */
#define CODEC_DEPTH_CAP 32u  /* msgpack-c refuses deeper nesting anyway */
typedef struct codec_scan {
    uint64_t max_bytes;
    unsigned max_depth;
    unsigned depth;
    uint64_t off;       /* bytes of the frame walked */
    uint64_t pending;   /* objects still owed (each needs >= 1 byte) */
    uint64_t objects;   /* objects of the frame walked so far (containers count) */
    uint64_t left[CODEC_DEPTH_CAP]; /* items left in each open container */
} codec_scan;

void codec_scan_init(codec_scan *s, size_t max_bytes, unsigned max_depth);

/* The frame's bytes so far may also come in segments (an input buffer's
 * chains), in order, so a frame need not be made contiguous before it is
 * complete and wanted. */
typedef struct codec_seg {
    const uint8_t *p;
    size_t n;
} codec_seg;
codec_frame codec_scan_feedv(codec_scan *s, const codec_seg *seg, int nseg, size_t *frame_len);
uint64_t codec_scan_needv(const codec_scan *s, const codec_seg *seg, int nseg);
/* After NEED_MORE on buf[0..len): a lower bound (>= 1) of the bytes the
 * frame still needs, so a reader can ask the kernel not to wake it before
 * they arrived (SO_RCVLOWAT). */
uint64_t codec_scan_need(const codec_scan *s, const uint8_t *buf, size_t len);
codec_frame codec_scan_feed(codec_scan *s, const uint8_t *buf, size_t len, size_t *frame_len);

/* The msgid of a request [0, msgid, ...] read from its first bytes without
 * decoding the rest (fixarray of 4, msgid as a positive integer of at most
 * 32 bits), or -1 when it cannot be read there. */
int64_t codec_request_msgid(const uint8_t *p, size_t n);

/* RPC message types. */
enum { RPC_REQUEST = 0, RPC_RESPONSE = 1, RPC_NOTIFY = 2 };

/* A decoded RPC message; pointers point into the msgpack_zone used to
 * unpack it and live as long as that zone. */
typedef struct rpc_msg {
    int type;                      /* RPC_* */
    uint32_t msgid;                /* requests and responses */
    const char *method;            /* requests and notifications */
    uint32_t method_len;
    const msgpack_object *params;  /* requests and notifications: the array */
    const msgpack_object *error;   /* responses: nil or the error */
    const msgpack_object *result;  /* responses */
} rpc_msg;

/* Checks the RPC shape of an unpacked object: [0, u32, str, array],
 * [1, u32, any, any] or [2, str, array]. Returns false with a short
 * reason when it is not one. */
bool rpc_msg_parse(const msgpack_object *o, rpc_msg *out, const char **why);

/* Looks up key in a map with string keys; NULL when absent. */
const msgpack_object *codec_map_get(const msgpack_object *map, const char *key);

/* Pack helpers (msgpack_pack_str + body in one call). */
int codec_pack_str(msgpack_packer *pk, const char *s, size_t len);
int codec_pack_cstr(msgpack_packer *pk, const char *s);
/* Packs the key and a value. */
int codec_pack_kv_str(msgpack_packer *pk, const char *key, const char *val);
int codec_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val);
int codec_pack_kv_bool(msgpack_packer *pk, const char *key, bool val);

/* Starts a request [0, msgid, method, [ <params map follows> ]]: after this
 * the caller packs exactly one map. */
int codec_pack_request_head(msgpack_packer *pk, uint32_t msgid, const char *method);
/* Starts a success response [1, msgid, nil, <result follows>]. */
int codec_pack_response_ok_head(msgpack_packer *pk, uint32_t msgid);
/* Starts an error response [1, msgid, {code, message, retryable, <extra
 * pairs follow>}, nil]: the map is opened with 3 + extra_pairs entries; the
 * caller packs extra_pairs key/value pairs, then codec_pack_response_err_tail. */
int codec_pack_response_err_head(msgpack_packer *pk, uint32_t msgid, const char *code,
                                 const char *message, bool retryable, uint32_t extra_pairs);
int codec_pack_response_err_tail(msgpack_packer *pk);

#endif
