"""Where token pruning meets a model family: its layers and the pieces of one layer's forward.

One entry per `config.model_type` in TOKEN_ADAPTERS. An adapter knows a layer's projections and sublayers and
nothing of the pruning math; the patch (patch.py) runs its own layer forward from these pieces, so that the
attention probabilities are computed only in pruning layers that need them, and pruning happens between a
layer's attention and its MLP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import KenpruneError
from ..registry import Registry

QKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TokenAdapter:
    """layers(base) -> the repeated blocks; project(layer, x) -> (q, k, v) [B, H, N, d], scale;
    attend_out(layer, context [B, N, H*d], x) -> x after the attention sublayer (residual included);
    mlp(layer, x) -> the layer's output; protect_last: the last valid token is special ([SEP]);
    longest(config) -> the longest input in tokens (where a FLOPs target is easiest to reach)."""

    layers: Callable[[nn.Module], nn.ModuleList]
    project: Callable[[nn.Module, torch.Tensor], tuple[QKV, float]]
    attend_out: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    mlp: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    protect_last: bool
    pooling: str  # how the family's sentence vector is read: "mean" (sentence encoders) or "cls"
    longest: Callable[[Any], int] = lambda config: int(config.max_position_embeddings)


def _heads(x: torch.Tensor, d: int) -> torch.Tensor:
    b, n, _ = x.shape
    return x.view(b, n, -1, d).transpose(1, 2)


def _bert_project(layer: nn.Module, x: torch.Tensor) -> tuple[QKV, float]:
    a = layer.attention.self
    d = a.attention_head_size
    return (_heads(a.query(x), d), _heads(a.key(x), d), _heads(a.value(x), d)), a.scaling


def _bert_layers(base: nn.Module) -> nn.ModuleList:
    if getattr(base.config, "is_decoder", False):
        raise KenpruneError("token pruning supports BERT encoders, not a BERT decoder (is_decoder=True)")
    return base.encoder.layer


def _vit_project(layer: nn.Module, x: torch.Tensor) -> tuple[QKV, float]:
    a = layer.attention
    h = layer.layernorm_before(x)
    return (_heads(a.q_proj(h), a.head_dim), _heads(a.k_proj(h), a.head_dim), _heads(a.v_proj(h), a.head_dim)), \
        a.scaling


def _vit_mlp(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return layer.dropout(layer.mlp(layer.layernorm_after(x))) + x


TOKEN_ADAPTERS: Registry[TokenAdapter] = Registry("model family for token pruning")
TOKEN_ADAPTERS.add("bert", TokenAdapter(
    layers=_bert_layers, project=_bert_project,
    attend_out=lambda layer, ctx, x: layer.attention.output(ctx, x),
    mlp=lambda layer, x: layer.output(layer.intermediate(x), x),
    protect_last=True, pooling="mean"),
    "BERT family (all-MiniLM-L6-v2, BERT classifiers): [CLS] and [SEP] protected; post-norm layers")
TOKEN_ADAPTERS.add("vit", TokenAdapter(
    layers=lambda base: base.layers if hasattr(base, "layers") else base.encoder.layer,
    project=_vit_project,
    attend_out=lambda layer, ctx, x: layer.dropout(layer.attention.o_proj(ctx)) + x,
    mlp=_vit_mlp, protect_last=False, pooling="cls",
    longest=lambda config: (config.image_size // config.patch_size) ** 2 + 1),
    "Hugging Face ViT (ViTModel, ViTForImageClassification): [CLS] protected; pre-norm layers")


def token_adapter_for(model: nn.Module) -> TokenAdapter:
    """The model family's adapter; one line listing the supported families otherwise."""
    family = getattr(getattr(model, "config", None), "model_type", None)
    if family not in TOKEN_ADAPTERS:
        raise KenpruneError(f"token pruning does not support model family {family!r}; supported families: "
                            f"{', '.join(TOKEN_ADAPTERS.names())}")
    return TOKEN_ADAPTERS.get(family)
