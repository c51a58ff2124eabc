"""The kernel: determinism across shard counts, auctions in the calendar, outside orders."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import EventType, OrderType, event_digest
from mars_ray.schema.phases import Phase
from mars_ray.schema.validation import ConfigError
from mars_ray.sim import kernel
from mars_ray.sim.config import parse_config
from mars_ray.sim.kernel import Simulation, run_simulation

SMALL = {
    "name": "small",
    "seed": 11,
    "session": {"pre_open": "09:00", "open": "09:05", "closing_call": "09:20", "close": "09:25"},
    "kernel": {"step_ms": 1000, "sync_ms": 60000, "shards": 1},
    "instruments": [
        {"name": "AAA", "reference_price": 100.0},
        {"name": "BBB", "reference_price": 50.0, "tick_size": 0.05},
        {"name": "CCC", "reference_price": 20.0},
    ],
    "agents": [
        {"kind": "noise", "count": 40},
        {"kind": "market_maker", "count": 3},
        {"kind": "momentum", "count": 5, "instruments": ["AAA"]},
        {"kind": "value", "count": 5},
    ],
    "output": {"snapshot_levels": 3},
}


# The event digest of SMALL's day. It pins every rule that shapes events (matching,
# auctions, agents' draws and decisions, latencies, the schema): a change that moves it
# changes simulated markets, and must say why in its commit.
SMALL_DIGEST = "dd1a18d25603f71ff3a3500f16dca1cd7676e9afa6b52a49489a52f078952e77"


def config(**overrides):
    raw = {**SMALL, **overrides}
    raw["kernel"] = {**SMALL["kernel"], **overrides.get("kernel", {})}
    return parse_config(raw)


@pytest.fixture(scope="module")
def one_shard(ray_session):
    return run_simulation(config())


def test_same_seed_same_events_with_1_and_3_shards(one_shard):
    three = run_simulation(config(kernel={"shards": 3}))
    assert one_shard.events.num_rows > 5_000
    assert one_shard.events.equals(three.events)
    assert one_shard.snapshots.equals(three.snapshots)


def test_a_short_day_has_its_golden_digest(one_shard):
    assert one_shard.events.num_rows == 55_515
    assert event_digest(one_shard.events) == SMALL_DIGEST


def test_the_digest_sees_one_changed_value_and_ignores_row_order(one_shard):
    events = one_shard.events
    assert event_digest(events.slice(0, 1000)) == event_digest(events.slice(0, 1000)[::-1])
    sizes = events["size"].to_numpy().copy()
    sizes[777] += 1
    changed = events.set_column(events.schema.get_field_index("size"), "size", pa.array(sizes))
    assert event_digest(changed) != SMALL_DIGEST
    reasons = events["reason"].to_pylist()
    reasons[events.num_rows // 2] = "halted" if reasons[events.num_rows // 2] != "halted" else None
    changed = events.set_column(
        events.schema.get_field_index("reason"), "reason", pa.array(reasons, pa.string())
    )
    assert event_digest(changed) != SMALL_DIGEST


def test_in_process_runtime_matches_ray_actors(one_shard):
    local = run_simulation(config(), local=True)
    assert local.events.equals(one_shard.events)


def test_shards_run_ahead_of_barriers_without_changing_events(one_shard):
    """With up to 3 intervals queued per shard (2 shards through Ray), progress still comes
    once per barrier, in order, a run stops exactly at ``until``, and the day is the same."""
    cfg = config(kernel={"shards": 2, "run_ahead": 3})
    sim = Simulation(cfg)
    try:
        seen: list[int] = []
        until = cfg.session.pre_open + 7 * cfg.kernel.sync_ns // 2  # mid-interval
        sim.run(until=until, on_progress=lambda t, totals: seen.append(t))
        sync = cfg.kernel.sync_ns
        assert seen == [cfg.session.pre_open + k * sync for k in (1, 2, 3)] + [until]
        assert sim.t == until
        shards = sim.progress()
        assert [p["t"] for p in shards] == [until, until]
        assert sum(p["events"] for p in shards) > 0
        sim.run(on_progress=lambda t, totals: seen.append(t))
        assert seen[-1] == cfg.session.close and seen == sorted(set(seen))
        events, snapshots = sim.collect()
    finally:
        sim.close()
    assert events.equals(one_shard.events)
    assert snapshots.equals(one_shard.snapshots)


def test_one_call_covers_several_barriers_without_changing_events(one_shard, monkeypatch):
    """When barriers are quick, one call per shard covers several (here up to 3); progress
    still comes once per barrier, in order, and the day is the same."""
    monkeypatch.setattr(kernel, "CALL_SECONDS", 1e6)  # every barrier counts as quick
    monkeypatch.setattr(kernel, "MAX_BARRIERS_PER_CALL", 3)
    cfg = config(kernel={"shards": 2})
    sim = Simulation(cfg)
    sent: list[list[int]] = []
    start = sim._start

    def recording_start(method: str, args: list[tuple] | None = None) -> list:
        if method == "run_through":
            sent.append(args[0][0])
        return start(method, args)

    monkeypatch.setattr(sim, "_start", recording_start)
    try:
        seen: list[int] = []
        sim.run(on_progress=lambda t, totals: seen.append(t))
        events, snapshots = sim.collect()
    finally:
        sim.close()
    sync = cfg.kernel.sync_ns
    begin, close = cfg.session.pre_open, cfg.session.close
    assert seen == [min(t, close) for t in range(begin + sync, close + sync, sync)]
    assert [t for barriers in sent for t in barriers] == seen
    assert max(len(barriers) for barriers in sent) == 3
    assert events.equals(one_shard.events)
    assert snapshots.equals(one_shard.snapshots)


def test_other_seed_other_events(one_shard):
    other = run_simulation(config(seed=12), local=True)
    assert not other.events.equals(one_shard.events)


def test_session_has_both_auctions_and_phases(one_shard):
    ev = one_shard.events
    cfg = config()
    for name in cfg.instrument_names:
        mine = ev.filter(pc.equal(ev["instrument"], name))
        phases = mine.filter(pc.equal(mine["event_type"], int(EventType.PHASE)))
        assert phases["reason"].to_pylist() == ["call", "continuous", "call", "closed"]
        times = phases["time_ns"].to_pylist()
        s = cfg.session
        assert times == [s.pre_open, s.open, s.closing_call, s.close]
        auctions = mine.filter(pc.equal(mine["event_type"], int(EventType.AUCTION)))
        assert auctions["time_ns"].to_pylist() == [s.open, s.close]  # both auctions traded
        # auction fills sum to the auction volume
        for t, volume in zip(
            auctions["time_ns"].to_pylist(), auctions["size"].to_pylist(), strict=True
        ):
            fills = mine.filter(
                pc.and_(
                    pc.equal(mine["time_ns"], t), pc.equal(mine["event_type"], int(EventType.TRADE))
                )
            )
            assert sum(fills["size"].to_pylist()) == volume


def test_no_trades_outside_trading_hours(one_shard):
    ev = one_shard.events
    s = config().session
    trades = ev.filter(pc.equal(ev["event_type"], int(EventType.TRADE))).to_pandas()
    continuous = (trades.time_ns > s.open) & (trades.time_ns < s.closing_call)
    at_auction = trades.time_ns.isin([s.open, s.close])
    assert (continuous | at_auction).all()


def test_snapshots_are_uncrossed_in_continuous_trading(one_shard):
    snaps = one_shard.snapshots.to_pandas()
    cont = snaps[
        (snaps.phase == int(Phase.CONTINUOUS)) & (snaps.ask_price_1 > 0) & (snaps.bid_price_1 > 0)
    ]
    assert len(cont) > 100
    assert (cont.bid_price_1 < cont.ask_price_1).all()


def run_with_outside_orders(book: str) -> tuple[pa.Table, pa.Table]:
    """The small day with four outside orders (two of them bad) a minute after the open."""
    cfg = config(kernel={"book": book})
    sim = Simulation(cfg, local=True)
    sim.run(until=cfg.session.open + 60 * 10**9)
    t = sim.t + 1_000
    batch = OrderBatch.build(
        time_ns=[t, t + 1, t + 2, t + 3, t + 4],
        instrument=[0, 0, 7, 1, 0],
        order_type=[
            int(OrderType.MARKET),
            int(OrderType.LIMIT),
            int(OrderType.LIMIT),
            int(OrderType.LIMIT),
            int(OrderType.LIMIT),
        ],
        order_id=[-1, -2, -3, -4, -5],
        side=[1, -1, 1, 1, -1],
        price=[np.nan, 1e6, 10.0, 50.01, 1e6],
        size=[100.0, 5.0, 1.0, 1.0, 0.5],
        agent_id=999_999,
    )
    sim.inject(batch)
    sim.run()
    return sim.collect()


@pytest.fixture(scope="module")
def compiled_and_python():
    return run_with_outside_orders("compiled"), run_with_outside_orders("python")


def test_compiled_and_python_books_give_identical_days(compiled_and_python):
    """The compiled book (the default) is the reference book's rules, event for event."""
    (events, snapshots), (py_events, py_snapshots) = compiled_and_python
    assert events.num_rows > 5_000
    assert events.equals(py_events)
    assert snapshots.equals(py_snapshots)


def test_outside_orders_are_processed_and_bad_ones_rejected(compiled_and_python):
    events, _ = compiled_and_python[0]
    mine = events.filter(pc.equal(events["agent_id"], 999_999)).to_pandas()
    rejects = dict(
        zip(
            mine.order_id[mine.event_type == int(EventType.REJECT)],
            mine.reason[mine.event_type == int(EventType.REJECT)],
            strict=True,
        )
    )
    assert rejects == {-3: "unknown_instrument", -4: "off_tick", -5: "fractional_size"}
    submitted = set(mine.order_id[mine.event_type == int(EventType.SUBMIT)])
    assert submitted == {-1, -2}
    fills = events.filter(pc.equal(events["contra_agent_id"], 999_999))
    assert sum(fills["size"].to_pylist()) > 0  # the market buy traded


def test_halt_refuses_orders_then_reopens_with_an_auction():
    halt = {"at": "09:10", "quote": "09:12", "trade": "09:14"}
    cfg = parse_config({**SMALL, "session": {**SMALL["session"], "halts": [halt]}})
    events = run_simulation(cfg, local=True).events.to_pandas()
    aaa = events[events.instrument == "AAA"]
    at, quote, trade = (
        cfg.session.halts[0].at,
        cfg.session.halts[0].quote,
        cfg.session.halts[0].trade,
    )
    assert aaa[aaa.event_type == int(EventType.HALT)].time_ns.tolist() == [at]
    resumes = aaa[aaa.event_type == int(EventType.RESUME)]
    assert list(zip(resumes.time_ns, resumes.reason, strict=True)) == [
        (quote, "quote"),
        (trade, "trade"),
    ]
    assert trade in aaa[aaa.event_type == int(EventType.AUCTION)].time_ns.tolist()
    during = aaa[(aaa.time_ns > at) & (aaa.time_ns < trade)]
    assert not (during.event_type == int(EventType.TRADE)).any()
    halted = during[(during.time_ns < quote) & (during.event_type == int(EventType.SUBMIT))]
    assert halted.empty  # nothing is accepted while halted
    assert (
        during[during.time_ns >= quote].event_type == int(EventType.SUBMIT)
    ).any()  # quoting resumed
    refused = during[during.event_type == int(EventType.REJECT)].reason.unique().tolist()
    assert set(refused) <= {"halted", "unknown_order"}


def test_halt_config_errors_name_the_halt():
    bad = {
        **SMALL,
        "session": {
            **SMALL["session"],
            "halts": [{"at": "09:12", "quote": "09:11", "trade": "09:13"}],
        },
    }
    with pytest.raises(
        ConfigError, match=r"session.halts.0: halt times must satisfy at < quote <= trade"
    ):
        parse_config(bad)
    outside = {
        **SMALL,
        "session": {
            **SMALL["session"],
            "halts": [{"at": "09:21", "quote": "09:22", "trade": "09:23"}],
        },
    }
    with pytest.raises(
        ConfigError, match=r"halts\[0\] \(09:21:00.000 to 09:23:00.000\) must lie inside"
    ):
        parse_config(outside)


def test_shard_executes_a_batch_for_many_trajectories_and_returns_its_events():
    from mars_ray.exchange.orders import ORDER_SCHEMA
    from mars_ray.sim.shard import ShardRuntime

    cfg = config(kernel={"shards": 1, "trajectories": 2}, agents=[])
    shard = ShardRuntime(cfg, 0)
    shard.run_until(cfg.session.open + 10**9)  # past the opening auction: continuous
    t = shard.t
    limit, market = int(OrderType.LIMIT), int(OrderType.MARKET)
    table = pa.table(
        {
            "time_ns": [t + 3, t + 1, t + 2, t + 4, t + 5],
            "trajectory_id": [0, 0, 1, 1, 0],
            "instrument": [0, 0, 2, 9, 1],
            "order_type": [market, limit, limit, limit, limit],
            "order_id": [2, 1, 1, 5, 7],
            "side": [1, -1, 1, 1, -1],
            "price": [np.nan, 100.0, 20.0, 5.0, 50.02],
            "size": [40.0, 100.0, 10.0, 1.0, 1.0],
            "agent_id": [8, 9, 9, 9, 9],
        },
        schema=ORDER_SCHEMA,
    )
    events = shard.execute(table).to_pandas()
    kinds = [EventType(e).name for e in events.event_type]
    # canonical order: trajectory 0 (AAA, BBB), then trajectory 1 ("#9" sorts before CCC)
    assert kinds == ["SUBMIT", "SUBMIT", "TRADE", "REJECT", "REJECT", "SUBMIT"]
    assert events.reason.tolist()[3] == "off_tick"  # BBB ticks are 0.05
    assert events.reason.tolist()[4] == "unknown_instrument"
    assert events.trajectory_id.tolist() == [0, 0, 0, 0, 1, 1]
    trade = events[events.event_type == int(EventType.TRADE)].iloc[0]
    assert (trade.order_id, trade.contra_order_id, trade["size"], trade.price) == (1, 2, 40, 10_000)
    recorded, _ = shard.collect()
    assert sum(t.num_rows for t in recorded) >= len(events) + 3  # phase events too
