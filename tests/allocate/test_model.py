"""Allocation on a real block engine: a tiny random Llama pruned with a DSA function."""
import numpy as np
import pytest
import torch

from kenprune.allocate import resolve_allocation
from kenprune.allocate.model import layer_source, model_layers
from kenprune.pruning import prune_model


@pytest.fixture
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("spec", ["dsa:abslog|var|atan|noop", "owl:m=3", "er", "global"])
def test_prune_with_allocation_hits_the_per_layer_ratios(tiny_llama, spec):
    windows = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(0))
    allocation = resolve_allocation(spec, layer_source(tiny_llama, windows, method="wanda", progress=False), 0.6)
    report = prune_model(tiny_llama, windows, method="wanda", sparsity=allocation.ratios, progress=False)
    got = {layer["name"]: layer["sparsity"] for layer in report["layers"]}
    for layer in model_layers(tiny_llama):  # Wanda prunes floor(in * ratio) per row
        assert got[layer.name] == pytest.approx(int(layer.shape[1] * allocation.ratios[layer.name]) / layer.shape[1])
    assert report["block_linears"]["sparsity"] == pytest.approx(0.6, abs=0.03)
    assert len(set(np.round(list(allocation.ratios.values()), 6))) > 1
