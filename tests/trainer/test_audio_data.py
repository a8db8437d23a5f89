"""audio:DIR: reading WAV/FLAC, mono mix-down, resampling, clips and windows, splits, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from vae_edge.trainer.audio import AudioOptions
from vae_edge.trainer.data import DataError, load_data

RATE = 16000


def _write(path, pcm, rate=RATE, fmt=None):
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), pcm, rate, format=fmt)


def _tone(seconds: float, rate: int = RATE, freq: float = 440.0) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


def test_equal_length_files_are_one_clip_each_and_the_features_are_log_mel(tmp_path):
    for i in range(10):
        _write(tmp_path / f"{i}.wav", _tone(0.5, freq=200 + 50 * i))
    data = load_data(f"audio:{tmp_path}", "gaussian", audio=AudioOptions(frame_multiple=4))
    assert data.kind == "audio" and data.shape == (1, 64, 16) and "log-mel" in data.likelihood_reason  # vae-train printed "likelihood gaussian: "
    assert len(data.train) + len(data.val) + len(data.test) == 10
    assert data.pcm["train"].shape == (len(data.train), 8000)
    assert np.allclose(data.train[:, 0], data.frontend.log_mel(data.pcm["train"]), atol=1e-3)
    assert data.describe()["audio"]["frontend"]["samples"] == 8000
    # standardised per mel band: one offset per band, the same across frames
    assert np.all(data.offset == data.offset[:, :, :1]) and np.all(data.scale >= 0.5)


def test_stereo_flac_and_another_rate_are_mixed_down_and_resampled(tmp_path):
    stereo = np.stack([_tone(0.5, 22050), -_tone(0.5, 22050) * 0.5], axis=1)
    for i in range(3):
        _write(tmp_path / f"{i}.flac", stereo, 22050)
    data = load_data(f"audio:{tmp_path}", "gaussian", audio=AudioOptions(frame_multiple=4))
    pcm = np.concatenate([data.pcm[k] for k in ("train", "val", "test")])
    assert pcm.shape == (3, 8000)
    assert np.abs(pcm).max() == pytest.approx(0.075, abs=0.005)  # (0.3 - 0.15) / 2


def test_duration_pads_or_crops_and_windows_cut_long_recordings(tmp_path):
    for i, seconds in enumerate((0.3, 0.7, 1.1)):
        _write(tmp_path / f"{i}.wav", _tone(seconds))
    with pytest.raises(DataError, match="different lengths"):
        load_data(f"audio:{tmp_path}", "gaussian")
    data = load_data(f"audio:{tmp_path}", "gaussian", audio=AudioOptions(duration=0.5, frame_multiple=4))
    assert sum(len(v) for v in data.pcm.values()) == 3 and data.frontend.samples == 8000
    windowed = load_data(f"audio:{tmp_path}", "gaussian", audio=AudioOptions(window=0.25, stride=0.125, frame_multiple=4))
    # every 0.125 s while a whole 0.25 s window fits: 0.3 s holds 1, 0.7 s 4, 1.1 s 7
    assert sum(len(v) for v in windowed.pcm.values()) == 1 + 4 + 7


def test_split_is_by_file_so_windows_of_one_recording_stay_together(tmp_path):
    for i in range(10):
        _write(tmp_path / f"{i}.wav", _tone(1.0, freq=100 * (i + 1)))
    data = load_data(f"audio:{tmp_path}", "gaussian", audio=AudioOptions(window=0.25, frame_multiple=4))
    assert len(data.test) % 4 == 0 and len(data.val) % 4 == 0  # whole files of 4 windows each


def test_a_split_of_its_own_is_refused_not_ignored(tmp_path):
    from vae_edge.trainer.splits import plan

    _write(tmp_path / "a.wav", _tone(1.0))
    for split in (plan((0.9, 0.1, 0.0)), plan(test_spec="npy:elsewhere.npy")):
        with pytest.raises(DataError, match="audio:DIR cuts its own split") as info:
            load_data(f"audio:{tmp_path}", "gaussian", split=split)
        assert info.value.option == "--split"


@pytest.mark.parametrize("setup, match", [
    (lambda d: (d / "a.wav").write_bytes(b"not audio at all"), "not a readable WAV/FLAC"),
    (lambda d: _write(d / "a.wav", np.zeros(8000)), "digital silence"),
    (lambda d: None, "no .wav or .flac"),
])
def test_unusable_folders_are_refused(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(DataError, match=match):
        load_data(f"audio:{tmp_path}", "gaussian")


def test_audio_needs_a_gaussian_likelihood_and_sensible_options(tmp_path):
    _write(tmp_path / "a.wav", _tone(0.5))
    with pytest.raises(DataError, match="gaussian"):
        load_data(f"audio:{tmp_path}", "bernoulli")
    with pytest.raises(DataError, match="exclude each other"):
        AudioOptions(duration=1.0, window=1.0)
    with pytest.raises(DataError, match="as long as one window"):
        load_data(f"audio:{tmp_path}", "gaussian", audio=AudioOptions(window=2.0))


def test_vae_train_cli_on_audio_defaults_to_conv_and_gaussian(tmp_path):
    from click.testing import CliRunner

    from vae_edge.trainer.cli import cli

    for i in range(6):
        _write(tmp_path / "wavs" / f"{i}.wav", _tone(0.5, freq=300 + 40 * i))
    out = tmp_path / "model.pt"
    r = CliRunner().invoke(cli, ["--data", f"audio:{tmp_path / 'wavs'}", "--epochs", "1", "--channels", "4", "--iw-samples", "2", "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "conv [1, 64, 16]" in r.output and "gaussian" in r.output
    from vae_edge.models import read_checkpoint

    assert read_checkpoint(out)["train_state"]["train_config"]["lr"] == 1e-3  # audio's own default, not the digits MLP's 6e-3
    r = CliRunner().invoke(cli, ["--data", "digits", "--duration", "1", "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "audio:DIR only" in r.output


def test_resume_takes_the_recorded_audio_settings(tmp_path):
    from click.testing import CliRunner

    from vae_edge.models import read_checkpoint
    from vae_edge.trainer.cli import cli

    for i, seconds in enumerate((0.6, 0.8, 1.0)):
        _write(tmp_path / "wavs" / f"{i}.wav", _tone(seconds, freq=300 + 40 * i))
    out = tmp_path / "model.pt"
    first = ["--data", f"audio:{tmp_path / 'wavs'}", "--arch", "conv1d", "--duration", "0.5", "--mels", "32", "--channels", "4", "--iw-samples", "2", "--quiet"]
    assert CliRunner().invoke(cli, [*first, "--epochs", "1", "--out", str(out)]).exit_code == 0
    r = CliRunner().invoke(cli, ["--resume", str(out), "--epochs", "2"])
    assert r.exit_code == 0, r.output
    ckpt = read_checkpoint(out)
    assert ckpt["metrics"]["epochs"] == 2 and ckpt["config"]["arch"] == "conv1d" and ckpt["data"]["shape"] == [32, 16]
