/* test_peer_auth.c — the cluster handshake's MACs and key ids, checked
 * against values computed independently (Python's hmac, see the comment by
 * each), the keyring's choice of key, and constant-time refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stockd/peer_auth.h"

#define SECRET "0123456789abcdef0123456789abcdef"
#define OTHER "fedcba9876543210fedcba9876543210"

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void nonces(uint8_t na[PEER_NONCE_BYTES], uint8_t nb[PEER_NONCE_BYTES])
{
    for (int i = 0; i < PEER_NONCE_BYTES; i++) {
        na[i] = (uint8_t)i;
        nb[i] = (uint8_t)(32 + i);
    }
}

/* hmac.new(SECRET, b"stockd-peer-v1 key id", sha256).digest()[:8] and the
 * two directions' macs for ids n1, n2 and nonces 0..31, 32..63. */
static void test_vectors(void **state)
{
    (void)state;
    peer_keyring kr;
    peer_keyring_set(&kr, SECRET, "");
    assert_int_equal(kr.n, 1);
    char h[2 * PEER_MAC_BYTES + 1];
    hex(kr.k[0].id, PEER_KEY_ID_BYTES, h);
    assert_string_equal(h, "79141aea37a535c3");
    uint8_t na[PEER_NONCE_BYTES], nb[PEER_NONCE_BYTES], mac[PEER_MAC_BYTES];
    nonces(na, nb);
    peer_auth_mac(&kr, 0, PEER_B_TO_A, "n1", "n2", na, nb, mac);
    hex(mac, PEER_MAC_BYTES, h);
    assert_string_equal(h, "3e0e67deb3ec98c36dcab7dd9ae7a9f06156abbcc8c1ffccc4cc3255493b26dc");
    peer_auth_mac(&kr, 0, PEER_A_TO_B, "n1", "n2", na, nb, mac);
    hex(mac, PEER_MAC_BYTES, h);
    assert_string_equal(h, "a2f4386af548db2464b42d6b0daece645279fa18a3b23e214d7b21660b1af501");
}

/* A proof holds only for its own direction, ids, nonces and key. */
static void test_check_refuses_every_change(void **state)
{
    (void)state;
    peer_keyring kr, other;
    peer_keyring_set(&kr, SECRET, "");
    peer_keyring_set(&other, OTHER, "");
    uint8_t na[PEER_NONCE_BYTES], nb[PEER_NONCE_BYTES], mac[PEER_MAC_BYTES];
    nonces(na, nb);
    peer_auth_mac(&kr, 0, PEER_A_TO_B, "n1", "n2", na, nb, mac);
    assert_true(peer_auth_check(&kr, 0, PEER_A_TO_B, "n1", "n2", na, nb, mac, PEER_MAC_BYTES));
    /* reflection: B's answer is no proof of A */
    assert_false(peer_auth_check(&kr, 0, PEER_B_TO_A, "n1", "n2", na, nb, mac, PEER_MAC_BYTES));
    assert_false(peer_auth_check(&kr, 0, PEER_A_TO_B, "n2", "n1", na, nb, mac, PEER_MAC_BYTES));
    assert_false(peer_auth_check(&kr, 0, PEER_A_TO_B, "n1", "n3", na, nb, mac, PEER_MAC_BYTES));
    /* ids are length-prefixed: "n1"+"2x" is not "n12"+"x" */
    uint8_t m2[PEER_MAC_BYTES];
    peer_auth_mac(&kr, 0, PEER_A_TO_B, "n12", "x", na, nb, m2);
    assert_false(peer_auth_check(&kr, 0, PEER_A_TO_B, "n1", "2x", na, nb, m2, PEER_MAC_BYTES));
    assert_false(peer_auth_check(&kr, 0, PEER_A_TO_B, "n1", "n2", nb, na, mac, PEER_MAC_BYTES));
    assert_false(peer_auth_check(&other, 0, PEER_A_TO_B, "n1", "n2", na, nb, mac, PEER_MAC_BYTES));
    assert_false(peer_auth_check(&kr, 0, PEER_A_TO_B, "n1", "n2", na, nb, mac, PEER_MAC_BYTES - 1));
    assert_false(peer_auth_check(&kr, 1, PEER_A_TO_B, "n1", "n2", na, nb, mac, PEER_MAC_BYTES));
    assert_false(peer_auth_check(&kr, -1, PEER_A_TO_B, "n1", "n2", na, nb, mac, PEER_MAC_BYTES));
    assert_false(peer_auth_check(&kr, 0, PEER_A_TO_B, "n1", "n2", na, nb, NULL, PEER_MAC_BYTES));
    for (int i = 0; i < PEER_MAC_BYTES; i++) {
        mac[i] ^= 1;
        assert_false(peer_auth_check(&kr, 0, PEER_A_TO_B, "n1", "n2", na, nb, mac, PEER_MAC_BYTES));
        mac[i] ^= 1;
    }
}

/* Rotation: the first offered key both hold wins; none shared is -1; an
 * empty ring trusts nobody. */
static void test_keyring_rotation(void **state)
{
    (void)state;
    peer_keyring old_only, both, new_first, none;
    peer_keyring_set(&old_only, SECRET, "");
    peer_keyring_set(&both, SECRET, OTHER);
    peer_keyring_set(&new_first, OTHER, SECRET);
    peer_keyring_set(&none, "", OTHER);
    assert_int_equal(none.n, 0);
    assert_int_equal(both.n, 2);
    uint8_t ids[2 * PEER_KEY_ID_BYTES];
    memcpy(ids, new_first.k[0].id, PEER_KEY_ID_BYTES);
    memcpy(ids + PEER_KEY_ID_BYTES, new_first.k[1].id, PEER_KEY_ID_BYTES);
    assert_int_equal(peer_keyring_find(&both, ids, 2), 1);      /* OTHER is both's k[1] */
    assert_int_equal(peer_keyring_find(&old_only, ids, 2), 0);  /* falls back to SECRET */
    assert_int_equal(peer_keyring_find(&old_only, ids, 1), -1); /* OTHER only: no shared key */
    assert_int_equal(peer_keyring_find(&none, ids, 2), -1);
    assert_memory_not_equal(both.k[0].id, both.k[1].id, PEER_KEY_ID_BYTES);
}

static void test_nonces_differ(void **state)
{
    (void)state;
    uint8_t a[PEER_NONCE_BYTES], b[PEER_NONCE_BYTES];
    assert_true(peer_nonce(a));
    assert_true(peer_nonce(b));
    assert_memory_not_equal(a, b, PEER_NONCE_BYTES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_check_refuses_every_change),
        cmocka_unit_test(test_keyring_rotation),
        cmocka_unit_test(test_nonces_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
