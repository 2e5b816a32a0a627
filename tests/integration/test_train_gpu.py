"""GPU checks of the train path (skipped without CUDA): a bf16 stage-2 step on the tiny
Qwen2-VL with images, GradCache against the plain step, and a 1-worker GPU Ray Train run."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

from uniembed.data import schema as S
from uniembed.losses import SoftLabelLoss
from uniembed.models import load_embedder
from uniembed.training.lora import prepare_trainable, trainable_parameters
from uniembed.training.steps import tune_batch, tune_step
from uniembed.training.train_config import LoraSection

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.integration,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _rows(tmp_path: Path, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        image = tmp_path / f"img{i}.png"
        Image.new("RGB", (40 + 8 * i, 32), (30 * i % 255, 80, 160)).save(image)
        rows.append(
            {
                S.SOURCE: f"gpu:{i}",
                S.QUERY_ID: f"q{i}",
                S.QUERY_TEXT: None,
                S.QUERY_IMAGE: str(image),
                S.QUERY_INSTRUCTION: "Represent the given image.",
                S.POS_TEXT: f"a picture number {i}",
                S.POS_IMAGE: None,
                S.POS_SCORE: 0.9,
                S.NEG_TEXTS: [f"a picture number {i + 1}", "a car"],
                S.NEG_IMAGES: [None, None],
                S.NEG_SCORES: [0.4, 0.1],
            }
        )
    return rows


def test_bf16_grad_cache_step_on_cuda(tmp_path: Path) -> None:
    embedder = load_embedder("tiny-qwen2-vl", device="cuda", dtype="float32")
    embedder.model = prepare_trainable(copy.deepcopy(embedder.model), LoraSection(dropout=0.0))

    def encode(inputs):  # noqa: ANN001, ANN202
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return embedder.features(inputs)

    batch = tune_batch(_rows(tmp_path, 4), num_negatives=2)
    loss = SoftLabelLoss()
    plain, _ = tune_step(encode, loss, batch, chunk=0)
    grads = {n: p.grad.clone() for n, p in trainable_parameters(embedder.model).items()}
    embedder.model.zero_grad(set_to_none=True)
    cached, _ = tune_step(encode, loss, batch, chunk=2)
    assert torch.isfinite(plain) and cached.item() == pytest.approx(plain.item(), rel=2e-2)
    for name, p in trainable_parameters(embedder.model).items():
        scale = grads[name].abs().max().item() + 1e-12
        assert (p.grad - grads[name]).abs().max().item() <= 5e-2 * scale, name


def test_ray_train_on_gpu_exports(ray_start_2_cpus, tmp_path: Path) -> None:
    import pyarrow as pa

    from uniembed.data.training_rows import TUNE_SCHEMA

    rows = tmp_path / "rows.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(_rows(tmp_path, 8), schema=TUNE_SCHEMA), rows)
    path = Path(__file__).resolve().parents[2] / "jobs" / "tune.py"
    spec = importlib.util.spec_from_file_location("uniembed_job_tune_gpu", path)
    assert spec is not None and spec.loader is not None
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    args = ["--input", str(tmp_path), "--storage-path", str(tmp_path / "runs"), "--name", "g"]
    args += ["train.max_steps=2", "train.batch_size=4", "scaling.use_gpu=true"]
    args += ["scaling.precision=bf16", "checkpoint.every_steps=1"]
    assert tune.main(args) == 0
    assert load_embedder(str(tmp_path / "runs" / "g" / "export")).dim == 64
