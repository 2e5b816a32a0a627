"""How every job ends on an error: a user error prints one line and exits 2.

Each ``jobs/<verb>.py`` ends with ``sys.exit(run_job(main, "<verb>"))``. A user error (a
:class:`uniembed.errors.UserError`, or one of the validation errors listed in
``VALIDATION_ERRORS``, also when a Ray task raised it) prints ``<verb>: error: <message>``
on stderr and the job exits 2; its traceback goes to a log file named on that line
(``$UNIEMBED_LOG_DIR``, else ``<tmp>/uniembed-logs``), or to stderr with ``--debug`` (or
``UNIEMBED_DEBUG=1``). Any other exception is an internal error and keeps its traceback.
``main`` itself still raises, so tests and callers see the exception.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from uniembed.errors import UserError

EXIT_USER_ERROR = 2
DEBUG_FLAG = "--debug"
DEBUG_ENV = "UNIEMBED_DEBUG"
LOG_DIR_ENV = "UNIEMBED_LOG_DIR"
# Validation errors of modules that say what is wrong with the user's input or setup
# (module, class): user errors too. Looked up only in modules already imported, so that
# classifying an error imports nothing.
VALIDATION_ERRORS = (
    ("uniembed.data.records", "RecordError"),
    ("uniembed.data.images", "ImageError"),
    ("uniembed.data.locations", "OutputLocationError"),
    ("uniembed.data.training_rows", "TrainingDataError"),
    ("uniembed.embed.dedupe", "DuplicateIdError"),
    ("uniembed.models.registry", "UnknownModelError"),
    ("uniembed.training.state", "CheckpointMismatchError"),
    ("uniembed.runtime", "PreflightError"),
    ("uniembed.storage", "StorageError"),
)
# What to do, for the errors whose messages only say what went wrong.
HINTS = {
    "StorageError": "check the URI, storage.endpoint_url and the credentials "
    "(storage.* keys or AWS_* variables)",
}


def user_error_types() -> tuple[type[BaseException], ...]:
    """:class:`UserError` and the ``VALIDATION_ERRORS`` of the modules imported so far."""
    found: list[type[BaseException]] = [UserError]
    for module, name in VALIDATION_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def find_user_error(exc: BaseException) -> BaseException | None:
    """The user error ``exc`` is, or wraps: a Ray task's error keeps the remote exception
    in ``cause``, and Ray Data re-raises it ``from`` its own. None: an internal error."""
    kinds = user_error_types()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        remote = getattr(current, "cause", None)
        if isinstance(remote, BaseException):  # ray.exceptions.RayTaskError
            current = remote
            continue
        if isinstance(current, kinds):
            return current
        current = current.__cause__
    return None


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (its lines joined with ``; ``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def debug_requested(argv: Sequence[str]) -> bool:
    """True when ``--debug`` is on the command line or ``UNIEMBED_DEBUG`` is set."""
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def write_traceback(job: str, exc: BaseException, argv: Sequence[str]) -> str | None:
    """Write ``exc``'s traceback (and the command line) to a new log file; returns its
    path, or None when no log could be written."""
    folder = Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "uniembed-logs")
    path = folder / f"{job}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        text = "".join(traceback.format_exception(exc))
        path.write_text(f"command: {' '.join([job, *argv])}\n{text}")
    except OSError:
        return None
    return str(path)


def report_user_error(job: str, exc: BaseException, argv: Sequence[str]) -> str:
    """The line printed for ``exc``, a user error or an error wrapping one (see
    ``find_user_error``); writes the traceback to a log file (to stderr under ``--debug``)."""
    where: str | None
    if debug_requested(argv):
        traceback.print_exception(exc, file=sys.stderr)
        where = None
    else:
        where = write_traceback(job, exc, argv)
    cause = find_user_error(exc) or exc
    hint = next((HINTS[c.__name__] for c in type(cause).__mro__ if c.__name__ in HINTS), "")
    tail = f" [traceback: {where}; --debug prints it]" if where else ""
    return f"{job}: error: {one_line(cause)}{'; ' + hint if hint else ''}{tail}"


def run_job(
    main: Callable[[list[str] | None], int], job: str, argv: Sequence[str] | None = None
) -> int:
    """Run a job's ``main(argv)``; a user error prints one line on stderr and returns
    ``EXIT_USER_ERROR`` (2), anything else propagates with its traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(args)
    except Exception as exc:
        if find_user_error(exc) is None:
            raise
        print(report_user_error(job, exc, args), file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
