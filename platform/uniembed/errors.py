"""Errors the user can fix: a job prints their message as one line and exits 2.

A missing input, a config value of the wrong type, an output folder holding foreign files,
an unreachable storage endpoint, an input without one usable row: each raises a
:class:`UserError` (or one of the validation errors :mod:`uniembed.cli` counts as one),
whose message says what is wrong, which file or key, and what to do. Anything else is an
internal error and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user gave (input, config, output folder, storage endpoint);
    the message names it and says what to do."""


class MissingInputError(UserError, FileNotFoundError):
    """An input file or folder does not exist or holds no record files."""


class EmptyOutputError(UserError):
    """A run would publish zero rows over an existing output; the old output is kept."""


class NoValidRowsError(UserError):
    """Every row of an input was quarantined: there is nothing to run the job on."""
