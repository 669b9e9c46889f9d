/* client_ring.c — the ring as cluster.ring sends it: a checked copy and
 * the owner lookup, the server's own (XXH3-64 of the SKU's bytes, the first
 * point at or after it, wrapping).
 */
#include "client_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

/* ------------------------------------------------------------ the ring */



void stockd_ring_free(stockd_ring *r)
{
    if (r == NULL)
        return;
    free(r->hashes);
    free(r->owners);
    free(r);
}

size_t stockd_ring_node_count(const stockd_ring *r) { return r->n_nodes; }
const char *stockd_ring_version(const stockd_ring *r) { return r->version; }

const char *stockd_ring_node_name(const stockd_ring *r, size_t i)
{
    assert(i < r->n_nodes);
    return r->names[i];
}

const char *stockd_ring_node_addr(const stockd_ring *r, size_t i)
{
    assert(i < r->n_nodes);
    return r->addrs[i];
}

size_t stockd_ring_owner(const stockd_ring *r, const void *sku, size_t len)
{
    assert(r->n_points > 0);
    uint64_t h = XXH3_64bits(sku, len);
    size_t lo = 0, hi = r->n_points;      /* the first point with hash >= h */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->hashes[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return r->owners[lo == r->n_points ? 0 : lo];
}

static bool ring_str_ok(const msgpack_object *o, size_t max)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size > 0 && o->via.str.size <= max;
}

/* One {"name","host","port"} of the nodes array. */
static const char *ring_take_node(stockd_ring *r, size_t i, const msgpack_object *n)
{
    if (n->type != MSGPACK_OBJECT_MAP)
        return "a node is not a map";
    const msgpack_object *name = codec_map_get(n, "name"), *host = codec_map_get(n, "host");
    const msgpack_object *port = codec_map_get(n, "port");
    if (!ring_str_ok(name, STOCKD_MAX_ID_BYTES) || !ring_str_ok(host, 64))
        return "a node lacks a name or host (1..64 bytes)";
    if (!port || port->type != MSGPACK_OBJECT_POSITIVE_INTEGER || port->via.u64 == 0 ||
        port->via.u64 > 65535)
        return "a node's port is not 1..65535";
    client_copy_str(name, r->names[i], sizeof r->names[i]);
    char hbuf[65];
    client_copy_str(host, hbuf, sizeof hbuf);
    bool v6 = strchr(hbuf, ':') != NULL;
    snprintf(r->addrs[i], sizeof r->addrs[i], v6 ? "[%s]:%u" : "%s:%u", hbuf,
             (unsigned)port->via.u64);
    for (size_t k = 0; k < i; k++)
        if (strcmp(r->names[k], r->names[i]) == 0)
            return "a node is named twice";
    return NULL;
}

/* The [[hash, node], ...] array, sorted by hash. */
static const char *ring_take_points(stockd_ring *r, const msgpack_object *pts)
{
    if (!pts || pts->type != MSGPACK_OBJECT_ARRAY || pts->via.array.size == 0)
        return "no points";
    size_t n = pts->via.array.size;
    if (n > r->n_nodes * STOCKD_RING_VNODES_MAX)
        return "more points than nodes x vnodes allow";
    r->hashes = malloc(n * sizeof *r->hashes);
    r->owners = malloc(n * sizeof *r->owners);
    if (!r->hashes || !r->owners)
        return "out of memory";
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *p = &pts->via.array.ptr[i];
        if (p->type != MSGPACK_OBJECT_ARRAY || p->via.array.size != 2 ||
            p->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            p->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            p->via.array.ptr[1].via.u64 >= r->n_nodes)
            return "a point is not [hash, node index]";
        r->hashes[i] = p->via.array.ptr[0].via.u64;
        r->owners[i] = (uint16_t)p->via.array.ptr[1].via.u64;
        if (i > 0 && r->hashes[i] < r->hashes[i - 1])
            return "points are not sorted by hash";
    }
    r->n_points = n;
    return NULL;
}

const char *client_ring_parse(stockd_ring *r, const msgpack_object *res)
{
    const msgpack_object *nodes = codec_map_get(res, "nodes");
    if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY || nodes->via.array.size == 0 ||
        nodes->via.array.size > STOCKD_RING_NODES_MAX)
        return "nodes is not an array of 1..64";
    r->n_nodes = nodes->via.array.size;
    for (size_t i = 0; i < r->n_nodes; i++) {
        const char *why = ring_take_node(r, i, &nodes->via.array.ptr[i]);
        if (why)
            return why;
    }
    const msgpack_object *v = codec_map_get(res, "version");
    if (v && v->type == MSGPACK_OBJECT_STR)
        client_copy_str(v, r->version, sizeof r->version);
    else if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(r->version, sizeof r->version, "%016" PRIx64, v->via.u64);
    else
        return "no version";
    return ring_take_points(r, codec_map_get(res, "points"));
}

stockd_rc stockd_ring_fetch(stockd_client *c, stockd_ring **out)
{
    *out = NULL;
    stockd_reply rep;
    stockd_rc rc = client_call_empty(c, "cluster.ring", &rep);
    if (rc != STOCKD_OK)
        return rc;
    stockd_ring *r = calloc(1, sizeof *r);
    if (r == NULL)
        return client_fail(c, STOCKD_ERR_USAGE, "out of memory for the ring");
    const char *why = client_ring_parse(r, rep.result);
    if (why) {
        stockd_ring_free(r);
        return client_fail(c, STOCKD_ERR_PROTOCOL, "cluster.ring: %s", why);
    }
    *out = r;
    return STOCKD_OK;
}
