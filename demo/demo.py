"""`make demo`: the project at work in about a minute, on the test scene (tests/scene.py).

    .venv/bin/python demo/demo.py [--keep]

Brings the scene up (Postfix, Dovecot and `adaptive run` in a network namespace, clients in a peer
namespace: nothing touches the host's own network or firewall), then, printing what happens as it
happens: IMAP password guessing, SMTP AUTH guessing and recipient harvesting from three addresses at
once while a legitimate user logs in meanwhile (each ban printed as it lands); the banned addresses
dropped by the kernel; a connection flood on 25 cut by the rate limit; then `adaptive status`,
`adaptive explain` of one attacker and the metrics that moved. Everything is torn down at the end,
on a failure and on Ctrl-C too. Exit 0 when every step did what it should, 1 with the reason if not.
The scene's directory (its logs) is removed on success and kept on failure (or with --keep).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from scene import (  # noqa: E402
    DOMAIN,
    MAIL4,
    MAIL6,
    METRICS,
    RATE,
    USERS,
    Scene,
    SceneError,
    end_flood,
    flood,
    imap_login,
    probe,
    server_for,
    smtp_login,
    smtp_send,
    target,
    together,
)

BAN_DEADLINE = 40          # seconds from the start of the attacks for each ban to land
METRICS_SHOWN = ("adaptive_events_total", "adaptive_decisions_total",
                 "adaptive_ban_dropped_packets_total", "adaptive_rate_limit_dropped_packets_total")

_t0 = time.monotonic()


class DemoFailed(Exception):
    pass


def say(text: str = "") -> None:
    stamp = time.strftime("%H:%M:%S")
    for line in (text.splitlines() or [""]):
        print(f"{stamp} +{time.monotonic() - _t0:5.1f}s  {line}", flush=True)


def step(title: str) -> None:
    print(flush=True)
    say(f"== {title}")


def samples(text: str) -> dict[str, dict[str, float]]:
    """The samples of the shown metrics: name -> labels -> value."""
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for m in re.finditer(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", text, re.M):
        if m[1] in METRICS_SHOWN:
            found[m[1]][m[2] or ""] = float(m[3])
    return found


def show_deltas(before: dict, after: dict) -> None:
    for name in METRICS_SHOWN:
        b, a = before.get(name, {}), after.get(name, {})
        total_b, total_a = sum(b.values()), sum(a.values())
        say(f"{name:45} {total_b:8g} -> {total_a:8g}  (+{total_a - total_b:g})")
        for labels in sorted(a):
            moved = a[labels] - b.get(labels, 0.0)
            if moved and labels:
                say(f"    {labels:60} +{moved:g}")


def run(scene: Scene) -> None:
    step("1) the scene")
    say(f"mail namespace {scene.mail.name}: {MAIL4}, {MAIL6}")
    say("  postscreen+smtpd :25, submission :587, dovecot imap :143, imaps :993, pop3 :110")
    say(f"  adaptive run: its nftables table, socket {scene.socket}, /metrics on {METRICS}")
    say(f"client namespace {scene.cli.name}: one /24 and /48 per client (10.25.N.10, 2001:db8:N::10)")
    say(f"rate limit on 25, 143, 993: {RATE['rate']}, burst {RATE['burst']} new connections per source")
    say("$ adaptive status")
    say(scene.adaptive("status").stdout.rstrip())
    before = samples(scene.metrics())

    imap_guesser = scene.client("IMAP guesser").v4
    smtp_guesser = scene.client("SMTP AUTH guesser").v4
    harvester = scene.client("recipient harvester").v6
    user = scene.client("alice herself").v4
    roles = {target(imap_guesser): "IMAP guesser", target(smtp_guesser): "SMTP AUTH guesser",
             target(harvester): "recipient harvester"}

    step("2-4) attacks at once, and a legitimate user meanwhile")
    say(f"IMAP guesser        {imap_guesser}: 6 wrong passwords for alice on 143")
    say(f"SMTP AUTH guesser   {smtp_guesser}: 6 wrong passwords for bob on 587")
    say(f"recipient harvester {harvester}: RCPT TO 6 unknown users of {DOMAIN} on 25")
    say(f"legitimate user     {user}: alice logs in with her password 3 times, mistypes it once")
    calls = [(imap_login, (imap_guesser, MAIL4, "alice", f"guess-{i}", 143, 20)) for i in range(6)]
    calls += [(smtp_login, (smtp_guesser, MAIL4, "bob", f"guess-{i}", 587, 20)) for i in range(6)]
    calls += [(smtp_send, (harvester, server_for(harvester), [f"nobody{i}@{DOMAIN}" for i in range(6)],
                           1, 25, None, "someone@sender.test", 5))]
    calls += [(imap_login, (user, MAIL4, "alice", USERS["alice"], port, 20)) for port in (143, 993, 143)]
    calls += [(imap_login, (user, MAIL4, "alice", "alice-secert", 143, 20))]
    outcome: dict = {}

    def attack() -> None:
        try:
            outcome["results"] = scene.cli.call(together, calls, timeout=90)
        except BaseException as e:     # reported by the main thread
            outcome["error"] = e

    start = time.monotonic()
    worker = threading.Thread(target=attack, daemon=True)
    worker.start()
    landed: dict[str, dict] = {}
    while len(landed) < len(roles) and time.monotonic() - start < BAN_DEADLINE:
        for tgt, ban in scene.bans().items():
            if tgt not in landed:
                landed[tgt] = ban
                say(f"BAN {tgt:22} {roles.get(tgt, '(not one of ours!)'):20} "
                    f"{time.monotonic() - start:5.1f}s after the attacks began; reason {ban.get('reason')}, "
                    f"origin {ban.get('origin')}")
        time.sleep(0.1)
    missing = [f"{roles[t]} {t}" for t in roles if t not in landed]
    if missing:
        raise DemoFailed(f"no ban within {BAN_DEADLINE}s for: {', '.join(missing)}\n{scene.logs()}")
    if target(user) in landed:
        raise DemoFailed(f"the legitimate user {user} was banned: {landed[target(user)]}")
    worker.join(95)
    if "error" in outcome or worker.is_alive():
        raise DemoFailed(f"the clients did not finish: {outcome.get('error', 'still running')}")
    results = outcome["results"]
    say(f"IMAP guesser's logins:      {results[0:6]}")
    say(f"SMTP AUTH guesser's logins: {results[6:12]}")
    say(f"harvester's RCPT replies:   {results[12]}")
    say(f"alice's logins:             {results[13:17]}")
    if results[13:16] != ["ok"] * 3:
        raise DemoFailed(f"alice's own logins failed: {results[13:17]}")

    step("4) the legitimate user")
    if not scene.caught_up():
        raise DemoFailed("adaptive did not catch up with the logs")
    if target(user) in scene.bans():
        raise DemoFailed(f"{user} (alice herself) is banned")
    again = scene.cli.call(imap_login, user, MAIL4, "alice", USERS["alice"])
    say(f"{user} is not banned (adaptive has read every log line); one more login: {again}")
    if again != "ok":
        raise DemoFailed(f"alice could not log in from {user}: {again}")

    step("the banned, seen from the network")
    for source, ports in ((imap_guesser, (143, 25)), (smtp_guesser, (587, 993)), (harvester, (25,))):
        for port in ports:
            got = scene.cli.call(probe, source, server_for(source), port, 0.5)
            say(f"{source} -> port {port}: {got}{'  (dropped by the kernel)' if got == 'timeout' else ''}")
            if got != "timeout":
                raise DemoFailed(f"banned {source} still reaches port {port}: {got}")

    step("5) connection flood on 25")
    flooder = scene.client("connection flooder").v4
    attempts = 3 * RATE["burst"]
    say(f"{flooder} opens {attempts} connections to {MAIL4}:25 at once")
    try:
        answered = scene.cli.call(flood, flooder, MAIL4, 25, attempts, timeout=30)
    finally:
        scene.cli.call(end_flood)
    say(f"{answered} answered, {attempts - answered} left unanswered: the kernel's meter dropped their SYNs "
        f"(burst {RATE['burst']})")
    if not RATE["burst"] <= answered <= RATE["burst"] + 2:
        raise DemoFailed(f"expected about {RATE['burst']} answered connections, got {answered}")

    def flood_counted() -> bool:
        now = samples(scene.metrics()).get("adaptive_rate_limit_dropped_packets_total", {})
        return sum(now.values()) > sum(before.get("adaptive_rate_limit_dropped_packets_total", {}).values())
    deadline = time.monotonic() + 10
    while not flood_counted():
        if time.monotonic() > deadline:
            raise DemoFailed("the flood's drops never showed in /metrics")
        time.sleep(0.2)

    step("6) what adaptive says")
    say("$ adaptive status")
    say(scene.adaptive("status").stdout.rstrip())
    say("$ adaptive list")
    say(scene.adaptive("list").stdout.rstrip())
    say(f"$ adaptive explain {imap_guesser}")
    say(scene.adaptive("explain", imap_guesser).stdout.rstrip())
    say(f"metrics that moved (GET http://{METRICS}/metrics inside {scene.mail.name}):")
    show_deltas(before, samples(scene.metrics()))


def _interrupted(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the scene's directory (its logs)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces, Postfix, Dovecot)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupted)     # tears down like Ctrl-C does
    scene = Scene(prefix="ade")
    code, keep = 1, args.keep
    step("0) bringing the scene up")
    try:
        try:
            scene.up()
            say(f"up; its directory: {scene.dir}")
            run(scene)
            code = 0
        finally:
            step("7) tearing down")
            for sig in (signal.SIGINT, signal.SIGTERM):     # a second Ctrl-C must not cut the teardown short
                signal.signal(sig, signal.SIG_IGN)
            scene.down()
            left = [n for n in os.popen("ip netns list").read().split() if n.startswith(scene.nets.prefix)] \
                if scene.nets else []
            say(f"scene stopped, namespaces deleted{f' (left: {left})' if left else ''}")
    except KeyboardInterrupt:
        print("demo: interrupted; the scene was torn down", file=sys.stderr)
        code, keep = 130, True
    except (DemoFailed, SceneError) as e:
        print(f"demo: FAILED: {e}", file=sys.stderr)
        keep = True
    if keep:
        say(f"the scene's logs stay in {scene.dir / 'log'} and {scene.dir / 'run'}")
    else:
        shutil.rmtree(scene.dir, ignore_errors=True)
    if code == 0:
        say("demo: done, every step did what it should")
    return code


if __name__ == "__main__":
    sys.exit(main())
