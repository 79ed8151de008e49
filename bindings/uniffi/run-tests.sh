#!/usr/bin/env bash
# Compiles the committed, generated Kotlin bindings together with tests/DeepedgeTest.kt (kotlinc from
# bindings/jvm-toolchain) and runs them on the JVM against the host libdeepedge_uniffi through JNA, on
# Gemma-3-270M, comparing with the `deepedge run` binary. Fails when the committed Kotlin/Swift sources
# are stale, and syntax-checks the C header of the Swift bindings.
# Without the model it prints SKIP, or fails under DEEPEDGE_REQUIRE_MODELS=1. scripts/test.sh calls it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
log() { echo "bindings/uniffi: $* (${SECONDS}s)" >&2; }
gemma="${DEEPEDGE_CACHE:-$HOME/.cache/deepedge}/models/gemma-3-270m-q4_k_m.gguf"

bindings/uniffi/generate.sh --check
# The C header the Swift bindings import (DeepedgeFFI.h) must compile; gcc lacks clang's nullability
# qualifiers, which only annotate pointers, so they are defined away for this syntax check.
echo '#include "DeepedgeFFI.h"' | gcc -std=c11 -Wall -Wextra -Werror -D_Nonnull= -D_Nullable= \
    -I bindings/uniffi/swift -fsyntax-only -x c -
log "Swift bindings' C header compiles"
cargo build --profile test --locked -p deepedge-cli
kotlin_bin="$(bindings/jvm-toolchain/setup.sh)"
out=target/debug/uniffi-tests
mkdir -p "$out"
jna=/usr/share/java/jna.jar
"$kotlin_bin/kotlinc" -nowarn -cp "$jna" -include-runtime -d "$out/deepedge-test.jar" \
    bindings/uniffi/kotlin/dev/deepedge/deepedge_uniffi.kt bindings/uniffi/tests/DeepedgeTest.kt
log "Kotlin bindings and test compile"

if [[ ! -f "$gemma" ]]; then
    if [[ "${DEEPEDGE_REQUIRE_MODELS:-}" == "1" ]]; then log "$gemma missing with DEEPEDGE_REQUIRE_MODELS=1"; exit 1; fi
    log "SKIP: $gemma not cached; run scripts/fetch-models.sh"; exit 0
fi
java -Djna.library.path="$PWD/target/debug" -cp "$out/deepedge-test.jar:$jna" DeepedgeTestKt \
    "$gemma" "$PWD/target/debug/deepedge" 16
log "Kotlin on the JVM: passed"
