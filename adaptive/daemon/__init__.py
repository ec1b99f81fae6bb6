"""The daemon: `adaptive run`'s composition root, its loop, and the control socket it serves.

    sources → filters → scoring → decisions   (adaptive.pipeline)
                                      ↘ nftables (Backend), state (bans, positions)

- `loop`: `Daemon`, which builds every stage from the configuration, follows the sources, enforces the
  decisions in the kernel and keeps the table true; one thread.
- `ops`: the operations the control socket serves, on the daemon's public API, run on its thread.
- `server`: the control socket (newline-delimited JSON over a Unix socket, `SO_PEERCRED`) and its wire
  format: what each op takes and what its reply holds.

Only `adaptive.control.run` (the `adaptive run` command) imports this package.
"""

from adaptive.daemon.loop import Daemon

__all__ = ["Daemon"]
