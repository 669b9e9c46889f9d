/* supplier_sign.h — the 1688 Open Platform request signature and the
 * application/x-www-form-urlencoded helpers around it. Pure: no I/O, no
 * clock, no global state; shared by stockd's supplier client, its push
 * ingest and tools/fake1688.
 *
 * Signature (reference 1688-open-api.md, as the official SDKs do it):
 *   s   = url_path + concat(sort_bytewise(key + value for every param
 *                                         except _aop_signature))
 *   sig = UPPER(HEX(HMAC_SHA1(key = app_secret, msg = s)))      40 chars
 * url_path is "param2/{ver}/{namespace}/{api}/{appKey}" (no leading '/',
 * no "openapi/"). Values are the raw, decoded bytes (a JSON param is its
 * JSON text). The SDKs sort the *concatenated* key+value strings, not the
 * keys; both orders agree unless one key is a prefix of another.
 * An empty url_path gives the params-only variant (message push).
 */
#ifndef STOCKD_SUPPLIER_SIGN_H
#define STOCKD_SUPPLIER_SIGN_H

#include <stdbool.h>
#include <stddef.h>

#define SUPPLIER_SIGN_HEX_LEN 40          /* hex chars, without the NUL */
#define SUPPLIER_SIGN_MAX_PARAMS 64       /* params one request may carry */
#define SUPPLIER_SIGN_MAX_BYTES (4u << 20) /* url path + all keys and values */

/* One form parameter: pointers into memory owned by the caller. Key and
 * value need not be NUL-terminated. */
typedef struct supplier_param {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} supplier_param;

/* Writes the signature (40 upper-case hex chars + NUL) into out.
 * Params whose key is "_aop_signature" are skipped.
 * Returns 0; -1 if n > SUPPLIER_SIGN_MAX_PARAMS, the total exceeds
 * SUPPLIER_SIGN_MAX_BYTES or libcrypto fails (out is then "").  */
int supplier_sign(const char *secret, size_t secret_len, const char *url_path,
                  const supplier_param *params, size_t n,
                  char out[SUPPLIER_SIGN_HEX_LEN + 1]);

/* Constant-time comparison of a received signature with the expected one
 * (both NUL-terminated). False for any length other than 40. */
bool supplier_sign_equal(const char *expected, const char *received);

/* Form-encodes len bytes of s into out: unreserved bytes (A-Z a-z 0-9 - . _ ~)
 * are kept, space becomes '+', everything else %XX (upper-case hex).
 * Returns the encoded length (without NUL) like snprintf: when it is >= cap
 * the output was truncated. out is NUL-terminated whenever cap > 0. */
size_t supplier_form_encode(char *out, size_t cap, const char *s, size_t len);

/* Builds "k1=v1&k2=v2..." from n params, each key and value encoded.
 * Returns the full length like snprintf (>= cap means truncated). */
size_t supplier_form_build(char *out, size_t cap, const supplier_param *params, size_t n);

/* Decodes a form body in place. buf must have len + 1 writable bytes: each
 * decoded key and value ends up NUL-terminated inside buf, and params[]
 * point into it. Empty pairs ("a=1&&b=2") are skipped; a pair without '='
 * has an empty value. Returns 0 and sets *n; -1 on a malformed %-escape or
 * a decoded NUL byte; -2 when there are more than max params. */
int supplier_form_parse(char *buf, size_t len, supplier_param *params, size_t max, size_t *n);

/* First param whose key equals the NUL-terminated key; NULL if none. */
const supplier_param *supplier_param_find(const supplier_param *params, size_t n,
                                          const char *key);

#endif
