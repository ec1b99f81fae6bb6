"""`adaptive check-config`: validate the configuration (and the filters it names) without running."""

from __future__ import annotations

import argparse

from adaptive.filters.rules import load_directory


def add_parser(sub: argparse._SubParsersAction) -> None:
    from adaptive.control.cli import add_config_options
    p = sub.add_parser("check-config", help="validate the configuration files and the filters")
    add_config_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.control.cli import load_config
    config = load_config(args)
    filters = load_directory(config.filters_directory)
    files = ", ".join(str(f) for f in config.files)
    print(f"configuration ok: {files}; {len(config.sources)} source(s), "
          f"{len(filters)} filter(s) with {sum(len(f.rules) for f in filters)} rules")
    return 0
