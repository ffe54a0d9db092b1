"""Markdown tables for the reports (generation, evaluation, analysis, quickstart): one way to write them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a markdown table: the header, its rule, then one line per row (cells through ``str``)."""
    return [_line(header), "|" + "---|" * len(header), *(_line(row) for row in rows)]


def _line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def number(value: Any, digits: int = 3) -> str:
    """A table cell's number: ``digits`` significant digits (a float's), ``n/a`` for None."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def interval(ci95: Sequence[float] | None, missing: str = "n/a") -> str:
    """A 95 % interval as ``[low, high]`` (:func:`number`), or ``missing``."""
    return missing if ci95 is None else f"[{number(ci95[0])}, {number(ci95[1])}]"


def met(value: bool | None) -> str:
    """A criterion's "met" cell: yes, **no** (bold, to stand out), or n/a where it could not be judged."""
    return "n/a" if value is None else "yes" if value else "**no**"
