"""Enforcement in the kernel: adaptive's own nftables table, its ban sets, limits and counters.

- `ruleset`: pure `build_*` functions making libnftables JSON from the configuration;
- `bans`: `Ban` (validated address or prefix with its timeout), `Counter`, and readers of listings;
- `executor`: `Executor`, the one libnftables context, and `NftablesError`;
- `backend`: `Backend`, which applies the ruleset and bans, unbans, lists and counts.

Only this package imports `nftables` (and only `executor` does, when an `Executor` is made).
"""

from adaptive.nftables.backend import Backend
from adaptive.nftables.bans import Ban, Counter
from adaptive.nftables.executor import Executor, NftablesError
from adaptive.nftables.ruleset import Layout, build_ban, build_ruleset, build_unban

__all__ = ["Backend", "Ban", "Counter", "Executor", "Layout", "NftablesError", "build_ban",
           "build_ruleset", "build_unban"]
