#!/usr/bin/python3
"""Renders stockbench --mode salesnight JSON into bench/SALESNIGHT.md.

usage: salesnight_report.py RESULTS.md COMMIT COMMAND STOCKD_LINE RUN1.json [RUN2.json]

With a second run of the same seed it also says which counts came out the
same. Called by bench/salesnight.sh (tools/bench salesnight)."""
import json
import os
import platform
import sys
import time

# What differs between runs by design: time, and the run's own order ids.
TIMING = {"answers_per_s", "wall_s", "latency_us", "order_prefix"}


def pm(x):
    return "%.1f" % x


def row(name, m):
    if not m.get("available"):
        return "| %s | not available: %s |||||||||||" % (name, m.get("note", ""))
    c = m["cancelled_by"]
    if m["links_detected"]:
        det = "%.1f / %.1f (%d of %d)" % (m["detect_mean_min"], m["detect_max_min"],
                                          m["links_detected"], m["links"])
    else:
        det = "never (0 of %d)" % m["links"]
    lat = m["latency_us"]
    return ("| %s | %d | %d | %d | **%s** (%d) | %d / %d / %d / %d | **%s** (%d) | %d | %s (%d) "
            "| %s | %d | %.0f | %.2f / %.2f |" % (
                name, m["orders"], m["yes"], m["no"], pm(m["oversell_per_1000_yes"]),
                m["oversold"], c["own_short"], c["supplier_short"], c["link"], c["api"],
                pm(m["undersell_per_1000_no"]), m["undersold"], m["unsold_units_wanted"],
                pm(m["alerts_per_1000_orders"]), m["alerts"], det, m["duplicate_purchases"],
                m["answers_per_s"], lat["p50"] / 1000.0, lat["p99"] / 1000.0))


def goals(sy):
    """The issue's expectations, each checked against this run."""
    out = []

    def get(n):
        m = sy.get(n)
        return m if m and m.get("available") else None

    naive, seed, sd, chk = get("naive"), get("seed"), get("stockd"), get("stockd-checked")
    if naive:
        ok = naive["oversell_per_1000_yes"] >= 10
        out.append("- naive shows double-digit per-mille oversell: **%s** (%s‰)." % (
            "holds" if ok else "does not hold", pm(naive["oversell_per_1000_yes"])))
    if seed:
        ok = seed["oversell_per_1000_yes"] < 5
        line = "- seed shows \"nearly zero\" oversell (below 5‰): **%s** (%s‰, of which %d " \
               "cancelled for a link change)." % ("holds" if ok else "does not hold",
                                                 pm(seed["oversell_per_1000_yes"]),
                                                 seed["cancelled_by"]["link"])
        if not ok and naive and seed["oversell_per_1000_yes"] >= naive["oversell_per_1000_yes"]:
            line += (" Here the recipe oversells *more* than naive. Its sync after each order "
                     "writes 1688's `amountOnSale` into MariaDB, and that figure trails the real "
                     "one (`lag_ms`): it still shows the units this order just bought and those "
                     "other shops bought in the last minutes, so the sync undoes the conditional "
                     "UPDATE's decrement and the next order on that SKU is told yes for units that "
                     "are gone. naive's figure only goes back up at the 5-minute snapshot. The "
                     "order check catches such orders before they are bought, but after the "
                     "customer was told yes: each one is a cancellation and a support alert "
                     "(`cancelled_by.supplier_short`).")
        out.append(line)
    if chk:
        ok = chk["oversold"] == 0
        out.append("- stockd-checked shows 0 customer-visible oversell: **%s** (%d)." % (
            "holds" if ok else "does not hold", chk["oversold"]))
    elif "stockd-checked" in sy:
        out.append("- stockd-checked: **not measured**: %s." % sy["stockd-checked"].get("note"))
    if sd and seed:
        ok = sd["undersell_per_1000_no"] < seed["undersell_per_1000_no"]
        line = "- stockd's undersell is lower than seed's: **%s** (%s‰ against %s‰)." % (
            "holds" if ok else "does not hold", pm(sd["undersell_per_1000_no"]),
            pm(seed["undersell_per_1000_no"]))
        if not ok:
            line += (" stockd keeps bought units in `supplier_reserved` until a snapshot taken "
                     "`--supplier-upstream-lag-ms` after the purchase, and cuts a supplier's "
                     "trust (x0.5) after each purchase that found too little stock: both refuse "
                     "orders the supplier could still have served, which is the price of its "
                     "lower oversell. seed believes the lagging figure, so it rarely refuses "
                     "what is there; it oversells instead.")
        out.append(line)
    return out


def why(name, m):
    w = m.get("why")
    if not w:
        return []
    L = ["**%s**: cancelled orders by when they arrived: flash sale (API peak) %d of %d yes, "
         "inflation window outside it %d of %d, rest of the night %d of %d." % (
             name, w["peak"]["cancelled"], w["peak"]["yes"],
             w["inflation_outside_peak"]["cancelled"], w["inflation_outside_peak"]["yes"],
             w["rest"]["cancelled"], w["rest"]["yes"])]
    if w["top_skus"]:
        parts = []
        for t in w["top_skus"][:5]:
            ev = []
            if t.get("inflating_supplier"):
                ev.append("inflating supplier")
            if t.get("link_change"):
                ev.append("%s at min %.0f" % (t["link_change"], t["link_change_min"]))
            if "supplier_real_at_start" in t:
                ev.append("%d real at start" % t["supplier_real_at_start"])
            parts.append("SKU %d: %d (%s; %s)" % (
                t["sku"], t["cancelled"], ", ".join("%s %d" % kv for kv in t["by"].items()),
                ", ".join(ev) or "own stock only"))
        L.append("Most cancelled SKUs: " + "; ".join(parts) + ".")
    return [" ".join(L)]


def fmt(v):
    return "%.1f" % v if isinstance(v, float) else json.dumps(v)


def compare(runs):
    L = []
    a, b = runs[0]["systems"], runs[1]["systems"]
    same_night = runs[0]["night"] == runs[1]["night"]
    L.append("Second run, same seed: the night itself (SKUs, offers, every event; digest %s) "
             "was %s." % (runs[0]["night"]["digest"], "identical" if same_night else "DIFFERENT"))
    for n in runs[0]["order"]:
        if not a[n].get("available") or not b.get(n, {}).get("available"):
            continue
        diffs = []
        for k, v in a[n].items():
            if k in TIMING or k == "minutes":
                continue
            if b[n].get(k) != v:
                diffs.append(k)
        if diffs:
            keys = [k for k in diffs if k not in ("why",)]
            L.append("- %s: %d figure(s) differ: %s." % (n, len(keys), ", ".join(
                "%s %s → %s" % (k, fmt(a[n][k]), fmt(b[n][k]))
                for k in keys if not isinstance(a[n][k], (dict, list))) or
                ", ".join(keys)))
        else:
            L.append("- %s: every count the same." % n)
    return L


def main():
    results, commit, command, stockd_line = sys.argv[1:5]
    runs = [json.load(open(p)) for p in sys.argv[5:]]
    r = runs[0]
    nt, sy = r["night"], r["systems"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    L = ["# A sales night, replayed: oversell, undersell and support load\n"]
    L.append("Written by `tools/bench salesnight` (bench/salesnight.sh) on %s, commit %s, %s, "
             "%d cores (%s); MariaDB, Redis, fake1688, stockd and stockbench on this machine.\n"
             % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), commit, platform.node(),
                os.cpu_count(), cpu))
    L.append("    %s\n    %s\n" % (command, stockd_line))
    L.append("## The night\n")
    L.append(
        "Seed %d: %d SKUs (about a third own stock only, a third 1688 only, a third both), "
        "mapped to %d 1688 offers of 1–3 specs from %d suppliers; %d simulated minutes at "
        "%.0f ms of wall time each. %d customer orders: %.0f a minute, Poisson, zipf %.2f "
        "demand over the SKUs; 70 %% one line, 20 %% two, 10 %% three (carts, all or nothing); "
        "1–3 units a line. A flash sale at minute %d for %d minutes: %.0fx the orders, half of "
        "them on %d promoted SKUs. The supplier side runs on its own: other shops buy the same "
        "hot specs (half as many orders as ours), specs get restocked now and then; "
        "`amountOnSale` trails the real figure by %.0f simulated minutes (fake1688 `lag_ms`); "
        "%d of the suppliers report %.0fx their real stock from 5 minutes before the sale to 10 "
        "after it; during the sale the API answers %.1f ms later and refuses %.0f %% of calls "
        "with the app rate limit; %d links change mid-run (%d spec removed, %d price changed, "
        "%d offer offline). %d events in all.\n" % (
            nt["seed"], nt["skus"], nt["offers"], nt["suppliers"], nt["minutes"],
            nt["minute_ms"], nt["orders"], nt["orders_per_min"], nt["zipf_x100"] / 100.0,
            nt["flash_at_min"], nt["flash_min"], nt["flash_mult"], nt["flash_skus"],
            nt["lag_ms"] / 60000.0, nt["inflating_suppliers"], nt["inflation"],
            nt["peak_latency_ms"], nt["peak_qos_rate"] * 100, sum(nt["links"].values()),
            nt["links"]["spec_removed"], nt["links"]["price"], nt["links"]["offline"],
            nt["events"]))
    L.append("Systems: **naive** (5-minute snapshot into MariaDB, conditional UPDATE, buy; no "
             "lock, no check), **seed** (the recipe written faithfully: Redis lock, cached read "
             "of 60 s, conditional UPDATE, snapshot every 5 min and a sync of the offer after "
             "each order, order check after the order with rollback and a support alert, "
             "mapping validation every 30 min), **stockd** (defaults, its own supplier sync "
             "against the same fake, timers scaled to the simulated clock), **stockd-checked** "
             "(stockd with `\"check\": true` on each reserve). Every system gets the same "
             "arrival sequence and the same supplier events; fake1688 is reset to the same "
             "catalogue and fault seed before each.\n")
    L.append("## Results\n")
    L.append("| system | orders | yes | no | oversell ‰ of yes (n) | cancelled: own / stock / link "
             "/ API | undersell ‰ of no (n) | unsold units wanted | support alerts ‰ of orders "
             "(n) | link change → detection, simulated min: mean / max | duplicate purchases | "
             "answers/s | p50 / p99 ms |")
    L.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|")
    for n in r["order"]:
        L.append(row(n, sy[n]))
    L.append("\n![oversell and undersell over the night](%s)\n" %
             os.path.basename(results[:-3] + ".png"))
    L.append("## Against the goal\n")
    L += goals(sy)
    L.append("\n## Where the cancellations came from\n")
    for n in r["order"]:
        if sy[n].get("available"):
            L += why(n, sy[n])
            L.append("")
    L.append("## What is replayed exactly, and what is not\n")
    L.append(
        "The night is a pure function of the seed (`digest` in the JSON): SKUs, offers, every "
        "order, every supplier event and its simulated time. The simulator owns the clock: it "
        "plays the events one at a time in simulated-time order, paced to `--minute-ms`, and "
        "sets fake1688's manual clock (`POST /clock`) to each event's time, so the lagging "
        "`amountOnSale` depends on simulated time only; the rate-limit refusals at the peak are "
        "a seeded fault rate, not the fake's token bucket (which counts wall-clock seconds). "
        "naive and seed run entirely inside the simulator on that clock (their snapshots, "
        "validation and cache expiry are simulated-time timers; their after-order work runs "
        "before the next event): **a second run gives every one of their counts again**; only "
        "latency and answers/s vary.\n")
    stockd_runs = [m for n, m in sy.items() if n.startswith("stockd") and m.get("available")]
    if stockd_runs and all(m.get("test_clock") for m in stockd_runs):
        L.append(
            "stockd runs with `--test-clock yes`: the wall clock that decides its answers (its "
            "sync and validation rounds, `synced_at`, `purchased_at` and so the upstream-lag "
            "hold of bought units, hold expiry, alert times) stands still and only the "
            "simulator moves it. Before every event the simulator calls `test.clock` with the "
            "event's simulated time (on the scale of the flags, from stockd's clock when the "
            "system started); stockd runs each round that fell due at its own due time and "
            "answers once its 1688 calls and MariaDB writes, the checks and the purchases have "
            "settled. After an order with supplier units the simulator also waits for its "
            "purchase (order.update) before the next event. stockd decides its answers in its "
            "FIFO in the order the simulator sends them, so **a second run gives every one of "
            "its counts again** too: fake1688 draws each call's peak fault from the call itself "
            "(`keyed`), not from the order in which stockd's concurrent calls reach it, and on "
            "its test clock stockd reports an order's bought lines in line order (trust moves "
            "do not commute). What "
            "is left to chance: a checked reserve whose 1688 preview is refused so often in a "
            "row that its retries overrun the reserve's deadline is answered `unavailable` "
            "(counted in `refused_for_errors`, named in `refused_by`); the client's retry "
            "jitter decides it only in that rare case. "
            "The night runs slower than `--minute-ms` while stockd's calls (its rounds, the "
            "sync after each order, the purchases) take longer than their share of wall time, "
            "as at the flash sale's slow and refusing API; answers/s shows it.\n")
    else:
        L.append(
            "stockd ran without `--test-clock`: it decides its answers in its FIFO in the order "
            "the simulator sends them, and the simulator waits for each order's purchase "
            "(order.update, at most `--settle`) before the next event, but stockd's snapshot and "
            "validation timers run on its own wall clock (flags scaled by `--minute-ms`): "
            "whether a snapshot lands just before or just after a given event is a wall-clock "
            "race, so stockd's counts can move by a few between runs of the same seed. With "
            "`--test-clock yes` (which `--stockd-flags` prints) the simulator drives that clock "
            "and they replay exactly.\n")
    if len(runs) > 1:
        L += compare(runs)
        L.append("")
    L.append("## How to read the table\n")
    L.append(
        "- **oversell**: orders answered yes and later cancelled (own stock short, the check "
        "or purchase found too little supplier stock, the link was gone or changed, or the API "
        "kept refusing), per 1,000 yes answers. A customer was told the truth only if the yes "
        "held.\n"
        "- **undersell**: orders answered no while own stock not promised elsewhere plus the "
        "supplier units really orderable at that moment (fake1688's hidden real quantity, 0 "
        "when the spec or offer is gone, minus units this system had promised and not yet "
        "bought) covered every line, per 1,000 no answers. **unsold units wanted**: units "
        "still there at the end of the night that refused orders had asked for.\n"
        "- **support alerts**: cases a human must act on, per 1,000 orders: stockd's `alerts` "
        "rows; seed's rollback alerts and broken-mapping alerts; naive raises none, so each of "
        "its cancellations (a failed purchase somebody must handle and tell the customer "
        "about) counts as one.\n"
        "- **link change → detection**: simulated minutes from a link change at the supplier "
        "to the first time the system marks that mapping broken (seed: its validation; "
        "stockd: its `mapping_broken` alert); naive never does.\n"
        "- **duplicate purchases**: outOrderIds with more than one upstream order at fake1688 "
        "(its `idempotent` is off, so a second create would make a second order). Must be 0.\n"
        "- **answers/s** and **latency**: answers over the wall time of the night, and the time "
        "from sending an order to its answer (for the recipes: lock to commit; the after-order "
        "work is not in it). The simulator sends one order at a time at the arrival rate, so "
        "answers/s is the offered load when a system keeps up; maximum throughput is "
        "[RESULTS.md](RESULTS.md)'s job.\n")
    L.append("Raw data: `bench/out/salesnight-*.json` (per system, per simulated minute: yes, no, "
             "oversold, undersold). Tool: [README.md](README.md#sales-night).")
    open(results, "w").write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
