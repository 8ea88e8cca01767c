"""FLOPs targets: the resolved schedule's FLOPs, the patch's real token counts, one-line errors."""
from __future__ import annotations

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.tokens import apply_token_pruning, remove_token_pruning
from kenprune.tokens.schedule import (FlopsTarget, flops_schedule, lowest_flops_ratio, parse, resolve,
                                      single_ratio_layers)

H, M = 384, 1536  # minilm-l6's widths


def encoder_cost(counts, h, m):
    """Independent FLOPs count of an encoder from (tokens into attention, tokens into the MLP) per layer:
    q, k, v, o projections 4 n h^2, scores and weighted sum 2 n^2 h, MLP 2 n' h m, each a multiply-add (x2)."""
    return sum(2 * (4 * n * h * h + 2 * n * n * h + 2 * n2 * h * m) for n, n2 in counts)


def model_counts(schedule, layers, length, protected):
    counts, n = [], float(length)
    for layer in range(layers):
        n2 = min(n, max(schedule[layer] * length, protected)) if layer in schedule else n
        counts.append((n, n2))
        n = n2
    return counts


def one_token_tolerance(layers, length, h, m):
    """Upper bound of what the patch's rounding up adds: at most one more token out of each pruning layer, each
    carried through every later layer, a token costing at most its projections, its scores against length + 1
    tokens and its MLP; as a share of dense."""
    per_token = 2 * (4 * h * h + 2 * (2 * length + 1) * h + 2 * h * m)
    return len(single_ratio_layers(layers)) * layers * per_token / encoder_cost([(length, length)] * layers, h, m)


@pytest.mark.parametrize("layers", [3, 6, 12])
@pytest.mark.parametrize("length", [16, 128, 512])
@pytest.mark.parametrize("target", [1.0, 0.9, 0.7, 0.55])
def test_the_resolved_schedule_costs_the_target(layers, length, target):
    low = lowest_flops_ratio(layers, length, H, M, 2)
    if target < low:
        pytest.skip("out of reach at this length (tested below)")
    rho, schedule = flops_schedule(target, layers, length, H, M, 2)
    dense = encoder_cost([(length, length)] * layers, H, M)
    ratio = encoder_cost(model_counts(schedule, layers, length, 2), H, M) / dense
    # the bisection stops within 1e-10 of rho: as far as the FLOPs move over that interval
    if target < 1.0:
        lo, hi = (encoder_cost(model_counts(resolve(r, layers), layers, length, 2), H, M) / dense
                  for r in (max(rho - 1e-10, 1e-300), min(rho + 1e-10, 1.0)))
        assert ratio == pytest.approx(target, abs=max(hi - lo, 1e-12))
    assert ratio == pytest.approx(target, abs=1e-6)
    assert schedule == ({} if target == 1.0 else pytest.approx(resolve(rho, layers)))


def test_lowest_ratio_keeps_only_the_protected_tokens():
    layers, length, p = 6, 128, 2
    counts = [(length, length), (length, p)] + [(p, p)] * 4  # layer 0 dense, layer 1 prunes to [CLS], [SEP]
    expected = encoder_cost(counts, H, M) / encoder_cost([(length, length)] * layers, H, M)
    assert lowest_flops_ratio(layers, length, H, M, p) == pytest.approx(expected, rel=1e-12)
    rho, schedule = flops_schedule(expected / 2, layers, length, H, M, p, clamp=True)
    assert rho == 0.0 and schedule == {1: p / length, 2: p / length, 3: p / length}


@torch.inference_mode()
def test_the_patch_reaches_the_target_at_each_input_length(tiny_bert):
    config, layers = tiny_bert.config, 3
    h, m = config.hidden_size, config.intermediate_size
    lengths = torch.tensor([40, 25, 64])
    ids = torch.randint(5, 100, (3, 64), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(64)[None, :] < lengths[:, None]).long()
    target = 0.75
    try:
        apply_token_pruning(tiny_bert, "zero-tprune", "flops:0.75")
        tiny_bert(input_ids=ids, attention_mask=mask)
        counts = tiny_bert.token_pruning.last.counts
    finally:
        remove_token_pruning(tiny_bert)
    assert len(counts) == layers
    for b, n in enumerate(lengths.tolist()):
        real = [(int(a[b]), int(c[b])) for a, c in counts]
        assert real[-1][1] < n  # tokens were pruned
        achieved = encoder_cost(real, h, m) / encoder_cost([(n, n)] * layers, h, m)
        # ceil rounds the counts up: never below the target, at most one token per pruning layer above it
        assert target - 1e-9 <= achieved <= target + one_token_tolerance(layers, n, h, m), (n, achieved)


@torch.inference_mode()
def test_an_input_too_short_for_the_target_keeps_only_its_special_tokens(tiny_bert):
    ids = torch.randint(5, 100, (2, 64), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 64, dtype=torch.long)
    mask[1, 6:] = 0  # 6 tokens: the target is out of reach there, not at 64
    low64, low6 = (lowest_flops_ratio(3, n, 32, 64, 2) for n in (64, 6))
    assert low64 < low6
    try:
        apply_token_pruning(tiny_bert, "truncate", FlopsTarget((low64 + low6) / 2))
        tiny_bert(input_ids=ids, attention_mask=mask)
        state = tiny_bert.token_pruning.last
    finally:
        remove_token_pruning(tiny_bert)
    assert int(state.counts[-1][1][1]) == 2 and int(state.counts[-1][1][0]) > 2


@torch.inference_mode()
def test_a_target_of_one_is_dense(tiny_bert):
    ids = torch.randint(5, 100, (2, 20), generator=torch.Generator().manual_seed(2))
    dense = tiny_bert(input_ids=ids).last_hidden_state
    try:
        apply_token_pruning(tiny_bert, "zero-tprune", "flops:1")
        assert torch.equal(tiny_bert(input_ids=ids).last_hidden_state, dense)
    finally:
        remove_token_pruning(tiny_bert)


@pytest.mark.parametrize("text, message", [
    ("flops:0", "a FLOPs target is a share of the dense FLOPs in (0, 1], got '0'"),
    ("flops:-0.2", "in (0, 1], got '-0.2'"),
    ("flops:1.5", "in (0, 1], got '1.5'"),
    ("flops:abc", "a FLOPs target must be a number in (0, 1], got 'abc'"),
])
def test_bad_targets_are_one_line_errors(text, message):
    with pytest.raises(KenpruneError) as err:
        parse(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unreachable_target_is_one_line():
    low = lowest_flops_ratio(6, 32, H, M, 2)
    with pytest.raises(KenpruneError) as err:
        flops_schedule(low - 0.01, 6, 32, H, M, 2)
    text = str(err.value)
    assert "out of reach at 32 tokens" in text and f"at least {low:.4f} of dense" in text and "\n" not in text
    with pytest.raises(KenpruneError, match="resolve it with flops_schedule"):
        resolve("flops:0.7", 6)


def test_the_api_rejects_a_target_out_of_reach_at_every_length(tiny_bert):
    longest = tiny_bert.config.max_position_embeddings
    lows = [lowest_flops_ratio(3, n, 32, 64, 2) for n in range(3, longest + 1)]
    assert min(lows) < lows[-1]  # this narrow model saves the most at a middle length, not at the longest
    with pytest.raises(KenpruneError) as err:
        apply_token_pruning(tiny_bert, "zero-tprune", FlopsTarget(min(lows) * 0.99))
    text = str(err.value)
    assert f"out of reach at every input length up to {longest} tokens" in text and "\n" not in text
    assert f"at least {min(lows):.4f} of dense (at {lows.index(min(lows)) + 3} tokens)" in text
    assert getattr(tiny_bert, "token_pruning", None) is None
    apply_token_pruning(tiny_bert, "zero-tprune", FlopsTarget(min(lows) * 1.01))  # reachable somewhere: accepted
    remove_token_pruning(tiny_bert)
