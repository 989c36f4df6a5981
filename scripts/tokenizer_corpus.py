"""Texts tokenized by the GGUF fixture scripts (make_gguf_fixtures.py with transformers,
make_llamacpp_references.py with llama.cpp), so the two references cover the same cases."""

GPT2_TEXTS = [
    "hello there", "the tea is hot", "Hello, World! 123 4567", "  leading and trailing  ", "tabs\tand\nnew\n\nlines",
    "<|im_start|>user\nhi there<|im_end|>\n", "héllo wörld ☃ 日本 🙂", "it's what we'd've said", "",
]
SPM_TEXTS = ["hello world", "the time is now", "  two spaces", "Once upon a time.", "zebra ☃ 42", "a\nb", ""]
SMOLLM2_TEXTS = [
    "The capital of France is Paris.", "In 2024, 3.14159 and 1,000,000 people!", "def f(x):\n    return x ** 2\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n", "naïve café — “quotes” 日本語 🙂",
    "   spaces   and\ttabs\n\n\nnewlines  ", "",
]
