//! `deepedge score`, `deepedge perplexity` and `deepedge tokenize`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use deepedge::sample::argmax;
use serde_json::json;

use crate::common::{parse_ids, IdList, ModelArgs};

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Token ids, fed as they are (no BOS added): `--ids 1,2,3`.
    #[arg(long, value_parser = parse_ids, required = true)]
    pub ids: IdList,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn score(args: ScoreArgs) -> Result<()> {
    let ids = &args.ids.0;
    if ids.is_empty() {
        bail!("--ids needs at least one token id");
    }
    let ctx = args.model.ctx.or(Some(ids.len().max(1)));
    let mut session = args.model.load_with_ctx(ctx)?.session;
    let n_vocab = session.model().hparams.n_vocab;
    let logits = session.score(ids)?;
    let argmaxes: Vec<u32> = logits.chunks_exact(n_vocab).map(argmax).collect();
    let last = &logits[logits.len() - n_vocab..];
    if args.json {
        println!("{}", json!({ "argmax": argmaxes, "last_logits": last }));
    } else {
        let tok = &session.model().tokenizer;
        for (i, (&id, &next)) in ids.iter().zip(&argmaxes).enumerate() {
            println!(
                "{i:5} {id:7} {:<20} -> {next:7} {:?}",
                format!("{:?}", tok.decode(&[id], true)),
                tok.decode(&[next], true)
            );
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Tokens per chunk (the context of each evaluation).
    #[arg(short = 'c', long = "chunk-size", default_value_t = 256)]
    pub chunk: usize,
    /// Score at most this many chunks (default: all).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Perplexity of a file, the llama.cpp way (see `deepedge::eval::perplexity`).
pub fn perplexity(args: PerplexityArgs) -> Result<()> {
    let text = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let text = String::from_utf8(text)
        .with_context(|| format!("{} is not valid UTF-8", args.file.display()))?;
    let c = args.chunk;
    if c < 4 {
        bail!("--chunk-size must be at least 4");
    }
    let mut session = args.model.load_with_ctx(Some(c))?.session;
    let tokens =
        session
            .model()
            .tokenizer
            .encode(deepedge::eval::perplexity_text(&text), true, false)?;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !args.json;
    let result =
        deepedge::eval::perplexity(&mut session, &tokens, c, args.chunks, |done, total, ppl| {
            if progress {
                eprint!("\rchunk {done}/{total}: ppl {ppl:.4}   ");
            }
        })?;
    if progress {
        eprintln!();
    }
    if args.json {
        println!(
            "{}",
            json!({ "ppl": result.ppl, "chunks": result.chunks, "tokens": result.tokens })
        );
    } else {
        println!(
            "perplexity {:.4} over {} chunks of {c} tokens ({} tokens in the file)",
            result.ppl, result.chunks, result.tokens
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// Path to a GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Text to tokenize.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: String,
    /// Do not add the BOS token even if the model adds one.
    #[arg(long)]
    pub no_bos: bool,
    /// Recognize special tokens written in the text (`<|im_start|>`).
    #[arg(long)]
    pub parse_special: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn tokenize(args: TokenizeArgs) -> Result<()> {
    let file = deepedge::gguf::GgufFile::open(&args.model)?;
    let tok = deepedge::tokenizer::Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&args.prompt, !args.no_bos, args.parse_special)?;
    if args.json {
        println!("{}", json!({ "ids": ids }));
    } else {
        for id in ids {
            println!("{id:7} {:?}", tok.token_str(id).unwrap_or(""));
        }
    }
    Ok(())
}
