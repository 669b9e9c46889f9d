/* supplier_sign.c — see include/stockd/supplier_sign.h. */
#include "stockd/supplier_sign.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define SHA1_BLOCK 64
#define SHA1_LEN 20

/* Compares key_a+value_a with key_b+value_b as if concatenated, without
 * building the strings: this is the SDKs' sort(k+v), not a sort by key. */
static int concat_cmp(const supplier_param *a, const supplier_param *b)
{
    size_t la = a->key_len + a->value_len, lb = b->key_len + b->value_len;
    size_t common = la < lb ? la : lb;
    for (size_t i = 0; i < common; i++) {
        unsigned char ca = (unsigned char)(i < a->key_len ? a->key[i] : a->value[i - a->key_len]);
        unsigned char cb = (unsigned char)(i < b->key_len ? b->key[i] : b->value[i - b->key_len]);
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
    return la < lb ? -1 : la > lb ? 1 : 0;
}

static int cmp_param_ptr(const void *x, const void *y)
{
    return concat_cmp(*(const supplier_param *const *)x, *(const supplier_param *const *)y);
}

static bool is_signature_key(const supplier_param *p)
{
    return p->key_len == 14 && memcmp(p->key, "_aop_signature", 14) == 0;
}

/* HMAC per RFC 2104 over EVP digests: the one-shot HMAC() would need the
 * message concatenated, and HMAC_CTX is deprecated in OpenSSL 3. */
static int hmac_sha1(const char *secret, size_t secret_len, const char *url_path,
                     const supplier_param *const *sorted, size_t n,
                     unsigned char mac[SHA1_LEN])
{
    unsigned char key[SHA1_BLOCK] = {0}, pad[SHA1_BLOCK], inner[SHA1_LEN];
    unsigned int len = 0;
    int ok = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -1;
    if (secret_len > SHA1_BLOCK) {
        if (!EVP_Digest(secret, secret_len, key, &len, EVP_sha1(), NULL))
            goto out;
    } else if (secret_len) {
        memcpy(key, secret, secret_len);
    }
    for (int i = 0; i < SHA1_BLOCK; i++)
        pad[i] = key[i] ^ 0x36;
    if (!EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) || !EVP_DigestUpdate(ctx, pad, SHA1_BLOCK) ||
        !EVP_DigestUpdate(ctx, url_path, strlen(url_path)))
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (!EVP_DigestUpdate(ctx, sorted[i]->key, sorted[i]->key_len) ||
            !EVP_DigestUpdate(ctx, sorted[i]->value, sorted[i]->value_len))
            goto out;
    }
    if (!EVP_DigestFinal_ex(ctx, inner, &len))
        goto out;
    for (int i = 0; i < SHA1_BLOCK; i++)
        pad[i] = key[i] ^ 0x5c;
    if (!EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) || !EVP_DigestUpdate(ctx, pad, SHA1_BLOCK) ||
        !EVP_DigestUpdate(ctx, inner, SHA1_LEN) || !EVP_DigestFinal_ex(ctx, mac, &len))
        goto out;
    assert(len == SHA1_LEN);
    ok = 1;
out:
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(pad, sizeof pad);
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

int supplier_sign(const char *secret, size_t secret_len, const char *url_path,
                  const supplier_param *params, size_t n, char out[SUPPLIER_SIGN_HEX_LEN + 1])
{
    static const char hex[] = "0123456789ABCDEF";
    const supplier_param *sorted[SUPPLIER_SIGN_MAX_PARAMS];
    unsigned char mac[SHA1_LEN];
    size_t m = 0, total;

    assert(secret && url_path && out && (params || n == 0));
    out[0] = '\0';
    if (n > SUPPLIER_SIGN_MAX_PARAMS)
        return -1;
    total = strlen(url_path);
    for (size_t i = 0; i < n; i++) {
        if (is_signature_key(&params[i]))
            continue;
        total += params[i].key_len + params[i].value_len;
        sorted[m++] = &params[i];
    }
    if (total > SUPPLIER_SIGN_MAX_BYTES)
        return -1;
    qsort(sorted, m, sizeof sorted[0], cmp_param_ptr);
    if (hmac_sha1(secret, secret_len, url_path, sorted, m, mac) != 0)
        return -1;
    for (int i = 0; i < SHA1_LEN; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[SUPPLIER_SIGN_HEX_LEN] = '\0';
    return 0;
}

bool supplier_sign_equal(const char *expected, const char *received)
{
    assert(expected && received);
    if (strlen(expected) != SUPPLIER_SIGN_HEX_LEN ||
        strnlen(received, SUPPLIER_SIGN_HEX_LEN + 1) != SUPPLIER_SIGN_HEX_LEN)
        return false;
    return CRYPTO_memcmp(expected, received, SUPPLIER_SIGN_HEX_LEN) == 0;
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* Appends one byte at *pos if it fits; always advances *pos (snprintf-like). */
static void put(char *out, size_t cap, size_t *pos, char c)
{
    if (*pos + 1 < cap)
        out[*pos] = c;
    (*pos)++;
}

static void encode_into(char *out, size_t cap, size_t *pos, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c)) {
            put(out, cap, pos, (char)c);
        } else if (c == ' ') {
            put(out, cap, pos, '+');
        } else {
            put(out, cap, pos, '%');
            put(out, cap, pos, hex[c >> 4]);
            put(out, cap, pos, hex[c & 15]);
        }
    }
}

static void terminate(char *out, size_t cap, size_t pos)
{
    if (cap)
        out[pos < cap ? pos : cap - 1] = '\0';
}

size_t supplier_form_encode(char *out, size_t cap, const char *s, size_t len)
{
    size_t pos = 0;
    assert(s || len == 0);
    encode_into(out, cap, &pos, s, len);
    terminate(out, cap, pos);
    return pos;
}

size_t supplier_form_build(char *out, size_t cap, const supplier_param *params, size_t n)
{
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            put(out, cap, &pos, '&');
        encode_into(out, cap, &pos, params[i].key, params[i].key_len);
        put(out, cap, &pos, '=');
        encode_into(out, cap, &pos, params[i].value, params[i].value_len);
    }
    terminate(out, cap, pos);
    return pos;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..len) onto s itself (decoding never grows) and writes a NUL
 * after it; s[len] must be writable. Returns the decoded length or -1. */
static long decode_in_place(char *s, size_t len)
{
    size_t w = 0;
    for (size_t r = 0; r < len; r++) {
        char c = s[r];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;
            if (r + 2 >= len)
                return -1;
            hi = hex_val(s[r + 1]);
            lo = hex_val(s[r + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            r += 2;
        }
        s[w++] = c;
    }
    s[w] = '\0';
    return (long)w;
}

int supplier_form_parse(char *buf, size_t len, supplier_param *params, size_t max, size_t *n)
{
    size_t count = 0, start = 0;
    assert(buf && n && (params || max == 0));
    *n = 0;
    while (start <= len) {
        size_t end = start;
        while (end < len && buf[end] != '&')
            end++;
        if (end > start) {
            size_t eq = start;
            while (eq < end && buf[eq] != '=')
                eq++;
            if (count == max)
                return -2;
            /* The value is decoded first: its NUL may land on the '&' (or
             * on buf[len]); the key's NUL then lands on the '='. */
            long vlen = eq < end ? decode_in_place(buf + eq + 1, end - eq - 1) : 0;
            long klen = decode_in_place(buf + start, eq - start);
            if (vlen < 0 || klen < 0)
                return -1;
            params[count].key = buf + start;
            params[count].key_len = (size_t)klen;
            params[count].value = eq < end ? buf + eq + 1 : buf + start + klen;
            params[count].value_len = (size_t)vlen;
            count++;
        }
        start = end + 1;
    }
    *n = count;
    return 0;
}

const supplier_param *supplier_param_find(const supplier_param *params, size_t n, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < n; i++) {
        if (params[i].key_len == kl && memcmp(params[i].key, key, kl) == 0)
            return &params[i];
    }
    return NULL;
}
