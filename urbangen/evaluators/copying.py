"""Copying: whether a generator hands back the tiles it was trained on.

Each generated tile is paired with the training tile nearest to it, and so is
each real test tile. Nearness is the Jaccard distance over the pixels the
generator draws (every channel's): the share of the pixels drawn in either
tile that are drawn in only one. Not the plain share of differing pixels: by
that, a dense tile's nearest training tile is an empty one (fewer pixels to
differ in), and it says nothing of recall. The real test tiles are the floor:
held-out ground is no copy of the training ground, and it comes as near the
training tiles as real ground does. A generator that recalls its training
tiles sits much nearer them than the test tiles do: the ratio of the two
medians falls towards 0, and generated tiles nearer a training tile than any
real test tile is show up in ``below_every_real``. Compared at equal sample
sizes (as many generated as real test tiles), against the same training tiles.

Given an encoder (the attention encoder the realism evaluator embeds with),
the same is measured in its embedding space by Euclidean distance: there a
tile's nearest training tile is one of its kind (a dense block beside dense
blocks, not an all-building tile), so it is also what the examples figure
shows beside each generated tile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_pipeline.errors import InvalidValueError
from urbangen.evaluators.common import RealTiles
from urbangen.inference import TrainedModel


def nearest_by_jaccard(tiles: np.ndarray, reference: np.ndarray, chunk_bytes: int = 64 * 2 ** 20
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``tiles`` (n, H, W, C) 0/1, its nearest of ``reference`` (m, H, W, C) by Jaccard distance
    over all pixel values, ``1 - |a & b| / |a | b|`` (0 for two empty tiles): that distance (n,) and the
    reference's row (n,), the first one on a tie.

    For 0/1 pixels ``|a & b|`` is the product ``a.b`` and ``|a | b| = |a| + |b| - a.b``: one matrix product per
    pair of chunks (of about ``chunk_bytes`` in float32 each), the counts exact in float32 for tiles of fewer
    than 2**24 pixel values.
    """
    a = np.asarray(tiles).reshape(len(tiles), -1)
    b = np.asarray(reference).reshape(len(reference), -1)
    if a.shape[1] != b.shape[1]:
        raise InvalidValueError(f"tiles of {a.shape[1]} pixel values against a reference of {b.shape[1]}")
    if a.shape[1] >= 2 ** 24:
        raise InvalidValueError("tiles too large to count their pixels exactly in float32")
    rows = max(1, chunk_bytes // (4 * a.shape[1]))
    best = np.full(len(a), np.inf)
    row = np.zeros(len(a), np.int64)
    for r0 in range(0, len(b), rows):
        y = b[r0:r0 + rows].astype(np.float32)
        y_ones = y.sum(axis=1)
        for t0 in range(0, len(a), rows):
            x = a[t0:t0 + rows].astype(np.float32)
            shared = (x @ y.T).astype(np.float64)
            union = x.sum(axis=1)[:, None] + y_ones[None, :] - shared
            distance = np.where(union > 0, 1.0 - shared / np.maximum(union, 1.0), 0.0)
            nearer = distance.min(axis=1) < best[t0:t0 + rows]  # strictly: the first of equals stays
            row[t0:t0 + rows][nearer] = r0 + distance.argmin(axis=1)[nearer]
            best[t0:t0 + rows][nearer] = distance.min(axis=1)[nearer]
    return best, row


def nearest_by_euclidean(points: np.ndarray, reference: np.ndarray, chunk: int = 1024
                         ) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``points`` (n, d), its nearest of ``reference`` (m, d) by Euclidean distance: that distance
    (n,) and the reference's row (n,), the first one on a tie. In float64, ``chunk`` points at a time
    (``|a|² + |b|² - 2 a.b``, clipped at 0)."""
    a = np.asarray(points, np.float64)
    b = np.asarray(reference, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InvalidValueError(f"points of shape {a.shape} against a reference of shape {b.shape}")
    if not len(b):
        raise InvalidValueError("no reference points to be nearest to")
    b_sq = (b ** 2).sum(axis=1)
    distance = np.zeros(len(a))
    row = np.zeros(len(a), np.int64)
    for s in range(0, len(a), chunk):
        x = a[s:s + chunk]
        sq = np.maximum((x ** 2).sum(axis=1)[:, None] + b_sq[None, :] - 2.0 * x @ b.T, 0.0)
        row[s:s + chunk] = sq.argmin(axis=1)
        distance[s:s + chunk] = np.sqrt(sq.min(axis=1))
    return distance, row


class Copying:
    """Generated and real test tiles, each against its nearest training tile (Jaccard distance, and with an
    ``encoder`` Euclidean distance in its embedding space)."""

    def __init__(self, training: RealTiles, channels: list[int], encoder: TrainedModel | None = None) -> None:
        self.training = training
        self.channels = channels
        self.encoder = encoder

    def run(self, generated: np.ndarray, test: RealTiles) -> dict[str, Any]:
        """The two distributions of nearest distances, their medians' ratio, and each generated tile's nearest
        training tile (its dataset row); the same in the encoder's space under ``encoder_space``."""
        reference = self.training.tiles[..., self.channels]
        d_gen, nearest = nearest_by_jaccard(generated[..., self.channels], reference)
        d_real, _ = nearest_by_jaccard(test.tiles[..., self.channels], reference)
        out: dict[str, Any] = {
            "n": int(len(d_gen)), "training_tiles": int(len(reference)), **_medians(d_gen, d_real),
            "identical": int(np.sum(d_gen == 0)), "real_identical": int(np.sum(d_real == 0)),
            "generated_distances": d_gen.round(5).tolist(),
            "nearest_training_rows": self.training.indices[nearest].tolist()}
        if self.encoder is not None:
            embedded = self.encoder.embed_tiles(self.training.tiles)
            e_gen, e_nearest = nearest_by_euclidean(self.encoder.embed_tiles(generated), embedded)
            e_real, _ = nearest_by_euclidean(self.encoder.embed_tiles(test.tiles), embedded)
            out["encoder_space"] = {**_medians(e_gen, e_real), "generated_distances": e_gen.round(5).tolist(),
                                    "nearest_training_rows": self.training.indices[e_nearest].tolist()}
        return out


def _medians(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """Medians of generated and real test tiles' nearest distances, their ratio, and the share of generated
    tiles nearer a training tile than every real test tile."""
    median_gen, median_real = float(np.median(generated)), float(np.median(real))
    return {"generated_median": median_gen, "real_test_median": median_real,
            "ratio": median_gen / median_real if median_real > 0 else float("nan"),
            "below_every_real": float(np.mean(generated < real.min()))}
