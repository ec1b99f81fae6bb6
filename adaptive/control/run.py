"""`adaptive run`: the daemon, in the foreground, logging to stderr (journald captures it).

Signals: SIGTERM and SIGINT stop it (bans stay in the kernel, which lifts each at its timeout);
SIGHUP reloads the configuration and filters, keeping the running ones if the new ones are bad.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from adaptive.config import DEFAULT_CONFIG

if TYPE_CHECKING:
    from adaptive.events import Event

NO_SOURCES = ("no [sources.NAME] section: nothing to follow (the shipped one follows /var/log/mail.log; "
              "a local file may name others)")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from adaptive.control.cli import EXIT_USAGE, add_config_options, command
    p = command(sub, "run", summary="run the daemon in the foreground", description="""
        Run the daemon in the foreground: follow every [sources.NAME] log, score every client address
        and ban offenders in the kernel, until SIGTERM or SIGINT. The systemd unit
        (conf/adaptive.service) runs this; it logs to stderr, which journald captures with levels.

        At start it applies its nftables table (keeping the bans already in it), puts back every live
        ban of the state database and resumes each log where it stopped. SIGHUP (or `adaptive
        reload`) reads the configuration and filters again; one with an error is refused and the
        running one kept. On stop the bans stay in the kernel, which lifts each at its own timeout.""",
        examples=["adaptive run",
                  "adaptive run -c /etc/adaptive/adaptive.toml -c /etc/adaptive/local.toml",
                  "adaptive run -v --dropins ''     # every event logged; no drop-ins"],
        exits=[(0, "stopped by SIGTERM or SIGINT"),
               (1, "could not start: nftables refused the table, or the control socket or the metrics "
                   "address is taken (the reason on stderr)"),
               (2, EXIT_USAGE)])
    add_config_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages too (every event)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.control.cli import load_config
    from adaptive.daemon import Daemon
    from adaptive.daemon.server import ControlSocketError
    from adaptive.metrics import MetricsError
    from adaptive.nftables.executor import NftablesError
    from adaptive.notify import JournalFormatter, to_journal

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter("%(name)s: %(message)s") if to_journal()
                         else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    if args.verbose:
        # adaptive's own debug lines only: watchdog's would log every file event, stderr's own too
        logging.getLogger("adaptive").setLevel(logging.DEBUG)
    config = load_config(args)
    if not config.sources:
        print(f"adaptive: {NO_SOURCES}", file=sys.stderr)
        return 2
    event_log = logging.getLogger("adaptive.events")

    def on_event(e: Event) -> None:
        if event_log.isEnabledFor(logging.DEBUG):
            event_log.debug("%s %s%s rule=%s/%s", e.kind.value, e.ip, f" user={e.user!r}" if e.user else "",
                            e.filter, e.rule)

    dropins = args.dropins if str(args.dropins) not in ("", ".") else None
    daemon = Daemon(config, config_files=args.config or [DEFAULT_CONFIG], dropins=dropins, on_event=on_event)
    try:
        daemon.start()
    except (NftablesError, ControlSocketError, MetricsError) as e:
        print(f"adaptive: cannot start: {e}", file=sys.stderr)
        daemon.close()
        return 1
    # A handler runs on the loop's thread, between any two bytecodes, even inside another handler: each
    # only sets a flag and writes to a pipe, taking no lock (an Event's would deadlock there).
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    daemon.run(threading.Event())
    logging.getLogger("adaptive").info("stopped after %d events", daemon.counts["events"])
    return 0
