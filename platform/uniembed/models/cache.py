"""The local model cache (``$UNIEMBED_CACHE``, default ``~/.cache/uniembed``) and
race-safe building of folders in it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

COMPLETE_MARKER = ".uniembed-complete"


def cache_dir() -> Path:
    """Root of the model cache: ``$UNIEMBED_CACHE`` or ``~/.cache/uniembed``."""
    root = os.environ.get("UNIEMBED_CACHE") or os.path.join("~", ".cache", "uniembed")
    return Path(root).expanduser()


def cached_folder(key: str, build: Callable[[Path], None]) -> Path:
    """The cache folder ``models/<key>``, calling ``build(tmp_folder)`` once if it is missing.

    Safe when several processes build at once: each builds into its own temporary folder
    next to the target and renames it into place; renaming onto an existing folder fails,
    so the first finished build wins and the others discard theirs. A folder is complete
    once it exists (the marker is written before the rename).
    """
    final = cache_dir() / "models" / key
    if (final / COMPLETE_MARKER).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.building.", dir=final.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared by workers
        (tmp / COMPLETE_MARKER).write_text("")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / COMPLETE_MARKER).is_file():
                raise  # not a lost race: something else is in the way
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
