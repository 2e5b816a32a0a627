"""The judge on its two engines side by side: our packed shared-prefix scorer (transformers)
against vLLM (``judge.engine: vllm``), in one run, interleaved.

    UNIEMBED_VLLM=1 bash scripts/setup.sh                 # once: vLLM's own venv
    python benchmarks/judge_engines.py                    # 200 held-out queries + the demo mine
    python benchmarks/judge_engines.py --queries 40 --no-mine
    python benchmarks/judge_engines.py --only-mine --mine-queries 64

Pairs: the demo's held-out WordNet queries (``data/demo/wordnet/judge/heldout_queries.jsonl``,
never trained on) with their gold definition and all-MiniLM-L6-v2's top ``--k`` other
definitions of the corpus (about 10 pairs per query: 200 queries give about 2,000 pairs),
judged by ``--judge`` (default: the demo's judge, SmolLM2-135M + its merged LoRA).

Printed:
- float32 vLLM against our scorer: max |dP(Yes)| (must be <= 1e-4) and the share of the
  mine job's selection decisions (per candidate: hard negative / false negative / not
  chosen, ``select_with_judge``) that differ;
- pairs/s of both, the engines taking turns chunk by chunk (``--chunk`` queries) so that
  the machine's load falls on both alike; the ratio is the figure to read;
- bfloat16 vLLM: its pairs/s, its AUC next to float32's, its max |dP(Yes)| and its share of
  changed selection decisions;
- ``--mine`` (default on): the demo mine job (``jobs/configs/mine.yaml``, ``--mine-queries``
  queries) with ``judge.engine=transformers`` and ``=vllm``: the same rows, the same
  negatives, soft labels equal to 1e-4 (:func:`compare_mined`).

vLLM runs in ``.venv-vllm`` as a child process of this script (``--serve``, JSON lines on
stdin/stdout), as the judge actors run it; engine start-up is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks.judge_quality when run as a script
HELDOUT = "wordnet/judge/heldout_queries.jsonl"
Request = tuple[str, list[str]]  # (query text, candidate texts); candidate 0 is the gold


# --- the vLLM side (runs in .venv-vllm) --------------------------------------------------
def serve(args: argparse.Namespace) -> int:
    """Child process: load a ``VllmJudge`` and answer JSON lines ``{"requests": [...]}``
    with ``{"scores": [[...]], "seconds": s}`` (seconds inside the engine calls)."""
    import torch

    from uniembed.reranker.engine_config import VllmSection
    from uniembed.reranker.prompts import JudgeInput
    from uniembed.reranker.vllm_engine import VllmJudge

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    section = VllmSection(block_size=args.block_size, cpu_kv_cache_gib=args.kv_gib)
    judge = VllmJudge.load(args.folder, device=args.device, dtype=args.dtype, section=section)
    print(json.dumps({"ready": time.perf_counter() - start}), flush=True)
    for line in sys.stdin:
        msg = json.loads(line)
        reqs = [(JudgeInput(text=q), [JudgeInput(text=c) for c in cs]) for q, cs in msg["requests"]]
        t0 = time.perf_counter()
        if msg.get("together"):
            scores = judge.score_many(reqs)
        else:
            scores = [judge.score(q, cs) for q, cs in reqs]
        seconds = time.perf_counter() - t0
        print(json.dumps({"scores": [s.tolist() for s in scores], "seconds": seconds}), flush=True)
    return 0


class VllmChild:
    """A ``--serve`` child in vLLM's venv; ``score`` sends requests, returns (scores, s)."""

    def __init__(
        self, python: str, folder: str, dtype: str, threads: int, block_size: int, device: str
    ):
        from uniembed.reranker.engine_config import VllmSection
        from uniembed.reranker.vllm_engine import vllm_env

        env = {**os.environ, **vllm_env(VllmSection(), device), "OMP_NUM_THREADS": str(threads)}
        cmd = [
            python,
            __file__,
            "--serve",
            "--folder",
            folder,
            "--dtype",
            dtype,
            "--device",
            device,
        ]
        cmd += ["--threads", str(threads), "--block-size", str(block_size)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        self.startup = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"vLLM child exited with {self.proc.wait()}")
            if line.startswith("{"):
                return json.loads(line)

    def score(
        self, requests: Sequence[Request], together: bool = False
    ) -> tuple[list[np.ndarray], float]:
        assert self.proc.stdin is not None
        msg = {"requests": [list(r) for r in requests], "together": together}
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        out = self._read()
        return [np.asarray(s, dtype=np.float64) for s in out["scores"]], out["seconds"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # the engine's teardown can hang: the work is done
            self.proc.kill()
            self.proc.wait()


# --- held-out pairs ------------------------------------------------------------------------
def lexical_top(queries: list[dict], corpus: list[dict], k: int) -> list[list[int]]:
    """Each query's top ``k`` corpus positions by shared words (no model: a cheap stand-in
    for the embedder's retrieval when the machine is too loaded to embed the corpus)."""
    from uniembed.data import schema as S

    def words(text: str) -> set[str]:
        return {w for w in "".join(c.lower() if c.isalnum() else " " for c in text).split()}

    bags = [words(c[S.TEXT]) for c in corpus]
    out = []
    for q in queries:
        qw = words(q[S.TEXT])
        overlap = np.array([len(qw & b) / (1 + len(b)) for b in bags])
        out.append(list(np.argsort(-overlap, kind="stable")[:k]))
    return out


def heldout_requests(
    n_queries: int, k: int, retrieval: str = "minilm"
) -> tuple[list[Request], list[list[str]]]:
    """The first ``n_queries`` held-out queries: (query text, [gold, top-k others]) and the
    candidates' ids; definitions identical to the gold are left out (they are the gold).
    ``retrieval``: ``minilm`` (all-MiniLM-L6-v2 cosine) or ``lexical`` (shared words)."""
    from benchmarks.judge_quality import _rows, retrieve

    from uniembed.data import schema as S
    from uniembed.data.demo import DEFINITION_GROUP, POS_ID, WORDNET_CORPUS

    queries, corpus = _rows(HELDOUT)[:n_queries], _rows(WORDNET_CORPUS)
    index = {c[S.ID]: i for i, c in enumerate(corpus)}
    requests, ids = [], []
    tops = (retrieve if retrieval == "minilm" else lexical_top)(queries, corpus, k + 1)
    for q, top in zip(queries, tops, strict=True):
        gold = index[q[POS_ID]]
        others = [i for i in top if corpus[i][DEFINITION_GROUP] != corpus[gold][DEFINITION_GROUP]]
        items = [gold, *others[:k]]
        text = "\n".join(p for p in (q.get(S.INSTRUCTION), q[S.TEXT]) if p)
        requests.append((text, [corpus[i][S.TEXT] for i in items]))
        ids.append([corpus[i][S.ID] for i in items])
    return requests, ids


def decisions(ids: list[str], scores: np.ndarray, k: int, beta: float = 0.01) -> list[str]:
    """The mine job's decision on each candidate (gold first): ``neg``, ``fn`` or ``-``."""
    from uniembed.mining.config import SelectionSection
    from uniembed.mining.selection import select_with_judge

    shipped = SelectionSection()
    sel = select_with_judge(
        ids[1:],
        [float(s) for s in scores[1:]],
        float(scores[0]),
        k=k,
        beta=beta,
        positive_id=ids[0],
        max_fn_share=shipped.max_fn_share,
        resolution=shipped.score_resolution,
    )
    negs, fns = set(sel.negative_ids), set(sel.false_negative_ids)
    return ["neg" if i in negs else "fn" if i in fns else "-" for i in ids[1:]]


def changed_share(ids: list[list[str]], a: list[np.ndarray], b: list[np.ndarray], k: int) -> float:
    """Share of (query, candidate) selection decisions that differ between scores a and b."""
    changed = total = 0
    for i, sa, sb in zip(ids, a, b, strict=True):
        da, db = decisions(i, sa, k), decisions(i, sb, k)
        changed += sum(x != y for x, y in zip(da, db, strict=True))
        total += len(da)
    return changed / total if total else 0.0


def mean_auc(scores: list[np.ndarray]) -> float:
    """The mine job's sanity figure: mean per-query AUC of the gold against the others."""
    from uniembed.mining.report import positive_auc

    aucs = [positive_auc(float(s[0]), s[1:]) for s in scores]
    return float(np.mean([a for a in aucs if a is not None]))


# --- the demo mine with both engines --------------------------------------------------------
def compare_mined(a: str, b: str, tol: float = 1e-4) -> dict[str, Any]:
    """Two mine outputs' training rows: same ids, same negatives in the same order, scores
    (positive and negatives' soft labels) within ``tol``. Returns counts and the max
    |d score|; ``equal`` says whether everything held."""
    from uniembed.data import schema as S
    from uniembed.mining.pipeline import read_mined

    ra = {r[S.QUERY_ID]: r for r in read_mined(a).to_pylist()}
    rb = {r[S.QUERY_ID]: r for r in read_mined(b).to_pylist()}
    diff, same_negs = 0.0, 0
    for qid in set(ra) & set(rb):
        x, y = ra[qid], rb[qid]
        same = x[S.NEG_IDS] == y[S.NEG_IDS]
        same_negs += same
        diff = max(diff, abs(x[S.POS_SCORE] - y[S.POS_SCORE]))
        if same:
            for p, q in zip(x[S.NEG_SCORES], y[S.NEG_SCORES], strict=True):
                diff = max(diff, abs(p - q))
    equal = set(ra) == set(rb) and same_negs == len(ra) and diff <= tol
    return {
        "rows": (len(ra), len(rb)),
        "same_negatives": same_negs,
        "max_dscore": diff,
        "equal": equal,
    }


def run_mine(engine: str, out: Path, queries: int, device: str = "cpu") -> float:
    """The demo mine job (its default config) with ``judge.engine``; wall seconds."""
    args = [f"output={out}", f"judge.engine={engine}", f"max_queries={queries}"]
    args += [f"judge.model.device={device}", f"embedder.device={device}"]
    args += [f"sanity.calibration_queries={min(queries, 64)}"]
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "mine.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"mine with judge.engine={engine} failed:\n{run.stderr[-3000:]}")
    return time.perf_counter() - start


# --- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Print the comparison; returns 1 when float32 vLLM disagrees beyond 1e-4."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--judge", default="smollm2-135m-judge")
    p.add_argument("--queries", type=int, default=200, help="held-out queries (200 at most)")
    p.add_argument("--k", type=int, default=10, help="retrieved candidates per query")
    p.add_argument("--chunk", type=int, default=20, help="queries per turn of each engine")
    p.add_argument("--retrieval", choices=["minilm", "lexical"], default="minilm")
    p.add_argument("--negatives", type=int, default=5, help="selection: negatives per query")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--block-size", type=int, default=32, help="0: vLLM's default (GPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both engines)")
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--no-mine", action="store_true")
    p.add_argument("--only-mine", action="store_true", help="just the demo mine, both engines")
    p.add_argument("--keep", help="a folder to keep the two demo mine outputs in")
    p.add_argument("--mine-queries", type=int, default=64)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--kv-gib", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return serve(args)
    if args.only_mine:
        return 0 if mine_both(args.mine_queries, args.device, args.keep) else 1

    import torch

    from uniembed.reranker.engine_config import VllmSection
    from uniembed.reranker.scorer import JudgeInput, JudgeScorer
    from uniembed.reranker.vllm_engine import vllm_model_folder, vllm_python

    python = str(vllm_python(VllmSection()))  # EngineMissingError names the set-up command
    folder = vllm_model_folder(args.judge)
    torch.set_num_threads(args.threads)
    requests, ids = heldout_requests(args.queries, args.k, args.retrieval)
    n_pairs = sum(len(c) for _, c in requests)
    print(
        f"{len(requests)} held-out queries, {n_pairs} pairs; judge {args.judge}; "
        f"{args.threads} threads each; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    t0 = time.perf_counter()
    ours = JudgeScorer.load(folder, device=args.device, dtype="float32")
    ours_start = time.perf_counter() - t0
    child = VllmChild(python, folder, "float32", args.threads, args.block_size, args.device)
    print(f"start-up: ours {ours_start:.1f} s, vLLM float32 {child.startup:.1f} s", flush=True)
    ours_scores: list[np.ndarray] = []
    vllm_scores: list[np.ndarray] = []
    ours_s = vllm_s = 0.0
    for lo in range(0, len(requests), args.chunk):
        chunk = requests[lo : lo + args.chunk]
        t0 = time.perf_counter()
        for q, cs in chunk:
            got = ours.score(JudgeInput(text=q), [JudgeInput(text=c) for c in cs])
            ours_scores.append(got.astype(np.float64))
        ours_s += time.perf_counter() - t0
        got_v, seconds = child.score(chunk)
        vllm_scores += got_v
        vllm_s += seconds
        done = sum(len(c) for _, c in requests[: lo + len(chunk)])
        dmax_so_far = max(float(np.max(np.abs(a - b))) for a, b in zip(ours_scores, vllm_scores))
        print(
            f"  {done}/{n_pairs} pairs: ours {done / ours_s:.2f} pairs/s, "
            f"vLLM {done / vllm_s:.2f} pairs/s, max |dP| {dmax_so_far:.1e}, "
            f"load {os.getloadavg()[0]:.0f}",
            flush=True,
        )
    child.close()
    dmax = max(float(np.max(np.abs(a - b))) for a, b in zip(ours_scores, vllm_scores))
    fp32_changed = changed_share(ids, ours_scores, vllm_scores, args.negatives)
    print("\n| engine | pairs/s | vs ours | max abs dP(Yes) vs ours | AUC | changed decisions |")
    print("| --- | --- | --- | --- | --- | --- |")
    ours_rate, vllm_rate = n_pairs / ours_s, n_pairs / vllm_s
    print(
        f"| ours (transformers, float32, packed prefix) | {ours_rate:.1f} | 1.00x | - | "
        f"{mean_auc(ours_scores):.4f} | - |"
    )
    print(
        f"| vLLM float32 (block {args.block_size}) | {vllm_rate:.1f} | "
        f"{vllm_rate / ours_rate:.2f}x | {dmax:.1e} | {mean_auc(vllm_scores):.4f} | "
        f"{fp32_changed:.2%} |",
        flush=True,
    )
    failed = dmax > 1e-4
    if not args.no_bf16:
        bf16 = VllmChild(python, folder, "bfloat16", args.threads, args.block_size, args.device)
        # ours again beside it, so that this ratio is also measured under one load
        t0 = time.perf_counter()
        for q, cs in requests[: args.chunk]:
            ours.score(JudgeInput(text=q), [JudgeInput(text=c) for c in cs])
        ours_again = sum(len(c) for _, c in requests[: args.chunk]) / (time.perf_counter() - t0)
        bf16_scores, bf16_s = [], 0.0
        for lo in range(0, len(requests), args.chunk):
            got_b, seconds = bf16.score(requests[lo : lo + args.chunk])
            bf16_scores += got_b
            bf16_s += seconds
        bf16.close()
        bmax = max(float(np.max(np.abs(a - b))) for a, b in zip(ours_scores, bf16_scores))
        rate = n_pairs / bf16_s
        print(
            f"| vLLM bfloat16 (block {args.block_size}) | {rate:.1f} | "
            f"{rate / ours_again:.2f}x (ours {ours_again:.1f} beside it) | {bmax:.1e} | "
            f"{mean_auc(bf16_scores):.4f} | "
            f"{changed_share(ids, ours_scores, bf16_scores, args.negatives):.2%} |"
        )
        print(f"(start-up: vLLM bfloat16 {bf16.startup:.1f} s)")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not args.no_mine:
        failed |= not mine_both(args.mine_queries, args.device, args.keep)
    return 1 if failed else 0


def mine_both(queries: int, device: str, keep: str | None = None) -> bool:
    """The demo mine with both engines, compared; prints one line, True when identical.
    ``keep``: a folder for the two outputs (kept), else a temporary one."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="judge-engines-") as tmp:
        where = Path(keep or tmp)
        engines = ("transformers", "vllm")
        seconds = {e: run_mine(e, where / e, queries, device) for e in engines}
        cmp = compare_mined(str(where / "transformers"), str(where / "vllm"))
    print(
        f"\ndemo mine ({queries} queries): rows {cmp['rows']}, same negatives "
        f"{cmp['same_negatives']}, max |d score| {cmp['max_dscore']:.1e}, "
        f"{'identical' if cmp['equal'] else 'DIFFERENT'}; wall s: transformers "
        f"{seconds['transformers']:.0f}, vllm {seconds['vllm']:.0f}; "
        f"load {os.getloadavg()[0]:.0f}"
    )
    return bool(cmp["equal"])


if __name__ == "__main__":
    sys.exit(main())
