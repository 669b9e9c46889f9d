/* net.h — a TCP listener on the loop that survives running out of
 * descriptors. Shared by the msgpack-rpc port (conn.h) and the operators'
 * HTTP port (httpd.h).
 *
 * Why not a bare evconnlistener: when accept() fails with EMFILE or ENFILE
 * the pending connection stays in the kernel's queue, the socket stays
 * readable and libevent calls back again at once: the loop spins at full
 * CPU doing nothing. Here such a failure disables the listener for
 * NET_ACCEPT_PAUSE_MS (a timer enables it again) and is logged at most
 * once a second with the count of failures since the last line.
 *
 * Ownership: the caller owns each accepted descriptor from the callback on
 * (close it to refuse). net_listener_free() closes the listening socket.
 * Errors: net_listen returns NULL with a message in err.
 */
#ifndef STOCKD_NET_H
#define STOCKD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

struct event_base;
typedef struct net_listener net_listener;

#define NET_ACCEPT_PAUSE_MS 100
#define NET_BACKLOG 1024

typedef void (*net_accept_fn)(void *arg, evutil_socket_t fd);

/* Listens on host:port (an IPv4 literal or "localhost"). name appears in
 * log lines ("rpc", "http"). */
net_listener *net_listen(struct event_base *base, const char *name, const char *host, int port,
                         net_accept_fn fn, void *arg, char *err, size_t err_len);
void net_listener_free(net_listener *l);
/* Stops or resumes accepting (a paused listener resumes when enabled). */
void net_listener_enable(net_listener *l, bool on);

typedef struct net_listener_stats {
    uint64_t accept_errors;      /* accept() failures, EMFILE/ENFILE or other */
    uint64_t accept_pauses;      /* times the listener was paused for descriptors */
} net_listener_stats;
void net_listener_stats_get(const net_listener *l, net_listener_stats *out);

#endif
