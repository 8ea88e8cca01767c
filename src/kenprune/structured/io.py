"""Save pruned models so they reload: plain from_pretrained when widths are uniform, else `kenprune.load`.

A folder whose blocks have different widths records them in config.json (WIDTHS_KEY) and names
its loader (LOADER_KEY); `kenprune.models.loading.load_model` follows that name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..models.loading import LOADER_KEY, LoadedModel, save_model
from ..errors import KenpruneError
from .removal import WIDTHS_KEY, BlockWidths, resize_to_widths

LOADER = "kenprune.structured.io:load_per_block"


def save_structured(loaded: LoadedModel, out_dir: str | Path, record: dict[str, Any]) -> Path:
    """Save a pruned model; per-block widths (if any) are already on its config (removal.apply_widths)."""
    config = loaded.model.config
    if getattr(config, WIDTHS_KEY, None):
        setattr(config, LOADER_KEY, LOADER)
    elif hasattr(config, LOADER_KEY):
        delattr(config, LOADER_KEY)
    return save_model(loaded, out_dir, record)


def load_per_block(folder: str | Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Rebuild a model whose blocks have different widths: widest config, resized blocks, saved weights."""
    import transformers
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    widths = [BlockWidths(**w) for w in getattr(config, WIDTHS_KEY)]
    architecture = getattr(transformers, (config.architectures or [""])[0], None)  # e.g. a BERT classifier
    if architecture is None or "CausalLM" in architecture.__name__:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        model = architecture._from_config(config, dtype=dtype)
    resize_to_widths(model, widths)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise KenpruneError(f"{folder} has no .safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    if unexpected or set(missing) - tied:
        bad = sorted(unexpected or set(missing) - tied)
        raise KenpruneError(f"{folder}'s weights do not match its recorded block widths ({', '.join(bad[:3])} ...)")
    model.tie_weights()
    return model.to(dtype)
