"""Benchmark: the full pix2pix train step (D step, then G step) in JAX against PyTorch.

Images per second at 256 px for batch 4 and 16, for our step
(:class:`urbangen.training.pix2pix.Pix2PixTask`, jit-compiled) and for the
same architecture, losses and optimizer in PyTorch (``torch_pix2pix.py``),
measured in the same run on the same machine; prints the ratios. Also
measures PyTorch with the reference implementation's transposed-convolution
decoder, so both comparisons are on the record. Target: at least 1.2x the
reference's images per second. The step's FLOP rate (XLA's cost analysis of
the lowered step, over the step's time) is printed as a share of the device's measured peak, a
jit-compiled 2048 x 2048 float32 matrix product timed in the same run. Inputs are random binary
layouts with 14 condition maps and 6 output channels: dense convolutions
cost the same whatever the pixels are.

    pip install -e ".[bench]"     # torch==2.13.0 (a CPU wheel here)
    python benchmarks/bench_train.py [--batch 4 16] [--steps 3]

On a GPU (JAX with CUDA and a CUDA torch), pass ``--precision bfloat16`` to
time mixed precision, PyTorch's in ``torch.autocast``; MFU is reported against
a jit-compiled 8192 x 8192 bf16 matrix product timed in the same run, and
against ``--peak-tflops`` where given. Results go to ``train_gpu.json``.

``--loader`` times instead whether the input pipeline keeps up: the same step fed
by the real Grain loader (reading zarr tiles, augmenting, standardizing, in
``loader_threads`` threads ahead of the step) against the step on one batch
already on the device, in the same run. Target: within 10 %. The dataset is
``--dataset DIR``, else Østerbro and Lyngby built at 256 px and 2 m/px from
``URBANGEN_OSM_DIR`` into a temporary folder.

    python benchmarks/bench_train.py --loader [--batch 4 16] [--steps 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    accelerator_bf16_peak,
    backend_results_name,
    lowered_flops,
    matmul_peak_flops,
    write_results,
)

#: The train step's target: images per second against the reference PyTorch pix2pix (ConvTranspose decoder).
TARGET_VS_REFERENCE = 1.2
CHANNELS = ["buildings", "major_roads", "minor_roads", "cycle_foot", "open_space", "water"]
N_PARAMS = 14


def jax_step(batch: int, steps: int, precision: str, upsample: str = "subpixel") -> dict:
    import jax
    import jax.numpy as jnp

    from urbangen.configs import experiment_config
    from urbangen.training.pix2pix import Pix2PixTask

    config = experiment_config("pix2pix")
    config.precision = precision
    config.pix2pix.upsample = upsample
    spec = {"channels": CHANNELS, "tile_px": 256, "parameters": [f"p{i}" for i in range(N_PARAMS)],
            "meters_per_pixel": 2.0}
    task = Pix2PixTask(config, spec)
    state = task.initial_state(jax.random.key(0))
    rng = np.random.default_rng(0)
    data = {"tile": jnp.asarray(rng.integers(0, 2, (batch, 256, 256, len(CHANNELS)), dtype=np.uint8)),
            "params": jnp.asarray(rng.normal(size=(batch, N_PARAMS)).astype(np.float32))}
    lowered = jax.jit(task.train_step, donate_argnums=0).lower(state, data)
    flops = lowered_flops(lowered)
    compiled = lowered.compile()
    tic = time.perf_counter()
    state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - tic
    tic = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - tic) / steps
    return {"img_per_s": batch / seconds, "step_s": seconds, "first_step_s": first, "flops_per_step": flops,
            "device": str(jax.devices()[0].device_kind), "loss_finite": bool(np.isfinite(float(metrics["g_loss"])))}


def torch_step(batch: int, steps: int, upsample: str, precision: str = "float32") -> dict:
    """PyTorch's images per second, on CUDA where there is one; ``bfloat16`` is its own mixed precision
    (``torch.autocast``, float32 weights), as the GPU rows compare."""
    import torch

    from benchmarks.torch_pix2pix import Pix2PixStep, device_and_precision, run_and_wait

    device, autocast = device_and_precision(precision)
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    step = Pix2PixStep(N_PARAMS, len(CHANNELS), 256, upsample=upsample, device=device)
    cond = torch.randn(batch, N_PARAMS, 256, 256, device=device)
    real = torch.randint(0, 2, (batch, len(CHANNELS), 256, 256), device=device).float() * 2 - 1

    def one_step() -> None:
        with autocast:
            step(cond, real)

    run_and_wait(one_step, 1 if device == "cpu" else 3, device)  # warm-up (oneDNN primitives; cuDNN's search)
    tic = time.perf_counter()
    run_and_wait(one_step, steps, device)
    seconds = (time.perf_counter() - tic) / steps
    return {"img_per_s": batch / seconds, "step_s": seconds, "threads": torch.get_num_threads(),
            "version": torch.__version__, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "precision": precision}


def loader_step(dataset: str, batch: int, steps: int, threads: int, prefetch: int,
                precision: str = "float32") -> dict:
    """Images per second of the pix2pix step fed by the training loader, and on a batch kept on the device."""
    import grain
    import jax

    from urbangen.configs import experiment_config
    from urbangen.training.data import TrainingData
    from urbangen.training.pix2pix import Pix2PixTask

    config = experiment_config("pix2pix", precision=precision)
    data = TrainingData.open(dataset)
    task = Pix2PixTask(config, data.spec)
    state = task.initial_state(jax.random.key(0))
    batches = data.batches("train", batch, seed=0, training=True)
    on_device = jax.device_put(batches[0])
    compiled = jax.jit(task.train_step, donate_argnums=0).lower(state, on_device).compile()
    state, metrics = compiled(state, on_device)
    jax.block_until_ready(metrics)

    def timed(feed) -> float:
        nonlocal state, metrics
        tic = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, feed())
        jax.block_until_ready(metrics)
        return (time.perf_counter() - tic) / steps

    alone_s = timed(lambda: on_device)
    stream = iter(batches[1:].to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch)))
    next(stream)  # the threads start; the first batches' reads are not the steady state
    fed_s = timed(lambda: jax.device_put(next(stream)))
    return {"batch": batch, "step_alone_s": alone_s, "step_with_loader_s": fed_s,
            "img_per_s_alone": batch / alone_s, "img_per_s_with_loader": batch / fed_s,
            "loader_slowdown": fed_s / alone_s - 1.0, "loader_threads": threads, "loader_prefetch": prefetch,
            "precision": precision, "device": str(jax.devices()[0].device_kind),
            "tiles_in_train_split": len(data.train_indices)}


def _loader_dataset(tmp: str) -> str:
    from data_pipeline.build import CitySpec, build_dataset
    from data_pipeline.config import TilingConfig
    from urbangen.settings import osm_file

    cities = [CitySpec("osterbro", osm_file=str(osm_file("copenhagen/osterbro_osm_bbox.osm.xml.gz"))),
              CitySpec("lyngby", osm_file=str(osm_file("copenhagen_lyngby/lyngby_osm_bbox.osm.xml.gz")))]
    return str(build_dataset(cities, Path(tmp) / "loader", TilingConfig(stride_px=128)).path)


def main_loader(args) -> None:
    import tempfile

    from urbangen.configs._base import base_config

    defaults = base_config()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or _loader_dataset(tmp)
        for batch in args.batch:
            row = loader_step(dataset, batch, args.steps, args.loader_threads or defaults.loader_threads,
                              defaults.loader_prefetch, args.precision[0])
            rows.append(row)
            print(f"batch {batch:3d} {args.precision[0]}  step alone {row['img_per_s_alone']:.2f} img/s  "
                  f"with the loader "
                  f"{row['img_per_s_with_loader']:.2f} img/s  ({row['loader_slowdown']:+.1%}; target within 10 %)",
                  flush=True)
    path = write_results(backend_results_name("train_loader"),
                         {"target": "step with the loader within 10 % of the step alone", "rows": rows})
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for MFU (bf16 dense)")
    parser.add_argument("--loader", action="store_true", help="time the step fed by the real loader instead")
    parser.add_argument("--dataset", help="dataset for --loader (default: built from URBANGEN_OSM_DIR)")
    parser.add_argument("--loader-threads", type=int, default=0,
                        help="the loader's threads for --loader (default: the config's, loader_threads)")
    args = parser.parse_args()
    if args.loader:
        main_loader(args)
        return

    peak = matmul_peak_flops()
    print(f"measured peak: {peak['flops_per_s'] / 1e9:.0f} GFLOP/s (jit 2048 x 2048 float32 matmul)", flush=True)
    # On an accelerator, MFU is against the bf16 matrix product measured here too (and --peak-tflops, the
    # datasheet's figure, where given).
    peak_bf16 = accelerator_bf16_peak() if "bfloat16" in args.precision else None
    if peak_bf16:
        print(f"measured bf16 peak: {peak_bf16['flops_per_s'] / 1e12:.0f} TFLOP/s (jit 8192 x 8192 bf16 matmul)",
              flush=True)
    rows = []
    for batch in args.batch:
        for precision in args.precision:
            ref = {mode: torch_step(batch, args.steps, mode, precision) for mode in ("subpixel", "transpose")}
            ours = jax_step(batch, args.steps, precision)
            row = {"batch": batch, "precision": precision, "jax": ours, "torch_subpixel": ref["subpixel"],
                   "torch_transpose": ref["transpose"],
                   "ratio_vs_torch_same_architecture": ours["img_per_s"] / ref["subpixel"]["img_per_s"],
                   "ratio_vs_torch_reference_transpose": ours["img_per_s"] / ref["transpose"]["img_per_s"]}
            flop_rate = ours["flops_per_step"] / ours["step_s"]
            row["share_of_matmul_peak"] = flop_rate / peak["flops_per_s"]
            if peak_bf16 and precision == "bfloat16":
                row["mfu_of_measured_bf16_peak"] = flop_rate / peak_bf16["flops_per_s"]
            if args.peak_tflops:
                row["mfu"] = flop_rate / (args.peak_tflops * 1e12)
            rows.append(row)
            print(f"batch {batch:3d} {precision:8s}  JAX {ours['img_per_s']:.2f} img/s  "
                  f"PyTorch same arch {ref['subpixel']['img_per_s']:.2f}  "
                  f"(ratio {row['ratio_vs_torch_same_architecture']:.2f}x)  "
                  f"PyTorch reference ConvTranspose {ref['transpose']['img_per_s']:.2f} "
                  f"(ratio {row['ratio_vs_torch_reference_transpose']:.2f}x; target >= {TARGET_VS_REFERENCE}x)  "
                  f"{flop_rate / 1e9:.0f} GFLOP/s, "
                  f"{row['share_of_matmul_peak']:.0%} of the float32 matmul peak"
                  + (f"  MFU {row['mfu_of_measured_bf16_peak']:.1%} of the measured bf16 peak"
                     if "mfu_of_measured_bf16_peak" in row else "")
                  + (f"  MFU {row['mfu']:.1%} of {args.peak_tflops:.0f} TFLOP/s" if "mfu" in row else ""),
                  flush=True)
    path = write_results(backend_results_name("train"),
                         {"target": f"JAX >= {TARGET_VS_REFERENCE}x the reference PyTorch pix2pix's img/s",
                          "matmul_peak": peak, "matmul_peak_bf16": peak_bf16, "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
