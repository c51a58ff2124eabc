"""Write simulated events as LOBSTER files: the message file, and the orderbook file that
replaying it gives, so that a written pair passes ``check-lobster`` by construction."""

from __future__ import annotations

import dataclasses
import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mars_ray.data.lobster import (
    CROSS,
    DELETE,
    DELETE_REASON,
    EMPTY_ASK,
    EMPTY_BID,
    EXECUTE,
    HALT,
    HALT_QUOTE,
    HALT_STOP,
    HALT_TRADE,
    HIDDEN,
    PARTIAL_CANCEL,
    SUBMIT,
    SUBTICK_PREFIX,
    TICK,
    Messages,
)
from mars_ray.data.lobster_replay import replay_orderbook
from mars_ray.schema.events import NO_ID, NO_PRICE, EventType

# Why a book cancels an aggressor's rest on arrival (never visible, so never written).
_UNFILLED_REASONS = frozenset({"ioc_unfilled", "market_unfilled"})
# The largest order id many LOBSTER readers hold (a signed 32-bit integer, as real ids fit).
MAX_FILE_ORDER_ID = 2**31 - 1
# LOBSTER's pseudo order ids of a cross (type 6): the opening, the closing and any other
# (a halt's re-opening). Its help pages document the ids, not a direction; the files carry -1.
OPENING_CROSS_ID, CLOSING_CROSS_ID, OTHER_CROSS_ID = -1, -2, -3
CROSS_DIRECTION = -1


@dataclass
class WriteStats:
    """Events the writer could not express in LOBSTER, by reason (for the caller to report)."""

    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def events_to_messages(table: pa.Table) -> tuple[Messages, WriteStats]:
    """Map one book's events (EVENT_SCHEMA, in ``seq`` order) to LOBSTER messages.

    LOBSTER shows only what rests in the visible book, so:

    - SUBMIT is written as type 1 with the size that rests after it has traded on
      arrival (the aggressor's fills are the resting orders' type 4 messages); an
      order that rests nothing (filled, IOC or market remainder cancelled) writes
      no type 1. Market orders resting in a call (price NO_PRICE) stay invisible.
    - TRADE is type 4 for the resting order (its own side and the event price).
      In an auction both orders rest, so both get a type 4, each at its own
      limit price (that is where the visible size leaves); the auction price and
      volume are on the type 6 message of the AUCTION event.
    - CANCEL is type 3 with reason ``"delete"`` or when it removes a tracked
      order entirely, else type 2. The aggressor's IOC/market remainder is skipped.
    - MODIFY: a size reduction at the same price is a type 2 of the difference;
      anything else is a type 3 of the old order plus a new submission (same id)
      handled like SUBMIT. A modify of an order never seen is skipped.
    - HALT/RESUME are type 7 (-1 / 0 "quote" / 1 "trade"), AUCTION type 6,
      HIDDEN_TRADE type 5. REJECT and PHASE have no LOBSTER form and are skipped.
    - A simulated auction (no order id) is written as LOBSTER writes crosses: order id
      -1 for the opening, -2 for the closing (the one the book closes after), -3 for
      any other (a halt's re-opening), direction -1. A replayed one keeps the file's.
    """
    names = {
        n: table.column(n).to_pylist()
        for n in (
            "time_ns",
            "event_type",
            "order_id",
            "side",
            "price",
            "size",
            "contra_order_id",
            "reason",
        )
    }
    if table.num_rows and len(set(table.column("instrument").unique().to_pylist())) > 1:
        raise ValueError("events_to_messages takes one instrument's events")
    if table.num_rows and len(table.column("trajectory_id").unique()) > 1:
        raise ValueError("events_to_messages takes one trajectory's events")
    order = np.argsort(table.column("seq").to_numpy(), kind="stable")
    stats = WriteStats()
    out: list[tuple[int, int, int, int, int, int, int]] = []
    emit = out.append
    visible: dict[int, list[int]] = {}  # order id -> [side, price, remaining], written as type 1
    invisible: dict[int, int] = {}  # resting orders LOBSTER cannot show (market orders in a call)
    pending: list[int] | None = None  # [oid, side, price, left, time, is_market] just submitted

    def flush() -> None:
        nonlocal pending
        if pending is None:
            return
        oid, side, price, left, t, market = pending
        pending = None
        if left <= 0:
            return
        if market:
            invisible[oid] = left
        else:
            emit((t, SUBMIT, oid, left, price, side, 0))
            visible[oid] = [side, price, left]

    def take(oid: int, size: int) -> None:
        v = visible[oid]
        v[2] -= size
        if v[2] <= 0:
            del visible[oid]

    ev_time, ev_type, ev_oid = names["time_ns"], names["event_type"], names["order_id"]
    ev_side, ev_price, ev_size = names["side"], names["price"], names["size"]
    ev_contra, ev_reason = names["contra_order_id"], names["reason"]
    rows = order.tolist()
    cross_ids = _cross_ids(rows, ev_type, ev_oid, ev_reason)
    for i in rows:
        t, et, oid, side = ev_time[i], ev_type[i], ev_oid[i], ev_side[i]
        price, size, reason = ev_price[i], ev_size[i], ev_reason[i]
        if et == EventType.TRADE:
            contra = ev_contra[i]
            if pending is not None and contra == pending[0]:
                pending[3] -= size
                auction = False
            else:
                flush()
                auction = contra != NO_ID and (contra in visible or contra in invisible)
            if oid in invisible:
                invisible[oid] -= size
                if invisible[oid] <= 0:
                    del invisible[oid]
            else:
                v = visible.get(oid)
                emit((t, EXECUTE, oid, size, v[1] if (auction and v) else price, side, 0))
                if v is not None:
                    take(oid, size)
            if auction:
                if contra in invisible:
                    invisible[contra] -= size
                    if invisible[contra] <= 0:
                        del invisible[contra]
                else:
                    cs, cp, _ = visible[contra]
                    emit((t, EXECUTE, contra, size, cp, cs, 0))
                    take(contra, size)
            continue
        if (
            et == EventType.CANCEL
            and pending is not None
            and oid == pending[0]
            and reason in _UNFILLED_REASONS
        ):
            pending[3] -= size  # the aggressor's unfilled IOC/market rest: never visible
            flush()
            continue
        flush()
        if et == EventType.SUBMIT:
            pending = [oid, side, price, size, t, price == NO_PRICE]
        elif et == EventType.CANCEL:
            if oid in invisible:
                del invisible[oid]
                continue
            v = visible.get(oid)
            full = reason == DELETE_REASON or (v is not None and size >= v[2])
            emit((t, DELETE if full else PARTIAL_CANCEL, oid, size, price, side, 0))
            if v is not None:
                if full:
                    del visible[oid]
                else:
                    take(oid, size)
        elif et == EventType.MODIFY:
            v = visible.get(oid)
            if v is None:
                if oid in invisible and price != NO_PRICE:
                    del invisible[oid]
                    pending = [oid, side, price, size, t, False]
                else:
                    stats.skip("modify_unknown_order")
                continue
            vside, vprice, rem = v
            if price == vprice and 0 < size <= rem:
                if size < rem:
                    emit((t, PARTIAL_CANCEL, oid, rem - size, vprice, vside, 0))
                    v[2] = size
                continue
            emit((t, DELETE, oid, rem, vprice, vside, 0))
            del visible[oid]
            if size > 0:
                pending = [oid, vside, price, size, t, False]
        elif et == EventType.HIDDEN_TRADE:
            sub = 0
            if reason and reason.startswith(SUBTICK_PREFIX):
                sub = int(reason[len(SUBTICK_PREFIX) :])
            emit((t, HIDDEN, oid, size, price, side, sub))
        elif et == EventType.AUCTION:
            if oid == NO_ID and side == 0:  # the simulator's own auction
                oid, side = cross_ids[i], CROSS_DIRECTION
            emit((t, CROSS, oid, size, price, side, 0))
        elif et == EventType.HALT:
            emit((t, HALT, oid, size, HALT_STOP, side, 0))
        elif et == EventType.RESUME:
            code = HALT_QUOTE if reason == "quote" else HALT_TRADE
            emit((t, HALT, oid, size, code, side, 0))
        else:
            stats.skip(EventType(et).name.lower())
    flush()
    cols = list(zip(*out, strict=True)) if out else [()] * 7
    msgs = Messages(
        time_ns=np.array(cols[0], dtype=np.int64),
        type=np.array(cols[1], dtype=np.int8),
        order_id=np.array(cols[2], dtype=np.int64),
        size=np.array(cols[3], dtype=np.int64),
        price=np.array(cols[4], dtype=np.int64),
        direction=np.array(cols[5], dtype=np.int8),
        subtick=np.array(cols[6], dtype=np.int64),
    )
    return msgs, stats


def _cross_ids(
    order: list[int], types: list[int], ids: list[int], reasons: list[str | None]
) -> dict[int, int]:
    """LOBSTER's pseudo id for each simulated auction event (by row): the auction is a
    closing one when the next phase the book enters is ``closed``, another one (a halt's
    re-opening) when the book halted since it last entered continuous trading."""
    out: dict[int, int] = {}
    halted = False
    auctions: list[int] = []  # waiting for the phase they lead to
    for i in order:
        et = types[i]
        if et == EventType.HALT:
            halted = True
        elif et == EventType.AUCTION and ids[i] == NO_ID:
            auctions.append(i)
        elif et == EventType.PHASE:
            closing = reasons[i] == "closed"
            out.update(dict.fromkeys(auctions, _cross_id(closing, halted)))
            auctions.clear()
            if reasons[i] == "continuous":
                halted = False
    out.update(dict.fromkeys(auctions, _cross_id(False, halted)))  # no phase after them
    return out


def _cross_id(closing: bool, halted: bool) -> int:
    if closing:
        return CLOSING_CROSS_ID
    return OTHER_CROSS_ID if halted else OPENING_CROSS_ID


def fit_order_ids(msgs: Messages) -> Messages:
    """Order ids that readers assuming 32-bit ids can hold. Simulated ids carry the agent id
    above bit 32; when any id exceeds ``MAX_FILE_ORDER_ID``, every order id is renumbered
    1, 2, ... in the order of its first message (the same order keeps one id through the
    file). Files whose ids fit, as real LOBSTER days do, keep theirs; pseudo ids (0 for a
    hidden execution, negative for a cross) stay."""
    ids = msgs.order_id
    if len(ids) == 0 or int(ids.max()) <= MAX_FILE_ORDER_ID:
        return msgs
    real = ids > 0
    distinct, first = np.unique(ids[real], return_index=True)
    number = np.empty(len(distinct), dtype=np.int64)
    number[np.argsort(first, kind="stable")] = np.arange(1, len(distinct) + 1)
    out = ids.copy()
    out[real] = number[np.searchsorted(distinct, ids[real])]
    return dataclasses.replace(msgs, order_id=out)


def _format_time(t: int) -> str:
    """LOBSTER's own style: decimals without trailing zeros."""
    s, f = divmod(t, 1_000_000_000)
    return f"{s}.{f:09d}".rstrip("0").rstrip(".")


def write_message_file(msgs: Messages, path: str | os.PathLike) -> None:
    """Write messages as a LOBSTER message file (gzip if the name ends in .gz)."""
    if len(msgs) and int(msgs.time_ns.min()) < 0:
        raise ValueError("message times must not be negative")
    prices = msgs.file_prices().tolist()
    lines = [
        f"{_format_time(t)},{typ},{oid},{size},{p},{d}\n"
        for t, typ, oid, size, p, d in zip(
            msgs.time_ns.tolist(),
            msgs.type.tolist(),
            msgs.order_id.tolist(),
            msgs.size.tolist(),
            prices,
            msgs.direction.tolist(),
            strict=True,
        )
    ]
    text = "".join(lines).encode()
    path = Path(path)
    if path.suffix == ".gz":
        text = gzip.compress(text, compresslevel=6)
    path.write_bytes(text)


def write_orderbook_file(book: np.ndarray, path: str | os.PathLike) -> None:
    """Write an orderbook array (ticks, 0 = empty) as a LOBSTER orderbook file."""
    out = np.array(book, dtype=np.int64, copy=True)
    prices = out[:, 0::2]
    empty = prices == 0
    prices *= TICK
    prices[:, 0::2][empty[:, 0::2]] = EMPTY_ASK
    prices[:, 1::2][empty[:, 1::2]] = EMPTY_BID
    table = pa.table({f"c{i}": out[:, i] for i in range(out.shape[1])})
    buf = pa.BufferOutputStream()
    pacsv.write_csv(table, buf, write_options=pacsv.WriteOptions(include_header=False))
    text = buf.getvalue().to_pybytes()
    path = Path(path)
    if path.suffix == ".gz":
        text = gzip.compress(text, compresslevel=6)
    path.write_bytes(text)


def write_lobster(
    table: pa.Table,
    message_path: str | os.PathLike,
    orderbook_path: str | os.PathLike,
    levels: int,
    initial: np.ndarray | None = None,
) -> tuple[Messages, np.ndarray, WriteStats]:
    """Write one book's events as a LOBSTER message + orderbook file pair.

    Order ids too large for 32-bit readers are renumbered (``fit_order_ids``). The
    orderbook is the written messages replayed by ``replay_orderbook`` (the
    check's replay) from ``initial`` (the book before the
    first event, ticks; empty if None), so the pair passes ``check-lobster`` by
    construction. ``book_before_first`` gives ``initial`` for a real file.
    """
    if levels < 1:
        raise ValueError("levels must be at least 1")
    msgs, stats = events_to_messages(table)
    msgs = fit_order_ids(msgs)
    book = replay_orderbook(msgs, levels, initial)
    write_message_file(msgs, message_path)
    write_orderbook_file(book, orderbook_path)
    return msgs, book, stats
