"""sd_notify: real datagram sockets (a path and an abstract name) receive what systemd would."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import uuid

import pytest
from adaptive.notify import JournalFormatter, Watchdog, notify, to_journal, watchdog_interval


@pytest.fixture(params=["path", "abstract"])
def systemd(request):
    """A datagram socket standing in for systemd's, and the NOTIFY_SOCKET naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(10)
    if request.param == "path":
        directory = tempfile.mkdtemp(prefix="adaptive-notify-", dir="/tmp")
        address = name = os.path.join(directory, "notify")
        sock.bind(address)
    else:
        name = f"@adaptive-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name[1:])
    yield sock, {"NOTIFY_SOCKET": name}
    sock.close()
    if request.param == "path":
        os.unlink(name)
        os.rmdir(os.path.dirname(name))


def test_ready_status_and_the_rest_arrive(systemd):
    sock, environ = systemd
    assert notify(environ, READY=1, STATUS="following 2 logs")
    assert sock.recv(4096) == b"READY=1\nSTATUS=following 2 logs"
    for field in ("RELOADING", "STOPPING", "WATCHDOG"):
        assert notify(environ, **{field: 1})
        assert sock.recv(4096) == f"{field}=1".encode()


def test_nothing_without_notify_socket():
    assert notify({}, READY=1) is False
    assert notify({"NOTIFY_SOCKET": ""}, READY=1) is False


def test_a_socket_that_is_gone_is_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING):
        assert notify({"NOTIFY_SOCKET": "/nonexistent/adaptive/notify"}, READY=1) is False
    assert "cannot notify systemd at /nonexistent/adaptive/notify" in caplog.text


def test_watchdog_interval():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None
    assert Watchdog.from_environment({}) is None


def test_watchdog_pings_at_half_the_interval(systemd):
    sock, environ = systemd
    now = [100.0]
    dog = Watchdog(30.0, {**environ, "WATCHDOG_USEC": "30000000"}, clock=lambda: now[0])
    assert dog.ping_if_due() and sock.recv(4096) == b"WATCHDOG=1"
    assert dog.wait_at_most() == 15.0
    now[0] += 14.9
    assert not dog.ping_if_due()
    now[0] += 0.1
    assert dog.wait_at_most() == 0.0
    assert dog.ping_if_due() and sock.recv(4096) == b"WATCHDOG=1"
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)     # exactly two pings


def test_journal_lines_carry_their_priority():
    formatter = JournalFormatter("%(name)s: %(message)s")
    record = logging.LogRecord("adaptive", logging.ERROR, __file__, 1, "it broke\nsecond line", None, None)
    assert formatter.format(record) == "<3>adaptive: it broke\n<3>second line"
    info = logging.LogRecord("adaptive", logging.INFO, __file__, 1, "ok", None, None)
    assert formatter.format(info) == "<6>adaptive: ok"


def test_to_journal_compares_stderr_with_journal_stream(tmp_path):
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        assert to_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not to_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not to_journal(stream, {})
