"""Events: what the filters make of a log line, and all that later stages ever see of it.

An event is a small frozen record: which address did what, when (the log's own time), and which
filter rule said so. Scoring weighs events; it never reads log lines.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Kind(StrEnum):
    """What an event says about its address. Abuse kinds first, then the kinds that forgive or pace."""

    AUTH_FAILURE = "auth_failure"            # a wrong password, any mechanism
    UNKNOWN_USER = "unknown_user"            # RCPT/VRFY to a user that does not exist
    RELAY_DENIED = "relay_denied"            # tried to relay through us
    RBL_LISTED = "rbl_listed"                # listed by a DNS blocklist we consult
    HELO_REJECTED = "helo_rejected"
    SENDER_REJECTED = "sender_rejected"
    CLIENT_REJECTED = "client_rejected"      # rejected for what the client is (no rDNS, access map)
    MESSAGE_REJECTED = "message_rejected"    # content refused (milter, e.g. spam)
    PROTOCOL_ABUSE = "protocol_abuse"        # pipelining, non-SMTP, pregreet, limits, plaintext auth
    LOST_CONNECTION = "lost_connection"      # hung up mid-dialogue (not after DATA)
    NO_AUTH_DISCONNECT = "no_auth_disconnect"  # IMAP/POP3 connection that never tried to log in
    AUTH_SUCCESS = "auth_success"            # forgives: a real user behind this address
    MESSAGE_ACCEPTED = "message_accepted"    # paces: spam bursts, compromised accounts


class Tally(StrEnum):
    """The mark of a filter rule whose lines log an authentication attempt that another line may log
    too, so that scoring counts each attempt once (see `adaptive.scoring.score`)."""

    AUTH = "auth"                    # the authentication service's line for one attempt
    SUMMARY = "summary"              # a connection's summary of its `count` attempts
    SASL = "sasl"                    # a SASL client's line for one attempt, which the service may log too
    PAM = "pam"                      # PAM's own line for one attempt, which the service may log too
    SASL_SUMMARY = "sasl-summary"    # a SASL client's summary of a connection's `count` failed attempts


class Event(NamedTuple):
    """One thing an address did, as a filter rule read it from one log line.

    A NamedTuple rather than a frozen dataclass: one is built for every matching line, and a frozen
    dataclass pays three times as much at construction for the same immutability.

    `time` is the log line's own timestamp (seconds since the epoch), so a replayed log is judged
    exactly as the live one was. `weight` is the rule's own weight, or None for the kind's weight
    from the configuration. `count` is how many of the thing happened (recipients of an accepted
    message; 1 otherwise).
    """

    time: float
    family: str       # the service family that wrote the line: "postfix" or "dovecot"
    filter: str       # the filter file's name
    rule: str         # the rule's id within that filter
    kind: Kind
    ip: str           # normalised: IPv4 dotted quad or compressed IPv6, never IPv4-mapped
    user: str | None = None
    weight: float | None = None
    count: int = 1    # type: ignore[assignment]  # the field hides tuple.count, which nothing calls
