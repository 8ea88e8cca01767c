"""The phase map's measures as pure functions: the loss barrier on a line, output similarity, the regime.

Linear mode connectivity (Frankle et al. 2020): between two models A (alpha = 0) and B (alpha = 1),
the loss L(alpha) of the interpolated weights (1 - alpha) A + alpha B, minus the straight line between
the endpoint losses; the barrier is its maximum over the alpha grid. A model with itself has barrier 0.

The three-regime model (Zhou, Yang, Chang, Mahoney, ICML 2023) names the pruned model's landscape:
Regime I, poorly connected (a loss barrier); Regime II, well connected, split by how similar the
pruned model's representations are to the reference: II-A dissimilar, II-B similar. kenprune measures the
barrier between the pruned(-recovered) model and its dense parent and the similarity as linear CKA
of their final hidden states; the two thresholds are settings (the paper gives no universal numbers).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

REGIMES = {"I": "poorly connected: a loss barrier between the pruned model and its dense parent",
           "II-A": "well connected, dissimilar representations",
           "II-B": "well connected, similar representations"}


def interpolate(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) a + alpha b for floating tensors; other tensors (ids, counters) from a."""
    if a.keys() != b.keys():
        raise ValueError("the two models have different parameters; interpolation needs one architecture")
    return {k: torch.lerp(a[k], b[k].to(a[k].dtype), alpha) if a[k].is_floating_point() else a[k] for k in a}


def barrier(alphas: Sequence[float], losses: Sequence[float]) -> tuple[float, float]:
    """(max over the grid of L(alpha) - [(1 - alpha) L(0) + alpha L(1)], the alpha where it is reached).

    The grid must start at 0 and end at 1 (the endpoints)."""
    if len(alphas) != len(losses) or len(alphas) < 2 or alphas[0] != 0 or alphas[-1] != 1:
        raise ValueError("the alpha grid must run from 0 to 1 with one loss per alpha")
    gaps = [loss - ((1 - a) * losses[0] + a * losses[-1]) for a, loss in zip(alphas, losses)]
    i = max(range(len(gaps)), key=gaps.__getitem__)
    return float(gaps[i]), float(alphas[i])


def loss_curve(model: torch.nn.Module, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
               alphas: Sequence[float], loss: Callable[[torch.nn.Module], float]) -> list[float]:
    """loss(model with weights (1 - alpha) a + alpha b) for each alpha; the model ends holding b's weights."""
    out = []
    for alpha in alphas:
        model.load_state_dict(interpolate(a, b, alpha), strict=True)
        out.append(float(loss(model)))
    model.load_state_dict(dict(b), strict=True)
    return out


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two representations [n, d1], [n, d2] of the same n inputs."""
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    cross = (y.T @ x).norm() ** 2
    norm = (x.T @ x).norm() * (y.T @ y).norm()
    return float(cross / norm) if norm > 0 else float("nan")


def regime(barrier_value: float, similarity: float, barrier_threshold: float, similarity_threshold: float) -> str:
    """The three-regime model's name for one cell: I (barrier), II-A (connected, dissimilar), II-B (similar)."""
    if barrier_value > barrier_threshold:
        return "I"
    return "II-B" if similarity >= similarity_threshold else "II-A"
