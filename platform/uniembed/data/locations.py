"""Where a job's relative paths point: the working folder on a laptop, ``storage.root`` on a
cluster, and never Ray's temporary copy of the working dir.

A job started by ``ray job submit --working-dir .`` runs inside Ray's copy of that folder
(``/tmp/ray/.../working_dir_files/_ray_pkg_*``), which Ray deletes with the cluster; a
relative output written there is lost and the next job cannot find it. So in a submitted job
a relative output (``output``, ``checkpoint.storage_path``) resolves against
``storage.root`` (env ``UNIEMBED_STORAGE_ROOT``, set by the KubeRay manifests), or is an error
that names the key. Relative inputs that are not in the working dir resolve against the same
root, so the next job takes the path the last one was given. Outside a submitted job a
relative path is taken from the working folder and made absolute, so every job's last line
names what it wrote in full.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any, TypeVar

from uniembed import storage

STORAGE_ROOT_ENV = "UNIEMBED_STORAGE_ROOT"
# Set by Ray's job supervisor for the entrypoint of `ray job submit` (JSON with the job's
# metadata, which holds the submission id).
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"

C = TypeVar("C")


class OutputLocationError(ValueError):
    """A relative output path in a submitted job, with no ``storage.root`` to put it under."""


def submission_id() -> str | None:
    """The submission id when this process is the entrypoint of ``ray job submit``."""
    raw = os.environ.get(_JOB_CONFIG_ENV)
    if not raw:
        return None
    try:
        meta = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        return None
    return str(meta.get("job_submission_id") or "submitted job")


def _is_relative(path: str) -> bool:
    return "://" not in path and not os.path.isabs(os.path.expanduser(path))


def storage_root(configured: str | None) -> str | None:
    """``storage.root`` if set, else ``UNIEMBED_STORAGE_ROOT``; a relative root is an
    error (it would need a root of its own)."""
    root = configured or os.environ.get(STORAGE_ROOT_ENV) or None
    if root is not None and _is_relative(root):
        raise OutputLocationError(
            f"storage.root {root!r} is relative; give s3://bucket/prefix or an absolute path "
            "on storage every node shares"
        )
    return root


def resolve_output(path: str, key: str, root: str | None, job: str | None) -> str:
    """The absolute URI a job writes ``path`` (config key ``key``) to.

    ``job`` is the submission id of a ``ray job submit`` entrypoint (None elsewhere)."""
    if not _is_relative(path):
        return path
    if root is not None:
        return storage.join(root, path)
    if job is not None:
        raise OutputLocationError(
            f"{key}={path!r} is a relative path in a job started by `ray job submit` ({job}): "
            "it would be written into Ray's temporary copy of the working dir and deleted "
            f"with the cluster. Set {key}=s3://bucket/prefix/{path.lstrip('./')} or an "
            "absolute path on storage every node shares, or set storage.root "
            f"(env {STORAGE_ROOT_ENV}) for relative paths to resolve against"
        )
    return storage.absolute(path)


def resolve_input(path: str, root: str | None) -> str:
    """``path`` itself unless it is relative, absent from the working folder, and present
    under ``root`` (where an earlier job wrote it): then ``<root>/<path>``. Registry names
    and hub ids are not under the root, so they stay as they are."""
    if root is None or not _is_relative(path) or os.path.exists(path):
        return path
    candidate = storage.join(root, path)
    return candidate if storage.exists(candidate) else path


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _set(cfg: C, dotted: str, value: Any) -> C:
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(cfg, **{head: value})  # type: ignore[type-var]
    return dataclasses.replace(cfg, **{head: _set(getattr(cfg, head), rest, value)})  # type: ignore[type-var]


def place(cfg: C, outputs: Sequence[str], inputs: Sequence[str] = ()) -> C:
    """``cfg`` with its output keys resolved by :func:`resolve_output` and its input keys
    (a path, a list of paths, or a model name that may be a folder) by
    :func:`resolve_input`.

    Keys are dotted (``checkpoint.storage_path``); ``None`` values stay None. Raises
    OutputLocationError naming the key for a relative output in a submitted job without
    a root."""
    section = getattr(cfg, "storage", None)
    root = storage_root(getattr(section, "root", None))
    job = submission_id()
    for key in outputs:
        value = _get(cfg, key)
        if value:  # None or "": unset, the job's own check names it
            cfg = _set(cfg, key, resolve_output(value, key, root, job))
    if root is None:
        return cfg
    for key in inputs:
        value = _get(cfg, key)
        if isinstance(value, str):
            cfg = _set(cfg, key, resolve_input(value, root))
        elif isinstance(value, list):
            cfg = _set(cfg, key, [resolve_input(v, root) for v in value])
    return cfg
