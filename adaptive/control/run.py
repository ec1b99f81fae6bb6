"""`adaptive run`: the daemon, in the foreground, logging to stderr (journald captures it)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading



def add_parser(sub: argparse._SubParsersAction) -> None:
    from adaptive.control.cli import add_config_options
    p = sub.add_parser("run", help="run the daemon in the foreground")
    add_config_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptive.control.cli import load_config
    from adaptive.daemon import Daemon
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args)
    event_log = logging.getLogger("adaptive.events")

    def on_event(e) -> None:
        event_log.info("%s %s%s rule=%s/%s", e.kind.value, e.ip, f" user={e.user!r}" if e.user else "",
                       e.filter, e.rule)

    daemon = Daemon(config, on_event)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    daemon.run(stop)
    logging.getLogger("adaptive").info("stopped after %d events", daemon.events)
    return 0
