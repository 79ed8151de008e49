//! Writes a synthetic Mixture-of-Experts GGUF large enough to measure expert streaming: a `qwen2moe`
//! model (the layout of Qwen1.5-MoE: routed experts plus a sigmoid-gated shared expert) with random Q4_0
//! weights, by default 14 layers × 64 experts of 2048 → 1024 → 2048, 4 experts used per token, ~3.4 GB.
//!
//! It is a benchmark input, not a language model: the weights are fixed-seed random blocks (scales chosen
//! so activations keep their size from layer to layer), the router is random, so experts are used about
//! evenly, and the vocabulary is filler tokens. llama.cpp loads the same file, so the two can be
//! benchmarked side by side (`scripts/bench_vs_llamacpp.py --models moe`, which runs this when the file
//! is missing).
//!
//! ```text
//! cargo run --release -p deepedge --example make_synthetic_moe -- OUT.gguf [--layers 14] [--experts 64]
//!     [--used 4] [--embd 2048] [--ff-exp 1024] [--vocab 32000] [--seed 1]
//! ```

use std::path::PathBuf;

use deepedge::gguf::writer::GgufWriter;
use deepedge::gguf::{Array, Value};
use deepedge::quant::GgmlType;
use deepedge::tokenizer::byte_level_char;
use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Shape {
    layers: usize,
    experts: usize,
    used: usize,
    embd: usize,
    ff_exp: usize,
    vocab: usize,
    seed: u64,
}

const HEAD_DIM: usize = 128;
const KV_HEADS: usize = 4;
/// Standard deviation of a Q4_0 block's values `q − 8` for uniform `q` in 1..16 (0 is left out so the
/// values have mean 0; a common offset would make every output of a matrix alike).
const Q4_0_STD: f32 = 4.32;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut s = Shape {
        layers: 14,
        experts: 64,
        used: 4,
        embd: 2048,
        ff_exp: 1024,
        vocab: 32000,
        seed: 1,
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--layers" => s.layers = value("--layers")?,
            "--experts" => s.experts = value("--experts")?,
            "--used" => s.used = value("--used")?,
            "--embd" => s.embd = value("--embd")?,
            "--ff-exp" => s.ff_exp = value("--ff-exp")?,
            "--vocab" => s.vocab = value("--vocab")?,
            "--seed" => s.seed = value("--seed")? as u64,
            _ if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ if out.is_none() => out = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    let out = out.ok_or("usage: make_synthetic_moe OUT.gguf [options]")?;
    if !s.embd.is_multiple_of(HEAD_DIM) || !s.ff_exp.is_multiple_of(32) {
        return Err(format!(
            "--embd must be a multiple of {HEAD_DIM} and --ff-exp of 32"
        ));
    }
    if s.vocab < 256 {
        return Err("--vocab must be at least 256 (the byte alphabet)".into());
    }
    if s.used == 0 || s.used > s.experts {
        return Err("--used must be in 1..=--experts".into());
    }
    let w = build(&s);
    w.write_to(&out)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let size = std::fs::metadata(&out).map_or(0, |m| m.len());
    eprintln!(
        "{}: {} layers × {} experts ({} used), {:.2} GB",
        out.display(),
        s.layers,
        s.experts,
        s.used,
        size as f64 / 1e9
    );
    Ok(())
}

fn build(s: &Shape) -> GgufWriter {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let mut w = GgufWriter::new();
    let arch = "qwen2moe";
    let key = |k: &str| format!("{arch}.{k}");
    let n_head = s.embd / HEAD_DIM;
    let kv_dim = KV_HEADS * HEAD_DIM;
    w.add_str("general.architecture", arch)
        .add_str("general.name", "synthetic-moe")
        .add_u32(&key("context_length"), 4096)
        .add_u32(&key("embedding_length"), s.embd as u32)
        .add_u32(&key("block_count"), s.layers as u32)
        .add_u32(&key("attention.head_count"), n_head as u32)
        .add_u32(&key("attention.head_count_kv"), KV_HEADS as u32)
        .add_f32(&key("attention.layer_norm_rms_epsilon"), 1e-6)
        .add_f32(&key("rope.freq_base"), 1e6)
        .add_u32(&key("rope.dimension_count"), HEAD_DIM as u32)
        .add_u32(&key("feed_forward_length"), 0)
        .add_u32(&key("expert_feed_forward_length"), s.ff_exp as u32)
        .add_u32(&key("expert_shared_feed_forward_length"), s.embd as u32)
        .add_u32(&key("expert_count"), s.experts as u32)
        .add_u32(&key("expert_used_count"), s.used as u32);
    // GPT-2's byte alphabet first, so any text tokenizes (byte by byte: there are no merges), then fillers.
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| byte_level_char(b).to_string())
        .collect();
    tokens.extend((tokens.len()..s.vocab).map(|i| format!("<t{i}>")));
    tokens.truncate(s.vocab);
    w.add_str("tokenizer.ggml.model", "gpt2")
        .add_str("tokenizer.ggml.pre", "default")
        .add_array("tokenizer.ggml.tokens", Array::String(tokens))
        .add_array("tokenizer.ggml.token_type", Array::I32(vec![1; s.vocab]))
        .add_array("tokenizer.ggml.merges", Array::String(Vec::new()))
        .add("tokenizer.ggml.bos_token_id", Value::U32(0))
        .add("tokenizer.ggml.eos_token_id", Value::U32(1));

    let e = s.embd as u64;
    let ones = |n: usize| vec![1f32; n];
    w.add_tensor(
        "token_embd.weight",
        GgmlType::Q4_0,
        &[e, s.vocab as u64],
        q4_0(&mut rng, s.vocab, s.embd, 1.0),
    );
    for il in 0..s.layers {
        let n = |t: &str| format!("blk.{il}.{t}");
        let mut matrix =
            |w: &mut GgufWriter, name: &str, cols: usize, rows: usize, count: usize| {
                let dims: Vec<u64> = if count == 1 {
                    vec![cols as u64, rows as u64]
                } else {
                    vec![cols as u64, rows as u64, count as u64]
                };
                let data = q4_0(&mut rng, rows * count, cols, (cols as f32).sqrt().recip());
                w.add_tensor(&n(name), GgmlType::Q4_0, &dims, data);
            };
        matrix(&mut w, "attn_q.weight", s.embd, s.embd, 1);
        matrix(&mut w, "attn_k.weight", s.embd, kv_dim, 1);
        matrix(&mut w, "attn_v.weight", s.embd, kv_dim, 1);
        matrix(&mut w, "attn_output.weight", s.embd, s.embd, 1);
        matrix(&mut w, "ffn_gate_exps.weight", s.embd, s.ff_exp, s.experts);
        matrix(&mut w, "ffn_up_exps.weight", s.embd, s.ff_exp, s.experts);
        matrix(&mut w, "ffn_down_exps.weight", s.ff_exp, s.embd, s.experts);
        matrix(&mut w, "ffn_gate_shexp.weight", s.embd, s.embd, 1);
        matrix(&mut w, "ffn_up_shexp.weight", s.embd, s.embd, 1);
        matrix(&mut w, "ffn_down_shexp.weight", s.embd, s.embd, 1);
        // Routers stay F32, as llama.cpp's quantizer leaves them.
        let router: Vec<f32> = (0..s.experts * s.embd)
            .map(|_| rng.random_range(-1.0..1.0) * (s.embd as f32).sqrt().recip())
            .collect();
        w.add_f32_tensor(&n("ffn_gate_inp.weight"), &[e, s.experts as u64], &router);
        let shared_gate: Vec<f32> = (0..s.embd).map(|_| rng.random_range(-0.05..0.05)).collect();
        w.add_f32_tensor(&n("ffn_gate_inp_shexp.weight"), &[e, 1], &shared_gate);
        for (name, len) in [
            ("attn_q.bias", s.embd),
            ("attn_k.bias", kv_dim),
            ("attn_v.bias", kv_dim),
        ] {
            w.add_f32_tensor(&n(name), &[len as u64], &vec![0.0; len]);
        }
        w.add_f32_tensor(&n("attn_norm.weight"), &[e], &ones(s.embd));
        w.add_f32_tensor(&n("ffn_norm.weight"), &[e], &ones(s.embd));
    }
    w.add_f32_tensor("output_norm.weight", &[e], &ones(s.embd));
    w.add_tensor(
        "output.weight",
        GgmlType::Q4_0,
        &[e, s.vocab as u64],
        q4_0(&mut rng, s.vocab, s.embd, (s.embd as f32).sqrt().recip()),
    );
    w
}

/// `rows × cols` random Q4_0 weights with standard deviation about `std`: each block is a fixed f16
/// scale and 32 random nibbles in 1..16.
fn q4_0(rng: &mut ChaCha8Rng, rows: usize, cols: usize, std: f32) -> Vec<u8> {
    let blocks = rows * cols / 32;
    let scale = f16::from_f32(std / Q4_0_STD).to_le_bytes();
    let mut data = vec![0u8; blocks * 18];
    for block in data.chunks_exact_mut(18) {
        block[..2].copy_from_slice(&scale);
        for b in &mut block[2..] {
            *b = rng.random_range(1..16u8) | (rng.random_range(1..16u8) << 4);
        }
    }
    data
}
