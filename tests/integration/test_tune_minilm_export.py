"""minilm as a first-class student: tune.py with LoRA (rzen loss, task-homogeneous batches)
and with full fine-tuning (kalm loss); each export loads unchanged in sentence-transformers
and gives our vectors; soup.py averages and fuses the two exports. A bad row in the input
is quarantined in the run folder and counted; the runs go on without it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fixtures.train_jobs import load_job
from uniembed import storage
from uniembed.data import schema as S
from uniembed.models import EmbedInput, load_embedder
from uniembed.training.metrics import read_metrics

pytestmark = pytest.mark.integration

TEXTS = [
    "ontology: the branch of metaphysics dealing with the nature of being",
    "a cat sits on the mat",
    "x",
]


def _rows(n: int) -> pa.Table:
    rows = []
    for i in range(n):
        negs = [(i + 1) % n, (i + 2) % n]
        rows.append(
            {
                S.QUERY_ID: f"q{i}",
                S.QUERY_TEXT: f"term{i}",
                S.QUERY_INSTRUCTION: "Define the term" if i % 2 else "Name the colour",
                S.POS_ID: f"d{i}",
                S.POS_TEXT: f"the meaning of term{i}, colour {i * 13 % 7}",
                S.POS_SCORE: 1.0,
                S.NEG_IDS: [f"d{j}" for j in negs],
                S.NEG_TEXTS: [f"the meaning of term{j}, colour {j * 13 % 7}" for j in negs],
                S.NEG_IMAGES: [None, None],
                S.NEG_SCORES: [0.0, 0.0],
                S.NEG_RANKS: [1, 2],
                S.FILLED: False,
                S.N_FILLED: 0,
            }
        )
    return pa.Table.from_pylist(rows, schema=S.MINED_SCHEMA)


def _check_sentence_transformers(export: Path) -> None:
    from sentence_transformers import SentenceTransformer

    ours = load_embedder(str(export)).embed([EmbedInput(text=t) for t in TEXTS])
    model = SentenceTransformer(str(export), device="cpu")
    theirs = model.encode(TEXTS, prompt_name="document")
    assert np.abs(ours - theirs).max() < 1e-5
    instruction = "Define the term"
    ours = load_embedder(str(export)).embed(
        [EmbedInput(text=t, instruction=instruction) for t in TEXTS]
    )
    theirs = model.encode(TEXTS, prompt=model.prompts["query"] + instruction + " ")
    assert np.abs(ours - theirs).max() < 1e-5


def test_minilm_lora_and_full_tuning_export_to_sentence_transformers_and_soup(
    ray_start_2_cpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage.write_parquet(str(tmp_path / "mined" / "part-0.parquet"), _rows(16))
    bad = _rows(2).to_pylist()
    bad[1][S.POS_TEXT] = None  # no positive: quarantined, the run goes on with 17 rows
    bad_rows = pa.Table.from_pylist(bad, schema=S.MINED_SCHEMA)
    storage.write_parquet(str(tmp_path / "mined" / "part-1.parquet"), bad_rows)
    tune = load_job("tune")
    common = [
        "--input",
        "mined",
        "--model",
        "minilm",
        "--storage-path",
        "runs",
        "train.max_steps=2",
        "train.batch_size=8",
        "train.warmup_steps=1",
        "loss.num_negatives=2",
        "checkpoint.every_steps=2",
    ]
    lora = ["--name", "lora", "--loss", "rzen", "sampler.name=task_homogeneous"]
    assert tune.main([*common, *lora, "lora.enabled=true", "lora.dora=false"]) == 0
    full = ["--name", "full", "--loss", "kalm", "lora.enabled=false", "train.lr=5e-5"]
    assert tune.main([*common, *full]) == 0
    runs = tmp_path / "runs"
    for run in ("lora", "full"):
        (left_out,) = storage.read_parquet(str(runs / run / "quarantine")).to_pylist()
        # named as the input was given (relative here)
        assert left_out[S.REASON].startswith("mined/part-1.parquet:2 (query q1): no positive")
        manifest = json.loads((runs / run / "_SUCCESS.json").read_text())
        assert (manifest["rows"], manifest["quarantined"]) == (17, 1), manifest
    metrics = read_metrics(str(runs / "lora" / "metrics.csv"))
    assert [int(r["step"]) for r in metrics] == [1, 2]
    # rzen's temperature is learned: it moved from 0.02 and is logged per step.
    assert all(math.isfinite(r["temperature"]) for r in metrics)
    assert metrics[-1]["temperature"] != pytest.approx(0.02, abs=1e-9)
    for run in ("lora", "full"):
        export = runs / run / "export"
        assert json.loads((export / "1_Pooling" / "config.json").read_text())[
            "pooling_mode_mean_tokens"
        ]
        _check_sentence_transformers(export)

    soup = load_job("soup")
    exports = [str(runs / "lora" / "export"), str(runs / "full" / "export")]
    args = ["--inputs", exports[0], "--inputs", exports[1]]
    assert soup.main([*args, "--output", "soup"]) == 0
    assert soup.main([*args, "--output", "fused", "--method", "delta", "--base", "minilm"]) == 0
    a, b = (load_embedder(e).embed([EmbedInput(text=TEXTS[0])]) for e in exports)
    for out in ("soup", "fused"):
        _check_sentence_transformers(tmp_path / out)
        assert json.loads((tmp_path / out / "soup.json").read_text())["inputs"] == exports
    mixed = load_embedder(str(tmp_path / "soup")).embed([EmbedInput(text=TEXTS[0])])
    assert not np.allclose(mixed, a, atol=1e-6) and not np.allclose(mixed, b, atol=1e-6)
