/* orderload.h — memory bounded by live orders. An order that has ended
 * and holds no stock (engine.h "memory bounded by live orders") leaves
 * memory --order-retention-ms after its last change, and startup loads only
 * live and recent orders; MariaDB keeps every row. A request that names an
 * order memory does not hold reads it back first:
 *   - an order call (order.get, confirm, release, ship) always asks MariaDB
 *     before it may answer not_found (memory is no longer the whole truth);
 *   - a reserve asks only when its order_id may be stored: evicted here, or
 *     refused by MariaDB's primary key (a retry of an order stored before
 *     this process started) — the filter of stored ids; a new order costs
 *     nothing. The primary key is the last guard: a reserve of a stored
 *     order that is decided as new fails its batch (retryable, nothing
 *     changes) and its retry reads the order back and answers its record.
 * Reads are single flight per order (waiters in arrival order, at most
 * queue_per_sku_max each), at most cold_loads_max in flight; beyond: busy.
 * A read-back whose SKU is not in memory (--preload-skus no) loads the SKU
 * first (coldload.h) and reads again. One instance only: a sharded node
 * keeps every order of the SKUs it owns (its takeovers load them all).
 *
 * Part of the node (node.h): reads and writes the order-reload section of
 * struct server. Errors: a read that fails answers unavailable (retryable);
 * rows that do not make a final order answer unavailable with the reason
 * and are logged (MariaDB keeps them for support).
 */
#ifndef STOCKD_ORDERLOAD_H
#define STOCKD_ORDERLOAD_H

#include "stockd/node.h"

/* Orders leave memory after this many a tick, at most. */
#define ORDERLOAD_EVICT_PER_TICK 4096
/* The filter of stored ids: two generations of this many ids each, 1 %
 * false positives (a false positive costs one read of MariaDB). */
#define ORDERLOAD_IDS_PER_GEN (1u << 20)

/* True when orders may be missing from memory (retention set, one instance,
 * a store). */
bool orderload_enabled(const server *s);
/* Takes a request whose order memory does not hold but MariaDB may: true
 * when it now waits for the read-back (held on c) or was answered; false:
 * the normal path handles it. */
bool orderload_intercept(server *s, conn *c, req *r, uint32_t msgid, enum method m,
                         int64_t deadline_ms);
/* The cold load a read-back waited for ended (coldload.c, result as its
 * waiters'): read the order again, or answer. */
void orderload_sku_loaded(server *s, req *r, int result);
/* The tick: final orders past the retention leave memory. */
void orderload_evict(server *s);
/* A batch MariaDB refused: when its primary key refused a new order, the
 * batch's new orders are remembered as stored, so their retries read them
 * back instead of failing again. */
void orderload_note_abort(server *s, const eng_batch *b, const char *err);
/* Shutdown: reads in flight are abandoned, their waiters answered
 * unavailable. */
void orderload_free_all(server *s);

#endif
