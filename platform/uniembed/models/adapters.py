"""LoRA adapters committed in the repository (``<repo>/models/<name>/``), served as models.

A committed adapter is small (a peft ``adapter_config.json`` and ``adapter_model.safetensors``
in float16); its registry name resolves to a folder in the model cache holding the base
model with the adapter merged, built once per adapter content, so every loader (the judge,
the serve app, the train jobs) reads a plain model folder.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

from uniembed.models.cache import cached_folder

ADAPTERS_ROOT = Path(__file__).resolve().parents[3] / "models"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def adapter_dir(name: str) -> Path:
    """``<repo>/models/<name>``; FileNotFoundError naming the missing file if incomplete."""
    folder = ADAPTERS_ROOT / name
    for f in ADAPTER_FILES:
        if not (folder / f).is_file():
            raise FileNotFoundError(f"adapter {name}: {folder / f} is missing")
    return folder


def adapter_digest(folder: Path) -> str:
    """A short hash of the adapter's files: the cache key of its merged model."""
    h = hashlib.sha256()
    for f in ADAPTER_FILES:
        h.update((folder / f).read_bytes())
    return h.hexdigest()[:12]


def model_revision(name: str) -> str | None:
    """The content hash of the committed adapter ``name`` (its weights change under the same
    registry name when it is retrained); None for any other model name."""
    folder = ADAPTERS_ROOT / name
    if not all((folder / f).is_file() for f in ADAPTER_FILES):
        return None
    return adapter_digest(folder)


def merge_adapter(base: Path, adapter: Path, out: Path) -> None:
    """Write ``base`` (a causal-LM folder) with the LoRA ``adapter`` merged into ``out``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    with warnings.catch_warnings():
        # peft reads the model's ``is_gradient_checkpointing``, which transformers deprecated
        # (FutureWarning, "use is_activation_checkpointing"); nothing we pass avoids it.
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))


def merged_folder(name: str, base: Callable[[], Path]) -> Path:
    """The cached folder of ``base()`` with the committed adapter ``name`` merged."""
    folder = adapter_dir(name)
    key = f"{name}-{adapter_digest(folder)}"
    return cached_folder(key, lambda out: merge_adapter(base(), folder, out))


def package_adapter(adapter: Path, dest: Path, base_name: str) -> None:
    """Copy a trained run's ``export/adapter`` into ``dest`` as a committed adapter: weights
    in float16 (half the size; merged back in float32) and the base model named by its
    registry name instead of a local cache path."""
    import torch
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    save_file(
        {k: v.to(torch.float16).contiguous() for k, v in weights.items()},
        str(dest / "adapter_model.safetensors"),
    )
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_name
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
