#!/usr/bin/env bash
# Builds DeepedgeFFI.xcframework (the static libdeepedge_uniffi for iOS devices, the iOS simulators and
# macOS, with the uniffi C header and module map) and copies the generated Swift API into
# Sources/Deepedge/, so that this directory is a complete Swift package (Package.swift). Runs on a Mac
# with Xcode 15+ and
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin
# Output (not committed): DeepedgeFFI.xcframework/, Sources/Deepedge/Deepedge.swift.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
root=..
lib=libdeepedge_uniffi.a
export IPHONEOS_DEPLOYMENT_TARGET=15.0 MACOSX_DEPLOYMENT_TARGET=13.0   # as in Package.swift

targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)
for t in "${targets[@]}"; do
    (cd "$root" && cargo build --release --locked -p deepedge-uniffi --lib --target "$t")
done
built() { echo "$root/target/$1/release/$lib"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# One library per platform: the simulator and macOS slices are fat (arm64 + x86_64).
mkdir -p "$work/ios" "$work/ios-sim" "$work/macos"
cp "$(built aarch64-apple-ios)" "$work/ios/$lib"
lipo -create "$(built aarch64-apple-ios-sim)" "$(built x86_64-apple-ios)" -output "$work/ios-sim/$lib"
lipo -create "$(built aarch64-apple-darwin)" "$(built x86_64-apple-darwin)" -output "$work/macos/$lib"

# Headers in a DeepedgeFFI/ subfolder, so the module map does not collide with other xcframeworks'
# module.modulemap files in the app's build products.
headers="$work/Headers/DeepedgeFFI"
mkdir -p "$headers"
cp "$root/bindings/uniffi/swift/DeepedgeFFI.h" "$headers/"
cp "$root/bindings/uniffi/swift/DeepedgeFFI.modulemap" "$headers/module.modulemap"

rm -rf DeepedgeFFI.xcframework
xcodebuild -create-xcframework \
    -library "$work/ios/$lib" -headers "$work/Headers" \
    -library "$work/ios-sim/$lib" -headers "$work/Headers" \
    -library "$work/macos/$lib" -headers "$work/Headers" \
    -output DeepedgeFFI.xcframework

mkdir -p Sources/Deepedge
cp "$root/bindings/uniffi/swift/Deepedge.swift" Sources/Deepedge/
echo "DeepedgeFFI.xcframework and Sources/Deepedge ready; add this folder as a Swift package."
