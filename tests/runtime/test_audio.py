"""The torch-free audio pieces: front-end geometry and numpy features, Griffin-Lim, WAV, PCM and windows."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from vae_edge.runtime.audio import AudioError, FrontEnd, griffin_lim
from vae_edge.runtime.pcm import Windows, as_pcm, decode_pcm, windows
from vae_edge.runtime.wavfile import WavError, decode_wav, encode_wav, read_wav, write_wav

RATE = 16000


def _tone(freq: float, n: int = RATE, amp: float = 1.0) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / RATE)).astype(np.float32)


def test_frames_round_up_to_the_multiple_and_padding_fits():
    fe = FrontEnd(samples=16000, frame_multiple=8)
    assert fe.frames % 8 == 0 and fe.frames >= 1 + 16000 // fe.hop
    left, right = fe.pad
    assert left == fe.n_fft // 2 and right >= 0
    assert (fe.frames - 1) * fe.hop + fe.n_fft == left + fe.samples + right


@pytest.mark.parametrize("bad, match", [
    (dict(hop=1000), "hop"), (dict(samples=100), "shorter than one FFT frame"), (dict(n_mels=400, n_fft=256, hop=128), "covers no FFT bin"),
    (dict(floor=0), "floor"), (dict(fmin=9000), "fmin"), (dict(sample_rate=0), "sample_rate"),
])
def test_bad_front_end_settings_are_refused(bad, match):
    with pytest.raises(AudioError, match=match):
        FrontEnd(**bad)


def test_full_scale_tone_reads_near_power_one_and_silence_reads_the_floor():
    fe = FrontEnd()
    feats = fe.log_mel(np.stack([_tone(1000.0), np.zeros(RATE, np.float32)]))
    assert -1.5 < feats[0].max() < 0.5  # power ~1 (Hann leakage shares it between neighbouring bins)
    assert np.all(np.isfinite(feats)) and np.all(feats[1] == np.log(fe.floor))


def test_tone_lands_in_the_mel_band_of_its_frequency():
    fe = FrontEnd()
    band = int(np.argmax(fe.log_mel(_tone(3000.0)[None])[0].mean(axis=1)))
    centres = np.argmax(fe.mel_matrix(), axis=1) * RATE / fe.n_fft
    assert abs(centres[band] - 3000.0) < 200.0


def test_front_end_round_trips_through_its_dict():
    fe = FrontEnd(samples=8000, n_mels=32, frame_multiple=4)
    assert FrontEnd.from_dict(fe.to_dict()) == fe
    with pytest.raises(AudioError, match="unknown settings"):
        FrontEnd.from_dict({**fe.to_dict(), "mels": 3})


def test_griffin_lim_gives_sound_whose_features_approach_the_target():
    fe = FrontEnd(samples=8000)
    rng = np.random.default_rng(0)
    t = np.arange(8000) / RATE
    pcm = (0.3 * sum(np.sin(2 * np.pi * 110 * k * t) / k for k in range(1, 8)) + 0.02 * rng.standard_normal(8000))[None]
    target = fe.log_mel(pcm)

    def lsd(iterations: int) -> float:
        out = griffin_lim(target, fe, iterations=iterations)
        assert out.shape == pcm.shape and out.dtype == np.float32 and np.abs(out).max() <= 1.0
        return float(np.sqrt((((fe.log_mel(out) - target) * 10 / np.log(10)) ** 2).mean(axis=1)).mean())

    one, many = lsd(1), lsd(32)
    assert many < one and many < 6.0  # dB


def test_griffin_lim_refuses_wrong_shapes_and_non_finite_values():
    fe = FrontEnd(samples=8000)
    with pytest.raises(AudioError, match="expected"):
        griffin_lim(np.zeros((1, 3, 4)), fe)
    with pytest.raises(AudioError, match="NaN"):
        griffin_lim(np.full((1, *fe.shape), np.nan), fe)


def test_wav_round_trip_16_bit(tmp_path):
    pcm = _tone(440.0, 4000, amp=0.5)
    path = write_wav(tmp_path / "a.wav", pcm, RATE)
    back, rate = read_wav(path, sample_rate=RATE)
    assert rate == RATE and back.shape == pcm.shape and np.abs(back - pcm).max() < 1e-4


def _raw_wav(channels: int, width: int, frames: bytes, rate: int = RATE) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def test_stereo_is_mixed_down_and_24_bit_is_read():
    left, right = np.full(10, 0.5), np.full(10, -0.25)
    stereo = (np.stack([left, right], axis=1) * 32767).astype("<i2").tobytes()
    mono, _ = decode_wav(_raw_wav(2, 2, stereo))
    assert np.allclose(mono, 0.125, atol=1e-4)
    ints = (np.full(10, 0.25) * 2**23).astype("<i4")
    packed = np.frombuffer(ints.tobytes(), np.uint8).reshape(-1, 4)[:, :3].tobytes()
    assert np.allclose(decode_wav(_raw_wav(1, 3, packed))[0], 0.25)
    negative = np.frombuffer((np.full(4, -0.5) * 2**23).astype("<i4").tobytes(), np.uint8).reshape(-1, 4)[:, :3].tobytes()
    assert np.allclose(decode_wav(_raw_wav(1, 3, negative))[0], -0.5)


def test_a_wave_format_extensible_header_of_pcm_is_read():
    # sox and arecord write this header for 24-bit or multichannel sound; Python 3.11's wave refused it
    plain = _raw_wav(2, 2, (np.full((10, 2), 0.25) * 32767).astype("<i2").tobytes())
    guid_pcm = bytes.fromhex("0100000000001000800000aa00389b71")
    fmt = b"\xfe\xff" + plain[22:36] + (22).to_bytes(2, "little") + (16).to_bytes(2, "little") + (3).to_bytes(4, "little") + guid_pcm
    extensible = b"RIFF" + (len(plain) - 8 + 24).to_bytes(4, "little") + b"WAVEfmt " + (40).to_bytes(4, "little") + fmt + plain[36:]
    assert np.array_equal(decode_wav(extensible, sample_rate=RATE)[0], decode_wav(plain)[0])
    float_guid = extensible.replace(guid_pcm, b"\x03" + guid_pcm[1:])  # 16-bit samples tagged as float
    with pytest.raises(WavError, match="16-bit float WAV is not supported"):
        decode_wav(float_guid)
    compressed = extensible.replace(guid_pcm, b"\x02" + guid_pcm[1:])  # ADPCM
    with pytest.raises(WavError, match="compressed WAV"):
        decode_wav(compressed)


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_a_float_wav_reads_as_vae_train_reads_it(tmp_path, subtype):
    # vae-train (soundfile) trains on float WAVs; vae-run refused them ("float or compressed WAV").
    import soundfile

    t = np.arange(RATE // 10) / RATE
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.cos(2 * np.pi * 440 * t)], axis=1)
    stereo[5] = [1.75, 1.5]  # beyond full scale: clipped to it, scored (as an f32le stream), not refused
    for extensible in (False, True):
        path = tmp_path / f"f{extensible}.wav"
        soundfile.write(path, stereo, RATE, subtype=subtype, format="WAVEX" if extensible else "WAV")
        pcm, rate = read_wav(path, sample_rate=RATE)
        trained, _ = soundfile.read(path, dtype="float64", always_2d=True)
        assert rate == RATE and pcm.dtype == np.float32
        np.testing.assert_allclose(pcm, np.clip(trained, -1, 1).mean(axis=1), atol=1e-7)
    stereo[7] = [np.nan, 0.0]
    soundfile.write(tmp_path / "nan.wav", stereo, RATE, subtype=subtype)
    with pytest.raises(WavError, match="NaN or Inf"):
        read_wav(tmp_path / "nan.wav")


@pytest.mark.parametrize("raw, match", [
    (b"hello world, not audio", "not a WAV file"),
    (b"", "is empty"),  # was "not a WAV file (expected a RIFF/WAVE header, got b'')"
    (_raw_wav(2, 1, bytes(64)), "8-bit"),
    (_raw_wav(1, 2, bytes(64))[:30], "unreadable WAV header"),
    (_raw_wav(1, 2, bytes(6400))[:1000], "truncated"),
    (_raw_wav(1, 2, b""), "no samples"),
    (_raw_wav(1, 2, bytes(64), rate=8000), "8000 Hz, the model expects 16000"),
])
def test_bad_wavs_are_refused_with_the_reason(raw, match):
    with pytest.raises(WavError, match=match):
        decode_wav(raw, "x.wav", sample_rate=RATE)


def test_encode_wav_clips_and_writes_16_bit():
    raw = encode_wav(np.array([2.0, -2.0, 0.0]), RATE)
    pcm, _ = decode_wav(raw)
    assert np.allclose(pcm, [32767 / 32768, -32767 / 32768, 0.0])


def test_as_pcm_takes_int16_and_refuses_out_of_range_floats_and_wrong_lengths():
    a, single = as_pcm(np.array([16384, -32768], np.int16), 2)
    assert single and np.allclose(a, [[0.5, -1.0]])
    with pytest.raises(AudioError, match="peak"):
        as_pcm(np.array([[0.0, 3000.0]], np.float32), 2)
    with pytest.raises(AudioError, match=r"\[n, 4\]"):
        as_pcm(np.zeros((1, 3), np.float32), 4)
    with pytest.raises(AudioError, match="int16"):
        as_pcm(np.zeros(4, np.int32), 4)


def test_decode_pcm_formats():
    assert np.allclose(decode_pcm(np.array([16384, -16384], "<i2").tobytes(), "s16le"), [0.5, -0.5])
    assert np.allclose(decode_pcm(np.array([0.25], "<f4").tobytes(), "f32le"), [0.25])
    # an over-loud float stream saturates: scored (and flagged) by `score --stream --pcm f32le`, not refused
    assert np.array_equal(decode_pcm(np.array([3.0, -1.5, 0.5], "<f4").tobytes(), "f32le"), [1.0, -1.0, 0.5])
    assert np.isnan(decode_pcm(np.array([np.nan], "<f4").tobytes(), "f32le")).all()  # left for as_pcm to refuse
    with pytest.raises(AudioError, match="whole number"):
        decode_pcm(b"\x00\x01\x02", "s16le")


@pytest.mark.parametrize("window, stride", [(100, 100), (100, 30), (100, 250)])
def test_stream_windows_match_the_windows_of_the_whole_recording(window, stride):
    rng = np.random.default_rng(0)
    pcm = rng.uniform(-1, 1, 1234).astype(np.float32)
    starts, whole = windows(pcm, window, stride)
    cutter, got = Windows(window, stride), []
    cuts = np.sort(rng.integers(0, len(pcm), 20))
    for block in np.split(pcm, cuts):
        got += list(cutter.push(block))
    assert [s for s, _ in got] == list(starts)
    assert np.array_equal(np.stack([w for _, w in got]), whole)


def test_windows_refuse_a_recording_shorter_than_one_window():
    with pytest.raises(AudioError, match="shorter than one window"):
        windows(np.zeros(10, np.float32), 100, 50)
