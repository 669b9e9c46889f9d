/* notify.h — telling people: order.subscribe listeners and the
 * order.update notifications sent to them, peers' whole-order updates (told
 * once however many owners send them), and the ring of recent support
 * alerts behind alerts.list.
 *
 * Listeners: at most NOTIFY_LISTENERS_MAX connections (more are refused,
 * the caller answers busy). A notification goes to every listener; one
 * whose unsent output is over max_output_bytes is not buffered for but
 * closed (conn_close defers the free, so a listener whose own request made
 * the notification is still there for its reply). The owner calls
 * notify_forget() from the connection's close callback.
 *
 * Peer updates: the newest NOTIFY_UPDATES_SEEN (order_id, status) pairs are
 * remembered (hashes in a ring), so two owners telling the same change reach
 * listeners once.
 *
 * Alerts: the newest NOTIFY_ALERTS_MAX in memory (MariaDB keeps them all);
 * strings are cut to their fields' sizes.
 *
 * Ownership: notify owns its arrays and its packing buffer; connections
 * are the connection manager's (conn.h), held here only while listening.
 */
#ifndef STOCKD_NOTIFY_H
#define STOCKD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "stockd/config.h"
#include "stockd/conn.h"

#define NOTIFY_LISTENERS_MAX 1024
#define NOTIFY_UPDATES_SEEN 4096
#define NOTIFY_ALERTS_MAX 1000

typedef struct notify notify;

notify *notify_new(const stockd_config *cfg);
void notify_free(notify *n);

/* Idempotent; false when NOTIFY_LISTENERS_MAX connections listen already. */
bool notify_subscribe(notify *n, conn *c);
/* c closes: never written to again. A c that does not listen is fine. */
void notify_forget(notify *n, conn *c);
uint32_t notify_listeners(const notify *n);

/* One order.update to every listener: notify_begin() writes the head
 * [2, "order.update", [ and returns the packer the caller packs exactly one
 * order record into; notify_end() sends it and returns the listeners
 * reached. Only when notify_listeners() > 0. */
msgpack_packer *notify_begin(notify *n);
uint32_t notify_end(notify *n);

/* A peer's update of (order_id, status): true the first time (tell it),
 * false when it was told already. */
bool notify_update_first(notify *n, const char *order_id, size_t id_len, const char *status,
                         size_t status_len);

/* Remembers an alert for alerts.list (NULL order_id or reason: ""). */
void notify_alert(notify *n, const char *kind, const char *sku, const char *order_id,
                  const char *reason, int64_t at_ms);
/* alerts.list's answer: an array of the newest `limit` alerts, newest first. */
void notify_alerts_pack(const notify *n, msgpack_packer *pk, uint32_t limit);

typedef struct notify_stats {
    uint32_t listeners;
    uint64_t sent, dropped;            /* notifications sent; listeners closed for not reading */
    uint64_t updates_told, updates_repeated;
    uint32_t alerts_kept;
} notify_stats;
void notify_stats_get(const notify *n, notify_stats *out);

#endif
