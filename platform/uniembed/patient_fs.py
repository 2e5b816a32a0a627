"""An S3 filesystem for code that writes through it and does not retry (Ray Train).

Ray Train pickles the ``storage_filesystem`` it is given to its controller and workers.
pyarrow's ``S3FileSystem`` loses its ``retry_strategy`` on the way (pyarrow 26 pickles it
without one), so a checkpoint upload or the controller's snapshot write gave up within a
couple of seconds of an outage and ended the run. This filesystem carries the S3 options
and the attempt count instead, and builds the S3 filesystem with them wherever it lands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs


class PatientS3Handler(pafs.FileSystemHandler):
    """A ``pyarrow.fs.PyFileSystem`` handler delegating to an S3 filesystem that
    ``build()`` makes; pickled as ``build`` (a picklable callable), so it is rebuilt with
    the same retries in every process."""

    def __init__(self, build: Callable[[], pafs.S3FileSystem]) -> None:
        self.build = build
        self._fs: pafs.S3FileSystem | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (PatientS3Handler, (self.build,))

    @property
    def fs(self) -> pafs.S3FileSystem:
        if self._fs is None:
            self._fs = self.build()
        return self._fs

    def __eq__(self, other: object) -> bool:  # unhashable, like the S3 options it holds
        return isinstance(other, PatientS3Handler) and other.build == self.build

    def get_type_name(self) -> str:
        return "patient-s3"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("patient-s3: deleting the whole bucket space is not allowed")

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: dict[str, str] | None) -> pa.NativeFile:
        return self.fs.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path: str, metadata: dict[str, str] | None) -> pa.NativeFile:
        return self.fs.open_append_stream(path, metadata=metadata)
