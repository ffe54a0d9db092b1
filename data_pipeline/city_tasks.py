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

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from data_pipeline.city import PART_INFO, CityPartResult, CitySpec, Reporter, build_city_part, part_is_current
from data_pipeline.config import TilingConfig
from data_pipeline.errors import InvalidValueError

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


def progress_bar(disable: bool = False) -> Progress:
    """The build's progress display: one row per city."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=disable,
    )


def run_cities(cities: Sequence[CitySpec], config: TilingConfig, parts: CityParts, progress: Progress, *,
               scheduler: str = SERIAL, workers: int | None = None
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
        one per CPU). Anything else is a Dask scheduler address
        (``tcp://HOST:8786``) to send the tasks to.
    workers
        Workers of the local cluster.
    """
    if workers is not None and workers < 1:
        raise InvalidValueError(f"workers must be at least 1, got {workers}")
    parts.create()
    rows = {c.name: progress.add_task(f"{c.name}: waiting", total=None) for c in cities}
    if scheduler == SERIAL:
        return _run_serial(cities, config, parts, progress, rows)
    return _run_dask(cities, config, parts, progress, rows, scheduler, workers)


def _reporter(progress: Progress, row: TaskID, city: str) -> Reporter:
    def report(stage: str, completed: int, total: int | None) -> None:
        progress.update(row, description=f"{city}: {stage}", completed=completed, total=total)
    return report


def _finish_row(progress: Progress, row: TaskID, result: CityPartResult | None, failure: CityFailure | None) -> None:
    if result is not None:
        progress.update(row, description=f"{result.city}: {result.n_tiles} tiles in {result.seconds:.0f} s",
                        total=result.n_tiles, completed=result.n_tiles)
    else:
        progress.update(row, description=f"[red]{failure.city}: failed ({failure.message})", total=1, completed=0)


def _run_serial(cities, config, parts, progress, rows):
    results, failures = [], []
    for city in cities:
        try:
            result = build_city_part(city, config, parts.part(city.name), _reporter(progress, rows[city.name],
                                                                                    city.name))
        except Exception as exc:  # noqa: BLE001 - one city's failure, whatever it is, must not stop the others
            failure = CityFailure(city.name, exc, traceback.format_exc())
            failures.append(failure)
            _finish_row(progress, rows[city.name], None, failure)
        else:
            results.append(result)
            _finish_row(progress, rows[city.name], result, None)
    return results, failures


def _build_on_worker(city: CitySpec, config: TilingConfig, part: str) -> CityPartResult:
    """The Dask task of one city: build its part, sending progress as worker events."""
    from distributed import get_worker

    worker = get_worker()

    def report(stage: str, completed: int, total: int | None) -> None:
        worker.log_event(PROGRESS_TOPIC, {"city": city.name, "stage": stage, "completed": completed,
                                          "total": total})

    return build_city_part(city, config, part, report)


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


def _run_dask(cities, config, parts, progress, rows, scheduler, workers):
    import dask
    from distributed import Client, LocalCluster, as_completed

    with ExitStack() as stack:
        if scheduler == LOCAL:
            # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, so that glibc hands freed memory back at
            # once; this allocation-heavy geometry work then runs 10-20 % slower (measured on Lower Manhattan).
            # Workers of a remote cluster are configured by whoever starts them (see the README).
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}))
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
        futures = {
            client.submit(_build_on_worker, city, config, str(parts.part(city.name)), key=f"city-{city.name}",
                          priority=len(order) - rank, pure=False): city
            for rank, city in enumerate(order)
        }
        results, failures = [], []
        for future in as_completed(futures):
            city = futures[future]
            if future.status == "finished":
                result = future.result()
                results.append(result)
                _finish_row(progress, rows[city.name], result, None)
            else:
                error = future.exception()
                tb = "".join(traceback.format_tb(future.traceback())) if future.traceback() else ""
                failure = CityFailure(city.name, error, tb)
                failures.append(failure)
                _finish_row(progress, rows[city.name], None, failure)
        client.unsubscribe_topic(PROGRESS_TOPIC)
    return results, failures
