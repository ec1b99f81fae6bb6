"""`adaptive status`: what the daemon is doing, in sentences an admin reads at a glance.

Problems come first, each with what to do about it; then the logs followed, what was counted, and
the bans in the kernel beside those in the state. `--json` prints the daemon's reply as it is
(`adaptive.wire.StatusReply`), for machines. `describe` makes the text from a reply, so that a test
needs no daemon.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

from adaptive.durations import format_duration

WIDTH = 78


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_UNREACHABLE, EXIT_USAGE, command
    from adaptive.control.client import add_client_options
    p = command(sub, "status", summary="say what the daemon is doing", description="""
        Say what the running daemon is doing, in words: first any problem (a log it cannot read, a
        state database that refuses writes, a kernel that holds other bans than the state, a table
        it cannot list) and what to do about it; then its version, pid and uptime, whether it
        enforces or runs dry, each log it follows and how far behind it is, the events and decisions
        counted since the start, and the bans in the kernel beside those in the state. It answers
        within a second, however many bans there are. --json gives the same as one JSON object.""",
        examples=["adaptive status",
                  "adaptive status --json | jq .sources"],
        exits=[(0, "the daemon answered (problems included: they are said on stdout)"), (1, EXIT_UNREACHABLE),
               (2, EXIT_USAGE)])
    p.add_argument("--json", action="store_true", help="the status as one JSON object")
    add_client_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.control.client import call, print_json

    status, result = call(args, "status")
    if status:
        return status
    if args.json:
        print_json(result)
        return 0
    sys.stdout.write(describe(result))
    return 0


def describe(status: Mapping[str, Any]) -> str:
    """The status reply in words: a heading sentence, the problems with what to do, then the rest."""
    table = f"inet{_KEEP}{status.get('table') or 'adaptive'}"
    lines = [_fill(_heading(status))]
    problems = _problems(status, table)
    if problems:
        lines += ["", f"{_count(len(problems), 'problem')}:"]
        lines += [_fill(problem, "  - ", "    ") for problem in problems]
    sources = list(status.get("sources") or [])
    lines += ["", f"Following {_count(len(sources), 'source')}" + (":" if sources else ".")]
    width = max((len(str(s.get("name", "?"))) for s in sources), default=0)
    lines += [_fill(_source(s), f"  {str(s.get('name', '?')).ljust(width)}  ", " " * (width + 4)) for s in sources]
    lines += ["", _fill(_counted(status)), _fill(_bans(status, table))]
    return "\n".join(lines) + "\n"


# Joins what a line must not be broken inside ("2m 10s", "inet adaptive"): textwrap breaks only at ASCII spaces.
_KEEP = "\N{NO-BREAK SPACE}"


def _fill(text: str, first: str = "", rest: str = "") -> str:
    wrapped = textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False,
                            break_long_words=False)
    return wrapped.replace(_KEEP, " ")


def _heading(status: Mapping[str, Any]) -> str:
    where = f"pid {status['pid']}, " if status.get("pid") else ""
    running = f"adaptive {status.get('version', '?')} is running ({where}up {_span(status.get('uptime'))})"
    if status.get("enforce") is False:
        return f"{running}, enforcing nothing: it was started without the kernel (a test's daemon)."
    if status.get("dry_run"):
        return (f"{running} in dry run: it decides and records bans, and puts none in the kernel "
                "([decisions] dry_run).")
    return f"{running} and enforcing its bans."


def _problems(status: Mapping[str, Any], table: str) -> list[str]:
    """What is wrong, most pressing first, each with what to do."""
    problems = []
    if status.get("state_error") or status.get("state_unwritten"):
        waiting = status.get("state_unwritten")
        problems.append(
            f"The state database cannot be written ({status.get('state_error') or 'no reason given'}): "
            f"{_count(waiting, 'change') if isinstance(waiting, int) else 'changes'} wait in memory and are "
            "written once it can be. Make room on its disk (or mend it); until then bans are still made, and "
            "a stop loses only what waits, which the next start reads again from the logs.")
    for source in status.get("sources") or []:
        if source.get("error"):
            name = source.get("name", "?")
            problems.append(
                f"Source {name} ({source.get('path', '?')}) cannot be read: {_why(source)}. adaptive tries "
                f"again every second; if the path is wrong, correct [sources.{name}] path and run `adaptive "
                "reload`.")
    if status.get("kernel_error"):
        problems.append(
            f"The bans in table {table} cannot be counted: {status['kernel_error']}. See `adaptive ruleset "
            f"--check` and `nft list table {table}`; the daemon's log (journalctl -u adaptive) says more.")
    if status.get("disagree"):
        problems.append(
            f"The kernel and the state disagree: {status['disagree']}. adaptive compares them every [nftables] "
            "reconcile_every and puts right what differs; if this stays, its log (journalctl -u adaptive) "
            "says why.")
    return problems


def _source(source: Mapping[str, Any]) -> str:
    path = str(source.get("path", "?"))
    if source.get("error"):
        return f"{path}: not read: {_why(source)}"
    if source.get("position") is None:
        return f"{path}: waiting for it to be opened"
    lines = source.get("lines")
    seconds = source.get("lag_unit") == "seconds"
    read = f"{lines:,} lines read" if isinstance(lines, int) else f"{_bytes(source['position'])} read"
    lag = source.get("lag")
    behind = "caught up" if lag == 0 else "behind: ?" if lag is None \
        else f"{format_duration(lag)} behind" if seconds else f"{_bytes(lag)} behind"
    return f"{path}: ok, {read}, {behind}"


def _why(source: Mapping[str, Any]) -> str:
    """A source's error, without the path it begins with (said beside it)."""
    return str(source.get("error")).removeprefix(f"{source.get('path')}: ")


def _counted(status: Mapping[str, Any]) -> str:
    decisions = status.get("decisions")
    if isinstance(decisions, Mapping):
        total = sum(n for n in decisions.values() if isinstance(n, int))
        parts = [f"{n:,} {_OUTCOMES.get(outcome, outcome)}" for outcome, n in sorted(decisions.items()) if n]
        made = _count(total, "decision") + (f" ({', '.join(parts)})" if parts else "")
    else:
        made = _count(decisions, "decision") if isinstance(decisions, int) else "decisions unknown"
    tracked = status.get("tracked")
    scored = f"; {_count(tracked, 'address', 'addresses')} scored now" if isinstance(tracked, int) else ""
    return f"Since the start: {_count(status.get('events', 0), 'event')}, {made}{scored}."


_OUTCOMES = {"ban": "banned", "dry_run": "in dry run", "suppressed": "suppressed"}


def _bans(status: Mapping[str, Any], table: str) -> str:
    in_state = status.get("bans_state")
    state = _count(in_state, "ban") if isinstance(in_state, int) else "an unknown number of bans"
    counted = f"{in_state:,}" if isinstance(in_state, int) else "?"
    kernel = status.get("bans")
    if status.get("enforce") is False or status.get("dry_run"):
        return f"Bans: {state} in the state; the kernel is left alone."
    if kernel is None:
        said = f"Bans: {state} in the state; how many table {table} holds is not known"
    elif status.get("kernel_counting"):
        said = (f"Bans: table {table} held {_count(kernel, 'ban')} at the last count (counting them again), "
                f"the state {counted}")
    elif kernel == in_state:
        said = f"Bans: table {table} holds {_count(kernel, 'ban')}, as the state does"
    else:
        said = f"Bans: table {table} holds {_count(kernel, 'ban')}, the state {counted}"
    compared = status.get("compared")
    if isinstance(compared, (int, float)):
        said += f"; compared with the state {_span(compared)} ago"
    repairs = status.get("repairs")
    if isinstance(repairs, int) and repairs:
        said += f"; the table was put back {_count(repairs, 'time')} after others changed it"
    return said + "."


def _count(n: object, one: str, many: str | None = None) -> str:
    if not isinstance(n, int):
        return f"? {many or one + 's'}"
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _span(seconds: object) -> str:
    """A length of time as an admin says it: `3h 12m`, `2d 4h`, `40s`."""
    from adaptive.durations import format_duration
    if not isinstance(seconds, (int, float)):
        return "?"
    return re.sub(r"(?<=[a-z])(?=\d)", _KEEP, format_duration(seconds))


def _bytes(value: object) -> str:
    if not isinstance(value, (int, float)):
        return "?" if value is None else str(value)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{int(value)} B"
