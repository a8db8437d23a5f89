"""Audio data that ship offline: synthetic machine sounds with injected faults, and spoken digits from
espeak-ng when it is installed. Nothing downloads.

    python -m bench.audio_data machine OUT [--normal 240 --faulty 40 --seconds 1]
        OUT/train/*.wav           normal machine sound (fan/pump: harmonic hum + broadband noise)
        OUT/test/normal/*.wav     held-out normal clips
        OUT/test/{clicks,whine,imbalance}/*.wav   faulty clips
    python -m bench.audio_data digits OUT [--per-digit 30]
        OUT/<digit>_<voice>_<pitch>_<speed>.wav   "zero" .. "nine" spoken by espeak-ng (16 kHz, 1 s)

Machine sound: a rotation frequency f0 (45-55 Hz, drifting a little) with 12 harmonics of random
amplitudes, amplitude-modulated slowly, plus low-passed noise. Faults, at random severity:
clicks (a few decaying impulses a second), bearing whine (a faint 2-5 kHz tone with a wobble),
imbalance (a stronger first harmonic and a modulation at the rotation rate).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from vae_edge.runtime.wavfile import write_wav

RATE = 16000
FAULTS = ("clicks", "whine", "imbalance")


def machine_sound(rng: np.random.Generator, seconds: float = 1.0, *, fault: str | None = None, rate: int = RATE) -> np.ndarray:
    """One clip of synthetic machine sound, float32 in [-1, 1]; ``fault`` one of FAULTS or None."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = rng.uniform(45.0, 55.0) * (1.0 + 0.002 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))  # slow speed drift
    phase = 2 * np.pi * np.cumsum(f0) / rate
    amps = rng.uniform(0.3, 1.0, 12) / np.arange(1, 13) ** 0.7
    if fault == "imbalance":
        amps[0] *= rng.uniform(2.0, 3.5)
    hum = sum(a * np.sin((k + 1) * phase + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(amps))
    envelope = 1.0 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t)
    if fault == "imbalance":
        envelope = envelope * (1.0 + rng.uniform(0.15, 0.35) * np.sin(phase))
    noise = np.convolve(rng.standard_normal(n + 15), np.hanning(16) / 8.0, mode="valid")[:n]  # low-passed
    x = 0.12 * hum * envelope + rng.uniform(0.03, 0.06) * noise
    if fault == "clicks":
        decay = np.exp(-np.arange(int(0.004 * rate)) / (0.0008 * rate))
        for start in rng.integers(0, n - len(decay), rng.integers(2, 6)):
            x[start : start + len(decay)] += rng.uniform(0.1, 0.3) * rng.choice([-1, 1]) * decay * rng.standard_normal(len(decay))
    elif fault == "whine":
        fw = rng.uniform(2000.0, 5000.0)
        x += rng.uniform(0.006, 0.02) * np.sin(2 * np.pi * fw * t + 3.0 * np.sin(2 * np.pi * 3.0 * t))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def write_machine(out: Path, *, normal: int = 240, faulty: int = 40, test_normal: int | None = None, seconds: float = 1.0, seed: int = 0) -> dict[str, int]:
    """The machine task's folders (see the module docstring); returns clips written per folder."""
    rng = np.random.default_rng(seed)
    counts = {"train": normal, "test/normal": test_normal if test_normal is not None else faulty * len(FAULTS), **{f"test/{f}": faulty for f in FAULTS}}
    for folder, count in counts.items():
        fault = folder.split("/")[1] if folder.count("/") and folder != "test/normal" else None
        for i in range(count):
            write_wav(out / folder / f"{i:04d}.wav", machine_sound(rng, seconds, fault=fault), RATE)
    return counts


VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp")
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def espeak() -> str | None:
    """Path of espeak-ng, or None when it is not installed (apt-get install espeak-ng)."""
    return shutil.which("espeak-ng")


def write_digits(out: Path, *, per_digit: int = 30, seed: int = 0) -> int:
    """Spoken digits across voices, pitches and speeds, each 1 s at 16 kHz (cropped or zero-padded).

    Raises:
        RuntimeError: espeak-ng is not installed.
    """
    exe = espeak()
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng); no spoken digits made")
    import soundfile
    from scipy.signal import resample_poly

    rng = np.random.default_rng(seed)
    written = 0
    with tempfile.TemporaryDirectory() as tmp:
        for digit, word in enumerate(WORDS):
            for i in range(per_digit):
                voice, pitch, speed = VOICES[i % len(VOICES)], int(rng.integers(20, 80)), int(rng.integers(130, 220))
                raw = Path(tmp) / "say.wav"
                subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(raw), word], check=True, capture_output=True)
                pcm, rate = soundfile.read(str(raw), dtype="float64", always_2d=True)
                pcm = resample_poly(pcm.mean(axis=1), RATE, rate) if rate != RATE else pcm.mean(axis=1)
                voiced = np.flatnonzero(np.abs(pcm) > 0.01)  # trim espeak's leading and trailing silence
                pcm = pcm[voiced[0] : voiced[-1] + 1] if len(voiced) else pcm
                clip = np.zeros(RATE)
                clip[: min(RATE, len(pcm))] = pcm[:RATE]
                clip *= 0.5 / max(np.abs(clip).max(), 1e-6)
                write_wav(out / f"{digit}_{voice}_{pitch}_{speed}.wav", clip, RATE)
                written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audio_data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("machine", help="synthetic machine sounds: train/ normal, test/ normal and faulty")
    m.add_argument("out", type=Path)
    m.add_argument("--normal", type=int, default=240)
    m.add_argument("--faulty", type=int, default=40, help="clips per fault type")
    m.add_argument("--seconds", type=float, default=1.0)
    m.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("digits", help="spoken digits from espeak-ng")
    d.add_argument("out", type=Path)
    d.add_argument("--per-digit", type=int, default=30)
    args = parser.parse_args(argv)
    if args.what == "machine":
        counts = write_machine(args.out, normal=args.normal, faulty=args.faulty, seconds=args.seconds, seed=args.seed)
        print("wrote " + ", ".join(f"{n} clips to {args.out / k}" for k, n in counts.items()))
        return 0
    try:
        n = write_digits(args.out, per_digit=args.per_digit)
    except RuntimeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {n} spoken digits to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
