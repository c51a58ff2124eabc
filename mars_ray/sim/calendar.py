"""The session calendar: when each book changes phase.

A day runs pre-open call → opening auction → continuous trading → closing call
→ closing auction. Actions are applied by the exchange at their exact time:
orders arriving before it are processed first.
"""

from __future__ import annotations

from dataclasses import dataclass

from mars_ray.config import SessionConfig


@dataclass(frozen=True)
class CalendarAction:
    time_ns: int
    action: str  # "call" | "open" | "close" (see Exchange.transition)


def session_actions(session: SessionConfig) -> list[CalendarAction]:
    return [
        CalendarAction(session.pre_open, "call"),
        CalendarAction(session.open, "open"),
        CalendarAction(session.closing_call, "call"),
        CalendarAction(session.close, "close"),
    ]
