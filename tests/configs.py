"""The local configuration a test daemon runs with: its log, state and socket in the test's directory."""

from __future__ import annotations

from pathlib import Path


def write_local(tmp_path: Path, *, start: str = "beginning", listen: str = "", extra: str = "",
                state: Path | None = None) -> Path:
    """`tmp_path/local.toml`, read after the shipped config: follows `tmp_path/mail.log`, keeps its state
    in `state` (default `tmp_path/state.db`)."""
    local = tmp_path / "local.toml"
    local.write_text(f"""
[sources.mail]
path = "{tmp_path / 'mail.log'}"
start = "{start}"
fallback = ""
[state]
path = "{state or tmp_path / 'state.db'}"
[control]
socket = "{tmp_path / 'control.sock'}"
[metrics]
listen = "{listen}"
{extra}""")
    return local
