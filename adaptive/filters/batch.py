"""Counting what the filters make of a whole file, on every core: `adaptive check`'s summary.

The daemon follows a log with one engine, a chunk at a time, as lines come. A file that is there whole
can be cut at newlines into parts, one per core, each read by its own engine in a forked process. The
parts are independent but for the queue-id join (a qmgr line recalls the client its smtpd line
remembered), which can span a cut: each worker notes the recalls it could not make, and the parent
makes them in order against the memory the parts before left, as one pass over the file would have.

Only counts come back, not events: events must come in order and a file's worth of them is large, so
what prints events (`adaptive check --json`) reads with one engine, streaming.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Protocol

from adaptive.filters.engine import Engine, Part
from adaptive.filters.prefix import YearGuess
from adaptive.filters.rules import Filter

CHUNK = 4 << 20
MIN_PART = 16 << 20     # below this a part is not worth a process

_job: tuple[Path, list[Filter], float, int] | None = None   # set before the fork, read by workers


class Readable(Protocol):
    """What `chunks` reads: a file, standard input, or a reader that decompresses one (gzip, xz...)."""

    def read(self, size: int = -1, /) -> bytes: ...


def chunks(stream: Readable, size: int = CHUNK, limit: int | None = None) -> Iterator[bytes]:
    """Chunks of complete lines from a stream (at most `limit` bytes of it); a last line without its
    newline is completed."""
    rest, left = b"", limit
    while left is None or left > 0:
        block = stream.read(size if left is None else min(size, left))
        if not block:
            break
        if left is not None:
            left -= len(block)
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        if cut:
            yield block[:cut]
    if rest:
        yield rest + b"\n"


def read_range(path: Path, start: int, end: int, size: int = CHUNK) -> Iterator[bytes]:
    """Chunks of complete lines between two offsets of a file."""
    with open(path, "rb") as f:
        f.seek(start)
        yield from chunks(f, size, end - start)


def cuts(path: Path, parts: int) -> list[tuple[int, int]]:
    """Byte ranges that split a file into about equal parts at line ends."""
    size = os.path.getsize(path)
    bounds = [0]
    with open(path, "rb") as f:
        for i in range(1, parts):
            f.seek(max(size * i // parts, bounds[-1]))
            f.readline()
            bounds.append(min(f.tell(), size))
    bounds.append(size)
    return [(a, b) for a, b in pairwise(bounds) if b > a]


def _count_part(bounds: tuple[int, int]) -> Part:
    assert _job is not None     # set by the parent before it forked this worker
    path, filters, reference, chunk = _job
    engine = Engine(filters, YearGuess(reference))
    engine.unjoined_log = []
    for block in read_range(path, *bounds, chunk):
        engine.scan(block)
    return engine.export()


def count_file(path: Path, filters: list[Filter], reference: float, workers: int | None = None,
               chunk: int = CHUNK) -> Engine:
    """An engine whose counts are those of the whole file, read with up to `workers` processes."""
    workers = workers or len(os.sched_getaffinity(0))
    parts = max(1, min(workers, os.path.getsize(path) // MIN_PART))
    engine = Engine(filters, YearGuess(reference))
    if parts == 1:
        for block in read_range(path, 0, os.path.getsize(path), chunk):
            engine.scan(block)
        return engine
    global _job
    _job = (path, filters, reference, chunk)
    try:
        with ProcessPoolExecutor(parts, mp_context=multiprocessing.get_context("fork")) as pool:
            for part in pool.map(_count_part, cuts(path, parts)):
                engine.absorb(part)
    finally:
        _job = None
    return engine
