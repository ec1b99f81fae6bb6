"""Targets as the admin gives them to a command: one a line, with comments, read by `adaptive.addresses`.

Every target that crosses the control socket is canonical text (`adaptive.addresses.canonical`), on
both sides: the client reports what is not an address with its line number, and the server checks
again (a client may be anything).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from adaptive.addresses import canonical


def read_lines(lines: Iterable[str]) -> Iterator[tuple[int, str | None, str]]:
    """(line number, canonical target or None, problem) for each line that is not blank or a comment.

    A `#` starts a comment anywhere on a line, so `192.0.2.7  # seen on 24 Nov` is read as its address.
    """
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            yield number, canonical(text), ""
        except ValueError:
            yield number, None, f"{text!r} is not an IP address or prefix"
