/* httpd.c — the operators' small HTTP/1.1 server; see httpd.h for the
 * limits and why it is not evhttp. */
#include "stockd/httpd.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "stockd/log.h"
#include "stockd/net.h"

/* IDLE: between requests (or a fresh connection): waiting for a request;
 * READING: part of a request is in; DEFERRED: the handler took the request
 * to answer later (httpd_defer); WRITING: an answer is being written; the
 * connection goes back to IDLE, or closes if the answer said so. */
enum hc_state { HC_IDLE = 0, HC_READING, HC_DEFERRED, HC_WRITING };

typedef struct hconn hconn;

struct httpd_req {
    hconn *hc;
    char head[HTTPD_HEAD_MAX + 1];
    char *method, *path, *query;
    int minor;                    /* HTTP/1.minor */
    const char *hname[HTTPD_HEADERS_MAX], *hval[HTTPD_HEADERS_MAX];
    int n_headers;
    char *body;
    size_t body_len;
    bool answered;
    bool deferred;
};

struct hconn {
    httpd *h;
    struct bufferevent *bev;
    struct event *timer;
    enum hc_state state;
    bool close_after;
    bool gone;                    /* DEFERRED and the socket is closed: freed at the answer */
    httpd_req req;
    hconn *prev, *next;
};

struct httpd {
    struct event_base *base;
    net_listener *listener;
    uint32_t max_conns;
    size_t max_body;
    httpd_handler handler;
    void *arg;
    hconn *conns;
    httpd_stats st;
};

static void hc_free(hconn *hc)
{
    httpd *h = hc->h;
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        h->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    if (hc->bev)
        bufferevent_free(hc->bev);
    if (hc->timer)
        event_free(hc->timer);
    free(hc->req.body);
    assert(h->st.current > 0);
    h->st.current--;
    free(hc);
}

static void arm(hconn *hc, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(hc->timer, &tv);
}

/* The socket goes; a deferred request keeps the struct until its owner
 * answers (the answer is then dropped). */
static void hc_end(hconn *hc)
{
    if (hc->state != HC_DEFERRED) {
        hc_free(hc);
        return;
    }
    hc->gone = true;
    bufferevent_free(hc->bev);
    hc->bev = NULL;
    event_free(hc->timer);
    hc->timer = NULL;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hconn *hc = arg;
    hc->h->st.timed_out++;
    hc_end(hc);
}

/* ------------------------------------------------------------ answers */

static void write_answer(hconn *hc, int status, const char *reason, const char *content_type,
                         const void *body, size_t len, const char *extra, bool head_only)
{
    struct evbuffer *out = bufferevent_get_output(hc->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nConnection: %s\r\n%s\r\n",
                        status, reason, content_type ? content_type : "text/plain; charset=utf-8",
                        len, hc->close_after ? "close" : "keep-alive", extra ? extra : "");
    if (!head_only && len > 0)
        evbuffer_add(out, body, len);
    hc->state = HC_WRITING;
    evtimer_del(hc->timer);  /* the write timeout of the bufferevent takes over */
}

/* A refusal before the handler: answer (when the request line was read)
 * and close once written. */
static void refuse(hconn *hc, int status, const char *reason, const char *text)
{
    hc->h->st.bad_requests++;
    hc->close_after = true;
    char body[160];
    int n = snprintf(body, sizeof body, "%s\n", text);
    write_answer(hc, status, reason, NULL, body, (size_t)n, NULL, false);
    bufferevent_disable(hc->bev, EV_READ);
}

void httpd_respond(httpd_req *r, int status, const char *reason, const char *content_type,
                   const void *body, size_t len, const char *extra_headers)
{
    assert(!r->answered);
    r->answered = true;
    hconn *hc = r->hc;
    if (hc->gone) {
        hc_free(hc);
        return;
    }
    write_answer(hc, status, reason, content_type, body, len, extra_headers,
                 strcmp(r->method, "HEAD") == 0);
}

void httpd_defer(httpd_req *r)
{
    assert(!r->answered && !r->deferred && r->hc->state == HC_READING);
    r->deferred = true;
    r->hc->state = HC_DEFERRED;
    /* The owner bounds the wait (httpd.h); reading goes on only to notice
     * a client that leaves, within the input watermark. */
    evtimer_del(r->hc->timer);
}

/* ------------------------------------------------------------ parsing */

static bool token_char(char c)
{
    return c > 32 && c < 127 && !strchr("()<>@,;:\\\"/[]?={}", c);
}

/* Splits the head (NUL-terminated, CRLFs included) into request line and
 * headers. Returns 0, or the status to refuse with. */
static int parse_head(httpd_req *r)
{
    char *p = r->head;
    char *eol = strstr(p, "\r\n");
    if (eol == NULL)
        return 400;
    *eol = '\0';
    char *sp1 = strchr(p, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 == p)
        return 400;
    *sp1 = *sp2 = '\0';
    r->method = p;
    for (char *m = p; *m; m++)
        if (!token_char(*m))
            return 400;
    char *target = sp1 + 1;
    if (target[0] != '/')
        return 400;
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        r->minor = 1;
    else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
        r->minor = 0;
    else
        return 505;
    char *q = strchr(target, '?');
    r->query = q ? q + 1 : (char *)"";
    if (q)
        *q = '\0';
    r->path = target;
    p = eol + 2;
    r->n_headers = 0;
    while (*p != '\0' && !(p[0] == '\r' && p[1] == '\n')) {
        eol = strstr(p, "\r\n");
        if (eol == NULL)
            return 400;
        *eol = '\0';
        char *colon = strchr(p, ':');
        if (colon == NULL || colon == p)
            return 400;
        *colon = '\0';
        for (char *n = p; *n; n++)
            if (!token_char(*n))
                return 400;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *end = v + strlen(v);
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (r->n_headers == HTTPD_HEADERS_MAX)
            return 431;
        r->hname[r->n_headers] = p;
        r->hval[r->n_headers++] = v;
        p = eol + 2;
    }
    return 0;
}

const char *httpd_header(const httpd_req *r, const char *name)
{
    for (int i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->hname[i], name) == 0)
            return r->hval[i];
    return NULL;
}

const char *httpd_method(const httpd_req *r)
{
    return r->method;
}

const char *httpd_path(const httpd_req *r)
{
    return r->path;
}

const char *httpd_query(const httpd_req *r)
{
    return r->query;
}

const char *httpd_body(const httpd_req *r, size_t *len)
{
    *len = r->body_len;
    return r->body ? r->body : "";
}

/* Strict decimal Content-Length; -1 when malformed. */
static long long content_length(const char *v)
{
    if (v == NULL || *v == '\0' || strlen(v) > 18)
        return -1;
    long long n = 0;
    for (const char *p = v; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

/* Handles every complete request in the input, one at a time. Returns false
 * when hc was freed. */
static bool process(hconn *hc)
{
    httpd *h = hc->h;
    struct evbuffer *in = bufferevent_get_input(hc->bev);
    while (hc->state == HC_IDLE || hc->state == HC_READING) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return true;
        if (hc->state == HC_IDLE) {
            /* The first byte of a request: the whole of it within 10 s. */
            hc->state = HC_READING;
            arm(hc, HTTPD_REQUEST_MS);
        }
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0) {
            if (avail > HTTPD_HEAD_MAX) {
                refuse(hc, 431, "Request Header Fields Too Large", "request head over 8 KiB");
                return true;
            }
            return true;
        }
        size_t head_len = (size_t)end.pos + 4;
        if (head_len > HTTPD_HEAD_MAX) {
            refuse(hc, 431, "Request Header Fields Too Large", "request head over 8 KiB");
            return true;
        }
        httpd_req *r = &hc->req;
        evbuffer_copyout(in, r->head, head_len);
        r->head[head_len] = '\0';
        r->method = (char *)"GET";
        r->n_headers = 0;
        int bad = memchr(r->head, '\0', head_len) ? 400 : parse_head(r);
        if (bad != 0) {
            refuse(hc, bad, bad == 431 ? "Request Header Fields Too Large"
                            : bad == 505 ? "HTTP Version Not Supported" : "Bad Request",
                   "malformed request");
            return true;
        }
        if (httpd_header(r, "Transfer-Encoding") != NULL) {
            refuse(hc, 411, "Length Required", "chunked bodies are not accepted: send Content-Length");
            return true;
        }
        const char *cl = httpd_header(r, "Content-Length");
        long long blen = cl ? content_length(cl) : 0;
        if (blen < 0) {
            refuse(hc, 400, "Bad Request", "bad Content-Length");
            return true;
        }
        if ((unsigned long long)blen > h->max_body) {
            refuse(hc, 413, "Content Too Large", "request body too large");
            return true;
        }
        if (avail < head_len + (size_t)blen)
            return true;  /* the body is still coming */
        evbuffer_drain(in, head_len);
        free(r->body);
        r->body = NULL;
        r->body_len = (size_t)blen;
        if (blen > 0) {
            r->body = malloc((size_t)blen + 1);
            if (r->body == NULL) {
                refuse(hc, 503, "Service Unavailable", "out of memory");
                return true;
            }
            evbuffer_remove(in, r->body, (size_t)blen);
            r->body[blen] = '\0';
        }
        const char *conn_hdr = httpd_header(r, "Connection");
        hc->close_after = r->minor == 0 ? !(conn_hdr && strcasecmp(conn_hdr, "keep-alive") == 0)
                                        : (conn_hdr && strcasecmp(conn_hdr, "close") == 0);
        r->answered = false;
        r->deferred = false;
        r->hc = hc;
        h->st.requests++;
        h->handler(h->arg, r);
        if (r->deferred && !r->answered)
            return true;
        if (!r->answered)
            httpd_respond(r, 500, "Internal Server Error", NULL, "no answer\n", 10, NULL);
    }
    return true;
}

/* ------------------------------------------------------------ events */

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    hconn *hc = arg;
    if (hc->state != HC_WRITING || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return;
    if (hc->close_after) {
        hc_free(hc);
        return;
    }
    hc->state = HC_IDLE;
    arm(hc, HTTPD_IDLE_MS);
    process(hc);  /* a pipelined request may wait in the input */
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    hconn *hc = arg;
    if (what & BEV_EVENT_TIMEOUT)
        hc->h->st.timed_out++;
    hc_end(hc);
}

static void accept_fd(void *arg, evutil_socket_t fd)
{
    httpd *h = arg;
    if (h->st.current >= h->max_conns) {
        h->st.refused++;
        evutil_closesocket(fd);
        return;
    }
    hconn *hc = calloc(1, sizeof(*hc));
    struct bufferevent *bev = hc ? bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
    struct event *t = bev ? evtimer_new(h->base, timer_cb, hc) : NULL;
    if (t == NULL) {
        if (bev)
            bufferevent_free(bev);
        else
            evutil_closesocket(fd);
        free(hc);
        h->st.refused++;
        return;
    }
    hc->h = h;
    hc->bev = bev;
    hc->timer = t;
    hc->state = HC_READING;  /* a fresh connection owes a whole request within 10 s */
    hc->next = h->conns;
    if (h->conns)
        h->conns->prev = hc;
    h->conns = hc;
    h->st.current++;
    h->st.total++;
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, hc);
    /* Input is bounded by what one request may hold; reading stops there. */
    bufferevent_setwatermark(bev, EV_READ, 0, HTTPD_HEAD_MAX + h->max_body + 1024);
    struct timeval wtv = {HTTPD_WRITE_MS / 1000, 0};
    bufferevent_set_timeouts(bev, NULL, &wtv);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    arm(hc, HTTPD_REQUEST_MS);
}

/* ------------------------------------------------------------ lifecycle */

httpd *httpd_new(struct event_base *base, const httpd_config *cfg, char *err, size_t err_len)
{
    assert(cfg->handler != NULL && cfg->max_conns > 0);
    httpd *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, err_len, "http: out of memory");
        return NULL;
    }
    h->base = base;
    h->max_conns = cfg->max_conns;
    h->max_body = cfg->max_body;
    h->handler = cfg->handler;
    h->arg = cfg->arg;
    h->listener = net_listen(base, "http", cfg->host, cfg->port, accept_fd, h, err, err_len);
    if (h->listener == NULL) {
        free(h);
        return NULL;
    }
    return h;
}

void httpd_free(httpd *h)
{
    if (h == NULL)
        return;
    net_listener_free(h->listener);
    while (h->conns)
        hc_free(h->conns);
    free(h);
}

void httpd_set_max_conns(httpd *h, uint32_t max_conns)
{
    h->max_conns = max_conns;
}

void httpd_stats_get(const httpd *h, httpd_stats *out)
{
    *out = h->st;
    net_listener_stats ls;
    net_listener_stats_get(h->listener, &ls);
    out->accept_errors = ls.accept_errors;
    out->accept_pauses = ls.accept_pauses;
}
