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
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from data_pipeline.build import CitySpec, city_name_from, default_city, source_city_name
from data_pipeline.config import TilingConfig
from data_pipeline.dataset import ATTRIBUTION
from data_pipeline.errors import InvalidValueError, OSMFileNotFoundError, OutputExistsError
from urbangen import progress
from urbangen.embedded import embedded_osm_files
from urbangen.osm_file_option import parse_osm_file
from urbangen.pretrained import DEFAULT_GENERATOR
from urbangen.quickstart_report import pipeline_figure, print_where_to_look, report_markdown, training_curves
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
                   steps: dict[str, int] | None = None, candidates: int | None = None,
                   console: Console | None = None) -> dict[str, Any]:
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
    candidates
        Samples per tile the shipped generator chooses among, instead of the
        parameter file's default (:data:`urbangen.generate.selection.CANDIDATES`):
        fewer are faster and follow the request less closely.
    """
    from data_pipeline.atomic import write_text_atomic
    from urbangen.machine import describe_machine

    console = console or Console(stderr=True)
    out = Path(out_dir)
    cities = list(cities or quickstart_cities())
    steps = dict(steps or {})
    # In its JSON form (tuples as lists) so that it compares equal to the copy a rerun reads back.
    plan = {"cities": [asdict(c) for c in cities], "tiling": TILING.to_dict(), "seed": seed, "steps": steps}
    if candidates is not None:  # only when asked: a folder of the default run keeps its plan
        plan["candidates"] = candidates
    plan = json.loads(json.dumps(plan))
    _claim(out, plan, overwrite)
    summary_path = out / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary.get("plan") != plan:
        summary = {"plan": plan, "stages": {}, "results": {}, "attribution": ATTRIBUTION}
    started = time.perf_counter()
    # (title, key, the output that shows the stage finished, what runs it)
    stages: list[tuple[str, str, str, Callable[[], Any]]] = [
        ("Build the tile dataset", "data", "data/manifest.json", lambda: _build(out, cities))]
    stages += [(f"Train the {m}", f"train_{m}", f"runs/{m}/metrics.jsonl",
                partial(_train, out, m, seed, wandb_mode, steps.get(m))) for m in MODELS]
    stages += [("Generate from a parameter file", "generate", "layouts/report.json",
                lambda: _generate(out, seed, candidates)),
               ("Evaluate the generator", "evaluate", "evaluation/evaluation.json", lambda: _evaluate(out, seed)),
               ("Compare the cities in embedding spaces", "analyze", "analysis/results.json",
                lambda: _analyze(out, seed))]
    for i, (title, key, output, run) in enumerate(stages, 1):
        console.rule(f"[bold][{i}/{len(stages) + 1}] {title}")
        if key in summary["results"] and (out / output).exists():
            console.print("finished by an earlier run: kept")
            continue
        tic = time.perf_counter()
        with progress.shown(console, disable=progress_disabled()):
            summary["results"][key] = run()
        summary["stages"][key] = round(time.perf_counter() - tic, 1)
        write_text_atomic(summary_path, json.dumps(summary, indent=2, default=str))  # what a rerun can keep
        console.print(f"[green]done[/] in {summary['stages'][key]:.0f} s")

    console.rule(f"[bold][{len(stages) + 1}/{len(stages) + 1}] Write the report")
    summary["machine"] = describe_machine(with_jax=True)
    summary["total_seconds"] = round(sum(summary["stages"].values()), 1)
    training_curves(out, {m: summary["results"][f"train_{m}"] for m in MODELS})
    pipeline_figure(out)
    write_text_atomic(summary_path, json.dumps(summary, indent=2, default=str))
    (out / "report.md").write_text(report_markdown(summary))
    print_where_to_look(console, out, time.perf_counter() - started)
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
    from urbangen.configs import experiment_config
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


def _generate(out: Path, seed: int, candidates: int | None = None) -> dict[str, Any]:
    """Copy the example parameter file and run it with the shipped generator (its default model), drawing
    ``candidates`` per tile where given."""
    from urbangen.examples import example_files
    from urbangen.generate.run import generate

    source = example_files("params")[EXAMPLE_PARAMS]
    request = yaml.safe_load(source.read_text())
    request["model"] = DEFAULT_GENERATOR
    request["seed"] = seed
    if candidates is not None:
        request["candidates"] = candidates
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
                      max_tiles=EVALUATION_TILES, seed=seed, n_boot=100, seams_m=1024, stitched_mosaics=0)
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
    headline: dict[str, dict[str, Any]] = {}
    for space, entry in results["spaces"].items():
        for pair, r in entry["cities"].items():
            headline.setdefault(pair, {})[space] = {"probe_auc": r.get("probe", {}).get("auc"),
                                                    "shuffled_auc": r.get("probe_shuffled_labels", {}).get("auc"),
                                                    "frechet": r["frechet"]["value"],
                                                    "frechet_ci95": r["frechet"]["ci95"],
                                                    "mmd_permutation_p": r.get("mmd_permutation_p")}
    return {"path": "analysis", "spaces": list(results["spaces"]), "city_pairs": headline}
