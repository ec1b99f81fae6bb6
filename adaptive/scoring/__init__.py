"""Scoring: events in, offences out.

`Scorer` (in `score`) keeps one decaying score and one slow score per address in a compact table
(`table`), counts each authentication attempt once however many lines log it, and runs the burst
detectors (`bursts`); what it hands on is an `Offence` (`offence`). Addresses are keyed by `keys`.
"""

from adaptive.scoring.offence import Offence
from adaptive.scoring.score import SHIPPED_TALLIES, Scorer, tallies

__all__ = ["SHIPPED_TALLIES", "Offence", "Scorer", "tallies"]
