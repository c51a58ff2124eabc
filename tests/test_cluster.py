"""The cluster path as users take it: a real two-node Ray cluster started with `ray start` (token
authentication on, as Ray's default), a simulation submitted by `cluster/submit_demo.sh`
through `ray job submit`, and a driver that joins the cluster; either way the events equal
the same config's run in one process, and the shards land on different nodes. RL training
and a Tune sweep go through `cluster/submit_rl.sh` the same way.

The nodes are processes of their own (one CPU each, free ports, a private temp dir and
token), so they never meet the session's local Ray of the other tests, and they are stopped
at the end, also when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import PROJECT_ROOT

from mars_ray.schema.events import event_digest
from mars_ray.sim.config import load_config
from mars_ray.sim.kernel import run_simulation
from mars_ray.sim.run_files import read_events

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent  # the environment's `ray` and `python`
START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 600

SHORT_DAY = {
    "name": "cluster_smoke",
    "seed": 5,
    "session": {"pre_open": "09:00", "open": "09:01", "closing_call": "09:08", "close": "09:09"},
    "kernel": {"shards": 2, "step_ms": 1000, "sync_ms": 60000},
    "instruments": [{"name": "AAA", "reference_price": 100.0}, {"name": "BBB"}],
    "agents": [{"kind": "noise", "count": 30}, {"kind": "market_maker", "count": 2}],
    "output": {"plot": False},
}


@dataclass
class LocalCluster:
    gcs: str  # the head's GCS address, what a driver joins
    dashboard: str  # the job API's address, what `ray job submit` talks to
    token: str
    temp_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A client's environment: this project's tools first on PATH, no inherited Ray
        settings (RAY_ADDRESS would override any address given), plus ``extra``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
        return {**base, "RAY_USAGE_STATS_ENABLED": "0", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own session: stopping it stops the node it runs."""
    command = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_node(process: subprocess.Popen) -> None:
    """SIGTERM (the node shuts its processes down), then SIGKILL to the whole group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_leftovers(temp_dir: Path) -> None:
    """Any process of this cluster still alive: its command line names the private temp dir."""
    marker = str(temp_dir)
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or ()):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def wait_for(check, what: str, processes: list[subprocess.Popen], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for p in processes:
            if p.poll() is not None:
                pytest.fail(f"a Ray node exited ({p.returncode}) while {what}:\n{log.read_text()}")
        if check():
            return
        time.sleep(1)
    pytest.fail(f"timed out while {what}:\n{log.read_text()[-4000:]}")


def dashboard_up(cluster: LocalCluster) -> bool:
    request = urllib.request.Request(
        f"{cluster.dashboard}/api/version", headers={"Authorization": f"Bearer {cluster.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def alive_nodes(cluster: LocalCluster) -> int:
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1]); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    done = subprocess.run(
        [str(BIN / "python"), "-c", probe, cluster.gcs],
        env=cluster.env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A head and a worker node, one CPU each, token authentication on."""
    temp_dir = Path(tempfile.mkdtemp(prefix="mrc", dir="/tmp"))  # short: socket paths
    log = tmp_path_factory.mktemp("cluster") / "nodes.log"
    gcs, dashboard = free_port(), free_port()
    cluster = LocalCluster(
        f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", secrets.token_hex(32), temp_dir
    )
    env = cluster.env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp_dir)]
    nodes: list[subprocess.Popen] = []
    try:
        head = [
            "--head", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dashboard), "--include-dashboard", "true",
            "--dashboard-agent-listen-port", str(free_port()),
            "--ray-client-server-port", str(free_port()),
        ]  # fmt: skip
        nodes.append(start_node([*head, *common], env, log))
        wait_for(lambda: dashboard_up(cluster), "starting the head", nodes, log)
        worker = ["--address", cluster.gcs, "--dashboard-agent-listen-port", str(free_port())]
        nodes.append(start_node([*worker, *common], env, log))
        wait_for(lambda: alive_nodes(cluster) == 2, "adding the worker node", nodes, log)
        yield cluster
    finally:
        for node in reversed(nodes):
            stop_node(node)
        kill_leftovers(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def short_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The config file every test runs, and the digest of its events in one process."""
    path = tmp_path_factory.mktemp("config") / "cluster_smoke.yaml"
    path.write_text(yaml.safe_dump(SHORT_DAY))
    events = run_simulation(load_config(path), local=True).events
    assert events.num_rows > 1_000
    return path, event_digest(events)


def submit(
    cluster: LocalCluster, config: Path, out: Path, **env: str
) -> subprocess.CompletedProcess:
    """`bash cluster/submit_demo.sh CONFIG OUT` as the README shows it."""
    return run_script(cluster, ["cluster/submit_demo.sh", str(config), str(out)], **env)


def run_script(cluster: LocalCluster, args: list[str], **env: str) -> subprocess.CompletedProcess:
    """`bash SCRIPT ARGS...` from the repository, with the cluster's job API address."""
    return subprocess.run(
        ["bash", *args],
        cwd=PROJECT_ROOT,
        env=cluster.env(RAY_ADDRESS=cluster.dashboard, **env),
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )


def test_a_job_submitted_by_the_script_writes_the_local_events(
    cluster: LocalCluster, short_day: tuple[Path, str], tmp_path: Path
) -> None:
    """Only RAY_ADDRESS and the head's token: the script turns on token auth for the client."""
    config, digest = short_day
    out = tmp_path / "run"
    done = submit(
        cluster,
        config,
        out,
        RAY_AUTH_TOKEN=cluster.token,
        MARS_RAY_RUNTIME_ENV="cluster/runtime_env_image.yaml",
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in (done.stdout + done.stderr).lower()
    assert event_digest(read_events(out)) == digest


def test_without_a_token_the_script_says_what_to_set(
    cluster: LocalCluster, short_day: tuple[Path, str], tmp_path: Path
) -> None:
    config, _ = short_day
    done = submit(cluster, config, tmp_path / "run", HOME=str(tmp_path))  # no ~/.ray either
    assert done.returncode != 0
    assert "set RAY_AUTH_TOKEN to the head's token" in done.stderr
    assert not (tmp_path / "run" / "events").exists()


def test_rl_training_and_a_sweep_run_as_jobs(cluster: LocalCluster, tmp_path: Path) -> None:
    """`cluster/submit_rl.sh`: a two-iteration training job and a two-trial sweep."""
    env = {
        "RAY_AUTH_TOKEN": cluster.token,
        "MARS_RAY_RUNTIME_ENV": "cluster/runtime_env_image.yaml",
    }
    rl = ["cluster/submit_rl.sh"]
    train = tmp_path / "train"
    done = run_script(
        cluster, [*rl, "train", "configs/rl/tiny.yaml", str(train), "--iterations", "2"], **env
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert (train / "policies" / "execution.npz").is_file()
    assert len((train / "progress.jsonl").read_text().splitlines()) == 2
    sweep = tmp_path / "sweep"
    args = ["tune", "configs/rl/tiny.yaml", str(sweep), "--samples", "2", "--iterations", "2"]
    done = run_script(cluster, [*rl, *args], **env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert len((sweep / "results.csv").read_text().splitlines()) == 3


DRIVER = """
import json, sys
from mars_ray.schema.events import event_digest
from mars_ray.sim.config import load_config
from mars_ray.sim.kernel import Simulation

sim = Simulation(load_config(sys.argv[1], {"ray.address": sys.argv[2]}))
try:
    nodes = [where["node"] for where in sim.locations()]
    sim.run()
    events, _ = sim.collect()
finally:
    sim.close()
print(json.dumps({"nodes": nodes, "digest": event_digest(events)}))
"""


def test_a_driver_on_the_cluster_spreads_shards_over_both_nodes(
    cluster: LocalCluster, short_day: tuple[Path, str]
) -> None:
    config, digest = short_day
    done = subprocess.run(
        [str(BIN / "python"), "-c", DRIVER, str(config), cluster.gcs],
        cwd=PROJECT_ROOT,
        env=cluster.env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token),
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(set(result["nodes"])) == 2, result["nodes"]  # one CPU a node: one shard each
    assert result["digest"] == digest
