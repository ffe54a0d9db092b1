"""Helpers shared by the benchmarks: machine description and the results file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from urbangen.machine import describe_machine

__all__ = ["accelerator_bf16_peak", "backend_results_name", "lowered_flops", "machine", "matmul_peak_flops",
           "peak_rss_mb", "reset_peak_rss", "write_results"]

RESULTS_DIR = Path(__file__).parent / "results"


def peak_rss_mb() -> float:
    """:func:`data_pipeline.city.peak_rss_mb`, imported when asked: the timing benchmarks need no geo stack."""
    from data_pipeline.city import peak_rss_mb as peak

    return peak()


def reset_peak_rss() -> None:
    """:func:`data_pipeline.city.reset_peak_rss`, imported when asked."""
    from data_pipeline.city import reset_peak_rss as reset

    reset()


def machine() -> dict[str, Any]:
    """The machine, with JAX's devices where the benchmark imported JAX (a GPU run says which GPU)."""
    import sys

    return describe_machine(with_jax="jax" in sys.modules)


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), "machine": machine(), **results}
    path.write_text(json.dumps(payload, indent=2))
    return path


def matmul_peak_flops(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> dict[str, Any]:
    """The measured peak of this device: FLOP/s of a jit-compiled ``n`` x ``n`` matrix product (best of ``repeats``).

    A dense product is the fastest work XLA does on the device; a model's step
    is judged as a share of it (the issue's "share of the hardware's measured
    peak"), measured in the same run as the step.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.normal(size=(n, n)), dtype=dtype) for _ in range(2))
    product = jax.jit(jnp.matmul)
    jax.block_until_ready(product(a, b))
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        jax.block_until_ready(product(a, b))
        best = min(best, time.perf_counter() - tic)
    return {"n": n, "dtype": dtype, "seconds": best, "flops_per_s": 2.0 * n ** 3 / best,
            "device": str(jax.devices()[0].device_kind)}


def lowered_flops(lowered: Any) -> float:
    """FLOP of a lowered (not yet compiled) jit function, by XLA's cost analysis of its HLO; NaN where the
    backend gives none.

    Before compilation, not after: on a GPU the compiled module's convolutions are calls into cuDNN,
    which its cost analysis leaves out (a pix2pix step counted 3 % of its FLOP on an H200). On the CPU the
    lowered count is within 0.2 % of the compiled one; JAX 0.11.2's CUDA backend gave no lowered count
    (2026-12-04), so a GPU run's shares of the peak are NaN and its FLOP come from a CPU run of the same step.
    """
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    return flops if flops > 0 else float("nan")


def backend_results_name(name: str) -> str:
    """``name`` on a CPU, ``name_gpu`` (JAX's backend) on an accelerator: a GPU run keeps the CPU figures."""
    import jax

    backend = jax.default_backend()
    return name if backend == "cpu" else f"{name}_{backend}"


def accelerator_bf16_peak() -> dict[str, Any] | None:
    """On an accelerator, the measured peak of bf16 work (a jit 8192 x 8192 product) that MFU is against."""
    import jax

    return None if jax.default_backend() == "cpu" else matmul_peak_flops(n=8192, dtype="bfloat16")
