"""LoRA at equal stored bytes: the rank sizing and the adapter file peft really writes."""
from __future__ import annotations

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.ken.lora import head_bytes, header_bytes, lora_shapes, lora_values, rank_for_bytes, train_lora


def test_rank_for_bytes_is_the_largest_rank_that_fits():
    shapes = [(8, 4), (4, 8)]  # 12 values per rank each: 24 per rank, 96 bytes in fp32
    assert lora_values(shapes, 3) == 72
    assert rank_for_bytes(shapes, 96 * 5) == 5
    assert rank_for_bytes(shapes, 96 * 5 + 95) == 5
    assert rank_for_bytes(shapes, 96 * 5 + 40, extra_bytes=40) == 5
    assert rank_for_bytes(shapes, 96 * 5, bytes_per_value=2) == 10
    with pytest.raises(KenpruneError, match="rank-1"):
        rank_for_bytes(shapes, 95)


def test_adapter_file_matches_its_byte_budget(minilm_pair):
    """On the real minilm-l6 classifier: the adapter peft writes at the sized rank is within the budget
    and short of it by less than one rank plus the file's header."""
    from kenprune.models.loading import load_model

    folder, _ = minilm_pair
    loaded = load_model(str(folder / "initial"))
    targets = ("query", "key", "value", "dense")
    shapes = lora_shapes(loaded.model, targets)
    assert len(shapes) == 6 * 6 + 1  # q, k, v, attention out, intermediate, output per layer + the pooler
    budget = 3_000_000
    extra = head_bytes(loaded.model)
    assert extra == (384 * 2 + 2) * 4
    rank = rank_for_bytes(shapes, budget, extra_bytes=extra)
    inputs = loaded.tokenizer(["a fine film", "a dull film"], return_tensors="pt", padding=True)
    batches = iter([(dict(inputs), torch.tensor([1, 0]))] * 2)
    info = train_lora(loaded, batches, rank=rank, targets=targets, steps=2, lr=1e-3, classifier=True,
                      progress=False)
    per_rank = lora_values(shapes, 1) * 4
    assert budget - per_rank - 64 * 1024 < info["adapter_bytes"] <= budget + 64 * 1024  # header: < 64 KiB
    assert info["trainable_parameters"] * 4 == lora_values(shapes, rank) * 4 + extra
    header = info["adapter_bytes"] - lora_values(shapes, rank) * 4 - extra
    assert 0 < header <= header_bytes(shapes)  # the estimate `kenprune ken lora` sizes with is an upper bound
    assert isinstance(loaded.model, torch.nn.Module) and not hasattr(loaded.model, "peft_config")
