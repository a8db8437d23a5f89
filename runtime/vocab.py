"""Characters <-> token ids, and reading text files: the one implementation the trainer, the exporter
and the runtime share, so a line is normalised and tokenised the same way on the workstation and on
the device. numpy only.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from typing import BinaryIO
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The token ids of models/text.py, repeated here because the runtime never imports the models package.
PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
NORMALIZATION = {
    "unicode": "NFC",
    "line_end": "one trailing \\n or \\r\\n removed; nothing else stripped",
    "blank": "lines of whitespace only are skipped (and counted) when reading a file",
    "bom": "a byte-order mark (U+FEFF) starting a file or stream is dropped",
    "case": "kept",
    "unknown": "characters not in the vocabulary map to <unk>",
}
# Bytes that never occur in text: a file holding them is binary, whatever it decodes to.
_BINARY = frozenset(range(0, 32)) - {9, 10, 12, 13}
# What a line given as a string may not hold, as a line of a file cannot: those control characters, a
# line feed inside it, or a lone surrogate (undecodable bytes as Python smuggles them through
# sys.argv and os.fsdecode, U+DC80 + byte).
_NOT_IN_A_LINE = re.compile("[" + "".join(f"\\x{b:02x}" for b in sorted(_BINARY)) + "\\n\\ud800-\\udfff]")


class TextError(ValueError):
    """A text file or a line cannot be used (binary, undecodable, empty, too long)."""


@dataclass(frozen=True)
class TextFile:
    """Lines read from a file, with what was left out or changed on the way."""

    lines: list[str]
    blank_skipped: int
    long_lines: int  # lines longer than max_len (cut or skipped, by ``long_lines``)
    long_policy: str


def normalize(line: str) -> str:
    """The normalisation of :data:`NORMALIZATION`: NFC, one line ending removed."""
    if line.endswith("\r\n"):
        line = line[:-2]
    elif line.endswith("\n"):
        line = line[:-1]
    return unicodedata.normalize("NFC", line)


def decode_bytes(data: bytes, source: str | None = None) -> str:
    """UTF-8 text from ``data``, refusing binary content and invalid UTF-8 with the line that holds it
    (``source`` None: ``data`` is one line, and the message names neither file nor line).

    Raises:
        TextError: binary (control bytes such as NUL) or not UTF-8.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Windows' "Unicode": without this, "binary (byte 0x00)"
        what = f"UTF-16 text (byte-order mark {data[0]:02X} {data[1]:02X}), expected UTF-8; convert it: iconv -f UTF-16 -t UTF-8"
        raise TextError(what if source is None else f"{source}: {what}")
    bad = next((i for i, b in enumerate(data[:1 << 16]) if b in _BINARY), None)
    if bad is None and any(b in _BINARY for b in data[1 << 16:]):
        bad = next(i for i, b in enumerate(data) if b in _BINARY)
    if bad is not None:
        if source is None:
            raise TextError(f"binary data (byte 0x{data[bad]:02x}), expected UTF-8 text")
        line = data.count(b"\n", 0, bad) + 1
        raise TextError(f"{source}: a binary file (byte 0x{data[bad]:02x} on line {line}), expected UTF-8 text, one sample a line")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if source is None:
            raise TextError(f"not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None
        line = data.count(b"\n", 0, exc.start) + 1
        raise TextError(f"{source}: line {line} is not valid UTF-8 (byte 0x{data[exc.start]:02x}); expected UTF-8 text") from None


def open_text(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for reading bytes (a text file, one sample a line, read whole or line by line).

    Raises:
        TextError: a folder, no such file, or unreadable.
    """
    path = Path(path)
    if path.is_dir():
        raise TextError(f"{path}: is a folder; expected a text file, one sample a line")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise TextError(f"{path}: no such file") from None
    except OSError as exc:
        raise TextError(f"{path}: unreadable ({exc.strerror or exc})") from None


def read_text(path: str | os.PathLike, *, max_len: int | None = None, long_lines: str = "refuse",
              hint: str = "raise the limit, or cut or skip long lines") -> TextFile:
    """Read a UTF-8 text file, one sample a line, normalised.

    Args:
        max_len: longest line allowed (characters after normalisation); None: no limit.
        long_lines: what to do with a longer line: "refuse" (raise, naming it), "cut" (keep its first
            max_len characters) or "skip" (leave it out); the count is reported either way.
        hint: what the "refuse" message suggests.

    Raises:
        TextError: missing, unreadable, binary, undecodable or empty file, or a long line under "refuse".
    """
    if long_lines not in ("refuse", "cut", "skip"):
        raise TextError(f"long_lines must be refuse, cut or skip, got {long_lines!r}")
    path = Path(path)
    with open_text(path) as stream:
        try:
            data = stream.read()
        except OSError as exc:
            raise TextError(f"{path}: unreadable ({exc.strerror or exc})") from None
    text = decode_bytes(data, str(path)).removeprefix("\ufeff")  # as editors on Windows write UTF-8
    lines, blank, long = [], 0, 0
    # Lines end at "\n" only, as the stream reads them (readline) and as `wc -l` counts: str.splitlines
    # also breaks at "\r", U+2028, NEL and form feed, which gave a file more scores than lines.
    pieces = text.split("\n")
    for number, raw in enumerate(pieces, start=1):
        if number == len(pieces) and not raw:
            break  # after the last line feed
        line = normalize(raw + "\n" if number < len(pieces) else raw)
        if not line.strip():
            blank += 1
            continue
        if max_len is not None and len(line) > max_len:
            long += 1
            if long_lines == "refuse":
                raise TextError(f"{path}: line {number} has {len(line)} characters, more than the limit of {max_len} ({hint})")
            if long_lines == "skip":
                continue
            line = line[:max_len]
        lines.append(line)
    if not lines:
        raise TextError(f"{path}: no text in it ({blank} blank lines)" if blank else f"{path}: is empty; expected UTF-8 text, one sample a line")
    return TextFile(lines, blank, long, long_lines)


class Vocabulary:
    """Characters with ids after the four specials; everything else is <unk>."""

    def __init__(self, chars: Iterable[str], max_len: int):
        self.chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in self.chars) or len(set(self.chars)) != len(self.chars):
            raise TextError("a vocabulary is a list of distinct single characters")
        self.max_len = int(max_len)
        self._ids = {c: i + len(SPECIALS) for i, c in enumerate(self.chars)}
        # id -> what text() shows for it: the character, U+FFFD for <unk>, nothing for the other specials
        self._shown = ["\ufffd" if i == UNK else "" for i in range(len(SPECIALS))] + self.chars

    @classmethod
    def build(cls, lines: Iterable[str], max_len: int) -> "Vocabulary":
        """Every character of ``lines`` (the train split), in code-point order."""
        return cls(sorted({c for line in lines for c in line}), max_len)

    @property
    def size(self) -> int:
        return len(SPECIALS) + len(self.chars)

    def describe(self) -> dict:
        """As stored in model.pt and manifest.json."""
        return {"specials": list(SPECIALS), "chars": self.chars, "max_len": self.max_len, "normalization": dict(NORMALIZATION)}

    @classmethod
    def from_description(cls, d: dict) -> "Vocabulary":
        """Rebuild from :meth:`describe` output.

        Raises:
            TextError: not a vocabulary description.
        """
        if not isinstance(d, dict) or list(d.get("specials") or []) != list(SPECIALS) or not isinstance(d.get("chars"), list):
            raise TextError("the vocabulary must give specials <pad> <bos> <eos> <unk> and a list of chars")
        max_len = d.get("max_len")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise TextError(f"the vocabulary's max_len must be a positive integer, got {max_len!r}")
        return cls(d["chars"], max_len)

    def ids(self, line: str) -> list[int]:
        """Token ids of one normalised line, <eos> not included."""
        return [self._ids.get(c, UNK) for c in line]

    def unknown(self, line: str) -> int:
        """How many characters of ``line`` are not in the vocabulary."""
        return sum(c not in self._ids for c in line)

    def check_line(self, line: object, index: int | None = None) -> str:
        """``line`` normalised, if it can be encoded.

        Raises:
            TextError: not a string, empty, holding what a line of a text file cannot (binary control
                characters, a line feed, undecodable bytes), or longer than max_len.
        """
        where = "" if index is None else f"line {index + 1}: "
        if not isinstance(line, str):
            raise TextError(f"{where}expected a string, got {type(line).__name__}")
        line = normalize(line)
        if not line:
            raise TextError(f"{where}empty string; there is nothing to score or encode")
        bad = _NOT_IN_A_LINE.search(line)
        if bad is not None:
            c = ord(bad.group())
            if 0xDC80 <= c <= 0xDCFF:
                raise TextError(f"{where}not valid UTF-8 (byte 0x{c - 0xDC00:02x})")
            what = "a line feed inside it" if c == 10 else "a lone surrogate" if c >= 0xD800 else f"binary data (U+{c:04X})"
            raise TextError(f"{where}holds {what}; expected one line of text")
        if len(line) > self.max_len:
            raise TextError(f"{where}{len(line)} characters, more than this model's limit of {self.max_len}")
        return line

    def encode(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encoder input: tokens (B, T) int64 (ids, <eos>, then <pad>) and lengths (B,) int64 (ids + 1)."""
        ids = [self.ids(line) for line in lines]
        lengths = np.array([len(i) + 1 for i in ids], dtype=np.int64)
        tokens = np.full((len(ids), int(lengths.max(initial=1))), PAD, dtype=np.int64)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)] = seq
            tokens[row, len(seq)] = EOS
        return tokens, lengths

    def decoder_io(self, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Teacher-forced decoder inputs (<bos> then the ids) and targets (the ids then <eos>) from
        :meth:`encode` output; both (B, T), <pad> after the line."""
        inputs = np.concatenate([np.full((len(tokens), 1), BOS, dtype=np.int64), tokens[:, :-1]], axis=1)
        inputs[inputs == EOS] = PAD
        return inputs, tokens

    def text(self, ids: Iterable[int]) -> str:
        """A string from generated ids (specials other than <unk> are dropped; <unk> shows as U+FFFD)."""
        table = self._shown
        return "".join([table[i] if 0 <= i < len(table) else "" for i in map(int, ids)])
