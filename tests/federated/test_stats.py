"""Merged statistics of k shards equal the union's; weighting; the statistics file refuses foreign input."""
import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.federated.files import check_compatible, load_stats, read_meta, save_stats
from kenprune.federated.stats import ShardStats, client_weights, merge, merge_layers
from kenprune.methods.base import InputStats


def _shard(rows, hessian=True):
    s = ShardStats(rows.shape[-1], hessian)
    for batch in rows.split(5):
        s.add(batch)
    return s


def test_merged_sums_of_shards_equal_the_union_exactly():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-8, 9, (37, 6), generator=gen).float()  # small integers: every sum is exact in float64
    parts = [_shard(x[:10]), _shard(x[10:11]), _shard(x[11:])]
    union = _shard(x)
    merged = merge(parts)
    assert merged.tokens == union.tokens == 37
    assert torch.equal(merged.sq_sum, union.sq_sum) and torch.equal(merged.xtx, union.xtx)
    assert torch.equal(union.xtx, (x.double().T @ x.double()))


def test_float_data_merges_to_float64_rounding_and_matches_the_engine_statistics():
    x = torch.randn(3, 50, 8, generator=torch.Generator().manual_seed(1))
    merged = merge([_shard(x[0]), _shard(x[1:])]).to_input_stats()
    engine = InputStats(8, hessian=True)
    for batch in x:
        engine.add(batch)
    assert merged.tokens == engine.tokens == 150
    torch.testing.assert_close(merged.sq_sum, engine.sq_sum, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(merged.hessian, engine.hessian, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(merged.hessian, (2 / 150) * x.reshape(-1, 8).T @ x.reshape(-1, 8), rtol=1e-5, atol=1e-6)


def test_equal_weighting_gives_each_client_the_same_say():
    a, b = torch.ones(2, 3), torch.full((6, 3), 3.0)  # mean x^2: 1 and 9
    merged = merge([_shard(a), _shard(b)], "equal")
    assert merged.tokens == 8
    torch.testing.assert_close(merged.sq_sum / merged.tokens, torch.full((3,), 5.0, dtype=torch.float64))
    assert client_weights([2, 6], "tokens") == [0.25, 0.75] and client_weights([2, 6], "equal") == [0.5, 0.5]
    with pytest.raises(KenpruneError, match="unknown weighting"):
        client_weights([1], "sqrt")


def test_layers_that_shared_an_input_share_the_merged_statistics():
    s1, s2 = _shard(torch.randn(4, 3)), _shard(torch.randn(4, 3))
    merged = merge_layers([{"q": s1, "k": s1}, {"q": s2, "k": s2}])
    assert merged["q"] is merged["k"]
    with pytest.raises(KenpruneError, match="cannot merge"):
        merge([_shard(torch.randn(2, 3)), _shard(torch.randn(2, 4))])


def _meta(sha="a" * 64, statistic="hessian", method="sparsegpt"):
    return {"model": {"name": "m", "weights_sha256": sha}, "statistic": statistic, "method": method,
            "mode": "dense", "blocks": 2, "clients": []}


def test_statistics_file_round_trip_and_one_line_refusals(tmp_path):
    s = _shard(torch.randn(9, 4))
    path = save_stats(tmp_path / "stats.safetensors", {"q": s, "k": s, "o": _shard(torch.randn(9, 4))}, _meta())
    layers, meta = load_stats(tmp_path)
    assert layers["q"] is layers["k"] and layers["q"].tokens == 9 and torch.equal(layers["q"].xtx, s.xtx)
    assert read_meta(path)["statistic"] == "hessian"
    with pytest.raises(KenpruneError, match="computed on model m") as err:
        check_compatible([meta], [str(path)], model={"name": "other", "weights_sha256": "b" * 64})
    assert "\n" not in str(err.value)
    with pytest.raises(KenpruneError, match="needs norms"):
        check_compatible([meta], [str(path)], statistic="norms", method="wanda")
    with pytest.raises(KenpruneError, match="differ in statistic"):
        check_compatible([meta, _meta(statistic="norms")], ["a", "b"])
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(KenpruneError, match="not a safetensors file"):
        read_meta(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("kind", ["half", "seven-bytes", "middle-4k", "garbled-header", "empty"])
def test_a_damaged_statistics_file_is_refused_in_one_line(tmp_path, kind):
    from tests.faults.corrupt import corrupt_copy

    s = _shard(torch.randn(64, 40))
    path = save_stats(tmp_path / "stats.safetensors", {"q": s}, _meta())
    with pytest.raises(KenpruneError) as err:
        load_stats(corrupt_copy(path, tmp_path, kind))
    assert "\n" not in str(err.value)
