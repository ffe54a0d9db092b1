"""Colour pictures of tiles, with a legend and the OSM attribution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_pipeline.dataset import ATTRIBUTION

#: Drawing order (later on top) and colour of each channel.
CHANNEL_COLOURS: dict[str, tuple[int, int, int]] = {
    "water": (120, 170, 230),
    "open_space": (170, 215, 150),
    "minor_roads": (150, 150, 150),
    "major_roads": (230, 140, 40),
    "cycle_foot": (220, 40, 60),
    "buildings": (60, 60, 70),
}


def legend_colour(channel: str) -> str:
    """A channel's colour as matplotlib takes it (``#rrggbb``)."""
    return "#{:02x}{:02x}{:02x}".format(*CHANNEL_COLOURS[channel])


BACKGROUND = (250, 248, 240)


def tile_to_rgb(tile: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """Blend a (H, W, C) tile of channel values in [0, 1] into a uint8 RGB image."""
    tile = np.asarray(tile, dtype=np.float32)
    rgb = np.broadcast_to(np.array(BACKGROUND, np.float32), tile.shape[:2] + (3,)).copy()
    for name, colour in CHANNEL_COLOURS.items():
        if name in channels:
            alpha = np.clip(tile[..., list(channels).index(name)], 0.0, 1.0)[..., None]
            rgb = rgb * (1.0 - alpha) + np.array(colour, np.float32) * alpha
    return rgb.round().astype(np.uint8)


def save_mosaic(
    tiles: np.ndarray,
    channels: Sequence[str],
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    meters_per_pixel: float | None = None,
    columns: int = 4,
    suptitle: str | None = None,
) -> Path:
    """Write a grid of tiles as a PNG with a channel legend, a scale note and the attribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n = len(tiles)
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.3 * rows + 1.0), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(tile_to_rgb(tiles[k], channels), interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[k], fontsize=8)
    handles = [Patch(color=legend_colour(name), label=name) for name in CHANNEL_COLOURS if name in channels]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    note = ATTRIBUTION
    if meters_per_pixel is not None:
        side = tiles.shape[1] * meters_per_pixel
        note = f"each tile {side:.0f} m x {side:.0f} m ({meters_per_pixel:g} m/px), north up.   {ATTRIBUTION}"
    fig.text(0.5, 0.005, note, ha="center", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    bottom = 0.9 / (3.3 * rows + 1.0)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - bottom * 0.8, bottom=bottom, wspace=0.05, hspace=0.15)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
