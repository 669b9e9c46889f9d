/* fake1688 — a loopback fake of the 1688 Open Platform gateway for tests and
 * benchmarks of stockd's supplier client. See docs/fake1688.md.
 *
 *   fake1688 [--port N] [--control-port N] [--port-file PATH]
 *            [--app-key K] [--app-secret S] [--access-token T] [--push-url URL]
 *            [--lag-ms N] [--max-products N] [--max-orders N] [--quiet]
 *
 * Port 0 picks a free port; the chosen ports are printed on stdout as
 * "fake1688 api=PORT control=PORT" and written to --port-file. Listens on
 * 127.0.0.1 only. SIGINT/SIGTERM stop it.
 */
#include "fake1688.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>

struct fk_pending {
    fk_pending *prev, *next;
    fk_state *st;
    struct event *ev;
    struct evhttp_request *req;
    struct evbuffer *body;
    int status;
};

static void on_signal(evutil_socket_t fd, short what, void *arg);
static void on_sweep(evutil_socket_t fd, short what, void *arg);
static void on_pending(evutil_socket_t fd, short what, void *arg);

int64_t fk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fk_model_now_ms(const fk_state *st)
{
    return st->clock_manual ? st->clock_ms : fk_now_ms();
}

void fk_keyed_clear(fk_state *st)
{
    free(st->keyed_hash);
    free(st->keyed_seen);
    st->keyed_hash = NULL;
    st->keyed_seen = NULL;
    st->keyed_used = 0;
}

double fk_rand01(fk_state *st)
{
    /* xorshift64*: tests set the seed, so fault patterns are repeatable. */
    uint64_t x = st->rng ? st->rng : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    st->rng = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / (double)(1ull << 53);
}

void fk_count_code(fk_state *st, const char *code)
{
    json_t *v = json_object_get(st->counters.by_code, code);
    json_int_t n = v ? json_integer_value(v) : 0;
    /* Codes come from our own tables, so the map stays small. */
    json_object_set_new(st->counters.by_code, code, json_integer(n + 1));
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

static void send_now(struct evhttp_request *req, int status, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json;charset=UTF-8");
    evhttp_send_reply(req, status, reason_phrase(status), body);
}

static void pending_unlink(fk_state *st, fk_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        st->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    st->n_pending--;
}

static void pending_free(fk_pending *p)
{
    event_free(p->ev);
    evbuffer_free(p->body);
    free(p);
}

/* Replying to a request whose client went away is safe: libevent detaches
 * such a request and frees it when it is answered. */
static void on_pending(evutil_socket_t fd, short what, void *arg)
{
    fk_pending *p = arg;
    (void)fd;
    (void)what;
    pending_unlink(p->st, p);
    send_now(p->req, p->status, p->body);
    pending_free(p);
}

static int64_t reply_delay_ms(fk_state *st, fk_fault fault)
{
    if (fault == FK_FAULT_TIMEOUT)
        return st->faults.timeout_hold_ms;
    int64_t d = st->cfg.latency_ms;
    if (st->cfg.latency_jitter_ms > 0)
        d += (int64_t)(fk_rand01(st) * (double)(st->cfg.latency_jitter_ms + 1));
    return d;
}

void fk_reply(fk_state *st, struct evhttp_request *req, int status, json_t *body, fk_fault fault,
              bool api)
{
    struct evbuffer *buf = evbuffer_new();
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(12));
    assert(buf && text);
    size_t len = strlen(text);
    if (fault == FK_FAULT_GARBAGE) {
        /* A cut answer behind a proxy error page: parses as nothing. */
        evbuffer_add(buf, text, len / 2);
        evbuffer_add_printf(buf, "<html><body>502 Bad Gateway</body></html>\x01");
    } else {
        evbuffer_add(buf, text, len);
    }
    free(text);
    json_decref(body);
    if (fault == FK_FAULT_TIMEOUT)
        status = 504;
    int64_t delay = api ? reply_delay_ms(st, fault) : 0;
    if (delay <= 0 || st->n_pending >= FK_PENDING_MAX) {
        send_now(req, status, buf);
        evbuffer_free(buf);
        return;
    }
    fk_pending *p = calloc(1, sizeof *p);
    assert(p);
    p->st = st;
    p->req = req;
    p->body = buf;
    p->status = status;
    p->ev = evtimer_new(st->base, on_pending, p);
    assert(p->ev);
    p->next = st->pending;
    if (st->pending)
        st->pending->prev = p;
    st->pending = p;
    st->n_pending++;
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)((delay % 1000) * 1000)};
    evtimer_add(p->ev, &tv);
}

char *fk_read_body(struct evhttp_request *req, size_t max, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n > max)
        return NULL;
    char *b = malloc(n + 1);
    assert(b);
    if (n && evbuffer_copyout(in, b, n) != (ev_ssize_t)n) {
        free(b);
        return NULL;
    }
    b[n] = '\0';
    *len = n;
    return b;
}

static uint16_t bound_port(struct evhttp_bound_socket *s)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    if (getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sa, &sl) != 0)
        return 0;
    return ntohs(sa.sin_port);
}

int fk_api_listen(fk_state *st)
{
    if (st->api_sock)
        return 0;
    st->api_sock = evhttp_bind_socket_with_handle(st->api_http, "127.0.0.1", st->api_port);
    if (!st->api_sock)
        return -1;
    st->api_port = bound_port(st->api_sock);
    return 0;
}

void fk_api_unlisten(fk_state *st)
{
    if (!st->api_sock)
        return;
    evhttp_del_accept_socket(st->api_http, st->api_sock);
    st->api_sock = NULL;
}

static struct evhttp *new_http(fk_state *st, void (*cb)(struct evhttp_request *, void *),
                              size_t max_body)
{
    struct evhttp *h = evhttp_new(st->base);
    assert(h);
    evhttp_set_max_body_size(h, max_body);
    evhttp_set_max_headers_size(h, 16 * 1024);
    evhttp_set_timeout(h, 120);
    evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                      EVHTTP_REQ_DELETE);
    evhttp_set_gencb(h, cb, st);
    return h;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: fake1688 [--port N] [--control-port N] [--port-file PATH]\n"
               "                [--app-key K] [--app-secret S] [--access-token T]\n"
               "                [--push-url URL] [--lag-ms N] [--max-products N]\n"
               "                [--max-orders N] [--quiet]\n");
}

static int copy_opt(char *dst, size_t cap, const char *src, const char *name)
{
    if (strlen(src) >= cap || !*src) {
        fprintf(stderr, "fake1688: %s must be 1..%zu bytes\n", name, cap - 1);
        return -1;
    }
    strcpy(dst, src);
    return 0;
}

static int parse_num(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static void config_defaults(fk_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->app_key, "1000000");
    strcpy(c->app_secret, "test123");
    strcpy(c->access_token, "TESTTOKEN");
    c->inflation = 1.0;
    c->cancel_min_age_ms = 10000;
    c->pay_timeout_s = 43200;
    c->idempotent = true;
    c->check_signature = true;
}

static int parse_args(int argc, char **argv, fk_state *st, const char **port_file)
{
    enum { O_PORT = 1, O_CPORT, O_PFILE, O_KEY, O_SECRET, O_TOKEN, O_PUSH, O_LAG, O_MAXP,
           O_MAXO, O_QUIET, O_HELP };
    static const struct option opts[] = {
        {"port", required_argument, 0, O_PORT}, {"control-port", required_argument, 0, O_CPORT},
        {"port-file", required_argument, 0, O_PFILE}, {"app-key", required_argument, 0, O_KEY},
        {"app-secret", required_argument, 0, O_SECRET},
        {"access-token", required_argument, 0, O_TOKEN},
        {"push-url", required_argument, 0, O_PUSH}, {"lag-ms", required_argument, 0, O_LAG},
        {"max-products", required_argument, 0, O_MAXP},
        {"max-orders", required_argument, 0, O_MAXO}, {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    fk_config *c = &st->cfg;
    long long v;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (o) {
        case O_PORT: bad = parse_num(optarg, 0, 65535, &v); st->api_port = (uint16_t)v; break;
        case O_CPORT: bad = parse_num(optarg, 0, 65535, &v); st->ctl_port = (uint16_t)v; break;
        case O_PFILE: *port_file = optarg; break;
        case O_KEY: bad = copy_opt(c->app_key, sizeof c->app_key, optarg, "--app-key"); break;
        case O_SECRET:
            bad = copy_opt(c->app_secret, sizeof c->app_secret, optarg, "--app-secret");
            break;
        case O_TOKEN:
            bad = copy_opt(c->access_token, sizeof c->access_token, optarg, "--access-token");
            break;
        case O_PUSH: bad = copy_opt(c->push_url, sizeof c->push_url, optarg, "--push-url"); break;
        case O_LAG: bad = parse_num(optarg, 0, 86400000, &v); c->lag_ms = v; break;
        case O_MAXP: bad = parse_num(optarg, 1, 1000000, &v); st->max_products = (size_t)v; break;
        case O_MAXO: bad = parse_num(optarg, 1, 10000000, &v); st->max_orders = (size_t)v; break;
        case O_QUIET: st->quiet = true; break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (bad) {
            fprintf(stderr, "fake1688: bad value for an option: %s\n", optarg ? optarg : "");
            return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    fk_state st;
    const char *port_file = NULL;
    memset(&st, 0, sizeof st);
    config_defaults(&st.cfg);
    st.max_products = 10000;
    st.max_orders = 200000;
    st.next_order_id = 3000000000000000001ull;
    st.next_msg_id = 1;
    st.rng = 0x2545F4914F6CDD1Dull;
    st.faults.http5xx_status = 503;
    st.faults.timeout_hold_ms = 30000;
    st.counters.by_code = json_object();
    if (parse_args(argc, argv, &st, &port_file) != 0)
        return 2;
    st.cfg0 = st.cfg;
    signal(SIGPIPE, SIG_IGN);

    st.base = event_base_new();
    assert(st.base);
    st.api_http = new_http(&st, fk_api_handle, FK_BODY_MAX);
    st.ctl_http = new_http(&st, fk_control_handle, FK_CTL_BODY_MAX);
    if (fk_api_listen(&st) != 0) {
        fprintf(stderr, "fake1688: cannot listen on 127.0.0.1:%u\n", st.api_port);
        return 1;
    }
    struct evhttp_bound_socket *cs =
        evhttp_bind_socket_with_handle(st.ctl_http, "127.0.0.1", st.ctl_port);
    if (!cs) {
        fprintf(stderr, "fake1688: cannot listen on 127.0.0.1:%u (control)\n", st.ctl_port);
        return 1;
    }
    st.ctl_port = bound_port(cs);
    fk_push_init(&st);

    struct event *sig_int = evsignal_new(st.base, SIGINT, on_signal, &st);
    struct event *sig_term = evsignal_new(st.base, SIGTERM, on_signal, &st);
    evsignal_add(sig_int, NULL);
    evsignal_add(sig_term, NULL);
    st.sweep_timer = event_new(st.base, -1, EV_PERSIST, on_sweep, &st);
    struct timeval sec = {1, 0};
    evtimer_add(st.sweep_timer, &sec);

    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f || fprintf(f, "%u %u\n", st.api_port, st.ctl_port) < 0 || fclose(f) != 0) {
            fprintf(stderr, "fake1688: cannot write %s\n", port_file);
            return 1;
        }
    }
    printf("fake1688 api=%u control=%u\n", st.api_port, st.ctl_port);
    fflush(stdout);

    event_base_dispatch(st.base);

    /* Held replies are dropped, not answered: we are going away. */
    while (st.pending) {
        fk_pending *p = st.pending;
        pending_unlink(&st, p);
        pending_free(p);
    }
    fk_push_clear(&st);
    event_free(st.push_timer);
    fk_model_clear(&st);
    fk_keyed_clear(&st);
    json_decref(st.counters.by_code);
    event_free(st.sweep_timer);
    event_free(sig_int);
    event_free(sig_term);
    evhttp_free(st.api_http);
    evhttp_free(st.ctl_http);
    event_base_free(st.base);
    if (!st.quiet)
        fprintf(stderr, "fake1688: stopped\n");
    return 0;
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    fk_state *st = arg;
    (void)fd;
    (void)what;
    event_base_loopexit(st->base, NULL);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fk_orders_sweep(arg, fk_model_now_ms(arg));
}
