"""A learned prior for a VAE's latents: a Gaussian mixture fitted to its training tiles' posterior means.

A VAE trained with a small KL weight keeps more of each tile in its latent,
and decodes sharper, but its latents then no longer fill N(0, I): decoding
draws from N(0, I) lands in the holes between them. The two-stage recipe
(Dai & Wipf 2019; Ghosh et al. 2020, "ex-post density estimation") fits a
second, simple density to where the training tiles' latents lie, and samples
from that. Here it is a Gaussian mixture with full covariances
(``sklearn.mixture.GaussianMixture``), stored in the model's variables under
:data:`urbangen.inference.LATENT_PRIOR`, so that a model file carries it and
every sampler uses it (:func:`urbangen.inference.sample_mixture`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from data_pipeline.dataset import open_dataset
from data_pipeline.errors import InvalidValueError, RunSpecError
from urbangen.inference import LATENT_PRIOR, TrainedModel
from urbangen.splits import check_split

#: Added to the diagonal of each component's covariance. A component of a mixture with many components holds
#: fewer training latents than the latent has dimensions (64 components over the street stage's 2534 tiles,
#: 128-d), so its covariance is singular: at sklearn's default (1e-6) its draws keep to the span of those few
#: latents, and a fit in float32 fails to factor it. 1e-3 is small beside the posteriors' own variance (the
#: street stage's: 0.03 at the median); the street stage's samples measured alike at both (street alignment's
#: W1, six draws of 96 validation requests: 3.0 x the floor at 1e-3, 3.1 x at 1e-6).
REG_COVAR = 1e-3


def fit_latent_prior(model: TrainedModel, dataset: str | Path | None = None, components: int = 4, *,
                     seed: int = 0, batch: int = 256) -> dict[str, np.ndarray]:
    """A Gaussian mixture over the posterior means of ``model``'s training tiles.

    Parameters
    ----------
    model
        A VAE run (``kind`` vae) that recorded its split.
    dataset
        The dataset it was trained on (default: the one its run spec names).
    components
        Mixture components, each with a full covariance.
    seed
        Seed of the mixture's initialisation.

    Returns
    -------
    dict
        ``log_weights`` (k,), ``means`` (k, d), ``scale_tril`` (k, d, d): the
        Cholesky factors of the covariances, float32.

    Raises
    ------
    RunSpecError
        If the model is not a VAE or recorded no split.
    InvalidValueError
        If ``components`` is below 1 or above the number of training tiles.
    """
    from sklearn.mixture import GaussianMixture

    spec = model.spec
    if spec.kind != "vae":
        raise RunSpecError(f"{spec.workdir} is a {spec.kind} run: only a VAE has latents to fit a prior to")
    if spec.split is None:
        raise RunSpecError(f"{spec.workdir} records no split: its training tiles are unknown")
    data = open_dataset(dataset or spec.dataset)
    rows = check_split(spec.split, data.tiles).train
    if not 1 <= components <= len(rows):
        raise InvalidValueError(f"components must lie in [1, {len(rows)}] (the training tiles), got {components}")
    columns = [data.parameter_names.index(p) for p in spec.parameter_names]
    means = np.concatenate([
        model.encode_tiles(data.read_tiles(rows[i:i + batch]),
                           spec.scaler.transform(data.parameters(rows[i:i + batch])[:, columns]))
        for i in range(0, len(rows), batch)])
    mixture = GaussianMixture(components, covariance_type="full", random_state=seed, reg_covar=REG_COVAR)
    mixture.fit(means.astype(np.float64))
    return {"log_weights": np.log(mixture.weights_).astype(np.float32),
            "means": mixture.means_.astype(np.float32),
            "scale_tril": np.linalg.cholesky(mixture.covariances_).astype(np.float32)}


def with_latent_prior(model: TrainedModel, prior: dict[str, np.ndarray]) -> TrainedModel:
    """``model`` sampling its latents from ``prior`` (see :func:`fit_latent_prior`); its run spec's config
    records the prior's number of components (``vae.latent_prior_components``)."""
    config = dict(model.spec.config)
    config["vae"] = {**config.get("vae", {}), "latent_prior_components": int(len(prior["means"]))}
    return replace(model, spec=model.spec.model_copy(update={"config": config}),
                   variables={**model.variables, LATENT_PRIOR: prior})
