"""The process a local Dask cluster's workers are forked from, with the pipeline imported.

Workers spawned afresh each import distributed, geopandas, osmnx and the
pipeline (2.2 to 2.5 s on a 2-core CPU, both at once, and 0.6 s to stop).
Forked from the building process they start in 0.2 s, but that process runs
threads (the cluster's event loop, the progress display), and a child forked
while one of them holds a lock can wait on it forever. A fork server is a
single-threaded process started for the purpose: it imports what workers need
once, and each worker is forked from it (Python's own default on POSIX from
3.14). ``urbangen data build`` starts it before its own imports when it will
build on a local cluster, so that the two import side by side.

The server keeps the modules and environment it started with for as long as
the process that started it lives: a short command's are current, a notebook's
could go stale. So a local cluster forks its workers from it only where it was
started on purpose (:func:`start_fork_server`); otherwise they are spawned.

This module imports nothing heavy, so that it can start the server first.
"""

from __future__ import annotations

import os
import sys

#: What a worker needs imported to run a city's or a block's task.
WORKER_MODULES = ("distributed", "data_pipeline.city_tasks")
#: What Dask sets before spawning a worker (``distributed.nanny.pre-spawn-environ`` and the nanny's hash
#: seed), where this process has no value of its own: the server gets it, and its workers inherit it (Dask's
#: setting reaches only spawned workers). Numerical libraries read theirs as they load, so they must be
#: there before the server's imports; one thread each, as a worker runs one task at a time.
WORKER_ENVIRON = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                  "PYTHONHASHSEED": "6640"}

_started = False


def fork_server_started() -> bool:
    """Whether :func:`start_fork_server` started the fork server in this process."""
    return _started


def start_fork_server() -> None:
    """Start the fork server, importing :data:`WORKER_MODULES`, unless it runs already (then nothing); on
    Linux only (macOS forks badly after its system frameworks load, and Python spawns there by default).

    It finds modules as this process does (this process's ``sys.path``, not the
    directory it was started from first) and gets :data:`WORKER_ENVIRON` where
    this process has no value of its own; this process's environment is left as
    it was.
    """
    import multiprocessing
    from multiprocessing import forkserver
    from unittest import mock

    global _started
    if not sys.platform.startswith("linux"):
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_MODULES))
    server_environ = {name: os.environ.get(name, value) for name, value in WORKER_ENVIRON.items()}
    if server_environ["PYTHONHASHSEED"] == "0":  # Dask's rule: a seed of 0 is replaced too
        server_environ["PYTHONHASHSEED"] = WORKER_ENVIRON["PYTHONHASHSEED"]
    # The server is a `python -c` process: without these it would put the current directory first on its
    # path and could import another checkout's pipeline than this process runs.
    server_environ["PYTHONSAFEPATH"] = "1"
    server_environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with mock.patch.dict(os.environ, server_environ):  # restored as it was on leaving, added names removed
        forkserver.ensure_running()  # started here, with the environment of this moment
    _started = True
