"""LOBSTER reader, writer, replay and check on small synthetic files (exact values).

The real files are exercised in test_lobster_golden.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import write_lines

from mars_ray.cli import cli
from mars_ray.data.lobster import (
    EMPTY_ASK,
    EMPTY_BID,
    LobsterFormatError,
    book_before_first,
    parse_name,
    read_message_columns,
    read_messages,
    read_orderbook,
)
from mars_ray.data.lobster_check import (
    ALL_LEVELS_FLOOR,
    LEVEL1_FLOOR,
    CheckResult,
    check,
    check_files,
)
from mars_ray.data.lobster_replay import LobsterReplay, replay_orderbook
from mars_ray.data.lobster_write import (
    MAX_FILE_ORDER_ID,
    events_to_messages,
    write_lobster,
    write_orderbook_file,
)
from mars_ray.exchange.book import OrderBook
from mars_ray.schema.events import (
    EVENT_SCHEMA,
    NO_ID,
    NO_PRICE,
    EventType,
    OrderType,
    rows_to_table,
)
from mars_ray.schema.phases import Phase

BUY, SELL = 1, -1
NAME = "TEST_2012-06-21_34200000_57600000_{kind}_{levels}.csv"


def pair(tmp_path: Path, messages: list[str], book: list[str], levels: int) -> tuple[Path, Path]:
    msg = write_lines(tmp_path / NAME.format(kind="message", levels=levels), messages)
    ob = write_lines(tmp_path / NAME.format(kind="orderbook", levels=levels), book)
    return msg, ob


# ---------------------------------------------------------------------- reader
ALL_TYPES = [
    "34200.1,1,11,100,1000100,-1",  # submit sell 100 @ 100.01
    "34200.2,2,11,30,1000100,-1",  # partial cancel
    "34200.3,3,11,70,1000100,-1",  # delete
    "34200.4,4,12,5,999900,1",  # execution of a resting buy
    "34200.5,5,0,7,1000000,1",  # hidden execution on the grid
    "34200.6,6,-1,500,1000000,-1",  # cross trade
    "34200.7,7,0,0,-1,-1",  # halt
    "34200.8,7,0,0,0,-1",  # quote resume
    "34200.9,7,0,0,1,-1",  # trade resume
    "34201,5,0,3,999950,-1",  # hidden execution at the midpoint (half a tick)
]


def test_every_message_type_maps_to_its_event(tmp_path: Path) -> None:
    path = write_lines(tmp_path / NAME.format(kind="message", levels=1), ALL_TYPES)
    table = read_messages(path)
    assert table.schema.equals(EVENT_SCHEMA, check_metadata=True)
    rows = table.to_pylist()
    got = [
        (r["event_type"], r["order_id"], r["side"], r["price"], r["size"], r["reason"])
        for r in rows
    ]
    E = EventType
    assert got == [
        (E.SUBMIT, 11, SELL, 10001, 100, None),
        (E.CANCEL, 11, SELL, 10001, 30, None),
        (E.CANCEL, 11, SELL, 10001, 70, "delete"),
        (E.TRADE, 12, BUY, 9999, 5, None),
        (E.HIDDEN_TRADE, 0, BUY, 10000, 7, None),
        (E.AUCTION, -1, SELL, 10000, 500, None),
        (E.HALT, 0, SELL, NO_PRICE, 0, None),
        (E.RESUME, 0, SELL, NO_PRICE, 0, "quote"),
        (E.RESUME, 0, SELL, NO_PRICE, 0, "trade"),
        (E.HIDDEN_TRADE, 0, SELL, 9999, 3, "subtick:50"),
    ]
    assert [r["seq"] for r in rows] == list(range(len(ALL_TYPES)))
    assert {r["instrument"] for r in rows} == {"TEST"}
    assert {r["trajectory_id"] for r in rows} == {0}
    assert {(r["agent_id"], r["contra_order_id"], r["contra_agent_id"]) for r in rows} == {
        (NO_ID, NO_ID, NO_ID)
    }
    assert [r["time_ns"] for r in rows][-2:] == [34200_900_000_000, 34201_000_000_000]


def test_times_are_parsed_exactly_from_the_decimal_string(tmp_path: Path) -> None:
    times = [
        "34200.05990197",
        "34200.000000001",
        "57599.999999999",
        "34200",
        "36000.1",
        "45296.123456789",
    ]
    want = [
        34200_059_901_970,
        34200_000_000_001,
        57599_999_999_999,
        34200_000_000_000,
        36000_100_000_000,
        45296_123_456_789,
    ]
    # Truncating a float product gets 34200.000000001 wrong; the reader must not.
    assert [int(float(t) * 1e9) for t in times] != want
    path = write_lines(
        tmp_path / "m.csv", [f"{t},1,{i + 1},1,1000000,1" for i, t in enumerate(times)]
    )
    assert read_message_columns(path).time_ns.tolist() == want
    assert read_message_columns(path).time_ns.dtype == np.int64


def test_gzip_and_plain_read_the_same(tmp_path: Path) -> None:
    plain = write_lines(tmp_path / NAME.format(kind="message", levels=1), ALL_TYPES)
    gz = write_lines(tmp_path / (plain.name + ".gz"), ALL_TYPES)
    assert read_messages(gz).equals(read_messages(plain))


def test_instrument_comes_from_the_name_or_the_argument(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "flow.csv", ALL_TYPES[:1])
    with pytest.raises(ValueError, match="instrument"):
        read_messages(path)
    table = read_messages(path, instrument="XYZ", trajectory_id=3)
    assert table.column("instrument").to_pylist() == ["XYZ"]
    assert table.column("trajectory_id").to_pylist() == [3]
    name = parse_name("GOOG_2012-06-21_34200000_57600000_orderbook_10.csv.gz")
    assert (name.ticker, name.date, name.kind, name.levels) == (
        "GOOG",
        "2012-06-21",
        "orderbook",
        10,
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("34200.2,1,2,10,1000150,1", r"line 2: price '1000150' is not a multiple of the tick"),
        ("34200.2,1,2,10,1000100", r"line 2: row '34200.2,1,2,10,1000100' does not have 6"),
        ("34200.2,1,2,ten,1000100,1", r"line 2: size 'ten' is not an integer"),
        ("34200.2x,1,2,10,1000100,1", r"line 2: time '34200\.2x' is not a non-negative decimal"),
        ("34200.2,8,2,10,1000100,1", r"line 2: type '8' is not a message type"),
        ("34200.2,1,2,10,1000100,0", r"line 2: direction '0' must be 1 or -1"),
        ("34200.2,1,2,0,1000100,1", r"line 2: size '0' must be positive"),
        ("34200.2,1,2,10,-1000100,1", r"line 2: price '-1000100' must be positive"),
        ("34200.2,7,0,0,2,-1", r"line 2: price '2' must be -1, 0 or 1 for a halt"),
        ("", r"line 2: row '' does not have 6 comma-separated fields"),
    ],
)
def test_bad_message_lines_name_file_line_and_value(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write_lines(
        tmp_path / "bad_message.csv", ["34200.1,1,1,10,1000100,1", line, ALL_TYPES[0]]
    )
    with pytest.raises(LobsterFormatError, match=message) as info:
        read_message_columns(path)
    assert info.value.path == str(path) and info.value.line == 2
    assert "bad_message.csv" in str(info.value)


def test_missing_and_empty_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(LobsterFormatError, match="no such file"):
        read_message_columns(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(LobsterFormatError, match=r"empty\.csv"):
        read_message_columns(tmp_path / "empty.csv")


def test_orderbook_prices_become_ticks_and_empty_levels_zero(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "ob.csv",
        [
            f"1000100,5,999900,7,{EMPTY_ASK},0,999800,3",
            f"{EMPTY_ASK},0,{EMPTY_BID},0,{EMPTY_ASK},0,{EMPTY_BID},0",
        ],
    )
    book = read_orderbook(path)  # levels from the column count
    assert book.dtype == np.int64
    assert book.tolist() == [[10001, 5, 9999, 7, 0, 0, 9998, 3], [0] * 8]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1000150,5,999900,7", r"line 2: ask_price_1 '1000150' is not a multiple of the tick"),
        (f"{EMPTY_ASK},4,999900,7", r"line 2: ask_size_1 '4' must be 0 at an empty level"),
        ("1000100,0,999900,7", r"line 2: ask_size_1 '0' must be positive"),
        ("1000100,5,999900", r"line 2: row '1000100,5,999900' does not have 4 comma-separated"),
    ],
)
def test_bad_orderbook_rows_name_file_line_and_value(
    tmp_path: Path, row: str, message: str
) -> None:
    path = write_lines(tmp_path / "bad_book.csv", ["1000100,5,999900,7", row])
    with pytest.raises(LobsterFormatError, match=message):
        read_orderbook(path, levels=1)


# ---------------------------------------------------------------------- writer
def test_real_style_table_round_trips_byte_for_byte(tmp_path: Path) -> None:
    lines = [
        "34200.015105074,4,15818974,4,5794000,1",  # execution of an order from before the file
        "34200.05990197,1,20,100,5795000,-1",
        "34200.1,2,20,40,5795000,-1",
        "34200.1,5,0,10,5794550,1",
        "34200.2,3,20,60,5795000,-1",
        "34200.3,6,-1,300,5794500,1",
        "34200.4,7,0,0,-1,-1",
        "34200.5,7,0,0,0,-1",
        "34201,7,0,0,1,-1",
    ]
    src = write_lines(tmp_path / NAME.format(kind="message", levels=2), lines)
    table = read_messages(src)
    msg, ob = tmp_path / "out_message.csv", tmp_path / "out_orderbook.csv"
    _, book, stats = write_lobster(table, msg, ob, levels=2)
    assert msg.read_text() == src.read_text()
    assert read_messages(msg, instrument="TEST").equals(table)
    assert np.array_equal(read_orderbook(ob, levels=2), book)
    assert stats.skipped == {}
    # The submission rests 100 @ 579.50, 40 leave, then the rest: an empty book again.
    assert book[1].tolist() == [57950, 100, 0, 0, 0, 0, 0, 0]
    assert book[2].tolist() == [57950, 60, 0, 0, 0, 0, 0, 0]
    assert not book[4:].any()
    assert (
        ob.read_text().splitlines()[0] == f"{EMPTY_ASK},0,{EMPTY_BID},0,{EMPTY_ASK},0,{EMPTY_BID},0"
    )


def simulated_day() -> tuple[pa.Table, OrderBook]:
    """A book driven through everything LOBSTER cannot say directly."""
    book = OrderBook(Phase.CALL, reference_price=100)
    t = 34_200_000_000_000
    book.submit(t, 1, SELL, 101, 10)
    book.submit(t, 2, SELL, 100, 5)
    book.submit(t, 3, BUY, 100, 7)  # crosses: rests in the call
    book.submit(t, 4, BUY, 0, 3, order_type=int(OrderType.MARKET))  # invisible in LOBSTER
    book.uncross(t + 1)  # auction at 100: both sides' resting orders trade
    book.submit(t + 2, 5, BUY, 99, 4)
    book.submit(t + 3, 6, BUY, 101, 12)  # takes 10 @ 101 (and what is left at 100), rests 2
    book.submit(t + 4, 7, SELL, 98, 20, order_type=int(OrderType.IOC))  # fills, rest cancelled
    book.submit(t + 5, 8, SELL, 0, 1, order_type=int(OrderType.MARKET))  # no bids left: cancelled
    book.submit(t + 6, 9, SELL, 105, 9)
    book.submit(t + 6, 10, SELL, 106, 9)
    book.submit(t + 6, 11, BUY, 95, 9)
    book.cancel(t + 7, 9, 4)  # partial
    book.modify(t + 8, 10, 106, 6)  # size down at the same price: a partial cancel
    book.modify(t + 9, 11, 96, 9)  # a new price: delete + new submission
    book.submit(t + 10, 9, BUY, 99, 1)  # duplicate id: rejected, not written
    book.halt(t + 11)
    book.resume_quotes(t + 12)
    book.submit(t + 12, 12, BUY, 105, 3)  # crosses the 105 ask: re-opening auction
    book.resume_trading(t + 13)  # re-opening auction
    book.cancel(t + 14, 10)  # full
    book.record_hidden_trade(t + 15, 0, SELL, 104, 2)
    base, rows = book.drain_events()
    return rows_to_table(rows, "SIM", 0, base), book


def test_simulated_events_write_a_consistent_lobster_pair(tmp_path: Path) -> None:
    table, book = simulated_day()
    msg, ob = tmp_path / "SIM_message_5.csv.gz", tmp_path / "SIM_orderbook_5.csv.gz"
    msgs, written, stats = write_lobster(table, msg, ob, levels=5)
    # The LOBSTER view ends where the book ended.
    assert written[-1].tolist() == book.snapshot(5).reshape(-1).tolist()
    assert stats.skipped == {"reject": 1, "phase": 2}
    types = msgs.type.tolist()
    assert types.count(6) == 2 and types.count(5) == 1 and types.count(7) == 3
    # Orders 6 and 12 rest only what is left after trading on arrival.
    submits = {
        o: s
        for ty, o, s in zip(types, msgs.order_id.tolist(), msgs.size.tolist(), strict=True)
        if ty == 1
    }
    assert submits[6] == 2 and 7 not in submits and 8 not in submits and 4 not in submits
    assert check_files(msg, ob).summary()["all_levels_match"] == 1.0
    back = read_messages(msg, instrument="SIM")
    again, _ = events_to_messages(back)
    assert again.file_prices().tolist() == msgs.file_prices().tolist()
    assert again.type.tolist() == types
    # the crosses as LOBSTER writes them: the opening (-1), the halt's re-opening (-3)
    cross = msgs.type == 6
    assert msgs.order_id[cross].tolist() == [-1, -3] and msgs.direction[cross].tolist() == [-1, -1]
    kept = again.type == 6
    assert again.order_id[kept].tolist() == [-1, -3] and again.direction[kept].tolist() == [-1, -1]


def test_the_closing_cross_gets_lobsters_closing_id(tmp_path: Path) -> None:
    book = OrderBook(Phase.CONTINUOUS, reference_price=100)
    t = 57_000_000_000_000
    book.submit(t, 1, SELL, 101, 10)
    book.open_call(t + 1)  # the closing call
    book.submit(t + 2, 2, BUY, 101, 4)  # crosses: rests in the closing call
    book.uncross(t + 3, Phase.CLOSED)
    base, rows = book.drain_events()
    msgs, _, _ = write_lobster(
        rows_to_table(rows, "SIM", 0, base), tmp_path / "m.csv", tmp_path / "o.csv", levels=1
    )
    cross = msgs.type == 6
    assert msgs.order_id[cross].tolist() == [-2] and msgs.direction[cross].tolist() == [-1]
    assert msgs.size[cross].tolist() == [4]


def test_ids_too_large_for_32_bits_are_renumbered_in_the_file(tmp_path: Path) -> None:
    """Simulated ids carry the agent id above bit 32: written, every order keeps one id
    that a 32-bit reader holds, and the file says the same as with small ids."""
    table, _ = simulated_day()
    big = {}
    for name in ("order_id", "contra_order_id"):
        ids = table.column(name).to_numpy()
        big[name] = np.where(ids > 0, (7 << 32) | ids, ids)
    shifted = table
    for name, ids in big.items():
        shifted = shifted.set_column(
            shifted.schema.get_field_index(name), name, pa.array(ids, pa.int64())
        )
    small_msgs, small_book, _ = write_lobster(table, tmp_path / "a_m.csv", tmp_path / "a_o.csv", 5)
    msgs, book, _ = write_lobster(shifted, tmp_path / "b_m.csv", tmp_path / "b_o.csv", 5)
    assert int(msgs.order_id.max()) <= MAX_FILE_ORDER_ID
    assert np.array_equal(book, small_book)
    assert msgs.type.tolist() == small_msgs.type.tolist()
    assert msgs.size.tolist() == small_msgs.size.tolist()
    # one new id per order, numbered by first appearance, pseudo ids (<= 0) kept
    pairs = set(zip(small_msgs.order_id.tolist(), msgs.order_id.tolist(), strict=True))
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
    assert all(a == b for a, b in pairs if a <= 0)
    firsts = list(dict.fromkeys(i for i in msgs.order_id.tolist() if i > 0))
    assert firsts == list(range(1, len(firsts) + 1))
    assert check_files(tmp_path / "b_m.csv", tmp_path / "b_o.csv").summary()["level1_match"] == 1.0


def test_writer_refuses_mixed_instruments() -> None:
    a, _ = simulated_day()
    b = a.set_column(1, "instrument", pa.array(["OTHER"] * a.num_rows)).cast(EVENT_SCHEMA)
    with pytest.raises(ValueError, match="one instrument"):
        events_to_messages(pa.concat_tables([a, b]))


def test_book_before_first_undoes_message_zero(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.csv", ["34200.1,4,7,4,1000000,1", "34200.2,1,8,1,1000100,-1"])
    msgs = read_message_columns(path)
    after = np.array([[10002, 100, 10000, 496], [10003, 50, 9999, 10]])
    before = book_before_first(after.reshape(1, -1), msgs)
    assert before.tolist() == [[10002, 100, 10000, 500], [10003, 50, 9999, 10]]
    assert np.array_equal(replay_orderbook(msgs, 2, before)[0], after.reshape(-1))


# ---------------------------------------------------------------------- replay and check
# Two levels. Before the file: asks 100.10 x 50 (id 900), 100.20 x 30, 100.30 x 20 (beyond
# the file's depth), bids 99.90 x 70 (id 901), 99.80 x 40.
SCENARIO = [
    ("34200.1,1,1,10,1001000,-1", [10010, 60, 9990, 70, 10020, 30, 9980, 40]),
    ("34200.2,1,2,5,999000,1", [10010, 60, 9990, 75, 10020, 30, 9980, 40]),
    ("34200.3,4,900,50,1001000,-1", [10010, 10, 9990, 75, 10020, 30, 9980, 40]),
    # id 1 was submitted by message 0, which is not replayed: unknown, it takes the
    # anonymous rest; 100.30 comes into view from beyond the depth.
    ("34200.4,3,1,10,1001000,-1", [10020, 30, 9990, 75, 10030, 20, 9980, 40]),
    ("34200.5,2,2,3,999000,1", [10020, 30, 9990, 72, 10030, 20, 9980, 40]),
    ("34200.6,5,0,9,1001500,1", [10020, 30, 9990, 72, 10030, 20, 9980, 40]),
    # Execution of id 2, which is behind the anonymous 70: not at the head.
    ("34200.7,4,2,2,999000,1", [10020, 30, 9990, 70, 10030, 20, 9980, 40]),
    ("34200.8,4,901,70,999000,1", [10020, 30, 9980, 40, 10030, 20, 0, 0]),
]


def scenario_files(tmp_path: Path, scenario=SCENARIO) -> tuple[Path, Path]:
    def book_line(row: list[int]) -> str:
        out = []
        for k in range(0, len(row), 4):
            ap, asz, bp, bsz = row[k : k + 4]
            out += [ap * 100 if ap else EMPTY_ASK, asz, bp * 100 if bp else EMPTY_BID, bsz]
        return ",".join(map(str, out))

    return pair(tmp_path, [m for m, _ in scenario], [book_line(r) for _, r in scenario], 2)


def test_consistent_file_matches_every_row(tmp_path: Path) -> None:
    result = check_files(*scenario_files(tmp_path))
    assert result.summary() == {
        "messages": 8,
        "rows": 8,
        "level1_match": 1.0,
        "all_levels_match": 1.0,
        "queue_priority_agreement": 2 / 3,  # ids 900 and 901 at the head, id 2 not
    }
    assert result.levels_from_file == 1 and result.resyncs == 0
    assert result.unknown_id_messages == 3


def test_one_vanished_order_is_one_mismatch(tmp_path: Path) -> None:
    # 5 shares at 99.90 disappear without a message at row 4, and stay gone.
    broken = [(m, list(r)) for m, r in SCENARIO]
    for i in (4, 5, 6):
        broken[i][1][3] -= 5
    broken[7] = ("34200.8,4,901,65,999000,1", SCENARIO[7][1])
    result = check_files(*scenario_files(tmp_path, broken))
    assert result.resyncs == 1
    assert result.level1_matches == 6 and result.all_matches == 6 and result.compared == 7
    assert result.level1_match == pytest.approx(6 / 7)


def test_deep_mismatch_counts_for_all_levels_only(tmp_path: Path) -> None:
    broken = [(m, list(r)) for m, r in SCENARIO]
    broken[5][1][7] = 41  # bid 2 off by one on one row only
    result = check_files(*scenario_files(tmp_path, broken))
    assert (result.level1_matches, result.all_matches, result.resyncs) == (7, 5, 2)


def test_thresholds_apply_from_five_levels() -> None:
    good = CheckResult(
        messages=1001, rows=1001, levels=10, compared=1000, level1_matches=999, all_matches=970
    )
    assert good.failures() == []
    bad = CheckResult(
        messages=1001, rows=1001, levels=10, compared=1000, level1_matches=998, all_matches=969
    )
    assert len(bad.failures()) == 2
    assert bad.level1_match < LEVEL1_FLOOR and bad.all_levels_match < ALL_LEVELS_FLOOR
    shallow = CheckResult(messages=1001, rows=1001, levels=1, compared=1000)
    assert shallow.failures() == []


def test_row_count_mismatch_is_an_error(tmp_path: Path) -> None:
    msg, ob = scenario_files(tmp_path)
    write_lines(ob, ob.read_text().splitlines()[:-1])
    with pytest.raises(LobsterFormatError, match=r"7 rows, but the message file .* has 8"):
        check_files(msg, ob)
    with pytest.raises(ValueError, match="8 messages but 7"):
        check(read_message_columns(msg), read_orderbook(ob))


def test_replay_follows_the_file_through_a_halt(tmp_path: Path) -> None:
    lines = [
        "1,1,1,10,1000000,1",
        "2,7,0,0,-1,-1",
        "3,1,2,5,999900,-1",
        "4,7,0,0,0,-1",
        "5,7,0,0,1,-1",
        "6,4,1,10,1000000,1",
    ]
    path = write_lines(tmp_path / "halt.csv", [f"34200.{line}" for line in lines])
    chunks = []
    replay = LobsterReplay(on_events=lambda seq, records: chunks.append(records))
    replay.replay(read_message_columns(path))
    book = replay.book
    # The sell entered during the halt rests (crossed), nothing matched on its own.
    assert book.levels(SELL) == [(9999, 5)] and book.levels(BUY) == []
    kinds = [e["event_type"] for chunk in chunks for e in chunk]
    assert kinds.count(int(EventType.HALT)) == 1 and kinds.count(int(EventType.RESUME)) == 2
    assert int(EventType.REJECT) not in kinds


def test_replay_with_matching_crosses_like_an_engine(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "m.csv", ["34200.1,1,1,10,1000000,1", "34200.2,1,2,4,999900,-1"])
    msgs = read_message_columns(path)
    resting = LobsterReplay()
    resting.replay(msgs)
    assert resting.book.levels(BUY) == [(10000, 10)] and resting.book.levels(SELL) == [(9999, 4)]
    engine = LobsterReplay(match=True)
    engine.replay(msgs)
    assert engine.book.levels(BUY) == [(10000, 6)] and engine.book.levels(SELL) == []


def test_anonymous_liquidity_from_the_file_is_ahead_of_known_orders() -> None:
    replay = LobsterReplay()
    replay.book.submit(0, 5, BUY, 100, 10)
    replay.add_anonymous(0, BUY, 100, 7, front=True)
    queue = replay.book.level_queue(BUY, 100)
    assert queue[0] == (-1, 7) and queue[1] == (5, 10)
    assert replay.set_level(0, BUY, 100, 12, front=False)  # anonymous liquidity goes first
    assert replay.book.level_queue(BUY, 100) == [(-1, 2), (5, 10)]
    assert replay.set_level(0, BUY, 100, 4, front=False)  # then known orders, newest first
    assert replay.book.level_queue(BUY, 100) == [(5, 4)]
    assert not replay.set_level(0, BUY, 100, 4, front=False)
    replay.book.check_invariants()


# ---------------------------------------------------------------------- CLI
def test_cli_prints_and_writes_the_result(tmp_path: Path) -> None:
    msg, ob = scenario_files(tmp_path)
    out = tmp_path / "result.json"
    res = CliRunner().invoke(cli, ["data", "check-lobster", str(msg), str(ob), "--json", str(out)])
    assert res.exit_code == 0, res.output
    written = json.loads(out.read_text())
    assert set(written) == {
        "messages",
        "rows",
        "level1_match",
        "all_levels_match",
        "queue_priority_agreement",
        "long_decimal_times",
        "skipped_rows",
        "skipped",
    }
    assert written["rows"] == 8 and written["level1_match"] == 1.0
    assert "level 1 match" in res.output and json.dumps(written, indent=2) in res.output


@pytest.mark.parametrize("what", ["malformed", "rows", "missing"])
def test_cli_bad_input_is_a_clean_error(tmp_path: Path, what: str) -> None:
    msg, ob = scenario_files(tmp_path)
    if what == "malformed":
        lines = msg.read_text().splitlines()
        lines[2] = "34200.3,4,900,fifty,1001000,-1"
        write_lines(msg, lines)
        want = [msg.name, "line 3", "fifty"]
    elif what == "rows":
        write_lines(ob, ob.read_text().splitlines()[:5])
        want = [ob.name, "5 rows", "has 8"]
    else:
        ob.unlink()
        want = [ob.name, "does not exist"]
    res = CliRunner().invoke(cli, ["data", "check-lobster", str(msg), str(ob)])
    assert res.exit_code != 0
    assert "Traceback" not in res.output and not isinstance(res.exception, LobsterFormatError)
    for fragment in want:
        assert fragment in res.output


def test_cli_fails_a_corrupted_ten_level_file(tmp_path: Path) -> None:
    msg, _ = scenario_files(tmp_path)
    msgs = read_message_columns(msg)
    # The scenario seen ten levels deep (the floors apply): built by replaying it from
    # the book before message 0, so it is consistent; then two sizes are altered.
    before = np.zeros((10, 4), dtype=np.int64)
    before[:3, 0:2] = [[10010, 50], [10020, 30], [10030, 20]]
    before[:2, 2:4] = [[9990, 70], [9980, 40]]
    book = replay_orderbook(msgs, 10, before)
    msg10 = tmp_path / NAME.format(kind="message", levels=10)
    ob10 = tmp_path / NAME.format(kind="orderbook", levels=10)
    msg10.write_text(msg.read_text())
    write_orderbook_file(book, ob10)
    args = ["data", "check-lobster", str(msg10), str(ob10)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    book[3, 3] += 1
    book[6, 1] += 1
    write_orderbook_file(book, ob10)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1
    assert "check failed" in res.output and "level1_match" in res.output
    assert "all_levels_match" in res.output
