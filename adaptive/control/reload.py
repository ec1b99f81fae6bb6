"""`adaptive reload`: have the daemon read its configuration and filters again (as `systemctl reload`
does, by SIGHUP); a configuration with errors is refused and the running one kept."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_USAGE, command
    from adaptive.control.client import add_client_options
    p = command(sub, "reload", summary="have the daemon read its configuration and filters again",
                description="""
        Have the running daemon read its configuration files and filters again and apply them at
        once, as SIGHUP or `systemctl reload adaptive` does, and print what changed. A configuration
        or filter with an error is refused whole and the running one kept. Scores, bans and positions
        carry over; a change of [metrics] listen waits for the next start.""",
        examples=["adaptive check-config && adaptive reload",
                  "adaptive reload --socket /run/adaptive/control.sock"],
        exits=[(0, "reloaded"),
               (1, "the new configuration was refused (the running one is kept; the reason on "
                   "stderr), or the daemon cannot be reached"),
               (2, EXIT_USAGE)])
    add_client_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.control.client import call

    status, result = call(args, "reload")
    if status:
        return status
    print("reloaded")
    for change in (result or {}).get("changes", []):
        print(f"  {change}")
    return 0
