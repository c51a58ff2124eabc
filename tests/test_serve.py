"""The Serve deployment and HTTP API, on the shared local Ray, with the shipped model.

One application serves the module (Serve starts once: ~10 s); its API deployment
takes one request at a time and queues one more, so that the 503 path is easy to
reach. Requests are small: a few trajectories of a few dozen orders.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mars_ray.schema.events import EVENT_SCHEMA, EventType
from mars_ray.schema.validation import ConfigError
from mars_ray.serve.api import EXAMPLE_REQUEST
from mars_ray.serve.client import read_arrow, read_json
from mars_ray.serve.generator import SERVE_BACKENDS
from mars_ray.serve.settings import load_settings, parse_settings
from mars_ray.serve.trajectories import ARROW_MEDIA_TYPE, USER_AGENT

APP = "mars-ray-test"
MAX_BODY = 64 * 1024  # the service's api.max_body_bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(ray_session):
    from ray import serve

    from mars_ray.serve.app import build

    settings = parse_settings(
        {
            "app_name": APP,
            "api": {
                "max_ongoing_requests": 1,
                "max_queued_requests": 1,
                "retry_after_s": 2,
                "max_body_bytes": MAX_BODY,
            },
            "model": {"max_rows": 16},
            "limits": {"max_trajectories": 8, "max_horizon_orders": 500},
        }
    )
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    serve.run(build(settings), name=APP, route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def call(
    url: str, body: Any = None, accept: str | None = None, raw: Any = None
) -> tuple[int, dict[str, str], bytes]:
    """``body`` as Python's json writes it (NaN as a bare literal), or ``raw`` bytes, or
    an iterable of byte chunks, which urllib sends chunked (no Content-Length)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"content-type": "application/json"}
    if accept:
        headers["accept"] = accept
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def body(**changes: Any) -> dict[str, Any]:
    return {
        "start": {"preset": "balanced"},
        "horizon": {"orders": 40},
        "trajectories": 3,
        "seed": 11,
        "inject": [{"at_s": 0.5, "side": "sell", "type": "limit", "price": 100.01, "size": 700}],
        **changes,
    }


def test_health_and_models(service: str) -> None:
    status, _, data = call(f"{service}/v1/health")
    assert status == 200 and json.loads(data)["status"] == "ok"
    status, _, data = call(f"{service}/v1/models")
    models = json.loads(data)
    assert status == 200
    assert models["models"][0]["name"] == "lmm-small"
    assert len(models["models"][0]["sha256"]) == 64
    assert "balanced" in models["presets"]


def test_json_trajectories_follow_the_event_schema(service: str) -> None:
    status, _, data = call(f"{service}/v1/trajectories", body())
    assert status == 200, data
    answer = json.loads(data)
    assert [t["trajectory_id"] for t in answer["trajectories"]] == [0, 1, 2]
    assert answer["lmm_orders"] == 3 * 40
    events, snapshots = read_json(answer)
    assert events.column_names == EVENT_SCHEMA.names
    assert snapshots.num_rows > 0
    for traj in answer["trajectories"]:
        ev = pa.table(traj["events"])
        assert set(ev["trajectory_id"].to_pylist()) == {traj["trajectory_id"]}
        submits = ev.filter(pc.equal(ev["event_type"], int(EventType.SUBMIT)))
        start_book = submits.filter(pc.equal(submits["agent_id"], 0))
        assert start_book.num_rows == 20  # the preset's 10 + 10 levels
        assert min(start_book["time_ns"].to_pylist()) == 10 * 3600 * 10**9 - 10**9
        mine = ev.filter(pc.equal(ev["agent_id"], USER_AGENT))
        submit = mine.filter(pc.equal(mine["event_type"], int(EventType.SUBMIT)))
        assert submit["price"].to_pylist() == [10001] and submit["size"].to_pylist() == [700]
        lmm = ev.filter(pc.equal(ev["agent_id"], 1))
        assert lmm.num_rows > 0


def test_arrow_answer_carries_the_same_tables(service: str) -> None:
    _, _, as_json = call(f"{service}/v1/trajectories", body())
    status, headers, data = call(f"{service}/v1/trajectories", body(), accept=ARROW_MEDIA_TYPE)
    assert status == 200 and headers["content-type"] == ARROW_MEDIA_TYPE
    events, snapshots, meta = read_arrow(data)
    j_events, j_snapshots = read_json(json.loads(as_json))
    assert events.cast(j_events.schema).equals(j_events)
    assert snapshots.to_pydict() == j_snapshots.to_pydict()
    assert json.loads(meta["mars_ray.request"])["seed"] == 11
    # the body field asks for Arrow as well as the Accept header does
    _, _, by_field = call(f"{service}/v1/trajectories", body(format="arrow"))
    assert read_arrow(by_field)[0].equals(events)


def test_same_seed_same_answer_even_beside_other_requests(service: str) -> None:
    """The second answer is computed while another simulation steps the same model (its
    steps share the forward passes): it must not change a bit."""
    import threading

    from mars_ray.serve.generator import ServedGenerator

    first = call(f"{service}/v1/trajectories", body())[2]
    other = ServedGenerator(APP, 5)
    done = threading.Event()
    steps = []

    def busy() -> None:
        rng = np.random.default_rng(0)
        last = np.zeros((5, 4), dtype=np.int64)
        while not done.is_set():
            last = other.next(last, rng.normal(size=(5, 24)), rng.random((5, 4)), np.ones(5, bool))
            steps.append(1)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        second = call(f"{service}/v1/trajectories", body())[2]
    finally:
        done.set()
        thread.join()
        other.close()
    assert len(steps) > 10  # the other simulation really ran alongside
    assert second == first
    other_seed = call(f"{service}/v1/trajectories", body(seed=12))[2]
    assert json.loads(other_seed)["trajectories"] != json.loads(first)["trajectories"]


def test_injected_orders_change_the_flow(service: str) -> None:
    hit = [{"at_s": 0.2, "side": "buy", "type": "market", "size": 3000}]
    plain = json.loads(call(f"{service}/v1/trajectories", body(inject=[], seed=1))[2])
    hit_answer = json.loads(call(f"{service}/v1/trajectories", body(inject=hit, seed=1))[2])
    for before, after in zip(plain["trajectories"], hit_answer["trajectories"], strict=True):
        a, b = pa.table(before["events"]), pa.table(after["events"])
        trades = b.filter(pc.equal(b["event_type"], int(EventType.TRADE)))
        assert pc.sum(trades["size"]).as_py() >= 3000
        lmm_a = a.filter(pc.equal(a["agent_id"], 1))["price"].to_pylist()
        lmm_b = b.filter(pc.equal(b["agent_id"], 1))["price"].to_pylist()
        assert lmm_a != lmm_b  # the model saw a different book


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"trajectories": 0}, ["body", "trajectories"]),
        ({"trajectories": 9}, ["body", "trajectories"]),  # over the server limit of 8
        ({"horizon": {"orders": 501}}, ["body", "horizon", "orders"]),
        ({"horizon": {"orders": 5, "seconds": 1}}, ["body", "horizon"]),
        ({"start": {"preset": "nope"}}, ["body", "start"]),
        ({"start": {"book": {"bids": [[10.0, 100]], "asks": [[9.99, 100]]}}}, None),
        ({"tick_size": -1}, ["body", "tick_size"]),
        ({"start_time": "25:00"}, ["body", "start_time"]),
        ({"inject": [{"at_s": 1, "side": "buy", "size": 100}]}, ["body", "inject", 0]),
        ({"inject": [{"at_s": 1, "side": "up", "size": 1}]}, ["body", "inject", 0, "side"]),
        ({"surprise": 1}, ["body", "surprise"]),
        # an orders horizon runs for at most max_horizon_seconds: later orders would never run
        (
            {"inject": [{"at_s": 4000, "side": "buy", "type": "market", "size": 1}]},
            ["body", "inject", 0, "at_s"],
        ),
        ({"control": {"volatility": {"sigma": -1}}}, ["body", "control", "volatility", "sigma"]),
        # numbers that once wrapped or answered 500: a 1e300 price, NaN and Infinity literals
        (
            {"inject": [{"at_s": 1, "side": "buy", "price": 1e300, "size": 1}]},
            ["body", "inject", 0, "price"],
        ),
        ({"tick_size": float("nan")}, ["body", "tick_size"]),
        ({"horizon": {"seconds": float("inf")}}, ["body", "horizon", "seconds"]),
    ],
)
def test_bad_values_get_422_naming_the_field(service: str, change: dict, loc: list | None) -> None:
    status, _, data = call(f"{service}/v1/trajectories", body(**change))
    assert status == 422, data
    locs = [d["loc"] for d in json.loads(data)["detail"]]
    if loc is None:  # the crossed book: named by where the book came from
        assert ["body", "start", "book"] in locs
    else:
        assert loc in locs, locs


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_gets_413(service: str, chunked: bool) -> None:
    """With a Content-Length it is refused unread; sent chunked, the read stops at the limit."""
    data = json.dumps(body(inject=[body()["inject"][0]] * 1200)).encode()
    assert MAX_BODY < len(data) < 2 * MAX_BODY
    chunks = iter([data[i : i + 8192] for i in range(0, len(data), 8192)])
    status, _, answer = call(f"{service}/v1/trajectories", raw=chunks if chunked else data)
    assert status == 413, answer
    assert "api.max_body_bytes" in json.loads(answer)["detail"]
    assert call(f"{service}/v1/trajectories", body())[0] == 200


def test_malformed_json_gets_422(service: str) -> None:
    status, _, data = call(f"{service}/v1/trajectories", raw=b"{not json")
    assert status == 422
    assert json.loads(data)["detail"][0]["type"] == "json_invalid"


@pytest.mark.slow
def test_full_queues_get_503_with_retry_after_and_the_service_survives(service: str) -> None:
    slow = body(horizon={"orders": 400}, trajectories=4, inject=[])
    with cf.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: call(f"{service}/v1/trajectories", slow), range(4)))
    codes = sorted(status for status, _, _ in answers)
    assert 200 in codes and 503 in codes, codes
    for status, headers, _ in answers:
        if status == 503:
            assert int(headers["retry-after"]) >= 1
    assert call(f"{service}/v1/health")[0] == 200
    assert call(f"{service}/v1/trajectories", body())[0] == 200


def test_a_full_model_gets_503_with_retry_after(service: str) -> None:
    from mars_ray.serve.generator import ModelBusyError, ServedGenerator

    holder = ServedGenerator(APP, 12)  # 12 of the model's 16 rows
    try:
        with pytest.raises(ModelBusyError, match="model is full"):
            ServedGenerator(APP, 5)
        status, headers, data = call(f"{service}/v1/trajectories", body(trajectories=5))
        assert status == 503 and int(headers["retry-after"]) >= 1, data
        assert "model is full" in json.loads(data)["detail"]
    finally:
        holder.close()
    assert call(f"{service}/v1/trajectories", body(trajectories=5))[0] == 200


def test_openapi_carries_a_working_example(service: str) -> None:
    status, _, data = call(f"{service}/openapi.json")
    spec = json.loads(data)
    schema = spec["components"]["schemas"]["TrajectoryRequest"]
    example = schema["examples"][0]
    assert example == EXAMPLE_REQUEST
    status, _, answer = call(f"{service}/v1/trajectories", example)
    assert status == 200, answer
    assert len(json.loads(answer)["trajectories"]) == example["trajectories"]


@pytest.mark.slow
def test_a_simulation_gets_the_same_flow_from_the_served_model(service: str) -> None:
    """``backend: serve`` and ``backend: local`` are the same generator behind one interface."""
    from mars_ray.sim.config import parse_config
    from mars_ray.sim.kernel import run_simulation

    def run(backend: str) -> pa.Table:
        cfg = parse_config(
            {
                "seed": 3,
                "session": {
                    "pre_open": "09:29",
                    "open": "09:30",
                    "closing_call": "09:30:20",
                    "close": "09:31",
                },
                "kernel": {"step_ms": 1000, "sync_ms": 10000, "trajectories": 2},
                "instruments": [{"name": "AAA", "reference_price": 100.0}],
                "agents": [
                    {"kind": "noise", "count": 10},
                    {
                        "kind": "lmm",
                        "count": 1,
                        "params": {"backend": backend, "serve_app": APP, "device": "cpu"},
                    },
                ],
            }
        )
        return run_simulation(cfg, local=True, backends=SERVE_BACKENDS).events

    served = run("serve")
    assert pc.sum(pc.equal(served["agent_id"], 11)).as_py() > 50  # the LMM's orders
    assert served.equals(run("local"))


def test_model_deployment_refuses_bad_steps_alone(service: str) -> None:
    from ray import serve

    from mars_ray.serve.generator import ServedGenerator, ServedModelError
    from mars_ray.serve.settings import MODEL_DEPLOYMENT

    handle = serve.get_deployment_handle(MODEL_DEPLOYMENT, app_name=APP)
    refused = handle.step.remote(("nope", np.zeros((1, 53)))).result()
    assert "unknown or expired session" in refused["error"]
    gen = ServedGenerator(APP, 2)
    with pytest.raises(ServedModelError, match=r"a step must be \(rows, 53\)"):
        gen.next(np.zeros((2, 4)), np.zeros((2, 3)), np.zeros((2, 4)), np.ones(2, bool))
    out = gen.next(np.zeros((2, 4)), np.zeros((2, 24)), np.full((2, 4), 0.5), np.ones(2, bool))
    assert out.shape == (2, 4)
    gen.close()
    with pytest.raises(ServedModelError, match="no served model in Serve application 'absent'"):
        ServedGenerator("absent", 1)


def test_a_batch_is_capped_at_the_sessions_that_are_stepping(service: str) -> None:
    """A batch closes once every active session has stepped, so a lone simulation never
    waits out batch_wait_timeout_s; a session idle for ACTIVE_S stops counting."""
    from ray import serve

    from mars_ray.serve.generator import ServedGenerator
    from mars_ray.serve.model_server import ACTIVE_S
    from mars_ray.serve.settings import MODEL_DEPLOYMENT

    handle = serve.get_deployment_handle(MODEL_DEPLOYMENT, app_name=APP)

    def cap() -> int:
        return handle.stats.remote().result()["batch_cap"]

    def step(gen: ServedGenerator) -> None:
        gen.next(np.zeros((1, 4)), np.zeros((1, 24)), np.full((1, 4), 0.5), np.ones(1, bool))

    time.sleep(ACTIVE_S)  # sessions of earlier tests no longer count
    first, second = ServedGenerator(APP, 1), ServedGenerator(APP, 1)
    try:
        assert cap() == 2
        time.sleep(ACTIVE_S * 1.2)
        step(first)  # the idle second session no longer holds this batch open
        assert cap() == 1
        step(second)
        assert cap() == 2
    finally:
        first.close()
    assert cap() == 1
    second.close()


def test_settings_files() -> None:
    settings = load_settings("configs/serve.yaml", {"http.port": 8123})
    assert settings.http.port == 8123 and settings.model.max_batch_size == 64
    with pytest.raises(ConfigError, match=r"model\.max_batch_size"):
        parse_settings({"model": {"max_batch_size": 0}})
    with pytest.raises(ConfigError, match=r"max_trajectories \(64\) exceeds model.max_rows"):
        parse_settings({"model": {"max_rows": 32}})
    with pytest.raises(ConfigError, match=r"api\.max_queued_requests: must be -1"):
        parse_settings({"api": {"max_queued_requests": 0}})


@pytest.mark.parametrize("where", ["configs/serve.yaml", "cluster/rayservice.yaml"])
def test_serve_config_files_validate_for_ray_and_for_us(where: str) -> None:
    """configs/serve.yaml (serve run) and the RayService's serveConfigV2: Ray's schema accepts
    them, and their args are valid ServeSettings."""
    import yaml
    from conftest import PROJECT_ROOT
    from ray.serve.schema import ServeDeploySchema

    from mars_ray.sim.ray_runtime import FAST_PATH_ENV

    raw = yaml.safe_load((PROJECT_ROOT / where).read_text())
    if raw.get("kind") == "RayService":
        assert raw["apiVersion"] == "ray.io/v1"
        cluster = raw["spec"]["rayClusterConfig"]
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for group in groups:  # every Ray process starts with Serve's fast request path
            (container,) = group["template"]["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert {k: env.get(k) for k in FAST_PATH_ENV} == FAST_PATH_ENV, container["name"]
        raw = yaml.safe_load(raw["spec"]["serveConfigV2"])
    config = ServeDeploySchema.model_validate(raw)
    (app,) = config.applications
    assert app.import_path == "mars_ray.serve.app:build_app"
    parse_settings(app.args)
    names = {d.name for d in app.deployments}
    assert names <= {"LMMModel", "TrajectoryAPI"}


def test_cli_rejects_a_bad_config_by_name(tmp_path) -> None:
    from click.testing import CliRunner

    from mars_ray.cli import cli

    bad = tmp_path / "serve.yaml"
    bad.write_text("model: {max_batch_size: -3}\n")
    result = CliRunner().invoke(cli, ["serve", str(bad)])
    assert result.exit_code != 0
    assert "model.max_batch_size" in result.output and "-3" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_mars_ray_serve_answers_on_its_port(stop: str) -> None:
    """The command as a user runs it: its own embedded Ray, HTTP on --port; SIGINT (Ctrl-C)
    or SIGTERM stops it cleanly. It starts with SIGINT ignored, as a shell script's
    background job (``mars-ray serve &``) does: SIGINT must still stop it."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from conftest import PROJECT_ROOT

    port = free_port()
    exe = PROJECT_ROOT / ".venv" / "bin" / "mars-ray"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "mars_ray.cli"]
    proc = subprocess.Popen(
        [*command, "serve", "configs/serve.yaml", "--port", str(port), "--num-cpus", "1"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ""},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        start_new_session=True,  # its own process group: a hung server goes with its Ray
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any(line.startswith("serving") for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        status, _, data = call(f"http://127.0.0.1:{port}/v1/health")
        assert status == 200 and json.loads(data)["model"] == "lmm-small"
    finally:
        proc.send_signal(getattr(signal, stop))
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired as exc:  # chained: shows any failure before the signal
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out = "".join(lines)[-3000:]
            raise AssertionError(f"still running 120 s after {stop}:\n{out}") from exc
        finally:
            reader.join(timeout=10)
    out = "".join(lines)
    assert f"http://127.0.0.1:{port}/v1/trajectories" in out
    assert "stopping" in out and proc.returncode == 0, out[-2000:]


def test_a_lobster_row_starts_the_book_and_seconds_bound_the_horizon(service: str) -> None:
    """The first row of the real GOOG orderbook file (10 levels, prices x 10,000) as the start
    book; a 2-second horizon; an order injected into trajectory 1 only."""
    import gzip

    from conftest import data_dir

    path = data_dir() / "lobster" / "GOOG_2012-06-21_34200000_57600000_orderbook_10.csv.gz"
    with gzip.open(path, "rt") as f:
        row = [int(v) for v in f.readline().split(",")]
    request = body(
        start={"lobster": {"row": row}},
        horizon={"seconds": 2},
        trajectories=2,
        inject=[
            {
                "at_s": 1,
                "side": "buy",
                "type": "ioc",
                "price": row[0] / 10_000,
                "size": 1,
                "trajectories": [1],
            }
        ],
    )
    status, _, data = call(f"{service}/v1/trajectories", request)
    assert status == 200, data
    t0 = 10 * 3600 * 10**9
    for traj in json.loads(data)["trajectories"]:
        ev = pa.table(traj["events"])
        times = np.array(ev["time_ns"].to_pylist())
        assert times.min() == t0 - 10**9 and times.max() < t0 + 2 * 10**9
        submits = ev.filter(pc.equal(ev["event_type"], int(EventType.SUBMIT)))
        start = submits.filter(pc.equal(submits["agent_id"], 0))
        got = sorted(zip(start["price"].to_pylist(), start["size"].to_pylist(), strict=True))
        levels = [(row[k] // 100, row[k + 1]) for k in range(0, 40, 2)]  # ticks of 0.01
        assert got == sorted(levels)  # all 10 ask and 10 bid levels, as in the file
        users = ev.filter(pc.equal(ev["agent_id"], USER_AGENT)).num_rows
        assert (users > 0) == (traj["trajectory_id"] == 1)
