/* core.h — the engine's pump and what follows a commit. The pump runs as a
 * deferred event after the current round of callbacks, so every request
 * read in one loop iteration can share one batch; it hands ready batches
 * to the store while the store can take them. A batch's outcome is applied
 * to the engine (committed, aborted, unknown, later resolved), then what it
 * asks for is done: order.update notifications, support alerts (log, ring,
 * Redis stream), cache refreshes, purchase kicks, cart events. The tick
 * (every EXPIRY_TICK_MS) expires holds, forgets SKUs that moved away and
 * settles this node's lapsed cart parts.
 *
 * Part of the node (node.h): the engine and pump section of struct server.
 */
#ifndef STOCKD_CORE_H
#define STOCKD_CORE_H

#include "stockd/node.h"

#define EXPIRY_TICK_MS 50

/* Where the pump sends batches: in stockd the store (server_set_store sets
 * it); tests/unit/test_core.c sets its own and completes the batches itself
 * through the callbacks server_store_callbacks gives, which is how the
 * core is tested without MariaDB. */
void core_set_sink(server *s, const core_sink *sink);
/* Whether batches can commit now (the sink is set and up). */
bool core_store_up(const server *s);

void core_pump_schedule(server *s);
/* The pump's and the tick's events (arg: server). */
void core_pump_cb(evutil_socket_t fd, short what, void *arg);
void core_tick_cb(evutil_socket_t fd, short what, void *arg);
/* The engine's limits from the configuration. */
void core_limits_from_cfg(const stockd_config *cfg, eng_limits *lim);

#endif
