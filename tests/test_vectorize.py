"""The skeleton tracer on drawn streets whose graph is known: junction clusters stay one junction.

A street two pixels wide skeletonizes into a cluster of junction pixels where
it crosses another. A tracer that made a node of every cluster pixel and kept
the one-pixel paths between them as streets (as ``skan`` does) would count
spurious intersections and dead ends; see docs/architecture.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine

from urbangen.proximity import skeleton_paths
from urbangen.vectorize import street_frame, street_graph

CHANNELS = ["major_roads", "minor_roads", "cycle_foot", "buildings", "open_space", "water"]
MPP = 4.0


def _layout(draw) -> np.ndarray:
    layout = np.zeros((64, 64, len(CHANNELS)), np.uint8)
    draw(layout[..., CHANNELS.index("minor_roads")])
    return layout


def _graph(layout: np.ndarray):
    transform = Affine(MPP, 0, 0, 0, -MPP, 64 * MPP)
    streets = street_frame(layout, CHANNELS, transform, "EPSG:32632", MPP / 2)
    return streets, street_graph(streets, snap_m=MPP)


def _ends_and_junctions(graph) -> tuple[int, int]:
    counts = np.array([graph.nodes[n]["street_count"] for n in graph.nodes])
    return int((counts == 1).sum()), int((counts >= 3).sum())


@pytest.mark.parametrize("bar_row, stem_from, arms", [(31, 8, (23, 23, 23, 23)), (20, 20, (23, 23, 34))],
                         ids=["crossing", "tee"])
def test_two_wide_streets_meeting_have_a_free_end_per_arm_and_one_junction_cluster(bar_row, stem_from, arms):
    """A crossing has four free ends, a T three; the junction cluster lies where they meet, and every arm
    keeps its length (pixels from the junction to its end)."""
    def draw(m):
        m[bar_row:bar_row + 2, 8:56] = 1
        m[stem_from:56, 31:33] = 1

    streets, graph = _graph(_layout(draw))
    ends, junctions = _ends_and_junctions(graph)
    assert ends == len(arms)
    # The junction cluster's nodes lie within a pixel or two of where the streets meet, and nothing else branches.
    centre = np.array([32 * MPP, (63 - bar_row) * MPP])
    xy = np.array([[graph.nodes[n]["x"], graph.nodes[n]["y"]] for n in graph.nodes
                   if graph.nodes[n]["street_count"] >= 3])
    assert junctions >= 1 and np.abs(xy - centre).max() <= 2 * MPP
    long_arms = sorted(g.length / MPP for g in streets.geometry if g.length > 20 * MPP)
    assert len(long_arms) == len(arms)
    assert np.all(np.abs(np.array(long_arms) - sorted(arms)) <= 2), long_arms


def test_a_closed_loop_has_no_free_end_and_keeps_its_length():
    def ring(m):
        yy, xx = np.mgrid[:64, :64]
        r = np.hypot(yy - 31.5, xx - 31.5)
        m[(r >= 19) & (r < 21)] = 1

    streets, graph = _graph(_layout(ring))
    ends, _ = _ends_and_junctions(graph)
    assert ends == 0  # the loop meets its own node twice, as osmnx counts it: not a dead end
    length = shapely.union_all(streets.geometry.values).length
    assert abs(length - 2 * np.pi * 20 * MPP) <= 0.1 * 2 * np.pi * 20 * MPP


def test_spurs_shorter_than_min_pixels_are_dropped_but_junction_links_kept():
    m = np.zeros((32, 32), bool)
    m[15, 2:30] = True
    m[13:15, 16] = True  # a two-pixel spur off the line
    kept = skeleton_paths(m, min_pixels=3)
    covered = {p for path in kept for p in path}
    assert {(15, c) for c in range(3, 29)} <= covered  # the line survives whole, in pieces meeting at the spur
    assert (13, 16) not in covered  # the spur's free end is gone
    assert (13, 16) in {p for path in skeleton_paths(m, min_pixels=1) for p in path}  # kept when asked to


def test_a_street_cut_by_the_tile_edge_is_no_dead_end():
    """A tile is a window on a city: a street that runs off its edge goes on there, as it does in the city's
    own graph, which the requested parameters come from. Only a street that ends inside the tile is a dead
    end. A street across the tile has no node to count (dead-end share 0, as the pipeline gives a tile with
    no node); one from the edge to the middle has one end, a dead end; a T whose stem ends in the tile
    has one dead end and its junction, here a cluster of four skeleton nodes (the intersection count
    consolidates them within 10 m; the node count, like osmnx's of a simplified graph, does not): 1 of 5.
    Counting the cut ends, the shares were 1, 1 and 3 of 7."""
    from urbangen.measure import measure_tiles

    def across(m):
        m[31:33, :] = 1

    def to_the_middle(m):
        m[31:33, :32] = 1

    def t_with_a_stem(m):
        m[10:12, :] = 1
        m[10:40, 31:33] = 1

    shares = measure_tiles(np.stack([_layout(d) for d in (across, to_the_middle, t_with_a_stem)]), CHANNELS,
                           MPP)["dead_end_share"].tolist()
    assert shares == [0.0, 1.0, 0.2]


def test_a_road_drawn_in_the_cycle_channel_is_a_road_with_a_cycle_lane():
    """The pipeline draws a street's cycle lane as the street widened in the cycle/foot channel. Read back,
    that is one street with a lane (its length counted as cycle/foot length, once in all streets' length),
    not a road plus a cycleway on top of it: the share is 1 for a road with a lane along its whole length
    (0.5 when the lane was read as a way of its own), and a cycleway of its own beside a lane-less road of
    the same length still makes half."""
    from urbangen.measure import measure_tiles

    def with_lane(layout):
        layout[31:33, :, CHANNELS.index("minor_roads")] = 1
        layout[30:34, :, CHANNELS.index("cycle_foot")] = 1

    def beside(layout):
        layout[20:22, :, CHANNELS.index("minor_roads")] = 1
        layout[40:42, :, CHANNELS.index("cycle_foot")] = 1

    tiles = []
    for draw in (with_lane, beside):
        layout = np.zeros((64, 64, len(CHANNELS)), np.uint8)
        draw(layout)
        tiles.append(layout)
    streets, _ = _graph(tiles[0])
    assert streets["highway"].tolist() == ["residential"] and streets["cycle_infra"].tolist() == [True]
    shares = measure_tiles(np.stack(tiles), CHANNELS, MPP)["cycle_foot_share"].tolist()
    assert shares == pytest.approx([1.0, 0.5], abs=0.02)


def test_a_tile_measures_the_same_wherever_it_lies_in_the_batch(small_tiles):
    """``measure_tiles`` lays a batch side by side in one mosaic: each tile's parameters must not depend on its
    place there. Four real tiles, each copied to 16 places, with intersection nodes exactly 20 m (twice the
    consolidation tolerance) apart: projected, such a pair came out a few 1e-13 m either side of 20 m with the
    place, and merged into one intersection or stayed two (15.3 per km² apart)."""
    from data_pipeline.dataset import open_dataset
    from urbangen.measure import measure_tiles

    data = open_dataset(small_tiles)
    rows = [3, 19, 104, 140]  # the tiles of this set whose count changed with their place
    tiles = np.repeat(data.read_tiles(rows), 16, axis=0)  # tile k at places 16k to 16k + 15 of a 64-tile mosaic
    measured = measure_tiles(tiles, list(data.channels), data.meters_per_pixel)
    for k in range(len(rows)):
        copies = measured.iloc[16 * k:16 * k + 16].to_numpy(np.float64)
        np.testing.assert_array_equal(copies, np.broadcast_to(copies[:1], copies.shape), err_msg=str(rows[k]))


def test_street_frame_draws_each_skeleton_path_as_its_own_line_on_real_tiles(small_tiles):
    """The centre lines are built all at once (one shapely call, per-path shares by bincount); against each
    skeleton path drawn on its own (a LineString through its pixels' centres, simplified, its class the one
    most of its pixels have, a cycle/foot path on road pixels dropped as the road's lane), on 36 real
    Østerbro and Kennesaw tiles side by side: the same lines, in the same order, with the same tags."""
    from data_pipeline.dataset import open_dataset
    from urbangen.vectorize import CHANNEL_HIGHWAY

    data = open_dataset(small_tiles)
    tiles = data.read_tiles(np.linspace(0, len(data) - 1, 36).astype(int))
    layout = np.concatenate([np.concatenate(list(tiles[r * 6:r * 6 + 6]), axis=1) for r in range(6)], axis=0)
    channels = data.channels
    transform = Affine(MPP, 0, 0, 0, -MPP, layout.shape[0] * MPP)
    streets = street_frame(layout, channels, transform, "EPSG:32632", MPP / 2)

    def plane(name):
        return layout[..., channels.index(name)].astype(bool)

    def line(path):
        rows, cols = np.array(path, dtype=np.float64).T
        return shapely.LineString(np.column_stack([cols + 0.5, layout.shape[0] - (rows + 0.5)]) * MPP).simplify(MPP / 2)

    road = plane("major_roads") | plane("minor_roads")
    expected = []
    for path in skeleton_paths(road):
        r, c = np.array(path).T
        kind = "major_roads" if plane("major_roads")[r, c].sum() * 2 > len(path) else "minor_roads"
        expected.append((line(path), CHANNEL_HIGHWAY[kind], bool(plane("cycle_foot")[r, c].mean() > 0.5)))
    for path in skeleton_paths(plane("cycle_foot")):
        r, c = np.array(path).T
        if road[r, c].mean() <= 0.5:
            expected.append((line(path), CHANNEL_HIGHWAY["cycle_foot"], False))  # a way, not a lane
    assert len(streets) == len(expected) > 100
    assert [h for _, h, _ in expected].count("primary") > 0 and [h for _, h, _ in expected].count("cycleway") > 0
    assert shapely.equals_exact(streets.geometry.values, np.array([g for g, _, _ in expected]), tolerance=1e-9).all()
    assert streets["highway"].tolist() == [h for _, h, _ in expected]
    assert streets["cycle_infra"].tolist() == [lane for _, _, lane in expected]
