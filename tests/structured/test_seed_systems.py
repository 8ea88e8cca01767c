"""The seed list's structured systems: Beta-Rank importance, selection stability, polarization gates, and the
scratch control (issue 20)."""
from __future__ import annotations

import copy

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.settings import LoraSettings
from kenprune.structured.activations import collect_spreads
from kenprune.structured.groups import block_groups
from kenprune.structured.importance import collect_gradients, unit_scores
from kenprune.structured.plan import PrunePlan, plan_keep
from kenprune.structured.polarize import GateSet, polarization_penalty
from kenprune.structured.prune import prune_structured
from kenprune.structured.removal import apply_widths, block_widths, remove_units
from kenprune.structured.scratch import reinitialize
from kenprune.structured.stability import selection_stability


@pytest.fixture
def windows():
    return torch.randint(0, 128, (5, 12), generator=torch.Generator().manual_seed(2))


def _captured_inputs(model, linear, windows):
    """The input of `linear` for every window, stacked: [windows, positions, features]."""
    seen = []
    handle = linear.register_forward_pre_hook(lambda mod, args: seen.append(args[0][0].detach().double()))
    with torch.no_grad():
        for w in windows:
            model(input_ids=w.unsqueeze(0))
    handle.remove()
    return torch.stack(seen)


@pytest.mark.parametrize("beta", [1.0, 0.5, 0.0])
def test_beta_rank_on_a_block_equals_the_formula(tiny_llama, windows, beta):
    groups = block_groups(tiny_llama)
    spreads = collect_spreads(tiny_llama, groups, windows, progress=False)
    scores = unit_scores(groups, "beta-rank", spreads=spreads, beta=beta)
    for index in (0, 1):  # attention (key/value groups of 3 heads x 8 dims) and MLP (channels) of block 0
        group = groups[index]
        reader = next(m for m in group.members if m.axis == 0).linear
        writer = next(m for m in group.members if m.axis == 1)
        x = _captured_inputs(tiny_llama, reader, windows)  # [W, P, F]
        a = _captured_inputs(tiny_llama, writer.linear, windows)  # [W, P, C]
        in_std = x.permute(1, 0, 2).reshape(x.size(1), -1).std(dim=1, unbiased=False)  # per position
        out_std = a.std(dim=0, unbiased=False)  # per position and channel, over windows
        ratio = (out_std / in_std.unsqueeze(1)).mean(0)
        spread = torch.stack([ratio[c].mean() for c in writer.unit_channels])
        l1 = torch.stack([
            sum(m.linear.weight.detach().double().abs().index_select(m.axis, m.unit_channels[u]).sum()
                for m in group.members) for u in range(group.units)])

        def norm(v):
            return (v - v.min()) / (v.max() - v.min())
        expected = beta * norm(l1 * spread) + (1 - beta) * norm(l1)
        torch.testing.assert_close(scores[index], expected, rtol=1e-5, atol=1e-6)  # float32 weights


def test_beta_rank_needs_activations_and_two_windows(tiny_llama, windows):
    groups = block_groups(tiny_llama)
    with pytest.raises(KenpruneError, match="needs calibration activations"):
        unit_scores(groups, "beta-rank")
    with pytest.raises(KenpruneError, match="at least 2 calibration windows"):
        collect_spreads(tiny_llama, groups, windows[:1], progress=False)


def test_stability_is_one_for_identical_selections_and_below_for_different_ones():
    a = [torch.tensor([0, 1, 2]), torch.tensor([1, 3])]
    b = [torch.tensor([0, 1, 3]), torch.tensor([1, 3])]
    units = [4, 4]
    same = selection_stability([a, a, a], units)
    assert same["kept_overlap"] == same["removed_overlap"] == same["kept_overlap_min"] == 1.0
    other = selection_stability([a, b], units)
    assert other["kept_overlap"] == pytest.approx(4 / 6)  # kept {0,1,2}+{1,3} vs {0,1,3}+{1,3}
    assert other["removed_overlap"] == pytest.approx(2 / 4)  # removed {3}+{0,2} vs {2}+{0,2}
    with pytest.raises(ValueError):
        selection_stability([a], units)


def test_pipeline_stability_is_one_for_a_data_free_importance_and_recorded(tiny_loaded):
    result = prune_structured(tiny_loaded, PrunePlan(0.5), importance="l1", calib="lee:calib", nsamples=2,
                              seqlen=16, stability=3, progress=False)
    st = result.to_dict()["stability"]
    assert st["runs"] == 3 and st["kept_overlap"] == 1.0 and st["removed_overlap"] == 1.0


def test_pipeline_beta_rank_with_stability_prunes_and_records_its_overlap(tiny_loaded):
    result = prune_structured(tiny_loaded, PrunePlan(0.5, keep_first=1), importance="beta-rank", beta=0.7,
                              calib="lee:calib", nsamples=3, seqlen=16, stability=2, progress=False)
    d = result.to_dict()
    assert d["beta"] == 0.7 and d["calibration"]["nsamples"] == 3
    assert 0.0 <= d["stability"]["removed_overlap"] <= 1.0 and d["stability"]["seeds"] == [0, 1]
    assert d["parameters_after"] < d["parameters_before"]


def test_polarization_drives_gates_to_zero_or_one_on_a_toy_problem_with_a_known_answer():
    """y depends on features 0 and 3 only; with half the gates to keep, those two open and the others close."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=gen)
    y = 2.0 * x[:, 0] - 3.0 * x[:, 3]
    w = torch.nn.Parameter(torch.tensor([2.0, 0.5, -0.5, -3.0]))  # a trained layer, slightly noisy
    logits = torch.nn.Parameter(torch.full((4,), 2.0))
    opt = torch.optim.Adam([{"params": [w], "lr": 0.01}, {"params": [logits], "lr": 0.05}])
    for _ in range(400):
        g = torch.sigmoid(logits)
        loss = ((x * g * w).sum(1) - y).square().mean() + polarization_penalty(g, keep=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    g = torch.sigmoid(logits).detach()
    assert (g[[0, 3]] > 0.95).all() and (g[[1, 2]] < 0.05).all()
    assert polarization_penalty(g, 0.5).item() < 0.06
    assert polarization_penalty(torch.tensor([1.0, 0.0, 0.0, 1.0]), 0.5).item() == 0.0
    assert polarization_penalty(torch.tensor([0.5, 0.5, 0.5, 0.5]), 0.5).item() == pytest.approx(0.5)


def test_gated_model_and_physically_pruned_model_give_the_same_outputs(tiny_llama, ids):
    groups = block_groups(tiny_llama)
    plan = PrunePlan(0.5, keep_first=1)
    pruned = [g for g in groups if g.block >= 1]
    gates = GateSet(pruned, keep=0.5)
    with torch.no_grad():
        for t in gates.logits:
            t.copy_(torch.randn(t.shape, generator=torch.Generator().manual_seed(t.numel())) * 3)
    scores = [torch.zeros(g.units) if g.block < 1 else v.detach() for g, v in
              zip(groups, [None] * 2 + gates.values())]
    keep = plan_keep(groups, scores, plan, 4)
    fixed = []
    for v, k in zip(gates.values(), keep[2:]):
        mask = torch.zeros(v.numel())
        mask[k] = 1.0
        fixed.append(v.detach() * mask)  # what the gates compute once the removed ones are exactly 0
    detach = gates.attach(tiny_llama, fixed)
    with torch.no_grad():
        gated = tiny_llama(ids).logits
    detach()
    gates.fold()
    with torch.no_grad():
        remove_units(groups, keep)
    apply_widths(tiny_llama, block_widths(tiny_llama))
    assert block_widths(tiny_llama)[1].intermediate < 96
    with torch.no_grad():
        torch.testing.assert_close(tiny_llama(ids).logits, gated, rtol=1e-5, atol=1e-5)


def test_polarization_trains_gates_with_lora_then_removes_and_reloads(tiny_loaded, ids, tmp_path):
    import kenprune
    from kenprune.structured.io import save_structured

    train = LoraSettings(data="lee:calib", steps=3, seqlen=16, lr=1e-2)
    result = prune_structured(tiny_loaded, PrunePlan(0.5), importance="polarization", train=train, gate_lr=0.2,
                              progress=False)
    d = result.to_dict()
    assert d["training"]["kind"] == "gates+LoRA" and d["training"]["penalty_last"] < d["training"]["penalty_first"]
    assert 0.0 <= d["gates"]["removed_gate_max"] <= 1.0 and d["uniform_widths"]
    assert all(p.dtype == torch.float32 and "lora" not in n for n, p in tiny_loaded.model.named_parameters())
    with torch.no_grad():
        logits = tiny_loaded.model(ids).logits
    save_structured(tiny_loaded, tmp_path / "m", {})
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()  # uniform widths: plain transformers
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, logits, rtol=1e-5, atol=1e-5)
    assert kenprune.load(str(tmp_path / "m")).model.config.num_attention_heads == 2  # one query head per key/value group


def test_polarization_needs_steps_and_refuses_stability(tiny_loaded):
    with pytest.raises(KenpruneError, match="give --steps"):
        prune_structured(tiny_loaded, PrunePlan(0.5), importance="polarization", progress=False)
    with pytest.raises(KenpruneError, match="--stability is not available"):
        prune_structured(tiny_loaded, PrunePlan(0.5), importance="polarization", stability=2,
                         train=LoraSettings(steps=1), progress=False)


def test_from_scratch_reinitializes_exactly_the_pruned_architecture(tiny_loaded):
    prune_structured(tiny_loaded, PrunePlan(0.5, keep_first=1), importance="l2", progress=False)
    model = tiny_loaded.model
    scratch = copy.deepcopy(model)
    reinitialize(scratch, seed=0)
    assert {n: p.shape for n, p in scratch.named_parameters()} == {n: p.shape for n, p in model.named_parameters()}
    assert scratch.config.to_dict() == model.config.to_dict()
    assert block_widths(scratch) == block_widths(model)
    before = dict(model.named_parameters())
    for name, p in scratch.named_parameters():
        if p.dim() == 2:  # every linear and embedding drawn again, at the family's initializer range
            assert not torch.equal(p, before[name]), name
            assert p.std().item() == pytest.approx(model.config.initializer_range, rel=0.3), name
    again = copy.deepcopy(model)
    reinitialize(again, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(again.parameters(), scratch.parameters()))  # seeded


def _tiny_bert_classifier():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2,
                        id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})  # pang-lee's labels
    return BertForSequenceClassification(config).eval()


def test_bert_heads_and_channels_are_removed_and_reload_through_kenprune(tmp_path, windows):
    """BERT (MiniLM's family): no gate, dotted module paths; its head size comes from the head count, so a
    model with fewer heads keeps the original count in its config and reloads through kenprune's loader."""
    from kenprune.models.loading import LoadedModel
    from kenprune.structured.io import load_per_block, save_structured

    from transformers import AutoTokenizer

    from kenprune.models.loading import MODELS

    model = _tiny_bert_classifier()
    tokenizer = AutoTokenizer.from_pretrained(MODELS.get("minilm-l6").folder())  # MiniLM's, vocabulary 30522
    loaded = LoadedModel(model=model, tokenizer=tokenizer, name="tiny-bert", source="tiny", task="sequence-classification")
    groups = block_groups(model)
    assert [g.unit for g in groups[:2]] == ["kv-group", "channel"] and len(groups[1].members) == 2
    batches = [{"input_ids": windows[i:i + 2], "labels": torch.tensor([0, 1])} for i in (0, 2)]  # labelled
    stats = collect_gradients(model, groups, batches, progress=False)  # the classifier's loss
    assert all(torch.isfinite(s).all() and s.abs().sum() > 0 for s in unit_scores(groups, "taylor", stats))
    spreads = collect_spreads(model, groups, batches, progress=False)
    assert spreads[(0, "mlp")].shape == (64,)
    spreads = collect_spreads(model, groups, windows, progress=False)
    scores = unit_scores(groups, "beta-rank", spreads=spreads)
    keep = plan_keep(groups, scores, PrunePlan(0.5), 2)
    with torch.no_grad():
        remove_units(groups, keep)
    apply_widths(model, block_widths(model))
    with torch.no_grad():
        logits = model(input_ids=windows).logits
    assert block_widths(model)[0].heads == 2 and model.config.num_attention_heads == 4
    assert model.bert.encoder.layer[0].attention.self.all_head_size == 16
    save_structured(loaded, tmp_path / "bert", {})
    again = load_per_block(tmp_path / "bert").eval()
    assert type(again).__name__ == "BertForSequenceClassification"
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=windows).logits, logits, rtol=1e-5, atol=1e-5)
