"""`adaptive replay`: run logs through filters, scoring and decisions, and print the decisions.

The logs' own timestamps are the clock and the state is a throwaway one in memory, so a day of log
decides in seconds exactly what the daemon would have decided live, and nothing is enforced or kept.
It is how an admin tunes weights and ban lengths before going live. Text mode prints each decision and
a summary; `--json` prints one object per decision, one per line, for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TextIO

from adaptive.control.logfiles import (
    READ_ERRORS,
    Journal,
    add_journal_options,
    journal_name,
    logs_asked,
    open_journal,
    open_log,
    unreadable,
)
from adaptive.decisions import Decider, Decision, host_addresses
from adaptive.filters.batch import CHUNK, chunks
from adaptive.filters.rules import FilterError, load_directory
from adaptive.state import MEMORY, State
from adaptive.vocabulary import SUBNET, Outcome

TOP_RULES = 10


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import add_config_options, command
    p = command(sub, "replay", summary="run logs through filters, scoring and decisions; print the decisions",
                description="""
        Run logs through the filters, the scoring and the decisions of a configuration, with the logs'
        own timestamps as the clock and a throwaway state in memory, and print every decision the
        daemon would have made (time, target, length, reason, score, the rules behind it), then a
        summary. Nothing is banned or kept: this is how to tune weights, thresholds and ban lengths
        before going live, or to see what a change would have done. A day of log replays in seconds.

        Give the logs oldest first (mail.log.2.gz, mail.log.1, mail.log): they are scored as one log,
        in the order given. Logs compressed with gzip, xz or bzip2 are read as they are, known by their
        first bytes whatever their names; standard input (-) too. --journal replays the systemd
        journal's matching entries (after the files, if files are given), as the daemon's journal
        source reads them.""",
        examples=["adaptive replay /var/log/mail.log.2.gz /var/log/mail.log.1 /var/log/mail.log",
                  "adaptive replay -c conf/adaptive.toml -c try.toml /var/log/mail.log",
                  "adaptive replay --journal --since 7d",
                  "adaptive replay --json /var/log/mail.log | jq -c 'select(.outcome == \"ban\")'"],
        exits=[(0, "every file was read"),
               (1, "a file could not be read (the others were)"),
               (2, "a usage error, or a configuration or filter error (each named on stderr)")])
    add_config_options(p)
    p.add_argument("files", nargs="*", metavar="LOGFILE", help="log files, plain or compressed (gzip, xz, "
                   "bzip2), read in the order given; - for standard input")
    add_journal_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object per decision instead of text")
    p.add_argument("--no-host-addresses", action="store_true",
                   help="do not protect this host's own addresses, for a log written on another host "
                        "(give that host's in decisions.own_addresses)")
    p.set_defaults(run=run, parser=p)


class _Tally:
    """What the summary reports."""

    def __init__(self) -> None:
        self.lines = self.events = self.offences = 0
        self.outcomes: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.prefixes = 0

    def add(self, decision: Decision) -> None:
        self.outcomes[decision.outcome.value] += 1
        if decision.outcome is Outcome.SUPPRESSED:
            return
        self.reasons[decision.reason] += 1
        if decision.reason == SUBNET:
            self.prefixes += 1
        else:
            self.rules.update(decision.rules)   # a subnet ban's rules are its members', counted already


def run(args: argparse.Namespace) -> int:
    from adaptive.control.cli import load_config
    from adaptive.pipeline import Pipeline
    logs = logs_asked(args)
    config = load_config(args)
    try:
        filters = load_directory(config.filters_directory)
    except FilterError as e:
        for problem in e.problems:
            print(f"adaptive: {problem}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    state = State(MEMORY)
    # As the daemon decides: the same pipeline, on a throwaway state. The clock is read only for what
    # no line says (the decider's bans live at the start: none here), so the wall clock will do.
    pipeline = Pipeline.build(config, filters, state, clock=time.time,
                              own_addresses=() if args.no_host_addresses else host_addresses())
    out = sys.stdout
    tally = _Tally()
    status = 0
    for name in logs:
        try:
            with open_journal(args) if isinstance(name, Journal) else open_log(name) as log:
                # Classic syslog lines carry no year: the file's last write dates its last line.
                engine = pipeline.engine(log.mtime)
                for chunk in chunks(log.stream, CHUNK):
                    for _, event in engine.scan(chunk):
                        tally.events += 1
                        for decision in pipeline.feed(event):
                            tally.add(decision)
                            out.write(_json(decision) if args.json else _text(decision))
                tally.lines += engine.counts.lines
        except BrokenPipeError:
            raise           # stdout's reader is gone (`| head`), not the file: `cli.main` ends quietly
        except READ_ERRORS as e:
            shown = journal_name(args) if isinstance(name, Journal) else name
            print(f"adaptive: {shown}: cannot read: {unreadable(e)}", file=sys.stderr)
            status = 1
    tally.offences = pipeline.offences
    state.close()
    if not args.json:
        names = [n if isinstance(n, str) else journal_name(args) for n in logs]
        _summary(names, tally, pipeline.decider, time.perf_counter() - started, out)
    return status


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).astimezone().isoformat()


def _text(d: Decision) -> str:
    return f"{_when(d.time)}  {d}\n"


def _json(d: Decision) -> str:
    return json.dumps({
        "time": _when(d.time), "target": d.target, "duration": d.duration, "reason": d.reason,
        "score": d.score, "rules": d.rules, "user": d.user, "outcome": d.outcome.value, "n": d.n,
        "protected": d.protected,
    }) + "\n"


def _summary(files: list[str], tally: _Tally, decider: Decider, seconds: float, out: TextIO) -> None:
    o = tally.outcomes
    out.write(f"\nreplayed {len(files)} file{'s' if len(files) != 1 else ''}: {tally.lines} lines, "
              f"{tally.events} events, {tally.offences} offences in {seconds:.2f} s\n")
    out.write(f"  bans        {o['ban']}" + (f" ({tally.prefixes} of them prefixes)" if tally.prefixes else "")
              + "\n")
    if o["dry_run"]:
        out.write(f"  dry run     {o['dry_run']}\n")
    out.write(f"  suppressed  {o['suppressed']} (allowlist, loopback, own addresses)\n")
    out.write(f"  covered     {decider.counts['covered']} (offences from sources already banned)\n")
    if tally.reasons:
        out.write("  reasons\n")
        for reason, n in sorted(tally.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            out.write(f"    {n:>9}  {reason}\n")
    if tally.rules:
        out.write("  top rules (events behind the bans)\n")
        for rule, n in sorted(tally.rules.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_RULES]:
            out.write(f"    {n:>9}  {rule}\n")
