"""The LMM background agent inside the simulator, with a tiny untrained checkpoint.

An untrained model still generates valid tokens, which is all these tests need:
that its orders reach the books, are reproducible, react to outside orders, and
that its fills keep its own live-order list exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from mars_ray.exchange.orders import OrderBatch
from mars_ray.lmm.checkpoint import model_payload, save_checkpoint
from mars_ray.lmm.model import LMMConfig, OrderModel
from mars_ray.lmm.tokenizer import Tokenizer
from mars_ray.schema.clock import parse_clock
from mars_ray.schema.events import EventType, OrderType
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import parse_config
from mars_ray.sim.kernel import Simulation, run_simulation


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    tokenizer = Tokenizer.fit(
        rng.geometric(0.3, 5000) * 100, rng.exponential(2e8, 5000).astype(np.int64)
    )
    torch.manual_seed(0)
    model = OrderModel(LMMConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))
    path = tmp_path_factory.mktemp("lmm") / "tiny.pt"
    save_checkpoint(path, {**model_payload(model, tokenizer), "step": 0})
    return path


def config(checkpoint: Path, shards: int = 1, **lmm: object) -> object:
    return parse_config(
        {
            "name": "lmm-small",
            "seed": 5,
            "session": {
                "pre_open": "09:25",
                "open": "09:30",
                "closing_call": "09:38",
                "close": "09:40",
            },
            "kernel": {"step_ms": 1000, "sync_ms": 60000, "shards": shards},
            "instruments": [
                {"name": "AAA", "reference_price": 100.0},
                {"name": "BBB", "reference_price": 50.0, "tick_size": 0.05},
            ],
            "agents": [
                {"kind": "noise", "count": 20},
                {"kind": "market_maker", "count": 2},
                {
                    "kind": "lmm",
                    "count": 1,
                    "params": {"checkpoint": str(checkpoint), "device": "cpu", **lmm},
                },
            ],
        }
    )


def lmm_agent_ids(cfg) -> set[int]:
    from mars_ray.sim.shard import agent_blocks

    return {b.first_id for b in agent_blocks(cfg) if cfg.agents[b.group].kind == "lmm"}


@pytest.mark.slow
def test_lmm_orders_reach_every_book_only_in_continuous_trading(tiny_checkpoint: Path) -> None:
    cfg = config(tiny_checkpoint)
    events = run_simulation(cfg, local=True).events
    ids = lmm_agent_ids(cfg)
    mine = events.filter(
        pc.is_in(events["agent_id"], value_set=pa.array(list(ids), type=pa.int64()))
    )
    submits = mine.filter(pc.equal(mine["event_type"], int(EventType.SUBMIT)))
    assert submits.num_rows > 100
    assert set(submits["instrument"].to_pylist()) == {"AAA", "BBB"}
    times = np.array(submits["time_ns"].to_pylist())
    assert times.min() >= cfg.session.open and times.max() < cfg.session.closing_call
    # the only rejects: cancels that race a fill of the same step (the agent learns of fills
    # at the end of a step, as a trader learns of them with latency)
    rejects = mine.filter(pc.equal(mine["event_type"], int(EventType.REJECT)))
    assert set(rejects["reason"].to_pylist()) <= {"unknown_order"}
    cancels = mine.filter(pc.equal(mine["event_type"], int(EventType.CANCEL)))
    assert rejects.num_rows <= 0.05 * cancels.num_rows


@pytest.mark.slow
def test_lmm_runs_are_reproducible(tiny_checkpoint: Path) -> None:
    a = run_simulation(config(tiny_checkpoint), local=True).events
    b = run_simulation(config(tiny_checkpoint), local=True).events
    assert a.equals(b)


@pytest.mark.slow
def test_lmm_reacts_to_an_injected_order(tiny_checkpoint: Path) -> None:
    """A big outside order changes the book, so the model's next orders change too."""
    cfg = config(tiny_checkpoint)
    at = cfg.session.open + 120 * 10**9

    def run(inject: bool):
        sim = Simulation(cfg, local=True)
        sim.run(until=at - 10**9)
        if inject:
            sim.inject(
                OrderBatch.build(
                    time_ns=[at],
                    instrument=[0],
                    order_type=[int(OrderType.LIMIT)],
                    order_id=[-1],
                    side=[1],
                    price=[99.0],
                    size=[50_000.0],
                    agent_id=999_999,
                )
            )
        sim.run()
        events, _ = sim.collect()
        ids = lmm_agent_ids(cfg)
        mine = events.filter(
            pc.and_(
                pc.is_in(events["agent_id"], value_set=pa.array(list(ids), type=pa.int64())),
                pc.equal(events["instrument"], "AAA"),
            )
        )
        return mine.to_pandas()

    quiet, pushed = run(False), run(True)
    before_q, before_p = quiet[quiet.time_ns < at], pushed[pushed.time_ns < at]
    assert before_q.reset_index(drop=True).equals(before_p.reset_index(drop=True))
    after_q, after_p = quiet[quiet.time_ns > at], pushed[pushed.time_ns > at]
    assert not after_q.reset_index(drop=True).equals(after_p.reset_index(drop=True))


def test_live_orders_match_the_book(tiny_checkpoint: Path) -> None:
    """What the agent believes rests equals what its id really has resting in the book."""
    cfg = config(tiny_checkpoint)
    sim = Simulation(cfg, local=True)
    sim.run(until=cfg.session.open + 200 * 10**9)
    shard = sim.shards[0]
    agent = next(iter(shard.spanning.values()))
    for slot in agent.slots:
        book = shard.state[(slot.trajectory, slot.instrument)].book
        entries = {oid: book.order(oid) for oid in book.order_ids()}
        resting = {oid: e[2] for oid, e in entries.items() if e[3] == slot.agent_id}
        believed = {oid: entry[2] for oid, entry in slot.live.items()}
        assert believed == resting


def test_lmm_count_and_params_are_validated(tiny_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="count"):
        parse_config(
            {
                "name": "x",
                "instruments": [{"name": "A"}],
                "agents": [{"kind": "lmm", "count": 2}],
            }
        )
    with pytest.raises(ConfigError, match="temperature"):
        config(tiny_checkpoint, temperature=0)


@pytest.mark.slow
def test_the_shipped_model_drives_a_simulation() -> None:
    raw = config(Path("unused")).model_dump(mode="json")
    raw["agents"][-1]["params"] = {"device": "cpu"}  # default checkpoint: the shipped one
    raw["session"]["closing_call"] = "09:33"
    raw["session"]["close"] = "09:34"
    cfg = parse_config(raw)
    events = run_simulation(cfg, local=True).events
    mine = events.filter(
        pc.is_in(events["agent_id"], value_set=pa.array(list(lmm_agent_ids(cfg)), pa.int64()))
    )
    assert mine.num_rows > 100


class AlwaysBuy:
    """A stand-in controller: a bias no sampled kind but BUY survives."""

    def biases(self, times_ns, depths, last_tokens, active) -> tuple[np.ndarray, None]:
        bias = np.full((len(times_ns), 4), -1e4, dtype=np.float32)
        bias[:, 0] = 0.0
        return bias, None


def test_a_controller_steers_the_kinds_the_agent_sends(tiny_checkpoint: Path) -> None:
    cfg = config(tiny_checkpoint)
    sim = Simulation(cfg, local=True)
    agent = next(iter(sim.shards[0].spanning.values()))
    agent.controller = AlwaysBuy()
    sim.run(until=cfg.session.open + 60 * 10**9)
    events, _ = sim.collect()
    mine = events.filter(
        pc.and_(
            pc.is_in(events["agent_id"], value_set=pa.array(list(lmm_agent_ids(cfg)), pa.int64())),
            pc.equal(events["event_type"], int(EventType.SUBMIT)),
        )
    )
    assert mine.num_rows > 20
    assert set(mine["side"].to_pylist()) == {1}


@pytest.mark.slow
def test_lmm_flow_is_the_same_for_any_shard_layout(tiny_checkpoint: Path) -> None:
    """Two books on one shard (one 2-book forward) or on two (two 1-book forwards): every
    forward covers BATCH_FLOOR rows, so each book's orders come out bit for bit the same."""
    one = run_simulation(config(tiny_checkpoint, shards=1), local=True).events
    two = run_simulation(config(tiny_checkpoint, shards=2), local=True).events
    assert one.num_rows > 1000
    assert one.equals(two)


def test_max_orders_is_a_horizon_per_book(tiny_checkpoint: Path) -> None:
    cfg = config(tiny_checkpoint, max_orders=25)
    sim = Simulation(cfg, local=True)
    try:
        sim.run()
        agent = sim.shards[0].spanning[2]
        assert agent.finished
        assert [s.generated for s in agent.slots] == [25, 25]
        assert agent.orders_generated == 50
    finally:
        sim.close()


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ({}, "exactly one of mid_path, volatility, volume"),
        ({"mid_path": {"at": ["10:00"], "ticks": [0]}, "volatility": {"sigma": 1}}, "exactly one"),
        ({"mid_path": {"at": ["10:05", "10:00"], "ticks": [0, 5]}}, "strictly increasing"),
        ({"mid_path": {"at": ["10:00"], "ticks": [0, 5]}}, "1 times but 2 ticks"),
        ({"mid_path": {"at": ["10:99"], "ticks": [0]}}, "not a time of day"),
        ({"volatility": {"sigma": 0}}, r"control\.volatility\.sigma"),
        ({"volatility": {"sigma": 1}, "batch_model": "nope.pt"}, "file not found: nope.pt"),
    ],
)
def test_control_params_are_validated_by_name(
    tiny_checkpoint: Path, control: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config(tiny_checkpoint, control=control)


def test_a_control_target_in_the_config_becomes_the_agents_controller(
    tiny_checkpoint: Path,
) -> None:
    """``params.control`` builds one controller for all the agent's books, on the shipped
    order-batch model by default (that it steers: tests/test_control.py, in the kernel)."""
    from mars_ray.lmm.batch_model import SHIPPED_BATCH, load_batch_model
    from mars_ray.lmm.control import FlowController, MidPath

    path = {"at": ["09:31", "09:35"], "ticks": [0, 20]}
    sim = Simulation(config(tiny_checkpoint, control={"mid_path": path}), local=True)
    try:
        controller = sim.shards[0].spanning[2].controller
        assert isinstance(controller, FlowController) and controller.books == 2
        for target in controller.targets:
            assert isinstance(target, MidPath) and target.relative
            assert list(target.times_ns) == [parse_clock("09:31"), parse_clock("09:35")]
            assert list(target.ticks) == [0.0, 20.0]
        shipped, _ = load_batch_model(SHIPPED_BATCH)
        for name, value in shipped.state_dict().items():
            assert torch.equal(controller.model.state_dict()[name], value), name
    finally:
        sim.close()


def _empty_side_rows(keep_both_sides: bool) -> tuple[int, int, dict[str, int]]:
    """The shipped model alone on one book for six minutes: (rows with an empty side after
    the book first had both, rows after that, what the rule changed)."""
    from mars_ray.reports.lob_suite import events_book

    raw = config(Path("unused")).model_dump(mode="json")
    raw["instruments"] = raw["instruments"][:1]
    raw["agents"] = [
        {"kind": "lmm", "count": 1, "params": {"device": "cpu", "keep_both_sides": keep_both_sides}}
    ]
    raw["session"].update(closing_call="09:36", close="09:37")
    cfg = parse_config(raw)
    sim = Simulation(cfg, local=True)
    try:
        sim.run()
        agent = next(iter(sim.shards[0].spanning.values()))
        events, _ = sim.collect()
    finally:
        sim.close()
    rows = events_book(events, 1, (cfg.session.open, cfg.session.closing_call)).rows
    two_sided = (rows[:, 0] > 0) & (rows[:, 2] > 0)
    first = int(np.argmax(two_sided))
    after = rows[first:]
    return int((~two_sided[first:]).sum()), len(after), dict(agent.guarded)


def test_a_cancel_between_orders_takes_the_one_behind_it_on_either_side() -> None:
    """A cancel token's price that holds none of the agent's orders cancels the nearest one
    behind it (the lower bid, the higher ask: mirror images), never one nearer the touch
    while one lies behind; in front of it only when nothing lies behind."""
    from agents.lmm import BookSlot

    slot = BookSlot(0, 0, 7, 0.01, 10_000, np.random.default_rng(1))
    for side in (1, -1):
        for price in (9_990, 9_994, 10_006, 10_010):
            slot.add_live(slot.new_order_id(), side, price, 100)
    price_of = {oid: entry[1] for oid, entry in slot.live.items()}
    assert price_of[slot.cancel_target(1, 9_994)] == 9_994  # an order there: that one
    assert price_of[slot.cancel_target(-1, 10_006)] == 10_006
    assert price_of[slot.cancel_target(1, 9_993)] == 9_990  # 1 tick from the touch, 3 behind
    assert price_of[slot.cancel_target(-1, 10_007)] == 10_010
    assert price_of[slot.cancel_target(1, 10_005)] == 9_994  # inside the spread: the touch
    assert price_of[slot.cancel_target(-1, 9_995)] == 10_006
    assert price_of[slot.cancel_target(1, 5_000)] == 9_990  # behind every order: the deepest
    assert price_of[slot.cancel_target(-1, 20_000)] == 10_010
    assert BookSlot(0, 0, 7, 0.01, 10_000, np.random.default_rng(1)).cancel_target(1, 1) is None


def test_own_orders_an_own_aggressor_takes_are_no_cancel_target() -> None:
    """Within a step the agent's own market order fills its own resting orders oldest first
    (as the exchange will): a cancel later in the step aims at what is left, not at an
    order already gone; the fills reported after the step are not counted twice, and
    shares it took but the exchange did not fill (another agent was ahead) come back."""
    from agents.lmm import BookSlot, ShadowBook

    slot = BookSlot(0, 0, 7, 0.01, 10_000, np.random.default_rng(1))
    first, second = slot.new_order_id(), slot.new_order_id()
    slot.add_live(first, -1, 10_001, 100)
    slot.add_live(second, -1, 10_001, 50)
    depth = np.zeros((10, 4), dtype=np.int64)
    depth[0] = [10_001, 150, 9_999, 100]
    shadow = ShadowBook(depth)
    assert shadow.take(1, 120, slot=slot) == 0
    assert first not in slot.live and slot.live[second][2] == 30
    assert slot.cancel_target(-1, 10_001) == second  # not the order the buy filled
    slot.filled(first, 100)  # the exchange reports the fills: nothing counted twice
    slot.filled(second, 20)
    slot.settle_taken()
    assert slot.live == {second: [-1, 10_001, 30]}
    shadow.take(1, 10, slot=slot)  # taken, but another agent's order was ahead
    assert slot.live[second][2] == 20
    slot.settle_taken()  # no fill reported: the shares are live again
    assert slot.live == {second: [-1, 10_001, 30]}
    shadow.take(1, 30, slot=slot)
    slot.settle_taken()  # the whole order comes back
    assert slot.live == {second: [-1, 10_001, 30]}


@pytest.mark.slow
def test_the_decoder_never_empties_a_side_of_the_book() -> None:
    empty, rows, guarded = _empty_side_rows(keep_both_sides=True)
    assert rows > 500 and empty == 0
    assert sum(guarded.values()) > 0  # the rule had work to do
    empty_off, _, guarded_off = _empty_side_rows(keep_both_sides=False)
    assert empty_off > 0  # the model alone does empty a side: the rule is what prevents it
    assert sum(guarded_off.values()) == 0


def test_the_shadow_book_knows_what_would_empty_a_side() -> None:
    from agents.lmm import ShadowBook

    depth = np.zeros((10, 4), dtype=np.int64)
    depth[:2, :2] = [[101, 300], [103, 200]]  # two ask levels, the whole side in view
    depth[0, 2:] = [99, 100]  # one bid level
    book = ShadowBook(depth)
    assert book.sweep_cap(1, 400) == 400  # leaves 100 at 103
    assert book.sweep_cap(1, 500) == 300  # would take both levels: all but the deepest
    assert book.sweep_cap(-1, 100) == 0  # the only bid level: dropped
    assert book.empties(1, 99, 100) and not book.empties(1, 99, 50)
    assert not book.empties(-1, 101, 300)  # another ask level stays
    empty = ShadowBook(np.zeros((10, 4), dtype=np.int64))
    assert empty.sweep_cap(1, 100) == 100  # nothing to protect on an empty side
    full = np.zeros((10, 4), dtype=np.int64)
    full[:, 0], full[:, 1] = np.arange(101, 111), 10
    # a side that fills the view may hold more beyond it, but the shadow's levels count as
    # the whole side: the agent's own cancels may have emptied those in view since
    assert ShadowBook(full).sweep_cap(1, 1000) == 90


class _SameToken:
    """A generator stub that proposes one token for every row."""

    rows = 1

    def __init__(self, token: list[int]) -> None:
        self.token = np.array(token, dtype=np.int64)

    def next(self, components, book, uniforms, active, kind_bias=None, gap_bias=None):
        return np.tile(self.token, (len(components), 1))


def _inside_buys(draw_in_bins: bool, gap_bin: int) -> tuple[list[int], list[int], Tokenizer]:
    """Twenty one-order steps of INSIDE buys into a 30-tick spread (bid 100, ask 130):
    (limit prices in ticks, order times, the tokenizer)."""
    from agents.lmm import BookSlot, LMMBackground, LMMParams
    from mars_ray.lmm.tokenizer import INSIDE, Kind
    from mars_ray.schema.phases import Phase

    rng = np.random.default_rng(0)
    spread = np.full(400, 30)
    depth_in = rng.integers(1, 30, 400)  # every depth inside the spread, evenly
    tokenizer = Tokenizer.fit(
        rng.geometric(0.3, 5000) * 100,
        rng.exponential(2e8, 5000).astype(np.int64),
        (depth_in, spread),
    )
    stub = _SameToken([int(Kind.BUY), INSIDE, 0, gap_bin])
    params = LMMParams(max_orders_per_step=1, draw_in_bins=draw_in_bins, device="cpu")
    slot = BookSlot(0, 0, 7, 0.01, 11_500, np.random.default_rng(1))
    agent = LMMBackground(params, [slot], {"local": lambda p, rows: (stub, tokenizer)})
    depth = np.zeros((10, 4), dtype=np.int64)
    depth[0] = [130, 100, 100, 100]
    prices, times = [], []
    t0 = parse_clock("10:00")
    for step in range(20):
        batch = agent.act(t0 + step * 10**9, t0 + (step + 1) * 10**9, [depth], Phase.CONTINUOUS)
        prices += np.rint(np.asarray(batch.price) / 0.01).astype(int).tolist()
        times += np.asarray(batch.time_ns).tolist()
    return prices, times, tokenizer


def test_the_decoder_draws_inside_a_tokens_bins() -> None:
    gap_bin = 6
    prices, times, tok = _inside_buys(draw_in_bins=False, gap_bin=gap_bin)
    assert set(prices) == {101}  # one tick over the bid, every time
    assert set(np.diff(times).tolist()) == {int(tok.gap_values[gap_bin])}
    prices, times, tok = _inside_buys(draw_in_bins=True, gap_bin=gap_bin)
    # depths fitted evenly over the spread: orders go anywhere inside it, never across
    assert min(prices) >= 101 and max(prices) <= 129 and len(set(prices)) > 8
    gaps = np.diff(times)
    assert len(set(gaps.tolist())) > 10  # a gap anywhere in its bin ...
    assert (tok.gap_bins(gaps) == gap_bin).mean() > 0.9  # ... and inside it


def test_a_context_sets_the_pace_the_gaps_are_decoded_at() -> None:
    """A context with twice the model's training orders a second at the touch: the model
    reads its gaps doubled and its generated gaps are halved; ``regime: off`` or a model
    without the rate leaves time as trained, and the factor stays within REGIME_RANGE.
    With no context, the ``touch_rate`` param says the instrument's rate instead."""
    import pydantic

    from agents.lmm import REGIME_RANGE, BookSlot, LMMBackground, LMMParams
    from mars_ray.lmm.corpus import UnitOrders
    from mars_ray.lmm.tokenizer import BEHIND, DEEP, Kind
    from mars_ray.schema.phases import Phase

    rng = np.random.default_rng(0)
    fitted = Tokenizer.fit(
        rng.geometric(0.3, 500) * 100, rng.exponential(2e8, 500).astype(np.int64)
    )
    gap_bin = 12
    seen = []

    class Recording(_SameToken):
        def next(self, components, book, uniforms, active, kind_bias=None, gap_bias=None):
            seen.append(components.copy())
            return super().next(components, book, uniforms, active)

    def run(
        regime: str,
        spacing_s: float | None,
        touch_rate: float | None = 2.0,
        given: float | None = None,
    ):
        tokenizer = fitted.with_decoding(None, None, touch_rate)
        stub = Recording([int(Kind.BUY), BEHIND, 0, gap_bin])
        params = LMMParams(
            max_orders_per_step=3,
            regime=regime,
            touch_rate=given,
            draw_in_bins=False,
            device="cpu",
        )
        slot = BookSlot(0, 0, 7, 0.01, 10_000, np.random.default_rng(1))
        agent = LMMBackground(params, [slot], {"local": lambda p, rows: (stub, tokenizer)})
        n = 17  # one deep order, then 16 at the touch
        time_ns = (np.arange(n) * (spacing_s or 1.0) * 1e9).astype(np.int64)
        context = UnitOrders(
            time_ns=time_ns,
            kind=np.zeros(n, dtype=np.int8),
            price_level=np.array([DEEP] + [BEHIND] * (n - 1), dtype=np.int8),
            size=np.full(n, 100, dtype=np.int64),
            gap_ns=np.diff(time_ns, prepend=0),
            book=np.zeros((n, 24), dtype=np.float32),
            inside_ticks=np.zeros(n, dtype=np.int16),
        )
        seen.clear()
        if spacing_s is not None:  # None: no context, as from an empty book
            agent.set_context(0, context)
        depth = np.zeros((10, 4), dtype=np.int64)
        depth[0] = [140, 100, 100, 100]
        t0 = parse_clock("10:00")
        batch = agent.act(t0, t0 + 60 * 10**9, [depth], Phase.CONTINUOUS)
        gaps = np.diff(np.asarray(batch.time_ns)).tolist()
        # the gap bin of the context's last order, as fed
        fed = int(seen[n - 1][0, 3]) if spacing_s is not None else None
        return slot.pace, gaps, fed, tokenizer

    gap_ns = int(fitted.gap_values[gap_bin])
    # 16 touch orders in 4 s: 4 a second against the trained 2
    pace, gaps, fed, tok = run("context", 0.25)
    assert pace == pytest.approx(2.0)
    assert gaps == [round(gap_ns / 2)] * 2
    assert fed == int(tok.gap_bins(np.array([int(0.5e9)]))[0])  # 0.25 s read as 0.5 s
    pace, gaps, fed, tok = run("off", 0.25)
    assert pace == 1.0 and gaps == [gap_ns] * 2
    assert fed == int(tok.gap_bins(np.array([int(0.25e9)]))[0])
    assert run("context", 0.25, touch_rate=None)[0] == 1.0  # a model fitted before the rate
    assert run("context", 0.001)[0] == REGIME_RANGE[1]  # 1,000 a second: clipped
    assert run("context", 100.0)[0] == REGIME_RANGE[0]
    # no context: the param's rate, 3 a second against the trained 2; a context still says
    pace, gaps, _, _ = run("context", None, given=3.0)
    assert pace == pytest.approx(1.5) and gaps == [round(gap_ns / 1.5)] * 2
    assert run("context", 0.25, given=3.0)[0] == pytest.approx(2.0)
    assert run("context", None)[0] == 1.0 and run("off", None, given=3.0)[0] == 1.0
    with pytest.raises(pydantic.ValidationError, match="touch_rate"):
        LMMParams(touch_rate=0)


def test_a_context_sets_the_price_regime_the_orders_are_decoded_in() -> None:
    """A context quoted twice as wide as the model's training books: distances behind the
    best are decoded twice as far, and the model reads the spread halved."""
    import pydantic

    from agents.lmm import BookSlot, LMMBackground, LMMParams
    from mars_ray.lmm.corpus import UnitOrders
    from mars_ray.lmm.tokenizer import BEHIND, Kind, book_features
    from mars_ray.schema.phases import Phase

    rng = np.random.default_rng(0)
    tokenizer = Tokenizer.fit(
        rng.geometric(0.3, 500) * 100, rng.exponential(2e8, 500).astype(np.int64), None, 20.0
    )
    seen = []

    class Recording(_SameToken):
        def next(self, components, book, uniforms, active, kind_bias=None, gap_bias=None):
            seen.append(book.copy())
            return super().next(components, book, uniforms, active)

    def run(regime: str | float, context: bool = True) -> tuple[list[int], float]:
        stub = Recording([int(Kind.BUY), BEHIND + 5, 0, 3])
        params = LMMParams(max_orders_per_step=1, regime=regime, device="cpu")
        slot = BookSlot(0, 0, 7, 0.01, 10_000, np.random.default_rng(1))
        agent = LMMBackground(params, [slot], {"local": lambda p, rows: (stub, tokenizer)})
        rows = np.zeros((8, 10, 4), dtype=np.int64)
        rows[:, 0] = [140, 100, 100, 100]  # a 40-tick spread: twice the training median
        n = len(rows)
        orders = UnitOrders(
            time_ns=np.arange(n, dtype=np.int64),
            kind=np.zeros(n, dtype=np.int8),
            price_level=np.full(n, BEHIND + 6, dtype=np.int8),
            size=np.full(n, 100, dtype=np.int64),
            gap_ns=np.ones(n, dtype=np.int64),
            book=book_features(rows, parse_clock("10:00")),
            inside_ticks=np.zeros(n, dtype=np.int16),
        )
        if context:
            agent.set_context(0, orders)
        depth = np.zeros((10, 4), dtype=np.int64)
        depth[0] = [140, 100, 100, 100]
        t0 = parse_clock("10:00")
        batch = agent.act(t0, t0 + 10**9, [depth], Phase.CONTINUOUS)
        return np.rint(np.asarray(batch.price) / 0.01).astype(int).tolist(), slot.scale

    seen.clear()
    prices, scale = run("context")
    assert scale == pytest.approx(2.0) and prices == [90]  # 5 "training ticks" = 10 here
    assert np.expm1(seen[-1][0, 20]) == pytest.approx(20.0, rel=1e-4)  # it reads 40 as 20
    seen.clear()
    prices, scale = run("off")
    assert scale == 1.0 and prices == [95]
    assert np.expm1(seen[-1][0, 20]) == pytest.approx(40.0, rel=1e-4)
    # a spread given in ticks: the regime where there is no context (an empty book) ...
    seen.clear()
    prices, scale = run(80.0, context=False)
    assert scale == pytest.approx(4.0) and prices == [80]  # 5 training ticks = 20 here
    assert np.expm1(seen[-1][0, 20]) == pytest.approx(10.0, rel=1e-4)
    assert run(1000.0, context=False)[1] == pytest.approx(4.0)  # clipped: books never seen
    # ... and a context, where there is one, still says what the instrument quotes
    assert run(80.0) == ([90], pytest.approx(2.0))
    with pytest.raises(pydantic.ValidationError, match="regime"):
        LMMParams(regime=0)


def test_a_context_sets_the_sizes_the_orders_are_decoded_in() -> None:
    """A model that learned half its orders small (bin 0, 10 shares) and half large (bin 1,
    1,000), and a context whose orders are 200 and 300 shares, half each: the model reads
    200 as its small bin and 300 as its large one, and its bins come back as 200 and 300;
    ``regime: off`` or a model without the mix keeps its own sizes."""
    from agents.lmm import BookSlot, LMMBackground, LMMParams
    from mars_ray.lmm.corpus import UnitOrders
    from mars_ray.lmm.size_regime import MIN_CONTEXT_SIZES
    from mars_ray.lmm.tokenizer import BEHIND, Kind
    from mars_ray.schema.phases import Phase

    rng = np.random.default_rng(0)
    trained = np.repeat([10, 1000], 250)
    fitted = Tokenizer.fit(trained, rng.exponential(2e8, 500).astype(np.int64))
    small, large = (int(b) for b in fitted.size_bins(np.array([10, 1000])))
    seen = []

    class Recording(_SameToken):
        def next(self, components, book, uniforms, active, kind_bias=None, gap_bias=None):
            seen.append(components.copy())
            return super().next(components, book, uniforms, active)

    def run(size_bin: int, regime: str = "context", mix: bool = True) -> tuple[set, list]:
        tokenizer = fitted.with_decoding(None, None, None, trained if mix else None)
        stub = Recording([int(Kind.BUY), BEHIND + 5, size_bin, 3])
        params = LMMParams(max_orders_per_step=200, regime=regime, device="cpu")
        slot = BookSlot(0, 0, 7, 0.01, 10_000, np.random.default_rng(1))
        agent = LMMBackground(params, [slot], {"local": lambda p, rows: (stub, tokenizer)})
        n = 2 * MIN_CONTEXT_SIZES
        context = UnitOrders(
            time_ns=np.arange(n, dtype=np.int64),
            kind=np.zeros(n, dtype=np.int8),
            price_level=np.full(n, BEHIND + 6, dtype=np.int8),
            size=np.tile([200, 300], n // 2).astype(np.int64),
            gap_ns=np.ones(n, dtype=np.int64),
            book=np.zeros((n, 24), dtype=np.float32),
            inside_ticks=np.zeros(n, dtype=np.int16),
        )
        seen.clear()
        agent.set_context(0, context)
        depth = np.zeros((10, 4), dtype=np.int64)
        depth[0] = [10_100, 100, 10_000, 100]
        t0 = parse_clock("10:00")
        batch = agent.act(t0, t0 + 10**9, [depth], Phase.CONTINUOUS)
        fed = [int(c[0, 2]) for c in seen[:2]]  # the context's first two orders, as read
        return set(np.asarray(batch.size).astype(int).tolist()), fed

    assert run(small) == ({200}, [small, large])
    assert run(large) == ({300}, [small, large])
    as_trained = fitted.size_bins(np.array([200, 300])).tolist()
    assert run(small, regime="off") == ({int(fitted.size_values[small])}, as_trained)
    assert run(large, mix=False) == ({int(fitted.size_values[large])}, as_trained)
