"""Latent-space comparison on real Østerbro (micromobility) and Kennesaw (car-centric) tiles."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, load_config, wandb_records


@pytest.fixture(scope="module")
def runs(small_tiles, tmp_path_factory) -> dict[str, Path]:
    from urbangen.training.tasks import train

    out = {}
    for name, model, variant, steps in (("vae", "vae", "test", 60), ("vae_unconditional", "vae", "test,unconditional", 60),
                                        ("encoder", "encoder", "test", 40)):
        workdir = tmp_path_factory.mktemp("analysis_runs") / name
        train(load_config(model, variant, dataset=str(small_tiles), num_steps=steps, eval_every=steps, sample_every=0,
                          log_every=steps), workdir)
        out[name] = workdir
    return out


def _parameters_and_labels(small_tiles):
    from data_pipeline.dataset import open_dataset
    from urbangen.analysis.embeddings import standardized_parameters

    data = open_dataset(small_tiles)
    tiles = data.tiles
    return (standardized_parameters(data.parameters()), (tiles.city == "osterbro").to_numpy().astype(int),
            tiles.region.to_numpy())


def test_parameter_baseline_separates_the_cities_and_the_shuffled_control_does_not(small_tiles):
    from urbangen.analysis.stats import blocked_probe

    x, y, blocks = _parameters_and_labels(small_tiles)
    real = blocked_probe(x, y, blocks)
    assert real["balanced_accuracy"] > 0.8 and real["auc"] > 0.85, real
    control = [blocked_probe(x, y, blocks, shuffle_labels=True, seed=s) for s in range(6)]
    assert abs(np.mean([c["auc"] for c in control]) - 0.5) < 0.12, control
    assert abs(np.mean([c["balanced_accuracy"] for c in control]) - 0.5) < 0.12, control


def test_confidence_intervals_shrink_as_tiles_grow(small_tiles):
    from urbangen.analysis.stats import distances

    x, y, _ = _parameters_and_labels(small_tiles)
    rng = np.random.default_rng(0)
    a_all, b_all = x[y == 1], x[y == 0]

    def widths(n):
        a = a_all[rng.permutation(len(a_all))[:n]]
        b = b_all[rng.permutation(len(b_all))[:n]]
        d = distances(a, b, n_boot=150, seed=1)
        return {k: v["ci95"][1] - v["ci95"][0] for k, v in d.items()}

    small, large = widths(15), widths(len(a_all))
    assert large["frechet"] < small["frechet"] and large["mmd"] < small["mmd"], (small, large)


def test_analyze_cli_writes_results_report_and_figures(small_tiles, runs, tmp_path):
    import json

    from typer.testing import CliRunner

    from urbangen.cli import app

    result = CliRunner().invoke(app, ["analyze", "--dataset", str(small_tiles), "--checkpoint", str(runs["vae"]),
                                      "--checkpoint", str(runs["vae_unconditional"]), "--encoder", str(runs["encoder"]),
                                      "--out", str(tmp_path), "--bootstrap", "30", "--wandb-mode", "offline"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["spaces"]) == {"pixels_pca", "parameters", "vae_conditional", "vae_unconditional", "encoder"}
    pair = results["spaces"]["parameters"]["groups"]["car-centric vs micromobility"]
    assert pair["probe"]["auc"] > 0.85 and pair["frechet"]["ci95"][0] <= pair["frechet"]["value"] <= pair["frechet"]["ci95"][1]
    assert len(results["traversal"]["measured"]) == 7
    for stem in ("embeddings_pca", "embeddings_umap", "correlations", "similar_tiles", "traversal"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 5_000 and (tmp_path / f"{stem}.svg").exists()
    assert "© OpenStreetMap contributors" in (tmp_path / "report.md").read_text()
    # W&B (offline): the output folder was logged as an artifact
    run_files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    artifacts = [r.artifact for r in wandb_records(str(run_files[0])) if r.WhichOneof("record_type") == "artifact"]
    assert artifacts and artifacts[0].type == "analysis"
    logged = {entry.path for entry in artifacts[0].manifest.contents}
    assert {"results.json", "report.md", "traversal.png"} <= logged


def test_notebook_runs_top_to_bottom(small_tiles, runs, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "latent_space_comparison.ipynb", as_version=4)
    env = {"URBANGEN_DATASET": str(small_tiles), "URBANGEN_VAE": str(runs["vae"]),
           "URBANGEN_ENCODER": str(runs["encoder"]), "URBANGEN_ANALYSIS_OUT": str(tmp_path / "out"),
           "URBANGEN_BOOTSTRAP": "20"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert (tmp_path / "out" / "results.json").exists()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 5


def test_one_city_alone_gets_its_figures_and_no_comparisons(osm_path, tmp_path):
    import json

    from conftest import OSTERBRO
    from data_pipeline.build import CitySpec, build_dataset
    from data_pipeline.config import TilingConfig
    from urbangen.analysis.run import analyze

    build_dataset([CitySpec(name="osterbro", osm_file=str(osm_path(OSTERBRO)))], tmp_path / "data",
                  TilingConfig(meters_per_pixel=4.0, tile_px=64, region_m=1024))
    results = analyze(tmp_path / "data", tmp_path / "out", n_boot=10)
    assert results["spaces"]["parameters"]["cities"] == {} and results["retrieval"]["pairs"] == {}
    assert json.loads((tmp_path / "out" / "results.json").read_text())["cities"]["osterbro"]["tiles"] > 10
    assert (tmp_path / "out" / "embeddings_pca.png").exists() and not (tmp_path / "out" / "similar_tiles.png").exists()
    assert "Only one city" in (tmp_path / "out" / "report.md").read_text()
