/* test_client.c — the C client library against real bytes, with no server
 * process: the test holds the server's end of a loopback TCP connection
 * (a listener in this process, accepted after the client's connect) and
 * reads what the client wrote, byte for byte, or writes what a server
 * would, valid or not. Replies for a blocking call are written before the
 * call (msgids are handed out from 1, so they are known in advance).
 *
 * Asserted: the request frames of the typed encoders (exact bytes, the
 * token in admin calls, msgids counting up); usage errors send nothing;
 * replies decode into the typed structs and error maps into
 * stockd_error; a malformed, oversized, truncated, misaddressed or late
 * reply fails with the documented code and closes the connection, a
 * well-framed one of the wrong shape leaves it open; replies out of order
 * are held, notifications queued; the ring's checks and owner lookup (the
 * first point at or after XXH3-64 of the SKU, wrapping); and the router
 * sends each SKU to its owner, two scripted peers on threads answering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include "../../src/client/client_internal.h"

/* ------------------------------------------------------------ fixture */

typedef struct fx {
    int lfd;                 /* the listener */
    int sfd;                 /* the server's end of the connection */
    uint16_t port;
    stockd_client *c;
} fx;

static int listen_any(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t sl = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->lfd = listen_any(&f->port);
    f->c = stockd_client_new();
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", f->port);
    assert_int_equal(stockd_client_connect(f->c, addr, 2000), STOCKD_OK);
    f->sfd = accept(f->lfd, NULL, NULL);
    assert_true(f->sfd >= 0);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    stockd_client_free(f->c);
    if (f->sfd >= 0)
        close(f->sfd);
    close(f->lfd);
    free(f);
    return 0;
}

static void srv_write(fx *f, const void *p, size_t n)
{
    assert_int_equal(write(f->sfd, p, n), (ssize_t)n);
}

/* Reads exactly n bytes the client sent (waiting at most a second). */
static void srv_read(fx *f, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {.fd = f->sfd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 1000), 1);
        ssize_t r = read(f->sfd, buf + got, n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

/* Nothing more was sent by the client. */
static void srv_nothing(fx *f)
{
    struct pollfd p = {.fd = f->sfd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 50), 0);
}

typedef struct pk_buf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} pk_buf;

static void pb_init(pk_buf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

/* Writes [1, msgid, nil, <result packed by the caller>] once packed. */
static void reply_head(pk_buf *b, uint32_t msgid)
{
    pb_init(b);
    assert_int_equal(codec_pack_response_ok_head(&b->pk, msgid), 0);
}

static void reply_send(fx *f, pk_buf *b)
{
    srv_write(f, b->sb.data, b->sb.size);
    msgpack_sbuffer_destroy(&b->sb);
}

/* An order record as the server sends it (the fields stockd_order needs). */
static void pack_order(msgpack_packer *pk, const char *id, const char *sku, const char *status,
                       int64_t qty)
{
    assert_int_equal(msgpack_pack_map(pk, 8), 0);
    assert_int_equal(codec_pack_kv_str(pk, "order_id", id) | codec_pack_kv_str(pk, "sku", sku) |
                     codec_pack_kv_str(pk, "status", status) | codec_pack_kv_int(pk, "qty", qty) |
                     codec_pack_kv_int(pk, "from_own", qty - 1) |
                     codec_pack_kv_int(pk, "from_supplier", 1) |
                     codec_pack_kv_int(pk, "available", 7) |
                     codec_pack_kv_int(pk, "created_at", 1700000000123),
                     0);
}

static void send_order_reply(fx *f, uint32_t msgid, const char *id, const char *sku)
{
    pk_buf b;
    reply_head(&b, msgid);
    pack_order(&b.pk, id, sku, "held", 3);
    reply_send(f, &b);
}

/* ---------------------------------------------------- request encoding */

#define S(lit) lit, sizeof(lit) - 1

static void expect_bytes(fx *f, const char *want, size_t n)
{
    uint8_t got[512];
    assert_true(n <= sizeof got);
    srv_read(f, got, n);
    assert_memory_equal(got, want, n);
}

static void test_encode_reserve(void **state)
{
    fx *f = *state;
    stockd_reserve_req req = {.order_id = "o1", .sku = "s1", .qty = 2, .hold_ms = 500};
    uint32_t id = 0;
    assert_int_equal(stockd_send_reserve(f->c, &req, &id), STOCKD_OK);
    assert_int_equal(id, 1);
    assert_int_equal(stockd_client_inflight(f->c), 1);
    srv_nothing(f);   /* queued, not sent until a flush */
    assert_int_equal(stockd_flush(f->c), STOCKD_OK);
    /* [0, 1, "reserve", [{order_id: "o1", sku: "s1", qty: 2, hold_ms: 500}]] */
    expect_bytes(f, S("\x94\x00\x01\xa7reserve\x91\x84"
                      "\xa8order_id\xa2o1\xa3sku\xa2s1\xa3qty\x02\xa7hold_ms\xcd\x01\xf4"));
    srv_nothing(f);
}

static void test_encode_lines_and_order_op(void **state)
{
    fx *f = *state;
    stockd_line lines[2] = {{"a", 1}, {"b", 300}};
    stockd_reserve_lines_req req = {.order_id = "o", .lines = lines, .n_lines = 2,
                                    .deadline_ms = 9, .check = true};
    uint32_t id1 = 0, id2 = 0;
    assert_int_equal(stockd_send_reserve_lines(f->c, &req, &id1), STOCKD_OK);
    assert_int_equal(stockd_send_order_op(f->c, "confirm", "o", &id2), STOCKD_OK);
    assert_int_equal(id1, 1);
    assert_int_equal(id2, 2);
    assert_int_equal(stockd_flush(f->c), STOCKD_OK);
    expect_bytes(f, S("\x94\x00\x01\xa7reserve\x91\x84"
                      "\xa8order_id\xa1o\xa5lines\x92"
                      "\x82\xa3sku\xa1" "a\xa3qty\x01"
                      "\x82\xa3sku\xa1" "b\xa3qty\xcd\x01\x2c"
                      "\xab" "deadline_ms\x09\xa5" "check\xc3"));
    expect_bytes(f, S("\x94\x00\x02\xa7" "confirm\x91\x81\xa8order_id\xa1o"));
}

static void test_encode_admin_token(void **state)
{
    fx *f = *state;
    assert_int_equal(stockd_client_set_token(f->c, "tk"), STOCKD_OK);
    uint32_t id = 0;
    assert_int_equal(stockd_send_stock_adjust(f->c, "a", -3, "r", &id), STOCKD_OK);
    stockd_sku_put_req put = {.sku = "a", .has_own_on_hand = true, .own_on_hand = 5};
    assert_int_equal(stockd_send_sku_put(f->c, &put, &id), STOCKD_OK);
    assert_int_equal(stockd_flush(f->c), STOCKD_OK);
    expect_bytes(f, S("\x94\x00\x01\xacstock.adjust\x91\x84"
                      "\xa3sku\xa1" "a\xa5" "delta\xfd\xa6reason\xa1r\xa5token\xa2tk"));
    expect_bytes(f, S("\x94\x00\x02\xa7sku.put\x91\x83"
                      "\xa3sku\xa1" "a\xabown_on_hand\x05\xa5token\xa2tk"));
}

/* Broken calls are refused before anything is queued or sent. */
static void test_encode_usage_errors(void **state)
{
    fx *f = *state;
    uint32_t id = 0;
    stockd_reserve_req no_sku = {.order_id = "o", .qty = 1};
    assert_int_equal(stockd_send_reserve(f->c, &no_sku, &id), STOCKD_ERR_USAGE);
    stockd_line lines[STOCKD_MAX_LINES + 1] = {{"a", 1}};
    stockd_reserve_lines_req many = {.order_id = "o", .lines = lines,
                                     .n_lines = STOCKD_MAX_LINES + 1};
    assert_int_equal(stockd_send_reserve_lines(f->c, &many, &id), STOCKD_ERR_USAGE);
    many.n_lines = 2;   /* lines[1].sku is NULL */
    assert_int_equal(stockd_send_reserve_lines(f->c, &many, &id), STOCKD_ERR_USAGE);
    assert_non_null(strstr(stockd_client_errstr(f->c), "line 1 has no sku"));
    assert_int_equal(stockd_send_order_op(f->c, "delete", "o", &id), STOCKD_ERR_USAGE);
    char long_token[CLIENT_MAX_TOKEN_BYTES + 2];
    memset(long_token, 't', sizeof long_token - 1);
    long_token[sizeof long_token - 1] = '\0';
    assert_int_equal(stockd_client_set_token(f->c, long_token), STOCKD_ERR_USAGE);
    /* params must be one map: two are refused and the frame dropped */
    msgpack_packer *pk, *pk2;
    assert_int_equal(stockd_request_begin(f->c, "ping", &pk), STOCKD_OK);
    assert_int_equal(stockd_request_begin(f->c, "ping", &pk2), STOCKD_ERR_USAGE);
    assert_null(pk2);
    msgpack_pack_map(pk, 0);
    msgpack_pack_map(pk, 0);
    assert_int_equal(stockd_request_end(f->c, &id), STOCKD_ERR_USAGE);
    assert_non_null(strstr(stockd_client_errstr(f->c), "exactly one map"));
    assert_int_equal(stockd_client_inflight(f->c), 0);
    stockd_reply r;
    assert_int_equal(stockd_recv(f->c, 5, &r), STOCKD_ERR_USAGE);   /* never sent */
    assert_int_equal(stockd_flush(f->c), STOCKD_OK);
    srv_nothing(f);
    assert_true(stockd_client_connected(f->c));
}

/* --------------------------------------------------------- reply decoding */

static void test_decode_order_and_stock(void **state)
{
    fx *f = *state;
    send_order_reply(f, 1, "o1", "s1");
    pk_buf b;
    reply_head(&b, 2);
    msgpack_pack_map(&b.pk, 6);
    codec_pack_kv_str(&b.pk, "sku", "s1");
    codec_pack_kv_int(&b.pk, "available", 4);
    codec_pack_kv_int(&b.pk, "own_on_hand", 10);
    codec_pack_kv_int(&b.pk, "own_reserved", 6);
    codec_pack_kv_str(&b.pk, "mapping", "ok");
    codec_pack_cstr(&b.pk, "supplier");
    msgpack_pack_map(&b.pk, 2);
    codec_pack_kv_str(&b.pk, "supplier_id", "sup");
    codec_pack_kv_int(&b.pk, "cap", 50);
    reply_send(f, &b);

    stockd_reserve_req req = {.order_id = "o1", .sku = "s1", .qty = 3};
    stockd_order o;
    assert_int_equal(stockd_reserve(f->c, &req, &o), STOCKD_OK);
    assert_string_equal(o.order_id, "o1");
    assert_string_equal(o.status, "held");
    assert_int_equal(o.qty, 3);
    assert_int_equal(o.from_own, 2);
    assert_int_equal(o.from_supplier, 1);
    assert_int_equal(o.available, 7);
    assert_int_equal(o.created_at, 1700000000123);
    assert_int_equal(o.n_lines, 1);
    assert_int_equal(o.part_line, -1);
    stockd_stock st;
    assert_int_equal(stockd_stock_get(f->c, "s1", &st), STOCKD_OK);
    assert_string_equal(st.sku, "s1");
    assert_int_equal(st.available, 4);
    assert_int_equal(st.own_reserved, 6);
    assert_true(st.has_supplier);
    assert_string_equal(st.supplier_id, "sup");
    assert_int_equal(st.cap, 50);
    assert_int_equal(stockd_client_inflight(f->c), 0);
}

static void test_decode_error_reply(void **state)
{
    fx *f = *state;
    pk_buf b;
    pb_init(&b);
    assert_int_equal(codec_pack_response_err_head(&b.pk, 1, "insufficient", "not enough", false,
                                                  3),
                     0);
    codec_pack_kv_int(&b.pk, "available", 2);
    codec_pack_kv_int(&b.pk, "line", 1);
    codec_pack_kv_str(&b.pk, "sku", "b");
    assert_int_equal(codec_pack_response_err_tail(&b.pk), 0);
    reply_send(f, &b);
    stockd_reserve_req req = {.order_id = "o", .sku = "b", .qty = 9};
    stockd_order o;
    assert_int_equal(stockd_reserve(f->c, &req, &o), STOCKD_ERR_SERVER);
    const stockd_error *e = stockd_client_error(f->c);
    assert_string_equal(e->code, "insufficient");
    assert_string_equal(e->message, "not enough");
    assert_false(e->retryable);
    assert_true(e->has_available);
    assert_int_equal(e->available, 2);
    assert_true(e->has_line);
    assert_int_equal(e->line, 1);
    assert_string_equal(e->sku, "b");
    assert_string_equal(stockd_client_errstr(f->c), "insufficient: not enough");
    assert_true(stockd_client_connected(f->c));   /* a server error keeps the connection */
}

/* A well-framed reply of the wrong shape is PROTOCOL; the stream is fine. */
static void test_decode_wrong_shape_keeps_connection(void **state)
{
    fx *f = *state;
    pk_buf b;
    reply_head(&b, 1);
    msgpack_pack_map(&b.pk, 1);
    codec_pack_kv_str(&b.pk, "order_id", "o");   /* lacks status, qty, ... */
    reply_send(f, &b);
    reply_head(&b, 2);
    codec_pack_cstr(&b.pk, "a string");         /* neither map nor array */
    reply_send(f, &b);
    stockd_order o;
    assert_int_equal(stockd_order_get(f->c, "o", &o), STOCKD_ERR_PROTOCOL);
    assert_non_null(strstr(stockd_client_errstr(f->c), "lacks a required field"));
    assert_true(stockd_client_connected(f->c));
    assert_int_equal(stockd_order_get(f->c, "o", &o), STOCKD_ERR_PROTOCOL);
    assert_non_null(strstr(stockd_client_errstr(f->c), "neither a map nor an array"));
    assert_true(stockd_client_connected(f->c));
}

/* Bytes that break the stream: the call fails and the connection closes. */
static void expect_broken(fx *f, const void *bytes, size_t n, stockd_rc want, const char *why)
{
    if (n)
        srv_write(f, bytes, n);
    stockd_stock st;
    assert_int_equal(stockd_stock_get(f->c, "s", &st), want);
    assert_non_null(strstr(stockd_client_errstr(f->c), why));
    assert_false(stockd_client_connected(f->c));
    assert_int_equal(stockd_client_inflight(f->c), 0);
}

static void test_reply_malformed(void **state)
{
    fx *f = *state;
    expect_broken(f, S("\xc1"), STOCKD_ERR_PROTOCOL, "malformed msgpack");
}

static void test_reply_oversized(void **state)
{
    fx *f = *state;
    /* [1, 1, nil, str32 of 5 MiB]: refused from its header, before the body */
    expect_broken(f, S("\x94\x01\x01\xc0\xdb\x00\x50\x00\x00"), STOCKD_ERR_PROTOCOL,
                  "larger than");
}

static void test_reply_truncated(void **state)
{
    fx *f = *state;
    srv_write(f, S("\x94\x01\x01\xc0\x81\xa3sku"));   /* half a reply, then the end */
    shutdown(f->sfd, SHUT_WR);
    expect_broken(f, NULL, 0, STOCKD_ERR_TRANSPORT, "closed by server");
}

static void test_reply_not_rpc(void **state)
{
    fx *f = *state;
    expect_broken(f, S("\x93\x01\x01\xc0"), STOCKD_ERR_PROTOCOL, "bad reply");
}

static void test_reply_unknown_msgid(void **state)
{
    fx *f = *state;
    expect_broken(f, S("\x94\x01\x63\xc0\x80"), STOCKD_ERR_PROTOCOL, "unknown msgid 99");
}

static void test_reply_server_request(void **state)
{
    fx *f = *state;
    expect_broken(f, S("\x94\x00\x01\xa4ping\x90"), STOCKD_ERR_PROTOCOL, "server sent a request");
}

static void test_reply_timeout(void **state)
{
    fx *f = *state;
    stockd_client_set_timeout(f->c, 100);
    expect_broken(f, NULL, 0, STOCKD_ERR_TRANSPORT, "timeout after 100 ms");
}

/* Replies that come out of order are held for their msgid; a notification
 * that arrives meanwhile waits for stockd_next_notification. */
static void test_held_replies_and_notifications(void **state)
{
    fx *f = *state;
    uint32_t id1, id2;
    assert_int_equal(stockd_send_order_op(f->c, "order.get", "o1", &id1), STOCKD_OK);
    assert_int_equal(stockd_send_order_op(f->c, "order.get", "o2", &id2), STOCKD_OK);
    assert_int_equal(stockd_flush(f->c), STOCKD_OK);
    pk_buf b;
    pb_init(&b);
    msgpack_pack_array(&b.pk, 3);
    msgpack_pack_uint8(&b.pk, RPC_NOTIFY);
    codec_pack_cstr(&b.pk, "order.update");
    msgpack_pack_array(&b.pk, 1);
    pack_order(&b.pk, "o9", "s9", "purchased", 4);
    reply_send(f, &b);
    send_order_reply(f, id2, "o2", "s");
    send_order_reply(f, id1, "o1", "s");

    stockd_reply r;
    stockd_order o;
    assert_int_equal(stockd_recv(f->c, id1, &r), STOCKD_OK);   /* id2's is held meanwhile */
    assert_int_equal(r.msgid, id1);
    assert_int_equal(stockd_reply_order(f->c, &r, &o), STOCKD_OK);
    assert_string_equal(o.order_id, "o1");
    assert_int_equal(stockd_recv(f->c, id2, &r), STOCKD_OK);
    assert_int_equal(stockd_reply_order(f->c, &r, &o), STOCKD_OK);
    assert_string_equal(o.order_id, "o2");

    const msgpack_object *msg;
    assert_int_equal(stockd_next_notification(f->c, 0, &msg), STOCKD_OK);
    assert_non_null(msg);
    assert_int_equal(stockd_notification_order(f->c, msg, &o), STOCKD_OK);
    assert_string_equal(o.order_id, "o9");
    assert_string_equal(o.status, "purchased");
    assert_int_equal(stockd_next_notification(f->c, 20, &msg), STOCKD_OK);
    assert_null(msg);   /* none in time: still connected */
    assert_true(stockd_client_connected(f->c));
}

/* ------------------------------------------------------------- the ring */

typedef struct ring_spec {
    int n_nodes;
    const char *host[3];
    unsigned port[3];
    const char *name[3];
    int n_points;
    uint64_t hash[8];
    unsigned owner[8];
} ring_spec;

static void pack_ring(msgpack_packer *pk, const ring_spec *s)
{
    msgpack_pack_map(pk, 3);
    codec_pack_cstr(pk, "nodes");
    msgpack_pack_array(pk, (uint32_t)s->n_nodes);
    for (int i = 0; i < s->n_nodes; i++) {
        msgpack_pack_map(pk, 3);
        codec_pack_kv_str(pk, "name", s->name[i]);
        codec_pack_kv_str(pk, "host", s->host[i]);
        codec_pack_kv_int(pk, "port", s->port[i]);
    }
    codec_pack_kv_str(pk, "version", "v1");
    codec_pack_cstr(pk, "points");
    msgpack_pack_array(pk, (uint32_t)s->n_points);
    for (int i = 0; i < s->n_points; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint64(pk, s->hash[i]);
        msgpack_pack_uint64(pk, s->owner[i]);
    }
}

/* Parses s as cluster.ring's result; NULL or the reason it is refused. */
static const char *ring_try(const ring_spec *s, stockd_ring *r)
{
    pk_buf b;
    pb_init(&b);
    pack_ring(&b.pk, s);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, b.sb.data, b.sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    memset(r, 0, sizeof *r);
    const char *why = client_ring_parse(r, &u.data);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b.sb);
    return why;
}

static void ring_clear(stockd_ring *r)
{
    free(r->hashes);
    free(r->owners);
}

/* The owner by a plain scan: the first point at or after the SKU's hash,
 * else the first point. */
static unsigned spec_owner(const ring_spec *s, const char *sku)
{
    uint64_t h = XXH3_64bits(sku, strlen(sku));
    for (int p = 0; p < s->n_points; p++)
        if (s->hash[p] >= h)
            return s->owner[p];
    return s->owner[0];
}

static const ring_spec ring3 = {
    .n_nodes = 3, .host = {"10.0.0.1", "10.0.0.2", "::1"}, .port = {7400, 7401, 7402},
    .name = {"n0", "n1", "n2"}, .n_points = 4,
    .hash = {1000, UINT64_C(1) << 62, UINT64_C(1) << 63, UINT64_MAX - 1000},
    .owner = {1, 2, 0, 1}};

static void test_ring_owner(void **state)
{
    (void)state;
    stockd_ring r;
    assert_null(ring_try(&ring3, &r));
    assert_int_equal(stockd_ring_node_count(&r), 3);
    assert_string_equal(stockd_ring_node_addr(&r, 0), "10.0.0.1:7400");
    assert_string_equal(stockd_ring_node_addr(&r, 2), "[::1]:7402");
    assert_string_equal(stockd_ring_node_name(&r, 1), "n1");
    assert_string_equal(stockd_ring_version(&r), "v1");
    /* every SKU goes to the first point at or after its hash, wrapping */
    for (int i = 0; i < 500; i++) {
        char sku[32];
        int n = snprintf(sku, sizeof sku, "sku-%d", i);
        assert_int_equal(stockd_ring_owner(&r, sku, (size_t)n), spec_owner(&ring3, sku));
    }
    ring_clear(&r);
    /* a point exactly at the SKU's hash is that SKU's owner */
    ring_spec exact = ring3;
    exact.hash[1] = XXH3_64bits("hoodie", 6);
    exact.hash[0] = exact.hash[1] - 1;
    exact.hash[2] = exact.hash[1] + 1;
    assert_null(ring_try(&exact, &r));
    assert_int_equal(stockd_ring_owner(&r, "hoodie", 6), exact.owner[1]);
    ring_clear(&r);
}

static void test_ring_refused(void **state)
{
    (void)state;
    stockd_ring r;
    ring_spec s = ring3;
    s.hash[1] = 1;   /* below hash[0] */
    assert_string_equal(ring_try(&s, &r), "points are not sorted by hash");
    ring_clear(&r);
    s = ring3;
    s.owner[2] = 3;
    assert_string_equal(ring_try(&s, &r), "a point is not [hash, node index]");
    ring_clear(&r);
    s = ring3;
    s.name[2] = "n0";
    assert_string_equal(ring_try(&s, &r), "a node is named twice");
    ring_clear(&r);
    s = ring3;
    s.port[1] = 0;
    assert_string_equal(ring_try(&s, &r), "a node's port is not 1..65535");
    ring_clear(&r);
    s = ring3;
    s.n_points = 0;
    assert_string_equal(ring_try(&s, &r), "no points");
    ring_clear(&r);
}

/* stockd_ring_fetch over the wire: cluster.ring's request and its reply. */
static void test_ring_fetch(void **state)
{
    fx *f = *state;
    pk_buf b;
    reply_head(&b, 1);
    pack_ring(&b.pk, &ring3);
    reply_send(f, &b);
    stockd_ring *r = NULL;
    assert_int_equal(stockd_ring_fetch(f->c, &r), STOCKD_OK);
    expect_bytes(f, S("\x94\x00\x01\xac" "cluster.ring\x91\x80"));
    assert_non_null(r);
    assert_int_equal(stockd_ring_node_count(r), 3);
    stockd_ring_free(r);
    /* a ring of the wrong shape is PROTOCOL */
    ring_spec bad = ring3;
    bad.hash[3] = 5;
    reply_head(&b, 2);
    pack_ring(&b.pk, &bad);
    reply_send(f, &b);
    assert_int_equal(stockd_ring_fetch(f->c, &r), STOCKD_ERR_PROTOCOL);
    assert_null(r);
    assert_non_null(strstr(stockd_client_errstr(f->c), "not sorted"));
}

/* ------------------------------------------------------- the router */

/* A scripted peer on a thread: answers cluster.ring with the ring and
 * stock.get with a stock view of the asked SKU, noting which SKUs it was
 * asked for, one connection after another until told to stop. */
typedef struct peer {
    int lfd;
    uint16_t port;
    const ring_spec *ring;
    pthread_t th;
    volatile int stop;
    pthread_mutex_t mu;
    char skus[16][16];
    int n_skus;
} peer;

static void peer_answer(peer *p, int fd, const msgpack_object *req)
{
    rpc_msg m;
    assert_true(rpc_msg_parse(req, &m, NULL));
    pk_buf b;
    reply_head(&b, m.msgid);
    if (m.method_len == 12 && memcmp(m.method, "cluster.ring", 12) == 0) {
        pack_ring(&b.pk, p->ring);
    } else {
        const msgpack_object *sku = codec_map_get(&m.params->via.array.ptr[0], "sku");
        char s[16] = "";
        client_copy_str(sku, s, sizeof s);
        pthread_mutex_lock(&p->mu);
        if (p->n_skus < 16)
            snprintf(p->skus[p->n_skus++], sizeof p->skus[0], "%s", s);
        pthread_mutex_unlock(&p->mu);
        msgpack_pack_map(&b.pk, 4);
        codec_pack_kv_str(&b.pk, "sku", s);
        codec_pack_kv_int(&b.pk, "available", p->port);
        codec_pack_kv_int(&b.pk, "own_on_hand", 1);
        codec_pack_kv_int(&b.pk, "own_reserved", 0);
    }
    assert_int_equal(write(fd, b.sb.data, b.sb.size), (ssize_t)b.sb.size);
    msgpack_sbuffer_destroy(&b.sb);
}

static void peer_serve(peer *p, int fd)
{
    uint8_t buf[4096];
    size_t n = 0;
    for (;;) {
        size_t fl;
        while (codec_frame_check(buf, n, sizeof buf, 32, &fl) == CODEC_FRAME_OK) {
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            size_t off = 0;
            assert_int_equal(msgpack_unpack_next(&u, (const char *)buf, fl, &off),
                             MSGPACK_UNPACK_SUCCESS);
            peer_answer(p, fd, &u.data);
            msgpack_unpacked_destroy(&u);
            memmove(buf, buf + fl, n - fl);
            n -= fl;
        }
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r <= 0)
            return;
        n += (size_t)r;
    }
}

static void *peer_main(void *arg)
{
    peer *p = arg;
    while (!p->stop) {
        struct pollfd pf = {.fd = p->lfd, .events = POLLIN};
        if (poll(&pf, 1, 50) != 1)
            continue;
        int fd = accept(p->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        peer_serve(p, fd);
        close(fd);
    }
    return NULL;
}

static void test_cluster_routes_to_owner(void **state)
{
    (void)state;
    peer peers[2] = {0};
    ring_spec ring = {.n_nodes = 2, .host = {"127.0.0.1", "127.0.0.1"}, .name = {"a", "b"},
                      .n_points = 2, .hash = {UINT64_C(1) << 62, UINT64_C(3) << 62},
                      .owner = {0, 1}};
    for (int i = 0; i < 2; i++) {
        peers[i].lfd = listen_any(&peers[i].port);
        ring.port[i] = peers[i].port;
    }
    for (int i = 0; i < 2; i++) {
        peers[i].ring = &ring;
        pthread_mutex_init(&peers[i].mu, NULL);
        assert_int_equal(pthread_create(&peers[i].th, NULL, peer_main, &peers[i]), 0);
    }
    stockd_cluster *cl = stockd_cluster_new();
    char seed[32];
    snprintf(seed, sizeof seed, "127.0.0.1:%u", peers[1].port);
    assert_int_equal(stockd_cluster_connect(cl, seed, 2000), STOCKD_OK);
    assert_int_equal(stockd_ring_node_count(stockd_cluster_ring(cl)), 2);
    int want[2] = {0, 0};
    for (int i = 0; i < 8; i++) {
        char sku[16];
        snprintf(sku, sizeof sku, "k%d", i);
        size_t owner = stockd_ring_owner(stockd_cluster_ring(cl), sku, strlen(sku));
        assert_int_equal(owner, spec_owner(&ring, sku));
        stockd_stock st;
        assert_int_equal(stockd_cluster_stock_get(cl, sku, &st), STOCKD_OK);
        assert_string_equal(st.sku, sku);
        assert_int_equal(st.available, peers[owner].port);   /* answered by the owner */
        want[owner]++;
    }
    stockd_cluster_free(cl);   /* closes: the peers go back to accepting */
    for (int i = 0; i < 2; i++) {
        peers[i].stop = 1;
        pthread_join(peers[i].th, NULL);
        close(peers[i].lfd);
        assert_int_equal(peers[i].n_skus, want[i]);
        for (int k = 0; k < peers[i].n_skus; k++)
            assert_int_equal(spec_owner(&ring, peers[i].skus[k]), i);
        pthread_mutex_destroy(&peers[i].mu);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_encode_reserve, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_encode_lines_and_order_op, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_encode_admin_token, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_encode_usage_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_decode_order_and_stock, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_decode_error_reply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_decode_wrong_shape_keeps_connection, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_reply_malformed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reply_oversized, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reply_truncated, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reply_not_rpc, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reply_unknown_msgid, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reply_server_request, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reply_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_held_replies_and_notifications, fx_setup,
                                        fx_teardown),
        cmocka_unit_test(test_ring_owner),
        cmocka_unit_test(test_ring_refused),
        cmocka_unit_test_setup_teardown(test_ring_fetch, fx_setup, fx_teardown),
        cmocka_unit_test(test_cluster_routes_to_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
