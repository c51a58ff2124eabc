"""The compiled book's storage: five int64 arrays and the operations that keep them consistent.

``compiled_book`` builds ``OrderBook``'s rules (matching, events, phases) on these
operations; nothing here knows about events or phases. Every rule a function follows
is ``OrderBook``'s (``book.py``): a level exists while its queue is non-empty,
whatever its depth; a cut of ``0 < size < remaining`` keeps the order's place, any
other cut removes it; a fill is ``min(size, remaining)``.

Layout, preallocated and doubled when full (no Python objects, so numba compiles
every operation to machine code):

- ``orders[slot]``: id, remaining size, prev/next slot in its level's FIFO queue
  (a doubly linked list, so a cancel in the middle of a queue is O(1)), level slot,
  owner agent (reported in trades).
- ``levels[slot]``: price, depth (the sum of its orders' sizes), head, tail, order
  count, side.
- ``ladder[side, :n]``: (key, level slot) of the side's levels sorted by key
  ascending, with key = price for bids and -price for asks, so the best level of
  either side is the last element (``OrderBook``'s sorted price lists, mirrored).
- ``table``: an open-addressing hash table from order id to order slot (linear
  probing, backward-shift deletion, Fibonacci hashing), twice the order capacity
  so it is never more than half full.
- ``meta``: free-list heads, high-water marks, ladder lengths, the hash shift, the
  next anonymous id (negative: liquidity a replay cannot attribute to an order).

Freed order and level slots go on free lists (linked through ``O_NEXT`` and
``L_HEAD``), so a long day works in a few thousand hot slots instead of one per order.

The arrays are passed to every operation one by one, in the order above, and
never rebuilt inside a compiled loop: numba reference-counts every array variable
a function creates, and a tuple unpacked in each operation costs more in those
atomic counts than the book work itself. A loop that finds the book full returns
to Python, which calls ``grown`` and resumes. For the same reason the operations
a message or an order always runs are inlined (``inline="always"``): a function
that passes its arrays on to another counts a reference to each, twice per call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mars_ray.exchange.book import MARKET_BUY_PRICE, MARKET_SELL_PRICE

BID, ASK = 0, 1  # side index into the arrays (events and orders say +1 / -1)

# orders[slot, field]
O_ID, O_SIZE, O_PREV, O_NEXT, O_LEVEL, O_AGENT = 0, 1, 2, 3, 4, 5
O_FIELDS = 6
# levels[slot, field]
L_PRICE, L_DEPTH, L_HEAD, L_TAIL, L_COUNT, L_SIDE = 0, 1, 2, 3, 4, 5
L_FIELDS = 6
# ladder[side, position, field]: a side's levels sorted ascending by key, best last
K_KEY, K_LEVEL = 0, 1
# table[cell, field]: the id -> order slot hash table
T_KEY, T_SLOT = 0, 1
# meta[field]
M_FREE_ORDER, M_TOP_ORDER, M_FREE_LEVEL, M_TOP_LEVEL = 0, 1, 2, 3
M_COUNT = 4  # ladder lengths: meta[M_COUNT + side]
M_HASH_SHIFT, M_NEXT_ANON = 6, 7
M_FIELDS = 8

EMPTY = -1  # an empty hash cell's slot; the end of a linked list; "no such level"
INITIAL_CAPACITY = 1024  # orders (and levels); a power of two
_NEAR_TOUCH = 8  # ladder positions scanned linearly from the best before a binary search


# ---------------------------------------------------------------------- the arrays
@njit(cache=True)
def new_book(capacity: int):
    """Empty book arrays for ``capacity`` live orders (a power of two).

    Levels get the same capacity: every level holds at least one order, so
    there are never more live levels than live orders.
    """
    hash_size = 2 * capacity
    bits = 0
    while (1 << bits) < hash_size:
        bits += 1
    table = np.empty((hash_size, 2), np.int64)
    table[:, T_SLOT] = EMPTY
    meta = np.zeros(M_FIELDS, np.int64)
    meta[M_FREE_ORDER] = EMPTY
    meta[M_FREE_LEVEL] = EMPTY
    meta[M_HASH_SHIFT] = 64 - bits
    meta[M_NEXT_ANON] = -1
    orders = np.empty((capacity, O_FIELDS), np.int64)
    levels = np.empty((capacity, L_FIELDS), np.int64)
    ladder = np.empty((2, capacity, 2), np.int64)
    return orders, levels, ladder, table, meta


@njit(cache=True, inline="always")
def is_full(orders, meta) -> bool:
    """No free order slot left (and so, possibly, no free level slot)."""
    return meta[M_FREE_ORDER] == EMPTY and meta[M_TOP_ORDER] == orders.shape[0]


@njit(cache=True)
def grown(orders, levels, ladder, table, meta):
    """The same book in arrays of twice the capacity (the hash table rebuilt)."""
    capacity = orders.shape[0]
    new_orders, new_levels, new_ladder, new_table, new_meta = new_book(2 * capacity)
    new_orders[:capacity] = orders
    new_levels[:capacity] = levels
    for side in range(2):
        n = meta[M_COUNT + side]
        new_ladder[side, :n] = ladder[side, :n]
    shift = new_meta[M_HASH_SHIFT]
    new_meta[:] = meta
    new_meta[M_HASH_SHIFT] = shift
    for cell in range(table.shape[0]):
        if table[cell, T_SLOT] != EMPTY:
            hash_insert(new_table, shift, table[cell, T_KEY], table[cell, T_SLOT])
    return new_orders, new_levels, new_ladder, new_table, new_meta


# ---------------------------------------------------------------------- id -> slot hash
@njit(cache=True)
def _hash(key: int, shift: int) -> int:
    """Fibonacci hashing: order ids are near-sequential, the multiply spreads them."""
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(shift))


@njit(cache=True)
def hash_find(table, shift: int, key: int) -> int:
    """The cell holding ``key``, or EMPTY."""
    mask = table.shape[0] - 1
    cell = _hash(key, shift)
    while table[cell, T_SLOT] != EMPTY:
        if table[cell, T_KEY] == key:
            return cell
        cell = (cell + 1) & mask
    return EMPTY


@njit(cache=True)
def hash_insert(table, shift: int, key: int, slot: int) -> None:
    """Add ``key`` (known to be absent)."""
    mask = table.shape[0] - 1
    cell = _hash(key, shift)
    while table[cell, T_SLOT] != EMPTY:
        cell = (cell + 1) & mask
    table[cell, T_KEY] = key
    table[cell, T_SLOT] = slot


@njit(cache=True)
def hash_delete(table, shift: int, key: int) -> None:
    """Remove ``key`` (known to be present) by backward shift, so lookups need no tombstones."""
    mask = table.shape[0] - 1
    hole = hash_find(table, shift, key)
    cell = hole
    while True:
        cell = (cell + 1) & mask
        if table[cell, T_SLOT] == EMPTY:
            break
        home = _hash(table[cell, T_KEY], shift)
        # The entry may move into the hole unless its home lies cyclically in (hole, cell].
        if hole <= cell:
            stays = hole < home <= cell
        else:
            stays = home > hole or home <= cell
        if not stays:
            table[hole, T_KEY] = table[cell, T_KEY]
            table[hole, T_SLOT] = table[cell, T_SLOT]
            hole = cell
    table[hole, T_SLOT] = EMPTY


@njit(cache=True)
def order_slot(table, meta, oid: int) -> int:
    """The slot of the resting order ``oid``, or EMPTY."""
    cell = hash_find(table, meta[M_HASH_SHIFT], oid)
    return EMPTY if cell == EMPTY else table[cell, T_SLOT]


# ---------------------------------------------------------------------- price ladder
@njit(cache=True)
def ladder_key(side: int, price: int) -> int:
    """Sort key of a level: asks negated, so both sides ascend towards their best price."""
    return price if side == BID else -price


@njit(cache=True)
def ladder_search(ladder, side: int, n: int, key: int) -> int:
    """First position of ``ladder[side, :n]`` whose key is >= ``key``.

    Most activity is at the touch (the end of the array), so the last few
    positions are scanned first and the binary search only runs for deeper prices
    (and in a crossed book, which a replay without matching keeps, where stale
    levels sit beyond the touch).
    """
    stop = max(n - _NEAR_TOUCH, 0)
    pos = n - 1
    while pos >= stop:
        if ladder[side, pos, K_KEY] < key:
            return pos + 1
        pos -= 1
    lo, hi = 0, stop
    while lo < hi:
        mid = (lo + hi) >> 1
        if ladder[side, mid, K_KEY] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def find_level(ladder, meta, side: int, price: int) -> int:
    """The level slot at (side, price), or EMPTY."""
    n = meta[M_COUNT + side]
    key = ladder_key(side, price)
    pos = ladder_search(ladder, side, n, key)
    if pos < n and ladder[side, pos, K_KEY] == key:
        return ladder[side, pos, K_LEVEL]
    return EMPTY


@njit(cache=True, inline="always")
def drop_level(levels, ladder, meta, level: int) -> None:
    """Forget an emptied level, as ``OrderBook._drop_level`` does when its queue empties."""
    side = levels[level, L_SIDE]
    n = meta[M_COUNT + side]
    key = ladder_key(side, levels[level, L_PRICE])
    pos = n - 1  # the touch empties most often
    if ladder[side, pos, K_KEY] != key:
        pos = ladder_search(ladder, side, n, key)
    for j in range(pos, n - 1):
        ladder[side, j, K_KEY] = ladder[side, j + 1, K_KEY]
        ladder[side, j, K_LEVEL] = ladder[side, j + 1, K_LEVEL]
    meta[M_COUNT + side] = n - 1
    levels[level, L_HEAD] = meta[M_FREE_LEVEL]
    meta[M_FREE_LEVEL] = level


@njit(cache=True)
def best_price(levels, ladder, meta, side: int) -> int:
    """Price of the side's best level (the side must not be empty)."""
    return levels[ladder[side, meta[M_COUNT + side] - 1, K_LEVEL], L_PRICE]


@njit(cache=True)
def crosses(levels, ladder, meta, side: int, price: int) -> bool:
    """``OrderBook.submit``'s touch test: an order at ``price`` meets the opposite side."""
    contra = 1 - side
    if meta[M_COUNT + contra] == 0:
        return False
    best = best_price(levels, ladder, meta, contra)
    return best <= price if side == BID else best >= price


@njit(cache=True)
def crossing_level(levels, ladder, meta, side: int, limit: int) -> int:
    """The best level opposite ``side`` if an order at ``limit`` trades with it, else EMPTY."""
    contra = 1 - side
    n = meta[M_COUNT + contra]
    if n == 0:
        return EMPTY
    level = ladder[contra, n - 1, K_LEVEL]
    best = levels[level, L_PRICE]
    if (best > limit) if side == BID else (best < limit):
        return EMPTY
    return level


# ---------------------------------------------------------------------- orders
@njit(cache=True, inline="always")
def _allocate(rows, link: int, meta, free: int, top: int) -> int:
    """A slot of ``rows`` (orders or levels): the head of the free list that ``meta[free]``
    starts and ``rows[:, link]`` continues, else the next never-used slot (``meta[top]``)."""
    slot = meta[free]
    if slot != EMPTY:
        meta[free] = rows[slot, link]
    else:
        slot = meta[top]
        meta[top] = slot + 1
    return slot


@njit(cache=True, inline="always")
def rest(
    orders, levels, ladder, table, meta, side: int, price: int, oid: int, size: int, agent: int
) -> int:
    """Append an order (id not in the book, book not full) at the tail of its level;
    return its slot."""
    n = meta[M_COUNT + side]
    key = ladder_key(side, price)
    pos = ladder_search(ladder, side, n, key)
    if pos < n and ladder[side, pos, K_KEY] == key:
        level = ladder[side, pos, K_LEVEL]
    else:
        level = _allocate(levels, L_HEAD, meta, M_FREE_LEVEL, M_TOP_LEVEL)
        for j in range(n, pos, -1):
            ladder[side, j, K_KEY] = ladder[side, j - 1, K_KEY]
            ladder[side, j, K_LEVEL] = ladder[side, j - 1, K_LEVEL]
        ladder[side, pos, K_KEY] = key
        ladder[side, pos, K_LEVEL] = level
        meta[M_COUNT + side] = n + 1
        levels[level, L_PRICE] = price
        levels[level, L_DEPTH] = 0
        levels[level, L_HEAD] = EMPTY
        levels[level, L_TAIL] = EMPTY
        levels[level, L_COUNT] = 0
        levels[level, L_SIDE] = side
    slot = _allocate(orders, O_NEXT, meta, M_FREE_ORDER, M_TOP_ORDER)
    tail = levels[level, L_TAIL]
    orders[slot, O_ID] = oid
    orders[slot, O_SIZE] = size
    orders[slot, O_PREV] = tail
    orders[slot, O_NEXT] = EMPTY
    orders[slot, O_LEVEL] = level
    orders[slot, O_AGENT] = agent
    if tail != EMPTY:
        orders[tail, O_NEXT] = slot
    else:
        levels[level, L_HEAD] = slot
    levels[level, L_TAIL] = slot
    levels[level, L_DEPTH] += size
    levels[level, L_COUNT] += 1
    hash_insert(table, meta[M_HASH_SHIFT], oid, slot)
    return slot


@njit(cache=True, inline="always")
def _unlink(orders, levels, slot: int) -> None:
    """Take ``slot`` out of its level's queue (the level's depth and count untouched)."""
    level = orders[slot, O_LEVEL]
    prev, nxt = orders[slot, O_PREV], orders[slot, O_NEXT]
    if prev != EMPTY:
        orders[prev, O_NEXT] = nxt
    else:
        levels[level, L_HEAD] = nxt
    if nxt != EMPTY:
        orders[nxt, O_PREV] = prev
    else:
        levels[level, L_TAIL] = prev


@njit(cache=True)
def move_to_head(orders, levels, slot: int) -> None:
    """Put a resting order at the head of its level's queue (``OrderBook.move_to_head``)."""
    level = orders[slot, O_LEVEL]
    head = levels[level, L_HEAD]
    if head == slot:
        return
    _unlink(orders, levels, slot)
    orders[slot, O_PREV] = EMPTY
    orders[slot, O_NEXT] = head
    orders[head, O_PREV] = slot
    levels[level, L_HEAD] = slot


@njit(cache=True, inline="always")
def remove(orders, levels, ladder, table, meta, slot: int) -> None:
    """Take a whole order out of the book; its level goes when its queue is empty."""
    level = orders[slot, O_LEVEL]
    _unlink(orders, levels, slot)
    levels[level, L_DEPTH] -= orders[slot, O_SIZE]
    levels[level, L_COUNT] -= 1
    if levels[level, L_COUNT] == 0:
        drop_level(levels, ladder, meta, level)
    hash_delete(table, meta[M_HASH_SHIFT], orders[slot, O_ID])
    orders[slot, O_NEXT] = meta[M_FREE_ORDER]
    meta[M_FREE_ORDER] = slot


@njit(cache=True, inline="always")
def cancel(orders, levels, ladder, table, meta, slot: int, size: int) -> int:
    """``OrderBook.cancel``'s arithmetic: ``0 < size < remaining`` cuts the order in place,
    else it goes; return the size cancelled."""
    resting = orders[slot, O_SIZE]
    if 0 < size < resting:
        orders[slot, O_SIZE] = resting - size
        levels[orders[slot, O_LEVEL], L_DEPTH] -= size
        return size
    remove(orders, levels, ladder, table, meta, slot)
    return resting


@njit(cache=True, inline="always")
def execute(orders, levels, ladder, table, meta, slot: int, size: int) -> int:
    """``OrderBook.execute_resting``'s arithmetic: fill ``min(size, remaining)``, remove
    an order that fill empties; return the fill."""
    resting = orders[slot, O_SIZE]
    fill = size if size < resting else resting
    if fill == resting:
        remove(orders, levels, ladder, table, meta, slot)
    else:
        orders[slot, O_SIZE] = resting - fill
        levels[orders[slot, O_LEVEL], L_DEPTH] -= fill
    return fill


# ---------------------------------------------------------------------- views
@njit(cache=True)
def snapshot(levels, ladder, meta, depth: int, out, row: int) -> None:
    """``OrderBook.snapshot(depth)`` into ``out[row]`` (already zero): ask px, ask size,
    bid px, bid size per level; of a side's best ``depth + 1`` levels, a market sentinel
    price is skipped."""
    for side in range(2):
        column = 0 if side == ASK else 2
        hidden = MARKET_SELL_PRICE if side == ASK else MARKET_BUY_PRICE
        n = meta[M_COUNT + side]
        last = max(n - depth - 1, 0)
        k = 0
        pos = n - 1
        while pos >= last and k < depth:
            level = ladder[side, pos, K_LEVEL]
            price = levels[level, L_PRICE]
            if price != hidden:
                out[row, 4 * k + column] = price
                out[row, 4 * k + column + 1] = levels[level, L_DEPTH]
                k += 1
            pos -= 1


@njit(cache=True)
def side_levels(levels, ladder, meta, side: int):
    """(price, depth) of every level of ``side``, best first, sentinels included."""
    n = meta[M_COUNT + side]
    out = np.empty((n, 2), np.int64)
    for k in range(n):
        level = ladder[side, n - 1 - k, K_LEVEL]
        out[k, 0], out[k, 1] = levels[level, L_PRICE], levels[level, L_DEPTH]
    return out


@njit(cache=True)
def level_queue(orders, levels, ladder, meta, side: int, price: int):
    """(order id, size) rows of one level, head first (none if there is no such level)."""
    level = find_level(ladder, meta, side, price)
    if level == EMPTY:
        return np.empty((0, 2), np.int64)
    out = np.empty((levels[level, L_COUNT], 2), np.int64)
    slot = levels[level, L_HEAD]
    for k in range(out.shape[0]):
        out[k, 0], out[k, 1] = orders[slot, O_ID], orders[slot, O_SIZE]
        slot = orders[slot, O_NEXT]
    return out


@njit(cache=True)
def checked_levels(orders, levels, ladder, table, meta):
    """Every resting order as (side index, price, id, size) rows, each side best level
    first and each queue head first, after checking the arrays' invariants.

    A snapshot shows only each level's total; an order filed under the wrong id, a
    broken link or a lost hash entry could hide behind a right total for a while,
    so the tests compare these queues and let this walk check that every structure
    agrees with every other.
    """
    rows = np.empty((meta[M_TOP_ORDER], 4), np.int64)
    k = 0
    shift = meta[M_HASH_SHIFT]
    for side in range(2):
        n = meta[M_COUNT + side]
        for pos in range(n - 1, -1, -1):
            level = ladder[side, pos, K_LEVEL]
            if pos > 0 and ladder[side, pos - 1, K_KEY] >= ladder[side, pos, K_KEY]:
                raise AssertionError("ladder keys not strictly ascending")
            if levels[level, L_SIDE] != side:
                raise AssertionError("level filed under the wrong side")
            if ladder_key(side, levels[level, L_PRICE]) != ladder[side, pos, K_KEY]:
                raise AssertionError("ladder key does not match the level's price")
            count, depth, prev = 0, 0, EMPTY
            slot = levels[level, L_HEAD]
            while slot != EMPTY:
                if k == rows.shape[0]:
                    raise AssertionError("more orders linked than ever allocated: a cycle")
                if orders[slot, O_LEVEL] != level or orders[slot, O_PREV] != prev:
                    raise AssertionError("order linked into the wrong level or position")
                cell = hash_find(table, shift, orders[slot, O_ID])
                if cell == EMPTY or table[cell, T_SLOT] != slot:
                    raise AssertionError("order id does not lead to its slot")
                rows[k, 0], rows[k, 1] = side, levels[level, L_PRICE]
                rows[k, 2], rows[k, 3] = orders[slot, O_ID], orders[slot, O_SIZE]
                k += 1
                count += 1
                depth += orders[slot, O_SIZE]
                prev = slot
                slot = orders[slot, O_NEXT]
            if prev != levels[level, L_TAIL]:
                raise AssertionError("level tail is not its last order")
            if count == 0 or count != levels[level, L_COUNT]:
                raise AssertionError("level order count wrong (or an empty level kept)")
            if depth != levels[level, L_DEPTH]:
                raise AssertionError("level depth is not the sum of its orders")
    occupied = 0
    for cell in range(table.shape[0]):
        occupied += table[cell, T_SLOT] != EMPTY
    if occupied != k:
        raise AssertionError("hash table holds ids of orders that are not in the book")
    return rows[:k]
