#!/usr/bin/env python3
"""Echo throughput and efficiency from scripts/bench-echo.sh's raw results.

Usage: scripts/echo-efficiency.py [target/bench-echo/results.csv]

Prints one markdown table: per scenario and server, the median msgs/s over the rounds (min-max)
and its ratio to the fastest peer's median, and the median messages per server CPU-second
(msgs/s divided by the server's CPU in cores, per round) and its ratio to the best peer's; then,
per scenario, tidings-smol over the faster shape of async-tungstenite-smol and over tidings-tokio.
Rounds during which other work took more than OTHER_MAX cores (default 0.15, as in bench-echo.sh)
are left out, unless all were.
"""
import csv
import os
import statistics
import sys

PEERS = [
    "tokio-tungstenite",
    "tokio-websockets",
    "fastwebsockets",
    "async-tungstenite-smol",
    "async-tungstenite-smol/local",
]
# async-tungstenite on smol in both shapes: tidings-smol is compared with the faster.
ATS = ["async-tungstenite-smol", "async-tungstenite-smol/local"]
OTHER_MAX = float(os.environ.get("OTHER_MAX", "0.15"))


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "target/bench-echo/results.csv"
    rows = [r for r in csv.DictReader(open(path)) if r["msgs_per_sec"] and r["deflate"] == "off"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    servers = list(dict.fromkeys(r["server"] for r in rows))

    def used(sc, sv):
        rs = [r for r in rows if r["scenario"] == sc and r["server"] == sv]
        return [r for r in rs if float(r["other_cpu"]) <= OTHER_MAX] or rs

    def rate(r):
        return float(r["msgs_per_sec"])

    def eff(r):
        return float(r["msgs_per_sec"]) / float(r["server_cpu"])

    print("| scenario | server | msgs/s, median (min–max) | × fastest peer | msgs per server "
          "CPU-second, median (min–max) | × best peer | rounds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for sc in scenarios:
        med, effm = {}, {}
        for sv in servers:
            rs = used(sc, sv)
            if rs:
                med[sv] = statistics.median(map(rate, rs))
                effm[sv] = statistics.median(map(eff, rs))
        peers = [p for p in PEERS if p in med]
        if not peers:
            continue
        top = max(med[p] for p in peers)
        top_eff = max(effm[p] for p in peers)
        for sv in servers:
            rs = used(sc, sv)
            if not rs:
                continue
            r, e = [rate(x) for x in rs], [eff(x) for x in rs]
            print(f"| {sc} | {sv} | {med[sv]:,.0f} ({min(r):,.0f}–{max(r):,.0f}) | "
                  f"{med[sv] / top:.2f} | {effm[sv]:,.0f} ({min(e):,.0f}–{max(e):,.0f}) | "
                  f"{effm[sv] / top_eff:.2f} | {len(rs)} |")
        if "tidings-smol" in med:
            parts = []
            ats = [a for a in ATS if a in med]
            if ats:
                best = max(ats, key=med.get)
                parts.append(f"tidings-smol / {best} "
                             f"**{med['tidings-smol'] / med[best]:.2f}**")
            if "tidings-tokio" in med:
                parts.append(f"tidings-smol / tidings-tokio "
                             f"**{med['tidings-smol'] / med['tidings-tokio']:.2f}**")
            print(f"| {sc} | {'; '.join(parts)} | | | | | |")


if __name__ == "__main__":
    main()
