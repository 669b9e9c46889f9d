/* ring.h — which instance owns a SKU: consistent hashing with virtual nodes
 * (ketama-style).
 *
 * Every node puts `vnodes` points on a 64-bit circle at XXH3(name "#" i); a
 * key belongs to the node of the first point at or after XXH3(key), wrapping
 * around. Adding a node to N takes about 1/(N+1) of the keys, all from the
 * others; removing one moves only its own keys. Points are a function of
 * node names alone, so every instance and every ring-aware client that has
 * the same member list computes the same owner, and `cluster.ring` can hand
 * the points out for clients to use as they are.
 *
 * Why ketama and not rendezvous hashing: a lookup is one binary search over
 * N x vnodes points instead of N hashes per key, and the published point list
 * is all a client in any language needs.
 *
 * Pure: no I/O. A ring is immutable once built; a membership change builds a
 * new one. Errors: ring_parse_peers() returns -1 with a message.
 */
#ifndef STOCKD_RING_H
#define STOCKD_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_NODES_MAX 64
#define RING_NAME_MAX 64
#define RING_HOST_MAX 64
#define RING_VNODES_DEFAULT 160

typedef struct ring_node {
    char name[RING_NAME_MAX + 1];
    char host[RING_HOST_MAX + 1];   /* IPv4 literal */
    int port;
} ring_node;

typedef struct ring_point {
    uint64_t hash;
    uint32_t node;                  /* index into the ring's nodes */
} ring_point;

typedef struct ring ring;

/* Parses "a=HOST:PORT,b=HOST:PORT,..." (names 1..64 of [A-Za-z0-9._-],
 * unique; at most RING_NODES_MAX). Returns 0, or -1 with err. */
int ring_parse_peers(const char *spec, ring_node *out, size_t max, size_t *n,
                     char *err, size_t err_len);

/* Builds a ring over n >= 1 nodes (copied; sorted by name so the order of
 * the list does not matter). Returns NULL on out of memory or n == 0. */
ring *ring_new(const ring_node *nodes, size_t n, unsigned vnodes);
void ring_free(ring *r);

/* Index of the owner of key (into ring_nodes()). */
uint32_t ring_owner(const ring *r, const void *key, size_t len);
/* Index of the node called name, or -1. */
int ring_find(const ring *r, const char *name);

size_t ring_nodes(const ring *r, const ring_node **out);
size_t ring_points(const ring *r, const ring_point **out);
/* A digest of the member list (names and addresses): equal rings have
 * equal versions. */
uint64_t ring_version(const ring *r);
/* The hash a key is placed by (XXH3-64 of its bytes). */
uint64_t ring_key_hash(const void *key, size_t len);

#endif
