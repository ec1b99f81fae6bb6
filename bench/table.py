"""Every benchmark, then one table: what `make bench` prints.

    .venv/bin/python bench/table.py

Runs `parse.py`, `journal.py`, `latency.py` (on a file, then `--journal`), `nft.py`, `repair.py` and
`scoring.py`, each with `--json` (their own output goes to stderr as they run, so progress shows), and
prints their figures side by side with fail2ban's (or one `nft` process per ban, or journalctl) and the
ratios, as a Markdown table the README can hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> dict:
    """A benchmark's figures: the JSON object on the last line it prints."""
    done = subprocess.run([sys.executable, str(HERE / script), "--json", *args], stdout=subprocess.PIPE,
                          text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    sys.stderr.write(done.stdout)
    if done.returncode != 0 or not lines:
        raise SystemExit(f"bench/{script} failed (exit {done.returncode})")
    return json.loads(lines[-1])


def machine() -> str:
    from parse import machine as described  # bench/ is on the path: this script runs from it
    m = described()
    return f"{m['cpu']}, {m['cores']} cores, {m['python']}"


def main() -> int:
    parse = run("parse.py")
    journal = run("journal.py")
    latency = run("latency.py")
    journald = run("latency.py", "--journal")
    nft = run("nft.py")
    repair = run("repair.py")
    scoring = run("scoring.py")
    a, f = parse["adaptive"]["lines_per_s"], parse.get("fail2ban", {}).get("lines_per_s")
    ja, jf = journal["adaptive"]["entries_per_s"], journal.get("fail2ban", {}).get("entries_per_s")
    floor = journal["journalctl"][journal["journalctl"]["floor"]]["entries_per_s"]
    la, lf = latency["adaptive"]["latency"], latency.get("fail2ban", {}).get("latency")
    ja_l, jf_l = journald["adaptive"]["latency"], journald.get("fail2ban", {}).get("latency")
    rows = [
        ("parse, lines/s (`adaptive check`)", f"{a:,.0f}", f"{f:,.0f}" if f else "–",
         f"{a / f:,.1f}×" if f else "–"),
        ("parse, lines/s (one engine: the daemon)", f"{parse['engine']['lines_per_s']:,.0f}",
         f"{f:,.0f}" if f else "–", f"{parse['engine']['lines_per_s'] / f:,.1f}×" if f else "–"),
        ("journal, entries/s (the daemon's source and engine)", f"{ja:,.0f}", f"{jf:,.0f}" if jf else "–",
         f"{ja / jf:,.1f}×" if jf else "–"),
        ("journal, entries/s (vs `journalctl -o cat > /dev/null`, the floor)", f"{ja:,.0f}", f"{floor:,.0f}",
         f"{ja / floor:,.2f}×"),
        ("log line → kernel ban, p50", f"{la['median'] * 1000:.1f} ms",
         f"{lf['median'] * 1000:.0f} ms" if lf else "–", f"{lf['median'] / la['median']:,.0f}×" if lf else "–"),
        ("log line → kernel ban, p99", f"{la['p99'] * 1000:.1f} ms",
         f"{lf['p99'] * 1000:.0f} ms" if lf else "–", f"{lf['p99'] / la['p99']:,.0f}×" if lf else "–"),
        ("syslog(3) to journald → kernel ban, p50", f"{ja_l['median'] * 1000:.1f} ms",
         f"{jf_l['median'] * 1000:.0f} ms" if jf_l else "–",
         f"{jf_l['median'] / ja_l['median']:,.0f}×" if jf_l else "–"),
        ("syslog(3) to journald → kernel ban, p99", f"{ja_l['p99'] * 1000:.1f} ms",
         f"{jf_l['p99'] * 1000:.0f} ms" if jf_l else "–", f"{jf_l['p99'] / ja_l['p99']:,.0f}×" if jf_l else "–"),
        (f"bans/s, {nft['bans']:,} in one batch (vs one `nft` process per ban)", f"{nft['bans_per_s']:,.0f}",
         f"{nft['process_bans_per_s']:,.0f}", f"{nft['ratio']:,.0f}×"),
        (f"restore {nft['bans']:,} bans into a fresh table", f"{nft['restore_seconds']:.2f} s", "", ""),
        *[(f"a look at the table (every second), {int(n):,} bans (vs an `nft -t list table` process)",
           f"{r['look_seconds'] * 1000:.2f} ms", f"{r['script_seconds'] * 1000:.0f} ms",
           f"{r['script_seconds'] / r['look_seconds']:,.0f}×")
          for n, r in repair["by_bans"].items() if int(n) == max(map(int, repair["by_bans"]))],
        *[(f"repair after `nft flush ruleset`, {int(n):,} bans back", f"{r['repair_seconds']:.2f} s", "", "")
          for n, r in repair["by_bans"].items() if int(n)],
        ("events/s through scoring and decisions", f"{scoring['events_per_s']:,.0f}", "", ""),
        (f"memory per tracked source ({scoring['sources']:,} tracked)", f"{scoring['bytes_per_source']:.0f} B",
         "", ""),
    ]
    # The command-line import and the start-up restore: adaptive's N against fail2ban's (smaller) N, as
    # rates, with each count and time said.
    ra, rf = latency.get("adaptive", {}).get("restore", {}), latency.get("fail2ban", {}).get("restore", {})
    for what, key in (("ban through the command line (`ban --from-file` / `banip`)", "ban_seconds"),
                      ("start-up: restored into the kernel", "seconds")):
        if ra.get(key):
            ours = ra["bans"] / ra[key]
            theirs = rf["bans"] / rf[key] if rf.get(key) else None
            rows.append((f"{what}, bans/s", f"{ours:,.0f} ({ra['bans']:,} in {ra[key]:.2f} s)",
                         f"{theirs:,.0f} ({rf['bans']:,} in {rf[key]:.1f} s)" if theirs else "–",
                         f"{ours / theirs:,.0f}×" if theirs else "–"))
    pa, pf = latency.get("adaptive", {}).get("repair", {}), latency.get("fail2ban", {}).get("repair", {})

    def enforced(r: dict) -> str:
        if "seconds" in r:
            return f"all {r['bans']:,} in {r['seconds']:.2f} s"
        return f"{r['reached']:,} of {r['bans']:,} after {r['wait']:g} s" if "reached" in r else "–"
    if pa:
        rows.append(("bans enforced after `nft flush ruleset` and a new attack", enforced(pa), enforced(pf),
                     f"{pa.get('reached', 0):,} vs {pf['reached']:,}" if "reached" in pf else "–"))
    print(f"\nMeasured on {machine()}.\n")
    print("| figure | adaptive | fail2ban / one process | ratio |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
