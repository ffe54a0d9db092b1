"""Street connectivity: the share of street pixels in each tile's largest connected piece of network.

A street network that reads as a network is one piece; broken dashes and
isolated blobs are many. The statistic is taken per tile on the union of
the street channels (8-connected), averaged over tiles, for generated
tiles beside real test tiles, and real training tiles beside real test
tiles (the floor: how far two real samples of equal size differ).

A stitched layout larger than a tile is judged the same way at a larger
scale (:func:`stitched_connectivity`): cut into windows the size of the
real mosaics of whole tiles beside it, where a network broken where its
tiles overlap shows, though every tile of it is whole.
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


def stitched_connectivity(layouts: list[np.ndarray], test_mosaics: list[np.ndarray],
                          train_mosaics: list[np.ndarray], channels: list[str],
                          tolerance: float = 0.10) -> dict[str, Any]:
    """Largest-component share of stitched layouts, in windows the size of real mosaics, against those mosaics.

    Parameters
    ----------
    layouts
        Generated 0/1 layouts (H, W, len(channels)), each cut into as many
        whole windows of the mosaics' size as fit.
    test_mosaics, train_mosaics
        Real mosaics of whole tiles from the test regions (the reference)
        and from the training regions (the floor), of one size.
    tolerance
        The target's relative gap.
    """
    side = test_mosaics[0].shape[0]
    windows = np.stack([layout[r:r + side, c:c + side] for layout in layouts
                        for r in range(0, layout.shape[0] - side + 1, side)
                        for c in range(0, layout.shape[1] - side + 1, side)])
    ref = float(np.nanmean(largest_component_share(np.stack(test_mosaics), channels)))
    gen = float(np.nanmean(largest_component_share(windows, channels)))
    floor = float(np.nanmean(largest_component_share(np.stack(train_mosaics), channels)))
    return {"window_px": side, "windows": int(len(windows)), "real_test_mosaics": len(test_mosaics),
            "real_train_mosaics": len(train_mosaics), "real_test": ref, "generated": gen, "real_train": floor,
            "relative_gap": abs(gen - ref) / ref, "floor_relative_gap": abs(floor - ref) / ref,
            "target_relative_gap": tolerance, "meets_target": bool(abs(gen - ref) / ref <= tolerance)}
