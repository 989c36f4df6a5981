#!/usr/bin/env python3
"""Banyan vs llama.cpp on the same machine, in one run (issue 6's peer benchmark).

Both engines run a random-weight model with the exact shape of TinyLlama-1.1B in bf16:
Banyan its `synthetic:tinyllama-1.1b`, llama.cpp a GGUF this script writes with the `gguf`
package (same shapes, same dtype, N(0, 0.02) weights; the values differ, which does not change
the speed of dense kernels). With `--type q8_0|q4_k_m|...` llama.cpp's own quantizer turns that
file into the type, and both engines load the same quantized GGUF. Measured, in this order,
each engine alternating:

  - batch-1 decode (tokens/s),
  - prefill of 512 tokens (tokens/s),
  - shared-prefix decode: one 2048-token prompt, then B samples decoding together
    (B = 1, 16, 64; tokens/s over all samples). llama.cpp drives this with its low-level API the
    way its `batched` example does: the prompt is decoded into sequence 0, copied to sequences
    1..B-1 with `llama_memory_seq_cp` (cells are shared, not duplicated, in the unified KV
    cache), then every step is one `llama_decode` of B tokens. Banyan runs
    `banyan bench decode --prefill-once` (hydragen attention, its default).

Set-up (not part of `swift test` or CI; llama-cpp-python ships only as a source package here, so
pip builds llama.cpp with CMake, about 20 minutes on 2 cores):

    python3 -m venv /tmp/peer && /tmp/peer/bin/pip install cmake ninja numpy gguf
    CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/peer/bin/pip install llama-cpp-python
    swift build -c release
    /tmp/peer/bin/python scripts/llamacpp_peer.py --threads 2 --out /tmp/peer.json
    /tmp/peer/bin/python scripts/llamacpp_peer.py --threads 2 --type q4_k_m --out /tmp/peer-q4_k_m.json

Prints a table of both engines' numbers and the Banyan/llama.cpp ratios; --out writes them as JSON.
"""

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

# The shapes of Banyan's synthetic:NAME models (Sources/BanyanModel/Synthetic.swift).
SHAPES = {
    "tinyllama-1.1b": dict(hidden=2048, layers=22, heads=32, kv_heads=4, intermediate=5632, vocab=32000,
                           rope_theta=10000.0, eps=1e-5, tied=False, context=2048),
    "smollm2-135m": dict(hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536, vocab=49152,
                         rope_theta=100000.0, eps=1e-5, tied=True, context=8192),
}
SHAPE = SHAPES["tinyllama-1.1b"]  # this script's own benchmark


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, round to nearest even (what torch and Banyan's loader use)."""
    u = x.astype(np.float32).view(np.uint32)
    rounded = u + 0x7FFF + ((u >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def write_gguf(path: str, context: int, seed: int = 0, shape: str = "tinyllama-1.1b") -> None:
    """A bf16 GGUF with the exact shape of synthetic:SHAPE (also used by scripts/bench_serve.py)."""
    import gguf

    s = SHAPES[shape]
    head_dim = s["hidden"] // s["heads"]
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(f"synthetic-{shape}")
    w.add_context_length(context)
    w.add_embedding_length(s["hidden"])
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(s["intermediate"])
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_rope_freq_base(s["rope_theta"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    # A placeholder SentencePiece vocabulary: the benchmark feeds token ids, never text.
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"t{i}" for i in range(s["vocab"] - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (s["vocab"] - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * s["vocab"])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def matrix(name, rows, cols):
        w.add_tensor(name, bf16_bits(rng.standard_normal((rows, cols), dtype=np.float32) * 0.02),
                     raw_shape=(rows, cols), raw_dtype=gguf.GGMLQuantizationType.BF16)

    def norm(name):
        w.add_tensor(name, np.ones(s["hidden"], dtype=np.float32))

    kv_dim = s["kv_heads"] * head_dim
    matrix("token_embd.weight", s["vocab"], s["hidden"])
    for i in range(s["layers"]):
        norm(f"blk.{i}.attn_norm.weight")
        matrix(f"blk.{i}.attn_q.weight", s["hidden"], s["hidden"])
        matrix(f"blk.{i}.attn_k.weight", kv_dim, s["hidden"])
        matrix(f"blk.{i}.attn_v.weight", kv_dim, s["hidden"])
        matrix(f"blk.{i}.attn_output.weight", s["hidden"], s["hidden"])
        norm(f"blk.{i}.ffn_norm.weight")
        matrix(f"blk.{i}.ffn_gate.weight", s["intermediate"], s["hidden"])
        matrix(f"blk.{i}.ffn_up.weight", s["intermediate"], s["hidden"])
        matrix(f"blk.{i}.ffn_down.weight", s["hidden"], s["intermediate"])
    norm("output_norm.weight")
    if not s["tied"]:  # tied: llama.cpp reuses token_embd as the output matrix
        matrix("output.weight", s["vocab"], s["hidden"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


class LlamaCpp:
    """The llama.cpp C API through llama-cpp-python's ctypes bindings (no high-level wrapper)."""

    def __init__(self, gguf_path: str, threads: int, n_ctx: int, n_seq: int, n_batch: int = 512):
        import llama_cpp as L

        self.L = L
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(gguf_path.encode(), mp)
        if not self.model:
            raise SystemExit(f"llama.cpp could not load {gguf_path}")
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = n_seq
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.kv_unified = True  # sequences copied from the prompt share its cells
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise SystemExit("llama.cpp could not create a context")
        self.mem = L.llama_get_memory(self.ctx)
        self.n_batch = n_batch
        self.batch = L.llama_batch_init(max(n_batch, n_seq), 0, 1)

    def clear(self):
        self.L.llama_memory_clear(self.mem, True)

    def decode(self, items):
        """items: (token, pos, seq, want_logits) tuples, at most n_batch of them."""
        b = self.batch
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = 1 if logits else 0
        b.n_tokens = len(items)
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise SystemExit(f"llama_decode returned {rc} (KV cache full?)")
        self.L.llama_synchronize(self.ctx)

    def prefill(self, tokens, seq=0, start=0):
        for c in range(0, len(tokens), self.n_batch):
            chunk = tokens[c:c + self.n_batch]
            last = c + len(chunk) == len(tokens)
            self.decode([(t, start + c + i, seq, last and i == len(chunk) - 1) for i, t in enumerate(chunk)])

    def copy_sequence(self, src, dst):
        self.L.llama_memory_seq_cp(self.mem, src, dst, -1, -1)


# llama.cpp's file types for --type (llama.h: LLAMA_FTYPE_MOSTLY_*).
FTYPES = {"q8_0": 7, "q4_k_m": 15, "q4_0": 2, "q6_k": 18}


def quantize_gguf(src: str, dst: str, ftype: str, threads: int) -> None:
    """llama.cpp's own quantizer (llama_model_quantize) on the bf16 file: the mixes users download
    (Q4_K_M keeps attn_v/ffn_down of some layers and the output in Q6_K)."""
    import llama_cpp as L

    params = L.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = threads
    rc = L.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({src} -> {ftype}) returned {rc}")


def tokens(n, seed):
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(3, SHAPE["vocab"], n)]


def llamacpp_measure(args, batches):
    prefix = args.prefix
    n_ctx = prefix + max(batches) * args.gen + 64
    n_seq = max(batches)
    eng = LlamaCpp(args.gguf, args.threads, n_ctx=max(n_ctx, 1024), n_seq=n_seq)
    out = {"decode_batch1": [], "prefill512": [], "shared": {b: [] for b in batches}}
    for _ in range(args.repeats):
        # batch-1 decode after a 16-token prompt
        eng.clear()
        eng.prefill(tokens(16, 1))
        t0 = time.perf_counter()
        for i in range(args.decode_steps):
            eng.decode([(tokens(1, 100 + i)[0], 16 + i, 0, True)])
        out["decode_batch1"].append(args.decode_steps / (time.perf_counter() - t0))
        # prefill 512 tokens in one batch
        eng.clear()
        t0 = time.perf_counter()
        eng.prefill(tokens(512, 2))
        out["prefill512"].append(512 / (time.perf_counter() - t0))
        # shared prefix: prefill once, copy to B sequences, decode B tokens per step
        eng.clear()
        eng.prefill(tokens(prefix, 3))
        for b in batches:
            for s in range(1, b):
                eng.copy_sequence(0, s)
            first = tokens(b, 4)
            t0 = time.perf_counter()
            for step in range(args.gen):
                eng.decode([(first[s], prefix + step, s, True) for s in range(b)])
            out["shared"][b].append(b * args.gen / (time.perf_counter() - t0))
            for s in range(b):  # drop the samples' own tokens, keep the prompt
                eng.L.llama_memory_seq_rm(eng.mem, s, prefix, -1)
            for s in range(1, b):
                eng.L.llama_memory_seq_rm(eng.mem, s, -1, -1)
    return out


def banyan_json(binary, argv):
    r = subprocess.run([binary] + argv + ["--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{binary} {' '.join(argv)} failed:\n{r.stderr}")
    return json.loads(r.stdout)


def banyan_measure(args, batches):
    out = {"decode_batch1": [], "prefill512": [], "shared": {b: [] for b in batches}}
    for _ in range(args.repeats):
        m = banyan_json(args.banyan, ["bench", "model", "--model", args.banyan_model,
                                      "--threads", str(args.threads), "--repeats", "1"])
        metrics = m["suites"][0]["points"]
        out["decode_batch1"].append(find_metric(metrics, "decode_tokens_per_s"))
        out["prefill512"].append(find_metric(metrics, "prefill_tokens_per_s"))
        d = banyan_json(args.banyan, ["bench", "decode", "--prefill-once", "--model", args.banyan_model,
                                      "--prefix", str(args.prefix), "--batch", ",".join(map(str, batches)),
                                      "--gen", str(args.gen),
                                      "--threads", str(args.threads), "--repeats", "1"])
        for p in d["suites"][0]["points"]:
            if p.get("metrics") and p["series"] == "hydragen":
                out["shared"][p["parameters"]["batch"]].append(p["metrics"]["decode_tokens_per_s"]["median"])
    return out


def find_metric(points, name):
    for p in points:
        if name in (p.get("metrics") or {}):
            return p["metrics"][name]["median"]
    raise SystemExit(f"banyan bench model reported no {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=".build/release/banyan")
    ap.add_argument("--gguf", default="/tmp/synthetic-tinyllama-1.1b-bf16.gguf")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prefix", type=int, default=2048)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--gen", type=int, default=8, help="decode steps per shared-prefix point")
    ap.add_argument("--decode-steps", type=int, default=32, help="batch-1 decode steps")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--type", default="bf16", choices=["bf16"] + sorted(FTYPES),
                    help="weights of both engines: bf16 (Banyan: synthetic:tinyllama-1.1b), or the bf16 file quantized "
                         "by llama.cpp to this type, which both engines then load (the same GGUF)")
    ap.add_argument("--out")
    ap.add_argument("--write-gguf", metavar="SHAPE", choices=sorted(SHAPES),
                    help="only write --gguf with synthetic:SHAPE's shape (bf16, its published context) and exit")
    args = ap.parse_args()
    if args.write_gguf:
        write_gguf(args.gguf, context=SHAPES[args.write_gguf]["context"], shape=args.write_gguf)
        return
    batches = [int(b) for b in args.batches.split(",")]
    if not os.path.exists(args.gguf):
        print(f"writing {args.gguf} ...", file=sys.stderr)
        write_gguf(args.gguf, context=max(4096, args.prefix + args.gen + 64))
    args.banyan_model = "synthetic:tinyllama-1.1b"
    if args.type != "bf16":
        quantized = args.gguf.replace("-bf16", "").removesuffix(".gguf") + f"-{args.type}.gguf"
        if not os.path.exists(quantized):
            print(f"quantizing {args.gguf} to {args.type} ...", file=sys.stderr)
            quantize_gguf(args.gguf, quantized, args.type, args.threads)
        args.gguf = args.banyan_model = quantized
    if not os.path.exists(args.banyan):
        raise SystemExit(f"{args.banyan} not found: run `swift build -c release` first")

    import llama_cpp
    results = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "type": args.type,
               "gguf": args.gguf, "banyan_model": args.banyan_model,
               "llama_cpp_python": llama_cpp.__version__, "prefix": args.prefix, "gen": args.gen}
    print("llama.cpp ...", file=sys.stderr)
    results["llama_cpp"] = llamacpp_measure(args, batches)
    print("banyan ...", file=sys.stderr)
    results["banyan"] = banyan_measure(args, batches)

    rows = [("batch-1 decode (tok/s)", "decode_batch1", None), ("prefill 512 (tok/s)", "prefill512", None)]
    rows += [(f"prefix {args.prefix}, batch {b} decode (tok/s)", "shared", b) for b in batches]
    table = []
    print(f"\n| measure | Banyan | llama.cpp | Banyan / llama.cpp |\n|---|---:|---:|---:|")
    for label, key, b in rows:
        ours = results["banyan"][key] if b is None else results["banyan"][key][b]
        theirs = results["llama_cpp"][key] if b is None else results["llama_cpp"][key][b]
        mo, mt = statistics.median(ours), statistics.median(theirs)
        table.append({"measure": label, "banyan": mo, "llama_cpp": mt, "ratio": mo / mt,
                      "banyan_samples": ours, "llama_cpp_samples": theirs})
        print(f"| {label} | {mo:.1f} | {mt:.1f} | **{mo / mt:.2f}×** |")
    results["table"] = table
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
