"""Audio end to end: audio:DIR -> model.pt -> bundle (front end in the encoder graph) -> AudioVAE and vae-run."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import one_line_error

from vae_edge.runtime.audio_vae import AudioVAE
from vae_edge.runtime.cli import cli
from vae_edge.runtime.wavfile import read_wav, write_wav

RATE, CLIP = 16000, 8000


@pytest.fixture(scope="module")
def vae(audio_bundle) -> AudioVAE:
    return AudioVAE.load(audio_bundle, threads=1)


@pytest.fixture(scope="module")
def clips(audio_folder) -> np.ndarray:
    return np.stack([read_wav(p, sample_rate=RATE)[0] for p in sorted(audio_folder.glob("*.wav"))[:6]])


def test_manifest_records_the_front_end_and_every_variant_passed(audio_bundle, vae):
    m = vae.manifest
    assert m["data"]["kind"] == "audio" and m["data"]["audio"]["samples"] == CLIP
    assert m["graphs"]["encoder"]["inputs"] == {"pcm": ["batch", CLIP]}
    assert set(m["graphs"]["encoder"]["outputs"]) == {"mu", "logvar", "log_mel"}
    assert all(v["accuracy"]["passed"] for v in m["variants"].values())
    assert m["variants"]["fp32"]["accuracy"]["encoder_log_mel_max_abs"] < 1e-3
    assert vae.frontend.shape == (64, 16)


def test_runtime_load_returns_the_audio_object(audio_bundle):
    from vae_edge.runtime import load

    vae = load(audio_bundle, precision="int8-static", threads=1)
    assert isinstance(vae, AudioVAE) and vae.precision == "int8-static" and vae.sample_rate == RATE
    assert load(audio_bundle, precision="auto", threads=1).precision == "fp32"  # vae-run --precision auto: no recommended pair


def test_in_graph_front_end_matches_the_numpy_reference(vae, clips):
    assert np.abs(vae.features(clips) - vae.frontend.log_mel(clips)).max() < 1e-3


def test_int8_variant_keeps_the_front_end_float(audio_bundle):
    import onnx

    graph = onnx.load(str(audio_bundle / "encoder.int8-static.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    first_conv = next(n for n in graph.node if n.op_type == "Conv")
    assert producers.get(first_conv.input[0]) is None or producers[first_conv.input[0]].op_type != "DequantizeLinear"
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)  # the VAE's own layers are quantized


def test_api_shapes_and_silence_scores_finite(vae, clips):
    mu, logvar = vae.encode(clips)
    assert mu.shape == logvar.shape == (6, 4)
    assert vae.reconstruct(clips).shape == (6, 64, 16) and vae.sample(3, seed=1).shape == (3, 64, 16)
    assert np.array_equal(vae.sample(2, seed=3), vae.sample(2, seed=3))
    assert vae.interpolate(clips[0], clips[1], steps=5).shape == (5, 64, 16)
    silence = vae.anomaly_score(np.zeros(CLIP, np.float32))
    assert np.isfinite(silence) and silence > vae.threshold(0.99)
    assert vae.to_pcm(vae.sample(1, seed=0)).shape == (1, CLIP)


def test_int16_pcm_scores_as_its_float_equivalent(vae, clips):
    ints = np.round(clips * 32767).astype(np.int16)
    assert np.allclose(vae.anomaly_score(ints), vae.anomaly_score(ints.astype(np.float32) / 32768), rtol=1e-6)


def test_stream_scores_each_window_like_the_batch_api(vae, clips):
    recording = clips.reshape(-1)
    blocks = np.array_split(recording, 17)
    streamed = list(vae.score_windows(blocks, stride=0.25))
    starts, windows = vae.windows(recording, stride=0.25)
    assert [s for s, _ in streamed] == pytest.approx(list(starts))
    assert np.allclose([s for _, s in streamed], vae.anomaly_score(windows), rtol=1e-5)


def test_faults_score_higher_than_normal_sound(vae):
    from bench.audio_data import machine_sound

    rng = np.random.default_rng(5)
    normal = np.stack([machine_sound(rng, 0.5) for _ in range(8)])
    clicks = np.stack([machine_sound(rng, 0.5, fault="clicks") for _ in range(8)])
    assert np.median(vae.anomaly_score(clicks)) > np.median(vae.anomaly_score(normal))


def test_runtime_load_and_audio_commands_never_import_torch(audio_bundle, tmp_path, audio_folder):
    wav = sorted(audio_folder.glob("*.wav"))[0]
    code = (
        "import sys; from vae_edge.runtime.cli import main; "
        f"sys.argv = ['vae-run', 'score', {str(audio_bundle)!r}, {str(wav)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'torch loaded'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert str(wav) in done.stdout


def test_vae_run_sample_reconstruct_and_score(audio_bundle, audio_folder, tmp_path):
    runner = CliRunner()
    wav = sorted(audio_folder.glob("*.wav"))[1]
    r = runner.invoke(cli, ["sample", str(audio_bundle), "-n", "2", "--seed", "0", "--wav", str(tmp_path / "out"), "--grid", str(tmp_path / "s.png"), "--iterations", "4", "--normalize"])
    assert r.exit_code == 0, r.output
    written = sorted((tmp_path / "out").glob("*.wav"))
    assert len(written) == 2 and read_wav(written[0], sample_rate=RATE)[0].shape == (CLIP,)
    assert np.abs(read_wav(written[0])[0]).max() == pytest.approx(0.5, abs=1e-3)  # --normalize
    assert (tmp_path / "s.png").stat().st_size > 0
    long = tmp_path / "long.wav"
    write_wav(long, np.concatenate([read_wav(p)[0] for p in sorted(audio_folder.glob("*.wav"))[:3]]), RATE)
    r = runner.invoke(cli, ["reconstruct", str(audio_bundle), str(long), "--wav", str(tmp_path / "rec.wav"), "--grid", str(tmp_path / "rec.png"), "--iterations", "4"])
    assert r.exit_code == 0, r.output
    assert read_wav(tmp_path / "rec.wav")[0].shape == (3 * CLIP,)
    r = runner.invoke(cli, ["score", str(audio_bundle), str(wav), str(long), "--out", str(tmp_path / "scores.npy")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "scores.npy").shape == (1 + 3,)  # one clip, then three windows
    assert "one score per window" in r.output
    tail = write_wav(tmp_path / "tail.wav", np.concatenate([read_wav(long)[0], read_wav(wav)[0][: CLIP // 2]]), RATE)
    r = runner.invoke(cli, ["score", str(audio_bundle), str(tail)])
    starts = [float(line.split("\t")[1]) for line in r.output.splitlines() if line.startswith(str(tail))]
    assert r.exit_code == 0 and starts == [0.0, 0.5, 1.0, 1.25], r.output  # one more window ends at the last sample: no tail goes unscored
    r = runner.invoke(cli, ["reconstruct", str(audio_bundle), str(tail), "--wav", str(tmp_path / "tail-rec.wav"), "--iterations", "2"])
    assert r.exit_code == 0 and read_wav(tmp_path / "tail-rec.wav")[0].shape == (3 * CLIP + CLIP // 2,), r.output  # as long as its input


def test_vae_run_score_stream_reads_raw_pcm_from_stdin(audio_bundle, audio_folder):
    pcm = np.concatenate([read_wav(p)[0] for p in sorted(audio_folder.glob("*.wav"))[:4]])
    raw = np.round(pcm * 32767).astype("<i2").tobytes()
    r = CliRunner().invoke(cli, ["score", str(audio_bundle), "-", "--stream", "--pcm", "s16le"], input=raw)
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if "\t" in line]
    assert [float(line.split("\t")[0]) for line in lines] == [0.0, 0.5, 1.0, 1.5]
    assert "not scored" not in r.output  # the four clips end where the last window ends
    r = CliRunner().invoke(cli, ["score", str(audio_bundle), "-", "--stream", "--pcm", "s16le"], input=raw[: -2 * 1000])
    assert r.exit_code == 0 and "note: the last 7000 samples (0.438 s) came after the last complete window and were not scored" in r.output, r.output
    # `arecord | vae-run score --stream` and `cat x.wav | ...`: the WAV header is checked and skipped, not scored as samples
    from vae_edge.runtime.wavfile import encode_wav

    wav = encode_wav(np.frombuffer(raw, "<i2") / 32767.0, RATE)
    r = CliRunner().invoke(cli, ["score", str(audio_bundle), "-", "--stream", "--pcm", "s16le"], input=wav)
    assert r.exit_code == 0 and "starts with a WAV header (16000 Hz, mono, 16-bit); it is skipped" in r.output, r.output
    assert [line for line in r.output.splitlines() if "\t" in line] == lines
    for stream, why in ((encode_wav(np.zeros(CLIP), 8000), "8000 Hz"), (wav[:30], "ends before its data chunk")):
        r = CliRunner().invoke(cli, ["score", str(audio_bundle), "-", "--stream", "--pcm", "s16le"], input=stream)
        assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith("Error: ") and why in r.output, r.output
    r = CliRunner().invoke(cli, ["score", str(audio_bundle), "-", "--stream", "--pcm", "f32le"], input=wav)
    assert r.exit_code == 2 and "--pcm f32le at this bundle's 16000 Hz is mono 32-bit float PCM" in r.output, r.output


def _bad_files(folder, good):
    import wave

    bad = {"notaudio.wav": b"this is not a WAV file"}
    with wave.open(str(folder / "stereo8.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(1), w.setframerate(RATE), w.writeframes(bytes(2 * CLIP))
    write_wav(folder / "rate.wav", np.full(CLIP, 0.1), 8000)
    write_wav(folder / "short.wav", np.full(CLIP // 2, 0.1), RATE)
    raw = good.read_bytes()
    bad.update({"header.wav": raw[:30], "data.wav": raw[: len(raw) // 2]})
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return ["notaudio.wav", "stereo8.wav", "rate.wav", "short.wav", "header.wav", "data.wav"]


def test_bad_audio_inputs_get_one_error_line_exit_2_and_nothing_written(audio_bundle, audio_folder, tmp_path):
    runner = CliRunner()
    for name in _bad_files(tmp_path, sorted(audio_folder.glob("*.wav"))[0]):
        for args in (["score", str(audio_bundle), str(tmp_path / name), "--out", str(tmp_path / "o.npy")],
                     ["reconstruct", str(audio_bundle), str(tmp_path / name), "--wav", str(tmp_path / "o.wav")]):
            r = runner.invoke(cli, args)
            assert r.exit_code == 2, (name, r.output)
            errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1 and "Traceback" not in r.output, (name, r.output)
            assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.wav").exists()


def test_a_silent_wav_is_scored_and_flagged_as_a_silent_stream_window_is(audio_bundle, vae, tmp_path):
    silent = write_wav(tmp_path / "silence.wav", np.zeros(CLIP), RATE)
    r = CliRunner().invoke(cli, ["score", str(audio_bundle), str(silent), "--out", str(tmp_path / "s.npy")])
    assert r.exit_code == 0, r.output
    (line,) = [line for line in r.output.splitlines() if line.startswith(str(silent))]
    assert line.endswith("ANOMALY")
    score = np.load(tmp_path / "s.npy")
    assert score.shape == (1,) and np.isfinite(score[0]) and score[0] > vae.threshold(0.99)
    np.testing.assert_allclose(score[0], vae.anomaly_score(np.zeros(CLIP, np.float32)), rtol=1e-5)


def test_a_stream_shorter_than_one_window_is_an_error(audio_bundle, tmp_path):
    r = CliRunner().invoke(cli, ["score", str(audio_bundle), "-", "--stream"], input=bytes(1000))
    one_line_error(r, 2, "standard input: the stream ended after 500 samples, before one window was complete")
    # An empty stream is an error too, as for image and table streams; so is a source that is not there.
    one_line_error(CliRunner().invoke(cli, ["score", str(audio_bundle), "-", "--stream"], input=b""), 2, "standard input: is empty", "s16le PCM")
    (tmp_path / "empty.raw").write_bytes(b"")
    for src, fragment in (("empty.raw", "is empty"), ("missing.raw", "no such file"), (".", "is a folder")):
        path = tmp_path / src
        one_line_error(CliRunner().invoke(cli, ["score", str(audio_bundle), str(path), "--stream"]), 2, f"{path}: {fragment}")


def test_a_vamp_prior_is_refused_for_audio_by_the_exporter_and_the_runtime(audio_model, audio_bundle, tmp_path):
    # The audio runtime scores and samples under N(0, I): a VampPrior audio model is not exported, and a
    # manifest claiming one is not loaded.
    import json
    import shutil

    import torch

    from vae_edge.export.bundle import ExportError, export_bundle
    from vae_edge.models import read_checkpoint
    from vae_edge.runtime import BundleError
    from vae_edge.trainer import save_checkpoint

    ckpt = read_checkpoint(audio_model)
    ckpt["config"] = {**ckpt["config"], "prior": "vamp", "prior_components": 2}
    ckpt["state_dict"] = {**ckpt["state_dict"], "pseudo_inputs": torch.zeros(2, *ckpt["config"]["input_shape"])}
    for key in ("train_state", "optimizer"):  # their weights lack the pseudo-inputs
        ckpt.pop(key, None)
    save_checkpoint(tmp_path / "model.pt", ckpt)
    with pytest.raises(ExportError, match="audio bundle's runtime scores and samples under N"):
        export_bundle(tmp_path / "model.pt", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
    shutil.copytree(audio_bundle, tmp_path / "copy")
    m = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    m["model"]["config"] |= {"prior": "vamp", "prior_components": 1}
    m["model"]["prior"] = {"kind": "vamp", "components": 1, "mu": [[0.0] * 4], "logvar": [[0.0] * 4]}
    (tmp_path / "copy" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="N\\(0, I\\) only"):
        AudioVAE.load(tmp_path / "copy")
