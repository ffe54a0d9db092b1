"""Street networks as osmnx and Boeing define them, and the statistics measured on them.

Which ways form a network is osmnx's own Overpass filter for the network type
(``osmnx._overpass._get_network_filter``), parsed and evaluated on the ways'
tags, so the definitions stay those of the installed osmnx. The drive graph is
built from the filtered ways as ``osmnx.graph._create_graph`` builds it (one
directed edge per consecutive node pair, both directions unless one-way) and
simplified by ``osmnx.simplify_graph``, which also merges degree-2 joins
between ways. Street counts per node are ``osmnx.stats.count_streets_per_node``
and undirected edges follow ``osmnx.convert.to_undirected``'s rule.

References
----------
Boeing, G. (2025). Modeling and Analyzing Urban Networks and Amenities with
OSMnx. Geographical Analysis. https://doi.org/10.1111/gean.70009
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.stats import entropy as shannon_entropy

from data_pipeline.errors import InvalidValueError

#: Network types whose osmnx filters the pipeline evaluates.
NETWORK_TYPES = ("drive", "walk")
#: osmnx's values of ``oneway`` meaning one-way, and one-way against the node order (``osmnx.graph._add_paths``).
_ONEWAY_VALUES = frozenset({"yes", "true", "1", "-1", "reverse", "T", "F"})
_REVERSED_VALUES = frozenset({"-1", "reverse", "T"})
#: Tags the graph itself needs besides the filters' keys.
GRAPH_TAGS = ("oneway", "junction")
_CLAUSE = re.compile(r'\["([^"]+)"(?:(!?~)"([^"]*)")?\]')


@dataclass(frozen=True)
class WayFilter:
    """An osmnx Overpass way filter such as ``["highway"]["service"!~"parking|private"]``.

    Each clause is ``(key, op, regex)``: ``op`` is ``""`` (the key must be
    present), ``"~"`` (present and the regex found in the value) or ``"!~"``
    (absent, or the regex not found), as Overpass evaluates them.
    """

    network_type: str
    clauses: tuple[tuple[str, str, str], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for k, _, _ in self.clauses))

    def mask(self, tags: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the rows (one per way, one column per tag key, None when absent) that pass."""
        keep = np.ones(len(tags), dtype=bool)
        for key, op, regex in self.clauses:
            if key not in tags.columns:
                keep &= op == "!~"  # an absent key passes only "absent, or the regex not found"
                continue
            values = tags[key].to_numpy(dtype=object)
            present = pd.notna(values)
            if op == "":
                keep &= present
                continue
            # Tag values repeat (a few dozen highway values over thousands of ways): each distinct one is
            # searched once, as Overpass's (and pandas' str.contains') re.search.
            distinct, index = np.unique(np.array([str(v) for v in values[present]], dtype=object),
                                        return_inverse=True)
            pattern = re.compile(regex)
            found = np.zeros(len(values), dtype=bool)
            found[present] = np.array([pattern.search(v) is not None for v in distinct], dtype=bool)[index.ravel()] \
                if len(distinct) else False
            keep &= found if op == "~" else ~found
        return keep


@cache
def way_filter(network_type: str) -> WayFilter:
    """osmnx's way filter for ``network_type`` (``drive``, ``walk``, ``bike``, ...), parsed.

    Raises
    ------
    ValueError
        If osmnx does not know the network type or its filter has a form this parser does not read.
    """
    from osmnx import _overpass

    text = _overpass._get_network_filter(network_type)
    clauses = tuple((k, op or "", rx or "") for k, op, rx in _CLAUSE.findall(text))
    if "".join(m.group(0) for m in _CLAUSE.finditer(text)) != text:
        raise InvalidValueError(f"osmnx's {network_type!r} filter has a clause this parser does not read: {text}")
    return WayFilter(network_type, clauses)


def filter_keys(network_types: Iterable[str] = NETWORK_TYPES) -> tuple[str, ...]:
    """Every tag key the filters of ``network_types`` read."""
    return tuple(dict.fromkeys(k for t in network_types for k in way_filter(t).keys))


@dataclass(frozen=True)
class StreetGraph:
    """The undirected edges and the nodes of an osmnx-simplified street graph.

    Attributes
    ----------
    node_xy
        (n, 2) projected node coordinates (metres).
    node_lonlat
        (n, 2) node longitude and latitude (degrees), for bearings.
    street_count
        (n,) ``osmnx.stats.count_streets_per_node`` of each node.
    u, v
        (m,) node index of each undirected edge's ends (``osmnx.convert.to_undirected``).
    """

    node_xy: np.ndarray
    node_lonlat: np.ndarray
    street_count: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @classmethod
    def empty(cls) -> StreetGraph:
        nothing = np.zeros(0, dtype=np.int64)
        return cls(np.zeros((0, 2)), np.zeros((0, 2)), nothing, nothing, nothing)


def _vertex_ids(lonlat: np.ndarray, line_of: np.ndarray, node_ids: pd.Series | None) -> np.ndarray:
    """An id per line vertex: the OSM node ids where the source has them, else one per location."""
    if node_ids is not None and node_ids.notna().all():
        ids = (np.concatenate([np.asarray(n, dtype=np.int64) for n in node_ids]) if len(node_ids)
               else np.zeros(0, np.int64))
        if len(ids) == len(lonlat):
            return ids
    # Downloads without node lists and GraphML: vertices at the same place (to 1e-7 degrees) are one node.
    keys = np.round(lonlat * 1e7).astype(np.int64)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    return -1 - inverse.ravel().astype(np.int64)


def _vertices_simplify_keeps(ids: np.ndarray, line_of: np.ndarray) -> np.ndarray:
    """Mask of the vertices that must stay for ``osmnx.simplify_graph`` to give its own result.

    A vertex that no other way (and no other point of its own way) uses, inside
    a way, is never an osmnx endpoint: it has two neighbours, in and out edges,
    and degree 2 or 4. Simplification would merge it away, so a run of such
    vertices is cut to its first one before the graph is built, which makes
    simplification several times faster. One vertex per run stays so that two
    runs between the same pair of nodes stay two edges (``to_undirected`` tells
    edges apart by their geometry), and two stay when a run starts and ends at
    the same node (a ring), which would otherwise become a stub.
    """
    n = len(ids)
    uses = np.unique(ids, return_inverse=True, return_counts=True)
    shared = uses[2][uses[1].ravel()] >= 2
    first = np.r_[True, line_of[1:] != line_of[:-1]]
    last = np.r_[line_of[1:] != line_of[:-1], True]
    prev_id = np.r_[-1, ids[:-1]]
    next_id = np.r_[ids[1:], -1]
    # A spike (..., p, x, p, ...) makes x an endpoint: it has a single neighbour.
    anchor = first | last | shared | (~first & ~last & (prev_id == next_id))
    keep = anchor.copy()
    # Runs of free vertices between anchors: keep the first, and the last as well when both anchors are one node.
    free = ~anchor
    starts = np.flatnonzero(free & np.r_[True, ~free[:-1]])
    ends = np.flatnonzero(free & np.r_[~free[1:], True])
    keep[starts] = True
    ring = ids[np.maximum(starts - 1, 0)] == ids[np.minimum(ends + 1, n - 1)]
    keep[ends[ring]] = True
    return keep


def build_street_graph(lines_lonlat: np.ndarray, tags: pd.DataFrame, crs,
                       node_ids: pd.Series | None = None) -> StreetGraph:
    """Build and simplify the osmnx graph of some street ways.

    Parameters
    ----------
    lines_lonlat
        Array of shapely LineStrings in lon/lat, one per way.
    crs
        The projected CRS of the graph's node coordinates.
    tags
        One row per way with at least the :data:`GRAPH_TAGS` columns
        (missing columns count as absent tags).
    node_ids
        Per way, the OSM node id of each vertex (None where unknown: then
        vertices at the same location are one node).
    """
    import networkx as nx
    import osmnx as ox
    import shapely

    parts, owner = shapely.get_parts(lines_lonlat, return_index=True)
    if len(parts) != len(lines_lonlat):  # multi-part lines: each part its own way, never joined end to end
        tags, node_ids = tags.iloc[owner].reset_index(drop=True), None
    lonlat, line_of = shapely.get_coordinates(parts, return_index=True)
    if len(lonlat) == 0:
        return StreetGraph.empty()
    ids = _vertex_ids(lonlat, line_of, node_ids)

    # osmnx.graph._add_paths: consecutive duplicate nodes dropped, one-way paths in one direction only.
    keep = np.r_[True, (line_of[1:] != line_of[:-1]) | (ids[1:] != ids[:-1])]
    ids, line_of, lonlat = ids[keep], line_of[keep], lonlat[keep]
    ids, line_of, lonlat = (a[_vertices_simplify_keeps(ids, line_of)] for a in (ids, line_of, lonlat))
    same_line = line_of[1:] == line_of[:-1]
    a, b, way = ids[:-1][same_line], ids[1:][same_line], line_of[:-1][same_line]
    oneway_tag = tags["oneway"].to_numpy(dtype=object) if "oneway" in tags.columns else np.full(len(tags), None)
    junction = tags["junction"].to_numpy(dtype=object) if "junction" in tags.columns else np.full(len(tags), None)
    oneway = np.array([o in _ONEWAY_VALUES or j == "roundabout" for o, j in zip(oneway_tag, junction)], dtype=bool)
    backwards = np.array([o in _REVERSED_VALUES and one for o, one in zip(oneway_tag, oneway)], dtype=bool)
    fwd_u, fwd_v = np.where(backwards[way], b, a), np.where(backwards[way], a, b)
    two_way = ~oneway[way]
    us = np.r_[fwd_u, fwd_v[two_way]]
    vs = np.r_[fwd_v, fwd_u[two_way]]
    osmid = np.r_[way, way[two_way]]  # the way's row stands for its OSM id

    first: dict[int, int] = {}
    for i, vid in enumerate(ids):
        first.setdefault(int(vid), i)
    graph = nx.MultiDiGraph(crs="EPSG:4326")
    graph.add_nodes_from((vid, {"x": float(lonlat[i, 0]), "y": float(lonlat[i, 1])}) for vid, i in first.items())
    graph.add_edges_from((int(p), int(q), {"osmid": int(w)}) for p, q, w in zip(us, vs, osmid))
    graph.remove_nodes_from([n for n in list(graph.nodes) if graph.degree(n) == 0])
    return street_graph_of(ox.simplify_graph(graph), crs)


def street_graph_of(graph, crs) -> StreetGraph:
    """The :class:`StreetGraph` of an osmnx-simplified lon/lat MultiDiGraph, nodes projected to ``crs``."""
    import osmnx as ox
    from pyproj import Transformer

    counts = ox.stats.count_streets_per_node(graph)
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    lonlat = np.array([(graph.nodes[n]["x"], graph.nodes[n]["y"]) for n in nodes], dtype=np.float64).reshape(-1, 2)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lonlat[:, 0], lonlat[:, 1])
    edges = np.array([(index[p], index[q]) for p, q in _undirected_edges(graph)], dtype=np.int64).reshape(-1, 2)
    return StreetGraph(
        node_xy=np.column_stack([x, y]).reshape(-1, 2),
        node_lonlat=lonlat,
        street_count=np.array([counts[n] for n in nodes], dtype=np.int64),
        u=edges[:, 0],
        v=edges[:, 1],
    )


def _undirected_edges(graph) -> list[tuple]:
    """The edges ``osmnx.convert.to_undirected`` keeps, as (u, v) pairs, without building the MultiGraph.

    osmnx's rule, step by step (that copy of the graph costs seconds on a city):

    1. every edge gets a geometry (the straight line between its nodes if it has none);
    2. of directed edges with the same two nodes and the same key, the first gets a new key
       when any two of them differ in geometry (``_update_edge_keys``);
    3. in the undirected graph, (u, v, k) and (v, u, k) are one edge, whatever their ways;
    4. of the edges left between two nodes, those with the same OSM ids and the same
       geometry up to direction are one (a two-way street's two directions).
    """
    from itertools import combinations

    edges = []
    for u, v, k, data in graph.edges(keys=True, data=True):
        geometry = data.get("geometry")
        coords = tuple(geometry.coords) if geometry is not None else (
            (graph.nodes[u]["x"], graph.nodes[u]["y"]), (graph.nodes[v]["x"], graph.nodes[v]["y"]))
        osmid = data["osmid"]
        ids = frozenset(osmid) if isinstance(osmid, (list, set, frozenset, tuple)) else osmid
        edges.append([u, v, k, ids, min(coords, coords[::-1])])
    groups: dict[tuple, list[int]] = {}
    for i, (u, v, k, _, _) in enumerate(edges):
        groups.setdefault((frozenset((u, v)), k), []).append(i)
    rekey = {idx[0] for idx in groups.values()
             if any(edges[a][4] != edges[b][4] for a, b in combinations(idx, 2))}
    keys: dict[frozenset, set] = {}
    for u, v, k, _, _ in edges:
        keys.setdefault(frozenset((u, v)), set()).add(k)
    for i in rekey:
        pair = frozenset(edges[i][:2])
        edges[i][2] = max(keys[pair]) + 1
        keys[pair].add(edges[i][2])
    undirected: dict[tuple, list] = {}
    for edge in edges:  # a later edge on the same key replaces the earlier one's data, as networkx does
        undirected[(frozenset(edge[:2]), edge[2])] = edge
    kept: dict[tuple, tuple] = {}
    for u, v, _, ids, coords in undirected.values():
        kept.setdefault((frozenset((u, v)), ids, coords), (u, v))
    return list(kept.values())


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
    counts = bearing_counts(graph, edges, num_bins)
    return float(shannon_entropy(counts)) if counts.sum() else float("nan")


def bearing_counts(graph: StreetGraph, edges: np.ndarray | None = None, num_bins: int = 36) -> np.ndarray:
    """The bearing histogram :func:`orientation_entropy` takes the entropy of (counts of edge sets add up)."""
    u, v = graph.u, graph.v
    if edges is not None:
        u, v = u[edges], v[edges]
    keep = u != v
    u, v = u[keep], v[keep]
    if len(u) == 0:
        return np.zeros(num_bins, dtype=np.int64)
    lon, lat = graph.node_lonlat[:, 0], graph.node_lonlat[:, 1]
    b = bearings(lon[u], lat[u], lon[v], lat[v])
    b = np.concatenate([b, (b - 180.0) % 360.0])
    split_counts, _ = np.histogram(b, bins=np.linspace(0, 360, 2 * num_bins + 1))
    split_counts = np.roll(split_counts, 1)
    return split_counts[::2] + split_counts[1::2]


def intersection_clusters(graph: StreetGraph, tolerance_m: float, min_streets: int = 3) -> np.ndarray:
    """Centres (x, y) of intersections after merging nearby intersection nodes.

    Nodes with at least ``min_streets`` street segments are buffered by
    ``tolerance_m`` and overlapping buffers are merged, as
    ``osmnx.consolidate_intersections(G, tolerance, rebuild_graph=False)``
    does: two nodes fall in one cluster when a chain of nodes less than
    ``2 * tolerance_m`` apart links them. Each cluster's centre is the
    mean of its nodes.
    """
    pts, label = intersection_members(graph, tolerance_m, min_streets)
    if len(pts) == 0:
        return np.zeros((0, 2))
    n_clusters = int(label.max()) + 1
    counts = np.bincount(label, minlength=n_clusters)[:, None]
    sums = np.zeros((n_clusters, 2))
    np.add.at(sums, label, pts)
    return sums / counts


#: Metres short of ``2 * tolerance_m`` that nodes must lie to merge. osmnx's buffers of two nodes exactly that far
#: apart only touch, and stay two clusters. Such pairs are common in drawn layouts (their nodes lie on the pixel
#: grid), and their coordinates come out of the projection a few 1e-13 m off, by an amount that depends on where
#: the layout lies: linked within ``2 * tolerance_m`` itself, a pair merged or not with the tile's place in a
#: batch (:func:`urbangen.measure.measure_tiles`). Real OSM nodes that close to a tie are a chance in millions.
_TIE_MARGIN_M = 1e-6


def intersection_members(graph: StreetGraph, tolerance_m: float, min_streets: int = 3
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The intersection nodes' coordinates (n, 2) and the cluster of each (n,), as
    :func:`intersection_clusters` merges them."""
    pts = graph.node_xy[graph.street_count >= min_streets]
    if len(pts) == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    pairs = cKDTree(pts).query_pairs(r=2.0 * tolerance_m - _TIE_MARGIN_M, output_type="ndarray")
    adjacency = sparse.coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pts), len(pts))
    )
    _, label = connected_components(adjacency, directed=False)
    return pts, label
