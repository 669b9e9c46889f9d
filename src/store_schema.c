/* store_schema.c — connection options and the schema: creating the
 * database's tables and migrating them step by step, idempotently. */
#include "store_internal.h"
#include "stockd/clock.h"

/* ---- connection options ------------------------------------------------- */

/* Host for Connector/C: an IP, never a name (no blocking DNS on the loop),
 * and never "localhost", which Connector/C would turn into the default
 * unix socket. */
const char *st_db_host(const cfg_db *db)
{
    if (db->socket[0])
        return NULL;
    if (!db->host[0] || strcmp(db->host, "localhost") == 0)
        return "127.0.0.1";
    return db->host;
}

static int db_exec(MYSQL *my, const char *sql, char *err, size_t err_len)
{
    if (mysql_real_query(my, sql, strlen(sql)) != 0) {
        st_set_err(err, err_len, "MariaDB: %s (%u) in: %.80s", mysql_error(my),
                mysql_errno(my), sql);
        return -1;
    }
    /* Drain anything a statement returned (SELECT GET_LOCK, ...). */
    do {
        MYSQL_RES *r = mysql_store_result(my);
        if (r)
            mysql_free_result(r);
    } while (mysql_next_result(my) == 0);
    if (mysql_errno(my)) {
        st_set_err(err, err_len, "MariaDB: %s in: %.80s", mysql_error(my), sql);
        return -1;
    }
    return 0;
}

/* One integer from a one-row, one-column query; -1 with err on failure. */
int st_db_query_i64(MYSQL *my, const char *sql, int64_t *out, char *err,
                        size_t err_len)
{
    if (mysql_real_query(my, sql, strlen(sql)) != 0) {
        st_set_err(err, err_len, "MariaDB: %s in: %.80s", mysql_error(my), sql);
        return -1;
    }
    MYSQL_RES *r = mysql_store_result(my);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    int rc = -1;
    if (row && row[0]) {
        char *end;
        errno = 0;
        long long v = strtoll(row[0], &end, 10);
        if (errno == 0 && *end == '\0') {
            *out = v;
            rc = 0;
        }
    }
    if (rc != 0)
        st_set_err(err, err_len, "MariaDB: no integer from: %.80s", sql);
    if (r)
        mysql_free_result(r);
    return rc;
}

/* ---- schema --------------------------------------------------------------- */

static const char *const schema_v1[] = {
    "CREATE TABLE IF NOT EXISTS sku ("
    " sku VARBINARY(64) NOT NULL PRIMARY KEY,"
    " own_on_hand BIGINT NOT NULL DEFAULT 0,"
    " own_reserved BIGINT NOT NULL DEFAULT 0,"
    " supplier_reported BIGINT NOT NULL DEFAULT 0,"
    " supplier_sellable BIGINT NOT NULL DEFAULT 0,"
    " supplier_reserved BIGINT NOT NULL DEFAULT 0,"
    " supplier_synced_at BIGINT NOT NULL DEFAULT 0,"
    " mapping VARCHAR(16) NOT NULL,"
    " supplier_id VARBINARY(64) NULL,"
    " offer_id BIGINT NULL,"
    " spec_id VARBINARY(64) NULL,"
    " sku_id BIGINT NULL,"
    " epoch BIGINT NOT NULL DEFAULT 1,"
    " version BIGINT NOT NULL DEFAULT 0,"
    " updated_at BIGINT NOT NULL"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS orders ("
    " order_id VARBINARY(64) NOT NULL PRIMARY KEY,"
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
    " KEY sku_status (sku, status)"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS ledger ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " sku VARBINARY(64) NOT NULL,"
    " order_id VARBINARY(64) NULL,"
    " move VARCHAR(16) NOT NULL,"
    " d_own_on_hand BIGINT NOT NULL,"
    " d_own_reserved BIGINT NOT NULL,"
    " d_supplier_reserved BIGINT NOT NULL,"
    " d_supplier_reported BIGINT NOT NULL,"
    " reason VARBINARY(255) NULL,"
    " at BIGINT NOT NULL,"
    " batch_id BIGINT UNSIGNED NOT NULL,"
    " KEY sku (sku),"
    " KEY order_id (order_id)"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS batch_log ("
    " batch_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
    " node VARCHAR(64) NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " at BIGINT NOT NULL"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS boots ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " node VARCHAR(64) NOT NULL,"
    " at BIGINT NOT NULL"
    ") ENGINE=InnoDB",
};

/* Supplier cap and fingerprint, broken mappings (no DDL: mapping is
 * a name), purchase bookkeeping of orders, the purchase outbox, support
 * alerts and supplier trust. Every statement is idempotent (IF NOT EXISTS),
 * so a step cut short by a crash simply runs again. */
static const char *const schema_v2[] = {
    "ALTER TABLE sku"
    " ADD COLUMN IF NOT EXISTS supplier_cap BIGINT NULL,"
    " ADD COLUMN IF NOT EXISTS fingerprint BIGINT UNSIGNED NULL",

    "ALTER TABLE orders"
    " ADD COLUMN IF NOT EXISTS purchased_at BIGINT NULL,"
    " ADD COLUMN IF NOT EXISTS supplier_settled TINYINT NOT NULL DEFAULT 0",

    "CREATE TABLE IF NOT EXISTS purchase_jobs ("
    " order_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " sku VARBINARY(64) NOT NULL,"
    " supplier_id VARBINARY(64) NULL,"
    " offer_id BIGINT NULL,"
    " spec_id VARBINARY(64) NULL,"
    " sku_id BIGINT NULL,"
    " qty INT NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " KEY state (state)"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS alerts ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " kind VARCHAR(32) NOT NULL,"
    " sku VARBINARY(64) NOT NULL,"
    " order_id VARBINARY(64) NULL,"
    " reason VARBINARY(255) NOT NULL,"
    " at BIGINT NOT NULL,"
    " node VARCHAR(64) NULL,"
    " batch_id BIGINT UNSIGNED NULL,"
    " KEY at (at)"
    ") ENGINE=InnoDB",

    "CREATE TABLE IF NOT EXISTS supplier ("
    " supplier_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " trust DOUBLE NOT NULL,"
    " trust_ceiling DOUBLE NOT NULL,"
    " event_mode TINYINT NOT NULL,"
    " event_trust DOUBLE NOT NULL,"
    " updated_at BIGINT NOT NULL"
    ") ENGINE=InnoDB",
};

/* Orders of several lines. An order is stored one row per line,
 * keyed (order_id, line_no); every existing row is line 0 of a one-line
 * order (the defaults). Jobs are per line likewise. cart_decisions holds
 * the one decision on a cross-shard order (store_cart_decide). Each ALTER
 * is one statement (one table rebuild) and idempotent in effect: run again
 * after a crash, it drops the primary key and adds the same one. */
static const char *const schema_v3[] = {
    "ALTER TABLE orders"
    " ADD COLUMN IF NOT EXISTS line_no SMALLINT NOT NULL DEFAULT 0 AFTER order_id,"
    " ADD COLUMN IF NOT EXISTS n_lines SMALLINT NOT NULL DEFAULT 1 AFTER line_no,"
    " DROP PRIMARY KEY, ADD PRIMARY KEY (order_id, line_no)",

    "ALTER TABLE purchase_jobs"
    " ADD COLUMN IF NOT EXISTS line_no SMALLINT NOT NULL DEFAULT 0 AFTER order_id,"
    " DROP PRIMARY KEY, ADD PRIMARY KEY (order_id, line_no)",

    "CREATE TABLE IF NOT EXISTS cart_decisions ("
    " order_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " decision ENUM('confirm','abort') NOT NULL,"
    " at_ms BIGINT NOT NULL"
    ") ENGINE=InnoDB",
};

/* Support acknowledges alerts (alerts.ack): when, by whom, with what note.
 * The index lists the open ones (acked_at NULL) newest first without
 * reading the handled ones, however many there are. One statement,
 * idempotent (IF NOT EXISTS): run again after a crash it changes nothing. */
static const char *const schema_v4[] = {
    "ALTER TABLE alerts"
    " ADD COLUMN IF NOT EXISTS acked_at BIGINT NULL,"
    " ADD COLUMN IF NOT EXISTS acked_by VARBINARY(64) NULL,"
    " ADD COLUMN IF NOT EXISTS ack_note VARBINARY(255) NULL,"
    " ADD INDEX IF NOT EXISTS open_alerts (acked_at)",
};

/* A refused cart leaves no record but its decision: the refusal the
 * client heard rides with an ABORT, so a retry hears it again. */
static const char *const schema_v5[] = {
    "ALTER TABLE cart_decisions"
    " ADD COLUMN IF NOT EXISTS err_code VARCHAR(16) NULL,"
    " ADD COLUMN IF NOT EXISTS err_line SMALLINT NULL,"
    " ADD COLUMN IF NOT EXISTS err_sku VARBINARY(64) NULL,"
    " ADD COLUMN IF NOT EXISTS err_available BIGINT NULL",
};

/* A supplier whose orders are checked with it before a reserve is
 * answered (supplier.put check_before_confirm). One statement, idempotent
 * (IF NOT EXISTS): run again after a crash it changes nothing; rows
 * written before it default to no check, which is what they meant. */
static const char *const schema_v6[] = {
    "ALTER TABLE supplier"
    " ADD COLUMN IF NOT EXISTS check_before_confirm TINYINT NOT NULL DEFAULT 0",
};

/* Startup reads live and recent orders only. load_key puts both in one
 * index range: a live line (it holds units: ei_line_holds) carries the
 * largest BIGINT, an ended one its last change, so "live, or changed since
 * the cutoff" is load_key >= cutoff. MariaDB keeps it (PERSISTENT), no
 * writer names it. One statement, idempotent (IF NOT EXISTS); on a large
 * `orders` table it rewrites the table once. */
static const char *const schema_v7[] = {
    "ALTER TABLE orders"
    " ADD COLUMN IF NOT EXISTS load_key BIGINT AS (IF(status IN ('held','confirmed')"
    " OR (status='purchased' AND from_own>0)"
    " OR (status IN ('purchased','shipped') AND from_supplier>0 AND supplier_settled=0),"
    " 9223372036854775807, updated_at)) PERSISTENT,"
    " ADD INDEX IF NOT EXISTS load_key (load_key)",
};

static const schema_step schema_steps[] = {
    {1, schema_v1, sizeof schema_v1 / sizeof schema_v1[0]},
    {2, schema_v2, sizeof schema_v2 / sizeof schema_v2[0]},
    {3, schema_v3, sizeof schema_v3 / sizeof schema_v3[0]},
    {4, schema_v4, sizeof schema_v4 / sizeof schema_v4[0]},
    {5, schema_v5, sizeof schema_v5 / sizeof schema_v5[0]},
    {6, schema_v6, sizeof schema_v6 / sizeof schema_v6[0]},
    {7, schema_v7, sizeof schema_v7 / sizeof schema_v7[0]},
};

/* Database names go between backticks: allow only what needs no quoting. */
static bool db_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '$'))
            return false;
    }
    return true;
}

static int schema_migrate(MYSQL *my, char *err, size_t err_len)
{
    int64_t have = 0;
    if (db_exec(my, "CREATE TABLE IF NOT EXISTS schema_version ("
                    " version INT NOT NULL PRIMARY KEY,"
                    " applied_at BIGINT NOT NULL) ENGINE=InnoDB", err, err_len) != 0 ||
        st_db_query_i64(my, "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                     &have, err, err_len) != 0)
        return -1;
    if (have > STORE_SCHEMA_VERSION) {
        st_set_err(err, err_len, "database schema version %" PRId64
                " is newer than this stockd (%d)", have, STORE_SCHEMA_VERSION);
        return -1;
    }
    for (size_t i = 0; i < sizeof schema_steps / sizeof schema_steps[0]; i++) {
        const schema_step *st = &schema_steps[i];
        if (st->version <= have)
            continue;
        for (size_t j = 0; j < st->n; j++)
            if (db_exec(my, st->sql[j], err, err_len) != 0)
                return -1;
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO schema_version VALUES (%d, %" PRId64 ")",
                 st->version, clock_wall_ms());
        if (db_exec(my, sql, err, err_len) != 0)
            return -1;
        char v[16];
        snprintf(v, sizeof v, "%d", st->version);
        LOG_I("store: schema migrated", "version", v);
    }
    return 0;
}

/* Creates the database if missing, migrates under a named lock (two stockd
 * starting at once), and records this boot. */
int st_store_setup_schema(store *s, char *err, size_t err_len)
{
    if (!db_name_ok(s->db.database)) {
        st_set_err(err, err_len, "database name must be 1-64 of [A-Za-z0-9_$]: %s",
                s->db.database);
        return -1;
    }
    MYSQL *my = st_db_connect_blocking(s, false, NULL, err, err_len);
    if (!my)
        return -1;
    char sql[256];
    int rc = -1;
    snprintf(sql, sizeof sql, "CREATE DATABASE IF NOT EXISTS `%.64s`", s->db.database);
    if (db_exec(my, sql, err, err_len) != 0)
        goto out;
    if (mysql_select_db(my, s->db.database) != 0) {
        st_set_err(err, err_len, "select database %s: %s", s->db.database, mysql_error(my));
        goto out;
    }
    int64_t locked = 0;
    if (st_db_query_i64(my, "SELECT GET_LOCK('stockd.schema', 30)", &locked, err, err_len) != 0)
        goto out;
    if (locked != 1) {
        st_set_err(err, err_len, "schema lock not granted in 30 s");
        goto out;
    }
    rc = schema_migrate(my, err, err_len);
    if (db_exec(my, "SELECT RELEASE_LOCK('stockd.schema')", NULL, 0) != 0)
        LOG_W("store: schema lock release failed");
    if (rc != 0)
        goto out;
    sbuf b = {0};
    st_sb_str(&b, "INSERT INTO boots (node, at) VALUES (");
    st_sb_hex_str(&b, s->node);
    st_sb_str(&b, ", ");
    st_sb_i64(&b, clock_wall_ms());
    st_sb_str(&b, ")");
    rc = b.err ? -1 : db_exec(my, b.p, err, err_len);
    st_sb_free(&b);
    if (rc == 0) {
        s->boot_id = mysql_insert_id(my);
        if (s->boot_id == 0 || s->boot_id > STORE_BOOT_ID_MAX) {
            st_set_err(err, err_len, "boot id %" PRIu64 " out of range", s->boot_id);
            rc = -1;
        }
    }
out:
    mysql_close(my);
    return rc;
}
