"""pix2pix: parameter maps (and optionally given layout channels) to layouts.

``--config experiments/configs/pix2pix.py`` is the paper's setting at 256 px;
``--config experiments/configs/pix2pix.py:test`` is a tiny variant for CPU
tests, ``:quickstart`` the same model trained for ``urbangen quickstart``; ``:streets_to_buildings`` generates buildings
around a given street network.
"""

import ml_collections

from urbangen.training.config import base_config, use_quickstart_schedule, use_test_schedule


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = base_config()
    c.model = "pix2pix"
    c.batch_size = 4
    c.num_steps = 20_000
    c.optim.learning_rate = 2e-4
    c.optim.b1 = 0.5  # Isola et al. 2017
    c.optim.decay_fraction = 0.5  # constant, then linear decay to 0 (100 + 100 epochs in the paper)

    c.pix2pix = ml_collections.ConfigDict()
    c.pix2pix.input_channels = ()  # layout channels given to the generator
    c.pix2pix.output_channels = ()  # () = every channel that is not an input
    c.pix2pix.ngf = 64
    c.pix2pix.ndf = 64
    c.pix2pix.d_layers = 3  # 3 = 70x70 PatchGAN
    c.pix2pix.dropout = 0.5
    c.pix2pix.upsample = "subpixel"  # or "transpose" (see urbangen.models.layers.Upsample2x)
    c.pix2pix.gan_loss = "vanilla"  # or "lsgan"
    c.pix2pix.lambda_l1 = 100.0

    if variant == "streets_to_buildings":
        c.pix2pix.input_channels = ("major_roads", "minor_roads", "cycle_foot")
        c.pix2pix.output_channels = ("buildings",)
    elif variant in ("test", "quickstart"):
        use_test_schedule(c)
        c.pix2pix.ngf = 8
        c.pix2pix.ndf = 8
        if variant == "quickstart":
            use_quickstart_schedule(c, num_steps=150, batch_size=8)
    elif variant:
        raise ValueError(f"unknown pix2pix config variant {variant!r}")
    return c
