"""The skeleton tracer on drawn streets whose graph is known: junction clusters stay one junction.

A street two pixels wide skeletonizes into a cluster of junction pixels where
it crosses another. A tracer that made a node of every cluster pixel and kept
the one-pixel paths between them as streets (as ``skan`` does) would count
spurious intersections and dead ends; see docs/architecture.md.
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine

from urbangen.vectorize import skeleton_paths, street_frame, street_graph

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


def test_a_crossing_of_two_wide_streets_has_four_free_ends_and_one_junction_cluster():
    def cross(m):
        m[31:33, 8:56] = 1
        m[8:56, 31:33] = 1

    streets, graph = _graph(_layout(cross))
    ends, junctions = _ends_and_junctions(graph)
    assert ends == 4
    # The junction cluster's nodes lie within a pixel or two of the crossing, and nothing else branches.
    centre = np.array([32 * MPP, 32 * MPP])
    xy = np.array([[graph.nodes[n]["x"], graph.nodes[n]["y"]] for n in graph.nodes
                   if graph.nodes[n]["street_count"] >= 3])
    assert junctions >= 1 and np.abs(xy - centre).max() <= 2 * MPP
    # Every arm keeps its length: four arms of about 24 px from the crossing.
    long_arms = [g for g in streets.geometry if g.length > 20 * MPP]
    assert len(long_arms) == 4
    assert abs(sum(g.length for g in long_arms) - 4 * 23 * MPP) <= 4 * 2 * MPP


def test_a_t_junction_has_three_free_ends():
    def tee(m):
        m[20:22, 8:56] = 1
        m[20:56, 31:33] = 1

    _, graph = _graph(_layout(tee))
    ends, junctions = _ends_and_junctions(graph)
    assert ends == 3 and junctions >= 1


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
