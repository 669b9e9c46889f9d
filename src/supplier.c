/* supplier.c — see include/stockd/supplier.h.
 *
 * Shape (curl docs/examples/hiperfifo.c): curl tells us which sockets to
 * watch (sock_cb) and when to wake it (multi_timer_cb arms one libevent
 * timer, never calling curl itself); libevent wakes us and we hand the event
 * to curl_multi_socket_action, then drain finished transfers. Our own
 * callbacks to the caller run only from those libevent callbacks, so they
 * are never inside a curl callback nor inside a submission.
 */
#include "stockd/supplier.h"
#include "stockd/clock.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include "stockd/log.h"
#include "stockd/supplier_sign.h"

#define SUP_PARAMS_MAX 8          /* business params + token, timestamp, signature */
#define SUP_BIZ_PARAMS_MAX 5
#define SUP_ADDRESS_MAX 4096
#define SUP_RESP_INITIAL 4096

typedef enum req_state {
    REQ_QUEUED = 0, /**< waiting for a slot or a token */
    REQ_WIRE,       /**< an easy handle is in the multi */
    REQ_WAITING,    /**< waiting for its backoff timer (or a local failure) */
} req_state;

/* One accepted call, owned by the client from submission to its callback. */
typedef struct sup_req {
    supplier_client *c;
    supplier_api api;
    bool repeat_safe;             /* may repeat after a maybe-executed failure */
    req_state state;
    bool local_fail;              /* the timer delivers client.Local */
    unsigned attempts;
    supplier_done_fn fn;
    void *arg;
    size_t n_params;
    supplier_param params[SUP_BIZ_PARAMS_MAX]; /* point into arena */
    char *arena;
    CURL *easy;
    char *body;                   /* this attempt's form body */
    char *resp;
    size_t resp_len, resp_cap;
    bool too_large;
    char errbuf[CURL_ERROR_SIZE];
    struct event *timer;
    struct sup_req *q_next;       /* queue */
    struct sup_req *prev, *next;  /* every live request */
} sup_req;

typedef struct sup_sock {
    supplier_client *c;
    struct event *ev;
    struct sup_sock *prev, *next;
} sup_sock;

struct supplier_client {
    struct event_base *base;
    CURLM *multi;
    struct event *curl_timer;
    struct event *pump_timer;
    struct curl_slist *headers;
    char base_url[SUPPLIER_URL_MAX];
    char app_key[SUPPLIER_CRED_MAX];
    char secret[SUPPLIER_CRED_MAX];
    char token[SUPPLIER_CRED_MAX];
    supplier_client_config cfg;   /* numbers; string pointers cleared */
    double tokens;
    uint64_t tokens_at_ms;
    uint64_t rng;
    sup_req *q_head, *q_tail;
    sup_req *all;
    sup_sock *socks;
    bool freeing;
    supplier_stats st;
};

/* ---- small helpers --------------------------------------------------------------- */

static uint64_t mono_ms(void) { return (uint64_t)clock_mono_ms(); }

/* The system's wall clock, also under --test-clock: 1688 checks
 * _aop_timestamp against its own. */
static uint64_t wall_ms(void) { return (uint64_t)clock_real_wall_ms(); }

static uint64_t rng_next(supplier_client *c)
{
    /* xorshift64*: jitter only, no need for more. */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 0x2545F4914F6CDD1DULL;
}

static void ms_to_tv(uint64_t ms, struct timeval *tv)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

static bool copy_cred(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n == 0 || n >= cap)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

/* Result strings leave the client only after this. */
static void redact_result(const supplier_client *c, supplier_result *r)
{
    supplier_redact(r->message, c->secret);
    supplier_redact(r->message, c->token);
    supplier_redact(r->code, c->secret);
    supplier_redact(r->code, c->token);
}

/* ---- configuration ---------------------------------------------------------------- */

void supplier_client_config_defaults(supplier_client_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->connect_timeout_ms = 2000;
    cfg->timeout_ms = 10000;
    cfg->max_response_bytes = 1u << 20;
    cfg->max_in_flight = 8;
    cfg->rate_per_s = 20;
    cfg->burst = 10;
    cfg->max_attempts = 5;
    cfg->backoff_base_ms = 200;
    cfg->backoff_max_ms = 10000;
    cfg->max_queued = 10000;
}

static const char *check_config(const supplier_client_config *k)
{
    if (!k->base_url || (strncmp(k->base_url, "http://", 7) != 0 &&
                         strncmp(k->base_url, "https://", 8) != 0))
        return "base_url must start with http:// or https://";
    if (strlen(k->base_url) >= SUPPLIER_URL_MAX - 200)
        return "base_url too long";
    if (k->connect_timeout_ms < 1 || k->timeout_ms < 1 || k->timeout_ms > 600000)
        return "timeouts out of range";
    if (k->max_response_bytes < 64 || k->max_response_bytes > (256u << 20))
        return "max_response_bytes out of range";
    if (k->max_in_flight < 1 || k->max_in_flight > SUPPLIER_IN_FLIGHT_MAX)
        return "max_in_flight out of range";
    if (!(k->rate_per_s > 0 && k->rate_per_s <= 1e6) || k->burst < 1 || k->burst > 1000000)
        return "token bucket out of range";
    if (k->max_attempts < 1 || k->max_attempts > SUPPLIER_ATTEMPTS_MAX)
        return "max_attempts out of range";
    if (k->backoff_base_ms < 1 || k->backoff_max_ms < k->backoff_base_ms ||
        k->backoff_max_ms > 3600000)
        return "backoff out of range";
    if (k->max_queued < 1 || k->max_queued > SUPPLIER_QUEUED_MAX)
        return "max_queued out of range";
    return NULL;
}

int supplier_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void supplier_global_cleanup(void)
{
    curl_global_cleanup();
}

/* ---- curl ↔ libevent ----------------------------------------------------------------- */

static void drain_done(supplier_client *c);
static void pump(supplier_client *c);

static void sock_event_cb(evutil_socket_t fd, short kind, void *arg)
{
    supplier_client *c = arg;
    int action = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) |
                 ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running = 0;
    curl_multi_socket_action(c->multi, fd, action, &running);
    drain_done(c);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *sockp)
{
    supplier_client *c = userp;
    sup_sock *ss = sockp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (ss) {
            event_free(ss->ev);
            if (ss->prev)
                ss->prev->next = ss->next;
            else
                c->socks = ss->next;
            if (ss->next)
                ss->next->prev = ss->prev;
            free(ss);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (!ss) {
        ss = calloc(1, sizeof *ss);
        if (!ss)
            return -1;
        ss->c = c;
        ss->ev = event_new(c->base, s, kind, sock_event_cb, c);
        if (!ss->ev) {
            free(ss);
            return -1;
        }
        ss->next = c->socks;
        if (c->socks)
            c->socks->prev = ss;
        c->socks = ss;
        curl_multi_assign(c->multi, s, ss);
    } else {
        event_del(ss->ev);
        event_assign(ss->ev, c->base, s, kind, sock_event_cb, c);
    }
    event_add(ss->ev, NULL);
    return 0;
}

/* Arms our timer only: curl must not be called from here (timeout 0 too). */
static int multi_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    supplier_client *c = userp;
    (void)m;
    if (timeout_ms < 0) {
        evtimer_del(c->curl_timer);
    } else {
        struct timeval tv;
        ms_to_tv((uint64_t)timeout_ms, &tv);
        evtimer_add(c->curl_timer, &tv);
    }
    return 0;
}

static void curl_timer_cb(evutil_socket_t fd, short kind, void *arg)
{
    supplier_client *c = arg;
    int running = 0;
    (void)fd;
    (void)kind;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(c);
}

/* ---- requests: life cycle ------------------------------------------------------------- */

static void req_unlink(supplier_client *c, sup_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->all = r->next;
    if (r->next)
        r->next->prev = r->prev;
}

static void req_free(sup_req *r)
{
    assert(!r->easy);
    if (r->timer)
        event_free(r->timer);
    free(r->arena);
    free(r->body);
    free(r->resp);
    free(r);
}

/* Delivers rep and frees r; the callback runs after r is gone, so it may
 * submit freely. */
static void req_finish(supplier_client *c, sup_req *r, supplier_reply *rep)
{
    supplier_done_fn fn = r->fn;
    void *arg = r->arg;
    rep->attempts = r->attempts;
    redact_result(c, &rep->res);
    if (rep->res.outcome == SUPPLIER_OK)
        c->st.ok++;
    else if (rep->res.outcome == SUPPLIER_RETRYABLE)
        c->st.retryable++;
    else
        c->st.definitive++;
    if (rep->res.outcome != SUPPLIER_OK)
        LOG_D("supplier call failed", "api", supplier_api_name(r->api), "outcome",
              supplier_outcome_name(rep->res.outcome), "kind", supplier_kind_name(rep->res.kind),
              "code", rep->res.code);
    req_unlink(c, r);
    req_free(r);
    fn(rep, arg);
    supplier_reply_clear(rep);
}

static void req_finish_local(supplier_client *c, sup_req *r, supplier_outcome o, supplier_kind k,
                             const char *code, const char *msg)
{
    supplier_reply rep;
    memset(&rep, 0, sizeof rep);
    rep.api = r->api;
    supplier_result_set(&rep.res, o, k, code, msg);
    req_finish(c, r, &rep);
}

static void enqueue(supplier_client *c, sup_req *r, bool front)
{
    r->state = REQ_QUEUED;
    r->q_next = NULL;
    if (!c->q_head) {
        c->q_head = c->q_tail = r;
    } else if (front) {
        r->q_next = c->q_head;
        c->q_head = r;
    } else {
        c->q_tail->q_next = r;
        c->q_tail = r;
    }
    c->st.queued++;
}

static sup_req *dequeue(supplier_client *c)
{
    sup_req *r = c->q_head;
    if (!r)
        return NULL;
    c->q_head = r->q_next;
    if (!c->q_head)
        c->q_tail = NULL;
    r->q_next = NULL;
    c->st.queued--;
    return r;
}

/* The retry timer, and the carrier of start failures (never delivered
 * inside the submission or pump that hit them). */
static void req_timer_cb(evutil_socket_t fd, short kind, void *arg)
{
    sup_req *r = arg;
    supplier_client *c = r->c;
    (void)fd;
    (void)kind;
    assert(r->state == REQ_WAITING);
    c->st.backing_off--;
    if (r->local_fail) {
        req_finish_local(c, r, SUPPLIER_DEFINITIVE, SUPPLIER_KIND_NONE, "client.Local",
                         "could not start the HTTP call");
        return;
    }
    enqueue(c, r, true);
    pump(c);
}

static void req_wait(supplier_client *c, sup_req *r, uint64_t delay_ms)
{
    struct timeval tv;
    ms_to_tv(delay_ms, &tv);
    r->state = REQ_WAITING;
    c->st.backing_off++;
    evtimer_add(r->timer, &tv);
}

/* ---- one attempt ------------------------------------------------------------------------ */

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    sup_req *r = ud;
    size_t n = size * nmemb;
    size_t cap = r->c->cfg.max_response_bytes;
    if (n > cap || r->resp_len + n > cap) {
        r->too_large = true;
        return 0; /* any count != n aborts the transfer (CURLE_WRITE_ERROR) */
    }
    if (r->resp_len + n + 1 > r->resp_cap) {
        size_t nc = r->resp_cap ? r->resp_cap : SUP_RESP_INITIAL;
        while (nc < r->resp_len + n + 1)
            nc *= 2;
        if (nc > cap + 1)
            nc = cap + 1;
        char *nb = realloc(r->resp, nc);
        if (!nb)
            return 0;
        r->resp = nb;
        r->resp_cap = nc;
    }
    memcpy(r->resp + r->resp_len, p, n);
    r->resp_len += n;
    r->resp[r->resp_len] = '\0';
    return n;
}

/* Business params + access_token + _aop_timestamp, signed, form-encoded. */
static char *build_body(supplier_client *c, sup_req *r, const char *url_path)
{
    supplier_param p[SUP_PARAMS_MAX];
    char ts[24], sig[SUPPLIER_SIGN_HEX_LEN + 1];
    size_t n = r->n_params;
    memcpy(p, r->params, n * sizeof p[0]);
    int tl = snprintf(ts, sizeof ts, "%llu", (unsigned long long)wall_ms());
    p[n++] = (supplier_param){"access_token", 12, c->token, strlen(c->token)};
    p[n++] = (supplier_param){"_aop_timestamp", 14, ts, (size_t)tl};
    if (supplier_sign(c->secret, strlen(c->secret), url_path, p, n, sig) != 0)
        return NULL;
    p[n++] = (supplier_param){"_aop_signature", 14, sig, SUPPLIER_SIGN_HEX_LEN};
    assert(n <= SUP_PARAMS_MAX);
    size_t len = supplier_form_build(NULL, 0, p, n);
    char *body = malloc(len + 1);
    if (body)
        supplier_form_build(body, len + 1, p, n);
    return body;
}

static bool setup_easy(supplier_client *c, sup_req *r, const char *url)
{
    CURL *e = r->easy;
    const supplier_client_config *k = &c->cfg;
    bool ok = true;
#define SET(opt, val) ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_TIMEOUT_MS, (long)k->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)k->connect_timeout_ms);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)k->max_response_bytes);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_HTTPHEADER, c->headers);
    SET(CURLOPT_USERAGENT, "stockd-supplier/" STOCKD_VERSION);
    SET(CURLOPT_POSTFIELDS, r->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->body));
#undef SET
    return ok;
}

static bool start_attempt(supplier_client *c, sup_req *r)
{
    char url_path[SUPPLIER_URL_MAX], url[SUPPLIER_URL_MAX * 2 + 16];
    snprintf(url_path, sizeof url_path, "param2/1/%s/%s/%s", supplier_api_namespace(r->api),
             supplier_api_name(r->api), c->app_key);
    snprintf(url, sizeof url, "%s/openapi/%s", c->base_url, url_path);
    free(r->body);
    r->body = build_body(c, r, url_path);
    r->resp_len = 0;
    r->too_large = false;
    r->errbuf[0] = '\0';
    if (!r->body || !(r->easy = curl_easy_init()))
        return false;
    if (!setup_easy(c, r, url) || curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
        return false;
    }
    return true;
}

static void start(supplier_client *c, sup_req *r)
{
    r->attempts++;
    c->st.attempts++;
    if (r->attempts > 1)
        c->st.retries++;
    if (!start_attempt(c, r)) {
        r->local_fail = true;
        req_wait(c, r, 0);
        return;
    }
    r->state = REQ_WIRE;
    c->st.in_flight++;
    if (c->st.in_flight > c->st.max_in_flight_seen)
        c->st.max_in_flight_seen = c->st.in_flight;
}

static void refill(supplier_client *c)
{
    uint64_t now = mono_ms();
    c->tokens += (double)(now - c->tokens_at_ms) * c->cfg.rate_per_s / 1000.0;
    c->tokens_at_ms = now;
    if (c->tokens > (double)c->cfg.burst)
        c->tokens = (double)c->cfg.burst;
}

static void pump(supplier_client *c)
{
    while (!c->freeing && c->q_head && c->st.in_flight < c->cfg.max_in_flight) {
        refill(c);
        if (c->tokens < 1.0) {
            if (!evtimer_pending(c->pump_timer, NULL)) {
                double wait = (1.0 - c->tokens) * 1000.0 / c->cfg.rate_per_s;
                struct timeval tv;
                ms_to_tv((uint64_t)wait + 1, &tv);
                evtimer_add(c->pump_timer, &tv);
            }
            return;
        }
        c->tokens -= 1.0;
        start(c, dequeue(c));
    }
}

static void pump_timer_cb(evutil_socket_t fd, short kind, void *arg)
{
    (void)fd;
    (void)kind;
    pump(arg);
}

/* ---- answers ------------------------------------------------------------------------------- */

static supplier_xfer map_curl(CURL *e, CURLcode rc, bool too_large)
{
    curl_off_t connect_us = 0;
    long sent = 0;
    switch (rc) {
    case CURLE_OK: return SUPPLIER_XFER_OK;
    case CURLE_FILESIZE_EXCEEDED: return SUPPLIER_XFER_TOO_LARGE;
    case CURLE_WRITE_ERROR: return too_large ? SUPPLIER_XFER_TOO_LARGE : SUPPLIER_XFER_LOCAL;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return SUPPLIER_XFER_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        /* Not sent only when it never connected AND wrote no request
         * bytes: a reused keep-alive connection reports a connect time of
         * 0 although the request went out (and may have bought). */
        curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &connect_us);
        curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &sent);
        return connect_us == 0 && sent == 0 ? SUPPLIER_XFER_CONNECT : SUPPLIER_XFER_TIMEOUT;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return SUPPLIER_XFER_LOCAL;
    default:
        return SUPPLIER_XFER_IO;
    }
}

static bool may_retry(const supplier_client *c, const sup_req *r, const supplier_result *res)
{
    if (res->outcome != SUPPLIER_RETRYABLE || c->freeing || r->attempts >= c->cfg.max_attempts)
        return false;
    if (res->kind == SUPPLIER_KIND_ABORTED)
        return false;
    return !supplier_kind_maybe_executed(res->kind) || r->repeat_safe;
}

static uint64_t backoff_ms(supplier_client *c, unsigned retry)
{
    uint64_t d = c->cfg.backoff_base_ms;
    for (unsigned i = 1; i < retry && d < c->cfg.backoff_max_ms; i++)
        d *= 2;
    if (d > c->cfg.backoff_max_ms)
        d = c->cfg.backoff_max_ms;
    return d / 2 + rng_next(c) % (d - d / 2 + 1);
}

static void schedule_retry(supplier_client *c, sup_req *r, const supplier_result *res)
{
    uint64_t delay = backoff_ms(c, r->attempts);
    char att[16], dl[24];
    if (res->kind == SUPPLIER_KIND_QOS) {
        /* The whole app key is over its quota: slow every call, not just this one. */
        refill(c);
        c->tokens = 0;
    }
    snprintf(att, sizeof att, "%u", r->attempts);
    snprintf(dl, sizeof dl, "%llu", (unsigned long long)delay);
    LOG_W("supplier call retried", "api", supplier_api_name(r->api), "kind",
          supplier_kind_name(res->kind), "code", res->code, "attempt", att, "delay_ms", dl);
    req_wait(c, r, delay);
}

static void attempt_done(supplier_client *c, sup_req *r, CURLcode rc)
{
    long status = 0;
    supplier_reply rep;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    supplier_response rsp = {
        .xfer = map_curl(r->easy, rc, r->too_large),
        .http_status = (int)status,
        .body = r->resp,
        .body_len = r->resp_len,
        .xfer_error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc),
    };
    memset(&rep, 0, sizeof rep);
    rep.api = r->api;
    supplier_parse(&rsp, &rep);
    curl_multi_remove_handle(c->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    c->st.in_flight--;
    if (rep.res.outcome == SUPPLIER_RETRYABLE)
        c->st.by_kind[rep.res.kind]++;
    redact_result(c, &rep.res);
    if (may_retry(c, r, &rep.res)) {
        supplier_reply_clear(&rep);
        schedule_retry(c, r, &rep.res);
        return;
    }
    req_finish(c, r, &rep);
}

static void drain_done(supplier_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode rc = msg->data.result;
        sup_req *r = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
        assert(r && r->easy == e);
        attempt_done(c, r, rc);
    }
    pump(c);
}

/* ---- client ------------------------------------------------------------------------------- */

static bool client_init(supplier_client *c, struct event_base *base,
                        const supplier_client_config *cfg)
{
    c->base = base;
    c->cfg = *cfg;
    c->cfg.base_url = c->cfg.app_key = c->cfg.app_secret = c->cfg.access_token = NULL;
    snprintf(c->base_url, sizeof c->base_url, "%s", cfg->base_url);
    size_t bl = strlen(c->base_url);
    while (bl > 0 && c->base_url[bl - 1] == '/')
        c->base_url[--bl] = '\0';
    c->tokens = (double)cfg->burst;
    c->tokens_at_ms = mono_ms();
    c->rng = cfg->seed ? cfg->seed : (wall_ms() ^ ((uint64_t)(uintptr_t)c << 16));
    if (!c->rng)
        c->rng = 1;
    c->multi = curl_multi_init();
    c->curl_timer = evtimer_new(base, curl_timer_cb, c);
    c->pump_timer = evtimer_new(base, pump_timer_cb, c);
    c->headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded; "
                                         "charset=UTF-8");
    struct curl_slist *h = c->headers ? curl_slist_append(c->headers, "Expect:") : NULL;
    if (!c->multi || !c->curl_timer || !c->pump_timer || !h)
        return false;
    c->headers = h;
    CURLM *m = c->multi;
    return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, sock_cb) == CURLM_OK &&
           curl_multi_setopt(m, CURLMOPT_SOCKETDATA, c) == CURLM_OK &&
           curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, multi_timer_cb) == CURLM_OK &&
           curl_multi_setopt(m, CURLMOPT_TIMERDATA, c) == CURLM_OK &&
           curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->max_in_flight) ==
               CURLM_OK &&
           curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg->max_in_flight) ==
               CURLM_OK;
}

static void client_release(supplier_client *c)
{
    if (c->multi)
        curl_multi_cleanup(c->multi);
    while (c->socks) { /* sockets curl did not report REMOVE for */
        sup_sock *s = c->socks;
        c->socks = s->next;
        event_free(s->ev);
        free(s);
    }
    if (c->curl_timer)
        event_free(c->curl_timer);
    if (c->pump_timer)
        event_free(c->pump_timer);
    curl_slist_free_all(c->headers);
    /* Do not leave the credentials in freed memory. */
    explicit_bzero(c->secret, sizeof c->secret);
    explicit_bzero(c->token, sizeof c->token);
    free(c);
}

supplier_client *supplier_client_new(struct event_base *base, const supplier_client_config *cfg,
                                     char *err, size_t err_len)
{
    const char *why = check_config(cfg);
    if (why) {
        snprintf(err, err_len, "%s", why);
        return NULL;
    }
    supplier_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    if (!copy_cred(c->app_key, sizeof c->app_key, cfg->app_key) ||
        strspn(c->app_key, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-.") !=
            strlen(c->app_key) ||
        !copy_cred(c->secret, sizeof c->secret, cfg->app_secret) ||
        !copy_cred(c->token, sizeof c->token, cfg->access_token)) {
        snprintf(err, err_len, "app key, secret and access token must be 1..%d bytes "
                 "(app key: [A-Za-z0-9_.-])", SUPPLIER_CRED_MAX - 1);
        client_release(c);
        return NULL;
    }
    if (!client_init(c, base, cfg)) {
        snprintf(err, err_len, "out of memory (curl/libevent)");
        client_release(c);
        return NULL;
    }
    return c;
}

void supplier_client_free(supplier_client *c)
{
    if (!c)
        return;
    c->freeing = true;
    while (c->all) {
        sup_req *r = c->all;
        if (r->state == REQ_WIRE) {
            curl_multi_remove_handle(c->multi, r->easy);
            curl_easy_cleanup(r->easy);
            r->easy = NULL;
            c->st.in_flight--;
        } else if (r->state == REQ_QUEUED) {
            sup_req **pp = &c->q_head;
            while (*pp != r)
                pp = &(*pp)->q_next;
            *pp = r->q_next;
            c->st.queued--;
        } else {
            evtimer_del(r->timer);
            c->st.backing_off--;
        }
        req_finish_local(c, r, SUPPLIER_RETRYABLE, SUPPLIER_KIND_ABORTED, "client.Aborted",
                         "client freed before the call finished");
    }
    client_release(c);
}

void supplier_client_stats(const supplier_client *c, supplier_stats *out)
{
    *out = c->st;
}

/* ---- submissions ------------------------------------------------------------------------- */

/* kv: n pairs of NUL-terminated key, value; copied into one arena. */
static int submit(supplier_client *c, supplier_api api, bool repeat_safe, const char *const *kv,
                  size_t n, supplier_done_fn fn, void *arg)
{
    assert(n <= SUP_BIZ_PARAMS_MAX);
    size_t total = 0;
    if (!c || !fn || c->freeing || c->st.queued >= c->cfg.max_queued)
        goto refuse;
    for (size_t i = 0; i < 2 * n; i++)
        total += strlen(kv[i]) + 1;
    /* Encoding at most triples a byte; system params add well under 1 KiB. */
    if (3 * (total + strlen(c->token)) + 1024 > SUPPLIER_REQUEST_MAX)
        goto refuse;
    sup_req *r = calloc(1, sizeof *r);
    if (!r)
        goto refuse;
    r->arena = malloc(total);
    r->timer = evtimer_new(c->base, req_timer_cb, r);
    if (!r->arena || !r->timer) {
        req_free(r);
        goto refuse;
    }
    char *w = r->arena;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(kv[2 * i]), vl = strlen(kv[2 * i + 1]);
        memcpy(w, kv[2 * i], kl + 1);
        memcpy(w + kl + 1, kv[2 * i + 1], vl + 1);
        r->params[i] = (supplier_param){w, kl, w + kl + 1, vl};
        w += kl + vl + 2;
    }
    r->n_params = n;
    r->c = c;
    r->api = api;
    r->repeat_safe = repeat_safe;
    r->fn = fn;
    r->arg = arg;
    r->next = c->all;
    if (c->all)
        c->all->prev = r;
    c->all = r;
    c->st.calls++;
    enqueue(c, r, false);
    /* Starting is not calling back: failures to start go through r->timer. */
    pump(c);
    return 0;
refuse:
    if (c)
        c->st.refused++;
    return -1;
}

static bool id_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return false;
    }
    return true;
}

int supplier_product_get(supplier_client *c, int64_t offer_id, supplier_done_fn fn, void *arg)
{
    char id[24];
    if (offer_id <= 0)
        return c ? (c->st.refused++, -1) : -1;
    snprintf(id, sizeof id, "%lld", (long long)offer_id);
    const char *kv[] = {"productID", id, "webSite", "1688"};
    return submit(c, SUPPLIER_API_PRODUCT_GET, true, kv, 2, fn, arg);
}

/* cargoParamList as compact JSON; NULL on bad lines. Caller frees. */
static char *cargo_json(const supplier_cargo_line *lines, size_t n)
{
    if (!lines || n == 0 || n > SUPPLIER_LINES_MAX)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        const supplier_cargo_line *l = &lines[i];
        if (l->offer_id <= 0 || !id_ok(l->spec_id, SUPPLIER_SPEC_MAX) || l->quantity < 1 ||
            l->quantity > SUPPLIER_AMOUNT_MAX) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, json_pack("{sIsssI}", "offerId", (json_int_t)l->offer_id,
                                             "specId", l->spec_id, "quantity",
                                             (json_int_t)l->quantity));
    }
    char *s = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return s;
}

static bool address_ok(const char *address_json)
{
    if (!address_json || strlen(address_json) > SUP_ADDRESS_MAX)
        return false;
    json_t *a = json_loads(address_json, 0, NULL);
    bool ok = json_is_object(a);
    json_decref(a);
    return ok;
}

static int submit_order(supplier_client *c, supplier_api api, const supplier_cargo_line *lines,
                        size_t n, const char *address_json, const char *flow,
                        const char *out_order_id, bool repeat_safe, supplier_done_fn fn,
                        void *arg)
{
    const char *kv[2 * SUP_BIZ_PARAMS_MAX];
    size_t k = 0;
    if (!address_ok(address_json) || (flow && !id_ok(flow, SUPPLIER_STATUS_MAX)) ||
        (out_order_id && !id_ok(out_order_id, SUPPLIER_OUT_ID_MAX)))
        return c ? (c->st.refused++, -1) : -1;
    char *cargo = cargo_json(lines, n);
    if (!cargo)
        return c ? (c->st.refused++, -1) : -1;
    kv[k++] = "addressParam";
    kv[k++] = address_json;
    kv[k++] = "cargoParamList";
    kv[k++] = cargo;
    if (flow) {
        kv[k++] = "flow";
        kv[k++] = flow;
    }
    if (out_order_id) {
        kv[k++] = "outOrderId";
        kv[k++] = out_order_id;
    }
    int rc = submit(c, api, repeat_safe, kv, k / 2, fn, arg);
    free(cargo);
    return rc;
}

int supplier_order_preview(supplier_client *c, const supplier_cargo_line *lines, size_t n,
                     const char *address_json, const char *flow, supplier_done_fn fn, void *arg)
{
    return submit_order(c, SUPPLIER_API_PREVIEW, lines, n, address_json, flow, NULL, true, fn,
                        arg);
}

int supplier_create_order(supplier_client *c, const supplier_cargo_line *lines, size_t n,
                          const char *address_json, const char *flow, const char *out_order_id,
                          bool idempotent, supplier_done_fn fn, void *arg)
{
    /* Without an outOrderId the gateway cannot recognise a repeat. */
    bool repeat_safe = idempotent && out_order_id != NULL;
    return submit_order(c, SUPPLIER_API_CREATE, lines, n, address_json, flow, out_order_id,
                        repeat_safe, fn, arg);
}

int supplier_buyer_view(supplier_client *c, const char *order_id, const char *out_order_id,
                        supplier_done_fn fn, void *arg)
{
    const char *key = order_id ? "orderId" : "outOrderId";
    const char *val = order_id ? order_id : out_order_id;
    size_t max = order_id ? SUPPLIER_ORDER_ID_MAX : SUPPLIER_OUT_ID_MAX;
    if (!id_ok(val, max) || (order_id && strspn(order_id, "0123456789") != strlen(order_id)))
        return c ? (c->st.refused++, -1) : -1;
    const char *kv[] = {"webSite", "1688", key, val};
    return submit(c, SUPPLIER_API_BUYER_VIEW, true, kv, 2, fn, arg);
}

int supplier_cancel(supplier_client *c, const char *order_id, const char *reason,
                    supplier_done_fn fn, void *arg)
{
    if (!reason)
        reason = "buyerCancel";
    if (!id_ok(order_id, SUPPLIER_ORDER_ID_MAX) ||
        strspn(order_id, "0123456789") != strlen(order_id) ||
        (strcmp(reason, "buyerCancel") != 0 && strcmp(reason, "sellerGoodsLack") != 0 &&
         strcmp(reason, "other") != 0))
        return c ? (c->st.refused++, -1) : -1;
    const char *kv[] = {"webSite", "1688", "tradeID", order_id, "cancelReason", reason};
    return submit(c, SUPPLIER_API_CANCEL, false, kv, 3, fn, arg);
}
