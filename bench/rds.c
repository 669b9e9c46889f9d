/* rds.c — see rds.h. */
#include "rds.h"

#include <stdio.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>

static void rds_connect_cb(const redisAsyncContext *ac, int status)
{
    rds_conn *c = ac->data;
    if (c == NULL)
        return;
    if (status != REDIS_OK) {
        c->ac = NULL;                         /* hiredis frees it after this */
        c->up = false;
    } else {
        c->up = true;
    }
    (*c->n_settled)++;
}

static void rds_disconnect_cb(const redisAsyncContext *ac, int status)
{
    (void)status;
    rds_conn *c = ac->data;
    if (c == NULL)
        return;
    c->ac = NULL;
    c->up = false;
    if (c->idx != UINT32_MAX)
        bench_conn_dead(c->r, c->idx);
}

int rds_connect(bench_run *r, rds_conn *c, uint32_t *n_settled, char *err, size_t err_len)
{
    const bench_opts *o = bench_opts_of(r);
    c->r = r;
    c->idx = UINT32_MAX;
    c->n_settled = n_settled;
    c->ac = redisAsyncConnect(o->redis.host, o->redis.port);
    if (c->ac == NULL || c->ac->err) {
        snprintf(err, err_len, "redis %s:%u: %s", o->redis.host, o->redis.port,
                 c->ac ? c->ac->errstr : "out of memory");
        if (c->ac != NULL)
            redisAsyncFree(c->ac);
        c->ac = NULL;
        return -1;
    }
    c->ac->data = c;
    redisLibeventAttach(c->ac, bench_base(r));
    redisAsyncSetConnectCallback(c->ac, rds_connect_cb);
    redisAsyncSetDisconnectCallback(c->ac, rds_disconnect_cb);
    return 0;
}

void rds_close(rds_conn *c)
{
    if (c->ac == NULL)
        return;
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    if (!c->up)
        ac->data = NULL;                      /* still connecting: no callbacks for us */
    redisAsyncFree(ac);
}

redisContext *rds_blocking(const bench_opts *o, char *err, size_t err_len)
{
    struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
    redisContext *c = redisConnectWithTimeout(o->redis.host, o->redis.port, tv);
    if (c == NULL || c->err) {
        snprintf(err, err_len, "redis %s:%u: %s", o->redis.host, o->redis.port,
                 c ? c->errstr : "out of memory");
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    struct timeval rw = { .tv_sec = 60, .tv_usec = 0 };
    redisSetTimeout(c, rw);
    return c;
}

int rds_script_load(redisContext *c, const char *script, char *sha, char *err, size_t err_len)
{
    redisReply *rep = redisCommand(c, "SCRIPT LOAD %s", script);
    if (rep == NULL || rep->type != REDIS_REPLY_STRING || rep->len != 40) {
        snprintf(err, err_len, "SCRIPT LOAD: %s", rep ? (rep->str ? rep->str : "bad reply") : c->errstr);
        if (rep != NULL)
            freeReplyObject(rep);
        return -1;
    }
    memcpy(sha, rep->str, 40);
    sha[40] = '\0';
    freeReplyObject(rep);
    return 0;
}

int rds_pipeline(redisContext *c, uint32_t n, rds_append_fn append, rds_reply_fn on_reply,
                 void *arg, char *err, size_t err_len)
{
    enum { CHUNK = 1000 };
    for (uint32_t i = 0; i < n; i += CHUNK) {
        uint32_t end = n - i < CHUNK ? n : i + CHUNK;
        for (uint32_t j = i; j < end; j++) {
            if (append(c, j, arg) != REDIS_OK) {
                snprintf(err, err_len, "redis append: %s", c->errstr);
                return -1;
            }
        }
        for (uint32_t j = i; j < end; j++) {
            void *rep = NULL;
            if (redisGetReply(c, &rep) != REDIS_OK || rep == NULL) {
                snprintf(err, err_len, "redis: %s", c->errstr);
                return -1;
            }
            redisReply *rr = rep;
            int rc = 0;
            if (rr->type == REDIS_REPLY_ERROR) {
                snprintf(err, err_len, "redis: %s", rr->str);
                rc = -1;
            } else if (on_reply != NULL) {
                rc = on_reply(j, rr, arg);
                if (rc != 0)
                    snprintf(err, err_len, "redis: unexpected reply");
            }
            freeReplyObject(rr);
            if (rc != 0)
                return -1;
        }
    }
    return 0;
}
