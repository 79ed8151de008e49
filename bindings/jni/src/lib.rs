//! A thin JNI layer over deepedge: the native methods of `dev.deepedge.jni.DeepedgeNative`
//! (`java/dev/deepedge/jni/DeepedgeNative.java`) for apps that want plain JNI rather than the uniffi
//! Kotlin bindings — load, generate with a streaming callback, cancel, free.
//!
//! It follows the jni crate's 0.22 pattern for native methods (`EnvUnowned::with_env`, which catches
//! panics, then an error policy): deepedge errors become `dev.deepedge.jni.DeepedgeException`, JNI
//! failures and panics a `RuntimeException`, and nothing unwinds into the JVM. Model handles are numbers
//! in a [`deepedge::HandleTable`], so a stale or made-up handle throws instead of crashing. Completion is
//! [`deepedge::LoadedModel::complete`], the same call `deepedge run` makes; this crate only converts
//! between Java and Rust values.

use std::sync::atomic::{AtomicBool, Ordering};

use deepedge::sample::SamplerParams;
use deepedge::{GenerateParams, HandleTable, LoadedModel, Prompt, SessionOptions};
use jni::errors::ThrowRuntimeExAndDefault;
use jni::objects::{JClass, JObject, JString, JValue};
use jni::strings::JNIString;
use jni::sys::{jfloat, jint, jlong, jstring};
use jni::{jni_sig, jni_str, Env, EnvUnowned};

/// A model handle's object: the model and the cancel flag of its running generation.
struct NativeModel {
    model: LoadedModel,
    cancel: AtomicBool,
}

static MODELS: HandleTable<NativeModel> = HandleTable::new("DeepedgeNative model handle");

/// Throws `dev.deepedge.jni.DeepedgeException` with `message`.
fn throw(env: &mut Env, message: impl std::fmt::Display) -> jni::errors::Result<()> {
    env.throw_new(
        jni_str!("dev/deepedge/jni/DeepedgeException"),
        JNIString::from(message.to_string()),
    )
}

/// A Java string argument, or `None` (with DeepedgeException thrown) when it is null.
fn string_arg(env: &mut Env, s: &JString, what: &str) -> jni::errors::Result<Option<String>> {
    if s.is_null() {
        throw(env, format!("{what} is null"))?;
        return Ok(None);
    }
    s.try_to_string(env).map(Some)
}

fn non_negative(env: &mut Env, value: jint, what: &str) -> jni::errors::Result<Option<usize>> {
    match usize::try_from(value) {
        Ok(v) => Ok(Some(v)),
        Err(_) => {
            throw(env, format!("{what} must not be negative (got {value})"))?;
            Ok(None)
        }
    }
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_deepedge_jni_DeepedgeNative_load<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    path: JString<'local>,
    context_size: jint,
    threads: jint,
) -> jlong {
    unowned_env
        .with_env(|env| -> jni::errors::Result<jlong> {
            let Some(path) = string_arg(env, &path, "path")? else {
                return Ok(0);
            };
            let (Some(n_ctx), Some(threads)) = (
                non_negative(env, context_size, "contextSize")?,
                non_negative(env, threads, "threads")?,
            ) else {
                return Ok(0);
            };
            let options = SessionOptions {
                n_ctx: (n_ctx > 0).then_some(n_ctx),
                threads: (threads > 0).then_some(threads),
                ..SessionOptions::default()
            };
            match LoadedModel::load(&path, options) {
                Ok(model) => Ok(MODELS.insert(NativeModel {
                    model,
                    cancel: AtomicBool::new(false),
                }) as jlong),
                Err(e) => {
                    throw(env, e)?;
                    Ok(0)
                }
            }
        })
        .resolve::<ThrowRuntimeExAndDefault>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_deepedge_jni_DeepedgeNative_generate<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    prompt: JString<'local>,
    max_tokens: jint,
    temperature: jfloat,
    seed: jlong,
    callback: JObject<'local>,
) -> jstring {
    unowned_env
        .with_env(|env| -> jni::errors::Result<jstring> {
            let native = match MODELS.get(handle as u64) {
                Ok(native) => native,
                Err(e) => {
                    throw(env, e)?;
                    return Ok(std::ptr::null_mut());
                }
            };
            let Some(prompt) = string_arg(env, &prompt, "prompt")? else {
                return Ok(std::ptr::null_mut());
            };
            let Some(max_tokens) = non_negative(env, max_tokens, "maxTokens")? else {
                return Ok(std::ptr::null_mut());
            };
            let params = GenerateParams {
                max_tokens,
                sampler: SamplerParams {
                    temperature,
                    // Java has no unsigned long: the seed's bits are taken as they are.
                    seed: seed as u64,
                    ..SamplerParams::LLAMA_CPP_DEFAULTS
                },
                ..GenerateParams::default()
            };
            native.cancel.store(false, Ordering::SeqCst);
            // The first JNI failure inside the callback (usually a Java exception it threw) stops
            // generation and is reported once generation has returned.
            let mut callback_error = None;
            let result = native.model.complete(
                Prompt::Text(&prompt),
                &params,
                Some(&native.cancel),
                |piece| {
                    if callback.is_null() {
                        return true;
                    }
                    // One local frame per piece, so long generations do not exhaust local references.
                    let keep_going = env.with_local_frame(4, |env| -> jni::errors::Result<bool> {
                        let piece = JString::from_str(env, piece)?;
                        env.call_method(
                            &callback,
                            jni_str!("onToken"),
                            jni_sig!("(Ljava/lang/String;)Z"),
                            &[JValue::Object(&piece)],
                        )?
                        .z()
                    });
                    keep_going.unwrap_or_else(|e| {
                        callback_error = Some(e);
                        false
                    })
                },
            );
            if let Some(e) = callback_error {
                return Err(e);
            }
            match result {
                Ok(generation) => Ok(JString::from_str(env, &generation.text)?.into_raw()),
                Err(e) => {
                    throw(env, e)?;
                    Ok(std::ptr::null_mut())
                }
            }
        })
        .resolve::<ThrowRuntimeExAndDefault>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_deepedge_jni_DeepedgeNative_cancel<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned_env
        .with_env(|_env| -> jni::errors::Result<()> {
            if let Ok(native) = MODELS.get(handle as u64) {
                native.cancel.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
        .resolve::<ThrowRuntimeExAndDefault>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_deepedge_jni_DeepedgeNative_free<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned_env
        .with_env(|_env| -> jni::errors::Result<()> {
            drop(MODELS.remove(handle as u64));
            Ok(())
        })
        .resolve::<ThrowRuntimeExAndDefault>()
}
