/* rpc.h — the request's life on a node (node.h): a frame from a connection
 * (conn.h) is decoded and validated (rpc_parse.h), authorized (the admin
 * token; the peer handshake and peer-only fields, peer_auth.h), then
 * answered from memory (reads), routed elsewhere (route.h), or queued (a
 * cold SKU, coldload.h; the engine, core.h), and answered exactly once.
 *
 * Ownership: a req comes from the node's free list (req_get) and goes back
 * with req_put once answered; while it waits it is held on its connection
 * (conn_hold), so the connection outlives it; req_finish sends what was
 * packed, puts the req back and releases the connection, the one way a
 * waiting request leaves. Counting: every answer is counted once, by
 * method and result, with its latency (rpc_count / rpc_count_at).
 */
#ifndef STOCKD_RPC_H
#define STOCKD_RPC_H

#include "stockd/node.h"

/* conn.h callbacks for the node's connections (arg: the server). */
bool rpc_on_frame(void *arg, conn *c, const uint8_t *p, size_t n);
void rpc_on_bad_frame(void *arg, conn *c, enum conn_bad why, int64_t msgid);
void rpc_on_close(void *arg, conn *c);

/* The engine answers a request (engine_new's done callback, arg: server). */
void rpc_done_cb(eng_op *op, void *arg);
/* A queued request's deadline passed (its timer, arg: the req). */
void rpc_deadline_cb(evutil_socket_t fd, short what, void *arg);

/* A request this node answers itself: from memory, after a cold load, or
 * through the engine. Not held on its connection yet. */
void rpc_local_request(server *s, conn *c, req *r, uint32_t msgid, enum method m,
                       int64_t deadline_ms);

/* The transitions of enum req_state (node.h): req_get FREE -> PARSING;
 * req_authorized PARSING -> AUTHORIZED; req_hold AUTHORIZED or WAITING ->
 * WAITING (held on c); req_reroute WAITING -> AUTHORIZED; req_finish WAITING -> ANSWERED -> FREE; req_put an
 * answer given at once (or none) -> FREE. Asserted: nothing is answered
 * twice or released while it waits. */
req *req_get(server *s);
void req_authorized(req *r);
void req_hold(req *r, conn *c);
/* WAITING -> AUTHORIZED: a waiting request routed anew (its owner or its
 * order was found); the caller releases the old hold after routing it. */
void req_reroute(req *r);
void req_put(server *s, req *r);
/* Marks r as waiting on c (answered later through req_finish). */
void req_wait(server *s, conn *c, req *r, uint32_t msgid, enum method m, int64_t deadline_ms);
void req_finish(server *s, req *r);

/* Sends what was packed into s->out to c (dropped unless c is open). */
void rpc_flush(server *s, conn *c);
/* Counts an answer to a request read at start_ns / to the frame being
 * handled now. */
void rpc_count_at(server *s, enum method m, int res, int64_t start_ns);
void rpc_count(server *s, enum method m, int res);
const char *rpc_result_name(int r);

/* Answers packed into s->pk (reply.h, with what only the node knows: an
 * order's lines, what was set aside). */
void rpc_pack_order(server *s, msgpack_packer *pk, const eng_order_view *o);
void rpc_pack_eng_error(server *s, uint32_t msgid, const eng_op *op);
void rpc_reply_error(server *s, conn *c, uint32_t msgid, const char *code, const char *message,
                     bool retryable, const char *dkey, const char *dval);
void rpc_reply_invalid(server *s, conn *c, uint32_t msgid, enum method m, const char *field,
                       const char *problem);

/* sku.recheck on the SKU's owner (v: the SKU): pokes the supplier sync
 * and packs the answer. */
void rpc_pack_recheck(server *s, uint32_t msgid, const eng_stock_view *v);

/* The committed record an order call names (a part when the call has
 * part_lines); whether the engine knows it. */
bool rpc_order_read(const server *s, const eng_op *op, eng_order_view *out);
bool rpc_order_known(const server *s, const eng_op *op);

#endif
