"""Our default serve config side by side with Infinity, on the same model and load.

    bash benchmarks/setup_infinity.sh      # once: Infinity in benchmarks/.infinity-venv
    PYTHONPATH=platform .venv/bin/python benchmarks/serve_vs_infinity.py --rounds 2 --seconds 15

Each round starts our server as a user would (``serve run jobs/configs/serve.yaml``, a copy
with only its ports changed to free ones) and Infinity (``infinity_emb v2 --model-id
<all-MiniLM-L6-v2 folder> --engine torch --device cpu``, the folder of the ``minilm``
registry model), one after the other, the order alternating between rounds so that both
see similar load from the rest of the machine. On each server, in turn:

- start-up: seconds from the command's launch to its first answered embeddings request;
- three cells, each ``--seconds`` of load after ``--warmup`` from a separate process (the
  load generator of ``serve_load.py``): 32 clients x 1 sentence, 1 client x 1 sentence
  (latency), 8 clients x 32 sentences (bulk).

Printed: one line per server, round and cell (req/s, items/s, p50, p99, errors, the load
average when it ran), the per-server medians over rounds, and the ratios ours/Infinity.
Everything listens on 127.0.0.1 at free ports.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve_load import run_load  # noqa: E402

CELLS = (("32 clients x 1", 32, 1), ("1 client x 1", 1, 1), ("8 clients x 32", 8, 32))


def free_port() -> int:
    """A TCP port nobody listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A server under test: how to start it and where its embeddings route is."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    url: str
    path: str
    proc: subprocess.Popen | None = None
    log: Any = None

    def start(self, timeout_s: float, log_dir: Path) -> float:
        """Launch; seconds until an embeddings request is answered."""
        self.log = open(log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - closed in stop
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends it and its children
        )  # fmt: skip
        body = json.dumps({"input": ["start-up probe"]}).encode()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {log_dir}")
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"{self.name} not answering after {timeout_s} s; see {log_dir}")
            try:
                req = urllib.request.Request(
                    self.url + self.path, body, {"content-type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGINT (``serve run`` shuts Serve and its local Ray down), then SIGKILL to what
        is left of its process group (its own session: nobody else's processes)."""
        if self.proc is not None:
            pgid = self.proc.pid  # start_new_session: the group is the child's own pid
            if self.proc.poll() is None:
                os.killpg(pgid, signal.SIGINT)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        if self.log is not None:
            self.log.close()


HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")


def ours(config: Path, tmp: Path) -> Server:
    """``serve run`` on a copy of ``config`` whose only changes are free ports: HTTP, and
    HAProxy's stats and metrics where the config turns HAProxy on."""
    cfg = yaml.safe_load(config.read_text())
    port = free_port()
    cfg.setdefault("http_options", {}).update(host="127.0.0.1", port=port)
    blocks = [cfg.get("controller_options") or {}] + list(cfg.get("applications") or [])
    ports = {name: str(free_port()) for name in HAPROXY_PORTS}
    for block in blocks:
        env_vars = (block.get("runtime_env") or {}).get("env_vars") or {}
        if env_vars.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
            block["runtime_env"]["env_vars"] = {**env_vars, **ports}
    copy = tmp / "serve.yaml"
    copy.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(REPO / "platform"))
    env.pop("RAY_ADDRESS", None)  # a local Ray of its own, as `serve run` starts for a user
    serve = str(Path(sys.executable).parent / "serve")
    return Server("uniembed", [serve, "run", str(copy)], env, f"http://127.0.0.1:{port}",
                  "/v1/embeddings")  # fmt: skip


def infinity(venv: Path, model_dir: str) -> Server:
    """Infinity 0.0.78 (torch engine, CPU) from its own venv on ``model_dir``."""
    port = free_port()
    exe = venv / "bin" / "infinity_emb"
    if not exe.exists():
        raise SystemExit(f"{exe} not found: run `bash benchmarks/setup_infinity.sh` first")
    cmd = [str(exe), "v2", "--model-id", model_dir, "--engine", "torch", "--device", "cpu",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = dict(os.environ, INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1")
    env.pop("PYTHONPATH", None)
    return Server("infinity", cmd, env, f"http://127.0.0.1:{port}", "/embeddings")


def _row(name: str, rnd: int, cell: str, r: dict[str, Any]) -> str:
    return (
        f"{name:<9} r{rnd} {cell:<15} {r['rps']:8.1f} req/s {r['items_s']:8.1f} items/s  "
        f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  errors {r['errors']:>3}  "
        f"load {r['load']:.2f}"
    )


def start(make: Any, args: argparse.Namespace, log_dir: Path, tries: int = 3) -> tuple:
    """A started server from ``make()``, its start-up seconds and its failed starts (on an
    overloaded machine Ray's node start-up can time out: that start is counted, and
    retried)."""
    failures = 0
    while True:
        server = make()
        try:
            return server, server.start(args.startup_timeout, log_dir), failures
        except (RuntimeError, TimeoutError) as e:
            server.stop()
            failures += 1
            print(f"{server.name:<9} start failed ({e})", flush=True)
            if failures >= tries:
                raise


def measure(make: Any, rnd: int, args: argparse.Namespace, log_dir: Path) -> dict:
    """Start a server, run every cell on it, stop it; its figures."""
    out: dict[str, Any] = {}
    server, out["startup_s"], out["failed_starts"] = start(make, args, log_dir, args.start_tries)
    try:
        print(f"{server.name:<9} r{rnd} start-up {out['startup_s']:.1f} s", flush=True)
        for cell, clients, items in CELLS:
            load = os.getloadavg()[0]
            r = run_load(server.url, clients, args.seconds, args.warmup, path=server.path,
                         items=items)  # fmt: skip
            r["items_s"] = r["rps"] * items
            r["load"] = load
            out[cell] = r
            print(_row(server.name, rnd, cell, r), flush=True)
    finally:
        server.stop()
    return out


def _median(runs: list[dict], cell: str, key: str) -> float:
    return statistics.median(run[cell][key] for run in runs)


def summary(results: dict[str, list[dict]]) -> list[str]:
    """The medians over rounds per server and cell, and the ratios ours/peer."""
    a, b = results["uniembed"], results["infinity"]
    lines = [
        "| cell | server | req/s | items/s | p50 ms | p99 ms | errors | start-up s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell, _, _ in CELLS:
        for name, runs in (("uniembed", a), ("infinity", b)):
            errors = sum(run[cell]["errors"] for run in runs)
            start = ", ".join(f"{run['startup_s']:.1f}" for run in runs)
            failed = sum(run["failed_starts"] for run in runs)
            if failed:
                start += f" ({failed} failed)"
            lines.append(
                f"| {cell} | {name} | {_median(runs, cell, 'rps'):.1f} | "
                f"{_median(runs, cell, 'items_s'):.1f} | {_median(runs, cell, 'p50_ms'):.1f} | "
                f"{_median(runs, cell, 'p99_ms'):.1f} | {errors} | {start} |"
            )
    lines.append("")
    lines.append("ratios ours/Infinity (medians over rounds):")
    for cell, _, _ in CELLS:
        parts = [
            f"{key} {_median(a, cell, key) / _median(b, cell, key):.2f}x"
            for key in ("rps", "items_s", "p50_ms", "p99_ms")
        ]
        lines.append(f"  {cell:<15} " + "  ".join(parts))
    su = statistics.median(r["startup_s"] for r in a) / statistics.median(r["startup_s"] for r in b)
    lines.append(f"  start-up        {su:.2f}x")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Interleave the servers over ``--rounds`` and print the table and ratios."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=str(REPO / "jobs/configs/serve.yaml"))
    p.add_argument("--infinity-venv", default=str(HERE / ".infinity-venv"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=15.0, help="load per cell")
    p.add_argument("--warmup", type=float, default=2.0, help="load before each cell's window")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--start-tries", type=int, default=3, help="starts per server and round")
    p.add_argument("--only", choices=["uniembed", "infinity"], default=None)
    args = p.parse_args(argv)

    from uniembed.models.packaged import minilm_folder

    model_dir = str(minilm_folder())
    names = [args.only] if args.only else ["uniembed", "infinity"]
    results: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="serve_vs_infinity_") as tmp_s:
        tmp = Path(tmp_s)
        log_dir = Path(tempfile.mkdtemp(prefix="serve_vs_infinity_logs_"))
        print(f"model {model_dir}; {args.seconds:g} s per cell after {args.warmup:g} s warm-up;"
              f" {os.cpu_count()} CPUs; logs in {log_dir}", flush=True)  # fmt: skip
        for rnd in range(1, args.rounds + 1):
            order = names if rnd % 2 else names[::-1]
            for name in order:
                if name == "uniembed":
                    make = lambda: ours(Path(args.config), tmp)  # noqa: E731
                else:
                    make = lambda: infinity(Path(args.infinity_venv), model_dir)  # noqa: E731
                results[name].append(measure(make, rnd, args, log_dir))
    if len(names) == 2:
        print()
        print("\n".join(summary(results)))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("command: PYTHONPATH=platform .venv/bin/python benchmarks/serve_vs_infinity.py "
          + " ".join(argv if argv is not None else sys.argv[1:]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
