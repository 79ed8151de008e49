#!/usr/bin/env bash
# Installs the pinned Kotlin compiler (npm kotlin-compiler, which ships kotlinc and the Kotlin stdlib) for
# the JVM tests of the bindings, and checks that a JDK and JNA (Debian libjna-java) are there.
# Idempotent; prints the directory of kotlinc. CI installs the Debian packages first (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ ! -x node_modules/kotlin-compiler/bin/kotlinc ]; then
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
fi
for tool in java javac; do
    command -v "$tool" >/dev/null || { echo "setup.sh: $tool missing (apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
done
[ -f /usr/share/java/jna.jar ] || { echo "setup.sh: /usr/share/java/jna.jar missing (apt-get install libjna-java)" >&2; exit 1; }
echo "$PWD/node_modules/kotlin-compiler/bin"
