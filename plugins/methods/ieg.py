"""IEG: isolation, escalation and guidance from a small trusted ("probe") set.

Zhang, Zhang, Arik, Lee & Pfister, "IEG: Robust neural network training to tackle severe label
noise" (ICLR-20 submission; CVPR-20 as "Distilling effective supervision from severe label
noise"). One step follows the official TF code's choices (``docs/reference.md`` §5):

1. weak view ``x_w`` (the task's training batch) and strong view ``x_s`` (the ``strong_view`` need);
   pseudo labels ``g`` = the averaged softmax of both views' logit-normalised logits, sharpened
   with temperature 0.5;
2. meta step: a one-step momentum-SGD look-ahead of the weights on Σ ω_i CE(z_i, λ_i e_y + (1−λ_i) g)
   at ω = 1/B, λ = 0.9, with the optimiser's momentum buffer and weight decay and second-order
   gradients; the probe loss of the looked-ahead weights gives ω* = max(−∂/∂ω, 0), normalised
   to sum 1 (isolation), and λ* = [∂/∂λ < 0] (keep the label, else use the pseudo label);
3. loss = ½(mean CE(z_w, λ* e_y + (1−λ*) g) + Σ ω* CE(z_w, 0.9 e_y + 0.1 g))
   + MixUp CE over the pool [probe resampled; x_w; x_s] (probe rows weight 1, the rest ``ce_factor``)
   + ``consistency_factor`` · KL(p(x_w) ‖ p(x_s));
4. momentum SGD with cosine decay and warm restarts.

The reference evaluates an EMA of the weights; here IEG is scored like every other method, on its
trained weights, unless the grid scores all its methods on an EMA (``eval_ema``, an engine option
that follows the reference's EMA). IEG's training uses no EMA.

Only the weak-view forward updates BatchNorm running statistics: the strong, probe and MixUp
forwards use batch statistics through ``torch.func.functional_call`` with cloned buffers.

Departures from the code, each a parameter: the learning rate is ``lr_scale`` (default 0.3) times
the task recipe's (why: the ``IEG`` class docstring; the ``reference`` preset sets 1); pseudo
labels are constants inside the look-ahead
unless ``faithful_g_grad`` (the code lets the look-ahead gradient flow through them); MixUp
coefficients follow the code (m = 1 − U^(1/β)/2) or the paper (``mixup="beta"``: b ~ Beta(β, β),
m = max(b, 1 − b)). The paper's split of the batch by ω* < T is left out: the code has none, and
with ω* summing to 1 the paper's T = 1 puts every example in the pseudo-labelled pool anyway.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

from benchsuite import Method, Param, Preset, StepOutput, hookimpl
from benchsuite.needs import STRONG_VIEW, Need, strong_view, trusted_set
from benchsuite.task import Batch, Recipe

if TYPE_CHECKING:
    import torch
    from torch import nn

    from benchsuite.engine import TrainContext

#: Added to the mean square in ``logit_norm`` (the code's constant).
LOGIT_NORM_EPS = 1e-8
#: Added to Σ max(−∂/∂ω, 0) before normalising the weights (the code's constant; also what makes
#: an all-zero gradient give all-zero weights instead of a division by zero).
WEIGHT_NORM_EPS = 1e-5


def logit_norm(logits: torch.Tensor) -> torch.Tensor:
    """Divide a chunk of logits by its root mean square over the whole chunk (not per row)."""
    import torch

    return logits * torch.rsqrt(logits.square().mean() + LOGIT_NORM_EPS)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross entropy of ``logits`` against target distributions."""
    return -(targets * logits.log_softmax(1)).sum(1)


def pseudo_labels(logits_weak: torch.Tensor, logits_strong: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sharpened average of the two views' predictions (MixMatch-style, K = 2)."""
    mean = 0.5 * (logit_norm(logits_weak).softmax(1) + logit_norm(logits_strong).softmax(1))
    sharp = mean.pow(1.0 / temperature)
    return sharp / sharp.sum(1, keepdim=True)


def cosine_restarts_factor(step: int, first_decay_steps: int, t_mul: float, m_mul: float, alpha: float) -> float:
    """Learning-rate multiplier of TF's ``cosine_decay_restarts`` at ``step``.

    Cycle i lasts ``first_decay_steps``·t_mul^i steps and peaks at m_mul^i; within a cycle the
    multiplier falls from its peak to ``alpha`` along half a cosine.
    """
    fraction = step / first_decay_steps
    if t_mul == 1.0:
        cycle = math.floor(fraction)
        fraction -= cycle
    else:
        # Cycles 0..i-1 span (t_mul^i - 1)/(t_mul - 1) first periods; the epsilon keeps a step that
        # lands exactly on a restart in the new cycle despite rounding in the logarithm.
        cycle = math.floor(math.log1p(fraction * (t_mul - 1.0)) / math.log(t_mul) + 1e-9)
        done = (t_mul**cycle - 1.0) / (t_mul - 1.0)
        fraction = max(fraction - done, 0.0) / t_mul**cycle
    cosine = 0.5 * m_mul**cycle * (1.0 + math.cos(math.pi * fraction))
    return (1.0 - alpha) * cosine + alpha


class CosineRestarts:
    """Per-step schedule: every group's rate is its base rate × ``cosine_restarts_factor(step)``
    (a plain object with ``step()``, as the engine takes; cheaper than ``LambdaLR``)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, first_decay_steps: int, t_mul: float, m_mul: float, alpha: float
    ) -> None:
        self.optimizer = optimizer
        self.shape = (first_decay_steps, t_mul, m_mul, alpha)
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        factor = cosine_restarts_factor(self.steps, *self.shape)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor


def stateless_forward(model: nn.Module, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Forward in the model's current mode without touching its buffers (BN running statistics).

    BatchNorm in train mode still normalises with the batch's statistics; it updates clones that
    are then dropped. ``params`` replaces some parameters (the meta step's looked-ahead weights).
    """
    from torch.func import functional_call

    buffers = {name: b.clone() for name, b in model.named_buffers()}
    if not buffers and params is None:
        return model(x)
    return functional_call(model, {**(params or {}), **buffers}, (x,))


def meta_gradients(
    model: nn.Module,
    logits: torch.Tensor,
    labels_onehot: torch.Tensor,
    pseudo: torch.Tensor,
    x_probe: torch.Tensor,
    y_probe: torch.Tensor,
    momentum_buffers: list[torch.Tensor | None],
    stepsize: float,
    momentum: float,
    weight_decay: list[float],
    lambda_init: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the probe loss after a one-step look-ahead w.r.t. the weights ω and mixing λ.

    ``logits`` are the weak-view logits with their graph to the model's trainable parameters
    (in ``model.parameters()`` order, as are ``momentum_buffers`` and ``weight_decay``). The
    look-ahead is momentum SGD: θ' = θ − η(μv + ∇_θ[Σ_i ω_i CE(z_i, t_i) + wd/2‖θ‖²]) with
    t_i = λ_i e_{y_i} + (1 − λ_i) g_i at ω = 1/B, λ = ``lambda_init``; the probe loss is
    mean CE(f_θ'(x_probe), y_probe) + wd/2‖θ'‖². Returns (∂/∂ω, ∂/∂λ), each of shape (B,).
    """
    import torch
    import torch.nn.functional as F

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    batch = len(logits)
    omega = torch.full((batch,), 1.0 / batch, dtype=logits.dtype, device=logits.device, requires_grad=True)
    lam = torch.full((batch,), lambda_init, dtype=logits.dtype, device=logits.device, requires_grad=True)
    targets = lam[:, None] * labels_onehot + (1.0 - lam[:, None]) * pseudo
    look = (omega * soft_cross_entropy(logits, targets)).sum()
    grads = torch.autograd.grad(look, [p for _, p in named], create_graph=True)
    ahead: dict[str, torch.Tensor] = {}
    for (name, p), grad, buf, wd in zip(named, grads, momentum_buffers, weight_decay):
        theta = p.detach()
        step = grad + wd * theta if wd else grad
        if buf is not None:
            step = step + momentum * buf
        ahead[name] = theta - stepsize * step
    probe_logits = stateless_forward(model, x_probe, ahead)
    probe_logits = probe_logits.to(torch.promote_types(probe_logits.dtype, torch.float32))  # float under autocast
    meta = F.cross_entropy(probe_logits, y_probe)
    decay = [0.5 * wd * ahead[name].square().sum() for (name, _), wd in zip(named, weight_decay) if wd]
    if decay:
        meta = meta + torch.stack(decay).sum()
    g_omega, g_lambda = torch.autograd.grad(meta, [omega, lam])
    return g_omega, g_lambda


def mixup_coefficients(n: int, form: str, beta: float, generator: torch.Generator) -> torch.Tensor:
    """Per-row MixUp coefficients in [0.5, 1] (each row stays dominated by its own example).

    ``code``: m = 1 − U^(1/β)/2, U ~ U(0, 1), the official code's approximation of a folded Beta;
    ``beta``: m = max(b, 1 − b), b ~ Beta(β, β), drawn with Jöhnk's method so that the run's
    generator alone decides it (valid for β ≤ 1, where its acceptance rate is ≥ π/4).
    """
    import torch

    device = generator.device
    if form == "code":
        return 1.0 - torch.rand(n, generator=generator, device=device).pow(1.0 / beta) / 2.0
    drawn = torch.empty(0, device=device)
    while len(drawn) < n:
        u, v = torch.rand(2, 2 * n, generator=generator, device=device).log().div(beta)
        s = torch.logaddexp(u, v)  # log(U^(1/β) + V^(1/β)); accept when the sum is <= 1
        drawn = torch.cat([drawn, (u - s).exp()[s <= 0]])
    b = drawn[:n]
    return torch.maximum(b, 1.0 - b)


class IEG(Method):
    """IEG (see the module docstring); needs a trusted subset and the task's strong view.

    Learning rate: ``lr_scale`` × the task recipe's. IEG's loss adds a MixUp term weighted 5 and a
    KL term weighted 20 to the supervised ones, so its gradients are several times CCE's. The
    reference trains BatchNorm networks, whose scale invariance absorbs that; an MLP without
    normalisation at a rate tuned for CCE can collapse onto one class early (the MixUp loss on
    pseudo labels reinforces the collapse): on ``digits`` at lr 0.1 and 40% noise, seed 2 ended at
    46% test accuracy (seeds 3-5: 95%). The default 0.3 trains it stably (seeds 0-2 at 40% and 80%
    noise: 93-97%); the ``reference`` preset restores 1.

    Schedule: the cosine restart periods are in steps, as in the code (first cycle 500 steps,
    about one CIFAR epoch at batch 100). On ``digits``' default budget (60 epochs of 9 steps =
    540 steps) that is one cosine decay over 500 steps and a restart at 0.9× for the last 40
    steps.
    """

    name = "ieg"
    summary = "meta re-weighting and re-labelling from a tiny trusted set, MixUp and consistency (IEG)"
    parameters = {
        "probe_per_class": Param(10, "trusted (probe) examples per class, held out of the noisy set", low=1),
        "temperature": Param(0.5, "sharpening temperature of the pseudo labels", low=0.0, low_open=True),
        "ce_factor": Param(5.0, "p: weight of the MixUp CE on the noisy pools (probe pool: 1)", low=0.0),
        "consistency_factor": Param(20.0, "k: weight of KL(weak ‖ strong)", low=0.0),
        "meta_stepsize": Param(0.1, "look-ahead step size (fixed; not the scheduled lr)", low=0.0, low_open=True),
        "meta_momentum": Param(
            0.9, "momentum of the look-ahead step (times the optimiser's buffer)", low=0.0, high=1.0, high_open=True
        ),
        "grad_eps_init": Param(0.9, "λ0: label share of the look-ahead and ω-loss targets", low=0.0, high=1.0),
        "mixup": Param(
            "code", "MixUp coefficient form: the code's 1 − U^(1/β)/2 or the paper's Beta(β, β)", choices=("code", "beta")
        ),
        "mixup_beta": Param(0.5, "β of the MixUp coefficient", low=0.0, high=1.0, low_open=True),
        "lr_scale": Param(
            0.3, "multiplier of the task recipe's learning rate (see the class docstring)", low=0.0, low_open=True
        ),
        "first_decay_steps": Param(500, "steps of the first cosine cycle (the code's 500 ≈ one CIFAR epoch)", low=1),
        "t_mul": Param(1.5, "each cosine cycle is this much longer than the previous", low=1.0),
        "m_mul": Param(0.9, "each restart peaks at this fraction of the previous peak", low=0.0, high=1.0, low_open=True),
        "decay_alpha": Param(0.0, "floor of the cosine, as a fraction of the peak", low=0.0, high=1.0, high_open=True),
        "faithful_g_grad": Param(False, "let the look-ahead gradient flow through the pseudo labels, as the code does"),
    }

    presets = {
        "reference": Preset(
            {"lr_scale": 1.0},
            source="google-research/google-research ieg/options.py (WRN-28-10 on CIFAR, lr 0.1)",
            doc="the recipe's learning rate unscaled, as the reference trains its BatchNorm networks",
        ),
    }

    def needs(self) -> tuple[Need, ...]:
        return (trusted_set(self.probe_per_class), strong_view())

    def configure_optimizer(
        self, model: nn.Module, recipe: Recipe, total_steps: int
    ) -> tuple[torch.optim.Optimizer, "CosineRestarts"]:
        """Momentum SGD (the look-ahead models its update) at ``lr_scale`` × the recipe's rate and
        the recipe's weight decay, with cosine decay and warm restarts instead of its schedule."""
        import torch

        optimizer = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad],
            lr=self.lr_scale * recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        return optimizer, CosineRestarts(optimizer, self.first_decay_steps, self.t_mul, self.m_mul, self.decay_alpha)

    def start(self, ctx: TrainContext) -> None:
        import torch

        self._strong_view = ctx.provided(STRONG_VIEW)
        self._params = [p for p in ctx.model.parameters() if p.requires_grad]
        decay_of = {p: group["weight_decay"] for group in ctx.optimizer.param_groups for p in group["params"]}
        self._weight_decay = [decay_of[p] for p in self._params]
        self._probe: Iterator[Batch] = ctx.trusted_batches()
        device = ctx.device
        truth = ctx.data.truth_known.to(device)
        noisy = ctx.data.is_noisy.to(device)
        self._groups = torch.stack([truth & ~noisy, noisy]).float()  # (2, N): truly clean, truly noisy
        self._sums = torch.zeros(2, 3, device=device)  # per group: Σ Bω*, Σ [λ* = 0], count

    def train_step(self, ctx: TrainContext, batch: Batch) -> StepOutput:
        import torch
        import torch.nn.functional as F

        model, gen = ctx.model, ctx.generator
        probe = next(self._probe)
        x_w, y = batch.x, batch.y
        x_s = self._strong_view(x_w, gen)
        size = len(y)
        with ctx.autocast():
            logits_w = model(x_w).float()  # the one forward that updates BN running statistics
            logits_s = stateless_forward(model, x_s).float()
        classes = logits_w.shape[1]
        onehot = F.one_hot(y, classes).float()
        g_graph = pseudo_labels(logits_w, logits_s, self.temperature)
        g = g_graph.detach()

        with ctx.autocast():
            g_omega, g_lambda = meta_gradients(
                model,
                logits_w,
                onehot,
                g_graph if self.faithful_g_grad else g,
                probe.x,
                probe.y,
                [ctx.optimizer.state.get(p, {}).get("momentum_buffer") for p in self._params],
                self.meta_stepsize,
                self.meta_momentum,
                self._weight_decay,
                self.grad_eps_init,
            )
        weights = (-g_omega).clamp_min(0.0)
        weights = weights / (weights.sum() + WEIGHT_NORM_EPS)
        keep = (g_lambda < 0).float()[:, None]

        loss_lambda = soft_cross_entropy(logits_w, keep * onehot + (1.0 - keep) * g).mean()
        lam0 = self.grad_eps_init
        loss_omega = (weights * soft_cross_entropy(logits_w, lam0 * onehot + (1.0 - lam0) * g)).sum()
        loss_sup = 0.5 * (loss_lambda + loss_omega)

        pick = torch.randint(len(probe.y), (size,), generator=gen, device=gen.device).to(probe.x.device)
        pool_x = torch.cat([probe.x[pick], x_w, x_s])
        pool_y = torch.cat([F.one_hot(probe.y[pick], classes).float(), g, g])
        m = mixup_coefficients(3 * size, self.mixup, self.mixup_beta, gen).to(pool_x.device)
        perm = torch.randperm(3 * size, generator=gen, device=gen.device).to(pool_x.device)
        mixed_x = _mix(pool_x, pool_x[perm], m)
        mixed_y = m[:, None] * pool_y + (1.0 - m[:, None]) * pool_y[perm]
        with ctx.autocast():
            logits_mix = stateless_forward(model, mixed_x).float()
        chunks = [logit_norm(c) for c in logits_mix.split(size)]
        loss_probe = soft_cross_entropy(chunks[0], mixed_y[:size]).mean()
        loss_noisy = soft_cross_entropy(torch.cat(chunks[1:]), mixed_y[size:]).mean()
        loss_mix = loss_probe + self.ce_factor * loss_noisy

        target = logits_w.detach()
        loss_kl = (target.softmax(1) * (target.log_softmax(1) - logits_s.log_softmax(1))).sum(1).mean()

        loss = loss_sup + loss_mix + self.consistency_factor * loss_kl
        ctx.optimize(loss)

        groups = self._groups[:, batch.index]
        self._sums += groups @ torch.stack([size * weights, 1.0 - keep.squeeze(1), torch.ones_like(weights)]).T
        return StepOutput(loss=loss.detach(), logits=logits_w.detach(), weights=weights)

    def end_epoch(self, ctx: TrainContext, metrics: dict[str, float]) -> dict[str, float]:
        """Mean B·ω* (1 = a uniform weight) and the share re-labelled (λ* = 0), for the truly clean
        and the truly noisy examples of the epoch; one device read per epoch."""
        (w_clean, r_clean, n_clean), (w_noisy, r_noisy, n_noisy) = self._sums.tolist()
        self._sums.zero_()
        row = {}
        if n_clean:
            row.update(ieg_weight_clean=w_clean / n_clean, ieg_relabel_clean=r_clean / n_clean)
        if n_noisy:
            row.update(ieg_weight_noisy=w_noisy / n_noisy, ieg_relabel_noisy=r_noisy / n_noisy)
        return row


def _mix(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Row-wise m·a + (1 − m)·b; integer inputs (uint8 images) are mixed in float and rounded back."""
    import torch

    m = m.view(-1, *([1] * (a.dim() - 1)))
    if a.is_floating_point():
        return torch.lerp(b, a, m.to(a.dtype))
    return torch.lerp(b.float(), a.float(), m).round_().to(a.dtype)


@hookimpl
def register_methods(register):
    register(IEG)
