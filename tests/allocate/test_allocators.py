import numpy as np
import pytest
import torch

from kenprune.allocate import ALLOCATORS, Layer, resolve_allocation
from kenprune.allocate.mapping import MAX_RATIO
from kenprune.allocate.owl import outlier_ratio
from kenprune.errors import KenpruneError

SPECS = ["uniform", "global", "er", "er-plus", "owl", "owl:m=2,lambda=0.1", "dsa:abslog|var|atan,asin"]


def test_every_registered_allocator_is_covered():
    assert {s.split(":")[0] for s in SPECS} == set(ALLOCATORS.names())


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("target", [0.5, 0.7])
def test_allocators_meet_target_exactly_within_bounds(layers, spec, target):
    allocation = resolve_allocation(spec, layers, target)
    ratios = np.array([allocation.ratios[layer.name] for layer in layers])
    sizes = np.array([layer.numel for layer in layers])
    assert abs(float(ratios @ sizes) / sizes.sum() - target) < 1e-12
    assert ratios.min() >= 0 and ratios.max() <= MAX_RATIO
    assert allocation.to_dict()["weighted_mean"] == pytest.approx(target, abs=1e-12)


def test_owl_matches_a_hand_computation():
    # Three one-matrix blocks; outliers = scores above M * mean, M = 2.
    scores = [torch.tensor([[1.0, 1.0, 1.0, 9.0]]),              # mean 3, > 6: 1 of 4 -> 25 %
              torch.tensor([[1.0, 1.0, 1.0, 1.0]]),              # none -> 0 %
              torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 9.3]])]  # mean 1.2, > 2.4: 1 of 8 -> 12.5 %
    layers = [Layer(f"b{i}", i, tuple(s.shape), s) for i, s in enumerate(scores)]
    d = np.array([25.0, 0.0, 12.5])
    x = (d - d.min()) / (d.max() - d.min()) * 2 * 0.08        # density offsets in [0, 2 lambda]
    sizes = np.array([4, 4, 8])
    density = x - (x @ sizes) / sizes.sum() + (1 - 0.6)        # parameter-weighted shift to 1 - S
    expected = 1 - density
    got = resolve_allocation("owl:m=2", layers, 0.6, lam=0.08).ratios
    assert [outlier_ratio(s, 2.0) for s in scores] == [25.0, 0.0, 12.5]
    assert np.allclose([got[f"b{i}"] for i in range(3)], expected, atol=1e-12)


def test_er_keeps_narrow_matrices_denser(layers):
    ratios = resolve_allocation("er", layers, 0.7).ratios
    assert ratios["blocks.0.k"] < ratios["blocks.0.q"] < ratios["blocks.0.up"]


def test_global_prunes_low_score_blocks_harder(layers):
    ratios = resolve_allocation("global", layers, 0.5).ratios  # block b's scores scale with 1 + b
    assert ratios["blocks.0.q"] > ratios["blocks.7.q"]


def test_lazy_layers_skip_scores_when_not_needed(layers):
    calls = []

    def source(needs_scores: bool):
        calls.append(needs_scores)
        return layers

    resolve_allocation("er", source, 0.5)
    resolve_allocation("owl", source, 0.5)
    assert calls == [False, True]


@pytest.mark.parametrize("spec,match", [
    ("nope", "unknown allocation 'nope'; choose one of: uniform, global"),
    ("owl:q=1", "bad option 'q=1'"),
    ("dsa:abslog|variance|atan", "unknown reduction operation 'variance'.*valid: mean, var"),
    ("dsa:", "dsa needs a function"),
    ("missing.json", "allocation file missing.json does not exist"),
])
def test_bad_specs_are_one_line_errors(layers, spec, match):
    with pytest.raises(KenpruneError, match=match):
        resolve_allocation(spec, layers, 0.5)


def test_allocation_file_round_trip(layers, tmp_path):
    (tmp_path / "best.json").write_text('{"allocation": "dsa:abslog|var|atan,asin|noop", "lambda": 0.05}')
    from_file = resolve_allocation(str(tmp_path / "best.json"), layers, 0.7)
    direct = resolve_allocation("dsa:abslog|var|atan,asin|noop", layers, 0.7, lam=0.05)
    assert from_file.ratios == direct.ratios
    (tmp_path / "ratios.json").write_text(__import__("json").dumps({"ratios": direct.ratios}))
    assert resolve_allocation(str(tmp_path / "ratios.json"), layers, 0.7).ratios == pytest.approx(direct.ratios)


@pytest.mark.parametrize("seed", range(8))
def test_kth_smallest_equals_kthvalue_of_the_concatenation(seed):
    from kenprune.allocate.global_ import kth_smallest

    g = torch.Generator().manual_seed(seed)
    parts = [torch.randn(int(torch.randint(1, 300, (1,), generator=g)), generator=g) * 10 ** (3 * seed - 9)
             for _ in range(4)]
    parts.append(torch.tensor([0.0, -0.0, 0.0, 1.0, 1.0, float("inf"), -float("inf"), 1e-42]))  # ties, subnormal
    whole = torch.cat(parts)
    for k in {1, whole.numel(), whole.numel() // 2, int(torch.randint(1, whole.numel() + 1, (1,), generator=g))}:
        assert kth_smallest(parts, k) == whole.kthvalue(k).values
    with pytest.raises(ValueError):
        kth_smallest(parts, 0)


def test_kth_smallest_reads_file_backed_scores_and_readers(tmp_path):
    from kenprune.allocate.global_ import kth_smallest
    from kenprune.engine.streaming import file_backed

    scores = [torch.rand(64, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    expected = torch.cat([s.reshape(-1) for s in scores]).kthvalue(1000).values
    on_disk = [file_backed(s, tmp_path / f"s{i}.bin") for i, s in enumerate(scores)]
    assert kth_smallest(on_disk, 1000) == expected
    reads = []
    readers = [lambda s=s: reads.append(1) or s.clone() for s in scores]
    assert kth_smallest(readers, 1000) == expected and len(reads) == 3 * 3  # count, then two passes


@pytest.mark.parametrize("spec", ["global", "owl", "dsa:abslog|mean|noop|noop"])
def test_scores_read_from_disk_allocate_like_scores_in_memory(layers, spec):
    on_disk = [Layer(x.name, x.block, x.shape, load=lambda x=x: x.scores.clone()) for x in layers]
    assert all(x.scores is None and x.has_scores for x in on_disk)
    assert resolve_allocation(spec, on_disk, 0.5).ratios == resolve_allocation(spec, layers, 0.5).ratios
