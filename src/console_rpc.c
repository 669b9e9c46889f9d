/* console_rpc.c — the console's msgpack-rpc client (console_rpc.h). */
#include "stockd/console_rpc.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "stockd/codec.h"
#include "stockd/log.h"

#define CRPC_HOST_MAX 64

typedef struct target {
    struct crpc *c;
    char host[CRPC_HOST_MAX + 1];
    int port;
    struct bufferevent *bev;
    bool connected;
    struct target *next;
} target;

typedef struct call {
    struct crpc *c;
    uint32_t msgid;
    target *t;                    /* NULL once its connection is gone */
    struct event *timer;          /* its timeout; also fires a failure found earlier */
    const char *reason;           /* set: fail with it when the timer fires */
    crpc_fn fn;
    void *ctx;
    struct call *prev, *next;
} call;

struct crpc {
    struct event_base *base;
    target *targets;
    uint32_t n_targets;
    call *calls;
    uint32_t n_calls;
    uint32_t next_msgid;
    msgpack_sbuffer out;
    msgpack_packer pk;
    msgpack_zone zone;
};

static void call_unlink(call *k)
{
    crpc *c = k->c;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    c->n_calls--;
}

static void call_free(call *k)
{
    event_free(k->timer);
    free(k);
}

/* Ends a call with a failure from the loop (its timer), never from here. */
static void call_fail_later(call *k, const char *reason)
{
    k->t = NULL;
    k->reason = reason;
    event_active(k->timer, EV_TIMEOUT, 0);
}

static void call_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    call *k = arg;
    const char *reason = k->reason ? k->reason : "timeout";
    call_unlink(k);
    crpc_fn fn = k->fn;
    void *ctx = k->ctx;
    call_free(k);
    fn(ctx, NULL, NULL, reason);
}

/* Drops a connection: its calls fail from the loop. */
static void target_drop(target *t, const char *why)
{
    crpc *c = t->c;
    for (call *k = c->calls; k; k = k->next)
        if (k->t == t)
            call_fail_later(k, t->connected ? "lost" : "unreachable");
    target **pp = &c->targets;
    while (*pp != t)
        pp = &(*pp)->next;
    *pp = t->next;
    c->n_targets--;
    char port[16];
    snprintf(port, sizeof port, "%d", t->port);
    LOG_D("console rpc: connection dropped", "host", t->host, "port", port, "why", why);
    bufferevent_free(t->bev);
    free(t);
}

/* One reply frame: the call it answers gets it. */
static bool on_reply(target *t, const uint8_t *p, size_t n)
{
    crpc *c = t->c;
    msgpack_object obj;
    size_t off = 0;
    msgpack_zone_clear(&c->zone);
    if (msgpack_unpack((const char *)p, n, &off, &c->zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
        off != n)
        return false;
    rpc_msg msg;
    const char *why = NULL;
    if (!rpc_msg_parse(&obj, &msg, &why) || msg.type != RPC_RESPONSE)
        return false;
    for (call *k = c->calls; k; k = k->next) {
        if (k->msgid != msg.msgid || k->t != t)
            continue;
        call_unlink(k);
        crpc_fn fn = k->fn;
        void *ctx = k->ctx;
        call_free(k);
        const msgpack_object *err = msg.error->type == MSGPACK_OBJECT_NIL ? NULL : msg.error;
        fn(ctx, err, err ? NULL : msg.result, NULL);
        return true;
    }
    return true;  /* a reply to a call that timed out: dropped */
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    target *t = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
        size_t flen = 0;
        codec_frame f = p ? codec_frame_check(p, len, CRPC_REPLY_MAX, CODEC_DEPTH_CAP, &flen)
                          : CODEC_FRAME_BAD;
        if (f == CODEC_FRAME_NEED_MORE)
            return;
        /* A callback may call again (same target): the frame is handled
         * first, then drained, and t is never freed by a callback. */
        if (f != CODEC_FRAME_OK || !on_reply(t, p, flen)) {
            target_drop(t, f == CODEC_FRAME_TOO_LARGE ? "reply too large" : "bad reply");
            return;
        }
        evbuffer_drain(in, flen);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    target *t = arg;
    if (what & BEV_EVENT_CONNECTED) {
        t->connected = true;
        return;
    }
    target_drop(t, (what & BEV_EVENT_EOF) ? "closed by the node" : "socket error");
}

static target *target_get(crpc *c, const char *host, int port)
{
    for (target *t = c->targets; t; t = t->next)
        if (t->port == port && strcmp(t->host, host) == 0)
            return t;
    if (c->n_targets >= CRPC_TARGETS_MAX || strlen(host) > CRPC_HOST_MAX)
        return NULL;
    char addr[CRPC_HOST_MAX + 16];
    snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sl) != 0)
        return NULL;
    target *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!t->bev) {
        free(t);
        return NULL;
    }
    t->c = c;
    snprintf(t->host, sizeof t->host, "%s", host);
    t->port = port;
    bufferevent_setcb(t->bev, read_cb, NULL, event_cb, t);
    /* Replies are bounded: more unread input than one reply can hold is
     * not read until the frame in it is handled. */
    bufferevent_setwatermark(t->bev, EV_READ, 0, CRPC_REPLY_MAX + 4096);
    bufferevent_enable(t->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(t->bev, (struct sockaddr *)&ss, sl) != 0) {
        bufferevent_free(t->bev);
        free(t);
        return NULL;
    }
    t->next = c->targets;
    c->targets = t;
    c->n_targets++;
    return t;
}

int crpc_call(crpc *c, const char *host, int port, const char *method, crpc_pack_fn pack,
              const void *pack_ctx, uint32_t timeout_ms, crpc_fn fn, void *ctx)
{
    assert(c && host && method && pack && fn);
    if (c->n_calls >= CRPC_INFLIGHT_MAX)
        return -1;
    target *t = target_get(c, host, port);
    if (!t)
        return -1;
    call *k = calloc(1, sizeof *k);
    if (!k)
        return -1;
    k->timer = evtimer_new(c->base, call_timer_cb, k);
    if (!k->timer) {
        free(k);
        return -1;
    }
    k->c = c;
    k->msgid = c->next_msgid++;
    k->t = t;
    k->fn = fn;
    k->ctx = ctx;
    msgpack_sbuffer_clear(&c->out);
    codec_pack_request_head(&c->pk, k->msgid, method);
    pack(&c->pk, pack_ctx);
    if (bufferevent_write(t->bev, c->out.data, c->out.size) != 0) {
        call_free(k);
        return -1;
    }
    k->next = c->calls;
    if (c->calls)
        c->calls->prev = k;
    c->calls = k;
    c->n_calls++;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(k->timer, &tv);
    return 0;
}

crpc *crpc_new(struct event_base *base)
{
    crpc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    c->next_msgid = 1;
    msgpack_sbuffer_init(&c->out);
    msgpack_packer_init(&c->pk, &c->out, msgpack_sbuffer_write);
    if (!msgpack_zone_init(&c->zone, 4096)) {
        msgpack_sbuffer_destroy(&c->out);
        free(c);
        return NULL;
    }
    return c;
}

void crpc_free(crpc *c)
{
    if (!c)
        return;
    while (c->calls) {
        call *k = c->calls;
        call_unlink(k);
        call_free(k);
    }
    while (c->targets) {
        target *t = c->targets;
        c->targets = t->next;
        bufferevent_free(t->bev);
        free(t);
    }
    msgpack_zone_destroy(&c->zone);
    msgpack_sbuffer_destroy(&c->out);
    free(c);
}
