"""Every registered method, allocator, evaluator and format held to the same behaviours (one matrix,
as peft's test_custom_models): a new entry is tested by registering it, with no test to write."""
from __future__ import annotations

import math

import pytest
import torch

from kenprune.allocate import ALLOCATORS, resolve_allocation
from kenprune.evaluate import EVALUATORS, evaluate
from kenprune.formats import FORMATS
from kenprune.ken.selections import ROW_SELECTIONS
from kenprune.methods import METHODS, InputStats, Pattern
from kenprune.record import Quality
from kenprune.settings import Evaluation
from tests.allocate.conftest import make_layers

ALLOCATOR_SPECS = {"dsa": "dsa:abslog|mean|noop|noop"}
EVALUATOR_DATA = {"zero-shot": "tasks:sentiment"}  # lm-eval on a 40-item local task: seconds on the tiny model


def _stats(columns: int, seed: int = 0) -> InputStats:
    stats = InputStats(columns, hessian=True)
    stats.add(torch.randn(64, columns, generator=torch.Generator().manual_seed(seed)))
    return stats


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("2:4", 0.5), ("unstructured", 0.0)])
def test_method_contract(name, pattern, sparsity):
    """Same shape and dtype back, zeros exactly where the mask says, the target met, deterministic,
    scores never NaN, the input left untouched."""
    method = METHODS.get(name)
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    original = weight.clone()
    stats = _stats(32)
    parsed = Pattern.parse(pattern)
    result = method.prune(weight, stats, sparsity=sparsity, pattern=parsed, group=method.default_group)
    again = method.prune(weight, stats, sparsity=sparsity, pattern=parsed, group=method.default_group)
    assert torch.equal(weight, original)
    assert result.weight.shape == weight.shape and result.weight.dtype == weight.dtype
    assert result.pruned.dtype == torch.bool and torch.all(result.weight[result.pruned] == 0)
    assert torch.equal(result.weight, again.weight) and torch.equal(result.pruned, again.pruned)
    assert result.pruned.float().mean().item() == pytest.approx(sparsity)
    if parsed.is_nm:
        assert torch.all(result.pruned.view(16, 8, 4).sum(-1) == 2)
    scores = method.score(weight, stats)
    assert scores.shape == weight.shape and not torch.isnan(scores).any()


@pytest.mark.parametrize("name", ALLOCATORS.names())
@pytest.mark.parametrize("target", [0.5, 0.7])
def test_allocator_contract(name, target):
    """Ratios for every layer, each in [0, 1), whose parameter-weighted mean is the target."""
    layers = make_layers()
    allocation = resolve_allocation(ALLOCATOR_SPECS.get(name, name), layers, target)
    assert set(allocation.ratios) == {layer.name for layer in layers}
    assert all(0.0 <= r < 1.0 for r in allocation.ratios.values())
    assert allocation.mean == pytest.approx(target, abs=1e-9)


@pytest.fixture(scope="module")
def models_by_task(tmp_path_factory):
    """One tiny model per task an evaluator serves, with the real smollm2 tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from kenprune.models.loading import CAUSAL_LM, MODELS, SEQUENCE_CLASSIFICATION, LoadedModel
    from kenprune.testing import tiny_causal_lm

    tokenizer = AutoTokenizer.from_pretrained(MODELS.get("smollm2-135m").folder())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = tiny_causal_lm("llama", layers=2, vocab=len(tokenizer))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, id2label={0: "neg", 1: "pos"},
                        label2id={"neg": 0, "pos": 1})
    classifier = BertForSequenceClassification(config).eval()
    return {CAUSAL_LM: (LoadedModel(lm, tokenizer, "tiny-lm", "tiny", CAUSAL_LM), "wiki:test"),
            SEQUENCE_CLASSIFICATION: (LoadedModel(classifier, tokenizer, "tiny-cls", "tiny", SEQUENCE_CLASSIFICATION),
                                      "pang-lee:test")}


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_evaluator_contract(name, models_by_task):
    """A Quality with the evaluator's metric, a finite value, the data and protocol; deterministic."""
    evaluator = EVALUATORS.get(name)
    for task in evaluator.tasks:
        loaded, data = models_by_task[task]
        data = EVALUATOR_DATA.get(name, data)
        spec = Evaluation(data=data, seqlen=64, windows=2)
        first = evaluate(loaded, spec, role="after", metric=name, progress=False)
        second = evaluate(loaded, spec, role="after", metric=name, progress=False)
        assert isinstance(first, Quality) and first.metric == name and first.data == data
        assert math.isfinite(first.value) and first.value == second.value
        assert first.protocol.get("data") == data and first.role == "after" and first.model == loaded.name


@pytest.mark.parametrize("name", FORMATS.names())
def test_format_contract(name, tmp_path):
    """Saving a pruned state and loading it back gives the same tensors bit for bit, and a smaller file."""
    fmt = FORMATS.get(name)
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(16, 32, generator=g)
    weight.view(16, 8, 4)[..., :2] = 0  # 50 %, and a 2:4 pattern
    state = {"layer.weight": weight, "layer.bias": torch.randn(16, generator=g)}
    for i, options in enumerate(fmt.options):
        path = tmp_path / f"{i}.safetensors"
        fmt.save(state, path, **options)
        loaded = fmt.load(path)
        assert set(loaded) == set(state)
        assert all(torch.equal(loaded[k], state[k]) for k in state)
        assert path.stat().st_size < 4 * (weight.numel() + 16) + 4096


@pytest.mark.parametrize("name", ROW_SELECTIONS.names())
@pytest.mark.parametrize("k", [1, 7, 40])
def test_row_selection_contract(name, k):
    """Exactly min(k, n) kept per row; the same seed gives the same choice; every entry not kept equals its
    pre-trained value; kept entries carry the fine-tuned value (or, rescaling ones, pre + (n/k) delta);
    the inputs are left untouched."""
    from kenprune.ken.selections import optimized_rows

    selection = ROW_SELECTIONS.get(name)
    gen = torch.Generator().manual_seed(2)
    pre = torch.randn(9, 32, generator=gen)
    ft = pre + 0.05 * torch.randn(9, 32, generator=gen)
    before = (pre.clone(), ft.clone())
    out, mask = optimized_rows(selection, pre, ft, k, generator=torch.Generator().manual_seed(0))
    again, mask2 = optimized_rows(selection, pre, ft, k, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pre, before[0]) and torch.equal(ft, before[1])
    assert mask.dtype == torch.bool and mask.shape == pre.shape
    assert (mask.sum(dim=1) == min(k, 32)).all()
    assert torch.equal(mask, mask2) and torch.equal(out, again)
    assert torch.equal(out[~mask], pre[~mask])
    scale = 32 / min(k, 32) if selection.rescale else 1.0
    assert torch.allclose(out[mask], (pre + (ft - pre) * scale)[mask], atol=1e-6)
