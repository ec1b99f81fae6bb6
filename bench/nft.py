"""How fast adaptive bans, against one `nft` process per ban (what fail2ban's nftables action does).

    .venv/bin/python bench/nft.py [--bans 100000] [--processes 1000]

Runs in a network namespace of its own, created here and deleted afterwards, so the host's firewall is
never touched. Needs root, nft and python3-nftables. Prints, for 100,000 addresses: validating them into
`Ban` entries, the batched ban (one libnftables transaction), banning them all again (timeouts
replaced), listing them, re-applying the ruleset with them live, and restoring them into a fresh table;
then 1,000 bans made one `nft add element` process at a time, and the ratios.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_SECONDS, GOAL_RATIO = 1.0, 500


def addresses(count: int, first: str) -> list[str]:
    start = int(ipaddress.ip_address(first))
    return [str(ipaddress.ip_address(start + i)) for i in range(count)]


def report(what: str, seconds: float, count: int) -> float:
    print(f"{what:<62} {seconds:7.3f} s  {count / seconds:>11,.0f} bans/s")
    return seconds


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def inside(bans: int, processes: int, runs: int, as_json: bool = False) -> int:
    sys.path.insert(0, str(REPO))
    from adaptive import config as config_module
    from adaptive.nftables import Backend, Ban, Executor

    config = config_module.build({}, {})
    backend = Backend(Executor(), config)
    texts = addresses(bans, "10.0.0.0")
    print(f"table inet {config.nftables.table}, {bans:,} IPv4 addresses, timeout 1h; "
          f"median of {runs} runs where marked\n")

    def fresh() -> None:
        backend.remove()
        backend.apply()

    def median(func, setup=fresh) -> float:
        results = []
        for _ in range(runs):
            setup()
            results.append(timed(func))
        return statistics.median(results)

    fresh()
    backend.ban([Ban("192.0.2.1", 1)])  # the first ban learns how this kernel re-adds elements
    entries: list[Ban] = []
    validate = report(f"validate {bans:,} addresses into bans (inet_pton) *",
                      median(lambda: entries.extend(Ban(a, 3600) for a in texts), setup=entries.clear), bans)
    batched = report(f"ban {bans:,}: one libnftables transaction *", median(lambda: backend.ban(entries)), bans)
    report("validate + ban, end to end", validate + batched, bans)
    report(f"ban the same {bans:,} again (each timeout replaced) *",
           median(lambda: backend.ban([Ban(a, 7200) for a in texts]), setup=lambda: None), bans)
    listed: list = []
    report(f"list {bans:,} bans with their time left", timed(lambda: listed.extend(backend.list())), bans)
    assert len(listed) == bans and all(b.timeout == 7200 for b in listed), "bans lost"
    report(f"re-apply the ruleset keeping {bans:,} live bans", timed(backend.apply), bans)
    assert len(backend.list()) == bans, "re-apply lost bans"
    restore = [Ban(b.network, b.timeout, b.expires) for b in listed]
    restored = report(f"restore {bans:,} bans into a fresh table *",
                      median(lambda: backend.apply(restore=restore), setup=backend.remove), bans)
    assert len(backend.list()) == bans, "restore lost bans"

    fresh()
    one_by_one = addresses(processes, "172.16.0.0")

    def spawn() -> None:
        for address in one_by_one:
            subprocess.run(["nft", "add", "element", "inet", config.nftables.table, "ban4",
                            f"{{ {address} timeout 1h }}"], check=True)
    per_process = report(f"{processes:,} bans, one `nft add element` process each", timed(spawn), processes)
    assert len(backend.list()) == processes
    backend.remove()

    process_rate = processes / per_process
    ratio, end_to_end = bans / batched / process_rate, bans / (validate + batched) / process_rate
    print(f"\nbatched ban {bans / batched:,.0f} bans/s, {ratio:,.0f}x one `nft` process per ban "
          f"({process_rate:,.0f} bans/s); with validation {end_to_end:,.0f}x")
    verdict = {True: "met", False: "MISSED"}
    print(f"goals: {bans:,} bans under {GOAL_SECONDS:.0f} s: {verdict[batched < GOAL_SECONDS]} "
          f"({batched:.3f} s; {validate + batched:.3f} s with validation); restore under {GOAL_SECONDS:.0f} s: "
          f"{verdict[restored < GOAL_SECONDS]} ({restored:.3f} s); at least {GOAL_RATIO}x: "
          f"{verdict[ratio >= GOAL_RATIO]} ({ratio:,.0f}x; {end_to_end:,.0f}x with validation)")
    if as_json:
        print(json.dumps({"bans": bans, "batched_seconds": batched, "bans_per_s": bans / batched,
                          "validate_seconds": validate, "restore_seconds": restored,
                          "process_bans_per_s": process_rate, "ratio": ratio}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bans", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each marked figure; the median counts")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return inside(args.bans, args.processes, args.runs, args.json)
    namespace = f"adt-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        return subprocess.run(["ip", "netns", "exec", namespace, sys.executable, __file__, "--inside",
                               "--bans", str(args.bans), "--processes", str(args.processes),
                               "--runs", str(args.runs), *(["--json"] if args.json else [])]).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)


if __name__ == "__main__":
    sys.exit(main())
