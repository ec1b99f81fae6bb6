"""The control socket and the admin's commands: real sockets, a fake handler, the CLI as a subprocess."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from adaptive import config
from adaptive.addresses import allowlisted
from adaptive.control.client import Client, Unreachable
from adaptive.control.targets import read_lines
from adaptive.daemon.server import ControlServer, ControlSocketError
from adaptive.wire import ControlError

from netns import wait_for

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_UNIT = ROOT / "conf" / "adaptive.service"
NOBODY = ["--reuid=65534", "--regid=65534"]
GROUP = 4242    # a gid with no name: the kernel and the socket need none


T0 = 1763890000.0      # 2025-11-23 09:26:40 UTC
BAN_7 = {"target": "192.0.2.7", "start": T0 + 10000, "end": T0 + 10000 + 14400, "left": 14000,
         "reason": "score", "count": 3, "origin": "automatic"}


class FakeHandler:
    """Records each call; refuses 198.51.100.0/24 (its allowlist) unless forced; `fail` is raised."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.allowlist = [ipaddress.ip_network("198.51.100.0/24")]
        self.fail: Exception | None = None
        self.wait: threading.Event | None = None
        self.waiting = 0

    def _record(self, *call: object) -> None:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail

    def ban(self, targets, duration, reason, force, earlier):
        targets = [t.text for t in targets]    # read by the socket: a handler gets them taken apart
        self._record("ban", targets, duration, reason, force, *([earlier] if earlier else []))
        banned, refused = [], []
        for t in targets:
            # (the string test first: a 100,000-entry batch would otherwise time the fake)
            entry = None if force or not t.startswith("198.51.100.") else allowlisted(t, self.allowlist)
            if entry:
                refused.append({"target": t, "reason": f"allowlisted by {entry}"})
            else:
                banned.append(t)
        return {"banned": banned, "refused": refused, "duration": duration or 3600}

    def unban(self, targets, all):
        self._record("unban", targets, all)
        if all:
            return {"unbanned": ["192.0.2.7", "203.0.113.0/24"], "not_banned": []}
        return {"unbanned": [t for t in targets if t != "192.0.2.99"],
                "not_banned": [t for t in targets if t == "192.0.2.99"]}

    def list(self):
        self._record("list")
        return [BAN_7,
                {"target": "203.0.113.0/24", "start": T0, "end": None, "left": None, "reason": "manual", "count": 1,
                 "origin": "manual"},
                {"target": "203.0.113.9", "start": T0 + 15000, "end": T0 + 15000 + 86400, "left": 86000,
                 "reason": "slow", "count": 1, "origin": "automatic"},
                {"target": "2001:db8:1:2::/64", "start": T0 + 5000, "end": T0 + 5000 + 604800, "left": 600000,
                 "reason": "honeypot", "count": 2, "origin": "manual"}]

    def status(self):
        self._record("status")
        return {"version": "0.1.0", "pid": 4242, "uptime": 7384, "dry_run": False, "enforce": True,
                "table": "adaptive",
                "sources": [{"name": "mail", "path": "/var/log/mail.log", "position": 123456, "lag": 2048,
                             "lines": 1204, "error": None},
                            {"name": "dovecot", "path": "/var/log/dovecot.log", "position": None, "lag": None,
                             "lines": 0, "error": "/var/log/dovecot.log: does not exist (waiting for it)"}],
                "events": 42, "decisions": {"ban": 3, "suppressed": 1}, "bans": 2, "bans_state": 3,
                "repairs": 0, "compared": 130.0, "tracked": 17,
                "disagree": "the kernel holds 2 ban(s), the state 3"}

    def explain(self, address):
        self._record("explain", address)
        return {"target": address, "ban": {"reason": "auth failures", "left": 3600, "origin": "automatic"},
                "score": 12.5, "threshold": 10,
                "rules": {"postfix/sasl-auth-failed": 12, "dovecot/login-auth-failed": 3},
                "history": [{"start": 1763900000, "duration": 3600, "origin": "automatic", "reason": "x"}],
                "allowlisted": None}

    def reload(self):
        self._record("reload")
        if self.wait is not None:       # a request that takes its time
            self.waiting += 1
            self.wait.wait(10)
        return {"reloaded": True, "changes": ["filters: 3 files"]}


@pytest.fixture
def sockdir():
    """A short directory anyone may traverse: a socket path is at most 107 bytes, and `nobody` must
    reach the socket for the kernel, not the directory, to decide."""
    path = Path(tempfile.mkdtemp(prefix="adaptive-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def handler() -> FakeHandler:
    return FakeHandler()


@pytest.fixture
def server(sockdir, handler):
    with ControlServer(sockdir / "control.sock", handler) as s:
        yield s


def adaptive(*args: str, stdin: str | None = None, env: dict | None = None,
             user: list[str] | None = None) -> subprocess.CompletedProcess:
    prefix = ["setpriv", *user, "--"] if user is not None else []
    return subprocess.run([*prefix, sys.executable, "-m", "adaptive", *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=ROOT)


def exchange(path: Path, data: bytes, replies: int = 1, timeout: float = 10) -> list[dict]:
    """Send raw bytes, read `replies` reply lines."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(data)
        reader = s.makefile("rb")
        return [json.loads(reader.readline()) for _ in range(replies)]


# --- targets ---

def test_read_lines_skips_blanks_and_comments_and_numbers_bad_lines():
    lines = ["# a blocklist\n", "\n", "192.0.2.7\n", "  203.0.113.9/24   # seen twice\n", "not-an-ip\n",
             "2001:db8::1\n", "192.0.2.300 # typo\n"]
    assert list(read_lines(lines)) == [
        (3, "192.0.2.7", ""), (4, "203.0.113.0/24", ""), (5, None, "'not-an-ip' is not an IP address or prefix"),
        (6, "2001:db8::1", ""), (7, None, "'192.0.2.300' is not an IP address or prefix")]


# --- the protocol, one op at a time ---

def test_each_op_round_trips_with_clean_arguments(server, handler):
    with Client(server.path) as client:
        assert client.request("ban", targets=["::ffff:192.0.2.7", "203.0.113.9/24", "192.0.2.7"],
                              duration=90, reason="by hand", force=False) == {
            "banned": ["192.0.2.7", "203.0.113.0/24"], "refused": [], "duration": 90}
        assert client.request("unban", targets=["2001:DB8::1"]) == {"unbanned": ["2001:db8::1"], "not_banned": []}
        assert client.request("unban", all=True)["unbanned"] == ["192.0.2.7", "203.0.113.0/24"]
        assert client.request("list")[0]["target"] == "192.0.2.7"
        assert client.request("status")["events"] == 42
        assert client.request("explain", address="::ffff:192.0.2.7")["target"] == "192.0.2.7"
        assert client.request("reload") == {"reloaded": True, "changes": ["filters: 3 files"]}
    assert handler.calls == [
        ("ban", ["192.0.2.7", "203.0.113.0/24"], 90, "by hand", False),
        ("unban", ["2001:db8::1"], False), ("unban", [], True),
        ("list",), ("status",), ("explain", "192.0.2.7"), ("reload",)]


def test_a_ban_carries_the_earlier_bans_an_import_brings(server, handler):
    with Client(server.path) as client:
        client.request("ban", targets=["192.0.2.7"], duration=600, reason="imported from fail2ban jail dovecot",
                       earlier=[[1796000000, 600], [1796100000.5, None]])
    assert handler.calls == [("ban", ["192.0.2.7"], 600, "imported from fail2ban jail dovecot", False,
                              [(1796000000.0, 600.0), (1796100000.5, None)])]


def test_loopback_and_non_addresses_never_reach_the_handler(server, handler):
    with Client(server.path) as client:
        result = client.request("ban", targets=["127.0.0.1", "::ffff:127.0.0.2", "::1", "0.0.0.0/0", "nope",
                                                "198.51.100.7", "192.0.2.1"])
    assert handler.calls == [("ban", ["198.51.100.7", "192.0.2.1"], None, None, False)]
    assert result["banned"] == ["192.0.2.1"]
    assert result["refused"] == [
        {"target": "127.0.0.1", "reason": "loopback is never banned"},
        {"target": "127.0.0.2", "reason": "loopback is never banned"},
        {"target": "::1", "reason": "loopback is never banned"},
        {"target": "0.0.0.0/0", "reason": "loopback is never banned"},
        {"target": "nope", "reason": "not an IP address or prefix"},
        {"target": "198.51.100.7", "reason": "allowlisted by 198.51.100.0/24"}]


def test_the_request_id_is_echoed(server):
    ok, bad = exchange(server.path, b'{"op": "status", "id": 7}\n{"op": "nope", "id": "x"}\n', replies=2)
    assert ok["ok"] is True and ok["id"] == 7 and ok["result"]["version"] == "0.1.0"
    assert bad == {"ok": False, "code": "usage", "id": "x",
                   "error": "unknown op 'nope'; ops are ban, unban, list, status, explain, reload"}


GARBAGE = [
    (b"hello\n", "one JSON object per line"),
    (b'["ban"]\n', "a request is a JSON object"),
    (b"\xff\xfe\x00\x01 binary\n", "one JSON object per line"),
    (b'{"args": {}}\n', "unknown op None"),
    (b'{"op": "ban", "args": []}\n', "args must be a JSON object"),
    (b'{"op": "ban", "args": {"targets": "192.0.2.7"}}\n', "targets must be a list of strings"),
    (b'{"op": "ban", "args": {"targets": [7]}}\n', "targets must be a list of strings"),
    (b'{"op": "ban", "args": {"targets": []}}\n', "ban needs targets"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "duration": -1}}\n', "duration must be"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "duration": true}}\n', "duration must be"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "duration": 1e11}}\n', "at most ten years"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "duration": "forever"}}\n', "duration must be"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "force": "yes"}}\n', "force must be true or false"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "reason": 5}}\n', "reason must be a string"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "when": 5}}\n', "ban takes no argument 'when'"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "earlier": [5]}}\n', "earlier must be a list"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "earlier": [[-1, 60]]}}\n', "earlier must be a list"),
    (b'{"op": "ban", "args": {"targets": ["192.0.2.7"], "earlier": [[5, "1h"]]}}\n', "earlier must be a list"),
    (b'{"op": "unban", "args": {}}\n', "unban needs targets, or all, but not both"),
    (b'{"op": "unban", "args": {"targets": ["192.0.2.7"], "all": true}}\n', "but not both"),
    (b'{"op": "unban", "args": {"targets": ["x"]}}\n', "'x' is not an IP address or prefix"),
    (b'{"op": "explain", "args": {}}\n', "explain needs an address"),
    (b'{"op": "list", "args": {"all": true}}\n', "list takes no argument 'all'"),
    (b"[" * 100000 + b"\n", "one JSON object per line"),
]


def test_garbage_gets_an_error_reply_and_the_connection_and_server_carry_on(server, handler):
    data = b"".join(line for line, _ in GARBAGE) + b"\n   \n" + b'{"op": "status"}\n'
    replies = exchange(server.path, data, replies=len(GARBAGE) + 1)
    for (line, expected), reply in zip(GARBAGE, replies[:-1], strict=True):
        assert reply["ok"] is False and reply["code"] == "usage", (line, reply)
        assert expected in reply["error"], (line, reply)
    assert replies[-1]["ok"] is True         # blank lines are skipped, the next request answered
    assert handler.calls == [("status",)]    # nothing malformed reached the handler
    with Client(server.path) as client:
        assert client.request("list")


def test_a_request_too_long_is_refused_and_the_connection_carries_on(sockdir, handler):
    with ControlServer(sockdir / "c.sock", handler, max_request=1 << 20) as server:
        huge = b'{"op": "ban", "args": {"targets": ["' + b"1" * (2 << 20) + b'"]}}\n'
        too_long, ok = exchange(server.path, huge + b'{"op": "status"}\n', replies=2)
        assert too_long == {"ok": False, "code": "usage", "error": f"request longer than {1 << 20} bytes"}
        assert ok["ok"] is True and handler.calls == [("status",)]


def test_a_request_left_unfinished_times_out_and_others_are_served(sockdir, handler):
    with ControlServer(sockdir / "c.sock", handler, request_timeout=0.2) as server:
        started = time.monotonic()
        [reply] = exchange(server.path, b'{"op": "sta', replies=1)
        assert reply == {"ok": False, "code": "usage", "error": "request not complete within 0.2 s"}
        assert time.monotonic() - started < 5
        with Client(server.path) as client:
            assert client.request("status")["events"] == 42


def test_an_idle_connection_is_closed(sockdir, handler):
    with ControlServer(sockdir / "c.sock", handler, idle_timeout=0.2) as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(server.path))
            assert s.recv(1) == b""


def test_an_idle_connection_makes_room_and_only_answering_ones_turn_a_newcomer_away(sockdir, handler):
    # A hundred idle clients held every slot, and `status` was turned away for minutes.
    with ControlServer(sockdir / "c.sock", handler, max_connections=3) as server:
        idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(100)]
        try:
            for s in idle:
                s.connect(str(server.path))
            started = time.monotonic()
            with Client(server.path) as client:
                assert client.request("status")
            assert time.monotonic() - started < 2
        finally:
            for s in idle:
                s.close()
    # One that is answering is never made room of.
    with ControlServer(sockdir / "d.sock", handler, max_connections=1) as server:
        handler.wait = threading.Event()
        busy = threading.Thread(target=lambda: Client(server.path).request("reload"))
        busy.start()
        assert wait_for(lambda: handler.waiting == 1, timeout=5)
        with Client(server.path) as late, pytest.raises(ControlError, match="too many connections"):
            late.request("status")
        handler.wait.set()
        busy.join(10)


def test_a_handler_exception_is_a_failed_reply_and_the_server_lives(server, handler, caplog):
    handler.fail = RuntimeError("the kernel said no")
    with Client(server.path) as client:
        with pytest.raises(ControlError) as e:
            client.request("reload")
        assert (e.value.code, str(e.value)) == ("failed", "reload failed: the kernel said no")
        handler.fail = ControlError("dry run: nothing to lift", "refused")
        with pytest.raises(ControlError) as e:
            client.request("unban", all=True)
        assert (e.value.code, str(e.value)) == ("refused", "dry run: nothing to lift")
        handler.fail = None
        assert client.request("status")["bans"] == 2
    assert "reload failed" in caplog.text and "the kernel said no" in caplog.text


# --- the socket file ---

def test_socket_is_0600_root_and_removed_on_stop(sockdir, handler):
    path = sockdir / "run" / "adaptive" / "control.sock"     # directories made as needed
    server = ControlServer(path, handler)
    server.start()
    st_ = os.stat(path)
    assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600 and st_.st_uid == 0
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o755
    assert [p.name for p in path.parent.iterdir()] == ["control.sock"]     # no temporary left
    server.stop()
    assert not path.exists()


def test_with_a_group_the_socket_is_0660_root_group(sockdir, handler):
    with ControlServer(sockdir / "c.sock", handler, group=GROUP) as server:
        st_ = os.stat(server.path)
        assert (stat.S_IMODE(st_.st_mode), st_.st_uid, st_.st_gid) == (0o660, 0, GROUP)


def test_a_stale_socket_is_replaced_but_a_live_one_is_not(sockdir, handler):
    path = sockdir / "c.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()                       # the file stays, nobody listens: a daemon that died
    with ControlServer(path, handler):
        with Client(path) as client:
            assert client.request("status")
        with pytest.raises(ControlSocketError, match="another daemon answers on it"):
            ControlServer(path, FakeHandler()).start()
        with Client(path) as client:    # the first still serves
            assert client.request("status")
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(ControlSocketError, match="exists and is not a socket"):
        ControlServer(path, handler).start()
    assert path.read_text() == "not a socket"


def test_a_socket_path_too_long_is_said(sockdir, handler):
    with pytest.raises(ControlSocketError, match="at most 107 bytes"):
        ControlServer(sockdir / ("x" * 120), handler).start()


# --- who may use it ---

needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                                   reason="needs root and setpriv (util-linux) to run a client as nobody")


@needs_setpriv
def test_nobody_is_kept_out_by_the_mode_and_by_the_peer_check(server, handler):
    result = adaptive("status", "--socket", str(server.path), user=[*NOBODY, "--clear-groups"])
    assert result.returncode == 1
    assert result.stderr == f"adaptive: cannot reach the daemon at {server.path}: permission denied " \
                            "(root, or a member of the [control] group, may use it)\n"
    os.chmod(server.path, 0o666)        # past the mode: the server's own check must refuse
    result = adaptive("ban", "192.0.2.7", "--socket", str(server.path), user=[*NOBODY, "--clear-groups"])
    assert result.returncode == 1
    assert result.stderr == "adaptive: ban: only root may use the control socket\n"
    assert handler.calls == []
    assert adaptive("status", "--socket", str(server.path)).returncode == 0     # root still served


@needs_setpriv
def test_a_member_of_the_group_is_served(sockdir, handler):
    with ControlServer(sockdir / "c.sock", handler, group=GROUP) as server:
        supplementary = adaptive("status", "--socket", str(server.path), user=[*NOBODY, f"--groups={GROUP}"])
        assert supplementary.returncode == 0, supplementary.stderr
        primary = adaptive("list", "--socket", str(server.path),
                           user=["--reuid=65534", f"--regid={GROUP}", "--clear-groups"])
        assert primary.returncode == 0, primary.stderr
        os.chmod(server.path, 0o666)
        outsider = adaptive("status", "--socket", str(server.path), user=[*NOBODY, "--clear-groups"])
        assert outsider.returncode == 1
        assert f"only root or members of group {GROUP} may use the control socket" in outsider.stderr
    assert handler.calls == [("status",), ("list",)]


# --- the commands ---

def test_ban_prints_what_was_banned_and_refused(server, handler):
    result = adaptive("ban", "192.0.2.7", "2001:db8::/64", "--for", "4h", "--reason", "scanner", "--socket",
                      str(server.path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "banned 192.0.2.7 for 4h\nbanned 2001:db8::/64 for 4h\n"
    assert handler.calls == [("ban", ["192.0.2.7", "2001:db8::/64"], 14400.0, "scanner", False)]
    result = adaptive("ban", "198.51.100.9", "127.0.0.1", "192.0.2.8", "--socket", str(server.path))
    assert result.returncode == 1
    assert result.stdout == "banned 192.0.2.8 for 1h\n"
    assert result.stderr == ("adaptive: not banned 127.0.0.1: loopback is never banned\n"
                             "adaptive: not banned 198.51.100.9: allowlisted by 198.51.100.0/24\n")
    result = adaptive("ban", "198.51.100.9", "--force", "--socket", str(server.path))
    assert result.returncode == 0 and result.stdout == "banned 198.51.100.9 for 1h\n"


def test_ban_usage_errors_send_nothing(server, handler):
    typo = adaptive("ban", "192.0.2.7", "192.0.2.300", "--socket", str(server.path))
    assert typo.returncode == 2
    assert typo.stderr == "adaptive ban: '192.0.2.300' is not an IP address or prefix; nothing banned\n"
    duration = adaptive("ban", "192.0.2.7", "--for", "4x", "--socket", str(server.path))
    assert duration.returncode == 2 and "'4x' is not a duration" in duration.stderr
    duration = adaptive("ban", "192.0.2.7", "--for", "100000000000", "--socket", str(server.path))
    assert duration.returncode == 2 and "at most 3650d (or permanent)" in duration.stderr
    zero = adaptive("ban", "192.0.2.7", "--for", "0", "--socket", str(server.path))
    assert zero.returncode == 2 and "longer than zero (a ban without end is permanent)" in zero.stderr
    nothing = adaptive("ban", "--socket", str(server.path))
    assert nothing.returncode == 2 and "give addresses or prefixes" in nothing.stderr
    assert handler.calls == []


def test_ban_from_a_file_reports_bad_lines_and_bans_the_good(server, handler, tmp_path):
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# spamhaus drop, 24 Nov\n\n192.0.2.7\n203.0.113.0/24 ; SBL123\n"
                         "  2001:db8:bad::/48   # v6\n127.0.0.1\nnot an address\n198.51.100.1\n")
    result = adaptive("ban", "--from-file", str(blocklist), "--reason", "drop list", "--socket", str(server.path))
    assert result.returncode == 1
    assert result.stdout == "2 banned, 2 refused, 2 bad lines\n"
    assert result.stderr == (
        f"adaptive: {blocklist}:4: '203.0.113.0/24 ; SBL123' is not an IP address or prefix\n"
        f"adaptive: {blocklist}:7: 'not an address' is not an IP address or prefix\n"
        "adaptive: not banned 127.0.0.1: loopback is never banned\n"
        "adaptive: not banned 198.51.100.1: allowlisted by 198.51.100.0/24\n")
    assert handler.calls == [("ban", ["192.0.2.7", "2001:db8:bad::/48", "198.51.100.1"], None, "drop list", False)]
    clean = adaptive("ban", "192.0.2.9", "--from-file", "-", "--socket", str(server.path),
                     stdin="# only comments and\n\n192.0.2.10\n")
    assert clean.returncode == 0 and clean.stdout == "2 banned, 0 refused, 0 bad lines\n"
    assert handler.calls[-1][1] == ["192.0.2.9", "192.0.2.10"]
    missing = adaptive("ban", "--from-file", str(tmp_path / "nope"), "--socket", str(server.path))
    assert missing.returncode == 1
    assert missing.stderr == f"adaptive: {tmp_path / 'nope'}: cannot read: No such file or directory\n"


def test_ban_from_a_file_of_100000_entries_is_one_request_in_well_under_a_second(server, handler, tmp_path):
    lines = [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" if i % 2 else f"2001:db8:{i % 65536:x}:{i // 65536:x}::/64"
             for i in range(100_000)]
    blocklist = tmp_path / "big.txt"
    blocklist.write_text("\n".join(lines) + "\n")

    started = time.perf_counter()      # the client's share: read, check and encode every line
    with open(blocklist) as f:
        targets = [target for _, target, _ in read_lines(f)]
    json.dumps({"op": "ban", "args": {"targets": targets}})
    client_side = time.perf_counter() - started
    assert len(targets) == 100_000 and client_side < 0.5, f"client side took {client_side:.2f} s"

    started = time.perf_counter()
    result = adaptive("ban", "--from-file", str(blocklist), "--socket", str(server.path))
    whole = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[:500]
    assert result.stdout == "100000 banned, 0 refused, 0 bad lines\n"
    assert len(handler.calls) == 1 and len(handler.calls[0][1]) == len(set(lines)) == 100_000
    print(f"client side {client_side:.3f} s; the whole command, daemon side included, {whole:.3f} s")
    assert whole < 3, f"banning 100,000 entries took {whole:.2f} s"


def test_a_long_list_goes_in_parts_each_target_once(server, handler, tmp_path, monkeypatch, capsys):
    from adaptive.control import ban
    from adaptive.control.cli import main
    monkeypatch.setattr(ban, "BATCH", 3)
    blocklist = tmp_path / "list.txt"
    blocklist.write_text("".join(f"192.0.2.{i}\n" for i in [1, 2, 3, 4, 2, 5, 6, 7]))
    assert main(["ban", "--from-file", str(blocklist), "--socket", str(server.path)]) == 0
    assert capsys.readouterr().out == "7 banned, 0 refused, 0 bad lines\n"
    assert [call[1] for call in handler.calls] == [["192.0.2.1", "192.0.2.2", "192.0.2.3"],
                                                  ["192.0.2.4", "192.0.2.5", "192.0.2.6"], ["192.0.2.7"]]
    banning = handler.ban

    def second_part_fails(targets, *rest):
        if any(t.text == "192.0.2.4" for t in targets):
            raise RuntimeError("the kernel said no")
        return banning(targets, *rest)
    monkeypatch.setattr(handler, "ban", second_part_fails)
    assert main(["ban", "--from-file", str(blocklist), "--socket", str(server.path)]) == 1
    assert capsys.readouterr().err == ("adaptive: ban: ban failed: the kernel said no\n"
                                       "adaptive: 3 banned before that; the last 4 not sent\n")


def test_unban(server, handler):
    result = adaptive("unban", "192.0.2.7", "192.0.2.99", "--socket", str(server.path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "unbanned 192.0.2.7, score forgiven\n192.0.2.99 was not banned; score forgiven\n"
    everything = adaptive("unban", "--all", "--socket", str(server.path))
    assert everything.returncode == 0 and everything.stdout == "2 bans lifted, scores forgiven\n"
    assert adaptive("unban", "--socket", str(server.path)).returncode == 2
    assert adaptive("unban", "192.0.2.7", "--all", "--socket", str(server.path)).returncode == 2
    assert adaptive("unban", "x", "--socket", str(server.path)).returncode == 2
    assert handler.calls == [("unban", ["192.0.2.7", "192.0.2.99"], False), ("unban", [], True)]


def test_list(server):
    utc = {**os.environ, "TZ": "UTC"}
    human = adaptive("list", "--socket", str(server.path), env=utc)
    assert human.returncode == 0, human.stderr
    assert human.stdout == (
        "TARGET             BANNED            EXPIRES           LEFT    COUNT  ORIGIN     REASON\n"
        "203.0.113.0/24     2025-11-23 09:26  permanent         -       1      manual     manual\n"
        "2001:db8:1:2::/64  2025-11-23 10:50  2025-11-30 10:50  6d22h   2      manual     honeypot\n"
        "192.0.2.7          2025-11-23 12:13  2025-11-23 16:13  3h53m   3      automatic  score\n"
        "203.0.113.9        2025-11-23 13:36  2025-11-24 13:36  23h53m  1      automatic  slow\n")
    as_json = adaptive("list", "--json", "--socket", str(server.path))
    assert as_json.returncode == 0
    listed = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert listed == sorted(FakeHandler().list(), key=lambda b: b["start"])     # oldest first, as the table


@pytest.mark.parametrize("options, targets", [
    (["--reason", "score"], ["192.0.2.7"]),
    (["--reason", "score", "--reason", "slow"], ["192.0.2.7", "203.0.113.9"]),
    (["--origin", "manual"], ["203.0.113.0/24", "2001:db8:1:2::/64"]),
    (["--origin", "manual", "--reason", "honeypot"], ["2001:db8:1:2::/64"]),
    # Inside the prefix, and covering the address.
    (["--match", "203.0.113.0/24"], ["203.0.113.0/24", "203.0.113.9"]),
    (["--match", "203.0.113.0/25"], ["203.0.113.0/24", "203.0.113.9"]),
    (["--match", "203.0.113.200"], ["203.0.113.0/24"]),
    (["--match", "::ffff:192.0.2.7"], ["192.0.2.7"]),
    (["--match", "2001:db8::/32", "--match", "192.0.2.0/24"], ["2001:db8:1:2::/64", "192.0.2.7"]),
    (["--match", "2001:db8:1:2::99"], ["2001:db8:1:2::/64"]),
    (["--sort", "expires"], ["192.0.2.7", "203.0.113.9", "2001:db8:1:2::/64", "203.0.113.0/24"]),
    (["--sort", "expires", "-r"], ["203.0.113.0/24", "2001:db8:1:2::/64", "203.0.113.9", "192.0.2.7"]),
    (["--sort", "address"], ["192.0.2.7", "203.0.113.0/24", "203.0.113.9", "2001:db8:1:2::/64"]),
    (["--sort", "reason"], ["2001:db8:1:2::/64", "203.0.113.0/24", "192.0.2.7", "203.0.113.9"]),
    (["--reason", "nothing like it"], []),
])
def test_list_filters_and_sorts_the_table_and_the_json_alike(server, options, targets):
    as_json = adaptive("list", "--json", *options, "--socket", str(server.path))
    assert as_json.returncode == 0, as_json.stderr
    assert [json.loads(line)["target"] for line in as_json.stdout.splitlines()] == targets
    human = adaptive("list", *options, "--socket", str(server.path))
    assert human.returncode == 0, human.stderr
    if targets:
        assert [line.split()[0] for line in human.stdout.splitlines()[1:]] == targets
    else:
        assert human.stdout == "no bans match (of 4)\n"


def test_list_refuses_a_match_that_is_no_address_and_asks_nothing(server, handler):
    result = adaptive("list", "--match", "203.0.113.", "--socket", str(server.path))
    assert result.returncode == 2 and "'203.0.113.' is not an IP address or prefix" in result.stderr
    assert adaptive("list", "--sort", "size", "--socket", str(server.path)).returncode == 2
    assert handler.calls == []


def test_status(server):
    human = adaptive("status", "--socket", str(server.path))
    assert human.returncode == 0, human.stderr
    assert human.stdout == """\
adaptive 0.1.0 is running (pid 4242, up 2h 3m) and enforcing its bans.

2 problems:
  - Source dovecot (/var/log/dovecot.log) cannot be read: does not exist
    (waiting for it). adaptive tries again every second; if the path is wrong,
    correct [sources.dovecot] path and run `adaptive reload`.
  - The kernel and the state disagree: the kernel holds 2 ban(s), the state 3.
    adaptive compares them every [nftables] reconcile_every and puts right
    what differs; if this stays, its log (journalctl -u adaptive) says why.

Following 2 sources:
  mail     /var/log/mail.log: ok, 1,204 lines read, 2.0 KiB behind
  dovecot  /var/log/dovecot.log: not read: does not exist (waiting for it)

Since the start: 42 events, 4 decisions (3 banned, 1 suppressed); 17 addresses
scored now.
Bans: table inet adaptive holds 2 bans, the state 3; compared with the state
2m 10s ago.
"""
    as_json = adaptive("status", "--json", "--socket", str(server.path))
    assert json.loads(as_json.stdout) == FakeHandler().status()


def test_explain(server, handler):
    human = adaptive("explain", "::ffff:192.0.2.7", "--socket", str(server.path))
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0] == "192.0.2.7 is banned: auth failures, 1h left (automatic)"
    assert lines[1] == "score 12.5 (a ban at 10)"
    assert lines[2] == "rules that made it: 2"
    assert lines[3].split() == ["12", "postfix/sasl-auth-failed"]
    assert lines[4].split() == ["3", "dovecot/login-auth-failed"]
    assert lines[5] == "past bans: 1" and "1h  automatic  x" in lines[6]
    assert handler.calls == [("explain", "192.0.2.7")]
    assert adaptive("explain", "nope", "--socket", str(server.path)).returncode == 2
    assert json.loads(adaptive("explain", "192.0.2.7", "--json", "--socket", str(server.path)).stdout)["score"] == 12.5


def test_reload(server, handler):
    result = adaptive("reload", "--socket", str(server.path))
    assert result.returncode == 0 and result.stdout == "reloaded\n  filters: 3 files\n"
    handler.fail = ControlError("/etc/adaptive/adaptive.toml: metrics.listen = \"x\": expected host:port; "
                                "the running configuration is kept", "failed")
    failed = adaptive("reload", "--socket", str(server.path))
    assert failed.returncode == 1
    assert failed.stderr.startswith("adaptive: reload: /etc/adaptive/adaptive.toml: metrics.listen")


def test_a_usage_reply_from_the_daemon_is_exit_2(server, handler):
    handler.fail = ControlError("no such op in this version", "usage")
    result = adaptive("status", "--socket", str(server.path))
    assert result.returncode == 2 and result.stderr == "adaptive: status: no such op in this version\n"


def test_an_unreachable_daemon_is_one_line_naming_the_socket(sockdir):
    missing = sockdir / "none.sock"
    with pytest.raises(Unreachable, match=f"cannot reach the daemon at {missing}: no such socket"):
        Client(missing).request("status")
    result = adaptive("status", "--socket", str(missing))
    assert result.returncode == 1
    assert result.stderr == f"adaptive: cannot reach the daemon at {missing}: no such socket (is adaptive running?)\n"
    dead = sockdir / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    s.close()
    result = adaptive("ban", "192.0.2.7", "--socket", str(dead))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"cannot reach the daemon at {dead}: connection refused" in result.stderr


def test_the_socket_path_comes_from_option_then_environment_then_config(server, sockdir, tmp_path):
    env = {**os.environ, "ADAPTIVE_SOCKET": str(server.path)}
    assert adaptive("status", env=env).returncode == 0
    env["ADAPTIVE_SOCKET"] = str(sockdir / "elsewhere.sock")
    assert adaptive("status", "--socket", str(server.path), env=env).returncode == 0
    assert str(sockdir / "elsewhere.sock") in adaptive("status", env=env).stderr
    local = tmp_path / "local.toml"
    local.write_text(f'[control]\nsocket = "{server.path}"\n')
    env.pop("ADAPTIVE_SOCKET")
    assert adaptive("status", "-c", str(local), "--dropins", "", env=env).returncode == 0
    # --socket needs no configuration, even one that cannot be read
    assert adaptive("status", "-c", str(tmp_path / "absent.toml"), "--socket", str(server.path)).returncode == 0
    absent = adaptive("status", "-c", str(tmp_path / "absent.toml"), env=env)
    assert absent.returncode == 2 and "absent.toml: no such file" in absent.stderr


def test_config_group_is_a_gid_or_a_name():
    assert config.build({"control": {"group": ""}}, {}).control.group is None
    assert config.build({"control": {"group": "4242"}}, {}).control.group == 4242
    assert config.build({"control": {"group": "root"}}, {}).control.group == 0
    with pytest.raises(config.ConfigError, match="no such group 'no-such-group-here'"):
        config.build({"control": {"group": "no-such-group-here"}}, {})


# --- systemd ---

def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt install systemd)")
    # verify wants ExecStart's program to exist: point it at this checkout's command.
    unit = tmp_path / "adaptive.service"
    unit.write_text(SHIPPED_UNIT.read_text().replace("/usr/local/bin/adaptive", str(ROOT / ".venv/bin/adaptive")))
    if not (ROOT / ".venv/bin/adaptive").exists():
        unit.write_text(unit.read_text().replace(str(ROOT / ".venv/bin/adaptive"), "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # An unknown or misspelt directive is only a warning: none is allowed.
    assert "Unknown" not in result.stderr and "ignoring" not in result.stderr, result.stderr
    text = SHIPPED_UNIT.read_text()
    for directive in ("Type=notify", "WatchdogSec=", "CapabilityBoundingSet=CAP_NET_ADMIN CAP_DAC_READ_SEARCH\n",
                      "NoNewPrivileges=yes", "ProtectSystem=strict", "RuntimeDirectory=adaptive",
                      "ExecReload=/bin/kill -HUP $MAINPID"):
        assert directive in text
