"""Model-family adapters in one place: what a family calls its projections and its head counts.

One registry entry per `config.model_type`. Structured pruning, MAC counts and LoRA recovery all
read the adapter; a new family is one `ADAPTERS.add` line here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import KenpruneError
from ..registry import Registry


@dataclass(frozen=True)
class FamilyAdapter:
    """How one family names its block projections and config widths.

    `structured`: coupled head/channel groups are defined, through the projection names below
    (attention.q/k/v/o, mlp.gate/up/down; dotted paths allowed, an empty part is the block itself, no gate
    for a plain two-layer MLP); other families only use the LoRA names and head counts.
    """

    lora_targets: tuple[str, ...] = ()  # empty: the Llama-like projections below
    structured: bool = False
    fan_in_fan_out: bool = False  # weights stored [in, out] (GPT-2's Conv1D); peft must be told
    heads_key: str = "num_attention_heads"
    kv_heads_key: str = "num_key_value_heads"
    intermediate_key: str = "intermediate_size"
    attention: str = "self_attn"
    q: str = "q_proj"
    k: str = "k_proj"
    v: str = "v_proj"
    o: str = "o_proj"
    mlp: str = "mlp"
    gate: str | None = "gate_proj"
    up: str = "up_proj"
    down: str = "down_proj"
    heads_module: str = ""  # where the attention keeps its head counts, under `attention`
    config_head_dim: bool = True  # the family reads config.head_dim; False: hidden_size // heads (BERT)

    def lora_modules(self) -> tuple[str, ...]:
        """The module names LoRA adapts: the family's own list, else every Llama-like projection."""
        return self.lora_targets or (self.q, self.k, self.v, self.o, self.gate, self.up, self.down)

    def heads(self, config: Any) -> int:
        """Query heads per block in the config (the widest block after structured pruning)."""
        return getattr(config, self.heads_key)

    def kv_heads(self, config: Any) -> int:
        """Key/value heads; a family without grouped-query attention has one per query head."""
        return getattr(config, self.kv_heads_key, None) or self.heads(config)

    def head_dim(self, config: Any) -> int:
        return getattr(config, "head_dim", None) or config.hidden_size // self.heads(config)

    def linear(self, block: nn.Module, part: str, name: str) -> nn.Linear:
        return _resolve(block, f"{part}.{name}")

    def set_linear(self, block: nn.Module, part: str, name: str, linear: nn.Linear) -> None:
        parent, _, attr = f"{part}.{name}".strip(".").rpartition(".")
        setattr(_resolve(block, parent), attr, linear)

    def block_heads(self, block: nn.Module, config: Any) -> int:
        """Query heads of one block: the current q_proj width where heads can be pruned, else the config's."""
        if not self.structured:
            return self.heads(config)
        return self.linear(block, self.attention, self.q).out_features // self.head_dim(config)

    def set_heads(self, block: nn.Module, heads: int, kv_heads: int, head_dim: int | None = None) -> None:
        """Tell the attention module its new head counts (HF reads these at forward time)."""
        attention = _resolve(block, f"{self.attention}.{self.heads_module}")
        attention.num_key_value_groups = heads // kv_heads
        values = [("num_heads", heads), ("num_key_value_heads", kv_heads), ("num_attention_heads", heads)]
        if head_dim is not None:
            values.append(("all_head_size", heads * head_dim))
        for attr, value in values:
            if hasattr(attention, attr):
                setattr(attention, attr, value)


def _resolve(module: nn.Module, path: str) -> nn.Module:
    """The sub-module at a dotted path (empty parts skipped: "" is the module itself)."""
    for attr in path.split("."):
        if attr:
            module = getattr(module, attr)
    return module


LLAMA_LIKE = FamilyAdapter(structured=True)

ADAPTERS: Registry[FamilyAdapter] = Registry("model family")
ADAPTERS.add("llama", LLAMA_LIKE, "Llama: q/k/v/o_proj + gate/up/down_proj")
ADAPTERS.add("mistral", LLAMA_LIKE, "Mistral: Llama-like")
ADAPTERS.add("qwen2", LLAMA_LIKE, "Qwen2: Llama-like plus q/k/v biases (removal slices them too)")
ADAPTERS.add("gemma3_text", LLAMA_LIKE, "Gemma 3: Llama-like plus q_norm/k_norm over head_dim (untouched)")
ADAPTERS.add("gpt2", FamilyAdapter(("c_attn", "c_proj", "c_fc"), fan_in_fan_out=True),
             "GPT-2: fused c_attn, c_proj, c_fc (Conv1D)")
ADAPTERS.add("opt", FamilyAdapter(("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")),
             "OPT: q/k/v/out_proj + fc1/fc2")
ADAPTERS.add("bert", FamilyAdapter(
    ("query", "key", "value", "dense"), structured=True, kv_heads_key="num_attention_heads", attention="attention",
    q="self.query", k="self.key", v="self.value", o="output.dense", mlp="", gate=None, up="intermediate.dense",
    down="output.dense", heads_module="self", config_head_dim=False),
    "BERT: attention.self.query/key/value + attention.output.dense, intermediate.dense + output.dense; "
    "pruned heads reload through kenprune.load (BERT derives the head size from the head count)")


def model_type(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def adapter_for(model: nn.Module) -> FamilyAdapter:
    """The adapter of the model's family; a one-line error listing the known families otherwise."""
    return ADAPTERS.get(model_type(model))


def structured_families() -> list[str]:
    """The families whose adapter defines coupled groups for structured pruning."""
    return [entry.name for entry in ADAPTERS.entries() if entry.value.structured]


def structured_adapter_for(model: nn.Module) -> FamilyAdapter:
    """The adapter, if structured pruning supports the model's family (one-line error otherwise)."""
    family = model_type(model)
    if family not in structured_families():
        raise KenpruneError(f"structured pruning does not support model family {family!r}; "
                            f"supported families: {', '.join(structured_families())}")
    return ADAPTERS.get(family)
