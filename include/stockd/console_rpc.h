/* console_rpc.h — the support console's msgpack-rpc client. The console
 * acts through the same RPC path as any client (admin token, forwarding to
 * the SKU's owner, per-node methods such as supplier.put) by calling a
 * node's client port over TCP from the loop, so there is no second path to
 * the engine to keep in step with the first.
 *
 * One pipelined connection per node address, opened at the first call and
 * dropped on any error or bad reply (the next call opens a new one).
 * Limits: CRPC_TARGETS_MAX addresses, CRPC_INFLIGHT_MAX calls in flight in
 * all (beyond: crpc_call returns -1 at once), replies of at most
 * CRPC_REPLY_MAX bytes (a larger or malformed one drops the connection and
 * fails its calls), each call bounded by its timeout.
 *
 * Every call accepted (crpc_call returned 0) gets exactly one callback,
 * from the loop and never from inside crpc_call: a reply (error or result,
 * objects valid during the callback only) or a failure (both NULL) with a
 * reason: "unreachable" (no connection could be made: it never left),
 * "lost" (the connection ended after it was sent), "timeout" (no reply in
 * time; it may still run). crpc_free() drops calls in flight without
 * callbacks.
 */
#ifndef STOCKD_CONSOLE_RPC_H
#define STOCKD_CONSOLE_RPC_H

#include <stdint.h>

#include <msgpack.h>

struct event_base;
typedef struct crpc crpc;

#define CRPC_TARGETS_MAX 64        /* a cluster has at most RING_NODES_MAX nodes */
#define CRPC_INFLIGHT_MAX 256
#define CRPC_REPLY_MAX (1u << 20)

typedef void (*crpc_fn)(void *ctx, const msgpack_object *error, const msgpack_object *result,
                        const char *reason);
/* Packs the call's one params map. */
typedef void (*crpc_pack_fn)(msgpack_packer *pk, const void *pack_ctx);

crpc *crpc_new(struct event_base *base);
void crpc_free(crpc *c);

/* Calls method at host:port (an IP literal; IPv6 without brackets).
 * 0, or -1 (nothing sent, no callback) when over a limit or out of memory. */
int crpc_call(crpc *c, const char *host, int port, const char *method, crpc_pack_fn pack,
              const void *pack_ctx, uint32_t timeout_ms, crpc_fn fn, void *ctx);

#endif
