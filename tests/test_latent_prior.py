"""A VAE's learned latent prior: mixture sampling against NumPy, fitting, and the generators that use it."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import load_config


def test_mixture_samples_have_the_mixtures_moments():
    """``sample_mixture`` against the float64 NumPy mean and covariance of the same mixture."""
    from urbangen.inference import sample_mixture

    rng = np.random.default_rng(0)
    weights = np.array([0.3, 0.7])
    means = np.array([[2.0, -1.0, 0.0], [-1.0, 0.5, 3.0]])
    tril = np.stack([np.tril(rng.normal(size=(3, 3))) + 2 * np.eye(3) for _ in range(2)])
    covs = tril @ np.transpose(tril, (0, 2, 1))
    mean = weights @ means
    cov = sum(w * (c + np.outer(m - mean, m - mean)) for w, m, c in zip(weights, means, covs))
    prior = {"log_weights": np.log(weights).astype(np.float32), "means": means.astype(np.float32),
             "scale_tril": tril.astype(np.float32)}
    draws = np.asarray(sample_mixture(prior, jax.random.key(0), 200_000), np.float64)
    assert np.abs(draws.mean(axis=0) - mean).max() < 0.03
    assert np.abs(np.cov(draws.T) - cov).max() < 0.05 * np.abs(cov).max()


@pytest.fixture(scope="module")
def vae_run(small_tiles, tmp_path_factory) -> Path:
    """A tiny conditional VAE trained briefly on real Østerbro and Kennesaw tiles."""
    from urbangen.training.tasks import train

    workdir = tmp_path_factory.mktemp("runs") / "vae"
    train(load_config("vae", dataset=str(small_tiles), num_steps=30, eval_every=30, sample_every=0,
                      log_every=30), workdir)
    return workdir


def test_a_generator_samples_its_latents_from_the_prior_it_carries(vae_run, small_tiles):
    """A prior that is a point at one training tile's posterior mean makes every sample decode that latent."""
    from data_pipeline.dataset import open_dataset
    from urbangen.inference import load_run
    from urbangen.latent_prior import with_latent_prior

    run = load_run(vae_run, "latest")
    data = open_dataset(small_tiles)
    columns = [data.parameter_names.index(p) for p in run.spec.parameter_names]
    z_params = run.spec.scaler.transform(data.parameters(np.arange(1))[:, columns])
    mu = run.encode_tiles(data.read_tiles(np.arange(1)), z_params)
    d = mu.shape[1]
    point = {"log_weights": np.zeros(1, np.float32), "means": mu.astype(np.float32),
             "scale_tril": np.zeros((1, d, d), np.float32)}
    maps = np.broadcast_to(z_params[:, None, None, :], (4, 64, 64, z_params.shape[1])).astype(np.float32)
    drawn = with_latent_prior(run, point).generate_tiles(maps, jax.random.key(1))
    decoded = np.asarray(run.fn("decode")(mu.repeat(4, axis=0), maps.mean(axis=(1, 2))))
    np.testing.assert_allclose(drawn, decoded, atol=1e-6)
    # Without it, the same key draws from N(0, I): other layouts.
    assert np.abs(run.generate_tiles(maps, jax.random.key(1)) - decoded).mean() > 1e-3


def test_export_fits_the_prior_to_the_training_tiles_and_the_file_carries_it(vae_run, tmp_path):
    from typer.testing import CliRunner

    from urbangen.cli import app
    from urbangen.inference import LATENT_PRIOR, load_run
    from urbangen.pretrained import read_model

    out = tmp_path / "vae.msgpack"
    result = CliRunner().invoke(app, ["export", str(vae_run), str(out), "--latent-prior", "2"])
    assert result.exit_code == 0, result.output
    assert "2-component latent prior" in result.output
    model = read_model(out)
    prior = model.variables[LATENT_PRIOR]
    d = load_run(vae_run, "latest").spec.config["vae"]["latent_dim"]
    assert prior["means"].shape == (2, d) and prior["scale_tril"].shape == (2, d, d)
    np.testing.assert_allclose(np.exp(prior["log_weights"]).sum(), 1.0, atol=1e-5)
    # Lower-triangular with a positive diagonal: Cholesky factors of covariances.
    assert np.all(np.triu(prior["scale_tril"], k=1) == 0) and np.all(np.diagonal(prior["scale_tril"], axis1=1,
                                                                                  axis2=2) > 0)
    # --latent-prior 0: sampled from N(0, I), as a run folder is.
    bad = CliRunner().invoke(app, ["export", str(vae_run), str(tmp_path / "x.msgpack"), "--latent-prior", "0"])
    assert bad.exit_code == 0 and LATENT_PRIOR not in read_model(tmp_path / "x.msgpack").variables


def test_a_model_files_prior_is_refitted_with_more_components_than_their_tiles_fill(vae_run, small_tiles,
                                                                                    tmp_path):
    """``urbangen export`` on a model file refits its prior, with so many components that each holds fewer
    training latents than the latent has dimensions (the shipped street stage's 64 over 2534 tiles, 128-d),
    so their covariances are singular. The mixture's mean is, as after any EM step, the training latents'
    mean (float64 NumPy), and the file's run spec records the components."""
    from typer.testing import CliRunner

    from data_pipeline.dataset import open_dataset
    from urbangen.cli import app
    from urbangen.inference import LATENT_PRIOR
    from urbangen.pretrained import read_model
    from urbangen.splits import check_split

    plain = tmp_path / "plain.msgpack"
    assert CliRunner().invoke(app, ["export", str(vae_run), str(plain), "--latent-prior", "0"]).exit_code == 0
    model = read_model(plain)
    data = open_dataset(small_tiles)
    rows = check_split(model.spec.split, data.tiles).train
    columns = [data.parameter_names.index(p) for p in model.spec.parameter_names]
    latents = np.asarray(model.encode_tiles(data.read_tiles(rows),
                                            model.spec.scaler.transform(data.parameters(rows)[:, columns])),
                         np.float64)
    d = latents.shape[1]
    k = len(rows) // (d // 2)  # about d / 2 latents a component
    assert 2 <= k and len(rows) / k < d

    out = tmp_path / "refitted.msgpack"
    result = CliRunner().invoke(app, ["export", str(plain), str(out), "--latent-prior", str(k),
                                      "--dataset", str(small_tiles)])
    assert result.exit_code == 0, result.output
    refitted = read_model(out)
    prior = refitted.variables[LATENT_PRIOR]
    assert prior["means"].shape == (k, d)
    assert refitted.spec.config["vae"]["latent_prior_components"] == k
    weights = np.exp(np.asarray(prior["log_weights"], np.float64))
    np.testing.assert_allclose(weights @ np.asarray(prior["means"], np.float64), latents.mean(axis=0), atol=1e-3)
    assert np.all(np.isfinite(np.asarray(prior["scale_tril"])))
