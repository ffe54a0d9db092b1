"""``urbangen evaluate``: realism, conditioning and diversity of a generator, each beside its floor and ceiling.

Every number is taken on the run's **test** regions (never the validation
regions its best checkpoint and early stopping were chosen on), which a
buffer of at least one tile keeps off the training ground (:mod:`urbangen.splits`);
or, with ``regions="validation"``, on the validation regions, for choosing a
model or a sampler setting without looking at the test regions the bar is judged on.
The evaluators (:mod:`urbangen.evaluators`) are fed the run's predict functions.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.atomic import write_text_atomic
from data_pipeline.dataset import ATTRIBUTION, TileDataset, open_dataset
from data_pipeline.errors import InvalidValueError, RunSpecError, SplitMismatchError
from urbangen.evaluators.common import FloorPool, RealTiles, generate_for, read_real, sample_rows
from urbangen.evaluators.conditioning import Conditioning
from urbangen.evaluators.copying import Copying
from urbangen.evaluators.diversity import Diversity
from urbangen.evaluators.form import FootprintAndStreetForm
from urbangen.evaluators.frontage import BuildingStreetInterface
from urbangen.evaluators.realism import Realism
from urbangen.evaluators.seams import Seams, mosaic_rows, mosaic_side, real_mosaics
from urbangen.evaluators.stitched_conditioning import StitchedConditioning
from urbangen.evaluators.streets import StreetConnectivity, stitched_connectivity, stitched_major_road_reach
from urbangen.footprints import footprints_of
from urbangen.generate.selection import (
    CANDIDATES,
    SCATTERED_BELOW_R2,
    TARGET_SCATTER,
    by_parameters,
    candidates_of,
)
from urbangen.inference import GeneratorChain, RunSpec, TrainedModel
from urbangen.markdown import interval, met, number, table
from urbangen.measure import PARAMETER_CHANNELS, STREET_CHANNELS
from urbangen.pretrained import load_model, load_one_model
from urbangen.splits import Split, check_split

#: The held-out regions an evaluation may take, and the run's split each names (:class:`urbangen.splits.Split`):
#: the test regions judge a generator against the bar; the validation regions are for choosing among models and
#: settings, so that the choice does not fit the test regions' noise.
REGIONS = {"test": "test", "validation": "val"}


def check_compatible(spec: RunSpec, data: TileDataset, what: str) -> None:
    """Raise a clear error when ``data`` is not the kind of tiles the run was trained on."""
    if data.tile_px != spec.tile_px or abs(data.meters_per_pixel - spec.meters_per_pixel) > 1e-9:
        raise InvalidValueError(f"the dataset has {data.tile_px} px tiles at {data.meters_per_pixel} m/px; {what} "
                         f"{spec.workdir} was trained on {spec.tile_px} px at {spec.meters_per_pixel} m/px")
    if list(data.channels) != list(spec.channels):
        raise InvalidValueError(f"the dataset's channels {data.channels} differ from those {what} {spec.workdir} was "
                         f"trained on ({list(spec.channels)})")


def run_split(spec: RunSpec, data: TileDataset, split_seed: int | None = None) -> Split:
    """The run's recorded split, checked against ``data`` (and ``split_seed`` when given)."""
    if spec.split is None:
        raise SplitMismatchError(f"{spec.workdir} records no train/validation/test split (trained before splits "
                                 "were recorded): retrain it to evaluate it")
    return check_split(spec.split, data.tiles, seed=split_seed)


def _scatter_words(scatter: float | None) -> str:
    """How a report says what share of a real tile's scatter each selection target took."""
    if scatter is None:
        return (f"a real tile's scatter about it where the request explains less than R² {SCATTERED_BELOW_R2:g} "
                "of what real tiles measure, none elsewhere")
    return f"{scatter:g} of a real tile's scatter about it"


def evaluate(checkpoint: str | Path | TrainedModel | GeneratorChain, dataset: str | Path, out_dir: str | Path, *,
             encoder: str | Path | None = None, max_tiles: int = 128, seed: int = 0, split_seed: int | None = None,
             n_boot: int = 200, seams_m: float = 2048.0, stitched_mosaics: int = 8, candidates: int = CANDIDATES,
             target_scatter: float | None = TARGET_SCATTER, rectangular_footprints: bool | None = None,
             regions: str = "test", wandb_mode: str = "disabled") -> dict[str, Any]:
    """Evaluate a generator run on its test (or validation) regions; write ``evaluation.json``, ``report.md`` and
    plots.

    Parameters
    ----------
    checkpoint
        The generator: a shipped model's name, a model file, a run folder
        (see :func:`urbangen.pretrained.load_model`), or a loaded model.
    max_tiles
        Held-out tiles to evaluate on (all when fewer); as many real training
        tiles are the floor, and each comparison is at this one sample size.
    seed
        Seed of the tile choice and of the generated samples.
    split_seed
        The seed the run's split was drawn with, if the caller wants it
        checked; a different one is refused.
    seams_m
        Side of the stitched layout whose tile borders the seam evaluator
        inspects (0: skip it).
    stitched_mosaics
        Real held-out mosaics (4 x 4 tiles where the regions have them, else
        2 x 2) whose tiles' parameters are requested as one spatial field, the
        stitched layout measured tile by tile
        (:mod:`urbangen.evaluators.stitched_conditioning`; 0: skip it).
    candidates
        Samples a chain draws per tile and stage, keeping the one nearest the
        request, as ``urbangen generate`` does (:mod:`urbangen.generate.selection`;
        1: each sample as drawn).
    target_scatter
        The share of a real tile's scatter about the selection's target that
        each tile's target takes (0: the fit alone; None: per parameter,
        :meth:`urbangen.generate.selection.Calibration.scatter_shares`).
    rectangular_footprints
        Whether a chain redraws its compact, house-sized footprints as
        rectangles, as ``urbangen generate`` does (:mod:`urbangen.footprints`);
        False: the buildings as the model drew them; None: as the chain is
        set (a shipped one redraws). A single model never redraws.
    regions
        The run's held-out regions to evaluate on (:data:`REGIONS`): ``"test"``,
        those the bar is judged on, or ``"validation"``, for choosing a model or a
        setting. The floors are taken on the same regions.

    Raises
    ------
    SplitMismatchError
        If the dataset is not the one the run was trained on, or ``split_seed`` differs.
    InvalidValueError
        If ``max_tiles`` is under 2 (a floor compares two sets of real tiles), or ``regions`` is not one of
        :data:`REGIONS`.
    """
    if max_tiles < 2:
        raise InvalidValueError(f"max_tiles is {max_tiles}: evaluation needs at least 2 held-out tiles")
    if regions not in REGIONS:
        raise InvalidValueError(f"regions is {regions!r}: choose test (the regions the bar is judged on) or "
                                "validation (for choosing a model or a setting)")
    model = checkpoint if isinstance(checkpoint, (TrainedModel, GeneratorChain)) else load_model(checkpoint)
    checkpoint = model.spec.workdir if checkpoint is model else checkpoint
    model = by_parameters(model, candidates, scatter=target_scatter)
    if isinstance(model, GeneratorChain) and rectangular_footprints is not None:
        model = replace(model, rectangular_footprints=rectangular_footprints)
    if "generate" not in model.predict:
        raise RunSpecError(f"{checkpoint} holds a {model.spec.kind} run, which does not generate layouts")
    data = open_dataset(dataset)
    check_compatible(model.spec, data, "the generator")
    split = run_split(model.spec, data, split_seed)
    enc: TrainedModel | None = None
    if encoder is not None:
        enc = load_one_model(encoder, "the encoder")
        check_compatible(enc.spec, data, "the encoder")
    held_out_split = REGIONS[regions]
    held_out_rows, train_rows = split.indices(held_out_split), split.train
    if "buildings" in model.spec.output_channels:
        # A model that draws buildings is judged where the source mapped them (not on streets-only cities).
        known = data.tiles["buildings_known"].to_numpy(bool)
        held_out_rows, train_rows = held_out_rows[known[held_out_rows]], train_rows[known[train_rows]]
    if len(held_out_rows) < 2 or len(train_rows) < 2:
        fraction = "test_fraction" if regions == "test" else "val_fraction"
        raise InvalidValueError(f"{dataset}: the run's split has {len(held_out_rows)} {regions} and {len(train_rows)} "
                                f"training tiles; evaluation needs at least two of each (more regions, or a larger "
                                f"{fraction})")
    rng = np.random.default_rng(seed)
    n = min(max_tiles, len(held_out_rows), len(train_rows))
    names = model.spec.parameter_names
    held_out_sample = held_out_rows[sample_rows(len(held_out_rows), n, rng)]
    held_out = read_real(data, held_out_sample, names)
    train = read_real(data, train_rows[sample_rows(len(train_rows), n, rng)], names)
    # The floor above is one draw of these: the ratios to it are also taken over many draws (FloorPool).
    floor_pool = FloorPool(data, train_rows)

    generated = generate_for(model, held_out, seed=seed)
    generated_measured = held_out.measure(generated)  # once, for realism and conditioning
    # Every training tile of the split, streets-only cities' included: what a generator might recall (as many as
    # COPYING_BYTES hold, drawn with a generator of their own, so that the tiles above stay every run's before).
    tile_bytes = data.tile_px ** 2 * len(data.channels)
    copy_rows = np.sort(np.random.default_rng([seed, COPYING_SEED]).choice(
        split.train, size=min(len(split.train), max(256, COPYING_BYTES // tile_bytes)), replace=False))
    drawn = [list(data.channels).index(c) for c in model.spec.output_channels]
    copy_training = read_real(data, copy_rows, names)
    copying = Copying(copy_training, drawn, encoder=enc).run(generated, held_out)
    # Beside each example, its nearest training tile in the encoder's space (by pixels a dense tile's nearest is an
    # all-building one: see urbangen.evaluators.copying), when an encoder is given.
    nearest_tiles = None if "encoder_space" not in copying else copy_training.tiles[
        np.searchsorted(copy_rows, copying["encoder_space"]["nearest_training_rows"])]
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint), "model": model.spec.kind, "step": model.spec.step, "dataset": str(dataset),
        "split": {"seed": split.seed, "regions": regions, "held_out_tiles": int(len(split.indices(held_out_split))),
                  "train_tiles": int(len(split.train)), "buffer_m": split.buffer_m,
                  "held_out_regions": split.regions.get(held_out_split, []),
                  "tile_rows": [int(i) for i in held_out_sample]},
        "n": int(n), "seed": seed, "candidates": candidates_of(model), "target_scatter": target_scatter,
        "footprints": footprints_of(model),
        "encoder": None if encoder is None else str(encoder), "given_channels": list(model.spec.input_channels),
        "realism": Realism(held_out, encoder=enc, n_boot=n_boot, seed=seed).run(
            generated, held_out.regions, train, generated_measured, floor_pool),
        "conditioning": Conditioning(held_out, seed=seed).run(model, generated, generated_measured),
        "diversity": Diversity(held_out, encoder=enc, seed=seed).run(model, generated),
        "copying": copying, "attribution": ATTRIBUTION}
    if any(c in model.spec.output_channels for c in ("major_roads", "minor_roads", "cycle_foot")):
        result["streets"] = StreetConnectivity(held_out).run(generated, train)
    if "buildings" in model.spec.output_channels and any(c in data.channels for c in STREET_CHANNELS):
        result["building_street_interface"] = BuildingStreetInterface(held_out).run(generated, train, seed=seed,
                                                                                    pool=floor_pool)
        draws_streets = any(c in model.spec.output_channels for c in STREET_CHANNELS)
        result["footprint_and_street_form"] = FootprintAndStreetForm(held_out, draws_streets).run(
            generated, train, seed=seed, pool=floor_pool)
    seams = _seams(model, data, held_out_rows, held_out, seed, seams_m) if seams_m else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if seams is not None:
        layouts, mosaics = seams.pop("layouts"), seams.pop("mosaics")
        _write_layout_png(layouts[0], list(data.channels), out / "stitched.png", data.meters_per_pixel)
        result["seams"] = seams
        mosaic_px = seams["real_mosaic_px"][0]
        floor_mosaics = real_mosaics(data, train_rows, mosaic_px // data.tile_px)
        if "streets" in result and floor_mosaics and min(layouts[0].shape[:2]) >= mosaic_px:
            # The same statistic over the stitched layouts, in windows of the mosaics' size.
            result["streets_stitched"] = stitched_connectivity(layouts, mosaics, floor_mosaics, list(data.channels))
            if "major_roads" in model.spec.output_channels:
                result["major_roads_stitched"] = stitched_major_road_reach(
                    layouts, mosaics, floor_mosaics, list(data.channels), data.meters_per_pixel)
    if stitched_mosaics and not model.spec.input_channels:
        blocks = mosaic_rows(data, held_out_rows, mosaic_side(data, held_out_rows), limit=stitched_mosaics)
        if blocks:
            sc = StitchedConditioning(data, blocks, names).run(model, seed=seed)
            _write_pairs_png(sc.pop("real_mosaics"), sc.pop("layouts"), list(data.channels),
                             out / "stitched_conditioning.png", data.meters_per_pixel, regions)
            result["stitched_conditioning"] = sc
    result["acceptance"] = acceptance(result)
    write_text_atomic(out / "evaluation.json", json.dumps(result, indent=2))
    write_text_atomic(out / "report.md", report_markdown(result))
    plot_conditioning(result["conditioning"], out / "conditioning.png")
    _examples(held_out, generated, out / "examples.png", regions, nearest_tiles)
    if wandb_mode != "disabled":
        _log_wandb(result, out, wandb_mode)
    return result


#: How many bytes of training tiles each generated tile is compared with for copying (urbangen.evaluators.copying):
#: every training tile of `city-64`'s split (2534 of 64 px), 1116 of 256 px.
COPYING_BYTES = 512 * 2 ** 20
COPYING_SEED = 7

#: The bar a shipped generator is held to (the model issue): each value beside its floor.
MORPHOLOGY_TARGETS = ("building_coverage", "intersection_density_per_km2", "dead_end_share", "cycle_foot_share")
MAE_TARGETS = {"building_coverage": 0.03, "cycle_foot_share": 0.05}
#: Evaluators of per-tile statistics (urbangen.evaluators.per_tile): their result's key and the criteria's label.
PER_TILE_SECTIONS = {"building_street_interface": "building–street interface",
                     "footprint_and_street_form": "form of footprints and streets"}
#: Intersection density's MAE target, as a share of its requested mean.
INTERSECTION_MAE_SHARE = 0.25


def acceptance(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each criterion of the bar: the value, its floor (real against real), the target and whether it is met;
    where the value has a 95 % interval (``ci95``), whether the target lies outside it (``decided``); where it is
    a ratio to one draw of the floor, the ratio over other draws (``over_floor_draws``)."""
    rows: list[dict[str, Any]] = []

    def add(metric: str, value: Any, floor: Any, target: str, met: bool | None, ci95: list[float] | None = None,
            bound: float | None = None, over_floor_draws: dict[str, Any] | None = None) -> None:
        decided = None if ci95 is None or bound is None else bool(not ci95[0] <= bound <= ci95[1])
        rows.append({"metric": metric, "value": value, "floor": floor, "target": target, "met": met, "ci95": ci95,
                     "decided": decided, "over_floor_draws": over_floor_draws})

    for name in ("frechet", "kid"):
        m = result["realism"]["metrics"].get(name)
        if m is None:
            continue
        if not m["reported"]:
            add(name, None, m["floor"], "≤ 2 × floor", None)
            continue
        bound = 2 * m["floor"] if m["floor"] > 0 else m.get("std", 0.0)
        add(name, m["generated"], m["floor"], "≤ 2 × floor" if m["floor"] > 0 else "≤ its std (floor ≤ 0)",
            bool(m["generated"] <= bound), m.get("ci95"), bound)
    morph = result["realism"]["metrics"].get("morphology")
    given = set(result.get("given_channels", ()))
    for p in MORPHOLOGY_TARGETS:
        if morph is None:
            break
        if set(PARAMETER_CHANNELS[p]) <= given:
            continue  # its channels are given (copied from the real tile): nothing of the model's to judge
        ratio = morph.get("per_parameter_w1_ratio", {}).get(p) if morph["reported"] else None
        add(f"W1 {p} (× floor)", ratio, 1.0, "≤ 2 × floor", None if ratio is None else bool(ratio <= 2.0),
            over_floor_draws=morph.get("per_parameter_w1_ratio_over_floor_draws", {}).get(p))
    _conditioning_criteria(add, result["conditioning"])
    if "stitched_conditioning" in result:
        _conditioning_criteria(add, result["stitched_conditioning"], ", stitched layouts of real mosaics' fields")
    if "streets" in result:
        st = result["streets"]
        add("street pixels in the largest component (relative gap to real)", st["relative_gap"],
            st["floor_relative_gap"], "≤ 0.10", st["meets_target"])
    if "streets_stitched" in result:
        st = result["streets_stitched"]
        add(f"the same, stitched layout in {st['window_px']} px windows (relative gap to real mosaics)",
            st["relative_gap"], st["floor_relative_gap"], "≤ 0.10", st["meets_target"])
    for section, label in PER_TILE_SECTIONS.items():
        for name, m in result.get(section, {}).get("statistics", {}).items():
            add(f"W1 {name} (× floor), {label}", m["w1_ratio"], 1.0, f"≤ {m['target_ratio']:g} × floor",
                m["meets_target"], over_floor_draws=m.get("w1_ratio_over_floor_draws"))
    if "major_roads_stitched" in result:
        st = result["major_roads_stitched"]
        add(f"major-road pixels in pieces reaching {st['reach_m']:g} m, stitched layout in {st['window_px']} px "
            "windows (relative gap to real mosaics)", st["relative_gap"], st["floor_relative_gap"],
            f"≤ {st['target_relative_gap']:.3g} (2 × floor's, at least 0.1)", st["meets_target"])
    d = result["diversity"]
    between, real = d["pixel_disagreement_between_samples"], d["pixel_disagreement_between_real_neighbours"]
    add("pixel disagreement between samples", between, real, "≥ 0.5 × real neighbours'",
        None if real is None else bool(between >= 0.5 * real))
    for name, m in result.get("seams", {}).get("metrics", {}).items():
        add(f"seams: {name.replace('_', ' ')} (distance from 1)", m["generated_distance_from_1"],
            m["floor_distance_from_1"], "≤ floor", m["within_floor"])
    return rows


def _conditioning_criteria(add: Any, section: dict[str, Any], where: str = "") -> None:
    """The conditioning criteria of the bar, on a conditioning evaluator's result (single tiles or stitched)."""
    params = section["parameters"]
    for p, bound in MAE_TARGETS.items():
        if p in params and params[p]["drawn"] and not params[p].get("given"):
            mae = params[p]["generated"]["mae"]
            add(f"MAE {p}{where}", mae, params[p]["floor"]["mae"], f"≤ {bound}",
                None if mae is None else bool(mae <= bound), params[p]["generated"].get("mae_ci95"), bound)
    p = "intersection_density_per_km2"
    if p in params and params[p]["drawn"] and not params[p].get("given"):
        mae, bound = params[p]["generated"]["mae"], INTERSECTION_MAE_SHARE * params[p]["requested_mean"]
        add(f"MAE {p}{where}", mae, params[p]["floor"]["mae"], f"≤ {bound:.3g} (25 % of its mean)",
            None if mae is None else bool(mae <= bound), params[p]["generated"].get("mae_ci95"), bound)
    rate = section["failure_rate"]
    add(f"conditioning failure rate{where}", rate, None, "< 0.05", None if rate is None else bool(rate < 0.05))


def acceptance_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table of :func:`acceptance`: a criterion whose target lies inside its value's 95 % interval is
    met or not by the point estimate alone, and says so."""
    def said(r: dict[str, Any]) -> str:
        return met(r["met"]) + (" (target inside the 95 % interval)" if r.get("decided") is False else "")

    def over_draws(r: dict[str, Any]) -> str:
        d = r.get("over_floor_draws")
        return "" if d is None else f"{number(d['median'])} {interval(d['range95'])}"

    draws = next((r["over_floor_draws"]["draws"] for r in rows if r.get("over_floor_draws")), None)
    return table(["criterion", "value", "95 % interval", "floor (real vs real)", "target", "met"]
                 + ([f"ratio over {draws} floor draws: median [middle 95 %]"] if draws else []),
                 [[r["metric"], number(r["value"]), interval(r.get("ci95"), missing=""), number(r["floor"]),
                   r["target"], said(r)] + ([over_draws(r)] if draws else []) for r in rows])



def _seams(model: TrainedModel | GeneratorChain, data: TileDataset, held_out_rows: np.ndarray, held_out: Any,
           seed: int, side_m: float = 2048.0) -> dict[str, Any] | None:
    """The seam evaluator on a stitched ``side_m`` layout of the held-out tiles' mean parameters; its result also
    holds the ``layouts`` and the real ``mosaics`` it compared, for the caller to take out."""
    if model.spec.input_channels:
        return None  # it draws around given streets: there is no stitched layout of its own to judge
    mosaics = real_mosaics(data, held_out_rows, mosaic_side(data, held_out_rows))
    if not mosaics:
        return None
    px = int(round(side_m / data.meters_per_pixel))
    mean = np.nanmean(np.where(np.isfinite(held_out.parameters), held_out.parameters, np.nan), axis=0)
    fields = np.broadcast_to(mean, (px, px, len(mean))).copy()
    return Seams(mosaics, list(data.channels), data.tile_px // 2).run(model, fields, samples=2, seed=seed) | {
        "mosaics": mosaics}


def _write_pairs_png(real: list[np.ndarray], generated: list[np.ndarray], channels: list[str], path: Path,
                     mpp: float, regions: str, n: int = 4) -> None:
    """Rows of: the layout generated for a real held-out mosaic's tile parameters as one field | that mosaic (the
    first ``n``), of the ``regions`` evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_pipeline.render import tile_to_rgb

    n = min(n, len(real))
    fig, axes = plt.subplots(n, 2, figsize=(8, 4 * n + 0.4), squeeze=False)
    for k in range(n):
        for ax, image, what in ((axes[k, 0], generated[k], "generated for the tiles' parameters"),
                                (axes[k, 1], real[k], f"real {regions} mosaic")):
            ax.imshow(tile_to_rgb(image, channels), interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(f"{what} ({image.shape[0] * mpp:g} m)", fontsize=9)
    fig.text(0.99, 0.003, f"map data {ATTRIBUTION}", ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _write_layout_png(layout: np.ndarray, channels: list[str], path: Path, mpp: float) -> None:
    from urbangen.generate.writers import write_png

    write_png(layout, channels, path, mpp, title="stitched layout (seam evaluator)")


def _per_tile_table(section: dict[str, Any], regions: str) -> list[str]:
    """The report's table of an evaluator of per-tile statistics (:mod:`urbangen.evaluators.per_tile`), against
    the real tiles of the held-out ``regions``."""
    return table(["statistic", "generated mean", f"real {regions} mean", "real training mean", "W1 (× floor)",
                  "shuffled, noise (× floor)"],
                 [[name, number(m["generated_mean"]), number(m["real_test_mean"]), number(m["real_train_mean"]),
                   number(m["w1_ratio"]),
                   f"{number(m['ladder_w1']['shuffled'] / m['floor_w1'])}, "
                   f"{number(m['ladder_w1']['noise'] / m['floor_w1'])}" if m["floor_w1"] > 0 else "n/a"]
                  for name, m in section["statistics"].items()])


def realism_rows(realism: dict[str, Any]) -> list[str]:
    """Markdown table rows: each realism metric beside its floor, ceiling and ladder."""
    rows = []
    for name, m in realism["metrics"].items():
        lad = m["ladder"]
        gen = number(m["generated"]) if m["reported"] else "withheld"
        if m["reported"] and m.get("ci95"):
            gen += f" {interval(m['ci95'])}"
        if m["reported"] and m.get("std") is not None:
            gen += f" ± {number(m['std'])}"
        rows.append([name, gen, number(lad["real"]), number(lad["blurred"]), number(lad["shuffled"]),
                     number(lad["noise"]),
                     "holds" if m["ladder_holds"] else "FAILS", number(m.get("position_real_to_noise"), 2),
                     m.get("verdict", "not scored")])
    return table(["metric", "generated", "floor (real)", "blurred", "shuffled", "ceiling (noise)", "ladder",
                  "position real→noise", "generated tiles are"], rows)


def conditioning_rows(conditioning: dict[str, Any]) -> list[str]:
    rows = []
    for name, p in conditioning["parameters"].items():
        g, f, u = p["generated"], p["floor"], p["unconditional"]
        label = f"{name} [{p['unit']}]" + (" (given)" if p["given"] else "" if p["drawn"] else " (not drawn)")
        rows.append([label, number(p["requested_mean"]), _with_interval(g), number(f["mae"]), number(u["mae"]),
                     number(g["r2"], 2), number(f["r2"], 2), number(u["r2"], 2), f"{g['failures']}/{g['n']}"])
    return table(["parameter", "requested mean", "MAE generated [95 % interval]", "floor", "unconditional",
                  "R² generated", "floor", "unconditional", "failures"], rows)


def _with_interval(errors: dict[str, Any]) -> str:
    """An MAE and its 95 % interval (:func:`urbangen.evaluators.stats.mean_interval`)."""
    ci = errors.get("mae_ci95")
    return number(errors["mae"]) + (f" {interval(ci)}" if ci is not None else "")


def report_markdown(result: dict[str, Any]) -> str:
    s, r, c, d = result["split"], result["realism"], result["conditioning"], result["diversity"]
    held = s["regions"]  # the held-out regions every real tile below comes from: test, or validation
    lines = [f"# Evaluation of `{result['checkpoint']}` ({result['model']}, step {result['step']})", "",
             f"{result['n']} tiles of the run's {held} regions ({s['held_out_tiles']} {held} tiles in all, split "
             f"seed {s['seed']}, a {s['buffer_m']:.0f} m buffer from training ground) and as many real training "
             "tiles. "
             + ("" if held == "test" else "**Validation regions**: for choosing a model or a setting; the bar is "
                "judged on the test regions (`--regions test`). ")
             + "Each comparison is at this one sample size. "
             f"Each generated tile is the best of {result.get('candidates', 1)} sample(s) of each stage at "
             "matching its request (sampling by selection, `--candidates`), each target taking "
             f"{_scatter_words(result.get('target_scatter', 0.0))} (`--target-scatter`). "
             + ("Compact, house-sized footprints are redrawn as rectangles (`urbangen.footprints`; "
                "`--footprints-as-drawn` to judge the model's own)."
                if result.get("footprints") == "rectangles" else "Footprints are judged as the model drew them."),
             "", "## Realism", "",
             "Lower is more real. Each metric scores real tiles (the floor), the same tiles blurred, shuffled "
             "within each tile, and per-pixel noise with the real channel shares (the ceiling), against the same "
             f"real {held} tiles; a metric whose scores do not rise in that order is withheld. "
             "`position` places the generator between real (0) and noise (1).", ""]
    lines += realism_rows(r)
    lines += ["", "## Conditioning", "",
              f"Each {held} tile's parameters requested; generated and real tiles measured through the same "
              "raster → vector → parameters path. Floor: the real tiles themselves; unconditional: the training "
              f"mean requested. Failures (not measurable) are counted, not dropped: {number(c['failure_rate'], 2)} "
              "of conditioned values failed.", ""]
    lines += conditioning_rows(c)
    lines += ["", "![requested against achieved](conditioning.png)", "", "## Diversity", "",
              "Pixels differing between two samples of one request: "
              f"{number(d['pixel_disagreement_between_samples'])}; "
              f"between real {held} tiles and their nearest neighbour in parameters (another region): "
              f"{number(d['pixel_disagreement_between_real_neighbours'])}."]
    if "embedding_distance_between_samples" in d:
        lines += ["", f"Encoder embedding distance between samples: {number(d['embedding_distance_between_samples'])}; "
                      f"between real neighbours: {number(d['embedding_distance_between_real_neighbours'])}."]
    if "copying" in result:
        cp = result["copying"]
        lines += ["", "## Copying", "",
                  f"Jaccard distance (over the pixels of the channels generated) to the nearest of "
                  f"{cp['training_tiles']} training tiles, median: generated {number(cp['generated_median'])}, real "
                  f"{held} tiles (the floor: "
                  f"held-out ground) {number(cp['real_test_median'])}, a ratio of {number(cp['ratio'])} (near 0: "
                  f"the generator hands back training tiles). Generated tiles nearer a training tile than every "
                  f"real {held} tile: {number(cp['below_every_real'])}; identical to one: {cp['identical']} of "
                  f"{cp['n']} (real {held} tiles: {cp['real_identical']})."]
        if "encoder_space" in cp:
            es = cp["encoder_space"]
            lines += ["", "In the encoder's embedding space (Euclidean distance to the nearest training tile), median: "
                      f"generated {number(es['generated_median'])}, real {held} tiles "
                      f"{number(es['real_test_median'])}, a ratio of {number(es['ratio'])}; generated tiles nearer a "
                      f"training tile than every real {held} tile: {number(es['below_every_real'])}. The examples "
                      "below show each generated tile's nearest training tile in this space."]
    if "streets" in result:
        st = result["streets"]
        lines += ["", "## Streets", "", f"Share of street pixels in each tile's largest connected piece: generated "
                  f"{number(st['generated'])}, real {held} {number(st['real_test'])}, "
                  f"real training {number(st['real_train'])}; "
                  f"{st['generated_tiles_without_streets']} generated tiles have no street."]
    if "streets_stitched" in result:
        st = result["streets_stitched"]
        lines += ["", f"The same over the stitched layouts below, cut into {st['windows']} windows of "
                  f"{st['window_px']} px: generated {number(st['generated'])}, real {held} mosaics of that size "
                  f"{number(st['real_test'])} ({st['real_test_mosaics']}), real training mosaics "
                  f"{number(st['real_train'])} ({st['real_train_mosaics']})."]
    if "major_roads_stitched" in result:
        st = result["major_roads_stitched"]
        lines += ["", f"Major roads that run through a district (`urbangen.evaluators.streets.major_road_reach`): the "
                  f"share of major-road pixels in pieces whose extent reaches {st['reach_m']:g} m, in the same "
                  f"windows: generated {number(st['generated'])} ({st['windows_without_major_roads']} of "
                  f"{st['windows']} windows without major roads), real {held} mosaics {number(st['real_test'])}, real "
                  f"training mosaics {number(st['real_train'])}."]
    if "building_street_interface" in result:
        bs = result["building_street_interface"]
        lines += ["", "## Building–street interface", "",
                  f"Whether buildings front the streets (`urbangen.evaluators.frontage`). Street enrichment: the "
                  f"share of building pixels within {bs['near_m']:g} m of a street over the share of land there "
                  "(about 1 for buildings placed without regard to the streets; real buildings keep back, below 1). "
                  "Setback: the median distance from a footprint to its nearest street. Each W1 is against the real "
                  f"{held} tiles, over the floor (real training tiles against them); the ladder's shuffled and noise "
                  "rungs are ceilings.", ""]
        lines += _per_tile_table(bs, held)
    if "footprint_and_street_form" in result:
        fs = result["footprint_and_street_form"]
        lines += ["", "## Form of footprints and streets", "",
                  "Whether footprints are compact and buildings and streets keep to a grid "
                  "(`urbangen.evaluators.form`). Footprint rectangularity: a footprint's area over its smallest "
                  f"enclosing rectangle's, weighted by area (footprints of {fs['min_footprint_m2']:g} m² or more). "
                  "Building alignment: the four-fold order of those rectangles' directions, weighted by area; "
                  "street alignment: of the street centre lines' bearings, weighted by length (1: one grid; near 0: "
                  f"every direction). Each W1 is against the real {held} tiles, over the floor; the ladder's shuffled "
                  "and noise rungs are ceilings.", ""]
        lines += _per_tile_table(fs, held)
    if "seams" in result:
        sm = result["seams"]
        lines += ["", "## Seams", "", f"A stitched {sm['layout_px'][0]} px layout (2 samples), lines every "
                  f"{sm['line_spacing_px']} px, against {sm['real_mosaics']} real mosaics of "
                  f"{sm['real_mosaic_px'][0]} px: strip over elsewhere (1 = no seam).", ""]
        lines += table(["statistic", "generated", "real mean", "floor (largest real distance from 1)", "within floor"],
                       [[name, number(m["generated"]), number(m["real_mean"]), number(m["floor_distance_from_1"]),
                         "yes" if m["within_floor"] else "**no**"] for name, m in sm["metrics"].items()])
        lines += ["", "![a stitched layout](stitched.png)"]
    if "stitched_conditioning" in result:
        sc = result["stitched_conditioning"]
        lines += ["", "## Conditioning over stitched layouts", "",
                  f"Each of {sc['mosaics']} real {held} mosaics of {sc['mosaic_tiles'][0][0]} x "
                  f"{sc['mosaic_tiles'][0][1]} tiles: its tiles' parameters requested as one spatial field, the "
                  "layout generated for it cut back into the tiles' windows, each measured through the same path as "
                  f"the real tile ({sc['tiles']} windows; `urbangen.evaluators.stitched_conditioning`). Floor: the "
                  "real tiles; single tiles: the same tiles generated one by one, as above. Failures are counted, "
                  f"not dropped: {number(sc['failure_rate'], 2)} of conditioned values failed.", ""]
        lines += table(["parameter", "requested mean", "MAE stitched [95 % interval, mosaics resampled]",
                        "single tiles", "floor", "R² stitched",
                        "single tiles", "floor", "failures"],
                       [[f"{name} [{p['unit']}]" + ("" if p["drawn"] else " (not drawn)"),
                         number(p["requested_mean"]), _with_interval(p["generated"]), number(p["single_tiles"]["mae"]),
                         number(p["floor"]["mae"]), number(p["generated"]["r2"], 2), number(p["single_tiles"]["r2"], 2),
                         number(p["floor"]["r2"], 2), f"{p['generated']['failures']}/{p['generated']['n']}"]
                        for name, p in sc["parameters"].items()])
        lines += ["", f"![layouts generated for real {held} mosaics' fields, and the mosaics (the first four)]"
                      "(stitched_conditioning.png)"]
    lines += ["", "## Against the bar", ""]
    if held != "test":
        lines += ["Measured on the validation regions: a guide for choosing, not the bar's verdict (that is on the "
                  "test regions).", ""]
    lines += acceptance_rows(result["acceptance"])
    lines += ["", f"![real {held} tiles and generated tiles for their parameters](examples.png)", "",
              result["attribution"], ""]
    return "\n".join(lines)


def plot_conditioning(conditioning: dict[str, Any], path: Path) -> None:
    """Requested against achieved per parameter: generated (blue) and the real-tile floor (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(conditioning["parameters"])
    req, got, floor = (np.array(conditioning[k], dtype=float) for k in ("requested", "achieved", "achieved_floor"))
    cols = min(5, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.9 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        j = names.index(name)
        ax.scatter(req[:, j], floor[:, j], s=8, color="0.6", label="real (floor)")
        ax.scatter(req[:, j], got[:, j], s=8, color="tab:blue", label="generated")
        finite = np.concatenate([req[:, j], got[:, j], floor[:, j]])
        finite = finite[np.isfinite(finite)]
        if len(finite):
            ax.plot([finite.min(), finite.max()], [finite.min(), finite.max()], color="k", lw=0.8)
        p = conditioning["parameters"][name]
        ax.set_title(f"{name}\nR² {number(p['generated']['r2'], 2)} (floor {number(p['floor']['r2'], 2)})", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names):]:
        ax.set_axis_off()
    axes.ravel()[0].legend(fontsize=6)
    fig.supxlabel("requested", fontsize=8)
    fig.supylabel("measured", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _examples(real: RealTiles, generated: np.ndarray, path: Path, regions: str,
              nearest: np.ndarray | None = None, n: int = 6) -> None:
    """Rows of: the requested parameters | the tile generated for them | the real held-out tile (of the
    ``regions`` evaluated) they were measured on
    | with ``nearest`` (one per generated tile), the training tile nearest the generated one in the encoder's
    space."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_pipeline.parameters import PARAMETERS
    from data_pipeline.render import tile_to_rgb

    n = min(n, len(real))
    rows = np.linspace(0, len(real) - 1, n).round().astype(int)
    channels = list(real.channels)
    columns = 3 if nearest is None else 4
    fig, axes = plt.subplots(n, columns, figsize=(2.2 * columns, 2.1 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [1.3] + [1] * (columns - 1)})
    for k, i in enumerate(rows):
        text = "\n".join(f"{name.replace('_per_', ' per ').replace('_', ' ')}: {value:.3g} {PARAMETERS[name][0]}"
                         for name, value in zip(real.parameter_names, real.parameters[i]) if np.isfinite(value))
        axes[k, 0].text(0, 0.5, text, fontsize=6, va="center", family="monospace")
        axes[k, 1].imshow(tile_to_rgb(generated[i], channels), interpolation="nearest")
        axes[k, 2].imshow(tile_to_rgb(real.tiles[i], channels), interpolation="nearest")
        if nearest is not None:
            axes[k, 3].imshow(tile_to_rgb(nearest[i], channels), interpolation="nearest")
        for ax in axes[k]:
            ax.set_axis_off()
    titles = ("requested parameters", "generated", f"real {regions} tile (source)",
              "nearest training tile\n(encoder space)")
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=7, loc="left")
    fig.text(0.99, 0.003, f"map data {ATTRIBUTION}", ha="right", fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _log_wandb(result: dict[str, Any], out: Path, mode: str) -> None:
    from urbangen.training.logging import RunLogger

    logger = RunLogger(out, {"checkpoint": result["checkpoint"], "dataset": result["dataset"],
                             "regions": result["split"]["regions"]}, {"mode": mode})
    flat = {f"eval/realism/{k}": m["generated"] for k, m in result["realism"]["metrics"].items() if m["reported"]}
    flat.update({f"eval/realism_floor/{k}": m["floor"] for k, m in result["realism"]["metrics"].items()})
    flat.update({f"eval/conditioning_r2/{k}": p["generated"]["r2"]
                 for k, p in result["conditioning"]["parameters"].items() if p["generated"]["r2"] is not None})
    flat.update({f"eval/diversity/{k}": v for k, v in result["diversity"].items() if isinstance(v, float)})
    logger.log(int(result["step"]), flat)
    logger.finish()
