"""Diversity: how much two samples of one request differ, beside how much similar real tiles differ.

A generator that draws the same tile for a request scores 0; real tiles with
nearly the same parameters still differ, and that difference (between each
real test tile and the test tile nearest to it in standardized parameters,
from another region) is the number to compare with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from urbangen.evaluators.common import RealTiles, generate_for
from urbangen.inference import Generator, TrainedModel


def _disagreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of pixels (all channels) that differ, per pair of tiles."""
    return (a != b).reshape(len(a), -1).mean(axis=1)


def _nearest_other_region(z: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """For each row, the nearest row (Euclidean) in another region; -1 when there is none."""
    d = cdist(z, z, "sqeuclidean")
    d[regions[:, None] == regions[None]] = np.inf
    nearest = d.argmin(axis=1)
    nearest[~np.isfinite(d.min(axis=1))] = -1
    return nearest


class Diversity:
    """Pixel (and, with an encoder, embedding) distance between samples of one request, and between real neighbours."""

    def __init__(self, real: RealTiles, *, encoder: TrainedModel | None = None, seed: int = 0) -> None:
        self.real = real
        self.encoder = encoder
        self.seed = seed

    def run(self, model: Generator, generated: np.ndarray | None = None) -> dict[str, Any]:
        first = generated if generated is not None else generate_for(model, self.real, seed=self.seed)
        second = generate_for(model, self.real, seed=self.seed, sample=1)
        z = model.spec.scaler.transform(self.real.parameters)
        nearest = _nearest_other_region(z, self.real.regions)
        has = nearest >= 0
        out: dict[str, Any] = {
            "n": int(len(self.real)),
            "pixel_disagreement_between_samples": float(_disagreement(first, second).mean()),
            "pixel_disagreement_between_real_neighbours": float(
                _disagreement(self.real.tiles[has], self.real.tiles[nearest[has]]).mean()) if has.any() else None}
        if self.encoder is not None:
            ea, eb = self.encoder.embed_tiles(first), self.encoder.embed_tiles(second)
            er = self.encoder.embed_tiles(self.real.tiles)
            out["embedding_distance_between_samples"] = float(np.linalg.norm(ea - eb, axis=1).mean())
            out["embedding_distance_between_real_neighbours"] = float(
                np.linalg.norm(er[has] - er[nearest[has]], axis=1).mean()) if has.any() else None
        return out
