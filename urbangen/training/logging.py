"""Run logging: a local ``metrics.jsonl`` always, Weights & Biases when enabled.

The W&B mode comes from ``config.wandb.mode`` when set, else from the
``WANDB_MODE`` environment variable, else ``disabled``. With W&B disabled
everything else (metrics file, sample PNGs, checkpoints) is unchanged.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np

from data_pipeline.atomic import write_text_atomic
from data_pipeline.errors import InvalidValueError
from urbangen.settings import wandb_mode_from_env

WandbMode = Literal["online", "offline", "disabled"]
WANDB_MODES: tuple[WandbMode, ...] = get_args(WandbMode)


def wandb_mode(config_mode: str | None) -> WandbMode:
    mode = config_mode or wandb_mode_from_env() or "disabled"
    if mode == "dryrun":  # W&B's old name for offline
        mode = "offline"
    if mode not in WANDB_MODES:
        raise InvalidValueError(f"wandb mode must be one of {WANDB_MODES}, got {mode!r}")
    return cast(WandbMode, mode)


class RunLogger:
    """Log scalars and images for one run in ``workdir``; only the main host writes.

    Parameters
    ----------
    workdir
        The run directory. ``metrics.jsonl`` and ``samples/`` go there, and
        W&B's own ``wandb/`` folder when enabled.
    config
        Logged as the run's config.
    wandb_settings
        ``mode``, ``project``, ``entity``, ``name``, ``tags`` (``config.wandb``).
    """

    def __init__(self, workdir: str | Path, config: dict[str, Any], wandb_settings: dict[str, Any] | None = None,
                 *, is_main: bool = True) -> None:
        self.workdir = Path(workdir)
        self.is_main = is_main
        self.run = None
        settings = dict(wandb_settings or {})
        self.mode = wandb_mode(settings.get("mode"))
        if not is_main:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.workdir / "metrics.jsonl"
        if self.mode != "disabled":
            import wandb

            id_file = self.workdir / "wandb_run_id"  # the same W&B run continues after a resume
            run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
            id_file.write_text(run_id)
            self.run = wandb.init(project=settings.get("project") or "urbangen", entity=settings.get("entity") or None,
                                  name=settings.get("name") or self.workdir.name, tags=list(settings.get("tags") or []),
                                  id=run_id, resume="allow", dir=str(self.workdir), mode=self.mode, config=config)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        clean = {k: float(v) for k, v in metrics.items()}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.run is not None:
            self.run.log(clean, step=step)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step``: a resumed run logs those steps again."""
        if self.is_main and self.metrics_path.exists():
            rows = [r for r in read_metrics(self.workdir) if r["step"] <= step]
            # Atomic: a kill during the rewrite must not lose the rows the resume keeps.
            write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    def log_image(self, step: int, key: str, image: np.ndarray, caption: str = "") -> Path | None:
        """Save an RGB uint8 image as ``samples/KEY_STEP.png`` and log it to W&B."""
        if not self.is_main:
            return None
        import matplotlib.image

        path = self.workdir / "samples" / f"{key.replace('/', '_')}_{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        matplotlib.image.imsave(path, image)
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(path), caption=caption)}, step=step)
        return path

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def read_metrics(workdir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.jsonl``.

    A last line cut short (the run was killed while appending it) is left out;
    the resumed run logs that step again.
    """
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        try:
            json.loads(lines[-1])
        except ValueError:
            lines.pop()
    return [json.loads(line) for line in lines if line.strip()]
