"""Property-based fuzzing of the runtime's public methods: a result of the right shape, or a ValueError."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vae_edge.runtime import VAE
from vae_edge.runtime.cli import cli as run_cli

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


# ---------------------------------------------------------------- every other public method
def _refused(exc):
    """A refusal must be a ValueError/TypeError with a one-line message."""
    assert isinstance(exc, (ValueError, TypeError)) and str(exc) and "\n" not in str(exc), repr(exc)


# Integers stay small: a count such as sample(10**9) is a valid request that would only exhaust memory.
anything = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 50), st.sampled_from([-(2**70), 2**70]), st.floats(), st.text(max_size=5), st.binary(max_size=5),
    st.lists(st.floats(), max_size=3), st.just(object()), st.just(["a"] * 64), st.just([0.5] * 64),
)
samples_like = st.one_of(arrays, anything)


@relaxed
@given(samples_like, samples_like, st.one_of(st.integers(-2, 12), anything))
def test_interpolate_returns_a_path_or_refuses(x_a, x_b, steps):
    try:
        out = VAE_DEFAULT.interpolate(x_a, x_b, steps=steps)
    except (ValueError, TypeError) as exc:
        _refused(exc)
        return
    assert out.shape == (steps, *SHAPE) and np.isfinite(out).all()


@relaxed
@given(arrays, st.one_of(st.none(), st.integers(-1, 4), anything), st.one_of(st.none(), st.integers(-1, 2**64), anything))
def test_anomaly_score_options_return_scores_or_refuse(x, samples, seed):
    try:
        out = np.asarray(VAE_DEFAULT.anomaly_score(x, samples=samples, seed=seed))
    except (ValueError, TypeError) as exc:
        _refused(exc)
        return
    _expect_batch(x, out, ())
    assert np.isfinite(out).all()


quantiles = st.one_of(st.sampled_from([0.5, 0.9, 0.95, 0.99, 0.999, "p99", "p99.9"]), st.floats(), anything)


@relaxed
@given(samples_like, quantiles)
def test_is_anomaly_and_threshold_return_decisions_or_refuse(x, quantile):
    try:
        limit = VAE_DEFAULT.threshold(quantile)
    except (ValueError, TypeError) as exc:
        _refused(exc)
        with pytest.raises((ValueError, TypeError)):
            VAE_DEFAULT.is_anomaly(x, quantile=quantile)
        return
    assert isinstance(limit, float) and np.isfinite(limit)
    try:
        flags = np.asarray(VAE_DEFAULT.is_anomaly(x, quantile=quantile))
    except (ValueError, TypeError) as exc:
        _refused(exc)
        return
    assert flags.dtype == bool
    _expect_batch(x, flags, ())


rows = st.one_of(
    hnp.arrays(np.float64, st.sampled_from([(64,), SHAPE]), elements=st.floats(0, 16)),
    hnp.arrays(dtypes, st.sampled_from([(64,), SHAPE, (63,), (8, 8), ()]), elements=None),
    anything,
)


@relaxed
@given(st.one_of(st.lists(rows, max_size=12), anything), st.one_of(st.integers(-1, 5), anything))
def test_score_stream_yields_a_score_per_row_or_refuses_naming_the_row(stream, batch_size):
    got = []
    try:
        for score in VAE_DEFAULT.score_stream(stream, batch_size=batch_size):
            got.append(score)
    except (ValueError, TypeError) as exc:
        _refused(exc)
        if hasattr(exc, "row"):
            assert str(exc).startswith(f"row {exc.row}: ") and len(got) == exc.row  # every row before it was scored
            lenient = list(VAE_DEFAULT.score_stream(stream, batch_size=batch_size, bad_rows="nan"))
            assert len(lenient) == len(stream) and np.isnan(lenient[exc.row])
            np.testing.assert_allclose(lenient[: exc.row], got, rtol=1e-6)
        return
    assert len(got) == len(stream) and all(isinstance(s, float) and np.isfinite(s) for s in got)
    if got:
        batches = [len(b) for b in VAE_DEFAULT.score_batches(stream, batch_size=batch_size)]
        assert sum(batches) == len(stream) and max(batches) <= batch_size


@relaxed
@given(st.one_of(st.integers(-3, 40), st.floats(), anything), st.one_of(st.floats(), st.integers(-2, 10), anything))
def test_sample_temperature_is_checked(n, temperature):
    try:
        out = VAE_DEFAULT.sample(n, seed=0, temperature=temperature)
    except (ValueError, TypeError) as exc:
        _refused(exc)
        return
    assert out.shape == (n, *SHAPE) and np.isfinite(out).all()


@relaxed
@given(samples_like)
def test_normalize_maps_numbers_or_refuses(x):
    try:
        with np.errstate(over="ignore"):  # normalize() does no range checks: 1e39 becomes Inf by design
            out = VAE_DEFAULT.normalize(x)
    except (ValueError, TypeError) as exc:
        _refused(exc)
        return
    assert out.dtype == np.float32


load_options = st.fixed_dictionaries(
    {},
    optional={
        "precision": st.one_of(st.sampled_from(["fp32", "int8"]), anything),
        "threads": st.one_of(st.none(), st.integers(-1, 3), anything),
        "providers": st.one_of(st.none(), st.just(["CPUExecutionProvider"]), st.lists(st.text(max_size=8), max_size=2), anything),
        "optimization": st.one_of(st.sampled_from(["disabled", "basic", "extended", "all"]), anything),
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(load_options)
def test_load_options_load_or_refuse(kwargs):
    try:
        vae = VAE.load(**kwargs)
    except (ValueError, TypeError) as exc:
        _refused(exc)
        return
    assert vae.sample(1, seed=0).shape == (1, *SHAPE)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def _leaf_paths(node, prefix=()):
    """Every key path in a JSON tree, parents before their children."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _leaf_paths(child, (*prefix, key))


@pytest.fixture(scope="module")
def bundle_to_edit(tmp_path_factory):
    import shutil

    folder = tmp_path_factory.mktemp("fuzzed") / "bundle"
    shutil.copytree(VAE_DEFAULT.path, folder)
    return folder


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_an_edited_manifest_loads_or_is_refused_in_one_line(bundle_to_edit, data):
    manifest = json.loads(json.dumps(VAE_DEFAULT.manifest))
    paths = list(_leaf_paths(manifest))[1:]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = manifest
        try:
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed this path
    (bundle_to_edit / "manifest.json").write_text(json.dumps(manifest))
    try:
        vae = VAE.load(bundle_to_edit, precision=data.draw(st.sampled_from(["fp32", "int8"])))
    except ValueError as exc:
        _refused(exc)
        return
    assert vae.sample(2, seed=0).shape == (2, *vae.shape)
    info = CliRunner().invoke(run_cli, ["info", str(bundle_to_edit)])
    assert info.exit_code == 0 and "Traceback" not in info.output, info.output
