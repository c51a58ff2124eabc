"""What a figure's JSON records beside the figures: the machine, the command and the code
that made it, so that a figure can be reproduced and compared only with its peers. The
benchmarks (``benchmarks/provenance.py``) and the commands that write reports share it."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the source tree (or site-packages, no git)


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The first CUDA device, if torch is already loaded and sees one."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(0))


def commit() -> str:
    """HEAD, with ``-dirty`` when tracked files outside ``docs/`` (where figures are
    written) have uncommitted changes; ``unknown`` outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("-dirty" if dirty else "") if head else "unknown"


def provenance(command: str) -> dict[str, Any]:
    """``command`` (as one would type it), the commit, the date and the machine."""
    return {
        "command": command,
        "commit": commit(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "gpu": gpu_name(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
