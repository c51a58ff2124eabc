"""The reasons events carry, in one table: strings in every table we write, codes inside
the compiled book (``compiled_book``), which records events as integers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Reject reasons found by the exchange's batch validation, indexed by code (0 = accepted).
VALIDATION: tuple[str | None, ...] = (
    None,
    "unknown_instrument",
    "invalid_order_type",
    "invalid_side",
    "nan_size",
    "invalid_size",
    "fractional_size",
    "nan_price",
    "invalid_price",
    "off_tick",
)

# What a book itself writes: rejects, cancels of what could not trade, phase names.
BOOK: tuple[str, ...] = (
    "duplicate_order_id",
    "halted",
    "market_closed",
    "ioc_during_call",
    "unknown_order",
    "market_unfilled",
    "ioc_unfilled",
    "auction_market_unfilled",
    "call",
    "continuous",
    "closed",
    "quote",
    "trade",
)

NO_REASON = -1  # the code of an event without a reason

# code -> name; the fixed names first (their codes are constants of the compiled book), then
# any other reason a caller passes to ``code`` (a user's reject reason), in order of arrival
_names: list[str] = [r for r in VALIDATION if r] + list(BOOK)
_codes: dict[str | None, int] = {name: i for i, name in enumerate(_names)}
_codes[None] = NO_REASON
_dictionary: pa.Array | None = None  # _names as Arrow, built when first needed (pyarrow's
# conversion of a list imports pandas, a quarter of a second a shard need not spend at start)


def code(name: str | None) -> int:
    """The code of a reason (registering a new one), NO_REASON for None."""
    found = _codes.get(name)
    if found is None:
        if not isinstance(name, str):
            raise TypeError(f"a reason is a string or None, got {name!r}")
        found = _codes[name] = len(_names)
        _names.append(name)
    return found


def name(code: int) -> str | None:
    """The reason of a code (None for NO_REASON)."""
    return None if code < 0 else _names[code]


def to_arrow(codes: np.ndarray) -> pa.Array:
    """The reasons of an array of codes as an Arrow string array (null: no reason)."""
    global _dictionary
    if _dictionary is None or len(_dictionary) != len(_names):
        _dictionary = pa.array(_names, type=pa.string())
    codes = np.asarray(codes, dtype=np.int64)
    return pc.take(_dictionary, pa.array(codes, mask=codes < 0))


# the exchange's validation codes as reason codes (accepted: NO_REASON)
FROM_VALIDATION = np.array([code(r) for r in VALIDATION], dtype=np.int64)
