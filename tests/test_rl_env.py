"""MarketEnv: RLlib's env checker, determinism, rejects in infos, errors that name the input."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from ray.rllib.utils.pre_checks.env import check_multiagent_environments
from rl_episodes import episode

from agents.rl_features import FEATURES, N_OBS
from mars_ray.rl.config import load_rl_config, parse_rl_config
from mars_ray.rl.env import MarketEnv, role_of
from mars_ray.schema.events import OrderType
from mars_ray.schema.validation import ConfigError

TINY = "configs/rl/tiny.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return load_rl_config(TINY).model_dump()


@pytest.mark.parametrize("trajectories", [1, 2])
def test_env_passes_rllibs_checker(trajectories: int) -> None:
    config = load_rl_config(TINY).env.model_copy(update={"trajectories": trajectories})
    check_multiagent_environments(MarketEnv(config))


def test_same_seed_and_actions_give_the_same_episode() -> None:
    config = load_rl_config(TINY).env
    a = episode(MarketEnv(config), seed=5, action_seed=1)
    b = episode(MarketEnv(config), seed=5, action_seed=1)
    c = episode(MarketEnv(config), seed=6, action_seed=1)
    assert repr(a) == repr(b)
    assert repr(a) != repr(c)  # negative control: the seed matters


def test_observations_are_in_the_space_and_match_the_docs_table() -> None:
    env = MarketEnv(load_rl_config(TINY).env)
    assert N_OBS == sum(n for _, n, _ in FEATURES)
    for step in episode(env, seed=2, action_seed=3)[1:]:
        for agent, obs in step[0].items():
            assert env.observation_spaces[agent].contains(obs)
    assert {role_of(a) for a in env.possible_agents} == {
        "execution",
        "market_maker",
        "directional",
    }


def test_execution_agent_finishes_its_parent_order() -> None:
    env = MarketEnv(load_rl_config(TINY).env)
    env.reset(seed=4)
    done = False
    while not done:  # never trade before the end: the clean-up order does it all
        actions = {a: -np.ones(env.action_spaces[a].shape, np.float32) for a in env.agents}
        _, _, terminated, _, infos = env.step(actions)
        done = terminated["__all__"]
    assert infos["execution_0"]["executed"] == env.roles["execution_0"].quantity
    assert infos["execution_0"]["inventory"] == env.roles["execution_0"].quantity
    assert infos["directional_0"]["inventory"] == -500  # target: -max_inventory


def test_mark_remaining_moves_execution_reward_between_steps_not_its_sum() -> None:
    """Potential-based shaping: the same episode, with the shares still to do marked at the
    mid each step, pays the execution agent differently per step and the same in all."""
    raw = load_rl_config(TINY).model_dump()
    plain = episode(MarketEnv(parse_rl_config(raw).env), seed=5, action_seed=2)
    raw["env"]["agents"][0]["mark_remaining"] = True
    marked = episode(MarketEnv(parse_rl_config(raw).env), seed=5, action_seed=2)
    steps = [r for _, r, _ in plain[1:]], [r for _, r, _ in marked[1:]]
    a, b = (np.array([r["execution_0"] for r in side]) for side in steps)
    assert not np.allclose(a, b)
    assert a.sum() == pytest.approx(b.sum(), abs=1e-9)
    assert [r["market_maker_0"] for r in steps[0]] == [r["market_maker_0"] for r in steps[1]]
    assert repr(plain[-1][0]) == repr(marked[-1][0])  # the market itself is the same


def test_rejected_orders_appear_in_infos_with_their_reason() -> None:
    env = MarketEnv(load_rl_config(TINY).env)
    env.reset(seed=1)
    agent = env.learners["market_maker_0"]
    oid = agent.order_id()
    # an order no role sends (off the tick grid), sent with the step's own orders
    off_tick = (env.t + 1, 0, 0, int(OrderType.LIMIT), oid, 1, 99.995, 100.0, agent.agent_id)
    step = env.market.step
    env.market.step = lambda rows, *args: step([*rows, off_tick], *args)
    zero = {a: np.zeros(env.action_spaces[a].shape, np.float32) for a in env.agents}
    _, _, _, _, infos = env.step(zero)
    assert infos["market_maker_0"]["rejected"] == [{"order_id": oid, "reason": "off_tick"}]
    assert infos["execution_0"]["rejected"] == []


@pytest.mark.parametrize("bad", [[2.0, 0.0], [math.nan, 0.0], [0.0, 0.0, 0.0]])
def test_an_action_outside_the_space_names_the_agent_and_value(bad: list) -> None:
    env = MarketEnv(load_rl_config(TINY).env)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"agent 'execution_0': action \[.*\] is outside"):
        env.step({"execution_0": np.array(bad)})
    with pytest.raises(ValueError, match="unknown agent 'nobody'"):
        env.step({"nobody": np.zeros(1)})


def test_config_errors_name_the_field(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["env"]["agents"] = []
    with pytest.raises(ConfigError, match=r"env\.agents"):
        parse_rl_config(bad)
    bad = copy.deepcopy(raw)
    bad["env"]["agents"][0]["role"] = "arbitrageur"
    with pytest.raises(ConfigError, match=r"env\.agents\.0\.role"):
        parse_rl_config(bad)
    bad = copy.deepcopy(raw)
    bad["env"]["background"][0]["instruments"] = ["NOPE"]
    with pytest.raises(ConfigError, match="unknown instrument 'NOPE'"):
        parse_rl_config(bad)
    bad = copy.deepcopy(raw)
    bad["env"]["background"][0]["params"]["rate"] = -1
    with pytest.raises(ConfigError, match=r"env\.background\.0\.params"):
        parse_rl_config(bad)


def test_an_env_the_kernel_refuses_fails_at_construction(raw: dict) -> None:
    env = copy.deepcopy(raw["env"])
    env["episode"]["start"] = "09:00"  # before the open
    with pytest.raises(ConfigError, match="start"):
        MarketEnv(env)


def test_trajectories_are_independent_and_trajectory_0_is_the_one_trajectory_episode() -> None:
    config = load_rl_config(TINY).env
    multi = config.model_copy(update={"trajectories": 2})
    env = MarketEnv(multi)
    assert len(env.possible_agents) == 6 and len(set(env.possible_agents)) == 6
    assert sorted(role_of(a) for a in env.possible_agents) == sorted(
        2 * [role_of(a) for a in MarketEnv(config).possible_agents]
    )
    single = episode(MarketEnv(config), seed=5, action_seed=1)
    first = single[0][0]  # the one-trajectory episode's reset observations
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=5)
    assert repr({a: obs[a] for a in first}) == repr(first)
    for step in single[1:]:
        # trajectory 0's agents act as in the one-trajectory episode, the others at random
        actions = {
            a: rng.uniform(-1, 1, env.action_spaces[a].shape).astype(np.float32) for a in first
        }
        for a in env.agents:
            actions.setdefault(a, np.zeros(env.action_spaces[a].shape, np.float32))
        out = env.step(actions)
        obs = out[0]
        assert repr(tuple({a: d[a] for a in first} for d in (out[0], out[1], out[4]))) == repr(step)
    assert repr(episode(MarketEnv(multi), 5, 1)) == repr(episode(MarketEnv(multi), 5, 1))
    assert not np.array_equal(obs["execution_0"], obs["execution_1"])  # distinct markets


def test_execution_action_prices_from_own_touch_to_the_opposite_one() -> None:
    from agents.rl_policy import LIMIT, RoleParams, role_orders

    buy = RoleParams(role="execution", side="buy", quantity=6000)
    sell = RoleParams(role="execution", side="sell", quantity=6000)
    bid, ask, mid = 1000, 1030, 1015.0  # a 30-tick spread

    def order(role: RoleParams, pace: float, aggression: float) -> tuple:
        (row,) = role_orders(role, np.array([pace, aggression]), bid, ask, mid, 0, 0, 60)
        return row

    assert order(buy, 0, 0) == (LIMIT, 1, 1000, 100)  # TWAP slice at the own touch
    assert order(buy, 0, 0.2)[2] == 1001 and order(sell, 0, 0.2)[2] == 1029  # one inside
    assert order(buy, 0, 1)[2] == ask and order(sell, 0, 1)[2] == bid  # the opposite touch
    assert order(buy, 0, -1)[2] == bid - 30  # a spread behind
    prices = [order(buy, 0, a)[2] for a in np.linspace(-1, 1, 41)]
    assert prices == sorted(prices)  # more aggression never prices lower
    assert order(buy, 1, 0)[3] == 200 and order(buy, -1, 0)[3] == 100  # 2^max(pace, 0)


def test_dithered_peg_is_smooth_in_the_action_and_twap_stays_at_the_touch() -> None:
    from agents.rl_policy import peg_ticks

    dithers = (np.arange(1000) + 0.5) / 1000  # an even sample of [0, 1)
    for spread in (1, 7, 30):
        assert {peg_ticks(0.0, spread, d) for d in dithers} == {0}  # never off the touch
        assert {peg_ticks(1.0, spread, d) for d in dithers} == {spread}
        for a in np.linspace(-1, 1, 17):
            mean = np.mean([peg_ticks(a, spread, d) for d in dithers])
            expected = np.sign(a) * ((spread + 1.0) ** abs(a) - 1.0)
            assert abs(mean - expected) < 2e-3, (spread, a, mean)
    # nearest rounding, the staircase the dither replaces: flat between the steps
    assert peg_ticks(0.05, 30) == peg_ticks(0.1, 30) == 0


def test_market_maker_never_quotes_inside_its_minimum_offset() -> None:
    from agents.rl_policy import RoleParams, role_orders

    maker = RoleParams(role="market_maker", min_offset_ticks=16, max_offset_ticks=40)
    for a in (-1.0, 0.0, 1.0):
        bid, ask = role_orders(maker, np.array([a, a, 1.0, 1.0]), 990, 1010, 1000.0, 0, 0, 1)
        assert 1000 - bid[2] >= 16 and ask[2] - 1000 >= 16
    low = role_orders(maker, np.array([-1.0, -1.0, 1.0, 1.0]), 990, 1010, 1000.0, 0, 0, 1)
    assert [p for _, _, p, _ in low] == [984, 1016]
    with pytest.raises(ValueError, match="min_offset_ticks"):
        RoleParams(role="market_maker", min_offset_ticks=50, max_offset_ticks=40)
