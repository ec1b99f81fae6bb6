"""How fast adaptive reads the systemd journal, next to journalctl and to fail2ban.

    python bench/journal.py [--entries N] [--seed S] [--runs R] [--no-fail2ban] [--json] [--cache DIR]

All of them read the same journal: the lines of `bench/mail_log.py`'s generated log (its rfc3339 form,
whose times have microseconds), each made the entry journald stores for what syslog(3) sent it
(identifier, SYSLOG_PID when the line has a pid, message, the line's time made strictly increasing,
`_SYSTEMD_UNIT` postfix@-.service or dovecot.service by identifier, facility mail, and the fields
journald adds of its own: `_TRANSPORT`, `_COMM`, `_EXE`, `_CMDLINE`, ..., 22 in all, since a reader finds
a field by walking the entry's), written by systemd's own code: one `systemd-journal-remote` process fed
the export format (`tests/journals.py`), which starts a new file when one is full. The journal is built
once and kept in `bench/out/`, by entries and seed.

1. adaptive, in-process and as the daemon reads it: a `JournalSource` on the directory (its default
   matches, `start="beginning"`, a store that keeps nothing) polled until it has nothing more, every
   chunk scanned by one `Engine` over the shipped filters and committed; best of R (3). The events
   must be those one engine finds in the log file the journal was made of.
2. python-systemd alone, for scale: its reader with the same matches, `_next()` and the MESSAGE of
   each entry, no line made; best of R.
3. the floor: `journalctl --directory D -o cat > /dev/null`, all entries, then with adaptive's matches;
   best of R each. The faster of the two is the floor.
4. `fail2ban-regex` on `systemd-journal[journalpath=D]` with Debian's `postfix[mode=aggressive]`
   filter, then its `dovecot` filter, with parse.py's options (`--usedns=no --no-check-all`): two
   reads, whose times are added; one run each. Each gets the journal match of its service
   (`-m`), as a jail would: the `postfix` filter's own, `_SYSTEMD_UNIT=postfix.service`, matches no entry
   of Debian's `postfix@-.service`. The matches used and the entries each read are printed.

Then the goals, as PASS/FAIL lines: adaptive at least 10 times fail2ban's entries/s, and the journalctl
floor at most 3 times adaptive's. `--json` adds one machine-readable line at the end. The exit status
is 0 whatever the goals say, 2 when a reader failed (its error is shown).
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from adaptive.config import SHIPPED_FILTERS  # noqa: E402
from adaptive.control.check import CHUNK, chunks  # noqa: E402
from adaptive.events import Kind  # noqa: E402
from adaptive.filters.engine import Engine  # noqa: E402
from adaptive.filters.prefix import YearGuess  # noqa: E402
from adaptive.filters.rules import Filter, load_directory  # noqa: E402
from adaptive.sources import JournalSource, Position  # noqa: E402
from adaptive.sources.journal import DEFAULT_MATCHES, MAX_LINE  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mail_log  # noqa: E402
from parse import ReaderError, _best, _times, machine  # noqa: E402  (the runs printed as parse.py prints them)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import journals  # noqa: E402

VERSION = 1            # bump whenever the journal made of a log changes, so cached journals are remade
RUNS = 3
GOAL_FAIL2BAN = 10.0   # adaptive's entries/s at least this many times fail2ban's
GOAL_FLOOR = 3.0       # journalctl's entries/s at most this many times adaptive's
DOVECOT_PID = 742      # Dovecot's log process: its lines carry no pid, its entries do (_PID)
MACHINE_ID = "5d1a2ef0c1b04e6f9d3c2b1a09f8e7d6"
INVOCATIONS = {"postfix": "8e1f0c2a4b6d48e0a2c4e6f8091b3d5f", "dovecot": "3c5e7a9b1d2f4e6a8c0b2d4f6e8a0c1e"}
# Debian's filters, each with the journal match of its service on Debian: a jail's `journalmatch`.
FAIL2BAN = (("postfix[mode=aggressive]", "_SYSTEMD_UNIT=postfix@-.service"),
            ("dovecot", "_SYSTEMD_UNIT=dovecot.service"))
FAIL2BAN_FILTERS = Path("/etc/fail2ban/filter.d")
# The kinds that forgive or pace: what fail2ban's filters do not look for. The others are abuse.
NOT_ABUSE = (Kind.AUTH_SUCCESS, Kind.MESSAGE_ACCEPTED)
_F2B_LINES = re.compile(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", re.M)
_F2B_MATCH = re.compile(r"^Use +journal match : (.*)$", re.M)
# 2025-11-24T00:00:07.513023+00:00 mx postfix/smtpd[8151]: connect from ...   (or `mx dovecot: ...`)
_LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})\+00:00 (\S+) ([^\[: ]+)(?:\[(\d+)\])?: (.*)")


# --- the journal ---

def cache_path(entries: int, seed: int, directory: Path) -> Path:
    """Where the journal of (entries, seed) is kept: a directory of journal files and `built.json`."""
    return directory / f"journal-v{VERSION}-m{mail_log.VERSION}-{entries}-s{seed}"


def _trusted(identifier: str) -> dict[str, str]:
    """What journald adds of its own to a message of this program (Debian 12, systemd 252), but the pid."""
    family, _, program = identifier.partition("/")
    if family == "dovecot":
        return {"_TRANSPORT": "syslog", "_UID": "0", "_GID": "0", "_COMM": "log", "_EXE": "/usr/lib/dovecot/log",
                "_CMDLINE": "dovecot/log", "_CAP_EFFECTIVE": "1ffffffffff",
                "_SYSTEMD_CGROUP": "/system.slice/dovecot.service", "_SYSTEMD_SLICE": "system.slice",
                "_SYSTEMD_INVOCATION_ID": INVOCATIONS["dovecot"], "_MACHINE_ID": MACHINE_ID}
    service, _, comm = program.rpartition("/")     # submission/smtpd: master.cf's service, the program
    return {"_TRANSPORT": "syslog", "_UID": "107", "_GID": "114", "_COMM": comm,
            "_EXE": f"/usr/lib/postfix/sbin/{comm}", "_CMDLINE": f"{comm} -n {service or comm} -t unix -u",
            "_CAP_EFFECTIVE": "0", "_SYSTEMD_CGROUP": "/system.slice/system-postfix.slice/postfix@-.service",
            "_SYSTEMD_SLICE": "system-postfix.slice", "_SYSTEMD_INVOCATION_ID": INVOCATIONS["postfix"],
            "_MACHINE_ID": MACHINE_ID}


def entries_of(log: Path) -> Iterator[journals.Entry]:
    """The journal entries of a generated rfc3339 log, one per line, their times strictly increasing, with
    the fields journald would have given them (SYSLOG_PID when the line has a pid, SYSLOG_TIMESTAMP, ...)."""
    seconds: dict[str, tuple[int, str]] = {}
    trusted: dict[str, dict[str, str]] = {}
    last = 0
    with open(log, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            m = _LINE.fullmatch(line.rstrip("\n"))
            if m is None:
                raise ValueError(f"{log}:{number}: not a line of the generated log: {line!r}")
            stamp, micro, host, identifier, pid, message = m.groups()
            known = seconds.get(stamp)
            if known is None:
                parsed = time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
                known = seconds[stamp] = (calendar.timegm(parsed), time.strftime("%b %e %H:%M:%S ", parsed))
            second, syslog_stamp = known
            last = max(second * 1_000_000 + int(micro), last + 1)
            fields = trusted.get(identifier)
            if fields is None:
                fields = trusted[identifier] = _trusted(identifier)
            fields = {**fields, "SYSLOG_TIMESTAMP": syslog_stamp, "_SOURCE_REALTIME_TIMESTAMP": str(last)}
            if pid:
                fields["SYSLOG_PID"] = pid
            yield journals.Entry(identifier, int(pid) if pid else DOVECOT_PID, message, realtime=last, host=host,
                                 fields=fields)


def build(entries: int, seed: int, cache: Path) -> tuple[Path, Path, dict]:
    """The journal of (entries, seed) and the log it was made of, built unless kept; and how it was built."""
    started = time.perf_counter()
    log_cached = mail_log.truth_path(mail_log.cache_path(entries, seed, "rfc3339", cache)).exists()
    log = mail_log.cached(entries, seed, "rfc3339", cache)
    made = {"log_cached": log_cached, "log_seconds": time.perf_counter() - started}
    target = cache_path(entries, seed, cache)
    built = target / "built.json"
    if built.exists():
        return target, log, {**json.loads(built.read_text(encoding="utf-8")), **made, "cached": True}
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    journals.write(tmp, entries_of(log))   # one journal-remote process: it starts a new file if one fills
    seconds = time.perf_counter() - started
    files = sorted(p.name for p in tmp.iterdir())
    info = {"entries": entries, "seed": seed, "log": str(log), "build_seconds": seconds, "files": files,
            "bytes": sum(p.stat().st_size for p in tmp.iterdir())}
    (tmp / "built.json").write_text(json.dumps(info) + "\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target, log, {**info, **made, "cached": False}


# --- the readers ---

class _Nowhere:
    """A position store that keeps nothing: every run starts at the oldest entry."""

    def load_position(self, source: str) -> Position | None:
        return None

    def save_position(self, source: str, position: Position) -> None:
        pass


def run_adaptive(directory: Path, filters: list[Filter]) -> dict:
    """A journal source polled until it has nothing more, each chunk scanned by one engine: the daemon's path."""
    started = time.perf_counter()
    source = JournalSource("journal", _Nowhere(), directory=directory, start="beginning")
    engine = Engine(filters, YearGuess())
    events = polls = chunk_count = 0
    try:
        while True:
            polled = source.poll()
            polls += 1
            if source.error is not None:
                raise ReaderError(f"JournalSource on {directory}: {source.error}")
            if not polled:
                break
            for chunk in polled:
                chunk_count += 1
                try:
                    events += len(engine.scan(chunk.data))
                except Exception as e:
                    raise ReaderError(f"the engine raised {type(e).__name__}: {e} on a chunk of {directory} "
                                      f"after {engine.counts.lines} lines") from e
                source.commit(chunk)
    finally:
        source.close()
    seconds = time.perf_counter() - started
    c = engine.counts
    abuse = sum(n for kind, n in c.events.items() if kind not in NOT_ABUSE)
    return {"seconds": seconds, "entries": c.lines, "events": events, "abuse_events": abuse,
            "matched": sum(c.matched.values()),
            "ignored": sum(c.ignored.values()), "unparsable": c.unparsable, "chunks": chunk_count,
            "polls": polls, "discarded": source.discarded_lines}


def run_file(log: Path, filters: list[Filter]) -> dict:
    """One engine over the log file the journal was made of: the events the journal must give too."""
    engine = Engine(filters, YearGuess(os.stat(log).st_mtime))
    events = 0
    with open(log, "rb") as stream:
        for chunk in chunks(stream, CHUNK):
            events += len(engine.scan(chunk))
    return {"lines": engine.counts.lines, "events": events}


def run_binding(directory: Path) -> dict:
    """python-systemd alone: the entries adaptive reads, and each one's MESSAGE, nothing else."""
    from systemd import journal  # type: ignore[import-untyped]
    started = time.perf_counter()
    reader = journal._Reader(0, path=str(directory))
    try:
        reader.data_threshold = MAX_LINE + 1      # as the source sets it
        for n, match in enumerate(DEFAULT_MATCHES):
            if n:
                reader.add_disjunction()
            reader.add_match(match)
        entries = 0
        get, step = reader._get, reader._next
        while step():
            get("MESSAGE")
            entries += 1
    finally:
        reader.close()
    return {"seconds": time.perf_counter() - started, "entries": entries}


def journalctl(directory: Path, matched: bool) -> list[str]:
    command = [str(journals.JOURNALCTL), "--directory", str(directory), "--no-pager", "-q", "-o", "cat"]
    if matched:
        for n, match in enumerate(DEFAULT_MATCHES):
            command += ["+", match] if n else [match]
    return command


def run_journalctl(directory: Path, matched: bool) -> dict:
    """One `journalctl -o cat` over the journal into /dev/null."""
    command = journalctl(directory, matched)
    started = time.perf_counter()
    with open(os.devnull, "wb") as null:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=null, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise ReaderError(f"{' '.join(command)} exited {done.returncode}\n{done.stderr.decode(errors='replace')}")
    return {"seconds": seconds, "command": command}


def count_journalctl(directory: Path, matched: bool) -> int:
    """The entries `journalctl -o cat` prints (a MESSAGE of this journal holds no newline), counted apart."""
    command = journalctl(directory, matched)
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) as p:
        stdout = p.stdout
        assert stdout is not None
        n = sum(block.count(b"\n") for block in iter(lambda: stdout.read(1 << 20), b""))
    if p.returncode != 0:
        raise ReaderError(f"{' '.join(command)} exited {p.returncode}")
    return n


def own_journalmatch(flt: str) -> str:
    """The `journalmatch` of a fail2ban filter's own file, "" if it has none."""
    path = FAIL2BAN_FILTERS / f"{flt.split('[')[0]}.conf"
    try:
        found = re.search(r"^journalmatch *= *(.*)$", path.read_text(encoding="utf-8"), re.M)
    except OSError:
        return ""
    return found.group(1).strip() if found else ""


def run_fail2ban(directory: Path, flt: str, match: str) -> dict:
    """One `fail2ban-regex` run of one filter over the journal: wall time, what it read and matched."""
    command = ["fail2ban-regex", "--usedns=no", "--no-check-all", "--print-no-missed", "--encoding=utf-8",
               "-m", match, f"systemd-journal[journalpath={directory}]", flt]
    started = time.perf_counter()
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    found = _F2B_LINES.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise ReaderError(f"{' '.join(command)} exited {done.returncode}"
                          + ("" if found or done.returncode else ", and printed no 'Lines:' summary")
                          + f"\n--- stderr ---\n{done.stderr.rstrip()}\n--- stdout (end) ---\n"
                          + "\n".join(done.stdout.rstrip().splitlines()[-15:]))
    if done.stderr.strip():
        print(f"fail2ban-regex ({flt}) said on stderr:\n{done.stderr.rstrip()}", file=sys.stderr)
    used = _F2B_MATCH.search(done.stdout)
    lines, ignored, matched, missed = (int(x) for x in found.groups())
    return {"filter": flt, "command": command, "seconds": seconds, "journalmatch": used.group(1) if used else "",
            "own_journalmatch": own_journalmatch(flt), "entries": lines, "matched": matched,
            "ignored": ignored, "missed": missed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000, help="entries in the journal (1000000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated log (1)")
    p.add_argument("--runs", type=int, default=RUNS, help=f"runs of each timed reader but fail2ban ({RUNS})")
    p.add_argument("--no-fail2ban", action="store_true", help="skip fail2ban (a minute or more)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of all the figures")
    p.add_argument("--cache", type=Path, default=mail_log.OUT, metavar="DIR",
                   help="where generated logs and journals are kept (bench/out)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    out = sys.stdout
    report: dict = {"machine": machine()}
    m = report["machine"]
    out.write(f"machine   {m['cpu']}, {m['cores']} cores; {m['python']}\n")
    why = journals.missing()
    if why is not None or journals.JOURNALCTL is None:
        print(f"journal: cannot build or read journals here: {why or 'journalctl is not installed'}", file=sys.stderr)
        return 2

    try:
        directory, log, info = build(args.entries, args.seed, args.cache)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"journal: building it failed: {e}", file=sys.stderr)
        return 2
    report["journal"] = {**info, "path": str(directory)}
    out.write(f"journal   {directory}\n"
              f"          {args.entries:,} entries in {len(info['files'])} file(s), {info['bytes'] / 1e6:.0f} MB, "
              f"made of {log.name}"
              + ("" if info["log_cached"] else f" (generated in {info['log_seconds']:.1f} s)") + "; "
              + (f"cached (built in {info['build_seconds']:.1f} s)" if info["cached"]
                 else f"built in {info['build_seconds']:.1f} s by systemd-journal-remote") + "\n")
    out.flush()

    status = 0
    try:
        filters = load_directory(SHIPPED_FILTERS)
        runs = [run_adaptive(directory, filters) for _ in range(args.runs)]
        file = run_file(log, filters)
    except ReaderError as e:
        print(f"adaptive: {e}", file=sys.stderr)
        return 2
    a = _best(runs)
    a_rate = a["entries"] / a["seconds"]
    report["adaptive"] = {**a, "entries_per_s": a_rate, "runs": [r["seconds"] for r in runs], "file": file}
    out.write(f"adaptive  {a_rate:>12,.0f} entries/s  JournalSource + one engine: best of {args.runs}: "
              f"{a['seconds']:.3f} s ({_times(runs)})\n"
              f"          {a['entries']:,} entries in {a['chunks']} chunks, {a['matched']:,} matched, "
              f"{a['ignored']:,} ignored, {a['events']:,} events ({a['abuse_events']:,} of abuse), "
              f"{a['unparsable']:,} unparsable; the log file made {file['events']:,} events\n")
    if a["entries"] != args.entries or a["events"] != file["events"] or a["unparsable"]:
        print(f"adaptive: the journal gave {a['entries']} entries and {a['events']} events "
              f"({a['unparsable']} unparsable), the log file {file['lines']} lines and {file['events']} events",
              file=sys.stderr)
        status = 2
    out.flush()

    runs = [run_binding(directory) for _ in range(args.runs)]
    b = _best(runs)
    b_rate = b["entries"] / b["seconds"]
    report["binding"] = {**b, "entries_per_s": b_rate, "runs": [r["seconds"] for r in runs]}
    out.write(f"binding   {b_rate:>12,.0f} entries/s  python-systemd alone, _next() and MESSAGE: best of "
              f"{args.runs}: {b['seconds']:.3f} s ({_times(runs)})\n")
    out.flush()

    floor: dict = {}
    try:
        for matched in (False, True):
            runs = [run_journalctl(directory, matched) for _ in range(args.runs)]
            j = _best(runs)
            n = count_journalctl(directory, matched)
            floor["matched" if matched else "all"] = {**j, "entries": n, "entries_per_s": n / j["seconds"],
                                                      "runs": [r["seconds"] for r in runs]}
            out.write(f"{'journalctl' if not matched else '':10}{n / j['seconds']:>12,.0f} entries/s  "
                      f"{'with adaptive' + chr(39) + 's matches' if matched else 'all entries'}, -o cat > "
                      f"/dev/null: best of {args.runs}: {j['seconds']:.3f} s ({_times(runs)}); {n:,} entries\n")
    except ReaderError as e:
        print(f"journalctl: {e}", file=sys.stderr)
        return 2
    fastest = max(floor, key=lambda k: floor[k]["entries_per_s"])
    floor["floor"] = fastest
    report["journalctl"] = floor
    j_rate = floor[fastest]["entries_per_s"]
    out.flush()

    f_rate = None
    if args.no_fail2ban:
        out.write("fail2ban  skipped (--no-fail2ban)\n")
    elif shutil.which("fail2ban-regex") is None:
        out.write("fail2ban  skipped: fail2ban-regex is not installed (apt-get install fail2ban)\n")
    else:
        try:
            f2b = [run_fail2ban(directory, flt, match) for flt, match in FAIL2BAN]
        except ReaderError as e:
            print(f"fail2ban: {e}", file=sys.stderr)
            status = 2
        else:
            total = sum(r["seconds"] for r in f2b)
            f_rate = args.entries / total
            version = subprocess.run(["fail2ban-regex", "-V"], capture_output=True, text=True).stdout.strip()
            report["fail2ban"] = {"version": version, "runs": f2b, "seconds": total, "entries_per_s": f_rate,
                                  "entries": sum(r["entries"] for r in f2b), "matched": sum(r["matched"] for r in f2b)}
            out.write(f"fail2ban  {f_rate:>12,.0f} entries/s  {total:.1f} s for both filters (fail2ban {version}); "
                      f"{report['fail2ban']['matched']:,} matched (adaptive: {a['abuse_events']:,} events of abuse)\n")
            for r in f2b:
                own = r["own_journalmatch"]
                out.write(f"          {r['filter']}: {r['seconds']:.1f} s, {r['matched']:,} matched of the "
                          f"{r['entries']:,} entries of {r['journalmatch'] or '(no match: all)'}"
                          + (f" (its filter's own: {own})" if own and own != r["journalmatch"] else "") + "\n")
            if report["fail2ban"]["entries"] != args.entries:
                out.write(f"          note: fail2ban read {report['fail2ban']['entries']:,} entries of "
                          f"{args.entries:,}\n")

    side = [("journalctl", j_rate), ("python-systemd", b_rate), ("adaptive", a_rate)]
    if f_rate is not None:
        side.append(("fail2ban", f_rate))
    out.write("ratios    entries/s as a multiple of adaptive's: "
              + ", ".join(f"{who} {rate / a_rate:.2f}x" for who, rate in side) + "\n")
    goals = {}
    if f_rate is not None:
        x = a_rate / f_rate
        goals["vs_fail2ban"] = {"ratio": x, "goal": GOAL_FAIL2BAN, "pass": x >= GOAL_FAIL2BAN}
        out.write(f"{'PASS' if x >= GOAL_FAIL2BAN else 'FAIL'}      adaptive is {x:.1f}x fail2ban "
                  f"(goal: at least {GOAL_FAIL2BAN:.0f}x)\n")
        if x < GOAL_FAIL2BAN:
            # The goal is out of reach of any reader through libsystemd when its floor does not reach it.
            out.write(f"          the floor itself: journalctl is {j_rate / f_rate:.1f}x fail2ban, python-systemd's "
                      f"bare loop {b_rate / f_rate:.1f}x\n")
    x = j_rate / a_rate
    goals["vs_floor"] = {"ratio": x, "goal": GOAL_FLOOR, "pass": x <= GOAL_FLOOR, "floor": fastest}
    out.write(f"{'PASS' if x <= GOAL_FLOOR else 'FAIL'}      journalctl "
              f"({'all entries' if fastest == 'all' else 'matched'}) is {x:.1f}x adaptive "
              f"(goal: at most {GOAL_FLOOR:.0f}x); python-systemd alone is {b_rate / a_rate:.1f}x\n")
    report["goals"] = goals
    if args.json:
        out.write(json.dumps(report) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
