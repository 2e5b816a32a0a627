"""Checkpoint state: exact round trip, refusal of another model's checkpoint, and the data
position (a resumed epoch continues with exactly the batches not yet trained)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from uniembed.training.loop import epoch_batches, lr_lambda
from uniembed.training.shard_rows import ArrowRows
from uniembed.training.state import (
    STATE_FILE,
    CheckpointMismatchError,
    Fingerprint,
    Position,
    TrainState,
    check_run_model,
    load_checkpoint,
    save_checkpoint,
)


def _setup(seed: int, width: int = 4):
    torch.manual_seed(seed)
    model = nn.Linear(width, 3)
    trainable = dict(model.named_parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(2, 10))
    return model, trainable, opt, sched


def _train(model, opt, sched, steps: int) -> None:
    for _ in range(steps):
        model(torch.randn(5, model.in_features)).pow(2).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()


def test_round_trip_restores_weights_optimizer_schedule_and_rng(tmp_path) -> None:
    model, trainable, opt, sched = _setup(0)
    _train(model, opt, sched, 3)
    state = TrainState(Position(3, 0, 3), Fingerprint.of("m", trainable), {"k": 1})
    save_checkpoint(tmp_path, 0, state, trainable, opt, sched)
    expected_next = (torch.rand(3), np.random.rand(), random.random())

    model2, trainable2, opt2, sched2 = _setup(1)
    loaded = load_checkpoint(tmp_path, 0, Fingerprint.of("m", trainable2), trainable2, opt2, sched2)
    assert loaded.position == Position(3, 0, 3) and loaded.extra == {"k": 1}
    assert sched2.last_epoch == 3
    # The RNG streams continue where the checkpoint left them.
    got_next = (torch.rand(3), np.random.rand(), random.random())
    torch.testing.assert_close(got_next[0], expected_next[0])
    assert got_next[1:] == expected_next[1:]


def test_resumed_training_matches_uninterrupted(tmp_path) -> None:
    model, trainable, opt, sched = _setup(0)
    _train(model, opt, sched, 2)
    save_checkpoint(
        tmp_path, 0, TrainState(Position(2), Fingerprint.of("m", trainable)), trainable, opt, sched
    )
    _train(model, opt, sched, 3)
    model2, trainable2, opt2, sched2 = _setup(7)
    load_checkpoint(tmp_path, 0, Fingerprint.of("m", trainable2), trainable2, opt2, sched2)
    _train(model2, opt2, sched2, 3)
    for name, p in trainable.items():
        torch.testing.assert_close(trainable2[name], p)


def test_checkpoint_of_another_model_is_refused_naming_the_file(tmp_path) -> None:
    _, trainable, opt, sched = _setup(0, width=4)
    save_checkpoint(
        tmp_path,
        0,
        TrainState(Position(1), Fingerprint.of("model-a", trainable)),
        trainable,
        opt,
        sched,
    )
    _, other, opt_b, sched_b = _setup(0, width=6)
    with pytest.raises(CheckpointMismatchError, match=f"{tmp_path / STATE_FILE}.*'model-a'"):
        load_checkpoint(tmp_path, 0, Fingerprint.of("model-b", other), other, opt_b, sched_b)


def test_resume_position_neither_repeats_nor_skips() -> None:
    rows = ArrowRows.from_pylist([{"id": i} for i in range(23)])
    full = [[r["id"] for r in b] for b in epoch_batches(rows, 4, seed=3, epoch=1, rank=0, skip=0)]
    assert len(full) == 5  # drop_last: 23 // 4
    resumed = [
        [r["id"] for r in b] for b in epoch_batches(rows, 4, seed=3, epoch=1, rank=0, skip=2)
    ]
    assert resumed == full[2:]
    other_epoch = [[r["id"] for r in b] for b in epoch_batches(rows, 4, 3, 2, 0, 0)]
    assert other_epoch != full  # each epoch has its own order


def test_lr_schedule_warmup_then_linear_decay() -> None:
    f = lr_lambda(warmup=2, total=6)
    assert [f(s) for s in range(7)] == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_rerun_with_another_model_is_refused_before_start(tmp_path) -> None:
    _, trainable, opt, sched = _setup(0)
    for step in (2, 4):
        folder = tmp_path / "run" / f"checkpoint_{step}"
        state = TrainState(Position(step), Fingerprint.of("tiny-qwen2-vl", trainable))
        save_checkpoint(folder, 0, state, trainable, opt, sched)
    check_run_model(str(tmp_path / "run"), "tiny-qwen2-vl")
    check_run_model(str(tmp_path / "fresh-run"), "minilm")  # nothing to resume: fine
    newest = tmp_path / "run" / "checkpoint_4" / STATE_FILE
    with pytest.raises(CheckpointMismatchError, match=f"{newest}: .*'tiny-qwen2-vl', not 'minilm'"):
        check_run_model(str(tmp_path / "run"), "minilm")
