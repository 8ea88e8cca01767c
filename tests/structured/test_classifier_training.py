"""Structured pruning that trains or scores with a loss, on a sequence classifier: Taylor importance from the
classification loss, polarization gates trained with LoRA (SEQ_CLS), and the scratch control, all on labelled
batches (issue 20's gaps: "on encoders for classification")."""
from __future__ import annotations

import copy

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.settings import LoraSettings
from kenprune.structured.batches import calibration_items, labelled_data, training_items
from kenprune.structured.groups import block_groups
from kenprune.structured.plan import PrunePlan, plan_keep
from kenprune.structured.prune import prune_structured
from kenprune.structured.removal import block_widths, remove_units
from kenprune.structured.scratch import train_from_scratch
from tests.ken.conftest import minilm_pair  # noqa: F401  (fixture)
from tests.structured.test_seed_systems import _tiny_bert_classifier

TRAIN = LoraSettings(data="pang-lee:calib", steps=3, seqlen=16, batch_size=4, lr=1e-2)


@pytest.fixture
def tiny_bert():
    from transformers import AutoTokenizer

    from kenprune.models.loading import MODELS, LoadedModel

    tokenizer = AutoTokenizer.from_pretrained(MODELS.get("minilm-l6").folder())
    return LoadedModel(model=_tiny_bert_classifier(), tokenizer=tokenizer, name="tiny-bert", source="tiny",
                       task="sequence-classification")


def _inputs(loaded, n=4):
    from kenprune.data.corpora import load_documents

    texts = [d.text for d in load_documents("pang-lee:test")[:n]]
    return dict(loaded.tokenizer(texts, padding=True, truncation=True, max_length=24, return_tensors="pt"))


def test_labelled_batches_carry_the_models_label_ids_and_a_text_corpus_is_refused(tiny_bert):
    data, batches = training_items(tiny_bert, "pang-lee:calib", TRAIN)
    assert data == "pang-lee:calib" and len(batches) == TRAIN.steps
    assert all(b["input_ids"].shape[0] == 4 and b["input_ids"].shape[1] <= 16 for b in batches)
    assert {int(v) for b in batches for v in b["labels"]} <= {0, 1}
    with pytest.raises(KenpruneError, match="must be a labelled split"):
        labelled_data(tiny_bert, "lee:calib", "--train-data")  # no fine-tune record to fall back on


def test_taylor_on_a_classifier_scores_with_the_classification_loss(tiny_bert):
    """The pipeline keeps exactly the units that sum |W * mean dCE/dW| (computed here by hand) ranks first."""
    reference = copy.deepcopy(tiny_bert.model)
    _, items = calibration_items(tiny_bert, "pang-lee:calib", nsamples=3, seqlen=16, seed=0, labelled=True)
    groups = block_groups(reference)
    weights = {id(m.linear.weight): m.linear.weight for g in groups for m in g.members}
    grads = {k: torch.zeros_like(w) for k, w in weights.items()}
    for item in items:
        reference.zero_grad()
        logits = reference(input_ids=item["input_ids"], attention_mask=item["attention_mask"]).logits
        torch.nn.functional.cross_entropy(logits, item["labels"]).backward()
        for k, w in weights.items():
            grads[k] += w.grad / len(items)
    scores = []
    for g in groups:
        total = torch.zeros(g.units, dtype=torch.float64)
        for m in g.members:
            w = m.linear.weight.detach()
            channel = (w * grads[id(m.linear.weight)]).abs().sum(dim=1 - m.axis).double()
            total += channel[m.unit_channels].sum(-1)
        scores.append(total)
    plan = PrunePlan(0.5)
    keep = plan_keep(groups, scores, plan, 2)
    with torch.no_grad():
        remove_units(groups, keep)
    result = prune_structured(tiny_bert, plan, importance="taylor", calib="pang-lee:calib", nsamples=3, seqlen=16,
                              progress=False)
    assert result.calibration["loss"] == "classification" and result.calibration["data"] == "pang-lee:calib"
    pruned = dict(tiny_bert.model.named_parameters())
    for name, p in reference.named_parameters():
        assert pruned[name].shape == p.shape and torch.allclose(pruned[name], p), name


def test_polarization_on_a_classifier_removes_units_and_reloads_with_the_same_logits(tiny_bert, tmp_path):
    import kenprune
    from kenprune.structured.io import save_structured

    head_before = tiny_bert.model.classifier.weight.detach().clone()
    result = prune_structured(tiny_bert, PrunePlan(0.5), importance="polarization", train=TRAIN, gate_lr=0.2,
                              progress=False)
    d = result.to_dict()
    assert d["training"]["kind"] == "gates+LoRA" and d["training"]["data"] == "pang-lee:calib"
    assert d["training"]["penalty_last"] < d["training"]["penalty_first"]
    assert d["widths_after"][0]["intermediate"] == 32 and d["parameters_after"] < d["parameters_before"]
    assert d["loader"] == "kenprune"  # BERT with fewer heads: kenprune's loader
    model = tiny_bert.model
    assert type(model).__name__ == "BertForSequenceClassification"
    assert all("lora" not in n and "modules_to_save" not in n for n, _ in model.named_parameters())
    assert not torch.equal(model.classifier.weight, head_before)  # the head trained with the gates (SEQ_CLS)
    inputs = _inputs(tiny_bert)
    with torch.no_grad():
        logits = model(**inputs).logits
    save_structured(tiny_bert, tmp_path / "m", {})
    again = kenprune.load(str(tmp_path / "m"))
    assert again.task == "sequence-classification" and block_widths(again.model) == block_widths(model)
    with torch.no_grad():
        torch.testing.assert_close(again.model(**inputs).logits, logits, rtol=1e-5, atol=1e-5)


def test_from_scratch_on_a_classifier_reinitializes_exactly_the_pruned_architecture(tiny_bert):
    prune_structured(tiny_bert, PrunePlan(0.5), importance="l1", progress=False)
    from kenprune.models.loading import LoadedModel

    model = tiny_bert.model
    scratch = LoadedModel(copy.deepcopy(model), tiny_bert.tokenizer, "s", "tiny", tiny_bert.task)
    summary = train_from_scratch(scratch, "pang-lee:calib", TRAIN, lr=1e-3, progress=False)
    assert summary["data"] == "pang-lee:calib" and summary["steps"] == 3
    assert {n: p.shape for n, p in scratch.model.named_parameters()} == \
        {n: p.shape for n, p in model.named_parameters()}
    trained_config = {k: v for k, v in scratch.model.config.to_dict().items() if k != "problem_type"}
    assert trained_config == {k: v for k, v in model.config.to_dict().items() if k != "problem_type"}  # HF sets it
    assert block_widths(scratch.model) == block_widths(model)
    before = dict(model.named_parameters())
    assert all(not torch.equal(p, before[n]) for n, p in scratch.model.named_parameters() if p.dim() == 2)
    assert summary["trainable_parameters"] == sum(p.numel() for p in model.parameters())


def test_polarization_on_the_fine_tuned_minilm_reloads_with_the_same_logits(minilm_pair, tmp_path):  # noqa: F811
    """The real model (minilm-l6 fine-tuned on pang-lee, a run folder): text training data falls back to the
    labelled split the folder was fine-tuned on; units go physically and the saved folder gives the same logits."""
    import kenprune
    from kenprune.structured.io import save_structured

    folder, _ = minilm_pair
    loaded = kenprune.load(str(folder))
    params = sum(p.numel() for p in loaded.model.parameters())
    train = LoraSettings(data="lee", steps=2, seqlen=32, batch_size=4, lr=1e-3)
    result = prune_structured(loaded, PrunePlan(0.25), importance="polarization", train=train, gate_lr=0.2,
                              progress=False).to_dict()
    assert result["training"]["data"] == "pang-lee:calib"
    assert sum(p.numel() for p in loaded.model.parameters()) == result["parameters_after"] < params
    inputs = _inputs(loaded)
    with torch.no_grad():
        logits = loaded.model(**inputs).logits
    save_structured(loaded, tmp_path / "m", {})
    again = kenprune.load(str(tmp_path / "m"))
    assert block_widths(again.model) == block_widths(loaded.model)
    with torch.no_grad():
        torch.testing.assert_close(again.model(**inputs).logits, logits, rtol=1e-5, atol=1e-5)
