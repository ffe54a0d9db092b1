"""Benchmark: generation speed on CPU, against the same generator forward pass in PyTorch.

Prints tiles per second of pix2pix generation at 256 px (the paper-sized
U-Net, untrained weights: speed does not depend on them) after compilation,
for our jit-compiled generator and for the same architecture in PyTorch
(eval mode, no gradients) in the same run, and the seconds for a 2 x 2 km
stitched layout at 2 m/px (49 overlapping tiles blended), with and without
vectorizing and writing every output; and the same for the shipped generator's
trained output, and for per-pixel noise with that output's channel shares in its
place (the worst case for vectorizing: every pixel its own shape), each
against the shipped generator's layout time (``--shipped-only``: these alone,
without PyTorch).

    pip install -e ".[bench]"
    python benchmarks/bench_generate.py [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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
from benchmarks.bench_train import CHANNELS, N_PARAMS  # noqa: E402


def make_generator(precision: str = "float32"):
    import jax

    from urbangen.conditioning import ParameterScaler
    from urbangen.configs import experiment_config
    from urbangen.inference import model_from_state
    from urbangen.training.pix2pix import Pix2PixTask

    config = experiment_config("pix2pix", precision=precision)
    names = ["building_coverage", "buildings_per_ha", "mean_footprint_m2", "intersection_density_per_km2",
             "walk_network_density_km_per_km2", "major_road_density_km_per_km2", "minor_road_density_km_per_km2",
             "cycle_foot_density_km_per_km2", "cycle_foot_share", "major_road_share", "orientation_entropy",
             "dead_end_share", "open_space_share", "water_share"][:N_PARAMS]
    scaler = ParameterScaler(tuple(names), (0.0,) * len(names), (1.0,) * len(names))
    spec = {"channels": CHANNELS, "tile_px": 256, "parameters": names, "meters_per_pixel": 2.0,
            "scaler": scaler.to_dict()}
    task = Pix2PixTask(config, spec)
    state = task.initial_state(jax.random.key(0))
    return model_from_state(config, spec, jax.device_get(state))


def jax_tiles_per_s(gen, batch: int, repeats: int) -> tuple[float, float]:
    """Tiles per second of the jit-compiled generator, and its FLOP per tile (XLA's cost analysis)."""
    import jax
    import jax.numpy as jnp

    fn = gen.fn("generate")
    cond = jnp.asarray(np.random.default_rng(0).normal(size=(batch, 256, 256, N_PARAMS)).astype(np.float32))
    flops_per_tile = lowered_flops(jax.jit(fn).lower(cond, jax.random.key(0))) / batch
    jax.block_until_ready(fn(cond, jax.random.key(0)))
    tic = time.perf_counter()
    for r in range(repeats):
        out = fn(cond, jax.random.key(r))
    jax.block_until_ready(out)
    return batch * repeats / (time.perf_counter() - tic), flops_per_tile


def torch_tiles_per_s(batch: int, repeats: int, precision: str = "float32") -> float:
    """The same generator's forward pass in PyTorch, on CUDA where there is one (``bfloat16``: autocast)."""
    import torch

    from benchmarks.torch_pix2pix import Pix2PixStep, device_and_precision, run_and_wait

    device, autocast = device_and_precision(precision)
    step = Pix2PixStep(N_PARAMS, len(CHANNELS), 256, device=device)
    generator = step.G.eval()
    for m in generator.modules():  # pix2pix keeps dropout on when generating
        if isinstance(m, torch.nn.Dropout):
            m.train()
    cond = torch.randn(batch, N_PARAMS, 256, 256, device=device).to(memory_format=step.memory_format)
    with torch.no_grad(), autocast:
        run_and_wait(lambda: generator(cond), 1 if device == "cpu" else 3, device)
        tic = time.perf_counter()
        run_and_wait(lambda: generator(cond), repeats, device)
    return batch * repeats / (time.perf_counter() - tic)


def main_tiles(args) -> None:
    """Tiles per second alone (no stitched layout, no outputs): the accelerator's figures."""

    peak = matmul_peak_flops()
    peak_bf16 = accelerator_bf16_peak()
    rows = []
    for precision in args.precision:
        ours, flops_per_tile = jax_tiles_per_s(make_generator(precision), args.batch, args.repeats)
        ref = torch_tiles_per_s(args.batch, args.repeats, precision)
        row = {"precision": precision, "batch": args.batch, "jax_tiles_per_s": ours, "torch_tiles_per_s": ref,
               "ratio": ours / ref, "flops_per_tile": flops_per_tile,
               "share_of_matmul_peak": ours * flops_per_tile / peak["flops_per_s"]}
        if peak_bf16:
            row["share_of_bf16_matmul_peak"] = ours * flops_per_tile / peak_bf16["flops_per_s"]
        rows.append(row)
        print(f"generation, 256 px, batch {args.batch}, {precision}: JAX {ours:.1f} tiles/s, PyTorch same "
              f"architecture {ref:.1f} tiles/s (ratio {ours / ref:.2f}x); {flops_per_tile / 1e9:.1f} GFLOP a tile, "
              f"{row['share_of_matmul_peak']:.0%} of the float32 matmul peak"
              + (f", {row['share_of_bf16_matmul_peak']:.0%} of the bf16 one" if peak_bf16 else ""), flush=True)
    path = write_results(backend_results_name("generate_tiles"),
                         {"matmul_peak": peak, "matmul_peak_bf16": peak_bf16, "rows": rows})
    print(f"results: {path}")


def stitched_seconds(gen) -> dict:
    import jax

    from urbangen.generate.request import parse_request
    from urbangen.generate.run import generate
    from urbangen.generate.sampler import generate_layout

    fields = np.full((1024, 1024, N_PARAMS), np.nan)
    generate_layout(gen, fields[:256, :256], jax.random.key(0))  # compile
    tic = time.perf_counter()
    generate_layout(gen, fields, jax.random.key(1))
    layout_s = time.perf_counter() - tic
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        (run_dir / "checkpoints").mkdir(parents=True)
        request = parse_request({"model": {"checkpoint": str(run_dir), "type": "pix2pix"}, "size_m": 2048,
                                 "parameters": {"building_coverage": 0.3}, "samples": 1})
        tic = time.perf_counter()
        generate(request, Path(tmp) / "out", generator=gen)
        full_s = time.perf_counter() - tic
    return {"layout_s": layout_s, "with_all_outputs_s": full_s}


def shipped_stitched_seconds(candidates: int) -> dict:
    """The same 2 x 2 km layout from the shipped two-stage generator (64 px at 4 m/px, trained): its output is
    what users vectorize, where the untrained generator's noise is the worst case."""
    import jax

    from urbangen.generate.request import parse_request
    from urbangen.generate.run import generate
    from urbangen.generate.sampler import generate_layout
    from urbangen.generate.selection import by_parameters
    from urbangen.pretrained import load_shipped

    gen = by_parameters(load_shipped("city-64"), candidates)
    fields = np.full((512, 512, len(gen.spec.parameter_names)), np.nan)
    generate_layout(gen, fields[:64, :64], jax.random.key(0))  # compile
    tic = time.perf_counter()
    probs = generate_layout(gen, fields, jax.random.key(1))
    layout_s = time.perf_counter() - tic
    with tempfile.TemporaryDirectory() as tmp:
        request = parse_request({"size_m": 2048, "parameters": {"building_coverage": 0.2}, "samples": 1,
                                 "candidates": candidates})
        tic = time.perf_counter()
        generate(request, Path(tmp) / "out", generator=gen)
        full_s = time.perf_counter() - tic
    return {"candidates": candidates, "layout_s": layout_s, "with_all_outputs_s": full_s,
            "with_outputs_over_layout": full_s / layout_s, "layout": (probs > 0.5).astype(np.uint8)}


def noise_outputs_seconds(layout: np.ndarray, layout_s: float) -> dict:
    """Every output of a 2 x 2 km layout of per-pixel noise with ``layout``'s channel shares (the sanity ladder's
    noise rung), through ``urbangen generate``'s own path, against ``layout_s``: the shipped generator's time for
    that layout."""
    import jax
    import jax.numpy as jnp

    from urbangen.generate.request import parse_request
    from urbangen.generate.run import generate
    from urbangen.inference import TrainedModel
    from urbangen.pretrained import load_shipped

    chain = load_shipped("city-64")
    share = jnp.asarray(layout.reshape(-1, layout.shape[-1]).mean(axis=0), jnp.float32)

    def noise(variables, maps, key, given=None, latent=None):
        return jax.random.bernoulli(key, share, maps.shape[:3] + share.shape).astype(jnp.float32)

    spec = chain.spec.model_copy(update={"kind": "pix2pix", "sampling": "threshold", "workdir": "noise"})
    gen = TrainedModel(spec=spec, variables={}, predict={"generate": jax.jit(noise)})
    with tempfile.TemporaryDirectory() as tmp:
        request = parse_request({"size_m": 2048, "parameters": {"building_coverage": 0.2}, "samples": 1,
                                 "candidates": 1})
        tic = time.perf_counter()
        report = generate(request, Path(tmp) / "out", generator=gen)
        full_s = time.perf_counter() - tic
    return {"noise_channel_shares": [float(x) for x in share], "with_all_outputs_s": full_s,
            "street_segments": report["samples"][0]["street_segments"], "buildings": report["samples"][0]["buildings"],
            "shipped_layout_s": layout_s, "with_outputs_over_layout": (layout_s + full_s) / layout_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shipped-only", action="store_true",
                        help="only the shipped generator's 2 x 2 km layout (no PyTorch needed)")
    parser.add_argument("--tiles-only", action="store_true",
                        help="only tiles per second, JAX and PyTorch (on a GPU: CUDA), at each --precision")
    parser.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    args = parser.parse_args()
    if args.tiles_only:
        main_tiles(args)
        return
    shipped = [shipped_stitched_seconds(k) for k in (1, 16)]
    for r in shipped:
        print(f"city-64, 2 x 2 km at 4 m/px, {r['candidates']} candidate(s): {r['layout_s']:.1f} s for the layout, "
              f"{r['with_all_outputs_s']:.1f} s with every output "
              f"({r['with_outputs_over_layout']:.2f}x the layout alone; target <= 2x)")
    layouts = [r.pop("layout") for r in shipped]
    noise = noise_outputs_seconds(layouts[0], shipped[0]["layout_s"])
    print(f"per-pixel noise in its place ({noise['street_segments']} street segments, {noise['buildings']} buildings): "
          f"every output in {noise['with_all_outputs_s']:.1f} s: the layout with them would take "
          f"{noise['with_outputs_over_layout']:.2f}x the layout alone (target <= 2x)")
    if args.shipped_only:
        path = write_results("generate_shipped", {"shipped_stitched_2x2km": shipped, "noise_2x2km": noise})
        print(f"results: {path}")
        return
    gen = make_generator()
    peak = matmul_peak_flops()
    ours, flops_per_tile = jax_tiles_per_s(gen, args.batch, args.repeats)
    flop_rate = ours * flops_per_tile
    share = flop_rate / peak["flops_per_s"]
    ref = torch_tiles_per_s(args.batch, args.repeats)
    stitched = stitched_seconds(gen)
    print(f"generation, 256 px, batch {args.batch}: JAX {ours:.2f} tiles/s, PyTorch same architecture {ref:.2f} "
          f"tiles/s (ratio {ours / ref:.2f}x); {flops_per_tile / 1e9:.1f} GFLOP a tile, "
          f"{flop_rate / 1e9:.0f} GFLOP/s: {share:.0%} of the measured matmul peak "
          f"({peak['flops_per_s'] / 1e9:.0f} GFLOP/s; target >= 75 %)")
    print(f"2 x 2 km at 2 m/px (49 blended tiles): {stitched['layout_s']:.1f} s for the layout, "
          f"{stitched['with_all_outputs_s']:.1f} s with vectorizing, measuring and writing every output")
    path = write_results("generate", {"batch": args.batch, "jax_tiles_per_s": ours, "torch_tiles_per_s": ref,
                                      "ratio": ours / ref, "flops_per_tile": flops_per_tile, "matmul_peak": peak,
                                      "share_of_matmul_peak": share, "target_share_of_matmul_peak": 0.75,
                                      "stitched_2x2km": stitched,
                                      "shipped_stitched_2x2km": shipped, "noise_2x2km": noise})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
