"""Figures of the comparison, each saved as PNG and SVG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from data_pipeline.dataset import ATTRIBUTION  # noqa: E402
from data_pipeline.render import tile_to_rgb  # noqa: E402

if TYPE_CHECKING:  # jax loads only when a run is
    from urbangen.inference import TrainedModel

MARKERS = "o^sDvP*X"


def _save(fig, stem: Path) -> None:
    fig.text(0.99, 0.005, f"map data {ATTRIBUTION}", ha="right", fontsize=6)
    for suffix in (".png", ".svg"):
        fig.savefig(stem.with_suffix(suffix), dpi=110, metadata={"Date": None} if suffix == ".svg" else None)
    plt.close(fig)


def _project(z: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform((z - z.mean(0)) / (z.std(0) + 1e-12))
    import umap

    return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(z) - 1), n_jobs=1).fit_transform(z)


def scatter(spaces: dict[str, np.ndarray], cities: np.ndarray, groups: np.ndarray, tiles: np.ndarray,
            channels: list[str], stem: Path, seed: int = 0, thumbnails: int = 6) -> None:
    """PCA and UMAP of every space, coloured by city, marker by group, with a few tile thumbnails."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    city_names, group_names = sorted(set(cities)), sorted(set(groups))
    colours = plt.get_cmap("tab10")
    pick = np.random.default_rng(seed).choice(len(cities), size=min(thumbnails, len(cities)), replace=False)
    for method in ("pca", "umap"):
        fig, axes = plt.subplots(1, len(spaces), figsize=(4.2 * len(spaces), 4.2), squeeze=False)
        for ax, (name, z) in zip(axes[0], spaces.items()):
            xy = _project(z, method, seed)
            for ci, city in enumerate(city_names):
                for gi, group in enumerate(group_names):
                    m = (cities == city) & (groups == group)
                    if m.any():
                        ax.scatter(xy[m, 0], xy[m, 1], s=8, alpha=0.6, color=colours(ci), marker=MARKERS[gi % 8],
                                   label=f"{city} ({group})")
            for i in pick:
                thumb = OffsetImage(tile_to_rgb(tiles[i], channels), zoom=0.35)
                ax.add_artist(AnnotationBbox(thumb, xy[i], frameon=True, pad=0.1))
            ax.set_title(f"{name} ({method.upper()})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][0].legend(fontsize=7, loc="best")
        fig.tight_layout()
        _save(fig, stem.parent / f"{stem.name}_{method}")


def correlation_heatmap(results: dict[str, Any], stem: Path) -> None:
    """Spearman rho of each axis (up to 16) of each space with each urban-form parameter."""
    spaces = results["spaces"]
    fig, axes = plt.subplots(1, len(spaces), figsize=(4.5 * len(spaces), 5), squeeze=False)
    for ax, (name, entry) in zip(axes[0], spaces.items()):
        c = entry["spearman_axis_vs_parameter"]
        rho = np.array([[np.nan if v is None else v for v in row] for row in c["rho"]], dtype=float)
        im = ax.imshow(rho.T, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        ax.set_yticks(range(len(c["parameters"])), c["parameters"], fontsize=6)
        ax.set_xlabel("axis", fontsize=8)
        ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Spearman rho")
    _save(fig, stem)


def similar_tiles(pairs: dict[str, list[dict]], data, stem: Path) -> None:
    """For each ordered pair of cities, the tiles of the first closest to a tile of the second."""
    rows = list(pairs.items())
    k = max(len(v) for _, v in rows)
    fig, axes = plt.subplots(len(rows), 2 * k, figsize=(1.6 * 2 * k, 1.9 * len(rows)), squeeze=False)
    for r, (title, found) in enumerate(rows):
        for j, hit in enumerate(found):
            for side, idx in enumerate((hit["tile"], hit["match"])):
                ax = axes[r][2 * j + side]
                ax.imshow(tile_to_rgb(data.read_tile(idx), data.channels))
                ax.set_xticks([])
                ax.set_yticks([])
        axes[r][0].set_ylabel(title, fontsize=7)
    for ax in axes.ravel():
        if not ax.images:
            ax.set_axis_off()
    _save(fig, stem)


def traversal(model: TrainedModel, z: np.ndarray, z_params: np.ndarray, groups: np.ndarray, stem: Path,
              steps: int = 7, min_building_area_m2: float = 20.0) -> dict[str, Any]:
    """Decode the straight line between two groups' mean latents (parameters interpolated alike) and measure it.

    Parameters
    ----------
    model
        The VAE run whose posterior means ``z`` are.
    z, z_params
        Posterior means (n, latent) and the standardized parameters (n, P) they were encoded with.
    groups
        Group of each row; the first two groups (sorted) are the ends of the line.
    min_building_area_m2
        Building polygons below it are dropped as specks before measuring, as
        ``urbangen generate`` does by default.
    """
    from urbangen.generate.sampler import to_layout
    from urbangen.measure import measure_tiles

    spec = model.spec
    a, b = sorted(set(groups))[:2]
    t = np.linspace(0.0, 1.0, steps)[:, None]
    latents = (1 - t) * z[groups == a].mean(0) + t * z[groups == b].mean(0)
    conds = (1 - t) * z_params[groups == a].mean(0) + t * z_params[groups == b].mean(0)
    probs = np.asarray(model.fn("decode")(latents.astype(np.float32), conds.astype(np.float32)))
    layouts = np.stack([to_layout(probs[s], spec, np.random.default_rng([0, s]))
                        for s in range(steps)])
    channels = list(spec.channels)
    table = measure_tiles(layouts, channels, spec.meters_per_pixel, min_building_area_m2=min_building_area_m2)
    measured = [{k: (None if not np.isfinite(v) else float(v)) for k, v in row.items()}
                for _, row in table.iterrows()]
    fig, axes = plt.subplots(1, steps, figsize=(1.9 * steps, 2.6))
    for s, ax in enumerate(axes):
        ax.imshow(tile_to_rgb(layouts[s], channels))
        ax.set_xticks([])
        ax.set_yticks([])
        cov, cyc = measured[s].get("building_coverage"), measured[s].get("cycle_foot_share")
        ax.set_title(f"t={t[s, 0]:.2f}\ncov {cov if cov is None else round(cov, 2)}, "
                     f"cyc {cyc if cyc is None else round(cyc, 2)}", fontsize=7)
    fig.suptitle(f"VAE traversal: {a} mean -> {b} mean", fontsize=9)
    _save(fig, stem)
    return {"from": a, "to": b, "t": t.ravel().tolist(), "measured": measured}
