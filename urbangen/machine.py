"""What machine a figure came from: CPU model, cores, Python, platform, accelerators."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def describe_machine(with_jax: bool = False) -> dict[str, Any]:
    """CPU model (from ``/proc/cpuinfo`` where there is one), core count, Python and platform.

    With ``with_jax``, also JAX's backend and device kinds (this initializes JAX).
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    if with_jax:
        import jax

        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = sorted({d.device_kind for d in jax.devices()})
        info["jax_device_count"] = jax.device_count()
    return info
