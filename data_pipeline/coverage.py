"""Where a city's data was mapped: its coverage polygon, and each tile's share inside it.

A tile outside the ground an extract covers is not "known empty": nothing was
mapped there. The polygon comes, in this order, from the user's ``--clip`` or
``--boundary``, a place's boundary, the source's own bounds (a PBF header box,
an XML ``<bounds>``, a download's query box), or, failing all of those, an
estimate from where the extract's ways are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS
from scipy import ndimage

from data_pipeline.errors import BoundaryError

WGS84 = "EPSG:4326"
#: Longest segment, in degrees, of a lon/lat polygon before it is projected: a
#: lon/lat box is a curved quadrilateral in UTM, not its axis-aligned box.
_DENSIFY_DEG = 0.0005


@dataclass(frozen=True)
class Coverage:
    """A coverage polygon and where it came from.

    Attributes
    ----------
    polygon
        Polygon or MultiPolygon, in the CRS of the features it belongs to.
    source
        ``clip``, ``boundary``, ``place``, ``bounds`` or ``estimated``.
    """

    polygon: shapely.Geometry
    source: str

    def to_crs(self, crs_from, crs_to) -> Coverage:
        dense = shapely.segmentize(self.polygon, _DENSIFY_DEG) if CRS.from_user_input(crs_from).is_geographic \
            else self.polygon
        return Coverage(gpd.GeoSeries([dense], crs=crs_from).to_crs(crs_to).iloc[0], self.source)


def clip_coverage(west: float, south: float, east: float, north: float) -> Coverage:
    """The coverage of a ``--clip W S E N`` box in degrees."""
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise BoundaryError(f"--clip W S E N = {west} {south} {east} {north} is not a lon/lat box (W < E, S < N)")
    return Coverage(shapely.box(west, south, east, north), "clip")


def boundary_coverage(path: str | Path) -> Coverage:
    """The coverage of a ``--boundary`` file: the union of its polygons, in any CRS (lon/lat when it names none).

    Raises
    ------
    BoundaryError
        If the file is missing, unreadable or holds no polygon.
    """
    path = Path(path)
    if not path.is_file():
        raise BoundaryError(f"{path}: no such boundary file")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - pyogrio raises several kinds for a bad file
        raise BoundaryError(f"{path}: not readable as a vector file ({exc})") from exc
    frame = frame[frame.geom_type.isin(["Polygon", "MultiPolygon"])]
    if frame.empty:
        raise BoundaryError(f"{path}: holds no polygon to clip to")
    if frame.crs is None:
        frame = frame.set_crs(WGS84)
    geometry = shapely.segmentize(frame.to_crs(WGS84).union_all(), _DENSIFY_DEG)
    return Coverage(shapely.make_valid(geometry), "boundary")


def estimate_coverage(points: np.ndarray, owners: np.ndarray, cell_m: float) -> shapely.Geometry:
    """Estimate where an extract was mapped from the vertices of its ways (projected metres).

    The ground is cut in ``cell_m`` cells and a cell counts as mapped when at
    least a tenth as many distinct ways reach it as reach a typical busy cell
    (the 90th percentile), and at least three. Ways that only pass through
    (a long road leaving an Overpass box, a relation's far-away members) give
    sparse cells and fall below that. Gaps of up to two cells are closed (a
    3 x 3 closing), holes (parks, lakes) filled, and clusters smaller than a
    tenth of the largest dropped: a second town far off in the same file is
    dropped too, so give it its own ``--clip``.

    The same as :func:`coverage_from_cell_counts` of :func:`cell_way_counts`, which
    a streamed read adds up chunk by chunk.

    Parameters
    ----------
    points
        (n, 2) vertices of the streets and buildings.
    owners
        (n,) index of the way each vertex belongs to.
    cell_m
        Cell side in metres.
    """
    return coverage_from_cell_counts(*cell_way_counts(points, owners, cell_m), cell_m)


def cell_way_counts(points: np.ndarray, owners: np.ndarray, cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The cells (``(k, 2)`` int64 indices ``floor(xy / cell_m)``) that ways reach, and how many distinct ways.

    Counts of disjoint sets of ways add up: a file read in chunks gives the
    counts of the whole file as the sum of its chunks' (:func:`add_cell_counts`).
    """
    if len(points) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    cells = np.floor(points / cell_m).astype(np.int64)
    pairs = np.unique(np.column_stack([cells, np.asarray(owners, dtype=np.int64)]), axis=0)  # each way once per cell
    return np.unique(pairs[:, :2], axis=0, return_counts=True)


def add_cell_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sum :func:`cell_way_counts` of disjoint sets of ways."""
    cells = np.concatenate([c for c, _ in parts]) if parts else np.zeros((0, 2), np.int64)
    counts = np.concatenate([n for _, n in parts]) if parts else np.zeros(0, np.int64)
    if not len(cells):
        return cells, counts
    unique, inverse = np.unique(cells, axis=0, return_inverse=True)
    return unique, np.bincount(inverse.ravel(), weights=counts, minlength=len(unique)).astype(np.int64)


def coverage_from_cell_counts(cells: np.ndarray, counts: np.ndarray, cell_m: float) -> shapely.Geometry:
    """The mapped area from per-cell way counts (see :func:`estimate_coverage` for the rule)."""
    if len(cells) == 0:
        return shapely.Polygon()
    origin = cells.min(axis=0) - 1  # one empty cell around, for the closing
    local = cells - origin
    shape = tuple(local.max(axis=0) + 2)
    grid = np.zeros(shape, dtype=np.int64)
    grid[local[:, 0], local[:, 1]] = counts
    threshold = max(3.0, 0.1 * np.percentile(grid[grid > 0], 90))
    mapped = ndimage.binary_closing(grid >= threshold, structure=np.ones((3, 3)))
    mapped = ndimage.binary_fill_holes(mapped)
    labels, n = ndimage.label(mapped, structure=np.ones((3, 3)))
    if n == 0:
        return shapely.Polygon()
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.1 * sizes.max()))
    ix, iy = np.nonzero(keep)
    ix, iy = ix + origin[0], iy + origin[1]
    return shapely.union_all(shapely.box(ix * cell_m, iy * cell_m, (ix + 1) * cell_m, (iy + 1) * cell_m))


def inside_share(polygon: shapely.Geometry, boxes: np.ndarray) -> np.ndarray:
    """Share of each box's area that lies inside ``polygon``."""
    shapely.prepare(polygon)
    share = np.ones(len(boxes))
    # Boxes wholly inside need no intersection: the common case, and the slow one to compute.
    inside = shapely.contains(polygon, boxes)
    rest = np.flatnonzero(~inside)
    if len(rest):
        share[rest] = shapely.area(shapely.intersection(boxes[rest], polygon)) / shapely.area(boxes[rest])
    return share
