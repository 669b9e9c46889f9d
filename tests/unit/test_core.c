/* test_core.c — the node's core without MariaDB: requests go in through a
 * loopback connection as a gateway sends them, the batches the pump makes
 * land in this test's sink instead of the store, the test completes them
 * (committed, aborted, unknown then resolved) through the very callbacks
 * the store calls, and checks both the answers on the wire and the
 * engine's state. What it proves: an answer follows the outcome of the
 * batch and nothing else (a "no" changes nothing, an unknown says so and
 * holds the SKU until resolved, a resolve applies), work that queued while
 * the store was busy goes in one batch, and a store that is down refuses at
 * once with nothing queued.
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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <msgpack.h>

#include "stockd/config.h"
#include "stockd/core.h"
#include "stockd/engine.h"
#include "stockd/server.h"
#include "stockd/store.h"

/* ---- the sink: batches held until the test decides them ---------------- */

#define PENDING_MAX 64

typedef struct sink {
    bool up;
    bool busy;          /* every connection busy: can_commit says no */
    eng_batch *pending[PENDING_MAX];
    size_t n_pending;
    eng_batch *resolving[PENDING_MAX];
    size_t n_resolving;
    size_t commits;
} sink;

static bool sink_up(void *st) { return ((sink *)st)->up; }
static bool sink_can_commit(void *st)
{
    sink *k = st;
    return k->up && !k->busy && k->n_pending < PENDING_MAX;
}
static int sink_commit(void *st, eng_batch *b)
{
    sink *k = st;
    assert_true(k->n_pending < PENDING_MAX);
    k->pending[k->n_pending++] = b;
    k->commits++;
    return 0;
}
static void sink_resolve(void *st, eng_batch *b)
{
    sink *k = st;
    assert_true(k->n_resolving < PENDING_MAX);
    k->resolving[k->n_resolving++] = b;
}

/* ---- a node on the loop -------------------------------------------------- */

typedef struct fixture {
    struct event_base *base;
    stockd_config cfg;
    server *srv;
    store_callbacks cb;
    sink k;
    int port;
} fixture;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t n = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    assert_int_equal(event_base_priority_init(f->base, CONN_PRIOS), 0);
    f->port = free_port();
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", f->port);
    char *argv[] = {"stockd", "--listen", listen, "--node", "core-test", "--log-level", "warn",
                    NULL};
    char *envp[] = {NULL};
    char err[512];
    assert_int_equal(config_load(&f->cfg, 7, argv, envp, err, sizeof err), 0);
    f->srv = server_new(f->base, &f->cfg, err, sizeof err);
    assert_non_null(f->srv);
    server_store_callbacks(f->srv, &f->cb);
    f->k.up = true;
    core_set_sink(f->srv, &(core_sink){sink_up, sink_can_commit, sink_commit, sink_resolve, &f->k});
    assert_int_equal(server_listen(f->srv, err, sizeof err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    server_free(f->srv);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* Runs the loop until nothing is ready (a few rounds: accept, read, pump). */
static void spin(fixture *f)
{
    for (int i = 0; i < 20; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

/* Decides every pending batch with outcome; returns how many. */
static size_t decide_all(fixture *f, eng_outcome outcome, const char *err)
{
    size_t n = 0;
    while (f->k.n_pending > 0) {
        eng_batch *b = f->k.pending[0];
        memmove(f->k.pending, f->k.pending + 1, --f->k.n_pending * sizeof f->k.pending[0]);
        f->cb.on_commit(b, outcome, err, f->cb.arg);
        n++;
        spin(f);
    }
    return n;
}

/* ---- a gateway's connection ---------------------------------------------- */

typedef struct gw {
    int fd;
    msgpack_unpacker up;
    msgpack_unpacked msg;
} gw;

static void client_open(fixture *f, gw *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    assert_true(msgpack_unpacker_init(&c->up, 65536));
    msgpack_unpacked_init(&c->msg);
    spin(f);
}

static void client_close(gw *c)
{
    close(c->fd);
    msgpack_unpacked_destroy(&c->msg);
    msgpack_unpacker_destroy(&c->up);
}

/* One field of a request: a string, or an integer when s is NULL. */
typedef struct kv {
    const char *k;
    const char *s;
    int64_t i;
} kv;

static void pack_request(msgpack_sbuffer *sb, uint32_t msgid, const char *method, const kv *kvs,
                         size_t n)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, msgid);
    msgpack_pack_str_with_body(&pk, method, strlen(method));
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_str_with_body(&pk, kvs[i].k, strlen(kvs[i].k));
        if (kvs[i].s != NULL)
            msgpack_pack_str_with_body(&pk, kvs[i].s, strlen(kvs[i].s));
        else
            msgpack_pack_int64(&pk, kvs[i].i);
    }
}

static void send_bytes(gw *c, const msgpack_sbuffer *sb)
{
    assert_int_equal(write(c->fd, sb->data, sb->size), (ssize_t)sb->size);
}

static void send_request(gw *c, uint32_t msgid, const char *method, const kv *kvs, size_t n)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_request(&sb, msgid, method, kvs, n);
    send_bytes(c, &sb);
    msgpack_sbuffer_destroy(&sb);
}

/* The next response on c, spinning the loop until it comes: its error and
 * result (valid until the next call on c). */
static void next_reply(fixture *f, gw *c, uint32_t want_id, const msgpack_object **err,
                       const msgpack_object **res)
{
    for (int tries = 0; tries < 500; tries++) {
        if (msgpack_unpacker_next(&c->up, &c->msg) == MSGPACK_UNPACK_SUCCESS) {
            const msgpack_object *o = &c->msg.data;
            assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
            assert_int_equal(o->via.array.size, 4);
            assert_int_equal(o->via.array.ptr[0].via.u64, 1);
            assert_int_equal(o->via.array.ptr[1].via.u64, want_id);
            *err = &o->via.array.ptr[2];
            *res = &o->via.array.ptr[3];
            return;
        }
        spin(f);
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, 0) == 1) {
            assert_true(msgpack_unpacker_reserve_buffer(&c->up, 65536));
            ssize_t n = read(c->fd, msgpack_unpacker_buffer(&c->up), 65536);
            assert_true(n > 0);
            msgpack_unpacker_buffer_consumed(&c->up, (size_t)n);
        }
    }
    fail_msg("no reply to %u", want_id);
}

/* No reply waiting on c after the loop has run. */
static void assert_no_reply(fixture *f, gw *c)
{
    spin(f);
    struct pollfd p = {c->fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 0), 0);
}

static const msgpack_object *field(const msgpack_object *map, const char *k)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *p = &map->via.map.ptr[i];
        if (p->key.type == MSGPACK_OBJECT_STR && p->key.via.str.size == strlen(k) &&
            memcmp(p->key.via.str.ptr, k, p->key.via.str.size) == 0)
            return &p->val;
    }
    return NULL;
}

static void assert_str_field(const msgpack_object *map, const char *k, const char *want)
{
    const msgpack_object *v = field(map, k);
    assert_non_null(v);
    assert_int_equal(v->type, MSGPACK_OBJECT_STR);
    if (v->via.str.size != strlen(want) || memcmp(v->via.str.ptr, want, v->via.str.size) != 0)
        fail_msg("%s is '%.*s', want '%s'", k, (int)v->via.str.size, v->via.str.ptr, want);
}

static bool field_true(const msgpack_object *map, const char *k)
{
    const msgpack_object *v = field(map, k);
    return v != NULL && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
}

/* sku.put of own stock, committed. */
static void put_stock(fixture *f, gw *c, const char *sku, int64_t own)
{
    kv p[] = {{"sku", sku, 0}, {"own_on_hand", NULL, own}};
    send_request(c, 900, "sku.put", p, 2);
    spin(f);
    assert_int_equal(decide_all(f, ENG_COMMITTED, NULL), 1);
    const msgpack_object *err, *res;
    next_reply(f, c, 900, &err, &res);
    assert_int_equal(err->type, MSGPACK_OBJECT_NIL);
}

static eng_stock_view stock(fixture *f, const char *sku)
{
    eng_stock_view v;
    assert_true(engine_stock_get(server_engine(f->srv), sku, &v));
    return v;
}

/* ---- tests ---------------------------------------------------------------- */

/* Two hoodies, three buyers at once: one batch, two confirmed, one told
 * insufficient, and the engine holds exactly two reserved. */
static void test_hoodie(void **state)
{
    fixture *f = *state;
    gw c[3];
    for (int i = 0; i < 3; i++)
        client_open(f, &c[i]);
    put_stock(f, &c[0], "hoodie", 2);
    size_t before = f->k.commits;
    const char *orders[] = {"o1", "o2", "o3"};
    for (int i = 0; i < 3; i++) {
        kv p[] = {{"order_id", orders[i], 0}, {"sku", "hoodie", 0}, {"qty", NULL, 1}};
        send_request(&c[i], 1, "reserve", p, 3);
    }
    spin(f);
    assert_int_equal(decide_all(f, ENG_COMMITTED, NULL), 1);
    assert_int_equal(f->k.commits - before, 1);
    int confirmed = 0, insufficient = 0;
    for (int i = 0; i < 3; i++) {
        const msgpack_object *err, *res;
        next_reply(f, &c[i], 1, &err, &res);
        if (err->type == MSGPACK_OBJECT_NIL) {
            assert_str_field(res, "status", "confirmed");
            confirmed++;
        } else {
            assert_str_field(err, "code", "insufficient");
            insufficient++;
        }
    }
    assert_int_equal(confirmed, 2);
    assert_int_equal(insufficient, 1);
    eng_stock_view v = stock(f, "hoodie");
    assert_int_equal(v.available, 0);
    assert_int_equal(v.c.own_reserved, 2);
    for (int i = 0; i < 3; i++)
        client_close(&c[i]);
}

/* A batch MariaDB refused: the client hears a retryable no, and the engine
 * is as before; the same order then succeeds. */
static void test_aborted_changes_nothing(void **state)
{
    fixture *f = *state;
    gw c;
    client_open(f, &c);
    put_stock(f, &c, "tee", 3);
    kv p[] = {{"order_id", "a1", 0}, {"sku", "tee", 0}, {"qty", NULL, 2}};
    send_request(&c, 2, "reserve", p, 3);
    spin(f);
    assert_int_equal(decide_all(f, ENG_ABORTED, "Deadlock found"), 1);
    const msgpack_object *err, *res;
    next_reply(f, &c, 2, &err, &res);
    assert_int_equal(err->type, MSGPACK_OBJECT_MAP);
    assert_true(field_true(err, "retryable"));
    eng_stock_view v = stock(f, "tee");
    assert_int_equal(v.available, 3);
    assert_int_equal(v.c.own_reserved, 0);

    send_request(&c, 3, "reserve", p, 3);
    spin(f);
    assert_int_equal(decide_all(f, ENG_COMMITTED, NULL), 1);
    next_reply(f, &c, 3, &err, &res);
    assert_int_equal(err->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(stock(f, "tee").available, 1);
    client_close(&c);
}

/* A commit whose outcome is unknown: the answer says unknown (never yes,
 * never no), the core asks the store to resolve it, and the resolve's
 * answer is what the engine then holds. */
static void test_unknown_then_resolved(void **state)
{
    fixture *f = *state;
    gw c;
    client_open(f, &c);
    put_stock(f, &c, "cap", 5);
    kv p[] = {{"order_id", "u1", 0}, {"sku", "cap", 0}, {"qty", NULL, 1}};
    send_request(&c, 4, "reserve", p, 3);
    spin(f);
    assert_int_equal(decide_all(f, ENG_UNKNOWN, "Lost connection"), 1);
    const msgpack_object *err, *res;
    next_reply(f, &c, 4, &err, &res);
    assert_int_equal(err->type, MSGPACK_OBJECT_MAP);
    assert_str_field(err, "outcome", "unknown");
    assert_int_equal(f->k.n_resolving, 1);
    /* Until resolved nothing more is decided on the SKU: the next order
     * waits, neither answered nor batched (deciding it on a guess could
     * oversell or refuse wrongly). */
    kv w[] = {{"order_id", "u3", 0}, {"sku", "cap", 0}, {"qty", NULL, 1}};
    send_request(&c, 9, "reserve", w, 3);
    assert_no_reply(f, &c);
    assert_int_equal(f->k.n_pending, 0);

    eng_batch *b = f->k.resolving[--f->k.n_resolving];
    f->cb.on_resolve(b, true, f->cb.arg);
    spin(f);
    assert_int_equal(decide_all(f, ENG_COMMITTED, NULL), 1);
    next_reply(f, &c, 9, &err, &res);
    assert_int_equal(err->type, MSGPACK_OBJECT_NIL);
    eng_stock_view v = stock(f, "cap");
    assert_int_equal(v.available, 3);
    assert_int_equal(v.c.own_reserved, 2);
    kv g[] = {{"order_id", "u1", 0}};
    send_request(&c, 5, "order.get", g, 1);
    next_reply(f, &c, 5, &err, &res);
    assert_int_equal(err->type, MSGPACK_OBJECT_NIL);
    assert_str_field(res, "status", "confirmed");

    /* The other way: a resolve that finds nothing committed gives the stock back. */
    kv q[] = {{"order_id", "u2", 0}, {"sku", "cap", 0}, {"qty", NULL, 2}};
    send_request(&c, 6, "reserve", q, 3);
    spin(f);
    assert_int_equal(decide_all(f, ENG_UNKNOWN, "Lost connection"), 1);
    next_reply(f, &c, 6, &err, &res);
    assert_str_field(err, "outcome", "unknown");
    b = f->k.resolving[--f->k.n_resolving];
    f->cb.on_resolve(b, false, f->cb.arg);
    spin(f);
    assert_int_equal(stock(f, "cap").available, 3);
    client_close(&c);
}

/* Work that queued while every store connection was busy goes in one
 * batch when one comes free: many SKUs, one commit. */
static void test_queued_work_one_batch(void **state)
{
    fixture *f = *state;
    gw c;
    client_open(f, &c);
    f->k.busy = true;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char sku[16];
    for (int i = 0; i < 10; i++) {
        snprintf(sku, sizeof sku, "s%d", i);
        kv p[] = {{"sku", sku, 0}, {"own_on_hand", NULL, 1}};
        pack_request(&sb, (uint32_t)(100 + i), "sku.put", p, 2);
    }
    send_bytes(&c, &sb);
    msgpack_sbuffer_destroy(&sb);
    spin(f);
    assert_int_equal(f->k.n_pending, 0);
    f->k.busy = false;
    f->cb.on_idle(f->cb.arg);
    spin(f);
    assert_int_equal(f->k.n_pending, 1);
    const eng_sku_row *rows;
    assert_int_equal(eng_batch_sku_rows(f->k.pending[0], &rows), 10);
    /* Nothing is answered before the batch is decided. */
    assert_no_reply(f, &c);
    assert_int_equal(decide_all(f, ENG_COMMITTED, NULL), 1);
    for (int i = 0; i < 10; i++) {
        const msgpack_object *err, *res;
        next_reply(f, &c, (uint32_t)(100 + i), &err, &res);
        assert_int_equal(err->type, MSGPACK_OBJECT_NIL);
    }
    client_close(&c);
}

/* With the store down a change is refused at once, retryable, and nothing
 * waits or reaches a batch; reads still answer from memory. */
static void test_store_down_refuses(void **state)
{
    fixture *f = *state;
    gw c;
    client_open(f, &c);
    put_stock(f, &c, "mug", 4);
    f->k.up = false;
    size_t before = f->k.commits;
    kv p[] = {{"order_id", "d1", 0}, {"sku", "mug", 0}, {"qty", NULL, 1}};
    send_request(&c, 7, "reserve", p, 3);
    const msgpack_object *err, *res;
    next_reply(f, &c, 7, &err, &res);
    assert_str_field(err, "code", "unavailable");
    assert_true(field_true(err, "retryable"));
    assert_int_equal(f->k.commits, before);
    eng_stats es;
    engine_stats_get(server_engine(f->srv), &es);
    assert_int_equal(es.queued, 0);
    kv g[] = {{"sku", "mug", 0}};
    send_request(&c, 8, "stock.get", g, 1);
    next_reply(f, &c, 8, &err, &res);
    assert_int_equal(err->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(stock(f, "mug").available, 4);
    f->k.up = true;
    client_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hoodie, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aborted_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_then_resolved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_work_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_down_refuses, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
