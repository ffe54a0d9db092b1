"""``urbangen analyze``: compare cities and groups of cities in several embedding spaces."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from data_pipeline.atomic import write_text_atomic
from data_pipeline.dataset import ATTRIBUTION, open_dataset
from data_pipeline.errors import InvalidValueError
from urbangen import progress
from urbangen.analysis import embeddings as emb
from urbangen.analysis import figures
from urbangen.analysis.stats import axis_correlations, nearest_across
from urbangen.evaluators.distances import distances
from urbangen.evaluators.probes import blocked_probe
from urbangen.markdown import table
from urbangen.splits import region_blocks

if TYPE_CHECKING:  # jax loads only when a run is
    from urbangen.inference import TrainedModel

#: Principal components of the pixel space: its fixed map keeps them, and a pixel probe fits them in each fold.
PIXEL_DIMS = 16
#: How the intervals and the test treat dependent tiles; written into results.json and the report.
INTERVALS = ("block bootstrap over regions, bias-corrected normal interval; MMD p-value from permuting whole regions "
             "between the two sides")


def _compare(z: np.ndarray, probe_x: np.ndarray, reduce: int | None, labels: np.ndarray, blocks: np.ndarray,
             a: str, b: str, n_boot: int, seed: int) -> dict[str, Any]:
    """Probe and distances of the rows labelled ``a`` against those labelled ``b``.

    The probe reads ``probe_x`` (fitting ``reduce`` principal components inside each
    fold), the distances ``z``; a side with a single region gets neither: no
    blocked fold or block resample exists then.
    """
    in_a, in_b = labels == a, labels == b
    mask = in_a | in_b
    y = (labels[mask] == b).astype(int)
    out: dict[str, Any] = {"n": [int(in_a.sum()), int(in_b.sum())],
                           "regions": [len(np.unique(blocks[in_a])), len(np.unique(blocks[in_b]))]}
    try:
        out["probe"] = blocked_probe(probe_x[mask], y, blocks[mask], seed=seed, reduce=reduce)
        out["probe_shuffled_labels"] = blocked_probe(probe_x[mask], y, blocks[mask], seed=seed, reduce=reduce,
                                                     shuffle_labels=True)
    except ValueError as err:
        out["probe"] = {"skipped": str(err)}
    try:
        out.update(distances(z[in_a], z[in_b], blocks[in_a], blocks[in_b], n_boot=n_boot, seed=seed))
    except ValueError as err:
        skipped = {"value": None, "ci95": [None, None], "skipped": str(err)}
        out.update(frechet=skipped, mmd=dict(skipped), mmd_permutation_p=None)
    return out


def _load(run: str | Path, data) -> TrainedModel:
    """A trained model (run, model file or shipped name) whose tiles are the dataset's: same channels, same size."""
    from urbangen.pretrained import load_one_model

    model = load_one_model(run, "the analysis")
    if tuple(model.spec.channels) != tuple(data.channels) or model.spec.tile_px != data.tile_px:
        raise InvalidValueError(f"{run} was trained on {model.spec.tile_px} px tiles of {list(model.spec.channels)}; "
                         f"the dataset has {data.tile_px} px tiles of {list(data.channels)}")
    return model


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
        ``vae_unconditional``, as each run's spec says). The first one draws
        the traversal.
    groups
        City to group (for example ``car-centric`` or ``micromobility``);
        default the ``group`` each city was built with.
    n_boot
        Resamples of each block-bootstrap interval, and permutations of the
        MMD test; the blocks are regions (``city/region``), as tiles of one
        region are not independent.
    wandb_mode
        ``online`` or ``offline`` logs the headline numbers and the whole
        output folder as a W&B artifact.

    Raises
    ------
    InvalidValueError
        If ``max_tiles_per_city`` or ``n_boot`` is under 2 (no comparison or interval exists then).
    """
    for name, value in (("max_tiles_per_city", max_tiles_per_city), ("n_boot", n_boot)):
        if value < 2:
            raise InvalidValueError(f"{name} is {value}: the analysis needs at least 2")
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
    # Blocks are regions of one city: region labels are per city, and two cities never share ground.
    blocks = region_blocks(tiles_df)[indices]
    params = data.parameters(indices)
    tiles = data.read_tiles(indices)

    pooled = emb.pooled_pixels(tiles)
    # Distances, figures and retrieval use one pixel map fitted on every tile: a fixed map is fine for
    # them. A probe must not see its test folds, so pixel probes read the pooled pixels and fit the same
    # standardize-and-PCA map inside each fold (``reduce``).
    spaces = {"pixels_pca": emb.pixel_pca(pooled, PIXEL_DIMS, seed=seed),
              "parameters": emb.standardized_parameters(params)}
    probe_inputs: dict[str, tuple[np.ndarray, int | None]] = {"pixels_pca": (pooled, PIXEL_DIMS)}
    vae_runs = [] if vae is None else ([vae] if isinstance(vae, (str, Path)) else list(vae))
    traversal_run = None
    for run in vae_runs:
        model = _load(run, data)
        z_params = emb.scaled_parameters(model, params, data.parameter_names)
        name, z = emb.vae_means(model, tiles, z_params)
        if name in spaces:
            raise InvalidValueError(f"two {name} VAE runs given; give at most one conditional and one unconditional")
        spaces[name] = z
        traversal_run = traversal_run or (model, name, z_params)
    if encoder is not None:
        spaces["encoder"] = _load(encoder, data).embed_tiles(tiles)

    results: dict[str, Any] = {"dataset": str(dataset), "cities": {c: {"group": groups.get(c, c), "tiles":
                               int((cities == c).sum()), "regions": len(np.unique(blocks[cities == c]))}
                               for c in sorted(set(cities))}, "intervals": INTERVALS, "n_boot": n_boot,
                               "spaces": {}, "attribution": ATTRIBUTION}
    # Each pair of cities and of groups, in every space: with many cities, most of the analysis's time.
    comparisons = len(spaces) * sum(math.comb(len(set(labels)), 2) for labels in (cities, group_of))
    compared = 0
    for name, z in spaces.items():
        probe_x, reduce = probe_inputs.get(name, (z, None))
        entry: dict[str, Any] = {"dims": int(z.shape[1]), "probe_pca_in_folds": reduce, "cities": {}, "groups": {}}
        done: dict[bytes, dict] = {}  # a group that is exactly one city asks the same question again
        for kind, labels in (("cities", cities), ("groups", group_of)):
            for a, b in itertools.combinations(sorted(set(labels)), 2):
                key = np.concatenate([labels == a, labels == b]).tobytes()
                if key not in done:
                    done[key] = _compare(z, probe_x, reduce, labels, blocks, a, b, n_boot, seed)
                entry[kind][f"{a} vs {b}"] = done[key]
                compared += 1
                progress.report("comparisons of two cities or groups", compared, comparisons)
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
    if traversal_run is not None and len(set(group_of)) >= 2:
        model, name, z_params = traversal_run
        results["traversal"] = figures.traversal(model, spaces[name], z_params, group_of, out / "traversal")
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
            run.summary[f"{space}/{pair}/mmd"] = r["mmd"]["value"]
            run.summary[f"{space}/{pair}/mmd_permutation_p"] = r["mmd_permutation_p"]
    artifact = wandb.Artifact("latent-space-comparison", type="analysis")
    for path in sorted(out.iterdir()):
        if path.is_file():
            artifact.add_file(str(path))
    run.log_artifact(artifact)
    run.finish()


def _num(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)


def _interval(d: dict[str, Any]) -> str:
    if "skipped" in d:
        return "n/a"
    return f"{_num(d['value'])} [{_num(d['ci95'][0])}, {_num(d['ci95'][1])}]"


def report_markdown(results: dict[str, Any]) -> str:
    """The comparison as Markdown: a table of probes, distances and tests per level (groups, cities)."""
    lines = ["# Latent-space comparison", "", f"Dataset `{results['dataset']}`: " + ", ".join(
        f"{c} ({v['group']}, {v['tiles']} tiles in {v['regions']} regions)" for c, v in results["cities"].items()), "",
        "Linear probes are logistic regressions with spatially blocked folds (whole regions); standardization and, "
        "in pixel space, the PCA are fitted inside each fold. The shuffled control permutes labels over regions "
        "and should sit near 0.5 (balanced accuracy and AUC are 0.5 by chance).", "",
        f"Distances carry 95 % intervals: {results['intervals']} ({results['n_boot']} resamples). Frechet "
        "distances are taken at equal sample sizes; MMD is the squared MMD with a Gaussian kernel at the median "
        "distance, which can be below 0 when two sides do not differ. A lower bound below 0 says only that the "
        "data do not exclude small values. The MMD p-value tests \"one distribution\".", ""]
    for level in ("groups", "cities"):
        rows = []
        for space, entry in results["spaces"].items():
            for pair, r in entry[level].items():
                p, s = r.get("probe", {}), r.get("probe_shuffled_labels", {})
                rows.append([space, pair, _num(p.get("balanced_accuracy"), ".3f"), _num(p.get("auc"), ".3f"),
                             _num(s.get("auc"), ".3f"), _interval(r["frechet"]), _interval(r["mmd"]),
                             _num(r["mmd_permutation_p"], ".3f")])
        lines += [f"## {level.title()}", ""] + table(
            ["space", "pair", "probe balanced accuracy", "AUC", "shuffled AUC", "Frechet [95 % CI]", "MMD [95 % CI]",
             "MMD p-value"], rows)
        lines.append("")
    if len(results["cities"]) < 2:
        lines += ["Only one city: there is no pair to compare; add cities (`urbangen data build --config`).", ""]
    lines += ["Figures: `embeddings_*.png|svg`, `correlations.png|svg`"
              + (", `similar_tiles.png|svg`" if results["retrieval"]["pairs"] else "")
              + (", `traversal.png|svg`" if "traversal" in results else "") + ".", "", results["attribution"], ""]
    return "\n".join(lines)
