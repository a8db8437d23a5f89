"""The sampling generator shared with the JavaScript runtime: SplitMix64 words, Box-Muller normals."""

from __future__ import annotations

import numpy as np
import pytest

from vae_edge.runtime.rng import MAX_SEED, Generator, block_size, normals, rows, uniforms, words


def test_words_are_splitmix64():
    # SplitMix64's published first outputs for seed 0 (Steele, Lea & Flood 2014; Vigna's reference C code).
    assert [int(w) for w in words(0, 3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert [int(w) for w in words(0, 2, start=1)] == [int(w) for w in words(0, 3)[1:]]


def test_normals_are_standard_normal_and_seeded():
    draws = normals(12345, 200_000)
    assert abs(draws.mean()) < 0.01 and abs(draws.std() - 1) < 0.01
    assert abs(np.mean(draws**4) - 3) < 0.05  # kurtosis of a normal, not of a uniform or a mixture
    np.testing.assert_array_equal(normals(5, 7), normals(5, 8)[:7])
    assert not np.array_equal(normals(5, 4), normals(6, 4))


def test_generator_draws_in_order_and_keeps_pairs_aligned():
    g = Generator(9)
    first, second = g.standard_normal((2, 3)), g.standard_normal(3)
    whole = normals(9, 10)
    np.testing.assert_array_equal(first.ravel(), whole[:6])
    np.testing.assert_array_equal(second, whole[6:9])
    third = g.standard_normal(1)  # 9 drawn: the next starts at the next pair, 10
    np.testing.assert_array_equal(third, normals(9, 12)[10:11])


def test_rows_take_blocks_of_their_own():
    """Row r of rows() is words r x size ..., whatever rows are drawn with it; odd counts keep pairs even."""
    size = block_size(5, 6)  # 5 normals (3 pairs) + 6 uniforms, made even
    assert size == 12
    z, u = rows(9, 0, 4, 5, 4, 6)
    z2, u2 = rows(9, 2, 1, 5, 4, 6)
    np.testing.assert_array_equal(z2, z[2:3])
    np.testing.assert_array_equal(u2, u[2:3])
    np.testing.assert_array_equal(z[3], normals(9, 5, 3 * size))
    np.testing.assert_array_equal(u[3], uniforms(9, 4, 3 * size + 6))


def test_sample_uses_it_and_checks_the_seed(bundle):
    from vae_edge.runtime import VAE

    vae = VAE.load(bundle, threads=1)
    z = normals(3, 2 * vae.latent_dim).reshape(2, vae.latent_dim).astype(np.float32)
    np.testing.assert_array_equal(vae.sample(2, seed=3), vae.decode(z))
    assert vae.sample(1, seed=MAX_SEED).shape == (1, *vae.shape)
    with pytest.raises(ValueError, match="seed"):
        vae.sample(1, seed=MAX_SEED + 1)
