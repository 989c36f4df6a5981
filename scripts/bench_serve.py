#!/usr/bin/env python3
"""`banyan bench serve` against Banyan's server in three configurations and llama-server, in one run.

For each model shape (synthetic:smollm2-135m, synthetic:tinyllama-1.1b):

  banyan serve --scheduler fcfs-lru --attention hydragen   prefix cache on, Hydragen attention
  banyan serve --scheduler fcfs-lru --attention baseline   prefix cache on, per-sequence attention
  banyan serve --scheduler none                            no prefix cache
  llama-server -np N --kv-unified                          one server per client count N (slots = clients),
                                                           on each GGUF of the shape (bf16 random weights
                                                           written by scripts/llamacpp_peer.py; for smollm2
                                                           also the real Q4_1 file when present)

Each Banyan server gets one client run over every level (--clients; for --scheduler none, as for
llama-server, UNCACHED_CLIENTS below) (a warm-up request first: its
time to first token is the cold one); llama-server is started anew per level, so each of its runs
starts cold. Both engines use --threads 2 unless told otherwise. Every server listens on 127.0.0.1
only and is stopped before the next starts; every client run is bounded (--seconds-per-level, and a
process timeout on top).

Writes OUT/SHAPE-banyan-CONFIG.json, OUT/SHAPE-llama-GGUF-cN.json (each `banyan bench serve --json`),
OUT/summary.md (one table, all rows) and OUT/summary.json. Only the Python standard library; the
GGUFs are written with the `gguf` package in --peer-python's environment.

    swift build -c release
    python3 scripts/bench_serve.py --out out/serve                      # everything
    python3 scripts/bench_serve.py --out out/serve --only llama --shapes smollm2-135m --uncached-clients 1,8
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

BANYAN_CONFIGS = {
    "hydragen": ["--scheduler", "fcfs-lru", "--attention", "hydragen"],
    "baseline": ["--scheduler", "fcfs-lru", "--attention", "baseline"],
    "none": ["--scheduler", "none"],
}
# Client counts for the servers that prefill every prompt in full (banyan --scheduler none, llama-server):
# their cost grows with clients x prompt length (llama-server took 388 s for 32 clients of smollm2-135m
# Q4_1 on 2 cores; tinyllama-1.1b is ~8x the compute per token), so the 64-client point and tinyllama's
# 32-client point are opt-in (--uncached-clients) to keep the whole run under an hour.
UNCACHED_CLIENTS = {"smollm2-135m": [1, 8, 32], "tinyllama-1.1b": [1, 8]}
REAL_GGUF = {"smollm2-135m": ("q4_1", "/work/shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")}
VOCAB = {"smollm2-135m": 49152, "tinyllama-1.1b": 32000}


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on 127.0.0.1; ready when `ready(url)` is true. Always stopped on exit."""

    def __init__(self, argv, port, logfile, ready, start_timeout):
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(logfile, "w")
        log("start: " + " ".join(argv))
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + start_timeout
        while not ready(self):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {self.proc.returncode}; see {logfile}")
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[0]} not ready after {start_timeout} s; see {logfile}")
            time.sleep(0.5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def banyan_ready(server):
    with open(server.log.name) as f:
        return "listening on http://" in f.read()


def http_ready(server):
    try:
        with urllib.request.urlopen(server.url + "/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def run_client(args, url, shape, clients, json_path):
    argv = [args.banyan, "bench", "serve", "--url", url, "--clients", ",".join(map(str, clients)),
            "--system-tokens", str(args.system_tokens), "--user-tokens", str(args.user_tokens),
            "--output-tokens", str(args.output_tokens), "--requests-per-client", str(args.requests_per_client),
            "--vocab-size", str(VOCAB[shape]), "--seconds-per-level", str(args.seconds_per_level), "--json", json_path]
    log("client: " + " ".join(argv))
    # The client bounds each level; this bounds the process (warm-up, lone requests, a hung server).
    limit = (args.seconds_per_level + 120) * len(clients) + 300
    r = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=limit)
    print(r.stdout, flush=True)
    if r.returncode != 0:
        raise RuntimeError(f"bench serve exited with {r.returncode}")
    with open(json_path) as f:
        return json.load(f)


def context_for(args, clients):
    # Slots do not share cells in llama-server: every slot may hold a whole prompt and its output.
    per = args.system_tokens + args.user_tokens + args.output_tokens + 16
    return clients * per


def uncached_clients(args, shape):
    return args.uncached_clients or UNCACHED_CLIENTS[shape]


def run_shape(args, shape, results):
    os.makedirs(args.out, exist_ok=True)
    if args.only in (None, "banyan"):
        for name, flags in BANYAN_CONFIGS.items():
            clients = args.clients if name != "none" else uncached_clients(args, shape)
            port = free_port()
            tag = f"{shape}-banyan-{name}"
            argv = [args.banyan, "serve", "--model", f"synthetic:{shape}", "--threads", str(args.threads),
                    "--host", "127.0.0.1", "--port", str(port), "--max-batch", str(max(clients))] + flags
            try:
                with Server(argv, port, os.path.join(args.out, tag + ".log"), banyan_ready, args.start_timeout) as s:
                    results.append((shape, "banyan " + name, run_client(args, s.url, shape, clients,
                                                                       os.path.join(args.out, tag + ".json"))))
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                log(f"{tag}: {e}")
    if args.only in (None, "llama"):
        ggufs = [("bf16", os.path.join(args.gguf_dir, f"synthetic-{shape}-bf16.gguf"))]
        if shape in REAL_GGUF and os.path.exists(REAL_GGUF[shape][1]):
            ggufs.append(REAL_GGUF[shape])
        for kind, path in ggufs:
            if not os.path.exists(path):
                log(f"writing {path}")
                subprocess.run([args.peer_python, os.path.join(os.path.dirname(__file__), "llamacpp_peer.py"),
                                "--write-gguf", shape, "--gguf", path], check=True)
            for n in uncached_clients(args, shape):
                port = free_port()
                tag = f"{shape}-llama-{kind}-c{n}"
                argv = [args.llama_server, "-m", path, "-np", str(n), "--kv-unified", "-t", str(args.threads),
                        "-c", str(context_for(args, n)), "--host", "127.0.0.1", "--port", str(port)]
                try:
                    with Server(argv, port, os.path.join(args.out, tag + ".log"), http_ready, args.start_timeout) as s:
                        results.append((shape, f"llama-server {kind}", run_client(args, s.url, shape, [n],
                                                                                 os.path.join(args.out, tag + ".json"))))
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    log(f"{tag}: {e}")


def ms(x):
    return "-" if x is None else f"{x * 1000:.0f}"


def summarize(results, out):
    rows, table = [], ["| shape | server | clients | requests (failed) | wall s | out tok/s | TTFT p50 ms | TTFT p99 ms "
                       "| ITL p50 ms | ITL p99 ms | cold TTFT ms | lone TTFT ms | peak KV blocks | prefix hit |",
                       "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for shape, server, report in results:
        for level in report["levels"]:
            ttft, itl = level.get("timeToFirstToken") or {}, level.get("interTokenLatency") or {}
            hit = level.get("prefixHitRate")
            row = dict(shape=shape, server=server, cpu=report["cpu"], clients=level["clients"], requests=level["requests"],
                       failed=level["failed"], wall_s=level["wallSeconds"], tokens_per_s=level["outputTokensPerSecond"],
                       ttft_p50=ttft.get("p50"), ttft_p99=ttft.get("p99"), itl_p50=itl.get("p50"), itl_p99=itl.get("p99"),
                       cold_ttft=report.get("coldTimeToFirstToken"), lone_ttft=level.get("loneTimeToFirstToken"),
                       peak_kv_blocks=level.get("peakKVBlocks"), prefix_hit=hit)
            rows.append(row)
            table.append(f"| {shape} | {server} | {row['clients']} | {row['requests']} ({row['failed']}) | {row['wall_s']:.1f} "
                         f"| {row['tokens_per_s']:.2f} | {ms(row['ttft_p50'])} | {ms(row['ttft_p99'])} | {ms(row['itl_p50'])} "
                         f"| {ms(row['itl_p99'])} | {ms(row['cold_ttft'])} | {ms(row['lone_ttft'])} "
                         f"| {row['peak_kv_blocks'] if row['peak_kv_blocks'] is not None else '-'} "
                         f"| {'-' if hit is None else f'{hit * 100:.1f}%'} |")
    cpus = sorted({r["cpu"] for r in rows})
    text = "\n".join(table) + "\n\nCPU: " + ", ".join(cpus) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=".build/release/banyan")
    ap.add_argument("--llama-server", default="/tmp/llamacpp/build/bin/llama-server")
    ap.add_argument("--peer-python", default="/tmp/peer/bin/python", help="a Python with numpy and gguf (writes the GGUFs)")
    ap.add_argument("--gguf-dir", default="/tmp/peer-gguf")
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", default="smollm2-135m,tinyllama-1.1b")
    ap.add_argument("--clients", default="1,8,32,64", help="client counts for banyan with its prefix cache")
    ap.add_argument("--uncached-clients", help="client counts for banyan --scheduler none and llama-server "
                    f"(default per shape: {UNCACHED_CLIENTS})")
    ap.add_argument("--only", choices=["banyan", "llama"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--system-tokens", type=int, default=1024)
    ap.add_argument("--user-tokens", type=int, default=32)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--requests-per-client", type=int, default=1)
    ap.add_argument("--seconds-per-level", type=float, default=900,
                    help="the client's bound per level (a cut level reports its unfinished requests as failed)")
    ap.add_argument("--start-timeout", type=float, default=300, help="seconds for a server to load its model")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.uncached_clients = [int(c) for c in args.uncached_clients.split(",")] if args.uncached_clients else None
    shapes = args.shapes.split(",")
    for shape in shapes:
        if shape not in VOCAB:
            ap.error(f"unknown shape {shape} ({', '.join(VOCAB)})")
    needed = {None: [args.banyan, args.llama_server], "banyan": [args.banyan], "llama": [args.banyan, args.llama_server]}[args.only]
    for path in needed:
        if not os.path.exists(path):
            ap.error(f"{path} not found (the header says how to build it)")
    results = []
    start = time.time()
    for shape in shapes:
        run_shape(args, shape, results)
    summarize(results, args.out)
    log(f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
