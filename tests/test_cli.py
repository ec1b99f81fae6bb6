"""The command line as an admin meets it: the help of every command, and output cut short by a pipe."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
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
