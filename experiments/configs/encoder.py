"""The encoder experiment config, for `experiments/train.py --config experiments/configs/encoder.py[:VARIANT]`.

It lives in the package (:mod:`urbangen.configs.encoder`), so that an installed urbangen has it too.
"""

from urbangen.configs.encoder import get_config  # noqa: F401
