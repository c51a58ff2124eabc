#!/usr/bin/env bash
# Submit a simulation to a running Ray cluster with Ray's own job API.
#   RAY_ADDRESS=http://head-node:8265 RAY_AUTH_TOKEN=... bash cluster/submit_demo.sh [CONFIG] [OUT]
# The working directory (this repository) is shipped to the cluster; the driver connects to the
# cluster through the RAY_ADDRESS that `ray job submit` sets, and the shard actors spread over
# its nodes. Outputs land in OUT on the node that runs the driver (use shared storage there).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/demo.yaml}"
out="${2:-/tmp/mars-ray/$(basename "$config" .yaml)}"
: "${RAY_ADDRESS:?set RAY_ADDRESS to the cluster dashboard, e.g. http://127.0.0.1:8265}"

ray job submit \
    --working-dir . \
    --runtime-env cluster/runtime_env.yaml \
    -- python -m mars_ray.cli simulate "$config" --out "$out" --quiet
