/* client_internal.h — the client library's private state and the functions
 * its files share. client.h is the contract; nothing outside src/client/
 * (and its unit test) includes this file.
 *
 * The files, by job:
 *   client.c         lifecycle, errors, connecting, the socket (read, wait, flush)
 *   client_request.c packing requests: the open frame, the typed encoders
 *   client_calls.c   the synchronous typed calls (send, wait, convert)
 *   client_recv.c    receiving: replies by msgid, held replies, notifications
 *   client_decode.c  frames cut and unpacked, replies and errors decoded (pure)
 *   client_ring.c    cluster.ring: the checked copy and the owner lookup
 *   client_cluster.c the ring-aware router
 */
#ifndef STOCKD_CLIENT_INTERNAL_H
#define STOCKD_CLIENT_INTERNAL_H

#include "stockd/client.h"
#include "stockd/codec.h"

#define CLIENT_MAX_DEPTH 32u               /* msgpack-c's own limit */
#define CLIENT_SEND_AT_BYTES (64u * 1024u) /* queued bytes that trigger a send */
#define CLIENT_READ_CHUNK (64u * 1024u)
#define CLIENT_MAX_INPUT_BYTES (64u << 20) /* unframed input kept while sending */
#define CLIENT_MAX_TOKEN_BYTES 256
#define CLIENT_MAX_METHOD_BYTES 64

typedef struct held_reply {
    uint32_t msgid;
    uint8_t *bytes;
    size_t len;
} held_reply;

struct stockd_client {
    int fd;                    /* -1 when not connected */
    int timeout_ms;
    unsigned max_inflight;
    unsigned inflight;         /* requests queued or sent whose reply was not handed out */
    uint32_t next_msgid;
    bool has_token;
    char token[CLIENT_MAX_TOKEN_BYTES + 1];

    msgpack_sbuffer out;       /* queued request bytes */
    size_t out_sent;           /* prefix of out already written */
    msgpack_packer pk;
    bool req_open;
    size_t req_start;          /* offset in out of the open request */
    uint32_t req_msgid;

    uint8_t *in;               /* received bytes; [in_off, in_len) not yet framed */
    size_t in_off, in_len, in_cap;

    held_reply *held;
    size_t n_held, cap_held;

    held_reply *notes;         /* notifications not handed out yet, oldest first */
    size_t n_notes, cap_notes;
    unsigned long notes_dropped;

    uint8_t *cur;              /* bytes of the reply handed out last */
    msgpack_unpacked cur_u;
    const msgpack_object *last_result;

    stockd_error err;
    char errstr[320];
};

/* A copy of cluster.ring: the nodes and the points as the server sent them
 * (checked), so a lookup here is the server's own lookup. */
struct stockd_ring {
    size_t n_nodes;
    char names[STOCKD_RING_NODES_MAX][STOCKD_MAX_ID_BYTES + 1];
    char addrs[STOCKD_RING_NODES_MAX][STOCKD_RING_ADDR_MAX];
    char version[STOCKD_RING_VERSION_MAX];
    uint64_t *hashes;            /* sorted, n_points */
    uint16_t *owners;            /* node index of each point */
    size_t n_points;
};

/* ---- client.c ---- */
/* Sets errstr and returns rc. */
stockd_rc client_fail(stockd_client *c, stockd_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A failure after which the byte stream cannot be trusted: sets errstr,
 * closes, returns rc. */
stockd_rc client_broken(stockd_client *c, stockd_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Every public call that sends or receives starts here. */
void client_reset_call(stockd_client *c);
int64_t client_now_ms(void);
/* 1 bytes arrived, 0 would block (or the buffer is full), -1 gone (closed). */
int client_read_some(stockd_client *c);
/* Waits until the input may hold more bytes: 1 read something (or may
 * have), 0 the deadline passed, -1 the connection failed (closed, *rc set). */
int client_await_input(stockd_client *c, int64_t deadline_ms, stockd_rc *rc);
stockd_rc client_flush_until(stockd_client *c, int64_t deadline_ms);

/* ---- client_decode.c ---- */
stockd_rc client_next_frame(stockd_client *c, uint8_t **bytes, size_t *len);
stockd_rc client_unpack(stockd_client *c, const uint8_t *bytes, size_t len,
                        msgpack_unpacked *u, rpc_msg *m);
void client_copy_str(const msgpack_object *o, char *buf, size_t buf_len);
bool client_get_int(const msgpack_object *map, const char *key, int64_t *out);
stockd_rc client_parse_error(stockd_client *c, const msgpack_object *e);

/* ---- client_request.c ---- */
stockd_rc client_end_typed(stockd_client *c, int pack_rc, uint32_t *msgid);
int client_pack_token(stockd_client *c, msgpack_packer *pk);

/* ---- client_calls.c ---- */
/* Waits for msgid's reply (rc: how its sending went) and converts it into
 * whichever of ord and st is given. */
stockd_rc client_wait_typed(stockd_client *c, stockd_rc rc, uint32_t msgid, stockd_order *ord,
                            stockd_stock *st);

/* The synchronous call of a method that takes no params. */
stockd_rc client_call_empty(stockd_client *c, const char *method, stockd_reply *reply);

/* ---- client_ring.c ---- */
/* Fills r from a cluster.ring result; NULL, or why it is refused. */
const char *client_ring_parse(stockd_ring *r, const msgpack_object *res);

#endif
