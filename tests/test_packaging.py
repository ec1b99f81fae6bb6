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


def _commands() -> set[str]:
    from adaptive.control.cli import build_parser
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)


def test_the_bash_completion_and_the_man_page_know_every_command():
    completion = (ROOT / "conf" / "bash-completion" / "adaptive").read_text()
    [listed] = [line.split('"')[1] for line in completion.splitlines() if line.strip().startswith("local commands=")]
    assert set(listed.split()) == _commands()
    page = (ROOT / "docs" / "adaptive.8").read_text()
    described = {line.split()[1].replace("\\-", "-") for line in page.splitlines() if line.startswith(".B ")
                 and line.split()[1].replace("\\-", "-") in _commands() | {"import"}}
    assert described == _commands()


def test_bash_completes_commands_and_options():
    helpers = Path("/usr/share/bash-completion/bash_completion")
    if not helpers.exists():
        pytest.skip("needs bash-completion (./setup.sh test installs it)")
    script = (f"source {helpers}; source {ROOT}/conf/bash-completion/adaptive; "
              "COMP_WORDS=(adaptive check-c); COMP_CWORD=1; COMP_LINE='adaptive check-c'; COMP_POINT=16; "
              "_adaptive; echo \"${COMPREPLY[@]}\"; "
              "COMP_WORDS=(adaptive ruleset --ch); COMP_CWORD=2; COMP_LINE='adaptive ruleset --ch'; COMP_POINT=21; "
              "_adaptive; echo \"${COMPREPLY[@]}\"")
    bindir = Path(sys.executable).parent
    done = _run("bash", "-c", script, env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert done.stdout.splitlines() == ["check-config", "--check"], done.stdout


def test_the_debian_changelog_is_of_this_version():
    from adaptive import __version__
    head = (ROOT / "debian" / "changelog").read_text().splitlines()[0]
    assert head.startswith(f"adaptive ({__version__}) "), head
