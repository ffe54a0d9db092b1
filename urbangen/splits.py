"""Train, validation and test splits by whole regions, with a buffer between them.

Tiles are grouped into ``region_m`` squares when a dataset is built (see
:class:`data_pipeline.config.TilingConfig`). :func:`region_split` gives whole
regions of every city to the test and validation splits, then drops the tiles
that come too close to a tile of another split, so that no two splits share
ground (overlapping tiles, when the stride is below the tile size) or sit right
next to each other. The test split is for reported numbers only; the
validation split is for checkpoint selection and early stopping.

A :class:`Split` is recorded in every checkpoint (``meta["split"]``, see
:meth:`Split.to_dict`) together with a fingerprint of the dataset it was made
on; :func:`check_split` verifies that an evaluation uses that same dataset.

Examples
--------
>>> from data_pipeline.dataset import open_dataset             # doctest: +SKIP
>>> tiles = open_dataset("data/helsinki").tiles                # doctest: +SKIP
>>> split = region_split(tiles, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=512.0)  # doctest: +SKIP
>>> split.indices("test")                                      # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import shapely

from data_pipeline.errors import InvalidValueError, SplitMismatchError

#: The splits, in priority order: a tile of an earlier one is never dropped for a later one.
SPLIT_NAMES = ("test", "val", "train")

#: Tolerance (metres) on tile distances: tile bounds on a grid are exact only up to float rounding.
_TOLERANCE_M = 1e-6

_RECORD_VERSION = 1
_REQUIRED_COLUMNS = ("tile_id", "city", "crs", "x0", "y0", "x1", "y1", "region")


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices of a tiles table split into train, validation and test by whole regions.

    Attributes
    ----------
    train, val, test
        Sorted int64 row indices into the tiles table (``tiles.iloc``).
    dropped
        Sorted row indices of tiles dropped as buffer: tiles of the
        validation or training regions that came within ``buffer_m`` of a
        tile of a split with higher priority (test > val > train).
    regions
        ``{"train": [...], "val": [...], "test": [...]}``: the sorted region
        labels assigned to each split (a region keeps its assignment even if
        all its tiles were dropped).
    seed
        The seed that chose the regions.
    val_fraction, test_fraction
        Fractions of each city's regions asked for.
    buffer_m
        Minimum distance (metres) between tiles of different splits.
    fingerprint
        Short hash of the tiles table (see :func:`dataset_fingerprint`); it
        pins the dataset the row indices refer to.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    dropped: np.ndarray
    regions: dict[str, list[str]] = field(default_factory=dict)
    seed: int = 0
    val_fraction: float = 0.0
    test_fraction: float = 0.0
    buffer_m: float = 0.0
    fingerprint: str = ""

    def __post_init__(self) -> None:
        for name in (*SPLIT_NAMES, "dropped"):
            array = np.array(getattr(self, name), dtype=np.int64).reshape(-1)
            array.sort()
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        regions = {name: sorted(str(r) for r in self.regions.get(name, ())) for name in SPLIT_NAMES}
        object.__setattr__(self, "regions", regions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # equality is by value (the record), and arrays do not hash

    def indices(self, name: str) -> np.ndarray:
        """Row indices of split ``name``.

        Parameters
        ----------
        name
            ``"train"``, ``"val"``, ``"test"`` or ``"dropped"``.

        Returns
        -------
        numpy.ndarray
            Sorted, read-only int64 row indices into the tiles table.
        """
        if name not in (*SPLIT_NAMES, "dropped"):
            raise InvalidValueError(f"no split {name!r}; choose from train, val, test, dropped")
        return getattr(self, name)

    def counts(self) -> dict[str, int]:
        """Number of tiles in each split and dropped."""
        return {name: int(len(self.indices(name))) for name in ("train", "val", "test", "dropped")}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record of the split (row indices as lists of ints).

        Returns
        -------
        dict
            What :meth:`from_dict` reads back; the row indices are only
            meaningful for the dataset whose ``fingerprint`` it carries.
        """
        return {
            "version": _RECORD_VERSION,
            "fingerprint": self.fingerprint,
            "seed": int(self.seed),
            "val_fraction": float(self.val_fraction),
            "test_fraction": float(self.test_fraction),
            "buffer_m": float(self.buffer_m),
            "regions": {name: list(self.regions[name]) for name in SPLIT_NAMES},
            **{name: self.indices(name).tolist() for name in ("train", "val", "test", "dropped")},
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Split:
        """The split :meth:`to_dict` recorded.

        Raises
        ------
        ValueError
            If ``record`` is not a split record of a known version.
        """
        missing = [k for k in ("fingerprint", "seed", "val_fraction", "test_fraction", "buffer_m", "regions",
                               "train", "val", "test", "dropped") if k not in record]
        if missing:
            raise InvalidValueError(f"not a split record: it lacks {missing}")
        if record.get("version", _RECORD_VERSION) != _RECORD_VERSION:
            raise InvalidValueError(f"split record version {record.get('version')} is not {_RECORD_VERSION}; "
                             "it was written by another version of urbangen")
        return cls(
            train=record["train"], val=record["val"], test=record["test"], dropped=record["dropped"],
            regions={k: list(v) for k, v in record["regions"].items()}, seed=int(record["seed"]),
            val_fraction=float(record["val_fraction"]), test_fraction=float(record["test_fraction"]),
            buffer_m=float(record["buffer_m"]), fingerprint=str(record["fingerprint"]),
        )


def region_blocks(tiles: pd.DataFrame) -> np.ndarray:
    """Each tile's region qualified by its city (``city/region``): two cities never share a block.

    These are the blocks of block bootstraps, permutation tests and blocked folds.
    """
    return (tiles["city"].astype(str) + "/" + tiles["region"].astype(str)).to_numpy()


def dataset_fingerprint(tiles: pd.DataFrame) -> str:
    """A short, stable hash of a tiles table: tile ids, cities, CRSs, regions and bounds.

    Bounds are rounded to the millimetre, so the hash is stable across
    platforms; a rebuilt dataset with other tiles, another tiling or another
    region size gets another fingerprint.

    Parameters
    ----------
    tiles
        The dataset's ``tiles.parquet`` table.

    Returns
    -------
    str
        16 hexadecimal digits (the start of a SHA-256).
    """
    _check_columns(tiles)
    digest = hashlib.sha256()
    for column in ("tile_id", "city", "crs", "region"):
        digest.update("\x1f".join(tiles[column].astype(str)).encode())
        digest.update(b"\x1e")
    bounds = tiles[["x0", "y0", "x1", "y1"]].to_numpy(dtype=np.float64)
    digest.update(np.rint(bounds * 1000.0).astype("<i8").tobytes())
    return digest.hexdigest()[:16]


def region_split(tiles: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int,
                 buffer_m: float, like: Split | None = None, region_m: float | None = None) -> Split:
    """Split tiles into train, validation and test by whole regions, dropping a buffer between them.

    Every city's regions, sorted and then shuffled with
    ``numpy.random.default_rng(seed)`` (cities in sorted order, one
    generator), go ``ceil(test_fraction * n)`` to test, then
    ``ceil(val_fraction * n)`` to validation and the rest to training. At
    least one region always stays in training: when the rounded-up counts
    would take them all, validation gets fewer (test keeps its share). A city
    with fewer than 3 regions keeps all of them in training. A fraction of 0
    gives no regions.

    Then the buffer, by priority test > val > train: every test tile is kept;
    a validation tile is dropped if it comes closer than ``buffer_m`` to a
    test tile; a training tile is dropped if it comes closer than
    ``buffer_m`` to a kept validation or test tile. Distance is between the
    tiles' squares (shapely ``distance``: 0 for touching or overlapping
    tiles). Tiles sharing ground (overlapping with positive area) always
    conflict, even with ``buffer_m=0``; a tile exactly ``buffer_m`` away
    (up to a micrometre) is kept, so a one-tile buffer on a grid of
    non-overlapping tiles drops one ring of tiles. Tiles of different cities
    (or CRSs) never conflict.

    Parameters
    ----------
    tiles
        A dataset's ``tiles.parquet`` table (columns ``tile_id``, ``city``,
        ``crs``, ``x0``, ``y0``, ``x1``, ``y1``, ``region``).
    val_fraction
        Fraction of each city's regions for validation, in [0, 1).
    test_fraction
        Fraction of each city's regions for test, in [0, 1).
    seed
        Chooses the regions.
    buffer_m
        Minimum distance in metres between tiles of different splits, >= 0.
    like
        Another dataset's split, on the same ground at another scale: its
        regions are taken as assigned (the seed and fractions recorded are
        its own), so that a model trained here never sees ground that is
        held out there. A tile is then labelled by every region its ground
        touches (squares of ``region_m``; regions ``like`` does not list are
        training ground), and one that touches regions of two splits is
        dropped before the buffer. The buffer is kept among this dataset's
        tiles only: against the other's held-out tiles, no ground is shared,
        but a tile may touch one along an edge where that region holds none
        of this dataset's tiles.
    region_m
        The regions' side in metres; needed with ``like``.

    Returns
    -------
    Split

    Raises
    ------
    ValueError
        If a fraction is outside [0, 1), the two add up to 1 or more,
        ``buffer_m`` is negative or not finite, or a column is missing.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise InvalidValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise InvalidValueError(f"val_fraction + test_fraction must be below 1 to leave regions for training, "
                         f"got {val_fraction} + {test_fraction}")
    if not (math.isfinite(buffer_m) and buffer_m >= 0.0):
        raise InvalidValueError(f"buffer_m must be a finite distance >= 0 in metres, got {buffer_m}")
    _check_columns(tiles)

    if like is None:
        regions = _assign_regions(tiles, val_fraction, test_fraction, seed)
        label = np.full(len(tiles), "train", dtype=object)
        region_of = tiles["region"].astype(str).to_numpy()
        for name in ("val", "test"):
            label[np.isin(region_of, regions[name])] = name
        straddling = np.zeros(len(tiles), bool)
    else:
        if not region_m or region_m <= 0:
            raise InvalidValueError(f"a split like another dataset's needs the regions' side region_m, got {region_m}")
        regions, seed = like.regions, like.seed
        val_fraction, test_fraction = like.val_fraction, like.test_fraction
        label, straddling = _label_by_ground(tiles, regions, float(region_m))
        label[straddling] = "dropped"  # nor does it hold the tiles of other splits at a distance
    dropped = _buffer(tiles, label, buffer_m) | straddling
    rows = np.arange(len(tiles))
    return Split(
        train=rows[(label == "train") & ~dropped], val=rows[(label == "val") & ~dropped],
        test=rows[label == "test"], dropped=rows[dropped], regions=regions, seed=int(seed),
        val_fraction=float(val_fraction), test_fraction=float(test_fraction), buffer_m=float(buffer_m),
        fingerprint=dataset_fingerprint(tiles),
    )


def check_split(recorded: Mapping[str, Any], tiles: pd.DataFrame, seed: int | None = None) -> Split:
    """The split a run recorded, after checking that it belongs to ``tiles`` (and ``seed``).

    Nothing is recomputed but the dataset's fingerprint.

    Parameters
    ----------
    recorded
        A :meth:`Split.to_dict` record, e.g. a checkpoint's ``meta["split"]``.
    tiles
        The tiles table of the dataset about to be used.
    seed
        If given, the seed the caller would split with; it must be the
        recorded one.

    Returns
    -------
    Split

    Raises
    ------
    SplitMismatchError
        If ``tiles`` is not the dataset the split was made on, or ``seed``
        differs from the recorded seed.
    """
    split = Split.from_dict(recorded)
    found = dataset_fingerprint(tiles)
    if found != split.fingerprint:
        raise SplitMismatchError(
            f"the dataset ({len(tiles)} tiles, fingerprint {found}) differs from the one the run was trained on "
            f"(fingerprint {split.fingerprint}): it was rebuilt or is another dataset, so the recorded train/val/"
            "test tiles do not apply to it; evaluate on the dataset the run was trained on")
    if seed is not None and int(seed) != split.seed:
        raise SplitMismatchError(
            f"seed {seed} differs from the seed the run's split was made with ({split.seed}): its regions would "
            "differ, and the evaluation would use tiles the model was trained on; use the recorded split")
    return split


def ensure_same_split(recorded: Mapping[str, Any], split: Split) -> None:
    """Raise unless ``split`` is the recorded one (a resumed run must train on the same tiles).

    Raises
    ------
    SplitMismatchError
        Saying what changed: the dataset, the split settings, or the
        split itself (the splitting code).
    """
    if split.to_dict() == dict(recorded):
        return
    old = Split.from_dict(recorded)
    if old.fingerprint != split.fingerprint:
        why = "the dataset differs from the one the run was trained on (rebuilt or another dataset)"
    else:
        settings = ("seed", "val_fraction", "test_fraction", "buffer_m")
        changed = [f"{k} {getattr(old, k)} -> {getattr(split, k)}" for k in settings
                   if getattr(old, k) != getattr(split, k)]
        why = f"the split settings changed ({', '.join(changed)})" if changed else \
            "the same settings give other tiles (the splitting code changed)"
    raise SplitMismatchError(f"the resumed run's train/val/test split is not the one its checkpoint recorded: "
                             f"{why}; resume with the original dataset and settings, or start a new workdir")


def _check_columns(tiles: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED_COLUMNS if c not in tiles.columns]
    if missing:
        raise InvalidValueError(f"the tiles table lacks columns {missing}")


def _label_by_ground(tiles: pd.DataFrame, regions: Mapping[str, list[str]],
                     region_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Each tile's split by the regions (``city:column:row`` squares of ``region_m``) its ground touches, and
    whether it touches regions of two splits."""
    split_of = {r: name for name in ("val", "test") for r in regions.get(name, ())}
    label = np.full(len(tiles), "train", dtype=object)
    straddling = np.zeros(len(tiles), bool)
    for i, (city, x0, y0, x1, y1) in enumerate(tiles[["city", "x0", "y0", "x1", "y1"]].itertuples(index=False)):
        # Ground is [x0, x1) x [y0, y1): a tile ending on a region's edge does not reach into the next one.
        columns = range(math.floor(x0 / region_m), math.ceil(x1 / region_m - _TOLERANCE_M))
        rows = range(math.floor(y0 / region_m), math.ceil(y1 / region_m - _TOLERANCE_M))
        found = {split_of.get(f"{city}:{c}:{r}", "train") for c in columns for r in rows}
        straddling[i] = len(found) > 1
        label[i] = next(name for name in SPLIT_NAMES if name in found)
    return label, straddling


def _assign_regions(tiles: pd.DataFrame, val_fraction: float, test_fraction: float,
                    seed: int) -> dict[str, list[str]]:
    """Region labels of each split, city by city, as :func:`region_split` describes."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for city in sorted(tiles["city"].astype(str).unique()):
        regions = sorted(tiles.loc[tiles["city"].astype(str) == city, "region"].astype(str).unique())
        n = len(regions)
        if n < 3:
            out["train"] += regions
            continue
        order = [regions[i] for i in rng.permutation(n)]
        n_test = min(_share(test_fraction, n), n - 1)
        n_val = min(_share(val_fraction, n), n - 1 - n_test)
        out["test"] += order[:n_test]
        out["val"] += order[n_test:n_test + n_val]
        out["train"] += order[n_test + n_val:]
    return {name: sorted(labels) for name, labels in out.items()}


def _share(fraction: float, n: int) -> int:
    """``ceil(fraction * n)``, not rounded up by float noise (0.3 * 10 is 3.0000000000000004)."""
    return 0 if fraction <= 0 else math.ceil(fraction * n - 1e-9)


def _buffer(tiles: pd.DataFrame, label: np.ndarray, buffer_m: float) -> np.ndarray:
    """Mask of tiles to drop: val near test, train near kept val or test, city by city."""
    dropped = np.zeros(len(tiles), dtype=bool)
    bounds = tiles[["x0", "y0", "x1", "y1"]].to_numpy(dtype=np.float64)
    keys = tiles["city"].astype(str) + "\x1f" + tiles["crs"].astype(str)
    for _, rows in pd.Series(np.arange(len(tiles))).groupby(keys.to_numpy(), sort=True):
        rows = rows.to_numpy()
        group_label = label[rows]
        test, val, train = (rows[group_label == name] for name in SPLIT_NAMES)
        if len(test) and len(val):
            dropped[val[_near(bounds[val], bounds[test], buffer_m)]] = True
        kept = np.concatenate([test, val[~dropped[val]]])
        if len(kept) and len(train):
            dropped[train[_near(bounds[train], bounds[kept], buffer_m)]] = True
    return dropped


def _near(query: np.ndarray, others: np.ndarray, buffer_m: float) -> np.ndarray:
    """Which ``query`` boxes come closer than ``buffer_m`` to, or share ground with, one of ``others``.

    Both are (n, 4) arrays of ``x0, y0, x1, y1``.
    """
    query_boxes = shapely.box(*query.T)
    tree = shapely.STRtree(shapely.box(*others.T))
    if buffer_m > _TOLERANCE_M:
        hits, _ = tree.query(query_boxes, predicate="dwithin", distance=buffer_m - _TOLERANCE_M)
    else:
        # No distance to keep: only tiles sharing ground conflict, not tiles touching along an edge.
        hits, found = tree.query(query_boxes, predicate="intersects")
        a, b = query[hits], others[found]
        width = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
        height = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
        hits = hits[(width > _TOLERANCE_M) & (height > _TOLERANCE_M)]
    near = np.zeros(len(query), dtype=bool)
    near[hits] = True
    return near
