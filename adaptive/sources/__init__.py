"""Sources: the logs followed, handed on as chunks of complete lines with the position after each.

`Source` is what every kind of source is (its life cycle is in `sources.base`); `open_source` opens
one by its `type`. `FileSource` follows one file across rotations and restarts, `JournalSource` the
systemd journal's matching entries across rotations and restarts, `Watch` wakes the
daemon when one changes, and a `PositionStore` (the state database) keeps where each source stands.
"""

from adaptive.sources.base import SOURCE_TYPES, Source, open_source, register
from adaptive.sources.file import FileSource
from adaptive.sources.journal import JournalSource
from adaptive.sources.position import JOURNAL, Chunk, Position, PositionStore, fingerprint
from adaptive.sources.watch import Watch

register("file", FileSource.from_config)
register("journal", JournalSource.from_config)

__all__ = ["JOURNAL", "SOURCE_TYPES", "Chunk", "FileSource", "JournalSource", "Position", "PositionStore", "Source",
           "Watch", "fingerprint", "open_source", "register"]
