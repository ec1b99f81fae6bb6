"""The command line as an admin meets it: the help of every command, and output cut short by a pipe."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from adaptive.control.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parent.parent


def adaptive(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adaptive", *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"})


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# --- help ---

def _sections(text: str) -> dict[str, list[str]]:
    """The help's parts, by heading ("usage", "description", "examples", "exit status", ...)."""
    parts: dict[str, list[str]] = {}
    heading = "usage"
    for line in text.splitlines():
        if re.fullmatch(r"[a-z][a-z ]*:", line):
            heading = line[:-1]
            continue
        if heading == "usage" and not line.strip() and parts.get("usage"):
            heading = "description"
            continue
        parts.setdefault(heading, []).append(line)
    return parts


def _check_help(name: str, text: str) -> None:
    sections = _sections(text)
    description = " ".join(line.strip() for line in sections.get("description", []) if line.strip())
    assert len(description) >= 100 and description.endswith("."), f"{name}: no description paragraph"
    examples = [line.strip() for line in sections.get("examples", []) if line.strip()]
    assert 2 <= len(examples) <= 4, f"{name}: {len(examples)} examples"
    command = "adaptive" if name == "adaptive" else f"adaptive {name}"
    assert all(command in example for example in examples), f"{name}: an example is not of {command}"
    codes = [line.split()[0] for line in sections.get("exit status", []) if line[:5].strip().isdigit()]
    assert codes[:1] == ["0"] and len(codes) >= 2, f"{name}: exit codes {codes}"
    assert all(len(line) <= 80 for line in text.splitlines()), f"{name}: a line wider than 80 columns"


def test_every_subcommand_has_a_description_examples_and_exit_codes():
    commands = _subcommands()
    assert len(commands) == len(COMMANDS)
    for name, parser in commands.items():
        _check_help(name, parser.format_help())
        # Each example is a command line argparse takes (the daemon and the files aside).
        for example in _sections(parser.format_help())["examples"]:
            for words in _commands(example):
                if words[:1] == ["adaptive"]:
                    build_parser().parse_args(words[1:])


def _commands(line: str) -> list[list[str]]:
    """The commands of a shell line, split at pipes and `&&`, comments left out."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("|", "&&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return commands


def test_adaptive_help_says_what_it_is_lists_every_command_and_its_exit_codes():
    result = adaptive("--help")
    assert result.returncode == 0 and result.stderr == ""
    _check_help("adaptive", result.stdout)
    for name in _subcommands():
        assert re.search(rf"^    {re.escape(name)}\b", result.stdout, re.M), f"{name} not listed"


@pytest.mark.parametrize("name", ["ban", "list", "check"])
def test_a_subcommands_help_is_printed_whole_by_the_command_line(name):
    result = adaptive(name, "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert "examples:\n  adaptive " + name in result.stdout and "\nexit status:\n  0 " in result.stdout


# --- a closed pipe ---

def _failures(addresses: int) -> bytes:
    """Six failed logins from each of `addresses` clients, a second apart: each is banned."""
    lines = []
    for i in range(addresses):
        for attempt in range(6):
            second = i * 6 + attempt
            lines.append(f"Nov 24 {10 + second // 3600:02}:{second // 60 % 60:02}:{second % 60:02} mx "
                         f"postfix/smtpd[1]: warning: unknown[10.{i >> 16}.{(i >> 8) & 255}.{i & 255}]: SASL "
                         "LOGIN authentication failed: UGFzc3dvcmQ6\n")
    return "".join(lines).encode()


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipe") / "mail.log"
    path.write_bytes(_failures(5000))     # 30,000 lines: megabytes of output, far more than a pipe holds
    return path


def _into_head(*args: str) -> tuple[int, str, bytes]:
    """`adaptive ARGS | head -1`, through a real pipe: adaptive's status and stderr, and what head printed."""
    writer = subprocess.Popen([sys.executable, "-m", "adaptive", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=ROOT)
    assert writer.stdout is not None and writer.stderr is not None
    head = subprocess.Popen(["head", "-1"], stdin=writer.stdout, stdout=subprocess.PIPE)
    writer.stdout.close()          # head alone holds the reading end: when it exits, the pipe is closed
    first, _ = head.communicate(timeout=60)
    errors = writer.stderr.read().decode()
    return writer.wait(timeout=60), errors, first


@pytest.mark.parametrize("args", [
    ["check", "--json"],
    ["check"],
    ["replay", "--json", "--no-host-addresses", "-c", str(ROOT / "conf" / "adaptive.toml"), "--dropins", ""],
    ["replay", "--no-host-addresses", "-c", str(ROOT / "conf" / "adaptive.toml"), "--dropins", ""],
])
def test_output_cut_short_by_head_is_no_error_and_no_traceback(big_log, args):
    status, errors, first = _into_head(*args, str(big_log))
    assert errors == "" and status == 0, errors
    assert first.endswith(b"\n") and first.strip()


class _ManyBans:
    """A daemon's control handler with 100,000 bans to list, and nothing else."""

    def list(self) -> list[dict[str, object]]:
        return [{"target": f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", "left": 3600.0, "reason": "score",
                 "count": 1, "origin": "automatic", "start": 1763900000.0, "end": 1763903600.0}
                for i in range(100_000)]


def test_list_cut_short_by_head_is_no_error_and_no_traceback():
    from adaptive.daemon.server import ControlServer
    directory = Path(tempfile.mkdtemp(prefix="adaptive-", dir="/tmp"))   # a socket path is short
    try:
        with ControlServer(directory / "control.sock", _ManyBans()) as server:   # type: ignore[arg-type]
            for args in (["list"], ["list", "--json"]):
                status, errors, first = _into_head(*args, "--socket", str(server.path))
                assert errors == "" and status == 0, errors
                assert first.strip()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- status in words ---

HEALTHY = {"version": "0.3.0", "pid": 812, "uptime": 11_520.0, "dry_run": False, "enforce": True,
           "table": "adaptive",
           "sources": [{"name": "mail", "path": "/var/log/mail.log", "position": 9_000_000, "lag": 0,
                        "lines": 120_431, "error": None}],
           "events": 1534, "decisions": {"ban": 1204, "suppressed": 3}, "bans": 1204, "bans_state": 1204,
           "repairs": 0, "compared": 130.0, "tracked": 5120}


def test_a_healthy_daemons_status_is_a_few_plain_sentences():
    from adaptive.control.status import describe
    assert describe(HEALTHY) == """\
adaptive 0.3.0 is running (pid 812, up 3h 12m) and enforcing its bans.

Following 1 source:
  mail  /var/log/mail.log: ok, 120,431 lines read, caught up

Since the start: 1,534 events, 1,207 decisions (1,204 banned, 3 suppressed);
5,120 addresses scored now.
Bans: table inet adaptive holds 1,204 bans, as the state does; compared with
the state 2m 10s ago.
"""


@pytest.mark.parametrize("change, said", [
    ({"dry_run": True}, "in dry run: it decides and records bans, and puts none in the kernel"),
    ({"enforce": False}, "enforcing nothing: it was started without the kernel"),
    ({"kernel_counting": True, "bans": 1100},
     "held 1,100 bans at the last count (counting them again), the state 1,204"),
    ({"repairs": 2}, "the table was put back 2 times after others changed it"),
    ({"bans": None}, "how many table inet adaptive holds is not known"),
])
def test_status_says_the_mode_and_the_kernels_count_in_words(change, said):
    from adaptive.control.status import describe
    assert said in " ".join(describe({**HEALTHY, **change}).split())


@pytest.mark.parametrize("change, problem, advice", [
    ({"state_error": "database or disk is full", "state_unwritten": 12},
     "The state database cannot be written (database or disk is full): 12 changes wait in memory",
     "Make room on its disk"),
    ({"sources": [{**HEALTHY["sources"][0], "error": "/var/log/mail.log: permission denied", "position": None}]},
     "Source mail (/var/log/mail.log) cannot be read: permission denied.", "correct [sources.mail] path"),
    ({"kernel_error": "No such file or directory"},
     "The bans in table inet adaptive cannot be counted: No such file or directory.", "adaptive ruleset --check"),
    ({"bans": 1100, "disagree": "the kernel holds 1100 ban(s), the state 1204"},
     "The kernel and the state disagree: the kernel holds 1100 ban(s), the state 1204.", "reconcile_every"),
])
def test_status_states_each_problem_first_with_what_to_do(change, problem, advice):
    from adaptive.control.status import describe
    text = describe({**HEALTHY, **change})
    assert text.splitlines()[2] == "1 problem:"
    problems = " ".join(text.split("\n\nFollowing")[0].split())
    assert problem in problems and advice in problems, text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_status_of_a_reply_without_what_it_expects_still_reads():
    from adaptive.control.status import describe
    assert describe({}).startswith("adaptive ? is running (up ?)")
