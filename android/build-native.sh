#!/usr/bin/env bash
# Builds the native libraries of the AAR with cargo-ndk: libdeepedge_uniffi.so (for the uniffi Kotlin
# bindings) and libdeepedge_jni.so (for DeepedgeNative), release profile, for arm64-v8a and x86_64,
# into src/main/jniLibs/<abi>/. Needs the Android NDK (ANDROID_NDK_HOME, r26 or newer) and
#   cargo install cargo-ndk && rustup target add aarch64-linux-android x86_64-linux-android
# Then: gradle assembleRelease  ->  build/outputs/aar/deepedge-android-release.aar
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK (r26 or newer)}"
platform="${ANDROID_PLATFORM:-24}"   # the AAR's minSdk
rm -rf src/main/jniLibs
(cd .. && cargo ndk --platform "$platform" -t arm64-v8a -t x86_64 -o android/src/main/jniLibs \
    build --release --locked -p deepedge-uniffi -p deepedge-jni --lib)
# Only the two libraries the AAR loads (cargo-ndk also copies what else the build produced).
find src/main/jniLibs -type f ! -name 'libdeepedge_uniffi.so' ! -name 'libdeepedge_jni.so' -delete
find src/main/jniLibs -type f -name '*.so' -print
