/* store_sql.c — the SQL text stockd sends: a growable buffer with the
 * escaping helpers, and the statement of one batch (orders, counters fenced
 * by the epoch, ledger, jobs, alerts, suppliers, the batch log). Pure: no
 * connection, no state; tests/unit/test_store_sql.c checks it byte for byte. */
#include "stockd/store_sql.h"

#include <assert.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stockd/store.h"

/* The statement of one batch; the stack's max_allowed_packet is 64 MiB and
 * MariaDB's default is 16 MiB, so stay under the smaller. */
#define STORE_SQL_MAX_BYTES (15u << 20)

#define SKU_COLS "INSERT INTO sku (sku,own_on_hand,own_reserved,"                     \
                 "supplier_reported,supplier_sellable,supplier_reserved,"             \
                 "supplier_synced_at,mapping,supplier_id,offer_id,spec_id,"           \
                 "sku_id,epoch,version,updated_at,supplier_cap,fingerprint) VALUES\n"

/* Every fenced column assignment: taken only where the row's epoch is the
 * one the engine decided under. */
#define FENCED(col) col "=IF(epoch=VALUES(epoch),VALUES(" col ")," col "),"

/* A map column: like FENCED, but a BROKEN row that came without its map
 * (supplier_id NULL: every real map names its supplier) keeps the columns
 * it has, so support still sees what the SKU was mapped to. */
#define FENCED_MAP(col) col "=IF(epoch=VALUES(epoch) AND NOT (VALUES(mapping)='broken'" \
                        " AND VALUES(supplier_id) IS NULL),VALUES(" col ")," col "),"

#define ORDER_COLS "INSERT INTO orders (order_id,line_no,n_lines,sku,qty,status,from_own,from_supplier," \
                   "available,created_at,updated_at,hold_expires_at,upstream_order_id,"  \
                   "reason,purchased_at,supplier_settled) VALUES\n"

#define JOB_COLS "INSERT INTO purchase_jobs (order_id,line_no,sku,supplier_id,offer_id,spec_id," \
                 "sku_id,qty,state,created_at,updated_at) VALUES\n"

void st_sb_reset(sbuf *b)
{
    b->len = 0;
    b->err = NULL;
    if (b->p)
        b->p[0] = '\0';
}

static bool sb_reserve(sbuf *b, size_t n)
{
    if (b->err)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    if (b->len + n + 1 > STORE_SQL_MAX_BYTES) {
        b->err = "batch too large for one statement";
        return false;
    }
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->err = "out of memory";
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void st_sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

void st_sb_i64(sbuf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    sb_add(b, tmp, (size_t)n);
}

static void sb_u64(sbuf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    sb_add(b, tmp, (size_t)n);
}

/* X'..' for n bytes; '' when empty (X'' is fine too, but clearer). */
static void sb_hex(sbuf *b, const void *data, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *d = data;
    if (n == 0) {
        sb_add(b, "''", 2);
        return;
    }
    if (!sb_reserve(b, 2 * n + 3))
        return;
    char *o = b->p + b->len;
    *o++ = 'X';
    *o++ = '\'';
    for (size_t i = 0; i < n; i++) {
        *o++ = digits[d[i] >> 4];
        *o++ = digits[d[i] & 15];
    }
    *o++ = '\'';
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

void st_sb_hex_str(sbuf *b, const char *s) { sb_hex(b, s, strlen(s)); }

/* An empty optional string is NULL in the database. */
void st_sb_hex_or_null(sbuf *b, const char *s)
{
    if (!s || !s[0])
        st_sb_str(b, "NULL");
    else
        st_sb_hex_str(b, s);
}

static void sb_i64_or_null(sbuf *b, int64_t v)
{
    if (v == 0)
        st_sb_str(b, "NULL");
    else
        st_sb_i64(b, v);
}

void st_sb_free(sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* A trust factor: 0..1 by contract; "%.17g" round-trips a double exactly.
 * Anything else fails the batch rather than writing nonsense. */
static void sb_factor(sbuf *b, double v)
{
    if (!(v >= 0.0 && v <= 1.0)) {
        if (!b->err)
            b->err = "trust factor outside 0..1";
        return;
    }
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.17g", v);
    sb_add(b, tmp, (size_t)n);
}

/* One row of values, "(v1,v2,...)", each value by one letter of fmt:
 *   x  const char *  as hex (not NULL)      X  const char *  as hex, NULL or "" as NULL
 *   k  const char *, size_t max: as hex, cut to max bytes (NULL as '')
 *   i  int64_t                              I  int64_t, 0 as NULL
 *   N  int64_t, negative as NULL            u  uint64_t     U  uint64_t, 0 as NULL
 *   e  const char *  one of our own names, quoted ('confirmed')
 *   b  int  as 1 or 0                       f  double  a factor in 0..1
 * The arguments must have exactly these types (the callers cast). */
void st_sb_row(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    st_sb_str(b, "(");
    for (const char *f = fmt; *f; f++) {
        if (f != fmt)
            st_sb_str(b, ",");
        switch (*f) {
        case 'x': st_sb_hex_str(b, va_arg(ap, const char *)); break;
        case 'X': st_sb_hex_or_null(b, va_arg(ap, const char *)); break;
        case 'k': {
            const char *v = va_arg(ap, const char *);
            size_t max = va_arg(ap, size_t);
            sb_hex(b, v ? v : "", v ? strnlen(v, max) : 0);
            break;
        }
        case 'i': st_sb_i64(b, va_arg(ap, int64_t)); break;
        case 'I': sb_i64_or_null(b, va_arg(ap, int64_t)); break;
        case 'N': {
            int64_t v = va_arg(ap, int64_t);
            if (v >= 0)
                st_sb_i64(b, v);
            else
                st_sb_str(b, "NULL");
            break;
        }
        case 'u': sb_u64(b, va_arg(ap, uint64_t)); break;
        case 'U': {
            uint64_t v = va_arg(ap, uint64_t);
            if (v != 0)
                sb_u64(b, v);
            else
                st_sb_str(b, "NULL");
            break;
        }
        case 'e':
            st_sb_str(b, "'");
            st_sb_str(b, va_arg(ap, const char *));
            st_sb_str(b, "'");
            break;
        case 'b': st_sb_str(b, va_arg(ap, int) ? "1" : "0"); break;
        case 'f': sb_factor(b, va_arg(ap, double)); break;
        default:
            assert(!"st_sb_row: unknown letter");
        }
    }
    st_sb_str(b, ")");
    va_end(ap);
}

/* ---- batch SQL ------------------------------------------------------------- */

/* The map columns of a row: a map is written for OK and for BROKEN (kept
 * for support and for the repair); NONE and MANUAL clear them. */
static const eng_supplier_map *sku_row_map(const eng_sku_row *r)
{
    if (r->mapping != ENG_MAP_OK && r->mapping != ENG_MAP_BROKEN)
        return NULL;
    return r->map;
}

static void sql_sku_values(sbuf *b, const eng_sku_row *r, int64_t at)
{
    const eng_supplier_map *m = sku_row_map(r);
    const eng_counters *c = &r->c;
    /* version 0: a new row's; an update moves it in SQL. NULL cap = no cap
     * (-1 in the engine), NULL fingerprint = not seen (0). */
    st_sb_row(b, "xiiiiiieXIXIiiiNU", r->sku, c->own_on_hand, c->own_reserved,
              c->supplier_reported, c->supplier_sellable, c->supplier_reserved,
              c->supplier_synced_at_ms, eng_mapping_name(r->mapping), m ? m->supplier_id : NULL,
              m ? m->offer_id : (int64_t)0, m ? m->spec_id : NULL, m ? m->sku_id : (int64_t)0,
              r->epoch, (int64_t)0, at, m ? m->cap : (int64_t)-1,
              m ? m->fingerprint : (uint64_t)0);
}

/* New SKUs in one INSERT (a duplicate fails the batch). Changed SKUs in one
 * multi-row upsert whose every assignment is fenced on epoch: a row whose
 * epoch moved keeps its values, and version moves only where the fence
 * holds. MariaDB counts 2 affected rows per updated row (and 1 per insert,
 * 0 per unchanged row), so ROW_COUNT() = 2 x updates proves every fence held
 * and no row was missing. One statement instead of one UPDATE per SKU: the
 * per-statement cost of a compound block was ~100 us a SKU. */
static void sql_skus(sbuf *b, const eng_batch *batch, int64_t at)
{
    const eng_sku_row *rows;
    size_t n = eng_batch_sku_rows(batch, &rows);
    for (int pass = 0; pass < 2; pass++) {
        bool want_insert = pass == 0;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (rows[i].insert != want_insert)
                continue;
            st_sb_str(b, k == 0 ? SKU_COLS : ",\n");
            sql_sku_values(b, &rows[i], at);
            k++;
        }
        if (k == 0)
            continue;
        if (want_insert) {
            st_sb_str(b, ";\n");
            continue;
        }
        st_sb_str(b, "\nON DUPLICATE KEY UPDATE "
                  FENCED("own_on_hand") FENCED("own_reserved") FENCED("supplier_reported")
                  FENCED("supplier_sellable") FENCED("supplier_reserved")
                  FENCED("supplier_synced_at") FENCED("mapping") FENCED_MAP("supplier_id")
                  FENCED_MAP("offer_id") FENCED_MAP("spec_id") FENCED_MAP("sku_id")
                  FENCED_MAP("supplier_cap") FENCED_MAP("fingerprint") FENCED("updated_at")
                  "version=IF(epoch=VALUES(epoch),version+1,version);\n"
                  "IF ROW_COUNT()<>");
        sb_u64(b, 2 * (uint64_t)k);
        st_sb_str(b, " THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT='epoch fence'; END IF;\n");
    }
}

/* n_lines of a row, checked: a line outside its order would load as
 * nonsense (the load refuses it, and the instance would not start). */
static int32_t order_n_lines(const eng_order_view *o)
{
    int32_t n = o->n_lines;
    assert(n >= 1 && n <= ENG_LINES_MAX && o->line_no >= 0 && o->line_no < n);
    return n;
}

static void sql_order_values(sbuf *b, const eng_order_view *o)
{
    st_sb_row(b, "xiixieiiiiiIXXIb", o->order_id, (int64_t)o->line_no,
              (int64_t)order_n_lines(o), o->sku, (int64_t)o->qty, eng_status_name(o->status),
              (int64_t)o->from_own, (int64_t)o->from_supplier, o->available, o->created_at_ms,
              o->updated_at_ms, o->hold_expires_at_ms, o->upstream_order_id, o->reason,
              o->purchased_at_ms, (int)o->supplier_settled);
}

/* One row per line, keyed (order_id, line_no). New lines in one INSERT (a
 * duplicate key fails the batch), changed lines in one upsert on that key
 * (a line's sku, qty and n_lines never change). */
static void sql_orders(sbuf *b, const eng_batch *batch)
{
    const eng_order_row *rows;
    size_t n = eng_batch_order_rows(batch, &rows);
    for (int pass = 0; pass < 2; pass++) {
        bool want_insert = pass == 0;
        bool first = true;
        for (size_t i = 0; i < n; i++) {
            if (rows[i].insert != want_insert || rows[i].erase)
                continue;
            st_sb_str(b, first ? ORDER_COLS : ",\n");
            sql_order_values(b, &rows[i].o);
            first = false;
        }
        if (first)
            continue;
        if (!want_insert)
            st_sb_str(b, "\nON DUPLICATE KEY UPDATE status=VALUES(status),"
                      "from_own=VALUES(from_own),from_supplier=VALUES(from_supplier),"
                      "available=VALUES(available),updated_at=VALUES(updated_at),"
                      "hold_expires_at=VALUES(hold_expires_at),"
                      "upstream_order_id=VALUES(upstream_order_id),reason=VALUES(reason),"
                      "purchased_at=VALUES(purchased_at),"
                      "supplier_settled=VALUES(supplier_settled)");
        st_sb_str(b, ";\n");
    }
    /* Parts erased (a refused cart leaves no record): their rows go. One
     * placed and erased in this batch was never written. One statement a
     * row, on the whole primary key: it locks that row only (a row
     * constructor IN list may scan, and its gap locks deadlock with other
     * nodes' inserts). */
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].erase || rows[i].insert)
            continue;
        st_sb_str(b, "DELETE FROM orders WHERE order_id=");
        st_sb_hex_str(b, rows[i].o.order_id);
        st_sb_str(b, " AND line_no=");
        st_sb_i64(b, rows[i].o.line_no);
        st_sb_str(b, ";\n");
    }
}

static void sql_ledger(sbuf *b, const eng_batch *batch, uint64_t batch_id)
{
    const eng_ledger_row *rows;
    size_t n = eng_batch_ledger_rows(batch, &rows);
    for (size_t i = 0; i < n; i++) {
        const eng_ledger_row *r = &rows[i];
        st_sb_str(b, i == 0 ? "INSERT INTO ledger (sku,order_id,move,d_own_on_hand,"
                           "d_own_reserved,d_supplier_reserved,d_supplier_reported,"
                           "reason,at,batch_id) VALUES\n"
                         : ",\n");
        st_sb_row(b, "xXeiiiiXiu", r->sku, r->order_id, eng_move_name(r->move), r->d_own_on_hand,
                  r->d_own_reserved, r->d_supplier_reserved, r->d_supplier_reported, r->reason,
                  r->at_ms, batch_id);
    }
    if (n)
        st_sb_str(b, ";\n");
}

static void sql_job_values(sbuf *b, const eng_job_row *r, const eng_supplier_map *m)
{
    st_sb_row(b, "xixXIXIieii", r->order_id, (int64_t)r->line_no, r->sku,
              m ? m->supplier_id : NULL, m ? m->offer_id : (int64_t)0, m ? m->spec_id : NULL,
              m ? m->sku_id : (int64_t)0, (int64_t)r->qty, eng_job_state_name(r->state), r->at_ms,
              r->at_ms);
}

/* Purchase outbox, one job per line, keyed (order_id, line_no). New jobs
 * in one INSERT (a duplicate fails the batch, as for orders). State changes in one upsert that changes only state and
 * updated_at: an order confirmed before schema 2 has no job row, and its
 * first state change then creates one (without a map) instead of vanishing
 * into an UPDATE that matched nothing. A change row without a SKU (not
 * expected) falls back to a plain UPDATE. */
static void sql_jobs(sbuf *b, const eng_batch *batch)
{
    const eng_job_row *rows;
    size_t n = eng_batch_job_rows(batch, &rows);
    for (int pass = 0; pass < 2; pass++) {
        bool want_insert = pass == 0;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const eng_job_row *r = &rows[i];
            assert(r->order_id && r->order_id[0]);
            assert(r->line_no >= 0 && r->line_no < ENG_LINES_MAX);
            if (r->insert != want_insert || (!want_insert && (!r->sku || !r->sku[0])))
                continue;
            st_sb_str(b, k == 0 ? JOB_COLS : ",\n");
            sql_job_values(b, r, want_insert ? &r->map : NULL);
            k++;
        }
        if (k == 0)
            continue;
        if (!want_insert)
            st_sb_str(b, "\nON DUPLICATE KEY UPDATE state=VALUES(state),updated_at=VALUES(updated_at)");
        st_sb_str(b, ";\n");
    }
    for (size_t i = 0; i < n; i++) {
        const eng_job_row *r = &rows[i];
        if (r->insert || (r->sku && r->sku[0]))
            continue;
        st_sb_str(b, "UPDATE purchase_jobs SET state='");
        st_sb_str(b, eng_job_state_name(r->state));
        st_sb_str(b, "',updated_at=");
        st_sb_i64(b, r->at_ms);
        st_sb_str(b, " WHERE order_id=");
        st_sb_hex_str(b, r->order_id);
        st_sb_str(b, " AND line_no=");
        st_sb_i64(b, r->line_no);
        st_sb_str(b, ";\n");
    }
}

static void sql_alerts(sbuf *b, const char *node, const eng_batch *batch, uint64_t batch_id)
{
    const eng_alert_row *rows;
    size_t n = eng_batch_alert_rows(batch, &rows);
    for (size_t i = 0; i < n; i++) {
        const eng_alert_row *r = &rows[i];
        assert(r->kind && r->kind[0] && r->sku && r->sku[0]);
        st_sb_str(b, i == 0 ? "INSERT INTO alerts (kind,sku,order_id,reason,at,node,batch_id)"
                           " VALUES\n"
                         : ",\n");
        /* VARBINARY(255) columns: a long reason is cut, never fails a batch. */
        st_sb_row(b, "kxXkixu", r->kind, (size_t)STORE_ALERT_KIND_MAX, r->sku, r->order_id,
                  r->reason, (size_t)255, r->at_ms, node, batch_id);
    }
    if (n)
        st_sb_str(b, ";\n");
}

static void sql_suppliers(sbuf *b, const eng_batch *batch, int64_t at)
{
    const eng_supplier_row *rows;
    size_t n = eng_batch_supplier_rows(batch, &rows);
    for (size_t i = 0; i < n; i++) {
        const eng_supplier_row *r = &rows[i];
        assert(r->supplier_id && r->supplier_id[0]);
        st_sb_str(b, i == 0 ? "INSERT INTO supplier (supplier_id,trust,trust_ceiling,event_mode,"
                           "event_trust,check_before_confirm,updated_at) VALUES\n"
                         : ",\n");
        st_sb_row(b, "xffbfbi", r->supplier_id, r->t.trust, r->t.ceiling, (int)r->t.event_mode,
                  r->t.event_trust, (int)r->t.check_before_confirm, at);
    }
    if (n)
        st_sb_str(b, "\nON DUPLICATE KEY UPDATE trust=VALUES(trust),"
                  "trust_ceiling=VALUES(trust_ceiling),event_mode=VALUES(event_mode),"
                  "event_trust=VALUES(event_trust),check_before_confirm=VALUES(check_before_confirm),"
                  "updated_at=VALUES(updated_at);\n");
}

void st_sql_batch_log(sbuf *b, const char *node, uint64_t batch_id, const char *state,
                      int64_t at_ms)
{
    st_sb_str(b, "INSERT INTO batch_log (batch_id,node,state,at) VALUES ");
    st_sb_row(b, "uxei", batch_id, node, state, at_ms);
}

/* The whole batch as one compound statement: one round trip. The exit
 * handler rolls back and re-raises any error, the epoch fence included, so
 * the client sees exactly one error and nothing of the batch stays. */
void st_sql_build_commit(sbuf *b, const char *node, const eng_batch *batch, uint64_t batch_id,
                         int64_t at_ms)
{
    st_sb_reset(b);
    st_sb_str(b, "BEGIN NOT ATOMIC\n"
              "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\n"
              "START TRANSACTION;\n");
    /* First: the tombstone key that store_resolve() races against. */
    st_sql_batch_log(b, node, batch_id, "committed", at_ms);
    st_sb_str(b, ";\n");
    int64_t at = at_ms;
    sql_suppliers(b, batch, at);
    sql_skus(b, batch, at);
    sql_orders(b, batch);
    sql_jobs(b, batch);
    sql_ledger(b, batch, batch_id);
    sql_alerts(b, node, batch, batch_id);
    st_sb_str(b, "COMMIT;\nEND");
}
