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

A network can be one piece and still lack what a planner reads a district
by: major roads that run through it. :func:`major_road_reach` takes, per
window, the share of major-road pixels in pieces of major road whose extent
(the diagonal of their bounding box) reaches ``REACH_M``; real 1 km mosaics
of the offline city set score 0.86 to 0.96 (the bar's training and test
mosaics: their arterials cross the window), a layout of scattered
major-road fragments 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from urbangen.evaluators.common import RealTiles
from urbangen.measure import largest_component_share
from urbangen.proximity import EIGHT_NEIGHBOURS

#: A piece of major road this long (its bounding box's diagonal) runs through a district, not along a block.
REACH_M = 500.0
#: Windows with fewer major-road pixels than this have no major road to judge (NaN).
MIN_MAJOR_PX = 20
#: The reach's target gap is twice the floor's, but never below this (as the connectivity target).
MIN_TARGET_GAP = 0.10


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
    windows = _windows(layouts, side)
    ref = float(np.nanmean(largest_component_share(np.stack(test_mosaics), channels)))
    gen = float(np.nanmean(largest_component_share(windows, channels)))
    floor = float(np.nanmean(largest_component_share(np.stack(train_mosaics), channels)))
    return {"window_px": side, "windows": int(len(windows)), "real_test_mosaics": len(test_mosaics),
            "real_train_mosaics": len(train_mosaics), "real_test": ref, "generated": gen, "real_train": floor,
            "relative_gap": abs(gen - ref) / ref, "floor_relative_gap": abs(floor - ref) / ref,
            "target_relative_gap": tolerance, "meets_target": bool(abs(gen - ref) / ref <= tolerance)}


def major_road_reach(windows: np.ndarray, channels: list[str], meters_per_pixel: float,
                     reach_m: float = REACH_M) -> np.ndarray:
    """Per window, the share of major-road pixels in 8-connected pieces of major road whose bounding box's
    diagonal reaches ``reach_m`` (NaN with fewer than ``MIN_MAJOR_PX`` major-road pixels)."""
    out = np.full(len(windows), np.nan)
    if "major_roads" not in channels:
        return out
    k = channels.index("major_roads")
    for i, window in enumerate(windows):
        mask = window[..., k].astype(bool)
        total = int(mask.sum())
        if total < MIN_MAJOR_PX:
            continue
        labels, _ = ndimage.label(mask, structure=EIGHT_NEIGHBOURS)
        sizes = np.bincount(labels.ravel())
        reaching = sum(int(sizes[j + 1]) for j, box in enumerate(ndimage.find_objects(labels))
                       if np.hypot(box[0].stop - box[0].start, box[1].stop - box[1].start) * meters_per_pixel
                       >= reach_m)
        out[i] = reaching / total
    return out


def stitched_major_road_reach(layouts: list[np.ndarray], test_mosaics: list[np.ndarray],
                              train_mosaics: list[np.ndarray], channels: list[str],
                              meters_per_pixel: float) -> dict[str, Any]:
    """:func:`major_road_reach` of stitched layouts in windows of the real mosaics' size, against real test
    mosaics, beside real training mosaics (the floor); windows without major roads are counted apart.

    The target is a relative gap of at most twice the floor's, and never under ``MIN_TARGET_GAP``: few
    real mosaics have major roads (the bar's 1 km test mosaics: 8, scoring 0.96 against the training
    mosaics' 0.86). Where the real test mosaics score 0 or have no major road, there is nothing to
    judge against and ``meets_target`` is None.
    """
    side = test_mosaics[0].shape[0]
    windows = _windows(layouts, side)
    gen_share = major_road_reach(windows, channels, meters_per_pixel)
    gen = _finite_mean(gen_share)
    ref, floor = (_finite_mean(major_road_reach(np.stack(m), channels, meters_per_pixel))
                  for m in (test_mosaics, train_mosaics))
    judged = np.isfinite(ref) and ref > 0
    gap = abs(gen - ref) / ref if judged and np.isfinite(gen) else float("nan")
    floor_gap = abs(floor - ref) / ref if judged and np.isfinite(floor) else float("nan")
    target = max(2 * floor_gap, MIN_TARGET_GAP) if np.isfinite(floor_gap) else float("nan")
    return {"window_px": side, "windows": int(len(windows)), "windows_without_major_roads":
            int((~np.isfinite(gen_share)).sum()), "reach_m": REACH_M, "real_test": ref, "generated": gen,
            "real_train": floor, "relative_gap": gap, "floor_relative_gap": floor_gap,
            "target_relative_gap": target,
            "meets_target": bool(gap <= target) if np.isfinite(target) and judged else None}


def _finite_mean(x: np.ndarray) -> float:
    """The mean of the finite values (NaN, without a warning, when there is none)."""
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def _windows(layouts: list[np.ndarray], side: int) -> np.ndarray:
    """Every whole ``side`` x ``side`` window of each layout, side by side from its top left corner."""
    return np.stack([layout[r:r + side, c:c + side] for layout in layouts
                     for r in range(0, layout.shape[0] - side + 1, side)
                     for c in range(0, layout.shape[1] - side + 1, side)])
