"""Whose files are in an output folder: a job refuses to clear files it did not write.

A job claims its output folder by writing ``_OWNER.json`` (``{"job": "embed"}``) before its
first write. Files in the folder are the job's own when the folder is claimed by the same
job (or holds its ``_SUCCESS.json``, for outputs written before the marker existed) and
their path matches the job's layout; anything else is foreign, and the job refuses to run
unless the user passes ``--overwrite``.

A run that would publish zero rows over an existing output refuses (:func:`check_not_empty`)
unless the user passes ``--allow-empty``: an empty or all-bad input must not replace a good
output.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from uniembed import storage
from uniembed.data.shards import MANIFEST
from uniembed.errors import EmptyOutputError, MissingInputError, UserError

OWNER_FILE = "_OWNER.json"
STAGING_PREFIX = "_staging-"
SHOWN = 10  # foreign files named in the error
REASONS_SHOWN = 3  # quarantine reasons named when a run is refused


class ForeignFilesError(UserError, FileExistsError):
    """The output folder holds files the job did not write; the message names them."""


@contextmanager
def naming_input(key: str) -> Iterator[None]:
    """A ``FileNotFoundError`` raised inside (``record_files.input_files``: a missing input,
    or one without record files) becomes a :class:`MissingInputError` naming ``key``."""
    try:
        yield
    except MissingInputError:
        raise
    except FileNotFoundError as e:
        raise MissingInputError(f"{e}; check {key} (--{key.replace('_', '-')})") from e


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
    """Mark ``output`` as written by ``job`` (before its first write); a folder the job
    already claimed is left as it is."""
    if owner(output) != job:
        storage.write_text(storage.join(output, OWNER_FILE), json.dumps({"job": job}) + "\n")


def refuses_empty(rows_out: int, existing: bool, allow_empty: bool) -> bool:
    """True when a run must not publish: it has no row to publish, an earlier output would
    be replaced, and the user did not allow an empty output. Pure."""
    return rows_out == 0 and existing and not allow_empty


def has_output(output: str, names: Sequence[str]) -> bool:
    """True when ``output`` holds a published entry (``names``, files or folders) or a
    manifest: something an empty run would replace."""
    files = _relative(output, storage.list_files(output))
    tops = {f.split("/", 1)[0] for f in files}
    return MANIFEST in tops or any(n in tops for n in names)


def empty_refusal(
    job: str, input_uri: str, output: str, rows_in: int, reasons: Sequence[str]
) -> str:
    """The message of a refused empty run: the input, what became of its rows, the first
    quarantine reasons and what to do. Pure."""
    why = f"{rows_in} rows read, all quarantined" if rows_in else "no rows read"
    first = "; ".join(reasons[:REASONS_SHOWN])
    shown = f" (first reasons: {first})" if first else ""
    return (
        f"input {input_uri}: {why}{shown}; the {job} job would publish 0 rows, so the "
        f"existing output {output} is kept. Fix the input, or pass --allow-empty "
        "(allow_empty=true) to replace it with an empty output"
    )


def check_not_empty(
    job: str,
    input_uri: str,
    output: str,
    rows: tuple[int, int],
    names: Sequence[str],
    allow_empty: bool,
    reasons: Sequence[str] = (),
) -> None:
    """Raise :class:`EmptyOutputError` when a run of ``job`` over ``input_uri`` would
    publish zero rows over an existing ``output``; ``rows`` is ``(read, to publish)``."""
    rows_in, rows_out = rows
    if rows_out == 0 and refuses_empty(rows_out, has_output(output, names), allow_empty):
        raise EmptyOutputError(empty_refusal(job, input_uri, output, rows_in, reasons))


def first_reasons(quarantine_dir: str, n: int = REASONS_SHOWN) -> list[str]:
    """The first ``n`` quarantine reasons (``source: reason``) of the shards under
    ``quarantine_dir``; none when it holds no shard."""
    from uniembed.data import schema as S

    reasons: list[str] = []
    for f in storage.list_files(quarantine_dir, suffix=".parquet"):
        for row in storage.read_parquet(f, columns=[S.REASON]).to_pylist():
            reasons.append(str(row[S.REASON]))
            if len(reasons) >= n:
                return reasons
    return reasons


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
