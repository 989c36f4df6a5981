#!/usr/bin/env python3
"""Generates the `banyan batch` benchmark workloads (OpenAI Batch .jsonl, token-id prompts for a
synthetic model; BOS = 1, ids drawn from [3, vocab)). Deterministic for a given --seed.

  fewshot.jsonl   one few-shot block (--fewshot-tokens) + a question (~--question-tokens), --questions
                  lines, 16 tokens out, n=1, greedy, shuffled order
  sampling.jsonl  --sampling-prompts prompts of --sampling-tokens tokens, n=--sampling-n, 128 out
  mix.jsonl       4 system prompts x random user turns (--mix-lines lines), 32 out, shuffled

Full size (issue 8): --questions 500 --fewshot-tokens 1500 --sampling-prompts 64 --sampling-tokens 500
--sampling-n 16 --sampling-out 128. Use smaller values on small machines and say what you ran.

  python3 scripts/make_batch_workloads.py --out bench/batch --vocab 49152 --questions 60
"""
import argparse
import json
import pathlib
import random


def line(custom_id, prompt, max_tokens, n=1, temperature=0.0, seed=None):
    body = {"prompt": prompt, "max_tokens": max_tokens, "n": n, "temperature": temperature, "ignore_eos": True}
    if seed is not None:
        body["seed"] = seed
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": body}, separators=(",", ":"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/batch")
    p.add_argument("--vocab", type=int, default=49152, help="model vocabulary size (smollm2: 49152)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fewshot-tokens", type=int, default=1500)
    p.add_argument("--questions", type=int, default=500)
    p.add_argument("--question-tokens", type=int, default=50)
    p.add_argument("--fewshot-out", type=int, default=16)
    p.add_argument("--sampling-prompts", type=int, default=64)
    p.add_argument("--sampling-tokens", type=int, default=500)
    p.add_argument("--sampling-n", type=int, default=16)
    p.add_argument("--sampling-out", type=int, default=128)
    p.add_argument("--mix-lines", type=int, default=200)
    p.add_argument("--mix-system-tokens", type=int, default=400)
    p.add_argument("--mix-out", type=int, default=32)
    a = p.parse_args()
    rng = random.Random(a.seed)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    def tokens(k):
        return [rng.randrange(3, a.vocab) for _ in range(k)]

    block = [1] + tokens(a.fewshot_tokens - 1)
    lines = [line(f"q{i}", block + tokens(rng.randint(a.question_tokens - 10, a.question_tokens + 10)), a.fewshot_out)
             for i in range(a.questions)]
    rng.shuffle(lines)
    (out / "fewshot.jsonl").write_text("\n".join(lines) + "\n")

    lines = [line(f"s{i}", [1] + tokens(a.sampling_tokens - 1), a.sampling_out, n=a.sampling_n, temperature=1.0, seed=i)
             for i in range(a.sampling_prompts)]
    (out / "sampling.jsonl").write_text("\n".join(lines) + "\n")

    systems = [[1] + tokens(a.mix_system_tokens - 1) for _ in range(4)]
    lines = [line(f"m{i}", rng.choice(systems) + tokens(rng.randint(20, 120)), a.mix_out, temperature=0.7, seed=i)
             for i in range(a.mix_lines)]
    rng.shuffle(lines)
    (out / "mix.jsonl").write_text("\n".join(lines) + "\n")
    for name in ("fewshot", "sampling", "mix"):
        print(out / f"{name}.jsonl")


if __name__ == "__main__":
    main()
