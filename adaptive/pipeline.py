"""The pipeline: filters → scoring → decisions, put together once for the daemon, replay and the benchmarks.

    chunk ──Engine.scan──▶ events ──Scorer.feed──▶ offences ──Decider.decide──▶ decisions

One `Pipeline` holds the stages that outlive a log (the scorer, the decider and the filters they were
built for) and the clock they all read. An engine holds what belongs to one log (the queue-id join,
the year of classic syslog), so each log gets its own from `engine()`. Whoever runs the pipeline
enforces what it decides: the daemon sends bans to the kernel, replay prints them. "Replay decides as
the daemon does" holds because both are this code.

Time: events carry their log line's own time, and scoring and decisions judge by it; the clock is read
for what has no line behind it (the year a classic syslog line was written in, a manual ban, the bans
live when the decider is built), so a test or a replay gives one clock and every stage keeps to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from adaptive.addresses import Address, Network
from adaptive.config import Config, ScoringConfig
from adaptive.decisions import Decider, Decision
from adaptive.events import Event
from adaptive.filters.engine import Engine
from adaptive.filters.prefix import YearGuess
from adaptive.filters.rules import Filter
from adaptive.scoring import Scorer, tallies
from adaptive.state import State

_NONE: tuple[Decision, ...] = ()


@dataclass
class Pipeline:
    """The filters, the scorer and the decider, and one clock for all of them.

    >>> pipeline = Pipeline.build(config, filters, state, clock=time.time, own_addresses=host_addresses())
    >>> engine = pipeline.engine()                 # one per log
    >>> for decision in pipeline.scan(engine, chunk): ...

    Not thread-safe: the scorer and the decider are the daemon loop's own.
    """

    filters: list[Filter]
    scorer: Scorer
    decider: Decider
    clock: Callable[[], float]
    offences: int = 0      # offences the scorer found in what was fed, decided or not

    @classmethod
    def build(cls, config: Config, filters: list[Filter], state: State, *, clock: Callable[[], float],
              own_addresses: Iterable[Address | Network | str] = (), scorer: Scorer | None = None) -> Pipeline:
        """The stages for `config` and `filters`, deciding into `state`. `scorer` carries scores over
        (a reload that changed neither scoring nor filters keeps them); by default a new one, with the
        filters' marks for lines that log one attempt twice (the shipped marks if they carry none)."""
        decider = Decider(config, state, own_addresses=own_addresses, clock=clock)
        pipeline = cls(filters, scorer or Scorer(config.scoring, tallies(filters) or None), decider, clock)
        pipeline.scorer.split_around(decider.protected)
        return pipeline

    def restored(self, snapshot: bytes, scoring: ScoringConfig) -> Pipeline | None:
        """The same pipeline with the scorer a snapshot holds (`Scorer.snapshot`) in place of its own;
        None if the snapshot is of another scoring configuration or another format."""
        scorer = Scorer.restore(snapshot, scoring, tallies(self.filters) or None)
        if scorer is None:
            return None
        scorer.split_around(self.decider.protected)
        return Pipeline(self.filters, scorer, self.decider, self.clock)

    def engine(self, reference: float | None = None) -> Engine:
        """An engine for one log. A classic syslog line has no year: it is taken to be from about
        `reference` (the clock's now for a live log; a file's last write for a replayed one)."""
        return Engine(self.filters, YearGuess(self.clock() if reference is None else reference))

    def feed(self, event: Event) -> Sequence[Decision]:
        """What `event` leads to: the decisions of every offence it completes (most events: none)."""
        offences = self.scorer.feed(event)
        if not offences:
            return _NONE
        self.offences += len(offences)
        decide = self.decider.decide
        return [decision for offence in offences for decision in decide(offence)]

    def scan(self, engine: Engine, chunk: bytes) -> Iterator[Decision]:
        """The decisions of a chunk of complete lines read by `engine`."""
        feed = self.feed
        for _, event in engine.scan(chunk):
            yield from feed(event)
