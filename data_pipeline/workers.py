"""The process a local Dask cluster's workers are forked from, with the pipeline imported.

Workers spawned afresh each import distributed, geopandas, osmnx and the
pipeline (2.2 to 2.5 s on a 2-core CPU, both at once, and 0.6 s to stop).
Forked from the building process they start in 0.2 s, but that process runs
threads (the cluster's event loop, the progress display), and a child forked
while one of them holds a lock can wait on it forever. A fork server is a
single-threaded process started for the purpose: it imports what workers need
once, and each worker is forked from it (Python's own default on POSIX from
3.14). Started as soon as a command knows it will build on a local cluster,
its imports run beside the command's own.

This module imports nothing heavy, so that it can start the server first.
"""

from __future__ import annotations

import os
import sys

#: What a worker needs imported to run a city's or a block's task.
WORKER_MODULES = ("distributed", "data_pipeline.city_tasks")
#: The fork server's environment, which its workers inherit: one thread per numerical library, as Dask sets
#: for the workers it spawns (``distributed.nanny.pre-spawn-environ``; a worker runs one task at a time and
#: the cores are the workers'). Dask's setting reaches only spawned workers; these must be there before
#: numpy loads, so they are given to the server as it starts.
WORKER_ENVIRON = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def fork_server_available() -> bool:
    """Whether local workers can be forked from a fork server here (Linux; macOS forks badly after its
    system frameworks load, and Python spawns there by default)."""
    return sys.platform.startswith("linux")


def start_fork_server() -> None:
    """Start the fork server, importing :data:`WORKER_MODULES` with :data:`WORKER_ENVIRON`, unless it runs
    already (then nothing). This process's own environment is left as it was."""
    import multiprocessing
    from multiprocessing import forkserver

    if not fork_server_available():
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(WORKER_MODULES))
    saved = {name: os.environ.get(name) for name in WORKER_ENVIRON}
    os.environ.update(WORKER_ENVIRON)
    try:
        forkserver.ensure_running()  # the server is started here, with the environment of this moment
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
