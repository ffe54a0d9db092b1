"""Seams: whether a layout larger than a tile shows where its tiles meet.

A stitched layout is generated in windows one tile wide at half-tile
strides (:mod:`urbangen.generate.sampler`), so any seam lies on a line one
half-tile apart. Along those lines, in strips ``strip_px`` wide, two
statistics are compared with the same statistics everywhere else:

- the change rate: the share of neighbouring pixel pairs across the line
  that differ (a street cut off, a building split, shows as a jump);
- the foreground share: street and building pixels (ghosted, half-agreeing
  tiles thin out where they overlap).

Each is a ratio, strip over elsewhere, and 1 means no seam. Real land has
no seams on those lines, so the same ratios on real mosaics of whole tiles
(the dataset's contiguous blocks, at the same line spacing) are the floor:
the generated ratio's distance from 1 is compared with the largest real one.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from data_pipeline.dataset import TileDataset
from data_pipeline.errors import InvalidValueError
from urbangen import progress
from urbangen.evaluators.common import stitched_layout
from urbangen.measure import STREET_CHANNELS


def mosaic_rows(dataset: TileDataset, indices: np.ndarray, side_tiles: int, limit: int = 16) -> list[np.ndarray]:
    """Up to ``limit`` blocks of ``side_tiles`` x ``side_tiles`` whole tiles side by side: each an int array
    (side, side) of the tiles' row positions in the dataset, as they lie in an image (row 0 the north).

    Only blocks whose every tile is among ``indices`` (one split's tiles) count; blocks do not overlap.
    """
    tiles = dataset.tiles.iloc[np.asarray(indices)]
    tile_m = dataset.tile_px * dataset.meters_per_pixel
    out: list[np.ndarray] = []
    for _, city in tiles.groupby("city"):
        grid = {(int(round(x / tile_m)), int(round(y / tile_m))): int(i)
                for x, y, i in zip(city["x0"], city["y0"], city.index)}
        for (gx, gy) in sorted(grid):
            block = [[grid.get((gx + dx, gy + dy)) for dx in range(side_tiles)] for dy in range(side_tiles)]
            if any(i is None for row in block for i in row):
                continue
            # North up: higher y is higher in the image.
            out.append(np.array([[dataset.tiles.index.get_loc(i) for i in row] for row in block[::-1]]))
            for (ux, uy) in [(gx + dx, gy + dy) for dx in range(side_tiles) for dy in range(side_tiles)]:
                grid.pop((ux, uy), None)
            if len(out) >= limit:
                return out
    return out


def mosaic_of(tiles: np.ndarray) -> np.ndarray:
    """Tiles (side, side, t, t, ...) laid out as one image (side * t, side * t, ...)."""
    side, _, t = tiles.shape[:3]
    return tiles.swapaxes(1, 2).reshape(side * t, side * t, *tiles.shape[4:])


def tiles_of(mosaic: np.ndarray, side: int) -> np.ndarray:
    """A mosaic (side * t, side * t, ...) cut into its tiles (side * side, t, t, ...), row by row: the inverse
    of :func:`mosaic_of`."""
    t = mosaic.shape[0] // side
    return mosaic.reshape(side, t, side, t, *mosaic.shape[2:]).swapaxes(1, 2).reshape(side * side, t, t,
                                                                                     *mosaic.shape[2:])


def mosaic_side(dataset: TileDataset, indices: np.ndarray) -> int:
    """Tiles a side of the mosaics the stitched evaluators compare: 4 (1 km at 64 px and 4 m/px, what a chain's
    arterial stage needs) where ``indices`` hold such a block, else 2."""
    return 4 if mosaic_rows(dataset, indices, 4, limit=1) else 2


def real_mosaics(dataset: TileDataset, indices: np.ndarray, side_tiles: int, limit: int = 16) -> list[np.ndarray]:
    """Up to ``limit`` real mosaics of ``side_tiles`` x ``side_tiles`` whole tiles side by side (north up):
    the pixels of :func:`mosaic_rows`' blocks."""
    out = []
    for rows in mosaic_rows(dataset, indices, side_tiles, limit):
        arr = dataset.read_tiles(rows.ravel())
        out.append(mosaic_of(arr.reshape(side_tiles, side_tiles, *arr.shape[1:])).astype(np.uint8))
    return out


def seam_sums(layout: np.ndarray, channels: list[str], period: int, strip_px: int = 2) -> np.ndarray:
    """Pooled sums behind :func:`seam_ratios`: (change on lines, lines, change elsewhere, other pixel lines,
    foreground near lines, pixels near lines, foreground elsewhere, pixels elsewhere)."""
    fg_idx = [channels.index(c) for c in (*STREET_CHANNELS, "buildings") if c in channels]
    h, w = layout.shape[:2]
    x = layout.astype(np.int8)
    # Change across the line between pixel k-1 and k, for vertical (columns) and horizontal (rows) lines.
    change = np.concatenate([(x[:, 1:] != x[:, :-1]).mean(axis=(0, 2)), (x[1:] != x[:-1]).mean(axis=(1, 2))])
    on = np.zeros(change.shape, bool)
    on[[k - 1 for k in range(period, w, period)]] = True
    on[[w - 1 + k - 1 for k in range(period, h, period)]] = True
    fg: np.ndarray = np.any(layout[..., fg_idx], axis=-1)
    near = np.zeros((h, w), bool)
    for k in range(period, w, period):
        near[:, max(0, k - strip_px):k + strip_px] = True
    for k in range(period, h, period):
        near[max(0, k - strip_px):k + strip_px, :] = True
    return np.array([change[on].sum(), on.sum(), change[~on].sum(), (~on).sum(),
                     fg[near].sum(), near.sum(), fg[~near].sum(), (~near).sum()], np.float64)


def _ratios(sums: np.ndarray) -> dict[str, float]:
    on, n_on, off, n_off, fg_near, n_near, fg_far, n_far = sums
    return {"change_rate_ratio": float((on / n_on) / max(off / n_off, 1e-12)),
            "foreground_share_ratio": float((fg_near / n_near) / max(fg_far / n_far, 1e-12))}


def seam_ratios(layout: np.ndarray, channels: list[str], period: int, strip_px: int = 2) -> dict[str, float]:
    """Change rate and foreground share in strips along lines every ``period`` px, over the same elsewhere."""
    return _ratios(seam_sums(layout, channels, period, strip_px))


class Seams:
    """Seam ratios of stitched generated layouts beside those of real mosaics."""

    def __init__(self, mosaics: list[np.ndarray], channels: list[str], period: int) -> None:
        if not mosaics:
            raise InvalidValueError("no real mosaic of whole tiles side by side: the seam floor needs contiguous tiles")
        self.channels = channels
        self.period = period
        self.real_sums = [seam_sums(m, channels, period) for m in mosaics]
        self.mosaic_px = list(mosaics[0].shape[:2])

    def real_groups(self, lines: float) -> list[dict[str, float]]:
        """Ratios of real mosaics pooled into groups of about ``lines`` seam lines each (the generated count):
        the floor's noise at the generated layouts' sample size."""
        # At most all mosaics in one group: with few real mosaics the floor is one pooled ratio.
        per = min(len(self.real_sums), max(1, int(round(lines / max(self.real_sums[0][1], 1)))))
        groups = [self.real_sums[i:i + per] for i in range(0, len(self.real_sums) - per + 1, per)]
        return [_ratios(np.sum(g, axis=0)) for g in groups]

    def run(self, model: Any, fields: np.ndarray, samples: int = 2, seed: int = 0) -> dict[str, Any]:
        """Generate ``samples`` layouts of ``fields`` (H, W, P, in the model's parameter order) and compare."""
        gen_sums = []
        layouts = []
        for s in range(samples):
            full = stitched_layout(model, fields, jax.random.fold_in(jax.random.key(seed), s),
                                   np.random.default_rng([seed, s]), self.channels)
            layouts.append(full)
            gen_sums.append(seam_sums(full, self.channels, self.period))
            progress.report("stitched layouts of one request", s + 1, samples)
        out: dict[str, Any] = {"layout_px": list(fields.shape[:2]), "line_spacing_px": self.period,
                               "samples": samples, "real_mosaics": len(self.real_sums),
                               "real_mosaic_px": self.mosaic_px, "metrics": {}}
        pooled = np.sum(gen_sums, axis=0)
        gen = _ratios(pooled)
        groups = self.real_groups(pooled[1])
        out["real_groups"] = len(groups)
        for name in ("change_rate_ratio", "foreground_share_ratio"):
            g = gen[name]
            real = np.array([r[name] for r in groups])
            floor = float(np.max(np.abs(real - 1.0)))
            out["metrics"][name] = {"generated": g, "generated_distance_from_1": abs(g - 1.0),
                                    "real_mean": float(real.mean()), "floor_distance_from_1": floor,
                                    "within_floor": bool(abs(g - 1.0) <= floor)}
        out["layouts"] = layouts
        return out
