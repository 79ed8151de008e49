#!/usr/bin/env bash
# `deepedge serve` checked from outside with the official PyPI `openai` client and a short load test, on the
# real default model: scripts/serve_client_test.py (every endpoint, streaming, errors, the API key), then
# scripts/loadtest_serve.py's load phase (concurrent clients, disconnects, malformed requests, no 5xx, RSS
# back near idle, /metrics counts that agree), then SIGTERM must exit 0. Called by scripts/test.sh after
# cargo has built the binary; pass a binary path to use another build.
#
#   scripts/serve-check.sh [path/to/deepedge]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/debug/deepedge}
model=${DEEPEDGE_CACHE:-$HOME/.cache/deepedge}/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
[[ -x $bin ]] || { echo "serve-check: $bin is not built (cargo build -p deepedge-cli)" >&2; exit 1; }
[[ -f $model ]] || { echo "serve-check: $model is missing (scripts/fetch-models.sh qwen)" >&2; exit 1; }

# The pinned Python clients (scripts/serve-requirements.txt), installed by scripts/setup-test-tools.sh.
venv=.venv-serve
"$venv/bin/python" -c "import openai, httpx, prometheus_client" ||
    { echo "serve-check: $venv is missing or incomplete; run scripts/setup-test-tools.sh" >&2; exit 1; }

key=serve-check-key
log=$(mktemp)
"$bin" serve -m "$model" --port 0 -t 2 --parallel 4 --queue 64 --api-key "$key" >"$log.out" 2>"$log" &
pid=$!
cleanup() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then echo "--- server log (last lines)" >&2; tail -n 40 "$log" >&2 || true; fi
    kill "$pid" 2>/dev/null || true
    rm -f "$log" "$log.out"
}
trap cleanup EXIT

healthy() { "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=5)' "$1" 2>/dev/null; }
url=
for _ in $(seq 600); do
    url=$(sed -n 's/^listening on //p' "$log.out")
    [[ -n $url ]] && healthy "$url" && break
    kill -0 "$pid" 2>/dev/null || { echo "serve-check: the server exited" >&2; exit 1; }
    sleep 0.1
done
healthy "$url" || { echo "serve-check: the server never became healthy" >&2; exit 1; }

echo "serve-check: openai client against $url"
"$venv/bin/python" scripts/serve_client_test.py "$url" --api-key "$key"

echo "serve-check: load test"
"$venv/bin/python" scripts/loadtest_serve.py "$url" --server-pid "$pid" --api-key "$key" \
    --phases load --requests 120 --clients 32 --load-max-tokens 16 --rss-allow-cache

echo "serve-check: SIGTERM"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
trap - EXIT
rm -f "$log" "$log.out"
if [[ $status -ne 0 ]]; then
    echo "serve-check: the server exited $status after SIGTERM (want 0)" >&2
    exit 1
fi
echo "serve-check: ok"
