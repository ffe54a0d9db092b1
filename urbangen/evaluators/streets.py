"""Street connectivity: the share of street pixels in each tile's largest connected piece of network.

A street network that reads as a network is one piece; broken dashes and
isolated blobs are many. The statistic is taken per tile on the union of
the street channels (8-connected), averaged over tiles, for generated
tiles beside real test tiles, and real training tiles beside real test
tiles (the floor: how far two real samples of equal size differ).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from urbangen.evaluators.common import RealTiles
from urbangen.measure import STREET_CHANNELS

#: 8-connectivity: diagonal street pixels touch, as a diagonal street is drawn.
_EIGHT = np.ones((3, 3), bool)


def largest_component_share(tiles: np.ndarray, channels: list[str]) -> np.ndarray:
    """Per tile, street pixels in the largest connected component / all street pixels (NaN without streets)."""
    idx = [channels.index(c) for c in STREET_CHANNELS if c in channels]
    out = np.full(len(tiles), np.nan)
    for i, tile in enumerate(tiles):
        mask = tile[..., idx].any(axis=-1)
        total = int(mask.sum())
        if total == 0:
            continue
        labels, n = ndimage.label(mask, structure=_EIGHT)
        out[i] = np.bincount(labels.ravel())[1:].max() / total
    return out


class StreetConnectivity:
    """Largest-component share of generated tiles against real test tiles, beside real against real."""

    def __init__(self, reference: RealTiles) -> None:
        self.reference = reference

    def run(self, generated: np.ndarray, real: RealTiles, tolerance: float = 0.10) -> dict[str, Any]:
        """``real``: other real tiles (training regions), the floor; ``tolerance``: the target's relative gap."""
        channels = list(self.reference.channels)
        ref = np.nanmean(largest_component_share(self.reference.tiles, channels))
        gen_share = largest_component_share(generated, channels)
        gen = float(np.nanmean(gen_share)) if np.isfinite(gen_share).any() else float("nan")
        floor = float(np.nanmean(largest_component_share(real.tiles, channels)))
        return {"n": int(len(generated)), "real_test": float(ref), "generated": gen, "real_train": floor,
                "relative_gap": float(abs(gen - ref) / ref), "floor_relative_gap": float(abs(floor - ref) / ref),
                "generated_tiles_without_streets": int((~np.isfinite(gen_share)).sum()),
                "target_relative_gap": tolerance, "meets_target": bool(abs(gen - ref) / ref <= tolerance)}
