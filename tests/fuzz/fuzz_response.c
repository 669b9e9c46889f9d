/* fuzz_response.c — libFuzzer target over the reply side: a byte stream
 * from a server (the client library and stockbench read these) split into
 * frames the way a reader sees them arrive, each frame unpacked, checked as
 * an RPC message and, for responses, decoded by the client library's typed
 * decoders (stockd_reply_order, stockd_reply_stock).
 *
 * The first input byte chooses where the stream is cut into two reads, so
 * incremental framing (NEED_MORE, then OK once more bytes came) is fuzzed
 * too. stockd's own supplier (1688) answers have their own target,
 * fuzz_supplier_parse.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stockd/client.h"
#include "stockd/codec.h"

#define FUZZ_MAX_BYTES 65536
#define FUZZ_MAX_DEPTH 16
#define FUZZ_FRAMES_MAX 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static stockd_client *fuzz_client;

static void decode_frame(const uint8_t *p, size_t n)
{
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096))
        return;
    msgpack_object obj;
    size_t off = 0;
    if (msgpack_unpack((const char *)p, n, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS) {
        assert(off == n);
        rpc_msg msg;
        const char *why = NULL;
        if (rpc_msg_parse(&obj, &msg, &why) && msg.type == RPC_RESPONSE) {
            stockd_reply rep = {msg.msgid, msg.error, msg.result};
            stockd_order o;
            stockd_stock st;
            if (stockd_reply_order(fuzz_client, &rep, &o) == STOCKD_OK)
                assert(memchr(o.order_id, 0, sizeof(o.order_id)) && memchr(o.sku, 0, sizeof(o.sku)));
            if (stockd_reply_stock(fuzz_client, &rep, &st) == STOCKD_OK)
                assert(memchr(st.sku, 0, sizeof(st.sku)) && memchr(st.mapping, 0, sizeof(st.mapping)));
        }
    }
    msgpack_zone_destroy(&zone);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (fuzz_client == NULL && (fuzz_client = stockd_client_new()) == NULL)
        abort();
    size_t first_read = data[0] % (size + 0u);
    data++;
    size--;
    /* The reader's buffer: the first read, then all of it. */
    size_t have = first_read < size ? first_read : size;
    size_t pos = 0;
    for (int frames = 0; frames < FUZZ_FRAMES_MAX && pos < size;) {
        size_t flen = 0;
        codec_frame r = codec_frame_check(data + pos, have - pos, FUZZ_MAX_BYTES, FUZZ_MAX_DEPTH,
                                          &flen);
        if (r == CODEC_FRAME_NEED_MORE) {
            if (have == size)
                break;          /* the stream ended mid-frame */
            have = size;        /* the second read arrives */
            continue;
        }
        if (r != CODEC_FRAME_OK)
            break;              /* a reader drops the connection */
        assert(flen > 0 && pos + flen <= have);
        decode_frame(data + pos, flen);
        pos += flen;
        frames++;
    }
    return 0;
}
