#!/usr/bin/env bash
# Builds the C ABI (cdylib + staticlib) and the deepedge CLI, compiles tests/deepedge_test.c with gcc
# against the committed header, and runs it on the real models: natively (Qwen2.5-0.5B and Gemma-3-270M,
# shared and static library), then once under valgrind on Gemma-3-270M with few tokens, failing on any
# invalid read/write or definite/indirect leak. Also syntax-checks the header as C and C++.
#   bindings/c/run-tests.sh            (scripts/test.sh calls it)
# Models come from scripts/fetch-models.sh; without them it prints SKIP, or fails under
# DEEPEDGE_REQUIRE_MODELS=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
models="${DEEPEDGE_CACHE:-$HOME/.cache/deepedge}/models"
qwen="$models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
gemma="$models/gemma-3-270m-q4_k_m.gguf"
log() { echo "bindings/c: $* (${SECONDS}s)" >&2; }

# The test profile (optimized, as `cargo test` builds it), so this reuses the workspace test build.
cargo build --profile test --locked -p deepedge-c -p deepedge-cli
lib=target/debug
out="$lib/c-tests"
mkdir -p "$out"

header=bindings/c/include/deepedge.h
gcc -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c "$header"
g++ -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c++ "$header"
flags=(-std=c11 -O1 -g -Wall -Wextra -Werror -I bindings/c/include bindings/c/tests/deepedge_test.c)
gcc "${flags[@]}" -L "$lib" -Wl,-rpath,"$PWD/$lib" -ldeepedge_c -lpthread -o "$out/deepedge_test"
gcc "${flags[@]}" "$lib/libdeepedge_c.a" -lpthread -ldl -lm -o "$out/deepedge_test_static"
log "header and test program compile (C99/C++11 header check, shared and static builds)"

if [[ ! -f "$qwen" || ! -f "$gemma" ]]; then
    if [[ "${DEEPEDGE_REQUIRE_MODELS:-}" == "1" ]]; then
        log "models missing under $models with DEEPEDGE_REQUIRE_MODELS=1"; exit 1
    fi
    log "SKIP: models not cached; run scripts/fetch-models.sh"; exit 0
fi
command -v valgrind >/dev/null || { log "valgrind is required (apt-get install valgrind)"; exit 1; }
cli="$PWD/$lib/deepedge"
log "Qwen2.5-Coder-0.5B, shared library, 24 tokens"
"$out/deepedge_test" "$qwen" "$cli" 24
log "Gemma-3-270M, static library, 24 tokens"
"$out/deepedge_test_static" "$gemma" "$cli" 24
log "Gemma-3-270M under valgrind, 3 tokens, --quick"
valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --fair-sched=yes \
    "$out/deepedge_test" "$gemma" "$cli" 3 --quick
log "valgrind: no invalid reads/writes, no leaks"
