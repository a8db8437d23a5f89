"""A text training run as a user relies on it: --resume == uninterrupted, early stopping keeps the best
epoch, the IWAE objective and token dropout limited to the first epochs, an epoch of several passes over a
small train split."""

import json
import shutil

import pytest
import torch

from helpers import invoke, one_line_error
from vae_edge.models import read_checkpoint
from vae_edge.models.text import TextVAEConfig
from vae_edge.trainer.cli import cli as train_main
from vae_edge.trainer.textdata import load_text
from vae_edge.trainer.textloop import TextTrainConfig, epoch_passes, train_text
from vae_edge.trainer.textresume import text_resume_settings


def tiny(data) -> TextVAEConfig:
    return TextVAEConfig(vocab_size=data.vocab.size, max_len=16, latent_dim=2, embed_dim=8, hidden_dim=16)


def test_text_resume_one_plus_one_epochs_equals_two(tmp_path, text_file, monkeypatch):
    """1 + 1 resumed epochs give the weights of 2 (one epoch each side of the cut: the CLI redraws the
    loss curve every epoch; the warm-up ends at it); and, as for image runs, model.pt records the text's
    absolute path and its path relative to model.pt's folder, so --resume (and the export's reload)
    finds a relative --data from another folder after model.pt and its text moved together."""
    from vae_edge.trainer.textdata import load_text_recorded

    project = tmp_path / "project"
    (project / "run").mkdir(parents=True)
    shutil.copy(text_file, project / "words.txt")
    common = ["--max-len", 16, "--hidden", 16, "--latent", 2, "--embed", 8, "--batch-size", 32,
              "--iw-samples", 2, "--kl-warmup", 1, "--token-dropout", 0.2, "--seed", 3, "--min-epoch-steps", 20, "--quiet"]
    assert invoke(train_main, ["--data", f"text:{text_file}", *common, "--epochs", 2, "--out", tmp_path / "straight.pt"]).exit_code == 0
    monkeypatch.chdir(project)
    assert invoke(train_main, ["--data", "text:words.txt", *common, "--epochs", 1, "--out", "run/resumed.pt"]).exit_code == 0
    data = read_checkpoint(project / "run" / "resumed.pt")["data"]
    assert data["spec"] == f"text:{project / 'words.txt'}" and data["relative"] == "text:../words.txt"
    moved = tmp_path / "elsewhere"
    shutil.move(project, moved)
    monkeypatch.chdir(tmp_path)
    assert load_text_recorded(data, base=moved / "run").spec == f"text:{moved / 'words.txt'}"
    # Only --epochs is given: data, sizes and text settings come from the checkpoint, --out defaults to it.
    result = invoke(train_main, ["--resume", "elsewhere/run/resumed.pt", "--epochs", 2, "--quiet"])
    assert result.exit_code == 0, result.output
    resumed = moved / "run" / "resumed.pt"
    a, b = read_checkpoint(tmp_path / "straight.pt"), read_checkpoint(resumed)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert [r["val_elbo"] for r in a["train_state"]["history"]] == [r["val_elbo"] for r in b["train_state"]["history"]]
    assert a["metrics"]["test_iwae_nll"] == b["metrics"]["test_iwae_nll"] and b["train_state"]["epoch"] == 2
    assert b["config"] == a["config"] and b["config"]["hidden_dim"] == 16
    metrics = json.loads((moved / "run" / "resumed.metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]

    one_line_error(invoke(train_main, ["--resume", resumed, "--epochs", 2]), 2, "--resume", "trained 2 epochs already")
    one_line_error(invoke(train_main, ["--resume", resumed, "--epochs", 3, "--token-dropout", 0.3]), 2, "cannot change token_dropout (0.2 -> 0.3)")
    one_line_error(invoke(train_main, ["--resume", resumed, "--epochs", 3, "--min-epoch-steps", 5]), 2, "cannot change min_epoch_steps (20 -> 5)")
    one_line_error(invoke(train_main, ["--resume", resumed, "--epochs", 3, "--latent", 3]), 2, "model settings differ", "latent_dim (2 -> 3)")
    other = tmp_path / "other.txt"
    other.write_text("\n".join(["xyzq", "qqzy", "zyxw"] * 20) + "\n", encoding="utf-8")
    one_line_error(invoke(train_main, ["--resume", resumed, "--epochs", 3, "--data", f"text:{other}"]), 2, "another vocabulary")
    assert read_checkpoint(resumed)["train_state"]["epoch"] == 2  # refused runs leave the checkpoint as it was
    # A checkpoint written before --min-epoch-steps went over its data once an epoch: it resumes so.
    assert text_resume_settings({"train_state": {"train_config": {"epochs": 2}}})["min_epoch_steps"] == 1
    assert text_resume_settings(read_checkpoint(resumed))["min_epoch_steps"] == 20


def test_text_early_stopping_keeps_the_best_epoch(tmp_path, text_file):
    data = load_text(f"text:{text_file}", max_len=16)
    # A high rate makes validation worsen soon: the run stops and serves the best epoch, not the last.
    config = TextTrainConfig(epochs=30, batch_size=16, min_epoch_steps=1, lr=0.05, kl_warmup=0, patience=2, iw_samples=2, quiet=True)
    result = train_text(tiny(data), data, config, out=tmp_path / "model.pt", side_outputs=False)
    m, history = result.metrics, result.history
    best = max(history, key=lambda r: r["val_bound"])
    assert m["best_epoch"] == best["epoch"] and m["epochs"] == len(history)
    assert m["stopped_early"] and len(history) == best["epoch"] + 2 < 30
    ckpt = read_checkpoint(tmp_path / "model.pt")
    served = {k: v for k, v in result.model.state_dict().items()}
    assert all(torch.equal(ckpt["state_dict"][k], served[k]) for k in served)
    # Where --resume would continue (it refuses a run that stopped early), the last epoch's weights, are kept too.
    assert any(not torch.equal(ckpt["train_state"]["last_state_dict"][k], served[k]) for k in served)


def test_text_iwae_objective_and_early_token_dropout(text_file):
    data = load_text(f"text:{text_file}", max_len=16)
    config = TextTrainConfig(epochs=3, batch_size=32, min_epoch_steps=25, kl_warmup=1, objective="iwae", iw_train=3, token_dropout=0.3,
                             token_dropout_epochs=1, iw_samples=4, quiet=True)
    result = train_text(tiny(data), data, config)
    assert [r["token_dropout"] for r in result.history] == [0.3, 0.0, 0.0]
    # 318 train lines are 10 steps of 32: an epoch of at least 25 steps is 3 passes; 24,000 lines need one.
    assert [r["passes"] for r in result.history] == [3, 3, 3] and result.metrics["passes_per_epoch"] == 3
    assert epoch_passes(24000, TextTrainConfig()) == 1 and epoch_passes(800, TextTrainConfig()) == 8
    # The validation bound of the IWAE objective is its K-sample bound: at least the one-sample ELBO (up to noise).
    assert all(r["val_bound"] >= r["val_elbo"] - 0.5 for r in result.history)
    assert result.history[-1]["val_bound"] > result.history[0]["val_bound"]
    assert result.metrics["test_iwae_nll"] <= -result.metrics["test_elbo"] + 0.5


@pytest.mark.parametrize("field, value", [("objective", "bowman"), ("iw_train", 0), ("patience", -1), ("token_dropout_epochs", -1.0),
                                          ("min_epoch_steps", 0)])
def test_text_train_config_refuses(field, value):
    with pytest.raises(ValueError, match=field):
        TextTrainConfig(**{field: value})


def test_text_cli_takes_what_the_sentence_vae_does_and_refuses_the_rest(tmp_path, text_file):
    # --prior standard and --iw-gradient standard are what it does: accepted (they were refused as options
    # that "do not apply"); --prior vamp, --iw-gradient dreg and image options are refused, saying why.
    base = ["--data", f"text:{text_file}", "--out", tmp_path / "m.pt", "--quiet"]
    one_line_error(invoke(train_main, [*base, "--prior", "vamp"]), 2, "--prior", "does not apply to --data text:FILE", "N(0, I)")
    one_line_error(invoke(train_main, [*base, "--objective", "iwae", "--iw-gradient", "dreg"]), 2, "--iw-gradient", "the bound's own")
    one_line_error(invoke(train_main, [*base, "--iw-gradient", "standard"]), 2, "--iw-gradient", "applies to --objective iwae only")
    one_line_error(invoke(train_main, [*base, "--ema", "0.99"]), 2, "--ema", "does not apply to --data text:FILE")
    assert not (tmp_path / "m.pt").exists()
    result = invoke(train_main, [*base, "--prior", "standard", "--objective", "iwae", "--iw-train", 2, "--iw-gradient", "standard", "--epochs", 1,
                                 "--max-len", 16, "--hidden", 16, "--latent", 2, "--min-epoch-steps", 1, "--iw-samples", 2])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.pt").is_file()
