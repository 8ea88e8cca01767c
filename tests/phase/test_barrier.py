"""Loss barrier, interpolation, CKA and regime names, against computations done here."""
import pytest
import torch

from kenprune.phase import barrier, interpolate, linear_cka, loss_curve, regime


def _problem():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=gen)
    y = torch.randn(32, 2, generator=gen)
    model = torch.nn.Linear(3, 2, bias=False)
    return x, y, model, lambda m: float(((m(x) - y) ** 2).mean().detach())


def test_barrier_of_a_model_with_itself_is_zero():
    x, y, model, loss = _problem()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    alphas = [i / 10 for i in range(11)]
    losses = loss_curve(model, state, state, alphas, loss)
    assert barrier(alphas, losses) == (0.0, 0.0)
    assert len(set(losses)) == 1


def test_barrier_of_two_known_endpoints_matches_a_direct_computation():
    x, y, model, loss = _problem()
    a = {"weight": torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])}
    b = {"weight": torch.tensor([[-1.5, 2.0, 0.0], [2.0, -3.0, 1.0]])}
    alphas = [i / 8 for i in range(9)]
    losses = loss_curve(model, a, b, alphas, loss)
    expected = []
    for t in alphas:  # the squared error of (1 - t) A + t B, written out
        w = (1 - t) * a["weight"] + t * b["weight"]
        expected.append(float(((x @ w.T - y) ** 2).mean()))
    assert losses == pytest.approx(expected, rel=1e-6)
    gaps = [e - ((1 - t) * expected[0] + t * expected[-1]) for t, e in zip(alphas, expected)]
    value, at = barrier(alphas, losses)
    assert value == pytest.approx(max(gaps), rel=1e-6) and at == alphas[gaps.index(max(gaps))]
    assert torch.equal(model.weight, b["weight"])  # the model ends at b
    # a quadratic loss along a line is convex in alpha: this pair has no barrier beyond rounding
    assert value <= 1e-5


def test_a_bump_in_the_middle_is_a_barrier():
    assert barrier([0, 0.5, 1], [1.0, 3.0, 2.0]) == (1.5, 0.5)
    with pytest.raises(ValueError):
        barrier([0.1, 1], [1.0, 2.0])


def test_interpolation_keeps_integer_buffers_and_refuses_other_architectures():
    a = {"w": torch.zeros(2), "ids": torch.tensor([1, 2])}
    b = {"w": torch.ones(2), "ids": torch.tensor([5, 6])}
    mid = interpolate(a, b, 0.25)
    assert torch.equal(mid["w"], torch.full((2,), 0.25)) and torch.equal(mid["ids"], a["ids"])
    with pytest.raises(ValueError):
        interpolate(a, {"w": torch.ones(2)}, 0.5)


def test_linear_cka_is_one_for_the_same_representation_up_to_scale_and_rotation():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(2)))
    assert linear_cka(x, 3 * x @ q) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, torch.randn(50, 4, generator=torch.Generator().manual_seed(3))) < 0.5


def test_regimes_follow_barrier_then_similarity():
    assert regime(0.2, 0.99, 0.05, 0.9) == "I"
    assert regime(0.01, 0.5, 0.05, 0.9) == "II-A"
    assert regime(0.0, 0.95, 0.05, 0.9) == "II-B"
