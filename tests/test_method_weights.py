"""What the methods compute: the papers' weight functions, identities between methods, numerics,
presets, and the weight-curve figure."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import benchsuite
from benchsuite import ParameterError
from benchsuite.plotting import logits_for_target_prob, plot_weight_curves, weight_curve
from benchsuite_plugins.methods.weighting import target_probs


@functools.lru_cache(maxsize=1)
def gauss_legendre_unit(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of n-point Gauss–Legendre quadrature on (0, 1) (an eigenproblem: cached)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy((x + 1) / 2), torch.from_numpy(w / 2)


def variance_under_uniform_p(method) -> float:
    p, omega = gauss_legendre_unit()
    w = weight_curve(method, p)
    return float((omega * w**2).sum() - (omega * w).sum() ** 2)


# IMAE paper, supplementary Table 4: weight variance of exp(T p (1 − p)) under p ~ U(0, 1).
IMAE_TABLE = {16: 354.113, 8: 4.546, 4: 0.299, 2: 0.040, 1: 0.007, 0.5: 0.002, 0: 0.0}


@pytest.mark.parametrize("T, published", IMAE_TABLE.items())
def test_imae_reproduces_the_papers_weight_variance_table(T, published):
    exact = variance_under_uniform_p(benchsuite.load_method("imae", T=float(T), eps=0.0))
    assert round(exact, 3) == published
    # the same weights through gr (λ = 1, β = T) and dm; the default ε changes nothing visible
    gr = benchsuite.load_method("gr", lam=1.0, beta=float(T), eps=0.0)
    assert variance_under_uniform_p(gr) == pytest.approx(exact, rel=1e-12, abs=1e-15)
    assert variance_under_uniform_p(benchsuite.load_method("imae", T=float(T))) == pytest.approx(exact, rel=1e-5, abs=1e-9)


def test_loss_weight_variances_match_the_imae_figure_1_caption():
    assert variance_under_uniform_p(benchsuite.load_method("cce")) == pytest.approx(1 / 3, rel=1e-9)
    assert variance_under_uniform_p(benchsuite.load_method("mae", preset="l1")) == pytest.approx(4 / 45, rel=1e-9)  # 0.0889
    assert variance_under_uniform_p(benchsuite.load_method("mae")) == pytest.approx(1 / 45, rel=1e-9)


def emphasis_mode(method, num_points: int = 20001) -> float:
    p = torch.linspace(0, 1, num_points + 2, dtype=torch.float64)[1:-1]
    return float(p[weight_curve(method, p).argmax()])


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("beta", [2.0, 8.0, 16.0])
def test_gr_emphasis_focus_is_lambda_over_lambda_plus_one(lam, beta):
    assert emphasis_mode(benchsuite.load_method("gr", lam=lam, beta=beta)) == pytest.approx(lam / (lam + 1), abs=1e-4)


@pytest.mark.parametrize(
    "method, mode",
    [("cce", 0.0), ("mae", 0.5), ("mae_dn", 0.5), ("mse_dn", 1 / 3), ("gce", 0.7 / 1.7), ("imae", 0.5),
     (("dm", {"family": "normal", "psi": 0.3}), 0.3), (("mse", {"form": "reduced"}), 1 / 3)],
)
def test_emphasis_modes_of_the_losses(method, mode):
    name, params = method if isinstance(method, tuple) else (method, {})
    assert emphasis_mode(benchsuite.load_method(name, **params)) == pytest.approx(mode, abs=1e-4)


def test_negative_beta_inverts_the_curve():
    """DM's IMDB settings: with β < 0 the weight is smallest where it would peak for β > 0."""
    p = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    w = weight_curve(benchsuite.load_method("dm", preset="imdb_noise20"), p)  # λ = 0, β = −0.52
    assert torch.all(w[1:] > w[:-1])  # exp(−0.52 (1 − p)): easy examples weigh most
    assert w[0] == pytest.approx(math.exp(-0.52 * 0.99), rel=1e-6)


def batch_gradient(method, logits, targets):
    z = logits.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(method.loss(z, targets), z)
    return g


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return 3 * torch.randn(16, 10, generator=g, dtype=torch.float64), torch.randint(0, 10, (16,), generator=g)


@pytest.mark.parametrize(
    "a, b",
    [
        (("gr", {"beta": 12.0, "lam": 2.0}), ("dm", {"beta": 12.0, "lam": 2.0})),
        (("imae", {"T": 8.0}), ("dm", {"lam": 1.0, "beta": 8.0})),
        (("imae", {"T": 8.0}), ("dm", {"family": "normal", "psi": 0.5, "beta": 8.0})),
        (("dm", {"family": "exponential", "beta": 3.0}), ("gr", {"lam": 0.0, "beta": 3.0})),
        (("dm", {"family": "beta", "alpha": 1.0, "eta": 2.0, "eps": 0.0}), ("cce_dn", {})),
        (("dm", {"family": "beta", "alpha": 2.0, "eta": 2.0, "eps": 0.0}), ("mae_dn", {})),
        (("dm", {"family": "beta", "alpha": 2.0, "eta": 3.0, "eps": 0.0}), ("mse_dn", {})),
        (("dm", {"family": "beta", "alpha": 1.4, "eta": 2.0, "eps": 0.0}), ("gce_dn", {"q": 0.4})),
        (
            ("dm", {"beta": 0.0, "normalize": "mean", "eps": 0.0}),
            ("dm", {"family": "beta", "alpha": 1.0, "eta": 1.0, "normalize": "mean", "eps": 0.0}),
        ),
    ],
)
def test_one_implementation_many_names(a, b, batch):
    """GR ≡ DM(gr); IMAE ≡ DM(λ = 1, β = T) ≡ DM(normal, ψ = ½); exponential ≡ λ = 0; the beta
    family reproduces each loss's own weighting, so DM with it equals the loss's *_dn variant."""
    ga = batch_gradient(benchsuite.load_method(a[0], **a[1]), *batch)
    gb = batch_gradient(benchsuite.load_method(b[0], **b[1]), *batch)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-15)


def test_dn_variant_is_the_loss_gradient_divided_by_the_batch_weight_sum(batch):
    logits, targets = batch
    p = logits.softmax(1)
    p_y = p.gather(1, targets[:, None])
    gce_example = p_y**0.7 * (p - torch.nn.functional.one_hot(targets, 10))
    expected = gce_example / (2 * p_y**0.7 * (1 - p_y)).sum()
    torch.testing.assert_close(batch_gradient(benchsuite.load_method("gce_dn"), logits, targets), expected)


def authors_gradient(logits, targets, weight_of, eps=1e-8):
    """The authors' derivative-normalised gradient, written out on its own as the reference:
    example i gets c_i·(p_i − e_y) with c_i = w_i / (2(1 − p_y,i) + ε) / Σ_j w_j, the raw weights
    summed in the denominator (DM and IMAE authors' PyTorch code). 1 − p_y is summed from the other
    classes' probabilities, so it stays exact where 1 − softmax_y would round to 0 (margin 60)."""
    p = logits.softmax(1)
    target = torch.nn.functional.one_hot(targets, logits.shape[1]).bool()
    others = p.masked_fill(target, 0.0)
    one_minus_p = others.sum(1)
    direction = others - target * one_minus_p[:, None]  # p − e_y
    w = weight_of(1 - one_minus_p, one_minus_p)
    return (w / (2 * one_minus_p + eps) / w.sum())[:, None] * direction


def gr_weight(beta, lam):
    return lambda p, one_minus_p: torch.exp(beta * p**lam * one_minus_p)


def margin_batch(margins, num_classes=10):
    """Each example's target logit ``margin`` above the other classes' 0."""
    targets = torch.arange(len(margins)) % num_classes
    logits = torch.zeros(len(margins), num_classes, dtype=torch.float64)
    logits[torch.arange(len(margins)), targets] = torch.as_tensor(margins, dtype=torch.float64)
    return logits, targets


@pytest.mark.parametrize(
    "name, params, weight_of",
    [
        ("gr", {}, gr_weight(8.0, 0.5)),
        ("gr", {"beta": 12.0, "lam": 2.0}, gr_weight(12.0, 2.0)),
        ("dm", {"beta": 16.0, "lam": 1.0}, gr_weight(16.0, 1.0)),
        ("imae", {}, gr_weight(8.0, 1.0)),
        ("dm", {"family": "normal", "psi": 0.3, "beta": 6.0}, lambda p, q: torch.exp(-6.0 * p * (p - 0.6))),
        ("dm", {"family": "beta", "alpha": 1.7, "eta": 2.5}, lambda p, q: p**0.7 * q**1.5),
    ],
)
@pytest.mark.parametrize("where", ["spread", "fitted", "mixed"])
def test_dm_gradient_is_the_authors_formula(name, params, weight_of, where, batch):
    """float64 autograd of our loss against the reference: a trained-network-like batch, a batch
    fitted at logit margins 30-60 (where the normalisation decides everything), and a mix."""
    if where == "spread":
        logits, targets = batch
    else:
        margins = [30.0, 35.0, 45.0, 60.0] if where == "fitted" else [60.0, 30.0, 2.0, -1.0]
        logits, targets = margin_batch(margins)
    expected = authors_gradient(logits, targets, weight_of)
    got = batch_gradient(benchsuite.load_method(name, **params), logits, targets)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=0)


@pytest.mark.parametrize("margin, authors", [(30.0, 1.7e-4), (60.0, 1.6e-17)])
def test_a_fitted_batch_gets_a_vanishing_gradient(margin, authors):
    """Batch-gradient L1 mass of gr (defaults) on a batch whose examples all sit at a logit margin of
    30 (60) over 9 other classes: 1.7e-4 (1.6e-17), as the authors' formula gives; dividing by the
    sum of the ε-saturated weights instead (this suite's former normalisation) gives 1.0."""
    logits, targets = margin_batch([margin] * 8)
    mass = batch_gradient(benchsuite.load_method("gr"), logits, targets).abs().sum().item()
    assert mass == pytest.approx(authors, rel=0.02)
    reference = authors_gradient(logits, targets, gr_weight(8.0, 0.5))
    assert mass == pytest.approx(reference.abs().sum().item(), rel=1e-9)
    one_minus_p = 9 * math.exp(-margin) / (1 + 9 * math.exp(-margin))
    saturation = 2 * one_minus_p / (2 * one_minus_p + 1e-8)
    assert mass == pytest.approx(saturation, rel=1e-6)  # equal weights: the mass is the saturation itself
    # the former normalisation: ε folded into each weight, then divided by the sum of the folded weights
    applied = reference.abs().sum(1)  # w_i·sat_i / Σ w
    former = reference / applied.sum()
    assert former.abs().sum().item() == pytest.approx(1.0, rel=1e-12)


def test_mean_normalisation_divides_the_saturated_weights_by_the_batch_size(batch):
    logits, targets = batch
    p_y = logits.softmax(1).gather(1, targets[:, None]).squeeze(1)
    raw_sum = gr_weight(8.0, 0.5)(p_y, 1 - p_y).sum()
    expected = authors_gradient(logits, targets, gr_weight(8.0, 0.5)) * raw_sum / len(p_y)
    got = batch_gradient(benchsuite.load_method("gr", normalize="mean"), logits, targets)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=0)


def test_eps_makes_the_gradient_of_fitted_examples_vanish():
    logits = torch.tensor([[40.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)  # 1 − p_y ≈ 8e-18, then 0.58
    targets = torch.tensor([0, 0])
    exact = batch_gradient(benchsuite.load_method("gr", eps=0.0), logits, targets).abs().sum(1)
    code = batch_gradient(benchsuite.load_method("gr"), logits, targets).abs().sum(1)
    assert exact[0] / exact[1] == pytest.approx(1 / math.exp(8 * 0.2119**0.5 * 0.7881), rel=1e-3)  # w(1) = 1: full push
    assert code[0] / code[1] < 1e-8


def test_one_minus_p_is_accurate_far_below_float32_epsilon():
    logits = torch.tensor([[0.0, -30.0, -30.0], [0.0, -200.0, -300.0]])
    t = target_probs(logits, torch.tensor([0, 0]))
    assert t.one_minus_p[0].item() == pytest.approx(2 * math.exp(-30), rel=1e-5)  # 1 − softmax would give 0
    assert t.log_q[1].item() == pytest.approx(-200.0, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_derivative_normalisation_keeps_unit_mass_when_every_example_is_saturated(dtype):
    logits = torch.zeros(6, 10).scatter_(1, torch.arange(6)[:, None], 1e4).to(dtype)  # 1 − p_y ≈ e^−10000
    g = batch_gradient(benchsuite.load_method("cce_dn"), logits, torch.arange(6))
    assert g.float().abs().sum().item() == pytest.approx(1.0, rel=1e-2)


def test_sl_log_zero_default_is_the_codes_and_the_paper_preset_scales_rce_down():
    code, paper = benchsuite.load_method("sl", alpha=0.0), benchsuite.load_method("sl", preset="paper", alpha=0.0)
    assert code.log_zero == pytest.approx(math.log(1e-4))
    logits, targets = logits_for_target_prob(torch.tensor([0.3, 0.6]))
    ratio = batch_gradient(code, logits, targets) / batch_gradient(paper, logits, targets)
    torch.testing.assert_close(ratio, torch.full_like(ratio, math.log(1e-4) / -4.0))


def test_sl_refuses_an_all_zero_loss():
    with pytest.raises(ParameterError, match="alpha and beta are both 0"):
        benchsuite.load_method("sl", alpha=0.0, beta=0.0)


def test_dm_refuses_parameters_its_family_ignores():
    with pytest.raises(ParameterError, match="'psi' = 0.3 has no effect with family 'gr'"):
        benchsuite.load_method("dm", psi=0.3)
    with pytest.raises(ParameterError, match="'beta' = 2.0 has no effect with family 'beta'"):
        benchsuite.load_method("dm", family="beta", beta=2.0)


@pytest.mark.parametrize(
    "name, preset, values",
    [
        ("gr", "cifar10_sym20", {"lam": 0.5, "beta": 12.0}),
        ("gr", "cifar10_sym40", {"lam": 1.0, "beta": 16.0}),
        ("gr", "cifar10_sym60", {"lam": 2.0, "beta": 12.0}),
        ("gr", "cifar10_sym80", {"lam": 2.0, "beta": 12.0}),
        ("dm", "cifar10_sym40", {"lam": 1.0, "beta": 16.0}),
        ("gr", "cifar100", {"lam": 0.5, "beta": 8.0}),
        ("dm", "cifar100", {"lam": 0.5, "beta": 8.0}),
        ("gr", "cifar100_sym40", {"lam": 0.4, "beta": 6.0}),
        ("dm", "clothing1m", {"lam": 1.0, "beta": 2.0}),
        ("gr", "clothing1m", {"lam": 1.0, "beta": 16.0}),
        ("dm", "imdb_noise0", {"lam": 0.0, "beta": 0.9}),
        ("dm", "imdb_noise20", {"lam": 0.0, "beta": -0.52}),
        ("dm", "imdb_noise40", {"lam": 0.0, "beta": -0.33}),
        ("dm", "imdb_imbalance", {"lam": 0.3, "beta": 6.5}),
        ("imae", "noisy", {"T": 8.0}),
        ("imae", "clean", {"T": 0.5}),
        ("gr", "cifar10_clean", {"lam": 0.0, "beta": 2.0}),
        ("gr", "paper_text", {"normalize": "mean"}),
        ("imae", "paper_text", {"normalize": "mean"}),
        ("sl", "cifar10", {"alpha": 0.1, "beta": 1.0}),
        ("sl", "cifar100", {"alpha": 6.0, "beta": 0.1}),
        ("sl", "paper", {"log_zero": -4.0}),
        ("mae", "l1", {"scale": 2.0}),
    ],
)
def test_the_papers_settings_are_presets(name, preset, values):
    method = benchsuite.load_method(name, preset=preset)
    assert {k: method.config[k] for k in values} == values
    assert type(method).presets[preset].source


def test_imae_default_is_the_noisy_data_setting():
    assert benchsuite.load_method("imae").T == 8.0


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_weight_curves_figure(tmp_path, suffix):
    methods = ["cce", benchsuite.load_method("gr", beta=8.0, lam=0.5), "imae", benchsuite.load_method("mse")]
    out = plot_weight_curves(methods, tmp_path / f"w.{suffix}", density=suffix == "svg")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in data[:2000]


def test_weight_curves_refuse_unknown_formats(tmp_path):
    with pytest.raises(ValueError, match="must end in one of .png, .svg, .pdf"):
        plot_weight_curves(["cce"], tmp_path / "w.jpg")


@pytest.mark.parametrize("name", ["gr", "dm", "imae"])
def test_the_published_runs_decide_the_default_normalisation(name):
    """The papers' tables come from the authors' derivative-normalised code: batch_sum by default."""
    assert benchsuite.load_method(name).normalize == "batch_sum"
    if name != "dm":
        assert benchsuite.load_method(name, preset="paper_text").normalize == "mean"
