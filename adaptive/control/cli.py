"""`adaptive`: the command line. Each subcommand lives in its own module with `add_parser` and `run`.

Exit codes, for every subcommand: 0 done, 1 refused or failed (the reason on stderr), 2 usage or
configuration error. Each subcommand's `--help` is written for the admin: `command` makes its parser
with a description, examples and the exit codes that command gives.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from adaptive import __version__
from adaptive import config as config_module
from adaptive.filters.rules import FilterError

# Subcommand modules under adaptive.control, in the order `adaptive --help` lists them.
COMMANDS = ["run", "check", "replay", "check_config", "ruleset",
            "ban", "unban", "list_", "status", "explain", "reload", "import_"]


DESCRIPTION = """\
adaptive follows the Postfix and Dovecot logs, reads each line with declarative filters into events
(failed logins, unknown recipients, relay attempts, protocol abuse, spam bursts), scores each client
address and bans offenders in the kernel with nftables timed sets, in a table of its own (inet
adaptive). It never bans the allowlist, loopback or this host's own addresses.

Try the filters and the scoring on a log first (check, replay), then run the daemon (run, or the
systemd unit); ban, unban, list, status, explain and reload talk to the running daemon over its
control socket (root only, or the [control] group). Each command has its own --help."""

EXAMPLES = [
    "adaptive check /var/log/mail.log      # what the filters make of a log",
    "adaptive replay /var/log/mail.log     # what it would have banned",
    "adaptive status                       # what the running daemon does",
    "adaptive ban 203.0.113.7 --for 7d     # ban an address for a week",
]

# The exit codes every command shares; each names what its own 1 and 2 mean.
EXIT_USAGE = "a usage error (a bad option or argument) or a configuration error: nothing done"
EXIT_UNREACHABLE = "the daemon refused or failed (the reason on stderr), or cannot be reached"
WIDTH = 78      # an 80-column terminal, as argparse fills the options' help


def _fill(text: str) -> str:
    """Each paragraph of `text` filled to WIDTH columns, as RawDescriptionHelpFormatter prints it."""
    paragraphs = textwrap.dedent(text).strip().split("\n\n")
    return "\n\n".join(textwrap.fill(" ".join(p.split()), WIDTH) for p in paragraphs)


def epilog(examples: Sequence[str], exits: Sequence[tuple[int, str]]) -> str:
    """The end of a command's help: its examples, then its exit codes, one a line."""
    lines = ["examples:", *(f"  {example}" for example in examples), "", "exit status:"]
    for code, meaning in exits:
        wrapped = textwrap.wrap(meaning, WIDTH - 6)
        lines.append(f"  {code:<3} {wrapped[0]}")
        lines += [f"      {more}" for more in wrapped[1:]]
    return "\n".join(lines)


def command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, *, summary: str, description: str,
            examples: Sequence[str], exits: Sequence[tuple[int, str]]) -> argparse.ArgumentParser:
    """A subcommand's parser, its help written for an admin: `summary` is its line in `adaptive
    --help`; `description` (paragraphs, filled here), 2 to 4 `examples` and the `exits` it gives
    are what `adaptive NAME --help` shows."""
    return sub.add_parser(name, help=summary, description=_fill(description), epilog=epilog(examples, exits),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """The config options every subcommand that reads the configuration takes."""
    parser.add_argument("-c", "--config", action="append", type=Path, default=[], metavar="FILE",
                        help="configuration file; give several, later ones override earlier ones key by "
                             f"key (default {config_module.DEFAULT_CONFIG})")
    parser.add_argument("--dropins", type=Path, default=config_module.DEFAULT_DROPINS, metavar="DIR",
                        help="directory of *.toml drop-ins read after the -c files "
                             f"(default {config_module.DEFAULT_DROPINS}; '' for none)")


def load_config(args: argparse.Namespace) -> config_module.Config:
    dropins = args.dropins if str(args.dropins) not in ("", ".") else None
    return config_module.load(args.config, dropins)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptive", description=_fill(DESCRIPTION), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog(EXAMPLES, [(0, "done (output cut short by its reader, as by `| head`, is no error)"),
                                 (1, "refused or failed: the reason is on stderr"), (2, EXIT_USAGE)]))
    parser.add_argument("--version", action="version", version=f"adaptive {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"adaptive.control.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
        # Output that fit in the buffer meets a closed pipe here, not at exit where it cannot be caught.
        sys.stdout.flush()
        return status
    except (config_module.ConfigError, FilterError) as e:
        for problem in e.problems:
            print(f"adaptive: {problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped reading (`adaptive check --json log | head`): it has what it wanted, so
        # no error, and nothing more for the interpreter to fail on when it flushes stdout at exit.
        _discard_stdout()
        return 0
    except KeyboardInterrupt:
        return 130


def _discard_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that what is left in its buffer goes nowhere quietly."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return          # not a file (a test's capture): nothing is flushed to a pipe at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
