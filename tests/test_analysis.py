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
    for name, model, variant, steps in (("vae", "vae", "test", 60),
                                        ("vae_unconditional", "vae", "test,unconditional", 60),
                                        ("encoder", "encoder", "test", 40)):
        workdir = tmp_path_factory.mktemp("analysis_runs") / name
        train(load_config(model, variant, dataset=str(small_tiles), num_steps=steps, eval_every=steps, sample_every=0,
                          log_every=steps), workdir)
        out[name] = workdir
    return out


def _parameters_and_labels(small_tiles):
    """Standardized parameters, 1 for Østerbro (0 for Kennesaw), and city-qualified regions of every tile."""
    from data_pipeline.dataset import open_dataset
    from urbangen.analysis.embeddings import standardized_parameters

    data = open_dataset(small_tiles)
    tiles = data.tiles
    return (standardized_parameters(data.parameters()), (tiles.city == "osterbro").to_numpy().astype(int),
            (tiles.city.astype(str) + "/" + tiles.region.astype(str)).to_numpy())


def test_parameter_baseline_separates_the_cities_and_the_shuffled_control_does_not(small_tiles):
    from urbangen.evaluators.probes import blocked_probe

    x, y, blocks = _parameters_and_labels(small_tiles)
    real = blocked_probe(x, y, blocks)
    assert real["balanced_accuracy"] > 0.8 and real["auc"] > 0.85, real
    control = [blocked_probe(x, y, blocks, shuffle_labels=True, seed=s) for s in range(6)]
    assert abs(np.mean([c["auc"] for c in control]) - 0.5) < 0.12, control
    assert abs(np.mean([c["balanced_accuracy"] for c in control]) - 0.5) < 0.12, control
    # Well above chance, not just above it: no shuffled labelling comes near the real one.
    assert real["auc"] > max(c["auc"] for c in control) + 0.2, (real, control)


def test_pixel_probe_fits_its_pca_on_training_folds_only(small_tiles, monkeypatch):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from data_pipeline.dataset import open_dataset
    from urbangen.analysis.embeddings import pooled_pixels
    from urbangen.evaluators.probes import blocked_folds, blocked_probe, probe_pipeline

    data = open_dataset(small_tiles)
    x = pooled_pixels(data.read_tiles(np.arange(len(data.tiles))))
    _, y, blocks = _parameters_and_labels(small_tiles)
    seen = []  # the rows every PCA was fitted on
    for method in ("fit", "fit_transform"):
        real = getattr(PCA, method)

        def spy(self, X, *args, _real=real, **kwargs):
            seen.append(np.array(X, copy=True))
            return _real(self, X, *args, **kwargs)

        monkeypatch.setattr(PCA, method, spy)
    probe = blocked_probe(x, y, blocks, reduce=16)
    folds = blocked_folds(y, blocks)
    assert [type(step) for _, step in probe_pipeline(16).steps] == [StandardScaler, PCA, LogisticRegression]
    assert len(seen) == len(folds) == probe["folds"] >= 2
    for fitted, (train, test) in zip(seen, folds):
        assert not set(blocks[train]) & set(blocks[test])  # whole regions per fold
        # Exactly the fold's training rows, standardized by their own statistics: no test row, no test mean.
        assert fitted.shape == (len(train), x.shape[1])
        np.testing.assert_allclose(fitted, StandardScaler().fit_transform(x[train]))
    assert probe["auc"] > 0.85, probe


def test_same_city_halves_are_not_told_apart_and_the_two_cities_are(small_tiles):
    from urbangen.evaluators.distances import distances

    x, y, blocks = _parameters_and_labels(small_tiles)
    # Kennesaw's regions in two random halves: two samples of one distribution.
    kennesaw = y == 0
    regions = np.unique(blocks[kennesaw])
    first = np.isin(blocks, np.random.default_rng(0).permutation(regions)[:len(regions) // 2])
    a, b = kennesaw & first, kennesaw & ~first
    same = distances(x[a], x[b], blocks[a], blocks[b], n_boot=200, seed=0)
    assert same["mmd"]["ci95"][0] <= 0.0 <= same["mmd"]["ci95"][1], same["mmd"]
    assert same["mmd_permutation_p"] >= 0.05, same
    assert same["frechet"]["ci95"][0] <= same["frechet"]["value"] <= same["frechet"]["ci95"][1], same["frechet"]

    osterbro = y == 1
    cross = distances(x[osterbro], x[kennesaw], blocks[osterbro], blocks[kennesaw], n_boot=200, seed=0)
    assert cross["mmd_permutation_p"] < 0.05 and cross["mmd"]["ci95"][0] > 0.0, cross
    assert cross["frechet"]["ci95"][0] <= cross["frechet"]["value"] <= cross["frechet"]["ci95"][1], cross["frechet"]
    # Neighbouring tiles are dependent: resampling whole regions gives wider intervals than single tiles.
    tiles = np.arange(len(y)).astype(str)
    naive = distances(x[osterbro], x[kennesaw], tiles[osterbro], tiles[kennesaw], n_boot=200, seed=0)
    for name in ("frechet", "mmd"):
        assert np.diff(cross[name]["ci95"])[0] > np.diff(naive[name]["ci95"])[0], (name, cross, naive)


def test_analyze_cli_writes_results_report_and_figures(small_tiles, runs, tmp_path):
    import json

    from typer.testing import CliRunner

    from urbangen.cli import app

    result = CliRunner().invoke(app, ["analyze", "--dataset", str(small_tiles), "--checkpoint", str(runs["vae"]),
                                      "--checkpoint", str(runs["vae_unconditional"]), "--encoder", str(runs["encoder"]),
                                      "--out", str(tmp_path), "--bootstrap", "30", "--wandb-mode", "offline"],
                             env={"URBANGEN_NO_PROGRESS": "0"})
    assert result.exit_code == 0, result.output
    # Progress, in a log's form: one city pair and one group pair in each of the five spaces.
    assert "progress: comparisons of two cities or groups 10/10" in result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["spaces"]) == {"pixels_pca", "parameters", "vae_conditional", "vae_unconditional", "encoder"}
    pair = results["spaces"]["parameters"]["groups"]["car-centric vs micromobility"]
    assert pair["probe"]["auc"] > pair["probe_shuffled_labels"]["auc"] + 0.2 and pair["probe"]["auc"] > 0.85, pair
    assert pair["frechet"]["ci95"][0] <= pair["frechet"]["value"] <= pair["frechet"]["ci95"][1], pair["frechet"]
    assert pair["mmd_permutation_p"] < 0.05 and pair["mmd"]["ci95"][0] > 0.0, pair
    assert pair["regions"] == [results["cities"]["kennesaw"]["regions"], results["cities"]["osterbro"]["regions"]]
    # The pixel probe fits its PCA inside the folds; the other spaces' probes need none.
    assert {s: e["probe_pca_in_folds"] for s, e in results["spaces"].items()} == {
        "pixels_pca": 16, "parameters": None, "vae_conditional": None, "vae_unconditional": None, "encoder": None}
    assert len(results["traversal"]["measured"]) == 7
    for stem in ("embeddings_pca", "embeddings_umap", "correlations", "similar_tiles", "traversal"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 5_000 and (tmp_path / f"{stem}.svg").exists()
    report = (tmp_path / "report.md").read_text()
    assert ("© OpenStreetMap contributors" in report
            and "block bootstrap over regions, bias-corrected normal interval" in report)
    assert "| MMD p-value |" in report
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
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
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


@pytest.mark.integration  # the whole notebook, on the embedded data and shipped models
def test_notebook_runs_with_no_set_up(tmp_path, monkeypatch):
    """No variables set, run from an empty folder: the embedded cities and the shipped encoder."""
    import nbformat
    from nbclient import NotebookClient

    for name in ("URBANGEN_DATASET", "URBANGEN_VAE", "URBANGEN_ENCODER", "URBANGEN_ANALYSIS_OUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("URBANGEN_BOOTSTRAP", "20")
    nb = nbformat.read(ROOT / "notebooks" / "latent_space_comparison.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    import json

    results = json.loads((tmp_path / "urbangen-notebook" / "analysis" / "results.json").read_text())
    assert {"helsinki", "osterbro", "kennesaw"} <= set(results["cities"])
    assert "encoder" in results["spaces"]
