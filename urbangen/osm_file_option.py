"""``--osm-file [NAME=]PATH``: a local OSM file, optionally with the name of its city."""

from __future__ import annotations

from pathlib import Path

from data_pipeline.city import _NAME, source_city_name
from data_pipeline.errors import InvalidValueError


def parse_osm_file(value: str | Path) -> tuple[str, Path]:
    """The city name and file of one ``--osm-file`` value.

    ``NAME=PATH`` names the city; a plain ``PATH`` is named after the file's
    stem (``osterbro.osm.pbf`` -> ``osterbro``). A value that is an existing
    file is always a path, even with an ``=`` in it, and so is a ``Path``.

    Raises
    ------
    ValueError
        If the name before ``=`` is empty or not a valid city name, or the path
        after it is empty.
    """
    if isinstance(value, Path) or "=" not in value or Path(value).expanduser().exists():
        path = Path(value)
        return source_city_name(osm_file=path), path
    name, _, path_text = value.partition("=")  # a name holds no '=', so the first one splits
    name, path_text = name.strip(), path_text.strip()
    if not name:
        raise InvalidValueError(f"--osm-file {value!r}: the city name before '=' is empty; "
                         "use NAME=PATH or a plain PATH")
    if not _NAME.match(name):
        raise InvalidValueError(f"--osm-file {value!r}: city name {name!r} may hold only letters, digits, '_' "
                         "and '-' (it names files); use NAME=PATH, or check the path if the whole value "
                         "is a file name")
    if not path_text:
        raise InvalidValueError(f"--osm-file {value!r}: no file after '='; use NAME=PATH")
    return name, Path(path_text)
