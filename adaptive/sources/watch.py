"""Waking the daemon when a followed log changes, so that it polls at once rather than at its next tick.

The only module that knows watchdog. It watches the directories of the logs, not the files: a rotation
replaces the file, and a watch on the file would follow the old inode away. Being woken is a hint
only: sources are correct whatever events are missed, and the daemon polls on a timeout as well.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

# A reader opening or closing a log (our own polls, an admin's `less`) is no news.
_QUIET = frozenset({"opened", "closed_no_write"})

log = logging.getLogger(__name__)


class Watch(FileSystemEventHandler):
    """Sets `changed` when anything happens to a followed file or one of its rotated siblings.

    >>> watch = Watch(source.path for source in sources)
    >>> watch.start()
    >>> while running:
    ...     watch.wait(5.0)                    # woken early by a change; polls anyway on the timeout
    ...     for source in sources: ...         # poll each until it returns []
    >>> watch.stop()

    A directory that does not exist yet is left in `unwatched`; `refresh()` tries it again (the daemon
    calls it on its timeout). `on_change` is called too, from watchdog's thread: keep it short.
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]],
                 on_change: Callable[[], None] | None = None,
                 observer_factory: Callable[[], BaseObserver] = Observer):
        self.changed = threading.Event()
        self.on_change = on_change
        self._names: dict[str, set[str]] = {}     # directory -> base names of the logs in it
        for path in paths:
            directory, name = os.path.split(os.path.abspath(path))
            self._names.setdefault(directory, set()).add(name)
        self.unwatched: set[str] = set(self._names)
        self._observer = observer_factory()

    def start(self) -> None:
        # Started first, so that `schedule` adds each watch at once and a missing directory fails
        # there, into `unwatched`, rather than failing the whole start.
        self._observer.start()
        self.refresh()

    def refresh(self) -> None:
        """Watch the directories that could not be watched before (they did not exist yet)."""
        for directory in sorted(self.unwatched):
            try:
                self._observer.schedule(self, directory, recursive=False)
            except OSError as e:
                log.debug("cannot watch %s yet: %s", directory, e)
            else:
                self.unwatched.discard(directory)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a change; True if there was one. Clears it for next time."""
        woken = self.changed.wait(timeout)
        self.changed.clear()
        return woken

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def concerns(self, path: str | bytes) -> bool:
        """Whether `path` is a followed log or a rotated sibling of one (`mail.log.1` for `mail.log`)."""
        directory, name = os.path.split(os.fsdecode(path))
        return any(name.startswith(base) for base in self._names.get(directory, ()))

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _QUIET or event.is_directory:
            return
        if self.concerns(event.src_path) or self.concerns(getattr(event, "dest_path", "") or ""):
            self.changed.set()
            if self.on_change is not None:
                self.on_change()
