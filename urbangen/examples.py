"""The example parameter files and city files that ship with the package.

They are package resources (``urbangen/resources/``), read through
:mod:`importlib.resources`, so that ``pip install urbangen`` has them with no
clone: ``urbangen examples --out DIR`` copies them out, and ``urbangen
generate`` and ``urbangen data build --config`` take a packaged file's name
where no file of that name exists.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

from data_pipeline.errors import InvalidValueError, MissingFileError, OutputExistsError

#: Kinds of example, each a folder of ``urbangen/resources/``.
KINDS = ("params", "cities")


def _folder(kind: str) -> Path:
    if kind not in KINDS:
        raise InvalidValueError(f"no example kind {kind!r}; there are {', '.join(KINDS)}")
    # A real folder: installs of this project are plain folders (no zip imports), as for the embedded data.
    return Path(str(importlib.resources.files("urbangen") / "resources" / kind))


def example_files(kind: str) -> dict[str, Path]:
    """The packaged files of one kind (``params`` or ``cities``), by file name."""
    return {p.name: p for p in sorted(_folder(kind).glob("*.yaml"))}


def resolve(path: str | Path, kind: str) -> Path:
    """``path`` itself when it exists; else the packaged example of that file name, if there is one.

    Raises
    ------
    FileNotFoundError
        If neither exists; the message lists the packaged examples.
    """
    path = Path(path)
    if path.exists():
        return path
    packaged = example_files(kind)
    if path.parent == Path(".") and path.name in packaged:
        return packaged[path.name]
    raise MissingFileError(f"{path}: no such file, and no packaged example of that name "
                            f"(packaged {kind} files: {', '.join(packaged)})")


def copy_examples(out_dir: str | Path) -> list[Path]:
    """Copy every packaged example into ``out_dir/params`` and ``out_dir/cities``; never overwrite a file.

    Raises
    ------
    FileExistsError
        If a file to be written exists (nothing is written then).
    """
    out_dir = Path(out_dir)
    plan = [(src, out_dir / kind / name) for kind in KINDS for name, src in example_files(kind).items()]
    clashes = [str(dst) for _, dst in plan if dst.exists()]
    if clashes:
        raise OutputExistsError(f"{', '.join(clashes)} exist(s): choose another --out (nothing was written)")
    for src, dst in plan:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return [dst for _, dst in plan]
