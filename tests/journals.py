"""Real journal files, written by systemd's own code: `systemd-journal-remote` turns entries in the
journal export format into a journal, exactly as journald would store them.

    >>> entries = [Entry("postfix/smtpd", 812, "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed")]
    >>> write(directory, entries)                    # appends to directory/remote.journal (made if need be)
    >>> write(directory, more, file="system@2.journal")   # another file: a rotation, as journald's

The export format (systemd's JOURNAL_EXPORT_FORMATS): one `FIELD=value` line per field, an empty line
after each entry; a value holding a newline or other binary is `FIELD\\n`, its length as 64-bit little
endian, the bytes and `\\n`.
"""

from __future__ import annotations

import shutil
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
