"""Progress of long work: reported to a listener, shown as bars on the command line, silent otherwise."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress


def test_reports_reach_the_listener_of_their_block_and_no_other():
    from urbangen import progress

    outer, inner = [], []
    progress.report("nobody listens", 1, 2)  # no listener: nothing happens
    with progress.listening(lambda *r: outer.append(r)):
        progress.report("a", 1, 3)
        with progress.listening(lambda *r: inner.append(r)):
            progress.report("b", 2, None)
        progress.report("a", 3, 3)
    progress.report("after", 1, 1)
    assert outer == [("a", 1, 3), ("a", 3, 3)] and inner == [("b", 2, None)]


def test_bars_show_each_stage_and_leave_room_for_another_display_until_the_first_report():
    from urbangen import progress

    text = io.StringIO()
    console = Console(file=text, width=100, force_terminal=True)
    with progress.shown(console):
        # Before any report no live display runs (a started one hides the cursor at once): a dataset build
        # inside the block may show its own bars.
        assert text.getvalue() == ""
        with Progress(console=console) as own:
            own.add_task("lyngby", total=1)
        progress.report("streets: tiles drawn", 9, 9)
        progress.report("samples", 1, 2)
        progress.report("streets: tiles drawn", 3, 9)  # the next sample's layout, counted from the start
    shown = text.getvalue()
    assert "streets: tiles drawn" in shown and "3/9" in shown and "1/2" in shown

    quiet = io.StringIO()
    with progress.shown(Console(file=quiet, force_terminal=True), disable=True):
        progress.report("samples", 1, 2)
    assert quiet.getvalue() == ""


def test_a_log_gets_a_line_of_every_stage_now_and_then_and_at_the_end(monkeypatch):
    from urbangen import progress

    log = io.StringIO()
    with progress.shown(Console(file=log, width=200)):  # not a terminal: no live display to print at the end only
        progress.report("samples", 0, 2)
        progress.report("streets: tiles drawn", 4, 13)
    assert log.getvalue().splitlines() == ["progress: samples 0/2; streets: tiles drawn 4/13"]

    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    log = io.StringIO()
    with progress.shown(Console(file=log, width=200)):
        progress.report("samples", 1, 2)
        progress.report("samples", 2, 2)
    assert log.getvalue().splitlines() == ["progress: samples 1/2", "progress: samples 2/2", "progress: samples 2/2"]
