"""Load test of the serve app: dynamic batching vs max_batch_size=1, and Serve's overhead.

    PYTHONPATH=platform python benchmarks/serve_load.py --model minilm --clients 32 --seconds 10

For each setting the app is deployed on a local Serve (embedder only, on 127.0.0.1), and a
separate process runs N concurrent clients for T seconds, each posting one-sentence
``/v1/embeddings`` requests back to back. Printed per setting: requests/s, p50 and p99
latency, errors. Then: the batching speed-up (target >= 3x at 32 clients, no errors), and
Serve's per-request overhead = p50 latency of one client through HTTP + Serve minus the
median time of the same call on the model directly in this process.

Both ingress modes are measured (``--mode``): HTTP through Serve's proxy actor (the
default deployment) and Serve's throughput-optimised direct ingress. The model's own gain
from batching (items/s in batches of ``--max-batch-size`` vs one at a time, same threads,
no server) is printed too: no server can batch better than that ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SENTENCES_FILE = "wordnet/corpus.jsonl"


def _sentences(n: int = 512) -> list[str]:
    from uniembed.data.demo import demo_path

    lines = Path(demo_path(SENTENCES_FILE)).read_text().splitlines()[:n]
    return [json.loads(x)["text"] for x in lines]


# --- the load generator (runs in its own process) -----------------------------------------
async def _client(
    session: Any, url: str, texts: list[str], offset: int, t_start: float, t_end: float,
    out: dict, items: int = 1,
) -> None:  # fmt: skip
    i = offset
    while True:
        start = time.perf_counter()
        if start >= t_end:
            return
        if items == 1:
            body: dict[str, Any] = {"input": texts[i % len(texts)]}
        else:
            body = {"input": [texts[(i + j) % len(texts)] for j in range(items)]}
        try:
            async with session.post(url, json=body) as r:
                await r.read()
                ok = r.status == 200
        except Exception:  # noqa: BLE001 - counted as an error, the load goes on
            ok = False
        done = time.perf_counter()
        if start >= t_start and done <= t_end:
            out["latencies" if ok else "errors"].append(done - start)
        i += 7


async def _load(
    url: str, clients: int, seconds: float, warmup: float, path: str = "/v1/embeddings",
    items: int = 1,
) -> dict[str, Any]:  # fmt: skip
    # aiohttp (a dependency of Ray Serve) costs the shared CPUs less per request than
    # httpx, so that the load generator takes less from the server it measures.
    import aiohttp

    texts = _sentences()
    out: dict[str, list[float]] = {"latencies": [], "errors": []}
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        now = time.perf_counter()
        t_start, t_end = now + warmup, now + warmup + seconds
        target = f"{url}{path}"
        await asyncio.gather(
            *(_client(session, target, texts, k, t_start, t_end, out, items)
              for k in range(clients))
        )  # fmt: skip
    lat = sorted(out["latencies"])
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": len(out["errors"]),
        "rps": len(lat) / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
    }


def run_load(
    url: str, clients: int, seconds: float, warmup: float, path: str = "/v1/embeddings",
    items: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Run the load generator in a separate Python process; its JSON result.

    Each of ``clients`` posts ``items`` sentences per request to ``url + path``.
    """
    cmd = [sys.executable, __file__, "--load-url", url, "--clients", str(clients),
           "--seconds", str(seconds), "--warmup", str(warmup), "--load-path", path,
           "--load-items", str(items)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the driver -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _app_args(model: str, max_batch_size: int, num_cpus: float, micro: int) -> dict[str, Any]:
    return {
        "embedder": {
            "model": model,
            "device": "cpu",
            "micro_batch_size": micro,
            "deployment": {
                "num_cpus": num_cpus,
                "max_batch_size": max_batch_size,
                "batch_wait_timeout_s": 0.01,
                "max_ongoing_requests": 128,
            },
        },
        "reranker": {"enabled": False},
        "retriever": {"enabled": False},
        "ingress": {"num_cpus": 0.25, "max_ongoing_requests": 512},
        "auth": {"api_key_env": None},
    }


def direct_latency_ms(embedder: Any, reps: int = 50) -> float:
    """Median time of one single-sentence ``embed`` call on the model in this process."""
    from uniembed.models import EmbedInput

    texts = _sentences()
    embedder.embed([EmbedInput(text=texts[0])])
    times = []
    for i in range(reps):
        start = time.perf_counter()
        embedder.embed([EmbedInput(text=texts[(i * 7) % len(texts)])])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def model_batch_gain(
    embedder: Any, batch: int, micro: int, seconds: float = 3.0
) -> tuple[float, float]:
    """Items/s of the bare model one input at a time, and in batches of ``batch``."""
    from uniembed.models import EmbedInput
    from uniembed.serving.batching import embed_isolated

    inputs = [EmbedInput(text=t) for t in _sentences()]
    embed_isolated(embedder, inputs[:batch], micro)
    rates = []
    for size in (1, batch):
        done, start, i = 0, time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            embed_isolated(embedder, inputs[i : i + size], micro)
            done, i = done + size, (i + size) % (len(inputs) - size)
        rates.append(done / (time.perf_counter() - start))
    return rates[0], rates[1]


def _line(name: str, r: dict[str, Any]) -> str:
    return (
        f"{name:<40} clients={r['clients']:>3}  {r['rps']:8.1f} req/s  "
        f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
        f"requests {r['requests']:>6}  errors {r['errors']}"
    )


def measure_setting(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """One ingress mode and batch size on a fresh local Ray (and one client if unbatched).

    ``direct``: Ray Serve's throughput-optimised mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED``),
    where the ingress replica serves HTTP itself instead of behind the proxy actor. It is
    a cluster-wide setting, so it is set before Ray starts; the replica's port is pinned.
    """
    direct_port = _free_port()
    if args.mode == "direct":
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(direct_port)
        os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(direct_port + 1)  # exclusive
    import ray
    from ray import serve

    from uniembed.serving import build_app

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{direct_port if args.mode == 'direct' else port}"
    mbs = args.setting_batch
    name = "batched" if mbs > 1 else "unbatched"
    try:
        app_args = _app_args(args.model, mbs, args.num_cpus, args.micro_batch_size)
        serve.run(build_app(app_args), name="bench")
        _wait_ready(url)
        load = run_load(url, args.clients, args.seconds, args.warmup)
        results = {f"{name} (max_batch_size={mbs})": load}
        if mbs == 1:
            results["one client"] = run_load(url, 1, args.seconds, args.warmup)
    finally:
        serve.shutdown()
        ray.shutdown()
    return results


def _wait_ready(url: str, timeout_s: float = 60.0) -> None:
    import urllib.request

    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.time() > deadline:
                raise
        time.sleep(0.5)


def _run_setting(mode: str, batch: int, argv: list[str]) -> dict[str, dict[str, Any]]:
    """``measure_setting`` in a child process: each needs its own Ray and its settings."""
    cmd = [sys.executable, __file__, *argv, "--mode", mode, "--setting-batch", str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"mode {mode}, batch {batch} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Deploy each setting, load it from a separate process, print the figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="minilm")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--micro-batch-size", type=int, default=16, help="length-sorted passes")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs of the embedder replica")
    modes = ["proxy", "direct", "both"]
    p.add_argument("--mode", choices=modes, default="both", help="ingress mode(s) to measure")
    p.add_argument("--setting-batch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--load-url", default=None, help=argparse.SUPPRESS)
    p.add_argument("--load-path", default="/v1/embeddings", help=argparse.SUPPRESS)
    p.add_argument("--load-items", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.load_url:  # the load-generator process
        result = asyncio.run(
            _load(args.load_url, args.clients, args.seconds, args.warmup, args.load_path,
                  args.load_items)
        )  # fmt: skip
        print(json.dumps(result))
        return 0
    if args.setting_batch is not None:  # one setting, in its own process
        print(json.dumps(measure_setting(args)))
        return 0

    import torch

    from uniembed.models import load_embedder

    # The model runs with the thread count the replica gets, so that the direct call and
    # the replica do the same work.
    torch.set_num_threads(max(1, math.ceil(args.num_cpus)))
    embedder = load_embedder(args.model)
    direct_before = direct_latency_ms(embedder)
    child = [
        f"--model={args.model}", f"--clients={args.clients}", f"--seconds={args.seconds}",
        f"--warmup={args.warmup}", f"--max-batch-size={args.max_batch_size}",
        f"--micro-batch-size={args.micro_batch_size}", f"--num-cpus={args.num_cpus}",
    ]  # fmt: skip
    modes = ["proxy", "direct"] if args.mode == "both" else [args.mode]
    by_mode = {
        mode: {**_run_setting(mode, args.max_batch_size, child), **_run_setting(mode, 1, child)}
        for mode in modes
    }
    # Other work on a shared machine slows a measurement down, never speeds it up.
    direct_ms = min(direct_before, direct_latency_ms(embedder))
    one, many = model_batch_gain(embedder, args.max_batch_size, args.micro_batch_size)
    print(f"model {args.model}, {args.seconds:g} s per setting on 127.0.0.1, "
          f"{args.clients} clients")  # fmt: skip
    ok = True
    for mode, results in by_mode.items():
        for name, r in results.items():
            print(_line(f"{mode}: {name}", r))
        batched, unbatched = (results[k]["rps"] for k in list(results)[:2])
        speedup = batched / unbatched if unbatched else float("inf")
        errors = sum(r["errors"] for r in results.values())
        overhead = results["one client"]["p50_ms"] - direct_ms
        print(f"{mode}: batching speed-up {speedup:.2f}x (target >= 3x); Serve + HTTP "
              f"overhead per request {overhead:.1f} ms (one client); errors {errors}")  # fmt: skip
        ok = ok and speedup >= 3 and errors == 0
    print(f"direct model call p50 {direct_ms:.1f} ms")
    print(f"model alone: {many:.1f} items/s in batches of {args.max_batch_size} vs "
          f"{one:.1f} one at a time = {many / one:.2f}x (no server batches better)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
