import pytest
import torch
from torch import nn

from kenprune.engine import (block_linears, capture_block_inputs, find_blocks, linear_weight, sequential_blocks,
                             set_linear_weight)
from kenprune.errors import KenpruneError
from kenprune.methods import HESSIAN, NORMS
from kenprune.testing import TINY_ARCHITECTURES, random_windows, tiny_causal_lm


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_block_zero_inputs_equal_the_models_own_hidden_states(arch):
    model = tiny_causal_lm(arch)
    windows = random_windows(5, 24)
    inputs = capture_block_inputs(model, windows, batch_size=2)
    with torch.no_grad():
        expected = model(input_ids=windows, output_hidden_states=True).hidden_states[0]
    assert [h.shape[0] for h in inputs.hidden] == [2, 2, 1]
    assert torch.equal(torch.cat(inputs.hidden), expected)
    assert len(inputs.extras) == len(find_blocks(model)[1])


def test_block_zero_inputs_on_the_real_model(smollm2):
    windows = torch.tensor([smollm2.tokenizer("The capital of France is Paris, a city of art.")["input_ids"]])
    inputs = capture_block_inputs(smollm2.model, windows)
    with torch.no_grad():
        expected = smollm2.model(input_ids=windows, output_hidden_states=True).hidden_states[0]
    assert torch.equal(inputs.hidden[0], expected)
    assert "position_embeddings" in inputs.extras[0][0][1]  # rotary embeddings pass through, whatever their name


@pytest.mark.parametrize("arch,expected", [("llama", "model.layers"), ("gpt2", "transformer.h"),
                                           ("opt", "model.decoder.layers")])
def test_blocks_are_found_by_structure(arch, expected):
    name, blocks = find_blocks(tiny_causal_lm(arch, layers=2))
    assert name == expected and len(blocks) == 2


def test_a_model_without_repeated_blocks_is_a_one_line_error():
    with pytest.raises(KenpruneError, match="no list of identical blocks"):
        find_blocks(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))


def test_conv1d_weights_are_read_and_written_in_linear_orientation():
    model = tiny_causal_lm("gpt2", layers=1)
    linears = block_linears(find_blocks(model)[1][0], "b")
    c_fc = linears["b.mlp.c_fc"]
    weight = linear_weight(c_fc)
    assert weight.shape == (c_fc.nf, c_fc.weight.shape[0])  # [out, in]
    set_linear_weight(c_fc, torch.zeros_like(weight))
    assert float(c_fc.weight.detach().abs().sum()) == 0.0


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_each_block_is_calibrated_on_the_already_pruned_prefix(arch):
    """Block 1's calibration inputs are what the model (block 0 already pruned) really feeds it."""
    model = tiny_causal_lm(arch)
    windows = random_windows(4, 16)
    inputs = capture_block_inputs(model, windows)
    seen = {}
    for step in sequential_blocks(model, inputs, progress=False):
        stats = step.collect(NORMS if step.index else HESSIAN)
        assert set(stats) == set(step.linears)
        if step.index == 0:
            for module in step.linears.values():
                set_linear_weight(module, linear_weight(module) * (torch.rand_like(linear_weight(module)) > 0.5))
        if step.index == 1:
            seen["hidden"] = torch.cat(step.hidden).cpu()  # the engine may have run on CUDA
    with torch.no_grad():
        expected = model(input_ids=windows, output_hidden_states=True).hidden_states[1]
    assert torch.allclose(seen["hidden"], expected, atol=1e-5)


def test_linears_fed_the_same_tensor_share_their_statistics():
    model = tiny_causal_lm("llama", layers=1)
    inputs = capture_block_inputs(model, random_windows(2, 16))
    steps = sequential_blocks(model, inputs, progress=False)  # held: closing it sends the block home
    step = next(steps)
    stats = step.collect(HESSIAN)
    q, k, o = (stats[f"model.layers.0.self_attn.{p}_proj"] for p in "qko")
    assert q is k and q is not o and q.tokens == 32


def test_consuming_the_inputs_frees_them_and_changes_nothing_else():
    model = tiny_causal_lm("llama", layers=3)
    inputs = capture_block_inputs(model, random_windows(4, 16), batch_size=2)
    before = [h.clone() for h in inputs.hidden]
    kept = [torch.cat(step.hidden) for step in sequential_blocks(model, inputs, progress=False)]
    assert len(inputs.hidden) == 2 and all(torch.equal(a, b) for a, b in zip(before, inputs.hidden))  # a search reuses it
    buffers = []
    consumed = []
    for step in sequential_blocks(model, inputs, progress=False, consume=True):
        consumed.append(torch.cat(step.hidden))
        buffers.append([h.data_ptr() for h in step.hidden])
    assert inputs.hidden == []
    assert all(torch.equal(a, b) for a, b in zip(kept, consumed))
    assert buffers[0] == buffers[1] == buffers[2]  # each block's outputs overwrite its inputs: no new activations


def test_calibration_batches_share_equal_positional_tensors():
    """Every window has positions 0..seqlen-1: their rotary tables are stored once, not per batch."""
    model = tiny_causal_lm("llama", layers=2)
    windows = random_windows(6, 16)
    inputs = capture_block_inputs(model, windows, batch_size=1)
    rotary = [step_extras[1]["position_embeddings"][0] for step_extras in inputs.extras[0]]
    assert len(rotary) == 6 and all(r is rotary[0] for r in rotary)
    hidden = [h for h in inputs.hidden]
    assert len({h.data_ptr() for h in hidden}) == 6  # the hidden states differ per window and stay separate
    kept = [torch.cat(step.hidden) for step in sequential_blocks(model, inputs, progress=False)]
    with torch.no_grad():
        expected = model(input_ids=windows, output_hidden_states=True).hidden_states[1]
    assert torch.allclose(kept[1], expected, atol=1e-5)
