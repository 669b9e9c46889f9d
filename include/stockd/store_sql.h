/* store_sql.h — the SQL text stockd sends MariaDB, built without a
 * connection (store_sql.c is pure): a growable buffer with the quoting
 * helpers every statement uses (values go in as hex literals: no escaping
 * to get wrong), and the one statement of a batch. tests/unit/test_store_sql.c
 * checks the batch statement byte for byte.
 *
 * Errors: the first failure (out of memory, a value that cannot be written)
 * is kept in sbuf.err and later appends do nothing; the caller checks err
 * once before sending.
 */
#ifndef STOCKD_STORE_SQL_H
#define STOCKD_STORE_SQL_H

#include <stddef.h>
#include <stdint.h>

#include "stockd/engine.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    const char *err;    /* first failure ("out of memory", "batch too large") */
} sbuf;

void st_sb_reset(sbuf *b);
void st_sb_free(sbuf *b);
void st_sb_str(sbuf *b, const char *s);
void st_sb_i64(sbuf *b, int64_t v);
/* A string (not NULL) as a hex literal X'..'; "" as ''. */
void st_sb_hex_str(sbuf *b, const char *s);
/* The same, but NULL or "" as NULL (an unset optional column). */
void st_sb_hex_or_null(sbuf *b, const char *s);

/* One row of values "(v1,v2,...)" by a letter per value (store_sql.c
 * lists them: x/X hex or NULL, k hex cut, i/I/N integers, u/U unsigned,
 * e one of our names quoted, b 1/0, f a factor in 0..1). */
void st_sb_row(sbuf *b, const char *fmt, ...);

/* The batch_log row of batch_id by node, in state, at at_ms (no trailing
 * semicolon). */
void st_sql_batch_log(sbuf *b, const char *node, uint64_t batch_id, const char *state,
                      int64_t at_ms);
/* The whole batch as one compound statement, one round trip: its log row
 * first (the tombstone a resolve races against), suppliers, SKUs fenced by
 * their epoch, orders, jobs, ledger, alerts, then COMMIT; any error rolls
 * back whole and is re-raised. at_ms stamps the rows. */
void st_sql_build_commit(sbuf *b, const char *node, const eng_batch *batch, uint64_t batch_id,
                         int64_t at_ms);

#endif
