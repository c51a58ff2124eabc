"""MarketEnv: several learning agents trading one simulated market, an RLlib MultiAgentEnv.

The market is the simulator's own: a ``ShardRuntime`` (books and background agents, in
process) runs the episode, for ``trajectories`` independent samples of the same market at
once (one kernel step, one exchange call and, with an ``lmm`` background, one model batch
for all of them); trajectory k's agents are the same roles under their own names
(``agent_names``). The learning agents' actions become orders that enter through
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
from mars_ray.sim.book_events import event_rows, rows_of_agents_from
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
    trajectory: int = 0
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


class Trajectory:
    """One trajectory's book and learning agents; agent ids repeat across trajectories (as
    in the simulator, the trajectory id tells their orders apart)."""

    def __init__(self, index: int, book_state: Any, learners: list[LearningAgent]) -> None:
        self.index = index
        self.book_state = book_state
        self.book = book_state.book
        self.learners = learners
        self.by_id = {a.agent_id: a for a in learners}
        self.history = np.zeros((RETURNS + 1, N_FEATURES), dtype=np.float64)
        self.arrival_mid = 0.0
        self.volume_seen = 0  # the book's traded shares already counted in a step


def agent_names(config: EnvConfig) -> list[list[str]]:
    """Each trajectory's agent ids: role by role, numbered on across trajectories
    (trajectory 0 has ``execution_0``.., trajectory 1 ``execution_C``.. for C per role)."""
    return [
        [
            f"{group.role}_{k * group.count + i}"
            for group in config.agents
            for i in range(group.count)
        ]
        for k in range(config.trajectories)
    ]


class MarketEnv(MultiAgentEnv):
    """Learning agents by role (``execution_0``, ``market_maker_0``, ...) on one market,
    ``trajectories`` samples of it stepped together."""

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
        self.names = agent_names(config)
        self.possible_agents = [name for names in self.names for name in names]
        if len(set(self.possible_agents)) != len(self.possible_agents):
            raise ConfigError("env.agents: a role is listed twice; give it one entry with count")
        self.agents = list(self.possible_agents)
        groups = [group for group in config.agents for _ in range(group.count)]
        self.roles = {
            name: group for names in self.names for name, group in zip(names, groups, strict=True)
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
        self.tick = self.config.instrument.tick_size
        self.learners: dict[str, LearningAgent] = {}
        self.trajectories: list[Trajectory] = []
        for k, names in enumerate(self.names):
            # trajectory 0 draws as a one-trajectory env always did
            key = (1 << 20,) if k == 0 else (1 << 20, k)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
            learners = []
            for i, name in enumerate(names):
                lo, hi = self.roles[name].latency.order_us
                latency = round(rng.uniform(lo, hi) * 1000.0)
                agent = LearningAgent(name, self.roles[name], self.first_agent_id + i, latency, k)
                self.learners[name] = agent
                learners.append(agent)
            self.trajectories.append(Trajectory(k, self.shard.state[(k, 0)], learners))
        self.k = 0
        self.t = self.sim_config.session.pre_open

    # trajectory 0, under the names a one-trajectory env has always had
    @property
    def book_state(self) -> Any:
        return self.trajectories[0].book_state

    @property
    def book(self) -> Any:
        return self.trajectories[0].book

    @property
    def history(self) -> np.ndarray:
        return self.trajectories[0].history

    @property
    def arrival_mid(self) -> float:
        return self.trajectories[0].arrival_mid

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        if seed is None:
            seed = int(self.seeds.integers(0, 2**62))
        else:
            self.seeds = np.random.default_rng(seed)
        self._new_episode(seed)
        self._run(self.config.episode.start, settle=False)  # the background builds the book
        infos = {}
        for tr in self.trajectories:
            tr.history[:] = 0.0
            mid = self._mid(tr)
            tr.history[:, MID] = mid
            tr.arrival_mid = mid
            for agent in tr.learners:
                infos[agent.name] = {"arrival_mid_ticks": mid}
        self.agents = list(self.possible_agents)
        return self._observations(), infos

    def step(self, action_dict: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if self.shard is None or self.k >= self.config.episode.steps:
            raise RuntimeError("step() after the episode ended: call reset() first")
        actions = self._checked(action_dict)
        t = self.t
        rows: list[tuple] = []
        for tr in self.trajectories:
            touch = self._touch(tr)
            for agent in tr.learners:
                action = actions.get(agent.name)
                if action is not None:
                    rows += self._orders(agent, action, t, touch)
        if rows:
            self.shard.submit_orders(OrderBatch.from_rows(rows))
        self.k += 1
        last = self.k >= self.config.episode.steps
        infos: dict[str, dict] = {a: {"rejected": []} for a in self.agents}
        volumes = self._run(t + self.step_ns, infos)
        ended: dict[int, tuple[float, np.ndarray]] = {}
        if last:
            ended = self._clean_up(infos, volumes)
        rewards = {}
        for tr, volume in zip(self.trajectories, volumes, strict=True):
            mid = ended[tr.index][0] if tr.index in ended else self._mid(tr)
            history = tr.history
            history[1:] = history[:-1]
            history[0, MID], history[0, VOLUME] = mid, volume
            for agent in tr.learners:
                rewards[agent.name] = self._reward(agent, mid, last)
                infos[agent.name].update(
                    inventory=agent.inventory, cash_ticks=agent.cash, executed=agent.executed
                )
        terminated = dict.fromkeys(self.agents, last)
        terminated["__all__"] = last
        truncated = dict.fromkeys(self.agents, False)
        truncated["__all__"] = False
        return self._observations(ended), rewards, terminated, truncated, infos

    # ---------------------------------------------------------------- actions
    def _checked(self, action_dict: dict[str, Any]) -> dict[str, list[float]]:
        """Each action as a list of floats, clipped to [-1, 1] (Python floats compute every
        order exactly as float64 arrays did, faster)."""
        out = {}
        for name, action in action_dict.items():
            if name not in self.learners:
                raise ValueError(f"action for unknown agent {name!r}; agents: {self.agents}")
            space = self.action_spaces[name]
            value = np.asarray(action, dtype=np.float64).reshape(-1).tolist()
            # NaN fails the comparison too
            if len(value) != space.shape[0] or not all(abs(v) <= 1.0 + _TOLERANCE for v in value):
                raise ValueError(
                    f"agent {name!r}: action {np.asarray(action).tolist()!r} is outside its "
                    f"action space Box(-1, 1, shape={space.shape})"
                )
            out[name] = [-1.0 if v < -1.0 else 1.0 if v > 1.0 else v for v in value]
        return out

    def _orders(
        self, agent: LearningAgent, action: list[float], t: int, touch: tuple[int, int, float]
    ) -> list[tuple]:
        """Cancel the agent's resting orders, then send what its role does with ``action``:
        rows for ``OrderBatch.from_rows``."""
        at = t + agent.latency_ns
        rows = self._cancels(agent, at)
        bid, ask, mid = touch
        steps_left = self.config.episode.steps - self.k
        traj = agent.trajectory
        for kind, side, price_ticks, size in role_orders(
            agent.role, action, bid, ask, mid, agent.inventory, agent.executed, steps_left
        ):
            oid = agent.order_id()
            price = price_ticks * self.tick
            rows.append((at, traj, 0, kind, oid, side, price, float(size), agent.agent_id))
            if kind == LIMIT:
                agent.live[oid] = [side, size]
        return rows

    @staticmethod
    def _cancels(agent: LearningAgent, at: int) -> list[tuple]:
        """Cancel requests (arriving at ``at``) for every resting order of ``agent``."""
        traj, aid = agent.trajectory, agent.agent_id
        rows = [(at, traj, 0, _CANCEL_ORDER, oid, 0, math.nan, 0.0, aid) for oid in agent.live]
        agent.live.clear()
        return rows

    def _clean_up(
        self, infos: dict[str, dict], volumes: list[int]
    ) -> dict[int, tuple[float, np.ndarray]]:
        """The last step's market orders for what execution agents have left; one more step,
        its traded volume added to ``volumes``. A trajectory with nothing to clean up ends
        before that step, as it would alone: its (mid, depth) then, by trajectory index."""
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
                    agent.trajectory,
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
            return {}
        cleaning = {row[1] for row in rows}
        ended = {
            tr.index: (self._mid(tr), tr.book.snapshot(LEVELS))
            for tr in self.trajectories
            if tr.index not in cleaning
        }
        assert self.shard is not None
        self.shard.submit_orders(OrderBatch.from_rows(rows))
        more = self._run(self.t + self.step_ns, infos, settle=cleaning)
        for k in cleaning:
            volumes[k] += more[k]
        return ended

    # ---------------------------------------------------------------- the market
    def _run(
        self, until: int, infos: dict[str, dict] | None = None, settle: bool | set[int] = True
    ) -> list[int]:
        """Run the shard to ``until``; settle the learning agents' events (of the
        trajectories in ``settle``; none before they act: False); each trajectory's traded
        volume."""
        assert self.shard is not None
        self.shard.run_until(until)
        self.t = until
        volumes = []
        for tr in self.trajectories:
            st = tr.book_state
            chunks, st.chunks = st.chunks, []  # the env keeps no event history
            traded = st.stats.volume  # the shard counts every trade's shares as it settles
            volumes.append(traded - tr.volume_seen)
            tr.volume_seen = traded
            if settle is True or (settle and tr.index in settle):
                for _, records in chunks:
                    self._settle(tr, records, infos)
        return volumes

    def _settle(self, tr: Trajectory, records: np.ndarray, infos: dict[str, dict] | None) -> None:
        # the learning agents have the highest ids of the market (from first_agent_id)
        ours = rows_of_agents_from(event_rows(records), self.first_agent_id)
        if not len(ours):
            return
        by_id = tr.by_id
        for row in records[ours].tolist():
            # ROW_FIELDS order (mars_ray.schema.events)
            _, etype, oid, side, price, size, aid, coid, caid, reason = row
            if etype == _TRADE:
                for owner, order, s in ((aid, oid, side), (caid, coid, -side)):
                    learner = by_id.get(owner)
                    if learner is not None:
                        self._fill(tr, learner, order, s, price, size)
            elif etype == _CANCEL and aid in by_id:
                live = by_id[aid].live.get(oid)
                if live is not None:
                    live[1] -= size
                    if live[1] <= 0:
                        del by_id[aid].live[oid]
            elif etype == _REJECT and aid in by_id:
                learner = by_id[aid]
                learner.live.pop(oid, None)
                if infos is not None and learner.name in infos:
                    infos[learner.name]["rejected"].append(
                        {"order_id": oid, "reason": reasons.name(reason)}
                    )

    def _fill(
        self, tr: Trajectory, agent: LearningAgent, oid: int, side: int, price: int, size: int
    ) -> None:
        agent.inventory += side * size
        agent.cash -= side * price * size
        if agent.role.role == "execution" and side == agent.role.sign:
            agent.executed += size
            bp = agent.role.sign * (price - tr.arrival_mid) / tr.arrival_mid * 1e4
            agent.step_shortfall += size * bp
        live = agent.live.get(oid)
        if live is not None:
            live[1] -= size
            if live[1] <= 0:
                del agent.live[oid]

    def _touch(self, tr: Trajectory) -> tuple[int, int, float]:
        """Best bid and ask in ticks (0: none) and the mid."""
        ask, _, bid, _ = tr.book.snapshot(1)[0].tolist()
        return bid, ask, self._mid(tr, bid, ask)

    def _mid(self, tr: Trajectory, bid: int | None = None, ask: int | None = None) -> float:
        if bid is None or ask is None:
            ask, _, bid, _ = tr.book.snapshot(1)[0].tolist()
        if bid > 0 and ask > 0 and bid < ask:
            return (bid + ask) / 2.0
        last = tr.book.last_trade_price
        if last is not None:
            return float(last)
        previous = float(tr.history[0, MID])
        return previous if previous > 0 else float(tr.book_state.reference)

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

    def _observations(
        self, ended: dict[int, tuple[float, np.ndarray]] | None = None
    ) -> dict[str, np.ndarray]:
        """Every agent's observation; ``ended`` trajectories (``_clean_up``) from their
        depth at their end."""
        ended = ended or {}
        steps = self.config.episode.steps
        time_left = (steps - self.k) / steps
        out: dict[str, np.ndarray] = {}
        for tr in self.trajectories:
            reference = float(tr.book_state.reference)
            owns = []
            for agent in tr.learners:
                role = agent.role
                execution = role.role == "execution"
                own = OwnState(
                    inventory=agent.inventory,
                    cash=agent.cash,
                    open_bid=agent.open_size(1),
                    open_ask=agent.open_size(-1),
                    time_left=time_left,
                    quantity_left=(role.quantity - agent.executed) / role.quantity
                    if execution
                    else 0.0,
                    scale=role.scale,
                    reference_ticks=reference,
                )
                owns.append(own)
            depth = ended[tr.index][1] if tr.index in ended else tr.book.snapshot(LEVELS)
            rows = observations(depth, tr.history, owns)
            out.update(zip((a.name for a in tr.learners), rows, strict=True))
        return out


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
        "kernel": {
            "step_ms": config.kernel_step_ms,
            "sync_ms": config.kernel_step_ms,
            "trajectories": config.trajectories,
        },
        "instruments": [config.instrument.model_dump()],
        "agents": [group.model_dump() for group in config.background],
        "output": {"snapshot_every_ms": 86_400_000, "snapshot_levels": LEVELS},
    }
    return parse_config(raw, "env (the market it builds)")
