/* client.c — blocking stockd client over MessagePack-RPC (see client.h).
 *
 * Shape: requests are packed into one output sbuffer and sent on flush;
 * received bytes go into an input buffer, are cut into frames by
 * codec_frame_check (so a hostile or broken server cannot make msgpack-c
 * allocate without bound), copied, and unpacked. A frame for a msgid nobody
 * asked for yet is kept ("held") until stockd_recv asks for it.
 */
#include "stockd/client.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "stockd/codec.h"

#include <xxhash.h>

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

/* ---------------------------------------------------------------- errors */

static stockd_rc client_fail(stockd_client *c, stockd_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static stockd_rc client_fail(stockd_client *c, stockd_rc rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
    va_end(ap);
    return rc;
}

static void client_drop_held(stockd_client *c)
{
    for (size_t i = 0; i < c->n_held; i++)
        free(c->held[i].bytes);
    c->n_held = 0;
    for (size_t i = 0; i < c->n_notes; i++)
        free(c->notes[i].bytes);
    c->n_notes = 0;
}

void stockd_client_close(stockd_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    msgpack_sbuffer_clear(&c->out);
    c->out_sent = 0;
    c->req_open = false;
    c->in_off = c->in_len = 0;
    c->inflight = 0;
    client_drop_held(c);
}

/* A failure after which the byte stream cannot be trusted: close. */
static stockd_rc client_broken(stockd_client *c, stockd_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static stockd_rc client_broken(stockd_client *c, stockd_rc rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
    va_end(ap);
    stockd_client_close(c);
    return rc;
}

const stockd_error *stockd_client_error(const stockd_client *c) { return &c->err; }
const char *stockd_client_errstr(const stockd_client *c) { return c->errstr; }
const msgpack_object *stockd_client_last_result(const stockd_client *c) { return c->last_result; }

const char *stockd_rc_name(stockd_rc rc)
{
    switch (rc) {
    case STOCKD_OK: return "ok";
    case STOCKD_ERR_SERVER: return "server error";
    case STOCKD_ERR_TRANSPORT: return "transport error";
    case STOCKD_ERR_PROTOCOL: return "protocol error";
    case STOCKD_ERR_USAGE: return "usage error";
    }
    return "?";
}

/* Every public call that sends or receives starts here: what the previous
 * call handed out dies now (as client.h promises). */
static void client_reset_call(stockd_client *c)
{
    msgpack_unpacked_destroy(&c->cur_u);
    msgpack_unpacked_init(&c->cur_u);
    free(c->cur);
    c->cur = NULL;
    c->last_result = NULL;
    memset(&c->err, 0, sizeof(c->err));
    c->errstr[0] = '\0';
}

/* ------------------------------------------------------------- lifecycle */

stockd_client *stockd_client_new(void)
{
    stockd_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = -1;
    c->timeout_ms = STOCKD_DEFAULT_TIMEOUT_MS;
    c->max_inflight = STOCKD_DEFAULT_MAX_INFLIGHT;
    c->next_msgid = 1;
    msgpack_sbuffer_init(&c->out);
    msgpack_packer_init(&c->pk, &c->out, msgpack_sbuffer_write);
    msgpack_unpacked_init(&c->cur_u);
    return c;
}

void stockd_client_free(stockd_client *c)
{
    if (!c)
        return;
    stockd_client_close(c);
    client_reset_call(c);
    msgpack_unpacked_destroy(&c->cur_u);
    msgpack_sbuffer_destroy(&c->out);
    free(c->in);
    free(c->held);
    free(c->notes);
    free(c);
}

bool stockd_client_connected(const stockd_client *c) { return c->fd >= 0; }
unsigned stockd_client_inflight(const stockd_client *c) { return c->inflight; }

void stockd_client_set_timeout(stockd_client *c, int timeout_ms)
{
    assert(timeout_ms > 0);
    c->timeout_ms = timeout_ms;
}

void stockd_client_set_max_inflight(stockd_client *c, unsigned n)
{
    c->max_inflight = n ? n : 1;
}

stockd_rc stockd_client_set_token(stockd_client *c, const char *token)
{
    if (!token) {
        c->has_token = false;
        c->token[0] = '\0';
        return STOCKD_OK;
    }
    size_t n = strlen(token);
    if (n > CLIENT_MAX_TOKEN_BYTES)
        return client_fail(c, STOCKD_ERR_USAGE, "token longer than %d bytes",
                           CLIENT_MAX_TOKEN_BYTES);
    memcpy(c->token, token, n + 1);
    c->has_token = true;
    return STOCKD_OK;
}

static int64_t client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int client_left_ms(int64_t deadline_ms)
{
    int64_t left = deadline_ms - client_now_ms();
    return left < 0 ? 0 : (int)left;
}

/* Splits "host:port" / "[v6]:port" into host and port buffers. */
static bool client_split_addr(const char *addr, char *host, size_t host_len, char *port,
                              size_t port_len)
{
    const char *h = addr, *colon;
    size_t hl;
    if (addr[0] == '[') {
        const char *close_br = strchr(addr, ']');
        if (!close_br || close_br[1] != ':')
            return false;
        h = addr + 1;
        hl = (size_t)(close_br - h);
        colon = close_br + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return false;
        hl = (size_t)(colon - addr);
    }
    size_t pl = strlen(colon + 1);
    if (hl == 0 || hl >= host_len || pl == 0 || pl >= port_len)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return strspn(port, "0123456789") == pl;
}

/* Non-blocking connect to one address, bounded by deadline. -1 + errno. */
static int client_connect_one(const struct addrinfo *ai, int64_t deadline_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n;
        do {
            n = poll(&p, 1, client_left_ms(deadline_ms));
        } while (n < 0 && errno == EINTR);
        if (n == 0)
            errno = ETIMEDOUT;
        if (n <= 0)
            goto fail;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            goto fail;
        if (soerr != 0) {
            errno = soerr;
            goto fail;
        }
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

stockd_rc stockd_client_connect(stockd_client *c, const char *addr, int timeout_ms)
{
    stockd_client_close(c);
    client_reset_call(c);
    if (timeout_ms > 0)
        c->timeout_ms = timeout_ms;
    if (!addr)
        addr = STOCKD_DEFAULT_ADDR;
    char host[256], port[16];
    if (!client_split_addr(addr, host, sizeof(host), port, sizeof(port)))
        return client_fail(c, STOCKD_ERR_USAGE, "bad address '%s' (want HOST:PORT)", addr);
    int64_t deadline = client_now_ms() + c->timeout_ms;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0)
        return client_fail(c, STOCKD_ERR_TRANSPORT, "resolve %s: %s", host, gai_strerror(gai));
    int err = 0;
    for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next) {
        c->fd = client_connect_one(ai, deadline);
        if (c->fd < 0)
            err = errno;
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        return client_fail(c, STOCKD_ERR_TRANSPORT, "connect %s: %s", addr, strerror(err));
    return STOCKD_OK;
}

/* ------------------------------------------------------------------- I/O */

/* Reads what is available into the input buffer. Returns 1 when bytes
 * arrived, 0 when it would block (or the buffer is full), -1 when the
 * connection is gone (c is closed, errstr set). */
static int client_read_some(stockd_client *c)
{
    if (c->in_off > 0 && c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
    if (c->in_cap - c->in_len < CLIENT_READ_CHUNK && c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_cap - c->in_len < CLIENT_READ_CHUNK) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 2 * CLIENT_READ_CHUNK;
        if (cap > CLIENT_MAX_INPUT_BYTES)
            return 0;   /* caller stops reading until frames are taken */
        uint8_t *p = realloc(c->in, cap);
        if (!p) {
            client_broken(c, STOCKD_ERR_TRANSPORT, "out of memory for input");
            return -1;
        }
        c->in = p;
        c->in_cap = cap;
    }
    ssize_t n;
    do {
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->in_len += (size_t)n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n == 0)
        client_broken(c, STOCKD_ERR_TRANSPORT, "connection closed by server");
    else
        client_broken(c, STOCKD_ERR_TRANSPORT, "recv: %s", strerror(errno));
    return -1;
}

/* Waits for events until deadline. Returns revents, 0 on timeout, -1 on
 * poll failure. */
static int client_wait(stockd_client *c, short events, int64_t deadline_ms)
{
    struct pollfd p = {.fd = c->fd, .events = events};
    int n;
    do {
        n = poll(&p, 1, client_left_ms(deadline_ms));
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    return n == 0 ? 0 : p.revents;
}

/* Sends every queued byte. While the socket is full it keeps reading, so a
 * server answering a long pipeline cannot deadlock against us. */
static stockd_rc client_flush_until(stockd_client *c, int64_t deadline_ms)
{
    assert(!c->req_open);
    while (c->out_sent < c->out.size) {
        ssize_t n = send(c->fd, c->out.data + c->out_sent, c->out.size - c->out_sent,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->out_sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return client_broken(c, STOCKD_ERR_TRANSPORT, "send: %s", strerror(errno));
        int ev = client_wait(c, POLLOUT | POLLIN, deadline_ms);
        if (ev == 0)
            return client_broken(c, STOCKD_ERR_TRANSPORT, "timeout sending requests");
        if (ev < 0)
            return client_broken(c, STOCKD_ERR_TRANSPORT, "poll: %s", strerror(errno));
        if ((ev & (POLLIN | POLLHUP | POLLERR)) && client_read_some(c) < 0)
            return STOCKD_ERR_TRANSPORT;
    }
    msgpack_sbuffer_clear(&c->out);
    c->out_sent = 0;
    return STOCKD_OK;
}

stockd_rc stockd_flush(stockd_client *c)
{
    if (c->fd < 0)
        return client_fail(c, STOCKD_ERR_TRANSPORT, "not connected");
    if (c->req_open)
        return client_fail(c, STOCKD_ERR_USAGE, "a request is open (call stockd_request_end)");
    return client_flush_until(c, client_now_ms() + c->timeout_ms);
}

/* ---------------------------------------------------------------- frames */

/* Cuts the next complete frame off the input into a heap copy. Returns OK
 * with *bytes set, OK with *bytes NULL when more input is needed, or
 * PROTOCOL (connection closed) when the stream is malformed. */
static stockd_rc client_next_frame(stockd_client *c, uint8_t **bytes, size_t *len)
{
    *bytes = NULL;
    size_t fl;
    codec_frame r = codec_frame_check(c->in + c->in_off, c->in_len - c->in_off,
                                      STOCKD_MAX_REPLY_BYTES, CLIENT_MAX_DEPTH, &fl);
    if (r == CODEC_FRAME_NEED_MORE)
        return STOCKD_OK;
    if (r == CODEC_FRAME_TOO_LARGE)
        return client_broken(c, STOCKD_ERR_PROTOCOL, "reply larger than %u bytes",
                             STOCKD_MAX_REPLY_BYTES);
    if (r != CODEC_FRAME_OK)
        return client_broken(c, STOCKD_ERR_PROTOCOL, "malformed msgpack from server");
    uint8_t *copy = malloc(fl);
    if (!copy)
        return client_broken(c, STOCKD_ERR_TRANSPORT, "out of memory for a reply");
    memcpy(copy, c->in + c->in_off, fl);
    c->in_off += fl;
    *bytes = copy;
    *len = fl;
    return STOCKD_OK;
}

/* Unpacks a checked frame into u and reads its RPC header. */
static stockd_rc client_unpack(stockd_client *c, const uint8_t *bytes, size_t len,
                               msgpack_unpacked *u, rpc_msg *m)
{
    size_t off = 0;
    msgpack_unpacked_destroy(u);
    msgpack_unpacked_init(u);
    if (msgpack_unpack_next(u, (const char *)bytes, len, &off) != MSGPACK_UNPACK_SUCCESS)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "reply could not be unpacked");
    const char *why = "?";
    if (!rpc_msg_parse(&u->data, m, &why))
        return client_fail(c, STOCKD_ERR_PROTOCOL, "bad reply: %s", why);
    return STOCKD_OK;
}

static void client_copy_str(const msgpack_object *o, char *buf, size_t buf_len)
{
    assert(buf_len > 0);
    buf[0] = '\0';
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return;
    size_t n = o->via.str.size < buf_len - 1 ? o->via.str.size : buf_len - 1;
    memcpy(buf, o->via.str.ptr, n);
    buf[n] = '\0';
}

static bool client_get_int(const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *o = codec_map_get(map, key);
    if (!o)
        return false;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return true;
    }
    return false;
}

/* Fills c->err from an error map. */
static stockd_rc client_parse_error(stockd_client *c, const msgpack_object *e)
{
    stockd_error *err = &c->err;
    const msgpack_object *code = codec_map_get(e, "code");
    if (e->type != MSGPACK_OBJECT_MAP || !code || code->type != MSGPACK_OBJECT_STR)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "error reply without a code");
    client_copy_str(code, err->code, sizeof(err->code));
    client_copy_str(codec_map_get(e, "message"), err->message, sizeof(err->message));
    const msgpack_object *r = codec_map_get(e, "retryable");
    err->retryable = r && r->type == MSGPACK_OBJECT_BOOLEAN && r->via.boolean;
    err->has_available = client_get_int(e, "available", &err->available);
    client_copy_str(codec_map_get(e, "status"), err->status, sizeof(err->status));
    client_copy_str(codec_map_get(e, "field"), err->field, sizeof(err->field));
    client_copy_str(codec_map_get(e, "outcome"), err->outcome, sizeof(err->outcome));
    client_copy_str(codec_map_get(e, "method"), err->method, sizeof(err->method));
    err->has_line = client_get_int(e, "line", &err->line);
    client_copy_str(codec_map_get(e, "sku"), err->sku, sizeof(err->sku));
    snprintf(c->errstr, sizeof(c->errstr), "%s: %s", err->code, err->message);
    return STOCKD_ERR_SERVER;
}

/* Makes bytes (a frame for the caller) the current reply and fills *reply. */
static stockd_rc client_take(stockd_client *c, uint8_t *bytes, size_t len, stockd_reply *reply)
{
    assert(c->inflight > 0);
    c->inflight--;
    c->cur = bytes;
    rpc_msg m;
    stockd_rc rc = client_unpack(c, bytes, len, &c->cur_u, &m);
    if (rc != STOCKD_OK)
        return rc;
    memset(reply, 0, sizeof(*reply));
    reply->msgid = m.msgid;
    reply->error = m.error;
    reply->result = m.result;
    if (m.error->type != MSGPACK_OBJECT_NIL)
        return client_parse_error(c, m.error);
    /* A map; alerts.list answers an array. */
    if (m.result->type != MSGPACK_OBJECT_MAP && m.result->type != MSGPACK_OBJECT_ARRAY)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "result is neither a map nor an array");
    c->last_result = m.result;
    return STOCKD_OK;
}

static stockd_rc client_hold(stockd_client *c, uint32_t msgid, uint8_t *bytes, size_t len)
{
    /* An honest server sends at most one reply per request in flight. */
    if (c->n_held + 1 >= c->inflight) {
        free(bytes);
        return client_broken(c, STOCKD_ERR_PROTOCOL,
                             "reply for unknown msgid %u (or the awaited msgid was not in flight)",
                             msgid);
    }
    if (c->n_held == c->cap_held) {
        size_t cap = c->cap_held ? c->cap_held * 2 : 16;
        held_reply *h = realloc(c->held, cap * sizeof(*h));
        if (!h) {
            free(bytes);
            return client_broken(c, STOCKD_ERR_TRANSPORT, "out of memory for held replies");
        }
        c->held = h;
        c->cap_held = cap;
    }
    c->held[c->n_held++] = (held_reply){msgid, bytes, len};
    return STOCKD_OK;
}

/* Queues a notification frame (takes bytes); the oldest goes when full. */
static stockd_rc client_note(stockd_client *c, uint8_t *bytes, size_t len)
{
    if (c->n_notes >= STOCKD_MAX_QUEUED_NOTIFICATIONS) {
        free(c->notes[0].bytes);
        memmove(&c->notes[0], &c->notes[1], (c->n_notes - 1) * sizeof(c->notes[0]));
        c->n_notes--;
        c->notes_dropped++;
    }
    if (c->n_notes == c->cap_notes) {
        size_t cap = c->cap_notes ? c->cap_notes * 2 : 16;
        held_reply *h = realloc(c->notes, cap * sizeof(*h));
        if (!h) {
            free(bytes);
            return client_broken(c, STOCKD_ERR_TRANSPORT, "out of memory for notifications");
        }
        c->notes = h;
        c->cap_notes = cap;
    }
    c->notes[c->n_notes++] = (held_reply){0, bytes, len};
    return STOCKD_OK;
}

/* Receives until the reply for msgid (or any, when any) arrives. */
static stockd_rc client_recv(stockd_client *c, bool any, uint32_t msgid, stockd_reply *reply)
{
    client_reset_call(c);
    memset(reply, 0, sizeof(*reply));
    if (c->req_open)
        return client_fail(c, STOCKD_ERR_USAGE, "a request is open (call stockd_request_end)");
    for (size_t i = 0; i < c->n_held; i++) {
        if (any || c->held[i].msgid == msgid) {
            held_reply h = c->held[i];
            memmove(&c->held[i], &c->held[i + 1], (c->n_held - i - 1) * sizeof(h));
            c->n_held--;
            return client_take(c, h.bytes, h.len, reply);
        }
    }
    if (c->fd < 0)
        return client_fail(c, STOCKD_ERR_TRANSPORT, "not connected");
    /* msgids are handed out in increasing order from 1, so one at or past
     * next_msgid was never sent (an already-taken one cannot be told apart). */
    if (c->inflight == c->n_held || (!any && (msgid == 0 || msgid >= c->next_msgid)))
        return client_fail(c, STOCKD_ERR_USAGE, "no request in flight for msgid %u", msgid);
    int64_t deadline = client_now_ms() + c->timeout_ms;
    stockd_rc rc = client_flush_until(c, deadline);
    if (rc != STOCKD_OK)
        return rc;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (;;) {
        uint8_t *bytes;
        size_t len;
        rc = client_next_frame(c, &bytes, &len);
        if (rc != STOCKD_OK)
            break;
        if (bytes) {
            rpc_msg m;
            rc = client_unpack(c, bytes, len, &u, &m);
            if (rc != STOCKD_OK) {
                char why[sizeof(c->errstr)];
                memcpy(why, c->errstr, sizeof(why));
                free(bytes);
                client_broken(c, rc, "%s", why);
                break;
            }
            if (m.type == RPC_NOTIFY) {   /* order.update: for stockd_next_notification */
                rc = client_note(c, bytes, len);
                if (rc != STOCKD_OK)
                    break;
                continue;
            }
            if (m.type != RPC_RESPONSE) {
                free(bytes);
                rc = client_broken(c, STOCKD_ERR_PROTOCOL, "server sent a request");
                break;
            }
            if (any || m.msgid == msgid) {
                msgpack_unpacked_destroy(&u);
                return client_take(c, bytes, len, reply);
            }
            rc = client_hold(c, m.msgid, bytes, len);
            if (rc != STOCKD_OK)
                break;
            continue;
        }
        int ev = client_wait(c, POLLIN, deadline);
        if (ev == 0) {
            rc = client_broken(c, STOCKD_ERR_TRANSPORT, "timeout after %d ms waiting for a reply",
                               c->timeout_ms);
            break;
        }
        if (ev < 0) {
            rc = client_broken(c, STOCKD_ERR_TRANSPORT, "poll: %s", strerror(errno));
            break;
        }
        if (client_read_some(c) < 0) {
            rc = STOCKD_ERR_TRANSPORT;
            break;
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

stockd_rc stockd_recv(stockd_client *c, uint32_t msgid, stockd_reply *reply)
{
    return client_recv(c, false, msgid, reply);
}

stockd_rc stockd_recv_any(stockd_client *c, stockd_reply *reply)
{
    return client_recv(c, true, 0, reply);
}

/* -------------------------------------------------------------- requests */

stockd_rc stockd_request_begin(stockd_client *c, const char *method, msgpack_packer **pk)
{
    client_reset_call(c);
    *pk = NULL;
    if (c->fd < 0)
        return client_fail(c, STOCKD_ERR_TRANSPORT, "not connected");
    if (c->req_open)
        return client_fail(c, STOCKD_ERR_USAGE, "a request is already open");
    if (c->inflight >= c->max_inflight)
        return client_fail(c, STOCKD_ERR_USAGE, "%u requests in flight (the limit)",
                           c->inflight);
    if (!method || strlen(method) == 0 || strlen(method) > CLIENT_MAX_METHOD_BYTES)
        return client_fail(c, STOCKD_ERR_USAGE, "bad method name");
    c->req_start = c->out.size;
    c->req_msgid = c->next_msgid++;
    if (codec_pack_request_head(&c->pk, c->req_msgid, method) != 0) {
        c->out.size = c->req_start;
        return client_fail(c, STOCKD_ERR_USAGE, "out of memory packing a request");
    }
    c->req_open = true;
    *pk = &c->pk;
    return STOCKD_OK;
}

void stockd_request_abort(stockd_client *c)
{
    if (!c->req_open)
        return;
    c->out.size = c->req_start;   /* drops the partial frame; sbuffer keeps its memory */
    c->req_open = false;
}

/* The open frame must be one request whose params array holds one map. */
static bool client_request_ok(stockd_client *c)
{
    const uint8_t *p = (const uint8_t *)c->out.data + c->req_start;
    size_t n = c->out.size - c->req_start, fl;
    if (codec_frame_check(p, n, SIZE_MAX, CLIENT_MAX_DEPTH, &fl) != CODEC_FRAME_OK || fl != n)
        return false;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    rpc_msg m;
    bool ok = msgpack_unpack_next(&u, (const char *)p, n, &off) == MSGPACK_UNPACK_SUCCESS &&
              rpc_msg_parse(&u.data, &m, NULL) && m.params->via.array.size == 1 &&
              m.params->via.array.ptr[0].type == MSGPACK_OBJECT_MAP;
    msgpack_unpacked_destroy(&u);
    return ok;
}

stockd_rc stockd_request_end(stockd_client *c, uint32_t *msgid)
{
    if (!c->req_open)
        return client_fail(c, STOCKD_ERR_USAGE, "no request is open");
    if (!client_request_ok(c)) {
        stockd_request_abort(c);
        return client_fail(c, STOCKD_ERR_USAGE, "params must be exactly one map");
    }
    c->req_open = false;
    c->inflight++;
    if (msgid)
        *msgid = c->req_msgid;
    if (c->out.size - c->out_sent >= CLIENT_SEND_AT_BYTES)
        return client_flush_until(c, client_now_ms() + c->timeout_ms);
    return STOCKD_OK;
}

stockd_rc stockd_request_call(stockd_client *c, stockd_reply *reply)
{
    uint32_t msgid;
    stockd_rc rc = stockd_request_end(c, &msgid);
    if (rc != STOCKD_OK)
        return rc;
    return stockd_recv(c, msgid, reply);
}

/* ---------------------------------------------------------- typed: send */

/* Ends a typed request whose packing returned pack_rc. */
static stockd_rc client_end_typed(stockd_client *c, int pack_rc, uint32_t *msgid)
{
    if (pack_rc != 0) {
        stockd_request_abort(c);
        return client_fail(c, STOCKD_ERR_USAGE, "out of memory packing a request");
    }
    return stockd_request_end(c, msgid);
}

static int client_pack_token(stockd_client *c, msgpack_packer *pk)
{
    return c->has_token ? codec_pack_kv_str(pk, "token", c->token) : 0;
}

stockd_rc stockd_send_reserve(stockd_client *c, const stockd_reserve_req *req, uint32_t *msgid)
{
    if (!req || !req->order_id || !req->sku)
        return client_fail(c, STOCKD_ERR_USAGE, "reserve needs order_id and sku");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "reserve", &pk);
    if (rc != STOCKD_OK)
        return rc;
    uint32_t n = 3 + (req->hold_ms != 0) + (req->deadline_ms != 0);
    int r = msgpack_pack_map(pk, n) || codec_pack_kv_str(pk, "order_id", req->order_id) ||
            codec_pack_kv_str(pk, "sku", req->sku) || codec_pack_kv_int(pk, "qty", req->qty);
    if (!r && req->hold_ms != 0)
        r = codec_pack_kv_int(pk, "hold_ms", req->hold_ms);
    if (!r && req->deadline_ms != 0)
        r = codec_pack_kv_int(pk, "deadline_ms", req->deadline_ms);
    return client_end_typed(c, r, msgid);
}

stockd_rc stockd_send_reserve_lines(stockd_client *c, const stockd_reserve_lines_req *req,
                                    uint32_t *msgid)
{
    if (!req || !req->order_id || !req->lines || req->n_lines == 0 ||
        req->n_lines > STOCKD_MAX_LINES)
        return client_fail(c, STOCKD_ERR_USAGE, "reserve needs order_id and 1..%d lines",
                           STOCKD_MAX_LINES);
    for (size_t i = 0; i < req->n_lines; i++) {
        if (!req->lines[i].sku)
            return client_fail(c, STOCKD_ERR_USAGE, "line %zu has no sku", i);
    }
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "reserve", &pk);
    if (rc != STOCKD_OK)
        return rc;
    uint32_t n = 2 + (req->hold_ms != 0) + (req->deadline_ms != 0);
    int r = msgpack_pack_map(pk, n) || codec_pack_kv_str(pk, "order_id", req->order_id) ||
            codec_pack_cstr(pk, "lines") || msgpack_pack_array(pk, (uint32_t)req->n_lines);
    for (size_t i = 0; i < req->n_lines && !r; i++)
        r = msgpack_pack_map(pk, 2) || codec_pack_kv_str(pk, "sku", req->lines[i].sku) ||
            codec_pack_kv_int(pk, "qty", req->lines[i].qty);
    if (!r && req->hold_ms != 0)
        r = codec_pack_kv_int(pk, "hold_ms", req->hold_ms);
    if (!r && req->deadline_ms != 0)
        r = codec_pack_kv_int(pk, "deadline_ms", req->deadline_ms);
    return client_end_typed(c, r, msgid);
}

static stockd_rc client_send_one_str(stockd_client *c, const char *method, const char *key,
                                     const char *val, uint32_t *msgid)
{
    if (!val)
        return client_fail(c, STOCKD_ERR_USAGE, "%s needs %s", method, key);
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, method, &pk);
    if (rc != STOCKD_OK)
        return rc;
    int r = msgpack_pack_map(pk, 1) || codec_pack_kv_str(pk, key, val);
    return client_end_typed(c, r, msgid);
}

stockd_rc stockd_send_order_op(stockd_client *c, const char *method, const char *order_id,
                               uint32_t *msgid)
{
    if (!method || (strcmp(method, "confirm") && strcmp(method, "release") &&
                    strcmp(method, "ship") && strcmp(method, "order.get")))
        return client_fail(c, STOCKD_ERR_USAGE, "not an order method: %s",
                           method ? method : "(null)");
    return client_send_one_str(c, method, "order_id", order_id, msgid);
}

stockd_rc stockd_send_stock_get(stockd_client *c, const char *sku, uint32_t *msgid)
{
    return client_send_one_str(c, "stock.get", "sku", sku, msgid);
}

static int client_pack_supplier(msgpack_packer *pk, const stockd_sku_put_req *req)
{
    return codec_pack_cstr(pk, "supplier") ||
           msgpack_pack_map(pk, 3 + req->has_sku_id + req->has_cap) ||
           codec_pack_kv_str(pk, "supplier_id", req->supplier_id) ||
           codec_pack_kv_int(pk, "offer_id", req->offer_id) ||
           codec_pack_kv_str(pk, "spec_id", req->spec_id) ||
           (req->has_sku_id && codec_pack_kv_int(pk, "sku_id", req->sku_id)) ||
           (req->has_cap && codec_pack_kv_int(pk, "cap", req->cap));
}

stockd_rc stockd_send_sku_put(stockd_client *c, const stockd_sku_put_req *req, uint32_t *msgid)
{
    if (!req || !req->sku)
        return client_fail(c, STOCKD_ERR_USAGE, "sku.put needs sku");
    if (req->has_supplier && (!req->supplier_id || !req->spec_id))
        return client_fail(c, STOCKD_ERR_USAGE, "supplier needs supplier_id and spec_id");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "sku.put", &pk);
    if (rc != STOCKD_OK)
        return rc;
    uint32_t n = 1 + req->has_own_on_hand + req->has_supplier_reported + req->has_supplier +
                 c->has_token;
    int r = msgpack_pack_map(pk, n) || codec_pack_kv_str(pk, "sku", req->sku) ||
            (req->has_own_on_hand && codec_pack_kv_int(pk, "own_on_hand", req->own_on_hand)) ||
            (req->has_supplier_reported &&
             codec_pack_kv_int(pk, "supplier_reported", req->supplier_reported)) ||
            (req->has_supplier && client_pack_supplier(pk, req)) || client_pack_token(c, pk);
    return client_end_typed(c, r, msgid);
}

stockd_rc stockd_send_stock_adjust(stockd_client *c, const char *sku, int64_t delta,
                                   const char *reason, uint32_t *msgid)
{
    if (!sku || !reason)
        return client_fail(c, STOCKD_ERR_USAGE, "stock.adjust needs sku and reason");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "stock.adjust", &pk);
    if (rc != STOCKD_OK)
        return rc;
    int r = msgpack_pack_map(pk, 3 + c->has_token) || codec_pack_kv_str(pk, "sku", sku) ||
            codec_pack_kv_int(pk, "delta", delta) || codec_pack_kv_str(pk, "reason", reason) ||
            client_pack_token(c, pk);
    return client_end_typed(c, r, msgid);
}

/* -------------------------------------------------------- typed: replies */

/* The "lines" of an order record (absent: none listed). */
static stockd_rc client_order_lines(stockd_client *c, const msgpack_object *a, stockd_order *out)
{
    if (a == NULL)
        return STOCKD_OK;
    if (a->type != MSGPACK_OBJECT_ARRAY)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "order record lines is not an array");
    for (uint32_t i = 0; i < a->via.array.size && i < STOCKD_MAX_LINES; i++) {
        const msgpack_object *l = &a->via.array.ptr[i];
        stockd_order_line *o = &out->lines[i];
        if (l->type != MSGPACK_OBJECT_MAP || !client_get_int(l, "line", &o->line) ||
            !client_get_int(l, "qty", &o->qty) || !client_get_int(l, "from_own", &o->from_own) ||
            !client_get_int(l, "from_supplier", &o->from_supplier))
            return client_fail(c, STOCKD_ERR_PROTOCOL, "order record line %u lacks a field", i);
        client_copy_str(codec_map_get(l, "sku"), o->sku, sizeof(o->sku));
        client_copy_str(codec_map_get(l, "status"), o->status, sizeof(o->status));
        client_copy_str(codec_map_get(l, "upstream_order_id"), o->upstream_order_id,
                        sizeof(o->upstream_order_id));
        out->n_lines_listed = i + 1;
    }
    return STOCKD_OK;
}

stockd_rc stockd_reply_order(stockd_client *c, const stockd_reply *r, stockd_order *out)
{
    memset(out, 0, sizeof(*out));
    const msgpack_object *m = r->result;
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "order record is not a map");
    const msgpack_object *id = codec_map_get(m, "order_id");
    const msgpack_object *status = codec_map_get(m, "status");
    if (!id || id->type != MSGPACK_OBJECT_STR || !status || status->type != MSGPACK_OBJECT_STR ||
        !client_get_int(m, "qty", &out->qty) || !client_get_int(m, "from_own", &out->from_own) ||
        !client_get_int(m, "from_supplier", &out->from_supplier) ||
        !client_get_int(m, "available", &out->available))
        return client_fail(c, STOCKD_ERR_PROTOCOL, "order record lacks a required field");
    client_copy_str(id, out->order_id, sizeof(out->order_id));
    client_copy_str(status, out->status, sizeof(out->status));
    client_copy_str(codec_map_get(m, "sku"), out->sku, sizeof(out->sku));
    (void)client_get_int(m, "created_at", &out->created_at);
    (void)client_get_int(m, "updated_at", &out->updated_at);
    (void)client_get_int(m, "hold_expires_at", &out->hold_expires_at);
    client_copy_str(codec_map_get(m, "upstream_order_id"), out->upstream_order_id,
                    sizeof(out->upstream_order_id));
    client_copy_str(codec_map_get(m, "reason"), out->reason, sizeof(out->reason));
    (void)client_get_int(m, "purchased_at", &out->purchased_at);
    const msgpack_object *settled = codec_map_get(m, "supplier_settled");
    out->supplier_settled = settled && settled->type == MSGPACK_OBJECT_BOOLEAN && settled->via.boolean;
    out->n_lines = 1;
    out->part_line = -1;
    (void)client_get_int(m, "n_lines", &out->n_lines);
    (void)client_get_int(m, "line", &out->part_line);
    return client_order_lines(c, codec_map_get(m, "lines"), out);
}

stockd_rc stockd_reply_stock(stockd_client *c, const stockd_reply *r, stockd_stock *out)
{
    memset(out, 0, sizeof(*out));
    const msgpack_object *m = r->result;
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "stock view is not a map");
    if (!client_get_int(m, "available", &out->available) ||
        !client_get_int(m, "own_on_hand", &out->own_on_hand) ||
        !client_get_int(m, "own_reserved", &out->own_reserved))
        return client_fail(c, STOCKD_ERR_PROTOCOL, "stock view lacks a required field");
    client_copy_str(codec_map_get(m, "sku"), out->sku, sizeof(out->sku));
    (void)client_get_int(m, "supplier_reported", &out->supplier_reported);
    (void)client_get_int(m, "supplier_sellable", &out->supplier_sellable);
    (void)client_get_int(m, "supplier_reserved", &out->supplier_reserved);
    (void)client_get_int(m, "supplier_synced_at", &out->supplier_synced_at);
    client_copy_str(codec_map_get(m, "mapping"), out->mapping, sizeof(out->mapping));
    out->cap = -1;
    const msgpack_object *sup = codec_map_get(m, "supplier");
    if (sup && sup->type == MSGPACK_OBJECT_MAP) {
        out->has_supplier = true;
        client_copy_str(codec_map_get(sup, "supplier_id"), out->supplier_id, sizeof(out->supplier_id));
        client_copy_str(codec_map_get(sup, "spec_id"), out->spec_id, sizeof(out->spec_id));
        (void)client_get_int(sup, "offer_id", &out->offer_id);
        (void)client_get_int(sup, "sku_id", &out->sku_id);
        (void)client_get_int(sup, "cap", &out->cap);
    }
    const msgpack_object *t = codec_map_get(m, "trust");
    if (t && (t->type == MSGPACK_OBJECT_FLOAT64 || t->type == MSGPACK_OBJECT_FLOAT32))
        out->trust = t->via.f64;
    return STOCKD_OK;
}

/* ---------------------------------------------------------- typed: sync */

static stockd_rc client_wait_order(stockd_client *c, stockd_rc rc, uint32_t msgid,
                                   stockd_order *out)
{
    stockd_reply r;
    if (rc == STOCKD_OK)
        rc = stockd_recv(c, msgid, &r);
    if (rc == STOCKD_OK && out)
        rc = stockd_reply_order(c, &r, out);
    return rc;
}

static stockd_rc client_wait_stock(stockd_client *c, stockd_rc rc, uint32_t msgid,
                                   stockd_stock *out)
{
    stockd_reply r;
    if (rc == STOCKD_OK)
        rc = stockd_recv(c, msgid, &r);
    if (rc == STOCKD_OK && out)
        rc = stockd_reply_stock(c, &r, out);
    return rc;
}

stockd_rc stockd_ping(stockd_client *c, char *node, size_t node_len, char *version,
                      size_t version_len)
{
    msgpack_packer *pk;
    stockd_reply r;
    stockd_rc rc = stockd_request_begin(c, "ping", &pk);
    if (rc != STOCKD_OK)
        return rc;
    if (msgpack_pack_map(pk, 0) != 0)
        return client_end_typed(c, -1, NULL);
    rc = stockd_request_call(c, &r);
    if (rc != STOCKD_OK)
        return rc;
    if (node && node_len)
        client_copy_str(codec_map_get(r.result, "node"), node, node_len);
    if (version && version_len)
        client_copy_str(codec_map_get(r.result, "version"), version, version_len);
    return STOCKD_OK;
}

stockd_rc stockd_reserve(stockd_client *c, const stockd_reserve_req *req, stockd_order *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_reserve(c, req, &id);
    return client_wait_order(c, rc, id, out);
}

stockd_rc stockd_reserve_lines(stockd_client *c, const stockd_reserve_lines_req *req,
                               stockd_order *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_reserve_lines(c, req, &id);
    return client_wait_order(c, rc, id, out);
}

static stockd_rc client_order_op(stockd_client *c, const char *method, const char *order_id,
                                 stockd_order *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_order_op(c, method, order_id, &id);
    return client_wait_order(c, rc, id, out);
}

stockd_rc stockd_confirm(stockd_client *c, const char *order_id, stockd_order *out)
{
    return client_order_op(c, "confirm", order_id, out);
}

stockd_rc stockd_release(stockd_client *c, const char *order_id, stockd_order *out)
{
    return client_order_op(c, "release", order_id, out);
}

stockd_rc stockd_ship(stockd_client *c, const char *order_id, stockd_order *out)
{
    return client_order_op(c, "ship", order_id, out);
}

stockd_rc stockd_order_get(stockd_client *c, const char *order_id, stockd_order *out)
{
    return client_order_op(c, "order.get", order_id, out);
}

stockd_rc stockd_stock_get(stockd_client *c, const char *sku, stockd_stock *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_stock_get(c, sku, &id);
    return client_wait_stock(c, rc, id, out);
}

stockd_rc stockd_sku_put(stockd_client *c, const stockd_sku_put_req *req, stockd_stock *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_sku_put(c, req, &id);
    return client_wait_stock(c, rc, id, out);
}

stockd_rc stockd_stock_adjust(stockd_client *c, const char *sku, int64_t delta,
                              const char *reason, stockd_stock *out)
{
    uint32_t id = 0;
    stockd_rc rc = stockd_send_stock_adjust(c, sku, delta, reason, &id);
    return client_wait_stock(c, rc, id, out);
}

stockd_rc stockd_stats(stockd_client *c, const msgpack_object **stats)
{
    msgpack_packer *pk;
    stockd_reply r;
    *stats = NULL;
    stockd_rc rc = stockd_request_begin(c, "stats", &pk);
    if (rc != STOCKD_OK)
        return rc;
    if (msgpack_pack_map(pk, 0) != 0)
        return client_end_typed(c, -1, NULL);
    rc = stockd_request_call(c, &r);
    if (rc == STOCKD_OK)
        *stats = r.result;
    return rc;
}

/* ------------------------------------------------- supplier round */

/* Sends a request whose params were packed (pack_rc) and waits for it. */
static stockd_rc client_call_raw(stockd_client *c, int pack_rc, const msgpack_object **result)
{
    stockd_reply r;
    *result = NULL;
    if (pack_rc != 0)
        return client_end_typed(c, pack_rc, NULL);
    stockd_rc rc = stockd_request_call(c, &r);
    if (rc == STOCKD_OK)
        *result = r.result;
    return rc;
}

static int client_pack_factor(msgpack_packer *pk, const char *key, double v)
{
    return codec_pack_cstr(pk, key) || msgpack_pack_double(pk, v);
}

stockd_rc stockd_supplier_put(stockd_client *c, const stockd_supplier_put_req *req,
                              const msgpack_object **result)
{
    *result = NULL;
    if (!req || !req->supplier_id)
        return client_fail(c, STOCKD_ERR_USAGE, "supplier.put needs supplier_id");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "supplier.put", &pk);
    if (rc != STOCKD_OK)
        return rc;
    uint32_t n = 1 + req->has_trust + req->has_ceiling + req->has_event_mode +
                 req->has_event_trust + c->has_token;
    int r = msgpack_pack_map(pk, n) || codec_pack_kv_str(pk, "supplier_id", req->supplier_id) ||
            (req->has_trust && client_pack_factor(pk, "trust", req->trust)) ||
            (req->has_ceiling && client_pack_factor(pk, "trust_ceiling", req->ceiling)) ||
            (req->has_event_mode && codec_pack_kv_bool(pk, "event_mode", req->event_mode)) ||
            (req->has_event_trust && client_pack_factor(pk, "event_trust", req->event_trust)) ||
            client_pack_token(c, pk);
    return client_call_raw(c, r, result);
}

stockd_rc stockd_supplier_get(stockd_client *c, const char *supplier_id,
                              const msgpack_object **result)
{
    *result = NULL;
    if (!supplier_id)
        return client_fail(c, STOCKD_ERR_USAGE, "supplier.get needs supplier_id");
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "supplier.get", &pk);
    if (rc != STOCKD_OK)
        return rc;
    int r = msgpack_pack_map(pk, 1) || codec_pack_kv_str(pk, "supplier_id", supplier_id);
    return client_call_raw(c, r, result);
}

stockd_rc stockd_alerts_list(stockd_client *c, unsigned limit, const msgpack_object **alerts)
{
    *alerts = NULL;
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, "alerts.list", &pk);
    if (rc != STOCKD_OK)
        return rc;
    int r = msgpack_pack_map(pk, limit > 0) ||
            (limit > 0 && codec_pack_kv_int(pk, "limit", limit));
    rc = client_call_raw(c, r, alerts);
    if (rc == STOCKD_OK && (*alerts)->type != MSGPACK_OBJECT_ARRAY) {
        *alerts = NULL;
        return client_fail(c, STOCKD_ERR_PROTOCOL, "alerts.list result is not an array");
    }
    return rc;
}

stockd_rc stockd_order_subscribe(stockd_client *c)
{
    msgpack_packer *pk;
    const msgpack_object *res;
    stockd_rc rc = stockd_request_begin(c, "order.subscribe", &pk);
    if (rc != STOCKD_OK)
        return rc;
    return client_call_raw(c, msgpack_pack_map(pk, 0), &res);
}

unsigned long stockd_notifications_dropped(const stockd_client *c) { return c->notes_dropped; }

/* Hands out the oldest queued notification as the current frame. */
static stockd_rc client_take_note(stockd_client *c, const msgpack_object **msg)
{
    held_reply h = c->notes[0];
    memmove(&c->notes[0], &c->notes[1], (c->n_notes - 1) * sizeof(h));
    c->n_notes--;
    c->cur = h.bytes;
    rpc_msg m;
    stockd_rc rc = client_unpack(c, h.bytes, h.len, &c->cur_u, &m);
    if (rc == STOCKD_OK)
        *msg = &c->cur_u.data;
    return rc;
}

stockd_rc stockd_next_notification(stockd_client *c, int timeout_ms, const msgpack_object **msg)
{
    client_reset_call(c);
    *msg = NULL;
    if (c->req_open)
        return client_fail(c, STOCKD_ERR_USAGE, "a request is open (call stockd_request_end)");
    if (c->n_notes > 0)
        return client_take_note(c, msg);
    if (c->fd < 0)
        return client_fail(c, STOCKD_ERR_TRANSPORT, "not connected");
    int64_t deadline = client_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    stockd_rc rc = client_flush_until(c, client_now_ms() + c->timeout_ms);
    if (rc != STOCKD_OK)
        return rc;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (;;) {
        uint8_t *bytes;
        size_t len;
        rc = client_next_frame(c, &bytes, &len);
        if (rc != STOCKD_OK)
            break;
        if (bytes) {
            rpc_msg m;
            rc = client_unpack(c, bytes, len, &u, &m);
            if (rc == STOCKD_OK && m.type == RPC_NOTIFY) {
                msgpack_unpacked_destroy(&u);
                if ((rc = client_note(c, bytes, len)) != STOCKD_OK)
                    return rc;
                return client_take_note(c, msg);
            }
            /* A reply to a request in flight: kept for stockd_recv. */
            if (rc == STOCKD_OK && m.type == RPC_RESPONSE && c->n_held < c->inflight) {
                rc = client_hold(c, m.msgid, bytes, len);
                if (rc != STOCKD_OK)
                    break;
                continue;
            }
            free(bytes);
            rc = client_broken(c, STOCKD_ERR_PROTOCOL, "unexpected message from server");
            break;
        }
        int ev = client_wait(c, POLLIN, deadline);
        if (ev == 0)
            break;  /* nothing in time: rc is OK, *msg NULL */
        if (ev < 0) {
            rc = client_broken(c, STOCKD_ERR_TRANSPORT, "poll: %s", strerror(errno));
            break;
        }
        if (client_read_some(c) < 0) {
            rc = STOCKD_ERR_TRANSPORT;
            break;
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

stockd_rc stockd_notification_order(stockd_client *c, const msgpack_object *msg, stockd_order *out)
{
    memset(out, 0, sizeof(*out));
    if (!msg || msg->type != MSGPACK_OBJECT_ARRAY || msg->via.array.size != 3)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "not a notification");
    const msgpack_object *method = &msg->via.array.ptr[1], *params = &msg->via.array.ptr[2];
    if (method->type != MSGPACK_OBJECT_STR || method->via.str.size != 12 ||
        memcmp(method->via.str.ptr, "order.update", 12) != 0 ||
        params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size != 1)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "not an order.update notification");
    stockd_reply r = {.result = &params->via.array.ptr[0]};
    return stockd_reply_order(c, &r, out);
}

/* ------------------------------------------------------------ the ring */

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

void stockd_ring_free(stockd_ring *r)
{
    if (r == NULL)
        return;
    free(r->hashes);
    free(r->owners);
    free(r);
}

size_t stockd_ring_node_count(const stockd_ring *r) { return r->n_nodes; }
const char *stockd_ring_version(const stockd_ring *r) { return r->version; }

const char *stockd_ring_node_name(const stockd_ring *r, size_t i)
{
    assert(i < r->n_nodes);
    return r->names[i];
}

const char *stockd_ring_node_addr(const stockd_ring *r, size_t i)
{
    assert(i < r->n_nodes);
    return r->addrs[i];
}

size_t stockd_ring_owner(const stockd_ring *r, const void *sku, size_t len)
{
    assert(r->n_points > 0);
    uint64_t h = XXH3_64bits(sku, len);
    size_t lo = 0, hi = r->n_points;      /* the first point with hash >= h */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->hashes[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return r->owners[lo == r->n_points ? 0 : lo];
}

static bool ring_str_ok(const msgpack_object *o, size_t max)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size > 0 && o->via.str.size <= max;
}

/* One {"name","host","port"} of the nodes array. */
static const char *ring_take_node(stockd_ring *r, size_t i, const msgpack_object *n)
{
    if (n->type != MSGPACK_OBJECT_MAP)
        return "a node is not a map";
    const msgpack_object *name = codec_map_get(n, "name"), *host = codec_map_get(n, "host");
    const msgpack_object *port = codec_map_get(n, "port");
    if (!ring_str_ok(name, STOCKD_MAX_ID_BYTES) || !ring_str_ok(host, 64))
        return "a node lacks a name or host (1..64 bytes)";
    if (!port || port->type != MSGPACK_OBJECT_POSITIVE_INTEGER || port->via.u64 == 0 ||
        port->via.u64 > 65535)
        return "a node's port is not 1..65535";
    client_copy_str(name, r->names[i], sizeof r->names[i]);
    char hbuf[65];
    client_copy_str(host, hbuf, sizeof hbuf);
    bool v6 = strchr(hbuf, ':') != NULL;
    snprintf(r->addrs[i], sizeof r->addrs[i], v6 ? "[%s]:%u" : "%s:%u", hbuf,
             (unsigned)port->via.u64);
    for (size_t k = 0; k < i; k++)
        if (strcmp(r->names[k], r->names[i]) == 0)
            return "a node is named twice";
    return NULL;
}

/* The [[hash, node], ...] array, sorted by hash. */
static const char *ring_take_points(stockd_ring *r, const msgpack_object *pts)
{
    if (!pts || pts->type != MSGPACK_OBJECT_ARRAY || pts->via.array.size == 0)
        return "no points";
    size_t n = pts->via.array.size;
    if (n > r->n_nodes * STOCKD_RING_VNODES_MAX)
        return "more points than nodes x vnodes allow";
    r->hashes = malloc(n * sizeof *r->hashes);
    r->owners = malloc(n * sizeof *r->owners);
    if (!r->hashes || !r->owners)
        return "out of memory";
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *p = &pts->via.array.ptr[i];
        if (p->type != MSGPACK_OBJECT_ARRAY || p->via.array.size != 2 ||
            p->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            p->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            p->via.array.ptr[1].via.u64 >= r->n_nodes)
            return "a point is not [hash, node index]";
        r->hashes[i] = p->via.array.ptr[0].via.u64;
        r->owners[i] = (uint16_t)p->via.array.ptr[1].via.u64;
        if (i > 0 && r->hashes[i] < r->hashes[i - 1])
            return "points are not sorted by hash";
    }
    r->n_points = n;
    return NULL;
}

static const char *ring_parse(stockd_ring *r, const msgpack_object *res)
{
    const msgpack_object *nodes = codec_map_get(res, "nodes");
    if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY || nodes->via.array.size == 0 ||
        nodes->via.array.size > STOCKD_RING_NODES_MAX)
        return "nodes is not an array of 1..64";
    r->n_nodes = nodes->via.array.size;
    for (size_t i = 0; i < r->n_nodes; i++) {
        const char *why = ring_take_node(r, i, &nodes->via.array.ptr[i]);
        if (why)
            return why;
    }
    const msgpack_object *v = codec_map_get(res, "version");
    if (v && v->type == MSGPACK_OBJECT_STR)
        client_copy_str(v, r->version, sizeof r->version);
    else if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(r->version, sizeof r->version, "%016" PRIx64, v->via.u64);
    else
        return "no version";
    return ring_take_points(r, codec_map_get(res, "points"));
}

stockd_rc stockd_ring_fetch(stockd_client *c, stockd_ring **out)
{
    *out = NULL;
    msgpack_packer *pk;
    stockd_reply rep;
    stockd_rc rc = stockd_request_begin(c, "cluster.ring", &pk);
    if (rc != STOCKD_OK)
        return rc;
    if (msgpack_pack_map(pk, 0) != 0)
        return client_end_typed(c, -1, NULL);
    rc = stockd_request_call(c, &rep);
    if (rc != STOCKD_OK)
        return rc;
    stockd_ring *r = calloc(1, sizeof *r);
    if (r == NULL)
        return client_fail(c, STOCKD_ERR_USAGE, "out of memory for the ring");
    const char *why = ring_parse(r, rep.result);
    if (why) {
        stockd_ring_free(r);
        return client_fail(c, STOCKD_ERR_PROTOCOL, "cluster.ring: %s", why);
    }
    *out = r;
    return STOCKD_OK;
}

/* ------------------------------------------------- ring-aware routing */

struct stockd_cluster {
    char seed[STOCKD_RING_ADDR_MAX];
    int timeout_ms;
    stockd_ring *ring;
    stockd_client *conns[STOCKD_RING_NODES_MAX];   /* by ring node index; lazily connected */
    stockd_client *last;                            /* the client of the last call */
    unsigned refreshes;
    char errstr[320];
};

stockd_cluster *stockd_cluster_new(void)
{
    stockd_cluster *cl = calloc(1, sizeof *cl);
    if (cl)
        cl->timeout_ms = STOCKD_DEFAULT_TIMEOUT_MS;
    return cl;
}

static void cluster_drop_conns(stockd_cluster *cl)
{
    for (size_t i = 0; i < STOCKD_RING_NODES_MAX; i++) {
        stockd_client_free(cl->conns[i]);
        cl->conns[i] = NULL;
    }
    cl->last = NULL;
}

void stockd_cluster_free(stockd_cluster *cl)
{
    if (cl == NULL)
        return;
    cluster_drop_conns(cl);
    stockd_ring_free(cl->ring);
    free(cl);
}

void stockd_cluster_set_timeout(stockd_cluster *cl, int timeout_ms)
{
    if (timeout_ms > 0)
        cl->timeout_ms = timeout_ms;
}

const stockd_ring *stockd_cluster_ring(const stockd_cluster *cl) { return cl->ring; }
const char *stockd_cluster_errstr(const stockd_cluster *cl) { return cl->errstr; }
unsigned stockd_cluster_refreshes(const stockd_cluster *cl) { return cl->refreshes; }

const stockd_error *stockd_cluster_error(const stockd_cluster *cl)
{
    static const stockd_error none;   /* read-only: not mutable global state */
    return cl->last ? stockd_client_error(cl->last) : &none;
}

/* Fetches the ring from addr; on success it replaces the current one and
 * the per-node connections whose address changed are dropped. */
static stockd_rc cluster_fetch_from(stockd_cluster *cl, const char *addr)
{
    stockd_client *c = stockd_client_new();
    if (c == NULL)
        return STOCKD_ERR_USAGE;
    stockd_ring *r = NULL;
    stockd_rc rc = stockd_client_connect(c, addr, cl->timeout_ms);
    if (rc == STOCKD_OK)
        rc = stockd_ring_fetch(c, &r);
    if (rc != STOCKD_OK) {
        snprintf(cl->errstr, sizeof cl->errstr, "cluster.ring from %s: %s", addr,
                 stockd_client_errstr(c));
        stockd_client_free(c);
        return rc;
    }
    stockd_client_free(c);
    stockd_client *keep[STOCKD_RING_NODES_MAX] = {0};
    for (size_t i = 0; i < r->n_nodes && cl->ring; i++) {
        for (size_t k = 0; k < cl->ring->n_nodes; k++) {
            if (cl->conns[k] && strcmp(cl->ring->addrs[k], r->addrs[i]) == 0 &&
                strcmp(cl->ring->names[k], r->names[i]) == 0) {
                keep[i] = cl->conns[k];
                cl->conns[k] = NULL;
            }
        }
    }
    cluster_drop_conns(cl);
    memcpy(cl->conns, keep, sizeof keep);
    stockd_ring_free(cl->ring);
    cl->ring = r;
    return STOCKD_OK;
}

stockd_rc stockd_cluster_connect(stockd_cluster *cl, const char *seed_addr, int timeout_ms)
{
    if (seed_addr == NULL || strlen(seed_addr) >= sizeof cl->seed) {
        snprintf(cl->errstr, sizeof cl->errstr, "bad seed address");
        return STOCKD_ERR_USAGE;
    }
    snprintf(cl->seed, sizeof cl->seed, "%s", seed_addr);
    stockd_cluster_set_timeout(cl, timeout_ms);
    return cluster_fetch_from(cl, cl->seed);
}

stockd_rc stockd_cluster_refresh(stockd_cluster *cl)
{
    cl->refreshes++;
    /* Any member knows the ring; the seed (often a balancer) last. */
    for (size_t i = 0; cl->ring && i < cl->ring->n_nodes; i++) {
        char addr[STOCKD_RING_ADDR_MAX];
        snprintf(addr, sizeof addr, "%s", cl->ring->addrs[i]);
        if (cluster_fetch_from(cl, addr) == STOCKD_OK)
            return STOCKD_OK;
    }
    return cluster_fetch_from(cl, cl->seed);
}

stockd_client *stockd_cluster_client_for(stockd_cluster *cl, const char *sku, stockd_rc *rc)
{
    *rc = STOCKD_ERR_USAGE;
    if (cl->ring == NULL || sku == NULL) {
        snprintf(cl->errstr, sizeof cl->errstr, "no ring (stockd_cluster_connect first)");
        return NULL;
    }
    size_t i = stockd_ring_owner(cl->ring, sku, strlen(sku));
    if (cl->conns[i] == NULL && (cl->conns[i] = stockd_client_new()) == NULL) {
        snprintf(cl->errstr, sizeof cl->errstr, "out of memory");
        return NULL;
    }
    stockd_client *c = cl->conns[i];
    cl->last = c;
    if (!stockd_client_connected(c)) {
        *rc = stockd_client_connect(c, cl->ring->addrs[i], cl->timeout_ms);
        if (*rc != STOCKD_OK) {
            snprintf(cl->errstr, sizeof cl->errstr, "%s (%s): %s", cl->ring->names[i],
                     cl->ring->addrs[i], stockd_client_errstr(c));
            return NULL;
        }
    }
    *rc = STOCKD_OK;
    return c;
}

typedef enum cluster_op { CL_RESERVE, CL_ORDER_OP, CL_STOCK_GET } cluster_op;

typedef struct cluster_call {
    cluster_op op;
    const stockd_reserve_req *req;
    const char *method, *order_id, *sku;
    stockd_order *order;
    stockd_stock *stock;
} cluster_call;

static stockd_rc cluster_send(stockd_client *c, const cluster_call *k)
{
    if (k->op == CL_RESERVE)
        return stockd_reserve(c, k->req, k->order);
    if (k->op == CL_STOCK_GET)
        return stockd_stock_get(c, k->sku, k->stock);
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, k->method, &pk);
    if (rc != STOCKD_OK)
        return rc;
    /* "sku" is the routing hint: the owner need not look the order up. */
    int prc = msgpack_pack_map(pk, 2) | codec_pack_kv_str(pk, "order_id", k->order_id) |
              codec_pack_kv_str(pk, "sku", k->sku);
    uint32_t id = 0;
    rc = client_end_typed(c, prc, &id);
    return client_wait_order(c, rc, id, k->order);
}

/* Sends to the owner; when the answer says the ring may have moved
 * (unavailable, or the owner unreachable), refreshes the ring once and, if
 * the SKU has a new owner, asks it. Every operation here is safe to repeat:
 * reserve is idempotent by order_id, the others by their state machine. */
static stockd_rc cluster_call_routed(stockd_cluster *cl, const cluster_call *k)
{
    stockd_rc rc = STOCKD_ERR_USAGE;
    size_t len = strlen(k->sku);
    for (int attempt = 0; attempt < 2 && cl->ring; attempt++) {
        char owner[STOCKD_RING_ADDR_MAX];
        snprintf(owner, sizeof owner, "%s", cl->ring->addrs[stockd_ring_owner(cl->ring, k->sku, len)]);
        stockd_client *c = stockd_cluster_client_for(cl, k->sku, &rc);
        if (c != NULL) {
            rc = cluster_send(c, k);
            snprintf(cl->errstr, sizeof cl->errstr, "%s", stockd_client_errstr(c));
            bool moved = rc == STOCKD_ERR_TRANSPORT ||
                         (rc == STOCKD_ERR_SERVER &&
                          strcmp(stockd_client_error(c)->code, "unavailable") == 0);
            if (!moved)
                return rc;
        } else if (rc != STOCKD_ERR_TRANSPORT) {
            return rc;
        }
        if (attempt == 1 || stockd_cluster_refresh(cl) != STOCKD_OK)
            return rc;
        const char *now = cl->ring->addrs[stockd_ring_owner(cl->ring, k->sku, len)];
        if (strcmp(now, owner) == 0 && rc == STOCKD_ERR_SERVER)
            return rc;   /* the same owner said unavailable: the caller retries later */
    }
    if (cl->ring == NULL)
        snprintf(cl->errstr, sizeof cl->errstr, "no ring (stockd_cluster_connect first)");
    return rc;
}

stockd_rc stockd_cluster_reserve(stockd_cluster *cl, const stockd_reserve_req *req,
                                 stockd_order *out)
{
    if (req == NULL || req->sku == NULL)
        return STOCKD_ERR_USAGE;
    cluster_call k = {.op = CL_RESERVE, .req = req, .sku = req->sku, .order = out};
    return cluster_call_routed(cl, &k);
}

stockd_rc stockd_cluster_order_op(stockd_cluster *cl, const char *method, const char *order_id,
                                  const char *sku, stockd_order *out)
{
    if (method == NULL || order_id == NULL || sku == NULL)
        return STOCKD_ERR_USAGE;
    cluster_call k = {.op = CL_ORDER_OP, .method = method, .order_id = order_id, .sku = sku,
                      .order = out};
    return cluster_call_routed(cl, &k);
}

stockd_rc stockd_cluster_stock_get(stockd_cluster *cl, const char *sku, stockd_stock *out)
{
    if (sku == NULL)
        return STOCKD_ERR_USAGE;
    cluster_call k = {.op = CL_STOCK_GET, .sku = sku, .stock = out};
    return cluster_call_routed(cl, &k);
}
