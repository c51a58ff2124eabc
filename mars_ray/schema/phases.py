"""Session phases of a book: what the exchange, the agents and the replay all speak."""

from __future__ import annotations

from enum import IntEnum


class Phase(IntEnum):
    """``CLOSED`` rejects orders; ``CALL`` accepts them without matching (pre-open, closing
    call, after a halt's quote resume); ``CONTINUOUS`` matches on arrival; ``HALTED``
    rejects new orders and modifications but lets cancels through."""

    CLOSED = 0
    CALL = 1
    CONTINUOUS = 2
    HALTED = 3
