/* coldload.h — SKUs that are in MariaDB but not in memory ("cold": with
 * --preload-skus no, and every SKU of a sharded node until it takes it
 * over). A request naming one waits on a single-flight load (one per SKU,
 * waiters in arrival order, at most queue_per_sku_max; loads in flight at
 * most cold_loads_max, beyond: busy); the Bloom filter answers unknown_sku
 * for SKUs certainly unknown without touching a backend; a loaded SKU's
 * committed figure goes to the Redis read cache.
 *
 * Part of the node (node.h): reads and writes the read-path section of
 * struct server. Loads arrive from the store's callback and are handled
 * from there; a cart that needs its next cold SKU asks from the loop.
 */
#ifndef STOCKD_COLDLOAD_H
#define STOCKD_COLDLOAD_H

#include "stockd/node.h"

/* True when this node may hold SKUs not in memory. */
bool cold_enabled(const server *s);
/* Takes a request naming a SKU the engine does not hold. False: the normal
 * path handles it (nothing cold, or a sku.put of a certainly new SKU);
 * true: answered now, or waiting (held on c) on the load. */
bool cold_intercept(server *s, conn *c, req *r, uint32_t msgid, enum method m,
                    int64_t deadline_ms);
/* A request already waiting (held on its connection) that needs sku loaded
 * first: an order read back whose SKU is cold. Queued on the SKU's load;
 * when it ends, orderload_sku_loaded() takes the request again. False: not
 * queued (limits, the Bloom filter says unknown, no store). */
bool cold_wait_held(server *s, req *r, const char *sku);
/* Carts waiting for their next cold SKU (the node's event, arg: server). */
void cold_again_cb(evutil_socket_t fd, short what, void *arg);
/* Shutdown: loads still in flight are abandoned, their waiters answered
 * unavailable. */
void cold_free_all(server *s);

#endif
