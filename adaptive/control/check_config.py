"""`adaptive check-config`: validate the configuration (and the filters it names) without running."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from adaptive.config import SourceConfig
from adaptive.filters.rules import load_directory

if TYPE_CHECKING:
    from adaptive.config import Config


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import add_config_options, command
    p = command(sub, "check-config", summary="validate the configuration files and the filters", description="""
        Read the configuration as the daemon would (the -c files in order, each overriding the one
        before key by key, then the drop-ins) and the filters it names, and report every problem,
        each naming the file, the key and the bad value. Run as root, it also says when [nftables]
        table names a table adaptive did not make, and whether metrics.listen is an address of this
        host. Nothing is changed. --ready also wants a log to read now (a source's file exists), as
        the Debian package does before it starts the daemon.""",
        examples=["adaptive check-config",
                  "adaptive check-config --ready && systemctl start adaptive",
                  "adaptive check-config -c conf/adaptive.toml -c /etc/adaptive/local.toml",
                  "adaptive check-config -c /etc/adaptive/adaptive.toml --dropins ''"],
        exits=[(0, "the configuration and the filters are sound"),
               (1, "sound, but not usable on this host: the table is not adaptive's, or metrics.listen "
                   "cannot be listened on, or with --ready no source has a log to read yet"),
               (2, "a configuration or filter error, or no source at all (every problem on stderr)")])
    p.add_argument("--ready", action="store_true",
                   help="also require a log to read now (a source's file exists): exit 1 if none has one. "
                        "The Debian package starts the daemon after installing only then")
    add_config_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.control.cli import load_config
    from adaptive.control.run import NO_SOURCES
    config = load_config(args)
    if not config.sources:
        print(f"adaptive: {NO_SOURCES}", file=sys.stderr)
        return 2
    filters = load_directory(config.filters_directory)
    if os.geteuid() == 0 and (why := _table_refused(config)):
        print(f"adaptive: {why}", file=sys.stderr)
        return 1
    if why := _listen_refused(config.metrics.listen):
        print(f"adaptive: {why}", file=sys.stderr)
        return 1
    files = ", ".join(str(f) for f in config.files)
    if args.ready and not any(_present(source) for source in config.sources.values()):
        where = ", ".join(str(s.path if s.type == "file" else s.directory or "the journal")
                          for s in config.sources.values())
        print(f"adaptive: configuration ok ({files}) but no source has a log to read yet ({where} missing)",
              file=sys.stderr)
        return 1
    print(f"configuration ok: {files}; {len(config.sources)} source(s), "
          f"{len(filters)} filter(s) with {sum(len(f.rules) for f in filters)} rules")
    return 0


def _present(source: SourceConfig) -> bool:
    """Whether the source has a log to read now: its file, or the journal it reads (in place of a missing
    file, with `fallback`)."""
    if source.type == "file" and source.path is not None and source.path.exists():
        return True
    if source.type == "journal" or source.fallback == "journal":
        return Path(source.directory).is_dir() if source.directory else host_journal()
    return False


def host_journal() -> bool:
    """Whether this host has a journal to read: journald runs (its runtime directory), or kept files."""
    kept = Path("/var/log/journal")
    return Path("/run/systemd/journal").is_dir() or (kept.is_dir() and any(kept.iterdir()))


def _listen_refused(listen: str) -> str | None:
    """Why the metrics endpoint could not listen there (an address not of this host), or None. Only
    the address is tried (port 0): the running daemon may hold the port itself."""
    if not listen:
        return None
    import socket

    from adaptive.config import host_port
    host, _ = host_port(listen)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, 0))
        except OSError as e:
            return (f"metrics.listen = {listen!r}: cannot listen on {host}: {e.strerror or e} "
                    "(not an address of this host?)")
    return None


def _table_refused(config: Config) -> str | None:
    """Why the kernel's table of that name is not adaptive's to apply, or None (also when the kernel
    cannot be asked here: the configuration alone is still checked)."""
    try:
        from adaptive.nftables import Backend, Executor
        from adaptive.nftables.backend import NotOurTable
    except ImportError:
        return None
    try:
        Backend(Executor(), config).ensure_ours()
    except NotOurTable as e:
        return str(e)
    except Exception:       # no netlink here (a container), python3-nftables missing...
        return None
    return None
