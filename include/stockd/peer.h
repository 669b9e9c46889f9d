/* peer.h — msgpack-rpc connections from this instance to its peers, for
 * forwarding requests to the owner of a SKU.
 *
 * One pipelined connection per peer, opened at the first use and reopened
 * with backoff after a failure. Each connection first proves the cluster
 * secret and checks the peer's proof (peer_auth.h); calls made meanwhile
 * wait and are sent only once both sides are proven, so a peer that cannot
 * prove the secret never receives one (the call fails "unauthorized", or
 * "unreachable" when the handshake times out after 3 s). A call packs [0, id, method, [params]] with
 * an id of the pool's own, and its reply comes back through the callback
 * with the peer's error and result objects, valid only during the call (the
 * caller re-packs them under the client's msgid).
 *
 * Every call gets exactly one callback, from the loop and never from inside
 * peer_call(): a reply, or a failure (peer unreachable, connection lost,
 * timeout, or the pool closing) with error == result == NULL and a reason.
 * After a failure the request may or may not have run on the peer; the
 * caller answers `unavailable`, and an order_id retry settles it.
 *
 * Limits: PEER_INFLIGHT_MAX calls in flight per peer (further calls fail at
 * once, `busy`), replies through codec_frame_check() with PEER_REPLY_MAX.
 */
#ifndef STOCKD_PEER_H
#define STOCKD_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <msgpack.h>

struct event_base;

#define PEER_INFLIGHT_MAX 65536
#define PEER_REPLY_MAX (4u << 20)

typedef struct peer_pool peer_pool;

/* reason: NULL on a reply; else why there is none. A call that never left
 * (the peer cannot have run it): "unreachable" (no connection, handshake
 * not done in time), "unauthorized" (the handshake failed), "busy". A call
 * that was sent and may or may not have run: "lost" (the connection
 * ended), "timeout", "closing" (the pool is freed). peer_maybe_ran() tells
 * the two apart. */
typedef void (*peer_reply_fn)(void *ctx, const msgpack_object *error,
                              const msgpack_object *result, const char *reason);

struct peer_keyring;
/* self: this node's name in the ring; keyring: the cluster secrets, owned
 * by the caller and read at every handshake (a reload takes effect for the
 * next connection). */
peer_pool *peer_pool_new(struct event_base *base, const char *self,
                         const struct peer_keyring *keyring);
/* Fails every call in flight ("closing") and frees the pool. */
void peer_pool_free(peer_pool *p);

/* Calls method on node name at HOST:PORT (IPv4 literal). params_map is packed as the
 * one map in params, followed by extra_key = extra_val when extra_key is
 * not NULL (e.g. "_fwd"). timeout_ms bounds the wait for the reply. */
void peer_call(peer_pool *p, const char *name, const char *host, int port, const char *method,
               const msgpack_object *params_map, const char *extra_key, uint64_t extra_val,
               uint32_t timeout_ms, peer_reply_fn fn, void *ctx);

typedef struct peer_stats {
    uint64_t calls, replies, failures, connects, connect_failures;
    uint64_t auth_ok, auth_failures;   /* handshakes done and failed */
    uint32_t inflight;
} peer_stats;

void peer_stats_get(const peer_pool *p, peer_stats *out);

/* True when a call that failed with `reason` may have run on the peer. */
static inline bool peer_maybe_ran(const char *reason)
{
    return reason != NULL && (strcmp(reason, "lost") == 0 || strcmp(reason, "timeout") == 0 ||
                              strcmp(reason, "closing") == 0);
}

#endif
