"""Scoring: decaying scores, the slow score, forgiveness, each attempt counted once, bursts, the table.

Time is the events' own: each test places its events on the log's clock, nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from adaptive import config
from adaptive.config import ScoringConfig
from adaptive.events import Event, Kind, Tally
from adaptive.filters.rules import FilterError, load_directory, load_file
from adaptive.scoring import SHIPPED_TALLIES, Offence, Scorer, tallies
from adaptive.scoring.keys import Keys
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = 1_800_000_000.0
IP = "203.0.113.7"
HOUR, DAY = 3600.0, 86400.0

# The rules as the shipped filters name them: (family, filter, rule, kind).
SASL = ("postfix", "postfix", "sasl-auth-failed", Kind.AUTH_FAILURE)
MISMATCH = ("dovecot", "dovecot", "auth-password-mismatch", Kind.AUTH_FAILURE)
UNKNOWN = ("dovecot", "dovecot", "auth-unknown-user", Kind.AUTH_FAILURE)
SUMMARY = ("dovecot", "dovecot", "login-auth-failed", Kind.AUTH_FAILURE)
PAM = ("dovecot", "dovecot", "pam-unix-failure", Kind.AUTH_FAILURE)
PAM_DOVECOT = ("dovecot", "dovecot", "auth-pam-failure", Kind.AUTH_FAILURE)
DISCONNECT = ("postfix", "postfix", "disconnect-auth-failed", Kind.AUTH_FAILURE)
LOGIN = ("dovecot", "dovecot", "login-success", Kind.AUTH_SUCCESS)
SUBMISSION = ("postfix", "postfix", "client-sasl", Kind.AUTH_SUCCESS)
RCPT = ("postfix", "postfix", "reject-unknown-user", Kind.UNKNOWN_USER)
RELAY = ("postfix", "postfix", "reject-relay", Kind.RELAY_DENIED)
PREGREET = ("postfix", "postscreen", "pregreet", Kind.PROTOCOL_ABUSE)
ACCEPTED = ("postfix", "postfix", "queue-active", Kind.MESSAGE_ACCEPTED)


def event(t: float, rule: tuple = SASL, ip: str = IP, user: str | None = None, weight: float | None = None,
          count: int = 1) -> Event:
    family, filter_, rule_id, kind = rule
    return Event(T0 + t, family, filter_, rule_id, kind, ip, user, weight, count)


def scorer(**settings) -> Scorer:
    return Scorer(dataclasses.replace(ScoringConfig(), **settings))


def feed(s: Scorer, *events: Event) -> list[Offence]:
    return [o for e in events for o in s.feed(e)]


def near(value: float):
    """Within a hundredth: events a few seconds apart have decayed a little."""
    return pytest.approx(value, abs=0.01)


def score(s: Scorer, ip: str = IP) -> float:
    return s.explain(ip)["score"]


# --- the score ---

def test_the_score_halves_every_half_life():
    s = scorer()
    feed(s, event(0), event(0), event(HOUR))
    assert score(s) == near(2 * 0.5 + 1)
    feed(s, event(3 * HOUR, ip="192.0.2.1"))           # time passes on the log's clock
    assert score(s) == near(2.0 * 0.25)


def test_five_failures_offend_four_do_not():
    s = scorer()
    assert feed(s, *(event(i) for i in range(4))) == []
    [offence] = feed(s, event(4))
    assert offence == Offence(T0 + 4, IP, "score", offence.score, {"postfix/sasl-auth-failed": 5})
    assert offence.score == near(5.0)


def test_five_failures_within_ten_minutes_always_offend():
    """fail2ban's rule, at its worst spacing: four at once, the fifth ten minutes later."""
    s = scorer()
    assert feed(s, *(event(0) for _ in range(4))) == []
    assert [o.reason for o in feed(s, event(600))] == ["score"]
    # Five spread over half an hour do not: the score is not a count.
    s = scorer()
    assert feed(s, *(event(0) for _ in range(4)), event(1800)) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 600), min_size=4, max_size=4))
def test_five_failures_within_ten_minutes_offend_however_spaced(times):
    s = scorer()
    offences = feed(s, *(event(t, PREGREET) for t in sorted([0.0, 600.0, *times])))
    assert [o.reason for o in offences] == ["score"]


def test_a_rule_weight_overrides_the_kind_weight():
    s = scorer()
    assert feed(s, event(0, weight=2.0), event(1, weight=2.0)) == []
    assert [o.reason for o in feed(s, event(2, weight=0.6))] == ["score"]
    s = scorer()
    feed(s, event(0, weight=0.0))
    assert len(s) == 0


def test_kind_weights_come_from_the_configuration():
    s = scorer(weights=(("protocol_abuse", 0.25),) + ScoringConfig().weights)
    feed(s, *(event(i, PREGREET) for i in range(6)))
    assert score(s) == near(6.0)            # the first pair wins in dict()
    weights = dict(ScoringConfig().weights) | {"protocol_abuse": 0.25}
    s = scorer(weights=tuple(weights.items()))
    feed(s, *(event(i, PREGREET) for i in range(6)))
    assert score(s) == near(1.5)


def test_no_offence_again_until_the_score_has_come_back_below_the_line():
    s = scorer()
    assert len(feed(s, *(event(i, PREGREET) for i in range(5)))) == 1
    assert feed(s, *(event(5 + i, PREGREET) for i in range(20))) == []
    # Banned (no lines) for a day: the score decays far below the line, and coming back offends again.
    assert feed(s, *(event(DAY + i, PREGREET) for i in range(4))) == []
    assert [o.reason for o in feed(s, event(DAY + 4, PREGREET))] == ["score"]
    # the same for the slow score
    s = scorer()
    assert [o.reason for o in feed(s, *(event(i * HOUR) for i in range(10)))] == ["slow"]
    assert feed(s, *(event(10 * HOUR + i * HOUR) for i in range(10))) == []
    assert [o.reason for o in feed(s, *(event(30 * DAY + i * HOUR) for i in range(10)))] == ["slow"]


# --- forgiveness ---

def test_a_login_forgives_a_failure():
    s = scorer()
    feed(s, event(0), event(1), event(2), event(3), event(4, LOGIN, user="alice"))
    assert score(s) == near(3.0)
    assert feed(s, event(5)) == []                    # 4 again, under the line
    feed(s, event(6, SUBMISSION, user="alice"), event(7, SUBMISSION, user="alice"))
    feed(s, *(event(8, LOGIN) for _ in range(10)))
    assert score(s) == 0.0                             # never below zero


def test_forgiveness_is_off_for_kinds_not_listed():
    s = scorer()
    feed(s, event(0, RCPT), event(0, RCPT), event(0), event(1, LOGIN))
    assert score(s) == near(2.0)    # the recipient probes stay
    s = scorer(forgive_kinds=("auth_failure", "unknown_user"))
    feed(s, event(0, RCPT), event(0, RCPT), event(0), event(1, LOGIN), event(1, LOGIN))
    assert score(s) == near(1.0)
    s = scorer(forgive=0.0)
    feed(s, event(0), event(1, LOGIN))
    assert score(s) == near(1.0)


def test_a_natted_office_with_one_stale_password_is_not_banned():
    """One client fails every 5 minutes all day; the others behind the NAT log in in between."""
    s = scorer()
    offences = []
    for i in range(288):
        t = i * 300.0
        offences += feed(s, event(t, MISMATCH, user="bob"), event(t + 2, SUMMARY, user="bob"))
        offences += feed(s, event(t + 60, LOGIN, user="alice"), event(t + 200, LOGIN, user="carol"))
    assert offences == []
    # Without the others' logins, the same client is a slow (and fast) offender.
    s = scorer()
    reasons = {o.reason for i in range(288) for o in feed(s, event(i * 300.0, MISMATCH, user="bob"),
                                                                event(i * 300.0 + 2, SUMMARY, user="bob"))}
    assert reasons == {"score", "slow"}


# --- the slow score ---

def test_ten_failures_spread_over_a_day_are_a_slow_offence():
    s = scorer()
    offences = feed(s, *(event(i * DAY / 9) for i in range(10)))
    assert [o.reason for o in offences] == ["slow"]
    assert offences[0].time <= T0 + DAY
    assert offences[0].score >= 7.0
    # six in a day are not
    s = scorer()
    assert feed(s, *(event(i * DAY / 5) for i in range(6))) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, DAY), min_size=8, max_size=8))
def test_ten_failures_within_a_day_offend_however_spread(times):
    s = scorer()
    offences = feed(s, *(event(t) for t in sorted([0.0, DAY, *times])))
    assert "slow" in [o.reason for o in offences]


def test_a_user_who_mistypes_twice_a_day_and_logs_in_is_never_banned():
    s = scorer()
    offences = []
    for day in range(60):
        for hour in (8.0, 17.0):
            t = day * DAY + hour * HOUR
            offences += feed(s, event(t, MISMATCH, user="alice"), event(t + 3, SUMMARY, user="alice"),
                             event(t + 20, LOGIN, user="alice"))
    assert offences == []
    assert s.explain(IP)["slow"] < 1.0


def test_the_slow_score_counts_only_its_kinds():
    s = scorer()
    feed(s, *(event(i * HOUR, RCPT) for i in range(24)))     # a legitimate MTA's bounces
    assert s.explain(IP)["slow"] == 0.0


# --- each attempt once ---

def test_dovecot_verbose_counts_each_attempt_once():
    """auth_verbose = yes: one auth line per attempt, then the connection's summary of them."""
    s = scorer()
    feed(s, event(0, MISMATCH, user="admin"), event(3, MISMATCH, user="admin"),
         event(6, UNKNOWN, user="admin"), event(8, SUMMARY, user="admin", count=3))
    assert score(s) == near(3.0)


def test_dovecot_default_counts_the_summary():
    """auth_verbose = no (the default): only the summary, with the attempts in its count."""
    s = scorer()
    feed(s, event(8, SUMMARY, user="admin", count=3), event(20, SUMMARY, user="root", count=1))
    assert score(s) == near(4.0)


def test_a_summary_adds_the_attempts_no_auth_line_counted():
    s = scorer()
    feed(s, event(0, MISMATCH, user="a"), event(5, SUMMARY, user="a", count=3))
    assert score(s) == near(3.0)
    # a later summary does not eat into earlier connections' attempts
    feed(s, event(6, SUMMARY, user="b", count=1))
    assert score(s) == near(4.0)


def test_concurrent_connections_from_one_source_count_every_attempt():
    s = scorer()
    feed(s, event(0, MISMATCH, user="a"), event(0, MISMATCH, user="b"), event(1, MISMATCH, user="a"),
         event(2, SUMMARY, user="b", count=1), event(3, SUMMARY, user="a", count=2))
    assert score(s) == near(3.0)


def test_smtp_auth_through_dovecot_counts_once_in_either_order():
    s = scorer()
    feed(s, event(0, MISMATCH, user="info"), event(2, SASL))      # Dovecot decides, Postfix reports
    assert score(s) == near(1.0)
    s = scorer()
    feed(s, event(2, SASL), event(0, MISMATCH, user="info"))      # two log files read in turns
    assert score(s) == near(1.0)
    s = scorer()
    feed(s, *(e for i in range(5) for e in (event(i * 4, MISMATCH, user="x"), event(i * 4 + 2, SASL))))
    assert score(s) == near(5.0)


def test_smtp_auth_without_dovecot_counts_every_line():
    s = scorer()
    feed(s, event(0, SASL), event(2, SASL), event(4, SASL))
    assert score(s) == near(3.0)


def test_lines_further_apart_than_the_pair_window_are_two_attempts():
    s = scorer(pair_window=10.0)
    feed(s, event(0, MISMATCH, user="x"), event(30, SASL))
    assert score(s) == near(2.0)


def test_imap_and_smtp_attempts_mixed_from_one_source():
    """An IMAP attempt (auth line, later its summary) and an SMTP attempt through Cyrus, at once."""
    s = scorer()
    feed(s, event(0, MISMATCH, user="a"), event(1, SASL), event(5, SUMMARY, user="a", count=1))
    assert score(s) == near(2.0)
    # and through Dovecot: three lines, two attempts
    s = scorer()
    feed(s, event(0, MISMATCH, user="a"), event(1, MISMATCH, user="b"), event(3, SASL),
         event(5, SUMMARY, user="a", count=1))
    assert score(s) == near(2.0)


def test_pam_and_dovecot_lines_of_one_attempt_count_once_in_either_order():
    """PAM's own line (auth.log, the journal) and Dovecot's for the same attempt, with the summary."""
    for lines in ((PAM_DOVECOT, PAM), (PAM, PAM_DOVECOT)):
        s = scorer()
        feed(s, event(0, lines[0], user="a"), event(1, lines[1], user="a"), event(3, SUMMARY, user="a", count=1))
        assert score(s) == near(1.0)
    # five attempts of one connection, Dovecot's and PAM's lines interleaved as two files give them
    s = scorer()
    feed(s, *(event(i, PAM, user="a") for i in range(5)), *(event(i + 0.5, PAM_DOVECOT, user="a") for i in range(5)),
         event(9, SUMMARY, user="a", count=5))
    assert score(s) == near(5.0)


def test_pam_lines_alone_are_claimed_by_the_summary():
    """auth_verbose = no: PAM's lines and the summaries; and PAM under Postfix's SASL."""
    s = scorer()
    feed(s, event(0, PAM, user="a"), event(1, PAM, user="b"), event(3, SUMMARY, user="a", count=2))
    assert score(s) == near(2.0)
    s = scorer()
    feed(s, event(0, PAM, user="a"), event(1, SASL), event(2, PAM_DOVECOT, user="a"))
    assert score(s) == near(1.0)


def test_a_postfix_disconnect_summary_adds_what_its_sasl_lines_did_not():
    s = scorer()
    feed(s, event(0, DISCONNECT, count=3))                           # only the summaries in the log
    assert score(s) == near(3.0)
    s = scorer()
    feed(s, event(0, SASL), event(1, SASL), event(2, DISCONNECT, count=2))
    assert score(s) == near(2.0)
    s = scorer()                                                     # and through Dovecot, auth_verbose
    feed(s, event(0, MISMATCH, user="x"), event(0.5, SASL), event(1, MISMATCH, user="x"), event(1.5, SASL),
         event(2, DISCONNECT, count=3))                              # one AUTH aborted: no SASL line
    assert score(s) == near(3.0)
    # a later connection's summary does not eat into the attempts counted before it
    feed(s, event(3, DISCONNECT, count=1))
    assert score(s) == near(4.0)


def test_unmarked_rules_count_every_line():
    s = Scorer(ScoringConfig(), tallies={})
    feed(s, event(0, MISMATCH, user="a"), event(5, SUMMARY, user="a", count=1))
    assert score(s) == near(2.0)
    with pytest.raises(ValueError, match="tally"):
        Scorer(ScoringConfig(), tallies={"dovecot/login-auth-failed": "twice"})


def test_the_scorer_knows_every_tally_mark_the_filters_may_give():
    Scorer(ScoringConfig(), tallies={f"f/{mark}": mark for mark in Tally})


def test_the_shipped_filters_carry_the_shipped_tallies():
    assert tallies(load_directory(config.SHIPPED_FILTERS)) == SHIPPED_TALLIES


def test_a_bad_tally_in_a_filter_file_names_the_rule(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text("""
[filter]
family = "postfix"
services = ["smtpd"]
keywords = ["SASL "]
[[rule]]
id = "one"
kind = "auth_failure"
tally = "twice"
pattern = 'SASL from \\[(?P<ip>[0-9.]+)\\]'
[[rule]]
id = "two"
kind = "auth_failure"
tally = "summary"
pattern = 'SASL again from \\[(?P<ip>[0-9.]+)\\]'
[[rule]]
id = "three"
kind = "unknown_user"
tally = "auth"
pattern = 'RCPT from \\[(?P<ip>[0-9.]+)\\]'
""")
    with pytest.raises(FilterError) as e:
        load_file(path)
    text = str(e.value)
    assert "rule[0] (one).tally: 'twice' is not one of auth, summary, sasl" in text
    assert "rule[1] (two).pattern: a summary" in text
    assert "rule[2] (three).tally: only an auth_failure rule" in text


# --- bursts ---

def test_spam_burst_per_client_address():
    s = scorer(spam_window=600.0, spam_limit=200)
    offences = feed(s, *(event(i * 2.0, ACCEPTED, ip="198.51.100.9") for i in range(200)))
    assert offences == []
    [o] = feed(s, event(400, ACCEPTED, ip="198.51.100.9"))
    assert (o.reason, o.target, o.score, o.user) == ("spam_burst", "198.51.100.9", 201.0, None)
    assert feed(s, event(401, ACCEPTED, ip="198.51.100.9")) == []     # once
    assert len(s) == 0                                                 # no score for a sender
    # Under the limit again as the window moves on; a second burst offends again.
    feed(s, event(1500, ACCEPTED, ip="198.51.100.9"))
    offences = feed(s, *(event(1500 + i, ACCEPTED, ip="198.51.100.9") for i in range(201)))
    assert [o.reason for o in offences] == ["spam_burst"]


def test_spread_out_mail_is_no_burst():
    s = scorer(spam_window=600.0, spam_limit=200)
    assert feed(s, *(event(i * 4.0, ACCEPTED, ip="198.51.100.9") for i in range(2000))) == []


def test_authenticated_mail_is_no_spam_burst_of_its_address():
    s = scorer(spam_limit=5, account_messages=1000)
    assert feed(s, *(event(i, ACCEPTED, ip="198.51.100.9", user=f"u{i}") for i in range(50))) == []


def test_harvest_counts_rejected_recipients():
    # weight 0: the score stays out of it, the detector alone decides
    weights = dict(ScoringConfig().weights) | {"unknown_user": 0.0, "relay_denied": 0.0}
    s = scorer(weights=tuple(weights.items()), harvest_window=600.0, harvest_limit=20)
    offences = feed(s, *(event(i * 10.0, RCPT if i % 2 else RELAY) for i in range(20)))
    assert offences == []
    [o] = feed(s, event(200, RCPT))
    assert (o.reason, o.score) == ("harvest", 21.0)
    assert o.rules == {"postfix/reject-unknown-user": 21}


def test_dictionary_counts_distinct_user_names():
    weights = dict(ScoringConfig().weights) | {"auth_failure": 0.0}
    s = scorer(weights=tuple(weights.items()), dictionary_window=3600.0, dictionary_limit=6)
    assert feed(s, *(event(i, SUMMARY, user="admin") for i in range(50))) == []   # one name, however often
    assert feed(s, *(event(100 + i, MISMATCH, user=f"user{i}") for i in range(5))) == []
    [o] = feed(s, event(200, SASL, user="postmaster"))
    assert (o.reason, o.score) == ("dictionary", 7.0)
    # names tried more than the window ago are forgotten
    s = scorer(weights=tuple(weights.items()), dictionary_window=3600.0, dictionary_limit=6)
    assert feed(s, *(event(i * 1000.0, MISMATCH, user=f"user{i}") for i in range(30))) == []


def test_account_offends_on_every_address_it_sent_from():
    s = scorer(account_window=3600.0, account_messages=100, account_recipients=300)
    homes = ["198.51.100.1", "198.51.100.2", "2001:db8:5:6::99"]
    offences = feed(s, *(event(i * 10.0, ACCEPTED, ip=homes[i % 3], user="alice") for i in range(100)))
    assert offences == []
    offences = feed(s, event(1000, ACCEPTED, ip=homes[0], user="alice"))
    assert sorted(o.target for o in offences) == ["198.51.100.1", "198.51.100.2", "2001:db8:5:6::/64"]
    assert {(o.reason, o.user, o.score) for o in offences} == {("account", "alice", 101.0)}
    # a new address while the account is still over: that one too, once
    [o] = feed(s, event(1001, ACCEPTED, ip="192.0.2.77", user="alice"))
    assert (o.target, o.user) == ("192.0.2.77", "alice")
    assert feed(s, event(1002, ACCEPTED, ip="192.0.2.77", user="alice")) == []
    # another account is counted apart
    assert feed(s, event(1003, ACCEPTED, ip=homes[0], user="bob")) == []


def test_account_recipients_limit():
    s = scorer(account_window=3600.0, account_messages=100, account_recipients=300)
    assert feed(s, *(event(i, ACCEPTED, ip="198.51.100.1", user="bob", count=50) for i in range(6))) == []
    [o] = feed(s, event(10, ACCEPTED, ip="198.51.100.1", user="bob", count=1))
    assert (o.reason, o.score, o.user, o.target) == ("account", 301.0, "bob", "198.51.100.1")


# --- sources ---

def test_ipv6_sources_are_their_prefix():
    s = scorer()
    offences = feed(s, *(event(i, ip=f"2001:db8:1:2::{i + 1:x}") for i in range(5)))
    assert [(o.reason, o.target) for o in offences] == [("score", "2001:db8:1:2::/64")]
    assert len(s) == 1
    feed(s, event(10, ip="2001:db8:1:3::1"))
    assert len(s) == 2
    s = scorer(ipv6_prefix=48)
    offences = feed(s, *(event(i, ip=f"2001:db8:1:{i:x}::1") for i in range(5)))
    assert [o.target for o in offences] == ["2001:db8:1::/48"]
    assert s.explain("2001:db8:1:ffff::1")["score"] == near(5.0)


def test_keys_keep_the_families_apart():
    keys = Keys(64)
    assert keys.key("0.0.0.1") != keys.key("::1")
    assert keys.target(keys.key("192.0.2.1")) == "192.0.2.1"
    assert keys.target(keys.key("2001:db8::1")) == "2001:db8::/64"
    assert Keys(128).target(Keys(128).key("2001:db8::1")) == "2001:db8::1"
    assert keys.parse("::ffff:192.0.2.1") == (keys.key("192.0.2.1"),) * 2
    assert keys.parse("::ffff:192.0.2.0/120") == keys.parse("192.0.2.0/24")   # as `parse_network` maps it
    low, high = keys.parse("192.0.2.0/24")
    assert (low, high) == (keys.key("192.0.2.0"), keys.key("192.0.2.255"))
    low, high = keys.parse("2001:db8::/48")
    assert low <= keys.key("2001:db8:0:ffff::1") <= high and not low <= keys.key("2001:db8:1::1") <= high
    with pytest.raises(ValueError, match="not an IP address or prefix"):
        keys.parse("mx.example.org")


# --- the table: bounded, lowest decayed first ---

def test_eviction_drops_the_lowest_decayed_scores_first():
    s = scorer(max_sources=3)
    feed(s, *(event(0, PREGREET, ip="192.0.2.1") for _ in range(4)))    # 4, a day ago
    feed(s, event(DAY - 60, PREGREET, ip="192.0.2.2"))                   # 1, a minute ago
    feed(s, event(DAY - 60, PREGREET, ip="192.0.2.3"), event(DAY - 60, PREGREET, ip="192.0.2.3"))
    assert len(s) == 3 and s.evictions == 0
    feed(s, event(DAY, ip="192.0.2.4"))
    assert len(s) == 3 and s.evictions == 1
    assert s.explain("192.0.2.1") is None           # 4 a day ago is 4/2^24 now: the least
    feed(s, event(DAY, ip="192.0.2.5"))
    assert s.explain("192.0.2.2") is None           # then the lowest
    assert s.explain("192.0.2.3") is not None and s.explain("192.0.2.4") is not None


def test_eviction_counts_the_slow_score_too():
    s = scorer(max_sources=2)
    feed(s, *(event(i * HOUR, ip="192.0.2.1") for i in range(3)))   # slow score, hours old
    feed(s, event(3 * HOUR, PREGREET, ip="192.0.2.2"))               # no slow score
    feed(s, event(3 * HOUR + 600, PREGREET, ip="192.0.2.3"))
    assert s.explain("192.0.2.1") is not None
    assert s.explain("192.0.2.2") is None


@settings(max_examples=60, deadline=None)
@given(cap=st.integers(1, 20),
       steps=st.lists(st.tuples(st.integers(0, 40), st.sampled_from([SASL, MISMATCH, SUMMARY, LOGIN, RCPT,
                                                                      PREGREET, ACCEPTED]),
                                st.floats(0, 5000)), max_size=300))
def test_tracked_sources_never_exceed_the_cap(cap, steps):
    s = scorer(max_sources=cap)
    t = 0.0
    for host, rule, gap in steps:
        t += gap
        ip = f"192.0.2.{host}" if host % 3 else f"2001:db8:{host:x}::1"
        s.feed(event(t, rule, ip=ip, user="u"))
        assert len(s) <= cap
        assert len(s.table.index) + len(s.table.free) == len(s.table.time)
    assert s.evictions >= 0


def test_a_flood_of_sources_evicts_in_batches():
    s = scorer(max_sources=5000)
    for i in range(20_000):
        s.feed(event(i * 0.01, ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"))
    assert len(s) <= 5000
    assert s.evictions >= 15_000
    # the newest are kept: the oldest had decayed the furthest
    assert s.explain("10.0.78.31") is not None        # i = 19999
    assert s.explain("10.0.0.0") is None


# --- forgive, explain ---

def test_forgive_resets_scores_and_windows():
    s = scorer(harvest_limit=3)
    offences = feed(s, *(event(i, RCPT) for i in range(5)))
    assert {o.reason for o in offences} == {"score", "harvest"}
    s.forgive(IP)
    assert s.explain(IP) is None and len(s) == 0
    offences = feed(s, *(event(10 + i, RCPT) for i in range(5)))
    assert {o.reason for o in offences} == {"score", "harvest"}      # offends afresh


def test_forgive_a_prefix_forgives_every_source_in_it():
    s = scorer()
    feed(s, *(event(0, RCPT, ip=ip) for ip in ("198.51.100.1", "198.51.100.2", "192.0.2.1", "2001:db8:1:2::1",
                                                "2001:db8:1:3::1", "2001:db8:2::1")))
    s.forgive("198.51.100.0/24")
    s.forgive("2001:db8:1::/48")
    assert len(s) == 2
    assert s.explain("192.0.2.1") is not None and s.explain("2001:db8:2::1") is not None
    s.forgive("2001:db8:2::/64")
    assert len(s) == 1
    with pytest.raises(ValueError):
        s.forgive("nowhere")


def test_forgive_takes_an_address_out_of_an_account_window():
    s = scorer(account_messages=10)
    feed(s, *(event(i, ACCEPTED, ip="198.51.100.1", user="alice") for i in range(8)))
    feed(s, *(event(10 + i, ACCEPTED, ip="198.51.100.2", user="alice") for i in range(3)))
    s.forgive("198.51.100.1")
    assert s.explain("198.51.100.1") is None
    assert s.explain("198.51.100.2")["windows"]["account"] == {"alice": 3}


def test_explain_tells_the_scores_and_rules():
    s = scorer()
    feed(s, event(0, MISMATCH, user="a"), event(0, MISMATCH, user="b"), event(1, SASL), event(2, PREGREET))
    info = s.explain(IP)
    assert info["target"] == IP
    assert info["score"] == near(3.0)       # the SASL line paired with an auth line
    assert info["forgivable"] == near(2.0)
    assert info["slow"] == near(2.0)
    assert info["rules"] == {"dovecot/auth-password-mismatch": 2, "postscreen/pregreet": 1}
    assert info["windows"]["dictionary"] == 2
    assert info["offended"] == []
    assert s.explain("192.0.2.99") is None
    with pytest.raises(ValueError, match="more than one scored address"):
        s.explain("203.0.113.0/24")


def test_replaying_the_same_events_gives_the_same_offences():
    events = [event(i * 7.0 % 5000, [SASL, MISMATCH, RCPT, PREGREET][i % 4], ip=f"192.0.2.{i % 50}",
                    user=f"u{i % 9}") for i in range(3000)]
    runs = []
    for _ in range(2):
        s = scorer(max_sources=20)
        runs.append(feed(s, *events))
    assert runs[0] == runs[1] and runs[0]


# --- configuration ---

def test_scoring_config_errors_name_key_and_value(tmp_path):
    path = tmp_path / "local.toml"
    path.write_text('[scoring]\nweights = { auth_failure = 2, login = 1 }\nhalf_life = 0\n'
                    'slow_kinds = ["auth_success"]\nipv6_prefix = 129\nspam_limit = "many"\n')
    with pytest.raises(config.ConfigError) as e:
        config.load([path], dropins=None)
    text = str(e.value)
    assert f"{path}: scoring.weights = " in text and "'login' is not a kind that scores" in text
    assert f"{path}: scoring.half_life = 0: expected a number of seconds above 0" in text
    assert "scoring.slow_kinds" in text and '"auth_success" is not a kind that scores' in text
    assert "scoring.ipv6_prefix = 129" in text
    assert 'scoring.spam_limit = "many": expected an integer' in text


def test_weights_left_out_keep_their_defaults(tmp_path):
    path = tmp_path / "local.toml"
    path.write_text("[scoring]\nweights = { protocol_abuse = 3 }\n")
    weights = dict(config.load([path], dropins=None).scoring.weights)
    assert weights["protocol_abuse"] == 3.0 and weights["auth_failure"] == 1.0
    assert set(weights) | {"auth_success", "message_accepted"} == {k.value for k in Kind}


def test_the_default_lines_hold_what_the_shipped_file_says():
    c = ScoringConfig()
    # five within ten minutes at their worst spacing reach the threshold; four at once never do
    assert 1 + 4 * 2 ** (-600 / c.half_life) >= c.threshold > 4
    # ten within a day at their worst spacing reach the slow threshold
    assert 1 + 9 * 2 ** (-DAY / c.slow_half_life) >= c.slow_threshold
    assert math.isclose(dict(c.weights)["auth_failure"], 1.0)


# --- the windows, against counting by hand ---

@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.integers(0, 3), st.sampled_from("abcd")), max_size=80),
       st.integers(1, 4))
def test_windows_count_what_counting_by_hand_does(steps, limit):
    """Counts over the last 100 s; a source is reported going over, then not until back at the limit."""
    from adaptive.scoring.bursts import Burst, Distinct
    burst, names = Burst(100.0, limit, 10_000), Distinct(100.0, limit, 10_000)
    seen: list[tuple[float, int, str]] = []
    reported: dict[str, set[int]] = {"burst": set(), "names": set()}
    t = 0.0
    for gap, key, item in steps:
        t += gap
        live = [(k, i) for u, k, i in seen if u > t - 100.0]
        for k in range(4):   # what went out of the window may have brought a source back down
            if sum(1 for kk, _ in live if kk == k) <= limit:
                reported["burst"].discard(k)
            if len({i for kk, i in live if kk == k}) <= limit:
                reported["names"].discard(k)
        seen.append((t, key, item))
        live.append((key, item))
        count = sum(1 for k, _ in live if k == key)
        different = len({i for k, i in live if k == key})
        expect = count if count > limit and key not in reported["burst"] else 0
        assert burst.add(t, key) == expect and burst.count(key) == count
        if expect:
            reported["burst"].add(key)
        expect = different if different > limit and key not in reported["names"] else 0
        assert names.add(t, key, item) == expect and names.count(key) == different
        if expect:
            reported["names"].add(key)


def test_forgive_keeps_the_attempts_already_counted():
    """Unbanned mid-connection, a guesser's held connections close and Dovecot writes their summaries
    then: the attempts their per-attempt lines counted must not count again."""
    from adaptive.events import Event, Kind
    s = scorer()
    t0 = 1_800_000_000.0

    def attempt(t):
        return Event(t0 + t, "dovecot", "dovecot", "auth-password-mismatch", Kind.AUTH_FAILURE, IP, "bob", None, 1)

    def summary(t):
        return Event(t0 + t, "dovecot", "dovecot", "login-auth-failed", Kind.AUTH_FAILURE, IP, "bob", None, 1)

    offences = feed(s, *(attempt(i) for i in range(5)))
    assert [o.reason for o in offences] == ["score"]
    s.forgive(IP)                                            # the admin unbans it
    assert feed(s, *(summary(10 + i) for i in range(5))) == []
    assert s.explain(IP)["score"] == 0.0


def test_forgive_keeps_the_smtp_attempts_already_counted():
    """Banned, a guesser's SMTP connection waits out smtpd's timeout; unbanned before that, its
    `disconnect ... auth=0/5` must not count the five attempts its SASL lines counted."""
    s = scorer()
    offences = feed(s, *(event(i) for i in range(5)))
    assert [o.reason for o in offences] == ["score"]
    s.forgive(IP)
    assert feed(s, event(300, DISCONNECT, count=5)) == []
    assert s.explain(IP)["score"] == 0.0


def test_a_split_prefix_scores_each_of_its_addresses_alone():
    import ipaddress
    s = scorer()
    s.split_around([ipaddress.ip_network("2001:db8:1:2::25/128"), ipaddress.ip_network("198.51.100.7/32"),
                    ipaddress.ip_network("2001:db8:9::/48")])        # only narrower than a source splits
    offences = feed(s, *(event(i, ip="2001:db8:1:2::99") for i in range(5)),
                    *(event(10 + i, ip="2001:db8:1:2::98") for i in range(4)),
                    *(event(20 + i, ip="2001:db8:9::1") for i in range(5)))
    assert [o.target for o in offences] == ["2001:db8:1:2::99", "2001:db8:9::/64"]
    assert s.explain("2001:db8:1:2::98")["score"] == pytest.approx(4.0, abs=0.05)
    assert s.explain("2001:db8:1:2::99")["target"] == "2001:db8:1:2::99"
    # forgiving the prefix, or the address, reaches the addresses scored alone
    s.forgive("2001:db8:1::/48")
    assert s.explain("2001:db8:1:2::99")["score"] == s.explain("2001:db8:1:2::98")["score"] == 0.0
    assert s.explain("2001:db8:9::1")["score"] > 4.5


def test_a_snapshot_of_another_scorer_version_is_not_restored():
    """A scorer pickled before its table gained columns would fail on its first tally."""
    s = scorer()
    feed(s, event(0))
    assert Scorer.restore(s.snapshot(), s.config) is not None
    s.version = 1
    assert Scorer.restore(s.snapshot(), s.config) is None
