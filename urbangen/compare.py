"""``urbangen compare``: two evaluations of the same test tiles, side by side, with paired intervals.

Whether a change to a generator or its sampler helped is a difference of
two noisy figures. Two evaluations (``urbangen evaluate``) of the same test
tiles measured each tile (and each stitched window) once per run, so their
conditioning errors pair up: the difference of two MAEs over the tiles both
measured is the mean of the per-tile differences of absolute error, and its
95 % interval (:func:`urbangen.evaluators.stats.mean_interval`, with the test
regions, or the stitched mosaics, as independent units) says whether the
change moved the figure beyond the test set's noise. Paired, it is usually
narrower than either MAE's own, as both runs meet the same hard tiles. Each
run's failures (requests it could not be measured for) stand beside it: a
change that fails on the hardest tiles would otherwise look better.

The interval covers the test tiles' noise, and the generator's own only as
far as each unit's draw carries it: the shipped stitched sampler at seeds 0
and 1 (an A/A comparison on the bar's 8 mosaics) differed in intersection
density's MAE by 3.9 [0.8, 7.1] a km². Judge a change of a few units over
several seeds.

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
from urbangen.markdown import interval, met, number, table

#: Sections of an evaluation whose per-tile requests and measures pair up between runs: their label, and the key
#: of their independent units (test regions, stitched mosaics) per tile.
PAIRED_SECTIONS = {"conditioning": ("single tiles", "regions"),
                   "stitched_conditioning": ("stitched layouts of real mosaics' fields", "mosaic_of_window")}


def read_evaluation(path: str | Path) -> dict[str, Any]:
    """An evaluation's result: ``evaluation.json`` or the folder ``urbangen evaluate --out`` wrote it to."""
    path = Path(path)
    file = path / "evaluation.json" if path.is_dir() else path
    if not file.is_file():
        raise InvalidValueError(f"{path}: no evaluation.json there (write one with urbangen evaluate --out)")
    return json.loads(file.read_text())


def compare_evaluations(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per paired section and parameter: each run's MAE over the tiles both measured, each run's failures, their
    difference (``b`` minus ``a``) and its 95 % interval; and the bar's criteria side by side.

    Raises
    ------
    InvalidValueError
        If the two evaluations asked for different parameters, on different tiles, regions or mosaics.
    """
    # Evaluations from before regions were recorded (2026-12-07) took the test regions.
    regions = [e.get("split", {}).get("regions", "test") for e in (a, b)]
    if regions[0] != regions[1]:
        raise InvalidValueError(f"A was evaluated on the {regions[0]} regions and B on the {regions[1]} regions: "
                                "evaluate both on the same regions (`urbangen evaluate --regions`)")
    out: dict[str, Any] = {}
    for section, (_, units) in PAIRED_SECTIONS.items():
        if section not in a and section not in b:
            continue
        if section not in a or section not in b:
            out[section] = {"skipped": f"only {'A' if section in a else 'B'} has this section: nothing to pair"}
            continue
        sa, sb = a[section], b[section]
        names = list(sa["parameters"])
        if names != list(sb["parameters"]):
            raise InvalidValueError(f"{section}: the evaluations' parameters differ ({names} against "
                                    f"{list(sb['parameters'])}): not runs of the same generator's request")
        requested = np.array(sa["requested"], np.float64)
        if requested.shape != np.shape(sb["requested"]) or not np.array_equal(
                requested, np.array(sb["requested"], np.float64), equal_nan=True):
            raise InvalidValueError(f"{section}: the evaluations asked for different tiles (held-out tiles, seed or "
                                    "mosaics differ): their errors do not pair up")
        if units not in sa or units not in sb:
            out[section] = {"skipped": f"an evaluation records no {units} per tile (evaluated before 2026-12-05, "
                                       "evening): evaluate it again to pair it"}
            continue
        if sa[units] != sb[units]:
            raise InvalidValueError(f"{section}: the evaluations' {units} differ: not the same held-out tiles")
        groups = np.asarray(sa[units])
        achieved_a, achieved_b = (np.array(x["achieved"], np.float64) for x in (sa, sb))
        out[section] = {"units": units, "parameters": {
            name: _paired(requested[:, j], achieved_a[:, j], achieved_b[:, j], groups) for j, name in enumerate(names)}}
    rows_a = {row["metric"]: row for row in a.get("acceptance", [])}
    rows_b = {row["metric"]: row for row in b.get("acceptance", [])}
    out["acceptance"] = [{"metric": metric, "target": (rows_a.get(metric) or rows_b[metric])["target"],
                          "a": rows_a.get(metric, {}).get("value"), "a_met": rows_a.get(metric, {}).get("met"),
                          "b": rows_b.get(metric, {}).get("value"), "b_met": rows_b.get(metric, {}).get("met")}
                         for metric in [*rows_a, *(m for m in rows_b if m not in rows_a)]]
    return out


def _paired(requested: np.ndarray, a: np.ndarray, b: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Both runs' MAE over the tiles both measured, their failures, and the difference ``b - a`` with its
    interval."""
    known = np.isfinite(requested)
    both = known & np.isfinite(a) & np.isfinite(b)
    failures = {"a_failures": int((known & ~np.isfinite(a)).sum()), "b_failures": int((known & ~np.isfinite(b)).sum())}
    if not both.any():
        return {"n": 0, "a": None, "b": None, "difference": None, "ci95": None, "groups": None, **failures}
    error_a, error_b = np.abs(a[both] - requested[both]), np.abs(b[both] - requested[both])
    interval = mean_interval(error_b - error_a, groups[both])
    return {"n": int(both.sum()), "a": float(error_a.mean()), "b": float(error_b.mean()),
            "difference": float((error_b - error_a).mean()),
            "ci95": None if interval is None else [interval["low"], interval["high"]],
            "groups": None if interval is None else interval["groups"], **failures}


def comparison_markdown(result: dict[str, Any], a_name: str, b_name: str) -> str:
    """The comparison as markdown: the paired MAE differences, then the bar's criteria side by side."""
    lines = [f"# {b_name} (B) against {a_name} (A)", "",
             "Paired on the same test tiles: each MAE over the tiles both runs measured, the difference B's minus "
             "A's, with its 95 % interval (the test regions, or the stitched mosaics, as independent units; from "
             "under about 10 of them, read it as a lower bound on the noise). An interval that holds 0 is no "
             "measured difference. Failures: requests a run's tile could not be measured for. One seed each: the "
             "generator's draw moves stitched figures too (the shipped sampler at two seeds differed by 3.9 "
             "[0.8, 7.1] /km² in intersection density's MAE on the bar's 8 mosaics), so judge small changes over "
             "several seeds.", ""]
    for section, (label, _) in PAIRED_SECTIONS.items():
        if section not in result:
            continue
        lines += [f"## Conditioning, {label}", ""]
        if "skipped" in result[section]:
            lines += [result[section]["skipped"], ""]
            continue
        lines += table(["parameter", "tiles", "MAE A", "MAE B", "B − A", "95 % interval", "units", "moved",
                        "failures A", "failures B"],
                       [[name, p["n"], number(p["a"]), number(p["b"]), number(p["difference"]), interval(p["ci95"]),
                         number(p["groups"]), _moved(p["ci95"]), p["a_failures"], p["b_failures"]]
                        for name, p in result[section]["parameters"].items()]) + [""]
    lines += ["## Against the bar", ""]
    lines += table(["criterion", "A", "met", "B", "met", "target"],
                   [[r["metric"], number(r["a"]), met(r["a_met"]), number(r["b"]), met(r["b_met"]), r["target"]]
                    for r in result["acceptance"]])
    return "\n".join(lines) + "\n"


def _moved(ci95: list[float] | None) -> str:
    if ci95 is None:
        return "n/a"
    return "lower" if ci95[1] < 0 else "higher" if ci95[0] > 0 else "no measured difference"
