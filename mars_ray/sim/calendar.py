"""The session calendar: when each book changes phase.

A day runs pre-open call → opening auction → continuous trading → closing call
→ closing auction, with optional halts during continuous trading (refuse new
orders → quotes only, in a call → re-opening auction). Actions are applied by
the exchange at their exact time: orders arriving before it are processed first.
"""

from __future__ import annotations

from dataclasses import dataclass

from mars_ray.sim.config import SessionConfig


@dataclass(frozen=True)
class CalendarAction:
    time_ns: int
    action: str  # "call" | "open" | "close" | "halt" | "resume_quotes" | "resume_trading"


def session_actions(session: SessionConfig) -> list[CalendarAction]:
    """The day's actions in time order (halts come between the auctions)."""
    actions = [
        CalendarAction(session.pre_open, "call"),
        CalendarAction(session.open, "open"),
        CalendarAction(session.closing_call, "call"),
        CalendarAction(session.close, "close"),
    ]
    for halt in session.halts:
        actions += [
            CalendarAction(halt.at, "halt"),
            CalendarAction(halt.quote, "resume_quotes"),
            CalendarAction(halt.trade, "resume_trading"),
        ]
    return sorted(actions, key=lambda a: a.time_ns)
