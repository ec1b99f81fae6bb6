"""The operations the control socket serves, on the daemon's public API.

Each operation is a function of the daemon that runs on the daemon's own thread (`ban`, `unban`,
`bans`, `status`, `explain`): the loop's stages need no lock, and a test calls them directly.
`Operations` is what the socket server calls from its threads: it hands each one to the loop with
`Daemon.call` and waits for the answer, and reads the kernel's figures for `status` off the loop.
The replies are the wire format's (`adaptive.wire`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING

from adaptive import __version__
from adaptive.addresses import Target, allowlisted, parse_network, text
from adaptive.durations import LONGEST
from adaptive.nftables.executor import NftablesError
from adaptive.wire import (
    BanEntry,
    BanReply,
    ExplainReply,
    LiveBan,
    Refusal,
    ReloadReply,
    SourceStatus,
    StatusReply,
    UnbanReply,
)

if TYPE_CHECKING:
    from adaptive.daemon.loop import Daemon


def ban(d: Daemon, targets: list[Target], duration: float | None, reason: str, force: bool,
        earlier: Sequence[tuple[float, float | None]] = ()) -> BanReply:
    """Ban `targets` (each read and checked by the server) for `duration` seconds (inf: until unbanned;
    None: the reason's configured length). The decider screens them (allowlist, own addresses; `force`
    lets a covering ban through); a prefix needs a ban set of its length. `earlier` bans, another
    blocker's, join each target's history."""
    seconds: int | None
    if duration is None:
        seconds = d.decider.profile(reason).duration(1)
    else:
        seconds = None if math.isinf(duration) else max(1, min(LONGEST, round(duration)))
    refused: list[Refusal] = []
    fit: list[Target] = []
    for target in targets:
        # Addresses always have a set; a prefix needs one for its length.
        try:
            if d.backend is not None and not target.host:
                d.backend.layout.set_for(target.version, target.address, target.length)
            fit.append(target)
        except ValueError as e:
            refused.append({"target": target.text, "reason": str(e)})
    screened = d.decider.screen(fit, force)
    refused += [{"target": t, "reason": why} for t, why in screened.refused]
    banned = screened.passed
    kernel: Future[int] | None = None
    backend = d.backend
    if backend is not None and banned:
        # libnftables and SQLite each spend most of a 100,000-line import in C, without the GIL:
        # the kernel takes the bans on a helper thread while this one records them (the state's
        # connection stays on this thread). Together, a third quicker than one after the other.
        kernel = d.kernel.helper().submit(d.kernel.change, "ban", lambda: backend.ban_targets(banned, seconds))
    try:
        d.decider.record_manual(banned, seconds, reason, earlier)
    finally:
        if kernel is not None:
            wait([kernel])
    if kernel is not None and kernel.exception() is not None:
        # Into a set that vanished (another tool's flush): the repair puts them in with the rest.
        if not (isinstance(kernel.exception(), NftablesError) and d.kernel.watch(force=True)):
            kernel.result()
    d.counts["manual_bans"] += len(banned)
    d.metrics.manual(bans=len(banned))
    return {"banned": [t.text for t in banned], "refused": refused, "duration": seconds}


def unban(d: Daemon, targets: list[str], everything: bool) -> UnbanReply:
    """Lift the bans of `targets` (or of every live one) in the state and the kernel, and forgive
    their scores."""
    if everything:
        targets = [r.target for r in d.state.live_bans(d.clock(), outcome=None)]
        if d.backend is not None:
            targets = list(dict.fromkeys(targets + [b.target for b in d.backend.list()]))
    unbanned: list[str] = []
    missing: list[str] = []
    for target in targets:
        (unbanned if d.decider.unban(target) else missing).append(target)
        d.scorer.forgive(target)
    backend = d.backend
    if backend is not None and targets:
        try:
            d.kernel.change("unban", lambda: backend.unban(targets))
        except NftablesError:
            # A table that lost a set is repaired from the state, which no longer has these.
            if not d.kernel.watch(force=True):
                raise
    d.counts["manual_unbans"] += len(unbanned)
    d.metrics.manual(unbans=len(unbanned))
    return {"unbanned": unbanned, "not_banned": missing}


def bans(d: Daemon) -> list[BanEntry]:
    """The live bans of the state, oldest first."""
    now = d.clock()
    return [{"target": r.target, "start": r.start, "end": r.end,
             "left": None if r.end is None else max(0.0, r.end - now),
             "reason": r.reason, "count": r.count, "origin": r.origin}
            for r in sorted(d.state.live_bans(now), key=lambda r: r.start)]


def status(d: Daemon) -> StatusReply:
    """What the daemon does, from the loop's side: sources, counts, the state's bans (and the kernel's
    when the daemon does not list it itself: then `Operations.status` adds them, off the loop)."""
    sources: list[SourceStatus] = []
    for f in d.followers:
        position = f.source.position
        offset = position.offset if position is not None else None
        sources.append({"name": f.source.name, "path": f.source.where, "position": offset,
                        "lag": None if offset is None else f.source.lag(), "lag_unit": f.source.lag_unit,
                        "lines": f.engine.counts.lines, "error": f.source.error})
    decisions = {k.removeprefix("decisions_"): v for k, v in d.counts.items() if k.startswith("decisions_")}
    kernel = None   # `status` counts the kernel's, when it reads the kernel itself
    in_state = d.state.live_count(d.clock())
    if not d.kernel.reads_kernel:
        kernel = len(d.backend.list()) if d.backend is not None else in_state
    compared = d.kernel.compared_at
    reply: StatusReply = {
        "version": __version__, "pid": os.getpid(), "uptime": d.clock() - d.started,
        "dry_run": d.config.decisions.dry_run, "enforce": d.enforce, "table": d.config.nftables.table,
        "sources": sources, "events": d.counts["events"], "decisions": decisions, "bans": kernel,
        "bans_state": in_state, "repairs": d.counts["repairs"],
        "compared": None if compared is None else max(0.0, d.clock() - compared), "tracked": len(d.scorer)}
    if d.state.unwritten:
        reply["state_error"] = d.state.write_error
        reply["state_unwritten"] = d.state.unwritten
    return reply


def explain(d: Daemon, address: str) -> ExplainReply:
    """Why `address` (or a prefix) is banned or scored as it is: its ban, its scoring, the rules behind
    both, its history, and the allowlist entry that covers it."""
    now = d.clock()
    try:
        scored = d.scorer.explain(address)
    except ValueError:
        scored = None
    record = d.state.ban(text(parse_network(address)))
    if record is None and scored is not None:
        record = d.state.ban(scored["target"])
    live: LiveBan | None = None
    if record is not None and record.live(now):
        live = {"reason": record.reason, "left": None if record.end is None else record.end - now,
                "origin": record.origin, "rules": record.rules, "score": record.score}
    target = record.target if record is not None else (scored or {}).get("target", address)
    entry = allowlisted(address, d.config.allowlist.addresses)
    # The scorer keeps each address's leading rules, not every event; a ban keeps those that made it.
    rules = dict((scored or {}).get("rules") or {})
    if live is not None:
        for rule, count in (live["rules"] or {}).items():
            rules[rule] = max(count, rules.get(rule, 0))
    return {"target": target, "ban": live, "scoring": scored, "rules": rules,
            "score": None if scored is None else scored.get("score"),
            "threshold": d.config.scoring.threshold,
            "history": d.state.history(target),
            "allowlisted": None if entry is None else str(entry)}


class Operations:
    """The control socket's handler (`server.ControlHandler`): each operation run on the daemon's
    thread through `Daemon.call`, from the server's."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon

    def ban(self, targets: list[Target], duration: float | None, reason: str | None, force: bool,
            earlier: list[tuple[float, float | None]]) -> BanReply:
        return self.daemon.call(lambda: ban(self.daemon, targets, duration, reason or "manual", force, earlier))

    def unban(self, targets: list[str], all: bool) -> UnbanReply:
        return self.daemon.call(lambda: unban(self.daemon, targets, all))

    def list(self) -> list[BanEntry]:
        return self.daemon.call(lambda: bans(self.daemon))

    def status(self) -> StatusReply:
        d = self.daemon
        reply = d.call(lambda: status(d))
        # Counted off the loop, with a libnftables context of its own, on a thread that status waits
        # for a quarter of a second at most: listing 100,000 bans takes most of a second, 1,000,000
        # most of a minute, and neither the loop nor the admin may wait for that.
        try:
            figures = d.kernel_figures(fresh=True)
        except (NftablesError, OSError) as e:
            # The rest of the status still says what the daemon does; the kernel's count is unknown.
            reply["kernel_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
            return reply
        if figures is not None:
            reply["bans"] = sum(figures.bans.values())
        if d.kernel_figures.reading:
            # Still counting (a million bans take most of a minute): the count shown is the last one.
            reply["kernel_counting"] = True
        elif d.enforce and not d.config.decisions.dry_run and reply["bans"] is not None \
                and reply["bans"] != reply["bans_state"]:
            # Seconds apart, a ban may lapse in one and not yet in the other; more is worth saying.
            reply["disagree"] = f"the kernel holds {reply['bans']} ban(s), the state {reply['bans_state']}"
        return reply

    def explain(self, address: str) -> ExplainReply:
        return self.daemon.call(lambda: explain(self.daemon, address))

    def reload(self) -> ReloadReply:
        return self.daemon.call(self.daemon.reload)
