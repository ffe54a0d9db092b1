"""Street channels as proximity fields: what the street stage learns, and how its output becomes lines.

A street at 4 m/px is a line one to three pixels wide. Asked to draw such
lines as 0/1 masks, a GAN trained for an hour on a CPU draws short
fragments: a line one pixel off its real position gets no L1 credit at all,
so the per-pixel loss cannot pull fragments into a network. As a proximity
field, ``exp(-d / PROXIMITY_PX)`` with ``d`` the Euclidean distance in
pixels to the nearest street pixel (1 on the street, decaying beside it,
0 beyond ``RADIUS_PX``), a near miss earns partial credit and a gap
between two pieces of a street is a shallow dip rather than background.
Distance-transform targets are a common remedy for broken thin structures
in road extraction; see e.g. Mosinska et al. 2018 (topology-aware losses)
and Bahl et al. 2019 (distance-transform regression).

A field decodes to a 0/1 layout as a street's core (the field above the
midpoint between the street's 1 and its neighbours' ``exp(-1 / PROXIMITY_PX)``)
plus the skeleton of the ground near a street (the field above
``SKELETON_LEVEL``, about 1.8 px from one): a one-pixel centre line through
every ridge, connected where the ridges are. A generator's field is blurrier
than a real one, most of all a VAE's: its ridges are lower and wider, so a
strict-maximum test (non-maximum suppression) draws combs of short spurs and
a high threshold breaks lines, where a skeleton keeps them whole. A centre
line away from every core is drawn ``LINE_PX`` pixels wide: real streets at 4
m/px are wider than one pixel on average (over the offline city set's
training tiles, pixels over skeleton length: minor roads 1.5, cycle and foot
1.8, major roads 3.2), and one-pixel lines are what set generated tiles
apart from real ones in the encoder's embedding (KID 0.34 against 0.20 with
two-pixel lines, on 96 held-out tiles). A real street's field decodes to that
street and, at its ends and on the tile's edge, a pixel or two more (tested).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

#: The channels of roads: what osmnx's drive network holds, the graph junctions and dead ends are counted on.
ROAD_CHANNELS = ("major_roads", "minor_roads")
#: The channels of paths: cycle and foot ways, decoded at a level of their own (PATH_LEVELS).
PATH_CHANNELS = ("cycle_foot",)
#: Street channels: the parameters of a street network come from these.
STREET_CHANNELS = (*ROAD_CHANNELS, *PATH_CHANNELS)
#: A pixel's eight neighbours (row, column offsets).
_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
#: 8-connectivity for labelling pieces: diagonal pixels touch, as a diagonal street is drawn.
EIGHT_NEIGHBOURS = np.ones((3, 3), bool)
#: Decay length of the field, pixels.
PROXIMITY_PX = 1.5
#: Beyond this distance, pixels, the field is 0.
RADIUS_PX = 4
#: A pixel with a higher field value is a street (between the street's 1 and a neighbour's value).
CORE_LEVEL = 0.5 * (1.0 + math.exp(-1.0 / PROXIMITY_PX))
#: Ground with a higher field value (within about 1.8 px of a street) is skeletonized into centre
#: lines. Chosen on validation tiles of the VAE street stage: lower levels join neighbouring blurry
#: ridges into hairy webs, higher ones break lines (street pixels in the largest piece 0.73 at 0.25,
#: 0.69 at 0.3, 0.60 at 0.4; real 0.86).
SKELETON_LEVEL = 0.3
#: The levels a generated network's cycle and foot paths may be decoded at, the default first: a generated
#: path's ridge is lower than a road's, and where the decoder is unsure of a path the level decides whether it
#: is drawn, so a generated single tile takes the level at which its network measures nearest its request
#: (:func:`urbangen.inference.best_path_levels`), and so does each grid tile of a stitched layout where its
#: network stays in one piece (:func:`urbangen.generate.sampler._street_levelled`). On 128 validation tiles asking
#: for a cycle/foot share above 0.2, the street stage's chosen samples (16 candidates) missed it by 0.068 at the
#: default level alone and by 0.048 choosing among these five, the other street parameters unchanged (real tiles
#: through the same path: 0.031).
PATH_LEVELS = (SKELETON_LEVEL, 0.24, 0.36, 0.18, 0.42)
#: Width, pixels, of a centre line drawn where the field has no core (a blurry ridge).
LINE_PX = 2
#: A generated network's free end is joined to another piece of network at most this far away, pixels
#: (48 m at 4 m/px): stitched layouts break where overlapping windows' fields disagree (see join_gaps).
JOIN_GAP_PX = 12
#: In a stitched layout, a road's free end runs on to a street it points at (within ``MEET_ANGLE`` degrees)
#: at most this far away, pixels (24 m at 4 m/px; see meet_streets).
MEET_PX = 6
MEET_ANGLE = 30.0
#: A generated road's free end this close to the layout's edge, pixels, is drawn on to the edge (see tidy_roads).
EDGE_RUN_PX = 4
#: A generated road's spur from a junction to a free end of fewer centre-line pixels than this (96 to 136 m
#: at 4 m/px, straight to diagonal) is removed (see tidy_roads).
SPUR_PX = 24
#: A generated road's spur shorter than this (128 to 181 m at 4 m/px), that ends on a cycle or foot path and
#: is not cut as a spur (see SPUR_PX), is drawn as path (see tidy_roads).
PATH_SPUR_PX = 32
#: A generated road's free end runs on along a street (a path, mostly) to a road it points at at most this far
#: away, pixels (64 m at 4 m/px; see run_through).
THROUGH_PX = 16
#: The share of such a run's pixels that must already be street.
THROUGH_ON_STREET = 0.8


def _offsets() -> list[tuple[int, int, float]]:
    r = RADIUS_PX
    return [(dy, dx, math.exp(-math.hypot(dy, dx) / PROXIMITY_PX))
            for dy in range(-r, r + 1) for dx in range(-r, r + 1) if math.hypot(dy, dx) <= r]


def proximity_field(mask: jnp.ndarray) -> jnp.ndarray:
    """The proximity field of 0/1 layout channels (B, H, W, C), in [0, 1].

    A grey-scale dilation with the weights ``exp(-|o| / PROXIMITY_PX)`` over
    the offsets ``o`` within ``RADIUS_PX``: the largest weight among the street
    pixels in reach, ``exp(-d / PROXIMITY_PX)`` for the Euclidean distance ``d``
    to the nearest one. Streets beyond the tile's edge are unknown, as in the
    data.
    """
    r = RADIUS_PX
    h, w = mask.shape[1:3]
    padded = jnp.pad(mask.astype(jnp.float32), ((0, 0), (r, r), (r, r), (0, 0)))
    field = jnp.zeros(mask.shape, jnp.float32)
    for dy, dx, weight in _offsets():
        field = jnp.maximum(field, weight * padded[:, r + dy:r + dy + h, r + dx:r + dx + w])
    return field


def skeleton_paths(mask: np.ndarray, min_pixels: int = 3) -> list[list[tuple[int, int]]]:
    """Pixel paths (row, col) of a mask's skeleton, each from an end or junction to the next.

    A path shorter than ``min_pixels`` is dropped when it has a free end (a
    spur of the skeleton, not a street), never when it joins two junctions:
    a junction is often a cluster of adjacent skeleton pixels, and the short
    paths inside it are what keeps the streets meeting there connected.
    """
    from scipy import ndimage
    from skimage.morphology import skeletonize

    skel = skeletonize(mask.astype(bool))
    if not skel.any():
        return []
    degree = ndimage.convolve(skel.astype(np.int32), np.ones((3, 3), np.int32), mode="constant") - 1
    degree[~skel] = 0
    # Looked up as nested lists, a frame of False around: tracing asks for every pixel it passes.
    framed = np.pad(skel, 1).tolist()

    def neighbours(r: int, c: int) -> list[tuple[int, int]]:
        return [(r + dr, c + dc) for dr, dc in _NEIGHBOURS if framed[r + 1 + dr][c + 1 + dc]]

    node_rows, node_cols = np.nonzero(skel & (degree != 2))
    nodes = set(zip(node_rows.tolist(), node_cols.tolist()))
    seen_steps: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    paths: list[list[tuple[int, int]]] = []

    def trace(start: tuple[int, int], first: tuple[int, int]) -> None:
        if (start, first) in seen_steps:
            return
        path, prev, cur = [start, first], start, first
        seen_steps.add((start, first))
        while cur not in nodes and cur != start:
            nxt = [p for p in neighbours(*cur) if p != prev and (cur, p) not in seen_steps]
            if not nxt:
                break
            seen_steps.add((cur, nxt[0]))
            prev, cur = cur, nxt[0]
            path.append(cur)
        seen_steps.add((path[-1], path[-2]))
        paths.append(path)

    for node in sorted(nodes):  # row by row, as np.nonzero lists them
        for p in neighbours(*node):
            trace(node, p)
    # Closed loops have no node: start each at any of its pixels.
    on_path = np.zeros_like(skel)
    for path in paths:
        on_path[tuple(np.array(path).T)] = True
    for r, c in zip(*np.nonzero(skel & ~on_path)):
        if not on_path[r, c]:
            start = (int(r), int(c))
            nb = neighbours(*start)
            if nb:
                nodes.add(start)
                trace(start, nb[0])
                on_path[tuple(np.array(paths[-1]).T)] = True
    junction = skel & (degree >= 3)
    return [path for path in paths if len(path) >= min_pixels or (junction[path[0]] and junction[path[-1]])]


def _disc(r: int) -> np.ndarray:
    """Offsets (dy, dx) within ``r`` pixels of a pixel, itself excluded, nearest first."""
    offsets = np.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
                        if 0 < dy * dy + dx * dx <= r * r])
    return offsets[np.argsort((offsets ** 2).sum(axis=1), kind="stable")]


def _end_degrees(paths: list[list[tuple[int, int]]]) -> dict[tuple[int, int], int]:
    """How many skeleton paths end at each path end (1: a free end; a closed loop's end counts twice)."""
    degree: dict[tuple[int, int], int] = {}
    for path in paths:
        for end in (path[0], path[-1]):
            degree[end] = degree.get(end, 0) + 1
    return degree


def join_gaps(layout: np.ndarray, max_gap_px: int = JOIN_GAP_PX) -> np.ndarray:
    """A generated street layout (..., H, W, C) with its pieces joined across gaps of up to ``max_gap_px``.

    Where two overlapping windows of a stitched layout draw a street a few
    pixels apart, the blend of their fields dips below every level and the
    street breaks: over 1 km windows, real networks keep 0.92 of their street
    pixels in one piece and stitched generated ones 0.2 to 0.7. Each free end
    of the network's centre lines (the union of ``C`` channels) is a
    candidate to join to the nearest pixel of another piece within
    ``max_gap_px``; candidates are taken shortest first and kept only where
    they join two pieces not yet joined (Kruskal's rule), so that no gap
    closes twice and no loop is made. A join is drawn as a straight line
    ``LINE_PX`` wide in the channel of the end it leaves. A real network's
    pieces near one another are left as they are by decoding
    (:func:`decode_proximity`); this is for generated ones.
    """
    from scipy import ndimage
    from scipy.cluster.hierarchy import DisjointSet
    from skimage.draw import line
    from skimage.morphology import skeletonize

    layout = np.asarray(layout)
    if max_gap_px < 1:
        return layout
    flat = layout.reshape(-1, *layout.shape[-3:])
    out = flat.copy()
    r = max_gap_px
    offsets = _disc(r)
    eight = np.ones((3, 3), bool)
    for tile, joined in zip(flat, out):
        streets = tile.any(axis=-1)
        labels, n = ndimage.label(streets, structure=eight)
        if n < 2:
            continue
        centre = skeletonize(streets)
        ends = np.argwhere(centre & (ndimage.convolve(centre.astype(np.uint8), eight.astype(np.uint8),
                                                      mode="constant") == 2))  # itself and one neighbour
        candidates = []
        for y, x in ends:
            near = offsets + (y, x)
            near = near[(near >= 0).all(axis=1) & (near[:, 0] < streets.shape[0]) & (near[:, 1] < streets.shape[1])]
            other = labels[near[:, 0], near[:, 1]]
            hit = np.flatnonzero((other > 0) & (other != labels[y, x]))
            if len(hit):
                ty, tx = near[hit[0]]
                candidates.append(((ty - y) ** 2 + (tx - x) ** 2, y, x, ty, tx))
        pieces = DisjointSet(range(1, n + 1))
        drawn = np.zeros(streets.shape + (tile.shape[-1],), bool)
        for _, y, x, ty, tx in sorted(candidates):
            if not pieces.merge(labels[y, x], labels[ty, tx]):
                continue
            rows, cols = line(y, x, ty, tx)
            drawn[rows, cols, int(np.argmax(tile[y, x]))] = True
        if drawn.any():
            widened = ndimage.binary_dilation(drawn, structure=np.ones((LINE_PX, LINE_PX, 1), bool))
            joined |= widened.astype(joined.dtype)
    return out.reshape(layout.shape)


def meet_streets(layout: np.ndarray, roads: list[int], paths: list[int] | tuple[int, ...] = (),
                 max_px: int = MEET_PX, max_angle: float = MEET_ANGLE) -> np.ndarray:
    """A stitched layout (..., H, W, C) whose roads' free ends run on to the street (a road, or one of the
    ``paths`` channels) each points at, if one lies within ``max_px`` pixels and ``max_angle`` degrees of
    the end's heading.

    Blending overlapping windows breaks a street where they disagree; :func:`join_gaps` joins the pieces
    this leaves, but never two ends of one piece, for that would close a loop, and a block is such a loop.
    Over the 1 km windows of two stitched 2 x 2 km layouts of the bar's mean request (``urbangen
    evaluate``'s, at seeds 0 and 1), the dead-end share measured 0.175 and 0.18 after joining and
    tidying (real mosaics of test tiles 0.06), and 0.80 and 0.72 of the street pixels lay in the largest
    piece (real 0.86); with ends run on 0.15 and 0.16, and 0.85 and 0.85, intersection density 106 -> 110
    and 105 -> 109 /km² (real mosaics 112). (At 32 m and 50 degrees, run on before tidying: 0.89 and
    0.98 in the largest piece, more than real.) The end's heading is from the pixel four steps back along its centre
    line. A target is a street pixel not joined to the end within the ``2 max_px + 1`` square around it
    (the end's own road, however wide, is not one). A run is drawn ``LINE_PX`` wide in the end's road
    channel, from the end to the nearest target. Ends within 2 px of the layout's edge are left (cuts).
    """
    return _run_on(layout, roads, paths, max_px, max_angle)


def run_through(layout: np.ndarray, roads: list[int], paths: list[int] | tuple[int, ...] = (),
                max_px: int = THROUGH_PX, max_angle: float = MEET_ANGLE) -> np.ndarray:
    """A generated layout (..., H, W, C) whose roads' free ends run on to the road each points at, within
    ``max_px`` pixels and ``max_angle`` degrees of its heading, where the way there is already street (at
    least :data:`THROUGH_ON_STREET` of the run's pixels; a cycle or foot path, mostly).

    A generator draws a street partly as road and partly as path where its road and path fields are both
    middling: on a city's sidewalks and cycle tracks along roads (Lower Manhattan's, Copenhagen's) a road
    stops inside the path beside it and starts again further on. Real roads do not: on 128 validation
    tiles 2 of 76 free road ends inside a tile point at a road through street within 16 px, 22 of 152 on
    the street stage's chosen samples. The road drawn on is ``LINE_PX`` wide, in the end's road channel.
    Ends within 2 px of the layout's edge are left (cuts).
    """
    return _run_on(layout, roads, paths, max_px, max_angle, through=True)


def _run_on(layout: np.ndarray, roads: list[int], paths: list[int] | tuple[int, ...], max_px: int,
            max_angle: float, *, through: bool = False) -> np.ndarray:
    """Roads' free ends run on to what they point at: any street not joined to the end near it
    (:func:`meet_streets`), or, ``through``, a road not joined to it by road near it, over ground mostly
    street already (:func:`run_through`)."""
    from scipy import ndimage
    from skimage.draw import line

    layout = np.asarray(layout)
    if not roads or max_px < 1:
        return layout
    r = max_px
    offsets = _disc(r)
    unit = offsets / np.hypot(offsets[:, 0], offsets[:, 1])[:, None]
    cos_max = np.cos(np.radians(max_angle))
    eight = np.ones((3, 3), bool)
    flat = layout.reshape(-1, *layout.shape[-3:]).copy()
    for tile in flat:
        h, w = tile.shape[:2]
        on_street = tile[..., list(roads) + list(paths)].any(axis=-1)
        # (y, x) is (y + r, x + r) here
        targets = np.pad(tile[..., roads].any(axis=-1) if through else on_street, r)
        skeleton = skeleton_paths(tile[..., roads].any(axis=-1))
        degree = _end_degrees(skeleton)
        runs = np.zeros((h, w, len(roads)), bool)
        for path in skeleton:
            for track in (path, path[::-1]):
                (y, x) = track[-1]
                if degree[(y, x)] != 1 or len(track) < 3 or min(y, x, h - 1 - y, w - 1 - x) < 2:
                    continue
                heading = np.subtract((y, x), track[max(0, len(track) - 5)], dtype=float)
                heading /= np.hypot(*heading) or 1.0
                pieces, _ = ndimage.label(targets[y:y + 2 * r + 1, x:x + 2 * r + 1], structure=eight)
                around = pieces[offsets[:, 0] + r, offsets[:, 1] + r]
                for k in np.flatnonzero((unit @ heading >= cos_max) & (around > 0) & (around != pieces[r, r])):
                    ty, tx = offsets[k] + (y, x)
                    rows, cols = line(y, x, ty, tx)
                    if through and on_street[rows, cols].mean() < THROUGH_ON_STREET:
                        continue
                    runs[rows, cols, int(np.argmax(tile[y, x, roads]))] = True
                    break
        for j, c in enumerate(roads):
            widened = ndimage.binary_dilation(runs[..., j], structure=np.ones((LINE_PX, LINE_PX), bool))
            tile[..., c][widened] = 1
    return flat.reshape(layout.shape)


def tidy_roads(layout: np.ndarray, roads: list[int], paths: list[int] | tuple[int, ...] = ()) -> np.ndarray:
    """A generated layout (..., H, W, C) with its roads (the channels ``roads``) tidied where decoding leaves
    what real networks do not have; its other street channels (``paths``: cycle and foot) rid only of the
    street network's pieces that reach no edge of the layout, and given the road stubs drawn as path.

    Four things, each measured on the street stage's chosen samples for 256 held-out test tiles against
    the real tiles (counted through :mod:`urbangen.measure`'s path, where a free end 2 px or more inside
    the layout's edge is a dead end):

    - a piece of the street network that reaches no edge of the layout is removed, roads and paths alike:
      163 road pieces touching no edge on the generated tiles (a median 10 pixels, flecks of a faint
      ridge), 1 on the real ones, which are windows on a connected network (in a stitched 2 x 2 km layout,
      joined across its gaps, these are flecks too: the share of street pixels in the largest piece of its
      1 km windows is unchanged). Cycle and foot paths break into such flecks more often: on 128
      validation tiles (dataset format 2, which draws footways whole) 0.19 floating pieces a real tile
      (0.3 % of its street pixels), 1.16 on the street stage's first samples (6.2 %); removed, the chosen
      samples' cycle and foot share's conditioning error went from 0.040 to 0.038 (``SPUR_PX`` 16, the
      street form weighing 2 in selection);
    - a free end within ``EDGE_RUN_PX`` of the edge is drawn on to it as its centre line, in its road's
      channel: a field fades where the tile ends and a skeleton ends short of its ridge, so 271 generated
      ends stood 2 px from the edge against 53 real ones (a run drawn ``LINE_PX`` wide would be
      skeletonized short of the edge again);
    - a spur of fewer than ``SPUR_PX`` centre-line pixels from a junction to a free end is removed (the road
      pixels nearest to its centre line past the junction's two) unless that would cut the street network:
      the hair a skeleton grows on a wide ridge (440 free ends within 6 px of their junction against 173
      real). Since dataset format 2 draws no service roads or driveways, real spurs are rarer still: on
      128 validation tiles, 12 road spurs shorter than 16 px end inside a real tile (27 of any length),
      259 in the first samples of the street stage for their requests (303); at ``SPUR_PX`` 8 the chosen
      samples' dead-end share scored a Wasserstein-1 distance of 3.5x its floor, at 16 3.0x (24: 2.9x,
      with intersection density's conditioning error 11.9 -> 12.8 /km²), all with selection targets at
      the calibration's fit; with per-parameter targets and the street form weighing 2
      (:mod:`urbangen.generate.selection`) 16 scored 1.28x and 24 0.98x (conditioning errors 10.5 and
      10.7 /km²);
    - a spur of fewer than ``PATH_SPUR_PX`` centre-line pixels from a junction to a free end on a cycle or
      foot path (a path pixel next to its centre line's end), not cut as above (``SPUR_PX`` or longer, or
      shorter where cutting would split the network), is drawn as path, in the first of ``paths``: a
      generator that draws a street partly as road and partly as path leaves a road stub where the path
      takes over. 57 % of the
      free road ends inside the first samples' tiles touch a path (0.94 a tile), 36 % of real ones (0.21
      a tile); drawn as path, the chosen samples' dead-end share scored 0.58x its floor against 0.96x
      (with :func:`run_through` before tidying and the street form weighing 2 in selection; Lower
      Manhattan's tiles: mean 0.017 against 0.030, real 0.007), and cycle and foot share's conditioning
      error 0.039 against 0.037.

    The first three together brought the W1 distance of dead-end share between generated and real tiles from 6.7 to 2.2
    times its real-against-real floor (mean 0.18 -> 0.10; real 0.11) on dataset format 1, before selection.
    Real networks have few of these, and the ones they have are what this would change, so it is for
    generated layouts.
    """
    from scipy import ndimage
    from skimage.draw import line

    layout = np.asarray(layout)
    if not roads:
        return layout
    flat = layout.reshape(-1, *layout.shape[-3:]).copy()
    eight = np.ones((3, 3), bool)
    for tile in flat:
        h, w = tile.shape[:2]
        mask = tile[..., roads].any(axis=-1)
        network = tile[..., list(roads) + list(paths)].any(axis=-1)
        pieces, _ = ndimage.label(network, structure=eight)
        reach = np.isin(pieces, np.concatenate([pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]]))
        floating = network & ~reach
        mask &= ~floating
        network &= ~floating
        n_pieces = ndimage.label(network, structure=eight)[1]
        paths_of = skeleton_paths(mask)
        degree = _end_degrees(paths_of)
        on_lines = [np.ravel_multi_index(np.array(path).T, (h, w)) for path in paths_of]
        # how many paths run through each pixel (flat), each path counted once where it runs
        cover = _paths_through(on_lines, h * w)
        if paths_of:
            # Each road pixel belongs to its nearest centre-line pixel (a wide road's tip lies beyond its
            # skeleton's end): the road pixels (flat) sorted by their nearest centre-line pixel, to find a
            # spur's by bisection.
            nearest = ndimage.distance_transform_edt(cover.reshape(h, w) == 0, return_distances=False,
                                                     return_indices=True)
            owner = (nearest[0] * w + nearest[1]).ravel()
            road_px = np.flatnonzero(mask)
            by_owner = road_px[np.argsort(owner[road_px], kind="stable")]
            owners = owner[by_owner]
        runs = np.zeros((h, w, len(roads)), bool)
        spurs = np.zeros(h * w, bool)
        to_path = np.zeros(h * w, bool)
        kept, kept_pieces = network.copy(), n_pieces  # the network without the spurs removed so far
        on_path = tile[..., list(paths)].any(axis=-1)  # all False without paths
        for path, line_px in zip(paths_of, on_lines):
            for track, track_px in ((path, line_px), (path[::-1], line_px[::-1])):
                (y, x), start = track[-1], track[0]
                if degree[(y, x)] != 1:
                    continue
                to_edge = [y, h - 1 - y, x, w - 1 - x]
                side = int(np.argmin(to_edge))
                if 1 <= to_edge[side] <= EDGE_RUN_PX:
                    ty, tx = [(0, x), (h - 1, x), (y, 0), (y, w - 1)][side]
                    rows, cols = line(y, x, ty, tx)
                    runs[rows, cols, int(np.argmax(tile[y, x, roads]))] = True
                elif to_edge[side] > EDGE_RUN_PX and 2 < len(track) < max(SPUR_PX, PATH_SPUR_PX) \
                        and degree[start] >= 3:
                    own = np.unique(track_px[2:])  # the junction's side stays
                    own = own[cover[own] == 1]  # not the pixels it shares with another path
                    # the road pixels nearest to those
                    spans = zip(np.searchsorted(owners, own, "left"), np.searchsorted(owners, own, "right"))
                    spur = by_owner[np.concatenate([np.arange(a, b) for a, b in spans] or [np.empty(0, int)])]
                    if len(track) < SPUR_PX:
                        pieces_left = _pieces_without(kept, kept_pieces, spur)
                        if pieces_left <= n_pieces:  # cut only where it splits no piece of the network
                            spurs[spur] = True
                            kept.ravel()[spur] = False
                            kept_pieces = pieces_left
                            continue
                    if len(track) < PATH_SPUR_PX and on_path[max(0, y - 1):y + 2, max(0, x - 1):x + 2].any():
                        to_path[spur] = True
        spurs, to_path = spurs.reshape(h, w), to_path.reshape(h, w)
        drop = floating | spurs | to_path
        for j, c in enumerate(roads):
            channel = tile[..., c]
            channel[drop] = 0
            channel[runs[..., j]] = 1
        for c in paths:
            tile[..., c][floating] = 0
        if paths:
            tile[..., paths[0]][to_path] = 1
    return flat.reshape(layout.shape)


def _paths_through(paths: list[np.ndarray], size: int) -> np.ndarray:
    """How many of ``paths`` (each its pixels' flat indices) run through each of ``size`` pixels, a path
    counted once at a pixel it passes more than once."""
    if not paths:
        return np.zeros(size, int)
    which = np.repeat(np.arange(len(paths)), [len(p) for p in paths])
    visits = np.unique(which * size + np.concatenate(paths))
    return np.bincount(visits % size, minlength=size)


def _pieces_without(network: np.ndarray, pieces: int, removed: np.ndarray, margin: int = 16) -> int:
    """How many 8-connected pieces a mask ``network`` (H, W) with ``pieces`` pieces has without the pixels
    ``removed`` (flat indices).

    Looked at first within ``margin`` pixels of them: where the pixels left beside them are joined there,
    the pieces they touch stay whole, and only those made of removed pixels alone are gone (as counting
    the whole mask again would find, in a fraction of its time); otherwise the whole mask is counted.
    """
    from scipy import ndimage

    h, w = network.shape
    removed = removed[network.ravel()[removed]]
    if not removed.size:
        return pieces
    rows, cols = np.unravel_index(removed, (h, w))
    r0, c0 = max(int(rows.min()) - margin, 0), max(int(cols.min()) - margin, 0)
    box = network[r0:int(rows.max()) + margin + 1, c0:int(cols.max()) + margin + 1]
    gone = np.zeros_like(box)
    gone[rows - r0, cols - c0] = True
    rest = box & ~gone
    parts, n_parts = ndimage.label(gone, structure=EIGHT_NEIGHBOURS)
    # removed pixels next to the rest: the parts that touch none were pieces of their own
    touching = gone & ndimage.binary_dilation(rest, structure=EIGHT_NEIGHBOURS)
    alone = n_parts - len(np.unique(parts[touching]))
    beside = rest & ndimage.binary_dilation(gone, structure=EIGHT_NEIGHBOURS)
    around = ndimage.label(rest, structure=EIGHT_NEIGHBOURS)[0]
    if len(np.unique(around[beside])) <= 1:
        return pieces - alone
    left = network.copy()
    left.ravel()[removed] = False
    return int(ndimage.label(left, structure=EIGHT_NEIGHBOURS)[1])


def decode_proximity(field: np.ndarray, level: float | np.ndarray = SKELETON_LEVEL) -> np.ndarray:
    """A 0/1 layout (..., H, W, C) from proximity fields: the streets' cores and centre lines (see the module),
    centre lines through the ground above ``level`` (one for every channel, one per channel (C,), or one per
    pixel and channel (H, W, C))."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    field = np.asarray(field, np.float32)
    near = (field > level).reshape(-1, *field.shape[-3:])
    lines = np.stack([np.stack([skeletonize(tile[..., c]) for c in range(tile.shape[-1])], axis=-1)
                      for tile in near]).reshape(field.shape)
    core = field > CORE_LEVEL
    plane = (1,) * (field.ndim - 3)  # structuring elements within each tile and channel
    # Widened: centre-line pixels with no core beside them (stubs at a real street's end keep one pixel).
    ridge = lines & ~ndimage.binary_dilation(core, structure=np.ones(plane + (3, 3, 1), bool))
    return (core | lines | ndimage.binary_dilation(ridge, structure=np.ones(plane + (LINE_PX, LINE_PX, 1), bool))
            ).astype(np.uint8)
