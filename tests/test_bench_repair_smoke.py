"""bench/repair.py runs and prints its figures: a quick run with few bans and looks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netns import missing

BENCH = Path(__file__).resolve().parent.parent / "bench"

_missing = missing()
pytestmark = pytest.mark.skipif(bool(_missing), reason=_missing)


def test_the_repair_benchmark_runs_and_prints_its_figures():
    done = subprocess.run([sys.executable, str(BENCH / "repair.py"), "--bans", "2000", "--looks", "5", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert any(line.startswith("  2,000 bans: a look") for line in lines), done.stdout
    figures = json.loads(lines[-1])["by_bans"]
    assert sorted(figures, key=int) == ["0", "1000", "2000"]
    for f in figures.values():
        assert 0 < f["look_seconds"] < f["script_seconds"] and f["repair_seconds"] > 0
