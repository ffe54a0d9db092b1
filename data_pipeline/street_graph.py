"""A street graph built from street lines, and the statistics osmnx computes on one.

Nodes are the line vertices shared by two or more lines (or by one line twice)
and the lines' ends; edges run along the lines between consecutive nodes.
This is the topology of an osmnx ``simplify=True`` graph, built with NumPy
instead of node-by-node Python, so that it also serves downloads and GraphML
sources whose lines carry no OSM node ids (vertices with the same
coordinates, to 1e-7 degrees, are the same node).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.stats import entropy as shannon_entropy


@dataclass(frozen=True)
class StreetGraph:
    """Undirected street multigraph.

    Attributes
    ----------
    node_xy
        (n, 2) projected node coordinates (metres).
    node_lonlat
        (n, 2) node longitude and latitude (degrees), for bearings.
    u, v
        (m,) node index of each edge's ends, in line direction.
    length
        (m,) edge length along the line, metres.
    """

    node_xy: np.ndarray
    node_lonlat: np.ndarray
    u: np.ndarray
    v: np.ndarray
    length: np.ndarray

    @property
    def street_count(self) -> np.ndarray:
        """Street segments meeting at each node (osmnx's ``street_count``; a self-loop counts twice)."""
        n = len(self.node_xy)
        return np.bincount(self.u, minlength=n) + np.bincount(self.v, minlength=n)


def build_street_graph(lines_xy: np.ndarray, lines_lonlat: np.ndarray) -> StreetGraph:
    """Build the graph from the same lines in projected and lon/lat coordinates.

    Parameters
    ----------
    lines_xy, lines_lonlat
        Arrays of shapely LineStrings, index-aligned, with the same vertices.
    """
    xy, line_of = shapely.get_coordinates(lines_xy, return_index=True)
    lonlat = shapely.get_coordinates(lines_lonlat)
    if len(xy) != len(lonlat):
        raise ValueError("projected and lon/lat lines must have the same vertices")
    if len(xy) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return StreetGraph(np.zeros((0, 2)), np.zeros((0, 2)), empty, empty, np.zeros(0))

    keys = np.round(lonlat * 1e7).astype(np.int64)
    _, first, vertex_node = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    vertex_node = vertex_node.ravel()
    uses = np.bincount(vertex_node)

    starts = np.r_[True, line_of[1:] != line_of[:-1]]
    ends = np.r_[line_of[1:] != line_of[:-1], True]
    is_node = starts | ends | (uses[vertex_node] >= 2)

    seg_len = np.r_[0.0, np.hypot(*np.diff(xy, axis=0).T)]
    seg_len[starts] = 0.0
    along = np.cumsum(seg_len)

    pos = np.flatnonzero(is_node)
    same_line = line_of[pos[:-1]] == line_of[pos[1:]]
    a, b = pos[:-1][same_line], pos[1:][same_line]
    u_all, v_all = vertex_node[a], vertex_node[b]

    # Renumber so the graph holds only vertices that are nodes.
    used = np.unique(np.r_[u_all, v_all])
    remap = np.full(len(first), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return StreetGraph(
        node_xy=xy[first[used]],
        node_lonlat=lonlat[first[used]],
        u=remap[u_all],
        v=remap[v_all],
        length=along[b] - along[a],
    )


def bearings(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray:
    """Initial compass bearing (degrees, 0 to 360) of the great circle from point 1 to point 2.

    The same formula as ``osmnx.bearing.calculate_bearing``.
    """
    lat1, lat2 = np.deg2rad(lat1), np.deg2rad(lat2)
    dlon = np.deg2rad(lon2 - lon1)
    y = np.sin(dlon) * np.cos(lat2)
    x = np.cos(lat1) * np.sin(lat2) - np.sin(lat1) * np.cos(lat2) * np.cos(dlon)
    return np.rad2deg(np.arctan2(y, x)) % 360.0


def orientation_entropy(
    graph: StreetGraph, edges: np.ndarray | None = None, num_bins: int = 36
) -> float:
    """Shannon entropy (nats) of the edges' bearings, as ``osmnx.bearing.orientation_entropy``.

    Each undirected edge gives two reciprocal bearings; self-loops are ignored;
    bins are ``360 / num_bins`` degrees wide with the first centred on 0
    degrees (osmnx splits bins in two to avoid edge effects, as here).

    Parameters
    ----------
    graph
        The street graph.
    edges
        Boolean mask or indices of the edges to use (default: all).
    num_bins
        Number of bearing bins.

    Returns
    -------
    float
        The entropy; NaN when no edge is left.
    """
    u, v = graph.u, graph.v
    if edges is not None:
        u, v = u[edges], v[edges]
    keep = u != v
    u, v = u[keep], v[keep]
    if len(u) == 0:
        return float("nan")
    lon, lat = graph.node_lonlat[:, 0], graph.node_lonlat[:, 1]
    b = bearings(lon[u], lat[u], lon[v], lat[v])
    b = np.concatenate([b, (b - 180.0) % 360.0])
    split_counts, _ = np.histogram(b, bins=np.linspace(0, 360, 2 * num_bins + 1))
    split_counts = np.roll(split_counts, 1)
    return float(shannon_entropy(split_counts[::2] + split_counts[1::2]))


def intersection_clusters(graph: StreetGraph, tolerance_m: float, min_streets: int = 3) -> np.ndarray:
    """Centres (x, y) of intersections after merging nearby intersection nodes.

    Nodes with at least ``min_streets`` street segments are buffered by
    ``tolerance_m`` and overlapping buffers are merged, as
    ``osmnx.consolidate_intersections(G, tolerance, rebuild_graph=False)``
    does: two nodes fall in one cluster when a chain of nodes less than
    ``2 * tolerance_m`` apart links them. Each cluster's centre is the
    mean of its nodes.
    """
    pts = graph.node_xy[graph.street_count >= min_streets]
    if len(pts) == 0:
        return np.zeros((0, 2))
    pairs = cKDTree(pts).query_pairs(r=2.0 * tolerance_m, output_type="ndarray")
    adjacency = sparse.coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pts), len(pts))
    )
    n_clusters, label = connected_components(adjacency, directed=False)
    counts = np.bincount(label, minlength=n_clusters)[:, None]
    sums = np.zeros((n_clusters, 2))
    np.add.at(sums, label, pts)
    return sums / counts
