"""MarketEnv: several learning agents trading one simulated market, an RLlib MultiAgentEnv.

The market is the simulator's own: shards (books and background agents; ``EnvMarket``, in
process or as actors, ``env.shards``) run the episode, for ``trajectories`` independent
samples of the same market at once (one kernel step, one exchange call and, with an ``lmm``
background, one model batch for all of them); trajectory k's agents are the same roles under
their own names (``agent_names``), each role on its ``instrument``'s book. The learning
agents' actions become orders that enter the shards with each agent's order latency, so they
are validated, delayed and matched exactly as every other agent's orders; their events come
back in each book's report (fills, cancels, rejects with their reason).

One step (``episode.step_s`` simulated seconds):
1. every agent's action is checked against its space (a clear error otherwise);
2. its resting orders are cancelled and its new orders sent (see ``_orders``);
3. the shards run to the end of the step (background agents act, everything matches) and
   report every book (``ShardRuntime.env_step``);
4. fills update positions; rewards, observations (``agents.rl_features``) and infos.
On the last step an execution agent's remainder is sent as a market order and the market
runs one more step for it (the clean-up); what is still undone pays ``leftover_penalty_bp``.
Observations, the touch, the mid and rewards of an agent come from its own book.

Rewards (docs/rl.md): execution, minus the shortfall of this step's fills against the
arrival mid, in bp of the parent order (with ``mark_remaining``, plus the change of the
shares still to do marked at the mid); market_maker and directional, the change of
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
from mars_ray.rl.config import EnvConfig, RoleConfig
from mars_ray.rl.market import EnvMarket
from mars_ray.schema import reasons
from mars_ray.schema.events import EventType, OrderType
from mars_ray.schema.validation import ConfigError, validate_model
from mars_ray.sim.config import SimulationConfig, parse_config
from mars_ray.sim.shard import BookReport, agent_blocks

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
    instrument: int = 0
    inventory: int = 0
    cash: float = 0.0  # ticks x shares
    executed: int = 0  # execution: shares done (in the parent order's direction)
    live: dict[int, list[int]] = field(default_factory=dict)  # order id -> [side, remaining]
    counter: int = 0
    value: float = 0.0  # mark-to-market at the last step, ticks x shares
    step_shortfall: float = 0.0  # execution: shares x bp against the arrival mid, this step
    marked: float = 0.0  # execution with mark_remaining: shares to do x bp of the mid, last step
    # the execution peg's rounding draws (one generator per trajectory, seeded by the episode;
    # the env always passes it, the default only keeps a bare agent deterministic)
    dither: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def order_id(self) -> int:
        self.counter += 1
        return (self.agent_id << 32) | self.counter

    def open_size(self, side: int) -> int:
        return sum(left for s, left in self.live.values() if s == side)


class Trajectory:
    """One trajectory's book of one instrument and the learning agents on it; agent ids
    repeat across trajectories (as in the simulator, the trajectory id tells their orders
    apart). ``report`` is the book as the shards last reported it."""

    def __init__(
        self, index: int, instrument: int, reference: int, learners: list[LearningAgent]
    ) -> None:
        self.index = index
        self.instrument = instrument
        self.key = (index, instrument)
        self.reference = reference
        self.report: BookReport | None = None
        self.learners = learners
        self.by_id = {a.agent_id: a for a in learners}
        self.history = np.zeros((RETURNS + 1, N_FEATURES), dtype=np.float64)
        self.arrival_mid = 0.0
        self.volume_seen = 0  # the book's traded shares already counted in a step

    @property
    def depth(self) -> np.ndarray:
        assert self.report is not None, "no report before reset()"
        return self.report.depth


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
    """Learning agents by role (``execution_0``, ``market_maker_0``, ...) on one market of
    one or more instruments, ``trajectories`` samples of it stepped together."""

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
        self.ticks = [i.tick_size for i in self.sim_config.instruments]
        self.market: EnvMarket | None = EnvMarket(self.sim_config, config.shards == "actors")
        self._new_episode(config.seed)  # fails here, not mid-training, if the kernel refuses

    # ---------------------------------------------------------------- episode
    def _new_episode(self, seed: int) -> None:
        if self.market is None:
            raise RuntimeError("the env is closed")
        self.market.restart(seed)
        instruments = self.sim_config.instruments
        self.learners: dict[str, LearningAgent] = {}
        self.trajectories: list[Trajectory] = []
        for k, names in enumerate(self.names):
            # trajectory 0 draws as a one-trajectory env always did
            key = (1 << 20,) if k == 0 else (1 << 20, k)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
            dither = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2 << 20, k)))
            on: dict[int, list[LearningAgent]] = {}
            for i, name in enumerate(names):
                role = self.roles[name]
                lo, hi = role.latency.order_us
                latency = round(rng.uniform(lo, hi) * 1000.0)
                inst = self.config.instrument_of(role)
                agent = LearningAgent(
                    name, role, self.first_agent_id + i, latency, k, inst, dither=dither
                )
                self.learners[name] = agent
                on.setdefault(inst, []).append(agent)
            for inst, learners in sorted(on.items()):
                reference = instruments[inst].reference_ticks
                self.trajectories.append(Trajectory(k, inst, reference, learners))
        self.k = 0
        self.t = self.sim_config.session.pre_open

    def close(self) -> None:
        """Release the market (its shard actors end)."""
        if self.market is not None:
            self.market.close()
            self.market = None

    # trajectory 0's first book, under the names a one-trajectory env has always had
    @property
    def depth(self) -> np.ndarray:
        """The book's top ``LEVELS`` levels as last reported (after reset() or step())."""
        return self.trajectories[0].depth

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
        self._run(self.config.episode.start, [], settle=False)  # the background builds the book
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
        if self.market is None or self.k >= self.config.episode.steps:
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
        self.k += 1
        last = self.k >= self.config.episode.steps
        infos: dict[str, dict] = {a: {"rejected": []} for a in self.agents}
        volumes = self._run(t + self.step_ns, rows, infos)
        ended: dict[tuple[int, int], tuple[float, np.ndarray]] = {}
        if last:
            ended = self._clean_up(infos, volumes)
        rewards = {}
        for tr, volume in zip(self.trajectories, volumes, strict=True):
            mid = ended[tr.key][0] if tr.key in ended else self._mid(tr)
            history = tr.history
            history[1:] = history[:-1]
            history[0, MID], history[0, VOLUME] = mid, volume
            for agent in tr.learners:
                rewards[agent.name] = self._reward(tr, agent, mid, last)
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
        traj, inst = agent.trajectory, agent.instrument
        tick = self.ticks[inst]
        for kind, side, price_ticks, size in role_orders(
            agent.role,
            action,
            bid,
            ask,
            mid,
            agent.inventory,
            agent.executed,
            steps_left,
            float(agent.dither.random()),
        ):
            oid = agent.order_id()
            price = price_ticks * tick
            rows.append((at, traj, inst, kind, oid, side, price, float(size), agent.agent_id))
            if kind == LIMIT:
                agent.live[oid] = [side, size]
        return rows

    @staticmethod
    def _cancels(agent: LearningAgent, at: int) -> list[tuple]:
        """Cancel requests (arriving at ``at``) for every resting order of ``agent``."""
        traj, inst, aid = agent.trajectory, agent.instrument, agent.agent_id
        rows = [(at, traj, inst, _CANCEL_ORDER, oid, 0, math.nan, 0.0, aid) for oid in agent.live]
        agent.live.clear()
        return rows

    def _clean_up(
        self, infos: dict[str, dict], volumes: list[int]
    ) -> dict[tuple[int, int], tuple[float, np.ndarray]]:
        """The last step's market orders for what execution agents have left; one more step,
        its traded volume added to ``volumes``. A book with nothing to clean up ends before
        that step, as it would alone: its (mid, depth) then, by (trajectory, instrument)."""
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
                    agent.instrument,
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
        cleaning = {(row[1], row[2]) for row in rows}
        ended = {
            tr.key: (self._mid(tr), tr.depth) for tr in self.trajectories if tr.key not in cleaning
        }
        more = self._run(self.t + self.step_ns, rows, infos, settle=cleaning)
        for i, tr in enumerate(self.trajectories):
            if tr.key in cleaning:
                volumes[i] += more[i]
        return ended

    # ---------------------------------------------------------------- the market
    def _run(
        self,
        until: int,
        rows: list[tuple],
        infos: dict[str, dict] | None = None,
        settle: bool | set[tuple[int, int]] = True,
    ) -> list[int]:
        """Send ``rows`` and run the market to ``until``; settle the learning agents' events
        (of the books in ``settle``; none before they act: False); each book's traded
        volume."""
        assert self.market is not None
        # the learning agents have the highest ids of the market (from first_agent_id)
        reports = self.market.step(rows, until, LEVELS, self.first_agent_id)
        self.t = until
        volumes = []
        for tr in self.trajectories:
            report = tr.report = reports[tr.key]
            volumes.append(report.volume - tr.volume_seen)
            tr.volume_seen = report.volume
            if len(report.records) and (settle is True or (settle and tr.key in settle)):
                self._settle(tr, report.records, infos)
        return volumes

    def _settle(self, tr: Trajectory, records: np.ndarray, infos: dict[str, dict] | None) -> None:
        by_id = tr.by_id
        for row in records.tolist():
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
        ask, _, bid, _ = tr.depth[0].tolist()
        return bid, ask, self._mid(tr, bid, ask)

    def _mid(self, tr: Trajectory, bid: int | None = None, ask: int | None = None) -> float:
        if bid is None or ask is None:
            ask, _, bid, _ = tr.depth[0].tolist()
        if bid > 0 and ask > 0 and bid < ask:
            return (bid + ask) / 2.0
        assert tr.report is not None
        last = tr.report.last_trade
        if last is not None:
            return float(last)
        previous = float(tr.history[0, MID])
        return previous if previous > 0 else float(tr.reference)

    # ---------------------------------------------------------------- rewards, observations
    def _reward(self, tr: Trajectory, agent: LearningAgent, mid: float, last: bool) -> float:
        role = agent.role
        if role.role == "execution":
            shortfall, agent.step_shortfall = agent.step_shortfall, 0.0
            left = role.quantity - agent.executed
            if role.mark_remaining:
                to_mark = 0 if last else left
                marked = to_mark * role.sign * (mid - tr.arrival_mid) / tr.arrival_mid * 1e4
                shortfall += marked - agent.marked
                agent.marked = marked
            reward = -shortfall / role.quantity
            if last:
                reward -= role.leftover_penalty_bp * max(left, 0) / role.quantity
            return float(reward)
        value = agent.cash + agent.inventory * mid
        change, agent.value = value - agent.value, value
        penalty = role.inventory_penalty * (agent.inventory / role.max_inventory) ** 2
        return float(change / role.lot - penalty)

    def _observations(
        self, ended: dict[tuple[int, int], tuple[float, np.ndarray]] | None = None
    ) -> dict[str, np.ndarray]:
        """Every agent's observation; ``ended`` trajectories (``_clean_up``) from their
        depth at their end."""
        ended = ended or {}
        steps = self.config.episode.steps
        time_left = (steps - self.k) / steps
        out: dict[str, np.ndarray] = {}
        for tr in self.trajectories:
            reference = float(tr.reference)
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
            depth = ended[tr.key][1] if tr.key in ended else tr.depth
            rows = observations(depth, tr.history, owns)
            out.update(zip((a.name for a in tr.learners), rows, strict=True))
        return out


def market_config(config: EnvConfig) -> SimulationConfig:
    """The simulation an episode runs: the env's instruments and background, from ``open``
    (the opening auction) to one step after the episode's clean-up step; with ``shards:
    actors``, one shard per instrument."""
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
            "shards": len(config.instruments) if config.shards == "actors" else 1,
        },
        "instruments": [i.model_dump() for i in config.instruments],
        "agents": [group.model_dump() for group in config.background],
        "output": {"snapshot_every_ms": 86_400_000, "snapshot_levels": LEVELS},
    }
    return parse_config(raw, "env (the market it builds)")
