"""The mail scene: Debian's Postfix and Dovecot in a network namespace, adaptive following their logs, and
clients in a peer namespace with many source addresses, IPv4 and IPv6.

    with Scene() as scene:                       # all up; all torn down on leaving, whatever happened
        attacker = scene.client("imap guesser")  # an address pair of its own /24 and /48
        scene.cli.call(together, [(imap_login, (attacker.v4, MAIL4, "alice", "guess"))] * 6)
        assert scene.wait_banned(attacker.v4)["reason"] == "score"

    python tests/scene.py up [--dir DIR]         # the same scene, left running (what a demo starts)
    python tests/scene.py down DIR               # and torn down from what `up` wrote in DIR/scene.json

Topology (nothing leaves the two namespaces; the root namespace is never touched):

    ade-XXXXXX-mail                                  ade-XXXXXX-cli
      10.25.0.1/16, 2001:db8::1/32 ─── veth ───      10.25.N.10/16, 2001:db8:N::10/32 (N = 1, 2, ...)
      postscreen+smtpd :25, submission :587          10.25.250.1: the relay (a small SMTP sink, :25)
      dovecot imap :143, imaps :993, pop3 :110       10.25.251.1: somewhere else (the same sink)
      adaptive run (its table, socket, /metrics)

Each client is one block: 10.25.N.10 and 2001:db8:N::10, so no two clients share a /24 or a /48 and no
test's bans reach another's. Block 1 is the allowlisted client. Postfix runs from its own config, queue
and data directories (`postfix -c`), chroot off, logging through postlogd to `log/postfix.log`; Dovecot
from its own config with its own base_dir, state_dir and instance_name, logging to `log/dovecot.log`;
both stop at `down`. `Scene(root=debroot.root("trixie"))` runs Debian 13's Postfix 3.10 and Dovecot 2.4
instead, chrooted in that root in a mount namespace of their own that sees the scene's directory at its
own path (Dovecot 2.4 gets a configuration in its new syntax); adaptive, the relay and the clients are
the host's either way. Everything lives in one directory (a fresh one by default: so postscreen's cache
starts empty), which must be reachable by the postfix, dovecot and nobody users.

The functions after the class (`imap_login`, `smtp_login`, `smtp_send`, `probe`, `flood`, ...) are run
inside a namespace by its worker (`Namespace.call`), so they are module-level and return plain data.
"""

from __future__ import annotations

import argparse
import errno
import imaplib
import ipaddress
import json
import os
import pwd
import select
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import debroot  # noqa: E402
from netns import PYTHON, REPO, Namespace, Namespaces, wait_for  # noqa: E402

SHIPPED = REPO / "conf" / "adaptive.toml"

MAIL4, MAIL6 = "10.25.0.1", "2001:db8::1"
RELAY4 = "10.25.250.1"         # the one relay outbound mail may go to
ELSEWHERE4 = "10.25.251.1"     # any other mail server: outbound SMTP to it is dropped
DOMAIN = "example.test"
USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
METRICS = "127.0.0.1:9469"     # inside the mail namespace
POOL = 40                      # client blocks made at set-up
GREET_WAIT = 1                 # postscreen_greet_wait, seconds: every new SMTP client waits this long

# Limits low enough for tests to cross in seconds; everything else is the shipped configuration.
RATE = {"rate": "30/minute", "burst": 12}
SPAM_LIMIT = 5                 # messages accepted from one client (without login) in spam_window
ACCOUNT_MESSAGES = 5           # messages sent by one SASL user in account_window


@dataclass(frozen=True)
class Client:
    """One client of the scene: an IPv4 address and an IPv6 address, each alone in its /24 and /48."""
    role: str
    v4: str
    v6: str

    def address(self, family: int) -> str:
        return self.v6 if family == 6 else self.v4


def block(n: int, role: str = "") -> Client:
    return Client(role, f"10.25.{n}.10", f"2001:db8:{n:x}::10")


ALLOWLISTED = block(1, "allowlisted")


def target(source: str) -> str:
    """What adaptive bans for a source: the IPv4 address, or the IPv6 /64 (scoring.ipv6_prefix)."""
    if ":" in source:
        return str(ipaddress.ip_network(f"{source}/64", strict=False))
    return source


def server_for(source: str) -> str:
    """The mail server's address of the source's family."""
    return MAIL6 if ":" in source else MAIL4


class SceneError(RuntimeError):
    """The scene could not be brought up; the message carries the log that says why."""


class Scene:
    """Postfix, Dovecot and adaptive in a mail namespace, clients in a peer namespace (see the module).

    `with Scene() as scene:` for tests (the scene is torn down on leaving); `up()` and `down()` for a
    scene that outlives its process (`python tests/scene.py up|down`). `adaptive_config` is TOML read
    after the scene's own adaptive configuration (a third `-c`: its keys win). Not for a host's real
    mail server: the scene's configuration is made for reproducible attacks, not for mail. The
    directory outlives `down` (its logs are the record of what happened): removing it is the caller's.
    """

    def __init__(self, directory: Path | None = None, adaptive_config: str = "", prefix: str = "ade",
                 root: Path | None = None):
        self.dir = Path(directory).resolve() if directory else Path(tempfile.mkdtemp(prefix=f"{prefix}-scene-"))
        # Another Debian's Postfix and Dovecot (`debroot.root("trixie")`), run chrooted in it; None: the host's.
        self.root = Path(root) if root else None
        self.extra = adaptive_config
        self.prefix = prefix
        self.nets: Namespaces | None = None
        self.mail: Namespace | None = None
        self.cli: Namespace | None = None
        self.pids: dict[str, int] = {}
        self.clients: list[Client] = [ALLOWLISTED]     # the blocks handed out, in order
        self._procs: dict[str, subprocess.Popen] = {}

    # --- paths ---

    @property
    def postfix_log(self) -> Path:
        return self.dir / "log" / "postfix.log"

    @property
    def dovecot_log(self) -> Path:
        return self.dir / "log" / "dovecot.log"

    def stderr(self, name: str) -> Path:
        """Where a process the scene started writes its stderr. Not in log/: adaptive watches its
        sources' directory, and its own writes there would wake it."""
        return self.dir / "run" / f"{name}.err"

    @property
    def adaptive_log(self) -> Path:
        return self.stderr("adaptive")

    @property
    def socket(self) -> Path:
        return self.dir / "adaptive" / "control.sock"

    @property
    def adaptive_toml(self) -> Path:
        return self.dir / "adaptive" / "scene.toml"

    @property
    def relayed(self) -> Path:
        """Where the relay writes each message it receives, one file each."""
        return self.dir / "relay"

    # --- up ---

    def up(self) -> None:
        """Namespaces, addresses, certificate, Dovecot, Postfix, the relay, then adaptive. On any
        failure, what was started is stopped again and SceneError says why."""
        for tool in ("ip", "nft", "openssl", *(("unshare", "chroot") if self.root else ("postfix", "dovecot"))):
            if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
                raise SceneError(f"{tool} is not installed")
        for tool in ("postfix", "dovecot") if self.root else ():
            if not (self.root / "usr" / "sbin" / tool).exists():
                raise SceneError(f"{tool} is not installed in {self.root}")
        try:
            self._network()
            self._files()
            self._dovecot()
            self._postfix()
            self._relay()
            self._adaptive()
            self._save()
        except BaseException:
            self.down()
            raise

    def _network(self) -> None:
        self.nets = Namespaces(self.prefix)
        self.mail, self.cli = self.nets.add("mail"), self.nets.add("cli")
        pool = [block(n) for n in range(1, POOL + 1)]
        cli_addresses = [f"{c.v4}/16" for c in pool] + [f"{c.v6}/32" for c in pool]
        cli_addresses += [f"{RELAY4}/16", f"{ELSEWHERE4}/16"]
        ends = self.nets.veth(self.mail, self.cli, [f"{MAIL4}/16", f"{MAIL6}/32"], cli_addresses)
        # Permanent neighbours: no ARP or neighbour discovery for sixty addresses, banned or not.
        self.nets.pin_neighbours(self.mail, ends[0], self.cli, ends[1])

    def client(self, role: str) -> Client:
        """The next unused client block, named for what it plays (its repr says so in a failure)."""
        if len(self.clients) == POOL:
            raise SceneError(f"more than {POOL - 1} clients asked for")
        self.clients.append(block(len(self.clients) + 1, role))
        return self.clients[-1]

    def _files(self) -> None:
        d = self.dir
        for sub in ("log", "run", "adaptive", "relay", "postfix/etc", "postfix/spool", "postfix/data", "vmail",
                    "dovecot/run", "dovecot/state", "mail"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        # The postfix, dovecot and nobody users reach sockets, mailboxes and logs below it.
        d.chmod(0o755)
        closed = [p for p in d.parents if not p.stat().st_mode & 0o001]
        if closed:
            raise SceneError(f"{closed[0]} is closed to other users (mode {closed[0].stat().st_mode & 0o777:o}): "
                             f"Postfix and Dovecot could not reach {d}")
        os.chown(d / "postfix" / "data", *self.user("postfix"))
        for sub in ("vmail", "mail"):
            os.chown(d / sub, 65534, 65534)
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN=mx.{DOMAIN}", "-addext", f"subjectAltName=DNS:mx.{DOMAIN},IP:{MAIL4},IP:{MAIL6}",
             "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"))
        os.chmod(d / "key.pem", 0o600)

    # --- the servers' release ---

    def server(self, command: list[str]) -> list[str]:
        """A Postfix or Dovecot command line: as it is for the host's servers; for a root's, chrooted in
        it (a mount namespace of its own, the scene's directory bound at its own path, so the logs land
        where the host's adaptive follows them)."""
        if self.root is None:
            return command
        return debroot.chroot_command(self.root, command, [self.dir])

    def user(self, name: str) -> tuple[int, int]:
        """A server user's uid and gid where the servers run: the root's /etc/passwd, not the host's."""
        if self.root is not None:
            return debroot.users(self.root)[name]
        entry = pwd.getpwnam(name)
        return entry.pw_uid, entry.pw_gid

    @property
    def dovecot24(self) -> bool:
        """Whether the servers' Dovecot is 2.4 (Debian 13), whose configuration has another syntax."""
        version = debroot.version(self.root or Path("/"), "dovecot-core")
        return version.split(":")[-1].startswith("2.4")

    # --- Dovecot ---

    def dovecot_conf(self, auth_verbose: bool = True) -> str:
        if self.dovecot24:
            return self.dovecot24_conf(auth_verbose)
        d = self.dir
        return f"""# The scene's Dovecot: its own base, state and instance name; nothing of /etc/dovecot.
{self._dovecot_common(auth_verbose)}
disable_plaintext_auth = no
login_trusted_networks =
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
mail_location = maildir:{d}/mail/%u
first_valid_uid = 1000
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/dovecot/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={d}/mail/%n
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""

    def _dovecot_common(self, auth_verbose: bool) -> str:
        """The settings both Dovecot syntaxes share."""
        d = self.dir
        return f"""instance_name = {self.prefix}-scene-{d.name}
base_dir = {d}/dovecot/run
state_dir = {d}/dovecot/state
protocols = imap pop3
listen = {MAIL4}, {MAIL6}
log_path = {d}/log/dovecot.log
info_log_path = {d}/log/dovecot.log
auth_verbose = {"yes" if auth_verbose else "no"}
auth_mechanisms = plain login"""

    def dovecot24_conf(self, auth_verbose: bool = True) -> str:
        """The same for Dovecot 2.4 and its new syntax: versioned, cleartext and TLS settings renamed,
        mail_driver and mail_path for mail_location, drivers named by their section, %{...} variables."""
        d = self.dir
        return f"""# The scene's Dovecot 2.4: its own base, state and instance name; nothing of /etc/dovecot.
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
{self._dovecot_common(auth_verbose)}
auth_allow_cleartext = yes
login_trusted_networks =
ssl = yes
ssl_server_cert_file = {d}/cert.pem
ssl_server_key_file = {d}/key.pem
mail_driver = maildir
mail_home = {d}/mail/%{{user|username}}
mail_path = ~/Maildir
first_valid_uid = 1000
passdb passwd-file {{
  passwd_file_path = {d}/dovecot/users
  auth_username_format = %{{user|username}}
}}
userdb static {{
  fields {{
    uid = 65534
    gid = 65534
    home = {d}/mail/%{{user|username}}
  }}
}}
service auth {{
  # 2.4: a listener of no type is no auth-client one, and Postfix's requests went unanswered.
  unix_listener auth-postfix {{
    type = auth
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""

    def _dovecot(self, auth_verbose: bool = True) -> None:
        d = self.dir
        (d / "dovecot" / "users").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in USERS.items()))
        (d / "dovecot" / "dovecot.conf").write_text(self.dovecot_conf(auth_verbose))
        started = _read(self.dovecot_log).count("starting up")
        self._start("dovecot", self.mail, self.server(["dovecot", "-F", "-c", str(d / "dovecot" / "dovecot.conf")]))
        self._wait("dovecot", lambda: _read(self.dovecot_log).count("starting up") > started
                   and (d / "dovecot" / "run" / "auth-postfix").exists(), self.dovecot_log)

    def restart_dovecot(self, auth_verbose: bool) -> None:
        """Dovecot stopped and started again with auth_verbose on or off. Not a reload (SIGHUP): after
        one, 2.3's new auth process cannot reach anvil's penalty socket (Permission denied) and stops
        delaying failures, and the old login processes are killed with their clients."""
        proc = self._procs.pop("dovecot")
        _stop(proc.pid, proc)
        self._dovecot(auth_verbose)

    # --- Postfix ---

    def main_cf(self) -> str:
        d = self.dir
        mailboxes = ", ".join(f"{u}@{DOMAIN}={u}/" for u in USERS)
        return f"""# The scene's Postfix: its own directories, no DNS, no chroot; nothing of /etc/postfix.
compatibility_level = 3.6
queue_directory = {d}/postfix/spool
data_directory = {d}/postfix/data
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $mydomain
inet_interfaces = {MAIL4}, [{MAIL6}]
inet_protocols = all
mydestination = localhost
mynetworks = 127.0.0.0/8 [::1]/128
alias_maps =
alias_database =
biff = no
maillog_file = {d}/log/postfix.log
maillog_file_prefixes = {d}/log
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
relayhost = [{RELAY4}]:25
smtp_tls_security_level = none
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = inline:{{ {mailboxes} }}
virtual_mailbox_base = {d}/vmail
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = reject_unlisted_recipient, reject_unauth_destination
smtpd_sasl_type = dovecot
smtpd_sasl_path = {d}/dovecot/run/auth-postfix
smtpd_sasl_auth_enable = no
smtpd_tls_cert_file = {d}/cert.pem
smtpd_tls_key_file = {d}/key.pem
smtpd_tls_security_level = may
postscreen_cache_map = btree:$data_directory/postscreen_cache
postscreen_greet_wait = {GREET_WAIT}s
"""

    MASTER_CF = """# The scene's services: postscreen in front of smtpd on 25, submission on 587; chroot off for all.
smtp       inet  n  -  n  -  1  postscreen
smtpd      pass  -  -  n  -  -  smtpd
dnsblog    unix  -  -  n  -  0  dnsblog
tlsproxy   unix  -  -  n  -  0  tlsproxy
submission inet  n  -  n  -  -  smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=no
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=
postlog    unix-dgram n - n -  1  postlogd
pickup     unix  n  -  n  60 1  pickup
cleanup    unix  n  -  n  -  0  cleanup
qmgr       unix  n  -  n  300 1 qmgr
tlsmgr     unix  -  -  n  1000? 1 tlsmgr
rewrite    unix  -  -  n  -  -  trivial-rewrite
bounce     unix  -  -  n  -  0  bounce
defer      unix  -  -  n  -  0  bounce
trace      unix  -  -  n  -  0  bounce
verify     unix  -  -  n  -  1  verify
flush      unix  n  -  n  1000? 0 flush
proxymap   unix  -  -  n  -  -  proxymap
proxywrite unix  -  -  n  -  1  proxymap
smtp       unix  -  -  n  -  -  smtp
relay      unix  -  -  n  -  -  smtp
showq      unix  n  -  n  -  -  showq
error      unix  -  -  n  -  -  error
retry      unix  -  -  n  -  -  error
discard    unix  -  -  n  -  -  discard
virtual    unix  -  n  n  -  -  virtual
anvil      unix  -  -  n  -  1  anvil
scache     unix  -  -  n  -  1  scache
"""

    def _postfix(self) -> None:
        etc = self.dir / "postfix" / "etc"
        (etc / "main.cf").write_text(self.main_cf())
        (etc / "master.cf").write_text(self.MASTER_CF)
        done = self.mail.exec(*self.server(["postfix", "-c", str(etc), "start"]), check=False)
        pid_file = self.dir / "postfix" / "spool" / "pid" / "master.pid"
        if done.returncode != 0:
            raise SceneError(f"postfix start: exit {done.returncode}: {done.stderr.strip()}\n"
                             f"{_read(self.postfix_log)}")
        self._wait("postfix", lambda: pid_file.exists() and "daemon started" in _read(self.postfix_log),
                   self.postfix_log)
        self.pids["postfix"] = int(pid_file.read_text().split()[0])

    # --- the relay and adaptive ---

    def _relay(self) -> None:
        self._start("relay", self.cli, [str(PYTHON), str(Path(__file__).resolve()), "relay", str(self.relayed)])
        ready = self.relayed / "listening"
        self._wait("relay", ready.exists, self.stderr("relay"))

    def adaptive_config(self) -> str:
        d = self.dir
        ports = ", ".join(f'{{ port = {p}, rate = "{RATE["rate"]}", burst = {RATE["burst"]} }}'
                          for p in (25, 143, 993))
        return f"""# The scene's adaptive: the shipped configuration, then this.
[sources.mail]
path = "{self.postfix_log}"
start = "beginning"
[sources.dovecot]
path = "{self.dovecot_log}"
start = "beginning"
[state]
path = "{d}/adaptive/state.db"
[control]
socket = "{self.socket}"
[metrics]
listen = "{METRICS}"
[rate_limit]
ports = [{ports}]
[outbound]
enabled = true
relays = ["{RELAY4}"]
[allowlist]
addresses = ["{ALLOWLISTED.v4}", "{ALLOWLISTED.v6}"]
[scoring]
spam_limit = {SPAM_LIMIT}
account_messages = {ACCOUNT_MESSAGES}
"""

    def _adaptive(self) -> None:
        self.adaptive_toml.write_text(self.adaptive_config())
        files = [SHIPPED, self.adaptive_toml]
        if self.extra:
            files.append(self.dir / "adaptive" / "extra.toml")
            files[-1].write_text(self.extra)
        self._start("adaptive", self.mail, [str(PYTHON), "-m", "adaptive", "run", "--dropins", "",
                                            *(arg for f in files for arg in ("-c", str(f)))])
        proc = self._procs["adaptive"]
        self._wait("adaptive", lambda: proc.poll() is None and self.adaptive("status").returncode == 0,
                   self.adaptive_log, give_up=lambda: proc.poll() is not None)

    # --- processes ---

    def _start(self, name: str, ns: Namespace, command: list[str]) -> None:
        # Its own stderr file: a server keeps the stderr it was started with, and a pipe would never close.
        err = open(self.stderr(name), "ab")
        try:
            proc = subprocess.Popen(["ip", "netns", "exec", ns.name, *command], stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err, start_new_session=True, cwd=REPO)
        finally:
            err.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid

    def _wait(self, what: str, ready: Callable[[], bool], log: Path, timeout: float = 30,
              give_up: Callable[[], bool] = lambda: False) -> None:
        if not wait_for(lambda: give_up() or ready(), timeout) or not ready():
            err = self.stderr(what.split()[0])
            why = "it exited" if give_up() else f"waited {timeout}s"
            raise SceneError(f"{what} did not come up ({why}):\n{_read(log)[-4000:]}\n"
                             f"{_read(err)[-4000:] if err != log else ''}")

    def _save(self) -> None:
        state = {"dir": str(self.dir), "namespaces": [n.name for n in self.nets.namespaces],
                 "pids": self.pids, "postfix_config": str(self.dir / "postfix" / "etc"),
                 "root": str(self.root) if self.root else None,
                 "socket": str(self.socket), "metrics": METRICS, "mail": [MAIL4, MAIL6],
                 "clients": f"10.25.N.10 and 2001:db8:N::10 (N in hex), N = 1 to {POOL}, in {self.cli.name}",
                 "allowlisted": [ALLOWLISTED.v4, ALLOWLISTED.v6], "relay": RELAY4, "elsewhere": ELSEWHERE4,
                 "users": USERS, "logs": [str(self.postfix_log), str(self.dovecot_log), str(self.adaptive_log)]}
        (self.dir / "scene.json").write_text(json.dumps(state, indent=2) + "\n")

    # --- down ---

    def down(self) -> None:
        """Stop adaptive, Postfix, Dovecot and the relay, kill whatever is left in the namespaces, delete
        them. Safe to call twice, and on a scene that came up half way."""
        for name in ("adaptive", "relay", "dovecot"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                _stop(proc.pid, proc)
        if self.mail is not None and (self.dir / "postfix" / "spool" / "pid" / "master.pid").exists():
            self.mail.exec(*self.server(["postfix", "-c", str(self.dir / "postfix" / "etc"), "stop"]), check=False)
        if self.nets is not None:
            for ns in self.nets.namespaces:
                _kill_namespace(ns.name)
            self.nets.close()
        self.pids.clear()

    def __enter__(self) -> Scene:
        self.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    # --- operating the scene ---

    def adaptive(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(PYTHON), "-m", "adaptive", *args, "--socket", str(self.socket)],
                              capture_output=True, text=True, timeout=60)

    def status(self) -> dict:
        done = self.adaptive("status", "--json")
        if done.returncode != 0:
            raise SceneError(f"adaptive status: {done.stderr}\n{self.adaptive_err()}")
        return json.loads(done.stdout)

    def bans(self) -> dict[str, dict]:
        """The live bans, by target, from `adaptive list --json`."""
        done = self.adaptive("list", "--json")
        if done.returncode != 0:
            raise SceneError(f"adaptive list: {done.stderr}\n{self.adaptive_err()}")
        return {b["target"]: b for b in map(json.loads, done.stdout.splitlines())}

    def adaptive_err(self) -> str:
        return _read(self.adaptive_log)

    def caught_up(self, timeout: float = 15) -> bool:
        """Wait until adaptive has read both logs to their ends (lag 0)."""
        def done() -> bool:
            return all(s.get("lag") == 0 for s in self.status()["sources"])
        return wait_for(done, timeout, 0.05)

    def reaches(self, source: str, port: int, timeout: float = 1.0) -> bool:
        """Whether `source` gets a greeting from the server on `port` (see `probe`)."""
        return self.cli.call(probe, source, server_for(source), port, timeout) == "open"

    def dropped(self, source: str, port: int, timeout: float = 0.5) -> bool:
        """Whether a connection from `source` to `port` goes unanswered (the kernel dropped it)."""
        return self.cli.call(probe, source, server_for(source), port, timeout) == "timeout"

    def wait_banned(self, source: str, timeout: float = 20) -> dict:
        """Wait until adaptive lists a ban of `source` (its `target`); the ban, as `list --json` has it.
        SceneError, with the scene's logs, if none comes within `timeout` seconds."""
        found: dict = {}

        def listed() -> bool:
            found.update(self.bans().get(target(source), {}))
            return bool(found)

        if not wait_for(listed, timeout, 0.1):
            raise SceneError(f"{source} was not banned within {timeout}s\n{self.logs()}")
        return found

    def metrics(self) -> str:
        """The daemon's /metrics text (fetched inside the mail namespace)."""
        return self.mail.call(fetch, f"http://{METRICS}/metrics")

    def logs(self) -> str:
        """Everything the scene logged, for a failing assertion's message."""
        files = sorted((self.dir / "log").glob("*")) + sorted((self.dir / "run").glob("*"))
        return "\n".join(f"--- {p.name}\n{_read(p)[-6000:]}" for p in files)


def _run(*cmd: str) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SceneError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _stop(pid: int, proc: subprocess.Popen | None = None, timeout: float = 10) -> None:
    """SIGTERM to one process we started, SIGKILL if it is still there after `timeout`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if proc is not None:
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    elif wait_for(lambda: not _alive(pid), timeout):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:    # a zombie of ours counts as gone
        return open(f"/proc/{pid}/stat").read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _kill_namespace(name: str) -> None:
    """Whatever still runs in our namespace (a server's children): SIGTERM, then SIGKILL, by pid."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        done = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        pids = [int(p) for p in done.stdout.split()]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if not pids or wait_for(lambda pids=pids: not any(_alive(p) for p in pids), 5):
            return


def down(directory: Path) -> None:
    """Tear down a scene `up` left running, from its `scene.json`. A recorded pid is signalled only if
    its command line still names the scene's directory: a pid reused since is someone else's."""
    state = json.loads((directory / "scene.json").read_text())
    for name in ("adaptive", "relay", "dovecot"):
        pid = state["pids"].get(name)
        if pid is not None and _runs_in(pid, directory):
            _stop(pid)
    mail = next((n for n in state["namespaces"] if n.endswith("-mail")), None)
    if mail is not None:
        stop = ["postfix", "-c", state["postfix_config"], "stop"]
        if state.get("root"):
            stop = debroot.chroot_command(Path(state["root"]), stop, [directory])
        subprocess.run(["ip", "netns", "exec", mail, *stop],
                       capture_output=True, text=True)
    for name in state["namespaces"]:
        _kill_namespace(name)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True)


def _runs_in(pid: int, directory: Path) -> bool:
    try:
        return str(directory.resolve()).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# --- clients: functions a namespace's worker runs ---

class _IMAP(imaplib.IMAP4):
    """imaplib's client, connecting from a chosen source address."""

    def __init__(self, source: str, host: str, port: int, timeout: float):
        self.source = source
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


class _IMAPS(_IMAP):
    def _create_socket(self, timeout):
        return _TLS.wrap_socket(super()._create_socket(timeout), server_hostname=self.host)


_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE      # the scene's certificate is self-signed, made at set-up


def imap_login(source: str, server: str, user: str, password: str, port: int = 143,
               io_timeout: float = 30) -> str:
    """One IMAP LOGIN (over TLS on 993): "ok" (then LOGOUT), "failed" (NO, then the connection is
    dropped, as guessers do; a LOGOUT could wait forever once the guesser is banned), or the error."""
    try:
        client = (_IMAPS if port == 993 else _IMAP)(source, server, port, io_timeout)
    except (OSError, imaplib.IMAP4.error) as e:
        return _failure(e)
    try:
        client.login(client._quote(user), password)
    except imaplib.IMAP4.error as e:
        client.shutdown()
        return "failed" if "AUTHENTICATIONFAILED" in str(e) else _failure(e)
    except OSError as e:
        client.shutdown()
        return _failure(e)
    try:
        client.logout()
    except (OSError, imaplib.IMAP4.error):
        client.shutdown()
    return "ok"


def smtp_login(source: str, server: str, user: str, password: str, port: int = 587,
               io_timeout: float = 30) -> str:
    """One SMTP AUTH PLAIN: "ok" (then QUIT), "failed" (535, then the connection is dropped), or the
    error. One mechanism only: smtplib's `login` would try the next one after a failure."""
    smtp = smtplib.SMTP(timeout=io_timeout, source_address=(source, 0))
    try:
        smtp.connect(server, port)
        smtp.ehlo(f"client.{DOMAIN}")
        smtp.user, smtp.password = user, password
        smtp.auth("PLAIN", smtp.auth_plain)
    except smtplib.SMTPAuthenticationError:
        smtp.close()
        return "failed"
    except (OSError, smtplib.SMTPException) as e:
        smtp.close()
        return _failure(e)
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
    return "ok"


def smtp_send(source: str, server: str, recipients: list[str], count: int = 1, port: int = 25,
              login: tuple[str, str] | None = None, sender: str = "someone@sender.test",
              io_timeout: float = 30) -> list[str]:
    """One SMTP session: `count` messages to `recipients`, after AUTH PLAIN if `login` is given. The
    first message's RCPT reply codes ("250", "550"...), then each message's DATA code (or "no rcpt"),
    then the error that ended the session early, if one did. (`io_timeout`, not `timeout`, which
    `Namespace.call` takes for itself.)"""
    results: list[str] = []
    smtp = smtplib.SMTP(timeout=io_timeout, source_address=(source, 0))
    try:
        smtp.connect(server, port)
        smtp.ehlo(f"client.{DOMAIN}")
        if login is not None:
            smtp.user, smtp.password = login
            smtp.auth("PLAIN", smtp.auth_plain)
        for n in range(count):
            smtp.mail(sender)
            accepted = 0
            for rcpt in recipients:
                code, _ = smtp.rcpt(rcpt)
                if n == 0:
                    results.append(str(code))
                accepted += code < 300
            if not accepted:
                smtp.rset()
                results.append("no rcpt")
                continue
            code, _ = smtp.data(f"From: {sender}\r\nSubject: scene {n}\r\n\r\nmessage {n}\r\n".encode())
            results.append(str(code))
        smtp.quit()
    except (OSError, smtplib.SMTPException) as e:
        smtp.close()
        results.append(_failure(e))
    return results


def together(calls: Iterable[tuple[Callable[..., Any], tuple]]) -> list[Any]:
    """Run the calls at once, in threads; their results in order. Dovecot delays each failure from an
    address more than the last (2, 4, 8, 15 s) and Postfix gives up on its auth server after 10 s:
    guesses made one after the other would take minutes, or time out."""
    calls = list(calls)
    results: list[Any] = [None] * len(calls)

    def one(i: int, func: Callable[..., Any], args: tuple) -> None:
        try:
            results[i] = func(*args)
        except Exception as e:      # a result, not a dead thread
            results[i] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=one, args=(i, f, a)) for i, (f, a) in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def probe(source: str, server: str, port: int, timeout: float = 1.0) -> str:
    """Connect from `source` and say goodbye politely: "open" once the whole greeting came (SMTP: the
    final `220 ` line, after postscreen's wait; IMAP: `* OK`), then QUIT or LOGOUT, so that the server
    logs a client that left, not one that hung up. "timeout" when the connection is not answered,
    else the error's name."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((source, 0))
        sock.connect((server, port))
    except OSError as e:
        sock.close()
        return _failure(e)
    sock.settimeout(GREET_WAIT + 10)
    try:
        if port == 993:
            sock = _TLS.wrap_socket(sock, server_hostname=server)
        stream = sock.makefile("rb")
        if port in (25, 587):
            while (line := stream.readline()) and not line.startswith(b"220 "):
                pass
            sock.sendall(b"QUIT\r\n")
        else:
            line = stream.readline()
            sock.sendall(b"a LOGOUT\r\n")
        stream.readline()
        return "open" if line else "closed"
    except OSError as e:
        return _failure(e)
    finally:
        sock.close()


_flooded: list[socket.socket] = []


def flood(source: str, server: str, port: int, count: int, wait: float = 1.5) -> int:
    """Open `count` connections from `source` to `port` at once and keep those that were answered
    within `wait` seconds (`release()` closes them); returns how many were."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    pending = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((source, 0))
        sock.connect_ex((server, port))
        pending.append(sock)
    deadline = time.monotonic() + wait
    connected: list[socket.socket] = []
    while pending and time.monotonic() < deadline:
        _, ready, _ = select.select([], pending, [], max(0.0, deadline - time.monotonic()))
        for sock in ready:
            pending.remove(sock)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected.append(sock)
            else:
                sock.close()
    for sock in pending:
        sock.close()
    _flooded.extend(connected)
    return len(connected)


def end_flood() -> int:
    """Close what `flood` kept; how many."""
    count = len(_flooded)
    while _flooded:
        _flooded.pop().close()
    return count


def fetch(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def _failure(e: BaseException) -> str:
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, OSError) and e.errno:
        return errno.errorcode.get(e.errno, str(e))
    return f"{type(e).__name__}: {e}"


# --- the relay: a small SMTP server that writes what it receives ---

def serve_relay(directory: Path, host: str = "0.0.0.0", port: int = 25) -> None:
    """Accept SMTP on `port` and write each message to `directory`/N.eml (envelope in headers). Speaks
    just enough SMTP for Postfix's smtp client: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""
    listener = socket.create_server((host, port), backlog=64, reuse_port=False)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "listening").write_text(f"{os.getpid()}\n")
    count = 0
    lock = threading.Lock()

    def session(conn: socket.socket) -> None:
        nonlocal count
        stream = conn.makefile("rb")
        reply = lambda text: conn.sendall(text.encode() + b"\r\n")    # noqa: E731
        reply(f"220 relay.{DOMAIN} ESMTP scene relay")
        sender, rcpts = "", []
        with conn:
            while line := stream.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    reply(f"250-relay.{DOMAIN}\r\n250 8BITMIME" if verb == b"EHLO" else f"250 relay.{DOMAIN}")
                elif verb == b"MAIL":
                    sender, rcpts = line[10:].strip().decode(errors="replace"), []
                    reply("250 2.1.0 Ok")
                elif verb == b"RCPT":
                    rcpts.append(line[8:].strip().decode(errors="replace"))
                    reply("250 2.1.5 Ok")
                elif verb == b"DATA":
                    reply("354 End data with <CR><LF>.<CR><LF>")
                    body = b""
                    while (data := stream.readline()) and data != b".\r\n":
                        body += data
                    with lock:
                        count += 1
                        name = directory / f"{count}.eml"
                    name.write_bytes(f"X-Sender: {sender}\r\nX-Recipients: {' '.join(rcpts)}\r\n".encode() + body)
                    reply("250 2.0.0 Ok: queued")
                elif verb == b"QUIT":
                    reply("221 2.0.0 Bye")
                    return
                elif verb in (b"RSET", b"NOOP"):
                    reply("250 2.0.0 Ok")
                else:
                    reply("502 5.5.2 Error: command not recognized")

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=session, args=(conn,), daemon=True).start()


# --- the command line: up, down (and the relay, which `up` starts in the client namespace) ---

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scene.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="bring the scene up and leave it running; prints its scene.json")
    p.add_argument("--dir", type=Path, help="the scene's directory (default: a new one under /tmp)")
    p.add_argument("--root", metavar="SUITE", choices=sorted(debroot.PACKAGES),
                   help="run another Debian's Postfix and Dovecot, from debroot's cached root (built if missing)")
    p = sub.add_parser("down", help="tear down the scene `up` left in DIR")
    p.add_argument("dir", type=Path)
    p = sub.add_parser("relay", help=argparse.SUPPRESS)
    p.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "relay":
        serve_relay(args.dir)
        return 0
    if args.command == "down":
        down(args.dir)
        print(f"scene in {args.dir} torn down; its logs stay in {args.dir / 'log'}")
        return 0
    if os.geteuid() != 0:
        print("scene.py: needs root (network namespaces, Postfix, Dovecot)", file=sys.stderr)
        return 1
    try:
        scene = Scene(args.dir, root=debroot.root(args.root) if args.root else None)
    except debroot.RootError as e:
        print(f"scene.py: {e}", file=sys.stderr)
        return 1
    try:
        scene.up()
    except SceneError as e:
        print(f"scene.py: {e}", file=sys.stderr)
        return 1
    print((scene.dir / "scene.json").read_text(), end="")
    print(f"# adaptive: {PYTHON} -m adaptive list --socket {scene.socket}\n"
          f"# down:     {sys.executable} {Path(__file__).resolve()} down {scene.dir}")
    return 0


if __name__ == "__main__":
    import scene as _self  # the module under its own name, so the workers can unpickle its functions
    sys.exit(_self.main())
