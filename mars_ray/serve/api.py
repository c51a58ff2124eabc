"""The HTTP API's request models: what `POST /v1/trajectories` accepts, validated by pydantic.

FastAPI turns a validation error into a 422 that names the field (``loc``) and
the value; a whole number must be a JSON integer (``"2"``, ``2.0`` and ``true`` are field
errors, not quietly converted). OpenAPI docs (``/docs``, ``/openapi.json``) come from these
models, including the example body, which works as is. Every number is finite (JSON's
``NaN`` and ``Infinity``, which Python's parser accepts, are field errors), and
prices, sizes and the tick size are bounded as ``schema.quantities`` says.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    field_validator,
    model_validator,
)

from agents.lmm import ControlParams, Temperature
from mars_ray.schema.clock import parse_clock
from mars_ray.schema.quantities import MAX_SHARES, Price, Shares, TickSize

# Named start books, laid out on the request's tick grid from the best bid outwards.
PRESETS: dict[str, dict[str, Any]] = {
    "balanced": {
        "description": "a one-tick spread above a 100.00 bid, 10 levels of 200-1,100 shares a side",
        "bid": 100.00,
        "spread_ticks": 1,
        "bid_sizes": [200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100],
        "ask_sizes": [200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100],
    },
    "thin": {
        "description": "a 10-tick spread above a 50.00 bid, 5 levels of 100 shares a side",
        "bid": 50.00,
        "spread_ticks": 10,
        "bid_sizes": [100] * 5,
        "ask_sizes": [100] * 5,
    },
    "bid_heavy": {
        "description": "a one-tick spread above a 25.00 bid, bids five times deeper than asks",
        "bid": 25.00,
        "spread_ticks": 1,
        "bid_sizes": [1500] * 10,
        "ask_sizes": [300] * 10,
    },
}


RequestShares = Annotated[Shares, Strict()]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class BookLevels(_Body):
    """A start book as price levels: [price, shares] pairs, best first on each side (the
    prices' tick grid is checked with the request's ``tick_size``: ``check_request``)."""

    bids: list[tuple[Price, RequestShares]] = Field(default_factory=list)
    asks: list[tuple[Price, RequestShares]] = Field(default_factory=list)


class LobsterSnapshot(_Body):
    """One row of a LOBSTER orderbook file: ask price, ask size, bid price, bid size, ... per
    level, prices as integers times ``price_scale`` (LOBSTER's 10,000)."""

    row: list[StrictInt] = Field(min_length=4)
    price_scale: StrictInt = Field(default=10_000, gt=0, le=10**12)

    @field_validator("row")
    @classmethod
    def _whole_levels(cls, row: list[int]) -> list[int]:
        if len(row) % 4:
            raise ValueError(f"row must have 4 values per level, got {len(row)} values")
        for k in range(1, len(row), 2):  # sizes; prices are checked on the tick grid
            if row[k] > MAX_SHARES:
                raise ValueError(f"row[{k}]: a size is at most {MAX_SHARES:,}, got {row[k]}")
        return row

    def levels(self) -> BookLevels:
        """LOBSTER's dummy prices for empty levels (|price| >= 9,999,999,999) are skipped."""
        asks, bids = [], []
        for k in range(0, len(self.row), 4):
            ask_px, ask_sz, bid_px, bid_sz = self.row[k : k + 4]
            if 0 < ask_px < 9_999_999_999 and ask_sz > 0:
                asks.append((ask_px / self.price_scale, ask_sz))
            if 0 < bid_px < 9_999_999_999 and bid_sz > 0:
                bids.append((bid_px / self.price_scale, bid_sz))
        return BookLevels(bids=bids, asks=asks)


class StartState(_Body):
    """Where every trajectory starts: exactly one of a preset, a book, or a LOBSTER row."""

    preset: str | None = Field(default=None, description=f"one of {sorted(PRESETS)}")
    book: BookLevels | None = None
    lobster: LobsterSnapshot | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StartState:
        given = [k for k in ("preset", "book", "lobster") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of preset, book, lobster; got {given or 'none'}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known: {sorted(PRESETS)}")
        return self

    def levels(self, tick_size: float) -> BookLevels:
        if self.book is not None:
            return self.book
        if self.lobster is not None:
            return self.lobster.levels()
        p = PRESETS[str(self.preset)]
        bid = round(p["bid"] / tick_size)
        ask = bid + p["spread_ticks"]
        return BookLevels(
            bids=[((bid - k) * tick_size, s) for k, s in enumerate(p["bid_sizes"]) if bid - k > 0],
            asks=[((ask + k) * tick_size, s) for k, s in enumerate(p["ask_sizes"])],
        )


class Horizon(_Body):
    """How long each trajectory runs: a number of generated orders or of seconds (one)."""

    orders: StrictInt | None = Field(default=None, gt=0, description="LMM orders per trajectory")
    seconds: float | None = Field(default=None, gt=0, le=86_400, description="simulated seconds")

    @model_validator(mode="after")
    def _exactly_one(self) -> Horizon:
        if (self.orders is None) == (self.seconds is None):
            raise ValueError("give exactly one of orders, seconds")
        return self


class InjectedOrder(_Body):
    """An order of yours, sent at ``at_s`` seconds after the start in the chosen trajectories."""

    at_s: float = Field(ge=0, le=86_400, description="seconds after start_time")
    side: Literal["buy", "sell"]
    type: Literal["limit", "market", "ioc"] = "limit"
    price: Price | None = Field(default=None, description="required for limit and ioc")
    size: RequestShares
    trajectories: list[StrictInt] | None = Field(default=None, description="default: every one")

    @model_validator(mode="after")
    def _priced(self) -> InjectedOrder:
        if self.type != "market" and self.price is None:
            raise ValueError(f"a {self.type} order needs a price")
        if self.type == "market" and self.price is not None:
            raise ValueError("a market order takes no price")
        return self


EXAMPLE_REQUEST: dict[str, Any] = {
    "instrument": "DEMO",
    "tick_size": 0.01,
    "start": {"preset": "balanced"},
    "start_time": "10:00",
    "horizon": {"orders": 50},
    "trajectories": 2,
    "seed": 7,
    "inject": [{"at_s": 1.0, "side": "buy", "type": "market", "size": 500}],
    "format": "json",
}


class TrajectoryRequest(_Body):
    """Generate ``trajectories`` continuations of one instrument's book from a start state."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_REQUEST]})

    instrument: str = Field(
        default="DEMO", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$"
    )
    tick_size: TickSize = 0.01
    start: StartState = Field(default_factory=lambda: StartState(preset="balanced"))
    start_time: str | float = Field(
        default="10:00", description="time of day the trajectories start (HH:MM[:SS])"
    )
    horizon: Horizon
    trajectories: StrictInt = Field(default=1, ge=1, description="independent continuations")
    seed: StrictInt = Field(default=0, ge=0, lt=2**63)
    temperature: Temperature = 1.0
    inject: list[InjectedOrder] = Field(default_factory=list)
    control: ControlParams | None = Field(
        default=None,
        description="steer every trajectory toward a mid path (times of day, ticks) or a "
        "volatility, as the LMM agent's `control` param",
    )
    snapshot_levels: StrictInt = Field(default=5, ge=1)
    snapshot_every_s: float = Field(default=1.0, ge=0.01, le=3600)
    format: Literal["json", "arrow"] = Field(
        default="json", description="arrow: an Arrow IPC stream (also chosen by the Accept header)"
    )

    @field_validator("start_time")
    @classmethod
    def _clock(cls, value: str | float) -> str | float:
        parse_clock(value)  # raises with the value named
        return value

    @field_validator("control", mode="before")
    @classmethod
    def _server_batch_model(cls, value: Any) -> Any:
        """A request steers with the server's order-batch model: a path in a request would
        let a client make the server read (or probe for) any file it can."""
        if isinstance(value, dict) and value.get("batch_model") is not None:
            raise ValueError(
                "batch_model: a request cannot name a file; the server's own order-batch "
                "model steers every request"
            )
        return value

    @property
    def start_ns(self) -> int:
        return parse_clock(self.start_time)
