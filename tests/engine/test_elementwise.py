import pytest
import torch

from kenprune.engine import capture_block_inputs, find_blocks
from kenprune.errors import KenpruneError
from kenprune.engine.elementwise import layer_scores, layer_targets, prune_model, pruned_copy, sparsity_report
from kenprune.testing import random_windows, tiny_causal_lm


@pytest.fixture(scope="module")
def llama():
    model = tiny_causal_lm("llama")
    return model, capture_block_inputs(model, random_windows(4, 32))


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_every_method_prunes_every_architecture_exactly(arch, method):
    model = tiny_causal_lm(arch, layers=2)
    report = prune_model(model, random_windows(4, 32), method=method, sparsity=0.5, progress=False)
    assert report["block_linears"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert all(abs(layer["sparsity"] - 0.5) < 1e-2 for layer in report["layers"])
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=random_windows(1, 8)).logits).all()


def test_nm_pattern_every_group(llama):
    model, inputs = llama
    clone, report = pruned_copy(model, 0.5, inputs, method="wanda", pattern="2:4", progress=False)
    for name, module in clone.named_modules():
        if name in {layer["name"] for layer in report["layers"]}:
            assert ((module.weight == 0).view(module.weight.shape[0], -1, 4).sum(-1) >= 2).all()


def test_per_layer_ratios_by_block_and_by_name_and_the_original_is_untouched(llama):
    model, inputs = llama
    before = {k: v.clone() for k, v in model.state_dict().items()}
    name = "model.layers.1.mlp.down_proj"
    clone, report = pruned_copy(model, {0: 0.25, 1: 0.5, name: 0.75}, inputs, method="wanda", progress=False)
    by_name = {layer["name"]: layer["sparsity"] for layer in report["layers"]}
    assert by_name["model.layers.0.self_attn.q_proj"] == 0.25
    assert by_name["model.layers.1.self_attn.q_proj"] == 0.5
    assert by_name[name] == 0.75
    assert by_name["model.layers.2.self_attn.q_proj"] == 0.0  # blocks not named stay dense
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("sparsity,pattern,match", [
    ({9: 0.5}, None, "out of range"),
    ({"model.layers.0.nope": 0.5}, None, "no Linear named"),
    ({0: 1.2}, None, r"\[0, 1\)"),
    ({0: 0.5}, "2:4", "per-layer ratios need"),
    (1.0, None, r"\[0, 1\)"),
])
def test_bad_targets_are_one_line_errors(llama, sparsity, pattern, match):
    from kenprune.methods import Pattern

    with pytest.raises(KenpruneError, match=match):
        layer_targets(llama[0], sparsity, Pattern.parse(pattern))


def test_unknown_method_names_the_choices(llama):
    with pytest.raises(KenpruneError, match="choose one of: magnitude, wanda, sparsegpt"):
        prune_model(llama[0], llama[1], method="obs")


def test_layer_scores_from_one_dense_pass_without_pruning(llama):
    model, inputs = llama
    before = sparsity_report(model)["block_linears"]["zeros"]
    scores = layer_scores(model, inputs, method="wanda", progress=False)
    assert len(scores) == 3 * 7 and scores["model.layers.0.mlp.down_proj"].shape == (64, 128)
    outliers = layer_scores(model, inputs, method="sparsegpt", progress=False,
                            reduce=lambda _n, s: float((s > 5 * s.mean()).float().mean()))
    assert all(isinstance(v, float) for v in outliers.values())
    assert sparsity_report(model)["block_linears"]["zeros"] == before


def test_magnitude_needs_no_calibration_and_embeddings_are_optional():
    model = tiny_causal_lm("llama", layers=2)
    report = prune_model(model, None, method="magnitude", sparsity=0.5)
    assert float((model.get_input_embeddings().weight == 0).float().mean()) == 0.0
    prune_model(model, None, method="magnitude", sparsity=0.5, include_embeddings=True)
    assert float((model.get_input_embeddings().weight == 0).float().mean()) == pytest.approx(0.5)
    assert report["overall"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert len(find_blocks(model)[1]) == 2


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_pruning_on_cuda_agrees_with_cpu_and_leaves_the_model_where_it_was(arch, method):
    """Blocks visit the GPU one at a time; masks match the CPU run up to float ties."""
    windows = random_windows(4, 32)
    on_cpu, on_gpu = tiny_causal_lm(arch, layers=2), tiny_causal_lm(arch, layers=2)
    prune_model(on_cpu, windows, method=method, sparsity=0.5, device="cpu", progress=False)
    report = prune_model(on_gpu, windows, method=method, sparsity=0.5, device="cuda", progress=False)
    assert all(p.device.type == "cpu" for p in on_gpu.parameters())
    assert report["block_linears"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    for (name, a), b in zip(on_cpu.named_parameters(), on_gpu.parameters()):
        agree = float(((a == 0) == (b == 0)).float().mean())
        assert agree > 0.98, f"{name}: masks agree on only {agree:.3f}"
        if method != "sparsegpt":  # SparseGPT's weight update is float arithmetic: close, not equal
            assert torch.equal(a[(a != 0) & (b != 0)], b[(a != 0) & (b != 0)])


@cuda
def test_a_model_living_on_cuda_is_pruned_there():
    model = tiny_causal_lm("llama", layers=2).cuda()
    report = prune_model(model, random_windows(4, 32), method="wanda", sparsity=0.5, progress=False)
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert report["block_linears"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=random_windows(1, 8).cuda()).logits).all()
