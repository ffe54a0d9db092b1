"""The form of footprints and streets: straight-sided buildings and streets that share a grid.

A generator can match every per-tile parameter, coverage, footprint counts,
intersections, and still draw what no planner takes for a town: ragged
blobs of building and streets that wander in every direction. A real
district's footprints are compact, nearly rectangular shapes, and its
buildings and streets keep to one or two grids: their edges run along a few
shared directions. Three per-tile statistics measure that:

- ``footprint_rectangularity``: per footprint (a 4-connected piece of the
  building channel, as :func:`urbangen.vectorize.polygons` reads them, of
  at least ``MIN_FOOTPRINT_PX`` pixels), its area over the area of its
  smallest enclosing rectangle at any angle (1 for a rectangle, lower for
  ragged or branching shapes), averaged weighted by area;
- ``building_alignment`` and ``street_alignment``: how far the edges of the
  building channel, and of every street channel together, keep to one
  grid: the four-fold orientation order ``|sum m exp(4 i phi)| / sum m``
  of the mask's gradient (``phi`` its direction, ``m`` its magnitude, on the
  mask smoothed by a Gaussian of ``SMOOTH_PX``). Edges at right angles to
  each other count as one direction, so a grid at any angle scores near 1
  and edges in every direction near 0.

A tile with fewer than ``MIN_PIXELS`` pixels of a statistic's channels (or
no footprint of ``MIN_FOOTPRINT_PX``) has none. Each is compared with the
real test tiles' beside the floor by :func:`urbangen.evaluators.per_tile.compare`.
Measured on 96 validation tiles of the offline city set, `city-64` of
2026-12-03 drew footprints of rectangularity 0.63 against real 0.69
(W1 3.0 x its floor), building alignment 0.09 against 0.38 (4.8 x) and
street alignment 0.38 against 0.53 (8.3 x): what its stitched layouts show.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from scipy import ndimage

from data_pipeline.errors import InvalidValueError
from urbangen.evaluators.common import RealTiles
from urbangen.evaluators.per_tile import compare
from urbangen.proximity import STREET_CHANNELS

STATISTICS = ("footprint_rectangularity", "building_alignment", "street_alignment")
#: Footprints smaller than this, pixels (128 m² at 4 m/px, a small house), are left out: at a few pixels every
#: shape is nearly a rectangle, and per-pixel noise's pieces would score as real footprints (at 4 px, the
#: sanity ladder's shuffled tiles scored 0.97 x the floor on real Østerbro and Kennesaw tiles; at 8 px,
#: on 96 validation tiles of the offline city set, shuffled 8.4 x, noise 7.4 x, blurred 1.35 x).
MIN_FOOTPRINT_PX = 8
#: A tile needs at least this many pixels of a channel for its alignment.
MIN_PIXELS = 8
#: Gaussian smoothing, pixels, before the gradient: a staircase along a slanted edge then points across the edge.
SMOOTH_PX = 1.0
_FOUR = ndimage.generate_binary_structure(2, 1)
#: A pixel's four corners, (x, y) offsets from its top-left corner.
_CORNERS = np.array([(0, 0), (1, 0), (0, 1), (1, 1)], np.float64)


def footprint_rectangularity(buildings: np.ndarray) -> float:
    """Area-weighted mean over the footprints of an (H, W) 0/1 mask of area over smallest enclosing rectangle's
    area (NaN without a footprint of ``MIN_FOOTPRINT_PX``)."""
    labels, n = ndimage.label(np.asarray(buildings, bool), structure=_FOUR)
    if not n:
        return float("nan")
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    rows, cols = np.nonzero(labels)
    piece = labels[rows, cols] - 1
    keep = areas[piece] >= MIN_FOOTPRINT_PX
    if not keep.any():
        return float("nan")
    order = np.argsort(piece[keep], kind="stable")  # shapely.multipoints wants its indices in order
    rows, cols, piece = rows[keep][order], cols[keep][order], piece[keep][order]
    corners = (np.stack([cols, rows], axis=1)[:, None, :] + _CORNERS[None]).reshape(-1, 2)
    kept, dense = np.unique(piece, return_inverse=True)  # shapely.multipoints numbers its geometries 0, 1, ...
    envelopes = shapely.oriented_envelope(shapely.multipoints(corners, indices=np.repeat(dense, 4)))
    ratio = areas[kept] / shapely.area(envelopes)
    return float(np.sum(areas[kept] * ratio) / np.sum(areas[kept]))


def edge_alignment(mask: np.ndarray) -> float:
    """Four-fold orientation order of an (H, W) 0/1 mask's edges, 0 to 1 (NaN under ``MIN_PIXELS`` pixels)."""
    mask = np.asarray(mask, bool)
    if mask.sum() < MIN_PIXELS:
        return float("nan")
    smooth = ndimage.gaussian_filter(mask.astype(np.float64), SMOOTH_PX)
    gy, gx = ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)
    magnitude = np.hypot(gx, gy)
    total = magnitude.sum()
    if total == 0:
        return float("nan")
    return float(abs(np.sum(magnitude * np.exp(4j * np.arctan2(gy, gx)))) / total)


def form_statistics(tiles: np.ndarray, channels: list[str]) -> np.ndarray:
    """Per tile, ``footprint_rectangularity``, ``building_alignment`` and ``street_alignment`` (see the module).

    Returns
    -------
    numpy.ndarray
        (len(tiles), 3), NaN where a tile has none.

    Raises
    ------
    InvalidValueError
        If ``channels`` lack the buildings channel or every street channel.
    """
    streets = [channels.index(c) for c in STREET_CHANNELS if c in channels]
    if "buildings" not in channels or not streets:
        raise InvalidValueError(f"the form of footprints and streets needs a buildings channel and a street channel; "
                                f"got {channels}")
    b = channels.index("buildings")
    out = np.full((len(tiles), len(STATISTICS)), np.nan)
    for i, tile in enumerate(tiles):
        out[i] = (footprint_rectangularity(tile[..., b]), edge_alignment(tile[..., b]),
                  edge_alignment(tile[..., streets].any(axis=-1)))
    return out


class FootprintAndStreetForm:
    """The form of generated footprints and streets, against real test tiles, beside real against real."""

    def __init__(self, reference: RealTiles) -> None:
        self.reference = reference

    def run(self, generated: np.ndarray, real: RealTiles, seed: int = 0, tolerance: float = 2.0) -> dict[str, Any]:
        """``real``: as many real tiles from other ground (training regions), the floor; ``tolerance``: the
        target, in floors, for each statistic's W1 (see :func:`urbangen.evaluators.per_tile.compare`)."""
        channels = list(self.reference.channels)
        statistics = compare(lambda tiles: form_statistics(tiles, channels), STATISTICS, self.reference,
                             generated, real, seed=seed, tolerance=tolerance)
        return {"n": int(len(generated)), "min_footprint_px": MIN_FOOTPRINT_PX, "statistics": statistics}
