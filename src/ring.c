/* ring.c — consistent hashing with virtual nodes; see ring.h. */
#include "stockd/ring.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <xxhash.h>

struct ring {
    ring_node nodes[RING_NODES_MAX];
    size_t n_nodes;
    ring_point *points;
    size_t n_points;
    uint64_t version;
};

uint64_t ring_key_hash(const void *key, size_t len)
{
    return XXH3_64bits(key, len);
}

static int name_ok(const char *p, size_t n)
{
    if (n == 0 || n > RING_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* One "name=host:port" entry of n bytes. */
static int parse_one(const char *p, size_t n, ring_node *out, char *err, size_t err_len)
{
    const char *eq = memchr(p, '=', n);
    if (eq == NULL) {
        snprintf(err, err_len, "peer '%.*s': expected NAME=HOST:PORT", (int)(n > 80 ? 80 : n), p);
        return -1;
    }
    size_t name_n = (size_t)(eq - p);
    if (!name_ok(p, name_n)) {
        snprintf(err, err_len, "peer name '%.*s': 1..64 of A-Z a-z 0-9 . _ -", (int)(name_n > 80 ? 80 : name_n), p);
        return -1;
    }
    const char *hp = eq + 1;
    size_t hp_n = n - name_n - 1;
    const char *colon = NULL;
    for (size_t i = 0; i < hp_n; i++)
        if (hp[i] == ':')
            colon = hp + i;
    if (colon == NULL || colon == hp || (size_t)(colon - hp) > RING_HOST_MAX) {
        snprintf(err, err_len, "peer %.*s: expected HOST:PORT", (int)name_n, p);
        return -1;
    }
    size_t host_n = (size_t)(colon - hp);
    memcpy(out->name, p, name_n);
    out->name[name_n] = '\0';
    memcpy(out->host, hp, host_n);
    out->host[host_n] = '\0';
    if (strcmp(out->host, "localhost") == 0)
        strcpy(out->host, "127.0.0.1");
    struct in_addr a;
    if (inet_pton(AF_INET, out->host, &a) != 1) {
        snprintf(err, err_len, "peer %s: host '%s' is not an IPv4 address (no DNS on the loop)", out->name, out->host);
        return -1;
    }
    long port = 0;
    size_t port_n = hp_n - host_n - 1;
    if (port_n == 0 || port_n > 5) {
        snprintf(err, err_len, "peer %s: bad port", out->name);
        return -1;
    }
    for (size_t i = 0; i < port_n; i++) {
        char c = colon[1 + i];
        if (c < '0' || c > '9') {
            snprintf(err, err_len, "peer %s: bad port", out->name);
            return -1;
        }
        port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) {
        snprintf(err, err_len, "peer %s: port out of range 1..65535", out->name);
        return -1;
    }
    out->port = (int)port;
    return 0;
}

int ring_parse_peers(const char *spec, ring_node *out, size_t max, size_t *n, char *err, size_t err_len)
{
    *n = 0;
    const char *p = spec;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (*n == max || *n == RING_NODES_MAX) {
            snprintf(err, err_len, "more than %zu peers", max < RING_NODES_MAX ? max : (size_t)RING_NODES_MAX);
            return -1;
        }
        if (parse_one(p, len, &out[*n], err, err_len) != 0)
            return -1;
        for (size_t i = 0; i < *n; i++) {
            if (strcmp(out[i].name, out[*n].name) == 0) {
                snprintf(err, err_len, "peer %s named twice", out[i].name);
                return -1;
            }
        }
        (*n)++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    if (*n == 0) {
        snprintf(err, err_len, "no peers");
        return -1;
    }
    return 0;
}

static int node_cmp(const void *a, const void *b)
{
    return strcmp(((const ring_node *)a)->name, ((const ring_node *)b)->name);
}

static int point_cmp(const void *a, const void *b)
{
    const ring_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;  /* ties: a fixed order */
}

ring *ring_new(const ring_node *nodes, size_t n, unsigned vnodes)
{
    if (n == 0 || n > RING_NODES_MAX || vnodes == 0 || vnodes > 4096)
        return NULL;
    ring *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    memcpy(r->nodes, nodes, n * sizeof(*nodes));
    r->n_nodes = n;
    qsort(r->nodes, n, sizeof(*r->nodes), node_cmp);
    r->n_points = n * vnodes;
    r->points = malloc(r->n_points * sizeof(*r->points));
    if (r->points == NULL) {
        free(r);
        return NULL;
    }
    XXH3_state_t *st = XXH3_createState();
    if (st == NULL) {
        free(r->points);
        free(r);
        return NULL;
    }
    XXH3_64bits_reset(st);
    for (size_t i = 0; i < n; i++) {
        char buf[RING_NAME_MAX + 16];
        for (unsigned v = 0; v < vnodes; v++) {
            int len = snprintf(buf, sizeof(buf), "%s#%u", r->nodes[i].name, v);
            r->points[i * vnodes + v].hash = XXH3_64bits(buf, (size_t)len);
            r->points[i * vnodes + v].node = (uint32_t)i;
        }
        char line[RING_NAME_MAX + RING_HOST_MAX + 16];
        int len = snprintf(line, sizeof(line), "%s=%s:%d\n", r->nodes[i].name, r->nodes[i].host, r->nodes[i].port);
        XXH3_64bits_update(st, line, (size_t)len);
    }
    r->version = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    qsort(r->points, r->n_points, sizeof(*r->points), point_cmp);
    return r;
}

void ring_free(ring *r)
{
    if (r == NULL)
        return;
    free(r->points);
    free(r);
}

uint32_t ring_owner(const ring *r, const void *key, size_t len)
{
    assert(r->n_points > 0);
    uint64_t h = ring_key_hash(key, len);
    size_t lo = 0, hi = r->n_points;  /* first point with hash >= h */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->points[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == r->n_points)
        lo = 0;
    return r->points[lo].node;
}

int ring_find(const ring *r, const char *name)
{
    for (size_t i = 0; i < r->n_nodes; i++)
        if (strcmp(r->nodes[i].name, name) == 0)
            return (int)i;
    return -1;
}

size_t ring_nodes(const ring *r, const ring_node **out)
{
    *out = r->nodes;
    return r->n_nodes;
}

size_t ring_points(const ring *r, const ring_point **out)
{
    *out = r->points;
    return r->n_points;
}

uint64_t ring_version(const ring *r)
{
    return r->version;
}
