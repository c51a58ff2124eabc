"""An exchange: the books of some instruments for some trajectories, fed with OrderBatches.

Validation that needs no book (instrument, side, size, price on the tick grid,
NaN, prices and sizes within ``schema.quantities``'s bounds) is done for the whole
batch at once with numpy; what fails becomes a REJECT event with a reason and the
rest of the batch goes on. A reject shows the price and size sent, or NO_PRICE and 0
where they are beyond those bounds (int64 could not hold them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

from mars_ray.exchange.book import OrderBook
from mars_ray.exchange.compiled_book import CompiledOrderBook
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import (
    NO_ID,
    NO_PRICE,
    EventType,
    OrderType,
    concat_books,
    records_to_table,
    rows_to_table,
)
from mars_ray.schema.phases import Phase
from mars_ray.schema.quantities import (
    GRID_TOLERANCE,
    MAX_SHARES,
    MAX_TICKS,
    on_grid,
    ticks_in_range,
)
from mars_ray.schema.reasons import VALIDATION

# the book engines (``kernel.book``): the same rules and events, the compiled one faster
BOOKS: dict[str, type[OrderBook] | type[CompiledOrderBook]] = {
    "compiled": CompiledOrderBook,
    "python": OrderBook,
}

_LIMIT, _MARKET, _IOC, _CANCEL, _MODIFY = (int(t) for t in OrderType)
_REJECT = int(EventType.REJECT)

# Codes of the reject reasons found by batch validation (``reasons.VALIDATION``, 0 = accepted).
_CODE = {name: code for code, name in enumerate(VALIDATION) if name}

# For the fast check of a whole batch (Exchange._all_pass): order types as kinds, indexed
# by the int8 code's byte (0 = no such type), and by kind the least size (sizes are whole),
# whether the side does not matter and whether the price does not; the sides a new order
# may have (+1, and -1 as a byte).
_KIND_PRICED, _KIND_MARKET, _KIND_CANCEL, _KIND_MODIFY = 1, 2, 3, 4
_KIND = np.zeros(256, dtype=np.int8)
_KIND[[_LIMIT, _IOC, _MARKET, _CANCEL, _MODIFY]] = [
    _KIND_PRICED,
    _KIND_PRICED,
    _KIND_MARKET,
    _KIND_CANCEL,
    _KIND_MODIFY,
]
_MIN_SIZE = np.array([np.inf, 1.0, 1.0, 0.0, 1.0])
_SIDELESS = np.array([False, False, False, True, True])
_UNPRICED = np.array([False, False, True, True, False])
_SIDE_SET = np.zeros(256, dtype=bool)
_SIDE_SET[[1, 255]] = True


@njit(cache=True)
def _all_pass_ticks(inst, order_type, side, price, size, is_local, tick_sizes, kinds, min_size,
                    sideless, unpriced):  # fmt: skip
    """``Exchange._all_pass``'s checks row by row in one compiled loop, and what ``process``
    makes of the prices and sizes of rows that pass: (whether every row passes, prices in
    whole ticks, sizes in shares). The same float64 arithmetic, so the same ticks."""
    n = len(inst)
    price_ticks = np.empty(n, np.int64)
    shares = np.empty(n, np.int64)
    outside = len(is_local) - 1  # is_local's last slot: out of range
    for i in range(n):
        j = inst[i]
        if j < 0 or j >= outside or not is_local[j]:
            return False, price_ticks, shares
        kind = kinds[order_type[i] & 0xFF]
        sz = size[i]
        if not (sz >= min_size[kind] and sz == np.rint(sz) and sz <= MAX_SHARES):
            return False, price_ticks, shares
        if not (side[i] == 1 or side[i] == -1 or sideless[kind]):
            return False, price_ticks, shares
        px = price[i]
        ticks = px / tick_sizes[j]
        whole = np.rint(ticks)
        priced = abs(ticks - whole) <= GRID_TOLERANCE and ticks > 0.5 and ticks < MAX_TICKS + 0.5
        if not (priced or unpriced[kind] or (kind == _KIND_MODIFY and np.isnan(px))):
            return False, price_ticks, shares
        # what int64 cannot hold (NaN for unpriced rows) is shown as NO_PRICE
        price_ticks[i] = np.int64(whole) if abs(ticks) <= MAX_TICKS else NO_PRICE
        shares[i] = np.int64(sz)
    return True, price_ticks, shares


@njit(cache=True)
def _book_positions(keys, trajectory, instrument):
    """Each row's position in the sorted book ``keys`` (trajectory * 2**32 + instrument;
    ``len(keys)`` for no book here), and whether every row has the same book."""
    n = len(trajectory)
    pos = np.empty(n, np.int64)
    same = True
    for i in range(n):
        key = np.int64(trajectory[i]) * (1 << 32) + instrument[i]
        p = np.searchsorted(keys, key)
        if p == len(keys) or keys[p] != key:
            p = len(keys)
        pos[i] = p
        same = same and p == pos[0]
    return pos, same


@dataclass(frozen=True)
class InstrumentSpec:
    name: str
    tick_size: float
    reference_ticks: int


class Exchange:
    """Books keyed by (trajectory id, instrument index), of the engine ``book`` names
    (``BOOKS``: the same events either way)."""

    def __init__(
        self,
        instruments: Sequence[InstrumentSpec],
        local_instruments: Iterable[int],
        trajectories: Iterable[int],
        phase: Phase = Phase.CONTINUOUS,
        book: str = "compiled",
    ) -> None:
        self.instruments = list(instruments)
        self.local = sorted(set(local_instruments))
        self.trajectories = sorted(set(trajectories))
        if book not in BOOKS:
            raise ValueError(f"book must be one of {sorted(BOOKS)}, got {book!r}")
        book_type = BOOKS[book]
        self.books: dict[tuple[int, int], OrderBook | CompiledOrderBook] = {
            (traj, i): book_type(phase, reference_price=self.instruments[i].reference_ticks)
            for traj in self.trajectories
            for i in self.local
        }
        self._ticks = np.array([s.tick_size for s in self.instruments], dtype=np.float64)
        self._is_local = np.zeros(len(self.instruments) + 1, dtype=bool)  # last slot: out of range
        self._is_local[self.local] = True
        # the books in key order, and their keys as trajectory * 2**32 + instrument
        self._book_list = list(self.books.values())
        self._book_keys = np.array([traj * (1 << 32) + i for traj, i in self.books], np.int64)
        self._orphans: list[tuple] = []  # rejects that belong to no local book
        self._orphan_keys: list[tuple[str, int]] = []
        self._orphan_seq = 0

    # ---------------------------------------------------------------- orders
    def validate(self, batch: OrderBatch) -> np.ndarray:
        """Reason code per row (0 = passes the book-independent checks)."""
        if len(batch) and self._all_pass(batch) is not None:
            return np.zeros(len(batch), dtype=np.int8)
        return self._reason_codes(batch)

    def _all_pass(self, batch: OrderBatch) -> np.ndarray | None:
        """Prices in (float) ticks if every row passes every check, else None.

        The common case, checked with a third of ``_reason_codes``'s numpy calls
        (table lookups by order type and side, one final count): local
        instruments, known order types, a side for new orders, whole sizes up to
        MAX_SHARES (zero only to cancel), prices on the grid and from 1 to MAX_TICKS
        ticks where they count.
        None says nothing about which rows fail; ``_reason_codes`` does.
        """
        inst, ot, side = batch.instrument, batch.order_type, batch.side
        if not (inst.dtype == np.int32 and ot.dtype == np.int8 and side.dtype == np.int8):
            return None  # columns replaced after construction: leave it to _reason_codes
        index = inst.view(np.uint32)  # a negative instrument becomes a huge one: clipped
        kind = _KIND.take(ot.view(np.uint8))
        size, price = batch.size, batch.price
        with np.errstate(invalid="ignore", over="ignore"):
            ok = self._is_local.take(index, mode="clip")  # out of range: the last slot, False
            # sizes: NaN fails every comparison, +-inf the bound or the minimum
            ok &= size >= _MIN_SIZE.take(kind)
            ok &= size == np.rint(size)
            ok &= size <= MAX_SHARES
            ok &= _SIDE_SET.take(side.view(np.uint8)) | _SIDELESS.take(kind)
            ticks = price / self._ticks.take(index, mode="clip")
            priced = on_grid(ticks) & ticks_in_range(ticks)
            # market orders and cancels ignore the price; a modify may leave it out (NaN)
            priced |= _UNPRICED.take(kind) | ((kind == _KIND_MODIFY) & np.isnan(price))
            ok &= priced
        if np.count_nonzero(ok) != len(ok):
            return None
        return ticks

    def _compiled_pass(self, batch: OrderBatch) -> tuple[bool, np.ndarray, np.ndarray]:
        """``_all_pass`` compiled, with ``process``'s conversion of the rows that pass: (all
        pass, prices in ticks, sizes); the arrays mean nothing when not all pass."""
        inst, ot, side = batch.instrument, batch.order_type, batch.side
        price, size = batch.price, batch.size
        if not (
            inst.dtype == np.int32
            and ot.dtype == np.int8
            and side.dtype == np.int8
            and price.dtype == np.float64
            and size.dtype == np.float64
        ):
            return False, price, size  # columns replaced after construction: checked row by row
        return _all_pass_ticks(
            inst, ot, side, price, size, self._is_local, self._ticks, _KIND, _MIN_SIZE,
            _SIDELESS, _UNPRICED,
        )  # fmt: skip

    def _reason_codes(self, batch: OrderBatch) -> np.ndarray:
        """Reason code per row, each check spelled out (see ``reasons.VALIDATION``)."""
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

        with np.errstate(invalid="ignore", over="ignore"):
            tick = self._ticks[np.where(in_range, inst, 0)]
            ticks = price / tick
            off_grid = ~on_grid(ticks)
            checks = (
                ("unknown_instrument", ~local),
                ("invalid_order_type", ~(is_new | is_cancel | is_modify)),
                ("invalid_side", is_new & (side != 1) & (side != -1)),
                ("nan_size", np.isnan(size)),
                (
                    "invalid_size",
                    ~(size <= MAX_SHARES) | (size < 0) | (~is_cancel & (size == 0)),
                ),
                ("fractional_size", size != np.round(size)),
                ("nan_price", ((ot == _LIMIT) | (ot == _IOC)) & np.isnan(price)),
                ("invalid_price", priced & ~ticks_in_range(ticks)),
                ("off_tick", priced & off_grid),
            )
        # the first failing check names the reason
        for name, failed in reversed(checks):
            code[failed] = _CODE[name]
        return code

    def process(self, batch: OrderBatch) -> None:
        """Apply a time-sorted batch to the books, in order.

        Books are independent, so the rows go to each book's ``apply_batch`` as numpy
        columns, book by book (each book's rows in batch order, with the validation
        codes of those refused), and the per-row loop needs no book lookup. Rows of books
        this exchange does not hold are rejected last, in batch order.
        """
        n = len(batch)
        if not n:
            return
        # the common case: every row passes (checked and converted in one compiled call)
        passed, price_ticks, size = self._compiled_pass(batch)
        reasons = None if passed else self._reason_codes(batch)
        if not passed:
            with np.errstate(invalid="ignore", over="ignore"):
                n_inst = len(self.instruments)
                ticks = batch.price / self._ticks[np.clip(batch.instrument, 0, n_inst - 1)]
                # what int64 cannot hold (NaN, inf, 1e300) is shown as NO_PRICE and size 0,
                # never wrapped; only rejected rows can be out of these bounds
                shown = np.abs(ticks) <= MAX_TICKS
                price_ticks = np.where(shown, np.rint(ticks), NO_PRICE).astype(np.int64)
                shown = np.abs(batch.size) <= MAX_SHARES
                size = np.where(shown, np.rint(batch.size), 0).astype(np.int64)
        columns = [
            batch.time_ns,
            batch.order_type,
            batch.order_id,
            batch.side,
            price_ticks,
            size,
            batch.agent_id,
        ]
        order, counts = self._group(batch)
        grouped = reasons
        if order is not None:
            columns = [c[order] for c in columns]
            grouped = None if reasons is None else reasons[order]
        start = 0
        for book, count in zip(self._book_list, counts, strict=False):
            if count:
                part = slice(start, start + count)
                book.apply_batch(
                    [c[part] for c in columns], None if grouped is None else grouped[part]
                )
                start += count
        if counts[-1]:
            index = np.arange(n) if order is None else order[n - counts[-1] :]
            if reasons is None:
                reasons = np.zeros(n, dtype=np.int8)
            self._reject_orphans(batch, index, price_ticks, size, reasons)

    def _group(self, batch: OrderBatch) -> tuple[np.ndarray | None, list[int]]:
        """Rows grouped by book: (a stable order, or None when already grouped; the row
        count of each book in ``_book_list`` order, then of rows with no book here)."""
        keys = self._book_keys
        n = len(batch)
        if not len(keys):
            return None, [n]
        pos, same = _book_positions(keys, batch.trajectory_id, batch.instrument)
        if same:
            counts = [0] * (len(keys) + 1)
            counts[int(pos[0])] = n
            return None, counts
        counts = np.bincount(pos, minlength=len(keys) + 1).tolist()
        return np.argsort(pos, kind="stable"), counts

    def _reject_orphans(
        self,
        batch: OrderBatch,
        index: np.ndarray,
        price_ticks: np.ndarray,
        size: np.ndarray,
        codes: np.ndarray,
    ) -> None:
        """Reject the rows at ``index`` (batch order), which belong to no book held here."""
        for t, traj, inst, oid, side, px, sz, agent, code in zip(
            batch.time_ns[index].tolist(),
            batch.trajectory_id[index].tolist(),
            batch.instrument[index].tolist(),
            batch.order_id[index].tolist(),
            batch.side[index].tolist(),
            price_ticks[index].tolist(),
            size[index].tolist(),
            batch.agent_id[index].tolist(),
            codes[index].tolist(),
            strict=True,
        ):
            code = code or _CODE["unknown_instrument"]
            self._reject_orphan(t, traj, inst, oid, side, px, sz, agent, VALIDATION[code])

    def _reject_orphan(self, t, traj, inst, oid, side, px, sz, agent, reason) -> None:
        name = self.instruments[inst].name if 0 <= inst < len(self.instruments) else f"#{inst}"
        row = (t, _REJECT, oid, side, px or NO_PRICE, sz, agent, NO_ID, NO_ID, reason)
        self._orphans.append(row)
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
        base, records = self.books[key].drain_records()
        return records_to_table(records, self.instruments[inst].name, traj, base)

    def drain_tables(self) -> list[pa.Table]:
        """Events recorded since the last drain: one table per book, and one per
        (instrument, trajectory) of rejects that belong to no local book."""
        tables = [self.drain_book(key) for key in self.books]
        orphans: dict[tuple[str, int], list[tuple]] = {}
        for key, row in zip(self._orphan_keys, self._orphans, strict=True):
            orphans.setdefault(key, []).append(row)
        for (name, traj), rows in orphans.items():
            tables.append(rows_to_table(rows, name, traj, self._orphan_seq))
            self._orphan_seq += len(rows)
        self._orphans, self._orphan_keys = [], []
        return tables

    def drain(self) -> pa.Table:
        """All events recorded since the last drain, in canonical order."""
        return concat_books(self.drain_tables())
