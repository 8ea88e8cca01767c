import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.formats import load_sparse, load_sparse_model, read_manifest, save_sparse
from kenprune.formats.bits import index_width, pack_bits, unpack_bits
from kenprune.engine.elementwise import prune_model
from kenprune.testing import tiny_causal_lm


@pytest.mark.parametrize("width", [1, 2, 3, 4, 8])
def test_bit_packing_round_trips(width):
    values = torch.randint(0, 2 ** width, (1003,), generator=torch.Generator().manual_seed(width))
    packed = pack_bits(values, width)
    assert packed.numel() == -(-1003 * width // 8)
    assert torch.equal(unpack_bits(packed, width, 1003), values.to(torch.uint8))
    assert index_width(4) == 2 and index_width(8) == 3


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("pattern", [None, "2:4", "4:8"])
def test_sparse_file_round_trips_to_the_identical_dense_model(tmp_path, arch, pattern):
    model = tiny_causal_lm(arch, layers=2)
    prune_model(model, None, method="magnitude", sparsity=0.5, pattern=pattern)
    nm = tuple(int(v) for v in pattern.split(":")) if pattern else None
    info = save_sparse(model, tmp_path / "m.safetensors", nm=nm)
    expected_encoding = "bitmask" if nm is None else ("nm" if arch == "llama" else "nm-transposed")
    assert info["tensors_by_encoding"][expected_encoding] == 2 * (7 if arch == "llama" else 4)
    restored = load_sparse_model(tmp_path / "m.safetensors")
    assert type(restored) is type(model)
    original, back = model.state_dict(), restored.state_dict()
    assert original.keys() == back.keys()
    assert all(torch.equal(original[k], back[k]) for k in original)
    with torch.no_grad():
        ids = torch.randint(0, 128, (1, 12))
        assert torch.allclose(model(input_ids=ids).logits, restored(input_ids=ids).logits, atol=1e-6)


def test_nm_grouping_is_only_tried_where_the_pattern_can_hold(tmp_path, monkeypatch):
    """A dense embedding is never grouped (nor transposed) for N:M: it would cost ~5x its size in temporaries."""
    import kenprune.formats.sparse as sparse

    model = tiny_causal_lm("llama", layers=2)
    prune_model(model, None, method="magnitude", pattern="2:4")
    tried = []
    original = sparse._nm
    monkeypatch.setattr(sparse, "_nm", lambda t, n, m: tried.append(tuple(t.shape)) or original(t, n, m))
    info = save_sparse(model, tmp_path / "m.safetensors", nm=(2, 4))
    linears = [tuple(m.weight.shape) for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(tried) == sorted(linears)  # each pruned Linear once; embeddings and norms never
    assert info["tensors_by_encoding"]["nm"] == len(linears)


def test_the_file_shrinks_and_fp16_values_reach_the_goal(tmp_path):
    model = tiny_causal_lm("llama", layers=2, hidden=256, vocab=64)
    prune_model(model, None, method="magnitude", sparsity=0.5, include_embeddings=True)
    info = save_sparse(model, tmp_path / "m.safetensors", dtype=torch.float16)
    dense = sum(t.numel() * 2 for n, t in model.state_dict().items() if n != "lm_head.weight")  # tied
    assert info["bytes"] <= 0.57 * dense
    state = load_sparse(tmp_path / "m.safetensors")
    assert state["lm_head.weight"] is state["model.embed_tokens.weight"]  # stored once
    assert torch.equal(state["model.layers.0.mlp.up_proj.weight"],
                       model.model.layers[0].mlp.up_proj.weight.detach().half())


def test_a_file_that_is_not_ours_is_a_one_line_error(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(KenpruneError, match="not a kenprune sparse file"):
        read_manifest(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(KenpruneError, match="not a readable safetensors"):
        load_sparse(tmp_path / "junk.safetensors")
