#!/usr/bin/env python3
"""Tiny random-weight reference models for deepedge's forward pass.

For each config below this script builds a Hugging Face `transformers` model with fixed-seed random
weights, writes it to GGUF the way llama.cpp's `convert_hf_to_gguf.py` would (tensor names, metadata keys,
the q/k permute of the `llama` architecture, the +1 on Gemma norm weights), and records transformers'
float32 logits for two input id sequences in `<name>.json`. `runtime/tests/tiny_models.rs` compares
deepedge's logits against them.

Run from anywhere (CPU only, a few seconds):

    python tests/tiny/make_tiny_models.py

Outputs are deterministic for the pinned versions in requirements.txt (torch's CPU RNG and kernels).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
import transformers
import gguf
from gguf import GGMLQuantizationType, LlamaFileType
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

OUT = Path(__file__).resolve().parent
CTX = 2048
# Every position's top-1 logit must beat the top-2 by at least this much, so that the argmax is well
# defined for any implementation (and survives f16 weights).
MIN_MARGIN = 2e-2
SEQ_LEN = (12, 14)  # lengths of the two recorded sequences


# ---------------------------------------------------------------------------------------------- tokenizer


def bytes_to_unicode() -> list[str]:
    """GPT-2's byte → printable character map, indexed by byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def add_tokenizer(w: gguf.GGUFWriter, n_vocab: int) -> None:
    """A byte-level BPE vocabulary of exactly `n_vocab` tokens: 256 byte characters, three merged tokens,
    then fillers `tokN`; the last token is BOS/EOS."""
    tokens = bytes_to_unicode()
    merges = [("Ġ", "t"), ("h", "e"), ("i", "n")]
    tokens += [a + b for a, b in merges]
    tokens += [f"tok{i}" for i in range(len(tokens), n_vocab)]
    assert len(tokens) == n_vocab and len(set(tokens)) == n_vocab
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * n_vocab)
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    w.add_bos_token_id(n_vocab - 1)
    w.add_eos_token_id(n_vocab - 1)


# ------------------------------------------------------------------------------------------------ weights


def randomize(model: torch.nn.Module, seed: int, std: float, norm_std: float, gemma: bool) -> None:
    """Fixed-seed random weights: matrices N(0, std²), biases N(0, 0.1²), norm weights random around their
    identity value (1 for llama/qwen2, 0 for Gemma's x·(1+w))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:  # norm weight
                base = 0.0 if gemma else 1.0
                p.copy_(base + torch.randn(p.shape, generator=g) * norm_std)


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py `LlamaModel.permute`: HF's rotate_half (NeoX) order of q/k rows → llama.cpp's
    interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model: torch.nn.Module, arch: str, cfg) -> list[tuple[str, np.ndarray]]:
    """HF state dict → llama.cpp tensor names and layouts (f32)."""
    sd = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
    out: list[tuple[str, np.ndarray]] = []
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "self_attn.q_norm": "attn_q_norm",
        "self_attn.k_norm": "attn_k_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "post_attention_norm" if arch == "gemma3" else "ffn_norm",
        "pre_feedforward_layernorm": "ffn_norm",
        "post_feedforward_layernorm": "post_ffw_norm",
    }
    for key, t in sd.items():
        if key.endswith("rotary_emb.inv_freq") or "embed_scale" in key:
            continue
        if key == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif key == "model.norm.weight":
            name = "output_norm.weight"
        elif key == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            name = "output.weight"
        else:
            parts = key.split(".")
            assert parts[0] == "model" and parts[1] == "layers", key
            il, rest, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
            name = f"blk.{il}.{names[rest]}.{kind}"
            if arch == "llama" and rest == "self_attn.q_proj":
                t = llama_permute(t, cfg.num_attention_heads)
            if arch == "llama" and rest == "self_attn.k_proj":
                t = llama_permute(t, cfg.num_key_value_heads)
        if arch == "gemma3" and name.endswith("norm.weight"):
            t = t + 1.0  # convert_hf_to_gguf.py Gemma: llama.cpp's rms_norm multiplies by w, Gemma by 1 + w
        out.append((name, t.astype(np.float32)))
    return out


def write_gguf(path: Path, arch: str, cfg, tensors, wtype: GGMLQuantizationType) -> None:
    w = gguf.GGUFWriter(path, arch)
    w.add_name(path.stem)
    w.add_file_type(
        {
            GGMLQuantizationType.F32: LlamaFileType.ALL_F32,
            GGMLQuantizationType.F16: LlamaFileType.MOSTLY_F16,
            GGMLQuantizationType.Q8_0: LlamaFileType.MOSTLY_Q8_0,
        }[wtype]
    )
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_context_length(CTX)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    if arch == "gemma3":
        rp = cfg.rope_parameters
        assert rp["sliding_attention"]["rope_theta"] == 10000.0  # llama.cpp's fixed Gemma 3 local base
        w.add_rope_freq_base(rp["full_attention"]["rope_theta"])
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_sliding_window(cfg.sliding_window)
    else:
        rp = cfg.rope_parameters
        w.add_rope_freq_base(rp["rope_theta"])
        w.add_rope_dimension_count(head_dim)
        if rp.get("rope_type") == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(rp["factor"])
    add_tokenizer(w, cfg.vocab_size)
    for name, t in tensors:
        if t.ndim == 2 and wtype != GGMLQuantizationType.F32:
            if wtype == GGMLQuantizationType.F16:
                w.add_tensor(name, t.astype(np.float16))
            else:
                assert t.shape[1] % 32 == 0, (name, t.shape)
                q = gguf.quants.quantize(t, wtype)
                w.add_tensor(name, q, raw_dtype=wtype)
        else:
            w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ------------------------------------------------------------------------------------------------ configs


def configs():
    common = dict(attn_implementation="eager", max_position_embeddings=CTX)
    yield dict(
        name="llama",
        arch="llama",
        cls=LlamaForCausalLM,
        cfg=LlamaConfig(
            vocab_size=300,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
            **common,
        ),
        seed=1,
        # Gentler hidden layers and a wider LM head than the other fixtures, and wider margins: the same
        # sequences check the F16 and Q8_0 files, whose rounding must not flip the argmax.
        std=0.1,
        head_std=0.15,
        min_margin=0.1,
        types=[GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.Q8_0],
    )
    yield dict(
        name="llama-tied-linear",
        arch="llama",
        cls=LlamaForCausalLM,
        cfg=LlamaConfig(
            vocab_size=260,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
            tie_word_embeddings=True,
            **common,
        ),
        seed=2,
        std=0.15,
        types=[GGMLQuantizationType.F32],
    )
    yield dict(
        name="qwen2",
        arch="qwen2",
        cls=Qwen2ForCausalLM,
        cfg=Qwen2Config(
            vocab_size=272,
            hidden_size=96,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=6,
            num_key_value_heads=2,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=False,
            use_sliding_window=False,
            **common,
        ),
        seed=3,
        std=0.12,
        types=[GGMLQuantizationType.F32],
    )
    yield dict(
        name="gemma3",
        arch="gemma3",
        cls=Gemma3ForCausalLM,
        cfg=Gemma3TextConfig(
            vocab_size=262,
            hidden_size=64,
            intermediate_size=64,
            num_hidden_layers=6,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            rms_norm_eps=1e-6,
            # llama.cpp: layer il is global when il % 6 == 5, sliding otherwise.
            layer_types=["full_attention" if il % 6 == 5 else "sliding_attention" for il in range(6)],
            sliding_window=4,
            rope_parameters={
                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
            query_pre_attn_scalar=32,
            final_logit_softcapping=None,
            attn_logit_softcapping=None,
            hidden_activation="gelu_pytorch_tanh",
            tie_word_embeddings=True,
            **common,
        ),
        seed=4,
        std=0.15,
        types=[GGMLQuantizationType.F32],
    )


SUFFIX = {
    GGMLQuantizationType.F32: "",
    GGMLQuantizationType.F16: "-f16",
    GGMLQuantizationType.Q8_0: "-q8_0",
}


def margins(logits: torch.Tensor) -> torch.Tensor:
    top = logits.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def check_features(spec, model, cases) -> None:
    """Asserts that what a fixture is meant to exercise does change transformers' logits."""
    cfg = spec["cfg"]
    ids = torch.tensor([cases[0]["ids"]])
    ref = torch.tensor(cases[0]["logits"])

    def variant(**changes) -> float:
        c = copy.deepcopy(cfg)
        for k, v in changes.items():
            setattr(c, k, v)
        m = spec["cls"](c).eval().float()
        m.load_state_dict(model.state_dict())
        return (m(ids).logits[0] - ref).abs().max().item()

    rp = cfg.rope_parameters
    if rp.get("rope_type") == "linear":
        inv = model.model.rotary_emb.inv_freq
        d = cfg.head_dim
        default = 1.0 / (rp["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        assert torch.allclose(inv, default / rp["factor"]), "linear rope scaling is not applied"
        assert variant(rope_parameters={"rope_type": "default", "rope_theta": rp["rope_theta"]}) > 0.1
    if spec["arch"] == "gemma3":
        assert len(cases[0]["ids"]) > cfg.sliding_window
        assert variant(sliding_window=CTX) > 0.1, "the sliding window does not matter"


def q8_0_round_trip(x: torch.Tensor) -> torch.Tensor:
    """x quantized to Q8_0 along its last dimension by gguf-py (ggml's reference quantizer) and back."""
    q = gguf.quants.quantize(x.detach().float().numpy(), GGMLQuantizationType.Q8_0)
    return torch.from_numpy(gguf.quants.dequantize(q, GGMLQuantizationType.Q8_0)).reshape(x.shape)


def check_q8_0(spec, model, cases) -> str:
    """Runs transformers the way llama.cpp runs a Q8_0 file (Q8_0 weights, activations quantized to Q8_0 before
    every matmul) and asserts it meets runtime/tests/tiny_models.rs's Q8_0 tolerances with room to spare, so
    that a failure there is the runtime's, not the fixture's."""
    m = copy.deepcopy(model)
    for p in m.parameters():
        if p.dim() == 2:
            p.copy_(q8_0_round_trip(p.data))
    for mod in m.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.register_forward_pre_hook(lambda _mod, args: (q8_0_round_trip(args[0]),))
    agree = total = 0
    max_diff = 0.0
    for c in cases:
        ours = m(torch.tensor([c["ids"]])).logits[0]
        agree += (ours.argmax(-1) == torch.tensor(c["argmax"])).sum().item()
        total += len(c["ids"])
        max_diff = max(max_diff, (ours - torch.tensor(c["logits"])).abs().max().item())
    assert agree / total >= 0.95 and max_diff <= 0.2, (agree, total, max_diff)
    return f"; Q8_0 simulation: argmax {agree}/{total}, max diff {max_diff:.3f}"


def main() -> None:
    torch.set_grad_enabled(False)
    for spec in configs():
        name, arch, cfg = spec["name"], spec["arch"], spec["cfg"]
        torch.manual_seed(spec["seed"])
        model = spec["cls"](cfg).eval().float()
        randomize(model, spec["seed"], spec["std"], norm_std=0.2, gemma=arch == "gemma3")
        if "head_std" in spec:
            assert not cfg.tie_word_embeddings
            model.lm_head.weight.mul_(spec["head_std"] / spec["std"])
        min_margin = spec.get("min_margin", MIN_MARGIN)
        if cfg.tie_word_embeddings:
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

        # Input sequences: random ids (fixed seed), keeping the first ones whose every position has a clear
        # argmax.
        rng = np.random.default_rng(1000 + spec["seed"])
        cases = []
        tried = 0
        while len(cases) < len(SEQ_LEN):
            tried += 1
            assert tried < 2000, f"{name}: no input with margins ≥ {min_margin}"
            n = SEQ_LEN[len(cases)]
            ids = rng.integers(0, cfg.vocab_size, size=n).tolist()
            logits = model(torch.tensor([ids])).logits[0].float()
            m = margins(logits)
            if m.min().item() < min_margin:
                continue
            cases.append(
                {
                    "ids": ids,
                    "argmax": logits.argmax(-1).tolist(),
                    "min_margin": round(m.min().item(), 6),
                    "logits": [[round(v, 6) for v in row] for row in logits.tolist()],
                }
            )
        check_features(spec, model, cases)
        q8 = check_q8_0(spec, model, cases) if GGMLQuantizationType.Q8_0 in spec["types"] else ""
        tensors = gguf_tensors(model, arch, cfg)
        files = {}
        for wtype in spec["types"]:
            path = OUT / f"{name}{SUFFIX[wtype]}.gguf"
            write_gguf(path, arch, cfg, tensors, wtype)
            files[wtype.name] = path.name
        fixture = {
            "name": name,
            "arch": arch,
            "n_vocab": cfg.vocab_size,
            "gguf": files,
            "config": {
                k: v
                for k, v in cfg.to_dict().items()
                if k
                in (
                    "hidden_size",
                    "intermediate_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "num_key_value_heads",
                    "head_dim",
                    "rms_norm_eps",
                    "rope_parameters",
                    "tie_word_embeddings",
                    "sliding_window",
                    "layer_types",
                    "query_pre_attn_scalar",
                )
            },
            "seed": spec["seed"],
            "weight_std": spec["std"],
            "lm_head_std": spec.get("head_std", spec["std"]),
            "min_margin": min_margin,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "cases": cases,
        }
        (OUT / f"{name}.json").write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
        spread = max(max(r) - min(r) for c in cases for r in c["logits"])
        print(
            f"{name}: {', '.join(files.values())}; {sum(p.numel() for p in model.parameters())} params; "
            f"min margin {min(c['min_margin'] for c in cases):.4f}; logit range {spread:.2f}; "
            f"{tried} inputs tried{q8}"
        )


if __name__ == "__main__":
    main()
