"""Per-tile statistics of generated tiles against real test tiles, beside real against real.

Evaluators that measure something per tile (how buildings front the streets,
:mod:`urbangen.evaluators.frontage`; the form of footprints and streets,
:mod:`urbangen.evaluators.form`) compare it the way the morphology metric
compares parameters: the Wasserstein-1 distance between generated tiles and
the reference (real test tiles), divided by the same distance between other
real tiles (training regions) and the reference, with the sanity ladder's
degraded rungs as ceilings; given the pool the floor was drawn from, also
over many draws of the floor (:func:`urbangen.evaluators.stats.w1_ratios_over_floor_draws`).
All three sets hold as many tiles, and each distance is over the tiles with
a value. A generator that drew the measured thing on few tiles would be
judged on those few, so the target also asks that at least
``MEASURED_SHARE`` as many generated tiles as reference tiles have a value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from data_pipeline.errors import InvalidValueError
from urbangen.evaluators import ladder
from urbangen.evaluators.common import FloorPool, RealTiles
from urbangen.evaluators.stats import w1_ratios_over_floor_draws, wasserstein_columns

#: The target also asks for a value on at least this share of as many generated tiles as real test tiles have one.
MEASURED_SHARE = 0.9

#: ``statistics(tiles)``: (len(tiles), k) per-tile values, NaN where a tile has none.
Statistics = Callable[[np.ndarray], np.ndarray]


def compare(statistics: Statistics, names: tuple[str, ...], reference: RealTiles, generated: np.ndarray,
            real: RealTiles, *, seed: int = 0, tolerance: float = 2.0, pool: FloorPool | None = None
            ) -> dict[str, Any]:
    """Each statistic of ``generated`` against ``reference``, over the floor ``real`` sets.

    Parameters
    ----------
    statistics
        Per-tile values of tiles in the reference's channels (see :data:`Statistics`).
    names
        The statistics' names, one per column.
    reference, real
        Real test tiles, and as many real tiles from other ground (training regions): the floor.
    generated
        As many generated tiles, in the reference's channels.
    seed
        The sanity ladder's seed, and the floor draws'.
    tolerance
        The target, in floors, for each statistic's W1.
    pool
        The tiles ``real`` was drawn from: each ratio is also taken over many draws of the floor from them.

    Raises
    ------
    InvalidValueError
        If the three sets differ in size.
    """
    if not len(generated) == len(real) == len(reference):
        raise InvalidValueError(f"per-tile statistics compare equal sample sizes: {len(generated)} generated, "
                                f"{len(real)} real and {len(reference)} reference tiles")
    ref_stats, gen_stats, real_stats = statistics(reference.tiles), statistics(generated), statistics(real.tiles)
    w1 = wasserstein_columns(gen_stats, ref_stats)
    floor = wasserstein_columns(real_stats, ref_stats)
    rungs = {name: wasserstein_columns(statistics(tiles), ref_stats)
             for name, tiles in ladder.rungs(real.tiles, seed).items() if name != "real"}
    over_draws = [None] * len(names) if pool is None else w1_ratios_over_floor_draws(
        gen_stats, ref_stats, pool.values(statistics), seed=seed)
    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        ratio = float(w1[j] / floor[j]) if np.isfinite(w1[j]) and floor[j] > 0 else None
        measured = int(np.isfinite(gen_stats[:, j]).sum())
        enough = measured >= MEASURED_SHARE * np.isfinite(ref_stats[:, j]).sum()
        out[name] = {
            "real_test_mean": float(np.nanmean(ref_stats[:, j])),
            "real_train_mean": float(np.nanmean(real_stats[:, j])),
            "generated_mean": float(np.nanmean(gen_stats[:, j])) if np.isfinite(gen_stats[:, j]).any() else None,
            "generated_tiles_measured": measured,
            "real_test_tiles_measured": int(np.isfinite(ref_stats[:, j]).sum()),
            "w1": float(w1[j]), "floor_w1": float(floor[j]), "w1_ratio": ratio,
            "w1_ratio_over_floor_draws": over_draws[j] if ratio is not None else None,
            "ladder_w1": {"real": float(floor[j]), **{k: float(v[j]) for k, v in rungs.items()}},
            "target_ratio": tolerance,
            "meets_target": None if ratio is None else bool(ratio <= tolerance and enough)}
    return out
