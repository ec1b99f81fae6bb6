"""The shipped filter files: their own samples, coverage, injection safety, hostile input, bad files.

Every sample is run through the real engine, one engine per sample, so a sample shows exactly what
`adaptive check` would make of that line (keywords, prefix, dispatch, ignores, rule order).
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest
from adaptive.config import SHIPPED_FILTERS
from adaptive.events import Event, Kind
from adaptive.filters.engine import Engine, _trie
from adaptive.filters.prefix import YearGuess, parse
from adaptive.filters.rules import Filter, FilterError, Sample, load_directory, load_file
from hypothesis import given
from hypothesis import strategies as st

FILTER_DIR = SHIPPED_FILTERS
FILTERS = {f.name: f for f in load_directory(FILTER_DIR)}
# Samples are dated Nov 24; a reference the next day places classic timestamps without a year.
REFERENCE = time.mktime((2025, 11, 25, 12, 0, 0, 0, 0, -1))


def engine_for(*filters: Filter) -> Engine:
    return Engine(list(filters), YearGuess(REFERENCE))


def feed(engine: Engine, *lines: str) -> list[Event]:
    chunk = "".join(line + "\n" for line in lines).encode()
    return [event for _, event in engine.scan(chunk)]


def sample_id(flt: Filter, index: int, sample: Sample) -> str:
    what = sample.rule or (f"ignore={sample.ignore}" if sample.ignore else "no-match")
    return f"{flt.name}[{index}]-{what}"


SAMPLES = [pytest.param(flt, sample, id=sample_id(flt, i, sample))
           for flt in FILTERS.values() for i, sample in enumerate(flt.samples)]


@pytest.mark.parametrize("flt, sample", SAMPLES)
def test_sample(flt: Filter, sample: Sample) -> None:
    engine = engine_for(flt)
    feed(engine, *sample.before)
    matched_before, unjoined_before = engine.counts.matched.copy(), engine.counts.unjoined
    events = feed(engine, sample.line)
    matched = engine.counts.matched - matched_before
    if sample.rule is None:
        assert events == [], f"must not match, got {events}"
        # The only rule allowed to match is a recall rule that found nothing to join.
        recalls = {(flt.name, r.id) for r in flt.rules if r.recall}
        assert set(matched) <= recalls, f"must not match, but {dict(matched)} did"
        assert engine.counts.unjoined - unjoined_before == sum(matched.values())
        if sample.ignore is not None:
            assert engine.counts.ignored[flt.name, sample.ignore] == 1, (
                f"ignore {sample.ignore!r} did not catch it; ignored: {dict(engine.counts.ignored)}")
        return
    assert dict(matched) == {(flt.name, sample.rule): 1}, (
        f"expected rule {sample.rule!r} to match; matched: {dict(matched)}, "
        f"ignored: {dict(engine.counts.ignored)}, unparsable: {engine.counts.unparsable}")
    rule = next(r for r in flt.rules if r.id == sample.rule)
    if rule.kinds:
        assert [e.kind for e in events] == list(rule.kinds)
        assert {(e.rule, e.ip, e.user) for e in events} == {(sample.rule, sample.ip, sample.user)}
    else:
        # A rule that only remembers gives no event: check what it would remember.
        assert events == []
        line = parse(sample.line, YearGuess(REFERENCE))
        m = rule.pattern.fullmatch(line.message)
        ip = ipaddress.ip_address(m["ip"])
        assert str(getattr(ip, "ipv4_mapped", None) or ip) == sample.ip
        assert (m.groupdict().get("user") or None) == sample.user


@pytest.mark.parametrize("flt", FILTERS.values(), ids=list(FILTERS))
def test_every_rule_and_ignore_has_a_sample(flt: Filter) -> None:
    rules = {s.rule for s in flt.samples if s.rule}
    ignores = {s.ignore for s in flt.samples if s.ignore}
    assert [r.id for r in flt.rules if r.id not in rules] == [], "rules without a sample"
    assert [g.id for g in flt.ignores if g.id not in ignores] == [], "ignores without a sample"


def test_every_kind_is_produced_by_some_rule() -> None:
    produced = {kind for flt in FILTERS.values() for rule in flt.rules for kind in rule.kinds}
    assert set(Kind) - produced == set()


def test_the_shipped_files() -> None:
    assert set(FILTERS) == {"postfix", "postscreen", "dovecot"}


def test_message_accepted_counts_recipients() -> None:
    engine = engine_for(FILTERS["postfix"])
    events = feed(
        engine,
        "Nov 24 10:09:01 mx postfix/submission/smtpd[5801]: 4D8F91A0C3: client=laptop.example.net"
        "[198.51.100.90], sasl_method=PLAIN, sasl_username=alice@example.com",
        "Nov 24 10:09:05 mx postfix/qmgr[900]: 4D8F91A0C3: from=<alice@example.com>, size=2345, "
        "nrcpt=17 (queue active)",
    )
    assert [(e.kind, e.ip, e.user, e.count) for e in events] == [
        (Kind.AUTH_SUCCESS, "198.51.100.90", "alice@example.com", 1),
        (Kind.MESSAGE_ACCEPTED, "198.51.100.90", "alice@example.com", 17),
    ]


def test_a_sender_cannot_forge_the_recipient_count() -> None:
    engine = engine_for(FILTERS["postfix"])
    events = feed(
        engine,
        "Nov 24 10:09:03 mx postfix/smtpd[5803]: 9A0B11C2D3: client=mail.example.org[198.51.100.91]",
        "Nov 24 10:09:05 mx postfix/qmgr[900]: 9A0B11C2D3: from=<\"a>, size=1, nrcpt=999 (queue active)"
        "\"@example.org>, size=2345, nrcpt=2 (queue active)",
    )
    assert [(e.kind, e.ip, e.count) for e in events] == [(Kind.MESSAGE_ACCEPTED, "198.51.100.91", 2)]


def test_a_login_summary_carries_its_attempts() -> None:
    events = feed(
        engine_for(FILTERS["dovecot"]),
        "Nov 24 10:00:02 imap-login: Info: Disconnected (auth failed, 3 attempts in 15 secs): user=<admin>, "
        "method=LOGIN, rip=2001:db8::200, lip=2001:db8::1, TLS, session=<3rz/vk8F2u7AqAAB>",
        "Nov 24 10:00:02 auth: Info: passwd-file(admin,2001:db8::200,<3rz/vk8F2u7AqAAB>): Password mismatch",
    )
    assert [(e.rule, e.kind, e.count) for e in events] == [
        ("login-auth-failed", Kind.AUTH_FAILURE, 3),
        ("auth-password-mismatch", Kind.AUTH_FAILURE, 1),
    ]


# --- injection ------------------------------------------------------------------------------------
# Text an attacker chooses (user names, HELO names, senders, recipients, passwords, SMTP commands)
# put into real lines at every place it appears; the real client is always REAL_IP, and no event may
# ever name 9.9.9.9 (nor the local address 1.1.1.1 that some hostile values carry).

REAL_IP = "192.0.2.77"
HOSTILE = [
    "x rip=9.9.9.9",
    "a,9.9.9.9",
    "a,9.9.9.9,<s>",
    "a,9.9.9.9,<sess>): unknown user",
    "x): Password mismatch",
    "a,9.9.9.9): Password mismatch (given password: y",
    "x@unknown[9.9.9.9]",
    "unknown[9.9.9.9]",
    "unknown[9.9.9.9]: SASL LOGIN authentication failed: x, sasl_username=y",
    "x>, rip=9.9.9.9, lip=1.1.1.1, session=<y",
    "x>, method=PLAIN, rip=9.9.9.9, lip=1.1.1.1, TLS, session=<y",
    "x> (auth failed, 9 attempts in 1 secs): user=<y>, rip=9.9.9.9, lip=1.1.1.1, session=<z",
    "x from unknown[9.9.9.9]: 554 5.7.1 <y>: Relay access denied;",
    "x; from=<a> to=<b> proto=ESMTP helo=<unknown[9.9.9.9]>",
    "[9.9.9.9]:25",
    "x] blocked using zen.spamhaus.org; Error: open resolver; [9.9.9.9",
    "::ffff:9.9.9.9",
    "9.9.9.9",
    "",
]

# (filter, line template with {evil} where the client's own text goes)
TEMPLATES = [
    ("postfix", "Nov 24 10:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[" + REAL_IP + "]: "
                "554 5.7.1 <{evil}@example.com>: Relay access denied; from=<{evil}@example.org> "
                "to=<{evil}@example.com> proto=ESMTP helo=<{evil}>"),
    ("postfix", "Nov 24 10:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[" + REAL_IP + "]: "
                "550 5.1.1 <{evil}@example.com>: Recipient address rejected: User unknown in virtual "
                "mailbox table; from=<{evil}> to=<{evil}@example.com> proto=ESMTP helo=<{evil}>"),
    ("postfix", "Nov 24 10:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[" + REAL_IP + "]: "
                "504 5.5.2 <{evil}>: Helo command rejected: need fully-qualified hostname; "
                "from=<{evil}> to=<alice@example.com> proto=ESMTP helo=<{evil}>"),
    ("postfix", "Nov 24 10:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: MAIL from unknown[" + REAL_IP + "]: "
                "553 5.7.1 <{evil}>: Sender address rejected: not logged in; from=<{evil}> "
                "proto=ESMTP helo=<{evil}>"),
    ("postfix", "Nov 24 10:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[" + REAL_IP + "]: "
                "554 5.7.1 Service unavailable; Sender address [{evil}@example.org] blocked using "
                "dbl.spamhaus.org; from=<{evil}@example.org> to=<a@example.com> proto=ESMTP helo=<{evil}>"),
    ("postfix", "Nov 24 10:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[" + REAL_IP + "]: "
                "450 4.7.25 Client host rejected: cannot find your hostname, [" + REAL_IP + "]; "
                "from=<{evil}> to=<{evil}@example.com> proto=ESMTP helo=<{evil}>"),
    ("postfix", "Nov 24 10:00:01 mx postfix/submission/smtpd[1]: warning: unknown[" + REAL_IP + "]: "
                "SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={evil}"),
    ("postfix", "Nov 24 10:00:01 mx postfix/smtpd[1]: warning: non-SMTP command from unknown["
                + REAL_IP + "]: {evil}"),
    ("postfix", "Nov 24 10:00:01 mx postfix/smtpd[1]: improper command pipelining after EHLO from unknown["
                + REAL_IP + "]: MAIL FROM:<{evil}>\\r\\n"),
    ("postfix", "Nov 24 10:00:01 mx postfix/smtpd[1]: warning: Illegal address syntax from unknown["
                + REAL_IP + "] in RCPT command: <{evil}>"),
    ("postfix", "Nov 24 10:00:01 mx postfix/cleanup[1]: 4D8F91A0C3: milter-reject: END-OF-MESSAGE from "
                "unknown[" + REAL_IP + "]: 5.7.1 Spam message rejected; from=<{evil}> to=<{evil}> "
                "proto=ESMTP helo=<{evil}>"),
    ("postfix", "Nov 24 10:00:01 mx postfix/submission/smtpd[1]: 4D8F91A0C3: client=unknown[" + REAL_IP
                + "], sasl_method=PLAIN, sasl_username={evil}"),
    ("postscreen", "Nov 24 10:00:01 mx postfix/postscreen[1]: PREGREET 11 after 0.1 from [" + REAL_IP
                   + "]:4711: EHLO {evil}\\r\\n"),
    ("postscreen", "Nov 24 10:00:01 mx postfix/postscreen[1]: NON-SMTP COMMAND from [" + REAL_IP
                   + "]:4711 after CONNECT: {evil}"),
    ("postscreen", "Nov 24 10:00:01 mx postfix/postscreen[1]: COMMAND PIPELINING from [" + REAL_IP
                   + "]:4711 after EHLO: MAIL FROM:<{evil}>\\r\\n"),
    ("dovecot", "Nov 24 10:00:01 mx dovecot: imap-login: Disconnected: Connection closed (auth failed, "
                "1 attempts in 2 secs): user=<{evil}>, method=PLAIN, rip=" + REAL_IP + ", lip=198.51.100.1, "
                "TLS, session=<Hx7bAbCdEfGhIjKl>"),
    ("dovecot", "Nov 24 10:00:01 imap-login: Info: Aborted login (auth failed, 3 attempts in 10 secs): "
                "user=<{evil}>, method=LOGIN, rip=" + REAL_IP + ", lip=198.51.100.1, session=<Hx7bAbCdEfGhIjKl>"),
    ("dovecot", "Nov 24 10:00:01 mx dovecot: pop3-login: Login aborted: Connection closed (auth failed, 1 "
                "attempts in 2 secs) (auth_failed): user=<{evil}>, method=PLAIN, rip=" + REAL_IP
                + ", lip=198.51.100.1, session=<Hx7bAbCdEfGhIjKl>"),
    ("dovecot", "Nov 24 10:00:01 mx dovecot: imap-login: Disconnected (no auth attempts in 0 secs): "
                "user=<{evil}>, rip=" + REAL_IP + ", lip=198.51.100.1, session=<Hx7bAbCdEfGhIjKl>"),
    ("dovecot", "Nov 24 10:00:01 mx dovecot: pop3-login: Disconnected (tried to use disallowed plaintext "
                "auth): user=<{evil}>, rip=" + REAL_IP + ", lip=198.51.100.1, session=<Hx7bAbCdEfGhIjKl>"),
    ("dovecot", "Nov 24 10:00:01 mx dovecot: imap-login: Login: user=<{evil}>, method=PLAIN, rip=" + REAL_IP
                + ", lip=198.51.100.1, mpid=4242, TLS, session=<Hx7bAbCdEfGhIjKl>"),
    ("dovecot", "Nov 24 10:00:01 mx dovecot: auth: passwd-file({evil}," + REAL_IP
                + ",<Hx7bAbCdEfGhIjKl>): unknown user"),
    ("dovecot", "Nov 24 10:00:01 auth-worker(42): Info: conn unix:auth-worker (pid=40,uid=109): "
                "auth-worker<3>: sql({evil}," + REAL_IP + ",<Hx7bAbCdEfGhIjKl>): Password mismatch"),
    ("dovecot", "Nov 24 10:00:01 mx dovecot: auth-worker(42): pam({evil}," + REAL_IP
                + ",<Hx7bAbCdEfGhIjKl>): pam_authenticate() failed: Authentication failure (Password mismatch?)"),
    ("dovecot", "Nov 24 10:00:01 mx dovecot: auth: passwd-file(alice," + REAL_IP
                + ",<Hx7bAbCdEfGhIjKl>): Password mismatch (given password: {evil})"),
    ("dovecot", "Nov 24 10:00:01 mx dovecot: auth: passwd-file({evil}," + REAL_IP
                + ",<Hx7bAbCdEfGhIjKl>): Password mismatch (given password: {evil})"),
]


@pytest.mark.parametrize("name, template", TEMPLATES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TEMPLATES)])
def test_template_matches_with_a_plain_value(name: str, template: str) -> None:
    """Without this, the injection test below could pass on templates that match nothing."""
    events = feed(engine_for(FILTERS[name]), template.replace("{evil}", "alice"))
    assert events and {e.ip for e in events} == {REAL_IP}


@pytest.mark.parametrize("evil", HOSTILE)
@pytest.mark.parametrize("name, template", TEMPLATES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TEMPLATES)])
def test_injection(name: str, template: str, evil: str) -> None:
    engine = engine_for(*FILTERS.values())
    events = feed(engine, template.replace("{evil}", evil))
    assert {e.ip for e in events} <= {REAL_IP}, events


def test_injection_through_the_helo_of_a_client_with_a_name() -> None:
    engine = engine_for(*FILTERS.values())
    events = feed(
        engine,
        "Nov 24 10:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[9.9.9.9]x[" + REAL_IP
        + "]: 554 5.7.1 <a@example.com>: Relay access denied; from=<a> to=<b> proto=ESMTP helo=<h>",
    )
    assert events == []


# --- hostile input --------------------------------------------------------------------------------

PREFIX = b"Nov 24 10:00:01 mx postfix/smtpd[1]: "


def test_invalid_utf8_and_nul_bytes() -> None:
    engine = engine_for(*FILTERS.values())
    chunk = (
        PREFIX + b"warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: \xff\xfe, "
        b"sasl_username=\xc3\x28ad\x00min\n"
        + PREFIX + b"NOQUEUE: reject: RCPT from unknown[192.0.2.2]: 554 5.7.1 <\x00\xff@x>: Relay access "
        b"denied; from=<\x80> to=<a@b> proto=ESMTP helo=<\x00>\n"
        + b"\x00\x00reject: \xff\xff\n"
    )
    events = [e for _, e in engine.scan(chunk)]
    assert [(e.ip, e.kind) for e in events] == [("192.0.2.1", Kind.AUTH_FAILURE),
                                                ("192.0.2.2", Kind.RELAY_DENIED)]
    assert "\x00" in events[0].user
    assert engine.counts.lines == 3
    assert engine.counts.unparsable == 1


def test_a_huge_line_counts_for_the_address_its_prefix_holds() -> None:
    # Skipped whole, a 16 KB line evaded detection: read to max_line, its address before the garbage counts.
    engine = engine_for(*FILTERS.values())
    huge = PREFIX + b"warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: " + b"reject: " * 131072
    assert len(huge) > 1_000_000
    chunk = huge + b"\n" + PREFIX + b"lost connection after AUTH from unknown[192.0.2.3]\n"
    started = time.perf_counter()
    events = engine.scan(chunk)
    assert time.perf_counter() - started < 1.0
    assert [(offset, e.ip, e.kind) for offset, e in events] == [(0, "192.0.2.1", Kind.AUTH_FAILURE),
                                                                (len(huge) + 1, "192.0.2.3", Kind.LOST_CONNECTION)]
    assert engine.counts.oversize == 1
    assert engine.counts.unparsable == 0


FORGED = b">, method=PLAIN, rip=9.9.9.9, lip=198.51.100.1, TLS, session=<AbCdEfGhIjKlMnOp>"


@pytest.mark.parametrize("cut_at", [1024, 2048, 8096, None])
def test_a_user_name_that_forges_the_address_frames_nobody_when_the_line_is_cut(cut_at) -> None:
    # Padded so that the logger's cut falls just after the forged fields, the line read as one about 9.9.9.9.
    engine = engine_for(*FILTERS.values())
    head = (b"Nov 24 10:00:01 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): "
            b"user=<")
    tail = b", method=PLAIN, rip=192.0.2.66, lip=198.51.100.1, TLS, session=<Hx7bAbCdEfGhIjKl>"
    pad = b"a" * ((cut_at or 16384) - len(head) - len(FORGED))
    line = head + pad + FORGED
    if cut_at is None:
        line += b">" + tail           # over max_line: read to its first 16,384 bytes, so cut here too
    else:
        assert len(line) == cut_at    # what the logger kept of the whole line
    assert [e.ip for _, e in engine.scan(line + b"\n")] == []
    assert engine.counts.cut == 1
    # Whole and short, the same forgery leaves the real address, as before.
    whole = head + b"eve" + FORGED + b">" + tail
    assert [e.ip for _, e in engine.scan(whole + b"\n")] == ["192.0.2.66"]


def test_a_huge_line_without_a_prefix_is_unparsable() -> None:
    engine = engine_for(*FILTERS.values())
    assert engine.scan(b"authentication failed " * 50000 + b"\n") == []
    assert (engine.counts.unparsable, engine.counts.oversize) == (1, 0)


def test_a_prefix_with_nothing_after_it() -> None:
    engine = engine_for(*FILTERS.values())
    chunk = (PREFIX + b"\n" + PREFIX + b"reject: \n" + b"Nov 24 10:00:01 mx dovecot: auth: unknown user\n"
             + b"Nov 24 10:00:01 x: reject: \n")
    assert engine.scan(chunk) == []
    assert engine.counts.lines == 4
    # the last has a timestamp and a keyword, but neither host and tag nor Dovecot's process and level
    assert engine.counts.unparsable == 1


def test_lines_that_are_only_a_keyword() -> None:
    engine = engine_for(*FILTERS.values())
    keywords = sorted({k for f in FILTERS.values() for k in f.keywords})
    chunk = b"".join(k.encode() + b"\n" for k in keywords)
    assert engine.scan(chunk) == []
    assert engine.counts.lines == len(keywords)
    assert engine.counts.unparsable == len(keywords)


def test_no_rule_backtracks_catastrophically() -> None:
    """Every pattern against long messages built from its own fragments, near the engine's limit."""
    pieces = [
        "a" * 40, " ", ",", ", ", ">, ", "<", ">", "(", ")", "): ", "[", "]", "]:", "user=<",
        ">, rip=192.0.2.1, lip=192.0.2.2, ", ", session=<", "rip=1.1.1.1", ", sasl_username=",
        " from unknown[192.0.2.1]", ": 554 5.7.1 <", ">: Recipient address rejected: ", "said: 4",
        " (auth failed, 1 attempts in 2 secs): user=<", "passwd-file(", ",192.0.2.1", ",<abc>",
        "; from=<", " blocked using ", "(queue active)", ", size=1, nrcpt=1", "1.2.3.4",
    ]
    budget = 16000
    messages = [(p * (budget // len(p) + 1))[:budget] for p in pieces]
    messages += [("".join(pieces) * (budget // len("".join(pieces)) + 1))[:budget]]
    heads = ["", "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <",
             "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: ",
             "Disconnected: ", "Login: user=<", "passwd-file(", "4D8F91A0C3: from=<",
             "4D8F91A0C3: client=unknown[192.0.2.1], sasl_method=PLAIN, sasl_username="]
    patterns = [p.pattern for f in FILTERS.values() for p in (*f.rules, *f.ignores)]
    started = time.perf_counter()
    for head in heads:
        for message in messages:
            text = head + message[:budget - len(head)]
            for pattern in patterns:
                pattern.fullmatch(text)
    assert time.perf_counter() - started < 5.0


# --- broken filter files --------------------------------------------------------------------------

GOOD_HEAD = """
[filter]
family = "postfix"
services = ["smtpd"]
keywords = ["lost connection after"]
"""


@pytest.mark.parametrize("body, rule_id", [
    ("""[[rule]]
id = "bad-regex"
kind = "lost_connection"
pattern = 'lost connection after (?P<ip>[0-9.]+'
""", "bad-regex"),
    ("""[[rule]]
id = "bad-kind"
kind = "lost_conection"
pattern = 'lost connection after \\S+ from \\S+\\[(?P<ip>[0-9.]+)\\]'
""", "bad-kind"),
    ("""[[rule]]
id = "no-ip"
kind = "lost_connection"
pattern = 'lost connection after \\S+ from \\S+'
""", "no-ip"),
    ("""[[rule]]
id = "fine"
kind = "lost_connection"
pattern = 'lost connection after \\S+ from \\S+\\[(?P<ip>[0-9.]+)\\]'

[[sample]]
line = "Nov 24 10:00:01 mx postfix/smtpd[1]: lost connection after AUTH from unknown[192.0.2.1]"
rule = "no-such-rule"
ip = "192.0.2.1"
""", "no-such-rule"),
    ("""[[rule]]
id = "holds-alone"
kind = "lost_connection"
holds = [" after AUTH"]
pattern = 'lost connection after \\S+ from \\S+\\[(?P<ip>[0-9.]+)\\]'
""", "holds-alone"),
])
def test_a_broken_filter_file_names_the_file_and_the_rule(tmp_path: Path, body: str, rule_id: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(GOOD_HEAD + body)
    with pytest.raises(FilterError) as caught:
        load_file(path)
    assert str(path) in str(caught.value)
    assert rule_id in str(caught.value)
    with pytest.raises(FilterError) as caught:
        load_directory(tmp_path)
    assert str(path) in str(caught.value) and rule_id in str(caught.value)



@given(st.sets(st.text("ab: ", min_size=1, max_size=4), min_size=1, max_size=8),
       st.text("ab: \n", max_size=40))
def test_the_keyword_trie_finds_what_a_longest_first_alternation_finds(words, text):
    import re
    flat = re.compile(b"|".join(re.escape(w.encode()) for w in sorted(words, key=len, reverse=True)))
    trie = re.compile(_trie({w.encode(): b"" for w in words}))
    data = text.encode()
    assert [m.group() for m in trie.finditer(data)] == [m.group() for m in flat.finditer(data)]


def test_a_rule_that_names_what_its_lines_hold_is_tried_on_those_only(tmp_path: Path) -> None:
    (tmp_path / "f.toml").write_text(GOOD_HEAD + """
[[rule]]
id = "after-auth"
keywords = ["lost connection after"]
holds = [" AUTH "]
kind = "lost_connection"
pattern = 'lost connection after \\S+ from \\S+\\[(?P<ip>[0-9.]+)\\]'
""")
    engine = Engine(load_directory(tmp_path), YearGuess(1.8e9))
    events = engine.scan(b"Nov 24 10:00:01 mx postfix/smtpd[1]: lost connection after AUTH from a[192.0.2.1]\n"
                         b"Nov 24 10:00:01 mx postfix/smtpd[1]: lost connection after RCPT from a[192.0.2.2]\n")
    assert [e.ip for _, e in events] == ["192.0.2.1"]
    # the search passed over the second line (whose pattern alone would match): the keyword, not the text
