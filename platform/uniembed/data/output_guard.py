"""Whose files are in an output folder: a job refuses to clear files it did not write.

A job claims its output folder by writing ``_OWNER.json`` (``{"job": "embed"}``) before its
first write. Files in the folder are the job's own when the folder is claimed by the same
job (or holds its ``_SUCCESS.json``, for outputs written before the marker existed) and
their path matches the job's layout; anything else is foreign, and the job refuses to run
unless the user passes ``--overwrite``.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections.abc import Sequence

from uniembed import storage
from uniembed.data.shards import MANIFEST

OWNER_FILE = "_OWNER.json"
STAGING_PREFIX = "_staging-"
SHOWN = 10  # foreign files named in the error


class ForeignFilesError(FileExistsError):
    """The output folder holds files the job did not write; the message names them."""


def foreign_files(relative: Sequence[str], patterns: Sequence[str], claimed: bool) -> list[str]:
    """The paths of ``relative`` (paths under the output folder) that the job did not write.

    Unclaimed folders own nothing; in a claimed one, a path is the job's when it matches one
    of ``patterns`` (``fnmatch``: ``*`` also matches ``/``). Pure: no storage access.
    """
    if not claimed:
        return sorted(relative)
    return sorted(p for p in relative if not any(fnmatch.fnmatchcase(p, g) for g in patterns))


def _relative(output: str, files: list[str]) -> list[str]:
    root = output.rstrip("/") + "/"
    return [f[len(root) :] if f.startswith(root) else f for f in files]


def owner(output: str) -> str | None:
    """The job that claimed ``output`` (None: unclaimed or absent)."""
    uri = storage.join(output, OWNER_FILE)
    if not storage.exists(uri):
        return None
    try:
        return str(json.loads(storage.read_text(uri)).get("job"))
    except (ValueError, AttributeError):
        return None


def check_output(output: str, job: str, patterns: Sequence[str], overwrite: bool) -> None:
    """Raise ForeignFilesError naming the files under ``output`` that ``job`` did not write.

    ``overwrite`` accepts them (the job may then replace them). A missing or empty folder
    passes.
    """
    files = _relative(output, storage.list_files(output))
    if not files or overwrite:
        return
    claimed = owner(output) == job or (owner(output) is None and MANIFEST in files)
    own = [*patterns, OWNER_FILE, MANIFEST, f"{STAGING_PREFIX}*"]
    foreign = foreign_files(files, own, claimed)
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (
            f" (+{len(foreign) - SHOWN} more)" * (len(foreign) > SHOWN)
        )
        raise ForeignFilesError(
            f"output {output} holds {len(foreign)} file(s) the {job} job did not write: {shown}; "
            "choose another --output, or pass --overwrite to let the job replace them"
        )


def claim_output(output: str, job: str) -> None:
    """Mark ``output`` as written by ``job`` (before its first write)."""
    storage.write_text(storage.join(output, OWNER_FILE), json.dumps({"job": job}) + "\n")


def new_run_id() -> str:
    """``<time>-<random>``: names one run's staging folder and shard files."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def staging_folder(output: str, run_id: str) -> str:
    """The run's ``_staging-<run_id>`` folder URI inside ``output``."""
    return storage.join(output, STAGING_PREFIX + run_id)


def publish(staged: str, output: str, names: Sequence[str], manifest: str) -> None:
    """Replace ``output``'s entries ``names`` (files or folders) with those of the finished
    run in ``staged``. ``manifest`` goes first, so a half-replaced folder never looks
    finished; the caller writes the new one (or lists it last in ``names``)."""
    storage.delete(storage.join(output, manifest))
    for name in names:
        source, target = storage.join(staged, name), storage.join(output, name)
        storage.delete(target)
        if storage.exists(source) or storage.list_files(source):
            storage.move(source, target)
