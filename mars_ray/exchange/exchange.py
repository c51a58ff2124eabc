"""An exchange: the books of some instruments for some trajectories, fed with OrderBatches.

Validation that needs no book (instrument, side, size, price on the tick grid,
NaN) is done for the whole batch at once with numpy; what fails becomes a
REJECT event with a reason and the rest of the batch goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mars_ray.exchange.book import OrderBook, Phase
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema import NO_ID, NO_PRICE, EventType, OrderType, concat_sorted, rows_to_table

_LIMIT, _MARKET, _IOC, _CANCEL, _MODIFY = (int(t) for t in OrderType)
_REJECT = int(EventType.REJECT)

# Reject reasons found by batch validation, indexed by code (0 = accepted).
REASONS = (
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
_CODE = {name: code for code, name in enumerate(REASONS) if name}
_GRID_TOLERANCE = 1e-6  # in ticks: float prices like 100.07 land within 1e-12 of the grid


@dataclass(frozen=True)
class InstrumentSpec:
    name: str
    tick_size: float
    reference_ticks: int


class Exchange:
    """Books keyed by (trajectory id, instrument index)."""

    def __init__(
        self,
        instruments: Sequence[InstrumentSpec],
        local_instruments: Iterable[int],
        trajectories: Iterable[int],
        phase: Phase = Phase.CONTINUOUS,
    ) -> None:
        self.instruments = list(instruments)
        self.local = sorted(set(local_instruments))
        self.trajectories = sorted(set(trajectories))
        self.books: dict[tuple[int, int], OrderBook] = {
            (traj, i): OrderBook(phase, reference_price=self.instruments[i].reference_ticks)
            for traj in self.trajectories
            for i in self.local
        }
        self._ticks = np.array([s.tick_size for s in self.instruments], dtype=np.float64)
        self._is_local = np.zeros(len(self.instruments) + 1, dtype=bool)  # last slot: out of range
        self._is_local[self.local] = True
        self._orphans: list[tuple] = []  # rejects that belong to no local book
        self._orphan_keys: list[tuple[str, int]] = []
        self._orphan_seq = 0

    # ---------------------------------------------------------------- orders
    def validate(self, batch: OrderBatch) -> np.ndarray:
        """Reason code per row (0 = passes the book-independent checks)."""
        n = len(batch)
        code = np.zeros(n, dtype=np.int8)
        inst = batch.instrument
        in_range = (inst >= 0) & (inst < len(self.instruments))
        local = self._is_local[np.where(in_range, inst, len(self.instruments))]
        ot = batch.order_type
        size, price, side = batch.size, batch.price, batch.side
        is_new = (ot == _LIMIT) | (ot == _MARKET) | (ot == _IOC)
        is_cancel = ot == _CANCEL
        is_modify = ot == _MODIFY
        priced = (ot == _LIMIT) | (ot == _IOC) | (is_modify & ~np.isnan(price))

        with np.errstate(invalid="ignore"):
            tick = self._ticks[np.where(in_range, inst, 0)]
            ticks = price / tick
            off_grid = np.abs(ticks - np.round(ticks)) > _GRID_TOLERANCE
            checks = (
                ("unknown_instrument", ~local),
                ("invalid_order_type", ~(is_new | is_cancel | is_modify)),
                ("invalid_side", is_new & (side != 1) & (side != -1)),
                ("nan_size", np.isnan(size)),
                ("invalid_size", ~np.isfinite(size) | (size < 0) | (~is_cancel & (size == 0))),
                ("fractional_size", size != np.round(size)),
                ("nan_price", ((ot == _LIMIT) | (ot == _IOC)) & np.isnan(price)),
                ("invalid_price", priced & (~np.isfinite(price) | (price <= 0))),
                ("off_tick", priced & off_grid),
            )
        # the first failing check names the reason
        for name, failed in reversed(checks):
            code[failed] = _CODE[name]
        return code

    def process(self, batch: OrderBatch) -> None:
        """Apply a time-sorted batch to the books, in order."""
        if not len(batch):
            return
        codes = self.validate(batch)
        with np.errstate(invalid="ignore"):
            tick = self._ticks[np.clip(batch.instrument, 0, len(self.instruments) - 1)]
            price_ticks = np.where(np.isfinite(batch.price), np.round(batch.price / tick), 0)
            size = np.where(np.isfinite(batch.size), np.round(batch.size), 0)
        books = self.books
        for t, traj, inst, ot, oid, side, px, sz, agent, code in zip(
            batch.time_ns.tolist(),
            batch.trajectory_id.tolist(),
            batch.instrument.tolist(),
            batch.order_type.tolist(),
            batch.order_id.tolist(),
            batch.side.tolist(),
            price_ticks.astype(np.int64).tolist(),
            size.astype(np.int64).tolist(),
            batch.agent_id.tolist(),
            codes.tolist(),
            strict=True,
        ):
            book = books.get((traj, inst))
            if book is None:
                code = code or _CODE["unknown_instrument"]
                self._reject_orphan(t, traj, inst, oid, side, px, sz, agent, REASONS[code])
                continue
            if code:
                book.reject(t, oid, side, px, sz, agent, REASONS[code])
            elif ot <= _IOC:
                book.submit(t, oid, side, px, sz, agent, ot)
            elif ot == _CANCEL:
                book.cancel(t, oid, sz, agent)
            else:
                book.modify(t, oid, px if px > 0 else None, sz, agent)

    def _reject_orphan(self, t, traj, inst, oid, side, px, sz, agent, reason) -> None:
        name = self.instruments[inst].name if 0 <= inst < len(self.instruments) else f"#{inst}"
        self._orphans.append((t, _REJECT, oid, side, px or NO_PRICE, sz, agent, NO_ID, NO_ID, reason))
        self._orphan_keys.append((name, traj))

    # ---------------------------------------------------------------- phases
    def transition(self, t: int, action: str) -> None:
        """Apply a session-calendar action to every book: call, open, close_call, close."""
        for book in self.books.values():
            if action == "call":
                book.open_call(t)
            elif action == "open":
                book.uncross(t, Phase.CONTINUOUS)
            elif action == "close":
                book.uncross(t, Phase.CLOSED)
            elif action == "halt":
                book.halt(t)
            elif action == "resume_quotes":
                book.resume_quotes(t)
            elif action == "resume_trading":
                book.resume_trading(t)
            else:
                raise ValueError(f"unknown session action {action!r}")

    # ---------------------------------------------------------------- events
    def drain_book(self, key: tuple[int, int]) -> pa.Table:
        traj, inst = key
        base, rows = self.books[key].drain_events()
        return rows_to_table(rows, self.instruments[inst].name, traj, base)

    def drain(self) -> pa.Table:
        """All events recorded since the last drain, in canonical order."""
        tables = [self.drain_book(key) for key in self.books]
        if self._orphans:
            for (name, traj), row in zip(self._orphan_keys, self._orphans, strict=True):
                tables.append(rows_to_table([row], name, traj, self._orphan_seq))
                self._orphan_seq += 1
            self._orphans, self._orphan_keys = [], []
        return concat_sorted(tables)
