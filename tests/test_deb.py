"""The Debian package, installed, upgraded and purged on fresh Debian 12 and 13 roots.

`make deb`'s script builds the package from this checkout (and a later version of it, to upgrade to);
each root is as debootstrap leaves it, with the package's dependencies in apt's cache, so apt installs
them there without the network (tests/debroot.py). The root runs as a machine of its own
(`debroot.Machine`) in a network namespace the test makes: its nftables table is that namespace's,
never the host's. What is checked is what an admin would see: the files in place, the unit enabled
and started only when there is a log to read, `check-config`, `ruleset --check` and `check` working,
a ban kept across an upgrade, and nothing left after a purge.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

import debroot
from netns import Namespaces

REPO = Path(__file__).resolve().parent.parent
VERSION = next(line.split('"')[1] for line in (REPO / "adaptive" / "__init__.py").read_text().splitlines()
               if line.startswith("__version__"))
LATER = f"{VERSION}+test1"
ROOTS = ["bookworm-fresh", "trixie-fresh"]

SAMPLE = (
    "Nov 24 10:00:01 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x\n"
    "Nov 24 10:00:02 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, "
    "method=PLAIN, rip=198.51.100.7, lip=192.0.2.25, TLS, session=<abc>\n"
)


def _why_not() -> str:
    if shutil.which("dpkg-buildpackage") is None:
        return "needs dpkg-buildpackage and debhelper (./setup.sh test installs them)"
    for name in ROOTS:
        if why := debroot.missing(name):
            return why
    return ""


_missing = _why_not()


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> Path:
    if _missing:
        pytest.skip(_missing)
    out = tmp_path_factory.mktemp("debs")
    for version in ((), (LATER,)):
        done = subprocess.run([str(REPO / "debian" / "build.sh"), str(out), *version], capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    return out


def ok(box: debroot.Machine, *command: str, input: str | None = None) -> str:
    done = box.run(list(command), input=input)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def wait_for(box: debroot.Machine, daemon: subprocess.Popen, *command: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        done = box.run(list(command))
        if done.returncode == 0:
            return done.stdout
        assert daemon.poll() is None, f"the daemon exited {daemon.returncode}: {daemon.stderr.read()}"
        assert time.monotonic() < deadline, f"{command}: {done.stderr}"
        time.sleep(0.1)


def start(box: debroot.Machine) -> subprocess.Popen:
    daemon = box.popen(["adaptive", "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(box, daemon, "adaptive", "status")
    return daemon


def stop(daemon: subprocess.Popen) -> None:
    daemon.terminate()
    assert daemon.wait(timeout=30) == 0, daemon.stderr.read()
    daemon.stderr.close()


@pytest.mark.parametrize("name", ROOTS)
def test_install_upgrade_and_purge(name, debs, capsys):
    root = debroot.root(name)
    first, later = debs / f"adaptive_{VERSION}_all.deb", debs / f"adaptive_{LATER}_all.deb"
    with Namespaces() as nets, debroot.Machine(root, netns=nets.add("deb").name, binds=[debs]) as box:
        # --- install: no mail log yet, so the unit is enabled but nothing starts ---
        started = time.monotonic()
        out = ok(box, "apt-get", "install", "-y", "-q", "--no-install-recommends", str(first),
                 "nftables")
        installed = time.monotonic() - started
        assert "adaptive: not started: configuration ok" in out and "/var/log/mail.log missing" in out, out
        for path in ("/usr/bin/adaptive", "/etc/adaptive/adaptive.toml", "/etc/adaptive/adaptive.d",
                     "/usr/share/adaptive/filters/postfix.toml", "/usr/share/man/man8/adaptive.8.gz",
                     "/usr/share/bash-completion/completions/adaptive",
                     "/usr/share/adaptive/prometheus/adaptive.rules.yml",
                     "/etc/systemd/system/multi-user.target.wants/adaptive.service"):
            ok(box, "test", "-e", path)
        unit = ok(box, "cat", "/lib/systemd/system/adaptive.service")
        assert "ExecStart=/usr/bin/adaptive run" in unit and "ProtectHome=yes" in unit, unit
        assert ok(box, "stat", "-c", "%a", "/var/lib/adaptive").strip() == "700"
        assert "/etc/adaptive/adaptive.toml" in ok(box, "cat", "/var/lib/dpkg/info/adaptive.conffiles")

        # --- the commands an admin runs first, from the package's Python and Debian's libraries ---
        assert "configuration ok" in ok(box, "adaptive", "check-config")
        assert "checked by the kernel, nothing applied" in ok(box, "adaptive", "ruleset", "--check")
        ok(box, "sh", "-c", "cat > /tmp/sample.log", input=SAMPLE)
        checked = ok(box, "adaptive", "check", "--json", "/tmp/sample.log")
        assert '"ip": "192.0.2.1"' in checked and '"ip": "198.51.100.7"' in checked, checked
        assert VERSION in ok(box, "adaptive", "--version")

        # --- the daemon, a ban, then an upgrade: the ban survives in the state and in the kernel ---
        ok(box, "touch", "/var/log/mail.log")
        daemon = start(box)
        ok(box, "adaptive", "ban", "203.0.113.7", "--for", "2h")
        assert "203.0.113.7" in ok(box, "nft", "list", "set", "inet", "adaptive", "ban4")
        stop(daemon)
        out = ok(box, "apt-get", "install", "-y", "-q", str(later))
        assert "configuration ok" in out and "not started" not in out, out
        assert LATER.split("+")[0] in ok(box, "adaptive", "--version")
        assert "203.0.113.7" in ok(box, "nft", "list", "set", "inet", "adaptive", "ban4")
        daemon = start(box)
        listed = ok(box, "adaptive", "list")
        assert "203.0.113.7" in listed, listed
        stop(daemon)

        # --- purge: no table, no state, no unit, no configuration ---
        out = ok(box, "apt-get", "purge", "-y", "-q", "adaptive")
        assert box.run(["nft", "list", "table", "inet", "adaptive"]).returncode != 0
        for path in ("/var/lib/adaptive", "/etc/adaptive", "/usr/bin/adaptive", "/usr/share/adaptive",
                     "/lib/systemd/system/adaptive.service",
                     "/etc/systemd/system/multi-user.target.wants/adaptive.service"):
            assert box.run(["test", "-e", path]).returncode != 0, f"{path} left after purge\n{out}"
    with capsys.disabled():
        print(f"\n{name}: {first.name} {first.stat().st_size / 1024:.0f} KiB, installed with its dependencies "
              f"in {installed:.1f} s")
