"""Whole regions in blocks: a city is read once as a stream, then built block by block, each with bounded memory.

A blocked city is built in three steps, each its own task:

1. :func:`plan_city` streams the OSM file (pyosmium, :func:`data_pipeline.sources.iter_osm_chunks`)
   in chunks, classifies each chunk once and appends its features to one Arrow IPC
   file per kind (streets, areas), with each row's bounding box. From the chunks
   alone it finds what a whole-city build finds from the whole city: the UTM zone,
   the coverage (declared, given, or estimated from per-cell way counts that add
   up chunk by chunk, counted as the chunks are read), and the grid's candidate
   tiles. It cuts the candidates into square blocks of whole tiles, from their corner.
2. :func:`build_block` reads only the rows near one block (the block's tiles plus
   ``margin_m`` on every side, grown until every street edge near the tiles ends
   inside it; the streets read :data:`READ_AHEAD_M` beyond, for the growths),
   builds the drive graph from the chains that meet the tiles and
   :data:`GRAPH_MARGIN_M` around them, and tests, measures and rasterizes
   the block's tiles from the features that cross them, as a whole-city build would.
3. :func:`join_blocks` puts the blocks' tiles back in the grid's order as one city
   part, linking each tile's compressed file rather than writing it again.

Memory per task then follows the block's size (and the plan's, the chunk's), not
the region's, but for what the plan keeps of the whole region: osmium's node
location index (a few bytes a node) and the coverage cell counts (a few dozen
bytes a 250 m cell). The result is the whole-city build's, byte for byte
(tested on the largest shared extract). The drive-network summary of a blocked city counts the
network inside the box each block's tiles fill (``drive_network.scope``), not every way in the file.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import socket
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from data_pipeline import classify, sources
from data_pipeline.atomic import PartialDir
from data_pipeline.city import (
    PART_COVERAGE,
    PART_RASTERS,
    CityPartResult,
    CitySpec,
    Reporter,
    coverage_vertices,
    current_rss_mb,
    finish_part,
    older_objects_frozen,
    peak_rss_mb,
    release_freed_memory,
    reset_peak_rss,
)
from data_pipeline.config import TilingConfig
from data_pipeline.coverage import WGS84, Coverage, add_cell_counts, cell_way_counts, coverage_from_cell_counts
from data_pipeline.dataset import COVERAGE, create_raster_array, link_or_copy
from data_pipeline.errors import DatasetError, InvalidValueError, NoStreetsError, OSMFileNotFoundError
from data_pipeline.features import LAYERS, NODES_COLUMN, OSMFeatures, features_from_tagged_frame
from data_pipeline.grid import CandidateTiles, candidate_tiles, has_streets, utm_crs
from data_pipeline.parameters import PARAMETERS, drive_graph, tile_parameters
from data_pipeline.rasterize import rasterize_tiles
from data_pipeline.street_graph import bearing_counts, intersection_clusters, intersection_members

#: Default ground read around a block, beyond a city block and the street edges that end in it
#: (the blocked Lyngby equals the whole-city build with it; see tests/test_scale.py).
DEFAULT_MARGIN_M = 256.0
#: OSM ways and areas per chunk of a plan's read: a fifth of a whole-file read's
#: (:data:`data_pipeline.sources.CHUNK_OBJECTS`), as a chunk's tag frames and their
#: classification are most of the plan's memory (Lyngby: 73 to 89 MiB above the
#: process at 10,000, 35 to 45 at 2,000, 33 to 44 at 1,000 with more time per chunk).
CHUNK_OBJECTS = 2_000
#: A block's drive graph is built from the chains of ways that meet its tiles or this much ground around them:
#: enough for the intersection clusters of its tiles (a cluster reaching from the tiles to within two
#: tolerances of this box's edge has the graph built from every way read instead).
GRAPH_MARGIN_M = 128.0
#: A block's streets are read for its box and this much ground around it, so that its box's growths (by the
#: chains of the ways read) are mostly served from memory: each read decodes the whole store (Lyngby's streets,
#: read as asked, 32 times for its 15 blocks; 512 m ahead, 22 times for 13 blocks; 1024 m ahead, once a block).
READ_AHEAD_M = 1024.0


def can_block(city: CitySpec) -> bool:
    """Whether a city's source can be built in blocks: a local OSM file (GraphML and downloads cannot)."""
    return city.osm_file is not None and not str(city.osm_file).endswith(sources.GRAPHML_SUFFIXES)


@dataclass(frozen=True)
class CityPlan:
    """What :func:`plan_city` found: the city's CRS, coverage, candidate tiles and blocks.

    ``blocks[b]`` are indices into ``candidates`` (ascending), ``tile_areas[b]``
    the box ``(x0, y0, x1, y1)`` their tiles fill (projected), ``block_keys[b]`` its
    square of the block grid (``block_m`` squares from ``block_origin``, projected).
    """

    city: CitySpec
    crs: str
    coverage: Coverage  # projected
    candidates: CandidateTiles
    block_m: float
    block_origin: tuple[float, float]
    blocks: list[np.ndarray]
    block_keys: list[tuple[int, int]]
    tile_areas: list[tuple[float, float, float, float]]
    margin_m: float
    chunks_dir: str
    source: str
    timestamp: str | None
    extent: tuple | None
    layers_known: dict[str, bool]
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    own_peak_mb: float = 0.0


def _median_zone(zone_counts: Counter, north: int, south: int) -> tuple[int, bool]:
    """The UTM zone and hemisphere of the median street vertex, from counts per zone (exact but for a tie
    between two zones at the median of an even count, where the upper one is taken)."""
    n = sum(zone_counts.values())
    target, seen = n // 2, 0
    for zone in sorted(zone_counts):
        seen += zone_counts[zone]
        if seen > target:
            return zone, north >= south
    raise NoStreetsError("no street vertices")  # pragma: no cover - checked before


@dataclass
class _ReadTally:
    """What :func:`plan_city`'s one pass adds up chunk by chunk: street vertices per UTM zone and
    hemisphere, whether any street or building was read, the chunks written, and (when the coverage is to
    be estimated) per-cell way counts in the UTM CRS of every zone and hemisphere that a chunk's street and
    building vertices lie in."""

    cell_m: float | None = None
    #: Whether the street vertices are counted per zone (not when the city's area, and so its CRS, is known
    #: before the file is read: a third of a second of Lyngby's build, 4.9 s whole).
    count_zones: bool = True
    zones: Counter = field(default_factory=Counter)
    north: int = 0
    south: int = 0
    any_street: bool = False
    any_building: bool = False
    n_chunks: int = 0
    #: Per UTM CRS, the counts of the chunks ``counted`` in it: a sum and the chunks' counts not yet in it.
    #: They are summed when the waiting ones hold as many rows as the sum (a chunk of ways in id order
    #: reaches cells all over the region, so keeping each chunk's would grow with the region, and summing
    #: at every chunk would cost the region's cells each time).
    cells: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    counted: dict[str, set[int]] = field(default_factory=dict)
    #: Chunks with no street or building vertex (relations' areas at a file's end): counted in every CRS.
    no_points: set[int] = field(default_factory=set)

    def add(self, chunk: OSMFeatures) -> None:
        self.any_street |= bool((chunk.streets["street_class"] != "other").any())
        self.any_building |= bool(len(chunk.buildings))
        if not self.count_zones and self.cell_m is None:
            self.n_chunks += 1
            return
        points, owners = coverage_vertices(chunk)
        zone = np.minimum(((points[:, 0] + 180.0) // 6.0).astype(np.int64) + 1, 60)
        north = points[:, 1] >= 0
        street = owners < len(chunk.streets)
        self.zones.update(dict(zip(*np.unique(zone[street], return_counts=True))))
        self.north += int(north[street].sum())
        self.south += int((~north[street]).sum())
        if self.cell_m is not None:
            # The city's CRS is known only once every chunk is read. It is usually the zone of each chunk's own
            # street and building vertices, so counting each chunk in those zones spares a second read of the
            # chunks (plan_city reads again those with no vertex in the city's zone and hemisphere).
            if not len(points):
                self.no_points.add(self.n_chunks)
            for z, is_north in set(zip(zone.tolist(), north.tolist())):
                crs = _utm_epsg(z, is_north)
                self.add_cells(crs, self.n_chunks, _cell_counts(points, owners, crs, self.cell_m))
        self.n_chunks += 1

    def add_cells(self, crs: str, k: int, counts: tuple[np.ndarray, np.ndarray]) -> None:
        """Add chunk ``k``'s cell counts in ``crs`` to that CRS's."""
        parts = self.cells.setdefault(crs, [])
        parts.append(counts)
        if len(parts) > 2 and sum(len(c) for c, _ in parts[1:]) >= len(parts[0][0]):
            parts[:] = [add_cell_counts(parts)]
        self.counted.setdefault(crs, set()).add(k)

    def missing(self, crs: str) -> list[int]:
        """The chunks not counted in ``crs`` that have vertices to count."""
        done = self.counted.get(crs, set()) | self.no_points
        return [k for k in range(self.n_chunks) if k not in done]

    def cell_counts(self, crs: str) -> tuple[np.ndarray, np.ndarray]:
        """The summed cell counts in ``crs`` (of every chunk, once :meth:`missing` are added)."""
        return add_cell_counts(self.cells.get(crs, []))


def _utm_epsg(zone: int, north: bool) -> str:
    return f"EPSG:{(32600 if north else 32700) + zone}"


def _cell_counts(lonlat: np.ndarray, owners: np.ndarray, crs: str, cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's per-cell way counts in ``crs`` from its :func:`data_pipeline.city.coverage_vertices` (lon/lat;
    :func:`data_pipeline.coverage.cell_way_counts`: chunks hold disjoint ways, so their counts add up)."""
    # The transform geopandas' to_crs applies to every vertex, so the cells are a whole-city build's.
    x, y = _to_utm(crs).transform(lonlat[:, 0], lonlat[:, 1])
    return cell_way_counts(np.column_stack([x, y]), owners, cell_m)


@functools.lru_cache(maxsize=8)
def _to_utm(crs: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(WGS84, crs, always_xy=True)


@older_objects_frozen()
def plan_city(city: CitySpec, config: TilingConfig, scratch: str | Path, block_km: float,
              margin_m: float = DEFAULT_MARGIN_M, report: Reporter | None = None) -> CityPlan:
    """Stream ``city``'s OSM file, store its features under ``scratch`` and lay out its blocks.

    Parameters
    ----------
    city
        A city with a local OSM file (see :func:`can_block`).
    config
        Tiling settings.
    scratch
        Folder for the stored features (created; emptied first if it exists; the blocks read it).
    block_km
        Block side in km, rounded down to whole tiles (at least one).
    margin_m
        Ground read around each block, in metres.
    """
    start = time.perf_counter()
    reset_peak_rss()
    base = current_rss_mb()
    report = report or (lambda stage, completed, total: None)
    if block_km <= 0:
        raise InvalidValueError(f"block_km must be positive, got {block_km}")
    user = city.user_coverage()
    if city.osm_file is None:
        raise InvalidValueError(f"{city.name}: only a city read from a local OSM file can be built in blocks")
    path = Path(city.osm_file)
    if not path.is_file():
        raise OSMFileNotFoundError(f"{path}: no such OSM file")
    extent, timestamp = sources.osm_header(path, sources._suffix(path))
    declared = sources.file_coverage(extent)
    scratch = Path(scratch)
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)

    # One pass over the file: each chunk classified once and written as features; street vertices counted
    # per UTM zone (and, to estimate the coverage, ways per cell).
    estimate = user is None and declared is None
    area = user.polygon if user is not None else (declared.polygon if declared is not None else None)
    area_known = area is not None and not area.is_empty  # the CRS from the area, not from the vertices' zones
    tally = _ReadTally(cell_m=config.coverage_cell_m if estimate else None, count_zones=not area_known)

    store = _FeatureStore(scratch)

    def start_over() -> None:  # the file proved out of order midway: its sorted copy is read from the start
        nonlocal tally
        store.close()
        for chunk_file in scratch.glob(f"*{_STORE_SUFFIX}"):
            chunk_file.unlink()
        tally = _ReadTally(cell_m=tally.cell_m, count_zones=tally.count_zones)

    try:
        for lines, areas in sources.iter_osm_chunks(path, CHUNK_OBJECTS, on_start_over=start_over):
            report("reading", tally.n_chunks, None)
            chunk = _chunk_features(lines, areas, city)
            store.append(tally.n_chunks, chunk)
            tally.add(chunk)
            del chunk, lines, areas  # before the next chunk is read, not after
            release_freed_memory()
    finally:
        store.close()
    zones, north, south = tally.zones, tally.north, tally.south
    if not tally.any_street:
        raise NoStreetsError(f"{path.name}: no streets found (no highway=* way of the classes "
                             "major/minor/cycle_foot); nothing to tile.")

    # The CRS and coverage a whole-city build chooses (grid.project_to_utm, city.city_coverage).
    if area is not None and area_known:
        point = area.representative_point()
        crs = utm_crs(point.x, point.y)
    else:
        zone, is_north = _median_zone(zones, north, south)
        crs = _utm_epsg(zone, is_north)
    if user is not None:
        projected = user.to_crs(WGS84, crs)
        coverage = projected if declared is None else Coverage(
            shapely.intersection(projected.polygon, declared.to_crs(WGS84, crs).polygon), projected.source)
    elif declared is not None:
        coverage = declared.to_crs(WGS84, crs)
    else:  # ways per coverage cell, summed over the chunks (those with no vertex in the city's zone read again)
        missing = tally.missing(crs)
        for i, k in enumerate(missing):
            report("coverage", i, len(missing))
            tally.add_cells(crs, k, _cell_counts(*coverage_vertices(_read_chunk(scratch, k, path.name)), crs,
                                                  config.coverage_cell_m))
        coverage = Coverage(coverage_from_cell_counts(*tally.cell_counts(crs), config.coverage_cell_m), "estimated")

    candidates = candidate_tiles(coverage.polygon, config, path.name)
    block_m = max(1, math.floor(block_km * 1000.0 / config.stride_m)) * config.stride_m
    # The block grid starts at the candidates' corner, not at the CRS's origin: fewer blocks, each fuller, for the
    # same bound on their side (Lyngby at 2 km: 13 blocks, 15 on a grid from the origin), and each block's
    # fixed cost (its reads, its drive graph) paid fewer times.
    origin = candidates.bounds[:, :2].min(axis=0) if len(candidates.bounds) else np.zeros(2)
    keys = np.floor((candidates.bounds[:, :2] - origin) / block_m).astype(np.int64)
    unique, label = np.unique(keys, axis=0, return_inverse=True)
    blocks = [np.flatnonzero(label.ravel() == b) for b in range(len(unique))]
    tile_areas = [_box(*candidates.bounds[idx, :2].min(axis=0), *candidates.bounds[idx, 2:].max(axis=0))
                  for idx in blocks]
    known = {**dict.fromkeys(LAYERS, True), "buildings": tally.any_building and city.buildings_mapped}
    return CityPlan(
        city=city, crs=crs, coverage=coverage, candidates=candidates, block_m=float(block_m),
        block_origin=(float(origin[0]), float(origin[1])), blocks=blocks,
        block_keys=[(int(k[0]), int(k[1])) for k in unique], tile_areas=tile_areas, margin_m=margin_m,
        chunks_dir=str(scratch),
        source=path.name, timestamp=timestamp, extent=extent, layers_known=known,
        seconds=time.perf_counter() - start, peak_rss_mb=peak_rss_mb(), own_peak_mb=peak_rss_mb() - base,
    )


def _box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    return float(x0), float(y0), float(x1), float(y1)


def _chunk_features(lines: gpd.GeoDataFrame, areas: gpd.GeoDataFrame, city: CitySpec) -> OSMFeatures:
    frame = pd.concat([lines, areas], ignore_index=True) if len(areas) else lines
    return features_from_tagged_frame(gpd.GeoDataFrame(frame, geometry="geometry", crs=WGS84),
                                      source=Path(str(city.osm_file)).name, whole_source=False)


#: The polygon layers of :class:`OSMFeatures`, stored together with a ``layer`` column.
_POLYGON_LAYERS = ("buildings", "open_space", "water")


#: The stored features' files: Arrow IPC, uncompressed, read memory-mapped. A block's box read from the
#: Parquet files these replaced took 8 ms (streets) and 16 ms (areas) of Lyngby, about 2 ms each from these:
#: a third of a second over its 13 blocks.
_STORE_SUFFIX = ".arrow"


class _FeatureStore:
    """A plan's features (lon/lat) as they are read: per kind (``streets``, ``areas``) one Arrow IPC file with
    a record batch per chunk, each row with its chunk, geometry (WKB) and bounding box.

    Classification is row by row (:func:`features_from_tagged_frame`), so the
    street rows of the chunks in order are the whole file's streets in order,
    and each polygon layer's rows its polygons (a chunk's areas are stored
    layer by layer). One file per kind, not per chunk: a block reads every
    file once per box.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writers: dict[str, Any] = {}

    def append(self, k: int, chunk: OSMFeatures) -> None:
        polygons = [getattr(chunk, name) for name in _POLYGON_LAYERS]
        areas = pd.DataFrame({"layer": np.repeat(_POLYGON_LAYERS, [len(p) for p in polygons])})
        for kind, frame, geometry in (
                ("streets", pd.DataFrame(chunk.streets.drop(columns="geometry")), chunk.streets.geometry.to_numpy()),
                ("areas", areas, np.concatenate([p.to_numpy() for p in polygons]))):
            if len(frame):
                self._write(kind, _rows_table(frame, geometry, k))

    def _write(self, kind: str, table: Any) -> None:
        import pyarrow as pa

        if kind not in self._writers:  # a column of no values in the first chunk holds values in others
            schema = pa.schema([f.with_type(pa.list_(pa.int64()) if f.name == NODES_COLUMN else pa.string())
                                if pa.types.is_null(f.type) else f for f in table.schema])
            sink = pa.OSFile(str(self.folder / f"{kind}{_STORE_SUFFIX}"), "wb")
            self._writers[kind] = (sink, pa.ipc.new_file(sink, schema), schema)
        _, writer, schema = self._writers[kind]
        writer.write_table(table.cast(schema))

    def close(self) -> None:
        writers, self._writers = list(self._writers.values()), {}
        with contextlib.ExitStack() as stack:  # every writer and file closed, whichever fails
            for sink, writer, _ in writers:
                stack.callback(sink.close)
                stack.callback(writer.close)


def _rows_table(frame: pd.DataFrame, geometry: np.ndarray, k: int) -> Any:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    bounds = shapely.bounds(geometry)
    bbox = pa.StructArray.from_arrays([pa.array(bounds[:, i]) for i in range(4)],
                                      names=["xmin", "ymin", "xmax", "ymax"])
    return (table.append_column("chunk", pa.array(np.full(len(frame), k, np.int64)))
            .append_column("geometry", pa.array(shapely.to_wkb(geometry), pa.binary()))
            .append_column("bbox", bbox))


def _stored_features(streets: gpd.GeoDataFrame | None, areas: gpd.GeoDataFrame | None, source: str,
                     timestamp: str | None, layers_known: dict[str, bool]) -> OSMFeatures:
    """:class:`OSMFeatures` (lon/lat) of stored rows (None: none of that kind)."""
    if streets is None:
        streets = gpd.GeoDataFrame(geometry=np.array([], dtype=object), crs=_WGS84_CRS)
    layer = areas["layer"].to_numpy() if areas is not None else np.array([], dtype=object)
    geometry = areas.geometry.to_numpy() if areas is not None else np.array([], dtype=object)
    polygons = {name: gpd.GeoSeries(geometry[layer == name], crs=_WGS84_CRS) for name in _POLYGON_LAYERS}
    return OSMFeatures(streets=streets, **polygons, source=source, timestamp=timestamp, layers_known=layers_known)


def _read_chunk(folder: Path, k: int, source: str) -> OSMFeatures:
    return _stored_features(_read_stored(folder, "streets", chunk=k), _read_stored(folder, "areas", chunk=k),
                            source, None, dict.fromkeys(LAYERS, True))


def _read_stored(folder: Path, kind: str, box: tuple[float, float, float, float] | None = None,
                 chunk: int | None = None) -> gpd.GeoDataFrame | None:
    """The stored rows of ``kind`` (``streets``, ``areas``) whose bounding box meets ``box`` (lon/lat), or
    of one ``chunk``, in the file's order. None if no row is."""
    return _frame(_scan(folder, kind, box, chunk))


def _scan(folder: Path, kind: str, box: tuple[float, float, float, float] | None = None,
          chunk: int | None = None) -> Any:
    """:func:`_read_stored`'s rows as a pyarrow table (None: no row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    file = folder / f"{kind}{_STORE_SUFFIX}"
    if not file.is_file():
        if kind == "streets":  # a plan always stores streets: its folder is not where this task looks
            raise DatasetError(f"{file}: the plan's stored streets are missing (the block tasks must see the "
                               "plan's folder: a shared filesystem on a cluster)")
        return None
    rows = _bbox_meets(box) if box is not None else pc.field("chunk") == chunk
    # Memory-mapped: the filter reads the bounding boxes and copies out the rows kept; the file's pages are
    # the page cache's, not the task's.
    with pa.memory_map(str(file)) as source:
        table = pa.ipc.open_file(source).read_all().filter(rows)
    return table if table.num_rows else None


def _bbox_meets(box: tuple[float, float, float, float]) -> Any:
    """The test of a stored row's bounding box meeting ``box`` (lon/lat), as a pyarrow expression: what a scan
    of the store filters by, and what rows held from a larger box are filtered by again."""
    import pyarrow.compute as pc

    west, south, east, north = box
    return ((pc.field("bbox", "xmin") <= east) & (pc.field("bbox", "xmax") >= west)
            & (pc.field("bbox", "ymin") <= north) & (pc.field("bbox", "ymax") >= south))


def _frame(table: Any) -> gpd.GeoDataFrame | None:
    """Scanned rows as a lon/lat GeoDataFrame of their stored columns (None: no row)."""
    if table is None or not table.num_rows:
        return None
    geometry = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    return gpd.GeoDataFrame(table.drop_columns(["chunk", "bbox", "geometry"]).to_pandas(), geometry=geometry,
                            crs=_WGS84_CRS)


class _StreetsAround:
    """A block's stored streets around boxes that only grow, read from the plan's file for a box
    :data:`READ_AHEAD_M` larger than asked, so that most growths are served from the rows held."""

    def __init__(self, folder: Path, lonlat_box: Any) -> None:
        self.folder, self.lonlat_box = folder, lonlat_box
        self.held: Any = None
        self.held_box: tuple[float, float, float, float] | None = None

    def read(self, box: tuple[float, float, float, float]) -> gpd.GeoDataFrame | None:
        """The stored streets meeting projected ``box``'s lon/lat box, in the file's order (None: none)."""
        read = self.lonlat_box(box)
        held = self.held_box
        if held is None or not (held[0] <= read[0] and held[1] <= read[1] and read[2] <= held[2]
                                and read[3] <= held[3]):
            a = READ_AHEAD_M
            self.held_box = self.lonlat_box((box[0] - a, box[1] - a, box[2] + a, box[3] + a))
            self.held = _scan(self.folder, "streets", self.held_box)
        return None if self.held is None else _frame(self.held.filter(_bbox_meets(read)))


@dataclass(frozen=True)
class BlockResult:
    """One block's tiles (indices into the plan's candidates), their parameters, and its share of the network."""

    block: int
    kept: np.ndarray
    rows: pd.DataFrame
    rasters: str
    network: dict[str, Any]
    seconds: float
    peak_rss_mb: float
    own_peak_mb: float


@older_objects_frozen()
def build_block(plan: CityPlan, b: int, config: TilingConfig, out: str | Path) -> BlockResult:
    """Test, measure and rasterize block ``b``'s tiles from the features near it; rasters go to ``out``."""
    start = time.perf_counter()
    reset_peak_rss()
    base = current_rss_mb()
    idx = plan.blocks[b]
    bounds = plan.candidates.bounds[idx]
    features, graph = _block_features(plan, b, config)
    if features is None:  # nothing mapped near the block: none of its tiles has streets
        kept, keep = idx[:0], np.zeros(len(idx), dtype=bool)
        params = pd.DataFrame(columns=list(PARAMETERS), dtype=np.float64)
        network = {"intersections": 0, "nodes": 0, "dead_ends": 0, "bearings": [0] * 36}
    else:
        keep = has_streets(features, bounds, config)
        kept = idx[keep]
        params = tile_parameters(features, bounds[keep], config, graph=graph)
        network = _core_network(graph, plan, b, config)

    writer = PartialDir(out)
    try:
        array = create_raster_array(writer.path / PART_RASTERS, len(kept), config.tile_px, len(config.channels))
        if features is not None and len(kept):
            for rows, tiles in rasterize_tiles(features, bounds[keep], config):
                array.oindex[np.asarray(rows)] = tiles
        writer.publish()
    finally:
        writer.discard()
    return BlockResult(block=b, kept=kept, rows=params, rasters=str(Path(out) / PART_RASTERS),
                       network=network, seconds=time.perf_counter() - start,
                       peak_rss_mb=peak_rss_mb(), own_peak_mb=peak_rss_mb() - base)


_WGS84_CRS = pyproj.CRS.from_user_input(WGS84)  # parsed once: pyproj takes milliseconds per parse

def _block_features(plan: CityPlan, b: int, config: TilingConfig) -> tuple[OSMFeatures | None, Any]:
    """The features around block ``b`` and their drive graph.

    The box read is the block's tiles plus the margin, grown until no simplified
    drive edge near the tiles ends outside it: an edge ending outside the box may
    be cut short (its way's continuation was not read), which would move its
    midpoint and bearing. The box is found from the street lines alone (the
    graph needs nothing else). The features returned are those crossing the
    block's tiles or the widest drawn road's reach around them (the areas read
    once, for that box alone): what its tiles are measured and rasterized from.
    ``None`` when no street was mapped near the block.
    """
    x0, y0, x1, y1 = plan.tile_areas[b]
    m = plan.margin_m
    crs = pyproj.CRS.from_user_input(plan.crs)
    scratch = Path(plan.chunks_dir)

    def lonlat_box(box: tuple) -> tuple[float, float, float, float]:
        lonlat = gpd.GeoSeries([shapely.segmentize(shapely.box(*box), 50.0)], crs=crs).to_crs(_WGS84_CRS)
        return _box(*lonlat.total_bounds)

    # Each growth reaches the margin beyond a street read outside the box, so the box only grows, and stops
    # at the latest when it holds every street stored (a long road of many ways takes a round a way).
    tiles = (x0, y0, x1, y1)
    g = GRAPH_MARGIN_M
    near = (x0 - g, y0 - g, x1 + g, y1 + g)
    m = max(m, g)  # the graph's ways are whole only inside the box read
    box = (x0 - m, y0 - m, x1 + m, y1 + m)
    chains_inside = False
    streets_around = _StreetsAround(scratch, lonlat_box)
    while True:
        lines = streets_around.read(box)
        if lines is None:
            return None, None
        # Read in lon/lat; only the ways the graph and the tiles take are projected (as a whole build's are).
        streets = _stored_features(lines, None, plan.source, plan.timestamp, plan.layers_known)
        chains = _Chains.of(streets.streets, _to_utm(plan.crs))
        if not chains_inside:
            # First the box is grown by chains, found in the ways' node ids alone; a simplified graph (the
            # costly part) is built once they all end inside it (its edges are parts of chains).
            reach = None if chains is None else chains.reach(tiles)
            if reach is not None and not (reach[0] >= box[0] and reach[1] >= box[1] and reach[2] <= box[2]
                                           and reach[3] <= box[3]):
                box = (min(box[0], reach[0] - m), min(box[1], reach[1] - m),
                       max(box[2], reach[2] + m), max(box[3], reach[3] + m))
                continue
            chains_inside = True
        # The graph of the chains that meet the tiles and margin (and of the chains through their ends) has the
        # whole network's edges and intersections there; the rest of the box is left out. Only the streets are
        # replaced, projected: the graph reads nothing else.
        graph = drive_graph(_projected(streets, None, crs) if chains is None else
                            replace(streets, streets=chains.graph_streets(streets.streets, near, crs)))
        ends = np.stack([graph.node_xy[graph.u], graph.node_xy[graph.v]], axis=1)  # (edges, 2 ends, xy)
        open_end = ~_within(ends, box).all(axis=1)
        touches = _within(ends, tiles).any(axis=1) | _within(ends.mean(axis=1), tiles)
        cut = ends[open_end & touches].reshape(-1, 2)
        if not len(cut):
            break
        box = (min(box[0], cut[:, 0].min() - m), min(box[1], cut[:, 1].min() - m),
               max(box[2], cut[:, 0].max() + m), max(box[3], cut[:, 1].max() + m))
    if chains is not None and _cluster_leaves(graph, config.intersection_tolerance_m, tiles, near):
        graph = drive_graph(_projected(streets, None, crs))  # a cluster of the tiles reaches out: every way read
    # Beyond the graph, a tile's parameters and pixels come from the features that cross it, roads drawn at
    # their width: those crossing the tiles or the width of a road around them are enough, however far the
    # chains grew the box, and measuring and rasterizing go faster for the rest left out.
    r = max(config.road_width(h) for h in classify.ROAD_WIDTH_M) / 2.0 + classify.CYCLE_LANE_WIDTH_M \
        + config.meters_per_pixel
    drawn = (x0 - r, y0 - r, x1 + r, y1 + r)
    drawn_lonlat = lonlat_box(drawn)  # holds the drawn box (segments curve between CRSs: the pixel of slack)
    candidates = np.flatnonzero(shapely.intersects(streets.streets.geometry.values, shapely.box(*drawn_lonlat)))
    local = _projected(streets, candidates, crs)
    local = replace(local, streets=local.streets[shapely.intersects(local.streets.geometry.values,
                                                                    shapely.box(*drawn))])
    areas = _read_stored(scratch, "areas", drawn_lonlat)
    polygons = _stored_features(None, areas, plan.source, plan.timestamp, plan.layers_known)
    return replace(local, **{name: getattr(polygons, name).to_crs(crs) for name in _POLYGON_LAYERS}), graph


def _projected(features: OSMFeatures, rows: np.ndarray | None, crs: Any) -> OSMFeatures:
    """Lon/lat ``features`` with only the street ``rows`` (all: None), projected to ``crs``."""
    return (features if rows is None else replace(features, streets=features.streets.iloc[rows])).to_crs(crs)


@dataclass(frozen=True)
class _Chains:
    """The drive network's chains among some street ways, found from OSM node ids alone.

    A chain is a run of way segments through nodes with exactly two neighbours. Every
    edge of osmnx's simplified graph lies along one (osmnx ends edges at such
    nodes too, where one-way streets change), so a box that holds the chains
    meeting an area holds the ends of the graph's edges near it. Ways read for
    a box hold every way through a node inside it, so the box's nodes have their
    true neighbours.
    """

    start: np.ndarray  # per segment of a drive way (two consecutive vertices): its first vertex
    chain: np.ndarray  # per segment: its chain
    lo: np.ndarray  # (chains, 2): the chain's nodes' lowest x, y (projected)
    hi: np.ndarray  # (chains, 2): and highest
    end_chain: np.ndarray  # per end of a chain (a node of its edges without exactly two neighbours): the chain
    end_id: np.ndarray  # and the node's id
    ids: np.ndarray  # per vertex of the drive ways (a node repeated in a row dropped, as osmnx drops it): node id
    xy: np.ndarray  # (vertices, 2): its coordinates (projected)
    vertex_rows: np.ndarray  # per vertex: its way's row in the streets

    @classmethod
    def of(cls, streets: gpd.GeoDataFrame, to_crs: pyproj.Transformer | None = None) -> _Chains | None:
        """The chains of ``streets``' drive ways, in their CRS or, with ``to_crs``, projected by it; None where
        there are none or ways lack node ids."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        drive_rows = np.flatnonzero(streets["drive"].to_numpy(dtype=bool))
        node_lists = streets["nodes"].to_numpy(dtype=object)[drive_rows]
        if not len(drive_rows) or any(ids is None for ids in node_lists) or \
                (shapely.get_type_id(streets.geometry.values[drive_rows]) != 1).any():  # multi-part: no chains
            return None
        xy, line_of = shapely.get_coordinates(streets.geometry.values[drive_rows], return_index=True)
        ids = np.concatenate(node_lists)
        if len(ids) != len(xy):
            return None
        distinct = np.r_[True, (line_of[1:] != line_of[:-1]) | (ids[1:] != ids[:-1])]
        xy, line_of, ids = xy[distinct], line_of[distinct], ids[distinct]
        if to_crs is not None:
            xy = np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1]))
        same_way = line_of[1:] == line_of[:-1]
        segments = np.sort(np.column_stack([ids[:-1][same_way], ids[1:][same_way]]), axis=1)
        if not len(segments):
            return None
        pairs, pair_of = np.unique(segments, axis=0, return_inverse=True)
        nodes, first = np.unique(ids, return_index=True)
        edge = np.searchsorted(nodes, pairs)
        node_xy = xy[first]
        interior = np.bincount(edge.ravel(), minlength=len(nodes)) == 2
        inner = interior[edge[:, 0]] & interior[edge[:, 1]]
        _, label = connected_components(coo_matrix((np.ones(int(inner.sum())), (edge[inner, 0], edge[inner, 1])),
                                                   shape=(len(nodes), len(nodes))), directed=False)
        chain = np.where(interior[edge[:, 0]], label[edge[:, 0]],
                         np.where(interior[edge[:, 1]], label[edge[:, 1]], len(nodes) + np.arange(len(edge))))
        _, chain = np.unique(chain, return_inverse=True)
        chain = chain.ravel()
        lo = np.full((chain.max() + 1, 2), np.inf)
        hi = np.full((chain.max() + 1, 2), -np.inf)
        for end in (0, 1):
            np.minimum.at(lo, chain, node_xy[edge[:, end]])
            np.maximum.at(hi, chain, node_xy[edge[:, end]])
        end_edge, end_node = np.nonzero(~interior[edge])  # a chain's ends: nodes of its edges no chain passes
        return cls(start=np.flatnonzero(same_way), chain=chain[pair_of.ravel()], lo=lo, hi=hi,
                   end_chain=chain[end_edge], end_id=nodes[edge[end_edge, end_node]], ids=ids, xy=xy,
                   vertex_rows=drive_rows[line_of])

    def _meeting(self, area: tuple[float, float, float, float]) -> np.ndarray:
        return (self.lo[:, 0] <= area[2]) & (self.hi[:, 0] >= area[0]) & (self.lo[:, 1] <= area[3]) & \
            (self.hi[:, 1] >= area[1])

    def reach(self, area: tuple[float, float, float, float]) -> tuple[float, float, float, float] | None:
        """The box that the chains meeting ``area`` reach (projected); None where no chain does."""
        near = self._meeting(area)
        if not near.any():
            return None
        return _box(*self.lo[near].min(axis=0), *self.hi[near].max(axis=0))

    def graph_streets(self, streets: gpd.GeoDataFrame, area: tuple[float, float, float, float],
                      crs: Any) -> gpd.GeoDataFrame:
        """``streets``' drive ways cut to the chains meeting ``area`` and to every chain through one of their
        ends, in ``crs`` (the chains' own): the ways whose simplified graph has the edges and the nodes of the
        whole network near ``area``. A chain is a simplified edge's run of segments whole, and an end's street
        count needs all its chains; a chain through an end but not meeting ``area`` lies outside it, and so do
        the nodes it lacks. Each way's runs of such segments are its parts, in the ways' order."""
        near = self._meeting(area)
        chosen = near.copy()
        chosen[self.end_chain[np.isin(self.end_id, self.end_id[near[self.end_chain]])]] = True
        start = self.start[chosen[self.chain]]
        if not len(start):
            return gpd.GeoDataFrame(streets.iloc[:0].drop(columns="geometry"), geometry=[], crs=crs)
        new_part = np.r_[True, np.diff(start) != 1]  # consecutive segments (of one way: see of()): one part
        part = np.cumsum(new_part) - 1
        first, last = start[new_part], start[np.r_[new_part[1:], True]]
        # A part's vertices: its segments' first ones and the last segment's second.
        vertices = np.concatenate([start, last + 1])
        owner = np.concatenate([part, np.arange(len(first))])
        order = np.lexsort((vertices, owner))
        vertices, owner = vertices[order], owner[order]
        rows = self.vertex_rows[first]
        parts = streets.drop(columns="geometry").iloc[rows].reset_index(drop=True)
        parts["nodes"] = np.split(self.ids[vertices], np.flatnonzero(np.diff(owner)) + 1)
        return gpd.GeoDataFrame(parts, geometry=shapely.linestrings(self.xy[vertices], indices=owner), crs=crs)


def _cluster_leaves(graph: Any, tolerance_m: float, tiles: tuple, near: tuple) -> bool:
    """Whether an intersection cluster that reaches within two tolerances of ``near``'s edge (beyond which a graph
    of the chains meeting ``near`` may lack nodes) also spreads over ``tiles`` or two tolerances around them (so
    that its centre, a mean, may fall in them)."""
    pts, label = intersection_members(graph, tolerance_m)
    r = 2.0 * tolerance_m
    at_edge = ~_within(pts, (near[0] + r, near[1] + r, near[2] - r, near[3] - r))
    if not at_edge.any():
        return False
    n = int(label.max()) + 1
    lo, hi = np.full((n, 2), np.inf), np.full((n, 2), -np.inf)
    np.minimum.at(lo, label, pts)
    np.maximum.at(hi, label, pts)
    reaching = np.unique(label[at_edge])
    lo, hi = lo[reaching], hi[reaching]
    return bool(((lo[:, 0] <= tiles[2] + r) & (hi[:, 0] >= tiles[0] - r)
                 & (lo[:, 1] <= tiles[3] + r) & (hi[:, 1] >= tiles[1] - r)).any())


def _within(xy: np.ndarray, area: tuple) -> np.ndarray:
    return (xy[..., 0] >= area[0]) & (xy[..., 0] <= area[2]) & (xy[..., 1] >= area[1]) & (xy[..., 1] <= area[3])


def _core_network(graph, plan: CityPlan, b: int, config: TilingConfig) -> dict[str, Any]:
    """The block's share of the drive network: what lies in the box its tiles fill and in its square of the block
    grid (a node on the line between two blocks counts for one)."""
    key = np.asarray(plan.block_keys[b])

    def inside(xy: np.ndarray) -> np.ndarray:
        if not len(xy):
            return np.zeros(0, dtype=bool)
        square = np.floor((xy - np.asarray(plan.block_origin)) / plan.block_m).astype(np.int64)
        return np.all(square == key, axis=1) & _within(xy, plan.tile_areas[b])

    centres = intersection_clusters(graph, config.intersection_tolerance_m)
    mid = (graph.node_xy[graph.u] + graph.node_xy[graph.v]) / 2.0
    nodes = inside(graph.node_xy)
    return {"intersections": int(inside(centres).sum()), "nodes": int(nodes.sum()),
            "dead_ends": int((graph.street_count[nodes] == 1).sum()),
            "bearings": bearing_counts(graph, np.flatnonzero(inside(mid))).tolist()}


def _but_shape(array: Any) -> dict[str, Any]:
    """A zarr array's metadata but its length (the tiles' shape, chunks, codecs and chunk file names)."""
    meta = array.metadata.to_dict()
    return {**meta, "shape": tuple(meta["shape"])[1:]}


@older_objects_frozen()
def join_blocks(plan: CityPlan, results: list[BlockResult], config: TilingConfig, part: str | Path) -> CityPartResult:
    """Write the city part of a blocked city: the blocks' tiles in the grid's order, as a whole-city build."""
    import zarr
    from scipy.stats import entropy

    city = plan.city
    order = np.concatenate([r.kept for r in results])
    keep = np.zeros(len(plan.candidates.bounds), dtype=bool)
    keep[order] = True
    grid = plan.candidates.keep(keep, plan.crs, plan.source, config)  # NoTilesError if no block kept a tile
    params = pd.concat([r.rows for r in results if len(r.rows)], ignore_index=True)
    rank = np.argsort(order, kind="stable")
    in_order = order[rank]
    writer = PartialDir(part)
    try:
        (writer.path / PART_COVERAGE).write_text(
            gpd.GeoSeries([plan.coverage.polygon], crs=plan.crs).to_crs(WGS84).to_json())
        array = create_raster_array(writer.path / PART_RASTERS, len(grid), config.tile_px, len(config.channels))
        for r in results:
            # A tile is one chunk file, compressed alike in a block and in the city (checked: the same metadata
            # but the number of tiles): linked under its place in the city, not decoded and encoded again. No
            # file: an empty tile, which zarr does not write.
            block = zarr.open_array(r.rasters, mode="r")  # an error if the block's array is not there
            if block.shape[0] != len(r.kept) or _but_shape(block) != _but_shape(array):
                raise DatasetError(f"{r.rasters}: block {r.block}'s tiles are not stored as the city's are")
            for j, i in enumerate(np.searchsorted(in_order, r.kept)):
                tile = Path(r.rasters) / block.metadata.encode_chunk_key((j, 0, 0, 0))
                if tile.is_file():
                    link_or_copy(str(tile), str(writer.path / PART_RASTERS
                                                / array.metadata.encode_chunk_key((int(i), 0, 0, 0))))
        bearings = np.sum([r.network["bearings"] for r in results], axis=0)
        nodes = sum(r.network["nodes"] for r in results)
        info = {
            "crs": plan.crs,
            "source": plan.source,
            "osm_timestamp": plan.timestamp,
            "group": city.group,
            "layers_known": plan.layers_known,
            "extent_lonlat": None if plan.extent is None else [float(v) for v in plan.extent],
            "coverage": {
                "source": plan.coverage.source,
                "area_km2": round(float(plan.coverage.polygon.area) / 1e6, 4),
                "file": f"{COVERAGE}/{city.name}.geojson",
                "min_share": config.min_coverage,
            },
            "tiles_dropped": grid.dropped,
            "drive_network": {
                "intersections": int(sum(r.network["intersections"] for r in results)),
                "nodes": int(nodes),
                "dead_end_share": sum(r.network["dead_ends"] for r in results) / nodes if nodes else None,
                "orientation_entropy": float(entropy(bearings)) if bearings.sum() else None,
                "scope": f"within the tiles of the {len(results)} blocks of {plan.block_m / 1000:g} km",
            },
            "blocks": {"count": len(results), "block_km": plan.block_m / 1000.0},
        }
        finish_part(writer.path, city, config, grid, params.iloc[rank].reset_index(drop=True),
                    plan.layers_known["buildings"], info)
        writer.publish()
    finally:
        writer.discard()
    tasks: list[CityPlan | BlockResult] = [plan, *results]
    return CityPartResult(city=city.name, n_tiles=len(grid), seconds=sum(t.seconds for t in tasks),
                          peak_rss_mb=max(t.peak_rss_mb for t in tasks),
                          own_peak_mb=max(t.own_peak_mb for t in tasks), host=f"{socket.gethostname()}:{os.getpid()}",
                          n_tasks=len(tasks) + 1, task_own_peaks_mb=tuple(round(t.own_peak_mb, 1) for t in tasks))
