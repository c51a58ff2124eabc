"""The LMM corpus: orders derived from LOBSTER messages, synthetic days on Ray, the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from conftest import PROJECT_ROOT, data_dir

from mars_ray.cli import cli
from mars_ray.data.lobster import (
    Messages,
    book_before_first,
    read_message_columns,
    read_orderbook,
)
from mars_ray.lmm.corpus import (
    CORPUS_SCHEMA,
    CorpusError,
    Unit,
    UnitOrders,
    corpus_table,
    derive_orders,
    load_corpus,
)
from mars_ray.lmm.dataset import inside_depths, training_touch_rate
from mars_ray.lmm.tokenizer import BEHIND, DEEP, INSIDE, MARKETABLE, N_BOOK, Kind, book_features
from mars_ray.pipelines.corpus import (
    CorpusConfig,
    build_corpus,
    load_corpus_config,
    lobster_units,
    parse_corpus_config,
    synthetic_orders,
)
from mars_ray.schema.validation import ConfigError
from mars_ray.sim.config import load_config

EXCERPT = "AAPL_2012-06-21_34200000_57600000_{}_10.csv"
SHORT_DAY = {"pre_open": "09:00", "open": "09:01", "closing_call": "09:03", "close": "09:04"}


def excerpt_paths() -> tuple[Path, Path]:
    folder = data_dir() / "lobster" / "excerpt"
    return folder / EXCERPT.format("message"), folder / EXCERPT.format("orderbook")


@pytest.fixture()
def excerpt_dir(tmp_path: Path) -> Path:
    """A LOBSTER folder holding only the excerpt (links: the data is never copied)."""
    folder = tmp_path / "lobster"
    folder.mkdir()
    for path in excerpt_paths():
        (folder / path.name).symlink_to(path)
    return folder


# ----------------------------------------------------------------------------- derivation
def count_runs(msgs: Messages) -> tuple[list[int], list[int], list[int]]:
    """Marketable orders found the slow way: (first message, resting side, total size)."""
    starts, sides, sizes = [], [], []
    prev = None
    columns = (msgs.type, msgs.time_ns, msgs.direction, msgs.size)
    for i, (typ, t, d, s) in enumerate(zip(*(c.tolist() for c in columns), strict=True)):
        key = (t, d) if typ == 4 else None
        if key is not None and key == prev:
            sizes[-1] += s
        elif key is not None:
            starts.append(i)
            sides.append(d)
            sizes.append(s)
        prev = key
    return starts, sides, sizes


def test_lobster_excerpt_orders_match_a_direct_count_of_message_types():
    message, orderbook = excerpt_paths()
    msgs, book = read_message_columns(message), read_orderbook(orderbook)
    initial = book_before_first(book, msgs)
    orders = derive_orders(msgs, book, initial, int(msgs.price[0]))
    typ, d = msgs.type, msgs.direction
    run_starts, run_sides, run_sizes = count_runs(msgs)
    assert len(run_sides) < (typ == 4).sum()  # some executions were grouped
    want = {
        Kind.BUY: ((typ == 1) & (d == 1)).sum() + run_sides.count(-1),
        Kind.SELL: ((typ == 1) & (d == -1)).sum() + run_sides.count(1),
        Kind.CANCEL_BUY: (np.isin(typ, (2, 3)) & (d == 1)).sum(),
        Kind.CANCEL_SELL: (np.isin(typ, (2, 3)) & (d == -1)).sum(),
    }
    got = np.bincount(orders.kind, minlength=4)
    assert {k: int(got[k]) for k in Kind} == {k: int(v) for k, v in want.items()}
    assert len(orders) == (typ <= 3).sum() + len(run_sides)
    marketable = orders.price_level == MARKETABLE
    assert marketable.sum() == len(run_sides)  # in this file no limit order crossed
    assert orders.size[marketable].tolist() == run_sizes
    assert orders.size.sum() == msgs.size[typ <= 4].sum()
    # gaps: time since the previous order, 0 for the first
    assert orders.gap_ns[0] == 0 and (orders.gap_ns >= 0).all()
    assert orders.gap_ns.sum() == orders.time_ns[-1] - orders.time_ns[0]
    # each order carries the book before its (first) message: row i - 1, or the initial row
    source = np.sort(np.concatenate([np.flatnonzero(typ <= 3), run_starts]))
    assert np.array_equal(orders.time_ns, msgs.time_ns[source])
    before = np.vstack([initial.reshape(1, -1), book[:-1]])[source]
    assert np.array_equal(orders.book, book_features(before, orders.time_ns))
    assert orders.book.shape == (len(orders), N_BOOK) and np.isfinite(orders.book).all()


def messages(rows: list[tuple[int, int, int, int, int, int]]) -> Messages:
    """Messages from (time, type, order id, size, price, direction) rows."""
    cols = list(zip(*rows, strict=True))
    return Messages(
        time_ns=np.array(cols[0], dtype=np.int64),
        type=np.array(cols[1], dtype=np.int8),
        order_id=np.array(cols[2], dtype=np.int64),
        size=np.array(cols[3], dtype=np.int64),
        price=np.array(cols[4], dtype=np.int64),
        direction=np.array(cols[5], dtype=np.int8),
    )


def test_marketable_grouping_and_messages_that_make_no_order():
    msgs = messages(
        [
            (10, 1, 1, 100, 99, 1),  # buy limit
            (10, 1, 2, 200, 101, -1),  # sell limit
            (20, 4, 2, 50, 101, -1),  # a buy takes 50 + 30 + 20 from the asks ...
            (20, 4, 3, 30, 101, -1),
            (20, 4, 4, 20, 102, -1),
            (20, 4, 1, 40, 99, 1),  # ... same time, other side: a sell order of its own
            (25, 5, 0, 10, 100, 1),  # hidden execution: no order
            (25, 4, 1, 10, 99, 1),  # a new run (after the hidden one)
            (30, 4, 1, 5, 99, 1),  # another time: another order
            (40, 6, -1, 500, 100, 0),  # auction cross ...
            (40, 4, 7, 300, 100, 1),  # ... and its fills: no orders
            (40, 4, 8, 300, 100, -1),
            (50, 7, -1, 0, -1, 0),  # halt: no order
            (60, 2, 2, 100, 101, -1),  # partial cancel of a sell
            (70, 3, 1, 45, 99, 1),  # delete of a buy
        ]
    )
    book = np.zeros((len(msgs), 4), dtype=np.int64)
    book[:, 0], book[:, 2] = 101, 99  # best ask 101, best bid 99 throughout
    book[:, 1], book[:, 3] = 100, 100
    orders = derive_orders(msgs, book, reference=100)
    b, s, cb, cs = (int(k) for k in Kind)
    assert orders.kind.tolist() == [b, s, b, s, s, s, cs, cb]
    assert orders.size.tolist() == [100, 200, 100, 40, 10, 5, 100, 45]
    assert orders.time_ns.tolist() == [10, 10, 20, 20, 25, 30, 60, 70]
    assert orders.gap_ns.tolist() == [0, 0, 10, 0, 5, 5, 30, 10]
    # the first buy met an empty book: 1 tick under the reference; cancels at the best
    assert orders.price_level.tolist() == [3, 2, 0, 0, 0, 0, 2, 2]
    # a window keeps the orders inside it; its first order has gap 0
    window = derive_orders(msgs, book, reference=100, window=(20, 60))
    assert window.time_ns.tolist() == [20, 20, 25, 30]
    assert window.gap_ns.tolist() == [0, 0, 5, 5]


def test_inside_orders_carry_how_far_they_improve_their_own_best():
    msgs = messages(
        [
            (10, 1, 1, 100, 103, 1),  # buy 3 ticks over the best bid 100 (ask 110)
            (20, 1, 2, 100, 108, -1),  # sell 2 under the best ask 110 (bid now 103)
            (30, 1, 3, 100, 100, 1),  # at the best bid: not inside
            (40, 1, 4, 100, 110, 1),  # marketable: not inside
        ]
    )
    book = np.array(
        [[110, 100, 103, 100], [108, 100, 103, 100], [108, 100, 103, 100], [108, 100, 103, 100]]
    )
    initial = np.array([110, 100, 100, 100])
    orders = derive_orders(msgs, book, initial, reference=105)
    assert orders.price_level.tolist()[:2] == [INSIDE, INSIDE]
    assert orders.inside_ticks.tolist() == [3, 2, 0, 0]
    # the tokenizer's depth quantiles read them against the spread before each order
    ticks, spread = inside_depths(corpus_table([(Unit("lobster", "X", "d", "train"), orders)], {}))
    assert ticks.tolist() == [3, 2] and spread.tolist() == [10, 7]


def _timed(seconds: list[float], levels: list[int]) -> UnitOrders:
    """Buys at ``levels`` at ``seconds``: what the touch-rate tests need of a unit."""
    n = len(seconds)
    time_ns = (np.asarray(seconds) * 1e9).astype(np.int64)
    return UnitOrders(
        time_ns=time_ns,
        kind=np.zeros(n, dtype=np.int8),
        price_level=np.asarray(levels, dtype=np.int8),
        size=np.full(n, 100, dtype=np.int64),
        gap_ns=np.diff(time_ns, prepend=time_ns[0]),
        book=np.zeros((n, N_BOOK), dtype=np.float32),
        inside_ticks=np.zeros(n, dtype=np.int16),
    )


def test_the_training_touch_rate_pools_the_real_units_spans():
    """Orders at the touch (marketable, inside, at the best) over the real units' summed
    spans; deeper orders and the synthetic units do not count."""
    units = [
        (
            Unit("lobster", "A", "d1", "train"),
            _timed([0, 1, 2, 4], [MARKETABLE, BEHIND, BEHIND + 3, INSIDE]),
        ),
        (Unit("lobster", "B", "d1", "train"), _timed([10, 12, 16], [BEHIND + 1, BEHIND, DEEP])),
        (Unit("synthetic", "A", "seed-0", "train"), _timed([0, 0.1, 0.2], [BEHIND] * 3)),
    ]
    assert training_touch_rate(corpus_table(units, {})) == pytest.approx(4 / 10)  # 3 + 1 in 4 + 6 s
    alone = corpus_table(units[2:], {})  # no real unit: every row, as for the other tables
    assert training_touch_rate(alone) == pytest.approx(3 / 0.2)
    assert training_touch_rate(corpus_table([(units[0][0], _timed([5], [BEHIND]))], {})) is None


def test_derive_orders_checks_its_inputs():
    msgs = messages([(1, 1, 1, 100, 99, 1), (2, 3, 1, 100, 99, 1)])
    with pytest.raises(CorpusError, match="one row of 4 \\* levels columns per message"):
        derive_orders(msgs, np.zeros((1, 4)))
    with pytest.raises(CorpusError, match="initial book has 8 columns, the orderbook 4"):
        derive_orders(msgs, np.zeros((2, 4)), np.zeros(8))


# ----------------------------------------------------------------------------- units, config
def test_lobster_units_skip_the_excerpt_and_need_a_split_per_ticker():
    units = lobster_units(CorpusConfig().lobster)
    assert [(u.unit.instrument, u.unit.split) for u in units] == [
        ("AAPL", "test"),
        ("GOOG", "train"),
    ]
    assert all("excerpt" not in u.message.parts for u in units)
    with pytest.raises(CorpusError, match="no split for ticker 'GOOG'"):
        lobster_units(parse_corpus_config({"lobster": {"splits": {"AAPL": "test"}}}).lobster)
    with pytest.raises(CorpusError, match="no such folder"):
        lobster_units(parse_corpus_config({"lobster": {"dir": "/nonexistent"}}).lobster)


def test_corpus_config_errors_name_field_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"lobster\.splits\.GOOG: .*\(got 'training'\)"):
        parse_corpus_config({"lobster": {"splits": {"GOOG": "training"}}})
    with pytest.raises(
        ConfigError, match=r"synthetic\.seeds: .*greater than or equal to 1 \(got 0\)"
    ):
        parse_corpus_config({"synthetic": {"seeds": 0}})
    with pytest.raises(
        ConfigError, match=r"validation_seeds \(2\) \+ test_seeds \(1\) exceed seeds"
    ):
        parse_corpus_config({"synthetic": {"seeds": 2, "validation_seeds": 2}})
    with pytest.raises(ConfigError, match=r"synthetic\.colour: Extra inputs"):
        parse_corpus_config({"synthetic": {"colour": 1}})
    with pytest.raises(ConfigError, match="enable at least one source"):
        parse_corpus_config({"lobster": {"enabled": False}, "synthetic": {"enabled": False}})
    path = tmp_path / "corpus.yaml"
    path.write_text(yaml.safe_dump({"synthetic": {"session": {"lunch": "12:00"}}}))
    with pytest.raises(ConfigError, match=r"(?s)synthetic\.config: .*session\.lunch"):
        load_corpus_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_corpus_config(tmp_path / "missing.yaml")


def test_the_shipped_corpus_config_is_valid():
    cfg = load_corpus_config(PROJECT_ROOT / "configs" / "corpus.yaml")
    assert cfg.synthetic.seed_splits()[-2:] == [(2, "validation"), (3, "test")]
    assert cfg.lobster.splits == {"GOOG": "train", "AAPL": "test"}
    # the memory variant: synthetic days whose market orders come mostly from split parents
    memory = load_corpus_config(PROJECT_ROOT / "configs" / "corpus_memory.yaml")
    assert memory.lobster == cfg.lobster and memory.out == "corpus/memory"
    sim = load_config(PROJECT_ROOT / memory.synthetic.config)
    assert "meta_order" in {group.kind for group in sim.agents}


# ----------------------------------------------------------------------------- a tiny corpus
@pytest.fixture(scope="module")
def tiny(ray_session, tmp_path_factory):
    """Both sources: the excerpt (validation) and 2 seeds of a 3-minute day on Ray tasks."""
    root = tmp_path_factory.mktemp("tiny")
    folder = root / "lobster"
    folder.mkdir()
    for path in excerpt_paths():
        (folder / path.name).symlink_to(path)
    raw = {
        "name": "tiny",
        "lobster": {"dir": str(folder), "splits": {"AAPL": "validation"}},
        "synthetic": {
            "config": str(PROJECT_ROOT / "configs" / "bench.yaml"),
            "seeds": 2,
            "first_seed": 5,
            "validation_seeds": 0,
            "test_seeds": 1,
            "session": SHORT_DAY,
        },
    }
    cfg = parse_corpus_config(raw)
    done = []
    result = build_corpus(cfg, root / "out", progress=lambda d, t, label: done.append((d, t)))
    assert done[-1] == (3, 3)
    return cfg, result


def test_tiny_corpus_file_and_counts(tiny):
    cfg, result = tiny
    table = load_corpus(result.paths["corpus"].parent)  # a folder works too
    assert table.schema.remove_metadata().equals(CORPUS_SCHEMA)
    assert table.equals(result.table.replace_schema_metadata(table.schema.metadata))
    meta = table.schema.metadata
    assert CorpusConfig.model_validate_json(meta[b"mars_ray.corpus_config"]) == cfg
    counts = json.loads(result.paths["counts"].read_text())
    assert counts["sources"]["lobster"] == {
        "validation": {"orders": counts["sources"]["lobster"]["validation"]["orders"], "units": 1}
    }
    syn = counts["sources"]["synthetic"]
    assert syn["train"]["units"] == 4 and syn["test"]["units"] == 4  # 4 instruments per seed
    assert counts["orders"] == table.num_rows > 0
    assert sum(v["orders"] for v in counts["splits"].values()) == table.num_rows
    # one sequence per unit, in order; each unit's first order has gap 0
    seq = table["sequence"].to_numpy()
    assert (np.diff(seq) >= 0).all() and sorted(set(seq.tolist())) == list(range(9))
    first = np.r_[0, np.flatnonzero(np.diff(seq)) + 1]
    assert (table["gap_ns"].to_numpy()[first] == 0).all()
    days = set(zip(table["source"].to_pylist(), table["day"].to_pylist(), strict=True))
    assert days == {("lobster", "2012-06-21"), ("synthetic", "seed-5"), ("synthetic", "seed-6")}


def test_tiny_corpus_has_no_split_leakage(tiny):
    table = tiny[1].table
    units = table.group_by(["sequence", "source", "day", "instrument", "split"]).aggregate([])
    assert units.num_rows == len(set(table["sequence"].to_pylist())) == 9
    keys = set(zip(*(units[c].to_pylist() for c in ("source", "day", "instrument")), strict=True))
    assert len(keys) == units.num_rows  # no (source, day, instrument) in two splits
    by_split = {
        s: set(units.filter(pc.equal(units["split"], s))["day"].to_pylist())
        for s in ("train", "validation", "test")
    }
    assert by_split == {"train": {"seed-5"}, "validation": {"2012-06-21"}, "test": {"seed-6"}}


def test_tiny_corpus_synthetic_days_are_the_continuous_session(tiny):
    cfg, result = tiny
    table = result.table.filter(pc.equal(result.table["source"], "synthetic"))
    sim = cfg.synthetic.sim_config()
    t = table["time_ns"].to_numpy()
    assert (t >= sim.session.open).all() and (t < sim.session.closing_call).all()
    assert set(table["instrument"].to_pylist()) == set(sim.instrument_names)
    assert set(table["kind"].to_numpy().tolist()) == {0, 1, 2, 3}


def test_a_ray_task_gives_what_an_in_process_run_gives(tiny):
    cfg, result = tiny
    local = dict(synthetic_orders(cfg.synthetic.sim_config(), 6))
    table = result.table
    mine = table.filter(
        pc.and_(pc.equal(table["day"], "seed-6"), pc.equal(table["instrument"], "BETA"))
    )
    orders = local["BETA"]
    assert mine["size"].to_numpy().tolist() == orders.size.tolist()
    assert mine["price_level"].to_numpy().tolist() == orders.price_level.tolist()
    book = mine["book"].combine_chunks().flatten().to_numpy().reshape(-1, N_BOOK)
    assert np.array_equal(book, orders.book)


def test_build_corpus_command_prints_the_counts(tmp_path, excerpt_dir):
    config = tmp_path / "corpus.yaml"
    raw = {
        "name": "cli",
        "lobster": {"dir": str(excerpt_dir), "splits": {"AAPL": "train"}},
        "synthetic": {"enabled": False},
    }
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["data", "build-corpus", str(config), "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    n = load_corpus(out / "corpus.parquet").num_rows
    line = next(x for x in result.output.splitlines() if x.startswith("lobster"))
    assert line.split() == ["lobster", "train", "1", f"{n:,}"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"synthetic": {"seeds": -1}}))
    result = CliRunner().invoke(cli, ["data", "build-corpus", str(bad)])
    assert (
        result.exit_code != 0 and "synthetic.seeds" in result.output and "(got -1)" in result.output
    )


# ----------------------------------------------------------------------------- load_corpus errors
@pytest.fixture()
def small_table(tiny) -> pa.Table:
    return tiny[1].table.slice(0, 50)


def write(tmp_path: Path, table: pa.Table) -> Path:
    path = tmp_path / "corpus.parquet"
    pq.write_table(table, path)
    return path


def test_load_corpus_names_missing_and_mistyped_columns(tmp_path, small_table):
    with pytest.raises(CorpusError, match="missing column\\(s\\) \\['gap_ns'\\]"):
        load_corpus(write(tmp_path, small_table.drop_columns(["gap_ns"])))
    i = small_table.schema.get_field_index("kind")
    wide = small_table.set_column(i, "kind", pc.cast(small_table["kind"], pa.int64()))
    with pytest.raises(CorpusError, match="column 'kind' has type int64, expected int8"):
        load_corpus(write(tmp_path, wide))
    with pytest.raises(CorpusError, match="corpus not found"):
        load_corpus(tmp_path / "nowhere")


def replace(table: pa.Table, name: str, row: int, value: object) -> pa.Table:
    values = table[name].to_pylist()
    values[row] = value
    field = CORPUS_SCHEMA.field(name)
    return table.set_column(table.schema.get_field_index(name), field, pa.array(values, field.type))


@pytest.mark.parametrize(
    ("name", "row", "value", "message"),
    [
        ("size", 7, -5, "row 7: size -5 \\(must be a positive number of shares; 1 row\\)"),
        ("gap_ns", 3, -1, "row 3: gap_ns -1 \\(must not be negative"),
        ("kind", 4, 4, "row 4: kind 4 \\(must be in 0..3"),
        ("price_level", 9, 24, "row 9: price_level 24 \\(must be in 0..23"),
        ("price_level", 2, -1, "row 2: price_level -1"),
        ("split", 5, "dev", "row 5: split 'dev' \\(must be one of"),
        ("book", 11, [0.0] * 5 + [float("nan")] + [0.0] * 18, "row 11: book\\[5\\] nan"),
    ],
)
def test_load_corpus_reports_bad_rows_with_index_and_value(
    tmp_path, small_table, name, row, value, message
):
    with pytest.raises(CorpusError, match=message):
        load_corpus(write(tmp_path, replace(small_table, name, row, value)))


def test_load_corpus_refuses_inside_ticks_off_level_inside(tmp_path, small_table):
    row = int(np.flatnonzero(small_table["price_level"].to_numpy() != INSIDE)[0])
    with pytest.raises(CorpusError, match=f"row {row}: inside_ticks 4 \\(must be 0 off level"):
        load_corpus(write(tmp_path, replace(small_table, "inside_ticks", row, 4)))
    with pytest.raises(CorpusError, match="row 2: inside_ticks -1 \\(must not be negative"):
        load_corpus(write(tmp_path, replace(small_table, "inside_ticks", 2, -1)))


def test_load_corpus_reports_a_unit_in_two_splits(tmp_path, small_table):
    leaked = replace(small_table, "split", 10, "test")
    with pytest.raises(CorpusError, match="sequence 0 is in more than one split"):
        load_corpus(write(tmp_path, leaked))
