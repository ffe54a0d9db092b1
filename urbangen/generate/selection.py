"""Sampling by selection: of several samples of a request, keep the one that measures most like a real tile.

After an hour of training on a CPU the shipped generator follows its
parameters only loosely (building coverage off by 0.07 on average). Drawing
``k`` samples of a tile and keeping the best is rejection sampling towards
the condition (generate-and-filter): it costs ``k`` generations and ``k``
measurements a tile, and every tile it keeps is one the model drew itself.

*Best* is judged through the same raster → vector → parameter path as every
evaluation (:func:`urbangen.measure.measure_tiles`), and that path does not
give back what was requested even for real tiles: at 4 m/px parallel ways
merge (cycle and foot length measures 0.31x its vector value), service roads
count as minor roads (intersection density measures about 20 /km² more).
Keeping the sample whose measurement equals the request would prefer tiles
unlike real ones (sparser street networks, on the shipped generator). So
the target is what a real tile with the requested parameters measures: a
:class:`Calibration`, per parameter a least-squares fit on real training
tiles against every parameter its stage draws (the request as a whole, not
the parameter alone: dead-end share measures with R² 0.04 against its own
request, 0.36 against the street stage's eight). A sample's error is its
distance from that fit in units of the parameter's spread over training
tiles (the generator's scaler), averaged over the parameters the stage
draws. (The spread of real tiles about the fit is recorded too, but is no unit: coverage shares are measured
almost exactly, and a unit of 0.002 would let them drown every other parameter.)

A chain selects stage by stage (:meth:`urbangen.inference.GeneratorChain.selecting`):
the street stage's samples by the street parameters, then the buildings
stage's, drawn around the chosen streets, by the building parameters.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pydantic

from urbangen.conditioning import ParameterScaler
from urbangen.inference import GeneratorChain, TrainedModel
from urbangen.measure import PARAMETER_CHANNELS, measure_tiles

#: Samples per tile and stage that ``urbangen generate`` and ``urbangen evaluate`` draw by default.
CANDIDATES = 16
#: The error, in training spreads, of a requested parameter that could not be measured on a sample.
UNMEASURED = 3.0


class Line(pydantic.BaseModel):
    """What real tiles measure of one parameter through the raster path, for a request ``z`` (standardized by
    the generator's scaler; 0, the training mean, where a parameter is not requested):
    ``intercept + sum(slopes[q] * z[q])``, give or take ``spread`` (the residuals' standard deviation)."""

    intercept: float
    slopes: dict[str, float]
    spread: float = pydantic.Field(gt=0)
    r2: float
    n: int


@pydantic.dataclasses.dataclass(frozen=True)
class Calibration:
    """Per parameter, the line real tiles measure along (see the module docstring), and where it was fitted."""

    lines: dict[str, Line]
    tile_px: int
    meters_per_pixel: float
    fitted_on: str

    def target(self, names: list[str], z: np.ndarray, z_names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Expected measurements (M, len(names)) for standardized requests ``z`` (M, Q) of the parameters
        ``z_names`` (a parameter a line reads but ``z_names`` lacks counts as not requested)."""
        z = np.nan_to_num(np.asarray(z, np.float64))
        column = {q: i for i, q in enumerate(z_names)}
        out = np.empty((len(z), len(names)))
        for i, name in enumerate(names):
            line = self.lines[name]
            out[:, i] = line.intercept + sum(slope * z[:, column[q]] for q, slope in line.slopes.items() if q in column)
        return out

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        payload = {"tile_px": self.tile_px, "meters_per_pixel": self.meters_per_pixel, "fitted_on": self.fitted_on,
                   "lines": {k: v.model_dump() for k, v in self.lines.items()}}
        path.write_text(json.dumps(payload, indent=1) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> Calibration:
        return cls(**json.loads(Path(path).read_text()))


def fit_calibration(requested: np.ndarray, measured: np.ndarray, names: list[str], *, scaler: ParameterScaler,
                    predictors: dict[str, list[str]], tile_px: int, meters_per_pixel: float,
                    fitted_on: str) -> Calibration:
    """Least-squares fits of real tiles' measured values (N, P) against their own requests (N, P, in units,
    NaN where unknown), each parameter against ``predictors[name]``, standardized by ``scaler`` as a generator
    sees them (unknown: 0). A tile counts for a parameter where that parameter's request and measurement are
    both known."""
    z = scaler.transform(requested, dtype=np.float64)
    z_names = list(scaler.names)
    lines = {}
    for j, name in enumerate(names):
        v, m = requested[:, j], measured[:, j]
        ok = np.isfinite(v) & np.isfinite(m)
        keys = list(predictors.get(name, [name]))
        x = np.column_stack([np.ones(int(ok.sum()))] + [z[ok, z_names.index(q)] for q in keys])
        if ok.sum() < x.shape[1] + 2 or np.linalg.matrix_rank(x) < x.shape[1]:
            continue  # too few tiles, or a request that never varies: nothing to fit
        coef, *_ = np.linalg.lstsq(x, m[ok], rcond=None)
        residual = m[ok] - x @ coef
        total = float(np.sum((m[ok] - m[ok].mean()) ** 2))
        lines[name] = Line(intercept=float(coef[0]), slopes={q: float(c) for q, c in zip(keys, coef[1:])},
                           spread=max(float(residual.std()), 1e-9), n=int(ok.sum()),
                           r2=float(1.0 - np.sum(residual ** 2) / total) if total > 0 else 0.0)
    return Calibration(lines=lines, tile_px=tile_px, meters_per_pixel=meters_per_pixel, fitted_on=fitted_on)


def parameter_errors(stage: TrainedModel, layouts: np.ndarray, requested: np.ndarray,
                     calibration: Calibration | None = None) -> np.ndarray:
    """Mean distance, in training spreads, of each 0/1 layout's measured parameters from what real tiles measure.

    Parameters
    ----------
    stage
        The generator that drew ``layouts``: its output channels are measured,
        its parameters compared.
    layouts
        (M, t, t, C) 0/1 tiles of the stage's output channels.
    requested
        (M, P) the standardized request of each tile, in ``stage.spec.parameter_names`` order.
    calibration
        What real tiles measure for a request; without one, the request
        itself is the target.
    """
    spec = stage.spec
    names = [p for p in spec.parameter_names if set(PARAMETER_CHANNELS.get(p, ())) & set(spec.output_channels)
             and (calibration is None or p in calibration.lines)]
    if not names:
        return np.zeros(len(layouts))
    cols = [spec.parameter_names.index(p) for p in names]
    mean, std = np.asarray(spec.scaler_mean)[cols], np.asarray(spec.scaler_std)[cols]
    target = (np.asarray(requested, np.float64)[:, cols] * std + mean if calibration is None
              else calibration.target(names, requested, spec.parameter_names))
    measured = measure_tiles(layouts, list(spec.output_channels), spec.meters_per_pixel)[names]
    errors = np.abs(measured.to_numpy(np.float64) - target) / std
    return np.where(np.isnan(errors), UNMEASURED, errors).mean(axis=1)


def candidates_of(model: TrainedModel | GeneratorChain) -> int:
    """Samples ``model`` draws per tile and stage (1 unless it is a chain that samples by selection)."""
    selection = model.selection if isinstance(model, GeneratorChain) else None
    return 1 if selection is None else selection[0]


def shipped_calibration(model: TrainedModel | GeneratorChain) -> Calibration | None:
    """The calibration shipped beside a shipped generator (:data:`urbangen.pretrained.CALIBRATIONS`), if any."""
    from urbangen.pretrained import CALIBRATIONS, shipped_file

    filename = CALIBRATIONS.get(model.spec.workdir)
    if filename is None:
        return None
    calibration = Calibration.read(shipped_file(filename))
    if (calibration.tile_px, calibration.meters_per_pixel) != (model.spec.tile_px, model.spec.meters_per_pixel):
        return None
    return calibration


def by_parameters(model: TrainedModel | GeneratorChain, candidates: int = CANDIDATES,
                  calibration: Calibration | None = None) -> TrainedModel | GeneratorChain:
    """``model`` drawing ``candidates`` samples per tile and stage, keeping those nearest ``calibration``'s target
    (by default the one shipped with a shipped model; none: the request itself).

    Only a chain of deterministic stages selects (each candidate's layout is
    fixed by its sample); any other model is returned as it is.
    """
    calibration = calibration if calibration is not None else shipped_calibration(model)
    if isinstance(model, GeneratorChain):
        return model.selecting(candidates, partial(parameter_errors, calibration=calibration)
                               if candidates > 1 else None)
    return model

