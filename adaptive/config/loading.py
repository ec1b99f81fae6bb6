"""Loading the configuration: TOML files merged key by key, then validated into the schema's `Config`.

An admin keeps the shipped `conf/adaptive.toml` untouched and puts local changes in later files
(`-c` again, or drop-ins in `/etc/adaptive/adaptive.d/*.toml`): a later file overrides an earlier one
key by key, tables merge, arrays are replaced whole. Every key remembers the file that set it, so an
error names the file, the key and the bad value.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from pathlib import Path
from typing import Any

from adaptive.config.schema import Config, SourceConfig, _is_type, _path, _show, _toml_type, _type_name

DEFAULT_CONFIG = Path("/etc/adaptive/adaptive.toml")
DEFAULT_DROPINS = Path("/etc/adaptive/adaptive.d")


class ConfigError(Exception):
    """A configuration that cannot be used; the message names file, key and value at fault."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str]]]:
        # Survives pickling (a worker process, a namespace helper), problems and all.
        return (ConfigError, (self.problems,))


def read_files(paths: list[Path]) -> tuple[dict[str, Any], dict[str, Path]]:
    """Merge TOML files in order; return the merged tree and, per dotted key, the file that set it."""
    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    problems = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                tree = tomllib.load(f)
        except FileNotFoundError:
            problems.append(f"{path}: no such file")
            continue
        except OSError as e:
            problems.append(f"{path}: cannot read: {e.strerror}")
            continue
        except tomllib.TOMLDecodeError as e:
            problems.append(f"{path}: not valid TOML: {e}")
            continue
        _merge(merged, tree, origin, path, "")
    if problems:
        raise ConfigError(problems)
    return merged, origin


def _merge(into: dict[str, Any], tree: dict[str, Any], origin: dict[str, Path], path: Path, prefix: str) -> None:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            origin[dotted] = path     # an error in the merged table is most likely the later file's
            _merge(into[key], value, origin, path, dotted + ".")
        else:
            into[key] = _copy(value)
            _mark(origin, value, path, dotted)


def _copy(value: Any) -> Any:
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


def _mark(origin: dict[str, Path], value: Any, path: Path, dotted: str) -> None:
    origin[dotted] = path
    if isinstance(value, dict):
        for key, sub in value.items():
            _mark(origin, sub, path, f"{dotted}.{key}")


def config_files(explicit: list[Path], dropins: Path | None = DEFAULT_DROPINS) -> list[Path]:
    """The files to read: the `-c` files (or the default one), then the drop-ins, sorted by name."""
    files = list(explicit) or [DEFAULT_CONFIG]
    if dropins is not None and dropins.is_dir():
        files += sorted(p for p in dropins.glob("*.toml") if p.is_file())
    return files


def load(explicit: list[Path], dropins: Path | None = DEFAULT_DROPINS) -> Config:
    files = config_files(explicit, dropins)
    tree, origin = read_files(files)
    return build(tree, origin, tuple(files))


def build(tree: dict[str, Any], origin: dict[str, Path], files: tuple[Path, ...] = ()) -> Config:
    """Validate a merged tree into a Config, collecting every problem rather than stopping at the first."""
    problems: list[str] = []
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for name, value in tree.items():
        if name == "files" or name not in hints:
            problems.append(_where(origin, name, f"unknown section [{name}]"))
            continue
        if not isinstance(value, dict):
            problems.append(_where(origin, name, f"{name} must be a table, got {value!r}"))
            continue
        if name == "sources":
            sources = {}
            for src_name, src in value.items():
                if not isinstance(src, dict):
                    problems.append(_where(origin, f"sources.{src_name}",
                                           f"sources.{src_name} must be a table, got {src!r}"))
                    continue
                if src.get("enabled", True) is False:     # off: its other keys need not be complete
                    continue
                built = _section(SourceConfig, src, origin, f"sources.{src_name}", problems)
                if built is not None and _source_complete(built, src, origin, f"sources.{src_name}", problems):
                    sources[src_name] = built
            sections[name] = sources
        else:
            built = _section(hints[name], value, origin, name, problems)
            if built is not None:
                sections[name] = built
    if problems:
        raise ConfigError(problems)
    config = Config(**sections, files=files)
    problems = _prefixes_have_sets(config, origin) + _sources_apart(config, origin)
    if problems:
        raise ConfigError(problems)
    return config


_FILE_KEYS = ("path", "follow_symlinks", "owners", "fallback")
_JOURNAL_KEYS = ("directory", "match", "busy_poll")


def _source_complete(source: SourceConfig, raw: dict[str, Any], origin: dict[str, Path], prefix: str,
                     problems: list[str]) -> bool:
    """A file source names its path; no source sets the other type's keys (they would do nothing), but
    in a file before the one that sets its `type`: a local file turns the shipped file source into a
    journal one with `type = "journal"` alone."""
    before = len(problems)
    if source.type == "file" and source.path is None:
        problems.append(_where(origin, prefix, f"{prefix}.path is required"))
    # A file source's fallback reads the journal its `directory` and `match` say.
    other = () if source.fallback else _JOURNAL_KEYS if source.type == "file" else _FILE_KEYS
    typed = origin.get(f"{prefix}.type")
    for key in other:
        if key in raw and (typed is None or origin.get(f"{prefix}.{key}") == typed):
            problems.append(_where(origin, f"{prefix}.{key}", f"{prefix}.{key}: not a key of a source of type "
                                   f"{source.type!r}"))
    return len(problems) == before


def _sources_apart(config: Config, origin: dict[str, Path]) -> list[str]:
    """Two sources on one file (or on one journal with the same matches) would read every line twice:
    three failures would count as six."""
    seen: dict[str, str] = {}
    problems = []
    for name, source in config.sources.items():
        if source.type == "file" and source.path is not None:
            real, what = os.path.realpath(source.path), f".path = {str(source.path)!r}: the same file"
        else:
            real = f"journal {os.path.realpath(source.directory) if source.directory else ''} {sorted(source.match)}"
            what = " reads the same journal entries"
        if real in seen:
            problems.append(_where(origin, f"sources.{name}", f"sources.{name}{what} as sources.{seen[real]}; "
                                   "each log is followed once (one source reads every filter)"))
        else:
            seen[real] = name
    return problems


def _prefixes_have_sets(config: Config, origin: dict[str, Path]) -> list[str]:
    """Every prefix length scoring or decisions may ban needs a ban set in the kernel."""
    n, d = config.nftables, config.decisions
    needs = [("scoring.ipv6_prefix", config.scoring.ipv6_prefix, 128, n.ipv6_prefixes, "nftables.ipv6_prefixes")]
    if d.subnet_sources:
        needs += [("decisions.subnet_ipv4_prefix", d.subnet_ipv4_prefix, 32, n.ipv4_prefixes,
                   "nftables.ipv4_prefixes"),
                  ("decisions.subnet_ipv6_prefix", d.subnet_ipv6_prefix, 128, n.ipv6_prefixes,
                   "nftables.ipv6_prefixes")]
    return [_where(origin, key, f"{key} = {value}: no ban set takes /{value}; add it to {sets} "
                                f"(now {list(have)})")
            for key, value, full, have, sets in needs if value != full and value not in have]


def _section(cls: type, values: dict[str, Any], origin: dict[str, Path], prefix: str, problems: list[str]) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    before = len(problems)
    for key, raw in values.items():
        dotted = f"{prefix}.{key}"
        f = known.get(key)
        if f is None:
            problems.append(_where(origin, dotted, f"unknown key {dotted}"))
            continue
        expected = _toml_type(f.metadata["check"], f.default)
        if expected is not None and not _is_type(raw, expected):
            problems.append(_where(origin, dotted,
                                   f"{dotted} = {_show(raw)}: expected {_type_name(expected)}"))
            continue
        try:
            kwargs[key] = f.metadata["check"](raw)
        except ValueError as e:
            problems.append(_where(origin, dotted, f"{dotted} = {_show(raw)}: {e}"))
    for name, f in known.items():
        if name not in kwargs and f.default is None and f.metadata["check"] is _path and cls is not SourceConfig:
            problems.append(_where(origin, prefix, f"{prefix}.{name} is required"))
    if len(problems) > before:
        return None
    return cls(**kwargs)


def _where(origin: dict[str, Path], dotted: str, message: str) -> str:
    path = origin.get(dotted)
    return f"{path}: {message}" if path else message
