/* conn.h — the msgpack-rpc listener and its client connections: accepting,
 * framing, backpressure, limits and closing. No request semantics: a whole,
 * size-checked frame goes to the owner's on_frame callback, and the owner
 * answers with conn_send().
 *
 * Connection states (one per connection, memcached-style); every path that
 * ends a connection goes through conn_close() or conn_drain():
 *
 *   OPEN      reading frames and answering. Reading pauses (the state stays
 *             OPEN) while the connection has max_inflight_per_conn requests
 *             in flight, while its unsent output is over max_output_bytes,
 *             or while the unsent output of all connections together is over
 *             max_output_total_bytes and it has unsent output of its own.
 *   DRAINING  reading stopped for good (a fatal protocol error was answered,
 *             or the server is shutting down): what is queued is written,
 *             then the connection closes.
 *   CLOSING   close requested: nothing more is read or written (replies are
 *             dropped). The socket is freed from the loop, after the current
 *             callback, so no caller up the stack ever holds a freed
 *             connection (Redis's freeClientAsync).
 *   CLOSED    the socket is gone; the struct lives on while requests taken
 *             with conn_hold() are in flight, and is freed by the last
 *             conn_release().
 *
 * Limits (read from the configuration at each use, so SIGHUP applies them):
 * max_connections (beyond: accepted and closed at once), max_message_bytes
 * and max_depth per frame (codec.h; a frame is walked once however many
 * reads it takes), CONN_FRAMES_PER_READ_MAX frames or CONN_READ_SLICE_NS of
 * handling per wakeup, whichever comes first (fairness: a connection that
 * still has frames after its slice is demoted to CONN_PRIO_SLOW until it
 * has caught up, so a client pipelining costly requests delays the others
 * by about a millisecond, not by a round of every such client),
 * idle_timeout_ms both for a client that sends nothing (unless it has
 * requests in flight or is marked a listener) and for unsent output that
 * has not moved (closed, paused or not), and the output caps above.
 *
 * Ownership: the manager owns every conn. A conn pointer stays valid while
 * the conn is OPEN, DRAINING or CLOSING, and while the caller holds it with
 * conn_hold(). Callbacks are never called from inside conn_* functions
 * called by the owner, except on_frame from the read callback.
 */
#ifndef STOCKD_CONN_H
#define STOCKD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockd/config.h"

struct event_base;
typedef struct conn conn;
typedef struct conn_mgr conn_mgr;

enum conn_state { CONN_OPEN = 0, CONN_DRAINING, CONN_CLOSING, CONN_CLOSED };
enum conn_bad { CONN_BAD_MALFORMED = 0, CONN_BAD_TOO_LARGE, CONN_BAD_TOO_MANY_VALUES };

#define CONN_FRAMES_PER_READ_MAX 512
#define CONN_READ_MAX (256u << 10)   /* bytes per read(2) */
#define CONN_SEGS_MAX 64               /* input chains walked in place */
/* msgpack values in one frame: a 50-line cart is ~300, a peer's order
 * record of 50 lines ~800; more is refused without decoding. */
#define CONN_FRAME_VALUES_MAX 4096
/* A partial frame that still needs this much or more: wake when up to
 * CONN_LOWAT_MAX of it is in. */
#define CONN_LOWAT_MIN (16u << 10)
#define CONN_LOWAT_MAX (64u << 10)
#define CONN_READ_SLICE_NS 25000   /* CPU per connection per wakeup, then others' turn */
/* The loop's priorities (main.c: CONN_PRIOS levels; libevent runs only the
 * most urgent level that has work in a round, and limits how long it
 * spends on CONN_PRIO_SLOW before looking for new events). Every other
 * event of stockd runs at the default, CONN_PRIO_NORMAL. */
#define CONN_PRIOS 3
#define CONN_PRIO_NORMAL 1
#define CONN_PRIO_SLOW 2
#define CONN_SLOW_DISPATCH_US 1000

typedef struct conn_callbacks {
    /* One complete frame p[0..n) that passed codec_frame_check, of at most
     * CONN_FRAME_VALUES_MAX values. Return false when the stream is not
     * msgpack-rpc: the connection closes. The owner may send, hold, drain
     * or close c from here. */
    bool (*on_frame)(void *arg, conn *c, const uint8_t *p, size_t n);
    /* A frame refused whole. MALFORMED (bad msgpack, too deep) and
     * TOO_LARGE (over max_message_bytes): the stream cannot survive it,
     * the connection drains after this. TOO_MANY_VALUES: a well-formed
     * frame of more than CONN_FRAME_VALUES_MAX values, skipped; the
     * connection goes on. msgid is the request's when it could be read
     * from the frame's first bytes, else -1; the owner may conn_send() an
     * error. */
    void (*on_bad_frame)(void *arg, conn *c, enum conn_bad why, int64_t msgid);
    /* c is closing: forget it everywhere it could be written to from now on
     * (subscriptions). Called once, from conn_close(). */
    void (*on_close)(void *arg, conn *c);
    void *arg;
} conn_callbacks;

/* data_bytes of zeroed space per connection for the owner (conn_data). */
conn_mgr *conn_mgr_new(struct event_base *base, const stockd_config *cfg,
                       const conn_callbacks *cb, size_t data_bytes);
/* Frees every connection (replies dropped) and the listener. Requests still
 * held must not be released afterwards. */
void conn_mgr_free(conn_mgr *m);
/* Binds cfg->listen_host:listen_port. 0 or -1 with err. */
int conn_mgr_listen(conn_mgr *m, char *err, size_t err_len);
/* Stops accepting for good (shutdown). */
void conn_mgr_stop_accepting(conn_mgr *m);
/* Shutdown: every connection without requests in flight drains. Returns the
 * number of connections not yet closed. */
uint32_t conn_mgr_drain_idle(conn_mgr *m);
/* Limits changed (SIGHUP): paused connections are checked again. */
void conn_mgr_reload(conn_mgr *m);

void *conn_data(conn *c);
uint64_t conn_id(const conn *c);
enum conn_state conn_get_state(const conn *c);
/* Queues bytes for the client; dropped unless OPEN or DRAINING. */
void conn_send(conn *c, const void *data, size_t len);
/* Unsent output in bytes (0 once the socket is gone). */
size_t conn_output_len(const conn *c);
/* A request of c is in flight: c stays allocated until conn_release. */
void conn_hold(conn *c);
uint32_t conn_inflight(const conn *c);
/* The request is answered (or dropped): may free a CLOSED conn, may resume
 * reading. */
void conn_release(conn *c);
/* Asks for the close (see CLOSING); idempotent. */
void conn_close(conn *c);
/* Stops reading; closes once what is queued is written. */
void conn_drain(conn *c);
/* A listener (order.subscribe) waits for notifications by design: not
 * closed for sending nothing. */
void conn_set_listener(conn *c, bool on);

typedef struct conn_stats {
    uint32_t current;             /* connections OPEN or DRAINING */
    uint64_t total, refused, closed_bad, closed_idle, closed_stalled;
    uint64_t values_refused;      /* frames of more than CONN_FRAME_VALUES_MAX values */
    uint64_t output_bytes;        /* unsent output of all connections now */
    uint64_t output_paused;       /* times reading paused for the total output cap */
    uint64_t accept_errors, accept_pauses;
} conn_stats;
void conn_mgr_stats_get(const conn_mgr *m, conn_stats *out);

#endif
