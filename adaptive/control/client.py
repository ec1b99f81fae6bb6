"""The admin's end of the control socket, and what every command that talks to the daemon shares.

>>> Client(Path("/run/adaptive/control.sock")).request("ban", targets=["192.0.2.7"], duration=3600)
{'banned': ['192.0.2.7'], 'refused': []}

`request` returns the reply's result, raises `Unreachable` (one line naming the socket path) when the
daemon cannot be reached, and `ControlError` when it answers with an error.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from adaptive import config as config_module
from adaptive.wire import ControlError

ENVIRONMENT = "ADAPTIVE_SOCKET"
TIMEOUT = 120.0     # seconds to wait for a reply: a 100,000-entry ban is one kernel transaction


class Unreachable(Exception):
    """The daemon could not be reached or did not answer; the message names the socket path."""


class Client:
    """One connection to the daemon's control socket, made on the first request.

    Use it as a context manager, or let the process end close it; requests on one client share the
    connection.
    """

    def __init__(self, path: Path, timeout: float = TIMEOUT):
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: Any = None

    def _connect(self) -> None:
        # A full listen queue (many clients at once) answers EAGAIN at once: try again a while.
        deadline = time.monotonic() + min(self.timeout, 5.0)
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(os.fspath(self.path))
                break
            except BlockingIOError:
                sock.close()
                if time.monotonic() > deadline:
                    raise Unreachable(f"cannot reach the daemon at {self.path}: its queue of connections "
                                      "stays full") from None
                time.sleep(0.01)
            except OSError as e:
                sock.close()
                raise Unreachable(f"cannot reach the daemon at {self.path}: {_why(e)}") from None
        self._sock = sock
        self._reader = sock.makefile("rb")

    def request(self, op: str, **args: Any) -> Any:
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        line = json.dumps({"op": op, "args": args}, separators=(",", ":")).encode() + b"\n"
        try:
            self._sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            pass    # the daemon hung up early (a refusal): its reply is still there to read
        except TimeoutError:
            raise Unreachable(f"the daemon at {self.path} took no request within {self.timeout:g} s") from None
        except OSError as e:
            raise Unreachable(f"lost the daemon at {self.path}: {_why(e)}") from None
        try:
            reply_line = self._reader.readline()
        except TimeoutError:
            raise Unreachable(f"no reply from the daemon at {self.path} within {self.timeout:g} s") from None
        except OSError as e:
            raise Unreachable(f"lost the daemon at {self.path}: {_why(e)}") from None
        if not reply_line:
            raise Unreachable(f"the daemon at {self.path} closed the connection without a reply")
        try:
            reply = json.loads(reply_line)
        except ValueError:
            raise ControlError(f"the daemon at {self.path} sent a reply that is not JSON", "failed") from None
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ControlError(f"the daemon at {self.path} sent a reply without \"ok\"", "failed")
        if not reply["ok"]:
            raise ControlError(str(reply.get("error", "no reason given")), str(reply.get("code", "failed")))
        return reply.get("result")

    def close(self) -> None:
        if self._sock is not None:
            self._reader.close()
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _why(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such socket (is adaptive running?)"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (a socket left behind: is adaptive running?)"
    if isinstance(e, PermissionError):
        return "permission denied (root, or a member of the [control] group, may use it)"
    if isinstance(e, TimeoutError):
        return "timed out"
    return e.strerror or str(e)


# --- what the commands share ---

def add_client_options(parser: argparse.ArgumentParser) -> None:
    """`--socket` and the config options, for a command that talks to the daemon."""
    from adaptive.control.cli import add_config_options
    parser.add_argument("--socket", type=Path, metavar="PATH",
                        help=f"the daemon's control socket (default: ${ENVIRONMENT}, else [control] socket "
                             f"of the configuration, else {config_module.ControlConfig().socket})")
    add_config_options(parser)


def socket_path(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Path:
    """`--socket`, else `$ADAPTIVE_SOCKET`, else the configuration's `[control] socket`.

    With no `-c` and no default configuration file on this host, the built-in default socket is used;
    a `-c` file that cannot be read is a configuration error.
    """
    if args.socket is not None:
        return cast(Path, args.socket)
    if environ.get(ENVIRONMENT):
        return Path(environ[ENVIRONMENT])
    if not args.config and not config_module.DEFAULT_CONFIG.exists():
        return config_module.ControlConfig().socket
    from adaptive.control.cli import load_config
    return load_config(args).control.socket


def call(args: argparse.Namespace, op: str, **op_args: Any) -> tuple[int, Any]:
    """(0, result) from the daemon, or (exit code, None) with the reason printed on stderr."""
    path = socket_path(args)
    try:
        with Client(path) as client:
            return 0, client.request(op, **op_args)
    except Unreachable as e:
        print(f"adaptive: {e}", file=sys.stderr)
        return 1, None
    except ControlError as e:
        print(f"adaptive: {op}: {e}", file=sys.stderr)
        return 2 if e.code == "usage" else 1, None


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
