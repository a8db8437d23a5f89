"""vae-run's audio side: the commands' bodies for an audio bundle (WAV in and out, PCM streams).

vae-run's commands hand over here when their bundle is an audio bundle, so each command keeps one
name for every modality (sample, reconstruct, encode, score, score --stream).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np

from .audio import AudioError
from .pcm import decode_pcm
from .audio_vae import AudioVAE
from .bundle import read_manifest
from .files import atomic_save_npy, check_writable
from .wavfile import is_wav_start, read_wav, stream_header, write_wav

STDIN_BLOCK = 4096  # bytes read from standard input at a time: 128 ms of s16le at 16 kHz


def is_audio_bundle(path: Path | None) -> bool:
    """Whether ``path`` is a bundle folder whose manifest says audio (anything unreadable: no)."""
    if path is None or not Path(path).is_dir():
        return False
    try:
        return read_manifest(path)["data"].get("kind") == "audio"
    except ValueError:
        return False


def read_clips(vae: AudioVAE, paths: list[Path], stride: float | None = None, *, to_the_end: bool = False) -> tuple[np.ndarray, list[tuple[Path, float]]]:
    """WAV files as model clips, the way the model's training clips were made: a bundle trained with
    ``--duration`` pads or crops each file to one clip; otherwise a file of one clip's length is one clip
    and a longer one is cut into windows every ``stride`` seconds (default: the training stride).
    ``to_the_end``: a file whose windows stop short of its end gets one more, ending at its last sample,
    so that no part of a recording goes unscored (a 1.5 s file with clicks in its last 0.5 s scored normal).

    Returns:
        (PCM [k, samples], (file, start seconds) per clip).

    Digital silence is read like any sound (a stream's silent window is scored too): a dead microphone
    is an anomaly to report, and the front end's log floor keeps its features finite.

    Raises:
        AudioError: unreadable or wrong-rate WAV, or (not padding) shorter than one clip.
    """
    clips, where = [], []
    pads = vae.manifest["data"]["audio"].get("clips") == "pad"
    for path in paths:
        pcm, _ = read_wav(path, sample_rate=vae.sample_rate)
        if pads:
            clip = np.zeros(vae.samples, np.float32)
            clip[: min(len(pcm), vae.samples)] = pcm[: vae.samples]
            clips.append(clip[None])
            where.append((path, 0.0))
            continue
        if len(pcm) < vae.samples:
            raise AudioError(f"{path}: {len(pcm) / vae.sample_rate:.3f} s is shorter than one window of the model ({vae.frontend.seconds:g} s, {vae.samples} samples)")
        starts, windows = vae.windows(pcm, stride)
        last = len(pcm) - vae.samples
        if to_the_end and round(starts[-1] * vae.sample_rate) < last:  # starts are in seconds
            starts = np.append(starts, last / vae.sample_rate)
            windows = np.concatenate([windows, pcm[None, len(pcm) - vae.samples :]])
        clips.append(windows)
        where += [(path, float(s)) for s in starts]
    return np.concatenate(clips), where


def check_out(path: Path | None) -> None:
    """Refuse an unwritable output before any work (nothing is written when the command fails)."""
    if path is not None:
        check_writable(path)


def write_wavs(folder: Path, pcm: np.ndarray, rate: int, stem: str) -> list[Path]:
    """One 16-bit WAV per row, ``folder/stem_000.wav`` ..."""
    return [write_wav(folder / f"{stem}_{i:03d}.wav", row, rate) for i, row in enumerate(pcm)]


def sample(vae: AudioVAE, n: int, seed, temperature: float, *, out: Path | None, wav: Path | None, grid: Path | None, iterations: int,
           normalize: bool = False) -> None:
    """vae-run sample on an audio bundle: log-mel to --out, sound to --wav DIR, spectrograms to --grid."""
    if wav is None and out is None and grid is None:
        raise click.UsageError("an audio bundle samples sound: give --wav DIR (and/or --out FILE.npy, --grid FILE.png)")
    for path in (out, grid):
        check_out(path)
    log_mel = vae.sample(n, seed=seed, temperature=temperature)
    _outputs(vae, log_mel, out=out, grid=grid)
    if wav is not None:
        pcm = vae.to_pcm(log_mel, iterations=iterations, seed=seed or 0)
        if normalize:  # -6 dBFS peaks; a row of digital silence stays silent
            pcm = pcm * (0.5 / np.maximum(np.abs(pcm).max(axis=1, keepdims=True), 1e-9))
        for path in write_wavs(wav, pcm, vae.sample_rate, "sample"):
            click.echo(f"wrote {path}", err=True)


def reconstruct(vae: AudioVAE, src: Path, *, out: Path | None, wav: Path | None, grid: Path | None, iterations: int) -> None:
    """vae-run reconstruct on an audio bundle: IN.wav -> --wav OUT.wav (its clips in order), log-mel, spectrograms."""
    if wav is None and out is None and grid is None:
        raise click.UsageError("give --wav OUT.wav (and/or --out FILE.npy, --grid FILE.png)")
    for path in (out, grid, wav):
        check_out(path)
    # back to back, so the sound is continuous; a tail shorter than a clip is the end of one more clip
    # that ends at the file's last sample, so that OUT.wav is as long as IN.wav
    clips, where = read_clips(vae, [src], stride=vae.frontend.seconds, to_the_end=True)
    features = vae.features(clips)
    log_mel = vae.reconstruct(clips)
    _outputs(vae, log_mel, out=out, grid=grid, inputs=features)
    if wav is not None:
        pcm = vae.to_pcm(log_mel, iterations=iterations)
        tail = round(where[-1][1] * vae.sample_rate) + vae.samples - (len(pcm) - 1) * vae.samples  # samples the last clip adds
        write_wav(wav, np.concatenate([pcm[:-1].reshape(-1), pcm[-1][vae.samples - tail :]]), vae.sample_rate)
        click.echo(f"wrote {wav}", err=True)


def _outputs(vae: AudioVAE, log_mel: np.ndarray, *, out: Path | None, grid: Path | None, inputs: np.ndarray | None = None) -> None:
    if grid is not None:
        from .images import interleave_rows, save_spectrograms

        per_row = max(1, min(4, len(log_mel)))
        shown = log_mel if inputs is None else interleave_rows(inputs, log_mel, per_row)
        save_spectrograms(grid, shown, vae.frontend.floor, nrow=per_row)
        click.echo(f"wrote {grid}" + (" (rows of inputs, each followed by their reconstructions)" if inputs is not None else ""), err=True)
    if out is not None:
        atomic_save_npy(out, log_mel)
        click.echo(f"wrote {out} {list(log_mel.shape)} (log-mel)", err=True)


def score(vae: AudioVAE, paths: list[Path], *, out: Path | None, stride: float | None, quantile: float) -> None:
    """vae-run score on WAV files: one line per clip (file, start, score, flag); --out the scores as .npy."""
    check_out(out)
    clips, where = read_clips(vae, paths, stride, to_the_end=True)
    scores = vae.anomaly_score(clips)
    limit = _threshold(vae, quantile)
    windowed = any(start > 0 for _, start in where)
    click.echo(f"# one score per {'window of ' + format(vae.frontend.seconds, 'g') + ' s' if windowed else 'clip'}; negative ELBO in nats"
               + (f"; flagged above the validation p{quantile * 100:g} ({limit:.2f})" if limit is not None else ""))
    for (path, start), s in zip(where, scores):
        flag = "  ANOMALY" if limit is not None and s > limit else ""
        click.echo(f"{path}\t{start:.3f}\t{s:.6g}{flag}")
    if out is not None:
        atomic_save_npy(out, scores)
        click.echo(f"wrote {out} [{len(scores)}]", err=True)
    if limit is not None:
        click.echo(f"{int((scores > limit).sum())} of {len(scores)} above the validation p{quantile * 100:g} ({limit:.2f} nats)", err=True)


def score_stream(vae: AudioVAE, src: Path | None, *, fmt: str, stride: float | None, quantile: float) -> None:
    """vae-run score --stream: raw PCM from standard input (or a file), one line per window as soon as it is complete.

    Raises:
        AudioError: a missing or unreadable source, or a stream that ends before one window is complete
            (an empty one included: silence and exit 0 would read as "nothing unusual", as for table streams).
    """
    limit = _threshold(vae, quantile)
    name = "standard input" if src is None else str(src)
    received = [0]  # samples read, for the error when no window completes
    blocks = _raw_blocks(sys.stdin.buffer if src is None else _open_source(src), fmt, received, rate=vae.sample_rate, name=name)
    flagged = total = 0
    end = 0  # samples up to the end of the last window scored
    for start, s in vae.score_windows(blocks, stride=stride):
        flag = "  ANOMALY" if limit is not None and s > limit else ""
        click.echo(f"{start:.3f}\t{s:.6g}{flag}")
        sys.stdout.flush()  # a pipe sees each window's score now
        total += 1
        flagged += bool(flag)
        end = round(start * vae.sample_rate) + vae.samples
    if total == 0 and received[0] == 0:
        raise AudioError(f"{name}: is empty; expected raw mono {fmt} PCM at {vae.sample_rate} Hz, at least one window "
                         f"({vae.frontend.seconds:g} s = {vae.samples} samples)")
    if total == 0:
        raise AudioError(f"{name}: the stream ended after {received[0]} samples, before one window was complete "
                         f"({vae.frontend.seconds:g} s = {vae.samples} samples)")
    if received[0] > end:  # the stream stopped inside a window: say what went unscored (a file gets a last window)
        click.echo(f"note: the last {received[0] - end} samples ({(received[0] - end) / vae.sample_rate:.3f} s) came after the last complete "
                   f"window and were not scored (give the recording as a WAV file to score its tail)", err=True)
    if limit is not None:
        click.echo(f"{flagged} of {total} windows above the validation p{quantile * 100:g} ({limit:.2f} nats)", err=True)


def _open_source(src: Path):
    """A raw PCM file or a named pipe (a recorder writing into it): opened as it is, not read whole."""
    try:
        return src.open("rb")
    except FileNotFoundError:
        raise AudioError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise AudioError(f"{src}: is a folder; expected raw PCM ('-' for standard input)") from None
    except OSError as exc:
        raise AudioError(f"{src}: cannot read ({exc.strerror or exc})") from None


def _raw_blocks(stream, fmt: str, received: list[int], *, rate: int, name: str = "standard input") -> Iterator[np.ndarray]:
    """PCM samples from a binary stream, a block at a time (a partial sample waits for the next read);
    ``received[0]`` counts the samples yielded. A WAV header at the start (``arecord`` and ``sox -t wav
    -`` write one unless told raw) is checked against ``fmt`` and ``rate`` and skipped, not read as samples.

    Raises:
        AudioError: a WAV header of another rate, channel count or sample format than the stream's.
    """
    width = 2 if fmt == "s16le" else 4
    rest, said, first = b"", False, True
    with stream:
        while True:
            raw = stream.read(STDIN_BLOCK)
            if not raw:
                break
            if first:
                raw, first = _skip_wav_header(stream, raw, fmt, rate, name), False
            raw, cut = rest + raw, (len(rest) + len(raw)) // width * width
            rest = raw[cut:]
            received[0] += cut // width
            if fmt == "f32le" and not said and cut and float(np.nanmax(np.abs(np.frombuffer(raw[:cut], "<f4")), initial=0.0)) > 1.0:
                said = True  # decode_pcm clips: say so once, the scores go on
                click.echo("note: float samples beyond full scale were clipped to [-1, 1] (scored as the saturated sound)", err=True)
            yield decode_pcm(raw[:cut], fmt)


MAX_WAV_HEADER = 1 << 16  # bytes searched for the data chunk of a WAV header at a stream's start


def _skip_wav_header(stream, raw: bytes, fmt: str, rate: int, name: str) -> bytes:
    """``raw`` (the stream's first block) without a leading WAV header, after checking it describes
    ``fmt`` mono PCM at ``rate``; ``raw`` itself when it does not start with one.

    Raises:
        AudioError: a header of another format, or one that ends (or finds no data chunk) too soon.
    """
    while (wav := is_wav_start(raw)) is None or (wav and (found := stream_header(raw)) is None):
        if len(raw) >= MAX_WAV_HEADER:
            raise AudioError(f"{name}: a WAV header with no data chunk in its first {MAX_WAV_HEADER} bytes")
        more = stream.read(STDIN_BLOCK)
        if not more:
            if wav is None:  # a stream of fewer than 12 bytes: samples, however few
                return raw
            raise AudioError(f"{name}: a WAV header that ends before its data chunk")
        raw += more
    if not wav:
        return raw
    header, start = found
    want = (1, 1, rate, 16) if fmt == "s16le" else (3, 1, rate, 32)
    if header != want:
        says = "no fmt chunk" if header is None else f"format {header[0]} ({ {1: 'integer PCM', 3: 'float'}.get(header[0], 'compressed') }), {header[1]} channel(s), {header[2]} Hz, {header[3]}-bit"
        raise AudioError(f"{name}: starts with a WAV header of {says}; --pcm {fmt} at this bundle's {rate} Hz is mono {want[3]}-bit "
                         f"{'integer' if fmt == 's16le' else 'float'} PCM (record with those settings, or give the WAV file itself to vae-run score)")
    click.echo(f"note: {name} starts with a WAV header ({rate} Hz, mono, {want[3]}-bit); it is skipped, the samples after it are scored", err=True)
    return raw[start:]


def _threshold(vae: AudioVAE, quantile: float) -> float | None:
    try:
        return vae.threshold(quantile)
    except ValueError:
        return None
