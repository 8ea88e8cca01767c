"""Allocation on a real block engine: a tiny random Llama pruned with a DSA function."""
import numpy as np
import pytest

from kenprune.allocate import resolve_allocation
from kenprune.allocate.model import layer_source, model_layers
from kenprune.engine.elementwise import prune_model
from kenprune.testing import random_windows, tiny_causal_lm


@pytest.fixture
def tiny_llama():
    return tiny_causal_lm("llama", layers=6, hidden=32)


@pytest.mark.parametrize("spec", ["dsa:abslog|var|atan|noop", "owl:m=3", "er", "global"])
def test_prune_with_allocation_hits_the_per_layer_ratios(tiny_llama, spec):
    windows = random_windows(4, 32)
    allocation = resolve_allocation(spec, layer_source(tiny_llama, windows, method="wanda", progress=False), 0.6)
    report = prune_model(tiny_llama, windows, method="wanda", sparsity=allocation.ratios, progress=False)
    got = {layer["name"]: layer["sparsity"] for layer in report["layers"]}
    for layer in model_layers(tiny_llama):  # Wanda prunes floor(in * ratio) per row
        assert got[layer.name] == pytest.approx(int(layer.shape[1] * allocation.ratios[layer.name]) / layer.shape[1])
    assert report["block_linears"]["sparsity"] == pytest.approx(0.6, abs=0.03)
    assert len(set(np.round(list(allocation.ratios.values()), 6))) > 1
