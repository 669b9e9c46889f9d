/* notify.c — listeners, order.update, peer updates told once, the alerts
 * ring; see notify.h. */
#include "stockd/notify.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "stockd/codec.h"
#include "stockd/engine.h"
#include "stockd/log.h"
#include "stockd/reply.h"
#include "stockd/store.h"

typedef struct alert_ent {
    char kind[STORE_ALERT_KIND_MAX + 1];
    char sku[ENG_ID_MAX + 1];
    char order_id[ENG_ID_MAX + 1];
    char reason[ENG_REASON_MAX + 1];
    int64_t at_ms;
} alert_ent;

struct notify {
    const stockd_config *cfg;
    conn *subs[NOTIFY_LISTENERS_MAX];
    uint32_t n_subs;
    msgpack_sbuffer out;
    msgpack_packer pk;
    uint64_t updates_seen[NOTIFY_UPDATES_SEEN];  /* 0: an empty slot */
    uint32_t updates_seen_head;
    alert_ent *alerts;                /* a ring of NOTIFY_ALERTS_MAX */
    uint32_t alerts_head;             /* next slot to write */
    uint32_t n_alerts;
    notify_stats st;
};

notify *notify_new(const stockd_config *cfg)
{
    notify *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->alerts = calloc(NOTIFY_ALERTS_MAX, sizeof *n->alerts);
    if (n->alerts == NULL) {
        free(n);
        return NULL;
    }
    n->cfg = cfg;
    msgpack_sbuffer_init(&n->out);
    msgpack_packer_init(&n->pk, &n->out, msgpack_sbuffer_write);
    return n;
}

void notify_free(notify *n)
{
    if (n == NULL)
        return;
    msgpack_sbuffer_destroy(&n->out);
    free(n->alerts);
    free(n);
}

bool notify_subscribe(notify *n, conn *c)
{
    for (uint32_t i = 0; i < n->n_subs; i++)
        if (n->subs[i] == c)
            return true;
    if (n->n_subs >= NOTIFY_LISTENERS_MAX)
        return false;
    n->subs[n->n_subs++] = c;
    conn_set_listener(c, true);
    return true;
}

void notify_forget(notify *n, conn *c)
{
    for (uint32_t i = 0; i < n->n_subs; i++) {
        if (n->subs[i] == c) {
            n->subs[i] = n->subs[--n->n_subs];
            return;
        }
    }
}

uint32_t notify_listeners(const notify *n)
{
    return n->n_subs;
}

msgpack_packer *notify_begin(notify *n)
{
    assert(n->out.size == 0);
    msgpack_pack_array(&n->pk, 3);
    msgpack_pack_int(&n->pk, RPC_NOTIFY);
    codec_pack_cstr(&n->pk, "order.update");
    msgpack_pack_array(&n->pk, 1);
    return &n->pk;
}

uint32_t notify_end(notify *n)
{
    uint32_t told = 0;
    /* Backwards: a close swaps the last listener into slot i, already done. */
    for (uint32_t i = n->n_subs; i-- > 0;) {
        conn *c = n->subs[i];
        assert(conn_get_state(c) == CONN_OPEN || conn_get_state(c) == CONN_DRAINING);
        if (conn_output_len(c) > n->cfg->max_output_bytes) {
            char id[24];
            snprintf(id, sizeof id, "%llu", (unsigned long long)conn_id(c));
            LOG_W("order.subscribe listener not reading: closed", "conn", id);
            n->st.dropped++;
            conn_close(c);  /* its close callback calls notify_forget */
            continue;
        }
        conn_send(c, n->out.data, n->out.size);
        n->st.sent++;
        told++;
    }
    msgpack_sbuffer_clear(&n->out);
    return told;
}

bool notify_update_first(notify *n, const char *order_id, size_t id_len, const char *status,
                         size_t status_len)
{
    /* order_id NUL status */
    char key[ENG_ID_MAX + 1 + 32];
    assert(id_len <= ENG_ID_MAX && status_len <= 32);
    memcpy(key, order_id, id_len);
    key[id_len] = '\0';
    memcpy(key + id_len + 1, status, status_len);
    uint64_t h = XXH64(key, id_len + 1 + status_len, 0) | 1;
    for (uint32_t i = 0; i < NOTIFY_UPDATES_SEEN; i++) {
        if (n->updates_seen[i] == h) {
            n->st.updates_repeated++;
            return false;
        }
    }
    n->updates_seen[n->updates_seen_head] = h;
    n->updates_seen_head = (n->updates_seen_head + 1) % NOTIFY_UPDATES_SEEN;
    n->st.updates_told++;
    return true;
}

static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t len = strnlen(src, cap - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

void notify_alert(notify *n, const char *kind, const char *sku, const char *order_id,
                  const char *reason, int64_t at_ms)
{
    alert_ent *a = &n->alerts[n->alerts_head];
    copy_cut(a->kind, sizeof a->kind, kind);
    copy_cut(a->sku, sizeof a->sku, sku);
    copy_cut(a->order_id, sizeof a->order_id, order_id ? order_id : "");
    copy_cut(a->reason, sizeof a->reason, reason ? reason : "");
    a->at_ms = at_ms;
    n->alerts_head = (n->alerts_head + 1) % NOTIFY_ALERTS_MAX;
    if (n->n_alerts < NOTIFY_ALERTS_MAX)
        n->n_alerts++;
}

void notify_alerts_pack(const notify *n, msgpack_packer *pk, uint32_t limit)
{
    uint32_t k = limit < n->n_alerts ? limit : n->n_alerts;
    msgpack_pack_array(pk, k);
    for (uint32_t i = 0; i < k; i++) {
        const alert_ent *a =
            &n->alerts[(n->alerts_head + NOTIFY_ALERTS_MAX - 1 - i) % NOTIFY_ALERTS_MAX];
        reply_alert_head(pk, 0, a->kind, a->sku, a->order_id, a->reason, a->at_ms);
    }
}

void notify_stats_get(const notify *n, notify_stats *out)
{
    *out = n->st;
    out->listeners = n->n_subs;
    out->alerts_kept = n->n_alerts;
}
