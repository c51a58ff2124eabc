"""The compiled LOBSTER replay equals the reference replay after every message.

``mars_ray.data.lobster_replay`` replays through the simulation's compiled book;
``lobster_reference.ReferenceReplay`` is the same rules in Python on ``OrderBook``
(the definition). Each test replays the same messages through both and compares
every per-message snapshot with ``np.array_equal``, and every event either
recorded (seeding included), on every real LOBSTER file and on synthetic
sequences built to hit each message type and rule (unknown ids, excess cancels,
anonymous liquidity, halts, levels that empty, deep books, a book that outgrows
the initial arrays). A snapshot shows only each level's total, so every test also
compares every queue order by order (``CompiledOrderBook.queues``, which checks
the compiled book's own invariants too) at a few points of the sequence. A
deliberately broken engine shows that the harness catches what it should.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import data_dir
from lobster_reference import ReferenceReplay, reference_orderbook

from mars_ray.data import lobster_replay
from mars_ray.data.lobster import (
    Messages,
    book_before_first,
    find_pairs,
    read_message_columns,
    read_orderbook,
)
from mars_ray.data.lobster_replay import LobsterReplay, replay_orderbook
from mars_ray.exchange.book import MARKET_BUY_PRICE, MARKET_SELL_PRICE
from mars_ray.schema.events import EVENT_RECORD, EventType, concat_records, rows_to_records

BUY, SELL = 1, -1
ADD, CUT, DELETE, EXECUTE, HIDDEN, CROSS, HALT = 1, 2, 3, 4, 5, 6, 7
DEEP = 400  # snapshot depth that shows every level of the synthetic books

GOOG = "GOOG_2012-06-21_34200000_57600000_message_10.csv.gz"
AAPL_1 = "AAPL_2012-06-21_34200000_57600000_message_1.csv.gz"
EXCERPT = "excerpt/AAPL_2012-06-21_34200000_57600000_message_10.csv"
REAL_FILES = {GOOG: 10, AAPL_1: 1, EXCERPT: 10}  # file -> its orderbook levels


def messages(rows: list[tuple[int, int, int, int, int]]) -> Messages:
    """Messages from (type, order id, size, price in ticks, direction) rows, 1 ns apart."""
    cols = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return Messages(
        time_ns=np.arange(len(cols), dtype=np.int64),
        type=cols[:, 0].astype(np.int8),
        order_id=cols[:, 1],
        size=cols[:, 2],
        price=cols[:, 3],
        direction=cols[:, 4].astype(np.int8),
    )


def head(msgs: Messages, n: int) -> Messages:
    """The first ``n`` messages."""
    return Messages(
        time_ns=msgs.time_ns[:n],
        type=msgs.type[:n],
        order_id=msgs.order_id[:n],
        size=msgs.size[:n],
        price=msgs.price[:n],
        direction=msgs.direction[:n],
    )


class Collected:
    """``on_events`` that keeps every chunk and checks they come in ``seq`` order."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.next_seq = 0

    def __call__(self, seq: int, records: np.ndarray) -> None:
        assert seq == self.next_seq and len(records) > 0
        self.next_seq += len(records)
        self.chunks.append(records)

    def records(self) -> np.ndarray:
        return concat_records(self.chunks) if self.chunks else np.empty(0, EVENT_RECORD)


Engine = Callable[..., LobsterReplay]


def compiled(
    msgs: Messages, levels: int, initial=None, match: bool = False, engine: Engine = LobsterReplay
) -> tuple[np.ndarray, np.ndarray]:
    """The compiled replay's snapshots (as ``replay_orderbook`` makes them) and events."""
    events = Collected()
    replay = engine(match=match, on_events=events)
    if initial is not None:
        replay.seed(initial, int(msgs.time_ns[0]) if len(msgs) else 0)
    out = np.zeros((len(msgs), 4 * levels), dtype=np.int64)
    replay.replay(msgs, out=out)
    return out, events.records()


def assert_identical(
    msgs: Messages,
    levels: int,
    initial=None,
    match: bool = False,
    checkpoints: int = 4,
    engine: Engine = LobsterReplay,
) -> np.ndarray:
    """Compare every message's snapshot and every event (on a difference, name the first
    message or event that differs), then every queue, order by order, at a few points and
    at the end."""
    want, want_events = reference_orderbook(msgs, levels, initial, match)
    got, got_events = compiled(msgs, levels, initial, match, engine)
    assert got.shape == want.shape and got.dtype == want.dtype
    if not np.array_equal(got, want):
        i = int(np.flatnonzero((got != want).any(axis=1))[0])
        row = (msgs.type[i], msgs.order_id[i], msgs.size[i], msgs.price[i], msgs.direction[i])
        raise AssertionError(
            f"message {i} {tuple(int(v) for v in row)}: compiled "
            f"{got[i].reshape(-1, 4).tolist()} != reference {want[i].reshape(-1, 4).tolist()}"
        )
    assert_same_events(got_events, rows_to_records(want_events))
    if not match:
        assert np.array_equal(replay_orderbook(msgs, levels, initial), got)
    assert_same_queues(msgs, initial, match, checkpoints, engine)
    return got


def assert_same_events(got: np.ndarray, want: np.ndarray) -> None:
    flat_got, flat_want = got.view(np.int64).reshape(-1, 10), want.view(np.int64).reshape(-1, 10)
    if flat_got.shape == flat_want.shape and np.array_equal(flat_got, flat_want):
        return
    n = min(len(flat_got), len(flat_want))
    differs = np.flatnonzero((flat_got[:n] != flat_want[:n]).any(axis=1))
    i = int(differs[0]) if len(differs) else n
    raise AssertionError(
        f"{len(got)} events, reference {len(want)}; first difference at event {i}: "
        f"{flat_got[i].tolist() if i < len(got) else None} != "
        f"{flat_want[i].tolist() if i < len(want) else None}"
    )


def assert_same_queues(
    msgs: Messages, initial, match: bool, checkpoints: int, engine: Engine = LobsterReplay
) -> None:
    """Every level's queue (ids, sizes, order) equals the reference's after
    ``checkpoints`` evenly spaced prefixes of ``msgs`` and after all of them."""
    reference, replay = ReferenceReplay(match=match), engine(match=match)
    if initial is not None:
        reference.seed(initial, 0)
        replay.seed(initial, 0)
    book = reference.book
    done = 0
    for stop in sorted({len(msgs) * k // checkpoints for k in range(1, checkpoints + 1)}):
        reference.replay(msgs, done, stop)
        replay.replay(msgs, done, stop)
        done = stop
        want = [
            (side, price, book.level_queue(side, price))
            for side in (BUY, SELL)
            for price, _ in book.levels(side)
        ]
        hidden = {BUY: MARKET_BUY_PRICE, SELL: MARKET_SELL_PRICE}  # levels() skips them
        got = [q for q in replay.book.queues() if q[1] != hidden[q[0]]]
        assert got == want, f"queues differ after message {stop - 1}"


# ---------------------------------------------------------------------- real files
def test_every_real_file_is_covered() -> None:
    root = data_dir() / "lobster"
    found = {str(m.relative_to(root)) for m, _ in find_pairs(root)}
    assert found == set(REAL_FILES), "a LOBSTER pair without an identity test (or one missing)"


@pytest.mark.parametrize(
    ("name", "seeded", "match"),
    [(name, True, False) for name in REAL_FILES]  # exactly replay_orderbook's use
    + [(name, True, True) for name in REAL_FILES]  # the benchmark's engine mode
    + [(name, False, False) for name in REAL_FILES],  # no seed: every pre-open id unknown
)
def test_real_file_identical_after_every_message(name: str, seeded: bool, match: bool) -> None:
    path = data_dir() / "lobster" / name
    msgs = read_message_columns(path)
    book = read_orderbook(str(path).replace("_message_", "_orderbook_"))
    initial = book_before_first(book, msgs) if seeded else None
    assert_identical(msgs, REAL_FILES[name], initial, match)


def test_real_file_identical_deeper_than_the_file_shows() -> None:
    """Levels 11..40 of GOOG exist only in the replay; they must agree too."""
    msgs = read_message_columns(data_dir() / "lobster" / GOOG)
    assert_identical(head(msgs, 40_000), 40)


# ---------------------------------------------------------------------- each rule
def seed_row(asks: list[tuple[int, int]], bids: list[tuple[int, int]], levels: int) -> np.ndarray:
    row = np.zeros((levels, 4), dtype=np.int64)
    for k, (p, s) in enumerate(asks):
        row[k, 0:2] = p, s
    for k, (p, s) in enumerate(bids):
        row[k, 2:4] = p, s
    return row


SEED = seed_row([(101, 50), (102, 30), (103, 20)], [(99, 70), (98, 40), (97, 10)], 3)


@pytest.mark.parametrize("match", [False, True])
def test_adds_cuts_deletes_and_executions(match: bool) -> None:
    msgs = messages(
        [
            (ADD, 1, 10, 100, BUY),  # a new best bid
            (ADD, 2, 5, 100, BUY),  # behind it
            (ADD, 3, 7, 104, SELL),  # a new level behind the asks
            (CUT, 1, 4, 100, BUY),  # partial cancel keeps its place
            (EXECUTE, 1, 6, 100, BUY),  # executes the rest: gone
            (EXECUTE, 2, 2, 100, BUY),  # partial execution
            (DELETE, 2, 3, 100, BUY),  # the level empties, 99 is best again
            (DELETE, 3, 7, 104, SELL),
            (HIDDEN, 0, 9, 100, BUY),  # nothing visible changes
            (CROSS, 0, 100, 100, BUY),
            (CUT, 4, 1, 100, BUY),  # unknown id at a price with no level: nothing to take
        ]
    )
    got = assert_identical(msgs, 5, SEED, match)
    assert got[0].reshape(5, 4)[0].tolist() == [101, 50, 100, 10]
    assert got[6].reshape(5, 4)[0].tolist() == [101, 50, 99, 70]


@pytest.mark.parametrize("match", [False, True])
def test_unknown_ids_take_anonymous_liquidity_first(match: bool) -> None:
    msgs = messages(
        [
            (ADD, 1, 10, 99, BUY),  # known order behind the seeded (anonymous) 70
            (ADD, 2, 10, 99, BUY),
            (EXECUTE, 900, 60, 99, BUY),  # unknown: 60 of the anonymous 70
            (DELETE, 901, 15, 99, BUY),  # 10 anonymous (gone), then 5 of order 1 (head)
            (CUT, 1, 5, 99, BUY),  # order 1 is down to 5: cancelled entirely
            (EXECUTE, 902, 100, 99, BUY),  # more than the level holds: the level empties
            (DELETE, 903, 5, 101, SELL),  # unknown at the best ask
            (EXECUTE, 904, 5, 555, SELL),  # unknown at a price with no level
        ]
    )
    got = assert_identical(msgs, 4, SEED, match)
    assert got[3].reshape(4, 4)[0, 2:].tolist() == [99, 15]
    assert got[5].reshape(4, 4)[0, 2:].tolist() == [98, 40]


@pytest.mark.parametrize("match", [False, True])
def test_excess_sizes_are_taken_from_the_level(match: bool) -> None:
    msgs = messages(
        [
            (ADD, 1, 10, 102, SELL),  # behind the anonymous 30
            (ADD, 2, 8, 102, SELL),
            (ADD, 3, 6, 102, SELL),
            (CUT, 2, 12, 102, SELL),  # 8 + 4 more: from the anonymous order first
            (DELETE, 3, 40, 102, SELL),  # 6 + 34: the anonymous 26, then known, head first
            (EXECUTE, 1, 5, 102, SELL),
            (ADD, 4, 5, 98, BUY),
            (EXECUTE, 4, 50, 98, BUY),  # 5 + 45 > the level's 40: it empties
            (CUT, 5, 10, 97, BUY),  # unknown: the last level's 10, all of it
        ]
    )
    assert_identical(msgs, 3, SEED, match)


@pytest.mark.parametrize("match", [False, True])
def test_duplicate_ids_and_ids_that_collide_with_anonymous_ones(match: bool) -> None:
    msgs = messages(
        [
            (ADD, 7, 10, 100, BUY),
            (ADD, 7, 99, 100, BUY),  # a known id again: rejected, no change
            (ADD, -1, 5, 100, BUY),  # the seed's anonymous id: rejected too
            (ADD, -50, 5, 100, BUY),  # a negative id of its own counts as anonymous
            (EXECUTE, 800, 12, 100, BUY),  # unknown: -50 first (5), then 7 (7 of 10)
            (CUT, -2, 10, 99, BUY),  # the seed's bid at 99 by its anonymous id
            (DELETE, -3, 1, 102, SELL),
            (DELETE, 7, 3, 100, BUY),
        ]
    )
    assert_identical(msgs, 3, SEED, match)


def test_halts_rest_crossing_orders_and_a_trading_resume_matches_again() -> None:
    msgs = messages(
        [
            (ADD, 1, 10, 101, BUY),  # crosses the best ask: trades 10 of the seed's 50
            (HALT, 0, 0, -1, 0),
            (ADD, 2, 60, 101, BUY),  # during the halt: rests crossed
            (ADD, 3, 5, 98, SELL),  # rests crossed
            (HALT, 0, 0, 0, 0),  # quote resume: still no matching
            (ADD, 4, 5, 97, SELL),
            (HALT, 0, 0, 1, 0),  # trading resumes; the crossed book stays as it is
            (ADD, 5, 200, 99, SELL),  # and this one matches: best bids first, FIFO
            (ADD, 6, 500, 103, BUY),  # sweeps the asks
            (HALT, 0, 0, 5, 0),  # an unknown code is a trading resume too
            (ADD, 7, 1, 1, SELL),
        ]
    )
    for match in (False, True):
        got = assert_identical(msgs, 4, SEED, match)
        assert got[0].reshape(4, 4)[0, :2].tolist() == ([101, 50] if not match else [101, 40])


@pytest.mark.parametrize("match", [False, True])
def test_levels_emptying_bring_deeper_ones_into_view(match: bool) -> None:
    rows = [(ADD, 100 + k, 1 + k, 90 - k, BUY) for k in range(30)]
    rows += [(ADD, 200 + k, 1 + k, 110 + k, SELL) for k in range(30)]
    rows += [(DELETE, 100 + k, 1 + k, 90 - k, BUY) for k in range(0, 30, 2)]
    rows += [(EXECUTE, 200 + k, 1 + k, 110 + k, SELL) for k in range(29, -1, -3)]
    rows += [(DELETE, 200 + k, 1 + k, 110 + k, SELL) for k in range(30)]
    msgs = messages(rows)
    for levels in (1, 3, 10, DEEP):
        assert_identical(msgs, levels, None, match)


@pytest.mark.parametrize("match", [False, True])
def test_a_book_that_outgrows_its_arrays(match: bool) -> None:
    """Thousands of live orders over hundreds of levels: the arrays double several times."""
    rng = np.random.default_rng(11)
    n = 6000
    prices = rng.integers(1, 700, size=n)
    sides = np.where(prices < 350, BUY, SELL)
    rows = [(ADD, 10 + k, 1 + k % 9, int(prices[k]), int(sides[k])) for k in range(n)]
    order = rng.permutation(n)
    rows += [(DELETE, 10 + int(k), 1 + int(k) % 9, int(prices[k]), int(sides[k])) for k in order]
    msgs = messages(rows)
    assert_identical(msgs, 12, None, match)
    assert_identical(head(msgs, n + 3000), DEEP, None, match)


def test_odd_values_follow_the_reference_arithmetic() -> None:
    """Values the reader refuses but Messages can hold: zero sizes, a sell at the
    market-sell sentinel price 0 (hidden from snapshots), cuts of size 0."""
    msgs = messages(
        [
            (ADD, 1, 0, 100, BUY),  # a zero-size order makes a level of depth 0
            (ADD, 2, 5, 0, SELL),  # rests at price 0: not shown
            (ADD, 3, 4, 105, SELL),
            (CUT, 3, 0, 105, SELL),  # a cut of 0 cancels all of it
            (EXECUTE, 1, 0, 100, BUY),  # fills min(0, 0): the order goes
            (ADD, 4, 3, 100, BUY),
            (EXECUTE, 4, 0, 100, BUY),  # a fill of 0 leaves it
            (ADD, 5, 0, 100, BUY),
            (DELETE, 9, 2, 100, BUY),  # unknown: the zero-size order goes on the way
            (ADD, 6, 2, 50, BUY),
            (0, 0, 0, 0, 0),  # not a LOBSTER type: ignored
            (9, 0, 0, 0, 0),
        ]
    )
    for match in (False, True):
        assert_identical(msgs, 3, None, match)
        assert_identical(msgs, 3, SEED, match)


def test_a_direction_the_book_cannot_file_is_refused() -> None:
    for row in [(ADD, 1, 5, 100, 0), (CUT, 1, 5, 100, 2), (EXECUTE, 4, 1, 100, 0)]:
        with pytest.raises(ValueError, match=r"must be 1 \(buy\) or -1 \(sell\)"):
            replay_orderbook(messages([row]), 1)
    # where the direction is not used (a known id, a hidden trade) any value is accepted
    ok = messages([(ADD, 1, 5, 100, BUY), (CUT, 1, 2, 100, 0), (HIDDEN, 1, 1, 100, 0)])
    assert_identical(ok, 1)


def test_empty_inputs() -> None:
    empty = messages([])
    assert replay_orderbook(empty, 2, SEED).shape == (0, 8)
    assert LobsterReplay().replay(empty) == 0
    assert_identical(empty, 2, SEED)
    assert_identical(messages([(HIDDEN, 1, 1, 100, BUY)]), 0, SEED)


# ---------------------------------------------------------------------- random sequences
def random_messages(rng: np.random.Generator, n: int, seeded: list[int]) -> Messages:
    """A mix of every message type around a moving price, with the edge cases mixed in:
    known, gone, never-seen and anonymous ids; sizes below, at and above what rests;
    crossing prices; halts; far-away levels."""
    rows: list[tuple[int, int, int, int, int]] = []
    live: dict[int, tuple[int, int]] = {}  # id -> (price, side) as submitted
    gone: list[int] = []
    mid, next_id = 100, 1
    for _ in range(n):
        mid = int(np.clip(mid + rng.integers(-1, 2), 80, 120))
        r = rng.random()
        side = BUY if rng.random() < 0.5 else SELL
        if r < 0.42 or not live:
            offset = int(rng.integers(-4, 12))
            price = mid - offset if side == BUY else mid + offset
            if rng.random() < 0.03:
                price = int(rng.integers(1, 400))  # deep or far through the book
            size = int(rng.integers(0, 30)) if rng.random() < 0.98 else 0
            if rng.random() < 0.97:
                oid, next_id = next_id, next_id + 1
            else:  # an id already in use: a duplicate, the seed's, or a negative one
                oid = int(rng.choice([*live, *seeded, -77]))
            rows.append((ADD, oid, size, price, side))
            live.setdefault(oid, (price, side))
            continue
        typ = int(rng.choice([CUT, DELETE, EXECUTE, HIDDEN, CROSS, HALT], p=P_TYPES))
        if typ == HALT:
            rows.append((HALT, 0, 0, int(rng.choice([-1, 0, 1, 1])), 0))
            continue
        pick = rng.random()
        if pick < 0.7:
            oid = int(rng.choice(list(live)))
            price, side = live[oid]
        elif pick < 0.8 and gone:
            oid = int(rng.choice(gone))  # an id that has left the book: now unknown
            price = mid + int(rng.integers(-5, 6))
        elif pick < 0.9 and seeded:
            oid = int(rng.choice(seeded))  # the seed's anonymous orders, by id
            price = mid + int(rng.integers(-5, 6))
        else:
            oid = 10**9 + next_id  # never seen: consumes anonymous liquidity
            next_id += 1
            price = mid + int(rng.integers(-5, 6))
        size = int(rng.integers(1, 60))
        direction = side if rng.random() < 0.9 else -side  # known ids ignore it
        rows.append((typ, oid, size, price, direction))
        if typ in (DELETE, EXECUTE) and oid in live and rng.random() < 0.6:
            gone.append(oid)
            del live[oid]
    return messages(rows)


P_TYPES = [0.15, 0.45, 0.25, 0.06, 0.03, 0.06]


@pytest.mark.parametrize("seed", range(12))
def test_random_sequences_identical_at_every_depth(seed: int) -> None:
    rng = np.random.default_rng(seed)
    levels = int(rng.integers(1, 15))
    initial = None
    seeded: list[int] = []
    if seed % 3:
        # prices may repeat: two anonymous orders at one level
        asks = [
            (101 + k + int(rng.integers(0, 2)), int(rng.integers(1, 90))) for k in range(levels)
        ]
        bids = [(99 - k - int(rng.integers(0, 2)), int(rng.integers(1, 90))) for k in range(levels)]
        initial = seed_row(asks, bids, levels)
        seeded = list(range(-1, -2 * levels - 1, -1))
    msgs = random_messages(rng, 3000, seeded)
    for match in (False, True):
        assert_identical(msgs, DEEP, initial, match)  # the whole book
        assert_identical(msgs, levels, initial, match)  # top-N truncation


# ---------------------------------------------------------------------- events in chunks
def test_events_come_in_bounded_chunks_on_a_full_day() -> None:
    """A day's events reach ``on_events`` in order, a chunk at a time, none bigger than the
    replay's bound; the buffer the book keeps stays that size however long the day."""
    path = data_dir() / "lobster" / GOOG
    msgs = read_message_columns(path)
    events = Collected()
    replay = LobsterReplay(on_events=events)
    replay.replay(msgs)
    capacity = replay.book.arrays[0].shape[0]
    bound = lobster_replay.EVENT_CHUNK + capacity + 2
    assert len(events.chunks) > 1 and max(len(c) for c in events.chunks) <= bound
    assert len(replay.book.event_rows) <= 2 * bound
    _, want = reference_orderbook(msgs, 0)
    assert_same_events(events.records(), rows_to_records(want))


@pytest.mark.parametrize("chunk", [1, 7])
def test_tiny_event_chunks_change_nothing(chunk: int, monkeypatch) -> None:
    """Every message stops the loop to drain (chunk 1) or most do: the same snapshots and
    events, and the loop resumes where it stopped."""
    monkeypatch.setattr(lobster_replay, "EVENT_CHUNK", chunk)
    rng = np.random.default_rng(3)
    seeded = list(range(-1, -7, -1))
    for match in (False, True):
        assert_identical(random_messages(rng, 800, seeded), 5, SEED, match)


# ---------------------------------------------------------------------- negative controls
class DropsHiddenTrades(LobsterReplay):
    """Broken on purpose: the book is right, but hidden executions never reach the caller."""

    def __init__(self, match: bool = False, on_events=None):
        def without_hidden(seq: int, records: np.ndarray) -> None:
            kept = records[records["event_type"] != int(EventType.HIDDEN_TRADE)]
            if on_events is not None and len(kept):
                on_events(events_seen[0], kept)
                events_seen[0] += len(kept)

        events_seen = [0]
        super().__init__(match=match, on_events=without_hidden)


class JumpsTheQueue(LobsterReplay):
    """Broken on purpose: every new order goes to the head of its level. Every level's
    total is right, so only the queues and the events can show it."""

    def replay(self, msgs, start=0, stop=None, out=None) -> int:
        stop = len(msgs) if stop is None else min(stop, len(msgs))
        for i in range(start, stop):
            super().replay(msgs, i, i + 1, out)
            oid = int(msgs.order_id[i])
            if msgs.type[i] == ADD and oid in self.book:
                self.book.move_to_head(oid)
        return max(stop - start, 0)


@pytest.mark.parametrize("engine", [DropsHiddenTrades, JumpsTheQueue])
def test_the_harness_catches_a_broken_engine(engine: Engine) -> None:
    msgs = messages(
        [
            (ADD, 1, 10, 99, BUY),  # behind the seeded anonymous 70
            (ADD, 2, 10, 99, BUY),
            (HIDDEN, 0, 9, 100, BUY),
            (DELETE, 901, 75, 99, BUY),  # unknown: the anonymous 70, then 5 of the head
            (EXECUTE, 2, 4, 99, BUY),
        ]
    )
    assert_identical(msgs, 3, SEED)  # the real engine passes
    with pytest.raises(AssertionError):
        assert_identical(msgs, 3, SEED, engine=engine)
