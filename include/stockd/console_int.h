/* console_int.h — the state shared by the console's two files: console.c
 * (sessions, sign-in, CSRF, input checks, routing, the pending answers and
 * the small helpers) and console_api.c (the JSON API: live alerts, rates,
 * SKU and supplier views, actions). Not for other modules: console.h is
 * the console's contract. */
#ifndef STOCKD_CONSOLE_INT_H
#define STOCKD_CONSOLE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>
#include <jansson.h>

#include "stockd/console.h"
#include "stockd/console_rpc.h"
#include "stockd/engine.h"
#include "stockd/httpd.h"
#include "stockd/ring.h"
#include "stockd/store.h"

#define COOKIE_NAME "stockd_console"
#define SID_HEX 64                  /* 32 random bytes */
#define HOST_MAX 64
#define JSON_DEPTH_MAX 8            /* RPC results are maps of maps at most */
#define JSON_ITEMS_MAX 1000

/* Security headers of every console answer. */
extern const char cs_sec_headers[];



typedef struct session {
    bool used;
    char id[SID_HEX + 1];
    char csrf[SID_HEX + 1];
    char name[ENG_ID_MAX + 1];
    int64_t created_ms, expires_ms;     /* wall clock */
} session;

typedef struct rate_sample {
    int64_t t_ms;
    uint64_t ok, refused;
} rate_sample;

typedef enum pkind { P_LIVE = 0, P_SKU, P_SUPPLIER, P_ACTION, P_FANOUT } pkind;

typedef struct pending pending;

/* One RPC call or query of a pending answer: which slot it fills. */
typedef struct sub {
    pending *p;
    int idx;
    char node[RING_NAME_MAX + 1];
} sub;

struct pending {
    struct console *c;
    httpd_req *req;
    pkind kind;
    int waiting;                  /* calls and queries not answered yet */
    int status;                   /* HTTP status of the answer */
    json_t *out;                  /* the answer being built */
    json_t *nodes;                /* P_SUPPLIER, P_FANOUT: one entry per node */
    sub subs[RING_NODES_MAX + 2];
    pending *prev, *next;
    pending *next_waiter;         /* P_LIVE: waiting for the open alerts */
};

struct console {
    struct event_base *base;
    server *srv;
    const stockd_config *cfg;
    crpc *rpc;
    session sessions[CONSOLE_SESSIONS_HARD_MAX];
    pending *pending;
    uint32_t n_pending;
    /* open alerts: the last result, shared by every poll for a moment */
    json_t *alerts;
    char alerts_error[160];
    int64_t alerts_mono_ms;       /* when the last result came (0: never) */
    int64_t alerts_at_ms;         /* wall clock of the same */
    bool alerts_inflight;
    pending *waiters;
    /* failed sign-ins: a token bucket */
    double login_tokens;
    int64_t login_mono_ms;
    /* reserve counters, one sample a second, for the chart */
    struct event *tick;
    rate_sample samples[CONSOLE_RATE_SAMPLES];
    uint32_t n_samples, samples_head;
};

/* ------------------------------------------------------------ params of calls */

typedef struct kv {
    const char *k;
    char t;                       /* 's' str, 'i' int, 'd' double, 'b' bool */
    const char *s;
    int64_t i;
    double d;
    bool b;
} kv;

typedef struct params {
    kv kv[8];
    int n;
} params;

/* console.c */
void cs_copy_cut(char *dst, size_t cap, const char *src);
bool cs_secret_equal(const char *got, size_t got_len, const char *want);
const char *cs_reason_of(int status);
void cs_reply_json(httpd_req *req, int status, json_t *j, const char *extra);
void cs_reply_error(httpd_req *req, int status, const char *code, const char *message,
                        const char *extra);
void cs_self_addr(const stockd_config *cfg, char *host, size_t n, int *port);
size_t cs_nodes_get(const console *c, ring_node *out);
json_t *cs_mp_json(const msgpack_object *o, int depth);
const char *cs_mp_str(const msgpack_object *map, const char *key, char *buf, size_t n);
int cs_status_of_code(const char *code);
json_t *cs_rpc_outcome(const msgpack_object *error, const msgpack_object *result,
                           const char *reason, int *status);
void cs_p_str(params *p, const char *k, const char *v);
void cs_p_int(params *p, const char *k, int64_t v);
void cs_p_dbl(params *p, const char *k, double v);
void cs_p_bool(params *p, const char *k, bool v);
void cs_p_token(params *p, const stockd_config *cfg);
void cs_pack_params(msgpack_packer *pk, const void *ctx);
pending *cs_pending_new(console *c, httpd_req *req, pkind kind);
void cs_pending_free(pending *p);
void cs_pending_done(pending *p);
json_t *cs_body_object(httpd_req *req, const char *allowed);
const char *cs_field_str(httpd_req *req, json_t *j, const char *key, size_t max,
                             bool required, bool allow_empty, bool *bad);
bool cs_query_param(httpd_req *req, const char *name, char *out, size_t max);

/* console_api.c */
void cs_tick_cb(evutil_socket_t fd, short what, void *arg);
void cs_on_live(console *c, httpd_req *req);
void cs_on_sku(console *c, httpd_req *req);
void cs_on_supplier(console *c, httpd_req *req);
void cs_on_ack(console *c, httpd_req *req, const session *se);
void cs_on_release(console *c, httpd_req *req);
void cs_on_recheck(console *c, httpd_req *req);
void cs_on_supplier_put(console *c, httpd_req *req);

#endif
