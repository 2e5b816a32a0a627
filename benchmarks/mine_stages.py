"""The mine job's wall time split per stage, measured in one run; optionally against the
peer (sentence-transformers' ``mine_hard_negatives`` with FAISS) on a WordNet set.

    python benchmarks/mine_stages.py                       # the default config (WordNet demo)
    python benchmarks/mine_stages.py --config jobs/configs/mine_openclipart.yaml max_queries=32
    python benchmarks/mine_stages.py --wordnet 1500:1500 --peer --rounds 2
    python benchmarks/mine_stages.py --wordnet 100000:10000 --peer
    python benchmarks/mine_stages.py --wordnet 1500:1500 --peer --tree /tmp/before  # + a checkout

Without ``--wordnet`` it runs ``jobs/mine.py`` in this process into a fresh temporary output
(so nothing is resumed) with the given arguments, then prints each stage's seconds and
share of the total, the judge's pairs/s and its AUC. "busy" rows are summed inside the
actors and overlap the streaming wall time.

``--wordnet POOL:QUERIES`` builds a judge-free mining set from the Debian ``wordnet-base``
package (``/usr/share/wordnet``; cached under ``$UNIEMBED_CACHE/bench``): the pool is POOL
glosses, the queries the headwords of the first QUERIES of them, each with its own gloss as
the positive. Each round then runs, as separate processes (start-up included), ours
(``jobs/mine.py``, ``selection.mode=similarity``, K=20, 8 negatives) and, with ``--peer``,
``mine_hard_negatives`` (same model, ``range_max=20``, 8 negatives, ``use_faiss=True``) in
``benchmarks/.venv-peer`` (``bash benchmarks/setup_domain_adaptation.sh`` makes it),
interleaved, and prints walls, peak RSS and ours/peer ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDNET = Path("/usr/share/wordnet")
PEER_PYTHON = ROOT / "benchmarks" / ".venv-peer" / "bin" / "python"
K = 20
NEGATIVES = 8


def _print_stages(report: dict, total: float) -> None:
    print(f"\n{'stage':<42}{'seconds':>10}{'share':>8}")
    for stage, seconds in report["stage_seconds"].items():
        print(f"{stage:<42}{seconds:>10.1f}{seconds / total:>8.1%}")
    print(f"{'total (job wall, incl. Ray start)':<42}{total:>10.1f}")


def in_process(args: list[str]) -> int:
    """One in-process run of the mine job with ``args``; prints its stage table."""
    from jobs.mine import main as mine_main

    with tempfile.TemporaryDirectory(prefix="mine-bench-") as tmp:
        start = time.perf_counter()
        code = mine_main([*args, f"output={tmp}/out", "resume=false"])
        total = time.perf_counter() - start
        report = json.loads((Path(tmp) / "out" / "report.json").read_text())
    _print_stages(report, total)
    pps, auc = report["pairs_per_s"], report["auc"]
    print(
        f"judge {report['judge']}: {report['judged_pairs']} pairs, "
        f"{pps:.2f} pairs/s per busy second"
        if pps
        else "judge: none",
        f"; AUC {auc:.3f}" if auc is not None else "",
        f"; FN catch share {report['fn_catch_share']}",
    )
    return code


def wordnet_glosses() -> list[tuple[str, str]]:
    """(headword, gloss) of every WordNet synset, one per distinct gloss, file order."""
    out, seen = [], set()
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (WORDNET / f"data.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" ") or " | " not in line:
                continue
            head, gloss = line.split(" | ", 1)
            word = head.split()[4].replace("_", " ")
            gloss = gloss.strip()
            if gloss and gloss not in seen:
                seen.add(gloss)
                out.append((word, gloss))
    return out


def wordnet_set(pool: int, queries: int) -> Path:
    """The cached folder holding queries.jsonl, pool.jsonl and pairs.jsonl (see module doc)."""
    cache = Path(os.environ.get("UNIEMBED_CACHE", Path.home() / ".cache" / "uniembed"))
    folder = cache / "bench" / f"wordnet-{pool}-{queries}"
    if (folder / "pairs.jsonl").is_file():
        return folder
    rows = wordnet_glosses()
    if pool > len(rows) or queries > pool:
        raise SystemExit(f"--wordnet: WordNet has {len(rows)} glosses; need QUERIES <= POOL <= it")
    random.Random(0).shuffle(rows)
    rows = rows[:pool]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    with (tmp / "queries.jsonl").open("w") as q, (tmp / "pool.jsonl").open("w") as p:
        with (tmp / "pairs.jsonl").open("w") as pairs:
            for i, (word, gloss) in enumerate(rows):
                p.write(json.dumps({"id": f"d{i}", "text": gloss}) + "\n")
                if i < queries:
                    q.write(json.dumps({"id": f"q{i}", "text": word, "pos_id": f"d{i}"}) + "\n")
                    pairs.write(json.dumps({"anchor": word, "positive": gloss}) + "\n")
    for name in ("queries.jsonl", "pool.jsonl", "pairs.jsonl"):  # pairs.jsonl last: complete
        (tmp / name).rename(folder / name)
    tmp.rmdir()
    return folder


def peer_side(folder: Path, model_dir: str, out: Path) -> None:
    """Run in the peer venv: ``mine_hard_negatives`` over the set with the model in
    ``model_dir``; writes ``out`` (JSON)."""
    start = time.perf_counter()
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    pairs = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]
    pool = [json.loads(line)["text"] for line in (folder / "pool.jsonl").read_text().splitlines()]
    model = SentenceTransformer(model_dir, device="cpu")
    loaded = time.perf_counter()
    mined = mine_hard_negatives(
        Dataset.from_list(pairs),
        model,
        corpus=pool,
        range_max=K,
        num_negatives=NEGATIVES,
        sampling_strategy="top",
        output_format="n-tuple",
        batch_size=64,
        use_faiss=True,
        verbose=False,
    )
    end = time.perf_counter()
    out.write_text(
        json.dumps(
            {
                "rows": len(mined),
                "start_s": loaded - start,
                "mine_s": end - loaded,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def _timed(cmd: list[str], cwd: Path = ROOT) -> float:
    env = dict(os.environ, PYTHONPATH=str(cwd / "platform"))
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=cwd, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def compare(
    pool: int, queries: int, rounds: int, peer: bool, extra: list[str], trees: list[str]
) -> None:
    """Interleaved rounds of ours (this checkout, then each of ``trees``: other checkouts,
    e.g. a ``git worktree`` of an earlier commit) and the peer on the WordNet set."""
    from uniembed.models.packaged import minilm_folder

    folder = wordnet_set(pool, queries)
    model_dir = str(minilm_folder())
    ours_cmd = [
        sys.executable,
        "jobs/mine.py",
        "--queries",
        str(folder / "queries.jsonl"),
        "--pool",
        str(folder / "pool.jsonl"),
        "--embedder",
        "minilm",
        "max_queries=null",
        "group_field=null",
        "selection.mode=similarity",
        f"selection.num_negatives={NEGATIVES}",
        f"retrieval.k={K}",
        "retrieval.easy_margin=null",
        "resume=false",
        *extra,
    ]
    print("ours:", " ".join(ours_cmd), "--output TMP")
    lines = []
    with tempfile.TemporaryDirectory(prefix="mine-bench-") as tmp:
        for r in range(rounds):
            line = f"round {r}:"
            for t, tree in enumerate([str(ROOT), *trees]):
                out = Path(tmp) / f"ours-{r}-{t}"
                wall = _timed([*ours_cmd, "--output", str(out)], Path(tree))
                report = json.loads((out / "report.json").read_text())
                stages = ", ".join(f"{k} {v:.1f}" for k, v in report["stage_seconds"].items())
                line += f" ours[{tree}] {wall:.1f} s ({report['rows_written']} rows; {stages});"
            if peer:
                pj = Path(tmp) / f"peer-{r}.json"
                pwall = _timed(
                    [str(PEER_PYTHON), __file__, "--as-peer", str(folder), "--peer-out", str(pj)]
                    + ["--peer-model", model_dir]
                )
                p = json.loads(pj.read_text())
                line += (
                    f" peer {pwall:.1f} s ({p['rows']} rows, mine {p['mine_s']:.1f} s, "
                    f"rss {p['rss_mb']:.0f} MB); ours/peer {wall / pwall:.2f}x (last ours)"
                )
            print(line, flush=True)
            lines.append(line)
    print(f"pool {pool}, queries {queries}, load {Path('/proc/loadavg').read_text().strip()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--wordnet", help="POOL:QUERIES (see the module doc)")
    p.add_argument("--peer", action="store_true")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--tree", action="append", default=[], help="another checkout to run too")
    p.add_argument("--as-peer", help=argparse.SUPPRESS)
    p.add_argument("--peer-out", help=argparse.SUPPRESS)
    p.add_argument("--peer-model", help=argparse.SUPPRESS)
    known, rest = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.as_peer:
        peer_side(Path(known.as_peer), known.peer_model, Path(known.peer_out))
        return 0
    if known.wordnet:
        pool, queries = (int(x) for x in known.wordnet.split(":"))
        compare(pool, queries, known.rounds, known.peer, rest, known.tree)
        return 0
    return in_process(rest)


if __name__ == "__main__":
    sys.exit(main())
