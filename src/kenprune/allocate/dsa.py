"""DSA (Li et al., NeurIPS 2024): allocation functions as four stages of operations.

A function maps each block's element-wise scores to one importance number:

    pre-process (element-wise on the scores) -> reduction (scores -> scalar)
        -> transform (element-wise on the scalar) -> post-process (across the layer vector)

and the shared mapping turns importances into ratios (DSA's code inverts them: a larger
importance gives a larger sparsity, the sign being learnt through the transform ops).
String form: `pre|reduction|transform|post`, ops within a stage comma-separated and applied
left to right, an empty stage written `noop`, e.g. `abslog|var|atan,asin|noop`. A missing
post stage means `noop`; DSA's own `W:(ABSLOG)-(VAR)-(ATAN,ASIN)-(7)` form is read too.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from random import Random
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import KenpruneError
from .layers import Layer, block_scores, block_sizes, per_layer
from .mapping import scores_to_ratios

Op = Callable[[torch.Tensor], torch.Tensor]
EPS = 1e-6


def _log(x: torch.Tensor) -> torch.Tensor:  # DSA's LOG guard: non-positive entries count as 1
    return torch.log(torch.where(x <= 0, torch.ones_like(x), x) + EPS)


def _abslog(x: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.where(x == 0, torch.ones_like(x), x).abs())


def _zscore(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num((x - x.mean()) / x.std())


def _minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min())


def _entropy(x: torch.Tensor) -> torch.Tensor:
    p = x.abs() / x.abs().sum()
    return -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum()


def _rank(x: torch.Tensor) -> torch.Tensor:
    return torch.argsort(torch.argsort(x)).to(x.dtype)


PRE_OPS: dict[str, Op] = {
    "abs": torch.abs, "log": _log, "abslog": _abslog, "pow": torch.square, "sqrt": torch.sqrt,
    "exp": torch.exp, "norm": _zscore, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "mms": _minmax,
}
REDUCTION_OPS: dict[str, Op] = {
    "mean": torch.mean, "var": torch.var, "std": torch.std, "entropy": _entropy,
    "l1": lambda x: x.abs().mean(), "l2": torch.linalg.vector_norm,
    "geomean": lambda x: torch.exp(torch.log(x).mean()), "median": torch.median,
    "max": torch.max, "min": torch.min,
}
TRANSFORM_OPS: dict[str, Op] = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "asin": torch.asin, "acos": torch.acos,
    "atan": torch.atan, "exp": torch.exp, "log": torch.log, "abs": torch.abs, "sqrt": torch.sqrt,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softplus": torch.nn.functional.softplus,
    "square": torch.square, "neg": torch.neg,
}
POST_OPS: dict[str, Op] = {
    "sigmoid": torch.sigmoid, "log": torch.log, "tanh": torch.tanh, "abs": torch.abs, "exp": torch.exp,
    "softmax": lambda x: torch.softmax(x, dim=0), "rank": _rank, "norm": _zscore, "mms": _minmax,
}
STAGES: tuple[tuple[str, dict[str, Op], int, int], ...] = (
    # name, operations, fewest and most ops a random function gets
    ("pre-process", PRE_OPS, 0, 2),
    ("reduction", REDUCTION_OPS, 1, 1),
    ("transform", TRANSFORM_OPS, 0, 2),
    ("post-process", POST_OPS, 0, 1),
)
NOOP = "noop"
_LEGACY = {"no_op": NOOP, "normalize": "norm", "frobenius_norm": "l2", "l1_norm": "l1",
           "geometric_mean": "geomean"}


@dataclass(frozen=True)
class Function:
    """An allocation function: ops of the four stages (reduction holds exactly one)."""

    pre: tuple[str, ...]
    reduction: str
    transform: tuple[str, ...]
    post: tuple[str, ...]

    @property
    def stages(self) -> tuple[tuple[str, ...], ...]:
        return (self.pre, (self.reduction,), self.transform, self.post)

    def __str__(self) -> str:
        return "|".join(",".join(ops) or NOOP for ops in self.stages)

    @classmethod
    def from_stages(cls, stages: Sequence[Sequence[str]]) -> "Function":
        pre, (reduction,), transform, post = (tuple(s) for s in stages)
        return cls(pre, reduction, transform, post)


def parse(text: str) -> Function:
    """Read `pre|reduction|transform[|post]` (or DSA's `W:(A)-(B)-(C)-(7)`); one-line errors."""
    raw = text.strip().lower()
    legacy = re.fullmatch(r"w:\((.*?)\)-\((.*?)\)-\((.*?)\)(?:-\(\d+\))?", raw)
    parts = list(legacy.groups()) if legacy else raw.split("|")
    if len(parts) == 3:
        parts.append(NOOP)
    if len(parts) != 4:
        raise KenpruneError(f"allocation function {text!r} needs 3 or 4 stages "
                            f"'pre|reduction|transform|post', e.g. 'abslog|var|atan,asin|noop'")
    stages = []
    for part, (stage, ops, _, _) in zip(parts, STAGES):
        names = [_LEGACY.get(n.strip(), n.strip()) for n in part.split(",")]
        for name in names:
            if name != NOOP and name not in ops:
                raise KenpruneError(f"unknown {stage} operation {name!r} in {text!r}; valid: "
                                    f"{', '.join([NOOP] + list(ops)) if stage != 'reduction' else ', '.join(ops)}")
        stages.append([n for n in names if n != NOOP])
    if len(stages[1]) != 1:
        raise KenpruneError(f"the reduction stage of {text!r} needs exactly one operation, one of: "
                            f"{', '.join(REDUCTION_OPS)}")
    return Function.from_stages(stages)


@torch.no_grad()
def evaluate(function: Function, scores: Sequence[torch.Tensor]) -> np.ndarray:
    """Per-block importance: pre-process and reduce each block's scores, then transform and post-process."""
    values = []
    for block in scores:
        x = block.reshape(-1).double()
        for op in function.pre:
            x = PRE_OPS[op](x)
        x = REDUCTION_OPS[function.reduction](x)
        values.append(x.reshape(()))
    v = torch.stack(values)
    for op in function.transform:
        v = TRANSFORM_OPS[op](v)
    for op in function.post:
        v = POST_OPS[op](v)
    return v.numpy().astype(np.float64)


def validate(function: Function, scores: Sequence[torch.Tensor]) -> tuple[np.ndarray | None, str | None]:
    """(importances, None) for a usable function, else (None, why it is rejected)."""
    try:
        with np.errstate(all="ignore"):
            values = evaluate(function, scores)
    except Exception as exc:  # any op may raise on odd inputs; the candidate is rejected, not the search
        return None, f"raises {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    if np.isnan(values).any():
        return None, f"yields NaN for {int(np.isnan(values).sum())} of {values.size} layers"
    if np.isinf(values).any():
        return None, f"yields infinity for {int(np.isinf(values).sum())} of {values.size} layers"
    span = float(values.max() - values.min())
    if span <= 1e-12 * max(1.0, float(np.abs(values).max())) or not math.isfinite(span):
        return None, "is constant across layers (gives no allocation)"
    return values, None


def dsa(layers: Sequence[Layer], target: float, function: str | Function, lam: float = 0.08) -> dict[str, float]:
    """Per-layer ratios of a DSA function on the layers' dense-pass scores."""
    fn = parse(function) if isinstance(function, str) else function
    values, reason = validate(fn, block_scores(layers))
    if reason is not None:
        raise KenpruneError(f"allocation function {fn} {reason}; choose another function")
    ratios = scores_to_ratios(values, block_sizes(layers), target, lam, higher="sparser")
    return per_layer(layers, ratios)


# Random functions, crossover by stage and mutation by operation: the search's genetic operators.

def random_function(rng: Random) -> Function:
    return Function.from_stages([rng.sample(list(ops), rng.randint(lo, hi)) for _, ops, lo, hi in STAGES])


def crossover(a: Function, b: Function, rng: Random) -> Function:
    """Each stage from one parent or the other."""
    return Function.from_stages([sa if rng.random() < 0.5 else sb for sa, sb in zip(a.stages, b.stages)])


def mutate(fn: Function, rng: Random) -> Function:
    """Replace, add or drop one operation in one stage, within the stage's length limits."""
    stages = [list(s) for s in fn.stages]
    i = rng.randrange(len(STAGES))
    _, ops, lo, hi = STAGES[i]
    ops_list = list(ops)
    moves = ["replace"] * bool(stages[i]) + ["add"] * (len(stages[i]) < hi) + ["drop"] * (len(stages[i]) > lo)
    move = rng.choice(moves)
    if move == "replace":
        j = rng.randrange(len(stages[i]))
        stages[i][j] = rng.choice([op for op in ops_list if op != stages[i][j]])
    elif move == "add":
        stages[i].insert(rng.randint(0, len(stages[i])), rng.choice(ops_list))
    else:
        del stages[i][rng.randrange(len(stages[i]))]
    return Function.from_stages(stages)
