"""Compiled per-step work of the busiest agent kinds (numba).

A population's step is a few dozen numpy operations on arrays of a few dozen
agents, so its cost was the per-call overhead of each operation, not the
arithmetic: noise traders and market makers took half of a simulation's time.
These kernels do the same work in one compiled call per population and step.
The random draws stay in numpy, on each population's own generator and in the
same order as before, so a seed gives the same agents' decisions either way;
the kernels only turn draws, state and the visible book into orders.

Orders come back as the seven per-order columns of an ``OrderBatch`` (arrival
time, type, id, side, price in currency units, size, agent id); ``to_batch``
adds the population's trajectory and instrument.
"""

from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from agents.view import ASK_SIZE, BEST_ASK, BEST_BID, BID_SIZE, LAST, MID, VOLUME
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import OrderType

_LIMIT = int(OrderType.LIMIT)
_MARKET = int(OrderType.MARKET)
_CANCEL = int(OrderType.CANCEL)
NEVER = np.iinfo(np.int64).max  # a noise order's deadline once it is dead
COUNTER_MASK = (1 << 32) - 1  # low bits of an order id: the population's order counter
# rows of the noise traders' live-order table
COUNTER, OID, AGENT, DEADLINE, REMAINING = range(5)
TABLE_FIELDS = 5
# the noise kernel's float parameters, in this order
NOISE_PARAMS = ("market_share", "aggressive_share", "level_scale", "lots_scale", "life_scale",
                "max_level", "lot_size", "reference", "tick_size")  # fmt: skip


@njit(cache=True)
def _seen_row(view_times: np.ndarray, seen_at: int) -> int:
    """Row of the newest boundary snapshot at or before ``seen_at`` (the oldest if none is):
    ``view_times`` descends, row 0 is the newest."""
    h = len(view_times)
    r = 0
    while r < h and view_times[r] > seen_at:
        r += 1
    return min(r, h - 1)


@njit(cache=True)
def _new_columns(n: int):
    """Room for ``n`` orders, as the seven columns ``_put`` writes."""
    return (
        np.empty(n, np.int64),  # arrival time
        np.empty(n, np.int8),  # order type
        np.empty(n, np.int64),  # order id
        np.empty(n, np.int8),  # side
        np.empty(n, np.float64),  # price
        np.empty(n, np.float64),  # size
        np.empty(n, np.int64),  # agent id
    )


@njit(cache=True)
def _put(
    columns: tuple,
    row: int,
    time_ns: int,
    order_type: int,
    order_id: int,
    side: int,
    price: float,
    size: float,
    agent_id: int,
) -> None:
    """Write one order into row ``row`` of ``_new_columns``' columns."""
    columns[0][row] = time_ns
    columns[1][row] = order_type
    columns[2][row] = order_id
    columns[3][row] = side
    columns[4][row] = price
    columns[5][row] = size
    columns[6][row] = agent_id


@njit(cache=True)
def noise_step(
    table: np.ndarray,
    used: int,
    t0: int,
    t1: int,
    agent: np.ndarray,
    when: np.ndarray,
    u: np.ndarray,
    history: np.ndarray,
    view_times: np.ndarray,
    data_latency: np.ndarray,
    order_latency: np.ndarray,
    agent_ids: np.ndarray,
    counter: int,
    params: np.ndarray,
):
    """One step of ``NoiseTraders``: cancel what expires before ``t1``, then one order per
    wake-up (``agent``, ``when``, draws ``u`` of shape (5, k)); resting ones join ``table``,
    which has room for them. Returns (columns, used, newly dead, counter)."""
    market_share, aggressive_share = params[0], params[1]
    level_scale, lots_scale, life_scale = params[2], params[3], params[4]
    max_level, lot_size, reference, tick = params[5], int(params[6]), params[7], params[8]
    k = len(agent)
    nc = 0
    for c in range(used):
        if table[DEADLINE, c] < t1:
            nc += 1
    columns = _new_columns(nc + k)
    # 1. cancels first: on a tie in arrival time they are processed before the new orders
    row = 0
    for c in range(used):
        deadline = table[DEADLINE, c]
        if deadline < t1:
            a = table[AGENT, c]
            time_ns = max(deadline, t0) + order_latency[a]
            _put(columns, row, time_ns, _CANCEL, table[OID, c], 0, np.nan, 0.0, agent_ids[a])
            table[DEADLINE, c] = NEVER
            row += 1
    # 2. one order per wake-up, on the snapshot the agent can see
    for j in range(k):
        a = agent[j]
        seen = _seen_row(view_times, when[j] - data_latency[a])
        bid = history[seen, BEST_BID]
        ask = history[seen, BEST_ASK]
        mid = history[seen, MID]
        if not mid > 0:
            mid = reference
        buy = u[0, j] < 0.5
        # geometric level and lots (from 0) and an exponential lifetime, by inversion
        level = min(np.floor(np.log1p(-u[2, j]) * level_scale), max_level - 1)
        lots = np.int64(np.floor(np.log1p(-u[3, j]) * lots_scale)) + 1
        life = np.int64(np.log1p(-u[4, j]) * life_scale) + 1
        # passive: level 0 one tick inside a wide spread or at the touch of a one-tick
        # spread, never at or through the opposite touch the agent sees (0 = empty side)
        if buy:
            px = min(np.ceil(mid - 0.5) - level, (ask if ask > 0 else np.inf) - 1)
            cross = ask if ask > 0 else np.ceil(mid)
        else:
            px = max(np.floor(mid + 0.5) + level, bid + 1)
            cross = bid if bid > 0 else np.floor(mid)
        is_market = u[1, j] < market_share  # market_share is 0 in a call
        if u[1, j] < aggressive_share and not is_market:
            px = cross
        px = max(px, 1.0)
        order_id = (agent_ids[a] << 32) | counter
        counter += 1
        _put(
            columns,
            row,
            when[j] + order_latency[a],
            _MARKET if is_market else _LIMIT,
            order_id,
            1 if buy else -1,
            np.nan if is_market else px * tick,
            lots * lot_size,
            agent_ids[a],
        )
        if not is_market:
            # counters ascend, so appending keeps the table sorted by counter
            table[COUNTER, used] = order_id & COUNTER_MASK
            table[OID, used] = order_id
            table[AGENT, used] = a
            table[DEADLINE, used] = when[j] + life
            table[REMAINING, used] = lots * lot_size
            used += 1
        row += 1
    return columns, used, nc, counter


@njit(cache=True)
def noise_fills(table: np.ndarray, used: int, order_id: np.ndarray, size: np.ndarray) -> int:
    """Take fills off the tracked orders; returns how many orders they finished. Fills of
    market orders or of orders already cancelled or finished are not tracked."""
    finished = 0
    if used == 0:
        return 0
    counters = table[COUNTER, :used]
    for f in range(len(order_id)):
        pos = min(np.searchsorted(counters, order_id[f] & COUNTER_MASK), used - 1)
        if table[OID, pos] != order_id[f] or table[DEADLINE, pos] == NEVER:
            continue
        table[REMAINING, pos] -= size[f]
        if table[REMAINING, pos] <= 0:
            table[DEADLINE, pos] = NEVER
            finished += 1
    return finished


@njit(cache=True)
def maker_step(
    awake: np.ndarray,
    when: np.ndarray,
    history: np.ndarray,
    view_times: np.ndarray,
    data_latency: np.ndarray,
    order_latency: np.ndarray,
    agent_ids: np.ndarray,
    inventory: np.ndarray,
    quote_id: np.ndarray,
    quote_left: np.ndarray,
    counter: int,
    params: np.ndarray,
):
    """One step of ``MarketMakers``: the agents ``awake`` at ``when`` (their first wake-ups
    in the step, in time order) pull their live quotes and post new ones, bids before asks.
    Returns (columns, counter); ``quote_id`` / ``quote_left`` (row 0 bids, row 1 asks) are
    updated."""
    half_spread, skew, quote_size, max_inventory = params[0], params[1], params[2], params[3]
    reference, tick = params[4], params[5]
    size_shares = np.int64(quote_size)
    m = len(awake)
    px = np.empty((2, m))
    want = np.empty((2, m), np.bool_)
    n_cancel = 0
    n_new = 0
    for j in range(m):
        a = awake[j]
        mid = history[_seen_row(view_times, when[j] - data_latency[a]), MID]
        if not mid > 0:
            mid = reference
        inv = inventory[a]
        center = mid - skew * inv / max_inventory
        px[0, j] = max(np.floor(center - half_spread), 1.0)
        px[1, j] = max(np.ceil(center + half_spread), px[0, j] + 1.0)
        # a side is quoted when its fill keeps |inventory| within the cap
        want[0, j] = inv <= max_inventory - quote_size
        want[1, j] = -inv <= max_inventory - quote_size
        for s in range(2):
            n_cancel += quote_left[s, a] > 0
            n_new += want[s, j]
    columns = _new_columns(n_cancel + n_new)
    row = 0
    for s in range(2):  # pull the quotes that still rest (per our fills)
        for j in range(m):
            a = awake[j]
            if quote_left[s, a] > 0:
                time_ns = when[j] + order_latency[a]
                _put(columns, row, time_ns, _CANCEL, quote_id[s, a], 0, np.nan, 0.0, agent_ids[a])
                row += 1
    for s in range(2):  # new quotes; a side not quoted is forgotten
        for j in range(m):
            a = awake[j]
            quote_id[s, a] = -1
            quote_left[s, a] = 0
            if want[s, j]:
                order_id = (agent_ids[a] << 32) | counter
                counter += 1
                time_ns = when[j] + order_latency[a]
                px_s = px[s, j] * tick
                _put(
                    columns,
                    row,
                    time_ns,
                    _LIMIT,
                    order_id,
                    1 - 2 * s,
                    px_s,
                    quote_size,
                    agent_ids[a],
                )
                quote_id[s, a] = order_id
                quote_left[s, a] = size_shares
                row += 1
    return columns, counter


@njit(cache=True)
def maker_fills(
    quote_id: np.ndarray,
    quote_left: np.ndarray,
    agent_index: np.ndarray,
    order_id: np.ndarray,
    size: np.ndarray,
) -> None:
    """Take fills off the makers' live quotes (never below zero)."""
    for f in range(len(order_id)):
        a = agent_index[f]
        for s in range(2):
            if order_id[f] == quote_id[s, a]:
                quote_left[s, a] = max(quote_left[s, a] - size[f], 0)


@njit(cache=True)
def _forget_settled(pending: np.ndarray, pending_until: np.ndarray, t0: int) -> None:
    """Orders that arrived before ``t0`` have had their fills reported: no longer pending."""
    for a in range(len(pending)):
        if pending_until[a] < t0:
            pending[a] = 0


@njit(cache=True)
def _add_pending(agent, when, side, pending, pending_until, order_latency, order_size) -> None:
    """Orders sent: their signed shares pending until they arrive."""
    for j in range(len(agent)):
        a = agent[j]
        pending[a] += np.int64(side[j]) * order_size
        pending_until[a] = max(pending_until[a], when[j] + order_latency[a])


@njit(cache=True)
def value_step(
    agent: np.ndarray,
    when: np.ndarray,
    t0: int,
    history: np.ndarray,
    view_times: np.ndarray,
    data_latency: np.ndarray,
    order_latency: np.ndarray,
    inventory: np.ndarray,
    pending: np.ndarray,
    pending_until: np.ndarray,
    fundamental: float,
    offset: np.ndarray,
    threshold: float,
    order_size: int,
    cap: int,
    through_ticks: int,
):
    """``ValueTraders.act``'s decisions for the awake agents (``agent``, ``when``): who
    trades, at what side and IOC price (ticks); pending exposure updated. Returns (agent,
    when, side, price) of the orders."""
    _forget_settled(pending, pending_until, t0)
    k = len(agent)
    go, go_when = np.empty(k, np.int64), np.empty(k, np.int64)
    side, price = np.empty(k, np.int8), np.empty(k, np.float64)
    m = 0
    for i in range(k):
        a = agent[i]
        row = _seen_row(view_times, when[i] - data_latency[a])
        bid, ask = history[row, BEST_BID], history[row, BEST_ASK]
        value = max(fundamental + offset[a], 1.0)
        exposure = inventory[a] + pending[a]
        buy = ask > 0 and ask < value - threshold and exposure + order_size <= cap
        sell = bid > 0 and bid > value + threshold and exposure - order_size >= -cap
        if buy or sell:
            s = 1 if buy else -1
            go[m], go_when[m], side[m] = a, when[i], s
            price[m] = max((ask if buy else bid) + s * through_ticks, 1.0)
            m += 1
    _add_pending(go[:m], go_when[:m], side[:m], pending, pending_until, order_latency, order_size)
    return go[:m], go_when[:m], side[:m], price[:m]


@njit(cache=True)
def momentum_step(
    agent: np.ndarray,
    when: np.ndarray,
    t0: int,
    history: np.ndarray,
    view_times: np.ndarray,
    data_latency: np.ndarray,
    order_latency: np.ndarray,
    inventory: np.ndarray,
    pending: np.ndarray,
    pending_until: np.ndarray,
    signal: np.ndarray,
    threshold: np.ndarray,
    order_size: int,
    cap: int,
    ioc: bool,
    ioc_ticks: int,
    reference: float,
):
    """``MomentumTraders.act``'s decisions for the awake agents: trade with the signal
    (fast - slow EMA) past each agent's threshold, as market orders (price NaN) or IOC
    limits ``ioc_ticks`` through the opposite touch seen (the mid rounded away, when that
    side is empty); pending exposure updated. Returns (agent, when, side, price)."""
    _forget_settled(pending, pending_until, t0)
    k = len(agent)
    go, go_when = np.empty(k, np.int64), np.empty(k, np.int64)
    side, price = np.empty(k, np.int8), np.empty(k, np.float64)
    m = 0
    for i in range(k):
        a = agent[i]
        sig, thr = signal[a], threshold[a]
        exposure = inventory[a] + pending[a]
        buy = sig > thr and exposure + order_size <= cap
        sell = sig < -thr and exposure - order_size >= -cap
        if not (buy or sell):
            continue
        s = 1 if buy else -1
        go[m], go_when[m], side[m] = a, when[i], s
        price[m] = np.nan
        if ioc:
            row = _seen_row(view_times, when[i] - data_latency[a])
            bid, ask, mid = history[row, BEST_BID], history[row, BEST_ASK], history[row, MID]
            if not mid > 0:
                mid = reference
            if buy:
                touch = ask if ask > 0 else np.ceil(mid)
            else:
                touch = bid if bid > 0 else np.floor(mid)
            price[m] = max(touch + s * ioc_ticks, 1.0)
        m += 1
    _add_pending(go[:m], go_when[:m], side[:m], pending, pending_until, order_latency, order_size)
    return go[:m], go_when[:m], side[:m], price[:m]


@njit(cache=True)
def pushed_history(
    history: np.ndarray, times: np.ndarray, depth: np.ndarray, last: int, volume: int, t: int
) -> tuple[np.ndarray, np.ndarray]:
    """A view's history and times with a newest row in front (``depth``'s touch, the last
    trade price, the step's volume; the mid, or the last price when a side is empty), the
    oldest dropped: new arrays, so views handed out earlier keep their values."""
    new_history = np.empty_like(history)
    new_history[1:] = history[:-1]
    new_times = np.empty_like(times)
    new_times[1:] = times[:-1]
    new_times[0] = t
    ask_px, ask_sz, bid_px, bid_sz = depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3]
    row = new_history[0]
    row[:] = 0.0
    row[BEST_BID], row[BID_SIZE], row[BEST_ASK], row[ASK_SIZE] = bid_px, bid_sz, ask_px, ask_sz
    row[LAST] = last
    row[VOLUME] = volume
    if bid_px != 0 and ask_px != 0 and bid_px < ask_px:
        row[MID] = (bid_px + ask_px) / 2.0
    else:
        row[MID] = last
    return new_history, new_times


@njit(cache=True)
def first_wakeup_times(delay: np.ndarray, t0: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Agents whose first wake-up (``delay`` ns after ``t0``) falls in the step's ``span``,
    by time: (agent index, time). numpy's steps, in one call: the agents awake, their
    delays sorted (distinct floats: any sort gives the order numpy's gives), truncated."""
    awake = np.flatnonzero(delay < span)
    order = np.argsort(delay[awake])
    return awake[order], t0 + delay[awake[order]].astype(np.int64)


@njit(cache=True)
def add_positions(
    inventory: np.ndarray,
    cash: np.ndarray,
    agent_index: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    tick: float,
) -> None:
    """Fills into shares and cash (price in ticks), fill by fill."""
    for f in range(len(agent_index)):
        signed = np.int64(side[f]) * size[f]
        inventory[agent_index[f]] += signed
        cash[agent_index[f]] += -signed * price[f] * tick


def as_int64(values: np.ndarray) -> np.ndarray:
    """One dtype for the kernels' arguments (numba compiles once per argument type)."""
    return np.asarray(values, dtype=np.int64)


def to_batch(columns: tuple, trajectory: int, instrument: int) -> OrderBatch:
    """A kernel's seven order columns as an OrderBatch of one book."""
    time_ns, otype, oid, side, price, size, agent_id = columns
    n = len(time_ns)
    trajectory_id = np.empty(n, np.int32)
    trajectory_id.fill(trajectory)
    instrument_id = np.empty(n, np.int32)
    instrument_id.fill(instrument)
    return OrderBatch.of_columns(
        (time_ns, trajectory_id, instrument_id, otype, oid, side, price, size, agent_id)
    )


# PCG64's C functions (every agent's generator is a PCG64), called by address from compiled
# code: the addresses are arguments, so the compiled code is cached like the rest
_PCG64 = np.random.PCG64(0).ctypes
_NEXT_UINT32 = ctypes.cast(_PCG64.next_uint32, ctypes.c_void_p).value
_NEXT_UINT64 = ctypes.cast(_PCG64.next_uint64, ctypes.c_void_p).value
_U32 = np.uint64(0xFFFFFFFF)
_U64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _next_bits(bits: int):
    """A call of a bit generator's ``next_uint<bits>(void *state)`` given by address."""

    @intrinsic
    def call(typingctx, function, state):
        result = types.uint32 if bits == 32 else types.uint64

        def codegen(context, builder, signature, args):
            void_p = ir.IntType(8).as_pointer()
            kind = ir.FunctionType(ir.IntType(bits), [void_p])
            target = builder.inttoptr(args[0], kind.as_pointer())
            return builder.call(target, [builder.inttoptr(args[1], void_p)])

        return result(types.intp, types.intp), codegen

    return call


_next_uint32, _next_uint64 = _next_bits(32), _next_bits(64)


@njit(cache=True)
def _mul_128(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """(high, low) 64 bits of the 128-bit product a * b."""
    s32 = np.uint64(32)
    a_lo, a_hi, b_lo, b_hi = a & _U32, a >> s32, b & _U32, b >> s32
    lo_lo, hi_lo, lo_hi = a_lo * b_lo, a_hi * b_lo, a_lo * b_hi
    cross = (lo_lo >> s32) + (hi_lo & _U32) + lo_hi
    return a_hi * b_hi + (hi_lo >> s32) + (cross >> s32), (cross << s32) | (lo_lo & _U32)


@njit(cache=True)
def _pcg64_integers(next32: int, next64: int, state: int, low: int, high: int, n: int):
    """numpy's ``random_bounded_uint64_fill`` (Lemire's method, as ``Generator.integers``
    draws int64 in [low, high)): the same bits consumed, the same numbers."""
    out = np.empty(n, np.int64)
    rng = np.uint64(high - 1 - low)
    off = np.uint64(low)
    if rng == 0:
        out[:] = low
    elif rng < _U32:
        excl = rng + np.uint64(1)
        for i in range(n):
            m = np.uint64(_next_uint32(next32, state)) * excl
            if (m & _U32) < excl:
                threshold = (_U32 - rng) % excl
                while (m & _U32) < threshold:
                    m = np.uint64(_next_uint32(next32, state)) * excl
            out[i] = np.int64(off + (m >> np.uint64(32)))
    elif rng == _U32:
        for i in range(n):
            out[i] = np.int64(off + np.uint64(_next_uint32(next32, state)))
    elif rng == _U64:
        for i in range(n):
            out[i] = np.int64(off + _next_uint64(next64, state))
    else:
        excl = rng + np.uint64(1)
        for i in range(n):
            high_bits, low_bits = _mul_128(_next_uint64(next64, state), excl)
            if low_bits < excl:
                threshold = (_U64 - rng) % excl
                while low_bits < threshold:
                    high_bits, low_bits = _mul_128(_next_uint64(next64, state), excl)
            out[i] = np.int64(off + high_bits)
    return out


def integers(rng: np.random.Generator, low: int, high: int, size: int) -> np.ndarray:
    """``rng.integers(low, high, size=size)`` (int64), the same numbers from the same draws,
    without the few microseconds numpy spends per call around them (a population draws
    twice per step)."""
    bits = rng.bit_generator
    if type(bits) is not np.random.PCG64 or size <= 0 or not low < high:
        return rng.integers(low, high, size=size)
    return _pcg64_integers(_NEXT_UINT32, _NEXT_UINT64, bits.ctypes.state_address, low, high, size)
