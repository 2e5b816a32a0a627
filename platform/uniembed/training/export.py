"""The model folder a train run ends with, and fetching one from object storage.

Layout of ``<storage>/<run name>/export``::

    config.json, model.safetensors     the merged weights (``AutoModel`` layout)
    tokenizer / processor files        copied from the source model folder
    uniembed.json                      the pooling and prompt the model was trained with
    modules.json, 1_Pooling/, ...      sentence-transformers' files (text models, see
                                       ``st_export.py``)
    adapter/                           the LoRA/DoRA adapter alone (peft format), if any

``load_embedder(<local folder>)`` loads it; :func:`download_model` turns an ``s3://`` URI
into such a local folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

from torch import nn

from uniembed import storage
from uniembed.models.families import family_by_name, family_for_config
from uniembed.models.pooling_config import (
    PoolingConfig,
    ResolvedPooling,
    load_pooling_config,
    resolve_pooling,
    save_pooling_config,
)
from uniembed.models.remote import download_model  # noqa: F401 - re-exported
from uniembed.training.st_export import write_sentence_transformers_files

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
        settings = _resolved(model, folder, dataclasses.replace(base, **updates))
        save_pooling_config(folder, _as_pooling_config(settings))
        has_chat = (folder / "chat_template.jinja").is_file() or (
            "chat_template" in _tokenizer_config(folder)
        )
        dim = int(model.config.get_text_config().hidden_size)
        write_sentence_transformers_files(folder, settings, dim, has_chat)
        upload_folder(folder, out_uri)
    return out_uri


def _resolved(model: nn.Module, folder: Path, pooling: PoolingConfig) -> ResolvedPooling:
    """Every setting the embedder will run the export with: ``uniembed.json`` states them
    all (family, pooling, templates, image token), so that code outside uniembed (the
    MLLM snippet in docs/export.md) can prompt the model exactly as it was trained."""
    if pooling.family is not None:
        family = family_by_name(pooling.family, str(folder))
    else:
        family = family_for_config(model.config, str(folder))
    settings = resolve_pooling(family, pooling)
    if settings.max_length is None and family.kind == "encoder":
        settings = dataclasses.replace(settings, max_length=_tokenizer_max_length(folder))
    return settings


def _as_pooling_config(settings: ResolvedPooling) -> PoolingConfig:
    return PoolingConfig(
        family=settings.family.name,
        pooling=settings.pooling,
        image_token=settings.image_token,
        text_template=settings.text_template,
        image_template=settings.image_template,
        image_text_template=settings.image_text_template,
        use_chat_template=settings.use_chat_template,
        max_length=settings.max_length,
    )


def _tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _tokenizer_max_length(folder: Path) -> int | None:
    # As the embedder decides it: a sentence-transformers folder's own length first.
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(value, int):
            return value
    value = _tokenizer_config(folder).get("model_max_length")
    return int(value) if isinstance(value, int) and value < 100_000 else None


def upload_folder(folder: Path, out_uri: str) -> None:
    """Copy every file under local ``folder`` to ``out_uri``, replacing what was there."""
    if storage.local_path(out_uri) != str(folder):
        storage.delete(out_uri)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            storage.write_bytes(storage.join(out_uri, rel), path.read_bytes())
