//! Pieces shared by the commands: model loading with timing, backend options, id lists, logging.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use deepedge::kv::KvType;
use deepedge::{Model, Session, SessionOptions};

/// Which backend executes the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    Cpu,
}

/// Options every command that runs the model takes.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Path to a GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Backend that runs the model.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Worker threads (default: one per core).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(long = "ctx")]
    pub ctx: Option<usize>,
    /// KV cache element type.
    #[arg(long, default_value = "f16", value_parser = parse_kv_type)]
    pub kv_type: KvType,
}

fn parse_kv_type(s: &str) -> Result<KvType, String> {
    s.parse().map_err(|e: deepedge::Error| e.to_string())
}

/// A loaded model and a session over it, with the load time.
pub struct Loaded {
    pub session: Session,
    pub load_s: f64,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Loaded> {
        self.load_with_ctx(self.ctx)
    }

    pub fn load_with_ctx(&self, ctx: Option<usize>) -> Result<Loaded> {
        let BackendKind::Cpu = self.backend;
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        if ctx == Some(0) {
            bail!("--ctx must be at least 1");
        }
        let start = Instant::now();
        let model = Model::load(&self.model)
            .with_context(|| format!("cannot load {}", self.model.display()))?;
        let model = Arc::new(model);
        let session = Session::new_cpu(
            model,
            &SessionOptions {
                n_ctx: ctx,
                threads: self.threads,
                kv_type: self.kv_type,
            },
        )?;
        let load_s = start.elapsed().as_secs_f64();
        tracing::info!(
            load_s,
            backend = %session.backend().describe(),
            n_ctx = session.n_ctx(),
            "model loaded"
        );
        Ok(Loaded { session, load_s })
    }
}

/// A comma-separated list of token ids, `1,2,3`.
#[derive(Clone, Debug)]
pub struct IdList(pub Vec<u32>);

/// Parses `1,2,3` (spaces allowed).
pub fn parse_ids(s: &str) -> Result<IdList, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| format!("{t:?} is not a token id"))
        })
        .collect::<Result<_, _>>()
        .map(IdList)
}

pub fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
}

/// Peak resident memory of this process in MiB (VmHWM), where the OS reports it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Page faults of this process so far (`minor`: served from memory, e.g. the page cache; `major`: read from
/// disk), where the OS reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageFaults {
    pub minor: u64,
    pub major: u64,
}

impl PageFaults {
    /// Reads fields 10 (`minflt`) and 12 (`majflt`) of `/proc/self/stat`.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is parenthesized and may hold spaces: count fields after it.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Self {
            minor: fields.get(7)?.parse().ok()?,
            major: fields.get(9)?.parse().ok()?,
        })
    }

    /// Faults since `earlier`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            minor: self.minor.saturating_sub(earlier.minor),
            major: self.major.saturating_sub(earlier.major),
        }
    }
}
