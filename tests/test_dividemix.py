"""DivideMix: the loss mixture, co-refinement and co-guessing, MixMatch, the ensemble, end to end."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.mixture import GaussianMixture
from torch import nn

import benchsuite
from benchsuite.engine import train
from benchsuite_plugins.methods import dividemix
from benchsuite_plugins.methods.dividemix import (
    BetaDraws,
    DivideMix,
    clean_probability,
    co_guess,
    co_refine,
    fit_two_gaussians,
    mixmatch,
    semi_supervised_loss,
    sharpen,
)
from benchsuite_plugins.methods.pair_ensemble import PairEnsemble
from step_harness import CPU, first_batch, spec_for, started_context


def planted_losses(seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """700 clean losses around 0.1 and 300 noisy ones around 0.7, as normalised losses look."""
    rng = np.random.default_rng(seed)
    clean = np.clip(rng.normal(0.1, 0.05, 700), 0, 1)
    noisy = np.clip(rng.normal(0.7, 0.1, 300), 0, 1)
    return torch.from_numpy(np.concatenate([clean, noisy])), np.r_[np.ones(700, bool), np.zeros(300, bool)]


def test_mixture_separates_planted_clean_and_noisy_losses_as_sklearn_does():
    """Our EM against sklearn's GaussianMixture with the code's settings: the same posteriors, and
    the clean probability > 0.5 for the clean losses and < 0.5 for the noisy ones."""
    losses, is_clean = planted_losses()
    prob = clean_probability(losses)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=0)
    gmm.fit(losses.numpy()[:, None])
    reference = gmm.predict_proba(losses.numpy()[:, None])[:, gmm.means_.argmin()]
    np.testing.assert_allclose(prob.numpy(), reference, atol=1e-6)
    assert (prob.numpy()[is_clean] > 0.5).mean() > 0.99 and (prob.numpy()[~is_clean] < 0.5).mean() > 0.99
    fit = fit_two_gaussians(losses)
    assert sorted(fit.means.tolist()) == pytest.approx([0.1, 0.7], abs=0.02)
    assert sorted(fit.weights.tolist()) == pytest.approx([0.3, 0.7], abs=0.01)


def test_sharpen_co_refine_and_co_guess_on_hand_computed_numbers():
    p = torch.tensor([[0.6, 0.3, 0.1]])
    torch.testing.assert_close(sharpen(p, 0.5), torch.tensor([[0.36, 0.09, 0.01]]) / 0.46)
    own = torch.tensor([[[0.5, 0.5, 0.0]], [[0.3, 0.5, 0.2]]])  # two views of one example
    onehot = torch.tensor([[1.0, 0.0, 0.0]])
    # w = 0.75: 0.75·(1, 0, 0) + 0.25·(0.4, 0.5, 0.1) = (0.85, 0.125, 0.025), then sharpened with T = 1
    torch.testing.assert_close(co_refine(own, onehot, torch.tensor([0.75]), 1.0), torch.tensor([[0.85, 0.125, 0.025]]))
    four = torch.tensor([[[1.0, 0, 0]], [[0, 1.0, 0]], [[0, 0, 1.0]], [[1.0, 0, 0]]])
    torch.testing.assert_close(co_guess(four, 1.0), torch.tensor([[0.5, 0.25, 0.25]]))


def test_semi_supervised_loss_averages_each_kind_over_its_own_rows():
    """Two labelled rows and one unlabelled row: L_x is the mean soft CE of the labelled rows,
    L_u the squared error of the unlabelled one averaged over its classes, plus the prior term."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.8, 0.2]])
    labelled = torch.tensor([1.0, 1.0, 0.0])
    p = logits.softmax(1)
    loss_x = -(targets[:2] * logits[:2].log_softmax(1)).sum(1).mean()
    loss_u = (p[2] - targets[2]).square().mean()
    penalty = (0.5 * torch.log(0.5 / p.mean(0))).sum()
    got = semi_supervised_loss(logits, targets, labelled, lambda_u=25.0)
    torch.testing.assert_close(got, loss_x + 25.0 * loss_u + penalty)


def test_mixmatch_mixes_rows_and_targets_with_one_coefficient_and_permutation():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=gen)
    t = torch.softmax(torch.randn(6, 3, generator=gen), 1)
    perm = torch.randperm(6, generator=gen)
    mixed_x, mixed_t = mixmatch(x, t, 0.8, perm)
    torch.testing.assert_close(mixed_x, 0.8 * x + 0.2 * x[perm])
    torch.testing.assert_close(mixed_t, 0.8 * t + 0.2 * t[perm])
    images = torch.tensor([[0, 100, 255]], dtype=torch.uint8)
    mixed_images, _ = mixmatch(torch.cat([images, 255 - images]), torch.eye(2), 0.75, torch.tensor([1, 0]))
    assert mixed_images.dtype == torch.uint8
    assert mixed_images[0].tolist() == [64, 114, 191]  # round(0.75·(0, 100, 255) + 0.25·(255, 155, 0))


def test_beta_draws_follow_beta_alpha_alpha_from_the_generator():
    draws = BetaDraws(4.0, torch.Generator().manual_seed(0))
    sample = np.array([draws.next() for _ in range(3000)])
    assert stats.kstest(sample, stats.beta(4.0, 4.0).cdf).pvalue > 0.01
    again = BetaDraws(4.0, torch.Generator().manual_seed(0))
    assert [again.next() for _ in range(300)] == sample[:300].tolist()


def test_one_step_co_refines_labelled_and_co_guesses_unlabelled_targets(monkeypatch):
    """A step of f on a planted division (first half labelled, w = 0.9; second half unlabelled):
    the targets it mixes are, row by row, the refinement from f's two views or the guess from
    both networks' two views, sharpened with T = 0.5; the two views differ; λ' >= 0.5."""
    method = DivideMix(warmup_epochs=0, second_view="strong")
    ctx = started_context(method, rate=0.4)
    batch = first_batch(ctx)
    size = len(batch.y)
    method.clean_prob = torch.zeros(2, ctx.data.num_train)
    planted = torch.where(torch.arange(size) < size // 2, 0.9, 0.1)
    method.clean_prob[1, batch.index] = planted  # the division f trains on comes from g
    calls = []
    original = dividemix.mixmatch

    def capture(inputs, targets, lam, perm):
        calls.append(dict(inputs=inputs, targets=targets, lam=lam, perm=perm))
        return original(inputs, targets, lam, perm)

    monkeypatch.setattr(dividemix, "mixmatch", capture)
    f0, g0 = copy.deepcopy(ctx.model), copy.deepcopy(method.peer).eval()
    method.train_step(ctx, batch)
    assert len(calls) == 2  # f's step, then g's
    captured = calls[0]
    x1, x2 = captured["inputs"][:size], captured["inputs"][size:]
    torch.testing.assert_close(x1, batch.x)
    assert (x1 - x2).abs().max() > 0.05  # the strong view is a second, different view
    with torch.no_grad():
        own = torch.stack([f0(x1), f0(x2)]).softmax(2)
        peer = torch.stack([g0(x1), g0(x2)]).softmax(2)
    onehot = F.one_hot(batch.y, 10).float()
    refined = (0.9 * onehot + 0.1 * own.mean(0)).pow(2)
    guessed = torch.cat([own, peer]).mean(0).pow(2)
    expected = torch.where((torch.arange(size) < size // 2)[:, None], refined, guessed)
    expected = expected / expected.sum(1, keepdim=True)
    torch.testing.assert_close(captured["targets"], torch.cat([expected, expected]), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(guessed[size // 2 :] / guessed[size // 2 :].sum(1, keepdim=True), sharpen(own.mean(0), 0.5)[size // 2 :])
    assert 0.5 <= captured["lam"] <= 1.0


class RecordingDivideMix(DivideMix):
    """Keeps each mixing coefficient and the epochs in which a division was fitted."""

    def start(self, ctx):
        super().start(ctx)
        self.lambdas: list[float] = []
        self.divided: list[int] = []

    def mixing_coefficient(self):
        lam = super().mixing_coefficient()
        self.lambdas.append(lam)
        return lam

    def start_epoch(self, ctx):
        before = self.epochs_divided
        super().start_epoch(ctx)
        if self.epochs_divided > before:
            self.divided.append(ctx.epoch)


def test_end_to_end_on_digits_the_division_is_clean_and_dividemix_beats_cce():
    """40% symmetric noise, the default budget: no division during the 10 warm-up epochs, one per
    later epoch; the labelled set f trains on is over 95% truly clean and holds most clean
    examples; every λ' = max(λ, 1 − λ) of a Beta(4, 4) draw; the ensemble ends far above CCE."""
    task = benchsuite.load_task("digits")
    method = RecordingDivideMix()
    record = train(method, task, spec_for(method, task, 0.4), CPU)
    assert record.status == "completed"
    assert method.divided == list(range(11, 61))
    assert "dividemix_labelled" not in record.curves[9] and "dividemix_labelled" in record.curves[10]
    late = record.curves[-10:]
    assert min(row["dividemix_labelled_clean"] for row in late) > 0.95
    assert min(row["dividemix_clean_labelled"] for row in late) > 0.8
    lambdas = np.array(method.lambdas)
    assert len(lambdas) == 2 * 50 * 10 and lambdas.min() >= 0.5  # two networks, 50 epochs of 10 steps
    folded = stats.beta(4.0, 4.0)
    assert stats.kstest(lambdas, lambda v: 2 * folded.cdf(v) - 1).pvalue > 0.01
    cce = benchsuite.load_method("cce")
    baseline = train(cce, task, spec_for(cce, task, 0.4), CPU)
    assert record.curves[-1]["test_acc"] > baseline.curves[-1]["test_acc"] + 0.1


def test_the_ensemble_sums_logits_and_averages_cosine_distances():
    torch.manual_seed(0)
    from benchsuite.toolkit.models.embedding import EmbeddingClassifier

    nets = [EmbeddingClassifier(nn.Linear(6, 4), nn.Linear(4, 3)) for _ in range(2)]
    pair = PairEnsemble(*nets)
    x = torch.randn(5, 6)
    torch.testing.assert_close(pair(x), nets[0](x) + nets[1](x))
    e = pair.embed(x)
    cos = [F.normalize(n.embed(x), dim=1) @ F.normalize(n.embed(x), dim=1).T for n in nets]
    torch.testing.assert_close(e @ e.T, (cos[0] + cos[1]) / 2)
    assert math.isclose(e.norm(dim=1).max().item(), 1.0, rel_tol=1e-6)


def test_the_second_view_needs_a_source_or_a_strong_view():
    weak = DivideMix()
    assert weak.applicability(benchsuite.load_task("digits_retrieval")) is None
    strong = DivideMix(second_view="strong")
    assert "strong augmentation" in strong.applicability(benchsuite.load_task("digits_retrieval"))
    assert strong.applicability(benchsuite.load_task("digits")) is None
