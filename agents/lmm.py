"""The LMM background agent: the trained order model generates each book's background flow.

One object serves every book of a shard (all its instruments, all trajectories):
each generated order is one batched forward pass over all books that still
act in the step, so the cost of a step is the longest book's order count, not
the sum over books.

How a step [t0, t1) works, per book:

1. The agent sees the book as it was at t0 (the boundary snapshot, like every
   other agent), including what other agents' orders did to it: that is how
   injected orders change what the model generates next.
2. It generates orders one at a time. Each order's gap token sets its time;
   the order is decoded against a *shadow* of the top 10 levels (the t0 book
   with the agent's own orders of this step applied), and the shadow after it
   conditions the next order. An order whose time falls at or after t1 is kept
   for the next step, decoded then against the newer book.
3. New orders get ids from the book's agent id; a cancel token cancels this
   agent's own live order at the token's price on that side, else the nearest one
   behind it, else the nearest in front (nothing, when it has none on that side).
   Fills keep the live-order list exact.
4. With ``keep_both_sides`` (the default) no order empties a side of the shadow: a cancel
   that would is skipped, a market order that would is cut to all but that side's deepest
   level (dropped when it has one level). Real books are never one-sided in continuous
   trading; the model alone, at a sampling temperature of 1, sometimes sweeps a thin side.
   ``guarded`` counts what the rule changed.

It generates only in continuous trading (between ``start`` and ``end``, and
not in a step that contains a session action such as the closing call).
Sampling uses per-book seeded generators, and every forward pass covers at
least ``BATCH_FLOOR`` rows (see ``mars_ray/lmm/generate.py``), so a book's
orders are the same whatever the shard layout or the other simulations that
share a served model's batch (tested).

The model runs in the shard (``backend: local``) or in the Ray Serve deployment
of ``mars-ray serve`` (``backend: serve``), which batches many simulations'
steps into one forward pass; both give the same orders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Protocol

import numpy as np
from pydantic import Field, field_validator, model_validator
from sortedcontainers import SortedDict

from agents.base import NO_ORDERS, AgentParams
from agents.view import Fills
from mars_ray.exchange.orders import OrderBatch
from mars_ray.lmm.size_regime import SizeRegime
from mars_ray.lmm.tokenizer import (
    CANCEL_KINDS,
    INSIDE,
    N_BOOK,
    Kind,
    Tokenizer,
    book_features_one,
    decode_price_one,
    encode_price_level,
    median_spread,
    scale_levels,
    scale_spread_features,
    touch_order_rate,
)
from mars_ray.schema.clock import Clock, parse_clock
from mars_ray.schema.events import OrderType
from mars_ray.schema.phases import Phase
from mars_ray.schema.quantities import MAX_TICKS, Ticks

if TYPE_CHECKING:  # torch is imported only when a model is really loaded
    from mars_ray.lmm.control import FlowController
    from mars_ray.lmm.corpus import UnitOrders
    from mars_ray.lmm.generate import OrderGenerator

LEVELS = 10
CONTEXT_DEFAULT = 256  # real orders given as context to a generator that does not say its window
REGIME_RANGE = (0.25, 4.0)  # regime factors beyond these would show the model books it never saw
_LIMIT = int(OrderType.LIMIT)
_MARKET = int(OrderType.MARKET)
_CANCEL = int(OrderType.CANCEL)
_BUY = int(Kind.BUY)
_CANCEL_BUY = int(Kind.CANCEL_BUY)


# The sampling temperature, wherever one is given: from 0.01 (near argmax already; smaller
# values overflow the model's float32 logits) to 10 (near uniform).
Temperature = Annotated[float, Field(ge=0.01, le=10)]


class MidPathParams(AgentParams):
    """A target mid through (time of day, ticks) points, linear between them."""

    at: list[int] = Field(min_length=1, description="times of day, e.g. ['10:00', '10:05']")
    ticks: list[Annotated[Ticks, Field(ge=-MAX_TICKS)]] = Field(
        min_length=1, description="target mid at each time (ticks)"
    )
    relative: bool = Field(default=True, description="ticks are offsets from the first mid")

    @field_validator("at", mode="before")
    @classmethod
    def _clocks(cls, value: object) -> list[int]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list of times of day, got {value!r}")
        return [parse_clock(v) for v in value]

    @model_validator(mode="after")
    def _points(self) -> MidPathParams:
        if len(self.at) != len(self.ticks):
            raise ValueError(f"{len(self.at)} times but {len(self.ticks)} ticks")
        if any(b <= a for a, b in zip(self.at, self.at[1:], strict=False)):
            raise ValueError("times must be strictly increasing")
        return self


class VolatilityParams(AgentParams):
    sigma: Ticks = Field(gt=0, description="target std of the mid change per 10 s (ticks)")


class VolumeParams(AgentParams):
    orders_per_s: float = Field(gt=0, description="target order rate per book (all kinds)")


class ControlParams(AgentParams):
    """Steer the generated flow (mars_ray/lmm/control.py): give one of mid_path, volatility,
    volume."""

    mid_path: MidPathParams | None = None
    volatility: VolatilityParams | None = None
    volume: VolumeParams | None = None
    batch_model: str | None = Field(
        default=None, description="order-batch model (default: the shipped one)"
    )
    horizon_s: float = Field(
        default=10.0, gt=0, le=86_400, description="look-ahead to close the gap"
    )
    gain: float = Field(default=1.0, ge=0)
    # 20: odds moved by e^40 are certainty already; more overflows the tilt's exp
    max_bias: float = Field(default=2.0, ge=0, le=20, description="cap on a kind's logit shift")
    seed: int = Field(default=0, ge=0, description="the volatility target's random walk")

    @field_validator("batch_model")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> ControlParams:
        given = [k for k in ("mid_path", "volatility", "volume") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of mid_path, volatility, volume; got {given}")
        return self

    def controller(self, tokenizer: Tokenizer, books: int) -> FlowController:
        from mars_ray.lmm.batch_model import load_batch_model
        from mars_ray.lmm.control import (
            ControlConfig,
            FlowController,
            MidPath,
            Target,
            Volatility,
            Volume,
        )

        batch_model, _ = load_batch_model(self.batch_model)
        target: Target
        if self.mid_path is not None:
            target = MidPath(self.mid_path.at, self.mid_path.ticks, self.mid_path.relative)
        elif self.volatility is not None:
            target = Volatility(self.volatility.sigma)
        else:
            assert self.volume is not None
            target = Volume(self.volume.orders_per_s)
        config = ControlConfig(self.horizon_s, self.gain, self.max_bias)
        return FlowController(batch_model, tokenizer, target, books, config, seed=self.seed)


class LMMParams(AgentParams):
    checkpoint: str | None = Field(
        default=None, description="model checkpoint (default: the shipped model)"
    )
    temperature: Temperature = 1.0
    start: Clock = Field(default=parse_clock("09:30"), description="first time it may act")
    end: Clock = Field(default=parse_clock("16:00"), description="it stops acting here")
    max_orders_per_step: int = Field(
        default=1000, ge=1, le=1_000_000, description="cap per book and step (runaway guard)"
    )
    max_orders: int | None = Field(
        default=None, ge=1, description="stop after this many orders per book (a horizon)"
    )
    backend: Literal["local", "serve"] = Field(
        default="local",
        description="local: the model runs in the shard; serve: ask the Ray Serve deployment "
        "started by `mars-ray serve` (one batched forward pass for many simulations)",
    )
    serve_app: str = Field(
        default="mars-ray", min_length=1, description="Serve application name (backend: serve)"
    )
    control: ControlParams | None = Field(
        default=None, description="steer every book toward a mid path or a volatility"
    )
    draw_in_bins: bool = Field(
        default=True,
        description="decode a gap as a log-uniform draw over its bin and an INSIDE order at a "
        "depth into the spread drawn from the model's fitted quantiles; false: every gap at "
        "its bin's median and every INSIDE order one tick in (docs/lmm.md, Generation)",
    )
    regime: Literal["context", "off"] | Annotated[float, Field(gt=0)] = Field(
        default="context",
        description="context: with real orders as context (a real start), read the "
        "instrument's regime from them: distances behind the best and the spread the "
        "model sees are scaled by the context's median spread over the model's training "
        "median, its gaps by the context's orders a second at the touch over the "
        "training days', and its order sizes are mapped by rank onto the context's (without "
        "a context it changes nothing: docs/lmm.md); a number: as "
        "context, and where there is none to read (a run from an empty book) this number is "
        "taken as the instrument's typical quoted spread in ticks; off: ticks and time as "
        "trained",
    )
    touch_rate: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="the instrument's orders a second at the touch, for books with no "
        "context to read them from (a run from an empty book): gaps are scaled by it over "
        "the training days' rate, as a context's would scale them; a context, where there "
        "is one, still says; nothing with regime: off (docs/lmm.md, The pace)",
    )
    keep_both_sides: bool = Field(
        default=True,
        description="never empty a side of the book in view: a cancel that would is skipped, "
        "a market order that would is cut to all but the side's deepest level (docs/lmm.md)",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="torch CPU threads: a step is a batch of a few books, too small to split, "
        "and shards already use one core each",
    )


class GeneratorBackend(Protocol):
    """Makes the generator of one agent (``rows``: the books it generates for) and the
    tokenizer of its model. ``local`` is built in; the layers that run simulations hand in
    others (``mars_ray.serve.generator.SERVE_BACKENDS``: the served model)."""

    def __call__(self, params: LMMParams, rows: int) -> tuple[OrderGenerator, Tokenizer]: ...


def local_backend(params: LMMParams, rows: int) -> tuple[OrderGenerator, Tokenizer]:
    """The model in this process (``backend: local``), on ``params.threads`` CPU threads."""
    import torch

    from mars_ray.lmm.checkpoint import load_model
    from mars_ray.lmm.generate import LocalGenerator

    torch.set_num_threads(params.threads)
    device = None if params.device == "auto" else params.device
    loaded = load_model(params.checkpoint, device=device)
    return LocalGenerator(loaded, rows, params.temperature), loaded.tokenizer


def _regime_factor(ratio: float) -> float:
    """A regime's factor (the instrument's over the training books') within REGIME_RANGE."""
    return min(REGIME_RANGE[1], max(REGIME_RANGE[0], ratio))


@dataclass
class BookSlot:
    """One book this agent trades: where it is and whose orders it sends."""

    trajectory: int
    instrument: int
    agent_id: int
    tick_size: float
    reference_ticks: int
    rng: np.random.Generator
    # state
    last_time: int = 0
    last_token: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    started: bool = False
    held: np.ndarray | None = None  # a generated token due in a later step
    held_time: int = 0
    counter: int = 0
    generated: int = 0  # tokens sampled so far (the ``max_orders`` horizon counts these)
    scale: float = 1.0  # ticks here per tick of the model's training books (regime)
    pace: float = 1.0  # orders at the touch here per one on the model's training books
    sizes: SizeRegime | None = None  # the instrument's order sizes by the model's size bins
    live: dict[int, list[int]] = field(default_factory=dict)  # order id -> [side, px, left]
    # own shares this step's own aggressors took, until on_fills reports them:
    # order id -> [side, px, shares]
    taken: dict[int, list[int]] = field(default_factory=dict)
    # the same orders by side and price (oldest first), to find a cancel's target quickly
    by_price: dict[int, SortedDict] = field(
        default_factory=lambda: {1: SortedDict(), -1: SortedDict()}
    )

    def new_order_id(self) -> int:
        """The next id of this book's orders: the agent id above, a counter below."""
        oid = (self.agent_id << 32) | self.counter
        self.counter += 1
        return oid

    def add_live(self, oid: int, side: int, price: int, size: int) -> None:
        self.live[oid] = [side, price, size]
        self.by_price[side].setdefault(price, {})[oid] = None

    def drop_live(self, oid: int) -> list[int]:
        entry = self.live.pop(oid)
        level = self.by_price[entry[0]][entry[1]]
        del level[oid]
        if not level:
            del self.by_price[entry[0]][entry[1]]
        return entry

    def take_own(self, side: int, price: int, shares: int) -> None:
        """This agent's aggressor takes ``shares`` at ``price`` of ``side``: its own orders
        there lose them oldest first, now, as the exchange will fill them, so that a cancel
        later in the step does not aim at an order already gone (the shadow would drop shares
        the book still holds). ``settle_taken`` gives back what was not filled after all:
        another agent's order at that price was ahead."""
        level = self.by_price[side].get(price)
        for oid in list(level or ()):
            if shares <= 0:
                break
            entry = self.live[oid]
            got = min(shares, entry[2])
            shares -= got
            entry[2] -= got
            self.taken.setdefault(oid, [side, price, 0])[2] += got
            if entry[2] <= 0:
                self.drop_live(oid)

    def settle_taken(self) -> None:
        """At a new step (the last one's fills reported): own shares taken but never filled
        are live again."""
        for oid, (side, price, shares) in self.taken.items():
            if shares <= 0:
                continue
            if oid in self.live:
                self.live[oid][2] += shares
            else:
                self.add_live(oid, side, price, shares)
        self.taken.clear()

    def filled(self, oid: int, shares: int) -> None:
        """A fill the exchange reports: first what ``take_own`` already counted, then the
        order's live shares."""
        counted = self.taken.get(oid)
        if counted is not None:
            used = min(counted[2], shares)
            counted[2] -= used
            shares -= used
        entry = self.live.get(oid)
        if entry is None or shares <= 0:
            return
        entry[2] -= shares
        if entry[2] <= 0:
            self.drop_live(oid)

    def cancel_target(self, side: int, price: int) -> int | None:
        """The order a cancel token at ``price`` on ``side`` takes: this agent's oldest live
        order at the nearest of its live prices at or behind ``price`` (a lower bid, a higher
        ask), or in front of it only where none lies behind. The model does not see where a
        book's levels lie, so its cancel prices often fall between them; taking the nearest
        order either way pulled those cancels toward the touch (docs/lmm.md, Generation)."""
        levels = self.by_price[side]
        if not levels:
            return None
        if side > 0:
            i = levels.bisect_right(price) - 1
            chosen = levels.keys()[max(i, 0)]
        else:
            i = levels.bisect_left(price)
            chosen = levels.keys()[min(i, len(levels) - 1)]
        return next(iter(levels[chosen]))


class ShadowBook:
    """Top-of-book levels (price -> shares) that the agent updates with its own orders."""

    def __init__(self, depth: np.ndarray) -> None:
        self.asks = {int(p): int(s) for p, s in depth[:, :2] if p > 0 and s > 0}
        self.bids = {int(p): int(s) for p, s in depth[:, 2:] if p > 0 and s > 0}

    @property
    def best_bid(self) -> int:
        return max(self.bids) if self.bids else 0

    @property
    def best_ask(self) -> int:
        return min(self.asks) if self.asks else 0

    def add(self, side: int, price: int, size: int) -> None:
        levels = self.bids if side > 0 else self.asks
        levels[price] = levels.get(price, 0) + size

    def remove(self, side: int, price: int, size: int) -> None:
        levels = self.bids if side > 0 else self.asks
        left = levels.get(price, 0) - size
        if left > 0:
            levels[price] = left
        else:
            levels.pop(price, None)

    def empties(self, side: int, price: int, size: int) -> bool:
        """Whether removing ``size`` shares at ``price`` leaves ``side`` with nothing in view
        (a side of fewer than ``LEVELS`` levels is the whole side)."""
        levels = self.bids if side > 0 else self.asks
        return len(levels) == 1 and levels.get(price, 0) <= size

    def sweep_cap(self, side: int, size: int) -> int:
        """What an aggressor of ``side`` may take without emptying the opposite side: all of
        ``size`` unless it would take every share the shadow holds there; then all but that
        side's deepest level (0: there is only one). A side that filled the snapshot's
        ``LEVELS`` may hold more beyond them, but the agent's own cancels can have emptied
        those in view since, so the shadow's levels are taken as the whole side."""
        levels = self.asks if side > 0 else self.bids
        if not levels:
            return size
        total = sum(levels.values())
        if size < total:
            return size
        deepest = max(levels) if side > 0 else min(levels)
        return total - levels[deepest]

    def take(
        self, side: int, size: int, limit: int | None = None, slot: BookSlot | None = None
    ) -> int:
        """An aggressor of ``side`` takes up to ``size`` from the opposite side (best first,
        not past ``limit``); returns what is left of it. ``slot``: the aggressor's own
        orders there lose what it takes (``BookSlot.take_own``)."""
        levels = self.asks if side > 0 else self.bids
        while size > 0 and levels:
            best = min(levels) if side > 0 else max(levels)
            if limit is not None and (best > limit if side > 0 else best < limit):
                break
            got = min(size, levels[best])
            size -= got
            self.remove(-side, best, got)
            if slot is not None:
                slot.take_own(-side, best, got)
        return size

    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The top ``LEVELS`` (price, size) of each side, best first."""
        asks, bids = self.asks, self.bids
        return (
            [(p, asks[p]) for p in sorted(asks)[:LEVELS]],
            [(p, bids[p]) for p in sorted(bids, reverse=True)[:LEVELS]],
        )

    def rows(self) -> np.ndarray:
        """(LEVELS, 4) in OrderBook.snapshot's layout."""
        out = np.zeros((LEVELS, 4), dtype=np.int64)
        asks, bids = self.levels()
        if asks:
            out[: len(asks), :2] = asks
        if bids:
            out[: len(bids), 2:] = bids
        return out

    def features(self, time_ns: int) -> tuple[list[float], tuple[int, int, int, int]]:
        """The model's book features at ``time_ns`` and the top of book (ask px, ask size,
        bid px, bid size; 0 for an empty side) for a controller."""
        asks, bids = self.levels()
        a = asks[0] if asks else (0, 0)
        b = bids[0] if bids else (0, 0)
        return book_features_one(asks, bids, time_ns), (a[0], a[1], b[0], b[1])


class LMMBackground:
    """Background flow for all books of one shard from one model (see the module doc)."""

    kind = "lmm"
    params_model = LMMParams
    spans_books = True
    max_count = 1  # one background flow per book

    def __init__(
        self,
        params: LMMParams,
        slots: list[BookSlot],
        backends: Mapping[str, GeneratorBackend] | None = None,
        controller: FlowController | None = None,
    ) -> None:
        self.params = params
        self.slots = slots
        available = {"local": local_backend, **(backends or {})}
        backend = available.get(params.backend)
        if backend is None:
            raise ValueError(
                f"params.backend: no generator for {params.backend!r} in this process "
                f"(available: {sorted(available)}); `mars-ray simulate` and the Serve app "
                "hand the served model's generator to the simulation"
            )
        self.generator, self.tokenizer = backend(params, len(slots))
        self.n_book = N_BOOK
        self.gap_values = [int(g) for g in self.tokenizer.gap_values]  # ns per gap bin
        self.size_values = [int(v) for v in self.tokenizer.size_values]  # shares per size bin
        self.draw_inside = params.draw_in_bins and self.tokenizer.inside is not None
        if controller is None and params.control is not None:
            controller = params.control.controller(self.tokenizer, len(slots))
        self.controller = controller  # steers the kind mix toward a target (lmm/control.py)
        if not isinstance(params.regime, str):  # a spread given: every book from the start
            for slot in slots:
                slot.scale = self._regime_scale(None)
        if params.touch_rate is not None:  # a pace given: likewise
            for slot in slots:
                slot.pace = self._regime_pace(None)
        self.orders_generated = 0
        # orders the keep_both_sides rule changed: cancels skipped, market orders cut, dropped
        self.guarded = {"cancels_skipped": 0, "markets_cut": 0, "markets_dropped": 0}
        self.acted_until = -1  # end of the last step it acted in
        # per slot, real orders to run through the model before its first order (set_context)
        self.context: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(slots)

    # ------------------------------------------------------------------ the step
    def act(self, t0: int, until: int, depths: list[np.ndarray], phase: Phase) -> OrderBatch:
        """All books' orders for [t0, until); ``depths`` are the books' t0 snapshots."""
        p = self.params
        if phase != Phase.CONTINUOUS or until <= p.start or t0 >= p.end:
            return NO_ORDERS
        start = max(t0, p.start)
        until = min(until, p.end)
        resumed = start > self.acted_until  # a pause (auction, halt): time restarts here
        self.acted_until = until
        n = len(self.slots)
        shadows = [ShadowBook(d) for d in depths]
        out: list[list[tuple]] = [[] for _ in range(n)]
        active = np.ones(n, dtype=bool)
        self._prime(start)
        for b, slot in enumerate(self.slots):
            slot.settle_taken()
            if not slot.started:
                slot.started, slot.last_time = True, start
                slot.last_token = self._opening_token()
            if resumed:
                slot.last_time = max(slot.last_time, start)
                slot.held_time = max(slot.held_time, start)
            if slot.held is not None:  # an order generated last step, due now or later
                if slot.held_time < until:
                    self._emit(slot, slot.held, slot.held_time, shadows[b], out[b])
                    slot.held = None
                else:
                    active[b] = False
        limit = p.max_orders
        if limit is not None:
            active &= np.array([s.generated < limit for s in self.slots], dtype=bool)
        count = [0] * n
        book = np.zeros((n, self.n_book), dtype=np.float32)
        top = np.zeros((n, 1, 4), dtype=np.int64)  # what a controller reads of the books
        times = np.zeros(n, dtype=np.int64)
        uniforms = np.zeros((n, 4))  # reused: a finished row's stale uniforms go unread
        last = np.stack([s.last_token for s in self.slots])
        gaps = self.gap_values
        draw, draw_gap = p.draw_in_bins, self.tokenizer.gap_draw
        live = np.flatnonzero(active).tolist()  # the rows of ``active``, kept in step
        while live:
            for b in live:
                slot = self.slots[b]
                times[b] = slot.last_time
                book[b], top[b, 0] = shadows[b].features(slot.last_time)
                if slot.scale != 1.0:
                    book[b] = scale_spread_features(book[b], 1.0 / slot.scale)
                uniforms[b] = slot.rng.random(4)
            bias = gap = None
            if self.controller is not None:
                bias, gap = self.controller.biases(times, top, last, active)
            tokens = self.generator.next(last, book, uniforms, active, bias, gap)
            going = []
            for b in live:
                slot = self.slots[b]
                token = tokens[b]
                g = int(token[3])
                gap_ns = draw_gap(g, slot.rng.random()) if draw else gaps[g]
                t = slot.last_time + (gap_ns if slot.pace == 1.0 else round(gap_ns / slot.pace))
                slot.last_token = last[b] = token
                count[b] += 1
                slot.generated += 1
                if limit is not None and slot.generated >= limit:
                    active[b] = False
                if t >= until:
                    slot.held, slot.held_time = token, t
                    active[b] = False
                    continue
                self._emit(slot, token, t, shadows[b], out[b])
                if count[b] >= p.max_orders_per_step:
                    active[b] = False
                if active[b]:
                    going.append(b)
            live = going
        self.orders_generated += sum(count)
        return OrderBatch.from_rows([r for per_book in out for r in per_book])

    def close(self) -> None:
        """Release what the generator holds elsewhere (a served session's cache rows)."""
        close = getattr(self.generator, "close", None)
        if close is not None:
            close()

    @property
    def finished(self) -> bool:
        """Every book has sent its ``max_orders`` (never, without that horizon)."""
        limit = self.params.max_orders
        return limit is not None and all(
            s.generated >= limit and s.held is None for s in self.slots
        )

    def set_context(self, slot_index: int, orders: UnitOrders) -> None:
        """Real orders that came before this book's start (a real start:
        ``mars_ray/sim/real_start.py``): the model reads the last ``block_size`` of them
        before it generates, and continues from the last one instead of a made-up opening
        order."""
        pace = self._regime_pace(orders)  # read from every order given, not only the window
        sizes = None
        if self.params.regime != "off":
            sizes = SizeRegime.from_context(self.tokenizer.size_mix, orders.size)
        orders = orders.last(int(getattr(self.generator, "block_size", CONTEXT_DEFAULT)))
        level, book = orders.price_level, np.asarray(orders.book, np.float32)
        scale = self._regime_scale(book)
        if scale != 1.0:
            level = scale_levels(level, 1.0 / scale)
            book = scale_spread_features(book, 1.0 / scale)
        self.slots[slot_index].scale = scale
        self.slots[slot_index].pace = pace
        self.slots[slot_index].sizes = sizes
        gaps = orders.gap_ns if pace == 1.0 else np.rint(orders.gap_ns * pace).astype(np.int64)
        components = self.tokenizer.encode(orders.kind, level, orders.size, gaps)
        if sizes is not None:
            components[:, 2] = sizes.bins(orders.size)
        self.context[slot_index] = (components, book)

    def _regime_scale(self, book: np.ndarray | None) -> float:
        """The instrument's spread (the context's median, else ``regime`` as a number) over
        the model's training median (1 with ``regime: off``, a model without that median,
        or a context never two-sided), within ``REGIME_RANGE``."""
        trained = self.tokenizer.spread_ticks
        regime = self.params.regime
        here = None if regime == "off" or book is None else median_spread(book[:, 20])
        if here is None and not isinstance(regime, str):
            here = float(regime)
        if trained is None or here is None:
            return 1.0
        return _regime_factor(here / trained)

    def _regime_pace(self, orders: UnitOrders | None) -> float:
        """The instrument's orders a second at the touch (the context's, ``touch_order_rate``:
        alike for a level-1 file and a full-depth one; else the ``touch_rate`` param) over
        the model's training days', within ``REGIME_RANGE``; 1 with ``regime: off``, a model
        without that rate, or neither a context long enough to time nor the param. The
        model reads the context's gaps multiplied by it and its generated gaps are divided
        by it: it generates at the pace it learned, the book moves at the instrument's."""
        trained = self.tokenizer.touch_rate
        if self.params.regime == "off" or trained is None:
            return 1.0
        here = None if orders is None else touch_order_rate(orders.price_level, orders.time_ns)
        if here is None:
            here = self.params.touch_rate
        if here is None:
            return 1.0
        return _regime_factor(here / trained)

    def _prime(self, start: int) -> None:
        """Feed each not yet started slot's context through the generator: order j with the
        book before order j + 1 (the training pairing), all slots in one forward pass per
        position; the last order becomes the slot's latest token, so its first generated
        order continues the real flow. Sampled outputs are dropped."""
        todo = [
            (b, c)
            for b, c in enumerate(self.context)
            if c is not None and not self.slots[b].started
        ]
        if not todo:
            return
        n = len(self.slots)
        longest = max(len(c[0]) for _, c in todo)
        n_book = todo[0][1][1].shape[1]
        for j in range(longest - 1):
            components = np.zeros((n, 4), dtype=np.int64)
            book = np.zeros((n, n_book), dtype=np.float32)
            active = np.zeros(n, dtype=bool)
            for b, (comp, feats) in todo:
                k = j - (longest - len(comp))  # contexts end together: shorter ones start later
                if 0 <= k < len(comp) - 1:
                    components[b], book[b], active[b] = comp[k], feats[k + 1], True
            if active.any():
                self.generator.next(components, book, np.zeros((n, 4)), active)
        for b, (comp, _) in todo:
            slot = self.slots[b]
            slot.started, slot.last_time, slot.last_token = True, start, comp[-1].copy()
            self.context[b] = None

    def _opening_token(self) -> np.ndarray:
        """The context's first order: a median-sized buy at the best bid."""
        size_bin = len(self.tokenizer.size_values) // 2
        return np.array([int(Kind.BUY), encode_price_level(0), size_bin, 0], dtype=np.int64)

    def _emit(
        self, slot: BookSlot, token: np.ndarray, t: int, shadow: ShadowBook, out: list
    ) -> None:
        """Turn one token into an order (or a cancel of our own order) on this book at ``t``."""
        slot.last_time = t
        kind, level, size_bin, _ = token.tolist()
        side = 1 if kind == _BUY or kind == _CANCEL_BUY else -1
        bid, ask = shadow.best_bid, shadow.best_ask
        cancel = kind in CANCEL_KINDS
        price, marketable = decode_price_one(
            level, side, bid, ask, slot.reference_ticks, cancel, slot.scale
        )
        if level == INSIDE and not cancel and bid > 0 and ask > bid + 2 and self.draw_inside:
            price = (bid if side > 0 else ask) + side * self.tokenizer.inside_ticks(
                ask - bid - 1, slot.rng.random()
            )
        tick = slot.tick_size
        if cancel:
            oid = slot.cancel_target(side, price)
            if oid is None:
                return
            _, px, left = slot.live[oid]
            if self.params.keep_both_sides and shadow.empties(side, px, left):
                self.guarded["cancels_skipped"] += 1
                return
            slot.drop_live(oid)
            slot.taken.pop(oid, None)  # cancelled: whatever was not filled is gone
            shadow.remove(side, px, left)
            out.append(
                (t, slot.trajectory, slot.instrument, _CANCEL, oid, 0, np.nan, 0.0, slot.agent_id)
            )
            return
        if slot.sizes is None:
            size = self.size_values[size_bin]
        else:
            size = slot.sizes.shares(size_bin, slot.rng.random())
        if marketable and self.params.keep_both_sides:
            allowed = shadow.sweep_cap(side, size)
            if allowed < size:
                self.guarded["markets_cut" if allowed else "markets_dropped"] += 1
                if not allowed:
                    return
                size = allowed
        oid = slot.new_order_id()
        if marketable:
            shadow.take(side, size, slot=slot)
            out.append(
                (
                    t,
                    slot.trajectory,
                    slot.instrument,
                    _MARKET,
                    oid,
                    side,
                    np.nan,
                    float(size),
                    slot.agent_id,
                )
            )
            return
        left = shadow.take(side, size, limit=price, slot=slot)  # a stale shadow can cross
        if left > 0:
            shadow.add(side, price, left)
        slot.add_live(oid, side, price, size)
        out.append(
            (
                t,
                slot.trajectory,
                slot.instrument,
                _LIMIT,
                oid,
                side,
                price * tick,
                float(size),
                slot.agent_id,
            )
        )

    def own_orders(self, t: int, orders: Sequence[Sequence[tuple[int, int, int]]]) -> OrderBatch:
        """Limit orders at ``t`` on every book, ``orders[b]``: (side, price ticks, shares), made
        this agent's own live orders. Injected before the open, they are a start book that its
        cancel tokens reach like the orders it generated (it cancels only its own: another
        agent's start book is a wall that only trades wear down)."""
        rows = []
        for slot, book_orders in zip(self.slots, orders, strict=True):
            for side, price, size in book_orders:
                oid = slot.new_order_id()
                slot.add_live(oid, side, price, size)
                px, book = price * slot.tick_size, (slot.trajectory, slot.instrument)
                rows.append((t, *book, _LIMIT, oid, side, px, float(size), slot.agent_id))
        return OrderBatch.from_rows(rows)

    def on_fills(self, slot_index: int, fills: Fills) -> None:
        """Keep each book's live-order list exact: filled shares leave it."""
        slot = self.slots[slot_index]
        for oid, size in zip(fills.order_id.tolist(), fills.size.tolist(), strict=True):
            slot.filled(oid, size)
