"""The control socket's wire format: what both ends, the daemon's server and the admin's client, read.

A request is one JSON object per line, `{"op": ..., "args": {...}, "id": ...}`; a reply is
`{"ok": true, "result": ..., "id": ...}` or `{"ok": false, "code": ..., "error": ..., "id": ...}`
(`adaptive.daemon.server` says what each op takes). Here: the error a reply carries and the shape of
each op's result. A module of its own so that the client never imports the daemon.
"""

from __future__ import annotations

from typing import Any, TypedDict

# A JSON object as it crosses the socket: a request, its args, a reply. Each op's result has its
# shape below; what a request holds is checked by the server (`adaptive.daemon.server`).
Json = dict[str, Any]


class ControlError(Exception):
    """An error reply: a handler raises it to answer with this message and code ("refused", "failed"
    or "usage"), and the client raises it when the daemon answers with one."""

    def __init__(self, message: str, code: str = "failed"):
        super().__init__(message)
        self.code = code


class Refusal(TypedDict):
    target: str
    reason: str


class BanReply(TypedDict, total=False):
    banned: list[str]            # canonical targets, as banned
    refused: list[Refusal]
    duration: int | None         # the seconds the bans were made for; None: until unbanned


class UnbanReply(TypedDict):
    unbanned: list[str]
    not_banned: list[str]


class BanEntry(TypedDict):
    target: str
    start: float                 # when it was banned (Unix time)
    end: float | None            # when the kernel lifts it (Unix time); None: until unbanned
    left: float | None           # seconds; None: until unbanned
    reason: str
    count: int                   # bans of this target so far, this one included
    origin: str                  # "automatic" (scored), or "manual" (`adaptive ban`, or adopted from the kernel)


class SourceStatus(TypedDict):
    name: str
    path: str
    position: int | None         # bytes of complete lines read (the journal: the last entry's time, µs); None
                                 # while nothing is open
    lag: int | None              # what is there that was not read yet, in lag_unit
    lag_unit: str                # "bytes" (a file), "seconds" (the journal)
    lines: int
    error: str | None


class StatusReply(TypedDict, total=False):
    version: str
    pid: int
    uptime: float
    dry_run: bool
    enforce: bool                # False: the daemon keeps the kernel out (a test's)
    table: str                   # the nftables table it owns (inet family)
    sources: list[SourceStatus]
    events: int
    decisions: dict[str, int]    # outcome -> decisions made
    bans: int | None             # live in the kernel (None: not known)
    bans_state: int              # live in the state
    repairs: int
    compared: float | None       # seconds since the kernel's bans were last compared with the state's
    tracked: int                 # addresses and prefixes the scorer keeps
    state_error: str | None      # while the state's disk refuses writes
    state_unwritten: int
    kernel_error: str            # the kernel could not be listed
    kernel_counting: bool        # still listing: `bans` is the last count
    disagree: str                # kernel and state hold other numbers of bans


class LiveBan(TypedDict):
    reason: str
    left: float | None
    origin: str
    rules: dict[str, int]
    score: float


class ExplainReply(TypedDict):
    target: str
    ban: LiveBan | None
    scoring: dict[str, Any] | None   # the scorer's own account (`Scorer.explain`), None if untracked
    rules: dict[str, int]            # "filter/rule" -> events behind the score or the ban
    score: float | None
    threshold: float
    history: list[dict[str, Any]]    # past bans: {"start", "duration", "reason", "origin"}
    allowlisted: str | None          # the entry that covers the target


class ReloadReply(TypedDict):
    reloaded: bool
    changes: list[str]
