"""Split the demo's WordNet queries into the judge's training and held-out queries.

    python scripts/split_judge_data.py          # writes data/demo/wordnet/judge/*.jsonl

Held out: the first ``--heldout`` queries of ``queries.jsonl`` (the default mine job mines
the first 64 of them, so its judge AUC is measured on queries the judge never trained on)
and every other query that shares a word with one of them. The rest trains the judge.
Deterministic: the split follows the file order, no randomness.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "platform"))

from uniembed.data import demo  # noqa: E402


def split(rows: list[dict], n_heldout: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out) rows: the first ``n_heldout`` rows and all rows sharing their
    ``lemma`` are held out, in file order."""
    held_lemmas = {r[demo.LEMMA] for r in rows[:n_heldout]}
    held = [r for r in rows if r[demo.LEMMA] in held_lemmas]
    train = [r for r in rows if r[demo.LEMMA] not in held_lemmas]
    return train, held


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--heldout", type=int, default=200, help="first N queries held out")
    p.add_argument("--out", default=str(REPO_ROOT / "data/demo/wordnet/judge"))
    args = p.parse_args(argv)
    src = Path(demo.demo_path(demo.WORDNET_QUERIES))
    rows = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line]
    train, held = split(rows, args.heldout)
    out = Path(args.out)
    write_jsonl(out / "train_queries.jsonl", train)
    write_jsonl(out / "heldout_queries.jsonl", held)
    print(f"{len(train)} training queries, {len(held)} held out -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
