/* store_load.c — startup: loading SKUs, orders and suppliers into the
 * engine (validated, set aside when they cannot be trusted), the newest
 * alerts and the SKU names for the Bloom filter. Blocking, before the loop
 * serves. */
#include "store_internal.h"

/* ---- loading ----------------------------------------------------------------
 *
 * Rows are checked here and by the engine (engine.h "set aside"), never
 * trusted: a row that does not parse or does not add up sets its SKU or
 * order aside with a log line and a support alert, and the load goes on.
 * Only running out of memory, or more than ENG_ASIDE_MAX rows set aside,
 * fails a load. */

/* Bytes for a log line or an alert: printable ASCII as is, anything else
 * \xNN, cut to fit out (never a partial escape). */
static void show_bytes(char *out, size_t out_size, const char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '\\';
        size_t w = plain ? 1 : 4;
        if (k + w + 1 > out_size)
            break;
        if (plain)
            out[k++] = (char)c;
        else
            k += (size_t)snprintf(out + k, out_size - k, "\\x%02x", c);
    }
    out[k] = '\0';
}

/* A column as an id: 1..ENG_ID_MAX bytes of UTF-8 without NUL (what a
 * client could have sent: rpc_parse.h). */
static bool col_id(MYSQL_ROW row, const unsigned long *len, int i, char out[ENG_ID_MAX + 1])
{
    out[0] = '\0';
    if (!row[i] || len[i] < 1 || len[i] > ENG_ID_MAX ||
        !rpc_utf8_valid((const unsigned char *)row[i], len[i]))
        return false;
    memcpy(out, row[i], len[i]);
    out[len[i]] = '\0';
    return true;
}

/* A key column (sku, order_id) as a name for the engine, the log and the
 * alert: the id itself, or "x'<hex>'" (cut to ENG_ID_MAX) when it is not
 * one, so an unreadable key can still be named and set aside. */
static void col_name(MYSQL_ROW row, const unsigned long *len, int i, char out[ENG_ID_MAX + 1])
{
    if (col_id(row, len, i, out))
        return;
    if (!row[i]) {
        snprintf(out, ENG_ID_MAX + 1, "NULL");
        return;
    }
    size_t k = (size_t)snprintf(out, ENG_ID_MAX + 1, "x'");
    for (unsigned long j = 0; j < len[i] && k + 3 < ENG_ID_MAX; j++)
        k += (size_t)snprintf(out + k, ENG_ID_MAX + 1 - k, "%02x", (unsigned char)row[i][j]);
    snprintf(out + k, ENG_ID_MAX + 1 - k, "'");
}

/* why := "<col> <value> <what>"; returns false for the caller's return. */
static bool bad_col(char why[ENG_REASON_MAX + 1], const char *col, MYSQL_ROW row,
                    const unsigned long *len, int i, const char *what)
{
    char v[48];
    if (row[i])
        show_bytes(v, sizeof v, row[i], len[i]);
    else
        snprintf(v, sizeof v, "NULL");
    eng_why_fmt(why, "%s '%s' %s", col, v, what);
    return false;
}

/* A column as an id: NULL -> "", else 1..ENG_ID_MAX bytes without NUL. */
bool st_col_str(MYSQL_ROW row, const unsigned long *len, int i, char *out,
                    size_t out_size, bool nullable)
{
    if (!row[i]) {
        out[0] = '\0';
        return nullable;
    }
    if (len[i] >= out_size || memchr(row[i], '\0', len[i]))
        return false;
    memcpy(out, row[i], len[i]);
    out[len[i]] = '\0';
    return true;
}

bool st_col_i64(MYSQL_ROW row, int i, int64_t *out)
{
    if (!row[i]) {
        *out = 0;       /* NULL integers (offer_id, sku_id, hold) mean "none" */
        return true;
    }
    char *end;
    errno = 0;
    long long v = strtoll(row[i], &end, 10);
    if (errno || end == row[i] || *end)
        return false;
    *out = v;
    return true;
}

static bool col_u64(MYSQL_ROW row, int i, uint64_t *out)
{
    if (!row[i]) {
        *out = 0;       /* NULL fingerprint: not seen yet */
        return true;
    }
    char *end;
    errno = 0;
    if (row[i][0] == '-')
        return false;
    unsigned long long v = strtoull(row[i], &end, 10);
    if (errno || end == row[i] || *end)
        return false;
    *out = v;
    return true;
}

/* supplier_cap: NULL is "no cap" (-1), never 0 (a real cap of nothing). */
static bool col_cap(MYSQL_ROW row, int i, int64_t *out)
{
    if (!row[i]) {
        *out = -1;
        return true;
    }
    return st_col_i64(row, i, out) && *out >= 0;
}

/* An optional id column (supplier_id, spec_id, upstream_order_id). */
static bool col_opt_id(MYSQL_ROW row, const unsigned long *len, int i, char out[ENG_ID_MAX + 1])
{
    if (!row[i]) {
        out[0] = '\0';
        return true;
    }
    return col_id(row, len, i, out);
}

/* The columns of SKU_SELECT into r, checked (eng_sku_row_valid); false
 * with why on a bad row (r->sku then holds a name for it: col_name). */
bool st_parse_sku_row(MYSQL_ROW row, const unsigned long *len, store_sku_row *r,
                          char why[ENG_REASON_MAX + 1])
{
    static const char *const num[] = {"own_on_hand", "own_reserved", "supplier_reported",
                                      "supplier_sellable", "supplier_reserved",
                                      "supplier_synced_at"};
    int64_t *dst[] = {&r->c.own_on_hand, &r->c.own_reserved, &r->c.supplier_reported,
                      &r->c.supplier_sellable, &r->c.supplier_reserved,
                      &r->c.supplier_synced_at_ms};
    char mapping_s[32];
    memset(r, 0, sizeof *r);
    char id[ENG_ID_MAX + 1];
    col_name(row, len, 0, r->sku);
    if (!col_id(row, len, 0, id))
        return bad_col(why, "sku", row, len, 0, "is not 1..64 bytes of UTF-8");
    for (int k = 0; k < 6; k++)
        if (!st_col_i64(row, 1 + k, dst[k]))
            return bad_col(why, num[k], row, len, 1 + k, "is not an integer");
    if (!st_col_str(row, len, 7, mapping_s, sizeof mapping_s, false) ||
        !eng_mapping_parse(mapping_s, &r->mapping))
        return bad_col(why, "mapping", row, len, 7, "is not a mapping");
    if (!col_opt_id(row, len, 8, r->map.supplier_id))
        return bad_col(why, "supplier_id", row, len, 8, "is not an id");
    if (!st_col_i64(row, 9, &r->map.offer_id))
        return bad_col(why, "offer_id", row, len, 9, "is not an integer");
    if (!col_opt_id(row, len, 10, r->map.spec_id))
        return bad_col(why, "spec_id", row, len, 10, "is not an id");
    if (!st_col_i64(row, 11, &r->map.sku_id))
        return bad_col(why, "sku_id", row, len, 11, "is not an integer");
    if (!st_col_i64(row, 12, &r->epoch))
        return bad_col(why, "epoch", row, len, 12, "is not an integer");
    if (!col_cap(row, 13, &r->map.cap))
        return bad_col(why, "supplier_cap", row, len, 13, "is not a count");
    if (!col_u64(row, 14, &r->map.fingerprint))
        return bad_col(why, "fingerprint", row, len, 14, "is not an unsigned integer");
    return eng_sku_row_valid(&r->c, r->mapping, store_sku_row_map(r), why);
}

/* The map engine_load_sku() takes: OK and BROKEN mappings carry one. */
const eng_supplier_map *store_sku_row_map(const store_sku_row *r)
{
    return r->mapping == ENG_MAP_OK || r->mapping == ENG_MAP_BROKEN ? &r->map : NULL;
}

/* Sets a SKU aside (engine.h) and says so. -1: the engine refused (at
 * ENG_ASIDE_MAX, or busy in a batch). */
int st_aside_sku(engine *e, const char *sku, const char *why)
{
    size_t orders = 0;
    int rc = engine_set_aside_sku(e, sku, why, &orders);
    if (rc < 0) {
        LOG_E("store: cannot set a SKU aside", "sku", sku, "reason", why);
        return -1;
    }
    if (rc == 1) {
        char n[24];
        snprintf(n, sizeof n, "%zu", orders);
        LOG_W("store: SKU set aside (support alert set_aside)", "sku", sku, "reason", why,
              "orders_with_it", n);
    }
    return 0;
}

static void audit_note(const char *sku, const char *why, void *arg)
{
    (void)arg;
    LOG_W("store: SKU set aside (support alert set_aside)", "sku", sku, "reason", why);
}

/* Checks the counters of the SKUs just loaded against their orders. */
static int audit_loaded(engine *e, char *err, size_t err_len)
{
    if (engine_audit_loaded(e, audit_note, NULL) < 0) {
        st_set_err(err, err_len, "more than %d rows set aside: repair the database first "
                "(docs/operations.md)", ENG_ASIDE_MAX);
        return -1;
    }
    return 0;
}

/* One SKU row at startup: loaded or set aside. 0, or -1 with err. */
static int load_sku_row(engine *e, MYSQL_ROW row, const unsigned long *len, char *err,
                        size_t err_len)
{
    store_sku_row r;
    char why[ENG_REASON_MAX + 1];
    if (st_parse_sku_row(row, len, &r, why)) {
        if (engine_load_sku(e, r.sku, &r.c, r.mapping, store_sku_row_map(&r), r.epoch))
            return 0;
        eng_why_fmt(why, "refused by the engine (stored twice?)");
    }
    if (st_aside_sku(e, r.sku, why) == 0)
        return 0;
    st_set_err(err, err_len, "load sku: cannot set %s aside (more than %d rows set aside?)", r.sku,
            ENG_ASIDE_MAX);
    return -1;
}

/* The columns of ORDER_SELECT into o, checked (eng_order_row_valid); false
 * with why on a bad row. *holds_known: status, quantities and settlement
 * were read, so the units the line holds are known (line_holds). */
static bool parse_order_row(MYSQL_ROW row, const unsigned long *len, eng_order_view *o,
                            char why[ENG_REASON_MAX + 1], bool *holds_known)
{
    char status_s[32], id[ENG_ID_MAX + 1];
    int64_t qty, from_own, from_supplier, settled, line_no, n_lines;
    memset(o, 0, sizeof *o);
    *holds_known = false;
    col_name(row, len, 0, o->order_id);
    col_name(row, len, 1, o->sku);
    if (!col_id(row, len, 1, id))
        return bad_col(why, "sku", row, len, 1, "is not 1..64 bytes of UTF-8");
    if (!st_col_str(row, len, 3, status_s, sizeof status_s, false) ||
        !eng_status_parse(status_s, &o->status))
        return bad_col(why, "status", row, len, 3, "is not a status");
    if (!row[2] || !st_col_i64(row, 2, &qty) || qty < 1 || qty > ENG_QTY_MAX)
        return bad_col(why, "qty", row, len, 2, "is not 1..1000000");
    if (!row[4] || !row[5] || !st_col_i64(row, 4, &from_own) || !st_col_i64(row, 5, &from_supplier) ||
        from_own < 0 || from_supplier < 0 || from_own + from_supplier != qty)
        return bad_col(why, "from_own", row, len, 4, "and from_supplier do not split qty");
    if (!st_col_i64(row, 13, &settled) || settled < 0 || settled > 1)
        return bad_col(why, "supplier_settled", row, len, 13, "is not 0 or 1");
    o->qty = (int32_t)qty;
    o->from_own = (int32_t)from_own;
    o->from_supplier = (int32_t)from_supplier;
    o->supplier_settled = settled == 1;
    *holds_known = true;
    if (!col_id(row, len, 0, id))
        return bad_col(why, "order_id", row, len, 0, "is not 1..64 bytes of UTF-8");
    if (!st_col_i64(row, 6, &o->available) || !st_col_i64(row, 7, &o->created_at_ms) ||
        !st_col_i64(row, 8, &o->updated_at_ms))
        return bad_col(why, "available / created_at / updated_at", row, len, 6,
                       "are not integers");
    if (!st_col_i64(row, 9, &o->hold_expires_at_ms))
        return bad_col(why, "hold_expires_at", row, len, 9, "is not an integer");
    if (!col_opt_id(row, len, 10, o->upstream_order_id))
        return bad_col(why, "upstream_order_id", row, len, 10, "is not an id");
    /* The reason is prose for people: shown, never refused. */
    if (row[11] && rpc_utf8_valid((const unsigned char *)row[11], len[11]) &&
        len[11] <= ENG_REASON_MAX) {
        memcpy(o->reason, row[11], len[11]);
        o->reason[len[11]] = '\0';
    } else if (row[11]) {
        show_bytes(o->reason, sizeof o->reason, row[11], len[11]);
    }
    if (!st_col_i64(row, 12, &o->purchased_at_ms))
        return bad_col(why, "purchased_at", row, len, 12, "is not an integer");
    if (!row[14] || !row[15] || !st_col_i64(row, 14, &line_no) || !st_col_i64(row, 15, &n_lines) ||
        n_lines < 1 || n_lines > ENG_LINES_MAX || line_no < 0 || line_no >= n_lines)
        return bad_col(why, "line_no", row, len, 14, "or n_lines out of range");
    o->line_no = (int32_t)line_no;
    o->n_lines = (int32_t)n_lines;
    return eng_order_row_valid(o, why);
}

static bool group_same(const order_group *g, MYSQL_ROW row, const unsigned long *len)
{
    if (g->rows == 0)
        return true;
    if (!row[0] || g->key_null)
        return !row[0] && g->key_null;
    return len[0] == g->key_len && memcmp(row[0], g->key, len[0]) == 0;
}

static void group_add(order_group *g, MYSQL_ROW row, const unsigned long *len)
{
    if (g->rows++ == 0) {
        g->key_null = !row[0];
        g->key_len = row[0] ? (len[0] < sizeof g->key ? len[0] : sizeof g->key) : 0;
        if (g->key_len)
            memcpy(g->key, row[0], g->key_len);
    }
    char why[ENG_REASON_MAX + 1];
    bool holds_known;
    eng_order_view o;
    if (g->n == ENG_LINES_MAX) {
        if (!g->bad)
            snprintf(g->why, sizeof g->why, "more than %d lines stored", ENG_LINES_MAX);
        g->bad = true;
        return;
    }
    bool ok = parse_order_row(row, len, &o, why, &holds_known);
    if (!ok && !g->bad)
        memcpy(g->why, why, sizeof why);
    g->bad = g->bad || !ok;
    if (holds_known)
        g->v[g->n++] = o;
    else if (g->n_blind < ENG_LINES_MAX && row[1] && col_id(row, len, 1, g->blind[g->n_blind]))
        g->n_blind++;
}

/* Loads the gathered order or sets it aside. 0, or -1 with err (out of
 * memory, ENG_ASIDE_MAX). */
static int group_flush(order_group *g, engine *e, uint64_t *loaded, char *err, size_t err_len)
{
    if (g->rows == 0)
        return 0;
    int rc = 0;
    char name[ENG_ID_MAX + 1];
    if (g->n > 0) {
        memcpy(name, g->v[0].order_id, sizeof name);
    } else {
        unsigned long l = g->key_len;
        char *one[1] = {g->key_null ? NULL : g->key};
        col_name(one, &l, 0, name);
    }
    if (!g->bad) {
        rc = engine_load_order_lines(e, g->v, g->n, g->why);
        if (rc == 1) {
            (*loaded)++;
            goto out;
        }
        if (rc < 0) {
            st_set_err(err, err_len, "load orders: out of memory");
            goto out;
        }
        rc = 0;
    }
    /* A SKU whose line cannot be read cannot have its counters checked. */
    for (size_t i = 0; i < g->n_blind && rc == 0; i++) {
        char why[ENG_REASON_MAX + 1];
        eng_why_fmt(why, "order %s cannot be read (%s)", name, g->why);
        rc = st_aside_sku(e, g->blind[i], why);
    }
    const char *sku = g->n > 0 ? g->v[0].sku : g->n_blind > 0 ? g->blind[0] : "?";
    if (rc == 0) {
        int a = engine_set_aside_order(e, name, g->v, g->n, sku, g->why);
        if (a == 1)
            LOG_W("store: order set aside (support alert set_aside)", "order_id", name, "sku", sku,
                  "reason", g->why);
        else if (a == 2)
            LOG_D("store: order set aside with its SKU", "order_id", name, "sku", sku);
        rc = a < 0 ? -1 : 0;
    }
    if (rc < 0)
        st_set_err(err, err_len, "load orders: cannot set %s aside (more than %d rows set aside?)",
                name, ENG_ASIDE_MAX);
out:
    g->rows = g->n = g->n_blind = 0;
    g->bad = false;
    g->why[0] = '\0';
    return rc < 0 ? -1 : 0;
}

/* Streams the orders (sorted) into e; then checks the counters of the SKUs
 * loaded. 0, or -1 with err. */
int st_load_orders_res(MYSQL_RES *res, engine *e, uint64_t *count, char *err, size_t err_len)
{
    order_group *g = calloc(1, sizeof *g);
    if (g == NULL) {
        st_set_err(err, err_len, "load orders: out of memory");
        return -1;
    }
    int rc = 0;
    MYSQL_ROW row;
    while (res && (row = mysql_fetch_row(res))) {
        if (rc != 0)
            continue;   /* drain the stream before freeing */
        unsigned long *len = mysql_fetch_lengths(res);
        if (!group_same(g, row, len))
            rc = group_flush(g, e, count, err, err_len);
        if (rc == 0)
            group_add(g, row, len);
    }
    if (rc == 0)
        rc = group_flush(g, e, count, err, err_len);
    free(g);
    if (rc == 0)
        rc = audit_loaded(e, err, err_len);
    return rc;
}

/* Streams one table (mysql_use_result: no full copy in memory). */
static int load_table(MYSQL *my, engine *e, const char *what, const char *sql,
                      load_row_fn fn, uint64_t *count, char *err, size_t err_len)
{
    if (mysql_real_query(my, sql, strlen(sql)) != 0) {
        st_set_err(err, err_len, "load %s: %s", what, mysql_error(my));
        return -1;
    }
    MYSQL_RES *r = mysql_use_result(my);
    if (!r) {
        st_set_err(err, err_len, "load %s: %s", what, mysql_error(my));
        return -1;
    }
    int rc = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r))) {
        if (rc != 0)
            continue;   /* drain the stream before freeing */
        rc = fn(e, row, mysql_fetch_lengths(r), err, err_len);
        if (rc == 0)
            (*count)++;
    }
    if (rc == 0 && mysql_errno(my)) {
        st_set_err(err, err_len, "load %s: %s", what, mysql_error(my));
        rc = -1;
    }
    mysql_free_result(r);
    return rc;
}

static bool col_double(MYSQL_ROW row, int i, double *out)
{
    if (!row[i])
        return false;
    char *end;
    errno = 0;
    double v = strtod(row[i], &end);
    if (errno || end == row[i] || *end)
        return false;
    *out = v;
    return true;
}

/* A supplier's trust settings; the engine judges the values. One that
 * cannot be used gets trust 0 (its SKUs sell none of its stock) until a
 * supplier.put sets it again: never the default, which may trust more than
 * the shop chose. */
static int load_supplier_row(engine *e, MYSQL_ROW row, const unsigned long *len, char *err,
                             size_t err_len)
{
    char id[ENG_ID_MAX + 1], name[ENG_ID_MAX + 1];
    eng_trust t = {0};
    int64_t mode, check;
    (void)err;
    (void)err_len;
    if (col_id(row, len, 0, id) && col_double(row, 1, &t.trust) &&
        col_double(row, 2, &t.ceiling) && row[3] && st_col_i64(row, 3, &mode) && mode >= 0 &&
        mode <= 1 && col_double(row, 4, &t.event_trust) && row[5] && st_col_i64(row, 5, &check) &&
        check >= 0 && check <= 1) {
        t.event_mode = mode == 1;
        t.check_before_confirm = check == 1;
        if (engine_load_supplier(e, id, &t))
            return 0;
    }
    col_name(row, len, 0, name);
    char why[ENG_REASON_MAX + 1];
    eng_why_fmt(why, "supplier %s: trust settings unreadable or out of range; trust 0 "
             "until supplier.put", name);
    if (id[0] != '\0' && strcmp(id, name) == 0) {
        eng_trust zero = {0};
        (void)engine_load_supplier(e, id, &zero);
    }
    engine_aside_alert(e, name, "", why);
    LOG_W("store: supplier row set aside (support alert set_aside)", "supplier_id", name,
          "reason", why);
    return 0;
}

int store_load_all(store *s, engine *e, char *err, size_t err_len)
{
    return store_load_state(s, e, true, 0, err, err_len);
}

/* The lines that are live or changed at or after the cutoff (%lld: schema
 * 7's load_key), and the orders of such lines, every line of each. */
#define LIVE_LINES " FROM orders WHERE load_key>=%lld"
#define LIVE_ORDERS " WHERE order_id IN (SELECT order_id" LIVE_LINES ")"

/* MariaDB's plan for LIVE_ORDERS, chosen from how many lines it takes: a
 * few of a long history are looked up through load_key and sorted (10 M
 * old orders: 35 ms instead of 24 s reading them all); most of the table
 * is better read in key order, already sorted, so materializing the
 * subquery is switched off then (400 k live orders: 1.7 s instead of 7 s).
 * The answer is the same either way. */
static const char *live_plan(MYSQL *my, int64_t since_ms)
{
    char sql[160], err[200];
    int64_t live = 0, rows = 0;
    snprintf(sql, sizeof sql, "SELECT COUNT(*)" LIVE_LINES, (long long)since_ms);
    if (st_db_query_i64(my, sql, &live, err, sizeof err) != 0 ||
        st_db_query_i64(my, "SELECT COALESCE(MAX(TABLE_ROWS),0) FROM information_schema.TABLES"
                        " WHERE TABLE_SCHEMA=DATABASE() AND TABLE_NAME='orders'",
                        &rows, err, sizeof err) != 0)
        return "";  /* the default plan: slower at worst, never wrong */
    return live * 4 >= rows ? "SET STATEMENT optimizer_switch='materialization=off' FOR " : "";
}

int store_load_state(store *s, engine *e, bool preload_skus, int64_t final_since_ms, char *err,
                     size_t err_len)
{
    s->eng = e;
    MYSQL *my = st_db_connect_blocking(s, false, s->db.database, err, err_len);
    if (!my)
        return -1;
    uint64_t suppliers = 0, skus = 0, orders = 0;
    /* Suppliers first: every SKU then meets its supplier's settings. All
     * of them, whatever preload_skus says: there are few, and cold SKUs
     * loaded later need them too. */
    int rc = load_table(my, e, "supplier", SUPPLIER_SELECT, load_supplier_row, &suppliers,
                        err, err_len);
    /* Without preloading, the SKUs of the orders loaded: every line's. */
    const char *plan = final_since_ms > 0 ? live_plan(my, final_since_ms) : "";
    char sku_sql[sizeof SKU_SELECT LIVE_ORDERS + 160];
    if (preload_skus)
        snprintf(sku_sql, sizeof sku_sql, "%s", SKU_SELECT);
    else if (final_since_ms > 0)
        snprintf(sku_sql, sizeof sku_sql,
                 "%s" SKU_SELECT " WHERE sku IN (SELECT sku FROM orders" LIVE_ORDERS ")", plan,
                 (long long)final_since_ms);
    else
        snprintf(sku_sql, sizeof sku_sql, "%s",
                 SKU_SELECT " WHERE sku IN (SELECT DISTINCT sku FROM orders)");
    if (rc == 0)
        rc = load_table(my, e, "sku", sku_sql, load_sku_row, &skus, err, err_len);
    if (rc == 0) {
        char sql[sizeof ORDER_SELECT LIVE_ORDERS ORDER_SORT + 160];
        if (final_since_ms > 0)
            snprintf(sql, sizeof sql, "%s" ORDER_SELECT LIVE_ORDERS ORDER_SORT, plan,
                     (long long)final_since_ms);
        else
            snprintf(sql, sizeof sql, "%s", ORDER_SELECT ORDER_SORT);
        MYSQL_RES *r = NULL;
        if (mysql_real_query(my, sql, strlen(sql)) != 0 || !(r = mysql_use_result(my))) {
            st_set_err(err, err_len, "load orders: %s", mysql_error(my));
            rc = -1;
        } else {
            rc = st_load_orders_res(r, e, &orders, err, err_len);
            if (rc == 0 && mysql_errno(my)) {
                st_set_err(err, err_len, "load orders: %s", mysql_error(my));
                rc = -1;
            }
            mysql_free_result(r);
        }
    }
    mysql_close(my);
    if (rc == 0) {
        eng_stats es;
        engine_stats_get(e, &es);
        char a[24], b[24], c[24], d[24], f[24];
        snprintf(a, sizeof a, "%" PRIu64, skus);
        snprintf(b, sizeof b, "%" PRIu64, orders);
        snprintf(c, sizeof c, "%" PRIu64, suppliers);
        snprintf(d, sizeof d, "%" PRIu64, es.skus_aside);
        snprintf(f, sizeof f, "%" PRIu64, es.orders_aside);
        LOG_I("store: loaded", "skus", a, "orders", b, "suppliers", c, "skus_set_aside", d,
              "orders_set_aside", f);
    }
    return rc;
}

bool st_parse_order_row(MYSQL_ROW row, const unsigned long *len, eng_order_view *o,
                        char why[ENG_REASON_MAX + 1])
{
    bool holds_known;
    return parse_order_row(row, len, o, why, &holds_known);
}

/* ---- recent alerts (startup) --------------------------------------------- */

/* A string column cut to fit out (out_size - 1 bytes), and at a NUL. */
void st_col_cut(MYSQL_ROW row, const unsigned long *len, int i, char *out, size_t out_size)
{
    size_t n = row[i] ? len[i] : 0;
    if (n >= out_size)
        n = out_size - 1;
    if (n)
        memcpy(out, row[i], n);
    out[n] = '\0';
}

bool st_parse_alert_row(MYSQL_ROW row, const unsigned long *len, store_alert *a)
{
    memset(a, 0, sizeof *a);
    if (!st_col_i64(row, 0, &a->id) || !row[0] ||
        !st_col_str(row, len, 2, a->sku, sizeof a->sku, false) || !a->sku[0] ||
        !st_col_str(row, len, 3, a->order_id, sizeof a->order_id, true) ||
        !st_col_i64(row, 5, &a->at_ms))
        return false;
    st_col_cut(row, len, 1, a->kind, sizeof a->kind);
    st_col_cut(row, len, 4, a->reason, sizeof a->reason);
    return a->kind[0] != '\0';
}

int store_recent_alerts(store *s, uint32_t max, void (*fn)(const store_alert *a, void *arg),
                        void *arg, char *err, size_t err_len)
{
    assert(s && fn);
    if (max == 0)
        return 0;
    MYSQL *my = st_db_connect_blocking(s, false, s->db.database, err, err_len);
    if (!my)
        return -1;
    /* The newest max by id (commit order), handed out oldest first. */
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT id,kind,sku,order_id,reason,at FROM"
             " (SELECT id,kind,sku,order_id,reason,at FROM alerts ORDER BY id DESC LIMIT %" PRIu32
             ") t ORDER BY id",
             max);
    int rc = -1;
    MYSQL_RES *r = NULL;
    if (mysql_real_query(my, sql, strlen(sql)) != 0 || !(r = mysql_use_result(my))) {
        st_set_err(err, err_len, "load alerts: %s", mysql_error(my));
        goto out;
    }
    uint64_t bad = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r))) {
        store_alert a;
        /* A bad row is history, not state: skip it rather than refuse to start. */
        if (st_parse_alert_row(row, mysql_fetch_lengths(r), &a))
            fn(&a, arg);
        else
            bad++;
    }
    rc = mysql_errno(my) ? -1 : 0;
    if (rc)
        st_set_err(err, err_len, "load alerts: %s", mysql_error(my));
    mysql_free_result(r);
    if (bad) {
        char n[24];
        snprintf(n, sizeof n, "%" PRIu64, bad);
        LOG_W("store: alert rows skipped", "rows", n);
    }
out:
    mysql_close(my);
    return rc;
}

/* ---- SKU names (Bloom filter) ------------------------------------------- */

int store_count_skus(store *s, uint64_t *out, char *err, size_t err_len)
{
    MYSQL *my = st_db_connect_blocking(s, false, s->db.database, err, err_len);
    if (!my)
        return -1;
    int64_t n = 0;
    int rc = st_db_query_i64(my, "SELECT COUNT(*) FROM sku", &n, err, err_len);
    mysql_close(my);
    if (rc == 0)
        *out = n < 0 ? 0 : (uint64_t)n;
    return rc;
}

int store_each_sku(store *s, void (*fn)(const char *sku, size_t len, void *arg), void *arg,
                   char *err, size_t err_len)
{
    MYSQL *my = st_db_connect_blocking(s, false, s->db.database, err, err_len);
    if (!my)
        return -1;
    int rc = -1;
    MYSQL_RES *r = NULL;
    if (mysql_real_query(my, "SELECT sku FROM sku", 19) != 0 || !(r = mysql_use_result(my))) {
        st_set_err(err, err_len, "scan sku: %s", mysql_error(my));
        goto out;
    }
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(r))) {
        unsigned long *len = mysql_fetch_lengths(r);
        if (row[0] && len[0] >= 1 && len[0] <= ENG_ID_MAX)
            fn(row[0], len[0], arg);
    }
    rc = mysql_errno(my) ? -1 : 0;
    if (rc)
        st_set_err(err, err_len, "scan sku: %s", mysql_error(my));
    mysql_free_result(r);
out:
    mysql_close(my);
    return rc;
}
