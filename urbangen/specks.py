"""Specks of water and open space, too small for any map, taken out of what a buildings stage draws.

`city-64`'s buildings stage scatters water and open space in specks of a few
pixels: a blue dot among a suburb's houses where no water was asked for, a
river drawn as ponds and a trail of dots. Real tiles hold small pieces too
(ponds, fountains, slivers of rasterizing; half of the real water pieces
away from a tile's edge are at most 14 pixels), but far fewer. Measured
with 8-connected pieces on three draws of 96 validation tiles of the offline
city set (tile-choice seeds 1 to 3, 16 candidates a tile; 2026-12-06),
generated against the same real tiles: water pieces per tile 0.54 / 0.26 /
0.59 against 0.12 / 0.08 / 0.16, tiles with any water 17 / 8 / 18 against 7
/ 4 / 11; open-space pieces per tile 1.82 / 2.26 / 1.49 against 1.28 / 1.64
/ 1.19.

A chain therefore hands on its buildings stage's kept sample with every piece
of water or open space of at most :data:`MAX_SPECK_M2` (pixels touching at a
corner count as one piece) made empty ground. The sizes were chosen on those
draws as the ones leaving as many pieces as real tiles hold, or nearest it:
water up to 160 m² (10 pixels at 4 m/px) leaves 0.20 / 0.14 / 0.35 pieces a
tile, water in 7 / 4 / 13 tiles, and its share's MAE 0.00048 / 0.00039 /
0.00139 (as drawn 0.00048 / 0.00050 / 0.00150; up to 64 m² left 13 / 6 / 14
tiles with water); open space up to 64 m² leaves 1.07 / 1.28 / 0.96 pieces a
tile, its share's MAE 0.0128 / 0.0118 / 0.0094 (as drawn the same to 0.0002).
Buildings are not touched: real tiles hold as many small buildings as
generated ones (sheds, kiosks: 4.6 pieces of at most 2 pixels away from the
edge a tile on seed 1, against 4.4 generated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from urbangen.proximity import EIGHT_NEIGHBOURS

if TYPE_CHECKING:
    from urbangen.inference import RunSpec

#: The largest piece taken out of each channel, in square metres (water 10 pixels at 4 m/px, 40 at 2 m/px).
MAX_SPECK_M2 = {"water": 160.0, "open_space": 64.0}
#: Channels whose specks are taken out.
SPECK_CHANNELS = tuple(MAX_SPECK_M2)


def without_specks(mask: np.ndarray, meters_per_pixel: float, max_m2: float) -> np.ndarray:
    """``mask`` (H, W) with every 8-connected piece of at most ``max_m2`` made 0 (uint8 0/1)."""
    mask = np.asarray(mask).astype(bool)
    labels, n = ndimage.label(mask, structure=EIGHT_NEIGHBOURS)
    if n == 0:
        return mask.astype(np.uint8)
    sizes = np.bincount(labels.ravel())
    keep = sizes * meters_per_pixel ** 2 > max_m2
    keep[0] = False
    return keep[labels].astype(np.uint8)


def speckless_stage(probs: np.ndarray, layout: np.ndarray | None, spec: RunSpec
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """A chain stage's kept output without specks of water or open space (:func:`without_specks`), when it is
    a thresholded stage that draws them; any other stage's as it is.

    Parameters
    ----------
    probs
        (..., H, W, len(spec.output_channels)) the stage's probabilities.
    layout
        Their 0/1 layout, when already made (None: thresholded here).
    spec
        The stage's run spec.

    Returns
    -------
    tuple
        The probabilities, 0 where a speck was, and the 0/1 layout (as given for a stage this leaves alone).
    """
    out = list(spec.output_channels)
    channels = [c for c in SPECK_CHANNELS if c in out]
    if spec.sampling != "threshold" or not channels:
        return probs, layout
    layout = (np.asarray(probs) > 0.5).astype(np.uint8) if layout is None else np.array(layout, np.uint8)
    probs = np.array(probs, np.float32)
    for tile in np.ndindex(layout.shape[:-3]):
        for name in channels:
            c = out.index(name)
            kept = without_specks(layout[tile][..., c], spec.meters_per_pixel, MAX_SPECK_M2[name])
            gone = (layout[tile][..., c] == 1) & (kept == 0)
            layout[tile + (Ellipsis, c)] = kept
            probs[tile + (Ellipsis, c)] = np.where(gone, 0.0, probs[tile][..., c])
    return probs, layout
