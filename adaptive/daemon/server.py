"""The control socket: the daemon's end of the admin's commands, and its wire format.

A Unix stream socket speaking newline-delimited JSON, one reply line per request line:

    → {"op": "ban", "args": {"targets": ["192.0.2.7"], "duration": 14400}, "id": 1}
      ("duration": "permanent" bans until unbanned; null, or none, for the configured length;
      "earlier": [[time, seconds or null], ...], bans the targets had under another blocker, for history)
    ← {"ok": true, "result": {"banned": ["192.0.2.7"], "refused": []}, "id": 1}
    ← {"ok": false, "code": "usage", "error": "unknown op 'bna'", "id": 1}

`code` is "usage" (the request is malformed), "refused" (not allowed: the peer, the target) or
"failed" (the daemon could not do it). `id` is echoed when given. A connection may carry any number of
requests. Only root (or the daemon's own user) and members of the configured group are answered;
anyone else gets a `refused` reply. `OPS` checks each op's arguments; `ControlHandler` says what
each op's result holds.

The server checks what it is sent (types, sizes, addresses; loopback is refused here) and calls a
`ControlHandler` with clean values, one call at a time, from its own threads.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from adaptive.addresses import NEVER_LOOPBACK, Target, canonical, exact, is_loopback
from adaptive.durations import LONGEST
from adaptive.wire import (
    BanEntry,
    BanReply,
    ControlError,
    ExplainReply,
    Json,
    Refusal,
    ReloadReply,
    StatusReply,
    UnbanReply,
)

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024 * 1024    # bytes in one request line: room for a 100,000-entry ban batch
REQUEST_TIMEOUT = 30.0            # seconds from a request's first byte to its newline
IDLE_TIMEOUT = 300.0              # seconds a connection may wait between requests
MAX_CONNECTIONS = 32              # admins, scripts and the odd monitoring probe; never many
MAX_REASON = 1024                 # characters in a ban's reason
MAX_EARLIER = 1000                # earlier bans one ban request may carry (an import's history)


class ControlSocketError(Exception):
    """The socket cannot be served (another daemon answers on it, a directory cannot be made)."""


class ControlHandler(Protocol):
    """What the daemon does for each op. Called with validated, canonical values, one call at a time,
    from the server's threads (not the daemon's loop): guard what the loop also touches.

    Raise `ControlError` to answer with a reason; any other exception is logged and answered `failed`.
    """

    def ban(self, targets: list[Target], duration: float | None, reason: str | None, force: bool,
            earlier: list[tuple[float, float | None]]) -> BanReply:
        """Ban each target (read, never loopback, no duplicates) for `duration` seconds (None:
        the configured length; `math.inf`: until unbanned), as a manual ban with `reason` (None:
        "manual"). Refuse an allowlisted target unless `force`. "duration" in the reply if it knows.
        `earlier`: (time, seconds or None) of bans each target had before, elsewhere (an import from
        fail2ban), to record in its history."""
        ...

    def unban(self, targets: list[str], all: bool) -> UnbanReply:
        """Lift the bans of the targets (or every ban) and forgive their scores."""
        ...

    def list(self) -> list[BanEntry]:
        """The live bans."""
        ...

    def status(self) -> StatusReply:
        """What the daemon does: its sources, counts and bans."""
        ...

    def explain(self, address: str) -> ExplainReply:
        """Why `address` (or a prefix) is or is not banned: its ban, score, the rules behind them, its
        past bans, the allowlist entry that covers it."""
        ...

    def reload(self) -> ReloadReply:
        """Read the configuration and filters again."""
        ...


# --- the requests: each op's arguments checked into the handler call ---

class _Usage(Exception):
    pass


def _strings(args: Json, key: str) -> list[str]:
    value = args.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Usage(f"{key} must be a list of strings")
    return value


def _flag(args: Json, key: str) -> bool:
    value = args.get(key, False)
    if not isinstance(value, bool):
        raise _Usage(f"{key} must be true or false")
    return value


def _target(text: str) -> str:
    try:
        return canonical(text)
    except ValueError:
        raise _Usage(f"{text!r} is not an IP address or prefix") from None


def _ban(handler: ControlHandler, args: Json) -> BanReply:
    targets = _strings(args, "targets")
    if not targets:
        raise _Usage("ban needs targets")
    duration = args.get("duration")
    if duration == "permanent":
        duration = math.inf
    elif duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                   or not math.isfinite(duration) or not 0 < duration <= LONGEST):
        raise _Usage(f"duration must be a number of seconds above zero and at most ten years ({LONGEST}), "
                     "\"permanent\" (until unbanned), or null (the configured length)")
    reason = args.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise _Usage(f"reason must be a string of at most {MAX_REASON} characters, or null")
    force = _flag(args, "force")
    earlier = _earlier(args.get("earlier", []))
    # Read once here: the handler gets each target taken apart, and never reads it again.
    clean: dict[str, Target] = {}
    refused: list[Refusal] = []
    for text in targets:
        try:
            target = exact(text)
        except ValueError:
            refused.append({"target": text, "reason": "not an IP address or prefix"})
            continue
        if is_loopback(target):
            refused.append({"target": target.text, "reason": NEVER_LOOPBACK})
        else:
            clean.setdefault(target.text, target)
    result: BanReply = handler.ban(list(clean.values()), duration, reason, force, earlier) if clean \
        else {"banned": []}
    return {**result, "refused": refused + list(result.get("refused", []))}


def _earlier(value: Any) -> list[tuple[float, float | None]]:
    """`[[time, seconds or null], ...]`: times since the epoch and lengths, none negative."""
    def number(item: Any) -> bool:
        return isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item) and item >= 0

    if not isinstance(value, list) or len(value) > MAX_EARLIER or not all(
            isinstance(pair, list) and len(pair) == 2 and number(pair[0]) and (pair[1] is None or number(pair[1]))
            for pair in value):
        raise _Usage(f"earlier must be a list of at most {MAX_EARLIER} [time, seconds or null] pairs")
    return [(float(when), None if length is None else float(length)) for when, length in value]


def _unban(handler: ControlHandler, args: Json) -> UnbanReply:
    targets = _strings(args, "targets")
    everything = _flag(args, "all")
    if bool(targets) == everything:
        raise _Usage("unban needs targets, or all, but not both")
    return handler.unban(list(dict.fromkeys(_target(t) for t in targets)), everything)


def _explain(handler: ControlHandler, args: Json) -> ExplainReply:
    address = args.get("address")
    if not isinstance(address, str):
        raise _Usage("explain needs an address")
    return handler.explain(_target(address))


@dataclass(frozen=True)
class _Op:
    call: Callable[[ControlHandler, Json], Any]
    args: frozenset[str]
    audit: bool     # logged at info: it changes something


OPS: dict[str, _Op] = {
    "ban": _Op(_ban, frozenset({"targets", "duration", "reason", "force", "earlier"}), True),
    "unban": _Op(_unban, frozenset({"targets", "all"}), True),
    "list": _Op(lambda h, a: h.list(), frozenset(), False),
    "status": _Op(lambda h, a: h.status(), frozenset(), False),
    "explain": _Op(_explain, frozenset({"address"}), False),
    "reload": _Op(lambda h, a: h.reload(), frozenset(), True),
}


# --- the peer ---

@dataclass(frozen=True)
class Peer:
    """The process at the other end, as the kernel saw it connect (SO_PEERCRED)."""
    pid: int
    uid: int
    gid: int

    @classmethod
    def of(cls, conn: socket.socket) -> Peer:
        # struct ucred: pid_t pid, uid_t uid, gid_t gid
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
        return cls(*struct.unpack("iII", creds))

    def groups(self) -> set[int]:
        """Its supplementary groups, from /proc (empty if it is gone)."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("Groups:"):
                        return {int(g) for g in line.split()[1:]}
        except (OSError, ValueError):
            pass
        return set()

    def allowed(self, group: int | None) -> bool:
        if self.uid in (0, os.geteuid()):
            return True
        return group is not None and (self.gid == group or group in self.groups())

    def __str__(self) -> str:
        return f"pid {self.pid} uid {self.uid}"


# --- the server ---

class _TooLong(Exception):
    pass


class _Slow(Exception):
    pass


@dataclass
class _Client:
    thread: threading.Thread
    idle_since: float | None     # time.monotonic() it began to wait for a request; None while answering


class _Lines:
    """Request lines off a connection, each bounded in size and in time."""

    def __init__(self, conn: socket.socket, limit: int, request_timeout: float, idle_timeout: float):
        self.conn, self.limit = conn, limit
        self.request_timeout, self.idle_timeout = request_timeout, idle_timeout
        self.buffer = bytearray()

    def next(self) -> bytes | None:
        """The next line, without its newline; None when the peer is done (or idle too long)."""
        scanned = 0
        discarding = False
        deadline = time.monotonic() + self.request_timeout if self.buffer else None
        while True:
            end = self.buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 1]
                if discarding or len(line) > self.limit:
                    raise _TooLong()
                return line
            if len(self.buffer) > self.limit:
                # Past the bound: keep reading to the newline without keeping it, then say so.
                discarding = True
                self.buffer.clear()
            scanned = len(self.buffer)
            if deadline is None:
                self.conn.settimeout(self.idle_timeout)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _Slow()
                self.conn.settimeout(left)
            try:
                data = self.conn.recv(1 << 20)
            except TimeoutError:
                if deadline is None:
                    return None
                raise _Slow() from None
            if not data:
                return None
            if deadline is None:
                deadline = time.monotonic() + self.request_timeout
            self.buffer += data


def _encode(reply: Json) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def _error(code: str, message: str, request_id: Any = None) -> Json:
    reply = {"ok": False, "code": code, "error": message}
    if request_id is not None:
        reply["id"] = request_id
    return reply


class ControlServer:
    """Serves a `ControlHandler` on a Unix socket, in background threads.

    >>> server = ControlServer(Path("/run/adaptive/control.sock"), handler, group=None)
    >>> server.start()      # binds (mode 0600, or 0660 root:group), then serves
    >>> server.stop()       # closes and removes the socket

    `start` replaces a stale socket file but refuses one another live daemon answers on.
    """

    def __init__(self, path: Path | str, handler: ControlHandler, group: int | None = None, *,
                 max_request: int = MAX_REQUEST, request_timeout: float = REQUEST_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, max_connections: int = MAX_CONNECTIONS):
        self.path = Path(path)
        self.handler = handler
        self.group = group
        self.max_request = max_request
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._handler_lock = threading.Lock()
        self._lock = threading.Lock()
        # Each connection's thread, and since when it has waited for a request (None: answering one).
        self._connections: dict[socket.socket, _Client] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False

    # --- lifecycle ---

    def start(self) -> None:
        if len(os.fsencode(self.path)) > 107:
            raise ControlSocketError(f"{self.path}: a Unix socket path is at most 107 bytes")
        self._make_directory()
        self._clear_stale()
        self._listener = self._bind()
        self._thread = threading.Thread(target=self._accept_loop, name="control", daemon=True)
        self._thread.start()
        log.info("control socket %s (mode %s)", self.path, "0600" if self.group is None
                 else f"0660, group {self.group}")

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            active = list(self._connections.items())
        for conn, _ in active:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, client in active:
            client.thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._unlink_ours()
            self._listener = None
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _make_directory(self) -> None:
        parent = self.path.parent
        if parent.is_dir():
            return
        try:
            parent.mkdir(parents=True, mode=0o755)
            os.chmod(parent, 0o755)     # not narrowed by the umask: a configured group must reach it
        except OSError as e:
            raise ControlSocketError(f"{parent}: cannot make the socket's directory: {e.strerror}") from None

    def _clear_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(f"{self.path} exists and is not a socket; remove it or choose another "
                                     "[control] socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(os.fspath(self.path))
        except (ConnectionRefusedError, FileNotFoundError, TimeoutError):
            pass    # nobody listens: a socket left by a daemon that died
        except OSError as e:
            raise ControlSocketError(f"{self.path}: cannot tell whether a daemon answers on it: "
                                     f"{e.strerror}") from None
        else:
            raise ControlSocketError(f"{self.path}: another daemon answers on it; stop it first")
        finally:
            probe.close()
        log.info("removing the stale socket %s", self.path)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _bind(self) -> socket.socket:
        # Bound under a temporary name, given its owner and mode, then renamed into place, so the
        # socket is never reachable with a wider mode and the process umask is left alone.
        temporary = self.path.parent / f".{os.getpid()}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            listener.bind(os.fspath(temporary))
            try:
                if self.group is not None:
                    try:
                        os.chown(temporary, -1, self.group)
                    except PermissionError:
                        raise ControlSocketError(
                            f"{self.path}: cannot give the socket to group {self.group}: the daemon must "
                            f"be a member of it (under systemd: SupplementaryGroups={self.group})") from None
                os.chmod(temporary, 0o600 if self.group is None else 0o660)
                listener.listen(16)
                os.rename(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except ControlSocketError:
            listener.close()
            raise
        except OSError as e:
            listener.close()
            raise ControlSocketError(f"{self.path}: cannot serve the control socket: "
                                     f"{e.strerror or e}") from None
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        return listener

    def _unlink_ours(self) -> None:
        # Only the file this server made: a daemon started after it may have replaced it.
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    # --- serving ---

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            ready, _, _ = select.select([self._listener, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                conn, _ = self._listener.accept()
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EINTR):
                    log.error("control socket %s: accept failed: %s", self.path, e)
                continue
            with self._lock:
                full = False
                if len(self._connections) >= self.max_connections:
                    # The one that has waited longest for a request of its own makes room: idle clients
                    # (a hundred of them held `status` off for minutes) never lock others out.
                    idle = [(c.idle_since, s) for s, c in self._connections.items() if c.idle_since is not None]
                    full = not idle
                    if idle:
                        evicted = min(idle, key=lambda pair: pair[0])[1]
                        self._connections.pop(evicted)
                        with contextlib.suppress(OSError):
                            evicted.shutdown(socket.SHUT_RDWR)   # its thread sees the end, and closes it
                if not full:
                    client = _Client(threading.Thread(target=self._serve, args=(conn,), name="control-client",
                                                      daemon=True), time.monotonic())
                    self._connections[conn] = client
            if full:
                log.warning("control socket %s: %d connections all answering, one turned away", self.path,
                            self.max_connections)
                self._send(conn, _error("failed", "too many connections to the daemon; try again"))
                conn.close()
            else:
                client.thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            peer = Peer.of(conn)
            allowed = peer.allowed(self.group)
            lines = _Lines(conn, self.max_request, self.request_timeout, self.idle_timeout)
            while not self._stopping:
                self._mark(conn, time.monotonic())
                try:
                    line = lines.next()
                except _TooLong:
                    log.warning("control: %s sent a request over %d bytes", peer, self.max_request)
                    if not self._send(conn, _error("usage", f"request longer than {self.max_request} bytes")):
                        return
                    continue
                except _Slow:
                    self._send(conn, _error("usage", f"request not complete within {self.request_timeout:g} s"))
                    return
                if line is None:
                    return
                if not line.strip():
                    continue
                self._mark(conn, None)
                if not allowed:
                    log.warning("control: refused %s (gid %d): not root%s", peer, peer.gid,
                                "" if self.group is None else f" nor in group {self.group}")
                    self._send(conn, _error("refused", "only root" + (
                        "" if self.group is None else f" or members of group {self.group}") +
                        " may use the control socket"))
                    return
                if not self._send(conn, self._answer(line, peer)):
                    return
        except OSError as e:
            log.debug("control: connection lost: %s", e)
        finally:
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()

    def _mark(self, conn: socket.socket, idle_since: float | None) -> None:
        with self._lock:
            client = self._connections.get(conn)
            if client is not None:
                client.idle_since = idle_since

    def _answer(self, line: bytes, peer: Peer) -> Json:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):
            return _error("usage", "a request is one JSON object per line")
        if not isinstance(request, dict):
            return _error("usage", "a request is a JSON object, {\"op\": ..., \"args\": {...}}")
        request_id = request.get("id")
        op_name, args = request.get("op"), request.get("args", {})
        op = OPS.get(op_name) if isinstance(op_name, str) else None
        if op is None:
            return _error("usage", f"unknown op {op_name!r}; ops are {', '.join(OPS)}", request_id)
        if not isinstance(args, dict):
            return _error("usage", "args must be a JSON object", request_id)
        unknown = sorted(set(args) - op.args)
        if unknown:
            return _error("usage", f"{op_name} takes no argument {', '.join(map(repr, unknown))}", request_id)
        try:
            with self._handler_lock:
                result = op.call(self.handler, args)
        except _Usage as e:
            return _error("usage", str(e), request_id)
        except ControlError as e:
            return _error(e.code, str(e), request_id)
        except Exception as e:
            log.exception("control: %s failed", op_name)
            return _error("failed", f"{op_name} failed: {e}", request_id)
        if op.audit:
            log.info("control: %s by %s: %s", op_name, peer, _summary(args))
        reply = {"ok": True, "result": result}
        if request_id is not None:
            reply["id"] = request_id
        return reply

    def _send(self, conn: socket.socket, reply: Json) -> bool:
        try:
            data = _encode(reply)
        except (TypeError, ValueError) as e:
            log.error("control: a reply that is not JSON: %s", e)
            data = _encode(_error("failed", f"the daemon's reply could not be encoded: {e}", reply.get("id")))
        try:
            conn.settimeout(self.request_timeout)
            conn.sendall(data)
            return True
        except OSError:
            return False


def _summary(args: Json) -> str:
    targets = args.get("targets") or []
    shown = ", ".join(t if t.isprintable() else repr(t) for t in targets[:3])
    if len(targets) > 3:
        shown += f" and {len(targets) - 3} more"
    extra = {k: v for k, v in args.items() if k != "targets"}
    return " ".join(filter(None, [shown, ", ".join(f"{k}={v!r}" for k, v in extra.items())])) or "-"
