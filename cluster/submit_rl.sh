#!/usr/bin/env bash
# Submit RL training or a Tune sweep to a running Ray cluster with Ray's own job API:
#   RAY_ADDRESS=http://HEAD:8265 bash cluster/submit_rl.sh train|tune CONFIG [OUT] [OPTION...]
# CONFIG: an RL config (configs/rl/); OUT defaults to /tmp/mars-ray/rl/<config name> (on a real
# cluster, storage the driver's node keeps); further options go to `mars-ray rl train|tune`
# (e.g. --iterations 2, --samples 2). The driver joins the cluster through the RAY_ADDRESS that
# `ray job submit` gives it; the env runners (training.num_env_runners) and the sweep's trials
# are placed on the cluster's nodes. Token authentication and MARS_RAY_RUNTIME_ENV as in
# cluster/submit_demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
command="${1:?usage: submit_rl.sh train|tune CONFIG [OUT] [OPTION...]}"
config="${2:?usage: submit_rl.sh train|tune CONFIG [OUT] [OPTION...]}"
out="${3:-/tmp/mars-ray/rl/$(basename "$config" .yaml)}"
shift $(( $# < 3 ? $# : 3 ))
case "$command" in
    train | tune) ;;
    *) echo "submit_rl.sh: the command is train or tune, got '$command'" >&2; exit 2 ;;
esac
source cluster/job_env.sh

exec ray job submit \
    --address "$RAY_ADDRESS" \
    --working-dir . \
    --runtime-env "$runtime_env" \
    -- python -m mars_ray.cli rl "$command" "$config" --out "$out" "$@"
