"""The one way adaptive talks to the kernel: libnftables, JSON in and out, one payload per transaction.

Nothing outside `adaptive.nftables` imports `nftables`, and nothing here builds a payload: `ruleset`
does that. No `nft` process is spawned and no text output is parsed.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from typing import Any, Protocol

from adaptive.nftables.render import Json, render

# The signals a process gets from outside while it runs (systemd, an admin, a terminal): held back
# during a libnftables call. Faults (SIGSEGV and the like) and SIGKILL/SIGSTOP are not among them.
_ASYNC_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
                  signal.SIGALRM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGWINCH}


class NftablesError(Exception):
    """libnftables refused a payload, so none of it was applied. Carries the payload and libnftables'
    own message (its stderr, whole)."""

    def __init__(self, message: str, payload: Json, rc: int = 1):
        super().__init__(message, payload, rc)
        self.message = message
        self.payload = payload
        self.rc = rc

    def __str__(self) -> str:
        return self.message


class Runner(Protocol):
    """What the backend needs from an executor; tests may pass a fake."""

    def run(self, payload: Json, *, terse: bool = False) -> list[Json]: ...

    def check(self, payload: Json) -> None: ...


# libnftables' JSON output of a set (set_dtype_json) tokenises with strtok, which keeps its state in
# a global: two listings at once, in two contexts on two threads, ended the process on an assertion
# ("json.c:71: set_dtype_json: Assertion `__out' failed"). Every listing in the process takes this.
_LISTING = threading.Lock()


class Executor:
    """One libnftables context. `run` applies a payload as one transaction (or lists, returning the
    `nftables` array of the answer); `check` has the kernel validate it without applying (dry run).

        Executor().run({"nftables": [{"list": {"tables": None}}]})

    Calls are serialised; the context is bound to the network namespace it was created in.
    """

    def __init__(self, nft: Any = None):
        if nft is None:
            import nftables
            nft = nftables.Nftables()
        nft.set_json_output(True)
        self._nft = nft
        self._lock = threading.Lock()

    def run(self, payload: Json, *, terse: bool = False) -> list[Json]:
        listing = any("list" in command for command in payload.get("nftables", ()))
        with self._lock, (_LISTING if listing else contextlib.nullcontext()):
            if terse:
                self._nft.set_terse_output(True)
            try:
                return self._send(payload)
            finally:
                if terse:
                    self._nft.set_terse_output(False)

    def check(self, payload: Json) -> None:
        with self._lock:
            self._nft.set_dry_run(True)
            try:
                self._send(payload)
            finally:
                self._nft.set_dry_run(False)

    def _send(self, payload: Json) -> list[Json]:
        # What Nftables.json_cmd does, with JSON text rendered fast: a 100,000-ban payload is a few MB.
        text = render(payload)
        # A signal that lands on this thread while libnftables waits for the kernel's answer fails the
        # command with EINTR, though the kernel may have done it (seen: a SIGHUP during a reload's
        # apply). Blocked here, the kernel hands it to another thread, and Python still runs its
        # handler on the main thread once this call is over.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
        try:
            rc, output, error = self._nft.cmd(text)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if rc != 0:
            raise NftablesError(_message(error) or f"libnftables failed (rc {rc})", payload, rc)
        if not output:
            return []
        return [obj for obj in json.loads(output).get("nftables", []) if "metainfo" not in obj]


def _message(error: str) -> str:
    # libnftables places JSON input at "internal:0:0-0"; that says nothing, the rest is the message.
    return "\n".join(line.removeprefix("internal:0:0-0: ") for line in error.strip().splitlines())
