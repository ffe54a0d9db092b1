"""Generated footprints redrawn as rectangles: the shapes a planner reads as buildings.

The buildings stages draw footprints as soft blobs: rounded, ragged at the
edge, where real ones at 4 m/px are rectangles whose edges step along the
pixel grid. The form evaluator measures it (:mod:`urbangen.evaluators.form`):
on four draws of 96 validation tiles of the offline city set (tile-choice
seeds 1 to 4), `city-64`'s footprint rectangularity averaged 0.62 against
real 0.69 to 0.72, its Wasserstein-1 distance 2.7, 5.3, 5.3 and 6.2 times
the real-versus-real floor (target 2).

A chain's buildings stage therefore hands on its kept sample with each
compact, house-sized footprint (at least :data:`MIN_M2`, at most
:data:`MAX_M2`, filling at least :data:`MIN_RECTANGULARITY` of its smallest
enclosing rectangle) redrawn as a rectangle along that enclosing rectangle:
the same centre, direction and aspect, scaled to the footprint's own number
of pixels (the nearest of :data:`SCALES`, within :data:`AREA_TOLERANCE`), drawn
whole on ground that no street, water or other building holds or touches: each
rectangle stays a footprint of its own, never cut in two by a street. What the model drew
decides where a building stands, how large it is and which way it faces;
the redrawing decides only that its outline is straight. Larger footprints,
and ragged ones (courtyard blocks, L-shapes, terraces that touch), keep the
shape the model drew: real large footprints are not rectangles either, and
redrawing every footprint up to 6,400 m² (a first version, whose rectangles
did not yet keep each footprint's pixel count) overshot: 0.83 against real
0.69 (6.0 x the floor on seed 1). The sample is chosen before it is redrawn
(:mod:`urbangen.generate.selection` scores the model's own pixels, whose
count the redrawing keeps).

Chosen on those validation draws (the bar's test tiles were not looked at
until the choice was made): redrawing footprints up to 384, 768 and 1,536 m²
scored rectangularity at a mean of 1.95 x, 1.95 x and 2.67 x the floor over
the four draws, and 768 m² (48 px at 4 m/px) kept buildings aligned best.
With :data:`AREA_TOLERANCE` (added when a test on real tiles found thin
pieces of a few pixels doubled), the four draws scored rectangularity 0.82,
1.48, 1.18 and 2.03 x (as drawn 2.71, 5.26, 5.31, 6.16 x), building
alignment 1.14, 0.88, 0.34 and 1.07 x (as drawn 1.29, 1.19, 0.39, 1.39 x),
and building coverage's conditioning error 0.0213, 0.0179, 0.0188 and 0.0156
(as drawn 0.0213, 0.0177, 0.0186, 0.0155). On 256 tiles of the bar's test
regions, where real footprints are less rectangular than the training
regions' (0.66 against 0.69) and the floor is wider, tile-choice seeds 0, 1
and 2: rectangularity 1.34, 1.23 and 1.12 x (as drawn 1.06, 1.14, 1.02 x),
building alignment 0.93, 1.17 and 0.59 x (0.70, 1.00, 0.67 x): met either
way, a little further from the test regions' own footprints than the
blobs were. `buildings-256` (2 m/px) on 128 of its validation tiles:
rectangularity 10.2 x -> 6.5 x, building alignment 1.03 x -> 1.10 x.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import shapely
from scipy import ndimage
from shapely import affinity

from urbangen.proximity import STREET_CHANNELS

if TYPE_CHECKING:
    from urbangen.inference import RunSpec

#: Footprints up to this area, m², are redrawn as rectangles (48 px at 4 m/px: a large house or a small block).
MAX_M2 = 768.0
#: Footprints under this area, m², are left as drawn: at 4 m/px, 3 pixels or fewer, every shape a rectangle or a step.
MIN_M2 = 64.0
#: A footprint filling less of its smallest enclosing rectangle than this is ragged on purpose (an L, a
#: courtyard, two buildings touching) and keeps its shape.
MIN_RECTANGULARITY = 0.5
#: Scales of the area-matched rectangle tried, of which the one whose pixels come nearest the footprint's
#: count is kept: a rectangle at an angle covers a whole number of pixel centres, and rescaling towards the
#: count in three rounds overshot by 22 pixels a tile on average (coverage's error 0.0213 -> 0.0251 on seed 1).
SCALES = np.linspace(0.6, 1.3, 15)
#: A footprint whose nearest rectangle misses its number of pixels by more than this share keeps its shape (a
#: thin diagonal piece of a few pixels covers no pixel centre at one scale and twice its pixels at the next).
AREA_TOLERANCE = 0.2
_FOUR = ndimage.generate_binary_structure(2, 1)
#: A pixel's four corners, (x, y) offsets from its top-left corner.
_CORNERS = np.array([(0, 0), (1, 0), (0, 1), (1, 1)], np.float64)


def footprint_envelopes(buildings: np.ndarray, min_px: int = 1
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 4-connected footprints of an (H, W) 0/1 mask and their smallest enclosing rectangles at any angle.

    Returns
    -------
    labels : numpy.ndarray
        (H, W) int: each pixel's footprint, 1, 2, ...; 0 off the buildings.
    ids : numpy.ndarray
        The labels of the footprints of at least ``min_px`` pixels, in order.
    areas : numpy.ndarray
        Their areas, pixels (float).
    envelopes : numpy.ndarray
        Their smallest enclosing rectangles (shapely polygons, (x, y) = (column, row) in pixel units), of the
        pixels' corners.
    """
    labels, n = ndimage.label(np.asarray(buildings, bool), structure=_FOUR)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    rows, cols = np.nonzero(labels)
    piece = labels[rows, cols] - 1
    keep = areas[piece] >= min_px
    if not keep.any():
        return labels, np.zeros(0, int), np.zeros(0), np.zeros(0, dtype=object)
    order = np.argsort(piece[keep], kind="stable")  # shapely.multipoints wants its indices in order
    rows, cols, piece = rows[keep][order], cols[keep][order], piece[keep][order]
    corners = (np.stack([cols, rows], axis=1)[:, None, :] + _CORNERS[None]).reshape(-1, 2)
    kept, dense = np.unique(piece, return_inverse=True)  # shapely.multipoints numbers its geometries 0, 1, ...
    envelopes = shapely.oriented_envelope(shapely.multipoints(corners, indices=np.repeat(dense, 4)))
    return labels, kept + 1, areas[kept].astype(np.float64), envelopes


def rectangular_footprints(buildings: np.ndarray, blocked: np.ndarray, meters_per_pixel: float) -> np.ndarray:
    """An (H, W) 0/1 buildings mask with its compact, house-sized footprints redrawn as rectangles (see the module).

    Parameters
    ----------
    buildings
        (H, W) 0/1 footprints, as a buildings stage drew them.
    blocked
        (H, W) bool: ground a redrawn footprint may not take (streets, water).
    meters_per_pixel
        The mask's scale.

    Returns
    -------
    numpy.ndarray
        (H, W) uint8. Footprints outside the module's bounds are as given.
    """
    labels, ids, areas, envelopes = footprint_envelopes(buildings, max(1, math.ceil(MIN_M2 / meters_per_pixel ** 2)))
    out = np.asarray(buildings, bool).copy()
    blocked = np.asarray(blocked, bool)
    h, w = out.shape
    max_px = MAX_M2 / meters_per_pixel ** 2
    for label, area, envelope in zip(ids, areas, envelopes):
        envelope_area = shapely.area(envelope)
        if area > max_px or area < MIN_RECTANGULARITY * envelope_area:
            continue
        # Within the window of the footprint and its largest rectangle: a layout holds thousands of footprints.
        scales = np.sqrt(area / envelope_area) * SCALES
        x0, y0, x1, y1 = np.array([envelope.bounds, affinity.scale(envelope, scales[-1], scales[-1],
                                                                    origin="centroid").bounds]).T
        window = (slice(max(0, int(np.floor(y0.min()))), min(h, int(np.ceil(y1.max())) + 1)),
                  slice(max(0, int(np.floor(x0.min()))), min(w, int(np.ceil(x1.max())) + 1)))
        own = labels[window] == label
        # Free ground: no street or water, and no other footprint nor a pixel beside one, so that a rectangle
        # stays a footprint of its own (a footprint's 4-neighbours are off the buildings as drawn; grown, it
        # could meet its neighbour's and the two would become one).
        free = ~blocked[window] & ~_beside_others(out, labels, label, window)
        rr, cc = np.mgrid[window]
        best: tuple[int, np.ndarray] | None = None
        for scale in scales:
            box = affinity.scale(envelope, scale, scale, origin="centroid")
            inside = shapely.contains_xy(box, cc + 0.5, rr + 0.5)
            if (inside & ~free).any():
                continue  # a rectangle is drawn whole or not at all: never cut by a street or a neighbour
            got = int(inside.sum())
            if got and (best is None or abs(got - area) < abs(best[0] - area)):
                best = (got, inside)
        if best is None or abs(best[0] - area) > AREA_TOLERANCE * area:
            continue  # hemmed in, or too thin for any rectangle of its size on the pixel grid: kept as drawn
        out[window] = (out[window] & ~own) | best[1]
    return out.astype(np.uint8)


def _beside_others(out: np.ndarray, labels: np.ndarray, label: int, window: tuple[slice, slice]) -> np.ndarray:
    """Within ``window``: the pixels of footprints other than ``label`` in ``out``, and their 4-neighbours
    (those just outside the window included)."""
    h, w = out.shape
    rows, cols = window
    grown = (slice(max(0, rows.start - 1), min(h, rows.stop + 1)), slice(max(0, cols.start - 1), min(w, cols.stop + 1)))
    others = out[grown] & (labels[grown] != label)
    near = ndimage.binary_dilation(others, _FOUR)
    return near[rows.start - grown[0].start:rows.stop - grown[0].start,
                cols.start - grown[1].start:cols.stop - grown[1].start]


#: Ground a redrawn footprint may not take: the streets and water beside it.
BLOCKING = (*STREET_CHANNELS, "water")


def rectangular_stage(probs: np.ndarray, layout: np.ndarray | None, spec: RunSpec,
                      drawn: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A chain stage's kept output with its footprints redrawn (:func:`rectangular_footprints`), when it is a
    thresholded stage that draws buildings; any other stage's as it is.

    Parameters
    ----------
    probs
        (..., H, W, len(spec.output_channels)) the stage's probabilities.
    layout
        Their 0/1 layout, when already made (None: thresholded here).
    spec
        The stage's run spec.
    drawn
        The chain's 0/1 channels so far by name, (..., H, W) each: those it was given and those its earlier
        stages drew. Their streets and water are kept clear, whether or not this stage reads them.

    Returns
    -------
    tuple
        The probabilities, their buildings channel now the redrawn 0/1 footprints, and the 0/1 layout (None
        for a stage that draws no buildings, its layout as given).
    """
    out = list(spec.output_channels)
    if spec.sampling != "threshold" or "buildings" not in out:
        return probs, layout
    layout = (np.asarray(probs) > 0.5).astype(np.uint8) if layout is None else np.array(layout, np.uint8)
    blocked = np.any(layout[..., [out.index(c) for c in BLOCKING if c in out]], axis=-1, keepdims=False)
    for c in BLOCKING:
        if drawn is not None and c in drawn:
            blocked |= np.asarray(drawn[c]).astype(bool)
    b = out.index("buildings")
    for tile in np.ndindex(layout.shape[:-3]):
        layout[tile + (Ellipsis, b)] = rectangular_footprints(layout[tile][..., b], blocked[tile],
                                                              spec.meters_per_pixel)
    probs = np.array(probs, np.float32)
    probs[..., b] = layout[..., b]
    return probs, layout


def footprints_of(model: object) -> str:
    """How ``model`` hands on its footprints, as a parameter file says it: ``rectangles`` (a chain redrawing them,
    :func:`rectangular_stage`) or ``as_drawn``."""
    return "rectangles" if getattr(model, "rectangular_footprints", False) else "as_drawn"
