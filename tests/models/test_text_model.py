"""The sentence VAE: the step the runtime loops over is the teacher-forced decoder, one position at a time."""

import pytest
import torch

from vae_edge.models import model_from_checkpoint, read_checkpoint
from vae_edge.models.text import BOS, EOS, PAD, TextVAEConfig, build_text_model


def tiny(**kw):
    torch.manual_seed(0)
    return build_text_model(TextVAEConfig(vocab_size=12, max_len=8, latent_dim=3, embed_dim=5, hidden_dim=7, **kw)).eval()


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="vocab_size"):
        TextVAEConfig(vocab_size=4, max_len=8)
    with pytest.raises(ValueError, match="gru"):
        TextVAEConfig(vocab_size=10, max_len=8, arch="mlp")
    with pytest.raises(ValueError, match="unknown"):
        TextVAEConfig.from_dict({"vocab_size": 10, "max_len": 8, "typo": 1})


@torch.no_grad()
def test_step_by_step_equals_teacher_forced():
    model = tiny()
    z = torch.randn(2, 3)
    tokens = torch.tensor([[BOS, 5, 6, 7], [BOS, 8, 9, 4]])
    full = model.decoder(z, tokens)  # (2, 4, V) log-probs
    state = torch.full((2, 7), 123.0)  # ignored at <bos>: the initial state comes from z
    for t in range(tokens.shape[1]):
        logits, state = model.decoder.step(z, tokens[:, t], state)
        torch.testing.assert_close(torch.log_softmax(logits, -1), full[:, t], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_encoder_ignores_padding_after_the_line():
    model = tiny()
    short = model.encode(torch.tensor([[5, 6, EOS]]), torch.tensor([3]))[0]
    padded = model.encode(torch.tensor([[5, 6, EOS, PAD, PAD]]), torch.tensor([3]))[0]
    torch.testing.assert_close(short, padded)


@torch.no_grad()
def test_z_changes_the_decoder_and_the_baseline_has_no_encoder():
    model = tiny()
    tokens = torch.tensor([[BOS, 5, 6]])
    assert not torch.allclose(model.decoder(torch.zeros(1, 3), tokens), model.decoder(torch.ones(1, 3), tokens))
    lm = tiny(latent=False)
    assert lm.encoder is None
    torch.testing.assert_close(lm.decoder(torch.zeros(1, 3), tokens), lm.decoder(torch.ones(1, 3), tokens))


def test_checkpoint_round_trip(text_model_path):
    ckpt = read_checkpoint(text_model_path)
    model = model_from_checkpoint(ckpt)
    assert isinstance(model.config, TextVAEConfig)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ckpt["state_dict"][name]), name
