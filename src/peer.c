/* peer.c — pipelined msgpack-rpc client connections to peers; see peer.h. */
#include "stockd/peer.h"
#include "stockd/clock.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <uthash.h>

#include "stockd/codec.h"
#include "stockd/log.h"
#include "stockd/peer_auth.h"

#define PEER_BACKOFF_MIN_MS 50
#define PEER_BACKOFF_MAX_MS 2000
#define PEER_HOST_MAX 64

/* DOWN -> CONNECTING -> HELLO (peer.hello sent) -> AUTH (peer.auth sent)
 * -> UP; any failure -> DOWN (every call on it fails). Calls made before UP
 * wait in `pending`: nothing but the handshake goes out before the peer
 * proved the secret and accepted our proof. */
enum pconn_state { PC_DOWN = 0, PC_CONNECTING, PC_HELLO, PC_AUTH, PC_UP };

#define PEER_HANDSHAKE_MS 3000

typedef struct pconn pconn;

typedef struct pcall {
    uint32_t id;
    peer_reply_fn fn;
    void *ctx;
    const char *reason;          /* set when failed and waiting in the defer list */
    bool sent;                   /* packed onto a proven connection: may have run */
    pconn *pc;
    struct event timer;
    UT_hash_handle hh;
    struct pcall *next;          /* defer list / free list */
} pcall;

struct pconn {
    peer_pool *pool;
    char name[PEER_NODE_MAX + 1];  /* the node we mean to reach (its proof names it) */
    char host[PEER_HOST_MAX + 1];
    int port;
    enum pconn_state state;
    struct bufferevent *bev;
    struct evbuffer *pending;    /* calls packed before UP */
    struct event *hs_timer;      /* the handshake's deadline */
    uint8_t na[PEER_NONCE_BYTES], nb[PEER_NONCE_BYTES];
    int key;
    uint32_t backoff_ms;
    int64_t retry_at_ms;         /* DOWN: no connect before this */
    pcall *calls;                /* uthash by id: in flight on this connection */
    uint32_t n_calls;
    pconn *next;
};

struct peer_pool {
    struct event_base *base;
    char self[PEER_NODE_MAX + 1];
    const peer_keyring *keyring;
    pconn *conns;
    uint32_t next_id;
    pcall *free_calls;
    pcall *deferred_head, *deferred_tail;  /* failures to deliver from the loop */
    struct event *defer_ev;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    peer_stats st;
};


static pcall *call_get(peer_pool *p)
{
    pcall *c = p->free_calls;
    if (c != NULL)
        p->free_calls = c->next;
    else
        c = malloc(sizeof(*c));
    if (c != NULL)
        memset(c, 0, sizeof(*c));
    return c;
}

static void call_put(peer_pool *p, pcall *c)
{
    c->next = p->free_calls;
    p->free_calls = c;
}

/* Queues a failure for delivery from the loop (never inside peer_call). */
static void call_fail_later(peer_pool *p, pcall *c, const char *reason)
{
    c->reason = reason;
    c->next = NULL;
    if (p->deferred_tail)
        p->deferred_tail->next = c;
    else
        p->deferred_head = c;
    p->deferred_tail = c;
    event_active(p->defer_ev, EV_TIMEOUT, 0);
}

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    peer_pool *p = arg;
    pcall *c = p->deferred_head;
    p->deferred_head = p->deferred_tail = NULL;
    while (c != NULL) {
        pcall *next = c->next;
        p->st.failures++;
        c->fn(c->ctx, NULL, NULL, c->reason);
        call_put(p, c);
        c = next;
    }
}

/* Removes a call from its connection (timer stopped); the caller answers it. */
static void call_detach(pconn *pc, pcall *c)
{
    evtimer_del(&c->timer);
    HASH_DEL(pc->calls, c);
    assert(pc->n_calls > 0);
    pc->n_calls--;
    pc->pool->st.inflight--;
}

static void pconn_down(pconn *pc, const char *reason)
{
    peer_pool *p = pc->pool;
    if (pc->bev) {
        bufferevent_free(pc->bev);
        pc->bev = NULL;
    }
    if (pc->pending)
        evbuffer_drain(pc->pending, evbuffer_get_length(pc->pending));
    if (pc->hs_timer)
        evtimer_del(pc->hs_timer);
    if (pc->state == PC_CONNECTING)
        p->st.connect_failures++;
    if (pc->state == PC_HELLO || pc->state == PC_AUTH)
        p->st.auth_failures++;
    pc->state = PC_DOWN;
    pc->backoff_ms = pc->backoff_ms ? pc->backoff_ms * 2 : PEER_BACKOFF_MIN_MS;
    if (pc->backoff_ms > PEER_BACKOFF_MAX_MS)
        pc->backoff_ms = PEER_BACKOFF_MAX_MS;
    pc->retry_at_ms = clock_mono_ms() + pc->backoff_ms;
    pcall *c, *tmp;
    HASH_ITER(hh, pc->calls, c, tmp) {
        call_detach(pc, c);
        /* A call still waiting for the handshake never left: the peer
         * cannot have run it, whatever ended the connection. */
        call_fail_later(p, c, c->sent ? reason
                              : strcmp(reason, "unauthorized") == 0 ? reason : "unreachable");
    }
}

static void call_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pcall *c = arg;
    pconn *pc = c->pc;
    call_detach(pc, c);
    pc->pool->st.failures++;
    /* a late reply finds no call */
    c->fn(c->ctx, NULL, NULL, c->sent ? "timeout" : "unreachable");
    call_put(pc->pool, c);
}

static void pack_bin(msgpack_packer *pk, const char *key, const uint8_t *b, size_t n)
{
    codec_pack_cstr(pk, key);
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, b, n);
}

static int sb_evbuffer_write(void *data, const char *buf, size_t len)
{
    return evbuffer_add(data, buf, len);
}

/* Connected: say who we are, with a fresh nonce and the keys we hold. */
static void hs_hello(pconn *pc)
{
    peer_pool *p = pc->pool;
    const peer_keyring *kr = p->keyring;
    if (kr->n == 0 || !peer_nonce(pc->na)) {
        LOG_W("peer: no cluster secret (or no random bytes): not connecting", "peer", pc->name);
        pconn_down(pc, "unauthorized");
        return;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, bufferevent_get_output(pc->bev), sb_evbuffer_write);
    codec_pack_request_head(&pk, 0, "peer.hello");
    msgpack_pack_map(&pk, 3);
    codec_pack_kv_str(&pk, "node", p->self);
    pack_bin(&pk, "nonce", pc->na, PEER_NONCE_BYTES);
    codec_pack_cstr(&pk, "keys");
    msgpack_pack_array(&pk, (uint32_t)kr->n);
    for (int i = 0; i < kr->n; i++) {
        msgpack_pack_bin(&pk, PEER_KEY_ID_BYTES);
        msgpack_pack_bin_body(&pk, kr->k[i].id, PEER_KEY_ID_BYTES);
    }
    pc->state = PC_HELLO;
    struct timeval tv = {PEER_HANDSHAKE_MS / 1000, (PEER_HANDSHAKE_MS % 1000) * 1000};
    evtimer_add(pc->hs_timer, &tv);
}

static const uint8_t *bin_of(const msgpack_object *map, const char *key, size_t n)
{
    const msgpack_object *v = codec_map_get(map, key);
    if (v == NULL || v->type != MSGPACK_OBJECT_BIN || v->via.bin.size != n)
        return NULL;
    return (const uint8_t *)v->via.bin.ptr;
}

/* The answer to peer.hello or peer.auth. Returns false (and logs) when the
 * handshake failed; the caller takes the connection down. */
static bool hs_reply(pconn *pc, const rpc_msg *msg)
{
    peer_pool *p = pc->pool;
    const msgpack_object *err = msg->error;
    if (err != NULL && err->type != MSGPACK_OBJECT_NIL) {
        const msgpack_object *m = err->type == MSGPACK_OBJECT_MAP ? codec_map_get(err, "message") : NULL;
        char why[128] = "?";
        if (m != NULL && m->type == MSGPACK_OBJECT_STR)
            snprintf(why, sizeof why, "%.*s", (int)(m->via.str.size < 100 ? m->via.str.size : 100),
                     m->via.str.ptr);
        LOG_W("peer: handshake refused by the peer", "peer", pc->name, "why", why);
        return false;
    }
    const msgpack_object *res = msg->result;
    if (res == NULL || res->type != MSGPACK_OBJECT_MAP) {
        LOG_W("peer: handshake answer is not a map", "peer", pc->name);
        return false;
    }
    if (pc->state == PC_AUTH) {
        pc->state = PC_UP;
        evtimer_del(pc->hs_timer);
        p->st.auth_ok++;
        evbuffer_add_buffer(bufferevent_get_output(pc->bev), pc->pending);
        pcall *c, *tmp;
        HASH_ITER(hh, pc->calls, c, tmp)
            c->sent = true;
        return true;
    }
    const msgpack_object *node = codec_map_get(res, "node");
    const uint8_t *nb = bin_of(res, "nonce", PEER_NONCE_BYTES);
    const uint8_t *kid = bin_of(res, "key", PEER_KEY_ID_BYTES);
    const msgpack_object *mac = codec_map_get(res, "mac");
    size_t nl = strlen(pc->name);
    pc->key = kid ? peer_keyring_index(p->keyring, kid) : -1;
    if (node == NULL || node->type != MSGPACK_OBJECT_STR || node->via.str.size != nl ||
        memcmp(node->via.str.ptr, pc->name, nl) != 0 || nb == NULL || pc->key < 0 || mac == NULL ||
        mac->type != MSGPACK_OBJECT_BIN ||
        !peer_auth_check(p->keyring, pc->key, PEER_B_TO_A, p->self, pc->name, pc->na, nb,
                         (const uint8_t *)mac->via.bin.ptr, mac->via.bin.size)) {
        LOG_W("peer: the peer did not prove the cluster secret (or is another node)", "peer",
              pc->name);
        return false;
    }
    memcpy(pc->nb, nb, PEER_NONCE_BYTES);
    uint8_t proof[PEER_MAC_BYTES];
    peer_auth_mac(p->keyring, pc->key, PEER_A_TO_B, p->self, pc->name, pc->na, pc->nb, proof);
    msgpack_packer pk;
    msgpack_packer_init(&pk, bufferevent_get_output(pc->bev), sb_evbuffer_write);
    codec_pack_request_head(&pk, 0, "peer.auth");
    msgpack_pack_map(&pk, 1);
    pack_bin(&pk, "mac", proof, PEER_MAC_BYTES);
    pc->state = PC_AUTH;
    return true;
}

static void hs_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pconn *pc = arg;
    LOG_W("peer: handshake timed out", "peer", pc->name);
    pconn_down(pc, "unreachable");
}

static void pconn_read_cb(struct bufferevent *bev, void *arg)
{
    pconn *pc = arg;
    peer_pool *p = pc->pool;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return;
        size_t n = avail < PEER_REPLY_MAX ? avail : PEER_REPLY_MAX;
        const uint8_t *buf = evbuffer_pullup(in, (ev_ssize_t)n);
        size_t flen = 0;
        codec_frame fr = buf ? codec_frame_check(buf, n, PEER_REPLY_MAX, 32, &flen) : CODEC_FRAME_BAD;
        if (fr == CODEC_FRAME_NEED_MORE && n < PEER_REPLY_MAX)
            return;
        if (fr != CODEC_FRAME_OK) {
            LOG_W("peer: bad reply stream", "peer", pc->host);
            pconn_down(pc, "lost");
            return;
        }
        msgpack_object obj;
        size_t off = 0;
        rpc_msg msg;
        const char *why = NULL;
        msgpack_zone_clear(&p->zone);
        if (msgpack_unpack((const char *)buf, flen, &off, &p->zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
            !rpc_msg_parse(&obj, &msg, &why) || msg.type != RPC_RESPONSE) {
            pconn_down(pc, "lost");
            return;
        }
        if (pc->state == PC_HELLO || pc->state == PC_AUTH) {
            if (!hs_reply(pc, &msg)) {
                pconn_down(pc, "unauthorized");
                return;
            }
            evbuffer_drain(in, flen);
            continue;
        }
        pcall *c = NULL;
        uint32_t id = msg.msgid;
        HASH_FIND(hh, pc->calls, &id, sizeof(id), c);
        if (c != NULL) {
            call_detach(pc, c);
            p->st.replies++;
            c->fn(c->ctx, msg.error, msg.result, NULL);
            call_put(p, c);
        }
        evbuffer_drain(in, flen);
        if (pc->bev != bev)
            return;  /* the callback closed the pool's side */
    }
}

static void pconn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    pconn *pc = arg;
    if (what & BEV_EVENT_CONNECTED) {
        pc->backoff_ms = 0;
        pc->pool->st.connects++;
        int one = 1;
        setsockopt(bufferevent_getfd(pc->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        hs_hello(pc);
        return;
    }
    pconn_down(pc, pc->state == PC_CONNECTING ? "unreachable" : "lost");
}

static bool pconn_open(pconn *pc)
{
    peer_pool *p = pc->pool;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)pc->port);
    if (inet_pton(AF_INET, pc->host, &sin.sin_addr) != 1)
        return false;
    pc->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (pc->bev == NULL)
        return false;
    bufferevent_setcb(pc->bev, pconn_read_cb, NULL, pconn_event_cb, pc);
    bufferevent_enable(pc->bev, EV_READ | EV_WRITE);
    pc->state = PC_CONNECTING;
    if (bufferevent_socket_connect(pc->bev, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        pconn_down(pc, "unreachable");
        return false;
    }
    return true;
}

/* One connection per (name, host, port): a node that moved, or an address
 * that now names another node, gets a connection of its own. */
static pconn *pconn_find(peer_pool *p, const char *name, const char *host, int port)
{
    for (pconn *pc = p->conns; pc; pc = pc->next)
        if (pc->port == port && strcmp(pc->host, host) == 0 && strcmp(pc->name, name) == 0)
            return pc;
    if (strlen(host) > PEER_HOST_MAX || strlen(name) == 0 || strlen(name) > PEER_NODE_MAX)
        return NULL;
    pconn *pc = calloc(1, sizeof(*pc));
    if (pc == NULL)
        return NULL;
    pc->pool = p;
    pc->pending = evbuffer_new();
    pc->hs_timer = evtimer_new(p->base, hs_timeout_cb, pc);
    if (pc->pending == NULL || pc->hs_timer == NULL) {
        if (pc->pending)
            evbuffer_free(pc->pending);
        if (pc->hs_timer)
            event_free(pc->hs_timer);
        free(pc);
        return NULL;
    }
    strcpy(pc->name, name);
    strcpy(pc->host, host);
    pc->port = port;
    pc->next = p->conns;
    p->conns = pc;
    return pc;
}

void peer_call(peer_pool *p, const char *name, const char *host, int port, const char *method,
               const msgpack_object *params_map, const char *extra_key, uint64_t extra_val,
               uint32_t timeout_ms, peer_reply_fn fn, void *ctx)
{
    assert(params_map == NULL || params_map->type == MSGPACK_OBJECT_MAP);
    pcall *c = call_get(p);
    if (c == NULL) {
        fn(ctx, NULL, NULL, "busy");  /* out of memory: nothing was started */
        return;
    }
    c->fn = fn;
    c->ctx = ctx;
    p->st.calls++;
    pconn *pc = pconn_find(p, name, host, port);
    if (pc == NULL) {
        call_fail_later(p, c, "unreachable");
        return;
    }
    if (pc->n_calls >= PEER_INFLIGHT_MAX) {
        call_fail_later(p, c, "busy");
        return;
    }
    if (pc->state == PC_DOWN) {
        if (clock_mono_ms() < pc->retry_at_ms || !pconn_open(pc)) {
            call_fail_later(p, c, "unreachable");
            return;
        }
    }
    c->pc = pc;
    if (++p->next_id == 0)
        p->next_id = 1;  /* 0 is the handshake's */
    c->id = p->next_id;
    HASH_ADD(hh, pc->calls, id, sizeof(c->id), c);
    pc->n_calls++;
    p->st.inflight++;
    /* Packed straight into the connection's output buffer once it is up;
     * before, into `pending`, sent when the handshake succeeds. */
    msgpack_packer pk;
    c->sent = pc->state == PC_UP;
    msgpack_packer_init(&pk, c->sent ? bufferevent_get_output(pc->bev) : pc->pending,
                        sb_evbuffer_write);
    codec_pack_request_head(&pk, c->id, method);
    uint32_t n = params_map ? params_map->via.map.size : 0;
    msgpack_pack_map(&pk, n + (extra_key != NULL));
    for (uint32_t i = 0; i < n; i++) {
        msgpack_pack_object(&pk, params_map->via.map.ptr[i].key);
        msgpack_pack_object(&pk, params_map->via.map.ptr[i].val);
    }
    if (extra_key != NULL) {
        codec_pack_cstr(&pk, extra_key);
        msgpack_pack_uint64(&pk, extra_val);
    }
    evtimer_assign(&c->timer, p->base, call_timeout_cb, c);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(&c->timer, &tv);
}

peer_pool *peer_pool_new(struct event_base *base, const char *self, const peer_keyring *keyring)
{
    assert(self != NULL && keyring != NULL && strlen(self) <= PEER_NODE_MAX);
    peer_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->base = base;
    strcpy(p->self, self);
    p->keyring = keyring;
    p->defer_ev = event_new(base, -1, 0, defer_cb, p);
    if (p->defer_ev == NULL || !msgpack_zone_init(&p->zone, 4096)) {
        if (p->defer_ev)
            event_free(p->defer_ev);
        free(p);
        return NULL;
    }
    return p;
}

void peer_pool_free(peer_pool *p)
{
    if (p == NULL)
        return;
    for (pconn *pc = p->conns; pc; pc = pc->next)
        pconn_down(pc, "closing");
    defer_cb(-1, 0, p);
    while (p->conns) {
        pconn *pc = p->conns;
        p->conns = pc->next;
        evbuffer_free(pc->pending);
        event_free(pc->hs_timer);
        free(pc);
    }
    while (p->free_calls) {
        pcall *c = p->free_calls;
        p->free_calls = c->next;
        free(c);
    }
    event_free(p->defer_ev);
    msgpack_zone_destroy(&p->zone);
    free(p);
}

void peer_stats_get(const peer_pool *p, peer_stats *out)
{
    *out = p->st;
}
