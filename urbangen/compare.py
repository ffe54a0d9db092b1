"""``urbangen compare``: two evaluations of the same test tiles, side by side, with paired intervals.

Whether a change to a generator or its sampler helped is a difference of
two noisy figures. Two evaluations (``urbangen evaluate``) of the same test
tiles measured each tile (and each stitched window) once per run, so their
conditioning errors pair up: the difference of two MAEs is the mean of the
per-tile differences of absolute error, and its 95 % interval
(:func:`urbangen.evaluators.stats.mean_interval`, stitched windows resampled
by whole mosaics) says whether the change moved the figure beyond the test
set's noise. Paired, it is much narrower than either MAE's own interval:
both runs meet the same hard tiles.

The bar's other criteria (realism, connectivity, seams) are shown side by
side, without a paired interval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.errors import InvalidValueError
from urbangen.evaluators.stats import mean_interval
from urbangen.markdown import interval, number, table

#: Sections of an evaluation whose per-tile requests and measures pair up between runs, and their labels.
PAIRED_SECTIONS = {"conditioning": "single tiles", "stitched_conditioning": "stitched layouts of real mosaics' fields"}


def read_evaluation(path: str | Path) -> dict[str, Any]:
    """An evaluation's result: ``evaluation.json`` or the folder ``urbangen evaluate --out`` wrote it to."""
    path = Path(path)
    file = path / "evaluation.json" if path.is_dir() else path
    if not file.is_file():
        raise InvalidValueError(f"{path}: no evaluation.json there (write one with urbangen evaluate --out)")
    return json.loads(file.read_text())


def compare_evaluations(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per paired section and parameter: each run's MAE, their difference (``b`` minus ``a``) and its 95 %
    interval over the tiles both measured; and the bar's criteria side by side.

    Raises
    ------
    InvalidValueError
        If the two evaluations asked for different parameters or on different tiles.
    """
    out: dict[str, Any] = {}
    for section in PAIRED_SECTIONS:
        if section not in a or section not in b:
            continue
        sa, sb = a[section], b[section]
        names = list(sa["parameters"])
        if names != list(sb["parameters"]):
            raise InvalidValueError(f"{section}: the evaluations' parameters differ ({names} against "
                                    f"{list(sb['parameters'])}): not runs of the same generator's request")
        requested = np.array(sa["requested"], np.float64)
        if requested.shape != np.shape(sb["requested"]) or not np.array_equal(
                requested, np.array(sb["requested"], np.float64), equal_nan=True):
            raise InvalidValueError(f"{section}: the evaluations asked for different tiles (test tiles, seed or "
                                    "mosaics differ): their errors do not pair up")
        groups = sa.get("mosaic_of_window") if section == "stitched_conditioning" else None
        if section == "stitched_conditioning" and (groups is None or groups != sb.get("mosaic_of_window")):
            out[section] = {"skipped": "an evaluation records no mosaic per window (evaluated before 2026-12-05): "
                                       "evaluate it again to pair its stitched windows"}
            continue
        out[section] = {"parameters": {name: _paired(requested[:, j], np.array(sa["achieved"], np.float64)[:, j],
                                                     np.array(sb["achieved"], np.float64)[:, j], groups)
                                       for j, name in enumerate(names)}}
    b_rows = {row["metric"]: row for row in b.get("acceptance", [])}
    out["acceptance"] = [{"metric": row["metric"], "target": row["target"], "a": row["value"], "a_met": row["met"],
                          "b": b_rows[row["metric"]]["value"], "b_met": b_rows[row["metric"]]["met"]}
                         for row in a.get("acceptance", []) if row["metric"] in b_rows]
    return out


def _paired(requested: np.ndarray, a: np.ndarray, b: np.ndarray, groups: list[int] | None) -> dict[str, Any]:
    """Both runs' MAE over the tiles both measured, and the difference ``b - a`` with its interval."""
    both = np.isfinite(requested) & np.isfinite(a) & np.isfinite(b)
    if not both.any():
        return {"n": 0, "a": None, "b": None, "difference": None, "ci95": None}
    difference = np.abs(b[both] - requested[both]) - np.abs(a[both] - requested[both])
    return {"n": int(both.sum()), "a": float(np.abs(a[both] - requested[both]).mean()),
            "b": float(np.abs(b[both] - requested[both]).mean()), "difference": float(difference.mean()),
            "ci95": mean_interval(difference, None if groups is None else np.asarray(groups)[both])}


def comparison_markdown(result: dict[str, Any], a_name: str, b_name: str) -> str:
    """The comparison as markdown: the paired MAE differences, then the bar's criteria side by side."""
    lines = [f"# {b_name} against {a_name}", "",
             "Paired on the same test tiles: the difference is B's MAE minus A's over the tiles both measured, with "
             "its 95 % bootstrap interval (stitched windows resampled by whole mosaics). An interval that holds 0 "
             "is no measured difference.", ""]
    for section, label in PAIRED_SECTIONS.items():
        if section not in result:
            continue
        lines += [f"## Conditioning, {label}", ""]
        if "skipped" in result[section]:
            lines += [result[section]["skipped"], ""]
            continue
        lines += table(["parameter", "tiles", "MAE A", "MAE B", "B − A", "95 % interval", "moved"],
                       [[name, p["n"], number(p["a"]), number(p["b"]), number(p["difference"]), interval(p["ci95"]),
                         _moved(p["ci95"])] for name, p in result[section]["parameters"].items()]) + [""]
    lines += ["## Against the bar", ""]
    lines += table(["criterion", "A", "met", "B", "met", "target"],
                   [[r["metric"], number(r["a"]), _met(r["a_met"]), number(r["b"]), _met(r["b_met"]), r["target"]]
                    for r in result["acceptance"]])
    return "\n".join(lines) + "\n"


def _moved(ci95: list[float] | None) -> str:
    if ci95 is None:
        return "n/a"
    return "lower" if ci95[1] < 0 else "higher" if ci95[0] > 0 else "no measured difference"


def _met(met: bool | None) -> str:
    return "n/a" if met is None else "yes" if met else "**no**"
