"""Runs that survive: shards write their own files, a killed shard is rebuilt from its
checkpoint, an interrupted run resumes; every time the events equal an undisturbed run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
import yaml

from mars_ray.exchange.orders import OrderBatch
from mars_ray.schema.events import OrderType, event_digest
from mars_ray.sim.config import parse_config
from mars_ray.sim.kernel import Simulation
from mars_ray.sim.run_files import (
    CHECKPOINTS,
    EVENTS,
    RunDir,
    read_events,
    read_manifest,
    read_snapshots,
)

DAY = {
    "name": "survivor",
    "seed": 4,
    "session": {"pre_open": "09:00", "open": "09:02", "closing_call": "09:18", "close": "09:20"},
    "kernel": {"shards": 2, "step_ms": 1000, "sync_ms": 30000},
    "instruments": [{"name": "AAA"}, {"name": "BBB", "reference_price": 40.0}],
    "agents": [
        {"kind": "noise", "count": 40},
        {"kind": "market_maker", "count": 2},
        {"kind": "momentum", "count": 3},
    ],
    "output": {"chunk_barriers": 3, "snapshot_every_ms": 5000, "plot": False},
}
KILL_AT = parse_config(DAY).session.pre_open + 9 * 30 * 10**9  # 3 chunks in


def config(**sections):
    return parse_config({**DAY, **sections})


def outside_orders(t: int) -> OrderBatch:
    """A user's orders, injected between runs: they must survive a lost shard too."""
    return OrderBatch.build(
        time_ns=[t + 1_000, t + 2_000],
        trajectory_id=0,
        instrument=[0, 1],
        order_type=int(OrderType.LIMIT),
        order_id=[-1, -2],
        side=[1, -1],
        price=[99.5, 40.5],
        size=[300, 200],
        agent_id=999_999,
    )


def drive(sim: Simulation, inject_at: int) -> None:
    """The run as a user drives it: to ``inject_at``, orders from outside, then the rest."""
    sim.run(inject_at)
    sim.inject(outside_orders(sim.t))
    sim.run()


@pytest.fixture(scope="module")
def undisturbed() -> str:
    """The digest of the day (with the injection) in one process, without a run folder."""
    sim = Simulation(config(), local=True)
    try:
        drive(sim, KILL_AT - 90 * 10**9)
        events, _ = sim.collect()
    finally:
        sim.close()
    assert events.num_rows > 5_000
    return event_digest(events)


def test_shards_write_chunks_that_read_back_as_the_day(undisturbed, tmp_path):
    sim = Simulation(config(), local=True, out=tmp_path)
    try:
        drive(sim, KILL_AT - 90 * 10**9)
        rows = sim.finish()
    finally:
        sim.close()
    events = read_events(tmp_path)
    assert event_digest(events) == undisturbed
    assert sum(r["events"] for r in rows) == events.num_rows
    parts = sorted(p.name for p in (tmp_path / EVENTS).iterdir())
    # 40 barriers, 3 a chunk: 14 chunks; each shard writes one part per chunk
    assert len(parts) == 2 * 14 and parts[0] == "part-t00000-s000-c000001.parquet"
    assert read_snapshots(tmp_path).num_rows > 0
    manifest = read_manifest(tmp_path)
    assert manifest["status"] == "complete" and manifest["injected_batches"] == 1
    assert not any((tmp_path / CHECKPOINTS).rglob("*.pkl"))  # a complete run needs none


def test_a_run_resumes_from_its_checkpoints_without_duplicates(undisturbed, tmp_path):
    """The driver stops (here: dropped mid-run, its shards with it); a new one resumes."""
    first = Simulation(config(), local=True, out=tmp_path)
    first.run(KILL_AT - 90 * 10**9)
    first.inject(outside_orders(first.t))
    first.run(KILL_AT + 60 * 10**9)  # past a chunk, with part of the next one done
    run_id = first.run_dir.run_id
    del first  # the crash: whatever was not on disk is gone
    manifest = read_manifest(tmp_path)
    assert manifest["status"] == "running" and manifest["run_id"] == run_id
    resumed = Simulation(config(), local=True, out=tmp_path, resume=True)
    try:
        assert resumed.t <= KILL_AT + 60 * 10**9
        resumed.run()
        resumed.finish()
    finally:
        resumed.close()
    events = read_events(tmp_path)
    assert event_digest(events) == undisturbed
    keys = events.select(["trajectory_id", "instrument", "seq"])
    assert keys.group_by(keys.column_names).aggregate([]).num_rows == events.num_rows


def test_a_checkpoint_holds_every_shard_state(tmp_path):
    sim = Simulation(config(), local=True, out=tmp_path)
    try:
        sim.run(KILL_AT)
        run = RunDir(tmp_path, sim.run_dir.run_id)
        for k in range(2):
            names = sorted(p.name for p in run.checkpoint_dir(k).iterdir())
            assert names == ["chunk-000002.pkl", "chunk-000003.pkl"]  # the two newest
    finally:
        sim.close()


class KillingSimulation(Simulation):
    """Kills shard 1's process once more while it is being rebuilt."""

    kills_left = 1

    def _replay(self, k: int, through: int) -> list[dict]:
        if self.kills_left:
            self.kills_left -= 1
            self._alive(k)
            os.kill(self._on(k, "location")["pid"], signal.SIGKILL)
        return super()._replay(k, through)


@pytest.mark.slow
def test_a_killed_shard_is_rebuilt_and_the_run_ends_as_undisturbed(
    undisturbed, tmp_path, ray_session
):
    sim = KillingSimulation(config(), out=tmp_path)
    killed = []

    def kill_once(t: int, totals: dict) -> None:
        if t >= KILL_AT and not killed:  # mid-run: later barriers are queued on the shard
            killed.append(sim.locations()[1]["pid"])
            os.kill(killed[0], signal.SIGKILL)

    try:
        sim.run(KILL_AT - 90 * 10**9)
        sim.inject(outside_orders(sim.t))
        sim.run(on_progress=kill_once)
        sim.finish()
        after = sim.locations()[1]["pid"]
    finally:
        sim.close()
    assert killed and after != killed[0] and sim.kills_left == 0
    assert [r["shard"] for r in sim.recoveries] == [1]
    assert event_digest(read_events(tmp_path)) == undisturbed


def trajectory_zero_digest(out: Path) -> str:
    return event_digest(read_events(out, filter=pc.field("trajectory_id") == 0))


@pytest.mark.slow
def test_ctrl_c_then_resume_from_the_command_line(tmp_path):
    """`mars-ray simulate` stopped by Ctrl-C says how to resume; --resume finishes the run
    with the same events as an uninterrupted one."""
    path = tmp_path / "day.yaml"
    # 50 ms steps over an hour: seconds of work after the first chunk, so that Ctrl-C lands
    # mid-run however fast the shards (the driver's calls cover ~0.25 s of work each)
    longer = {
        **DAY,
        "session": {**DAY["session"], "closing_call": "10:18", "close": "10:20"},
        "kernel": {**DAY["kernel"], "step_ms": 50},
    }
    path.write_text(yaml.safe_dump(longer))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    command = [sys.executable, "-m", "mars_ray.cli", "simulate", str(path), "--quiet", "--no-plot"]
    subprocess.run([*command, "--out", str(whole)], check=True, capture_output=True, timeout=600)
    driver = subprocess.Popen(  # started with SIGINT ignored, as a script's `&` job is
        [*command, "--out", str(cut)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        try:
            if read_manifest(cut).get("chunks", 0) >= 1:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    assert driver.poll() is None, "the run ended before Ctrl-C could land in it"
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err[-2000:]
    assert f"mars-ray simulate --resume {cut}" in err
    assert read_manifest(cut)["status"] == "running"
    resumed = subprocess.run(
        [sys.executable, "-m", "mars_ray.cli", "simulate", "--resume", str(cut), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_manifest(cut)["status"] == "complete"
    assert event_digest(read_events(cut)) == event_digest(read_events(whole))
