"""The tracked addresses, compactly: a dict from address key to slot, and one typed array per value.

A Python object per address would cost several hundred bytes; a million addresses must fit in under 200
each. So an address is a slot number, and each of its values sits at that index in an `array` (a
column) of machine floats or small ints, which costs their bare size. What a slot costs, measured by
`bench/scoring.py`:

    index   the dict entry (42), the key int (28 to 36), the slot int (28)    ~100 bytes
    time (double)                                                             8
    expiry, paired_at (float, seconds after `base`)                           8
    score, fixed, slow, slow_fixed (float)                                   16
    flags, pending, unpaired, echo, sasl_seen (byte)                          5
    rule, hits, rule2, hits2 (16-bit)                                         8

Slots freed by eviction or `drop` go on a free list and are reused first. There is no slot-to-key
column: eviction finds its victims' keys by walking the index in C. `expiry` and `paired_at` are
single floats counted from `base`, the first time the table saw: whole seconds for half a year, a few
seconds after years, which is all they need (an ordering, a pairing window).

Eviction: past `capacity` addresses, the least worth keeping go, in batches. `expiry` holds, per slot,
the log time at which both its scores will have decayed to nothing worth keeping (under 1/64 of their
thresholds); the scorer sets it at each update. For one score, ordering slots by it is ordering them
by their scores decayed to any one moment (for two, by the later of the two), so it never needs
recomputing as time passes: addresses whose scores have decayed away already come first, then the
lowest scores. A batch is found by taking the 1/32 quantile of a random sample of expiries, then
walking the index for the addresses at or below it, in C (`map`/`compress` over its keys and values),
so that a flood of new addresses costs a few microseconds per eviction.
"""

from __future__ import annotations

import random
from array import array
from itertools import compress, islice

NO_RULE = 0xFFFF
_INF = float("inf")
SAMPLE = 1024    # expiries sampled to find the batch's cut
BATCH = 32       # a batch is about 1/BATCH of the table


class Table:
    """Per-address values in columns; `index` maps an address key to its slot.

    >>> table = Table(capacity=1_000_000)
    >>> slot = table.index.get(key)
    >>> if slot is None: slot = table.add(key, t)
    >>> table.score[slot] += 1.0

    The scorer reads and writes the columns directly; this class only adds, drops and evicts slots.
    """

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity {capacity} must be at least 1")
        self.capacity = capacity
        self.index: dict[int, int] = {}
        self.base: float | None = None  # log time of the first slot; `expiry` and `paired_at` count from it
        self.time = array("d")          # log time of the last update
        self.expiry = array("f")        # when the slot is worth nothing any more (inf: a free slot)
        self.score = array("f")         # the score's forgivable part (kinds a success takes back)
        self.fixed = array("f")         # the rest of the score
        self.slow = array("f")          # the slow score's forgivable part
        self.slow_fixed = array("f")
        self.flags = array("B")         # offended: 1 score, 2 slow
        self.pending = array("B")       # attempts an auth service logged that no summary has claimed
        self.unpaired = array("B")      # SASL failures no auth service line has claimed yet
        self.paired_at = array("f")     # log time of the last of those two
        self.echo = array("b")          # Dovecot auth lines less PAM lines, of attempts both may log
        self.sasl_seen = array("B")     # SASL failures no Postfix disconnect summary has claimed
        self.rule = array("H")          # the address's most frequent rule, and its events
        self.hits = array("H")
        self.rule2 = array("H")         # the latest other rule, and its events
        self.hits2 = array("H")
        self.free: list[int] = []
        self.evictions = 0
        self._rng = random.Random(seed)   # seeded: a replay evicts as the live run did

    def __len__(self) -> int:
        return len(self.index)

    def add(self, key: int, t: float) -> int:
        """A new slot for `key` at log time `t`, all its values zero; evicts first when full."""
        if len(self.index) >= self.capacity:
            self.evict()
        if self.base is None:
            self.base = t
        since = t - self.base
        if self.free:
            s = self.free.pop()
            self.time[s] = t
            self.expiry[s] = self.paired_at[s] = since
            self.score[s] = self.fixed[s] = self.slow[s] = self.slow_fixed[s] = 0.0
            self.flags[s] = self.pending[s] = self.unpaired[s] = self.echo[s] = self.sasl_seen[s] = 0
            self.rule[s] = self.rule2[s] = NO_RULE
            self.hits[s] = self.hits2[s] = 0
        else:
            s = len(self.time)
            self.time.append(t)
            self.expiry.append(since)
            self.paired_at.append(since)
            for column in (self.score, self.fixed, self.slow, self.slow_fixed):
                column.append(0.0)
            for counts in (self.flags, self.pending, self.unpaired, self.echo, self.sasl_seen, self.hits, self.hits2):
                counts.append(0)
            self.rule.append(NO_RULE)
            self.rule2.append(NO_RULE)
        self.index[key] = s
        return s

    def forgive(self, key: int) -> None:
        """Forgive an address: forget it, unless it holds tallies of attempts already counted whose
        summaries are still due (Dovecot writes one when each held connection finally closes): then
        its scores, offences and rules go back to nothing and the tallies stay, so those summaries do
        not count the attempts again."""
        s = self.index[key]
        if not self.pending[s] and not self.sasl_seen[s]:   # pairings are within seconds, never after an unban
            self.drop(key)
            return
        self.score[s] = self.fixed[s] = self.slow[s] = self.slow_fixed[s] = 0.0
        self.flags[s] = 0
        self.rule[s] = self.rule2[s] = NO_RULE
        self.hits[s] = self.hits2[s] = 0

    def drop(self, key: int) -> None:
        """Forget an address; its slot is reused later."""
        s = self.index.pop(key)
        self.expiry[s] = _INF
        self.free.append(s)

    def evict(self) -> int:
        """Drop a batch of the addresses least worth keeping (at least one); returns how many."""
        index, expiry = self.index, self.expiry
        n = len(expiry)
        picked = self._rng.sample(range(n), SAMPLE) if n > SAMPLE else range(n)
        sample = sorted(expiry[i] for i in picked)
        cut = sample[max(0, len(sample) // BATCH - 1)]
        if cut == _INF:  # hardly any slot in use: nothing worth a batch
            cut = min(expiry)
        due = map(cut.__ge__, map(expiry.__getitem__, index.values()))
        victims = list(islice(compress(index.keys(), due), max(1, n // BATCH)))
        for key in victims:
            self.drop(key)
        self.evictions += len(victims)
        return len(victims)
