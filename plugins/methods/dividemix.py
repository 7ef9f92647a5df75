"""DivideMix: co-divide the training set with per-epoch loss mixtures, then train semi-supervised.

Li, Socher & Hoi, "DivideMix: Learning with Noisy Labels as Semi-supervised Learning", ICLR 2020
(Algorithm 1, Sections 3.1–3.3, 4.1, Appendix B); official code LiJunnan1992/DivideMix
(``Train_cifar.py``, ``Train_clothing1M.py``).

Implemented:

* Two networks f (``ctx.model``) and g (``ctx.new_model()``, seeded from the cell's generator),
  each with its own optimiser on the task's recipe.
* Warm-up: ``warmup_epochs`` epochs of cross entropy on every example for both networks; with
  ``confidence_penalty`` plus the negative entropy of the predictions (the code's penalty for
  asymmetric noise and Clothing1M).
* Before every later epoch (``start_epoch``), each network's per-example cross entropy over the
  un-augmented training set (eval mode, ``data.train.eval_batches``), min-max normalised
  (optionally averaged over the last ``loss_history`` epochs: the code's 5 at 90% noise), and a
  two-component Gaussian mixture fitted to it by EM; an example's clean probability w is the
  posterior of the lower-mean component.
* Co-divide: f trains on g's division and g on f's; an example is labelled when w > τ
  (``p_threshold``).
* MixMatch with label co-refinement and co-guessing: two views of every example; a labelled
  example's target is sharpen(w·y + (1 − w)·mean of the trained network's two predictions, T);
  an unlabelled one's is sharpen(mean of both networks' predictions on both views, T), the peer
  in eval mode. All 2B rows are mixed with one λ' = max(λ, 1 − λ), λ ~ Beta(α, α), and one
  random permutation; the loss is L_x (soft cross entropy on the rows whose first source is
  labelled) + λ_u·ramp·L_u (squared error of the probabilities, averaged over rows and classes,
  as in the code) + the uniform-prior penalty Σ π_c log(π_c / p̄_c); ramp rises linearly over
  ``rampup_epochs`` epochs after the warm-up (the code's 16).
* Evaluation: the ensemble of both networks, the sum of their logits (the code's ``test``); on
  retrieval tasks the concatenation of both embeddings, each L2-normalised, whose cosine distance
  is the mean of the two networks' cosine distances.

Departures, each deliberate:

* Batches: a step takes the engine's batch of B examples from the whole training set and splits
  it by the division, so the labelled and unlabelled rows come in the division's proportion and
  L_x and L_u are means over the rows of each kind present. The code draws B labelled and B
  unlabelled examples per step and counts an epoch as |labelled|/B steps.
* Both networks take one step on each batch, f first, then g (whose co-guessing sees the updated
  f); the code trains f for a whole epoch, then g. The warm-up uses the run's batch size (the
  code: twice the batch).
* The mixture is our own EM on the device (``fit_two_gaussians``) with the code's settings
  (10 iterations, tolerance 10⁻², variance floor 5·10⁻⁴) and sklearn's initialisation idea
  (k-means, here deterministic from the two extremes) instead of sklearn's ``GaussianMixture``:
  sklearn's k-means initialisation draws from numpy's global RNG, which would tie the cell's
  result to what the process ran before, and it needs the losses on the host. On separated
  losses both give the same posteriors (tests/test_dividemix.py compares them).
* Optimiser and schedule are the task's recipe (the code: SGD at 0.02, weight decay 5·10⁻⁴,
  ÷10 after 150 of 300 epochs).
* Views: ``second_view = "weak"`` draws the task's training augmentation a second time for the
  same examples (the code's two ``transform_train`` draws); it needs a training source that can
  redraw a view (``fresh_view``: the in-memory tasks). A task without augmentation (``digits``)
  then gives two identical views. ``"strong"`` uses the task's strong view of the batch as the
  second view instead (needs a task that provides one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from benchsuite import Method, Param, Preset, StepOutput, hookimpl
from benchsuite.needs import STRONG_VIEW, Need, strong_view
from benchsuite.task import Batch

if TYPE_CHECKING:
    import torch
    from torch import nn

    from benchsuite.engine import TrainContext

#: The code's ``GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4)``.
GMM_MAX_ITER = 10
GMM_TOL = 1e-2
GMM_REG_COVAR = 5e-4
#: Mixing coefficients drawn per device read (one read per this many steps).
BETA_CHUNK = 256
#: Where the per-setting presets come from.
TABLE7 = (
    "Li et al. 2020, Sec. 4.1 and App. B Table 7 (λ_u; τ = 0.6 at 90% noise) as the authors quote them in "
    "LiJunnan1992/DivideMix issues 10, 15, 26 and 50; Train_cifar.py (warm-up 10/30 epochs)"
)


@dataclass(frozen=True)
class TwoGaussians:
    """A one-dimensional mixture of two Gaussians (float64 tensors of shape (2,))."""

    weights: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x; μ_k, σ²_k), shape (N, 2)."""
        sq = (x[:, None] - self.means).square() / self.variances
        return self.weights.log() - 0.5 * (np.log(2 * np.pi) + self.variances.log() + sq)

    def posterior(self, x: torch.Tensor) -> torch.Tensor:
        """P(component k | x), shape (N, 2)."""
        return self.log_joint(x.double()).softmax(1)


def _m_step(x: torch.Tensor, resp: torch.Tensor, reg_covar: float) -> TwoGaussians:
    """Maximum-likelihood parameters from responsibilities (sklearn's formulas, 1-D)."""
    import torch

    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
    means = (resp * x[:, None]).sum(0) / nk
    variances = (resp * (x[:, None] - means).square()).sum(0) / nk + reg_covar
    return TwoGaussians(nk / len(x), means, variances)


def two_means(x: torch.Tensor, max_iter: int = 100) -> torch.Tensor:
    """Labels (0/1) of 1-D k-means with k = 2, started at the minimum and the maximum (Lloyd's
    iterations until no label changes): deterministic, no random restarts."""
    import torch
    import torch.nn.functional as F

    centres = torch.stack([x.min(), x.max()])
    labels = (x[:, None] - centres).abs().argmin(1)
    for _ in range(max_iter):
        member = F.one_hot(labels, 2).to(x.dtype)
        counts = member.sum(0)
        centres = torch.where(counts > 0, (member * x[:, None]).sum(0) / counts.clamp_min(1), centres)
        moved = (x[:, None] - centres).abs().argmin(1)
        if torch.equal(moved, labels):
            break
        labels = moved
    return labels


def fit_two_gaussians(
    x: torch.Tensor, max_iter: int = GMM_MAX_ITER, tol: float = GMM_TOL, reg_covar: float = GMM_REG_COVAR
) -> TwoGaussians:
    """EM for a two-component 1-D Gaussian mixture, as sklearn's ``GaussianMixture`` runs it:
    parameters from the k-means partition, then E and M steps until the mean log-likelihood
    changes by less than ``tol`` or ``max_iter`` iterations ran (one device read per iteration)."""
    import torch
    import torch.nn.functional as F

    x = x.double()
    fit = _m_step(x, F.one_hot(two_means(x), 2).double(), reg_covar)
    bound = -np.inf
    for _ in range(max_iter):
        log_joint = fit.log_joint(x)
        log_norm = torch.logsumexp(log_joint, 1)
        fit = _m_step(x, (log_joint - log_norm[:, None]).exp(), reg_covar)
        previous, bound = bound, log_norm.mean().item()
        if abs(bound - previous) < tol:
            break
    return fit


def clean_probability(losses: torch.Tensor) -> torch.Tensor:
    """Posterior of the lower-mean component of a two-Gaussian mixture fitted to ``losses``
    (already normalised to [0, 1]): the probability that each example's label is clean."""
    fit = fit_two_gaussians(losses)
    return fit.posterior(losses)[:, fit.means.argmin()].float()


def min_max_normalise(losses: torch.Tensor) -> torch.Tensor:
    """(l − min) / (max − min), the code's normalisation (all zeros when every loss is equal)."""
    import torch

    low = losses.min()
    return (losses - low) / (losses.max() - low).clamp_min(torch.finfo(losses.dtype).tiny)


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T), renormalised over the classes."""
    sharp = p.pow(1.0 / temperature)
    return sharp / sharp.sum(-1, keepdim=True)


def co_refine(own: torch.Tensor, labels_onehot: torch.Tensor, clean_prob: torch.Tensor, temperature: float) -> torch.Tensor:
    """Label co-refinement: sharpen(w·y + (1 − w)·mean of the trained network's view predictions),
    ``own`` of shape (views, B, C), w the clean probability from the *peer's* division."""
    w = clean_prob[:, None]
    return sharpen(w * labels_onehot + (1.0 - w) * own.mean(0), temperature)


def co_guess(predictions: torch.Tensor, temperature: float) -> torch.Tensor:
    """Label co-guessing: sharpen(mean over every network and view), ``predictions`` (k, B, C)."""
    return sharpen(predictions.mean(0), temperature)


def mix_inputs(a: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    """λ·a + (1 − λ)·b; uint8 images are mixed in float and rounded back (they stay uint8)."""
    import torch

    if a.is_floating_point():
        return torch.lerp(b, a, lam)
    if a.dtype == torch.uint8:
        return torch.lerp(b.float(), a.float(), lam).round_().to(torch.uint8)
    raise TypeError(f"dividemix mixes inputs, which needs float or uint8 inputs, not {a.dtype}")


def mixmatch(
    inputs: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row mixed with row ``perm[i]``: λ·(x_i, t_i) + (1 − λ)·(x_perm[i], t_perm[i])."""
    return mix_inputs(inputs, inputs[perm], lam), lam * targets + (1.0 - lam) * targets[perm]


def semi_supervised_loss(
    logits: torch.Tensor, targets: torch.Tensor, labelled_rows: torch.Tensor, lambda_u: float
) -> torch.Tensor:
    """L_x + λ_u·L_u + Σ π_c log(π_c / p̄_c) over the mixed rows.

    L_x: soft cross entropy, mean over the rows whose first source is labelled; L_u: squared error
    of the probabilities, mean over the other rows and the classes (the code's ``torch.mean``);
    the prior π is uniform and p̄ the mean prediction over all rows."""
    probs = logits.softmax(1)
    unlabelled_rows = 1.0 - labelled_rows
    loss_x = (labelled_rows * -(targets * logits.log_softmax(1)).sum(1)).sum() / labelled_rows.sum().clamp_min(1)
    squared = (probs - targets).square().mean(1)
    loss_u = (unlabelled_rows * squared).sum() / unlabelled_rows.sum().clamp_min(1)
    prior = 1.0 / logits.shape[1]
    penalty = (prior * (np.log(prior) - probs.mean(0).log())).sum()
    return loss_x + lambda_u * loss_u + penalty


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """mean Σ p log p: the code's confidence penalty (added to the warm-up's cross entropy)."""
    return (logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()


class BetaDraws:
    """λ ~ Beta(α, α) from the run's generator: uniforms mapped through the inverse regularised
    incomplete beta function, ``BETA_CHUNK`` at a time (one device read per chunk)."""

    def __init__(self, alpha: float, generator: torch.Generator) -> None:
        self.alpha, self.generator = alpha, generator
        self.pending: list[float] = []

    def next(self) -> float:
        import torch

        if not self.pending:
            # imported here: scipy.special costs a quarter of a second, which every command that
            # loads the plugins (run --dry-run, the listings' first build) would pay for nothing
            from scipy.special import betaincinv

            gen = self.generator
            u = torch.rand(BETA_CHUNK, generator=gen, device=gen.device, dtype=torch.float64).cpu().numpy()
            self.pending = betaincinv(self.alpha, self.alpha, u).tolist()[::-1]
        return self.pending.pop()

    def state_dict(self) -> dict[str, list[float]]:
        """The drawn but unused λs (checkpoints); the generator is the run's, saved by the engine."""
        return {"pending": list(self.pending)}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self.pending = list(state["pending"])


def training_losses(ctx: TrainContext, net: nn.Module) -> torch.Tensor:
    """Per-example cross entropy against the (noisy) training labels, un-augmented, eval mode."""
    import torch
    import torch.nn.functional as F

    was_training = net.training
    net.eval()
    with torch.no_grad():
        losses = torch.empty(ctx.data.num_train, device=ctx.device)
        for batch in ctx.data.train.eval_batches(ctx.recipe.eval_batch_size):
            with ctx.autocast():
                logits = net(batch.x).float()
            losses[batch.index] = F.cross_entropy(logits, batch.y, reduction="none")
    net.train(was_training)
    return losses


class DivideMix(Method):
    """DivideMix (see the module docstring): co-divided semi-supervised training of two networks."""

    name = "dividemix"
    summary = "two networks; per-epoch loss GMM co-divides the data; MixMatch with co-refinement and co-guessing"
    in_default_grid = False
    state_attributes = (
        "peer", "peer_optimizer", "peer_schedule", "clean_prob", "recent_losses", "epochs_divided", "mixing", "_division_row",
    )
    parameters = {
        "warmup_epochs": Param(10, "epochs of plain cross entropy before the first division", low=0),
        "p_threshold": Param(0.5, "τ: an example is labelled when its clean probability exceeds τ", low=0.0, high=1.0, low_open=True, high_open=True),
        "temperature": Param(0.5, "T: sharpening temperature of refined and guessed labels", low=0.0, low_open=True),
        "alpha": Param(4.0, "α of the Beta(α, α) mixing coefficient", low=0.0, low_open=True),
        "lambda_u": Param(25.0, "λ_u: weight of the unlabelled (squared-error) loss", low=0.0),
        "rampup_epochs": Param(16, "epochs over which λ_u ramps up linearly after the warm-up (0: at once)", low=0),
        "loss_history": Param(1, "epochs of normalised losses averaged before the mixture fit", low=1),
        "confidence_penalty": Param(False, "add the negative entropy to the warm-up loss (asymmetric noise, Clothing1M)"),
        "second_view": Param("weak", "second view: the task's augmentation redrawn, or its strong view", choices=("weak", "strong")),
    }
    presets = {
        "cifar10_sym20": Preset({"lambda_u": 0.0}, source=TABLE7, doc="CIFAR-10, 20% noise drawn from all classes (the suite's 'uniform')"),
        "cifar10_sym50": Preset({"lambda_u": 25.0}, source=TABLE7, doc="CIFAR-10, 50% noise drawn from all classes"),
        "cifar10_sym80": Preset({"lambda_u": 25.0}, source=TABLE7, doc="CIFAR-10, 80% noise drawn from all classes"),
        "cifar10_sym90": Preset(
            {"lambda_u": 50.0, "p_threshold": 0.6, "loss_history": 5},
            source=TABLE7 + " (5-epoch loss average at r = 0.9)",
            doc="CIFAR-10, 90% noise drawn from all classes",
        ),
        "cifar10_asym40": Preset(
            {"lambda_u": 0.0, "confidence_penalty": True},
            source=TABLE7 + " (warm-up penalty for asymmetric noise)",
            doc="CIFAR-10, 40% asymmetric noise (the suite's cifar10_asymmetric)",
        ),
        "cifar100_sym20": Preset({"lambda_u": 25.0, "warmup_epochs": 30}, source=TABLE7, doc="CIFAR-100, 20% noise drawn from all classes; warm-up 30 epochs"),
        "cifar100_sym50": Preset({"lambda_u": 150.0, "warmup_epochs": 30}, source=TABLE7, doc="CIFAR-100, 50% noise drawn from all classes"),
        "cifar100_sym80": Preset({"lambda_u": 150.0, "warmup_epochs": 30}, source=TABLE7, doc="CIFAR-100, 80% noise drawn from all classes"),
        "cifar100_sym90": Preset(
            {"lambda_u": 150.0, "warmup_epochs": 30, "p_threshold": 0.6, "loss_history": 5},
            source=TABLE7 + " (5-epoch loss average at r = 0.9)",
            doc="CIFAR-100, 90% noise drawn from all classes",
        ),
        "clothing1m": Preset(
            {"alpha": 0.5, "lambda_u": 0.0, "warmup_epochs": 1, "confidence_penalty": True},
            source="Li et al. 2020, Sec. 4.1 (Clothing1M); LiJunnan1992/DivideMix Train_clothing1M.py",
            doc="Clothing1M: α = 0.5, λ_u = 0, one warm-up epoch with the confidence penalty",
        ),
    }

    def needs(self) -> tuple[Need, ...]:
        return (strong_view(),) if self.second_view == "strong" else ()

    def start(self, ctx: TrainContext) -> None:
        import torch

        from benchsuite_plugins.methods.pair_ensemble import PairEnsemble

        self._view = self._second_view_fn(ctx)
        self.peer = ctx.new_model().train()
        self.peer_optimizer, self.peer_schedule = self.configure_optimizer(self.peer, ctx.recipe, ctx.total_steps)
        self.ensemble = PairEnsemble(ctx.model, self.peer)
        n = ctx.data.num_train
        #: Row k: clean probability of every example under network k's mixture (f = 0, g = 1).
        self.clean_prob: torch.Tensor | None = None
        #: The last ``loss_history`` epochs of each network's normalised losses (a ring), and how many were filled.
        self.recent_losses = torch.zeros(2, self.loss_history, n, device=ctx.device)
        self.epochs_divided = 0
        self.mixing = BetaDraws(self.alpha, ctx.generator)
        truth = ctx.data.truth_known.to(ctx.device)
        self._clean = truth & ~ctx.data.is_noisy.to(ctx.device)
        self._known = truth
        self._division_row: dict[str, float] = {}

    def _second_view_fn(self, ctx: TrainContext) -> Callable[[Batch], torch.Tensor]:
        if self.second_view == "strong":
            strong = ctx.provided(STRONG_VIEW)
            return lambda batch: strong(batch.x, ctx.generator)
        fresh = getattr(ctx.data.train, "fresh_view", None)
        if fresh is None:
            raise ValueError(
                "dividemix: this task's training source cannot redraw a view of a batch (it has no fresh_view); "
                "use second_view = 'strong' on a task that provides a strong augmentation"
            )
        return lambda batch: fresh(batch.index, ctx.generator)

    def in_warmup(self, ctx: TrainContext) -> bool:
        return ctx.step // ctx.steps_per_epoch < self.warmup_epochs

    def start_epoch(self, ctx: TrainContext) -> None:
        """After the warm-up: fit each network's loss mixture and record the division f trains on."""
        import torch

        if self.in_warmup(ctx):
            return
        slot = self.epochs_divided % self.loss_history
        for k, net in enumerate((ctx.model, self.peer)):
            self.recent_losses[k, slot] = min_max_normalise(training_losses(ctx, net))
        self.epochs_divided += 1
        recent = self.recent_losses[:, : min(self.epochs_divided, self.loss_history)].mean(1)
        self.clean_prob = torch.stack([clean_probability(recent[0]), clean_probability(recent[1])])
        self._division_row = self._division_stats(self.clean_prob[1] > self.p_threshold)

    def _division_stats(self, labelled: torch.Tensor) -> dict[str, float]:
        """Share labelled, and (where the truth is known) the share of truly clean examples among
        the labelled ones and of the truly clean ones labelled; one device read."""
        import torch

        known_labelled = labelled & self._known
        counts = torch.stack(
            [labelled.sum(), (known_labelled & self._clean).sum(), known_labelled.sum(), self._clean.sum()]
        ).tolist()
        n_labelled, n_clean_labelled, n_known_labelled, n_clean = counts
        row = {"dividemix_labelled": n_labelled / len(labelled)}
        if n_known_labelled:
            row["dividemix_labelled_clean"] = n_clean_labelled / n_known_labelled
        if n_clean:
            row["dividemix_clean_labelled"] = n_clean_labelled / n_clean
        return row

    def train_step(self, ctx: TrainContext, batch: Batch) -> StepOutput:
        if self.in_warmup(ctx):
            out = self._warmup_step(ctx, batch)
        else:
            if self.clean_prob is None:
                raise RuntimeError("dividemix: no division yet; the engine calls start_epoch before each epoch")
            x2 = self._view(batch)
            out = self._train(ctx, ctx.model, self.peer, None, batch, x2, self.clean_prob[1, batch.index])
            self._train(ctx, self.peer, ctx.model, self.peer_optimizer, batch, x2, self.clean_prob[0, batch.index])
        if self.peer_schedule is not None:
            self.peer_schedule.step()
        return out

    def _warmup_step(self, ctx: TrainContext, batch: Batch) -> StepOutput:
        import torch.nn.functional as F

        outputs = []
        for net, optimizer in ((ctx.model, None), (self.peer, self.peer_optimizer)):
            net.train()
            with ctx.autocast():
                logits = net(batch.x).float()
            loss = F.cross_entropy(logits, batch.y)
            if self.confidence_penalty:
                loss = loss + negative_entropy(logits)
            ctx.optimize(loss, optimizer)
            outputs.append(StepOutput(loss=loss.detach(), logits=logits.detach()))
        return outputs[0]

    def lambda_u_now(self, ctx: TrainContext) -> float:
        """λ_u times the linear ramp over ``rampup_epochs`` after the warm-up (epochs as steps done)."""
        if self.rampup_epochs == 0:
            return self.lambda_u
        progress = (ctx.step / ctx.steps_per_epoch - self.warmup_epochs) / self.rampup_epochs
        return self.lambda_u * min(max(progress, 0.0), 1.0)

    def mixing_coefficient(self) -> float:
        """λ' = max(λ, 1 − λ) with λ ~ Beta(α, α): each mixed row stays closer to its first source."""
        lam = self.mixing.next()
        return max(lam, 1.0 - lam)

    def _train(
        self,
        ctx: TrainContext,
        net: nn.Module,
        peer: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        batch: Batch,
        x2: torch.Tensor,
        clean_prob: torch.Tensor,
    ) -> StepOutput:
        """One semi-supervised step of ``net`` on the peer's division of the batch."""
        import torch
        import torch.nn.functional as F

        x1, size = batch.x, len(batch.y)
        with torch.no_grad(), ctx.autocast():
            net.train()  # as in the code: the trained network guesses in train mode
            own_logits = torch.stack([net(x1), net(x2)]).float()
            peer.eval()
            peer_logits = torch.stack([peer(x1), peer(x2)]).float()
        own = own_logits.softmax(2)
        onehot = F.one_hot(batch.y, own.shape[2]).float()
        labelled = clean_prob > self.p_threshold
        refined = co_refine(own, onehot, clean_prob, self.temperature)
        guessed = co_guess(torch.cat([own, peer_logits.softmax(2)]), self.temperature)
        targets = torch.where(labelled[:, None], refined, guessed)
        gen = ctx.generator
        perm = torch.randperm(2 * size, generator=gen, device=gen.device).to(x1.device)
        mixed_x, mixed_t = mixmatch(torch.cat([x1, x2]), torch.cat([targets, targets]), self.mixing_coefficient(), perm)
        with ctx.autocast():
            logits = net(mixed_x).float()
        loss = semi_supervised_loss(logits, mixed_t, torch.cat([labelled, labelled]).float(), self.lambda_u_now(ctx))
        ctx.optimize(loss, optimizer)
        return StepOutput(loss=loss.detach(), logits=own_logits[0])

    def eval_model(self, ctx: TrainContext) -> nn.Module:
        return self.ensemble

    def end_epoch(self, ctx: TrainContext, metrics: dict[str, float]) -> dict[str, float]:
        """The division f trained on this epoch: share labelled, its precision and recall of the
        truly clean examples (empty during the warm-up)."""
        row, self._division_row = self._division_row, {}
        return row


@hookimpl
def register_methods(register):
    register(DivideMix)
