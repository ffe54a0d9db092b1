"""The pix2pix experiment config, for `experiments/train.py --config experiments/configs/pix2pix.py[:VARIANT]`.

It lives in the package (:mod:`urbangen.configs.pix2pix`), so that an installed urbangen has it too.
"""

from urbangen.configs.pix2pix import get_config  # noqa: F401
