"""Burst detectors: sliding windows of log time that count what each address (or account) did lately.

Each detector keeps the events of its last `window` seconds in one deque, oldest first, and a count per
address (or account) that goes up as an event comes in and down as it falls out of the window, so a
count is always that of the window ending at the latest event. Memory follows the events in the
window, not the addresses ever seen: an address with no event in the window has no entry at all. Under a
flood of more than `cap` events per window the oldest go early, and the window shortens.

An address (or account) that goes over its limit is reported once, then not again until its count has
come back down to the limit (or `forget` wiped it): decisions has banned it by then, and coming back
after the ban to do it again must be reported again.

- `Burst`: how many per address (spam: messages accepted; harvest: recipients rejected);
- `Distinct`: how many different things per address (dictionary: user names tried);
- `Accounts`: messages and recipients per SASL account, with the addresses it sent from.
"""

from __future__ import annotations

from collections import deque


class Burst:
    """How many events each address had within the last `window` seconds; over `limit` is reported.

    >>> spam = Burst(window=600, limit=200, cap=100_000)
    >>> spam.add(event.time, key)   # the count, when this event takes the address over the limit; else 0
    """

    def __init__(self, window: float, limit: int, cap: int):
        self.window, self.limit, self.cap = window, limit, cap
        self.entries: deque[tuple[float, int, int]] = deque()
        self.counts: dict[int, int] = {}
        self.flagged: set[int] = set()

    def add(self, t: float, key: int, n: int = 1) -> int:
        entries, counts, flagged, limit = self.entries, self.counts, self.flagged, self.limit
        edge = t - self.window
        while entries and (entries[0][0] <= edge or len(entries) >= self.cap):
            _, old, m = entries.popleft()
            c = counts[old] - m
            if c > 0:
                counts[old] = c
            else:
                del counts[old]
            if c <= limit and old in flagged:
                flagged.discard(old)
        entries.append((t, key, n))
        c = counts[key] = counts.get(key, 0) + n
        if c > limit and key not in flagged:
            flagged.add(key)
            return c
        return 0

    def count(self, key: int) -> int:
        return self.counts.get(key, 0)

    def forget(self, low: int, high: int) -> None:
        """Wipe the addresses whose keys are in low..high, as if they had done nothing."""
        if not any(low <= k <= high for k in self.counts):
            return
        self.entries = deque(e for e in self.entries if not low <= e[1] <= high)
        for k in [k for k in self.counts if low <= k <= high]:
            del self.counts[k]
            self.flagged.discard(k)


class Distinct:
    """How many different items (user names) each address had within the last `window` seconds.

    Per address, the one item it had so far is held as (item, events); a second makes it a dict of
    item -> events. Most addresses never try a second name, and a tuple is a quarter of a dict.
    """

    def __init__(self, window: float, limit: int, cap: int):
        self.window, self.limit, self.cap = window, limit, cap
        self.entries: deque[tuple[float, int, str]] = deque()
        self.items: dict[int, tuple[str, int] | dict[str, int]] = {}
        self.flagged: set[int] = set()

    def add(self, t: float, key: int, item: str) -> int:
        """The number of different items, when this one takes the address over the limit; else 0."""
        entries, items, limit = self.entries, self.items, self.limit
        edge = t - self.window
        while entries and (entries[0][0] <= edge or len(entries) >= self.cap):
            _, old, name = entries.popleft()
            if self._remove(old, name) <= limit and old in self.flagged:
                self.flagged.discard(old)
        entries.append((t, key, item))
        seen = items.get(key)
        if seen is None:
            items[key] = (item, 1)
            c = 1
        elif isinstance(seen, tuple):
            if seen[0] == item:
                items[key] = (item, seen[1] + 1)
                c = 1
            else:
                items[key] = {seen[0]: seen[1], item: 1}
                c = 2
        else:
            seen[item] = seen.get(item, 0) + 1
            c = len(seen)
        if c > limit and key not in self.flagged:
            self.flagged.add(key)
            return c
        return 0

    def _remove(self, key: int, item: str) -> int:
        """One event of `item` leaves the address's window; the different items left."""
        seen = self.items[key]
        if isinstance(seen, tuple):
            if seen[1] > 1:
                self.items[key] = (item, seen[1] - 1)
                return 1
            del self.items[key]
            return 0
        m = seen[item] - 1
        if m:
            seen[item] = m
        else:
            del seen[item]
            if len(seen) == 1:
                self.items[key] = next(iter(seen.items()))
                return 1
        return len(seen)

    def count(self, key: int) -> int:
        seen = self.items.get(key)
        return 0 if seen is None else 1 if type(seen) is tuple else len(seen)

    def forget(self, low: int, high: int) -> None:
        if not any(low <= k <= high for k in self.items):
            return
        self.entries = deque(e for e in self.entries if not low <= e[1] <= high)
        for k in [k for k in self.items if low <= k <= high]:
            del self.items[k]
            self.flagged.discard(k)


class Account:
    """One SASL account's window: its messages, their recipients, and messages per sending address."""
    __slots__ = ("messages", "recipients", "addresses", "reported")

    def __init__(self) -> None:
        self.messages = 0
        self.recipients = 0
        self.addresses: dict[int, int] = {}
        # Addresses reported since the account went over a limit; None while it is under them.
        self.reported: set[int] | None = None


class Accounts:
    """Messages and recipients per SASL account within the last `window` seconds.

    An account over either limit (a stolen password sending spam) is reported on every address it sent
    from within the window, then on each new address it sends from while still over.
    """

    def __init__(self, window: float, messages: int, recipients: int, cap: int):
        self.window, self.max_messages, self.max_recipients, self.cap = window, messages, recipients, cap
        self.entries: deque[tuple[float, str, int, int]] = deque()
        self.accounts: dict[str, Account] = {}

    def add(self, t: float, user: str, key: int, recipients: int) -> tuple[int, list[int]]:
        """Count a message; returns the count that went over a limit (messages, else recipients) and
        the addresses to report now, or (0, [])."""
        entries, accounts = self.entries, self.accounts
        edge = t - self.window
        while entries and (entries[0][0] <= edge or len(entries) >= self.cap):
            self._drop(entries.popleft())
        entries.append((t, user, key, recipients))
        account = accounts.get(user)
        if account is None:
            account = accounts[user] = Account()
        account.messages += 1
        account.recipients += recipients
        account.addresses[key] = account.addresses.get(key, 0) + 1
        if account.messages > self.max_messages:
            value = account.messages
        elif account.recipients > self.max_recipients:
            value = account.recipients
        else:
            return 0, []
        if account.reported is None:
            account.reported = set()
        new = [k for k in account.addresses if k not in account.reported]
        account.reported.update(new)
        return value, new

    def _drop(self, entry: tuple[float, str, int, int]) -> None:
        _, user, key, recipients = entry
        account = self.accounts[user]
        account.messages -= 1
        account.recipients -= recipients
        left = account.addresses[key] - 1
        if left:
            account.addresses[key] = left
        else:
            del account.addresses[key]
        if not account.messages:
            del self.accounts[user]
        elif account.messages <= self.max_messages and account.recipients <= self.max_recipients:
            account.reported = None

    def sent(self, key: int) -> dict[str, int]:
        """Messages per account sent from an address within the window."""
        return {user: a.addresses[key] for user, a in self.accounts.items() if key in a.addresses}

    def forget(self, low: int, high: int) -> None:
        """Wipe what the addresses whose keys are in low..high sent, and that they were reported."""
        if not any(low <= e[2] <= high for e in self.entries):
            return
        kept: deque[tuple[float, str, int, int]] = deque()
        for entry in self.entries:
            if low <= entry[2] <= high:
                self._drop(entry)
            else:
                kept.append(entry)
        self.entries = kept
        for account in self.accounts.values():
            if account.reported:
                account.reported = {k for k in account.reported if not low <= k <= high}
