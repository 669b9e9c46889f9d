"""Hoodie race: three buyers, two hoodies, the same instant.

Goal: stock 2, three clients on three connections
reserve the same SKU at the same instant; over 1,000 rounds with fresh stock
every round gives exactly 2 `confirmed` and 1 `insufficient`, and MariaDB's
rows agree with the replies.

Method: 1,000 SKUs with own_on_hand 2 are created up front (pipelined
sku.put). Three threads, each with its own connection, meet at a barrier at
the start of every round and then write a pre-encoded reserve (qty 1) for
that round's SKU in one sendall, so the three requests reach stockd within
microseconds of each other. After all rounds, MariaDB is checked: exactly the
two confirmed order_ids of each round have rows (status confirmed, from_own 1),
the refused one has none, each SKU has own_reserved 2, and the ledger has one
reservation per confirmed order. Bounded: ITEST_HOODIE_ROUNDS (default 1000),
fails if the rounds take longer than 120 s. The race itself lives in
races.py, shared with the sharded cluster test (test_cluster.py).
"""
import os

from races import hoodie_race

ROUNDS = int(os.environ.get("ITEST_HOODIE_ROUNDS", "1000"))


def test_hoodie_race(stockd, db):
    print(hoodie_race(stockd, db, ROUNDS))
