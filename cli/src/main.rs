//! The `deepedge` command line: a thin shell over the `deepedge` library.
//!
//! Commands: `run` (generate from a prompt or token ids), `chat` (interactive, with the model's chat
//! template), `score` (one forward pass), `perplexity` (llama.cpp's `llama-perplexity` method), `tokenize`,
//! `bench` (prompt and decode speed, load time, peak memory), `inspect` (metadata, tensors, memory) and
//! `serve` (an OpenAI-compatible HTTP service with continuous batching).
//! Results go to stdout (JSON with `--json`), logs to stderr; an error is one line and a non-zero exit.

mod bench;
mod common;
mod eval;
mod generate;
mod inspect;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "deepedge", version, about = "Run quantized GGUF language models on the CPU", long_about = None)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt (or token ids) and stream it to stdout.
    Run(generate::RunArgs),
    /// Chat interactively using the model's chat template.
    Chat(generate::ChatArgs),
    /// One forward pass over token ids: argmax per position and the last position's logits.
    Score(eval::ScoreArgs),
    /// Perplexity of a text file, the llama.cpp way.
    Perplexity(eval::PerplexityArgs),
    /// Tokenize text as `run -p` does.
    Tokenize(eval::TokenizeArgs),
    /// Measure prompt processing and decode speed, load time and peak memory.
    Bench(bench::BenchArgs),
    /// Show a model's metadata, tensors and memory needs.
    Inspect(inspect::InspectArgs),
    /// Serve the model over an OpenAI-compatible HTTP API, batching concurrent requests.
    Serve(serve::ServeArgs),
}

fn main() {
    let cli = Cli::parse();
    common::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(a) => generate::run(a),
        Command::Chat(a) => generate::chat(a),
        Command::Score(a) => eval::score(a),
        Command::Perplexity(a) => eval::perplexity(a),
        Command::Tokenize(a) => eval::tokenize(a),
        Command::Bench(a) => bench::bench(a),
        Command::Inspect(a) => inspect::inspect(a),
        Command::Serve(a) => serve::serve(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
