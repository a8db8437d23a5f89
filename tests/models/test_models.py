import os

import pytest
import torch

from vae_edge.models import CheckpointError, VAEConfig, build_model, load_model, read_checkpoint


def test_config_round_trips_through_a_plain_dict():
    cfg = VAEConfig(input_shape=(1, 8, 8), latent_dim=3, hidden_dims=(32, 16), activation="tanh")
    d = cfg.to_dict()
    assert d["input_shape"] == [1, 8, 8] and d["hidden_dims"] == [32, 16] and d["activation"] == "tanh"
    assert VAEConfig.from_dict(d) == cfg
    # A config saved before the option existed was ReLU's.
    assert VAEConfig.from_dict({k: v for k, v in d.items() if k != "activation"}).activation == "relu"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": ()},
        {"input_shape": (0, 8)},
        {"input_shape": (4,), "latent_dim": 0},
        {"input_shape": (4,), "hidden_dims": (0,)},
        {"input_shape": (4,), "arch": "transformer"},
        {"input_shape": (4,), "likelihood": "poisson"},
        {"input_shape": (4,), "activation": "gelu"},
        {"input_shape": (1, 8, 8), "arch": "conv", "activation": "tanh"},  # the conv models are ReLU's
    ],
)
def test_config_refuses_invalid_values(kwargs):
    with pytest.raises(ValueError):
        VAEConfig(**kwargs)


def test_config_refuses_unknown_keys():
    with pytest.raises(ValueError, match="unknown"):
        VAEConfig.from_dict({"input_shape": [4], "latnet_dim": 2})


@pytest.mark.parametrize("shape", [(1, 8, 8), (12,), (3, 4, 5)])
def test_encoder_and_decoder_shapes(shape):
    model = build_model(VAEConfig(input_shape=shape, latent_dim=5, hidden_dims=(16,))).eval()
    x = torch.rand(7, *shape)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        x_mean = model.decode(mu)
        out, mu2, _ = model(x)
    assert mu.shape == logvar.shape == (7, 5)
    assert x_mean.shape == (7, *shape)
    assert x_mean.min().item() >= 0.0 and x_mean.max().item() <= 1.0  # Bernoulli means are probabilities
    assert out.shape == x.shape and torch.equal(mu, mu2)


def test_reparameterize_is_seedable_and_centred_on_mu():
    mu, logvar = torch.zeros(4000, 2) + 3.0, torch.zeros(4000, 2) + 2 * torch.log(torch.tensor(0.5))
    z1 = build_model(VAEConfig(input_shape=(2,))).reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    z2 = build_model(VAEConfig(input_shape=(2,))).reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert torch.equal(z1, z2)
    assert abs(z1.mean().item() - 3.0) < 0.05 and abs(z1.std().item() - 0.5) < 0.05


def test_checkpoint_round_trip_restores_every_tensor(trained):
    path, result = trained
    ckpt = torch.load(path, weights_only=True)  # the contract: plain data, no pickled modules
    assert ckpt["format"] == "vae-edge/1"
    assert {"config", "state_dict", "data", "metrics", "optimizer", "train_state"} <= set(ckpt)
    assert ckpt["data"]["preprocessing"] == {"kind": "affine", "offset": 0.0, "scale": 16.0, "formula": "(x - offset) / scale"}
    model = load_model(path)
    assert not model.training
    original = result.model.state_dict()
    restored = model.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pt"
    torch.save({"format": "vae-edge/1", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)
    assert not marker.exists()


def test_missing_corrupt_and_foreign_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        read_checkpoint(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a vae-edge checkpoint"):
        read_checkpoint(foreign)


def test_truncated_checkpoint_is_refused(tmp_path, model_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(model_path.read_bytes()[:2000])
    with pytest.raises(CheckpointError):
        load_model(cut)
