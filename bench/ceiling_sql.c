/* ceiling_sql.c — see ceiling.h. Hand-rolled formatting instead of
 * snprintf per value: the client builds ~150 kB of SQL per statement on
 * the same two cores as MariaDB, and every cycle it spends there is taken
 * from the server being measured. */
#include "ceiling.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define COLS "order_id,line_no,n_lines,sku,qty,status,from_own,from_supplier,available," \
             "created_at,updated_at,hold_expires_at,upstream_order_id,reason,purchased_at," \
             "supplier_settled"

size_t ceiling_table_sql(char *buf, size_t cap, const char *table)
{
    int n = snprintf(buf, cap,
                     "CREATE TABLE %s ("
                     " order_id VARBINARY(64) NOT NULL,"
                     " line_no SMALLINT NOT NULL DEFAULT 0,"
                     " n_lines SMALLINT NOT NULL DEFAULT 1,"
                     " sku VARBINARY(64) NOT NULL,"
                     " qty INT NOT NULL,"
                     " status VARCHAR(16) NOT NULL,"
                     " from_own INT NOT NULL,"
                     " from_supplier INT NOT NULL,"
                     " available BIGINT NOT NULL,"
                     " created_at BIGINT NOT NULL,"
                     " updated_at BIGINT NOT NULL,"
                     " hold_expires_at BIGINT NULL,"
                     " upstream_order_id VARBINARY(64) NULL,"
                     " reason VARBINARY(255) NULL,"
                     " purchased_at BIGINT NULL,"
                     " supplier_settled TINYINT NOT NULL DEFAULT 0,"
                     " PRIMARY KEY (order_id, line_no),"
                     " KEY sku_status (sku, status)"
                     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin", table);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

typedef struct out {
    char *p, *end;
    bool full;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->full || (size_t)(o->end - o->p) < n) {
        o->full = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

#define PUTS(o, lit) put((o), (lit), sizeof(lit) - 1)

static size_t u64_dec(char *d, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        d[i] = tmp[n - 1 - i];
    return n;
}

static void put_u64(out *o, uint64_t v)
{
    char d[20];
    put(o, d, u64_dec(d, v));
}

static void put_i64(out *o, int64_t v)
{
    if (v < 0) {
        PUTS(o, "-");
        put_u64(o, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(o, (uint64_t)v);
    }
}

/* X'<hex of s[0..n)>' — how stockd writes ids and SKUs (sb_hex). */
static void put_hex(out *o, const char *s, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    if (o->full || (size_t)(o->end - o->p) < 2 * n + 3) {
        o->full = true;
        return;
    }
    char *w = o->p;
    *w++ = 'X';
    *w++ = '\'';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        *w++ = digits[c >> 4];
        *w++ = digits[c & 15];
    }
    *w++ = '\'';
    o->p = w;
}

/* "<letter><nonce>-<k>" as hex, the names the other modes give orders and SKUs. */
static void put_name(out *o, char letter, const char *nonce, uint64_t k)
{
    char name[96];
    size_t nl = strlen(nonce);
    if (nl > sizeof name - 24) {                 /* the name stays under 96 bytes */
        o->full = true;
        return;
    }
    name[0] = letter;
    memcpy(name + 1, nonce, nl);
    name[1 + nl] = '-';
    size_t n = 2 + nl + u64_dec(name + 2 + nl, k);
    put_hex(o, name, n);
}

static void row(out *o, const ceiling_shape *s, uint64_t k, int64_t at_ms)
{
    PUTS(o, "(");
    put_name(o, 'o', s->nonce, k);
    PUTS(o, ",0,1,");                            /* line 0 of a one-line order */
    put_name(o, 'b', s->nonce, s->skus ? k % s->skus : 0);
    PUTS(o, ",");
    put_i64(o, s->qty);
    PUTS(o, ",'confirmed',");
    put_i64(o, s->qty);                          /* from_own: all from own stock */
    PUTS(o, ",0,");
    put_i64(o, s->available);
    PUTS(o, ",");
    put_i64(o, at_ms);
    PUTS(o, ",");
    put_i64(o, at_ms);
    PUTS(o, ",NULL,NULL,NULL,NULL,0)");
}

size_t ceiling_row_sql(char *buf, size_t cap, const ceiling_shape *s, uint64_t k, int64_t at_ms)
{
    out o = { buf, buf + cap, false };
    row(&o, s, k, at_ms);
    if (o.full || o.p == o.end)
        return 0;
    *o.p = '\0';
    return (size_t)(o.p - buf);
}

size_t ceiling_insert_cap(uint32_t n)
{
    return CEILING_HEAD_MAX + CEILING_TABLE_MAX + (size_t)n * (CEILING_ROW_MAX + 2) + 1;
}

size_t ceiling_insert_sql(char *buf, size_t cap, const ceiling_shape *s, uint64_t first,
                          uint32_t n, int64_t at_ms)
{
    out o = { buf, buf + cap, false };
    if (n == 0 || strlen(s->table) >= CEILING_TABLE_MAX)
        return 0;
    PUTS(&o, "INSERT INTO ");
    put(&o, s->table, strlen(s->table));
    PUTS(&o, " (" COLS ") VALUES\n");
    for (uint32_t i = 0; i < n && !o.full; i++) {
        if (i)
            PUTS(&o, ",\n");
        row(&o, s, first + i, at_ms);
    }
    if (o.full || o.p == o.end)
        return 0;
    *o.p = '\0';
    return (size_t)(o.p - buf);
}
