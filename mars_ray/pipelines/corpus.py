"""Build the LMM's training corpus: real LOBSTER days and simulated days, one unit each.

Synthetic days run in parallel as Ray tasks (one per seed, each running the simulation
in-process); the real files are read meanwhile. Every unit becomes orders by the same
rules (``mars_ray.lmm.corpus.derive_orders``) and goes whole to one split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from mars_ray import __version__
from mars_ray.data.lobster import (
    LobsterFormatError,
    data_root,
    find_pairs,
    parse_name,
    read_pair,
)
from mars_ray.lmm.corpus import (
    CorpusError,
    Split,
    Unit,
    UnitOrders,
    corpus_counts,
    corpus_table,
    real_day_orders,
    simulated_orders,
    write_corpus,
)
from mars_ray.schema.validation import ConfigError, StrictModel, read_yaml, validate_model
from mars_ray.sim.config import SimulationConfig, load_config


class LobsterSourceConfig(StrictModel):
    """Real days: every LOBSTER message/orderbook pair under ``dir`` is one unit."""

    enabled: bool = True
    dir: str | None = Field(default=None, description="default: the shared data's lobster/")
    exclude: list[str] = Field(
        default_factory=lambda: ["excerpt"],
        description="sub-folders to skip (the excerpt is a slice of the AAPL day: a leak)",
    )
    splits: dict[str, Split] = Field(
        default_factory=lambda: {"GOOG": "train", "AAPL": "test"},
        description="ticker -> split; every ticker found must be listed",
    )
    skip_bad_rows: bool = Field(
        default=False,
        description="skip malformed rows (counted in corpus.json) instead of failing the build",
    )

    def directory(self) -> Path:
        return Path(self.dir) if self.dir is not None else data_root() / "lobster"


class SyntheticSourceConfig(StrictModel):
    """Simulated days: ``seeds`` runs of a simulation config; each seed x instrument is a
    unit. The last ``test_seeds`` seeds are the test split, the ``validation_seeds`` before
    them validation, the rest train."""

    enabled: bool = True
    config: str = "configs/bench.yaml"
    seeds: int = Field(default=4, ge=1, le=100_000)
    first_seed: int = Field(default=0, ge=0, lt=2**62)
    validation_seeds: int = Field(default=1, ge=0)
    test_seeds: int = Field(default=1, ge=0)
    session: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the simulation's session section (e.g. a shorter day)",
    )
    continuous_only: bool = Field(
        default=True,
        description="keep orders from the open to the closing call, as the LOBSTER days hold",
    )

    @model_validator(mode="after")
    def _split_counts(self) -> SyntheticSourceConfig:
        if self.validation_seeds + self.test_seeds > self.seeds:
            raise ValueError(
                f"validation_seeds ({self.validation_seeds}) + test_seeds ({self.test_seeds}) "
                f"exceed seeds ({self.seeds})"
            )
        return self

    def seed_splits(self) -> list[tuple[int, Split]]:
        """(seed, split) for every seed, in seed order."""
        n_train = self.seeds - self.validation_seeds - self.test_seeds
        splits: list[Split] = (
            ["train"] * n_train
            + ["validation"] * self.validation_seeds
            + ["test"] * self.test_seeds
        )
        return [(self.first_seed + k, s) for k, s in enumerate(splits)]

    def sim_config(self) -> SimulationConfig:
        """The simulation config, with the session overrides and one trajectory per seed."""
        overrides: dict[str, Any] = {f"session.{k}": v for k, v in self.session.items()}
        overrides["kernel.trajectories"] = 1
        try:
            return load_config(self.config, overrides)
        except ConfigError as exc:
            raise ConfigError(f"synthetic.config: {exc}") from None


class CorpusConfig(StrictModel):
    name: str = Field(default="default", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    out: str = Field(default="corpus/default", description="output folder")
    lobster: LobsterSourceConfig = LobsterSourceConfig()
    synthetic: SyntheticSourceConfig = SyntheticSourceConfig()

    @model_validator(mode="after")
    def _some_source(self) -> CorpusConfig:
        if not (self.lobster.enabled or self.synthetic.enabled):
            raise ValueError("enable at least one source (lobster.enabled, synthetic.enabled)")
        return self


def parse_corpus_config(raw: dict[str, Any], source: str = "<dict>") -> CorpusConfig:
    return validate_model(CorpusConfig, raw, source)


def load_corpus_config(path: str | Path) -> CorpusConfig:
    """Read and validate a corpus YAML (and the simulation config it names)."""
    raw = read_yaml(path)
    cfg = parse_corpus_config(raw, str(path))
    if cfg.synthetic.enabled:
        cfg.synthetic.sim_config()  # a bad simulation config fails now, not after the real data
    return cfg


@dataclass(frozen=True)
class LobsterUnit:
    message: Path
    orderbook: Path
    unit: Unit


def lobster_units(cfg: LobsterSourceConfig) -> list[LobsterUnit]:
    """The LOBSTER file pairs to read, with their splits (sorted by day, then ticker)."""
    root = cfg.directory()
    if not root.is_dir():
        raise CorpusError(f"lobster.dir: no such folder {str(root)!r}")
    out = []
    for message, orderbook in find_pairs(root):
        parts = message.relative_to(root).parts[:-1]
        if any(p in cfg.exclude for p in parts):
            continue
        name = parse_name(message)
        assert name is not None  # find_pairs only returns parsed names
        split = cfg.splits.get(name.ticker)
        if split is None:
            raise CorpusError(
                f"lobster.splits names no split for ticker {name.ticker!r} ({message}); "
                f"known: {sorted(cfg.splits)}"
            )
        out.append(LobsterUnit(message, orderbook, Unit("lobster", name.ticker, name.date, split)))
    if not out:
        raise CorpusError(f"lobster.dir: no LOBSTER message/orderbook pairs in {str(root)!r}")
    return sorted(out, key=lambda u: (u.unit.day, u.unit.instrument, str(u.message)))


def synthetic_orders(
    sim_cfg: SimulationConfig, seed: int, continuous_only: bool = True
) -> list[tuple[str, UnitOrders]]:
    """One seed's simulated day, per instrument: (instrument, orders). Runs in-process, so it
    can be the body of a Ray task. With ``continuous_only`` only the orders of continuous
    trading (open to closing call) are kept: the real files cover 09:30-16:00 only."""
    from mars_ray.sim.kernel import run_simulation

    cfg = sim_cfg.model_copy(update={"seed": seed})
    session = cfg.session
    window = (session.open, session.closing_call) if continuous_only else None
    events = run_simulation(cfg, local=True).events
    events = events.filter(pc.equal(events["trajectory_id"], 0))
    out = []
    for inst in cfg.instruments:
        book_events = events.filter(pc.equal(events["instrument"], inst.name))
        out.append((inst.name, simulated_orders(book_events, inst.reference_ticks, window)))
    return out


# ----------------------------------------------------------------------------- building
@dataclass
class BuildResult:
    table: pa.Table
    counts: dict[str, Any]
    paths: dict[str, Path]
    seconds: float


Progress = Callable[[int, int, str], None]  # (units done, units in all, what just finished)


def build_corpus(
    cfg: CorpusConfig, out: str | Path | None = None, progress: Progress | None = None
) -> BuildResult:
    """Build the corpus of ``cfg`` into ``out`` (default ``cfg.out``) and return it.

    Simulated seeds are submitted as Ray tasks first (an embedded local Ray is
    started if none is running, as ``mars-ray simulate`` does); the real files are
    read meanwhile in this process.
    """
    start = time.perf_counter()
    out_dir = Path(out if out is not None else cfg.out)
    lob = lobster_units(cfg.lobster) if cfg.lobster.enabled else []
    seeds = cfg.synthetic.seed_splits() if cfg.synthetic.enabled else []
    sim_cfg = cfg.synthetic.sim_config() if cfg.synthetic.enabled else None
    total = len(lob) + len(seeds)
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, label)

    pending: dict[Any, tuple[int, str]] = {}
    if sim_cfg is not None:
        import ray

        from mars_ray.sim.ray_runtime import ensure_ray

        ensure_ray(sim_cfg.ray.address, sim_cfg.ray.num_cpus)
        task = ray.remote(num_cpus=1)(synthetic_orders)
        only = cfg.synthetic.continuous_only
        pending = {task.remote(sim_cfg, seed, only): (seed, split) for seed, split in seeds}

    parts: list[tuple[Unit, UnitOrders]] = []
    reads: dict[str, dict[str, Any]] = {}
    for lu in lob:
        try:
            msgs, book = read_pair(
                lu.message, lu.orderbook, skip_bad_rows=cfg.lobster.skip_bad_rows
            )
        except LobsterFormatError as exc:
            raise CorpusError(str(exc)) from None
        parts.append((lu.unit, real_day_orders(msgs, book)))
        reads[str(lu.message)] = msgs.report.summary()
        tick(f"lobster {lu.unit.instrument} {lu.unit.day}")

    by_seed: dict[int, list[tuple[Unit, UnitOrders]]] = {}
    waiting = list(pending)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        seed, split = pending[ready[0]]
        by_seed[seed] = [
            (Unit("synthetic", name, f"seed-{seed}", split), orders)
            for name, orders in ray.get(ready[0])
        ]
        tick(f"synthetic seed {seed}")
    for seed, _ in seeds:
        parts.extend(by_seed[seed])

    meta = {
        "mars_ray.version": __version__,
        "mars_ray.corpus_config": cfg.model_dump_json(),
    }
    if sim_cfg is not None:
        meta["mars_ray.sim_config"] = sim_cfg.model_dump_json()
    table = corpus_table(parts, meta)
    counts = corpus_counts(table)
    counts["name"] = cfg.name
    if reads:
        counts["lobster_reads"] = reads  # per message file: rounded times, skipped rows
    counts["build_seconds"] = round(time.perf_counter() - start, 1)
    paths = write_corpus(table, out_dir, counts)
    return BuildResult(table, counts, paths, time.perf_counter() - start)
