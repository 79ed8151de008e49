#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust and Python 3, and only what is missing, so that
# scripts/test.sh (the README's test command) and .ci/run work on a fresh Debian/Ubuntu machine:
#   - gcc, g++ and valgrind for the C ABI's test program (bindings/c/run-tests.sh),
#   - a JDK, JNA (Debian libjna-java) and npm for the Kotlin and Java tests (the pinned kotlinc comes from
#     npm through bindings/jvm-toolchain/setup.sh),
#   - npm for the llama.cpp reference scripts in tests/reference (fixtures and benchmarks, not the tests),
#   - cbindgen 0.29 for the C header's staleness check (.ci/run),
#   - systemd-analyze and python3-venv, and two Python venvs from pinned requirements: .venv-serve
#     (scripts/serve-requirements.txt: the openai client etc. for the serve scripts and their self-test) and
#     .venv-deploy (deploy/lint-requirements.txt: hadolint, kubernetes-validate for deploy/check.sh).
# apt-get runs as root, or through sudo when that is available; otherwise the missing packages are named
# and the script fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v gcc >/dev/null || missing+=(gcc)
command -v g++ >/dev/null || missing+=(g++)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
[ -f /usr/share/java/jna.jar ] || missing+=(libjna-java)
command -v npm >/dev/null || missing+=(npm)
command -v systemd-analyze >/dev/null || missing+=(systemd)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    echo "setup-test-tools: installing ${missing[*]}" >&2
    if [ "$(id -u)" = 0 ]; then
        apt_get=(apt-get)
    elif command -v sudo >/dev/null; then
        apt_get=(sudo apt-get)
    else
        echo "setup-test-tools: not root and no sudo; install these Debian packages first: ${missing[*]}" >&2
        exit 1
    fi
    "${apt_get[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq "${missing[@]}"
fi

if ! command -v cbindgen >/dev/null || ! cbindgen --version | grep -q '^cbindgen 0\.29\.'; then
    cargo install cbindgen --version '~0.29' --locked
fi

bindings/jvm-toolchain/setup.sh >/dev/null

# Python venvs for the HTTP service's scripts and the deployment linters (docs/serve.md). Each is
# (re)installed only when its requirements file changed since the last install (a stamp inside the venv).
python_venv() {
    local venv=$1 requirements=$2
    if ! cmp -s "$requirements" "$venv/.installed-requirements" 2>/dev/null; then
        echo "setup-test-tools: installing $requirements into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$venv/.installed-requirements"
    fi
}
python_venv .venv-serve scripts/serve-requirements.txt
python_venv .venv-deploy deploy/lint-requirements.txt
echo "setup-test-tools: gcc, valgrind, $(javac -version 2>&1), JNA, npm $(npm --version), $(cbindgen --version)" >&2
