"""`adaptive check`: run log files through the filters and say what they make of them.

Like `fail2ban-regex`, it is how an admin tries a filter on a real log before trusting it. Text mode
prints a summary; `--json` prints one object per event, one per line, for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from adaptive.config import SHIPPED_FILTERS
from adaptive.control.logfiles import (
    READ_ERRORS,
    Journal,
    Log,
    add_journal_options,
    journal_name,
    logs_asked,
    open_journal,
    open_log,
    unreadable,
)
from adaptive.events import Event
from adaptive.filters.batch import CHUNK, chunks, count_file
from adaptive.filters.engine import Engine
from adaptive.filters.prefix import YearGuess
from adaptive.filters.rules import Filter, load_directory


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import command
    p = command(sub, "check", summary="run log files through the filters and print the events", description="""
        Run log files through the filters and say what they make of them, as fail2ban-regex does: how
        to try a filter, or a log format, before trusting it. Nothing is scored, banned or kept, and
        no daemon is needed.

        The summary counts, per file, the lines read, the matches and ignores of each rule, the events
        of each kind, and the unparsable lines (a count that grows means a log format adaptive does
        not know). --json prints one object per event instead, one a line, for scripts and jq.

        Rotated logs compressed with gzip, xz or bzip2 (mail.log.2.gz) are read as they are, known by
        their first bytes whatever their names; standard input (-) too. --journal reads the systemd
        journal as the daemon's journal source does (its matching entries, as syslog lines), after
        the files if files are given.""",
        examples=["adaptive check /var/log/mail.log /var/log/mail.log.2.gz",
                  "adaptive check --journal --since 1d",
                  "adaptive check --journal --match _SYSTEMD_UNIT=dovecot.service --since 1h",
                  "adaptive check --json /var/log/mail.log | jq -r .ip | sort | uniq -c"],
        exits=[(0, "every file was read"),
               (1, "a file could not be read (the others were)"),
               (2, "a usage error, or a filter file with an error (each named on stderr)")])
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="log files, plain or compressed (gzip, xz, bzip2); - for standard input")
    add_journal_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object per event instead of a summary")
    p.add_argument("--filters", type=Path, default=SHIPPED_FILTERS, metavar="DIR",
                   help="directory of filter files (default: the shipped ones)")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    logs = logs_asked(args)
    filters = load_directory(args.filters)
    out = sys.stdout
    status = 0
    for name in logs:
        started = time.perf_counter()
        try:
            with open_journal(args) if isinstance(name, Journal) else open_log(name) as log:
                if isinstance(name, str) and log.compression is None and log.mtime is not None \
                        and not args.json and os.path.isfile(name):
                    # The summary of a whole plain file: every core reads a part of it.
                    engine = count_file(Path(name), filters, log.mtime)
                else:
                    engine = stream(log, filters, args.json, out)
        except BrokenPipeError:
            raise           # stdout's reader is gone (`| head`), not the file: `cli.main` ends quietly
        except READ_ERRORS as e:
            shown = journal_name(args) if isinstance(name, Journal) else name
            print(f"adaptive: {shown}: cannot read: {unreadable(e)}", file=sys.stderr)
            status = 1
            continue
        if not args.json:
            summary(log.name, engine, time.perf_counter() - started, out)
    return status


def stream(log: Log, filters: list[Filter], as_json: bool, out: TextIO) -> Engine:
    """Read a log (or standard input) with one engine, in order, printing events if asked."""
    # Classic syslog lines carry no year: the file's last write dates its last line.
    engine = Engine(filters, YearGuess(time.time() if log.mtime is None else log.mtime))
    line_base = 1
    for chunk in chunks(log.stream, CHUNK):
        lines_before = engine.counts.lines
        events = engine.scan(chunk)
        if as_json:
            write_json(log.name, chunk, line_base, events, out)
        line_base += engine.counts.lines - lines_before
    return engine


def write_json(name: str, chunk: bytes, line_base: int, events: list[tuple[int, Event]], out: TextIO) -> None:
    """One object per event; line numbers are counted here, only when asked for, not in the engine."""
    line, counted_to = line_base, 0
    for offset, e in events:
        line += chunk.count(b"\n", counted_to, offset)
        counted_to = offset
        out.write(json.dumps({
            "file": name, "line": line, "source": e.family, "filter": e.filter, "rule": e.rule,
            "kind": e.kind.value, "ip": e.ip, "user": e.user,
            "time": datetime.fromtimestamp(e.time, UTC).astimezone().isoformat(),
        }) + "\n")


def summary(name: str, engine: Engine, seconds: float, out: TextIO) -> None:
    c = engine.counts
    matched, ignored = sum(c.matched.values()), sum(c.ignored.values())
    rate = f", {c.lines / seconds:,.0f} lines/s" if seconds > 0 else ""
    out.write(f"{name}: {c.lines} lines read in {seconds:.2f} s{rate}\n")
    out.write(f"  matched     {matched}\n")
    for (flt, rule), n in sorted(c.matched.items(), key=lambda kv: (-kv[1], kv[0])):
        out.write(f"    {n:>9}  {flt}/{rule}\n")
    out.write(f"  ignored     {ignored}\n")
    for (flt, ign), n in sorted(c.ignored.items(), key=lambda kv: (-kv[1], kv[0])):
        out.write(f"    {n:>9}  {flt}/{ign}\n")
    out.write(f"  events      {sum(c.events.values())}\n")
    for kind, n in sorted(c.events.items(), key=lambda kv: (-kv[1], kv[0])):
        out.write(f"    {n:>9}  {kind}\n")
    out.write(f"  unparsable  {c.unparsable}\n")
    if c.oversize:
        out.write(f"  oversize    {c.oversize} (longer than {engine.max_line} bytes, read to that length)\n")
    if c.cut:
        out.write(f"  cut         {c.cut} (long lines whose address came after the user name: not believed)\n")
    if c.bad_address:
        out.write(f"  bad address {c.bad_address} (a rule matched but captured no valid address)\n")
