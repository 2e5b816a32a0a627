"""Where served models and indexes come from: registry names, local folders, ``s3://``.

A model folder on S3 is copied once into the local model cache (the loaders read folders);
a missing artifact is an :class:`ArtifactError` at start-up naming the config field.
"""

from __future__ import annotations

import os
from pathlib import Path

from uniembed import storage


class ArtifactError(RuntimeError):
    """A configured model or index does not exist or cannot be read."""


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "file://"))
        or os.sep in name
        and (Path(name).expanduser().exists())
    )


def fetch_folder(uri: str, field: str) -> str:
    """A local copy of the model folder at ``uri`` (s3://), fetched once per version."""
    from uniembed.models.remote import download_model

    try:
        return download_model(uri)
    except FileNotFoundError as e:
        raise ArtifactError(f"{field}: nothing found at {uri}") from e


def resolve_model_source(name: str, field: str) -> str:
    """What to hand to the model loader for config value ``name`` in ``field``.

    Registry names and hub ids pass through; ``s3://`` folders are fetched; local paths
    must exist. Raises ArtifactError naming ``field`` otherwise.
    """
    try:
        if storage.is_remote(name):
            if not storage.exists(name):
                raise ArtifactError(f"{field}: model {name} does not exist")
            return fetch_folder(name, field)
    except storage.StorageError as e:
        raise ArtifactError(f"{field}: cannot read model {name}: {e}") from e
    if _looks_like_path(name):
        path = storage.local_path(name)
        if path is None or not Path(path).is_dir():
            raise ArtifactError(f"{field}: model folder {name} does not exist")
        return path
    return name


def check_index(uri: str, field: str) -> None:
    """ArtifactError naming ``field`` unless the index and its sidecar exist at ``uri``."""
    from uniembed.index.store import sidecar_uri

    try:
        for part in (uri, sidecar_uri(uri)):
            if not storage.exists(part):
                raise ArtifactError(
                    f"{field}: {part} does not exist (an index written by the embed job "
                    "lives at <output>/index.faiss with .json and .ids.json next to it)"
                )
    except storage.StorageError as e:
        raise ArtifactError(f"{field}: cannot read {uri}: {e}") from e
