"""Tiny random BERT and ViT models for the token pruning tests (mechanics only)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_vit():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=64, num_labels=3)
    return ViTForImageClassification(config).eval()


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                intermediate_size=64), add_pooling_layer=False).eval()
