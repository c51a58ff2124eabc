"""A numba-compiled LOBSTER replay that reproduces ``LobsterReplay`` exactly, at compiled speed.

The reference replay (``mars_ray.data.lobster_replay.LobsterReplay`` driving
``mars_ray.exchange.book.OrderBook``) is the definition of what a LOBSTER
message file does to the book; this module is only a faster way to compute the
same thing. ``tests/test_fast_book.py`` holds it to that: after every message of
every real file and of synthetic edge-case sequences, its top-N snapshot must
equal the reference's. So every rule below is the reference's rule, including
the odd ones (zero sizes, an order id that is also an anonymous id, a sell at
the market-order sentinel price); where a rule looks arbitrary, the reference
is the reason.

What the replay does, message type by message type (as ``LobsterReplay.replay``):

- 1 (add): rest the order at the tail of its level; a known id is a duplicate
  and changes nothing. With ``match=True`` in continuous trading it first trades
  against the opposite side like ``OrderBook._match`` (best level first, FIFO,
  a partly filled head keeps its place) and rests only what is left.
- 2 / 3 / 4 (partial cancel / delete / visible execution) of a known id: cancel
  (type 3: all of it) or execute it; whatever the message says left beyond the
  order's remaining size is taken from its level (``_take``). Of an unknown id:
  the whole size is taken from the message's level.
- ``_take``: anonymous orders (negative ids) first, then known ones, each head
  first, ``min(resting, left)`` from each.
- 5 (hidden), 6 (cross): no change to the visible book.
- 7 (halt): a halt or a quote resume puts the book in the call phase (rest,
  never match); a trading resume returns it to the replay's resting phase.

The initial book (``initial``, one LOBSTER orderbook row) is seeded as one
anonymous order per level, ids -1, -2, ... in (ask, bid) order per level, as
``LobsterReplay.seed`` does.

Layout: five int64 arrays, preallocated and doubled when full (no Python objects,
so numba compiles the whole replay to machine code):

- ``orders[slot]``: id, remaining size, prev/next slot in its level's FIFO queue
  (a doubly linked list, so a cancel in the middle of a queue is O(1)), level slot,
  owner agent (-1 in a replay; the simulation's ``compiled_book`` reports it in trades).
- ``levels[slot]``: price, depth (the sum of its orders' sizes, kept as the
  reference keeps it), head, tail, order count, side. A level exists while its
  queue is non-empty, whatever its depth: the reference's rule.
- ``ladder[side, :n]``: (key, level slot) of the side's levels sorted by key
  ascending, with key = price for bids and -price for asks, so the best level of
  either side is the last element (the reference's sorted price lists, mirrored).
- ``table``: an open-addressing hash table from order id to order slot (linear
  probing, backward-shift deletion, Fibonacci hashing), twice the order
  capacity so it is never more than half full.
- ``meta``: free-list heads, high-water marks, ladder lengths, the hash shift,
  the next anonymous id.

Freed order and level slots go on free lists (linked through ``_O_NEXT`` and
``_L_HEAD``), so a day's replay works in a few thousand hot slots instead of one
per message.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mars_ray.data.lobster import Messages

# Message types and halt codes, as plain ints (numba freezes module globals as constants).
_SUBMIT, _PARTIAL_CANCEL, _DELETE, _EXECUTE, _HALT = 1, 2, 3, 4, 7
_HALT_STOP, _HALT_QUOTE = -1, 0

# Sentinel prices of market orders in OrderBook: never shown in a snapshot. A LOBSTER replay
# never creates them, but an order submitted at such a price is hidden the same way.
_MARKET_BUY_PRICE = 1 << 62
_MARKET_SELL_PRICE = 0

_BID, _ASK = 0, 1  # side index into the ladder arrays (LOBSTER direction 1 / -1)

# orders[slot, field]; the agent is the owner's id (the simulation's compiled book reports it
# in trades; a replay stores -1)
_O_ID, _O_SIZE, _O_PREV, _O_NEXT, _O_LEVEL, _O_AGENT = 0, 1, 2, 3, 4, 5
_O_FIELDS = 6
# levels[slot, field]
_L_PRICE, _L_DEPTH, _L_HEAD, _L_TAIL, _L_COUNT, _L_SIDE = 0, 1, 2, 3, 4, 5
_L_FIELDS = 6
# ladder[side, position, field]: a side's levels sorted ascending by key, best last
_K_KEY, _K_LEVEL = 0, 1
# table[cell, field]: the id -> order slot hash table
_T_KEY, _T_SLOT = 0, 1
# meta[field]
_M_FREE_ORDER, _M_TOP_ORDER, _M_FREE_LEVEL, _M_TOP_LEVEL = 0, 1, 2, 3
_M_COUNT = 4  # ladder lengths: meta[_M_COUNT + side]
_M_HASH_SHIFT, _M_NEXT_ANON = 6, 7
_M_FIELDS = 8

_EMPTY = -1  # an empty hash cell's slot; the end of a linked list
_INITIAL_CAPACITY = 1024  # orders (and levels); a power of two
_NEAR_TOUCH = 8  # ladder positions scanned linearly from the best before a binary search


# ---------------------------------------------------------------------- state
# A book is five arrays, passed to every operation in this order:
#   orders (capacity, _O_FIELDS), levels (capacity, _L_FIELDS), ladder (2, capacity, 2),
#   table (2 * capacity, 2), meta (_M_FIELDS,).
# They are passed one by one (not as a tuple) and never reassigned inside the message loop
# (``_run``): numba reference-counts every array variable a function creates, and with a
# tuple unpacked in each operation those atomic counts cost more than the book work itself
# (GOOG: 3.3M msgs/s with a book tuple, 7.4M without, --no-match).


@njit(cache=True)
def _new_book(capacity: int):
    """Empty book arrays for ``capacity`` live orders (a power of two).

    Levels get the same capacity: every level holds at least one order, so
    there are never more live levels than live orders.
    """
    hash_size = 2 * capacity
    bits = 0
    while (1 << bits) < hash_size:
        bits += 1
    table = np.empty((hash_size, 2), np.int64)
    table[:, _T_SLOT] = _EMPTY
    meta = np.zeros(_M_FIELDS, np.int64)
    meta[_M_FREE_ORDER] = _EMPTY
    meta[_M_FREE_LEVEL] = _EMPTY
    meta[_M_HASH_SHIFT] = 64 - bits
    meta[_M_NEXT_ANON] = -1
    orders = np.empty((capacity, _O_FIELDS), np.int64)
    levels = np.empty((capacity, _L_FIELDS), np.int64)
    ladder = np.empty((2, capacity, 2), np.int64)
    return orders, levels, ladder, table, meta


@njit(cache=True)
def _full(orders, meta) -> bool:
    """No free order slot left (and so, possibly, no free level slot)."""
    return meta[_M_FREE_ORDER] == _EMPTY and meta[_M_TOP_ORDER] == orders.shape[0]


@njit(cache=True)
def _grown(orders, levels, ladder, table, meta):
    """The same book in arrays of twice the capacity (the hash table rebuilt)."""
    capacity = orders.shape[0]
    new_orders, new_levels, new_ladder, new_table, new_meta = _new_book(2 * capacity)
    new_orders[:capacity] = orders
    new_levels[:capacity] = levels
    for side in range(2):
        n = meta[_M_COUNT + side]
        new_ladder[side, :n] = ladder[side, :n]
    shift = new_meta[_M_HASH_SHIFT]
    new_meta[:] = meta
    new_meta[_M_HASH_SHIFT] = shift
    for cell in range(table.shape[0]):
        if table[cell, _T_SLOT] != _EMPTY:
            _hash_insert(new_table, shift, table[cell, _T_KEY], table[cell, _T_SLOT])
    return new_orders, new_levels, new_ladder, new_table, new_meta


# ---------------------------------------------------------------------- id -> slot hash
@njit(cache=True)
def _hash(key: int, shift: int) -> int:
    """Fibonacci hashing: LOBSTER ids are near-sequential, the multiply spreads them."""
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(shift))


@njit(cache=True)
def _hash_find(table, shift: int, key: int) -> int:
    """The cell holding ``key``, or -1."""
    mask = table.shape[0] - 1
    cell = _hash(key, shift)
    while table[cell, _T_SLOT] != _EMPTY:
        if table[cell, _T_KEY] == key:
            return cell
        cell = (cell + 1) & mask
    return -1


@njit(cache=True)
def _hash_insert(table, shift: int, key: int, slot: int) -> None:
    """Add ``key`` (known to be absent)."""
    mask = table.shape[0] - 1
    cell = _hash(key, shift)
    while table[cell, _T_SLOT] != _EMPTY:
        cell = (cell + 1) & mask
    table[cell, _T_KEY] = key
    table[cell, _T_SLOT] = slot


@njit(cache=True)
def _hash_delete(table, shift: int, key: int) -> None:
    """Remove ``key`` (known to be present) by backward shift, so lookups need no tombstones."""
    mask = table.shape[0] - 1
    hole = _hash_find(table, shift, key)
    cell = hole
    while True:
        cell = (cell + 1) & mask
        if table[cell, _T_SLOT] == _EMPTY:
            break
        home = _hash(table[cell, _T_KEY], shift)
        # The entry may move into the hole unless its home lies cyclically in (hole, cell].
        if hole <= cell:
            stays = hole < home <= cell
        else:
            stays = home > hole or home <= cell
        if not stays:
            table[hole, _T_KEY] = table[cell, _T_KEY]
            table[hole, _T_SLOT] = table[cell, _T_SLOT]
            hole = cell
    table[hole, _T_SLOT] = _EMPTY


# ---------------------------------------------------------------------- price ladder
@njit(cache=True)
def _ladder_key(side: int, price: int) -> int:
    """Sort key of a level: asks negated, so both sides ascend towards their best price."""
    return price if side == _BID else -price


@njit(cache=True)
def _ladder_search(ladder, side: int, n: int, key: int) -> int:
    """First position of ``ladder[side, :n]`` whose key is >= ``key``.

    Most activity is at the touch (the end of the array), so the last few
    positions are scanned first and the binary search only runs for deeper prices
    (and in a crossed book, which a replay without matching keeps, where stale
    levels sit beyond the touch).
    """
    stop = max(n - _NEAR_TOUCH, 0)
    pos = n - 1
    while pos >= stop:
        if ladder[side, pos, _K_KEY] < key:
            return pos + 1
        pos -= 1
    lo, hi = 0, stop
    while lo < hi:
        mid = (lo + hi) >> 1
        if ladder[side, mid, _K_KEY] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _find_level(ladder, meta, side: int, price: int) -> int:
    """The level slot at (side, price), or -1."""
    n = meta[_M_COUNT + side]
    key = _ladder_key(side, price)
    pos = _ladder_search(ladder, side, n, key)
    if pos < n and ladder[side, pos, _K_KEY] == key:
        return ladder[side, pos, _K_LEVEL]
    return -1


@njit(cache=True)
def _drop_level(levels, ladder, meta, level: int) -> None:
    """Forget an emptied level, as ``OrderBook._drop_level`` does when its queue empties."""
    side = levels[level, _L_SIDE]
    n = meta[_M_COUNT + side]
    key = _ladder_key(side, levels[level, _L_PRICE])
    pos = n - 1  # the touch empties most often
    if ladder[side, pos, _K_KEY] != key:
        pos = _ladder_search(ladder, side, n, key)
    for j in range(pos, n - 1):
        ladder[side, j, _K_KEY] = ladder[side, j + 1, _K_KEY]
        ladder[side, j, _K_LEVEL] = ladder[side, j + 1, _K_LEVEL]
    meta[_M_COUNT + side] = n - 1
    levels[level, _L_HEAD] = meta[_M_FREE_LEVEL]
    meta[_M_FREE_LEVEL] = level


# ---------------------------------------------------------------------- book operations
@njit(cache=True)
def _rest(
    orders, levels, ladder, table, meta, side: int, price: int, oid: int, size: int, agent: int
):
    """Append an order (id not in the book, book not full) at the tail of its level."""
    n = meta[_M_COUNT + side]
    key = _ladder_key(side, price)
    pos = _ladder_search(ladder, side, n, key)
    if pos < n and ladder[side, pos, _K_KEY] == key:
        level = ladder[side, pos, _K_LEVEL]
    else:
        level = meta[_M_FREE_LEVEL]
        if level != _EMPTY:
            meta[_M_FREE_LEVEL] = levels[level, _L_HEAD]
        else:
            level = meta[_M_TOP_LEVEL]
            meta[_M_TOP_LEVEL] = level + 1
        for j in range(n, pos, -1):
            ladder[side, j, _K_KEY] = ladder[side, j - 1, _K_KEY]
            ladder[side, j, _K_LEVEL] = ladder[side, j - 1, _K_LEVEL]
        ladder[side, pos, _K_KEY] = key
        ladder[side, pos, _K_LEVEL] = level
        meta[_M_COUNT + side] = n + 1
        levels[level, _L_PRICE] = price
        levels[level, _L_DEPTH] = 0
        levels[level, _L_HEAD] = _EMPTY
        levels[level, _L_TAIL] = _EMPTY
        levels[level, _L_COUNT] = 0
        levels[level, _L_SIDE] = side
    slot = meta[_M_FREE_ORDER]
    if slot != _EMPTY:
        meta[_M_FREE_ORDER] = orders[slot, _O_NEXT]
    else:
        slot = meta[_M_TOP_ORDER]
        meta[_M_TOP_ORDER] = slot + 1
    tail = levels[level, _L_TAIL]
    orders[slot, _O_ID] = oid
    orders[slot, _O_SIZE] = size
    orders[slot, _O_PREV] = tail
    orders[slot, _O_NEXT] = _EMPTY
    orders[slot, _O_LEVEL] = level
    orders[slot, _O_AGENT] = agent
    if tail != _EMPTY:
        orders[tail, _O_NEXT] = slot
    else:
        levels[level, _L_HEAD] = slot
    levels[level, _L_TAIL] = slot
    levels[level, _L_DEPTH] += size
    levels[level, _L_COUNT] += 1
    _hash_insert(table, meta[_M_HASH_SHIFT], oid, slot)


@njit(cache=True)
def _remove(orders, levels, ladder, table, meta, slot: int) -> None:
    """Take a whole order out of the book; its level goes when its queue is empty."""
    level = orders[slot, _O_LEVEL]
    prev, nxt = orders[slot, _O_PREV], orders[slot, _O_NEXT]
    if prev != _EMPTY:
        orders[prev, _O_NEXT] = nxt
    else:
        levels[level, _L_HEAD] = nxt
    if nxt != _EMPTY:
        orders[nxt, _O_PREV] = prev
    else:
        levels[level, _L_TAIL] = prev
    levels[level, _L_DEPTH] -= orders[slot, _O_SIZE]
    levels[level, _L_COUNT] -= 1
    if levels[level, _L_COUNT] == 0:
        _drop_level(levels, ladder, meta, level)
    _hash_delete(table, meta[_M_HASH_SHIFT], orders[slot, _O_ID])
    orders[slot, _O_NEXT] = meta[_M_FREE_ORDER]
    meta[_M_FREE_ORDER] = slot


@njit(cache=True)
def _cancel(orders, levels, ladder, table, meta, slot: int, size: int) -> None:
    """``OrderBook.cancel``: ``0 < size < remaining`` cuts the order in place, else it goes."""
    resting = orders[slot, _O_SIZE]
    if 0 < size < resting:
        orders[slot, _O_SIZE] = resting - size
        levels[orders[slot, _O_LEVEL], _L_DEPTH] -= size
    else:
        _remove(orders, levels, ladder, table, meta, slot)


@njit(cache=True)
def _execute(orders, levels, ladder, table, meta, slot: int, size: int) -> int:
    """``OrderBook.execute_resting``: fill ``min(size, remaining)``; return the fill."""
    resting = orders[slot, _O_SIZE]
    fill = size if size < resting else resting
    if fill == resting:
        _remove(orders, levels, ladder, table, meta, slot)
    else:
        orders[slot, _O_SIZE] = resting - fill
        levels[orders[slot, _O_LEVEL], _L_DEPTH] -= fill
    return fill


@njit(cache=True)
def _take(orders, levels, ladder, table, meta, side: int, price: int, size: int, execute: bool):
    """``LobsterReplay._take``: ``size`` leaves the level, anonymous orders first, then
    known ones, each head first, ``min(resting, left)`` from each."""
    level = _find_level(ladder, meta, side, price)
    if level == _EMPTY:
        return
    known_left = False
    for anonymous in (True, False):
        if not anonymous and not known_left:
            return  # only anonymous orders were there, and the level may be gone with them
        slot = levels[level, _L_HEAD]
        while slot != _EMPTY:
            if size <= 0:
                return
            nxt = orders[slot, _O_NEXT]
            if (orders[slot, _O_ID] < 0) == anonymous:
                resting = orders[slot, _O_SIZE]
                part = resting if resting < size else size
                if execute:
                    _execute(orders, levels, ladder, table, meta, slot, part)
                else:
                    _cancel(orders, levels, ladder, table, meta, slot, part)
                size -= part
            else:
                known_left = True
            slot = nxt


@njit(cache=True)
def _best_price(levels, ladder, meta, side: int) -> int:
    """Price of the side's best level (the side must not be empty)."""
    return levels[ladder[side, meta[_M_COUNT + side] - 1, _K_LEVEL], _L_PRICE]


@njit(cache=True)
def _crosses(levels, ladder, meta, side: int, price: int) -> bool:
    """``OrderBook.submit``'s touch test before it calls ``_match``."""
    contra = 1 - side
    if meta[_M_COUNT + contra] == 0:
        return False
    best = _best_price(levels, ladder, meta, contra)
    return best <= price if side == _BID else best >= price


@njit(cache=True)
def _crossing_level(levels, ladder, meta, side: int, limit: int) -> int:
    """The best level opposite ``side`` if an order at ``limit`` trades with it, else -1."""
    contra = 1 - side
    n = meta[_M_COUNT + contra]
    if n == 0:
        return _EMPTY
    level = ladder[contra, n - 1, _K_LEVEL]
    best = levels[level, _L_PRICE]
    if (best > limit) if side == _BID else (best < limit):
        return _EMPTY
    return level


@njit(cache=True)
def _match(orders, levels, ladder, table, meta, side: int, limit: int, size: int) -> int:
    """``OrderBook._match`` of an arriving order: trade against the best opposite level
    while it crosses ``limit``, head of the queue first; return the size left."""
    while size != 0:
        level = _crossing_level(levels, ladder, meta, side, limit)
        if level == _EMPTY:
            break
        # A fill of min(size, head) that removes a head it empties: execute_resting's rule.
        size -= _execute(orders, levels, ladder, table, meta, levels[level, _L_HEAD], size)
    return size


@njit(cache=True)
def _snapshot(levels, ladder, meta, depth: int, out, row: int) -> None:
    """``OrderBook.snapshot(depth)`` into ``out[row]`` (already zero): ask px, ask size,
    bid px, bid size per level; of a side's best ``depth + 1`` levels, a market sentinel
    price is skipped."""
    for side in range(2):
        column = 0 if side == _ASK else 2
        hidden = _MARKET_SELL_PRICE if side == _ASK else _MARKET_BUY_PRICE
        n = meta[_M_COUNT + side]
        last = max(n - depth - 1, 0)
        k = 0
        pos = n - 1
        while pos >= last and k < depth:
            level = ladder[side, pos, _K_LEVEL]
            price = levels[level, _L_PRICE]
            if price != hidden:
                out[row, 4 * k + column] = price
                out[row, 4 * k + column + 1] = levels[level, _L_DEPTH]
                k += 1
            pos -= 1


# ---------------------------------------------------------------------- the replay
@njit(cache=True)
def _run(
    orders, levels, ladder, table, meta, types, order_ids, sizes, prices, directions, match,
    continuous, start, depth, out,
):  # fmt: skip
    """Apply messages from ``start`` until the end or a submission that finds the book full.

    Returns (the first message not applied, whether the book is in continuous
    trading). A full book is grown by the caller and the loop resumes at the same
    message, so the arrays stay fixed for the whole loop.
    """
    shift = meta[_M_HASH_SHIFT]
    n = types.size
    for i in range(start, n):
        typ = types[i]
        if _SUBMIT <= typ <= _EXECUTE:
            oid, size, price = order_ids[i], sizes[i], prices[i]
            cell = _hash_find(table, shift, oid)
            if cell == _EMPTY:
                direction = directions[i]
                if direction != 1 and direction != -1:
                    raise ValueError("direction must be 1 or -1 for message types 1-4")
                side = _BID if direction == 1 else _ASK
                if typ == _SUBMIT:
                    if _full(orders, meta):
                        return i, continuous
                    rests = True
                    if continuous and _crosses(levels, ladder, meta, side, price):
                        size = _match(orders, levels, ladder, table, meta, side, price, size)
                        rests = size != 0  # (submit returns when nothing is left)
                    if rests:
                        _rest(orders, levels, ladder, table, meta, side, price, oid, size, -1)
                else:  # an id the book never saw: it rested before the file began
                    execute = typ == _EXECUTE
                    _take(orders, levels, ladder, table, meta, side, price, size, execute)
            elif typ != _SUBMIT:  # (a known id submitted again is rejected: no change)
                slot = table[cell, _T_SLOT]
                remaining = orders[slot, _O_SIZE]
                level = orders[slot, _O_LEVEL]
                side, price = levels[level, _L_SIDE], levels[level, _L_PRICE]
                execute = typ == _EXECUTE
                if execute:
                    _execute(orders, levels, ladder, table, meta, slot, size)
                else:
                    cut = size if typ == _PARTIAL_CANCEL else 0  # a delete cancels all
                    _cancel(orders, levels, ladder, table, meta, slot, cut)
                if size > remaining:
                    left = size - remaining
                    _take(orders, levels, ladder, table, meta, side, price, left, execute)
        elif typ == _HALT:
            code = prices[i]
            continuous = match and code != _HALT_STOP and code != _HALT_QUOTE
        if depth > 0:
            _snapshot(levels, ladder, meta, depth, out, i)
    return n, continuous


@njit(cache=True)
def _replay(types, order_ids, sizes, prices, directions, seed, match, depth, out):
    """Seed the book, replay every message (see the module docstring); with ``depth > 0``
    write the top ``depth`` levels after message ``i`` to ``out[i]``.

    Returns the message count and the final book's arrays (for ``fast_replay_levels``).
    """
    orders, levels, ladder, table, meta = _new_book(_INITIAL_CAPACITY)
    for k in range(seed.size // 4):
        for side, column in ((_ASK, 0), (_BID, 2)):
            price, size = seed[4 * k + column], seed[4 * k + column + 1]
            if price != 0 and size != 0:
                if _full(orders, meta):
                    orders, levels, ladder, table, meta = _grown(
                        orders, levels, ladder, table, meta
                    )
                anon = meta[_M_NEXT_ANON]
                meta[_M_NEXT_ANON] = anon - 1
                _rest(orders, levels, ladder, table, meta, side, price, anon, size, -1)
    n = types.size
    i, continuous = np.int64(0), match
    while True:
        i, continuous = _run(
            orders, levels, ladder, table, meta, types, order_ids, sizes, prices, directions,
            match, continuous, i, depth, out,
        )  # fmt: skip
        if i == n:
            return n, orders, levels, ladder, table, meta
        orders, levels, ladder, table, meta = _grown(orders, levels, ladder, table, meta)


@njit(cache=True)
def _checked_levels(orders, levels, ladder, table, meta):
    """Every resting order as (side index, price, id, size) rows, each side best level
    first and each queue head first, after checking the book's invariants.

    The snapshots the tests compare show only each level's total; an order filed
    under the wrong id, a broken link or a lost hash entry could hide behind a
    right total for a while, so the tests also compare these queues and let this
    walk check that every structure agrees with every other.
    """
    rows = np.empty((meta[_M_TOP_ORDER], 4), np.int64)
    k = 0
    shift = meta[_M_HASH_SHIFT]
    for side in range(2):
        n = meta[_M_COUNT + side]
        for pos in range(n - 1, -1, -1):
            level = ladder[side, pos, _K_LEVEL]
            if pos > 0 and ladder[side, pos - 1, _K_KEY] >= ladder[side, pos, _K_KEY]:
                raise AssertionError("ladder keys not strictly ascending")
            if levels[level, _L_SIDE] != side:
                raise AssertionError("level filed under the wrong side")
            if _ladder_key(side, levels[level, _L_PRICE]) != ladder[side, pos, _K_KEY]:
                raise AssertionError("ladder key does not match the level's price")
            count, depth, prev = 0, 0, _EMPTY
            slot = levels[level, _L_HEAD]
            while slot != _EMPTY:
                if k == rows.shape[0]:
                    raise AssertionError("more orders linked than ever allocated: a cycle")
                if orders[slot, _O_LEVEL] != level or orders[slot, _O_PREV] != prev:
                    raise AssertionError("order linked into the wrong level or position")
                cell = _hash_find(table, shift, orders[slot, _O_ID])
                if cell == _EMPTY or table[cell, _T_SLOT] != slot:
                    raise AssertionError("order id does not lead to its slot")
                rows[k, 0], rows[k, 1] = side, levels[level, _L_PRICE]
                rows[k, 2], rows[k, 3] = orders[slot, _O_ID], orders[slot, _O_SIZE]
                k += 1
                count += 1
                depth += orders[slot, _O_SIZE]
                prev = slot
                slot = orders[slot, _O_NEXT]
            if prev != levels[level, _L_TAIL]:
                raise AssertionError("level tail is not its last order")
            if count == 0 or count != levels[level, _L_COUNT]:
                raise AssertionError("level order count wrong (or an empty level kept)")
            if depth != levels[level, _L_DEPTH]:
                raise AssertionError("level depth is not the sum of its orders")
    occupied = 0
    for cell in range(table.shape[0]):
        occupied += table[cell, _T_SLOT] != _EMPTY
    if occupied != k:
        raise AssertionError("hash table holds ids of orders that are not in the book")
    return rows[:k]


_NO_OUTPUT = np.zeros((0, 0), dtype=np.int64)  # fast_replay records no snapshots


def _readonly_int64(values: np.ndarray) -> np.ndarray:
    """A contiguous int64 read-only view (a copy only if the dtype or layout differs).

    numba compiles one version per argument type, and writability is part of the
    type: columns read from a plain csv arrive read-only (zero-copy from Arrow),
    from a gzip file writable. Handing every caller read-only views means one
    compiled (and cached) signature.
    """
    view = np.ascontiguousarray(values, dtype=np.int64).view()
    view.flags.writeable = False
    return view


def _columns(msgs: Messages) -> tuple[np.ndarray, ...]:
    """The replay's message columns."""
    columns = (msgs.type, msgs.order_id, msgs.size, msgs.price, msgs.direction)
    return tuple(_readonly_int64(column) for column in columns)


def _seed(initial: np.ndarray | None) -> np.ndarray:
    """``initial`` flattened (LOBSTER column order), as ``LobsterReplay.seed`` reads it."""
    if initial is None:
        return _readonly_int64(np.zeros(0, dtype=np.int64))
    return _readonly_int64(np.asarray(initial, dtype=np.int64).reshape(-1))


def fast_replay_orderbook(
    msgs: Messages, levels: int, initial: np.ndarray | None = None, match: bool = False
) -> np.ndarray:
    """The book's top ``levels`` after each message: ``replay_orderbook``'s result, compiled.

    Same layout as ``mars_ray.data.lobster_replay.replay_orderbook`` (int64
    ``(len(msgs), 4 * levels)``, ticks, LOBSTER column order, empty = 0/0) and
    identical values. ``initial`` is the book before the first message (held as
    anonymous orders); ``match`` is ``LobsterReplay(match=...)``: ``False``, as
    ``replay_orderbook`` runs it, rests every order as the file gives it.
    Raises ValueError on a type 1-4 message whose direction is neither 1 nor -1
    (the reader refuses those; the reference book would mis-file the order).
    """
    out = np.zeros((len(msgs), 4 * levels), dtype=np.int64)
    _replay(*_columns(msgs), _seed(initial), match, levels, out)
    return out


def fast_replay_levels(
    msgs: Messages, initial: np.ndarray | None = None, match: bool = False
) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Every level of the book after the replay, in full: (direction, price, queue).

    Bids come first, then asks, each best level first; a queue is
    ``[(order id, size), ...]`` head first, as ``OrderBook.level_queue`` gives it.
    The book's internal invariants are checked on the way (AssertionError if
    one fails). For tests and debugging: this is where queue order, which the
    snapshots cannot show, is compared with the reference.
    """
    result = _replay(*_columns(msgs), _seed(initial), match, 0, _NO_OUTPUT)
    rows = _checked_levels(*result[1:]).tolist()
    out: list[tuple[int, int, list[tuple[int, int]]]] = []
    for side, price, oid, size in rows:
        direction = 1 if side == 0 else -1
        if not out or out[-1][:2] != (direction, price):
            out.append((direction, price, []))
        out[-1][2].append((oid, size))
    return out


def fast_replay(msgs: Messages, initial: np.ndarray | None = None, match: bool = False) -> int:
    """Replay every message without recording snapshots (the benchmark's path).

    Returns the number of messages applied. The first call in a process compiles
    (or loads the cached machine code), so time a second one.
    """
    return int(_replay(*_columns(msgs), _seed(initial), match, 0, _NO_OUTPUT)[0])
