"""``urbangen evaluate``: realism, conditioning and diversity of a generator, each beside its floor and ceiling.

Every number is taken on the run's **test** regions (never the validation
regions its best checkpoint and early stopping were chosen on), which a
buffer of at least one tile keeps off the training ground (:mod:`urbangen.splits`).
The evaluators (:mod:`urbangen.evaluators`) are fed the run's predict functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.atomic import write_text_atomic
from data_pipeline.dataset import ATTRIBUTION, TileDataset, open_dataset
from urbangen.evaluators.common import generate_for, read_real, sample_rows
from urbangen.evaluators.conditioning import Conditioning
from urbangen.evaluators.diversity import Diversity
from urbangen.evaluators.realism import Realism
from urbangen.inference import RunSpec, RunSpecError, TrainedModel, load_run
from urbangen.splits import Split, SplitMismatchError, check_split


def check_compatible(spec: RunSpec, data: TileDataset, what: str) -> None:
    """Raise a clear error when ``data`` is not the kind of tiles the run was trained on."""
    if data.tile_px != spec.tile_px or abs(data.meters_per_pixel - spec.meters_per_pixel) > 1e-9:
        raise ValueError(f"the dataset has {data.tile_px} px tiles at {data.meters_per_pixel} m/px; {what} "
                         f"{spec.workdir} was trained on {spec.tile_px} px at {spec.meters_per_pixel} m/px")
    if list(data.channels) != list(spec.channels):
        raise ValueError(f"the dataset's channels {data.channels} differ from those {what} {spec.workdir} was "
                         f"trained on ({list(spec.channels)})")


def run_split(spec: RunSpec, data: TileDataset, split_seed: int | None = None) -> Split:
    """The run's recorded split, checked against ``data`` (and ``split_seed`` when given)."""
    if spec.split is None:
        raise SplitMismatchError(f"{spec.workdir} records no train/validation/test split (trained before splits "
                                 "were recorded): retrain it to evaluate it")
    return check_split(spec.split, data.tiles, seed=split_seed)


def evaluate(checkpoint: str | Path, dataset: str | Path, out_dir: str | Path, *, encoder: str | Path | None = None,
             max_tiles: int = 128, seed: int = 0, split_seed: int | None = None, n_boot: int = 200,
             wandb_mode: str = "disabled") -> dict[str, Any]:
    """Evaluate a generator run on its test regions; write ``evaluation.json``, ``report.md`` and plots.

    Parameters
    ----------
    max_tiles
        Test tiles to evaluate on (all when fewer); as many real training
        tiles are the floor, and each comparison is at this one sample size.
    seed
        Seed of the tile choice and of the generated samples.
    split_seed
        The seed the run's split was drawn with, if the caller wants it
        checked; a different one is refused.

    Raises
    ------
    SplitMismatchError
        If the dataset is not the one the run was trained on, or ``split_seed`` differs.
    """
    model = load_run(checkpoint)
    if "generate" not in model.predict:
        raise RunSpecError(f"{checkpoint} holds a {model.spec.kind} run, which does not generate layouts")
    data = open_dataset(dataset)
    check_compatible(model.spec, data, "the generator")
    split = run_split(model.spec, data, split_seed)
    enc: TrainedModel | None = None
    if encoder is not None:
        enc = load_run(encoder)
        check_compatible(enc.spec, data, "the encoder")
    if len(split.test) < 2 or len(split.train) < 2:
        raise ValueError(f"{dataset}: the run's split has {len(split.test)} test and {len(split.train)} training "
                         "tiles; evaluation needs at least two of each (more regions, or a larger test_fraction)")
    rng = np.random.default_rng(seed)
    n = min(max_tiles, len(split.test), len(split.train))
    names = model.spec.parameter_names
    test = read_real(data, split.test[sample_rows(len(split.test), n, rng)], names)
    train = read_real(data, split.train[sample_rows(len(split.train), n, rng)], names)

    generated = generate_for(model, test, seed=seed)
    generated_measured = test.measure(generated)  # once, for realism and conditioning
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint), "model": model.spec.kind, "step": model.spec.step, "dataset": str(dataset),
        "split": {"seed": split.seed, "test_tiles": int(len(split.test)), "train_tiles": int(len(split.train)),
                  "buffer_m": split.buffer_m, "test_regions": split.regions.get("test", [])},
        "n": int(n), "seed": seed, "encoder": None if encoder is None else str(encoder),
        "realism": Realism(test, encoder=enc, n_boot=n_boot, seed=seed).run(
            generated, test.regions, train, generated_measured),
        "conditioning": Conditioning(test, seed=seed).run(model, generated, generated_measured),
        "diversity": Diversity(test, encoder=enc, seed=seed).run(model, generated),
        "attribution": ATTRIBUTION}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "evaluation.json", json.dumps(result, indent=2))
    write_text_atomic(out / "report.md", report_markdown(result))
    plot_conditioning(result["conditioning"], out / "conditioning.png")
    _examples(test.tiles, generated, list(data.channels), out / "examples.png")
    if wandb_mode != "disabled":
        _log_wandb(result, out, wandb_mode)
    return result


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.{digits}g}"
    return str(value)


def realism_rows(realism: dict[str, Any]) -> list[str]:
    """Markdown table rows: each realism metric beside its floor, ceiling and ladder."""
    rows = ["| metric | generated | floor (real) | blurred | shuffled | ceiling (noise) | ladder | position real→noise "
            "| generated tiles are |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in realism["metrics"].items():
        lad = m["ladder"]
        gen = _fmt(m["generated"]) if m["reported"] else "withheld"
        if m["reported"] and m.get("ci95"):
            gen += f" [{_fmt(m['ci95'][0])}, {_fmt(m['ci95'][1])}]"
        if m["reported"] and m.get("std") is not None:
            gen += f" ± {_fmt(m['std'])}"
        rows.append(f"| {name} | {gen} | {_fmt(lad['real'])} | {_fmt(lad['blurred'])} | {_fmt(lad['shuffled'])} | "
                    f"{_fmt(lad['noise'])} | {'holds' if m['ladder_holds'] else 'FAILS'} | "
                    f"{_fmt(m.get('position_real_to_noise'), 2)} | {m.get('verdict', 'not scored')} |")
    return rows


def conditioning_rows(conditioning: dict[str, Any]) -> list[str]:
    rows = ["| parameter | requested mean | MAE generated | floor | unconditional | R² generated | floor | "
            "unconditional | failures |", "|---|---|---|---|---|---|---|---|---|"]
    for name, p in conditioning["parameters"].items():
        g, f, u = p["generated"], p["floor"], p["unconditional"]
        label = f"{name} [{p['unit']}]" + (" (given)" if p["given"] else "" if p["drawn"] else " (not drawn)")
        rows.append(f"| {label} | {_fmt(p['requested_mean'])} | {_fmt(g['mae'])} | {_fmt(f['mae'])} | "
                    f"{_fmt(u['mae'])} | {_fmt(g['r2'], 2)} | {_fmt(f['r2'], 2)} | {_fmt(u['r2'], 2)} | "
                    f"{g['failures']}/{g['n']} |")
    return rows


def report_markdown(result: dict[str, Any]) -> str:
    s, r, c, d = result["split"], result["realism"], result["conditioning"], result["diversity"]
    lines = [f"# Evaluation of `{result['checkpoint']}` ({result['model']}, step {result['step']})", "",
             f"{result['n']} tiles of the run's test regions ({s['test_tiles']} test tiles in all, split seed "
             f"{s['seed']}, a {s['buffer_m']:.0f} m buffer from training ground) and as many real training tiles. "
             "Each comparison is at this one sample size.", "",
             "## Realism", "",
             "Lower is more real. Each metric scores real tiles (the floor), the same tiles blurred, shuffled "
             "within each tile, and per-pixel noise with the real channel shares (the ceiling), against the same "
             "real test tiles; a metric whose scores do not rise in that order is withheld. "
             "`position` places the generator between real (0) and noise (1).", ""]
    lines += realism_rows(r)
    lines += ["", "## Conditioning", "",
              "Each test tile's parameters requested; generated and real tiles measured through the same "
              "raster → vector → parameters path. Floor: the real tiles themselves; unconditional: the training "
              f"mean requested. Failures (not measurable) are counted, not dropped: {_fmt(c['failure_rate'], 2)} "
              "of conditioned values failed.", ""]
    lines += conditioning_rows(c)
    lines += ["", "![requested against achieved](conditioning.png)", "", "## Diversity", "",
              f"Pixels differing between two samples of one request: {_fmt(d['pixel_disagreement_between_samples'])}; "
              f"between real test tiles and their nearest neighbour in parameters (another region): "
              f"{_fmt(d['pixel_disagreement_between_real_neighbours'])}."]
    if "embedding_distance_between_samples" in d:
        lines += ["", f"Encoder embedding distance between samples: {_fmt(d['embedding_distance_between_samples'])}; "
                      f"between real neighbours: {_fmt(d['embedding_distance_between_real_neighbours'])}."]
    lines += ["", "![real test tiles and generated tiles for their parameters](examples.png)", "",
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
        ax.set_title(f"{name}\nR² {_fmt(p['generated']['r2'], 2)} (floor {_fmt(p['floor']['r2'], 2)})", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names):]:
        ax.set_axis_off()
    axes.ravel()[0].legend(fontsize=6)
    fig.supxlabel("requested", fontsize=8)
    fig.supylabel("measured", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _examples(real: np.ndarray, generated: np.ndarray, channels: list[str], path: Path, n: int = 8) -> None:
    """Real test tiles (top) and tiles generated for their parameters (bottom), in map colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_pipeline.render import tile_to_rgb

    n = min(n, len(real))
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
    for i in range(n):
        for row, tiles in enumerate((real, generated)):
            axes[row, i].imshow(tile_to_rgb(tiles[i], channels))
            axes[row, i].set_axis_off()
    axes[0, 0].set_title("real (test)", fontsize=7, loc="left")
    axes[1, 0].set_title("generated for the same parameters", fontsize=7, loc="left")
    fig.text(0.99, 0.01, f"map data {ATTRIBUTION}", ha="right", fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log_wandb(result: dict[str, Any], out: Path, mode: str) -> None:
    from urbangen.training.logging import RunLogger

    logger = RunLogger(out, {"checkpoint": result["checkpoint"], "dataset": result["dataset"]}, {"mode": mode})
    flat = {f"eval/realism/{k}": m["generated"] for k, m in result["realism"]["metrics"].items() if m["reported"]}
    flat.update({f"eval/realism_floor/{k}": m["floor"] for k, m in result["realism"]["metrics"].items()})
    flat.update({f"eval/conditioning_r2/{k}": p["generated"]["r2"] for k, p in result["conditioning"]["parameters"].items()
                 if p["generated"]["r2"] is not None})
    flat.update({f"eval/diversity/{k}": v for k, v in result["diversity"].items() if isinstance(v, float)})
    logger.log(int(result["step"]), flat)
    logger.finish()
