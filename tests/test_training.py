"""Models and training on real tiles: architecture, equivalences, resume, NaN, W&B, learning."""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CONFIGS, ROOT, load_config, wandb_history  # noqa: F401 - load_config is used by subprocess code too

# --- architecture ---------------------------------------------------------------------------------------------


def test_pix2pix_matches_the_reference_architecture():
    """unet_256 and the 70x70 PatchGAN have the parameter counts the reference code prints (54.414 M, 2.769 M)."""
    from urbangen.models.pix2pix import PatchDiscriminator, UNetGenerator

    def count(tree):
        return sum(x.size for x in jax.tree.leaves(tree))

    x = jnp.zeros((1, 256, 256, 3))
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    g = jax.eval_shape(lambda: UNetGenerator(3, upsample="transpose").init(keys, x, train=False))
    d_model = PatchDiscriminator()
    d = jax.eval_shape(lambda: d_model.init(jax.random.key(0), x, x, train=False))
    assert round(count(g["params"]) / 1e3) / 1e3 == 54.414
    assert round(count(d["params"]) / 1e3) / 1e3 == 2.769
    logits = jax.eval_shape(lambda v: d_model.apply(v, x, x, train=False), d)
    assert logits.shape == (1, 30, 30, 1)  # one logit per 70x70 patch


def test_subpixel_upsampling_spans_the_transposed_convolution():
    """A random ConvTranspose(4, stride 2) is reproduced exactly by some subpixel kernel (least squares)."""
    from urbangen.models.layers import Upsample2x

    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
    transpose = Upsample2x(2, mode="transpose")
    target = np.asarray(transpose.apply(transpose.init(jax.random.key(1), x), x)).ravel()
    subpixel = Upsample2x(2, mode="subpixel")
    shape = subpixel.init(jax.random.key(2), x)["params"]["Conv_0"]["kernel"].shape
    basis = np.eye(int(np.prod(shape)), dtype=np.float32).reshape(-1, *shape)
    response = np.stack([np.asarray(subpixel.apply({"params": {"Conv_0": {"kernel": b}}}, x)).ravel()
                         for b in basis], axis=1)
    solution = np.linalg.lstsq(response, target, rcond=None)[0]
    assert np.abs(response @ solution - target).max() < 1e-5 * np.abs(target).max()
    # ... and the converse fails: a generic subpixel output is not a transposed convolution's.
    nearest = Upsample2x(2, mode="transpose")
    t_shape = nearest.init(jax.random.key(1), x)["params"]["ConvTranspose_0"]["kernel"].shape
    t_basis = np.eye(int(np.prod(t_shape)), dtype=np.float32).reshape(-1, *t_shape)
    t_response = np.stack([np.asarray(nearest.apply({"params": {"ConvTranspose_0": {"kernel": b}}}, x)).ravel()
                           for b in t_basis], axis=1)
    generic = response @ np.random.default_rng(0).normal(size=response.shape[1])
    fit = t_response @ np.linalg.lstsq(t_response, generic, rcond=None)[0]
    assert np.abs(fit - generic).max() > 0.1 * np.abs(generic).max()


# --- data split and checkpoints -------------------------------------------------------------------------------


def test_the_compiled_initial_state_equals_flax_init_run_op_by_op():
    """``Task.initial_state`` (one program, XLA's backend optimizations off) against ``init_state`` run eagerly,
    op by op: the same leaves, shapes and dtypes, the values to float32 rounding (pix2pix, 32 px tiles)."""
    from urbangen.training.pix2pix import Pix2PixTask

    config = load_config("pix2pix")
    spec = {"channels": ["buildings", "major_roads", "minor_roads"], "tile_px": 32, "parameters": ["p0", "p1"]}
    task = Pix2PixTask(config, spec)
    compiled = jax.tree_util.tree_leaves_with_path(task.initial_state(jax.random.key(5)))
    eager = dict(jax.tree_util.tree_leaves_with_path(task.init_state(jax.random.key(5))))
    assert [path for path, _ in compiled] == list(eager) and len(eager) > 50
    for path, leaf in compiled:
        want = np.asarray(eager[path])
        got = np.asarray(leaf)
        assert got.shape == want.shape and got.dtype == want.dtype, jax.tree_util.keystr(path)
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=jax.tree_util.keystr(path))
        else:
            np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))


def test_checkpoints_record_the_split_and_a_resume_must_keep_it(small_tiles, tmp_path):
    """meta["split"] is the run's train/val/test split; resuming with settings that split otherwise fails clearly."""
    from data_pipeline.errors import SplitMismatchError
    from urbangen.splits import Split, check_split
    from urbangen.training.data import TrainingData
    from urbangen.training.tasks import load_trained, train

    overrides = dict(dataset=str(small_tiles), eval_every=2, log_every=1, sample_every=0)
    config = load_config("vae", num_steps=2, **overrides)
    train(config, tmp_path)
    _, _, meta = load_trained(tmp_path)
    data = TrainingData.open(config.dataset, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                             buffer_m=config.split_buffer_m, seed=config.seed)
    split = Split.from_dict(meta["split"])
    assert meta["split"] == data.split_record and split.buffer_m == 64 * 4.0
    assert (meta["train_tiles"], meta["val_tiles"], meta["test_tiles"]) == (len(split.train), len(split.val),
                                                                           len(split.test))
    assert check_split(meta["split"], data.dataset.tiles, seed=config.seed) == split
    with pytest.raises(SplitMismatchError, match=r"val_fraction 0.2 -> 0.3"):
        train(load_config("vae", num_steps=4, val_fraction=0.3, **overrides), tmp_path)
    assert train(load_config("vae", num_steps=4, **overrides), tmp_path)["step"] == 4


def test_checkpointer_keeps_latest_n_and_the_best(tmp_path):
    from urbangen.checkpoints import Checkpointer

    ckpt = Checkpointer(tmp_path / "ckpt", keep=2, best_metric="val/loss")
    for step, loss in zip(range(1, 6), [5.0, 1.0, 4.0, 3.0, 2.5]):
        ckpt.save(step, {"w": jnp.full((3,), float(step))}, {"step": step}, metrics={"val/loss": loss})
    ckpt.wait()
    assert sorted(ckpt.all_steps()) == [2, 4, 5] and ckpt.best_step() == 2
    state, meta = ckpt.restore({"w": jnp.zeros(3)}, step=2)
    assert meta["step"] == 2 and np.array_equal(state["w"], np.full(3, 2.0))
    ckpt.close()


# --- training --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "loss"),
                         [("pix2pix", "train/l1"), ("vae", "train/recon"), ("encoder", "train/loss")])
def test_short_run_on_real_tiles_lowers_the_loss(small_tiles, tmp_path, model, loss):
    from urbangen.training.logging import read_metrics
    from urbangen.training.tasks import train

    config = load_config(model, dataset=str(small_tiles), num_steps=60, sample_every=0, eval_every=30)
    summary = train(config, tmp_path / model)
    rows = [r for r in read_metrics(tmp_path / model) if loss in r]
    first, last = rows[0][loss], np.mean([r[loss] for r in rows[-2:]])
    assert last < 0.85 * first, f"{model}: {loss} went from {first:.4g} to {last:.4g}"
    assert summary["step"] == 60 and summary["best_step"] in (30, 60)
    assert np.isfinite(list(summary["val"].values())).all()


def _run_script(code: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_eight_devices_train_like_one(small_tiles, tmp_path):
    """pix2pix (batch norm, dropout, Adam) on 8 simulated devices matches 1 device."""
    code = """
import sys, json, jax, numpy as np
sys.path.insert(0, 'tests')
from test_training import load_config
from urbangen.training.tasks import train, load_trained
workdir, dataset = sys.argv[1], sys.argv[2]
config = load_config('pix2pix', dataset=dataset, num_steps=3, log_every=1, eval_every=1, sample_every=0)
train(config, workdir)
def flat(tree):
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}
for step in (1, 3):
    task, state, _ = load_trained(workdir, step)
    np.savez(f'{workdir}/step{step}.npz', **flat(state))
np.savez(workdir + '/init.npz', **flat(task.initial_state(jax.random.key(config.seed))))
print(json.dumps({'devices': jax.device_count()}))
"""
    from urbangen.training.logging import read_metrics

    runs = {}
    for n in (1, 8):
        workdir = tmp_path / f"dev{n}"
        proc = subprocess.run([sys.executable, "-c", code, str(workdir), str(small_tiles)], cwd=ROOT,
                              env={**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
                                   "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["devices"] == n
        runs[n] = {"metrics": read_metrics(workdir), "init": np.load(workdir / "init.npz"),
                   1: np.load(workdir / "step1.npz"), 3: np.load(workdir / "step3.npz")}
    one, eight = runs[1], runs[8]

    losses = [k for k in one["metrics"][0] if k.startswith("train/") and "learning_rate" not in k]
    assert len(one["metrics"]) == len(eight["metrics"])
    for r1, r8 in zip(one["metrics"], eight["metrics"]):
        for k in set(r1) & set(losses + ["val/l1"]):
            np.testing.assert_allclose(r8[k], r1[k], rtol=2e-4, atol=1e-5, err_msg=k)

    def relative_differences(step: int) -> dict[str, float]:
        """|x8 - x1| / |x1 - x_init| per leaf: how far apart the runs are, against how far training moved.

        A leaf that moved by a near-cancelling sum (the discriminator's output bias gets about +0.5 per
        real patch and -0.5 per fake one at first) is allowed float32 rounding of its summands, 1e-6,
        however small the sum: rounding scales with the summands, not with their sum.
        """
        out = {}
        for k in one[step].files:
            change = np.linalg.norm(one[step][k].astype(np.float64) - one["init"][k])
            if change == 0:
                assert np.array_equal(eight[step][k], one[step][k]), k
            else:
                diff = np.linalg.norm(eight[step][k].astype(np.float64) - one[step][k])
                out[k] = 0.0 if diff < 1e-6 else diff / change
        return out

    # After one step the gradients (Adam's moments are 0.5 g and 0.001 g^2) and the synchronized batch-norm
    # statistics agree to float32 rounding; unsynchronized batch norm (one tile per device) would be off by far
    # more. Parameters move by about lr * sign(g) in Adam's first steps, so elements whose gradient is
    # rounding noise may step either way: those get a looser bound, as do all leaves after 3 steps.
    first = relative_differences(1)
    for k, r in first.items():
        assert r < (1e-2 if "['params']" in k else 1e-4), (k, r)
    third = relative_differences(3)
    assert max(r for k, r in third.items() if "['params']" in k) < 0.05


def test_sigkill_then_resume_gives_the_uninterrupted_parameters(small_tiles, tmp_path):
    from urbangen.training.tasks import load_trained, train

    overrides = dict(dataset=str(small_tiles), num_steps=120, eval_every=10, log_every=10, sample_every=0)
    train(load_config("pix2pix", **overrides), tmp_path / "straight")

    killed = tmp_path / "killed"
    args = [sys.executable, str(ROOT / "experiments" / "train.py"), "--config",
            f"{CONFIGS / 'pix2pix.py'}:test", f"--workdir={killed}"] + [f"--config.{k}={v}"
                                                                         for k, v in overrides.items()]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "10").is_dir():  # a finished checkpoint (orbax renames it when complete)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] < 120, f"the run was not interrupted mid-way: {saved}"

    summary = train(load_config("pix2pix", **overrides), killed)
    assert summary["step"] == 120
    _, resumed, meta = load_trained(killed)
    _, straight, _ = load_trained(tmp_path / "straight")
    assert meta["step"] == 120
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(straight), jax.tree.leaves(resumed)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-7,
                                   err_msg=jax.tree_util.keystr(path))


def test_ctrl_c_stops_after_the_step_under_way_and_saves_it(small_tiles, tmp_path, monkeypatch, request):
    """SIGINT mid-step: the loop stops at the step's end, saves it, and a resume continues from it."""
    from urbangen.training import loop
    from urbangen.training.tasks import load_trained, train

    add = loop._TrainLog.add
    at = [7]

    def ctrl_c_at(self, done, metrics, flush):
        if done == at[0]:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler at once, mid-way through the loop's body
        return add(self, done, metrics, flush)

    monkeypatch.setattr(loop._TrainLog, "add", ctrl_c_at)
    config = load_config("pix2pix", dataset=str(small_tiles), num_steps=20, eval_every=5, log_every=5, sample_every=0)
    # As in a terminal: pytest-xdist's workers ignore SIGINT, and training leaves an ignored SIGINT ignored.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, before))
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 7"):
        train(config, tmp_path)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler training replaced is back
    _, _, meta = load_trained(tmp_path)
    assert meta["step"] == 7
    # Resumed, and stopped again during its last step: saved, and still reported as an interrupt.
    at[0] = 20
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 20"):
        train(config, tmp_path)
    assert load_trained(tmp_path)[2]["step"] == 20


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(small_tiles, tmp_path):
    from data_pipeline.errors import NonFiniteLossError
    from urbangen.training.tasks import load_trained, train

    overrides = dict(dataset=str(small_tiles), eval_every=10, log_every=5, sample_every=0)
    train(load_config("vae", num_steps=10, **overrides), tmp_path)
    _, good, _ = load_trained(tmp_path)
    diverging = load_config("vae", num_steps=40, **overrides)
    diverging.optim.learning_rate = 1e30  # a diverging run
    with pytest.raises(NonFiniteLossError) as err:
        train(diverging, tmp_path)
    message = str(err.value)
    assert "non-finite at step" in message and "last good checkpoint is step 10" in message
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [10]
    _, after, meta = load_trained(tmp_path)
    assert meta["step"] == 10
    for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(after)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_wandb_offline_run_holds_the_logged_metrics(small_tiles, tmp_path):
    from urbangen.training.logging import read_metrics
    from urbangen.training.tasks import train

    config = load_config("encoder", dataset=str(small_tiles), num_steps=10, eval_every=10, log_every=5, sample_every=10)
    config.wandb.mode = "offline"
    train(config, tmp_path)
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(runs) == 1
    history = {int(r["_step"]): r for r in wandb_history(runs[0])}
    local = read_metrics(tmp_path)
    for row in local:
        for key, value in row.items():
            if key != "step":
                assert float(history[row["step"]][key]) == pytest.approx(value, rel=1e-6), key
    assert "samples/path" in history[10]  # the sample grid was logged as an image
    assert list((tmp_path / "samples").glob("samples_*.png"))


def test_bfloat16_compute_keeps_float32_parameters(small_tiles, tmp_path):
    from urbangen.training.tasks import load_trained, train

    config = load_config("pix2pix", dataset=str(small_tiles), num_steps=4, eval_every=4, log_every=2,
                         sample_every=0, precision="bfloat16")
    summary = train(config, tmp_path)
    assert np.isfinite(list(summary["train"].values())).all()
    _, state, _ = load_trained(tmp_path)
    assert {x.dtype for x in jax.tree.leaves(state["g"]["params"])} == {jnp.dtype("float32")}


def test_early_stopping_ends_a_run_that_stopped_improving(small_tiles, tmp_path):
    from urbangen.training.tasks import train

    config = load_config("vae", dataset=str(small_tiles), num_steps=200, eval_every=2, log_every=2, sample_every=0,
                         early_stopping_patience=2)
    config.optim.learning_rate = 0.0  # nothing can improve after the first evaluation
    config.optim.warmup_steps = 0
    summary = train(config, tmp_path)
    assert summary["stopped_early"] and summary["step"] == 6  # evaluations at 2 (best), 4 and 6 (no gain)


def test_two_hosts_assemble_the_global_batch_from_their_shards(small_tiles, tmp_path):
    """Two processes joined by ``jax.distributed`` (CPU, localhost), one device each, via the env variables.

    Each host reads its own shard of the tiles; step 1 must equal one process taking the same step on the
    global batch they assemble: host 0's local batch, then host 1's.
    """
    from urbangen.training.data import TrainingData
    from urbangen.training.logging import read_metrics
    from urbangen.training.pix2pix import Pix2PixTask

    with socket.socket() as s:  # a free local port for the coordinator
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = dict(dataset=str(small_tiles), num_steps=2, log_every=1, eval_every=2, sample_every=0)
    workdir = tmp_path / "two_hosts"
    args = [sys.executable, str(ROOT / "experiments" / "train.py"), "--config", f"{CONFIGS / 'pix2pix.py'}:test",
            f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in overrides.items()]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
           "JAX_NUM_PROCESSES": "2"}
    procs = [subprocess.Popen(args, cwd=ROOT, env={**env, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    step1 = read_metrics(workdir)[0]
    assert step1["step"] == 1

    config = load_config("pix2pix", **overrides)
    data = TrainingData.open(config.dataset, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                             buffer_m=config.split_buffer_m, seed=config.seed)
    local = config.batch_size // 2
    shards = [data.batches("train", local, seed=config.seed, training=True, shard_index=i, shard_count=2)[0]
              for i in range(2)]
    batch = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}
    task = Pix2PixTask(config, data.spec)
    _, metrics = jax.jit(task.train_step)(task.initial_state(jax.random.key(config.seed)), batch)
    for k, v in jax.device_get(metrics).items():
        np.testing.assert_allclose(step1[f"train/{k}"], float(v), rtol=2e-4, atol=1e-5, err_msg=k)


def test_the_discriminator_steps_at_its_own_learning_rate(small_tiles):
    """``pix2pix.d_lr_scale``: Adam's first step moves each weight by about its learning rate, so the
    discriminator's largest move triples at scale 3 while the generator's stays the same."""
    from urbangen.training.data import TrainingData
    from urbangen.training.pix2pix import Pix2PixTask

    moves = {}
    for scale in (1.0, 3.0):
        config = load_config("pix2pix", "city_streets_test", dataset=str(small_tiles), batch_size=4)
        config.pix2pix.d_lr_scale = scale
        data = TrainingData.open(config.dataset, parameters=config.parameters, seed=config.seed)
        batch = data.batches("train", 4, seed=0, training=True)[0]
        task = Pix2PixTask(config, data.spec)
        state = task.initial_state(jax.random.key(0))
        new, _ = jax.jit(task.train_step)(state, batch)
        moves[scale] = {net: max(float(np.abs(a - b).max()) for a, b in
                                 zip(jax.tree.leaves(new[net]["params"]), jax.tree.leaves(state[net]["params"])))
                        for net in ("g", "d")}
    lr = config.optim.learning_rate
    assert moves[1.0]["d"] == pytest.approx(lr, rel=0.05) and moves[3.0]["d"] == pytest.approx(3 * lr, rel=0.05)
    assert moves[3.0]["g"] == pytest.approx(moves[1.0]["g"], rel=1e-3)
