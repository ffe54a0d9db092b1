"""Summarize a dataset: the ``urbangen data show`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from data_pipeline.dataset import ATTRIBUTION, TileDataset
from data_pipeline.render import save_mosaic

#: Parameters in the summary, with a short column header each.
SUMMARY_PARAMETERS = {
    "building_coverage": "coverage",
    "intersection_density_per_km2": "isect/km2",
    "cycle_foot_share": "cycle/foot",
    "major_road_share": "major",
    "orientation_entropy": "entropy",
    "open_space_share": "open",
}


def summary_table(dataset: TileDataset) -> Table:
    """Per-city tile counts and median parameters (NaN shown as 'unknown').

    Columns: building coverage, intersections per km2, cycle/foot share of
    street length, major road share, orientation entropy (nats), open space share.
    """
    m = dataset.manifest
    table = Table(
        title=f"{dataset.path}  ({m['n_tiles']} tiles, {m['tiling']['tile_px']} px at "
        f"{m['tiling']['meters_per_pixel']} m/px)",
        caption=ATTRIBUTION,
    )
    table.add_column("city", no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("tiles", justify="right")
    for header in SUMMARY_PARAMETERS.values():
        table.add_column(header, justify="right")
    for city, info in m["cities"].items():
        rows = dataset.tiles[dataset.tiles["city"] == city]
        medians = [rows[p].median() for p in SUMMARY_PARAMETERS]
        table.add_row(
            city,
            str(info["source"]),
            str(len(rows)),
            *("unknown" if np.isnan(v) else f"{v:.3g}" for v in medians),
        )
    return table


def show_dataset(dataset: TileDataset, png: str | Path | None = None, n_samples: int = 12, seed: int = 0) -> Path:
    """Print the summary and write a PNG mosaic of sample tiles (default ``DIR/mosaic.png``)."""
    Console().print(summary_table(dataset))
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(dataset), size=min(n_samples, len(dataset)), replace=False))
    titles = [f"{dataset.tiles.iloc[i]['tile_id']}" for i in picks]
    png = Path(png) if png else dataset.path / "mosaic.png"
    return save_mosaic(
        dataset.read_tiles(picks),
        dataset.channels,
        png,
        titles=titles,
        meters_per_pixel=dataset.meters_per_pixel,
        suptitle=f"Sample tiles of {dataset.path.name}",
    )
