"""Progress of long work (generating layouts, evaluating a generator), shown to whoever listens.

A stitched 1 km layout takes minutes on a CPU, the bar's evaluation most of an
hour. Library code reports ``(stage, completed, total)`` through :func:`report`,
as the data pipeline's builds do (:data:`data_pipeline.city.Reporter`), and
stays silent unless a caller listens: the command line shows a progress bar
per stage (:func:`shown`); a test or a notebook that does not ask sees nothing.
The listener is a context variable, so that the sampler deep inside a chain
need not carry it through every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from data_pipeline.city import Reporter

_listener: ContextVar[Reporter | None] = ContextVar("urbangen_progress", default=None)


def report(stage: str, completed: int, total: int | None = None) -> None:
    """Tell the listener, if any, that ``completed`` of ``total`` steps of ``stage`` are done."""
    listener = _listener.get()
    if listener is not None:
        listener(stage, completed, total)


@contextmanager
def listening(reporter: Reporter) -> Iterator[None]:
    """Within the block, what :func:`report` is told goes to ``reporter``."""
    token = _listener.set(reporter)
    try:
        yield
    finally:
        _listener.reset(token)


@contextmanager
def shown(console: Console | None = None, disable: bool = False) -> Iterator[None]:
    """Within the block, a progress bar per stage reported, on ``console`` (standard error by default); nothing
    with ``disable`` (``URBANGEN_NO_PROGRESS=1``: :func:`urbangen.settings.progress_disabled`).

    The bars appear at the first report, so that work in the block that shows its own (a dataset build's
    per-city bars) can: a terminal holds one live display at a time.
    """
    if disable:
        yield
        return
    rows: dict[str, TaskID] = {}
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console or Console(stderr=True))

    def update(stage: str, completed: int, total: int | None) -> None:
        if not rows:
            bars.start()
        if stage not in rows:
            rows[stage] = bars.add_task(stage, total=total)
        bars.update(rows[stage], completed=completed, total=total)

    try:
        with listening(update):
            yield
    finally:
        if rows:
            bars.stop()


def stage_label(output_channels: tuple[str, ...] | list[str]) -> str:
    """What a generator stage draws, in words: its output channels (``major_roads`` -> ``major roads``)."""
    return ", ".join(c.replace("_", " ") for c in output_channels)
