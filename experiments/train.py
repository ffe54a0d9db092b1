"""Train a model from a config file.

    python experiments/train.py --config experiments/configs/pix2pix.py \
        --config.dataset=data/helsinki --config.batch_size=8 --workdir runs/pix2pix

Running the same command again resumes from the latest checkpoint in
``--workdir``. The same script runs on one CPU, one GPU, all local devices
and, under ``jax.distributed``, many hosts.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from data_pipeline.errors import NonFiniteLossError
from urbangen.evaluators.in_training import conditioning
from urbangen.training.tasks import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (get_config)", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: checkpoints, metrics, samples")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
    try:
        summary = train(_CONFIG.value, _WORKDIR.value, val_scorers=(conditioning,))
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(3)
    print({k: v for k, v in summary.items()})


if __name__ == "__main__":
    app.run(main)
