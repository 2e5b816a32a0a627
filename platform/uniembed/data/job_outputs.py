"""The folder a job prints is the folder the next job takes.

A finished output holds ``_SUCCESS.json`` at its root. A train run's manifest names the
folder of its model (``"export": "export"``), so ``--model <run folder>`` (evaluate, serve,
the mine job's judge) finds the model inside it; the mine job's rows are found by
``uniembed.data.training_rows.rows_location``. A folder without a manifest is taken as it is:
the subfolder itself still works.
"""

from __future__ import annotations

import json
from typing import Any

from uniembed import storage
from uniembed.data.shards import MANIFEST

EXPORT_KEY = "export"  # the manifest key naming a run's model folder (relative to the run)


def model_location(uri: str) -> str:
    """``uri``'s model folder: ``<uri>/<export>`` when ``uri`` is a finished train run whose
    ``_SUCCESS.json`` names one, else ``uri`` itself. Registry names and hub ids (no
    manifest) come back unchanged."""
    manifest = storage.join(uri, MANIFEST)
    try:
        if not storage.exists(manifest):
            return uri
        data = json.loads(storage.read_text(manifest))
    except (ValueError, OSError, storage.StorageError):
        return uri
    sub = data.get(EXPORT_KEY) if isinstance(data, dict) else None
    return storage.join(uri, sub) if isinstance(sub, str) and sub else uri


def write_run_manifest(run: str, job: str, summary: dict[str, Any], export: str | None) -> None:
    """Mark the train run folder ``run`` finished; ``export`` is its model folder's URI."""
    data: dict[str, Any] = {"job": job, **summary}
    if export is not None:
        data[EXPORT_KEY] = export[len(run.rstrip("/")) + 1 :] if export.startswith(run) else export
    storage.write_text(storage.join(run, MANIFEST), json.dumps(data, indent=2, default=str) + "\n")


def clear_run_manifest(run: str) -> None:
    """A run that starts (or resumes) is not finished until it writes its manifest again."""
    storage.delete(storage.join(run, MANIFEST))
