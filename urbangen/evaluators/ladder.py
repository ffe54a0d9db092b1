"""The sanity ladder: real tiles degraded step by step, which a realism metric must rank in order.

On every realism metric (lower = more real), scored against the same
reference set, this order must hold:

1. ``real``: real tiles the reference does not hold;
2. ``blurred``: the same tiles blurred (Gaussian), then made 0/1 again by
   keeping, per tile and channel, as many of the most-covered pixels as the
   tile had: blocks round off, thin streets break into pieces;
3. ``shuffled``: the same tiles with their pixels permuted within each tile
   (all shape is gone);
4. ``noise``: independent per-pixel noise with the real per-channel shares
   (no shape, and no tile-to-tile variation either).

A metric that fails it cannot tell a city from noise and is not reported.
``real`` is the metric's floor, ``noise`` its noise ceiling.

``blurred`` and ``shuffled`` both keep every tile's pixel count per channel,
so between them only the arrangement differs, and a metric that sees no more
than channel shares cannot order them. (Blurring and thresholding at one half
instead, as this rung first did, deletes every street one or two pixels wide
at 4 m/px: a change of composition, not of sharpness, which a metric of
composition rightly ranks below shuffling.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

RUNGS = ("real", "blurred", "shuffled", "noise")


def blurred(tiles: np.ndarray, sigma_px: float = 1.5) -> np.ndarray:
    """Each channel Gaussian-blurred within its tile, then 0/1 again with the tile's own pixel count."""
    soft = ndimage.gaussian_filter(tiles.astype(np.float32), sigma=(0, sigma_px, sigma_px, 0), mode="nearest")
    n, h, w, c = tiles.shape
    # Rank of each pixel's blurred value within its tile and channel (0 = most covered; ties in pixel order).
    rank = np.argsort(np.argsort(-soft.reshape(n, h * w, c), axis=1, kind="stable"), axis=1, kind="stable")
    count = tiles.reshape(n, h * w, c).sum(axis=1, keepdims=True, dtype=np.int64)
    return (rank < count).astype(np.uint8).reshape(tiles.shape)


def shuffled(tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixels of each tile permuted (the same permutation for all channels of a tile)."""
    n, h, w, c = tiles.shape
    flat = tiles.reshape(n, h * w, c)
    order = np.argsort(rng.random((n, h * w)), axis=1)
    return np.take_along_axis(flat, order[..., None], axis=1).reshape(tiles.shape)


def noise(tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Independent per-pixel 0/1 noise with each channel's share over all of ``tiles``."""
    share = tiles.reshape(-1, tiles.shape[-1]).mean(axis=0)
    return (rng.random(tiles.shape) < share).astype(np.uint8)


def rungs(tiles: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The four rungs made from ``tiles`` (uint8 (n, t, t, C))."""
    rng = np.random.default_rng(seed)
    return {"real": tiles, "blurred": blurred(tiles), "shuffled": shuffled(tiles, rng), "noise": noise(tiles, rng)}


def holds(scores: dict[str, float]) -> bool:
    """Whether the scores (lower = more real) rise strictly up the ladder."""
    values = [scores[r] for r in RUNGS]
    return bool(all(np.isfinite(values)) and all(a < b for a, b in zip(values, values[1:])))


def climb(score: Callable[[np.ndarray], float], tiles: np.ndarray, seed: int = 0) -> dict[str, float]:
    """``score`` of every rung made from ``tiles``."""
    return {name: float(score(x)) for name, x in rungs(tiles, seed).items()}
