"""Generate a layout of any size from a checkpoint: overlapping tiles, blended without seams.

Tiles are laid at half-tile strides and averaged with a squared-sine window
that falls towards each tile's border, so every pixel is a smooth blend of
the tiles that cover it and no tile edge shows.

A VAE draws one latent vector per tile, so two overlapping tiles would
draw unrelated streets and their blend would break both. A street VAE's tiles are
laid one by one instead, each the best of ``CANDIDATES`` samples at
agreeing with what the tiles before it drew where they overlap: a sample from
the tile's distribution given its neighbours, by selection. A tile on the
layout's tile grid, drawn for its own tile's request, owns its ground but a
band along the borders it shares (:data:`SEAM_BAND`), where the tiles across
the grid's borders carry the streets over. Chosen by their measures, a tile's best candidates are
scored as moved to continue what is drawn under them, as the layout will draw them. Once the layout
is blended, each grid tile's roads and cycle and foot paths are decoded at the levels at which its window
measures nearest its request (a single tile's paths are, too), but only where the window stays in one piece
as much as at the default levels, then moved a step where the window measures nearer beside its neighbours'
levels (:func:`_street_levelled`).

A chain's stage at a coarser scale (the arterial stage: 1 km tiles at 16 m/px)
runs over a layout at least as large as its tile, at its own scale, on the
requests averaged over each of its pixels, each window the sample whose major
roads lie where the tiles under it ask for them; its lines are redrawn at the
layout's (:mod:`urbangen.upscale`) and cut out of the tiles that ask for no
major road (:data:`NO_MAJOR_ROAD_KM_PER_KM2`). A street VAE after it continues
its lines as it continues its own neighbours (:data:`COARSE_WEIGHT`); where a
later stage draws its channels, :data:`urbangen.inference.DEMOTED` says what
becomes of their pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from urbangen import progress
from urbangen.footprints import rectangular_stage
from urbangen.generate.selection import WEIGHTS
from urbangen.inference import (
    GeneratorChain,
    RunSpec,
    Selection,
    TrainedModel,
    deterministic_layout,
    draws_paths,
    merge_stage,
    stage_outputs,
    tile_seeds,
)
from urbangen.measure import largest_component_share
from urbangen.proximity import SKELETON_LEVEL, proximity_field
from urbangen.specks import speckless_stage
from urbangen.upscale import MAJOR_ROAD_WIDTH_M, upscale_lines

#: Samples drawn per tile of a VAE's layout, of which the one agreeing best with its neighbours is kept.
CANDIDATES = 32
#: Adam steps that move the chosen tile's latent so that its field continues what the tiles before it drew
#: under it (weighed by the blend so far), their learning rate, and the weight that keeps the latent near
#: its draw. Chosen among samples, tiles agree only roughly, and their blend doubled and jogged streets: four
#: 1 km layouts of the validation tiles' mean request (43 intersections a km², dead-end share 0.14, cycle
#: and foot share 0.16; single tiles for it measure 45) measured 63 intersections a km² in 256 m windows,
#: dead-end share 0.15, cycle and foot share 0.10, street alignment 0.58 (real validation tiles 0.65); moved
#: by 20 steps, the same draws measured 51, 0.16, 0.12 and 0.56, and drawing and measuring them took 1.9
#: times as long (50 steps at 0.05: 51, 0.14, 0.10, 0.54, 3.2 times as long).
CONTINUE_STEPS = 20
CONTINUE_LEARNING_RATE = 0.1
CONTINUE_ANCHOR = 0.01
#: Of a stitched street window's candidates scored against its request, the best this many are moved to
#: continue what is drawn under them (:data:`CONTINUE_STEPS`) and scored again as moved, and the best of them
#: kept; a tile across the tile grid's borders is scored also by the grid's windows drawn before it, as blended
#: with it. Moved after the choice, a window chosen to measure near its request did not: on the bar's 8 stitched
#: test mosaics (128 windows) intersection density's MAE was 14.7 a km² on the chosen windows at their choice
#: and 23.8 on the finished layout; the best of the shortlist measured 5.6, so the choice fitted the
#: measurement's noise. Scored moved (4) and by the grid's windows: 18.7 (R² 0.74 against 0.58), dead-end
#: share's 0.151 (0.210), generating 2.4 times as long; the grid windows' scoring alone (1), 24.4. Another
#: seed of the same mosaics: 4, 22.7; 1, 25.2 (so the same sampler moves by 4 a km² from seed to seed, and 4
#: gains 2.5 to 5.7 over 1); at seed 0, 2: 23.8 and 8: 22.2 (choosing among more moved candidates fits the
#: noise again).
CONTINUED_CANDIDATES = 4
#: Whether a stitched street layout's grid tiles are drawn a second time once every tile across their borders is
#: drawn (see _matched). Drawn first, a grid tile is scored before the tiles across its right and lower borders,
#: whose bands then cover part of its window; drawn again, it is scored in the window the layout ends with, and
#: kept only where its new best scores better. On the bar's 8 stitched test mosaics, paired against drawing
#: once: seed 0, intersection density's MAE 18.7 -> 18.8 a km², cycle/foot share's 0.083 -> 0.074 (difference
#: -0.010 [-0.016, -0.004], 95 %, mosaics as units), dead-end share's 0.151 -> 0.129; seed 1, 22.6 -> 19.7
#: (-3.0 [-5.9, -0.0]), 0.072 -> 0.061, 0.166 -> 0.156; about a fifth longer to draw (a grid tile is one
#: window in three). (Re-chosen by its first scoring alone, without moving or keeping the tile it was, an
#: earlier sampler measured worse: 26.8 against 23.8.)
REDRAWN_GRID_TILES = True
#: A stitched street layout's grid tile takes road and path levels other than the default only where its window's
#: street pixels in the largest piece fall by at most this share against the default levels' (see
#: _street_levelled). Without this guard the levels took the bar's 8 stitched test mosaics' cycle/foot share MAE
#: from 0.076 to 0.057 but the two 2 x 2 km layouts' largest piece in 1 km windows from 0.928 to 0.869 (real
#: 0.976); with it, 0.059 and 0.961.
PATH_LEVEL_PIECE_TOLERANCE = 0.0
#: The path levels a stitched street layout's grid tiles choose among (see _street_levelled), the default first:
#: urbangen.proximity.PATH_LEVELS' range in steps of 0.03, not 0.06. A window's level changes its paths at its
#: borders, where the levels meet in a ramp, so a window scored at one level throughout measures only roughly as
#: it ends; finer steps let it take a level near the one it scored best at.
STITCHED_PATH_LEVELS = (SKELETON_LEVEL, 0.27, 0.24, 0.21, 0.18, 0.33, 0.36, 0.39, 0.42)
#: The road levels a stitched street layout's grid tiles choose among, each with every path level (see
#: _street_levelled), the default first. Where two tiles' fields disagree the blend's minor roads are fainter than
#: a tile's, and at the default level junctions went missing (the bar's 8 test mosaics measured 6 junctions a km²
#: fewer than they asked for). Chosen on the validation split's 12 mosaics (sampler seed 0), against the path
#: levels alone: cycle/foot share's MAE 0.0262 -> 0.0211, intersection density's 18.6 -> 16.3 a km² (-2.3
#: [-3.6, -1.1], 95 %, mosaics as units), dead-end share's 0.135 -> 0.132; three road levels (0.24, 0.3, 0.36)
#: 0.0243 and 16.6. On the bar's 8 test mosaics, seeds 0 / 1 / 2: cycle/foot share 0.049 / 0.050 / 0.059 ->
#: 0.047 / 0.050 / 0.052, intersection density 16.1 / 18.8 / 16.8 -> 13.0 / 17.6 / 15.0. Six times the
#: decodings of the path levels alone.
STITCHED_ROAD_LEVELS = (SKELETON_LEVEL, 0.27, 0.24, 0.21, 0.33, 0.36)
#: The weights of a stitched grid tile's choice of levels (selection.WEIGHTS, the rest 1): cycle and foot share
#: 12 where a tile's draw weighs it 3, intersection density 6. A level changes a window's paths and the junctions
#: they make, little else; weighed as a tile's draw, the lengths and the rest of the network's form outweighed the
#: share of paths a window asks for. With the finer levels, on the validation split's 12 mosaics (sampler seed 0)
#: cycle/foot share's MAE 0.0282 -> 0.0262 and intersection density's 18.4 -> 18.6 a km² (cycle/foot share alone
#: at 12: 0.0256 and 18.9); on the bar's 8 test mosaics at seeds 0 and 1, 0.059 -> 0.049 and 0.050, intersection
#: density 16.7 -> 16.1 and 19.3 -> 18.8.
PATH_LEVEL_WEIGHTS = {**WEIGHTS, "cycle_foot_share": 12.0, "intersection_density_per_km2": 6.0}
#: After each grid tile takes the pair of levels at which its window, decoded whole at that pair, measures best,
#: the tiles take the pairs this many steps away (road level, path level or both, in the levels' order) in
#: context: the tiles of a checkerboard's one colour, then the other's, each where its own window measures nearer
#: its request with the tiles around it at their pairs and the levels meeting in their ramps, as the layout
#: ends. Scored at one pair throughout, a window's border band (two fifths of it) measures another layout than
#: the one drawn. On the validation split's 12 mosaics (sampler seed 0), against the pairs chosen whole alone:
#: cycle/foot share's MAE 0.0211 -> 0.0194 (-0.002 [-0.005, +0.002], 95 %, mosaics as units), intersection
#: density's 16.3 -> 15.3 a km² (-1.0 [-2.0, +0.0]), dead-end share's 0.132 -> 0.126; on the bar's 8 test mosaics
#: at seeds 0 / 1 / 2, cycle/foot share 0.047 / 0.050 / 0.052 -> 0.042 / 0.041 / 0.046, intersection density
#: 13.0 / 17.6 / 15.0 -> 13.5 / 16.6 / 14.4. Two rounds, the neighbours' windows scored too, or four colours
#: measured no better (docs/model_development.md). About a third more decodings than the pairs alone. 0: off.
LEVEL_STEPS_IN_CONTEXT = 1
#: Whether a grid tile drawn again (REDRAWN_GRID_TILES) is scored with the street network's form weighing more
#: (selection.WEIGHTS: intersection density, dead-end and cycle/foot share 3, the rest 1), as single tiles are.
#: The first draws weigh every parameter the same (see _blended_errors): their windows' streets are broken where
#: tiles still to be drawn carry them on. A grid tile's window drawn again is complete. On the bar's 8 stitched
#: test mosaics, paired against equal weights: seed 0, intersection density's MAE 18.8 -> 16.9 a km², seed 1,
#: 19.7 -> 19.0 (both seeds, mosaics as units: -1.3 [-2.7, +0.1], 95 %); dead-end share's 0.129 -> 0.126 and
#: 0.156 -> 0.138 (-0.011 [-0.023, +0.002]); cycle/foot share's 0.074 -> 0.076 and 0.061 -> 0.064 (+0.003
#: [-0.002, +0.007]); minor-road density's 1.92 -> 1.98 and 1.88 -> 2.20 km/km² (+0.19 [+0.03, +0.35]: the
#: parameters weighing 1 give way); the mosaics' street pixels in their largest piece 0.989 -> 0.996 and
#: 0.993 -> 0.997 (real 0.976); the same time.
WEIGHTED_SECOND_DRAW = True
#: A street VAE's tile on the layout's tile grid weighs 1 but within this share of a tile of a border it shares
#: with another, where it hands over (smoothstep) to the tile drawn across that border, which weighs the rest.
#: Blended by a squared-sine window, every window's ground was a blend of four tiles, and a tile drawn for one
#: request measured another: on the bar's 8 stitched test mosaics (128 tiles) intersection density's MAE was
#: 33.5 a km² (single tiles 13.1), 26.0 now with the arterials' changes below. Drawing the grid's tiles first
#: and those across its borders after measured 22.8, but left streets broken at the borders (street pixels in
#: the largest piece of the bar's 2 x 2 km layouts' 1 km windows 0.85, real 0.98; in raster order 0.94).
SEAM_BAND = 0.25
#: Weight of a coarser stage's lines (the arterials) in a street VAE's layout, beside a tile's 1: its tiles are
#: chosen and moved to continue them, scored with them (as the chain will draw them), and the lines blended
#: into its fields, so that it draws its own major roads on them and its streets meet them. On the same
#: mosaics, with the grid's tiles drawn first (see SEAM_BAND), drawn beside the arterials without them:
#: intersection density's MAE 29.7 (mean 88.7 a km² for 69.7 asked); continued, 28.7 (73.4); also scored with
#: them, 22.8 (63.4). In raster order with them all at weight 1: 26.0 (63.5), but the bar's 2 x 2 km layouts
#: broke (0.857 of their street pixels in the largest piece of a 1 km window, real 0.976, target within 10 %).
#: At 0: 28.1 and 0.923; at 0.3: 23.8 and 0.905; at 0.3 with candidates scored as their blend (see _matched),
#: 23.8 (68.5) and 0.911. On the 3 validation mosaics (48 tiles) intersection density's MAE at 1, 0, 0.3 and
#: 0.3 scored blended: 31.5, 38.1, 36.6 and 34.0, dead-end share's 0.247, 0.176, 0.202 and 0.177: differences
#: of a few a km² between variants are within a run's noise; the weight is chosen for the connected streets.
COARSE_WEIGHT = 0.3
#: The coarser stage's lines are cut out of the chain's tiles asking for less major road than this, km/km²: 65 %
#: of the offline set's tiles have none, and its 1 km windows, drawn on requests averaged over 256 m pixels,
#: laid major roads through them (major-road share's MAE on the same mosaics 0.105, cut 0.075; floor 0.031).
NO_MAJOR_ROAD_KM_PER_KM2 = 0.5
#: Folded into a layout's key, plus the stage's position, for a chain's coarser stages (the others take their
#: position among the stages at the chain's scale, as in single tiles).
COARSE_KEY = 1 << 20


def tile_offsets(n: int, tile: int, stride: int | None = None) -> list[int]:
    """Tile starts along one axis of ``n`` pixels every ``stride`` (half a tile by default), the last flush
    with the end."""
    if n <= tile:
        return [0]
    stride = stride or tile // 2
    starts = list(range(0, n - tile + 1, stride))
    if starts[-1] != n - tile:
        starts.append(n - tile)
    return starts


def _drawing(spec: RunSpec) -> str:
    """What a generator stage draws, in words, for its progress: its output channels."""
    return ", ".join(c.replace("_", " ") for c in spec.output_channels)


def blend_window(tile: int) -> np.ndarray:
    """(tile, tile) weights: squared sine, largest in the middle, small but positive at the border."""
    w = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    return np.outer(w, w)


def generate_layout(model: TrainedModel | GeneratorChain, fields: np.ndarray, key: jax.Array,
                    given: np.ndarray | None = None, batch_size: int = 16) -> np.ndarray:
    """Blended per-pixel probabilities in [0, 1], (H, W, len(output_channels)); a proximity generator's
    street fields already decoded to 0/1, their pieces joined where the blend broke them and tidied
    (:func:`urbangen.inference.deterministic_layout`).

    Parameters
    ----------
    model
        A generator, or a chain of them: each stage then runs over the whole
        layout and the next draws around its thresholded result, so that
        buildings front one connected street network rather than each
        tile's own.
    fields
        (H, W, P) requested parameter values in their units, NaN where free.
    key
        Randomness of this sample (latent fields, pix2pix dropout, VAE latents).
    given
        (H, W, len(input_channels)) uint8 0/1 layout channels the run
        draws around (a fixed street network), if it does.
    """
    z = model.spec.scaler.transform(fields)
    if isinstance(model, GeneratorChain):
        drawn = model.given_channels(given)
        out: dict[str, np.ndarray] = {}
        tile_stage = 0  # the stage's position among those at the chain's scale
        coarse: dict[str, np.ndarray] = {}  # 0/1 lines of the coarser stages, by channel
        for i, stage in enumerate(model.stages):
            inputs = stage.spec.input_channels
            stage_given = np.stack([drawn[c] for c in inputs], axis=-1) if inputs else None
            if model.factor(stage) > 1:
                if min(z.shape[:2]) * model.spec.meters_per_pixel < stage.spec.tile_m:
                    continue  # under its tile a major road is in or not by where it fell (see generate_tiles)
                lines = _coarse_lines(stage, model.stage_maps(stage, z), model.factor(stage),
                                      jax.random.fold_in(key, COARSE_KEY + i), batch_size,
                                      MAJOR_ROAD_WIDTH_M / model.spec.meters_per_pixel, model.spec.tile_px)
                merge_stage(drawn, out, *stage_outputs(lines.astype(np.float32), stage.spec, layout=lines))
                coarse.update({c: lines[..., j] for j, c in enumerate(stage.spec.output_channels)})
                continue
            maps = model.stage_maps(stage, z)
            probs = _blend(stage, maps, jax.random.fold_in(key, tile_stage), stage_given, batch_size,
                           model.selection, coarse)
            tile_stage += 1
            layout = None
            if model.selection is not None and draws_paths(stage.spec):
                layout = _street_levelled(stage, maps, probs, model.selection, coarse)
            probs, layout = speckless_stage(probs, layout, stage.spec)  # the blended layout's, as a single tile's
            if model.rectangular_footprints:
                probs, layout = rectangular_stage(probs, layout, stage.spec, drawn)
            # A proximity stage's fields are decoded here, after blending: the chain's output is 0/1 for them.
            merge_stage(drawn, out, *stage_outputs(probs, stage.spec, stitched=True, layout=layout))
        return np.stack([out[c] for c in model.spec.output_channels], axis=-1)
    probs = _blend(model, z, key, given, batch_size)
    if model.spec.sampling == "proximity":  # decoded, joined and tidied here as a chain's street stage is
        return deterministic_layout(probs, model.spec, stitched=True).astype(np.float32)
    return probs


def _street_levelled(stage: TrainedModel, z: np.ndarray, probs: np.ndarray, selection: Selection,
                     coarse: dict[str, np.ndarray]) -> np.ndarray | None:
    """A stitched street layout's 0/1 layout with each grid tile's roads and cycle and foot paths decoded at the
    pair of levels (of :data:`STITCHED_ROAD_LEVELS` and :data:`STITCHED_PATH_LEVELS`) at which its window,
    decoded whole (joined and tidied) and with the ``coarse`` lines merged, measures nearest its request ``z``
    (standardized maps, (H, W, P)), the street network's form weighing more as in a complete window and cycle
    and foot share most (:data:`PATH_LEVEL_WEIGHTS`); as a single tile's path level is chosen
    (:func:`urbangen.inference.best_path_levels`), among finer levels. The levels meet in a ramp across each
    border, not a step, so that a street is not cut where two tiles' levels differ. A pair is open to a window
    only where the window's street pixels in its largest piece stay at their share at the default levels
    (within :data:`PATH_LEVEL_PIECE_TOLERANCE`): a street decoded away where it joined two pieces, or faint
    fragments drawn on their own, do not make a better window. The pairs are then moved where a window measures
    nearer beside its neighbours' pairs (:func:`_levels_in_context`). None for a layout smaller than a tile (no
    window of it is a tile's)."""
    spec = stage.spec
    t = spec.tile_px
    h, w = probs.shape[:2]
    if min(h, w) < t:
        return None
    starts = [(r, c) for r in tile_offsets(h, t, t) for c in tile_offsets(w, t, t)]
    asked = np.stack([z[r:r + t, c:c + t].mean(axis=(0, 1)) for r, c in starts])
    # (road level, path level), the default first; on a tie the earlier pair, so the default road level
    pairs = [(road, path) for road in STITCHED_ROAD_LEVELS for path in STITCHED_PATH_LEVELS]
    errors, pieces = [], []
    steps = len(pairs) + 2 * len(_level_moves())
    for i, (road, path) in enumerate(pairs):
        layout = deterministic_layout(probs, spec, stitched=True, path_level=path, road_level=road)
        if i == 0:
            default_layout = layout  # what every window keeps unless another pair is better
        error, piece = _window_errors(stage, layout, starts, asked, selection, coarse)
        errors.append(error)
        pieces.append(piece)
        progress.report(f"{_drawing(spec)}: street levels tried", i + 1, steps)
    # A pair that breaks a window's network apart (a street decoded away where it joined two pieces, faint
    # fragments drawn on their own) is not a better window, whatever it measures.
    kept = np.stack(pieces) >= pieces[0] - PATH_LEVEL_PIECE_TOLERANCE
    best = np.argmin(np.where(kept, np.stack(errors), np.inf), axis=0)
    levels = [pairs[b] for b in best]
    layout = _levels_decoded(probs, spec, starts, levels) if best.any() else default_layout
    if not LEVEL_STEPS_IN_CONTEXT:
        return layout
    return _levels_in_context(stage, probs, layout, starts, levels, asked, selection, coarse, pieces[0],
                              partial(progress.report, f"{_drawing(spec)}: street levels tried", total=steps),
                              done=len(pairs))


def _level_moves() -> list[tuple[int, int]]:
    """The (road, path) steps a grid tile's levels may move in context: up to :data:`LEVEL_STEPS_IN_CONTEXT`
    in either or both, not none."""
    n = LEVEL_STEPS_IN_CONTEXT
    return [(dr, dp) for dr in range(-n, n + 1) for dp in range(-n, n + 1) if (dr, dp) != (0, 0)]


def _levels_in_context(stage: TrainedModel, probs: np.ndarray, layout: np.ndarray, starts: list[tuple[int, int]],
                       levels: list[tuple[float, float]], asked: np.ndarray, selection: Selection,
                       coarse: dict[str, np.ndarray], default_pieces: np.ndarray, report: Callable[..., None],
                       done: int) -> np.ndarray:
    """The stitched street ``layout`` of :func:`_street_levelled`, decoded at ``levels``, with each grid tile's
    (road, path) levels moved up to :data:`LEVEL_STEPS_IN_CONTEXT` steps where its window then measures nearer
    its request, the tiles around it at their levels: a checkerboard's one colour of tiles at a time, each of its
    tiles keeping the move that scores best (or none), then the other colour's on the layout that leaves. A move
    that takes a window's street pixels in its largest piece below the default pair's share (``default_pieces``)
    and below what they are before it is not taken."""
    spec, t = stage.spec, stage.spec.tile_px
    h, w = probs.shape[:2]
    rows, cols = tile_offsets(h, t, t), tile_offsets(w, t, t)
    colours = [(rows.index(r) + cols.index(c)) % 2 for r, c in starts]
    roads, paths = sorted(STITCHED_ROAD_LEVELS), sorted(STITCHED_PATH_LEVELS)
    levels = list(levels)
    for colour in (0, 1):
        members = [i for i, k in enumerate(colours) if k == colour]
        if not members:  # a layout of one tile
            continue
        best_error, piece = _window_errors(stage, layout, [starts[i] for i in members], asked[members], selection,
                                           coarse)
        floor = np.minimum(default_pieces[members], piece)
        chosen = [levels[i] for i in members]
        for dr, dp in _level_moves():
            done += 1
            report(done)
            trial, moved = list(levels), []
            for j, i in enumerate(members):
                road, path = roads.index(levels[i][0]) + dr, paths.index(levels[i][1]) + dp
                if 0 <= road < len(roads) and 0 <= path < len(paths):
                    trial[i] = (roads[road], paths[path])
                    moved.append(j)
            if not moved:
                continue
            tiles = [members[j] for j in moved]
            error, piece = _window_errors(stage, _levels_decoded(probs, spec, starts, trial),
                                          [starts[i] for i in tiles], asked[tiles], selection, coarse)
            for j, e, p in zip(moved, error, piece):
                if e < best_error[j] and p >= floor[j]:
                    best_error[j], chosen[j] = e, trial[members[j]]
        if any(levels[i] != pair for i, pair in zip(members, chosen)):
            for i, pair in zip(members, chosen):
                levels[i] = pair
            layout = _levels_decoded(probs, spec, starts, levels)
    return layout


def _window_errors(stage: TrainedModel, layout: np.ndarray, starts: list[tuple[int, int]], asked: np.ndarray,
                   selection: Selection, coarse: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each window of ``layout`` at ``starts`` (a tile each), with the ``coarse`` lines merged: its error
    against ``asked`` (standardized, a row a window) as a stitched tile's levels are scored, and the share of
    its street pixels in its largest piece (1 where it has none)."""
    t = stage.spec.tile_px
    windows = np.concatenate([_with_lines(layout[None, r:r + t, c:c + t], stage.spec,
                                          {ch: m[r:r + t, c:c + t] for ch, m in coarse.items()})
                              for r, c in starts])
    errors = np.asarray(selection[1](stage, windows, asked, None, weighted=True, weights=PATH_LEVEL_WEIGHTS), float)
    pieces = np.nan_to_num(largest_component_share(windows, list(stage.spec.output_channels)), nan=1.0)
    return errors, pieces


def _levels_decoded(probs: np.ndarray, spec: RunSpec, starts: list[tuple[int, int]],
                    levels: list[tuple[float, float]]) -> np.ndarray:
    """A stitched street layout decoded with each grid tile at ``starts`` at its (road, path) ``levels``, the
    levels meeting in a ramp a quarter of a tile wide across each border."""
    from scipy import ndimage

    t = spec.tile_px
    roads, paths = (np.full(probs.shape[:2], SKELETON_LEVEL, np.float32) for _ in range(2))
    for (r, c), (road, path) in zip(starts, levels):
        roads[r:r + t, c:c + t], paths[r:r + t, c:c + t] = road, path
    return deterministic_layout(probs, spec, stitched=True,
                                path_level=ndimage.uniform_filter(paths, t // 4, mode="nearest"),
                                road_level=ndimage.uniform_filter(roads, t // 4, mode="nearest"))


def _coarse_lines(stage: TrainedModel, z: np.ndarray, factor: int, key: jax.Array, batch_size: int,
                  width_px: float, tile_px: int) -> np.ndarray:
    """A coarser chain stage over the layout: its requests averaged over its pixels, its stitched lines
    decoded and redrawn at the layout's scale, ``width_px`` wide (0/1, (H, W, C)), and cut out of the
    chain's ``tile_px`` tiles that ask for no major road. Its windows are chosen by where the chain's tiles
    under them ask for major roads (:func:`_major_road_cells_error`), not by the calibration, which
    measures tiles at the chain's scale."""
    spec = stage.spec
    h, w = z.shape[:2]
    ph, pw = (-(-n // factor) * factor for n in (h, w))
    z = np.pad(z, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    coarse = z.reshape(ph // factor, factor, pw // factor, factor, -1).mean(axis=(1, 3))
    asks_major = "major_road_density_km_per_km2" in spec.parameter_names and "major_roads" in spec.output_channels
    field_scorer = partial(_major_road_cells_error, stage, tile_px // factor) if asks_major else None
    probs = _blend(stage, coarse, key, None, batch_size, field_scorer=field_scorer)
    lines = upscale_lines(deterministic_layout(probs, spec, stitched=True), factor, width_px)
    if asks_major:  # on the street stage's tile grid (see _blend), the last tiles cut by the layout's end
        asked = _major_road_density(spec, z)
        for r in range(0, ph, tile_px):
            for c in range(0, pw, tile_px):
                if asked[r:r + tile_px, c:c + tile_px].mean() < NO_MAJOR_ROAD_KM_PER_KM2:
                    lines[r:r + tile_px, c:c + tile_px] = 0
    return lines[:h, :w]


def _major_road_density(spec: RunSpec, z: np.ndarray) -> np.ndarray:
    """The major-road density (km/km²) a stage's standardized request maps ``z`` (..., P) ask for."""
    return spec.scaler.inverse(z)[..., spec.parameter_names.index("major_road_density_km_per_km2")]


def _major_road_cells_error(stage: TrainedModel, cell_px: int, layouts: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per decoded window (M, t, t, C) of a coarser stage, the mean distance, in training spreads, of its
    major-road length per ``cell_px`` cell (a chain tile) from the density the request maps ``z`` (t, t, P) ask
    for there. The length is the centre line's pixels times their size: a diagonal's is counted up to 1/√2
    short, which matters little to ranking a window's samples by where their roads run."""
    from skimage.morphology import skeletonize

    spec = stage.spec
    n = z.shape[0] // cell_px
    side = n * cell_px

    def per_cell(a: np.ndarray, reduce: Callable[..., np.ndarray]) -> np.ndarray:
        return reduce(a[:side, :side].reshape(n, cell_px, n, cell_px), axis=(1, 3))

    asked = per_cell(_major_road_density(spec, z), np.mean)
    km = spec.meters_per_pixel / 1000.0
    channel = spec.output_channels.index("major_roads")
    length = np.stack([per_cell(skeletonize(layout[..., channel].astype(bool)), np.sum) for layout in layouts]) * km
    std = spec.scaler_std[spec.parameter_names.index("major_road_density_km_per_km2")]
    return np.nanmean(np.abs(length / (cell_px * km) ** 2 - asked), axis=(1, 2)) / std


def _blend(model: TrainedModel, z: np.ndarray, key: jax.Array, given: np.ndarray | None,
           batch_size: int, selection: Selection | None = None, coarse: dict[str, np.ndarray] | None = None,
           field_scorer: FieldScorer | None = None) -> np.ndarray:
    """One generator over a layout of standardized parameter maps: overlapping tiles, blended.

    A generator with a latent map gets one latent field over the whole
    layout, each tile its own window of it, so overlapping tiles see the
    same noise where they overlap and agree there. With ``selection`` it
    draws that many fields, scores each tile-sized block of each blended
    result, and blends once more with the field put together from each
    block's best: cells of independent normal fields, so still a draw of
    the same prior, with no seam in the noise.

    A street VAE (:func:`_matched`) continues ``coarse``: 0/1 lines by
    channel, (H, W), that a coarser stage drew; ``field_scorer`` chooses its
    windows by their request maps instead of ``selection``.
    """
    spec = model.spec
    h, w = z.shape[:2]
    t = spec.tile_px
    stride = spec.latent_stride if spec.latent_channels else 1
    # At least one tile, and whole latent cells, so that every tile window starts on a cell boundary; a
    # street VAE's layout whole tiles, so that its tile grid has no tile pushed flush against the end over
    # its neighbour (see SEAM_BAND).
    matched = spec.kind == "vae" and spec.sampling == "proximity"
    unit = t if matched else stride
    ph, pw = (-(-max(n, t) // unit) * unit for n in (h, w))
    if (ph, pw) != (h, w):  # pad, generate, crop
        z = np.pad(z, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        given = None if given is None else np.pad(given, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    if matched:  # streets must continue from tile to tile
        lines = {c: np.pad(m, ((0, ph - m.shape[0]), (0, pw - m.shape[1])))
                 for c, m in (coarse or {}).items() if c in spec.output_channels}
        return _matched(model, z, key, batch_size, selection, lines, field_scorer)[:h, :w]
    if not spec.latent_channels:
        return _blend_field(model, z, None, key, given, batch_size)[:h, :w]
    shape = (ph // stride, pw // stride, spec.latent_channels)
    field = np.asarray(jax.random.normal(jax.random.fold_in(key, 2**31 - 1), shape))
    if selection is not None:
        field = _selected_field(model, z, field, key, given, batch_size, selection)
    return _blend_field(model, z, field, key, given, batch_size)[:h, :w]


def _selected_field(model: TrainedModel, z: np.ndarray, first: np.ndarray, key: jax.Array, given: np.ndarray | None,
                    batch_size: int, selection: Selection) -> np.ndarray:
    """A latent field whose every tile-sized block is the best of ``selection[0]`` fields' there."""
    k, scorer = selection
    spec = model.spec
    t, stride = spec.tile_px, spec.latent_stride
    fields = [first] + [np.asarray(jax.random.normal(jax.random.fold_in(key, 2**31 - 1 - j), first.shape))
                        for j in range(1, k)]
    blocks = [(r, c) for r in tile_offsets(z.shape[0], t, t) for c in tile_offsets(z.shape[1], t, t)]
    requested = np.stack([z[r:r + t, c:c + t].mean(axis=(0, 1)) for r, c in blocks])
    seeds = tile_seeds(key, len(blocks))  # a block's target, the same for every field
    errors = []
    for j, f in enumerate(fields):
        layout = deterministic_layout(_blend_field(model, z, f, key, given, batch_size), spec, window=True)
        errors.append(scorer(model, np.stack([layout[r:r + t, c:c + t] for r, c in blocks]), requested, seeds))
        progress.report(f"{_drawing(spec)}: candidate latent fields", j + 1, k)
    best = np.argmin(np.stack(errors), axis=0)
    field = first.copy()
    for (r, c), j in zip(blocks, best):  # a block flush with the layout's end may overlap the one before it
        field[r // stride:(r + t) // stride, c // stride:(c + t) // stride] = \
            fields[j][r // stride:(r + t) // stride, c // stride:(c + t) // stride]
    return field


def _blend_field(model: TrainedModel, z: np.ndarray, field: np.ndarray | None, key: jax.Array,
                 given: np.ndarray | None, batch_size: int) -> np.ndarray:
    """Overlapping tiles of a padded layout, each seeing its window of the latent ``field``, blended."""
    spec = model.spec
    t = spec.tile_px
    stride = spec.latent_stride if spec.latent_channels else 1
    ph, pw = z.shape[:2]
    windows = [(r, c) for r in tile_offsets(ph, t) for c in tile_offsets(pw, t)]
    weight = blend_window(t)
    total = np.zeros((ph, pw, len(spec.output_channels)))
    norm = np.zeros((ph, pw, 1))
    cells = t // stride
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        maps = np.stack([z[r:r + t, c:c + t] for r, c in chunk])
        tiles = None if given is None else np.stack([given[r:r + t, c:c + t] for r, c in chunk])
        latent = None if field is None else np.stack(
            [field[r // stride:r // stride + cells, c // stride:c // stride + cells] for r, c in chunk])
        out = model.generate_tiles(maps, jax.random.fold_in(key, start), tiles, latent)
        for (r, c), tile in zip(chunk, out):
            total[r:r + t, c:c + t] += tile * weight[..., None]
            norm[r:r + t, c:c + t] += weight[..., None]
        progress.report(f"{_drawing(spec)}: tiles drawn", start + len(chunk), len(windows))
    return (total / norm).astype(np.float32)


#: ``field_scorer(layouts, z)``: an error per decoded window (M, t, t, C) for its request maps (t, t, P).
FieldScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``drawn_under(r, c)``: the weighted sum (t, t, C) drawn so far in a stitched layout's window and its weights.
DrawnUnder = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


def _matched(model: TrainedModel, z: np.ndarray, key: jax.Array, batch_size: int,
             selection: Selection | None = None, coarse: dict[str, np.ndarray] | None = None,
             field_scorer: FieldScorer | None = None) -> np.ndarray:
    """A one-latent-per-tile generator over a layout: tiles at half-tile strides in raster order, those on the
    layout's tile grid owning their ground but a band along their borders (:data:`SEAM_BAND`), each of
    ``CANDIDATES`` samples, the one agreeing best (soft Dice, weighted by the blend so far) with what is
    drawn under it, its latent then moved to continue that (:data:`CONTINUE_STEPS`).

    With ``selection`` (k, scorer), the k samples agreeing best are scored
    against the tile's request (what real tiles measure for it on average), a tile across a grid border also
    by the grid's windows drawn before it; the best :data:`CONTINUED_CANDIDATES` of them are moved and
    scored again as moved, and the best of those is kept. Then (:data:`REDRAWN_GRID_TILES`) each grid tile is
    drawn again in the same way, once every tile across its borders is drawn (its window is then the
    layout's), and the new best replaces it only where it scores better. With ``field_scorer``, the half
    agreeing best are scored by it before moving and the best is moved. Either scores each sample's window as
    blended with what is drawn under it so far (without the tiles drawn after it). The layout is whole tiles
    (``_blend`` pads it). ``coarse`` lines (0/1 (H, W) by output channel, a coarser stage's) count as drawn,
    at :data:`COARSE_WEIGHT`, and samples are scored with them as the chain merges them
    (:func:`urbangen.inference.merge_stage`)."""
    spec = model.spec
    t = spec.tile_px
    h, w = z.shape[:2]
    assert h % t == 0 and w % t == 0, "a street layout of whole tiles: the grid's windows lie t/2 either side"
    total = np.zeros((h, w, len(spec.output_channels)))
    norm = np.zeros((h, w, 1))
    # Given lines as drawn fields, weighed per channel; their weighted sum once, for every window to slice.
    coarse = coarse or {}
    prior_weight = np.array([COARSE_WEIGHT if name in coarse else 0.0 for name in spec.output_channels])
    weighted_prior = np.zeros_like(total)
    for j, name in enumerate(spec.output_channels):
        if name in coarse:
            field = np.asarray(proximity_field(jnp.asarray(coarse[name][None, ..., None])))[0, ..., 0]
            weighted_prior[..., j] = prior_weight[j] * field

    def drawn_under(r: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        """The weighted sum drawn so far in the window at (r, c), given lines included, and its weights."""
        return total[r:r + t, c:c + t] + weighted_prior[r:r + t, c:c + t], norm[r:r + t, c:c + t] + prior_weight

    grid_rows, grid_cols = set(tile_offsets(h, t, t)), set(tile_offsets(w, t, t))
    across = {(r, c): (r not in grid_rows, c not in grid_cols)
              for r in tile_offsets(h, t) for c in tile_offsets(w, t)}
    windows = list(across)  # in raster order: each tile continues those before it
    latents, decode = model.fn("latents"), model.fn("decode")
    weights = {start: np.outer(*(_seam_profile(t, a) for a in across[start]))[..., None] for start in windows}
    redrawn = selection is not None and REDRAWN_GRID_TILES and CONTINUE_STEPS and len(windows) > 1
    # Every draw in its order, (i, r, c): the first pass over the windows, then the grid tiles drawn again.
    schedule = list(enumerate(windows))
    if redrawn:
        schedule += [(len(windows) + i, start) for i, start in enumerate(windows) if not any(across[start])]
    following = {i: schedule[k + 1] for k, (i, _) in enumerate(schedule[:-1])}
    dispatched: dict[int, tuple[np.ndarray, jax.Array, jax.Array]] = {}

    def candidates(i: int, r: int, c: int) -> tuple[np.ndarray, jax.Array, jax.Array]:
        """The ``i``-th draw's parameters, latents and decoded candidates, dispatched and not waited for: they
        depend on nothing drawn, so JAX decodes the next draw's while this thread measures the current one's."""
        params = np.repeat(z[None, r:r + t, c:c + t].mean(axis=(1, 2)), CANDIDATES, axis=0)
        # The same latents and fields as model.generate_tiles(key) draws, kept to move the chosen one.
        codes = jnp.concatenate([latents(jax.random.fold_in(key, i * 1000 + j), min(batch_size, CANDIDATES - j))
                                 for j in range(0, CANDIDATES, batch_size)])
        return params, codes, decode(codes, params)

    def draw(i: int, r: int, c: int, weight: np.ndarray, incumbent: np.ndarray | None = None) -> np.ndarray:
        """The tile kept for the window at (r, c) (the ``i``-th draw): the best of its candidates, moved; with an
        ``incumbent`` tile (a grid tile drawn again, its window complete), that one where it scores no worse
        than each of them."""
        params, codes_dispatched, samples_dispatched = dispatched.pop(i) if i in dispatched else candidates(i, r, c)
        if i in following:
            j, (rj, cj) = following[i]
            dispatched[j] = candidates(j, rj, cj)
        codes, samples = np.asarray(codes_dispatched), np.asarray(samples_dispatched)
        drawn_sum, known = drawn_under(r, c)
        drawn = drawn_sum / np.maximum(known, 1e-12)
        # Soft Dice of the fields under the blend so far: a squared error would prefer empty tiles (a
        # blurry street placed a few pixels off costs twice what no street does), Dice scores them 0.
        overlap = (2 * np.minimum(samples, drawn) * known).sum(axis=(1, 2, 3))
        mass = ((samples + drawn) * known).sum(axis=(1, 2, 3))
        agreement = (overlap + 1e-6) / (mass + 1e-6)
        best, tile = int(np.argmax(agreement)), None
        if selection is not None or field_scorer is not None:
            scored = partial(_blended_errors, model, selection, field_scorer, z, (r, c), across[(r, c)], weight,
                             drawn_under, coarse, incumbent is not None and WEIGHTED_SECOND_DRAW)
            shortlist = np.argsort(-agreement, kind="stable")[:selection[0] if selection else CANDIDATES // 2]
            errors = scored(samples[shortlist], params[shortlist])
            best = int(shortlist[np.argmin(errors)])
            if selection is not None and known.max() > 0 and CONTINUE_STEPS:
                # The best few moved first and scored again as moved: chosen before moving, a window
                # measured near its request and, moved, was not (see CONTINUED_CANDIDATES).
                top = shortlist[np.argsort(errors, kind="stable")[:CONTINUED_CANDIDATES]]
                moved_tiles = np.asarray(decode(_continued(model, codes[top], params[top], drawn, known), params[top]))
                moved_errors = scored(moved_tiles, params[top])
                j = int(np.argmin(moved_errors))
                best, tile = int(top[j]), moved_tiles[j]
                if incumbent is not None and scored(incumbent[None], params[:1])[0] <= moved_errors[j]:
                    return incumbent
        if tile is None:
            tile = samples[best]
            if known.max() > 0 and CONTINUE_STEPS:
                tile = np.asarray(decode(_continued(model, codes[best:best + 1], params[:1], drawn, known),
                                         params[:1]))[0]
        return tile

    draws = len(schedule)
    stage = f"{_drawing(spec)}: tiles drawn"
    kept = {}
    for i, (r, c) in enumerate(windows):
        weight = weights[(r, c)]
        kept[(r, c)] = draw(i, r, c, weight)
        total[r:r + t, c:c + t] += kept[(r, c)] * weight
        norm[r:r + t, c:c + t] += weight
        progress.report(stage, i + 1, draws)
    done = len(windows)
    if redrawn:
        # Every tile across a grid border is drawn now, so a grid tile's window is what the layout will measure:
        # each grid tile is drawn again, scored in its window as it ends, and kept where it measures closer
        # (draw compares the tile it was with its moved candidates: with no continuation there are none).
        for i, (r, c) in enumerate(windows):
            if any(across[(r, c)]):
                continue
            weight = weights[(r, c)]
            total[r:r + t, c:c + t] -= kept[(r, c)] * weight
            norm[r:r + t, c:c + t] -= weight
            kept[(r, c)] = draw(len(windows) + i, r, c, weight, incumbent=kept[(r, c)])
            total[r:r + t, c:c + t] += kept[(r, c)] * weight
            norm[r:r + t, c:c + t] += weight
            done += 1
            progress.report(stage, done, draws)
    return ((total + weighted_prior) / (norm + prior_weight)).astype(np.float32)


def _blended_errors(model: TrainedModel, selection: Selection | None, field_scorer: FieldScorer | None,
                    z: np.ndarray, start: tuple[int, int], across: tuple[bool, bool], weight: np.ndarray,
                    drawn_under: DrawnUnder, coarse: dict[str, np.ndarray], complete: bool, tiles: np.ndarray,
                    asked: np.ndarray) -> np.ndarray:
    """Errors of a window's candidate ``tiles`` (M, t, t, C), weighed by ``weight``, each scored as the blend
    it makes with what is drawn under it so far (``drawn_under``), not alone: the streets the tiles before it
    carry into its band count in its window's measures. By ``field_scorer``, or else ``selection`` against
    ``asked`` (M, P); a tile across a grid border also by the grid's windows drawn before it
    (:func:`_grid_window_errors`); where the window is ``complete`` (a grid tile drawn again, every tile across
    its borders drawn), with the street network's form weighing more (selection.WEIGHTS)."""
    drawn, known = drawn_under(*start)
    layouts = _window_layouts(model.spec, (drawn + tiles * weight) / (known + weight), coarse, start)
    if field_scorer is not None:
        t = model.spec.tile_px
        r, c = start
        return field_scorer(layouts, z[r:r + t, c:c + t])
    assert selection is not None
    # Against the fit alone (no seeds: no real tile's scatter). A window is scored untidied, its streets broken
    # where the tiles drawn after it will carry them on, and a target drawn from a real tile (most have no dead
    # end) then kept the windows with the fewest streets: on the bar's two stitched 2 x 2 km layouts 0.84 of
    # the street pixels of each 1 km window lay in its largest piece with the default per-parameter scatter,
    # 0.90 without (real mosaics 0.98). For the same reason every parameter weighs the same here
    # (selection.WEIGHTS, 3 for dead-end share among others, took the bar's stitched layouts from 0.91 of their
    # street pixels in the largest piece to 0.82), but in a complete window, whose streets are all drawn
    # (WEIGHTED_SECOND_DRAW).
    errors = selection[1](model, layouts, asked, None, weighted=complete)
    if any(across):
        errors = errors + _grid_window_errors(model, selection, z, start, across, tiles * weight, weight,
                                              drawn_under, coarse)
    return errors


def _continued(model: TrainedModel, codes: np.ndarray, params: np.ndarray, drawn: np.ndarray,
               known: np.ndarray) -> np.ndarray:
    """Latents ``codes`` (M, d) moved to continue ``drawn`` (t, t, C), weighed by ``known`` (:data:`CONTINUE_STEPS`)."""
    m = len(codes)
    return model.fn("continue_drawn")(codes, params, np.repeat(drawn[None], m, axis=0).astype(np.float32),
                                      np.repeat((known / known.max())[None], m, axis=0).astype(np.float32),
                                      CONTINUE_STEPS, CONTINUE_LEARNING_RATE, CONTINUE_ANCHOR)


def _grid_window_errors(model: TrainedModel, selection: Selection, z: np.ndarray, start: tuple[int, int],
                        across: tuple[bool, bool], placed: np.ndarray, weight: np.ndarray, drawn_under: DrawnUnder,
                        coarse: dict[str, np.ndarray]) -> np.ndarray:
    """Summed errors of the tile grid's windows drawn before a tile across a grid border starting at ``start``,
    for each of its candidates' weighted fields ``placed`` (M, t, t, C) blended with what is drawn under each
    window (``drawn_under``): each such window measured against its own request."""
    t = model.spec.tile_px
    r, c = start
    rows = [r - t // 2, r + t // 2] if across[0] else [r]
    cols = [c - t // 2, c + t // 2] if across[1] else [c]
    errors = np.zeros(len(placed))
    for gr in rows:
        for gc in cols:
            if (gr, gc) >= (r, c):  # not drawn yet: its grid tile comes after this one
                continue
            drawn, known = drawn_under(gr, gc)
            win = np.repeat(drawn[None], len(placed), axis=0)
            wk = np.repeat(known[None], len(placed), axis=0)
            # the candidate's part of this window
            r0, c0 = max(gr, r), max(gc, c)
            r1, c1 = min(gr, r) + t, min(gc, c) + t
            win[:, r0 - gr:r1 - gr, c0 - gc:c1 - gc] += placed[:, r0 - r:r1 - r, c0 - c:c1 - c]
            wk[:, r0 - gr:r1 - gr, c0 - gc:c1 - gc] += weight[r0 - r:r1 - r, c0 - c:c1 - c]
            layouts = _window_layouts(model.spec, win / np.maximum(wk, 1e-12), coarse, (gr, gc))
            asked = np.repeat(z[None, gr:gr + t, gc:gc + t].mean(axis=(1, 2)), len(placed), axis=0)
            errors += selection[1](model, layouts, asked, None, weighted=False)
    return errors


def _window_layouts(spec: RunSpec, blended: np.ndarray, coarse: dict[str, np.ndarray],
                    start: tuple[int, int]) -> np.ndarray:
    """Blended windows (M, t, t, C) at ``start`` decoded as scored (untidied), the ``coarse`` lines merged."""
    t = spec.tile_px
    r, c = start
    return _with_lines(deterministic_layout(blended.astype(np.float32), spec, window=True), spec,
                       {ch: m[r:r + t, c:c + t] for ch, m in coarse.items()})


def _with_lines(layouts: np.ndarray, spec: RunSpec, lines: dict[str, np.ndarray]) -> np.ndarray:
    """Decoded windows (M, t, t, C) of ``spec``'s channels as a chain draws them over an earlier stage's
    0/1 ``lines`` (t, t) by channel (:func:`urbangen.inference.merge_stage`)."""
    if not lines:
        return layouts
    drawn = {c: np.repeat(m[None], len(layouts), axis=0).astype(np.uint8) for c, m in lines.items()}
    own = {c: layouts[..., j] for j, c in enumerate(spec.output_channels)}
    merge_stage(drawn, {}, own, own)
    return np.stack([drawn[c] for c in spec.output_channels], axis=-1)


def _seam_profile(t: int, across: bool) -> np.ndarray:
    """Blend weights along one axis of a tile of ``t`` px: on the tile grid (``across`` False), 1 but within
    :data:`SEAM_BAND` of a tile of its ends; across a grid border, the rest, about its middle. The two sum to 1
    at every pixel they share. Never quite 0, so that a layout's own edges, where no tile hands over, are covered."""
    u = np.arange(t) + 0.5
    d = np.abs(u - t / 2) if across else np.minimum(u, t - u)
    x = np.clip(d / (SEAM_BAND * t), 0.0, 1.0)
    grid_weight = x * x * (3 - 2 * x)
    return np.clip(1.0 - grid_weight if across else grid_weight, 1e-3, 1.0)


def correlated_bernoulli(probs: np.ndarray, rng: np.random.Generator, sigma_px: float = 1.5) -> np.ndarray:
    """Draw a 0/1 layout whose pixels are Bernoulli(``probs``) but whose noise is spatially smooth.

    A VAE decodes per-pixel probabilities, blurry after little training:
    thresholding them at 0.5 (the per-pixel mode) loses everything below
    it, and independent draws give speckle. Comparing ``probs`` with a
    Gaussian-smoothed noise field mapped to Uniform(0, 1) keeps every
    pixel's marginal probability exactly, so the expected coverage is the
    decoded one, while neighbouring pixels share their noise and form shapes.
    """
    from scipy.ndimage import gaussian_filter
    from scipy.special import ndtr

    noise = rng.standard_normal(probs.shape)
    smooth = gaussian_filter(noise, sigma=(sigma_px, sigma_px, 0), mode="wrap")
    smooth /= smooth.std(axis=(0, 1), keepdims=True) + 1e-12
    return (ndtr(smooth) < probs).astype(np.uint8)


def to_layout(probs: np.ndarray, spec: RunSpec, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 layout (..., H, W, C) from a generator's probabilities, as its run spec's ``sampling`` says.

    ``bernoulli`` (a VAE's blurry probabilities): :func:`correlated_bernoulli`,
    tile by tile; ``threshold`` (pix2pix's tanh outputs, near 0 or 1): p > 0.5;
    ``proximity``: street proximity fields decoded into lines (:func:`urbangen.inference.deterministic_layout`).
    """
    if spec.sampling == "bernoulli":
        if probs.ndim == 3:
            return correlated_bernoulli(probs, rng)
        return np.stack([correlated_bernoulli(p, rng) for p in probs]) if len(probs) else probs.astype(np.uint8)
    return deterministic_layout(probs, spec)
