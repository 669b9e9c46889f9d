/* store.h — MariaDB, the durable truth, driven on the loop through
 * Connector/C's nonblocking API (mysql_*_start / _cont on events of
 * mysql_get_socket). Nothing here blocks the loop, except store_open(),
 * which runs once at startup before the loop serves anyone.
 *
 * The store owns a small pool of writer connections. Each carries at most
 * one transaction at a time. A batch is written as ONE statement round trip:
 *
 *   BEGIN NOT ATOMIC
 *     DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
 *     START TRANSACTION;
 *     INSERT INTO batch_log (batch_id, node, state, at) VALUES (..., 'committed', ...);  -- first: tombstone key
 *     UPDATE sku SET ..., version = version + 1 WHERE sku = ? AND epoch = ?;
 *     IF ROW_COUNT() <> 1 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'epoch fence'; END IF;
 *     ... (one fenced UPDATE or INSERT per SKU row)
 *     INSERT INTO supplier ... ON DUPLICATE KEY UPDATE ... (trust settings)
 *     INSERT INTO orders ... (new orders; duplicate order_id fails the batch)
 *     INSERT INTO orders ... ON DUPLICATE KEY UPDATE ... (changed orders)
 *     INSERT INTO purchase_jobs ... (new jobs), then state changes (upsert)
 *     INSERT INTO ledger ...
 *     INSERT INTO alerts ... (node, batch_id)
 *     COMMIT;
 *   END
 *
 * Outcomes reported through on_commit:
 *   ENG_COMMITTED  the statement returned OK: COMMIT succeeded.
 *   ENG_ABORTED    the server answered with an error: rolled back.
 *   ENG_UNKNOWN    the connection broke or commit_timeout_ms passed: the
 *                  connection is closed (the only way to abandon a query),
 *                  and the batch may or may not have committed.
 * An UNKNOWN batch is settled by store_resolve(): on a fresh connection it
 * runs INSERT INTO batch_log (batch_id, ...) VALUES (<same id>, ..., 'aborted', ...)
 * ON DUPLICATE KEY UPDATE at = IF(state = 'committed', at, at + 1).
 * If the row is inserted, the old transaction can never commit (its own
 * first insert of that key would now fail): aborted. If the key exists with
 * state 'committed' (0 affected rows), the old transaction committed; with
 * 'aborted' it is an earlier attempt of this resolve whose reply was lost:
 * aborted. InnoDB makes the insert wait while the old transaction still
 * holds the key, so there is no race.
 * batch_id values are (boot_id << 40 | eng_batch_id): unique across
 * restarts (store_open inserts a row in `boots`; its id is boot_id).
 * A resolve that cannot settle (connection lost, timeout, other error) is
 * retried on a fresh connection; a queued resolve takes the next idle
 * connection before any new commit. Tables: docs/schema.md.
 *
 * Errors: functions returning int give 0 or -1 with a message in err.
 * Callbacks are called from the loop, never from inside the call that
 * started the work, and exactly once per started commit or resolve (until
 * store_free(), which abandons work in flight without callbacks). They may
 * call store_commit() / store_resolve() but not store_free(). The err string
 * of on_commit is valid only during the call.
 */
#ifndef STOCKD_STORE_H
#define STOCKD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockd/config.h"
#include "stockd/engine.h"

struct event_base;
typedef struct store store;

typedef struct store_callbacks {
    /* A commit started by store_commit() ended. */
    void (*on_commit)(eng_batch *b, eng_outcome outcome, const char *err, void *arg);
    /* A resolve started by store_resolve() ended. */
    void (*on_resolve)(eng_batch *b, bool committed, void *arg);
    /* A connection became idle (or came up): more commits may start. Also
     * called when the store goes down (store_up() false). */
    void (*on_idle)(void *arg);
    void *arg;
} store_callbacks;

typedef struct store_stats {
    uint64_t commits_ok;
    uint64_t commits_aborted;
    uint64_t commits_unknown;
    uint64_t resolves;
    uint64_t reconnects;
    uint64_t commit_us_total;     /* sum of commit latencies */
    uint64_t commit_us_max;
    uint64_t sku_loads;           /* single-SKU loads asked for */
    uint64_t sku_load_queries;    /* SELECTs sent for them */
    uint64_t sku_loads_found;
    uint64_t sku_loads_failed;
    uint64_t sku_load_retries;    /* takeovers run again after an InnoDB deadlock */
    uint32_t conns_up;
    uint32_t conns_busy;
} store_stats;

/* Connects (blocking, at startup only), creates the database if missing,
 * creates or migrates the schema (schema_version table), records this boot,
 * and returns the store with cfg->db_connections nonblocking connections,
 * all up and idle. Returns NULL with err on failure (MariaDB unreachable
 * included: the caller decides whether to retry). */
store *store_open(struct event_base *base, const stockd_config *cfg,
                  const store_callbacks *cb, char *err, size_t err_len);
void store_free(store *s);

/* Loads every SKU and every order into the engine (blocking, startup
 * only, on its own short-lived connection). Rows are checked, never
 * trusted (engine.h "set aside"): a SKU row that does not parse or is out
 * of range, an order whose lines do not make an order, a SKU whose counters
 * do not match its orders (or that has an order line that cannot be read)
 * is set aside with a log line and a "set_aside" support alert, and the
 * load goes on; a supplier row that cannot be used loads with trust 0 (its
 * stock is not sold until supplier.put), with an alert. Keys that are not
 * ids (not 1..64 bytes of UTF-8) are named "x'<hex>'". purchase_jobs is not
 * read (pending purchases come from orders), so a job whose order is gone
 * is inert. Fails (-1 with err) only on MariaDB errors, out of memory, or
 * beyond ENG_ASIDE_MAX rows set aside. The engine is remembered for the
 * runtime loads below. */
int store_load_all(store *s, engine *e, char *err, size_t err_len);

/* Like store_load_all(), but with preload_skus false only the SKUs that
 * orders refer to are loaded (orders need their SKU); every other SKU is
 * "cold" and loaded on first use with store_load_sku(). With final_since_ms
 * > 0 only the orders that are live (a line holds units or has not ended)
 * or changed at or after it are loaded; the others stay in MariaDB and are
 * read back on demand (orderload.h). Both load every supplier row first
 * (engine_load_supplier). */
int store_load_state(store *s, engine *e, bool preload_skus, int64_t final_since_ms, char *err,
                     size_t err_len);

/* ---- support alerts (startup) ----
 * Blocking, startup only: the newest max rows of the alerts table, handed
 * to fn oldest first (the server keeps them in a ring for alerts.list).
 * kind and reason are cut to fit; rows that do not parse are skipped.
 * 0 or -1 with err. */
#define STORE_ALERT_KIND_MAX 32

#define STORE_ACK_NOTE_MAX 255

typedef struct store_alert {
    int64_t id;
    char kind[STORE_ALERT_KIND_MAX + 1];
    char sku[ENG_ID_MAX + 1];
    char order_id[ENG_ID_MAX + 1];        /* "": none */
    char reason[ENG_REASON_MAX + 1];
    int64_t at_ms;
    /* alerts.ack (support queries only; 0 / "" at startup and while open) */
    int64_t acked_at;
    char acked_by[ENG_ID_MAX + 1];
    char ack_note[STORE_ACK_NOTE_MAX + 1];
} store_alert;

int store_recent_alerts(store *s, uint32_t max, void (*fn)(const store_alert *a, void *arg),
                        void *arg, char *err, size_t err_len);

/* Blocking, startup only: the number of SKU rows, then every SKU name (for
 * the Bloom filter of known SKUs). 0 or -1 with err. */
int store_count_skus(store *s, uint64_t *out, char *err, size_t err_len);
int store_each_sku(store *s, void (*fn)(const char *sku, size_t len, void *arg), void *arg,
                   char *err, size_t err_len);

/* ---- runtime loads of single SKUs (cold SKUs) ----
 * A separate reader connection (nonblocking, reconnecting with backoff like
 * the writers) serves loads: requests waiting at the same time go out as
 * ONE query (SELECT ... WHERE sku IN (...), up to STORE_LOAD_BATCH_MAX), so
 * the number of MariaDB reads does not grow with concurrent misses. The
 * caller keeps one request per SKU in flight (single flight is its job).
 *
 * fn is called exactly once per accepted request, from the loop, never
 * inside store_load_sku(): result 1 = found (row valid during the call),
 * 0 = no such SKU, -1 = failed (reader down, timeout; retryable). A row that
 * cannot be trusted (as for store_load_state; and, not sharded, a SKU row
 * whose reserved counters are not 0: such a SKU had no orders at startup,
 * so it has none) is set aside in the engine given to store_load_state()
 * or store_set_takeover(), and reported found (result 1): the engine then
 * knows it and refuses its requests.
 * store_free() abandons requests without calling fn. */
#define STORE_LOAD_BATCH_MAX 256
#define STORE_LOAD_QUEUE_MAX 100000

typedef struct store_sku_row {
    char sku[ENG_ID_MAX + 1];
    eng_counters c;
    eng_mapping mapping;
    eng_supplier_map map;         /* valid when mapping is ENG_MAP_OK or ENG_MAP_BROKEN
                                   * (cap -1 = none, fingerprint 0 = not seen) */
    int64_t epoch;
} store_sku_row;

/* The map to hand to engine_load_sku() for r: &r->map for OK and BROKEN
 * mappings, else NULL. */
const eng_supplier_map *store_sku_row_map(const store_sku_row *r);

typedef void (*store_load_fn)(const char *sku, int result, const store_sku_row *row, void *arg);
/* result 1: sku is the order's SKU; 0: no such order; -1: failed. */
typedef void (*store_find_fn)(const char *order_id, int result, const char *sku, void *arg);

/* Queues a load of sku (1..ENG_ID_MAX bytes). 0, or -1 when the queue holds
 * STORE_LOAD_QUEUE_MAX requests (fn not called). */
int store_load_sku(store *s, const char *sku, store_load_fn fn, void *arg);

/* Sharded mode: every load becomes a takeover. In one transaction the
 * reader bumps the SKUs' epochs (a previous owner's next batch then fails
 * its fence), reads the rows and all their orders, and commits; the SKUs
 * and orders go into e before fn is called, so fn finds the SKU loaded
 * (result 1), or set aside (checked as for store_load_state: each order on
 * its own lines, then the counters of the SKUs taken). A failed takeover
 * (result -1) changed nothing it relied on: if its bump committed, the next
 * takeover bumps again. */
void store_set_takeover(store *s, engine *e);

/* Looks up the SKU of an order (sharding: routing an order call that names
 * no SKU, in a cluster sharing one MariaDB). Same queue, batching and
 * callback rules as store_load_sku(); fn is called exactly once. */
int store_find_order_sku(store *s, const char *order_id, store_find_fn fn, void *arg);

/* ---- orders of several lines ----
 * Orders are stored one row per line: orders (order_id, line_no) with
 * n_lines; purchase_jobs likewise per line. store_find_order_sku() gives
 * line 0's SKU. */

/* Every stored line of order_id (routing a cross-shard order): fn gets
 * result n >= 0 lines (0: no such order; lines sorted by line_no, valid
 * during the call) or -1 (failed, retryable). Same queue, batching and
 * callback rules as store_load_sku(). */
typedef struct store_line_ref {
    int32_t line_no;
    int32_t n_lines;
    char sku[ENG_ID_MAX + 1];
} store_line_ref;
typedef void (*store_lines_fn)(const char *order_id, int result, const store_line_ref *lines,
                               void *arg);
int store_find_order_lines(store *s, const char *order_id, store_lines_fn fn, void *arg);

/* Every stored line of order_id as the engine's views, to read an order
 * that left memory back (engine_reload_order): fn gets result n >= 1 lines
 * (0..n-1, valid during the call), 0 (no such order) or -1 (failed, or rows
 * that do not make one order: logged). Same queue, batching and callback
 * rules as store_load_sku(). */
typedef void (*store_order_fn)(const char *order_id, int result, const eng_order_view *lines,
                               void *arg);
int store_load_order(store *s, const char *order_id, store_order_fn fn, void *arg);

/* The one decision on a cross-shard order, first writer wins (table
 * cart_decisions): INSERT IGNORE of want, then the row that stands is read
 * back, in one round trip. fn gets that decision (STORE_DECIDE_*) or -1
 * (failed: nothing known, retry). The coordinator decides CONFIRM only once
 * every part is held; a part whose hold lapsed asks for ABORT, so a late
 * coordinator and a lapsing part can never disagree.
 * An ABORT may carry the refusal the client was told (why, written with
 * the row when it is the first writer; NULL or code "" = none): a retry of
 * the order answers it again, and the owners of its parts erase them
 * rather than keep them expired (cart.h). fn gets the standing row's
 * (why NULL when it has none, valid during the call). */
typedef enum store_decision {
    STORE_DECIDE_CONFIRM = 1,
    STORE_DECIDE_ABORT = 2,
} store_decision;
#define STORE_ABORT_CODE_MAX 16
typedef struct store_abort_why {
    char code[STORE_ABORT_CODE_MAX + 1]; /* an eng_err_code() that is not retryable */
    int32_t line;                 /* the client's line index, -1 none */
    char sku[ENG_ID_MAX + 1];     /* "" none */
    int64_t available;            /* insufficient: what could be had; -1 none */
} store_abort_why;
typedef void (*store_decide_fn)(const char *order_id, int result, const store_abort_why *why,
                                void *arg);
int store_cart_decide(store *s, const char *order_id, store_decision want,
                      const store_abort_why *why, store_decide_fn fn, void *arg);

/* ---- support: the console's reads and alerts.ack ----
 * One more connection, opened at the first call and then kept
 * (reconnecting with backoff like the others), so that what support staff
 * do never waits behind a commit or a cold SKU load, nor delays one. One
 * statement at a time; each read is bounded by MariaDB's
 * max_statement_time (STORE_SUPPORT_STMT_S) and every statement by the
 * commit timeout. At most STORE_SUPPORT_QUEUE_MAX requests wait; beyond,
 * the call returns -1 at once and fn is never called. Otherwise fn is
 * called exactly once, from the loop, never inside the call, with result
 * = the number of rows (>= 0, rows valid during the call only) or -1
 * (MariaDB down, timeout, error). store_free() abandons requests without
 * calling fn. Strings go into SQL as hex literals, like everything else. */
#define STORE_SUPPORT_QUEUE_MAX 64
#define STORE_SUPPORT_ROWS_MAX 200
#define STORE_SUPPORT_STMT_S 2

typedef void (*store_alerts_fn)(void *arg, int result, const store_alert *rows);

/* Alerts not acknowledged yet, newest first (all instances': MariaDB holds
 * every alert), at most limit (1..STORE_SUPPORT_ROWS_MAX). */
int store_alerts_open(store *s, uint32_t limit, store_alerts_fn fn, void *arg);
/* The newest alerts, acknowledged or not, about SKUs mapped to
 * supplier_id (1..ENG_ID_MAX bytes), at most limit. */
int store_alerts_of_supplier(store *s, const char *supplier_id, uint32_t limit,
                             store_alerts_fn fn, void *arg);
/* alerts.ack: marks alert id handled at at_ms by `by` (1..ENG_ID_MAX bytes)
 * with note (0..STORE_ACK_NOTE_MAX bytes, "" = none), unless it is already:
 * the first acknowledgement stands. fn gets result 1 (acknowledged now) or
 * 2 (it already was) with the alert's row as it stands, 0 (no such alert),
 * or -1 (failed; when the connection broke the update may or may not have
 * been written, and acknowledging again is safe). */
int store_alert_ack(store *s, int64_t id, const char *by, const char *note, int64_t at_ms,
                    store_alerts_fn fn, void *arg);

/* The newest ledger moves of a SKU that name an order, with the order's
 * line for that SKU as it is now (status "" when its row is gone). */
typedef struct store_sku_move {
    char order_id[ENG_ID_MAX + 1];
    char move[17];
    int64_t at_ms;
    char status[17];
    int64_t qty, from_own, from_supplier;
    char reason[ENG_REASON_MAX + 1];
} store_sku_move;
typedef void (*store_moves_fn)(void *arg, int result, const store_sku_move *rows);
int store_sku_moves(store *s, const char *sku, uint32_t limit, store_moves_fn fn, void *arg);

/* True when at least one connection is up. A writer connection idle for
 * 2 s is pinged (nonblocking); one whose ping is refused or not answered
 * within the connect timeout goes down and reconnects with backoff, so
 * this turns false within seconds of MariaDB freezing even with no
 * commits. */
bool store_up(const store *s);
/* True when a connection is up and idle: store_commit() will take a batch. */
bool store_can_commit(const store *s);

/* Starts writing a non-empty batch. Returns 0, or -1 when no connection is
 * idle (nothing started; the caller must not have called this then). */
int store_commit(store *s, eng_batch *b);

/* Settles an UNKNOWN batch as described above; waits for a connection if
 * none is up. */
void store_resolve(store *s, eng_batch *b);

void store_stats_get(const store *s, store_stats *out);

#endif
