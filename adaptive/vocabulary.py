"""What scoring and decisions conclude, in the words every stage uses: why (`REASONS`) and to what end
(`Outcome`).

Defined once, below every stage, so that the configuration (ban lengths per reason), scoring (the reason
an offence gives), decisions and the metrics (their labels) name one set without importing each other.
"""

from __future__ import annotations

from enum import StrEnum

# The reasons an offence gives (scoring), then those only a decision gives: a prefix holding enough
# banned addresses, and the admin's own ban.
OFFENCE_REASONS = ("score", "slow", "spam_burst", "harvest", "dictionary", "account")
SUBNET = "subnet"
MANUAL = "manual"
REASONS = (*OFFENCE_REASONS, SUBNET, MANUAL)


class Outcome(StrEnum):
    """What a decision comes to."""

    BAN = "ban"                  # to enforce in the kernel
    SUPPRESSED = "suppressed"    # the target is protected: nothing recorded, nothing enforced
    DRY_RUN = "dry_run"          # recorded as a ban, not enforced
