"""Errors raised by the OSM-to-tiles pipeline.

Every failure a user can cause has its own class so that the command line and
callers can tell them apart and print a specific message.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for every error the data pipeline raises on purpose."""


class OSMFileNotFoundError(PipelineError, FileNotFoundError):
    """The OSM file given does not exist."""


class EmptyOSMFileError(PipelineError):
    """The OSM file exists but holds no bytes or no OSM objects."""


class CorruptOSMFileError(PipelineError):
    """The OSM file could not be parsed (truncated, corrupt or not OSM)."""


class UnsupportedFormatError(PipelineError):
    """The file name's ending names no format the pipeline reads."""


class NoStreetsError(PipelineError):
    """The source holds no street (``highway=*``) of a class the pipeline uses."""


class UnknownPlaceError(PipelineError):
    """A place name could not be geocoded."""


class NetworkUnavailableError(PipelineError):
    """Downloading from OSM's servers failed (no network, timeout, refusal)."""


class BoundaryError(PipelineError):
    """A ``--clip`` box or ``--boundary`` file cannot serve as a coverage polygon."""


class NoTilesError(PipelineError):
    """The data covers no tile that passes the build's coverage filter."""


class DatasetError(PipelineError):
    """A dataset directory is missing, incomplete or of an unknown format."""


class ForeignDirectoryError(PipelineError, FileExistsError):
    """An output directory holds something urbangen did not write, so ``--overwrite`` leaves it untouched.

    Also a :class:`FileExistsError`, like the refusal to write into a used
    folder without ``--overwrite``.
    """
