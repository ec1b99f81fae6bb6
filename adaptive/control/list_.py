"""`adaptive list`: the live bans, with time left, reason, ban count and origin."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_UNREACHABLE, EXIT_USAGE, command
    from adaptive.control.client import add_client_options
    p = command(sub, "list", summary="list the live bans", description="""
        List the bans in force, as the running daemon's state holds them: each target (an address or
        a prefix), the time left, how many times it has been banned within [decisions] lookback, its
        origin (automatic: scored by adaptive; manual: `adaptive ban`) and its reason. The kernel
        lifts each ban at its own timeout, whether adaptive runs or not.""",
        examples=["adaptive list",
                  "adaptive list --json | jq -r .target"],
        exits=[(0, "listed (no bans is no error)"), (1, EXIT_UNREACHABLE), (2, EXIT_USAGE)])
    p.add_argument("--json", action="store_true", help="one JSON object per ban, one per line")
    add_client_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.control.client import call
    from adaptive.durations import format_duration

    status, bans = call(args, "list")
    if status:
        return status
    out = sys.stdout
    if args.json:
        for ban in bans:
            out.write(json.dumps(ban, sort_keys=True) + "\n")
        return 0
    if not bans:
        print("no bans")
        return 0
    rows = [("TARGET", "LEFT", "COUNT", "ORIGIN", "REASON")]
    rows += [(str(b.get("target", "?")), "permanent" if b.get("left") is None else format_duration(b["left"]),
              str(b.get("count", "")), str(b.get("origin", "")), str(b.get("reason") or "")) for b in bans]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4] + "\n")
    return 0
