"""The model folder a train run ends with, and fetching one from object storage.

Layout of ``<storage>/<run name>/export``::

    config.json, model.safetensors     the merged weights (``AutoModel`` layout)
    tokenizer / processor files        copied from the source model folder
    uniembed.json                      the pooling and prompt the model was trained with
    adapter/                           the LoRA/DoRA adapter alone (peft format), if any

``load_embedder(<local folder>)`` loads it; :func:`download_model` turns an ``s3://`` URI
into such a local folder.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from torch import nn

from uniembed import storage
from uniembed.models.pooling_config import PoolingConfig, load_pooling_config, save_pooling_config
from uniembed.models.remote import download_model  # noqa: F401 - re-exported

ADAPTER_DIR = "adapter"
# Files of the source folder that the export replaces or must not carry.
_SKIP_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".index.json")
_SKIP_NAMES = {"config.json", "uniembed.json", ".uniembed-complete"}


def _copy_preprocessing_files(source: Path, dest: Path) -> None:
    for path in source.iterdir():
        if (
            path.is_file()
            and path.name not in _SKIP_NAMES
            and not path.name.endswith(_SKIP_SUFFIXES)
        ):
            shutil.copy2(path, dest / path.name)


def export_model(model: nn.Module, source_folder: str, out_uri: str, pooling: PoolingConfig) -> str:
    """Write the export folder of ``model`` to ``out_uri`` (local or s3://) and return it.

    ``model`` is the trained model: a peft model (its adapter is saved, then merged into the
    weights) or a plain transformers model. ``pooling`` overrides fields of the source
    folder's ``uniembed.json``. Merging changes ``model`` in place: call it last.
    """
    source = Path(source_folder)
    with tempfile.TemporaryDirectory(prefix="uniembed-export-") as tmp:
        folder = Path(tmp)
        if hasattr(model, "merge_and_unload"):
            model.save_pretrained(str(folder / ADAPTER_DIR))
            model = model.merge_and_unload()
        model.save_pretrained(str(folder), safe_serialization=True)
        _copy_preprocessing_files(source, folder)
        base = load_pooling_config(source) or PoolingConfig()
        updates = {
            f.name: getattr(pooling, f.name)
            for f in dataclasses.fields(pooling)
            if getattr(pooling, f.name) is not None
        }
        save_pooling_config(folder, dataclasses.replace(base, **updates))
        upload_folder(folder, out_uri)
    return out_uri


def upload_folder(folder: Path, out_uri: str) -> None:
    """Copy every file under local ``folder`` to ``out_uri``, replacing what was there."""
    if storage.local_path(out_uri) != str(folder):
        storage.delete(out_uri)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            storage.write_bytes(storage.join(out_uri, rel), path.read_bytes())
