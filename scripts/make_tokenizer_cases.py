#!/usr/bin/env python3
"""Generate tokenizer test cases with Hugging Face `tokenizers` (reference implementation).

For each tokenizer in ../shared/tokenizers/<name>/tokenizer.json this writes
Tests/Fixtures/tokenizers/<name>.json:

    {"tokenizer": "<name>", "tokenizers_version": "...",
     "encode": [{"text", "ids", "ids_special", "decoded", "decoded_skip"}, ...],
     "decode": [{"ids", "decoded", "decoded_skip"}, ...]}

`ids` are without special tokens, `ids_special` with the post-processor applied;
`decoded` / `decoded_skip` are `decode(ids_special, skip_special_tokens=False/True)`.
The "decode" cases are random id sequences (invalid UTF-8, byte-fallback runs, specials).

Usage: python3 scripts/make_tokenizer_cases.py [--shared ../shared] [--seed 1234]
"""
import argparse
import json
import os
import random
import sys

from tokenizers import Tokenizer
import tokenizers

NAMES = ["llama2", "llama3", "qwen2", "gpt2"]

HANDWRITTEN = [
    "", " ", "  ", "\t", "\n", "\n\n", "\r\n", " \r\n\r\n x", "a\n\n\n  b", "x \t \n y", "   leading", "trailing   ",
    "Hello world", " Hello World!", "Hello, world! How's it going? I'M FINE, you'RE", "'s 't 're 've 'm 'll 'd",
    "'S 'T 'RE 'VE 'M 'LL 'D 'ſ", "don't can't won't shouldn't y'all", "''''", "'", "a'b", "it''s",
    "1", "12", "123", "1234", "12345", "123456789012345678901234567890", "3.14159 2,718 1e-10 -42 +7",
    "٣٤٥ ١٢٣ ४२ ௧௨௩ Ⅻ ½ ¾ ²³", "version 1.2.3-beta+exp.sha.5114f85",
    "Ünïcödé façade naïve coöperate", "e\u0301 a\u0300\u0323 n\u0303 Z\u0351\u0327\u0329a\u0352\u0361l\u036bg\u0350o",
    "日本語のテキストです。東京タワー", "中文文本测试，你好世界！", "한국어 텍스트 안녕하세요", "Ελληνικά κείμενο", "Русский текст, привет мир",
    "עברית טקסט", "العربية نص تجريبي", "हिन्दी पाठ नमस्ते", "ไทย ภาษา สวัสดี", "ქართული ენა", "Tiếng Việt có dấu",
    "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇺🇸🇯🇵 ❤️ 🏳️‍🌈", "🙂", "😀😀😀😀😀😀", "🦙 llama 🦙",
    "def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>", "SELECT * FROM t WHERE id = 42;",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}", "https://example.com/path?q=1&r=two#frag",
    "user@example.com", "C:\\Windows\\System32", "$HOME/.config && echo $PATH | grep -v x",
    "--======= ''''''``````\"\"\"\"......!!!!!!??????", "!!!Hello", "(Hello)", "...and", "\u00a0nbsp\u00a0\u00a0x",
    "\u2028line sep\u2029para", "\u3000ideographic space", "zero\u200bwidth\u200djoiner\u200c", "\u180emongolian",
    "soft\u00adhyphen", "\x00\x01\x02\x1b[0m\x7f", "\x1c\x1d\x1e\x1f", "\ufeffbom", "\ufffd replacement",
    "tab\there\tand\tthere", "CamelCaseWordsHere", "snake_case_words_here", "ALLCAPSWORD", "a" * 300,
    " " * 50, "\n" * 20, "ab" * 100, "1" * 100, "!" * 80, "😀" * 30, "的" * 60,
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "ﬁ ﬂ ﬀ ligatures", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝟙𝟚𝟛", "𐐷𐐸 deseret", "\U00020000\U0002a6d6 CJK ext B",
    "ied 4 ½ months", "Führer", "   Hello\n    Hello", " (", "\n =", "' era", "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
]


def special_strings(tok):
    """Added-token contents, plus near-misses, embedded in text."""
    added = [t.content for t in tok.get_added_tokens_decoder().values()]
    added = sorted(added, key=lambda s: (len(s), s))[:6] + added[-3:]
    cases = []
    for s in added:
        cases += [s, f"Hello {s} world", f"{s}{s}", f"x{s}y", f" {s} ", f"{s[:-1]}", f"<{s}>", f"\n{s}\n"]
    return cases


def random_text(rng, pools, length):
    out = []
    while len(out) < length:
        pool = rng.choice(pools)
        out.append(rng.choice(pool))
    return "".join(out)


def make_pools(rng):
    ascii_printable = [chr(c) for c in range(32, 127)]
    ws = [" ", " ", " ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2009", "\x0b", "\x0c", "\x85"]
    words = ["the", "The", " of", "and", "Hello", "world", "'s", "'LL", "123", "4567", "—", "...", "’", "“quoted”"]
    latin = [chr(c) for c in range(0xC0, 0x250)]
    combining = [chr(c) for c in range(0x300, 0x370)]
    cjk = [chr(c) for c in range(0x4E00, 0x9FA0, 37)]
    kana = [chr(c) for c in range(0x3041, 0x30FF)]
    hangul = [chr(c) for c in range(0xAC00, 0xD7A0, 101)]
    cyr_greek = [chr(c) for c in list(range(0x391, 0x3CA)) + list(range(0x410, 0x450))]
    arabic_indic = [chr(c) for c in list(range(0x620, 0x64B)) + list(range(0x660, 0x66A)) + list(range(0x905, 0x940))]
    emoji = [chr(c) for c in range(0x1F600, 0x1F650)] + ["\u200d", "\ufe0f", "\U0001F3FD", "🇺", "🇸"]
    digits = [chr(c) for c in range(0x30, 0x3A)] + ["٣", "४", "½", "²", "Ⅻ", "𝟙"]
    punct = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["–", "—", "…", "«", "»", "¿", "¡", "•", "€", "£", "©"]
    # Random code points from long-assigned blocks (Unicode <= 6), so the regex engine's and
    # Swift's Unicode tables agree on their categories.
    blocks = [(0x20, 0x7F), (0xA0, 0x2FF), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0xDFF), (0x1E00, 0x1FFF),
              (0x2000, 0x206F), (0x2100, 0x27BF), (0x3000, 0x30FF), (0x4E00, 0x9FCC), (0xAC00, 0xD7A3),
              (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF), (0x1F300, 0x1F5FF)]
    import unicodedata
    rand_unicode = []
    while len(rand_unicode) < 3000:
        lo, hi = rng.choice(blocks)
        c = chr(rng.randint(lo, hi))
        if unicodedata.category(c) not in ("Cn", "Cs", "Co"):
            rand_unicode.append(c)
    return [ascii_printable, ws, words, latin, combining, cjk, kana, hangul, cyr_greek, arabic_indic, emoji,
            digits, punct, rand_unicode]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(repo), "shared"))
    ap.add_argument("--out", default=os.path.join(repo, "Tests", "Fixtures", "tokenizers"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--random-cases", type=int, default=160)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    for name in NAMES:
        path = os.path.join(args.shared, "tokenizers", name, "tokenizer.json")
        if not os.path.exists(path):
            print(f"skipping {name}: {path} absent", file=sys.stderr)
            continue
        tok = Tokenizer.from_file(path)
        rng = random.Random(f"{args.seed}-{name}")
        pools = make_pools(rng)
        texts = list(HANDWRITTEN) + special_strings(tok)
        specials = [t.content for t in tok.get_added_tokens_decoder().values()][:4]
        for i in range(args.random_cases):
            length = rng.choice([1, 2, 3, 5, 8, 13, 30, 60, 120])
            text = random_text(rng, pools, length)
            if i % 10 == 0:
                text = text[: len(text) // 2] + rng.choice(specials) + text[len(text) // 2:]
            texts.append(text)
        # A couple of long texts exercise the word cache and long pieces.
        texts.append(random_text(rng, pools[:3], 2000))
        texts.append(" ".join(random_text(rng, [pools[2], pools[12]], 12) for _ in range(120)))

        encode_cases = []
        for text in texts:
            ids = tok.encode(text, add_special_tokens=False).ids
            ids_special = tok.encode(text, add_special_tokens=True).ids
            encode_cases.append({
                "text": text,
                "ids": ids,
                "ids_special": ids_special,
                "decoded": tok.decode(ids_special, skip_special_tokens=False),
                "decoded_skip": tok.decode(ids_special, skip_special_tokens=True),
            })

        vocab_size = tok.get_vocab_size(with_added_tokens=True)
        special_ids = sorted(tok.get_added_tokens_decoder().keys())
        decode_cases = []
        for i in range(60):
            n = rng.choice([1, 2, 3, 5, 10, 20])
            ids = []
            for _ in range(n):
                r = rng.random()
                if r < 0.15:
                    ids.append(rng.choice(special_ids))
                elif r < 0.5:
                    ids.append(rng.randint(0, min(600, vocab_size - 1)))  # bytes / byte-fallback region
                else:
                    ids.append(rng.randint(0, vocab_size - 1))
            decode_cases.append({
                "ids": ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip": tok.decode(ids, skip_special_tokens=True),
            })

        out = {"tokenizer": name, "tokenizers_version": tokenizers.__version__,
               "encode": encode_cases, "decode": decode_cases}
        dest = os.path.join(args.out, f"{name}.json")
        with open(dest, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        print(f"{name}: {len(encode_cases)} encode, {len(decode_cases)} decode cases -> {dest} "
              f"({os.path.getsize(dest)} bytes)")


if __name__ == "__main__":
    main()
