/* ceiling.h — the durable append ceiling's SQL (stockbench --mode ceiling):
 * multi-row INSERTs of rows shaped like stockd's own order rows, into a
 * scratch table with the columns and types of stockd's `orders` table.
 *
 * Pure text building (no MariaDB), so test_bench.c checks it byte for
 * byte. The table mirrors the shape src/store_schema.c leaves `orders` in
 * after every migration, and a row carries what src/store_sql.c writes for
 * a confirmed reserve: ids and SKUs as hex literals, every column given.
 */
#ifndef STOCKBENCH_CEILING_H
#define STOCKBENCH_CEILING_H

#include <stddef.h>
#include <stdint.h>

#define CEILING_ROWS 1000          /* rows per statement (one transaction) */
/* Longest row: two names of at most 95 bytes as hex, six integers of
 * at most 20 characters, the fixed text. Checked in test_bench.c. */
#define CEILING_ROW_MAX 640
#define CEILING_HEAD_MAX 512       /* "INSERT INTO <table> (...) VALUES\n" */
#define CEILING_TABLE_MAX 160

typedef struct ceiling_shape {
    const char *table;             /* qualified, ready for SQL: `db`.bench_ceiling_<nonce> */
    const char *nonce;             /* the run's nonce: order ids o<nonce>-<row>, SKUs b<nonce>-<i> */
    uint32_t skus;                 /* row k names SKU k mod skus */
    int32_t qty;                   /* qty and from_own */
    int64_t available;
} ceiling_shape;

/* CREATE TABLE for the scratch table. Returns the length, or 0 when cap
 * is too small. */
size_t ceiling_table_sql(char *buf, size_t cap, const char *table);

/* One row, "(...)", for row number `row` created at at_ms. Returns its
 * length (at most CEILING_ROW_MAX), or 0 when cap is too small. */
size_t ceiling_row_sql(char *buf, size_t cap, const ceiling_shape *s, uint64_t row, int64_t at_ms);

/* The INSERT of rows first .. first+n-1 (n >= 1), rows separated by ",\n"
 * as stockd writes its batches. Returns the length, or 0 when cap is too
 * small (what was written is then garbage). A buffer of
 * ceiling_insert_cap(n) always fits. */
size_t ceiling_insert_sql(char *buf, size_t cap, const ceiling_shape *s, uint64_t first,
                          uint32_t n, int64_t at_ms);
size_t ceiling_insert_cap(uint32_t n);

#endif
