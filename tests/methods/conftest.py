"""One real smollm2 layer with real calibration inputs, shared by the method tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def real_layer(smollm2):
    """(weight [out, in], InputStats with Hessian, X [tokens, in]) for a real MLP layer of block 2."""
    from kenprune.engine import capture_block_inputs, linear_weight, sequential_blocks
    from kenprune.methods import HESSIAN
    from kenprune.data.windows import calibration_windows

    model = smollm2.model
    windows = calibration_windows(smollm2.tokenizer, "wiki:calib", nsamples=4, seqlen=256, seed=0)
    inputs = capture_block_inputs(model, windows)
    captured = {}
    for step in sequential_blocks(model, inputs, progress=False):
        if step.index == 2:
            name = next(n for n in step.linears if n.endswith("mlp.up_proj"))
            module = step.linears[name]
            xs = []
            handle = module.register_forward_pre_hook(lambda _m, args: xs.append(args[0].reshape(-1, args[0].shape[-1])))
            stats = step.collect(HESSIAN)
            handle.remove()
            captured = {"weight": linear_weight(module).detach().clone(), "stats": stats[name], "x": torch.cat(xs)}
            break
    return captured
