"""Domain adaptation on a Debian dictionary: uniembed's mine -> tune against
sentence-transformers' own recipe, side by side in one run, same rows and settings.

    bash benchmarks/setup_domain_adaptation.sh          # dict-vera + the peer's venv
    python benchmarks/domain_adaptation.py [--dict vera] [--train 1500] [--test 500] \\
        [--steps 100] [--batch 32] [--lr 5e-5] [--negatives 1] \\
        [--losses infonce,unime,rzen,kalm] [--out outputs/bench-domain]

Data: the dictd files of a Debian dictionary package (``/usr/share/dictd/<dict>.*``;
dict-vera: computing acronyms -> their expansions). Headwords are shuffled with a fixed
seed and split: ``--test`` headwords with one entry each are the test terms; every entry
sharing a headword with them (case-insensitive) is kept out of training and out of the
mining pool. Training takes the first entry of up to ``--train`` other headwords: query =
the term, positive = its definition. The test set gives each term its definition among
``--candidates`` definitions of other test terms (MMEB format, scored by our evaluate job).

Side by side, every model evaluated by ``jobs/evaluate.py``:

* the base model (all-MiniLM-L6-v2);
* ours: ``jobs/mine.py`` judge-free (``selection.mode=similarity``, ``--negatives`` per
  row), then ``jobs/tune.py`` per loss (full fine-tuning, 1 worker); ``unime`` takes its
  ``--negatives`` hardest in-batch instead of the mined ones;
* the model soup of the ``rzen`` and ``kalm`` exports (``jobs/soup.py``) and their
  delta-guided fusion around the base model;
* the peer (``benchmarks/_peer_st_recipe.py`` in ``benchmarks/.venv-peer``):
  ``mine_hard_negatives`` (``--negatives``, hardest) + ``MultipleNegativesRankingLoss``
  (scale 20, its default) + ``SentenceTransformerTrainer`` (NO_DUPLICATES batches), the same
  rows, steps, batch, learning rate and warmup.

Throughput is the wall time between optimizer-step ends after the first two steps
(start-up, mining and the export excluded), as samples/s; peak RSS is the train worker's
(ours, sampled every 0.2 s) and the peer's process (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PEER_PYTHON = REPO / "benchmarks" / ".venv-peer" / "bin" / "python"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(s: str) -> int:
    v = 0
    for c in s:
        v = v * 64 + _B64.index(c)
    return v


def dictionary_entries(name: str) -> list[tuple[str, str]]:
    """``(headword, definition)`` of every entry of ``/usr/share/dictd/<name>``."""
    index = Path(f"/usr/share/dictd/{name}.index")
    if not index.is_file():
        raise SystemExit(f"{index} missing: run bash benchmarks/setup_domain_adaptation.sh {name}")
    data = gzip.open(f"/usr/share/dictd/{name}.dict.dz").read()  # dictzip is gzip
    out = []
    for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
        head, off, size = line.split("\t")[:3]
        if head.startswith("00-database") or head.startswith("00database"):
            continue
        body = data[_b64(off) : _b64(off) + _b64(size)].decode("utf-8", "replace")
        lines = body.strip().splitlines()
        definition = " ".join(" ".join(lines[1:]).split())
        term = lines[0].strip() if lines else head
        if definition and term:
            out.append((term, definition))
    return out


def split(
    entries: list[tuple[str, str]], n_train: int, n_test: int, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Train and test entries, split by headword (see the module docstring)."""
    by_head: dict[str, list[tuple[str, str]]] = {}
    for term, definition in entries:
        by_head.setdefault(term.lower(), []).append((term, definition))
    heads = sorted(by_head)
    random.Random(seed).shuffle(heads)
    test_heads = [h for h in heads if len(by_head[h]) == 1][:n_test]
    held = set(test_heads)
    train = [by_head[h][0] for h in heads if h not in held][:n_train]
    test = [by_head[h][0] for h in test_heads]
    return train, test


def write_data(out: Path, train, test, candidates: int, seed: int) -> dict[str, Path]:  # noqa: ANN001
    """The mine job's queries and pool, the peer's pairs, and the evaluation file."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{k}.jsonl" for k in ("queries", "pool", "pairs", "test")}
    with paths["queries"].open("w") as q, paths["pool"].open("w") as p:
        with paths["pairs"].open("w") as pairs:
            for i, (term, definition) in enumerate(train):
                q.write(json.dumps({"id": f"q{i}", "text": term, "pos_id": f"d{i}"}) + "\n")
                p.write(json.dumps({"id": f"d{i}", "text": definition}) + "\n")
                pairs.write(json.dumps({"anchor": term, "positive": definition}) + "\n")
    rng = random.Random(seed)
    with paths["test"].open("w") as f:
        for i, (term, definition) in enumerate(test):
            others = [d for j, (_, d) in enumerate(test) if j != i]
            cands = [definition, *rng.sample(others, min(candidates - 1, len(others)))]
            f.write(
                json.dumps(
                    {
                        "qry_text": term,
                        "qry_img_path": "",
                        "tgt_text": cands,
                        "tgt_img_path": [""] * len(cands),
                    }
                )
                + "\n"
            )
    return paths


class RssSampler:
    """Peak RSS (MB) per process of this process tree, sampled in a thread."""

    def __init__(self) -> None:
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            for proc in [me, *me.children(recursive=True)]:
                try:
                    name = " ".join(proc.cmdline())[:80] or proc.name()
                    rss = proc.memory_info().rss / 2**20
                except (psutil.Error, OSError):
                    continue
                self.peak[name] = max(self.peak.get(name, 0.0), rss)

    def worker_peak(self) -> float:
        """The train worker's peak (the largest ``ray::`` train process)."""
        workers = [v for k, v in self.peak.items() if "RayTrainWorker" in k or "TrainWorker" in k]
        return max(workers) if workers else max(self.peak.values(), default=0.0)


def _samples_per_s(ends: list[float], batch: int) -> float:
    ends = ends[2:]
    if len(ends) < 2:
        return float("nan")
    return batch * (len(ends) - 1) / (ends[-1] - ends[0])


def evaluate(job_main, model: str, test: Path, out: Path) -> dict[str, float]:  # noqa: ANN001
    """p@1, MRR and nDCG@10 of ``model`` on the test split through the evaluate job."""
    job_main(["--model", model, "--data", str(test), "--output", str(out), "baseline=null"])
    metrics = json.loads((out / "metrics.json").read_text())
    (task,) = metrics["tasks"].values()
    m = task["metrics"]
    return {"p@1": m["precision@1"], "mrr": m["mrr"], "ndcg@10": m["ndcg@10"]}


def start_ray(attempts: int = 5) -> None:
    """One local Ray for every job of the run (they join it); on a loaded machine the
    raylet may miss Ray's fixed 30 s start-up window, so retry."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
            return
        except Exception as e:  # noqa: BLE001 - retried, then raised
            if attempt == attempts:
                raise
            print(f"ray.init failed ({e}); retrying", flush=True)
            ray.shutdown()
            time.sleep(10)


def load_job(name: str):  # noqa: ANN201
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"job_{name}", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.main


def _warmup(args) -> int:  # noqa: ANN001
    """Warmup steps of both sides: a tenth of ``--steps`` (speed rounds keep it too)."""
    return max(1, args.steps // 10)


def ours_tune(tune_main, args, out: Path, loss: str, steps: int, run: str, export: bool = True):  # noqa: ANN001, ANN201
    """One ``jobs/tune.py`` run on the mined rows: its samples/s (between optimizer-step
    ends after the first two), wall and start-up seconds, the train worker's peak RSS."""
    from uniembed.training.metrics import read_metrics

    tune_args = [
        "--input",
        str(out / "mine"),
        "--model",
        "minilm",
        "--loss",
        loss,
        "--storage-path",
        str(out / "runs"),
        "--name",
        run,
        "lora.enabled=false",
        f"train.max_steps={steps}",
        f"train.batch_size={args.batch}",
        f"train.lr={args.lr}",
        f"train.warmup_steps={_warmup(args)}",
        f"loss.num_negatives={args.negatives}",
        f"checkpoint.every_steps={steps}",
        f"checkpoint.export={str(export).lower()}",
        "scaling.cpus_per_worker=1",
        "prompt.max_length=null",
        *([f"loss.temperature={args.temperature}"] if args.temperature else []),
    ]
    t0, launched = time.perf_counter(), time.time()
    with RssSampler() as rss:
        tune_main(tune_args)
    wall = time.perf_counter() - t0
    metrics = read_metrics(str(out / "runs" / run / "metrics.csv"))
    return {
        "samples/s": _samples_per_s([m["time"] for m in metrics], args.batch),
        "wall_s": wall,
        "rss_mb": rss.worker_peak(),
        # Start-up: the job's launch to the start of its first optimizer step.
        "startup_s": metrics[0]["time"] - metrics[0]["step_time_s"] - launched,
        "export": out / "runs" / run / "export",
    }


def peer_train(args, out: Path, pairs: Path, steps: int) -> dict:  # noqa: ANN001
    """sentence-transformers' recipe in its own venv (``_peer_st_recipe.py``)."""
    from uniembed.models.packaged import minilm_folder

    cmd = [
        str(PEER_PYTHON),
        str(REPO / "benchmarks" / "_peer_st_recipe.py"),
        "--pairs",
        str(pairs),
        "--model",
        str(minilm_folder()),
        "--out",
        str(out),
        "--negatives",
        str(args.negatives),
        "--steps",
        str(steps),
        "--batch",
        str(args.batch),
        "--lr",
        str(args.lr),
        "--warmup",
        str(_warmup(args)),
        "--scale",
        str(1.0 / args.peer_temperature),
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    peer = json.loads((out / "peer.json").read_text())
    return {
        "samples/s": _samples_per_s(peer["step_ends"], args.batch),
        "wall_s": wall,
        "rss_mb": peer["peak_rss_mb"],
        "mine_s": peer["mine_s"],
    }


def speed_rounds(args, out: Path, pairs: Path, tune_main) -> list[tuple[float, float]]:  # noqa: ANN001
    """Train samples/s of ours and the peer, interleaved (the order alternates per round)
    on the same rows, batch and negatives: ``--speed-rounds`` x ``--speed-steps``."""
    pairs_of: list[tuple[float, float]] = []
    for r in range(1, args.speed_rounds + 1):
        got: dict[str, float] = {}
        for side in ("ours", "peer") if r % 2 else ("peer", "ours"):
            if side == "ours":
                run = ours_tune(
                    tune_main, args, out, args.speed_loss, args.speed_steps, f"speed-r{r}",
                    export=False,
                )  # fmt: skip
            else:
                run = peer_train(args, out / f"speed-peer-r{r}", pairs, args.speed_steps)
            got[side] = run["samples/s"]
            print(f"speed round {r}: {side} {run['samples/s']:.1f} samples/s", flush=True)
        pairs_of.append((got["ours"], got["peer"]))
    return pairs_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dict", default="vera")
    p.add_argument("--train", type=int, default=1500)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--negatives", type=int, default=1)
    p.add_argument("--losses", default="infonce,unime,rzen,kalm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/bench-domain")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument(
        "--peer-temperature",
        type=float,
        default=0.05,
        help="the peer loss' 1/scale (MNRL's default scale 20)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="ours' loss.temperature (default: tune.yaml's)",
    )
    p.add_argument("--speed-rounds", type=int, default=2, help="interleaved throughput rounds")
    p.add_argument("--speed-steps", type=int, default=30)
    p.add_argument("--speed-loss", default="infonce")
    args = p.parse_args()
    command = "python benchmarks/domain_adaptation.py " + shlex.join(sys.argv[1:])
    out = Path(args.out).resolve()

    entries = dictionary_entries(args.dict)
    train, test = split(entries, args.train, args.test, args.seed)
    train_terms = {t.lower() for t, _ in train}
    assert not train_terms & {t.lower() for t, _ in test}, "a test term reached training"
    paths = write_data(out / "data", train, test, args.candidates, args.seed)
    print(
        f"dict-{args.dict}: {len(entries)} entries; {len(train)} train pairs, {len(test)} test "
        f"terms x {args.candidates} candidates",
        flush=True,
    )
    start_ray()
    evaluate_main, mine_main = load_job("evaluate"), load_job("mine")
    tune_main, soup_main = load_job("tune"), load_job("soup")
    rows: list[dict] = []
    base = {
        "model": "base all-MiniLM-L6-v2",
        **evaluate(evaluate_main, "minilm", paths["test"], out / "eval-base"),
    }
    rows.append(base)

    # Ours: judge-free mine, then one tune run per loss.
    t0 = time.perf_counter()
    mine_main(
        [
            "--queries",
            str(paths["queries"]),
            "--pool",
            str(paths["pool"]),
            "--output",
            str(out / "mine"),
            "--embedder",
            "minilm",
            "--overwrite",
            "max_queries=null",
            "group_field=null",
            "shard_size=512",
            "selection.mode=similarity",
            f"selection.num_negatives={max(args.negatives, 1)}",
            "retrieval.k=20",
            "retrieval.easy_margin=null",
            "embed_compute.cpus_per_actor=1",
        ]
    )
    mine_s = time.perf_counter() - t0
    exports = {}
    for loss in [x for x in args.losses.split(",") if x]:
        run = ours_tune(tune_main, args, out, loss, args.steps, f"tune-{loss}")
        exports[loss] = run.pop("export")
        rows.append(
            {
                "model": f"uniembed tune --loss {loss}",
                **evaluate(evaluate_main, str(exports[loss]), paths["test"], out / f"eval-{loss}"),
                **run,
                "mine_s": mine_s,
            }
        )
        print(rows[-1], flush=True)
    if "rzen" in exports and "kalm" in exports:
        pair = ["--inputs", str(exports["rzen"]), "--inputs", str(exports["kalm"])]
        soup_main([*pair, "--output", str(out / "soup")])
        soup_main([*pair, "--output", str(out / "fused"), "--method", "delta", "--base", "minilm"])
        for name, folder in (
            ("soup (mean) of rzen + kalm", "soup"),
            ("delta fusion of rzen + kalm", "fused"),
        ):
            rows.append(
                {
                    "model": name,
                    **evaluate(
                        evaluate_main, str(out / folder), paths["test"], out / f"eval-{folder}"
                    ),
                }
            )

    if not args.skip_peer:
        run = peer_train(args, out / "peer", paths["pairs"], args.steps)
        rows.append(
            {
                "model": "sentence-transformers mine_hard_negatives + MNRL",
                **evaluate(
                    evaluate_main, str(out / "peer" / "model"), paths["test"], out / "eval-peer"
                ),
                **run,
            }
        )
    speed = speed_rounds(args, out, paths["pairs"], tune_main) if args.speed_rounds else []

    print(
        f"\ndict-{args.dict}: {len(train)} train pairs, {len(test)} test terms x {args.candidates} "
        f"candidates; {args.steps} steps x {args.batch}, lr {args.lr}, {args.negatives} negative(s)"
    )
    print(
        "| model | p@1 | MRR | nDCG@10 | train samples/s | wall s | start-up s | peak RSS MB "
        "| mine s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:

        def f(key: str, fmt: str) -> str:
            return format(r[key], fmt) if key in r else ""

        print(
            f"| {r['model']} | {f('p@1', '.3f')} | {f('mrr', '.3f')} | {f('ndcg@10', '.3f')} | "
            f"{f('samples/s', '.1f')} | {f('wall_s', '.0f')} | {f('startup_s', '.1f')} | "
            f"{f('rss_mb', '.0f')} | "
            f"{f('mine_s', '.0f')} |"
        )
    peer = next((r for r in rows if r["model"].startswith("sentence-transformers")), None)
    ours = [r for r in rows if r["model"].startswith("uniembed")]
    if peer and ours:
        best = max(ours, key=lambda r: r["p@1"])
        print(f"best ours ({best['model']}) p@1 - peer p@1: {best['p@1'] - peer['p@1']:+.3f}")
        for r in ours:
            print(
                f"{r['model']}: samples/s ours/peer {r['samples/s'] / peer['samples/s']:.2f}; "
                f"peak RSS ratio {r['rss_mb'] / peer['rss_mb']:.2f}"
            )
        print(f"mining: ours {ours[0]['mine_s']:.0f} s, peer {peer['mine_s']:.0f} s")
    for r, (a, b) in enumerate(speed, 1):
        print(f"speed round {r} ({args.speed_steps} steps): ours {a:.1f}, peer {b:.1f} samples/s")
    if speed:
        ratio = statistics.median(a / b for a, b in speed)
        print(
            f"train samples/s ours/peer, interleaved, median of {len(speed)} rounds: {ratio:.2f}x"
        )
    (out / "table.json").write_text(json.dumps({"rows": rows, "speed": speed}, indent=2))
    print(f"reproduce: {command}")


if __name__ == "__main__":
    main()
