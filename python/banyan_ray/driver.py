"""`banyan-ray`: a Banyan batch job as N prefix-aware shards on a Ray cluster.

Every shard is one Ray task that runs the `banyan` binary on its node:

    banyan batch --shard K/N --input IN --output OUT.shard-K-of-N.jsonl --model M --quiet

Each process computes the same partition from the same input (no coordination). A shard whose
node dies or whose process is killed fails its task; Ray runs it again (on any node), and the
binary resumes from the records already in its output file. When every shard is done,
`banyan batch merge` writes one output in input order and checks that every input line has
exactly one record; the exit status is 0 only then.

What each node needs: the `banyan` binary (a build with a statically linked Swift runtime,
`swift build -c release --static-swift-stdlib`, runs on any Linux node of the same architecture),
the model at the same path (shared storage) or in the task's runtime environment, and the input
and output paths on storage every node shares.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def shard_path(output: str, k: int, n: int) -> str:
    return f"{output}.shard-{k}-of-{n}.jsonl"


def count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))
    except FileNotFoundError:
        return 0


def _die_with_parent():
    """Runs in the child before exec: if the Ray worker dies, so does banyan (no orphan keeps
    appending to the shard's output while a retry writes it)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def node_marker(output: str, k: int, n: int) -> str:
    """File naming the Ray node that runs (or last ran) shard k."""
    return shard_path(output, k, n) + ".node"


def run_shard(banyan: str, args: list, marker: str = None) -> dict:
    """Body of the Ray task: one `banyan batch --shard` process; raises on failure (Ray retries)."""
    start = time.time()
    if marker:
        import ray

        with open(marker, "w") as f:
            f.write(ray.get_runtime_context().get_node_id())
    proc = subprocess.run([banyan] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=_die_with_parent)
    if proc.returncode != 0:
        raise RuntimeError(f"banyan {' '.join(args)} exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    import socket

    return {"node": socket.gethostname(), "pid": os.getpid(), "seconds": time.time() - start,
            "summary": json.loads(proc.stdout) if proc.stdout.strip() else None}


def run_job(input: str, output: str, model: str, shards: int, address=None, banyan="banyan", threads=None,
            max_retries=3, extra=(), progress=sys.stderr, poll_seconds=2.0) -> int:
    """Runs the job; returns the process exit status (0 when every input line has a record)."""
    import ray

    input, output = os.path.abspath(input), os.path.abspath(output)
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    task = ray.remote(num_cpus=threads or 1, max_retries=max_retries, retry_exceptions=True)(run_shard)
    base = ["batch", "--input", input, "--model", model, "--quiet", "--json"] + list(extra)
    if threads:
        base += ["--threads", str(threads)]
    refs = {}
    for k in range(shards):
        refs[task.remote(banyan, base + ["--shard", f"{k}/{shards}", "--output", shard_path(output, k, shards)],
                         node_marker(output, k, shards))] = k
    # Expected lines per shard, from the plan (when this machine can run banyan and load the model).
    expected = {}
    try:
        plan = subprocess.run([banyan, "batch", "plan", "--input", input, "--model", model, "--shards", str(shards), "--json"]
                              + (["--threads", str(threads)] if threads else []),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=600)
        if plan.returncode == 0:
            expected = {s["shard"]: s["requests"] for s in json.loads(plan.stdout)["per_shard"]}
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError):
        pass
    pending, failed = list(refs), []
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=poll_seconds)
        for ref in ready:
            k = refs[ref]
            try:
                info = ray.get(ref)
                print(f"shard {k}/{shards}: done on {info['node']} in {info['seconds']:.1f} s", file=progress)
            except Exception as e:  # retries exhausted
                failed.append(k)
                print(f"shard {k}/{shards}: FAILED after {max_retries} retries: {e}", file=progress)
        states = []
        for k in range(shards):
            have = count_lines(shard_path(output, k, shards))
            try:
                node = open(node_marker(output, k, shards)).read()[:8]
            except OSError:
                node = "-"
            states.append(f"{k}:{have}" + (f"/{expected[k]}" if k in expected else "") + f"@{node}")
        print("records per shard (shard:done/planned@node) " + " ".join(states), file=progress)
    if failed:
        print(f"banyan-ray: shards {failed} failed; their partial outputs stay for a re-run (which resumes)", file=progress)
        return 1
    for k in range(shards):
        try:
            os.remove(node_marker(output, k, shards))
        except OSError:
            pass
    merge = subprocess.run([banyan, "batch", "merge", "--input", input, "--output", output]
                           + [shard_path(output, k, shards) for k in range(shards)])
    return merge.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="banyan-ray", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="OpenAI Batch .jsonl (on storage every node sees)")
    ap.add_argument("--output", required=True, help="merged output .jsonl; shards write OUTPUT.shard-K-of-N.jsonl beside it")
    ap.add_argument("--model", required=True, help="banyan --model (a path every node sees, or synthetic:NAME)")
    ap.add_argument("--shards", type=int, required=True)
    ap.add_argument("--address", default=None, help="Ray cluster address, as ray.init takes it (default: start a local Ray)")
    ap.add_argument("--banyan", default="banyan", help="the banyan binary on each node (default: banyan on the PATH)")
    ap.add_argument("--threads", type=int, default=None, help="threads (and Ray CPUs) per shard")
    ap.add_argument("--max-retries", type=int, default=3, help="re-runs of a failed or lost shard (each resumes)")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more `banyan batch` flags")
    args = ap.parse_args(argv)
    if args.shards < 1:
        ap.error("--shards must be at least 1")
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    return run_job(args.input, args.output, args.model, args.shards, address=args.address, banyan=args.banyan,
                   threads=args.threads, max_retries=args.max_retries, extra=extra)


if __name__ == "__main__":
    sys.exit(main())
