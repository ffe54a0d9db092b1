"""Conditional VAE over layout tiles.

``:unconditional`` ignores the parameters (the latent must hold everything);
``:city_arterials`` draws the major roads of 1 km windows at 16 m/px, the first
stage of the shipped generator; ``:city_streets`` is a street stage for the shipped two-stage generator
(streets as proximity fields; pix2pix ``city_buildings`` draws the rest);
``:test`` is a tiny variant for CPU tests, ``:quickstart`` the same model trained
for ``urbangen quickstart``.
"""

import ml_collections

from data_pipeline.errors import InvalidValueError
from urbangen.configs._base import base_config, use_quickstart_schedule, use_test_schedule


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
    c.vae.output_channels = ()  # the layout channels it models; empty = all of the dataset's
    # "mask": Bernoulli likelihood of 0/1 layers; "proximity": of fields exp(-d / 1.5 px) of the distance
    # d to them (soft targets), decoded into lines by urbangen.proximity.
    c.vae.target = "mask"
    # Components of the Gaussian mixture that `urbangen export` fits to the training tiles' posterior means
    # and samples from instead of N(0, I) (urbangen.latent_prior); 0: none.
    c.vae.latent_prior_components = 0

    variants = variant.split(",") if variant else []
    for v in variants:
        if v == "unconditional":
            c.vae.conditional = False
        elif v == "city_streets":
            _city_streets(c)
        elif v == "city_streets_wide":
            _city_streets(c)
            _wide_latent(c)
        elif v == "city_arterials":
            _city_arterials(c)
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
            raise InvalidValueError(f"unknown vae config variant {v!r}")
    return c


def _city_streets(c: ml_collections.ConfigDict) -> None:
    """Streets alone, as proximity fields, at 64 px and 4 m/px on the offline city set.

    A global latent decodes into smooth fields whose ridges are continuous
    lines, where pix2pix's patch-by-patch fields drew fragments or a maze.
    """
    from urbangen.configs.pix2pix import STREET_PARAMETERS

    c.dataset = "data/offline_city_set"
    c.parameters = STREET_PARAMETERS
    c.vae.output_channels = ("major_roads", "minor_roads", "cycle_foot")
    c.vae.target = "proximity"
    c.vae.features = (32, 64, 128, 256)  # 64 px -> 4 x 4
    c.vae.latent_dim = 32
    c.num_steps = 5000  # 0.7 s a step of 32 on two CPU cores: about an hour
    c.eval_every = 1000
    c.sample_every = 1000
    c.log_every = 100


def _wide_latent(c: ml_collections.ConfigDict) -> None:
    """A latent that can hold a street network: 128 dimensions at a quarter of the KL weight.

    At beta 1 the 32-d street VAE keeps about 70 nats per tile, too few for a
    network: its reconstructions of held-out tiles score KID 0.31 on the
    street channels against a floor of 0.07 (2026-12-01). With more room the
    aggregate posterior no longer matches N(0, I), so samples are drawn from a
    Gaussian mixture fitted to it after training (the two-stage recipe of Dai
    & Wipf 2019 and Ghosh et al. 2020; :mod:`urbangen.latent_prior`).
    """
    c.vae.latent_dim = 128
    c.vae.beta = 0.25
    # 64 components, not 4: the street stage's samples kept a grid as its reconstructions do (street alignment's
    # W1 on 96 validation tiles, six draws: 5.2 x the floor at 4 components, 3.7 x at 32, 3.0 x at 64, 2.8 x at
    # 96; reconstructions from posterior means 2.6 x), and came no nearer the training tiles than held-out
    # tiles are (best street IoU with any training tile 0.26 at 64, held-out real 0.25, reconstructions 0.28).
    c.vae.latent_prior_components = 64
    # The shipped stage (2026-12-03): 0.65 s a step of 32 on a 2-core AMD EPYC CPU, an hour. (The one before
    # it took 9000 steps in 58 min on a faster machine of the same kind.)
    c.num_steps = 5500



#: What the arterial stage is conditioned on: how much major road, and how dense the network it serves.
ARTERIAL_PARAMETERS = ("major_road_density_km_per_km2", "major_road_share", "intersection_density_per_km2")


def _city_arterials(c: ml_collections.ConfigDict) -> None:
    """Major roads alone, as proximity fields, over 1 km at 16 m/px (64 px).

    A 256 m street tile cannot see where a major road goes: stitched from such
    tiles, 2 x 2 km layouts drew major roads in pieces (0.017 of their major-road
    pixels in pieces reaching 500 m, real 1 km mosaics 0.96). This stage draws
    them over a window four times as wide, on windows of the generator's training
    tiles (``scripts/build_arterial_set.py``: 261 windows, every tile offset;
    203 train, 18 validation, 40 dropped where they overlap windows of the other
    split). A small latent at half the KL weight: the windows are few, and a
    major-road net of 1 km is a handful of lines.
    """
    c.dataset = "data/offline_arterials"
    c.parameters = ARTERIAL_PARAMETERS
    c.vae.output_channels = ("major_roads",)
    c.vae.target = "proximity"
    c.vae.features = (16, 32, 64, 128)  # 64 px -> 4 x 4
    c.vae.latent_dim = 32
    c.vae.beta = 0.5
    c.vae.latent_prior_components = 4
    c.val_fraction = 0.1
    c.test_fraction = 0.0  # the bar's test ground is the finer dataset's; none of it is in these windows
    c.split_buffer_m = 1.0  # windows of different splits may not overlap (they are cut at every tile offset)
    c.batch_size = 32
    c.num_steps = 5000  # about 0.25 s a step of 32 on two CPU cores
    c.eval_every = 1000
    c.sample_every = 1000
    c.log_every = 100
