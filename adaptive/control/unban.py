"""`adaptive unban`: lift bans now, and forgive the scores, so the targets start again from nothing."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.client import add_client_options
    p = sub.add_parser("unban", help="lift bans and forgive the scores",
                       description="Lift bans now and forgive the scores of the targets.")
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
