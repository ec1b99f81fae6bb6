"""`adaptive reload`: have the daemon read its configuration and filters again (as `systemctl reload`
does, by SIGHUP); a configuration with errors is refused and the running one kept."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.client import add_client_options
    p = sub.add_parser("reload", help="have the daemon read its configuration and filters again",
                       description="Have the daemon read its configuration and filters again.")
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
