"""Every error urbangen and its data pipeline raise on purpose, in one module.

Every failure a user can cause has its own class, all derived from
:class:`UrbangenError`, so that callers can tell them apart and the command
line prints any of them as one line. Classes that replace a built-in error
also derive from it (``ValueError``, ``FileNotFoundError``, ...), so code that
catches the built-in keeps working.
"""

from __future__ import annotations


class UrbangenError(Exception):
    """Base class for every error urbangen raises on purpose."""


class PipelineError(UrbangenError):
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


class CityBuildError(PipelineError):
    """Some cities of a many-city build failed; the others were kept for a rerun."""


class DatasetError(PipelineError):
    """A dataset directory is missing, incomplete or of an unknown format."""


class ForeignDirectoryError(PipelineError, FileExistsError):
    """An output directory holds something urbangen did not write, so ``--overwrite`` leaves it untouched.

    Also a :class:`FileExistsError`, like the refusal to write into a used
    folder without ``--overwrite``.
    """


class InvalidValueError(UrbangenError, ValueError):
    """A setting, argument or value urbangen cannot use; the message says which and why."""


class MissingFileError(UrbangenError, FileNotFoundError):
    """A file or folder urbangen needs (a checkpoint, an example, an extract) is not there."""


class OutputExistsError(UrbangenError, FileExistsError):
    """An output folder or file is already in use; nothing was written."""


class UnknownEmbeddedExtractError(UrbangenError, KeyError):
    """No OSM extract of that name is embedded in the package."""


class RunSpecError(UrbangenError, ValueError):
    """A run folder holds no usable checkpoint, or a model lacks a predict function that was asked for."""


class SplitMismatchError(UrbangenError, ValueError):
    """A recorded split does not belong to these tiles or this seed."""


class ParameterFileError(UrbangenError, ValueError):
    """A parameter file that cannot be used; the message names the field."""

    def __init__(self, source: str, where: str, message: str) -> None:
        self.field = where
        super().__init__(f"{source}: {where}: {message}" if where else f"{source}: {message}")


class NonFiniteLossError(UrbangenError, RuntimeError):
    """A loss became NaN or infinite; the run stopped before saving it."""
