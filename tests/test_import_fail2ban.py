"""`adaptive import fail2ban`: fail2ban's configuration read as fail2ban reads it (checked against
fail2ban's own reader, on a copy of this host's /etc/fail2ban), the drop-in it makes (it loads, and says
where every key came from), and the live bans of a database a real fail2ban 1.0 made, brought into
adaptive's state, or through a running daemon's control socket."""

from __future__ import annotations

import math
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import pytest
from adaptive import config
from adaptive.migrate import dropin, jails
from adaptive.migrate.bans import DatabaseError, read_bans
from adaptive.migrate.jails import Configuration, Fail2banError, evaluate, seconds
from adaptive.state import State

from configs import write_local
from netns import wait_for

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "conf" / "adaptive.toml"
FAIL2BAN = Path("/etc/fail2ban")

needs_fail2ban_files = pytest.mark.skipif(not (FAIL2BAN / "jail.conf").is_file(),
                                          reason="/etc/fail2ban/jail.conf is missing (apt-get install fail2ban)")


def resolver(names: dict[str, list[str]]):
    """A resolver that knows `names` and nothing else."""
    def resolve(host: str) -> list[str]:
        if host not in names:
            raise OSError(f"[Errno -2] {host}: Name or service not known")
        return names[host]
    return resolve


HOSTS = resolver({"localhost": ["127.0.0.1", "::1"], "mx.example.org": ["198.51.100.10", "2001:db8::10"]})


def prose(text: str) -> str:
    """The drop-in's text with its comments unwrapped (and its spaces made single)."""
    return " ".join(text.replace("\n#", " ").split())


def jail_dir(tmp_path: Path, local: str = "", files: dict[str, str] | None = None) -> Path:
    """A copy of this host's /etc/fail2ban, as Debian ships it (the host's own .local files left out),
    with `jail.local` and the other files given (name relative to the directory -> text)."""
    directory = tmp_path / "fail2ban"
    shutil.copytree(FAIL2BAN, directory, symlinks=True)
    for stray in [*directory.glob("*.local"), *directory.glob("*.d/*.local")]:
        stray.unlink()
    if local:
        (directory / "jail.local").write_text(local)
    for name, text in (files or {}).items():
        (directory / name).parent.mkdir(exist_ok=True)
        (directory / name).write_text(text)
    return directory


MAIL = """
[DEFAULT]
ignoreip = 127.0.0.1/8 ::1 localhost 192.0.2.0/24, 203.0.113.7
           mx.example.org nosuch.invalid 198.51.100.77/24
bantime = 1h
findtime = 10m
maxretry = 5
bantime.increment = true
bantime.maxtime = 1w

[postfix-sasl]
enabled = true
logpath = {log}

[dovecot]
enabled = true
logpath = {log}
maxretry = 3

[postfix-rbl]
enabled = true
logpath = {log}

[sshd]
enabled = true
"""


# --- reading fail2ban's files ---

@needs_fail2ban_files
def test_the_files_are_read_in_fail2bans_order_with_the_paths_includes(tmp_path):
    directory = jail_dir(tmp_path, "[DEFAULT]\n", {name: "[DEFAULT]\n" for name in [
        "jail.d/b.conf", "jail.d/a.local", "jail.d/a.conf", "paths-debian.local"]})
    read = Configuration.read(directory, "jail")
    # jail.conf's [INCLUDES] before = paths-debian.conf, whose before = paths-common.conf; a .local beside
    # each included file follows it; then jail.d/*.conf, jail.local, jail.d/*.local, each in name order.
    assert read.files == ["paths-common.conf", "paths-debian.conf", "paths-debian.local", "jail.conf",
                          "jail.d/a.conf", "jail.d/b.conf", "jail.d/defaults-debian.conf", "jail.local",
                          "jail.d/a.local"]


@needs_fail2ban_files
def test_values_are_those_fail2bans_own_reader_reads(tmp_path):
    reader = pytest.importorskip("fail2ban.client.configreader", reason="fail2ban's Python package is missing")
    directory = jail_dir(tmp_path, MAIL.format(log=tmp_path / "mail.log") + """
[postfix]
enabled = true
mode = aggressive
bantime = %(known/bantime)s
findtime = %(default/findtime)s
logpath = %(syslog_mail)s
          %(sieve/logpath)s
""", {"jail.d/z.local": "[DEFAULT]\nbantime = 2h\n[dovecot]\nmaxretry = 4\n"
                        "[apache-badbots]\nbantime = 2*%(known/bantime)s\n"})
    theirs = reader.ConfigReaderUnshared(basedir=str(directory))
    assert theirs.read("jail")
    ours = Configuration.read(directory, "jail")
    for section in ["postfix", "postfix-sasl", "postfix-rbl", "dovecot", "sieve", "sshd", "recidive", "exim",
                    "apache-badbots"]:
        for key in ["enabled", "filter", "logpath", "backend", "bantime", "findtime", "maxretry", "ignoreip",
                    "bantime.increment", "bantime.maxtime", "port"]:
            assert ours.get(section, key).value == theirs.get(section, key), (section, key)
    assert ours.get("apache-badbots", "bantime").value == "2*48h"   # known/: jail.conf's, before z.local's
    assert ours.get("postfix", "bantime").value == "2h"      # known/ of a key the section never had: the default
    assert ours.get("dovecot", "maxretry").value == "4"      # jail.d/*.local comes after jail.local


def test_interpolation_names_defaults_other_sections_and_the_section_itself(tmp_path):
    directory = tmp_path / "f2b"
    directory.mkdir()
    (directory / "jail.conf").write_text("""
[INCLUDES]
before = paths.conf
[DEFAULT]
where = /var/log
bantime = 10m
mode = normal
filter = %(__name__)s[mode=%(mode)s]
percent = 100%%
[postfix]
logpath = %(mail_log)s
bantime = 1h
other = %(dovecot/logpath)s and %(default/bantime)s
[dovecot]
logpath = %(where)s/dovecot.log
broken = %(nothing)s
""")
    (directory / "paths.conf").write_text("[DEFAULT]\nmail_log = %(where)s/mail.log\n")
    (directory / "jail.local").write_text("[postfix]\nbantime = 2 * %(known/bantime)s\n")
    read = Configuration.read(directory, "jail")
    assert read.get("postfix", "logpath").value == "/var/log/mail.log"
    assert read.get("postfix", "logpath").describe() == \
        "jail.conf [postfix] logpath = %(mail_log)s, via paths.conf mail_log, jail.conf where"
    assert read.get("postfix", "filter").value == "postfix[mode=normal]"
    assert read.get("postfix", "bantime").value == "2 * 1h"
    assert read.get("postfix", "bantime").origin == "jail.local [postfix] bantime"
    assert read.get("postfix", "other").value == "/var/log/dovecot.log and 10m"
    assert read.get("dovecot", "percent").value == "100%"
    assert read.get("dovecot", "bantime").origin == "jail.conf [DEFAULT] bantime"
    with pytest.raises(Fail2banError, match=r"jail.conf \[dovecot\] broken.*%\(nothing\)s names nothing"):
        read.get("dovecot", "broken")
    with pytest.raises(KeyError):
        read.get("dovecot", "absent")


def test_a_file_configparser_refuses_is_named(tmp_path):
    directory = tmp_path / "f2b"
    directory.mkdir()
    (directory / "jail.conf").write_text("[postfix]\nenabled = true\nenabled = false\n")
    with pytest.raises(Fail2banError, match=r"jail.conf: .*option 'enabled'.*already exists"):
        jails.read(directory)
    with pytest.raises(Fail2banError, match="no such directory"):
        jails.read(tmp_path / "nowhere")


def test_durations_are_read_as_fail2ban_reads_them():
    cases = {"600": 600, "10m": 600, "1h 30m": 5400, "1d12h": 129600, "-1": -1, "1w": 604800, "2h*2": 14400,
             "1year-6mo": 15778800, "48h": 172800, "30 seconds": 30, "1 hour": 3600}
    assert {text: seconds(text) for text in cases} == cases
    try:
        from fail2ban.server.mytime import MyTime
    except ImportError:
        return
    assert {text: MyTime.str2seconds(text) for text in cases} == cases


@pytest.mark.parametrize("expression", ["__import__('os').system('true')", "ban.__class__", "open('/etc/shadow')",
                                        "[1, 2][0]", "2 ** 100000", "1 << 5000", "lambda: 1"])
def test_an_expression_is_arithmetic_or_refused(expression):
    with pytest.raises(ValueError):
        evaluate(expression, {"ban": {"Time": 600, "Count": 1}})


def test_fail2bans_formulas_evaluate_as_fail2ban_evaluates_them():
    ban = {"Time": 600, "Count": 3}
    assert evaluate(dropin.DEFAULT_FORMULA, {"ban": ban, "banFactor": 1}) == 4800
    exp = "ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)"
    assert evaluate(exp, {"ban": ban, "banFactor": 1, "math": jails.MATH, **jails.FUNCTIONS}) == \
        pytest.approx(600 * math.exp(3))


# --- the drop-in ---

@needs_fail2ban_files
def test_the_drop_in_of_the_mail_jails_loads_and_carries_fail2bans_values(tmp_path):
    log = tmp_path / "mail.log"
    log.touch()
    made = dropin.translate(jails.read(jail_dir(tmp_path, MAIL.format(log=log))), resolver=HOSTS)
    path = tmp_path / "fail2ban.toml"
    path.write_text(made.text)
    loaded = config.load([SHIPPED, path], dropins=None)

    assert made.migrated == ("postfix-rbl", "dovecot", "postfix-sasl")
    assert [name for name, _ in made.left_out] == ["sshd (jail.local [sshd] enabled)"]
    assert {name: str(s.path) for name, s in loaded.sources.items()} == {"mail": str(log)}
    assert [str(n) for n in loaded.allowlist.addresses] == \
        ["192.0.2.0/24", "203.0.113.7/32", "198.51.100.10/32", "2001:db8::10/128", "198.51.100.0/24"]
    scoring, decisions = loaded.scoring, loaded.decisions
    assert (scoring.threshold, scoring.half_life) == (4.5, 3600)       # 5 within 10m, as the shipped keys
    weights = dict(scoring.weights)
    assert weights["rbl_listed"] == 4.5          # postfix-rbl's maxretry = 1: one listing bans
    assert weights["auth_failure"] == pytest.approx(4.5 / 2.5, abs=1e-3)   # dovecot's maxretry = 3
    assert (decisions.ban_base, decisions.ban_multiplier, decisions.ban_max) == (3600, 2, 604800)
    assert decisions.lookback == 86400 + 3 * 3600          # dbpurgeage 1d, + 3 × bantime
    assert "nosuch.invalid does not resolve" in prose(made.text)
    assert any("nosuch.invalid" in w for w in made.warnings)
    assert "localhost resolved to 127.0.0.1, ::1: loopback, which adaptive always allows" in prose(made.text)
    assert "sshd (jail.local [sshd] enabled): filter sshd: not mail" in prose(made.text)


@needs_fail2ban_files
def test_every_key_of_the_drop_in_names_the_fail2ban_file_and_key_it_came_from(tmp_path):
    log = tmp_path / "mail.log"
    log.touch()
    made = dropin.translate(jails.read(jail_dir(tmp_path, MAIL.format(log=log))), resolver=HOSTS)
    origin = re.compile(r"# .*(jail\.(conf|local)|jail\.d/[^ ]+|paths-\w+\.conf|fail2ban\.conf|fail2ban's default)"
                        r"( \[[^]]+\] [\w.]+)?")
    keys = [line for line in made.text.splitlines()
            if line and not line.startswith(("#", "[", "]", "addresses = ["))]
    assert len(keys) >= 12
    for line in keys:
        assert origin.search(line), line
    tomllib.loads(made.text)


@needs_fail2ban_files
def test_a_jail_local_overrides_jail_conf_and_disabled_jails_stay_out(tmp_path):
    directory = jail_dir(tmp_path, "[postfix]\nenabled = true\nlogpath = /var/log/postfix.log\n"
                                   "[dovecot]\nenabled = true\nlogpath = /var/log/dovecot.log\n",
                         {"jail.d/off.local": "[dovecot]\nenabled = false\n"})
    made = dropin.translate(jails.read(directory), resolver=HOSTS)
    assert made.migrated == ("postfix",)
    assert made.sources == {"postfix": "/var/log/postfix.log"}
    assert "type = \"file\"  # jail.conf [postfix] backend = auto: a file" in made.text
    assert "path = \"/var/log/postfix.log\"  # jail.local [postfix] logpath" in made.text
    # the jail.conf values stand: 5 in 10m, 10m bans that do not grow
    assert "ban_base = 600  # jail.conf [DEFAULT] bantime = 10m" in made.text
    assert "ban_multiplier = 1  # bantime.increment is not set (false): every ban lasts bantime" in made.text


@needs_fail2ban_files
def test_journal_jails_get_one_journal_source_with_their_matches_ored(tmp_path):
    directory = jail_dir(tmp_path, "[dovecot]\nenabled = true\nbackend = systemd\n"
                                   "journalmatch = _SYSTEMD_UNIT=dovecot.service + _COMM=dovecot\n"
                                   "[postfix]\nenabled = true\nbackend = systemd\n"
                                   "journalmatch = _SYSTEMD_UNIT=postfix@-.service bogus\n")
    made = dropin.translate(jails.read(directory), resolver=HOSTS)
    assert made.sources == {"journal": "journal"}
    assert "The systemd journal, read by jails postfix, dovecot" in prose(made.text)   # jail.conf's order
    assert "Left out, not journal matches adaptive takes (FIELD=value, FIELD in upper case): bogus" in prose(made.text)
    path = tmp_path / "d.toml"
    path.write_text(made.text)
    loaded = config.load([SHIPPED, path], dropins=None).sources["journal"]
    assert (loaded.type, loaded.match) == ("journal", ("_SYSTEMD_UNIT=postfix@-.service",
                                                       "_SYSTEMD_UNIT=dovecot.service", "_COMM=dovecot"))


@needs_fail2ban_files
def test_adaptives_own_allowlist_and_source_names_are_kept(tmp_path):
    log = tmp_path / "mail.log"
    log.touch()
    local = tmp_path / "local.toml"
    local.write_text(f'[sources.maillog]\npath = "{log}"\n[allowlist]\naddresses = ["10.1.0.0/16"]\n')
    current = config.load([SHIPPED, local], dropins=None)
    made = dropin.translate(jails.read(jail_dir(tmp_path, MAIL.format(log=log))), current, resolver=HOSTS)
    assert made.sources == {"maillog": str(log)}
    path = tmp_path / "d.toml"
    path.write_text(made.text)
    loaded = config.load([SHIPPED, local, path], dropins=None)
    assert str(loaded.allowlist.addresses[0]) == "10.1.0.0/16"
    assert "kept: adaptive's configuration allowlists it already" in prose(made.text)


@needs_fail2ban_files
@pytest.mark.parametrize(("increment", "multiplier", "ban_max", "series"), [
    ("bantime.multipliers = 1 2 4 8 16 32 64", 2, 600 * 64, "10m, 20m, 40m, 1h20m, 2h40m, 5h20m, 10h40m, 10h40m"),
    ("bantime.formula = ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)\n"
     "bantime.factor = 1\nbantime.maxtime = 5d", 2.718, 5 * 86400, "10m, 27m10s, 1h13m, 3h20m"),
    ("bantime.factor = 2\nbantime.maxtime = 1d", 2.245, 86400, "10m, 40m, 1h20m, 2h40m"),
])
def test_bantime_increment_becomes_the_nearest_geometric_escalation(tmp_path, increment, multiplier, ban_max,
                                                                    series):
    directory = jail_dir(tmp_path, f"[DEFAULT]\nbantime = 10m\nbantime.increment = true\n{increment}\n"
                                   "[postfix-sasl]\nenabled = true\nlogpath = /var/log/mail.log\n")
    made = dropin.translate(jails.read(directory), resolver=HOSTS)
    path = tmp_path / "d.toml"
    path.write_text(made.text)
    decisions = config.load([SHIPPED, path], dropins=None).decisions
    assert (decisions.ban_base, decisions.ban_multiplier, decisions.ban_max) == (600, multiplier, ban_max)
    assert f"fail2ban's {series}" in prose(made.text)


@pytest.mark.parametrize("retries", [1, 2, 3, 5, 10, 20])
@pytest.mark.parametrize("findtime", [60, 600, 3600])
def test_maxretry_failures_within_findtime_always_reach_the_threshold_and_one_fewer_never(tmp_path, retries,
                                                                                       findtime):
    directory = tmp_path / "f2b"
    directory.mkdir()
    (directory / "jail.conf").write_text(f"[DEFAULT]\nmaxretry = {retries}\nfindtime = {findtime}\n"
                                         "[postfix]\nenabled = true\nlogpath = /var/log/mail.log\n")
    path = tmp_path / "d.toml"
    path.write_text(dropin.translate(jails.read(directory), resolver=HOSTS).text)
    scoring = config.load([SHIPPED, path], dropins=None).scoring
    least = 1 + (retries - 1) * 2 ** (-findtime / scoring.half_life)   # the first at 0, the rest at findtime
    assert least >= scoring.threshold > retries - 1


def test_the_command_refuses_to_overwrite_without_force_and_checks_what_it_writes(tmp_path):
    directory = tmp_path / "f2b"
    directory.mkdir()
    (directory / "jail.conf").write_text("[DEFAULT]\nbantime = 2h\n[dovecot]\nenabled = true\n"
                                         f"logpath = {tmp_path / 'mail.log'}\n")
    output = tmp_path / "fail2ban.toml"
    output.write_text("# mine\n")
    args = ["import", "fail2ban", "--jail-dir", str(directory), "-c", str(SHIPPED), "--dropins", "",
            "--output", str(output)]
    refused = adaptive(*args)
    assert refused.returncode == 1 and "is there already: --force" in refused.stderr
    assert output.read_text() == "# mine\n"
    done = adaptive(*args, "--force")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {output}: jails dovecot migrated")
    assert "ban_base = 7200  # jail.conf [DEFAULT] bantime = 2h" in output.read_text()
    assert adaptive("check-config", "-c", str(SHIPPED), "-c", str(output), "--dropins", "").returncode == 0
    printed = adaptive("import", "fail2ban", "--jail-dir", str(directory), "-c", str(SHIPPED), "--dropins", "")
    assert printed.returncode == 0 and printed.stdout == output.read_text()
    missing = adaptive("import", "fail2ban", "--jail-dir", str(tmp_path / "none"), "--dropins", "")
    assert missing.returncode == 1 and "no such directory" in missing.stderr


def adaptive(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adaptive", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


# --- the bans ---

# fail2ban 1.0's tables of bans (server/database.py, schema version 4), for databases made here by hand.
SCHEMA = """
CREATE TABLE fail2banDb(version INTEGER);
INSERT INTO fail2banDb VALUES (4);
CREATE TABLE jails(name TEXT NOT NULL UNIQUE, enabled INTEGER NOT NULL DEFAULT 1);
CREATE TABLE bans(jail TEXT NOT NULL, ip TEXT, timeofban INTEGER NOT NULL, bantime INTEGER NOT NULL,
                  bancount INTEGER NOT NULL default 1, data JSON, FOREIGN KEY(jail) REFERENCES jails(name));
CREATE TABLE bips(ip TEXT NOT NULL, jail TEXT NOT NULL, timeofban INTEGER NOT NULL, bantime INTEGER NOT NULL,
                  bancount INTEGER NOT NULL default 1, data JSON, PRIMARY KEY(ip, jail),
                  FOREIGN KEY(jail) REFERENCES jails(name));
"""


def database(path: Path, bans: list[tuple[str, str, int, int, int]], purged: int = 0) -> Path:
    """A fail2ban database holding `bans` (ip, jail, timeofban, bantime, bancount), each in `bans` and
    the latest per address and jail in `bips`; the first `purged` gone from `bans`, as dbpurgeage does."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    for i, (ip, jail, at, length, count) in enumerate(bans):
        if i >= purged:
            db.execute("INSERT INTO bans VALUES (?, ?, ?, ?, ?, '{}')", (jail, ip, at, length, count))
        db.execute("INSERT OR REPLACE INTO bips VALUES (?, ?, ?, ?, ?, '{}')", (ip, jail, at, length, count))
    db.commit()
    db.close()
    return path


NOW = 1_800_000_000


def test_live_bans_come_with_their_time_left_and_earlier_bans(tmp_path):
    path = database(tmp_path / "f2b.sqlite3", [
        ("192.0.2.10", "postfix-sasl", NOW - 9000, 600, 1),       # purged from `bans`
        ("192.0.2.10", "postfix-sasl", NOW - 5000, 1200, 2),
        ("192.0.2.10", "postfix-sasl", NOW - 100, 2400, 3),       # live, the third
        ("192.0.2.10", "dovecot", NOW - 50, 600, 1),              # live, but ends sooner
        ("::ffff:198.51.100.5", "dovecot", NOW - 10, -1, 1),      # for good; written as IPv4
        ("203.0.113.1", "dovecot", NOW - 700, 600, 1),            # over
        ("203.0.113.2", "sshd", NOW - 10, 600, 1),                # not migrated
        ("not-an-address", "dovecot", NOW - 10, 600, 1),
    ], purged=1)
    found = read_bans(path, {"postfix-sasl", "dovecot"}, NOW)
    assert [(b.target, b.jail, b.end, b.count) for b in found.live] == [
        ("192.0.2.10", "postfix-sasl", NOW + 2300, 4),
        ("198.51.100.5", "dovecot", None, 1)]
    assert found.live[0].earlier == ((NOW - 5000, 1200), (NOW - 50, 600), (NOW - 100, 0))   # one time unknown
    assert (found.expired, found.other_jails, found.version) == ({"dovecot": 1}, {"sshd": 1}, 4)
    assert found.invalid == [("not-an-address", "dovecot", "not an IP address or prefix")]


def test_a_file_that_is_no_fail2ban_database_is_refused(tmp_path):
    with pytest.raises(DatabaseError, match="no such file"):
        read_bans(tmp_path / "none.sqlite3", {"dovecot"}, NOW)
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(DatabaseError, match="not a database of fail2ban 0.10 or later"):
        read_bans(other, {"dovecot"}, NOW)
    text = tmp_path / "text.sqlite3"
    text.write_text("hello " * 1000)
    with pytest.raises(DatabaseError):
        read_bans(text, {"dovecot"}, NOW)


def import_config(tmp_path: Path, directory: Path) -> list[str]:
    """The import's arguments for adaptive's configuration and fail2ban's, all in the test's directory."""
    (tmp_path / "mail.log").touch()
    local = write_local(tmp_path)
    return ["import", "fail2ban", "--jail-dir", str(directory), "-c", str(SHIPPED), "-c", str(local),
            "--dropins", "", "--output", str(tmp_path / "fail2ban.toml"), "--force", "-v"]


def test_bans_go_into_the_state_when_the_daemon_does_not_run(tmp_path):
    directory = tmp_path / "f2b"
    directory.mkdir()
    (directory / "jail.conf").write_text("[DEFAULT]\nignoreip = 192.0.2.128/25\n[dovecot]\nenabled = true\n"
                                         f"logpath = {tmp_path / 'mail.log'}\n")
    now = int(time.time())
    db = database(tmp_path / "f2b.sqlite3", [
        ("192.0.2.7", "dovecot", now - 60, 3600, 1), ("192.0.2.200", "dovecot", now - 60, 3600, 1),
        ("127.0.0.9", "dovecot", now - 60, 3600, 1), ("2001:db8::/64", "dovecot", now - 60, -1, 1),
        ("2001:db8:1::/56", "dovecot", now - 60, 3600, 1)])
    run = adaptive(*import_config(tmp_path, directory), "--bans", str(db))
    assert run.returncode == 0, run.stderr
    assert f"into the state database {tmp_path / 'state.db'}: the daemon does not run" in run.stdout
    assert "2 ban(s) imported: dovecot 2" in run.stdout
    assert "192.0.2.200 (jail dovecot): allowlisted: allowlist 192.0.2.128/25" in run.stdout
    assert "127.0.0.9 (jail dovecot): never banned: loopback" in run.stdout
    assert "2001:db8:1::/56 (jail dovecot): no ban set takes /56" in run.stdout
    with State(tmp_path / "state.db") as state:
        bans = {b.target: b for b in state.live_bans(time.time())}
    assert set(bans) == {"192.0.2.7", "2001:db8::/64"}
    assert abs(bans["192.0.2.7"].end - (now - 60 + 3600)) <= 2 and bans["2001:db8::/64"].end is None
    assert bans["192.0.2.7"].reason == "imported from fail2ban jail dovecot"
    again = adaptive(*import_config(tmp_path, directory), "--bans", str(db))
    assert "0 ban(s) imported" in again.stdout and again.stdout.count("banned by adaptive already") == 2


def test_bans_go_through_the_control_socket_when_the_daemon_runs(tmp_path):
    from adaptive.daemon import Daemon
    short = Path(tempfile.mkdtemp(prefix="adaptive-", dir="/tmp"))   # a socket path is at most 107 bytes
    try:
        directory = tmp_path / "f2b"
        directory.mkdir()
        (directory / "jail.conf").write_text("[postfix-sasl]\nenabled = true\n"
                                             f"logpath = {tmp_path / 'mail.log'}\n")
        now = int(time.time())
        db = database(tmp_path / "f2b.sqlite3", [
            ("192.0.2.8", "postfix-sasl", now - 4000, 600, 1), ("192.0.2.8", "postfix-sasl", now - 100, 1200, 2)])
        args = import_config(tmp_path, directory)
        local = write_local(tmp_path, extra="")
        local.write_text(local.read_text().replace(str(tmp_path / "control.sock"), str(short / "c.sock")))
        cfg = config.load([SHIPPED, local], dropins=None)
        stop = threading.Event()
        # Made on its loop's thread: the state's SQLite connection belongs to the thread that opened it.
        loop = threading.Thread(target=lambda: Daemon(cfg, enforce=False).run(stop))
        loop.start()
        try:
            assert wait_for(lambda: (short / "c.sock").exists(), 30)
            run = adaptive(*args, "--bans", str(db))
        finally:
            stop.set()
            loop.join(30)
        assert run.returncode == 0, run.stderr
        assert f"over the control socket {short / 'c.sock'}: the daemon runs" in run.stdout
        with State(tmp_path / "state.db") as state:
            ban = state.ban("192.0.2.8")
            assert ban is not None and ban.count == 2 and abs(ban.end - (now + 1100)) <= 2
            assert [h["start"] for h in state.history("192.0.2.8")][1:] == [now - 4000]
    finally:
        shutil.rmtree(short, ignore_errors=True)


# --- a real fail2ban makes the database ---

class Fail2banServer:
    """fail2ban-server in the foreground, its socket, pid file, database and log in `directory`, its jails
    acting through action.d/dummy.conf into a file of the directory: no firewall is touched."""

    def __init__(self, directory: Path, config_dir: Path):
        self.directory = directory
        self.config = config_dir
        self.socket = directory / "f2b.sock"
        self.database = directory / "f2b.sqlite3"
        self.log = directory / "fail2ban.log"
        (config_dir / "fail2ban.local").write_text(
            f"[DEFAULT]\nloglevel = INFO\nlogtarget = {self.log}\nsocket = {self.socket}\n"
            f"pidfile = {directory / 'f2b.pid'}\ndbfile = {self.database}\n")
        self.process = subprocess.Popen(
            ["fail2ban-server", "-f", "-c", str(config_dir), "-s", str(self.socket), "-p",
             str(directory / "f2b.pid")], stdout=open(directory / "server.out", "wb"), stderr=subprocess.STDOUT)

    def client(self, *args: str) -> str:
        done = subprocess.run(["fail2ban-client", "-s", str(self.socket), *args], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def logged(self, text: str) -> int:
        return self.log.read_text().count(text) if self.log.exists() else 0

    def row(self, ip: str, jail: str) -> tuple[int, int, int] | None:
        """(timeofban, bantime, bancount) of `bips`, read as the import reads it."""
        if not self.database.exists():
            return None
        db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        try:
            return db.execute("SELECT timeofban, bantime, bancount FROM bips WHERE ip = ? AND jail = ?",
                              (ip, jail)).fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            db.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            subprocess.run(["fail2ban-client", "-s", str(self.socket), "stop"], capture_output=True, timeout=60)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.mark.servers
def test_the_live_bans_of_a_real_fail2ban_come_across_with_their_time_left_and_counts(tmp_path, capsys):
    if shutil.which("fail2ban-server") is None or shutil.which("fail2ban-client") is None:
        pytest.skip("fail2ban is not installed (apt-get install fail2ban): fail2ban-server not found")
    if not (FAIL2BAN / "action.d" / "dummy.conf").is_file():
        pytest.skip("/etc/fail2ban/action.d/dummy.conf is missing: no jail here could act without a firewall")
    (tmp_path / "mail.log").touch()
    (tmp_path / "auth.log").touch()
    # Every jail acts through the dummy action, into a file here; banaction too, in case a jail names it.
    directory = jail_dir(tmp_path, f"""
[DEFAULT]
banaction = dummy
banaction_allports = dummy
action = dummy[target="{tmp_path / 'dummy.actions'}"]
backend = polling
ignoreip = 127.0.0.1/8 ::1 192.0.2.128/25
bantime.increment = true
bantime.maxtime = 1w

[postfix-sasl]
enabled = true
logpath = {tmp_path / 'mail.log'}
bantime = 1

[dovecot]
enabled = true
logpath = {tmp_path / 'mail.log'}
bantime = -1

[postfix]
enabled = true
logpath = {tmp_path / 'mail.log'}
bantime = 2h

[sshd]
enabled = true
logpath = {tmp_path / 'auth.log'}
bantime = 1h
""")
    server = Fail2banServer(tmp_path, directory)
    try:
        assert wait_for(lambda: server.logged("Jail 'sshd' started") and server.logged("Jail 'postfix' started")
                        and server.logged("Jail 'dovecot' started") and server.logged("Jail 'postfix-sasl' started")
                        and server.socket.exists(), 60), (tmp_path / "server.out").read_text()
        # 192.0.2.10 banned three times: twice for a second (bantime 1, then 2 by bantime.increment), the
        # third once the jail's bantime is an hour: 4 hours, its bancount 3. 192.0.2.66's one ban ends.
        server.client("set", "postfix-sasl", "banip", "192.0.2.10", "192.0.2.66")
        assert wait_for(lambda: server.logged("Unban 192.0.2.10") == 1 and server.logged("Unban 192.0.2.66"), 30)
        server.client("set", "postfix-sasl", "banip", "192.0.2.10")
        assert wait_for(lambda: (server.row("192.0.2.10", "postfix-sasl") or (0, 0, 0))[2] == 2, 30)
        assert wait_for(lambda: server.logged("Unban 192.0.2.10") == 2, 30)
        server.client("set", "postfix-sasl", "bantime", "3600")
        server.client("set", "postfix-sasl", "banip", "192.0.2.10", "198.51.100.20")
        server.client("set", "dovecot", "banip", "192.0.2.99")                      # for good
        server.client("set", "postfix", "banip", "2001:db8::7", "127.0.0.2", "192.0.2.200")
        server.client("set", "sshd", "banip", "203.0.113.50")
        expected = {("192.0.2.10", "postfix-sasl"): (14400, 3), ("198.51.100.20", "postfix-sasl"): (3600, 1),
                    ("192.0.2.99", "dovecot"): (-1, 1), ("2001:db8::7", "postfix"): (7200, 1),
                    ("127.0.0.2", "postfix"): (7200, 1), ("192.0.2.200", "postfix"): (7200, 1),
                    ("203.0.113.50", "sshd"): (3600, 1)}
        assert wait_for(lambda: all((server.row(*key) or (0, 0, 0))[1:] == value for key, value in expected.items()),
                        30), {key: server.row(*key) for key in expected}
    finally:
        server.stop()
    assert server.process.returncode is not None
    rows = {key: server.row(*key) for key in expected}

    run = adaptive(*import_config(tmp_path, directory), "--bans", str(server.database))
    with capsys.disabled():
        print(f"\n$ adaptive {' '.join(import_config(tmp_path, directory))} --bans {server.database}\n{run.stdout}"
              f"{run.stderr}")
    assert run.returncode == 0, run.stderr
    assert "4 ban(s) imported: dovecot 1, postfix 1, postfix-sasl 2" in run.stdout
    assert "127.0.0.2 (jail postfix): never banned: loopback" in run.stdout
    assert "192.0.2.200 (jail postfix): allowlisted: allowlist 192.0.2.128/25" in run.stdout
    assert "1 expired ban(s) ignored: postfix-sasl 1" in run.stdout
    assert "1 live ban(s) of jails not migrated, left to fail2ban: sshd 1" in run.stdout
    with State(tmp_path / "state.db") as state:
        bans = {b.target: b for b in state.live_bans(time.time())}
        assert set(bans) == {"192.0.2.10", "198.51.100.20", "192.0.2.99", "2001:db8::7"}
        for (ip, jail), (start, length, _) in rows.items():
            if ip in bans:
                ban = bans[ip]
                assert ban.reason == f"imported from fail2ban jail {jail}" and ban.origin == "manual"
                if length < 0:
                    assert ban.end is None
                else:
                    assert abs(ban.end - (start + length)) <= 2, (ip, ban.end, start + length)
        assert {ip: b.count for ip, b in bans.items()} == \
            {"192.0.2.10": 3, "198.51.100.20": 1, "192.0.2.99": 1, "2001:db8::7": 1}
        history = state.history("192.0.2.10")
        assert [h["duration"] for h in history[1:]] == [2.0, 1.0]     # the two short bans, from `bans`
        assert all(h["reason"] == "imported from fail2ban jail postfix-sasl" for h in history)
    dropped = tomllib.loads((tmp_path / "fail2ban.toml").read_text())
    assert dropped["decisions"]["ban_multiplier"] == 2 and dropped["decisions"]["ban_max"] == 604800
