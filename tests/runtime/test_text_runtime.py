"""TextVAE: the numpy + onnxruntime text runtime agrees with PyTorch and refuses bad lines."""

import numpy as np
import pytest
import torch

from vae_edge.models import load_model
from vae_edge.runtime import VAE, TextVAE, load
from vae_edge.runtime.rng import Generator, block_size, normals
from vae_edge.runtime.text import LineReport
from vae_edge.runtime.vocab import EOS
from vae_edge.runtime.vocab import TextError, read_text


@pytest.fixture(scope="module")
def vae(text_bundle):
    return TextVAE.load(text_bundle, threads=1)


def test_load_returns_the_modality_object(text_bundle):
    assert isinstance(load(text_bundle), TextVAE)
    assert load(text_bundle, precision="auto").precision == "fp32"  # vae-run --precision auto: no recommended pair
    assert isinstance(load(), VAE)


def test_sample_same_seed_same_lines(vae):
    a = vae.sample(20, seed=3)
    assert a == vae.sample(20, seed=3)
    assert a != vae.sample(20, seed=4)
    assert all(isinstance(s, str) and len(s) <= vae.max_len for s in a)
    assert len(vae.sample(5, seed=0, max_len=3)[0]) <= 3


def test_top_1_and_temperature_0_are_greedy_from_the_shared_generator(vae):
    greedy = vae.sample(8, seed=1, temperature=0)
    assert vae.sample(8, seed=1, top_k=1) == greedy
    # line i's z: the first latent normals of block i of seed 1's SplitMix64 stream (latent + max_len words, made even)
    size = block_size(vae.latent_dim, vae.max_len)
    z = np.stack([normals(1, vae.latent_dim, i * size) for i in range(8)]).astype(np.float32)
    assert vae.decode(z) == greedy


@pytest.mark.parametrize("top_k", [None, 6])
def test_each_line_draws_from_its_own_block(vae, top_k):
    """Line i's character t is drawn with uniform t after line i's z, in line i's block of the stream; so
    sample(1) is the first line of sample(n), a smaller max_len cuts the same lines, and batch 1 (a
    path of its own) draws what the batch does."""
    n, max_len = 5, vae.max_len
    size = block_size(vae.latent_dim, max_len)
    drawn = vae.sample(n, seed=11, temperature=0.8, top_k=top_k)
    single = []
    for i in range(n):
        block = Generator(11)
        block.random(i * size)
        z = block.standard_normal((1, vae.latent_dim)).astype(np.float32)
        ids = list(vae._stepper(2).run(np.repeat(z, 2, axis=0), max_len, 0.8, top_k, np.repeat(block.random((1, max_len)), 2, axis=0))[0])
        single.append(vae.vocab.text(ids[: ids.index(EOS)] if EOS in ids else ids))
    assert single == drawn
    assert [vae.sample(1, seed=11, temperature=0.8, top_k=top_k)[0]] == drawn[:1] and vae.sample(3, seed=11, temperature=0.8, top_k=top_k) == drawn[:3]
    assert vae.sample(n, seed=11, temperature=0.8, top_k=top_k, max_len=3) == [line[:3] for line in drawn]


def test_a_bad_seed_is_refused(vae):
    for seed in (-1, 2**64, 1.5):
        with pytest.raises(ValueError, match="seed"):
            vae.sample(1, seed=seed)


def test_reconstruct_and_scores_match_pytorch(vae, text_model_path):
    lines = ["bako", "rimesa", "tutulo"]
    model = load_model(text_model_path)
    from vae_edge.trainer.textloop import decoder_inputs, encode_split

    tokens, lengths = encode_split(vae.vocab, lines)
    with torch.no_grad():
        mu, logvar = model.encode(tokens, lengths)
        nll = model.line_nll(mu, decoder_inputs(tokens), tokens)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        greedy = [vae.vocab.text(ids) for ids in model.greedy(mu, vae.max_len)]
    np.testing.assert_allclose(vae.anomaly_score(lines), (nll + kl).numpy(), rtol=1e-4)
    np.testing.assert_allclose(vae.anomaly_score(lines, per="char"), vae.anomaly_score(lines) / (lengths.numpy()), rtol=1e-6)
    assert vae.reconstruct(lines) == greedy


def test_interpolate_runs_from_a_to_b(vae):
    path = vae.interpolate("bako", "nimesalo", steps=5)
    assert len(path) == 5
    assert path[0] == vae.reconstruct(["bako"])[0] and path[-1] == vae.reconstruct(["nimesalo"])[0]


def test_odd_lines_score_higher_and_cross_the_threshold(vae):
    normal = vae.anomaly_score(["bako", "rime"]).max()
    odd = vae.anomaly_score(["zzqxv!?#", "QQQQQQQQ"])
    assert (odd > normal).all()
    assert vae.is_anomaly(["zzqxv!?#QQQQ"]).all()
    assert vae.threshold("p99") == vae.threshold(0.99)


def test_score_stream_reports_bad_lines_in_place(vae):
    lines = ["bako", "", b"\xff\xfe", "x" * 100, b"rime\n", "sa"]
    out = list(vae.score_stream(lines, batch_size=2, bad_lines="report"))
    assert [isinstance(s, LineReport) for s in out] == [False, True, True, True, False, False]
    np.testing.assert_allclose([out[0], out[4], out[5]], vae.anomaly_score(["bako", "rime", "sa"]), rtol=1e-6)
    assert "UTF-8" in out[2].reason and "limit" in out[3].reason
    with pytest.raises(TextError, match="line 2: empty"):
        list(vae.score_stream(lines))


@pytest.mark.parametrize("lines, message", [([""], "empty"), (["x" * 100], "limit"), ([3], "string"), ("bako", "one string"), ([], "no lines")])
def test_bad_lines_refused(vae, lines, message):
    with pytest.raises(ValueError, match=message):
        vae.anomaly_score(lines)


def test_bad_sampling_options_refused(vae):
    for kwargs in ({"temperature": -1}, {"top_k": 0}, {"max_len": 10_000}):
        with pytest.raises(ValueError):
            vae.sample(2, seed=0, **kwargs)


def test_the_image_api_refuses_a_text_bundle(text_bundle):
    from vae_edge.runtime import BundleError, default_bundle_path

    with pytest.raises(BundleError, match="text bundle"):
        VAE.load(text_bundle)
    with pytest.raises(BundleError, match="not a text bundle"):
        TextVAE.load(default_bundle_path())


def test_a_file_has_one_line_per_line_feed(tmp_path):
    # U+2028, form feed and a lone CR are characters of a line, as the stream (readline) and `wc -l` see
    # it; str.splitlines broke at them, so `vae-run score FILE` printed more scores than the file had lines.
    path = tmp_path / "lines.txt"
    path.write_bytes("one\u2028two\r\nthree\x0cfour\nfive\rsix\n\nseven".encode())
    read = read_text(path)
    assert read.lines == ["one\u2028two", "three\x0cfour", "five\rsix", "seven"] and read.blank_skipped == 1


def test_a_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "notepad.txt"
    path.write_text("bako\nrime\n", encoding="utf-16")
    with pytest.raises(TextError, match="UTF-16 text .*expected UTF-8"):
        read_text(path)
