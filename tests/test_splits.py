"""Train/validation/test splits by whole regions with a buffer, on real tiles (urbangen.splits)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import OSTERBRO

#: The float tolerance the checks allow on tile distances (metres).
TOL = 1e-6


@pytest.fixture(scope="module")
def small(small_tiles) -> pd.DataFrame:
    """Østerbro and Kennesaw: 256 m tiles side by side (no overlap), 1024 m regions."""
    from data_pipeline.dataset import open_dataset

    return open_dataset(small_tiles).tiles


@pytest.fixture(scope="module")
def overlapping(osm_path, tmp_path_factory) -> pd.DataFrame:
    """Østerbro: 256 m tiles every 128 m (each overlaps its neighbours by half), 512 m regions."""
    from data_pipeline.build import CitySpec, build_dataset
    from data_pipeline.config import TilingConfig
    from data_pipeline.dataset import open_dataset

    out = tmp_path_factory.mktemp("tiles") / "osterbro_overlapping"
    build_dataset([CitySpec(name="osterbro", osm_file=str(osm_path(OSTERBRO)), group="micromobility")], out,
                  TilingConfig(meters_per_pixel=4.0, tile_px=64, stride_px=32, region_m=512))
    tiles = open_dataset(out).tiles
    assert ((tiles.x1 - tiles.x0) == 256).all() and len(tiles) > 100
    return tiles


def box_distances(tiles: pd.DataFrame, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Brute-force float64 distances between the squares of rows ``a`` and rows ``b`` (inf across cities).

    Also -1 where two squares share ground (overlap with positive area), so that "distance >= 0" checks it.
    """
    bounds = tiles[["x0", "y0", "x1", "y1"]].to_numpy(dtype=np.float64)
    p, q = bounds[a][:, None, :], bounds[b][None, :, :]
    dx = np.maximum(0.0, np.maximum(p[..., 0] - q[..., 2], q[..., 0] - p[..., 2]))
    dy = np.maximum(0.0, np.maximum(p[..., 1] - q[..., 3], q[..., 1] - p[..., 3]))
    dist = np.hypot(dx, dy)
    width = np.minimum(p[..., 2], q[..., 2]) - np.maximum(p[..., 0], q[..., 0])
    height = np.minimum(p[..., 3], q[..., 3]) - np.maximum(p[..., 1], q[..., 1])
    dist[(width > TOL) & (height > TOL)] = -1.0
    city = tiles.city.to_numpy()
    dist[city[a][:, None] != city[b][None, :]] = np.inf
    return dist


def check_split_is_sound(tiles: pd.DataFrame, split, buffer_m: float) -> None:
    """Everything a split promises, checked without urbangen.splits."""
    rows = {name: split.indices(name) for name in ("train", "val", "test", "dropped")}
    everything = np.concatenate(list(rows.values()))
    assert np.array_equal(np.sort(everything), np.arange(len(tiles))), "not a partition of the tiles"
    for name, idx in rows.items():
        assert np.array_equal(idx, np.unique(idx)), f"{name} is not sorted"

    # Whole regions: test regions entirely in test; val regions in val or dropped; train regions in train or dropped.
    region = tiles.region.to_numpy()
    for name in ("train", "val", "test"):
        assert not set(split.regions[name]) & set().union(*(split.regions[o] for o in ("train", "val", "test")
                                                                if o != name))
        members = np.flatnonzero(np.isin(region, split.regions[name]))
        allowed = set(rows[name]) | (set() if name == "test" else set(rows["dropped"]))
        assert set(members) <= allowed, f"a tile of a {name} region is elsewhere"
        assert set(rows[name]) <= set(members), f"{name} holds a tile of another split's region"
    assert set(split.regions["train"]) | set(split.regions["val"]) | set(split.regions["test"]) == set(region)

    # The buffer: nothing of a lower-priority split within buffer_m (or sharing ground) of a higher one.
    for low, high in (("train", "test"), ("train", "val"), ("val", "test")):
        if len(rows[low]) and len(rows[high]):
            d = box_distances(tiles, rows[low], rows[high])
            assert d.min() >= buffer_m - TOL, f"a {low} tile is {d.min():.3f} m from a {high} tile"
    # ... and no more is dropped than the buffer needs.
    kept_val_or_test = np.concatenate([rows["val"], rows["test"]])
    for i in rows["dropped"]:
        higher = rows["test"] if i in set(np.flatnonzero(np.isin(region, split.regions["val"]))) else kept_val_or_test
        d = box_distances(tiles, np.array([i]), higher)
        assert d.min() < buffer_m - TOL or d.min() < 0, f"tile {i} was dropped {d.min():.3f} m from the nearest"


@pytest.mark.integration  # real tiles, through request.getfixturevalue
@pytest.mark.parametrize("which", ["small", "overlapping"])
@pytest.mark.parametrize("buffer_m", [0.0, 256.0, 400.0])
def test_splits_hold_whole_regions_apart_by_the_buffer(which, buffer_m, request):
    from urbangen.splits import region_split

    tiles = request.getfixturevalue(which)
    split = region_split(tiles, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=buffer_m)
    check_split_is_sound(tiles, split, buffer_m)
    assert len(split.test) and len(split.train)
    if which == "overlapping":
        # Overlapping tiles share ground across region borders: even no buffer drops some.
        assert len(split.dropped) > 0


def test_one_tile_buffer_drops_one_ring_of_side_by_side_tiles(small):
    """Tiles exactly one tile apart are kept: a one-tile buffer leaves a one-tile gap, no wider."""
    from urbangen.splits import region_split

    split = region_split(small, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=256.0)
    d = box_distances(small, split.train, split.test)
    assert d.min() == pytest.approx(256.0)
    assert len(split.dropped) > 0


def test_regions_are_chosen_per_city_by_the_fractions(small):
    from urbangen.splits import region_split

    split = region_split(small, val_fraction=0.2, test_fraction=0.3, seed=0, buffer_m=256.0)
    for city, regions in small.groupby("city").region.unique().items():
        n = len(regions)
        assert n >= 3
        mine = {name: [r for r in split.regions[name] if r.startswith(f"{city}:")] for name in ("val", "test")}
        assert len(mine["test"]) == math.ceil(0.3 * n) and len(mine["val"]) == math.ceil(0.2 * n)
        assert (small.city.iloc[split.test] == city).any()  # test tiles are never dropped
    # With the defaults every city is validated on too (a greedy test share can leave a small city's
    # validation regions all within the buffer of its test regions).
    default = region_split(small, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=256.0)
    for city in ("osterbro", "kennesaw"):
        assert (small.city.iloc[default.val] == city).any() and (small.city.iloc[default.test] == city).any()
    none = region_split(small, val_fraction=0.0, test_fraction=0.0, seed=0, buffer_m=256.0)
    assert len(none.train) == len(small) and not len(none.val) and not len(none.test) and not len(none.dropped)
    no_test = region_split(small, val_fraction=0.3, test_fraction=0.0, seed=0, buffer_m=256.0)
    assert not no_test.regions["test"] and len(no_test.val)
    check_split_is_sound(small, no_test, 256.0)


def test_a_city_with_fewer_than_three_regions_stays_in_training(small):
    from urbangen.splits import region_split

    two = small[small.region.isin(sorted(small[small.city == "osterbro"].region.unique())[:2])
                | (small.city == "kennesaw")].reset_index(drop=True)
    split = region_split(two, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=256.0)
    osterbro = np.flatnonzero(two.city == "osterbro")
    assert set(osterbro) <= set(split.train)
    assert len(split.test) and len(split.val)  # Kennesaw still held out
    # A most generous request still leaves a region for training.
    greedy = region_split(small, val_fraction=0.49, test_fraction=0.5, seed=0, buffer_m=0.0)
    for city in ("osterbro", "kennesaw"):
        assert any(r.startswith(f"{city}:") for r in greedy.regions["train"])


def test_splits_are_deterministic_by_seed(overlapping, small):
    from urbangen.splits import region_split

    kwargs = dict(val_fraction=0.2, test_fraction=0.2, buffer_m=256.0)
    for tiles in (small, overlapping):
        a = region_split(tiles, seed=0, **kwargs)
        assert a == region_split(tiles, seed=0, **kwargs)
        b = region_split(tiles, seed=1, **kwargs)
        assert a != b and a.regions["test"] != b.regions["test"]


def test_cities_never_interact(overlapping):
    """A second city with the very same coordinates changes nothing in the first."""
    from urbangen.splits import region_split

    twin = overlapping.assign(city="zz_twin", tile_id="zz_twin-" + overlapping.tile_id,
                              region="zz_twin:" + overlapping.region)
    both = pd.concat([overlapping, twin], ignore_index=True)
    alone = region_split(overlapping, val_fraction=0.2, test_fraction=0.2, seed=3, buffer_m=256.0)
    joint = region_split(both, val_fraction=0.2, test_fraction=0.2, seed=3, buffer_m=256.0)
    n = len(overlapping)
    for name in ("train", "val", "test", "dropped"):
        assert np.array_equal(joint.indices(name)[joint.indices(name) < n], alone.indices(name))


def test_split_records_round_trip_and_check_the_dataset_and_seed(small, overlapping):
    from data_pipeline.errors import SplitMismatchError
    from urbangen.splits import Split, check_split, region_split

    split = region_split(small, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=256.0)
    record = json.loads(json.dumps(split.to_dict()))
    assert Split.from_dict(record) == split
    assert check_split(record, small) == split
    assert check_split(record, small, seed=0) == split
    with pytest.raises(SplitMismatchError, match="trained on"):
        check_split(record, small, seed=1)
    with pytest.raises(SplitMismatchError, match="rebuilt or is another dataset"):
        check_split(record, overlapping)
    moved = small.copy()
    moved.loc[0, ["x0", "x1"]] += 128.0  # the same tile ids, other ground: a rebuilt dataset
    with pytest.raises(SplitMismatchError, match="rebuilt"):
        check_split(record, moved)
    assert issubclass(SplitMismatchError, ValueError)
    with pytest.raises(ValueError, match="train, val, test"):
        split.indices("holdout")


def test_a_changed_split_is_explained(small):
    from data_pipeline.errors import SplitMismatchError
    from urbangen.splits import ensure_same_split, region_split

    split = region_split(small, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=256.0)
    ensure_same_split(split.to_dict(), split)
    with pytest.raises(SplitMismatchError, match="seed 0 -> 1"):
        ensure_same_split(split.to_dict(), region_split(small, val_fraction=0.2, test_fraction=0.2, seed=1,
                                                        buffer_m=256.0))
    with pytest.raises(SplitMismatchError, match="dataset differs"):
        ensure_same_split(split.to_dict(), region_split(small.iloc[1:], val_fraction=0.2, test_fraction=0.2,
                                                        seed=0, buffer_m=256.0))


@pytest.mark.parametrize("kwargs, message", [
    (dict(val_fraction=-0.1, test_fraction=0.2), "val_fraction"),
    (dict(val_fraction=1.0, test_fraction=0.0), "val_fraction"),
    (dict(val_fraction=0.2, test_fraction=1.0), "test_fraction"),
    (dict(val_fraction=0.5, test_fraction=0.5), "below 1"),
    (dict(val_fraction=0.2, test_fraction=0.2, buffer_m=-1.0), "buffer_m"),
    (dict(val_fraction=0.2, test_fraction=0.2, buffer_m=float("nan")), "buffer_m"),
])
def test_bad_settings_raise(small, kwargs, message):
    from urbangen.splits import region_split

    with pytest.raises(ValueError, match=message):
        region_split(small, **{"seed": 0, "buffer_m": 0.0, **kwargs})


def test_training_data_splits_with_a_one_tile_buffer_by_default(small_tiles, small):
    from urbangen.splits import region_split
    from urbangen.training.data import TrainingData

    data = TrainingData.open(str(small_tiles), val_fraction=0.2, test_fraction=0.2, seed=0)
    assert data.split.buffer_m == 64 * 4.0
    assert data.split == region_split(small, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=256.0)
    assert data.split_record == data.split.to_dict()
    assert np.array_equal(data.train_indices, data.split.train) and np.array_equal(data.val_indices, data.split.val)
    assert np.array_equal(data.test_indices, data.split.test)
    wider = TrainingData.open(str(small_tiles), val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=512.0)
    assert wider.split.buffer_m == 512.0 and len(wider.split.dropped) > len(data.split.dropped)


@pytest.mark.integration
def test_a_split_like_another_scales_keeps_each_tile_on_its_own_splits_ground(small, overlapping):
    """Østerbro's tiles every 128 m split like the side-by-side tiles' split (1024 m regions): a kept tile
    shares ground only with tiles of its own split there, and the buffer holds among its own tiles."""
    import pandas as pd

    from urbangen.splits import region_split

    reference = region_split(small, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=0.0)
    split = region_split(overlapping, val_fraction=0.5, test_fraction=0.3, seed=7, buffer_m=128.0, like=reference,
                         region_m=1024.0)
    assert (split.regions, split.seed, split.test_fraction) == (reference.regions, 0, 0.2)
    assert min(len(split.train), len(split.val), len(split.test)) > 0

    # Shapely-free: each kept tile against the reference's kept tiles of the same city, by brute-force distance.
    both = pd.concat([overlapping, small], ignore_index=True)
    n = len(overlapping)
    label = np.full(len(both), "dropped", dtype=object)
    for name in ("train", "val", "test"):
        label[split.indices(name)] = name
        label[n + reference.indices(name)] = name
    for name in ("train", "val", "test"):
        mine = split.indices(name)
        theirs = n + np.flatnonzero(np.isin(label[n:], [o for o in ("train", "val", "test") if o != name]))
        assert box_distances(both, mine, theirs).min() >= 0, f"a {name} tile shares ground with another split's"
    for low, high in (("train", "test"), ("train", "val"), ("val", "test")):
        assert box_distances(overlapping, split.indices(low), split.indices(high)).min() >= 128.0 - TOL
    # Dropped for straddling two splits' regions, not only for the buffer: some tile of each split's ground.
    region_of = {r: name for name in ("train", "val", "test") for r in reference.regions[name]}
    straddling = 0
    for i in split.indices("dropped"):
        t = overlapping.iloc[i]
        cells = {f"osterbro:{c}:{r}" for c in (math.floor(t.x0 / 1024), math.floor((t.x1 - 1) / 1024))
                 for r in (math.floor(t.y0 / 1024), math.floor((t.y1 - 1) / 1024))}
        straddling += len({region_of.get(c, "train") for c in cells}) > 1
    assert straddling > 0
    with pytest.raises(ValueError, match="region_m"):
        region_split(overlapping, val_fraction=0.2, test_fraction=0.2, seed=0, buffer_m=0.0, like=reference)
