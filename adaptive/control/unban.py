"""`adaptive unban`: lift bans now, and forgive the scores, so the targets start again from nothing."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_UNREACHABLE, EXIT_USAGE, command
    from adaptive.control.client import add_client_options
    p = command(sub, "unban", summary="lift bans and forgive the scores", description="""
        Lift bans now, from the kernel and the state, and forgive the targets' scores, so that they
        start again from nothing. Give each target as it was banned (the prefix 203.0.113.0/24 lifts
        the prefix's ban, not the bans of the addresses in it; `adaptive list` shows them). A target
        that was not banned is said, and its score forgiven all the same.""",
        examples=["adaptive unban 203.0.113.7",
                  "adaptive unban 2001:db8:1:2::/64 198.51.100.0/24",
                  "adaptive unban --all          # every ban, automatic and manual"],
        exits=[(0, "done (a target that was not banned is said on stdout)"),
               (1, EXIT_UNREACHABLE), (2, EXIT_USAGE)])
    p.add_argument("targets", nargs="*", metavar="ADDR|PREFIX", help="an address or prefix banned")
    p.add_argument("--all", action="store_true", help="lift every ban")
    add_client_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.addresses import canonical
    from adaptive.control.client import call

    if bool(args.targets) == args.all:
        print("adaptive unban: give addresses or prefixes, or --all (not both)", file=sys.stderr)
        return 2
    targets = []
    for text in args.targets:
        try:
            targets.append(canonical(text))
        except ValueError:
            print(f"adaptive unban: {text!r} is not an IP address or prefix; nothing unbanned", file=sys.stderr)
            return 2
    status, result = call(args, "unban", targets=targets, all=args.all)
    if status:
        return status
    unbanned = result.get("unbanned", [])
    if args.all:
        print(f"{len(unbanned)} ban{'s' if len(unbanned) != 1 else ''} lifted, scores forgiven")
        return 0
    for target in unbanned:
        print(f"unbanned {target}, score forgiven")
    for target in result.get("not_banned", []):
        print(f"{target} was not banned; score forgiven")
    return 0
