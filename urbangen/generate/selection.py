"""Sampling by selection: of several samples of a request, keep the one that measures most like a real tile.

After an hour of training on a CPU the shipped generator follows its
parameters only loosely (building coverage off by 0.07 on average). Drawing
``k`` samples of a tile and keeping the best is rejection sampling towards
the condition (generate-and-filter): it costs ``k`` generations and ``k``
measurements a tile, and every tile it keeps is one the model drew itself.

*Best* is judged through the same raster → vector → parameter path as every
evaluation (:func:`urbangen.measure.measure_tiles`), and that path does not
give back what was requested exactly even for real tiles: on held-out tiles
intersection density measures 7 /km² fewer than its vector 55 (per-tile error 9.9),
dead-end share 0.07 less than its 0.14. (Before dataset format 2, with service roads
drawn as minor roads and footways as dashes, the errors were 38.9 /km² and 0.128 in
cycle and foot share.)
Keeping the sample whose measurement equals the request would prefer tiles
unlike real ones (sparser street networks, on the shipped generator). So
the target is what a real tile with the requested parameters measures: a
:class:`Calibration`, per parameter a least-squares fit on real training
tiles against every parameter its stage draws (the request as a whole, not
the parameter alone: dead-end share measured with R² 0.35 against the street
stage's eight, 0.04 against its own request as measured before street ends at
a tile's edge stopped counting as dead ends; 0.52 against the eight on dataset
format 2). A sample's error is its
distance from that fit in units of the parameter's spread over training
tiles (the generator's scaler), averaged over the parameters the stage
draws. (The spread of real tiles about the fit is recorded too, but is no unit: coverage shares are measured
almost exactly, and a unit of 0.002 would let them drown every other parameter.)
The average is weighted (:data:`WEIGHTS`): intersection density, dead-end
share and cycle and foot share, the street network's form, weigh 3, and
the lengths and bearings that follow a request more closely weigh 1. On
128 tiles of the validation regions (street stage, 16 candidates, targets
as below; roads run through paths, spurs under 24 px cut, road stubs on a
path drawn as path: :mod:`urbangen.proximity`) equal weights scored
dead-end share's Wasserstein-1 distance at 0.89x its real-versus-real
floor, and conditioning errors of 12.6 /km² in intersection density and
0.047 in cycle and foot share; weights of 2 scored 0.58x, 10.1 and 0.039,
weights of 3 0.57x, 9.1 and 0.034.

The fit is what real tiles measure on average; a real tile lies off it, and
keeping every tile's best of ``k`` at the average makes generated tiles more
alike than real ones. A parameter's target can instead be the fit plus a
share of the residual of a real training tile: one of the
:data:`NEIGHBOURS` whose requests are nearest its own, drawn with the
tile's seed, all of a stage's parameters from the same real tile (a sparse
street network's few intersections and many dead ends go together). It is
a fidelity-realism trade, like a GAN's truncation, and it pays where the
request says little of what a tile measures: dead-end share (R² 0.52 on
dataset format 2) is 0 on 61 % of 128 real validation tiles and large on a few, and a
target at its fit (0.07 for most requests) kept tiles with a dead end or two
where real ones have none. So by default (``scatter`` None) a parameter
whose line has an R² below :data:`SCATTERED_BELOW_R2` (dead-end share and
orientation entropy of the street stage, buildings per hectare of the
buildings stage) takes a real tile's whole residual, and the rest their
fit. On 128 tiles of the validation regions (against as many training
tiles; street stage of 2026-12-03, 16 candidates, equal weights, spurs under
16 px cut) the fit alone scored
dead-end share's Wasserstein-1 distance at 3.0x its real-versus-real floor,
this default at 1.7x, and the conditioning errors of intersection density
11.8 -> 10.8 /km² and of cycle and foot share 0.043 -> 0.047; every
parameter at scatter 1 scored 1.5x, but 13.2 /km² and 0.051. (Scatter
``sqrt(1 - R²)`` per parameter: 1.7x, 12.5, 0.044; the dead-end share
alone: 1.7x, 11.4, 0.040.) On the bar's 256 test tiles the default took
dead-end share's distance from 6.4x to 4.6x and intersection density's
conditioning error from 13.8 to 13.2 /km². A ``scatter`` of 0 to 1 (``target_scatter`` in a
parameter file, ``--target-scatter`` of ``urbangen evaluate``) gives every
parameter that share instead: 0 follows requests most closely. (The street
stage's windows of a stitched layout are scored against the fit alone:
:func:`urbangen.generate.sampler.generate_layout`.)

A chain selects stage by stage (:meth:`urbangen.inference.GeneratorChain.selecting`):
the street stage's samples by the street parameters, then the buildings
stage's, drawn around the chosen streets, by the building parameters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np
import pydantic

from data_pipeline.errors import InvalidValueError, RunSpecError
from urbangen.conditioning import ParameterScaler
from urbangen.inference import GeneratorChain, TrainedModel
from urbangen.measure import PARAMETER_CHANNELS, measure_tiles

#: Samples per tile and stage that ``urbangen generate`` and ``urbangen evaluate`` draw by default.
CANDIDATES = 16
#: The error, in training spreads, of a requested parameter that could not be measured on a sample.
UNMEASURED = 3.0
#: A tile's target takes the residual of one of this many real training tiles nearest its request.
NEIGHBOURS = 16
#: How much of a real tile's scatter about the fit a tile's target takes by default: None, per parameter
#: (1 where the request explains less than ``SCATTERED_BELOW_R2`` of what real tiles measure, else 0).
TARGET_SCATTER: float | None = None
#: By default a parameter whose line explains less than this share of real tiles' variance (R²) is
#: targeted with a real tile's scatter; the rest at their line.
SCATTERED_BELOW_R2 = 0.6
#: A parameter's weight in a sample's error (the rest weigh 1): the street network's form that the
#: evaluation's morphology distances judge (how connected, how often it ends, whose streets), over the
#: lengths and bearings that follow the request more closely (see the module).
WEIGHTS: dict[str, float] = {"intersection_density_per_km2": 3.0, "dead_end_share": 3.0, "cycle_foot_share": 3.0}


class Line(pydantic.BaseModel):
    """What real tiles measure of one parameter through the raster path, for a request ``z`` (standardized by
    the generator's scaler; 0, the training mean, where a parameter is not requested):
    ``intercept + sum(slopes[q] * z[q])``, give or take ``spread`` (the residuals' standard deviation)."""

    intercept: float
    slopes: dict[str, float]
    spread: float = pydantic.Field(gt=0)
    r2: float
    n: int


@pydantic.dataclasses.dataclass(frozen=True, eq=False, config=pydantic.ConfigDict(arbitrary_types_allowed=True))
class Calibration:
    """Per parameter, the line real tiles measure along (see the module docstring), and where it was fitted.

    ``requests`` (N, Q) are the fitting tiles' standardized requests, of the
    parameters ``request_names`` (0 where unknown, as a generator sees them),
    and ``residuals`` (N, len(lines)) their measurements less the lines, in
    ``lines``' order (NaN where unknown): the scatter of real tiles about the
    lines, which :meth:`target` draws from when given seeds.
    """

    lines: dict[str, Line]
    tile_px: int
    meters_per_pixel: float
    fitted_on: str
    request_names: tuple[str, ...] = ()
    requests: np.ndarray | None = None
    residuals: np.ndarray | None = None

    def target(self, names: list[str], z: np.ndarray, z_names: list[str] | tuple[str, ...],
               seeds: np.ndarray | None = None, scatter: float | None = TARGET_SCATTER) -> np.ndarray:
        """Expected measurements (M, len(names)) for standardized requests ``z`` (M, Q) of the parameters
        ``z_names`` (a parameter a line reads but ``z_names`` lacks counts as not requested).

        With ``seeds`` (M,), each row's target is its line plus, per parameter, its share
        (:meth:`scatter_shares`) of the residuals of one real tile, drawn with its seed from the
        :data:`NEIGHBOURS` whose requests of ``z_names`` are nearest; rows with one seed (one tile's
        candidates) draw the same tile.
        """
        z = np.nan_to_num(np.asarray(z, np.float64))
        column = {q: i for i, q in enumerate(z_names)}
        out = np.empty((len(z), len(names)))
        for i, name in enumerate(names):
            line = self.lines[name]
            out[:, i] = line.intercept + sum(slope * z[:, column[q]] for q, slope in line.slopes.items() if q in column)
        shares = self.scatter_shares(names, scatter)
        if shares.any() and seeds is not None and self.residuals is not None and self.requests is not None:
            out += shares * self._drawn_residuals(names, z, z_names, np.asarray(seeds))
        return out

    def scatter_shares(self, names: list[str], scatter: float | None = TARGET_SCATTER) -> np.ndarray:
        """(len(names),) the share of a real tile's residual each parameter's target takes: ``scatter`` for
        every one, or by default (None) 1 for a line of R² below :data:`SCATTERED_BELOW_R2`, 0 for the rest."""
        if scatter is not None:
            return np.full(len(names), float(scatter))
        return np.array([float(self.lines[n].r2 < SCATTERED_BELOW_R2) for n in names])

    def share_below(self, name: str, z: np.ndarray) -> np.ndarray | None:
        """For standardized requests ``z`` of ``name``, the share of the fitting tiles (those counted for it)
        whose own request lies below (ties count half): where a request sits among the tiles a generator
        learned from. None without the fitting tiles' requests."""
        if self.requests is None or self.residuals is None or name not in self.lines or name not in self.request_names:
            return None
        counted = np.isfinite(self.residuals[:, list(self.lines).index(name)])
        known = np.sort(self.requests[counted, self.request_names.index(name)])
        if not len(known):
            return None
        z = np.asarray(z, np.float64)
        return (np.searchsorted(known, z, "left") + np.searchsorted(known, z, "right")) / (2 * len(known))

    def _drawn_residuals(self, names: list[str], z: np.ndarray, z_names: list[str] | tuple[str, ...],
                         seeds: np.ndarray) -> np.ndarray:
        assert self.residuals is not None and self.requests is not None
        order = list(self.lines)
        residuals = self.residuals[:, np.array([order.index(n) for n in names], int)]
        # Every tile counted for any of these parameters; one a parameter could not be measured on (a tile
        # with next to no streets has no orientation entropy) is at its fit there. Dropping such tiles would
        # drop the sparsest ones, the scatter's own tail.
        pool = np.flatnonzero(np.isfinite(residuals).any(axis=1))
        residuals = np.nan_to_num(residuals)
        shared = [q for q in z_names if q in self.request_names]
        out = np.zeros((len(z), len(names)))
        if not len(pool) or not shared:  # no tile to draw from, or none asked for anything these tiles were
            return out
        fitted = self.requests[np.ix_(pool, np.array([self.request_names.index(q) for q in shared], int))]
        asked = z[:, np.array([list(z_names).index(q) for q in shared], int)]
        # One draw per tile: its candidates share a seed and a request.
        _, first, row_of = np.unique(np.column_stack([seeds, asked]), axis=0, return_index=True,
                                     return_inverse=True)
        for k, i in enumerate(first):
            nearest = pool[np.argsort(((fitted - asked[i]) ** 2).sum(axis=1), kind="stable")[:NEIGHBOURS]]
            out[row_of.reshape(-1) == k] = residuals[np.random.default_rng(int(seeds[i])).choice(nearest)]
        return out

    def write(self, path: str | Path) -> Path:
        """The lines as JSON at ``path``; the fitting tiles' requests and residuals beside it (``.npz``)."""
        path = Path(path)
        payload = {"tile_px": self.tile_px, "meters_per_pixel": self.meters_per_pixel, "fitted_on": self.fitted_on,
                   "lines": {k: v.model_dump() for k, v in self.lines.items()}}
        if self.residuals is not None and self.requests is not None:
            payload["scatter_file"] = path.with_suffix(".npz").name
            np.savez_compressed(path.with_suffix(".npz"), requests=self.requests.astype(np.float32),
                                residuals=self.residuals.astype(np.float32),
                                request_names=np.array(self.request_names), names=np.array(list(self.lines)))
        path.write_text(json.dumps(payload, indent=1) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> Calibration:
        path = Path(path)
        payload = json.loads(path.read_text())
        scatter_file = payload.pop("scatter_file", None)
        if scatter_file is not None:
            if not (path.parent / scatter_file).is_file():
                raise RunSpecError(f"{path.name} names {scatter_file} beside it, which is missing (looked in "
                                   f"{path.parent}); reinstall urbangen or refit the calibration")
            with np.load(path.parent / scatter_file) as saved:
                if list(saved["names"]) != list(payload["lines"]):
                    raise RunSpecError(f"{scatter_file}: residuals of {list(saved['names'])}, but {path.name} has "
                                       f"lines of {list(payload['lines'])}: refit the calibration")
                payload |= {"request_names": tuple(str(q) for q in saved["request_names"]),
                            "requests": saved["requests"].astype(np.float64),
                            "residuals": saved["residuals"].astype(np.float64)}
        return cls(**payload)


def fit_calibration(requested: np.ndarray, measured: np.ndarray, names: list[str], *, scaler: ParameterScaler,
                    predictors: dict[str, list[str]], tile_px: int, meters_per_pixel: float,
                    fitted_on: str) -> Calibration:
    """Least-squares fits of real tiles' measured values (N, P) against their own requests (N, P, in units,
    NaN where unknown), each parameter against ``predictors[name]``, standardized by ``scaler`` as a generator
    sees them (unknown: 0). A tile counts for a parameter where that parameter's request and measurement are
    both known. Each tile's requests (standardized, unknown: 0) and residuals (NaN where the tile does not
    count) are kept: what seeded targets draw from (:meth:`Calibration.target`)."""
    z = scaler.transform(requested, dtype=np.float64)
    z_names = list(scaler.names)
    lines, residuals = {}, np.full(np.shape(measured), np.nan)
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
        residuals[ok, j] = residual
    return Calibration(lines=lines, tile_px=tile_px, meters_per_pixel=meters_per_pixel, fitted_on=fitted_on,
                       request_names=tuple(z_names), requests=np.nan_to_num(z),
                       residuals=residuals[:, [names.index(n) for n in lines]])


def parameter_errors(stage: TrainedModel, layouts: np.ndarray, requested: np.ndarray, seeds: np.ndarray | None = None,
                     *, weighted: bool | None = None, weights: Mapping[str, float] | None = None,
                     calibration: Calibration | None = None, scatter: float | None = TARGET_SCATTER) -> np.ndarray:
    """Mean distance, in training spreads, of each 0/1 layout's measured parameters from what real tiles measure,
    weighted by :data:`WEIGHTS` where ``weighted`` (by default when ``seeds`` are given); without them every
    parameter weighs the same (the street stage's windows of a stitched layout are scored so while the tiles
    after them are still to be drawn: :mod:`urbangen.generate.sampler`).

    Parameters
    ----------
    stage
        The generator that drew ``layouts``: its output channels are measured,
        its parameters compared.
    layouts
        (M, t, t, C) 0/1 tiles of the stage's output channels.
    requested
        (M, P) the standardized request of each tile, in ``stage.spec.parameter_names`` order.
    seeds
        (M,) each layout's tile: the seed its target's real residuals are
        drawn with (:meth:`Calibration.target`).
    weighted
        Whether the parameters weigh :data:`WEIGHTS` (None: where ``seeds``
        are given).
    weights
        The weights where ``weighted``, by parameter name (the rest weigh 1),
        instead of :data:`WEIGHTS`.
    calibration
        What real tiles measure for a request; without one, the request
        itself is the target.
    scatter
        The share of a real tile's residuals each target takes (0: the
        calibration's line alone; None: per parameter,
        :meth:`Calibration.scatter_shares`).
    """
    spec = stage.spec
    names = [p for p in spec.parameter_names if set(PARAMETER_CHANNELS.get(p, ())) & set(spec.output_channels)
             and (calibration is None or p in calibration.lines)]
    if not names:
        return np.zeros(len(layouts))
    cols = [spec.parameter_names.index(p) for p in names]
    mean, std = np.asarray(spec.scaler_mean)[cols], np.asarray(spec.scaler_std)[cols]
    target = (np.asarray(requested, np.float64)[:, cols] * std + mean if calibration is None
              else calibration.target(names, requested, spec.parameter_names, seeds, scatter))
    measured = measure_tiles(layouts, list(spec.output_channels), spec.meters_per_pixel)[names]
    errors = np.abs(measured.to_numpy(np.float64) - target) / std
    # Without seeds (the street stage's windows of a stitched layout, scored untidied: urbangen.generate.sampler)
    # every parameter weighs the same unless asked.
    weighted = seeds is not None if weighted is None else weighted
    by_name = WEIGHTS if weights is None else weights
    weight = np.array([by_name.get(p, 1.0) if weighted else 1.0 for p in names])
    return np.where(np.isnan(errors), UNMEASURED, errors) @ weight / weight.sum()


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
                  calibration: Calibration | None = None,
                  scatter: float | None = TARGET_SCATTER) -> TrainedModel | GeneratorChain:
    """``model`` drawing ``candidates`` samples per tile and stage, keeping those nearest ``calibration``'s target
    (by default the one shipped with a shipped model; none: the request itself), each target taking ``scatter``
    (0 to 1; None: per parameter by its line's R²) of a real tile's scatter about it (see the module).

    Only a chain of deterministic stages selects (each candidate's layout is
    fixed by its sample); any other model is returned as it is.

    Raises
    ------
    InvalidValueError
        If ``scatter`` is outside [0, 1], or above 0 with no calibration that
        holds real tiles' scatter (a model of your own: fit one with
        ``scripts/fit_selection_calibration.py``).
    """
    if scatter is not None and not 0.0 <= scatter <= 1.0:
        raise InvalidValueError(f"target scatter must be between 0 and 1, got {scatter}")
    calibration = calibration if calibration is not None else shipped_calibration(model)
    if scatter and (calibration is None or calibration.residuals is None):
        raise InvalidValueError(f"a target scatter of {scatter} needs a calibration holding real tiles' scatter, "
                                f"and {model.spec.workdir} has none: fit one with scripts/fit_selection_calibration.py")
    if isinstance(model, GeneratorChain):
        return model.selecting(candidates, partial(parameter_errors, calibration=calibration, scatter=scatter)
                               if candidates > 1 else None)
    return model
