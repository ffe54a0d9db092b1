"""Evaluators run on the weights being trained, at each of a fit's evaluations (``fit(val_scorers=...)``)."""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from urbangen.training.data import TrainingData
from urbangen.training.loop import ValScorer


def conditioning(config: ml_collections.ConfigDict, data: TrainingData) -> ValScorer | None:
    """The conditioning evaluator on ``config.eval_conditioning_tiles`` validation tiles, or None when off.

    It scores the weights being trained through the same predict functions
    as ``urbangen evaluate`` (:func:`urbangen.inference.model_from_state`),
    on validation tiles: test tiles stay unseen until the reported evaluation.
    """
    n = int(config.get("eval_conditioning_tiles", 0))
    if not n or len(data.val_indices) == 0:
        return None
    # Imported here: measuring layouts needs the geo stack (rasterio, geopandas), which training with this
    # evaluator off (on a GPU host, say) does not.
    from urbangen.evaluators.common import read_real, sample_rows
    from urbangen.evaluators.conditioning import Conditioning
    from urbangen.inference import model_from_state

    rows = data.val_indices[sample_rows(len(data.val_indices), n, np.random.default_rng(config.seed))]
    real = read_real(data.dataset, rows, tuple(data.parameter_names))
    evaluator = Conditioning(real, seed=config.seed)

    def run(state, spec: dict[str, Any], step: int) -> dict[str, float]:
        model = model_from_state(config, spec, jax.device_get(state), step=step)
        if "generate" not in model.predict:
            return {}
        result = evaluator.run(model)
        out = {f"val_conditioning/r2/{name}": p["generated"]["r2"] for name, p in result["parameters"].items()
               if p["drawn"] and p["generated"]["r2"] is not None}
        out["val_conditioning/failure_rate"] = result["failure_rate"] or 0.0
        return out

    return run
