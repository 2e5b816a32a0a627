"""One storage layer for every job: local paths, ``file://`` and ``s3://bucket/key`` URIs.

Everything goes through ``pyarrow.fs`` so that Ray Data, Ray Train and our own readers see
the same bytes. S3 settings come from the standard AWS environment variables, overridden by
``configure(S3Options(...))`` (the job config); ``S3Options`` is a plain picklable dataclass
so a driver can ship it to Ray workers, which call ``configure`` themselves.

Writes are atomic: a reader never sees a half-written file as complete.

- Local: write to a hidden temp file in the target folder, then ``os.replace`` it.
- S3: the whole object is serialised in memory first and uploaded in one go. pyarrow's S3
  output stream *completes* the upload when it is closed, and ``with`` closes it even when
  the body raised, so producing data while a stream is open would publish a truncated
  object on error. Serialising first means an error happens before any request is sent.
  The upload is a multipart one: an upload cut short is never completed, so never visible.

S3 outages: an operation that cannot reach the endpoint (connection refused or reset,
timeouts, 5xx, throttling) is retried with exponential back-off (0.5 s doubling to 8 s)
until ``S3Options.retry_deadline_s`` (default 120 s; ``storage.retry_deadline_s`` in a
job's config, ``UNIEMBED_S3_RETRY_DEADLINE_S`` in the environment) has passed since its
first attempt, then fails with one ``StorageError`` naming the endpoint, the URI and the
deadline. Refused credentials and missing buckets are not retried: they fail at once,
naming the endpoint, the bucket and the access key id, never the secret.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import posixpath
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Short timeouts so that a wrong or dead endpoint fails in seconds rather than minutes.
_CONNECT_TIMEOUT_S = 3.0
_REQUEST_TIMEOUT_S = 30.0
# Prefix of in-flight local temp files; listings skip them.
_TMP_PREFIX = ".uniembed-tmp-"
# How long an S3 operation keeps retrying an endpoint that does not answer (see above).
DEFAULT_RETRY_DEADLINE_S = 120.0
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 8.0
# What the AWS SDK (inside pyarrow) says when the endpoint is down or overloaded: worth
# waiting for. Anything else (refused credentials, a missing bucket or key) is final.
_TRANSIENT_MARKERS = (
    "NETWORK_CONNECTION",
    "curlCode",
    "Could not connect",
    "Couldn't connect",
    "Connection refused",
    "Connection reset",
    "timed out",
    "Timeout was reached",
    "REQUEST_TIMEOUT",
    "SERVICE_UNAVAILABLE",
    "SLOW_DOWN",
    "THROTTLING",
    "INTERNAL_FAILURE",
    "HTTP response code: 5",
)
_CREDENTIAL_MARKERS = (
    "ACCESS_DENIED",
    "INVALID_ACCESS_KEY_ID",
    "SIGNATURE_DOES_NOT_MATCH",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
)
_T = TypeVar("_T")
logger = logging.getLogger(__name__)


# Recent AWS SDKs (the C++ one inside pyarrow included) add CRC checksums with aws-chunked
# trailers to every upload by default; Ceph radosgw and other S3-compatible servers answer
# those uploads with "411 MissingContentLength". "when_required" keeps checksums only for the
# operations whose API demands them. The SDK reads these variables when a client is built,
# so they must be in the environment first: here at import, again before each build (in
# case someone cleared them), and in Ray workers through ``worker_env_vars``.
_CHECKSUM_ENV = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


def _set_checksum_env() -> None:
    for name, value in _CHECKSUM_ENV.items():
        os.environ.setdefault(name, value)


_set_checksum_env()


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI (and the S3 endpoint)."""


@dataclass
class S3Options:
    """Connection settings for S3-compatible object stores.

    ``None`` means "not set": the value then comes from the environment (``from_env``) or
    the AWS SDK defaults.
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    # Seconds an operation keeps retrying an endpoint that does not answer (None: 120).
    retry_deadline_s: float | None = None

    def __repr__(self) -> str:
        # Never print the secret or the session token in logs.
        return (
            f"S3Options(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
            f"access_key_id={self.access_key_id!r}, secret_access_key="
            f"{'***' if self.secret_access_key else None}, "
            f"session_token={'***' if self.session_token else None}, "
            f"retry_deadline_s={self.retry_deadline_s!r})"
        )

    @classmethod
    def from_env(cls) -> S3Options:
        """Read the standard AWS variables (``AWS_ENDPOINT_URL_S3`` wins over
        ``AWS_ENDPOINT_URL``, ``AWS_REGION`` over ``AWS_DEFAULT_REGION``)."""
        env = os.environ
        deadline = env.get("UNIEMBED_S3_RETRY_DEADLINE_S") or None
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            retry_deadline_s=float(deadline) if deadline is not None else None,
        )

    def merged(self, other: S3Options | None) -> S3Options:
        """Return ``self`` with every field that ``other`` sets replaced by ``other``'s value.

        Typical use: ``S3Options.from_env().merged(explicit)`` so explicit values win.
        """
        if other is None:
            return dataclasses.replace(self)
        updates = {
            f.name: getattr(other, f.name)
            for f in dataclasses.fields(self)
            if getattr(other, f.name) is not None
        }
        return dataclasses.replace(self, **updates)

    def endpoint_name(self) -> str:
        """The endpoint as shown in error messages."""
        if self.endpoint_url:
            return self.endpoint_url
        return f"AWS S3 (region {self.region or 'default'})"


_lock = threading.Lock()
_configured: S3Options | None = None
_fs_cache: dict[tuple[str | None, ...], pafs.S3FileSystem] = {}
_local_fs = pafs.LocalFileSystem()


def configure(options: S3Options | None) -> None:
    """Set process-wide S3 options; their non-``None`` fields override the environment.

    ``configure(None)`` drops the explicit options (the environment alone applies again).
    """
    global _configured
    with _lock:
        _configured = dataclasses.replace(options) if options is not None else None


def get_options() -> S3Options:
    """The effective S3 options: environment variables overridden by ``configure``."""
    with _lock:
        explicit = _configured
    return S3Options.from_env().merged(explicit)


def worker_env_vars() -> dict[str, str]:
    """Environment variables for Ray workers, e.g. ``ray.init(runtime_env={"env_vars":
    worker_env_vars()})`` or a task's ``runtime_env``.

    A pickled ``pyarrow.fs.S3FileSystem`` rebuilds its client in the worker without going
    through this module, so the worker needs the checksum settings (see ``_CHECKSUM_ENV``);
    the effective S3 options come along so that ``S3Options.from_env()`` there agrees.
    """
    opts = get_options()
    out = {name: os.environ.get(name, value) for name, value in _CHECKSUM_ENV.items()}
    pairs = {
        "AWS_ENDPOINT_URL": opts.endpoint_url,
        "AWS_REGION": opts.region,
        "AWS_ACCESS_KEY_ID": opts.access_key_id,
        "AWS_SECRET_ACCESS_KEY": opts.secret_access_key,
        "AWS_SESSION_TOKEN": opts.session_token,
        "UNIEMBED_S3_RETRY_DEADLINE_S": (
            None if opts.retry_deadline_s is None else str(opts.retry_deadline_s)
        ),
    }
    out.update({name: value for name, value in pairs.items() if value is not None})
    return out


def _split_endpoint(endpoint_url: str) -> tuple[str, str]:
    """``http://host:port`` -> (``http``, ``host:port``); a bare ``host:port`` means https."""
    parsed = urlparse(endpoint_url if "://" in endpoint_url else f"https://{endpoint_url}")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise StorageError(f"S3 endpoint {endpoint_url!r} is not an http(s)://host[:port] URL")
    return parsed.scheme, parsed.netloc


def _build_s3(options: S3Options, connect_timeout: float, max_attempts: int) -> pafs.S3FileSystem:
    _set_checksum_env()
    kwargs: dict[str, object] = {}
    if options.endpoint_url:
        scheme, netloc = _split_endpoint(options.endpoint_url)
        kwargs.update(scheme=scheme, endpoint_override=netloc)
    # A custom endpoint has no region lookup to do; asking the SDK to guess one costs a
    # metadata-service timeout on machines outside EC2.
    region = options.region or ("us-east-1" if options.endpoint_url else None)
    try:
        return pafs.S3FileSystem(
            access_key=options.access_key_id,
            secret_key=options.secret_access_key,
            session_token=options.session_token,
            region=region,
            connect_timeout=connect_timeout,
            request_timeout=_REQUEST_TIMEOUT_S,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts),
            **kwargs,
        )
    except (ValueError, OSError, pa.ArrowException) as exc:
        # e.g. an access key without its secret
        raise StorageError(f"bad S3 settings for {options.endpoint_name()}: {exc}") from exc


def _s3_filesystem(options: S3Options) -> pafs.S3FileSystem:
    key = dataclasses.astuple(dataclasses.replace(options, retry_deadline_s=None))
    with _lock:
        fs = _fs_cache.get(key)
        if fs is None:
            fs = _fs_cache[key] = _build_s3(options, _CONNECT_TIMEOUT_S, max_attempts=3)
        return fs


def _sdk_attempts(deadline_s: float) -> int:
    """SDK attempts whose back-off spans about ``deadline_s`` against a refusing endpoint.

    Measured with pyarrow's ``AwsStandardS3RetryStrategy``: 3 attempts give up after about
    1 s, 8 after about 28 s, 12 after about 96 s (each retry past the 8th waits ~17 s).
    """
    return 8 + max(0, math.ceil((deadline_s - 28.0) / 17.0))


@dataclasses.dataclass(frozen=True)
class _PatientBuild:
    """Builds the S3 filesystem of ``options`` with ``attempts`` SDK attempts (picklable)."""

    options: S3Options
    attempts: int

    def __call__(self) -> pafs.S3FileSystem:
        return _build_s3(self.options, _CONNECT_TIMEOUT_S, max_attempts=self.attempts)


def patient_filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """Like :func:`filesystem_for`, for code that writes through the filesystem itself and
    does not retry (Ray Train's checkpoint uploads and its controller's snapshots): the
    SDK's own retries ride out an outage of about ``retry_deadline_s``, where the default
    filesystem gives up within a second or two and a lost write would end the run. It stays
    so when pickled to other processes (:mod:`uniembed.patient_fs`)."""
    from uniembed.patient_fs import PatientS3Handler

    scheme, path = _parse(uri)
    if scheme != "s3":
        return _local_fs, path
    options = get_options()
    deadline = options.retry_deadline_s
    attempts = _sdk_attempts(DEFAULT_RETRY_DEADLINE_S if deadline is None else deadline)
    return pafs.PyFileSystem(PatientS3Handler(_PatientBuild(options, attempts))), path


def _parse(uri: str) -> tuple[str, str]:
    """Split a URI into (scheme, filesystem path): ``("s3", "bucket/key")`` or
    ``("file", "/abs/path")``."""
    if not isinstance(uri, str) or not uri:
        raise StorageError(f"expected a non-empty URI string, got {uri!r}")
    if uri.startswith("s3://"):
        path = uri[len("s3://") :].strip("/")
        if not path or path.startswith("/"):
            raise StorageError(f"{uri}: an s3 URI needs a bucket (s3://bucket/key)")
        return "s3", path
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        if not path.startswith("/"):
            raise StorageError(f"{uri}: a file:// URI needs an absolute path (file:///abs)")
        return "file", os.path.normpath(path)
    if "://" in uri:
        raise StorageError(f"{uri}: unsupported scheme (use a local path, file:// or s3://)")
    return "file", os.path.abspath(os.path.expanduser(uri))


def is_remote(uri: str) -> bool:
    """True for ``s3://`` URIs, False for local paths and ``file://``."""
    return _parse(uri)[0] == "s3"


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it (``bucket/key`` for S3, absolute path
    for local) for ``uri``. S3 filesystems are cached per effective options."""
    scheme, path = _parse(uri)
    if scheme == "s3":
        return _s3_filesystem(get_options()), path
    return _local_fs, path


def local_path(uri: str) -> str | None:
    """The absolute local path of a local or ``file://`` URI; ``None`` for remote URIs."""
    scheme, path = _parse(uri)
    return path if scheme == "file" else None


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with ``/``, keeping its scheme: ``join("s3://b", "x", "y")``
    is ``"s3://b/x/y"``."""
    out = uri
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = out.rstrip("/") + "/" + part
    return out


def _where(uri: str) -> str:
    return f"{uri} (endpoint {get_options().endpoint_name()})" if is_remote(uri) else uri


def _transient(exc: BaseException) -> bool:
    """True if ``exc`` says the endpoint did not answer (worth retrying), not a refusal."""
    text = str(exc)
    return any(m in text for m in _TRANSIENT_MARKERS) and not any(
        m in text for m in _CREDENTIAL_MARKERS
    )


def _refusal(uri: str, exc: BaseException) -> str | None:
    """The message for credentials the endpoint refused (None if ``exc`` is not that)."""
    text = str(exc)
    if not any(m in text for m in _CREDENTIAL_MARKERS):
        return None
    opts = get_options()
    bucket = _parse(uri)[1].split("/", 1)[0]
    return (
        f"S3 endpoint {opts.endpoint_name()} refused the credentials (access key id "
        f"{opts.access_key_id!r}) for bucket {bucket!r} ({uri}): check AWS_ACCESS_KEY_ID / "
        f"AWS_SECRET_ACCESS_KEY or the job's storage section; it said: {text.splitlines()[0]}"
    )


def retrying(what: str, uri: str, op: Callable[[], _T]) -> _T:
    """Run the storage operation ``op`` on ``uri``; while the S3 endpoint does not answer,
    retry with exponential back-off until the retry deadline, then raise one StorageError
    naming ``what`` (e.g. "write"), the URI, the endpoint and the deadline. Local URIs and
    final errors (refused credentials, not found) pass through at once."""
    if not is_remote(uri):
        return op()
    deadline_s = get_options().retry_deadline_s
    deadline_s = DEFAULT_RETRY_DEADLINE_S if deadline_s is None else deadline_s
    start = time.monotonic()
    wait, attempts = _BACKOFF_FIRST_S, 0
    while True:
        attempts += 1
        try:
            return op()
        except StorageError as exc:
            cause = exc.__cause__ or exc
            refused = _refusal(uri, cause)
            if refused is not None:
                raise StorageError(refused) from None
            if not _transient(cause):
                raise
            waited = time.monotonic() - start
            if waited + wait > deadline_s:
                raise StorageError(
                    f"cannot {what} {_where(uri)}: the endpoint did not answer for "
                    f"{waited:.0f} s ({attempts} attempts; storage.retry_deadline_s="
                    f"{deadline_s:g}); last error: {cause}"
                ) from None
            logger.warning(
                "S3 %s of %s failed (attempt %d, %.0f s of %g s): retrying in %.1f s: %s",
                what,
                uri,
                attempts,
                waited,
                deadline_s,
                wait,
                str(cause).splitlines()[0][:200],
            )
            time.sleep(wait)
            wait = min(wait * 2, _BACKOFF_MAX_S)


def _to_uri(base_uri: str, base_path: str, path: str) -> str:
    """Rebuild a URI in ``base_uri``'s form for ``path`` found under ``base_path``."""
    rel = posixpath.relpath(path, base_path) if path != base_path else ""
    return join(base_uri, rel) if rel else base_uri


def exists(uri: str) -> bool:
    """True if a file or folder (or, on S3, any object under the prefix) exists at ``uri``."""
    return retrying("stat", uri, lambda: _exists(uri))


def _exists(uri: str) -> bool:
    fs, path = filesystem_for(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot stat {_where(uri)}: {exc}") from exc


def read_bytes(uri: str) -> bytes:
    """The whole content of the file at ``uri``."""
    return retrying("read", uri, lambda: _read_bytes(uri))


def _read_bytes(uri: str) -> bytes:
    fs, path = filesystem_for(uri)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.readall()
    except FileNotFoundError as exc:
        raise StorageError(f"{_where(uri)}: not found") from exc
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read {_where(uri)}: {exc}") from exc


def read_text(uri: str) -> str:
    """The file at ``uri`` decoded as UTF-8."""
    data = read_bytes(uri)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StorageError(f"{uri}: not valid UTF-8 ({exc})") from exc


def _atomic_write(uri: str, produce: Callable[[pa.NativeFile], None]) -> None:
    """Write what ``produce(sink)`` writes to ``uri`` so that it appears whole or not at all."""
    fs, path = filesystem_for(uri)
    if isinstance(fs, pafs.S3FileSystem):
        # Serialise first (see module docstring): an exception in ``produce`` sends nothing.
        sink = pa.BufferOutputStream()
        produce(sink)
        payload = sink.getvalue()

        def upload() -> None:
            try:
                with fs.open_output_stream(path) as out:
                    out.write(payload)
            except (OSError, pa.ArrowException) as exc:
                raise StorageError(f"cannot write {_where(uri)}: {exc}") from exc

        retrying("write", uri, upload)
        return
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, f"{_TMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(path)}")
    try:
        os.makedirs(folder, exist_ok=True)
        with pa.OSFile(tmp, "wb") as out:
            produce(out)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, (OSError, pa.ArrowException)):
            raise StorageError(f"cannot write {uri}: {exc}") from exc
        raise


def write_bytes(uri: str, data: bytes) -> None:
    """Atomically write ``data`` to ``uri``, creating parent folders as needed."""
    _atomic_write(uri, lambda sink: sink.write(data))


def write_text(uri: str, text: str) -> None:
    """Atomically write ``text`` as UTF-8 to ``uri``."""
    write_bytes(uri, text.encode("utf-8"))


def write_parquet(uri: str, table: pa.Table) -> None:
    """Atomically write ``table`` as one Parquet file at ``uri``."""
    if not isinstance(table, pa.Table):
        raise StorageError(f"{uri}: write_parquet expects a pyarrow.Table, got {type(table)}")
    _atomic_write(uri, lambda sink: pq.write_table(table, sink))


def list_files(uri: str, suffix: str | None = None) -> list[str]:
    """All files under ``uri`` (recursive), as full URIs in ``uri``'s form, sorted.

    A missing folder gives ``[]``; a file gives ``[uri]`` if it matches ``suffix``. Local
    temp files of writes in flight are skipped.
    """
    fs, path = filesystem_for(uri)

    def listing() -> list[pafs.FileInfo]:
        try:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.File:
                return [info]
            return fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot list {_where(uri)}: {exc}") from exc

    infos = retrying("list", uri, listing)
    out = []
    for item in infos:
        if item.type != pafs.FileType.File or item.base_name.startswith(_TMP_PREFIX):
            continue
        if suffix is not None and not item.base_name.endswith(suffix):
            continue
        out.append(uri if item.path == path else _to_uri(uri, path, item.path))
    return sorted(out)


@dataclass(frozen=True)
class Skipped:
    """A name :func:`list_input_files` left out: the link (or second name of a file), the
    real path it leads to, whether that is a folder, and why."""

    path: str
    target: str
    folder: bool
    why: str

    def __str__(self) -> str:
        return f"{self.path} -> {self.target}: {self.why}"


@dataclass(frozen=True)
class InputListing:
    """The files of an input folder as :func:`list_input_files` found them.

    ``files``: URIs in the input's form, sorted, each real file once; ``skipped``: every
    link or second name left out (:class:`Skipped`).
    """

    files: list[str]
    skipped: list[Skipped]


def list_input_files(uri: str, follow_symlinks: bool = False) -> InputListing:
    """The files under the input folder ``uri`` (recursive), each real file once.

    Local folders are walked here rather than by pyarrow, which follows every folder link
    (a loop such as ``again -> .`` lists each file 40 times over). Links are judged by the
    path they resolve to (``realpath``):

    - a link to a folder is followed only with ``follow_symlinks``; one that leads back to a
      folder above it (a loop) or to a folder already listed is never followed;
    - a link to a file outside the input folder is left out unless ``follow_symlinks``;
    - two names of one file (a link beside its target) list the file once, under the name
      that is not a link (else the first in name order).

    What is left out is named in ``skipped``. ``s3://`` has no links: its listing is
    :func:`list_files`'s.
    """
    scheme, path = _parse(uri)
    if scheme != "file":
        return InputListing(list_files(uri), [])
    if os.path.isfile(path):
        return InputListing([uri], [])
    root_real = os.path.realpath(path)
    found: list[tuple[str, str, bool]] = []  # (path, real path, reached through a link)
    skipped: list[Skipped] = []

    def walk(folder: str, chain: frozenset[str], linked: bool) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc}") from exc
        for entry in entries:
            if entry.name.startswith(_TMP_PREFIX):
                continue
            if not entry.is_symlink():
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path, chain | {os.path.realpath(entry.path)}, linked)
                elif entry.is_file(follow_symlinks=False):
                    found.append((entry.path, os.path.realpath(entry.path), linked))
                continue
            target = os.path.realpath(entry.path)
            if not os.path.exists(target):
                skipped.append(Skipped(entry.path, target, False, "a broken link"))
            elif os.path.isdir(target):
                if any(_inside(target, c) for c in chain):
                    why = (
                        f"a symlink loop (leads back to {target}, a folder it is in), not followed"
                    )
                elif not follow_symlinks:
                    why = "a folder link, not followed (set follow_symlinks=true to read it)"
                elif target in walked:
                    why = "a folder already listed"
                else:
                    walked.add(target)
                    walk(entry.path, chain | {target}, True)
                    continue
                skipped.append(Skipped(entry.path, target, True, why))
            elif follow_symlinks or _inside(root_real, target):
                found.append((entry.path, target, True))
            else:
                why = (
                    f"a link to a file outside the input folder {root_real} "
                    "(set follow_symlinks=true to read it)"
                )
                skipped.append(Skipped(entry.path, target, False, why))

    walked: set[str] = {root_real}
    walk(path, frozenset({root_real}), False)
    first: dict[str, tuple[str, bool]] = {}
    for p, real, linked in sorted(found, key=lambda f: (f[2], f[0])):
        if real in first:
            skipped.append(Skipped(p, real, False, f"the same file as {first[real][0]}, read once"))
        else:
            first[real] = (p, linked)
    files = sorted(_to_uri(uri, path, p) for p, _ in first.values())
    return InputListing(files, skipped)


def _inside(folder: str, path: str) -> bool:
    """True when ``path`` is ``folder`` or below it (both real, absolute paths)."""
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file, or every ``*.parquet`` file under a folder (sorted by name,
    skipping names starting with ``_`` or ``.``), as one table."""
    fs, path = filesystem_for(uri)
    files = [
        f
        for f in list_files(uri, suffix=".parquet")
        if not posixpath.basename(f).startswith(("_", "."))
    ]
    if not files:
        raise StorageError(f"{_where(uri)}: no parquet file found")

    def read_one(f: str) -> pa.Table:
        try:
            return pq.read_table(filesystem_for(f)[1], columns=columns, filesystem=fs)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot read parquet {_where(f)}: {exc}") from exc

    tables = [retrying("read", f, lambda f=f: read_one(f)) for f in files]
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except pa.ArrowException as exc:
        raise StorageError(f"{uri}: parquet files have incompatible schemas: {exc}") from exc


def delete(uri: str) -> None:
    """Delete the file or the whole tree at ``uri``; a missing one is fine. ``s3://bucket``
    alone empties the bucket but keeps it."""
    retrying("delete", uri, lambda: _delete(uri))


def _delete(uri: str) -> None:
    fs, path = filesystem_for(uri)
    try:
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.File:
            fs.delete_file(path)
        elif kind == pafs.FileType.Directory:
            if is_remote(uri) and "/" not in path:
                fs.delete_dir_contents(path, missing_dir_ok=True)
            else:
                fs.delete_dir(path)
    except FileNotFoundError:
        return
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot delete {_where(uri)}: {exc}") from exc


def absolute(uri: str) -> str:
    """``uri`` with a relative local path made absolute against this process's working
    folder; ``s3://`` and absolute paths unchanged. Call it where a path is given (the
    driver) before other processes, whose working folders differ, receive it."""
    if is_remote(uri) or "://" in uri:
        return uri
    return os.path.abspath(os.path.expanduser(uri))


def move(src: str, dst: str) -> None:
    """Move the file or tree at ``src`` to ``dst`` (same filesystem); ``dst`` must not exist.

    Local: one rename. S3 has no rename: every object is copied, then the source deleted,
    so a reader may briefly see both; callers publish a manifest only after the move.
    """
    fs, src_path = filesystem_for(src)
    _, dst_path = filesystem_for(dst)
    try:
        if not is_remote(src):
            os.makedirs(os.path.dirname(dst_path) or ".", exist_ok=True)
            fs.move(src_path, dst_path)
            return
        for f in list_files(src):
            rel = posixpath.relpath(filesystem_for(f)[1], src_path)
            target = dst_path if rel == "." else posixpath.join(dst_path, rel)
            retrying("copy", f, lambda f=f, target=target: _copy(fs, f, target, dst))
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot move {_where(src)} to {dst}: {exc}") from exc
    delete(src)


def _copy(fs: pafs.FileSystem, src: str, target: str, dst: str) -> None:
    try:
        fs.copy_file(filesystem_for(src)[1], target)
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot copy {_where(src)} to {dst}: {exc}") from exc


def makedirs(uri: str) -> None:
    """Create the folder ``uri`` and its parents (on S3 only prefix markers; the bucket must
    exist)."""
    fs, path = filesystem_for(uri)

    def create() -> None:
        try:
            fs.create_dir(path, recursive=True)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot create folder {_where(uri)}: {exc}") from exc

    retrying("create folder", uri, create)


def check_reachable(uri: str, timeout_s: float = 10) -> None:
    """Fail fast with a clear message if ``uri`` cannot be written.

    S3: raise ``StorageError`` within about ``timeout_s`` naming the endpoint and bucket if
    the endpoint does not answer, refuses the credentials or the bucket does not exist.
    Local: raise if the nearest existing folder of ``uri`` is not a writable folder.
    """
    scheme, path = _parse(uri)
    if scheme == "file":
        probe = path
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if os.path.isfile(probe) and probe != path:
            raise StorageError(f"{uri}: {probe} is a file, not a folder")
        folder = probe if os.path.isdir(probe) else os.path.dirname(probe)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StorageError(f"{uri}: folder {folder} is not writable")
        return
    _check_bucket(uri, path.split("/", 1)[0], timeout_s)


def _check_bucket(uri: str, bucket: str, timeout_s: float) -> None:
    options = get_options()
    where = f"S3 endpoint {options.endpoint_name()}, bucket {bucket!r} ({uri})"
    # A separate client without retries: the cached one retries with backoff.
    fs = _build_s3(options, connect_timeout=min(_CONNECT_TIMEOUT_S, timeout_s), max_attempts=1)
    result: dict[str, object] = {}

    def probe() -> None:
        try:
            result["type"] = fs.get_file_info(bucket).type
        except BaseException as exc:  # reported to the caller below
            result["error"] = exc

    # The SDK's own timeouts do not bound every case (a host that accepts the connection but
    # never answers), so the probe runs in a thread that we stop waiting for.
    thread = threading.Thread(target=probe, name="s3-reachability", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise StorageError(f"{where}: no answer within {timeout_s:g} s")
    if "error" in result:
        refused = _refusal(uri, result["error"])  # type: ignore[arg-type]
        if refused is not None:
            raise StorageError(refused)
        raise StorageError(f"{where}: unreachable or refused: {result['error']}")
    if result["type"] == pafs.FileType.NotFound:
        raise StorageError(f"{where}: bucket {bucket!r} does not exist")
