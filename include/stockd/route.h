/* route.h — a sharded node's routing (--peers): every SKU has one owner on
 * the ring; a request for a SKU another node owns is forwarded to it
 * (peer.h, over a proven connection) and its answer relayed under the
 * client's msgid; a forwarded change whose answer is lost answers
 * outcome unknown, one never sent a plain unavailable (PROTOCOL.md
 * "Faults"). Order calls without a SKU are routed by MariaDB's lines of the
 * order; orders of several lines go to the cart coordinator (cart.h). A
 * not_found from this node's memory is checked in MariaDB first. SKUs that
 * moved away (ring change, fence) are forgotten once idle.
 *
 * Part of the node (node.h): reads and writes the sharding section of
 * struct server. Without --peers none of this runs (route_sharded false).
 */
#ifndef STOCKD_ROUTE_H
#define STOCKD_ROUTE_H

#include "stockd/node.h"

bool route_sharded(const server *s);
uint32_t route_owner_of(const server *s, const char *sku);
const ring_node *route_node_at(const server *s, uint32_t i);

/* Routes a request on a sharded node: true when it was answered or sent
 * elsewhere; false when this node handles it (rpc_local_request). */
bool route_request(server *s, conn *c, req *r, const rpc_msg *msg, enum method m,
                   const rpc_parsed *pp);
/* A "sku" hint that led here to one line of a cross-shard order, or to no
 * order at all: the coordinator should find the whole order. */
bool route_hint_missed(const server *s, const req *r, enum method m);
/* Hands an order call to the coordinator (it takes its own hold on c). */
void route_coordinate_order(server *s, conn *c, req *r, uint32_t msgid, enum method m,
                            int64_t deadline_ms);
/* Before answering not_found for r (held on its connection): true when
 * MariaDB is asked (the answer then comes from there), false when the
 * caller answers not_found itself. */
bool route_nf_verify(server *s, req *r);
/* Whether route_nf_verify would ask MariaDB for r. */
bool route_nf_needed(const server *s, const req *r);

/* cluster.ring's answer into s->pk (a single node answers itself). */
void route_pack_ring(server *s);
/* SKUs to drop from memory once idle (they moved away); the sweep runs
 * from the tick. */
void route_forget_later(server *s, const char *sku);
void route_forget_sweep(server *s);
/* SIGHUP: the new peer list (cfg) becomes the ring. */
void route_ring_reload(server *s);
/* With the store attached: the cart coordinator. */
void route_coordinator_start(server *s);

#endif
