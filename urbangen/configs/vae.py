"""Conditional VAE over layout tiles.

``:unconditional`` ignores the parameters (the latent must hold everything);
``:test`` is a tiny variant for CPU tests, ``:quickstart`` the same model trained
for ``urbangen quickstart``.
"""

import ml_collections

from urbangen.training.config import base_config, use_quickstart_schedule, use_test_schedule


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = base_config()
    c.model = "vae"
    c.batch_size = 32
    c.num_steps = 20_000
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 500
    c.optim.decay_fraction = 0.2
    c.optim.grad_clip_norm = 1.0

    c.vae = ml_collections.ConfigDict()
    c.vae.features = (32, 64, 128, 256, 256)  # one stride-2 level each: 256 px -> 8 x 8
    c.vae.latent_dim = 32
    c.vae.conditional = True
    c.vae.beta = 1.0
    c.vae.kl_warmup_steps = 2_000  # beta ramps up linearly from 0 (avoids posterior collapse early on)

    variants = variant.split(",") if variant else []
    for v in variants:
        if v == "unconditional":
            c.vae.conditional = False
        elif v in ("test", "quickstart"):
            use_test_schedule(c)
            c.optim.warmup_steps = 5
            c.vae.features = (16, 32, 32)
            c.vae.latent_dim = 8
            c.vae.kl_warmup_steps = 20
            if v == "quickstart":
                use_quickstart_schedule(c, num_steps=600, batch_size=16)
                c.vae.kl_warmup_steps = 100
        else:
            raise ValueError(f"unknown vae config variant {v!r}")
    return c
