"""`adaptive status`: what the daemon is doing: version, uptime, each source and how far behind it is,
events and decisions counted, bans live in the kernel, and whether it runs dry."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_UNREACHABLE, EXIT_USAGE, command
    from adaptive.control.client import add_client_options
    p = command(sub, "status", summary="show what the daemon is doing", description="""
        Say what the running daemon is doing: its version and uptime, whether it enforces or runs
        dry, each log it follows and how far behind it is (or why it cannot read it), the events and
        decisions counted, and the bans in the kernel beside those in the state, with a warning when
        they disagree or the state's disk refuses writes. It answers within a second, however many
        bans there are.""",
        examples=["adaptive status",
                  "adaptive status --json | jq .sources"],
        exits=[(0, "the daemon answered (warnings included)"), (1, EXIT_UNREACHABLE), (2, EXIT_USAGE)])
    p.add_argument("--json", action="store_true", help="the status as one JSON object")
    add_client_options(p)
    p.set_defaults(run=run)


# What the daemon reports, in the order shown; any other key is shown after them as it is.
_SHOWN = ("version", "uptime", "dry_run", "sources", "events", "decisions", "bans", "bans_state", "disagree",
          "state_error", "state_unwritten", "kernel_counting")


def run(args: argparse.Namespace) -> int:
    from adaptive.control.client import call, print_json
    from adaptive.durations import format_duration

    status, result = call(args, "status")
    if status:
        return status
    if args.json:
        print_json(result)
        return 0
    out = sys.stdout
    mode = "dry run: bans are recorded, not applied" if result.get("dry_run") else "enforcing"
    out.write(f"adaptive {result.get('version', '?')}, up {format_duration(result.get('uptime', 0))}, {mode}\n")
    sources = result.get("sources", [])
    if sources:
        out.write("sources:\n")
        rows = [(str(s.get("name", "?")), str(s.get("path", "")),
                 "waiting" if s.get("position") is None else f"position {s['position']}",
                 f"failing: {s['error']}" if s.get("error") else f"lag {_bytes(s.get('lag'))}")
                for s in sources]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            out.write("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[3] + "\n")
    kernel = "?" if result.get("bans") is None else result["bans"]
    if result.get("kernel_counting"):
        kernel = f"{kernel} (counted before; counting them again)"
    out.write(f"events {result.get('events', 0)}, decisions {result.get('decisions', 0)}, "
              f"bans in the kernel {kernel}, in the state {result.get('bans_state', '?')}\n")
    if result.get("disagree"):
        out.write(f"warning: the kernel and the state disagree: {result['disagree']}\n")
    if result.get("state_error"):
        out.write(f"warning: the state database cannot be written ({result['state_error']}): "
                  f"{result.get('state_unwritten', '?')} change(s) wait in memory\n")
    for key, value in result.items():
        if key not in _SHOWN:
            out.write(f"{key.replace('_', ' ')}: {value}\n")
    return 0


def _bytes(value: object) -> str:
    if not isinstance(value, (int, float)):
        return "?" if value is None else str(value)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{int(value)} B"
