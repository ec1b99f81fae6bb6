"""Telling systemd how the daemon is doing (the sd_notify protocol), and log lines journald can rank.

systemd passes a datagram socket in `$NOTIFY_SOCKET` (a path, or an abstract name written with a
leading `@`); each message is newline-separated `KEY=value` fields. Without the variable (not started by
systemd, or not `Type=notify`) every call is a no-op, so the daemon calls them unconditionally:

>>> notify(READY=1, STATUS="following 2 logs")
>>> watchdog = Watchdog.from_environment()       # None unless WatchdogSec= is set
>>> watchdog.ping_if_due()                      # from the daemon loop, at least every interval/2
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

log = logging.getLogger(__name__)


def notify(environ: Mapping[str, str] | None = None, **fields: object) -> bool:
    """Send `fields` (`READY=1`, `STATUS=...`, `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1`) to systemd.

    Returns True when sent, False without `$NOTIFY_SOCKET` or when sending failed (logged: systemd's
    bookkeeping never stops the daemon).
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
    except OSError as e:
        log.warning("cannot notify systemd at %s: %s", address.replace("\0", "@"), e.strerror or e)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds systemd waits for a `WATCHDOG=1` (`WatchdogSec=`), or None when it does not watch us."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None     # meant for another process (we were started by a wrapper that set it)
    return int(usec) / 1_000_000


class Watchdog:
    """Pings systemd's watchdog at half its interval; the daemon loop calls `ping_if_due` each turn
    and waits at most `wait_at_most()` so a quiet loop still pings in time.

    Ping only from the loop that does the work: a ping from a thread of its own would keep a hung
    daemon alive.
    """

    def __init__(self, interval: float, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.every = interval / 2
        self.environ = environ
        self.clock = clock
        self.next = clock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Watchdog | None:
        interval = watchdog_interval(environ)
        return cls(interval, environ) if interval else None

    def ping_if_due(self) -> bool:
        now = self.clock()
        if now < self.next:
            return False
        self.next = now + self.every
        return notify(self.environ, WATCHDOG=1)

    def wait_at_most(self) -> float:
        """Seconds until the next ping is due (0 if it is)."""
        return max(0.0, self.next - self.clock())


# syslog priorities by logging level, for journald's `<N>` prefix on a stream line.
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority (`<3>` for an error) so journald ranks it, and
    drops the level name it would repeat. Use it only when stderr is the journal (`to_journal()`)."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        # Each line of a traceback is its own journal entry: give every one the priority.
        return "\n".join(f"<{priority}>{line}" for line in text.split("\n"))


def to_journal(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` (stderr) is connected to journald, as `$JOURNAL_STREAM` says (device:inode)."""
    environ = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    try:
        device, inode = environ.get("JOURNAL_STREAM", "").split(":")
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (str(st.st_dev), str(st.st_ino)) == (device, inode)
