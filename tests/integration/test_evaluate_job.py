"""The evaluate job end to end on a real local Ray cluster with tiny-qwen2-vl, locally
(with a baseline model) and with data and report on S3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from uniembed import storage
from uniembed.data.demo import demo_path

pytestmark = pytest.mark.integration

IMAGES = sorted(Path(demo_path("openclipart/images")).glob("*.png"))[:4]
TITLES = ["crow", "dragonfly", "bear", "apple"]

# Hand counts for the set below (references / distinct contents over all four tasks):
#   mmeb: 4 rows x (query + 3 titles) = 16 refs; distinct: 4 image queries (one missing)
#         + 4 titles = 8
#   same: 2 rows x (query + 3 identical) = 8 refs; distinct: "which one?" + "a thing" = 2
#   caps: 3 images + 4 captions = 7 refs; the images alone differ from the mmeb queries
#         (those carry the instruction text): 3 new; captions "crow"/"bear" are titles
#         already seen: 2 new
#   comp: 2 x (image, true, altered) = 6 refs; images (from caps), "crow", "dragonfly"
#         known; altered "a crow, upside down" and "two dragonflies" are new = 2
N_TOTAL = 16 + 8 + 7 + 6
N_UNIQUE = 8 + 2 + 5 + 2


def _query(image: str, titles: list[str]) -> dict[str, object]:
    return {
        "qry_text": "<|image_1|>\nRepresent the given image for finding its title.",
        "qry_img_path": image,
        "tgt_text": titles,
        "tgt_img_path": [""] * len(titles),
    }


def _write_set(folder: Path) -> Path:
    """Four tasks, one per kind plus an all-identical-candidates task; images beside them."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for i, src in enumerate(IMAGES):
        names.append(f"images/{i}.png")
        shutil.copy(src, folder / names[-1])
    rot = [TITLES[i:] + TITLES[:i] for i in range(4)]  # gold first, then the others
    mmeb = [_query(names[i], rot[i][:3]) for i in range(3)]
    mmeb.append(_query("images/missing.png", rot[3][:3]))  # quarantined: row excluded
    same = [
        {"qry_text": "which one?", "qry_img_path": "", "tgt_text": ["a thing"] * 3}
        | {"tgt_img_path": ["", "", ""]}
    ] * 2
    caps = [
        {"image": names[0], "captions": ["crow", "a black bird"]},
        {"image": names[1], "caption": "an insect with wings"},
        {"image": names[2], "captions": ["bear"]},
    ]
    comp = [
        {"image": names[0], "caption": "crow", "negative_caption": "a crow, upside down"}
        | {"category": "replace_att"},
        {"image": names[1], "caption": "dragonfly", "negative_caption": "two dragonflies"}
        | {"category": "replace_obj"},
    ]
    for name, rows in (("mmeb", mmeb), ("same", same), ("caps", caps), ("comp", comp)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _check_summary(summary: dict, data_dir: str) -> None:
    tasks = summary["tasks"]
    assert set(tasks) == {"mmeb", "same", "caps", "comp"}
    assert (tasks["mmeb"]["kind"], tasks["caps"]["kind"], tasks["comp"]["kind"]) == (
        "candidates",
        "captions",
        "compositional",
    )
    # A model that scores every candidate alike gets no credit.
    assert tasks["same"]["metrics"]["precision@1"] == 0.0
    assert tasks["same"]["metrics"]["mrr"] == pytest.approx(1 / 3)
    # The missing image is quarantined; its row is excluded and named, the others scored.
    assert (tasks["mmeb"]["n_queries"], tasks["mmeb"]["n_excluded"]) == (3, 1)
    (reason,) = tasks["mmeb"]["excluded"]
    assert reason.startswith(f"{data_dir}/mmeb.jsonl:4: ") and "missing.png" in reason
    assert (tasks["caps"]["n_queries"], tasks["comp"]["n_queries"]) == (4, 2)
    assert set(tasks["comp"]["categories"]) == {"replace_att", "replace_obj"}
    assert summary["dedupe"] == {
        "n_total": N_TOTAL,
        "n_unique": N_UNIQUE,
        "rate": pytest.approx(1 - N_UNIQUE / N_TOTAL),
    }
    scores = {t: v["metrics"][v["primary_metric"]] for t, v in tasks.items()}
    assert summary["aggregate"]["overall"] == pytest.approx(np.mean(list(scores.values())))


@pytest.mark.slow  # two embed pipeline runs (model and baseline): 40-70 s on 2 cores
def test_evaluate_job_local_with_baseline(tmp_path: Path, ray_start_2_cpus: None) -> None:
    from jobs.evaluate import main

    data = _write_set(tmp_path / "set")
    out = tmp_path / "out"
    groups = tmp_path / "groups.yaml"
    groups.write_text("retrieval: [mmeb, caps]\nprobes: [same, comp]\n")
    argv = ["--model", "tiny-qwen2-vl", "--data", str(data), "--output", str(out)]
    argv += ["--baseline", "tiny-qwen2-vl", "--groups", str(groups)]
    assert main(argv) == 0

    names = {p.name for p in out.iterdir()}
    assert {"report.md", "metrics.json", "per_query.npz", "baseline"} <= names
    for png in ("score_distributions.png", "gold_rank_hist.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "_work").exists()  # the staged items and embeddings are cleaned up
    summary = json.loads((out / "metrics.json").read_text())
    _check_summary(summary, str(data))
    assert set(summary["aggregate"]) == {"retrieval", "probes", "overall"}
    # The baseline is the same model evaluated the same way: every delta is zero.
    deltas = {t: d["delta"] for t, d in summary["baseline"]["tasks"].items()}
    assert set(deltas) == set(summary["tasks"]) and max(map(abs, deltas.values())) < 1e-9
    md = (out / "report.md").read_text()
    assert "## Baseline comparison: tiny-qwen2-vl" in md and "## Excluded queries" in md
    assert "missing.png" in md and "## Compositional accuracy by category" in md
    base = json.loads((out / "baseline" / "metrics.json").read_text())
    assert base["tasks"]["mmeb"]["metrics"] == summary["tasks"]["mmeb"]["metrics"]


def test_evaluate_job_on_s3(tmp_path: Path, s3_bucket: str, ray_start_2_cpus: None) -> None:
    from jobs.evaluate import main

    local = _write_set(tmp_path / "set")
    data = storage.join(s3_bucket, "eval-data")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.write_bytes(storage.join(data, *path.relative_to(local).parts), path.read_bytes())
    out = storage.join(s3_bucket, "reports", "run1")
    # A baseline can also be published numbers (or an earlier metrics.json), read from S3.
    paper = storage.join(s3_bucket, "paper.json")
    storage.write_text(paper, json.dumps({"name": "paper", "scores": {"same": 0.25, "X": 0.9}}))
    argv = ["--model", "tiny-qwen2-vl", "--data", data, "--output", out, "--baseline", paper]
    assert main(argv) == 0

    written = {u.rsplit("/", 1)[1] for u in storage.list_files(out)}
    assert written == {
        "report.md",
        "metrics.json",
        "per_query.npz",
        "score_distributions.png",
        "gold_rank_hist.png",
        "excluded.jsonl",
    }  # and no _work left behind
    summary = json.loads(storage.read_text(storage.join(out, "metrics.json")))
    _check_summary(summary, data)  # image paths resolved against the s3 folder
    assert summary["baseline"]["name"] == "paper"
    assert summary["baseline"]["tasks"] == {"same": {"ours": 0.0, "baseline": 0.25, "delta": -0.25}}
    assert storage.read_bytes(storage.join(out, "gold_rank_hist.png"))[:4] == b"\x89PNG"


def test_evaluate_job_reranks_on_the_judge_pool(
    tmp_path: Path, ray_start_2_cpus: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.evaluate import main

    data = _write_set(tmp_path / "set")
    out = tmp_path / "out"
    argv = ["--model", "tiny-qwen2-vl", "--data", str(data), "--output", str(out)]
    # Two queries per actor call, two candidates per forward (the second on the prefix cache).
    argv += ["--rerank", "tiny-qwen2-vl", "rerank_compute.rows_per_call=2"]
    argv += ["rerank_compute.micro_batch_size=2"]
    assert main(argv) == 0

    summary = json.loads((out / "metrics.json").read_text())
    _check_summary(summary, str(data))  # same rows scored and excluded as without rerank
    extra = summary["extra"]
    # mmeb: 3 scored rows (one excluded), same: 2 rows; 3 candidates each, all in the top 10
    assert (extra["Reranked queries"], extra["Reranked pairs"]) == (5, 15)
    assert extra["Rerank throughput (pairs/s, stage wall time)"] > 0
    assert extra["Rerank throughput (pairs/s, in the judge)"] > 0
    assert set(extra["Embedder alone"]) == {"mmeb", "same"}
    assert summary["timings"]["rerank"] > 0
    printed = capsys.readouterr().out
    # Progress as rows come back, two queries per actor call: at least three lines.
    progress = [line for line in printed.splitlines() if line.startswith("rerank: ")]
    assert len(progress) >= 3 and progress[-1].startswith("rerank: 5/5 queries, 15/15 pairs")
    md = (out / "report.md").read_text()
    assert "Rerank throughput (pairs/s, in the judge)" in md
