"""The daemon's composition root: it builds every stage from the configuration and wires them.

    sources → filters (Engine) → scoring (Scorer) → decisions (Decider) → nftables (Backend)
                                                          ↘ state (bans, positions)

No other module knows every stage. Everything that touches the state, the scorer or the kernel runs on
the daemon's one thread: the control socket's requests are handed to it through a queue and answered
when it has done them, so no stage needs a lock.

Exactly once: each chunk of lines is dealt with inside one state transaction that also saves the
source's position after it, so a crash (`kill -9`) re-reads the chunk rather than losing it, and a
chunk whose decisions were committed is never read again. Bans reach the kernel before that commit;
one the kernel has and the store lost is adopted at the next start, one the store has and the kernel
lost is put back.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import select
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from adaptive import __version__
from adaptive.addresses import Target, allowlisted, parse_network, text
from adaptive.config import Config, ConfigError, SourceConfig, load
from adaptive.control.socket import ControlError, ControlServer
from adaptive.decisions import Decider, Decision, Outcome, host_addresses
from adaptive.durations import LONGEST
from adaptive.events import Event
from adaptive.filters.engine import Engine
from adaptive.filters.prefix import YearGuess
from adaptive.filters.rules import Filter, FilterError, load_directory
from adaptive.metrics import (
    CENSUS_TIMEOUT,
    Cached,
    Census,
    Exporter,
    KernelFigures,
    Metrics,
    NullMetrics,
    Snapshot,
)
from adaptive.nftables.backend import Backend
from adaptive.nftables.bans import BAN_SET, Ban
from adaptive.nftables.executor import Executor, NftablesError
from adaptive.notify import Watchdog, notify
from adaptive.scoring import Scorer, tallies
from adaptive.sources import Chunk, FileSource, Position, Watch
from adaptive.state import BanRecord, State, StateError

log = logging.getLogger(__name__)

POLL = 1.0          # seconds between polls when nothing woke us: the fallback for missed file events
POLL_BUDGET = 0.25  # seconds of reading per source before the loop sees to requests and signals
READ_SLICE = 1 << 20  # bytes read at once: in a ban storm (16,000 lines/s) a slice takes under a second
FLUSH_EVERY = 0.005  # seconds a ban may wait for others to join its kernel transaction
FLUSH_SIZE = 1000    # bans that make a kernel transaction at once
WATCH_EVERY = 1.0    # seconds between looks at the table's sets, chains and rules (about 1 ms each)
SOURCE_NAG = 300.0   # seconds between warnings that a source still cannot be read
SCORES_EVERY = 60.0  # seconds between saves of the scorer (a start catches up on the lines since)


@dataclass
class _Follower:
    """One source and the engine that reads it: an engine holds per-log state (the queue-id join)."""

    source: FileSource
    engine: Engine


class _Waker:
    """What the loop sleeps on between polls, and what wakes it early: a pipe.

    A signal handler runs on the loop's own thread, between any two of its bytecodes. Setting a
    `threading.Event` there takes the lock the loop may be holding inside that same event's `wait` or
    `clear`, and waits for itself: a SIGTERM at that instant hung the daemon for good. Writing a byte to
    a pipe takes no lock. A full pipe means a wake-up is pending anyway.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._closed = False

    def poke(self) -> None:
        if self._closed:
            return
        try:
            os.write(self._write, b"!")
        except BlockingIOError:
            pass

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, less if poked; True if poked (every poke so far is taken)."""
        if not select.select([self._read], [], [], timeout)[0]:
            return False
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        # The flag first: a handler that runs between the two then does nothing, rather than write to a
        # descriptor number the process may have given to another file.
        if self._closed:
            return
        self._closed = True
        os.close(self._read)
        os.close(self._write)


class Daemon:
    """Follows every configured log, scores, decides and bans, until `stop` is set.

    >>> daemon = Daemon(config, config_files=[...])
    >>> daemon.start()            # applies the ruleset, restores bans, opens the socket
    >>> daemon.run(stop)          # returns once `stop` is set; bans stay in the kernel

    `backend` and `state` may be given (tests); `enforce=False` keeps the kernel out entirely (the
    pipeline then ends at recorded decisions). `metrics` too (a test's own registry); by default an
    `Exporter` when `[metrics] listen` is set, served from `start`.
    """

    def __init__(self, config: Config, *, config_files: list[Path] | None = None,
                 dropins: Path | None = None, state: State | None = None,
                 backend: Backend | None = None, enforce: bool = True, control: bool = True,
                 on_event: Callable[[Event], None] | None = None, clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None):
        self.config = config
        self.config_files = config_files or list(config.files)
        self.dropins = dropins
        self.clock = clock
        self.on_event = on_event
        self.enforce = enforce
        self.started = clock()
        self.filters = load_directory(config.filters_directory)
        self.state = state or State(config.state.path, clock=clock)
        self.backend = backend or (Backend(Executor(), config) if enforce else None)
        self.scorer = Scorer(config.scoring, tallies(self.filters) or None)
        self.decider: Decider | None = None
        self.followers = [self._follower(name, src) for name, src in config.sources.items()]
        self.counts: Counter[str] = Counter()
        self._pending: list[Ban] = []
        self._pending_since = 0.0
        self._requests: queue.Queue[tuple[Callable[[], object], Future]] = queue.Queue()
        self._reload_asked = False     # set by SIGHUP's handler: a plain flag, which takes no lock
        self._stop_asked = False       # set by SIGTERM's and SIGINT's
        self._waker = _Waker()
        self._watch: Watch | None = None
        self._server = ControlServer(config.control.socket, _Handler(self), config.control.group) \
            if control else None
        if metrics is None:
            metrics = Exporter() if config.metrics.listen else NullMetrics()
        self.metrics: Metrics = metrics
        self._census = Census()
        self._read_at = 0.0      # time.monotonic() when the chunk being dealt with was read
        self._reads_kernel = enforce and backend is None
        self._reader: Executor | None = None
        self._reader_lock = threading.Lock()
        self._helper: ThreadPoolExecutor | None = None
        self._watched_at = 0.0   # time.monotonic() of the last look at the table
        self._reconciled_at = time.monotonic()   # the start has just made kernel and state agree
        self._reconciling: Future | None = None  # the kernel's bans, being listed on the helper thread
        self._nagged: dict[str, float] = {}   # source name -> time.monotonic() of its last warning
        self._unwritable_said: float | None = None   # time.monotonic() of the last word of a refusing disk
        self._scores_saved_at = time.monotonic()
        self._scores_events = -1  # counts["events"] at the last save of the scorer
        # The kernel's figures, for scrapes and `status` alike: read on a thread of their own, never
        # waited for more than half a second (a million bans take most of a minute to list).
        self.kernel_figures = Cached(lambda: self._read_kernel())
        self.metrics.watch(self._take_census, self.kernel_figures)

    # --- start-up ---

    def start(self) -> None:
        """Apply the ruleset with every live ban of the state restored (those the table kept stay), adopt
        the table's bans into a state that was lost, and open the control socket. NftablesError if the
        kernel refuses the ruleset, MetricsError if the metrics cannot be served (checked first: nothing
        has changed then)."""
        if self.config.metrics.listen:
            self.metrics.serve(self.config.metrics.listen)
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
                self._adopt(stored, now)
        if self._reads_kernel:
            # Now, not at the first scrape: libnftables ends the process when it cannot open its netlink
            # socket, and by then the descriptors may have run out.
            self._reading_backend()
        self.decider = Decider(self.config, self.state, own_addresses=host_addresses())
        self._restore_scores()
        self.scorer.split_around(self.decider.protected)
        if self._server is not None:
            self._server.start()

    # --- scores across restarts ---

    def _restore_scores(self) -> None:
        """Take up the scores where the last run left them: its last snapshot of the scorer, then the
        lines each source read after that snapshot, fed to the scorer again (their decisions were
        made and recorded: only the scores are made again). A restart, a `kill -9` or an upgrade
        then neither forgets an attacker nor counts a line twice. A snapshot of another version or
        another scoring configuration is set aside: its scores would mean something else now."""
        saved = self.state.load_scores()
        if saved is not None:
            version, _, positions, snapshot = saved
            scorer = Scorer.restore(snapshot, self.config.scoring, tallies(self.filters) or None) \
                if version == __version__ else None
            if scorer is None:
                log.info("scores of the last run not taken up (adaptive %s, or another scoring configuration): "
                         "scoring starts afresh", version)
            else:
                self.scorer = scorer
                events = sum(self._catch_up(name, position) for name, position in positions.items())
                log.info("scores of the last run taken up: %d source(s), %d event(s) since caught up",
                         len(scorer), events)
        self._save_scores()

    def _catch_up(self, name: str, since: Position | None) -> int:
        """Feed the scorer the events of `name`'s lines from `since` (None: the start of a file that
        came after the snapshot) to its committed position (the same file only: a rotation in between
        leaves them out, said). Returns how many."""
        now = self.state.load_position(name)
        follower = next((f for f in self.followers if f.source.name == name), None)
        if since is None and now is not None:
            since = Position(now.device, now.inode, 0, now.fingerprint)
        if now is None or since is None or follower is None or (now.inode == since.inode
                                                                 and now.offset <= since.offset):
            return 0
        # A file that had no complete line when the snapshot was taken has no fingerprint in it yet.
        if (now.device, now.inode) != (since.device, since.inode) or since.fingerprint not in ("", now.fingerprint):
            log.info("source %s: rotated since the scores were saved; the lines in between are not scored again",
                     name)
            return 0
        try:
            fd = os.open(follower.source.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return 0
        engine, events, offset = Engine(self.filters, YearGuess(self.clock())), 0, since.offset
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (now.device, now.inode):
                return 0
            while offset < now.offset:
                data = os.pread(fd, min(READ_SLICE, now.offset - offset), offset)
                cut = data.rfind(b"\n") + 1 if offset + len(data) < now.offset else len(data)
                if not data or not cut:
                    break
                for _, event in engine.scan(data[:cut]):
                    events += 1
                    self.scorer.feed(event)     # its offences were decided the first time
                offset += cut
        finally:
            os.close(fd)
        return events

    def _save_scores(self, force: bool = True) -> None:
        """Save the scorer with the positions it belongs to: at start and stop, and every SCORES_EVERY
        seconds when there were events."""
        if not force and (self.counts["events"] == self._scores_events
                          or time.monotonic() - self._scores_saved_at < SCORES_EVERY):
            return
        positions = {f.source.name: self.state.load_position(f.source.name) or f.source.place()
                     for f in self.followers}
        with self.state.transaction():
            self.state.save_scores(__version__, positions, self.scorer.snapshot())
        self._scores_saved_at, self._scores_events = time.monotonic(), self.counts["events"]

    def _adopt(self, stored: dict[str, float | None], now: float) -> None:
        """Record the bans the kernel holds that the state does not: after the database was lost (moved
        aside, or deleted), the table kept them. Only then is the kernel listed (a listing costs time
        that grows with the square of a set's size); otherwise the state is the record."""
        adopted = [BanRecord(_target(b), now, None if b.expires is None else now + b.expires, "adopted", 0.0,
                             {}, None, 1, "manual") for b in self.backend.list() if _target(b) not in stored]
        if adopted:
            log.warning("%d ban(s) in the kernel were not in the state (a lost or new database): "
                        "kept and recorded", len(adopted))
            self.state.record_bans(adopted)

    # --- the loop ---

    def run(self, stop: threading.Event) -> None:
        if self.decider is None:
            self.start()
        self._watch = Watch((str(f.source.path) for f in self.followers), on_change=self.wake)
        self._watch.start()
        watchdog = Watchdog.from_environment()   # None unless systemd asked for pings
        log.info("following %s", ", ".join(f"{f.source.name}={f.source.path}" for f in self.followers))
        notify(READY=1, STATUS=f"following {len(self.followers)} log(s)")
        try:
            while not (stop.is_set() or self._stop_asked):
                if self._reload_asked:
                    self._reload_asked = False
                    notify(RELOADING=1)
                    try:
                        self.reload()
                    except (ControlError, OSError) as e:
                        log.error("reload refused, the running configuration stays: %s", e)
                    notify(READY=1)
                self._serve_requests()
                self.poll_once(POLL_BUDGET)
                self.watch_kernel()
                self.reconcile()
                self._nag_sources()
                self._save_scores(force=False)
                self._persist()
                if watchdog is not None:
                    watchdog.ping_if_due()
                self._waker.wait(POLL if watchdog is None else min(POLL, watchdog.wait_at_most()))
                self._watch.refresh()
        finally:
            notify(STOPPING=1)
            self.close()

    def request_stop(self) -> None:
        """Ask the loop to stop, as setting `run`'s event does, from a signal handler: a flag and a
        pipe write, no lock (a handler may interrupt the loop, or another handler, holding any). One
        already asked returns at once: a burst of SIGTERMs, each landing inside the last one's pipe
        write, nested handlers until RecursionError."""
        if self._stop_asked:
            return
        self._stop_asked = True
        self.wake()

    def request_reload(self) -> None:
        """Ask the loop to reload (from a signal handler: sets a flag and writes to a pipe; at once
        if one is already asked)."""
        if self._reload_asked:
            return
        self._reload_asked = True
        self.wake()

    def wake(self) -> None:
        """Have the loop look around now rather than at its next tick: from a signal handler, a
        control or scrape thread, or watchdog's."""
        self._waker.poke()

    def poll_once(self, budget: float | None = None) -> int:
        """Read what every source has now, to its end (or for `budget` seconds a source, a slice at a
        time, then wake the loop to go on once it has seen to requests and signals), and deal with it;
        return the number of events."""
        found = 0
        for f in self.followers:
            f.engine.years.reference = self.clock()    # a live log's lines are from about now
            until = None if budget is None else time.monotonic() + budget
            while chunks := self._poll(f.source):
                for chunk in chunks:
                    with self.state.transaction():
                        for _, event in f.engine.scan(chunk.data):
                            found += 1
                            self._event(event)
                        self._flush()
                        f.source.commit(chunk)
                self._serve_requests()
                if until is not None and time.monotonic() >= until:
                    self.wake()       # more, maybe: after what else the loop has to do
                    break
        self.counts["events"] += found
        return found

    # --- keeping the kernel true ---

    def watch_kernel(self, force: bool = False) -> list[str]:
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
        try:
            self._kernel("apply", lambda: self.backend.apply(restore=restore).bans)
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
        if self.backend is None or not self._reads_kernel:
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
        return {_target(b): b.left for b in self._reading_backend().list()}

    def _reading_backend(self) -> Backend:
        """A backend on the readers' own libnftables context, for listings off the loop's thread."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = Executor()
        return Backend(self._reader, self.config)

    def _put_right(self, kernel: dict[str, int | None]) -> int:
        now = self.clock()
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
            if (have is None) != (left is None) or (left is not None and abs(have - left) > max(60, left / 100)):
                fix.append(ban)
        if fix:
            missing = sum(1 for b in fix if _target(b) not in kernel)
            log.warning("the kernel and the state disagreed on %d ban(s) (%d missing, %d with another "
                        "time left): put right", len(fix), missing, len(fix) - missing)
            self.metrics.repair("elements")
            self.counts["reconciled"] += len(fix)
            try:
                self._kernel("ban", lambda: self.backend.ban(fix))
            except (NftablesError, ValueError) as e:
                if not (isinstance(e, NftablesError) and self.watch_kernel(force=True)):
                    log.error("the kernel refused %d ban(s) put right: %s", len(fix), e)
        return len(fix)

    def _nag_sources(self) -> None:
        """A source that cannot be read is said again every SOURCE_NAG seconds, not only once."""
        now = time.monotonic()
        for f in self.followers:
            error = f.source.error
            if error is None:
                self._nagged.pop(f.source.name, None)
            elif now - self._nagged.setdefault(f.source.name, now) >= SOURCE_NAG:
                self._nagged[f.source.name] = now
                log.warning("source %s: still %s", f.source.name, error)

    def _persist(self) -> None:
        """Writes the state's disk refused (full, say) are tried again every tick: bans stay enforced
        and lines are read on meanwhile, each once. Each time it begins is counted as a state error,
        and said again every SOURCE_NAG seconds while it lasts."""
        if not self.state.unwritten:
            self._unwritable_said = None
            return
        now = time.monotonic()
        if self._unwritable_said is None:
            self._unwritable_said = now
            self.metrics.error("state")
        if self.state.retry():
            return
        if now - self._unwritable_said >= SOURCE_NAG:
            self._unwritable_said = now
            log.error("%s: still cannot write the state database (%s): %d change(s) wait in memory",
                      self.config.state.path, self.state.write_error, self.state.unwritten)

    def _poll(self, source: FileSource) -> list[Chunk]:
        """`source.poll()`, noting when the lines were read (a ban's latency counts from there) and
        counting a new read error."""
        before = source.error
        chunks = source.poll()
        self._read_at = time.monotonic()
        if source.error is not None and source.error != before:
            self.metrics.error("source")
        return chunks

    def _event(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        for offence in self.scorer.feed(event):
            for decision in self.decider.decide(offence):
                self.counts[f"decisions_{decision.outcome.value}"] += 1
                self.metrics.decision(decision.reason, decision.outcome.value)
                if decision.outcome is Outcome.BAN:
                    self._enqueue(decision)

    def _enqueue(self, decision: Decision) -> None:
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(Ban(decision.target, decision.duration))
        if len(self._pending) >= FLUSH_SIZE or time.monotonic() - self._pending_since >= FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        """Send the waiting bans to the kernel in one transaction."""
        if not self._pending:
            return
        bans, self._pending = self._pending, []
        if self.backend is None:
            return
        try:
            self._kernel("ban", lambda: self.backend.ban(bans))
        except (NftablesError, ValueError) as e:
            # A set that vanished (another tool's flush) is repaired with every live ban of the state,
            # these among them; anything else: the state has them, the next start puts them back.
            if isinstance(e, NftablesError) and self.watch_kernel(force=True):
                self.metrics.banned(time.monotonic() - self._read_at, len(bans))
                return
            self.counts["errors_nft"] += 1
            log.error("the kernel refused %d ban(s): %s", len(bans), e)
        else:
            self.metrics.banned(time.monotonic() - self._read_at, len(bans))

    def _kernel(self, operation: str, change: Callable[[], int]) -> int:
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

    # --- the metrics' scrape-time figures ---

    def _take_census(self) -> Snapshot:
        """The pipeline's own counts, taken on the daemon's thread (called by a scrape's thread)."""
        return self.call(lambda: self._census.take(self.followers, self.scorer, self.state.live_count(self.clock()),
                                                   self.state.unwritten), CENSUS_TIMEOUT)

    def _read_kernel(self) -> KernelFigures | None:
        """The kernel's figures, read by a scrape's or `status`'s thread with a libnftables context of
        its own (never the loop's backend): a listing of 100,000 bans takes 0.7 s, most of it in C with
        the interpreter free, and on the loop it would hold every ban behind it."""
        if not self._reads_kernel:
            return None
        started = time.perf_counter()
        sizes, counters = self._reading_backend().figures()
        return KernelFigures({(name, f"ipv{BAN_SET.fullmatch(name)[1]}"): n for name, n in sizes.items()},
                             {name: (c.packets, c.bytes) for name, c in counters.items()},
                             time.perf_counter() - started)

    # --- the control socket's requests, run on this thread ---

    def call(self, work: Callable[[], object], timeout: float = 60.0) -> object:
        """Run `work` on the daemon's thread and return its result (from the control thread)."""
        future: Future = Future()
        self._requests.put((work, future))
        self.wake()
        return future.result(timeout)

    def _serve_requests(self) -> None:
        while True:
            try:
                work, future = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(work())
            except BaseException as e:   # handed to the waiting control thread, which answers it
                if isinstance(e, (sqlite3.Error, StateError)):
                    self.metrics.error("state")
                future.set_exception(e)

    # --- reload ---

    def reload(self) -> dict:
        """Read the configuration and filters again and apply them, atomically: a bad new configuration
        (or one the kernel refuses) is rejected whole and the running one stays."""
        try:
            config = load(self.config_files, self.dropins)
            filters = load_directory(config.filters_directory)
            if self.backend is not None:
                self.backend.check(config)
        except (ConfigError, FilterError, ValueError, NftablesError) as e:
            problems = getattr(e, "problems", None) or [str(e)]
            raise ControlError("\n".join(problems), "failed") from None
        changes = []
        if self.backend is not None:
            # A table that lost anything (another tool's flush) gets every live ban back with the
            # apply; a whole one keeps its bans in place.
            try:
                missing = self.backend.missing()
            except (NftablesError, OSError):
                missing = ["table"]
            now = self.clock()
            restore = _restore(self.state.live_ends(now), now) if missing else []
            if missing:
                self._count_repair(missing)
                changes.append(f"{', '.join(missing)} gone: {len(restore)} ban(s) restored")
            try:
                self._kernel("apply", lambda: self.backend.apply(config, restore=restore).bans)
            except (NftablesError, ValueError) as e:
                # Checked a moment ago, yet refused: the old table stands (one transaction), and so does
                # the running configuration.
                raise ControlError(f"the kernel refused the new ruleset: {e}", "failed") from None
            changes.append("ruleset applied")
        if config.metrics.listen != self.config.metrics.listen:
            changes.append("metrics.listen takes effect at the next start")
        if config.scoring != self.config.scoring or filters != self.filters:
            self.scorer = Scorer(config.scoring, tallies(filters) or None)
            changes.append("scoring restarted")
        self.decider = Decider(config, self.state, own_addresses=host_addresses())
        self.scorer.split_around(self.decider.protected)
        if filters != self.filters:
            changes.append("filters reloaded")
        for f in self.followers:
            f.engine = Engine(filters, YearGuess(self.clock()))
        known = {f.source.name: f for f in self.followers}
        followers = []
        for name, src in config.sources.items():
            old = known.pop(name, None)
            if old is not None and old.source.path == src.path:
                old.source.follow_symlinks, old.source.owners = src.follow_symlinks, frozenset(src.owners)
                followers.append(old)
            else:
                followers.append(self._follower(name, src, filters))
                changes.append(f"source {name} = {src.path}")
        for gone in known.values():
            gone.source.close()
            changes.append(f"source {gone.source.name} dropped")
        self.followers, self.filters, self.config = followers, filters, config
        if self._watch is not None:
            self._watch.stop()
            self._watch = Watch((str(f.source.path) for f in self.followers), on_change=self.wake)
            self._watch.start()
        log.info("configuration reloaded: %s", "; ".join(changes) or "nothing changed")
        return {"reloaded": True, "changes": changes}

    # --- the end ---

    def helper(self) -> ThreadPoolExecutor:
        """A thread for kernel work that may run beside the loop's own (see `_Handler._ban`)."""
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="adaptive-kernel")
        return self._helper

    def close(self) -> None:
        if self._helper is not None:
            self._helper.shutdown()
        self.metrics.close()
        self._flush()
        if self.decider is not None:
            self._save_scores()
        if self._server is not None:
            self._server.stop()
        if self._watch is not None:
            self._watch.stop()
        for f in self.followers:
            f.source.close()
        if self.backend is not None and self.config.nftables.remove_on_exit:
            self.backend.remove()
            log.info("table inet %s removed, as remove_on_exit asks", self.config.nftables.table)
        self.state.close()
        self._waker.close()     # last: the threads that wake the loop are gone

    def _follower(self, name: str, src: SourceConfig, filters: list[Filter] | None = None) -> _Follower:
        return _Follower(FileSource(name, src.path, self.state, start=src.start, max_chunk=READ_SLICE,
                                    follow_symlinks=src.follow_symlinks, owners=src.owners),
                         Engine(filters or self.filters, YearGuess(self.clock())))


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


def _target(ban: Ban) -> str:
    return ban.key if ban.host else f"{ban.key}/{ban.prefixlen}"


class _Handler:
    """The control socket's operations; each runs on the daemon's thread through `Daemon.call`."""

    def __init__(self, daemon: Daemon):
        self.d = daemon

    def ban(self, targets: list[Target], duration: float | None, reason: str | None, force: bool) -> dict:
        return self.d.call(lambda: self._ban(targets, duration, reason or "manual", force))

    def _ban(self, targets: list[Target], duration: float | None, reason: str, force: bool) -> dict:
        d = self.d
        seconds: int | None
        if duration is None:
            seconds = d.decider.profile(reason).duration(1)
        else:
            seconds = None if math.isinf(duration) else max(1, min(LONGEST, round(duration)))
        refused, fit = [], []
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
        kernel: Future | None = None
        if d.backend is not None and banned:
            # libnftables and SQLite each spend most of a 100,000-line import in C, without the GIL:
            # the kernel takes the bans on a helper thread while this one records them (the state's
            # connection stays on this thread). Together, a third quicker than one after the other.
            kernel = d.helper().submit(d._kernel, "ban", lambda: d.backend.ban_targets(banned, seconds))
        try:
            d.decider.record_manual(banned, seconds, reason)
        finally:
            if kernel is not None:
                wait([kernel])
        if kernel is not None and kernel.exception() is not None:
            # Into a set that vanished (another tool's flush): the repair puts them in with the rest.
            if not (isinstance(kernel.exception(), NftablesError) and d.watch_kernel(force=True)):
                kernel.result()
        d.counts["manual_bans"] += len(banned)
        d.metrics.manual(bans=len(banned))
        return {"banned": [t.text for t in banned], "refused": refused, "duration": seconds}

    def unban(self, targets: list[str], all: bool) -> dict:
        return self.d.call(lambda: self._unban(targets, all))

    def _unban(self, targets: list[str], everything: bool) -> dict:
        d = self.d
        if everything:
            targets = [r.target for r in d.state.live_bans(d.clock(), outcome=None)]
            if d.backend is not None:
                targets = list(dict.fromkeys(targets + [_target(b) for b in d.backend.list()]))
        unbanned, missing = [], []
        for target in targets:
            (unbanned if d.decider.unban(target) else missing).append(target)
            d.scorer.forgive(target)
        if d.backend is not None and targets:
            try:
                d._kernel("unban", lambda: d.backend.unban(targets))
            except NftablesError:
                # A table that lost a set is repaired from the state, which no longer has these.
                if not d.watch_kernel(force=True):
                    raise
        d.counts["manual_unbans"] += len(unbanned)
        d.metrics.manual(unbans=len(unbanned))
        return {"unbanned": unbanned, "not_banned": missing}

    def list(self) -> list[dict]:
        return self.d.call(self._list)

    def _list(self) -> list[dict]:
        now = self.d.clock()
        return [{"target": r.target, "left": None if r.end is None else max(0.0, r.end - now),
                 "reason": r.reason, "count": r.count, "origin": r.origin}
                for r in sorted(self.d.state.live_bans(now), key=lambda r: r.start)]

    def status(self) -> dict:
        status = self.d.call(self._status)
        # Counted off the loop, with a libnftables context of its own, on a thread that status waits
        # for a quarter of a second at most: listing 100,000 bans takes most of a second, 1,000,000
        # most of a minute, and neither the loop nor the admin may wait for that.
        try:
            figures = self.d.kernel_figures(fresh=True)
        except (NftablesError, OSError) as e:
            # The rest of the status still says what the daemon does; the kernel's count is unknown.
            status["kernel_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
            return status
        if figures is not None:
            status["bans"] = sum(figures.bans.values())
        if self.d.kernel_figures.reading:
            # Still counting (a million bans take most of a minute): the count shown is the last one.
            status["kernel_counting"] = True
        elif self.d.enforce and not self.d.config.decisions.dry_run and status["bans"] is not None \
                and status["bans"] != status["bans_state"]:
            # Seconds apart, a ban may lapse in one and not yet in the other; more is worth saying.
            status["disagree"] = (f"the kernel holds {status['bans']} ban(s), the state "
                                  f"{status['bans_state']}")
        return status

    def _status(self) -> dict:
        d = self.d
        sources = []
        for f in d.followers:
            position = f.source.position
            offset = position.offset if position is not None else None
            try:
                size = f.source.path.stat().st_size
            except OSError:
                size = None
            sources.append({"name": f.source.name, "path": str(f.source.path), "position": offset,
                            "lag": None if size is None or offset is None else max(0, size - offset),
                            "lines": f.engine.counts.lines, "error": f.source.error})
        decisions = {k.removeprefix("decisions_"): v for k, v in d.counts.items() if k.startswith("decisions_")}
        bans = None   # `status` counts the kernel's, when it reads the kernel itself
        in_state = d.state.live_count(d.clock())
        if not d._reads_kernel:
            bans = len(d.backend.list()) if d.backend is not None else in_state
        return {"version": __version__, "uptime": d.clock() - d.started, "dry_run": d.config.decisions.dry_run,
                "sources": sources, "events": d.counts["events"], "decisions": decisions, "bans": bans,
                "bans_state": in_state, "repairs": d.counts["repairs"], "tracked": len(d.scorer),
                **({"state_error": d.state.write_error, "state_unwritten": d.state.unwritten}
                   if d.state.unwritten else {})}

    def explain(self, address: str) -> dict:
        return self.d.call(lambda: self._explain(address))

    def _explain(self, address: str) -> dict:
        d = self.d
        now = d.clock()
        try:
            scored = d.scorer.explain(address)
        except ValueError:
            scored = None
        record = d.state.ban(text(parse_network(address)))
        if record is None and scored is not None:
            record = d.state.ban(scored["target"])
        ban = None
        if record is not None and record.live(now):
            ban = {"reason": record.reason, "left": None if record.end is None else record.end - now,
                   "origin": record.origin, "rules": record.rules, "score": record.score}
        target = record.target if record is not None else (scored or {}).get("target", address)
        entry = allowlisted(address, d.config.allowlist.addresses)
        # The scorer keeps each source's leading rules, not every event; a ban keeps those that made it.
        rules = dict((scored or {}).get("rules") or {})
        if ban is not None:
            for rule, count in (ban.get("rules") or {}).items():
                rules[rule] = max(count, rules.get(rule, 0))
        return {"target": target, "ban": ban, "scoring": scored, "rules": rules,
                "score": None if scored is None else scored.get("score"),
                "threshold": d.config.scoring.threshold,
                "history": d.state.history(target),
                "allowlisted": None if entry is None else str(entry)}

    def reload(self) -> dict:
        return self.d.call(self.d.reload)
