/* test_codec.c — cmocka tests for codec.h: the frame guard (every format,
 * truncation at every cut, hostile headers, depth, random bytes checked
 * against msgpack-c), RPC shapes, map lookup and pack helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "stockd/codec.h"

#define MAX_BYTES (64u * 1024u)
#define MAX_DEPTH 32u

/* Copies into an exact-size heap block so ASan sees any read past len. */
static codec_frame check_exact(const uint8_t *buf, size_t len, size_t max_bytes,
                               unsigned max_depth, size_t *frame_len)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, buf, len);
    codec_frame r = codec_frame_check(len ? copy : NULL, len, max_bytes, max_depth, frame_len);
    free(copy);
    return r;
}

/* A complete frame must be OK at full length and NEED_MORE at every cut. */
static void expect_frame(const uint8_t *buf, size_t len)
{
    size_t fl = 99;
    assert_int_equal(check_exact(buf, len, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_OK);
    assert_int_equal(fl, len);
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(check_exact(buf, cut, MAX_BYTES, MAX_DEPTH, &fl),
                         CODEC_FRAME_NEED_MORE);
        assert_int_equal(fl, 0);
    }
    /* Trailing bytes of a next frame do not change the verdict. */
    uint8_t *more = malloc(len + 3);
    assert_non_null(more);
    memcpy(more, buf, len);
    memcpy(more + len, "\x93\x01\x02", 3);
    assert_int_equal(check_exact(more, len + 3, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_OK);
    assert_int_equal(fl, len);
    free(more);
    /* msgpack-c agrees on where the frame ends. */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, (const char *)buf, len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
    msgpack_unpacked_destroy(&u);
}

#define EXPECT(...)                                                   \
    do {                                                              \
        static const uint8_t b_[] = {__VA_ARGS__};                    \
        expect_frame(b_, sizeof(b_));                                 \
    } while (0)

static void test_scalars(void **state)
{
    (void)state;
    EXPECT(0x00);
    EXPECT(0x7f);
    EXPECT(0xe0);
    EXPECT(0xff);
    EXPECT(0xc0);
    EXPECT(0xc2);
    EXPECT(0xc3);
    EXPECT(0xcc, 0xff);
    EXPECT(0xcd, 0xff, 0xff);
    EXPECT(0xce, 1, 2, 3, 4);
    EXPECT(0xcf, 1, 2, 3, 4, 5, 6, 7, 8);
    EXPECT(0xd0, 0x80);
    EXPECT(0xd1, 0x80, 0);
    EXPECT(0xd2, 0x80, 0, 0, 0);
    EXPECT(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0);
    EXPECT(0xca, 0x3f, 0x80, 0, 0);
    EXPECT(0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0);
}

static void test_strings_bins_exts(void **state)
{
    (void)state;
    EXPECT(0xa0);
    EXPECT(0xa3, 'a', 'b', 'c');
    EXPECT(0xd9, 2, 'h', 'i');
    EXPECT(0xda, 0, 2, 'h', 'i');
    EXPECT(0xdb, 0, 0, 0, 2, 'h', 'i');
    EXPECT(0xc4, 0);
    EXPECT(0xc4, 2, 1, 2);
    EXPECT(0xc5, 0, 1, 9);
    EXPECT(0xc6, 0, 0, 0, 1, 9);
    EXPECT(0xd4, 1, 0xaa);
    EXPECT(0xd5, 1, 0xaa, 0xbb);
    EXPECT(0xd6, 0xff, 1, 2, 3, 4); /* timestamp32 */
    EXPECT(0xd7, 1, 1, 2, 3, 4, 5, 6, 7, 8);
    EXPECT(0xd8, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    EXPECT(0xc7, 0, 5);
    EXPECT(0xc7, 2, 5, 1, 2);
    EXPECT(0xc8, 0, 1, 5, 1);
    EXPECT(0xc9, 0, 0, 0, 1, 5, 1);
    /* str32 of 300 bytes */
    uint8_t big[5 + 300];
    memcpy(big, "\xdb\x00\x00\x01\x2c", 5);
    memset(big + 5, 'x', 300);
    expect_frame(big, sizeof(big));
}

static void test_containers(void **state)
{
    (void)state;
    EXPECT(0x90);
    EXPECT(0x80);
    EXPECT(0x93, 1, 2, 3);
    EXPECT(0x81, 0xa1, 'k', 0xc3);
    EXPECT(0xdc, 0, 2, 1, 2);
    EXPECT(0xdd, 0, 0, 0, 2, 1, 2);
    EXPECT(0xde, 0, 1, 1, 2);
    EXPECT(0xdf, 0, 0, 0, 1, 1, 2);
    EXPECT(0xdc, 0, 0);
    EXPECT(0xdf, 0, 0, 0, 0);
    /* nested, with empty containers inside */
    EXPECT(0x94, 0x90, 0x80, 0x92, 0x91, 0x90, 0xa1, 'z', 0x81, 0x90, 0x80);
    /* a full RPC request packed by the helpers */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(codec_pack_request_head(&pk, 7, "reserve"), 0);
    assert_int_equal(msgpack_pack_map(&pk, 3), 0);
    assert_int_equal(codec_pack_kv_str(&pk, "order_id", "o-1"), 0);
    assert_int_equal(codec_pack_kv_str(&pk, "sku", "HOODIE"), 0);
    assert_int_equal(codec_pack_kv_int(&pk, "qty", 2), 0);
    expect_frame((const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void test_reserved_byte_is_bad(void **state)
{
    (void)state;
    size_t fl;
    static const uint8_t c1[] = {0xc1};
    assert_int_equal(check_exact(c1, 1, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_BAD);
    static const uint8_t in_array[] = {0x93, 0x01, 0xc1, 0x02};
    assert_int_equal(check_exact(in_array, sizeof(in_array), MAX_BYTES, MAX_DEPTH, &fl),
                     CODEC_FRAME_BAD);
    /* bad byte after a cut point is not seen yet */
    assert_int_equal(check_exact(in_array, 2, MAX_BYTES, MAX_DEPTH, &fl),
                     CODEC_FRAME_NEED_MORE);
}

static void test_huge_headers(void **state)
{
    (void)state;
    size_t fl;
    /* the 4-billion-element array32 header, alone and with a few elements */
    static const uint8_t arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    for (size_t n = 5; n <= sizeof(arr); n++)
        assert_int_equal(check_exact(arr, n, MAX_BYTES, MAX_DEPTH, &fl),
                         CODEC_FRAME_TOO_LARGE);
    static const uint8_t map[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(check_exact(map, 5, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
    /* a map of 32768 pairs needs >= 65536 item bytes after its 5-byte header */
    static const uint8_t map2[] = {0xdf, 0x00, 0x00, 0x80, 0x00};
    assert_int_equal(check_exact(map2, 5, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
    /* 10 MB str32 header */
    static const uint8_t str[] = {0xdb, 0x00, 0x98, 0x96, 0x80};
    assert_int_equal(check_exact(str, 5, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
    /* ... which is plausible under a 16 MiB cap */
    assert_int_equal(check_exact(str, 5, 16u << 20, MAX_DEPTH, &fl), CODEC_FRAME_NEED_MORE);
    static const uint8_t bin[] = {0xc6, 0x7f, 0xff, 0xff, 0xff};
    assert_int_equal(check_exact(bin, 5, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
    static const uint8_t ext[] = {0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(check_exact(ext, 6, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
    /* array16 nested in an array: counts of siblings still owed are included */
    static const uint8_t sib[] = {0x92, 0xdc, 0x00, 0x0a};
    assert_int_equal(check_exact(sib, 4, 14, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
    assert_int_equal(check_exact(sib, 4, 15, MAX_DEPTH, &fl), CODEC_FRAME_NEED_MORE);
    /* a fixarray of 15 cannot fit in 10 bytes */
    static const uint8_t fix[] = {0x9f};
    assert_int_equal(check_exact(fix, 1, 10, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
    /* max_bytes 0 refuses even an empty buffer */
    assert_int_equal(check_exact(fix, 0, 0, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
}

static void test_max_bytes_boundary(void **state)
{
    (void)state;
    uint8_t buf[100];
    buf[0] = 0xd9;
    buf[1] = 98;
    memset(buf + 2, 'a', 98);
    size_t fl;
    assert_int_equal(check_exact(buf, 100, 100, MAX_DEPTH, &fl), CODEC_FRAME_OK);
    assert_int_equal(fl, 100);
    assert_int_equal(check_exact(buf, 100, 99, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
    assert_int_equal(check_exact(buf, 2, 99, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
    /* a stream of small scalars inside a big array hits the cap at the cap */
    uint8_t arr[3 + 200];
    arr[0] = 0xdc;
    arr[1] = 0;
    arr[2] = 200;
    memset(arr + 3, 0x01, 200);
    assert_int_equal(check_exact(arr, sizeof(arr), 203, MAX_DEPTH, &fl), CODEC_FRAME_OK);
    assert_int_equal(check_exact(arr, 3, 202, MAX_DEPTH, &fl), CODEC_FRAME_TOO_LARGE);
}

static uint8_t *nested(size_t depth, size_t *len)
{
    uint8_t *b = malloc(depth + 1);
    assert_non_null(b);
    memset(b, 0x91, depth);
    b[depth] = 0x00;
    *len = depth + 1;
    return b;
}

static void test_depth(void **state)
{
    (void)state;
    size_t len, fl;
    uint8_t *b = nested(1000, &len);
    assert_int_equal(check_exact(b, len, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_BAD);
    /* even a huge max_depth is capped: the walk never recurses or overflows */
    assert_int_equal(check_exact(b, len, MAX_BYTES, 1000000, &fl), CODEC_FRAME_BAD);
    free(b);
    b = nested(32, &len);
    expect_frame(b, len); /* msgpack-c's own limit is 32 */
    free(b);
    b = nested(33, &len);
    assert_int_equal(check_exact(b, len, MAX_BYTES, MAX_DEPTH, &fl), CODEC_FRAME_BAD);
    free(b);
    /* empty containers count as a level, as they do in msgpack-c */
    static const uint8_t e[] = {0x91, 0x91, 0x90};
    assert_int_equal(check_exact(e, 3, MAX_BYTES, 2, &fl), CODEC_FRAME_BAD);
    assert_int_equal(check_exact(e, 3, MAX_BYTES, 3, &fl), CODEC_FRAME_OK);
    /* depth returns to 0 between siblings: wide is fine */
    static const uint8_t w[] = {0x93, 0x91, 0x01, 0x91, 0x02, 0x91, 0x03};
    assert_int_equal(check_exact(w, sizeof(w), MAX_BYTES, 2, &fl), CODEC_FRAME_OK);
    assert_int_equal(fl, sizeof(w));
    assert_int_equal(check_exact(w, 1, MAX_BYTES, 0, &fl), CODEC_FRAME_BAD);
}

/* xorshift64*: deterministic so failures reproduce. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* Bytes biased towards headers with small lengths, so that many random
 * buffers are valid or nearly valid msgpack. */
static uint8_t random_byte(uint64_t *s)
{
    static const uint8_t pool[] = {0x00, 0x05, 0x7f, 0x80, 0x81, 0x82, 0x90, 0x91, 0x92, 0x93,
                                   0x9f, 0xa0, 0xa1, 0xa2, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc7,
                                   0xca, 0xcc, 0xcd, 0xd4, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xdb,
                                   0xe0, 0xff};
    uint64_t r = rng_next(s);
    if (r % 3 == 0)
        return (uint8_t)(r >> 8);
    return pool[(r >> 8) % sizeof(pool)];
}

static void test_random_bytes(void **state)
{
    (void)state;
    uint64_t seed = 0x5eed5eed12345ULL;
    uint8_t buf[96];
    int ok = 0, bad = 0, more = 0, large = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (int iter = 0; iter < 300000; iter++) {
        size_t len = rng_next(&seed) % sizeof(buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = random_byte(&seed);
        size_t max_bytes = (iter & 1) ? MAX_BYTES : 1 + rng_next(&seed) % 64;
        size_t fl;
        codec_frame r = check_exact(buf, len, max_bytes, MAX_DEPTH, &fl);
        size_t off = 0;
        /* msgpack-c trusts counts: only feed it what the guard did not
         * prove too large, or it may try to allocate gigabytes. */
        msgpack_unpack_return m = MSGPACK_UNPACK_CONTINUE;
        if (r != CODEC_FRAME_TOO_LARGE)
            m = msgpack_unpack_next(&u, (const char *)buf, len, &off);
        switch (r) {
        case CODEC_FRAME_OK:
            ok++;
            assert_true(fl >= 1 && fl <= len && fl <= max_bytes);
            assert_int_equal(m, MSGPACK_UNPACK_SUCCESS);
            assert_int_equal(off, fl);
            break;
        case CODEC_FRAME_NEED_MORE:
            more++;
            assert_int_not_equal(m, MSGPACK_UNPACK_SUCCESS);
            assert_int_not_equal(m, MSGPACK_UNPACK_PARSE_ERROR);
            break;
        case CODEC_FRAME_BAD:
            bad++;
            assert_int_not_equal(m, MSGPACK_UNPACK_SUCCESS);
            break;
        case CODEC_FRAME_TOO_LARGE:
            large++;
            assert_true(max_bytes < MAX_BYTES || len >= 3); /* needs a length field */
            break;
        default:
            fail_msg("unknown verdict %d", r);
        }
        /* whatever msgpack-c accepts within the limits, the guard accepts */
        if (m == MSGPACK_UNPACK_SUCCESS && max_bytes == MAX_BYTES)
            assert_int_equal(r, CODEC_FRAME_OK);
    }
    msgpack_unpacked_destroy(&u);
    /* the generator must exercise every verdict */
    assert_true(ok > 1000 && bad > 1000 && more > 1000 && large > 1000);
}

static void test_pipelined(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    enum { N = 200 };
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(codec_pack_request_head(&pk, i, i % 2 ? "ping" : "stock.get"), 0);
        assert_int_equal(msgpack_pack_map(&pk, i % 2 ? 0 : 1), 0);
        if (i % 2 == 0)
            assert_int_equal(codec_pack_kv_str(&pk, "sku", "S"), 0);
    }
    size_t total = sb.size;
    /* half a frame of the next request at the end */
    assert_int_equal(codec_pack_request_head(&pk, N, "ping"), 0);
    size_t partial = sb.size;
    const uint8_t *p = (const uint8_t *)sb.data;
    size_t off = 0;
    for (uint32_t i = 0; i < N; i++) {
        size_t fl;
        assert_int_equal(codec_frame_check(p + off, partial - off, MAX_BYTES, MAX_DEPTH, &fl),
                         CODEC_FRAME_OK);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t uo = 0;
        assert_int_equal(msgpack_unpack_next(&u, (const char *)p + off, fl, &uo),
                         MSGPACK_UNPACK_SUCCESS);
        rpc_msg m;
        const char *why = NULL;
        assert_true(rpc_msg_parse(&u.data, &m, &why));
        assert_int_equal(m.type, RPC_REQUEST);
        assert_int_equal(m.msgid, i);
        msgpack_unpacked_destroy(&u);
        off += fl;
    }
    assert_int_equal(off, total);
    size_t fl;
    assert_int_equal(codec_frame_check(p + off, partial - off, MAX_BYTES, MAX_DEPTH, &fl),
                     CODEC_FRAME_NEED_MORE);
    msgpack_sbuffer_destroy(&sb);
}

/* The resumable scan agrees with the one-shot check at every prefix of
 * random input fed in random steps, and walks each byte at most once: a
 * frame of many small objects fed a byte at a time ends with its scan
 * offset equal to the frame length, not a multiple of it. */
static void test_scan_resumes(void **state)
{
    (void)state;
    uint64_t seed = 0xfeedbeef77ULL;
    uint8_t buf[96];
    for (int iter = 0; iter < 50000; iter++) {
        size_t len = rng_next(&seed) % sizeof(buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = random_byte(&seed);
        size_t max_bytes = (iter & 1) ? MAX_BYTES : 1 + rng_next(&seed) % 64;
        codec_scan sc;
        codec_scan_init(&sc, max_bytes, MAX_DEPTH);
        size_t have = 0;
        for (;;) {
            size_t fl1 = 0, fl2 = 0;
            codec_frame one = codec_frame_check(have ? buf : NULL, have, max_bytes, MAX_DEPTH, &fl1);
            codec_frame inc = codec_scan_feed(&sc, have ? buf : NULL, have, &fl2);
            assert_int_equal(inc, one);
            assert_int_equal(fl2, fl1);
            if (inc != CODEC_FRAME_NEED_MORE || have == len)
                break;
            have += 1 + rng_next(&seed) % 8;
            if (have > len)
                have = len;
        }
    }
    /* [0, 1, "ping", [[1, 1, ..., 1]]]: 100,000 one-byte items, fed one byte
     * at a time. */
    enum { N = 100000 };
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(codec_pack_request_head(&pk, 1, "ping"), 0);
    msgpack_pack_array(&pk, N);
    for (int i = 0; i < N; i++)
        msgpack_pack_int(&pk, 1);
    codec_scan sc;
    codec_scan_init(&sc, 1u << 20, MAX_DEPTH);
    size_t fl = 0;
    for (size_t have = 1; have < sb.size; have++) {
        assert_int_equal(codec_scan_feed(&sc, (const uint8_t *)sb.data, have, &fl),
                         CODEC_FRAME_NEED_MORE);
        assert_true(sc.off <= have);
    }
    assert_int_equal(codec_scan_feed(&sc, (const uint8_t *)sb.data, sb.size, &fl), CODEC_FRAME_OK);
    assert_int_equal(fl, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Unpacks sb into u (caller destroys) after the guard accepted it. */
static const msgpack_object *unpack(msgpack_sbuffer *sb, msgpack_unpacked *u)
{
    size_t fl, off = 0;
    assert_int_equal(codec_frame_check((const uint8_t *)sb->data, sb->size, MAX_BYTES,
                                       MAX_DEPTH, &fl), CODEC_FRAME_OK);
    assert_int_equal(fl, sb->size);
    msgpack_unpacked_init(u);
    assert_int_equal(msgpack_unpack_next(u, sb->data, sb->size, &off), MSGPACK_UNPACK_SUCCESS);
    return &u->data;
}

static void test_rpc_shapes(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    rpc_msg m;
    const char *why;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    /* error response built by the helpers */
    assert_int_equal(codec_pack_response_err_head(&pk, 42, "insufficient", "only 1 left",
                                                  false, 1), 0);
    assert_int_equal(codec_pack_kv_int(&pk, "available", 1), 0);
    assert_int_equal(codec_pack_response_err_tail(&pk), 0);
    assert_true(rpc_msg_parse(unpack(&sb, &u), &m, &why));
    assert_int_equal(m.type, RPC_RESPONSE);
    assert_int_equal(m.msgid, 42);
    assert_int_equal(m.result->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(m.error->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(m.error->via.map.size, 4);
    /* keys in contract order */
    assert_memory_equal(m.error->via.map.ptr[0].key.via.str.ptr, "code", 4);
    assert_memory_equal(m.error->via.map.ptr[2].key.via.str.ptr, "retryable", 9);
    const msgpack_object *v = codec_map_get(m.error, "available");
    assert_non_null(v);
    assert_int_equal(v->via.u64, 1);
    v = codec_map_get(m.error, "retryable");
    assert_int_equal(v->type, MSGPACK_OBJECT_BOOLEAN);
    assert_false(v->via.boolean);
    assert_null(codec_map_get(m.error, "missing"));
    assert_null(codec_map_get(m.error, "cod"));
    assert_null(codec_map_get(m.result, "code")); /* not a map */
    msgpack_unpacked_destroy(&u);

    /* ok response */
    msgpack_sbuffer_clear(&sb);
    assert_int_equal(codec_pack_response_ok_head(&pk, UINT32_MAX), 0);
    assert_int_equal(msgpack_pack_map(&pk, 1), 0);
    assert_int_equal(codec_pack_kv_bool(&pk, "x", true), 0);
    assert_true(rpc_msg_parse(unpack(&sb, &u), &m, &why));
    assert_int_equal(m.msgid, UINT32_MAX);
    assert_int_equal(m.error->type, MSGPACK_OBJECT_NIL);
    assert_true(codec_map_get(m.result, "x")->via.boolean);
    msgpack_unpacked_destroy(&u);

    /* notification */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 2);
    codec_pack_cstr(&pk, "event");
    msgpack_pack_array(&pk, 0);
    assert_true(rpc_msg_parse(unpack(&sb, &u), &m, &why));
    assert_int_equal(m.type, RPC_NOTIFY);
    assert_int_equal(m.method_len, 5);
    assert_memory_equal(m.method, "event", 5);
    msgpack_unpacked_destroy(&u);

    /* wrong shapes */
    struct { const char *bytes; size_t len; } bad[] = {
        {"\x01", 1},                                  /* not an array */
        {"\x94\x03\x01\xa1m\x90", 6},                 /* type 3 */
        {"\x94\xff\x01\xa1m\x90", 6},                 /* type -1 */
        {"\x93\x00\x01\xa1m", 5},                     /* request, 3 elements */
        {"\x94\x00\xff\xa1m\x90", 6},                 /* negative msgid */
        {"\x94\x00\xcf\x00\x00\x00\x01\x00\x00\x00\x00\xa1m\x90", 14}, /* msgid > u32 */
        {"\x94\x00\x01\x01\x90", 5},                  /* method not a string */
        {"\x94\x00\x01\xa1m\x80", 6},                 /* params a map */
        {"\x93\x01\x01\xc0", 4},                      /* response, 3 elements */
        {"\x94\x02\xa1m\x90\xc0", 6},                 /* notify, 4 elements */
        {"\x93\x02\x01\x90", 4},                      /* notify method not a string */
        {"\x90", 1},                                  /* empty array */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msgpack_sbuffer_clear(&sb);
        msgpack_sbuffer_write(&sb, bad[i].bytes, bad[i].len);
        why = NULL;
        assert_false(rpc_msg_parse(unpack(&sb, &u), &m, &why));
        assert_non_null(why);
        msgpack_unpacked_destroy(&u);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_pack_str_lengths(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    static char s[70000];
    memset(s, 'q', sizeof(s));
    const size_t lens[] = {0, 31, 32, 255, 256, 65535, 65536};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        msgpack_sbuffer_clear(&sb);
        assert_int_equal(codec_pack_str(&pk, s, lens[i]), 0);
        size_t fl;
        assert_int_equal(codec_frame_check((const uint8_t *)sb.data, sb.size, 1u << 20,
                                           MAX_DEPTH, &fl), CODEC_FRAME_OK);
        assert_int_equal(fl, sb.size);
        size_t off = 0;
        msgpack_unpacked_init(&u);
        assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(u.data.type, MSGPACK_OBJECT_STR);
        assert_int_equal(u.data.via.str.size, lens[i]);
        msgpack_unpacked_destroy(&u);
    }
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_strings_bins_exts),
        cmocka_unit_test(test_containers),
        cmocka_unit_test(test_reserved_byte_is_bad),
        cmocka_unit_test(test_huge_headers),
        cmocka_unit_test(test_max_bytes_boundary),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_scan_resumes),
        cmocka_unit_test(test_rpc_shapes),
        cmocka_unit_test(test_pack_str_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
