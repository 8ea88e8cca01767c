"""LoRA recovery: trained, merged back into plain weights, and it lowers perplexity on a real pruned model."""
from __future__ import annotations

import copy

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.models.families import adapter_for
from kenprune.structured.plan import PrunePlan
from kenprune.structured.prune import prune_structured
from kenprune.settings import LoraSettings
from kenprune.structured.recover import lora_recover
from tests.structured.conftest import tiny_loaded_model


def test_lora_merges_back_into_a_plain_model_with_per_block_widths(tiny_loaded, ids):
    prune_structured(tiny_loaded, PrunePlan(0.5, keep_first=1), importance="l2", progress=False)
    before = tiny_loaded.model(ids).logits
    shapes = {n: p.shape for n, p in tiny_loaded.model.named_parameters()}
    report = lora_recover(tiny_loaded, "lee:calib", LoraSettings(steps=2, seqlen=16, lr=1e-2), progress=False)
    assert {n: p.shape for n, p in tiny_loaded.model.named_parameters()} == shapes  # no lora_A / lora_B left
    assert type(tiny_loaded.model).__name__ == "LlamaForCausalLM"
    assert not torch.allclose(tiny_loaded.model(ids).logits, before)
    assert report["trainable_parameters"] > 0


@pytest.mark.parametrize("arch", ["gpt2", "opt"])
def test_lora_recovers_every_family_with_an_adapter(smollm2_tokenizer, arch, recwarn):
    from kenprune.testing import tiny_causal_lm

    loaded = tiny_loaded_model(tiny_causal_lm(arch, layers=2, vocab=len(smollm2_tokenizer)), smollm2_tokenizer, arch)
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    report = lora_recover(loaded, "lee:calib", LoraSettings(steps=2, seqlen=16, lr=1e-2), progress=False)
    after = dict(loaded.model.named_parameters())
    assert {n: p.shape for n, p in after.items()} == {n: p.shape for n, p in before.items()}  # merged back
    changed = {n.rsplit(".", 2)[-2] for n, p in after.items() if not torch.equal(p, before[n])}
    assert changed == set(adapter_for(loaded.model).lora_modules())  # every target, and only targets, trained
    assert report["trainable_parameters"] > 0
    assert not [w for w in recwarn if "fan_in_fan_out" in str(w.message)]  # the adapter says Conv1D itself


def test_bad_lora_settings_fail_before_training(tiny_loaded):
    with pytest.raises(KenpruneError, match="--steps must be >= 1"):
        lora_recover(tiny_loaded, "lee:calib", LoraSettings(steps=0))


@pytest.mark.slow
def test_a_few_lora_steps_lower_perplexity_of_pruned_smollm2(smollm2):
    from kenprune.evaluate import perplexity
    from kenprune.evaluate.protocol import PerplexityProtocol

    loaded = copy.copy(smollm2)
    loaded.model = copy.deepcopy(smollm2.model)
    prune_structured(loaded, PrunePlan(0.2), importance="l2", progress=False)
    protocol = PerplexityProtocol("lee:test", seqlen=128, max_windows=2)
    before = perplexity(loaded, protocol, progress=False, identify=False).perplexity
    lora_recover(loaded, "lee:calib", LoraSettings(steps=4, seqlen=64, batch_size=2, lr=5e-4), progress=False)
    after = perplexity(loaded, protocol, progress=False, identify=False).perplexity
    assert after < before
