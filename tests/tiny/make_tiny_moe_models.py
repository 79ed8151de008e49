#!/usr/bin/env python3
"""Tiny random-weight Mixture-of-Experts and DeepSeek reference models for deepedge.

The MoE sibling of `make_tiny_models.py` (whose tokenizer, Q8_0 and margin helpers it reuses): for each
config below it builds a Hugging Face `transformers` model with fixed-seed random weights (hidden 128,
vocabulary 512, 2–3 layers), writes it to GGUF the way llama.cpp's `convert_hf_to_gguf.py` does (tensor
names, metadata keys, stacked expert tensors, DeepSeek's `kv_b` split for MLA), and records
transformers' float32 logits for two input sequences plus a 16-token greedy continuation in `<name>.json`.

Inputs are kept only when nothing is a near tie: every position's top-1/top-2 logit margin, and at every
MoE layer and token the margin between the last selected and the first rejected expert (and, with group
routing, between the last selected and first rejected group), so that any correct implementation routes
exactly like transformers.

    python tests/tiny/make_tiny_moe_models.py

`runtime/tests/tiny_moe.rs` checks deepedge against the JSON files; `tests/reference/tiny_moe_llamacpp.mjs`
records llama.cpp's output for the Q8_0 copies.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import numpy as np
import torch
import transformers
import gguf
from gguf import GGMLQuantizationType, LlamaFileType
from transformers import (
    DeepseekV2Config,
    DeepseekV2ForCausalLM,
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

from make_tiny_models import CTX, SEQ_LEN, add_tokenizer, llama_permute, margins

OUT = Path(__file__).resolve().parent
# The margins hold for the F32 model and for a simulation of the Q8_0 file as llama.cpp runs it (weights
# rounded through Q8_0, and the input of every quantized matmul too), so that implementations running the
# Q8_0 file route alike and meet no near tie.
MIN_MARGIN = 2e-2  # top-1 vs top-2 logit at every position (and every greedy step of the F32 model)
MIN_ROUTE_MARGIN = 2e-3  # last selected vs first rejected expert (or group) score, softmax or sigmoid
MIN_Q8_ROUTE_MARGIN = 4e-3  # the same in the Q8_0 simulation, which approximates llama.cpp's rounding points
# Tensors the Q8_0 copies keep in F32 (1-D tensors always stay F32): the routers and the shared-expert
# gate, as llama.cpp's quantizer leaves them, and DeepSeek's split `attn_k_b` / `attn_v_b`, because the
# reference cannot run them quantized: with a Q8_0 `attn_k_b` llama.cpp's CPU graph aborts
# ("GGML_ASSERT(*cur_backend_id != -1)"), and with a Q8_0 `attn_v_b` its output no longer matches
# transformers' at all while deepedge's still does (checked with node-llama-cpp 3.21.1's build).
KEEP_F32 = ("ffn_gate_inp.weight", "ffn_gate_inp_shexp.weight", "attn_k_b.weight", "attn_v_b.weight")
GREEDY_TOKENS = 16

YARN = {
    "rope_type": "yarn",
    "factor": 4.0,
    "original_max_position_embeddings": CTX // 4,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
    "rope_theta": 10000.0,
}


def configs():
    common = dict(
        vocab_size=512,
        hidden_size=128,
        num_attention_heads=4,
        max_position_embeddings=CTX,
        tie_word_embeddings=False,
    )
    mla = dict(kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, num_key_value_heads=4)
    yield dict(
        name="deepseek-v3",
        arch="deepseek2",
        cls=DeepseekV3ForCausalLM,
        # sigmoid scoring with the correction bias, 4 groups of 2 experts with 2 groups kept, normalized
        # top-k weights scaled by 2.5, one shared expert, one leading dense layer, YaRN, no q LoRA, and
        # the MLA tensors split the way current llama.cpp converters write them (attn_k_b / attn_v_b).
        cfg=DeepseekV3Config(
            **common,
            **mla,
            num_hidden_layers=3,
            intermediate_size=192,
            moe_intermediate_size=64,
            n_routed_experts=8,
            n_shared_experts=1,
            num_experts_per_tok=2,
            n_group=4,
            topk_group=2,
            first_k_dense_replace=1,
            norm_topk_prob=True,
            routed_scaling_factor=2.5,
            q_lora_rank=None,
            rope_interleave=True,
            rms_norm_eps=1e-6,
            rope_parameters=YARN,
        ),
        mla_split=True,
        seed=11,
        std=0.08,
    )
    yield dict(
        name="deepseek-v2",
        arch="deepseek2",
        cls=DeepseekV2ForCausalLM,
        # softmax scoring, greedy top-k without normalization, scale 1.5, two shared experts, q LoRA,
        # plain rope, and the older single attn_kv_b tensor.
        cfg=DeepseekV2Config(
            **common,
            **mla,
            num_hidden_layers=3,
            intermediate_size=192,
            moe_intermediate_size=64,
            n_routed_experts=8,
            n_shared_experts=2,
            num_experts_per_tok=3,
            topk_method="greedy",
            n_group=1,
            topk_group=1,
            first_k_dense_replace=1,
            routed_scaling_factor=1.5,
            q_lora_rank=64,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        mla_split=False,
        seed=12,
        std=0.08,
    )
    yield dict(
        name="qwen2moe",
        arch="qwen2moe",
        cls=Qwen2MoeForCausalLM,
        # q/k/v biases, softmax top-2 of 8 without normalization, a shared expert behind a sigmoid gate.
        cfg=Qwen2MoeConfig(
            **common,
            num_hidden_layers=2,
            num_key_value_heads=2,
            moe_intermediate_size=64,
            shared_expert_intermediate_size=128,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            use_sliding_window=False,
        ),
        seed=13,
        std=0.08,
    )
    yield dict(
        name="qwen3moe",
        arch="qwen3moe",
        cls=Qwen3MoeForCausalLM,
        # per-head q/k norms, head size 32 with 4 heads over hidden 128, normalized softmax top-2 of 8.
        cfg=Qwen3MoeConfig(
            **common,
            num_hidden_layers=2,
            num_key_value_heads=2,
            head_dim=32,
            moe_intermediate_size=64,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=True,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
        seed=14,
        std=0.08,
    )
    yield dict(
        name="mixtral",
        arch="llama",
        cls=MixtralForCausalLM,
        # the `llama` architecture with experts: normalized softmax top-2 of 8, interleaved rope (q/k
        # permuted by the converter).
        cfg=MixtralConfig(
            **common,
            num_hidden_layers=2,
            num_key_value_heads=2,
            intermediate_size=64,
            num_local_experts=8,
            num_experts_per_tok=2,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
        seed=15,
        std=0.08,
    )


# ------------------------------------------------------------------------------------------------ weights


def randomize(model: torch.nn.Module, seed: int, std: float) -> None:
    """Matrices and stacked experts N(0, std²), biases N(0, 0.1²), norm weights 1 + N(0, 0.2²), DeepSeek-V3's
    selection bias N(0, 0.05²) (sigmoid scores live in (0, 1))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.2)
        for name, b in sorted(model.named_buffers()):
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.05)


def kept_f32(key: str, spec) -> bool:
    """Whether the HF weight `key` is written as F32 tensors in the Q8_0 file (`KEEP_F32`)."""
    if key.endswith(("mlp.gate.weight", "shared_expert_gate.weight")):
        return True
    return bool(spec.get("mla_split")) and key.endswith("kv_b_proj.weight")


def q8_copy(model: torch.nn.Module, spec) -> torch.nn.Module:
    """The model with every weight the Q8_0 file quantizes rounded through Q8_0 in its GGUF layout (blocks of
    32 along the GGUF row, which is the HF input dimension). What the file keeps in F32 (`KEEP_F32`: routers,
    the shared-expert gate, DeepSeek's split `kv_b`) stays exact."""

    def rt(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        q = gguf.quants.quantize(x, GGMLQuantizationType.Q8_0)
        return gguf.quants.dequantize(q, GGMLQuantizationType.Q8_0).reshape(x.shape)

    q = copy.deepcopy(model)
    with torch.no_grad():
        for key, p in q.named_parameters():
            if p.dim() >= 2 and not kept_f32(key, spec):
                p.copy_(torch.from_numpy(rt(p.detach().numpy())))
    return q


@contextlib.contextmanager
def q8_activations(exact_weights: set[int]):
    """Inside: every `F.linear` (nn.Linear and the fused experts alike) rounds its input through Q8_0 first,
    as ggml does for Q8_0 weights, except for weights in `exact_weights` (data pointers of the tensors the
    file keeps in F32, whose matmuls llama.cpp runs in float32)."""
    linear = torch.nn.functional.linear

    def quantized(x, weight, bias=None):
        if weight.data_ptr() not in exact_weights:
            q = gguf.quants.quantize(x.detach().float().contiguous().numpy(), GGMLQuantizationType.Q8_0)
            x = torch.from_numpy(gguf.quants.dequantize(q, GGMLQuantizationType.Q8_0)).reshape(x.shape)
        return linear(x, weight, bias)

    torch.nn.functional.linear = quantized
    try:
        yield
    finally:
        torch.nn.functional.linear = linear


class Q8Simulation:
    """The Q8_0 file run as llama.cpp runs it: `q8_copy`'s weights and Q8_0-rounded matmul inputs."""

    def __init__(self, model, spec):
        self.spec = spec
        self.model = q8_copy(model, spec)
        self.exact = {p.data_ptr() for key, p in self.model.named_parameters() if kept_f32(key, spec)}
        self.probe = RouterProbe(self.model)

    def __call__(self, ids: list[int]) -> tuple[torch.Tensor, float]:
        """Logits and the smallest routing margin."""
        with q8_activations(self.exact):
            logits = self.model(torch.tensor([ids])).logits[0].float()
            return logits, self.probe.margin(self.spec)


ATTN_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "q_norm": "attn_q_norm",
    "k_norm": "attn_k_norm",
    "q_a_proj": "attn_q_a",
    "q_a_layernorm": "attn_q_a_norm",
    "q_b_proj": "attn_q_b",
    "kv_a_proj_with_mqa": "attn_kv_a_mqa",
    "kv_a_layernorm": "attn_kv_a_norm",
    "kv_b_proj": "attn_kv_b",
}
FFN_NAMES = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"}


def gguf_tensors(model: torch.nn.Module, spec) -> list[tuple[str, np.ndarray]]:
    """HF state dict → llama.cpp tensor names and layouts (f32)."""
    cfg, arch = spec["cfg"], spec["arch"]
    sd = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
    out: list[tuple[str, np.ndarray]] = []
    for key, t in sd.items():
        if key == "model.embed_tokens.weight":
            out.append(("token_embd.weight", t))
            continue
        if key == "model.norm.weight":
            out.append(("output_norm.weight", t))
            continue
        if key == "lm_head.weight":
            out.append(("output.weight", t))
            continue
        parts = key.split(".")
        assert parts[:2] == ["model", "layers"], key
        il, rest = parts[2], parts[3:]
        blk = f"blk.{il}"
        if rest[0] == "input_layernorm":
            out.append((f"{blk}.attn_norm.weight", t))
        elif rest[0] == "post_attention_layernorm":
            out.append((f"{blk}.ffn_norm.weight", t))
        elif rest[0] == "self_attn":
            module, kind = rest[1], rest[2]
            if module == "kv_b_proj" and spec.get("mla_split"):
                # convert_hf_to_gguf.py (DeepseekV2Model): kv_b [n_head·(nope+v), rank] → per head
                # k_b^T [rank, nope] and v_b [v, rank], stored as 3-D tensors.
                nope, v = cfg.qk_nope_head_dim, cfg.v_head_dim
                kv_b = t.reshape(cfg.num_attention_heads, nope + v, t.shape[-1])
                k_b = np.ascontiguousarray(kv_b[:, :nope, :].transpose(0, 2, 1))
                v_b = np.ascontiguousarray(kv_b[:, nope:, :])
                out.append((f"{blk}.attn_k_b.weight", k_b))
                out.append((f"{blk}.attn_v_b.weight", v_b))
                continue
            if arch == "llama" and module == "q_proj":
                t = llama_permute(t, cfg.num_attention_heads)
            if arch == "llama" and module == "k_proj":
                t = llama_permute(t, cfg.num_key_value_heads)
            out.append((f"{blk}.{ATTN_NAMES[module]}.{kind}", t))
        elif rest[0] == "mlp":
            sub = rest[1]
            if sub in FFN_NAMES:  # dense layer
                out.append((f"{blk}.ffn_{FFN_NAMES[sub]}.weight", t))
            elif sub == "gate" and rest[2] == "weight":
                out.append((f"{blk}.ffn_gate_inp.weight", t))
            elif sub == "gate" and rest[2] == "e_score_correction_bias":
                out.append((f"{blk}.exp_probs_b.bias", t))
            elif sub == "experts" and rest[2] == "gate_up_proj":
                n_ff = t.shape[1] // 2
                out.append((f"{blk}.ffn_gate_exps.weight", np.ascontiguousarray(t[:, :n_ff, :])))
                out.append((f"{blk}.ffn_up_exps.weight", np.ascontiguousarray(t[:, n_ff:, :])))
            elif sub == "experts" and rest[2] == "down_proj":
                out.append((f"{blk}.ffn_down_exps.weight", t))
            elif sub in ("shared_experts", "shared_expert"):
                out.append((f"{blk}.ffn_{FFN_NAMES[rest[2]]}_shexp.weight", t))
            elif sub == "shared_expert_gate":
                out.append((f"{blk}.ffn_gate_inp_shexp.weight", t))
            else:
                raise AssertionError(key)
        else:
            raise AssertionError(key)
    return [(n, t.astype(np.float32)) for n, t in out]


def write_gguf(path: Path, spec, tensors, wtype: GGMLQuantizationType) -> None:
    cfg, arch = spec["cfg"], spec["arch"]
    w = gguf.GGUFWriter(path, arch)
    w.add_name(path.stem)
    w.add_file_type(LlamaFileType.ALL_F32 if wtype == GGMLQuantizationType.F32 else LlamaFileType.MOSTLY_Q8_0)
    w.add_context_length(CTX)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(cfg.num_attention_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    rp = cfg.rope_parameters
    w.add_rope_freq_base(rp["rope_theta"])
    if arch == "deepseek2":
        # convert_hf_to_gguf.py DeepseekV2Model.set_gguf_parameters
        w.add_feed_forward_length(cfg.intermediate_size)
        w.add_leading_dense_block_count(cfg.first_k_dense_replace)
        w.add_q_lora_rank(cfg.q_lora_rank or 0)
        w.add_kv_lora_rank(cfg.kv_lora_rank)
        qk = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        if spec["mla_split"]:
            w.add_head_count_kv(1)
            w.add_key_length(cfg.kv_lora_rank + cfg.qk_rope_head_dim)
            w.add_value_length(cfg.kv_lora_rank)
            w.add_key_length_mla(qk)
            w.add_value_length_mla(cfg.v_head_dim)
        else:
            w.add_head_count_kv(cfg.num_attention_heads)
            w.add_key_length(qk)
            w.add_value_length(cfg.v_head_dim)
        w.add_rope_dimension_count(cfg.qk_rope_head_dim)
        w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
        w.add_expert_count(cfg.n_routed_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        w.add_expert_shared_count(cfg.n_shared_experts)
        w.add_expert_weights_scale(cfg.routed_scaling_factor)
        sigmoid = spec["cls"] is DeepseekV3ForCausalLM
        w.add_expert_weights_norm(bool(sigmoid and cfg.norm_topk_prob))
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID if sigmoid else gguf.ExpertGatingFuncType.SOFTMAX)
        if sigmoid:
            w.add_expert_group_count(cfg.n_group)
            w.add_expert_group_used_count(cfg.topk_group)
        if rp.get("rope_type") == "yarn":
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(rp["factor"])
            w.add_rope_scaling_orig_ctx_len(rp["original_max_position_embeddings"])
            w.add_rope_scaling_yarn_log_mul(0.1 * rp["mscale_all_dim"])
    else:
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        w.add_head_count_kv(cfg.num_key_value_heads)
        w.add_rope_dimension_count(head_dim)
        if arch == "qwen3moe":
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        if arch == "llama":  # Mixtral
            w.add_feed_forward_length(cfg.intermediate_size)
            w.add_expert_count(cfg.num_local_experts)
        else:
            w.add_feed_forward_length(0)
            w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
            w.add_expert_count(cfg.num_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        if arch == "qwen2moe":
            w.add_expert_shared_feed_forward_length(cfg.shared_expert_intermediate_size)
    add_tokenizer(w, cfg.vocab_size)
    for name, t in tensors:
        if t.ndim >= 2 and wtype == GGMLQuantizationType.Q8_0 and not name.endswith(KEEP_F32):
            assert t.shape[-1] % 32 == 0, name
            w.add_tensor(name, gguf.quants.quantize(t, wtype), raw_dtype=wtype)
        else:
            w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ------------------------------------------------------------------------------------------------ routing


def route_margin(spec, router_logits: torch.Tensor, gate: torch.nn.Module) -> float:
    """Smallest gap, over tokens, between the last chosen and first rejected expert (or group) score."""
    cfg = spec["cfg"]
    k = cfg.num_experts_per_tok
    if spec["cls"] is DeepseekV3ForCausalLM:
        s = router_logits.sigmoid() + gate.e_score_correction_bias
        n_tok, n_exp = s.shape
        groups = s.view(n_tok, cfg.n_group, n_exp // cfg.n_group)
        gscore = groups.topk(2, dim=-1).values.sum(-1)
        gs = gscore.sort(dim=-1, descending=True).values
        group_margin = (gs[:, cfg.topk_group - 1] - gs[:, cfg.topk_group]).min().item()
        keep = torch.zeros_like(gscore, dtype=torch.bool)
        keep.scatter_(1, gscore.topk(cfg.topk_group, dim=-1).indices, True)
        s = s.masked_fill(~keep.repeat_interleave(n_exp // cfg.n_group, dim=1), float("-inf"))
    else:
        group_margin = float("inf")
        s = router_logits.softmax(-1)
    ss = s.sort(dim=-1, descending=True).values
    return min(group_margin, (ss[:, k - 1] - ss[:, k]).min().item())


class RouterProbe:
    """Records every MoE router's logits during a forward pass."""

    def __init__(self, model):
        self.logits: list[tuple[torch.nn.Module, torch.Tensor]] = []
        for mod in model.modules():
            if type(mod).__name__.lower().endswith("topkrouter"):
                mod.register_forward_pre_hook(self._hook)

    def _hook(self, mod, args):
        x = args[0].reshape(-1, args[0].shape[-1]).float()
        self.logits.append((mod, torch.nn.functional.linear(x, mod.weight.float())))

    def margin(self, spec) -> float:
        m = min((route_margin(spec, lg, mod) for mod, lg in self.logits), default=float("inf"))
        self.logits.clear()
        return m


# ------------------------------------------------------------------------------------------------ checks


def check_features(spec, model, ids, ref) -> None:
    """Asserts that what a fixture is meant to exercise does change transformers' logits."""
    cfg = spec["cfg"]
    ids = torch.tensor([ids])

    def variant(**changes) -> float:
        c = copy.deepcopy(cfg)
        for key, v in changes.items():
            setattr(c, key, v)
        m = spec["cls"](c).eval().float()
        m.load_state_dict(model.state_dict())
        return (m(ids).logits[0] - ref).abs().max().item()

    def without_buffers(**_) -> float:
        m = copy.deepcopy(model)
        for name, b in m.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.zero_()
        return (m(ids).logits[0] - ref).abs().max().item()

    if spec["cls"] is DeepseekV3ForCausalLM:
        assert model.model.rotary_emb.attention_scaling == 1.0  # mscale == mscale_all_dim
        assert variant(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}) > 0.1, "YaRN is dead"
        assert variant(topk_group=cfg.n_group) > 0.1, "group-limited routing is dead"
        assert variant(norm_topk_prob=False) > 0.1, "top-k normalization is dead"
        assert without_buffers() > 0.1, "the selection bias is dead"
    if "routed_scaling_factor" in cfg.to_dict() and cfg.routed_scaling_factor != 1.0:
        assert variant(routed_scaling_factor=1.0) > 0.1, "the routed scaling factor is dead"
    if spec["arch"] in ("qwen3moe",):
        assert variant(norm_topk_prob=False) > 0.1


def greedy(model, ids: list[int], probe: RouterProbe, spec) -> tuple[list[int], float, float]:
    """16 greedy tokens (full recompute each step), with the smallest logit and routing margins met."""
    seq = list(ids)
    min_logit, min_route = float("inf"), float("inf")
    for _ in range(GREEDY_TOKENS):
        logits = model(torch.tensor([seq])).logits[0, -1]
        min_route = min(min_route, probe.margin(spec))
        min_logit = min(min_logit, margins(logits).item())
        seq.append(int(logits.argmax()))
    return seq[len(ids):], min_logit, min_route


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="tiny MoE / DeepSeek reference fixtures")
    ap.add_argument("--only", help="regenerate this fixture only")
    only = ap.parse_args().only
    torch.set_grad_enabled(False)
    for spec in configs():
        if only and spec["name"] != only:
            continue
        name, arch, cfg = spec["name"], spec["arch"], spec["cfg"]
        cfg._attn_implementation = "eager"
        torch.manual_seed(spec["seed"])
        model = spec["cls"](cfg).eval().float()
        randomize(model, spec["seed"], spec["std"])
        q8 = Q8Simulation(model, spec)
        probe = RouterProbe(model)
        assert probe.margin(spec) == float("inf")

        rng = np.random.default_rng(2000 + spec["seed"])
        cases = []
        tried = 0
        while len(cases) < len(SEQ_LEN):
            tried += 1
            assert tried < 20000, f"{name}: no input without near ties"
            n = SEQ_LEN[len(cases)]
            ids = rng.integers(0, cfg.vocab_size, size=n).tolist()
            logits = model(torch.tensor([ids])).logits[0].float()
            route = probe.margin(spec)
            m = margins(logits)
            if m.min().item() < MIN_MARGIN or route < MIN_ROUTE_MARGIN:
                continue
            q8_logits, q8_route = q8(ids)
            qm = margins(q8_logits).min().item()
            if qm < MIN_MARGIN or q8_route < MIN_Q8_ROUTE_MARGIN:
                continue
            case = {
                "ids": ids,
                "argmax": logits.argmax(-1).tolist(),
                "min_margin": round(m.min().item(), 6),
                "min_route_margin": round(route, 6),
                "q8_min_margin": round(qm, 6),
                "q8_min_route_margin": round(q8_route, 6),
                "logits": [[round(v, 6) for v in row] for row in logits.tolist()],
            }
            if not cases:  # the first case also carries the greedy continuation
                tokens, gl, gr = greedy(model, ids, probe, spec)
                if gl < MIN_MARGIN or gr < MIN_ROUTE_MARGIN:
                    continue
                case["greedy"] = {"tokens": tokens, "min_margin": round(gl, 6), "min_route_margin": round(gr, 6)}
            cases.append(case)
        check_features(spec, model, cases[0]["ids"], torch.tensor(cases[0]["logits"]))

        tensors = gguf_tensors(model, spec)
        files = {}
        for wtype, suffix in ((GGMLQuantizationType.F32, ""), (GGMLQuantizationType.Q8_0, "-q8_0")):
            path = OUT / f"{name}{suffix}.gguf"
            write_gguf(path, spec, tensors, wtype)
            files[wtype.name] = path.name
        keep = {
            "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_parameters", "n_routed_experts", "num_experts",
            "num_local_experts", "n_shared_experts", "shared_expert_intermediate_size", "num_experts_per_tok",
            "n_group", "topk_group", "first_k_dense_replace", "norm_topk_prob", "routed_scaling_factor",
            "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "topk_method",
        }
        fixture = {
            "name": name,
            "arch": arch,
            "hf_class": spec["cls"].__name__,
            "n_vocab": cfg.vocab_size,
            "gguf": files,
            "config": {k: v for k, v in cfg.to_dict().items() if k in keep},
            "seed": spec["seed"],
            "weight_std": spec["std"],
            "min_margin": MIN_MARGIN,
            "min_route_margin": MIN_ROUTE_MARGIN,
            "min_q8_route_margin": MIN_Q8_ROUTE_MARGIN,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "cases": cases,
        }
        (OUT / f"{name}.json").write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
        print(
            f"{name}: {', '.join(files.values())}; {sum(p.numel() for p in model.parameters())} params; "
            f"min margin {min(c['min_margin'] for c in cases):.4f}; min route margin "
            f"{min(c['min_route_margin'] for c in cases):.4f}; {tried} inputs tried"
        )


if __name__ == "__main__":
    main()
