"""Model folders in object storage: fetched once into the local model cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from uniembed import storage
from uniembed.models.cache import cache_dir


def download_model(uri: str) -> str:
    """A local folder holding the model at ``uri``: the path itself for local URIs; for
    ``s3://`` a copy in the model cache (``<cache>/downloads/<key>``), fetched once per
    version of the files (the key hashes the URI and every file's size and mtime). A train
    run folder stands for its export (``job_outputs.model_location``)."""
    from uniembed.data.job_outputs import model_location

    uri = model_location(uri)
    local = storage.local_path(uri)
    if local is not None:
        if not Path(local).is_dir():
            raise FileNotFoundError(f"{uri}: not a model folder")
        return local
    files = storage.list_files(uri)
    if not files:
        raise FileNotFoundError(f"{uri}: no model files found")
    fs, _ = storage.filesystem_for(uri)
    infos = fs.get_file_info([storage.filesystem_for(f)[1] for f in files])
    h = hashlib.sha256(uri.encode())
    for info in infos:
        mtime = info.mtime_ns if info.type == pafs.FileType.File else None
        h.update(f"{info.path}:{info.size}:{mtime};".encode())
    final = cache_dir() / "downloads" / h.hexdigest()[:24]
    if (final / ".complete").is_file():
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download.", dir=final.parent))
    try:
        prefix = uri.rstrip("/") + "/"
        for f in files:
            dest = tmp / f[len(prefix) :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(storage.read_bytes(f))
        (tmp / ".complete").write_text(uri)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(final)
