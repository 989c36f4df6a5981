"""End-to-end tests of `banyan serve` with the real `openai` client.

Starts the release binary (`.build/release/banyan`, or $BANYAN_BIN) on a free 127.0.0.1 port with a
tiny model that has a tokenizer and a ChatML chat template (the llama-text test fixture plus a
tokenizer_config.json written here), and stops it after. Run: python3 -m pytest -q tests/e2e
"""
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("BANYAN_BIN", ROOT / ".build" / "release" / "banyan"))
FIXTURE = ROOT / "Tests" / "Fixtures" / "models" / "llama-text"
API_KEY = "e2e-key"
MODEL = "tiny"
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class Server:
    """A `banyan serve` process; `url` once it printed its listening line."""

    def __init__(self, args):
        self.process = subprocess.Popen([str(BINARY), "serve", "--port", "0", *args],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        found = threading.Event()
        self.url = None

        def read():  # keeps draining stderr so the server never blocks on a full pipe
            for line in self.process.stderr:
                self.log.append(line)
                m = re.search(r"banyan serve: listening on (http://127\.0\.0\.1:\d+)", line)
                if m and not found.is_set():
                    self.url = m.group(1)
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(60) or self.url is None:
            self.stop()
            raise RuntimeError("banyan serve did not start:\n" + "".join(self.log))

    def stop(self):
        """SIGTERM, then the exit status (SIGKILL after 15 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="session")
def model_dir():
    folder = Path(tempfile.mkdtemp(prefix="banyan-e2e-"))
    for name in ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]:
        os.symlink(FIXTURE / name, folder / name)
    config = json.loads((FIXTURE / "tokenizer_config.json").read_text())
    config["chat_template"] = CHATML
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(scope="session")
def server(model_dir):
    assert BINARY.exists(), f"{BINARY} is missing: run swift build -c release first"
    s = Server(["--model", str(model_dir), "--served-model-name", MODEL, "--api-key", API_KEY,
                "--threads", "1", "--max-kv-bytes", str(64 << 20)])
    yield s
    assert s.stop() == 0, "".join(s.log)


@pytest.fixture(scope="session")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def request(server, method, path, body=None, headers=None, timeout=60):
    """(status, body bytes) of one plain HTTP request (stdlib only: no client-side checks)."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        conn.request(method, path, body=body, headers={"Authorization": f"Bearer {API_KEY}", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def metrics(server):
    text = request(server, "GET", "/metrics")[1].decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert request(server, "GET", "/health", headers={"Authorization": ""})[0] == 200


def test_text_completion_streamed_equals_whole(client):
    whole = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0)
    assert whole.object == "text_completion" and whole.usage.completion_tokens == len(whole.choices[0].tokens)
    chunks = list(client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason


def test_chat_streamed_equals_whole(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story."}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0)
    assert whole.choices[0].message.role == "assistant" and whole.choices[0].finish_reason in ("stop", "length")
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    # The same conversation as parts gives the same prompt.
    parts = [messages[0], {"role": "user", "content": [{"type": "text", "text": "Tell me a story."}]}]
    again = client.chat.completions.create(model=MODEL, messages=parts, max_completion_tokens=10, temperature=0)
    assert again.choices[0].message.content == whole.choices[0].message.content


def test_n_and_seeds(client):
    kwargs = dict(model=MODEL, prompt="The cat", max_tokens=8, n=3, temperature=1.0, extra_body={"ignore_eos": True})
    a = client.completions.create(seed=1234, **kwargs)
    b = client.completions.create(seed=1234, **kwargs)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.tokens for c in a.choices] == [c.tokens for c in b.choices]
    assert a.seed == 1234
    # Without a seed the server picks one and says which: it reproduces the response.
    c = client.completions.create(**kwargs)
    d = client.completions.create(seed=c.seed, **kwargs)
    assert [x.tokens for x in c.choices] == [x.tokens for x in d.choices]
    # Several prompts: choice index = prompt index * n + sample.
    e = client.completions.create(model=MODEL, prompt=["The cat", "A dog"], max_tokens=4, n=2, seed=7)
    assert [x.index for x in e.choices] == [0, 1, 2, 3]
    assert [x.tokens for x in e.choices[:2]] == [x.tokens for x in client.completions.create(
        model=MODEL, prompt="The cat", max_tokens=4, n=2, seed=7).choices]


def test_stop_strings(client):
    text = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=16, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    letters = [ch for ch in text[2:] if ch.isalpha()]
    assert letters, f"no letter to stop at in {text!r}"
    stop = letters[0]
    got = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=16, temperature=0, stop=[stop],
                                    extra_body={"ignore_eos": True}).choices[0]
    assert got.finish_reason == "stop" and stop not in got.text and text.startswith(got.text)


def test_echo_logprobs_scoring(client):
    """lm-evaluation-harness style: the prompt's logprobs come first, the first is null."""
    prompt = "Once upon a time there was"
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    assert r.choices[0].text.startswith(prompt)
    assert lp.token_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:])
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == r.usage.prompt_tokens + 1
    scored = client.completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    assert scored.choices[0].text == prompt
    assert scored.choices[0].logprobs.token_logprobs == lp.token_logprobs[:-1]


def test_concurrent_requests_sharing_a_prefix_equal_running_alone(client):
    prefix = "Once upon a time there was a little girl who lived in a village near the forest. "
    prompts = [prefix + f"Story number {i}:" for i in range(16)]

    def ask(i):
        sampled = i % 2 == 1
        return client.completions.create(model=MODEL, prompt=prompts[i], max_tokens=12, temperature=0.8 if sampled else 0,
                                         seed=100 + i, extra_body={"ignore_eos": True}).choices[0].tokens

    alone = [ask(i) for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(ask, range(16)))
    assert together == alone


def test_disconnect_mid_stream_aborts_and_server_goes_on(client, server):
    start = metrics(server)
    before = start.get("banyan_http_client_disconnects_total", 0)
    # Long enough (about half a second here) that the client is gone while it runs.
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 240, "n": 128, "stream": True,
            "ignore_eos": True, "temperature": 1.0}
    host, port = server.url.removeprefix("http://").split(":")
    # A client that leaves before any output.
    payload = json.dumps(body).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        time.sleep(0.05)
    # A client that reads the first event, then leaves (the server may have written everything by
    # then; with an engine that streams token by token the rest of the request is aborted).
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/completions", body=payload, headers={"Authorization": f"Bearer {API_KEY}"})
    r = conn.getresponse()
    assert r.status == 200
    while not r.readline().startswith(b"data: "):
        pass
    conn.close()
    deadline = time.time() + 20
    while True:
        m = metrics(server)
        idle = m.get("banyan_requests_running") == 0 and m.get("banyan_requests_waiting") == 0
        released = m.get("banyan_kv_blocks_used", 0) == m.get("banyan_kv_blocks_cached", 0)
        aborted = m.get("banyan_requests_aborted_total", 0) > start.get("banyan_requests_aborted_total", 0)
        if idle and released and aborted and m.get("banyan_http_client_disconnects_total", 0) > before:
            break
        assert time.time() < deadline, f"not idle/released after disconnects: {m}"
        time.sleep(0.1)
    # Still serving.
    assert client.completions.create(model=MODEL, prompt="Hello", max_tokens=2).choices[0].finish_reason == "length"


def test_errors(client, server):
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, logit_bias={"5": 10})
    with pytest.raises(openai.BadRequestError, match="presence_penalty"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], presence_penalty=1)
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                       tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model=MODEL, prompt="Hi", max_tokens=1000)
    with pytest.raises(openai.BadRequestError, match="top_p"):
        client.completions.create(model=MODEL, prompt="Hi", top_p=3)
    with pytest.raises(openai.BadRequestError, match="frobnicate"):
        client.completions.create(model=MODEL, prompt="Hi", extra_body={"frobnicate": 1})
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="Hi")
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.completions.create(model=MODEL, prompt="Hi")
    status, body = request(server, "POST", "/v1/completions", b"{not json")
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_json"
    status, body = request(server, "POST", "/v1/completions", b"x" * (33 << 20))
    assert status == 413 and "error" in json.loads(body)
    status, body = request(server, "GET", "/v1/nothing")
    assert status == 404 and "error" in json.loads(body)


def test_tokenize_detokenize_and_metrics(client, server):
    t = json.loads(request(server, "POST", "/tokenize", {"prompt": "Once upon a time"})[1])
    assert t["count"] == len(t["tokens"]) and t["max_model_len"] == 256
    d = json.loads(request(server, "POST", "/detokenize", {"tokens": t["tokens"][1:]})[1])
    assert d["prompt"] == "Once upon a time"
    m = metrics(server)
    assert m["banyan_time_to_first_token_seconds_count"] > 0 and m["banyan_kv_blocks_total"] >= 0
    assert "banyan_prompt_tokens_cached_total" in m and "banyan_generation_tokens_total" in m


def test_builtin_model_serves_token_ids_and_stops_on_sigterm():
    s = Server(["--threads", "1", "--max-kv-bytes", str(16 << 20)])
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        r = c.completions.create(model="builtin:stories260k", prompt=[1, 330, 361, 140], max_tokens=5, temperature=0,
                                 extra_body={"ignore_eos": True})
        assert r.choices[0].text == "" and len(r.choices[0].tokens) == 5
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_same_request_same_tokens_through_generate_batch_and_serve(client, model_dir, tmp_path):
    """One request with one seed: `banyan generate`, `banyan batch` and `banyan serve` give the same tokens."""
    prompt = [1, 45, 99, 173, 201, 32]
    body = {"prompt": prompt, "max_tokens": 10, "temperature": 0.9, "top_p": 0.95, "seed": 1234, "n": 2,
            "ignore_eos": True, "logprobs": 0}
    served = client.completions.create(model=MODEL, **{k: v for k, v in body.items() if k != "ignore_eos"},
                                       extra_body={"ignore_eos": True})
    served_tokens = [[int(t.removeprefix("token_id:")) if t.startswith("token_id:") else t for t in c.logprobs.tokens]
                     for c in served.choices]
    served_text = [c.text for c in served.choices]

    generated = json.loads(subprocess.run(
        [str(BINARY), "generate", "--model", str(model_dir), "--prompt-tokens", ",".join(map(str, prompt)),
         "--max-tokens", "10", "--temperature", "0.9", "--top-p", "0.95", "--seed", "1234", "--n", "2",
         "--ignore-eos", "--threads", "1", "--json"], check=True, capture_output=True, text=True).stdout)
    assert [c["text"] for c in generated["completions"]] == served_text

    batch_in, batch_out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    batch_in.write_text(json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": body}) + "\n")
    subprocess.run([str(BINARY), "batch", "--model", str(model_dir), "--input", str(batch_in), "--output", str(batch_out),
                    "--threads", "1", "--quiet"], check=True)
    record = json.loads(batch_out.read_text().splitlines()[0])
    choices = record["response"]["body"]["choices"]
    assert [c["text"] for c in choices] == served_text
    assert [c["logprobs"]["tokens"] for c in choices] == [c.logprobs.tokens for c in served.choices]
    assert all(len(t) == 10 for t in served_tokens)
