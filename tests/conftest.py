"""Shared fixtures: seeds, a 2-CPU local Ray cluster, the S3 server, tiny models."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

# Nothing in the test suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

pytest_plugins = [
    "fixtures.ray_cluster",
    "fixtures.multinode",
    "fixtures.s3",
    "fixtures.s3_outage",
    "fixtures.models",
]


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover - torch is always installed by setup
        pass
