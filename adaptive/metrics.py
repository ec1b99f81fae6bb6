"""Metrics: what adaptive tells Prometheus about itself, served at `[metrics] listen` (/metrics).

The only module that imports prometheus_client. The hot path pays nothing for it:

- what happens rarely is reported as it happens, through `Metrics`: a decision, a manual ban, a
  kernel transaction (its duration and size), a ban's latency from its log line to the kernel, an
  error;
- what the pipeline already counts is read when Prometheus scrapes. A `Census` (taken on the daemon's
  thread, through `Daemon.call`) reads each engine's counts, each source's position and the scorer's
  size; the kernel's figures (bans per set, the drop counters) are read by the scrape thread itself,
  with a libnftables context of its own, and cached (`Cached`).

Every label is bounded by the configuration or the filters: source, filter, rule, kind, reason,
outcome, operation, set, family, port. Never an address or a user name; a manual ban's reason is the
admin's free text, so manual bans are counted apart, without it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Generic, Protocol, TypeVar, cast

from prometheus_client import CollectorRegistry, Histogram, Info, ProcessCollector
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import MetricsHandler
from prometheus_client.registry import Collector

from adaptive import __version__
from adaptive.config import host_port
from adaptive.events import Kind
from adaptive.vocabulary import REASONS, Outcome

log = logging.getLogger(__name__)


def disable_created_metrics() -> None:
    """prometheus-client's own switch where it has one (0.17 on); before (Debian 12's 0.16), the flag it reads."""
    import prometheus_client
    if hasattr(prometheus_client, "disable_created_metrics"):
        prometheus_client.disable_created_metrics()
    else:
        prometheus_client.metrics._use_created = False


T = TypeVar("T")

OUTCOMES = tuple(o.value for o in Outcome)
ERRORS = ("nft", "source", "state")
OPERATIONS = ("apply", "ban", "unban")             # the kernel transactions the daemon makes
REPAIRS = ("table", "set", "chain", "rules", "elements")    # what a repair of the table found missing
LATENCY_BUCKETS = (.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1.0, 2.0, 5.0, 10.0, 30.0)
TRANSACTION_BUCKETS = (.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 20000, 100000, 500000)
CENSUS_TIMEOUT = 5.0     # seconds a scrape waits for the daemon's loop before serving the last census
MAX_CLIENTS = 16         # connections the endpoint serves at once; more are closed at once
CLIENT_TIMEOUT = 5.0     # seconds a client has to send its request, and to take each part of the reply


class MetricsError(Exception):
    """The endpoint cannot be served (the address is taken, or not this host's)."""


# --- what the daemon reports as it goes ---

class Metrics(Protocol):
    """What the daemon tells the metrics, at coarse points only: never per line.

    `Exporter` serves them to Prometheus; `NullMetrics` (metrics off, or a test that does not look)
    drops them.
    """

    def decision(self, reason: str, outcome: str) -> None:
        """An automatic decision: its reason (`vocabulary.REASONS`) and outcome (`OUTCOMES`)."""

    def manual(self, bans: int = 0, unbans: int = 0) -> None:
        """Manual bans made and bans lifted through the control socket."""

    def transaction(self, operation: str, seconds: float, size: int) -> None:
        """One change of the kernel (`OPERATIONS`): how long it took and how many bans it carried."""

    def banned(self, seconds: float, count: int = 1) -> None:
        """`count` bans are in the kernel, `seconds` after their log lines were read."""

    def repair(self, what: str) -> None:
        """The table was applied again because part of it (`REPAIRS`) was gone from the kernel."""

    def error(self, kind: str) -> None:
        """Something failed (`ERRORS`): the kernel refused a change, a source cannot be read, the
        state database failed a request."""

    def watch(self, census: Callable[[], Snapshot], kernel: Callable[[], KernelFigures | None]) -> None:
        """Where to read the scrape-time figures: `census` (which may raise TimeoutError) and `kernel`."""

    def serve(self, listen: str) -> None:
        """Serve /metrics on "host:port"; MetricsError if that cannot be done."""

    def close(self) -> None:
        """Stop serving (idempotent)."""


class NullMetrics:
    """Metrics that go nowhere: the daemon's when `[metrics] listen` is empty."""

    def decision(self, reason: str, outcome: str) -> None:
        pass

    def manual(self, bans: int = 0, unbans: int = 0) -> None:
        pass

    def transaction(self, operation: str, seconds: float, size: int) -> None:
        pass

    def banned(self, seconds: float, count: int = 1) -> None:
        pass

    def repair(self, what: str) -> None:
        pass

    def error(self, kind: str) -> None:
        pass

    def watch(self, census: Callable[[], Snapshot], kernel: Callable[[], KernelFigures | None]) -> None:
        pass

    def serve(self, listen: str) -> None:
        pass

    def close(self) -> None:
        pass


# --- what is read at scrape time ---

@dataclass(frozen=True)
class SourceFigures:
    """One source's counts since the daemon started (reloads included)."""

    lines: int = 0
    unparsable: int = 0
    ignored: Mapping[tuple[str, str], int] = field(default_factory=dict)        # (filter, ignore) -> lines
    events: Mapping[tuple[str, str, str], int] = field(default_factory=dict)    # (filter, rule, kind) -> events
    lag: int | None = None          # what is in the log and not read yet, in lag_unit; None if unknown
    lag_unit: str = "bytes"         # "bytes" (a file), "seconds" (the journal)
    failing: bool = False           # the source cannot be read now (`FileSource.error`)


@dataclass(frozen=True)
class Snapshot:
    """The pipeline's own counts at one moment: per source, and the scorer's."""

    sources: Mapping[str, SourceFigures] = field(default_factory=dict)
    tracked: int = 0                # sources the scorer holds a score for
    evictions: int = 0              # sources dropped to keep the scorer within max_sources
    state_bans: int | None = None   # live bans the state holds (the kernel should hold as many)
    state_unwritten: int = 0        # changes the state's disk refused, waiting in memory


@dataclass(frozen=True)
class KernelFigures:
    """adaptive's table as the kernel has it: elements per ban set, and the named counters."""

    bans: Mapping[tuple[str, str], int]            # (set, family) -> elements; family "ipv4" or "ipv6"
    counters: Mapping[str, tuple[int, int]]        # name -> (packets, bytes): bans, rate_limit_PORT, ...
    seconds: float = 0.0                           # how long reading them took


class _Counts(Protocol):
    lines: int
    unparsable: int
    ignored: Counter[tuple[str, str]]
    by_rule: Counter[tuple[str, str, Kind]]


class _Engine(Protocol):
    @property
    def counts(self) -> _Counts: ...


class _Source(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def error(self) -> str | None: ...

    lag_unit: str

    def lag(self) -> int | None: ...


class _Follower(Protocol):
    @property
    def source(self) -> _Source: ...

    @property
    def engine(self) -> _Engine: ...


class _Scorer(Protocol):
    def __len__(self) -> int: ...

    @property
    def evictions(self) -> int: ...


class Census:
    """Takes `Snapshot`s of the pipeline. Run `take` on the daemon's thread: it reads what the loop
    changes (engine counts, open files).

        census = Census()
        snapshot = daemon.call(lambda: census.take(daemon.followers, daemon.scorer))

    A reload gives each source a new engine, and maybe a new scorer: the old one's final counts are
    carried, so counters never go back. (An engine made and replaced between two snapshots, by two
    reloads in a row, is missed.)
    """

    def __init__(self) -> None:
        self._engines: dict[str, _Engine] = {}
        self._carried: dict[str, Counter[tuple[str, ...]]] = {}
        self._scorer: _Scorer | None = None
        self._evicted = 0

    def take(self, followers: Iterable[_Follower], scorer: _Scorer, state_bans: int | None = None,
             state_unwritten: int = 0) -> Snapshot:
        sources = {}
        for f in followers:
            name = f.source.name
            known = self._engines.get(name)
            carried = self._carried.setdefault(name, Counter())
            if known is not None and known is not f.engine:
                carried.update(_flat(known.counts))
            self._engines[name] = f.engine
            sources[name] = _figures(carried + _flat(f.engine.counts), f.source.lag(), f.source.lag_unit,
                                     f.source.error is not None)
        if self._scorer is not None and self._scorer is not scorer:
            self._evicted += self._scorer.evictions
        self._scorer = scorer
        return Snapshot(sources, len(scorer), self._evicted + scorer.evictions, state_bans, state_unwritten)


def _flat(c: _Counts) -> Counter[tuple[str, ...]]:
    flat: Counter[tuple[str, ...]] = Counter({("lines",): c.lines, ("unparsable",): c.unparsable})
    flat.update({("ignored", *key): n for key, n in c.ignored.items()})
    flat.update({("events", *key): n for key, n in c.by_rule.items()})
    return flat


def _figures(flat: Counter[tuple[str, ...]], lag: int | None, lag_unit: str, failing: bool) -> SourceFigures:
    ignored, events = {}, {}
    for key, n in flat.items():
        if key[0] == "ignored":
            ignored[key[1], key[2]] = n
        elif key[0] == "events":
            events[key[1], key[2], str(key[3])] = n
    return SourceFigures(flat[("lines",)], flat[("unparsable",)], ignored, events, lag, lag_unit, failing)


class Cached(Generic[T]):
    """A slow read, done again only once its value is older than `every` seconds, or than `factor`
    times as long as the read took: with 100,000 bans the kernel takes 0.7 s to list them, and
    scrapes then read it at most every 7 s.

    The read runs on a thread of its own, and a caller waits for it `wait` seconds at most, then has
    the last value (None before the first): with 1,000,000 bans a listing takes most of a minute,
    and `status` and the first scrape waited for it. Thread-safe: one read at a time."""

    def __init__(self, read: Callable[[], T], every: float = 1.0, factor: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, wait: float | None = 0.25):
        self._read, self.every, self.factor, self._clock, self.wait = read, every, factor, clock, wait
        self._lock = threading.Lock()
        self._value: T | None = None
        self._error: BaseException | None = None     # the last read's failure, for the next caller
        self._at: float | None = None
        self._took = 0.0
        self._reading: threading.Event | None = None  # set once the read under way is done

    def __call__(self, fresh: bool = False) -> T | None:
        """The value; read again first if it is due (or, `fresh`, whatever its age), waiting for the
        read `wait` seconds at most."""
        with self._lock:
            now = self._clock()
            due = fresh or self._at is None or now - self._at >= max(self.every, self.factor * self._took)
            if self._reading is None and due:
                self._reading = threading.Event()
                threading.Thread(target=self._refresh, args=(self._reading, now), name="kernel-figures",
                                 daemon=True).start()
            reading = self._reading
        if reading is not None:
            reading.wait(self.wait)
        with self._lock:
            error, self._error = self._error, None
            if error is not None:
                raise error
            return self._value

    @property
    def reading(self) -> bool:
        """Whether a read is under way (the value is older than it)."""
        return self._reading is not None

    def _refresh(self, done: threading.Event, began: float) -> None:
        value: T | None
        try:
            value, error = self._read(), None
        except BaseException as e:
            value, error = None, e       # no stale figures after a failure
        with self._lock:
            self._value, self._error = value, error
            self._took = self._clock() - began
            self._at = began
            self._reading = None
        done.set()


# --- the Prometheus side ---

class Exporter:
    """adaptive's metrics in a prometheus_client registry, and the HTTP endpoint that serves them.

        exporter = Exporter(CollectorRegistry())
        exporter.watch(census=..., kernel=...)     # the scrape-time figures (see the module)
        exporter.serve("127.0.0.1:9469")           # MetricsError if it cannot listen there
        exporter.close()

    Give each test its own registry. The metric names and what they mean are in the README.
    """

    def __init__(self, registry: CollectorRegistry | None = None, version: str = __version__,
                 kernel_every: float = 1.0, process: bool = True):
        # No `_created` series: Prometheus' text format shows them as gauges of their own, one beside
        # every counter, and nothing here needs them. (A setting of the library, for the process.)
        disable_created_metrics()
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self._decisions = CounterMetric(
            "adaptive_decisions", "Automatic decisions, by reason and outcome (ban, suppressed: the "
            "target is protected, dry_run: recorded, not enforced).", ["reason", "outcome"], registry=r)
        for reason in REASONS:
            if reason != "manual":
                for outcome in OUTCOMES:
                    self._decisions.labels(reason, outcome)
        self._manual_bans = CounterMetric("adaptive_manual_bans", "Bans made with `adaptive ban`.", registry=r)
        self._manual_unbans = CounterMetric("adaptive_manual_unbans", "Bans lifted with `adaptive unban`.",
                                            registry=r)
        self._latency = Histogram(
            "adaptive_ban_latency_seconds", "From the read of a log line to the kernel transaction that "
            "banned its source.", buckets=LATENCY_BUCKETS, registry=r)
        self._duration = Histogram(
            "adaptive_nft_transaction_duration_seconds", "Duration of each change of the kernel: apply "
            "(the whole table), ban, unban.", ["operation"], buckets=TRANSACTION_BUCKETS, registry=r)
        self._batch = Histogram(
            "adaptive_nft_batch_size", "Bans carried by each change of the kernel.", ["operation"],
            buckets=BATCH_BUCKETS, registry=r)
        for operation in OPERATIONS:
            self._duration.labels(operation)
            self._batch.labels(operation)
        self._errors = CounterMetric(
            "adaptive_errors", "Failures: nft (the kernel refused a change), source (a log became "
            "unreadable), state (the state database failed a request).", ["kind"], registry=r)
        for kind in ERRORS:
            self._errors.labels(kind)
        self._repairs = CounterMetric(
            "adaptive_repairs", "The table applied again, with every live ban of the state, because "
            "part of it was gone from the kernel (another tool flushed or changed it), by what was "
            "missing.", ["what"], registry=r)
        for what in REPAIRS:
            self._repairs.labels(what)
        Info("adaptive_build", "The running adaptive.", registry=r).info({"version": version})
        if process:
            ProcessCollector(registry=r)
        self._census: Callable[[], Snapshot] | None = None
        self._kernel: Cached[KernelFigures | None] | None = None
        self._kernel_every = kernel_every
        self._last = Snapshot()
        self._kernel_failure: str | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        r.register(_Scraped(self))

    # --- reported ---

    def decision(self, reason: str, outcome: str) -> None:
        self._decisions.labels(reason if reason in REASONS else "other", outcome).inc()

    def manual(self, bans: int = 0, unbans: int = 0) -> None:
        if bans:
            self._manual_bans.inc(bans)
        if unbans:
            self._manual_unbans.inc(unbans)

    def transaction(self, operation: str, seconds: float, size: int) -> None:
        self._duration.labels(operation).observe(seconds)
        self._batch.labels(operation).observe(size)

    def banned(self, seconds: float, count: int = 1) -> None:
        for _ in range(count):
            self._latency.observe(seconds)

    def repair(self, what: str) -> None:
        self._repairs.labels(what if what in REPAIRS else "table").inc()

    def error(self, kind: str) -> None:
        self._errors.labels(kind).inc()

    # --- read at scrape time ---

    def watch(self, census: Callable[[], Snapshot], kernel: Callable[[], KernelFigures | None]) -> None:
        self._census = census
        self._kernel = kernel if isinstance(kernel, Cached) else Cached(kernel, every=self._kernel_every)

    def snapshot(self) -> Snapshot:
        """The pipeline's census now, or the last one if the loop is too busy to answer in time."""
        if self._census is not None:
            try:
                self._last = self._census()
            except TimeoutError:
                log.debug("metrics: the daemon's loop did not answer in time; serving the last census")
        return self._last

    def kernel(self) -> KernelFigures | None:
        """The kernel's figures (cached), or None if they cannot be read (logged once per problem)."""
        if self._kernel is None:
            return None
        try:
            figures = self._kernel()
        except Exception as e:
            if str(e) != self._kernel_failure:
                log.warning("metrics: cannot read the kernel's figures: %s", e)
            self._kernel_failure = str(e)
            return None
        self._kernel_failure = None
        return figures

    # --- the endpoint ---

    def serve(self, listen: str) -> None:
        try:
            # factory() is annotated `type`; what it returns is a subclass of MetricsHandler.
            handler = cast(type[MetricsHandler], MetricsHandler.factory(self.registry))
            self._server = _Endpoint(host_port(listen), handler)
            self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
            self._thread.start()
        except (OSError, ValueError, OverflowError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise MetricsError(f"metrics.listen = {listen!r}: cannot serve metrics there: {why}") from None
        log.info("metrics on http://%s/metrics", listen)

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the endpoint listens (the port chosen, when 0 was given), or None."""
        return None if self._server is None else self._server.server_address[:2]

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            if self._thread is not None:
                self._thread.join(5)


class _Endpoint(ThreadingHTTPServer):
    """The /metrics endpoint: prometheus_client's handler, served with bounds its own server lacks.

    Its `start_http_server` gives every connection a thread and no deadline: idle connections from any
    local user piled up until the process ran out of descriptors, and libnftables then ended it. Here
    at most MAX_CLIENTS are served at once (the others are closed as soon as accepted), each has
    CLIENT_TIMEOUT seconds per read or write, and when descriptors run out anyway the listener sheds
    one waiting connection with a descriptor kept spare for that and pauses, instead of spinning.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[MetricsHandler]):
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._spare: int | None = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        handler.timeout = CLIENT_TIMEOUT
        try:
            super().__init__(address, handler)
        except BaseException:
            if self._spare is not None:     # server_close may have closed it already
                os.close(self._spare)
                self._spare = None
            raise

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                self._shed()
            raise      # socketserver skips this round

    def _shed(self) -> None:
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        try:
            conn, _ = self.socket.accept()
            conn.close()
        except OSError:
            pass
        time.sleep(0.1)
        try:
            self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass
        log.warning("metrics: out of file descriptors; a connection to the endpoint was closed unanswered")

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics: a request from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None


class _Scraped(Collector):
    """The families read at scrape time (see the module)."""

    def __init__(self, exporter: Exporter):
        self._exporter = exporter

    def describe(self) -> list[Metric]:
        return []     # unchecked names: registering must not take a census

    def collect(self) -> Iterator[Metric]:
        yield from census_families(self._exporter.snapshot())
        kernel = self._exporter.kernel()
        if kernel is not None:
            yield from kernel_families(kernel)


def census_families(s: Snapshot) -> Iterator[Metric]:
    """The metric families of a census."""
    lines = CounterMetricFamily("adaptive_lines", "Log lines read, per source.", labels=["source"])
    unparsable = CounterMetricFamily(
        "adaptive_lines_unparsable", "Lines in no known log format (no timestamp, an unknown prefix), "
        "per source.", labels=["source"])
    ignored = CounterMetricFamily("adaptive_lines_ignored", "Lines an ignore pattern pinned as harmless, "
                                  "per source, filter and ignore id.", labels=["source", "filter", "rule"])
    events = CounterMetricFamily("adaptive_events", "Events, per source, filter, rule and kind.",
                                 labels=["source", "filter", "rule", "kind"])
    behind = GaugeMetricFamily("adaptive_source_lag_bytes", "Bytes written to the log and not read yet, "
                               "per source (a file).", labels=["source"])
    behind_seconds = GaugeMetricFamily("adaptive_source_lag_seconds", "Seconds between the newest entry and "
                                       "the last one read, per source (the journal).", labels=["source"])
    failing = GaugeMetricFamily("adaptive_source_failing", "1 while the source cannot be read "
                                "(see the daemon's log), per source.", labels=["source"])
    for name, f in s.sources.items():
        lines.add_metric([name], f.lines)
        unparsable.add_metric([name], f.unparsable)
        for (flt, rule), n in sorted(f.ignored.items()):
            ignored.add_metric([name, flt, rule], n)
        for (flt, rule, kind), n in sorted(f.events.items()):
            events.add_metric([name, flt, rule, kind], n)
        if f.lag is not None:
            (behind_seconds if f.lag_unit == "seconds" else behind).add_metric([name], f.lag)
        failing.add_metric([name], int(f.failing))
    yield from (lines, unparsable, ignored, events, behind, behind_seconds, failing)
    yield GaugeMetricFamily("adaptive_scoring_sources", "Source addresses (IPv6: prefixes) the scorer "
                            "holds a score for.", value=s.tracked)
    yield CounterMetricFamily("adaptive_scoring_evictions", "Sources dropped to keep the scorer within "
                              "scoring.max_sources.", value=s.evictions)
    if s.state_bans is not None:
        yield GaugeMetricFamily("adaptive_bans_state", "Live bans in the state database (enforced ones: "
                                "adaptive_bans, per set, should add up to as many).", value=s.state_bans)
    yield GaugeMetricFamily("adaptive_state_unwritten", "Changes (bans, positions) the state database's "
                            "disk refused (full, I/O error), waiting in memory to be written; 0 normally.",
                            value=s.state_unwritten)


# The table's named counters (`nftables.ruleset.counter_names`) and the families they feed.
_DROPS = {
    "bans": ("adaptive_ban_dropped", "by the ban rule (or rejected, with nftables.action = reject)"),
    "conn_limit": ("adaptive_conn_limit_dropped", "over rate_limit.conn_limit concurrent connections"),
    "closed": ("adaptive_closed_port_dropped", "to closed ports, in whole-host mode"),
    "outbound": ("adaptive_outbound_dropped", "by the outbound SMTP restriction (new connections)"),
}
_RATE_LIMIT = "rate_limit_"


def kernel_families(k: KernelFigures) -> Iterator[Metric]:
    """The metric families of the kernel's figures."""
    bans = GaugeMetricFamily("adaptive_bans", "Bans live in the kernel, per ban set and family.",
                             labels=["set", "family"])
    for (name, family), n in sorted(k.bans.items()):
        bans.add_metric([name, family], n)
    yield bans
    ports = [(int(name[len(_RATE_LIMIT):]), value) for name, value in k.counters.items()
             if name.startswith(_RATE_LIMIT) and name[len(_RATE_LIMIT):].isdigit()]
    if ports:
        for i, unit in enumerate(("packets", "bytes")):
            dropped = CounterMetricFamily(f"adaptive_rate_limit_dropped_{unit}", f"{unit.capitalize()} of "
                                          "new connections dropped over a port's rate limit, per port.",
                                          labels=["port"])
            for port, value in sorted(ports):
                dropped.add_metric([str(port)], value[i])
            yield dropped
    for name, (prefix, what) in _DROPS.items():
        if name in k.counters:
            for i, unit in enumerate(("packets", "bytes")):
                yield CounterMetricFamily(f"{prefix}_{unit}", f"{unit.capitalize()} dropped {what}.",
                                          value=k.counters[name][i])
    yield GaugeMetricFamily("adaptive_kernel_read_duration_seconds", "How long the last read of the "
                            "kernel's figures took (they are read again at most every max(1 s, 10 times "
                            "that)).", value=k.seconds)
