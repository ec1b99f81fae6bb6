"""`adaptive explain`: why an address is (or is not) banned: its score, the recent events that made it,
its past bans, and the allowlist entry that covers it."""

from __future__ import annotations

import argparse
import sys
import time


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_UNREACHABLE, EXIT_USAGE, command
    from adaptive.control.client import add_client_options
    p = command(sub, "explain", summary="say why an address is or is not banned", description="""
        Say why an address (or prefix) is banned or not: its live ban (reason, time left, origin),
        its score and the threshold, the filter rules whose events made them, its past bans, and the
        allowlist entry that covers it, if any. An IPv6 address is scored, and banned, by its /64.""",
        examples=["adaptive explain 203.0.113.7",
                  "adaptive explain 2001:db8:1:2::7",
                  "adaptive explain --json 203.0.113.7 | jq .history"],
        exits=[(0, "explained (banned or not)"), (1, EXIT_UNREACHABLE), (2, EXIT_USAGE)])
    p.add_argument("address", metavar="ADDR", help="an address (or prefix)")
    p.add_argument("--json", action="store_true", help="the explanation as one JSON object")
    add_client_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.addresses import canonical
    from adaptive.control.client import call, print_json
    from adaptive.durations import format_duration

    try:
        address = canonical(args.address)
    except ValueError:
        print(f"adaptive explain: {args.address!r} is not an IP address or prefix", file=sys.stderr)
        return 2
    status, result = call(args, "explain", address=address)
    if status:
        return status
    if args.json:
        print_json(result)
        return 0
    out = sys.stdout
    target = result.get("target", address)
    ban = result.get("ban")
    if ban:
        left = ban.get("left")
        length = "permanent: until unbanned" if left is None else f"{format_duration(left)} left"
        out.write(f"{target} is banned: {ban.get('reason') or 'no reason given'}, {length} "
                  f"({ban.get('origin', '?')})\n")
    else:
        out.write(f"{target} is not banned\n")
    if result.get("allowlisted"):
        out.write(f"allowlisted by {result['allowlisted']}: never banned automatically\n")
    if result.get("score") is not None:
        threshold = result.get("threshold")
        out.write(f"score {result['score']:g}" + (f" (a ban at {threshold:g})" if threshold is not None else "")
                  + "\n")
    rules = result.get("rules") or {}
    out.write(f"rules that made it: {len(rules) or 'none'}\n")
    for rule, count in sorted(rules.items(), key=lambda kv: (-kv[1], kv[0])):
        out.write(f"  {count:>6}  {rule}\n")
    history = result.get("history", [])
    out.write(f"past bans: {len(history) or 'none'}\n")
    for h in history:
        length = h.get("duration")
        out.write(f"  {_when(h.get('start'))}  {format_duration(length) if length is not None else 'permanent'}"
                  f"  {h.get('origin', '')}  {h.get('reason') or ''}\n")
    return 0


def _when(value: object) -> str:
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return str(value) if value is not None else "?"
