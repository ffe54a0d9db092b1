"""Generated footprints redrawn as rectangles (urbangen.footprints), on real Østerbro and Kennesaw tiles."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import min_area_rectangle
from scipy import ndimage


@pytest.fixture(scope="module")
def real_tiles(small_tiles):
    """Real tiles with at least a few buildings, their channels and scale."""
    from data_pipeline.dataset import open_dataset

    data = open_dataset(small_tiles)
    channels = list(data.channels)
    tiles = data.read_tiles(np.arange(len(data.tiles)))
    b = channels.index("buildings")
    tiles = tiles[tiles[..., b].sum(axis=(1, 2)) >= 40]
    assert len(tiles) >= 30
    return tiles, channels, data.meters_per_pixel


def _shapes(mask: np.ndarray) -> list:
    """The footprints of a 0/1 mask as polygons, by rasterio (pixel units)."""
    from affine import Affine

    from urbangen.vectorize import polygons

    return list(polygons(mask, Affine.identity(), None))


def _blobs(buildings: np.ndarray) -> np.ndarray:
    """Real footprints softened as a generator draws them: corners rounded, edges ragged."""
    return (ndimage.gaussian_filter(buildings.astype(np.float64), 1.0) > 0.45).astype(np.uint8)


def test_blobs_become_rectangles_of_their_own_size_and_direction_off_the_streets(real_tiles):
    """Each compact house-sized blob of a real tile, softened, is redrawn: its polygon (rasterio) fills its smallest
    rectangle (brute force) more than the blob's did, faces the blob's way, covers as many pixels, takes no
    street or water, and stays a footprint of its own; larger or ragged pieces keep every pixel."""
    from urbangen.footprints import AREA_TOLERANCE, BLOCKING, MAX_M2, MIN_M2, MIN_RECTANGULARITY, rectangular_footprints

    tiles, channels, mpp = real_tiles
    b = channels.index("buildings")
    blocking = [channels.index(c) for c in BLOCKING if c in channels]
    before, after, turned, redrawn, kept, pixels = [], [], [], 0, 0, []
    for tile in tiles:
        blob, blocked = _blobs(tile[..., b]), tile[..., blocking].any(axis=-1)
        out = rectangular_footprints(blob, blocked, mpp)
        assert not (out.astype(bool) & ~blob.astype(bool) & blocked).any()  # nothing new on a street or water
        pixels.append((int(blob.sum()), int(out.sum())))
        assert abs(pixels[-1][1] - pixels[-1][0]) <= 0.15 * pixels[-1][0] + 4, pixels[-1]
        labels, n = ndimage.label(blob, structure=ndimage.generate_binary_structure(2, 1))
        # As many footprints as drawn: no rectangle meets another footprint, none is cut in two by a street.
        assert ndimage.label(out, structure=ndimage.generate_binary_structure(2, 1))[1] == n
        for piece in range(1, n + 1):
            own = labels == piece
            area = own.sum()
            shape = max(_shapes(own.astype(np.uint8)), key=lambda g: g.area)
            box, direction = min_area_rectangle(np.asarray(shape.exterior.coords), step_deg=0.1)
            if area * mpp ** 2 > MAX_M2 or area * mpp ** 2 < MIN_M2 or area < MIN_RECTANGULARITY * box:
                np.testing.assert_array_equal(out[own], 1)  # kept as drawn
                kept += 1
                continue
            new = ndimage.label(out * ((labels == piece) | ~blob.astype(bool)),
                                structure=ndimage.generate_binary_structure(2, 1))[0]
            ids = np.unique(new[own & (out == 1)])
            if not len(ids[ids > 0]):
                continue  # hemmed in, or moved wholly off its old pixels: counted in the coverage check
            grown = new == np.bincount(new[own & (out == 1)]).argmax()
            g = max(_shapes(grown.astype(np.uint8)), key=lambda p: p.area)
            assert g.area <= (1 + AREA_TOLERANCE) * area, (g.area, area)  # of its own size, merged with none
            new_box, new_direction = min_area_rectangle(np.asarray(g.exterior.coords), step_deg=0.1)
            before.append(area / box)
            after.append(g.area / new_box)
            turn = abs(new_direction - direction) % (np.pi / 2)
            turned.append(np.rad2deg(min(turn, np.pi / 2 - turn)))
            redrawn += 1
    assert redrawn >= 50 and kept >= 10, (redrawn, kept)
    total = np.sum(pixels, axis=0)
    assert abs(total[1] / total[0] - 1) < 0.03, total  # building coverage as drawn
    assert np.mean(after) > np.mean(before) + 0.05, (np.mean(before), np.mean(after))
    assert np.median(turned) < 10.0, np.median(turned)


def test_real_rectangular_footprints_stay_where_they_are(real_tiles):
    """Real footprints are rectangles already: redrawn, their tiles keep nearly every building pixel."""
    from urbangen.footprints import BLOCKING, rectangular_footprints

    tiles, channels, mpp = real_tiles
    b = channels.index("buildings")
    blocking = [channels.index(c) for c in BLOCKING if c in channels]
    kept = [((rectangular_footprints(t[..., b], t[..., blocking].any(axis=-1), mpp) == 1) & (t[..., b] == 1)).sum()
            / t[..., b].sum() for t in tiles]
    assert np.mean(kept) > 0.9, np.mean(kept)


def test_a_chain_hands_on_its_buildings_stage_with_rectangular_footprints(real_tiles):
    """The shipped buildings stage around real streets: the chain's buildings are the stage's own, redrawn; with
    ``rectangular_footprints`` off, as the model drew them; the streets as given either way."""
    from dataclasses import replace

    import jax

    from urbangen.footprints import BLOCKING, rectangular_footprints
    from urbangen.pretrained import load_shipped

    tiles, channels, mpp = real_tiles
    chain = load_shipped("city-64").around_given()
    assert chain.rectangular_footprints
    # The setting survives the chain given the streets and sampling by selection.
    raw_chain = replace(load_shipped("city-64"), rectangular_footprints=False).around_given()
    assert not raw_chain.rectangular_footprints and not raw_chain.selecting(4, None).rectangular_footprints
    given = tiles[:8][..., [channels.index(c) for c in chain.spec.input_channels]]
    maps = np.zeros((len(given), 64, 64, len(chain.spec.parameter_names)), np.float32)
    key = jax.random.key(0)
    out, raw = (c.generate_tiles(maps, key, given) > 0.5 for c in (chain, raw_chain))
    names = list(chain.spec.output_channels)
    b = names.index("buildings")
    np.testing.assert_array_equal(np.delete(out, b, axis=-1), np.delete(raw, b, axis=-1))
    blocked = np.concatenate([given, raw], axis=-1)[..., [
        (list(chain.spec.input_channels) + names).index(c) for c in BLOCKING
        if c in chain.spec.input_channels or c in names]].any(axis=-1)
    expected = np.stack([rectangular_footprints(r[..., b], k, mpp) for r, k in zip(raw, blocked)])
    np.testing.assert_array_equal(out[..., b], expected)
    assert (out[..., b] != raw[..., b]).any()


def test_a_parameter_file_says_how_footprints_are_handed_on(tmp_path):
    """``footprints`` in a parameter file: rectangles or as drawn; left out, the chain's own setting (a shipped
    chain redraws); anything else refused by name."""
    import yaml

    from data_pipeline.errors import ParameterFileError
    from urbangen.generate.request import read_request

    def request(**extra):
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({"model": "city-64", "size_m": 256,
                                        "parameters": {"building_coverage": 0.2}, **extra}))
        return read_request(path)

    assert request().rectangular_footprints is None
    assert request(footprints="rectangles").rectangular_footprints is True
    assert request(footprints="as_drawn").rectangular_footprints is False
    with pytest.raises(ParameterFileError, match="footprints: must be one of 'rectangles' or 'as_drawn'"):
        request(footprints="squares")


def test_a_stage_keeps_clear_of_every_street_drawn_before_it_not_only_those_it_reads(real_tiles):
    """A buildings stage that reads no street channel, in a chain whose earlier stage drew streets: its redrawn
    rectangles keep off those streets, as they keep off the ones a stage reads."""
    from urbangen.footprints import rectangular_stage
    from urbangen.pretrained import load_shipped

    tiles, channels, mpp = real_tiles
    spec = load_shipped("city-64").stages[-1].spec.model_copy(update={"input_channels": ()})
    names = list(spec.output_channels)
    b = channels.index("buildings")
    stage_out = np.zeros((*tiles.shape[:3], len(names)), np.uint8)
    stage_out[..., names.index("buildings")] = np.stack([_blobs(t[..., b]) for t in tiles])
    streets = {c: tiles[..., channels.index(c)] for c in ("major_roads", "minor_roads", "cycle_foot")}
    on_streets = np.any(list(streets.values()), axis=0).astype(bool)
    new = {}
    for name, drawn in (("streets drawn", streets), ("none", None)):
        redrawn = rectangular_stage(stage_out, None, spec, drawn)[1][..., names.index("buildings")].astype(bool)
        new[name] = int((redrawn & ~stage_out[..., names.index("buildings")].astype(bool) & on_streets).sum())
    assert new["streets drawn"] == 0
    assert new["none"] > 0, new  # not told of them, rectangles do take street pixels: the case above is a test
