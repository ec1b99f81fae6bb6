"""Durations as an admin types them (`90s`, `10m`, `4h`, `7d`, `1w`, `1h30m`, plain seconds) and shows them.

>>> parse_duration("4h"), parse_duration("1h30m"), parse_duration("90")
(14400.0, 5400.0, 90.0)
>>> format_duration(93784)
'1d2h'
"""

from __future__ import annotations

import math
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})([smhdw])")
_WHOLE = re.compile(rf"{_NUMBER}|(?:{_NUMBER}[smhdw])+")
# Ten years: longer than any ban means, short enough that nothing downstream overflows (the kernel
# refuses an element timeout past about 584 years).
LONGEST = 10 * 365 * 86400
PERMANENT = ("permanent", "forever")   # what `--for` takes for a ban that never ends
_FORMS = "a number of seconds, or numbers with s, m, h, d or w (90s, 10m, 4h, 7d, 1w, 1h30m)"


def parse_duration(text: str, permanent: bool = False, zero: bool = False) -> float:
    """Seconds in `text`; raises ValueError naming the text and the forms accepted. With `permanent`,
    "permanent" or "forever" is `math.inf`: a ban that never ends; with `zero`, "0" or "0s" is 0."""
    if permanent and text in PERMANENT:
        return math.inf
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration: use {_FORMS}")
    if text[-1] not in UNITS:
        seconds = float(text)
    else:
        seconds = sum(float(number) * UNITS[unit] for number, unit in _PART.findall(text))
    if not seconds > 0 and not (zero and seconds == 0):
        raise ValueError(f"{text!r} is not a duration: it must be longer than zero"
                         + (" (a ban without end is permanent)" if permanent else ""))
    if not math.isfinite(seconds) or seconds > LONGEST:
        raise ValueError(f"{text!r} is too long a duration: at most {LONGEST // 86400}d"
                         + (" (or permanent)" if permanent else ""))
    return seconds


def format_duration(seconds: float | None) -> str:
    """Two units at most, rounded down (`4h`, `3h59m`, `6d23h`, `42s`); None is `forever`."""
    if seconds is None:
        return "forever"
    left = max(0, int(seconds))
    if left < 60:
        return f"{left}s"
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or parts:
            count, left = divmod(left, size)
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    while len(parts) > 1 and parts[-1][0] == "0":
        parts.pop()
    return "".join(parts)
