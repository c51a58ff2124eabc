"""LOBSTER message and orderbook files, to and from the event schema.

LOBSTER (https://lobsterdata.com) ships one trading day of one ticker as two csv
files with one row per message: ``time, type, order_id, size, price, direction``
and the top-N book right after that message. We read them into the project's one
event schema (``mars_ray.schema.EVENT_SCHEMA``) so real and simulated flow can be
compared row for row, and write event tables back out so simulated days can be
fed to tools that speak LOBSTER.

Reading is vectorised (``mars_ray.data.lobster_csv``: pyarrow.csv + numpy, no Python
loop over rows): a full day (~150k messages) loads in about 0.1 s. Every value is
validated by the rules below; a bad row raises ``LobsterFormatError`` naming the file,
the 1-based line, the column and the value, or with ``skip_bad_rows`` is skipped and
counted in the read's ``ReadReport`` (``Messages.report``). A message file and its
orderbook file are read together by ``read_pair``, which skips a line in both when
either is bad, so row i of the one stays the book after message i of the other.

A message row is bad when it has not six fields, a field is not an integer in int64
(the time: not a non-negative decimal, or beyond int64 ns), the type is not 1..7, the
direction is not 1 or -1 (types 1-5) or not -1, 0 or 1 (types 6, 7), the size is not
positive (types 1-5) or negative, a halt's price is not -1, 0 or 1, another price is
not positive or off the tick grid (but see type 5 below), or a price or size is beyond
``MAX_TICKS`` ticks or ``MAX_SHARES`` shares. An orderbook row is bad when a level
holds a price that is not positive, off the grid or beyond ``MAX_TICKS`` ticks, a size
that is not positive or beyond ``MAX_SHARES``, or an empty level (price
``EMPTY_ASK``/``EMPTY_BID``) a size other than 0.

Reading, message type by message type (``direction`` is the side column):

====  ==========================  =============================================
type  LOBSTER                     event
====  ==========================  =============================================
1     new limit order             SUBMIT
2     partial cancel              CANCEL (size = the cancelled part)
3     full delete                 CANCEL, reason ``"delete"``
4     visible execution           TRADE (order_id and side: the resting order)
5     hidden execution            HIDDEN_TRADE
6     cross trade (auction)       AUCTION
7     halt / resume               HALT (price -1), RESUME reason ``"quote"`` (0)
                                  or ``"trade"`` (1); price column NO_PRICE
====  ==========================  =============================================

Prices are dollars x 10000 in the files and integer ticks of $0.01 in events
(``TICK`` = 100 file units). A price off the tick grid is an error, with one
documented exception: hidden executions (type 5) legitimately print at the
midpoint, half a tick (e.g. 5777750 = $577.775). Their price column holds the
tick floor and ``reason`` holds ``"subtick:<rest>"`` (the remainder in file units),
so a write gives the original value back.

Times are seconds after midnight. They are parsed from the decimal string, never
through a float, into ``time_ns``: exactly up to nine decimals, and rounded to the
nearest ns (half up) beyond, as real files hold float artefacts such as
``43002.632812672004``; such rows are counted (``ReadReport.long_decimal_times``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from mars_ray.data.lobster_csv import (
    Lines,
    LobsterFormatError,
    ReadReport,
    open_text,
    read_lines,
    select_rows,
)
from mars_ray.schema.events import EVENT_SCHEMA, NO_ID, NO_PRICE, EventType
from mars_ray.schema.quantities import MAX_SHARES, MAX_TICKS

TICK = 100  # LOBSTER price units ($0.0001) per tick ($0.01)
EMPTY_ASK = 9999999999  # price of an empty ask level in an orderbook file
EMPTY_BID = -9999999999  # price of an empty bid level
MESSAGE_COLUMNS = ("time", "type", "order_id", "size", "price", "direction")

SUBMIT, PARTIAL_CANCEL, DELETE, EXECUTE, HIDDEN, CROSS, HALT = 1, 2, 3, 4, 5, 6, 7
HALT_STOP, HALT_QUOTE, HALT_TRADE = -1, 0, 1  # the price codes of type 7

DELETE_REASON = "delete"
SUBTICK_PREFIX = "subtick:"

_NAME = re.compile(
    r"^(?P<ticker>[^_]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_"
    r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv(?:\.gz)?$"
)


# ---------------------------------------------------------------------- names
@dataclass(frozen=True)
class LobsterName:
    """What a LOBSTER file name says: ``TICKER_DATE_START_END_KIND_LEVELS.csv[.gz]``."""

    ticker: str
    date: str
    kind: str  # "message" or "orderbook"
    levels: int


def parse_name(path: str | os.PathLike) -> LobsterName | None:
    m = _NAME.match(Path(path).name)
    if m is None:
        return None
    return LobsterName(m["ticker"], m["date"], m["kind"], int(m["levels"]))


def find_pairs(directory: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Every (message, orderbook) file pair under ``directory``, recursively, sorted."""
    pairs = []
    for msg in sorted(Path(directory).rglob("*_message_*.csv*")):
        name = parse_name(msg)
        if name is None:
            continue
        book = msg.with_name(msg.name.replace("_message_", "_orderbook_"))
        if book.is_file():
            pairs.append((msg, book))
    return pairs


def data_root() -> Path:
    """The shared data folder: $MARS_RAY_DATA, else ``../shared/data`` beside the project root."""
    env = os.environ.get("MARS_RAY_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


# ---------------------------------------------------------------------- messages
@dataclass
class Messages:
    """LOBSTER messages as numpy columns; prices in ticks (type 7: the halt code).

    ``subtick`` is the part of a hidden execution's price below the tick, in file
    units (0 everywhere else).
    """

    time_ns: np.ndarray
    type: np.ndarray
    order_id: np.ndarray
    size: np.ndarray
    price: np.ndarray
    direction: np.ndarray
    subtick: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    report: ReadReport = field(default_factory=ReadReport)  # what reading the file tolerated

    def __post_init__(self) -> None:
        n = len(self.type)
        if len(self.subtick) != n:
            self.subtick = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.type)

    def file_prices(self) -> np.ndarray:
        """Prices as written in a message file (dollars x 10000; halt codes as is)."""
        out = self.price * TICK + self.subtick
        halts = self.type == HALT
        out[halts] = self.price[halts]
        return out


def _check_prices(lines: Lines, column: str, priced: np.ndarray, on_grid: np.ndarray) -> None:
    """Prices in file units (dollars x 10000): positive, within ``schema.quantities``'
    MAX_TICKS, on the tick grid where ``on_grid``; checked only where ``priced``."""
    price = lines.values[column]
    lines.check(column, priced & (price <= 0), "must be positive")
    lines.check(column, priced & (price // TICK > MAX_TICKS), f"is beyond {MAX_TICKS:,} ticks")
    lines.check(
        column,
        priced & on_grid & (price % TICK != 0),
        f"is not a multiple of the tick ({TICK} = $0.01)",
    )


def _check_sizes(lines: Lines, column: str, sized: np.ndarray) -> None:
    """Sizes: positive where ``sized``, never negative nor beyond MAX_SHARES."""
    size = lines.values[column]
    lines.check(column, sized & (size <= 0), "must be positive")
    lines.check(column, size < 0, "must not be negative")
    lines.check(column, size > MAX_SHARES, f"is beyond {MAX_SHARES:,} shares")


def message_lines(path: str | os.PathLike) -> Lines:
    """A message file's lines with every fault of the rules in the module docstring."""
    lines = read_lines(path, MESSAGE_COLUMNS, time_column="time")
    typ, direction, price = (lines.values[c] for c in ("type", "direction", "price"))
    book_side = (typ >= SUBMIT) & (typ <= HIDDEN)
    halts = typ == HALT
    lines.check("type", (typ < SUBMIT) | (typ > HALT), "is not a message type (1..7)")
    one_side = (direction == 1) | (direction == -1)
    lines.check("direction", book_side & ~one_side, "must be 1 or -1 for types 1-5")
    lines.check("direction", (direction < -1) | (direction > 1), "must be -1, 0 or 1")
    _check_sizes(lines, "size", book_side)
    halt_code = (price >= HALT_STOP) & (price <= HALT_TRADE)
    lines.check("price", halts & ~halt_code, "must be -1, 0 or 1 for a halt (type 7)")
    _check_prices(lines, "price", ~halts, typ != HIDDEN)
    return lines


def _messages(lines: Lines, keep: np.ndarray, report: ReadReport) -> Messages:
    every = keep.all()
    col = {
        name: lines.values[name] if every else lines.values[name][keep] for name in MESSAGE_COLUMNS
    }
    typ, price = col["type"], col["price"]
    halts = typ == HALT
    ticks = np.where(halts, price, price // TICK)
    subtick = np.where(typ == HIDDEN, price % TICK, 0)
    return Messages(
        time_ns=col["time"],
        type=typ.astype(np.int8),
        order_id=col["order_id"],
        size=col["size"],
        price=ticks.astype(np.int64),
        direction=col["direction"].astype(np.int8),
        subtick=subtick.astype(np.int64),
        report=report,
    )


def read_message_columns(path: str | os.PathLike, *, skip_bad_rows: bool = False) -> Messages:
    """Read and validate a message file into numpy columns (the fast path for replays).

    A bad row raises ``LobsterFormatError``; with ``skip_bad_rows`` it is skipped and
    counted in ``Messages.report``.
    """
    lines = message_lines(path)
    keep, report = select_rows([lines], skip_bad_rows)
    return _messages(lines, keep, report)


def messages_to_table(msgs: Messages, instrument: str, trajectory_id: int = 0) -> pa.Table:
    """LOBSTER columns -> an EVENT_SCHEMA table (mapping in the module docstring)."""
    n = len(msgs)
    typ = msgs.type
    lookup = np.array(
        [
            -1,
            EventType.SUBMIT,
            EventType.CANCEL,
            EventType.CANCEL,
            EventType.TRADE,
            EventType.HIDDEN_TRADE,
            EventType.AUCTION,
            EventType.RESUME,
        ],
        dtype=np.int8,
    )
    event_type = lookup[typ]
    halts = typ == HALT
    event_type[halts & (msgs.price == HALT_STOP)] = EventType.HALT
    price = np.where(halts, NO_PRICE, msgs.price)
    reason = np.full(n, None, dtype=object)
    reason[typ == DELETE] = DELETE_REASON
    reason[halts & (msgs.price == HALT_QUOTE)] = "quote"
    reason[halts & (msgs.price == HALT_TRADE)] = "trade"
    sub = np.flatnonzero(msgs.subtick)
    for i in sub:
        reason[i] = f"{SUBTICK_PREFIX}{int(msgs.subtick[i])}"
    no_id = pa.array(np.full(n, NO_ID, dtype=np.int64))
    columns = {
        "time_ns": pa.array(msgs.time_ns.astype(np.int64)),
        "instrument": pa.array(np.full(n, instrument, dtype=object), type=pa.string()),
        "trajectory_id": pa.array(np.full(n, trajectory_id, dtype=np.int32)),
        "seq": pa.array(np.arange(n, dtype=np.int64)),
        "event_type": pa.array(event_type),
        "order_id": pa.array(msgs.order_id.astype(np.int64)),
        "side": pa.array(msgs.direction.astype(np.int8)),
        "price": pa.array(price.astype(np.int64)),
        "size": pa.array(msgs.size.astype(np.int64)),
        "agent_id": no_id,
        "contra_order_id": no_id,
        "contra_agent_id": no_id,
        "reason": pa.array(reason, type=pa.string()),
    }
    return pa.table([columns[f.name] for f in EVENT_SCHEMA], schema=EVENT_SCHEMA)


def ticker_of(path: str | os.PathLike) -> str:
    """The ticker a LOBSTER file name says; ValueError for another name."""
    name = parse_name(path)
    if name is None:
        raise ValueError(f"{path}: not a LOBSTER file name; pass instrument=")
    return name.ticker


def read_messages(
    path: str | os.PathLike,
    instrument: str | None = None,
    trajectory_id: int = 0,
    *,
    skip_bad_rows: bool = False,
) -> pa.Table:
    """A LOBSTER message file as an EVENT_SCHEMA table; the ticker comes from the file name."""
    instrument = ticker_of(path) if instrument is None else instrument
    msgs = read_message_columns(path, skip_bad_rows=skip_bad_rows)
    return messages_to_table(msgs, instrument, trajectory_id)


# ---------------------------------------------------------------------- orderbooks
def orderbook_columns(levels: int) -> list[str]:
    """The columns of an orderbook file, as LOBSTER names them: ask price, ask size, bid
    price, bid size, level after level."""
    return [
        f"{side}_{what}_{k}"
        for k in range(1, levels + 1)
        for side in ("ask", "bid")
        for what in ("price", "size")
    ]


def orderbook_lines(path: str | os.PathLike, levels: int | None = None) -> Lines:
    """An orderbook file's lines with every fault of the rules in the module docstring.

    ``levels`` defaults to the file name's, else the first line's column count / 4.
    """
    path = Path(path)
    if not path.is_file():
        raise LobsterFormatError(path, None, "no such file")
    if levels is None:
        name = parse_name(path)
        if name is not None:
            levels = name.levels
    if levels is None:
        with open_text(path) as f:
            first = f.readline()
        n_cols = len(first.split(","))
        if n_cols % 4:
            raise LobsterFormatError(path, 1, f"{n_cols} columns is not a multiple of 4")
        levels = n_cols // 4
    names = orderbook_columns(levels)
    lines = read_lines(path, names)
    for k in range(0, len(names), 2):
        price_col, size_col = names[k], names[k + 1]
        empty_code = EMPTY_ASK if price_col.startswith("ask") else EMPTY_BID
        empty = lines.values[price_col] == empty_code
        size = lines.values[size_col]
        lines.check(size_col, empty & (size != 0), "must be 0 at an empty level")
        _check_prices(lines, price_col, ~empty, ~empty)
        _check_sizes(lines, size_col, ~empty)
    return lines


def _book(lines: Lines, keep: np.ndarray) -> np.ndarray:
    """Kept lines -> int64 (rows, 4*levels), prices in ticks, empty levels 0."""
    names = orderbook_columns(len(lines.values) // 4)
    book = np.column_stack([lines.values[n] for n in names]).astype(np.int64)
    if not keep.all():
        book = book[keep]
    prices = book[:, 0::2]  # views: ask px, bid px, ask px, ...
    empty = np.zeros_like(prices, dtype=bool)
    empty[:, 0::2] = prices[:, 0::2] == EMPTY_ASK
    empty[:, 1::2] = prices[:, 1::2] == EMPTY_BID
    prices //= TICK
    prices[empty] = 0
    return book


def read_orderbook(path: str | os.PathLike, levels: int | None = None) -> np.ndarray:
    """An orderbook file as int64 (rows, 4*levels) in LOBSTER column order, prices in ticks.

    Empty levels (price +-9999999999, size 0) become price 0, size 0, the
    convention of ``OrderBook.snapshot``. A bad row raises; skipping one needs its
    message file too (``read_pair``), or the rows would no longer follow the messages.
    """
    lines = orderbook_lines(path, levels)
    keep, _ = select_rows([lines], skip_bad_rows=False)
    return _book(lines, keep)


def read_pair(
    message: str | os.PathLike,
    orderbook: str | os.PathLike,
    *,
    levels: int | None = None,
    skip_bad_rows: bool = False,
) -> tuple[Messages, np.ndarray]:
    """A message file and its orderbook file, row i of the book after message i.

    The files must have as many lines. A bad line in either raises, or with
    ``skip_bad_rows`` is skipped in both (counted in the messages' ``report``).
    """
    msg_lines = message_lines(message)
    book_lines = orderbook_lines(orderbook, levels)
    if len(msg_lines) != len(book_lines):
        raise LobsterFormatError(
            orderbook,
            None,
            f"{len(book_lines):,} rows, but the message file {message} has {len(msg_lines):,}",
        )
    keep, report = select_rows([msg_lines, book_lines], skip_bad_rows)
    return _messages(msg_lines, keep, report), _book(book_lines, keep)


def book_before_first(orderbook: np.ndarray, msgs: Messages) -> np.ndarray:
    """The book before message 0, from orderbook row 0 (which is after it): message 0 undone.

    Levels are aggregated, so this is exact except that a level pushed out of view
    by message 0 is unknown (it stays out).
    """
    levels = orderbook.shape[1] // 4
    row = orderbook[0].reshape(levels, 4)
    sides = {
        -1: dict(zip(row[:, 0].tolist(), row[:, 1].tolist(), strict=True)),
        1: dict(zip(row[:, 2].tolist(), row[:, 3].tolist(), strict=True)),
    }
    for s in sides.values():
        s.pop(0, None)
    typ, side = int(msgs.type[0]), int(msgs.direction[0])
    price, size = int(msgs.price[0]), int(msgs.size[0])
    if SUBMIT <= typ <= EXECUTE:
        level = sides[side]
        level[price] = level.get(price, 0) + (-size if typ == SUBMIT else size)
        if level[price] <= 0:
            del level[price]
    out = np.zeros((levels, 4), dtype=np.int64)
    for side, col in ((-1, 0), (1, 2)):
        ordered = sorted(sides[side].items(), reverse=side == 1)[:levels]
        for k, (p, s) in enumerate(ordered):
            out[k, col], out[k, col + 1] = p, s
    return out
