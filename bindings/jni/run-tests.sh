#!/usr/bin/env bash
# Builds libdeepedge_jni, compiles java/ (DeepedgeNative) and tests/DeepedgeNativeTest.java with javac
# and runs the test on the JVM on Gemma-3-270M, comparing with the `deepedge run` binary. Without the
# model it prints SKIP, or fails under DEEPEDGE_REQUIRE_MODELS=1. scripts/test.sh calls it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
log() { echo "bindings/jni: $* (${SECONDS}s)" >&2; }
gemma="${DEEPEDGE_CACHE:-$HOME/.cache/deepedge}/models/gemma-3-270m-q4_k_m.gguf"

cargo build --profile test --locked -p deepedge-jni -p deepedge-cli
out=target/debug/jni-tests
rm -rf "$out" && mkdir -p "$out"
javac -Xlint:all -Werror --release 11 -d "$out" \
    bindings/jni/java/dev/deepedge/jni/*.java bindings/jni/tests/DeepedgeNativeTest.java
log "Java compiles"
if [[ ! -f "$gemma" ]]; then
    if [[ "${DEEPEDGE_REQUIRE_MODELS:-}" == "1" ]]; then log "$gemma missing with DEEPEDGE_REQUIRE_MODELS=1"; exit 1; fi
    log "SKIP: $gemma not cached; run scripts/fetch-models.sh"; exit 0
fi
java -Xcheck:jni -Djava.library.path="$PWD/target/debug" -cp "$out" DeepedgeNativeTest \
    "$gemma" "$PWD/target/debug/deepedge" 16
log "Java on the JVM: passed"
