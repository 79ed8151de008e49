//! `deepedge serve`: an OpenAI-compatible HTTP service over the library's continuous-batching engine
//! ([`deepedge::scheduler::Engine`]), on axum and tokio.
//!
//! The listener is bound first and the model loads in the background: `/health` answers 503 until it is
//! ready, then 200, so an orchestrator can wait for readiness. SIGTERM or SIGINT stops accepting
//! connections, lets the requests in flight finish within `--shutdown-timeout`, and exits 0.
//! `docs/serve.md` describes the endpoints, flags, metrics and deployment.

mod api;
mod error;
mod metrics;
mod routes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use clap::Args;
use deepedge::scheduler::{Engine, EngineOptions};
use deepedge::session::DEFAULT_MAX_CTX;
use deepedge::Model;

use self::error::ApiError;
use self::metrics::Metrics;
use crate::common::ModelArgs;

/// Largest request body accepted (a long prompt as token ids is about 8 bytes per token).
pub const MAX_BODY_BYTES: usize = 16 << 20;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on (loopback by default; 0.0.0.0 to serve the network).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Sequences decoded together in one batch.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for a free sequence; more get 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on /v1/* and the tokenizer endpoints.
    #[arg(long, env = "DEEPEDGE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Memory for the KV of finished requests kept for prefix reuse, MiB (0 turns it off).
    #[arg(long, default_value_t = 512)]
    pub prefix_cache_mb: usize,
    /// Most tokens one batched step runs (decoding sequences take one each, prompt chunks the rest).
    #[arg(long, default_value_t = 256)]
    pub step_tokens: usize,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Model id reported by /v1/models and accepted in requests (default: the file name without .gguf).
    #[arg(long)]
    pub alias: Option<String>,
}

/// What the handlers share.
pub struct AppState {
    pub model_id: String,
    /// When the service started (Unix seconds), the models' `created`.
    pub created: u64,
    pub api_key: Option<String>,
    engine: OnceLock<Arc<Engine>>,
    pub metrics: Metrics,
    pub next_id: AtomicU64,
}

impl AppState {
    /// The engine, or 503 while the model loads.
    pub fn engine(&self) -> Result<Arc<Engine>, ApiError> {
        self.engine.get().cloned().ok_or_else(ApiError::loading)
    }

    /// A request's `model` must be this service's (or absent).
    pub fn check_model(&self, asked: Option<&str>) -> Result<(), ApiError> {
        match asked {
            None => Ok(()),
            Some(m) if m == self.model_id || m == format!("{}.gguf", self.model_id) => Ok(()),
            Some(m) => Err(ApiError::unknown_model(m, &self.model_id)),
        }
    }
}

fn model_id(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "model".into())
}

fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/v1/models", get(routes::models))
        .route("/v1/models/{id}", get(routes::model))
        .route("/tokenize", post(routes::tokenize))
        .route("/detokenize", post(routes::detokenize))
        .route("/apply-template", post(routes::apply_template))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            routes::require_key,
        ));
    Router::new()
        .merge(protected)
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            routes::observe,
        ))
        .with_state(state)
}

pub fn serve(args: ServeArgs) -> Result<()> {
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if args.step_tokens == 0 {
        bail!("--step-tokens must be at least 1");
    }
    if args.model.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if args.model.ctx == Some(0) {
        bail!("--ctx must be at least 1");
    }
    if args.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        bail!("--api-key / DEEPEDGE_API_KEY is empty");
    }
    if !args.model.model.is_file() {
        bail!("cannot load {}: no such file", args.model.model.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("deepedge-http")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run(args));
    // Do not wait on a model load or requests that outlived the shutdown deadline.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run(args: ServeArgs) -> Result<()> {
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    let state = Arc::new(AppState {
        model_id: args
            .alias
            .clone()
            .unwrap_or_else(|| model_id(&args.model.model)),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        api_key: args.api_key.clone(),
        engine: OnceLock::new(),
        metrics: Metrics::default(),
        next_id: AtomicU64::new(0),
    });
    // The address line is the one thing on stdout, for scripts and tests started with --port 0.
    println!("listening on http://{local}");
    tracing::info!(%local, model = %args.model.model.display(), "serving; loading the model");

    let loader = {
        let state = Arc::clone(&state);
        let model_args = args.model.clone();
        let options = EngineOptions {
            parallel: args.parallel,
            queue: args.queue,
            threads: args.model.threads,
            kv_type: args.model.kv_type,
            step_tokens: args.step_tokens,
            prefix_cache_bytes: args.prefix_cache_mb << 20,
            ..EngineOptions::default()
        };
        tokio::task::spawn_blocking(move || -> Result<()> {
            let start = std::time::Instant::now();
            let model = Model::load(&model_args.model)
                .with_context(|| format!("cannot load {}", model_args.model.display()))?;
            let n_ctx = model_args
                .ctx
                .unwrap_or_else(|| model.hparams.ctx_train.min(DEFAULT_MAX_CTX));
            let engine = Engine::start(Arc::new(model), EngineOptions { n_ctx, ..options })?;
            let _ = state.engine.set(Arc::new(engine));
            tracing::info!(
                load_s = start.elapsed().as_secs_f64(),
                n_ctx,
                "model loaded; ready"
            );
            eprintln!(
                "ready: model loaded, {} sequences of {n_ctx} tokens",
                options.parallel
            );
            Ok(())
        })
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server =
        axum::serve(listener, router(Arc::clone(&state))).with_graceful_shutdown(async move {
            let mut stop_rx = stop_rx;
            let _ = stop_rx.wait_for(|s| *s).await;
        });
    let mut server = tokio::spawn(async move { server.await });

    tokio::select! {
        loaded = loader => {
            // A model that cannot load ends the service: there is nothing it could serve.
            loaded.context("the loader task failed")??;
        }
        served = &mut server => {
            served.context("the server task failed")??;
            bail!("the server stopped unexpectedly");
        }
        _ = shutdown_signal() => {
            eprintln!("shutting down (before the model was loaded)");
            return Ok(());
        }
    }

    tokio::select! {
        served = &mut server => {
            served.context("the server task failed")??;
            bail!("the server stopped unexpectedly");
        }
        _ = shutdown_signal() => {}
    }
    let deadline = Duration::from_secs(args.shutdown_timeout);
    eprintln!(
        "shutting down: no new connections, waiting up to {}s for requests in flight",
        deadline.as_secs()
    );
    if let Some(engine) = state.engine.get() {
        engine.shutdown();
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(deadline, &mut server).await {
        Ok(served) => {
            served.context("the server task failed")??;
            eprintln!("stopped");
        }
        Err(_) => eprintln!("stopped: the shutdown deadline passed with requests still running"),
    }
    Ok(())
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
