"""Run the cities of a build: one after another in this process, or as one task per city on Dask.

Each city is built by :func:`data_pipeline.city.build_city_part` into its own
folder of a *parts folder* kept beside the dataset (``.NAME.cities``). A city
that fails is reported with its error and the others go on; a part that is
complete and built from the same inputs is kept, so a rerun builds only what
is missing. On a cluster, the parts folder must be on storage that every
worker and the client see (a shared file system).
"""

from __future__ import annotations

import logging
import os
import shutil
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from data_pipeline.blocks import DEFAULT_MARGIN_M, CityPlan, build_block, can_block, join_blocks, plan_city
from data_pipeline.city import PART_INFO, CityPartResult, CitySpec, Reporter, build_city_part, part_is_current
from data_pipeline.config import TilingConfig
from data_pipeline.errors import InvalidValueError
from data_pipeline.workers import fork_server_started

#: ``scheduler`` values that are not cluster addresses.
SERIAL = "serial"
LOCAL = "local"
#: The Dask event topic on which workers report each city's progress.
PROGRESS_TOPIC = "urbangen-city-progress"
#: The file that marks a parts folder as urbangen's (only such a folder is ever removed).
_PARTS_MARKER = "URBANGEN_CITY_PARTS"


@dataclass(frozen=True)
class CityFailure:
    """A city whose build raised: the exception, a one-line message and the traceback."""

    city: str
    error: BaseException
    traceback: str

    @property
    def message(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


class CityParts:
    """The parts folder of a dataset: one finished city per sub-folder, beside the dataset.

    Parameters
    ----------
    out_dir
        The dataset directory the parts are for.
    """

    def __init__(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        self.path = out_dir.parent / f".{out_dir.name}.cities"

    def part(self, city: str) -> Path:
        return self.path / city

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / _PARTS_MARKER).touch()

    def is_current(self, city: CitySpec, config: TilingConfig) -> bool:
        return part_is_current(self.part(city.name), city, config)

    def remove(self) -> None:
        """Remove the folder, only if it is marked as a parts folder."""
        if (self.path / _PARTS_MARKER).is_file():
            shutil.rmtree(self.path, ignore_errors=True)

    def remove_if_empty(self) -> None:
        """Remove the folder if it holds no finished city: a failed build then leaves nothing behind."""
        if not any(self.path.glob(f"*/{PART_INFO}")):
            self.remove()


def progress_bar(disable: bool = False, console: Console | None = None) -> Progress:
    """The build's progress display: one row per city (per stage for :func:`urbangen.progress.shown`), on
    ``console`` (rich's own by default)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=disable,
        console=console,
    )


@dataclass(frozen=True)
class Blocking:
    """Build cities larger than ``block_km`` in blocks of whole tiles (see :mod:`data_pipeline.blocks`)."""

    block_km: float
    margin_m: float = DEFAULT_MARGIN_M

    def applies(self, city: CitySpec) -> bool:
        return can_block(city)


def run_cities(cities: Sequence[CitySpec], config: TilingConfig, parts: CityParts, progress: Progress, *,
               scheduler: str = SERIAL, workers: int | None = None, blocking: Blocking | None = None
               ) -> tuple[list[CityPartResult], list[CityFailure]]:
    """Build a part for each city; return what was built and what failed.

    Parameters
    ----------
    cities
        The cities to build (those already current are the caller's to skip).
    config
        Tiling settings.
    parts
        Where the parts go.
    progress
        Display that gets a row per city.
    scheduler
        ``"serial"``: in this process, one city after another. ``"local"``: on a
        Dask ``LocalCluster`` of ``workers`` single-threaded processes (default:
        one per CPU), or in this process where there is one task or none (one
        city, not in blocks). Anything else is a Dask scheduler address
        (``tcp://HOST:8786``) to send the tasks to.
    workers
        Workers of the local cluster.
    blocking
        Build each city from a local OSM file as a plan, its blocks and a join
        (tasks of their own), instead of one task.
    """
    if workers is not None and workers < 1:
        raise InvalidValueError(f"workers must be at least 1, got {workers}")
    parts.create()
    rows = {c.name: progress.add_task(f"{c.name}: waiting", total=None) for c in cities}
    # One task or none (a rerun with one city left, say) gains nothing from a local cluster but its start-up.
    one_task = len(cities) == 1 and not _in_blocks(blocking, cities[0])
    if scheduler == SERIAL or (scheduler == LOCAL and (not cities or one_task)):
        return _run_serial(cities, config, parts, progress, rows, blocking)
    return _run_dask(cities, config, parts, progress, rows, scheduler, workers, blocking)


def _in_blocks(blocking: Blocking | None, city: CitySpec) -> bool:
    """Whether ``city`` is built as a plan, its blocks and a join (else as one task)."""
    return blocking is not None and blocking.applies(city)


def _reporter(progress: Progress, row: TaskID, city: str) -> Reporter:
    def report(stage: str, completed: int, total: int | None) -> None:
        progress.update(row, description=f"{city}: {stage}", completed=completed, total=total)
    return report


def _finish_row(progress: Progress, row: TaskID, result: CityPartResult | None, failure: CityFailure | None) -> None:
    if result is not None:
        blocks = f" ({result.n_tasks - 2} blocks)" if result.n_tasks > 1 else ""
        progress.update(row, description=f"{result.city}: {result.n_tiles} tiles{blocks} in {result.seconds:.0f} s",
                        total=result.n_tiles, completed=result.n_tiles)
    elif failure is not None:
        progress.update(row, description=f"[red]{failure.city}: failed ({failure.message})", total=1, completed=0)


def _scratch(parts: CityParts, city: CitySpec) -> Path:
    return parts.path / f".{city.name}.blocks"


def _build_blocked(city: CitySpec, config: TilingConfig, parts: CityParts, blocking: Blocking,
                   report: Reporter) -> CityPartResult:
    """A blocked city in this process: plan, blocks, join."""
    scratch = _scratch(parts, city)
    plan = plan_city(city, config, scratch / "chunks", blocking.block_km, blocking.margin_m, report)
    results = []
    for b in range(len(plan.blocks)):
        report(f"block {b + 1} of {len(plan.blocks)}", b, len(plan.blocks))
        results.append(build_block(plan, b, config, scratch / f"block-{b:05d}"))
    result = join_blocks(plan, results, config, parts.part(city.name))
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def _run_serial(cities, config, parts, progress, rows, blocking):
    results, failures = [], []
    for city in cities:
        report = _reporter(progress, rows[city.name], city.name)
        try:
            if _in_blocks(blocking, city):
                result = _build_blocked(city, config, parts, blocking, report)
            else:
                result = build_city_part(city, config, parts.part(city.name), report)
        except Exception as exc:  # noqa: BLE001 - one city's failure, whatever it is, must not stop the others
            failure = CityFailure(city.name, exc, traceback.format_exc())
            failures.append(failure)
            _finish_row(progress, rows[city.name], None, failure)
        else:
            results.append(result)
            _finish_row(progress, rows[city.name], result, None)
    return results, failures


def _worker_reporter(city: str) -> Reporter:
    from distributed import get_worker

    worker = get_worker()

    def report(stage: str, completed: int, total: int | None) -> None:
        worker.log_event(PROGRESS_TOPIC, {"city": city, "stage": stage, "completed": completed, "total": total})

    return report


def _build_on_worker(city: CitySpec, config: TilingConfig, part: str) -> CityPartResult:
    """The Dask task of one city: build its part, sending progress as worker events."""
    return build_city_part(city, config, part, _worker_reporter(city.name))


def _plan_on_worker(city: CitySpec, config: TilingConfig, scratch: str, blocking: Blocking) -> CityPlan:
    return plan_city(city, config, scratch, blocking.block_km, blocking.margin_m, _worker_reporter(city.name))


def _expected_work(city: CitySpec) -> float:
    """A guess at a city's build time, to start the longest first: its source's size, in gzipped-XML bytes.

    PBF holds about four times as much OSM data per byte as gzipped XML; a
    download's size is not known before it runs (0: it starts last).
    """
    try:
        size = os.path.getsize(city.osm_file) if city.osm_file else 0
    except OSError:
        return 0.0
    return size * (4.0 if str(city.osm_file).endswith(".pbf") else 1.0)


def _start_method() -> str:
    """How a local cluster starts its workers: as Dask's configuration says where it names a method (a
    config file or ``DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD``, any method; ``dask.config.set``,
    any but its default ``spawn``); else forked from the fork server where it was started
    (:func:`data_pipeline.workers.start_fork_server`, as ``urbangen data build`` does); else spawned.

    The 14 shared extracts on 2 workers (2-core CPU, timed from before the pipeline's imports, as
    ``urbangen data build`` runs; three interleaved rounds): 22.1 to 24.6 s with workers from the fork
    server, 25.3 to 29.1 s spawned, 39.1 to 51.1 s serially.
    """
    import dask

    configured = dask.config.get("distributed.worker.multiprocessing-method", "spawn")
    if configured != "spawn":
        return configured
    named = dask.config.collect().get("distributed", {}).get("worker", {})
    for key in ("multiprocessing-method", "multiprocessing_method"):
        if key in named:
            return named[key]
    return "forkserver" if fork_server_started() else "spawn"


def _run_dask(cities, config, parts, progress, rows, scheduler, workers, blocking):
    import dask
    from distributed import Client, LocalCluster, as_completed

    with ExitStack() as stack:
        if scheduler == LOCAL:
            # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, so that glibc hands freed memory back at
            # once; this allocation-heavy geometry work then runs 10-20 % slower (measured on Lower Manhattan).
            # Workers of a remote cluster are configured by whoever starts them (see the README).
            # Its statistical profiler samples the task's stack every 10 ms and its event loop ticks every 20 ms,
            # both under the GIL: off and slowed, a worker's city took ~5 % less (Lower Manhattan on 2 workers).
            # A worker-saturation of 1 hands a worker its next city only when it is free: at Dask's default
            # (1.1, two queued per single-threaded worker) the last cities could wait behind a long one while
            # another worker idled (the 14-city benchmark ended 15.3 s against 13.3 s of work per worker).
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                                                 "distributed.worker.profile.enabled": False,
                                                 "distributed.admin.tick.interval": "1s",
                                                 "distributed.scheduler.worker-saturation": 1.0,
                                                 "distributed.worker.multiprocessing-method": _start_method()}))
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.CRITICAL))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler, timeout="30s"))

        def on_event(event) -> None:
            _, msg = event
            if msg.get("city") in rows:
                progress.update(rows[msg["city"]], description=f"{msg['city']}: {msg['stage']}",
                                completed=msg["completed"], total=msg["total"])

        client.subscribe_topic(PROGRESS_TOPIC, on_event)
        # The longest cities first, so that none starts when the others are done (Graham's LPT order).
        order = sorted(cities, key=_expected_work, reverse=True)
        running = as_completed()
        jobs: dict = {}  # future -> (kind, city, block index)

        def submit(kind: str, city: CitySpec, fn, *args, block: int = -1, priority: int = 0):
            future = client.submit(fn, *args, key=f"{kind}-{city.name}-{block}", priority=priority, pure=False)
            jobs[future] = (kind, city, block)
            running.add(future)
            return future

        for rank, city in enumerate(order):
            priority = len(order) - rank
            if _in_blocks(blocking, city):
                submit("plan", city, _plan_on_worker, city, config, str(_scratch(parts, city) / "chunks"), blocking,
                       priority=priority)
            else:
                submit("city", city, _build_on_worker, city, config, str(parts.part(city.name)), priority=priority)

        plans: dict[str, Any] = {}  # city -> (plan future, block futures, blocks done)
        results, failures, failed = [], [], set()
        for future in running:
            kind, city, block = jobs.pop(future)
            if city.name in failed:
                continue
            if future.status != "finished":
                error = future.exception()
                tb = "".join(traceback.format_tb(future.traceback())) if future.traceback() else ""
                failure = CityFailure(city.name, error, tb)
                failures.append(failure)
                failed.add(city.name)
                _finish_row(progress, rows[city.name], None, failure)
                continue
            if kind == "plan":
                n = len(future.result().blocks)
                # Blocks go before cities not started yet: a started city's memory is freed the sooner.
                blocks = [submit("block", city, build_block, future, b, config,
                                 str(_scratch(parts, city) / f"block-{b:05d}"), block=b, priority=1000)
                          for b in range(n)]
                plans[city.name] = [future, blocks, 0]
                progress.update(rows[city.name], description=f"{city.name}: {n} blocks", completed=0, total=n)
            elif kind == "block":
                state = plans[city.name]
                state[2] += 1
                progress.update(rows[city.name], description=f"{city.name}: blocks", completed=state[2],
                                total=len(state[1]))
                if state[2] == len(state[1]):
                    submit("join", city, join_blocks, state[0], state[1], config, str(parts.part(city.name)),
                           priority=2000)
            else:  # a city, or the join of a blocked one
                result = future.result()
                if kind == "join":
                    shutil.rmtree(_scratch(parts, city), ignore_errors=True)
                    plans.pop(city.name, None)
                results.append(result)
                _finish_row(progress, rows[city.name], result, None)
        client.unsubscribe_topic(PROGRESS_TOPIC)
    return results, failures
