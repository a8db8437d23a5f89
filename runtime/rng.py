"""The sampling generator every vae-edge runtime implements bit for bit (Python here, runtime-js/src/rng.js).

SplitMix64 used as a counter-based generator: the k-th 64-bit word of seed s is
``mix(s + (k + 1) * GAMMA mod 2**64)``, so a whole batch is one vectorised numpy expression and any
language with 64-bit integers (JavaScript's BigInt) reproduces it. Uniforms take the top 53 bits
(``(w >> 11) * 2**-53``, in [0, 1)); normals come from the Box-Muller transform in float64, pairs of
words (2i, 2i+1) giving normals 2i and 2i+1. A :class:`Generator` hands out normals and uniforms from
one stream in the order they are asked for (a normal after an odd number of words starts at the next pair). Runtimes cast the normals to float32 before use, which hides last-bit differences between
libms' log/cos/sin (float64 results 1 ulp apart round to the same float32 except with probability ~2^-29).
Text sampling takes its words by row instead (:func:`rows`). docs/javascript.md states the algorithm.
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from .validation import check_int

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_SCALE = 2.0**-53
_TAU = 2.0 * np.pi  # theta = _TAU * u2, the product Box-Muller's 2.0 * np.pi * u2 evaluates first
MAX_SEED = 2**64 - 1


def words(seed: int, count: int, start: int = 0) -> np.ndarray:
    """Words ``start .. start + count - 1`` of the stream for ``seed`` (uint64 [count])."""
    # In place, and without np.errstate: arithmetic modulo 2**64 is the algorithm, and numpy does not
    # check integer arrays for overflow (only scalars). Per call at batch 1 (text sampling draws twice a
    # line) the context manager and the temporaries cost more than the arithmetic.
    z = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    z *= GAMMA
    z += np.uint64(seed)
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def _unit(w: np.ndarray) -> np.ndarray:
    """Words -> their top 53 bits times 2**-53: float64 in [0, 1)."""
    return (w >> _S11).astype(np.float64) * _SCALE


def uniforms(seed: int, count: int, start: int = 0) -> np.ndarray:
    """Uniforms ``start .. start + count - 1`` of ``seed``'s stream (float64 in [0, 1)): the top 53 bits of each word."""
    return _unit(words(seed, count, start))


def _box_muller(unit: np.ndarray, count: int) -> np.ndarray:
    """``count`` normals from ``unit`` (an even number of :func:`_unit` values, pairs (2i, 2i + 1))."""
    # unit + 2**-53 is exactly ((w >> 11) + 1) * 2**-53: (0, 1], so log(u1) is finite
    r = np.sqrt(-2.0 * np.log(unit[0::2] + _SCALE))
    theta = _TAU * unit[1::2]
    out = np.empty(len(unit))
    out[0::2] = r * np.cos(theta)
    out[1::2] = r * np.sin(theta)
    return out[:count]


def normals(seed: int, count: int, start: int = 0) -> np.ndarray:
    """Normals ``start .. start + count - 1`` of ``seed``'s stream (float64; ``start`` even): Box-Muller
    on the word pairs (start, start + 1), ... ."""
    return _box_muller(_unit(words(seed, 2 * ((count + 1) // 2), start)), count)


def block_size(normal_count: int, uniform_stride: int) -> int:
    """Words per row of :func:`rows`: the normals (a whole number of pairs), then ``uniform_stride``
    uniforms, rounded up to even so that every row's normals start at an even word."""
    size = normal_count + (normal_count & 1) + uniform_stride
    return size + (size & 1)


def rows(seed: int, first: int, count: int, normal_count: int, uniform_count: int, uniform_stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``first .. first + count - 1`` of ``seed``'s stream cut into one block of
    :func:`block_size` words per row (row r: words r x size ...): each row's ``normal_count`` normals
    from the start of its block, then its first ``uniform_count`` (<= ``uniform_stride``) uniforms from
    word ``normal_count`` rounded up to even.

    What a row draws depends on its index alone, not on how many rows are drawn with it: row 0 of
    ``count`` rows is row 0 of one (text sampling: ``sample(1)`` is the first line of ``sample(n)``).

    Returns:
        normals (count, normal_count) and uniforms (count, uniform_count), float64.
    """
    size = block_size(normal_count, uniform_stride)
    even = normal_count + (normal_count & 1)
    unit = _unit(words(seed, count * size, first * size)).reshape(count, size)
    normals = _box_muller(unit[:, :even].reshape(-1), count * even).reshape(count, even)[:, :normal_count]
    return normals, unit[:, even : even + uniform_count]


class Generator:
    """Standard normals and uniforms from one seed, drawn in order (as numpy's ``standard_normal`` and ``random``)."""

    def __init__(self, seed: int | None = None):
        self.seed = secrets.randbits(64) if seed is None else int(seed)
        self._drawn = 0  # words used so far; normals start at an even word, keeping Box-Muller pairs aligned

    def standard_normal(self, shape: tuple[int, ...] | int) -> np.ndarray:
        """float64 normals of ``shape``, the next ones in the stream, row-major."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = math.prod(shape)
        start = self._drawn + (self._drawn & 1)
        drawn = normals(self.seed, count, start)
        self._drawn = start + count
        return drawn.reshape(shape)

    def random(self, shape: tuple[int, ...] | int) -> np.ndarray:
        """float64 uniforms in [0, 1) of ``shape``, one word each, the next ones in the stream, row-major."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = math.prod(shape)
        drawn = uniforms(self.seed, count, self._drawn)
        self._drawn += count
        return drawn.reshape(shape)


def generator(seed: object) -> Generator:
    """The Generator for ``seed`` (None: 64 fresh random bits), the seed checked first.

    Raises:
        ValueError: ``seed`` is not an integer in [0, MAX_SEED].
    """
    if seed is not None:
        check_int("seed", seed, minimum=0, maximum=MAX_SEED)
    return Generator(seed)
