"""Poolers on hand-computed values, and the uniembed.json pooling config."""

from __future__ import annotations

import json

import pytest
import torch

from uniembed.config import ConfigError
from uniembed.models import (
    POOLING_CONFIG_FILE,
    PoolingConfig,
    last_token_pool,
    load_pooling_config,
    mean_pool,
    pool_and_normalize,
    save_pooling_config,
)

HIDDEN = torch.tensor(
    [
        [[1.0, 0.0], [2.0, 2.0], [9.0, 9.0]],  # right-padded: 2 real tokens
        [[7.0, 7.0], [3.0, 1.0], [0.0, 4.0]],  # left-padded: 2 real tokens
    ]
)
MASK = torch.tensor([[1, 1, 0], [0, 1, 1]])


def test_last_token_pool_reads_the_mask_for_either_padding_side() -> None:
    assert last_token_pool(HIDDEN, MASK).tolist() == [[2.0, 2.0], [0.0, 4.0]]


def test_mean_pool_ignores_padding() -> None:
    assert mean_pool(HIDDEN, MASK).tolist() == [[1.5, 1.0], [1.5, 2.5]]


def test_pool_and_normalize_gives_unit_rows() -> None:
    out = pool_and_normalize(HIDDEN, MASK, "last")
    expected = torch.tensor([[1.0, 1.0], [0.0, 1.0]]) / torch.tensor([[2**0.5], [1.0]])
    torch.testing.assert_close(out, expected)


def test_unknown_pooling_and_empty_rows_raise() -> None:
    with pytest.raises(ValueError, match="unknown pooling 'cls'"):
        pool_and_normalize(HIDDEN, MASK, "cls")
    with pytest.raises(ValueError, match="no real token"):
        last_token_pool(HIDDEN, torch.tensor([[1, 0, 0], [0, 0, 0]]))


def test_pooling_config_round_trips_through_uniembed_json(tmp_path) -> None:
    cfg = PoolingConfig(
        family="qwen2_vl",
        pooling="mean",
        text_template="{text}\nIn one word:",
        max_length=64,
    )
    path = save_pooling_config(tmp_path, cfg)
    assert path.name == POOLING_CONFIG_FILE
    assert json.loads(path.read_text()) == {
        "family": "qwen2_vl",
        "max_length": 64,
        "pooling": "mean",
        "text_template": "{text}\nIn one word:",
    }
    assert load_pooling_config(tmp_path) == cfg
    assert load_pooling_config(tmp_path / "missing") is None


def test_pooling_config_rejects_bad_values(tmp_path) -> None:
    with pytest.raises(ConfigError, match="pooling"):
        PoolingConfig(pooling="max")
    with pytest.raises(ConfigError, match="image_template: must contain"):
        PoolingConfig(image_template="no image here {text}")
    with pytest.raises(ConfigError, match="not a valid template"):
        PoolingConfig(text_template="{text} {other}")
    with pytest.raises(ValueError, match="unknown family 'gpt9'"):
        save_pooling_config(tmp_path, PoolingConfig(family="gpt9"))
    (tmp_path / POOLING_CONFIG_FILE).write_text(json.dumps({"poling": "last"}))
    with pytest.raises(ValueError, match="unknown key.*poling"):
        load_pooling_config(tmp_path)
