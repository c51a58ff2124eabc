"""MarketEnv on several instruments: each agent on its own book, the same episode whether
the books run in process or on shard actors, config errors that name the field."""

from __future__ import annotations

import copy
import time

import pytest
from ray.exceptions import RayActorError
from rl_episodes import episode

from mars_ray.rl.config import load_rl_config, parse_rl_config
from mars_ray.rl.env import MarketEnv
from mars_ray.schema.validation import ConfigError

TINY = "configs/rl/tiny.yaml"
BBB_REFERENCE_TICKS = 1000  # 50.00 at a 0.05 tick: far from SIM's 10,000 ticks


@pytest.fixture(scope="module")
def raw() -> dict:
    return load_rl_config(TINY).model_dump()


def two_instruments(raw: dict, shards: str = "local", steps: int = 6) -> dict:
    """tiny.yaml's env on SIM and BBB (the background on both), the directional agent on
    BBB."""
    env = copy.deepcopy(raw["env"])
    env["instruments"].append({"name": "BBB", "tick_size": 0.05, "reference_price": 50.0})
    env["agents"][2]["instrument"] = "BBB"
    env["episode"]["steps"] = steps
    env["trajectories"] = 2
    env["shards"] = shards
    return env


def test_each_agent_trades_on_its_own_instruments_book(raw: dict) -> None:
    env = MarketEnv(two_instruments(raw, steps=20))
    episode(env, seed=3, action_seed=2)
    assert [tr.key for tr in env.trajectories] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for name in ("directional_0", "directional_1"):
        agent = env.learners[name]
        assert agent.instrument == 1
        assert agent.inventory != 0  # it traded, at BBB's prices (cash in ticks x shares)
        assert abs(agent.cash / agent.inventory) == pytest.approx(BBB_REFERENCE_TICKS, rel=0.1)
    for tr in env.trajectories:  # every book reported near its own reference
        bid = tr.depth[0, 2]
        assert bid == pytest.approx(tr.reference, rel=0.1)


@pytest.mark.usefixtures("ray_session")
def test_shard_actors_give_the_in_process_episode(raw: dict) -> None:
    local = episode(MarketEnv(two_instruments(raw, "local")), seed=5, action_seed=1)
    env = MarketEnv(two_instruments(raw, "actors"))
    assert len(env.market.shards) == 2  # one actor per instrument
    try:
        actors = episode(env, seed=5, action_seed=1)
        other = episode(env, seed=6, action_seed=1)  # a second episode on the same actors
    finally:
        env.close()
    assert repr(actors) == repr(local)
    assert repr(other) != repr(local)  # negative control: the seed matters


def ended(actor: object, timeout_s: float = 30.0) -> bool:
    """Whether ``actor``'s calls fail (it has ended) within ``timeout_s``."""
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.location.remote(), timeout=timeout_s)
        except RayActorError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.usefixtures("ray_session")
def test_close_ends_the_shard_actors(raw: dict) -> None:
    import ray

    env = MarketEnv(two_instruments(raw, "actors"))
    shards = list(env.market.shards)
    assert len(ray.get([s.location.remote() for s in shards])) == 2  # alive
    env.close()
    for shard in shards:  # ray.kill is asynchronous: a call just after it may still run
        assert ended(shard)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env.close()  # twice is harmless


def test_an_unknown_instrument_names_the_field(raw: dict) -> None:
    env = two_instruments(raw)
    env["agents"][0]["instrument"] = "NOPE"
    with pytest.raises(ConfigError, match=r"agents\[0\]\.instrument: unknown instrument 'NOPE'"):
        MarketEnv(env)
    env = two_instruments(raw)
    env["background"][1]["instruments"] = ["NOPE"]
    with pytest.raises(ConfigError, match=r"background\[1\]\.instruments: unknown .* 'NOPE'"):
        MarketEnv(env)


def test_instrument_and_instruments_together_are_an_error(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["env"]["instrument"] = {"name": "ONE"}
    with pytest.raises(ConfigError, match=r"env: give instrument .* or instruments .*not both"):
        parse_rl_config(bad)
    one = copy.deepcopy(raw)
    one["env"]["instrument"], one["env"]["instruments"] = {"name": "ONE"}, None
    config = parse_rl_config(one)  # the shorthand, which a dumped config keeps
    assert config.env.instrument_names == ["ONE"]
    assert parse_rl_config(config.model_dump()) == config


def test_the_two_instrument_sample_config_puts_each_role_on_its_book() -> None:
    env = load_rl_config("configs/rl/two_instruments.yaml").env
    assert env.shards == "actors"
    on = {role.role: env.instrument_names[env.instrument_of(role)] for role in env.agents}
    assert on == {"execution": "AAA", "market_maker": "BBB", "directional": "AAA"}
