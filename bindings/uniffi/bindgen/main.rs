//! `uniffi-bindgen`: uniffi's own command line, built at the workspace's uniffi version so the generated
//! Kotlin and Swift always match the scaffolding compiled into `libdeepedge_uniffi`. Used by
//! `bindings/uniffi/generate.sh` in library mode (`generate --library`); it adds nothing of its own.

fn main() {
    uniffi::uniffi_bindgen_main()
}
