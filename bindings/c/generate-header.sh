#!/usr/bin/env bash
# Regenerates include/deepedge.h from src/lib.rs with cbindgen 0.29 (`cargo install cbindgen --locked`).
#   bindings/c/generate-header.sh           write the header
#   bindings/c/generate-header.sh --check   fail when the committed header is stale (CI)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v cbindgen >/dev/null || ! cbindgen --version | grep -q '^cbindgen 0\.29\.'; then
    echo "generate-header.sh: cbindgen 0.29 is required (cargo install cbindgen --version '~0.29' --locked)" >&2
    exit 1
fi
out="include/deepedge.h"
if [[ "${1:-}" == "--check" ]]; then
    fresh="$(mktemp)"
    trap 'rm -f "$fresh"' EXIT
    cbindgen --quiet --config cbindgen.toml --crate deepedge-c --output "$fresh" .
    if ! diff -u "$out" "$fresh"; then
        echo "bindings/c/$out is stale: run bindings/c/generate-header.sh and commit it" >&2
        exit 1
    fi
    echo "bindings/c/$out is up to date"
else
    cbindgen --quiet --config cbindgen.toml --crate deepedge-c --output "$out" .
fi
