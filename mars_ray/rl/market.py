"""The env's one way into the market: its shards, in the env's process or as Ray actors.

``EnvMarket.step`` hands each shard its instruments' orders, runs every shard to the same
time and returns every book's ``BookReport`` (``ShardRuntime.env_step``); the env reads
nothing else of a shard. ``shards: local`` keeps one ``ShardRuntime`` with every
instrument in process (direct calls, the fast default); ``shards: actors`` puts each
instrument on its own ``ExchangeShard`` actor (``shard_instruments``), all stepped at once
and awaited together, for markets with several instruments. A book's events depend only on
its own seeded agents and the orders sent to it, so both give the same episode.
"""

from __future__ import annotations

import ray

from mars_ray.exchange.orders import OrderBatch
from mars_ray.sim.config import SimulationConfig
from mars_ray.sim.ray_runtime import ensure_ray
from mars_ray.sim.shard import BookReport, ExchangeShard, ShardRuntime, shard_instruments


class EnvMarket:
    """The shards of ``config`` (``config.kernel.shards`` of them): local when ``actors`` is
    False (then one shard), else one actor each."""

    def __init__(self, config: SimulationConfig, actors: bool) -> None:
        n = config.kernel.shards
        if not actors and n != 1:
            raise ValueError(f"an in-process market is one shard, got kernel.shards = {n}")
        self.actors = actors
        self.shard_of = {
            inst: k
            for k, insts in enumerate(shard_instruments(len(config.instruments), n))
            for inst in insts
        }
        if actors:
            ensure_ray()
            # no CPU reserved: the env waits while its shards run, and a runner's shards must
            # start even where the runners hold every CPU of the cluster
            shard = ExchangeShard.options(num_cpus=0)
            self.shards: list = [shard.remote(config, k) for k in range(n)]
        else:
            self.shards = [ShardRuntime(config, 0)]

    def restart(self, seed: int) -> None:
        """Every shard back to the pre-open, under ``seed``."""
        if self.actors:
            ray.get([s.restart.remote(seed) for s in self.shards])
        else:
            self.shards[0].restart(seed)

    def step(
        self, rows: list[tuple], until: int, levels: int, learners_from: int
    ) -> dict[tuple[int, int], BookReport]:
        """Send ``rows`` (``OrderBatch.from_rows``'s, instrument third), run to ``until`` and
        report every book by (trajectory, instrument)."""
        if not self.actors:
            orders = OrderBatch.from_rows(rows) if rows else None
            return self.shards[0].env_step(orders, until, levels, learners_from)
        by_shard: list[list[tuple]] = [[] for _ in self.shards]
        for row in rows:
            by_shard[self.shard_of[row[2]]].append(row)
        calls = [
            shard.env_step.remote(
                OrderBatch.from_rows(mine) if mine else None, until, levels, learners_from
            )
            for shard, mine in zip(self.shards, by_shard, strict=True)
        ]
        out: dict[tuple[int, int], BookReport] = {}
        for reports in ray.get(calls):
            out.update(reports)
        return out

    def close(self) -> None:
        """Release what the shards hold; actors are ended."""
        if self.actors:
            try:
                ray.get([s.close.remote() for s in self.shards])
            except ray.exceptions.RayError:
                pass  # a shard that died holds nothing to release
            for s in self.shards:
                ray.kill(s)
        else:
            for s in self.shards:
                s.close()
        self.shards = []
