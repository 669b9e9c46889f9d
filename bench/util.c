/* util.c — URL and address parsing, the zipf table. */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies [s, s+n) into dst (size cap) or fails when it does not fit. */
static int copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10u + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

/* hiredis and Connector/C resolve names with blocking calls, so only IP
 * literals are accepted; "localhost" is mapped to 127.0.0.1. */
static int set_host(char *dst, size_t cap, const char *s, size_t n)
{
    if (n == 9 && memcmp(s, "localhost", 9) == 0) {
        snprintf(dst, cap, "127.0.0.1");
        return 0;
    }
    if (copy_part(dst, cap, s, n) != 0)
        return -1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, dst, &a4) == 1 || inet_pton(AF_INET6, dst, &a6) == 1)
        return 0;
    return -1;
}

/* host:port after an optional "scheme://". */
int bench_parse_addr(const char *s, const char *scheme, bench_addr *out, char *err,
                     size_t err_len)
{
    memset(out, 0, sizeof *out);
    size_t sl = scheme ? strlen(scheme) : 0;
    if (sl > 0 && strncmp(s, scheme, sl) == 0 && strncmp(s + sl, "://", 3) == 0)
        s += sl + 3;
    const char *colon = strrchr(s, ':');
    size_t len = strlen(s);
    if (len > 0 && s[len - 1] == '/')
        len--;
    if (colon == NULL || set_host(out->host, sizeof out->host, s, (size_t)(colon - s)) != 0 ||
        parse_port(colon + 1, (size_t)(s + len - colon - 1), &out->port) != 0) {
        snprintf(err, err_len, "bad address '%s' (want IP:PORT)", s);
        return -1;
    }
    return 0;
}

/* mysql://user:pass@host:port/db[?socket=/path] */
int bench_parse_dburl(const char *url, bench_dburl *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    out->port = 3306;
    const char *p = url;
    if (strncmp(p, "mysql://", 8) == 0)
        p += 8;
    else if (strncmp(p, "mariadb://", 10) == 0)
        p += 10;
    else
        goto bad;
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (at == NULL || slash == NULL || at > slash)
        goto bad;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *uend = colon ? colon : at;
    if (copy_part(out->user, sizeof out->user, p, (size_t)(uend - p)) != 0 || uend == p)
        goto bad;
    if (colon && copy_part(out->pass, sizeof out->pass, colon + 1, (size_t)(at - colon - 1)) != 0)
        goto bad;
    const char *h = at + 1;
    const char *pc = memchr(h, ':', (size_t)(slash - h));
    if (set_host(out->host, sizeof out->host, h, (size_t)((pc ? pc : slash) - h)) != 0)
        goto bad;
    if (pc && parse_port(pc + 1, (size_t)(slash - pc - 1), &out->port) != 0)
        goto bad;
    const char *q = strchr(slash, '?');
    size_t dl = q ? (size_t)(q - slash - 1) : strlen(slash + 1);
    if (dl == 0 || copy_part(out->db, sizeof out->db, slash + 1, dl) != 0)
        goto bad;
    for (size_t i = 0; out->db[i]; i++) {
        char c = out->db[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            goto bad;
    }
    if (q != NULL) {
        if (strncmp(q, "?socket=", 8) != 0 ||
            copy_part(out->socket, sizeof out->socket, q + 8, strlen(q + 8)) != 0)
            goto bad;
    }
    return 0;
bad:
    snprintf(err, err_len, "bad database URL (want mysql://user:pass@IP:port/db[?socket=/path])");
    return -1;
}

double *bench_zipf_cdf(uint32_t n, double s)
{
    assert(n >= 1 && n <= BENCH_SKUS_MAX);
    assert(s > 0);
    double *cdf = malloc((size_t)n * sizeof *cdf);
    if (cdf == NULL)
        return NULL;
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)i + 1.0, s);
        cdf[i] = sum;
    }
    for (uint32_t i = 0; i < n; i++)
        cdf[i] /= sum;
    cdf[n - 1] = 1.0;                /* rounding must not leave a gap at the top */
    return cdf;
}
