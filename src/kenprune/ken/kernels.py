"""The six KDE kernels KEN accepts, normalised exactly as scikit-learn's KernelDensity (1-D).

sklearn's `_log_kernel_norm(h, d=1, kernel)` gives these constants (u = (x - x_i) / h, compact
kernels are zero for |u| >= 1, strictly as sklearn's `dist < h`):

    gaussian      exp(-u^2/2)      / (h sqrt(2 pi))
    tophat        1                / (2 h)
    epanechnikov  1 - u^2          * 3 / (4 h)
    exponential   exp(-|u|)        / (2 h)
    linear        1 - |u|          / h
    cosine        cos(pi u / 2)    * pi / (4 h)

The density at a point is the mean over the row of these values (sklearn: logsumexp - log n).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..registry import Registry


@dataclass(frozen=True)
class Kernel:
    name: str
    profile: Callable[[torch.Tensor], torch.Tensor]  # u -> unnormalised K(u); may work in place on u
    norm: float  # density = norm / h * mean_i profile(u_i)
    smooth: bool  # continuous everywhere: float32 evaluation errors are bounded by a smooth bound


def _gaussian(u: torch.Tensor) -> torch.Tensor:
    # exp(-80) ~ 1e-35 is the floor: below it float32 goes subnormal, which is ~10x slower on x86.
    return u.square_().clamp_(max=160.0).mul_(-0.5).exp_()


def _tophat(u: torch.Tensor) -> torch.Tensor:
    return (u.abs() < 1).to(u.dtype)


def _epanechnikov(u: torch.Tensor) -> torch.Tensor:
    return (1 - u.square()).clamp_(min=0)


def _exponential(u: torch.Tensor) -> torch.Tensor:
    return u.abs_().neg_().exp_()


def _linear(u: torch.Tensor) -> torch.Tensor:
    return (1 - u.abs()).clamp_(min=0)


def _cosine(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u.abs() < 1, torch.cos(u * (math.pi / 2)), torch.zeros((), dtype=u.dtype))


KERNELS: Registry[Kernel] = Registry("kernel")
KERNELS.add("gaussian", Kernel("gaussian", _gaussian, 1 / math.sqrt(2 * math.pi), True), "default, as the paper")
KERNELS.add("epanechnikov", Kernel("epanechnikov", _epanechnikov, 3 / 4, True), "3/(4h) (1 - u^2)")
KERNELS.add("tophat", Kernel("tophat", _tophat, 1 / 2, False), "1/(2h) for |u| < 1")
KERNELS.add("exponential", Kernel("exponential", _exponential, 1 / 2, True), "1/(2h) exp(-|u|)")
KERNELS.add("linear", Kernel("linear", _linear, 1.0, True), "1/h (1 - |u|)")
KERNELS.add("cosine", Kernel("cosine", _cosine, math.pi / 4, True), "pi/(4h) cos(pi u / 2)")
