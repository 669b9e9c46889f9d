/* codec.c — MessagePack-RPC framing guard, RPC shape checks, pack helpers.
 *
 * codec_frame_check() is the only code that looks at untrusted bytes before
 * msgpack-c does. msgpack-c trusts container counts (it allocates 24 bytes
 * per announced element as soon as it parses the header) and has no length
 * caps, so this walk must refuse anything whose headers alone could make the
 * unpacker allocate more than a small multiple of max_bytes.
 */
#include "stockd/codec.h"

#include <assert.h>
#include <string.h>


/* What one msgpack header byte announces. */
typedef enum codec_kind {
    CK_FIXED,   /* scalar whose whole size is hdr bytes */
    CK_BODY,    /* str/bin/ext: hdr bytes, then a body of len bytes */
    CK_ARRAY,   /* container of len items */
    CK_MAP,     /* container of len pairs (2*len items) */
    CK_BAD,     /* 0xc1, never used */
} codec_kind;

typedef struct codec_head {
    codec_kind kind;
    uint8_t hdr;       /* total header bytes (incl. the type byte) */
    uint8_t len_bytes; /* 0: len is in the type byte or implied */
    uint8_t len_off;   /* offset of the big-endian length inside the header */
    uint32_t len;      /* body length / item count known from the type byte */
} codec_head;

/* Decodes the type byte. For types with an explicit length field the caller
 * reads it once the hdr bytes are present. */
static inline __attribute__((always_inline)) codec_head codec_head_of(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0)
        return (codec_head){CK_FIXED, 1, 0, 0, 0};
    if (b <= 0x8f)
        return (codec_head){CK_MAP, 1, 0, 0, b & 0x0fu};
    if (b <= 0x9f)
        return (codec_head){CK_ARRAY, 1, 0, 0, b & 0x0fu};
    if (b <= 0xbf)
        return (codec_head){CK_BODY, 1, 0, 0, b & 0x1fu};
    switch (b) {
    case 0xc0: case 0xc2: case 0xc3:
        return (codec_head){CK_FIXED, 1, 0, 0, 0};
    case 0xc4: return (codec_head){CK_BODY, 2, 1, 1, 0};   /* bin8 */
    case 0xc5: return (codec_head){CK_BODY, 3, 2, 1, 0};   /* bin16 */
    case 0xc6: return (codec_head){CK_BODY, 5, 4, 1, 0};   /* bin32 */
    case 0xc7: return (codec_head){CK_BODY, 3, 1, 1, 0};   /* ext8: len, type */
    case 0xc8: return (codec_head){CK_BODY, 4, 2, 1, 0};   /* ext16 */
    case 0xc9: return (codec_head){CK_BODY, 6, 4, 1, 0};   /* ext32 */
    case 0xca: return (codec_head){CK_FIXED, 5, 0, 0, 0};  /* float32 */
    case 0xcb: return (codec_head){CK_FIXED, 9, 0, 0, 0};  /* float64 */
    case 0xcc: case 0xd0: return (codec_head){CK_FIXED, 2, 0, 0, 0};
    case 0xcd: case 0xd1: return (codec_head){CK_FIXED, 3, 0, 0, 0};
    case 0xce: case 0xd2: return (codec_head){CK_FIXED, 5, 0, 0, 0};
    case 0xcf: case 0xd3: return (codec_head){CK_FIXED, 9, 0, 0, 0};
    case 0xd4: return (codec_head){CK_FIXED, 3, 0, 0, 0};  /* fixext1 */
    case 0xd5: return (codec_head){CK_FIXED, 4, 0, 0, 0};  /* fixext2 */
    case 0xd6: return (codec_head){CK_FIXED, 6, 0, 0, 0};  /* fixext4 */
    case 0xd7: return (codec_head){CK_FIXED, 10, 0, 0, 0}; /* fixext8 */
    case 0xd8: return (codec_head){CK_FIXED, 18, 0, 0, 0}; /* fixext16 */
    case 0xd9: return (codec_head){CK_BODY, 2, 1, 1, 0};   /* str8 */
    case 0xda: return (codec_head){CK_BODY, 3, 2, 1, 0};   /* str16 */
    case 0xdb: return (codec_head){CK_BODY, 5, 4, 1, 0};   /* str32 */
    case 0xdc: return (codec_head){CK_ARRAY, 3, 2, 1, 0};
    case 0xdd: return (codec_head){CK_ARRAY, 5, 4, 1, 0};
    case 0xde: return (codec_head){CK_MAP, 3, 2, 1, 0};
    case 0xdf: return (codec_head){CK_MAP, 5, 4, 1, 0};
    default:   return (codec_head){CK_BAD, 1, 0, 0, 0};   /* 0xc1 */
    }
}

static uint32_t codec_read_be(const uint8_t *p, unsigned n)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Walk state over the frame's bytes so far, in segments (the chains of an
 * input buffer need not be contiguous): the persistent part (codec_scan),
 * the segments and a cursor into them. */
typedef struct codec_walk {
    const codec_seg *seg;
    int nseg;
    uint64_t len;                 /* bytes in all segments */
    int cur;                      /* the segment holding cur_start.. */
    uint64_t cur_start;
    codec_scan *s;
} codec_walk;

#define CODEC_HEAD_MAX 18         /* fixext16: the longest header */

/* n (<= CODEC_HEAD_MAX) contiguous bytes at absolute offset `at`, from a
 * segment or gathered into tmp; NULL when they are not all in yet. Offsets
 * only grow during a walk, so the cursor only moves forward. */
static const uint8_t *walk_at(codec_walk *w, uint64_t at, unsigned n, uint8_t *tmp)
{
    if (at + n > w->len)
        return NULL;
    while (at >= w->cur_start + w->seg[w->cur].n) {
        w->cur_start += w->seg[w->cur].n;
        w->cur++;
        assert(w->cur < w->nseg);
    }
    uint64_t in = at - w->cur_start;
    if (in + n <= w->seg[w->cur].n)
        return w->seg[w->cur].p + in;
    unsigned got = 0;
    for (int i = w->cur; got < n; i++, in = 0) {
        assert(i < w->nseg);
        size_t take = w->seg[i].n - in < n - got ? w->seg[i].n - in : n - got;
        memcpy(tmp + got, w->seg[i].p + in, take);
        got += (unsigned)take;
    }
    return tmp;
}

/* Consumes one object header (and a str/bin/ext body). Returns
 * CODEC_FRAME_OK when the header was consumed, else the verdict. Nothing
 * in the scan state changes unless the whole header (and body) is present,
 * so a NEED_MORE walk resumes exactly where it stopped. */
static codec_frame codec_walk_one(codec_walk *w)
{
    codec_scan *s = w->s;
    uint8_t tmp[CODEC_HEAD_MAX];
    const uint8_t *p = walk_at(w, s->off, 1, tmp);
    if (p == NULL)
        return CODEC_FRAME_NEED_MORE;
    codec_head h = codec_head_of(p[0]);
    if (h.kind == CK_BAD)
        return CODEC_FRAME_BAD;
    /* The header plus one byte per other owed object must fit. */
    uint64_t owed_after = s->pending - 1;
    if (s->off + h.hdr + owed_after > s->max_bytes)
        return CODEC_FRAME_TOO_LARGE;
    if ((p = walk_at(w, s->off, h.hdr, tmp)) == NULL)
        return CODEC_FRAME_NEED_MORE;
    uint64_t n = h.len;
    if (h.len_bytes)
        n = codec_read_be(p + h.len_off, h.len_bytes);
    uint64_t room = s->max_bytes - s->off - h.hdr - owed_after;
    uint64_t body = 0, items = 0;
    if (h.kind == CK_BODY)
        body = n;
    else if (h.kind == CK_ARRAY)
        items = n;
    else if (h.kind == CK_MAP)
        items = 2 * n;
    if (body > room || items > room)
        return CODEC_FRAME_TOO_LARGE;
    if (h.kind == CK_ARRAY || h.kind == CK_MAP) {
        if (s->depth >= s->max_depth)
            return CODEC_FRAME_BAD;   /* empty containers count too, as in msgpack-c */
    }
    if (s->off + h.hdr + body > w->len)
        return CODEC_FRAME_NEED_MORE;
    s->off += h.hdr + body;
    s->objects++;
    s->pending = owed_after + items;
    if (s->depth > 0)
        s->left[s->depth - 1]--;
    if (items > 0)
        s->left[s->depth++] = items;
    while (s->depth > 0 && s->left[s->depth - 1] == 0)
        s->depth--;
    return CODEC_FRAME_OK;
}

/* A run of one-byte scalars inside a container (ints, nil, bools: the
 * cheapest way to make a frame of many values) in one step, within the
 * cursor's segment; off + pending, bounded by max_bytes, does not change.
 * Returns the values consumed. */
static uint64_t walk_scalars(codec_walk *w)
{
    codec_scan *s = w->s;
    if (s->depth == 0 || s->off >= w->len)
        return 0;
    uint8_t tmp[1];
    if (walk_at(w, s->off, 1, tmp) == NULL)
        return 0;
    const codec_seg *g = &w->seg[w->cur];
    uint64_t in = s->off - w->cur_start;
    uint64_t room = s->left[s->depth - 1];
    if (room > g->n - in)
        room = g->n - in;
    const uint8_t *p = g->p + in;
    uint64_t k = 0;
    while (k < room) {
        uint8_t b = p[k];
        if (!(b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3))
            break;
        k++;
    }
    if (k == 0)
        return 0;
    s->off += k;
    s->objects += k;
    s->pending -= k;
    s->left[s->depth - 1] -= k;
    while (s->depth > 0 && s->left[s->depth - 1] == 0)
        s->depth--;
    return k;
}

void codec_scan_init(codec_scan *s, size_t max_bytes, unsigned max_depth)
{
    assert(s != NULL);
    /* Clamped so that off + header + pending never wraps. */
    s->max_bytes = (uint64_t)max_bytes < UINT64_MAX / 2 ? (uint64_t)max_bytes : UINT64_MAX / 2;
    s->max_depth = max_depth < CODEC_DEPTH_CAP ? max_depth : CODEC_DEPTH_CAP;
    s->depth = 0;
    s->off = 0;
    s->pending = 1;
    s->objects = 0;
}

int64_t codec_request_msgid(const uint8_t *p, size_t n)
{
    if (n < 3 || p[0] != 0x94 || p[1] != 0x00)
        return -1;
    if (p[2] <= 0x7f)
        return p[2];
    if (p[2] == 0xcc && n >= 4)
        return p[3];
    if (p[2] == 0xcd && n >= 5)
        return (int64_t)p[3] << 8 | p[4];
    if (p[2] == 0xce && n >= 7)
        return (int64_t)p[3] << 24 | (int64_t)p[4] << 16 | (int64_t)p[5] << 8 | p[6];
    return -1;
}

static void walk_init(codec_walk *w, codec_scan *s, const codec_seg *seg, int nseg)
{
    w->seg = seg;
    w->nseg = nseg;
    w->len = 0;
    for (int i = 0; i < nseg; i++)
        w->len += seg[i].n;
    w->cur = 0;
    w->cur_start = 0;
    w->s = s;
}

codec_frame codec_scan_feedv(codec_scan *s, const codec_seg *seg, int nseg, size_t *frame_len)
{
    assert(s != NULL && frame_len != NULL && nseg >= 0);
    codec_walk w;
    walk_init(&w, s, seg, nseg);
    assert(s->off <= w.len);  /* the caller hands the same frame, grown */
    *frame_len = 0;
    if (s->max_bytes == 0)
        return CODEC_FRAME_TOO_LARGE;   /* keeps off + pending <= max_bytes from the start */
    /* Terminates: every successful step advances off by >= 1 and off <= len. */
    for (;;) {
        if (walk_scalars(&w) == 0) {
            codec_frame r = codec_walk_one(&w);
            if (r != CODEC_FRAME_OK)
                return r;
        }
        assert(s->off <= w.len);
        if (s->pending == 0) {
            assert(s->depth == 0);
            *frame_len = (size_t)s->off;
            return CODEC_FRAME_OK;
        }
    }
}

codec_frame codec_scan_feed(codec_scan *s, const uint8_t *buf, size_t len, size_t *frame_len)
{
    assert(buf != NULL || len == 0);
    codec_seg one = {buf, len};
    return codec_scan_feedv(s, &one, len ? 1 : 0, frame_len);
}

uint64_t codec_scan_needv(const codec_scan *s, const codec_seg *seg, int nseg)
{
    codec_walk w;
    walk_init(&w, (codec_scan *)s, seg, nseg);
    assert(s->off <= w.len);
    /* Every owed object needs a byte; the next one, when its header is in,
     * its whole header and body. */
    uint64_t end = s->off + s->pending;
    uint8_t tmp[CODEC_HEAD_MAX];
    const uint8_t *p = walk_at(&w, s->off, 1, tmp);
    if (p != NULL) {
        codec_head h = codec_head_of(p[0]);
        if (h.kind != CK_BAD)
            end = s->off + h.hdr + (s->pending - 1);
        if (h.kind == CK_BODY && (p = walk_at(&w, s->off, h.hdr, tmp)) != NULL) {
            uint64_t n = h.len_bytes ? codec_read_be(p + h.len_off, h.len_bytes) : h.len;
            end = s->off + h.hdr + n + (s->pending - 1);
        }
    }
    return end > w.len ? end - w.len : 1;
}

uint64_t codec_scan_need(const codec_scan *s, const uint8_t *buf, size_t len)
{
    codec_seg one = {buf, len};
    return codec_scan_needv(s, &one, len ? 1 : 0);
}

codec_frame codec_frame_check(const uint8_t *buf, size_t len, size_t max_bytes,
                              unsigned max_depth, size_t *frame_len)
{
    codec_scan s;
    codec_scan_init(&s, max_bytes, max_depth);
    return codec_scan_feed(&s, buf, len, frame_len);
}

/* ---- RPC shapes ---- */

static bool codec_is_u32(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= UINT32_MAX;
}

static bool rpc_fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return false;
}

bool rpc_msg_parse(const msgpack_object *o, rpc_msg *out, const char **why)
{
    assert(o != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return rpc_fail(why, "message is not an array");
    uint32_t n = o->via.array.size;
    const msgpack_object *a = o->via.array.ptr;
    if (n < 3 || a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > RPC_NOTIFY)
        return rpc_fail(why, "bad message type");
    out->type = (int)a[0].via.u64;
    switch (out->type) {
    case RPC_REQUEST:
        if (n != 4)
            return rpc_fail(why, "request must have 4 elements");
        if (!codec_is_u32(&a[1]))
            return rpc_fail(why, "msgid must be a u32");
        if (a[2].type != MSGPACK_OBJECT_STR)
            return rpc_fail(why, "method must be a string");
        if (a[3].type != MSGPACK_OBJECT_ARRAY)
            return rpc_fail(why, "params must be an array");
        out->msgid = (uint32_t)a[1].via.u64;
        out->method = a[2].via.str.ptr;
        out->method_len = a[2].via.str.size;
        out->params = &a[3];
        return true;
    case RPC_RESPONSE:
        if (n != 4)
            return rpc_fail(why, "response must have 4 elements");
        if (!codec_is_u32(&a[1]))
            return rpc_fail(why, "msgid must be a u32");
        out->msgid = (uint32_t)a[1].via.u64;
        out->error = &a[2];
        out->result = &a[3];
        return true;
    default:
        if (n != 3)
            return rpc_fail(why, "notification must have 3 elements");
        if (a[1].type != MSGPACK_OBJECT_STR)
            return rpc_fail(why, "method must be a string");
        if (a[2].type != MSGPACK_OBJECT_ARRAY)
            return rpc_fail(why, "params must be an array");
        out->method = a[1].via.str.ptr;
        out->method_len = a[1].via.str.size;
        out->params = &a[2];
        return true;
    }
}

const msgpack_object *codec_map_get(const msgpack_object *map, const char *key)
{
    assert(key != NULL);
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    const msgpack_object_kv *kv = map->via.map.ptr;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &kv[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0)
            return &kv[i].val;
    }
    return NULL;
}

/* ---- packing ---- */

int codec_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    assert(len <= UINT32_MAX);
    if (msgpack_pack_str(pk, len) != 0)
        return -1;
    return len ? msgpack_pack_str_body(pk, s, len) : 0;
}

int codec_pack_cstr(msgpack_packer *pk, const char *s)
{
    assert(s != NULL);
    return codec_pack_str(pk, s, strlen(s));
}

int codec_pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
    return codec_pack_cstr(pk, key) || codec_pack_cstr(pk, val) ? -1 : 0;
}

int codec_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val)
{
    return codec_pack_cstr(pk, key) || msgpack_pack_int64(pk, val) ? -1 : 0;
}

int codec_pack_kv_bool(msgpack_packer *pk, const char *key, bool val)
{
    if (codec_pack_cstr(pk, key) != 0)
        return -1;
    return val ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

int codec_pack_request_head(msgpack_packer *pk, uint32_t msgid, const char *method)
{
    if (msgpack_pack_array(pk, 4) || msgpack_pack_uint8(pk, RPC_REQUEST) ||
        msgpack_pack_uint32(pk, msgid) || codec_pack_cstr(pk, method))
        return -1;
    return msgpack_pack_array(pk, 1);
}

int codec_pack_response_ok_head(msgpack_packer *pk, uint32_t msgid)
{
    if (msgpack_pack_array(pk, 4) || msgpack_pack_uint8(pk, RPC_RESPONSE) ||
        msgpack_pack_uint32(pk, msgid))
        return -1;
    return msgpack_pack_nil(pk);
}

int codec_pack_response_err_head(msgpack_packer *pk, uint32_t msgid, const char *code,
                                 const char *message, bool retryable, uint32_t extra_pairs)
{
    assert(extra_pairs <= UINT32_MAX - 3);
    if (msgpack_pack_array(pk, 4) || msgpack_pack_uint8(pk, RPC_RESPONSE) ||
        msgpack_pack_uint32(pk, msgid) || msgpack_pack_map(pk, 3 + extra_pairs))
        return -1;
    if (codec_pack_kv_str(pk, "code", code) || codec_pack_kv_str(pk, "message", message))
        return -1;
    return codec_pack_kv_bool(pk, "retryable", retryable);
}

int codec_pack_response_err_tail(msgpack_packer *pk)
{
    return msgpack_pack_nil(pk);
}
