/* client.c — blocking stockd client over MessagePack-RPC (see client.h):
 * the client's life, its errors, connecting, and the socket itself.
 *
 * Shape: requests are packed into one output sbuffer and sent on flush;
 * received bytes go into an input buffer, are cut into frames by
 * codec_frame_check (so a hostile or broken server cannot make msgpack-c
 * allocate without bound), copied, and unpacked. A frame for a msgid nobody
 * asked for yet is kept ("held") until stockd_recv asks for it. The other
 * parts are listed in client_internal.h.
 */
#include "client_internal.h"

#include <assert.h>
#include <errno.h>
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

/* ---------------------------------------------------------------- errors */

stockd_rc client_fail(stockd_client *c, stockd_rc rc, const char *fmt, ...)
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
stockd_rc client_broken(stockd_client *c, stockd_rc rc, const char *fmt, ...)
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
void client_reset_call(stockd_client *c)
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

int64_t client_now_ms(void)
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
int client_read_some(stockd_client *c)
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

int client_await_input(stockd_client *c, int64_t deadline_ms, stockd_rc *rc)
{
    int ev = client_wait(c, POLLIN, deadline_ms);
    if (ev == 0)
        return 0;
    if (ev < 0) {
        *rc = client_broken(c, STOCKD_ERR_TRANSPORT, "poll: %s", strerror(errno));
        return -1;
    }
    if (client_read_some(c) < 0) {
        *rc = STOCKD_ERR_TRANSPORT;
        return -1;
    }
    return 1;
}

/* Sends every queued byte. While the socket is full it keeps reading, so a
 * server answering a long pipeline cannot deadlock against us. */
stockd_rc client_flush_until(stockd_client *c, int64_t deadline_ms)
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
