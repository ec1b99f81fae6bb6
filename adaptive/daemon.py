"""The daemon's composition root: it builds each stage from the configuration and wires them.

For now the pipeline ends at events: sources are followed, their lines run through the filters, each
event is handed to `on_event` (the command logs it), and each source's position is committed once its
chunk has been dealt with, so a restart resumes exactly where the last run stopped. Scoring, decisions
and the kernel join here as they are built; no other module knows every stage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from adaptive.config import Config
from adaptive.events import Event
from adaptive.filters.engine import Engine
from adaptive.filters.prefix import YearGuess
from adaptive.filters.rules import load_directory
from adaptive.sources import FileSource, Watch
from adaptive.state import State

log = logging.getLogger(__name__)

POLL = 1.0   # seconds between polls when nothing woke us: the fallback for missed file events


@dataclass
class _Follower:
    """One source and the engine that reads it: an engine holds per-log state (the queue-id join)."""

    source: FileSource
    engine: Engine


class Daemon:
    """Follows every configured log and turns its lines into events until `stop` is set.

    >>> daemon = Daemon(config, on_event=print)
    >>> daemon.run(stop)          # returns once `stop` is set, positions committed
    """

    def __init__(self, config: Config, on_event: Callable[[Event], None],
                 clock: Callable[[], float] = time.time, state: State | None = None):
        self.config = config
        self.on_event = on_event
        self.clock = clock
        filters = load_directory(config.filters_directory)
        self.state = state or State(config.state.path, clock=clock)
        self.followers = [
            _Follower(FileSource(name, src.path, self.state, start=src.start), Engine(filters, YearGuess(clock())))
            for name, src in config.sources.items()
        ]
        self.events = 0

    def poll_once(self) -> int:
        """Read what every source has now, to its end; return the number of events."""
        found = 0
        now = self.clock()
        for f in self.followers:
            f.engine.years.reference = now    # a live log's lines are from about now
            while chunks := f.source.poll():
                for chunk in chunks:
                    for _, event in f.engine.scan(chunk.data):
                        self.on_event(event)
                        found += 1
                    f.source.commit(chunk)
        self.events += found
        return found

    def run(self, stop: threading.Event) -> None:
        watch = Watch(str(f.source.path) for f in self.followers)
        watch.start()
        log.info("following %s", ", ".join(f"{f.source.name}={f.source.path}" for f in self.followers))
        try:
            while not stop.is_set():
                self.poll_once()
                watch.wait(POLL)
                watch.refresh()
        finally:
            watch.stop()
            for f in self.followers:
                f.source.close()
            self.state.close()
