"""The daemon's hold on the kernel: bans sent in batches, the table kept true, the kernel's figures.

`Enforcer` owns the backend (the table as an object) for the daemon's loop. It applies the table at
start with every live ban of the state, sends the loop's bans in transactions of up to FLUSH_SIZE,
looks at the table once a second and repairs it when another tool flushed or changed it, compares
the kernel's ban sets with the state every `reconcile_every` seconds, and reads the kernel's figures
for scrapes and `status` off the loop. Everything but `figures` and the listings it starts on its
helper thread runs on the loop's thread. See docs/ARCHITECTURE.md, "Keeping the table true".
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from adaptive.config import Config
from adaptive.decisions import Decision
from adaptive.durations import LONGEST
from adaptive.metrics import KernelFigures, Metrics
from adaptive.nftables.backend import Backend
from adaptive.nftables.bans import BAN_SET, Ban
from adaptive.nftables.executor import Executor, NftablesError
from adaptive.state import BanRecord, State

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.005  # seconds a ban may wait for others to join its kernel transaction
FLUSH_SIZE = 1000    # bans that make a kernel transaction at once
WATCH_EVERY = 1.0    # seconds between looks at the table's sets, chains and rules (about 1 ms each)


class Enforcer:
    """The table, its bans and its upkeep, for one daemon.

    `backend` None: nothing is enforced (`enforce=False`: decisions end in the state). `reads_kernel`:
    the daemon lists the kernel itself (status, scrapes, reconciles) with a libnftables context of its
    own; not with a backend given (a test's), which may be on a namespace's kernel. `counts` is the
    daemon's, where repairs and put-right bans are counted.
    """

    def __init__(self, config: Config, backend: Backend | None, state: State, metrics: Metrics,
                 counts: Counter[str], clock: Callable[[], float], reads_kernel: bool):
        self.config = config
        self.backend = backend
        self.state = state
        self.metrics = metrics
        self.counts = counts
        self.clock = clock
        self.reads_kernel = reads_kernel
        self.read_at = 0.0       # time.monotonic() when the chunk being dealt with was read
        self._pending: list[Ban] = []
        self._pending_since = 0.0
        self._reader: Executor | None = None
        self._reader_lock = threading.Lock()
        self._helper: ThreadPoolExecutor | None = None
        self._watched_at = 0.0   # time.monotonic() of the last look at the table
        self._reconciled_at = time.monotonic()   # the start has just made kernel and state agree
        self.compared_at: float | None = None    # clock() of the last comparison of the kernel's bans with the state
        # The kernel's bans, being listed on the helper thread.
        self._reconciling: Future[dict[str, int | None]] | None = None

    def _enforcing(self) -> Backend:
        """The backend, where only an enforcing daemon gets (an adoption, a repair, a reconcile)."""
        if self.backend is None:
            raise RuntimeError("the daemon does not enforce")
        return self.backend

    # --- start-up ---

    def start(self) -> None:
        """Apply the table with every live ban of the state restored (those the table kept stay), and
        adopt the table's bans into a state that was lost. NftablesError if the kernel refuses it."""
        now = self.clock()
        if self.backend is not None:
            stored = self.state.live_ends(now)
            restore = _restore(stored, now)
            started = time.perf_counter()
            plan = self.backend.apply(restore=restore)
            self.metrics.transaction("apply", time.perf_counter() - started, plan.bans)
            log.info("ruleset applied: table inet %s, %d ban(s) from the state restored (%.2f s)",
                     self.config.nftables.table, plan.bans, time.perf_counter() - started)
            if self.state.created:
                self.adopt(stored, now)
        if self.reads_kernel:
            # Now, not at the first scrape: libnftables ends the process when it cannot open its netlink
            # socket, and by then the descriptors may have run out.
            self._reading_backend()

    # --- bans ---

    def enqueue(self, decision: Decision) -> None:
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(Ban(decision.target, decision.duration))
        if len(self._pending) >= FLUSH_SIZE or time.monotonic() - self._pending_since >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Send the waiting bans to the kernel in one transaction."""
        if not self._pending:
            return
        bans, self._pending = self._pending, []
        backend = self.backend
        if backend is None:
            return
        try:
            self.change("ban", lambda: backend.ban(bans))
        except (NftablesError, ValueError) as e:
            # A set that vanished (another tool's flush) is repaired with every live ban of the state,
            # these among them; anything else: the state has them, the next start puts them back.
            if isinstance(e, NftablesError) and self.watch(force=True):
                self.metrics.banned(time.monotonic() - self.read_at, len(bans))
                return
            self.counts["errors_nft"] += 1
            log.error("the kernel refused %d ban(s): %s", len(bans), e)
        else:
            self.metrics.banned(time.monotonic() - self.read_at, len(bans))

    def change(self, operation: str, change: Callable[[], int]) -> int:
        """Make one change of the kernel (`change` returns how many bans it carried), timed for the
        metrics; a refusal is counted as an nft error, and raised."""
        started = time.perf_counter()
        try:
            size = change()
        except (NftablesError, ValueError):
            self.metrics.error("nft")
            raise
        self.metrics.transaction(operation, time.perf_counter() - started, size)
        return size

    def adopt(self, stored: dict[str, float | None], now: float) -> None:
        """Record the bans the kernel holds that the state does not: after the database was lost (moved
        aside, or deleted), the table kept them. Only then is the kernel listed (a listing costs time
        that grows with the square of a set's size); otherwise the state is the record."""
        adopted = [BanRecord(b.target, now, None if b.expires is None else now + b.expires, "adopted", 0.0,
                             {}, None, 1, "manual") for b in self._enforcing().list() if b.target not in stored]
        if adopted:
            log.warning("%d ban(s) in the kernel were not in the state (a lost or new database): "
                        "kept and recorded", len(adopted))
            self.state.record_bans(adopted)

    # --- keeping the table true ---

    def watch(self, force: bool = False) -> list[str]:
        """Look at the table's sets, chains and rules (at most every WATCH_EVERY seconds, unless
        `force`) and repair it if any is gone or changed; returns what was found missing.

        Why a look and not netlink events: every ban the daemon makes would come back as one event per
        element (100,000 for an import), and a look costs about a millisecond whatever the number of
        bans; see docs/ARCHITECTURE.md."""
        if self.backend is None or (not force and time.monotonic() - self._watched_at < WATCH_EVERY):
            return []
        self._watched_at = time.monotonic()
        try:
            missing = self.backend.missing()
        except (NftablesError, OSError) as e:
            log.error("cannot look at table inet %s: %s", self.config.nftables.table, e)
            return []
        if missing:
            self.repair(missing)
        return missing

    def repair(self, missing: list[str]) -> None:
        """Apply the table again with every live ban of the state, in one transaction: another tool
        flushed the ruleset, deleted the table or part of it."""
        now = self.clock()
        restore = _restore(self.state.live_ends(now), now)
        log.warning("table inet %s: %s gone (flushed or changed by another tool): applying it again "
                    "with the %d live ban(s) of the state", self.config.nftables.table,
                    ", ".join(missing), len(restore))
        self._count_repair(missing)
        started = time.perf_counter()
        backend = self._enforcing()
        try:
            self.change("apply", lambda: backend.apply(restore=restore).bans)
        except (NftablesError, ValueError) as e:
            log.error("the kernel refused the repair of table inet %s: %s", self.config.nftables.table, e)
        else:
            log.warning("table inet %s repaired: %d ban(s) back in %.2f s", self.config.nftables.table,
                        len(restore), time.perf_counter() - started)

    def _count_repair(self, missing: list[str]) -> None:
        """One repair, counted by each kind of part found missing ("set ban4" counts as a set)."""
        for what in sorted({m.split()[0] for m in missing}):
            self.metrics.repair(what)
        self.counts["repairs"] += 1

    def reconcile(self, now: bool = False) -> int | None:
        """Compare the kernel's ban sets with the state every `nftables.reconcile_every` seconds (or
        `now`) and put right what differs: a ban missing from the kernel, or one whose time left no
        longer matches its end, is banned again with the time it has left. The listing (1.7 s at
        100,000 bans, mostly in C) runs on the helper thread; this starts it, and a later call takes
        its result. Returns how many bans were put right once one is done, else None."""
        if self.backend is None or not self.reads_kernel:
            return None
        if self._reconciling is None:
            if now or time.monotonic() - self._reconciled_at >= self.config.nftables.reconcile_every:
                self._reconciled_at = time.monotonic()
                self._reconciling = self.helper().submit(self._list_kernel)
            return None
        if not self._reconciling.done():
            return None
        listing, self._reconciling = self._reconciling, None
        try:
            kernel = listing.result()
        except (NftablesError, OSError) as e:
            log.error("cannot compare the kernel's bans with the state: %s", e)
            return None
        return self._put_right(kernel)

    def _list_kernel(self) -> dict[str, int | None]:
        """The kernel's bans, target -> seconds left (None: never lifted), with the reader's context."""
        return {b.target: b.left for b in self._reading_backend().list()}

    def _reading_backend(self) -> Backend:
        """A backend on the readers' own libnftables context, for listings off the loop's thread."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = Executor()
        return Backend(self._reader, self.config)

    def _put_right(self, kernel: dict[str, int | None]) -> int:
        now = self.compared_at = self.clock()
        fix = []
        for target, end in self.state.live_ends(now).items():
            left = None if end is None else end - now
            if left is not None and left < 2:
                continue                   # lapsing now in both
            ban = _ban_of(target, end, now)
            if ban is None:
                continue
            if target not in kernel:
                fix.append(ban)
                continue
            have = kernel[target]
            # A listing is a moment old; a drift of a minute (or 1% of a long ban) is worth mending.
            if have is None or left is None:
                if (have is None) != (left is None):
                    fix.append(ban)
            elif abs(have - left) > max(60, left / 100):
                fix.append(ban)
        if fix:
            missing = sum(1 for b in fix if b.target not in kernel)
            log.warning("the kernel and the state disagreed on %d ban(s) (%d missing, %d with another "
                        "time left): put right", len(fix), missing, len(fix) - missing)
            self.metrics.repair("elements")
            self.counts["reconciled"] += len(fix)
            backend = self._enforcing()
            try:
                self.change("ban", lambda: backend.ban(fix))
            except (NftablesError, ValueError) as e:
                if not (isinstance(e, NftablesError) and self.watch(force=True)):
                    log.error("the kernel refused %d ban(s) put right: %s", len(fix), e)
        return len(fix)

    # --- the kernel's figures, off the loop ---

    def figures(self) -> KernelFigures | None:
        """The kernel's figures, read by a scrape's or `status`'s thread with a libnftables context of
        its own (never the loop's backend): a listing of 100,000 bans takes 0.7 s, most of it in C with
        the interpreter free, and on the loop it would hold every ban behind it."""
        if not self.reads_kernel:
            return None
        started = time.perf_counter()
        sizes, counters = self._reading_backend().figures()
        return KernelFigures({(name, f"ipv{_family(name)}"): n for name, n in sizes.items()},
                             {name: (c.packets, c.bytes) for name, c in counters.items()},
                             time.perf_counter() - started)

    # --- reload ---

    def check(self, config: Config) -> None:
        """Whether the kernel takes `config`'s table (NftablesError, ValueError if not); changes nothing."""
        if self.backend is not None:
            self.backend.check(config)

    def reload(self, config: Config) -> list[str]:
        """Apply `config`'s table in place (its bans stay); a table that lost anything (another tool's
        flush) gets every live ban of the state back with it. Returns what changed, for the admin;
        NftablesError or ValueError if the kernel refuses it (the old table then stands: one
        transaction)."""
        backend = self.backend
        if backend is None:
            self.config = config
            return []
        changes = []
        try:
            missing = backend.missing()
        except (NftablesError, OSError):
            missing = ["table"]
        now = self.clock()
        restore = _restore(self.state.live_ends(now), now) if missing else []
        if missing:
            self._count_repair(missing)
            changes.append(f"{', '.join(missing)} gone: {len(restore)} ban(s) restored")
        self.change("apply", lambda: backend.apply(config, restore=restore).bans)
        self.config = config
        changes.append("ruleset applied")
        return changes

    # --- the end ---

    def helper(self) -> ThreadPoolExecutor:
        """A thread for kernel work that may run beside the loop's own (see `ops.ban`)."""
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="adaptive-kernel")
        return self._helper

    def close(self) -> None:
        """Stop the helper thread, and send the bans that wait."""
        if self._helper is not None:
            self._helper.shutdown()
        self.flush()

    def remove_if_asked(self) -> None:
        """Remove the table at the daemon's end, if `[nftables] remove_on_exit` asks (bans stay otherwise)."""
        if self.backend is not None and self.config.nftables.remove_on_exit:
            self.backend.remove()
            log.info("table inet %s removed, as remove_on_exit asks", self.config.nftables.table)


def _restore(stored: dict[str, float | None], now: float) -> list[Ban]:
    """The state's live bans (target -> end) as bans for the kernel, each with its time left."""
    return [ban for target, end in stored.items() if (ban := _ban_of(target, end, now)) is not None]


def _ban_of(target: str, end: float | None, now: float) -> Ban | None:
    """A state's ban as one for the kernel, with its time left at `now` (at most LONGEST: a row written
    before that cap, or by hand, must fail neither a start nor a reconcile). None, said, for a row
    that is not a ban at all."""
    try:
        return Ban(target, None if end is None else min(LONGEST, max(1, round(end - now))))
    except (ValueError, TypeError, OverflowError) as e:
        log.error("the state's ban of %r cannot be restored, left out: %s", target, e)
        return None


def _family(ban_set: str) -> str:
    """The IP version a ban set's name says ("ban6_64" -> "6")."""
    match = BAN_SET.fullmatch(ban_set)
    if match is None:
        raise ValueError(f"{ban_set!r} is not the name of a ban set")
    return match[1]
