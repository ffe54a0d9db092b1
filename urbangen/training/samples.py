"""Sample grids for logging: one row per example, one column per panel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data_pipeline.render import tile_to_rgb


def panel_grid(panels: Sequence[tuple[np.ndarray, Sequence[str]]], gap: int = 2) -> np.ndarray:
    """Lay out panels side by side: each panel is (tiles (B, H, W, C) in [0, 1], their channel names)."""
    n = len(panels[0][0])
    h, w = panels[0][0].shape[1:3]
    grid = np.full((n * (h + gap) - gap, len(panels) * (w + gap) - gap, 3), 255, np.uint8)
    for j, (tiles, channels) in enumerate(panels):
        for i in range(n):
            grid[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tile_to_rgb(tiles[i], channels)
    return grid
