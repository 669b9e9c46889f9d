/* peer_auth.c — cluster secret keyring and the handshake's MACs; see
 * peer_auth.h. */
#include "stockd/peer_auth.h"

#include <assert.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define LABEL "stockd-peer-v1 "

static void key_set(peer_key *k, const char *secret)
{
    size_t n = strlen(secret);
    assert(n > 0 && n <= PEER_SECRET_MAX);
    memcpy(k->secret, secret, n);
    k->len = n;
    static const char what[] = LABEL "key id";
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mlen = 0;
    HMAC(EVP_sha256(), k->secret, (int)k->len, (const unsigned char *)what, sizeof what - 1, mac,
         &mlen);
    assert(mlen >= PEER_KEY_ID_BYTES);
    memcpy(k->id, mac, PEER_KEY_ID_BYTES);
}

void peer_keyring_set(peer_keyring *kr, const char *secret, const char *alt)
{
    OPENSSL_cleanse(kr, sizeof *kr);
    kr->n = 0;
    if (secret != NULL && secret[0] != '\0')
        key_set(&kr->k[kr->n++], secret);
    if (kr->n == 1 && alt != NULL && alt[0] != '\0')
        key_set(&kr->k[kr->n++], alt);
}

int peer_keyring_index(const peer_keyring *kr, const uint8_t id[PEER_KEY_ID_BYTES])
{
    for (int i = 0; i < kr->n; i++)
        if (memcmp(kr->k[i].id, id, PEER_KEY_ID_BYTES) == 0)
            return i;
    return -1;
}

int peer_keyring_find(const peer_keyring *kr, const uint8_t *ids, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        int i = peer_keyring_index(kr, ids + j * PEER_KEY_ID_BYTES);
        if (i >= 0)
            return i;
    }
    return -1;
}

void peer_auth_mac(const peer_keyring *kr, int k, enum peer_dir dir, const char *id_a,
                   const char *id_b, const uint8_t na[PEER_NONCE_BYTES],
                   const uint8_t nb[PEER_NONCE_BYTES], uint8_t out[PEER_MAC_BYTES])
{
    assert(k >= 0 && k < kr->n);
    size_t la = strlen(id_a), lb = strlen(id_b);
    assert(la > 0 && la <= PEER_NODE_MAX && lb > 0 && lb <= PEER_NODE_MAX);
    uint8_t msg[sizeof LABEL + 3 + 2 + 2 * PEER_NODE_MAX + 2 * PEER_NONCE_BYTES];
    size_t n = 0;
    memcpy(msg, LABEL, sizeof LABEL - 1);
    n += sizeof LABEL - 1;
    memcpy(msg + n, dir == PEER_B_TO_A ? "B>A" : "A>B", 3);
    n += 3;
    msg[n++] = (uint8_t)la;
    memcpy(msg + n, id_a, la);
    n += la;
    msg[n++] = (uint8_t)lb;
    memcpy(msg + n, id_b, lb);
    n += lb;
    memcpy(msg + n, na, PEER_NONCE_BYTES);
    n += PEER_NONCE_BYTES;
    memcpy(msg + n, nb, PEER_NONCE_BYTES);
    n += PEER_NONCE_BYTES;
    assert(n <= sizeof msg);
    unsigned mlen = 0;
    uint8_t mac[EVP_MAX_MD_SIZE];
    HMAC(EVP_sha256(), kr->k[k].secret, (int)kr->k[k].len, msg, n, mac, &mlen);
    assert(mlen == PEER_MAC_BYTES);
    memcpy(out, mac, PEER_MAC_BYTES);
}

bool peer_auth_check(const peer_keyring *kr, int k, enum peer_dir dir, const char *id_a,
                     const char *id_b, const uint8_t na[PEER_NONCE_BYTES],
                     const uint8_t nb[PEER_NONCE_BYTES], const uint8_t *mac, size_t mac_len)
{
    if (k < 0 || k >= kr->n || mac == NULL || mac_len != PEER_MAC_BYTES)
        return false;
    uint8_t want[PEER_MAC_BYTES];
    peer_auth_mac(kr, k, dir, id_a, id_b, na, nb, want);
    return CRYPTO_memcmp(want, mac, PEER_MAC_BYTES) == 0;
}

bool peer_nonce(uint8_t out[PEER_NONCE_BYTES])
{
    return RAND_bytes(out, PEER_NONCE_BYTES) == 1;
}
