"""A small file system of the test's own that can be filled up: a tmpfs mounted on a temporary
directory, for "disk full" for real (ENOSPC from the kernel, not a mock)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


def missing() -> str:
    """Why a small disk cannot be mounted here ("" if it can)."""
    return "" if os.geteuid() == 0 else "needs root to mount a tmpfs"


class SmallDisk:
    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Take every free block: the next write that needs one gets ENOSPC."""
        with open(self.filler, "ab", buffering=0) as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 512)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m") -> Iterator[SmallDisk]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)
