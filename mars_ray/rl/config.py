"""RL configs (``configs/rl/*.yaml``): the market, the learning agents and their roles,
training and sweep settings, validated by pydantic with errors that name the field.

The market is the simulator's own: its instruments, background agent groups exactly as in
a simulation config (``background: lmm`` is an ``lmm`` group there), and the kernel's step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from agents.base import LatencyConfig
from agents.rl_policy import Role, RoleParams
from mars_ray.schema.clock import Clock, format_clock, parse_clock
from mars_ray.schema.validation import StrictModel, read_yaml, validate_model
from mars_ray.sim.config import AgentGroupConfig, InstrumentConfig


class RoleConfig(RoleParams):
    """``count`` learning agents of one role; they share the role's policy."""

    count: int = Field(default=1, ge=1, le=64)
    instrument: str | None = Field(
        default=None, description="the instrument its agents trade; default: the env's first"
    )
    latency: LatencyConfig = LatencyConfig()
    leftover_penalty_bp: float = Field(
        default=50.0,
        ge=0,
        le=10_000,
        description="execution: bp charged per share still undone after the clean-up order, "
        "as a fraction of the parent order",
    )
    mark_remaining: bool = Field(
        default=False,
        description="execution: each step's reward also marks the shares still to do at the "
        "mid (potential-based shaping: an episode's sum is unchanged; own impact is charged "
        "when the mid moves, not at later fills)",
    )
    inventory_penalty: float = Field(
        default=0.1,
        ge=0,
        le=1e6,
        description="market_maker / directional: reward minus this x (position / "
        "max_inventory)^2 per step",
    )


class EpisodeConfig(StrictModel):
    """When the learning agents trade: from ``start`` (after the background warmed the book
    from the open) for ``steps`` steps of ``step_s`` simulated seconds."""

    open: Clock = Field(default=parse_clock("09:30"), description="background starts")
    start: Clock = Field(default=parse_clock("09:35"), description="learning agents start")
    steps: int = Field(default=60, ge=1, le=100_000)
    step_s: float = Field(default=5.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _ordered(self) -> EpisodeConfig:
        if self.start < self.open:
            raise ValueError(
                f"start ({format_clock(self.start)}) must not be before open "
                f"({format_clock(self.open)})"
            )
        return self

    @property
    def step_ns(self) -> int:
        return round(self.step_s * 1e9)


class EnvConfig(StrictModel):
    seed: int = Field(default=0, ge=0, lt=2**63)
    instrument: InstrumentConfig | None = Field(
        default=None, description="one instrument: shorthand for instruments: [it]"
    )
    instruments: list[InstrumentConfig] = Field(
        default_factory=lambda: [InstrumentConfig(name="SIM")], min_length=1
    )
    shards: Literal["local", "actors"] = Field(
        default="local",
        description="local: every book in the env's own process; actors: one shard actor "
        "per instrument, stepped together",
    )
    background: list[AgentGroupConfig] = Field(default_factory=list)
    episode: EpisodeConfig = EpisodeConfig()
    kernel_step_ms: float = Field(
        default=5000.0, ge=1.0, le=3_600_000, description="background agents' decision step"
    )
    agents: list[RoleConfig] = Field(min_length=1, description="learning agents, by role")
    trajectories: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="samples of the market stepped together in one env, each with its own "
        "learning agents (one kernel step and one LMM batch serve them all)",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_instrument(cls, raw: Any) -> Any:
        """``instrument: X`` is ``instruments: [X]`` (and stays None, so that a dumped config
        validates again)."""
        if isinstance(raw, dict) and raw.get("instrument") is not None:
            if raw.get("instruments") is not None:
                raise ValueError(
                    "give instrument (one instrument) or instruments (several), not both"
                )
            raw = {**raw, "instruments": [raw["instrument"]], "instrument": None}
        return raw

    @model_validator(mode="after")
    def _steps_fit(self) -> EnvConfig:
        step_ms = self.episode.step_s * 1000
        ratio = step_ms / self.kernel_step_ms
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(
                f"episode.step_s ({self.episode.step_s}) must be a whole multiple of "
                f"kernel_step_ms ({self.kernel_step_ms}) / 1000"
            )
        names = self.instrument_names
        if len(set(names)) != len(names):
            raise ValueError(f"instruments: names must be unique, got {names}")
        for k, group in enumerate(self.background):
            for name in group.instruments or []:
                if name not in names:
                    raise ValueError(
                        f"background[{k}].instruments: unknown instrument {name!r}; known: {names}"
                    )
        for k, role in enumerate(self.agents):
            if role.instrument is not None and role.instrument not in names:
                raise ValueError(
                    f"agents[{k}].instrument: unknown instrument {role.instrument!r}; "
                    f"known: {names}"
                )
        return self

    @property
    def instrument_names(self) -> list[str]:
        return [i.name for i in self.instruments]

    def instrument_of(self, role: RoleConfig) -> int:
        """The index of the instrument ``role``'s agents trade."""
        return 0 if role.instrument is None else self.instrument_names.index(role.instrument)


class ValidationConfig(StrictModel):
    """Checkpoint selection on seeds that neither training nor evaluation uses: every
    ``every`` iterations from ``after`` (and at the last), ``role``'s policy against its
    baseline on ``episodes`` seeds from ``seed_start``, paired by seed; the run keeps the
    policies of the iteration that scored best."""

    role: Role = Field(default="execution", description="the role whose difference is scored")
    every: int = Field(default=5, ge=1, description="iterations between validations")
    after: int = Field(default=1, ge=1, description="the first iteration that may be validated")
    episodes: int = Field(default=60, ge=2, le=100_000)
    seed_start: int = Field(
        default=500_000,
        ge=0,
        lt=2**63,
        description="the first validation seed (mars-ray rl evaluate's default is 1,000,000)",
    )


class TrainingConfig(StrictModel):
    iterations: int = Field(default=20, ge=1, le=100_000)
    max_minutes: float | None = Field(
        default=None,
        gt=0,
        description="stop after the iteration that ends past this much wall time (a "
        "budget: on a slower or busier machine the run does fewer iterations)",
    )
    num_env_runners: int = Field(default=0, ge=0, le=256)
    train_batch_size: int = Field(default=1200, ge=8)
    minibatch_size: int = Field(default=200, ge=4)
    num_epochs: int = Field(default=5, ge=1, le=100)
    lr: float = Field(default=3e-4, gt=0, le=1)
    lr_per_role: dict[Role, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict,
        description="a role's own learning rate, in place of lr (e.g. a slower one for a "
        "role whose edge is small against its episodes' noise)",
    )
    gamma: float = Field(default=0.99, gt=0, le=1)
    gae_lambda: float = Field(default=0.95, ge=0, le=1, description="PPO's GAE lambda")
    entropy_coeff: float = Field(default=0.0, ge=0, le=1, description="PPO's entropy bonus")
    vf_clip_param: float = Field(
        default=10.0,
        gt=0,
        description="PPO clips the value loss at this: raise it when returns are large, "
        "or the value function stops learning",
    )
    hidden: list[int] = Field(default=[64, 64], min_length=1)
    initial_action_std: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="every policy's action std at the start, the same in every state "
        "(default RLlib's: about 1, half the action range)",
    )
    checkpoint_every: int = Field(default=5, ge=1)
    validation: ValidationConfig | None = Field(
        default=None,
        description="keep the policies that score best on validation seeds (default: the "
        "last iteration's)",
    )

    @model_validator(mode="after")
    def _minibatch(self) -> TrainingConfig:
        if self.minibatch_size > self.train_batch_size:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must not exceed "
                f"train_batch_size ({self.train_batch_size})"
            )
        return self


SEARCHABLE = ("lr", "gamma", "num_epochs", "minibatch_size", "train_batch_size")


class TuneConfig(StrictModel):
    """A Ray Tune sweep: ``num_samples`` trials, each drawing every ``search`` field from its
    list of values; ASHA stops the weak ones early on the mean episode return."""

    num_samples: int = Field(default=4, ge=1, le=10_000)
    max_concurrent: int = Field(default=1, ge=1, le=1024)
    grace_period: int = Field(default=1, ge=1, description="ASHA: iterations before a stop")
    search: dict[str, list[float]] = Field(default_factory=lambda: {"lr": [1e-4, 3e-4, 1e-3]})

    @field_validator("search")
    @classmethod
    def _known(cls, search: dict[str, list[float]]) -> dict[str, list[float]]:
        for key, values in search.items():
            if key not in SEARCHABLE:
                raise ValueError(f"cannot search {key!r}; searchable: {list(SEARCHABLE)}")
            if not values:
                raise ValueError(f"{key}: give at least one value")
        return search


class RLConfig(StrictModel):
    name: str = "rl"
    env: EnvConfig
    training: TrainingConfig = TrainingConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _validated_role_trains(self) -> RLConfig:
        validation = self.training.validation
        present = sorted({g.role for g in self.env.agents})
        if validation is not None and validation.role not in present:
            raise ValueError(
                f"training.validation.role: {validation.role!r} has no agents in env.agents "
                f"(roles there: {present})"
            )
        return self


def load_rl_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RLConfig:
    return parse_rl_config(read_yaml(path, overrides), str(path))


def parse_rl_config(raw: dict[str, Any], source: str = "<dict>") -> RLConfig:
    return validate_model(RLConfig, raw, source)
