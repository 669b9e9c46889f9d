/* client_recv.c — taking replies off the wire: the one asked for, the
 * ones that arrive for other msgids (held until asked for), and the
 * notifications that arrive meanwhile (queued for stockd_next_notification).
 */
#include "client_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Makes bytes (a frame for the caller) the current reply and fills *reply. */
static stockd_rc client_take(stockd_client *c, uint8_t *bytes, size_t len, stockd_reply *reply)
{
    assert(c->inflight > 0);
    c->inflight--;
    c->cur = bytes;
    rpc_msg m;
    stockd_rc rc = client_unpack(c, bytes, len, &c->cur_u, &m);
    if (rc != STOCKD_OK)
        return rc;
    memset(reply, 0, sizeof(*reply));
    reply->msgid = m.msgid;
    reply->error = m.error;
    reply->result = m.result;
    if (m.error->type != MSGPACK_OBJECT_NIL)
        return client_parse_error(c, m.error);
    /* A map; alerts.list answers an array. */
    if (m.result->type != MSGPACK_OBJECT_MAP && m.result->type != MSGPACK_OBJECT_ARRAY)
        return client_fail(c, STOCKD_ERR_PROTOCOL, "result is neither a map nor an array");
    c->last_result = m.result;
    return STOCKD_OK;
}

/* Appends h to the growing array *arr (n used of *cap); false when out of
 * memory (nothing changed). */
static bool held_push(held_reply **arr, size_t *n, size_t *cap, held_reply h)
{
    if (*n == *cap) {
        size_t grown = *cap ? *cap * 2 : 16;
        held_reply *p = realloc(*arr, grown * sizeof(*p));
        if (!p)
            return false;
        *arr = p;
        *cap = grown;
    }
    (*arr)[(*n)++] = h;
    return true;
}

static stockd_rc client_hold(stockd_client *c, uint32_t msgid, uint8_t *bytes, size_t len)
{
    /* An honest server sends at most one reply per request in flight. */
    if (c->n_held + 1 >= c->inflight) {
        free(bytes);
        return client_broken(c, STOCKD_ERR_PROTOCOL,
                             "reply for unknown msgid %u (or the awaited msgid was not in flight)",
                             msgid);
    }
    if (!held_push(&c->held, &c->n_held, &c->cap_held, (held_reply){msgid, bytes, len})) {
        free(bytes);
        return client_broken(c, STOCKD_ERR_TRANSPORT, "out of memory for held replies");
    }
    return STOCKD_OK;
}

/* Queues a notification frame (takes bytes); the oldest goes when full. */
static stockd_rc client_note(stockd_client *c, uint8_t *bytes, size_t len)
{
    if (c->n_notes >= STOCKD_MAX_QUEUED_NOTIFICATIONS) {
        free(c->notes[0].bytes);
        memmove(&c->notes[0], &c->notes[1], (c->n_notes - 1) * sizeof(c->notes[0]));
        c->n_notes--;
        c->notes_dropped++;
    }
    if (!held_push(&c->notes, &c->n_notes, &c->cap_notes, (held_reply){0, bytes, len})) {
        free(bytes);
        return client_broken(c, STOCKD_ERR_TRANSPORT, "out of memory for notifications");
    }
    return STOCKD_OK;
}

/* Waits until deadline for the next message, unpacked into u: OK with
 * *bytes set (the caller's now), OK with *bytes NULL when none came in
 * time, else the failure (c closed). A frame that is not an RPC message
 * closes c with bad_msg, or with the unpack's own reason when NULL. */
static stockd_rc client_next_msg(stockd_client *c, int64_t deadline_ms, msgpack_unpacked *u,
                                 rpc_msg *m, uint8_t **bytes, size_t *len, const char *bad_msg)
{
    for (;;) {
        stockd_rc rc = client_next_frame(c, bytes, len);
        if (rc != STOCKD_OK)
            return rc;
        if (*bytes == NULL) {
            int got = client_await_input(c, deadline_ms, &rc);
            if (got < 0)
                return rc;
            if (got == 0)
                return STOCKD_OK;
            continue;
        }
        rc = client_unpack(c, *bytes, *len, u, m);
        if (rc != STOCKD_OK) {
            char why[sizeof(c->errstr)];
            memcpy(why, c->errstr, sizeof(why));
            free(*bytes);
            *bytes = NULL;
            client_broken(c, rc, "%s", bad_msg ? bad_msg : why);
        }
        return rc;
    }
}

/* Receives until the reply for msgid (or any, when any) arrives. */
static stockd_rc client_recv(stockd_client *c, bool any, uint32_t msgid, stockd_reply *reply)
{
    client_reset_call(c);
    memset(reply, 0, sizeof(*reply));
    if (c->req_open)
        return client_fail(c, STOCKD_ERR_USAGE, "a request is open (call stockd_request_end)");
    for (size_t i = 0; i < c->n_held; i++) {
        if (any || c->held[i].msgid == msgid) {
            held_reply h = c->held[i];
            memmove(&c->held[i], &c->held[i + 1], (c->n_held - i - 1) * sizeof(h));
            c->n_held--;
            return client_take(c, h.bytes, h.len, reply);
        }
    }
    if (c->fd < 0)
        return client_fail(c, STOCKD_ERR_TRANSPORT, "not connected");
    /* msgids are handed out in increasing order from 1, so one at or past
     * next_msgid was never sent (an already-taken one cannot be told apart). */
    if (c->inflight == c->n_held || (!any && (msgid == 0 || msgid >= c->next_msgid)))
        return client_fail(c, STOCKD_ERR_USAGE, "no request in flight for msgid %u", msgid);
    int64_t deadline = client_now_ms() + c->timeout_ms;
    stockd_rc rc = client_flush_until(c, deadline);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    while (rc == STOCKD_OK) {
        uint8_t *bytes;
        size_t len;
        rpc_msg m;
        rc = client_next_msg(c, deadline, &u, &m, &bytes, &len, NULL);
        if (rc != STOCKD_OK)
            break;
        if (!bytes) {
            rc = client_broken(c, STOCKD_ERR_TRANSPORT, "timeout after %d ms waiting for a reply",
                               c->timeout_ms);
        } else if (m.type == RPC_NOTIFY) {   /* order.update: for stockd_next_notification */
            rc = client_note(c, bytes, len);
        } else if (m.type != RPC_RESPONSE) {
            free(bytes);
            rc = client_broken(c, STOCKD_ERR_PROTOCOL, "server sent a request");
        } else if (any || m.msgid == msgid) {
            msgpack_unpacked_destroy(&u);
            return client_take(c, bytes, len, reply);
        } else {
            rc = client_hold(c, m.msgid, bytes, len);
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

stockd_rc stockd_recv(stockd_client *c, uint32_t msgid, stockd_reply *reply)
{
    return client_recv(c, false, msgid, reply);
}

stockd_rc stockd_recv_any(stockd_client *c, stockd_reply *reply)
{
    return client_recv(c, true, 0, reply);
}


unsigned long stockd_notifications_dropped(const stockd_client *c) { return c->notes_dropped; }

/* Hands out the oldest queued notification as the current frame. */
static stockd_rc client_take_note(stockd_client *c, const msgpack_object **msg)
{
    held_reply h = c->notes[0];
    memmove(&c->notes[0], &c->notes[1], (c->n_notes - 1) * sizeof(h));
    c->n_notes--;
    c->cur = h.bytes;
    rpc_msg m;
    stockd_rc rc = client_unpack(c, h.bytes, h.len, &c->cur_u, &m);
    if (rc == STOCKD_OK)
        *msg = &c->cur_u.data;
    return rc;
}

stockd_rc stockd_next_notification(stockd_client *c, int timeout_ms, const msgpack_object **msg)
{
    client_reset_call(c);
    *msg = NULL;
    if (c->req_open)
        return client_fail(c, STOCKD_ERR_USAGE, "a request is open (call stockd_request_end)");
    if (c->n_notes > 0)
        return client_take_note(c, msg);
    if (c->fd < 0)
        return client_fail(c, STOCKD_ERR_TRANSPORT, "not connected");
    int64_t deadline = client_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    stockd_rc rc = client_flush_until(c, client_now_ms() + c->timeout_ms);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    while (rc == STOCKD_OK) {
        uint8_t *bytes;
        size_t len;
        rpc_msg m;
        rc = client_next_msg(c, deadline, &u, &m, &bytes, &len, "unexpected message from server");
        if (rc != STOCKD_OK || !bytes)
            break;  /* !bytes: nothing in time; rc is OK, *msg NULL */
        if (m.type == RPC_NOTIFY) {
            msgpack_unpacked_destroy(&u);
            if ((rc = client_note(c, bytes, len)) != STOCKD_OK)
                return rc;
            return client_take_note(c, msg);
        }
        /* A reply to a request in flight: kept for stockd_recv. */
        if (m.type == RPC_RESPONSE && c->n_held < c->inflight) {
            rc = client_hold(c, m.msgid, bytes, len);
        } else {
            free(bytes);
            rc = client_broken(c, STOCKD_ERR_PROTOCOL, "unexpected message from server");
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}
