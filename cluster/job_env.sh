# What cluster/submit_demo.sh and cluster/submit_rl.sh share (they source this): the runtime
# environment (MARS_RAY_RUNTIME_ENV, default cluster/runtime_env.yaml) as $runtime_env, a check
# that RAY_ADDRESS is set, and Ray's token authentication for the client: like Ray, take the
# head's token from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token and turn on
# RAY_AUTH_MODE=token when one is there; say what to set if not.
runtime_env="${MARS_RAY_RUNTIME_ENV:-cluster/runtime_env.yaml}"
: "${RAY_ADDRESS:?set RAY_ADDRESS to the cluster dashboard, e.g. http://127.0.0.1:8265}"

if [[ -z "${RAY_AUTH_MODE:-}" ]]; then
    if [[ -n "${RAY_AUTH_TOKEN:-}" || -n "${RAY_AUTH_TOKEN_PATH:-}" || -f "$HOME/.ray/auth_token" ]]; then
        export RAY_AUTH_MODE=token
    else
        echo "$(basename "$0"): no Ray auth token here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or" \
            "~/.ray/auth_token): submitting without one. If the cluster has token authentication" \
            "(Ray's default), set RAY_AUTH_TOKEN to the head's token (\`ray get-auth-token\` on" \
            "the head prints it)." >&2
    fi
fi

