#!/usr/bin/env bash
# Set-up on a fresh machine: a virtual environment in .venv with mars-ray and its pinned
# dependencies. `--dev` adds the test tools. Safe to run again: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
if [[ "${1:-}" == "--dev" ]]; then
    extras="[dev]"
fi

python_bin="${PYTHON:-}"
if [[ -z "$python_bin" ]]; then
    for candidate in python3.11 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then
            python_bin="$candidate"
            break
        fi
    done
fi
if [[ -z "$python_bin" ]]; then
    echo "install.sh: no python3 found; install Python 3.11 first" >&2
    exit 1
fi

if [[ ! -x .venv/bin/python ]]; then
    "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
# torch first and pinned: an unpinned torch pulled in by something else would be a multi-GB CUDA build
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".${extras}"
# compile the order book (simulation and replay), agent and fused LMM step kernels once,
# into numba's cache
.venv/bin/python -c "from mars_ray.exchange.compiled_book import warm_up; warm_up()"
.venv/bin/python -c "from mars_ray.data.lobster_replay import warm_up; warm_up()"
.venv/bin/python -c "from agents.warm_up import warm_up; warm_up()"
.venv/bin/python -c "from mars_ray.sim.book_events import warm_up; warm_up()"
.venv/bin/python -c "from mars_ray.lmm.fast_step import warm_up; warm_up()"
