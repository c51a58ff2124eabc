"""Trained RL policies as an agent kind (``rl_policy``), and what a role does with an action.

``role_orders`` turns one agent's action into orders; the RL environment
(``mars_ray.rl.env``) and the ``rl_policy`` kind both call it, so a policy trades in
``mars-ray simulate`` exactly as it did in training. ``PolicyWeights`` is a trained
policy's actor network as numpy arrays (``policies/ROLE.npz``, exported by
``mars-ray rl train``): no Ray and no torch here, and one matrix product per layer for all
agents of a book at once.

The agent decides once every ``step_s`` seconds within [start, end): it cancels its resting
orders and sends what its action says (the mean action of the policy, deterministic; the
execution peg's rounding draws from the population's seeded generator, as in training).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from agents.base import NO_ORDERS, AgentParams, AgentPopulation
from agents.rl_features import LEVELS, OwnState, observations
from agents.view import MID, Fills, MarketView
from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.clock import Clock, parse_clock
from mars_ray.schema.events import OrderType
from mars_ray.schema.phases import Phase
from mars_ray.schema.quantities import Shares

Role = Literal["execution", "market_maker", "directional"]
ACTION_DIMS = {"execution": 2, "market_maker": 4, "directional": 1}
LIMIT, MARKET = int(OrderType.LIMIT), int(OrderType.MARKET)
# The policies that ship with the package: a run folder of `mars-ray rl train
# configs/rl/market.yaml` cut to what acting needs (config.json, policies/ROLE.npz)
SHIPPED = Path(__file__).resolve().parent / "rl_shipped"


class RoleParams(AgentParams):
    """What a role's agent is asked to do (the env's roles extend this with a count)."""

    role: Role
    side: Literal["buy", "sell"] = "buy"
    quantity: Shares = Field(default=5_000, description="execution: parent order, shares")
    max_inventory: Shares = Field(default=2_000, description="|position| cap, shares")
    lot: Shares = Field(default=100, description="shares of a full quote / reward unit")
    max_offset_ticks: int = Field(default=10, ge=1, le=1000, description="market_maker")
    min_offset_ticks: int = Field(
        default=1, ge=1, le=1000, description="market_maker: closest quote to the mid, ticks"
    )

    @model_validator(mode="after")
    def _offsets(self) -> RoleParams:
        if self.min_offset_ticks > self.max_offset_ticks:
            raise ValueError(
                f"min_offset_ticks ({self.min_offset_ticks}) must not exceed "
                f"max_offset_ticks ({self.max_offset_ticks})"
            )
        return self

    @property
    def sign(self) -> int:
        return 1 if self.side == "buy" else -1

    @property
    def scale(self) -> float:
        """The shares that observations of position and orders are divided by."""
        return float(self.quantity if self.role == "execution" else self.max_inventory)


def pace_factor(pace: float) -> float:
    """The execution role's slice, in units of the even (TWAP) slice remaining / steps left:
    2^max(pace, 0), from even (pace <= 0) to twice (1). Never below even, so a slow policy
    cannot leave the parent order to the clean-up's market order."""
    return 2.0 ** max(pace, 0.0)


def peg_ticks(aggression: float, spread: int, dither: float = 0.5) -> int:
    """The execution role's limit, in ticks from its own touch toward the opposite one:
    (spread + 1)^|a| - 1, geometric so that single ticks near the touch are wide bands of
    the action; a = 1 is the opposite touch (taking what rests there), a < 0 as far behind
    the own touch. ``dither`` in [0, 1) rounds the fraction: floor(x + dither), so with a
    uniform dither the expected peg is x itself and smooth in the action (a policy gradient
    sees every small change), where nearest rounding (dither 0.5) makes it a staircase."""
    ticks = math.floor((spread + 1.0) ** abs(aggression) - 1.0 + dither)
    return ticks if aggression >= 0 else -ticks


def role_orders(
    role: RoleParams,
    action: np.ndarray,
    bid: int,
    ask: int,
    mid: float,
    inventory: int,
    executed: int,
    steps_left: int,
    dither: float = 0.5,
) -> list[tuple[int, int, float, int]]:
    """(order type, side, price in ticks, size) for one agent's action in [-1, 1]^d; its
    resting orders are cancelled first (the caller does that). ``dither``: a uniform draw in
    [0, 1) from the caller's seeded generator, for the execution peg (``peg_ticks``).
    docs/rl.md has the table."""
    out: list[tuple[int, int, float, int]] = []
    if role.role == "execution":
        left = role.quantity - executed
        size = min(left, round(left / max(steps_left, 1) * pace_factor(action[0])))
        s = role.sign
        # the own touch and the opposite one, from the mid when a side is empty
        near = (bid or math.ceil(mid) - 1) if s > 0 else (ask or math.floor(mid) + 1)
        far = (ask or math.floor(mid) + 1) if s > 0 else (bid or math.ceil(mid) - 1)
        spread = max(s * (far - near), 1)
        out.append((LIMIT, s, near + s * peg_ticks(action[1], spread, dither), size))
    elif role.role == "market_maker":
        low = role.min_offset_ticks
        span = max(role.max_offset_ticks - low, 0)
        bid_off = low + round((action[0] + 1) / 2 * span)
        ask_off = low + round((action[1] + 1) / 2 * span)
        bid_size = min(round((action[2] + 1) / 2 * role.lot), role.max_inventory - inventory)
        ask_size = min(round((action[3] + 1) / 2 * role.lot), role.max_inventory + inventory)
        out.append((LIMIT, 1, math.floor(mid - bid_off + 0.5), bid_size))
        out.append((LIMIT, -1, math.ceil(mid + ask_off - 0.5), ask_size))
    else:  # directional: a target position, reached with a market order
        diff = round(action[0] * role.max_inventory) - inventory
        out.append((MARKET, 1 if diff > 0 else -1, math.nan, abs(diff)))
    return [(k, s, max(p, 1) if k != MARKET else p, z) for k, s, p, z in out if z > 0]


class PolicyWeights:
    """A trained policy's actor: dense layers, tanh between the hidden ones (RLlib's
    default MLP); the output's first half is the action mean, clipped to [-1, 1]."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], action_dim: int) -> None:
        self.layers = layers
        self.action_dim = action_dim

    @classmethod
    def load(cls, path: str | Path) -> PolicyWeights:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no policy weights at {path}")
        with np.load(path) as data:
            n = int(data["n_layers"])
            layers = [(data[f"w{i}"], data[f"b{i}"]) for i in range(n)]
            return cls(layers, int(data["action_dim"]))

    def save(self, path: str | Path) -> None:
        arrays: dict[str, Any] = {"n_layers": len(self.layers), "action_dim": self.action_dim}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        np.savez(path, **arrays)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """(n, N_OBS) observations → (n, action_dim) actions in [-1, 1]."""
        x = np.asarray(obs, dtype=np.float32)
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = np.tanh(x)
        return np.clip(x[:, : self.action_dim], -1.0, 1.0)


class RLPolicyParams(RoleParams):
    checkpoint: str | None = Field(
        default=None,
        description="a run folder of `mars-ray rl train`, or a .npz file; default the "
        "shipped policies (trained on configs/rl/market.yaml)",
    )
    policy: str | None = Field(default=None, description="the policy (role) in it; default role")
    step_s: float = Field(default=5.0, gt=0, le=3600, description="seconds between decisions")
    start: Clock = Field(default=parse_clock("10:00"), description="'HH:MM[:SS]'")
    end: Clock = Field(default=parse_clock("15:30"), description="'HH:MM[:SS]'")

    @model_validator(mode="after")
    def _weights_exist(self) -> RLPolicyParams:
        if not self.weights_path().is_file():
            raise ValueError(f"no policy weights at {self.weights_path()}")
        return self

    def weights_path(self) -> Path:
        path = Path(self.checkpoint) if self.checkpoint else SHIPPED
        if path.suffix == ".npz":
            return path
        return path / "policies" / f"{self.policy or self.role}.npz"


class RLPolicyAgents(AgentPopulation):
    """Agents that trade by a trained policy: one batched forward pass per decision."""

    kind = "rl_policy"
    params_model = RLPolicyParams
    params: RLPolicyParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p = self.params
        self.weights = PolicyWeights.load(p.weights_path())
        if self.weights.action_dim != ACTION_DIMS[p.role]:
            raise ValueError(
                f"policy {p.weights_path()} acts in {self.weights.action_dim} dimensions; "
                f"role {p.role!r} needs {ACTION_DIMS[p.role]}"
            )
        self.step_ns = round(p.step_s * 1e9)
        self.next_decision = p.start
        self.steps = max(1, (p.end - p.start) // self.step_ns)
        self.executed = np.zeros(self.n, dtype=np.int64)
        self.live: list[dict[int, list[int]]] = [{} for _ in range(self.n)]

    def act(self, t0: int, t1: int, view: MarketView) -> OrderBatch:
        p = self.params
        if view.phase != Phase.CONTINUOUS or not (self.next_decision < t1 and t0 < p.end):
            return NO_ORDERS
        self.next_decision = max(self.next_decision, t0) + self.step_ns
        k = min(self.steps, max(0, (t0 - p.start) // self.step_ns))
        depth = view.depth[:LEVELS]
        mid = float(view.history[0, MID])
        bid, ask = int(depth[0, 2]), int(depth[0, 0])
        owns = [
            OwnState(
                inventory=float(self.inventory[i]),
                cash=float(self.cash[i]) / self.tick_size,
                open_bid=sum(z for s, z in self.live[i].values() if s == 1),
                open_ask=sum(z for s, z in self.live[i].values() if s == -1),
                time_left=(self.steps - k) / self.steps,
                quantity_left=(p.quantity - self.executed[i]) / p.quantity
                if p.role == "execution"
                else 0.0,
                scale=p.scale,
                reference_ticks=float(self.reference_ticks),
            )
            for i in range(self.n)
        ]
        obs = observations(depth, view.history, owns)
        actions = self.weights.act(obs)
        rows: list[tuple] = []
        for i in range(self.n):
            for oid in sorted(self.live[i]):
                rows.append((i, int(OrderType.CANCEL), oid, 0, math.nan, 0))
            self.live[i].clear()
            for kind, side, price, size in role_orders(
                p, actions[i], bid, ask, mid, int(self.inventory[i]), int(self.executed[i]),
                self.steps - k, float(self.rng.random()),
            ):  # fmt: skip
                oid = int(self.new_order_ids(np.array([i]))[0])
                rows.append((i, kind, oid, side, price, size))
                if kind == LIMIT:
                    self.live[i][oid] = [side, size]
        if not rows:
            return NO_ORDERS
        index = np.array([r[0] for r in rows], dtype=np.int64)
        return self.orders(
            index,
            np.full(len(rows), max(t0, p.start), dtype=np.int64),
            np.array([r[1] for r in rows], dtype=np.int8),
            np.array([r[3] for r in rows], dtype=np.int8),
            np.array([r[4] for r in rows], dtype=np.float64),
            np.array([r[5] for r in rows], dtype=np.float64),
            order_id=np.array([r[2] for r in rows], dtype=np.int64),
        )

    def on_fills(self, fills: Fills) -> None:
        super().on_fills(fills)
        p = self.params
        for i, oid, side, size in zip(
            np.asarray(fills.agent_index).tolist(),
            np.asarray(fills.order_id).tolist(),
            np.asarray(fills.side).tolist(),
            np.asarray(fills.size).tolist(),
            strict=True,
        ):
            if p.role == "execution" and side == p.sign:
                self.executed[i] += size
            live = self.live[i].get(oid)
            if live is not None:
                live[1] -= size
                if live[1] <= 0:
                    del self.live[i][oid]
