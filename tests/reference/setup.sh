#!/usr/bin/env bash
# Install the pinned llama.cpp reference (node-llama-cpp, prebuilt CPU binaries from npm) if missing.
# Idempotent: does nothing when node_modules/node-llama-cpp is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ ! -d node_modules/node-llama-cpp ]; then
    # --ignore-scripts: node-llama-cpp's postinstall would only probe/build binaries; the scripts
    # here use the prebuilt ones (getLlama({build: "never"})), so nothing is built or downloaded.
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi
