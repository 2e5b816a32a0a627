"""Stage names for Ray Data operators and datasets (``mine/judge``, ``embed/pool`` ...).

Ray Data names an operator after its function or callable class (``MapBatches(JudgeWorker)``)
and a dataset ``dataset_<id>``; the dashboard's Ray Data view, the Actors page and the
driver's progress lines show those names. :func:`named` gives the callable the stage's
name, so the operator reads ``MapBatches(mine/judge)`` and its actors
``MapWorker(MapBatches(mine/judge))``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, TypeVar

F = TypeVar("F")


def dataset_name(stage: str) -> str:
    """A dataset's name for ``stage``: ``mine/queries`` -> ``mine-queries``. Ray Data names
    each dataset's log file after it, so a ``/`` would point into a missing folder."""
    return stage.replace("/", "-")


def stage_of_instance(obj: object) -> str:
    """The stage name :func:`named` gave ``obj``'s class: Ray Data may wrap a callable class
    in a subclass of its own (``_SingleThreadedWrapper``), so the name is looked up along
    the class's bases; an object of an unnamed class gives its class name."""
    for cls in type(obj).__mro__:
        if "/" in cls.__name__:
            return cls.__name__
    return type(obj).__name__


def named(fn: F, stage: str) -> F:
    """``fn`` (a callable class or a function) under the name ``stage``; it behaves the same.

    A class becomes a subclass named ``stage``; a function a wrapper named ``stage``."""
    if inspect.isclass(fn):
        attrs = {"__module__": fn.__module__, "__qualname__": stage, "__doc__": fn.__doc__}
        return type(stage, (fn,), attrs)  # type: ignore[return-value]

    if inspect.isgeneratorfunction(fn):  # Ray Data streams a generator's batches

        @functools.wraps(fn)  # type: ignore[arg-type]
        def stage_gen(*args: Any, **kwargs: Any) -> Any:
            yield from fn(*args, **kwargs)  # type: ignore[operator]

        stage_gen.__name__ = stage_gen.__qualname__ = stage
        return stage_gen  # type: ignore[return-value]

    @functools.wraps(fn)  # type: ignore[arg-type]
    def stage_fn(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)  # type: ignore[operator]

    stage_fn.__name__ = stage_fn.__qualname__ = stage
    return stage_fn  # type: ignore[return-value]
