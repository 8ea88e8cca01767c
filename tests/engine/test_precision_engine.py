"""The engine in a reduced compute dtype: bf16 forwards, float32 statistics, masks close to fp32's."""
import copy

import pytest
import torch

from kenprune.engine import capture_block_inputs
from kenprune.engine.elementwise import prune_model
from kenprune.engine.sequential import sequential_blocks
from kenprune.methods import HESSIAN
from kenprune.testing import random_windows, tiny_causal_lm

# measured on this tiny random model (2 blocks, hidden 128, 8 x 64 windows): Wanda's bf16 and fp32 masks
# agree on 99.92 % of the block weights, SparseGPT's on 99.93 %; the floors leave room for other BLAS builds
FLOORS = {"wanda": 0.99, "sparsegpt": 0.99}


def _masks(model):
    return {n: (m.weight == 0) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
            and ".layers." in n}


def agreement(model, windows, method, dtype, device=None):
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    prune_model(a, windows, method=method, sparsity=0.5, progress=False, dtype="float32", device=device)
    prune_model(b, windows, method=method, sparsity=0.5, progress=False, dtype=dtype, device=device)
    ma, mb = _masks(a), _masks(b)
    same = sum(int((ma[n] == mb[n]).sum()) for n in ma)
    return same / sum(m.numel() for m in ma.values()), a, b


@pytest.fixture(scope="module")
def model_and_windows():
    torch.manual_seed(0)
    return tiny_causal_lm("llama", layers=2, hidden=128), random_windows(8, 64)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_bf16_masks_agree_with_fp32_except_near_ties(model_and_windows, method):
    model, windows = model_and_windows
    share, fp32, bf16 = agreement(model, windows, method, "bfloat16")
    assert FLOORS[method] <= share < 1.0  # bf16 does change something, and only a little
    for (name, p32), (_, p16) in zip(fp32.named_parameters(), bf16.named_parameters()):
        assert p16.dtype == p32.dtype == torch.float32, name  # saved weights keep the model's precision


def test_float32_compute_is_bit_identical_to_the_default(model_and_windows):
    model, windows = model_and_windows
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    prune_model(a, windows, method="sparsegpt", sparsity=0.5, progress=False)
    prune_model(b, windows, method="sparsegpt", sparsity=0.5, progress=False, dtype="float32")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_statistics_accumulate_in_float32_from_bf16_forwards(model_and_windows):
    model, windows = model_and_windows
    inputs = capture_block_inputs(model, windows)
    seen = {}
    for step in sequential_blocks(model, inputs, progress=False, dtype="bfloat16"):
        handles = [m.register_forward_pre_hook(lambda mod, args, n=n: seen.update({n: args[0].dtype}))
                   for n, m in step.linears.items()]
        stats = step.collect(HESSIAN)
        for h in handles:
            h.remove()
        for s in stats.values():
            assert s.sq_sum.dtype == torch.float32 and s.hessian.dtype == torch.float32
        assert all(p.dtype == torch.float32 for p in step.block.parameters())  # bf16 copies only inside the pass
        assert all(h.dtype == torch.float32 for h in step.hidden)  # activations between blocks stay fp32
    assert torch.bfloat16 in set(seen.values())  # some Linears were fed bf16: the forward ran in bf16


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_bf16_on_cuda_agrees_with_fp32_and_leaves_the_model_on_cpu(model_and_windows, method):
    model, windows = model_and_windows
    share, _, bf16 = agreement(model, windows, method, "bfloat16", device="cuda")
    assert share >= FLOORS[method]
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in bf16.parameters())
