"""The text generation loop's draw: inverse-CDF of softmax(logits / T) over the top k, on bound arrays."""

import numpy as np
import pytest

from vae_edge.runtime import TextVAE
from vae_edge.runtime.textgen import FIRST, Stepper


@pytest.fixture(scope="module")
def vae(text_bundle):
    return TextVAE.load(text_bundle, threads=1)


def counts(stepper: Stepper, logits: np.ndarray, temperature: float, top_k, draws: int) -> np.ndarray:
    """How often each id is drawn for uniforms spread evenly over [0, 1): the softmax's mass times ``draws``, to within 1."""
    n = len(stepper.token)
    stepper.logits[:] = logits
    got = np.zeros(logits.shape[1], int)
    for u in (np.arange(draws) + 0.5) / draws:
        stepper.draw(np.full(n, u), temperature, top_k)
        np.add.at(got, stepper.token, 1)
    return got


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.5, None), (2.0, 3)])
def test_draws_follow_the_softmax_over_the_top_k(vae, n, temperature, top_k):
    stepper = Stepper(vae._graphs["decoder_step"], n, vae.latent_dim, vae.hidden_dim, vae.vocab.size)
    logits = np.random.default_rng(0).normal(0, 2, (n, vae.vocab.size)).astype(np.float32)
    logits[:, 0] = logits[:, 1] = 50.0  # <pad> and <bos> are never drawn, however likely
    draws = 2000
    got = counts(stepper, logits, temperature, top_k, draws)
    want = np.zeros(vae.vocab.size)
    for row in logits:  # each row draws from its own softmax; the counts add up
        allowed = row[FIRST:].astype(np.float64) / temperature
        if top_k is not None:
            allowed[allowed < np.sort(allowed)[-top_k]] = -np.inf
        p = np.exp(allowed - allowed.max())
        want[FIRST:] += draws * p / p.sum()
    assert got[:FIRST].sum() == 0
    np.testing.assert_allclose(got, want, atol=n)
    if top_k is not None and n == 1:
        assert np.count_nonzero(got) == top_k


def test_a_uniform_next_to_1_stays_in_the_vocabulary(vae):
    stepper = Stepper(vae._graphs["decoder_step"], 1, vae.latent_dim, vae.hidden_dim, vae.vocab.size)
    stepper.logits[:] = 0.0
    stepper.draw(np.array([1 - 2.0**-53]), 1.0, None)
    assert stepper.token[0] == vae.vocab.size - 1
    stepper.draw(np.array([0.0]), 1.0, None)
    assert stepper.token[0] == FIRST


def test_the_state_goes_back_and_forth_between_two_bound_arrays(vae):
    """Each step reads the state the previous one wrote: generating on bound arrays gives what chained
    session.run calls give."""
    graph = vae._graphs["decoder_step"]
    assert graph.can_bind
    z = np.random.default_rng(2).standard_normal((2, vae.latent_dim)).astype(np.float32)
    stepper = Stepper(graph, 2, vae.latent_dim, vae.hidden_dim, vae.vocab.size)
    ids = stepper.run(z, 6, 0.0, None, None)
    token, state = np.full(2, 1, np.int64), np.zeros((2, vae.hidden_dim), np.float32)
    for t in range(6):
        logits, state = graph.session.run(None, {"z": z, "token": token, "state": state})
        token = logits[:, FIRST:].argmax(axis=1) + FIRST
        done = ids[:, t] == 2
        np.testing.assert_array_equal(ids[~done, t], token[~done])
        if done.all():
            break
