"""MarketEnv: several learning agents trading one simulated market, an RLlib MultiAgentEnv.

The market is the simulator's own: a ``ShardRuntime`` (books and background agents, in
process) runs the episode. The learning agents' actions become orders that enter through
``ShardRuntime.submit_orders`` with each agent's order latency, so they are validated,
delayed and matched exactly as every other agent's orders; their events are read back
from the book's records (fills, cancels, rejects with their reason).

One step (``episode.step_s`` simulated seconds):
1. every agent's action is checked against its space (a clear error otherwise);
2. its resting orders are cancelled and its new orders sent (see ``_orders``);
3. the shard runs to the end of the step (background agents act, everything matches);
4. fills update positions; rewards, observations (``agents.rl_features``) and infos.
On the last step an execution agent's remainder is sent as a market order and the shard
runs one more step for it (the clean-up); what is still undone pays ``leftover_penalty_bp``.

Rewards (docs/rl.md): execution, minus the shortfall of this step's fills against the
arrival mid, in bp of the parent order; market_maker and directional, the change of
mark-to-market PnL in ticks x shares / ``lot``, minus ``inventory_penalty`` x
(position / max_inventory)^2. A seed fixes the episode: same seed, same actions, same
episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from agents.rl_features import CLIP, LEVELS, N_OBS, RETURNS, OwnState, observations
from agents.rl_policy import ACTION_DIMS, LIMIT, MARKET, role_orders
from agents.view import MID, N_FEATURES, VOLUME
from mars_ray.exchange.orders import OrderBatch
from mars_ray.rl.config import EnvConfig, RoleConfig
from mars_ray.schema import reasons
from mars_ray.schema.events import EventType, OrderType
from mars_ray.schema.validation import ConfigError, validate_model
from mars_ray.sim.config import SimulationConfig, parse_config
from mars_ray.sim.shard import ShardRuntime, agent_blocks

_TRADE, _CANCEL, _REJECT = int(EventType.TRADE), int(EventType.CANCEL), int(EventType.REJECT)
_CANCEL_ORDER = int(OrderType.CANCEL)
_TOLERANCE = 1e-6  # an action may exceed [-1, 1] by this much (float32 rounding)


def role_of(agent: str) -> str:
    """The role (and so the policy) of an agent id such as ``market_maker_0``."""
    return agent.rsplit("_", 1)[0]


@dataclass
class LearningAgent:
    """One learning agent's state in an episode (shares, ticks)."""

    name: str
    role: RoleConfig
    agent_id: int
    latency_ns: int
    inventory: int = 0
    cash: float = 0.0  # ticks x shares
    executed: int = 0  # execution: shares done (in the parent order's direction)
    live: dict[int, list[int]] = field(default_factory=dict)  # order id -> [side, remaining]
    counter: int = 0
    value: float = 0.0  # mark-to-market at the last step, ticks x shares
    step_shortfall: float = 0.0  # execution: shares x bp against the arrival mid, this step

    def order_id(self) -> int:
        self.counter += 1
        return (self.agent_id << 32) | self.counter

    def open_size(self, side: int) -> int:
        return sum(left for s, left in self.live.values() if s == side)


class MarketEnv(MultiAgentEnv):
    """Learning agents by role (``execution_0``, ``market_maker_0``, ...) on one market."""

    def __init__(self, config: EnvConfig | dict | None = None) -> None:
        super().__init__()
        worker = 0
        if not isinstance(config, EnvConfig):
            raw = dict(config or {})
            worker = int(getattr(config, "worker_index", 0)) * 1024 + int(
                getattr(config, "vector_index", 0)
            )
            config = validate_model(EnvConfig, raw, "env")
        self.config = config
        self.sim_config = market_config(config)
        self.possible_agents = [
            f"{group.role}_{i}" for group in config.agents for i in range(group.count)
        ]
        if len(set(self.possible_agents)) != len(self.possible_agents):
            raise ConfigError("env.agents: a role is listed twice; give it one entry with count")
        self.agents = list(self.possible_agents)
        self.roles = {
            f"{group.role}_{i}": group for group in config.agents for i in range(group.count)
        }
        box = gym.spaces.Box(-CLIP, CLIP, shape=(N_OBS,), dtype=np.float32)
        self.observation_spaces = {a: box for a in self.possible_agents}
        self.action_spaces = {
            a: gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIMS[role_of(a)],), dtype=np.float32)
            for a in self.possible_agents
        }
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        blocks = agent_blocks(self.sim_config)
        self.first_agent_id = max((b.first_id + b.count for b in blocks), default=1)
        self.step_ns = config.episode.step_ns
        self.seeds = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(worker,)))
        self.shard: ShardRuntime | None = None
        self._new_episode(config.seed)  # fails here, not mid-training, if the kernel refuses

    # ---------------------------------------------------------------- episode
    def _new_episode(self, seed: int) -> None:
        sim = self.sim_config.model_copy(update={"seed": seed})
        self.shard = ShardRuntime(sim, 0)
        self.book_state = self.shard.state[(0, 0)]
        self.book = self.book_state.book
        self.tick = self.config.instrument.tick_size
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 << 20,)))
        self.learners: dict[str, LearningAgent] = {}
        for k, name in enumerate(self.possible_agents):
            lo, hi = self.roles[name].latency.order_us
            latency = round(rng.uniform(lo, hi) * 1000.0)
            self.learners[name] = LearningAgent(
                name, self.roles[name], self.first_agent_id + k, latency
            )
        self.by_id = {a.agent_id: a for a in self.learners.values()}
        self.history = np.zeros((RETURNS + 1, N_FEATURES), dtype=np.float64)
        self.k = 0
        self.t = self.sim_config.session.pre_open

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        if seed is None:
            seed = int(self.seeds.integers(0, 2**62))
        else:
            self.seeds = np.random.default_rng(seed)
        self._new_episode(seed)
        self._run(self.config.episode.start)  # the background builds the book
        self.history[:] = 0.0
        mid = self._mid()
        self.history[:, MID] = mid
        self.arrival_mid = mid
        for agent in self.learners.values():
            agent.value = 0.0
        self.agents = list(self.possible_agents)
        return self._observations(), {a: {"arrival_mid_ticks": mid} for a in self.agents}

    def step(self, action_dict: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if self.shard is None or self.k >= self.config.episode.steps:
            raise RuntimeError("step() after the episode ended: call reset() first")
        actions = self._checked(action_dict)
        t = self.t
        touch = self._touch()
        batches = [self._orders(self.learners[a], act, t, touch) for a, act in actions.items()]
        self.shard.submit_orders(OrderBatch.concat(batches))
        self.k += 1
        last = self.k >= self.config.episode.steps
        infos: dict[str, dict] = {a: {"rejected": []} for a in self.agents}
        volume = self._run(t + self.step_ns, infos)
        if last:
            volume += self._clean_up(infos)
        mid = self._mid()
        self.history[1:] = self.history[:-1]
        self.history[0, MID], self.history[0, VOLUME] = mid, volume
        rewards = {a: self._reward(self.learners[a], mid, last) for a in self.agents}
        for a in self.agents:
            agent = self.learners[a]
            infos[a].update(
                inventory=agent.inventory, cash_ticks=agent.cash, executed=agent.executed
            )
        terminated = {a: last for a in self.agents}
        terminated["__all__"] = last
        truncated = {a: False for a in self.agents}
        truncated["__all__"] = False
        return self._observations(), rewards, terminated, truncated, infos

    # ---------------------------------------------------------------- actions
    def _checked(self, action_dict: dict[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for name, action in action_dict.items():
            if name not in self.learners:
                raise ValueError(f"action for unknown agent {name!r}; agents: {self.agents}")
            space = self.action_spaces[name]
            value = np.asarray(action, dtype=np.float64).reshape(-1)
            if (
                value.shape != space.shape
                or not np.all(np.isfinite(value))
                or np.any(np.abs(value) > 1.0 + _TOLERANCE)
            ):
                raise ValueError(
                    f"agent {name!r}: action {np.asarray(action).tolist()!r} is outside its "
                    f"action space Box(-1, 1, shape={space.shape})"
                )
            out[name] = np.clip(value, -1.0, 1.0)
        return out

    def _orders(
        self, agent: LearningAgent, action: np.ndarray, t: int, touch: tuple[int, int, float]
    ) -> OrderBatch:
        """Cancel the agent's resting orders, then send what its role does with ``action``."""
        at = t + agent.latency_ns
        rows = self._cancels(agent, at)
        bid, ask, mid = touch
        steps_left = self.config.episode.steps - self.k
        for kind, side, price_ticks, size in role_orders(
            agent.role, action, bid, ask, mid, agent.inventory, agent.executed, steps_left
        ):
            oid = agent.order_id()
            price = price_ticks * self.tick
            rows.append((at, 0, 0, kind, oid, side, price, float(size), agent.agent_id))
            if kind == LIMIT:
                agent.live[oid] = [side, size]
        return OrderBatch.from_rows(rows)

    @staticmethod
    def _cancels(agent: LearningAgent, at: int) -> list[tuple]:
        """Cancel requests (arriving at ``at``) for every resting order of ``agent``."""
        rows = [
            (at, 0, 0, _CANCEL_ORDER, oid, 0, math.nan, 0.0, agent.agent_id) for oid in agent.live
        ]
        agent.live.clear()
        return rows

    def _clean_up(self, infos: dict[str, dict]) -> int:
        """The last step's market orders for what execution agents have left; one more step."""
        rows = []
        for agent in self.learners.values():
            left = agent.role.quantity - agent.executed
            if agent.role.role != "execution" or left <= 0:
                continue
            at = self.t + agent.latency_ns
            rows += self._cancels(agent, at)
            rows.append(
                (
                    at,
                    0,
                    0,
                    MARKET,
                    agent.order_id(),
                    agent.role.sign,
                    math.nan,
                    float(left),
                    agent.agent_id,
                )
            )
        if not rows:
            return 0
        assert self.shard is not None
        self.shard.submit_orders(OrderBatch.from_rows(rows))
        return self._run(self.t + self.step_ns, infos)

    # ---------------------------------------------------------------- the market
    def _run(self, until: int, infos: dict[str, dict] | None = None) -> int:
        """Run the shard to ``until``; settle the learning agents' events; traded volume."""
        assert self.shard is not None
        self.shard.run_until(until)
        self.t = until
        st = self.book_state
        chunks, st.chunks = st.chunks, []  # the env keeps no event history
        volume = 0
        for _, records in chunks:
            volume += int(records["size"][records["event_type"] == _TRADE].sum())
            self._settle(records, infos)
        return volume

    def _settle(self, records: np.ndarray, infos: dict[str, dict] | None) -> None:
        lo, hi = self.first_agent_id, self.first_agent_id + len(self.learners)
        agent, contra = records["agent_id"], records["contra_agent_id"]
        ours = ((agent >= lo) & (agent < hi)) | ((contra >= lo) & (contra < hi))
        for row in records[ours].tolist():
            # ROW_FIELDS order (mars_ray.schema.events)
            _, etype, oid, side, price, size, aid, coid, caid, reason = row
            if etype == _TRADE:
                for owner, order, s in ((aid, oid, side), (caid, coid, -side)):
                    agent = self.by_id.get(owner)
                    if agent is not None:
                        self._fill(agent, order, s, price, size)
            elif etype == _CANCEL and aid in self.by_id:
                live = self.by_id[aid].live.get(oid)
                if live is not None:
                    live[1] -= size
                    if live[1] <= 0:
                        del self.by_id[aid].live[oid]
            elif etype == _REJECT and aid in self.by_id:
                agent = self.by_id[aid]
                agent.live.pop(oid, None)
                if infos is not None and agent.name in infos:
                    infos[agent.name]["rejected"].append(
                        {"order_id": oid, "reason": reasons.name(reason)}
                    )

    def _fill(self, agent: LearningAgent, oid: int, side: int, price: int, size: int) -> None:
        agent.inventory += side * size
        agent.cash -= side * price * size
        if agent.role.role == "execution" and side == agent.role.sign:
            agent.executed += size
            bp = agent.role.sign * (price - self.arrival_mid) / self.arrival_mid * 1e4
            agent.step_shortfall += size * bp
        live = agent.live.get(oid)
        if live is not None:
            live[1] -= size
            if live[1] <= 0:
                del agent.live[oid]

    def _touch(self) -> tuple[int, int, float]:
        """Best bid and ask in ticks (0: none) and the mid."""
        depth = self.book.snapshot(1)
        ask, bid = int(depth[0, 0]), int(depth[0, 2])
        return bid, ask, self._mid(bid, ask)

    def _mid(self, bid: int | None = None, ask: int | None = None) -> float:
        if bid is None or ask is None:
            depth = self.book.snapshot(1)
            ask, bid = int(depth[0, 0]), int(depth[0, 2])
        if bid > 0 and ask > 0 and bid < ask:
            return (bid + ask) / 2.0
        last = self.book.last_trade_price
        if last is not None:
            return float(last)
        previous = float(self.history[0, MID])
        return previous if previous > 0 else float(self.book_state.reference)

    # ---------------------------------------------------------------- rewards, observations
    def _reward(self, agent: LearningAgent, mid: float, last: bool) -> float:
        role = agent.role
        if role.role == "execution":
            shortfall, agent.step_shortfall = agent.step_shortfall, 0.0
            reward = -shortfall / role.quantity
            if last:
                left = max(role.quantity - agent.executed, 0)
                reward -= role.leftover_penalty_bp * left / role.quantity
            return float(reward)
        value = agent.cash + agent.inventory * mid
        change, agent.value = value - agent.value, value
        penalty = role.inventory_penalty * (agent.inventory / role.max_inventory) ** 2
        return float(change / role.lot - penalty)

    def _observations(self) -> dict[str, np.ndarray]:
        depth = self.book.snapshot(LEVELS)
        steps = self.config.episode.steps
        owns = []
        for name in self.agents:
            agent = self.learners[name]
            left = agent.role.quantity - agent.executed
            own = OwnState(
                inventory=agent.inventory,
                cash=agent.cash,
                open_bid=agent.open_size(1),
                open_ask=agent.open_size(-1),
                time_left=(steps - self.k) / steps,
                quantity_left=left / agent.role.quantity if agent.role.role == "execution" else 0.0,
                scale=agent.role.scale,
                reference_ticks=float(self.book_state.reference),
            )
            owns.append(own)
        rows = observations(depth, self.history, owns)
        return dict(zip(self.agents, rows, strict=True))


def market_config(config: EnvConfig) -> SimulationConfig:
    """The simulation an episode runs: the env's instrument and background, from ``open``
    (the opening auction) to one step after the episode's clean-up step."""
    ep = config.episode
    end = ep.start + (ep.steps + 2) * ep.step_ns
    raw = {
        "name": "rl-env",
        "seed": config.seed,
        "session": {
            "pre_open": ep.open,
            "open": ep.open,
            "closing_call": end,
            "close": end,
        },
        "kernel": {"step_ms": config.kernel_step_ms, "sync_ms": config.kernel_step_ms},
        "instruments": [config.instrument.model_dump()],
        "agents": [group.model_dump() for group in config.background],
        "output": {"snapshot_every_ms": 86_400_000, "snapshot_levels": LEVELS},
    }
    return parse_config(raw, "env (the market it builds)")
