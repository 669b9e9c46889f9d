/* client.h — the stockd C client library (blocking, for CLIs, tests and
 * setup code; high-rate async clients use codec.h directly).
 *
 * Contract
 * --------
 * Threads: none. A stockd_client is used by one thread at a time; distinct
 *   clients are independent. No global state (SIGPIPE is avoided with
 *   MSG_NOSIGNAL, not by touching signal handlers).
 * Blocking: every call that touches the network waits at most the client's
 *   timeout (stockd_client_set_timeout, default 5000 ms) measured from the
 *   start of that call, using poll() on a non-blocking socket.
 * Return codes (stockd_rc):
 *   STOCKD_OK         success.
 *   STOCKD_ERR_SERVER the server answered with an error map; it is parsed into
 *                     stockd_client_error(c). The connection stays usable.
 *   STOCKD_ERR_TRANSPORT connect/send/recv failed, the peer closed, or the
 *                     timeout passed. The connection is closed (the stream
 *                     position is unknown); in-flight requests are lost and
 *                     their outcome is unknown. stockd_client_errstr(c) says
 *                     why. Call stockd_client_connect() again to go on.
 *   STOCKD_ERR_PROTOCOL the server sent something the contract does not
 *                     allow (malformed msgpack closes the connection like a
 *                     transport error; a well-framed reply of the wrong shape
 *                     leaves it usable). See stockd_client_errstr(c).
 *   STOCKD_ERR_USAGE  the caller broke a rule (argument too long, too many
 *                     requests in flight, unknown msgid...). Nothing was sent.
 * Ownership: the client owns everything it hands out. Pointers returned by
 *   a call (reply objects, the packer, error text) stay valid until the next
 *   call on the same client that sends or receives, or until free. Typed
 *   results (stockd_order, stockd_stock) are plain structs the caller owns;
 *   their strings are fixed arrays, NUL-terminated, truncated if the server
 *   ever sent longer ones.
 *
 * Pipelining: stockd_request_begin()/stockd_request_end() (or the
 * stockd_send_* helpers) queue requests without waiting; stockd_flush()
 * sends them; stockd_recv() waits for one msgid, keeping replies that arrive
 * for other msgids until asked for (at most max_inflight of them).
 */
#ifndef STOCKD_CLIENT_H
#define STOCKD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#define STOCKD_DEFAULT_ADDR "127.0.0.1:7400"
#define STOCKD_DEFAULT_TIMEOUT_MS 5000
#define STOCKD_DEFAULT_MAX_INFLIGHT 1024u
#define STOCKD_MAX_REPLY_BYTES (4u << 20)   /* larger replies are a protocol error */
#define STOCKD_MAX_ID_BYTES 64              /* order_id and sku */
#define STOCKD_MAX_LINES 50                 /* lines of one reserve (an order of several SKUs) */

typedef enum stockd_rc {
    STOCKD_OK = 0,
    STOCKD_ERR_SERVER = 1,
    STOCKD_ERR_TRANSPORT = 2,
    STOCKD_ERR_PROTOCOL = 3,
    STOCKD_ERR_USAGE = 4,
} stockd_rc;

/* A server error reply. Optional details are empty / false when absent. */
typedef struct stockd_error {
    char code[32];            /* "insufficient", "busy", ... */
    char message[256];
    bool retryable;
    bool has_available;       /* with "insufficient" */
    int64_t available;
    char status[16];          /* with "invalid_state": the order's status */
    char field[64];           /* with "invalid": the offending param */
    char outcome[16];         /* with "unavailable": "unknown" if a commit's fate is unknown */
    char method[64];          /* with "unknown_method" */
    /* reserve with lines, "insufficient" / "unknown_sku": the first line
     * that could not be met (the request's index) and its SKU */
    bool has_line;
    int64_t line;
    char sku[STOCKD_MAX_ID_BYTES + 1];
} stockd_error;

/* One line of an order of several SKUs as the record shows it. */
typedef struct stockd_order_line {
    int64_t line;             /* 0..n_lines-1: the distinct SKUs in order of first appearance */
    char sku[STOCKD_MAX_ID_BYTES + 1];
    int64_t qty;              /* the request's lines of this SKU, summed */
    int64_t from_own;
    int64_t from_supplier;
    char status[16];
    char upstream_order_id[65]; /* "" when none */
} stockd_order_line;

/* An order record (reserve, confirm, release, ship, order.get). Times are
 * unix milliseconds; optional fields are 0 / "" when absent. */
typedef struct stockd_order {
    char order_id[STOCKD_MAX_ID_BYTES + 1];
    char sku[STOCKD_MAX_ID_BYTES + 1];
    int64_t qty;
    char status[16];          /* held, confirmed, purchased, shipped, released, expired, failed */
    int64_t from_own;
    int64_t from_supplier;
    int64_t available;        /* the SKU's availability right after the request */
    int64_t created_at;
    int64_t updated_at;
    int64_t hold_expires_at;  /* 0 when not held */
    char upstream_order_id[65];
    char reason[256];
    int64_t purchased_at;     /* 0 when not bought upstream */
    bool supplier_settled;    /* with purchased_at: its units left supplier_reserved */
    /* Orders of several SKUs: n_lines > 1 (1 for a single-SKU order); sku
     * is line 0's, qty and the split are sums over the lines. lines[] holds
     * the first min(n_lines, STOCKD_MAX_LINES) lines when the record lists
     * them (n_lines_listed); a part of a cross-shard order, read from its
     * owner, lists none and has part_line >= 0 (else -1). */
    int64_t n_lines;
    int64_t part_line;
    uint32_t n_lines_listed;
    stockd_order_line lines[STOCKD_MAX_LINES];
} stockd_order;

/* The stock view of one SKU (stock.get, sku.put, stock.adjust). */
typedef struct stockd_stock {
    char sku[STOCKD_MAX_ID_BYTES + 1];
    int64_t available;
    int64_t own_on_hand;
    int64_t own_reserved;
    int64_t supplier_reported;
    int64_t supplier_sellable;
    int64_t supplier_reserved;
    int64_t supplier_synced_at; /* unix ms, 0 when never synced */
    char mapping[16];           /* "none", "manual", "ok", "broken" */
    /* mapping "ok" or "broken" only: the 1688 mapping and the trust factor */
    bool has_supplier;
    char supplier_id[STOCKD_MAX_ID_BYTES + 1];
    int64_t offer_id;
    char spec_id[STOCKD_MAX_ID_BYTES + 1];
    int64_t sku_id;             /* 0 when none */
    int64_t cap;                /* -1 when none */
    double trust;               /* the effective factor applied now */
} stockd_stock;

typedef struct stockd_reserve_req {
    const char *order_id;
    const char *sku;
    int64_t qty;
    int64_t hold_ms;          /* 0: confirm at once */
    int64_t deadline_ms;      /* 0: server default */
    bool check;               /* 1688's order check on supplier units before the answer */
} stockd_reserve_req;

/* reserve with lines: all lines or none; lines of one SKU are summed. */
typedef struct stockd_line {
    const char *sku;
    int64_t qty;
} stockd_line;

typedef struct stockd_reserve_lines_req {
    const char *order_id;
    const stockd_line *lines; /* 1..STOCKD_MAX_LINES */
    size_t n_lines;
    int64_t hold_ms;          /* 0: confirm at once */
    int64_t deadline_ms;      /* 0: server default */
    bool check;               /* as in stockd_reserve_req */
} stockd_reserve_lines_req;

/* sku.put: every field but sku is optional (has_* says whether to send it). */
typedef struct stockd_sku_put_req {
    const char *sku;
    bool has_own_on_hand;
    int64_t own_on_hand;
    bool has_supplier_reported;
    int64_t supplier_reported;
    bool has_supplier;
    const char *supplier_id;
    int64_t offer_id;
    const char *spec_id;
    bool has_sku_id;
    int64_t sku_id;
    bool has_cap;             /* with has_supplier: most supplier units ever sellable */
    int64_t cap;
} stockd_sku_put_req;

/* supplier.put (admin): fields not sent keep the supplier's current settings. */
typedef struct stockd_supplier_put_req {
    const char *supplier_id;
    bool has_trust, has_ceiling, has_event_mode, has_event_trust, has_check_before_confirm;
    double trust, ceiling, event_trust;   /* 0..1 */
    bool event_mode;
    bool check_before_confirm;            /* reserves taking its units are checked first */
} stockd_supplier_put_req;

/* One reply taken off the wire. Objects live until the next call. */
typedef struct stockd_reply {
    uint32_t msgid;
    const msgpack_object *error;   /* nil on success */
    const msgpack_object *result;  /* the result map on success */
} stockd_reply;

typedef struct stockd_client stockd_client;

/* ---- lifecycle ---- */
stockd_client *stockd_client_new(void);          /* NULL only when out of memory */
void stockd_client_free(stockd_client *c);       /* closes; NULL is fine */
/* addr: "HOST:PORT" or "[IPv6]:PORT"; NULL means STOCKD_DEFAULT_ADDR. Closes
 * any previous connection first. timeout_ms <= 0 keeps the client's timeout. */
stockd_rc stockd_client_connect(stockd_client *c, const char *addr, int timeout_ms);
void stockd_client_close(stockd_client *c);
bool stockd_client_connected(const stockd_client *c);
void stockd_client_set_timeout(stockd_client *c, int timeout_ms);      /* > 0 */
/* Sent as "token" in admin methods (sku.put, stock.adjust); NULL clears.
 * Copied; at most 256 bytes. */
stockd_rc stockd_client_set_token(stockd_client *c, const char *token);
/* Replies not yet taken that may be queued at once; default
 * STOCKD_DEFAULT_MAX_INFLIGHT, at least 1. */
void stockd_client_set_max_inflight(stockd_client *c, unsigned n);
unsigned stockd_client_inflight(const stockd_client *c);

/* ---- errors ---- */
const stockd_error *stockd_client_error(const stockd_client *c); /* last STOCKD_ERR_SERVER */
const char *stockd_client_errstr(const stockd_client *c);        /* last failure, any kind */
const char *stockd_rc_name(stockd_rc rc);

/* ---- generic calls and pipelining ---- */
/* Starts a request: *pk receives exactly one map (the params), then call
 * stockd_request_end. Only one request may be open at a time. */
stockd_rc stockd_request_begin(stockd_client *c, const char *method, msgpack_packer **pk);
/* Checks that one map was packed and queues the frame; *msgid identifies
 * the reply. Sends once 64 KiB are queued, else waits for stockd_flush or a
 * receive. On USAGE the request is dropped. */
stockd_rc stockd_request_end(stockd_client *c, uint32_t *msgid);
/* Abandons an open request (e.g. a pack failure in the caller). */
void stockd_request_abort(stockd_client *c);
stockd_rc stockd_flush(stockd_client *c);
/* Waits for the reply to msgid (flushing first). On STOCKD_ERR_SERVER the
 * reply is filled too (reply->error is the error map). */
stockd_rc stockd_recv(stockd_client *c, uint32_t msgid, stockd_reply *reply);
/* Takes the next reply of any msgid: held-back ones first, else the wire. */
stockd_rc stockd_recv_any(stockd_client *c, stockd_reply *reply);
/* end + flush + recv: the synchronous call. */
stockd_rc stockd_request_call(stockd_client *c, stockd_reply *reply);

/* Converts a successful reply. PROTOCOL when its shape is wrong. */
stockd_rc stockd_reply_order(stockd_client *c, const stockd_reply *r, stockd_order *out);
stockd_rc stockd_reply_stock(stockd_client *c, const stockd_reply *r, stockd_stock *out);

/* ---- typed requests, pipelined: queue only; take the reply with
 * stockd_recv + stockd_reply_order / stockd_reply_stock ---- */
stockd_rc stockd_send_reserve(stockd_client *c, const stockd_reserve_req *req, uint32_t *msgid);
/* USAGE for 0 or more than STOCKD_MAX_LINES lines or a NULL sku. */
stockd_rc stockd_send_reserve_lines(stockd_client *c, const stockd_reserve_lines_req *req,
                                    uint32_t *msgid);
/* method: "confirm", "release", "ship" or "order.get" */
stockd_rc stockd_send_order_op(stockd_client *c, const char *method, const char *order_id,
                               uint32_t *msgid);
stockd_rc stockd_send_stock_get(stockd_client *c, const char *sku, uint32_t *msgid);
stockd_rc stockd_send_sku_put(stockd_client *c, const stockd_sku_put_req *req, uint32_t *msgid);
stockd_rc stockd_send_stock_adjust(stockd_client *c, const char *sku, int64_t delta,
                                   const char *reason, uint32_t *msgid);

/* ---- typed requests, synchronous ---- */
/* node and version are copied (truncated) when the buffers are non-NULL. */
stockd_rc stockd_ping(stockd_client *c, char *node, size_t node_len, char *version,
                      size_t version_len);
stockd_rc stockd_reserve(stockd_client *c, const stockd_reserve_req *req, stockd_order *out);
stockd_rc stockd_reserve_lines(stockd_client *c, const stockd_reserve_lines_req *req,
                               stockd_order *out);
stockd_rc stockd_confirm(stockd_client *c, const char *order_id, stockd_order *out);
stockd_rc stockd_release(stockd_client *c, const char *order_id, stockd_order *out);
stockd_rc stockd_ship(stockd_client *c, const char *order_id, stockd_order *out);
stockd_rc stockd_order_get(stockd_client *c, const char *order_id, stockd_order *out);
stockd_rc stockd_stock_get(stockd_client *c, const char *sku, stockd_stock *out);
stockd_rc stockd_sku_put(stockd_client *c, const stockd_sku_put_req *req, stockd_stock *out);
stockd_rc stockd_stock_adjust(stockd_client *c, const char *sku, int64_t delta,
                              const char *reason, stockd_stock *out);
/* ---- supplier round ----
 * Results are the raw maps / array, valid until the next call. */
stockd_rc stockd_supplier_put(stockd_client *c, const stockd_supplier_put_req *req,
                              const msgpack_object **result);
stockd_rc stockd_supplier_get(stockd_client *c, const char *supplier_id,
                              const msgpack_object **result);
/* limit 1..1000, 0 = the server's default (100); *alerts is an array of
 * alert maps, newest first. */
stockd_rc stockd_alerts_list(stockd_client *c, unsigned limit, const msgpack_object **alerts);

/* ---- notifications (order.subscribe) ----
 * After stockd_order_subscribe() the server sends [2, "order.update",
 * [order record]] whenever one of its orders becomes purchased, failed or
 * expired. Notifications that arrive while the client waits for a reply
 * are queued (at most STOCKD_MAX_QUEUED_NOTIFICATIONS; beyond that the
 * oldest is dropped and counted). stockd_next_notification() hands out the
 * next one, waiting up to timeout_ms (0: only what is already here):
 * STOCKD_OK with *msg the whole [2, method, params] array, valid until the
 * next call; or STOCKD_OK with *msg NULL when none came in time (the
 * connection stays usable). Replies that arrive meanwhile are kept for
 * stockd_recv. */
#define STOCKD_MAX_QUEUED_NOTIFICATIONS 1024u
stockd_rc stockd_order_subscribe(stockd_client *c);
stockd_rc stockd_next_notification(stockd_client *c, int timeout_ms, const msgpack_object **msg);
/* The order record of an order.update notification; PROTOCOL when msg is not one. */
stockd_rc stockd_notification_order(stockd_client *c, const msgpack_object *msg, stockd_order *out);
unsigned long stockd_notifications_dropped(const stockd_client *c);

/* The raw stats map, valid until the next call. */
stockd_rc stockd_stats(stockd_client *c, const msgpack_object **stats);
/* The result map of the last successful reply (typed helpers included),
 * valid until the next call; NULL if none. */
const msgpack_object *stockd_client_last_result(const stockd_client *c);

/* ---- sharded clusters: the ring and ring-aware routing ----
 *
 * A sharded deployment spreads SKUs over instances by consistent hashing
 * (docs/deploy.md). Any instance answers any request (forwarding it to the
 * SKU's owner), so a plain client pointed at a balancer is correct. A
 * ring-aware client saves the forwarding hop: it fetches `cluster.ring`
 * (nodes, addresses, version and the virtual-node points), computes each
 * SKU's owner with the server's own hash (XXH3-64 of the SKU's bytes; the
 * first point at or after it, wrapping) and talks to the owner directly.
 * When an owner answers `unavailable` or cannot be reached, the ring may
 * have changed: the client fetches it again (from any member, else the
 * seed) and, if the SKU has a new owner, asks that one once.
 */
#define STOCKD_RING_NODES_MAX 64
#define STOCKD_RING_VNODES_MAX 4096      /* points per node accepted from a server */
#define STOCKD_RING_ADDR_MAX 80          /* "IP:PORT" or "[IPv6]:PORT" */
#define STOCKD_RING_VERSION_MAX 40

typedef struct stockd_ring stockd_ring;

/* Calls cluster.ring on c and returns a checked copy in *out (the caller
 * frees it). A reply of the wrong shape is STOCKD_ERR_PROTOCOL. */
stockd_rc stockd_ring_fetch(stockd_client *c, stockd_ring **out);
void stockd_ring_free(stockd_ring *r);                    /* NULL is fine */
size_t stockd_ring_node_count(const stockd_ring *r);
const char *stockd_ring_node_name(const stockd_ring *r, size_t i);
const char *stockd_ring_node_addr(const stockd_ring *r, size_t i);   /* "IP:PORT" */
const char *stockd_ring_version(const stockd_ring *r);
/* Index of the node that owns the SKU's bytes. Pure; no I/O. */
size_t stockd_ring_owner(const stockd_ring *r, const void *sku, size_t len);

/* A blocking ring-aware router: one lazily opened stockd_client per node.
 * Same threading rule as a client: one thread at a time. */
typedef struct stockd_cluster stockd_cluster;

stockd_cluster *stockd_cluster_new(void);                 /* NULL only when out of memory */
void stockd_cluster_free(stockd_cluster *cl);             /* closes everything; NULL is fine */
/* Fetches the ring through seed_addr (any member, or the balancer). */
stockd_rc stockd_cluster_connect(stockd_cluster *cl, const char *seed_addr, int timeout_ms);
void stockd_cluster_set_timeout(stockd_cluster *cl, int timeout_ms);   /* per node call */
/* Fetches the ring again; connections to nodes that kept their address stay. */
stockd_rc stockd_cluster_refresh(stockd_cluster *cl);
const stockd_ring *stockd_cluster_ring(const stockd_cluster *cl);
unsigned stockd_cluster_refreshes(const stockd_cluster *cl);
/* The connected client of the SKU's owner, for pipelining on it; NULL with
 * *rc and stockd_cluster_errstr() when it cannot be reached. */
stockd_client *stockd_cluster_client_for(stockd_cluster *cl, const char *sku, stockd_rc *rc);
/* Typed calls sent to the owner (order ops carry "sku" as the routing
 * hint). Return codes as for a client; on STOCKD_ERR_SERVER the error is
 * stockd_cluster_error(). */
stockd_rc stockd_cluster_reserve(stockd_cluster *cl, const stockd_reserve_req *req,
                                 stockd_order *out);
/* method: "confirm", "release", "ship" or "order.get" */
stockd_rc stockd_cluster_order_op(stockd_cluster *cl, const char *method, const char *order_id,
                                  const char *sku, stockd_order *out);
stockd_rc stockd_cluster_stock_get(stockd_cluster *cl, const char *sku, stockd_stock *out);
const stockd_error *stockd_cluster_error(const stockd_cluster *cl);
const char *stockd_cluster_errstr(const stockd_cluster *cl);

#endif
