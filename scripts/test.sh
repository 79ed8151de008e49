#!/usr/bin/env bash
# The whole test suite: fetches (once) and verifies the real models the tests compare against llama.cpp's
# committed reference fixtures, runs every test of the workspace, then the bindings' tests in their own
# languages (C natively and under valgrind, Kotlin and Java on the JVM) and the HTTP service with the openai client.
# README.md and .ci/run call this.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tools beyond Rust and Python 3 (gcc, valgrind, a JDK, JNA, kotlinc, cbindgen), installed if missing.
scripts/setup-test-tools.sh
scripts/fetch-models.sh all
# Real-model tests must run, not skip, here.
export DEEPEDGE_REQUIRE_MODELS=1
cargo test --workspace --locked "$@"
# The bindings, driven from their own languages against the built libraries.
bindings/c/run-tests.sh
bindings/uniffi/run-tests.sh
bindings/jni/run-tests.sh
# The HTTP service, from outside: the official openai client and a short load test on the real model.
scripts/serve-check.sh
