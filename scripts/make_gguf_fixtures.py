#!/usr/bin/env python3
"""Generate Banyan's GGUF fixtures (Tests/Fixtures/gguf/).

1. ``dequant.gguf``: for every ggml type Banyan reads (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
   Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) a tensor ``<TYPE>`` of shape [512, 2] (ggml order) and a
   float32 tensor ``<TYPE>.ref`` holding gguf-py's ``gguf.quants.dequantize`` of it. Block
   bytes are random (every bit pattern of the quants, scales and high bits), with the half
   float scales (d, m, dmin) overwritten by finite values; Q4_0..Q8_0 also get blocks from
   ``gguf.quants.quantize`` of Gaussian data (including an all-zero block).

2. Tiny random models, one GGUF each, plus ``<name>.reference.json`` computed by
   transformers loading the GGUF back (``from_pretrained(dir, gguf_file=..., dtype=float32)``,
   which dequantizes with gguf-py, reverses the Q/K permutation of llama files and runs in
   float32 with eager attention). The weights come from a seeded Hugging Face model (the
   init of scripts/make_fixtures.py), are permuted like llama.cpp's converter
   (``LlamaModel.permute``) for ``llama``, and quantized with gguf-py. K-quant tensors cannot
   be quantized by gguf-py, so the ``llama-kquants`` model's linear layers are random blocks
   (as in 1) scaled to the other fixtures' weight spread.

reference.json has the format of scripts/make_fixtures.py (dtype "float32": the weights
transformers computes with are float32 after dequantization).

3. ``Tests/Fixtures/smollm2_gguf_reference.json`` from the real SmolLM2-135M-Instruct Q4_1 file
   (``--smollm2``, default under /work/shared; skipped when absent): see ``make_smollm2``.

Usage: python scripts/make_gguf_fixtures.py [--out Tests/Fixtures/gguf] [--only NAME ...] [--smollm2 FILE]
Deterministic: re-running with the pinned versions (scripts/requirements.txt) gives identical files.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import LINEAR_STD, check, compute_reference, init_weights, logprobs_of, write_json  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "Tests" / "Fixtures" / "gguf"

SEQ_LEN, PROMPT_LEN, GREEDY_STEPS = 24, 4, 8
MIN_GREEDY_MARGIN = 0.01
BOS, EOS = 1, 2

QTYPES = {t.name: t for t in [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K]}
# Byte offsets of the half-float scale fields in each block (ggml-common.h).
HALF_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}

BASE = dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=512)
FIXTURES = [
    dict(name="llama-f32", arch="llama", qtype="F32", seed=201, tied=True),
    dict(name="llama-f16", arch="llama", qtype="F16", seed=202, tied=True),
    dict(name="llama-q8_0", arch="llama", qtype="Q8_0", seed=203),
    dict(name="llama-q4_0", arch="llama", qtype="Q4_0", seed=204),
    # Like SmolLM2's file: Q4_1 linear layers, Q8_0 token_embd, tied embeddings.
    dict(name="llama-q4_1", arch="llama", qtype="Q4_1", embed_qtype="Q8_0", seed=205, tied=True),
    dict(name="llama-q5_0", arch="llama", qtype="Q5_0", seed=206),
    dict(name="llama-q5_1", arch="llama", qtype="Q5_1", seed=207),
    dict(name="qwen2-q8_0", arch="qwen2", qtype="Q8_0", seed=208, tied=True),
    # Qwen3 as llama.cpp's converter writes it: blk.N.attn_q_norm / attn_k_norm (F32, head_dim entries,
    # 1 + 0.1 N(0,1)), qwen3.attention.key_length / value_length = head_dim 32 (!= 64 / 4 heads) and no
    # rope.dimension_count, no biases, no Q/K permutation; eps 1e-6, theta 1e6, tied (like Qwen3-0.6B).
    # The reference is the Hugging Face model with the GGUF's dequantized weights, saved and loaded back:
    # transformers' GGUF loader does not read qwen3.attention.key_length (it would take head_dim 128);
    # it is checked to agree when given head_dim explicitly.
    dict(name="qwen3-q8_0", arch="qwen3", qtype="Q8_0", seed=224, tied=True, eps=1e-6,
         shape=dict(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=32, ffn=128, vocab=512)),
    # llama3 RoPE scaling as llama.cpp's converter writes it: a rope_freqs.weight tensor of factors
    # (head_dim 16, theta 5e5, factor 8, low 1, high 4, original 64: all three regimes). The
    # reference is the Hugging Face model with that rope_scaling and the GGUF's dequantized weights,
    # saved and loaded back (transformers' GGUF loader does not read rope_freqs.weight).
    dict(name="llama-rope-freqs", arch="llama", qtype="Q8_0", seed=210, tied=True,
         shape=dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=128),
         rope={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64, "rope_theta": 500000.0}),
    # K-quants need rows of 256: hidden and ffn 256, one layer, a small vocabulary (its token list is
    # cut short: this file is about the weights); a different K type per matrix.
    dict(name="llama-kquants", arch="llama", qtype="K", embed_qtype="Q8_0", seed=209,
         shape=dict(hidden=256, layers=1, heads=4, kv_heads=2, ffn=256, vocab=128),
         ktypes={"attn_q": "Q4_K", "attn_k": "Q5_K", "attn_v": "Q6_K", "attn_output": "Q4_K",
                 "ffn_gate": "Q5_K", "ffn_up": "Q4_K", "ffn_down": "Q6_K", "output": "Q6_K"}),
]


# --------------------------------------------------------------------------- #
# random blocks
# --------------------------------------------------------------------------- #

def random_blocks(qtype: str, n_elements: int, rng: np.random.Generator) -> np.ndarray:
    """Random block bytes for `n_elements`, half-float scales finite and positive-ish."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[QTYPES[qtype]]
    n_blocks = n_elements // block_size
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in HALF_FIELDS[qtype]:
        halves = rng.uniform(0.25, 2.0, size=n_blocks).astype(np.float16)
        if qtype == "Q6_K":  # its scale is signed int8 elsewhere; d may be either sign too
            halves *= np.where(rng.random(n_blocks) < 0.5, -1, 1).astype(np.float16)
        raw[:, off:off + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def scale_blocks(qtype: str, raw: np.ndarray, target_std: float) -> np.ndarray:
    """Rescales the half-float fields so the dequantized values have std `target_std` (values are
    linear in d, m and dmin)."""
    t = QTYPES[qtype]
    _, type_size = gguf.GGML_QUANT_SIZES[t]
    std = float(gguf.quants.dequantize(raw, t).std())
    blocks = raw.reshape(-1, type_size).copy()
    for off in HALF_FIELDS[qtype]:
        h = blocks[:, off:off + 2].copy().view(np.float16).astype(np.float32) * (target_std / std)
        blocks[:, off:off + 2] = h.astype(np.float16).view(np.uint8)
    return blocks.reshape(-1)


def make_dequant(out: Path) -> None:
    rng = np.random.default_rng(300)
    w = gguf.GGUFWriter(str(out), arch="dequant-test")
    rows, cols = 2, 512
    for name, t in QTYPES.items():
        n = rows * cols
        if name == "F32":
            data = rng.standard_normal(n).astype(np.float32)
        elif name == "F16":
            data = rng.standard_normal(n).astype(np.float16)
        elif name == "BF16":
            data = gguf.quants.quantize(rng.standard_normal(n).astype(np.float32), t)
        else:
            data = random_blocks(name, n, rng)
            if name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
                # Second row: real quantization of Gaussian data, first block all zeros.
                x = rng.standard_normal(cols).astype(np.float32)
                x[:32] = 0
                q = gguf.quants.quantize(x.reshape(1, cols), t).reshape(-1)
                data[len(data) // 2:] = q
        data = data.reshape(rows, -1)
        ref = gguf.quants.dequantize(data, t).astype(np.float32).reshape(rows, cols)
        check(np.isfinite(ref).all(), f"{name}: non-finite reference")
        w.add_tensor(name, data, raw_dtype=t)
        w.add_tensor(name + ".ref", ref)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# --------------------------------------------------------------------------- #
# models
# --------------------------------------------------------------------------- #

def tokenizer_vocab(vocab: int) -> tuple[list[str], list[int], list[str]]:
    """A small gpt2-style vocabulary: 3 control tokens, the 256 byte-level characters, then merges
    of two lowercase letters, cut to `vocab` ids."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_chars = [chr(c) for _, c in sorted(zip(bs, cs))]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + byte_chars
    types = [3, 3, 3] + [1] * 256
    merges = []
    letters = "etaoinshrdlucmfw"
    for a in letters:
        for b in letters:
            if len(tokens) >= vocab:
                break
            merges.append(f"{a} {b}")
            tokens.append(a + b)
            types.append(1)
    while len(tokens) < vocab:
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(4)  # USER_DEFINED, as llama.cpp's converter pads
    return tokens[:vocab], types[:vocab], merges


def hf_model(fx: dict, shape: dict):
    cfg = dict(hidden_size=shape["hidden"], num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
               num_key_value_heads=shape["kv_heads"], intermediate_size=shape["ffn"], vocab_size=shape["vocab"],
               max_position_embeddings=256, rms_norm_eps=fx.get("eps", 1e-5), bos_token_id=BOS, eos_token_id=EOS,
               tie_word_embeddings=fx.get("tied", False))
    if fx["arch"] == "llama":
        rope = fx.get("rope", {"rope_type": "default", "rope_theta": 10000.0})
        model = LlamaForCausalLM(LlamaConfig(**cfg, rope_parameters=rope))
    elif fx["arch"] == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**cfg, head_dim=shape["head_dim"], attention_bias=False,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**cfg, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}))
    init_weights(model, fx["seed"])  # scripts/make_fixtures.py's scaled-up init
    return model


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: interleave each head's rotary halves."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def make_model(fx: dict, out_dir: Path) -> dict:
    shape = fx.get("shape", BASE)
    arch, name = fx["arch"], fx["name"]
    model = hf_model(fx, shape)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(fx["seed"])

    path = out_dir / f"{name}.gguf"
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_name(name)
    w.add_context_length(256)
    w.add_embedding_length(shape["hidden"])
    w.add_block_count(shape["layers"])
    w.add_feed_forward_length(shape["ffn"])
    w.add_head_count(shape["heads"])
    w.add_head_count_kv(shape["kv_heads"])
    if arch == "qwen3":  # the converter writes head_dim as key/value length, and no rope.dimension_count
        w.add_key_length(shape["head_dim"])
        w.add_value_length(shape["head_dim"])
    else:
        w.add_rope_dimension_count(shape["hidden"] // shape["heads"])
    w.add_rope_freq_base(fx["rope"]["rope_theta"] if "rope" in fx else 10000.0 if arch == "llama" else 1000000.0)
    w.add_layer_norm_rms_eps(fx.get("eps", 1e-5))
    w.add_vocab_size(shape["vocab"])
    tokens, types, merges = tokenizer_vocab(shape["vocab"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_add_bos_token(False)

    def put(gname: str, x: np.ndarray, qtype: str):
        t = QTYPES[qtype]
        if qtype == "F32":
            w.add_tensor(gname, x.astype(np.float32))
        elif qtype == "F16":
            w.add_tensor(gname, x.astype(np.float16))
        else:
            w.add_tensor(gname, gguf.quants.quantize(x.astype(np.float32), t), raw_dtype=t)

    def linear(gname: str, hf: str, n_head: int | None = None):
        x = sd[hf]
        if arch == "llama" and n_head:
            x = permute(x, n_head)
        if fx["qtype"] == "K":
            q = fx["ktypes"][gname.split(".")[-2]]
            raw = scale_blocks(q, random_blocks(q, x.size, rng), LINEAR_STD)
            w.add_tensor(gname, raw.reshape(x.shape[0], -1), raw_dtype=QTYPES[q])
        else:
            put(gname, x, fx["qtype"])

    H, KVH = shape["heads"], shape["kv_heads"]
    put("token_embd.weight", sd["model.embed_tokens.weight"], fx.get("embed_qtype", fx["qtype"]))
    for i in range(shape["layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        put(b + "attn_norm.weight", sd[p + "input_layernorm.weight"], "F32")
        linear(b + "attn_q.weight", p + "self_attn.q_proj.weight", H)
        linear(b + "attn_k.weight", p + "self_attn.k_proj.weight", KVH)
        linear(b + "attn_v.weight", p + "self_attn.v_proj.weight")
        linear(b + "attn_output.weight", p + "self_attn.o_proj.weight")
        if arch == "qwen3":
            put(b + "attn_q_norm.weight", sd[p + "self_attn.q_norm.weight"], "F32")
            put(b + "attn_k_norm.weight", sd[p + "self_attn.k_norm.weight"], "F32")
        if arch == "qwen2":
            for s in "qkv":
                put(b + f"attn_{s}.bias", sd[p + f"self_attn.{s}_proj.bias"], "F32")
        put(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"], "F32")
        linear(b + "ffn_gate.weight", p + "mlp.gate_proj.weight")
        linear(b + "ffn_up.weight", p + "mlp.up_proj.weight")
        linear(b + "ffn_down.weight", p + "mlp.down_proj.weight")
    put("output_norm.weight", sd["model.norm.weight"], "F32")
    if "rope" in fx:
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(fx["rope"], shape["hidden"] // shape["heads"]))
    if not fx.get("tied"):
        linear("output.weight", "lm_head.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    own_ref = "rope" in fx or arch == "qwen3"  # transformers' GGUF loader misses rope_freqs / key_length
    ref_model = hf_with_gguf_weights(model, path, shape, permuted=arch == "llama") if own_ref else load_gguf(path)
    check(ref_model.config.model_type == arch, f"{name}: model_type {ref_model.config.model_type}")
    check(ref_model.config.tie_word_embeddings == fx.get("tied", False), f"{name}: tie_word_embeddings")
    rng_ids = np.random.RandomState(fx["seed"])
    input_ids = [BOS] + [int(x) for x in rng_ids.randint(3, shape["vocab"], size=SEQ_LEN - 1)]
    ref = compute_reference(ref_model, input_ids, input_ids[:PROMPT_LEN], GREEDY_STEPS)
    if "rope" in fx:
        plain = load_gguf(path)  # the same weights without the factors
        d = (logprobs_of(plain, input_ids) - logprobs_of(ref_model, input_ids)).abs().max().item()
        check(d > 1e-3, f"{name}: rope_freqs.weight has no effect ({d})")
        print(f"{name}: factors move logprobs by up to {d:.4f}")
    if arch == "qwen3":
        check_qwen3_gguf(name, path, shape, ref_model, input_ids)
    check(min(ref["greedy"]["margins"]) > MIN_GREEDY_MARGIN,
          f"{name}: greedy top-2 margin {min(ref['greedy']['margins'])} too small; pick another seed")
    out = {"model_type": arch, "dtype": "float32", "gguf_types": gguf_types(path), **ref}
    write_json(out_dir / f"{name}.reference.json", out)
    return out


def llama3_rope_factors(rope: dict, head_dim: int) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors: per inverse frequency, 1 (short
    wavelengths), `factor` (long ones) or the smoothed blend's reciprocal, as float32."""
    freqs = 1.0 / (rope["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    old_len, factor = rope["original_max_position_embeddings"], rope["factor"]
    low, high = rope["low_freq_factor"], rope["high_freq_factor"]
    out = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < old_len / high:
            out.append(1.0)
        elif wavelen > old_len / low:
            out.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    check(1.0 in out and factor in out and len(set(out)) > 2, "llama3 factors cover all three regimes")
    return np.array(out, dtype=np.float32)


def hf_with_gguf_weights(model, path: Path, shape: dict, permuted: bool = True):
    """`model` (its config) with the GGUF's weights dequantized (and Q/K unpermuted when `permuted`:
    llama files), saved and loaded back."""
    names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    per_layer = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
                 "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}
    sd = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        if t.name == "rope_freqs.weight":
            continue
        x = gguf.quants.dequantize(t.data, t.tensor_type).reshape(list(reversed([int(n) for n in t.shape])))
        stem, _ = t.name.rsplit(".", 1)
        if stem.startswith("blk."):
            _, i, role = stem.split(".", 2)
            hf = f"model.layers.{i}.{per_layer[role]}"
            if permuted and role in ("attn_q", "attn_k"):  # invert permute(): swap the axes back
                n_head = shape["heads"] if role == "attn_q" else shape["kv_heads"]
                x = x.reshape(n_head, x.shape[0] // n_head // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)
        else:
            hf = names[stem]
        sd[hf + ".weight"] = torch.from_numpy(np.array(x, dtype=np.float32))  # a writable copy
    missing, unexpected = model.load_state_dict(sd, strict=False)
    check(not unexpected and all(k == "lm_head.weight" for k in missing), f"state dict: {missing} {unexpected}")
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        return AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()


@torch.no_grad()
def check_qwen3_gguf(name: str, path: Path, shape: dict, ref_model, input_ids: list[int]) -> None:
    """The file has per-layer q/k norms of head_dim entries that are not all ones and matter (the
    reference with them set to ones moves by > 1e-2), and transformers' own GGUF loader, given the
    head_dim it does not read from the file, computes the same logprobs as the reference."""
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    for i in range(shape["layers"]):
        for role in ("attn_q_norm", "attn_k_norm"):
            t = tensors[f"blk.{i}.{role}.weight"]
            check([int(n) for n in t.shape] == [shape["head_dim"]] and t.tensor_type == T.F32, f"{name}: {t.name}")
            check(np.abs(np.asarray(t.data) - 1).max() > 0.05, f"{name}: {t.name} is all ones")
    check(not any(n.endswith(".bias") for n in tensors), f"{name}: unexpected biases")
    lp = logprobs_of(ref_model, input_ids)
    ones = copy.deepcopy(ref_model)
    for layer in ones.model.layers:
        layer.self_attn.q_norm.weight.fill_(1.0)
        layer.self_attn.k_norm.weight.fill_(1.0)
    d = (logprobs_of(ones, input_ids) - lp).abs().max().item()
    check(d > 1e-2, f"{name}: q/k norm weights barely matter ({d})")
    print(f"{name}: q/k norm weights set to ones move logprobs by up to {d:.4f}")
    loader = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                  attn_implementation="eager", head_dim=shape["head_dim"]).eval()
    d = (logprobs_of(loader, input_ids) - lp).abs().max().item()
    check(d < 1e-5, f"{name}: transformers' GGUF loader (head_dim given) differs from the reference by {d}")
    print(f"{name}: transformers' GGUF loader with head_dim={shape['head_dim']} agrees to {d:.1e}")


def gguf_types(path: Path) -> dict:
    counts: dict[str, int] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return counts


def load_gguf(path: Path):
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                attn_implementation="eager").eval()


SMOLLM2 = Path("/work/shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
SMOLLM2_TEXT = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is"
SMOLLM2_CHAT = "<|im_start|>user\nWhat is the capital of France? Answer in one sentence.<|im_end|>\n<|im_start|>assistant\n"
SMOLLM2_TOP = 16


def make_smollm2(path: Path, out_file: Path) -> dict:
    """The real SmolLM2-135M-Instruct Q4_1 file through transformers' GGUF loader: token ids of a
    text (from transformers' tokenizer built from the GGUF metadata), its teacher-forced logprobs,
    the top tokens at the last position (the full 49152-entry row would be ~1 MB), and a greedy
    chat answer."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = load_gguf(path)
    ids = tok(SMOLLM2_TEXT, add_special_tokens=False)["input_ids"]
    lp = logprobs_of(model, ids)
    top = torch.topk(lp[-1], SMOLLM2_TOP)
    chat = tok(SMOLLM2_CHAT, add_special_tokens=False)["input_ids"]
    greedy = compute_reference(model, chat, chat, 10)["greedy"]
    out = {
        "text": SMOLLM2_TEXT, "input_ids": ids,
        "target_logprobs": [float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)],
        "last_top": {"ids": [int(i) for i in top.indices], "logprobs": [float(v) for v in top.values]},
        "chat": SMOLLM2_CHAT, "greedy": greedy, "greedy_text": tok.decode(greedy["tokens"]),
        "tokenizer_cases": smollm2_tokenizer_cases(path),
    }
    write_json(out_file, out)
    return out


# --------------------------------------------------------------------------- #
# tokenizers
# --------------------------------------------------------------------------- #

from tokenizer_corpus import GPT2_TEXTS, SMOLLM2_TEXTS, SPM_TEXTS  # noqa: E402  (shared with the other fixture script)


def spm_vocab_gguf(path: Path) -> None:
    """A tokenizer-only GGUF with a small SentencePiece vocabulary: <unk>, <s>, </s>, 256 byte
    tokens, characters and a few merged pieces with descending scores, and no merges (they are
    derived from the scores, as for older llama files)."""
    pieces = ["\u2581t", "he", "\u2581the", "\u2581a", "in", "\u2581o", "nce", "ce", "\u2581once", "up", "on", "\u2581up",
              "\u2581upon", "ti", "me", "\u2581ti", "\u2581time", "\u2581is", "is", "ow", "\u2581n", "\u2581now", "ll", "\u2581h",
              "\u2581he", "llo", "\u2581hello", "or", "\u2581w", "\u2581wor", "ld", "\u2581world", "\u2581\u2581"]
    chars = sorted(set("abcdefghijklmnopqrstuvwxyzO.\u2581"))
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0, 0.0, 0.0] + [0.0] * 256
    for i, p in enumerate(pieces):
        tokens.append(p); types.append(1); scores.append(-float(i))
    for i, c in enumerate(chars):
        tokens.append(c); types.append(1); scores.append(-100.0 - i)
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_scores(scores)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tokenizer_cases(tok, texts: list[str], add_special_tokens: bool) -> list[dict]:
    out = []
    for t in texts:
        ids = tok(t, add_special_tokens=add_special_tokens)["input_ids"]
        out.append({"text": t, "ids": ids, "decoded": tok.decode(ids)})
    return out


def make_tokenizers(out_dir: Path) -> dict:
    """`tokenizers.json`: ids (and decoded text) from transformers' GGUF tokenizer for the gpt2-style
    vocabulary of llama-q4_1.gguf and the SentencePiece vocabulary of spm-vocab.gguf."""
    from transformers import AutoTokenizer
    spm_vocab_gguf(out_dir / "spm-vocab.gguf")
    gpt2 = AutoTokenizer.from_pretrained(str(out_dir), gguf_file="llama-q4_1.gguf")
    spm = AutoTokenizer.from_pretrained(str(out_dir), gguf_file="spm-vocab.gguf")
    # transformers 5 puts "▁" before the text with Metaspace(prepend_scheme="first"), which skips it
    # when the text already starts with a space; llama.cpp (add_space_prefix) and Llama 2's
    # tokenizer.json (a Prepend normalizer) always add it. The reference follows llama.cpp: the same
    # vocabulary and merges with Llama 2's normalizer, checked against transformers elsewhere.
    from tokenizers import normalizers
    legacy = copy.deepcopy(spm)
    legacy.backend_tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    legacy.backend_tokenizer.pre_tokenizer = None
    for t in SPM_TEXTS:
        if not t.startswith(" "):
            check(legacy(t)["input_ids"] == spm(t)["input_ids"], f"SentencePiece normalizers differ on {t!r}")
    out = {
        "llama-q4_1.gguf": tokenizer_cases(gpt2, GPT2_TEXTS, True),
        "spm-vocab.gguf": tokenizer_cases(legacy, SPM_TEXTS, True),
    }
    check(out["spm-vocab.gguf"][0]["ids"][0] == 1, "SentencePiece vocabulary adds BOS")
    with open(out_dir / "tokenizers.json", "w") as f:
        json.dump(out, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    return out


def smollm2_tokenizer_cases(path: Path) -> list[dict]:
    """SmolLM2's tokenizer as its tokenizer.json builds it (each digit alone, then GPT-2's byte-level
    split; llama.cpp's `smollm` pre-tokenizer does the same), from the GGUF's tokens and merges.
    transformers' GGUF tokenizer has no digit split for `smollm`, so it is only checked to agree on
    the texts without digits."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer
    r = gguf.GGUFReader(str(path))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ")) for m in r.fields["tokenizer.ggml.merges"].contents()]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types) if ty == 3])
    hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    cases = []
    for t in SMOLLM2_TEXTS:
        ids = tok.encode(t).ids
        if not any(c.isdigit() for c in t):
            check(ids == hf(t, add_special_tokens=True)["input_ids"], f"smollm2 tokenizers vs transformers on {t!r}")
        cases.append({"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", help="only these fixture names (also: dequant, tokenizers, smollm2)")
    ap.add_argument("--smollm2", type=Path, default=SMOLLM2, help="SmolLM2-135M-Instruct.Q4_1.gguf (skipped when absent)")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.only or "dequant" in args.only:
        make_dequant(args.out / "dequant.gguf")
        print("dequant.gguf", flush=True)
    for fx in FIXTURES:
        if args.only and fx["name"] not in args.only:
            continue
        ref = make_model(fx, args.out)
        print(f"{fx['name']}: {ref['gguf_types']}, greedy {ref['greedy']['tokens']}, "
              f"min margin {min(ref['greedy']['margins']):.3f}", flush=True)
    if not args.only or "tokenizers" in args.only:
        make_tokenizers(args.out)
        print("tokenizers.json", flush=True)
    if (not args.only or "smollm2" in args.only) and args.smollm2.exists():
        ref = make_smollm2(args.smollm2, args.out.parent / "smollm2_gguf_reference.json")
        print(f"smollm2: {len(ref['input_ids'])} tokens, top {ref['last_top']['ids'][:3]}, greedy {ref['greedy_text']!r}")
    total = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"gguf/ total size: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
