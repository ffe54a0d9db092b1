"""Build a tile dataset from one or more cities: the ``urbangen data build`` command.

Each city is built on its own (in this process or as a Dask task, see
:mod:`data_pipeline.city_tasks`) and the finished cities are joined into one
dataset, published in one rename.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pydantic
import yaml

from data_pipeline.city import (
    PART_COVERAGE,
    PART_INFO,
    PART_RASTERS,
    PART_TILES,
    CityPartResult,
    CitySpec,
    city_name_from,
    default_city,
    source_city_name,
)
from data_pipeline.city_tasks import SERIAL, Blocking, CityFailure, CityParts, progress_bar, run_cities
from data_pipeline.config import CHANNELS, TilingConfig
from data_pipeline.dataset import DatasetWriter, TileDataset, check_out_dir, open_dataset
from data_pipeline.errors import CityBuildError, InvalidValueError
from data_pipeline.parameters import PARAMETERS, parameter_table

__all__ = ["BuildFile", "CitySpec", "build_dataset", "city_name_from", "default_city", "read_build_file",
           "source_city_name"]


def build_dataset(
    cities: Sequence[CitySpec],
    out_dir: str | Path,
    config: TilingConfig | None = None,
    *,
    overwrite: bool = False,
    scheduler: str = SERIAL,
    workers: int | None = None,
    skip_failed: bool = False,
    block_km: float | None = None,
    results: list[CityPartResult] | None = None,
    show_progress: bool = True,
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
    scheduler
        ``"serial"`` (this process), ``"local"`` (a Dask ``LocalCluster``, one
        single-threaded worker per CPU unless ``workers`` says) or the address of
        a Dask scheduler (see :func:`data_pipeline.city_tasks.run_cities`).
    workers
        Workers of a local cluster.
    skip_failed
        Publish the dataset without the cities that failed (they are listed in
        the manifest's ``cities_failed``) instead of raising.
    block_km
        Build each city read from a local OSM file in square blocks of whole
        tiles of at most this side, each block a task of its own, so that
        memory follows the block and not the region (see
        :mod:`data_pipeline.blocks`). The tiles are those of a whole-city build.
    results
        A list that receives what each city's build measured (time, peak memory).
    show_progress
        Show a progress bar per city (the CLI passes ``urbangen.settings.progress_disabled()``).

    Returns
    -------
    TileDataset
        The dataset, opened.

    Raises
    ------
    CityBuildError
        If cities failed (and ``skip_failed`` is false) when more than one was
        asked for; the cities built are kept, and a rerun builds only the rest.
        A one-city build raises that city's own error.
    """
    config = config or TilingConfig()
    if not cities:
        raise InvalidValueError("no cities to build")
    names = [c.name for c in cities]
    if len(set(names)) != len(names):
        raise InvalidValueError(f"city names must be unique, got {names}")
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)  # before any work: a dataset that could not be published is lost time
    parts = CityParts(out_dir)
    todo = [c for c in cities if not parts.is_current(c, config)]
    with progress_bar(disable=not show_progress) as progress:
        for city in cities:
            if city not in todo:
                progress.add_task(f"{city.name}: kept from an earlier run", total=1, completed=1)
        try:
            built, failures = run_cities(todo, config, parts, progress, scheduler=scheduler, workers=workers,
                                         blocking=None if block_km is None else Blocking(block_km))
        except BaseException:  # interrupted: keep what was finished, if anything
            parts.remove_if_empty()
            raise
    failures.sort(key=lambda f: names.index(f.city))
    if results is not None:
        results.extend(built)
    if failures and not skip_failed:
        parts.remove_if_empty()
        if len(cities) == 1:
            raise failures[0].error
        raise CityBuildError(_failure_report(failures, len(cities), parts))
    failed = {f.city: f.message for f in failures}
    with DatasetWriter(out_dir, overwrite=overwrite) as writer:
        for city in cities:
            if city.name in failed:
                continue
            part = parts.part(city.name)
            info = json.loads((part / PART_INFO).read_text())
            writer.add_city_files(city.name, part / PART_RASTERS, pd.read_parquet(part / PART_TILES),
                                  part / PART_COVERAGE, info["info"])
        manifest: dict[str, Any] = {
            "tiling": config.to_dict(),
            "channels": [{"name": c, "description": CHANNELS[c]} for c in config.channels],
            "parameters": parameter_table(PARAMETERS),
            "pixel_convention": "row 0 is the tile's north edge (y1), column 0 its west edge (x0); "
            "pixel (r, c) has its centre at (x0 + (c + 0.5) * mpp, y1 - (r + 0.5) * mpp)",
        }
        if failed:
            manifest["cities_failed"] = failed
        writer.commit(manifest)
    if not failed:  # the parts of failed builds' neighbours stay for the rerun
        parts.remove()
    return open_dataset(out_dir)


def _failure_report(failures: Sequence[CityFailure], n_cities: int, parts: CityParts) -> str:
    lines = [f"{len(failures)} of {n_cities} cities failed:"]
    lines += [f"  {f.city}: {f.message}" for f in failures]
    lines.append(f"The cities built are kept in {parts.path}; fix the failures and run the same command again "
                 "to build only what is missing (or pass --skip-failed to publish the dataset without them).")
    return "\n".join(lines)


class _BuildFile(pydantic.BaseModel):
    """A build file: where to write, the tiling, blocking, and the cities."""

    model_config = pydantic.ConfigDict(extra="forbid")

    out: str | None = None
    tiling: dict[str, Any] = pydantic.Field(default_factory=dict)
    block_km: float | None = pydantic.Field(default=None, gt=0)
    cities: list[CitySpec] = pydantic.Field(min_length=1)


def _validation_message(path: Path, exc: pydantic.ValidationError) -> str:
    """One clause per problem, each naming the entry it is in (``cities[2].bbox``)."""
    problems = []
    for error in exc.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        problems.append(f"{where or 'the file'}: {error['msg']}")
    return f"{path}: " + "; ".join(problems)


@dataclass(frozen=True)
class BuildFile:
    """What a build file asks for: the cities, their tiling, the output folder and blocking."""

    cities: list[CitySpec]
    tiling: TilingConfig
    out: str | None
    block_km: float | None


def read_build_file(path: str | Path) -> BuildFile:
    """Read a YAML build file listing many cities.

    Example::

        out: data/cities            # optional; --out wins
        tiling: {meters_per_pixel: 2.0, tile_px: 256, stride_px: 128}
        block_km: 4                 # optional: build each city from a file in blocks (see build_dataset)
        cities:
          - {name: osterbro, osm_file: "${URBANGEN_OSM_DIR}/copenhagen/osterbro_osm_bbox.osm.xml.gz",
             group: micromobility}
          - {name: houston, place: "Houston, Texas, USA", group: car_centric}

    ``${VAR}`` in ``osm_file`` is replaced by the environment variable; a
    relative path is relative to the YAML file, unless it came from a variable
    (then, like the variable, to the working directory).

    Raises
    ------
    InvalidValueError
        For YAML that does not parse, and for every entry that is wrong, each named
        with its place in the file (``cities[2].bbox: ...``).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidValueError(f"{path}: not valid YAML ({exc})") from exc
    try:
        parsed = _BuildFile.model_validate(raw if raw is not None else {})
    except pydantic.ValidationError as exc:
        raise InvalidValueError(_validation_message(path, exc)) from None
    cities = []
    for i, entry in enumerate(parsed.cities):
        fields: dict[str, Any] = {}
        if entry.osm_file:
            expanded = os.path.expandvars(entry.osm_file)
            if "$" in expanded:
                raise InvalidValueError(f"{path}: cities[{i}].osm_file uses an unset variable: {entry.osm_file}")
            p = Path(expanded).expanduser()
            # A path from a variable (URBANGEN_OSM_DIR=../shared/osm) is relative to where you are,
            # like the variable itself; a literal one to the YAML file.
            base = Path.cwd() if "$" in entry.osm_file else path.parent
            fields["osm_file"] = str(p if p.is_absolute() else base / p)
        if entry.boundary:
            b = Path(os.path.expandvars(entry.boundary)).expanduser()
            fields["boundary"] = str(b if b.is_absolute() else path.parent / b)
        cities.append(replace(entry, **fields))
    return BuildFile(cities=cities, tiling=TilingConfig.from_dict(parsed.tiling), out=parsed.out,
                     block_km=parsed.block_km)
