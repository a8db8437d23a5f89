"""vae-run's commands for a text bundle: the commands of runtime/cli.py hand over here when the bundle's
modality is text. Lines in, lines out: one output line per input line, scores one per line."""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
from collections.abc import Iterator
from typing import BinaryIO
from pathlib import Path

import click
import numpy as np

from .bundle import read_manifest
from .files import atomic_save_npy
from .text import LineReport, TextVAE
from .vocab import TextError, open_text, read_text


def is_text_bundle(bundle: Path | None) -> bool:
    """Whether ``bundle`` (None: the default bundle, an image one) is a text bundle; errors are left to the loader."""
    if bundle is None:
        return False
    try:
        return read_manifest(bundle)["data"].get("kind") == "text"
    except ValueError:
        return False


def load(bundle: Path, precision: str, threads: int | None, fmt: str = "onnx") -> TextVAE:
    return TextVAE.load(bundle, precision=precision, threads=threads, format=fmt)


def refuse(**options) -> None:
    """Options that mean nothing for text (``--grid``, ``--wav``, ...) are refused, not ignored."""
    for name, value in options.items():
        if value not in (None, False):
            raise click.UsageError(f"--{name.replace('_', '-')} does not apply to a text bundle")


def text_only(**options) -> None:
    """Options of text bundles alone (``--top-k``, ``--per-char``, ...) are refused for the others, naming that."""
    for name, value in options.items():
        if value not in (None, False):
            raise click.UsageError(f"--{name.replace('_', '-')} applies to text bundles only")


def bundle_of(paths: tuple[Path, ...]) -> Path | None:
    """The BUNDLE of ``score``'s ``[BUNDLE] [INPUT]``: the first of two paths, or a lone folder."""
    if len(paths) == 2 or (len(paths) == 1 and Path(paths[0]).is_dir()):
        return Path(paths[0])
    return None


def score_command(paths: tuple[Path, ...], precision: str, threads: int | None, out: Path | None, stream: bool, batch_size: int,
                  per_char: bool, *, check_outputs, fmt: str = "onnx") -> None:
    """vae-run score on a text bundle: BUNDLE INPUT.txt, or BUNDLE [INPUT.txt|-] --stream."""
    bundle, src = Path(paths[0]), (Path(paths[1]) if len(paths) == 2 else None)
    if src is None and not stream:
        raise click.UsageError("expected BUNDLE INPUT.txt (or --stream to read standard input)")
    vae = load(bundle, precision, threads, fmt)
    if stream:
        if out is not None:
            raise click.UsageError("--stream prints one score per line; use it without --out (or redirect the output)")
        return score_stream(vae, None if src is None or str(src) == "-" else src, batch_size, per_char)
    if str(src) == "-":
        raise click.UsageError("INPUT '-' (standard input) is read with --stream only")
    check_outputs(vae, (src,), (out,))
    score(vae, src, out, per_char)


def lines_of(path: Path, vae: TextVAE) -> list[str]:
    """The lines of a UTF-8 file (blank lines skipped and counted on stderr); a line over the model's
    limit, binary content or invalid UTF-8 is an error naming the line."""
    read = read_text(path, max_len=vae.max_len, long_lines="refuse", hint="this model's limit")
    if read.blank_skipped:
        click.echo(f"{read.blank_skipped} blank line(s) of {path} skipped", err=True)
    return read.lines


def emit(array: np.ndarray, out: Path | None) -> None:
    if out is not None:
        atomic_save_npy(out, array)
        click.echo(f"wrote {out} {list(array.shape)}", err=True)
        return
    np.savetxt(sys.stdout, np.asarray(array).reshape(len(array), -1), delimiter=",", fmt="%.6g")


def echo_lines(lines: list[str]) -> None:
    # A generated line may hold any character of the vocabulary; a newline never (it ends a line on reading).
    click.echo("\n".join(lines))


def sample(vae: TextVAE, n: int, seed: int | None, temperature: float, top_k: int | None, max_len: int | None) -> None:
    if n:
        echo_lines(vae.sample(n, seed=seed, temperature=temperature, top_k=top_k, max_len=max_len))


def reconstruct(vae: TextVAE, src: Path) -> None:
    echo_lines(vae.reconstruct(lines_of(src, vae)))


def encode(vae: TextVAE, src: Path, out: Path | None, logvar_out: Path | None) -> None:
    mu, logvar = vae.encode(lines_of(src, vae))
    if logvar_out is not None:
        emit(logvar, logvar_out)
    emit(mu, out)


def decode(vae: TextVAE, z: np.ndarray) -> None:
    z = z[None] if z.ndim == 1 else z
    echo_lines(vae.decode(z))


def interpolate(vae: TextVAE, a: str, b: str, steps: int) -> None:
    echo_lines(vae.interpolate(a, b, steps=steps))


def score(vae: TextVAE, src: Path, out: Path | None, per_char: bool) -> None:
    scores = vae.anomaly_score(lines_of(src, vae), per="char" if per_char else "line")
    emit(scores, out)
    if not per_char:
        _flagged(vae, int((scores > vae.threshold(0.99)).sum()), len(scores))


def score_stream(vae: TextVAE, src: Path | None, batch_size: int, per_char: bool) -> None:
    """One score per incoming line, flushed per batch; a line that cannot be scored prints ``nan`` and
    a report on stderr naming it, and the stream goes on."""
    if per_char:
        raise click.UsageError("--per-char applies to whole files; --stream gives nats per line")
    limit = vae.threshold(0.99)
    flagged = total = bad = 0
    batch: list[float | LineReport] = []
    source = sys.stdin.buffer if src is None else open_text(src)  # a missing file is bad input, said before any score
    cut: set[int] = set()  # lines read only up to the bound: the report's length is that of their first part
    for item in vae.score_stream(_incoming(source, vae.max_len, cut), batch_size, bad_lines="report"):
        batch.append(item)
        total += 1
        if isinstance(item, LineReport):
            bad += 1
            click.echo(f"line {item.index + 1}: {item.reason}" + (" (the first part of a longer line: the rest was read past, not kept)" if item.index in cut else ""), err=True)
        elif item > limit:
            flagged += 1
        if len(batch) >= batch_size:
            _flush(batch)
            batch = []
    _flush(batch)
    if not total:  # an empty file (or input) is bad input here as everywhere, not a stream of no scores
        raise TextError(f"{src if src is not None else 'standard input'}: is empty; expected UTF-8 text, one sample a line")
    _flagged(vae, flagged, total - bad)
    if bad:
        click.echo(f"{bad} of {total} line(s) could not be scored (nan)", err=True)


def _flush(batch: list) -> None:
    if batch:
        click.echo("\n".join("nan" if isinstance(s, LineReport) else f"{s:.6g}" for s in batch))
        sys.stdout.flush()  # a pipe sees each batch's scores now


def _incoming(source: BinaryIO, max_chars: int, cut: set[int]) -> Iterator[bytes]:
    """Raw lines of ``source`` as they arrive, a byte-order mark starting it dropped; TextVAE.score_stream
    decodes each on its own, so one bad line is reported in its place instead of ending the stream. A
    line is read up to a bound (4 bytes a character, over ``max_chars``), so that a stream with no line
    feed (``/dev/zero``, a binary file) cannot fill memory: an overlong line's first part stands for it,
    reported as too long (or binary), and the rest is skipped unkept; its number goes into ``cut``. A
    file is closed at the end."""
    bound = 4 * max_chars + 8  # UTF-8 is at most 4 bytes a character; + BOM and CR LF
    with contextlib.nullcontext(source) if source is sys.stdin.buffer else source:  # standard input stays open
        for number in itertools.count():
            line = source.readline(bound)
            if not line:
                return
            if len(line) == bound and not line.endswith(b"\n"):
                rest = line
                while rest and not rest.endswith(b"\n"):
                    rest = source.readline(bound)
                line = _whole_characters(line)
                cut.add(number)
            yield line.removeprefix(b"\xef\xbb\xbf") if number == 0 else line


def _whole_characters(part: bytes) -> bytes:
    """``part`` less a UTF-8 character cut at its end, so that the cut is not reported as invalid UTF-8."""
    for cut in range(4):
        try:
            (part[: len(part) - cut]).decode("utf-8")
            return part[: len(part) - cut]
        except UnicodeDecodeError:
            continue
    return part  # invalid before the cut: reported as such


def _flagged(vae: TextVAE, flagged: int, total: int) -> None:
    if total:
        click.echo(f"{flagged} of {total} above the validation p99 ({vae.threshold(0.99):.2f} nats)", err=True)


def info(vae: TextVAE, as_json: bool) -> None:
    m = vae.manifest
    if as_json:
        click.echo(json.dumps(m, indent=2, ensure_ascii=False))
        return
    cfg, d = m["model"]["config"], m["data"]
    chars = "".join(vae.vocab.chars)
    click.echo(f"bundle     {vae.path} (text)")
    click.echo(f"schema     {m['schema']}, opset {m.get('opset')}")
    click.echo(f"model      gru sentence VAE: embed {cfg.get('embed_dim')}, hidden {cfg['hidden_dim']}, latent {cfg['latent_dim']}")
    click.echo(f"data       {d.get('dataset')}: lines of at most {vae.max_len} characters; vocabulary {len(vae.vocab.chars)} characters {chars[:60]!r}{'...' if len(chars) > 60 else ''} + <unk>")
    for graph, spec in (m.get("graphs") or {}).items():
        click.echo(f"graph      {graph}: {', '.join(spec.get('inputs', []))} -> {', '.join(spec.get('outputs', []))}")
    click.echo(f"anomaly    {(m.get('anomaly') or {}).get('score', '')}")
    for name, v in m["variants"].items():
        acc = v.get("accuracy") or {}
        size = sum(m["files"][v[g]].get("bytes", 0) for g in ("encoder", "decoder", "decoder_step"))
        mark = "✓" if acc.get("passed") is True else "✗" if acc.get("passed") is False else "?"
        click.echo(f"variant    {mark} {name:<6} {size:>10,} bytes  neg ELBO {acc.get('neg_elbo', float('nan')):.4g} nats/line, "
                   f"greedy agreement {acc.get('greedy_agreement', float('nan')):.1%}, token log-prob max |diff| {acc.get('token_logprob_max_abs', float('nan')):.2g}")
        click.echo(f"             {v.get('method', '')}")
        q = v.get("anomaly_quantiles") or {}
        if q:
            click.echo(f"             anomaly-score quantiles (validation): {'  '.join(f'{k} {val:.4g}' for k, val in q.items())}")
    t = m.get("training") or {}
    if t:
        click.echo(f"training   test IW NLL {t.get('test_iwae_nll', float('nan')):.4g} nats/line ({t.get('test_iwae_nll_per_char', float('nan')):.3f}/char), "
                   f"KL {t.get('test_kl', float('nan')):.3g}, {t.get('active_units')} active units, {t.get('epochs')} epochs")
