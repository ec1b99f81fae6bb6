"""Real journal files, written by systemd's own code: `systemd-journal-remote` turns entries in the
journal export format into a journal, exactly as journald would store them; and `Journald`, journald
itself, fed syslog messages as Postfix and Dovecot send them.

    >>> entries = [Entry("postfix/smtpd", 812, "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed")]
    >>> write(directory, entries)                    # appends to directory/remote.journal (made if need be)
    >>> write(directory, more, file="system@2.journal")   # another file: a rotation, as journald's

The export format (systemd's JOURNAL_EXPORT_FORMATS): one `FIELD=value` line per field, an empty line
after each entry; a value holding a newline or other binary is `FIELD\\n`, its length as 64-bit little
endian, the bytes and `\\n`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

JOURNAL_REMOTE = next((p for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
                       if Path(p).exists()), None)
JOURNALCTL = shutil.which("journalctl")
JOURNALD = next((p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
                 if Path(p).exists()), None)
BOOT_ID = uuid.UUID("0123456789abcdef0123456789abcdef").hex
# When that boot began, in realtime microseconds: an entry's monotonic time is its realtime since then,
# so entries of one boot order the same by either, in one file or across files (as journald's do: the
# reader merges the files of one boot by monotonic time).
BOOTED = 1_600_000_000_000_000
UNITS = {"postfix": "postfix@-.service", "dovecot": "dovecot.service"}


def missing() -> str | None:
    """Why journals cannot be written here, or None."""
    if JOURNAL_REMOTE is None:
        return "systemd-journal-remote is not installed (Debian package systemd-journal-remote; setup.sh test)"
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        return "python3-systemd is not installed (setup.sh)"
    return None


@dataclass
class Entry:
    """One journal entry as a syslog(3) caller's: identifier, pid, message (str, or bytes for binary)."""

    identifier: str
    pid: int
    message: str | bytes
    realtime: int | None = None          # microseconds since the epoch; None: now
    host: str = "mx1"
    unit: str | None = None              # _SYSTEMD_UNIT; None: Postfix's or Dovecot's by identifier
    facility: int = 2                    # SYSLOG_FACILITY: mail
    fields: dict[str, bytes | str] = field(default_factory=dict)

    def export(self) -> bytes:
        realtime = self.realtime if self.realtime is not None else time.time_ns() // 1000
        monotonic = realtime - BOOTED
        unit = self.unit if self.unit is not None else UNITS.get(self.identifier.split("/")[0], "")
        pairs: list[tuple[str, bytes | str]] = [
            ("__REALTIME_TIMESTAMP", str(realtime)), ("__MONOTONIC_TIMESTAMP", str(monotonic)),
            ("_BOOT_ID", BOOT_ID), ("_HOSTNAME", self.host), ("SYSLOG_FACILITY", str(self.facility)),
            ("SYSLOG_IDENTIFIER", self.identifier), ("_PID", str(self.pid)), ("PRIORITY", "6")]
        if unit:
            pairs.append(("_SYSTEMD_UNIT", unit))
        pairs += list(self.fields.items())
        pairs.append(("MESSAGE", self.message))
        out = bytearray()
        for key, value in pairs:
            data = value.encode() if isinstance(value, str) else value
            if b"\n" in data or not data.isascii() or any(b < 32 and b != 9 for b in data):
                out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
            else:
                out += key.encode() + b"=" + data + b"\n"
        return bytes(out + b"\n")


def export(entries: Iterable[Entry]) -> Iterator[bytes]:
    for entry in entries:
        yield entry.export()


def write(directory: Path, entries: Iterable[Entry], file: str = "remote.journal") -> Path:
    """Append `entries` to the journal file `directory/file` with systemd-journal-remote; return it."""
    assert JOURNAL_REMOTE is not None, missing()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / file
    with subprocess.Popen([JOURNAL_REMOTE, f"--output={target}", "--split-mode=none", "-"],
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as p:
        assert p.stdin is not None and p.stderr is not None
        for chunk in export(entries):
            p.stdin.write(chunk)
        p.stdin.close()
        err = p.stderr.read()
    if p.returncode != 0:
        raise RuntimeError(f"systemd-journal-remote failed ({p.returncode}): {err.decode(errors='replace')}")
    return target


def failures(address: str, n: int, *, start: int | None = None, pid: int = 4100, user: str = "info") -> list[Entry]:
    """`n` SASL failures of Postfix's smtpd from `address`, a millisecond apart."""
    base = start if start is not None else time.time_ns() // 1000
    return [Entry("postfix/smtpd", pid, f"warning: unknown[{address}]: SASL LOGIN authentication failed: "
                  f"UGFzc3dvcmQ6 sasl_username={user}", realtime=base + i * 1000) for i in range(n)]


class Journald:
    """systemd-journald itself, run by hand in a private mount namespace, storing a volatile journal in
    the test's directory: what a Debian host's journald does with Postfix's and Dovecot's syslog(3).

    >>> with Journald(tmp_path / "journald") as journald:
    ...     journald.syslog("postfix/smtpd", 812, "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed")
    ...     source = JournalSource("journal", store, directory=journald.directory)

    The namespace gives it a /run of its own with the test's directories bound in (its sockets in
    `runtime/journal`, its files in `directory`) and a journald.conf of the test's (volatile storage,
    no rate limit, no kernel log): the host's /run, /var/log/journal and journald.conf are not touched.
    `syslog` sends what glibc's syslog(3) sends to /dev/log, to journald's dev-log socket. (Debian 13
    ships no /etc/systemd/journald.conf: the test's is bound over /etc/systemd as a directory of its own.)
    """

    def __init__(self, root: Path):
        self.root = root
        self.runtime = root / "run-systemd"      # bound on /run/systemd: journald's sockets
        self.logs = root / "run-log"             # bound on /run/log: its volatile journal
        self.etc = root / "etc-systemd"          # bound on /etc/systemd: its journald.conf alone
        self.conf = self.etc / "journald.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._dir_fd: int | None = None

    def __enter__(self) -> Journald:
        for d in (self.runtime, self.logs, self.etc):
            d.mkdir(parents=True, exist_ok=True)
        self.conf.write_text("[Journal]\nStorage=volatile\nRateLimitBurst=0\nRateLimitIntervalSec=0\n"
                             "ForwardToSyslog=no\nForwardToWall=no\nForwardToConsole=no\nReadKMsg=no\n"
                             "RuntimeMaxFileSize=1M\nAudit=no\n")
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
        if self._socket is not None:
            self._socket.close()
        if self._dir_fd is not None:
            os.close(self._dir_fd)

    @property
    def dev_log(self) -> Path:
        return self.runtime / "journal" / "dev-log"

    @property
    def directory(self) -> Path:
        """Where journald keeps this host's journal files (volatile: /run/log/journal/MACHINE-ID)."""
        return self.logs / "journal" / Path("/etc/machine-id").read_text().strip()

    def start(self) -> None:
        assert JOURNALD is not None, "systemd-journald is not installed"
        if self._dir_fd is not None:         # a new journald makes its socket directory anew
            os.close(self._dir_fd)
            self._dir_fd = None
        script = (f"mount -t tmpfs none /run && mkdir -p /run/log /run/systemd && mount --bind {self.logs} /run/log "
                  f"&& mount --bind {self.runtime} /run/systemd && mount --bind {self.etc} /etc/systemd "
                  f"&& exec {JOURNALD}")
        self.dev_log.unlink(missing_ok=True)
        output = self.root / "journald.out"     # its own messages: a file, which never fills up as a pipe would
        with open(output, "ab") as out:
            self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "SYSTEMD_LOG_TARGET": "console"})
        deadline = time.monotonic() + 10
        while not (self.dev_log.exists() and self.directory.is_dir()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = output.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"systemd-journald did not start ({self.proc.poll()}): {err}")
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def rotate(self) -> None:
        """Archive the journal files and begin new ones (SIGUSR2: what `journalctl --rotate` asks)."""
        files = set(self.directory.glob("*.journal"))
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while set(self.directory.glob("*.journal")) == files or not (self.directory / "system.journal").exists():
            assert time.monotonic() < deadline, "journald did not rotate"
            time.sleep(0.01)

    def syslog(self, identifier: str, pid: int, message: str | bytes, facility: int = 2, severity: int = 6) -> None:
        """One message as syslog(3) sends it to /dev/log: `<PRI>Mmm dd hh:mm:ss IDENT[PID]: MESSAGE`."""
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        body = message.encode() if isinstance(message, str) else message
        head = f"<{facility * 8 + severity}>{time.strftime('%b %e %H:%M:%S')} {identifier}[{pid}]: ".encode()
        self._socket.sendto(head + body, self.address)

    @property
    def address(self) -> str:
        """The dev-log socket's path, short enough for AF_UNIX (108 bytes) however deep the test's
        directory is: through a descriptor of its directory."""
        if len(str(self.dev_log)) < 100:
            return str(self.dev_log)
        if self._dir_fd is None:
            self._dir_fd = os.open(self.dev_log.parent, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._dir_fd}/{self.dev_log.name}"

    def entries(self) -> int:
        """How many entries journald has stored (journalctl --directory, all files)."""
        out = subprocess.run([JOURNALCTL or "journalctl", "--directory", str(self.directory), "-o", "cat", "-q"],
                             capture_output=True, check=True).stdout
        return out.count(b"\n")
