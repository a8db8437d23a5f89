"""vae-train's exit codes and outputs: 0 ok, 2 bad usage or input; never a traceback."""

from dataclasses import fields

import pytest
from helpers import invoke, one_line_error

from vae_edge.models.config import ACTIVATIONS, ARCHS, DECODER_STYLES, LIKELIHOODS, TEXT_ARCHS, VAEConfig
from vae_edge.trainer.cli import MODEL_OPTIONS
from vae_edge.trainer.cli import cli as train_main
from vae_edge.trainer.config import DEFAULT_PRIOR_COMPONENTS, DEVICES, TrainConfig


def test_train_cli_writes_checkpoint_and_grids(tmp_path):
    out = tmp_path / "m" / "model.pt"
    events = tmp_path / "tb"
    result = invoke(train_main, ["--epochs", 2, "--hidden", 16, "--latent", 2, "--iw-samples", 5, "--quiet", "--out", out, "--tensorboard", events])
    assert result.exit_code == 0, result.output
    assert f"wrote     {events}\n" in result.output and any(p.name.startswith("events.out.tfevents") for p in events.iterdir())
    assert "test      ELBO" in result.output and "IWAE NLL" in result.output
    assert "train     IWAE bound K=10, dreg gradient (validation bound K=100)" in result.output  # the bound early stopping watches is named
    assert "settings  the defaults, because 1437 training samples (>= 1000)" in result.output
    assert "prior     vamp, 30 pseudo-inputs: auto, an MLP on Bernoulli data with 1437 training samples" in result.output
    assert out.is_file() and (out.parent / "model.samples.png").is_file() and (out.parent / "model.reconstructions.png").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.loss.png", "model.metrics.json", "model.pt", "model.reconstructions.png", "model.samples.png"]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--data", "imagenet"], ["unknown data spec 'imagenet'"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--arch", "resnet"], ["--arch"]),
        (["--lr", "-1"], ["--lr"]),
        (["--hidden", "0", "--hidden", "8"], ["--hidden", "stands alone"]),
        (["--arch", "conv", "--activation", "tanh"], ["--activation", "does not apply to --arch conv"]),
        (["--activation", "gelu"], ["--activation"]),
        (["--weight-decay", "-1"], ["--weight-decay"]),
        (["--hidden", "0", "--activation", "silu"], ["--activation", "--hidden 0 has none"]),
        (["--iw-train", "20", "--iw-val", "10"], ["--iw-val", "below --iw-train 20"]),
        (["--objective", "elbo", "--iw-gradient", "dreg"], ["--iw-gradient", "--objective iwae only"]),
        (["--iw-gradient", "reinforce"], ["--iw-gradient"]),
        (["--prior", "standard", "--prior-components", "10"], ["--prior-components", "applies to --prior vamp only"]),
        (["--prior", "flow"], ["--prior"]),
        (["--prior-components", "0"], ["--prior-components"]),
        (["--epochs", "1", "--out", "run/"], ["--out", "expected a .pt file name, got 'run'"]),  # used to write a checkpoint file named run
        (["--epochs", "1", "--out", "model.txt"], ["--out", "expected a .pt file name"]),
        (["--prior-components", "5000"], ["--prior-components", "training split has 1437 samples", "give at most 1437"]),
    ],
)
def test_train_usage_errors_exit_2(args, fragments):
    one_line_error(invoke(train_main, args), 2, *fragments)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without CUDA")
def test_train_asking_for_missing_cuda_exits_2(tmp_path):
    one_line_error(invoke(train_main, ["--device", "cuda", "--epochs", 1, "--out", tmp_path / "m.pt"]), 2, "CUDA")


def test_options_default_to_the_dataclass_defaults_and_offer_their_choices():
    params = {p.name: p for p in train_main.params}
    for f in fields(TrainConfig):
        assert params[f.name].default == f.default, f.name
    model_defaults = {f.name: f.default for f in fields(VAEConfig)}
    for option, field in MODEL_OPTIONS.items():
        if option not in ("prior", "prior_components"):
            assert params[option].default == model_defaults[field], option
    # --prior auto lets the data choose (config.auto_prior); the component count applies to vamp (VAEConfig: 0 for standard).
    assert params["prior"].default == "auto" and tuple(params["prior"].type.choices) == ("auto", "standard", "vamp")
    assert params["prior_components"].default == DEFAULT_PRIOR_COMPONENTS
    assert params["device"].default == "auto" == TrainConfig().device
    # --likelihood is not VAEConfig's: its default "auto" lets the data choose (data.choose_likelihood).
    assert params["likelihood"].default == "auto" and tuple(params["likelihood"].type.choices) == ("auto", *LIKELIHOODS)
    for option, choices in (("arch", (*ARCHS, *TEXT_ARCHS)), ("decoder_style", DECODER_STYLES), ("device", DEVICES), ("activation", ACTIVATIONS)):
        assert tuple(params[option].type.choices) == choices, option


def test_the_cli_module_loads_without_torch():
    import subprocess
    import sys

    code = "import sys, vae_edge.trainer.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
