"""Checkpoint contents: trainable weights, optimizer, scheduler, RNG states, data position.

A checkpoint folder holds (rank 0 writes all but the RNG files, every rank its own RNG)::

    train_state.json     position (step, epoch, batch in epoch), model fingerprint, extras
    trainable.pt         state dict of the trainable parameters (the adapter under LoRA)
    optimizer.pt         optimizer.state_dict()
    scheduler.pt         scheduler.state_dict()
    rng_rank<r>.pt       torch (CPU and CUDA), numpy and python RNG states of rank r

Ray Train merges the files the workers report into one checkpoint folder, so a restarted
rank finds its own RNG file next to the shared state.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

STATE_FILE = "train_state.json"
TRAINABLE_FILE = "trainable.pt"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another model or setup; the message names the file."""


@dataclass
class Position:
    """Where training stands: optimizer steps done, and the next batch of the epoch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0

    def advance(self) -> None:
        """One batch trained."""
        self.step += 1
        self.batch_in_epoch += 1

    def next_epoch(self) -> None:
        """The epoch's batches are used up."""
        self.epoch += 1
        self.batch_in_epoch = 0


@dataclass
class Fingerprint:
    """What a checkpoint must match to be loaded into a model."""

    model: str
    params: str  # sha256 over the trainable parameter names and shapes
    n_params: int

    @classmethod
    def of(cls, model_name: str, trainable: dict[str, nn.Parameter]) -> Fingerprint:
        """The fingerprint of ``model_name`` with these trainable parameters."""
        h = hashlib.sha256()
        for name, p in trainable.items():
            h.update(f"{name}:{tuple(p.shape)};".encode())
        return cls(model_name, h.hexdigest()[:16], sum(p.numel() for p in trainable.values()))


@dataclass
class TrainState:
    """The JSON part of a checkpoint."""

    position: Position
    fingerprint: Fingerprint
    extra: dict[str, Any] = field(default_factory=dict)


def rng_file(rank: int) -> str:
    """File name of rank ``rank``'s RNG states."""
    return f"rng_rank{rank}.pt"


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(
    folder: str | Path,
    rank: int,
    state: TrainState,
    trainable: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """Write this rank's part of a checkpoint into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(_rng_state(), folder / rng_file(rank))
    if rank != 0:
        return
    torch.save({n: p.detach().cpu() for n, p in trainable.items()}, folder / TRAINABLE_FILE)
    torch.save(optimizer.state_dict(), folder / OPTIMIZER_FILE)
    torch.save(scheduler.state_dict(), folder / SCHEDULER_FILE)
    data = {
        "position": asdict(state.position),
        "fingerprint": asdict(state.fingerprint),
        "extra": state.extra,
    }
    (folder / STATE_FILE).write_text(json.dumps(data))


def load_checkpoint(
    folder: str | Path,
    rank: int,
    fingerprint: Fingerprint,
    trainable: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> TrainState:
    """Restore weights, optimizer, scheduler and this rank's RNG from ``folder``.

    Raises CheckpointMismatchError naming the file when the checkpoint belongs to another
    model (name or trainable parameters differ) or a file is missing.
    """
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        raise CheckpointMismatchError(f"{path}: missing; not a checkpoint of this trainer")
    data = json.loads(path.read_text())
    saved = Fingerprint(**data["fingerprint"])
    if saved != fingerprint:
        raise CheckpointMismatchError(
            f"{path}: checkpoint of model {saved.model!r} ({saved.n_params} trainable "
            f"parameters, signature {saved.params}) cannot resume model {fingerprint.model!r} "
            f"({fingerprint.n_params}, {fingerprint.params}); use another checkpoint.name "
            "or the same model and adapter settings"
        )
    weights = torch.load(folder / TRAINABLE_FILE, map_location="cpu")
    with torch.no_grad():
        for name, p in trainable.items():
            p.copy_(weights[name].to(p.device, p.dtype))
    optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, map_location="cpu"))
    scheduler.load_state_dict(torch.load(folder / SCHEDULER_FILE, weights_only=False))
    rng_path = folder / rng_file(rank)
    if rng_path.is_file():
        _set_rng_state(torch.load(rng_path, weights_only=False))
    return TrainState(Position(**data["position"]), saved, data.get("extra", {}))


def check_run_model(run: str, model_name: str) -> None:
    """Before a run starts: refuse to resume ``run`` (a run folder URI) with another model.

    Raises CheckpointMismatchError naming the newest checkpoint's state file when it was
    written for a model other than ``model_name``. A run without checkpoints passes.
    """
    from uniembed import storage

    states = [f for f in storage.list_files(run) if f.endswith("/" + STATE_FILE)]
    if not states:
        return
    newest = max(states, key=lambda f: json.loads(storage.read_text(f))["position"]["step"])
    saved = json.loads(storage.read_text(newest))["fingerprint"]["model"]
    if saved != model_name:
        raise CheckpointMismatchError(
            f"{newest}: run {run} holds checkpoints of model {saved!r}, not {model_name!r}; "
            "use another checkpoint.name to start a new run"
        )
