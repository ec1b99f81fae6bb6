"""`adaptive list`: the live bans, with when each was made and ends, reason, ban count and origin.

The daemon sends every live ban (`adaptive.wire.BanEntry`); the filters (`--reason`, `--origin`,
`--match`) and the order (`--sort`) are applied here, to the table and to `--json` alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from adaptive.addresses import Network, parse_network

# What --sort orders by, each a key of a ban; ties go oldest first.
SORTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "banned": lambda b: b.get("start") or 0.0,
    "expires": lambda b: (b.get("end") is None, b.get("end") or 0.0),      # permanent ones last
    "address": lambda b: _address_key(str(b.get("target", ""))),
    "reason": lambda b: str(b.get("reason") or ""),
}
TIME = "%Y-%m-%d %H:%M"      # local time: to the minute is what an admin compares with a log


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_UNREACHABLE, command
    from adaptive.control.client import add_client_options
    p = command(sub, "list", summary="list the live bans", description="""
        List the bans in force, as the running daemon's state holds them: each target (an address or
        a prefix), when it was banned and when it expires (local time, or permanent: until unbanned),
        the time left, how many times it has been banned within [decisions] lookback, its origin
        (automatic: scored by adaptive; manual: `adaptive ban`, or found in the kernel by a start
        whose state was lost, reason adopted) and its reason (score, slow, spam_burst, harvest,
        dictionary, account, subnet, or the text of `adaptive ban --reason`). The kernel lifts each
        ban at its own timeout, whether adaptive runs or not.

        --reason, --origin and --match keep the bans that pass all of them; --sort orders them (oldest
        first by default). --json prints the same bans as one object each, with the times as Unix
        times.""",
        examples=["adaptive list --match 203.0.113.0/24           # inside it, or covering it",
                  "adaptive list --origin manual --sort expires",
                  "adaptive list --reason score --reason slow --sort address",
                  "adaptive list --json | jq -r .target"],
        exits=[(0, "listed (no bans, or none that match, is no error)"), (1, EXIT_UNREACHABLE),
               (2, "a usage error (a --match that is no address or prefix) or a configuration error")])
    p.add_argument("--reason", action="append", default=[], metavar="REASON",
                   help="only bans for this reason, exactly as listed; give it again for any of several")
    p.add_argument("--origin", action="append", default=[], metavar="ORIGIN",
                   help="only bans of this origin: automatic or manual; give it again for any of several")
    p.add_argument("--match", action="append", default=[], type=_network, metavar="ADDR|PREFIX",
                   help="only bans that overlap it: the bans inside a prefix (203.0.113.0/24) and those that "
                        "cover it (a /24 ban matches an address in it); give it again for any of several")
    p.add_argument("--sort", choices=list(SORTS), default="banned",
                   help="order by when banned (the default, oldest first), when it expires (soonest first, "
                        "permanent last), address, or reason")
    p.add_argument("-r", "--reverse", action="store_true", help="the other way round")
    p.add_argument("--json", action="store_true", help="one JSON object per ban, one per line")
    add_client_options(p)
    p.set_defaults(run=run)


def _network(text: str) -> Network:
    try:
        return parse_network(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from adaptive.control.client import call

    status, bans = call(args, "list")
    if status:
        return status
    shown = select(bans, reasons=args.reason, origins=args.origin, networks=args.match)
    shown.sort(key=SORTS[args.sort], reverse=args.reverse)
    out = sys.stdout
    if args.json:
        for ban in shown:
            out.write(json.dumps(ban, sort_keys=True) + "\n")
        return 0
    if not shown:
        print("no bans" if not bans else f"no bans match (of {len(bans)})")
        return 0
    table(shown, out)
    return 0


def select(bans: Sequence[dict[str, Any]], reasons: Sequence[str] = (), origins: Sequence[str] = (),
           networks: Sequence[Network] = ()) -> list[dict[str, Any]]:
    """The bans that pass every filter given: a reason among `reasons`, an origin among `origins`, a
    target that overlaps one of `networks`."""
    chosen = []
    for ban in bans:
        if reasons and ban.get("reason") not in reasons:
            continue
        if origins and ban.get("origin") not in origins:
            continue
        if networks:
            try:
                target = parse_network(str(ban.get("target")))
            except ValueError:
                continue
            if not any(target.version == n.version and target.overlaps(n) for n in networks):
                continue
        chosen.append(ban)
    return chosen


def table(bans: Sequence[dict[str, Any]], out: TextIO) -> None:
    from adaptive.durations import format_duration

    rows = [("TARGET", "BANNED", "EXPIRES", "LEFT", "COUNT", "ORIGIN", "REASON")]
    for b in bans:
        end, left = b.get("end"), b.get("left")
        rows.append((str(b.get("target", "?")), _when(b.get("start")),
                     "permanent" if end is None else _when(end),
                     "-" if left is None else format_duration(left),
                     str(b.get("count", "")), str(b.get("origin", "")), str(b.get("reason") or "")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
                  + "\n")


def _when(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return time.strftime(TIME, time.localtime(value))
    return "?"


def _address_key(target: str) -> tuple[int, int, int]:
    try:
        network = parse_network(target)
    except ValueError:
        return (9, 0, 0)
    return (network.version, int(network.network_address), network.prefixlen)

