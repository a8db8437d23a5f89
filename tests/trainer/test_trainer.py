import math

import numpy as np
import pytest
import torch

from vae_edge.models import VAEConfig, build_model
from vae_edge.trainer import DataError, TrainConfig, load_data, train
from vae_edge.trainer import objectives
from vae_edge.trainer.data import split
from vae_edge.trainer.loop import resolve_device


def test_digits_are_split_disjointly_and_reproducibly(digits):
    assert digits.shape == (1, 8, 8)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert digits.train.dtype == np.float32 and digits.train.min() >= 0 and digits.train.max() <= 16
    again = load_data("digits")
    np.testing.assert_array_equal(digits.test, again.test)
    rows = lambda a: {r.tobytes() for r in a}  # noqa: E731
    # Digits has a few duplicate images; the splits must not share more than those.
    assert len(rows(digits.test) & rows(digits.train)) < 5
    model_space = digits.to_model(digits.train)
    assert model_space.min() >= 0 and model_space.max() <= 1


def test_unknown_data_spec_is_a_data_error():
    with pytest.raises(DataError, match="unknown data spec"):
        load_data("imagenet")


def test_split_needs_three_samples():
    with pytest.raises(DataError):
        split(np.zeros((2, 3)))


def test_gaussian_kl_matches_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    # KL(N(m, s^2) || N(0, 1)) = 0.5 (s^2 + m^2 - 1 - log s^2), per dimension
    expected = torch.tensor([0.0, 0.5 * (4 + 1 - 1 - math.log(4)) + 0.5 * (1 + 4 - 1 - 0)])
    standard = build_model(VAEConfig(input_shape=(3,), latent_dim=2, hidden_dims=(4,)))  # the KL lives with the prior: VAE.kl_to_prior
    torch.testing.assert_close(standard.kl_to_prior(mu, logvar), expected)


def test_iwae_is_a_tighter_bound_than_the_elbo(trained, digits):
    _, result = trained
    x = torch.from_numpy(digits.to_model(digits.test[:40]))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        elbo_terms = [sum(objectives.elbo_terms(result.model, x, generator=g)) for _ in range(50)]
    neg_elbo = torch.stack(elbo_terms).mean(0)
    iw = objectives.iwae_nll(result.model, x, 200, chunk=64, generator=g)
    assert iw.shape == (40,)
    assert (iw <= neg_elbo + 0.5).all()  # the bound tightens with K (up to Monte-Carlo noise)
    assert iw.mean() < neg_elbo.mean() - 0.1


def test_iwae_with_one_sample_is_the_negative_elbo(trained, digits):
    _, result = trained
    model = result.model
    x = torch.from_numpy(digits.to_model(digits.test[:20]))
    with torch.no_grad():
        iw = objectives.iwae_nll(model, x, 1, generator=torch.Generator().manual_seed(3))
        nll, _ = objectives.elbo_terms(model, x, generator=torch.Generator().manual_seed(3))
        # The same draw of z: K = 1 gives the one-sample negative ELBO, -log p(x|z) + log q(z|x) - log p(z),
        # its densities here from torch.distributions rather than the objective's own formulas.
        mu, logvar = model.encode(x)
        std = (0.5 * logvar).exp()
        z = mu + std * torch.randn(mu.shape, generator=torch.Generator().manual_seed(3))
        log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
        log_p_z = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(iw, nll + log_q - log_p_z, rtol=1e-5, atol=1e-4)


def test_iwae_is_non_increasing_in_k_on_average(trained, digits):
    _, result = trained
    x = torch.from_numpy(digits.to_model(digits.test[:30]))
    g = torch.Generator().manual_seed(1)
    means = [torch.stack([objectives.iwae_nll(result.model, x, k, generator=g) for _ in range(8)]).mean().item() for k in (1, 4, 32, 256)]
    assert all(a >= b for a, b in zip(means, means[1:])), means


def test_iwae_known_answer_when_posterior_is_the_prior():
    """Decoder ignoring z and q(z|x) = p(z): every importance weight equals p(x), so the estimate is exact."""
    model = build_model(VAEConfig(input_shape=(3,), latent_dim=2, hidden_dims=(4,))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # encoder: mu = 0, logvar = 0 -> q(z|x) = N(0, I) = p(z)
        model.decoder.out.bias.copy_(torch.tensor([0.0, 1.0, -2.0]))  # logits independent of z
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5]])
    p = torch.sigmoid(torch.tensor([0.0, 1.0, -2.0]))
    exact = -(x * p.log() + (1 - x) * (1 - p).log()).sum(1)
    for k in (1, 7, 300):
        torch.testing.assert_close(objectives.iwae_nll(model, x, k, chunk=50), exact)


def _linear_gaussian(posterior_scale: float = 1.0):
    """A linear-Gaussian VAE, z ~ N(0, I_2), x | z ~ N(W z + b, s^2 I_4), whose marginal is analytic:
    p(x) = N(b, W W^T + s^2 I). W has orthogonal columns, so the exact posterior has a diagonal covariance
    S = (I + W^T W / s^2)^-1 and mean S W^T (x - b) / s^2, which a linear encoder can represent exactly;
    ``posterior_scale`` multiplies its variance (1: exact)."""
    s = 0.5
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, -1.0]])  # columns orthogonal
    b = torch.tensor([0.3, -0.2, 0.0, 1.0])
    model = build_model(VAEConfig(input_shape=(4,), latent_dim=2, hidden_dims=(), likelihood="gaussian", gaussian_std=s)).eval()
    post_cov = torch.linalg.inv(torch.eye(2) + w.T @ w / s**2)  # diagonal
    gain = post_cov @ w.T / s**2  # (2, 4)
    with torch.no_grad():
        model.decoder.out.weight.copy_(w)
        model.decoder.out.bias.copy_(b)
        model.encoder.mu.weight.copy_(gain)
        model.encoder.mu.bias.copy_(-gain @ b)
        model.encoder.logvar.weight.zero_()
        model.encoder.logvar.bias.copy_(torch.log(torch.diagonal(post_cov) * posterior_scale))
    marginal = torch.distributions.MultivariateNormal(b, w @ w.T + s**2 * torch.eye(4))
    return model, marginal


def test_iwae_known_answer_linear_gaussian():
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, -1.0, 0.5], [0.3, -0.2, 0.0, 1.0]])
    model, marginal = _linear_gaussian()
    exact = -marginal.log_prob(x)
    # Exact posterior: every importance weight equals p(x), so any K (and the ELBO) gives -log p(x).
    for k in (1, 50):
        torch.testing.assert_close(objectives.iwae_nll(model, x, k, generator=torch.Generator().manual_seed(k)), exact, rtol=1e-5, atol=1e-5)
    # A posterior twice too wide: the bound is loose at K = 1 and tightens towards -log p(x) as K grows.
    model, marginal = _linear_gaussian(posterior_scale=2.0)
    g = torch.Generator().manual_seed(0)
    k1 = torch.stack([objectives.iwae_nll(model, x, 1, generator=g) for _ in range(200)]).mean(0)
    k5000 = objectives.iwae_nll(model, x, 5000, generator=g)
    assert (k1 > exact + 0.1).all()
    torch.testing.assert_close(k5000, exact, rtol=0, atol=0.02)


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_dreg_gradient_keeps_the_bound_and_the_decoder_gradient_and_drops_the_encoder_noise():
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, -1.0, 0.5], [0.3, -0.2, 0.0, 1.0]])
    for scale in (1.0, 2.0):
        model, _ = _linear_gaussian(posterior_scale=scale)
        runs = {}
        for kind in ("standard", "dreg"):
            loss, _, _ = objectives.iwae_loss(model, x, 8, generator=torch.Generator().manual_seed(5), gradient=kind)
            runs[kind] = loss.item(), _grads(model, loss)
        (value, plain), (dreg_value, dreg) = runs["standard"], runs["dreg"]
        assert dreg_value == pytest.approx(value, rel=1e-6)  # the same bound, only its gradient differs
        for name in ("decoder.out.weight", "decoder.out.bias"):
            torch.testing.assert_close(dreg[name], plain[name])
        encoder = dreg["encoder.mu.weight"].abs().max().item()
        if scale == 1.0:
            # Exact posterior: every log w_k is log p(x) whatever z, so the doubly reparameterised encoder
            # gradient is 0, where the bound's own keeps a score-function term that is 0 only on average.
            assert encoder < 1e-5 and plain["encoder.mu.weight"].abs().max().item() > 1e-2
        else:
            assert encoder > 1e-3  # a posterior twice too wide is pulled back


def test_training_is_seeded_and_reproducible(digits):
    cfg = VAEConfig(input_shape=digits.shape, latent_dim=2, hidden_dims=(16,))
    tc = TrainConfig(epochs=2, batch_size=128, seed=7, iw_samples=5, quiet=True)
    a, b = train(cfg, digits, tc), train(cfg, digits, tc)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert a.metrics["test_elbo"] == b.metrics["test_elbo"]
    c = train(cfg, digits, TrainConfig(epochs=2, batch_size=128, seed=8, iw_samples=5, quiet=True))
    assert not torch.equal(a.model.state_dict()["encoder.mu.weight"], c.model.state_dict()["encoder.mu.weight"])


def test_training_improves_the_elbo(trained, digits):
    _, result = trained
    history = result.history
    assert len(history) == 5
    assert history[-1]["val_elbo"] > history[0]["val_elbo"]
    untrained = build_model(result.model.config).eval()
    from vae_edge.trainer import evaluate

    x = torch.from_numpy(digits.to_model(digits.test))
    assert evaluate(result.model, x)["elbo"] > evaluate(untrained, x)["elbo"] + 5
    m = result.metrics
    assert m["test_iwae_nll"] <= -m["test_elbo"] + 0.5  # IWAE NLL sits below the negative ELBO
    assert all(isinstance(v, (int, float, str)) for v in m.values())


def test_kl_warmup_ramps_beta(digits):
    cfg = VAEConfig(input_shape=digits.shape, latent_dim=2, hidden_dims=(8,))
    result = train(cfg, digits, TrainConfig(epochs=3, batch_size=256, objective="elbo", kl_warmup=2, beta=1.0, iw_samples=2, quiet=True))
    assert [round(r["beta"], 3) for r in result.history] == [0.5, 1.0, 1.0]


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    from dataclasses import replace

    from vae_edge.models import read_checkpoint
    from vae_edge.trainer import TrainingError

    cfg = VAEConfig(input_shape=digits.shape, latent_dim=2, hidden_dims=(8,))
    out = tmp_path / "model.pt"
    train(cfg, digits, TrainConfig(epochs=2, batch_size=256, iw_samples=2, quiet=True), out=out, side_outputs=False)
    good = out.read_bytes()
    # The same run continued on a poisoned training split: epoch 3's first batch gives a NaN loss.
    poisoned = replace(digits, train=np.full_like(digits.train, np.nan))
    with pytest.raises(TrainingError, match="nan at epoch 3, step 1"):
        train(cfg, poisoned, TrainConfig(epochs=4, batch_size=256, iw_samples=2, quiet=True), out=out, side_outputs=False, resume=read_checkpoint(out))
    assert out.read_bytes() == good
    assert read_checkpoint(out)["train_state"]["epoch"] == 2
    with pytest.raises(TrainingError, match="loss became (nan|inf)"):
        train(cfg, digits, TrainConfig(epochs=1, lr=1e3, iw_samples=2, quiet=True))


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert (resolve_device("auto").type == "cuda") == torch.cuda.is_available()
    assert TrainConfig().device == "auto"
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"lr": 0.0}, {"lr": float("nan")}, {"beta": -1.0}, {"weight_decay": -1e-3}, {"iw_samples": 0}, {"iw_val": 0}, {"device": "tpu"}])
def test_train_config_refuses_bad_values(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_the_validation_bound_is_a_tight_one_and_the_elbo_for_the_elbo_objective():
    assert TrainConfig().val_samples == 100 and TrainConfig(iw_val=5).val_samples == TrainConfig().iw_train
    assert TrainConfig(iw_train=200).val_samples == 200
    assert TrainConfig(objective="elbo").val_samples == 1
    from vae_edge.trainer.resume import resume_settings

    # a checkpoint written before --iw-val watched the bound of --iw-train's K, and resumes so
    assert resume_settings({"train_state": {"train_config": {"objective": "iwae", "iw_train": 5}}})["iw_val"] == 1


def test_training_curves_have_axis_titles_and_the_first_epochs_do_not_flatten_the_rest(tmp_path):
    from PIL import Image

    from vae_edge.trainer.curves import curve_figure, write_loss_curve

    # Epoch 1 far above the rest, as a real run's is.
    history = [{"epoch": e, "train_elbo": -(23 + 400 / e**2), "val_elbo": -(23.5 + 400 / e**2), "lr": 1e-3 / e} for e in range(1, 41)]
    fig = curve_figure(history, best_epoch=30)
    ax, ax_lr = fig.axes
    assert ax_lr.get_xlabel() == "epoch" and "nats" in ax.get_ylabel() and ax_lr.get_ylabel() == "learning rate"
    low, high = ax.get_ylim()
    assert low < 23.1 and 23.5 + 400 / 3**2 < high < 23.5 + 400  # epochs 1 (and 2) clipped off the top, epoch 3 on
    assert "kept: epoch 30" in [t.get_text() for t in ax.get_legend().get_texts()]
    path = write_loss_curve(tmp_path / "m.loss.png", history[:1])  # one epoch: a point, no crash
    assert Image.open(path).size[0] > 0

def test_a_wide_loss_span_is_drawn_on_a_log_axis_whose_bottom_stays_above_zero():
    import warnings

    from vae_edge.trainer.curves import curve_figure

    # A loss spanning ~20x after the first epochs (a bad learning rate can do this): the 5 % margin
    # below the lowest loss would cross 0, which a log axis refuses with a warning.
    history = [{"epoch": e, "train_elbo": -(40 + 20 / e), "val_elbo": -(45 + 20000 / e), "lr": 1e-3} for e in range(1, 41)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = curve_figure(history).axes[0]
    assert ax.get_yscale() == "log" and 0 < ax.get_ylim()[0] < 40.5


def test_progress_off_a_terminal_is_a_few_plain_lines(digits, capsys):
    cfg = VAEConfig(input_shape=digits.shape, latent_dim=2, hidden_dims=(16,))
    train(cfg, digits, TrainConfig(epochs=3, iw_samples=2))  # pytest's captured stderr is not a terminal
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"], lines
    assert "\r" not in "".join(lines) and all("val ELBO" in line for line in lines)


def test_progress_lines_thin_out_on_long_runs_and_keep_the_last_epoch():
    import io

    from vae_edge.trainer.progress import Progress

    stream = io.StringIO()
    progress = Progress(first=0, total=95, enabled=True, stream=stream)
    for epoch in range(1, 38):  # an early stop at epoch 37
        progress.epoch_done({"epoch": epoch, "train_elbo": -1.0, "val_elbo": -1.0, "seconds": 0.1})
    progress.close()
    assert [line.split(":")[0] for line in stream.getvalue().splitlines()] == ["epoch 10/95", "epoch 20/95", "epoch 30/95", "epoch 37/95"]
    quiet = io.StringIO()
    Progress(first=0, total=3, enabled=False, stream=quiet).epoch_done({"epoch": 1, "train_elbo": 0, "val_elbo": 0, "seconds": 0})
    assert quiet.getvalue() == ""


def test_auto_prior_takes_the_vampprior_only_where_it_was_measured():
    from vae_edge.trainer.config import SMALL_DATA_SAMPLES, auto_prior

    assert auto_prior("mlp", "bernoulli", SMALL_DATA_SAMPLES)[0] == "vamp"
    for args in (("mlp", "bernoulli", SMALL_DATA_SAMPLES - 1), ("conv", "bernoulli", 5000), ("mlp", "gaussian", 5000)):
        prior, why = auto_prior(*args)
        assert prior == "standard" and why.startswith("auto, N(0, I) for "), args


def test_vampprior_density_bound_and_samples():
    """log p(z) is the mixture's (checked against torch.distributions), the KL term is the bound
    -log mean_c exp(-KL(q || c)) >= the Monte-Carlo KL, exact when q is one of the components, and
    samples come from the mixture."""
    torch.manual_seed(0)
    model = build_model(VAEConfig(input_shape=(6,), latent_dim=2, hidden_dims=(8,), prior="vamp", prior_components=3)).eval()
    model.init_prior(torch.rand(3, 6))
    with torch.no_grad():
        mu_c, logvar_c = model.prior_components()
        mix = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(torch.ones(3)),
                                                    torch.distributions.Independent(torch.distributions.Normal(mu_c, (0.5 * logvar_c).exp()), 1))
        z = torch.randn(50, 2) * 2
        torch.testing.assert_close(model.log_prior(z), mix.log_prob(z), rtol=1e-5, atol=1e-5)
        mu, logvar = model.encode(torch.rand(4, 6))
        q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
        zs = q.sample((20000,))
        mc = (q.log_prob(zs).sum(-1) - mix.log_prob(zs)).mean(0)
        assert (model.kl_to_prior(mu, logvar) >= mc - 0.02).all()
        # q equal to a component, and the components far apart: the bound is that component's share, log C
        far = build_model(VAEConfig(input_shape=(6,), latent_dim=2, hidden_dims=(8,), prior="vamp", prior_components=3))
        kl_same = far.kl_to_prior(*far.prior_components())
        assert (kl_same >= 0).all() and (kl_same <= torch.log(torch.tensor(3.0)) + 1e-5).all()
        draws = model.sample_prior(4000, torch.Generator().manual_seed(1))
        torch.testing.assert_close(draws.mean(0), mu_c.mean(0), rtol=0, atol=0.1)


def test_the_size_rule_picks_small_data_settings_below_the_threshold_and_the_defaults_above():
    from vae_edge.trainer.config import SMALL_DATA, SMALL_DATA_SAMPLES, size_settings

    settings, reason = size_settings(SMALL_DATA_SAMPLES - 1, "mlp")
    assert settings == SMALL_DATA and reason == f"small-data settings, because {SMALL_DATA_SAMPLES - 1} training samples (< {SMALL_DATA_SAMPLES})"
    # The large branch changes nothing: the configured defaults apply as they are.
    assert size_settings(SMALL_DATA_SAMPLES, "mlp") == ({}, f"the defaults, because {SMALL_DATA_SAMPLES} training samples (>= {SMALL_DATA_SAMPLES})")
    assert size_settings(10, "conv")[0] == {} and "--arch mlp only" in size_settings(10, "conv")[1]
    # The small-data values make a valid run: a linear encoder and decoder (no hidden layer) included.
    TrainConfig(**{k: SMALL_DATA[k] for k in ("objective", "lr", "batch_size", "epochs", "patience")})
    model = build_model(VAEConfig(input_shape=(5,), likelihood="gaussian", hidden_dims=SMALL_DATA["hidden"], latent_dim=SMALL_DATA["latent"]))
    mu, logvar = model.encode(torch.zeros(2, 5))
    assert mu.shape == logvar.shape == (2, SMALL_DATA["latent"]) and model.decode(mu).shape == (2, 5)
