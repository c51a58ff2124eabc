"""Times of day: every time in the project is an integer count of ns after midnight of the
session date; configs and requests write them as ``'09:30'`` or ``'09:30:00.5'``."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S


def parse_clock(value: Any) -> int:
    """'09:30' or '09:30:00.5' (or seconds after midnight) → ns after midnight."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        parts = value.strip().split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"expected HH:MM[:SS], got {value!r}")
        try:
            h, m = int(parts[0]), int(parts[1])
            s = float(parts[2]) if len(parts) == 3 else 0.0
        except ValueError as exc:
            raise ValueError(f"expected HH:MM[:SS], got {value!r}") from exc
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
            raise ValueError(f"not a time of day: {value!r}")
        seconds = h * 3600 + m * 60 + s
    else:
        raise ValueError(f"expected a time of day like '09:30', got {value!r}")
    if not math.isfinite(seconds) or not 0 <= seconds <= 86400:
        raise ValueError(f"not a time of day: {value!r}")
    return round(seconds * NS_PER_S)


def clock_ns(value: Any) -> int:
    """``parse_clock``, except that an int over 86,400 is already ns after midnight (what a
    validated config holds, so that it validates again); within the day either way."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 86400:
        if value > NS_PER_DAY:
            raise ValueError(f"not a time of day: {value!r} ns after midnight")
        return value
    return parse_clock(value)


# A time-of-day field of a config or request: '09:30', seconds, or (as a validated model
# dumps it) ns after midnight
Clock = Annotated[int, BeforeValidator(clock_ns)]


def format_clock(ns: int) -> str:
    """ns after midnight → 'HH:MM:SS.mmm'."""
    s = ns / NS_PER_S
    return f"{int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:06.3f}"
