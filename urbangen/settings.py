"""Settings read from the environment, in one place."""

from __future__ import annotations

import os
from pathlib import Path

from data_pipeline.errors import MissingFileError

#: Environment variable naming the folder of OSM extracts used by tests and
#: benchmarks (the project's ``../shared/osm``, laid out as in its SOURCES.md).
OSM_DIR_ENV = "URBANGEN_OSM_DIR"


def osm_data_dir() -> Path | None:
    """The folder named by ``URBANGEN_OSM_DIR``, or None when unset."""
    value = os.environ.get(OSM_DIR_ENV)
    return Path(value).expanduser().resolve() if value else None


def osm_file(relative: str) -> Path:
    """A file inside ``URBANGEN_OSM_DIR``, for example ``copenhagen/osterbro_osm_bbox.osm.xml.gz``.

    Raises
    ------
    FileNotFoundError
        If the variable is unset or the file is missing, saying which.
    """
    base = osm_data_dir()
    if base is None:
        raise MissingFileError(f"set {OSM_DIR_ENV} to the folder of OSM extracts (see README, 'Data')")
    path = base / relative
    if not path.is_file():
        raise MissingFileError(f"{relative} not found under {OSM_DIR_ENV}={base}")
    return path
