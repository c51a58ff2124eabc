#!/usr/bin/env bash
# Submit a simulation to a running Ray cluster with Ray's own job API:
#   RAY_ADDRESS=http://HEAD:8265 bash cluster/submit_demo.sh [CONFIG] [OUT]
# CONFIG defaults to configs/demo.yaml, OUT to /tmp/mars-ray/<config name>: the shards write the
# run folder from their own nodes, so on a real cluster OUT must be storage every node sees. The
# repository travels as the job's working directory; the driver joins the cluster through the
# RAY_ADDRESS that `ray job submit` gives it, and the shard actors spread over the nodes.
#
# Only RAY_ADDRESS is needed. Ray's token authentication (on by default) wants the head's token
# on the client: like Ray, this script takes it from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
# ~/.ray/auth_token, and turns on RAY_AUTH_MODE=token for `ray job submit` when it finds one.
# MARS_RAY_RUNTIME_ENV picks the runtime environment: cluster/runtime_env.yaml (default: the
# image has only Ray; Ray's pip plugin installs mars-ray's pinned dependencies) or
# cluster/runtime_env_image.yaml (an image built from cluster/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/demo.yaml}"
out="${2:-/tmp/mars-ray/$(basename "$config" .yaml)}"
source cluster/job_env.sh

exec ray job submit \
    --address "$RAY_ADDRESS" \
    --working-dir . \
    --runtime-env "$runtime_env" \
    -- python -m mars_ray.cli simulate "$config" --out "$out" --quiet
