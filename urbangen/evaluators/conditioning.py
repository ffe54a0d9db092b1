"""Conditioning: does a generator draw the parameters it is asked for?

Each real test tile's own parameters are requested; the generated tile and
the real tile both go through the same raster → vector → parameters path
(:func:`urbangen.measure.measure_tiles`), with the same settings. Per parameter:

- ``generated``: MAE and R² of the measured against the requested values;
- ``floor``: the same for the real tiles: what rasterizing and measuring
  alone cost, the best any generator can score;
- ``unconditional``: a generator asked for the training mean every time,
  compared with the same requests: what ignoring the request scores;
- ``mae_ci95``: beside each MAE, its 95 % interval with the test regions as
  independent units (:func:`urbangen.evaluators.stats.mean_interval`;
  ``mae_ci_groups`` of them), so that a target can be told from the test
  set's noise (a difference between two runs: ``urbangen compare``, paired);
- ``failures``: samples whose parameter could not be measured (NaN where
  the request is known, such as the orientation entropy of a tile with no
  streets). They are counted, never dropped silently: MAE and R² are over
  the measured samples, and the failure rate stands beside them.

Parameters that come only from channels the run is *given* (the streets of
a streets-to-buildings run) are reported apart, under ``given``: the
generator did not draw them; those of channels it neither draws nor is
given (open space, for a run that draws only buildings) under ``not_drawn``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from data_pipeline.parameters import PARAMETERS
from urbangen.evaluators.common import RealTiles, generate_for
from urbangen.evaluators.stats import mean_interval
from urbangen.inference import Generator
from urbangen.measure import PARAMETER_CHANNELS


def errors(requested: np.ndarray, achieved: np.ndarray, groups: np.ndarray | None = None) -> dict[str, Any]:
    """MAE (with its 95 % interval, ``groups`` (regions, mosaics) the independent units:
    :func:`urbangen.evaluators.stats.mean_interval`), R² and failures of one parameter (1-D arrays)."""
    known = np.isfinite(requested)
    measured = known & np.isfinite(achieved)
    failures = int((known & ~np.isfinite(achieved)).sum())
    out: dict[str, Any] = {"n": int(known.sum()), "failures": failures,
                           "failure_rate": float(failures / known.sum()) if known.any() else None,
                           "mae": None, "mae_ci95": None, "mae_ci_groups": None, "r2": None}
    if measured.any():
        r, a = requested[measured], achieved[measured]
        out["mae"] = float(np.mean(np.abs(a - r)))
        interval = mean_interval(np.abs(a - r), None if groups is None else np.asarray(groups)[measured])
        if interval is not None:
            out["mae_ci95"], out["mae_ci_groups"] = [interval["low"], interval["high"]], interval["groups"]
        total = float(np.sum((r - r.mean()) ** 2))
        out["r2"] = float(1.0 - np.sum((a - r) ** 2) / total) if total > 0 else None
    return out


def drawn_parameters(spec: Any) -> tuple[list[str], list[str]]:
    """A run's parameters that come only from channels it is given, and those of channels it draws."""
    names = spec.parameter_names
    given = [p for p in names if set(PARAMETER_CHANNELS[p]) <= set(spec.input_channels)]
    drawn = [p for p in names if p not in given and set(PARAMETER_CHANNELS[p]) & set(spec.output_channels)]
    return given, drawn


def parameter_errors(names: tuple[str, ...] | list[str], requested: np.ndarray,
                     achieved: dict[str, np.ndarray], groups: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """Per parameter: its unit, requested mean, and :func:`errors` of each ``achieved`` side ((n, P) arrays),
    ``groups`` (n,) the independent units of the MAE's interval."""
    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(names):
        known = np.isfinite(requested[:, j])
        out[name] = {"unit": PARAMETERS[name][0],
                     "requested_mean": float(requested[known, j].mean()) if known.any() else None,
                     **{side: errors(requested[:, j], values[:, j], groups) for side, values in achieved.items()}}
    return out


def failure_rate(per_parameter: dict[str, dict[str, Any]], drawn: list[str]) -> float | None:
    """Failed over known values of the ``drawn`` parameters, generated side."""
    known = sum(per_parameter[p]["generated"]["n"] for p in drawn)
    return float(sum(per_parameter[p]["generated"]["failures"] for p in drawn) / known) if known else None


class Conditioning:
    """Requested against achieved parameters on real test tiles, beside the floor and the unconditional baseline."""

    def __init__(self, real: RealTiles, *, seed: int = 0) -> None:
        self.real = real
        self.seed = seed

    def run(self, model: Generator, generated: np.ndarray | None = None,
            generated_measured: pd.DataFrame | None = None) -> dict[str, Any]:
        """Score ``model``; ``generated`` (one tile per real tile, for their own parameters) and its
        measured parameters are reused when given."""
        spec = model.spec
        names = spec.parameter_names
        requested = self.real.parameters
        if generated is None:
            generated = generate_for(model, self.real, seed=self.seed)
        mean_request = np.broadcast_to(np.asarray(spec.scaler.mean), requested.shape)
        unconditional = generate_for(model, self.real, requested=mean_request, seed=self.seed + 1)
        if generated_measured is None:
            generated_measured = self.real.measure(generated)
        columns = list(names)
        achieved = {side: frame[columns].to_numpy(dtype=np.float64) for side, frame in
                    (("generated", generated_measured), ("floor", self.real.measured),
                     ("unconditional", self.real.measure(unconditional)))}
        given, drawn = drawn_parameters(spec)
        per_parameter = parameter_errors(names, requested, achieved, self.real.regions)
        for name, entry in per_parameter.items():
            entry.update(given=name in given, drawn=name in drawn)
        return {"n": int(len(self.real)), "parameters": per_parameter, "conditioned": drawn, "given": given,
                "not_drawn": [p for p in names if p not in given and p not in drawn],
                "failure_rate": failure_rate(per_parameter, drawn),
                "requested": requested.tolist(), "regions": self.real.regions.tolist(),
                "achieved": achieved["generated"].tolist(),
                "achieved_floor": achieved["floor"].tolist()}
