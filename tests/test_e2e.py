"""End to end: real Postfix and Dovecot in a network namespace, real clients (smtplib, imaplib, raw
sockets) attacking from a peer namespace, adaptive following the servers' own logs and banning in the
kernel. One scene serves the whole module (`tests/scene.py`); each test plays its clients from their own
/24 and /48, so no test's bans reach another's.

What is proved: guessing over IMAP, IMAPS and SMTP AUTH, harvesting, relay probing and spam bursts get
their source banned from every port; a compromised account gets every address it sent from banned and
is named; a legitimate user, an allowlisted address and an address that a crafted user name points at
are never banned; a connection flood is cut by the kernel's meter and counted in /metrics; outbound
SMTP goes to the relay only; `list`, `explain` and `unban` work on the scene.

Guesses are made at once, in threads: Dovecot delays each failure from an address more than the last
and Postfix gives up on its auth server after 10 s.

Two releases of the servers: the host's (Debian 12: Postfix 3.7, Dovecot 2.3), scene id "debian12", and
Debian 13's (Postfix 3.10, Dovecot 2.4, run chrooted in the root `debroot` caches), "debian13". The
tests marked `releases` run against both; the others against Debian 12's only. `-k "not debian13"`
leaves Debian 13 out. While the Debian 13 scene runs, its servers' logs are copied to LINES (the real
2.4 and 3.10 lines the filters are checked against).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

import debroot
from netns import connect, missing, wait_for
from scene import (
    ACCOUNT_MESSAGES,
    ALLOWLISTED,
    DOMAIN,
    ELSEWHERE4,
    MAIL4,
    RATE,
    RELAY4,
    SPAM_LIMIT,
    USERS,
    Scene,
    end_flood,
    flood,
    imap_login,
    server_for,
    smtp_login,
    smtp_send,
    target,
    together,
)

_missing = missing("postfix", "dovecot", "openssl")
if _missing:
    print(f"test_e2e: skipped: {_missing}")
pytestmark = pytest.mark.skipif(bool(_missing), reason=_missing)

ALICE, BOB, CAROL = "alice", "bob", "carol"
ROOTS = {"debian12": None, "debian13": "trixie"}     # scene id -> debroot's suite (None: the host's servers)
LINES = Path(os.environ.get("ADAPTIVE_TRIXIE_LINES", "/tmp/trixie-lines"))
releases = pytest.mark.releases                     # this test runs against Debian 13's servers too


def pytest_generate_tests(metafunc):
    if "scene" in metafunc.fixturenames:
        ids = list(ROOTS) if metafunc.definition.get_closest_marker("releases") else ["debian12"]
        metafunc.parametrize("scene", ids, indirect=True, scope="module")


@pytest.fixture(scope="module")
def scene(request, tmp_path_factory):
    suite = ROOTS[request.param]
    root = None
    if suite is not None:
        if why := debroot.missing(suite):
            print(f"test_e2e[{request.param}]: skipped: {why}")
            pytest.skip(why)
        root = debroot.root(suite)
    s = Scene(root=root)
    s.up()
    try:
        yield s
    finally:
        s.down()
        # The logs outlive the scene, in pytest's own temporary directory, for a failure's post-mortem.
        kept = tmp_path_factory.mktemp(f"scene-{request.param}")
        for sub in ("log", "run"):
            shutil.copytree(s.dir / sub, kept / sub, dirs_exist_ok=True)
        if suite is not None:
            LINES.mkdir(parents=True, exist_ok=True)
            for log in (s.dovecot_log, s.postfix_log):
                shutil.copyfile(log, LINES / log.name)
        shutil.rmtree(s.dir, ignore_errors=True)


def never_banned(scene: Scene, address: str) -> None:
    """Once adaptive has read everything the servers logged: no ban, and the kernel lets it through."""
    assert scene.caught_up(), scene.logs()
    assert target(address) not in scene.bans(), scene.logs()
    assert scene.reaches(address, 143), f"{address} cannot reach 143\n{scene.logs()}"


def guesses(source: str, user: str = ALICE, count: int = 6, ports: tuple[int, ...] = (143,)) -> list:
    """`count` wrong IMAP passwords for `user`, spread over `ports`, as calls for `together`."""
    server = server_for(source)
    return [(imap_login, (source, server, user, f"guess-{i}", ports[i % len(ports)])) for i in range(count)]


# --- password guessing ---

@pytest.mark.parametrize("family", [4, 6])
@releases
def test_imap_and_imaps_guessing_is_banned_from_143_993_and_25(scene, family):
    guesser = scene.client(f"IMAP/IMAPS guesser, IPv{family}").address(family)
    results = scene.cli.call(together, guesses(guesser, count=6, ports=(143, 993)), timeout=90)
    assert results.count("failed") >= 5, results
    ban = scene.wait_banned(guesser)
    assert ban["reason"] == "score" and ban["origin"] == "automatic"
    for port in (143, 993, 25):
        assert scene.dropped(guesser, port), f"{guesser} still reaches {port}"


@releases
def test_smtp_auth_guessing_on_587_is_banned(scene):
    guesser = scene.client("SMTP AUTH guesser").v4
    calls = [(smtp_login, (guesser, MAIL4, BOB, f"guess-{i}")) for i in range(6)]
    results = scene.cli.call(together, calls, timeout=90)
    assert results.count("failed") >= 5, results
    assert scene.wait_banned(guesser)["reason"] == "score"
    assert scene.dropped(guesser, 587) and scene.dropped(guesser, 25)


@releases
def test_guessing_is_banned_with_auth_verbose_off_too(scene):
    # Dovecot then logs no line per attempt, only one per connection when it ends.
    guesser = scene.client("IMAP guesser, auth_verbose = no").v6
    scene.restart_dovecot(auth_verbose=False)
    try:
        results = scene.cli.call(together, guesses(guesser, count=6), timeout=90)
    finally:
        scene.restart_dovecot(auth_verbose=True)
    assert results.count("failed") >= 5, results
    scene.wait_banned(guesser)
    assert scene.dropped(guesser, 143)


# --- SMTP abuse on 25 ---

@releases
def test_recipient_harvesting_on_25_is_banned(scene):
    harvester = scene.client("recipient harvester").v6
    unknown = [f"nobody{i}@{DOMAIN}" for i in range(5)]      # the fifth crosses the threshold
    replies = scene.cli.call(smtp_send, harvester, server_for(harvester), unknown, io_timeout=2)
    assert replies[:5] == ["550"] * 5, replies
    scene.wait_banned(harvester)
    assert scene.dropped(harvester, 25)


@releases
def test_relay_probing_on_25_is_banned(scene):
    prober = scene.client("relay prober").v4
    replies = scene.cli.call(smtp_send, prober, MAIL4, [f"victim{i}@elsewhere.test" for i in range(3)],
                             io_timeout=2)
    assert replies[:3] == ["554"] * 3, replies
    scene.wait_banned(prober)
    assert scene.dropped(prober, 25)


def test_a_burst_of_accepted_messages_is_banned(scene):
    spammer = scene.client("spam burst").v4
    replies = scene.cli.call(smtp_send, spammer, MAIL4, [f"{ALICE}@{DOMAIN}"], SPAM_LIMIT + 1, io_timeout=2)
    assert replies[:2] == ["250", "250"], replies      # accepted: this is about volume, not content
    assert scene.wait_banned(spammer)["reason"] == "spam_burst"
    assert scene.dropped(spammer, 25)


def test_a_compromised_account_gets_its_addresses_banned_and_named(scene):
    account = scene.client("compromised account")
    rcpts = [f"list{i}@elsewhere.test" for i in range(2)]
    half = ACCOUNT_MESSAGES // 2 + 1
    first = scene.cli.call(smtp_send, account.v4, MAIL4, rcpts, half, 587, (BOB, USERS[BOB]), io_timeout=2)
    assert first.count("250") == 2 + half, first
    second = scene.cli.call(smtp_send, account.v6, server_for(account.v6), rcpts, half, 587,
                            (BOB, USERS[BOB]), io_timeout=2)
    assert "250" in second, second
    for address in (account.v4, account.v6):
        assert scene.wait_banned(address)["reason"] == "account"
        assert scene.dropped(address, 587)
    assert wait_for(lambda: re.search(rf"ban {re.escape(target(account.v6))} .*account.*user 'bob'",
                                      scene.adaptive_err()), 5), scene.adaptive_err()


# --- never banned ---

@releases
def test_a_legitimate_user_logging_in_between_is_never_banned(scene):
    guesser, user = scene.client("guesser of alice").v4, scene.client("alice herself").v4
    own = [(imap_login, (user, MAIL4, ALICE, USERS[ALICE], port)) for port in (143, 993, 143)]
    mistyped = [(imap_login, (user, MAIL4, ALICE, "alice-secert", 143))] * 2
    results = scene.cli.call(together, guesses(guesser, count=6) + own + mistyped, timeout=90)
    assert results[6:9] == ["ok"] * 3 and results[9:] == ["failed"] * 2, results
    scene.wait_banned(guesser)
    never_banned(scene, user)
    assert scene.cli.call(imap_login, user, MAIL4, ALICE, USERS[ALICE]) == "ok"


@releases
def test_an_allowlisted_address_failing_as_often_as_the_attacker_is_never_banned(scene):
    guesser = scene.client("guesser beside the allowlisted").v4
    results = scene.cli.call(together, guesses(guesser, count=6) + guesses(ALLOWLISTED.v4, count=6), timeout=90)
    assert results.count("failed") >= 10, results
    scene.wait_banned(guesser)
    never_banned(scene, ALLOWLISTED.v4)
    explained = scene.adaptive("explain", ALLOWLISTED.v4)
    assert explained.returncode == 0 and "allowlisted by" in explained.stdout, explained
    assert scene.status()["decisions"].get("suppressed", 0) >= 1


@releases
def test_user_names_that_carry_a_legit_address_never_get_it_banned(scene):
    forger, legit = scene.client("user name forger"), scene.client("address the forger points at")
    imap_names = [f"x rip={legit.v4}", f"a>, method=PLAIN, rip={legit.v4}, lip={MAIL4}, session=<x",
                  f"x rip={legit.v6}"]
    smtp_names = [f"x@unknown[{legit.v4}]", f"x@unknown[{legit.v6}]", f"x rip={legit.v4}"]
    calls = [(imap_login, (forger.v4, MAIL4, name, "guess", 143)) for name in imap_names]
    calls += [(smtp_login, (forger.v4, MAIL4, name, "guess")) for name in smtp_names]
    results = scene.cli.call(together, calls, timeout=90)
    assert results.count("failed") >= 5, results
    scene.wait_banned(forger.v4)
    never_banned(scene, legit.v4)
    never_banned(scene, legit.v6)
    explained = json.loads(scene.adaptive("explain", legit.v4, "--json").stdout)
    assert explained["ban"] is None and not explained["history"], explained


# --- the kernel's meter and the outbound restriction ---

def test_a_connection_flood_is_dropped_by_the_kernel_meter(scene):
    flooder = scene.client("connection flooder").v4
    burst, attempts = RATE["burst"], 3 * RATE["burst"]
    try:
        for port in (25, 143, 993):
            answered = scene.cli.call(flood, flooder, MAIL4, port, attempts, timeout=30)
            # The burst gets through, and perhaps one more token of the rate (30/minute) meanwhile.
            assert burst <= answered <= burst + 2, (port, answered)
    finally:
        scene.cli.call(end_flood)
    counters = {c["counter"]["name"]: c["counter"]["packets"] for c in json.loads(
        scene.mail.exec("nft", "-j", "list", "counters", "table", "inet", "adaptive").stdout)["nftables"]
        if "counter" in c}
    for port in (25, 143, 993):
        assert counters[f"rate_limit_{port}"] >= attempts - burst - 2, counters

    def dropped_in_metrics() -> bool:
        text = scene.metrics()
        values = {port: float(m[1]) for port in (25, 143, 993)
                  if (m := re.search(rf'^adaptive_rate_limit_dropped_packets_total{{port="{port}"}} (\S+)$',
                                     text, re.M))}
        return len(values) == 3 and all(v >= attempts - burst - 2 for v in values.values())
    assert wait_for(dropped_in_metrics, 10, 0.2), scene.metrics()


def test_outbound_smtp_goes_to_the_relay_only(scene):
    assert scene.mail.call(connect, MAIL4, ELSEWHERE4, 25, 1.0) == "timeout"
    assert scene.mail.call(connect, MAIL4, ELSEWHERE4, 587, 1.0) == "ECONNREFUSED"   # only 25 is held
    assert scene.mail.call(connect, MAIL4, RELAY4, 25, 1.0) == "connected"
    sender = scene.client("alice's laptop").v4
    to = f"{CAROL}@elsewhere.test"
    replies = scene.cli.call(smtp_send, sender, MAIL4, [to], 1, 587, (ALICE, USERS[ALICE]))
    assert replies == ["250", "250"], replies

    def relayed() -> bool:
        return any(to in p.read_text(errors="replace") for p in scene.relayed.glob("*.eml"))
    assert wait_for(relayed, 15, 0.1), scene.logs()
    assert wait_for(lambda: re.search(r"^adaptive_outbound_dropped_packets_total [1-9]", scene.metrics(), re.M),
                    10, 0.2), scene.metrics()


# --- operating the scene ---

def test_list_explain_and_unban_on_the_scene(scene):
    prober = scene.client("relay prober, then forgiven").v4
    scene.cli.call(smtp_send, prober, MAIL4, [f"victim{i}@elsewhere.test" for i in range(3)], io_timeout=2)
    scene.wait_banned(prober)

    listed = scene.adaptive("list")
    assert listed.returncode == 0 and re.search(rf"^{re.escape(prober)} .* automatic +score$", listed.stdout,
                                                re.M), listed.stdout
    explained = scene.adaptive("explain", prober)
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith(f"{prober} is banned: score"), explained.stdout
    assert re.search(r"^score [\d.]+ \(a ban at 4\.5\)$", explained.stdout, re.M), explained.stdout
    why = json.loads(scene.adaptive("explain", prober, "--json").stdout)
    assert why["ban"]["reason"] == "score" and why["ban"]["origin"] == "automatic", why
    assert why["scoring"]["rules"] == {"postfix/reject-relay": 3}, why
    assert [h["reason"] for h in why["history"]] == ["score"], why
    assert scene.dropped(prober, 25)

    unbanned = scene.adaptive("unban", prober)
    assert unbanned.returncode == 0, unbanned.stderr
    assert prober not in scene.bans()
    assert scene.reaches(prober, 25) and scene.reaches(prober, 993)
    assert scene.cli.call(imap_login, prober, MAIL4, ALICE, USERS[ALICE]) == "ok"
    never_banned(scene, prober)
    after = scene.adaptive("explain", prober)
    assert f"{prober} is not banned" in after.stdout and "past bans: 1" in after.stdout, after.stdout


def test_an_unbanned_guesser_is_not_banned_again_for_the_attempts_already_counted(scene):
    # Banned mid-connection, the guesser's closing packets are dropped; Dovecot writes the connections'
    # summaries ("auth failed, 1 attempts") only once the unban lets them through. Those attempts were
    # counted by the auth lines before the ban, and must not count again after the unban.
    guesser = scene.client("guesser unbanned at once").v4
    scene.cli.call(together, guesses(guesser, count=6), timeout=90)
    scene.wait_banned(guesser)
    assert scene.adaptive("unban", guesser).returncode == 0
    summaries = re.compile(rf"\(auth failed, \d+ attempts in \d+ secs\): .* rip={re.escape(guesser)},")
    assert wait_for(lambda: len(summaries.findall(scene.dovecot_log.read_text())) == 6, 15, 0.1), scene.logs()
    never_banned(scene, guesser)


def test_explain_shows_the_rules_that_made_the_score(scene):
    # README: `adaptive explain ADDR` shows "score, its recent rules, past bans, allowlist".
    prober = scene.client("relay prober, explained").v4
    scene.cli.call(smtp_send, prober, MAIL4, [f"victim{i}@elsewhere.test" for i in range(3)], io_timeout=2)
    scene.wait_banned(prober)
    explained = scene.adaptive("explain", prober)
    assert explained.returncode == 0, explained.stderr
    assert "postfix/reject-relay" in explained.stdout, explained.stdout
