"""``urbangen analyze``: compare cities and groups of cities in several embedding spaces."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.atomic import write_text_atomic
from data_pipeline.dataset import ATTRIBUTION, open_dataset
from urbangen.analysis import embeddings as emb
from urbangen.analysis import figures
from urbangen.analysis.stats import axis_correlations, blocked_probe, distances, nearest_across


def _compare(z: np.ndarray, labels: np.ndarray, blocks: np.ndarray, a: str, b: str, n_boot: int,
             seed: int) -> dict[str, Any]:
    mask = (labels == a) | (labels == b)
    y = (labels[mask] == b).astype(int)
    out: dict[str, Any] = {"n": [int((labels == a).sum()), int((labels == b).sum())]}
    try:
        out["probe"] = blocked_probe(z[mask], y, blocks[mask], seed=seed)
        out["probe_shuffled_labels"] = blocked_probe(z[mask], y, blocks[mask], seed=seed, shuffle_labels=True)
    except ValueError as err:
        out["probe"] = {"skipped": str(err)}
    out.update(distances(z[labels == a], z[labels == b], n_boot=n_boot, seed=seed))
    return out


def analyze(dataset: str | Path, out_dir: str | Path, *, vae: str | Path | list | None = None,
            encoder: str | Path | None = None, groups: dict[str, str] | None = None, max_tiles_per_city: int = 400,
            n_boot: int = 200, seed: int = 0, wandb_mode: str = "disabled") -> dict[str, Any]:
    """Embed tiles of every city and compare cities and groups; write results.json, report.md and figures.

    Parameters
    ----------
    vae
        One VAE run or several: a conditional VAE's latent holds only what
        the parameters don't explain, an unconditional one's everything, so
        giving both shows both views (spaces ``vae_conditional`` and
        ``vae_unconditional``). The first one draws the traversal.
    groups
        City to group (for example ``car-centric`` or ``micromobility``);
        default the ``group`` each city was built with.
    wandb_mode
        ``online`` or ``offline`` logs the headline numbers and the whole
        output folder as a W&B artifact.
    """
    data = open_dataset(dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tiles_df = data.tiles
    indices = np.concatenate([rng.permutation(np.flatnonzero(tiles_df.city == c))[:max_tiles_per_city]
                              for c in sorted(tiles_df.city.unique())])
    indices.sort()
    cities = tiles_df.city.to_numpy()[indices]
    groups = groups or {c: info.get("group") or c for c, info in data.manifest["cities"].items()}
    group_of = np.array([groups.get(c, c) for c in cities])
    blocks = tiles_df.region.to_numpy()[indices]
    params = data.parameters(indices)
    tiles = data.read_tiles(indices)

    spaces = {"pixels_pca": emb.pixel_pca(tiles, seed=seed), "parameters": emb.standardized_parameters(params)}
    vae_runs = [] if vae is None else ([vae] if isinstance(vae, (str, Path)) else list(vae))
    vae_spaces = []
    for run in vae_runs:
        name, z = emb.vae_means(run, data, indices)
        if name in spaces:
            raise ValueError(f"two {name} VAE runs given; give at most one conditional and one unconditional")
        spaces[name] = z
        vae_spaces.append(name)
    if encoder is not None:
        spaces["encoder"] = emb.encoder_embeddings(encoder, data, indices)

    results: dict[str, Any] = {"dataset": str(dataset), "cities": {c: {"group": groups.get(c, c), "tiles":
                               int((cities == c).sum())} for c in sorted(set(cities))}, "spaces": {},
                               "attribution": ATTRIBUTION}
    for name, z in spaces.items():
        entry: dict[str, Any] = {"dims": int(z.shape[1]), "cities": {}, "groups": {}}
        done: dict[bytes, dict] = {}  # a group that is exactly one city asks the same question again

        def compare(labels: np.ndarray, a: str, b: str) -> dict[str, Any]:
            key = np.concatenate([labels == a, labels == b]).tobytes()
            if key not in done:
                done[key] = _compare(z, labels, blocks, a, b, n_boot, seed)
            return done[key]

        for a, b in itertools.combinations(sorted(set(cities)), 2):
            entry["cities"][f"{a} vs {b}"] = compare(cities, a, b)
        for a, b in itertools.combinations(sorted(set(group_of)), 2):
            entry["groups"][f"{a} vs {b}"] = compare(group_of, a, b)
        corr = axis_correlations(z[:, :16], params)
        entry["spearman_axis_vs_parameter"] = {
            "axes": list(range(corr.shape[0])), "parameters": data.parameter_names,
            "rho": [[None if not np.isfinite(v) else float(v) for v in row] for row in corr]}
        results["spaces"][name] = entry

    retrieval_space = "encoder" if "encoder" in spaces else "parameters"
    pairs = {}
    for a, b in itertools.permutations(sorted(set(cities)), 2):
        ia, ib = np.flatnonzero(cities == a), np.flatnonzero(cities == b)
        found = nearest_across(spaces[retrieval_space][ia], spaces[retrieval_space][ib], k=4)
        pairs[f"{a} most like {b}"] = [{"tile": int(indices[ia[i]]), "match": int(indices[ib[j]]), "distance": d}
                                        for i, j, d in found]
    results["retrieval"] = {"space": retrieval_space, "pairs": pairs}

    figures.scatter(spaces, cities, group_of, tiles, data.channels, out / "embeddings", seed=seed)
    figures.correlation_heatmap(results, out / "correlations")
    if pairs:  # one city alone has nobody to resemble
        figures.similar_tiles(pairs, data, out / "similar_tiles")
    if vae_runs and len(set(group_of)) >= 2:
        results["traversal"] = figures.traversal(vae_runs[0], spaces[vae_spaces[0]], group_of, data, indices,
                                                 out / "traversal")
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    (out / "report.md").write_text(report_markdown(results))
    if wandb_mode != "disabled":
        log_to_wandb(results, out, wandb_mode)
    return results


def log_to_wandb(results: dict[str, Any], out: Path, mode: str) -> None:
    """Headline numbers as a W&B run's summary, and the whole output folder as an ``analysis`` artifact."""
    import wandb

    from urbangen.training.logging import wandb_mode

    run = wandb.init(project="urbangen", job_type="analysis", dir=str(out), mode=wandb_mode(mode),
                     config={"dataset": results["dataset"], "cities": results["cities"]})
    for space, entry in results["spaces"].items():
        for pair, r in entry["groups"].items():
            run.summary[f"{space}/{pair}/auc"] = r.get("probe", {}).get("auc")
            run.summary[f"{space}/{pair}/frechet"] = r["frechet"]["value"]
    artifact = wandb.Artifact("latent-space-comparison", type="analysis")
    for path in sorted(out.iterdir()):
        if path.is_file():
            artifact.add_file(str(path))
    run.log_artifact(artifact)
    run.finish()


def report_markdown(results: dict[str, Any]) -> str:
    lines = ["# Latent-space comparison", "", f"Dataset `{results['dataset']}`: " + ", ".join(
        f"{c} ({v['group']}, {v['tiles']} tiles)" for c, v in results["cities"].items()), "",
        "Linear probes are logistic regressions with spatially blocked folds (whole regions); the shuffled "
        "control permutes labels over regions and should sit near 0.5 (balanced accuracy and AUC are 0.5 by chance). Distances carry 95 % bootstrap intervals.", ""]
    for level in ("groups", "cities"):
        lines += [f"## {level.title()}", "", "| space | pair | probe balanced accuracy | AUC | shuffled AUC | Frechet [95 % CI] "
                  "| MMD [95 % CI] |", "|---|---|---|---|---|---|---|"]
        for space, entry in results["spaces"].items():
            for pair, r in entry[level].items():
                p, s = r.get("probe", {}), r.get("probe_shuffled_labels", {})
                fd, mmd = r["frechet"], r["mmd"]
                lines.append(f"| {space} | {pair} | {p.get('balanced_accuracy', float('nan')):.3f} | "
                             f"{p.get('auc', float('nan')):.3f} | {s.get('auc', float('nan')):.3f} | {fd['value']:.3g} [{fd['ci95'][0]:.3g}, "
                             f"{fd['ci95'][1]:.3g}] | {mmd['value']:.3g} [{mmd['ci95'][0]:.3g}, {mmd['ci95'][1]:.3g}] |")
        lines.append("")
    if len(results["cities"]) < 2:
        lines += ["Only one city: there is no pair to compare; add cities (`urbangen data build --config`).", ""]
    lines += ["Figures: `embeddings_*.png|svg`, `correlations.png|svg`"
              + (", `similar_tiles.png|svg`" if results["retrieval"]["pairs"] else "")
              + (", `traversal.png|svg`" if "traversal" in results else "") + ".", "", results["attribution"], ""]
    return "\n".join(lines)
