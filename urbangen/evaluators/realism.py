"""Realism: how far generated tiles lie from real held-out tiles, beside real tiles' own distance.

Three metrics, each taken against the same reference (real test tiles) and
always at equal sample sizes on both sides:

- ``frechet``: Fréchet distance in the attention encoder's embedding space,
  with a 95 % interval from a block bootstrap over regions;
- ``kid``: unbiased kernel inception distance there, with its standard
  deviation over subsets;
- ``morphology``: the Wasserstein-1 distance of each urban-form parameter,
  all tiles measured through the same raster → vector → parameters path
  (:func:`urbangen.measure.measure_tiles`), divided by the same distance
  between real tiles and the reference; the mean over parameters.
  Real tiles score 1 by construction. The floor is one draw of real tiles;
  given the pool it was drawn from, each parameter's ratio is also taken
  over many draws (:func:`urbangen.evaluators.stats.w1_ratios_over_floor_draws`).

Every metric is scored on the sanity ladder (:mod:`urbangen.evaluators.ladder`)
too: its ``real`` rung is the floor, its ``noise`` rung the ceiling, and a
metric whose ladder does not rise is withheld.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from data_pipeline.errors import InvalidValueError
from urbangen.evaluators import ladder
from urbangen.evaluators.common import FloorPool, RealTiles
from urbangen.evaluators.stats import (
    frechet_distance,
    frechet_interval,
    kid,
    w1_ratios_over_floor_draws,
    wasserstein_columns,
)
from urbangen.inference import TrainedModel


class Realism:
    """Scores tile sets against a reference set of real tiles.

    Parameters
    ----------
    reference
        Real test tiles.
    encoder
        A run with an ``embed`` function; without one only ``morphology`` is scored.
    """

    def __init__(self, reference: RealTiles, *, encoder: TrainedModel | None, n_boot: int = 200,
                 seed: int = 0) -> None:
        self.reference = reference
        self.encoder = encoder
        self.n_boot = n_boot
        self.seed = seed
        self.parameter_names = tuple(reference.measured.columns)
        self.reference_measured = reference.measured.to_numpy(dtype=np.float64)
        self.reference_embedded = encoder.embed_tiles(reference.tiles) if encoder is not None else None
        self._floor_w1: np.ndarray | None = None

    def _w1(self, measured: np.ndarray) -> np.ndarray:
        """Per-parameter Wasserstein-1 distance to the reference (NaN where a side has no value)."""
        return wasserstein_columns(measured, self.reference_measured)

    def score(self, tiles: np.ndarray, regions: np.ndarray | None = None, *, interval: bool = False,
              measured: pd.DataFrame | None = None) -> dict[str, Any]:
        """Every metric of one tile set (as many tiles as the reference); ``measured``: their parameters, if known."""
        if len(tiles) != len(self.reference):
            raise InvalidValueError(f"realism compares equal sample sizes: {len(tiles)} tiles against a reference of "
                             f"{len(self.reference)}")
        out: dict[str, Any] = {}
        if self.encoder is not None and self.reference_embedded is not None:  # set together
            e = self.encoder.embed_tiles(tiles)
            if interval and regions is not None:
                out["frechet"] = frechet_interval(e, self.reference_embedded, regions, self.reference.regions,
                                                  n_boot=self.n_boot, seed=self.seed)
            else:
                out["frechet"] = {"value": frechet_distance(e, self.reference_embedded)}
            # Subsets of half the tiles: subsets of all of them would all be the same, with no spread.
            out["kid"] = kid(e, self.reference_embedded, subset_size=max(2, len(e) // 2), seed=self.seed)
        measured = self.reference.measure(tiles) if measured is None else measured
        w1 = self._w1(measured[list(self.parameter_names)].to_numpy(dtype=np.float64))
        if self._floor_w1 is None:
            raise RuntimeError("set the floor first (Realism.set_floor)")
        ok = np.isfinite(w1) & np.isfinite(self._floor_w1) & (self._floor_w1 > 0)
        ratio = np.where(ok, w1 / np.where(ok, self._floor_w1, 1.0), np.nan)
        # The arithmetic mean: a parameter many floors away (a thousand one-pixel "buildings" per
        # hectare) must weigh in fully; a geometric mean lets near-real pixel shares hide it.
        out["morphology"] = {"value": float(np.mean(ratio[ok])) if ok.any() else float("nan"),
                             "per_parameter_w1_ratio": {p: (None if not ok[j] else float(ratio[j]))
                                                        for j, p in enumerate(self.parameter_names)}}
        return out

    def ratios_over_floor_draws(self, measured: pd.DataFrame, pool: FloorPool) -> dict[str, dict | None]:
        """Per parameter, the Wasserstein-1 ratio of tiles ``measured`` over floors drawn again and again from
        ``pool`` (:func:`urbangen.evaluators.stats.w1_ratios_over_floor_draws`): how far it moves with the
        floor's draw."""
        names = list(self.parameter_names)
        pooled = pool.values(lambda tiles: self.reference.measure(tiles)[names].to_numpy(dtype=np.float64))
        ratios = w1_ratios_over_floor_draws(measured[names].to_numpy(dtype=np.float64), self.reference_measured,
                                            pooled, seed=self.seed)
        return dict(zip(names, ratios))

    def set_floor(self, real: RealTiles) -> None:
        """Real tiles (not the reference's) whose parameter distances are the morphology denominators."""
        self._floor_w1 = self._w1(real.measured[list(self.parameter_names)].to_numpy(dtype=np.float64))

    def run(self, generated: np.ndarray, generated_regions: np.ndarray, real: RealTiles,
            generated_measured: pd.DataFrame | None = None, floor_pool: FloorPool | None = None) -> dict[str, Any]:
        """Generated tiles scored beside the ladder made from ``real`` tiles (floor and ceiling).

        ``real`` holds as many real tiles as the reference, from other ground
        (training regions): its ``real`` rung is the floor. ``generated_measured``:
        the generated tiles' parameters, when the caller has them. ``floor_pool``:
        the tiles ``real`` was drawn from, for the morphology ratios over other draws.
        """
        self.set_floor(real)
        rung_scores = {name: self.score(tiles, real.regions if name == "real" else None, interval=name == "real",
                                        measured=real.measured if name == "real" else None)
                       for name, tiles in ladder.rungs(real.tiles, self.seed).items()}
        if generated_measured is None:
            generated_measured = self.reference.measure(generated)
        gen = self.score(generated, generated_regions, interval=True, measured=generated_measured)
        metrics: dict[str, Any] = {}
        for metric in gen:
            scores = {r: rung_scores[r][metric]["value"] for r in ladder.RUNGS}
            ok = ladder.holds(scores)
            entry: dict[str, Any] = {"reported": ok, "ladder": scores, "ladder_holds": ok,
                                     "floor": scores["real"], "ceiling": scores["noise"]}
            if metric == "frechet":
                entry["floor_ci95"] = rung_scores["real"][metric].get("ci95")
            if ok:
                entry["generated"] = gen[metric]["value"]
                entry.update({k: v for k, v in gen[metric].items() if k not in ("value",)})
                span = scores["noise"] - scores["real"]
                # Where the generator sits between real (0) and noise (1): comparable across metrics.
                entry["position_real_to_noise"] = float((gen[metric]["value"] - scores["real"]) / span)
                entry["verdict"] = verdict(gen[metric]["value"], scores)
                if metric == "morphology" and floor_pool is not None:
                    entry["per_parameter_w1_ratio_over_floor_draws"] = self.ratios_over_floor_draws(
                        generated_measured, floor_pool)
            else:
                entry["generated"] = None
                entry["withheld"] = "fails the sanity ladder (real < blurred < shuffled < noise does not hold)"
            metrics[metric] = entry
        return {"reference": "real test tiles", "n": int(len(self.reference)), "metrics": metrics}


def verdict(value: float, scores: dict[str, float]) -> str:
    """Where a score falls on the ladder, in words, such as ``between blurred and shuffled real tiles``."""
    passed = [rung for rung in ladder.RUNGS if value > scores[rung]]
    if not passed:
        return "as real as real tiles"
    names = {"real": "real", "blurred": "blurred", "shuffled": "shuffled", "noise": "per-pixel noise"}
    if passed[-1] == "noise":
        return "worse than per-pixel noise"
    after = ladder.RUNGS[ladder.RUNGS.index(passed[-1]) + 1]
    return f"between {names[passed[-1]]} and {names[after]} tiles"
