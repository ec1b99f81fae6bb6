"""The daemon's loop: it builds every stage from the configuration, follows the sources and enforces.

Everything that touches the state, the scorer or the kernel runs on the daemon's one thread: the
control socket's requests (`daemon.ops`, served by `daemon.server`) are handed to it through a queue
and answered when it has done them, so no stage needs a lock.

Exactly once: each chunk of lines is dealt with inside one state transaction that also saves the
source's position after it, so a crash (`kill -9`) re-reads the chunk rather than losing it, and a
chunk whose decisions were committed is never read again. Bans reach the kernel before that commit;
one the kernel has and the store lost is adopted at the next start, one the store has and the kernel
lost is put back.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from adaptive import __version__
from adaptive.config import Config, ConfigError, SourceConfig, load
from adaptive.daemon.kernel import Enforcer
from adaptive.daemon.ops import Operations
from adaptive.daemon.server import ControlServer
from adaptive.decisions import Decider, Decision, host_addresses
from adaptive.events import Event
from adaptive.filters.engine import Engine
from adaptive.filters.rules import FilterError, load_directory
from adaptive.metrics import (
    CENSUS_TIMEOUT,
    Cached,
    Census,
    Exporter,
    Metrics,
    NullMetrics,
    Snapshot,
)
from adaptive.nftables.backend import Backend
from adaptive.nftables.executor import Executor, NftablesError
from adaptive.notify import Watchdog, notify
from adaptive.pipeline import Pipeline
from adaptive.scoring import Scorer
from adaptive.sources import Chunk, Position, Source, Watch, open_source
from adaptive.state import State, StateError
from adaptive.vocabulary import Outcome
from adaptive.wire import ControlError, ReloadReply

log = logging.getLogger(__name__)

T = TypeVar("T")

POLL = 1.0          # seconds between polls when nothing woke us: the fallback for missed file events
POLL_BUDGET = 0.25  # seconds of reading per source before the loop sees to requests and signals
READ_SLICE = 1 << 20  # bytes read at once: in a ban storm (16,000 lines/s) a slice takes under a second
SOURCE_NAG = 300.0   # seconds between warnings that a source still cannot be read
SCORES_EVERY = 60.0  # seconds between saves of the scorer (a start catches up on the lines since)


@dataclass
class _Follower:
    """One source and the engine that reads it: an engine holds per-log state (the queue-id join)."""

    source: Source
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

    def wait(self, timeout: float, also: Sequence[int] = ()) -> bool:
        """Sleep up to `timeout` seconds, less if poked or if a descriptor of `also` (a journal's) becomes
        readable; True if woken (every poke so far is taken; what made `also` readable is the source's
        to take)."""
        ready = select.select([self._read, *also], [], [], timeout)[0]
        if not ready:
            return False
        if self._read not in ready:
            return True
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

    `pipeline` (filters → scorer → decider) and the followers (each source with its engine) are made
    by `start`, and made again by a reload.

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
        self.counts: Counter[str] = Counter()
        if metrics is None:
            metrics = Exporter() if config.metrics.listen else NullMetrics()
        self.metrics: Metrics = metrics
        self.kernel = Enforcer(config, backend or (Backend(Executor(), config) if enforce else None), self.state,
                               metrics, self.counts, clock, reads_kernel=enforce and backend is None)
        self.pipeline: Pipeline | None = None
        self.followers: list[_Follower] = []
        self._requests: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._reload_asked = False     # set by SIGHUP's handler: a plain flag, which takes no lock
        self._stop_asked = False       # set by SIGTERM's and SIGINT's
        self._waker = _Waker()
        self._watch: Watch | None = None
        self._server = ControlServer(config.control.socket, Operations(self), config.control.group) \
            if control else None
        self._census = Census()
        self._nagged: dict[str, float] = {}   # source name -> time.monotonic() of its last warning
        self._unwritable_said: float | None = None   # time.monotonic() of the last word of a refusing disk
        self._scores_saved_at = time.monotonic()
        self._scores_events = -1  # counts["events"] at the last save of the scorer
        # The kernel's figures, for scrapes and `status` alike: read on a thread of their own, never
        # waited for more than half a second (a million bans take most of a minute to list).
        self.kernel_figures = Cached(lambda: self.kernel.figures())
        self.metrics.watch(self._take_census, self.kernel_figures)

    # --- start-up ---

    def start(self) -> None:
        """Apply the ruleset with every live ban of the state restored (those the table kept stay), adopt
        the table's bans into a state that was lost, and open the control socket. NftablesError if the
        kernel refuses the ruleset, MetricsError if the metrics cannot be served (checked first: nothing
        has changed then)."""
        if self.config.metrics.listen:
            self.metrics.serve(self.config.metrics.listen)
        self.kernel.start()
        self.pipeline = Pipeline.build(self.config, self.filters, self.state, clock=self.clock,
                                       own_addresses=host_addresses())
        self.followers = [self._follower(name, src) for name, src in self.config.sources.items()]
        self._restore_scores()
        if self._server is not None:
            self._server.start()

    @property
    def scorer(self) -> Scorer:
        return self._pipeline().scorer

    @property
    def decider(self) -> Decider:
        return self._pipeline().decider

    @property
    def backend(self) -> Backend | None:
        return self.kernel.backend

    def _pipeline(self) -> Pipeline:
        if self.pipeline is None:
            raise RuntimeError("the daemon is not started")
        return self.pipeline

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
            restored = self._pipeline().restored(snapshot, self.config.scoring) if version == __version__ else None
            if restored is None:
                log.info("scores of the last run not taken up (adaptive %s, or another scoring configuration): "
                         "scoring starts afresh", version)
            else:
                self.pipeline = restored
                events = sum(self._catch_up(name, position) for name, position in positions.items())
                log.info("scores of the last run taken up: %d source(s), %d event(s) since caught up",
                         len(restored.scorer), events)
        self._save_scores()

    def _catch_up(self, name: str, since: Position | None) -> int:
        """Feed the scorer the events of `name`'s lines from `since` (None: the start of a file that
        came after the snapshot) to its committed position (the same file only: the source leaves out
        a rotation in between, said). Returns how many."""
        now = self.state.load_position(name)
        follower = next((f for f in self.followers if f.source.name == name), None)
        if now is None or follower is None:
            return 0
        pipeline = self._pipeline()
        engine, feed, events = pipeline.engine(), pipeline.scorer.feed, 0
        for data in follower.source.reread(since, now):
            for _, event in engine.scan(data):
                events += 1
                feed(event)     # its offences were decided the first time
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

    def _watching(self) -> Watch:
        """A started watch of every source's paths, waking the loop."""
        watch = Watch((path for f in self.followers for path in f.source.watched()), on_change=self.wake)
        watch.start()
        return watch

    # --- the loop ---

    def run(self, stop: threading.Event) -> None:
        if self.pipeline is None:
            self.start()
        self._watch = self._watching()
        watchdog = Watchdog.from_environment()   # None unless systemd asked for pings
        log.info("following %s", ", ".join(f"{f.source.name}={f.source.where}" for f in self.followers))
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
                self.kernel.watch()
                self.kernel.reconcile()
                self._nag_sources()
                self._save_scores(force=False)
                self._persist()
                if watchdog is not None:
                    watchdog.ping_if_due()
                hurry = [h for f in self.followers if (h := f.source.hurry()) is not None]
                self._waker.wait(min([POLL, *hurry, *([] if watchdog is None else [watchdog.wait_at_most()])]),
                                 [fd for f in self.followers for fd in f.source.descriptors()])
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
                    feed = self._pipeline().feed      # a reload (a request, between chunks) makes another
                    with self.state.transaction():
                        for _, event in f.engine.scan(chunk.data):
                            found += 1
                            if self.on_event is not None:
                                self.on_event(event)
                            for decision in feed(event):
                                self._decided(decision)
                        self.kernel.flush()
                        f.source.commit(chunk)
                self._serve_requests()
                if until is not None and time.monotonic() >= until:
                    self.wake()       # more, maybe: after what else the loop has to do
                    break
        self.counts["events"] += found
        return found

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

    def _poll(self, source: Source) -> list[Chunk]:
        """`source.poll()`, noting when the lines were read (a ban's latency counts from there) and
        counting a new read error."""
        before = source.error
        chunks = source.poll()
        self.kernel.read_at = time.monotonic()
        if source.error is not None and source.error != before:
            self.metrics.error("source")
        return chunks

    def _decided(self, decision: Decision) -> None:
        self.counts[f"decisions_{decision.outcome.value}"] += 1
        self.metrics.decision(decision.reason, decision.outcome.value)
        if decision.outcome is Outcome.BAN:
            self.kernel.enqueue(decision)

    # --- the metrics' scrape-time figures ---

    def _take_census(self) -> Snapshot:
        """The pipeline's own counts, taken on the daemon's thread (called by a scrape's thread)."""
        return self.call(lambda: self._census.take(self.followers, self.scorer, self.state.live_count(self.clock()),
                                                   self.state.unwritten), CENSUS_TIMEOUT)

    # --- the control socket's requests, run on this thread ---

    def call(self, work: Callable[[], T], timeout: float = 60.0) -> T:
        """Run `work` on the daemon's thread and return its result (from the control thread)."""
        future: Future[T] = Future()
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

    def reload(self) -> ReloadReply:
        """Read the configuration and filters again and apply them, atomically: a bad new configuration
        (or one the kernel refuses) is rejected whole and the running one stays."""
        try:
            config = load(self.config_files, self.dropins)
            filters = load_directory(config.filters_directory)
            self.kernel.check(config)
        except (ConfigError, FilterError, ValueError, NftablesError) as e:
            problems = getattr(e, "problems", None) or [str(e)]
            raise ControlError("\n".join(problems), "failed") from None
        try:
            changes = self.kernel.reload(config)
        except (NftablesError, ValueError) as e:
            # Checked a moment ago, yet refused: the old table stands (one transaction), and so does
            # the running configuration.
            raise ControlError(f"the kernel refused the new ruleset: {e}", "failed") from None
        if config.metrics.listen != self.config.metrics.listen:
            changes.append("metrics.listen takes effect at the next start")
        rescore = config.scoring != self.config.scoring or filters != self.filters
        if rescore:
            changes.append("scoring restarted")
        self.pipeline = Pipeline.build(config, filters, self.state, clock=self.clock,
                                       own_addresses=host_addresses(),
                                       scorer=None if rescore else self._pipeline().scorer)
        if filters != self.filters:
            changes.append("filters reloaded")
        for f in self.followers:
            f.engine = self.pipeline.engine()
        known = {f.source.name: f for f in self.followers}
        followers = []
        for name, src in config.sources.items():
            old = known.pop(name, None)
            if old is not None and old.source.reconfigure(src):
                followers.append(old)
            else:
                followers.append(self._follower(name, src))
                changes.append(f"source {name} = {followers[-1].source.where}")
        for gone in known.values():
            gone.source.close()
            changes.append(f"source {gone.source.name} dropped")
        self.followers, self.filters, self.config = followers, filters, config
        if self._watch is not None:
            self._watch.stop()
            self._watch = self._watching()
        log.info("configuration reloaded: %s", "; ".join(changes) or "nothing changed")
        return {"reloaded": True, "changes": changes}

    # --- the end ---

    def close(self) -> None:
        self.kernel.close()
        self.metrics.close()
        if self.pipeline is not None:
            self._save_scores()
        if self._server is not None:
            self._server.stop()
        if self._watch is not None:
            self._watch.stop()
        for f in self.followers:
            f.source.close()
        self.kernel.remove_if_asked()
        self.state.close()
        self._waker.close()     # last: the threads that wake the loop are gone

    def _follower(self, name: str, src: SourceConfig) -> _Follower:
        return _Follower(open_source(name, src, self.state, max_chunk=READ_SLICE), self._pipeline().engine())
