// swift-tools-version:5.9
// deepedge for Apple platforms: the uniffi-generated Swift API (`Deepedge`) over the static library in
// DeepedgeFFI.xcframework. Both are produced by ./build-xcframework.sh (see README.md); this manifest is
// what an app adds as a local package, or what a release publishes with a `.binaryTarget(url:checksum:)`.
import PackageDescription

let package = Package(
    name: "Deepedge",
    platforms: [.iOS(.v15), .macOS(.v13)],
    products: [
        .library(name: "Deepedge", targets: ["Deepedge"]),
    ],
    targets: [
        .binaryTarget(name: "DeepedgeFFI", path: "DeepedgeFFI.xcframework"),
        .target(
            name: "Deepedge",
            dependencies: ["DeepedgeFFI"],
            path: "Sources/Deepedge",
            linkerSettings: [.linkedFramework("Foundation")]
        ),
    ]
)
