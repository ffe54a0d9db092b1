"""``urbangen evaluate``: how well a generator obeys its conditions, how real and how diverse its layouts are.

- conditioning error: for parameter sets of held-out (validation-region)
  tiles, generate tiles, measure them with the pipeline's parameter code
  and compare with what was asked;
- realism: Frechet distance in the attention encoder's embedding space
  between generated and held-out real tiles, beside the same distance
  between training and held-out real tiles (the real-versus-real baseline);
- diversity: how much samples of the same parameters differ (pixels, and
  embedding distance).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from data_pipeline.atomic import write_text_atomic
from data_pipeline.dataset import open_dataset
from urbangen.analysis.embeddings import embed_tiles
from data_pipeline.parameters import PARAMETERS
from urbangen.conditioning import signed_to_layout
from urbangen.generate.request import GenerationRequest
from urbangen.generate.run import measure
from urbangen.generate.sampler import correlated_bernoulli, generate_layout, load_generator
from urbangen.metrics import frechet_distance, mean_pairwise_distance
from urbangen.training.data import geographic_split


def evaluate(checkpoint: str | Path, dataset: str | Path, out_dir: str | Path, *, encoder: str | Path | None = None,
             n_sets: int = 16, samples: int = 2, seed: int = 0, wandb_mode: str = "disabled") -> dict[str, Any]:
    """Evaluate a pix2pix or VAE run on a dataset's held-out regions; write ``evaluation.json`` and plots."""
    from urbangen.training.tasks import load_trained

    gen = load_generator(checkpoint)
    data = open_dataset(dataset)
    config = gen.task.config
    if data.tile_px != gen.tile_px or abs(data.meters_per_pixel - gen.meters_per_pixel) > 1e-9:
        raise ValueError(f"{dataset} has {data.tile_px} px tiles at {data.meters_per_pixel} m/px; the checkpoint "
                         f"was trained on {gen.tile_px} px at {gen.meters_per_pixel} m/px")
    missing = [c for c in gen.output_channels if c not in data.channels]
    if missing:
        raise ValueError(f"{dataset} lacks channels {missing}")
    train_idx, val_idx = geographic_split(data.tiles, config.val_fraction, config.seed)
    if len(val_idx) == 0:
        raise ValueError(f"{dataset} has no held-out regions to evaluate on")
    rng = np.random.default_rng(seed)
    sets = np.sort(rng.choice(val_idx, size=min(n_sets, len(val_idx)), replace=False))
    names = gen.parameter_names
    columns = [data.parameter_names.index(p) for p in names]
    raw = data.parameters(sets)[:, columns]
    t, mpp = gen.tile_px, gen.meters_per_pixel
    request = GenerationRequest(checkpoint=Path(checkpoint), model_type=gen.kind, size_m=(t * mpp, t * mpp),
                                parameters={})
    channels = gen.input_channels + gen.output_channels

    generated, requested, achieved, pixel_diversity = [], [], [], []
    for k, (row, values) in enumerate(zip(sets, raw)):
        fields = np.broadcast_to(values, (t, t, len(names))).astype(np.float64)
        given = data.read_tile(int(row))[..., [data.channels.index(c) for c in gen.input_channels]] \
            if gen.input_channels else None
        layouts = []
        for s in range(samples):
            signed = generate_layout(gen, fields, jax.random.fold_in(jax.random.key(seed), k * samples + s), given)
            layout = correlated_bernoulli((signed + 1) / 2, np.random.default_rng([seed, k, s])) \
                if gen.kind == "vae" else signed_to_layout(signed)
            full = np.concatenate([given, layout], axis=-1) if given is not None else layout
            _, measured = measure(full, channels, request, mpp, t, 20.0)
            achieved.append(measured[names].to_numpy(dtype=float)[0])
            requested.append(values)
            layouts.append(layout)
            generated.append(full)
        pairs = [(a != b).mean() for i, a in enumerate(layouts) for b in layouts[i + 1:]]
        pixel_diversity.append(float(np.mean(pairs)) if pairs else 0.0)
    requested, achieved = np.array(requested), np.array(achieved)
    scale = np.asarray(gen.scaler.std)
    conditioning = {}
    for i, name in enumerate(names):
        ok = np.isfinite(requested[:, i]) & np.isfinite(achieved[:, i])
        if not ok.any():
            continue
        err = np.abs(achieved[ok, i] - requested[ok, i])
        conditioning[name] = {"unit": PARAMETERS[name][0], "mae": float(err.mean()),
                              "mae_in_training_std": float(err.mean() / scale[i]),
                              "requested_mean": float(requested[ok, i].mean()),
                              "achieved_mean": float(achieved[ok, i].mean()), "n": int(ok.sum())}
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint), "model": gen.kind, "dataset": str(dataset), "held_out_tiles": int(len(val_idx)),
        "parameter_sets": int(len(sets)), "samples_per_set": samples, "seed": seed,
        "conditioning_error": conditioning,
        "diversity": {"pixel_disagreement_between_samples": float(np.mean(pixel_diversity))}}

    if encoder is not None:
        enc = load_trained(encoder, best=True)
        if list(enc[0].channels) != list(data.channels) or enc[0].tile_px != t:
            raise ValueError(f"the encoder in {encoder} was trained on other channels or tile size")
        full_generated = np.zeros((len(generated), t, t, len(data.channels)), np.uint8)
        for j, c in enumerate(channels):
            full_generated[..., data.channels.index(c)] = np.stack(generated)[..., j]
        real_val = data.read_tiles(val_idx)
        real_train = data.read_tiles(rng.choice(train_idx, size=min(len(train_idx), len(val_idx)), replace=False))
        e_gen, e_val, e_train = (embed_tiles(enc[0], enc[1], x) for x in (full_generated, real_val, real_train))
        result["realism"] = {
            "frechet_distance_generated_vs_held_out": frechet_distance(e_gen, e_val),
            "frechet_distance_train_vs_held_out_baseline": frechet_distance(e_train, e_val),
            "encoder": str(encoder), "n_generated": int(len(e_gen)), "n_held_out": int(len(e_val))}
        per_set = e_gen.reshape(len(sets), samples, -1)
        result["diversity"]["embedding_distance_between_samples"] = float(
            np.mean([mean_pairwise_distance(x) for x in per_set]))
        result["diversity"]["embedding_distance_between_held_out_tiles"] = mean_pairwise_distance(e_val[:256])

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "evaluation.json", json.dumps(result, indent=2))
    _plot(requested, achieved, names, conditioning, out_dir / "conditioning.png")
    if wandb_mode != "disabled":
        from urbangen.training.logging import RunLogger

        logger = RunLogger(out_dir, {"checkpoint": str(checkpoint), "dataset": str(dataset)}, {"mode": wandb_mode})
        flat = {f"eval/conditioning_mae/{k}": v["mae"] for k, v in conditioning.items()}
        flat.update({f"eval/realism/{k}": v for k, v in result.get("realism", {}).items() if isinstance(v, float)})
        flat.update({f"eval/diversity/{k}": v for k, v in result["diversity"].items()})
        logger.log(int(gen.meta["step"]), flat)
        import matplotlib.image

        logger.log_image(int(gen.meta["step"]), "eval/conditioning", matplotlib.image.imread(out_dir / "conditioning.png"))
        logger.finish()
    return result


def _plot(requested: np.ndarray, achieved: np.ndarray, names: list[str], conditioning: dict, path: Path) -> None:
    """Requested against achieved, one panel per parameter, with the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [n for n in names if n in conditioning]
    cols = min(4, max(1, len(shown)))
    rows = int(np.ceil(len(shown) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), shown):
        i = names.index(name)
        ax.scatter(requested[:, i], achieved[:, i], s=10, alpha=0.7)
        lo = np.nanmin([requested[:, i].min(), np.nanmin(achieved[:, i])])
        hi = np.nanmax([requested[:, i].max(), np.nanmax(achieved[:, i])])
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
        ax.set_title(f"{name}\nMAE {conditioning[name]['mae']:.3g} {conditioning[name]['unit']}", fontsize=8)
        ax.set_xlabel("requested", fontsize=8)
        ax.set_ylabel("achieved", fontsize=8)
    for ax in axes.ravel()[len(shown):]:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
