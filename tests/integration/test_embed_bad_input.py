"""The embed job on a real Ray cluster against bad records and a repeated input: every row
read is embedded or quarantined exactly once, and the counts are those on disk."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from fixtures.bad_inputs import NON_UTF8_LINE, SURROGATE_LINE, png_header
from uniembed import storage
from uniembed.data import schema as S
from uniembed.data.demo import demo_path
from uniembed.data.shards import count_rows
from uniembed.embed.pipeline import read_embeddings

pytestmark = pytest.mark.integration

IMAGE = sorted(Path(demo_path("openclipart/images")).glob("*.png"))[0]


def _run(corpus: Path, out: Path, *overrides: str) -> dict:
    from jobs.embed import main

    flags = ["--input", str(corpus), "--output", str(out), "--model", "tiny-qwen2-vl"]
    assert main([*flags, "compute.micro_batch_size=8", *overrides]) == 0
    return json.loads((out / "_SUCCESS.json").read_text())


def test_a_copy_of_the_input_is_quarantined_not_clobbered(
    ray_start_2_cpus: None, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rows = [{"id": f"r{i}", "text": f"row number {i}"} for i in range(24)]
    (folder / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    shutil.copy(folder / "a.jsonl", folder / "b.jsonl")
    out = tmp_path / "out"
    manifest = _run(folder, out, "index.kind=flat")
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_quarantined"]) == (48, 24, 24)
    assert (manifest["shards"], manifest["rows_out"]) == count_rows(str(out / "embeddings"))
    ids, _ = read_embeddings(str(out))
    assert sorted(ids) == sorted(r["id"] for r in rows)
    q = storage.read_parquet(str(out / "quarantine")).to_pylist()
    assert all("duplicate id" in r[S.REASON] and "b.jsonl" in r[S.SOURCE] for r in q)
    from uniembed.index import load_index

    assert load_index(str(out / "index.faiss"))[0].ntotal == 24
    assert not [p for p in out.iterdir() if p.name.startswith("_staging-")]
    # The next run replaces this one; keep_first leaves the copies out, counted.
    manifest = _run(folder, out, "dedupe=keep_first")
    got = (manifest["rows_out"], manifest["rows_quarantined"], manifest["rows_duplicate"])
    assert got == (24, 0, 24)
    assert count_rows(str(out / "quarantine")) == (0, 0)


def _fuzz_corpus(folder: Path, rng: random.Random, n: int) -> tuple[Path, dict[int, str]]:
    """``n`` records of random kinds; returns the file and {line: expected outcome}, the
    outcome being the id that must be embedded or ``"quarantine"``/``"truncated:<id>"``."""
    shutil.copy(IMAGE, folder / "a.png")
    (folder / "bomb.png").write_bytes(png_header(20000, 20000))
    lines: list[bytes] = []
    expect: dict[int, str] = {}
    for i in range(n):
        kind = rng.choice(
            ["text", "text", "image", "utf8", "surrogate", "json", "noid", "dup", "up", "abs",
             "bomb", "missing", "long"]
        )  # fmt: skip
        rid = f"f{i}"
        rec: dict | None = {"id": rid, "text": f"item {i} " * rng.randint(1, 4)}
        outcome = rid
        if kind == "image":
            rec = {"id": rid, "image_uri": "a.png"}
        elif kind in ("up", "abs", "bomb", "missing"):
            path = {"up": "../outside.png", "abs": "/etc/hostname", "bomb": "bomb.png"}
            rec = {"id": rid, "image_uri": path.get(kind, "nowhere.png")}
            outcome = "quarantine"
        elif kind == "noid":
            rec = {"text": "no id"}
            outcome = "quarantine"
        elif kind == "dup":
            rec = {"id": "f0", "text": "same id as the first line"}
            outcome = "quarantine"
        elif kind == "long":
            rec = {"id": rid, "text": "long " * 2000}
            outcome = f"truncated:{rid}"
        if kind in ("utf8", "surrogate", "json"):
            raw = {"utf8": NON_UTF8_LINE, "surrogate": SURROGATE_LINE, "json": b"{oops"}[kind]
            outcome = "quarantine"
        else:
            raw = json.dumps(rec).encode()
        if i == 0:
            raw, outcome = json.dumps({"id": "f0", "text": "first"}).encode(), "f0"
        lines.append(raw)
        expect[i + 1] = outcome
    path = folder / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, expect


def test_fuzz_every_row_is_embedded_or_quarantined_once(
    ray_start_2_cpus: None, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    path, expect = _fuzz_corpus(folder, random.Random(13), 60)
    out = tmp_path / "out"
    manifest = _run(path, out, "index.kind=none", "model.max_length=64")
    ids, _ = read_embeddings(str(out))
    q = storage.read_parquet(str(out / "quarantine")).to_pylist()
    sources = Counter(r[S.SOURCE] for r in q)
    assert all(c == 1 for c in sources.values()), sources
    assert len(ids) == len(set(ids))
    for line, outcome in expect.items():
        src = f"{path}:{line}"
        if outcome == "quarantine":
            assert src in sources, (line, outcome)
        else:
            assert outcome.split(":")[-1] in ids and src not in sources, (line, outcome)
    assert manifest["rows_in"] == len(expect) == len(ids) + len(q)
    assert manifest["rows_truncated"] == sum(o.startswith("truncated") for o in expect.values())
