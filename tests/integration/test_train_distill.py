"""Stage 1 end to end on one Ray Train worker: minilm teaches the tiny text LM on the fly,
through GradCache; the run exports a model folder that load_embedder loads with the
stage-1 prompt, and metrics land in metrics.csv."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fixtures.train_jobs import load_job
from uniembed.models import EmbedInput, load_embedder
from uniembed.models.pooling_config import load_pooling_config
from uniembed.training.metrics import read_metrics
from uniembed.training.train_config import DISTILL_PROMPT

pytestmark = pytest.mark.integration


def test_distill_job_trains_and_exports(
    ray_start_2_cpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relative --storage-path, as the README's commands give it: the export and the
    # metrics land under the caller's folder, not in the workers' (Ray's session folder).
    monkeypatch.chdir(tmp_path)
    texts = tmp_path / "texts.jsonl"
    lines = [
        {"id": f"t{i}", "text": f"sentence {i} about the colour {i * 13 % 7}"} for i in range(24)
    ]
    texts.write_text("\n".join(json.dumps(x) for x in lines))
    distill = load_job("distill")
    args = [
        "--input",
        str(texts),
        "--model",
        "tiny-text-lm",
        "--teacher",
        "minilm",
        "--storage-path",
        "runs",
        "--name",
        "d1",
        "train.max_steps=3",
        "train.batch_size=8",
        "train.grad_cache_chunk=3",
        "checkpoint.every_steps=2",
    ]
    assert distill.main(args) == 0
    run = tmp_path / "runs" / "d1"
    rows = read_metrics(str(run / "metrics.csv"))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 and r["sim_gap"] > 0 for r in rows)
    assert rows[0]["lr"] > 0 and rows[0]["samples_per_s"] > 0
    export = run / "export"
    assert (export / "adapter" / "adapter_config.json").is_file()
    assert load_pooling_config(export).text_template == DISTILL_PROMPT
    embedder = load_embedder(str(export))
    assert "Summarize the above sentences in one word." in embedder.prompts([EmbedInput("x")])[0]
    assert embedder.embed([EmbedInput(text="a sentence")]).shape == (1, embedder.dim)
