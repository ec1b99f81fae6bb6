"""`adaptive ban`: ban addresses and prefixes now, typed or read from a file (a blocklist import).

Each target is checked here first: a target typed on the command line that is not an address or prefix
stops the command (exit 2, nothing sent); a bad line of a file is reported with its line number and the
good lines are still banned. The targets go to the daemon in requests of up to `BATCH`. The daemon refuses
loopback always, and an allowlisted target unless `--force`.

Exit 0 when every target was banned; 1 when any was refused or any line was bad (the others are
banned), or the daemon cannot be reached; 2 for a usage error.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adaptive.wire import Refusal

# Targets in one request: a longer list goes in parts of this size, so that no request nears the
# socket's size limit and the daemon reads its logs between them (each part takes it about a second).
BATCH = 100_000


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import command
    from adaptive.control.client import add_client_options
    p = command(sub, "ban", summary="ban addresses or prefixes now", description="""
        Ban addresses or prefixes now, typed or read from a file (a blocklist: one address or prefix a
        line, # comments; 100,000 lines take about a second). The running daemon puts them in the
        kernel and records them in its state, as manual bans: `adaptive list` and `adaptive explain`
        show them with their reason.

        A ban lasts as long as --for says, at most ten years. --for permanent bans until `adaptive
        unban`: the kernel holds it without a timeout, and the state puts it back after a restart or
        a flushed ruleset; list and explain show it as permanent. Without --for, a first ban's length
        in the daemon's configuration ([decisions] ban_base, or [decisions.reasons.manual] when no
        --reason is given). Loopback is never banned; an allowlisted target or one of this host's
        own addresses is refused unless --force (own addresses even then).""",
        examples=["adaptive ban 203.0.113.7 2001:db8:1:2::/64 --for 7d --reason honeypot",
                  "adaptive ban 198.51.100.0/24 --for permanent",
                  "adaptive ban --from-file blocklist.txt --for 1d --reason \"drop list\""],
        exits=[(0, "every target was banned"),
               (1, "a target was refused or a line of the file was bad (the others are banned), or the "
                   "daemon failed or cannot be reached"),
               (2, "a usage error: a target that is no address or prefix, or a bad --for (nothing sent)")])
    p.add_argument("targets", nargs="*", metavar="ADDR|PREFIX", help="an address (192.0.2.7, 2001:db8::7) "
                   "or prefix (203.0.113.0/24, 2001:db8:1::/64)")
    p.add_argument("--for", dest="duration", type=_duration, metavar="DURATION",
                   help="how long: 90s, 10m, 4h, 7d, 1w, 1h30m or plain seconds, at most 3650d; or "
                        "permanent (also: forever), a ban without end, until unbanned (default: the "
                        "daemon's ban length)")
    p.add_argument("--reason", metavar="TEXT", help="why, shown by list and explain (default: manual)")
    p.add_argument("--from-file", metavar="FILE", help="also ban every address or prefix in FILE, one a line "
                   "('-' for standard input; blank lines and # comments skipped)")
    p.add_argument("--force", action="store_true", help="ban an allowlisted target too (loopback never)")
    add_client_options(p)
    p.set_defaults(run=run)


def _duration(text: str) -> float:
    from adaptive.durations import parse_duration
    try:
        return parse_duration(text, permanent=True)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from adaptive.addresses import canonical
    from adaptive.control.client import call
    from adaptive.control.targets import read_lines
    from adaptive.durations import format_duration

    if not args.targets and args.from_file is None:
        print("adaptive ban: give addresses or prefixes, or --from-file FILE", file=sys.stderr)
        return 2
    targets: list[str] = []
    typos = []
    for text in args.targets:
        try:
            targets.append(canonical(text))
        except ValueError:
            typos.append(text)
    if typos:
        for text in typos:
            print(f"adaptive ban: {text!r} is not an IP address or prefix; nothing banned", file=sys.stderr)
        return 2

    bad = 0
    if args.from_file is not None:
        name = "<stdin>" if args.from_file == "-" else args.from_file
        try:
            with (sys.stdin if args.from_file == "-" else open(args.from_file, encoding="utf-8",
                                                               errors="replace")) as f:
                for number, target, problem in read_lines(f):
                    if target is None:
                        print(f"adaptive: {name}:{number}: {problem}", file=sys.stderr)
                        bad += 1
                    else:
                        targets.append(target)
        except OSError as e:
            print(f"adaptive: {name}: cannot read: {e.strerror}", file=sys.stderr)
            return 1

    targets = list(dict.fromkeys(targets))     # once each, whichever part it would fall in
    banned: list[str] = []
    refused: list[Refusal] = []
    duration = args.duration
    for start in range(0, len(targets), BATCH):
        sent = "permanent" if args.duration == math.inf else args.duration
        status, result = call(args, "ban", targets=targets[start:start + BATCH], duration=sent,
                              reason=args.reason, force=args.force)
        if status:
            if start:
                print(f"adaptive: {len(banned)} banned before that; the last {len(targets) - start} not sent",
                      file=sys.stderr)
            return status
        banned += result.get("banned", [])
        refused += result.get("refused", [])
        duration = result.get("duration", duration)
    for item in refused:
        print(f"adaptive: not banned {item.get('target')}: {item.get('reason')}", file=sys.stderr)
    if args.from_file is not None:
        print(f"{len(banned)} banned, {len(refused)} refused, {bad} bad line{'s' if bad != 1 else ''}")
    else:
        span = (" until unbanned" if duration is None and args.duration == math.inf
                else f" for {format_duration(duration)}" if duration is not None else "")
        for target in banned:
            print(f"banned {target}{span}")
    return 1 if refused or bad else 0
