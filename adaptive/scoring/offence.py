"""Offences: what scoring hands to decisions, one record per address that crossed a line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Offence:
    """An address that crossed a line; decisions turn it into a ban (or suppress it)."""
    time: float            # the event's own time (log time) when the line was crossed
    target: str            # "203.0.113.7" for IPv4; IPv6 as its prefix "2001:db8:1:2::/64" (length from config)
    reason: str            # one of `adaptive.vocabulary.OFFENCE_REASONS`
    score: float           # the value that crossed (score, or count for a burst)
    rules: dict[str, int]  # "filter/rule" -> events of that rule that made it (top few is fine, bounded)
    user: str | None = None  # the SASL account, for reason "account"
