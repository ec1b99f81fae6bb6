"""How fast adaptive reads a mail log, next to a bare Python read loop and to fail2ban.

    python bench/parse.py [--lines N] [--seed S] [--no-fail2ban] [--no-daemon] [--json] [--cache DIR]

All three read the same generated log (`bench/mail_log.py`, cached in `bench/out/`):

1. adaptive, in-process and exactly as `adaptive check` runs it: the file in chunks of complete lines
   (`adaptive.control.check.chunks`), each scanned by one `Engine` over the shipped filters; best of 3.
2. a bare `for line in file: n += 1` over the same file, binary; best of 3. No parser can beat it.
3. `fail2ban-regex` with Debian's `postfix[mode=aggressive]` filter, then its `dovecot` filter: two
   reads, whose times are added, since adaptive reads the file once for both. `--no-check-all` makes it
   stop at the first matching regex as the fail2ban daemon does, and `--usedns=no` keeps it from
   resolving names, as a jail with `usedns = no`; one run each (it takes a minute or so for 1M lines).

Then the daemon's own loop over the same log (`Daemon.poll_once`: the source, one engine, scoring,
decisions and the state, no kernel; best of 3), with the metrics off, then on: served over HTTP on
loopback and scraped ten times a second (150 times Prometheus' default), each scrape taking its census
on the loop's thread as in production. `--no-daemon` skips it.

Then the goals, as PASS/FAIL lines: adaptive at least 30 times fail2ban's lines/s, the bare loop at
most 3 times adaptive's, and the daemon with metrics on at most 5% slower than with them off. `--json`
adds one machine-readable line at the end. The exit status is 0 whatever the goals say, 2 when a
reader failed (its error is shown).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from adaptive import config as config_module  # noqa: E402
from adaptive.config import SHIPPED_FILTERS  # noqa: E402
from adaptive.control.check import CHUNK, chunks  # noqa: E402
from adaptive.filters.batch import MIN_PART, count_file  # noqa: E402
from adaptive.filters.engine import Engine  # noqa: E402
from adaptive.filters.prefix import YearGuess  # noqa: E402
from adaptive.filters.rules import Filter, load_directory  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mail_log  # noqa: E402

RUNS = 3
GOAL_FAIL2BAN = 30.0   # adaptive's lines/s at least this many times fail2ban's
GOAL_BARE = 3.0        # the bare loop's lines/s at most this many times adaptive's
GOAL_METRICS = 0.05    # the daemon with metrics on at most this much slower than with them off
SCRAPE_EVERY = 0.1     # seconds between scrapes while the daemon reads: 150 times Prometheus' default
FAIL2BAN_FILTERS = ("postfix[mode=aggressive]", "dovecot")
_F2B_LINES = re.compile(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", re.M)


class ReaderError(Exception):
    """A reader that failed; the message says where and shows what it printed."""


def machine() -> dict:
    """The CPU model, core count and Python that ran the benchmark."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "python": f"{platform.python_implementation()} {platform.python_version()}"}


def run_check(path: Path, filters: list[Filter]) -> dict:
    """`adaptive check FILE` as it runs: the summary of a whole file, one part per core."""
    started = time.perf_counter()
    engine = count_file(path, filters, os.stat(path).st_mtime)
    seconds = time.perf_counter() - started
    c = engine.counts
    return {"seconds": seconds, "lines": c.lines, "events": sum(c.events.values()),
            "matched": sum(c.matched.values()), "ignored": sum(c.ignored.values()),
            "unparsable": c.unparsable, "oversize": c.oversize, "bad_address": c.bad_address,
            "processes": min(len(os.sched_getaffinity(0)), max(1, path.stat().st_size // MIN_PART))}


def run_adaptive(path: Path, filters: list[Filter]) -> dict:
    """One engine in one process, a chunk at a time: the daemon's path (and `check --json`'s)."""
    started = time.perf_counter()
    engine = Engine(filters, YearGuess(os.stat(path).st_mtime))
    events = 0
    base = 0
    with open(path, "rb") as stream:
        for chunk in chunks(stream, CHUNK):
            try:
                events += len(engine.scan(chunk))
            except Exception as e:
                raise ReaderError(_culprit(path, filters, chunk, base, e)) from e
            base = engine.counts.lines
    seconds = time.perf_counter() - started
    c = engine.counts
    return {"seconds": seconds, "lines": c.lines, "events": events, "matched": sum(c.matched.values()),
            "ignored": sum(c.ignored.values()), "unparsable": c.unparsable, "oversize": c.oversize,
            "bad_address": c.bad_address}


def _culprit(path: Path, filters: list[Filter], chunk: bytes, base: int, error: Exception) -> str:
    """Which line of a chunk makes the engine throw, found by feeding a fresh engine line by line."""
    engine = Engine(filters, YearGuess(os.stat(path).st_mtime))
    for number, line in enumerate(chunk.splitlines(keepends=True), base + 1):
        try:
            engine.scan(line)
        except Exception as e:
            return f"{path}:{number}: the engine raised {type(e).__name__}: {e}\n  line: {line!r}"
    return f"{path}: the engine raised {type(error).__name__}: {error} on the chunk after line {base}, " \
           f"but on none of its lines alone"


def run_daemon(path: Path, metrics: bool) -> dict:
    """The daemon's loop over the whole file, no kernel; with `metrics`, its endpoint scraped every
    SCRAPE_EVERY seconds from another thread meanwhile."""
    from adaptive.daemon import Daemon
    with tempfile.TemporaryDirectory(prefix="adaptive-bench-") as tmp:
        listen = ""
        if metrics:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                listen = f"127.0.0.1:{s.getsockname()[1]}"
        config = config_module.build({"sources": {"mail": {"path": str(path), "start": "beginning"}},
                                      "state": {"path": f"{tmp}/state.db"}, "metrics": {"listen": listen}}, {})
        mtime = os.stat(path).st_mtime
        daemon = Daemon(config, enforce=False, control=False, clock=lambda: mtime)
        daemon.start()
        stop, scrapes = threading.Event(), []

        def scrape() -> None:
            while not stop.wait(SCRAPE_EVERY):
                started = time.perf_counter()
                with urllib.request.urlopen(f"http://{listen}/metrics", timeout=30) as reply:
                    reply.read()
                scrapes.append(time.perf_counter() - started)
        scraper = threading.Thread(target=scrape, daemon=True)
        try:
            started = time.perf_counter()
            if metrics:
                scraper.start()
            events = daemon.poll_once()
            seconds = time.perf_counter() - started
        finally:
            stop.set()
            if metrics:
                scraper.join(60)
            lines = daemon.followers[0].engine.counts.lines
            decisions = sum(v for k, v in daemon.counts.items() if k.startswith("decisions_"))
            daemon.close()
    return {"seconds": seconds, "lines": lines, "events": events, "decisions": decisions,
            "scrapes": len(scrapes), "scrape_seconds": max(scrapes, default=0.0)}


def run_bare(path: Path) -> dict:
    """The floor: count the lines of the file in a plain Python loop."""
    started = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for _ in f:
            n += 1
    return {"seconds": time.perf_counter() - started, "lines": n}


def run_fail2ban(path: Path, flt: str) -> dict:
    """One `fail2ban-regex` run of one filter over the file: wall time and what it matched."""
    command = ["fail2ban-regex", "--usedns=no", "--no-check-all", "--print-no-missed",
               "--encoding=utf-8", str(path), flt]
    started = time.perf_counter()
    # Its report is a short summary (missed lines are not printed): read it for the match count.
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
    lines, ignored, matched, missed = (int(x) for x in found.groups())
    return {"filter": flt, "command": command, "seconds": seconds, "lines": lines, "matched": matched,
            "ignored": ignored, "missed": missed}


def _best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def _times(runs: list[dict]) -> str:
    return ", ".join(f"{r['seconds']:.3f}" for r in runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=1_000_000, help="lines in the generated log (1000000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated log (1)")
    p.add_argument("--no-fail2ban", action="store_true", help="skip fail2ban (it takes a minute or so)")
    p.add_argument("--no-daemon", action="store_true", help="skip the daemon's loop, metrics off and on")
    p.add_argument("--json", action="store_true", help="end with one JSON line of all the figures")
    p.add_argument("--cache", type=Path, default=mail_log.OUT, metavar="DIR",
                   help="where generated logs are kept (bench/out)")
    args = p.parse_args(argv)
    out = sys.stdout
    report: dict = {"machine": machine()}
    m = report["machine"]
    out.write(f"machine   {m['cpu']}, {m['cores']} cores; {m['python']}\n")

    started = time.perf_counter()
    reused = mail_log.truth_path(mail_log.cache_path(args.lines, args.seed, "classic", args.cache)).exists()
    path = mail_log.cached(args.lines, args.seed, "classic", args.cache)
    made = time.perf_counter() - started
    truth = json.loads(mail_log.truth_path(path).read_text(encoding="utf-8"))
    attack = sum(truth["composition"]["attack"].values())
    size = path.stat().st_size
    report["log"] = {"path": str(path), "lines": truth["lines"], "bytes": size, "seed": args.seed,
                     "attack_lines": attack, "attackers": len(truth["attackers"]),
                     "legitimate": len(truth["legitimate"]), "cached": reused,
                     "ready_seconds": made}
    out.write(f"log       {path}\n"
              f"          {truth['lines']:,} lines, {size / 1e6:.0f} MB, {attack / truth['lines']:.1%} attack "
              f"lines from {len(truth['attackers']):,} addresses, {len(truth['legitimate']):,} legitimate "
              f"addresses ({'cached' if reused else f'generated in {made:.1f} s'})\n")
    out.flush()

    status = 0
    status_mismatch = False
    try:
        loaded = time.perf_counter()
        filters = load_directory(SHIPPED_FILTERS)
        loaded = time.perf_counter() - loaded
        runs = [run_check(path, filters) for _ in range(RUNS)]
        single = [run_adaptive(path, filters) for _ in range(RUNS)]
    except ReaderError as e:
        print(f"adaptive: {e}", file=sys.stderr)
        return 2
    a = _best(runs)
    a_rate = a["lines"] / a["seconds"]
    report["adaptive"] = {**a, "lines_per_s": a_rate, "runs": [r["seconds"] for r in runs],
                          "filters": len(filters), "load_seconds": loaded}
    out.write(f"adaptive  {a_rate:>12,.0f} lines/s  `adaptive check`, {a['processes']} processes: best of "
              f"{RUNS}: {a['seconds']:.3f} s ({_times(runs)}); {len(filters)} filters loaded in "
              f"{loaded:.2f} s\n"
              f"          {a['lines']:,} lines, {a['matched']:,} matched, {a['ignored']:,} ignored, "
              f"{a['events']:,} events, {a['unparsable']:,} unparsable\n")
    e = _best(single)
    e_rate = e["lines"] / e["seconds"]
    report["engine"] = {**e, "lines_per_s": e_rate, "runs": [r["seconds"] for r in single]}
    out.write(f"engine    {e_rate:>12,.0f} lines/s  one engine, one process (the daemon's path): best of "
              f"{RUNS}: {e['seconds']:.3f} s ({_times(single)}); {e['events']:,} events\n")
    if e["events"] != a["events"]:
        print(f"adaptive: one engine found {e['events']} events, the parts {a['events']}", file=sys.stderr)
        status_mismatch = True
    out.flush()

    if not args.no_daemon:
        # Off and on alternate, so that a machine slowing down or warming up weighs on both alike.
        pairs = [(run_daemon(path, False), run_daemon(path, True)) for _ in range(RUNS)]
        off, on = _best([p[0] for p in pairs]), _best([p[1] for p in pairs])
        cost = on["seconds"] / off["seconds"] - 1
        report["daemon"] = {"off": {**off, "lines_per_s": off["lines"] / off["seconds"],
                                    "runs": [p[0]["seconds"] for p in pairs]},
                            "on": {**on, "lines_per_s": on["lines"] / on["seconds"],
                                   "runs": [p[1]["seconds"] for p in pairs]},
                            "cost": cost, "scrape_every": SCRAPE_EVERY}
        out.write(f"daemon    {off['lines'] / off['seconds']:>12,.0f} lines/s  its loop, no kernel, metrics off: "
                  f"best of {RUNS}: {off['seconds']:.3f} s ({_times([p[0] for p in pairs])}); "
                  f"{off['events']:,} events, {off['decisions']:,} decisions\n"
                  f"          {on['lines'] / on['seconds']:>12,.0f} lines/s  metrics on, scraped every "
                  f"{SCRAPE_EVERY:g} s: best of {RUNS}: {on['seconds']:.3f} s ({_times([p[1] for p in pairs])}); "
                  f"{on['scrapes']} scrapes, the slowest {on['scrape_seconds'] * 1000:.0f} ms\n")
        out.flush()

    runs = [run_bare(path) for _ in range(RUNS)]
    b = _best(runs)
    b_rate = b["lines"] / b["seconds"]
    report["bare"] = {**b, "lines_per_s": b_rate, "runs": [r["seconds"] for r in runs]}
    out.write(f"bare loop {b_rate:>12,.0f} lines/s  best of {RUNS}: {b['seconds']:.3f} s "
              f"({_times(runs)})\n")
    out.flush()

    f_rate = None
    if args.no_fail2ban:
        out.write("fail2ban  skipped (--no-fail2ban)\n")
    elif shutil.which("fail2ban-regex") is None:
        out.write("fail2ban  skipped: fail2ban-regex is not installed (apt-get install fail2ban)\n")
    else:
        try:
            f2b = [run_fail2ban(path, flt) for flt in FAIL2BAN_FILTERS]
        except ReaderError as e:
            print(f"fail2ban: {e}", file=sys.stderr)
            status = 2
        else:
            total = sum(r["seconds"] for r in f2b)
            f_rate = truth["lines"] / total
            version = subprocess.run(["fail2ban-regex", "-V"], capture_output=True, text=True).stdout.strip()
            report["fail2ban"] = {"version": version, "runs": f2b, "seconds": total, "lines_per_s": f_rate,
                                  "matched": sum(r["matched"] for r in f2b)}
            out.write(f"fail2ban  {f_rate:>12,.0f} lines/s  {total:.1f} s for both filters (fail2ban {version})\n")
            for r in f2b:
                out.write(f"          {r['filter']}: {r['seconds']:.1f} s, {r['matched']:,} matched of "
                          f"{r['lines']:,} lines\n")

    goals = {}
    if f_rate is not None:
        x = a_rate / f_rate
        goals["vs_fail2ban"] = {"ratio": x, "goal": GOAL_FAIL2BAN, "pass": x >= GOAL_FAIL2BAN}
        out.write(f"{'PASS' if x >= GOAL_FAIL2BAN else 'FAIL'}      adaptive is {x:.1f}x fail2ban "
                  f"(goal: at least {GOAL_FAIL2BAN:.0f}x); one engine alone is {e_rate / f_rate:.1f}x\n")
    x = b_rate / a_rate
    goals["vs_bare"] = {"ratio": x, "goal": GOAL_BARE, "pass": x <= GOAL_BARE}
    out.write(f"{'PASS' if x <= GOAL_BARE else 'FAIL'}      the bare loop is {x:.1f}x adaptive "
              f"(goal: at most {GOAL_BARE:.0f}x); {b_rate / e_rate:.1f}x one engine alone\n")
    if "daemon" in report:
        cost = report["daemon"]["cost"]
        goals["metrics"] = {"cost": cost, "goal": GOAL_METRICS, "pass": cost <= GOAL_METRICS}
        out.write(f"{'PASS' if cost <= GOAL_METRICS else 'FAIL'}      the daemon with metrics on is "
                  f"{cost:+.1%} its time with them off (goal: at most {GOAL_METRICS:+.0%})\n")
    report["goals"] = goals
    if status_mismatch:
        status = 2
    if args.json:
        out.write(json.dumps(report) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
