"""`adaptive`: the command line. Each subcommand lives in its own module with `add_parser` and `run`.

Exit codes, for every subcommand: 0 done, 1 refused or failed (the reason on stderr), 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from adaptive import __version__
from adaptive import config as config_module
from adaptive.filters.rules import FilterError

# Subcommand modules under adaptive.control, in the order `adaptive --help` lists them.
COMMANDS = ["run", "check", "replay", "check_config", "ruleset",
            "ban", "unban", "list_", "status", "explain", "reload", "import_"]


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
    parser = argparse.ArgumentParser(prog="adaptive", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"adaptive {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"adaptive.control.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (config_module.ConfigError, FilterError) as e:
        for problem in e.problems:
            print(f"adaptive: {problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
