"""`adaptive import fail2ban`: fail2ban's mail jails as an adaptive drop-in, and its live bans into adaptive.

    adaptive import fail2ban [--jail-dir /etc/fail2ban] [--output FILE [--force]] [--bans DATABASE]

The drop-in (`adaptive.migrate.dropin`: every key commented with the fail2ban file and key it came from)
goes to standard output, or to `--output`, never over a file that is there unless `--force`. It is
checked first, as `check-config` would: loaded after adaptive's configuration (`-c`, the drop-ins; a
host without one, alone), it must load.

`--bans` reads fail2ban's database read-only and brings the live bans of the migrated jails across,
each with the time it has left and its earlier bans (which adaptive's escalation counts), reason
"imported from fail2ban jail NAME". When the daemon answers on its control socket they go through it,
as `adaptive ban`'s do, into the kernel at once; otherwise into the state database, whose live bans
the daemon applies at its next start. Never imported: loopback, the allowlist (fail2ban's ignoreip
included, as the drop-in has it), this host's own addresses, a target adaptive bans already. The
summary goes to standard error when the drop-in goes to standard output.

Exit 0 when done (bans skipped for those reasons included); 1 when fail2ban's files or database cannot
be read, the output is there, or the daemon or the state refuses; 2 for adaptive's configuration.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from adaptive.config import Config
    from adaptive.migrate.bans import BansRead, LiveBan

FAIL2BAN = Path("/etc/fail2ban")
REASON = "imported from fail2ban jail {jail}"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_USAGE, command
    from adaptive.control.client import add_client_options
    p = command(sub, "import", summary="migrate from fail2ban: its mail jails as a drop-in, its live bans",
                description="""
        Write fail2ban's Postfix and Dovecot jails (jail.conf, jail.d, jail.local, read as fail2ban 1.0
        reads them) as an adaptive drop-in: the logs as sources, ignoreip as the allowlist, maxretry
        and findtime as the threshold and half-life, bantime and its increment as the ban lengths,
        each key commented with the fail2ban file and key it came from, what does not carry over said
        in comments. The drop-in is checked to load with adaptive's configuration before it is
        written, to standard output or to --output (never over a file there without --force).

        --bans also brings fail2ban's live bans across (its database, read-only), each with its time
        left and its earlier bans, which adaptive's escalation counts: through the control socket
        when the daemon runs, into the kernel at once, else into the state for the next start.
        Loopback, allowlisted and this host's own addresses, and targets banned already, are skipped
        and said. Stop fail2ban's mail jails afterwards, or both will ban.""",
        examples=["adaptive import fail2ban",
                  "adaptive import fail2ban --output /etc/adaptive/adaptive.d/fail2ban.toml",
                  "adaptive import fail2ban --bans /var/lib/fail2ban/fail2ban.sqlite3"],
        exits=[(0, "done (bans skipped for the reasons above included)"),
               (1, "fail2ban's files or database cannot be read, --output is there, the drop-in does not "
                   "load, or the daemon or the state refused"),
               (2, EXIT_USAGE + ", or an error in adaptive's own configuration")])
    p.add_argument("source", choices=["fail2ban"], help="what to migrate from (fail2ban, for now)")
    p.add_argument("--jail-dir", type=Path, default=FAIL2BAN, metavar="DIR",
                   help=f"fail2ban's configuration: jail.conf, jail.d, jail.local (default {FAIL2BAN})")
    p.add_argument("--output", type=Path, metavar="FILE",
                   help="write the drop-in there (e.g. /etc/adaptive/adaptive.d/fail2ban.toml), not to stdout")
    p.add_argument("--force", action="store_true", help="replace --output if it is there")
    p.add_argument("--bans", type=Path, metavar="DATABASE",
                   help="also import the live bans of fail2ban's database (/var/lib/fail2ban/fail2ban.sqlite3): "
                        "over the control socket when the daemon runs, else into its state")
    p.add_argument("-v", "--verbose", action="store_true", help="name every ban imported")
    add_client_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive import __version__
    from adaptive import config as config_module
    from adaptive.migrate.dropin import translate
    from adaptive.migrate.jails import Fail2banError, read

    output: Path | None = args.output
    if output is not None and output.exists() and not args.force:
        print(f"adaptive: {output} is there already: --force to replace it", file=sys.stderr)
        return 1
    try:
        f2b = read(args.jail_dir)
    except Fail2banError as e:
        print(f"adaptive: {e}", file=sys.stderr)
        return 1
    files = _adaptive_files(args, output)
    current = config_module.load(files, None) if files else None
    made = translate(f2b, current, made_by=f"adaptive import fail2ban (adaptive {__version__})")
    try:
        combined = _checked(made.text, files, output)
    except config_module.ConfigError as e:
        print("adaptive: the drop-in made from fail2ban's configuration does not load; nothing written:",
              file=sys.stderr)
        for problem in e.problems:
            print(f"adaptive: {problem}", file=sys.stderr)
        return 1
    if output is None:
        sys.stdout.write(made.text)
        sys.stdout.flush()
        report = sys.stderr
    else:
        try:
            _write(output, made.text)
        except OSError as e:
            print(f"adaptive: {output}: cannot write: {e.strerror}", file=sys.stderr)
            return 1
        report = sys.stdout
        print(f"wrote {output}: jails {', '.join(made.migrated) or 'none'} migrated"
              + (f", {len(made.left_out)} enabled one(s) not" if made.left_out else ""), file=report)
    for warning in made.warnings:
        print(f"adaptive: warning: {warning}", file=sys.stderr)
    if not combined.sources:
        print("adaptive: warning: no [sources.NAME] to follow, neither in adaptive's configuration nor from "
              "fail2ban's jails: `adaptive check-config` refuses that", file=sys.stderr)
    if args.bans is None:
        return 0
    return _import_bans(args, combined, made.migrated, report)


def _adaptive_files(args: argparse.Namespace, output: Path | None) -> list[Path]:
    """adaptive's configuration files as they stand (but the one being written), or none on a host that
    has no configuration yet (no `-c`, no /etc/adaptive/adaptive.toml)."""
    from adaptive import config as config_module
    dropins = args.dropins if str(args.dropins) not in ("", ".") else None
    if not args.config and not config_module.DEFAULT_CONFIG.exists():
        return []
    files = config_module.config_files(args.config, dropins)
    if output is not None:
        files = [f for f in files if not (f.exists() and output.exists() and os.path.samefile(f, output))]
    return files


def _checked(text: str, files: list[Path], output: Path | None) -> Config:
    """The configuration `files` and the drop-in make together: ConfigError (naming the drop-in as it
    will be called) if they do not load."""
    from adaptive import config as config_module
    with tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="fail2ban-", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        try:
            return config_module.load([*files, Path(f.name)], None)
        except config_module.ConfigError as e:
            named = str(output) if output is not None else "the drop-in"
            raise config_module.ConfigError([p.replace(f.name, named) for p in e.problems]) from None


def _write(output: Path, text: str) -> None:
    """Whole or not at all: a new file beside it, renamed over it."""
    partial = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with open(partial, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, output)
    finally:
        if partial.exists():
            partial.unlink()


# --- the bans ---

@dataclass
class _Outcome:
    """What became of each live ban fail2ban had."""
    imported: list[tuple[LiveBan, int | None]] = field(default_factory=list)     # (ban, seconds or None)
    skipped: list[tuple[LiveBan, str]] = field(default_factory=list)             # (ban, why)
    failed: str | None = None


def _import_bans(args: argparse.Namespace, config: Config, jails: tuple[str, ...], report: TextIO) -> int:
    from adaptive.migrate.bans import DatabaseError, read_bans
    now = time.time()
    try:
        found = read_bans(args.bans, jails, now)
    except DatabaseError as e:
        print(f"adaptive: {e}", file=sys.stderr)
        return 1
    path = _socket(args, config)
    try:
        running = _listens(path)
    except OSError as e:
        print(f"adaptive: cannot reach the daemon at {path} ({e.strerror or e}): nothing imported (its state is "
              "not written while it may run)", file=sys.stderr)
        return 1
    if running:
        where = f"over the control socket {path}: the daemon runs, so they are in the kernel now"
        outcome = _over_socket(path, found.live, now)
    else:
        where = (f"into the state database {config.state.path}: the daemon does not run (nothing answers on "
                 f"{path}), its next start applies them")
        outcome = _into_state(config, found.live, now)
    _summary(report, args.bans, found, outcome, where, now, args.verbose)
    if outcome.failed:
        print(f"adaptive: {outcome.failed}", file=sys.stderr)
        return 1
    return 0


def _socket(args: argparse.Namespace, config: Config) -> Path:
    from adaptive.control.client import ENVIRONMENT
    if args.socket is not None:
        return Path(args.socket)
    if os.environ.get(ENVIRONMENT):
        return Path(os.environ[ENVIRONMENT])
    return config.control.socket


def _listens(path: Path) -> bool:
    """Whether a daemon answers on the socket: False when there is none (no file, or one left behind);
    OSError when it cannot be told (permission denied)."""
    if len(os.fsencode(path)) > 107:      # sun_path: no daemon can listen there
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def _length(ban: LiveBan, now: float) -> int | None:
    """The seconds the ban has left (None: for good), at least 1, at most adaptive's longest."""
    from adaptive.durations import LONGEST
    if ban.end is None:
        return None
    return max(1, min(LONGEST, math.ceil(ban.end - now)))


def _over_socket(path: Path, bans: list[LiveBan], now: float) -> _Outcome:
    from adaptive.control.client import Client, Unreachable
    from adaptive.durations import format_duration
    from adaptive.wire import ControlError
    outcome = _Outcome()
    try:
        with Client(path) as client:
            banned = {entry["target"]: entry.get("left") for entry in client.request("list")}
            for ban in bans:
                if ban.target in banned:
                    left = banned[ban.target]
                    outcome.skipped.append((ban, f"banned by adaptive already ({format_duration(left)} left)"))
                    continue
                seconds = _length(ban, now)
                reply = client.request("ban", targets=[ban.target],
                                       duration="permanent" if seconds is None else seconds,
                                       reason=REASON.format(jail=ban.jail), force=False,
                                       earlier=[list(e) for e in ban.earlier])
                if reply.get("banned"):
                    outcome.imported.append((ban, seconds))
                for refusal in reply.get("refused", []):
                    outcome.skipped.append((ban, str(refusal.get("reason"))))
    except (Unreachable, ControlError) as e:
        outcome.failed = f"{e}; {len(outcome.imported)} imported before that"
    return outcome


def _into_state(config: Config, bans: list[LiveBan], now: float) -> _Outcome:
    from adaptive.decisions import Decider, host_addresses
    from adaptive.durations import format_duration
    from adaptive.state import State, StateError
    outcome = _Outcome()
    prefixes = {4: config.nftables.ipv4_prefixes, 6: config.nftables.ipv6_prefixes}
    try:
        with State(config.state.path, clock=lambda: now) as state:
            decider = Decider(config, state, own_addresses=host_addresses(), clock=lambda: now)
            banned = state.live_ends(now, outcome=None)
            with state.transaction():
                for ban in bans:
                    if ban.target in banned:
                        end = banned[ban.target]
                        outcome.skipped.append((ban, "banned by adaptive already "
                                                     f"({format_duration(None if end is None else end - now)} left)"))
                        continue
                    screened = decider.screen([ban.target])
                    if screened.refused:
                        outcome.skipped += [(ban, why) for _, why in screened.refused]
                        continue
                    target = screened.passed[0]
                    if not target.host and target.length not in prefixes[target.version]:
                        outcome.skipped.append((ban, f"no ban set takes /{target.length} (nftables.ipv"
                                                     f"{target.version}_prefixes)"))
                        continue
                    seconds = _length(ban, now)
                    decider.record_manual([target], seconds, REASON.format(jail=ban.jail), ban.earlier)
                    outcome.imported.append((ban, seconds))
            if state.unwritten:
                outcome.failed = f"{config.state.path}: cannot write: {state.write_error}"
    except (StateError, OSError) as e:
        outcome.failed = f"{config.state.path}: {e}"
        outcome.imported = []
    return outcome


def _summary(out: TextIO, database: Path, found: BansRead, outcome: _Outcome, where: str, now: float,
             verbose: bool) -> None:
    from adaptive.durations import format_duration

    def per_jail(counts: Counter[str]) -> str:
        return ", ".join(f"{jail} {n}" for jail, n in sorted(counts.items()))

    version = f", schema version {found.version}" if found.version is not None else ""
    print(f"fail2ban's bans from {database} (read-only{version}), "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}:", file=out)
    print(f"  imported {where}", file=out)
    imported = Counter(ban.jail for ban, _ in outcome.imported)
    print(f"  {len(outcome.imported)} ban(s) imported" + (f": {per_jail(imported)}" if imported else ""), file=out)
    if verbose:
        width = max((len(ban.target) for ban, _ in outcome.imported), default=0)
        for ban, seconds in outcome.imported:
            left = "for good" if seconds is None else f"{format_duration(seconds)} left"
            print(f"    {ban.target:<{width}}  {left:<10}  ban {ban.count} ({len(ban.earlier)} earlier)  "
                  f"jail {ban.jail}", file=out)
    skipped = len(outcome.skipped) + len(found.invalid)
    print(f"  {skipped} skipped" + (":" if skipped else ""), file=out)
    for ban, why in outcome.skipped:
        print(f"    {ban.target} (jail {ban.jail}): {why}", file=out)
    for ip, jail, why in found.invalid:
        print(f"    {ip!r} (jail {jail}): {why}", file=out)
    expired = sum(found.expired.values())
    print(f"  {expired} expired ban(s) ignored" + (f": {per_jail(found.expired)}" if expired else ""), file=out)
    if found.other_jails:
        print(f"  {sum(found.other_jails.values())} live ban(s) of jails not migrated, left to fail2ban: "
              f"{per_jail(found.other_jails)}", file=out)
