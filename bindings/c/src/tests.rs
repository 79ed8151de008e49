//! Misuse of the C ABI that needs no model: NULL and dead handles, double frees, bad parameters, load
//! failures. The real-model behaviour is checked by the C program in `tests/deepedge_test.c`.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

use super::*;

/// Takes an error string from the library, checks it was set, and frees it.
fn take_error(e: *mut c_char) -> String {
    assert!(!e.is_null(), "expected an error message");
    let s = unsafe { CStr::from_ptr(e) }.to_str().unwrap().to_string();
    deepedge_string_free(e);
    s
}

#[test]
fn version_constants_agree_with_the_crate() {
    let v = unsafe { CStr::from_ptr(deepedge_version()) }
        .to_str()
        .unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    // The header's DEEPEDGE_VERSION macro is written by cbindgen.toml (cbindgen has no string constants).
    let define = format!("#define DEEPEDGE_VERSION \"{v}\"");
    assert!(
        include_str!("../include/deepedge.h").contains(&define),
        "include/deepedge.h must say {define} (set it in cbindgen.toml)"
    );
    let numbers = [
        DEEPEDGE_VERSION_MAJOR,
        DEEPEDGE_VERSION_MINOR,
        DEEPEDGE_VERSION_PATCH,
    ]
    .map(|n| n.to_string())
    .join(".");
    assert_eq!(numbers, v);
    assert_eq!(deepedge_abi_version(), DEEPEDGE_ABI_VERSION);
}

#[test]
fn load_failures_return_null_with_a_message() {
    let mut err = null_mut();
    let missing = CString::new("/nonexistent/model.gguf").unwrap();
    let m = unsafe { deepedge_model_load(missing.as_ptr(), &mut err) };
    assert!(m.is_null());
    let msg = take_error(err);
    assert!(msg.contains("/nonexistent/model.gguf"), "{msg}");

    let dir = std::env::temp_dir().join(format!("deepedge-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a GGUF file at all, just text").unwrap();
    let path = CString::new(garbage.to_str().unwrap()).unwrap();
    let m = unsafe { deepedge_model_load(path.as_ptr(), &mut err) };
    assert!(m.is_null());
    assert!(take_error(err).contains("garbage.gguf"));
    std::fs::remove_dir_all(&dir).unwrap();

    let m = unsafe { deepedge_model_load(null(), &mut err) };
    assert!(m.is_null());
    assert!(take_error(err).contains("path is NULL"));
    // error_out may be NULL.
    assert!(unsafe { deepedge_model_load(null(), null_mut()) }.is_null());
}

#[test]
fn null_and_dead_handles_are_errors_not_crashes() {
    let mut err = null_mut();
    let prompt = CString::new("hi").unwrap();
    let text = unsafe { deepedge_generate(null_mut(), prompt.as_ptr(), 4, 0.0, 0, &mut err) };
    assert!(text.is_null());
    assert!(take_error(err).contains("NULL"));

    // A number that was never handed out, and a handle of another kind.
    let fake = 0xdead_0000usize as *mut DeepedgeModel;
    let rc = unsafe {
        deepedge_generate_stream(fake, prompt.as_ptr(), 4, 0.0, 0, None, null_mut(), &mut err)
    };
    assert_eq!(rc, DEEPEDGE_ERROR_INVALID_ARGUMENT);
    assert!(take_error(err).contains("not a live DeepedgeModel"));
    let cancel = deepedge_cancel_new();
    let rc = unsafe {
        deepedge_generate_stream(
            cancel.cast(),
            prompt.as_ptr(),
            4,
            0.0,
            0,
            None,
            null_mut(),
            &mut err,
        )
    };
    assert_eq!(rc, DEEPEDGE_ERROR_INVALID_ARGUMENT);
    take_error(err);

    // Cancel handles: raise, reset, free twice, use after free.
    assert!(!deepedge_cancel_is_requested(cancel));
    deepedge_cancel_request(cancel);
    assert!(deepedge_cancel_is_requested(cancel));
    deepedge_cancel_reset(cancel);
    assert!(!deepedge_cancel_is_requested(cancel));
    deepedge_cancel_free(cancel);
    deepedge_cancel_free(cancel);
    deepedge_cancel_request(cancel);
    assert!(!deepedge_cancel_is_requested(cancel));

    // Every free function takes NULL and dead values.
    deepedge_model_free(null_mut());
    deepedge_model_free(fake);
    deepedge_session_free(null_mut());
    deepedge_session_reset(null_mut());
    deepedge_string_free(null_mut());
    deepedge_tokens_free(null_mut());
    deepedge_string_free(deepedge_version() as *mut c_char);
    assert_eq!(deepedge_model_n_ctx(null()), 0);
    assert_eq!(deepedge_model_n_vocab(fake), 0);
    assert_eq!(deepedge_session_n_tokens(null()), 0);
    let s = unsafe { deepedge_session_new(fake, null(), &mut err) };
    assert!(s.is_null());
    take_error(err);
}

#[test]
fn strings_freed_twice_are_ignored() {
    let s = hand_out_string("hello");
    assert_eq!(unsafe { CStr::from_ptr(s) }.to_str().unwrap(), "hello");
    deepedge_string_free(s);
    deepedge_string_free(s);
    // A token array is not a string, and the other way round.
    let t = hand_out_tokens(vec![1, 2, 3]);
    deepedge_string_free(t.cast());
    assert_eq!(unsafe { *t.add(2) }, 3, "still alive");
    deepedge_tokens_free(t);
    deepedge_tokens_free(t);
    // NUL characters cannot cross into C; they become U+FFFD.
    let s = hand_out_string("a\0b");
    assert_eq!(unsafe { CStr::from_ptr(s) }.to_str().unwrap(), "a\u{FFFD}b");
    deepedge_string_free(s);
}

#[test]
fn bad_generation_parameters_are_rejected_before_anything_runs() {
    let mut p = deepedge_generate_params_default();
    assert_eq!(p.max_tokens, 128);
    assert_eq!(p.temperature, 0.8);
    assert_eq!(p.top_k, 40);
    assert!(generate_params(&p).is_ok());
    p.n_stop = DEEPEDGE_MAX_STOP_STRINGS + 1;
    assert!(generate_params(&p)
        .err()
        .unwrap()
        .message
        .contains("DEEPEDGE_MAX_STOP_STRINGS"));
    p.n_stop = 1;
    assert!(generate_params(&p)
        .err()
        .unwrap()
        .message
        .contains("stop is NULL"));
    let bad_utf8 = [0xffu8, 0xfe, 0];
    let stops = [bad_utf8.as_ptr().cast::<c_char>()];
    p.stop = stops.as_ptr();
    assert!(generate_params(&p)
        .err()
        .unwrap()
        .message
        .contains("stop[0]"));
    let mut p = deepedge_generate_params_default();
    p.top_p = 0.0;
    assert_eq!(
        generate_params(&p).err().unwrap().code,
        DEEPEDGE_ERROR_INVALID_ARGUMENT
    );
    let mut p = deepedge_generate_params_default();
    p.cancel = 0x1234usize as *const DeepedgeCancel;
    assert!(generate_params(&p)
        .err()
        .unwrap()
        .message
        .contains("DeepedgeCancel"));
}

#[test]
fn a_panic_becomes_an_internal_error() {
    let mut err = null_mut();
    let rc = guard(
        &mut err,
        |code| code,
        || -> FfiResult<i32> { panic!("boom") },
    );
    assert_eq!(rc, DEEPEDGE_ERROR_INTERNAL);
    assert!(take_error(err).contains("boom"));
}
