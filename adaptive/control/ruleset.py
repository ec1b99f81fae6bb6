"""`adaptive ruleset`: print adaptive's nftables table, have the kernel check it, or apply it.

`--print` (the default) needs no kernel: it prints the JSON payload `--apply` would send, without
the live bans (or, with `--text`, the same as an `nft -f` script). `--check` and `--apply` read the live
bans and counters and carry them over; `--check` is libnftables' dry run, so the kernel validates the
whole transaction and keeps none of it. `--remove` deletes the table, every ban in it (the state keeps
them: the daemon puts them back at its next start); the Debian package's prerm runs it on removal.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adaptive.nftables import Backend


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_USAGE, add_config_options, command
    p = command(sub, "ruleset", summary="print, check (dry run), apply or remove adaptive's nftables table",
                description="""
        Show or apply adaptive's nftables table (inet adaptive, or [nftables] table), made from the
        configuration: the ban sets, the allowlist, the rate limits, and whole-host and outbound rules
        when enabled. adaptive never touches another table.

        --print (the default) needs no kernel: the JSON payload --apply would send, without the live
        bans, or with --text the same as an `nft -f` script. --check has the kernel validate the whole
        transaction and keep none of it. --apply replaces the table atomically, every live ban keeping
        its time left and every counter its value; a table the kernel refuses changes nothing.
        --remove deletes the table and the bans in it (the state keeps them, for the next start), as
        the Debian package does when it is removed; a table of that name not made by adaptive is
        left alone.""",
        examples=["adaptive ruleset --print --text           # as nft syntax",
                  "adaptive ruleset --check -c /etc/adaptive/adaptive.toml",
                  "adaptive ruleset --apply",
                  "adaptive ruleset --remove      # after systemctl stop adaptive"],
        exits=[(0, "printed, checked, applied or removed (or there was no table to remove)"),
               (1, "the kernel refused the table (nothing changed), the table to remove is not "
                   "adaptive's, or libnftables cannot be used"),
               (2, EXIT_USAGE)])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--print", dest="mode", action="store_const", const="print",
                      help="print the JSON payload, without live bans (the default)")
    mode.add_argument("--check", dest="mode", action="store_const", const="check",
                      help="have the kernel validate the ruleset with the live bans, applying nothing")
    mode.add_argument("--apply", dest="mode", action="store_const", const="apply",
                      help="replace adaptive's table atomically, keeping live bans and counters")
    mode.add_argument("--remove", dest="mode", action="store_const", const="remove",
                      help="delete adaptive's table and the bans in it (the state keeps them; a table "
                           "not made by adaptive is left alone)")
    p.add_argument("--text", action="store_true", help="with --print: the nft text form instead of JSON")
    add_config_options(p)
    p.set_defaults(run=run, mode="print")


def run(args: argparse.Namespace) -> int:
    from adaptive.control.cli import load_config
    from adaptive.nftables.render import render_text
    from adaptive.nftables.ruleset import build_ruleset
    if args.text and args.mode != "print":
        print("adaptive: --text goes with --print", file=sys.stderr)
        return 2
    config = load_config(args)
    if args.mode == "print":
        payload = build_ruleset(config)
        sys.stdout.write(render_text(payload) if args.text else json.dumps(payload, indent=2) + "\n")
        return 0

    from adaptive.nftables import Backend, Executor, NftablesError
    from adaptive.nftables.backend import NotOurTable
    try:
        backend = Backend(Executor(), config)
        if args.mode == "remove":
            return _remove(backend)
        backend.check() if args.mode == "check" else backend.apply()
    except NotOurTable as e:
        print(f"adaptive: {e}", file=sys.stderr)
        return 1
    except NftablesError as e:
        print(f"adaptive: nftables refused the ruleset, nothing changed:\n{e}", file=sys.stderr)
        return 1
    except (ImportError, OSError) as e:
        print(f"adaptive: cannot use libnftables: {e}", file=sys.stderr)
        return 1
    done = "checked by the kernel, nothing applied" if args.mode == "check" else "applied"
    print(f"table inet {config.nftables.table}: {done}; its ban sets and their bans kept")
    return 0


def _remove(backend: Backend) -> int:
    if backend.remove():
        print(f"table inet {backend.table}: removed, with its bans (the state keeps them)")
    else:
        print(f"table inet {backend.table}: not there, nothing to remove")
    return 0
