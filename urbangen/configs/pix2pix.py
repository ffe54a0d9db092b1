"""pix2pix: parameter maps (and optionally given layout channels) to layouts.

``--config experiments/configs/pix2pix.py`` is the paper's setting at 256 px;
``--config experiments/configs/pix2pix.py:test`` is a tiny variant for CPU
tests, ``:quickstart`` the same model trained for ``urbangen quickstart``; ``:streets_to_buildings`` generates buildings
around a given street network.
"""

import ml_collections

from data_pipeline.errors import InvalidValueError
from urbangen.configs._base import base_config, use_quickstart_schedule, use_test_schedule


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
    c.pix2pix.d_lr_scale = 1.0  # the discriminator's learning rate over the generator's
    c.pix2pix.d_norm = "batch"  # or "none": the discriminator's normalization (pix2pix: batch)
    # A latent map as the generator's noise source, trained as in BicycleGAN (urbangen.training.pix2pix).
    c.pix2pix.latent_channels = 0  # 0 = none: dropout is the only noise, as in pix2pix
    c.pix2pix.latent_stride = 8  # tile pixels per latent cell, along each side
    c.pix2pix.nef = 32  # latent encoder filters
    c.pix2pix.lambda_kl = 0.01
    c.pix2pix.lambda_latent = 0.5
    c.pix2pix.latent_upsample = "nearest"  # or "bilinear": latent cells to pixels (see upsample_latent)
    # "mask": output channels are 0/1 layers; "proximity": fields exp(-d / 1.5 px) of the distance d to
    # them, decoded into lines (urbangen.proximity).
    c.pix2pix.target = "mask"

    if variant in ("city_streets", "city_streets_proximity", "city_buildings", "city_streets_test",
                   "city_buildings_test"):
        _city_stage(c, variant)
    elif variant == "city_buildings_256":
        _city_stage(c, "city_buildings")
        _at_2m(c)
    elif variant == "streets_to_buildings":
        c.pix2pix.input_channels = ("major_roads", "minor_roads", "cycle_foot")
        c.pix2pix.output_channels = ("buildings",)
    elif variant in ("test", "quickstart"):
        use_test_schedule(c)
        c.pix2pix.ngf = 8
        c.pix2pix.ndf = 8
        if variant == "quickstart":
            use_quickstart_schedule(c, num_steps=150, batch_size=8)
    elif variant:
        raise InvalidValueError(f"unknown pix2pix config variant {variant!r}")
    return c


#: What each stage of the shipped two-stage generator is conditioned on.
STREET_PARAMETERS = ("intersection_density_per_km2", "dead_end_share", "orientation_entropy", "major_road_share",
                     "cycle_foot_share", "minor_road_density_km_per_km2", "major_road_density_km_per_km2",
                     "cycle_foot_density_km_per_km2")
BUILDING_PARAMETERS = ("building_coverage", "buildings_per_ha", "mean_footprint_m2", "open_space_share",
                       "water_share")


def _city_stage(c: ml_collections.ConfigDict, variant: str) -> None:
    """The two stages of the shipped generator, on the offline city set at 4 m/px, 64 px.

    ``city_streets`` draws a street network from street parameters and a
    latent map (every source, streets-only ones included), as 0/1 layers;
    ``city_streets_proximity`` as proximity fields (see ``_proximity_streets``);
    ``city_buildings`` draws buildings, open space and water around a street
    network (sources whose buildings were mapped). Both are BicycleGAN-style
    (LSGAN, lambda_L1 10), sized to train within an hour on two CPU cores.
    """
    c.dataset = "data/offline_city_set"
    c.batch_size = 16
    c.num_steps = 6000
    c.eval_every = 500
    c.eval_batches = 4
    c.sample_every = 500
    c.log_every = 50
    c.early_stopping_patience = 0  # a GAN's validation L1 does not say when its samples are best
    c.pix2pix.ngf = 32
    c.pix2pix.ndf = 32
    c.pix2pix.dropout = 0.0
    c.pix2pix.gan_loss = "lsgan"
    c.pix2pix.lambda_l1 = 10.0
    c.pix2pix.latent_channels = 8
    street_channels = ("major_roads", "minor_roads", "cycle_foot")
    if variant.startswith("city_streets"):
        c.parameters = STREET_PARAMETERS
        c.pix2pix.output_channels = street_channels
        if variant.startswith("city_streets_proximity"):
            _proximity_streets(c)
    else:
        c.parameters = BUILDING_PARAMETERS
        c.buildings_known_only = True
        c.pix2pix.ngf = 16  # a quarter of the street stage's weights: both ship within the package's 40 MB
        c.pix2pix.input_channels = street_channels
        c.pix2pix.output_channels = ("buildings", "open_space", "water")
    if variant.endswith("_test"):
        use_test_schedule(c)
        c.pix2pix.ngf = 8
        c.pix2pix.ndf = 8
        c.pix2pix.nef = 8


def _at_2m(c: ml_collections.ConfigDict) -> None:
    """The building stage at 2 m/px in 256 px (512 m) tiles, for a GPU (``buildings-256``).

    Trained on the extracts whose buildings were mapped, tiles every 128 px,
    split by ``city-64``'s regions so that neither model trains on ground the
    other holds out. ngf 8 (8 downsamplings to 1 x 1, 3.1 MB as float16) keeps
    the package's models within 40 MB; latent cells of 16 px cover the 32 m
    the 4 m/px stage's 8 px do.
    """
    c.dataset = "data/offline_city_set_256"
    c.split_like = "city_buildings_64.msgpack"
    c.split_buffer_m = 256.0  # city-64's one-tile buffer
    c.pix2pix.ngf = 8
    c.pix2pix.ndf = 32
    c.pix2pix.latent_stride = 16
    c.batch_size = 32
    c.num_steps = 8000  # 4.4 minutes on one H200 (2026-12-04)
    c.eval_every = 1000
    c.sample_every = 2000
    c.log_every = 250
    c.keep_checkpoints = 8
    c.precision = "bfloat16"
    c.loader_threads = 8


def _proximity_streets(c: ml_collections.ConfigDict) -> None:
    """The street stage with proximity fields as its target: tried, not shipped.

    Thin lines as 0/1 masks gave fragments (``city_streets_64`` of 2026-11): as
    proximity fields a near miss earns partial credit, and smooth latent maps
    draw no cell-aligned pieces. After 4000 steps x 16 (57 minutes, 2 CPU cores)
    it drew a dense maze of short pieces: largest-component share 0.73 against
    real 0.80, but minor-road density 2.5x the request and intersection
    density's W1 5.9x its floor.
    """
    c.pix2pix.target = "proximity"
    c.pix2pix.latent_upsample = "bilinear"
    # With batch norm the discriminator sat at "cannot tell" (LSGAN loss 0.25) from step 100 on, blind
    # even to noise. Fresh discriminators trained 40 steps against that generator's blobs: with batch
    # norm (each of the real and fake batches normalized by its own statistics) they still could not
    # tell them apart, at 1x or 3x the learning rate; without a norm they could.
    c.pix2pix.d_norm = "none"
    c.pix2pix.d_lr_scale = 2.0
    c.num_steps = 4000
