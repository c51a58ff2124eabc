"""The cluster files hold together without a cluster: KubeRay manifests name what exists in the
repository and in its image, and the jobs' runtime environments match the package's pins."""

from __future__ import annotations

import importlib
import importlib.util
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from conftest import PROJECT_ROOT

from mars_ray.serve.settings import parse_settings
from mars_ray.sim.config import load_config

CLUSTER = PROJECT_ROOT / "cluster"
DOCKERFILE = (CLUSTER / "Dockerfile").read_text()
WORKDIR = re.search(r"^WORKDIR (\S+)", DOCKERFILE, re.M).group(1)  # type: ignore[union-attr]


def manifest(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text())


def containers(cluster_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container of a RayCluster spec: the head's and each worker group's."""
    groups = [cluster_spec["headGroupSpec"], *cluster_spec.get("workerGroupSpecs", [])]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


def check_cluster_spec(spec: dict[str, Any]) -> None:
    """What both manifests' RayCluster needs: Ray's version, the project's image at its
    working directory, and token authentication on every node from one secret."""
    assert spec["rayVersion"] == ray.__version__
    assert "rayStartParams" in spec["headGroupSpec"]
    for group in spec.get("workerGroupSpecs", []):
        assert group["groupName"] and "rayStartParams" in group
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    images = set()
    for container in containers(spec):
        images.add(container["image"])
        assert container["workingDir"] == WORKDIR, container["name"]
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"], container["name"]
        assert container["resources"]["limits"] == container["resources"]["requests"]
    assert len(images) == 1  # one image, built from cluster/Dockerfile


def test_the_dockerfile_builds_on_the_ray_and_python_this_project_pins() -> None:
    base = re.search(r"^FROM rayproject/ray:(\S+)-py(\d)(\d+)$", DOCKERFILE, re.M)
    assert base, DOCKERFILE
    assert base.group(1) == ray.__version__
    assert (base.group(2), base.group(3)) == tuple(platform.python_version_tuple()[:2])
    assert "-c constraints.txt" in DOCKERFILE and '"torch==2.13.0"' in DOCKERFILE


def test_the_rayjob_runs_a_config_of_this_repository() -> None:
    job = manifest("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["metadata"]["name"]
    entry = job["spec"]["entrypoint"].split()
    assert entry[:4] == ["python", "-m", "mars_ray.cli", "simulate"]
    load_config(PROJECT_ROOT / entry[4])  # exists and validates
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    check_cluster_spec(job["spec"]["rayClusterSpec"])


def test_the_rayservice_deploys_this_serve_application() -> None:
    service = manifest("rayservice.yaml")
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    check_cluster_spec(service["spec"]["rayClusterConfig"])
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    for app in config["applications"]:
        module, attribute = app["import_path"].split(":")
        assert callable(getattr(importlib.import_module(module), attribute))
        parse_settings(app["args"], "rayservice.yaml")  # raises naming the field
        from mars_ray.serve.settings import API_DEPLOYMENT, MODEL_DEPLOYMENT

        assert {d["name"] for d in app["deployments"]} <= {API_DEPLOYMENT, MODEL_DEPLOYMENT}
    # the serve config the local tools use deploys the same application
    local = yaml.safe_load((PROJECT_ROOT / "configs" / "serve.yaml").read_text())
    assert {a["import_path"] for a in local["applications"]} == {
        a["import_path"] for a in config["applications"]
    }


def load_runtime_env_script():
    spec = importlib.util.spec_from_file_location(
        "runtime_env", PROJECT_ROOT / "scripts" / "runtime_env.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_runtime_environments_match_the_package_pins() -> None:
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "runtime_env.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout
    script = load_runtime_env_script()
    env = yaml.safe_load(script.PIP_ENV.read_text())
    pinned = {script.name_of(r) for r in env["pip"]}
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {script.name_of(r) for r in project["dependencies"]} - {"ray"}
    assert pinned == wanted
    for requirement in env["pip"]:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.]*", requirement), requirement
    image = yaml.safe_load(script.IMAGE_ENV.read_text())
    assert "pip" not in image and image["excludes"] == env["excludes"]
    assert ".git" in env["excludes"] and ".venv" in env["excludes"]


def test_the_drift_check_fails_on_a_stale_file(tmp_path: Path, monkeypatch) -> None:
    script = load_runtime_env_script()
    stale = tmp_path / "runtime_env.yaml"
    stale.write_text(script.PIP_ENV.read_text().replace("numba==", "numba==0.0.0#"))
    image = tmp_path / "runtime_env_image.yaml"
    image.write_text(script.IMAGE_ENV.read_text())
    monkeypatch.setattr(script, "PIP_ENV", stale)
    monkeypatch.setattr(script, "IMAGE_ENV", image)
    monkeypatch.setattr(sys, "argv", ["runtime_env.py", "--check"])
    assert script.main() == 1


@pytest.mark.parametrize("name", ["submit_demo.sh", "submit_rl.sh", "job_env.sh"])
def test_the_scripts_parse(name: str) -> None:
    done = subprocess.run(["bash", "-n", str(CLUSTER / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
