/* httpd.h — a small HTTP/1.1 server on the loop, for the operators' port
 * (http.h routes it). Written here rather than taken from evhttp because
 * libevent 2.1's evhttp has no connection cap, and its timeout restarts on
 * every byte, so a client trickling a byte every few seconds holds a
 * descriptor for ever: an HTTP port must not be able to starve the client
 * port of descriptors.
 *
 * Limits, each a refusal of the one connection, never of the server:
 *   connections   at most max_conns at once; beyond, accepted and closed at
 *                 once (counted in refused);
 *   whole request HTTPD_REQUEST_MS (10 s) from the first byte (or from the
 *                 accept) to the end of the body, however it trickles in;
 *                 then closed without an answer;
 *   idle          HTTPD_IDLE_MS (30 s) between requests on a kept-alive
 *                 connection; then closed;
 *   head          HTTPD_HEAD_MAX (8 KiB) of request line and headers (431),
 *                 HTTPD_HEADERS_MAX headers (431);
 *   body          max_body bytes by Content-Length (413); no chunked
 *                 bodies (411 without a length when a body is sent);
 *   answer        written within HTTPD_WRITE_MS (30 s) of its last progress,
 *                 else closed.
 * A refusal answers with its status when the request line could be read,
 * and the connection closes after it.
 *
 * Requests are handled one at a time per connection (a pipelined request
 * waits for the previous answer). The handler is called from the loop with
 * a complete request and must answer it exactly once with httpd_respond():
 * before returning, or later after httpd_defer() (below); every pointer in
 * the request is valid until then.
 *
 * Deferred answers: a handler whose answer must wait (for the engine,
 * MariaDB or another node) calls httpd_defer(req) and returns without
 * answering; it then owns req and answers it with httpd_respond() exactly
 * once, from the loop. The owner bounds the wait (its own timeouts: the
 * request timer stops at httpd_defer), and a handler answers at once when
 * too many answers already wait. If the client leaves (or the socket
 * fails) meanwhile, the socket is closed at once and the answer, when it
 * comes, is dropped and frees what was kept. httpd_free() frees deferred
 * requests too: their owner must answer or forget them before it.
 *
 * Errors: httpd_new returns NULL with a message in err (bind failures
 * included).
 */
#ifndef STOCKD_HTTPD_H
#define STOCKD_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
typedef struct httpd httpd;
typedef struct httpd_req httpd_req;

#define HTTPD_REQUEST_MS 10000
#define HTTPD_IDLE_MS 30000
#define HTTPD_WRITE_MS 30000
#define HTTPD_HEAD_MAX 8192
#define HTTPD_HEADERS_MAX 64

typedef void (*httpd_handler)(void *arg, httpd_req *req);

typedef struct httpd_config {
    const char *host;             /* IPv4 literal or "localhost" */
    int port;
    uint32_t max_conns;
    size_t max_body;
    httpd_handler handler;
    void *arg;
} httpd_config;

httpd *httpd_new(struct event_base *base, const httpd_config *cfg, char *err, size_t err_len);
/* Closes the listener and every connection. NULL is fine. */
void httpd_free(httpd *h);
/* The cap may change live (SIGHUP): connections over it are not closed. */
void httpd_set_max_conns(httpd *h, uint32_t max_conns);

/* The request: method as sent ("GET"), path without the query, query ("" if
 * none), both NUL-terminated and not percent-decoded. */
const char *httpd_method(const httpd_req *r);
const char *httpd_path(const httpd_req *r);
const char *httpd_query(const httpd_req *r);
/* A header's value (name case-insensitive), NULL when absent. */
const char *httpd_header(const httpd_req *r, const char *name);
const char *httpd_body(const httpd_req *r, size_t *len);

/* The answer: status and its reason phrase, Content-Type, body (omitted
 * for HEAD), and extra header lines ("Name: value\r\n" each, or NULL). */
void httpd_respond(httpd_req *r, int status, const char *reason, const char *content_type,
                   const void *body, size_t len, const char *extra_headers);

/* Takes req to answer later (see "Deferred answers"); call from the
 * handler, before any answer. */
void httpd_defer(httpd_req *r);

typedef struct httpd_stats {
    uint32_t current;
    uint64_t total, refused, requests, timed_out, bad_requests;
    uint64_t accept_errors, accept_pauses;
} httpd_stats;
void httpd_stats_get(const httpd *h, httpd_stats *out);

#endif
