"""How fast scoring (and decisions) take events, and what a tracked source costs in memory.

    python bench/scoring.py [--lines N] [--seed S] [--sources N] [--cache DIR]

1. memory: a fresh scorer is fed one failed login from each of `--sources` distinct sources (a million
   by default; one in seven an IPv6 /64, every other one with a user name, as the attack lines have
   them), with room for all of them; the process's resident memory before and after, over the sources
   tracked, is the cost of one (burst windows included, they are bounded by `burst_events`). The
   table's own parts are listed beside it, as `sys.getsizeof` and the arrays count them.
2. the realistic mix: the events of the generated log (`bench/mail_log.py`, cached in `bench/out/`),
   read once with the shipped filters, then fed in order to a fresh scorer: best of 3. Then the same
   through decisions too (`adaptive.decisions.Decider`, state in memory), if decisions is there.
3. the flood: the distinct sources again, through a scorer with room for all, then through one at
   the shipped cap, which evicts in batches as they come.

Then the goals, as PASS/FAIL lines: at least 500,000 events/s through scoring and decisions on the
realistic mix, at most 200 bytes per tracked source.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from adaptive import config  # noqa: E402
from adaptive.config import SHIPPED_FILTERS, ScoringConfig  # noqa: E402
from adaptive.control.check import CHUNK, chunks  # noqa: E402
from adaptive.events import Event, Kind  # noqa: E402
from adaptive.filters.engine import Engine  # noqa: E402
from adaptive.filters.prefix import YearGuess  # noqa: E402
from adaptive.filters.rules import load_directory  # noqa: E402
from adaptive.pipeline import Pipeline  # noqa: E402
from adaptive.scoring import Scorer  # noqa: E402
from adaptive.state import State  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mail_log  # noqa: E402

RUNS = 3
GOAL_RATE = 500_000      # events/s through scoring and decisions, realistic mix
GOAL_BYTES = 200         # resident bytes per tracked source
SHIPPED = Path(__file__).resolve().parent.parent / "conf" / "adaptive.toml"
T0 = 1_764_000_000.0


def resident() -> int:
    """Resident memory of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def distinct(n: int):
    """One failed login from each of n sources, a tenth of a second apart (a generator: nothing kept)."""
    for i in range(n):
        if i % 7 == 3:
            ip = f"2001:db8:{i >> 16 & 0xFFFF:x}:{i & 0xFFFF:x}::1"
        else:
            rest = i // 223   # the first byte all over the range, as real addresses are
            ip = f"{1 + i % 223}.{rest >> 16 & 255}.{rest >> 8 & 255}.{rest & 255}"
        if i & 1:
            yield Event(T0 + i * 0.1, "postfix", "postfix", "sasl-auth-failed", Kind.AUTH_FAILURE, ip)
        else:
            yield Event(T0 + i * 0.1, "dovecot", "dovecot", "login-auth-failed", Kind.AUTH_FAILURE, ip,
                        "admin", None, 1)


def measure_memory(settings: ScoringConfig, n: int) -> dict:
    gc.collect()
    scorer = Scorer(settings)
    before = resident()
    for event in distinct(n):
        scorer.feed(event)
    gc.collect()
    after = resident()
    t = scorer.table
    tracked = len(scorer)
    parts = {
        "index (dict)": sys.getsizeof(t.index),
        "keys (ints)": sum(sys.getsizeof(k) for k in t.index),
        "slots (ints)": sum(sys.getsizeof(s) for s in t.index.values()),
        "columns": sum(c.buffer_info()[1] * c.itemsize for c in
                       (t.time, t.expiry, t.score, t.fixed, t.slow, t.slow_fixed, t.flags, t.pending,
                        t.unpaired, t.paired_at, t.rule, t.hits, t.rule2, t.hits2)),
    }
    return {"tracked": tracked, "bytes": after - before, "per_source": (after - before) / max(1, tracked),
            "parts": {k: v / max(1, tracked) for k, v in parts.items()},
            "windows": len(scorer.dictionary.entries)}


def log_events(path: Path) -> list[Event]:
    engine = Engine(load_directory(SHIPPED_FILTERS), YearGuess(os.stat(path).st_mtime))
    events: list[Event] = []
    with open(path, "rb") as stream:
        for chunk in chunks(stream, CHUNK):
            events += [event for _, event in engine.scan(chunk)]
    return events


def run_scoring(settings: ScoringConfig, events) -> dict:
    scorer = Scorer(settings)
    feed = scorer.feed
    offences = 0
    n = 0
    started = time.perf_counter()
    for event in events:
        n += 1
        if feed(event):
            offences += 1
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "events": n, "rate": n / seconds, "offences": offences,
            "tracked": len(scorer), "evictions": scorer.evictions}


def run_decisions(cfg: config.Config, events: list[Event]) -> dict:
    """Scoring and decisions as the daemon runs them (`adaptive.pipeline`), on a state in memory."""
    state = State(":memory:")
    pipeline = Pipeline.build(cfg, load_directory(SHIPPED_FILTERS), state, clock=time.time)
    feed = pipeline.feed
    decisions = 0
    started = time.perf_counter()
    for event in events:
        decisions += len(feed(event))
    seconds = time.perf_counter() - started
    state.close()
    return {"seconds": seconds, "events": len(events), "rate": len(events) / seconds, "decisions": decisions}


def _times(runs: list[dict]) -> str:
    return ", ".join(f"{r['seconds']:.3f}" for r in runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=1_000_000, help="lines in the generated log (1000000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated log (1)")
    p.add_argument("--sources", type=int, default=1_000_000, help="distinct sources (1000000)")
    p.add_argument("--cache", type=Path, default=mail_log.OUT, metavar="DIR",
                   help="where generated logs are kept (bench/out)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = p.parse_args(argv)
    out = sys.stdout
    cfg = config.load([SHIPPED], dropins=None)
    roomy = ScoringConfig(**{**cfg.scoring.__dict__, "max_sources": args.sources})

    # 1. memory first, while the process is fresh
    m = measure_memory(roomy, args.sources)
    out.write(f"memory    {m['per_source']:>12,.0f} bytes/source resident: {m['bytes'] / 1e6:,.0f} MB for "
              f"{m['tracked']:,} sources tracked ({m['windows']:,} events in the dictionary window)\n")
    out.write("          the table's parts per source: "
              + ", ".join(f"{k} {v:.0f}" for k, v in m["parts"].items())
              + f" = {sum(m['parts'].values()):.0f}\n")
    out.flush()
    gc.collect()

    # 2. the realistic mix
    path = mail_log.cached(args.lines, args.seed, "classic", args.cache)
    read = time.perf_counter()
    events = log_events(path)
    read = time.perf_counter() - read
    out.write(f"log       {path}: {len(events):,} events (read in {read:.1f} s, not counted)\n")
    runs = [run_scoring(cfg.scoring, events) for _ in range(RUNS)]
    best = max(runs, key=lambda r: r["rate"])
    out.write(f"scoring   {best['rate']:>12,.0f} events/s  realistic mix: best of {RUNS} "
              f"({_times(runs)} s), {best['offences']:,} events offended, "
              f"{best['tracked']:,} sources tracked\n")
    decided = [run_decisions(cfg, events) for _ in range(RUNS)]
    through = max(decided, key=lambda r: r["rate"])
    out.write(f"decisions {through['rate']:>12,.0f} events/s  realistic mix through scoring and decisions: "
              f"best of {RUNS} ({_times(decided)} s), "
              f"{through['decisions']:,} decisions\n")
    del events
    gc.collect()
    out.flush()

    # 3. the flood of distinct sources
    flood = run_scoring(roomy, list(distinct(args.sources)))
    out.write(f"flood     {flood['rate']:>12,.0f} events/s  {flood['events']:,} distinct sources, "
              f"room for all\n")
    capped = run_scoring(cfg.scoring, list(distinct(args.sources)))
    out.write(f"          {capped['rate']:>12,.0f} events/s  the same at the shipped cap of "
              f"{cfg.scoring.max_sources:,}: {capped['evictions']:,} evicted, {capped['tracked']:,} tracked\n")

    rate_ok = through["rate"] >= GOAL_RATE
    bytes_ok = m["per_source"] <= GOAL_BYTES
    out.write(f"{'PASS' if rate_ok else 'FAIL'}  {through['rate']:,.0f} events/s through scoring and decisions, "
              f"goal at least {GOAL_RATE:,}\n")
    out.write(f"{'PASS' if bytes_ok else 'FAIL'}  {m['per_source']:,.0f} bytes per tracked source, "
              f"goal at most {GOAL_BYTES}\n")
    if args.json:
        out.write(json.dumps({"scoring_events_per_s": best["rate"], "events_per_s": through["rate"],
                              "bytes_per_source": m["per_source"], "sources": m["tracked"]}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
