"""Schema migration v2 -> v3 (orders stored one row per line) and on
to v4 (a cart's decision keeps the refusal its client was told).

A database made by the v2 schema (tables as store.c's steps 1 and 2 create
them, schema_version 1 and 2, a held and a confirmed order, a finished
purchase job) is handed to stockd: it must migrate in place (orders and
purchase_jobs keyed (order_id, line_no), old rows line 0 of one line,
cart_decisions created with its err_* columns), serve the old orders, write new rows and changes
of old rows under the new key without duplicates, and start again on the
migrated database without migrating twice. Bounded: a few seconds.
"""
import time

from itestlib import audit, check_order_map

V2_DDL = [
    "CREATE TABLE schema_version (version INT NOT NULL PRIMARY KEY,"
    " applied_at BIGINT NOT NULL) ENGINE=InnoDB",
    "CREATE TABLE sku (sku VARBINARY(64) NOT NULL PRIMARY KEY,"
    " own_on_hand BIGINT NOT NULL DEFAULT 0, own_reserved BIGINT NOT NULL DEFAULT 0,"
    " supplier_reported BIGINT NOT NULL DEFAULT 0, supplier_sellable BIGINT NOT NULL DEFAULT 0,"
    " supplier_reserved BIGINT NOT NULL DEFAULT 0, supplier_synced_at BIGINT NOT NULL DEFAULT 0,"
    " mapping VARCHAR(16) NOT NULL, supplier_id VARBINARY(64) NULL, offer_id BIGINT NULL,"
    " spec_id VARBINARY(64) NULL, sku_id BIGINT NULL, epoch BIGINT NOT NULL DEFAULT 1,"
    " version BIGINT NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL,"
    " supplier_cap BIGINT NULL, fingerprint BIGINT UNSIGNED NULL) ENGINE=InnoDB",
    "CREATE TABLE orders (order_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " sku VARBINARY(64) NOT NULL, qty INT NOT NULL, status VARCHAR(16) NOT NULL,"
    " from_own INT NOT NULL, from_supplier INT NOT NULL, available BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, hold_expires_at BIGINT NULL,"
    " upstream_order_id VARBINARY(64) NULL, reason VARBINARY(255) NULL,"
    " purchased_at BIGINT NULL, supplier_settled TINYINT NOT NULL DEFAULT 0,"
    " KEY sku_status (sku, status)) ENGINE=InnoDB",
    "CREATE TABLE ledger (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " sku VARBINARY(64) NOT NULL, order_id VARBINARY(64) NULL, move VARCHAR(16) NOT NULL,"
    " d_own_on_hand BIGINT NOT NULL, d_own_reserved BIGINT NOT NULL,"
    " d_supplier_reserved BIGINT NOT NULL, d_supplier_reported BIGINT NOT NULL,"
    " reason VARBINARY(255) NULL, at BIGINT NOT NULL, batch_id BIGINT UNSIGNED NOT NULL,"
    " KEY sku (sku), KEY order_id (order_id)) ENGINE=InnoDB",
    "CREATE TABLE batch_log (batch_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
    " node VARCHAR(64) NOT NULL, state VARCHAR(16) NOT NULL, at BIGINT NOT NULL) ENGINE=InnoDB",
    "CREATE TABLE boots (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " node VARCHAR(64) NOT NULL, at BIGINT NOT NULL) ENGINE=InnoDB",
    "CREATE TABLE purchase_jobs (order_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " sku VARBINARY(64) NOT NULL, supplier_id VARBINARY(64) NULL, offer_id BIGINT NULL,"
    " spec_id VARBINARY(64) NULL, sku_id BIGINT NULL, qty INT NOT NULL,"
    " state VARCHAR(16) NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " KEY state (state)) ENGINE=InnoDB",
    "CREATE TABLE alerts (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " kind VARCHAR(32) NOT NULL, sku VARBINARY(64) NOT NULL, order_id VARBINARY(64) NULL,"
    " reason VARBINARY(255) NOT NULL, at BIGINT NOT NULL, node VARCHAR(64) NULL,"
    " batch_id BIGINT UNSIGNED NULL, KEY at (at)) ENGINE=InnoDB",
    "CREATE TABLE supplier (supplier_id VARBINARY(64) NOT NULL PRIMARY KEY,"
    " trust DOUBLE NOT NULL, trust_ceiling DOUBLE NOT NULL, event_mode TINYINT NOT NULL,"
    " event_trust DOUBLE NOT NULL, updated_at BIGINT NOT NULL) ENGINE=InnoDB",
]


def make_v2(db):
    now = int(time.time() * 1000)
    for sql in V2_DDL:
        db.query(sql)
    db.query("INSERT INTO schema_version VALUES (1, %s), (2, %s)", (now, now))
    db.query("INSERT INTO sku (sku, own_on_hand, own_reserved, mapping, updated_at)"
             " VALUES ('mig-a', 10, 3, 'none', %s)", (now,))
    cols = ("order_id, sku, qty, status, from_own, from_supplier, available, created_at,"
            " updated_at, hold_expires_at")
    db.query("INSERT INTO orders (" + cols + ") VALUES"
             " ('mig-o1', 'mig-a', 2, 'held', 2, 0, 8, %s, %s, %s),"
             " ('mig-o2', 'mig-a', 1, 'confirmed', 1, 0, 7, %s, %s, NULL)",
             (now, now, now + 600000, now, now))
    db.query("INSERT INTO purchase_jobs (order_id, sku, qty, state, created_at, updated_at)"
             " VALUES ('mig-old', 'mig-a', 1, 'done', %s, %s)", (now, now))


def primary_key(db, table):
    rows = db.query("SHOW KEYS FROM `%s` WHERE Key_name = 'PRIMARY'" % table)
    return [r["Column_name"] for r in sorted(rows, key=lambda r: r["Seq_in_index"])]


def check_v3(db):
    """The latest schema: 3 (orders of several lines), 4 (alerts.ack), 5
    (a refused cart's answer kept with its decision), 6 (a supplier's
    check_before_confirm) and 7 (orders.load_key and its index: what startup reads)."""
    assert db.query("SELECT MAX(version) AS v FROM schema_version")[0]["v"] == 7
    assert [r["version"] for r in db.query("SELECT version FROM schema_version ORDER BY 1")] \
        == [1, 2, 3, 4, 5, 6, 7]
    rows = db.query("SHOW KEYS FROM orders WHERE Key_name = 'load_key'")
    assert [r["Column_name"] for r in rows] == ["load_key"], rows
    # A live line sorts after every cutoff, an ended one at its last change.
    rows = db.query("SELECT order_id, status, from_own, from_supplier, supplier_settled,"
                    " updated_at, load_key FROM orders")
    for r in rows:
        st = r["status"].decode() if isinstance(r["status"], bytes) else r["status"]
        live = st in ("held", "confirmed") or (st == "purchased" and r["from_own"] > 0) or \
            (st in ("purchased", "shipped") and r["from_supplier"] > 0 and
             r["supplier_settled"] == 0)
        assert r["load_key"] == (2 ** 63 - 1 if live else r["updated_at"]), r
    cols = {r["Field"]: r for r in db.query("SHOW COLUMNS FROM supplier")}
    assert "check_before_confirm" in cols, cols
    assert cols["check_before_confirm"]["Null"] == "NO", cols["check_before_confirm"]
    cols = {r["Field"] for r in db.query("SHOW COLUMNS FROM alerts")}
    assert {"acked_at", "acked_by", "ack_note"} <= cols, cols
    assert db.query("SHOW KEYS FROM alerts WHERE Key_name = 'open_alerts'"), \
        "alerts has no index of open alerts"
    cols = [r["Field"] for r in db.query("SHOW COLUMNS FROM cart_decisions")]
    assert cols == ["order_id", "decision", "at_ms", "err_code", "err_line", "err_sku",
                    "err_available"], cols
    assert primary_key(db, "orders") == ["order_id", "line_no"]
    assert primary_key(db, "purchase_jobs") == ["order_id", "line_no"]
    assert primary_key(db, "cart_decisions") == ["order_id"]
    assert db.query("SHOW KEYS FROM orders WHERE Key_name = 'sku_status'"), \
        "orders lost its sku_status index"


def test_v2_database_migrates_to_v3(make_db, make_stockd):
    db = make_db("v2")
    make_v2(db)
    s = make_stockd(db=db, name="mig")
    check_v3(db)
    old = db.orders("order_id IN ('mig-o1','mig-o2')")
    assert {k: (r["line_no"], r["n_lines"]) for k, r in old.items()} == {
        "mig-o1": (0, 1), "mig-o2": (0, 1)}
    job = db.query("SELECT * FROM purchase_jobs")
    assert [(j["order_id"], j["line_no"], j["state"]) for j in job] == [("mig-old", 0, "done")]

    c = s.client()
    o1 = c.ok("order.get", {"order_id": "mig-o1"})
    check_order_map(o1)
    assert (o1["status"], o1["qty"], o1["sku"]) == ("held", 2, "mig-a")
    assert c.ok("stock.get", {"sku": "mig-a"})["available"] == 7

    # A change of an old row is an upsert on (order_id, line_no): no second row.
    assert c.ok("confirm", {"order_id": "mig-o1"})["status"] == "confirmed"
    assert c.ok("release", {"order_id": "mig-o2"})["status"] == "released"
    # A new order is written as line 0 of one line.
    assert c.ok("reserve", {"order_id": "mig-o3", "sku": "mig-a", "qty": 4})["status"] \
        == "confirmed"
    rows = db.query("SELECT order_id, line_no, n_lines, status FROM orders ORDER BY order_id")
    assert [(r["order_id"], r["line_no"], r["n_lines"], r["status"]) for r in rows] == [
        ("mig-o1", 0, 1, "confirmed"), ("mig-o2", 0, 1, "released"),
        ("mig-o3", 0, 1, "confirmed")]
    audit(db)
    c.close()

    # Started again on the migrated database: no second migration, same state.
    s.restart()
    check_v3(db)
    c = s.client()
    assert c.ok("order.get", {"order_id": "mig-o3"})["status"] == "confirmed"
    assert c.ok("stock.get", {"sku": "mig-a"})["available"] == 4
    c.close()


def test_v4_step_runs_again_after_a_cut(make_db, make_stockd):
    """An alert written before schema 4 is open after it; the step cut short
    (its version row missing) runs again without error."""
    db = make_db("v4")
    s = make_stockd(db=db, name="mig4")
    now = int(time.time() * 1000)
    db.query("INSERT INTO alerts (kind, sku, order_id, reason, at) VALUES"
             " ('purchase_failed', 'mig-a', 'mig-o9', 'old alert', %s)", (now,))
    s.stop()
    # Cut short during step 4: its version row (and so every later one) missing.
    db.query("DELETE FROM schema_version WHERE version >= 4")
    s.start()
    check_v3(db)
    row = db.query("SELECT acked_at, acked_by FROM alerts WHERE order_id = 'mig-o9'")[0]
    assert (row["acked_at"], row["acked_by"]) == (None, None)


def test_fresh_database_is_v3(db, make_stockd):
    make_stockd(db=db, name="fresh")
    check_v3(db)
    assert db.query("SELECT COUNT(*) AS n FROM cart_decisions")[0]["n"] == 0
