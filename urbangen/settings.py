"""Settings read from the environment, in one place."""

from __future__ import annotations

import os
from pathlib import Path

from data_pipeline.errors import InvalidValueError, MissingFileError

#: Environment variable naming the folder of OSM extracts used by tests and
#: benchmarks (the project's ``../shared/osm``, laid out as in its SOURCES.md).
OSM_DIR_ENV = "URBANGEN_OSM_DIR"
#: Set to 1 to hide progress bars (tests, logs).
NO_PROGRESS_ENV = "URBANGEN_NO_PROGRESS"
#: Weights & Biases' own mode variable: online, offline or disabled.
WANDB_MODE_ENV = "WANDB_MODE"
#: Variables whose presence says this process is one host of a multi-host JAX run.
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def progress_disabled() -> bool:
    """Whether ``URBANGEN_NO_PROGRESS=1`` asks for no progress bars."""
    return os.environ.get(NO_PROGRESS_ENV) == "1"


def wandb_mode_from_env() -> str | None:
    """``WANDB_MODE``, or None when unset or empty."""
    return os.environ.get(WANDB_MODE_ENV) or None


def distributed_requested() -> bool:
    """Whether the environment names a multi-host coordinator (see :data:`DISTRIBUTED_ENV`)."""
    return any(os.environ.get(v) for v in DISTRIBUTED_ENV)


def int_from_env(name: str) -> int | None:
    """An integer environment variable, None when unset or empty; a clear error when not an integer."""
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidValueError(f"{name} must be an integer, got {value!r}") from None


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
