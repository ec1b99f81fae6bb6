"""Real Dovecot 2.4 and Postfix 3.10 log lines for the filters: a short run of the scene on Debian 13's
servers (tests/debroot.py) that does, once each, what the end-to-end tests do not: wrong password and
unknown user over IMAPS, plaintext LOGIN refused on 143 (Dovecot with cleartext auth disallowed for IMAP
only, which the tests' scene never is), a client that hangs up in the middle of AUTHENTICATE, too many
invalid commands, POP3 and Dovecot submission logins, and a few Postfix ones (AUTH LOGIN, AUTH left
half way, errors, pregreet).

    python tests/trixie_lines.py [OUT]      # OUT: /tmp/trixie-lines by default

writes OUT/dovecot-extra.log and OUT/postfix-extra.log, then, for every log in OUT (the end-to-end run
leaves dovecot.log and postfix.log there), the lines that `adaptive check --json` made no event of,
grouped by shape, in OUT/no-event.txt. Which of those are attacks is for a person to say (MISSES.md).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import debroot  # noqa: E402
from netns import PYTHON  # noqa: E402
from scene import MAIL4, USERS, Scene, block, imap_login, smtp_login  # noqa: E402

SUBMISSION = 2587      # Dovecot's submission service (Postfix has 587)
FINAL = {"imap": rb"^(\S+ (OK|NO|BAD)|\+ |\* BYE)", "pop3": rb"^(\+OK|-ERR|\+ )", "smtp": rb"^\d{3} "}


class LinesScene(Scene):
    """The scene with Dovecot's submission service on and cleartext authentication refused for IMAP."""

    def dovecot24_conf(self, auth_verbose: bool = True) -> str:
        conf = super().dovecot24_conf(auth_verbose).replace("protocols = imap pop3\n",
                                                            "protocols = imap pop3 submission\n")
        return conf + f"""hostname = mx.example.test
submission_relay_host = {MAIL4}
submission_relay_port = 25
protocol imap {{
  auth_allow_cleartext = no
}}
service submission-login {{
  inet_listener submission {{
    port = {SUBMISSION}
  }}
  inet_listener submissions {{
    port = 0
  }}
}}
"""


# --- run in the client namespace by its worker ---

def converse(source: str, server: str, port: int, proto: str, steps: list[bytes], tls: bool = False,
             hang_up: bool = False, timeout: float = 12) -> list[str]:
    """Connect, read the greeting, then send each step and read up to its final reply line; close
    politely (the caller's last step) or, with `hang_up`, just drop the connection. The replies."""
    sock = socket.create_connection((server, port), timeout, source_address=(source, 0))
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname=server)
    stream = sock.makefile("rb")
    replies = []

    def final() -> None:
        while line := stream.readline():
            replies.append(line.decode(errors="replace").rstrip())
            if re.match(FINAL[proto], line):
                return
        replies.append("(closed)")

    try:
        final()
        for step in steps:
            sock.sendall(step)
            final()
            if replies[-1] == "(closed)":
                break
    except OSError as e:
        replies.append(f"({type(e).__name__})")
    finally:
        if hang_up:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.close()
    return replies


def pregreet(source: str, server: str) -> str:
    """Talk before postscreen's greeting, then leave."""
    sock = socket.create_connection((server, 25), 10, source_address=(source, 0))
    sock.sendall(b"EHLO early.example\r\n")
    time.sleep(2.5)
    data = sock.recv(4096)
    sock.close()
    return data.decode(errors="replace")


def plain(user: str, password: str) -> bytes:
    import base64
    return base64.b64encode(f"\0{user}\0{password}".encode())


def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    scene = LinesScene(root=debroot.root("trixie"))
    scene.up()
    try:
        cli = scene.cli
        a, b, c, d, e, f, g = (block(n).v4 for n in range(2, 9))
        done = {
            "imaps wrong password": cli.call(imap_login, a, MAIL4, "alice", "wrong", 993),
            "imaps unknown user": cli.call(imap_login, a, MAIL4, "nosuchuser", "wrong", 993),
            "imap plaintext refused": cli.call(converse, b, MAIL4, 143, "imap",
                                               [b"a LOGIN alice alice-secret\r\n", b"b LOGOUT\r\n"]),
            "imap plaintext refused, hang up": cli.call(converse, b, MAIL4, 143, "imap",
                                                        [b"a LOGIN alice wrong\r\n"], hang_up=True),
            "imap plaintext AUTHENTICATE refused": cli.call(converse, b, MAIL4, 143, "imap",
                                                            [b"a AUTHENTICATE PLAIN\r\n", b"b LOGOUT\r\n"]),
            "imaps mid-auth hang up": cli.call(converse, c, MAIL4, 993, "imap", [b"a AUTHENTICATE PLAIN\r\n"],
                                               tls=True, hang_up=True),
            "imaps mid-auth cancel": cli.call(converse, c, MAIL4, 993, "imap",
                                              [b"a AUTHENTICATE PLAIN\r\n", b"*\r\n", b"b LOGOUT\r\n"], tls=True),
            "pop3 mid-auth hang up": cli.call(converse, c, MAIL4, 110, "pop3", [b"AUTH PLAIN\r\n"], hang_up=True),
            "imap invalid commands": cli.call(converse, d, MAIL4, 143, "imap", [b"x FOO\r\n"] * 20),
            "pop3 invalid commands": cli.call(converse, d, MAIL4, 110, "pop3", [b"FOO\r\n"] * 20),
            "pop3 good login": cli.call(converse, e, MAIL4, 110, "pop3",
                                        [b"USER alice\r\n", b"PASS alice-secret\r\n", b"QUIT\r\n"]),
            "pop3 wrong password": cli.call(converse, e, MAIL4, 110, "pop3",
                                            [b"USER bob\r\n", b"PASS wrong\r\n", b"QUIT\r\n"]),
            "pop3 unknown user": cli.call(converse, e, MAIL4, 110, "pop3",
                                          [b"USER nosuchuser\r\n", b"PASS wrong\r\n", b"QUIT\r\n"]),
            "pop3 AUTH PLAIN wrong": cli.call(converse, e, MAIL4, 110, "pop3",
                                              [b"AUTH PLAIN " + plain("carol", "wrong") + b"\r\n", b"QUIT\r\n"]),
            "submission good login": cli.call(smtp_login, f, MAIL4, "alice", USERS["alice"], SUBMISSION),
            "submission wrong password": cli.call(smtp_login, f, MAIL4, "bob", "wrong", SUBMISSION),
            "submission unknown user": cli.call(smtp_login, f, MAIL4, "nosuchuser", "wrong", SUBMISSION),
            "submission mid-auth hang up": cli.call(converse, f, MAIL4, SUBMISSION, "smtp",
                                                    [b"EHLO c.example\r\n", b"AUTH PLAIN\r\n"], hang_up=True),
            "submission invalid commands": cli.call(converse, d, MAIL4, SUBMISSION, "smtp", [b"FOO\r\n"] * 25),
            "postfix 587 AUTH LOGIN wrong": cli.call(converse, g, MAIL4, 587, "smtp", [
                b"EHLO c.example\r\n", b"AUTH LOGIN\r\n", b"Ym9i\r\n", b"d3Jvbmc=\r\n", b"QUIT\r\n"]),
            "postfix 587 mid-auth hang up": cli.call(converse, g, MAIL4, 587, "smtp",
                                                     [b"EHLO c.example\r\n", b"AUTH PLAIN\r\n"], hang_up=True),
            "postfix 587 unknown user": cli.call(smtp_login, g, MAIL4, "nosuchuser", "wrong", 587),
            "postfix 25 errors": cli.call(converse, block(9).v4, MAIL4, 25, "smtp", [b"FOO\r\n"] * 25),
            "postfix 25 pregreet": cli.call(pregreet, block(10).v4, MAIL4),
            "postfix 25 AUTH without auth": cli.call(converse, block(11).v4, MAIL4, 25, "smtp", [
                b"EHLO c.example\r\n", b"AUTH PLAIN " + plain("bob", "wrong") + b"\r\n", b"QUIT\r\n"]),
        }
        time.sleep(3)
    finally:
        scene.down()
    for name, replies in done.items():
        print(f"{name}: {replies if isinstance(replies, str) else ' | '.join(replies)[:300]}")
    shutil.copyfile(scene.dovecot_log, out / "dovecot-extra.log")
    shutil.copyfile(scene.postfix_log, out / "postfix-extra.log")
    shutil.rmtree(scene.dir, ignore_errors=True)


# --- what no event was made of ---

SHAPES = [(re.compile(p), r) for p, r in [
    (r"^\w{3} [ \d]\d \d\d:\d\d:\d\d ", ""), (r"<[A-Za-z0-9+/]{16,}>", "<ID>"), (r"\[\d+\]", "[PID]"),
    (r"\b[0-9A-F]{10,}\b", "QID"), (r"\d+\.\d+\.\d+\.\d+", "IP4"), (r"\b2001:db8[0-9a-f:]*", "IP6"),
    (r"\b\d+\b", "N")]]


def shape(line: str) -> str:
    for pattern, replacement in SHAPES:
        line = pattern.sub(replacement, line)
    return line


def no_event(out: Path) -> str:
    report = []
    for log in sorted(out.glob("*.log")):
        done = subprocess.run([str(PYTHON), "-m", "adaptive", "check", "--json", str(log)],
                              capture_output=True, text=True, check=True)
        lines_with_events = {json.loads(e)["line"] for e in done.stdout.splitlines()}
        groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for n, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            if n not in lines_with_events:
                groups[shape(line)].append((n, line))
        report.append(f"## {log.name}: {len(lines_with_events)} lines with events, "
                      f"{sum(map(len, groups.values()))} without, in {len(groups)} shapes\n")
        for lines in groups.values():
            n, line = lines[0]
            report.append(f"{len(lines):4d}x  {log.name}:{n}: {line}")
        report.append("")
    return "\n".join(report)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("/tmp/trixie-lines")
    if why := debroot.missing("trixie"):
        print(f"trixie_lines.py: {why}", file=sys.stderr)
        return 1
    run(out)
    (out / "no-event.txt").write_text(no_event(out))
    print(f"logs and no-event.txt in {out}")
    return 0


if __name__ == "__main__":
    import trixie_lines as _self  # the module under its own name, so the workers can unpickle its functions
    sys.exit(_self.main(sys.argv[1:]))
