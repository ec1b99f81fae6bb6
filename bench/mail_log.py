"""A realistic mixed mail log, the same for a seed, and the ground truth that goes with it.

The benchmark (`bench/parse.py`) reads the log; a later stage checks ban decisions against the truth.
One file holds about a day of a Debian mail host's syslog, as rsyslog writes it: Postfix (postscreen
in front of smtpd on port 25, submission on 587 and 465, delivery to Dovecot over LMTP, relay to remote
MX hosts) and Dovecot (IMAP logins, LMTP), interleaved. About 97% of the lines are normal traffic; about
3% come from attackers in three populations:

- fast: a few addresses failing many times within minutes (SMTP AUTH, IMAP, recipient harvesting);
- slow: many addresses failing 10 to 30 times spread over the day (SMTP AUTH, IMAP);
- scanners: a long tail of addresses seen once (PREGREET, HANGUP, non-SMTP commands, relay probes,
  RBL rejects, pipelining, a dropped or failed AUTH, a failed IMAP login, a short harvest).

Legitimate users mistype a password now and then (once a day at most), and a legitimate MTA now and
then sends to an address that does not exist: those lines look like attacks and must not lead to a ban.
The attack lines use the exact formats Postfix and Dovecot write, so Debian's fail2ban `postfix` and
`dovecot` filters match them too. Addresses are IPv4 and IPv6, from the documentation ranges and random
public-looking IPv4; the file is only written, nothing is sent anywhere.

    python bench/mail_log.py [--lines N] [--seed S] [--fmt classic|rfc3339] [--out FILE]

writes the log (by default into the cache, `bench/out/`, reused while lines, seed, format and VERSION
stay the same) and prints its composition. The ground truth is written beside it as `NAME.truth.json`:

    {"version", "lines", "seed", "fmt",
     "start": "2025-11-24T00:00:00",   # the log's own clock (local time for classic lines)
     "end": "...",                     # time of the last line
     "server": ["192.0.2.25", "2001:db8::25"],
     "composition": {"normal": {TYPE: LINES}, "attack": {TYPE: LINES}},
     "attackers": {IP: {"population": "fast"|"slow"|"scanner", "kind": KIND, "failures": N,
                        "max_10min": N, "times": [SECONDS SINCE start, ...]}},
     "legitimate": {IP: {"roles": ["mta"|"submission"|"imap"|"monitor"|"relay"], "failures": N,
                         "times": [...]}},   # relay: a remote MX we send to, never a client
     "must_ban": [IP, ...],   # max_10min >= 5: 5 failures within 10 minutes (last - first <= 600 s)
     "slow": [IP, ...]}       # 10 or more failures, never 5 within 10 minutes

A failure is one failed attempt: a wrong password (SMTP AUTH or IMAP), one rejected recipient, a relay
or RBL reject, a PREGREET, HANGUP, non-SMTP command, improper pipelining, or a connection dropped after
AUTH. Times are those the log shows (whole seconds for classic lines). IP addresses are in Python's
`ipaddress` normal form, as events carry them.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import random
import sys
import time
from bisect import bisect_right
from collections import Counter
from datetime import datetime, timedelta
from operator import itemgetter
from pathlib import Path

VERSION = 1            # bump whenever the output changes, so cached files are remade
OUT = Path(__file__).resolve().parent / "out"
START = datetime(2025, 11, 24)
FORMATS = ("classic", "rfc3339")
DAY = 86400.0
ATTACK_SHARE = 0.03
WINDOW = 600.0         # "5 failures within 10 minutes"

HOST = "mx"
DOMAIN = "example.org"
FQDN = "mx.example.org"
SERVER_V4, SERVER_V6 = "192.0.2.25", "2001:db8::25"

_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# First octets of public-looking IPv4 addresses: no private, loopback, CGNAT, link-local, benchmark or
# documentation /8 (the documentation /24s are drawn on purposely, see _Addresses).
_FIRST_OCTETS = tuple(a for a in range(1, 224) if a not in (10, 100, 127, 169, 172, 192, 198, 203))
_DOC_V4 = ("192.0.2.", "198.51.100.", "203.0.113.")
_TLS_IN = (
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
    "server-signature RSA-PSS (2048 bits) server-digest SHA256",
    "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits) key-exchange X25519 "
    "server-signature RSA-PSS (2048 bits) server-digest SHA256",
    "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)",
)
_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda", "zoe",
    "anna", "ben", "chris", "dora", "emil", "fiona", "gustav", "hanna", "igor", "jonas", "karin",
)
_WORDS = (
    "acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "wonka", "tyrell",
    "cyberdyne", "soylent", "massive", "oscorp", "aperture", "duff", "gringotts", "monarch", "nakatomi",
    "pied", "piper", "sirius", "virtucon", "wernham", "zorg", "bluth", "dunder", "krusty", "nuka",
)
_GUESSED = ("admin", "info", "test", "postmaster", "webmaster", "sales", "support", "office", "user",
            "root", "contact", "mail", "backup", "noreply", "marketing", "hr", "billing", "ftp")
_HELOS = ("ylmf-pc", "User", "WIN-{n}", "localhost", "[{ip}]", "mail.example.com", "EHLO", "pc{n}",
          "{w}.example.net", "client")
_NON_SMTP = ("GET / HTTP/1.1", "GET /favicon.ico HTTP/1.1", "CONNECT 198.51.100.1:25 HTTP/1.0",
             "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03", "OPTIONS / RTSP/1.0", "SSH-2.0-Go")


def cache_path(lines: int = 1_000_000, seed: int = 1, fmt: str = "classic", directory: Path = OUT) -> Path:
    """Where the cached log for (lines, seed, fmt) is kept."""
    return directory / f"mail-v{VERSION}-{lines}-s{seed}-{fmt}.log"


def cached(lines: int = 1_000_000, seed: int = 1, fmt: str = "classic", directory: Path = OUT) -> Path:
    """The log for (lines, seed, fmt) in `directory`, generated on first use and reused after."""
    path = cache_path(lines, seed, fmt, directory)
    if not (path.exists() and truth_path(path).exists()):
        generate(path, lines, seed, fmt=fmt)
    return path


def truth_path(path: Path) -> Path:
    """Where the ground truth of the log at `path` is written."""
    return path.with_name(path.stem + ".truth.json")


def generate(path: Path, lines: int = 1_000_000, seed: int = 1, start: datetime = START,
             fmt: str = "classic") -> dict:
    """Write `lines` lines of mixed mail log to `path` and its truth beside it; return the truth.

    The file's modification time is set to its last line's time, as for a real log, so a reader that
    dates yearless classic lines by the file's mtime (`adaptive check`) puts them in `start`'s year.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
    if lines < 1000:
        raise ValueError(f"lines must be at least 1000 to hold the mix, not {lines}")
    mix = _Mix(random.Random(seed), start)
    mix.attacks(round(lines * ATTACK_SHARE))
    mix.normal(lines - len(mix.lines))
    log = sorted(mix.lines, key=itemgetter(0))
    mix.truncate_times(fmt)  # the truth shows the times as the log does
    end = _write(path, log, start, fmt)
    truth = mix.truth(lines, seed, fmt, start, end)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.truth")
    tmp.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    tmp.replace(truth_path(path))
    return truth


def _write(path: Path, log: list[tuple[float, str]], start: datetime, fmt: str) -> datetime:
    """Write the sorted lines with their prefixes; return the last line's time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    classic = fmt == "classic"
    offset = start.utcoffset()
    if offset is None:
        zone = "+00:00"
    else:
        minutes = int(offset.total_seconds()) // 60
        zone = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    stamps: dict[int, str] = {}
    buf: list[str] = []
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for t, text in log:
            second = int(t)
            stamp = stamps.get(second)
            if stamp is None:
                d = start + timedelta(seconds=second)
                stamp = stamps[second] = (
                    f"{_MONTHS[d.month]} {d.day:2d} {d:%H:%M:%S} {HOST} " if classic
                    else f"{d:%Y-%m-%dT%H:%M:%S}.")
            if classic:
                buf.append(f"{stamp}{text}\n")
            else:
                buf.append(f"{stamp}{int((t - second) * 1e6):06d}{zone} {HOST} {text}\n")
            if len(buf) >= 20000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))
    end = start + timedelta(seconds=log[-1][0] if not classic else int(log[-1][0]))
    stamp = end.timestamp()  # a naive time is local time, as syslog means it
    os.utime(tmp, (stamp, stamp))
    tmp.replace(path)
    return end


def _max_in_window(times: list[float]) -> int:
    """The most failures that fall within one WINDOW (last - first <= WINDOW)."""
    best, first = 0, 0
    for i, t in enumerate(times):
        while t - times[first] > WINDOW:
            first += 1
        best = max(best, i - first + 1)
    return best


class _Addresses:
    """Unique addresses: no two clients, legitimate or not, share one."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used = {SERVER_V4, SERVER_V6}

    def _take(self, ip: str) -> str | None:
        if ip in self.used:
            return None
        self.used.add(ip)
        return ip

    def v4(self) -> str:
        rng = self.rng
        while True:
            if rng.random() < 0.05:
                ip = f"{rng.choice(_DOC_V4)}{rng.randrange(1, 255)}"
            else:
                ip = f"{rng.choice(_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                if not ipaddress.IPv4Address(ip).is_global:
                    continue
            if self._take(ip):
                return ip

    def v6(self, server_like: bool = False) -> str:
        """A 2001:db8::/32 address: a server's short one (`2001:db8:a:b::1f`) or a privacy address."""
        rng = self.rng
        while True:
            net = (0x20010DB8 << 96) | (rng.getrandbits(32) << 64)
            host = rng.randrange(1, 0x1000) if server_like else rng.getrandbits(64)
            ip = str(ipaddress.IPv6Address(net | host))
            if self._take(ip):
                return ip


class _Mix:
    """Builds the lines (seconds since start, text after the host) and keeps the truth of them."""

    def __init__(self, rng: random.Random, start: datetime):
        self.rng = rng
        self.start = start
        self.addresses = _Addresses(rng)
        self.lines: list[tuple[float, str]] = []
        self.types: dict[str, Counter[str]] = {"normal": Counter(), "attack": Counter()}
        self.attackers: dict[str, dict] = {}
        self.legitimate: dict[str, dict] = {}
        self.postscreen_seen: set[str] = set()
        self.group = "normal"
        r = rng
        self.pid_postscreen, self.pid_qmgr, self.pid_anvil = r.randrange(900, 1500), r.randrange(800, 900), 1544
        self.pids_smtpd = [r.randrange(2000, 60000) for _ in range(30)]
        self.pids_submission = [r.randrange(2000, 60000) for _ in range(8)]
        self.pids_smtps = [r.randrange(2000, 60000) for _ in range(4)]
        self.pids_cleanup = [r.randrange(2000, 60000) for _ in range(6)]
        self.pids_lmtp = [r.randrange(2000, 60000) for _ in range(4)]
        self.pids_smtp = [r.randrange(2000, 60000) for _ in range(10)]
        self.pids_local = [r.randrange(2000, 60000) for _ in range(2)]
        self._people()

    # --- the cast ---

    def _people(self) -> None:
        r, a = self.rng, self.addresses
        self.users: list[str] = []
        for name in _NAMES:
            self.users.append(f"{name}@{DOMAIN}")
            for n in range(r.randrange(3, 9)):
                self.users.append(f"{name}.{r.choice(_WORDS)}{n}@{DOMAIN}")
        # Each user reads mail from one to three places: home, office, phone (v4 or v6).
        self.user_places: dict[str, list[tuple[str, str]]] = {}
        for user in self.users:
            places = []
            for _ in range(r.choice((1, 1, 2, 2, 3))):
                if r.random() < 0.25:
                    ip = a.v6()
                    host = "unknown" if r.random() < 0.5 else f"{r.choice(_WORDS)}-dyn.example.net"
                else:
                    ip = a.v4()
                    host = ("unknown" if r.random() < 0.3
                            else f"dyn-{ip.replace('.', '-')}.{r.choice(_WORDS)}.example.net")
                places.append((ip, host))
            self.user_places[user] = places
        # Once in the day, about one user in ten mistypes an IMAP password, one in twenty an SMTP one.
        self.imap_slip = {u: r.uniform(0, DAY) for u in self.users if r.random() < 0.10}
        self.smtp_slip = {u: r.uniform(0, DAY) for u in self.users if r.random() < 0.05}
        # Sending MTAs: a few big ones send most of the mail (weights 1/rank).
        self.mtas: list[tuple[str, str, str]] = []
        for i in range(2000):
            domain = f"{r.choice(_WORDS)}{i}.example.com"
            ip = a.v6(server_like=True) if r.random() < 0.15 else a.v4()
            self.mtas.append((f"mail{r.randrange(1, 5)}.{domain}", ip, domain))
        weights = [1.0 / (rank + 1) for rank in range(len(self.mtas))]
        total, acc = sum(weights), 0.0
        self.mta_cum = []
        for w in weights:
            acc += w / total
            self.mta_cum.append(acc)
        # Remote MX hosts our users send to; they are servers, not clients, but never to be banned.
        self.remotes: list[tuple[str, str, str]] = []
        for i in range(300):
            domain = f"{r.choice(_WORDS)}{i}.example.net"
            ip = a.v6(server_like=True) if r.random() < 0.2 else a.v4()
            self.remotes.append((f"mx{r.randrange(1, 3)}.{domain}", ip, domain))
        self.monitor = (f"monitor.{DOMAIN}", a.v4())

    # --- helpers ---

    def add(self, t: float, text: str, kind: str) -> None:
        self.lines.append((t, text))
        self.types[self.group][kind] += 1

    def legit(self, ip: str, role: str, failure: float | None = None) -> None:
        entry = self.legitimate.get(ip)
        if entry is None:
            entry = self.legitimate[ip] = {"roles": [], "failures": 0, "times": []}
        if role not in entry["roles"]:
            entry["roles"].append(role)
        if failure is not None:
            entry["failures"] += 1
            entry["times"].append(failure)

    def qid(self) -> str:
        return f"{self.rng.getrandbits(44):011X}"

    def session(self) -> str:
        return base64.b64encode(self.rng.randbytes(12)).decode()

    def port(self) -> int:
        return self.rng.randrange(1024, 65536)

    def helo(self, ip: str) -> str:
        r = self.rng
        return r.choice(_HELOS).format(n=r.randrange(1, 999), ip=ip, w=r.choice(_WORDS))

    @staticmethod
    def lip(ip: str) -> str:
        return SERVER_V6 if ":" in ip else SERVER_V4

    def postscreen(self, t: float, ip: str, port: int) -> float:
        """CONNECT and PASS NEW (first sight, after the 6 s greet wait) or PASS OLD; the time after."""
        ps = f"postfix/postscreen[{self.pid_postscreen}]: "
        self.add(t, f"{ps}CONNECT from [{ip}]:{port} to [{self.lip(ip)}]:25", "postscreen CONNECT")
        if ip in self.postscreen_seen:
            self.add(t + 0.001, f"{ps}PASS OLD [{ip}]:{port}", "postscreen PASS OLD")
            return t + 0.01
        self.postscreen_seen.add(ip)
        self.add(t + 6.0, f"{ps}PASS NEW [{ip}]:{port}", "postscreen PASS NEW")
        return t + 6.01

    # --- normal traffic ---

    def normal(self, budget: int) -> None:
        """Add about `budget` lines of normal traffic over the day, then fill to exactly `budget`."""
        r = self.rng
        self.group = "normal"
        target = len(self.lines) + budget
        # Background: a monitoring probe every 5 minutes, anvil statistics every 10.
        host, ip = self.monitor
        t = r.uniform(0, 300)
        while t < DAY and len(self.lines) + 2 < target:
            pid = r.choice(self.pids_smtpd)
            self.add(t, f"postfix/smtpd[{pid}]: connect from {host}[{ip}]", "smtpd connect")
            self.add(t + 0.02, f"postfix/smtpd[{pid}]: disconnect from {host}[{ip}] ehlo=1 quit=1 commands=2",
                     "smtpd disconnect")
            self.legit(ip, "monitor")
            t += 300.0
        t = r.uniform(0, 600)
        while t < DAY and len(self.lines) + 1 < target:
            self.anvil(t)
            t += 600.0
        # Sessions arrive as a Poisson process sized to fill the day: about 5.1 lines a session.
        mean_gap = DAY / max(1.0, (target - len(self.lines)) / 5.1)
        t = 0.0
        while target - len(self.lines) > 40:
            t += r.expovariate(1.0 / mean_gap)
            x = r.random()
            if x < 0.30:
                self.inbound(t)
            elif x < 0.38:
                self.outbound(t)
            else:
                self.imap(t)
        while len(self.lines) < target:
            self.anvil(r.uniform(0, min(t, DAY)), one=True)

    def anvil(self, t: float, one: bool = False) -> None:
        r, a = self.rng, f"postfix/anvil[{self.pid_anvil}]: statistics: "
        d = self.start + timedelta(seconds=int(t - r.uniform(0, 500)))
        at = f"{_MONTHS[d.month]} {d.day:2d} {d:%H:%M:%S}"
        mta = self.mtas[r.randrange(50)][1]
        self.add(t, f"{a}max connection rate {r.randrange(1, 9)}/60s for (smtp:{mta}) at {at}",
                 "anvil statistics")
        if not one:
            self.add(t, f"{a}max connection count {r.randrange(1, 4)} for (smtp:{mta}) at {at}",
                     "anvil statistics")
            self.add(t, f"{a}max cache size {r.randrange(2, 40)} at {at}", "anvil statistics")

    def inbound(self, t: float) -> None:
        """A message from a remote MTA through postscreen and smtpd to local mailboxes."""
        r = self.rng
        host, ip, domain = self.mtas[min(bisect_right(self.mta_cum, r.random()), len(self.mtas) - 1)]
        self.legit(ip, "mta")
        t = self.postscreen(t, ip, self.port())
        smtpd = f"postfix/smtpd[{r.choice(self.pids_smtpd)}]: "
        self.add(t, f"{smtpd}connect from {host}[{ip}]", "smtpd connect")
        tls = r.random() < 0.9
        if tls:
            self.add(t + 0.08, f"{smtpd}Anonymous TLS connection established from {host}[{ip}]: "
                               f"{r.choice(_TLS_IN)}", "smtpd TLS established")
        nrcpt = 1 if r.random() < 0.8 else r.choice((2, 2, 3))
        rcpts = [r.choice(self.users) for _ in range(nrcpt)]
        sender = f"{r.choice(_NAMES)}@{domain}"
        helo = host
        rejected = 0
        # A typo in an address now and then: a bounce, not an attack (at most two a day from one MTA).
        if r.random() < 0.001 and self.legitimate[ip]["failures"] < 2:
            bad = f"{r.choice(_NAMES)}{r.choice(_NAMES)}@{DOMAIN}"
            self.add(t + 0.2, f"{smtpd}NOQUEUE: reject: RCPT from {host}[{ip}]: 550 5.1.1 <{bad}>: "
                              f"Recipient address rejected: User unknown in virtual mailbox table; "
                              f"from=<{sender}> to=<{bad}> proto=ESMTP helo=<{helo}>", "smtpd reject (legit typo)")
            self.legit(ip, "mta", t + 0.2)
            rejected = 1
        qid = self.qid()
        self.add(t + 0.25, f"{smtpd}{qid}: client={host}[{ip}]", "smtpd client=")
        mid = f"<{r.getrandbits(64):016x}@{domain}>"
        self.add(t + 0.3, f"postfix/cleanup[{r.choice(self.pids_cleanup)}]: {qid}: message-id={mid}",
                 "cleanup message-id")
        size = int(r.lognormvariate(9.5, 1.2)) + 600
        qmgr = f"postfix/qmgr[{self.pid_qmgr}]: {qid}: "
        self.add(t + 0.35, f"{qmgr}from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)", "qmgr from=")
        counts = (f"ehlo=2 starttls=1 mail=1 rcpt={nrcpt}" if tls else f"ehlo=1 mail=1 rcpt={nrcpt}")
        total = (2 + 1 + 1 + nrcpt + 1 + 1) if tls else (1 + 1 + nrcpt + 1 + 1)
        if rejected:
            counts = counts.replace(f"rcpt={nrcpt}", f"rcpt={nrcpt}/{nrcpt + 1}")
            self.add(t + 0.5, f"{smtpd}disconnect from {host}[{ip}] {counts} data=1 quit=1 "
                              f"commands={total}/{total + 1}", "smtpd disconnect")
        else:
            self.add(t + 0.5, f"{smtpd}disconnect from {host}[{ip}] {counts} data=1 quit=1 commands={total}",
                     "smtpd disconnect")
        d = t + 0.4
        x = r.random()
        if x < 0.85:
            lpid = r.choice(self.pids_lmtp)
            dpid = r.randrange(10000, 60000)
            self.add(d, f"dovecot: lmtp({dpid}): Connect from local", "dovecot lmtp connect")
            for rcpt in rcpts:
                d += r.uniform(0.02, 0.2)
                sess = self.session()
                self.add(d, f"dovecot: lmtp({rcpt})<{dpid}><{sess}>: msgid={mid}: saved mail to INBOX",
                         "dovecot lmtp saved")
                self.add(d + 0.001, f"postfix/lmtp[{lpid}]: {qid}: to=<{rcpt}>, "
                                    f"relay={FQDN}[private/dovecot-lmtp], delay={d - t + 0.3:.2f}, "
                                    f"delays=0.1/0.01/0.02/{d - t - 0.2:.2f}, dsn=2.0.0, "
                                    f"status=sent (250 2.0.0 <{rcpt}> {sess} Saved)", "lmtp status=sent")
            self.add(d + 0.01, f"dovecot: lmtp({dpid}): Disconnect from local: Client has quit the connection "
                               f"(state=READY)", "dovecot lmtp disconnect")
        elif x < 0.97:
            vpid = r.choice(self.pids_local)
            for rcpt in rcpts:
                d += r.uniform(0.01, 0.1)
                self.add(d, f"postfix/virtual[{vpid}]: {qid}: to=<{rcpt}>, relay=virtual, "
                            f"delay={d - t + 0.3:.2f}, delays=0.1/0.01/0/{d - t - 0.3:.2f}, dsn=2.0.0, "
                            f"status=sent (delivered to maildir)", "virtual status=sent")
        else:
            lpid = r.choice(self.pids_local)
            for _ in rcpts:
                d += r.uniform(0.01, 0.1)
                self.add(d, f"postfix/local[{lpid}]: {qid}: to=<root@{FQDN}>, orig_to=<postmaster@{DOMAIN}>, "
                            f"relay=local, delay={d - t + 0.3:.2f}, delays=0.1/0.01/0/{d - t - 0.3:.2f}, "
                            f"dsn=2.0.0, status=sent (delivered to mailbox)", "local status=sent")
        self.add(d + 0.01, f"{qmgr}removed", "qmgr removed")

    def outbound(self, t: float) -> None:
        """A message submitted by an authenticated user and relayed to remote MX hosts."""
        r = self.rng
        user = r.choice(self.users)
        ip, host = r.choice(self.user_places[user])
        self.legit(ip, "submission")
        port465 = r.random() < 0.2
        pid = r.choice(self.pids_smtps if port465 else self.pids_submission)
        smtpd = f"postfix/{'smtps' if port465 else 'submission'}/smtpd[{pid}]: "
        self.add(t, f"{smtpd}connect from {host}[{ip}]", "smtpd connect")
        self.add(t + 0.1, f"{smtpd}Anonymous TLS connection established from {host}[{ip}]: "
                          f"{r.choice(_TLS_IN[:2])}", "smtpd TLS established")
        auth = "auth=1"
        slip = self.smtp_slip.get(user)
        if slip is not None and t >= slip:
            del self.smtp_slip[user]
            self.add(t + 0.3, f"{smtpd}warning: {host}[{ip}]: SASL PLAIN authentication failed: ",
                     "smtpd SASL failed (legit slip)")
            self.legit(ip, "submission", t + 0.3)
            auth = "auth=1/2"
            t += r.uniform(4, 15)
        qid = self.qid()
        self.add(t + 0.4, f"{smtpd}{qid}: client={host}[{ip}], sasl_method=PLAIN, sasl_username={user}",
                 "smtpd client= (sasl)")
        mid = f"<{r.getrandbits(64):016x}@{DOMAIN}>"
        self.add(t + 0.45, f"postfix/cleanup[{r.choice(self.pids_cleanup)}]: {qid}: message-id={mid}",
                 "cleanup message-id")
        nrcpt = 1 if r.random() < 0.75 else r.choice((2, 2, 3, 4))
        size = int(r.lognormvariate(9.0, 1.3)) + 500
        qmgr = f"postfix/qmgr[{self.pid_qmgr}]: {qid}: "
        self.add(t + 0.5, f"{qmgr}from=<{user}>, size={size}, nrcpt={nrcpt} (queue active)", "qmgr from=")
        head = "ehlo=1" if port465 else "ehlo=2 starttls=1"
        total = (1 if port465 else 3) + 1 + 1 + nrcpt + 1 + 1 + (1 if auth != "auth=1" else 0)
        ok = total - (1 if auth != "auth=1" else 0)
        commands = f"{ok}/{total}" if ok != total else str(total)
        self.add(t + 0.6, f"{smtpd}disconnect from {host}[{ip}] {head} {auth} mail=1 rcpt={nrcpt} data=1 "
                          f"quit=1 commands={commands}", "smtpd disconnect")
        d = t + 0.6
        spid = r.choice(self.pids_smtp)
        for _ in range(nrcpt):
            rhost, rip, rdomain = r.choice(self.remotes)
            self.legit(rip, "relay")
            d += r.uniform(0.2, 1.5)
            self.add(d, f"postfix/smtp[{spid}]: Trusted TLS connection established to {rhost}[{rip}]:25: "
                        f"{r.choice(_TLS_IN[:2])}", "smtp TLS established")
            d += r.uniform(0.1, 2.0)
            self.add(d, f"postfix/smtp[{spid}]: {qid}: to=<{r.choice(_NAMES)}@{rdomain}>, "
                        f"relay={rhost}[{rip}]:25, delay={d - t:.1f}, delays=0.1/0.01/{d - t - 0.5:.2f}/0.3, "
                        f"dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {self.qid()})", "smtp status=sent")
        self.add(d + 0.01, f"{qmgr}removed", "qmgr removed")

    def imap(self, t: float) -> None:
        """An IMAP login by a user's mail client, and its logout minutes later."""
        r = self.rng
        user = r.choice(self.users)
        ip, _ = r.choice(self.user_places[user])
        self.legit(ip, "imap")
        lip = self.lip(ip)
        slip = self.imap_slip.get(user)
        if slip is not None and t >= slip:
            del self.imap_slip[user]
            sess = self.session()
            self.add(t, f"dovecot: auth: passwd-file({user},{ip},<{sess}>): Password mismatch",
                     "dovecot auth mismatch (legit slip)")
            secs = r.randrange(2, 6)
            self.add(t + secs, f"dovecot: imap-login: Disconnected (auth failed, 1 attempts in {secs} secs): "
                               f"user=<{user}>, method=PLAIN, rip={ip}, lip={lip}, TLS, session=<{sess}>",
                     "dovecot imap-login auth failed (legit slip)")
            self.legit(ip, "imap", t)
            t += secs + r.uniform(5, 40)
        mpid = r.randrange(10000, 60000)
        sess = self.session()
        self.add(t, f"dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip={lip}, "
                    f"mpid={mpid}, TLS, session=<{sess}>", "dovecot imap-login Login")
        lasted = r.uniform(2, 1800) if r.random() < 0.8 else r.uniform(1800, 7200)
        self.add(t + lasted, f"dovecot: imap({user})<{mpid}><{sess}>: Logged out in={r.randrange(40, 9000)} "
                             f"out={r.randrange(400, 2_000_000)} deleted=0 expunged=0 trashed=0 hdr_count=0 "
                             f"hdr_bytes=0 body_count=0 body_bytes=0", "dovecot imap Logged out")

    # --- attacks ---

    def attacks(self, budget: int) -> None:
        """Add about `budget` attack lines: 15% fast, 50% slow, the rest scanners."""
        r, a = self.rng, self.addresses
        self.group = "attack"
        plans = (("fast", 0.15), ("slow", 0.50), ("scanner", 0.35))
        goal = 0
        fast_kinds = ("smtp-auth", "imap-auth", "harvest", "smtp-auth", "imap-auth")
        for population, share in plans:
            goal += budget * share
            count = 0
            while len(self.lines) < goal or count == 0:
                count += 1
                v6 = r.random() < 0.15
                if population == "fast":
                    kind = fast_kinds[(count - 1) % len(fast_kinds)]
                    ip = a.v6() if v6 else a.v4()
                    times = self.fast(kind, ip)
                elif population == "slow":
                    kind = r.choice(("smtp-auth", "imap-auth"))
                    ip = a.v6() if v6 else a.v4()
                    times = self.slow(kind, ip)
                else:
                    kind = r.choice(("pregreet", "pregreet", "hangup", "non-smtp", "relay", "relay", "rbl",
                                     "rbl", "pipelining", "lost-auth", "smtp-auth", "smtp-auth",
                                     "imap-auth", "imap-auth", "harvest"))
                    ip = a.v4() if kind == "rbl" or not v6 else a.v6()
                    times = self.attempt(kind, ip, r.uniform(0, DAY), r.choice((1, 1, 1, 2, 3)))
                times.sort()
                self.attackers[ip] = {"population": population, "kind": kind, "failures": len(times),
                                      "max_10min": 0, "times": times}

    def fast(self, kind: str, ip: str) -> list[float]:
        r = self.rng
        failures = r.randrange(40, 200)
        t = r.uniform(0, DAY - 3600)
        gap = r.uniform(1.0, 6.0)
        times: list[float] = []
        while len(times) < failures:
            k = r.randrange(5, 20) if kind == "harvest" else r.choice((1, 1, 2, 3))
            times += self.attempt(kind, ip, t, min(k, failures - len(times)))
            t = times[-1] + r.expovariate(1.0 / gap)
        return times

    def slow(self, kind: str, ip: str) -> list[float]:
        r = self.rng
        times: list[float] = []
        for t in sorted(r.uniform(0, DAY) for _ in range(r.randrange(10, 31))):
            times += self.attempt(kind, ip, t, 1)
        return times

    def attempt(self, kind: str, ip: str, t: float, k: int) -> list[float]:
        """One connection of an attacker that fails `k` times (1 for the one-shot kinds); the failure times."""
        r = self.rng
        port = self.port()
        ps = f"postfix/postscreen[{self.pid_postscreen}]: "
        if kind in ("pregreet", "hangup") or (kind == "non-smtp" and r.random() < 0.5):
            self.add(t, f"{ps}CONNECT from [{ip}]:{port} to [{self.lip(ip)}]:25", "postscreen CONNECT")
            f = t + r.uniform(0.05, 3.0)
            if kind == "pregreet":
                self.add(f, f"{ps}PREGREET {r.randrange(6, 40)} after {f - t:.2f} from [{ip}]:{port}: "
                            f"EHLO {self.helo(ip)}\\r\\n", "postscreen PREGREET")
            elif kind == "hangup":
                self.add(f, f"{ps}HANGUP after {f - t:.1f} from [{ip}]:{port} in tests before SMTP handshake",
                         "postscreen HANGUP")
            else:
                self.add(f, f"{ps}NON-SMTP COMMAND from [{ip}]:{port} after CONNECT: {r.choice(_NON_SMTP)}",
                         "postscreen NON-SMTP COMMAND")
            self.add(f + 0.001, f"{ps}DISCONNECT [{ip}]:{port}", "postscreen DISCONNECT")
            return [f]
        if kind == "rbl" and r.random() < 0.3:
            self.add(t, f"{ps}CONNECT from [{ip}]:{port} to [{self.lip(ip)}]:25", "postscreen CONNECT")
            self.add(t + 0.3, f"{ps}DNSBL rank {r.randrange(3, 9)} for [{ip}]:{port}", "postscreen DNSBL")
            f = t + r.uniform(0.5, 4)
            self.add(f, f"{ps}NOQUEUE: reject: RCPT from [{ip}]:{port}: 550 5.7.1 Service unavailable; "
                        f"client [{ip}] blocked using zen.spamhaus.org; from=<{r.choice(_GUESSED)}@"
                        f"{r.choice(_WORDS)}.example.com>, to=<{r.choice(self.users)}>, proto=ESMTP, "
                        f"helo=<{self.helo(ip)}>", "postscreen RBL reject")
            self.add(f + 0.1, f"{ps}DISCONNECT [{ip}]:{port}", "postscreen DISCONNECT")
            return [f]
        if kind == "imap-auth":
            sess = self.session()
            times = []
            user = r.choice(_GUESSED) if r.random() < 0.6 else r.choice(self.users)
            if r.random() < 0.3 and "@" not in user:
                user += f"@{DOMAIN}"
            known = user in self.user_places
            f = t
            for _ in range(k):
                self.add(f, f"dovecot: auth: passwd-file({user},{ip},<{sess}>): "
                            f"{'Password mismatch' if known else 'unknown user'}",
                         "dovecot auth mismatch" if known else "dovecot auth unknown user")
                times.append(f)
                f += r.uniform(1.5, 4.0)
            secs = max(1, int(f - t))
            self.add(f, f"dovecot: imap-login: Disconnected (auth failed, {k} attempts in {secs} secs): "
                        f"user=<{user}>, method=PLAIN, rip={ip}, lip={self.lip(ip)}, TLS, session=<{sess}>",
                     "dovecot imap-login auth failed")
            return times
        if kind in ("smtp-auth", "lost-auth"):
            where = r.random()
            if where < 0.7:
                smtpd, head = f"postfix/submission/smtpd[{r.choice(self.pids_submission)}]: ", "ehlo=2 starttls=1"
            elif where < 0.9:
                smtpd, head = f"postfix/smtps/smtpd[{r.choice(self.pids_smtps)}]: ", "ehlo=1"
            else:  # port 25, behind postscreen
                t = self.postscreen(t, ip, port)
                smtpd, head = f"postfix/smtpd[{r.choice(self.pids_smtpd)}]: ", "ehlo=2 starttls=1"
            ok = 3 if head != "ehlo=1" else 1
            self.add(t, f"{smtpd}connect from unknown[{ip}]", "smtpd connect")
            self.add(t + 0.2, f"{smtpd}Anonymous TLS connection established from unknown[{ip}]: "
                              f"{r.choice(_TLS_IN)}", "smtpd TLS established")
            f = t + r.uniform(0.5, 2)
            times = []
            if kind == "lost-auth":
                k = 1
                times.append(f)
            else:
                for _ in range(k):
                    if r.random() < 0.7:
                        self.add(f, f"{smtpd}warning: unknown[{ip}]: SASL LOGIN authentication failed: "
                                    f"UGFzc3dvcmQ6", "smtpd SASL LOGIN failed")
                    else:
                        self.add(f, f"{smtpd}warning: unknown[{ip}]: SASL PLAIN authentication failed: ",
                                 "smtpd SASL PLAIN failed")
                    times.append(f)
                    f += r.uniform(1.5, 3.5)
            if kind == "lost-auth" or r.random() < 0.5:
                self.add(f, f"{smtpd}lost connection after AUTH from unknown[{ip}]", "smtpd lost connection after AUTH")
                self.add(f + 0.001, f"{smtpd}disconnect from unknown[{ip}] {head} auth=0/{k} "
                                    f"commands={ok}/{ok + k}", "smtpd disconnect")
            else:
                self.add(f, f"{smtpd}disconnect from unknown[{ip}] {head} auth=0/{k} quit=1 "
                            f"commands={ok + 1}/{ok + 1 + k}", "smtpd disconnect")
            return times
        # The rest talk SMTP on port 25, behind postscreen.
        t = self.postscreen(t, ip, port)
        smtpd = f"postfix/smtpd[{r.choice(self.pids_smtpd)}]: "
        self.add(t, f"{smtpd}connect from unknown[{ip}]", "smtpd connect")
        helo = self.helo(ip)
        f = t + r.uniform(0.3, 2)
        if kind == "non-smtp":
            self.add(f, f"{smtpd}warning: non-SMTP command from unknown[{ip}]: {r.choice(_NON_SMTP)}",
                     "smtpd non-SMTP command")
            self.add(f + 0.001, f"{smtpd}disconnect from unknown[{ip}] unknown=0/1 commands=0/1", "smtpd disconnect")
            return [f]
        if kind == "pipelining":
            self.add(f, f"{smtpd}improper command pipelining after CONNECT from unknown[{ip}]: "
                        f"EHLO {helo}\\r\\nAUTH LOGIN\\r\\n", "smtpd improper command pipelining")
            self.add(f + 0.5, f"{smtpd}disconnect from unknown[{ip}] ehlo=1 auth=0/1 commands=1/2", "smtpd disconnect")
            return [f]
        sender = f"{r.choice(_GUESSED)}@{r.choice(_WORDS)}.example.com"
        times = []
        if kind == "harvest":
            for _ in range(k):
                rcpt = f"{r.choice(_GUESSED + _NAMES)}{r.randrange(100) if r.random() < 0.5 else ''}@{DOMAIN}"
                self.add(f, f"{smtpd}NOQUEUE: reject: RCPT from unknown[{ip}]: 550 5.1.1 <{rcpt}>: "
                            f"Recipient address rejected: User unknown in virtual mailbox table; "
                            f"from=<{sender}> to=<{rcpt}> proto=ESMTP helo=<{helo}>", "smtpd reject User unknown")
                times.append(f)
                f += r.uniform(0.3, 2.0)
        elif kind == "relay":
            k = 1
            rcpt = f"{r.choice(_NAMES)}@{r.choice(_WORDS)}.example.net"
            self.add(f, f"{smtpd}NOQUEUE: reject: RCPT from unknown[{ip}]: 454 4.7.1 <{rcpt}>: Relay access "
                        f"denied; from=<{sender}> to=<{rcpt}> proto=ESMTP helo=<{helo}>",
                     "smtpd reject Relay access denied")
            times.append(f)
        elif kind == "rbl":
            k = 1
            rcpt = r.choice(self.users)
            self.add(f, f"{smtpd}NOQUEUE: reject: RCPT from unknown[{ip}]: 554 5.7.1 Service unavailable; "
                        f"Client host [{ip}] blocked using zen.spamhaus.org; "
                        f"https://www.spamhaus.org/query/ip/{ip}; from=<{sender}> to=<{rcpt}> proto=ESMTP "
                        f"helo=<{helo}>", "smtpd reject RBL")
            times.append(f)
        else:
            raise ValueError(f"unknown attack kind {kind!r}")
        self.add(f + 0.2, f"{smtpd}disconnect from unknown[{ip}] ehlo=1 mail=1 rcpt=0/{k} quit=1 "
                          f"commands=3/{3 + k}", "smtpd disconnect")
        return times

    # --- the truth ---

    def truncate_times(self, fmt: str) -> None:
        for entry in (*self.attackers.values(), *self.legitimate.values()):
            if fmt == "classic":
                entry["times"] = [float(int(t)) for t in entry["times"]]
            else:
                entry["times"] = [int(t) + int((t - int(t)) * 1e6) / 1e6 for t in entry["times"]]

    def truth(self, lines: int, seed: int, fmt: str, start: datetime, end: datetime) -> dict:
        for entry in self.attackers.values():
            entry["times"] = [round(t, 6) for t in entry["times"]]
            entry["max_10min"] = _max_in_window(entry["times"])
        for entry in self.legitimate.values():
            entry["times"] = sorted(round(t, 6) for t in entry["times"])
        return {
            "version": VERSION, "lines": lines, "seed": seed, "fmt": fmt,
            "start": start.isoformat(), "end": end.isoformat(),
            "server": [SERVER_V4, SERVER_V6],
            "composition": {g: dict(sorted(c.items(), key=lambda kv: -kv[1])) for g, c in self.types.items()},
            "attackers": self.attackers,
            "legitimate": self.legitimate,
            "must_ban": [ip for ip, e in self.attackers.items() if e["max_10min"] >= 5],
            "slow": [ip for ip, e in self.attackers.items() if e["failures"] >= 10 and e["max_10min"] < 5],
        }


def describe(truth: dict) -> str:
    """The composition of a generated log, for people: line types with their share, then the cast."""
    out = []
    total = truth["lines"]
    for group in ("normal", "attack"):
        counts = truth["composition"][group]
        n = sum(counts.values())
        out.append(f"{group}: {n} lines ({n / total:.2%})")
        for kind, c in counts.items():
            out.append(f"  {c / total:8.3%}  {c:>8}  {kind}")
    attackers = truth["attackers"]
    pops = Counter(e["population"] for e in attackers.values())
    v6 = sum(":" in ip for ip in attackers)
    out.append(f"attackers: {len(attackers)} addresses ({v6} IPv6): "
               + ", ".join(f"{p} {pops[p]}" for p in ("fast", "slow", "scanner")))
    out.append(f"  must ban (5 failures within 10 min): {len(truth['must_ban'])}; "
               f"slow (10+ failures over the day): {len(truth['slow'])}")
    legit = truth["legitimate"]
    out.append(f"legitimate: {len(legit)} addresses ({sum(':' in ip for ip in legit)} IPv6), "
               f"{sum(1 for e in legit.values() if e['failures'])} with a failure, "
               f"most failures by one: {max((e['failures'] for e in legit.values()), default=0)}")
    out.append(f"time: {truth['start']} .. {truth['end']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fmt", choices=FORMATS, default="classic")
    p.add_argument("--out", type=Path, help="write here instead of the cache in bench/out/")
    args = p.parse_args(argv)
    started = time.perf_counter()
    if args.out:
        generate(args.out, args.lines, args.seed, fmt=args.fmt)
        path = args.out
    else:
        path = cached(args.lines, args.seed, args.fmt)
    seconds = time.perf_counter() - started
    truth = json.loads(truth_path(path).read_text(encoding="utf-8"))
    print(f"{path} ({seconds:.1f} s)\n{describe(truth)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
