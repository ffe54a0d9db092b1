#!/bin/bash
# One bounded session on a GPU: the accelerator figures of the benchmarks, then the shipped generator's
# building and street stages trained on it, each step under its own time limit so that a lease of a few
# minutes returns whatever finished. Run from the repository root with urbangen importable
# (pip install -e ., or PYTHONPATH=$PWD with the dependencies the training needs: jax with CUDA, flax,
# optax, orbax-checkpoint, grain, zarr, ml_collections, shapely, pydantic, and torch for the references).
#
# Inputs, built beforehand on any machine (the GPU host needs no OSM files and no geo stack):
#   data/offline_city_set   urbangen data build --config urbangen/resources/cities/offline_city_set.yaml \
#                               --out data/offline_city_set                 (URBANGEN_OSM_DIR set)
#   data/offline_city_set_256  the same at 2 m/px, 256 px (urbangen/resources/cities/offline_city_set_256.yaml)
#   data/loader_256         Østerbro and Lyngby at 256 px and 2 m/px, the dataset bench_train.py --loader
#                           builds by default (benchmarks/bench_train.py: _loader_dataset)
# Outputs under $OUT (default gpu_session/): the logs, the benchmarks' JSON files, and the trained stages as
# model files (float16, no latent prior: refit it with `urbangen export MODEL OUT --latent-prior 64`).
#
# First call on 2026-12-04 (an H200, one call of the session's 15 minutes): the train step's figures were
# measured; the trainings stopped at once on a missing rasterio (the conditioning evaluator's imports, now
# deferred), and the loader and generation runs at their time limits, without output (now printed per row).
# A second call measured those (README, Performance); the trainings remain for a later lease.
set -u
OUT=${OUT:-gpu_session}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 WANDB_MODE=${WANDB_MODE:-disabled} URBANGEN_NO_PROGRESS=1
mkdir -p "$OUT"
T0=$(date +%s)
mark() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
urbangen_cli() { $PY -c "import sys; from urbangen.cli import main; sys.argv = ['urbangen'] + sys.argv[1:]; main()" "$@"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
$PY -c "import jax, flax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__)"

# Issue 16's accelerator figures: generation in tiles/s, the step fed by the loader, the step at a large batch.
timeout 120 $PY benchmarks/bench_generate.py --tiles-only --batch 64 --repeats 20 --precision bfloat16 float32
mark generation
timeout 120 $PY benchmarks/bench_train.py --loader --dataset data/loader_256 --batch 64 --steps 30 \
    --precision bfloat16 --loader-threads 8
mark loader
timeout 150 $PY benchmarks/bench_train.py --batch 64 256 --precision bfloat16 --steps 10
mark train step
cp benchmarks/results/*_gpu.json "$OUT"/ 2>/dev/null

# The building stage: its config's own schedule (6000 x 16). SIGINT saves the state reached.
timeout -s INT 150 $PY experiments/train.py --config experiments/configs/pix2pix.py:city_buildings \
    --workdir runs/gpu_city_buildings --config.loader_threads=4 > "$OUT"/train_buildings.log 2>&1
mark buildings stage rc $?
urbangen_cli export runs/gpu_city_buildings "$OUT"/city_buildings_64.msgpack --dtype float16
# The street stage: 20000 steps of 32 where a CPU hour gives 5500, stopping early on the validation ELBO.
timeout -s INT 240 $PY experiments/train.py --config experiments/configs/vae.py:city_streets_wide \
    --workdir runs/gpu_city_streets --config.num_steps=20000 --config.loader_threads=4 > "$OUT"/train_streets.log 2>&1
mark street stage rc $?
urbangen_cli export runs/gpu_city_streets "$OUT"/city_streets_64.msgpack --step best --dtype float16 --latent-prior 0
# The building stage at 2 m/px in 256 px tiles (buildings-256; data/offline_city_set_256, built from
# urbangen/resources/cities/offline_city_set_256.yaml): 8000 x 32 took 4.4 minutes on an H200 (2026-12-04).
timeout -k 60 -s INT 400 $PY experiments/train.py --config experiments/configs/pix2pix.py:city_buildings_256 \
    --workdir runs/gpu_buildings_256 > "$OUT"/train_buildings_256.log 2>&1
mark buildings 256 rc $?
urbangen_cli export runs/gpu_buildings_256 "$OUT"/buildings_256.msgpack --step latest --dtype float16
cp runs/gpu_city_buildings/metrics.jsonl "$OUT"/metrics_buildings.jsonl 2>/dev/null
cp runs/gpu_city_streets/metrics.jsonl "$OUT"/metrics_streets.jsonl 2>/dev/null
mark done
