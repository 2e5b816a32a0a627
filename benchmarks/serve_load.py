"""Load test of the serve app: dynamic batching vs max_batch_size=1, and Serve's overhead.

    PYTHONPATH=platform python benchmarks/serve_load.py --model minilm --clients 32 --seconds 10

For each setting the app is deployed on a local Serve (embedder only, on 127.0.0.1), and a
separate process runs N concurrent clients for T seconds, each posting one-sentence
``/v1/embeddings`` requests back to back. Printed per setting: requests/s, p50 and p99
latency, errors. Then: the batching speed-up (target >= 3x at 32 clients, no errors), and
Serve's per-request overhead = p50 latency of one client through HTTP + Serve minus the
median time of the same call on the model directly in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    c: Any, texts: list[str], offset: int, t_start: float, t_end: float, out: dict
) -> None:
    i = offset
    while True:
        start = time.perf_counter()
        if start >= t_end:
            return
        try:
            r = await c.post("/v1/embeddings", json={"input": texts[i % len(texts)]})
            ok = r.status_code == 200
        except Exception:  # noqa: BLE001 - counted as an error, the load goes on
            ok = False
        done = time.perf_counter()
        if start >= t_start and done <= t_end:
            out["latencies" if ok else "errors"].append(done - start)
        i += 7


async def _load(url: str, clients: int, seconds: float, warmup: float) -> dict[str, Any]:
    import httpx

    texts = _sentences()
    out: dict[str, list[float]] = {"latencies": [], "errors": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        now = time.perf_counter()
        t_start, t_end = now + warmup, now + warmup + seconds
        await asyncio.gather(*(_client(c, texts, k, t_start, t_end, out) for k in range(clients)))
    lat = sorted(out["latencies"])
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": len(out["errors"]),
        "rps": len(lat) / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
    }


def run_load(url: str, clients: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Run the load generator in a separate Python process; its JSON result."""
    cmd = [sys.executable, __file__, "--load-url", url, "--clients", str(clients),
           "--seconds", str(seconds), "--warmup", str(warmup)]  # fmt: skip
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
                "batch_wait_timeout_s": 0.005,
                "max_ongoing_requests": 128,
            },
        },
        "reranker": {"enabled": False},
        "retriever": {"enabled": False},
        "ingress": {"num_cpus": 0.25, "max_ongoing_requests": 256},
        "auth": {"api_key_env": None},
    }


def direct_latency_ms(model: str, reps: int = 50) -> float:
    """Median time of one single-sentence ``embed`` call on the model in this process."""
    from uniembed.models import EmbedInput, load_embedder

    embedder = load_embedder(model)
    texts = _sentences()
    embedder.embed([EmbedInput(text=texts[0])])
    times = []
    for i in range(reps):
        start = time.perf_counter()
        embedder.embed([EmbedInput(text=texts[(i * 7) % len(texts)])])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _line(name: str, r: dict[str, Any]) -> str:
    return (
        f"{name:<28} clients={r['clients']:>3}  {r['rps']:8.1f} req/s  "
        f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
        f"requests {r['requests']:>6}  errors {r['errors']}"
    )


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
    p.add_argument("--load-url", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.load_url:  # the load-generator process
        result = asyncio.run(_load(args.load_url, args.clients, args.seconds, args.warmup))
        print(json.dumps(result))
        return 0

    import ray
    import torch
    from ray import serve

    from uniembed.serving import build_app

    # The model runs with the thread count Ray gives a 1-CPU replica, so that the direct
    # call and the replica do the same work.
    torch.set_num_threads(max(1, int(args.num_cpus)))
    direct_before = direct_latency_ms(args.model)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, mbs in [("batched", args.max_batch_size), ("unbatched", 1)]:
            app_args = _app_args(args.model, mbs, args.num_cpus, args.micro_batch_size)
            serve.run(build_app(app_args), name="bench")
            results[f"{name} (max_batch_size={mbs})"] = run_load(
                url, args.clients, args.seconds, args.warmup
            )
            if name == "unbatched":
                results["one client"] = run_load(url, 1, args.seconds, args.warmup)
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    # Other work on a shared machine slows a measurement down, never speeds it up.
    direct_ms = min(direct_before, direct_latency_ms(args.model))
    print(f"model {args.model}, {args.seconds:g} s per setting on 127.0.0.1")
    for name, r in results.items():
        print(_line(name, r))
    batched, unbatched = (results[k]["rps"] for k in list(results)[:2])
    speedup = batched / unbatched if unbatched else float("inf")
    errors = sum(r["errors"] for r in results.values())
    overhead = results["one client"]["p50_ms"] - direct_ms
    print(f"batching speed-up at {args.clients} clients: {speedup:.2f}x (target >= 3x)")
    print(f"direct model call p50 {direct_ms:.1f} ms; Serve + HTTP overhead per request "
          f"{overhead:.1f} ms (one client, unbatched)")  # fmt: skip
    print(f"errors: {errors}")
    return 0 if speedup >= 3 and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
