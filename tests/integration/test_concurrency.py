"""200 clients x 50 reserves on 20 scarce SKUs.

Goal: 200 clients x 50 reserves of random qty 1-3
on 20 SKUs with small stock: no SKU oversold, every success reply has its
order row, every counter equals the sum over its live orders.

Method: 20 SKUs with own stock 50..300, half of them also with a manual
supplier figure (about a quarter of the 20,000 units asked for); 200
threads, each with its own connection, send 50 reserves
each (random SKU and qty 1-3, seeded; one in ten with a 60 s hold) as fast as
the replies come back; about one success in ten is released again right
away. Then MariaDB is audited: no oversell, counters equal sums over live
orders, every success has its row with the acknowledged status, refused or
deadline-expired reserves left no row, and stockd's stock.get agrees with
MariaDB. Bounded: each thread stops after 90 s. The check itself lives in
races.py, shared with the sharded cluster test (test_cluster.py).
"""
from races import two_hundred_clients


def test_200_clients_50_reserves(stockd, db):
    print(two_hundred_clients(stockd, db))
