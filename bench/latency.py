"""How soon a source is banned after its last failure is logged: adaptive next to Debian's fail2ban.

    .venv/bin/python bench/latency.py [--trials 60] [--restore 100000] [--f2b-restore 5000] [--json]
    .venv/bin/python bench/latency.py --journal [--trials 60] [--json]

Needs root, nftables, python3-nftables and fail2ban. Each tool runs in a network namespace of its own
(`adl-…`, created here and deleted afterwards, with every process started here), so neither the host's
firewall nor the system's fail2ban is ever touched; each follows a fresh log of its own in a temporary
directory, one tool after the other.

**Latency.** Both ban a source after the same number of failures: adaptive with its shipped scoring
(the number is worked out from `threshold` and the `auth_failure` weight: 5 with the defaults),
fail2ban's `postfix-sasl` jail (filter `postfix[mode=auth]`) with that `maxretry`, `findtime = 10m`,
`bantime = 1h`, `banaction = nftables` and the backend Debian ships (`auto`; which one that picked is
printed). A trial takes a fresh source address from 198.18.0.0/15 (a benchmark range: it is only
written into log lines, never sent a packet), each in a /24 of its own so that no subnet ban covers a
later one, and writes that many Postfix lines, in classic syslog format with the current time:

    Nov 24 10:00:01 mx postfix/smtpd[1234]: warning: unknown[198.18.1.1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6

All lines but the last are written first, and the tool is seen to have read them (adaptive's `status`
counts their events; fail2ban logs `Found ADDR` for each). After a pause drawn uniformly from
[0, --gap) seconds, so that the last line lands at a random point of fail2ban's polling cycle (2 s)
as an attacker's next attempt would, rather than just after a poll, a process inside the namespace
appends the last line with one `write`, takes t0, and polls the kernel (`get element` through
libnftables, about every half millisecond) until the address is in the tool's set: the latency is
t1 − t0. One warm-up trial per tool is not counted (fail2ban makes its table on its first ban).

**--journal**: the same trials with both tools following the systemd journal instead of a file: a
`systemd-journald` started here in a private mount namespace (`tests/journals.Journald`: a /run of
its own, volatile storage in the temporary directory), adaptive with a `type = "journal"` source on its
files, fail2ban with `backend = systemd[journalpath=...]` and `journalmatch = SYSLOG_FACILITY=2` (the
entries have no unit: journald runs outside systemd here). Each failure is the datagram syslog(3)
sends to /dev/log, sent to journald's socket; t0 is taken once it is sent, so the latency includes
journald storing the entry. The two tools use addresses of their own (each reads the whole journal).
Latency only: no restore or repair part.

**Restore.** The time from starting the tool until the kernel's set holds every ban of its state
again, as after a reboot: the running tool bans the addresses (adaptive: `adaptive ban --from-file`
over its socket; fail2ban: `fail2ban-client set JAIL banip`, in batches), is stopped, its table is
deleted if it left one, and it is started again; timed from the start until the set is full (64 of the
addresses are asked for by `get element` every few milliseconds; once they are all in, one listing of
the set counts it, and the time is that of the round of probes before it).

**Repair.** How many bans are enforced again after another tool flushes the ruleset, as `systemctl
restart nftables` does (Debian's nftables.conf begins with `flush ruleset`): the running tool bans
--repair addresses, `nft flush ruleset` runs in its namespace, and a fresh source then fails as often
as bans it (a new attack, which is what makes fail2ban look at its table again). Timed from the flush
until the set holds every ban again, old and new; or, past --repair-wait seconds, how many it holds.
fail2ban remakes its table on the next ban but re-bans an old address only when that one is seen
failing again.

Then the goals as PASS/FAIL lines: adaptive's median under 10 ms, its 99th percentile under 50 ms,
and fail2ban's median at least 20 times adaptive's. `--json` adds one machine-readable line at the
end. The exit status is 0 whatever the goals say (and when adaptive's half is skipped because it banned
nothing in the warm-up: a daemon that does not enforce bans), 2 when a tool failed (its output is shown).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]   # run as a script from anywhere

from netns import Namespace, Namespaces  # noqa: E402  (tests/netns.py)

ADAPTIVE = REPO / ".venv" / "bin" / "adaptive"
SHIPPED_CONFIG = REPO / "conf" / "adaptive.toml"
FAIL2BAN_CONFIG = Path("/etc/fail2ban")
JAIL = "postfix-sasl"

GOAL_MEDIAN, GOAL_P99, GOAL_RATIO = 0.010, 0.050, 20.0
TRIAL_BASE = ipaddress.IPv4Address("198.18.0.1")   # trial i is TRIAL_BASE + 256 i: one /24 each
TRIAL_ROOM = 512                                   # the /24s of 198.18.0.0/15
RESTORE_BASE = ipaddress.IPv4Address("10.0.0.0")
REPAIR_BASE = ipaddress.IPv4Address("10.64.0.0")
REPAIR_ATTACKER = "198.19.255.1"                   # the new attack after the flush: outside the trials' /24s
POLL = 0.0005           # seconds between two `get element` polls in a trial (each costs about 80 µs)
TRIAL_TIMEOUT = 10.0       # seconds a trial may wait for its ban
READY_TIMEOUT = 60.0       # seconds a tool may take to start (with no bans to restore)
READ_TIMEOUT = 30.0        # seconds a tool may take to read a trial's first lines
STOP_TIMEOUT = 60.0        # seconds a tool may take to stop when asked
RESTORE_DEADLINE = 600.0   # seconds adaptive may take to ban, and then to restore, --restore addresses
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


STARTED: list[Process] = []   # every tool process started here: whatever is left of them is killed at the end
JOURNALD: Any = None          # with --journal, the journald both tools follow (tests/journals.Journald)


class ToolError(Exception):
    """A tool failed: it died, refused a command or missed a deadline; the message shows its output."""


class NotEnforcing(ToolError):
    """The tool runs and reads its log, but banned nothing in the warm-up: it does not enforce bans."""


# --- inside a namespace: functions the namespace's worker runs (tests/netns.py sends them by name) ---

_context: Any = None


def _nft() -> Any:
    """One libnftables context per worker, bound to the worker's namespace."""
    global _context
    if _context is None:
        import nftables
        _context = nftables.Nftables()
        _context.set_json_output(True)
    return _context


def trial(log: str, line: bytes, nft_set: str, address: str, timeout: float,
          interval: float = POLL, dev_log: str | None = None) -> tuple[float | None, int]:
    """Append `line` to `log` in one write (or, with `dev_log`, send it to journald's syslog socket
    there, as syslog(3) does), then poll until `address` is in `nft_set` ("inet TABLE SET"). Returns the
    seconds from the write to the poll that found it (None past `timeout`) and the number of polls.
    RuntimeError if the address is in the set before the line is written."""
    nft = _nft()
    ipaddress.ip_address(address)
    command = f"get element {nft_set} {{ {address} }}"
    if nft.cmd(command)[0] == 0:
        raise RuntimeError(f"{address} is in {nft_set} before its last failure is written")
    if dev_log is not None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(line, dev_log)
            t0 = time.perf_counter()
    else:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
            t0 = time.perf_counter()
        finally:
            os.close(fd)
    polls = 0
    while True:
        polls += 1
        found = nft.cmd(command)[0] == 0
        t1 = time.perf_counter()
        if found:
            return t1 - t0, polls
        if t1 - t0 > timeout:
            return None, polls
        time.sleep(interval)


def count(nft_set: str) -> int:
    """How many elements `nft_set` holds; 0 if it (or its table) does not exist."""
    rc, output, _ = _nft().cmd(f"list set {nft_set}")
    if rc != 0:
        return 0
    return sum(len(obj["set"].get("elem", ())) for obj in json.loads(output)["nftables"] if "set" in obj)


def wait_filled(nft_set: str, expected: int, probes: list[str], timeout: float,
                interval: float) -> tuple[float | None, float | None, int]:
    """Poll until `nft_set` holds `expected` elements, for at most `timeout` seconds.

    Each round asks for the `probes`, one `get element` each (about 80 µs), and once they are all in,
    lists the whole set to count it (costly: 0.75 s for 100,000 elements). Returns the
    `time.monotonic()` at which the round whose listing found the set full began (None if none did),
    the end of that listing, and the count last seen. A set filled in one transaction is timed to a
    round of probes; one filled a ban at a time, to a listing.
    """
    nft = _nft()
    for probe in probes:
        ipaddress.ip_address(probe)
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        began = time.monotonic()
        if all(nft.cmd(f"get element {nft_set} {{ {p} }}")[0] == 0 for p in probes):
            seen = count(nft_set)
            if seen >= expected:
                return began, time.monotonic(), seen
        if time.monotonic() > deadline:
            return None, None, seen if seen else count(nft_set)
        time.sleep(interval)


def flush_ruleset() -> None:
    """`nft flush ruleset` in this namespace: every table gone, as another tool's reload does."""
    rc, _, error = _nft().cmd("flush ruleset")
    if rc != 0:
        raise RuntimeError(f"flush ruleset: {error.strip()}")


def delete_table(family: str, table: str) -> bool:
    """Delete the table if it is there (as a reboot would); True if it was."""
    rc, _, error = _nft().cmd(f"delete table {family} {table}")
    if rc != 0 and "No such file or directory" not in error:
        raise RuntimeError(f"delete table {family} {table}: {error.strip()}")
    return rc == 0


# --- the tools ---

def syslog_line(address: str, pid: int) -> bytes:
    """One Postfix SASL failure of `address`, in classic syslog format, stamped now (local time); with
    --journal, the datagram syslog(3) sends to /dev/log for it (`<22>`: mail.info, no host name)."""
    t = time.localtime()
    stamp = f"{MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    message = f"postfix/smtpd[{pid}]: warning: unknown[{address}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
    if JOURNALD is not None:
        return f"<22>{stamp} {message}".encode()
    return f"{stamp} mx {message}\n".encode()


def write_failures(log: Path, lines: list[bytes]) -> None:
    """The failures before the last, appended to the log (or sent to journald, with --journal)."""
    if JOURNALD is None:
        with open(log, "ab") as f:
            f.write(b"".join(lines))
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for line in lines:
            s.sendto(line, str(JOURNALD.dev_log))


class Process:
    """A long-running tool started with `ip netns exec`, in a session of its own, its output to a file.
    Every one is in `STARTED`, which the run kills at its end whatever happened."""

    def __init__(self, namespace: Namespace, command: list[str], output: Path, cwd: Path | None = None):
        self.output = output
        self.started = time.monotonic()
        with open(output, "ab") as out:
            self.popen = subprocess.Popen(["ip", "netns", "exec", namespace.name, *command], cwd=cwd,
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        STARTED.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> bool:
        try:
            self.popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        """SIGTERM to its session (what it spawned too), SIGKILL if it is still there after 10 s."""
        if self.popen.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            if self.wait(grace):
                return


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        return f"({path}: {e.strerror})"
    return "\n".join(f"  | {line}" for line in text.rstrip().splitlines()[-lines:]) or "  (empty)"


def poll_until(what: str, check: Callable[[], Any], timeout: float, process: Process | None,
               interval: float = 0.01) -> Any:
    """Poll `check` until it returns something true, the deadline passes or `process` dies."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if process is not None and not process.alive():
            raise ToolError(f"{what}: the process exited ({process.popen.returncode}); its output "
                            f"({process.output}):\n{tail(process.output)}")
        if time.monotonic() > deadline:
            shown = f"; its output ({process.output}):\n{tail(process.output)}" if process else ""
            raise ToolError(f"{what}: not within {timeout:.0f} s{shown}")
        time.sleep(interval)


def run_command(command: list[str], what: str, timeout: float = 600.0) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ToolError(f"{what}: `{' '.join(command[:8])}{' ...' if len(command) > 8 else ''}` exited "
                        f"{done.returncode}:\n{(done.stderr or done.stdout).rstrip()}")
    return done.stdout


class Blocker(Protocol):
    """What the benchmark needs of each tool."""

    name: str
    namespace: Namespace
    family: str
    table: str
    nft_set: str               # "inet TABLE SET", where its IPv4 bans are
    log: Path

    def start(self, state: str) -> Process:
        """Start it with the state named (a fresh one for a new name), following `STATE.log`; return at
        once."""
        ...

    def ready(self, process: Process) -> None:
        """Return once the started tool reads its log and bans; ToolError past a deadline."""
        ...

    def mark(self) -> Any:
        """Where its reading stands, for `wait_read`."""
        ...

    def wait_read(self, mark: Any, address: str, lines: int, process: Process) -> None:
        """Return once it has read `lines` failure lines of `address` written after `mark`."""
        ...

    def ban(self, addresses: list[str]) -> None:
        """Ban the addresses through its own command line, as an admin would."""
        ...

    def stop(self, process: Process) -> None:
        """Ask it to stop and wait for it."""
        ...

    def describe(self) -> dict:
        ...


class Adaptive:
    """`adaptive run` with the shipped configuration, plus a file that points it at the benchmark's
    log, state and socket (and turns the metrics endpoint off)."""

    name = "adaptive"
    family = "inet"

    def __init__(self, namespace: Namespace, directory: Path):
        from adaptive import config as config_module
        self.namespace = namespace
        self.directory = directory
        self.log = directory / "none.log"          # until `start`
        self.socket = directory / "control.sock"
        self.config = config_module.load([SHIPPED_CONFIG], None)
        self.table = self.config.nftables.table
        self.nft_set = f"{self.family} {self.table} ban4"
        self._client: Any = None

    def failures(self) -> tuple[int, str]:
        """How many SASL failures in a row ban a source under the shipped scoring, and why."""
        scoring = self.config.scoring
        weight = dict(scoring.weights)["auth_failure"]
        n = math.ceil(scoring.threshold / weight - 1e-9)
        return n, f"threshold {scoring.threshold:g}, auth_failure weight {weight:g}"

    def start(self, state: str) -> Process:
        from adaptive.control.client import Client
        self.log = self.directory / f"{state}.log"
        self.log.touch()
        local = self.directory / f"{state}.toml"
        # The log is fresh and empty when it starts, so reading from its beginning skips nothing
        # however soon after the start a line is written ("end" would race with the first write).
        source = (f"type = \"journal\"\ndirectory = {json.dumps(str(JOURNALD.directory))}\nstart = \"end\"\n"
                  if JOURNALD is not None else f"path = {json.dumps(str(self.log))}\nstart = \"beginning\"\n")
        local.write_text(f"[sources.mail]\n{source}\n"
                         f"[state]\npath = {json.dumps(str(self.directory / f'{state}.db'))}\n\n"
                         f"[control]\nsocket = {json.dumps(str(self.socket))}\n\n"
                         f"[metrics]\nlisten = \"\"\n", encoding="utf-8")
        self._client = Client(self.socket, timeout=30.0)
        return Process(self.namespace, [str(ADAPTIVE), "run", "-c", str(SHIPPED_CONFIG), "-c", str(local),
                                        "--dropins", ""], self.directory / "adaptive.out", cwd=REPO)

    def _status(self) -> dict | None:
        from adaptive.control.client import Unreachable
        try:
            return self._client.request("status")
        except (Unreachable, OSError):
            self._client.close()
            return None

    def ready(self, process: Process) -> None:
        # The socket opens once the ruleset is applied, and `status` is answered from the daemon's loop.
        poll_until("adaptive: the control socket answering", self._status, READY_TIMEOUT, process)

    def mark(self) -> int:
        status = self._status()
        if status is None:
            raise ToolError("adaptive: the control socket does not answer")
        return status["events"]

    def wait_read(self, mark: int, address: str, lines: int, process: Process) -> None:
        poll_until(f"adaptive: {lines} events of {address} read",
                   lambda: (s := self._status()) is not None and s["events"] >= mark + lines,
                   READ_TIMEOUT, process, interval=0.005)

    def ban(self, addresses: list[str]) -> None:
        listing = self.directory / "ban.txt"
        listing.write_text("".join(f"{a}\n" for a in addresses), encoding="ascii")
        out = run_command(["ip", "netns", "exec", self.namespace.name, str(ADAPTIVE), "ban", "--from-file",
                           str(listing), "--for", "1h", "--socket", str(self.socket)], "adaptive ban")
        if not out.startswith(f"{len(addresses)} banned"):
            raise ToolError(f"adaptive ban: {out.strip()}")

    def stop(self, process: Process) -> None:
        if self._client is not None:
            self._client.close()
        process.popen.send_signal(signal.SIGTERM)
        if not process.wait(STOP_TIMEOUT):
            raise ToolError(f"adaptive: still running {STOP_TIMEOUT:.0f} s after SIGTERM")

    def describe(self) -> dict:
        return {"command": "adaptive run -c conf/adaptive.toml -c LOCAL.toml --dropins ''"
                + (" (a journal source)" if JOURNALD is not None else ""), "set": self.nft_set}


class Fail2ban:
    """Debian's fail2ban, from a copy of /etc/fail2ban with a `jail.local` for the jail and a
    `fail2ban.local` that keeps its socket, pid file, database and log in the temporary directory."""

    name = "fail2ban"
    family = "inet"
    table = "f2b-table"                    # action.d/nftables.conf: table, table_family
    nft_set = f"inet f2b-table addr-set-{JAIL}"   # addr_set = addr-set-<name>, the jail's name

    def __init__(self, namespace: Namespace, directory: Path, failures: int):
        self.namespace = namespace
        self.directory = directory
        self.log = directory / "none.log"          # until `start`
        self.output = directory / "fail2ban.log"
        self.socket = directory / "fail2ban.sock"
        self.config = directory / "etc"
        shutil.copytree(FAIL2BAN_CONFIG, self.config, symlinks=True)
        # Overrides the host may have are not Debian's defaults: keep only what the package ships.
        for local in [*self.config.glob("*.local"), *self.config.glob("*.d/*.local")]:
            local.unlink()
        self.failures = failures
        self.version = run_command(["fail2ban-server", "-V"], "fail2ban-server -V").strip()
        self.backend: str | None = None

    def start(self, state: str) -> Process:
        self.log = self.directory / f"{state}.log"
        self.log.touch()
        pid = self.directory / "fail2ban.pid"
        (self.config / "fail2ban.local").write_text(
            f"[DEFAULT]\nloglevel = INFO\nlogtarget = {self.output}\nsocket = {self.socket}\n"
            f"pidfile = {pid}\ndbfile = {self.directory / f'{state}.sqlite3'}\n", encoding="utf-8")
        # backend is left as Debian ships it (`auto`); the log says what that picked.
        (self.config / "jail.local").write_text(
            "[DEFAULT]\nbanaction = nftables\nbanaction_allports = nftables[type=allports]\n\n"
            "[sshd]\nenabled = false\n\n"
            f"[{JAIL}]\nenabled = true\n{self._source()}\nmaxretry = {self.failures}\n"
            "findtime = 10m\nbantime = 1h\n", encoding="utf-8")
        self._from = self.output.stat().st_size if self.output.exists() else 0
        return Process(self.namespace, ["fail2ban-server", "-f", "-c", str(self.config), "-s", str(self.socket),
                                        "-p", str(pid)], self.directory / "fail2ban.out")

    def _source(self) -> str:
        """Its log file; with --journal, its systemd backend on journald's files, matching the mail
        facility (no unit here: journald runs outside systemd, so its entries have no _SYSTEMD_UNIT)."""
        if JOURNALD is None:
            return f"logpath = {self.log}"
        return f"backend = systemd[journalpath={JOURNALD.directory}]\njournalmatch = SYSLOG_FACILITY=2"

    def _text(self, start: int) -> str:
        try:
            with open(self.output, "rb") as f:
                f.seek(start)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def ready(self, process: Process) -> None:
        text = poll_until(f"fail2ban: jail {JAIL} started",
                          lambda: t if f"Jail '{JAIL}' started" in (t := self._text(self._from)) else "",
                          READY_TIMEOUT, process)
        found = re.search(r"Initiated '(\w+)' backend", text)
        self.backend = found.group(1) if found else None

    def mark(self) -> int:
        return self.output.stat().st_size

    def wait_read(self, mark: int, address: str, lines: int, process: Process) -> None:
        found = f"] Found {address} - "
        poll_until(f"fail2ban: {lines} lines of {address} found", lambda: self._text(mark).count(found) >= lines,
                   READ_TIMEOUT, process, interval=0.005)

    def client(self, *args: str, timeout: float = 600.0) -> str:
        return run_command(["ip", "netns", "exec", self.namespace.name, "fail2ban-client", "-s",
                            str(self.socket), *args], "fail2ban-client", timeout)

    def ban(self, addresses: list[str]) -> None:
        for i in range(0, len(addresses), 500):
            self.client("set", JAIL, "banip", *addresses[i:i + 500])

    def stop(self, process: Process) -> None:
        self.client("stop", timeout=STOP_TIMEOUT)
        if not process.wait(STOP_TIMEOUT):
            raise ToolError(f"fail2ban: still running {STOP_TIMEOUT:.0f} s after `fail2ban-client stop`")

    def describe(self) -> dict:
        return {"version": self.version, "jail": JAIL, "filter": "postfix[mode=auth]", "banaction": "nftables",
                "backend": f"auto ({self.backend})" if self.backend else "auto", "set": self.nft_set,
                "maxretry": self.failures, "findtime": 600, "bantime": 3600}


# --- the runs ---

def summary(latencies: list[float], timeouts: int) -> dict:
    xs = sorted(latencies)
    p99 = statistics.quantiles(xs, n=100, method="inclusive")[98] if len(xs) >= 2 else (xs or [None])[0]
    return {"trials": len(xs) + timeouts, "timeouts": timeouts, "median": statistics.median(xs) if xs else None,
            "p99": p99, "min": xs[0] if xs else None, "max": xs[-1] if xs else None,
            "mean": statistics.fmean(xs) if xs else None, "latencies": latencies}


def measure_latency(tool: Blocker, namespace: Namespace, failures: int, trials: int, warmup: int,
                    gap: float, seed: int, progress: Callable[[str], None], first: int = 0) -> tuple[dict, Process]:
    """Start the tool, run warm-up and measured trials (from the `first` trial's address on); return the
    figures and the running process."""
    rng = random.Random(seed)
    process = tool.start("latency")
    tool.ready(process)
    startup = time.monotonic() - process.started
    latencies: list[float] = []
    polls: list[int] = []
    warm: list[float | None] = []
    timeouts = 0
    for i in range(warmup + trials):
        address = str(TRIAL_BASE + 256 * (first + i))
        mark = tool.mark()
        write_failures(tool.log, [syslog_line(address, 1000 + i) for _ in range(failures - 1)])
        tool.wait_read(mark, address, failures - 1, process)
        # Pacing, not settling: the last attempt comes at a random moment (see the module's doc).
        time.sleep(rng.uniform(0.0, gap))
        try:
            latency, n = namespace.call(trial, str(tool.log), syslog_line(address, 1000 + i), tool.nft_set,
                                        address, TRIAL_TIMEOUT, POLL,
                                        None if JOURNALD is None else str(JOURNALD.dev_log),
                                        timeout=TRIAL_TIMEOUT + 30)
        except RuntimeError as e:
            raise ToolError(f"{tool.name}: trial {i + 1}: {e}") from None
        if not process.alive():
            raise ToolError(f"{tool.name}: the process exited during a trial; its output:\n"
                            f"{tail(process.output)}")
        if i < warmup:
            warm.append(latency)
            if i == warmup - 1 and not any(w is not None for w in warm):
                raise NotEnforcing(f"{tool.name} read the failures but banned no source within "
                                   f"{TRIAL_TIMEOUT:g} s of its failure number {failures}, in {warmup} "
                                   f"warm-up trial(s): does it enforce bans?")
            continue
        if latency is None:
            timeouts += 1
        else:
            latencies.append(latency)
            polls.append(n)
        if (i - warmup + 1) % 10 == 0:
            progress(f"{tool.name}: {i - warmup + 1}/{trials} trials")
    figures = summary(latencies, timeouts)
    figures.update(warmup=warm, startup=startup, polls_mean=statistics.fmean(polls) if polls else None)
    return figures, process


def measure_restore(tool: Blocker, namespace: Namespace, count_: int, runs: int, deadline: float,
                    progress: Callable[[str], None]) -> dict:
    """Ban `count_` addresses through the running tool (a fresh state), then, `runs` times: stop it,
    delete its table, start it and time until its set holds them all again."""
    addresses = [str(RESTORE_BASE + i) for i in range(count_)]
    # The first, the last and 62 between: whatever order the tool restores in, the set is seldom
    # listed (and counted) before it is full.
    probes = sorted({addresses[0], addresses[-1], *(addresses[k * count_ // 63] for k in range(1, 63))})
    interval = 0.002 if count_ <= 10_000 else 0.005
    result: dict = {"bans": count_, "runs": [], "listed": [], "reached": []}
    process = tool.start("restore")
    try:
        tool.ready(process)
        started = time.monotonic()
        tool.ban(addresses)
        done, _, reached = _wait_filled(tool, namespace, process, count_, probes, deadline, interval, started)
        if done is None:
            result["error"] = f"banning: {reached:,} of {count_:,} in the set after {deadline:.0f} s"
            return result
        result["ban_seconds"] = done - started
        progress(f"{tool.name}: {count_:,} banned in {result['ban_seconds']:.1f} s; restoring")
        tool.stop(process)
        for _ in range(runs):
            namespace.call(delete_table, tool.family, tool.table)
            process = tool.start("restore")
            done, listed, reached = _wait_filled(tool, namespace, process, count_, probes, deadline, interval,
                                                 process.started)
            result["reached"].append(reached)
            if done is None or listed is None:
                result["error"] = f"restore: {reached:,} of {count_:,} in the set after {deadline:.0f} s"
                return result
            result["runs"].append(done - process.started)
            result["listed"].append(listed - process.started)
            progress(f"{tool.name}: restored {count_:,} in {done - process.started:.2f} s")
            tool.stop(process)
        result["seconds"] = statistics.median(result["runs"])
        return result
    finally:
        if process.alive():
            process.kill()


def measure_repair(tool: Blocker, namespace: Namespace, count_: int, failures: int, wait: float,
                   progress: Callable[[str], None]) -> dict:
    """Ban `count_` addresses through the running tool (a fresh state), flush the ruleset, have a new
    source fail `failures` times, and time until the set holds all `count_ + 1` bans again (or count
    what it holds after `wait` seconds)."""
    addresses = [str(REPAIR_BASE + i) for i in range(count_)]
    probes = sorted({addresses[0], addresses[-1], *(addresses[k * count_ // 31] for k in range(1, 31)),
                     REPAIR_ATTACKER})
    result: dict = {"bans": count_ + 1, "wait": wait}
    namespace.call(delete_table, tool.family, tool.table)     # none of the restore's bans stays
    process = tool.start("repair")
    try:
        tool.ready(process)
        tool.ban(addresses)
        done, _, reached = _wait_filled(tool, namespace, process, count_, [p for p in probes if p != REPAIR_ATTACKER],
                                        RESTORE_DEADLINE, 0.005, time.monotonic())
        if done is None:
            result["error"] = f"banning: {reached:,} of {count_:,} in the set"
            return result
        namespace.call(flush_ruleset)
        flushed = time.monotonic()
        with open(tool.log, "ab") as log:
            log.write(b"".join(syslog_line(REPAIR_ATTACKER, 4242) for _ in range(failures)))
        done, _, reached = _wait_filled(tool, namespace, process, count_ + 1, probes, wait, 0.005, flushed)
        result["reached"] = reached
        if done is not None:
            result["seconds"] = done - flushed
        progress(f"{tool.name}: {reached:,} of {count_ + 1:,} bans in the set after the flush")
        tool.stop(process)
        return result
    finally:
        if process.alive():
            process.kill()


def _wait_filled(tool: Blocker, namespace: Namespace, process: Process, expected: int, probes: list[str],
                 deadline: float, interval: float, since: float) -> tuple[float | None, float | None, int]:
    """`wait_filled` in slices of a second, so that a tool that dies is noticed at once."""
    while True:
        done, listed, reached = namespace.call(wait_filled, tool.nft_set, expected, probes, 1.0, interval,
                                               timeout=120)
        if done is not None:
            return done, listed, reached
        if not process.alive():
            raise ToolError(f"{tool.name}: the process exited ({process.popen.returncode}) with {reached:,} of "
                            f"{expected:,} bans in the set; its output:\n{tail(process.output)}")
        if time.monotonic() - since > deadline:
            return None, None, reached


# --- the report ---

def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def latency_part(tool: Blocker, namespace: Namespace, args: argparse.Namespace, failures: int,
                 progress: Callable[[str], None]) -> dict:
    """The tool's report entry: what it is, and its latency figures (or why there are none)."""
    entry: dict = {}
    try:
        # In one journal both tools read, each its own addresses: fail2ban reads what adaptive's trials left.
        first = (args.warmup + args.trials) * (tool.name != "adaptive") if JOURNALD is not None else 0
        figures, process = measure_latency(tool, namespace, failures, args.trials, args.warmup, args.gap,
                                           args.seed, progress, first)
        tool.stop(process)
        namespace.call(delete_table, tool.family, tool.table)
        entry["latency"] = figures
    except NotEnforcing as e:
        entry["skipped"] = str(e)
    except ToolError as e:
        print(f"{tool.name}: {e}", file=sys.stderr)
        entry["error"] = str(e).splitlines()[0]
    finally:
        for process in STARTED:
            process.kill()
    return {**tool.describe(), **entry}    # described once it ran: fail2ban's log names its backend


def print_latency(out: Any, name: str, d: dict) -> None:
    where = (f"fail2ban {d['version']}, jail {d['jail']} ({d['filter']}), banaction {d['banaction']}, "
             f"backend {d['backend']}" if "jail" in d else d["command"])
    out.write(f"{name:<9} {where}; set {d['set']}\n")
    if "latency" not in d:
        out.write(f"          {'skipped' if 'skipped' in d else 'failed'}: {d.get('skipped') or d.get('error')}\n")
        return
    f = d["latency"]
    out.write(f"          median {ms(f['median'])}, p99 {ms(f['p99'])}, min {ms(f['min'])}, max {ms(f['max'])}, "
              f"mean {ms(f['mean'])}; {f['trials']} trials, {f['timeouts']} timed out (> {TRIAL_TIMEOUT:g} s)\n"
              f"          warm-up {', '.join(ms(w) for w in f['warmup']) or '-'}; {f['polls_mean'] or 0:.0f} "
              f"polls a trial; started in {ms(f['startup'])} (no bans to restore)\n")


def guarded(tool: Blocker, bans: int, measure: Callable[[], dict]) -> dict:
    """`measure()`'s figures, or {"bans", "error"} if the tool failed it; every process it started
    is ended afterwards."""
    try:
        return measure()
    except ToolError as e:
        print(f"{tool.name}: {e}", file=sys.stderr)
        return {"bans": bans, "error": str(e).splitlines()[0]}
    finally:
        for process in STARTED:
            process.kill()


def restore_part(tool: Blocker, namespace: Namespace, n: int, runs: int, deadline: float,
                 progress: Callable[[str], None]) -> dict:
    return guarded(tool, n, lambda: measure_restore(tool, namespace, n, runs, deadline, progress))


def repair_part(tool: Blocker, namespace: Namespace, n: int, failures: int, wait: float,
                progress: Callable[[str], None]) -> dict:
    return guarded(tool, n + 1, lambda: measure_repair(tool, namespace, n, failures, wait, progress))


def print_repair(out: Any, name: str, r: dict) -> None:
    n = r["bans"]
    if "error" in r:
        out.write(f"repair    {name}: {n:,} bans: {r['error']}\n")
    elif "seconds" in r:
        out.write(f"repair    {name}: all {n:,} bans back in the set {r['seconds']:.2f} s after `nft flush "
                  f"ruleset`\n")
    else:
        out.write(f"repair    {name}: {r['reached']:,} of {n:,} bans in the set {r['wait']:g} s after `nft flush "
                  f"ruleset` and a new attack\n")


def print_restore(out: Any, name: str, r: dict) -> None:
    n = r["bans"]
    if "seconds" not in r:
        out.write(f"restore   {name}: {n:,} bans: {r['error']}\n")
        return
    runs = f" (runs: {', '.join(f'{s:.2f}' for s in r['runs'])} s)" if len(r["runs"]) > 1 else ""
    out.write(f"restore   {name}: {n:,} bans back in the set {r['seconds']:.2f} s after the start{runs}, "
              f"{n / r['seconds']:,.0f} bans/s; banning them through its command line took "
              f"{r['ban_seconds']:.2f} s\n")


def judge(out: Any, report: dict) -> dict:
    """The goals, printed as PASS/FAIL lines; a timed-out trial fails them all."""
    a = report.get("adaptive", {}).get("latency")
    f = report.get("fail2ban", {}).get("latency")
    if not a or a["median"] is None:
        return {}
    clean = a["timeouts"] == 0
    goals = {"median": {"value": a["median"], "goal": GOAL_MEDIAN, "pass": clean and a["median"] < GOAL_MEDIAN},
             "p99": {"value": a["p99"], "goal": GOAL_P99, "pass": clean and a["p99"] < GOAL_P99}}
    if f and f["median"] is not None:
        ratio = f["median"] / a["median"]
        report["ratio"] = ratio
        goals["ratio"] = {"value": ratio, "goal": GOAL_RATIO, "pass": clean and ratio >= GOAL_RATIO}
        out.write(f"ratio     fail2ban's median is {ratio:,.0f}x adaptive's ({ms(f['median'])} / "
                  f"{ms(a['median'])}); its 99th percentile {f['p99'] / a['p99']:,.0f}x\n")
    timed_out = "" if clean else f"; {a['timeouts']} trial(s) timed out"
    verdict = {True: "PASS", False: "FAIL"}
    out.write(f"{verdict[goals['median']['pass']]:<9} adaptive's median {ms(a['median'])} "
              f"(goal: under {GOAL_MEDIAN * 1000:.0f} ms{timed_out})\n"
              f"{verdict[goals['p99']['pass']]:<9} adaptive's 99th percentile {ms(a['p99'])} "
              f"(goal: under {GOAL_P99 * 1000:.0f} ms{timed_out})\n")
    if "ratio" in goals:
        out.write(f"{verdict[goals['ratio']['pass']]:<9} fail2ban's median is {goals['ratio']['value']:,.0f}x "
                  f"adaptive's (goal: at least {GOAL_RATIO:.0f}x{timed_out})\n")
    return goals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=60, help="measured trials per tool (60)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up trials per tool, not counted (1)")
    p.add_argument("--gap", type=float, default=2.0, metavar="SECONDS",
                   help="the last line comes after a pause drawn from [0, SECONDS) (2.0)")
    p.add_argument("--seed", type=int, default=1, help="seed of the pauses (1)")
    p.add_argument("--restore", type=int, default=100_000, metavar="N", help="bans adaptive restores (100000)")
    p.add_argument("--restore-runs", type=int, default=3, help="restarts of adaptive timed; the median counts (3)")
    p.add_argument("--f2b-restore", type=int, default=5_000, metavar="N", help="bans fail2ban restores (5000)")
    p.add_argument("--f2b-deadline", type=float, default=600.0, metavar="SECONDS",
                   help="longest wait for fail2ban to ban them, and then to restore them (600)")
    p.add_argument("--repair", type=int, default=1_000, metavar="N",
                   help="bans held when the ruleset is flushed (1000; 0: no repair part)")
    p.add_argument("--repair-wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long after the flush the bans back are counted (10)")
    p.add_argument("--no-fail2ban", action="store_true", help="adaptive only")
    p.add_argument("--no-restore", action="store_true", help="latency only")
    p.add_argument("--journal", action="store_true",
                   help="both tools follow the systemd journal (a journald started here, in a private mount "
                        "namespace) instead of a file; latency only")
    p.add_argument("--json", action="store_true", help="end with one JSON line of all the figures")
    args = p.parse_args(argv)
    if args.journal:
        args.no_restore, args.repair = True, 0
    room = TRIAL_ROOM // 2 if args.journal else TRIAL_ROOM
    if args.trials < 2 or args.warmup < 0 or args.warmup + args.trials > room:
        p.error(f"--trials must be at least 2, and --warmup + --trials at most {room}")
    if args.restore < 1 or args.f2b_restore < 1 or args.restore_runs < 1:
        p.error("--restore, --f2b-restore and --restore-runs must be at least 1")
    if os.geteuid() != 0:
        print("latency.py: needs root (network namespaces, nftables)", file=sys.stderr)
        return 2

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt
    # SIGTERM ends the run as Ctrl-C does, through the clean-up below; SIGINT too when started in the
    # background by a shell, which has it ignored.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)

    from parse import machine
    out = sys.stdout

    def progress(text: str) -> None:
        print(f"  ... {text}", file=sys.stderr, flush=True)

    report: dict = {"machine": {**machine(), "kernel": os.uname().release}}
    m = report["machine"]
    out.write(f"machine   {m['cpu']}, {m['cores']} cores; {m['python']}; Linux {m['kernel']}\n")
    directory = Path(tempfile.mkdtemp(prefix="adl-latency-"))
    nets = Namespaces(prefix="adl")
    global JOURNALD
    try:
        if args.journal:
            import journals
            why_not = journals.missing() or (None if journals.JOURNALD else "systemd-journald is not installed")
            if why_not:
                print(f"latency.py: --journal: {why_not}", file=sys.stderr)
                return 2
            JOURNALD = journals.Journald(directory / "journald").__enter__()
            out.write(f"journal   journald {journals.JOURNALD}, in {JOURNALD.directory}; the failures are sent to "
                      "its syslog socket as syslog(3) sends them\n")
        (directory / "adaptive").mkdir()
        tools: list[tuple[Blocker, Namespace, int, int, float]] = []
        adaptive = Adaptive(nets.add("adaptive"), directory / "adaptive")
        tools.append((adaptive, adaptive.namespace, args.restore, args.restore_runs, RESTORE_DEADLINE))
        failures, why = adaptive.failures()
        if args.no_fail2ban:
            out.write("fail2ban  skipped (--no-fail2ban)\n")
        elif shutil.which("fail2ban-server") is None:
            out.write("fail2ban  skipped: fail2ban is not installed (apt-get install fail2ban)\n")
        else:
            (directory / "fail2ban").mkdir()
            f2b = Fail2ban(nets.add("f2b"), directory / "fail2ban", failures)
            tools.append((f2b, f2b.namespace, args.f2b_restore, 1, args.f2b_deadline))
        report["setup"] = {"journal": args.journal, "failures": failures, "adaptive_scoring": why,
                           "trials": args.trials, "warmup": args.warmup, "gap": args.gap, "seed": args.seed,
                           "poll": POLL}
        out.write(f"setup     {failures} SASL failures ban a source (adaptive: {why}; fail2ban: maxretry "
                  f"{failures}, findtime 10m, bantime 1h); {args.trials} trials per tool after "
                  f"{args.warmup} warm-up, the last line 0-{args.gap:g} s after the others were read; "
                  f"`get element` polled every {POLL * 1000:g} ms\n")
        out.flush()

        for tool, namespace, *_ in tools:
            report[tool.name] = latency_part(tool, namespace, args, failures, progress)
            print_latency(out, tool.name, report[tool.name])
            out.flush()
        if not args.no_restore:
            for tool, namespace, n, runs, deadline in tools:
                if "latency" in report[tool.name]:
                    report[tool.name]["restore"] = restore_part(tool, namespace, n, runs, deadline, progress)
                    print_restore(out, tool.name, report[tool.name]["restore"])
                    out.flush()
        if args.repair:
            for tool, namespace, *_ in tools:
                if "latency" in report[tool.name]:
                    report[tool.name]["repair"] = repair_part(tool, namespace, args.repair, failures,
                                                              args.repair_wait, progress)
                    print_repair(out, tool.name, report[tool.name]["repair"])
                    out.flush()
        report["goals"] = judge(out, report)
        report["namespaces"] = [ns.name for ns in nets.namespaces]   # all deleted on the way out
        if args.json:
            out.write(json.dumps(report) + "\n")
        failed = any("error" in report[t.name] or "error" in report[t.name].get("restore", {})
                     or "error" in report[t.name].get("repair", {}) for t, *_ in tools)
        return 2 if failed else 0
    except KeyboardInterrupt:
        print("latency.py: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        for process in STARTED:
            process.kill()
        nets.close()
        if JOURNALD is not None:
            JOURNALD.__exit__(None, None, None)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    # Run as the module `latency`, not as `__main__`: the worker in each namespace imports the functions
    # it is sent (`trial`, `wait_filled`...) by their module's name.
    import latency
    sys.exit(latency.main())
