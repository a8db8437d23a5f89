"""A training run as a user relies on it: resume == uninterrupted, early stopping keeps the best epoch,
per-epoch outputs, checkpoints that survive a kill, and torchrun with two CPU processes."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from helpers import invoke, one_line_error
from vae_edge.models import VAEConfig, model_from_checkpoint, read_checkpoint
from vae_edge.trainer import Dataset, TrainConfig, evaluate, train
from vae_edge.trainer.cli import cli as train_main
from vae_edge.trainer.data import split


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_one_plus_one_epochs_equals_two(tmp_path):
    np.save(tmp_path / "x.npy", (np.random.default_rng(2).random((150, 16)) < 0.3).astype(np.uint8))
    # A constant rate: a first run asked for 1 epoch has its own cosine (the rate is a function of epoch
    # and --epochs alone, so a run killed at epoch 1 of 2 resumes on the 2-epoch curve). One epoch each
    # side of the cut: the CLI redraws the loss curve every epoch.
    common = ["--data", f"npy:{tmp_path / 'x.npy'}", "--batch-size", 16, "--hidden", 16, "--latent", 2, "--iw-samples", 5, "--seed", 3, "--lr-schedule", "constant", "--quiet",
              "--weight-decay", 0.01, "--activation", "tanh"]  # both come back from the checkpoint: else the states would differ
    assert invoke(train_main, [*common, "--epochs", 2, "--out", tmp_path / "straight.pt"]).exit_code == 0
    assert invoke(train_main, [*common, "--epochs", 1, "--out", tmp_path / "resumed.pt"]).exit_code == 0
    # Only --epochs is given: everything else comes from the checkpoint, and --out defaults to it.
    result = invoke(train_main, ["--resume", tmp_path / "resumed.pt", "--epochs", 2, "--quiet"])
    assert result.exit_code == 0, result.output
    a, b = read_checkpoint(tmp_path / "straight.pt"), read_checkpoint(tmp_path / "resumed.pt")
    assert_same_state(a["state_dict"], b["state_dict"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k, state in a["optimizer"]["state"].items():
        assert_same_state(state, b["optimizer"]["state"][k])
    assert [r["val_elbo"] for r in a["train_state"]["history"]] == [r["val_elbo"] for r in b["train_state"]["history"]]
    assert a["metrics"]["test_iwae_nll"] == b["metrics"]["test_iwae_nll"] and b["train_state"]["epoch"] == 2
    assert b["train_state"]["train_config"]["weight_decay"] == 0.01 and b["config"]["activation"] == "tanh"
    assert all(g["weight_decay"] == 0.01 and g["decoupled_weight_decay"] for g in b["optimizer"]["param_groups"])  # AdamW's
    metrics = json.loads((tmp_path / "resumed.metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2] and metrics["metrics"]["test_elbo"] == b["metrics"]["test_elbo"]

    one_line_error(invoke(train_main, ["--resume", tmp_path / "resumed.pt", "--epochs", 2]), 2, "trained 2 epochs already")
    # 120 training rows: the options left out follow the small-data rule (config.size_settings); those given win.
    assert b["train_state"]["train_config"]["objective"] == "elbo" and b["train_state"]["train_config"]["lr"] == 0.01
    assert b["data"]["settings_reason"] == a["data"]["settings_reason"] == (
        "small-data settings, because 120 training samples (< 1000): --objective elbo, --lr 0.01, --patience 0, --ema 0.0; "
        "--hidden, --latent, --batch-size, --epochs as given")
    # The reason the likelihood was chosen survives the resume (reloaded, it would read "asked for (--likelihood ...)").
    assert b["data"]["likelihood_reason"] == a["data"]["likelihood_reason"] == "the format's values lie in the fixed range 0..255"
    one_line_error(invoke(train_main, ["--resume", tmp_path / "resumed.pt", "--epochs", 3, "--lr", 0.1]), 2, "cannot change lr (0.01 -> 0.1)")
    one_line_error(invoke(train_main, ["--resume", tmp_path / "resumed.pt", "--epochs", 3, "--latent", 5]), 2, "model settings differ", "latent_dim (2 -> 5)")
    one_line_error(invoke(train_main, ["--resume", tmp_path / "resumed.pt", "--epochs", 3, "--prior", "vamp"]), 2, "model settings differ", "prior (standard -> vamp)")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    one_line_error(invoke(train_main, ["--resume", tmp_path / "junk.pt"]), 2, "--resume", "not a readable PyTorch checkpoint")


@pytest.fixture(scope="module")
def noise():
    """Coin flips: nothing to learn beyond p = 0.5, so a big model soon overfits and validation worsens."""
    x = (np.random.default_rng(0).random((120, 24)) < 0.5).astype(np.float32)
    train_x, val_x, test_x = split(x)
    return Dataset("noise", "noise", train_x, val_x, test_x, kind="vector", value_range=(0.0, 1.0))


def test_early_stopping_keeps_the_best_epoch(tmp_path, noise):
    cfg = VAEConfig(input_shape=noise.shape, latent_dim=4, hidden_dims=(128,))
    tc = TrainConfig(epochs=200, batch_size=16, lr=3e-3, patience=3, iw_samples=5, quiet=True)
    out = tmp_path / "model.pt"
    result = train(cfg, noise, tc, out=out, side_outputs=False)  # the loss curve, redrawn each epoch, is tested elsewhere
    history, m = result.history, result.metrics
    assert m["stopped_early"] and len(history) < 200
    best = max(history, key=lambda r: r["val_bound"])  # what early stopping watches
    assert m["best_epoch"] == best["epoch"] and len(history) == best["epoch"] + 3
    ckpt = read_checkpoint(out)
    # The served weights are the best epoch's: they reproduce its validation ELBO exactly.
    val = torch.from_numpy(noise.to_model(noise.val))
    assert evaluate(model_from_checkpoint(ckpt), val)["elbo"] == best["val_elbo"] == m["val_elbo"]
    assert ckpt["train_state"]["stopped_early"] and "last_state_dict" in ckpt["train_state"]
    with pytest.raises(ValueError, match="stopped early"):
        train(cfg, noise, TrainConfig(epochs=300, batch_size=16, lr=3e-3, patience=3, iw_samples=5, quiet=True), resume=ckpt)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_with_early_stopping_state_equals_uninterrupted(tmp_path, noise, ema):
    cfg = VAEConfig(input_shape=noise.shape, latent_dim=4, hidden_dims=(32,))
    # A constant rate, so that the 2-epoch first run trains its epochs as the 4-epoch one does (see above).
    tc = TrainConfig(epochs=4, batch_size=16, lr=3e-3, lr_schedule="constant", patience=50, iw_samples=5, ema=ema, quiet=True)
    straight = train(cfg, noise, tc)
    train(cfg, noise, TrainConfig(**{**tc.__dict__, "epochs": 2}), out=tmp_path / "m.pt", side_outputs=False)
    resumed = train(cfg, noise, tc, resume=read_checkpoint(tmp_path / "m.pt"))
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    assert straight.metrics["best_epoch"] == resumed.metrics["best_epoch"]
    assert straight.state.keys() == resumed.state.keys()
    # The served weights are what was validated: with ema, the average at the best epoch, not the raw weights.
    best = max(straight.history, key=lambda r: r["val_bound"])
    assert evaluate(straight.model, torch.from_numpy(noise.to_model(noise.val)))["elbo"] == best["val_elbo"]
    if ema:
        raw = straight.state["last_state_dict"]
        assert any(not torch.equal(raw[k], v) for k, v in straight.model.state_dict().items())
        assert_same_state(straight.state["weight_average"]["state_dict"], resumed.state["weight_average"]["state_dict"])


def test_checkpoint_survives_a_kill_during_saving(tmp_path):
    """A process killed while rewriting model.pt over and over leaves a complete, loadable file."""
    out = tmp_path / "model.pt"
    script = textwrap.dedent(f"""
        import torch, sys
        from vae_edge.models import VAEConfig, build_model
        from vae_edge.trainer import make_checkpoint, save_checkpoint
        model = build_model(VAEConfig(input_shape=(1, 64, 64), latent_dim=8, hidden_dims=(256,)))
        for i in range(10_000):
            save_checkpoint({str(out)!r}, make_checkpoint(model, data={{}}, metrics={{"i": i}}))
            if i == 0:
                print("saved", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saved"
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    ckpt = read_checkpoint(out)
    assert ckpt["metrics"]["i"] >= 0 and model_from_checkpoint(ckpt).config.hidden_dims == (256,)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(tmp_path):
    x = (np.random.default_rng(1).random((100, 12)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "vae_edge.trainer", "--data", f"npy:{tmp_path / 'x.npy'}", "--epochs", "2", "--batch-size", "16",
           "--hidden", "8", "--latent", "2", "--iw-samples", "4", "--device", "cpu", "--quiet", "--out", str(tmp_path / "m.pt")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test      ELBO") == 1  # rank 0 alone prints
    ckpt = read_checkpoint(tmp_path / "m.pt")
    m = ckpt["metrics"]
    assert m["world_size"] == 2 and m["epochs"] == 2 and np.isfinite(m["test_iwae_nll"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.loss.png", "m.metrics.json", "m.pt", "x.npy"]


def test_train_cli_nan_loss_exits_1_with_one_line(tmp_path):
    out = tmp_path / "model.pt"
    result = invoke(train_main, ["--lr", 10, "--epochs", 2, "--hidden", 8, "--latent", 2, "--iw-samples", 2, "--quiet", "--out", out])
    one_line_error(result, 1, "loss became", "epoch 1", "try a lower --lr")
    assert not out.exists()  # no epoch finished: nothing half-trained is left behind
