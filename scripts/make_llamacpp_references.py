#!/usr/bin/env python3
"""llama.cpp as an oracle for Banyan's GGUF support (issue 14).

Runs llama.cpp (through llama-cpp-python) on the same GGUF files and inputs as the transformers
references of scripts/make_gguf_fixtures.py and writes what it computes, plus its own error against
those float32 references, so the Swift tests (Tests/BanyanEngineTests/GGUFLlamaCppTests.swift) can
hold Banyan to "no worse than llama.cpp" (a bound of 2x llama.cpp's own error, with a floor).

Writes, into Tests/Fixtures/gguf/ (about 100 KB in all):

  NAME.llamacpp.json   for every model fixture NAME.gguf with a NAME.reference.json:
      input_ids          the reference's ids (fed as-is: no tokenization)
      target_logprobs    llama.cpp's teacher-forced log p(input_ids[i+1] | input_ids[:i+1])
      last_logprobs      llama.cpp's full log-softmax at the last position (vocabularies <= 1024)
      greedy             {prompt, tokens, margins}: llama.cpp's argmax loop from the reference's
                         greedy.prompt, as many steps as the reference, EOS ignored
      error              |llama.cpp - transformers| over target_logprobs and last_logprobs: the max
                         (target_logprobs, last_logprobs) and the mean (*_mean); greedy_agree: how
                         many leading greedy tokens equal the reference's (of greedy_count)
      patched            null, or what was changed in a temporary copy for llama.cpp to load the
                         file (tokenizer metadata only: the weights are the same bytes)
      llama_cpp          versions and settings (below)
  smollm2.llamacpp.json  the same for the real SmolLM2-135M-Instruct Q4_1 file (when
      /work/shared exists) against Tests/Fixtures/smollm2_gguf_reference.json: target_logprobs,
      last_top {ids (the reference's top 16), logprobs (llama.cpp's for those ids)}, llama.cpp's own
      top 16 (own_top), greedy from the reference's chat prompt (and its text), errors (max and mean
      over target_logprobs, max over last_top).
  tokenize.llamacpp.json  {"llama_cpp": ..., "add_special": true, "parse_special": true,
      "files": {FILE: [{text, ids}]}, "transformers_disagreements": {FILE: [...]}}: llama.cpp's
      llama_tokenize of a varied corpus with add_special (BOS where the file's
      tokenizer.ggml.add_bos_token, or llama.cpp's default for the vocabulary type, says so) and
      parse_special (control tokens in the text are matched whole), which is what Banyan's
      `encode(text, addSpecialTokens: true)` does. FILE is a name under Tests/Fixtures/gguf
      (llama-q4_1.gguf: gpt2 byte-level BPE, spm-vocab.gguf: SentencePiece without merges) or
      "shared:models/..." for a file under /work/shared (SmolLM2: `smollm` pre-tokenizer).
      transformers_disagreements lists the texts of tokenizers.json and of the SmolLM2 reference's
      tokenizer_cases where llama.cpp's ids differ from those (transformers/tokenizers-built) ids.

llama.cpp settings: CPU, n_threads 2, n_ctx = n_batch = n_ubatch (one batch for the whole
sequence), logits for every position (logits_all), default KV cache type (f16), no flash
attention, default quantized matmuls (activations quantized to Q8_0/Q8_1/Q8_K against quantized
weights; converted to f16 against F16 weights). Log-softmax is computed here in float64 from
llama.cpp's float32 logits.

Set-up and run (llama-cpp-python builds llama.cpp from source; see scripts/llamacpp_peer.py):

    python3 -m venv /tmp/peer && /tmp/peer/bin/pip install numpy gguf==0.19.0
    CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/peer/bin/pip install llama-cpp-python==0.3.36
    /tmp/peer/bin/python scripts/make_llamacpp_references.py [--out Tests/Fixtures/gguf] [--smollm2 FILE]

Generated with llama-cpp-python 0.3.36 (ggml 0.25.3, commit 0c1e570), numpy 2.4.6, gguf 0.19.0,
on an AVX2 x86-64 CPU (llama.cpp's kernels, hence its last digits, depend on the CPU features).
Deterministic for a given build and CPU.

llama.cpp cannot load llama-kquants.gguf and llama-rope-freqs.gguf as they are: their vocabularies
are cut to 128 ids, so make_gguf_fixtures.py writes no `tokenizer.ggml.merges`, and llama.cpp
refuses a gpt2 vocabulary without merges. Those files are copied to a temporary folder with one
placeholder merge added (ids are fed directly, so the tokenizer plays no part in the numbers).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import platform
import sys
import tempfile
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
from llama_cpp import Llama

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "Tests" / "Fixtures" / "gguf"
SHARED = Path("/work/shared")
SMOLLM2_REL = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_REF = REPO_ROOT / "Tests" / "Fixtures" / "smollm2_gguf_reference.json"
FULL_LAST_MAX_VOCAB = 1024  # write the whole last-position distribution up to this vocabulary size
THREADS = 2
DIGITS = 7  # decimals kept for llama.cpp's logprobs in the JSON (errors are kept in full)


def versions() -> dict:
    lib = Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"
    out = {"llama_cpp_python": llama_cpp.__version__, "gguf": getattr(gguf, "__version__", "0.19.0"),
           "numpy": np.__version__, "machine": platform.machine()}
    try:
        base = ctypes.CDLL(str(lib))
        for name in ("ggml_version", "ggml_commit"):
            fn = getattr(base, name)
            fn.restype = ctypes.c_char_p
            out[name] = fn().decode()
    except (OSError, AttributeError):
        pass
    info = llama_cpp.llama_print_system_info().decode()
    out["cpu_features"] = " ".join(p.split("=")[0].strip() for p in info.split("|") if p.strip().endswith("= 1"))
    out["settings"] = {"n_threads": THREADS, "kv_cache": "f16 (default)", "flash_attn": False,
                       "one_batch": True, "logsoftmax": "float64 from llama.cpp's float32 logits"}
    return out


# --------------------------------------------------------------------------- #
# loading
# --------------------------------------------------------------------------- #

def loadable(path: Path, tmp: Path) -> tuple[Path, str | None]:
    """`path`, or a copy in `tmp` that llama.cpp can load (a placeholder merge for gpt2 vocabularies
    written without merges), and what was changed."""
    r = gguf.GGUFReader(str(path))
    model = r.fields["tokenizer.ggml.model"].contents() if "tokenizer.ggml.model" in r.fields else None
    if model != "gpt2" or "tokenizer.ggml.merges" in r.fields:
        return path, None
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    merge = f"{tokens[3]} {tokens[4]}"
    out = tmp / path.name
    w = gguf.GGUFWriter(str(out), arch=r.fields["general.architecture"].contents(), endianess=r.endianess)
    for field in r.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    w.add_key_value("tokenizer.ggml.merges", [merge], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.STRING)
    for t in r.tensors:
        w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in r.tensors:
        w.write_tensor_data(t.data, tensor_endianess=r.endianess)
    w.close()
    return out, f"added tokenizer.ggml.merges [{merge!r}] (the file has none; llama.cpp requires them for gpt2 vocabularies)"


def open_model(path: Path, n_ctx: int) -> Llama:
    return Llama(str(path), logits_all=True, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=THREADS,
                 n_threads_batch=THREADS, flash_attn=False, seed=0, verbose=False)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def logprobs(llm: Llama, ids: list[int]) -> np.ndarray:
    """[len(ids), vocab] float64 log-softmax of llama.cpp's logits, the sequence evaluated at once."""
    llm.reset()
    llm.eval(ids)
    return log_softmax(np.array(llm.scores[:len(ids)], dtype=np.float32))


def greedy(llm: Llama, prompt: list[int], steps: int) -> dict:
    llm.reset()
    llm.eval(prompt)
    tokens, margins = [], []
    for _ in range(steps):
        row = log_softmax(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
        top = np.argsort(-row, kind="stable")[:2]
        tokens.append(int(top[0]))
        margins.append(float(row[top[0]] - row[top[1]]))
        llm.eval([int(top[0])])
    return {"prompt": list(prompt), "tokens": tokens, "margins": margins}


def agree(ref: dict, got: dict) -> int:
    """Leading greedy tokens equal to the reference's."""
    n = 0
    for a, b in zip(ref["tokens"], got["tokens"]):
        if a != b:
            break
        n += 1
    return n


def rounded(xs) -> list[float]:
    return [round(float(x), DIGITS) for x in xs]


def write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")


# --------------------------------------------------------------------------- #
# logprobs
# --------------------------------------------------------------------------- #

def model_fixture(name: str, out_dir: Path, tmp: Path, meta: dict) -> dict:
    ref = json.loads((out_dir / f"{name}.reference.json").read_text())
    path, patched = loadable(out_dir / f"{name}.gguf", tmp)
    ids = ref["input_ids"]
    llm = open_model(path, 64)
    lp = logprobs(llm, ids)
    vocab = lp.shape[1]
    assert vocab == len(ref["last_logprobs"]), f"{name}: vocabulary {vocab} != {len(ref['last_logprobs'])}"
    targets = np.array([lp[i, ids[i + 1]] for i in range(len(ids) - 1)])
    g = greedy(llm, ref["greedy"]["prompt"], len(ref["greedy"]["tokens"]))
    tf = np.abs(targets - np.array(ref["target_logprobs"]))
    last = np.abs(lp[-1] - np.array(ref["last_logprobs"]))
    err = {
        "target_logprobs": float(tf.max()), "target_logprobs_mean": float(tf.mean()),
        "last_logprobs": float(last.max()), "last_logprobs_mean": float(last.mean()),
        "greedy_agree": agree(ref["greedy"], g),
        "greedy_count": len(ref["greedy"]["tokens"]),
    }
    out = {
        "source": f"{name}.gguf", "reference": f"{name}.reference.json", "patched": patched, "llama_cpp": meta,
        "input_ids": ids, "target_logprobs": rounded(targets),
        "last_logprobs": rounded(lp[-1]) if vocab <= FULL_LAST_MAX_VOCAB else None,
        "greedy": {**g, "margins": rounded(g["margins"])}, "error": err,
    }
    write_json(out_dir / f"{name}.llamacpp.json", out)
    del llm
    return err


SMOLLM2_TOP = 16


def smollm2_fixture(path: Path, out_dir: Path, meta: dict) -> dict:
    ref = json.loads(SMOLLM2_REF.read_text())
    ids = ref["input_ids"]
    n_ctx = max(len(ids), len(ref["greedy"]["prompt"]) + len(ref["greedy"]["tokens"])) + 8
    llm = open_model(path, n_ctx)
    lp = logprobs(llm, ids)
    targets = np.array([lp[i, ids[i + 1]] for i in range(len(ids) - 1)])
    top_ids = ref["last_top"]["ids"]
    last_top = np.array([lp[-1, i] for i in top_ids])
    own = np.argsort(-lp[-1], kind="stable")[:SMOLLM2_TOP]
    g = greedy(llm, ref["greedy"]["prompt"], len(ref["greedy"]["tokens"]))
    tf = np.abs(targets - np.array(ref["target_logprobs"]))
    err = {
        "target_logprobs": float(tf.max()), "target_logprobs_mean": float(tf.mean()),
        "last_top": float(np.abs(last_top - np.array(ref["last_top"]["logprobs"])).max()),
        "greedy_agree": agree(ref["greedy"], g),
        "greedy_count": len(ref["greedy"]["tokens"]),
    }
    out = {
        "source": f"shared:{SMOLLM2_REL}", "reference": "../smollm2_gguf_reference.json", "patched": None,
        "llama_cpp": meta, "input_ids": ids, "target_logprobs": rounded(targets),
        "last_top": {"ids": top_ids, "logprobs": rounded(last_top)},
        "own_top": {"ids": [int(i) for i in own], "logprobs": rounded(lp[-1, own])},
        "greedy": {**g, "margins": rounded(g["margins"])},
        "greedy_text": llm.detokenize(g["tokens"], special=True).decode("utf-8", errors="replace"),
        "error": err,
    }
    write_json(out_dir / "smollm2.llamacpp.json", out)
    del llm
    return err


# --------------------------------------------------------------------------- #
# tokenization
# --------------------------------------------------------------------------- #

# Texts of make_gguf_fixtures.py's tokenizer cases (so llama.cpp can be compared with them too).
from tokenizer_corpus import GPT2_TEXTS, SMOLLM2_TEXTS, SPM_TEXTS  # noqa: E402  (shared with the other fixture script)
# A varied corpus for every vocabulary.
CORPUS = [
    # English
    "The quick brown fox jumps over the lazy dog.",
    "I'M SHOUTING, isn't it? You're right; they'll see. We've 'quoted' it.",
    "once upon a time there was a little girl who loved the sea",
    # code
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "import numpy as np\n\nclass Foo(Bar):\n    def __init__(self):\n        self.x = {'a': [1, 2]}  # comment\n",
    "<div class=\"x\">&amp; &lt;tag&gt;</div>\r\nSELECT * FROM t WHERE id >= 10;",
    # numbers
    "0123456789 -42 +7 1e-5 0x1F 3.14 1,234,567.89 12:30pm 2024-06-01",
    "½ ² ٣ Ⅻ ①",
    # whitespace runs
    " ", "\n", "\t\t", "a  b   c    d     e", "\n\n\n\n", "  \n  \n\t \t", "line1\r\nline2\r\n\r\n", "trailing   ",
    # unicode, emoji
    "héllo wörld ☃ façade naïve Ærøskøbing straße",
    "emoji 🙂👍🏽 👨‍👩‍👧 🇫🇷 ❤️ ✨",
    "Ελληνικά и русский текст, مرحبا بالعالم, שלום, हिन्दी",
    "\u00a0non-breaking\u2009thin\u200bzero-width\u3000ideographic space",
    # CJK
    "日本語のテキストです。東京は大きい。",
    "中文测试，你好世界！１２３",
    "한국어 텍스트입니다",
    # regex corners: other whitespace and control characters, combining marks, letter and number
    # categories beyond ASCII (Lt, Lm, Nl, No, math letters), upper-case contractions, long digit runs
    "a\x0bb\x0cc\x85d\u2028e\u2029f\x1cg \x01\x7f",
    "e\u0301 n\u0303 ǅ ʰ 〇 ² 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0001F600\U0001F3FB\u200d",
    "'S 'LL 'Ve DON'T you're", "12345678901234567890 ９９",
    # special-token text
    "<|endoftext|>", "<|im_start|>assistant\nSure.<|im_end|>", "a<|im_start|>b<|im_end|>c", " <|im_end|> ",
    "<|endoftext|><|endoftext|>text", "<s>hello</s>", "<unk> <s> </s>", "<|im_start|",
    "",
]


def tokenize_file(path: Path, texts: list[str]) -> list[dict]:
    llm = Llama(str(path), vocab_only=True, verbose=False)
    out = []
    seen = set()
    for t in texts:
        if t in seen:
            continue
        seen.add(t)
        ids = llm.tokenize(t.encode("utf-8"), add_bos=True, special=True)  # llama_tokenize(add_special, parse_special)
        out.append({"text": t, "ids": [int(i) for i in ids]})
    del llm
    return out


def disagreements(cases: list[dict], reference: list[dict]) -> list[dict]:
    ours = {c["text"]: c["ids"] for c in cases}
    return [{"text": r["text"], "llama_cpp": ours[r["text"]], "transformers": r["ids"]}
            for r in reference if r["text"] in ours and ours[r["text"]] != r["ids"]]


def make_tokenize(out_dir: Path, smollm2: Path | None, meta: dict) -> dict:
    refs = json.loads((out_dir / "tokenizers.json").read_text())
    files: dict[str, list[dict]] = {}
    diff: dict[str, list[dict]] = {}
    files["llama-q4_1.gguf"] = tokenize_file(out_dir / "llama-q4_1.gguf", GPT2_TEXTS + CORPUS)
    diff["llama-q4_1.gguf"] = disagreements(files["llama-q4_1.gguf"], refs["llama-q4_1.gguf"])
    files["spm-vocab.gguf"] = tokenize_file(out_dir / "spm-vocab.gguf", SPM_TEXTS + CORPUS)
    diff["spm-vocab.gguf"] = disagreements(files["spm-vocab.gguf"], refs["spm-vocab.gguf"])
    if smollm2 is not None:
        key = f"shared:{SMOLLM2_REL}"
        files[key] = tokenize_file(smollm2, SMOLLM2_TEXTS + CORPUS)
        diff[key] = disagreements(files[key], json.loads(SMOLLM2_REF.read_text())["tokenizer_cases"])
    out = {"llama_cpp": {k: v for k, v in meta.items() if k != "settings"}, "add_special": True, "parse_special": True,
           "files": files, "transformers_disagreements": diff}
    with open(out_dir / "tokenize.llamacpp.json", "w") as f:  # one case per line: compact but diffable
        f.write("{\n")
        f.write(f' "add_special": true,\n "parse_special": true,\n "llama_cpp": {json.dumps(out["llama_cpp"], sort_keys=True)},\n')
        f.write(' "files": {\n')
        for i, (k, cases) in enumerate(sorted(files.items())):
            f.write(f'  {json.dumps(k)}: [\n')
            f.write(",\n".join("   " + json.dumps(c, ensure_ascii=False) for c in cases))
            f.write("\n  ]" + ("," if i + 1 < len(files) else "") + "\n")
        f.write(" },\n")
        f.write(f' "transformers_disagreements": {json.dumps(diff, ensure_ascii=False, sort_keys=True)}\n')
        f.write("}\n")
    json.loads((out_dir / "tokenize.llamacpp.json").read_text())  # well-formed
    return diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--smollm2", type=Path, default=SHARED / SMOLLM2_REL, help="SmolLM2 Q4_1 file (skipped when absent)")
    args = ap.parse_args()
    meta = versions()
    names = sorted(p.name[: -len(".reference.json")] for p in args.out.glob("*.reference.json"))
    names = [n for n in names if (args.out / f"{n}.gguf").exists()]
    print(f"llama.cpp: {meta.get('ggml_version')} ({meta.get('ggml_commit')}), llama-cpp-python {meta['llama_cpp_python']}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            err = model_fixture(name, args.out, Path(tmp), meta)
            print(f"{name:18s} llama.cpp vs transformers: teacher-forced {err['target_logprobs']:.3e}, "
                  f"last {err['last_logprobs']:.3e}, greedy {err['greedy_agree']}/{err['greedy_count']}", flush=True)
    smollm2 = args.smollm2 if args.smollm2.exists() else None
    if smollm2 is not None:
        err = smollm2_fixture(smollm2, args.out, meta)
        print(f"{'smollm2':18s} llama.cpp vs transformers: teacher-forced {err['target_logprobs']:.3e}, "
              f"last top-16 {err['last_top']:.3e}, greedy {err['greedy_agree']}/{err['greedy_count']}", flush=True)
    else:
        print(f"skipping SmolLM2: {args.smollm2} absent")
    diff = make_tokenize(args.out, smollm2, meta)
    for k, v in diff.items():
        for d in v:
            print(f"tokenization: llama.cpp != transformers for {k} {d['text']!r}:\n  llama.cpp    {d['llama_cpp']}\n"
                  f"  transformers {d['transformers']}")
    total = sum(f.stat().st_size for f in args.out.glob("*.llamacpp.json"))
    print(f"*.llamacpp.json total size: {total / 1e3:.1f} KB")


if __name__ == "__main__":
    main()
