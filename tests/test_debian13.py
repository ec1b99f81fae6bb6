"""adaptive's own tests on Debian 13: its Python 3.13, python3-nftables and nftables 1.1.3, regex, watchdog
and prometheus_client, run in the trixie root `debroot` caches (chrooted, the checkout bound at its own
path, in a mount namespace of its own; network namespaces made there stay there).

Not the whole suite: the kernel (nftables) files, the filters and scoring, and the daemon's files but
for four volume tests (100,000 bans, a ban storm) that Debian 12's run times already, and which take
a minute and a half more here. The end-to-end scene runs against Debian 13's servers in test_e2e.py.
"""

from __future__ import annotations

import os
import re
import time

import pytest

import debroot
from netns import REPO

SUITE = "trixie"
FILES = ["tests/test_nftables_kernel.py", "tests/test_nftables_build.py", "tests/test_filters.py",
         "tests/test_scoring.py", "tests/test_scoring_replay.py", "tests/test_daemon.py"]
LEFT_OUT = ["100000_live_bans", "whatever_the_number_of_bans", "ten_kill_9_during_an_attack",
            "flushed_or_replaced_table"]

_missing = debroot.missing(SUITE) if os.geteuid() == 0 else "needs root (chroot, mount namespaces)"
if _missing:
    print(f"test_debian13: skipped: {_missing}")
pytestmark = pytest.mark.skipif(bool(_missing), reason=_missing)


@pytest.fixture(scope="module")
def root():
    return debroot.root(SUITE)


def test_the_root_has_debian_13s_python_and_nftables(root):
    done = debroot.run(root, ["sh", "-c", "python3 --version; nft --version; python3 -c 'import nftables, regex, "
                                          "watchdog, prometheus_client, pytest, hypothesis'"], timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^Python 3\.13\.", done.stdout, re.M), done.stdout
    assert re.search(r"^nftables v1\.1\.3 ", done.stdout, re.M), done.stdout


def test_adaptives_tests_pass_on_debian_13(root):
    started = time.monotonic()
    command = ["env", "ADAPTIVE_TEST_PYTHON=/usr/bin/python3", f"PYTHONPATH={REPO}", "PYTHONDONTWRITEBYTECODE=1",
               "python3", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs",
               "-k", " and ".join(f"not {name}" for name in LEFT_OUT), *FILES]
    done = debroot.run(root, command, binds=[REPO], cwd=REPO, timeout=1200)
    took = time.monotonic() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    print(f"test_debian13: {summary} ({took:.0f} s in the {SUITE} root)")
    assert done.returncode == 0, f"{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
    assert re.search(r"\d+ passed", summary) and "failed" not in summary and "error" not in summary, done.stdout
