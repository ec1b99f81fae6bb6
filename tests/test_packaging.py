"""Packaging: a wheel holds its filters and runs from any directory, away from the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LOG = (
    "Nov 24 10:00:01 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x\n"
    "Nov 24 10:00:02 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, "
    "method=PLAIN, rip=198.51.100.7, lip=192.0.2.25, TLS, session=<abc>\n"
)


def _run(*cmd: str | Path, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel .` of the checkout (no build isolation: the venv's setuptools, no download)."""
    out = tmp_path_factory.mktemp("wheels")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, ROOT)
    [built] = out.glob("adaptive_blocker-*.whl")
    return built


def test_the_wheel_carries_the_filters_and_the_type_marker(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "adaptive" / "filters" / "shipped").glob("*.toml")}
    assert shipped and {f"adaptive/filters/shipped/{n}" for n in shipped} <= names
    assert "adaptive/py.typed" in names
    assert not any(n.startswith(("tests/", "bench/", "demo/")) for n in names)


def test_a_wheel_installed_in_a_new_venv_checks_a_log_from_any_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    site = Path(_run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                .stdout.strip())
    # The wheel alone, installed by this venv's pip into the new one; its dependencies (regex, watchdog,
    # prometheus-client, Debian's nftables) are read from this venv's site directories, after its own.
    _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", site, wheel)
    deps = [sysconfig.get_path("purelib"), *(p for p in sys.path if p.endswith("dist-packages"))]
    (site / "zz-deps.pth").write_text("".join(f"{p}\n" for p in deps))
    log = tmp_path / "mail.log"
    log.write_text(LOG)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run(venv / "bin" / "python", "-c", "import adaptive.config as c; print(c.__file__, c.SHIPPED_FILTERS)",
                 cwd=elsewhere, env=env).stdout.split()
    assert all(w.startswith(str(site)) for w in where), where
    done = _run(venv / "bin" / "python", "-m", "adaptive", "check", "--json", log, cwd=elsewhere, env=env)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["rule"], e["ip"]) for e in events] == [("sasl-auth-failed", "192.0.2.1"),
                                                       ("login-auth-failed", "198.51.100.7")], done.stdout
