/* client_cluster.c — the ring-aware router: one lazily connected client
 * per node, calls sent to the SKU's owner, the ring fetched again when it
 * may have moved.
 */
#include "client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------- ring-aware routing */

struct stockd_cluster {
    char seed[STOCKD_RING_ADDR_MAX];
    int timeout_ms;
    stockd_ring *ring;
    stockd_client *conns[STOCKD_RING_NODES_MAX];   /* by ring node index; lazily connected */
    stockd_client *last;                            /* the client of the last call */
    unsigned refreshes;
    char errstr[320];
};

stockd_cluster *stockd_cluster_new(void)
{
    stockd_cluster *cl = calloc(1, sizeof *cl);
    if (cl)
        cl->timeout_ms = STOCKD_DEFAULT_TIMEOUT_MS;
    return cl;
}

static void cluster_drop_conns(stockd_cluster *cl)
{
    for (size_t i = 0; i < STOCKD_RING_NODES_MAX; i++) {
        stockd_client_free(cl->conns[i]);
        cl->conns[i] = NULL;
    }
    cl->last = NULL;
}

void stockd_cluster_free(stockd_cluster *cl)
{
    if (cl == NULL)
        return;
    cluster_drop_conns(cl);
    stockd_ring_free(cl->ring);
    free(cl);
}

void stockd_cluster_set_timeout(stockd_cluster *cl, int timeout_ms)
{
    if (timeout_ms > 0)
        cl->timeout_ms = timeout_ms;
}

const stockd_ring *stockd_cluster_ring(const stockd_cluster *cl) { return cl->ring; }
const char *stockd_cluster_errstr(const stockd_cluster *cl) { return cl->errstr; }
unsigned stockd_cluster_refreshes(const stockd_cluster *cl) { return cl->refreshes; }

const stockd_error *stockd_cluster_error(const stockd_cluster *cl)
{
    static const stockd_error none;   /* read-only: not mutable global state */
    return cl->last ? stockd_client_error(cl->last) : &none;
}

/* Fetches the ring from addr; on success it replaces the current one and
 * the per-node connections whose address changed are dropped. */
static stockd_rc cluster_fetch_from(stockd_cluster *cl, const char *addr)
{
    stockd_client *c = stockd_client_new();
    if (c == NULL)
        return STOCKD_ERR_USAGE;
    stockd_ring *r = NULL;
    stockd_rc rc = stockd_client_connect(c, addr, cl->timeout_ms);
    if (rc == STOCKD_OK)
        rc = stockd_ring_fetch(c, &r);
    if (rc != STOCKD_OK) {
        snprintf(cl->errstr, sizeof cl->errstr, "cluster.ring from %s: %s", addr,
                 stockd_client_errstr(c));
        stockd_client_free(c);
        return rc;
    }
    stockd_client_free(c);
    stockd_client *keep[STOCKD_RING_NODES_MAX] = {0};
    for (size_t i = 0; i < r->n_nodes && cl->ring; i++) {
        for (size_t k = 0; k < cl->ring->n_nodes; k++) {
            if (cl->conns[k] && strcmp(cl->ring->addrs[k], r->addrs[i]) == 0 &&
                strcmp(cl->ring->names[k], r->names[i]) == 0) {
                keep[i] = cl->conns[k];
                cl->conns[k] = NULL;
            }
        }
    }
    cluster_drop_conns(cl);
    memcpy(cl->conns, keep, sizeof keep);
    stockd_ring_free(cl->ring);
    cl->ring = r;
    return STOCKD_OK;
}

stockd_rc stockd_cluster_connect(stockd_cluster *cl, const char *seed_addr, int timeout_ms)
{
    if (seed_addr == NULL || strlen(seed_addr) >= sizeof cl->seed) {
        snprintf(cl->errstr, sizeof cl->errstr, "bad seed address");
        return STOCKD_ERR_USAGE;
    }
    snprintf(cl->seed, sizeof cl->seed, "%s", seed_addr);
    stockd_cluster_set_timeout(cl, timeout_ms);
    return cluster_fetch_from(cl, cl->seed);
}

stockd_rc stockd_cluster_refresh(stockd_cluster *cl)
{
    cl->refreshes++;
    /* Any member knows the ring; the seed (often a balancer) last. */
    for (size_t i = 0; cl->ring && i < cl->ring->n_nodes; i++) {
        char addr[STOCKD_RING_ADDR_MAX];
        snprintf(addr, sizeof addr, "%s", cl->ring->addrs[i]);
        if (cluster_fetch_from(cl, addr) == STOCKD_OK)
            return STOCKD_OK;
    }
    return cluster_fetch_from(cl, cl->seed);
}

stockd_client *stockd_cluster_client_for(stockd_cluster *cl, const char *sku, stockd_rc *rc)
{
    *rc = STOCKD_ERR_USAGE;
    if (cl->ring == NULL || sku == NULL) {
        snprintf(cl->errstr, sizeof cl->errstr, "no ring (stockd_cluster_connect first)");
        return NULL;
    }
    size_t i = stockd_ring_owner(cl->ring, sku, strlen(sku));
    if (cl->conns[i] == NULL && (cl->conns[i] = stockd_client_new()) == NULL) {
        snprintf(cl->errstr, sizeof cl->errstr, "out of memory");
        return NULL;
    }
    stockd_client *c = cl->conns[i];
    cl->last = c;
    if (!stockd_client_connected(c)) {
        *rc = stockd_client_connect(c, cl->ring->addrs[i], cl->timeout_ms);
        if (*rc != STOCKD_OK) {
            snprintf(cl->errstr, sizeof cl->errstr, "%s (%s): %s", cl->ring->names[i],
                     cl->ring->addrs[i], stockd_client_errstr(c));
            return NULL;
        }
    }
    *rc = STOCKD_OK;
    return c;
}

typedef enum cluster_op { CL_RESERVE, CL_ORDER_OP, CL_STOCK_GET } cluster_op;

typedef struct cluster_call {
    cluster_op op;
    const stockd_reserve_req *req;
    const char *method, *order_id, *sku;
    stockd_order *order;
    stockd_stock *stock;
} cluster_call;

static stockd_rc cluster_send(stockd_client *c, const cluster_call *k)
{
    if (k->op == CL_RESERVE)
        return stockd_reserve(c, k->req, k->order);
    if (k->op == CL_STOCK_GET)
        return stockd_stock_get(c, k->sku, k->stock);
    msgpack_packer *pk;
    stockd_rc rc = stockd_request_begin(c, k->method, &pk);
    if (rc != STOCKD_OK)
        return rc;
    /* "sku" is the routing hint: the owner need not look the order up. */
    int prc = msgpack_pack_map(pk, 2) | codec_pack_kv_str(pk, "order_id", k->order_id) |
              codec_pack_kv_str(pk, "sku", k->sku);
    uint32_t id = 0;
    rc = client_end_typed(c, prc, &id);
    return client_wait_typed(c, rc, id, k->order, NULL);
}

/* Sends to the owner; when the answer says the ring may have moved
 * (unavailable, or the owner unreachable), refreshes the ring once and, if
 * the SKU has a new owner, asks it. Every operation here is safe to repeat:
 * reserve is idempotent by order_id, the others by their state machine. */
static stockd_rc cluster_call_routed(stockd_cluster *cl, const cluster_call *k)
{
    stockd_rc rc = STOCKD_ERR_USAGE;
    size_t len = strlen(k->sku);
    for (int attempt = 0; attempt < 2 && cl->ring; attempt++) {
        char owner[STOCKD_RING_ADDR_MAX];
        snprintf(owner, sizeof owner, "%s", cl->ring->addrs[stockd_ring_owner(cl->ring, k->sku, len)]);
        stockd_client *c = stockd_cluster_client_for(cl, k->sku, &rc);
        if (c != NULL) {
            rc = cluster_send(c, k);
            snprintf(cl->errstr, sizeof cl->errstr, "%s", stockd_client_errstr(c));
            bool moved = rc == STOCKD_ERR_TRANSPORT ||
                         (rc == STOCKD_ERR_SERVER &&
                          strcmp(stockd_client_error(c)->code, "unavailable") == 0);
            if (!moved)
                return rc;
        } else if (rc != STOCKD_ERR_TRANSPORT) {
            return rc;
        }
        if (attempt == 1 || stockd_cluster_refresh(cl) != STOCKD_OK)
            return rc;
        const char *now = cl->ring->addrs[stockd_ring_owner(cl->ring, k->sku, len)];
        if (strcmp(now, owner) == 0 && rc == STOCKD_ERR_SERVER)
            return rc;   /* the same owner said unavailable: the caller retries later */
    }
    if (cl->ring == NULL)
        snprintf(cl->errstr, sizeof cl->errstr, "no ring (stockd_cluster_connect first)");
    return rc;
}

stockd_rc stockd_cluster_reserve(stockd_cluster *cl, const stockd_reserve_req *req,
                                 stockd_order *out)
{
    if (req == NULL || req->sku == NULL)
        return STOCKD_ERR_USAGE;
    cluster_call k = {.op = CL_RESERVE, .req = req, .sku = req->sku, .order = out};
    return cluster_call_routed(cl, &k);
}

stockd_rc stockd_cluster_order_op(stockd_cluster *cl, const char *method, const char *order_id,
                                  const char *sku, stockd_order *out)
{
    if (method == NULL || order_id == NULL || sku == NULL)
        return STOCKD_ERR_USAGE;
    cluster_call k = {.op = CL_ORDER_OP, .method = method, .order_id = order_id, .sku = sku,
                      .order = out};
    return cluster_call_routed(cl, &k);
}

stockd_rc stockd_cluster_stock_get(stockd_cluster *cl, const char *sku, stockd_stock *out)
{
    if (sku == NULL)
        return STOCKD_ERR_USAGE;
    cluster_call k = {.op = CL_STOCK_GET, .sku = sku, .stock = out};
    return cluster_call_routed(cl, &k);
}
