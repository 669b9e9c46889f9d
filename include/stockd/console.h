/* console.h — the support console: /console/ on the --http listener.
 *
 * A page for support staff (plain HTML, CSS and JavaScript embedded in the
 * binary at build time, console/ -> console_assets.c) and the JSON API it
 * polls:
 *
 *   GET  /console/                   the page (and its .css and .js)
 *   GET  /console/api/session        who is signed in, the CSRF token
 *   POST /console/api/login          {token, name?}: a session cookie
 *   POST /console/api/logout
 *   GET  /console/api/live           open alerts of every instance (MariaDB),
 *                                    newest first, and reservations/refusals
 *                                    per second of this instance
 *   GET  /console/api/sku?sku=S      stock.get (the owner's figures) and the
 *                                    SKU's recent order moves (MariaDB)
 *   GET  /console/api/supplier?id=I  supplier.get on every instance, and the
 *                                    recent alerts of the supplier's SKUs
 *   POST /console/api/ack            {id, note?}        -> alerts.ack
 *   POST /console/api/release        {order_id, sku?}   -> release
 *   POST /console/api/recheck        {sku}              -> sku.recheck
 *   POST /console/api/supplier       {supplier_id, event_mode?, trust?,
 *                                     event_trust?}     -> supplier.put on
 *                                                          every instance
 *
 * Actions are RPC calls on this instance's client port (console_rpc.h)
 * with the admin token, so the server routes them as any client's: to the
 * SKU's owner, to the order's owner.
 *
 * Who may do what (the adversary is anyone who can reach the HTTP port,
 * and any web page a signed-in support person has open):
 *   - Signing in takes the console token (--console-token, else the admin
 *     token; with neither nobody signs in), compared in constant time;
 *     failed sign-ins are limited (CONSOLE_LOGIN_FAILS_PER_S, a burst of
 *     CONSOLE_LOGIN_BURST; then 429) so guessing is slow.
 *   - A session is 32 random bytes in an HttpOnly, SameSite=Strict cookie
 *     scoped to /console/ that ends --console-session-ttl-s after sign-in;
 *     at most --console-max-sessions live (beyond, the oldest ends).
 *     Lookups compare every live session in constant time.
 *   - Every POST but the sign-in needs a session and its CSRF token in the
 *     X-CSRF-Token header (constant time); every POST must be
 *     application/json, and an Origin or Sec-Fetch-Site header that names
 *     another origin is refused (403): a form or script on another page
 *     cannot act, even one on the same site that the cookie reaches.
 *   - Reads need a session unless --console-public-read.
 *   - Bodies: at most CONSOLE_BODY_MAX bytes of one JSON object with only
 *     the keys listed; query strings and cookies are length-checked and
 *     decoded into fixed buffers; every string is UTF-8 without NUL.
 *   - Everything is rendered by the page as text, never as HTML (alert
 *     reasons carry 1688's messages, SKU names come from any client); the
 *     Content-Security-Policy allows only the console's own script.
 *
 * Limits: CONSOLE_PENDING_MAX answers waiting at once (beyond: 503 at
 * once); every wait is bounded (RPC calls CONSOLE_RPC_TIMEOUT_MS, MariaDB
 * store.h's support limits), so a deferred answer (httpd_defer) always
 * comes. The open alerts are read at most once per CONSOLE_ALERTS_FRESH_MS
 * however many pages poll (one query, its result shared).
 */
#ifndef STOCKD_CONSOLE_H
#define STOCKD_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

#include "stockd/config.h"
#include "stockd/httpd.h"
#include "stockd/server.h"

struct event_base;
typedef struct console console;

#define CONSOLE_SESSIONS_HARD_MAX 1024   /* --console-max-sessions' range */
#define CONSOLE_PENDING_MAX 256
#define CONSOLE_BODY_MAX 4096
#define CONSOLE_RPC_TIMEOUT_MS 5000
#define CONSOLE_ALERTS_FRESH_MS 250
#define CONSOLE_ALERTS_MAX 100
#define CONSOLE_MOVES_MAX 20
#define CONSOLE_LOGIN_FAILS_PER_S 2
#define CONSOLE_LOGIN_BURST 10
#define CONSOLE_RATE_SAMPLES 120         /* seconds of counters kept for the chart */

/* The page's files (generated at build time from console/). */
typedef struct console_asset {
    const char *name;             /* "index.html", "console.css", ... */
    const char *type;             /* Content-Type */
    const unsigned char *data;
    size_t len;
} console_asset;
extern const console_asset console_assets[];
extern const size_t console_assets_n;

/* cfg is read at every use (SIGHUP updates the console fields in place). */
console *console_new(struct event_base *base, server *srv, const stockd_config *cfg);
/* Answers every waiting request (503) and frees the console. NULL is fine. */
void console_free(console *c);
/* Handles a request whose path starts with /console; false otherwise. */
bool console_handle(console *c, httpd_req *req);

#endif
