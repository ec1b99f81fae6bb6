"""Throwaway network namespaces for tests: namespaces, veth pairs, addresses, listeners, connections.

    with Namespaces() as nets:
        srv, cli = nets.add("srv"), nets.add("cli")
        nets.veth(srv, cli, ["192.0.2.1/24", "fd00::1/64"], ["192.0.2.2/24", "fd00::2/64"])
        srv.call(serve, [25])                                   # a listener inside srv
        assert cli.call(connect, "192.0.2.2", "192.0.2.1", 25) == "connected"

Each namespace gets a worker: one Python process started with `ip netns exec`, which runs the functions
given to `call` (pickled by reference, so module-level functions of importable modules: this one, the
test modules, adaptive) and keeps its state between calls (a backend, held sockets). Nothing here changes
the namespace the tests run in; leaving the `with` block kills the workers and deletes the namespaces.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import secrets
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The interpreter that runs adaptive and the workers: the checkout's venv, or another one named (the tests
# of Debian 13's Python, run in its root, name its /usr/bin/python3).
PYTHON = Path(os.environ.get("ADAPTIVE_TEST_PYTHON") or REPO / ".venv" / "bin" / "python")

_WORKER = r"""
import os, pickle, struct, sys, traceback
inp, out = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
os.dup2(2, 1)  # what called functions print goes to stderr, never into the protocol
sys.path[:0] = [p for p in os.environ["ADT_SYSPATH"].split(os.pathsep) if p]
while True:
    head = inp.read(4)
    if len(head) < 4:
        break
    try:
        func, args, kwargs = pickle.loads(inp.read(struct.unpack(">I", head)[0]))
        result = (True, func(*args, **kwargs))
    except BaseException as e:
        result = (False, e)
    try:
        data = pickle.dumps(result)
    except Exception:
        data = pickle.dumps((False, RuntimeError("".join(traceback.format_exception(result[1])))))
    out.write(struct.pack(">I", len(data)) + data)
    out.flush()
"""


def missing(*tools: str) -> str:
    """Why tests in network namespaces cannot run here ("" if they can): root, iproute2, nft and
    python3-nftables, plus `tools` (binaries a test file needs besides). The reason goes to the skip."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "nft", *tools):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"needs {tool}, which is not installed"
    try:
        import nftables  # noqa: F401  (only to know whether the kernel can be driven)
    except ImportError:
        return "needs python3-nftables"
    return ""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


class Worker:
    """A Python process inside a namespace that runs the functions `call` sends it, one at a time."""

    def __init__(self, namespace: str):
        env = dict(os.environ, ADT_SYSPATH=os.pathsep.join([str(REPO), str(REPO / "tests"), *sys.path]))
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, str(PYTHON), "-c", _WORKER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=REPO)
        self._lock = threading.Lock()

    def call(self, func: Callable, *args: Any, timeout: float = 60, **kwargs: Any) -> Any:
        data = pickle.dumps((func, args, kwargs))
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(struct.pack(">I", len(data)) + data)
            self._proc.stdin.flush()
            head = self._read(4, timeout)
            ok, value = pickle.loads(self._read(struct.unpack(">I", head)[0], timeout))
        if not ok:
            raise value
        return value

    def _read(self, size: int, timeout: float) -> bytes:
        assert self._proc.stdout is not None
        fd, chunks, deadline = self._proc.stdout.fileno(), b"", time.monotonic() + timeout
        while len(chunks) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                raise TimeoutError(f"worker gave no answer within {timeout}s")
            chunk = os.read(fd, size - len(chunks))
            if not chunk:
                raise RuntimeError(f"worker died (exit {self._proc.wait()})")
            chunks += chunk
        return chunks

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


class Namespace:
    """One network namespace with its loopback up, and a worker started on first `call`."""

    def __init__(self, name: str):
        self.name = name
        self._worker: Worker | None = None
        _run("ip", "netns", "add", name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str) -> subprocess.CompletedProcess:
        return _run("ip", "-n", self.name, *args)

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run("ip", "netns", "exec", self.name, *cmd, check=check)

    def add_address(self, device: str, cidr: str) -> None:
        # nodad: an IPv6 address is usable at once instead of after duplicate detection.
        extra = ["nodad"] if ":" in cidr else []
        self.ip("address", "add", cidr, "dev", device, *extra)

    def call(self, func: Callable, *args: Any, **kwargs: Any) -> Any:
        if self._worker is None:
            self._worker = Worker(self.name)
        return self._worker.call(func, *args, **kwargs)

    def restart_worker(self) -> None:
        """A fresh worker, as a restarted daemon would be."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def delete(self) -> None:
        self.restart_worker()
        _run("ip", "netns", "delete", self.name, check=False)


class Namespaces:
    """The namespaces of one test; all deleted on leaving, whatever happened."""

    def __init__(self, prefix: str = "adt"):
        self.prefix = f"{prefix}-{secrets.token_hex(3)}"
        self.namespaces: list[Namespace] = []
        self._links = 0

    def add(self, role: str) -> Namespace:
        ns = Namespace(f"{self.prefix}-{role}")
        self.namespaces.append(ns)
        return ns

    def veth(self, a: Namespace, b: Namespace, a_addresses: list[str],
             b_addresses: list[str]) -> tuple[str, str]:
        """A veth pair between `a` and `b`, up, with the addresses given (IPv4 and IPv6 CIDRs)."""
        self._links += 1
        a_dev, b_dev = f"veth{self._links}a", f"veth{self._links}b"
        a.ip("link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b.name)
        for ns, dev, addresses in ((a, a_dev, a_addresses), (b, b_dev, b_addresses)):
            for cidr in addresses:
                ns.add_address(dev, cidr)
            ns.ip("link", "set", dev, "up")
        return a_dev, b_dev

    @staticmethod
    def pin_neighbours(a: Namespace, a_dev: str, b: Namespace, b_dev: str) -> None:
        """Permanent neighbour entries both ways for every address on the two ends, as if the peer were
        behind a router: no ARP or neighbour discovery is needed (nor filtered) to reach it."""
        ends = []
        for ns, dev in ((a, a_dev), (b, b_dev)):
            info = json.loads(ns.ip("-j", "address", "show", "dev", dev).stdout)[0]
            ends.append((ns, dev, info["address"], [i["local"] for i in info["addr_info"]
                                                    if i.get("scope") == "global"]))
        for (ns, dev, _, _), (_, _, mac, addresses) in ((ends[0], ends[1]), (ends[1], ends[0])):
            for address in addresses:
                ns.ip("neighbour", "replace", address, "lladdr", mac, "dev", dev, "nud", "permanent")

    @staticmethod
    def unpin_neighbours(*ends: tuple[Namespace, str]) -> None:
        for ns, dev in ends:
            ns.ip("neighbour", "flush", "dev", dev, "nud", "permanent")

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            ns.delete()
        self.namespaces.clear()

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- functions for workers: module level, so `call` can send them ---

_held: list[socket.socket] = []


def serve(ports: list[int], host: str = "::") -> None:
    """Listen on TCP `ports` (IPv4 and IPv6 when `host` is "::") in threads; accepted connections stay
    open until the peer closes them. Returns once every port is listening."""
    for port in ports:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(512)
        threading.Thread(target=_accept, args=(sock,), daemon=True).start()


def _accept(listener: socket.socket) -> None:
    open_: list[socket.socket] = [listener]
    while True:
        for sock in select.select(open_, [], [])[0]:
            if sock is listener:
                open_.append(listener.accept()[0])
            elif not sock.recv(4096):
                open_.remove(sock)
                sock.close()


def connect(source: str, destination: str, port: int, timeout: float = 0.5, hold: bool = False) -> str:
    """Open a TCP connection from `source` (an address of this namespace): "connected", "timeout", or
    the errno's name (ECONNREFUSED, EHOSTUNREACH...). With `hold` the connection stays open."""
    family = socket.AF_INET6 if ":" in destination else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((source, 0))
        sock.connect((destination, port))
    except TimeoutError:
        sock.close()
        return "timeout"
    except OSError as e:
        sock.close()
        return errno.errorcode.get(e.errno or 0, str(e))
    if hold:
        _held.append(sock)
    else:
        sock.close()
    return "connected"


def release() -> int:
    """Close the connections `connect(hold=True)` kept; returns how many."""
    count = len(_held)
    while _held:
        _held.pop().close()
    return count


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
