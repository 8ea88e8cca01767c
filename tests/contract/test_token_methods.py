"""Every registered token pruning method held to the same behaviours at one pruning step (pure tensors)."""
from __future__ import annotations

import pytest
import torch

from kenprune.tokens import TOKEN_METHODS, TokenOptions
from kenprune.tokens.methods import Step


def _step(seed: int = 0) -> Step:
    g = torch.Generator().manual_seed(seed)
    b, h, n, d = 3, 4, 12, 8
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[1, 9:] = False
    valid[2, 5:] = False
    scores = torch.randn(b, h, n, n, generator=g).masked_fill(~valid[:, None, None, :], float("-inf"))
    protected = torch.zeros(b, n, dtype=torch.bool)
    protected[:, 0] = True
    protected[0, 11] = protected[1, 8] = protected[2, 4] = True
    return Step(x=torch.randn(b, n, h * d, generator=g), attn=torch.softmax(scores, -1),
                keys=torch.randn(b, h, n, d, generator=g), valid=valid, protected=protected,
                size=valid.float(), keep=torch.tensor([6, 5, 3]), iterations=5, options=TokenOptions(),
                generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", TOKEN_METHODS.names())
def test_token_method_contract(name):
    """Within budget (exact for dropping methods), protected tokens kept, padding never kept, shapes and sizes
    preserved, deterministic for a given seed, the inputs untouched."""
    method = TOKEN_METHODS.get(name)
    step = _step()
    x0 = step.x.clone()
    keep, x, size = method.select(step)
    again = method.select(_step())
    assert torch.equal(step.x, x0)
    assert keep.dtype == torch.bool and keep.shape == step.valid.shape and x.shape == step.x.shape
    assert not (keep & ~step.valid).any()
    assert (keep | ~step.protected).all()
    counts = keep.sum(-1)
    if method.merges:
        assert (counts >= step.keep).all()
        assert torch.allclose((size * keep).sum(-1), step.valid.float().sum(-1))  # every token accounted for once
    else:
        assert counts.tolist() == step.keep.tolist()
        assert torch.equal(size, step.size)
    assert torch.equal(again[0], keep)
