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

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import TaskID

if TYPE_CHECKING:
    from data_pipeline.city import Reporter

#: Where the output is not a terminal (a log file: ``nohup``, CI), a line of every stage's state at most this
#: often, seconds, and one at the end (a live display would print only its last state, at the end).
LOG_EVERY_S = 30.0

_listener: ContextVar[Reporter | None] = ContextVar("urbangen_progress", default=None)


def report(stage: str, completed: int, total: int | None = None) -> None:
    """Tell the listener, if any, that ``completed`` of ``total`` steps of ``stage`` are done (a stage's
    count may start again: each sample's layout is drawn anew)."""
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
    """Within the block, a progress bar per stage reported.

    Parameters
    ----------
    console
        Where to show them (standard error by default). On a terminal, live
        bars, which appear at the first report, so that work in the block
        that shows its own (a dataset build's per-city bars) can; elsewhere
        (a log file) a line of every stage's state every :data:`LOG_EVERY_S`
        and at the end.
    disable
        Show nothing (``URBANGEN_NO_PROGRESS=1``:
        :func:`urbangen.settings.progress_disabled`).
    """
    if disable:
        yield
        return
    console = console or Console(stderr=True)
    if not console.is_terminal:
        with _logged(console):
            yield
        return
    from data_pipeline.city_tasks import progress_bar  # the builds' display: its imports only for a terminal

    rows: dict[str, TaskID] = {}
    bars = progress_bar(console=console)
    done: dict[str, int] = {}

    def update(stage: str, completed: int, total: int | None) -> None:
        if not rows:
            bars.start()
        if stage not in rows:
            rows[stage] = bars.add_task(stage, total=total)
        elif completed < done[stage]:  # counted again from the start: its time too
            bars.reset(rows[stage], total=total)
        done[stage] = completed
        bars.update(rows[stage], completed=completed, total=total)

    try:
        with listening(update):
            yield
    finally:
        if rows:
            bars.stop()


@contextmanager
def _logged(console: Console) -> Iterator[None]:
    """Within the block, every stage's state as one line on ``console`` every :data:`LOG_EVERY_S`, and at the end."""
    states: dict[str, str] = {}
    last = time.monotonic()

    def line() -> None:
        console.print("progress: " + "; ".join(f"{stage} {state}" for stage, state in states.items()))

    def update(stage: str, completed: int, total: int | None) -> None:
        nonlocal last
        states[stage] = f"{completed}/{total}" if total is not None else str(completed)
        if time.monotonic() - last >= LOG_EVERY_S:
            line()
            last = time.monotonic()

    try:
        with listening(update):
            yield
    finally:
        if states:
            line()
