"""Benchmark: build the Lyngby extract into tiles, against matplotlib figure-ground rendering.

Prints km2/s, tiles/s and peak memory of ``build_dataset`` on Lyngby (about
36 km2), then renders samples of the same tiles (1) with osmnx's own plotting
functions, as its figure-ground plots do, and (2) with a lean matplotlib
renderer that draws only the geometries touching each tile; prints the ratio of
tiles per second against each. Needs ``URBANGEN_OSM_DIR``.

    python benchmarks/bench_pipeline.py [--reference-tiles 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("URBANGEN_NO_PROGRESS", "1")

from benchmarks._common import peak_rss_mb, write_results  # noqa: E402
from data_pipeline.build import CitySpec, build_dataset  # noqa: E402
from data_pipeline.config import TilingConfig  # noqa: E402
from data_pipeline.grid import project_to_utm  # noqa: E402
from data_pipeline.sources import read_osm_file  # noqa: E402
from urbangen.settings import osm_file  # noqa: E402

LYNGBY = "copenhagen_lyngby/lyngby_osm_bbox.osm.xml.gz"


def osmnx_figure_ground_tiles(features, bounds: np.ndarray, config: TilingConfig) -> list[np.ndarray]:
    """Render tiles with osmnx's own plotting: ``plot_footprints`` and ``plot_graph`` per tile.

    The street graph is the unsimplified one osmnx builds from OSM (one edge
    per pair of consecutive way vertices), with osmnx-style street widths.
    """
    import geopandas as gpd
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import osmnx as ox
    import pandas as pd
    import shapely

    streets = features.streets
    xy, line = shapely.get_coordinates(streets.geometry.values, return_index=True)
    keys, node = np.unique(np.round(xy, 3), axis=0, return_inverse=True)
    node = node.ravel()
    same = line[1:] == line[:-1]
    u, v = node[:-1][same], node[1:][same]
    key = pd.DataFrame({"u": u, "v": v}).groupby(["u", "v"]).cumcount().to_numpy()  # parallel edges
    nodes = gpd.GeoDataFrame({"x": keys[:, 0], "y": keys[:, 1]}, geometry=shapely.points(keys), crs=features.crs)
    edges = gpd.GeoDataFrame(
        {"highway": streets["highway"].to_numpy()[line[:-1][same]]},
        geometry=shapely.linestrings(np.stack([xy[:-1][same], xy[1:][same]], axis=1)),
        index=pd.MultiIndex.from_arrays([u, v, key], names=["u", "v", "key"]),
        crs=features.crs,
    )
    graph = ox.convert.graph_from_gdfs(nodes, edges)
    px, dpi = config.tile_px, 100
    points_per_m = px / config.tile_m * 72.0 / dpi
    widths = [config.road_width(h) * points_per_m for _, _, h in graph.edges(data="highway")]
    buildings = gpd.GeoDataFrame(geometry=features.buildings, crs=features.crs)
    out = []
    for x0, y0, x1, y1 in bounds:
        fig, ax = plt.subplots(figsize=(px / dpi, px / dpi), dpi=dpi)
        ox.plot_footprints(buildings, ax=ax, bbox=(x0, y0, x1, y1), color="#3c3c46", show=False, close=False)
        ox.plot_graph(graph, ax=ax, bbox=(x0, y0, x1, y1), node_size=0, edge_color="#969696",
                      edge_linewidth=widths, show=False, close=False)
        fig.canvas.draw()
        out.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return out


def matplotlib_tiles(features, bounds: np.ndarray, config: TilingConfig) -> list[np.ndarray]:
    """A lean matplotlib renderer: only the geometries that touch each tile, one figure per tile."""
    import geopandas as gpd
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shapely

    px = config.tile_px
    dpi = 100
    points_per_m = px / config.tile_m * 72.0 / dpi
    streets = features.streets
    widths = np.array([config.road_width(h) for h in streets["highway"]]) * points_per_m
    layers = [(features.water, "#78aae6"), (features.open_space, "#aad796"), (features.buildings, "#3c3c46")]
    out = []
    for x0, y0, x1, y1 in bounds:
        box = shapely.box(x0, y0, x1, y1)
        fig = plt.figure(figsize=(px / dpi, px / dpi), dpi=dpi)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        for layer, colour in layers:
            sel = layer[layer.intersects(box)]
            if len(sel):
                gpd.GeoSeries(sel).plot(ax=ax, color=colour, linewidth=0)
        hit = streets.intersects(box).to_numpy()
        if hit.any():
            streets[hit].plot(ax=ax, color="#969696", linewidth=widths[hit])
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        fig.canvas.draw()
        out.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference-tiles", type=int, default=16, help="tiles rendered with lean matplotlib")
    parser.add_argument("--osmnx-tiles", type=int, default=6, help="tiles rendered with osmnx's plotting")
    args = parser.parse_args()
    path = osm_file(LYNGBY)
    config = TilingConfig()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = build_dataset([CitySpec("lyngby", osm_file=str(path))], Path(tmp) / "lyngby", config)
        ours_s = time.perf_counter() - t0
        n_tiles = len(ds)
    area_km2 = n_tiles * (config.tile_m / 1000.0) ** 2
    peak = peak_rss_mb()

    features = project_to_utm(read_osm_file(path))
    rng = np.random.default_rng(0)
    sample = rng.choice(n_tiles, size=min(args.reference_tiles, n_tiles), replace=False)
    bounds = ds.tiles[["x0", "y0", "x1", "y1"]].to_numpy()[sample]
    t0 = time.perf_counter()
    rendered = osmnx_figure_ground_tiles(features, bounds[: args.osmnx_tiles], config)
    ref_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lean = matplotlib_tiles(features, bounds, config)
    lean_s = time.perf_counter() - t0
    assert rendered[0].shape[:2] == lean[0].shape[:2] == (config.tile_px, config.tile_px)

    ours_tps = n_tiles / ours_s
    ref_tps = len(rendered) / ref_s
    lean_tps = len(lean) / lean_s
    ratio = ours_tps / ref_tps
    results = {
        "extract": LYNGBY,
        "tiles": n_tiles,
        "area_km2": area_km2,
        "urbangen_build_s": ours_s,
        "urbangen_km2_per_s": area_km2 / ours_s,
        "urbangen_tiles_per_s": ours_tps,
        "peak_rss_mb": peak,
        "osmnx_figure_ground_tiles": len(rendered),
        "osmnx_figure_ground_s": ref_s,
        "osmnx_figure_ground_tiles_per_s": ref_tps,
        "speedup_vs_osmnx_figure_ground": ratio,
        "lean_matplotlib_tiles": len(lean),
        "lean_matplotlib_s": lean_s,
        "lean_matplotlib_tiles_per_s": lean_tps,
        "speedup_vs_lean_matplotlib": ours_tps / lean_tps,
        "note": "urbangen time is the whole build (read, parameters, rasterize, write); "
        "the matplotlib reference renders already-read features only.",
    }
    print(f"Lyngby: {n_tiles} tiles, {area_km2:.1f} km2 in {ours_s:.2f} s "
          f"-> {area_km2 / ours_s:.2f} km2/s, {ours_tps:.1f} tiles/s, peak RSS {peak:.0f} MiB")
    print(f"osmnx figure-ground (plot_footprints + plot_graph): {len(rendered)} tiles in {ref_s:.2f} s "
          f"-> {ref_tps:.2f} tiles/s")
    print(f"ratio vs osmnx figure-ground: {ratio:.1f}x  (target >= 20x)")
    print(f"lean clipped matplotlib: {len(lean)} tiles in {lean_s:.2f} s -> {lean_tps:.2f} tiles/s; "
          f"ratio {ours_tps / lean_tps:.1f}x")
    print(f"results: {write_results('pipeline', results)}")


if __name__ == "__main__":
    main()
