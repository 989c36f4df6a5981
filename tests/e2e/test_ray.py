"""End-to-end test of the Ray driver (`python/banyan_ray`, `pip install ./python`) on a real Ray
cluster of three nodes simulated on this machine (`ray.cluster_utils.Cluster`, every node on
127.0.0.1): the merged output of a sharded job equals a single-machine `banyan batch` run per
custom_id, also when a node dies mid-job (its shard is retried on another node and resumes from
its partial output). Run: python3 -m pytest -q tests/e2e/test_ray.py
"""
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray); .ci/run installs it")
from ray.cluster_utils import Cluster  # noqa: E402

from banyan_ray.driver import count_lines, node_marker, run_job, shard_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("BANYAN_BIN", ROOT / ".build" / "release" / "banyan"))
SHARDS = 3


def workload(path: Path, lines: int = 180, max_tokens: int = 40) -> None:
    """Token prompts for builtin:stories260k: 6 documents (40-token prefixes) asked several questions
    each, plus loners; sampled with seeds derived from custom_id (no seed in the body)."""
    rng = random.Random(5)
    docs = [[1] + [rng.randrange(3, 500) for _ in range(40)] for _ in range(6)]
    with open(path, "w") as f:
        for i in range(lines):
            prompt = docs[i % 6] + [rng.randrange(3, 500) for _ in range(3 + i % 5)] if i % 7 else [1, 330, 361, 140] + [rng.randrange(3, 500) for _ in range(6)]
            body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "ignore_eos": True}
            f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/completions", "body": body}) + "\n")


def choices(path: Path) -> dict:
    out = {}
    for line in open(path):
        r = json.loads(line)
        assert r["custom_id"] not in out, f"{r['custom_id']} twice in {path}"
        out[r["custom_id"]] = json.dumps(r["response"]["body"]["choices"], sort_keys=True)
    return out


@pytest.fixture(scope="module")
def cluster():
    if not BINARY.exists():
        pytest.skip(f"{BINARY} not built")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [c.add_node(num_cpus=1) for _ in range(SHARDS - 1)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def single_machine(d: Path, max_tokens: int):
    inp, out = d / "in.jsonl", d / "single.jsonl"
    workload(inp, max_tokens=max_tokens)
    r = subprocess.run([str(BINARY), "batch", "--threads", "1", "--max-batch", "4", "--quiet", "--input", str(inp), "--output", str(out)])
    assert r.returncode == 0
    return inp, choices(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return single_machine(tmp_path_factory.mktemp("ray-ref"), 40)


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    """Longer shards (each several seconds), so a node can be killed while its shard runs."""
    return single_machine(tmp_path_factory.mktemp("ray-long"), 200)


def test_sharded_job_equals_single_machine(cluster, reference, tmp_path):
    inp, want = reference
    out = tmp_path / "merged.jsonl"
    status = run_job(str(inp), str(out), "builtin:stories260k", SHARDS, banyan=str(BINARY), threads=1,
                     extra=["--max-batch", "4"], poll_seconds=0.5)
    assert status == 0
    assert choices(out) == want
    assert [json.loads(l)["custom_id"] for l in open(out)] == [f"r{i}" for i in range(len(want))]


def test_node_killed_mid_job(cluster, long_reference, tmp_path):
    c, workers = cluster
    inp, want = long_reference
    out = tmp_path / "merged.jsonl"
    plan = json.loads(subprocess.run([str(BINARY), "batch", "plan", "--threads", "1", "--input", str(inp), "--shards", str(SHARDS), "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    expected = [s["requests"] for s in plan["per_shard"]]
    result = {}
    job = threading.Thread(daemon=True, target=lambda: result.setdefault("status", run_job(
        str(inp), str(out), "builtin:stories260k", SHARDS, banyan=str(BINARY), threads=1, max_retries=4,
        extra=["--max-batch", "4"], poll_seconds=0.5)))
    job.start()
    # Each shard runs on its own 1-CPU node and names it in OUTPUT.shard-K-of-N.jsonl.node. Once a
    # shard on a worker node has written some records but not all, take that node away: the task
    # dies with it, mid-shard, and Ray runs it again on a surviving node, where it resumes.
    # The driver is attached to one of the simulated nodes (with every node on 127.0.0.1 Ray may pick
    # a worker); removing that one would take the driver down, so only the others are candidates.
    attached = ray._private.worker.global_worker.node._raylet_socket_name
    by_id = {w.node_id: w for w in workers if w._raylet_socket_name != attached}
    assert by_id, "the driver is attached to every worker node?"
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline:
        for k in range(SHARDS):
            try:
                node = open(node_marker(str(out), k, SHARDS)).read()
            except OSError:
                continue
            done = count_lines(shard_path(str(out), k, SHARDS))
            if node in by_id and 0 < done < expected[k] - 5:
                victim = (k, by_id[node], done)
                break
        time.sleep(0.05)
    assert victim is not None, "no worker-node shard was caught mid-way; make the workload longer"
    k, node, done_before = victim
    c.remove_node(node)
    job.join(timeout=600)
    assert not job.is_alive()
    assert result.get("status") == 0
    assert choices(out) == want
    # Every shard ends with exactly its planned lines: the killed one resumed (kept its records and
    # wrote each remaining one once) rather than starting over.
    assert [count_lines(shard_path(str(out), j, SHARDS)) for j in range(SHARDS)] == expected
    assert done_before > 0
