"""Edited and hostile model.pt dicts: one CheckpointError line from read_checkpoint, and one Error line
with exit 2 from vae-export and vae-train --resume; never a traceback, never an allocation the file's
own bytes do not pay for."""

import os
import resource

import pytest
import torch
from helpers import invoke, one_line_error

from vae_edge.export.cli import cli as export_cli
from vae_edge.models import CheckpointError, read_checkpoint, save_checkpoint
from vae_edge.trainer.cli import cli as train_cli


def edit(ckpt, path, value):
    """A copy of ``ckpt`` with the entry at ``path`` (a dotted path) set to ``value`` (or removed: ...)."""
    import copy

    out = copy.deepcopy(ckpt)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


EDITS = {
    "data.shape an int": ("data.shape", 64),
    "preprocessing.offset a string": ("data.preprocessing.offset", "zero"),
    "metrics a list": ("metrics", [1, 2]),
    "metrics holding a tensor": ("metrics.test_elbo", torch.tensor(1.0)),
    "train_state.epoch a string": ("train_state.epoch", "3"),
    "train_state.history a dict": ("train_state.history", {"epoch": 1}),
    "train_state.best_val_elbo a string": ("train_state.best_val_elbo", "high"),
    "train_state.stopped_early a string": ("train_state.stopped_early", "no"),
    "train_state.train_config a list": ("train_state.train_config", [1]),
    "optimizer garbage": ("optimizer", "garbage"),
    "optimizer groups garbage": ("optimizer.param_groups", [{"params": ["w"]}]),
    "rng a string": ("train_state.rng", "seed"),
    "rng.torch of the wrong size": ("train_state.rng.torch", torch.zeros(7, dtype=torch.uint8)),
    "hidden_dims an int": ("config.hidden_dims", 64),
    "latent_dim a float": ("config.latent_dim", 4.5),
    "data.spec an int": ("data.spec", 7),
    "data.kind a list": ("data.kind", ["image"]),
    "state_dict holding a number": ("state_dict.encoder_dummy", 3),
    "last_state_dict mis-shaped": ("train_state.last_state_dict", {"w": torch.zeros(2)}),
    "weight_average mis-shaped": ("train_state.weight_average", {"steps": 3, "state_dict": {"w": torch.zeros(2)}}),
}


@pytest.fixture(scope="module")
def ckpt(model_path):
    return read_checkpoint(model_path)


@pytest.mark.parametrize("case", list(EDITS))
def test_an_edited_entry_is_one_checkpoint_error(tmp_path, ckpt, case):
    path = tmp_path / "model.pt"
    save_checkpoint(path, edit(ckpt, *EDITS[case]))
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("case", ["data.shape an int", "preprocessing.offset a string", "hidden_dims an int", "rng a string", "optimizer garbage", "data.spec an int"])
def test_the_tools_refuse_an_edited_model_pt_in_one_line(tmp_path, ckpt, case):
    path = tmp_path / "model.pt"
    save_checkpoint(path, edit(ckpt, *EDITS[case]))
    one_line_error(invoke(export_cli, [path, "--out", tmp_path / "bundle", "--no-latency"]), 2, str(path))
    one_line_error(invoke(train_cli, ["--resume", path, "--epochs", "99", "-q"]), 2, str(path))
    assert not (tmp_path / "bundle").exists()


def test_a_config_claiming_huge_layers_is_refused_before_allocating_them(tmp_path, ckpt):
    path = tmp_path / "model.pt"
    save_checkpoint(path, edit(ckpt, "config.hidden_dims", [20000, 20000]))  # 1.6 GB of weights if built
    assert path.stat().st_size < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="weights do not match its config"):
        read_checkpoint(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500, grown_mb


@pytest.mark.parametrize("spec", ["idx:/dev/zero", "npy:FIFO"])
def test_a_recorded_data_spec_at_a_device_or_fifo_is_refused(tmp_path, ckpt, spec):
    fifo = tmp_path / "fifo.npy"
    os.mkfifo(fifo)
    path = tmp_path / "model.pt"
    save_checkpoint(path, edit(ckpt, "data.spec", spec.replace("FIFO", str(fifo))))
    one_line_error(invoke(export_cli, [path, "--out", tmp_path / "bundle", "--no-latency"]), 2, "device" if "dev" in spec else "named pipe")
    one_line_error(invoke(train_cli, ["--resume", path, "--epochs", "99", "-q"]), 2, "device" if "dev" in spec else "named pipe")


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_model_pt_that_is_not_a_regular_file_is_refused_without_reading(tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(kind)
    with pytest.raises(CheckpointError, match="named pipe|device"):
        read_checkpoint(path)


def test_a_file_that_is_not_a_zip_archive_is_named_once(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x7fELF" + b"\x00" * 200)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(info.value) == f"{path}: not a readable PyTorch checkpoint (not a torch.save zip archive)"
