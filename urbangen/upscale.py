"""Lines drawn at a coarse scale, redrawn at a finer one.

The arterial stage draws major roads at 16 m/px; the layouts they go into are
drawn at 4 m/px. Enlarging the coarse pixels would give roads four fine pixels
wide with a staircase at every bend, which real 4 m/px tiles never show. The
coarse mask's centre lines are traced instead (:func:`urbangen.proximity.skeleton_paths`),
smoothed, and drawn again at the fine scale at a major road's width.
"""

from __future__ import annotations

import numpy as np
import shapely
from rasterio.features import rasterize

from data_pipeline.classify import ROAD_WIDTH_M
from urbangen.proximity import skeleton_paths

#: Width a redrawn road is given, metres: a primary road's, as the pipeline draws it.
MAJOR_ROAD_WIDTH_M = ROAD_WIDTH_M["primary"]
#: A centre line ending this close to the coarse grid's edge, coarse pixels, is taken to leave it.
EDGE_PX = 1
#: Holes in a coarse mask smaller than this, coarse pixels, are filled before its centre lines are traced: a
#: blurry field's skeleton rings them with knots of small loops (at 16 m/px, 64 px is a 128 m square), where real
#: major roads close few rings that small.
SMALL_HOLE_PX = 64


def _chaikin(points: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Corner cutting (Chaikin 1974): each step replaces every segment by its 1/4 and 3/4 points, ends kept."""
    for _ in range(iterations):
        if len(points) < 3:
            return points
        a, b = points[:-1], points[1:]
        cut = np.empty((2 * len(a), 2))
        cut[0::2] = 0.75 * a + 0.25 * b
        cut[1::2] = 0.25 * a + 0.75 * b
        points = np.vstack([points[:1], cut, points[-1:]])
    return points


def _fill_small_holes(mask: np.ndarray, min_px: int) -> np.ndarray:
    """``mask`` with its holes (4-connected background pieces not touching its edge) under ``min_px`` filled."""
    from scipy import ndimage

    holes, n = ndimage.label(~mask)
    if not n:
        return mask
    sizes = np.bincount(holes.ravel(), minlength=n + 1)
    edge = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    small = sizes < min_px
    small[0] = False
    small[edge] = False
    return mask | small[holes]


def centre_lines(mask: np.ndarray, factor: int) -> list[shapely.LineString]:
    """The centre lines of a coarse (H, W) 0/1 mask, in fine pixel coordinates (x = column, y = row, pixel
    ``(r, c)`` of the fine grid has its centre at ``(c + 0.5, r + 0.5)``), smoothed."""
    mask = _fill_small_holes(np.asarray(mask, bool), SMALL_HOLE_PX)
    h, w = mask.shape
    lines = []
    for path in skeleton_paths(mask, min_pixels=2):
        rc = np.asarray(path, np.float64)
        xy = (rc[:, ::-1] + 0.5) * factor
        # A line leaving the coarse grid runs on to the fine grid's edge: a skeleton ends up to a pixel
        # short of it, and a border pixel's centre is half a coarse pixel inside it besides.
        for end in (0, -1):
            col_row = rc[end, ::-1]
            xy[end] = np.where(col_row <= EDGE_PX, 0.0, xy[end])
            xy[end] = np.where(col_row >= np.array([w, h]) - 1 - EDGE_PX, np.array([w, h], np.float64) * factor,
                               xy[end])
        # Simplified within half a coarse pixel: the skeleton's staircase goes, its ends (junctions) stay.
        line = shapely.simplify(shapely.LineString(xy), 0.5 * factor) if len(xy) > 1 else shapely.Point(xy[0])
        if isinstance(line, shapely.LineString) and len(line.coords) > 1:
            lines.append(shapely.LineString(_chaikin(np.asarray(line.coords))))
        else:
            lines.append(line)
    return lines


def upscale_lines(mask: np.ndarray, factor: int, width_px: float) -> np.ndarray:
    """A coarse (..., H, W, C) 0/1 line mask redrawn at ``factor`` x the resolution, ``width_px`` fine pixels wide.

    Returns
    -------
    numpy.ndarray
        uint8 (..., H * factor, W * factor, C).
    """
    mask = np.asarray(mask)
    h, w, c = mask.shape[-3:]
    flat = mask.reshape(-1, h, w, c)
    out = np.zeros((len(flat), h * factor, w * factor, c), np.uint8)
    for i, tile in enumerate(flat):
        for j in range(c):
            lines = centre_lines(tile[..., j], factor)
            if lines:
                shapes = shapely.buffer(np.asarray(lines, dtype=object), width_px / 2.0, quad_segs=4)
                out[i, ..., j] = rasterize(((g, 1) for g in shapes), out_shape=(h * factor, w * factor),
                                           dtype=np.uint8)
    return out.reshape(*mask.shape[:-3], h * factor, w * factor, c)

