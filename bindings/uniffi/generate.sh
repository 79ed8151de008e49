#!/usr/bin/env bash
# Regenerates the Kotlin (kotlin/) and Swift (swift/) sources from the built libdeepedge_uniffi with
# uniffi-bindgen in library mode, at the workspace's uniffi version (settings in uniffi.toml).
#   bindings/uniffi/generate.sh           build and write the sources
#   bindings/uniffi/generate.sh --check   fail when the committed sources are stale (CI)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --profile test --locked -p deepedge-uniffi -p deepedge-uniffi-bindgen
lib=target/debug/libdeepedge_uniffi.so
here=bindings/uniffi
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
for language in kotlin swift; do
    target/debug/uniffi-bindgen generate "$lib" --language "$language" --out-dir "$fresh/$language" \
        --metadata-no-deps >/dev/null
done
if [[ "${1:-}" == "--check" ]]; then
    if ! diff -ru "$here/kotlin" "$fresh/kotlin" || ! diff -ru "$here/swift" "$fresh/swift"; then
        echo "bindings/uniffi/{kotlin,swift} are stale: run bindings/uniffi/generate.sh and commit them" >&2
        exit 1
    fi
    echo "bindings/uniffi/kotlin and swift are up to date"
else
    rm -rf "$here/kotlin" "$here/swift"
    cp -r "$fresh/kotlin" "$fresh/swift" "$here/"
fi
