/* rds.h — Redis for stockbench: hiredis async connections on the loop
 * (0.14.1: no async timeouts, so the run's drain deadline is the timeout)
 * and blocking helpers for setup, audit and cleanup.
 */
#ifndef STOCKBENCH_RDS_H
#define STOCKBENCH_RDS_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "bench.h"

typedef struct rds_conn {
    redisAsyncContext *ac;   /* NULL once hiredis has freed it */
    bench_run *r;
    uint32_t idx;            /* driver connection index, UINT32_MAX until registered */
    bool up;
    uint32_t *n_settled;     /* bumped when the connect attempt ends either way */
    void *owner;             /* the mode's per-connection object */
} rds_conn;

/* Starts connecting c to --redis; the caller then bench_wait()s on
 * *n_settled and checks c->up. 0, or -1 with err. */
int rds_connect(bench_run *r, rds_conn *c, uint32_t *n_settled, char *err, size_t err_len);
/* Frees the context: pending callbacks run with a NULL reply. */
void rds_close(rds_conn *c);

/* Blocking context for setup and audit; NULL with err. */
redisContext *rds_blocking(const bench_opts *o, char *err, size_t err_len);
/* SCRIPT LOAD; sha must hold 41 bytes. 0 or -1 with err. */
int rds_script_load(redisContext *c, const char *script, char *sha, char *err, size_t err_len);
/* Runs n commands built by fmt(i, buf) (one per index, argv style:
 * "SET %s %s" is not used; fmt appends with redisAppendCommand), in
 * pipelined chunks; each reply is passed to on_reply(i, reply, arg) when
 * non-NULL. 0 or -1 with err. */
typedef int (*rds_append_fn)(redisContext *c, uint32_t i, void *arg);
typedef int (*rds_reply_fn)(uint32_t i, const redisReply *reply, void *arg);
int rds_pipeline(redisContext *c, uint32_t n, rds_append_fn append, rds_reply_fn on_reply,
                 void *arg, char *err, size_t err_len);

#endif
