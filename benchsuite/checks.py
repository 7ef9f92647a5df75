"""Contract checks for method plugins: plain functions, importable without pytest.

The checks that the built-in methods pass, for any method plugin to run on itself (in the style of
scikit-learn's estimator checks). Run them all at once::

    from benchsuite.checks import check_method

    not_applicable = check_method(MyMethod(alpha=0.5))  # raises CheckFailed on the first failure
    print(not_applicable)  # ["check_fitted_batch: my_method does not normalise by weight ...", ...]

or one at a time (``ALL_CHECKS``). Under pytest, ``benchsuite.testing`` (the ``pytest11`` plugin) turns
each (method, check) pair into a test. Methods are given by registered name, by class (default
parameters) or as instances. What is checked:

* declaration: name, summary, JSON-describable parameters whose defaults are valid;
* declared parameter ranges, choices and types are enforced (a value just outside is refused);
* presets: each has a source, names declared parameters only, and builds;
* (loss methods) the autograd gradient of ``loss`` equals the declared closed form
  ``example_gradient`` in float64, scaled as ``batch_reduction`` declares, for every preset;
* the reported weights are detached, and equal the L1 norms of the declared per-example gradients;
* batch behaviour: permuting the batch permutes the gradient; duplicating it scales the gradients
  (and the value) as ``batch_reduction`` declares; under ``weight_sum`` the L1 norms sum to
  Σ_i ‖∇ℓ_i‖₁ / Σ_j W_j ≤ 1 (``normalising_weights`` W; exactly 1 when W is the L1 norm);
* (``weight_sum``) a batch of well-fitted examples (logit margins 30 and 60) gets the gradient the
  declared raw-weight normalisation gives it: vanishing when the method's per-example gradient
  saturates (DM's ε), not renormalised back to a mass of 1;
* loss, gradient and weights are finite for extreme logits (±1e4 apart) in float32 and bfloat16.

A check that does not apply to a method (a step-level method has no loss gradient; a method that
declares no ``example_gradient`` cannot be compared with it) raises ``NotApplicable`` with the
reason; ``check_method`` collects those reasons instead of hiding them.

Kept import-light: the pytest plugin loads this module in every pytest session of an environment
where benchsuite is installed, so torch is imported inside the functions only.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .errors import BenchsuiteError

if TYPE_CHECKING:
    import torch

    from .method import LossMethod, Method

MethodSpec = Any  # a registered name, a Method subclass, or a Method instance
Check = Callable[["Method"], None]


class CheckFailed(BenchsuiteError, AssertionError):
    """A method breaks one of the contracts (an ``AssertionError``, so test runners show it as a failure)."""


class NotApplicable(BenchsuiteError):
    """The check does not apply to this method; the message says why."""


def require(condition: Any, message: str) -> None:
    """Raise ``CheckFailed(message)`` unless ``condition`` holds (unlike ``assert``, not removed by ``-O``)."""
    if not condition:
        raise CheckFailed(message)


def assert_close(actual: "torch.Tensor", expected: "torch.Tensor", *, rtol: float, atol: float, msg: Callable[[str], str]) -> None:
    """``torch.testing.assert_close`` raising ``CheckFailed``."""
    import torch

    try:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=msg)
    except AssertionError as exc:
        raise CheckFailed(str(exc)) from None


#: Logit spread of the extreme-logit check (float32 and bfloat16 must stay finite).
EXTREME = 1e4


# -- resolving what to check --------------------------------------------------------------------


def resolve_method(spec: MethodSpec) -> "Method":
    """A method instance from a registered name, a class (default parameters) or an instance."""
    from .method import Method

    if isinstance(spec, Method):
        return spec
    if isinstance(spec, type) and issubclass(spec, Method):
        return spec()
    if isinstance(spec, str):
        from . import load_method

        return load_method(spec)
    raise TypeError(f"expected a method name, a benchsuite.Method subclass or instance, got {spec!r}")


def method_id(method: "Method") -> str:
    """``name`` plus the parameters that differ from their defaults, e.g. ``gce(q=0.5)``."""
    changed = {k: v for k, v in method.config.items() if v != method.parameters[k].default}
    return method.name + ("(" + ",".join(f"{k}={v}" for k, v in changed.items()) + ")" if changed else "")


def _rebuild(method: "Method", **values: Any) -> "Method":
    return type(method)(**{**method.config, **values})


def _loss_method(method: "Method") -> "LossMethod":
    from .method import LossMethod

    if not isinstance(method, LossMethod):
        raise NotApplicable(f"{method.name} is a step-level method: its gradient is not a loss's")
    return method


def _declared_gradient(method: "LossMethod", logits: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
    gradient = method.example_gradient(logits, targets)
    if gradient is None:
        raise NotApplicable(f"{method.name} declares no example_gradient (the closed-form per-example gradient)")
    return gradient


def _normaliser(method: "LossMethod", logits: "torch.Tensor", targets: "torch.Tensor", example_gradient: "torch.Tensor") -> "torch.Tensor":
    """Σ_j W_j of a ``weight_sum`` method: its declared ``normalising_weights``, by default the L1
    norms of the declared per-example gradients."""
    weights = method.normalising_weights(logits, targets)
    return example_gradient.abs().sum() if weights is None else weights.sum()


def _reduction_scale(
    method: "LossMethod", logits: "torch.Tensor", targets: "torch.Tensor", example_gradient: "torch.Tensor"
) -> "torch.Tensor":
    """What the batch gradient of each example is, relative to its own loss's gradient."""
    import torch

    n = len(example_gradient)
    reduction = method.batch_reduction
    if reduction == "mean":
        return torch.full((n, 1), 1.0 / n, dtype=example_gradient.dtype)
    if reduction == "sum":
        return torch.ones((n, 1), dtype=example_gradient.dtype)
    if reduction == "weight_sum":
        return (1.0 / _normaliser(method, logits, targets, example_gradient)).expand(n, 1)
    raise CheckFailed(f"{method.name}.batch_reduction = {reduction!r}; declare 'mean', 'sum' or 'weight_sum'")


def _batch(num_classes: int, n: int, seed: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Seeded float64 logits (spread like a trained network's) and targets."""
    import torch

    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, num_classes, generator=g, dtype=torch.float64)
    return logits, torch.randint(0, num_classes, (n,), generator=g)


def _grad(method: "LossMethod", logits: "torch.Tensor", targets: "torch.Tensor") -> tuple["torch.Tensor", Any]:
    import torch

    z = logits.detach().clone().requires_grad_(True)
    out = method.compute(z, targets)
    (gradient,) = torch.autograd.grad(out.loss, z)
    return gradient, out


def _instances(method: "Method") -> Iterator["Method"]:
    """The method as given, then one instance per preset."""
    yield method
    for preset in type(method).presets:
        yield type(method)(preset=preset)


# -- the checks ---------------------------------------------------------------------------------


def check_declaration(method: "Method") -> None:
    """Name, summary, parameters and presets are declared, valid and JSON-describable."""
    from .params import Param, Preset

    cls = type(method)
    require(cls.name and cls.summary, f"{cls.__qualname__} must declare a name and a one-line summary")
    for name, param in cls.parameters.items():
        require(isinstance(param, Param), f"{cls.name}: parameter {name!r} is not a benchsuite.Param")
        require(param.doc, f"{cls.name}: parameter {name!r} has no doc")
        param.validate(cls.name, name, param.default)
    for name, preset in cls.presets.items():
        require(isinstance(preset, Preset), f"{cls.name}: preset {name!r} is not a benchsuite.Preset")
    json.dumps(cls.describe())


def _out_of_range(param: Any) -> Iterator[tuple[Any, str]]:
    kind = param.kind
    if param.choices is not None:
        yield ("__not_a_choice__" if kind is str else -12345), "a value outside its choices"
    if kind in (int, float):
        step = 1 if kind is int else 1e-6 * max(1.0, abs(param.low or 0), abs(param.high or 0))
        if param.low is not None:
            yield (param.low if param.low_open else kind(param.low - step)), f"a value below its low bound {param.low}"
        if param.high is not None:
            yield (param.high if param.high_open else kind(param.high + step)), f"a value above its high bound {param.high}"
        yield "1", "a string"
    if kind is float:
        yield float("nan"), "NaN"
    if kind is str:
        yield 1, "an int"
    if kind is bool:
        yield 1, "an int"
    if not param.nullable:
        yield None, "None"


def check_parameter_ranges(method: "Method") -> None:
    """Each declared range, choice and type is enforced at construction; unknown names are refused."""
    from .params import ParameterError

    for name, param in type(method).parameters.items():
        for value, what in _out_of_range(param):
            try:
                _rebuild(method, **{name: value})
            except ParameterError:
                continue
            raise CheckFailed(f"{method.name}: parameter {name!r} accepted {what} ({value!r}); allowed: {param.allowed()}")
    try:
        _rebuild(method, __no_such_parameter__=1)
    except ParameterError:
        return
    raise CheckFailed(f"{method.name}: an undeclared parameter name was accepted")


def check_presets(method: "Method") -> None:
    """Every preset names its source, sets declared parameters only, and builds with its values."""
    cls = type(method)
    for name, preset in cls.presets.items():
        require(preset.source, f"{cls.name}: preset {name!r} has no source (paper and table, or code)")
        unknown = set(preset.values) - set(cls.parameters)
        require(not unknown, f"{cls.name}: preset {name!r} sets undeclared parameters {sorted(unknown)}")
        built = cls(preset=name)
        for key, value in preset.values.items():
            require(built.config[key] == value, f"{cls.name}@{name}: {key} = {built.config[key]!r}, preset says {value!r}")


def check_gradient(method: "Method") -> None:
    """float64: autograd of ``loss`` = declared ``example_gradient`` × the declared batch scale,
    for the method as given and each preset; ``compute`` leaves the logits untouched."""
    import torch

    _loss_method(method)
    for instance in _instances(method):
        for num_classes, seed in ((2, 0), (5, 1), (10, 2)):
            logits, targets = _batch(num_classes, 9, seed)
            before = logits.clone()
            gradient, _ = _grad(instance, logits, targets)
            declared = _declared_gradient(instance, logits, targets)
            require(torch.equal(logits, before), f"{method_id(instance)}: compute() modified its logits")
            expected = declared * _reduction_scale(instance, logits, targets, declared)
            assert_close(
                gradient, expected, rtol=1e-8, atol=1e-12,
                msg=lambda m: f"{method_id(instance)}: autograd gradient of loss() != declared example_gradient "
                f"(batch_reduction={instance.batch_reduction!r}, C={num_classes}): {m}",
            )


def check_weights(method: "Method") -> None:
    """Reported weights are detached, (N,), finite, non-negative, and equal the L1 norms of the
    declared per-example gradients (the definition of an example's weight)."""
    import torch

    _loss_method(method)
    for instance in _instances(method):
        logits, targets = _batch(10, 9, 3)
        _, out = _grad(instance, logits, targets)
        if out.weights is None:
            raise NotApplicable(f"{instance.name} reports no per-example weights")
        w = out.weights
        require(not w.requires_grad, f"{method_id(instance)}: weights must be detached (no gradient flows through them)")
        require(w.shape == targets.shape, f"{method_id(instance)}: weights have shape {tuple(w.shape)}, expected ({len(targets)},)")
        require(torch.isfinite(w).all() and (w >= 0).all(), f"{method_id(instance)}: weights must be finite and >= 0: {w}")
        norms = _declared_gradient(instance, logits, targets).abs().sum(1)
        assert_close(
            w.to(norms.dtype), norms, rtol=1e-8, atol=1e-12,
            msg=lambda m: f"{method_id(instance)}: weights != L1 norms of the per-example gradients: {m}",
        )


def check_batch_behaviour(method: "Method") -> None:
    """Permuting the batch permutes the gradient; duplicating it halves each copy's gradient
    (``mean``, ``weight_sum``) or keeps it (``sum``), and keeps (``mean``) or doubles (``sum``)
    the value; under ``weight_sum`` the examples' gradient L1 norms sum to at most 1."""
    import torch

    method = _loss_method(method)
    logits, targets = _batch(10, 8, 4)
    gradient, out = _grad(method, logits, targets)
    perm = torch.randperm(len(targets), generator=torch.Generator().manual_seed(5))
    permuted, _ = _grad(method, logits[perm], targets[perm])
    assert_close(permuted, gradient[perm], rtol=1e-9, atol=1e-12,
                               msg=lambda m: f"{method.name}: the gradient depends on the order of the batch: {m}")
    twice, out2 = _grad(method, torch.cat([logits, logits]), torch.cat([targets, targets]))
    reduction = method.batch_reduction
    factor = 1.0 if reduction == "sum" else 0.5
    for copy in twice.chunk(2):
        assert_close(copy, factor * gradient, rtol=1e-9, atol=1e-12,
                                   msg=lambda m: f"{method.name}: duplicating the batch does not scale the gradient "
                                   f"by {factor} as batch_reduction={reduction!r} says: {m}")
    if reduction in ("mean", "sum"):
        value_factor = 2.0 if reduction == "sum" else 1.0
        assert_close(out2.loss.detach(), value_factor * out.loss.detach(), rtol=1e-9, atol=1e-12,
                                   msg=lambda m: f"{method.name}: duplicating the batch changes the {reduction} loss value: {m}")
    if reduction == "weight_sum":
        total = gradient.abs().sum().item()
        require(total <= 1.0 + 1e-9, f"{method.name}: weight_sum gradients must have total L1 norm at most 1, got {total}")


#: Logit margins of the fitted-batch check (1 − p_y ≈ 2e-8 and 8e-13 over 9 other classes): as far
#: as float64's plain-arithmetic closed forms resolve 1 − p_y (to ~1e-4 relative at margin 30).
FITTED_MARGINS = (20.0, 30.0)
FITTED_RTOL = 1e-3


def fitted_batch(margin: float, num_classes: int = 10, n: int = 6) -> tuple["torch.Tensor", "torch.Tensor"]:
    """float64 logits of ``n`` examples whose target logit lies ``margin`` (staggered by up to 1, so
    the examples differ) above the other classes, which are 0."""
    import torch

    targets = torch.arange(n) % num_classes
    logits = torch.zeros(n, num_classes, dtype=torch.float64)
    logits[torch.arange(n), targets] = margin + torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    return logits, targets


def check_fitted_batch(method: "Method") -> None:
    """(``weight_sum``) A batch of well-fitted examples gets the gradient the raw-weight normalisation
    declares: its L1 mass is Σ_i ‖∇ℓ_i‖₁ / Σ_j W_j (float64, logit margins 20 and 30), which vanishes
    for a method whose gradient saturates (DM's ε: 1.7e-4 at margin 30) instead of being
    renormalised back to 1; for each of the method's instances that normalises by weight."""
    method = _loss_method(method)
    instances = [i for i in _instances(method) if i.batch_reduction == "weight_sum"]
    if not instances:
        raise NotApplicable(f"{method.name} does not normalise by weight (batch_reduction = {method.batch_reduction!r})")
    for instance in instances:
        for margin in FITTED_MARGINS:
            logits, targets = fitted_batch(margin)
            gradient, _ = _grad(instance, logits, targets)
            declared = _declared_gradient(instance, logits, targets)
            expected = (declared.abs().sum() / _normaliser(instance, logits, targets, declared)).item()
            mass = gradient.abs().sum().item()
            require(
                abs(mass - expected) <= FITTED_RTOL * expected,
                f"{method_id(instance)}: a batch fitted at logit margin {margin:g} has gradient L1 mass {mass:.3g}; "
                f"the declared normalisation Σ‖∇ℓ_i‖₁ / Σ W_j gives {expected:.3g}",
            )


def extreme_logits() -> Iterator[tuple[str, "torch.Tensor", "torch.Tensor"]]:
    """Batches whose logits differ by up to ±1e4: p_y → 1, p_y → 0, ties, huge offsets, C = 2."""
    import torch

    for c in (2, 10):
        zeros = torch.zeros(4, c, dtype=torch.float64)
        targets = torch.tensor([0, 1, 0, 1])
        confident = zeros.clone().scatter_(1, targets[:, None], EXTREME)
        hopeless = zeros.clone().scatter_(1, targets[:, None], -EXTREME)
        spread = torch.linspace(-EXTREME, EXTREME, 4 * c, dtype=torch.float64).reshape(4, c)
        yield f"C={c} p_y→1", confident, targets
        yield f"C={c} p_y→0", hopeless, targets
        yield f"C={c} all p_y→1 or →0", torch.cat([confident, hopeless]), torch.cat([targets, targets])
        yield f"C={c} ties at +1e4", zeros + EXTREME, targets
        yield f"C={c} spread ±1e4", spread, targets
        yield f"C={c} single confident example", confident[:1], targets[:1]


def check_extreme_logits(method: "Method") -> None:
    """Loss, gradient and weights are finite at extreme logits, in float32 and bfloat16."""
    import torch

    _loss_method(method)
    for instance in _instances(method):
        for dtype in (torch.float32, torch.bfloat16):
            for case, logits, targets in extreme_logits():
                gradient, out = _grad(instance, logits.to(dtype), targets)
                where = f"{method_id(instance)}, {dtype}, {case}"
                require(out.loss.dim() == 0, f"{where}: loss must be a scalar, got shape {tuple(out.loss.shape)}")
                require(torch.isfinite(out.loss), f"{where}: loss is {out.loss.item()}")
                require(torch.isfinite(gradient).all(), f"{where}: gradient is not finite: {gradient}")
                if out.weights is not None:
                    require(torch.isfinite(out.weights).all(), f"{where}: weights are not finite: {out.weights}")


ALL_CHECKS: tuple[Check, ...] = (
    check_declaration,
    check_parameter_ranges,
    check_presets,
    check_gradient,
    check_weights,
    check_batch_behaviour,
    check_fitted_batch,
    check_extreme_logits,
)


def check_method(method: MethodSpec) -> list[str]:
    """Run every check on ``method``; raise ``CheckFailed`` on the first failure; return the reasons
    of the checks that do not apply (``"check_name: reason"``), so that a caller can show them."""
    instance = resolve_method(method)
    not_applicable = []
    for check in ALL_CHECKS:
        try:
            check(instance)
        except NotApplicable as exc:
            not_applicable.append(f"{check.__name__}: {exc}")
    return not_applicable
