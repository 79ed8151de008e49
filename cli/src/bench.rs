//! `deepedge bench`: prompt-processing and decode speed, load time and peak memory, the way llama-bench
//! measures them (pp: one batch of `p` prompt tokens from an empty cache; tg: `n` single-token decode steps
//! from an empty cache), median of `r` repetitions.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use deepedge::backend::LogitsRequest;
use serde_json::json;

use crate::common::{peak_rss_mib, ModelArgs, PageFaults};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens per pp run (0 skips pp).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 128)]
    pub n_prompt: usize,
    /// Generated tokens per tg run (0 skips tg).
    #[arg(short = 'n', long = "n-gen", default_value_t = 64)]
    pub n_gen: usize,
    /// Repetitions (the median is reported).
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    pub repetitions: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    if args.n_prompt == 0 && args.n_gen == 0 {
        bail!("nothing to measure: -p and -n are both 0");
    }
    let ctx = args
        .model
        .ctx
        .or(Some(args.n_prompt.max(args.n_gen).max(1)));
    let loaded = args.model.load_with_ctx(ctx)?;
    let mut session = loaded.session;
    let n_vocab = session.model().hparams.n_vocab as u32;
    let n_ctx = session.n_ctx();
    if args.n_prompt > n_ctx || args.n_gen > n_ctx {
        bail!(
            "-p {} / -n {} do not fit the context of {n_ctx} tokens",
            args.n_prompt,
            args.n_gen
        );
    }
    // Deterministic, varied token ids (as llama-bench uses random ones).
    let ids: Vec<u32> = (0..args.n_prompt.max(args.n_gen) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % n_vocab)
        .collect();

    // Warm up once (page in the weights, as llama-bench does).
    session.reset();
    session.append(&ids[..1], LogitsRequest::Last)?;

    let mut pp = Vec::new();
    let mut tg = Vec::new();
    let mut decode_faults = PageFaults::default();
    for _ in 0..args.repetitions {
        if args.n_prompt > 0 {
            session.reset();
            let t = Instant::now();
            session.append(&ids[..args.n_prompt], LogitsRequest::Last)?;
            pp.push(args.n_prompt as f64 / t.elapsed().as_secs_f64());
        }
        if args.n_gen > 0 {
            session.reset();
            let faults_before = PageFaults::now();
            let t = Instant::now();
            for &id in &ids[..args.n_gen] {
                session.append(&[id], LogitsRequest::Last)?;
            }
            tg.push(args.n_gen as f64 / t.elapsed().as_secs_f64());
            if let (Some(after), Some(before)) = (PageFaults::now(), faults_before) {
                let d = after.since(before);
                decode_faults.minor += d.minor;
                decode_faults.major += d.major;
            }
        }
    }
    let pp_tps = median(&mut pp);
    let tg_tps = median(&mut tg);
    let rss = peak_rss_mib();
    let faults = PageFaults::now();
    if args.json {
        println!(
            "{}",
            json!({
                "pp_tps": pp_tps, "tg_tps": tg_tps, "load_s": loaded.load_s, "peak_rss_mib": rss,
                "n_prompt": args.n_prompt, "n_gen": args.n_gen, "n_ctx": n_ctx,
                "backend": session.backend().describe(),
                "weight_bytes_per_token": session.model().weight_bytes_per_token(),
                "page_faults": faults.map(|f| json!({
                    "minor": f.minor, "major": f.major,
                    "decode_minor": decode_faults.minor, "decode_major": decode_faults.major,
                })),
            })
        );
    } else {
        println!("backend      {}", session.backend().describe());
        println!("load         {:.3} s", loaded.load_s);
        if let Some(v) = pp_tps {
            println!("pp{:<10} {v:.2} tok/s", args.n_prompt);
        }
        if let Some(v) = tg_tps {
            println!("tg{:<10} {v:.2} tok/s", args.n_gen);
        }
        if let Some(r) = rss {
            println!("peak RSS     {r:.1} MiB");
        }
        if let Some(f) = faults {
            println!(
                "page faults  {} major, {} minor ({} major, {} minor while decoding)",
                f.major, f.minor, decode_faults.major, decode_faults.minor
            );
        }
    }
    Ok(())
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}
