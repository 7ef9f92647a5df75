import torch
from benchsuite_focal import Focal, focal_weight

import benchsuite
from benchsuite.testing import parametrize_with_method_checks


@parametrize_with_method_checks([Focal(), Focal(gamma=0.5), "focal"])
def test_benchsuite_contract(method, check):
    """The checks every built-in method passes: gradient, weights, batch behaviour, numerics."""
    check(method)


def test_focal_is_registered_through_its_entry_point():
    assert "focal" in benchsuite.list_methods()


def test_gradient_equals_the_closed_form():
    torch.manual_seed(0)
    logits = torch.randn(16, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 5, (16,))
    method = benchsuite.load_method("focal", gamma=2.0)
    (grad,) = torch.autograd.grad(method.loss(logits, targets), logits)
    p = logits.detach().softmax(1)
    p_y = p.gather(1, targets[:, None]).squeeze(1)
    expected = focal_weight(p_y, 2.0)[:, None] * (p - torch.nn.functional.one_hot(targets, 5)) / 16
    assert torch.allclose(grad, expected, atol=1e-12)


def test_gamma_zero_is_cross_entropy():
    logits, targets = torch.randn(8, 3), torch.randint(0, 3, (8,))
    loss = benchsuite.load_method("focal", gamma=0.0).loss(logits, targets)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, targets))
