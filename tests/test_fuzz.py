"""Property-based fuzzing of the runtime's public methods: a result of the right shape, or a ValueError."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vae_edge.runtime import VAE

VAE_DEFAULT = VAE.load()
SHAPE = VAE_DEFAULT.shape
LATENT = VAE_DEFAULT.latent_dim

dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_, np.complex64])
shapes = st.one_of(
    st.just(SHAPE),
    st.integers(0, 5).map(lambda n: (n, *SHAPE)),
    hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=9),
)
arrays = st.builds(lambda a: a, hnp.arrays(dtype=dtypes, shape=shapes, elements=None))
latents = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int32]),
    shape=st.one_of(st.just((LATENT,)), st.integers(0, 4).map(lambda n: (n, LATENT)), hnp.array_shapes(min_dims=0, max_dims=3, max_side=9)),
)
relaxed = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _expect_batch(x, out, tail):
    n = () if np.shape(x) == SHAPE or np.shape(x) == (LATENT,) else (np.shape(x)[0],)
    assert out.shape == n + tail


@relaxed
@given(arrays)
def test_methods_taking_x_return_results_or_value_error(x):
    for method, tail in ((VAE_DEFAULT.reconstruct, SHAPE), (VAE_DEFAULT.anomaly_score, ()), (lambda a: VAE_DEFAULT.encode(a)[0], (LATENT,))):
        try:
            out = method(x)
        except ValueError as exc:
            assert str(exc) and "\n" not in str(exc)
            continue
        _expect_batch(x, np.asarray(out), tail)
        assert np.isfinite(out).all()


@relaxed
@given(latents)
def test_decode_returns_results_or_value_error(z):
    try:
        out = VAE_DEFAULT.decode(z)
    except ValueError as exc:
        assert str(exc)
        return
    _expect_batch(z, out, SHAPE)
    assert np.isfinite(out).all() and (out.size == 0 or (out.min() >= 0 and out.max() <= 16))


@relaxed
@given(st.one_of(st.integers(-3, 40), st.floats(allow_nan=True), st.text(max_size=3), st.none()), st.one_of(st.none(), st.integers(0, 2**32)))
def test_sample_takes_counts_only(n, seed):
    try:
        out = VAE_DEFAULT.sample(n, seed=seed)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert out.shape == (n, *SHAPE)


@pytest.mark.parametrize("bad", [None, "digits", object(), {"x": 1}])
def test_non_array_objects_are_refused(bad):
    with pytest.raises(ValueError):
        VAE_DEFAULT.encode(bad)
