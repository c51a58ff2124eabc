"""Numbers at the HTTP API, in process: the API's own FastAPI app (``routes.make_api``) in
front of a stub service whose LMM runs locally, called as a server would call it
(``tests/asgi.py``). Every number a body can carry is finite and in range or a 422 naming
it; a body over the limit is a 413 before it is read; and a fuzz test over every numeric
field shows no 500 and no order the user did not send. tests/test_serve.py checks a 422
and a 413 over real HTTP."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pyarrow as pa
import pytest
from asgi import Answer, call, post_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn
from nasty_numbers import EXTREMES, NASTY, is_non_finite
from pydantic import ValidationError

from mars_ray.schema.events import NO_PRICE, EventType
from mars_ray.schema.quantities import MAX_SHARES, MAX_TICKS
from mars_ray.serve.api import TrajectoryRequest
from mars_ray.serve.routes import make_api
from mars_ray.serve.settings import parse_settings
from mars_ray.serve.trajectories import USER_AGENT

MAX_BODY = 64 * 1024
URL = "/v1/trajectories"


class LocalService:
    """A ``routes.TrajectoryService`` with the shipped model in process, no Serve."""

    settings = parse_settings(
        {
            "api": {"max_body_bytes": MAX_BODY},
            "limits": {"max_trajectories": 4, "max_horizon_orders": 50},
        }
    )
    lmm: dict[str, Any] = {"backend": "local", "device": "cpu"}  # noqa: RUF012

    async def model_info(self) -> dict[str, Any]:
        return {"name": "lmm-small", "sha256": "0" * 64, "params": 0, "config": {}}

    async def model_stats(self) -> dict[str, Any]:
        return {}


API = make_api(LocalService())

BASE: dict[str, Any] = {
    "start": {"preset": "balanced"},
    "horizon": {"seconds": 1.0},
    "trajectories": 2,
    "seed": 3,
    "inject": [{"at_s": 0.5, "side": "buy", "type": "limit", "price": 99.5, "size": 300}],
}


def request(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), **changes}


def order(**changes: Any) -> dict[str, Any]:
    return {**BASE["inject"][0], **changes}


def locs(answer: Answer) -> list[list[Any]]:
    return [d["loc"] for d in answer.json()["detail"]]


# ------------------------------------------------------------------ named cases
@pytest.mark.parametrize("literal", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (lambda v: request(tick_size=v), ["body", "tick_size"]),
        (lambda v: request(horizon={"seconds": v}), ["body", "horizon", "seconds"]),
        (lambda v: request(inject=[order(at_s=v)]), ["body", "inject", 0, "at_s"]),
        (lambda v: request(inject=[order(price=v)]), ["body", "inject", 0, "price"]),
        (lambda v: request(inject=[order(size=v)]), ["body", "inject", 0, "size"]),
        (
            lambda v: request(start={"book": {"bids": [[v, 100]]}}),
            ["body", "start", "book", "bids", 0, 0],
        ),
        (lambda v: request(start_time=v), ["body", "start_time", "float"]),
        (
            lambda v: request(control={"volatility": {"sigma": v}}),
            ["body", "control", "volatility", "sigma"],
        ),
    ],
)
def test_nan_and_infinity_literals_get_422_naming_the_field(body, loc, literal) -> None:
    """Python's json writes (and reads) NaN and Infinity as bare literals; FastAPI's own
    422 could not encode them back and answered 500."""
    answer = post_json(API, URL, body(literal))
    assert answer.status == 422, answer.body
    assert loc in locs(answer)
    detail = next(d for d in answer.json()["detail"] if d["loc"] == loc)
    assert detail["input"] == {math.inf: "Infinity", -math.inf: "-Infinity"}.get(literal, "NaN")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (request(inject=[order(price=1e300)]), ["body", "inject", 0, "price"]),
        (request(inject=[order(price=(MAX_TICKS + 1) * 0.01)]), ["body", "inject", 0, "price"]),
        (request(inject=[order(price=1e-300)]), ["body", "inject", 0, "price"]),
        (request(inject=[order(size=MAX_SHARES + 1)]), ["body", "inject", 0, "size"]),
        (request(inject=[order(size=10**30)]), ["body", "inject", 0, "size"]),
        (request(inject=[order(at_s=1e300)]), ["body", "inject", 0, "at_s"]),
        (request(tick_size=1e-300), ["body", "tick_size"]),
        (request(tick_size=1e300), ["body", "tick_size"]),
        (request(tick_size=1e-9), ["body", "start", "preset", "bids", 0]),  # 1e11 ticks
        (request(start={"book": {"asks": [[1e300, 5]]}}), ["body", "start", "book", "asks", 0, 0]),
        (
            request(start={"book": {"asks": [[100, 10**12]]}}),
            ["body", "start", "book", "asks", 0, 1],
        ),
        (
            request(start={"lobster": {"row": [1000100, 10**12, 1000000, 100]}}),
            ["body", "start", "lobster", "row"],
        ),
        (request(start_time=1e300), ["body", "start_time"]),
        (request(horizon={"seconds": 1e300}), ["body", "horizon", "seconds"]),
    ],
)
def test_huge_and_tiny_numbers_get_422_naming_the_field(body, loc) -> None:
    answer = post_json(API, URL, body)
    assert answer.status == 422, answer.body
    assert loc in locs(answer)


@pytest.mark.parametrize("value", ["2", 2.0, True])
@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (lambda v: request(trajectories=v), ["body", "trajectories"]),
        (lambda v: request(seed=v), ["body", "seed"]),
        (lambda v: request(horizon={"orders": v}), ["body", "horizon", "orders"]),
        (lambda v: request(snapshot_levels=v), ["body", "snapshot_levels"]),
        (lambda v: request(inject=[order(size=v)]), ["body", "inject", 0, "size"]),
        (
            lambda v: request(inject=[order(trajectories=[v])]),
            ["body", "inject", 0, "trajectories", 0],
        ),
        (
            lambda v: request(start={"book": {"asks": [[100, v]]}}),
            ["body", "start", "book", "asks", 0, 1],
        ),
        (
            lambda v: request(start={"lobster": {"row": [1000100, v, 1000000, 100]}}),
            ["body", "start", "lobster", "row", 1],
        ),
    ],
)
def test_a_whole_number_given_as_text_float_or_bool_gets_422(body, loc, value) -> None:
    """Counts, sizes and seeds are JSON integers; "2", 2.0 or true is a field error,
    not quietly read as 2 or 1."""
    answer = post_json(API, URL, body(value))
    assert answer.status == 422, answer.body
    assert loc in locs(answer)


def test_the_largest_price_and_size_are_served_exactly() -> None:
    biggest = order(type="ioc", price=MAX_TICKS * 0.01, size=MAX_SHARES)
    answer = post_json(API, URL, request(inject=[biggest]))
    assert answer.status == 200, answer.body
    for traj in answer.json()["trajectories"]:
        assert sent_order_events(traj["events"]) == [(MAX_TICKS, MAX_SHARES)]


# ------------------------------------------------------------------ the body limit
def test_a_body_over_the_limit_gets_413_before_a_byte_is_read() -> None:
    big = request(inject=[order()] * 1000)  # some 90 KB
    answer = post_json(API, URL, big)
    assert answer.status == 413 and answer.chunks_read == 0
    assert "64,000" in answer.json()["detail"] or "65,536" in answer.json()["detail"]


def test_a_chunked_body_over_the_limit_is_read_no_further() -> None:
    big = request(inject=[order()] * 1000)
    data = json.dumps(big).encode()
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    answer = call(API, "POST", URL, chunks, {"content-type": "application/json"})
    assert answer.status == 413
    assert answer.chunks_read == MAX_BODY // 4096 + 1 < len(chunks)


def test_a_chunked_body_under_the_limit_is_served() -> None:
    answer = post_json(API, URL, request(), chunked=True)
    assert answer.status == 200, answer.body


# ------------------------------------------------------------------ fuzz
# every numeric field of a request, with the start or control it needs to exist
FIELDS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("tick_size",), {}),
    (("start_time",), {}),
    (("horizon", "seconds"), {}),
    (("horizon", "orders"), {"horizon": {"orders": 5}}),
    (("trajectories",), {}),
    (("seed",), {}),
    (("temperature",), {}),
    (("snapshot_levels",), {}),
    (("snapshot_every_s",), {}),
    (("inject", 0, "at_s"), {}),
    (("inject", 0, "price"), {}),
    (("inject", 0, "size"), {}),
    (("inject", 0, "trajectories", 0), {}),
    *(
        (
            ("start", "book", side, 0, k),
            {"start": {"book": {"bids": [[99.0, 100]], "asks": [[101.0, 100]]}}},
        )
        for side in ("bids", "asks")
        for k in (0, 1)
    ),
    *(
        (
            ("start", "lobster", "row", k),
            {"start": {"lobster": {"row": [1010000, 100, 990000, 100]}}},
        )
        for k in range(4)
    ),
    (
        ("start", "lobster", "price_scale"),
        {"start": {"lobster": {"row": [1010000, 100, 990000, 100]}}},
    ),
    *(
        (("control", field), {"control": {"volatility": {"sigma": 1.0}}})
        for field in ("horizon_s", "gain", "max_bias", "seed")
    ),
    (("control", "volatility", "sigma"), {"control": {"volatility": {"sigma": 1.0}}}),
    (("control", "volume", "orders_per_s"), {"control": {"volume": {"orders_per_s": 5.0}}}),
    (
        ("control", "mid_path", "ticks", 1),
        {"control": {"mid_path": {"at": ["10:00", "10:00:01"], "ticks": [0.0, 2.0]}}},
    ),
]


def with_field(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """``body`` with the field at ``path`` set to ``value`` (missing lists and dicts made)."""
    node = body
    for key in path[:-1]:
        if isinstance(key, str) and key not in node:
            node[key] = [] if key == "trajectories" else {}
        node = node[key]
    if isinstance(node, list) and len(node) <= path[-1]:
        node.append(None)
    node[path[-1]] = value
    return body


def check_answer(body: dict[str, Any], mutated: tuple[Any, ...] | None, value: Any) -> int:
    """POST ``body`` (``mutated``: the path set to ``value``, if any) and check the answer:
    200 or 422, strict JSON, a 422 for a non-finite value and never for the valid request,
    and in a 200 the injected order as sent, in ticks and shares. Returns the status."""
    answer = post_json(API, URL, body)  # a 500 raises here, with its traceback
    assert answer.status in (200, 422), answer.body
    payload = answer.json()  # strict JSON either way
    if is_non_finite(value):
        assert answer.status == 422, answer.body
    if answer.status == 422:
        assert mutated is not None, payload  # the valid request must be served
        assert all(d["loc"][0] == "body" for d in payload["detail"])
        return 422
    sent = body["inject"][0]
    tick = float(body.get("tick_size", 0.01))
    price = NO_PRICE if sent["type"] == "market" else round(float(sent["price"]) / tick)
    size = int(float(sent["size"]))
    assert 1 <= size <= MAX_SHARES and (price == NO_PRICE or 1 <= price <= MAX_TICKS)
    chosen = sent.get("trajectories") or range(body.get("trajectories", 1))
    for traj in payload["trajectories"]:
        expected = [(price, size)] if traj["trajectory_id"] in chosen else []
        assert sent_order_events(traj["events"]) == expected
    return 200


@pytest.mark.parametrize(("path", "needs"), FIELDS, ids=[".".join(map(str, p)) for p, _ in FIELDS])
def test_every_numeric_field_serves_or_refuses_each_extreme(path, needs) -> None:
    statuses = []
    for value in EXTREMES:
        body = with_field({**request(), **copy.deepcopy(needs)}, path, value)
        statuses.append(check_answer(body, path, value))
    assert 422 in statuses


@st.composite
def fuzzed_requests(draw: DrawFn) -> tuple[dict[str, Any], tuple[Any, ...] | None, Any]:
    """A request with one valid injected order (any price and size inside the bounds),
    and one numeric field (or none) set to a nasty value."""
    kind = draw(st.sampled_from(["limit", "ioc", "market"]))
    ticks = draw(st.integers(1, MAX_TICKS) | st.integers(9_900, 10_100))
    sent = {
        "at_s": draw(st.floats(0, 0.99)),
        "side": draw(st.sampled_from(["buy", "sell"])),
        "type": kind,
        "size": draw(st.integers(1, MAX_SHARES) | st.integers(1, 1000)),
    }
    if kind != "market":
        sent["price"] = ticks * 0.01
    body = request(inject=[sent])
    mutation = draw(st.none() | st.sampled_from(FIELDS))
    if mutation is None:
        return body, None, None
    path, needs = mutation
    body.update(copy.deepcopy(needs))
    value = draw(NASTY)
    return with_field(body, path, value), path, value


def sent_order_events(events: dict[str, list]) -> list[tuple[int, int]]:
    """(price, size) of the injected order's arrival: its SUBMIT or REJECT event."""
    table = pa.table(events)
    arrivals = (int(EventType.SUBMIT), int(EventType.REJECT))
    return [
        (row["price"], row["size"])
        for row in table.to_pylist()
        if row["agent_id"] == USER_AGENT and row["event_type"] in arrivals
    ]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(fuzzed_requests())
def test_fuzzed_requests_never_fail_and_never_change_an_order(case) -> None:
    check_answer(*case)


def test_a_request_cannot_name_a_file_on_the_server() -> None:
    """control.batch_model would make the server read (or probe for) any path it can."""
    body = {"horizon": {"orders": 5}, "control": {"volume": {"orders_per_s": 5}}}
    TrajectoryRequest.model_validate(body)
    messages = []
    for path in ("/etc/passwd", "/no/such/file"):
        with pytest.raises(ValidationError) as info:
            TrajectoryRequest.model_validate(
                {**body, "control": {**body["control"], "batch_model": path}}
            )
        messages += [error["msg"] for error in info.value.errors()]
    # one answer whether the file exists or not: nothing to probe with
    assert len(messages) == 2 and messages[0] == messages[1]
    assert "cannot name a file" in messages[0]
