"""Sources: the logs followed, handed on as chunks of complete lines with the position after each.

`FileSource` follows one file across rotations and restarts, `Watch` wakes the daemon when one
changes, and a `PositionStore` (the state database) keeps where each source stands.
"""

from adaptive.sources.file import FileSource
from adaptive.sources.position import Chunk, Position, PositionStore, fingerprint
from adaptive.sources.watch import Watch

__all__ = ["Chunk", "FileSource", "Position", "PositionStore", "Watch", "fingerprint"]
