"""Library messages on the driver's console that a user cannot act on, silenced where they
start, each with the reason.

Ray Core logs, at error level and once per process (``RAY_LOG_ONCE_PER_PROCESS``), when an
actor that may be restarted gets a constructor argument through the object store: a restart
would fail if that object were gone (ray-project/ray#53727). Ray Data passes its own
operator state that way to every actor pool it starts (the data context and the map
transformer, by ``ObjectRef``), so every job with an actor pool printed
``E ... core_worker.cc: Actor with class name: 'MapWorker(...)' ... has constructor
arguments in the object store`` although its own arguments are small and nothing was wrong
(ray-project/ray#57733, open). :func:`spend_actor_argument_warning` uses up that one log
line on a throw-away actor with the driver's stderr pointed at ``/dev/null`` for the
duration of the call, so Ray's other error lines still reach the console.
"""

from __future__ import annotations

import os
import sys

_spent = False


class _Throwaway:
    """An actor created only so that Ray logs its once-per-process warning for it."""

    def __init__(self, _arg: object) -> None:
        pass


def spend_actor_argument_warning() -> None:
    """Use up Ray's once-per-process "constructor arguments in the object store" error line
    without showing it (see the module's docstring). Idempotent; Ray must be initialised."""
    global _spent
    import ray

    if _spent or not ray.is_initialized():
        return
    _spent = True
    cls = ray.remote(num_cpus=0, max_restarts=1)(_Throwaway)
    arg = ray.put(None)
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        actor = cls.remote(arg)  # Ray logs the line here, synchronously, on this thread
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    # Killed once started: killed while still being scheduled, the GCS logs an error of its
    # own ("Failed to kill actor").
    ray.get(actor.__ray_ready__.remote(), timeout=300)
    ray.kill(actor)
