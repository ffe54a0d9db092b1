"""Writing files and output directories so that nothing is half-written, lost or deleted by mistake.

Three rules, shared by ``data build``, ``generate``, training and the quickstart:

- a file that a later run reads back (a manifest, ``summary.json``, a rewritten
  ``metrics.jsonl``) is written beside itself and renamed over the old one, so
  it holds either the old content or the new, never a torn mix
  (:func:`write_text_atomic`);
- an output directory is assembled in a sibling ``.NAME.partial-XXXXXXXX``
  directory that its writer keeps locked while it runs; another writer removes
  such a directory only once its owner has provably ended (:class:`PartialDir`);
- ``--overwrite`` replaces only a directory that urbangen recognisably wrote,
  or an empty one (:func:`check_replaceable`).
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from data_pipeline.errors import ForeignDirectoryError

try:
    import fcntl
except ImportError:  # Windows: no flock, so no partial directory is ever provably dead
    fcntl = None  # type: ignore[assignment]

#: The lock file inside a partial directory; it records its writer for people too.
OWNER_FILE = ".urbangen-owner"

#: Partial directories this process owns. Never probed: with POSIX-style locks (flock
#: emulated on NFS) closing any descriptor of a file drops the process's own lock on it.
_OWNED: set[Path] = set()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` in one step: readers see the old file or the new one, never a part.

    The text goes to a temporary file in the same directory (so the rename stays
    on one file system), is flushed to disk, then renamed over ``path``. If
    anything fails on the way the temporary file is removed and ``path`` is as it was.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # open(..., "x") rather than mkstemp: the file gets the usual umask-based mode, not 0600.
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # else a power cut after the rename can leave an empty file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None


def check_replaceable(path: Path, is_ours: Callable[[Path], bool], what: str) -> None:
    """Refuse to replace ``path`` unless it is missing, an empty directory, or ``is_ours``.

    Parameters
    ----------
    is_ours
        Recognises a directory urbangen wrote (a dataset's manifest, generate's marker).
    what
        How the error names what ``path`` would have to be, for example
        ``"an urbangen dataset (manifest.json with format_version 1)"``.

    Raises
    ------
    ForeignDirectoryError
        Whatever else ``path`` is; nothing has been touched.
    """
    if not os.path.lexists(path) or is_empty_dir(path):
        return
    if path.is_dir() and not path.is_symlink() and is_ours(path):
        return
    if path.is_dir() and not path.is_symlink():
        names = sorted(p.name for p in path.iterdir())
        held = f"holds {len(names)} entries ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
    else:
        held = "is a file or a link, not a directory"
    raise ForeignDirectoryError(
        f"{path} is not {what} and {held}; --overwrite replaces only that, so nothing was touched. "
        "Choose another output folder, or move its contents away yourself."
    )


def replace_dir(new: Path, out: Path) -> Path:
    """Move the finished directory ``new`` to ``out``, replacing what is there (already checked as ours).

    The old ``out`` is renamed aside before ``new`` is renamed in, so at every
    moment ``out`` is either the old directory or the new one.
    """
    old = None
    if os.path.lexists(out):
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


class PartialDir:
    """A scratch directory ``.NAME.partial-XXXXXXXX`` beside ``out``, locked by this process while it lives.

    Creating one first removes the partial directories of ``out`` whose writers
    have ended (killed builds) and leaves those of writers still running
    (another build into the same folder) alone.

    Parameters
    ----------
    out
        The directory that :meth:`publish` will create or replace.
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_partials(self.out)
        self.path = self.out.parent / f".{self.out.name}.partial-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        _OWNED.add(self.path.absolute())
        self._lock = open(self.path / OWNER_FILE, "w", encoding="utf-8")
        if fcntl is not None:
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        # Written only once the lock is held: an empty owner file means "starting", never "dead".
        self._lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self._lock.flush()

    def publish(self) -> Path:
        """Move the directory, without its lock file, to ``out``; the lock is released after the move."""
        (self.path / OWNER_FILE).unlink()
        try:
            return replace_dir(self.path, self.out)
        finally:
            self._release()

    def discard(self) -> None:
        """Remove the directory (if not published); the lock is released only once it is gone."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if not self._lock.closed:
            self._lock.close()
        _OWNED.discard(self.path.absolute())


def remove_dead_partials(out: str | Path) -> list[Path]:
    """Remove the partial directories of ``out`` whose writers have provably ended.

    Returns
    -------
    list of Path
        The directories removed.
    """
    out = Path(out)
    removed = []
    for partial in sorted(out.parent.glob(f".{out.name}.partial-*")):
        if partial.absolute() not in _OWNED and _owner_has_ended(partial):
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    return removed


def _owner_has_ended(partial: Path) -> bool:
    """True only if the writer that locked ``partial`` no longer holds the lock (it died or finished).

    A directory without an owner file (being set up, from an older urbangen, or
    something else entirely) is never taken for dead.
    """
    if fcntl is None:
        return False
    try:
        f = open(partial / OWNER_FILE, encoding="utf-8")
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its writer is alive
        return bool(f.read().strip())  # empty: its writer has not locked it yet
