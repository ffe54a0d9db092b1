"""The vae experiment config, for `experiments/train.py --config experiments/configs/vae.py[:VARIANT]`.

It lives in the package (:mod:`urbangen.configs.vae`), so that an installed urbangen has it too.
"""

from urbangen.configs.vae import get_config  # noqa: F401
