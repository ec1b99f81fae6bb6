"""What keeping the table true costs: the daemon's look at it, and a repair after another tool's flush.

    .venv/bin/python bench/repair.py [--bans 100000] [--looks 200]

Runs in a network namespace of its own, created here and deleted afterwards. Prints, with 0, 1,000 and
100,000 live bans: one look (`Backend.missing`: the names of the sets and chains, what the daemon does
every second), its CPU per hour, and side by side the look a script would make (an `nft -t list table`
process, what fail2ban's `actioncheck` does before a ban); then the repair after `nft flush ruleset`:
the table applied again with every ban of the state, in one transaction; and the listing of the ban
sets that a reconcile makes (every `nftables.reconcile_every` seconds, off the daemon's loop).
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from nft import addresses  # noqa: E402


def inside(bans: int, looks: int, as_json: bool) -> int:
    sys.path.insert(0, str(REPO))
    from adaptive import config as config_module
    from adaptive.nftables import Backend, Ban, Executor

    config = config_module.build({}, {})
    backend = Backend(Executor(), config)
    backend.remove()
    backend.apply()
    figures: dict = {}
    for count in sorted({0, min(1_000, bans), bans}):
        backend.remove()
        backend.apply()
        restore = [Ban(a, 3600) for a in addresses(count, "10.0.0.0")]
        backend.ban(restore)
        walls, cpus = [], []
        for _ in range(looks):
            wall, cpu = time.perf_counter(), time.process_time()
            assert backend.missing() == []
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        look, cpu = statistics.median(walls), statistics.mean(cpus)
        started = time.perf_counter()
        subprocess.run(["nft", "-t", "list", "table", "inet", config.nftables.table], check=True,
                       capture_output=True)
        script = time.perf_counter() - started
        started = time.perf_counter()
        kernel = {b.key: b.left for b in backend.list()}          # what a reconcile lists, off the loop
        listing = time.perf_counter() - started
        assert len(kernel) == count
        subprocess.run(["nft", "flush", "ruleset"], check=True)
        assert backend.missing() == ["table"]
        started = time.perf_counter()
        backend.apply(restore=restore)
        repair = time.perf_counter() - started
        assert len(backend.list()) == count, "the repair lost bans"
        print(f"{count:>7,} bans: a look {look * 1000:6.2f} ms ({cpu * 3600:5.1f} s CPU an hour at one "
              f"a second); an `nft -t list table` process {script * 1000:7.1f} ms ({script / look:5.0f}x); "
              f"repair after `flush ruleset` {repair:.3f} s; a reconcile's listing {listing:.3f} s")
        figures[count] = {"look_seconds": look, "look_cpu_seconds": cpu, "script_seconds": script,
                          "repair_seconds": repair, "listing_seconds": listing}
    backend.remove()
    if as_json:
        print(json.dumps({"looks": looks, "by_bans": figures}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bans", type=int, default=100_000)
    parser.add_argument("--looks", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return inside(args.bans, args.looks, args.json)
    namespace = f"adt-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        return subprocess.run(["ip", "netns", "exec", namespace, sys.executable, __file__, "--inside",
                               "--bans", str(args.bans), "--looks", str(args.looks),
                               *(["--json"] if args.json else [])]).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)


if __name__ == "__main__":
    sys.exit(main())
