"""Agent populations without Ray: order validity, determinism, behaviour, runs on a real book."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields

import numpy as np
import pytest
from pydantic import ValidationError

from agents.base import AgentPopulation, LatencyConfig
from agents.kernels import integers
from agents.market_maker import MarketMakerParams, MarketMakers
from agents.meta_order import MetaOrderParams, MetaOrderTraders
from agents.momentum import MomentumParams, MomentumTraders
from agents.noise import NoiseTraderParams, NoiseTraders
from agents.registry import AGENT_KINDS
from agents.twap import TwapExecutors, TwapParams
from agents.value import ValueTraderParams, ValueTraders
from agents.view import (
    ASK_SIZE,
    BEST_ASK,
    BEST_BID,
    BID_SIZE,
    LAST,
    MID,
    N_FEATURES,
    VOLUME,
    Fills,
    MarketView,
)
from mars_ray.exchange.book import OrderBook
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import EventType, OrderType
from mars_ray.schema.phases import Phase
from mars_ray.sim.config import AgentGroupConfig

TICK = 0.01
REF = 10_000  # ticks: 100.00
S = 1_000_000_000
T_OPEN = 36_000 * S  # 10:00
LATENCY = LatencyConfig(order_us=(50.0, 500.0), data_us=(50.0, 500.0))
_TRADE = int(EventType.TRADE)
_REJECT = int(EventType.REJECT)


def make(cls: type[AgentPopulation], n: int, seed: int = 1, first_id: int = 1, **params):
    return cls(
        params=cls.params_model(**params),
        agent_ids=np.arange(first_id, first_id + n),
        instrument=0,
        trajectory=0,
        tick_size=TICK,
        reference_ticks=REF,
        latency=LATENCY,
        rng=np.random.default_rng(seed),
    )


def view(
    bid: float = REF - 1,
    ask: float = REF + 1,
    t: int = T_OPEN,
    phase: Phase = Phase.CONTINUOUS,
    mids: list[float] | None = None,
    step: int = S,
) -> MarketView:
    """A synthetic view; ``mids`` (oldest first) gives a price path with a one-tick spread."""
    path = [(bid + ask) / 2] if mids is None else mids
    h = len(path)
    hist = np.zeros((h, N_FEATURES))
    for k, m in enumerate(reversed(path)):  # newest first
        b, a = (bid, ask) if mids is None else (np.ceil(m) - 1, np.floor(m) + 1)
        hist[k] = [b, a, 500, 500, m, 0, m]
    times = t - step * np.arange(h, dtype=np.int64)
    depth = np.zeros((5, 4), dtype=np.int64)
    return MarketView(history=hist, times=times, depth=depth, phase=phase)


def check_batch(pop: AgentPopulation, batch: OrderBatch, t0: int, t1: int) -> None:
    """Every row is something the exchange would accept as well-formed."""
    if len(batch) == 0:
        return
    agent_index = np.searchsorted(pop.agent_ids, batch.agent_id)
    assert np.array_equal(pop.agent_ids[agent_index], batch.agent_id)
    ot = batch.order_type
    new = ot != int(OrderType.CANCEL)
    assert np.isin(
        ot, [int(OrderType.LIMIT), int(OrderType.MARKET), int(OrderType.IOC), int(OrderType.CANCEL)]
    ).all()
    assert np.isin(batch.side[new], [1, -1]).all()
    size = batch.size[new]
    assert (size > 0).all() and np.array_equal(size, np.round(size))
    priced = new & (ot != int(OrderType.MARKET))
    ticks = batch.price[priced] / TICK
    assert np.isfinite(ticks).all()
    assert np.allclose(ticks, np.round(ticks), atol=1e-6)
    assert (np.round(ticks) >= 1).all()
    assert np.isnan(batch.price[~priced]).all()
    lat = pop.order_latency_ns[agent_index]
    assert (batch.time_ns >= t0 + lat).all()  # arrival >= decision (>= t0) + own latency
    assert (batch.time_ns < t1 + lat).all()  # decided inside the step
    lo, hi = (round(x * 1000) for x in LATENCY.order_us)
    assert (batch.time_ns >= t0 + lo).all() and (batch.time_ns <= t1 + hi).all()
    assert (batch.instrument == 0).all() and (batch.trajectory_id == 0).all()
    # a new order's id carries its agent's id in the high bits
    assert np.array_equal(batch.order_id[new] >> 32, batch.agent_id[new])


def same(a: OrderBatch, b: OrderBatch) -> bool:
    return all(
        np.array_equal(getattr(a, f.name), getattr(b, f.name), equal_nan=f.name == "price")
        for f in fields(OrderBatch)
    )


# ----------------------------------------------------------------- a real book


@dataclass
class RunStats:
    orders: int = 0
    rejects: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    trades: int = 0
    volume: int = 0
    per_step_orders: list[int] = field(default_factory=list)
    batches: list[OrderBatch] = field(default_factory=list)


def run_on_book(
    pops: list[AgentPopulation], steps: int, start: int = T_OPEN, step: int = S, history: int = 8
) -> tuple[OrderBook, RunStats]:
    """A small single-book kernel: act, route to the book in time order, report fills, snapshot."""
    book = OrderBook(Phase.CONTINUOUS, reference_price=REF)
    owner: dict[int, tuple[int, int]] = {}
    for k, pop in enumerate(pops):
        for i, aid in enumerate(pop.agent_ids):
            owner[int(aid)] = (k, i)
    stats = RunStats()
    hist: deque[np.ndarray] = deque(maxlen=history)
    times: deque[int] = deque(maxlen=history)

    def snapshot(t: int, volume: int) -> None:
        bid, ask = book.best_bid() or 0, book.best_ask() or 0
        last = book.last_trade_price or 0
        if bid and ask:
            mid = (bid + ask) / 2
        else:
            mid = last or REF
        row = np.zeros(N_FEATURES)
        row[[BEST_BID, BEST_ASK, LAST, VOLUME, MID]] = bid, ask, last, volume, mid
        row[BID_SIZE] = book.depth_at(1, bid) if bid else 0
        row[ASK_SIZE] = book.depth_at(-1, ask) if ask else 0
        hist.appendleft(row)
        times.appendleft(t)

    snapshot(start, 0)
    pending = OrderBatch.empty()
    for s in range(steps):
        t0, t1 = start + s * step, start + (s + 1) * step
        v = MarketView(np.array(hist), np.array(times, np.int64), book.snapshot(5), book.phase)
        batches = []
        for pop in pops:
            b = pop.act(t0, t1, v)
            check_batch(pop, b, t0, t1)
            batches.append(b)
        stats.batches.extend(batches)
        stats.per_step_orders.append(sum(len(b) for b in batches))
        stats.orders += stats.per_step_orders[-1]
        now, pending = OrderBatch.concat([pending, *batches]).sorted().split_before(t1)
        for t, ot, oid, side, px, size, aid in zip(
            now.time_ns.tolist(),
            now.order_type.tolist(),
            now.order_id.tolist(),
            now.side.tolist(),
            now.price.tolist(),
            now.size.tolist(),
            now.agent_id.tolist(),
            strict=True,
        ):
            if ot == OrderType.CANCEL:
                book.cancel(t, oid, int(size) if size == size else 0, aid)
            elif ot == OrderType.MODIFY:
                book.modify(t, oid, round(px / TICK), int(size), aid)
            else:
                ticks = 0 if px != px else round(px / TICK)
                book.submit(t, oid, side, ticks, int(size), aid, ot)
        _, events = book.drain_events()
        book.check_invariants()
        per_pop: list[list[tuple[int, int, int, int, int]]] = [[] for _ in pops]
        volume = 0
        for ev in events:
            if ev[1] == _REJECT:
                stats.rejects += 1
                stats.reject_reasons[ev[9]] = stats.reject_reasons.get(ev[9], 0) + 1
            elif ev[1] == _TRADE:
                _, _, oid, side, px, size, agent, c_oid, c_agent, _ = ev
                volume += size
                stats.trades += 1
                for o, a, sd in ((oid, agent, side), (c_oid, c_agent, -side)):
                    if a in owner:
                        k, i = owner[a]
                        per_pop[k].append((i, o, sd, px, size))
        stats.volume += volume
        for pop, rows in zip(pops, per_pop, strict=True):
            if rows:
                cols = np.array(rows, dtype=np.int64).T
                pop.on_fills(Fills(cols[0], cols[1], cols[2], cols[3], cols[4]))
        snapshot(t1, volume)
    return book, stats


# ----------------------------------------------------------------- registry and params


@pytest.mark.parametrize(
    "low, high",
    [
        (0, 1),  # one value: no draw
        (0, 40),  # agents: 32-bit draws
        (0, 2**31 + 1),  # 32-bit, rejections common
        (0, 2**32 + 1),  # exactly 32 bits
        (T_OPEN, T_OPEN + 5 * S),  # a step's times: 64-bit draws
        (-(2**62), 2**62 + 3),  # 64-bit, rejections common
        (-(2**63), 2**63 - 1),  # the whole int64 range but one
    ],
)
def test_integers_draws_what_the_generator_draws(low: int, high: int) -> None:
    """The compiled ``integers`` gives ``rng.integers``'s numbers and leaves the generator in
    its state, also after a draw that left half a 64-bit word buffered; a wrong width of
    draw, or a wrong rejection, shows in the numbers or the state."""
    for seed in range(20):
        mine, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
        for size in (0, 1, 7, 60):
            mine.integers(0, 3), theirs.integers(0, 3)  # a 32-bit draw: half a word left
            expected = theirs.integers(low, high, size=size)
            got = integers(mine, low, high, size)
            assert got.dtype == expected.dtype and got.tolist() == expected.tolist()
        assert mine.bit_generator.state == theirs.bit_generator.state


def test_registry_has_all_kinds() -> None:
    assert {"noise", "market_maker", "momentum", "value", "twap", "meta_order"} <= set(AGENT_KINDS)
    assert AGENT_KINDS["noise"] is NoiseTraders
    for kind, cls in AGENT_KINDS.items():
        if kind == "rl_policy":  # the shipped weights are the default; the role is not
            with pytest.raises(ValueError, match="role"):
                cls.params_model()
            assert cls.params_model(role="execution").weights_path().is_file()
            continue
        cls.params_model()  # defaults are valid


@pytest.mark.parametrize(
    ("model", "field_name", "value"),
    [
        (NoiseTraderParams, "rate", -1.0),
        (NoiseTraderParams, "p_market", 1.5),
        (NoiseTraderParams, "mean_lifetime_s", 0),
        (MarketMakerParams, "half_spread", 0),
        (MarketMakerParams, "max_inventory", -5),
        (MomentumParams, "threshold", -2),
        (MomentumParams, "order_type", "limit"),
        (ValueTraderParams, "volatility", -0.1),
        (TwapParams, "quantity", 0),
        (TwapParams, "start", "25:00"),
        (TwapParams, "slices", 0),
        (MetaOrderParams, "mean_children", 0.5),
        (MetaOrderParams, "mean_gap_s", 0),
    ],
)
def test_params_errors_name_the_field(model, field_name: str, value) -> None:
    with pytest.raises(ValidationError) as info:
        model(**{field_name: value})
    errors = info.value.errors()
    assert any(field_name in err["loc"] for err in errors)
    assert any(err["input"] == value for err in errors)


def test_params_cross_checks_and_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="p_market"):
        NoiseTraderParams(p_market=0.6, p_cross=0.6)
    with pytest.raises(ValidationError, match="fast_s"):
        MomentumParams(fast_s=100, slow_s=50)
    with pytest.raises(ValidationError, match="start"):
        TwapParams(start="15:00", end="11:00")
    with pytest.raises(ValidationError, match="quote_size"):
        MarketMakerParams(quote_size=500, max_inventory=100)
    with pytest.raises(ValidationError) as info:
        NoiseTraderParams(rte=1.0)
    assert info.value.errors()[0]["loc"] == ("rte",)
    # through the config model too
    with pytest.raises(ValidationError, match="rate"):
        AgentGroupConfig(kind="noise", count=10, params={"rate": -1})


def test_twap_clock_parsing() -> None:
    p = TwapParams(start="10:00", end="10:30:30")
    assert p.start == 36_000 * S and p.end == (36_000 + 1830) * S
    assert TwapParams(start=36_000, end=37_000).start == 36_000 * S  # seconds after midnight


# ----------------------------------------------------------------- validity and determinism

ALL = [
    (NoiseTraders, {}),
    (MarketMakers, {}),
    (MomentumTraders, {"threshold": 0.5}),
    (ValueTraders, {"volatility": 2.0}),
    (TwapExecutors, {"start": "10:00", "end": "10:05", "slices": 10, "quantity": 5000}),
    (MetaOrderTraders, {"rate": 0.05}),
]


@pytest.mark.parametrize(("cls", "params"), ALL, ids=[c.kind for c, _ in ALL])
def test_orders_valid_and_deterministic(cls, params) -> None:
    n = 1 if cls is TwapExecutors else 300
    runs = []
    for _ in range(2):
        pops = [make(NoiseTraders, 500, seed=7, first_id=10_000), make(cls, n, seed=3, **params)]
        _, stats = run_on_book(pops, steps=120)
        runs.append(stats.batches)
    a, b = runs
    assert len(a) == len(b)
    assert all(same(x, y) for x, y in zip(a, b, strict=True))
    assert sum(len(x) for x in a[1::2]) > 0  # the population under test did send something
    # a different seed gives a different flow
    pops = [make(NoiseTraders, 500, seed=8, first_id=10_000), make(cls, n, seed=4, **params)]
    _, other = run_on_book(pops, steps=20)
    assert not all(same(x, y) for x, y in zip(a[:40], other.batches, strict=True))


@pytest.mark.parametrize("phase", [Phase.CLOSED, Phase.HALTED])
@pytest.mark.parametrize(("cls", "params"), ALL, ids=[c.kind for c, _ in ALL])
def test_no_orders_when_closed_or_halted(cls, params, phase) -> None:
    pop = make(cls, 200, **params)
    for s in range(5):
        t0 = T_OPEN + s * S
        assert len(pop.act(t0, t0 + S, view(t=t0, phase=phase))) == 0


# ----------------------------------------------------------------- behaviour


def test_noise_mixes_order_types_and_stays_near_the_mid() -> None:
    pop = make(NoiseTraders, 1000, rate=1.0)
    b = pop.act(T_OPEN, T_OPEN + S, view(REF - 1, REF + 1))
    check_batch(pop, b, T_OPEN, T_OPEN + S)
    ot = b.order_type
    assert (ot == OrderType.MARKET).mean() == pytest.approx(0.1, abs=0.03)
    assert 0.4 < (b.side == 1).mean() < 0.6
    lim = ot == OrderType.LIMIT
    ticks = np.round(b.price[lim] / TICK)
    buys, sells = ticks[b.side[lim] == 1], ticks[b.side[lim] == -1]
    assert (buys <= REF + 1).all() and (sells >= REF - 1).all()  # crossing: at most the touch
    assert np.median(np.abs(ticks - REF)) <= 6
    assert (b.size % 100 == 0).all()
    # in the call phase: only limit orders, some of them at the opposite touch
    pop = make(NoiseTraders, 1000, rate=1.0)
    b = pop.act(T_OPEN, T_OPEN + S, view(REF - 1, REF + 1, phase=Phase.CALL))
    assert (b.order_type == OrderType.LIMIT).all() and len(b) > 500
    ticks = np.round(b.price / TICK)
    crossing = np.where(b.side == 1, ticks == REF + 1, ticks == REF - 1)
    assert crossing.mean() == pytest.approx(0.2, abs=0.05)


def test_noise_cancels_old_orders_but_not_filled_ones() -> None:
    pop = make(NoiseTraders, 200, rate=1.0, mean_lifetime_s=5.0, p_market=0.0, p_cross=0.0)
    t, v = T_OPEN, view()
    first = pop.act(t, t + S, v)
    assert (first.order_type == OrderType.LIMIT).all()
    # fill some of them completely and one partially
    filled_ids = first.order_id[:20]
    idx = np.searchsorted(pop.agent_ids, first.agent_id[:21])
    sizes = first.size[:21].astype(np.int64).copy()
    sizes[20] -= 50  # sizes are whole lots of 100: this one stays partly open
    partial_id = first.order_id[20]
    pop.on_fills(
        Fills(idx, first.order_id[:21], first.side[:21].astype(np.int64), np.full(21, REF), sizes)
    )
    sent = set(first.order_id.tolist())
    cancelled: list[int] = []
    for s in range(1, 60):
        t0 = t + s * S
        b = pop.act(t0, t0 + S, view(t=t0))
        check_batch(pop, b, t0, t0 + S)
        c = b.order_type == OrderType.CANCEL
        cancelled.extend(b.order_id[c].tolist())
        sent.update(b.order_id[~c].tolist())
    cancelled_set = set(cancelled)
    assert len(cancelled) == len(cancelled_set)  # each order cancelled at most once
    assert cancelled_set <= sent  # only its own orders
    assert not cancelled_set & set(filled_ids.tolist())  # never a filled one
    assert partial_id in cancelled_set  # a partly filled order is still cancelled
    # with a 5 s mean lifetime, nearly all of the first step's unfilled orders are gone after 59 s
    first_unfilled = set(first.order_id[21:].tolist())
    assert len(first_unfilled & cancelled_set) >= 0.99 * len(first_unfilled)
    # and the tracked book stays bounded: about rate * n * lifetime
    assert len(pop.live_order_ids) < 3 * 200 * 5


def test_market_maker_skews_quotes_against_inventory() -> None:
    quotes = {}
    for inv in (-800, 0, 800):
        pop = make(MarketMakers, 500, rate=5.0, half_spread=2.0, skew=4.0, max_inventory=1000)
        pop.inventory[:] = inv
        b = pop.act(T_OPEN, T_OPEN + S, view(REF - 1, REF + 1))
        check_batch(pop, b, T_OPEN, T_OPEN + S)
        lim = b.order_type == OrderType.LIMIT
        ticks = np.round(b.price[lim] / TICK)
        bids, asks = ticks[b.side[lim] == 1], ticks[b.side[lim] == -1]
        assert len(bids) == len(asks) > 0
        assert (bids < asks.min() + 100).all()
        quotes[inv] = (np.median(bids), np.median(asks))
    # long inventory lowers both quotes, short raises them
    assert quotes[800][0] < quotes[0][0] < quotes[-800][0]
    assert quotes[800][1] < quotes[0][1] < quotes[-800][1]
    assert quotes[0] == (REF - 2, REF + 2)


def test_market_maker_requotes_and_respects_inventory_cap() -> None:
    pop = make(MarketMakers, 100, rate=5.0, quote_size=100, max_inventory=300)
    pop.inventory[:50] = 300  # at the cap: must not bid
    b1 = pop.act(T_OPEN, T_OPEN + S, view())
    lim = b1.order_type == OrderType.LIMIT
    capped = np.isin(b1.agent_id, pop.agent_ids[:50])
    assert not (lim & capped & (b1.side == 1)).any()
    assert (lim & capped & (b1.side == -1)).any()
    # fill every ask completely: the next requote cancels only the bids
    asks = lim & (b1.side == -1)
    idx = np.searchsorted(pop.agent_ids, b1.agent_id[asks])
    pop.on_fills(
        Fills(
            idx,
            b1.order_id[asks],
            b1.side[asks].astype(np.int64),
            np.full(asks.sum(), REF),
            b1.size[asks].astype(np.int64),
        )
    )
    b2 = pop.act(T_OPEN + S, T_OPEN + 2 * S, view(t=T_OPEN + S))
    cancelled = set(b2.order_id[b2.order_type == OrderType.CANCEL].tolist())
    assert cancelled, "requotes cancel the old quotes"
    assert not cancelled & set(b1.order_id[asks].tolist())
    assert cancelled <= set(b1.order_id[lim & (b1.side == 1)].tolist())


def test_market_maker_phase_choice() -> None:
    assert len(make(MarketMakers, 100).act(T_OPEN, T_OPEN + S, view(phase=Phase.CALL))) == 0
    pop = make(MarketMakers, 100, quote_in_call=True)
    assert len(pop.act(T_OPEN, T_OPEN + S, view(phase=Phase.CALL))) > 0


@pytest.mark.parametrize("direction", [1, -1])
def test_momentum_follows_the_trend(direction: int) -> None:
    pop = make(MomentumTraders, 500, rate=2.0, fast_s=5.0, slow_s=30.0, threshold=1.0)
    sides = []
    for s in range(40):
        t0 = T_OPEN + s * S
        mids = [REF + direction * 0.5 * k for k in range(s + 1)][-8:]
        b = pop.act(t0, t0 + S, view(t=t0, mids=mids))
        check_batch(pop, b, t0, t0 + S)
        assert (b.order_type == OrderType.MARKET).all()
        sides.extend(b.side.tolist())
    assert len(sides) > 100
    assert set(sides) == {direction}
    assert (pop.signal * direction > 0).all()
    # a flat market gives no signal and no orders
    flat = make(MomentumTraders, 500, rate=2.0)
    total = 0
    for s in range(20):
        t0 = T_OPEN + s * S
        total += len(flat.act(t0, t0 + S, view(t=t0)))
    assert total == 0


def test_momentum_inventory_cap_counts_orders_in_flight() -> None:
    pop = make(
        MomentumTraders,
        50,
        rate=20.0,
        fast_s=2.0,
        slow_s=10.0,
        threshold=0.1,
        order_size=100,
        max_inventory=300,
        order_type="ioc",
    )
    sent = np.zeros(50, dtype=np.int64)
    for s in range(30):
        t0 = T_OPEN + s * S
        mids = [REF + k for k in range(s + 1)][-8:]
        b = pop.act(t0, t0 + S, view(t=t0, mids=mids))
        check_batch(pop, b, t0, t0 + S)
        assert (b.order_type == OrderType.IOC).all()
        np.add.at(sent, np.searchsorted(pop.agent_ids, b.agent_id), b.size.astype(np.int64))
        if len(b):  # every order fills: report them, as the kernel would
            idx = np.searchsorted(pop.agent_ids, b.agent_id)
            pop.on_fills(
                Fills(
                    idx,
                    b.order_id,
                    b.side.astype(np.int64),
                    np.round(b.price / TICK).astype(np.int64),
                    b.size.astype(np.int64),
                )
            )
    assert sent.max() <= 300 and (pop.inventory <= 300).all()
    assert (sent == 300).mean() > 0.9


def test_value_trader_buys_below_and_sells_above_value() -> None:
    pop = make(ValueTraders, 500, rate=2.0, volatility=0.0, private_sd=1.0, threshold=2.0)
    cheap = pop.act(T_OPEN, T_OPEN + S, view(REF - 21, REF - 20))
    check_batch(pop, cheap, T_OPEN, T_OPEN + S)
    assert len(cheap) > 100 and (cheap.side == 1).all()
    assert (cheap.order_type == OrderType.IOC).all()
    assert np.allclose(cheap.price / TICK, REF - 20)  # at the ask
    rich = pop.act(T_OPEN + S, T_OPEN + 2 * S, view(REF + 20, REF + 21, t=T_OPEN + S))
    assert len(rich) > 100 and (rich.side == -1).all()
    assert np.allclose(rich.price / TICK, REF + 20)  # at the bid
    fair = pop.act(T_OPEN + 2 * S, T_OPEN + 3 * S, view(REF - 1, REF + 1, t=T_OPEN + 2 * S))
    assert len(fair) < 5  # only agents whose private value is far out
    # and per agent: a trade happens only on the right side of its own value
    ask = REF - 3
    b = pop.act(T_OPEN + 3 * S, T_OPEN + 4 * S, view(ask - 1, ask, t=T_OPEN + 3 * S))
    idx = np.searchsorted(pop.agent_ids, b.agent_id)
    assert (pop.values[idx] - 2.0 > ask).all()


def test_value_fundamental_is_a_random_walk() -> None:
    pop = make(ValueTraders, 10, volatility=1.0)
    path = []
    for s in range(400):
        t0 = T_OPEN + s * S
        pop.act(t0, t0 + S, view(t=t0, phase=Phase.CLOSED))
        path.append(pop.fundamental)
    steps = np.diff(path)
    assert steps.std() == pytest.approx(1.0, rel=0.2)


def _twap_with_instant_fills(
    pop: TwapExecutors, start: int, steps: int, fill_passive: float, fill_aggressive: float = 1.0
):
    """Fill the given shares of each passive and aggressive order at once; record orders."""
    log = []
    for s in range(steps):
        t0 = start + s * S
        b = pop.act(t0, t0 + S, view(t=t0))
        check_batch(pop, b, t0, t0 + S)
        log.append((t0, b))
        new = b.order_type != OrderType.CANCEL
        if new.any():
            size = b.size[new].astype(np.int64)
            passive = b.order_type[new] == OrderType.LIMIT
            size[passive] = np.floor(size[passive] * fill_passive).astype(np.int64)
            size[~passive] = np.floor(size[~passive] * fill_aggressive).astype(np.int64)
            keep = size > 0
            idx = np.searchsorted(pop.agent_ids, b.agent_id[new][keep])
            pop.on_fills(
                Fills(
                    idx,
                    b.order_id[new][keep],
                    b.side[new][keep].astype(np.int64),
                    np.full(keep.sum(), REF),
                    size[keep],
                )
            )
    return log


@pytest.mark.parametrize("fill_passive", [0.0, 0.4, 1.0])
def test_twap_executes_exactly_the_parent_quantity_on_schedule(fill_passive: float) -> None:
    pop = make(TwapExecutors, 1, side="sell", quantity=1003, start="10:00", end="10:10", slices=10)
    log = _twap_with_instant_fills(pop, T_OPEN - 30 * S, 700, fill_passive)
    assert pop.executed[0] == 1003 and pop.done.all()
    assert pop.inventory[0] == -1003
    rows = [(t0, b) for t0, b in log if len(b)]
    assert rows[0][0] == T_OPEN  # nothing before the start
    passive = [
        (t0, b.size[b.order_type == OrderType.LIMIT])
        for t0, b in rows
        if (b.order_type == OrderType.LIMIT).any()
    ]
    assert all((b.side[b.order_type != OrderType.CANCEL] == -1).all() for _, b in rows)
    if fill_passive == 1.0:
        # every slice done passively, one per minute, 100 or 101 shares each
        assert [t for t, _ in passive] == [T_OPEN + 60 * S * j for j in range(10)]
        assert sum(int(q.sum()) for _, q in passive) == 1003
        assert not any((b.order_type == OrderType.MARKET).any() for _, b in rows)
    else:
        aggressive = sum(int(b.size[b.order_type == OrderType.MARKET].sum()) for _, b in rows)
        assert aggressive > 0
        # passive slices start on the minute (or one step later when a cancel must settle)
        for t, _ in passive:
            assert (t - T_OPEN) % (60 * S) in (0, S)
    # the last order is sent at the end of the window (or one step after, cancel settling)
    assert rows[-1][0] <= T_OPEN + 600 * S + S


def test_twap_ioc_retries_after_the_end_until_done() -> None:
    pop = make(
        TwapExecutors,
        2,
        quantity=400,
        start="10:00",
        end="10:01",
        slices=4,
        aggressive="ioc",
        ioc_ticks=1,
    )
    log = _twap_with_instant_fills(pop, T_OPEN, 90, 0.0, 0.0)  # nothing fills for 90 s
    assert (pop.executed == 0).all()
    for _, b in log:
        new = b.order_type != OrderType.CANCEL
        for aid in pop.agent_ids:  # never more than the parent order live at once
            assert b.size[new & (b.agent_id == aid)].sum() <= 400
    ioc = [(t0, b) for t0, b in log if (b.order_type == OrderType.IOC).any()]
    assert all(np.allclose(b.price[b.order_type == OrderType.IOC] / TICK, REF + 2) for _, b in ioc)
    after_end = [t0 for t0, _ in ioc if t0 > T_OPEN + 60 * S]
    assert len(after_end) >= 25  # retried every step after the end
    _twap_with_instant_fills(pop, T_OPEN + 90 * S, 3, 1.0)  # then liquidity comes back
    assert (pop.executed == 400).all()
    assert len(pop.act(T_OPEN + 93 * S, T_OPEN + 94 * S, view(t=T_OPEN + 93 * S))) == 0


def test_meta_orders_are_runs_of_one_side() -> None:
    """Each parent is a geometric run of same-side market orders an exponential gap apart,
    one parent per agent at a time; a call pauses a parent and trading resumes it."""
    pop = make(MetaOrderTraders, 5, rate=0.05, mean_children=6, mean_gap_s=2.0, mean_lots=2)
    runs: list[list[tuple[int, int]]] = []  # per parent: its children's (side, decision time)
    current: dict[int, list[tuple[int, int]]] = {}
    call = (T_OPEN + 1_000 * S, T_OPEN + 1_100 * S)
    for s in range(20_000):
        t0 = T_OPEN + s * S
        phase = Phase.CALL if call[0] <= t0 < call[1] else Phase.CONTINUOUS
        b = pop.act(t0, t0 + S, view(t=t0, phase=phase))
        check_batch(pop, b, t0, t0 + S)
        assert (b.order_type == OrderType.MARKET).all() and (b.size % 100 == 0).all()
        idx = np.searchsorted(pop.agent_ids, b.agent_id)
        decided = b.time_ns - pop.order_latency_ns[idx]
        for a, side, t in zip(idx.tolist(), b.side.tolist(), decided.tolist(), strict=True):
            current.setdefault(a, []).append((side, t))
        for a in [a for a in current if pop.children_left[a] == 0]:
            runs.append(current.pop(a))
    assert all(len({side for side, _ in r}) == 1 for r in runs)  # one side per parent
    lengths = np.array([len(r) for r in runs])
    assert len(runs) > 2_000 and lengths.mean() == pytest.approx(6.0, rel=0.1)
    assert abs(np.mean([r[0][0] for r in runs])) < 0.1  # buy and sell parents alike
    times = np.concatenate([[t for _, t in r] for r in runs])
    assert not ((times >= call[0]) & (times < call[1])).any()  # nothing decided in the call
    paused = [r for r in runs if r[0][1] < call[0] and r[-1][1] >= call[1]]
    assert paused  # a parent begun before the call went on after it
    gaps = np.concatenate([np.diff([t for _, t in r]) for r in runs if r not in paused]) / S
    assert gaps.min() > 0 and gaps.mean() == pytest.approx(2.0, rel=0.1)


def test_twap_never_overshoots_with_a_real_book() -> None:
    twap = make(TwapExecutors, 1, first_id=1, quantity=6_000, start="10:00", end="10:04", slices=8)
    noise = make(NoiseTraders, 1000, seed=5, first_id=100, rate=0.2)
    mm = make(MarketMakers, 10, seed=6, first_id=50_000)
    _, stats = run_on_book([twap, noise, mm], steps=300)
    assert twap.executed[0] == 6_000 and twap.inventory[0] == 6_000
    assert stats.rejects < 0.01 * stats.orders


# ----------------------------------------------------------------- against a real book


@pytest.mark.parametrize(("cls", "params"), ALL, ids=[c.kind for c, _ in ALL])
def test_population_on_a_real_book(cls, params) -> None:
    n = 1 if cls is TwapExecutors else 200
    background = make(NoiseTraders, 1000, seed=11, first_id=100_000)
    pop = make(cls, n, seed=12, **params)
    book, stats = run_on_book([background, pop], steps=300)
    assert stats.orders > 20_000
    assert stats.rejects < 0.01 * stats.orders, stats.reject_reasons
    assert min(stats.per_step_orders[-50:]) > 0  # orders keep flowing
    assert stats.trades > 1000
    assert 0 < book.best_bid() < book.best_ask()
    assert abs((book.best_bid() + book.best_ask()) / 2 - REF) < 500
    assert len(book) < 40_000  # cancels keep the book bounded
    own = sum(len(b) for b in stats.batches[1::2])
    assert own > 0
    if cls is TwapExecutors:
        assert pop.executed[0] == params["quantity"]


def test_all_kinds_together_on_a_real_book() -> None:
    pops = [
        make(NoiseTraders, 1000, seed=21, first_id=100_000),
        make(MarketMakers, 20, seed=22, first_id=1_000),
        make(MomentumTraders, 100, seed=23, first_id=2_000),
        make(ValueTraders, 100, seed=24, first_id=3_000, volatility=1.0),
        make(
            TwapExecutors,
            1,
            seed=25,
            first_id=4_000,
            quantity=3000,
            start="10:00",
            end="10:04",
            slices=6,
        ),
    ]
    book, stats = run_on_book(pops, steps=300)
    assert stats.rejects < 0.01 * stats.orders, stats.reject_reasons
    assert min(stats.per_step_orders) > 0
    assert pops[4].executed[0] == 3000
    # positions net out: every trade is between agents of these populations
    assert sum(int(p.inventory.sum()) for p in pops) == 0
    assert sum(float(p.cash.sum()) for p in pops) == pytest.approx(0.0, abs=1e-6)
    book.check_invariants()
