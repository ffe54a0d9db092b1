"""Attention (ViT) encoder, trained without city labels.

Masked-patch reconstruction (MAE) plus prediction of the tile's urban-form
parameters; ``:mae`` or ``:params`` keeps one objective; ``:test`` is a tiny
variant for CPU tests, ``:quickstart`` the same model trained for ``urbangen quickstart``.
"""

import ml_collections

from data_pipeline.errors import InvalidValueError
from urbangen.configs._base import base_config, use_quickstart_schedule, use_test_schedule


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = base_config()
    c.model = "encoder"
    c.batch_size = 64
    c.num_steps = 20_000
    c.optim.learning_rate = 1.5e-4 * 64 / 256  # MAE's base rate scaled by batch / 256
    c.optim.b2 = 0.95
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 1_000
    c.optim.decay_fraction = 0.5

    c.encoder = ml_collections.ConfigDict()
    c.encoder.objective = "mae+params"
    c.encoder.patch = 16
    c.encoder.dim = 192
    c.encoder.depth = 6
    c.encoder.heads = 3
    c.encoder.decoder_dim = 128
    c.encoder.decoder_depth = 2
    c.encoder.mask_ratio = 0.75
    c.encoder.params_weight = 1.0

    for v in variant.split(",") if variant else []:
        if v in ("mae", "params"):
            c.encoder.objective = v
        elif v == "city":
            # The shipped encoder-64: the embedding the realism metrics use, on the offline city set.
            c.dataset = "data/offline_city_set"
            c.num_steps = 2000
            c.eval_every = 500
            c.sample_every = 0
            c.early_stopping_patience = 0
            c.optim.learning_rate = 5e-4
            c.optim.warmup_steps = 100
            c.encoder.patch = 8
            c.encoder.dim = 128
            c.encoder.depth = 4
            c.encoder.heads = 4
            c.encoder.decoder_dim = 64
            c.encoder.decoder_depth = 1
        elif v in ("test", "quickstart"):
            use_test_schedule(c)
            c.optim.learning_rate = 1e-3
            c.optim.warmup_steps = 5
            c.encoder.patch = 8
            c.encoder.dim = 64
            c.encoder.depth = 2
            c.encoder.heads = 2
            c.encoder.decoder_dim = 64
            c.encoder.decoder_depth = 1
            if v == "quickstart":
                use_quickstart_schedule(c, num_steps=150, batch_size=16)
        else:
            raise InvalidValueError(f"unknown encoder config variant {v!r}")
    return c
