"""The in-place patch on real minilm-l6 and on tiny random BERT / ViT models (mechanics only)."""
from __future__ import annotations

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.tokens import TOKEN_METHODS, apply_token_pruning, pool, remove_token_pruning
from kenprune.tokens.schedule import resolve

TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank, and then it ran far away.",
         "Short one.",
         "Paris is the capital and most populous city of France, with an estimated two million residents."]
ALL = TOKEN_METHODS.names()


def _encode(minilm, texts=TEXTS):
    return dict(minilm.tokenizer(texts, padding=True, return_tensors="pt"))


@torch.inference_mode()
def test_keep_one_gives_bit_identical_outputs(minilm, tiny_vit):
    model, enc = minilm.model, _encode(minilm)
    dense = model(**enc).last_hidden_state
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    vit_dense = tiny_vit(pixel_values=pixels).logits
    try:
        for method in ALL:
            apply_token_pruning(model, method, 1.0)
            assert torch.equal(model(**enc).last_hidden_state, dense), method
            apply_token_pruning(tiny_vit, method, 1.0)
            assert torch.equal(tiny_vit(pixel_values=pixels).logits, vit_dense), method
    finally:
        remove_token_pruning(model)
        remove_token_pruning(tiny_vit)
    assert torch.equal(model(**enc).last_hidden_state, dense)  # removed: the model is as before


@torch.inference_mode()
@pytest.mark.parametrize("method", [m for m in ALL if m != "random"])
def test_mixed_length_batches_match_each_input_alone(minilm, method):
    model, tok = minilm.model, minilm.tokenizer
    enc = _encode(minilm)
    try:
        apply_token_pruning(model, method, 0.5, special_ids=tuple(tok.all_special_ids))
        batch = pool(model, model(**enc).last_hidden_state)
        counts = [int(c) for c in model.token_pruning.last.counts[-1][1]]
        for i, text in enumerate(TEXTS):
            one = dict(tok([text], return_tensors="pt"))
            alone = pool(model, model(**one).last_hidden_state)[0]
            assert torch.allclose(batch[i], alone, atol=1e-5), (method, i)
            assert int(model.token_pruning.last.counts[-1][1][0]) == counts[i]
    finally:
        remove_token_pruning(model)


@torch.inference_mode()
@pytest.mark.parametrize("method", ALL)
def test_special_tokens_survive_and_the_budget_holds(minilm, method):
    model, tok = minilm.model, minilm.tokenizer
    enc = _encode(minilm)
    lengths = enc["attention_mask"].sum(-1)
    try:
        apply_token_pruning(model, method, 0.3, special_ids=tuple(tok.all_special_ids), trace=True)
        model(**enc)
        state = model.token_pruning.last
        schedule = model.token_pruning.schedule
        for layer, kept in enumerate(state.trace):
            for i in range(len(TEXTS)):
                positions = [int(p) for p in kept[i] if p >= 0]
                assert 0 in positions and int(lengths[i]) - 1 in positions, (method, layer, i)
                assert all(p < int(lengths[i]) for p in positions)  # never a padding token
                assert positions == sorted(positions)
        final = state.counts[-1][1]
        expected = torch.maximum(torch.ceil(lengths * min(schedule.values())).long(), torch.tensor(2))
        if method == "tome":  # merging is limited to set A per layer: never below the budget, at most above it
            assert (final >= expected).all()
        else:
            assert final.tolist() == expected.tolist()
    finally:
        remove_token_pruning(model)


@torch.inference_mode()
def test_tome_pooling_is_size_weighted(minilm):
    model, enc = minilm.model, _encode(minilm)
    try:
        apply_token_pruning(model, "tome", 0.4)
        out = model(**enc).last_hidden_state
        state = model.token_pruning.last
        # every input token is accounted for exactly once in the sizes
        assert state.size.sum(-1).tolist() == enc["attention_mask"].sum(-1).float().tolist()
        w = state.size[..., None]
        assert torch.allclose(pool(model, out), (out * w).sum(1) / w.sum(1))
    finally:
        remove_token_pruning(model)


@torch.inference_mode()
@pytest.mark.parametrize("method", ALL)
def test_vit_mechanics(tiny_vit, method):
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    try:
        apply_token_pruning(tiny_vit, method, {1: 0.7, 2: 0.4}, trace=True)
        logits = tiny_vit(pixel_values=pixels).logits
        state = tiny_vit.token_pruning.last
        assert logits.shape == (2, 3) and torch.isfinite(logits).all()
        assert [int(c[1][0]) for c in state.counts] == ([17, 12, 7, 7] if method != "tome" else
                                                          [int(c[1][0]) for c in state.counts])
        assert all(int(t[0, 0]) == 0 for t in state.trace)  # [CLS] stays first
    finally:
        remove_token_pruning(tiny_vit)


def test_schedule_resolution():
    assert resolve(0.6, 6) == pytest.approx({1: 0.6 ** (1 / 3), 2: 0.6 ** (2 / 3), 3: 0.6})
    assert resolve("0.9,0.75", 6) == {1: 0.9, 2: 0.75}
    assert resolve("1:0.9,3:0.6", 6) == {1: 0.9, 3: 0.6}
    assert resolve(1.0, 6) == {}
    assert resolve(0.5, 1) == {0: 0.5}


@pytest.mark.parametrize("schedule,message", [
    (0.0, "must be in (0, 1]"), (1.5, "must be in (0, 1]"), (-0.2, "must be in (0, 1]"),
    ([0.9] * 6, "the model has 6 layers"), ("7:0.5", "names layer 7, but the model has 6 layers"),
    ("1:0.5,2:0.8", "cannot grow"), ("1:0.5,0.4", "mixes"), ("", "empty"),
])
def test_bad_schedules_are_one_line_errors(schedule, message):
    with pytest.raises(KenpruneError) as err:
        resolve(schedule, 6)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_family_without_an_adapter_lists_the_supported_ones():
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(KenpruneError, match=r"does not support model family 'gpt2'; supported families: bert, vit"):
        apply_token_pruning(model, "zero-tprune", 0.5)


def test_unknown_method_is_one_line(tiny_bert):
    with pytest.raises(KenpruneError, match="unknown token pruning method 'prune-all'; choose one of: zero-tprune"):
        apply_token_pruning(tiny_bert, "prune-all", 0.5)


@torch.inference_mode()
def test_repatching_replaces_the_patch_and_removal_restores(tiny_bert):
    ids = torch.randint(5, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    dense = tiny_bert(input_ids=ids).last_hidden_state
    apply_token_pruning(tiny_bert, "random", 0.5)
    apply_token_pruning(tiny_bert, "truncate", 0.5)
    assert tiny_bert.token_pruning.method_name == "truncate"
    assert tiny_bert(input_ids=ids).last_hidden_state.shape[1] == 6
    remove_token_pruning(tiny_bert)
    assert not hasattr(tiny_bert, "token_pruning")
    assert torch.equal(tiny_bert(input_ids=ids).last_hidden_state, dense)
