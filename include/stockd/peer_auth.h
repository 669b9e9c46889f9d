/* peer_auth.h — how two stockd instances prove to each other that they hold
 * the cluster secret, at the start of every peer connection. Pure apart
 * from the random nonces (OpenSSL's libcrypto): no sockets, no loop.
 *
 * The handshake (A connects to B; both are nodes of the same ring):
 *   A -> B  peer.hello {node: idA, nonce: nA, keys: [key ids A holds, preferred first]}
 *   B -> A  {node: idB, nonce: nB, key: the first id of A's list that B holds,
 *            mac: HMAC-SHA256(K, "stockd-peer-v1 B>A" | idA | idB | nA | nB)}
 *   A -> B  peer.auth {mac: HMAC-SHA256(K, "stockd-peer-v1 A>B" | idA | idB | nA | nB)}
 *   B -> A  {ok: true}; from then on B believes peer-only fields on this
 *           connection (forwarded requests, cart parts, cascades, updates).
 * Each id goes in with a one-byte length; nonces are 32 random bytes from
 * each side, so neither side can replay an old exchange; the two labels
 * stop a reflection (B's answer cannot serve as A's proof). A checks that
 * B's mac names the node A meant to reach. MACs are compared in constant
 * time (CRYPTO_memcmp).
 *
 * Keys: a keyring of at most two secrets (--cluster-secret and
 * --cluster-secret-alt). A key is named by its id: the first 8 bytes of
 * HMAC-SHA256(secret, "stockd-peer-v1 key id"), which tells nothing about
 * the secret. Rotation: give every node the new secret as the second one
 * (SIGHUP), then make it the first everywhere, then drop the old one; at
 * every step any two nodes share a key.
 */
#ifndef STOCKD_PEER_AUTH_H
#define STOCKD_PEER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_NONCE_BYTES 32
#define PEER_MAC_BYTES 32
#define PEER_KEY_ID_BYTES 8
#define PEER_KEYS_MAX 2
#define PEER_SECRET_MAX 255
#define PEER_NODE_MAX 64

typedef struct peer_key {
    uint8_t id[PEER_KEY_ID_BYTES];
    size_t len;
    uint8_t secret[PEER_SECRET_MAX];
} peer_key;

typedef struct peer_keyring {
    int n;                        /* 0: no secret, no peer is ever trusted */
    peer_key k[PEER_KEYS_MAX];    /* k[0] preferred */
} peer_keyring;

/* From the configured secrets ("" = none; alt only with secret). The
 * caller checked their lengths (config.h CFG_SECRET_MIN..PEER_SECRET_MAX). */
void peer_keyring_set(peer_keyring *kr, const char *secret, const char *alt);
/* Index in kr of the first of ids[0..n) that kr holds, or -1. ids holds n
 * consecutive PEER_KEY_ID_BYTES ids. */
int peer_keyring_find(const peer_keyring *kr, const uint8_t *ids, size_t n);
/* Index of the key named id, or -1. */
int peer_keyring_index(const peer_keyring *kr, const uint8_t id[PEER_KEY_ID_BYTES]);

/* Which direction a mac proves: B_TO_A is the accepting node's answer,
 * A_TO_B the connecting node's proof. */
enum peer_dir { PEER_B_TO_A = 0, PEER_A_TO_B };

/* The mac of one direction with key k of kr. Ids are 1..PEER_NODE_MAX
 * bytes. */
void peer_auth_mac(const peer_keyring *kr, int k, enum peer_dir dir, const char *id_a,
                   const char *id_b, const uint8_t na[PEER_NONCE_BYTES],
                   const uint8_t nb[PEER_NONCE_BYTES], uint8_t out[PEER_MAC_BYTES]);
/* Constant-time check of a received mac (mac_len must be PEER_MAC_BYTES). */
bool peer_auth_check(const peer_keyring *kr, int k, enum peer_dir dir, const char *id_a,
                     const char *id_b, const uint8_t na[PEER_NONCE_BYTES],
                     const uint8_t nb[PEER_NONCE_BYTES], const uint8_t *mac, size_t mac_len);
/* 32 bytes from the system's CSPRNG; false if it failed (never use then). */
bool peer_nonce(uint8_t out[PEER_NONCE_BYTES]);

#endif
