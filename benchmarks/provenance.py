"""What every benchmark's JSON records beside its figures (``mars_ray.commands.provenance``:
the machine, the command and the code it measured), as the benchmark scripts write it."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mars_ray.commands.provenance import provenance as recorded  # noqa: E402


def provenance() -> dict[str, Any]:
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return recorded(shlex.join(["python", str(shown), *sys.argv[1:]]))


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    """``result`` with its provenance, as indented JSON at ``path`` (nothing if None)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**result, **provenance()}, indent=2) + "\n")
