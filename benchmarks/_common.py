"""Helpers shared by the benchmarks: machine description and the results file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from data_pipeline.city import peak_rss_mb, reset_peak_rss
from urbangen.machine import describe_machine

__all__ = ["machine", "peak_rss_mb", "reset_peak_rss", "write_results"]

RESULTS_DIR = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    return describe_machine()


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), "machine": machine(), **results}
    path.write_text(json.dumps(payload, indent=2))
    return path
