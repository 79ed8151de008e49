//! `deepedge run` and `deepedge chat`: generation with streaming output.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use deepedge::model::routing::LayerUtilization;
use deepedge::sample::SamplerParams;
use deepedge::{Conversation, GenerateParams, Generation, Prompt};
use serde_json::json;

use crate::common::{parse_ids, IdList, ModelArgs};

/// Sampling flags shared by `run` and `chat`. Defaults are llama.cpp's.
#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy.
    #[arg(long = "temp", default_value_t = SamplerParams::LLAMA_CPP_DEFAULTS.temperature)]
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = SamplerParams::LLAMA_CPP_DEFAULTS.top_k)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = SamplerParams::LLAMA_CPP_DEFAULTS.top_p)]
    pub top_p: f32,
    /// Minimum probability relative to the most likely token (0 = off).
    #[arg(long, default_value_t = SamplerParams::LLAMA_CPP_DEFAULTS.min_p)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = SamplerParams::LLAMA_CPP_DEFAULTS.repeat_penalty)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    #[arg(long, default_value_t = SamplerParams::LLAMA_CPP_DEFAULTS.repeat_last_n)]
    pub repeat_last_n: usize,
    /// RNG seed (default: random, logged).
    #[arg(short = 's', long)]
    pub seed: Option<u64>,
    /// Stop when this string is generated (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    fn params(&self) -> SamplerParams {
        let seed = self.seed.unwrap_or_else(|| {
            let s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            tracing::info!(seed = s, "random seed");
            s
        });
        SamplerParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text (tokenized as llama.cpp does: BOS iff the model adds one, no chat template).
    #[arg(
        short = 'p',
        long = "prompt",
        conflicts_with = "ids",
        required_unless_present = "ids"
    )]
    pub prompt: Option<String>,
    /// Prompt as token ids, fed as they are: `--ids 1,2,3`.
    #[arg(long, value_parser = parse_ids)]
    pub ids: Option<IdList>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// At the end, report how often each expert was chosen per MoE layer (to stderr, or as `moe_stats` in
    /// the JSON): counts, busiest expert over the mean, and normalized entropy (1 = perfectly even).
    #[arg(long)]
    pub moe_stats: bool,
}

pub fn run(args: RunArgs) -> Result<()> {
    let loaded = args.model.load()?;
    let mut session = loaded.session;
    if args.moe_stats && session.moe_stats().is_none() {
        bail!(
            "--moe-stats: {} is a dense model (it has no experts)",
            args.model.model.display()
        );
    }
    let prompt = match (&args.prompt, &args.ids) {
        (Some(text), _) => Prompt::Text(text),
        (None, Some(ids)) => Prompt::Ids(&ids.0),
        (None, None) => bail!("give a prompt with -p TEXT or --ids 1,2,3"),
    };
    let params = GenerateParams {
        max_tokens: args.n_predict,
        sampler: args.sampling.params(),
        stop: args.sampling.stop.clone(),
        ignore_eos: args.ignore_eos,
        render_special: false,
    };
    let cancel = install_interrupt_flag()?;
    let stdout = std::io::stdout();
    let generation = if args.json {
        session.complete(prompt, &params, Some(&cancel), |_| true)?
    } else {
        let mut out = stdout.lock();
        let g = session.complete(prompt, &params, Some(&cancel), |piece| {
            out.write_all(piece.as_bytes())
                .and_then(|_| out.flush())
                .is_ok()
        })?;
        writeln!(out)?;
        g
    };
    let utilization = session
        .moe_stats()
        .filter(|_| args.moe_stats)
        .map(|s| s.utilization());
    report(
        &generation,
        loaded.load_s,
        args.json,
        utilization.as_deref(),
    )
}

fn report(
    g: &Generation,
    load_s: f64,
    json: bool,
    utilization: Option<&[LayerUtilization]>,
) -> Result<()> {
    let t = &g.timings;
    if json {
        let mut value = json!({
            "prompt_ids": g.prompt_ids,
            "ids": g.ids,
            "text": g.text,
            "timings": {
                "load_s": load_s,
                "prefill_tps": t.prefill_tps(),
                "decode_tps": t.decode_tps(),
            },
        });
        if let Some(u) = utilization {
            value["moe_stats"] = serde_json::to_value(u)?;
        }
        println!("{value}");
    } else {
        if let Some(u) = utilization {
            eprint!("{}", utilization_table(u));
        }
        tracing::info!(
            load_s,
            prompt_tokens = t.prefill_tokens,
            prefill_tps = t.prefill_tps(),
            generated = g.ids.len(),
            decode_tps = t.decode_tps(),
            finish = ?g.finish,
            "done"
        );
    }
    Ok(())
}

/// Expert utilization as a table, one MoE layer a line.
fn utilization_table(layers: &[LayerUtilization]) -> String {
    let mut out =
        String::from("expert utilization (tokens run through the model × experts per token):\n");
    out.push_str("layer  assignments  max/mean  entropy  counts by expert\n");
    for l in layers {
        let counts: Vec<String> = l.counts.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            "{:>5}  {:>11}  {:>8.2}  {:>7.3}  {}\n",
            l.layer,
            l.assignments,
            l.max_over_mean,
            l.normalized_entropy,
            counts.join(" ")
        ));
    }
    out
}

/// A flag set by Ctrl-C (SIGINT) while generating: the answer stops, the program does not.
fn install_interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C before the first was handled: leave.
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(flag)
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Maximum tokens per answer.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn chat(args: ChatArgs) -> Result<()> {
    let loaded = args.model.load()?;
    let mut conversation = Conversation::new(loaded.session, args.system.as_deref());
    if conversation.uses_chatml_fallback() {
        tracing::warn!("the model has no chat template; using ChatML");
    }
    let params = GenerateParams {
        max_tokens: args.n_predict,
        sampler: args.sampling.params(),
        stop: args.sampling.stop.clone(),
        ignore_eos: false,
        render_special: false,
    };
    let cancel = install_interrupt_flag()?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    eprintln!("deepedge chat — Ctrl-C stops an answer, Ctrl-D or /exit quits, /reset forgets the conversation.");
    loop {
        write!(stdout, "\n> ")?;
        stdout.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            writeln!(stdout)?;
            return Ok(());
        }
        // A Ctrl-C pressed at the prompt only arms the exit (a second one leaves); answers start clean.
        cancel.store(false, Ordering::SeqCst);
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                conversation.reset();
                continue;
            }
            _ => {}
        }
        let answer = conversation.send(line, &params, Some(&cancel), |piece| {
            stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
                .is_ok()
        });
        match answer {
            Ok(_) => writeln!(stdout)?,
            // A turn that does not fit is reported and dropped; the conversation goes on.
            Err(e @ deepedge::Error::ContextOverflow { .. }) => eprintln!("error: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
}
